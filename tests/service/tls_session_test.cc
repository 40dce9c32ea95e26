// HttpSession against real TLS upstreams whose certificates the test generates:
// verification against a CA, reuse of one handshake, and each kind of refusal.
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/transport/http_session.h"
#include "service/transport/tls_session_store.h"
#include "service/transport/tls_trust.h"
#include "tests/fakes/child_process.h"
#include "tests/fakes/counting_observer.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_upstream.h"
#include "tests/fakes/session_calls.h"
#include "tests/fakes/test_certs.h"

namespace egress {
namespace {

using ::testing::HasSubstr;

class TlsSessionTest : public ::testing::Test {
 protected:
  TlsSessionTest() : ca_(::testing::TempDir()) {
    auto trust = TrustStore::Load(ca_.cert_path());
    EXPECT_TRUE(trust.ok()) << trust.status();
    trust_ = std::move(*trust);
    options_.trust_store = trust_->get();
  }

  // An https session to "localhost" (resolved by httplib from /etc/hosts) or
  // 127.0.0.1, on `upstream`'s port.
  absl::StatusOr<UpstreamResponse> Call(HttpSession& session, int port,
                                        const std::string& host) {
    return SendWhole(session, MakeRequest(host, port, "/echo", "GET", "https"),
                     Deadline::In(clock_, std::chrono::seconds(5)));
  }
  // The status of one call to "localhost" on an upstream serving `leaf`.
  absl::Status CallLocalhostServing(const CertFiles& leaf) {
    FakeUpstream upstream(leaf.cert, leaf.key);
    auto session = SessionTo("localhost", upstream.port());
    return Call(*session, upstream.port(), "localhost").status();
  }

  std::unique_ptr<HttpSession> SessionTo(const std::string& host, int port) {
    return std::make_unique<HttpSession>(
        Origin{"https", host, static_cast<uint16_t>(port)}, options_, clock_,
        observer_);
  }

  TestCa ca_;
  std::unique_ptr<TrustStore> trust_;
  FakeClock clock_;
  CountingObserver observer_;
  SessionOptions options_;
};

TEST_F(TlsSessionTest, VerifiesAgainstTheCaAndReusesOneHandshake) {
  CertFiles leaf = ca_.Issue({"good", {"localhost"}, {"127.0.0.1"}});
  FakeUpstream upstream(leaf.cert, leaf.key);
  auto session = SessionTo("localhost", upstream.port());
  for (int i = 0; i < 20; ++i) {
    auto r = Call(*session, upstream.port(), "localhost");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->connection_reused, i > 0);
  }
  EXPECT_EQ(observer_.tls_handshakes.load(), 1);
  EXPECT_EQ(upstream.connections(), 1);
}

TEST_F(TlsSessionTest, IpAddressInSubjectAltNameVerifies) {
  CertFiles leaf = ca_.Issue({"by_ip", {}, {"127.0.0.1"}});
  FakeUpstream upstream(leaf.cert, leaf.key);
  auto session = SessionTo("127.0.0.1", upstream.port());
  auto r = Call(*session, upstream.port(), "127.0.0.1");
  EXPECT_TRUE(r.ok()) << r.status();
}

TEST_F(TlsSessionTest, SelfSignedCertificateIsRefused) {
  CertFiles leaf = ca_.SelfSigned({"self", {"localhost"}, {}});
  FakeUpstream upstream(leaf.cert, leaf.key);
  auto session = SessionTo("localhost", upstream.port());
  auto r = Call(*session, upstream.port(), "localhost");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("certificate verify failed: self-signed certificate"));
  EXPECT_EQ(session->consecutive_errors(),
            1);  // a TLS failure is a session error
  EXPECT_EQ(upstream.requests(), 0);
}

TEST_F(TlsSessionTest, ExpiredCertificateIsRefused) {
  CertSpec spec{"expired", {"localhost"}, {}};
  spec.not_before = std::chrono::hours(-48);
  spec.not_after = std::chrono::hours(-24);
  absl::Status status = CallLocalhostServing(ca_.Issue(spec));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("certificate verify failed: certificate has expired"));
}

TEST_F(TlsSessionTest, CertificateForAnotherNameIsRefused) {
  absl::Status status =
      CallLocalhostServing(ca_.Issue({"other", {"other.example"}, {}}));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("does not match host name \"localhost\""));
}

