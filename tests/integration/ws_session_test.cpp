// Integration tests of the WebSocket session layer (atoll/ws/session.hpp) over real loopback
// sockets, with a client made of the module's client-role codecs (support/ws_client.hpp).
#include <atoll/ws/session.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/ws_client.hpp"

namespace {

using namespace std::chrono_literals;
namespace ws = atl::ws;
using atl::test::loopback_listener;
using atl::test::oneshot;
using atl::test::wait_until;
using atl::test::ws_client;
using atl::test::ws_event;
using ws::close_code;
using ws::opcode;
using ws::read_kind;
using clock_type = std::chrono::steady_clock;

// What the server-side handlers saw, shared with the test thread.
struct journal {
  std::atomic<int> opens{0};
  std::atomic<int> closes{0};
  oneshot<std::pair<close_code, std::string>> closed;
  std::atomic<int> pongs{0};
  std::mutex m;
  std::vector<ws::session_handle> handles;
  std::vector<std::string> fragments;  // "t:piece:last" for streamed pieces
  std::string subprotocol;
};

// Echoes every message; "close:<code>" makes the server start the close handshake, "ping" sends
// a ping. Records its life in the journal.
class echo final : public ws::handler {
 public:
  explicit echo(std::shared_ptr<journal> j) : j_(std::move(j)) {}
  void on_open(ws::session& s) override {
    ++j_->opens;
    std::lock_guard lock(j_->m);
    j_->handles.push_back(s.handle());
    j_->subprotocol = std::string(s.subprotocol());
  }
  void on_text(ws::session& s, std::string_view t) override {
    if (t.starts_with("close:")) {
      s.close(close_code{static_cast<std::uint16_t>(std::stoi(std::string(t.substr(6))))},
              "server says bye");
      return;
    }
    if (t == "ping") {
      s.ping("are you there");
      return;
    }
    s.send_text(t);
  }
  void on_binary(ws::session& s, std::span<const std::byte> b) override { s.send_binary(b); }
  void on_fragment(ws::session&, opcode type, std::span<const std::byte> data,
                   bool last) override {
    std::lock_guard lock(j_->m);
    j_->fragments.push_back((type == opcode::text ? "t:" : "b:") +
                            std::string(reinterpret_cast<const char*>(data.data()), data.size()) +
                            (last ? ":last" : ""));
  }
  void on_pong(ws::session&, std::span<const std::byte>) override { ++j_->pongs; }
  void on_close(ws::session&, close_code code, std::string_view reason) override {
    ++j_->closes;
    j_->closed.set({code, std::string(reason)});
  }

 private:
  std::shared_ptr<journal> j_;
};

// A server with one WebSocket listener on loopback.
struct ws_server {
  explicit ws_server(ws::options opts = {}, std::size_t threads = 1, ws::http_fallback fb = {})
      : j(std::make_shared<journal>()), s(atl::test::threads(threads)) {
    auto jj = j;
    id = s.add_listener(loopback_listener(),
                        ws::upgrade_factory(
                            std::move(opts),
                            [jj](const ws::http_request& r, atl::connection&)
                                -> std::unique_ptr<ws::handler> {
                              if (r.path() == "/refuse") return nullptr;
                              return std::make_unique<echo>(jj);
                            },
                            std::move(fb)));
    s.start();
  }
  atl::endpoint ep() const { return s.local_endpoint(id); }
  ws_client open(bool deflate = false, std::string headers = {}) {
    return ws_client::open(ep(), "/", deflate, std::move(headers));
  }

  std::shared_ptr<journal> j;
  atl::server s;
  atl::listener_id id{};
};

std::string random_text(std::size_t n, unsigned seed = 7) {
  std::mt19937 rng(seed);
  static constexpr std::string_view alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 .,";
  std::string s(n, ' ');
  for (auto& ch : s) ch = alphabet[rng() % alphabet.size()];
  return s;
}
std::string random_bytes(std::size_t n, unsigned seed = 11) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng());
  return s;
}

// Closes cleanly from the client side and checks the echo of `code`.
void expect_clean_close(ws_client& c, close_code code = close_code::normal) {
  ASSERT_TRUE(c.send_close(code, "done"));
  const ws_event ev = c.next_data();
  ASSERT_EQ(ev.kind, read_kind::close);
  EXPECT_EQ(ev.code, code);
  EXPECT_TRUE(c.wait_eof());
}

