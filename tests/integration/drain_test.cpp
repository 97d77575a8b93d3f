// Integration tests of graceful stop: on_shutdown, delivery of queued bytes during the drain,
// forced close at the deadline, idempotence, run()/request_stop(), stop from a handler, the
// destructor, and stop signals.
#include "atoll/server.hpp"  // the subject, first: it must be self-contained

// Then what the test itself uses.
#include <gtest/gtest.h>

#include <atoll/connection.hpp>
#include <atoll/handler.hpp>
#include <atoll/stats.hpp>
#include <atomic>
#include <csignal>
#include <memory>
#include <set>
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
using atl::server;
using atl::test::background_run;
using atl::test::client;
using atl::test::echo_factory;
using atl::test::loopback_listener;
using atl::test::oneshot;
using atl::test::outcome;
using atl::test::probe;
using atl::test::to_text;
using atl::test::wait_until;
using clock_type = std::chrono::steady_clock;

/// Echoes; records on_shutdown and then does what the base class does (close).
class recording_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_shutdown(connection& c) override {
    probe_->called(c, "shutdown");
    handler::on_shutdown(c);
  }
};

TEST(drain, stop_calls_on_shutdown_on_every_connection_on_its_own_thread) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.reuse_port = true;  // spread the clients over both threads
  server s(atl::test::threads(2));
  auto id = s.add_listener(cfg, atl::test::make_factory<recording_handler>(p));
  s.start();

  constexpr int n = 12;
  std::vector<client> cs;
  for (int i = 0; i < n; ++i) {
    cs.push_back(client::connect(s.local_endpoint(id)));
    ASSERT_TRUE(cs.back().echo("hi"));
  }
  ASSERT_TRUE(p->wait_opens(n));

  const auto t0 = clock_type::now();
  s.stop(5s);
  EXPECT_LT(clock_type::now() - t0, 3s) << "every handler closed at once; the drain need not wait";
  EXPECT_FALSE(s.running());

  for (auto& c : cs) EXPECT_EQ(c.wait_closed(2s), outcome::eof);
  auto records = p->records();
  ASSERT_EQ(records.size(), static_cast<std::size_t>(n));
  std::set<std::size_t> indices;
  for (const auto& [cid, r] : records) {
    indices.insert(r.thread_index);
    auto at = std::find(r.calls.begin(), r.calls.end(), "shutdown");
    ASSERT_NE(at, r.calls.end()) << "connection " << cid << " got no on_shutdown";
    EXPECT_EQ(std::count(r.calls.begin(), r.calls.end(), "shutdown"), 1);
    EXPECT_EQ(r.call_threads[static_cast<std::size_t>(at - r.calls.begin())], r.open_thread);
    EXPECT_EQ(r.closes, 1);
    EXPECT_EQ(r.reason, close_reason::shutdown);
    EXPECT_EQ(r.close_thread, r.open_thread);
  }
  EXPECT_EQ(indices.size(), 2u) << "expected connections on both io threads";
  auto ls = s.stats().listeners.at(id);
  EXPECT_EQ(ls.active, 0u);
  EXPECT_EQ(ls.closed(close_reason::shutdown), static_cast<std::uint64_t>(n));
  EXPECT_EQ(p->lifecycle_violations(), "");
}

class goodbye_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_shutdown(connection& c) override {
    c.send("bye\n");
    c.close();
  }
};

TEST(drain, a_handler_can_say_goodbye_before_closing) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), atl::test::make_factory<goodbye_handler>(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("hello\n"));
  std::thread stopper([&] { s.stop(5s); });
  std::string got;
  EXPECT_EQ(c.wait_closed(5s, &got), outcome::eof);
  stopper.join();
  EXPECT_EQ(got, "bye\n");
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::shutdown);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

/// On "big": queues a large reply. On shutdown: closes (after the queue, by contract).
class big_reply_handler : public atl::test::echo_handler {
 public:
  big_reply_handler(std::shared_ptr<probe> p, std::string payload)
      : echo_handler(std::move(p)), payload_(std::move(payload)) {}
  void on_data(connection& c, std::span<const std::byte>) override {
    constexpr std::size_t chunk = 32 * 1024;
    for (std::size_t off = 0; off < payload_.size(); off += chunk)
      c.send(std::string_view(payload_).substr(off, chunk));
    probe_->note("queued " + std::to_string(c.buffered_amount()));
    probe_->note("sent");
  }
  void on_shutdown(connection& c) override {
    probe_->note("shutdown");
    c.close();
  }

 private:
  std::string payload_;
};

