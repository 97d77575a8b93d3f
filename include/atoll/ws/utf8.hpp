#pragma once
/// @file utf8.hpp
/// Incremental UTF-8 validation with fail-fast (RFC 6455 §8.1, RFC 3629, Unicode Table 3-7).

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace atl::ws {

/// Validates UTF-8 fed in chunks of any size, split anywhere (also inside a code point), as a
/// WebSocket text message arrives frame by frame and read by read.
///
/// Fail-fast: `feed` returns false at the first byte that can no longer be part of well-formed
/// UTF-8 — an invalid lead byte, a bad continuation byte, an overlong form (C0, C1, E0 80..9F,
/// F0 80..8F), a UTF-16 surrogate (ED A0..BF), a code point over U+10FFFF (F4 90.., F5..FF) —
/// not at the end of the message. A sequence still incomplete when the message ends is caught
/// by `complete()`. ASCII runs are checked eight bytes at a time.
///
/// A plain value type, 4 bytes, no allocation. Not thread-safe: one instance per message
/// stream, used by one thread at a time.
class utf8_validator {
 public:
  /// Checks the next bytes. Returns false if they (together with what came before) cannot be
  /// UTF-8; once false, the validator stays failed until `reset()` and ignores further input.
  bool feed(std::span<const std::byte> bytes) noexcept;

  /// Same, for characters.
  bool feed(std::string_view text) noexcept;

  /// True if nothing failed and no code point is left incomplete: the bytes so far are valid
  /// UTF-8 as a whole. Call at the end of a message.
  bool complete() const noexcept { return !failed_ && need_ == 0; }

  /// True once `feed` has returned false.
  bool failed() const noexcept { return failed_; }

  /// Forgets all input (for the next message).
  void reset() noexcept { *this = utf8_validator{}; }

 private:
  bool feed_bytes(const unsigned char* p, std::size_t n) noexcept;

  std::uint8_t need_ = 0;   // continuation bytes still expected for the current code point
  std::uint8_t lower_ = 0;  // bounds of the next continuation byte (Unicode Table 3-7)
  std::uint8_t upper_ = 0;
  bool failed_ = false;
};

/// One-shot check: true if `bytes` is complete, well-formed UTF-8.
bool is_valid_utf8(std::span<const std::byte> bytes) noexcept;

/// One-shot check: true if `text` is complete, well-formed UTF-8.
bool is_valid_utf8(std::string_view text) noexcept;

}  // namespace atl::ws
