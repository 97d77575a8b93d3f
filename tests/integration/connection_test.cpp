// Integration tests of one connection's life: echo, close reasons, writes and backpressure,
// reading control, timeouts, thread affinity, connection_handle, upgrade, factory refusal.
#include "atoll/connection.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <asio/post.hpp>
#include <atoll/error.hpp>
#include <atoll/handler.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::close_reason;
using atl::connection;
using atl::handler;
using atl::send_result;
using atl::server;
using atl::test::as_bytes;
using atl::test::client;
using atl::test::echo_factory;
using atl::test::loopback_listener;
using atl::test::oneshot;
using atl::test::outcome;
using atl::test::probe;
using atl::test::to_text;
using atl::test::wait_until;
using clock_type = std::chrono::steady_clock;

atl::listener_stats listener_stats_of(const server& s, atl::listener_id id = 0) {
  return s.stats().listeners.at(id);
}

// ---------------------------------------------------------------------------------------------
// Echo

TEST(connection, echoes_a_small_message) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), echo_factory(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(c.echo("hello atoll\n"));
  EXPECT_TRUE(c.echo("second line\n"));
}

TEST(connection, echoes_a_one_mebibyte_payload_intact) {
  server s(atl::test::threads(2));
  auto id = s.add_listener(loopback_listener(), echo_factory());
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  atl::test::bound_client(c, 10s);
  const std::string payload = atl::test::pattern_payload(1 << 20, 7);

  // Write on another thread while this one reads, so neither side's buffers can deadlock.
  std::atomic<bool> sent{false};
  std::thread writer([&] { sent = c.send(payload); });
  std::string got = c.read_exact(payload.size(), 15s);
  writer.join();

  EXPECT_TRUE(sent.load());
  ASSERT_EQ(got.size(), payload.size());
  EXPECT_EQ(atl::test::first_mismatch(got, payload), std::string::npos);
  EXPECT_TRUE(
      wait_until([&] { return listener_stats_of(s, id).bytes_in_total == payload.size(); }));
  EXPECT_TRUE(
      wait_until([&] { return listener_stats_of(s, id).bytes_out_total == payload.size(); }));
}

// ---------------------------------------------------------------------------------------------
// Close reasons; on_open / on_close exactly once

TEST(connection, reports_peer_closed_once_when_the_client_closes) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), echo_factory(p));
  s.start();

  {
    auto c = client::connect(s.local_endpoint(id));
    ASSERT_TRUE(c.echo("x"));
  }  // closed here
  ASSERT_TRUE(p->wait_closes(1));
  auto r = p->nth(0);
  EXPECT_EQ(r.reason, close_reason::peer_closed);
  EXPECT_TRUE(wait_until([&] { return listener_stats_of(s, id).active == 0; }));
  EXPECT_EQ(listener_stats_of(s, id).closed(close_reason::peer_closed), 1u);

  s.stop();
  r = p->nth(0);
  EXPECT_EQ(r.opens, 1);
  EXPECT_EQ(r.closes, 1);
  ASSERT_FALSE(r.calls.empty());
  EXPECT_EQ(r.calls.front(), "open");
  EXPECT_EQ(r.calls.back(), "close");
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection, reports_peer_closed_when_the_client_resets) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), echo_factory(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("x"));
  c.reset();
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::peer_closed);
  EXPECT_TRUE(wait_until([&] { return listener_stats_of(s, id).active == 0; }));
  s.stop();
  EXPECT_EQ(p->nth(0).closes, 1);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// Sends a large reply then closes: the queued bytes must all arrive before the FIN.
class bulk_then_close_handler : public handler {
 public:
  bulk_then_close_handler(std::shared_ptr<probe> p, std::string payload)
      : probe_(std::move(p)), payload_(std::move(payload)) {}
  void on_open(connection& c) override { probe_->opened(c); }
  void on_data(connection& c, std::span<const std::byte>) override {
    constexpr std::size_t chunk = 64 * 1024;
    for (std::size_t off = 0; off < payload_.size(); off += chunk)
      c.send(std::string_view(payload_).substr(off, chunk));
    probe_->note("queued:" + std::to_string(c.buffered_amount()));
    c.close();
    probe_->note(c.is_open() ? "open after close" : "closing");
    probe_->note(c.send("late") == send_result::dropped ? "late dropped" : "late accepted");
  }
  void on_close(connection& c, close_reason r, std::error_code ec) override {
    probe_->closed(c, r, ec);
  }

 private:
  std::shared_ptr<probe> probe_;
  std::string payload_;
};

