// The waiting room (retry_count > 0): admission the moment a slot frees, oldest first, expiry
// after retry_count x retry_wait, a bounded room, other listeners unaffected, and the waiting
// room's interplay with set_max_connections, suspend and stop.

#include <gtest/gtest.h>

#include <atoll/server.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "support/limit_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;
using atl::test::clock;
using atl::test::outcome;
using atl::test::to_string;
namespace lim = atl::test::limits;
using lim::verdict;

/// A listener whose waiters would wait long (3 x 2 s) unless a slot frees.
atl::listener_config patient_listener(std::size_t max_connections, std::size_t max_waiting = 8) {
  return lim::limit_listener(max_connections, 3, 2000ms, max_waiting);
}

/// Connects a waiter that sends `tag` at once (the kernel buffers it until admission, when the
/// echo handler answers), and waits until the server counts `expected_waiting` waiters.
client connect_waiter(const atl::server& server, atl::listener_id id, const atl::endpoint& ep,
                      std::string_view tag, std::uint64_t expected_waiting) {
  auto c = lim::connect_only(ep);
  EXPECT_TRUE(c.valid());
  if (!c.valid()) return c;
  EXPECT_TRUE(c.send(tag));
  EXPECT_TRUE(lim::wait_waiting(server, id, expected_waiting))
      << "waiting = " << lim::listener_stats_of(server, id).waiting << ", expected "
      << expected_waiting;
  return c;
}

/// True if nothing arrives on `c` for a short while (a waiter must not be served).
bool silent_for(client& c, std::chrono::milliseconds d) {
  std::string got;
  return c.read_some(got, d) == outcome::timeout;
}

TEST(retry, admits_a_waiter_as_soon_as_a_slot_frees_not_at_the_next_retry_tick) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(patient_listener(2), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 2);
  ASSERT_EQ(held.size(), 2u);

  auto waiter = connect_waiter(server, id, ep, "w1\n", 1);
  ASSERT_TRUE(waiter.valid());
  EXPECT_TRUE(silent_for(waiter, 100ms)) << "a waiter was served while the listener was full";
  EXPECT_EQ(lim::listener_stats_of(server, id).active, 2u);

  // Free a slot. A tick-based admission would take up to retry_wait (2 s); the bound here is 1 s.
  held.front().close();
  EXPECT_EQ(waiter.read_exact(3, 1s), "w1\n") << "the waiter was not admitted within 1 s";

  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.admitted_after_wait_total == 1 && ls.waiting == 0 && ls.active == 2;
  }));
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(lim::rejected_sum(ls), 0u);
  EXPECT_EQ(ls.accepted_total, 3u);
  EXPECT_TRUE(waiter.echo("admitted\n"));
  server.stop(2s);
}

TEST(retry, admits_waiters_oldest_first) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(patient_listener(1), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 1);
  ASSERT_EQ(held.size(), 1u);

  // Each waiter is in the room before the next connects, so the server saw them in order.
  std::vector<client> waiters;
  for (int i = 1; i <= 3; ++i)
    waiters.push_back(connect_waiter(server, id, ep, std::to_string(i), std::uint64_t(i)));
  ASSERT_EQ(waiters.size(), 3u);

  held.front().close();
  EXPECT_EQ(waiters[0].read_exact(1, 1s), "1") << "the oldest waiter was not admitted first";
  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.admitted_after_wait_total == 1 && ls.waiting == 2 && ls.active == 1;
  }));
  EXPECT_TRUE(silent_for(waiters[1], 50ms));
  EXPECT_TRUE(silent_for(waiters[2], 50ms));

  waiters[0].close();
  EXPECT_EQ(waiters[1].read_exact(1, 1s), "2") << "the second waiter was not admitted next";
  EXPECT_TRUE(silent_for(waiters[2], 50ms));

  waiters[1].close();
  EXPECT_EQ(waiters[2].read_exact(1, 1s), "3");

  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.admitted_after_wait_total == 3 && ls.waiting == 0 && ls.active == 1;
  }));
  EXPECT_EQ(lim::rejected_sum(lim::listener_stats_of(server, id)), 0u);
  server.stop(2s);
}

