// Unit tests of atl::endpoint: families, text forms, ports, paths (no sockets opened).
#include "atoll/endpoint.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "support/endpoints.hpp"

namespace {

using atl::test::ip_endpoint;
using atl::test::unix_endpoint;

TEST(endpoint, default_constructed_is_empty) {
  atl::endpoint e;
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.family(), AF_UNSPEC);
  EXPECT_FALSE(e.is_ip());
  EXPECT_FALSE(e.is_unix());
  EXPECT_EQ(e.to_string(), "");
  EXPECT_EQ(e.address(), "");
  EXPECT_EQ(e.port(), 0);
  EXPECT_EQ(e.path(), "");
  EXPECT_EQ(e.size(), 0u);
}

TEST(endpoint, ipv4_has_address_port_and_text_form) {
  auto e = ip_endpoint("127.0.0.1", 4040);
  EXPECT_FALSE(e.empty());
  EXPECT_EQ(e.family(), AF_INET);
  EXPECT_TRUE(e.is_ip());
  EXPECT_FALSE(e.is_unix());
  EXPECT_EQ(e.address(), "127.0.0.1");
  EXPECT_EQ(e.port(), 4040);
  EXPECT_EQ(e.path(), "");
  EXPECT_EQ(e.to_string(), "127.0.0.1:4040");
  EXPECT_EQ(e.size(), sizeof(sockaddr_in));
  EXPECT_EQ(e.data()->sa_family, AF_INET);
}

TEST(endpoint, ipv4_port_is_in_host_byte_order_over_the_full_range) {
  EXPECT_EQ(ip_endpoint("10.1.2.3", 0).to_string(), "10.1.2.3:0");
  EXPECT_EQ(ip_endpoint("10.1.2.3", 1).port(), 1);
  EXPECT_EQ(ip_endpoint("10.1.2.3", 256).port(), 256);
  EXPECT_EQ(ip_endpoint("255.255.255.255", 65535).to_string(), "255.255.255.255:65535");
}

TEST(endpoint, ipv6_is_bracketed_in_text_form) {
  auto e = ip_endpoint("::1", 8080);
  EXPECT_EQ(e.family(), AF_INET6);
  EXPECT_TRUE(e.is_ip());
  EXPECT_EQ(e.address(), "::1");
  EXPECT_EQ(e.port(), 8080);
  EXPECT_EQ(e.to_string(), "[::1]:8080");
  EXPECT_EQ(ip_endpoint("::", 1).to_string(), "[::]:1");
  EXPECT_EQ(ip_endpoint("2001:db8::42", 443).to_string(), "[2001:db8::42]:443");
  EXPECT_EQ(ip_endpoint("::ffff:127.0.0.1", 9).address(), "::ffff:127.0.0.1");
}

TEST(endpoint, unix_socket_has_a_path_and_no_port) {
  auto e = unix_endpoint("/run/x.sock");
  EXPECT_EQ(e.family(), AF_UNIX);
  EXPECT_TRUE(e.is_unix());
  EXPECT_FALSE(e.is_ip());
  EXPECT_EQ(e.path(), "/run/x.sock");
  EXPECT_EQ(e.port(), 0);
  EXPECT_EQ(e.address(), "");
  EXPECT_EQ(e.to_string(), "unix:/run/x.sock");
}

TEST(endpoint, unnamed_unix_socket_has_an_empty_path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  atl::endpoint e(reinterpret_cast<const sockaddr*>(&a), sizeof(sa_family_t));
  EXPECT_TRUE(e.is_unix());
  EXPECT_EQ(e.path(), "");
  EXPECT_EQ(e.port(), 0);
}

TEST(endpoint, unix_path_without_terminator_is_read_within_its_length) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memset(a.sun_path, 'x', sizeof a.sun_path);  // no NUL at all
  atl::endpoint e(reinterpret_cast<const sockaddr*>(&a),
                  static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 5));
  EXPECT_EQ(e.path(), "xxxxx");
}

TEST(endpoint, oversized_lengths_are_truncated_to_the_storage) {
  struct {
    sockaddr_in in;
    char extra[512];
  } big{};
  big.in.sin_family = AF_INET;
  big.in.sin_port = htons(7);
  big.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  atl::endpoint e(reinterpret_cast<const sockaddr*>(&big), sizeof big);
  EXPECT_LE(e.size(), sizeof(sockaddr_storage));
  EXPECT_EQ(e.to_string(), "127.0.0.1:7");
}

TEST(endpoint, is_a_value_type) {
  auto a = ip_endpoint("192.0.2.1", 80);
  atl::endpoint b = a;
  atl::endpoint c;
  c = b;
  a = ip_endpoint("::1", 1);
  EXPECT_EQ(b.to_string(), "192.0.2.1:80");
  EXPECT_EQ(c.to_string(), "192.0.2.1:80");
  EXPECT_EQ(c.size(), sizeof(sockaddr_in));
  EXPECT_EQ(std::memcmp(b.data(), c.data(), b.size()), 0);
  EXPECT_EQ(a.to_string(), "[::1]:1");
}

}  // namespace