TEST_F(TlsSessionTest, UntrustedRootIsRefusedWithoutTheCaFile) {
  auto system_only = TrustStore::Load("");
  ASSERT_TRUE(system_only.ok());
  options_.trust_store = (*system_only)->get();
  absl::Status status =
      CallLocalhostServing(ca_.Issue({"good2", {"localhost"}, {}}));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("unable to get local issuer certificate"));
}

TEST_F(TlsSessionTest, SessionsTrustOnlyTheGivenRootsAndLeaveTheStoreAlone) {
  // A store holding the test CA and nothing else, as --ca_file would add it.
  X509_STORE* store = X509_STORE_new();
  ASSERT_EQ(X509_STORE_load_file(store, ca_.cert_path().c_str()), 1);
  options_.trust_store = store;
  const int objects = sk_X509_OBJECT_num(X509_STORE_get0_objects(store));
  CertFiles leaf = ca_.Issue({"only", {"localhost"}, {}});
  FakeUpstream upstream(leaf.cert, leaf.key);
  for (int i = 0; i < 3; ++i) {
    // A fresh session each time: nothing is loaded into the shared store
    // (such as the system roots), however many sessions are created.
    auto session = SessionTo("localhost", upstream.port());
    auto r = Call(*session, upstream.port(), "localhost");
    EXPECT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(sk_X509_OBJECT_num(X509_STORE_get0_objects(store)), objects);
  X509_STORE_free(store);
}

TEST_F(TlsSessionTest, WorkersCreateSessionsConcurrentlyOnTheSharedStore) {
  // Every worker builds its own sessions on the one shared X509_STORE; under
  // load they do so at the same moment. Nothing may write to the store then
  // (httplib's own verification loaded the system roots into it each time; at
  // 64 workers on HTTPS that corrupted the heap in bench/compare).
  CertFiles leaf = ca_.Issue({"busy", {"localhost"}, {}});
  FakeUpstream upstream(leaf.cert, leaf.key);
  std::atomic<int> ok{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 8; ++t) {
    workers.emplace_back([&] {
      CountingObserver observer;
      for (int i = 0; i < 10; ++i) {
        HttpSession session(Origin{"https", "localhost",
                                   static_cast<uint16_t>(upstream.port())},
                            options_, clock_, observer);
        if (Call(session, upstream.port(), "localhost").ok()) ++ok;
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(ok.load(), 80);
}

TEST_F(TlsSessionTest, InsecureSkipVerifyAcceptsAnything) {
  CertFiles leaf = ca_.SelfSigned({"self2", {"other.example"}, {}});
  FakeUpstream upstream(leaf.cert, leaf.key);
  options_.verify_tls = false;
  auto session = SessionTo("localhost", upstream.port());
  auto r = Call(*session, upstream.port(), "localhost");
  EXPECT_TRUE(r.ok()) << r.status();
}

TEST_F(TlsSessionTest, PlainHttpServerOnAnHttpsUrlIsAHandshakeFailure) {
  // A plain HTTP server answers the ClientHello as nginx does: 400, close.
  int port = 0;
  const int listener = ListenOnLoopback(port);
  ASSERT_GE(listener, 0);
  std::thread plain([listener] {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    char hello[512];
    (void)recv(fd, hello, sizeof(hello), 0);
    const char answer[] =
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
    (void)send(fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL);
    close(fd);
  });
  auto session = SessionTo("127.0.0.1", port);
  auto r = Call(*session, port, "127.0.0.1");
  plain.join();
  close(listener);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("TLS handshake failed"));
}

// A TLS upstream, one connection at a time, that ends the first connection
// with close_notify (keeping the TCP connection open, as a server closing an
// idle keep-alive connection does before its FIN): after answering its first
// request, or instead of answering its second. Later connections answer every
// request. Serves until the client closes its second connection.
class CloseNotifyUpstream {
 public:
  enum class When { kAfterFirstAnswer, kInsteadOfSecondAnswer };

  CloseNotifyUpstream(const CertFiles& leaf, When when) : when_(when) {
    listener_ = ListenOnLoopback(port_);
    ctx_ = SSL_CTX_new(TLS_server_method());
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx_, leaf.cert.c_str()), 1);
    EXPECT_EQ(
        SSL_CTX_use_PrivateKey_file(ctx_, leaf.key.c_str(), SSL_FILETYPE_PEM),
        1);
    thread_ = std::thread([this] {
      for (int connection = 1; connection <= 2; ++connection) {
        const int fd = accept(listener_, nullptr, nullptr);
        if (fd < 0) return;
        Serve(fd, connection);
        close(fd);
      }
    });
  }
  ~CloseNotifyUpstream() {
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    close(listener_);
    SSL_CTX_free(ctx_);
  }
  int port() const { return port_; }

 private:
  // Reads one request head; false when the client closed.
  static bool ReadRequest(SSL* ssl) {
    std::string head;
    char chunk[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      const int n = SSL_read(ssl, chunk, sizeof(chunk));
      if (n <= 0) return false;
      head.append(chunk, n);
    }
    return true;
  }
  static bool Answer(SSL* ssl) {
    const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    return SSL_write(ssl, ok.data(), static_cast<int>(ok.size())) > 0;
  }
  void Serve(int fd, int connection) {
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      for (int request = 1; ReadRequest(ssl); ++request) {
        const bool end_here =
            connection == 1 &&
            (when_ == When::kAfterFirstAnswer || request == 2);
        if (!(when_ == When::kInsteadOfSecondAnswer && end_here) &&
            !Answer(ssl)) {
          break;
        }
        if (end_here) {
          SSL_shutdown(ssl);  // close_notify; the TCP connection stays open
          char byte;
          while (recv(fd, &byte, 1, 0) > 0) {
          }  // until the client closes
          break;
        }
      }
    }
    SSL_free(ssl);
  }

  When when_;
  int port_ = 0;
  int listener_ = -1;
  SSL_CTX* ctx_ = nullptr;
  std::thread thread_;
};

// A close_notify that arrived while the connection was idle is seen before
// the next request is written: a new connection, no resend.
TEST_F(TlsSessionTest, CloseNotifyWhileIdleOpensANewConnection) {
  signal(SIGPIPE, SIG_IGN);
  CertFiles leaf = ca_.Issue({"notify", {"localhost"}, {"127.0.0.1"}});
  CloseNotifyUpstream upstream(leaf,
                               CloseNotifyUpstream::When::kAfterFirstAnswer);
  auto session = SessionTo("localhost", upstream.port());
  ASSERT_TRUE(Call(*session, upstream.port(), "localhost").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 0; i < 3; ++i) {
    auto r = Call(*session, upstream.port(), "localhost");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "ok");
  }
  EXPECT_EQ(observer_.stale_retries.load(), 0);
  EXPECT_EQ(observer_.opened.load(), 2);
  session.reset();
}

