// Unit tests of the server side of the opening handshake (RFC 6455 §4.2): the accept key, the
// 101 response, every refusal with its HTTP status and headers, the subprotocol and Origin
// hooks, deflate negotiation through the handshake, and the client-side helpers.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "atoll/ws/error.hpp"
#include "atoll/ws/handshake.hpp"

namespace {

namespace ws = atl::ws;

const std::string base_request =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n";

ws::http_request parse(const std::string& head) {
  ws::http_request_parser p;
  const auto r = p.parse(head);
  EXPECT_EQ(r.status, ws::parse_status::complete) << r.ec.message() << "\n" << head;
  return p.take_request();
}

// The request with header `name` removed (all lines), then `extra` lines added.
std::string edit(std::string_view remove, std::string_view extra = {}) {
  std::string out;
  std::size_t pos = 0;
  while (pos < base_request.size()) {
    const std::size_t end = base_request.find("\r\n", pos) + 2;
    const std::string_view line = std::string_view{base_request}.substr(pos, end - pos);
    if (remove.empty() || line.substr(0, remove.size()) != remove) out += line;
    pos = end;
  }
  out += extra;
  out += "\r\n";
  return out;
}

ws::handshake_result handshake(const std::string& head, const ws::handshake_options& o = {}) {
  return ws::accept_handshake(parse(head), o);
}

// Checks an error response: status line, Content-Length equal to the body, Connection: close.
void expect_error_response(const ws::handshake_result& r, unsigned status) {
  EXPECT_FALSE(r.accepted());
  EXPECT_EQ(r.status, status);
  EXPECT_EQ(ws::http_status(r.ec), status);
  const std::string& s = r.response;
  EXPECT_EQ(s.rfind("HTTP/1.1 " + std::to_string(status) + " ", 0), 0u) << s;
  EXPECT_NE(s.find("\r\nConnection: close\r\n"), std::string::npos) << s;
  const std::size_t body = s.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  const std::string length = "Content-Length: " + std::to_string(s.size() - body - 4) + "\r\n";
  EXPECT_NE(s.find(length), std::string::npos) << s;
}

TEST(ws_handshake, computes_the_rfc_example_accept_key) {
  EXPECT_EQ(ws::compute_accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(ws_handshake, accepts_a_valid_upgrade_with_the_exact_101_response) {
  const auto r = handshake(base_request + "\r\n");
  ASSERT_TRUE(r.accepted()) << r.ec.message();
  EXPECT_EQ(r.status, 101u);
  EXPECT_EQ(r.response,
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "\r\n");
  EXPECT_TRUE(r.subprotocol.empty());
  EXPECT_FALSE(r.deflate.has_value());
}

TEST(ws_handshake, accepts_token_lists_in_any_case_and_over_several_lines) {
  const std::string head =
      "GET / HTTP/1.1\r\nhost: h\r\nupgrade: h2c, WebSocket\r\n"
      "connection: keep-alive\r\nCONNECTION: UPGRADE\r\n"
      "sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\nsec-websocket-version: 13\r\n\r\n";
  const auto r = handshake(head);
  EXPECT_TRUE(r.accepted()) << r.ec.message();
}

TEST(ws_handshake, refuses_other_methods_with_405_and_allow_get) {
  std::string head = base_request + "\r\n";
  head.replace(0, 3, "POST");
  const auto r = handshake(head);
  EXPECT_EQ(r.ec, ws::error::method_not_allowed);
  expect_error_response(r, 405);
  EXPECT_NE(r.response.find("\r\nAllow: GET\r\n"), std::string::npos);
}

TEST(ws_handshake, refuses_http_1_0_with_400) {
  std::string head = base_request + "\r\n";
  head.replace(head.find("HTTP/1.1"), 8, "HTTP/1.0");
  const auto r = handshake(head);
  EXPECT_EQ(r.ec, ws::error::upgrade_needs_http11);
  expect_error_response(r, 400);
}

TEST(ws_handshake, a_request_without_host_is_refused_by_the_parser_with_400) {
  // accept_handshake checks Host again, but an HTTP/1.1 request without one never gets there.
  ws::http_request_parser p;
  const auto r = p.parse(edit("Host:"));
  EXPECT_EQ(r.ec, ws::error::missing_host);
  EXPECT_EQ(ws::format_error_response(r.ec).rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
}

TEST(ws_handshake, refuses_a_missing_or_wrong_upgrade_with_400) {
  for (const std::string& head : {edit("Upgrade:"), edit("Upgrade:", "Upgrade: websockets\r\n"),
                                  edit("Upgrade:", "Upgrade: h2c\r\n")}) {
    const auto r = handshake(head);
    EXPECT_EQ(r.ec, ws::error::no_upgrade_websocket);
    expect_error_response(r, 400);
  }
}

TEST(ws_handshake, refuses_a_connection_header_without_upgrade_with_400) {
  for (const std::string& head :
       {edit("Connection:"), edit("Connection:", "Connection: keep-alive\r\n"),
        edit("Connection:", "Connection: upgraded\r\n")}) {
    const auto r = handshake(head);
    EXPECT_EQ(r.ec, ws::error::no_connection_upgrade);
    expect_error_response(r, 400);
  }
}

TEST(ws_handshake, refuses_a_missing_or_other_version_with_426_naming_13) {
  for (const std::string& head :
       {edit("Sec-WebSocket-Version:"),
        edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8\r\n"),
        edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 13, 8\r\n"),
        edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 013\r\n"),
        edit("", "Sec-WebSocket-Version: 13\r\n")}) {  // twice
    const auto r = handshake(head);
    EXPECT_EQ(r.ec, ws::error::bad_websocket_version) << head;
    expect_error_response(r, 426);
    EXPECT_NE(r.response.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
    EXPECT_NE(r.response.find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  }
}

TEST(ws_handshake, refuses_a_missing_or_invalid_key_with_400) {
  for (const char* key :
       {"", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ===",
        "dGhlIHNhbXBsZSBub25j*Q==", "dGhlIHNhbXBsZSBub25jZUE=", "c2hvcnQ="}) {
    const auto r =
        handshake(edit("Sec-WebSocket-Key:", std::string("Sec-WebSocket-Key: ") + key + "\r\n"));
    EXPECT_EQ(r.ec, ws::error::bad_websocket_key) << key;
    expect_error_response(r, 400);
  }
  const auto missing = handshake(edit("Sec-WebSocket-Key:"));
  EXPECT_EQ(missing.ec, ws::error::bad_websocket_key);
  const auto twice = handshake(edit("", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"));
  EXPECT_EQ(twice.ec, ws::error::bad_websocket_key);
}

TEST(ws_handshake, validates_keys) {
  EXPECT_TRUE(ws::is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_TRUE(ws::is_valid_websocket_key("+/+/+/+/+/+/+/+/+/+/+w=="));
  EXPECT_FALSE(ws::is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ="));
  EXPECT_FALSE(ws::is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ==="));
  EXPECT_FALSE(ws::is_valid_websocket_key("dGhlIHNhbXBsZSBub2=jZQ=="));
}

TEST(ws_handshake, selects_a_subprotocol_through_the_hook) {
  ws::handshake_options o;
  std::vector<std::string> seen;
  o.select_subprotocol = [&](std::span<const std::string_view> offered,
                             const ws::http_request& request) {
    EXPECT_EQ(request.target(), "/chat");
    for (auto p : offered) seen.emplace_back(p);
    return std::string{"superchat"};
  };
  const auto r = handshake(edit("",
                                "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                "Sec-WebSocket-Protocol: v2.json\r\n"),
                           o);
  ASSERT_TRUE(r.accepted());
  EXPECT_EQ(seen, (std::vector<std::string>{"chat", "superchat", "v2.json"}));
  EXPECT_EQ(r.subprotocol, "superchat");
  EXPECT_NE(r.response.find("\r\nSec-WebSocket-Protocol: superchat\r\n"), std::string::npos);
}

TEST(ws_handshake, never_answers_a_subprotocol_the_client_did_not_offer) {
  ws::handshake_options o;
  o.select_subprotocol = [](std::span<const std::string_view>, const ws::http_request&) {
    return std::string{"mqtt"};
  };
  const auto r = handshake(edit("", "Sec-WebSocket-Protocol: chat\r\n"), o);
  ASSERT_TRUE(r.accepted());
  EXPECT_TRUE(r.subprotocol.empty());
  EXPECT_EQ(r.response.find("Sec-WebSocket-Protocol"), std::string::npos);
}

TEST(ws_handshake, does_not_call_the_subprotocol_hook_without_an_offer) {
  ws::handshake_options o;
  bool called = false;
  o.select_subprotocol = [&](std::span<const std::string_view>, const ws::http_request&) {
    called = true;
    return std::string{"chat"};
  };
  EXPECT_TRUE(handshake(base_request + "\r\n", o).accepted());
  EXPECT_FALSE(called);
}

TEST(ws_handshake, refuses_a_subprotocol_list_of_non_tokens_with_400) {
  const auto r = handshake(edit("", "Sec-WebSocket-Protocol: chat, s{u}per\r\n"));
  EXPECT_EQ(r.ec, ws::error::bad_subprotocol_list);
  expect_error_response(r, 400);
}

TEST(ws_handshake, refuses_an_origin_the_hook_rejects_with_403) {
  ws::handshake_options o;
  std::string seen = "unset";
  o.check_origin = [&](std::string_view origin, const ws::http_request&) {
    seen = origin;
    return origin == "https://good.example";
  };
  auto r = handshake(edit("", "Origin: https://evil.example\r\n"), o);
  EXPECT_EQ(r.ec, ws::error::origin_refused);
  expect_error_response(r, 403);
  EXPECT_EQ(seen, "https://evil.example");

  r = handshake(edit("", "Origin: https://good.example\r\n"), o);
  EXPECT_TRUE(r.accepted());

  r = handshake(base_request + "\r\n", o);
  EXPECT_EQ(seen, "") << "no Origin header: the hook sees an empty origin";
  EXPECT_FALSE(r.accepted());
}

TEST(ws_handshake, negotiates_permessage_deflate_when_enabled) {
  ws::handshake_options o;
  o.deflate = ws::deflate_options{};
  const auto r = handshake(
      edit("", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"), o);
  ASSERT_TRUE(r.accepted());
  ASSERT_TRUE(r.deflate.has_value());
  EXPECT_EQ(*r.deflate, ws::deflate_params{});
  EXPECT_NE(r.response.find("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"),
            std::string::npos)
      << r.response;
}

TEST(ws_handshake, joins_extension_offers_over_several_lines) {
  ws::handshake_options o;
  o.deflate = ws::deflate_options{};
  const auto r = handshake(edit("",
                                "Sec-WebSocket-Extensions: permessage-deflate; foo\r\n"
                                "Sec-WebSocket-Extensions: permessage-deflate; "
                                "server_no_context_takeover\r\n"),
                           o);
  ASSERT_TRUE(r.deflate.has_value());
  EXPECT_TRUE(r.deflate->server_no_context_takeover);
}

TEST(ws_handshake, falls_back_to_no_compression_on_bad_offers_or_when_disabled) {
  ws::handshake_options o;
  o.deflate = ws::deflate_options{};
  auto r = handshake(
      edit("", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n"), o);
  ASSERT_TRUE(r.accepted());
  EXPECT_FALSE(r.deflate.has_value());
  EXPECT_EQ(r.response.find("Sec-WebSocket-Extensions"), std::string::npos);

  r = handshake(edit("", "Sec-WebSocket-Extensions: permessage-deflate\r\n"));  // disabled
  ASSERT_TRUE(r.accepted());
  EXPECT_FALSE(r.deflate.has_value());
  EXPECT_EQ(r.response.find("Sec-WebSocket-Extensions"), std::string::npos);
}

TEST(ws_handshake, detects_websocket_upgrade_requests_for_routing) {
  EXPECT_TRUE(ws::is_websocket_upgrade(parse(base_request + "\r\n")));
  EXPECT_FALSE(ws::is_websocket_upgrade(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
}

TEST(ws_handshake, formats_error_responses_for_parser_errors_too) {
  const std::string r = ws::format_error_response(ws::error::headers_too_large);
  EXPECT_EQ(r.rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0), 0u);
  EXPECT_NE(r.find("Connection: close"), std::string::npos);
  const std::string plain = ws::format_error_response(503, "", "Retry-After: 1\r\n");
  EXPECT_EQ(plain,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n"
            "Retry-After: 1\r\n\r\n");
  EXPECT_EQ(ws::reason_phrase(414), "URI Too Long");
  EXPECT_EQ(ws::reason_phrase(505), "HTTP Version Not Supported");
  EXPECT_EQ(ws::reason_phrase(599), "Error");
}

TEST(ws_handshake, client_helpers_produce_a_request_the_server_accepts) {
  std::set<std::string> keys;
  for (int i = 0; i < 32; ++i) {
    const std::string key = ws::generate_websocket_key();
    EXPECT_TRUE(ws::is_valid_websocket_key(key)) << key;
    keys.insert(key);
  }
  EXPECT_EQ(keys.size(), 32u);

  const std::string key = ws::generate_websocket_key();
  ws::deflate_options d;
  d.client_max_window_bits = 12;
  const std::string request = ws::format_upgrade_request(
      "localhost:9001", "/echo", key,
      "Sec-WebSocket-Extensions: " + ws::format_deflate_offer(d) + "\r\n");
  ws::handshake_options o;
  o.deflate = ws::deflate_options{};
  const auto r = handshake(request, o);
  ASSERT_TRUE(r.accepted()) << r.ec.message();
  EXPECT_NE(r.response.find("Sec-WebSocket-Accept: " + ws::compute_accept_key(key) + "\r\n"),
            std::string::npos);
  ASSERT_TRUE(r.deflate.has_value());
  EXPECT_EQ(r.deflate->client_max_window_bits, 12);
}

}  // namespace
