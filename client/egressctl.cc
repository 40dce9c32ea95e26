// egressctl: a curl-like command-line client for the Egress service.
//
//   egressctl [--server=ADDR] [-X METHOD] [-H 'Name: value']... [-d DATA] [-i]
//             [--timeout=5s] URL
//
// The body goes to stdout unchanged (binary safe); -i prints the status line
// and headers first. Errors go to stderr as "egressctl: CODE: message". Exit
// codes: 0 the call succeeded (any HTTP status), 1 the call failed (the gRPC
// code is printed), 2 bad usage.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "proto/egress/v1/egress.grpc.pb.h"

namespace {

constexpr char kUsage[] =
    "usage: egressctl [--server=ADDR] [-X METHOD] [-H 'Name: value']... "
    "[-d DATA] [-i] [--timeout=DURATION] URL\n"
    "  --server=ADDR       egressd address (default 127.0.0.1:50051)\n"
    "  -X, --request M     HTTP method (default GET, or POST with -d)\n"
    "  -H, --header 'N: V' add a request header (repeatable)\n"
    "  -d, --data DATA     request body\n"
    "  -i, --include       print the status line and response headers first\n"
    "  --timeout=DURATION  upstream timeout and call deadline, e.g. 5s, 250ms\n"
    "exit: 0 answered (any HTTP status), 1 call failed, 2 bad usage\n";

int Usage(const std::string& problem) {
  std::cerr << "egressctl: " << problem << "\n" << kUsage;
  return 2;
}

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = "127.0.0.1:50051";
  std::string method;
  std::string url;
  std::string body;
  bool has_body = false;
  bool include = false;
  absl::Duration timeout = absl::ZeroDuration();
  egress::v1::EgressRequest request;

  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](absl::string_view flag) -> const std::string* {
      if (i + 1 >= args.size()) return nullptr;
      (void)flag;
      return &args[++i];
    };
    absl::string_view rest;
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (absl::StartsWith(a, "--server=")) {
      server = a.substr(9);
    } else if (a == "--server") {
      const std::string* v = value(a);
      if (!v) return Usage("--server needs an address");
      server = *v;
    } else if (a == "-X" || a == "--request") {
      const std::string* v = value(a);
      if (!v) return Usage("-X needs a method");
      method = *v;
    } else if (a == "-H" || a == "--header") {
      const std::string* v = value(a);
      if (!v) return Usage("-H needs 'Name: value'");
      size_t colon = v->find(':');
      if (colon == std::string::npos) return Usage("-H needs 'Name: value'");
      auto* h = request.add_headers();
      h->set_name(v->substr(0, colon));
      h->set_value(std::string(absl::StripLeadingAsciiWhitespace(
          absl::string_view(*v).substr(colon + 1))));
    } else if (a == "-d" || a == "--data") {
      const std::string* v = value(a);
      if (!v) return Usage("-d needs data");
      body = *v;
      has_body = true;
    } else if (a == "-i" || a == "--include") {
      include = true;
    } else if (absl::StartsWith(a, "--timeout=")) {
      if (!absl::ParseDuration(a.substr(10), &timeout) ||
          timeout <= absl::ZeroDuration()) {
        return Usage("--timeout needs a positive duration like 5s");
      }
    } else if (!a.empty() && a[0] == '-') {
      return Usage(absl::StrCat("unknown option ", a));
    } else if (url.empty()) {
      url = a;
    } else {
      return Usage("only one URL");
    }
  }
  if (url.empty()) return Usage("missing URL");

  request.set_method(method.empty() ? (has_body ? "POST" : "GET") : method);
  request.set_url(url);
  request.set_body(body);
  grpc::ClientContext context;
  if (timeout > absl::ZeroDuration()) {
    request.mutable_timeout()->set_seconds(absl::ToInt64Seconds(timeout));
    request.mutable_timeout()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(timeout % absl::Seconds(1))));
    // A little slack so the service's own timeout answers first, with its
    // more specific message.
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(timeout) +
                         std::chrono::seconds(1));
  }

  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(
      server, grpc::InsecureChannelCredentials(), channel_args);
  auto stub = egress::v1::Egress::NewStub(channel);
  egress::v1::EgressResponse response;
  grpc::Status status = stub->Do(&context, request, &response);
  if (!status.ok()) {
    std::cerr << "egressctl: " << CodeName(status.error_code()) << ": "
              << status.error_message() << "\n";
    return 1;
  }
  if (include) {
    std::string head = absl::StrCat("HTTP/1.1 ", response.status(), "\r\n");
    for (const auto& h : response.headers()) {
      absl::StrAppend(&head, h.name(), ": ", h.value(), "\r\n");
    }
    absl::StrAppend(&head, "\r\n");
    fwrite(head.data(), 1, head.size(), stdout);
  }
  fwrite(response.body().data(), 1, response.body().size(), stdout);
  return fflush(stdout) == 0 ? 0 : 1;
}
