#pragma once
/// @file session.hpp
/// The WebSocket session layer of `atoll::websocket`: a server-side RFC 6455 (+ RFC 7692
/// permessage-deflate) endpoint on top of `atl::handler`.
///
///     struct echo final : atl::ws::handler {
///       void on_text(atl::ws::session& s, std::string_view t) override { s.send_text(t); }
///       void on_binary(atl::ws::session& s, std::span<const std::byte> b) override {
///         s.send_binary(b);
///       }
///     };
///     atl::ws::options opts;
///     opts.deflate = true;
///     server.add_listener(listener, atl::ws::upgrade_factory(opts,
///         [](const atl::ws::http_request&, atl::connection&) { return std::make_unique<echo>(); }));
///
/// How a connection travels: `upgrade_factory` gives the core a handler that parses the
/// HTTP/1.1 request head (`http_request_parser`, limits from `options::http`), validates the
/// upgrade (`accept_handshake`, RFC 6455 §4.2.1), asks the user's `make_handler` for a
/// `ws::handler`, writes `101 Switching Protocols` and `connection::upgrade()`s to the session
/// (bytes the client sent behind the request are kept). A request that is not a WebSocket
/// upgrade goes to the optional `http_fallback`; every refusal gets its HTTP status (400, 403,
/// 404, 405, 413, 414, 426 with `Sec-WebSocket-Version: 13`, 431, 505) and a close.
///
/// After the upgrade the session reads frames (`message_reader`: masking, fragmentation,
/// control frames, fail-fast UTF-8, size limits, inflation), answers pings, runs the close
/// handshake and the timers, and calls the user's `ws::handler`.
///
/// Thread rules (as in the core): a session lives on its connection's io thread; every
/// `ws::handler` callback runs there, never concurrently for one session; `session` members
/// must be called there too. From other threads use `session::handle()`.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "atoll/connection.hpp"
#include "atoll/endpoint.hpp"
#include "atoll/handler.hpp"
#include "atoll/ws/deflate.hpp"
#include "atoll/ws/error.hpp"
#include "atoll/ws/frame.hpp"
#include "atoll/ws/handshake.hpp"
#include "atoll/ws/http_request.hpp"

namespace atl::ws {

class session;
class session_handle;

namespace detail {
class session_impl;
}

/// Options of a WebSocket endpoint (one `upgrade_factory`). Plain aggregate; the defaults are
/// the module's documented defaults. Checked by `upgrade_factory`, which throws
/// `std::invalid_argument` naming a bad field ("atoll: ws::options.close_timeout: ...").
struct options {
  /// Subprotocol selection and `Origin` check hooks (see `handshake_options`). Its `deflate`
  /// member is ignored: compression is set by `deflate` and `compression` below.
  handshake_options handshake;
  /// Limits of the HTTP/1.1 request head (request line 8 KiB → 414/400, header section 16 KiB
  /// and 100 lines → 431).
  http_limits http;
  /// Time allowed to receive the whole request head, from the connection's admission
  /// (slow-loris defence: a trickle of bytes does not extend it); then the connection is
  /// closed without an answer. 0 = no limit. Default 10 s.
  std::chrono::milliseconds request_timeout{std::chrono::seconds{10}};

  /// Largest frame payload received, in bytes (compressed size) → close 1009. 0 = no limit.
  /// Default 16 MiB.
  std::uint64_t max_frame_size = default_max_size;
  /// Largest message received (sum of its frames, after inflation) → close 1009. Applies to
  /// streamed messages too. 0 = no limit. Default 16 MiB.
  std::uint64_t max_message_size = default_max_size;

  /// Negotiate permessage-deflate (RFC 7692) when the client offers it. Default false.
  bool deflate = false;
  /// The permessage-deflate policy when `deflate` is true (window bits, context takeover,
  /// level, and the opt-in inflate ratio cap, off by default: `max_message_size` bounds a
  /// compressed message both as received and inflated → close 1009).
  deflate_options compression;