TEST(retry, closes_a_waiter_without_a_slot_after_retry_count_times_retry_wait) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(lim::limit_listener(1, 3, 100ms), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 1);
  ASSERT_EQ(held.size(), 1u);

  const auto started = clock::now();  // before connect: the server's wait is no longer than this
  auto waiter = lim::connect_only(ep);
  ASSERT_TRUE(waiter.valid());
  ASSERT_TRUE(waiter.send("w"));
  std::string got;
  const auto o = waiter.wait_closed(3s, &got);
  const auto waited = clock::now() - started;

  EXPECT_TRUE(lim::is_close(o)) << "the waiter got " << to_string(o) << " instead of a close";
  EXPECT_EQ(got, "") << "an expired waiter was served";
  EXPECT_GE(waited, 250ms) << "closed before retry_count x retry_wait (300 ms) had passed";
  EXPECT_LT(waited, 2s) << "the waiter was kept far beyond retry_count x retry_wait";

  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.rejected(atl::reject_reason::wait_expired) == 1 && ls.waiting == 0;
  }));
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(ls.admitted_after_wait_total, 0u);
  EXPECT_EQ(ls.rejected(atl::reject_reason::limit), 0u);
  EXPECT_EQ(ls.active, 1u);
  EXPECT_TRUE(held.front().echo("held\n"));
  server.stop(2s);
}

TEST(retry, rejects_at_once_when_the_waiting_room_is_full) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(patient_listener(1, /*max_waiting=*/2), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 1);
  ASSERT_EQ(held.size(), 1u);
  auto w1 = connect_waiter(server, id, ep, "1", 1);
  auto w2 = connect_waiter(server, id, ep, "2", 2);

  auto overflow = lim::connect_only(ep);
  ASSERT_TRUE(overflow.valid());
  const auto o = overflow.wait_closed(1s);
  EXPECT_TRUE(lim::is_close(o)) << "overflow got " << to_string(o) << " instead of a prompt close";

  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.rejected(atl::reject_reason::waiting_room_full) == 1;
  }));
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(ls.waiting, 2u);
  EXPECT_EQ(ls.rejected(atl::reject_reason::limit), 0u);

  // The room still works: a freed slot goes to the oldest waiter.
  held.front().close();
  EXPECT_EQ(w1.read_exact(1, 1s), "1");
  EXPECT_TRUE(silent_for(w2, 50ms));
  server.stop(2s);
}

TEST(retry, serves_clients_of_another_listener_while_sockets_wait) {
  atl::server server{lim::limit_server(2)};
  const auto busy = server.add_listener(patient_listener(1), lim::echo_factory());
  const auto free_id = server.add_listener(lim::limit_listener(4), lim::echo_factory());
  server.start();
  const auto busy_ep = server.local_endpoint(busy);
  const auto free_ep = server.local_endpoint(free_id);

  auto held = lim::hold_clients(busy_ep, 1);
  ASSERT_EQ(held.size(), 1u);
  std::vector<client> waiters;
  for (int i = 1; i <= 3; ++i)
    waiters.push_back(connect_waiter(server, busy, busy_ep, "w", std::uint64_t(i)));

  // The other listener answers at once, several times over, while the sockets wait.
  for (int round = 0; round < 3; ++round) {
    auto others = lim::hold_clients(free_ep, 4, 1s);
    EXPECT_EQ(others.size(), 4u) << "round " << round;
    for (auto& c : others) EXPECT_TRUE(c.echo("again\n", 1s));
    others.clear();
    EXPECT_TRUE(lim::wait_active(server, free_id, 0));
  }
  auto ls = lim::listener_stats_of(server, busy);
  EXPECT_EQ(ls.waiting, 3u);
  EXPECT_EQ(ls.active, 1u);
  EXPECT_EQ(lim::rejected_sum(lim::listener_stats_of(server, free_id)), 0u);
  EXPECT_TRUE(held.front().echo("held\n"));
  server.stop(2s);
}

