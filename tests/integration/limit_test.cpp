// The connection limit with retry_count 0 (reject at once, keep accepting), the field-report
// scenario (a full server under a stream of extra clients, a health listener beside it),
// set_max_connections at run time, and suspend/resume.

#include <gtest/gtest.h>

#include <array>
#include <atoll/server.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/limit_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;
using atl::test::clock;
using atl::test::outcome;
using atl::test::to_string;
using atl::test::wait_until;
namespace lim = atl::test::limits;
using lim::verdict;

// ---------------------------------------------------------------------------------------------
// At the limit, retry_count 0

TEST(limit, rejects_immediately_at_limit_when_retry_count_is_zero) {
  constexpr std::size_t n = 4;
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(lim::limit_listener(n), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, n);
  ASSERT_EQ(held.size(), n) << "the first N clients must be served";
  ASSERT_TRUE(lim::wait_active(server, id, n));

  // Client N+1: the server closes it promptly (FIN or RST), it is not left hanging.
  auto extra = lim::connect_only(ep);
  ASSERT_TRUE(extra.valid());
  const auto started = clock::now();
  const auto o = extra.wait_closed(1s);
  EXPECT_TRUE(lim::is_close(o)) << "client N+1 got " << to_string(o) << " instead of a close";
  EXPECT_LT(clock::now() - started, 1s);

  EXPECT_TRUE(lim::wait_for_stats(
      server, id,
      [](const atl::listener_stats& ls) { return ls.rejected(atl::reject_reason::limit) == 1; }))
      << "rejected{limit} = "
      << lim::listener_stats_of(server, id).rejected(atl::reject_reason::limit);

  // The acceptor keeps accepting: client N+2 also gets a definite close.
  auto extra2 = lim::try_echo(ep, "extra\n", 1s);
  EXPECT_EQ(extra2.result, verdict::closed) << lim::to_string(extra2.result);
  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.rejected(atl::reject_reason::limit) == 2;
  }));

  // The limit is exact and the held connections are untouched.
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(ls.active, n);
  EXPECT_EQ(ls.accepted_total, n + 2);
  EXPECT_EQ(ls.waiting, 0u);
  for (auto& c : held) EXPECT_TRUE(c.echo("still here\n", 2s));

  // One of the N leaves: the next client is served.
  held.front().close();
  ASSERT_TRUE(lim::wait_active(server, id, n - 1));
  auto next = lim::try_echo(ep, "next\n", 2s);
  EXPECT_EQ(next.result, verdict::served) << lim::to_string(next.result);
  EXPECT_TRUE(lim::wait_active(server, id, n));

  server.stop(2s);
}

TEST(limit, keeps_accepting_after_many_rejections_in_a_row) {
  constexpr std::size_t n = 2;
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(lim::limit_listener(n), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, n);
  ASSERT_EQ(held.size(), n);

  constexpr int extras = 40;
  int closed = 0;
  for (int i = 0; i < extras; ++i) {
    auto a = lim::try_echo(ep, "x", 2s);
    EXPECT_EQ(a.result, verdict::closed) << "attempt " << i << ": " << lim::to_string(a.result);
    if (a.result == verdict::closed) ++closed;
  }
  EXPECT_EQ(closed, extras);
  EXPECT_TRUE(lim::wait_for_stats(server, id, [&](const atl::listener_stats& ls) {
    return ls.rejected(atl::reject_reason::limit) == std::uint64_t(extras);
  }));
  EXPECT_EQ(lim::listener_stats_of(server, id).active, n);

  // Both held connections leave; two new clients are served.
  held.clear();
  ASSERT_TRUE(lim::wait_active(server, id, 0));
  auto again = lim::hold_clients(ep, n);
  EXPECT_EQ(again.size(), n);
  server.stop(2s);
}

