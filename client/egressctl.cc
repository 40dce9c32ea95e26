// egressctl: a curl-like command-line client for the egress service.
//
//   egressctl [--server ADDR] [-X METHOD] [-H 'Name: value']...
//             [-d DATA | --data-binary @FILE] [-i] [--stream] [--timeout 5s]
//             [--json] [-w FORMAT] [--retry N] [--token TOKEN]
//             [-o FILE] [-s] [-S] [-f] [--tls_ca FILE] URL
//
// The body goes to stdout unchanged (binary safe); -i prints the status line
// and headers first; --stream prints the body as it arrives (DoStream); --json
// prints the whole response, timing included, as JSON (body base64, as in
// proto3 JSON), or the error's google.rpc.Status; -w prints a line made from
// the timing after the body, as curl's -w does. Errors go to stderr as
// "egressctl: CODE: message" and "egressctl: reason REASON key=value...".
// curl's -o, -s, -S and -f mean what they mean to curl; -L is refused with a
// message (egress returns redirects as they are).
// Exit codes: 0 the upstream answered (any HTTP status), 1 the call failed,
// 2 bad usage, 22 with -f when the upstream answered 400 or more.
#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/egress_client.h"
#include "third_party/googleapis/google/rpc/status.pb.h"

namespace {

constexpr char kUsage[] =
    "usage: egressctl [options] URL\n"
    "  --server ADDR          egressd address (default $EGRESS_SERVER or "
    "127.0.0.1:50051)\n"
    "  -X, --request METHOD   HTTP method (default GET, or POST with a body)\n"
    "  -H, --header 'N: V'    add a request header (repeatable)\n"
    "  -d, --data DATA        request body\n"
    "  --data-binary @FILE    request body from FILE (@- for stdin), bytes as "
    "is\n"
    "  -i, --include          print the status line and headers first\n"
    "  --stream               print the body as it arrives (DoStream)\n"
    "  --timeout DURATION     upstream timeout and call deadline: 5s, 250ms\n"
    "  --retry N              let egressd retry a 429/503 with Retry-After,\n"
    "                         N attempts in all (idempotent requests)\n"
    "                         (default: 30s for a call, none for --stream)\n"
    "  --json                 print the whole response (or the error's\n"
    "                         google.rpc.Status) as JSON, with timing\n"
    "  -w, --write-out FORMAT print FORMAT after the body; %{name} is one of\n"
    "                         http_code time_total time_queued time_upstream\n"
    "                         time_dns time_connect time_tls time_first_byte\n"
    "                         remote_ip remote_port attempts reused\n"
    "                         size_download grpc_code reason (times in s;\n"
    "                         \\n and \\t are a newline and a tab)\n"
    "  --token TOKEN          bearer token (default $EGRESS_TOKEN)\n"
    "  --tls_ca FILE          use TLS, trusting these PEM roots\n"
    "  --tls_server_name NAME name to check in the server's certificate\n"
    "  -o, --output FILE      write the body (and -i's head) to FILE\n"
    "  -s, --silent           no error messages (the exit code still tells)\n"
    "  -S, --show-error       error messages even with -s\n"
    "  -f, --fail             an HTTP status of 400 or more prints nothing\n"
    "                         and exits 22, as curl's -f\n"
    "exit: 0 answered (any HTTP status), 1 call failed, 2 bad usage,\n"
    "      22 with -f and an HTTP status of 400 or more\n";

// Where the body goes (-o), and whether errors are shown (-s, -S).
FILE* output = stdout;
bool quiet = false;

// curl's -f: the exit code of an HTTP error.
constexpr int kHttpError = 22;

int Usage(const std::string& problem) {
  std::cerr << "egressctl: " << problem << "\n" << kUsage;
  return 2;
}

int Fail(const absl::Status& status, bool json) {
  if (quiet) return 1;
  std::cerr << "egressctl: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  const egress::ErrorDetails details = egress::ErrorDetailsOf(status);
  if (!details.reason.empty()) {
    std::string line = absl::StrCat("egressctl: reason ", details.reason);
    for (const auto& [key, value] : details.metadata) {
      absl::StrAppend(&line, " ", key, "=", value);
    }
    if (details.retry_delay) {
      absl::StrAppend(&line, " retry_after=", details.retry_delay->count(),
                      "ms");
    }
    std::cerr << line << "\n";
  }
  if (json) {
    google::rpc::Status proto;
    if (!proto.ParseFromString(egress::StatusDetailsOf(status))) {
      proto.set_code(static_cast<int>(status.code()));
      proto.set_message(std::string(status.message()));
    }
    std::string text;
    google::protobuf::util::JsonPrintOptions print;
    print.add_whitespace = true;
    (void)google::protobuf::util::MessageToJsonString(proto, &text, print);
    fwrite(text.data(), 1, text.size(), output);
    fflush(output);
  }
  return 1;
}

// -f: an HTTP status of 400 or more, nothing printed.
int HttpError(int status) {
  if (!quiet) {
    std::cerr << "egressctl: the upstream answered " << status
              << " (-f prints no body for 400 or more)\n";
  }
  return kHttpError;
}

double Secs(const google::protobuf::Duration& d) {
  return static_cast<double>(d.seconds()) + d.nanos() / 1e9;
}

// curl's -w: FORMAT with %{name} replaced from the call's outcome.
std::string WriteOut(absl::string_view format, const egress::Response* response,
                     size_t body_bytes, const absl::Status& status) {
  const egress::v1::Timing timing =
      response != nullptr ? response->timing : egress::v1::Timing();
  const egress::ErrorDetails details = egress::ErrorDetailsOf(status);
  const auto value = [&](absl::string_view name) -> std::string {
    const auto secs = [](const google::protobuf::Duration& d) {
      return absl::StrFormat("%.6f", Secs(d));
    };
    if (name == "http_code")
      return absl::StrCat(response ? response->status : 0);
    if (name == "time_total") return secs(timing.total());
    if (name == "time_queued") return secs(timing.queued());
    if (name == "time_upstream") return secs(timing.upstream());
    if (name == "time_dns") return secs(timing.dns());
    if (name == "time_connect") return secs(timing.connect());
    if (name == "time_tls") return secs(timing.tls());
    if (name == "time_first_byte") return secs(timing.first_byte());
    if (name == "remote_ip") return timing.remote_address();
    if (name == "remote_port") return absl::StrCat(timing.remote_port());
    if (name == "attempts") return absl::StrCat(timing.attempts());
    if (name == "reused") return timing.connection_reused() ? "1" : "0";
    if (name == "size_download") return absl::StrCat(body_bytes);
    if (name == "grpc_code") return absl::StatusCodeToString(status.code());
    if (name == "reason") return details.reason;
    return absl::StrCat("%{", name, "}");  // unknown: kept, as curl does
  };
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && format.substr(i, 2) == "%{") {
      const size_t end = format.find('}', i);
      if (end != absl::string_view::npos) {
        absl::StrAppend(&out, value(format.substr(i + 2, end - i - 2)));
        i = end;
        continue;
      }
    }
    if (format[i] == '\\' && i + 1 < format.size()) {
      const char next = format[i + 1];
      if (next == 'n' || next == 't' || next == '\\') {
        out += next == 'n' ? '\n' : next == 't' ? '\t' : '\\';
        ++i;
        continue;
      }
    }
    out += format[i];
  }
  return out;
}