TEST(connection, local_close_delivers_queued_bytes_before_the_fin) {
  auto p = std::make_shared<probe>();
  const std::string payload = atl::test::pattern_payload(2 << 20, 3);
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(),
                           atl::test::make_factory<bulk_then_close_handler>(p, payload));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.send("go"));
  ASSERT_TRUE(p->wait_note("closing"));
  std::string got;
  EXPECT_EQ(c.wait_closed(15s, &got), outcome::eof);
  ASSERT_EQ(got.size(), payload.size());
  EXPECT_EQ(atl::test::first_mismatch(got, payload), std::string::npos);

  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::local_close);
  EXPECT_TRUE(p->wait_note("late dropped"));
  EXPECT_TRUE(wait_until([&] { return listener_stats_of(s, id).active == 0; }));
  EXPECT_EQ(listener_stats_of(s, id).closed(close_reason::local_close), 1u);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

class abort_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_data(connection& c, std::span<const std::byte> data) override {
    if (to_text(data) == "abort") {
      c.send("this reply is dropped by abort");
      c.abort();
      return;
    }
    c.send(data);
  }
};

TEST(connection, abort_resets_the_client_and_reports_errc_aborted) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), atl::test::make_factory<abort_handler>(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("ping"));
  ASSERT_TRUE(c.send("abort"));
  // A reset, not a clean EOF (the reply sent before abort() may or may not have left).
  EXPECT_EQ(c.wait_closed(3s), outcome::reset);

  ASSERT_TRUE(p->wait_closes(1));
  auto r = p->nth(0);
  EXPECT_EQ(r.reason, close_reason::local_close);
  EXPECT_EQ(r.ec, atl::errc::aborted);
  EXPECT_TRUE(wait_until([&] { return listener_stats_of(s, id).active == 0; }));
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection, idle_connection_times_out_and_is_closed_with_reason_timeout) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.read_timeout = 100ms;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, echo_factory(p));
  s.start();

  const auto t0 = clock_type::now();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  EXPECT_EQ(c.wait_closed(5s), outcome::eof);
  const auto elapsed = clock_type::now() - t0;
  EXPECT_GE(elapsed, 95ms);

  ASSERT_TRUE(p->wait_closes(1));
  auto r = p->nth(0);
  EXPECT_EQ(r.reason, close_reason::timeout);
  if (r.ec) {
    EXPECT_EQ(&r.ec.category(), &atl::error_category());
  }
  EXPECT_TRUE(
      wait_until([&] { return listener_stats_of(s, id).closed(close_reason::timeout) == 1; }));
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection, data_resets_the_read_timeout) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.read_timeout = 300ms;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, echo_factory(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  const auto t0 = clock_type::now();
  // Keep talking every ~100 ms for ~700 ms (more than two timeouts): never timed out.
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(c.echo("tick")) << "round " << i;
    std::string none;
    EXPECT_EQ(c.read_some(none, 100ms), outcome::timeout) << "round " << i;
  }
  EXPECT_GE(clock_type::now() - t0, 600ms);
  EXPECT_EQ(p->closes(), 0u);
  // Then silence: it times out.
  EXPECT_EQ(c.wait_closed(5s), outcome::eof);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::timeout);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// First on_timeout keeps the connection, the second one uses the default (close).
class patient_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_timeout(connection& c) override {
    probe_->called(c, "timeout");
    if (++timeouts_ == 1) return;
    handler::on_timeout(c);
  }

 private:
  int timeouts_ = 0;
};

TEST(connection, a_handler_that_keeps_the_connection_on_timeout_gets_another_full_timeout) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.read_timeout = 100ms;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, atl::test::make_factory<patient_handler>(p));
  s.start();

  const auto t0 = clock_type::now();
  auto c = client::connect(s.local_endpoint(id));
  EXPECT_EQ(c.wait_closed(5s), outcome::eof);
  EXPECT_GE(clock_type::now() - t0, 195ms);  // two full timeouts
  ASSERT_TRUE(p->wait_closes(1));
  auto r = p->nth(0);
  EXPECT_EQ(r.reason, close_reason::timeout);
  EXPECT_EQ(std::count(r.calls.begin(), r.calls.end(), "timeout"), 2);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

class throwing_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_data(connection& c, std::span<const std::byte> data) override {
    if (to_text(data) == "boom") throw std::runtime_error("test handler failure (expected)");
    c.send(data);
  }
};

TEST(connection, handler_exception_closes_only_that_connection) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), atl::test::make_factory<throwing_handler>(p));
  s.start();

  auto a = client::connect(s.local_endpoint(id));
  auto b = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(a.echo("a1"));
  ASSERT_TRUE(b.echo("b1"));
  const auto a_port = atl::test::local_of(a.fd()).port();

  ASSERT_TRUE(a.send("boom"));
  auto closed = a.wait_closed(3s);
  EXPECT_TRUE(closed == outcome::eof || closed == outcome::reset) << to_string(closed);
  ASSERT_TRUE(p->wait_closes(1));

  bool found = false;
  for (const auto& [cid, r] : p->records()) {
    if (r.peer.port() != a_port) continue;
    found = true;
    EXPECT_EQ(r.reason, close_reason::handler_error);
    if (r.ec) {
      EXPECT_EQ(&r.ec.category(), &atl::error_category());
    }
  }
  EXPECT_TRUE(found);

  EXPECT_TRUE(b.echo("b2"));  // the other connection carries on
  auto c = client::connect(s.local_endpoint(id));
  EXPECT_TRUE(c.echo("c1"));  // the server is alive
  EXPECT_EQ(p->closes(), 1u);
  EXPECT_EQ(listener_stats_of(s, id).closed(close_reason::handler_error), 1u);
  EXPECT_EQ(listener_stats_of(s, id).active, 2u);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

