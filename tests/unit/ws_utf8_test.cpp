// Unit tests of atl::ws::utf8_validator: valid and invalid sequences (Unicode Table 3-7),
// fail-fast position, chunk splits at every boundary, and a differential check against a
// straightforward reference decoder over all 1- and 2-byte inputs and a large 3-/4-byte sample.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "atoll/ws/utf8.hpp"

namespace {

using atl::ws::is_valid_utf8;
using atl::ws::utf8_validator;

// Reference: decode code point by code point (RFC 3629 §3, §4), then reject overlong forms,
// surrogates and values over U+10FFFF. Written for clarity, not speed.
bool reference_valid(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (b < 0x80) {
      len = 1;
      cp = b;
    } else if ((b & 0xe0) == 0xc0) {
      len = 2;
      cp = b & 0x1fu;
    } else if ((b & 0xf0) == 0xe0) {
      len = 3;
      cp = b & 0x0fu;
    } else if ((b & 0xf8) == 0xf0) {
      len = 4;
      cp = b & 0x07u;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3fu);
    }
    static constexpr std::uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len]) return false;         // overlong
    if (cp >= 0xd800 && cp <= 0xdfff) return false;  // surrogate
    if (cp > 0x10ffff) return false;                 // beyond Unicode
    i += len;
  }
  return true;
}

// Index of the first byte at which feeding one byte at a time fails, or -1.
long fail_index(std::string_view s) {
  utf8_validator v;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!v.feed(s.substr(i, 1))) return static_cast<long>(i);
  }
  return -1;
}

TEST(ws_utf8, accepts_empty_and_ascii) {
  EXPECT_TRUE(is_valid_utf8(std::string_view{}));
  EXPECT_TRUE(is_valid_utf8("Hello, world"));
  EXPECT_TRUE(is_valid_utf8(std::string(1000, 'x')));
  EXPECT_TRUE(is_valid_utf8(std::string_view{"\0\x7f", 2}));
}

TEST(ws_utf8, accepts_every_sequence_length_at_its_boundaries) {
  for (const char* s : {
           "\xc2\x80",                                      // U+0080, smallest 2-byte
           "\xdf\xbf",                                      // U+07FF
           "\xe0\xa0\x80",                                  // U+0800, smallest 3-byte
           "\xed\x9f\xbf",                                  // U+D7FF, just below the surrogates
           "\xee\x80\x80",                                  // U+E000, just above them
           "\xef\xbf\xbf",                                  // U+FFFF
           "\xf0\x90\x80\x80",                              // U+10000, smallest 4-byte
           "\xf4\x8f\xbf\xbf",                              // U+10FFFF, the last code point
           "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",  // "κόσμε" (Autobahn 6.2)
       }) {
    EXPECT_TRUE(is_valid_utf8(s)) << s;
  }
}

TEST(ws_utf8, refuses_overlongs_surrogates_and_out_of_range) {
  for (const char* s : {
           "\x80",  // lone continuation
           "\xbf",
           "\xc0\x80",      // overlong NUL
           "\xc1\xbf",      // overlong
           "\xe0\x80\x80",  // overlong 3-byte
           "\xe0\x9f\xbf",
           "\xf0\x80\x80\x80",  // overlong 4-byte
           "\xf0\x8f\xbf\xbf",
           "\xed\xa0\x80",      // U+D800
           "\xed\xbf\xbf",      // U+DFFF
           "\xf4\x90\x80\x80",  // U+110000
           "\xf5\x80\x80\x80",
           "\xf8\x88\x80\x80\x80",
           "\xfe",
           "\xff",
           "\xc2\x41",  // continuation expected
           "\xe1\x80\x41",
       }) {
    EXPECT_FALSE(is_valid_utf8(s)) << testing::PrintToString(std::string{s});
  }
}

TEST(ws_utf8, refuses_a_sequence_left_incomplete_at_the_end) {
  for (const char* s : {"\xc2", "\xe0\xa0", "\xf0\x90\x80", "abc\xf4\x8f\xbf"}) {
    utf8_validator v;
    EXPECT_TRUE(v.feed(std::string_view{s})) << "a prefix is not yet wrong";
    EXPECT_FALSE(v.complete());
    EXPECT_FALSE(v.failed());
    EXPECT_FALSE(is_valid_utf8(s));
  }
}

