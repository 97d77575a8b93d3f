#include "atoll/ws/error.hpp"

#include <string>

namespace atl::ws {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "atoll.websocket"; }

  std::string message(int v) const override {
    switch (static_cast<error>(v)) {
      case error::ok:
        return "success";
      case error::bad_request_line:
        return "malformed HTTP request line";
      case error::bad_header_field:
        return "malformed HTTP header field";
      case error::missing_host:
        return "HTTP/1.1 request without Host";
      case error::duplicate_host:
        return "more than one Host header";
      case error::bad_content_length:
        return "invalid or conflicting Content-Length";
      case error::uri_too_long:
        return "request target too long";
      case error::headers_too_large:
        return "request header section too large";
      case error::too_many_headers:
        return "too many request header fields";
      case error::http_version_not_supported:
        return "HTTP version not supported";
      case error::method_not_allowed:
        return "WebSocket upgrade needs GET";
      case error::upgrade_needs_http11:
        return "WebSocket upgrade needs HTTP/1.1";
      case error::no_connection_upgrade:
        return "Connection header lacks 'upgrade'";
      case error::no_upgrade_websocket:
        return "Upgrade header lacks 'websocket'";
      case error::bad_websocket_key:
        return "missing or invalid Sec-WebSocket-Key";
      case error::bad_websocket_version:
        return "Sec-WebSocket-Version is not 13";
      case error::bad_subprotocol_list:
        return "malformed Sec-WebSocket-Protocol";
      case error::origin_refused:
        return "Origin refused";
      case error::unmasked_frame:
        return "client frame not masked";
      case error::masked_frame:
        return "server frame masked";
      case error::reserved_bits:
        return "reserved bits set without a negotiated extension";
      case error::reserved_opcode:
        return "reserved opcode";
      case error::fragmented_control_frame:
        return "fragmented control frame";
      case error::control_frame_too_large:
        return "control frame payload over 125 bytes";
      case error::bad_payload_length:
        return "invalid payload length encoding";
      case error::frame_too_large:
        return "frame over max_frame_size";
      case error::unexpected_continuation:
        return "continuation frame without a message";
      case error::expected_continuation:
        return "new data frame inside a fragmented message";
      case error::message_too_large:
        return "message over max_message_size";
      case error::invalid_utf8:
        return "text message is not valid UTF-8";
      case error::bad_close_payload:
        return "close payload of one byte";
      case error::bad_close_code:
        return "invalid close code";
      case error::invalid_close_reason:
        return "close reason is not valid UTF-8";
      case error::inflate_failed:
        return "invalid compressed data";
      case error::inflate_ratio_exceeded:
        return "compressed message over max_inflate_ratio";
      case error::deflate_failed:
        return "compression failed";
      case error::control_payload_too_large:
        return "control frame payload over 125 bytes";
    }
    return "unknown atoll.websocket error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category c;
  return c;
}

close_code to_close_code(std::error_code ec) noexcept {
  if (ec.category() != error_category()) return close_code::protocol_error;
  switch (static_cast<error>(ec.value())) {
    // RFC 6455 §7.4.1: 1007 for "data within a message that was not consistent with the type
    // of the message"; undecodable compressed data is such data (as Bandit answers).
    case error::invalid_utf8:
    case error::invalid_close_reason:
    case error::inflate_failed:
      return close_code::invalid_payload;
    // §7.4.1: 1009 for "a message that is too big for it to process".
    case error::frame_too_large:
    case error::message_too_large:
    case error::inflate_ratio_exceeded:
      return close_code::message_too_big;
    case error::deflate_failed:
      return close_code::internal_error;
    default:
      return close_code::protocol_error;
  }
}

unsigned http_status(std::error_code ec) noexcept {
  if (ec.category() != error_category()) return 0;
  switch (static_cast<error>(ec.value())) {
    case error::bad_request_line:
    case error::bad_header_field:
    case error::missing_host:
    case error::duplicate_host:
    case error::bad_content_length:
    case error::upgrade_needs_http11:
    case error::no_connection_upgrade:
    case error::no_upgrade_websocket:
    case error::bad_websocket_key:
    case error::bad_subprotocol_list:
      return 400;
    case error::origin_refused:
      return 403;
    case error::method_not_allowed:
      return 405;
    case error::uri_too_long:
      return 414;
    case error::bad_websocket_version:
      return 426;
    case error::headers_too_large:
    case error::too_many_headers:
      return 431;
    case error::http_version_not_supported:
      return 505;
    default:
      return 0;
  }
}

std::string_view to_string(close_code code) noexcept {
  switch (code) {
    case close_code::normal:
      return "normal";
    case close_code::going_away:
      return "going_away";
    case close_code::protocol_error:
      return "protocol_error";
    case close_code::unsupported_data:
      return "unsupported_data";
    case close_code::no_status:
      return "no_status";
    case close_code::abnormal:
      return "abnormal";
    case close_code::invalid_payload:
      return "invalid_payload";
    case close_code::policy_violation:
      return "policy_violation";
    case close_code::message_too_big:
      return "message_too_big";
    case close_code::mandatory_extension:
      return "mandatory_extension";
    case close_code::internal_error:
      return "internal_error";
    case close_code::service_restart:
      return "service_restart";
    case close_code::try_again_later:
      return "try_again_later";
    case close_code::bad_gateway:
      return "bad_gateway";
    case close_code::tls_handshake:
      return "tls_handshake";
  }
  const auto v = static_cast<std::uint16_t>(code);
  if (v >= 3000 && v <= 4999) return "application";
  return "unknown";
}

}  // namespace atl::ws