const std::size_t boundary_sizes[] = {0, 125, 126, 65535, 65536, 1 << 20};

// ---------------------------------------------------------------------------------------------
// Messages

void echo_at_boundary_sizes(bool deflate) {
  ws::options o;
  o.deflate = deflate;
  ws_server srv(o);
  ws_client c = srv.open(deflate);
  ASSERT_EQ(c.status, 101u) << c.response;
  EXPECT_EQ(c.deflate.has_value(), deflate) << c.response;
  for (const std::size_t n : boundary_sizes) {
    const std::string text = random_text(n, static_cast<unsigned>(n));
    ASSERT_TRUE(c.send_text(text));
    ws_event ev = c.next_data();
    ASSERT_EQ(ev.kind, read_kind::message) << n;
    EXPECT_EQ(ev.type, opcode::text);
    EXPECT_TRUE(ev.payload == text) << "text of " << n << " bytes";

    const std::string bin = random_bytes(n, static_cast<unsigned>(n));
    ASSERT_TRUE(c.send_binary(bin));
    ev = c.next_data();
    ASSERT_EQ(ev.kind, read_kind::message) << n;
    EXPECT_EQ(ev.type, opcode::binary);
    EXPECT_TRUE(ev.payload == bin) << "binary of " << n << " bytes";
  }
  expect_clean_close(c);
  ASSERT_TRUE(srv.j->closed.wait());
  EXPECT_EQ(srv.j->closed.wait()->first, close_code::normal);
  EXPECT_EQ(srv.j->closed.wait()->second, "done");
  EXPECT_EQ(srv.j->closes.load(), 1);
}

TEST(ws_session, echoes_text_and_binary_at_every_length_encoding_boundary) {
  echo_at_boundary_sizes(false);
}

TEST(ws_session, echoes_at_every_length_encoding_boundary_with_permessage_deflate) {
  echo_at_boundary_sizes(true);
}

TEST(ws_session, does_not_negotiate_deflate_unless_enabled) {
  ws_server srv;
  ws_client c = srv.open(true);
  ASSERT_EQ(c.status, 101u);
  EXPECT_FALSE(c.deflate.has_value());
  EXPECT_EQ(ws_client::header_value(c.response, "Sec-WebSocket-Extensions"), "");
  ASSERT_TRUE(c.send_text("plain"));
  EXPECT_EQ(c.next_data().payload, "plain");
}

TEST(ws_session, reassembles_fragmented_messages_with_interleaved_pings) {
  ws_server srv;
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  ASSERT_TRUE(c.send_fragment(opcode::text, "frag", false));
  ASSERT_TRUE(c.send_control(opcode::ping, "mid"));
  ASSERT_TRUE(c.send_fragment(opcode::text, "men", false));
  ASSERT_TRUE(c.send_fragment(opcode::text, "ted", true));
  ws_event ev = c.next();
  ASSERT_EQ(ev.kind, read_kind::pong);
  EXPECT_EQ(ev.payload, "mid");
  ev = c.next();
  ASSERT_EQ(ev.kind, read_kind::message);
  EXPECT_EQ(ev.payload, "fragmented");
  expect_clean_close(c);
}

TEST(ws_session, streams_fragments_when_asked) {
  ws::options o;
  o.stream_fragments = true;
  ws_server srv(o);
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  ASSERT_TRUE(c.send_fragment(opcode::text, "ab", false));
  ASSERT_TRUE(c.send_fragment(opcode::text, "cd", true));
  expect_clean_close(c);
  std::lock_guard lock(srv.j->m);
  ASSERT_EQ(srv.j->fragments.size(), 2u);
  EXPECT_EQ(srv.j->fragments[0], "t:ab");
  EXPECT_EQ(srv.j->fragments[1], "t:cd:last");
}

TEST(ws_session, answers_ping_with_identical_payload_and_ignores_unsolicited_pongs) {
  ws_server srv;
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  const std::string payload = random_bytes(125);
  ASSERT_TRUE(c.send_control(opcode::pong, "unsolicited"));
  ASSERT_TRUE(c.send_control(opcode::ping, payload));
  ws_event ev = c.next();
  ASSERT_EQ(ev.kind, read_kind::pong);
  EXPECT_TRUE(ev.payload == payload);
  ASSERT_TRUE(c.send_text("still open"));
  EXPECT_EQ(c.next().payload, "still open");
  // A ping from the server; the client's pong reaches on_pong.
  ASSERT_TRUE(c.send_text("ping"));
  ev = c.next();
  ASSERT_EQ(ev.kind, read_kind::ping);
  EXPECT_EQ(ev.payload, "are you there");
  ASSERT_TRUE(c.send_control(opcode::pong, ev.payload));
  EXPECT_TRUE(wait_until([&] { return srv.j->pongs.load() == 2; }));
  expect_clean_close(c);
}

