#include "service/base/secret_file.h"

#include <errno.h>
#include <string.h>

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace egress {
namespace {

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev &&
         a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

absl::StatusOr<std::shared_ptr<SecretFile>> SecretFile::Open(
    std::string path, const std::string& setting) {
  std::shared_ptr<SecretFile> file(new SecretFile(std::move(path)));
  std::lock_guard<std::mutex> lock(file->mu_);
  absl::Status read = file->ReadLocked();
  if (!read.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, ": ", read.message()));
  }
  return file;
}

absl::Status SecretFile::ReadLocked() const {
  struct stat now {};
  if (stat(path_.c_str(), &now) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path_, ": ", strerror(errno)));
  }
  if (value_.size() > 0 && SameFile(now, seen_)) return absl::OkStatus();
  std::ifstream in(path_);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path_, ": empty or unreadable"));
  }
  absl::StripAsciiWhitespace(&line);
  if (line.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path_, ": its first line is empty"));
  }
  // A value goes into a header line: no control characters.
  for (const char c : line) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
      return absl::FailedPreconditionError(
          absl::StrCat(path_, ": a control character in the value"));
    }
  }
  value_ = std::move(line);
  seen_ = now;
  return absl::OkStatus();
}

absl::StatusOr<std::string> SecretFile::Value() const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status read = ReadLocked();
  if (!read.ok()) {
    value_.clear();
    return read;
  }
  return value_;
}

}  // namespace egress
