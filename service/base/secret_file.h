// SecretFile: a secret kept in a file (an injected header's value, a
// proxy's credentials), read again when the file changes.
//
// Thread safety: thread-safe.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"

namespace egress {

// Its first line, read again when the file changes (checked with a stat(2) on
// each read, which follows the symlinks a Kubernetes Secret volume swaps).
class SecretFile {
 public:
  // Reads the file now; errors name `setting` and the path (never the value).
  static absl::StatusOr<std::shared_ptr<SecretFile>> Open(
      std::string path, const std::string& setting);
  // The value; on a change, the new one. When the file can no longer be read,
  // an error naming the path (the last value is not used: a secret that was
  // removed is not sent).
  absl::StatusOr<std::string> Value() const;
  const std::string& path() const { return path_; }

 private:
  explicit SecretFile(std::string path) : path_(std::move(path)) {}
  absl::Status ReadLocked() const;

  const std::string path_;
  mutable std::mutex mu_;
  mutable struct stat seen_ {};  // guarded by mu_
  mutable std::string value_;    // guarded by mu_
};

}  // namespace egress
