// HttpSession's TLS: the client context (verification during the handshake,
// the oldest version accepted, resumption through the TlsSessionStore) and
// OpenSSL's callbacks that time handshakes and save sessions.
#include <httplib.h>
#include <openssl/ssl.h>

#include "service/transport/guarded_client.h"
#include "service/transport/http_session.h"  // IWYU pragma: associated
#include "service/transport/tls_trust.h"

namespace egress {
namespace {

// SSL_CTX ex_data slot holding the HttpSession that owns the context.
int SessionIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

HttpSession* SessionOf(const SSL* ssl) {
  return static_cast<HttpSession*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), SessionIndex()));
}

}  // namespace

std::unique_ptr<httplib::ClientImpl> HttpSession::NewTlsClient() {
  auto ssl = std::make_unique<internal::GuardedClient<httplib::SSLClient>>(
      *this, origin_.host, origin_.port);
  SSL_CTX* context = ssl->ssl_context();
  // OpenSSL verifies the chain and the host name during the handshake, not
  // httplib after it: httplib's verification reloads the system roots into
  // the context on every new client (tens of ms of CPU per session, and a
  // write to the shared store from several workers at once).
  ssl->enable_server_certificate_verification(false);
  SSL_CTX_set_min_proto_version(context, options_.tls_min_version);
  if (options_.verify_tls) {
    VerifyDuringHandshake(
        context,
        options_.origin_trust != nullptr ? options_.origin_trust->get()
                                         : options_.trust_store,
        options_.sni.empty() ? origin_.host : options_.sni, &verify_result_);
  }
  if (options_.client_identity != nullptr) {
    options_.client_identity->Use(context);
  }
  SSL_CTX_set_ex_data(context, SessionIndex(), this);
  SSL_CTX_set_info_callback(context, &HttpSession::OnTlsInfo);
  if (options_.tls_sessions != nullptr) {
    // The client side of OpenSSL's cache only hands each new session to
    // OnNewTlsSession; the store keeps them, for every session of the origin.
    SSL_CTX_set_session_cache_mode(
        context, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(context, &HttpSession::OnNewTlsSession);
  }
  connection_ = ssl.get();
  return ssl;
}

void HttpSession::OnTlsInfo(const SSL* ssl, int where, int) {
  HttpSession* session = SessionOf(ssl);
  if (session == nullptr) return;
  if ((where & SSL_CB_HANDSHAKE_START) != 0) {
    session->handshake_started_at_ = session->clock_.Now();
  }
  if ((where & SSL_CB_HANDSHAKE_DONE) != 0) {
    session->handshake_resumed_ = SSL_session_reused(ssl) == 1;
  }
}

int HttpSession::OnNewTlsSession(SSL* ssl, SSL_SESSION* tls_session) {
  HttpSession* session = SessionOf(ssl);
  if (session == nullptr || session->options_.tls_sessions == nullptr) {
    return 0;  // OpenSSL keeps its reference
  }
  session->options_.tls_sessions->Save(session->pool_key_, tls_session);
  return 1;  // the store took the reference
}

void HttpSession::PrepareTls(SSL* ssl) {
  handshake_resumed_ = false;
  if (!options_.sni.empty()) {
    SSL_set_tlsext_host_name(ssl, options_.sni.c_str());
  }
  if (options_.tls_sessions == nullptr) return;
  SSL_SESSION* saved = options_.tls_sessions->Take(pool_key_);
  if (saved == nullptr) return;
  SSL_set_session(ssl, saved);  // takes its own reference
  SSL_SESSION_free(saved);
}

}  // namespace egress
