// Unit tests of detail::rate_limited_counter: at most one report per interval, carrying every
// occurrence since the last one, with explicit time points (no clock, no sleeping).
#include "rate_limited_log.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

using atl::detail::rate_limited_counter;
using namespace std::chrono_literals;
using time_point = std::chrono::steady_clock::time_point;

// An arbitrary start well after the clock's epoch.
const time_point t0 = time_point{} + 1h;

TEST(rate_limited_counter, the_first_hit_is_reported_at_once) {
  rate_limited_counter c;
  EXPECT_EQ(c.hit(t0, 1s), 1u);
}

TEST(rate_limited_counter, hits_within_the_interval_are_held_and_reported_together_after_it) {
  rate_limited_counter c;
  ASSERT_EQ(c.hit(t0, 1s), 1u);
  EXPECT_EQ(c.hit(t0 + 1ms, 1s), 0u);
  EXPECT_EQ(c.hit(t0 + 500ms, 1s), 0u);
  EXPECT_EQ(c.hit(t0 + 999ms, 1s), 0u);
  // Due exactly one interval after the last report; the report carries this hit too.
  EXPECT_EQ(c.hit(t0 + 1s, 1s), 4u);
  EXPECT_EQ(c.hit(t0 + 1s, 1s), 0u);
}

TEST(rate_limited_counter, a_hit_can_count_several_occurrences) {
  rate_limited_counter c;
  EXPECT_EQ(c.hit(t0, 1s, 5), 5u);
  EXPECT_EQ(c.hit(t0 + 1ms, 1s, 7), 0u);
  EXPECT_EQ(c.due(t0 + 2s, 1s), 7u);
}

TEST(rate_limited_counter, due_reports_the_last_burst_once_the_interval_has_passed) {
  rate_limited_counter c;
  ASSERT_EQ(c.hit(t0, 1s), 1u);
  ASSERT_EQ(c.hit(t0 + 10ms, 1s), 0u);
  ASSERT_EQ(c.hit(t0 + 20ms, 1s), 0u);
  EXPECT_EQ(c.due(t0 + 900ms, 1s), 0u);  // the periodic flush, too early
  EXPECT_EQ(c.due(t0 + 1s, 1s), 2u);
  EXPECT_EQ(c.due(t0 + 5s, 1s), 0u);  // nothing left
}

TEST(rate_limited_counter, due_with_nothing_pending_does_not_start_an_interval) {
  rate_limited_counter c;
  EXPECT_EQ(c.due(t0, 1s), 0u);
  // No report was made at t0, so a hit just after it is reported at once.
  EXPECT_EQ(c.hit(t0 + 1ms, 1s), 1u);
}

TEST(rate_limited_counter, the_interval_restarts_at_each_report) {
  rate_limited_counter c;
  ASSERT_EQ(c.hit(t0, 1s), 1u);
  ASSERT_EQ(c.hit(t0 + 3s, 1s), 1u);  // long after: reported at once, next due at t0 + 4s
  EXPECT_EQ(c.hit(t0 + 3500ms, 1s), 0u);
  EXPECT_EQ(c.hit(t0 + 4s, 1s), 2u);
}

TEST(rate_limited_counter, a_zero_interval_reports_every_hit) {
  rate_limited_counter c;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.hit(t0, 0s), 1u);
}

TEST(rate_limited_counter, every_hit_is_reported_exactly_once_across_threads) {
  constexpr int threads = 3;
  constexpr int rounds = 20000;
  rate_limited_counter c;
  std::atomic<std::uint64_t> reported{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) {
        reported.fetch_add(c.hit(t0 + std::chrono::microseconds(i), 1ms));
      }
    });
  }
  for (auto& th : pool) th.join();
  reported.fetch_add(c.due(t0 + 1h, 1ms));
  EXPECT_EQ(reported.load(), static_cast<std::uint64_t>(threads) * rounds);
}

}  // namespace
