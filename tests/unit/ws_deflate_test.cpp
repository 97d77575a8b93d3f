// Unit tests of permessage-deflate (RFC 7692): offer negotiation (declines, fallbacks, window
// bits, context takeover), the client-side response check, compressor/decompressor round
// trips with and without context takeover at every window size, the RFC §7.2.3 examples, and
// the inflate caps against a compression bomb.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "atoll/ws/deflate.hpp"
#include "atoll/ws/error.hpp"

namespace {

namespace ws = atl::ws;
using bytes = std::vector<std::byte>;

bytes b(std::initializer_list<unsigned> v) {
  bytes out;
  for (unsigned x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

bytes to_bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

std::string to_string(const bytes& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

// Deterministic text that compresses moderately (words from a small vocabulary).
std::string sample_text(std::size_t size, unsigned seed = 1) {
  static const char* words[] = {"atoll ",   "socket ", "frame ",     "deflate ",
                                "window ",  "lagoon ", "reef ",      "message ",
                                "{\"id\":", "42, ",    "\"text\": ", "\n"};
  std::string out;
  std::uint32_t x = seed;
  while (out.size() < size) {
    x = x * 1664525u + 1013904223u;
    out += words[(x >> 16) % 12];
  }
  out.resize(size);
  return out;
}

// --- negotiation ---------------------------------------------------------------------------

std::optional<ws::deflate_negotiation> negotiate(std::string_view offer,
                                                 const ws::deflate_options& o = {}) {
  return ws::negotiate_deflate(offer, o);
}

TEST(ws_deflate, accepts_a_plain_offer_with_the_defaults) {
  const auto n = negotiate("permessage-deflate");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->params, ws::deflate_params{});
  EXPECT_EQ(n->response, "permessage-deflate");
}

TEST(ws_deflate, a_client_max_window_bits_without_value_lets_us_ask_for_a_smaller_window) {
  auto n = negotiate("permessage-deflate; client_max_window_bits");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->response, "permessage-deflate");
  EXPECT_EQ(n->params.client_max_window_bits, 15);

  ws::deflate_options o;
  o.client_max_window_bits = 10;
  n = negotiate("permessage-deflate; client_max_window_bits", o);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->response, "permessage-deflate; client_max_window_bits=10");
  EXPECT_EQ(n->params.client_max_window_bits, 10);
}

TEST(ws_deflate, without_client_max_window_bits_in_the_offer_we_cannot_limit_the_client) {
  ws::deflate_options o;
  o.client_max_window_bits = 10;
  const auto n = negotiate("permessage-deflate", o);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->response, "permessage-deflate");  // RFC 7692 §7.1.2.2
  EXPECT_EQ(n->params.client_max_window_bits, 15);
}

TEST(ws_deflate, answers_an_offered_window_with_the_same_or_a_smaller_one) {
  auto n = negotiate("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->params.server_max_window_bits, 10);
  EXPECT_EQ(n->params.client_max_window_bits, 12);
  EXPECT_EQ(n->response,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12");

  ws::deflate_options o;
  o.server_max_window_bits = 9;
  o.client_max_window_bits = 11;
  n = negotiate("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12", o);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->params.server_max_window_bits, 9);
  EXPECT_EQ(n->params.client_max_window_bits, 11);

  n = negotiate("permessage-deflate; server_max_window_bits=15");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->response, "permessage-deflate; server_max_window_bits=15") << "echoed to accept";
}

TEST(ws_deflate, announces_our_own_smaller_server_window) {
  ws::deflate_options o;
  o.server_max_window_bits = 12;
  const auto n = negotiate("permessage-deflate", o);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->params.server_max_window_bits, 12);
  EXPECT_EQ(n->response, "permessage-deflate; server_max_window_bits=12");
}