TEST(limit, writes_reject_response_before_closing_at_the_limit) {
  constexpr std::size_t n = 2;
  auto cfg = lim::limit_listener(n);
  cfg.reject_response = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(cfg, lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, n);
  ASSERT_EQ(held.size(), n);

  // The client sends nothing, so the server's close is a FIN after the response.
  auto extra = lim::connect_only(ep);
  ASSERT_TRUE(extra.valid());
  std::string got;
  const auto o = extra.wait_closed(1s, &got);
  EXPECT_EQ(o, outcome::eof) << to_string(o);
  EXPECT_EQ(got, cfg.reject_response);

  // Admitted clients never see it.
  for (auto& c : held) EXPECT_TRUE(c.echo("ping\n"));
  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.rejected(atl::reject_reason::limit) == 1;
  }));
  server.stop(2s);
}

// ---------------------------------------------------------------------------------------------
// The field report: a full server, a stream of extra clients, a health listener beside it.

TEST(limit, gives_every_extra_client_a_definite_outcome_and_keeps_the_health_listener_serving) {
  constexpr std::size_t n = 8;
  atl::server server{lim::limit_server(2)};
  const auto main_id = server.add_listener(lim::limit_listener(n), lim::echo_factory());
  auto health_cfg = lim::limit_listener(4);
  health_cfg.name = "health";
  const auto health_id = server.add_listener(health_cfg, lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(main_id);
  const auto health_ep = server.local_endpoint(health_id);

  auto held = lim::hold_clients(ep, n);
  ASSERT_EQ(held.size(), n);
  ASSERT_TRUE(lim::wait_active(server, main_id, n));

  constexpr auto window = 1500ms;
  constexpr int threads = 3;
  constexpr int max_attempts_per_thread = 400;
  std::atomic<int> served{0}, closed{0}, hung{0}, refused{0}, failed{0};
  std::atomic<int> health_ok{0}, health_bad{0};
  const auto deadline = clock::now() + window;

  std::vector<std::thread> extras;
  for (int t = 0; t < threads; ++t) {
    extras.emplace_back([&, t] {
      for (int i = 0; i < max_attempts_per_thread && clock::now() < deadline; ++i) {
        auto a = lim::try_echo(ep, "extra-" + std::to_string(t) + "\n", 2s);
        switch (a.result) {
          case verdict::served:
            ++served;
            break;
          case verdict::closed:
            ++closed;
            break;
          case verdict::hung:
            ++hung;
            break;
          case verdict::refused:
            ++refused;
            break;
          case verdict::failed:
            ++failed;
            break;
        }
      }
    });
  }
  std::thread health([&] {
    // Probes one after the other: connect, echo a line, half-close, see the server's close.
    for (int i = 0; i < 200 && clock::now() < deadline; ++i) {
      auto a = lim::try_echo(health_ep, "health?\n", 2s);
      bool ok = a.result == verdict::served;
      if (ok) {
        a.socket.shutdown_write();
        ok = lim::is_close(a.socket.wait_closed(2s));
      }
      ok ? ++health_ok : ++health_bad;
      std::this_thread::sleep_for(20ms);  // pacing, not synchronisation
    }
  });

  // Meanwhile the held connections keep echoing.
  int held_rounds = 0, held_failures = 0;
  while (clock::now() < deadline && held_rounds < 100) {
    for (auto& c : held)
      if (!c.echo("held\n", 2s)) ++held_failures;
    ++held_rounds;
    std::this_thread::sleep_for(50ms);  // pacing
  }
  for (auto& t : extras) t.join();
  health.join();

  const int extra_total = served + closed + hung + refused + failed;
  EXPECT_EQ(hung.load(), 0) << "extra clients left hanging (of " << extra_total << ")";
  EXPECT_EQ(served.load(), 0) << "a client beyond max_connections was served";
  EXPECT_EQ(refused.load(), 0) << "the listener stopped listening";
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GE(closed.load(), 30) << "too few extra clients were tried to mean anything";
  EXPECT_EQ(health_bad.load(), 0) << "health probes failed (of " << health_ok + health_bad << ")";
  EXPECT_GE(health_ok.load(), 10);
  EXPECT_EQ(held_failures, 0);
  EXPECT_GE(held_rounds, 1);

  // Every closed client was taken from accept(2) and rejected for the limit.
  EXPECT_TRUE(lim::wait_for_stats(server, main_id,
                                  [&](const atl::listener_stats& ls) {
                                    return ls.rejected(atl::reject_reason::limit) ==
                                           std::uint64_t(closed.load());
                                  }))
      << "rejected{limit} = "
      << lim::listener_stats_of(server, main_id).rejected(atl::reject_reason::limit)
      << ", clients closed = " << closed.load();
  auto ls = lim::listener_stats_of(server, main_id);
  EXPECT_EQ(ls.active, n);
  EXPECT_EQ(lim::listener_stats_of(server, health_id).rejected_total,
            (std::array<std::uint64_t, atl::reject_reason_count>{}));

  // Held connections still echo after the storm; then they leave and a new client is served
  // at once.
  for (auto& c : held) EXPECT_TRUE(c.echo("after\n", 2s));
  held.clear();
  ASSERT_TRUE(lim::wait_active(server, main_id, 0));
  const auto t0 = clock::now();
  auto fresh = lim::try_echo(ep, "fresh\n", 1s);
  EXPECT_EQ(fresh.result, verdict::served) << lim::to_string(fresh.result);
  EXPECT_LT(clock::now() - t0, 1s);

  server.stop(2s);
}

// ---------------------------------------------------------------------------------------------
// set_max_connections

TEST(limit, lowering_max_connections_keeps_live_connections_and_refuses_new_ones) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(lim::limit_listener(4), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 4);
  ASSERT_EQ(held.size(), 4u);

  server.set_max_connections(id, 2);
  EXPECT_EQ(lim::listener_stats_of(server, id).max_connections, 2u);

  // Nobody is cut off.
  for (auto& c : held) EXPECT_TRUE(c.echo("still\n"));
  EXPECT_EQ(lim::listener_stats_of(server, id).active, 4u);

  // New clients are refused while active >= 2 ...
  auto a = lim::try_echo(ep, "new\n", 2s);
  EXPECT_EQ(a.result, verdict::closed) << lim::to_string(a.result);

  held.pop_back();  // active 3
  ASSERT_TRUE(lim::wait_active(server, id, 3));
  auto b = lim::try_echo(ep, "new\n", 2s);
  EXPECT_EQ(b.result, verdict::closed) << lim::to_string(b.result);

  held.pop_back();  // active 2
  ASSERT_TRUE(lim::wait_active(server, id, 2));
  auto c = lim::try_echo(ep, "new\n", 2s);
  EXPECT_EQ(c.result, verdict::closed) << lim::to_string(c.result);

  // ... and served once active falls below the new limit.
  held.pop_back();  // active 1
  ASSERT_TRUE(lim::wait_active(server, id, 1));
  auto d = lim::try_echo(ep, "new\n", 2s);
  EXPECT_EQ(d.result, verdict::served) << lim::to_string(d.result);
  auto e = lim::try_echo(ep, "new\n", 2s);
  EXPECT_EQ(e.result, verdict::closed) << "the lowered limit was exceeded";

  EXPECT_TRUE(lim::wait_for_stats(server, id, [](const atl::listener_stats& ls) {
    return ls.rejected(atl::reject_reason::limit) == 4;
  }));
  for (auto& h : held) EXPECT_TRUE(h.echo("last\n"));
  server.stop(2s);
}

