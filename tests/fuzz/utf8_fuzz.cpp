// libFuzzer target: atl::ws::utf8_validator against a straightforward reference decoder, and
// the incremental answer (split at a fuzzer-chosen point, and byte by byte) against the
// one-shot answer, including the fail-fast position.
#include <cstdint>
#include <string_view>

#include "atoll/ws/utf8.hpp"
#include "fuzz_support.hpp"

namespace {

// Decodes code point by code point (RFC 3629), rejecting overlongs, surrogates and values
// over U+10FFFF. Returns the length of the longest prefix that is valid or could still become
// valid, and whether the whole input is valid.
struct reference_result {
  bool valid;
  std::size_t viable_prefix;
};

reference_result reference(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (b < 0x80) {
      len = 1, cp = b;
    } else if ((b & 0xe0) == 0xc0) {
      len = 2, cp = b & 0x1fu;
    } else if ((b & 0xf0) == 0xe0) {
      len = 3, cp = b & 0x0fu;
    } else if ((b & 0xf8) == 0xf0) {
      len = 4, cp = b & 0x07u;
    } else {
      return {false, i};
    }
    // C0, C1 and F5..F7 can never start a sequence (overlong or beyond U+10FFFF).
    if (len >= 2 && (b < 0xc2 || b > 0xf4)) return {false, i};
    // Walk the continuation bytes; a sequence cut by the end of input is "viable" only if
    // some completion could be valid, which the bounds of the second byte decide.
    std::size_t k = 1;
    for (; k < len && i + k < s.size(); ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return {false, i + k};
      if (k == 1) {
        const bool bad_second = (b == 0xe0 && c < 0xa0) || (b == 0xed && c > 0x9f) ||
                                (b == 0xf0 && c < 0x90) || (b == 0xf4 && c > 0x8f);
        if (bad_second) return {false, i + 1};
      }
      cp = (cp << 6) | (c & 0x3fu);
    }
    if (k < len) return {false, s.size()};  // truncated at the end: viable so far
    static constexpr std::uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return {false, i};
    }
    i += len;
  }
  return {true, s.size()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s{reinterpret_cast<const char*>(data), size};
  const reference_result expected = reference(s);

  ATOLL_FUZZ_CHECK(atl::ws::is_valid_utf8(s) == expected.valid);

  // Split at a point chosen from the input itself.
  const std::size_t split = size == 0 ? 0 : data[0] % (size + 1);
  atl::ws::utf8_validator two;
  const bool two_ok = two.feed(s.substr(0, split)) && two.feed(s.substr(split)) && two.complete();
  ATOLL_FUZZ_CHECK(two_ok == expected.valid);

  // Byte by byte: the first failing byte is the first byte after the longest viable prefix.
  atl::ws::utf8_validator one;
  std::size_t failed_at = size;
  for (std::size_t i = 0; i < size; ++i) {
    if (!one.feed(s.substr(i, 1))) {
      failed_at = i;
      break;
    }
  }
  if (failed_at < size) {
    ATOLL_FUZZ_CHECK(!expected.valid);
    ATOLL_FUZZ_CHECK(failed_at == expected.viable_prefix);
    ATOLL_FUZZ_CHECK(one.failed() && !one.complete());
  } else {
    ATOLL_FUZZ_CHECK(one.complete() == expected.valid);
  }
  return 0;
}