TEST(ws_deflate, agrees_to_no_context_takeover_asked_by_either_side) {
  auto n = negotiate("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->params.server_no_context_takeover);
  EXPECT_TRUE(n->params.client_no_context_takeover);
  EXPECT_EQ(n->response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover");

  ws::deflate_options o;
  o.server_no_context_takeover = true;
  o.client_no_context_takeover = true;
  n = negotiate("permessage-deflate", o);
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->params.server_no_context_takeover);
  EXPECT_TRUE(n->params.client_no_context_takeover);
}

TEST(ws_deflate, declines_bad_offers_and_falls_back_to_no_compression) {
  for (std::string_view offer : {
           "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
           "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
           "permessage-deflate; unknown_param",
           "permessage-deflate; server_no_context_takeover=1",
           "permessage-deflate; client_no_context_takeover=\"\"",
           "permessage-deflate; server_max_window_bits",
           "permessage-deflate; server_max_window_bits=7",
           "permessage-deflate; server_max_window_bits=16",
           "permessage-deflate; server_max_window_bits=08",
           "permessage-deflate; server_max_window_bits=1O",
           "permessage-deflate; client_max_window_bits=0",
           "x-webkit-deflate-frame",
           "",
       }) {
    EXPECT_FALSE(negotiate(offer).has_value()) << offer;
  }
}

TEST(ws_deflate, refuses_a_header_that_is_not_extension_syntax) {
  for (std::string_view offer : {
           "permessage-deflate; ",
           "permessage-deflate;; server_no_context_takeover",
           "permessage-deflate; server_max_window_bits=\"10",
           "permessage-deflate server_no_context_takeover",
           "permessage-deflate; server_max_window_bits=",
           "permessage-deflate, permessage-deflate; =x",
           "; permessage-deflate",
       }) {
    EXPECT_FALSE(negotiate(offer).has_value()) << offer;
  }
}

TEST(ws_deflate, tries_the_next_offer_after_declining_one) {
  const auto n = negotiate(
      "permessage-deflate; server_max_window_bits=7, "
      "permessage-deflate; server_max_window_bits=10, permessage-deflate");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->params.server_max_window_bits, 10);
}

TEST(ws_deflate, ignores_other_extensions_and_accepts_quoted_values_and_any_case) {
  auto n = negotiate(
      "x-webkit-deflate-frame; no_context_takeover, PerMessage-Deflate ;"
      " Server_Max_Window_Bits = \"11\"");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->params.server_max_window_bits, 11);
  n = negotiate(" , permessage-deflate ,");
  ASSERT_TRUE(n);
}

TEST(ws_deflate, client_checks_the_server_response) {
  auto p = ws::parse_deflate_response(
      "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
      "client_max_window_bits=9");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->server_no_context_takeover);
  EXPECT_FALSE(p->client_no_context_takeover);
  EXPECT_EQ(p->server_max_window_bits, 10);
  EXPECT_EQ(p->client_max_window_bits, 9);
  EXPECT_FALSE(ws::parse_deflate_response("permessage-deflate; client_max_window_bits"));
  EXPECT_FALSE(ws::parse_deflate_response("permessage-deflate, permessage-deflate"));
  EXPECT_FALSE(ws::parse_deflate_response("permessage-deflate; foo"));
  EXPECT_FALSE(ws::parse_deflate_response("other"));
  EXPECT_FALSE(ws::parse_deflate_response(""));
}

TEST(ws_deflate, client_offer_round_trips_through_negotiation) {
  ws::deflate_options o;
  EXPECT_EQ(ws::format_deflate_offer(o), "permessage-deflate; client_max_window_bits");
  o.server_no_context_takeover = true;
  o.server_max_window_bits = 10;
  o.client_max_window_bits = 9;
  const std::string offer = ws::format_deflate_offer(o);
  EXPECT_EQ(offer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
            "client_max_window_bits=9");
  const auto n = negotiate(offer);
  ASSERT_TRUE(n);
  const auto p = ws::parse_deflate_response(n->response);
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, n->params);
}