TEST(limit, raising_max_connections_serves_new_clients_at_once) {
  atl::server server{lim::limit_server(2)};
  const auto id = server.add_listener(lim::limit_listener(2), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);

  auto held = lim::hold_clients(ep, 2);
  ASSERT_EQ(held.size(), 2u);
  auto a = lim::try_echo(ep, "x", 2s);
  EXPECT_EQ(a.result, verdict::closed);

  server.set_max_connections(id, 5);
  auto more = lim::hold_clients(ep, 3);
  EXPECT_EQ(more.size(), 3u);
  auto b = lim::try_echo(ep, "x", 2s);
  EXPECT_EQ(b.result, verdict::closed) << "the raised limit was exceeded";
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_EQ(ls.active, 5u);
  EXPECT_EQ(ls.max_connections, 5u);
  server.stop(2s);
}

TEST(limit, set_max_connections_refuses_zero) {
  atl::server server{lim::limit_server(1)};
  const auto id = server.add_listener(lim::limit_listener(2), lim::echo_factory());
  server.start();
  EXPECT_THROW(server.set_max_connections(id, 0), std::invalid_argument);
  EXPECT_EQ(lim::listener_stats_of(server, id).max_connections, 2u);
  server.stop(2s);
}

// ---------------------------------------------------------------------------------------------
// suspend / resume

