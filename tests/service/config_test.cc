// Config: defaults, then the --config file (text or JSON), then the flags given
// on the command line; errors name the file, line or key.
#include "service/server/config.h"

#include <fstream>
#include <set>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/server/config.pb.h"

ABSL_DECLARE_FLAG(std::string, config);
ABSL_DECLARE_FLAG(uint32_t, workers);

namespace egress {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  void TearDown() override {
    absl::SetFlag(&FLAGS_config, "");
    absl::SetFlag(&FLAGS_workers, 64);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  // As if egressd ran with `args` (flags already parsed into FLAGS_*).
  absl::StatusOr<Config> Load(std::vector<std::string> args) {
    args.insert(args.begin(), "egressd");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return ConfigFromFlags(static_cast<int>(argv.size()), argv.data());
  }
};

TEST_F(ConfigTest, DefaultsWithoutFileOrFlags) {
  absl::StatusOr<Config> c = Load({});
  ASSERT_TRUE(c.ok()) << c.status();
  // Elastic workers: 16 warm, up to 4,096; --workers=N makes a fixed pool.
  EXPECT_EQ(c->MinWorkers(), 16u);
  EXPECT_EQ(c->MaxWorkers(), 4096u);
  EXPECT_EQ(c->inflight.max_per_origin, 100u);
  EXPECT_EQ(c->inflight.max_per_caller, 0u);
  EXPECT_EQ(c->pool.keepalive_timeout, std::chrono::seconds(30));
  EXPECT_TRUE(c->Validate().ok());
  c->workers = 8;
  EXPECT_EQ(c->MinWorkers(), 8u);
  EXPECT_EQ(c->MaxWorkers(), 8u);
}

TEST_F(ConfigTest, TextFileOverridesDefaultsAndFlagsOverrideTheFile) {
  absl::SetFlag(
      &FLAGS_config,
      Write("c.textproto",
            "workers: 8\nmax_queue: 10\nkeepalive_timeout { seconds: 45 }\n"
            "identity_hosts { key: \"billing\" value { hosts: "
            "\"api.stripe.com\" ports: \"443,8443\" } }\n"));
  absl::SetFlag(&FLAGS_workers, 16);
  absl::StatusOr<Config> c = Load({"--config=x", "--workers=16"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->workers, 16u);  // the flag wins
  EXPECT_EQ(c->worker_pool.max_queue, 10u);
  EXPECT_EQ(c->pool.keepalive_timeout, std::chrono::seconds(45));
  EXPECT_THAT(c->identity_hosts["billing"].hosts,
              ElementsAre("api.stripe.com"));
  EXPECT_EQ(c->identity_hosts["billing"].ports, "443,8443");
  EXPECT_THAT(ConfigToText(*c), HasSubstr("workers: 16"));
}

TEST_F(ConfigTest, JsonFileUsesProtoJsonNames) {
  absl::SetFlag(
      &FLAGS_config,
      Write("c.json",
            R"({"workers": 4, "dnsTtl": "60s", "accessLog": false})"));
  absl::StatusOr<Config> c = Load({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->workers, 4u);
  EXPECT_EQ(c->dns.ttl, std::chrono::seconds(60));
  EXPECT_FALSE(c->service.access_log);
}

TEST_F(ConfigTest, UnknownKeysAreErrorsNamingThem) {
  absl::SetFlag(&FLAGS_config,
                Write("bad.json", R"({"workers": 4, "wrokers": 5})"));
  absl::StatusOr<Config> c = Load({});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("wrokers"));
  absl::SetFlag(&FLAGS_config, Write("bad.textproto", "workers: 4\nnope: 1\n"));
  c = Load({});
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("bad.textproto:2:"));
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("no field named \"nope\""));
}

TEST_F(ConfigTest, UnreadableFileIsAnError) {
  absl::SetFlag(&FLAGS_config, "/nonexistent/egressd.textproto");
  EXPECT_THAT(
      std::string(Load({}).status().message()),
      HasSubstr("--config: cannot read /nonexistent/egressd.textproto"));
}

TEST_F(ConfigTest, InvalidValuesNameTheKey) {
  Config c;
  c.min_workers = 0;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("--min_workers"));
  c = Config();
  c.max_workers = c.min_workers - 1;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("--max_workers"));
  c = Config();
  c.tls_cert = "cert.pem";
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("--tls_key"));
  c = Config();
  c.client_ca = "ca.pem";
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("mutual TLS"));
  c = Config();
  c.allow_ports = "25,*";
  EXPECT_THAT(std::string(c.Validate().message()),
              HasSubstr("--allow_ports: \"*\" (every port) must be written "
                        "alone"));
}

