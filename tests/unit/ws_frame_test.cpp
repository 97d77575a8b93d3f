// Unit tests of the frame layer (RFC 6455 §5): header parsing (the §5.7 examples, all three
// length encodings, every header error with its close code, every split point), masking and
// serialisation.
#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "atoll/ws/error.hpp"
#include "atoll/ws/frame.hpp"

namespace {

namespace ws = atl::ws;
using bytes = std::vector<std::byte>;

bytes b(std::initializer_list<unsigned> v) {
  bytes out;
  for (unsigned x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

bytes text_bytes(std::string_view s) {
  bytes out;
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}

std::string as_string(std::span<const std::byte> s) {
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

ws::frame_parser_options server_options(std::uint64_t max_frame_size = 0) {
  ws::frame_parser_options o;
  o.local_role = ws::role::server;
  o.max_frame_size = max_frame_size;
  return o;
}

ws::frame_parser_options client_options() {
  ws::frame_parser_options o;
  o.local_role = ws::role::client;
  o.max_frame_size = 0;
  return o;
}

// Parses a complete header from `data` in one call; fails the test otherwise.
ws::frame_header parse_one(const bytes& data, const ws::frame_parser_options& o,
                           std::size_t expected_size) {
  ws::frame_parser p{o};
  const auto r = p.parse(data);
  EXPECT_EQ(r.status, ws::parse_status::complete) << r.ec.message();
  EXPECT_EQ(r.consumed, expected_size);
  return p.header();
}

std::error_code parse_error(const bytes& data, const ws::frame_parser_options& o) {
  ws::frame_parser p{o};
  const auto r = p.parse(data);
  EXPECT_EQ(r.status, ws::parse_status::error);
  return r.ec;
}

// --- the examples of RFC 6455 §5.7 -------------------------------------------------------------

TEST(ws_frame, parses_the_rfc_single_frame_unmasked_text_example) {
  const bytes frame = b({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f});
  const auto h = parse_one(frame, client_options(), 2);
  EXPECT_TRUE(h.fin);
  EXPECT_EQ(h.op, ws::opcode::text);
  EXPECT_FALSE(h.masked);
  EXPECT_EQ(h.payload_size, 5u);
  EXPECT_EQ(as_string(std::span{frame}.subspan(2)), "Hello");
}

TEST(ws_frame, parses_and_unmasks_the_rfc_single_frame_masked_text_example) {
  bytes frame = b({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58});
  const auto h = parse_one(frame, server_options(), 6);
  EXPECT_TRUE(h.masked);
  EXPECT_EQ(h.key,
            (ws::mask_key{std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}}));
  auto payload = std::span{frame}.subspan(6);
  ws::apply_mask(payload, h.key);
  EXPECT_EQ(as_string(payload), "Hello");
}

TEST(ws_frame, parses_the_rfc_fragmented_and_control_examples) {
  auto h = parse_one(b({0x01, 0x03, 0x48, 0x65, 0x6c}), client_options(), 2);
  EXPECT_FALSE(h.fin);
  EXPECT_EQ(h.op, ws::opcode::text);
  h = parse_one(b({0x80, 0x02, 0x6c, 0x6f}), client_options(), 2);
  EXPECT_TRUE(h.fin);
  EXPECT_EQ(h.op, ws::opcode::continuation);
  h = parse_one(b({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}), client_options(), 2);
  EXPECT_EQ(h.op, ws::opcode::ping);
  h = parse_one(b({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}),
                server_options(), 6);
  EXPECT_EQ(h.op, ws::opcode::pong);
}

TEST(ws_frame, parses_the_rfc_16_and_64_bit_length_examples) {
  auto h = parse_one(b({0x82, 0x7e, 0x01, 0x00}), client_options(), 4);
  EXPECT_EQ(h.op, ws::opcode::binary);
  EXPECT_EQ(h.payload_size, 256u);
  h = parse_one(b({0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}), client_options(), 10);
  EXPECT_EQ(h.payload_size, 65536u);
}

// --- lengths -------------------------------------------------------------------------------------

TEST(ws_frame, parses_every_length_encoding_at_its_edges) {
  for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{125},
                          std::uint64_t{126}, std::uint64_t{65535}, std::uint64_t{65536},
                          std::uint64_t{1} << 32, (std::uint64_t{1} << 63) - 1}) {
    ws::frame_header h;
    h.op = ws::opcode::binary;
    h.masked = true;
    h.key = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
    h.payload_size = n;
    std::array<std::byte, ws::max_frame_header_size> buf;
    const std::size_t size = ws::write_frame_header(h, buf);
    EXPECT_EQ(size, ws::frame_header_size(n, true));
    const auto parsed = parse_one(bytes(buf.begin(), buf.begin() + static_cast<long>(size)),
                                  server_options(), size);
    EXPECT_EQ(parsed.payload_size, n);
    EXPECT_EQ(parsed.key, h.key);
  }
}

TEST(ws_frame, refuses_a_64_bit_length_with_the_most_significant_bit_set) {
  const auto ec =
      parse_error(b({0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}), server_options());
  EXPECT_EQ(ec, ws::error::bad_payload_length);
  EXPECT_EQ(ws::to_close_code(ec), ws::close_code::protocol_error);
}

TEST(ws_frame, refuses_lengths_that_are_not_minimally_encoded) {
  EXPECT_EQ(parse_error(b({0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4}), server_options()),
            ws::error::bad_payload_length);
  EXPECT_EQ(
      parse_error(b({0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}), server_options()),
      ws::error::bad_payload_length);
}

TEST(ws_frame, refuses_a_frame_over_max_frame_size_with_1009_in_every_encoding) {
  // 7-bit, 16-bit and 64-bit forms, each one byte over the limit.
  const std::pair<std::uint64_t, bytes> cases[] = {
      {100, b({0x82, 0x80 | 101, 1, 2, 3, 4})},
      {1000, b({0x82, 0xfe, 0x03, 0xe9, 1, 2, 3, 4})},
      {100000, b({0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x86, 0xa1, 1, 2, 3, 4})},
  };
  for (const auto& [limit, frame] : cases) {
    const auto ec = parse_error(frame, server_options(limit));
    EXPECT_EQ(ec, ws::error::frame_too_large) << limit;
    EXPECT_EQ(ws::to_close_code(ec), ws::close_code::message_too_big);
  }
  // Exactly at the limit is fine.
  parse_one(b({0x82, 0x80 | 100, 1, 2, 3, 4}), server_options(100), 6);
}

TEST(ws_frame, refuses_an_oversized_frame_before_its_mask_key_arrives) {
  ws::frame_parser p{server_options(10)};
  const auto r = p.parse(b({0x82, 0x80 | 11}));
  EXPECT_EQ(r.status, ws::parse_status::error);
  EXPECT_EQ(r.ec, ws::error::frame_too_large);
}

// --- header errors, each a 1002 ---------------------------------------------------------------

TEST(ws_frame, refuses_an_unmasked_client_frame) {
  const auto ec = parse_error(b({0x81, 0x05}), server_options());
  EXPECT_EQ(ec, ws::error::unmasked_frame);
  EXPECT_EQ(ws::to_close_code(ec), ws::close_code::protocol_error);
}

TEST(ws_frame, client_role_refuses_a_masked_server_frame) {
  EXPECT_EQ(parse_error(b({0x81, 0x85}), client_options()), ws::error::masked_frame);
}

TEST(ws_frame, refuses_rsv_bits_without_a_negotiated_extension) {
  for (unsigned bit : {0x40u, 0x20u, 0x10u}) {
    const auto ec = parse_error(b({0x80u | bit | 0x1u, 0x80}), server_options());
    EXPECT_EQ(ec, ws::error::reserved_bits) << bit;
    EXPECT_EQ(ws::to_close_code(ec), ws::close_code::protocol_error);
  }
}

TEST(ws_frame, with_deflate_allows_rsv1_on_the_first_data_frame_only) {
  auto o = server_options();
  o.allow_rsv1 = true;
  const auto h = parse_one(b({0xc1, 0x80, 1, 2, 3, 4}), o, 6);  // text, RSV1
  EXPECT_TRUE(h.rsv1);
  parse_one(b({0x42, 0x80, 1, 2, 3, 4}), o, 6);                          // binary, RSV1, not FIN
  EXPECT_EQ(parse_error(b({0xc0, 0x80}), o), ws::error::reserved_bits);  // continuation
  EXPECT_EQ(parse_error(b({0xc9, 0x80}), o), ws::error::reserved_bits);  // ping
  EXPECT_EQ(parse_error(b({0xa1, 0x80}), o), ws::error::reserved_bits);  // RSV2 still refused
}

TEST(ws_frame, refuses_every_reserved_opcode) {
  for (unsigned op : {0x3u, 0x4u, 0x5u, 0x6u, 0x7u, 0xbu, 0xcu, 0xdu, 0xeu, 0xfu}) {
    const auto ec = parse_error(b({0x80u | op, 0x80}), server_options());
    EXPECT_EQ(ec, ws::error::reserved_opcode) << op;
  }
}

TEST(ws_frame, refuses_fragmented_and_oversized_control_frames) {
  for (unsigned op : {0x8u, 0x9u, 0xau}) {
    EXPECT_EQ(parse_error(b({op, 0x80}), server_options()), ws::error::fragmented_control_frame);
    EXPECT_EQ(parse_error(b({0x80u | op, 0x80 | 126}), server_options()),
              ws::error::control_frame_too_large);
    parse_one(b({0x80u | op, 0x80 | 125, 1, 2, 3, 4}), server_options(), 6);
  }
}

TEST(ws_frame, errors_are_sticky_until_reset) {
  ws::frame_parser p{server_options()};
  EXPECT_EQ(p.parse(b({0x81, 0x05})).ec, ws::error::unmasked_frame);
  const auto again = p.parse(b({0x81, 0x80, 1, 2, 3, 4}));
  EXPECT_EQ(again.status, ws::parse_status::error);
  EXPECT_EQ(again.consumed, 0u);
  p.reset();
  EXPECT_EQ(p.parse(b({0x81, 0x80, 1, 2, 3, 4})).status, ws::parse_status::complete);
}

// --- incremental parsing ------------------------------------------------------------------------

TEST(ws_frame, gives_the_same_header_for_every_split_point_and_byte_by_byte) {
  for (std::uint64_t n : {std::uint64_t{5}, std::uint64_t{300}, std::uint64_t{70000}}) {
    for (bool masked : {false, true}) {
      ws::frame_header h;
      h.fin = false;
      h.op = ws::opcode::binary;
      h.masked = masked;
      h.key = {std::byte{9}, std::byte{8}, std::byte{7}, std::byte{6}};
      h.payload_size = n;
      std::array<std::byte, ws::max_frame_header_size> buf;
      const std::size_t size = ws::write_frame_header(h, buf);
      bytes wire(buf.begin(), buf.begin() + static_cast<long>(size));
      wire.push_back(std::byte{0xaa});  // the first payload byte must not be consumed
      const auto o = masked ? server_options() : client_options();

      for (std::size_t split = 0; split <= wire.size(); ++split) {
        ws::frame_parser p{o};
        const auto first = p.parse(std::span{wire}.first(split));
        std::size_t consumed = first.consumed;
        if (first.status == ws::parse_status::need_more) {
          EXPECT_EQ(first.consumed, split);
          const auto second = p.parse(std::span{wire}.subspan(split));
          ASSERT_EQ(second.status, ws::parse_status::complete);
          consumed += second.consumed;
        }
        EXPECT_EQ(consumed, size) << "split " << split;
        EXPECT_EQ(p.header().payload_size, n);
        EXPECT_EQ(p.header().masked, masked);
        EXPECT_FALSE(p.header().fin);
      }

      ws::frame_parser p{o};
      for (std::size_t i = 0; i < size; ++i) {
        const auto r = p.parse(std::span{wire}.subspan(i, 1));
        ASSERT_EQ(r.status,
                  i + 1 == size ? ws::parse_status::complete : ws::parse_status::need_more);
        ASSERT_EQ(r.consumed, 1u);
      }
      EXPECT_EQ(p.header().payload_size, n);
      EXPECT_EQ(p.header().key, masked ? h.key : ws::mask_key{});
    }
  }
}

TEST(ws_frame, starts_a_new_header_after_a_complete_one) {
  const bytes two = b({0x89, 0x00, 0x8a, 0x00});
  ws::frame_parser p{client_options()};
  auto r = p.parse(two);
  ASSERT_EQ(r.status, ws::parse_status::complete);
  EXPECT_EQ(r.consumed, 2u);
  EXPECT_EQ(p.header().op, ws::opcode::ping);
  r = p.parse(std::span{two}.subspan(2));
  ASSERT_EQ(r.status, ws::parse_status::complete);
  EXPECT_EQ(p.header().op, ws::opcode::pong);
  EXPECT_EQ(p.parse({}).status, ws::parse_status::need_more);
}

// --- masking ------------------------------------------------------------------------------------

TEST(ws_frame, masking_matches_the_byte_wise_definition_for_all_sizes_and_offsets) {
  const ws::mask_key key{std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};
  for (std::size_t size = 0; size < 100; ++size) {
    for (std::uint64_t offset = 0; offset < 8; ++offset) {
      bytes data(size);
      for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::byte>(i * 7 + 3);
      bytes expected = data;
      for (std::size_t i = 0; i < size; ++i) expected[i] ^= key[(offset + i) % 4];
      bytes copy(size);
      ws::copy_masked(data, copy.data(), key, offset);
      EXPECT_EQ(copy, expected) << size << " " << offset;
      ws::apply_mask(data, key, offset);
      EXPECT_EQ(data, expected);
    }
  }
}

TEST(ws_frame, unmasking_in_place_matches_the_byte_wise_definition_at_every_alignment) {
  // apply_mask works on 32- and 8-byte words through memcpy: every start address modulo 8,
  // sizes across the word and unroll boundaries, every key offset, and nothing outside the
  // span touched.
  const ws::mask_key key{std::byte{0xa5}, std::byte{0x0f}, std::byte{0x96}, std::byte{0x71}};
  for (std::size_t align = 0; align < 8; ++align) {
    for (std::size_t size : {0u, 1u, 3u, 7u, 8u, 9u, 15u, 31u, 32u, 33u, 63u, 65u, 127u, 1001u}) {
      for (std::uint64_t offset = 0; offset < 5; ++offset) {
        bytes buffer(align + size + 8);
        for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<std::byte>(i * 13);
        bytes expected = buffer;
        for (std::size_t i = 0; i < size; ++i) expected[align + i] ^= key[(offset + i) % 4];
        ws::apply_mask(std::span{buffer}.subspan(align, size), key, offset);
        ASSERT_EQ(buffer, expected) << "align " << align << " size " << size << " offset "
                                    << offset;
      }
    }
  }
}

TEST(ws_frame, unmasking_in_chunks_with_a_running_offset_equals_unmasking_whole) {
  const ws::mask_key key{std::byte{1}, std::byte{0x80}, std::byte{0xff}, std::byte{0x42}};
  bytes data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i);
  bytes whole = data;
  ws::apply_mask(whole, key);
  for (std::size_t chunk : {1u, 3u, 7u, 13u, 64u, 333u}) {
    bytes pieces = data;
    for (std::size_t off = 0; off < pieces.size(); off += chunk) {
      const std::size_t n = std::min(chunk, pieces.size() - off);
      ws::apply_mask(std::span{pieces}.subspan(off, n), key, off);
    }
    EXPECT_EQ(pieces, whole) << chunk;
  }
  ws::apply_mask(whole, key);
  EXPECT_EQ(whole, data) << "masking twice is the identity";
}