TEST(limit, suspend_refuses_new_clients_and_keeps_live_connections_and_resume_reuses_the_port) {
  atl::server server{lim::limit_server(2)};
  auto cfg = lim::limit_listener(8);
  ASSERT_EQ(cfg.port, 0) << "the test is about a listener configured with port 0";
  const auto id = server.add_listener(cfg, lim::echo_factory());
  const auto other = server.add_listener(lim::limit_listener(8), lim::echo_factory());
  server.start();
  const auto ep = server.local_endpoint(id);
  const auto other_ep = server.local_endpoint(other);

  auto held = lim::hold_clients(ep, 2);
  ASSERT_EQ(held.size(), 2u);

  server.suspend(id);
  auto ls = lim::listener_stats_of(server, id);
  EXPECT_TRUE(ls.suspended);
  EXPECT_TRUE(server.local_endpoints(id).empty());
  EXPECT_FALSE(lim::listener_stats_of(server, other).suspended);

  // New clients are refused by the kernel (the listen socket is closed), never served.
  for (int i = 0; i < 3; ++i) {
    auto a = lim::try_echo(ep, "suspended?\n", 1s);
    EXPECT_TRUE(a.result == verdict::refused || a.result == verdict::closed)
        << "attempt " << i << ": " << lim::to_string(a.result);
  }
  // Live connections and the other listener carry on.
  for (auto& c : held) EXPECT_TRUE(c.echo("live\n"));
  auto o = lim::try_echo(other_ep, "other\n", 2s);
  EXPECT_EQ(o.result, verdict::served) << lim::to_string(o.result);
  EXPECT_EQ(lim::listener_stats_of(server, id).active, 2u);

  // Suspending twice is harmless.
  server.suspend(id);
  EXPECT_TRUE(lim::listener_stats_of(server, id).suspended);

  server.resume(id);
  EXPECT_FALSE(lim::listener_stats_of(server, id).suspended);
  const auto again = server.local_endpoint(id);
  EXPECT_EQ(again.port(), ep.port()) << "resume must bind the same port, also after port 0";
  auto fresh = lim::try_echo(again, "back\n", 2s);
  EXPECT_EQ(fresh.result, verdict::served) << lim::to_string(fresh.result);
  for (auto& c : held) EXPECT_TRUE(c.echo("live\n"));
  EXPECT_TRUE(lim::wait_active(server, id, 3));

  server.stop(2s);
}

TEST(limit, resume_with_error_code_reports_success) {
  atl::server server{lim::limit_server(1)};
  const auto id = server.add_listener(lim::limit_listener(2), lim::echo_factory());
  server.start();
  const auto port = server.local_endpoint(id).port();
  server.suspend(id);
  std::error_code ec = make_error_code(std::errc::io_error);
  server.resume(id, ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(server.local_endpoint(id).port(), port);
  auto a = lim::try_echo(server.local_endpoint(id), "x", 2s);
  EXPECT_EQ(a.result, verdict::served) << lim::to_string(a.result);
  server.stop(2s);
}

}  // namespace