TEST(ws_session, handles_frames_sent_right_behind_the_upgrade_request) {
  ws_server srv;
  // Handshake and a first frame in one write: the bytes after the head are kept.
  const std::string key = ws::generate_websocket_key();
  std::vector<std::byte> frame;
  ws::message_writer w(ws::role::client);
  w.write_text("early", frame);
  std::string wire = ws::format_upgrade_request("127.0.0.1", "/", key);
  wire.append(reinterpret_cast<const char*>(frame.data()), frame.size());
  ws_client c = ws_client::raw_request(srv.ep(), wire);
  ASSERT_EQ(c.status, 101u);
  const ws_event ev = c.next_data();
  ASSERT_EQ(ev.kind, read_kind::message);
  EXPECT_EQ(ev.payload, "early");
}

// ---------------------------------------------------------------------------------------------
// Close handshake

TEST(ws_session, echoes_valid_close_codes_and_closes_tcp) {
  for (const auto code : {close_code::normal, close_code::going_away, close_code::unsupported_data,
                          close_code::internal_error, close_code{3000}, close_code{4999}}) {
    ws_server srv;
    ws_client c = srv.open();
    ASSERT_EQ(c.status, 101u);
    expect_clean_close(c, code);
    ASSERT_TRUE(srv.j->closed.wait());
    EXPECT_EQ(srv.j->closed.wait()->first, code);
    EXPECT_EQ(srv.j->closes.load(), 1);
  }
}

TEST(ws_session, answers_an_empty_close_with_an_empty_close) {
  ws_server srv;
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  ASSERT_TRUE(c.send_raw(std::string("\x88\x80\x01\x02\x03\x04", 6)));  // masked, no payload
  const ws_event ev = c.next_data();
  ASSERT_EQ(ev.kind, read_kind::close);
  EXPECT_EQ(ev.code, close_code::no_status);
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(srv.j->closed.wait()->first, close_code::no_status);
}

// A masked close frame with `payload` (mask key zero: XOR with 0 keeps the bytes).
std::string masked_close(std::string_view payload) {
  std::string f;
  f += '\x88';
  f += static_cast<char>(0x80 | payload.size());
  f += std::string(4, '\0');
  f += payload;
  return f;
}

TEST(ws_session, fails_invalid_close_payloads_with_1002) {
  const std::string payloads[] = {
      std::string("\x03\xed", 2),  // 1005: never on the wire
      std::string("\x03\xee", 2),  // 1006
      std::string("\x03\xe7", 2),  // 999
      std::string("\x13\x88", 2),  // 5000
      std::string("\x03", 1),      // one byte
  };
  for (const auto& p : payloads) {
    ws_server srv;
    ws_client c = srv.open();
    ASSERT_EQ(c.status, 101u);
    ASSERT_TRUE(c.send_raw(masked_close(p)));
    const ws_event ev = c.next_data();
    ASSERT_EQ(ev.kind, read_kind::close);
    EXPECT_EQ(ev.code, close_code::protocol_error);
    EXPECT_TRUE(c.wait_eof());
    const auto closed = srv.j->closed.wait();
    ASSERT_TRUE(closed);
    EXPECT_EQ(closed->first, close_code::protocol_error);
    EXPECT_EQ(srv.j->closes.load(), 1);
  }
}

TEST(ws_session, server_initiated_close_completes_when_the_client_answers) {
  ws_server srv;
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  ASSERT_TRUE(c.send_text("close:4001"));
  ws_event ev = c.next_data();
  ASSERT_EQ(ev.kind, read_kind::close);
  EXPECT_EQ(ev.code, close_code{4001});
  EXPECT_EQ(ev.reason, "server says bye");
  ASSERT_TRUE(c.send_close(close_code{4001}));
  EXPECT_TRUE(c.wait_eof(2s));
  const auto closed = srv.j->closed.wait();
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->first, close_code{4001});
  EXPECT_EQ(srv.j->closes.load(), 1);
}