  /// Deliver data through `handler::on_fragment` as it arrives instead of whole messages
  /// through `on_text` / `on_binary` (which are then never called). Default false.
  bool stream_fragments = false;

  /// Send a ping every `ping_interval` (keepalive through proxies and NATs; the peer's pong,
  /// or any data, counts as activity for `idle_timeout`). 0 = off (default).
  std::chrono::milliseconds ping_interval{0};
  /// Close a session that received nothing (no frame, no pong) for this long: a close frame
  /// 1001 (going away) is sent and the TCP connection closed after `close_timeout`. Uses the
  /// connection's read timeout. 0 = never. Default 60 s.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds{60}};
  /// Once we have sent a close frame, how long we wait for the peer's close frame (and for
  /// the peer to close TCP after it) before closing the TCP connection ourselves. Must be
  /// > 0. Default 5 s.
  std::chrono::milliseconds close_timeout{std::chrono::seconds{5}};
};

/// The user's code for one WebSocket session; made by the `make_handler` function given to
/// `upgrade_factory`, destroyed after `on_close`. Every callback runs on the session's io
/// thread. An exception escaping a callback is logged and the session's connection is closed
/// (core `close_reason::handler_error`, no close frame); `on_close` still runs.
///
/// Payload spans and string views passed to callbacks are valid only during the call.
class handler {
 public:
  virtual ~handler() = default;

  /// The upgrade is done (the 101 response is queued); called once, first.
  virtual void on_open(session&) {}

  /// A complete text message, valid UTF-8 (may be empty). Not called with `stream_fragments`.
  virtual void on_text(session&, std::string_view) {}

  /// A complete binary message (may be empty). Not called with `stream_fragments`.
  virtual void on_binary(session&, std::span<const std::byte>) {}

  /// With `options::stream_fragments`: the next piece of a message as it arrives. `type` is
  /// `opcode::text` or `opcode::binary` for every piece of the message; `last` ends it. Pieces
  /// do not follow frame boundaries (a frame may come in several pieces) and a text piece may
  /// end inside a UTF-8 sequence (the message as a whole is validated, failing fast with 1007).
  virtual void on_fragment(session&, opcode /*type*/, std::span<const std::byte> /*data*/,
                           bool /*last*/) {}

  /// A ping arrived. Its pong (same payload, §5.5.2) goes out once this read has been
  /// handled, before anything the handler sends meanwhile; when one read holds several pings,
  /// or while the write queue is above `write_low_water` (then from `on_writable`), only the
  /// most recent is answered (§5.5.3): a peer that floods pings costs one pong per read, and
  /// one that never reads cannot grow our queue.
  virtual void on_ping(session&, std::span<const std::byte> /*payload*/) {}
  /// A pong arrived (an answer to `session::ping` or the keepalive, or unsolicited: §5.5.3
  /// says to ignore those, which the session does apart from this notification).
  virtual void on_pong(session&, std::span<const std::byte> /*payload*/) {}

  /// The connection's write queue drained to `listener_config::write_low_water` after a send
  /// returned `send_result::backpressure` (the core's backpressure, see README). The session
  /// has resumed reading by then: it stops reading whenever a send meets backpressure, so a
  /// handler that only answers what it receives (an echo) needs no flow control of its own.
  virtual void on_writable(session&) {}

  /// The server is draining (`server::stop`). The default sends close 1001 (going away) and
  /// lets the close handshake finish (bounded by `close_timeout` and the drain deadline).
  virtual void on_shutdown(session& s);

