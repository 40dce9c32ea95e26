// TlsSessionStore: TLS 1.3 tickets are used once and TLS 1.2 sessions kept,
// newest first; expired sessions are never offered; the bounds per origin and
// on origins hold (least recently saved origin forgotten first).
#include "service/transport/tls_session_store.h"

#include <openssl/ssl.h>
#include <openssl/tls1.h>

#include <ctime>
#include <string>

#include "gtest/gtest.h"

namespace egress {
namespace {

constexpr time_t kNow = 1'800'000'000;

// A resumable session of `version`, made at `made` and valid for `lifetime`
// seconds; `id` tells sessions apart.
SSL_SESSION* Session(int version, unsigned char id, time_t made = kNow,
                     long lifetime = 300) {
  SSL_SESSION* session = SSL_SESSION_new();
  SSL_SESSION_set_protocol_version(session, version);
  const unsigned char bytes[4] = {id, 1, 2, 3};
  SSL_SESSION_set1_id(session, bytes, sizeof bytes);
  SSL_SESSION_set_time(session, made);
  SSL_SESSION_set_timeout(session, lifetime);
  return session;
}

unsigned char IdOf(SSL_SESSION* session) {
  unsigned int length = 0;
  const unsigned char* id = SSL_SESSION_get_id(session, &length);
  return length > 0 ? id[0] : 0;
}

// Takes a session of `key` and returns its id (0: none), freeing it.
unsigned char TakeId(TlsSessionStore& store, const std::string& key,
                     time_t now = kNow) {
  SSL_SESSION* session = store.Take(key, now);
  if (session == nullptr) return 0;
  const unsigned char id = IdOf(session);
  SSL_SESSION_free(session);
  return id;
}

TEST(TlsSessionStoreTest, ATls13TicketIsOfferedOnceNewestFirst) {
  TlsSessionStore store;
  store.Save("https://a:443", Session(TLS1_3_VERSION, 1));
  store.Save("https://a:443", Session(TLS1_3_VERSION, 2));
  EXPECT_EQ(TakeId(store, "https://a:443"), 2);
  EXPECT_EQ(TakeId(store, "https://a:443"), 1);
  EXPECT_EQ(TakeId(store, "https://a:443"), 0);
  EXPECT_EQ(store.size(), 0u);
}

TEST(TlsSessionStoreTest, ATls12SessionStaysForTheNextConnection) {
  TlsSessionStore store;
  store.Save("https://a:443", Session(TLS1_2_VERSION, 7));
  EXPECT_EQ(TakeId(store, "https://a:443"), 7);
  EXPECT_EQ(TakeId(store, "https://a:443"), 7);
  EXPECT_EQ(store.size(), 1u);
}

TEST(TlsSessionStoreTest, OnlyTheOriginsOwnSessionsAreOffered) {
  TlsSessionStore store;
  store.Save("https://a:443", Session(TLS1_3_VERSION, 1));
  EXPECT_EQ(TakeId(store, "https://b:443"), 0);
  EXPECT_EQ(TakeId(store, "https://a:8443"), 0);
}

TEST(TlsSessionStoreTest, AnExpiredSessionIsNeverOffered) {
  TlsSessionStore store;
  store.Save("https://a:443", Session(TLS1_3_VERSION, 1, kNow, 60));
  EXPECT_EQ(TakeId(store, "https://a:443", kNow + 61), 0);
  EXPECT_EQ(store.size(), 0u);
}

TEST(TlsSessionStoreTest, ASessionThatCannotBeResumedIsNotKept) {
  TlsSessionStore store;
  store.Save("https://a:443", SSL_SESSION_new());  // no ID, no ticket
  EXPECT_EQ(store.size(), 0u);
}

TEST(TlsSessionStoreTest, BoundedPerOriginAndInOrigins) {
  TlsSessionStore store({/*max_origins=*/2, /*per_origin=*/2});
  for (unsigned char id = 1; id <= 3; ++id) {
    store.Save("https://a:443", Session(TLS1_3_VERSION, id));
  }
  EXPECT_EQ(store.size(), 2u);  // 1 was dropped
  store.Save("https://b:443", Session(TLS1_3_VERSION, 10));
  store.Save("https://c:443", Session(TLS1_3_VERSION, 20));  // forgets a
  EXPECT_EQ(TakeId(store, "https://a:443"), 0);
  EXPECT_EQ(TakeId(store, "https://b:443"), 10);
  EXPECT_EQ(TakeId(store, "https://c:443"), 20);
}

}  // namespace
}  // namespace egress