void Write(absl::string_view bytes) {
  fwrite(bytes.data(), 1, bytes.size(), output);
}

// -w's line goes to stdout even with -o, as curl's does.
void WriteStdout(absl::string_view bytes) {
  fflush(output);
  fwrite(bytes.data(), 1, bytes.size(), stdout);
}

void WriteHead(const egress::Response& head) {
  std::string text = absl::StrCat("HTTP/1.1 ", head.status, "\r\n");
  for (const auto& [name, value] : head.headers) {
    absl::StrAppend(&text, name, ": ", value, "\r\n");
  }
  absl::StrAppend(&text, "\r\n");
  Write(text);
}

bool ReadAll(const std::string& path, std::string& out) {
  if (path == "-") {
    out.assign(std::istreambuf_iterator<char>(std::cin), {});
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), {});
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env_server = std::getenv("EGRESS_SERVER");
  const char* env_token = std::getenv("EGRESS_TOKEN");
  std::string server = env_server ? env_server : "127.0.0.1:50051";
  egress::ClientOptions options;
  if (env_token) options.bearer_token = env_token;
  egress::Request request;
  std::string method;
  bool has_body = false, include = false, stream = false, json = false;
  bool fail = false, silent = false, show_error = false;
  std::string tls_ca, write_out, output_path;
  bool has_write_out = false;

  // curl's bundles of one-letter options, "-sSf" or "-fsSo FILE": one each
  // (only -o takes a value, and only last).
  std::vector<std::string> args;
  for (int k = 1; k < argc; ++k) {
    const absl::string_view arg = argv[k];
    const bool bundle =
        arg.size() > 2 && arg[0] == '-' && arg[1] != '-' &&
        arg.substr(1).find_first_not_of("sSfiLo") == absl::string_view::npos &&
        arg.substr(1, arg.size() - 2).find('o') == absl::string_view::npos;
    if (!bundle) {
      args.emplace_back(arg);
      continue;
    }
    for (char c : arg.substr(1)) args.push_back(std::string("-") + c);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string inline_value;
    bool has_inline = false;
    if (absl::StartsWith(a, "--") && a.find('=') != std::string::npos) {
      inline_value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      has_inline = true;
    }
    auto value = [&](std::string& out) {
      if (has_inline) {
        out = inline_value;
        return true;
      }
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--server") {
      if (!value(server)) return Usage("--server needs an address");
    } else if (a == "-X" || a == "--request") {
      if (!value(method)) return Usage("-X needs a method");
    } else if (a == "-H" || a == "--header") {
      if (!value(v) || v.find(':') == std::string::npos) {
        return Usage("-H needs 'Name: value'");
      }
      request.headers.emplace_back(
          v.substr(0, v.find(':')),
          std::string(absl::StripLeadingAsciiWhitespace(
              absl::string_view(v).substr(v.find(':') + 1))));
    } else if (a == "-d" || a == "--data") {
      if (!value(request.body)) return Usage("-d needs data");
      has_body = true;
    } else if (a == "--data-binary") {
      if (!value(v) || v.empty() || v[0] != '@') {
        return Usage("--data-binary needs @FILE (or @- for stdin)");
      }
      if (!ReadAll(v.substr(1), request.body)) {
        return Usage(absl::StrCat("cannot read ", v.substr(1)));
      }
      has_body = true;
    } else if (a == "-i" || a == "--include") {
      include = true;
    } else if (a == "--stream") {
      stream = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "-w" || a == "--write-out") {
      if (!value(write_out)) return Usage("-w needs a format");
      has_write_out = true;
    } else if (a == "--timeout") {
      absl::Duration d;
      if (!value(v) || !absl::ParseDuration(v, &d) ||
          d <= absl::ZeroDuration()) {
        return Usage("--timeout needs a positive duration like 5s");
      }
      request.timeout = absl::ToChronoMilliseconds(d);
      // A little slack: the service's own timeout answers first, more
      // precisely.
      request.deadline = request.timeout + std::chrono::seconds(1);
    } else if (a == "--retry") {
      if (!value(v) || !absl::SimpleAtoi(v, &request.retry_attempts) ||
          request.retry_attempts < 1 || request.retry_attempts > 10) {
        return Usage("--retry needs a number of attempts from 1 to 10");
      }
    } else if (a == "--token") {
      if (!value(options.bearer_token)) return Usage("--token needs a token");
    } else if (a == "--tls_ca") {
      if (!value(tls_ca)) return Usage("--tls_ca needs a PEM file");
    } else if (a == "--tls_server_name") {
      if (!value(options.tls_server_name))
        return Usage("--tls_server_name needs a name");
    } else if (a == "-o" || a == "--output") {
      if (!value(output_path)) return Usage("-o needs a file");
    } else if (a == "-s" || a == "--silent") {
      silent = true;
    } else if (a == "-S" || a == "--show-error") {
      show_error = true;
    } else if (a == "-f" || a == "--fail") {
      fail = true;
    } else if (a == "-L" || a == "--location") {
      return Usage(
          "-L: egress returns redirects as they are (the 3xx and its "
          "Location header) and does not follow them; request the Location "
          "yourself");
    } else if (!a.empty() && a[0] == '-') {
      return Usage(absl::StrCat("unknown option ", a));
    } else if (request.url.empty()) {
      request.url = a;
    } else {
      return Usage("only one URL");
    }
  }
  if (request.url.empty()) return Usage("missing URL");
  if (stream && json) return Usage("--stream and --json do not go together");
  if (fail && json) return Usage("-f and --json do not go together");
  quiet = silent && !show_error;
  if (!output_path.empty() && output_path != "-") {
    output = fopen(output_path.c_str(), "wb");
    if (output == nullptr) {
      return Usage(absl::StrCat("-o: cannot write ", output_path));
    }
  }
  request.method = !method.empty() ? method : has_body ? "POST" : "GET";
  if (!tls_ca.empty()) {
    std::string roots;
    if (!ReadAll(tls_ca, roots))
      return Usage(absl::StrCat("cannot read ", tls_ca));
    options.credentials = grpc::SslCredentials({roots, "", ""});
  }
  options.load_balancing =
      absl::StartsWith(server, "dns:") ? "round_robin" : "";
  egress::EgressClient client(server, options);

  if (stream) {
    egress::Response head;
    bool got_head = false;
    size_t streamed = 0;
    absl::Status status = client.Stream(
        request,
        [&](const egress::Response& h) {
          head = h;
          got_head = true;
          if (include && !(fail && head.status >= 400)) WriteHead(head);
        },
        [&](absl::string_view bytes) {
          // -f: nothing of an error's body; stopping cancels the call.
          if (fail && head.status >= 400) return false;
          Write(bytes);
          streamed += bytes.size();
          fflush(output);  // each piece as it arrives
          return true;
        });
    if (fail && got_head && head.status >= 400) return HttpError(head.status);
    if (has_write_out) {
      WriteStdout(
          WriteOut(write_out, got_head ? &head : nullptr, streamed, status));
    }
    fflush(output);
    return status.ok() ? 0 : Fail(status, false);
  }

  absl::StatusOr<egress::Response> response = client.Do(request);
  if (!response.ok()) {
    if (has_write_out)
      WriteStdout(WriteOut(write_out, nullptr, 0, response.status()));
    return Fail(response.status(), json);
  }
  if (json) {
    egress::v1::DoResponse proto;
    proto.set_status(response->status);
    for (const auto& [name, value] : response->headers) {
      egress::v1::Header* h = proto.add_headers();
      h->set_name(name);
      h->set_value(value);
    }
    proto.set_body(response->body);
    *proto.mutable_timing() = response->timing;
    std::string text;
    google::protobuf::util::JsonPrintOptions print;
    print.add_whitespace = true;
    print.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(proto, &text, print);
    Write(text);
    return fflush(output) == 0 ? 0 : 1;
  }
  if (fail && response->status >= 400) return HttpError(response->status);
  if (include) WriteHead(*response);
  Write(response->body);
  if (has_write_out) {
    WriteStdout(WriteOut(write_out, &*response, response->body.size(),
                         absl::OkStatus()));
  }
  return fflush(output) == 0 && (output == stdout || fclose(output) == 0) ? 0
                                                                          : 1;
}
