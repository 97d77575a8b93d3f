// Unit tests of the receive and send paths (message_reader, message_writer): round trips at the
// size edges, fragmentation rules, interleaved control frames, fail-fast UTF-8 across frames,
// close frames, size limits, streaming, permessage-deflate end to end with its caps, and a
// mixed stream split at every byte boundary.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "atoll/ws/error.hpp"
#include "atoll/ws/message_reader.hpp"
#include "atoll/ws/message_writer.hpp"
#include "support/process_memory.hpp"

namespace {

namespace ws = atl::ws;
using bytes = std::vector<std::byte>;

bytes to_bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

// A compact record of an event, comparable across ways of feeding the same bytes.
struct seen {
  ws::read_kind kind;
  ws::opcode type;
  std::string payload;
  bool last;
  std::uint16_t code;
  std::error_code ec;
  friend bool operator==(const seen&, const seen&) = default;
};

void PrintTo(const seen& s, std::ostream* os) {
  *os << "{kind " << static_cast<int>(s.kind) << ", type " << static_cast<int>(s.type)
      << ", payload " << s.payload.size() << " bytes, last " << s.last << ", code " << s.code
      << ", ec " << s.ec.message() << "}";
}

enum class feed { read_only, in_place };

// Feeds `chunks` in order and records every event (stopping at close or error). `in_place`:
// through the in-place overload, each chunk copied first into a writable buffer of its own
// (as a receive buffer), which the reader may unmask where it lies.
std::vector<seen> read_all(ws::message_reader& r,
                           const std::vector<std::span<const std::byte>>& chunks,
                           feed how = feed::read_only) {
  std::vector<seen> out;
  for (auto input : chunks) {
    bytes buffer(input.begin(), input.end());
    std::span<const std::byte> chunk = input;
    std::span<std::byte> writable{buffer};
    for (;;) {
      const ws::read_event ev = how == feed::in_place ? r.next(writable) : r.next(chunk);
      if (ev.kind == ws::read_kind::need_more) {
        EXPECT_TRUE(how == feed::in_place ? writable.empty() : chunk.empty());
        break;
      }
      out.push_back({ev.kind, ev.type, std::string{ev.text()}, ev.last,
                     static_cast<std::uint16_t>(ev.close.code), ev.ec});
      if (ev.kind == ws::read_kind::error || ev.kind == ws::read_kind::close) return out;
    }
  }
  return out;
}

std::vector<seen> read_all(ws::message_reader& r, const bytes& data) {
  return read_all(r, {std::span<const std::byte>{data}});
}

ws::reader_options server_reader(std::uint64_t max_message = ws::default_max_size) {
  ws::reader_options o;
  o.max_message_size = max_message;
  return o;
}

seen message(ws::opcode type, std::string payload) {
  return {ws::read_kind::message, type, std::move(payload), true, 1005, {}};
}

seen failure(ws::error e) {
  return {ws::read_kind::error, ws::opcode::continuation, "", false, 1005, e};
}

// Client frames built by hand (masked with a fixed key) for precise protocol violations.
bytes client_frame(ws::opcode op, std::string_view payload, bool fin = true, bool rsv1 = false) {
  ws::frame_header h;
  h.op = op;
  h.fin = fin;
  h.rsv1 = rsv1;
  h.masked = true;
  h.key = {std::byte{0x11}, std::byte{0x22}, std::byte{0x33}, std::byte{0x44}};
  bytes out;
  ws::append_frame(out, h, to_bytes(payload));
  return out;
}

bytes concat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// --- round trips ---------------------------------------------------------------------------

TEST(ws_message, client_to_server_round_trips_at_every_length_edge) {
  ws::message_writer client{ws::role::client};
  for (std::size_t size : {0u, 1u, 125u, 126u, 65535u, 65536u, 1024u * 1024u}) {
    std::string text(size, 'x');
    for (std::size_t i = 0; i < size; ++i) text[i] = static_cast<char>('a' + i % 26);
    bytes wire;
    ASSERT_FALSE(client.write_text(text, wire));
    ASSERT_FALSE(client.write_message(ws::opcode::binary, to_bytes(text), wire));
    ws::message_reader server{server_reader()};
    EXPECT_EQ(read_all(server, wire), (std::vector<seen>{message(ws::opcode::text, text),
                                                         message(ws::opcode::binary, text)}))
        << size;
  }
}

TEST(ws_message, server_to_client_frames_are_unmasked_and_read_by_a_client_reader) {
  ws::message_writer server{ws::role::server};
  bytes wire;
  ASSERT_FALSE(server.write_text("Hello", wire));
  EXPECT_EQ(wire, (bytes{std::byte{0x81}, std::byte{0x05}, std::byte{'H'}, std::byte{'e'},
                         std::byte{'l'}, std::byte{'l'}, std::byte{'o'}}));
  ws::reader_options o;
  o.local_role = ws::role::client;
  ws::message_reader client{o};
  EXPECT_EQ(read_all(client, wire), (std::vector<seen>{message(ws::opcode::text, "Hello")}));

  ws::message_reader wrong_side{server_reader()};
  EXPECT_EQ(read_all(wrong_side, wire), (std::vector<seen>{failure(ws::error::unmasked_frame)}));
}

TEST(ws_message, client_frames_get_a_fresh_mask_key_each) {
  ws::message_writer client{ws::role::client};
  bytes a, b;
  ASSERT_FALSE(client.write_text("same", a));
  ASSERT_FALSE(client.write_text("same", b));
  EXPECT_EQ(a.size(), 2u + 4u + 4u);
  EXPECT_NE(a, b);
}

// --- fragmentation ------------------------------------------------------------------------

TEST(ws_message, assembles_fragments_with_interleaved_control_frames) {
  const bytes wire = concat({
      client_frame(ws::opcode::text, "Hel", false),
      client_frame(ws::opcode::ping, "p1"),
      client_frame(ws::opcode::continuation, "", false),  // zero-length fragment is valid
      client_frame(ws::opcode::pong, "p2"),
      client_frame(ws::opcode::continuation, "lo", true),
      client_frame(ws::opcode::binary, "\x01\x02", true),
  });
  ws::message_reader r{server_reader()};
  const auto events = read_all(r, wire);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].kind, ws::read_kind::ping);
  EXPECT_EQ(events[0].payload, "p1");
  EXPECT_EQ(events[1].kind, ws::read_kind::pong);
  EXPECT_EQ(events[1].payload, "p2");
  EXPECT_EQ(events[2], message(ws::opcode::text, "Hello"));
  EXPECT_EQ(events[3], message(ws::opcode::binary, "\x01\x02"));
}

