// Unit tests of the incremental HTTP/1.1 request-head parser: fields, lookups and token lists,
// keep-alive and Content-Length, pipelining, every split point, the limits (fast fail) and
// every malformed shape with its HTTP status.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "atoll/ws/error.hpp"
#include "atoll/ws/http_request.hpp"

namespace {

namespace ws = atl::ws;

const std::string upgrade_request =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "X-Empty:\r\n"
    "X-Padded: \t padded value \t \r\n"
    "\r\n";

ws::parse_result parse_all(ws::http_request_parser& p, std::string_view data) {
  return p.parse(data);
}

std::error_code error_of(std::string_view data, const ws::http_limits& limits = {}) {
  ws::http_request_parser p{limits};
  const auto r = p.parse(data);
  EXPECT_EQ(r.status, ws::parse_status::error) << testing::PrintToString(std::string{data});
  return r.ec;
}

void expect_upgrade_request(const ws::http_request& r) {
  EXPECT_EQ(r.method(), "GET");
  EXPECT_EQ(r.target(), "/chat?room=1");
  EXPECT_EQ(r.path(), "/chat");
  EXPECT_EQ(r.query(), "room=1");
  EXPECT_EQ(r.version_major(), 1u);
  EXPECT_EQ(r.version_minor(), 1u);
  ASSERT_EQ(r.headers().size(), 9u);
  EXPECT_EQ(r.headers()[0].name, "Host");
  EXPECT_EQ(r.headers()[0].value, "server.example.com");
  EXPECT_EQ(r.header("host"), "server.example.com");
  EXPECT_EQ(r.header("SEC-WEBSOCKET-KEY"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(r.header("X-Empty"), "");
  EXPECT_EQ(r.header("x-padded"), "padded value");
  EXPECT_FALSE(r.header("Cookie").has_value());
  EXPECT_TRUE(r.has_token("connection", "UPGRADE"));
  EXPECT_TRUE(r.has_token("Connection", "keep-alive"));
  EXPECT_FALSE(r.has_token("Connection", "close"));
  EXPECT_TRUE(r.has_token("Upgrade", "websocket"));
  EXPECT_EQ(r.header_count("Host"), 1u);
  EXPECT_EQ(r.raw(), upgrade_request);
}

TEST(ws_http_request, parses_an_upgrade_request) {
  ws::http_request_parser p;
  const auto r = parse_all(p, upgrade_request);
  ASSERT_EQ(r.status, ws::parse_status::complete) << r.ec.message();
  EXPECT_EQ(r.consumed, upgrade_request.size());
  expect_upgrade_request(p.request());
}

TEST(ws_http_request, gives_the_same_request_for_every_split_point) {
  for (std::size_t split = 0; split <= upgrade_request.size(); ++split) {
    ws::http_request_parser p;
    const std::string_view all{upgrade_request};
    const auto first = p.parse(all.substr(0, split));
    std::size_t consumed = first.consumed;
    if (split < all.size()) {
      ASSERT_EQ(first.status, ws::parse_status::need_more) << split;
      ASSERT_EQ(first.consumed, split);
      const auto second = p.parse(all.substr(split));
      ASSERT_EQ(second.status, ws::parse_status::complete) << split;
      consumed += second.consumed;
    }
    EXPECT_EQ(consumed, all.size());
    expect_upgrade_request(p.request());
  }
}

TEST(ws_http_request, parses_byte_by_byte) {
  ws::http_request_parser p;
  for (std::size_t i = 0; i < upgrade_request.size(); ++i) {
    const auto r = p.parse(std::string_view{upgrade_request}.substr(i, 1));
    ASSERT_EQ(r.status, i + 1 == upgrade_request.size() ? ws::parse_status::complete
                                                        : ws::parse_status::need_more)
        << i;
    ASSERT_EQ(r.consumed, 1u);
  }
  expect_upgrade_request(p.request());
}

TEST(ws_http_request, byte_span_overload_parses_the_same) {
  ws::http_request_parser p;
  const auto r = p.parse(std::as_bytes(std::span{upgrade_request.data(), upgrade_request.size()}));
  ASSERT_EQ(r.status, ws::parse_status::complete);
  expect_upgrade_request(p.request());
}

TEST(ws_http_request, reports_where_a_pipelined_request_begins) {
  const std::string first = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string second = "GET /b HTTP/1.1\r\nHost: y\r\n\r\n";
  const std::string both = first + second + "GET /c";
  ws::http_request_parser p;
  std::string_view rest = both;
  auto r = p.parse(rest);
  ASSERT_EQ(r.status, ws::parse_status::complete);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(p.request().target(), "/a");
  rest.remove_prefix(r.consumed);

  EXPECT_EQ(p.parse(rest).consumed, 0u) << "a complete parser consumes nothing until reset";
  p.reset();
  r = p.parse(rest);
  ASSERT_EQ(r.status, ws::parse_status::complete);
  EXPECT_EQ(r.consumed, second.size());
  EXPECT_EQ(p.request().target(), "/b");
  EXPECT_EQ(p.request().header("Host"), "y");
  rest.remove_prefix(r.consumed);

  p.reset();
  r = p.parse(rest);
  EXPECT_EQ(r.status, ws::parse_status::need_more);
  EXPECT_EQ(r.consumed, rest.size());
}

TEST(ws_http_request, skips_empty_lines_before_the_request_line) {
  ws::http_request_parser p;
  const auto r = p.parse("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(r.status, ws::parse_status::complete);
  EXPECT_EQ(p.request().method(), "GET");
  EXPECT_EQ(p.request().target(), "/");
}

TEST(ws_http_request, accepts_http_1_0_without_host) {
  ws::http_request_parser p;
  ASSERT_EQ(p.parse("GET / HTTP/1.0\r\n\r\n").status, ws::parse_status::complete);
  EXPECT_EQ(p.request().version_minor(), 0u);
  EXPECT_TRUE(p.request().headers().empty());
}

TEST(ws_http_request, keeps_requests_valid_across_copies_and_moves) {
  ws::http_request_parser p;
  ASSERT_EQ(p.parse(upgrade_request).status, ws::parse_status::complete);
  ws::http_request copy = p.request();
  ws::http_request moved = p.take_request();
  p.reset();
  ASSERT_EQ(p.parse("GET /other HTTP/1.1\r\nHost: z\r\n\r\n").status, ws::parse_status::complete);
  expect_upgrade_request(copy);
  expect_upgrade_request(moved);
  ws::http_request assigned;
  assigned = copy;
  expect_upgrade_request(assigned);
  ws::http_request move_assigned;
  move_assigned = std::move(assigned);
  expect_upgrade_request(move_assigned);
}

// --- keep-alive and Content-Length --------------------------------------------------------------

bool keep_alive_of(std::string_view head) {
  ws::http_request_parser p;
  EXPECT_EQ(p.parse(head).status, ws::parse_status::complete);
  return p.request().keep_alive();
}

TEST(ws_http_request, keep_alive_follows_the_version_and_connection_options) {
  EXPECT_TRUE(keep_alive_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(keep_alive_of("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n"));
  EXPECT_FALSE(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

TEST(ws_http_request, reads_content_length) {
  ws::http_request_parser p;
  ASSERT_EQ(p.parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\nbody").status,
            ws::parse_status::complete);
  EXPECT_EQ(p.request().content_length(), 42u);
  p.reset();
  ASSERT_EQ(p.parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, ws::parse_status::complete);
  EXPECT_FALSE(p.request().content_length().has_value());
  p.reset();
  ASSERT_EQ(p.parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nContent-length: 7\r\n\r\n")
                .status,
            ws::parse_status::complete);
  EXPECT_EQ(p.request().content_length(), 7u);
}

TEST(ws_http_request, refuses_invalid_or_conflicting_content_length_with_400) {
  for (std::string_view head : {
           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
       }) {
    const auto ec = error_of(head);
    EXPECT_EQ(ec, ws::error::bad_content_length) << head;
    EXPECT_EQ(ws::http_status(ec), 400u);
  }
}

// --- malformed requests ---------------------------------------------------------------------

TEST(ws_http_request, refuses_malformed_request_lines_with_400) {
  for (std::string_view head : {
           "GET  / HTTP/1.1\r\n",         // two spaces
           "GET / HTTP/1.1 \r\n",         // trailing space
           " GET / HTTP/1.1\r\n",         // leading space
           "GET\t/ HTTP/1.1\r\n",         // tab
           "GET / HTTP/1.1\n",            // bare LF
           "GET / HTTP/1.1\rX",           // bare CR
           "GET /\x01 HTTP/1.1\r\n",      // control in the target
           "GET /\xc3\xa9 HTTP/1.1\r\n",  // non-ASCII target
           "GET / http/1.1\r\n",          // case matters
           "GET / HTTP/1.10\r\n",
           "GET / HTTP/1\r\n",
           "GET / HTTP/x.1\r\n",
           "GET /\r\n",             // HTTP/0.9 shape
           "G(T / HTTP/1.1\r\n",    // not a token
           "\x16\x03\x01\x02\x00",  // a TLS ClientHello
           "\n",
       }) {
    const auto ec = error_of(head);
    EXPECT_EQ(ec, ws::error::bad_request_line) << testing::PrintToString(std::string{head});
    EXPECT_EQ(ws::http_status(ec), 400u);
  }
}

TEST(ws_http_request, refuses_binary_junk_at_the_first_byte) {
  ws::http_request_parser p;
  const auto r = p.parse("\x16\x03\x01");
  EXPECT_EQ(r.status, ws::parse_status::error);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(ws_http_request, refuses_other_major_versions_with_505) {
  for (std::string_view head : {"GET / HTTP/2.0\r\n", "PRI * HTTP/2.0\r\n", "GET / HTTP/0.9\r\n"}) {
    const auto ec = error_of(head);
    EXPECT_EQ(ec, ws::error::http_version_not_supported);
    EXPECT_EQ(ws::http_status(ec), 505u);
  }
}

TEST(ws_http_request, treats_a_higher_http_1_minor_version_as_1_1) {
  ws::http_request_parser p;
  ASSERT_EQ(p.parse("GET / HTTP/1.2\r\nHost: x\r\n\r\n").status, ws::parse_status::complete);
  EXPECT_EQ(p.request().version_minor(), 2u);
  EXPECT_TRUE(p.request().keep_alive());
}

TEST(ws_http_request, refuses_malformed_header_lines_with_400) {
  const std::string_view heads[] = {
      "GET / HTTP/1.1\r\nHost\r\n\r\n",                           // no colon
      "GET / HTTP/1.1\r\nHost : x\r\n\r\n",                       // space before the colon
      "GET / HTTP/1.1\r\n: x\r\n\r\n",                            // empty name
      "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",             // obs-fold
      "GET / HTTP/1.1\r\n Host: x\r\n\r\n",                       // whitespace after the start line
      std::string_view{"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 28},  // NUL in a value
      "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",                        // bare CR in a value
      "GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",                        // bare LF in a value
      "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",                       // DEL
      "GET / HTTP/1.1\r\nHost: x\r\n\n",                          // bare LF at the end
      "GET / HTTP/1.1\r\nHost: x\r\n\rx",
      "GET / HTTP/1.1\r\nX(: y\r\n\r\n",
  };
  for (std::string_view head : heads) {
    const auto ec = error_of(head);
    EXPECT_EQ(ec, ws::error::bad_header_field) << testing::PrintToString(std::string{head});
    EXPECT_EQ(ws::http_status(ec), 400u);
  }
}

TEST(ws_http_request, accepts_obs_text_and_tabs_inside_values) {
  ws::http_request_parser p;
  ASSERT_EQ(p.parse("GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\tbar\r\n\r\n").status,
            ws::parse_status::complete);
  EXPECT_EQ(p.request().header("X-Name"), "caf\xc3\xa9\tbar");
}

TEST(ws_http_request, refuses_missing_and_duplicate_host_with_400) {
  auto ec = error_of("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(ec, ws::error::missing_host);
  EXPECT_EQ(ws::http_status(ec), 400u);
  ec = error_of("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
  EXPECT_EQ(ec, ws::error::duplicate_host);
  EXPECT_EQ(ws::http_status(ec), 400u);
  EXPECT_EQ(error_of("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), ws::error::duplicate_host);
}

// --- limits -----------------------------------------------------------------------------------

TEST(ws_http_request, a_request_line_at_the_limit_passes_and_one_byte_more_is_414) {
  ws::http_limits limits;
  limits.max_request_line = 64;
  const std::string prefix = "GET /";
  const std::string suffix = " HTTP/1.1";
  const std::string target(64 - prefix.size() - suffix.size(), 'a');
  const std::string at_limit = prefix + target + suffix + "\r\nHost: x\r\n\r\n";
  ws::http_request_parser p{limits};
  EXPECT_EQ(p.parse(at_limit).status, ws::parse_status::complete);

  const auto ec = error_of(prefix + target + "a" + suffix + "\r\nHost: x\r\n\r\n", limits);
  EXPECT_EQ(ec, ws::error::uri_too_long);
  EXPECT_EQ(ws::http_status(ec), 414u);
}

TEST(ws_http_request, a_long_target_is_refused_before_the_line_ends) {
  ws::http_limits limits;
  limits.max_request_line = 100;
  ws::http_request_parser p{limits};
  const std::string start = "GET /" + std::string(95, 'a');
  EXPECT_EQ(p.parse(start).status, ws::parse_status::need_more);
  const auto r = p.parse("a");
  EXPECT_EQ(r.status, ws::parse_status::error);
  EXPECT_EQ(r.ec, ws::error::uri_too_long);
}

TEST(ws_http_request, a_request_line_too_long_outside_the_target_is_400) {
  ws::http_limits limits;
  limits.max_request_line = 32;
  EXPECT_EQ(error_of(std::string(40, 'G'), limits), ws::error::bad_request_line);
  EXPECT_EQ(error_of(std::string(40, '\r'), limits), ws::error::bad_request_line);
}

TEST(ws_http_request, leading_empty_lines_count_against_the_request_line_limit) {
  ws::http_limits limits;
  limits.max_request_line = 16;
  std::string many_empty_lines;
  for (int i = 0; i < 20; ++i) many_empty_lines += "\r\n";
  EXPECT_EQ(error_of(many_empty_lines, limits), ws::error::bad_request_line);
}

TEST(ws_http_request, header_bytes_at_the_limit_pass_and_one_more_is_431) {
  const std::string line = "GET / HTTP/1.1\r\n";
  const std::string headers = "Host: x\r\nX-Fill: " + std::string(30, 'f') + "\r\n\r\n";
  ws::http_limits limits;
  limits.max_header_bytes = headers.size();
  ws::http_request_parser p{limits};
  EXPECT_EQ(p.parse(line + headers).status, ws::parse_status::complete);

  limits.max_header_bytes = headers.size() - 1;
  const auto ec = error_of(line + headers, limits);
  EXPECT_EQ(ec, ws::error::headers_too_large);
  EXPECT_EQ(ws::http_status(ec), 431u);
}

TEST(ws_http_request, an_endless_header_is_refused_at_the_limit_without_buffering_more) {
  ws::http_limits limits;
  limits.max_header_bytes = 1000;
  ws::http_request_parser p{limits};
  ASSERT_EQ(p.parse("GET / HTTP/1.1\r\nX: ").status, ws::parse_status::need_more);
  const std::string junk(5000, 'j');
  const auto r = p.parse(junk);
  EXPECT_EQ(r.status, ws::parse_status::error);
  EXPECT_EQ(r.ec, ws::error::headers_too_large);
  EXPECT_LT(r.consumed, 1000u);
  EXPECT_LT(p.request().raw().size(), 1100u);
}

TEST(ws_http_request, header_count_at_the_limit_passes_and_one_more_is_431) {
  ws::http_limits limits;
  limits.max_headers = 5;
  std::string head = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 4; ++i) head += "X-" + std::to_string(i) + ": v\r\n";
  ws::http_request_parser p{limits};
  EXPECT_EQ(p.parse(head + "\r\n").status, ws::parse_status::complete);

  const auto ec = error_of(head + "X-5: v\r\n\r\n", limits);
  EXPECT_EQ(ec, ws::error::too_many_headers);
  EXPECT_EQ(ws::http_status(ec), 431u);
}

TEST(ws_http_request, default_limits_are_8k_line_16k_headers_100_lines) {
  const ws::http_limits limits;
  EXPECT_EQ(limits.max_request_line, 8192u);
  EXPECT_EQ(limits.max_header_bytes, 16384u);
  EXPECT_EQ(limits.max_headers, 100u);
}

TEST(ws_http_request, errors_are_sticky_until_reset) {
  ws::http_request_parser p;
  EXPECT_EQ(p.parse("BAD\x01").status, ws::parse_status::error);
  const auto again = p.parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(again.status, ws::parse_status::error);
  EXPECT_EQ(again.ec, ws::error::bad_request_line);
  p.reset();
  EXPECT_EQ(p.parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, ws::parse_status::complete);
}

// --- helpers ------------------------------------------------------------------------------

TEST(ws_http_request, token_list_splits_trims_and_skips_empty_elements) {
  std::vector<std::string_view> got;
  for (auto t : ws::token_list{" a, b ,,\tc , "}) got.push_back(t);
  EXPECT_EQ(got, (std::vector<std::string_view>{"a", "b", "c"}));
  got.clear();
  for (auto t : ws::token_list{""}) got.push_back(t);
  for (auto t : ws::token_list{" , ,"}) got.push_back(t);
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(ws::list_contains_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_FALSE(ws::list_contains_token("keep-alive, Upgraded", "upgrade"));
  EXPECT_FALSE(ws::list_contains_token("", "upgrade"));
}

TEST(ws_http_request, iequals_ignores_ascii_case_only) {
  EXPECT_TRUE(ws::iequals("WebSocket", "websocket"));
  EXPECT_FALSE(ws::iequals("websocket", "websockets"));
  EXPECT_FALSE(ws::iequals("\xc3\xa9", "\xc3\x89"));
  EXPECT_TRUE(ws::iequals("", ""));
}

}  // namespace