// A close_notify that comes in answer to a request on a reused connection is
// read as the answer: the connection had gone stale, and a GET is sent again
// on a new one; a POST is not (it may have been delivered).
TEST_F(TlsSessionTest, CloseNotifyInsteadOfAnAnswerIsAStaleConnection) {
  signal(SIGPIPE, SIG_IGN);
  CertFiles leaf = ca_.Issue({"notify", {"localhost"}, {"127.0.0.1"}});
  {
    CloseNotifyUpstream upstream(
        leaf, CloseNotifyUpstream::When::kInsteadOfSecondAnswer);
    auto session = SessionTo("localhost", upstream.port());
    ASSERT_TRUE(Call(*session, upstream.port(), "localhost").ok());
    auto r = Call(*session, upstream.port(), "localhost");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "ok");
    EXPECT_EQ(observer_.stale_retries.load(), 1);
    EXPECT_EQ(observer_.opened.load(), 2);
    session.reset();
  }
  CloseNotifyUpstream upstream(
      leaf, CloseNotifyUpstream::When::kInsteadOfSecondAnswer);
  auto session = SessionTo("localhost", upstream.port());
  ASSERT_TRUE(Call(*session, upstream.port(), "localhost").ok());
  auto post = SendWhole(
      *session, MakeRequest("localhost", upstream.port(), "/", "POST", "https"),
      Deadline::In(clock_, std::chrono::seconds(5)));
  ASSERT_FALSE(post.ok());
  EXPECT_EQ(post.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(post.status().message()),
              HasSubstr("is not idempotent, so it was not retried"));
  EXPECT_EQ(observer_.stale_retries.load(), 1);  // the GET's only
  session.reset();
}

TEST(TrustStoreTest, UnreadableCaFileNamesTheFlagAndTheFile) {
  auto trust = TrustStore::Load("/nonexistent/ca.pem");
  ASSERT_FALSE(trust.ok());
  EXPECT_EQ(trust.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(trust.status().message()),
              HasSubstr("--ca_file: cannot load PEM certificates from "
                        "/nonexistent/ca.pem"));
}

