#pragma once
/// @file close.hpp
/// Close frame payloads (RFC 6455 §5.5.1, §7.4): parsing with validation, and building.

#include <array>
#include <cstddef>
#include <span>
#include <string_view>
#include <system_error>

#include "atoll/ws/error.hpp"

namespace atl::ws {

/// Largest close payload: the 125-byte control frame limit (RFC 6455 §5.5).
inline constexpr std::size_t max_close_payload_size = 125;

/// Largest close reason: 125 bytes minus the 2-byte code.
inline constexpr std::size_t max_close_reason_size = 123;

/// A parsed close payload.
struct close_info {
  /// The status code; `close_code::no_status` (1005) when the payload was empty (§7.1.5).
  close_code code = close_code::no_status;
  /// The UTF-8 reason (may be empty); a view into the payload it was parsed from.
  std::string_view reason;
};

/// True for codes a peer may send (RFC 6455 §7.4.1, §7.4.2): 1000-1003, 1007-1011 and the
/// application range 3000-4999. Everything else — 0-999, 1004-1006 and 1015 (reserved, never
/// on the wire), 1012-2999 (unassigned in RFC 6455), 5000 and above — is a protocol error when
/// received.
bool is_valid_close_code(close_code code) noexcept;

/// Parses a received close payload: empty → `no_status`; 1 byte → `error::bad_close_payload`;
/// a code for which `is_valid_close_code` is false → `error::bad_close_code`; a reason that is
/// not valid UTF-8 → `error::invalid_close_reason`; over 125 bytes →
/// `error::control_frame_too_large`. `out.reason` views into `payload`. `out` is left
/// unchanged on error. Reply codes: 1002 for the first three (`to_close_code`), 1007 for the
/// reason. Pure function, thread-safe.
std::error_code parse_close_payload(std::span<const std::byte> payload, close_info& out) noexcept;

/// Writes the payload of a close frame to send into `out` and returns its size:
/// - `close_code::no_status` writes nothing (an empty close frame) and ignores `reason`;
/// - otherwise the 2-byte code in network byte order, then `reason`, cut to at most 123 bytes at
///   a code point boundary.
/// Codes accepted for sending: those of `is_valid_close_code` plus the IANA-registered
/// 1012-1014 (service restart, try again later, bad gateway; note that peers strictly following
/// RFC 6455 alone, such as the Autobahn suite, treat them as invalid). Anything else sets
/// `ec = error::bad_close_code`; a reason that is not valid UTF-8 sets
/// `ec = error::invalid_close_reason`; both return 0. Pure function, thread-safe.
std::size_t write_close_payload(close_code code, std::string_view reason,
                                std::span<std::byte, max_close_payload_size> out,
                                std::error_code& ec) noexcept;

}  // namespace atl::ws