TEST(ws_message, refuses_a_stray_continuation_with_1002) {
  ws::message_reader r{server_reader()};
  const auto events = read_all(r, client_frame(ws::opcode::continuation, "x"));
  ASSERT_EQ(events, (std::vector<seen>{failure(ws::error::unexpected_continuation)}));
  EXPECT_EQ(ws::to_close_code(events[0].ec), ws::close_code::protocol_error);
}

TEST(ws_message, refuses_a_new_data_frame_inside_a_fragmented_message_with_1002) {
  ws::message_reader r{server_reader()};
  const auto events = read_all(r, concat({client_frame(ws::opcode::text, "a", false),
                                          client_frame(ws::opcode::binary, "b", true)}));
  EXPECT_EQ(events, (std::vector<seen>{failure(ws::error::expected_continuation)}));
}

TEST(ws_message, writer_fragments_read_back_as_one_message) {
  ws::message_writer client{ws::role::client};
  bytes wire;
  ASSERT_FALSE(client.write_fragment(ws::opcode::binary, to_bytes("one "), false, wire));
  EXPECT_TRUE(client.in_message());
  ASSERT_FALSE(client.write_control(ws::opcode::ping, to_bytes("?"), wire));
  ASSERT_FALSE(client.write_fragment(ws::opcode::text, to_bytes("two "), false, wire));
  ASSERT_FALSE(client.write_fragment(ws::opcode::text, to_bytes("three"), true, wire));
  EXPECT_FALSE(client.in_message());
  ws::message_reader r{server_reader()};
  const auto events = read_all(r, wire);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, ws::read_kind::ping);
  EXPECT_EQ(events[1], message(ws::opcode::binary, "one two three"));
}

// --- UTF-8 ---------------------------------------------------------------------------------

TEST(ws_message, fails_invalid_utf8_at_the_first_bad_fragment_before_the_message_ends) {
  // Autobahn 6.4.1: the first fragment already holds an impossible sequence; the rest never
  // needs to arrive for the reader to fail.
  ws::message_reader r{server_reader()};
  const auto events =
      read_all(r, client_frame(ws::opcode::text,
                               "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90", false));
  ASSERT_EQ(events, (std::vector<seen>{failure(ws::error::invalid_utf8)}));
  EXPECT_EQ(ws::to_close_code(events[0].ec), ws::close_code::invalid_payload);
}

