#pragma once
/// @file error.hpp
/// The WebSocket module's error conditions (`atl::ws::error`, a `std::error_code` enum) and the
/// RFC 6455 close status codes (`atl::ws::close_code`).
///
/// One enum for every condition the module's parsers and codecs detect, so a failure reads the
/// same in a log line, a test and a counter. Each error maps to what goes on the wire:
/// - HTTP errors (request parsing, upgrade validation) map to an HTTP status with
///   `http_status(error)` (400, 403, 405, 414, 426, 431, 505);
/// - protocol errors after the upgrade map to a close code with `to_close_code(error)` (1002,
///   1007, 1009, 1011), the code the session sends in its close frame.

#include <cstdint>
#include <string_view>
#include <system_error>

namespace atl::ws {

/// RFC 6455 §7.4 status codes carried in close frames. The enum has `std::uint16_t` as its
/// underlying type, so application codes 3000-4999 are written `close_code{4000}`.
enum class close_code : std::uint16_t {
  normal = 1000,               ///< normal closure.
  going_away = 1001,           ///< the endpoint is going away (server shutdown, page left).
  protocol_error = 1002,       ///< the peer broke the protocol.
  unsupported_data = 1003,     ///< a data type the endpoint cannot accept.
  no_status = 1005,            ///< never sent: a close frame without a code (empty payload).
  abnormal = 1006,             ///< never sent: the connection closed without a close frame.
  invalid_payload = 1007,      ///< data inconsistent with the message type (bad UTF-8).
  policy_violation = 1008,     ///< a generic policy violation.
  message_too_big = 1009,      ///< a frame or message over the configured size limit.
  mandatory_extension = 1010,  ///< (client) the server did not negotiate a needed extension.
  internal_error = 1011,       ///< the server hit an unexpected condition.
  service_restart = 1012,      ///< IANA-registered: the server is restarting.
  try_again_later = 1013,      ///< IANA-registered: temporary overload.
  bad_gateway = 1014,          ///< IANA-registered: a gateway got an invalid upstream answer.
  tls_handshake = 1015,        ///< never sent: the TLS handshake failed.
};

/// Everything the module's parsers and codecs refuse. `error::ok` (0) is never reported.
/// Errors are grouped by the layer that reports them; the comment names what the peer gets.
enum class error {
  ok = 0,

  // --- HTTP/1.1 request parsing (http_request_parser) ---------------------------------------
  bad_request_line = 1,        ///< malformed request line (method, target, version). HTTP 400.
  bad_header_field,            ///< malformed header line, obs-fold, CR/LF/NUL in a value. 400.
  missing_host,                ///< an HTTP/1.1 request without `Host` (RFC 9112 §3.2). 400.
  duplicate_host,              ///< more than one `Host` header (RFC 9112 §3.2). 400.
  bad_content_length,          ///< a non-numeric or conflicting `Content-Length`, or one sent
                               ///< together with `Transfer-Encoding` (RFC 9112 §6.3). 400.
  uri_too_long,                ///< the request target made the request line too long. 414.
  headers_too_large,           ///< header section over `http_limits::max_header_bytes`. 431.
  too_many_headers,            ///< more header lines than `http_limits::max_headers`. 431.
  http_version_not_supported,  ///< a major version other than HTTP/1. 505.

  // --- WebSocket upgrade validation (RFC 6455 §4.2.1) -----------------------------------------
  method_not_allowed,     ///< not a GET. 405 with `Allow: GET`.
  upgrade_needs_http11,   ///< an HTTP/1.0 request asked for an upgrade. 400.
  no_connection_upgrade,  ///< `Connection` lacks the `upgrade` token. 400.
  no_upgrade_websocket,   ///< `Upgrade` lacks the `websocket` token. 400.
  bad_websocket_key,      ///< `Sec-WebSocket-Key` missing, repeated, or not 16 bytes. 400.
  bad_websocket_version,  ///< `Sec-WebSocket-Version` missing or not 13. 426.
  bad_subprotocol_list,   ///< `Sec-WebSocket-Protocol` is not a list of tokens. 400.
  origin_refused,         ///< the `check_origin` hook refused the `Origin`. 403.

  // --- frame headers (frame_parser, RFC 6455 §5.2) --------------------------------------------
  unmasked_frame,            ///< a client frame without a mask (§5.1). Close 1002.
  masked_frame,              ///< a server frame with a mask (client side, §5.1). 1002.
  reserved_bits,             ///< RSV1-3 set without an extension defining them. 1002.
  reserved_opcode,           ///< opcode 0x3-0x7 or 0xB-0xF. 1002.
  fragmented_control_frame,  ///< a control frame without FIN (§5.5). 1002.
  control_frame_too_large,   ///< a control frame payload over 125 bytes (§5.5). 1002.
  bad_payload_length,        ///< a 64-bit length with the MSB set, or a length not in its
                             ///< minimal encoding (§5.2). 1002.
  frame_too_large,           ///< a frame payload over `max_frame_size`. 1009.

  // --- messages (message_reader, RFC 6455 §5.4, §8.1) -----------------------------------------
  unexpected_continuation,  ///< a continuation frame with no message in progress. 1002.
  expected_continuation,    ///< a new text/binary frame while a message is in progress. 1002.
  message_too_large,        ///< a message (after inflation) over `max_message_size`. 1009.
  invalid_utf8,             ///< a text message that is not valid UTF-8 (§8.1). 1007.

  // --- close frames (close.hpp, RFC 6455 §5.5.1, §7.4) ----------------------------------------
  bad_close_payload,     ///< a close payload of exactly one byte. 1002.
  bad_close_code,        ///< a close code that must not appear on the wire. 1002.
  invalid_close_reason,  ///< a close reason that is not valid UTF-8. 1007.

  // --- permessage-deflate (deflate.hpp, RFC 7692) ---------------------------------------------
  inflate_failed,          ///< not a valid DEFLATE stream, or a message that restarts its
                           ///< stream without output more than once. 1007.
  inflate_ratio_exceeded,  ///< inflated size over `max_inflate_ratio` x compressed. 1009.
  deflate_failed,          ///< zlib failed while compressing (out of memory). 1011.

  // --- local misuse -----------------------------------------------------------------------------
  control_payload_too_large,  ///< asked to send a control frame over 125 bytes. Not sent.
};

/// The category of `atl::ws::error`; its name is "atoll.websocket".
const std::error_category& error_category() noexcept;

/// Makes a `std::error_code` from an `atl::ws::error` (found by ADL).
inline std::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// The close code to send for a protocol error: 1002 (protocol), 1007 (bad UTF-8, bad close
/// reason, undecodable compressed data), 1009 (frame, message or inflate limits), 1011 (local
/// compression failure). `close_code::protocol_error` for anything else, including errors of
/// other categories (a defensive default: the session must close anyway).
close_code to_close_code(std::error_code ec) noexcept;

/// The HTTP status to answer for an HTTP parsing or upgrade error (400, 403, 405, 414, 426, 431,
/// 505); 0 for errors that are not HTTP errors (frames, close, deflate, other categories).
unsigned http_status(std::error_code ec) noexcept;

/// "normal", "protocol_error", ... for logs and metrics labels; "application" for 3000-4999,
/// "unknown" otherwise.
std::string_view to_string(close_code code) noexcept;

}  // namespace atl::ws

/// Lets `atl::ws::error` values convert to `std::error_code` implicitly.
template <>
struct std::is_error_code_enum<atl::ws::error> : std::true_type {};
