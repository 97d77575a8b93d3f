// Slot accounting: however a connection ends (peer close or reset, read timeout, handler
// exception, abort, local close, slow consumer, shutdown), its slot comes back exactly once;
// and a stampede of random connects/echoes/closes/resets at the limit leaves `active` equal to
// the connections still open, with new clients served.

#include <gtest/gtest.h>

#include <algorithm>
#include <atoll/server.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/limit_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::close_reason;
using atl::test::client;
using atl::test::clock;
using atl::test::outcome;
using atl::test::to_string;
namespace lim = atl::test::limits;
using lim::verdict;

std::vector<client> open_clients(const atl::endpoint& ep, std::size_t n) {
  return lim::hold_clients(ep, n);
}

TEST(stampede, returns_every_slot_whatever_ends_the_connection) {
  atl::server server{lim::limit_server(2)};
  auto main_cfg = lim::limit_listener(64);
  main_cfg.max_write_buffer = 64 * 1024;
  main_cfg.write_low_water = 16 * 1024;
  main_cfg.socket.send_buffer_size = 16 * 1024;
  const auto main_id = server.add_listener(main_cfg, lim::scripted_factory());
  auto idle_cfg = lim::limit_listener(16);
  idle_cfg.read_timeout = 100ms;
  const auto idle_id = server.add_listener(idle_cfg, lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(main_id);
  const auto idle_ep = server.local_endpoint(idle_id);

  // Open everything first (each client echoed once, so it is admitted), then end them in an
  // interleaved mix.
  auto peer_close = open_clients(ep, 4);
  auto peer_reset = open_clients(ep, 4);
  auto throwers = open_clients(ep, 3);
  auto aborters = open_clients(ep, 3);
  auto closers = open_clients(ep, 2);
  auto flooded = open_clients(ep, 2);
  auto survivors = open_clients(ep, 3);
  auto idle = open_clients(idle_ep, 3);
  ASSERT_EQ(peer_close.size() + peer_reset.size() + throwers.size() + aborters.size() +
                closers.size() + flooded.size() + survivors.size(),
            21u);
  ASSERT_EQ(idle.size(), 3u);
  ASSERT_TRUE(lim::wait_active(server, main_id, 21));

  for (std::size_t i = 0; i < 4; ++i) {
    peer_close[i].close();
    peer_reset[i].reset();
    if (i < 3) {
      ASSERT_TRUE(throwers[i].send("THROW"));
      ASSERT_TRUE(aborters[i].send("ABORT"));
    }
    if (i < 2) {
      ASSERT_TRUE(closers[i].send("CLOSE"));
      ASSERT_TRUE(flooded[i].send("FLOOD"));  // and never read
    }
  }
  for (auto& c : throwers) EXPECT_TRUE(lim::is_close(c.wait_closed(2s)));
  for (auto& c : aborters) {
    const auto o = c.wait_closed(2s);
    EXPECT_EQ(o, outcome::reset) << "abort() should reset, got " << to_string(o);
  }
  for (auto& c : closers) {
    const auto o = c.wait_closed(2s);
    EXPECT_EQ(o, outcome::eof) << "close() should end with a FIN, got " << to_string(o);
  }
  // Idle clients time out (100 ms) and are closed by the default on_timeout.
  for (auto& c : idle) EXPECT_TRUE(lim::is_close(c.wait_closed(2s)));

  EXPECT_TRUE(lim::wait_for_stats(server, main_id, [](const atl::listener_stats& ls) {
    return ls.closed(close_reason::slow_consumer) == 2;
  })) << "flooded clients were not closed as slow consumers";
  for (auto& c : flooded) c.close();

  // Only the survivors hold slots; every other slot came back exactly once.
  EXPECT_TRUE(lim::wait_active(server, main_id, 3))
      << "active = " << lim::listener_stats_of(server, main_id).active;
  EXPECT_TRUE(lim::wait_active(server, idle_id, 0))
      << "idle active = " << lim::listener_stats_of(server, idle_id).active;
  EXPECT_TRUE(lim::wait_for_stats(
      server, main_id, [](const atl::listener_stats& ls) { return lim::closed_sum(ls) == 18; }));
  EXPECT_TRUE(lim::wait_for_stats(
      server, idle_id, [](const atl::listener_stats& ls) { return lim::closed_sum(ls) == 3; }));
  {
    auto ls = lim::listener_stats_of(server, main_id);
    EXPECT_EQ(ls.closed(close_reason::peer_closed), 8u);
    EXPECT_EQ(ls.closed(close_reason::handler_error), 3u);
    EXPECT_EQ(ls.closed(close_reason::local_close), 5u);
    EXPECT_EQ(ls.closed(close_reason::slow_consumer), 2u);
    EXPECT_EQ(ls.closed(close_reason::timeout), 0u);
    EXPECT_EQ(ls.closed(close_reason::shutdown), 0u);
    EXPECT_EQ(lim::closed_sum(ls), 18u);
    EXPECT_EQ(ls.accepted_total, 21u);
    EXPECT_EQ(lim::rejected_sum(ls), 0u);
    auto is = lim::listener_stats_of(server, idle_id);
    EXPECT_EQ(is.closed(close_reason::timeout), 3u);
    EXPECT_EQ(lim::closed_sum(is), 3u);
  }
  for (auto& c : survivors) EXPECT_TRUE(c.echo("alive\n"));

  // Shutdown ends the survivors; afterwards nothing is active.
  server.stop(2s);
  for (auto& c : survivors) EXPECT_TRUE(lim::is_close(c.wait_closed(2s)));
  auto ls = lim::listener_stats_of(server, main_id);
  EXPECT_EQ(ls.active, 0u);
  EXPECT_EQ(ls.closed(close_reason::shutdown), 3u);
  EXPECT_EQ(lim::closed_sum(ls), ls.accepted_total);
  EXPECT_EQ(lim::listener_stats_of(server, idle_id).active, 0u);
}

TEST(stampede, returns_slots_at_the_limit_so_a_full_listener_serves_again) {
  // Same kinds of ending, but at a limit of 2: a leaked slot would lock the listener.
  atl::server server{lim::limit_server(2)};
  auto cfg = lim::limit_listener(2);
  cfg.max_write_buffer = 64 * 1024;
  cfg.write_low_water = 16 * 1024;
  cfg.socket.send_buffer_size = 16 * 1024;
  const auto id = server.add_listener(cfg, lim::scripted_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  const char* endings[] = {"close", "reset", "THROW", "ABORT", "CLOSE", "FLOOD"};
  for (int round = 0; round < 3; ++round) {
    for (const std::string e : endings) {
      auto pair = lim::hold_clients(ep, 2);
      ASSERT_EQ(pair.size(), 2u) << "round " << round << " before " << e << ": slot leaked";
      for (auto& c : pair) {
        if (e == "close")
          c.close();
        else if (e == "reset")
          c.reset();
        else
          ASSERT_TRUE(c.send(e));
      }
      if (e == "FLOOD") {
        EXPECT_TRUE(lim::wait_active(server, id, 0)) << "slow consumers were not closed";
      } else {
        for (auto& c : pair)
          if (c.valid()) {
            EXPECT_TRUE(lim::is_close(c.wait_closed(2s))) << e;
          }
        EXPECT_TRUE(lim::wait_active(server, id, 0)) << "after " << e;
      }
    }
  }
  EXPECT_TRUE(lim::wait_for_stats(
      server, id, [](const atl::listener_stats& ls) { return lim::closed_sum(ls) == 36; }))
      << "closed_total sums to " << lim::closed_sum(lim::listener_stats_of(server, id));
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(ls.accepted_total, 36u);
  EXPECT_EQ(lim::rejected_sum(ls), 0u);
  server.stop(2s);
}

// ---------------------------------------------------------------------------------------------
// Stampede

struct stampede_result {
  std::atomic<int> served{0};         // new clients admitted
  std::atomic<int> rejected{0};       // new clients closed by the server (limit)
  std::atomic<int> hung{0};           // any operation without a definite outcome in time
  std::atomic<int> other{0};          // refused / failed
  std::atomic<int> held_failures{0};  // an admitted client that stopped echoing
  std::atomic<int> held_now{0};       // admitted and not yet closed by us
  std::atomic<int> held_max{0};
};

/// One stampeding thread: random connect / echo / close / reset until `deadline` or
/// `max_iterations`. Clients it still holds at the end are moved to `left_open`.
void stampede_thread(const atl::endpoint& ep, unsigned seed, clock::time_point deadline,
                     int max_iterations, bool server_may_stop, stampede_result& r,
                     std::vector<client>& left_open) {
  std::mt19937 rng(seed);
  std::vector<client> mine;
  auto drop = [&](std::size_t i, bool reset) {
    --r.held_now;  // before the close: the server still counts it, so held_now <= active
    reset ? mine[i].reset() : mine[i].close();
    mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(i));
  };
  for (int i = 0; i < max_iterations && clock::now() < deadline; ++i) {
    const int action = static_cast<int>(rng() % 10);
    if (mine.empty() || action < 4) {
      auto a = lim::try_echo(ep, "s\n", 2s);
      switch (a.result) {
        case verdict::served: {
          mine.push_back(std::move(a.socket));
          const int now = ++r.held_now;
          int prev = r.held_max.load();
          while (now > prev && !r.held_max.compare_exchange_weak(prev, now)) {
          }
          ++r.served;
          break;
        }
        case verdict::closed:
          ++r.rejected;
          break;
        case verdict::hung:
          ++r.hung;
          break;
        default:
          ++r.other;
          break;
      }
    } else {
      const std::size_t k = rng() % mine.size();
      if (action < 7) {
        if (!mine[k].echo("e\n", 2s)) {
          if (!server_may_stop) ++r.held_failures;
          drop(k, false);
        }
      } else {
        drop(k, action == 9);
      }
    }
  }
  for (auto& c : mine) left_open.push_back(std::move(c));
}

TEST(stampede, leaves_active_equal_to_open_connections_after_a_stampede_at_the_limit) {
  constexpr std::size_t n = 8;
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(lim::limit_listener(n), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  constexpr int threads = 4;
  stampede_result r;
  std::vector<std::vector<client>> left(threads);
  const auto deadline = clock::now() + 1500ms;
  {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back(stampede_thread, std::cref(ep), 1234u + unsigned(t), deadline, 2000, false,
                        std::ref(r), std::ref(left[std::size_t(t)]));
    for (auto& t : pool) t.join();
  }
  std::vector<client> open;
  for (auto& v : left)
    for (auto& c : v) open.push_back(std::move(c));

  EXPECT_EQ(r.hung.load(), 0);
  EXPECT_EQ(r.other.load(), 0);
  EXPECT_EQ(r.held_failures.load(), 0);
  EXPECT_LE(r.held_max.load(), int(n)) << "more clients were served at once than the limit";
  EXPECT_GE(r.served.load(), int(n)) << "the stampede did too little to mean anything";
  EXPECT_GE(r.rejected.load(), 1) << "the stampede never reached the limit";

  EXPECT_TRUE(lim::wait_active(server, id, open.size()))
      << "active = " << lim::listener_stats_of(server, id).active << ", open = " << open.size();
  EXPECT_TRUE(lim::wait_for_stats(
      server, id,
      [&](const atl::listener_stats& ls) {
        return ls.accepted_total == std::uint64_t(r.served + r.rejected) &&
               ls.rejected(atl::reject_reason::limit) == std::uint64_t(r.rejected.load());
      }))
      << "accepted_total = " << lim::listener_stats_of(server, id).accepted_total
      << ", served + rejected = " << r.served + r.rejected;

  // Everything still open echoes; a new client is served once there is room.
  for (auto& c : open) EXPECT_TRUE(c.echo("after\n"));
  if (open.size() == n) {
    open.pop_back();
    ASSERT_TRUE(lim::wait_active(server, id, n - 1));
  }
  auto fresh = lim::try_echo(ep, "fresh\n", 1s);
  EXPECT_EQ(fresh.result, verdict::served) << lim::to_string(fresh.result);
  fresh.socket.close();

  open.clear();
  EXPECT_TRUE(lim::wait_active(server, id, 0))
      << "active = " << lim::listener_stats_of(server, id).active << " after every client left";
  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return lim::closed_sum(ls) == ls.accepted_total - lim::rejected_sum(ls);
  })) << "closed_total does not add up to the admitted connections";
  server.stop(2s);
}

