// libFuzzer target: the HTTP/1.1 request-head parser (whole input vs. split at a fuzzer-chosen
// point vs. byte by byte must agree), its invariants on what it accepts, the upgrade
// validation on every complete request, and the Sec-WebSocket-Extensions parser on the raw
// input.
#include <cstdint>
#include <string>
#include <string_view>

#include "atoll/ws/error.hpp"
#include "atoll/ws/handshake.hpp"
#include "atoll/ws/http_request.hpp"
#include "fuzz_support.hpp"

namespace {

namespace ws = atl::ws;

struct outcome {
  ws::parse_status status;
  std::size_t consumed;
  std::error_code ec;
};

outcome parse_split(ws::http_request_parser& p, std::string_view s, std::size_t split) {
  const auto first = p.parse(s.substr(0, split));
  if (first.status != ws::parse_status::need_more) return {first.status, first.consumed, first.ec};
  const auto second = p.parse(s.substr(split));
  return {second.status, split + second.consumed, second.ec};
}

bool same_request(const ws::http_request& a, const ws::http_request& b) {
  if (a.method() != b.method() || a.target() != b.target() || a.raw() != b.raw() ||
      a.version_minor() != b.version_minor() || a.headers().size() != b.headers().size() ||
      a.content_length() != b.content_length()) {
    return false;
  }
  for (std::size_t i = 0; i < a.headers().size(); ++i) {
    if (a.headers()[i].name != b.headers()[i].name ||
        a.headers()[i].value != b.headers()[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  atoll_fuzz::input in{data, size};
  const std::uint8_t config = in.take_byte();
  const std::uint8_t split_byte = in.take_byte();
  const auto rest = in.rest();
  const std::string_view s{reinterpret_cast<const char*>(rest.data()), rest.size()};

  // Small limits half of the time, so the limit paths are reached with short inputs.
  ws::http_limits limits;
  if (config & 1) {
    limits.max_request_line = 16 + (config >> 1) % 64;
    limits.max_header_bytes = 32 + (config >> 2) % 128;
    limits.max_headers = (config >> 4) % 6;
  }

  ws::http_request_parser whole{limits};
  const auto w = whole.parse(s);
  const outcome a{w.status, w.consumed, w.ec};

  ws::http_request_parser split{limits};
  const auto b = parse_split(split, s, s.empty() ? 0 : split_byte % (s.size() + 1));
  ATOLL_FUZZ_CHECK(a.status == b.status);
  ATOLL_FUZZ_CHECK(a.ec == b.ec);
  if (a.status == ws::parse_status::complete) {
    ATOLL_FUZZ_CHECK(a.consumed == b.consumed);
    ATOLL_FUZZ_CHECK(same_request(whole.request(), split.request()));
  }

  ws::http_request_parser bytewise{limits};
  outcome c{ws::parse_status::need_more, 0, {}};
  for (std::size_t i = 0; i < s.size() && c.status == ws::parse_status::need_more; ++i) {
    const auto r = bytewise.parse(s.substr(i, 1));
    c = {r.status, i + r.consumed, r.ec};
  }
  ATOLL_FUZZ_CHECK(a.status == c.status);
  ATOLL_FUZZ_CHECK(a.ec == c.ec);

  switch (a.status) {
    case ws::parse_status::need_more:
      ATOLL_FUZZ_CHECK(a.consumed == s.size());
      break;
    case ws::parse_status::error: {
      const unsigned status = ws::http_status(a.ec);
      ATOLL_FUZZ_CHECK(status == 400 || status == 414 || status == 431 || status == 505);
      const std::string response = ws::format_error_response(a.ec);
      ATOLL_FUZZ_CHECK(response.rfind("HTTP/1.1 " + std::to_string(status) + " ", 0) == 0);
      break;
    }
    case ws::parse_status::complete: {
      const ws::http_request& r = whole.request();
      ATOLL_FUZZ_CHECK(a.consumed <= s.size());
      ATOLL_FUZZ_CHECK(r.raw() == s.substr(0, a.consumed));
      ATOLL_FUZZ_CHECK(!r.method().empty() && !r.target().empty());
      ATOLL_FUZZ_CHECK(r.version_major() == 1);
      ATOLL_FUZZ_CHECK(r.headers().size() <= limits.max_headers);
      ATOLL_FUZZ_CHECK(r.header_count("Host") <= 1);
      for (const auto& h : r.headers()) {
        ATOLL_FUZZ_CHECK(!h.name.empty());
        for (char ch : h.value) {
          const auto u = static_cast<unsigned char>(ch);
          ATOLL_FUZZ_CHECK(u >= 0x20 || u == '\t');
          ATOLL_FUZZ_CHECK(u != 0x7f);
        }
      }
      // Copies and moves keep their views valid.
      ws::http_request copy = r;
      ws::http_request moved = whole.take_request();
      ATOLL_FUZZ_CHECK(same_request(copy, moved));

      ws::handshake_options options;
      options.deflate = ws::deflate_options{};
      options.select_subprotocol = [](std::span<const std::string_view> offered,
                                      const ws::http_request&) {
        return std::string{offered.back()};
      };
      options.check_origin = [config](std::string_view, const ws::http_request&) {
        return (config & 0x80) == 0;
      };
      const auto h = ws::accept_handshake(moved, options);
      ATOLL_FUZZ_CHECK(!h.response.empty());
      if (h.accepted()) {
        ATOLL_FUZZ_CHECK(h.status == 101);
        ATOLL_FUZZ_CHECK(h.response.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
        ATOLL_FUZZ_CHECK(h.response.find("\r\n\r\n") == h.response.size() - 4);
      } else {
        ATOLL_FUZZ_CHECK(h.status == ws::http_status(h.ec));
        ATOLL_FUZZ_CHECK(h.status >= 400 && h.status < 500);
      }
      break;
    }
  }

  // The raw input as a Sec-WebSocket-Extensions value.
  if (const auto n = ws::negotiate_deflate(s, ws::deflate_options{})) {
    ATOLL_FUZZ_CHECK(n->params.server_max_window_bits >= 8 &&
                     n->params.server_max_window_bits <= 15);
    ATOLL_FUZZ_CHECK(n->params.client_max_window_bits >= 8 &&
                     n->params.client_max_window_bits <= 15);
    const auto back = ws::parse_deflate_response(n->response);
    ATOLL_FUZZ_CHECK(back.has_value() && *back == n->params);
  }
  (void)ws::parse_deflate_response(s);
  return 0;
}