class throws_in_open_handler : public handler {
 public:
  void on_open(connection&) override { throw std::runtime_error("on_open failure (expected)"); }
  void on_data(connection& c, std::span<const std::byte> d) override { c.send(d); }
};

TEST(connection, handler_exception_in_on_open_closes_the_connection) {
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), atl::test::make_factory<throws_in_open_handler>());
  s.start();

  auto closed = atl::test::connect_and_wait_closed(s.local_endpoint(id), 3s);
  EXPECT_TRUE(closed == outcome::eof || closed == outcome::reset) << to_string(closed);
  EXPECT_TRUE(wait_until([&] {
    auto ls = listener_stats_of(s, id);
    return ls.active == 0 && ls.closed(close_reason::handler_error) == 1;
  }));
}

// ---------------------------------------------------------------------------------------------
// Writes: slow consumer, backpressure, on_writable

/// On "flood": sends 64 KiB chunks until the queue is above the low mark; every later message
/// adds one more chunk, so a client that never reads pushes it past max_write_buffer.
class flood_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_data(connection& c, std::span<const std::byte>) override {
    static const std::string chunk(64 * 1024, 'f');
    if (!flooding_) {
      flooding_ = true;
      for (int i = 0; i < 4096; ++i) {  // bounded: 256 MiB at most
        auto r = c.send(chunk);
        if (r == send_result::backpressure) {
          probe_->note("backpressure");
          return;
        }
        if (r == send_result::dropped) {
          probe_->note("dropped");
          return;
        }
      }
      probe_->note("never backpressured");
      return;
    }
    if (c.send(chunk) == send_result::dropped) probe_->note("dropped");
  }

 private:
  bool flooding_ = false;
};