TEST(ws_deflate, validates_options_naming_the_field) {
  ws::deflate_options o;
  EXPECT_NO_THROW(ws::validate_deflate_options(o));
  o.mem_level = 0;
  try {
    ws::validate_deflate_options(o, "websocket.deflate.");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string{e.what()}.find("websocket.deflate.mem_level"), std::string::npos);
  }
  o = {};
  o.server_max_window_bits = 16;
  EXPECT_THROW(ws::validate_deflate_options(o), std::invalid_argument);
  o = {};
  o.compression_level = 10;
  EXPECT_THROW(ws::validate_deflate_options(o), std::invalid_argument);
}

// --- compression -------------------------------------------------------------------------------

bytes compress(ws::deflater& d, std::string_view message) {
  bytes out;
  EXPECT_FALSE(d.compress(to_bytes(message), true, out));
  return out;
}

std::string decompress(ws::inflater& i, const bytes& data) {
  bytes out;
  const auto ec = i.decompress(data, true, out, 0);
  EXPECT_FALSE(ec) << ec.message();
  return to_string(out);
}

TEST(ws_deflate, inflates_the_rfc_examples) {
  ws::inflater i{ws::deflate_params{}, ws::role::client};
  // §7.2.3.1: "Hello" in one compressed message.
  EXPECT_EQ(decompress(i, b({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})), "Hello");
  // §7.2.3.2: a second "Hello" referring back into the shared window.
  EXPECT_EQ(decompress(i, b({0xf2, 0x00, 0x11, 0x00, 0x00})), "Hello");
  // §7.2.3.3: a DEFLATE block with no compression.
  ws::inflater j{ws::deflate_params{}, ws::role::client};
  EXPECT_EQ(decompress(j, b({0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00})),
            "Hello");
  // §7.2.3.4: a block with BFINAL set.
  ws::inflater k{ws::deflate_params{}, ws::role::client};
  EXPECT_EQ(decompress(k, b({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00})), "Hello");
}

TEST(ws_deflate, compresses_like_the_rfc_example) {
  ws::deflater d{ws::deflate_params{}, ws::role::server};
  EXPECT_EQ(compress(d, "Hello"), b({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}));
  EXPECT_EQ(compress(d, "Hello"), b({0xf2, 0x00, 0x11, 0x00, 0x00}));  // context takeover
}

TEST(ws_deflate, an_empty_message_is_the_single_byte_00) {
  ws::deflater d{ws::deflate_params{}, ws::role::server};
  const bytes empty = compress(d, "");
  EXPECT_EQ(empty, b({0x00}));
  ws::inflater i{ws::deflate_params{}, ws::role::client};
  EXPECT_EQ(decompress(i, empty), "");
}

TEST(ws_deflate, empty_messages_between_others_keep_the_stream_in_step) {
  // zlib writes nothing for a second sync flush without input; the deflater sends 0x00.
  ws::deflater d{ws::deflate_params{}, ws::role::server};
  ws::inflater i{ws::deflate_params{}, ws::role::client};
  for (std::string_view m : {"Hello", "", "", "Hello", "", "world"}) {
    EXPECT_EQ(decompress(i, compress(d, m)), m);
  }
}

TEST(ws_deflate, context_takeover_makes_repeated_messages_smaller) {
  const std::string message = sample_text(2000);
  ws::deflater d{ws::deflate_params{}, ws::role::server};
  ws::inflater i{ws::deflate_params{}, ws::role::client};
  const bytes first = compress(d, message);
  const bytes second = compress(d, message);
  EXPECT_LT(second.size(), first.size() / 4);
  EXPECT_EQ(decompress(i, first), message);
  EXPECT_EQ(decompress(i, second), message);
}

TEST(ws_deflate, without_context_takeover_every_message_stands_alone) {
  const std::string message = sample_text(2000);
  ws::deflate_params p;
  p.server_no_context_takeover = true;
  ws::deflater d{p, ws::role::server};
  const bytes first = compress(d, message);
  const bytes second = compress(d, message);
  EXPECT_EQ(first, second);
  // A fresh inflater (no history at all) decodes the second message alone.
  ws::inflater fresh{p, ws::role::client};
  EXPECT_EQ(decompress(fresh, second), message);
}