TEST(ws_message, fails_invalid_utf8_inside_a_frame_before_its_payload_is_complete) {
  const bytes frame =
      client_frame(ws::opcode::text, std::string(100, 'a') + "\xff" + std::string(1000, 'b'));
  ws::message_reader r{server_reader()};
  // Header (2 + 2 length + 4 mask) and the payload up to and including the 0xff.
  std::span<const std::byte> first = std::span{frame}.first(8 + 101);
  const auto ev = r.next(first);
  EXPECT_EQ(ev.kind, ws::read_kind::error);
  EXPECT_EQ(ev.ec, ws::error::invalid_utf8);
}

TEST(ws_message, accepts_a_code_point_split_across_fragments) {
  ws::message_reader r{server_reader()};
  const auto events = read_all(r, concat({client_frame(ws::opcode::text, "\xf0\x9f", false),
                                          client_frame(ws::opcode::continuation, "\x98", false),
                                          client_frame(ws::opcode::continuation, "\x80", true)}));
  EXPECT_EQ(events, (std::vector<seen>{message(ws::opcode::text, "\xf0\x9f\x98\x80")}));
}

TEST(ws_message, refuses_a_code_point_left_incomplete_at_the_end_of_the_message) {
  ws::message_reader r{server_reader()};
  EXPECT_EQ(read_all(r, client_frame(ws::opcode::text, "ok\xe2\x82")),
            (std::vector<seen>{failure(ws::error::invalid_utf8)}));
}

TEST(ws_message, binary_messages_are_not_checked_for_utf8) {
  ws::message_reader r{server_reader()};
  EXPECT_EQ(read_all(r, client_frame(ws::opcode::binary, "\xff\xfe")),
            (std::vector<seen>{message(ws::opcode::binary, "\xff\xfe")}));
}

// --- close ---------------------------------------------------------------------------------

TEST(ws_message, reports_a_close_frame_and_ignores_what_follows) {
  ws::message_writer client{ws::role::client};
  bytes wire;
  ASSERT_FALSE(client.write_close(ws::close_code::going_away, "bye", wire));
  ASSERT_FALSE(client.write_text("after close", wire));
  ws::message_reader r{server_reader()};
  std::span<const std::byte> data{wire};
  const auto ev = r.next(data);
  ASSERT_EQ(ev.kind, ws::read_kind::close);
  EXPECT_EQ(ev.close.code, ws::close_code::going_away);
  EXPECT_EQ(ev.close.reason, "bye");
  EXPECT_EQ(r.next(data).kind, ws::read_kind::need_more);
  EXPECT_TRUE(data.empty());
}

TEST(ws_message, an_empty_close_frame_has_no_status) {
  ws::message_reader r{server_reader()};
  const auto events = read_all(r, client_frame(ws::opcode::close, ""));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, ws::read_kind::close);
  EXPECT_EQ(events[0].code, 1005);
}

TEST(ws_message, refuses_bad_close_payloads) {
  const std::pair<std::string, ws::error> cases[] = {
      {std::string{"\x03"}, ws::error::bad_close_payload},
      {std::string{"\x03\xed"}, ws::error::bad_close_code},  // 1005
      {std::string{"\x03\xe8\xff"}, ws::error::invalid_close_reason},
  };
  for (const auto& [payload, expected] : cases) {
    ws::message_reader r{server_reader()};
    EXPECT_EQ(read_all(r, client_frame(ws::opcode::close, payload)),
              (std::vector<seen>{failure(expected)}));
  }
}

// --- limits --------------------------------------------------------------------------------

TEST(ws_message, refuses_a_message_over_max_message_size_from_the_frame_headers) {
  ws::message_reader r{server_reader(10)};
  // Only the header of the second fragment is fed: the limit is known before its payload.
  const bytes first = client_frame(ws::opcode::binary, "123456", false);
  const bytes second = client_frame(ws::opcode::continuation, "12345", true);
  const auto events =
      read_all(r, {std::span<const std::byte>{first}, std::span<const std::byte>{second}.first(6)});
  ASSERT_EQ(events, (std::vector<seen>{failure(ws::error::message_too_large)}));
  EXPECT_EQ(ws::to_close_code(events[0].ec), ws::close_code::message_too_big);
}