TEST(ws_session, closes_tcp_after_the_close_timeout_when_the_client_never_answers) {
  ws::options o;
  o.close_timeout = 300ms;
  ws_server srv(o);
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  const auto start = clock_type::now();
  ASSERT_TRUE(c.send_text("close:1000"));
  ASSERT_EQ(c.next_data().kind, read_kind::close);
  // Data sent after the server's close is discarded, and does not extend the wait.
  ASSERT_TRUE(c.send_text("ignored"));
  EXPECT_TRUE(c.wait_eof(5s));
  const auto took = clock_type::now() - start;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
  const auto closed = srv.j->closed.wait();
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->first, close_code::normal);  // ours: the peer never sent one
  EXPECT_EQ(srv.j->closes.load(), 1);
}

TEST(ws_session, closes_an_idle_session_with_1001) {
  ws::options o;
  o.idle_timeout = 300ms;
  o.close_timeout = 300ms;
  ws_server srv(o);
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  const auto start = clock_type::now();
  const ws_event ev = c.next_data(5s);
  ASSERT_EQ(ev.kind, read_kind::close);
  EXPECT_EQ(ev.code, close_code::going_away);
  EXPECT_GE(clock_type::now() - start, 250ms);
  ASSERT_TRUE(c.send_close(close_code::going_away));
  EXPECT_TRUE(c.wait_eof());
  EXPECT_EQ(srv.j->closed.wait()->first, close_code::going_away);
}

TEST(ws_session, sends_keepalive_pings_at_the_interval) {
  ws::options o;
  o.ping_interval = 100ms;
  ws_server srv(o);
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  for (int i = 0; i < 2; ++i) {
    const ws_event ev = c.next(3s);
    ASSERT_EQ(ev.kind, read_kind::ping);
    ASSERT_TRUE(c.send_control(opcode::pong, ev.payload));
  }
  expect_clean_close(c);
}

TEST(ws_session, says_going_away_on_server_stop) {
  auto srv = std::make_unique<ws_server>();
  ws_client c = srv->open();
  ASSERT_EQ(c.status, 101u);
  std::thread stopper([&] { srv->s.stop(5s); });
  const ws_event ev = c.next_data();
  ASSERT_EQ(ev.kind, read_kind::close);
  EXPECT_EQ(ev.code, close_code::going_away);
  c.send_close(close_code::going_away);
  EXPECT_TRUE(c.wait_eof());
  stopper.join();
  EXPECT_EQ(srv->j->closed.wait()->first, close_code::going_away);
  EXPECT_EQ(srv->j->closes.load(), 1);
}

TEST(ws_session, reports_abnormal_closure_when_tcp_ends_without_close_frames) {
  ws_server srv;
  {
    ws_client c = srv.open();
    ASSERT_EQ(c.status, 101u);
    ASSERT_TRUE(c.send_text("x"));
    ASSERT_EQ(c.next_data().payload, "x");
  }  // socket closed
  const auto closed = srv.j->closed.wait();
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->first, close_code::abnormal);
  EXPECT_EQ(srv.j->closes.load(), 1);
}

// ---------------------------------------------------------------------------------------------
// Protocol violations

void expect_failed_with(ws_client& c, close_code code, std::chrono::milliseconds within = 2s) {
  const ws_event ev = c.next_data(within);
  ASSERT_EQ(ev.kind, read_kind::close) << (ev.eof ? "eof" : "timeout");
  EXPECT_EQ(ev.code, code);
  EXPECT_TRUE(c.wait_eof());
}

TEST(ws_session, fails_an_unmasked_frame_with_1002) {
  ws_server srv;
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  ASSERT_TRUE(c.send_raw(std::string("\x81\x02hi", 4)));
  expect_failed_with(c, close_code::protocol_error);
  EXPECT_EQ(srv.j->closed.wait()->first, close_code::protocol_error);
}

TEST(ws_session, fails_reserved_bits_and_opcodes_and_stray_continuations_with_1002) {
  const std::string frames[] = {
      std::string("\xc1\x80\0\0\0\0", 6),  // RSV1 without deflate
      std::string("\x83\x80\0\0\0\0", 6),  // reserved opcode 3
      std::string("\x80\x80\0\0\0\0", 6),  // continuation without a message
      std::string("\x09\x80\0\0\0\0", 6),  // fragmented ping
  };
  for (const auto& f : frames) {
    ws_server srv;
    ws_client c = srv.open();
    ASSERT_EQ(c.status, 101u);
    ASSERT_TRUE(c.send_raw(f));
    expect_failed_with(c, close_code::protocol_error);
  }
}

