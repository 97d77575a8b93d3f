#pragma once
/// @file message_writer.hpp
/// The send path of a WebSocket connection: messages, fragments and control frames as bytes,
/// compressed when permessage-deflate is on, masked when the local role is client.

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "atoll/ws/close.hpp"
#include "atoll/ws/deflate.hpp"
#include "atoll/ws/frame.hpp"

namespace atl::ws {

/// Serialises outgoing frames. Each call appends complete frames to the caller's buffer,
/// ready for `connection::send`. A server's frames are unmasked; a client's are masked with a
/// fresh key per frame drawn from OpenSSL's RAND_bytes (§5.3 wants unpredictable keys),
/// fetched 64 keys at a time.
///
/// It does not validate what it is given: text must already be UTF-8 (the session or the user
/// checks, if it must), and a control frame payload over 125 bytes is refused with
/// `error::control_payload_too_large`, nothing written.
///
/// Not thread-safe: one writer per connection, used on its io thread. With compression, the
/// compressor's history makes the order of calls the order on the wire.
class message_writer {
 public:
  /// A writer for the `local` role (server: unmasked frames).
  explicit message_writer(role local = role::server);
  ~message_writer();                                     ///< Frees buffers and zlib state.
  message_writer(message_writer&&) noexcept;             ///< Moves the state.
  message_writer& operator=(message_writer&&) noexcept;  ///< Moves the state.

  /// Turns on permessage-deflate with the agreed parameters: from now on data messages of at
  /// least `options.compress_threshold` bytes are compressed (RSV1 set), at
  /// `options.compression_level` and `options.mem_level`.
  void enable_deflate(const deflate_params& params, const deflate_options& options = {});

  /// True once `enable_deflate` was called.
  bool deflate_enabled() const noexcept { return deflater_ != nullptr; }

  /// Appends `payload` as one whole message (one frame, FIN set) of `type` (text or binary).
  /// Errors: `error::deflate_failed` (zlib out of memory; nothing appended).
  std::error_code write_message(opcode type, std::span<const std::byte> payload,
                                std::vector<std::byte>& out);

  /// Same, for text.
  std::error_code write_text(std::string_view text, std::vector<std::byte>& out);

  /// When `write_message(type, payload, out)` would append `payload` unchanged behind its
  /// header (a server frame below the compression threshold: not masked, not compressed),
  /// writes that header into `header` and returns its size (2, 4 or 10); otherwise returns 0
  /// and writes nothing. The frame is then `header` followed by the payload, which the caller
  /// sends as it likes (gathered, or with the header built in front of the payload) without
  /// copying the payload into a frame buffer.
  std::size_t message_header(opcode type, std::size_t payload_size,
                             std::span<std::byte, max_frame_header_size> header);

  /// Appends one fragment of a message sent piece by piece: the first call (no message in
  /// progress) opens a message of `type` (text or binary), later calls send continuations and
  /// ignore `type`; `fin` ends the message. With compression on, a fragmented message is
  /// always compressed (the threshold needs the whole size). Control frames may be written
  /// between fragments.
  std::error_code write_fragment(opcode type, std::span<const std::byte> payload, bool fin,
                                 std::vector<std::byte>& out);

  /// True while a fragmented message is open.
  bool in_message() const noexcept { return in_message_; }

  /// Appends a ping, pong or close frame with `payload` (≤ 125 bytes, sent as is, never
  /// compressed). Errors: `error::control_payload_too_large`.
  std::error_code write_control(opcode type, std::span<const std::byte> payload,
                                std::vector<std::byte>& out);

  /// Appends a close frame with `code` and `reason` (see `write_close_payload`: the reason is
  /// cut to 123 bytes at a code point boundary; `no_status` sends an empty close frame).
  /// Errors: `error::bad_close_code`, `error::invalid_close_reason` (nothing appended).
  std::error_code write_close(close_code code, std::string_view reason,
                              std::vector<std::byte>& out);

 private:
  frame_header make_header(opcode op, bool fin, bool rsv1);

  role role_;
  std::unique_ptr<deflater> deflater_;
  std::size_t compress_threshold_ = 0;
  bool in_message_ = false;
  bool compressing_ = false;        // the open fragmented message is compressed
  std::vector<std::byte> scratch_;  // compressed payload before framing
  std::vector<std::byte> keys_;     // random bytes for mask keys (client role)
  std::size_t key_pos_ = 0;
};

}  // namespace atl::ws
