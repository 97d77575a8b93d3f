// libFuzzer target: close payload parsing (RFC 6455 §5.5.1) and building. Whatever parses is
// a valid code with a UTF-8 reason and rebuilds to the same bytes; whatever builds parses.
#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "atoll/ws/close.hpp"
#include "atoll/ws/error.hpp"
#include "atoll/ws/utf8.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace ws = atl::ws;
  const std::span<const std::byte> payload{reinterpret_cast<const std::byte*>(data), size};

  ws::close_info info;
  const std::error_code ec = ws::parse_close_payload(payload, info);
  if (!ec) {
    ATOLL_FUZZ_CHECK(size <= ws::max_close_payload_size);
    if (size == 0) {
      ATOLL_FUZZ_CHECK(info.code == ws::close_code::no_status);
    } else {
      ATOLL_FUZZ_CHECK(ws::is_valid_close_code(info.code));
      ATOLL_FUZZ_CHECK(ws::is_valid_utf8(info.reason));
      ATOLL_FUZZ_CHECK(info.reason.size() == size - 2);
      std::array<std::byte, ws::max_close_payload_size> out;
      std::error_code write_ec;
      const std::size_t n = ws::write_close_payload(info.code, info.reason, out, write_ec);
      ATOLL_FUZZ_CHECK(!write_ec);
      ATOLL_FUZZ_CHECK(n == size && std::memcmp(out.data(), data, n) == 0);
    }
  } else {
    const auto code = ws::to_close_code(ec);
    ATOLL_FUZZ_CHECK(code == ws::close_code::protocol_error ||
                     code == ws::close_code::invalid_payload);
    ATOLL_FUZZ_CHECK(size > 0);
  }

  // Building from arbitrary code and reason: either refused, or parses back (the reason cut
  // at a code point boundary to at most 123 bytes).
  if (size >= 2) {
    const auto code =
        static_cast<ws::close_code>(static_cast<std::uint16_t>(data[0] << 8 | data[1]));
    const std::string_view reason{reinterpret_cast<const char*>(data) + 2, size - 2};
    std::array<std::byte, ws::max_close_payload_size> out;
    std::error_code write_ec;
    const std::size_t n = ws::write_close_payload(code, reason, out, write_ec);
    if (!write_ec && n > 0) {
      ATOLL_FUZZ_CHECK(n <= ws::max_close_payload_size);
      ws::close_info back;
      const std::error_code parse_ec = ws::parse_close_payload(std::span{out.data(), n}, back);
      const auto v = static_cast<std::uint16_t>(code);
      if (v >= 1012 && v <= 1014) {
        ATOLL_FUZZ_CHECK(parse_ec == ws::error::bad_close_code);  // sendable, not receivable
      } else {
        ATOLL_FUZZ_CHECK(!parse_ec);
        ATOLL_FUZZ_CHECK(back.code == code);
        ATOLL_FUZZ_CHECK(reason.substr(0, back.reason.size()) == back.reason);
      }
    }
  }
  return 0;
}