TEST(ws_message, refuses_a_frame_over_max_frame_size_with_1009) {
  ws::reader_options o;
  o.max_frame_size = 4;
  ws::message_reader r{o};
  EXPECT_EQ(read_all(r, client_frame(ws::opcode::binary, "12345")),
            (std::vector<seen>{failure(ws::error::frame_too_large)}));
}

TEST(ws_message, errors_are_sticky) {
  ws::message_reader r{server_reader()};
  const bytes bad = client_frame(ws::opcode::continuation, "x");
  std::span<const std::byte> data{bad};
  EXPECT_EQ(r.next(data).kind, ws::read_kind::error);
  const bytes good = client_frame(ws::opcode::text, "x");
  std::span<const std::byte> more{good};
  const auto ev = r.next(more);
  EXPECT_EQ(ev.kind, ws::read_kind::error);
  EXPECT_EQ(ev.ec, ws::error::unexpected_continuation);
  EXPECT_EQ(more.size(), good.size());
}

// --- streaming -----------------------------------------------------------------------------

TEST(ws_message, streams_pieces_as_they_arrive) {
  ws::reader_options o;
  o.stream_fragments = true;
  ws::message_reader r{o};
  const bytes wire = concat({client_frame(ws::opcode::text, "Hello, ", false),
                             client_frame(ws::opcode::continuation, "world", true)});
  // Feed in 4-byte reads: every non-empty piece is delivered at once.
  std::vector<std::span<const std::byte>> chunks;
  for (std::size_t off = 0; off < wire.size(); off += 4) {
    chunks.push_back(std::span{wire}.subspan(off, std::min<std::size_t>(4, wire.size() - off)));
  }
  const auto events = read_all(r, chunks);
  std::string joined;
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].kind, ws::read_kind::fragment);
    EXPECT_EQ(events[i].type, ws::opcode::text);
    EXPECT_EQ(events[i].last, i + 1 == events.size());
    joined += events[i].payload;
  }
  EXPECT_GT(events.size(), 3u);
  EXPECT_EQ(joined, "Hello, world");
}

TEST(ws_message, streaming_still_enforces_max_message_size_and_utf8) {
  ws::reader_options o;
  o.stream_fragments = true;
  o.max_message_size = 8;
  ws::message_reader r{o};
  const auto events = read_all(r, concat({client_frame(ws::opcode::text, "12345", false),
                                          client_frame(ws::opcode::continuation, "6789", true)}));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, ws::read_kind::fragment);
  EXPECT_EQ(events[1], failure(ws::error::message_too_large));

  ws::reader_options u;
  u.stream_fragments = true;
  ws::message_reader r2{u};
  const auto bad = read_all(r2, client_frame(ws::opcode::text, "ab\xc0"));
  EXPECT_EQ(bad, (std::vector<seen>{failure(ws::error::invalid_utf8)}));
}

// --- permessage-deflate end to end -----------------------------------------------------------

TEST(ws_message, compressed_messages_round_trip_both_ways) {
  const ws::deflate_params params;
  ws::message_writer server_out{ws::role::server};
  server_out.enable_deflate(params);
  ws::message_writer client_out{ws::role::client};
  client_out.enable_deflate(params);
  ws::reader_options client_options;
  client_options.local_role = ws::role::client;
  ws::message_reader client_in{client_options};
  client_in.enable_deflate(params);
  ws::message_reader server_in{server_reader()};
  server_in.enable_deflate(params);

  for (int k = 0; k < 3; ++k) {
    const std::string text =
        "{\"n\": " + std::to_string(k) + ", \"text\": \"" + std::string(3000, 'z') + "\"}";
    bytes a, b;
    ASSERT_FALSE(server_out.write_text(text, a));
    ASSERT_FALSE(client_out.write_message(ws::opcode::binary, to_bytes(text), b));
    EXPECT_LT(a.size(), text.size() / 10);
    EXPECT_EQ(std::to_integer<unsigned>(a[0]) & 0x40u, 0x40u) << "RSV1 set";
    EXPECT_EQ(read_all(client_in, a), (std::vector<seen>{message(ws::opcode::text, text)}));
    EXPECT_EQ(read_all(server_in, b), (std::vector<seen>{message(ws::opcode::binary, text)}));
  }
}

