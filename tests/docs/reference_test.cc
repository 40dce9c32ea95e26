// The reference documents against the code they describe: the flag and
// metric tables are what the code generates, every flag `egressd --help`
// prints is documented, every family a running egressd serves on /metrics
// is listed, and every relative link in the documents leads to a file.
#include "docs/reference.h"

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/egress_harness.h"

namespace egress {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Output(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  pclose(pipe);
  return out;
}

constexpr char kRegenerate[] =
    "The document differs from what the code generates: run "
    "`bazel run //docs:gen_reference` and commit the result.";

TEST(ReferenceTest, TheFlagTableIsTheCodes) {
  absl::StatusOr<std::string> section =
      docs::Section(Read("docs/configuration.md"), "flags");
  ASSERT_TRUE(section.ok()) << section.status();
  EXPECT_EQ(*section, docs::FlagTable()) << kRegenerate;
}

TEST(ReferenceTest, TheMetricTableIsTheCodes) {
  absl::StatusOr<std::string> section =
      docs::Section(Read("docs/metrics.md"), "metrics");
  ASSERT_TRUE(section.ok()) << section.status();
  EXPECT_EQ(*section, docs::MetricTable()) << kRegenerate;
}

TEST(ReferenceTest, TheReasonTablesAreTheCodes) {
  absl::StatusOr<std::string> errors =
      docs::Section(Read("docs/errors.md"), "reasons");
  ASSERT_TRUE(errors.ok()) << errors.status();
  EXPECT_EQ(*errors, docs::ReasonTable(/*metadata=*/true)) << kRegenerate;
  absl::StatusOr<std::string> readme =
      docs::Section(Read("README.md"), "reasons");
  ASSERT_TRUE(readme.ok()) << readme.status();
  EXPECT_EQ(*readme, docs::ReasonTable(/*metadata=*/false)) << kRegenerate;
}

TEST(ReferenceTest, EveryFlagInHelpIsDocumented) {
  const std::string help = Output("service/egressd --help 2>&1");
  const std::string documented = Read("docs/configuration.md");
  std::set<std::string> flags;
  const std::regex flag("\n    --([a-z0-9_]+) \\(");
  for (std::sregex_iterator it(help.begin(), help.end(), flag), end; it != end;
       ++it) {
    flags.insert((*it)[1]);
  }
  // --help lists every setting: as many as the generated table has rows.
  const std::string table = docs::FlagTable();
  size_t rows = 0;
  for (size_t at = 0; (at = table.find("\n| `--", at)) != std::string::npos;
       ++at) {
    ++rows;
  }
  EXPECT_EQ(flags.size(), rows) << help;
  for (const std::string& name : flags) {
    EXPECT_NE(documented.find("| `--" + name + "` |"), std::string::npos)
        << "--" << name << " is in --help but not in docs/configuration.md";
  }
}

TEST(ReferenceTest, EveryFamilyServedOnMetricsIsListed) {
  EgressHarness egress;
  egress.Start();
  const std::string served = egress.MetricsText();
  const std::string documented = Read("docs/metrics.md");
  std::set<std::string> families;
  const std::regex type("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ");
  for (std::sregex_iterator it(served.begin(), served.end(), type), end;
       it != end; ++it) {
    families.insert((*it)[1]);
  }
  EXPECT_GE(families.size(), 15u) << served;
  for (const std::string& name : families) {
    EXPECT_NE(documented.find("| `" + name + "` |"), std::string::npos)
        << name << " is served on /metrics but not listed in docs/metrics.md";
  }
}

// The README starts with the two commands that scripts/fresh-debian-check and
// .ci/run run; they must stay the same.
TEST(ReferenceTest, TheReadmeStartsWithTheTwoCommands) {
  const std::string readme = Read("README.md");
  const size_t block = readme.find("```sh\n");
  ASSERT_NE(block, std::string::npos);
  const std::string first =
      readme.substr(block, readme.find("```\n", block + 6) - block);
  EXPECT_THAT(first,
              ::testing::HasSubstr(
                  "\nscripts/setup.sh && bazel run //service:egressd\n"));
  EXPECT_THAT(first, ::testing::HasSubstr(
                         "\nscripts/setup.sh --tests && bazel test //...\n"));
}

TEST(ReferenceTest, RelativeLinksLeadToFiles) {
  const std::vector<std::string> documents = {
      "README.md",        "docs/api.md",      "docs/errors.md",
      "docs/limits.md",   "docs/security.md", "docs/configuration.md",
      "docs/metrics.md",  "docs/deploy.md",   "docs/development.md",
      "docs/BUILDING.md", "bench/README.md",  "service/ARCHITECTURE.md"};
  const std::regex link("\\]\\(([^)#:\\s]+)(#[^)]*)?\\)");
  for (const std::string& document : documents) {
    const std::string text = Read(document);
    const std::string dir = document.substr(0, document.rfind('/') + 1);
    for (std::sregex_iterator it(text.begin(), text.end(), link), end;
         it != end; ++it) {
      const std::string target = dir + std::string((*it)[1]);
      std::ifstream file(target);
      EXPECT_TRUE(file.good())
          << document << " links to " << (*it)[1] << ", which does not exist";
    }
  }
}

}  // namespace
}  // namespace egress
