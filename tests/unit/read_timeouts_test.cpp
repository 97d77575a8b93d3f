// Unit tests of detail::read_timeouts, the part that needs no connection: one FIFO per
// distinct duration. touch(), remove() and the timer take a connection_impl (an element of the
// FIFOs, called back through on_read_timeout()), so they are covered by the integration tests
// of read timeouts, not here.
#include "read_timeouts.hpp"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <vector>

namespace {

using atl::detail::read_timeouts;
using atl::detail::timeout_queue;
using namespace std::chrono_literals;

TEST(read_timeouts, a_zero_or_negative_duration_means_no_timeout_and_no_queue) {
  asio::io_context io;
  read_timeouts rt(io.get_executor());
  EXPECT_EQ(rt.queue_for(0ms), nullptr);
  EXPECT_EQ(rt.queue_for(-5ms), nullptr);
}

TEST(read_timeouts, one_queue_serves_every_connection_with_the_same_duration) {
  asio::io_context io;
  read_timeouts rt(io.get_executor());
  timeout_queue* q = rt.queue_for(30s);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->duration, 30s);
  EXPECT_TRUE(q->list.empty());
  EXPECT_EQ(rt.queue_for(30000ms), q);
  timeout_queue* other = rt.queue_for(5s);
  ASSERT_NE(other, nullptr);
  EXPECT_NE(other, q);
  EXPECT_EQ(other->duration, 5s);
}

TEST(read_timeouts, a_queue_stays_where_it_is_while_more_durations_are_added) {
  // Connections keep a pointer to their queue, and a handler may add a duration while the
  // timer walks the queues: queues must never move.
  asio::io_context io;
  read_timeouts rt(io.get_executor());
  timeout_queue* first = rt.queue_for(1ms);
  std::vector<timeout_queue*> all{first};
  for (int i = 2; i <= 100; ++i) all.push_back(rt.queue_for(std::chrono::milliseconds(i)));
  EXPECT_EQ(rt.queue_for(1ms), first);
  for (int i = 1; i <= 100; ++i) {
    EXPECT_EQ(rt.queue_for(std::chrono::milliseconds(i)), all[static_cast<std::size_t>(i - 1)]);
  }
}

TEST(read_timeouts, cancel_without_an_armed_timer_is_harmless) {
  asio::io_context io;
  read_timeouts rt(io.get_executor());
  rt.cancel();
  EXPECT_EQ(io.poll(), 0u);
}

}  // namespace
