// The reference tables that are generated from the code, so that they cannot
// drift from it: every flag of egressd (docs/configuration.md), every metric
// family it exports (docs/metrics.md), and every error reason (docs/errors.md
// and README.md).
//
// In a document, a generated section sits between two markers:
//   <!-- generated: flags (bazel run //docs:gen_reference) -->
//   ...
//   <!-- end: flags -->
// `bazel run //docs:gen_reference` rewrites them; tests/docs/reference_test
// fails when a committed document differs from what the code generates.
//
// Thread safety: call from one thread (reads the flag registry).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace egress {
namespace docs {

// A Markdown table of every flag defined in service/server/config.cc: name,
// default and help text, sorted by name.
std::string FlagTable();

// A Markdown table of every error reason (service/base/error_details.cc):
// reason, gRPC code, when, and with `metadata` the ErrorInfo metadata keys.
std::string ReasonTable(bool metadata);

// A Markdown table of every metric family the service exports: name, type,
// labels (with their values where the set is fixed) and help text.
std::string MetricTable();

// The text between the markers of section `name` in `doc`.
absl::StatusOr<std::string> Section(const std::string& doc,
                                    const std::string& name);

// `doc` with the text of section `name` replaced by `body`.
absl::StatusOr<std::string> ReplaceSection(const std::string& doc,
                                           const std::string& name,
                                           const std::string& body);

}  // namespace docs
}  // namespace egress
