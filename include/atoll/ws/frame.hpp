#pragma once
/// @file frame.hpp
/// WebSocket frames (RFC 6455 §5): the incremental header parser with all the header-level
/// checks, masking, and serialisation of server (unmasked) and client (masked) frames.
///
/// The frame parser only reads headers; payload bytes are the caller's (see `message_reader`,
/// which assembles messages from frames and is what a session normally uses).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "atoll/ws/parse_result.hpp"

namespace atl::ws {

/// Frame opcodes (RFC 6455 §5.2, §11.8). 0x3-0x7 and 0xB-0xF are reserved.
enum class opcode : std::uint8_t {
  continuation = 0x0,  ///< a later fragment of a text or binary message.
  text = 0x1,          ///< a UTF-8 text message (first fragment).
  binary = 0x2,        ///< a binary message (first fragment).
  close = 0x8,         ///< control: close (payload: optional code and reason, close.hpp).
  ping = 0x9,          ///< control: ping (answered by a pong with the same payload).
  pong = 0xA,          ///< control: pong.
};

/// True for close, ping, pong (and the reserved 0xB-0xF): opcodes with the high bit set.
constexpr bool is_control(opcode op) noexcept { return (static_cast<unsigned>(op) & 0x8u) != 0; }

/// Which end of the connection this code plays. A server receives masked frames and sends
/// unmasked ones; a client (test clients, the load generator) the other way round (§5.1).
enum class role : std::uint8_t { server, client };

/// The 4-byte masking key (§5.3), in wire order.
using mask_key = std::array<std::byte, 4>;

/// Largest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
inline constexpr std::size_t max_frame_header_size = 14;

/// Largest control frame payload (§5.5).
inline constexpr std::size_t max_control_payload_size = 125;

/// Default for `max_frame_size` and `max_message_size`: 16 MiB.
inline constexpr std::uint64_t default_max_size = 16u * 1024u * 1024u;

/// A decoded (or to-be-encoded) frame header.
struct frame_header {
  bool fin = true;                 ///< last frame of the message.
  bool rsv1 = false;               ///< with permessage-deflate: the message is compressed.
  bool rsv2 = false;               ///< reserved; always refused on receipt.
  bool rsv3 = false;               ///< reserved; always refused on receipt.
  opcode op = opcode::text;        ///< the opcode.
  bool masked = false;             ///< a masking key follows (client-to-server frames).
  mask_key key{};                  ///< the masking key when `masked`.
  std::uint64_t payload_size = 0;  ///< payload length in bytes.
};

/// What `frame_parser` accepts.
struct frame_parser_options {
  /// The local role: `server` requires masked frames (unmasked → `error::unmasked_frame`),
  /// `client` requires unmasked ones (masked → `error::masked_frame`).
  role local_role = role::server;
  /// Largest payload accepted, in bytes, checked from the header before any payload is
  /// buffered (→ `error::frame_too_large`, close 1009). 0 = no limit. Default 16 MiB.
  std::uint64_t max_frame_size = default_max_size;
  /// True once permessage-deflate is negotiated: RSV1 is then allowed on the first frame of a
  /// data message (RFC 7692 §6). Otherwise any RSV bit → `error::reserved_bits`.
  bool allow_rsv1 = false;
};

/// Incremental frame header parser: feed it bytes from the start of a frame; it consumes
/// exactly the header (2-14 bytes, possibly across many calls) and reports, as early as the
/// bytes allow:
/// - RSV2/RSV3, or RSV1 without `allow_rsv1`, or RSV1 on a control or continuation frame →
///   `error::reserved_bits` (RFC 6455 §5.2, RFC 7692 §6, §6.1);
/// - opcodes 0x3-0x7, 0xB-0xF → `error::reserved_opcode`;
/// - a control frame without FIN → `error::fragmented_control_frame` (§5.5);
/// - a control frame over 125 bytes → `error::control_frame_too_large` (§5.5);
/// - the wrong masking for the role → `error::unmasked_frame` / `error::masked_frame` (§5.1);
/// - a 64-bit length with the most significant bit set, or a 16/64-bit length that fits the
///   shorter form (lengths must be minimally encoded) → `error::bad_payload_length` (§5.2);
/// - a payload over `max_frame_size` → `error::frame_too_large` (1009).
///
/// After `complete`, `header()` holds the frame header and the next `parse` call starts a new
/// header. After `error`, every call returns the same error until `reset()`.
///
/// No allocation; not thread-safe (one parser per connection, one thread at a time).
class frame_parser {
 public:
  /// A parser with the given options.
  explicit frame_parser(const frame_parser_options& options = {}) noexcept : options_(options) {}

  /// Consumes header bytes from `data`. See `parse_result`.
  parse_result parse(std::span<const std::byte> data) noexcept;

  /// The last complete header (valid after `parse` returned `complete`).
  const frame_header& header() const noexcept { return header_; }

  /// The options in force.
  const frame_parser_options& options() const noexcept { return options_; }

  /// Allows or refuses RSV1 from the next header on (true once permessage-deflate is agreed).
  void allow_rsv1(bool allowed) noexcept { options_.allow_rsv1 = allowed; }

  /// Forgets any partial header and a past error.
  void reset() noexcept;

 private:
  std::error_code check_first_bytes() noexcept;
  std::error_code decode_rest() noexcept;

  frame_parser_options options_;
  frame_header header_;
  std::array<std::byte, max_frame_header_size> buf_{};
  std::uint8_t have_ = 0;  // bytes of the current header in buf_
  std::uint8_t need_ = 2;  // bytes the current header has in total (known after 2 bytes)
  std::error_code error_;
};

/// XORs `data` in place with `key`, where `data` starts at byte `offset` of the payload (the
/// key byte used for payload byte i is key[i % 4], so chunks can be unmasked as they arrive:
/// pass the running offset). Masking and unmasking are the same operation. Works eight bytes
/// at a time; no allocation; thread-safe.
void apply_mask(std::span<std::byte> data, mask_key key, std::uint64_t offset = 0) noexcept;

/// Copies `src` to `dst` (which must hold `src.size()` bytes and may equal `src.data()`), XORed
/// with `key` as in `apply_mask`. One pass: what a reader uses to move payload out of a shared
/// receive buffer and unmask it.
void copy_masked(std::span<const std::byte> src, std::byte* dst, mask_key key,
                 std::uint64_t offset = 0) noexcept;

/// Size of the header for a payload of `payload_size` bytes: 2, 4 or 10, plus 4 if masked.
constexpr std::size_t frame_header_size(std::uint64_t payload_size, bool masked) noexcept {
  const std::size_t base = payload_size < 126 ? 2 : payload_size <= 0xffff ? 4 : 10;
  return base + (masked ? 4 : 0);
}

/// Encodes `h` (minimal length encoding; mask key written when `h.masked`) into `out` and
/// returns the number of bytes written (`frame_header_size(h.payload_size, h.masked)`).
/// Validates nothing: the caller keeps control frames ≤ 125 bytes and FIN set, and uses a
/// valid opcode. Thread-safe.
std::size_t write_frame_header(const frame_header& h,
                               std::span<std::byte, max_frame_header_size> out) noexcept;

/// Appends one whole frame to `out`: the header from `h` (its `payload_size` is replaced by
/// `payload.size()`), then `payload`, masked with `h.key` when `h.masked`. For server frames
/// leave `masked` false; client frames need a fresh random key per frame (§5.3; see
/// `message_writer`, which draws them). Thread-safe for distinct `out`.
void append_frame(std::vector<std::byte>& out, frame_header h, std::span<const std::byte> payload);

}  // namespace atl::ws