TEST(connection, slow_consumer_is_closed_while_other_clients_and_listeners_are_served) {
  auto p = std::make_shared<probe>();
  auto slow_cfg = loopback_listener();
  slow_cfg.max_write_buffer = 256 * 1024;
  slow_cfg.write_low_water = 16 * 1024;
  auto health_cfg = loopback_listener();
  health_cfg.name = "health";
  health_cfg.max_connections = 4;

  server s(atl::test::threads(1));  // one thread: a blocking close would stall everyone
  auto made = std::make_shared<std::atomic<int>>(0);
  auto main_id = s.add_listener(slow_cfg, [p, made](connection&) -> std::unique_ptr<handler> {
    // The first connection floods; the others echo.
    if (made->fetch_add(1) == 0) return std::make_unique<flood_handler>(p);
    return std::make_unique<atl::test::echo_handler>();
  });
  auto health_id = s.add_listener(health_cfg, echo_factory());
  s.start();

  auto slow = client::connect(s.local_endpoint(main_id));
  ASSERT_TRUE(slow.valid());
  atl::test::bound_client(slow, 5s, 4096);
  ASSERT_TRUE(slow.send("flood"));
  ASSERT_TRUE(p->wait_note("backpressure", 10s)) << "notes: " << p->notes().size();

  // The slow one is stuck with a full queue; others are served without delay.
  auto other = client::connect(s.local_endpoint(main_id));
  auto health = client::connect(s.local_endpoint(health_id));
  ASSERT_TRUE(other.valid());
  ASSERT_TRUE(health.valid());
  EXPECT_TRUE(other.echo("other-1", 1s));
  EXPECT_TRUE(health.echo("ok?", 1s));

  // Keep the slow consumer's handler sending until the queue passes max_write_buffer.
  bool closed = false;
  for (int i = 0; i < 200 && !closed; ++i) {
    if (!slow.send("more")) break;
    closed = p->wait_closes(1, 20ms);
  }
  ASSERT_TRUE(p->wait_closes(1, 5s));
  EXPECT_EQ(p->nth(0).reason, close_reason::slow_consumer);

  // The io thread was not blocked by the close.
  EXPECT_TRUE(other.echo("other-2", 1s));
  EXPECT_TRUE(health.echo("still ok?", 1s));
  auto late = client::connect(s.local_endpoint(main_id));
  EXPECT_TRUE(late.echo("late", 1s));

  auto end = slow.wait_closed(10s);
  EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << to_string(end);
  EXPECT_EQ(listener_stats_of(s, main_id).closed(close_reason::slow_consumer), 1u);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

struct backpressure_state {
  oneshot<send_result> first_result;
  oneshot<std::size_t> bytes_at_backpressure;  // everything sent up to backpressure
  oneshot<std::size_t> buffered_at_writable;
  std::atomic<int> writable_calls{0};
  std::atomic<int> writable_before_backpressure{0};
};

class backpressure_handler : public handler {
 public:
  explicit backpressure_handler(std::shared_ptr<backpressure_state> st) : st_(std::move(st)) {}
  void on_data(connection& c, std::span<const std::byte>) override {
    static const std::string chunk(64 * 1024, 'b');
    st_->first_result.set(c.send("start\n"));
    std::size_t total = 0;
    for (int i = 0; i < 4096; ++i) {  // bounded
      auto r = c.send(chunk);
      if (r == send_result::dropped) break;
      total += chunk.size();
      if (r == send_result::backpressure) {
        backpressured_ = true;
        st_->bytes_at_backpressure.set(total);
        return;
      }
    }
  }
  void on_writable(connection& c) override {
    if (!backpressured_) ++st_->writable_before_backpressure;
    ++st_->writable_calls;
    st_->buffered_at_writable.set(c.buffered_amount());
    c.send("done\n");
  }

 private:
  std::shared_ptr<backpressure_state> st_;
  bool backpressured_ = false;
};

TEST(connection, send_reports_backpressure_and_on_writable_follows_when_the_client_drains) {
  auto st = std::make_shared<backpressure_state>();
  auto cfg = loopback_listener();
  cfg.max_write_buffer = 64 << 20;
  cfg.write_low_water = 64 * 1024;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, atl::test::make_factory<backpressure_handler>(st));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.send("fill"));
  auto first = st->first_result.wait();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, send_result::ok);
  auto total = st->bytes_at_backpressure.wait(10s);
  ASSERT_TRUE(total.has_value()) << "send() never reported backpressure";
  EXPECT_FALSE(st->buffered_at_writable.is_set());

  // Drain: "start\n", all chunks, then "done\n" written from on_writable.
  const std::size_t expected = 6 + *total + 5;
  std::string got = c.read_exact(expected, 15s);
  ASSERT_EQ(got.size(), expected);
  EXPECT_EQ(got.substr(0, 6), "start\n");
  EXPECT_EQ(got.substr(expected - 5), "done\n");
  EXPECT_EQ(std::count(got.begin(), got.end(), 'b'), static_cast<std::ptrdiff_t>(*total));

  auto buffered = st->buffered_at_writable.wait();
  ASSERT_TRUE(buffered.has_value());
  EXPECT_LE(*buffered, cfg.write_low_water);
  EXPECT_EQ(st->writable_before_backpressure.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// shutdown_write, pause/resume, per-connection read timeout

class half_close_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_data(connection& c, std::span<const std::byte> data) override {
    auto text = to_text(data);
    if (!half_closed_ && text == "half") {
      half_closed_ = true;
      c.send("data\n");
      c.shutdown_write();
      probe_->note(c.is_open() ? "open after shutdown_write" : "closed by shutdown_write");
      return;
    }
    received_ += text;
    probe_->note("received:" + received_);
  }

 private:
  bool half_closed_ = false;
  std::string received_;
};

TEST(connection, shutdown_write_sends_eof_after_the_data_while_the_client_can_still_send) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), atl::test::make_factory<half_close_handler>(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.send("half"));
  EXPECT_EQ(c.read_exact(5), "data\n");
  std::string rest;
  EXPECT_EQ(c.read_some(rest, 3s), outcome::eof);
  EXPECT_TRUE(rest.empty());

  ASSERT_TRUE(c.send("still here"));
  EXPECT_TRUE(p->wait_note("received:still here"));
  EXPECT_EQ(p->closes(), 0u);
  c.close();
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::peer_closed);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

class pausing_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_data(connection& c, std::span<const std::byte> data) override {
    auto text = to_text(data);
    if (text == "pause") {
      c.pause_reading();
      probe_->note(c.reading_paused() ? "paused" : "pause ignored");
      c.send("paused\n");
      return;
    }
    probe_->note("data:" + text);
  }
  void on_timeout(connection&) override { probe_->note("timeout"); }
};

