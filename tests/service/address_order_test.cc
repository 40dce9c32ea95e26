// ConnectOrder: the policy's filter and the Happy-Eyeballs order of a host's
// addresses, without sockets.
#include "service/transport/address_order.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace egress {
namespace {

using ::testing::ElementsAre;

std::unique_ptr<DestinationPolicy> DefaultPolicy() {
  auto policy = DestinationPolicy::Create(PolicyOptions{});
  EXPECT_TRUE(policy.ok());
  return *std::move(policy);
}

TEST(AddressOrderTest, FamiliesAlternateFromTheFirstAddresssFamily) {
  auto order = ConnectOrder(
      {"2001:4860::1", "2001:4860::2", "8.8.8.8", "8.8.4.4", "2001:4860::3"},
      nullptr, "");
  ASSERT_TRUE(order.ok());
  EXPECT_THAT(*order, ElementsAre("2001:4860::1", "8.8.8.8", "2001:4860::2",
                                  "8.8.4.4", "2001:4860::3"));
}

TEST(AddressOrderTest, TheAddressThatWorkedStaysFirst) {
  auto order =
      ConnectOrder({"8.8.8.8", "2001:4860::1", "8.8.4.4"}, nullptr, "8.8.4.4");
  ASSERT_TRUE(order.ok());
  EXPECT_THAT(*order, ElementsAre("8.8.4.4", "8.8.8.8", "2001:4860::1"));
  // One that is no longer in the answer changes nothing.
  order = ConnectOrder({"8.8.8.8", "1.1.1.1"}, nullptr, "9.9.9.9");
  EXPECT_THAT(*order, ElementsAre("8.8.8.8", "1.1.1.1"));
}

TEST(AddressOrderTest, RefusedAddressesAreNeverTried) {
  auto policy = DefaultPolicy();
  auto order = ConnectOrder(
      {"10.0.0.1", "8.8.8.8", "169.254.169.254", "2001:4860::1", "::1"},
      policy.get(), "");
  ASSERT_TRUE(order.ok());
  EXPECT_THAT(*order, ElementsAre("8.8.8.8", "2001:4860::1"));
}

TEST(AddressOrderTest, WhenEveryAddressIsRefusedTheFirstRefusalIsReturned) {
  auto policy = DefaultPolicy();
  auto order = ConnectOrder({"169.254.169.254", "10.0.0.1"}, policy.get(), "");
  ASSERT_FALSE(order.ok());
  EXPECT_EQ(order.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(order.status().message()),
              ::testing::HasSubstr("169.254.169.254"));
  EXPECT_EQ(PolicyRuleOf(order.status()), PolicyRule::kLinkLocal);
}

TEST(AddressOrderTest, AnEmptyAnswerIsAnError) {
  EXPECT_FALSE(ConnectOrder({}, nullptr, "").ok());
}

}  // namespace
}  // namespace egress
