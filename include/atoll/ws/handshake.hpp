#pragma once
/// @file handshake.hpp
/// The WebSocket opening handshake, server side (RFC 6455 §4.2): validation of a parsed
/// upgrade request, subprotocol and Origin hooks, permessage-deflate negotiation, and the
/// bytes of the 101 response or of the HTTP error response. Client-side helpers for test
/// clients and the load generator at the end.

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "atoll/ws/deflate.hpp"
#include "atoll/ws/http_request.hpp"

namespace atl::ws {

/// What the server accepts in an upgrade, and its hooks. Hooks run inside
/// `accept_handshake`, i.e. on the connection's io thread for the session layer: they must not
/// block, and an exception they throw propagates out of `accept_handshake`.
struct handshake_options {
  /// Chooses the subprotocol from the client's `Sec-WebSocket-Protocol` list (`offered`, in
  /// the client's order of preference, never empty when called). Return one of `offered`
  /// (compared exactly) or an empty string for none; anything else is treated as none, so the
  /// response never names a protocol the client did not offer (RFC 6455 §4.2.2). Unset
  /// (default): no subprotocol is ever selected.
  std::function<std::string(std::span<const std::string_view> offered, const http_request& request)>
      select_subprotocol;
  /// Decides whether to accept the request's `Origin` (empty when there is none, as from
  /// non-browser clients). Returning false refuses the upgrade with 403 Forbidden (§4.2.2,
  /// §10.2). Unset (default): every origin is accepted.
  std::function<bool(std::string_view origin, const http_request& request)> check_origin;
  /// permessage-deflate policy; nullopt (default) never negotiates compression.
  std::optional<deflate_options> deflate;
};

/// The outcome of `accept_handshake`.
struct handshake_result {
  /// Empty when the upgrade is accepted; otherwise why not (an `atl::ws::error`).
  std::error_code ec;
  /// 101 when accepted; otherwise the HTTP error status (400, 403, 405, 426).
  unsigned status = 0;
  /// The complete response to write: the 101 Switching Protocols, or the error response
  /// (with `Connection: close`; the caller closes the connection after writing it).
  std::string response;
  /// The selected subprotocol, or empty.
  std::string subprotocol;
  /// The agreed permessage-deflate parameters, when negotiated.
  std::optional<deflate_params> deflate;

  /// True when the upgrade is accepted.
  bool accepted() const noexcept { return !ec; }
};

/// Validates `request` as a WebSocket upgrade (RFC 6455 §4.2.1) and builds the answer.
/// Checked in this order, the first failure deciding the response:
/// 1. method GET, else 405 with `Allow: GET` (`error::method_not_allowed`);
/// 2. HTTP/1.1 or later, else 400 (`error::upgrade_needs_http11`);
/// 3. `Host` present, else 400 (`error::missing_host`);
/// 4. `Upgrade` holds the token `websocket` (any case), else 400;
/// 5. `Connection` holds the token `upgrade` (any case), else 400;
/// 6. exactly one `Sec-WebSocket-Version`, equal to 13, else 426 with
///    `Sec-WebSocket-Version: 13` (§4.2.2: so an older client can retry with 13);
/// 7. exactly one `Sec-WebSocket-Key` that is base64 of 16 bytes, else 400;
/// 8. `Sec-WebSocket-Protocol` lines, if any, are lists of tokens, else 400;
/// 9. `check_origin`, else 403.
/// Then the subprotocol is selected and permessage-deflate negotiated (never a reason to
/// refuse: bad offers mean no compression), and the 101 response is built with
/// `Sec-WebSocket-Accept`. Thread-safe as far as the hooks are.
handshake_result accept_handshake(const http_request& request,
                                  const handshake_options& options = {});

/// True if `request` asks for a WebSocket upgrade at all (`Upgrade` holds `websocket`): for a
/// server that serves plain HTTP and WebSocket on the same port and routes on it.
bool is_websocket_upgrade(const http_request& request) noexcept;

/// True if `key` is a valid `Sec-WebSocket-Key`: 24 base64 characters ending in "==", i.e. 16
/// bytes encoded (§4.1, §11.3.1).
bool is_valid_websocket_key(std::string_view key) noexcept;

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
/// (§4.2.2 item 5.4), computed with OpenSSL. `dGhlIHNhbXBsZSBub25jZQ==` gives
/// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=` (§1.3).
std::string compute_accept_key(std::string_view key);

/// The reason phrase for `status` ("Bad Request", "Upgrade Required", ...), or "Error" for a
/// status this module does not know.
std::string_view reason_phrase(unsigned status) noexcept;

/// An HTTP/1.1 response that ends the connection: status line, `Content-Type: text/plain;
/// charset=utf-8` (when there is a body), `Content-Length`, `Connection: close`, then
/// `extra_headers` (complete lines, each ending in CRLF), a blank line and `body`.
std::string format_error_response(unsigned status, std::string_view body = {},
                                  std::string_view extra_headers = {});

/// The error response for any HTTP error of this module (request parsing or upgrade): the
/// status of `http_status(ec)` (400 if it has none), the error message as body, and the
/// headers the status needs (`Allow: GET` for 405; `Upgrade: websocket` and
/// `Sec-WebSocket-Version: 13` for 426).
std::string format_error_response(std::error_code ec);

// ---- client side (test clients, load generator) ----------------------------------------------

/// A fresh `Sec-WebSocket-Key`: 16 random bytes (OpenSSL RAND_bytes), base64-encoded.
std::string generate_websocket_key();

/// A client upgrade request: `GET target HTTP/1.1` with `Host`, `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Key: key`, `Sec-WebSocket-Version: 13`, then
/// `extra_headers` (complete lines ending in CRLF, e.g. a `Sec-WebSocket-Extensions` offer
/// from `format_deflate_offer`) and the blank line.
std::string format_upgrade_request(std::string_view host, std::string_view target,
                                   std::string_view key, std::string_view extra_headers = {});

}  // namespace atl::ws