TEST(ws_session, fails_invalid_utf8_with_1007_before_the_message_ends) {
  ws_server srv;
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  // A text frame announcing 100 bytes, of which only 3 are sent; the third is invalid.
  std::string f("\x81\xe4\0\0\0\0ab\xff", 9);
  ASSERT_TRUE(c.send_raw(f));
  expect_failed_with(c, close_code::invalid_payload);
  EXPECT_EQ(srv.j->closed.wait()->first, close_code::invalid_payload);
}

TEST(ws_session, fails_oversize_messages_with_1009) {
  ws::options o;
  o.max_message_size = 1000;
  ws_server srv(o);
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  ASSERT_TRUE(c.send_text(random_text(1000)));
  EXPECT_EQ(c.next_data().payload.size(), 1000u);
  ASSERT_TRUE(c.send_fragment(opcode::binary, random_bytes(600), false));
  ASSERT_TRUE(c.send_fragment(opcode::binary, random_bytes(600), true));
  expect_failed_with(c, close_code::message_too_big);
}

TEST(ws_session, fails_oversize_frames_with_1009_from_the_header) {
  ws::options o;
  o.max_frame_size = 1000;
  ws_server srv(o);
  ws_client c = srv.open();
  ASSERT_EQ(c.status, 101u);
  // Header only: 64-bit length 1 MiB, no payload sent.
  ASSERT_TRUE(c.send_raw(std::string("\x82\xff\0\0\0\0\0\x10\0\0\0\0\0\0", 14)));
  expect_failed_with(c, close_code::message_too_big);
}

// ---------------------------------------------------------------------------------------------
// Handshake

std::string request_with(std::string_view first_line, std::string_view headers) {
  return std::string(first_line) + "\r\nHost: 127.0.0.1\r\n" + std::string(headers) + "\r\n";
}
constexpr std::string_view good_headers =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n";