// --- serialisation ------------------------------------------------------------------------------

TEST(ws_frame, serialises_the_rfc_server_frame_exactly) {
  bytes out;
  ws::frame_header h;
  h.op = ws::opcode::text;
  ws::append_frame(out, h, text_bytes("Hello"));
  EXPECT_EQ(out, b({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
}

TEST(ws_frame, serialises_the_rfc_masked_client_frame_exactly) {
  bytes out;
  ws::frame_header h;
  h.op = ws::opcode::text;
  h.masked = true;
  h.key = {std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};
  ws::append_frame(out, h, text_bytes("Hello"));
  EXPECT_EQ(out, b({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

// Appending many small frames to one buffer (a batch of pongs, a client building 200,000
// fragments) must keep the vector's geometric growth: an exact-fit reserve per frame made it
// reallocate, and copy everything so far, on every append (quadratic).
TEST(ws_frame, appending_many_frames_grows_the_buffer_geometrically) {
  bytes out;
  ws::frame_header h;
  h.op = ws::opcode::continuation;
  h.fin = false;
  std::size_t reallocations = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::size_t capacity = out.capacity();
    ws::append_frame(out, h, text_bytes("x"));
    if (out.capacity() != capacity) ++reallocations;
  }
  EXPECT_EQ(out.size(), 10000u * 3u);
  EXPECT_LE(reallocations, 40u);
}

TEST(ws_frame, header_round_trips_through_the_parser) {
  for (auto op : {ws::opcode::text, ws::opcode::binary, ws::opcode::continuation}) {
    for (bool fin : {false, true}) {
      for (bool rsv1 : {false, true}) {
        if (rsv1 && op == ws::opcode::continuation) continue;
        ws::frame_header h;
        h.op = op;
        h.fin = fin;
        h.rsv1 = rsv1;
        h.payload_size = 126;
        std::array<std::byte, ws::max_frame_header_size> buf;
        const std::size_t size = ws::write_frame_header(h, buf);
        auto o = client_options();
        o.allow_rsv1 = true;
        const auto parsed =
            parse_one(bytes(buf.begin(), buf.begin() + static_cast<long>(size)), o, size);
        EXPECT_EQ(parsed.op, op);
        EXPECT_EQ(parsed.fin, fin);
        EXPECT_EQ(parsed.rsv1, rsv1);
        EXPECT_EQ(parsed.payload_size, 126u);
      }
    }
  }
}

TEST(ws_frame, header_sizes) {
  EXPECT_EQ(ws::frame_header_size(0, false), 2u);
  EXPECT_EQ(ws::frame_header_size(125, false), 2u);
  EXPECT_EQ(ws::frame_header_size(126, false), 4u);
  EXPECT_EQ(ws::frame_header_size(65535, true), 8u);
  EXPECT_EQ(ws::frame_header_size(65536, false), 10u);
  EXPECT_EQ(ws::frame_header_size(65536, true), ws::max_frame_header_size);
  EXPECT_TRUE(ws::is_control(ws::opcode::ping));
  EXPECT_FALSE(ws::is_control(ws::opcode::binary));
}

}  // namespace