TEST(ws_message, compressed_fragments_and_the_threshold) {
  ws::deflate_options o;
  o.compress_threshold = 100;
  ws::message_writer client{ws::role::client};
  client.enable_deflate(ws::deflate_params{}, o);
  bytes wire;
  ASSERT_FALSE(client.write_text("short", wire));  // under the threshold: not compressed
  EXPECT_EQ(std::to_integer<unsigned>(wire[0]) & 0x40u, 0u);
  ASSERT_FALSE(
      client.write_fragment(ws::opcode::text, to_bytes(std::string(500, 'q')), false, wire));
  ASSERT_FALSE(client.write_control(ws::opcode::ping, {}, wire));
  ASSERT_FALSE(
      client.write_fragment(ws::opcode::text, to_bytes(std::string(500, 'r')), true, wire));
  ws::message_reader r{server_reader()};
  r.enable_deflate(ws::deflate_params{}, o);
  const auto events = read_all(r, wire);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], message(ws::opcode::text, "short"));
  EXPECT_EQ(events[1].kind, ws::read_kind::ping);
  EXPECT_EQ(events[2], message(ws::opcode::text, std::string(500, 'q') + std::string(500, 'r')));
}

TEST(ws_message, a_compressed_frame_without_negotiation_is_a_protocol_error) {
  ws::message_reader r{server_reader()};
  EXPECT_EQ(read_all(r, client_frame(ws::opcode::text, "x", true, true)),
            (std::vector<seen>{failure(ws::error::reserved_bits)}));
}

TEST(ws_message, a_compressed_bomb_is_stopped_with_1009) {
  ws::message_writer client{ws::role::client};
  client.enable_deflate(ws::deflate_params{});
  bytes wire;
  ASSERT_FALSE(client.write_message(ws::opcode::binary, bytes(20 * 1000 * 1000), wire));
  ws::message_reader r{server_reader()};  // 16 MiB
  r.enable_deflate(ws::deflate_params{});
  const auto events = read_all(r, wire);
  ASSERT_EQ(events, (std::vector<seen>{failure(ws::error::message_too_large)}));
  EXPECT_EQ(ws::to_close_code(events[0].ec), ws::close_code::message_too_big);

  // With the opt-in ratio cap, long before the size limit.
  ws::deflate_options o;
  o.max_inflate_ratio = 25;
  ws::message_reader capped{server_reader()};
  capped.enable_deflate(ws::deflate_params{}, o);
  EXPECT_EQ(read_all(capped, wire),
            (std::vector<seen>{failure(ws::error::inflate_ratio_exceeded)}));
}

// 1 MiB of repetitive text, as chat and JSON APIs send (issue 9, item 7).
std::string repetitive_text(bool one_letter) {
  if (one_letter) return std::string(1 << 20, 'a');
  std::string text;
  const std::string line = R"({"type":"presence","room":"lobby","user":"alice","status":"online"})";
  while (text.size() + line.size() + 1 <= (1u << 20)) text += line + "\n";
  return text;
}

// One masked client frame with RSV1 (compressed) around `payload`.
bytes compressed_frame(ws::opcode op, const bytes& payload, bool fin = true) {
  ws::frame_header h;
  h.op = op;
  h.fin = fin;
  h.rsv1 = op != ws::opcode::continuation;
  h.masked = true;
  h.key = {std::byte{0x11}, std::byte{0x22}, std::byte{0x33}, std::byte{0x44}};
  bytes out;
  ws::append_frame(out, h, payload);
  return out;
}

// `text` compressed by plain zlib, as another implementation would (raw DEFLATE, level 9, a
// sync flush whose 00 00 ff ff is removed, RFC 7692 §7.2.1).
bytes zlib_compressed(const std::string& text) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  bytes out(deflateBound(&zs, text.size()) + 16);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
  EXPECT_EQ(zs.avail_in, 0u);
  out.resize(out.size() - zs.avail_out - 4);
  deflateEnd(&zs);
  return out;
}