  /// The session has ended; called exactly once for every `on_open`, last, after the TCP
  /// connection is closed (the session may be queried but not written to). `code` and
  /// `reason`:
  /// - the peer's close frame when one was received (`close_code::no_status` for an empty one),
  ///   whoever started the close handshake;
  /// - otherwise the code we sent (our `close()` unanswered, a protocol error 1002/1007/1009,
  ///   the idle timeout 1001), with our reason;
  /// - otherwise `close_code::abnormal` (1006: TCP ended without close frames) and "".
  virtual void on_close(session&, close_code /*code*/, std::string_view /*reason*/) {}
};

/// One WebSocket connection, server side. Owned by atoll; the reference handed to callbacks
/// stays valid until `on_close` returns. Members must be called on the session's io thread.
///
/// Flow control and slow consumers: when a send (a message, a pong, the keepalive ping) meets
/// backpressure the session stops reading until `on_writable`. A send made while more than
/// `listener_config::max_write_buffer` is already queued drops the session: a close frame
/// 1008 "slow consumer" is queued behind what is there, the connection closes once it drains
/// (or is reset after `close_timeout`), counted as `close_reason::slow_consumer`. One message
/// of any size allowed by `max_message_size` always goes out whole.
class session {
 public:
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  /// Sends `text` as one text message (one frame; compressed when deflate is on). `text` must
  /// be valid UTF-8: it is not checked (a conforming peer fails the connection with 1007).
  /// Returns `dropped` once the session is closing (after `close()` or a received close), or
  /// when it drops the session as a slow consumer (see above).
  send_result send_text(std::string_view text);
  /// Sends `data` as one binary message. See `send_text` for the result.
  send_result send_binary(std::span<const std::byte> data);
  /// Sends one fragment of a message sent piece by piece: the first call opens a message of
  /// `type` (text or binary), later ones continue it (`type` ignored), `last` ends it. Other
  /// messages must not be sent while one is open (control frames may: pings, close). A first
  /// fragment whose `type` is not text or binary is `dropped`. If zlib fails to compress (out
  /// of memory) the session fails with 1011 and the result is `dropped`; the same holds for
  /// `send_text` / `send_binary`.
  send_result send_fragment(opcode type, std::span<const std::byte> data, bool last);

  /// Sends a ping with `payload` (at most 125 bytes; longer → `dropped`, nothing sent).
  send_result ping(std::span<const std::byte> payload = {});
  /// Same, with characters.
  send_result ping(std::string_view payload);

  /// Starts the close handshake: sends a close frame with `code` and `reason` (cut to 123 bytes
  /// at a code point boundary), stops delivering messages, and closes the TCP connection when
  /// the peer answers, or after `close_timeout`. `close_code::no_status` sends an empty close
  /// frame; so does a code that may not be sent (1004-1006, 1015, 0-999, 1016-2999, 5000+) or a
  /// reason that is not UTF-8. Does nothing once closing.
  void close(close_code code = close_code::normal, std::string_view reason = {});

  /// Bytes queued on the connection and not yet handed to the kernel (for backpressure).
  std::size_t buffered_amount() const noexcept;
  /// True until the close handshake starts (either side) or the connection ends.
  bool is_open() const noexcept;
  /// The subprotocol agreed in the handshake, or empty.
  std::string_view subprotocol() const noexcept;
  /// The agreed permessage-deflate parameters, or nullopt when compression is off.
  const std::optional<deflate_params>& deflate() const noexcept;
  /// The peer's address.
  endpoint peer() const noexcept;
  /// The connection's server-wide unique id.
  std::uint64_t id() const noexcept;
  /// The underlying connection (for `local()`, `thread_index()`, `executor()`, ...). Do not
  /// `send` raw bytes on it or `upgrade` it: that corrupts the WebSocket stream.
  atl::connection& connection() noexcept;
  /// A thread-safe handle to this session (for broadcasts from other threads).
  session_handle handle();

 protected:
  session() = default;
  ~session() = default;