TEST(retry, raising_max_connections_admits_waiters_at_once) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(patient_listener(1), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 1);
  ASSERT_EQ(held.size(), 1u);
  auto w1 = connect_waiter(server, id, ep, "1", 1);
  auto w2 = connect_waiter(server, id, ep, "2", 2);
  auto w3 = connect_waiter(server, id, ep, "3", 3);

  server.set_max_connections(id, 3);
  EXPECT_EQ(w1.read_exact(1, 1s), "1") << "raising the limit did not admit the oldest waiter";
  EXPECT_EQ(w2.read_exact(1, 1s), "2") << "raising the limit did not admit the second waiter";
  EXPECT_TRUE(silent_for(w3, 50ms)) << "more waiters admitted than the new limit allows";
  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.admitted_after_wait_total == 2 && ls.waiting == 1 && ls.active == 3 &&
           ls.max_connections == 3;
  }));
  server.stop(2s);
}

TEST(retry, admits_the_next_waiter_when_a_waiting_client_has_left) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(patient_listener(1), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 1);
  ASSERT_EQ(held.size(), 1u);
  auto gone = connect_waiter(server, id, ep, "g", 1);
  auto w = connect_waiter(server, id, ep, "w", 2);
  gone.reset();  // the oldest waiter gives up (RST) while waiting

  // Whether the dead waiter is dropped at once or admitted and closed, the live one gets the
  // slot promptly and the dead one does not keep it.
  held.front().close();
  EXPECT_EQ(w.read_exact(1, 1s), "w");
  EXPECT_TRUE(lim::wait_for_stats(
      server, id, [](const atl::listener_stats& ls) { return ls.active == 1 && ls.waiting == 0; }))
      << "active = " << lim::listener_stats_of(server, id).active;
  server.stop(2s);
}

TEST(retry, stop_rejects_waiting_sockets_at_once) {
  atl::server server{lim::limit_server(2)};
  auto cfg = lim::limit_listener(1, 3, 5000ms);
  cfg.shutdown_timeout = 5s;
  const auto id = server.add_listener(cfg, lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 1);
  ASSERT_EQ(held.size(), 1u);
  auto w1 = connect_waiter(server, id, ep, "1", 1);
  auto w2 = connect_waiter(server, id, ep, "2", 2);

  const auto t0 = clock::now();
  server.stop(5s);
  EXPECT_LT(clock::now() - t0, 3s) << "stop waited for the waiting sockets";

  for (auto* c : {&w1, &w2}) {
    std::string got;
    const auto o = c->wait_closed(1s, &got);
    EXPECT_TRUE(lim::is_close(o)) << to_string(o);
    EXPECT_EQ(got, "") << "a waiter was admitted during the drain";
  }
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(ls.rejected(atl::reject_reason::shutdown), 2u);
  EXPECT_EQ(ls.waiting, 0u);
  EXPECT_EQ(ls.active, 0u);
}

TEST(retry, suspend_rejects_waiting_sockets_and_keeps_live_connections) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(patient_listener(1), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 1);
  ASSERT_EQ(held.size(), 1u);
  auto w1 = connect_waiter(server, id, ep, "1", 1);

  server.suspend(id);
  const auto o = w1.wait_closed(1s);
  EXPECT_TRUE(lim::is_close(o)) << to_string(o);
  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.waiting == 0 && ls.rejected(atl::reject_reason::shutdown) == 1;
  }));
  EXPECT_TRUE(held.front().echo("live\n"));
  server.resume(id);
  EXPECT_TRUE(
      lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) { return !ls.suspended; }));
  server.stop(2s);
}

}  // namespace
