// Peers that send and never read, against every example server run as a child process
// (issue 9): atoll-echo, atoll-daytime, atoll-http-hello, atoll-ws-echo and atoll-chat, each
// with one io thread. Ten peers each send up to 4 MiB of what the example answers (bytes to
// echo, pipelined requests, WebSocket messages) and never read; the example stays up, its
// resident set grows by a bounded amount per peer, and a well-behaved client is served.
//
// Bounds per peer (RSS growth, measured after the server has stopped taking bytes):
//   echo, daytime, http-hello, ws-echo: 1 MiB. They stop reading on backpressure, so a peer
//     holds at most the write queue's low-water mark (64 KiB) plus one read's worth of
//     answers (64 KiB) plus its connection/session state; the rest is headroom for the
//     allocator (and AddressSanitizer's redzones and shadow in the ASan build).
//   chat: 12 MiB. A broadcast is queued to every member whatever its queue holds, so a member
//     that never reads holds up to max_write_buffer (4 MiB, the default) before it is dropped
//     (close 1008 after the fix); the resident set keeps the allocator's peak, which in the
//     ASan build measured 8-10.5 MiB per member (before and after the fix alike).
// Under ThreadSanitizer the bounds are scaled by its shadow memory (rss_overhead_factor).
// Socket buffers are kernel memory, not RSS. The children run with ASan's quarantine off, so
// freed memory is not counted as held.
#include <gtest/gtest.h>

#include <atoll/ws/session.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "support/child_process.hpp"
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

constexpr std::size_t peers = 10;
constexpr std::size_t per_peer = 4 * 1024 * 1024;
constexpr std::size_t mib = 1024 * 1024;

// One example under attack.
struct target {
  const char* binary = nullptr;
  std::string path;       // WebSocket path ("" = not WebSocket)
  std::string pattern;    // what each peer sends, over and over
  std::size_t bound = 0;  // RSS growth per peer
  std::function<std::string(const atl::endpoint&)> serve_one;  // "" when served
};

// Test names and ctest's list show the binary, not the struct's bytes.
void PrintTo(const target& t, std::ostream* os) { *os << t.binary; }

std::string masked_messages(ws::opcode type, std::size_t size, std::size_t n) {
  ws::message_writer writer(ws::role::client);
  std::vector<std::byte> out;
  const std::string payload(size, 'm');
  for (std::size_t i = 0; i < n; ++i) writer.write_message(type, atl::test::bytes_of(payload), out);
  return {reinterpret_cast<const char*>(out.data()), out.size()};
}

std::string echo_served(const atl::endpoint& ep) {
  auto c = client::connect(ep);
  return c.valid() && c.echo("well-behaved\n", 10s) ? "" : "no echo";
}

std::string daytime_served(const atl::endpoint& ep) {
  auto c = client::connect(ep);
  std::string got;
  if (!c.valid() || c.wait_closed(10s, &got) != atl::test::outcome::eof) return "no close";
  return got.find("UTC") != std::string::npos ? "" : "no time: " + got;
}