TEST(stampede, stops_cleanly_in_the_middle_of_a_stampede) {
  constexpr std::size_t n = 8;
  atl::server server{lim::limit_server(2)};
  auto cfg = lim::limit_listener(n);
  cfg.shutdown_timeout = 1s;
  const auto id = server.add_listener(cfg, lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  constexpr int threads = 4;
  stampede_result r;
  std::vector<std::vector<client>> left(threads);
  const auto deadline = clock::now() + 1500ms;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back(stampede_thread, std::cref(ep), 99u + unsigned(t), deadline, 2000, true,
                      std::ref(r), std::ref(left[std::size_t(t)]));

  // Stop once the stampede is under way (some clients served and some rejected).
  EXPECT_TRUE(atl::test::wait_until([&] { return r.served >= 4 && r.rejected >= 1; }, 1500ms));
  const auto t0 = clock::now();
  server.stop(1s);
  const auto stop_took = clock::now() - t0;
  EXPECT_FALSE(server.running());
  EXPECT_LT(stop_took, 3s);

  for (auto& t : pool) t.join();
  EXPECT_EQ(r.hung.load(), 0) << "a client hung while the server stopped";
  EXPECT_LE(r.held_max.load(), int(n));

  // Clients still held by the threads were closed by the drain.
  for (auto& v : left)
    for (auto& c : v) EXPECT_TRUE(lim::is_close(c.wait_closed(2s)));
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(ls.active, 0u);
  EXPECT_EQ(ls.waiting, 0u);
  EXPECT_EQ(lim::closed_sum(ls), ls.accepted_total - lim::rejected_sum(ls));

  // And the port is closed.
  auto late = lim::try_echo(ep, "late\n", 1s);
  EXPECT_EQ(late.result, verdict::refused) << lim::to_string(late.result);
}

}  // namespace