TEST(ws_session, answers_malformed_handshakes_with_the_right_status) {
  ws_server srv;
  struct {
    std::string request;
    unsigned status;
  } cases[] = {
      {request_with("GET / HTTP/1.1", good_headers), 101},
      {request_with("POST / HTTP/1.1", good_headers), 405},
      {request_with("GET / HTTP/1.1",
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"),
       426},
      {request_with("GET / HTTP/1.1",
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
       400},
      {request_with("GET / HTTP/1.1",
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
                    "Sec-WebSocket-Version: 13\r\n"),
       400},
      {request_with("GET / HTTP/1.1", "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
       400},
      {request_with("GET / HTTP/1.1", std::string(good_headers) + "X-Big: " +
                                          std::string(20000, 'a') + "\r\n"),
       431},
      {"GET / HTTP/1.1\nHost: x\n\n", 400},
      {request_with("GET /refuse HTTP/1.1", good_headers), 404},
  };
  for (const auto& tc : cases) {
    ws_client c = ws_client::raw_request(srv.ep(), tc.request);
    EXPECT_EQ(c.status, tc.status) << tc.request.substr(0, 60) << "\n" << c.response;
    if (tc.status == 426) {
      EXPECT_EQ(ws_client::header_value(c.response, "Sec-WebSocket-Version"), "13");
    }
    if (tc.status != 101) {
      EXPECT_TRUE(c.wait_eof());
    }
  }
}

TEST(ws_session, selects_a_subprotocol_with_the_hook) {
  ws::options o;
  o.handshake.select_subprotocol = [](std::span<const std::string_view> offered,
                                      const ws::http_request&) -> std::string {
    for (auto p : offered) {
      if (p == "chat.v2") return std::string(p);
    }
    return {};
  };
  ws_server srv(o);
  ws_client c = srv.open(false, "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n");
  ASSERT_EQ(c.status, 101u);
  EXPECT_EQ(ws_client::header_value(c.response, "Sec-WebSocket-Protocol"), "chat.v2");
  ASSERT_TRUE(c.send_text("x"));
  ASSERT_EQ(c.next_data().payload, "x");
  std::lock_guard lock(srv.j->m);
  EXPECT_EQ(srv.j->subprotocol, "chat.v2");
}

TEST(ws_session, refuses_origins_the_hook_rejects_with_403) {
  ws::options o;
  o.handshake.check_origin = [](std::string_view origin, const ws::http_request&) {
    return origin == "https://good.example";
  };
  ws_server srv(o);
  EXPECT_EQ(srv.open(false, "Origin: https://evil.example\r\n").status, 403u);
  EXPECT_EQ(srv.open(false, "Origin: https://good.example\r\n").status, 101u);
}

TEST(ws_session, serves_plain_http_through_the_fallback_with_keep_alive) {
  ws_server srv({}, 1, [](const ws::http_request& r, atl::connection& c) {
    c.send(ws::format_http_response(200, "text/plain", "page " + std::string(r.path())));
  });
  // Two pipelined requests on one connection, then a WebSocket upgrade on another.
  auto c = atl::test::client::connect(srv.ep());
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string got;
  const std::string one = ws::format_http_response(200, "text/plain", "page /a");
  const std::string two = ws::format_http_response(200, "text/plain", "page /b");
  got = c.read_exact(one.size() + two.size());
  EXPECT_EQ(got, one + two);
  ASSERT_TRUE(c.send("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"));
  std::string rest;
  c.wait_closed(2s, &rest);
  EXPECT_TRUE(rest.starts_with("HTTP/1.1 413")) << rest;

  ws_client w = srv.open();
  ASSERT_EQ(w.status, 101u);
}

TEST(ws_session, closes_a_connection_whose_request_head_is_too_slow) {
  ws::options o;
  o.request_timeout = 200ms;
  ws_server srv(o);
  auto c = atl::test::client::connect(srv.ep());
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\n"));
  EXPECT_NE(c.wait_closed(3s), atl::test::outcome::timeout);
}

TEST(ws_session, upgrade_factory_validates_options) {
  ws::options o;
  o.close_timeout = 0ms;
  auto make = [](const ws::http_request&, atl::connection&) -> std::unique_ptr<ws::handler> {
    return nullptr;
  };
  EXPECT_THROW(ws::upgrade_factory(o, make), std::invalid_argument);
  o = {};
  o.deflate = true;
  o.compression.mem_level = 12;
  EXPECT_THROW(ws::upgrade_factory(o, make), std::invalid_argument);
  EXPECT_THROW(ws::upgrade_factory({}, nullptr), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Threads

TEST(ws_session, broadcasts_through_session_handles_from_another_thread) {
  ws::options o;
  o.deflate = true;
  ws_server srv(o, 2);
  std::vector<ws_client> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(srv.open(i % 2 == 0));
    ASSERT_EQ(clients.back().status, 101u);
  }
  ASSERT_TRUE(wait_until([&] { return srv.j->opens.load() == 6; }));
  std::vector<ws::session_handle> handles;
  {
    std::lock_guard lock(srv.j->m);
    handles = srv.j->handles;
  }
  std::thread broadcaster([&] {
    auto shared = std::make_shared<const std::string>("to everyone");
    for (int round = 0; round < 20; ++round) {
      for (auto& h : handles) {
        EXPECT_TRUE(round % 2 ? h.send_text(shared) : h.send_text("round " + std::to_string(round)));
      }
    }
    for (auto& h : handles) {
      h.dispatch([](ws::session& s) { s.send_binary(atl::test::bytes_of("via dispatch")); });
    }
  });
  broadcaster.join();
  for (auto& c : clients) {
    for (int round = 0; round < 20; ++round) {
      const ws_event ev = c.next_data();
      ASSERT_EQ(ev.kind, read_kind::message);
      EXPECT_EQ(ev.payload, round % 2 ? "to everyone" : "round " + std::to_string(round));
    }
    const ws_event ev = c.next_data();
    EXPECT_EQ(ev.type, opcode::binary);
    EXPECT_EQ(ev.payload, "via dispatch");
  }
  // close through a handle
  handles[0].close(close_code{4002}, "kicked");
  bool seen = false;
  for (auto& c : clients) {
    const ws_event ev = c.next_data(200ms);
    if (ev.kind == read_kind::close) {
      EXPECT_EQ(ev.code, close_code{4002});
      EXPECT_EQ(ev.reason, "kicked");
      c.send_close(ev.code);
      EXPECT_TRUE(c.wait_eof());
      seen = true;
    }
  }
  EXPECT_TRUE(seen);
  EXPECT_TRUE(wait_until([&] { return handles[0].expired(); }));
  EXPECT_FALSE(handles[0].send_text("too late"));
  clients.clear();
  EXPECT_TRUE(wait_until([&] { return srv.j->closes.load() == 6; }));
}

}  // namespace