TEST(ws_message, a_1_mib_repetitive_text_message_passes_at_the_defaults) {
  // Within max_message_size, so it passes whatever its ratio, as in Python's websockets and
  // Node's ws; the ratio cap is opt-in and then refuses it with 1009.
  for (const bool one_letter : {false, true}) {
    const std::string text = repetitive_text(one_letter);
    bytes ours;
    ws::message_writer client{ws::role::client};
    client.enable_deflate(ws::deflate_params{});
    ASSERT_FALSE(client.write_text(text, ours));
    const bytes theirs = compressed_frame(ws::opcode::text, zlib_compressed(text));
    for (const bytes* wire : {static_cast<const bytes*>(&ours), &theirs}) {
      ASSERT_LT(wire->size() * 100, text.size()) << "compresses over 100:1";
      ws::message_reader r{server_reader()};
      r.enable_deflate(ws::deflate_params{});
      EXPECT_EQ(read_all(r, *wire), (std::vector<seen>{message(ws::opcode::text, text)}))
          << "one letter " << one_letter << ", zlib " << (wire == &theirs);

      ws::deflate_options o;
      o.max_inflate_ratio = 25;
      ws::message_reader capped{server_reader()};
      capped.enable_deflate(ws::deflate_params{}, o);
      const auto events = read_all(capped, *wire);
      ASSERT_EQ(events, (std::vector<seen>{failure(ws::error::inflate_ratio_exceeded)}));
      EXPECT_EQ(ws::to_close_code(events[0].ec), ws::close_code::message_too_big);
    }
  }
}

// Feeds `wire` to `r` until an event other than need_more; returns it and the bytes consumed.
std::pair<ws::read_event, std::size_t> first_event(ws::message_reader& r, const bytes& wire) {
  std::span<const std::byte> data{wire};
  const ws::read_event ev = r.next(data);
  return {ev, wire.size() - data.size()};
}

// A compressed message of `count` frames whose payload is `block` each.
bytes frames_of(const bytes& block, std::size_t count) {
  bytes wire;
  for (std::size_t k = 0; k < count; ++k) {
    const bytes f = compressed_frame(k == 0 ? ws::opcode::binary : ws::opcode::continuation, block,
                                     k + 1 == count);
    wire.insert(wire.end(), f.begin(), f.end());
  }
  return wire;
}

TEST(ws_message, empty_final_deflate_blocks_split_across_frames_fail_after_two_frames_with_1007) {
  // `03 00` (an empty fixed-Huffman block with BFINAL) ends the DEFLATE stream and inflates to
  // nothing: one is an empty message, the second is refused.
  for (const bytes& block : {bytes{std::byte{0x03}, std::byte{0x00}},
                             bytes{std::byte{0x01}, std::byte{0x00}, std::byte{0x00},
                                   std::byte{0xff}, std::byte{0xff}}}) {
    const bytes wire = frames_of(block, 100000);
    ws::message_reader r{server_reader()};
    r.enable_deflate(ws::deflate_params{});
    const auto [ev, consumed] = first_event(r, wire);
    ASSERT_EQ(ev.kind, ws::read_kind::error);
    EXPECT_EQ(ev.ec, ws::error::inflate_failed);
    EXPECT_EQ(ev.code(), ws::close_code::invalid_payload);
    EXPECT_EQ(consumed, 2 * (6 + block.size())) << "stopped at the second frame";
  }
}

TEST(ws_message, empty_deflate_blocks_split_across_frames_count_against_max_message_size) {
  // Empty stored blocks without BFINAL: the compressed size reaches the 4 KiB limit (1009).
  const bytes block{std::byte{0x00}, std::byte{0x00}, std::byte{0x00}, std::byte{0xff},
                    std::byte{0xff}};
  const bytes wire = frames_of(block, 100000);
  ws::message_reader r{server_reader(4096)};
  r.enable_deflate(ws::deflate_params{});
  const auto [ev, consumed] = first_event(r, wire);
  ASSERT_EQ(ev.kind, ws::read_kind::error);
  EXPECT_EQ(ev.ec, ws::error::message_too_large);
  EXPECT_EQ(ev.code(), ws::close_code::message_too_big);
  EXPECT_EQ(consumed, (4096 / 5 + 1) * (6 + 5)) << "stopped at the frame past 4 KiB";
}

TEST(ws_message, a_compressed_message_over_max_message_size_is_1009) {
  ws::message_writer client{ws::role::client};
  client.enable_deflate(ws::deflate_params{});
  std::string text;
  for (int i = 0; text.size() < 20000; ++i) text += std::to_string(i * 7919) + ",";
  bytes wire;
  ASSERT_FALSE(client.write_text(text, wire));
  ws::message_reader r{server_reader(10000)};
  r.enable_deflate(ws::deflate_params{});
  EXPECT_EQ(read_all(r, wire), (std::vector<seen>{failure(ws::error::message_too_large)}));
}