TEST_F(ConfigTest, MetricsOriginsAreNormalizedOrRefusedByName) {
  absl::StatusOr<std::vector<std::string>> origins = ParseMetricsOrigins(
      " HTTPS://API.Example.com. , http://[::1]:8080/, http://10.0.0.1:81,,"
      "http://0x7f.1:8080, http://[::FFFF:7f00:1]");
  ASSERT_TRUE(origins.ok()) << origins.status();
  // Spelled as requests' origins are (request_validation parses both), so
  // that the legacy and upper-case spellings match their calls.
  EXPECT_THAT(*origins, ::testing::ElementsAre(
                            "https://api.example.com:443", "http://[::1]:8080",
                            "http://10.0.0.1:81", "http://127.0.0.1:8080",
                            "http://[::ffff:127.0.0.1]:80"));
  Config c;
  c.metrics_origins = "api.example.com";
  EXPECT_THAT(std::string(c.Validate().message()),
              HasSubstr("--metrics_origins: \"api.example.com\" is not "
                        "http://host[:port]"));
  c.metrics_origins = "http://a.example:99999";
  EXPECT_THAT(std::string(c.Validate().message()),
              HasSubstr("port 99999 is out of range"));
  c.metrics_origins = "http://a.example/path";
  EXPECT_THAT(std::string(c.Validate().message()),
              HasSubstr("has a path, query or fragment"));
  c.metrics_origins = "http://a b.example";
  EXPECT_THAT(std::string(c.Validate().message()),
              HasSubstr("has an invalid character"));
}

// An open relay needs saying so: beyond loopback, egressd starts only with
// caller authentication or --allow_unauthenticated.
TEST_F(ConfigTest, ListeningBeyondLoopbackNeedsAuthentication) {
  Config c;
  EXPECT_EQ(c.front.listen, "127.0.0.1:50051");
  EXPECT_TRUE(c.Validate().ok());
  for (const char* listen : {"0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051",
                             ":50051", "egress.example.com:50051"}) {
    c = Config();
    c.front.listen = listen;
    absl::Status status = c.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("--listen: " + std::string(listen) +
                          " is reachable beyond this machine"))
        << listen;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("--allow_unauthenticated"));
    c.allow_unauthenticated = true;
    EXPECT_TRUE(c.Validate().ok()) << listen;
    c.allow_unauthenticated = false;
    c.auth_tokens_file = "tokens.txt";
    EXPECT_TRUE(c.Validate().ok()) << listen;
  }
  for (const char* listen :
       {"127.0.0.1:0", "127.8.9.1:50051", "[::1]:50051", "localhost:50051",
        "unix:/run/egress.sock", "ipv4:127.0.0.1:50051"}) {
    EXPECT_TRUE(IsLoopbackListen(listen)) << listen;
  }
  for (const char* listen : {"0.0.0.0:1", "[::]:1", "[::ffff:10.0.0.1]:1",
                             "localhost.example.com:1", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackListen(listen)) << listen;
  }
}

}  // namespace
}  // namespace egress

namespace egress {
namespace {

// settings.h is the one declaration; config.proto is the file's schema. They
// must name the same settings, or a setting would exist as a flag and not in
// the file (or the other way round).
TEST(SettingsTableTest, TheTableAndConfigProtoNameTheSameSettings) {
  std::set<std::string> table;
  for (size_t i = 0; i < kSettingCount; ++i) table.insert(kSettings[i].name);
  std::set<std::string> proto;
  const google::protobuf::Descriptor* d =
      egress::config::v1::EgressConfig::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    // The per-caller and per-origin tables exist only in the file (no flag
    // can hold them).
    if (d->field(i)->name() != "identity_hosts" &&
        d->field(i)->name() != "origins") {
      proto.insert(d->field(i)->name());
    }
  }
  EXPECT_EQ(table, proto);
  EXPECT_EQ(table.size(), kSettingCount) << "a setting is declared twice";
}

TEST(SettingsTableTest, ValidateHoldsEverySettingToTheTablesBounds) {
  const auto refused = [](auto set) {
    Config c;
    set(c);
    return std::string(c.Validate().message());
  };
  EXPECT_EQ(refused([](Config& c) { c.sessions.session.max_errors = 0; }),
            "--max_session_errors: must be >= 1");
  EXPECT_EQ(refused([](Config& c) { c.max_header_list_bytes = 100; }),
            "--max_header_list_bytes: must be 1024 to 1048576");
  EXPECT_EQ(refused([](Config& c) { c.retry_budget_ratio = 1.5; }),
            "--retry_budget_ratio: must be 0 to 1");
  EXPECT_EQ(
      refused([](Config& c) { c.dns.negative_ttl = std::chrono::seconds(-1); }),
      "--dns_negative_ttl: must not be negative");
  EXPECT_EQ(refused([](Config& c) {
              c.sessions.session.connect_timeout = std::chrono::seconds(0);
            }),
            "--connect_timeout: must be positive");
  EXPECT_TRUE(Config().Validate().ok());
}

}  // namespace
}  // namespace egress
