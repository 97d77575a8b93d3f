#pragma once
/// @file message_reader.hpp
/// The receive path of a WebSocket connection as one pure object: bytes in, events out.
/// Frame headers (`frame_parser`), unmasking, the fragmentation rules (RFC 6455 §5.4),
/// control frames interleaved with fragments (§5.5), UTF-8 validation of text with fail-fast
/// (§8.1), close payload validation (§5.5.1), permessage-deflate inflation with its limits
/// (RFC 7692), and the size limits — everything a session needs before it calls the user.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "atoll/ws/close.hpp"
#include "atoll/ws/deflate.hpp"
#include "atoll/ws/frame.hpp"
#include "atoll/ws/utf8.hpp"

namespace atl::ws {

/// Limits and behaviour of a `message_reader`. Defaults follow the module's documented
/// defaults (16 MiB frame and message limits).
struct reader_options {
  /// `server` expects masked frames from clients; `client` unmasked frames from a server.
  role local_role = role::server;
  /// Largest frame payload on the wire (compressed size), checked from the header before any
  /// payload is buffered → `error::frame_too_large` (1009). 0 = no limit. Default 16 MiB.
  std::uint64_t max_frame_size = default_max_size;
  /// Largest message: the sum of its frames' payloads → `error::message_too_large` (1009).
  /// Compressed messages are held to it both as received and after inflation. Checked from
  /// each frame header for uncompressed messages (before the payload arrives), and by the
  /// inflater for compressed ones. Applies to streamed messages too. 0 = no limit. Default
  /// 16 MiB.
  std::uint64_t max_message_size = default_max_size;
  /// Validate text messages as UTF-8, failing at the first bad byte (1007). Default true;
  /// turning it off breaks RFC 6455 §8.1 and is only for trusted peers.
  bool validate_utf8 = true;
  /// Deliver data as it arrives (`read_kind::fragment` events, one per received chunk of a
  /// frame) instead of whole messages (`read_kind::message`). Default false.
  bool stream_fragments = false;
};

/// What `message_reader::next` found.
enum class read_kind : std::uint8_t {
  need_more,  ///< all input consumed; nothing to report yet.
  message,    ///< a complete text or binary message (`type`, `payload`).
  fragment,   ///< streaming mode: the next piece of a message (`type`, `payload`, `last`).
  ping,       ///< a ping (`payload` ≤ 125 bytes): answer with a pong carrying the same bytes.
  pong,       ///< a pong (`payload`); unsolicited pongs are to be ignored (§5.5.3).
  close,      ///< a valid close frame (`close`, `payload`); the reader takes no more input.
  error,      ///< a protocol violation (`ec`, `code()`); the connection must be failed.
};

/// One result of `message_reader::next`. `payload` and `close.reason` point into the reader's
/// buffers, or (in-place reading, see `message_reader::next(std::span<std::byte>&)`) into the
/// caller's input, and stay valid until the next call of `next` and, for the input, as long as
/// the caller keeps it (copy what you keep).
struct read_event {
  read_kind kind = read_kind::need_more;  ///< what happened.
  /// `opcode::text` or `opcode::binary` for `message` and `fragment` (also for the later
  /// fragments of a message); the control opcode for `ping`, `pong`, `close`.
  opcode type = opcode::continuation;
  /// `fragment`: this piece completes the message. `message`: always true.
  bool last = false;
  /// Unmasked (and inflated) bytes: the message, the piece, or the control payload.
  std::span<const std::byte> payload;
  /// `payload` lies in the caller's input (in-place reading, unmasked there), not in the
  /// reader's buffers.
  bool in_place = false;
  /// `close`: the parsed code (`no_status` for an empty payload) and reason.
  close_info close;
  /// `error`: why (an `atl::ws::error`).
  std::error_code ec;

  /// `payload` as characters (for text).
  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(payload.data()), payload.size()};
  }
  /// `error`: the close code to send (`to_close_code(ec)`): 1002, 1007 or 1009.
  close_code code() const noexcept { return to_close_code(ec); }
};

