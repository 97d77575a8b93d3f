#pragma once
// An in-process WebSocket echo server for the hostile-peer tests: one listener on loopback,
// one io thread by default (so an attacker and the well-behaved client share it), every
// message echoed as it came without regard to backpressure (the attacks are about what the
// session and the core do on their own), a fill command to bring the write queue to an exact
// size, and a well-behaved round trip.

#include <atoll/ws/session.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "support/connection_helpers.hpp"
#include "support/ws_client.hpp"

namespace atl::test {

/// A loopback listener for attacks by peers that do not read: the given write limit and
/// low-water mark, and a small kernel send buffer (4 KiB), so what the server answers lands in
/// its user-space queue after a few KiB instead of waiting in the kernel.
inline atl::listener_config unread_answers_listener(std::size_t max_write_buffer,
                                                    std::size_t write_low_water = 64 * 1024) {
  auto l = loopback_listener();
  l.max_write_buffer = max_write_buffer;
  l.write_low_water = write_low_water;
  l.socket.send_buffer_size = 4096;
  return l;
}

/// What the server's sessions saw.
struct ws_echo_journal {
  std::atomic<int> opens{0};
  std::atomic<int> closes{0};
  std::atomic<int> fills{0};
};

/// Echoes text and binary messages. Two text commands instead:
///   "fill:N"  sends binary messages until the connection's write queue holds exactly N bytes
///             (or N-1: one byte short of what a 2-byte frame needs): with
///             `max_write_buffer` = N the next frame queued (e.g. a keepalive ping) takes the
///             queue past the limit, and the one after it finds the queue over the limit;
///   "flood:N" sends N binary messages of 16 KiB at once, whatever the queue holds (until a
///             send is dropped): accumulation, for a peer that reads slower than that.
class ws_echo_handler final : public ws::handler {
 public:
  explicit ws_echo_handler(std::shared_ptr<ws_echo_journal> j) : j_(std::move(j)) {}
  void on_open(ws::session&) override { ++j_->opens; }
  void on_text(ws::session& s, std::string_view t) override {
    if (t.starts_with("fill:")) return fill(s, std::stoul(std::string(t.substr(5))));
    if (t.starts_with("flood:")) return flood(s, std::stoul(std::string(t.substr(6))));
    s.send_text(t);
  }
  void on_binary(ws::session& s, std::span<const std::byte> b) override { s.send_binary(b); }
  void on_close(ws::session&, ws::close_code, std::string_view) override { ++j_->closes; }

 private:
  void fill(ws::session& s, std::size_t limit) {
    static const std::string payload(1000, 'q');
    // Bounded: the kernel takes some frames first (small socket buffers in these tests), the
    // queue the rest; 1000-byte frames reach any test-sized limit in far fewer iterations.
    for (int i = 0; i < 1'000'000 && s.is_open(); ++i) {
      const std::size_t queued = s.buffered_amount();
      if (queued + 2 > limit) break;
      const std::size_t room = limit - queued;
      // A payload of 126+ bytes has a 4-byte header, up to 125 a 2-byte one.
      const std::size_t n = room >= 130 ? std::min<std::size_t>(1000, room - 4) : room - 2;
      if (s.send_binary(bytes_of(std::string_view(payload).substr(0, n))) == send_result::dropped)
        return;
    }
    ++j_->fills;
  }

  static void flood(ws::session& s, std::size_t n) {
    static const std::string payload(16 * 1024, 'f');
    for (std::size_t i = 0; i < n; ++i)
      if (s.send_binary(bytes_of(payload)) == send_result::dropped) return;
  }

  std::shared_ptr<ws_echo_journal> j_;
};

/// A server with one WebSocket echo listener on 127.0.0.1 (`threads` io threads).
struct ws_echo_server {
  explicit ws_echo_server(ws::options opts, atl::listener_config listener = loopback_listener(),
                          std::size_t threads = 1, ws::http_fallback fallback = {})
      : journal(std::make_shared<ws_echo_journal>()), server(atl::test::threads(threads)) {
    auto j = journal;
    id = server.add_listener(
        std::move(listener),
        ws::upgrade_factory(
            std::move(opts),
            [j](const ws::http_request&, atl::connection&) -> std::unique_ptr<ws::handler> {
              return std::make_unique<ws_echo_handler>(j);
            },
            std::move(fallback)));
    server.start();
  }
  atl::endpoint ep() const { return server.local_endpoint(id); }

  std::shared_ptr<ws_echo_journal> journal;
  atl::server server;
  atl::listener_id id{};
};

/// A well-behaved WebSocket client: upgrades, sends one text message and reads its echo
/// (answering nothing else), all within `timeout`. "" when served, else what went wrong.
inline std::string ws_round_trip(const atl::endpoint& ep,
                                 std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
  auto c = ws_client::open(ep);
  if (c.status != 101) return "upgrade failed: " + c.response;
  const std::string msg = "well-behaved";
  if (!c.send_text(msg)) return "send failed";
  const ws_event ev = c.next_data(timeout);
  if (ev.kind != ws::read_kind::message || ev.payload != msg)
    return "no echo (kind " + std::to_string(static_cast<int>(ev.kind)) + (ev.eof ? ", eof" : "") +
           ")";
  return {};
}

/// Reads everything the server sends until it closes TCP, the first close frame, or `timeout`;
/// the close frame's event (kind `close`), else an event with `eof` or a timeout.
inline ws_event read_until_close_frame(ws_client& c,
                                       std::chrono::milliseconds timeout = std::chrono::seconds{
                                           10}) {
  const auto deadline = clock::now() + timeout;
  // Bounded by the deadline: every turn consumes one event or waits for bytes.
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) return {};
    ws_event ev = c.next(left);
    if (ev.kind != ws::read_kind::message && ev.kind != ws::read_kind::fragment &&
        ev.kind != ws::read_kind::ping && ev.kind != ws::read_kind::pong)
      return ev;
  }
}

}  // namespace atl::test