TEST(ws_message, invalid_utf8_inside_a_compressed_message_is_1007) {
  ws::message_writer client{ws::role::client};
  client.enable_deflate(ws::deflate_params{});
  bytes wire;
  ASSERT_FALSE(client.write_message(ws::opcode::text, to_bytes("valid then \xed\xa0\x80"), wire));
  ws::message_reader r{server_reader()};
  r.enable_deflate(ws::deflate_params{});
  EXPECT_EQ(read_all(r, wire), (std::vector<seen>{failure(ws::error::invalid_utf8)}));
}

// --- control frames and the writer's refusals ----------------------------------------------

TEST(ws_message, writer_refuses_oversized_control_frames_and_bad_close_codes) {
  ws::message_writer w;
  bytes out;
  EXPECT_EQ(w.write_control(ws::opcode::ping, bytes(126), out),
            ws::error::control_payload_too_large);
  EXPECT_EQ(w.write_close(ws::close_code{1005 + 1}, "", out), ws::error::bad_close_code);
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(w.write_control(ws::opcode::pong, bytes(125), out));
  EXPECT_EQ(out.size(), 127u);
}

// --- every split point -------------------------------------------------------------------

TEST(ws_message, a_mixed_stream_reads_the_same_for_every_split_and_byte_by_byte) {
  for (bool deflate : {false, true}) {
    ws::message_writer client{ws::role::client};
    if (deflate) client.enable_deflate(ws::deflate_params{});
    bytes wire;
    ASSERT_FALSE(client.write_fragment(ws::opcode::text, to_bytes("caf\xc3"), false, wire));
    ASSERT_FALSE(client.write_control(ws::opcode::ping, to_bytes("ping!"), wire));
    ASSERT_FALSE(client.write_fragment(ws::opcode::text, to_bytes("\xa9 au lait"), true, wire));
    ASSERT_FALSE(client.write_message(ws::opcode::binary, bytes(300, std::byte{7}), wire));
    ASSERT_FALSE(client.write_text("", wire));
    ASSERT_FALSE(client.write_close(ws::close_code::normal, "done", wire));

    auto make_reader = [&] {
      ws::message_reader r{server_reader()};
      if (deflate) r.enable_deflate(ws::deflate_params{});
      return r;
    };
    auto whole_reader = make_reader();
    const auto expected = read_all(whole_reader, wire);
    ASSERT_EQ(expected.size(), 5u);
    EXPECT_EQ(expected[1], message(ws::opcode::text, "caf\xc3\xa9 au lait"));
    EXPECT_EQ(expected[4].kind, ws::read_kind::close);

    for (feed how : {feed::read_only, feed::in_place}) {
      for (std::size_t split = 0; split <= wire.size(); ++split) {
        auto r = make_reader();
        const auto got = read_all(r,
                                  {std::span<const std::byte>{wire}.first(split),
                                   std::span<const std::byte>{wire}.subspan(split)},
                                  how);
        ASSERT_EQ(got, expected) << "deflate " << deflate << " split " << split << " in place "
                                 << (how == feed::in_place);
      }
      auto r = make_reader();
      std::vector<std::span<const std::byte>> single_bytes;
      for (std::size_t i = 0; i < wire.size(); ++i)
        single_bytes.push_back(std::span{wire}.subspan(i, 1));
      EXPECT_EQ(read_all(r, single_bytes, how), expected);
    }
  }
}