TEST(ws_deflate, client_no_context_takeover_resets_the_server_inflater_between_messages) {
  ws::deflate_params p;
  p.client_no_context_takeover = true;
  ws::deflater client{p, ws::role::client};
  ws::inflater server{p, ws::role::server};
  for (int k = 0; k < 3; ++k) {
    const std::string message = sample_text(3000, 7);
    EXPECT_EQ(decompress(server, compress(client, message)), message);
  }
}

TEST(ws_deflate, round_trips_at_every_window_size_both_directions) {
  const std::string message = sample_text(100000, 3);
  for (int bits = 8; bits <= 15; ++bits) {
    ws::deflate_params p;
    p.server_max_window_bits = bits;
    p.client_max_window_bits = bits;
    ws::deflater server_out{p, ws::role::server};
    ws::inflater client_in{p, ws::role::client};
    ws::deflater client_out{p, ws::role::client};
    ws::inflater server_in{p, ws::role::server};
    for (int k = 0; k < 2; ++k) {
      EXPECT_EQ(decompress(client_in, compress(server_out, message)), message) << bits;
      EXPECT_EQ(decompress(server_in, compress(client_out, message)), message) << bits;
    }
  }
}

TEST(ws_deflate, an_agreed_8_bit_window_never_refers_further_back_than_256_bytes) {
  // zlib cannot deflate with an 8-bit window and runs 9 instead; prove a strict 256-byte
  // inflater (zlib's own, windowBits -8) still decodes the output, message after message.
  ws::deflate_params p;
  p.server_max_window_bits = 8;
  ws::deflater d{p, ws::role::server};
  z_stream zs{};
  ASSERT_EQ(inflateInit2(&zs, -8), Z_OK);
  for (int k = 0; k < 4; ++k) {
    const std::string message = sample_text(20000, static_cast<unsigned>(k));
    bytes compressed = compress(d, message);
    for (unsigned x : {0x00u, 0x00u, 0xffu, 0xffu}) compressed.push_back(static_cast<std::byte>(x));
    std::string out(message.size() + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(compressed.data());
    zs.avail_in = static_cast<uInt>(compressed.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    const int rc = inflate(&zs, Z_SYNC_FLUSH);
    ASSERT_TRUE(rc == Z_OK || rc == Z_BUF_ERROR) << rc << " " << (zs.msg ? zs.msg : "");
    out.resize(out.size() - zs.avail_out);
    EXPECT_EQ(out, message);
  }
  inflateEnd(&zs);
}

TEST(ws_deflate, compresses_and_inflates_a_message_in_pieces) {
  const std::string message = sample_text(50000, 9);
  ws::deflater d{ws::deflate_params{}, ws::role::server};
  bytes compressed;
  const std::string_view view{message};
  for (std::size_t off = 0; off < view.size(); off += 7000) {
    const auto piece = view.substr(off, 7000);
    ASSERT_FALSE(d.compress(to_bytes(piece), off + 7000 >= view.size(), compressed));
  }
  ws::inflater i{ws::deflate_params{}, ws::role::client};
  bytes out;
  for (std::size_t off = 0; off < compressed.size(); off += 1) {
    const bool fin = off + 1 == compressed.size();
    ASSERT_FALSE(i.decompress(std::span{compressed}.subspan(off, 1), fin, out, 0));
  }
  EXPECT_EQ(to_string(out), message);
  EXPECT_EQ(i.message_size(), 0u) << "reset after the message";
}

TEST(ws_deflate, keeps_the_window_across_a_bfinal_block_with_context_takeover) {
  // Message 1 ends its DEFLATE stream with BFINAL (§7.2.3.4); message 2 refers back to it.
  const std::string first = sample_text(500, 5);
  bytes m1(1024);
  {
    z_stream zs{};
    ASSERT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(first.data()));
    zs.avail_in = static_cast<uInt>(first.size());
    zs.next_out = reinterpret_cast<Bytef*>(m1.data());
    zs.avail_out = static_cast<uInt>(m1.size());
    ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
    m1.resize(m1.size() - zs.avail_out);
    deflateEnd(&zs);
    // §7.2.1: data not ending in an empty stored block gets one appended, minus the 4 bytes
    // the receiver puts back: after the byte-aligned final block, that is one 0x00.
    m1.push_back(std::byte{0x00});
  }
  bytes m2(1024);
  {
    z_stream zs{};
    ASSERT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    ASSERT_EQ(deflateSetDictionary(&zs, reinterpret_cast<const Bytef*>(first.data()),
                                   static_cast<uInt>(first.size())),
              Z_OK);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(first.data()));
    zs.avail_in = static_cast<uInt>(first.size());
    zs.next_out = reinterpret_cast<Bytef*>(m2.data());
    zs.avail_out = static_cast<uInt>(m2.size());
    ASSERT_EQ(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
    m2.resize(m2.size() - zs.avail_out - 4);  // strip 00 00 ff ff
    deflateEnd(&zs);
  }
  ASSERT_LT(m2.size(), 40u) << "message 2 is all back-references";
  ws::inflater i{ws::deflate_params{}, ws::role::server};
  EXPECT_EQ(decompress(i, m1), first);
  EXPECT_EQ(decompress(i, m2), first);
}

TEST(ws_deflate, refuses_data_that_is_not_deflate_with_1007) {
  ws::inflater i{ws::deflate_params{}, ws::role::server};
  bytes out;
  const auto ec = i.decompress(b({0xff, 0xff, 0xff, 0xff, 0x12}), true, out, 0);
  EXPECT_EQ(ec, ws::error::inflate_failed);
  EXPECT_EQ(ws::to_close_code(ec), ws::close_code::invalid_payload);
  EXPECT_EQ(i.decompress(b({0x00}), true, out, 0), ws::error::inflate_failed) << "stays broken";
}

// --- the caps ------------------------------------------------------------------------------

bytes zero_bomb(std::size_t size) {
  ws::deflater d{ws::deflate_params{}, ws::role::client,
                 ws::deflate_options{.compression_level = 9}};
  const bytes zeros(size);
  bytes out;
  EXPECT_FALSE(d.compress(zeros, true, out));
  return out;
}

// The opt-in ratio cap at Bandit's 25:1.
ws::deflate_options ratio_25() {
  ws::deflate_options o;
  o.max_inflate_ratio = 25;
  return o;
}

TEST(ws_deflate, stops_a_10_mb_zero_bomb_at_the_ratio_cap_with_1009) {
  const bytes bomb = zero_bomb(10 * 1000 * 1000);
  ASSERT_LT(bomb.size(), 20000u) << "zeros compress about 1000:1";
  ws::inflater i{ws::deflate_params{}, ws::role::server, ratio_25()};
  bytes out;
  const auto ec = i.decompress(bomb, true, out, 16u * 1024 * 1024);
  EXPECT_EQ(ec, ws::error::inflate_ratio_exceeded);
  EXPECT_EQ(ws::to_close_code(ec), ws::close_code::message_too_big);
  // Stopped at 25 x the compressed size (+ at most one 16 KiB chunk), never inflated whole.
  EXPECT_LE(out.size(), 25 * bomb.size() + 16 * 1024 + 1);
}

TEST(ws_deflate, stops_the_bomb_at_the_absolute_cap_when_the_ratio_cap_is_off) {
  const bytes bomb = zero_bomb(10 * 1000 * 1000);
  ws::deflate_options o;
  o.max_inflate_ratio = 0;
  ws::inflater i{ws::deflate_params{}, ws::role::server, o};
  bytes out;
  const auto ec = i.decompress(bomb, true, out, 1024 * 1024);
  EXPECT_EQ(ec, ws::error::message_too_large);
  EXPECT_EQ(ws::to_close_code(ec), ws::close_code::message_too_big);
  EXPECT_LE(out.size(), 1024u * 1024 + 1);
}

TEST(ws_deflate, stops_a_bomb_fed_in_small_pieces) {
  const bytes bomb = zero_bomb(10 * 1000 * 1000);
  ws::inflater i{ws::deflate_params{}, ws::role::server, ratio_25()};
  bytes out;
  std::error_code ec;
  for (std::size_t off = 0; off < bomb.size() && !ec; off += 100) {
    const std::size_t n = std::min<std::size_t>(100, bomb.size() - off);
    ec = i.decompress(std::span{bomb}.subspan(off, n), off + n == bomb.size(), out, 0);
  }
  EXPECT_EQ(ec, ws::error::inflate_ratio_exceeded);
  EXPECT_LE(out.size(), 64u * 1024 + 16 * 1024 + 25 * bomb.size());
}

TEST(ws_deflate, inflates_the_whole_bomb_when_both_caps_are_off) {
  const bytes bomb = zero_bomb(3 * 1000 * 1000);
  ws::inflater i{ws::deflate_params{}, ws::role::server};  // no ratio cap by default
  bytes out;
  EXPECT_FALSE(i.decompress(bomb, true, out, 0));
  EXPECT_EQ(out.size(), 3u * 1000 * 1000);
}

TEST(ws_deflate, small_highly_compressible_messages_pass_under_the_ratio_threshold) {
  const std::string message(50000, 'a');  // ~ 500:1, but below the 64 KiB threshold
  ws::deflater d{ws::deflate_params{}, ws::role::client};
  ws::inflater i{ws::deflate_params{}, ws::role::server, ratio_25()};
  EXPECT_EQ(decompress(i, compress(d, message)), message);
}

TEST(ws_deflate, a_message_exactly_at_the_absolute_cap_passes) {
  const std::string message = sample_text(10000, 11);
  ws::deflater d{ws::deflate_params{}, ws::role::client};
  const bytes compressed = compress(d, message);
  ws::inflater i{ws::deflate_params{}, ws::role::server};
  bytes out;
  EXPECT_FALSE(i.decompress(compressed, true, out, message.size()));
  EXPECT_EQ(to_string(out), message);
  ws::inflater j{ws::deflate_params{}, ws::role::server};
  out.clear();
  EXPECT_EQ(j.decompress(compressed, true, out, message.size() - 1), ws::error::message_too_large);
}

TEST(ws_deflate, store_only_compression_round_trips) {
  ws::deflate_options o;
  o.compression_level = 0;
  ws::deflater d{ws::deflate_params{}, ws::role::server, o};
  ws::inflater i{ws::deflate_params{}, ws::role::client};
  const std::string message = sample_text(70000, 13);
  EXPECT_EQ(decompress(i, compress(d, message)), message);
}

TEST(ws_deflate, release_frees_the_compressor_between_messages) {
  const std::string message = sample_text(5000, 17);
  ws::deflater d{ws::deflate_params{}, ws::role::server};
  ws::inflater i{ws::deflate_params{}, ws::role::client};
  EXPECT_EQ(decompress(i, compress(d, message)), message);
  d.release();
  EXPECT_EQ(decompress(i, compress(d, message)), message) << "valid without the history";
}

// --- the inflater's work: blocks that inflate to nothing (issue 9, item 2) ------------------

// DEFLATE written bit by bit (RFC 1951 §3.1.1: header fields LSB first, Huffman codes MSB
// first), for block sequences no compressor emits.
class bit_writer {
 public:
  void field(unsigned value, int bits) {
    for (int k = 0; k < bits; ++k) bit((value >> k) & 1u);
  }
  void huffman(unsigned code, int bits) {
    for (int k = bits - 1; k >= 0; --k) bit((code >> k) & 1u);
  }
  void align() {
    if (used_ > 0) bit_flush();
  }
  std::size_t size() const { return out_.size(); }
  bytes take() {
    align();
    return std::move(out_);
  }

 private:
  void bit(unsigned b) {
    acc_ |= b << used_;
    if (++used_ == 8) bit_flush();
  }
  void bit_flush() {
    out_.push_back(static_cast<std::byte>(acc_));
    acc_ = 0;
    used_ = 0;
  }
  bytes out_;
  unsigned acc_ = 0;
  int used_ = 0;
};

enum class block_type { stored, fixed };

// One block: stored with LEN 0, or fixed Huffman with `literal` (if any) and end-of-block.
// A final block ends the stream; the next one starts at the next byte.
void write_block(bit_writer& w, block_type type, bool final, int literal = -1) {
  w.field(final ? 1 : 0, 1);
  if (type == block_type::stored) {
    w.field(0, 2);
    w.align();
    w.field(0x0000, 16);  // LEN
    w.field(0xffff, 16);  // NLEN
    return;
  }
  w.field(1, 2);
  if (literal >= 0) w.huffman(0x30 + static_cast<unsigned>(literal), 8);  // literals 0..143
  w.huffman(0, 7);                                                        // end of block
  if (final) w.align();
}

// `size` bytes (about) of empty blocks.
bytes empty_blocks(block_type type, bool final, std::size_t size) {
  bit_writer w;
  while (w.size() < size) write_block(w, type, final);
  return w.take();
}

struct empty_variant {
  block_type type;
  bool final;
  const char* name;
};

constexpr empty_variant empty_variants[] = {
    {block_type::fixed, true, "03 00: empty fixed-Huffman blocks with BFINAL"},
    {block_type::stored, true, "01 00 00 ff ff: empty stored blocks with BFINAL"},
    {block_type::fixed, false, "empty fixed-Huffman blocks (10 bits each)"},
    {block_type::stored, false, "00 00 00 ff ff: empty stored blocks"},
};

// Feeds `data` as one message in pieces of `piece` bytes (frames), stopping at an error.
std::error_code feed_message(ws::inflater& i, const bytes& data, std::size_t piece,
                             std::uint64_t max_size) {
  bytes out;
  std::error_code ec;
  for (std::size_t off = 0; off < data.size() && !ec; off += piece) {
    const std::size_t n = std::min(piece, data.size() - off);
    ec = i.decompress(std::span{data}.subspan(off, n), off + n == data.size(), out, max_size);
  }
  EXPECT_TRUE(out.empty());
  return ec;
}

TEST(ws_deflate, refuses_a_message_of_empty_final_blocks_at_the_second_stream_end_with_1007) {
  // Each final block ends the DEFLATE stream and costs a restart, for two bytes and no output:
  // neither the size nor the ratio cap ever saw them. One empty stream is a legitimate empty
  // message; the second is refused, whatever the framing and with a primed window.
  for (const auto& v : empty_variants) {
    if (!v.final) continue;
    const bytes bomb = empty_blocks(v.type, true, 1024 * 1024);
    for (const std::size_t piece : {bomb.size(), std::size_t{2}, std::size_t{1000}}) {
      ws::deflater d{ws::deflate_params{}, ws::role::client};
      ws::inflater i{ws::deflate_params{}, ws::role::server};
      EXPECT_EQ(decompress(i, compress(d, sample_text(40000, 19))).size(), 40000u) << "primed";
      const auto before = i.stats();
      const auto ec = feed_message(i, bomb, piece, 16u * 1024 * 1024);
      EXPECT_EQ(ec, ws::error::inflate_failed) << v.name << ", pieces of " << piece;
      EXPECT_EQ(ws::to_close_code(ec), ws::close_code::invalid_payload);
      // Bounded work: one restart (the second stream end is refused) and two blocks read, of
      // a megabyte offered.
      EXPECT_EQ(i.stats().stream_restarts - before.stream_restarts, 1u) << v.name;
      EXPECT_LE(i.stats().input - before.input, 16u) << v.name;
    }
  }
}

TEST(ws_deflate, refuses_a_message_of_empty_blocks_once_its_compressed_size_passes_max_size) {
  // Blocks without BFINAL inflate to nothing too; the compressed size is held to max_size
  // (1009), refused before the piece that crosses it is inflated.
  constexpr std::uint64_t max_size = 64 * 1024;
  for (const auto& v : empty_variants) {
    if (v.final) continue;
    const bytes bomb = empty_blocks(v.type, false, 1024 * 1024);
    for (const std::size_t piece : {bomb.size(), std::size_t{1000}}) {
      ws::inflater i{ws::deflate_params{}, ws::role::server};
      const auto ec = feed_message(i, bomb, piece, max_size);
      EXPECT_EQ(ec, ws::error::message_too_large) << v.name << ", pieces of " << piece;
      EXPECT_EQ(ws::to_close_code(ec), ws::close_code::message_too_big);
      EXPECT_LE(i.stats().input, max_size) << v.name;
      EXPECT_EQ(i.stats().stream_restarts, 0u);
    }
  }
}

TEST(ws_deflate, a_compressed_size_exactly_at_max_size_passes) {
  const bytes blocks = empty_blocks(block_type::stored, false, 1000);
  ws::inflater i{ws::deflate_params{}, ws::role::server};
  bytes out;
  EXPECT_FALSE(i.decompress(blocks, true, out, blocks.size()));
  ws::inflater j{ws::deflate_params{}, ws::role::server};
  EXPECT_EQ(j.decompress(blocks, true, out, blocks.size() - 1), ws::error::message_too_large);
}

TEST(ws_deflate, the_compressed_size_limit_applies_in_stream_order) {
  // The bytes up to the limit are inflated first, so an error in them is the one reported,
  // however the message was split into reads.
  ws::inflater i{ws::deflate_params{}, ws::role::server};
  bytes out;
  EXPECT_EQ(i.decompress(b({0xff, 0xff, 0xff, 0xff, 0x12, 0x34}), true, out, 4),
            ws::error::inflate_failed);
  ws::inflater j{ws::deflate_params{}, ws::role::server};
  EXPECT_EQ(j.decompress(b({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), true, out, 6),
            ws::error::message_too_large);
  EXPECT_EQ(to_string(out), "Hello") << "the first 6 bytes hold the 5 literals";
}

TEST(ws_deflate, accepts_streams_ended_with_bfinal_that_carry_output_and_one_empty_one) {
  // A sender that flushes with BFINAL (§7.2.3.4) restarts per flush; each restart is paid for
  // by output. Here: 1000 one-letter streams, an empty one, then the 0x00 that the tail
  // completes (an empty stored block).
  bit_writer w;
  for (int k = 0; k < 1000; ++k) write_block(w, block_type::fixed, true, 'a' + k % 26);
  write_block(w, block_type::fixed, true);
  w.field(0, 8);
  const bytes message = w.take();
  ws::inflater i{ws::deflate_params{}, ws::role::server};
  const std::string out = decompress(i, message);
  ASSERT_EQ(out.size(), 1000u);
  EXPECT_EQ(out.substr(0, 4), "abcd");
  EXPECT_EQ(i.stats().stream_restarts, 1001u) << "one per stream, the empty one included";
  // The next message may have its own empty stream: the allowance is per message.
  EXPECT_EQ(decompress(i, b({0x03, 0x00, 0x00})), "");
  EXPECT_EQ(decompress(i, b({0x03, 0x00, 0x00})), "");
}

TEST(ws_deflate, refuses_two_empty_streams_in_one_message) {
  ws::inflater i{ws::deflate_params{}, ws::role::server};
  bytes out;
  EXPECT_EQ(i.decompress(b({0x03, 0x00, 0x03, 0x00, 0x00}), true, out, 0),
            ws::error::inflate_failed);
}

}  // namespace
