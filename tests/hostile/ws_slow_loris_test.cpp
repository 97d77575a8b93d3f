// A slow-loris peer on the WebSocket upgrade request (issue 9): the request head sent one
// byte per tick. `ws::options::request_timeout` counts from admission, so the trickle does not
// extend it: the peer is closed, its slot released, and a well-behaved client on the same io
// thread is upgraded and served meanwhile. (PROXY and TLS phases: tls_slow_loris_test.cpp.)
#include <gtest/gtest.h>

#include <atoll/ws/session.hpp>
#include <chrono>
#include <string>

#include "support/connection_helpers.hpp"
#include "support/hostile_peers.hpp"
#include "support/ws_echo_server.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;

TEST(hostile_slow_loris, an_upgrade_request_one_byte_per_tick_is_closed_at_the_request_timeout) {
  atl::ws::options opts;
  opts.request_timeout = 200ms;
  auto l = atl::test::loopback_listener();
  l.max_connections = 2;
  atl::test::ws_echo_server srv(opts, l);

  // A request head that never ends: header lines, one byte per 20 ms tick (1 KiB would take
  // 20 s).
  std::string head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  while (head.size() < 1024) head += "X-Slow: loris\r\n";

  auto loris = client::connect(srv.ep());
  ASSERT_TRUE(loris.valid());
  const auto first = atl::test::slow_loris(loris, std::string_view(head).substr(0, 4), 20ms);
  ASSERT_FALSE(first.closed);
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
  const auto rest = atl::test::slow_loris(loris, std::string_view(head).substr(4), 20ms);
  EXPECT_TRUE(rest.closed) << "still open after " << 4 + rest.sent << " bytes";
  EXPECT_TRUE(srv.server.wait_for_connections(srv.id, atl::count_is::equal, 0, 10s))
      << "the slot was not released";
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

}  // namespace
