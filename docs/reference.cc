#include "docs/reference.h"

#include <prometheus/metric_family.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "service/base/error_details.h"
#include "service/server/config.h"
#include "service/telemetry/metrics.h"

namespace egress {
namespace docs {
namespace {

std::string Cell(const std::string& text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}, {"\n", " "}});
}

std::string Begin(const std::string& name) {
  return absl::StrCat("<!-- generated: ", name,
                      " (bazel run //docs:gen_reference) -->\n");
}

std::string End(const std::string& name) {
  return absl::StrCat("<!-- end: ", name, " -->");
}

const char* TypeName(prometheus::MetricType type) {
  switch (type) {
    case prometheus::MetricType::Counter:
      return "counter";
    case prometheus::MetricType::Gauge:
      return "gauge";
    case prometheus::MetricType::Histogram:
      return "histogram";
    case prometheus::MetricType::Summary:
      return "summary";
    default:
      return "untyped";
  }
}

// label name -> the values its series carry.
using Labels = std::map<std::string, std::set<std::string>>;

std::map<std::string, Labels> LabelsByFamily(
    const std::vector<prometheus::MetricFamily>& families) {
  std::map<std::string, Labels> out;
  for (const prometheus::MetricFamily& f : families) {
    Labels& labels = out[f.name];
    for (const prometheus::ClientMetric& m : f.metric) {
      for (const prometheus::ClientMetric::Label& l : m.label) {
        labels[l.name].insert(l.value);
      }
    }
  }
  return out;
}

// A setting's bounds (settings.h) as the table shows them; "" for the flags
// that are commands, not settings (--config, --print_config, ...).
std::string Bounds(absl::string_view flag) {
  for (size_t i = 0; i < kSettingCount; ++i) {
    const SettingInfo& s = kSettings[i];
    if (flag != s.name) continue;
    std::string bounds;
    if (s.duration) {
      bounds = s.min > 0 ? "> 0" : "≥ 0";
    } else if (s.max != kNoMax) {
      bounds = absl::StrFormat("%.15g to %.15g", s.min, s.max);
    } else if (s.min > 0) {
      bounds = absl::StrFormat("≥ %.15g", s.min);
    }
    return bounds;
  }
  return "";
}

// How a change of the setting takes effect (settings.h); "" for commands.
std::string Change(absl::string_view flag) {
  for (size_t i = 0; i < kSettingCount; ++i) {
    const SettingInfo& s = kSettings[i];
    if (flag != s.name) continue;
    switch (s.when) {
      case SettingWhen::kAtStart:
        return "restart";
      case SettingWhen::kReloaded:
        return "restart; the file's contents: reload";
      case SettingWhen::kLive:
        return "reload";
    }
  }
  return "";
}

}  // namespace

std::string FlagTable() {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::EndsWith(flag->Filename(), "service/server/config.cc")) {
      flags.push_back(flag);
    }
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  std::string out =
      "| flag | default | bounds | change | meaning |\n"
      "| --- | --- | --- | --- | --- |\n";
  for (const absl::CommandLineFlag* f : flags) {
    const std::string value = f->DefaultValue();
    absl::StrAppend(&out, "| `--", f->Name(), "` | ",
                    value.empty() ? "(none)" : absl::StrCat("`", value, "`"),
                    " | ", Bounds(f->Name()), " | ", Change(f->Name()), " | ",
                    Cell(f->Help()), " |\n");
  }
  return out;
}

std::string ReasonTable(bool metadata) {
  std::string out = metadata
                        ? "| reason | code | when | metadata |\n"
                          "| --- | --- | --- | --- |\n"
                        : "| reason | code | when |\n| --- | --- | --- |\n";
  for (const ErrorReasonDoc& r : ErrorReasonDocs()) {
    absl::StrAppend(&out, "| `", r.name, "` | ", r.code, " | ", r.when, " |");
    if (metadata) absl::StrAppend(&out, " ", r.metadata, " |");
    absl::StrAppend(&out, "\n");
  }
  return out;
}

std::string MetricTable() {
  Metrics metrics;
  // Series that exist from the start have a fixed set of label values; the
  // others (egress_requests_total) appear with the calls, so one call is
  // recorded to learn their label names.
  const std::map<std::string, Labels> fixed = LabelsByFamily(metrics.Collect());
  metrics.RecordCall("GET", 200, absl::StatusCode::kOk, 0.001);
  std::vector<prometheus::MetricFamily> families = metrics.Collect();
  const std::map<std::string, Labels> seen = LabelsByFamily(families);
  std::sort(families.begin(), families.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::string out =
      "| family | type | labels | meaning |\n| --- | --- | --- | --- |\n";
  for (const prometheus::MetricFamily& f : families) {
    std::vector<std::string> labels;
    // A family without series yet is not collected at all.
    const auto found = fixed.find(f.name);
    const Labels none;
    const Labels& at_start = found != fixed.end() ? found->second : none;
    for (const auto& [name, values] : seen.at(f.name)) {
      const auto known = at_start.find(name);
      if (known == at_start.end()) {
        labels.push_back(absl::StrCat("`", name, "`"));
      } else {
        labels.push_back(
            absl::StrCat("`", name, "`: ", absl::StrJoin(known->second, ", ")));
      }
    }
    absl::StrAppend(&out, "| `", f.name, "` | ", TypeName(f.type), " | ",
                    labels.empty() ? "" : Cell(absl::StrJoin(labels, "; ")),
                    " | ", Cell(f.help), " |\n");
  }
  return out;
}

absl::StatusOr<std::string> Section(const std::string& doc,
                                    const std::string& name) {
  const size_t begin = doc.find(Begin(name));
  const size_t end = doc.find(End(name));
  if (begin == std::string::npos || end == std::string::npos || end < begin) {
    return absl::NotFoundError(absl::StrCat("no generated section \"", name,
                                            "\" (markers \"", Begin(name),
                                            "\" and \"", End(name), "\")"));
  }
  const size_t start = begin + Begin(name).size();
  return doc.substr(start, end - start);
}

absl::StatusOr<std::string> ReplaceSection(const std::string& doc,
                                           const std::string& name,
                                           const std::string& body) {
  absl::StatusOr<std::string> old = Section(doc, name);
  if (!old.ok()) return old.status();
  const size_t start = doc.find(Begin(name)) + Begin(name).size();
  return absl::StrCat(doc.substr(0, start), body,
                      doc.substr(start + old->size()));
}

}  // namespace docs
}  // namespace egress
