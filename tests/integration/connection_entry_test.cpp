// Integration tests of the entry rule (issue 9): connection::after() timers, finishing that is
// always deferred to the end of the outermost entry, the slow-consumer rule (the limit applies
// to what was queued before a send) and close_with().
#include "atoll/connection.hpp"

#include <gtest/gtest.h>

#include <asio/post.hpp>
#include <atoll/error.hpp>
#include <atoll/handler.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/connection_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::close_reason;
using atl::connection;
using atl::connection_timer;
using atl::handler;
using atl::send_result;
using atl::server;
using atl::test::client;
using atl::test::loopback_listener;
using atl::test::outcome;
using atl::test::probe;

// Arms one timer in on_open; what its callback does is the test's choice.
class timer_handler : public atl::test::echo_handler {
 public:
  using action = std::function<void(timer_handler&, connection&)>;
  timer_handler(std::shared_ptr<probe> p, std::chrono::milliseconds delay, action a)
      : echo_handler(std::move(p)), delay_(delay), action_(std::move(a)) {}

  void on_open(connection& c) override {
    echo_handler::on_open(c);
    timer_ = c.after(delay_, [this](connection& conn) {
      probe_->called(conn, "timer");
      action_(*this, conn);
      // Touches the handler after whatever the action did to the connection: under ASan a
      // handler destroyed by the action is a heap-use-after-free here.
      ++fired_;
      probe_->note("after action " + std::to_string(fired_));
    });
  }

  connection_timer& timer() { return timer_; }

 private:
  std::chrono::milliseconds delay_;
  action action_;
  connection_timer timer_;
  int fired_ = 0;
};

atl::handler_factory timer_factory(std::shared_ptr<probe> p, std::chrono::milliseconds delay,
                                   timer_handler::action a) {
  return [=](connection&) -> std::unique_ptr<handler> {
    return std::make_unique<timer_handler>(p, delay, a);
  };
}

TEST(connection_entry, after_runs_its_callback_once_on_the_connection_thread) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(2));
  auto id = s.add_listener(loopback_listener(), timer_factory(p, 20ms, [](auto&, connection&) {}));
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(p->wait_note("after action 1", 5s));
  EXPECT_TRUE(c.echo("still open\n", 2s));
  c.close();
  ASSERT_TRUE(p->wait_closes(1, 5s));
  s.stop();
  const auto r = p->nth(0);
  int timers = 0;
  for (std::size_t i = 0; i < r.calls.size(); ++i) {
    if (r.calls[i] != "timer") continue;
    ++timers;
    EXPECT_EQ(r.call_threads[i], r.open_thread);
  }
  EXPECT_EQ(timers, 1);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection_entry, a_cancelled_timer_never_runs) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  // The first timer cancels itself from a second one that fires earlier.
  auto id = s.add_listener(loopback_listener(), [p](connection&) -> std::unique_ptr<handler> {
    class h final : public atl::test::echo_handler {
     public:
      using echo_handler::echo_handler;
      void on_open(connection& c) override {
        echo_handler::on_open(c);
        late_ = c.after(60ms, [this](connection&) { probe_->note("late fired"); });
        early_ = c.after(10ms, [this](connection&) {
          EXPECT_TRUE(late_.pending());
          late_.cancel();
          EXPECT_FALSE(late_.pending());
          probe_->note("cancelled");
        });
        connection_timer discarded = c.after(1ms, [this](connection&) {
          probe_->note("discarded fired");
        });
      }
      connection_timer late_, early_;
    };
    return std::make_unique<h>(p);
  });
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(p->wait_note("cancelled", 5s));
  // Past the late timer's deadline; an echo round trip shows the loop ran meanwhile.
  std::this_thread::sleep_for(120ms);  // waiting for an event that must NOT happen
  EXPECT_TRUE(c.echo("x", 2s));
  for (const auto& n : p->notes()) {
    EXPECT_NE(n, "late fired");
    EXPECT_NE(n, "discarded fired");
  }
  s.stop();
}

TEST(connection_entry, a_timer_that_aborts_its_connection_does_not_destroy_the_handler_under_it) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(),
                           timer_factory(p, 10ms, [](auto&, connection& c) { c.abort(); }));
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(p->wait_closes(1, 5s));
  EXPECT_TRUE(p->wait_note("after action 1", 1s));
  const auto r = p->nth(0);
  EXPECT_EQ(r.reason, close_reason::local_close);
  EXPECT_EQ(r.ec, atl::errc::aborted);
  // on_close came after the timer's callback had returned, not inside it.
  ASSERT_GE(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[r.calls.size() - 2], "timer");
  EXPECT_EQ(r.calls.back(), "close");
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection_entry, a_timer_send_that_trips_the_limit_finishes_after_the_callback) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.max_write_buffer = 64 * 1024;
  cfg.write_low_water = 8 * 1024;
  server s(atl::test::threads(1));
  // The client never reads: the timer sends until the queue is past the limit, then the next
  // send drops the connection as a slow consumer (inside the timer's own callback).
  auto id = s.add_listener(cfg, timer_factory(p, 10ms, [p](auto&, connection& c) {
    const std::string chunk(32 * 1024, 'q');
    for (int i = 0; i < 4096; ++i) {  // bounded: 128 MiB at most
      if (c.send(chunk) == send_result::dropped) {
        p->note("dropped at " + std::to_string(i));
        return;
      }
    }
  }));
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  atl::test::bound_client(c, 5s, 4096);
  ASSERT_TRUE(p->wait_closes(1, 5s));
  EXPECT_TRUE(p->wait_note_prefix("dropped at ", 1s));
  EXPECT_TRUE(p->wait_note("after action 1", 1s));
  EXPECT_EQ(p->nth(0).reason, close_reason::slow_consumer);
  s.stop();
  EXPECT_EQ(s.stats().listeners.at(id).closed(close_reason::slow_consumer), 1u);
  EXPECT_EQ(p->lifecycle_violations(), "");
}