/// Turns received bytes into WebSocket events. Pull style, no callbacks:
///
///     void on_data(std::span<const std::byte> data) {
///       for (;;) {
///         const ws::read_event ev = reader.next(data);  // consumes from data
///         switch (ev.kind) {
///           case ws::read_kind::need_more: return;      // data is empty now
///           case ws::read_kind::message: user.on_message(ev.type, ev.payload); break;
///           case ws::read_kind::ping: send_pong(ev.payload); break;
///           case ws::read_kind::pong: break;
///           case ws::read_kind::close: echo_close(ev.close); return;
///           case ws::read_kind::error: fail(ev.code()); return;
///           case ws::read_kind::fragment: ...              // stream_fragments only
///         }
///       }
///     }
///
/// Errors, as soon as the offending byte is seen: every frame header error of `frame_parser`;
/// a continuation without a message → `error::unexpected_continuation`, a text/binary frame
/// inside a fragmented message → `error::expected_continuation` (1002); a message over
/// `max_message_size` → 1009; invalid UTF-8 in a text message → 1007 at the first bad byte
/// (and a code point left incomplete at the end → 1007); bad close payloads (close.hpp); with
/// permessage-deflate, inflate errors (1007) and the inflate caps (1009). Zero-length
/// fragments, continuation or not, are valid and accepted (Autobahn 6.1.x).
///
/// After `close` the reader discards further input (nothing may follow a close frame, §5.5.1)
/// and returns `need_more`; after `error` it returns the same error without consuming.
///
/// Memory: a message is assembled in one buffer (up to `max_message_size`; its first frame's
/// size, up to 256 KiB, is reserved at once, so it is copied once and never zero-filled);
/// buffers over 256 KiB are freed once their message has been delivered, smaller ones kept for
/// reuse, so a steady stream of small messages allocates nothing. Reading in place, a message
/// whose frame arrives whole is not copied at all. Not thread-safe: one reader per
/// connection, on its io thread.
class message_reader {
 public:
  /// A reader with the given options.
  explicit message_reader(const reader_options& options = {});
  ~message_reader();                                     ///< Frees buffers and zlib state.
  message_reader(message_reader&&) noexcept;             ///< Moves buffers and state.
  message_reader& operator=(message_reader&&) noexcept;  ///< Moves buffers and state.

  /// Turns on permessage-deflate with the agreed parameters (from the handshake): RSV1 is
  /// accepted on the first frame of a data message, and such messages are inflated with the
  /// limits of `max_message_size` and `options` (the opt-in ratio cap). Call once, before
  /// the first frame.
  void enable_deflate(const deflate_params& params, const deflate_options& options = {});

  /// Consumes bytes from the front of `data` (advancing it) up to the next event and returns
  /// it; returns `need_more` once `data` is used up without an event. `data` is only read:
  /// payload is unmasked into the reader's own buffers (one copy per byte).
  read_event next(std::span<const std::byte>& data);

  /// The same, reading in place: `data` is the caller's writable buffer, and the reader may
  /// unmask it where it lies and hand out payload spans into it instead of copying:
  /// - a data message whose single frame (or last frame, after zero-length ones) lies wholly
  ///   in `data` is delivered as a span into `data`;
  /// - with `stream_fragments`, every piece of an uncompressed message is;
  /// - compressed frames are unmasked in place and inflated from there.
  /// Everything else (a message spread over several calls or frames, control frames) is
  /// assembled in the reader's buffers as with the other overload. Consumed bytes of `data`
  /// may be overwritten (unmasked); bytes in front of an in-place payload are consumed input
  /// the caller may reuse (e.g. to build a reply's frame header there). Same events, errors
  /// and limits as the other overload, whatever the input's split.
  read_event next(std::span<std::byte>& data);

  /// True while a fragmented message has begun and not ended.
  bool in_message() const noexcept { return in_message_; }

  /// Bytes held for the message being assembled (its memory cost right now).
  std::size_t buffered() const noexcept { return message_.size(); }

  /// The options in force.
  const reader_options& options() const noexcept { return options_; }

 private:
  enum class phase : std::uint8_t { header, control_payload, data_payload, closed, failed };

  read_event read(std::span<const std::byte>& data, std::span<std::byte> writable);
  read_event read_data(std::span<const std::byte>& data, std::span<std::byte> writable);
  read_event fail(std::error_code ec);
  std::error_code begin_data_frame() noexcept;
  read_event finish_control_frame();
  void recycle_buffers() noexcept;

  reader_options options_;
  frame_parser parser_;
  phase phase_ = phase::header;
  frame_header frame_;
  std::uint64_t remaining_ = 0;     // payload bytes of the current frame still to come
  std::uint64_t frame_offset_ = 0;  // payload bytes of the current frame seen (mask offset)
  bool in_message_ = false;
  opcode message_type_ = opcode::text;
  bool compressed_ = false;
  std::uint64_t message_size_ = 0;  // wire bytes of the current (uncompressed) message
  bool recycle_ = false;            // the last event pointed into message_/scratch_
  utf8_validator utf8_;
  std::vector<std::byte> message_;  // the assembled message, or the streamed piece
  std::vector<std::byte> wire_;     // unmasked compressed bytes waiting to be inflated
  std::array<std::byte, max_control_payload_size> control_{};
  std::size_t control_size_ = 0;
  std::unique_ptr<inflater> inflater_;
  std::error_code error_;
};

}  // namespace atl::ws