TEST(connection, pause_reading_holds_back_data_and_the_timeout_until_resume) {
  auto p = std::make_shared<probe>();
  oneshot<atl::connection_handle> handle;
  auto cfg = loopback_listener();
  cfg.read_timeout = 150ms;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, [p, &handle](connection& c) -> std::unique_ptr<handler> {
    handle.set(c.handle());
    return std::make_unique<pausing_handler>(p);
  });
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.send("pause"));
  ASSERT_EQ(c.read_exact(7), "paused\n");
  ASSERT_TRUE(p->wait_note("paused"));
  ASSERT_TRUE(c.send("abc"));

  // Paused for 3 read timeouts: neither on_data nor on_timeout may run (a bounded negative wait).
  EXPECT_FALSE(p->wait_note_prefix("data:", 450ms));
  auto h = handle.wait();
  ASSERT_TRUE(h.has_value());
  ASSERT_TRUE(h->dispatch([p](connection& conn) {
    p->note(conn.reading_paused() ? "still paused" : "resuming");
    conn.resume_reading();
    p->note(conn.reading_paused() ? "resume ignored" : "resumed");
  }));
  EXPECT_TRUE(p->wait_note("data:abc"));
  // After resume the read timeout runs again.
  EXPECT_TRUE(wait_until(
      [&] {
        auto n = p->notes();
        auto resumed = std::find(n.begin(), n.end(), "resumed");
        return resumed != n.end() && std::find(resumed, n.end(), "timeout") != n.end();
      },
      3s));

  auto notes = p->notes();
  auto paused_at = std::find(notes.begin(), notes.end(), "paused");
  auto resumed_at = std::find(notes.begin(), notes.end(), "resumed");
  ASSERT_NE(paused_at, notes.end());
  ASSERT_NE(resumed_at, notes.end());
  EXPECT_TRUE(std::find(notes.begin(), notes.end(), "still paused") != notes.end());
  for (auto it = paused_at; it != resumed_at; ++it) {
    EXPECT_NE(*it, "timeout") << "on_timeout ran while reading was paused";
    EXPECT_NE(it->rfind("data:", 0), 0u) << "on_data ran while reading was paused: " << *it;
  }
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// Echo that pauses reading on backpressure (the echo example's pattern).
class backpressure_echo : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_data(connection& c, std::span<const std::byte> data) override {
    if (c.send(data) == send_result::backpressure) c.pause_reading();
  }
  void on_writable(connection& c) override { c.resume_reading(); }
};

TEST(connection, a_paused_connection_with_queued_writes_still_times_out) {
  // A peer that writes but never reads: the handler pauses on backpressure, and with bytes
  // queued the read timeout keeps running, so the connection cannot hold its slot forever.
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.read_timeout = 200ms;
  cfg.write_low_water = 16 * 1024;
  cfg.max_write_buffer = 64 * 1024 * 1024;  // never a slow-consumer close here
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, [p](connection&) -> std::unique_ptr<handler> {
    return std::make_unique<backpressure_echo>(p);
  });
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  ::fcntl(c.fd(), F_SETFL, ::fcntl(c.fd(), F_GETFL) | O_NONBLOCK);
  const std::string chunk(64 * 1024, 'x');
  // Write until the kernel pushes back on us too (bounded count), never reading.
  for (int i = 0; i < 4096; ++i) {
    if (::send(c.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) break;
  }
  ASSERT_TRUE(p->wait_closes(1, 10s)) << "the paused connection was never timed out";
  EXPECT_EQ(p->nth(0).reason, close_reason::timeout);
  // The slot is released just after on_close returns.
  EXPECT_TRUE(wait_until([&] { return s.stats().listeners[0].active == 0; }));
  s.stop();
}

class short_timeout_handler : public atl::test::echo_handler {
 public:
  short_timeout_handler(std::shared_ptr<probe> p, std::chrono::milliseconds t)
      : echo_handler(std::move(p)), timeout_(t) {}
  void on_open(connection& c) override {
    probe_->note("initial:" + std::to_string(c.read_timeout().count()));
    c.set_read_timeout(timeout_);
    probe_->note("now:" + std::to_string(c.read_timeout().count()));
    probe_->opened(c);
  }

 private:
  std::chrono::milliseconds timeout_;
};

TEST(connection, set_read_timeout_gives_one_connection_its_own_timeout) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.read_timeout = 0ms;  // none for the listener
  server s(atl::test::threads(1));
  auto id = s.add_listener(
      cfg, atl::test::make_factory<short_timeout_handler>(p, std::chrono::milliseconds{100}));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  EXPECT_EQ(c.wait_closed(5s), outcome::eof);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::timeout);
  EXPECT_TRUE(p->wait_note("initial:0"));
  EXPECT_TRUE(p->wait_note("now:100"));
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection, set_read_timeout_zero_disables_the_listener_timeout) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.read_timeout = 100ms;
  server s(atl::test::threads(1));
  auto id = s.add_listener(
      cfg, atl::test::make_factory<short_timeout_handler>(p, std::chrono::milliseconds{0}));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(p->wait_opens(1));
  EXPECT_TRUE(p->wait_note("initial:100"));
  EXPECT_TRUE(p->wait_note("now:0"));
  // Five listener timeouts pass without a close.
  EXPECT_FALSE(p->wait_closes(1, 500ms));
  EXPECT_TRUE(c.echo("still open"));
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// ---------------------------------------------------------------------------------------------
// Identity and thread affinity