TEST(connection_entry, a_throwing_timer_closes_only_its_connection_as_handler_error) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto made = std::make_shared<std::atomic<int>>(0);
  auto id = s.add_listener(loopback_listener(), [p, made](connection&) -> std::unique_ptr<handler> {
    if (made->fetch_add(1) == 0) {
      return std::make_unique<timer_handler>(
          p, 10ms, [](auto&, connection&) { throw std::runtime_error("timer boom"); });
    }
    return std::make_unique<atl::test::echo_handler>();
  });
  s.start();
  auto bad = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(bad.valid());
  ASSERT_TRUE(p->wait_closes(1, 5s));
  EXPECT_EQ(p->nth(0).reason, close_reason::handler_error);
  auto good = client::connect(s.local_endpoint(id));
  EXPECT_TRUE(good.echo("fine", 2s));
  s.stop();
}

TEST(connection_entry, a_timer_never_runs_after_its_connection_ended) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), timer_factory(p, 80ms, [](auto&, connection&) {}));
  s.start();
  {
    auto c = client::connect(s.local_endpoint(id));
    ASSERT_TRUE(c.valid());
    ASSERT_TRUE(p->wait_opens(1, 5s));
  }  // closed by the client at once
  ASSERT_TRUE(p->wait_closes(1, 5s));
  std::this_thread::sleep_for(150ms);  // waiting for an event that must NOT happen
  auto other = client::connect(s.local_endpoint(id));
  EXPECT_TRUE(other.echo("y", 2s));
  other.close();
  s.stop();
  EXPECT_EQ(p->nth(0).calls, (std::vector<std::string>{"open", "close"}));
}

// User code on the io thread outside any entry (its own posted work holding a connection&)
// must not tear the connection down synchronously either.
TEST(connection_entry, a_finish_from_outside_any_entry_is_settled_by_posted_work) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), [p](connection&) -> std::unique_ptr<handler> {
    class h final : public atl::test::echo_handler {
     public:
      using echo_handler::echo_handler;
      void on_data(connection& c, std::span<const std::byte>) override {
        asio::post(c.executor(), [this, &c] {
          c.abort();
          EXPECT_FALSE(c.is_open());
          probe_->note(std::string("still here ") + (closed_ ? "closed" : "open"));
        });
      }
      void on_close(connection& c, close_reason r, std::error_code ec) override {
        closed_ = true;
        echo_handler::on_close(c, r, ec);
      }
      bool closed_ = false;
    };
    return std::make_unique<h>(p);
  });
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.send("go"));
  ASSERT_TRUE(p->wait_closes(1, 5s));
  EXPECT_TRUE(p->wait_note("still here open", 1s));
  s.stop();
  EXPECT_EQ(p->lifecycle_violations(), "");
}

// uWebSockets' rule: the limit applies to what was queued before a send.
TEST(connection_entry, one_message_larger_than_max_write_buffer_goes_out_whole) {
  auto cfg = loopback_listener();
  cfg.max_write_buffer = 64 * 1024;
  cfg.write_low_water = 8 * 1024;
  const std::string big = atl::test::pattern_payload(1 << 20, 3);
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, [big](connection&) -> std::unique_ptr<handler> {
    class h final : public handler {
     public:
      explicit h(std::string b) : big_(std::move(b)) {}
      void on_data(connection& c, std::span<const std::byte>) override {
        EXPECT_NE(c.send(big_), send_result::dropped);
        c.close();
      }
      std::string big_;
    };
    return std::make_unique<h>(big);
  });
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  atl::test::bound_client(c, 10s);
  ASSERT_TRUE(c.send("go"));
  const std::string got = c.read_exact(big.size(), 10s);
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big);
  EXPECT_EQ(c.wait_closed(5s), outcome::eof);
  s.stop();
  EXPECT_EQ(s.stats().listeners.at(id).closed(close_reason::slow_consumer), 0u);
}

TEST(connection_entry, close_with_sends_its_goodbye_after_the_queue_and_reports_the_reason) {
  auto p = std::make_shared<probe>();
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), [p](connection&) -> std::unique_ptr<handler> {
    class h final : public atl::test::echo_handler {
     public:
      using echo_handler::echo_handler;
      void on_data(connection& c, std::span<const std::byte>) override {
        c.send("queued;");
        c.close_with(atl::test::as_bytes("goodbye"), close_reason::slow_consumer);
        EXPECT_FALSE(c.is_open());
        EXPECT_EQ(c.send("late"), send_result::dropped);
      }
    };
    return std::make_unique<h>(p);
  });
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.send("x"));
  EXPECT_EQ(c.read_exact(14, 5s), "queued;goodbye");
  EXPECT_EQ(c.wait_closed(5s), outcome::eof);
  ASSERT_TRUE(p->wait_closes(1, 5s));
  EXPECT_EQ(p->nth(0).reason, close_reason::slow_consumer);
  EXPECT_EQ(p->nth(0).ec, atl::errc::slow_consumer);
  s.stop();
}

}  // namespace
