// Rewrites the generated sections of docs/configuration.md (flags),
// docs/metrics.md (metric families), docs/errors.md and README.md (error
// reasons) from the code.
// Run: bazel run //docs:gen_reference
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "docs/reference.h"

namespace {

bool Rewrite(const std::string& path, const std::string& section,
             const std::string& body) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << "gen_reference: cannot read " << path << "\n";
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::string> updated =
      egress::docs::ReplaceSection(text.str(), section, body);
  if (!updated.ok()) {
    std::cerr << "gen_reference: " << path << ": " << updated.status() << "\n";
    return false;
  }
  std::ofstream out(path, std::ios::trunc);
  out << *updated;
  std::cout << "gen_reference: " << path << " (" << section << ")\n";
  return static_cast<bool>(out);
}

}  // namespace

int main() {
  const char* root = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  const std::string dir = root != nullptr ? std::string(root) + "/" : "";
  const bool ok =
      Rewrite(dir + "docs/configuration.md", "flags",
              egress::docs::FlagTable()) &
      Rewrite(dir + "docs/metrics.md", "metrics", egress::docs::MetricTable()) &
      Rewrite(dir + "docs/errors.md", "reasons",
              egress::docs::ReasonTable(/*metadata=*/true)) &
      Rewrite(dir + "README.md", "reasons",
              egress::docs::ReasonTable(/*metadata=*/false));
  return ok ? 0 : 1;
}