TEST(drain, bytes_queued_before_close_are_delivered_during_the_drain) {
  auto p = std::make_shared<probe>();
  const std::string payload = atl::test::pattern_payload(2 << 20, 11);
  server s(atl::test::threads(1));
  auto id =
      s.add_listener(loopback_listener(), atl::test::make_factory<big_reply_handler>(p, payload));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.send("big"));
  ASSERT_TRUE(p->wait_note("sent"));

  // Start the drain; read only once on_shutdown has run.
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    s.stop(10s);
    stopped = true;
  });
  EXPECT_TRUE(p->wait_note("shutdown"));
  std::string got;
  EXPECT_EQ(c.wait_closed(15s, &got), outcome::eof);
  stopper.join();
  EXPECT_TRUE(stopped.load());

  ASSERT_EQ(got.size(), payload.size());
  EXPECT_EQ(atl::test::first_mismatch(got, payload), std::string::npos);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::shutdown);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

class deaf_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_shutdown(connection& c) override { probe_->called(c, "shutdown"); }  // ignores it
};

TEST(drain, connections_still_open_at_the_stop_timeout_are_closed) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(2));
  auto id = s.add_listener(loopback_listener(), atl::test::make_factory<deaf_handler>(p));
  s.start();

  auto a = client::connect(s.local_endpoint(id));
  auto b = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(a.echo("a"));
  ASSERT_TRUE(b.echo("b"));

  const auto t0 = clock_type::now();
  s.stop(300ms);
  const auto took = clock_type::now() - t0;
  EXPECT_GE(took, 250ms) << "stop() did not wait for the handlers";
  EXPECT_LT(took, 3s) << "stop() did not force the close at the timeout";

  for (auto* c : {&a, &b}) {
    auto end = c->wait_closed(2s);
    EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << to_string(end);
  }
  ASSERT_TRUE(p->wait_closes(2));
  for (const auto& [cid, r] : p->records()) {
    EXPECT_EQ(r.reason, close_reason::shutdown);
    EXPECT_EQ(std::count(r.calls.begin(), r.calls.end(), "shutdown"), 1);
  }
  EXPECT_EQ(s.stats().listeners.at(id).active, 0u);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, the_listener_shutdown_timeout_bounds_stop_without_argument) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.shutdown_timeout = 200ms;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, atl::test::make_factory<deaf_handler>(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("x"));
  const auto t0 = clock_type::now();
  s.stop();
  const auto took = clock_type::now() - t0;
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 3s);
  auto end = c.wait_closed(2s);
  EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << to_string(end);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::shutdown);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, shutdown_timeout_zero_aborts_at_once) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.shutdown_timeout = 0ms;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, atl::test::make_factory<deaf_handler>(p));
  s.start();

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("x"));
  const auto t0 = clock_type::now();
  s.stop(10s);
  EXPECT_LT(clock_type::now() - t0, 2s);
  auto end = c.wait_closed(2s);
  EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << to_string(end);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::shutdown);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, stop_is_idempotent) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(2));
  auto id = s.add_listener(loopback_listener(), echo_factory(p));
  s.stop();  // before start: nothing to do
  EXPECT_FALSE(s.running());
  s.start();
  EXPECT_TRUE(s.running());
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("x"));

  s.stop();
  EXPECT_FALSE(s.running());
  const auto t0 = clock_type::now();
  s.stop();
  s.stop(1s);
  EXPECT_LT(clock_type::now() - t0, 1s);
  EXPECT_FALSE(s.running());
  s.request_stop();
  EXPECT_EQ(c.wait_closed(2s), outcome::eof);
  EXPECT_EQ(p->closes(), 1u);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, stop_stops_accepting_new_clients) {
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), echo_factory());
  s.start();
  const auto ep = s.local_endpoint(id);
  s.stop();
  int err = 0;
  auto c = client::connect(ep, 1s, &err);
  EXPECT_FALSE(c.valid());
  EXPECT_EQ(err, ECONNREFUSED);
}

TEST(drain, run_returns_after_request_stop_from_another_thread) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(2));
  auto id = s.add_listener(loopback_listener(), echo_factory(p));
  s.start();
  background_run runner(s);

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("running"));
  EXPECT_FALSE(runner.wait_returned(100ms));  // run() blocks while no stop is requested
  s.request_stop();
  EXPECT_TRUE(runner.wait_returned(5s));
  EXPECT_FALSE(runner.error());
  EXPECT_FALSE(s.running());
  EXPECT_EQ(c.wait_closed(2s), outcome::eof);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::shutdown);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, run_starts_the_server_if_needed) {
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), echo_factory());
  background_run runner(s);
  ASSERT_TRUE(wait_until([&] { return s.running(); }));
  auto c = client::connect(s.local_endpoint(id));
  EXPECT_TRUE(c.echo("auto-started"));
  s.request_stop();
  EXPECT_TRUE(runner.wait_returned(5s));
}