std::string http_served(const atl::endpoint& ep) {
  auto c = client::connect(ep);
  if (!c.valid() || !c.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
    return "send failed";
  std::string got;
  c.wait_closed(10s, &got);
  return got.starts_with("HTTP/1.1 200") ? "" : "no 200: " + got.substr(0, 40);
}

std::string chat_served(const atl::endpoint& ep) {
  auto c = ws_client::open(ep, "/ws");
  if (c.status != 101) return "upgrade failed: " + c.response;
  const std::string mine = "well-behaved says hello";
  if (!c.send_text(mine)) return "send failed";
  // Others' broadcasts may come first; bounded by count and time.
  for (int i = 0; i < 100000; ++i) {
    const auto ev = c.next_data(10s);
    if (ev.kind != ws::read_kind::message) return "no broadcast of our message";
    if (ev.payload == mine) return "";
  }
  return "our message never came back";
}

std::vector<target> targets() {
  std::vector<target> t;
  const std::string get = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
#ifdef ATOLL_ECHO_BINARY
  t.push_back({ATOLL_ECHO_BINARY, "", std::string(64 * 1024, 'e'), 1 * mib, echo_served});
#endif
#ifdef ATOLL_DAYTIME_BINARY
  t.push_back({ATOLL_DAYTIME_BINARY, "", std::string(64 * 1024, 'd'), 1 * mib, daytime_served});
#endif
#ifdef ATOLL_HTTP_HELLO_BINARY
  t.push_back({ATOLL_HTTP_HELLO_BINARY, "", atl::test::repeated(get, 256), 1 * mib, http_served});
#endif
#ifdef ATOLL_WS_ECHO_BINARY
  t.push_back({ATOLL_WS_ECHO_BINARY, "/", masked_messages(ws::opcode::binary, 16 * 1024, 4),
               1 * mib, [](const atl::endpoint& ep) { return atl::test::ws_round_trip(ep); }});
#endif
#ifdef ATOLL_CHAT_BINARY
  t.push_back({ATOLL_CHAT_BINARY, "/ws", masked_messages(ws::opcode::text, 1024, 16), 12 * mib,
               chat_served});
#endif
  return t;
}

class never_reading_peers : public testing::TestWithParam<target> {
 protected:
  static void SetUpTestSuite() {
    // Freed memory in ASan's quarantine would count as held (a no-op without ASan).
    std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
    ::setenv("ASAN_OPTIONS", (asan + (asan.empty() ? "" : ":") + "quarantine_size_mb=0").c_str(),
             1);
  }
};

TEST_P(never_reading_peers, the_example_stays_up_with_bounded_memory_and_serves_others) {
  const target& t = GetParam();
  atl::test::child_process child;
  ASSERT_TRUE(child.spawn(t.binary, {"--port", "0", "--threads", "1"}, false));
  const auto line = child.read_line(30s);
  ASSERT_TRUE(line && line->starts_with("listening on ")) << (line ? *line : "no line");
  const auto ep = atl::test::parse_endpoint(std::string_view(*line).substr(13));
  ASSERT_EQ(t.serve_one(ep), "");

  std::vector<client> raw;
  std::vector<ws_client> wss;
  std::vector<int> fds;
  for (std::size_t i = 0; i < peers; ++i) {
    int fd = -1;
    if (t.path.empty()) {
      raw.push_back(client::connect(ep));
      ASSERT_TRUE(raw.back().valid());
      fd = raw.back().fd();
    } else {
      wss.push_back(ws_client::open(ep, t.path));
      ASSERT_EQ(wss.back().status, 101u) << wss.back().response;
      fd = wss.back().socket().fd();
    }
    atl::test::shrink_socket_buffers(fd, 0, 4096);
    fds.push_back(fd);
  }
  const std::size_t before = atl::test::rss_bytes(child.pid());
  const auto results = atl::test::flood(fds, t.pattern, per_peer, 1s, 20s);
  // The example has no stats to ask: settle on its RSS (ThreadSanitizer's shadow keeps it
  // moving, hence the short overall bound).
  const std::size_t after =
      atl::test::wait_settled([&] { return atl::test::rss_bytes(child.pid()); }, 1s, 5s);

  std::printf("[ measured ] RSS growth per peer %zu bytes; %s\n",
              atl::test::growth_per(before, after, peers), atl::test::describe(results).c_str());
  EXPECT_NE(after, 0u) << "the example exited";
  EXPECT_LE(atl::test::growth_per(before, after, peers), t.bound * atl::test::rss_overhead_factor)
      << "RSS " << before << " -> " << after << "; " << atl::test::describe(results);
  EXPECT_EQ(t.serve_one(ep), "");
  EXPECT_FALSE(child.wait_exit(0ms).has_value()) << "the example exited";
}

std::string name_of(const testing::TestParamInfo<target>& info) {
  std::string n = info.param.binary;
  n = n.substr(n.rfind('/') + 1);
  for (auto& ch : n)
    if (ch == '-') ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(examples, never_reading_peers, testing::ValuesIn(targets()), name_of);

}  // namespace
