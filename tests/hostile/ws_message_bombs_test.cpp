// Messages built to cost the server more than their size (issue 9): a permessage-deflate
// message made only of empty DEFLATE blocks (defect 2: no output, so neither the ratio cap nor
// max_message_size applied, while every block cost the inflater a window's worth of work), and
// one message in 200k one-byte fragments. The server must refuse the first (1007 or 1009),
// keep the second's memory bounded (delivering it, or refusing it with 1009 when it exceeds
// max_message_size), and go on serving a well-behaved client on the same io thread.
#include <gtest/gtest.h>

#include <atoll/ws/session.hpp>
#include <chrono>
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
using atl::test::ws_client;
using atl::test::ws_echo_server;
using atl::test::ws_event;

// One masked client frame with the given first byte (FIN, RSV1-3, opcode) and payload.
std::string masked_frame(unsigned char first, std::string_view payload) {
  std::string f(1, static_cast<char>(first));
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else if (payload.size() <= 0xffff) {
    f += static_cast<char>(0x80 | 126);
    for (int shift = 8; shift >= 0; shift -= 8)
      f += static_cast<char>((payload.size() >> shift) & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8)
      f += static_cast<char>((static_cast<std::uint64_t>(payload.size()) >> shift) & 0xff);
  }
  const char key[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(key, 4);
  for (std::size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

bool is_1007_or_1009(ws::close_code c) {
  return c == ws::close_code::invalid_payload || c == ws::close_code::message_too_big;
}

TEST(hostile_message_bombs, a_deflate_message_of_empty_blocks_is_refused_with_1007_or_1009) {
  ws::options opts;
  opts.deflate = true;
  ws_echo_server srv(opts);

  auto c = ws_client::open(srv.ep(), "/", /*offer_deflate=*/true);
  ASSERT_EQ(c.status, 101u) << c.response;
  ASSERT_TRUE(c.deflate.has_value()) << "permessage-deflate was not negotiated";
  // 128k empty final blocks (`03 00`) in one compressed (RSV1) binary message of 256 KiB: far
  // under max_frame_size and max_message_size, and it inflates to nothing.
  const std::string bomb = atl::test::repeated(std::string_view("\x03\x00", 2), 128 * 1024);
  ASSERT_TRUE(c.send_raw(masked_frame(0x80 | 0x40 | 0x2, bomb)));

  const ws_event ev = c.next_data(30s);
  ASSERT_EQ(ev.kind, ws::read_kind::close)
      << "the bomb was not refused (kind " << static_cast<int>(ev.kind) << ", eof " << ev.eof
      << ", payload " << ev.payload.size() << " bytes)";
  EXPECT_TRUE(is_1007_or_1009(ev.code)) << static_cast<int>(ev.code);
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

// The frames of one binary message of `n` one-byte fragments (a first frame, then
// continuations), masked; the last one carries FIN when `fin`.
std::string one_byte_fragments(std::size_t n, bool fin) {
  ws::message_writer writer(ws::role::client);
  std::vector<std::byte> out;
  const std::byte one[1] = {std::byte{'x'}};
  for (std::size_t i = 0; i < n; ++i)
    writer.write_fragment(ws::opcode::binary, one, fin && i + 1 == n, out);
  return {reinterpret_cast<const char*>(out.data()), out.size()};
}

constexpr std::size_t fragments = 200'000;

// Holding the open message costs about its payload (200 KB), not a record per fragment; the
// bound leaves room for the reader's buffer growth (a vector doubles) and the session.
constexpr std::size_t held_message_bound = 1024 * 1024;

TEST(hostile_message_bombs, a_message_of_200k_one_byte_fragments_is_delivered_in_bounded_memory) {
  ws::options opts;
  opts.idle_timeout = 60s;
  ws_echo_server srv(opts);

  auto c = ws_client::open(srv.ep());
  ASSERT_EQ(c.status, 101u) << c.response;
  const std::size_t before = atl::test::heap_in_use();
  ASSERT_TRUE(c.send_raw(one_byte_fragments(fragments - 1, false)));
  atl::test::wait_settled([&] { return srv.server.stats().listeners.at(srv.id).bytes_in_total; });
  const std::size_t held = atl::test::heap_in_use();
  EXPECT_LE(atl::test::growth_per(before, held, 1), held_message_bound);

  // The last fragment ends the message: it comes back whole.
  ASSERT_TRUE(c.send_raw(masked_frame(0x80 | 0x0, "x")));
  const ws_event ev = c.next_data(30s);
  ASSERT_EQ(ev.kind, ws::read_kind::message) << "eof " << ev.eof;
  EXPECT_EQ(ev.payload, std::string(fragments, 'x'));
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

TEST(hostile_message_bombs, a_message_of_200k_one_byte_fragments_over_the_limit_gets_1009) {
  ws::options opts;
  opts.max_message_size = 64 * 1024;
  ws_echo_server srv(opts);

  auto c = ws_client::open(srv.ep());
  ASSERT_EQ(c.status, 101u) << c.response;
  // The server may close (and reset) before it has read everything: the send may fail.
  c.send_raw(one_byte_fragments(fragments, true));
  const ws_event ev = c.next_data(30s);
  ASSERT_EQ(ev.kind, ws::read_kind::close) << "eof " << ev.eof;
  EXPECT_EQ(ev.code, ws::close_code::message_too_big);
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

}  // namespace
