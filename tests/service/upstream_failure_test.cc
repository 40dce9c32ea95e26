// ClassifyFailure: why an attempt failed, from its facts alone (no sockets),
// and what follows from the reason: the gRPC code, the retries, the error
// count.
#include "service/transport/upstream_failure.h"

#include <openssl/x509_vfy.h>

#include <set>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace egress {
namespace {

using Stream = UpstreamExchange::Failure;

AttemptFacts Error(httplib::Error error) {
  AttemptFacts f;
  f.error = error;
  return f;
}

TEST(UpstreamFailureTest, HttplibErrorsMapToReasons) {
  EXPECT_EQ(ClassifyFailure(Error(httplib::Error::Success)),
            UpstreamFailure::kNone);
  EXPECT_EQ(ClassifyFailure(Error(httplib::Error::Connection)),
            UpstreamFailure::kConnectRefused);
  EXPECT_EQ(ClassifyFailure(Error(httplib::Error::ConnectionTimeout)),
            UpstreamFailure::kConnectTimeout);
  EXPECT_EQ(ClassifyFailure(Error(httplib::Error::Write)),
            UpstreamFailure::kSendFailed);
  EXPECT_EQ(ClassifyFailure(Error(httplib::Error::Read)),
            UpstreamFailure::kClosedBeforeResponse);
  EXPECT_EQ(ClassifyFailure(Error(httplib::Error::SSLConnection)),
            UpstreamFailure::kTlsHandshakeFailed);
  EXPECT_EQ(ClassifyFailure(Error(httplib::Error::Compression)),
            UpstreamFailure::kOther);
}

TEST(UpstreamFailureTest, AReadErrorAfterTheHeadIsAnIncompleteBody) {
  AttemptFacts f = Error(httplib::Error::Read);
  f.got_response = true;
  EXPECT_EQ(ClassifyFailure(f), UpstreamFailure::kBodyIncomplete);
}

TEST(UpstreamFailureTest, ConnectTimeoutCutByTheDeadlineIsTheDeadlines) {
  AttemptFacts f = Error(httplib::Error::ConnectionTimeout);
  f.connect_cut_by_deadline = true;
  EXPECT_EQ(ClassifyFailure(f), UpstreamFailure::kConnectDeadline);
  EXPECT_EQ(FailureCode(UpstreamFailure::kConnectDeadline),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(FailureCode(UpstreamFailure::kConnectTimeout),
            absl::StatusCode::kUnavailable);
}

TEST(UpstreamFailureTest, CertificateFailuresAreToldApart) {
  AttemptFacts f = Error(httplib::Error::SSLConnection);
  f.verify_result = X509_V_ERR_HOSTNAME_MISMATCH;
  EXPECT_EQ(ClassifyFailure(f), UpstreamFailure::kTlsNameMismatch);
  f.verify_result = X509_V_ERR_IP_ADDRESS_MISMATCH;
  EXPECT_EQ(ClassifyFailure(f), UpstreamFailure::kTlsNameMismatch);
  f.verify_result = X509_V_ERR_CERT_HAS_EXPIRED;
  EXPECT_EQ(ClassifyFailure(f), UpstreamFailure::kTlsVerifyFailed);
}

TEST(UpstreamFailureTest, WhatTheStreamRecordedWinsOverTheSocketError) {
  // The stream stopped waiting (deadline, idle, bad head) and httplib then
  // saw a read error: the stream's reason is the cause.
  for (auto [stream, want] :
       {std::pair{Stream::kDeadline, UpstreamFailure::kDeadline},
        std::pair{Stream::kIdle, UpstreamFailure::kIdle},
        std::pair{Stream::kHead, UpstreamFailure::kBadHead},
        std::pair{Stream::kRejected, UpstreamFailure::kAbandoned}}) {
    AttemptFacts f = Error(httplib::Error::Read);
    f.stream = stream;
    EXPECT_EQ(ClassifyFailure(f), want) << UpstreamFailureName(want);
  }
  AttemptFacts watchdog = Error(httplib::Error::Connection);
  watchdog.watchdog_fired = true;
  EXPECT_EQ(ClassifyFailure(watchdog), UpstreamFailure::kDeadline);
}

TEST(UpstreamFailureTest, OnPurposeComesFirst) {
  // A sink that stopped, then a cancel: the sink's reason stands.
  AttemptFacts f = Error(httplib::Error::Canceled);
  f.sink_aborted = true;
  f.cancelled = true;
  EXPECT_EQ(ClassifyFailure(f), UpstreamFailure::kAbandoned);
  // A cancel shuts the socket down: the read error it causes is not the
  // upstream's, nor is a deadline seen meanwhile.
  f.sink_aborted = false;
  f.error = httplib::Error::Read;
  f.stream = Stream::kDeadline;
  EXPECT_EQ(ClassifyFailure(f), UpstreamFailure::kCancelled);
  EXPECT_EQ(FailureCode(UpstreamFailure::kCancelled),
            absl::StatusCode::kCancelled);
}

TEST(UpstreamFailureTest, RetriesAndErrorCountFollowTheReason) {
  EXPECT_TRUE(MayBeStaleConnection(UpstreamFailure::kSendFailed));
  EXPECT_TRUE(MayBeStaleConnection(UpstreamFailure::kClosedBeforeResponse));
  // Once a head arrived, or when the deadline or a limit ended the exchange,
  // resending could repeat what the upstream already did.
  EXPECT_FALSE(MayBeStaleConnection(UpstreamFailure::kBodyIncomplete));
  EXPECT_FALSE(MayBeStaleConnection(UpstreamFailure::kDeadline));
  EXPECT_FALSE(MayBeStaleConnection(UpstreamFailure::kBadHead));
  EXPECT_FALSE(MayBeStaleConnection(UpstreamFailure::kCancelled));

  EXPECT_TRUE(IsConnectFailure(UpstreamFailure::kConnectRefused));
  EXPECT_TRUE(IsConnectFailure(UpstreamFailure::kConnectTimeout));
  EXPECT_FALSE(IsConnectFailure(UpstreamFailure::kSendFailed));

  EXPECT_FALSE(IsSessionError(UpstreamFailure::kNone));
  EXPECT_FALSE(IsSessionError(UpstreamFailure::kCancelled));
  EXPECT_FALSE(IsSessionError(UpstreamFailure::kAbandoned));
  EXPECT_TRUE(IsSessionError(UpstreamFailure::kDeadline));
  EXPECT_TRUE(IsSessionError(UpstreamFailure::kConnectRefused));
}

TEST(UpstreamFailureTest, EveryReasonHasItsOwnName) {
  std::set<std::string> names;
  for (int i = 0; i <= static_cast<int>(UpstreamFailure::kOther); ++i) {
    names.insert(UpstreamFailureName(static_cast<UpstreamFailure>(i)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(UpstreamFailure::kOther) + 1);
}

}  // namespace
}  // namespace egress
