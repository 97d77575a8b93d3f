#include "atoll/ws/utf8.hpp"

#include <cstring>

namespace atl::ws {
namespace {

// Well-formed byte sequences, Unicode 15 Table 3-7 (the same set as RFC 3629 §4):
//   00..7F
//   C2..DF 80..BF
//   E0     A0..BF 80..BF        (E0 80..9F would be overlong)
//   E1..EC 80..BF 80..BF
//   ED     80..9F 80..BF        (ED A0..BF would be a UTF-16 surrogate, U+D800..DFFF)
//   EE..EF 80..BF 80..BF
//   F0     90..BF 80..BF 80..BF (F0 80..8F would be overlong)
//   F1..F3 80..BF 80..BF 80..BF
//   F4     80..8F 80..BF 80..BF (F4 90.. would be over U+10FFFF)
// Everything else (80..C1, F5..FF as a lead byte) never starts a sequence. Checking the second
// byte against its own range is what makes the validator fail at the first impossible byte
// rather than after decoding a whole code point.
struct lead {
  std::uint8_t need;   // continuation bytes that follow; 0xff = invalid lead byte
  std::uint8_t lower;  // range of the first continuation byte
  std::uint8_t upper;
};

constexpr lead classify(unsigned char b) noexcept {
  if (b < 0x80) return {0, 0, 0};
  if (b < 0xc2) return {0xff, 0, 0};
  if (b < 0xe0) return {1, 0x80, 0xbf};
  if (b == 0xe0) return {2, 0xa0, 0xbf};
  if (b == 0xed) return {2, 0x80, 0x9f};
  if (b < 0xf0) return {2, 0x80, 0xbf};
  if (b == 0xf0) return {3, 0x90, 0xbf};
  if (b < 0xf4) return {3, 0x80, 0xbf};
  if (b == 0xf4) return {3, 0x80, 0x8f};
  return {0xff, 0, 0};
}

constexpr std::uint64_t high_bits = 0x8080808080808080ull;

}  // namespace

bool utf8_validator::feed_bytes(const unsigned char* p, std::size_t n) noexcept {
  if (failed_) return false;
  const unsigned char* const end = p + n;
  std::uint8_t need = need_;
  std::uint8_t lower = lower_;
  std::uint8_t upper = upper_;

  while (p != end) {
    if (need == 0) {
      // Text is mostly ASCII: skip eight bytes per step while no byte has its high bit set.
      while (end - p >= 8) {
        std::uint64_t word;
        std::memcpy(&word, p, 8);
        if ((word & high_bits) != 0) break;
        p += 8;
      }
      while (p != end && *p < 0x80) ++p;
      if (p == end) break;

      const lead l = classify(*p++);
      if (l.need == 0xff) {
        failed_ = true;
        return false;
      }
      need = l.need;
      lower = l.lower;
      upper = l.upper;
      continue;
    }
    const unsigned char b = *p++;
    if (b < lower || b > upper) {
      failed_ = true;
      return false;
    }
    --need;
    lower = 0x80;
    upper = 0xbf;
  }

  need_ = need;
  lower_ = lower;
  upper_ = upper;
  return true;
}

bool utf8_validator::feed(std::span<const std::byte> bytes) noexcept {
  return feed_bytes(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

bool utf8_validator::feed(std::string_view text) noexcept {
  return feed_bytes(reinterpret_cast<const unsigned char*>(text.data()), text.size());
}

bool is_valid_utf8(std::span<const std::byte> bytes) noexcept {
  utf8_validator v;
  return v.feed(bytes) && v.complete();
}

bool is_valid_utf8(std::string_view text) noexcept {
  utf8_validator v;
  return v.feed(text) && v.complete();
}

}  // namespace atl::ws
