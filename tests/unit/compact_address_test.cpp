// Unit tests of detail::compact_address: IPv4 and IPv6 addresses survive the round trip to
// atl::endpoint byte for byte (scope id included); Unix and unspecified addresses keep their
// family only; the size stays what a connection can afford.
#include "compact_address.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <cstring>

#include "support/endpoints.hpp"

namespace {

using atl::detail::compact_address;
using atl::test::ip_endpoint;
using atl::test::unix_endpoint;

compact_address of(const atl::endpoint& e) { return compact_address(e.data(), e.size()); }

// The same address: size and bytes.
void expect_same(const atl::endpoint& got, const atl::endpoint& want) {
  EXPECT_EQ(got.family(), want.family());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  EXPECT_EQ(got.to_string(), want.to_string());
}

TEST(compact_address, takes_no_more_than_32_bytes) {
  // Two per connection; sockaddr_storage would be 128 each.
  EXPECT_LE(sizeof(compact_address), 32u);
}

TEST(compact_address, a_default_address_is_unspecified_and_gives_an_empty_endpoint) {
  compact_address a;
  EXPECT_EQ(a.family(), AF_UNSPEC);
  EXPECT_TRUE(a.to_endpoint().empty());
  EXPECT_EQ(a.to_endpoint().size(), 0u);
}

// An IP address from a literal survives the trip into a compact_address and back.
void expect_ip_round_trip(const char* address, std::uint16_t port, int family) {
  const auto e = ip_endpoint(address, port);
  const auto a = of(e);
  EXPECT_EQ(a.family(), family);
  const auto back = a.to_endpoint();
  expect_same(back, e);
  EXPECT_EQ(back.address(), address);
  EXPECT_EQ(back.port(), port);
}

TEST(compact_address, keeps_an_ipv4_address_whole) {
  expect_ip_round_trip("192.0.2.17", 40404, AF_INET);
}

TEST(compact_address, keeps_an_ipv6_address_whole) {
  expect_ip_round_trip("2001:db8::1:2:3", 443, AF_INET6);
}

TEST(compact_address, keeps_an_ipv6_scope_id_and_flow_label) {
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(8080);
  ASSERT_EQ(::inet_pton(AF_INET6, "fe80::1", &v6.sin6_addr), 1);
  v6.sin6_scope_id = 3;
  v6.sin6_flowinfo = htonl(0x12345);
  const compact_address a(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
  const auto back = a.to_endpoint();
  ASSERT_EQ(back.size(), sizeof v6);
  sockaddr_in6 got{};
  std::memcpy(&got, back.data(), sizeof got);
  EXPECT_EQ(got.sin6_scope_id, 3u);
  EXPECT_EQ(got.sin6_flowinfo, htonl(0x12345));
  EXPECT_EQ(std::memcmp(&got, &v6, sizeof v6), 0);
}

TEST(compact_address, keeps_only_the_family_of_a_unix_address) {
  // By design (compact_address.hpp): a Unix peer's path is not kept, so 108 bytes of path do
  // not sit in every connection.
  const auto e = unix_endpoint("/run/atoll-test.sock");
  const auto a = of(e);
  EXPECT_EQ(a.family(), AF_UNIX);
  const auto back = a.to_endpoint();
  EXPECT_TRUE(back.is_unix());
  EXPECT_FALSE(back.empty());
  EXPECT_EQ(back.path(), "");
  EXPECT_EQ(back.size(), sizeof(sa_family_t));
}

TEST(compact_address, an_unspecified_sockaddr_gives_an_empty_endpoint) {
  sockaddr sa{};
  sa.sa_family = AF_UNSPEC;
  const compact_address a(&sa, sizeof sa);
  EXPECT_EQ(a.family(), AF_UNSPEC);
  EXPECT_TRUE(a.to_endpoint().empty());
}

TEST(compact_address, a_null_or_too_short_sockaddr_gives_an_empty_address) {
  const auto e = ip_endpoint("127.0.0.1", 1);
  EXPECT_TRUE(compact_address(nullptr, 16).to_endpoint().empty());
  EXPECT_TRUE(compact_address(e.data(), 1).to_endpoint().empty());
  EXPECT_TRUE(compact_address(e.data(), 0).to_endpoint().empty());
}

TEST(compact_address, copies_like_a_value) {
  const auto e = ip_endpoint("::1", 9);
  const auto a = of(e);
  compact_address b;
  b = a;
  const compact_address c(b);
  expect_same(c.to_endpoint(), e);
}

}  // namespace
