#include "atoll/ws/close.hpp"

#include <cstdint>
#include <cstring>

#include "atoll/ws/utf8.hpp"

namespace atl::ws {
namespace {

bool is_sendable_close_code(close_code code) noexcept {
  const auto v = static_cast<std::uint16_t>(code);
  // 1012-1014 are registered with IANA after RFC 6455 (the WebSocket Close Code Number
  // Registry); servers use them for restarts and overload (Bandit sends 1012 on restart).
  return is_valid_close_code(code) || (v >= 1012 && v <= 1014);
}

}  // namespace

bool is_valid_close_code(close_code code) noexcept {
  const auto v = static_cast<std::uint16_t>(code);
  // RFC 6455 §7.4.1 defines 1000-1011 minus 1004 (reserved), 1005 and 1006 (must not be set
  // in a close frame); §7.4.2 leaves 0-999 unused, 1000-2999 to the protocol and extensions,
  // 3000-3999 to registered libraries and 4000-4999 to private use.
  if (v >= 1000 && v <= 1003) return true;
  if (v >= 1007 && v <= 1011) return true;
  return v >= 3000 && v <= 4999;
}

std::error_code parse_close_payload(std::span<const std::byte> payload, close_info& out) noexcept {
  if (payload.empty()) {
    out = close_info{};  // §7.1.5: no status code means 1005 locally.
    return {};
  }
  // §5.5.1: if there is a body, its first two bytes are the code; one byte cannot be.
  if (payload.size() == 1) return error::bad_close_payload;
  if (payload.size() > max_close_payload_size) return error::control_frame_too_large;

  const auto code = static_cast<close_code>(static_cast<std::uint16_t>(
      (std::to_integer<unsigned>(payload[0]) << 8) | std::to_integer<unsigned>(payload[1])));
  if (!is_valid_close_code(code)) return error::bad_close_code;

  // §5.5.1: the body after the code is UTF-8 encoded data; §8.1 makes invalid data a failure.
  const auto reason_bytes = payload.subspan(2);
  if (!is_valid_utf8(reason_bytes)) return error::invalid_close_reason;

  out.code = code;
  out.reason = {reinterpret_cast<const char*>(reason_bytes.data()), reason_bytes.size()};
  return {};
}

std::size_t write_close_payload(close_code code, std::string_view reason,
                                std::span<std::byte, max_close_payload_size> out,
                                std::error_code& ec) noexcept {
  ec.clear();
  if (code == close_code::no_status) return 0;
  if (!is_sendable_close_code(code)) {
    ec = error::bad_close_code;
    return 0;
  }
  if (!is_valid_utf8(reason)) {
    ec = error::invalid_close_reason;
    return 0;
  }
  if (reason.size() > max_close_reason_size) {
    // Cut before the code point that would cross the limit: back off over continuation
    // bytes (10xxxxxx) so the reason stays valid UTF-8, as the peer must check (§8.1).
    std::size_t n = max_close_reason_size;
    while (n > 0 && (static_cast<unsigned char>(reason[n]) & 0xc0) == 0x80) --n;
    reason = reason.substr(0, n);
  }
  const auto v = static_cast<std::uint16_t>(code);
  out[0] = static_cast<std::byte>(v >> 8);
  out[1] = static_cast<std::byte>(v & 0xff);
  if (!reason.empty()) std::memcpy(out.data() + 2, reason.data(), reason.size());
  return 2 + reason.size();
}

}  // namespace atl::ws