// `openssl s_server` (a TLS server nobody here wrote) limited to TLS 1.2,
// answering GET with its status page over HTTP/1.0.
class TlsVersionTest : public TlsSessionTest {
 protected:
  void SetUp() override {
    CertFiles leaf = ca_.Issue({"s_server", {"localhost"}, {"127.0.0.1"}});
    port_ = FreeLoopbackPort();
    pid_ = SpawnChild({"/usr/bin/openssl", "s_server", "-accept",
                       absl::StrCat("127.0.0.1:", port_), "-cert", leaf.cert,
                       "-key", leaf.key, "-tls1_2", "-www", "-quiet"},
                      ::testing::TempDir() + "/s_server.log",
                      /*stdout_too=*/true);
    ASSERT_TRUE(WaitForLoopbackPort(port_, std::chrono::seconds(10)));
  }
  void TearDown() override { StopChild(pid_); }

  pid_t pid_ = -1;
  int port_ = 0;
};

TEST_F(TlsVersionTest, TlsOnePointTwoIsTheDefaultMinimum) {
  auto session = SessionTo("localhost", port_);
  auto r = Call(*session, port_, "localhost");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);  // s_server's HTTP/1.0 status page
}

TEST_F(TlsVersionTest, RequiringTlsOnePointThreeRefusesAnOlderUpstream) {
  options_.tls_min_version = TLS1_3_VERSION;  // --upstream_tls_min_version=1.3
  auto session = SessionTo("localhost", port_);
  auto r = Call(*session, port_, "localhost");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("TLS handshake failed"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("protocol version"));
}

// `openssl s_server -www` closes the connection after each answer and says
// on its status page whether the handshake was "New" or "Reused": a server
// nobody here wrote confirms the resumption egress counts.
class TlsResumptionTest : public TlsSessionTest,
                          public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    CertFiles leaf = ca_.Issue({"resume", {"localhost"}, {"127.0.0.1"}});
    port_ = FreeLoopbackPort();
    pid_ = SpawnChild({"/usr/bin/openssl", "s_server", "-accept",
                       absl::StrCat("127.0.0.1:", port_), "-cert", leaf.cert,
                       "-key", leaf.key, GetParam(), "-www", "-quiet"},
                      ::testing::TempDir() + "/s_server_resume.log",
                      /*stdout_too=*/true);
    ASSERT_TRUE(WaitForLoopbackPort(port_, std::chrono::seconds(10)));
  }
  void TearDown() override { StopChild(pid_); }
  // "New" or "Reused", from the server's status page.
  std::string HandshakeKind(HttpSession& session) {
    auto r = Call(session, port_, "localhost");
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "failed";
    if (r->body.find("\nReused, ") != std::string::npos) return "Reused";
    if (r->body.find("\nNew, ") != std::string::npos) return "New";
    return "unknown";
  }

  pid_t pid_ = -1;
  int port_ = 0;
};

TEST_P(TlsResumptionTest, ReconnectsResumeTheSessionAcrossWorkers) {
  TlsSessionStore store;
  options_.tls_sessions = &store;
  auto first = SessionTo("localhost", port_);
  EXPECT_EQ(HandshakeKind(*first), "New");
  // s_server closed the connection: the reconnect resumes.
  EXPECT_EQ(HandshakeKind(*first), "Reused");
  // Another worker's session to the same origin resumes from the same store.
  auto second = SessionTo("localhost", port_);
  EXPECT_EQ(HandshakeKind(*second), "Reused");
  EXPECT_EQ(observer_.tls_handshakes.load(), 3);
  EXPECT_EQ(observer_.tls_resumed.load(), 2);
}

TEST_P(TlsResumptionTest, WithoutAStoreEveryHandshakeIsFull) {
  auto session = SessionTo("localhost", port_);
  EXPECT_EQ(HandshakeKind(*session), "New");
  EXPECT_EQ(HandshakeKind(*session), "New");
  EXPECT_EQ(observer_.tls_resumed.load(), 0);
}

TEST_P(TlsResumptionTest, ASessionIsOfferedOnlyToItsOwnOrigin) {
  TlsSessionStore store;
  options_.tls_sessions = &store;
  auto by_name = SessionTo("localhost", port_);
  EXPECT_EQ(HandshakeKind(*by_name), "New");
  // Same server, another origin (by address): nothing to resume.
  auto by_address = SessionTo("127.0.0.1", port_);
  auto r = Call(*by_address, port_, "127.0.0.1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->body.find("\nNew, "), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(TlsVersions, TlsResumptionTest,
                         ::testing::Values("-tls1_3", "-tls1_2"),
                         [](const auto& info) {
                           return info.param == "-tls1_3" ? "Tls13" : "Tls12";
                         });

}  // namespace
}  // namespace egress
