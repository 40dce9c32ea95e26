// ListenerTls: the TLS (and mutual TLS) context of egressd's gRPC port,
// from --tls_cert, --tls_key and --client_ca, checked at start so that a bad
// file is a clean exit naming it. GrpcFront terminates TLS with it (ALPN h2
// only); gRPC itself listens only on a Unix socket of this process.
//
// Thread safety: a pure function; the context is shared, read-only.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace egress {

// The context when `cert_file` is set, else nullptr (plaintext). With
// `client_ca_file`, callers must present a certificate it verifies. Errors
// name the flag and the file.
absl::StatusOr<std::shared_ptr<SSL_CTX>> ListenerTls(
    const std::string& cert_file, const std::string& key_file,
    const std::string& client_ca_file);

}  // namespace egress
