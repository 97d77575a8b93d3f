// Hostile peers that do not read what the server sends, against the write-queue limit
// (`listener_config::max_write_buffer`): a send that trips the limit from outside the
// connection's own callbacks (the WebSocket keepalive timer, posted work, a handler's timer)
// must not destroy the connection under the caller's feet (issue 9, defect 1), one large
// allowed message must go out (defect 6), and a WebSocket session dropped for accumulating
// a backlog tells its peer why with a close frame 1008 (defect 6). Every test has one io
// thread, so the well-behaved client at the end shares it with the attacker.
#include <gtest/gtest.h>

#include <asio/steady_timer.hpp>
#include <atoll/ws/session.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "support/connection_helpers.hpp"
#include "support/hostile_peers.hpp"
#include "support/ws_client.hpp"
#include "support/ws_echo_server.hpp"

namespace {

using namespace std::chrono_literals;
namespace ws = atl::ws;
using atl::test::client;
using atl::test::wait_until;
using atl::test::ws_client;
using atl::test::ws_echo_server;
using atl::test::ws_event;

constexpr std::size_t small_write_buffer = 64 * 1024;

// Connections with a 64 KiB write limit: a peer that does not read fills it after a few KiB.
atl::listener_config small_buffer_listener() {
  return atl::test::unread_answers_listener(small_write_buffer, 16 * 1024);
}

// ---------------------------------------------------------------------------------------------
// Defect 1: the keepalive ping trips max_write_buffer

TEST(hostile_backpressure, keepalive_ping_that_trips_max_write_buffer_does_not_crash_the_server) {
  ws::options opts;
  opts.ping_interval = 20ms;
  opts.close_timeout = 1s;
  ws_echo_server srv(opts, small_buffer_listener());

  auto attacker = ws_client::open(srv.ep());
  ASSERT_EQ(attacker.status, 101u) << attacker.response;
  atl::test::shrink_socket_buffers(attacker.socket().fd(), 0, 4096);
  // The server fills its queue to the limit; the next keepalive pings (2-byte frames, sent
  // from the session's timer) trip it: the first one when the limit applies to the queue
  // after a send (the original rule), the second when it applies to the queue before a send.
  // The attacker never reads.
  ASSERT_TRUE(attacker.send_text("fill:" + std::to_string(small_write_buffer)));
  ASSERT_TRUE(wait_until([&] { return srv.journal->fills.load() == 1; }, 10s));
  EXPECT_TRUE(wait_until([&] { return srv.journal->closes.load() == 1; }, 10s))
      << "the session was not dropped when its keepalive ping tripped max_write_buffer";

  // The same io thread still serves others.
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

// The raw-connection routes into the same trap: a send from posted work
// (connection_handle::dispatch) or from a handler's own Asio timer pushes the queue past the
// limit. The connection must be dropped (slow_consumer) without touching freed memory.
class filling_handler : public atl::test::echo_handler {
 public:
  filling_handler(std::shared_ptr<atl::test::probe> p, std::size_t limit)
      : echo_handler(std::move(p)), limit_(limit) {}
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    const auto text = atl::test::to_text(data);
    if (text == "fill-then-dispatch") {
      fill(c);
      c.handle().dispatch([](atl::connection& conn) { conn.send(std::string_view("!")); });
    } else if (text == "fill-then-timer") {
      fill(c);
      timer_ = std::make_unique<asio::steady_timer>(c.executor(), 20ms);
      timer_->async_wait([conn = &c](std::error_code ec) {
        // The handler (and this timer) may be gone once send returns: touch nothing after.
        if (!ec) conn->send(std::string_view("!"));
      });
    } else {
      echo_handler::on_data(c, data);
    }
  }

 private:
  // Brings the write queue to `limit_` + 1 bytes (the kernel takes what it can first): the
  // last send is allowed, since what was queued before it did not exceed the limit; the next
  // send, from outside the callback, finds the queue over the limit and drops the connection.
  void fill(atl::connection& c) {
    static const std::string chunk(4096, 'w');
    for (int i = 0; i < 1'000'000 && c.buffered_amount() <= limit_; ++i) {
      const std::size_t n = std::min(chunk.size(), limit_ + 1 - c.buffered_amount());
      if (c.send(std::string_view(chunk).substr(0, n)) == atl::send_result::dropped) return;
    }
    if (probe_) probe_->note("filled");
  }

  std::size_t limit_;
  std::unique_ptr<asio::steady_timer> timer_;
};

void send_from_outside_a_callback_trips_the_limit(const char* command) {
  auto probe = std::make_shared<atl::test::probe>();
  atl::server s(atl::test::threads(1));
  const auto id = s.add_listener(
      small_buffer_listener(), atl::test::make_factory<filling_handler>(probe, small_write_buffer));
  s.start();

  auto attacker = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(attacker.valid());
  atl::test::shrink_socket_buffers(attacker.fd(), 0, 4096);
  ASSERT_TRUE(attacker.send(command));
  ASSERT_TRUE(probe->wait_note("filled", 10s));
  ASSERT_TRUE(probe->wait_closes(1, 10s)) << "not dropped after the send past the limit";
  EXPECT_EQ(probe->nth(0).reason, atl::close_reason::slow_consumer);

  auto good = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(good.valid());
  EXPECT_TRUE(good.echo("well-behaved", 10s));
  s.stop();
  EXPECT_EQ(probe->lifecycle_violations(), "");
}

TEST(hostile_backpressure, send_from_dispatched_work_that_trips_the_limit_is_safe) {
  send_from_outside_a_callback_trips_the_limit("fill-then-dispatch");
}

TEST(hostile_backpressure, send_from_a_handler_timer_that_trips_the_limit_is_safe) {
  send_from_outside_a_callback_trips_the_limit("fill-then-timer");
}

// ---------------------------------------------------------------------------------------------
// Defect 6: one allowed message vs accumulation

// The limit is checked against what was queued before a send (uWebSockets' rule): one
// message within max_message_size always goes out, even when it alone exceeds
// max_write_buffer (default 4 MiB).
TEST(hostile_backpressure, one_allowed_16_mib_message_is_echoed_intact_with_the_default_limit) {
  ws::options opts;
  opts.max_message_size = 64 * 1024 * 1024;
  opts.max_frame_size = 64 * 1024 * 1024;
  ws_echo_server srv(opts);

  auto c = ws_client::open(srv.ep());
  ASSERT_EQ(c.status, 101u) << c.response;
  const std::string big = atl::test::pattern_payload(16 * 1024 * 1024, 16);
  ASSERT_TRUE(c.send_binary(big));
  const ws_event ev = c.next_data(60s);
  ASSERT_EQ(ev.kind, ws::read_kind::message)
      << "eof " << ev.eof << ", code " << static_cast<int>(ev.code);
  EXPECT_EQ(ev.payload.size(), big.size());
  EXPECT_EQ(atl::test::first_mismatch(ev.payload, big), std::string::npos);
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

// A session whose queue accumulates past max_write_buffer is dropped, and its peer learns why:
// after everything queued, a close frame 1008 with a reason (not a bare reset, which clients
// report as 1006), within close_timeout.
TEST(hostile_backpressure, a_session_dropped_for_backpressure_gets_a_close_frame_1008) {
  ws::options opts;
  opts.close_timeout = 2s;
  ws_echo_server srv(opts, atl::test::unread_answers_listener(256 * 1024));

  auto c = ws_client::open(srv.ep());
  ASSERT_EQ(c.status, 101u) << c.response;
  // 64 × 16 KiB = 1 MiB sent at once: far past the 256 KiB limit.
  ASSERT_TRUE(c.send_text("flood:64"));
  // The client reads only now: the session (and on_close) ends once the close frame is out.
  const ws_event ev = atl::test::read_until_close_frame(c, 10s);
  ASSERT_EQ(ev.kind, ws::read_kind::close) << "no close frame (eof " << ev.eof << ")";
  EXPECT_EQ(ev.code, ws::close_code::policy_violation);
  EXPECT_FALSE(ev.reason.empty());
  EXPECT_TRUE(c.wait_eof(10s));
  EXPECT_TRUE(wait_until([&] { return srv.journal->closes.load() == 1; }, 10s))
      << "the session did not end";
  EXPECT_EQ(atl::test::ws_round_trip(srv.ep()), "");
}

}  // namespace
