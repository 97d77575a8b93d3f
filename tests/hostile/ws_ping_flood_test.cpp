// Peers that make the server answer and never read the answers (issue 9, defect 5): WebSocket
// pings (each answered by a pong) and pipelined HTTP requests to the upgrade endpoint's
// fallback (each answered by a response). Before the fix every answer was queued whatever the
// queue held and the session kept reading: 100 ping-flooding peers pinned ~3.4 MiB each. After
// it, pongs are coalesced (RFC 6455 §5.5.3: only the most recent ping needs an answer) and a
// connection stops reading while its write queue is above `write_low_water`.
//
// Memory is measured as the growth of this process's live heap (support/process_memory.hpp)
// while the attackers are connected, divided by their number. The bound per attacker,
// `per_attacker_bound` = 256 KiB, is the write queue's low-water mark (64 KiB) plus one read's
// worth of answers (the per-thread receive buffer is 64 KiB; a pong is never larger than its
// ping) plus the session's own state, rounded up. Socket buffers are kernel memory, not heap:
// the server's send buffers and the peers' receive buffers are kept small here (4 KiB) so that the
// attack reaches the server's user space.
#include <gtest/gtest.h>

#include <atoll/ws/session.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/hostile_peers.hpp"
#include "support/process_memory.hpp"
#include "support/ws_client.hpp"
#include "support/ws_echo_server.hpp"

namespace {

using namespace std::chrono_literals;
namespace ws = atl::ws;
using atl::test::client;
using atl::test::ws_client;
using atl::test::ws_echo_server;

constexpr std::size_t per_attacker_bound = 256 * 1024;

// The write limit is out of the way (64 MiB): what is measured is what the server holds
// before any limit would drop a connection.
atl::listener_config attacked_listener() {
  return atl::test::unread_answers_listener(64 * 1024 * 1024);
}

// Masked client ping frames with 125-byte payloads (the largest a control frame may carry).
std::string ping_frames(std::size_t n) {
  ws::message_writer writer(ws::role::client);
  const std::string payload(125, 'p');
  std::vector<std::byte> out;
  for (std::size_t i = 0; i < n; ++i)
    writer.write_control(ws::opcode::ping, atl::test::bytes_of(payload), out);
  return {reinterpret_cast<const char*>(out.data()), out.size()};
}

// The attack: the peers `fds` flood `pattern` (up to `per_peer` bytes each), then the server
// settles (reads what it will read of it); the heap must have grown by at most
// `per_attacker_bound` per peer, and a well-behaved client must be served.
void expect_bounded_growth(const ws_echo_server& srv, const std::vector<int>& fds,
                           const std::string& pattern, std::size_t per_peer) {
  const std::size_t before = atl::test::heap_in_use();
  const auto results = atl::test::flood(fds, pattern, per_peer, 1s, 30s);
  const auto read = atl::test::wait_settled(
      [&] { return srv.server.stats().listeners.at(srv.id).bytes_in_total; });
  const std::size_t after = atl::test::heap_in_use();
  std::printf("[ measured ] heap growth per peer %zu bytes; %s\n",
              atl::test::growth_per(before, after, fds.size()),
              atl::test::describe(results).c_str());
  EXPECT_LE(atl::test::growth_per(before, after, fds.size()), per_attacker_bound)
      << atl::test::describe(results) << ", the server read " << read << "; heap " << before
      << " -> " << after;
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

TEST(hostile_ping_flood, pings_from_peers_that_never_read_pin_bounded_memory_per_peer) {
  constexpr std::size_t attackers = 50;
  constexpr std::size_t per_peer = 2 * 1024 * 1024;  // ~16k pings each
  ws_echo_server srv(ws::options{}, attacked_listener());

  std::vector<ws_client> peers;
  std::vector<int> fds;
  for (std::size_t i = 0; i < attackers; ++i) {
    peers.push_back(ws_client::open(srv.ep()));
    ASSERT_EQ(peers.back().status, 101u) << peers.back().response;
    atl::test::shrink_socket_buffers(peers.back().socket().fd(), 0, 4096);
    fds.push_back(peers.back().socket().fd());
  }
  ASSERT_EQ(atl::test::ws_round_trip(srv.ep()), "");
  expect_bounded_growth(srv, fds, ping_frames(512), per_peer);
  // No attacker was closed (pongs are held, never dropped): all of them are still connected.
  EXPECT_GE(srv.server.stats().listeners.at(srv.id).active, attackers) << "an attacker was closed";
}

TEST(hostile_ping_flood, pipelined_http_requests_to_the_fallback_pin_bounded_memory_per_peer) {
  constexpr std::size_t attackers = 20;
  constexpr std::size_t per_peer = 256 * 1024;  // ~9k requests each, ~1 KiB answered to each
  const std::string body(1024, 'b');
  ws_echo_server srv(ws::options{}, attacked_listener(), 1,
                     [&body](const ws::http_request& req, atl::connection& c) {
                       c.send(ws::format_http_response(200, "text/plain", body, req.keep_alive()));
                     });

  std::vector<client> peers;
  std::vector<int> fds;
  for (std::size_t i = 0; i < attackers; ++i) {
    peers.push_back(client::connect(srv.ep()));
    ASSERT_TRUE(peers.back().valid());
    atl::test::shrink_socket_buffers(peers.back().fd(), 0, 4096);
    fds.push_back(peers.back().fd());
  }
  expect_bounded_growth(
      srv, fds, atl::test::repeated("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 256), per_peer);
}

}  // namespace