/// On "stop": asks its server to stop, from an io thread.
class stopping_handler : public atl::test::echo_handler {
 public:
  stopping_handler(std::shared_ptr<probe> p, server* s, bool use_stop)
      : echo_handler(std::move(p)), server_(s), use_stop_(use_stop) {}
  void on_data(connection& c, std::span<const std::byte> data) override {
    if (to_text(data) == "stop") {
      if (use_stop_)
        server_->stop();  // from an io thread this only requests the stop
      else
        server_->request_stop();
      probe_->note("requested");
      return;
    }
    c.send(data);
  }

 private:
  server* server_;
  bool use_stop_;
};

void expect_stop_from_handler_ends_run(bool use_stop) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(2));
  auto id = s.add_listener(loopback_listener(),
                           atl::test::make_factory<stopping_handler>(p, &s, use_stop));
  s.start();
  background_run runner(s);

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("x"));
  ASSERT_TRUE(c.send("stop"));
  EXPECT_TRUE(p->wait_note("requested"));
  EXPECT_TRUE(runner.wait_returned(5s));
  EXPECT_EQ(c.wait_closed(2s), outcome::eof);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::shutdown);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, request_stop_from_inside_a_handler_ends_run) {
  expect_stop_from_handler_ends_run(false);
}

TEST(drain, stop_from_inside_a_handler_only_requests_the_stop) {
  expect_stop_from_handler_ends_run(true);
}

TEST(drain, destroying_a_running_server_stops_it) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.shutdown_timeout = 500ms;
  auto s = std::make_unique<server>(atl::test::threads(2));
  auto id = s->add_listener(cfg, atl::test::make_factory<recording_handler>(p));
  s->start();
  const auto ep = s->local_endpoint(id);
  auto c = client::connect(ep);
  ASSERT_TRUE(c.echo("x"));

  const auto t0 = clock_type::now();
  s.reset();
  EXPECT_LT(clock_type::now() - t0, 3s);
  EXPECT_EQ(c.wait_closed(2s), outcome::eof);
  ASSERT_TRUE(p->wait_closes(1, 1s));
  auto r = p->nth(0);
  EXPECT_EQ(r.reason, close_reason::shutdown);
  EXPECT_NE(std::find(r.calls.begin(), r.calls.end(), "shutdown"), r.calls.end());
  int err = 0;
  EXPECT_FALSE(client::connect(ep, 1s, &err).valid());
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, destroying_a_server_that_never_started_is_fine) {
  auto s = std::make_unique<server>(atl::test::threads(1));
  s->add_listener(loopback_listener(), echo_factory());
  s.reset();
  SUCCEED();
}

// ---------------------------------------------------------------------------------------------
// stop_signals

void ignore_signal(int) {}

/// Installs a harmless handler for `sig` (so a signal that arrives before atoll's own handler
/// cannot kill the test binary) and restores the previous one on destruction.
class signal_guard {
 public:
  explicit signal_guard(int sig) : sig_(sig) {
    struct sigaction sa {};
    sa.sa_handler = ignore_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig_, &sa, &old_);
  }
  ~signal_guard() { ::sigaction(sig_, &old_, nullptr); }
  /// True once someone else (atoll) has replaced our handler.
  bool replaced() const {
    struct sigaction now {};
    ::sigaction(sig_, nullptr, &now);
    return now.sa_handler != ignore_signal;
  }

 private:
  int sig_;
  struct sigaction old_ {};
};

void expect_signal_ends_run(int sig, bool process_directed) {
  signal_guard guard(sig);
  auto p = std::make_shared<probe>();
  auto cfg = atl::test::threads(2);
  cfg.stop_signals = {sig};
  server s(cfg);
  auto id = s.add_listener(loopback_listener(), echo_factory(p));
  background_run runner(s);
  ASSERT_TRUE(wait_until([&] { return s.running() && guard.replaced(); }))
      << "atoll never installed a handler for signal " << sig;

  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.echo("x"));
  if (process_directed)
    ::kill(::getpid(), sig);
  else
    std::raise(sig);
  EXPECT_TRUE(runner.wait_returned(5s));
  EXPECT_EQ(c.wait_closed(2s), outcome::eof);
  ASSERT_TRUE(p->wait_closes(1));
  EXPECT_EQ(p->nth(0).reason, close_reason::shutdown);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(drain, a_stop_signal_raised_in_process_makes_run_drain_and_return) {
  expect_signal_ends_run(SIGUSR1, false);
}

TEST(drain, a_stop_signal_sent_to_the_process_makes_run_drain_and_return) {
  expect_signal_ends_run(SIGUSR2, true);
}

}  // namespace