TEST(connection, peer_local_id_and_listener_describe_the_connection) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto first = s.add_listener(loopback_listener(), echo_factory(p));
  auto second = s.add_listener(loopback_listener(), echo_factory(p));
  s.start();

  auto a = client::connect(s.local_endpoint(first));
  auto b = client::connect(s.local_endpoint(second));
  ASSERT_TRUE(a.echo("a"));
  ASSERT_TRUE(b.echo("b"));
  ASSERT_TRUE(p->wait_opens(2));

  const auto a_local = atl::test::local_of(a.fd());
  const auto b_local = atl::test::local_of(b.fd());
  std::set<std::uint64_t> ids;
  for (const auto& [id, r] : p->records()) {
    ids.insert(r.id);
    EXPECT_NE(r.id, 0u);
    EXPECT_TRUE(r.peer.is_ip());
    EXPECT_EQ(r.peer.address(), "127.0.0.1");
    if (r.peer.port() == a_local.port()) {
      EXPECT_EQ(r.listener, first);
      EXPECT_EQ(r.local.to_string(), s.local_endpoint(first).to_string());
    } else {
      EXPECT_EQ(r.peer.port(), b_local.port());
      EXPECT_EQ(r.listener, second);
      EXPECT_EQ(r.local.to_string(), s.local_endpoint(second).to_string());
    }
  }
  EXPECT_EQ(ids.size(), 2u);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

/// Records the thread of every callback and of work posted to `executor()`.
class affinity_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_open(connection& c) override {
    echo_handler::on_open(c);
    auto p = probe_;
    auto id = c.id();
    asio::post(c.executor(), [p, id] { p->called(id, "posted"); });
  }
  void on_timeout(connection& c) override {
    probe_->called(c, "timeout");
    handler::on_timeout(c);
  }
};

TEST(connection, every_callback_of_a_connection_runs_on_its_executor_thread) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.reuse_port = true;  // the kernel spreads clients over both threads by source port
  cfg.read_timeout = 200ms;
  server s(atl::test::threads(2));
  auto id = s.add_listener(cfg, atl::test::make_factory<affinity_handler>(p));
  s.start();

  constexpr int clients = 24;
  {
    std::vector<client> cs;
    for (int i = 0; i < clients; ++i) {
      cs.push_back(client::connect(s.local_endpoint(id)));
      ASSERT_TRUE(cs.back().echo("affinity " + std::to_string(i)));
    }
    // Half leave on their own; the rest time out (on_timeout is a callback too).
    for (int i = 0; i < clients; i += 2) cs[static_cast<std::size_t>(i)].close();
    ASSERT_TRUE(p->wait_closes(clients, 10s));
  }
  s.stop();

  std::map<std::size_t, std::thread::id> thread_of_index;
  std::set<std::size_t> indices;
  for (const auto& [cid, r] : p->records()) {
    indices.insert(r.thread_index);
    ASSERT_GE(r.call_threads.size(), 4u) << "open, posted, data, close";
    EXPECT_NE(std::find(r.calls.begin(), r.calls.end(), "posted"), r.calls.end());
    const auto t = r.call_threads.front();
    EXPECT_NE(t, std::this_thread::get_id());
    for (std::size_t i = 0; i < r.call_threads.size(); ++i)
      EXPECT_EQ(r.call_threads[i], t) << "connection " << cid << " callback " << r.calls[i];
    auto [it, inserted] = thread_of_index.emplace(r.thread_index, t);
    EXPECT_EQ(it->second, t) << "thread_index " << r.thread_index << " maps to two threads";
  }
  EXPECT_EQ(indices, (std::set<std::size_t>{0, 1}));
  if (thread_of_index.size() == 2) {
    EXPECT_NE(thread_of_index[0], thread_of_index[1]);
  }
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// ---------------------------------------------------------------------------------------------
// connection_handle