 private:
  detail::session_impl& impl() noexcept;
  const detail::session_impl& impl() const noexcept;
};

/// A copyable, thread-safe reference to a session, built on `atl::connection_handle`. It never
/// keeps a session open: once the connection has ended every call does nothing and returns
/// false. `true` means the work was posted to the session's io thread; if the session ends (or
/// its connection starts closing) before it runs, it is dropped. Sends through a handle are
/// delivered in the order they were posted from one thread. Backpressure: a handle's send
/// cannot return `send_result`; check `buffered_amount()` via `dispatch` when it matters.
class session_handle {
 public:
  /// An empty handle; every call returns false.
  session_handle() = default;

  /// Posts `session::send_text(text)`.
  bool send_text(std::string text) const;
  /// Posts `session::send_text(*text)`: one shared copy for a broadcast to many sessions.
  bool send_text(std::shared_ptr<const std::string> text) const;
  /// Posts `session::send_binary(data)`.
  bool send_binary(std::vector<std::byte> data) const;
  /// Posts `session::send_binary` of a copy of `data`.
  bool send_binary(std::span<const std::byte> data) const;
  /// Posts `session::close(code, reason)`.
  bool close(close_code code = close_code::normal, std::string reason = {}) const;
  /// Posts `fn(session&)` to run on the session's io thread, if its connection is still open.
  bool dispatch(std::function<void(session&)> fn) const;

  /// True when the session has certainly ended (or the handle is empty).
  bool expired() const noexcept { return conn_.expired(); }
  /// The connection's id (0 for an empty handle).
  std::uint64_t id() const noexcept { return conn_.id(); }

 private:
  friend class session;
  session_handle(connection_handle conn, detail::session_impl* s)
      : conn_(std::move(conn)), session_(s) {}
  connection_handle conn_;
  // Dereferenced only on the session's io thread, inside conn_.dispatch, i.e. while the
  // connection is open and therefore while the session (its handler) exists.
  detail::session_impl* session_ = nullptr;
};

/// Makes the `ws::handler` for an accepted upgrade; called on the connection's io thread after
/// the request passed validation (and `check_origin`), before the 101 is written. `request` is
/// the upgrade request (route on `request.path()`, read cookies, ...). Returning nullptr
/// refuses the upgrade with `404 Not Found` and a close. An exception is logged and answered
/// with `500 Internal Server Error`. Must be callable from several io threads at once.
using handler_maker =
    std::function<std::unique_ptr<handler>(const http_request& request, atl::connection& c)>;

/// Serves a request on the same port that is not a WebSocket upgrade (no `Upgrade: websocket`;
/// e.g. the HTML page of a chat, `/metrics`). Runs on the connection's io thread. Write a
/// complete response with `c.send(...)` (`format_http_response` helps). Afterwards, if the
/// request is keep-alive (`request.keep_alive()`) and the handler did not call `c.close()`, the
/// next request on the connection is parsed (pipelining works; each request starts a fresh
/// `request_timeout`); otherwise the connection closes after the response. Requests with a
/// body (`Content-Length` > 0 or `Transfer-Encoding`) are not supported: they get `413` and a
/// close, and the fallback is not called. An exception is answered with 500 and a close.
using http_fallback = std::function<void(const http_request& request, atl::connection& c)>;

/// A complete HTTP/1.1 response: status line (`reason_phrase(status)`), `Content-Type` (when
/// not empty), `Content-Length`, `Connection: keep-alive` or `close`, `extra_headers` (complete
/// lines, each ending in CRLF), a blank line, `body`.
std::string format_http_response(unsigned status, std::string_view content_type,
                                 std::string_view body, bool keep_alive = true,
                                 std::string_view extra_headers = {});

/// The core handler factory of a WebSocket endpoint, for `server::add_listener`: see the file
/// comment. Without `fallback`, requests that are not upgrades are refused like bad upgrades
/// (400, or 426 / 405 as `accept_handshake` says). Validates `opts` (throws
/// `std::invalid_argument` naming the field) and throws `std::invalid_argument` if `make` is
/// empty.
atl::handler_factory upgrade_factory(options opts, handler_maker make,
                                     http_fallback fallback = {});

}  // namespace atl::ws