TEST(ws_utf8, fails_at_the_first_impossible_byte_not_at_the_end) {
  // (input, index of the byte that makes it impossible)
  const std::pair<std::string_view, long> cases[] = {
      {"abc\xc0", 3},           // C0 can never start a sequence
      {"abc\xe0\x80zzz", 4},    // E0 80 is overlong already
      {"ab\xed\xa0\x80", 3},    // surrogate known at the second byte
      {"\xf4\x90", 1},          // beyond U+10FFFF at the second byte
      {"\xf0\x90\x80\x41", 3},  // continuation missing
      {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
       "edited",
       12},  // Autobahn 6.4.x
      {"hello\xffworld", 5},
  };
  for (const auto& [input, index] : cases) {
    EXPECT_EQ(fail_index(input), index) << testing::PrintToString(std::string{input});
  }
}

TEST(ws_utf8, stays_failed_until_reset) {
  utf8_validator v;
  EXPECT_FALSE(v.feed(std::string_view{"\xff"}));
  EXPECT_TRUE(v.failed());
  EXPECT_FALSE(v.feed(std::string_view{"valid"}));
  EXPECT_FALSE(v.complete());
  v.reset();
  EXPECT_TRUE(v.feed(std::string_view{"valid"}));
  EXPECT_TRUE(v.complete());
}

TEST(ws_utf8, gives_the_same_answer_for_every_split_into_two_or_three_chunks) {
  const std::string valid = "ascii \xc2\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf end";
  const std::string invalid = "ascii \xc2\xa9 \xe2\x82\xac \xf0\x9f\x98 \xed\xa0\x80 end";
  for (const std::string* s : {&valid, &invalid}) {
    const bool expected = reference_valid(*s);
    const std::string_view view{*s};
    for (std::size_t i = 0; i <= view.size(); ++i) {
      for (std::size_t j = i; j <= view.size(); ++j) {
        utf8_validator v;
        const bool ok = v.feed(view.substr(0, i)) && v.feed(view.substr(i, j - i)) &&
                        v.feed(view.substr(j)) && v.complete();
        ASSERT_EQ(ok, expected) << "split at " << i << ", " << j;
      }
    }
  }
}

TEST(ws_utf8, fast_ascii_path_catches_a_bad_byte_at_every_position) {
  for (std::size_t pos = 0; pos < 64; ++pos) {
    std::string s(64, 'a');
    s[pos] = '\x80';
    EXPECT_EQ(fail_index(s), static_cast<long>(pos));
    EXPECT_FALSE(is_valid_utf8(s)) << pos;
    s[pos] = '\x7f';
    EXPECT_TRUE(is_valid_utf8(s)) << pos;
  }
}

TEST(ws_utf8, agrees_with_the_reference_on_all_one_and_two_byte_inputs) {
  for (unsigned a = 0; a < 256; ++a) {
    const std::string one(1, static_cast<char>(a));
    ASSERT_EQ(is_valid_utf8(one), reference_valid(one)) << a;
    for (unsigned b = 0; b < 256; ++b) {
      const std::string two{static_cast<char>(a), static_cast<char>(b)};
      ASSERT_EQ(is_valid_utf8(two), reference_valid(two)) << a << " " << b;
    }
  }
}

TEST(ws_utf8, agrees_with_the_reference_on_three_and_four_byte_inputs) {
  for (unsigned a = 0xc0; a < 0x100; ++a) {
    for (unsigned b = 0; b < 256; ++b) {
      for (unsigned c = 0; c < 256; c += (a >= 0xe0 && a <= 0xef) ? 1 : 17) {
        const std::string three{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)};
        ASSERT_EQ(is_valid_utf8(three), reference_valid(three)) << a << " " << b << " " << c;
        if (a >= 0xf0) {
          for (unsigned d : {0x00u, 0x7fu, 0x80u, 0x9fu, 0xa0u, 0xbfu, 0xc0u, 0xffu}) {
            const std::string four = three + static_cast<char>(d);
            ASSERT_EQ(is_valid_utf8(four), reference_valid(four));
          }
        }
      }
    }
  }
}

TEST(ws_utf8, byte_span_overload_matches_the_string_overload) {
  const std::string s = "\xe2\x82\xac and \xf0\x9f\x98\x80";
  const auto bytes = std::as_bytes(std::span{s.data(), s.size()});
  EXPECT_TRUE(is_valid_utf8(bytes));
  utf8_validator v;
  EXPECT_TRUE(v.feed(bytes.first(2)));
  EXPECT_TRUE(v.feed(bytes.subspan(2)));
  EXPECT_TRUE(v.complete());
}

}  // namespace
