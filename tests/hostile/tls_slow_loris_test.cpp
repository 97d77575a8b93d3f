// Slow-loris peers on the handshake phases before `on_open` (issue 9): a PROXY protocol
// header and a TLS ClientHello, each sent one byte per tick. `handshake_timeout` counts from
// admission, so a trickle does not extend it: each is closed once it passes, its slot is
// released, and a well-behaved client on the same io thread is served meanwhile. (The
// WebSocket upgrade request, the phase after these, is in ws_slow_loris_test.cpp.)
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "support/connection_helpers.hpp"
#include "support/hostile_peers.hpp"
#include "support/tls_certs.hpp"
#include "support/tls_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;

constexpr auto handshake_timeout = 200ms;
// One byte per tick: the peer would need this many ticks to finish its header, so a close
// before the end of `bytes` shows the timeout did not follow the trickle.
constexpr auto tick = 20ms;

atl::listener_config guarded_listener() {
  auto l = atl::test::loopback_listener();
  l.max_connections = 2;  // the slow peer's slot and one for the well-behaved client
  l.handshake_timeout = handshake_timeout;
  return l;
}

// A PROXY v2 header that announces 65535 bytes of addresses and TLVs (the most it may): the
// server has to wait for all of them.
std::string endless_proxy_v2_header() {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += '\x21';  // version 2, PROXY
  h += '\x11';  // TCP over IPv4
  h += '\xff';
  h += '\xff';
  h += std::string(1024, '\0');
  return h;
}

// A TLS record header announcing a 16 KiB handshake record (a ClientHello), then its bytes.
std::string endless_client_hello() {
  std::string h("\x16\x03\x01\x40\x00\x01\x00\x3f\xfc\x03\x03", 11);
  h += std::string(1024, 'h');
  return h;
}

// The attack on one listener: the slow peer is closed before it finishes, the well-behaved
// client (`served()`) is served while it trickles, and the slot comes back.
template <class Served>
void slow_loris_is_closed_and_others_served(atl::server& s, atl::listener_id id,
                                            std::string_view bytes, Served served) {
  auto loris = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(loris.valid());
  auto first = atl::test::slow_loris(loris, bytes.substr(0, 4), tick);
  ASSERT_FALSE(first.closed);
  EXPECT_TRUE(served()) << "a well-behaved client was not served while the slow peer trickled";
  const auto rest = atl::test::slow_loris(loris, bytes.substr(4), tick);
  EXPECT_TRUE(rest.closed) << "still open after " << 4 + rest.sent << " bytes";
  EXPECT_TRUE(s.wait_for_connections(id, atl::count_is::equal, 0, 10s))
      << "the slot was not released";
  EXPECT_TRUE(served());
}

TEST(hostile_slow_loris, a_proxy_header_one_byte_per_tick_is_closed_at_the_handshake_timeout) {
  atl::server s(atl::test::threads(1));
  auto l = guarded_listener();
  l.proxy_protocol = atl::proxy_protocol_mode::any;
  const auto id = s.add_listener(l, atl::test::echo_factory());
  s.start();
  slow_loris_is_closed_and_others_served(s, id, endless_proxy_v2_header(), [&] {
    auto good = client::connect(s.local_endpoint(id));
    return good.valid() && good.send("PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n") &&
           good.echo("well-behaved", 10s);
  });
}

TEST(hostile_slow_loris, a_tls_client_hello_one_byte_per_tick_is_closed_at_the_handshake_timeout) {
  const auto& certs = atl::test::test_certs();
  ASSERT_TRUE(certs.ok) << certs.error;
  atl::server s(atl::test::threads(1));
  auto l = guarded_listener();
  l.tls.cert_chain_file = certs.server_cert;
  l.tls.key_file = certs.server_key;
  const auto id = s.add_listener(l, atl::test::echo_factory());
  s.start();
  slow_loris_is_closed_and_others_served(s, id, endless_client_hello(), [&] {
    atl::test::tls_client_options options;
    options.timeout = 10s;
    auto good = atl::test::tls_client::connect(s.local_endpoint(id), options);
    return good.ok() && good.echo("well-behaved", 10s);
  });
}

}  // namespace
