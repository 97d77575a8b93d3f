// Unit tests of close payloads (RFC 6455 §5.5.1, §7.4): parsing with validation, the codes
// valid on the wire, building with reason truncation, and the error → close code mapping.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "atoll/ws/close.hpp"
#include "atoll/ws/utf8.hpp"

namespace {

namespace ws = atl::ws;

std::vector<std::byte> payload(std::uint16_t code, std::string_view reason = {}) {
  std::vector<std::byte> p{static_cast<std::byte>(code >> 8), static_cast<std::byte>(code & 0xff)};
  for (char c : reason) p.push_back(static_cast<std::byte>(c));
  return p;
}

TEST(ws_close, empty_payload_means_no_status_code) {
  ws::close_info info{ws::close_code::normal, "stale"};
  EXPECT_FALSE(ws::parse_close_payload({}, info));
  EXPECT_EQ(info.code, ws::close_code::no_status);
  EXPECT_TRUE(info.reason.empty());
}

TEST(ws_close, one_byte_payload_is_a_protocol_error) {
  const std::array<std::byte, 1> one{std::byte{0x03}};
  ws::close_info info;
  const auto ec = ws::parse_close_payload(one, info);
  EXPECT_EQ(ec, ws::error::bad_close_payload);
  EXPECT_EQ(ws::to_close_code(ec), ws::close_code::protocol_error);
}

TEST(ws_close, accepts_the_codes_valid_on_the_wire) {
  for (std::uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999}) {
    const auto p = payload(code, "bye");
    ws::close_info info;
    EXPECT_FALSE(ws::parse_close_payload(p, info)) << code;
    EXPECT_EQ(static_cast<std::uint16_t>(info.code), code);
    EXPECT_EQ(info.reason, "bye");
    EXPECT_TRUE(ws::is_valid_close_code(ws::close_code{code}));
  }
}