TEST(connection, connection_handle_sends_from_many_threads_and_every_byte_arrives) {
  auto p = std::make_shared<probe>();
  oneshot<atl::connection_handle> handle;
  server s(atl::test::threads(2));
  auto id =
      s.add_listener(loopback_listener(), [p, &handle](connection& c) -> std::unique_ptr<handler> {
        handle.set(c.handle());
        return std::make_unique<atl::test::echo_handler>(p);
      });
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  auto h = handle.wait();
  ASSERT_TRUE(h.has_value());
  ASSERT_TRUE(p->wait_opens(1));
  EXPECT_FALSE(h->expired());
  EXPECT_EQ(h->id(), p->nth(0).id);

  constexpr int senders = 4;
  constexpr int per_sender = 500;
  constexpr std::size_t line = 10;  // "tK:NNNNNN\n"
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < senders; ++t) {
    threads.emplace_back([&, t] {
      char buf[16];
      for (int i = 0; i < per_sender; ++i) {
        std::snprintf(buf, sizeof buf, "t%d:%06d\n", t, i);
        if (!h->send(std::string_view(buf, line))) ++refused;
      }
    });
  }
  const std::size_t expected = senders * per_sender * line;
  std::string got = c.read_exact(expected, 15s);
  for (auto& t : threads) t.join();

  EXPECT_EQ(refused.load(), 0);
  ASSERT_EQ(got.size(), expected);
  int counts[senders] = {};
  for (std::size_t off = 0; off < got.size(); off += line) {
    std::string_view l(got.data() + off, line);
    ASSERT_EQ(l[0], 't') << "torn message at " << off;
    ASSERT_EQ(l[2], ':') << "torn message at " << off;
    ASSERT_EQ(l[line - 1], '\n') << "torn message at " << off;
    int t = l[1] - '0';
    ASSERT_TRUE(t >= 0 && t < senders);
    ++counts[t];
  }
  for (int t = 0; t < senders; ++t) EXPECT_EQ(counts[t], per_sender) << "sender " << t;

  // dispatch runs on the connection's thread.
  oneshot<std::thread::id> dispatched_on;
  ASSERT_TRUE(h->dispatch([&dispatched_on](connection& conn) {
    dispatched_on.set(std::this_thread::get_id());
    conn.send("dispatched\n");
  }));
  EXPECT_EQ(c.read_exact(11), "dispatched\n");
  auto on = dispatched_on.wait();
  ASSERT_TRUE(on.has_value());
  EXPECT_EQ(*on, p->nth(0).open_thread);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection, connection_handle_close_closes_and_the_handle_then_expires) {
  auto p = std::make_shared<probe>();
  oneshot<atl::connection_handle> handle;
  server s(atl::test::threads(2));
  auto id =
      s.add_listener(loopback_listener(), [p, &handle](connection& c) -> std::unique_ptr<handler> {
        handle.set(c.handle());
        return std::make_unique<atl::test::echo_handler>(p);
      });
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  auto h = handle.wait();
  ASSERT_TRUE(h.has_value());
  ASSERT_TRUE(h->send("before close\n"));
  bool close_posted = false;
  std::thread closer([&] { close_posted = h->close(); });
  closer.join();
  EXPECT_TRUE(close_posted);

  std::string got;
  EXPECT_EQ(c.wait_closed(3s, &got), outcome::eof);
  EXPECT_EQ(got, "before close\n");
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::local_close);

  EXPECT_TRUE(wait_until([&] { return h->expired(); }, 3s));
  EXPECT_FALSE(h->send("after"));
  EXPECT_FALSE(h->close());
  EXPECT_FALSE(h->abort());
  EXPECT_FALSE(h->dispatch([](connection&) {}));

  atl::connection_handle empty;
  EXPECT_TRUE(empty.expired());
  EXPECT_EQ(empty.id(), 0u);
  EXPECT_FALSE(empty.send("x"));
  EXPECT_FALSE(empty.close());
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection, connection_handle_abort_resets_the_client) {
  auto p = std::make_shared<probe>();
  oneshot<atl::connection_handle> handle;
  server s(atl::test::threads(1));
  auto id =
      s.add_listener(loopback_listener(), [p, &handle](connection& c) -> std::unique_ptr<handler> {
        handle.set(c.handle());
        return std::make_unique<atl::test::echo_handler>(p);
      });
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  auto h = handle.wait();
  ASSERT_TRUE(h.has_value());
  ASSERT_TRUE(c.echo("x"));
  EXPECT_TRUE(h->abort());
  EXPECT_EQ(c.wait_closed(3s), outcome::reset);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).ec, atl::errc::aborted);
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// ---------------------------------------------------------------------------------------------
// upgrade

/// After upgrading: uppercases everything.
class upper_handler : public handler {
 public:
  explicit upper_handler(std::shared_ptr<probe> p) : probe_(std::move(p)) {}
  ~upper_handler() override { probe_->note("upper destroyed"); }
  void on_open(connection& c) override {
    probe_->called(c, "upper:open");
    probe_->note("upper:open");
  }
  void on_data(connection& c, std::span<const std::byte> data) override {
    std::string s = to_text(data);
    probe_->called(c, "upper:data:" + s);
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    c.send(s);
  }
  void on_close(connection& c, close_reason r, std::error_code ec) override {
    probe_->note("upper:close");
    probe_->closed(c, r, ec);
  }

 private:
  std::shared_ptr<probe> probe_;
};