TEST(ws_message, streaming_in_place_delivers_the_same_pieces_for_every_split) {
  ws::reader_options o;
  o.stream_fragments = true;
  ws::message_writer client{ws::role::client};
  bytes wire;
  ASSERT_FALSE(client.write_fragment(ws::opcode::text, to_bytes("caf\xc3"), false, wire));
  ASSERT_FALSE(client.write_control(ws::opcode::ping, to_bytes("ping!"), wire));
  ASSERT_FALSE(client.write_fragment(ws::opcode::text, to_bytes("\xa9 au lait"), true, wire));
  ASSERT_FALSE(client.write_message(ws::opcode::binary, bytes(300, std::byte{7}), wire));
  // The pieces depend on the split, their concatenation per message does not.
  auto joined = [](const std::vector<seen>& events) {
    std::vector<std::string> out{""};
    for (const auto& e : events) {
      if (e.kind != ws::read_kind::fragment) continue;
      out.back() += e.payload;
      if (e.last) out.emplace_back();
    }
    return out;
  };
  ws::message_reader whole{o};
  const auto expected = joined(read_all(whole, {std::span<const std::byte>{wire}}));
  ASSERT_EQ(expected, (std::vector<std::string>{"caf\xc3\xa9 au lait", std::string(300, '\7'), ""}));
  for (std::size_t split = 0; split <= wire.size(); ++split) {
    ws::message_reader r{o};
    const auto got = read_all(r,
                              {std::span<const std::byte>{wire}.first(split),
                               std::span<const std::byte>{wire}.subspan(split)},
                              feed::in_place);
    ASSERT_EQ(joined(got), expected) << "split " << split;
  }
}

TEST(ws_message, a_frame_wholly_in_the_input_is_delivered_in_place_without_allocating) {
  ws::message_writer client{ws::role::client};
  const bytes payload = [] {
    bytes p(16 * 1024);
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::byte>(i * 31 + 1);
    return p;
  }();
  bytes wire;
  ASSERT_FALSE(client.write_message(ws::opcode::binary, payload, wire));
  const std::size_t header = wire.size() - payload.size();
  ASSERT_EQ(header, 8u);  // 2 + 16-bit length + mask key

  ws::message_reader r{server_reader()};
  const std::size_t heap_before = atl::test::heap_in_use();
  std::span<std::byte> data{wire};
  const ws::read_event ev = r.next(data);
  const std::size_t heap_during = atl::test::heap_in_use();
  ASSERT_EQ(ev.kind, ws::read_kind::message);
  EXPECT_TRUE(ev.in_place);
  // Unmasked where it arrived, right behind its header: no copy, no buffer of the reader's.
  EXPECT_EQ(ev.payload.data(), wire.data() + header);
  EXPECT_TRUE(std::equal(ev.payload.begin(), ev.payload.end(), payload.begin(), payload.end()));
  EXPECT_EQ(r.buffered(), 0u);
  EXPECT_EQ(heap_during, heap_before);
  EXPECT_TRUE(data.empty());
}

TEST(ws_message, a_message_spread_over_reads_or_frames_is_assembled_not_read_in_place) {
  ws::message_writer client{ws::role::client};
  bytes wire;
  ASSERT_FALSE(client.write_fragment(ws::opcode::binary, to_bytes("one "), false, wire));
  ASSERT_FALSE(client.write_fragment(ws::opcode::binary, to_bytes("two"), true, wire));
  ASSERT_FALSE(client.write_message(ws::opcode::text, to_bytes("three"), wire));
  ws::message_reader r{server_reader()};
  std::span<std::byte> data{wire};
  ws::read_event ev = r.next(data);
  ASSERT_EQ(ev.kind, ws::read_kind::message);
  EXPECT_FALSE(ev.in_place);
  EXPECT_EQ(ev.text(), "one two");
  // A frame cut by the end of a read: its first part is gone with that read's buffer.
  bytes first(data.begin(), data.begin() + 7);
  bytes second(data.begin() + 7, data.end());
  std::span<std::byte> a{first};
  EXPECT_EQ(r.next(a).kind, ws::read_kind::need_more);
  std::span<std::byte> b{second};
  ev = r.next(b);
  ASSERT_EQ(ev.kind, ws::read_kind::message);
  EXPECT_FALSE(ev.in_place);
  EXPECT_EQ(ev.text(), "three");
}

TEST(ws_message, frees_large_buffers_after_delivering_their_message) {
  ws::message_writer client{ws::role::client};
  bytes wire;
  ASSERT_FALSE(client.write_message(ws::opcode::binary, bytes(1 << 20), wire));
  ASSERT_FALSE(client.write_message(ws::opcode::binary, bytes(10), wire));
  ws::message_reader r{server_reader()};
  std::span<const std::byte> data{wire};
  auto ev = r.next(data);
  ASSERT_EQ(ev.kind, ws::read_kind::message);
  EXPECT_EQ(r.buffered(), 1u << 20);
  ev = r.next(data);
  ASSERT_EQ(ev.kind, ws::read_kind::message);
  EXPECT_EQ(r.buffered(), 10u);
}

}  // namespace