TEST(ws_close, refuses_reserved_unassigned_and_out_of_range_codes_with_1002) {
  // Autobahn 7.9.x plus the edges of each range.
  for (std::uint16_t code :
       {0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    const auto p = payload(code);
    ws::close_info info;
    const auto ec = ws::parse_close_payload(p, info);
    EXPECT_EQ(ec, ws::error::bad_close_code) << code;
    EXPECT_EQ(ws::to_close_code(ec), ws::close_code::protocol_error);
    EXPECT_FALSE(ws::is_valid_close_code(ws::close_code{code}));
  }
}

TEST(ws_close, refuses_a_reason_that_is_not_utf8_with_1007) {
  for (std::string_view bad : {"\xce\xba\xe1\xbd", "\xed\xa0\x80", "ok\xff"}) {
    const auto p = payload(1000, bad);
    ws::close_info info;
    const auto ec = ws::parse_close_payload(p, info);
    EXPECT_EQ(ec, ws::error::invalid_close_reason);
    EXPECT_EQ(ws::to_close_code(ec), ws::close_code::invalid_payload);
  }
}

TEST(ws_close, refuses_a_payload_over_125_bytes) {
  const auto p = payload(1000, std::string(124, 'a'));
  ASSERT_EQ(p.size(), 126u);
  ws::close_info info;
  EXPECT_EQ(ws::parse_close_payload(p, info), ws::error::control_frame_too_large);
}

TEST(ws_close, reason_views_into_the_payload) {
  const auto p = payload(4000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
  ws::close_info info;
  ASSERT_FALSE(ws::parse_close_payload(p, info));
  EXPECT_EQ(static_cast<const void*>(info.reason.data()), static_cast<const void*>(p.data() + 2));
}

TEST(ws_close, writes_code_in_network_order_then_reason) {
  std::array<std::byte, ws::max_close_payload_size> out;
  std::error_code ec;
  const std::size_t n = ws::write_close_payload(ws::close_code::normal, "bye", out, ec);
  ASSERT_FALSE(ec);
  ASSERT_EQ(n, 5u);
  EXPECT_EQ(out[0], std::byte{0x03});
  EXPECT_EQ(out[1], std::byte{0xe8});
  EXPECT_EQ(out[2], std::byte{'b'});
}

TEST(ws_close, no_status_writes_an_empty_payload) {
  std::array<std::byte, ws::max_close_payload_size> out;
  std::error_code ec;
  EXPECT_EQ(ws::write_close_payload(ws::close_code::no_status, "ignored", out, ec), 0u);
  EXPECT_FALSE(ec);
}

TEST(ws_close, written_payloads_parse_back_to_the_same_code_and_reason) {
  for (std::uint16_t code : {1000, 1001, 1011, 3000, 4999}) {
    std::array<std::byte, ws::max_close_payload_size> out;
    std::error_code ec;
    const std::size_t n = ws::write_close_payload(ws::close_code{code}, "r\xc3\xa9son", out, ec);
    ASSERT_FALSE(ec);
    ws::close_info info;
    ASSERT_FALSE(ws::parse_close_payload(std::span{out.data(), n}, info));
    EXPECT_EQ(static_cast<std::uint16_t>(info.code), code);
    EXPECT_EQ(info.reason, "r\xc3\xa9son");
  }
}

TEST(ws_close, refuses_to_write_codes_that_must_not_be_sent) {
  // (1005 is how an empty close frame is asked for, see no_status_writes_an_empty_payload.)
  for (std::uint16_t code : {0, 999, 1004, 1006, 1015, 1016, 2000, 2999, 5000}) {
    std::array<std::byte, ws::max_close_payload_size> out;
    std::error_code ec;
    EXPECT_EQ(ws::write_close_payload(ws::close_code{code}, "", out, ec), 0u);
    EXPECT_EQ(ec, ws::error::bad_close_code) << code;
  }
}

TEST(ws_close, iana_registered_1012_to_1014_may_be_sent) {
  for (auto code : {ws::close_code::service_restart, ws::close_code::try_again_later,
                    ws::close_code::bad_gateway}) {
    std::array<std::byte, ws::max_close_payload_size> out;
    std::error_code ec;
    EXPECT_EQ(ws::write_close_payload(code, "", out, ec), 2u);
    EXPECT_FALSE(ec);
  }
}

TEST(ws_close, refuses_to_write_a_reason_that_is_not_utf8) {
  std::array<std::byte, ws::max_close_payload_size> out;
  std::error_code ec;
  EXPECT_EQ(ws::write_close_payload(ws::close_code::normal, "\xff", out, ec), 0u);
  EXPECT_EQ(ec, ws::error::invalid_close_reason);
}

TEST(ws_close, cuts_a_long_reason_to_123_bytes) {
  std::array<std::byte, ws::max_close_payload_size> out;
  std::error_code ec;
  EXPECT_EQ(ws::write_close_payload(ws::close_code::normal, std::string(300, 'a'), out, ec),
            ws::max_close_payload_size);
  EXPECT_FALSE(ec);
}

TEST(ws_close, cuts_a_long_reason_at_a_code_point_boundary) {
  // 122 ASCII bytes then a 2-byte and a 4-byte code point: byte 123 would split the "é".
  const std::string reason = std::string(122, 'a') + "\xc3\xa9" + "\xf0\x9f\x98\x80";
  std::array<std::byte, ws::max_close_payload_size> out;
  std::error_code ec;
  const std::size_t n = ws::write_close_payload(ws::close_code::going_away, reason, out, ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(n, 2u + 122u);
  EXPECT_TRUE(ws::is_valid_utf8(std::span{out.data() + 2, n - 2}));

  const std::string reason2 = std::string(121, 'a') + "\xc3\xa9" + "zz";  // é ends at 123
  EXPECT_EQ(ws::write_close_payload(ws::close_code::going_away, reason2, out, ec), 2u + 123u);
}

TEST(ws_close, close_codes_have_names) {
  EXPECT_EQ(ws::to_string(ws::close_code::normal), "normal");
  EXPECT_EQ(ws::to_string(ws::close_code::message_too_big), "message_too_big");
  EXPECT_EQ(ws::to_string(ws::close_code{4000}), "application");
  EXPECT_EQ(ws::to_string(ws::close_code{2000}), "unknown");
}

}  // namespace