/// A line protocol: echoes lines; "UPGRADE" switches to `upper_handler`, handing over the bytes
/// that followed the line.
class line_handler : public handler {
 public:
  explicit line_handler(std::shared_ptr<probe> p) : probe_(std::move(p)) {}
  ~line_handler() override { probe_->note("line destroyed"); }
  void on_open(connection& c) override {
    probe_->opened(c);
    probe_->called(c, "line:open");
  }
  void on_data(connection& c, std::span<const std::byte> data) override {
    probe_->called(c, "line:data");
    buffer_ += to_text(data);
    for (std::size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
      std::string l = buffer_.substr(0, nl + 1);
      buffer_.erase(0, nl + 1);
      if (l == "UPGRADE\n") {
        c.upgrade(std::make_unique<upper_handler>(probe_), as_bytes(buffer_));
        probe_->note("leftover:" + buffer_);
        buffer_.assign(buffer_.size(), '#');  // upgrade() must have copied the leftover
        return;
      }
      c.send(l);
    }
  }
  void on_close(connection& c, close_reason r, std::error_code ec) override {
    probe_->note("line:close");
    probe_->closed(c, r, ec);
  }

 private:
  std::shared_ptr<probe> probe_;
  std::string buffer_;
};

TEST(connection, upgrade_switches_handler_and_hands_over_leftover_bytes) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), atl::test::make_factory<line_handler>(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("plain line\n"));
  ASSERT_TRUE(c.send("hello\nUPGRADE\nrest"));  // one packet: "rest" came with the line
  EXPECT_EQ(c.read_exact(10), "hello\nREST");
  ASSERT_TRUE(c.send("more"));
  EXPECT_EQ(c.read_exact(4), "MORE");
  EXPECT_TRUE(p->wait_note("line destroyed"));

  c.close();
  ASSERT_TRUE(p->wait_note("upper:close"));
  ASSERT_TRUE(p->wait_closes(1));
  s.stop();

  auto notes = p->notes();
  EXPECT_EQ(std::count(notes.begin(), notes.end(), "line:close"), 0) << "old handler got on_close";
  EXPECT_EQ(std::count(notes.begin(), notes.end(), "upper:close"), 1);
  EXPECT_EQ(std::count(notes.begin(), notes.end(), "upper destroyed"), 1);
  auto r = p->nth(0);
  EXPECT_EQ(r.closes, 1);
  EXPECT_EQ(r.reason, close_reason::peer_closed);
  // The new handler's on_open comes before its first on_data, which gets the leftover.
  auto open_at = std::find(r.calls.begin(), r.calls.end(), "upper:open");
  auto first_upper_data = std::find_if(r.calls.begin(), r.calls.end(), [](const std::string& s) {
    return s.rfind("upper:data:", 0) == 0;
  });
  ASSERT_NE(open_at, r.calls.end());
  ASSERT_NE(first_upper_data, r.calls.end());
  EXPECT_LT(open_at - r.calls.begin(), first_upper_data - r.calls.begin());
  // No line-handler callback after the switch.
  for (auto it = open_at; it != r.calls.end(); ++it) EXPECT_NE(it->rfind("line:", 0), 0u) << *it;
  if (std::find(notes.begin(), notes.end(), "leftover:rest") != notes.end()) {
    EXPECT_EQ(*first_upper_data, "upper:data:rest");
  }
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// ---------------------------------------------------------------------------------------------
// Factory refusal

TEST(connection, factory_returning_null_closes_the_client_and_counts_refused) {
  std::atomic<int> calls{0};
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), [&calls](connection&) -> std::unique_ptr<handler> {
    ++calls;
    return nullptr;
  });
  s.start();

  const auto t0 = clock_type::now();
  auto closed = atl::test::connect_and_wait_closed(s.local_endpoint(id), 2s, "anyone?");
  EXPECT_TRUE(closed == outcome::eof || closed == outcome::reset) << to_string(closed);
  EXPECT_LT(clock_type::now() - t0, 1s);
  EXPECT_TRUE(wait_until(
      [&] { return listener_stats_of(s, id).rejected(atl::reject_reason::refused) == 1; }));
  auto ls = listener_stats_of(s, id);
  EXPECT_EQ(ls.active, 0u);
  EXPECT_GE(ls.accepted_total, 1u);
  EXPECT_EQ(calls.load(), 1);
}

TEST(connection, factory_throwing_is_treated_as_refused) {
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), [](connection&) -> std::unique_ptr<handler> {
    throw std::runtime_error("factory failure (expected)");
  });
  s.start();

  auto closed = atl::test::connect_and_wait_closed(s.local_endpoint(id), 2s);
  EXPECT_TRUE(closed == outcome::eof || closed == outcome::reset) << to_string(closed);
  EXPECT_TRUE(wait_until(
      [&] { return listener_stats_of(s, id).rejected(atl::reject_reason::refused) == 1; }));
  // Still accepting (and refusing) afterwards.
  closed = atl::test::connect_and_wait_closed(s.local_endpoint(id), 2s);
  EXPECT_TRUE(closed == outcome::eof || closed == outcome::reset) << to_string(closed);
  EXPECT_TRUE(wait_until(
      [&] { return listener_stats_of(s, id).rejected(atl::reject_reason::refused) == 2; }));
  EXPECT_EQ(listener_stats_of(s, id).active, 0u);
}

}  // namespace
