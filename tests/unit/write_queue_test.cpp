// Unit tests of detail::write_queue: appending, gathering and consuming across chunk
// boundaries, size accounting, and the memory the queue keeps.
#include "write_queue.hpp"

#include <gtest/gtest.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "support/process_memory.hpp"

namespace {

using atl::detail::write_queue;
using atl::test::heap_in_use;

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// `n` bytes of a pattern that makes misplaced bytes visible.
std::string pattern(std::size_t n, std::size_t seed = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i + seed) % 26);
  return s;
}

// What the queue would send: its buffers concatenated, and how many there were.
struct gathered {
  std::string bytes;
  std::size_t buffers = 0;
  std::vector<std::size_t> lengths;
};
gathered gather_all(const write_queue& q, std::size_t max_iov = 64) {
  std::vector<iovec> iov(max_iov);
  gathered g;
  g.buffers = q.gather(iov.data(), max_iov);
  for (std::size_t i = 0; i < g.buffers; ++i) {
    g.bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    g.lengths.push_back(iov[i].iov_len);
  }
  return g;
}

TEST(write_queue, a_new_queue_is_empty_and_gathers_nothing) {
  write_queue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  iovec iov[4];
  EXPECT_EQ(q.gather(iov, 4), 0u);
}

TEST(write_queue, appending_nothing_changes_nothing) {
  write_queue q;
  q.append({});
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(gather_all(q).buffers, 0u);
}

TEST(write_queue, small_appends_share_one_buffer) {
  write_queue q;
  q.append(bytes_of("hello "));
  q.append(bytes_of("small "));
  q.append(bytes_of("world"));
  EXPECT_EQ(q.size(), 17u);
  auto g = gather_all(q);
  EXPECT_EQ(g.buffers, 1u);
  EXPECT_EQ(g.bytes, "hello small world");
}

TEST(write_queue, an_append_that_crosses_a_chunk_fills_the_tail_then_starts_a_new_chunk) {
  write_queue q;
  const std::string first = pattern(write_queue::min_chunk - 100);
  const std::string second = pattern(300, 7);
  q.append(bytes_of(first));
  q.append(bytes_of(second));
  EXPECT_EQ(q.size(), first.size() + second.size());
  auto g = gather_all(q);
  ASSERT_EQ(g.buffers, 2u);
  EXPECT_EQ(g.lengths, (std::vector<std::size_t>{write_queue::min_chunk, 200}));
  EXPECT_EQ(g.bytes, first + second);
}

TEST(write_queue, an_append_larger_than_a_chunk_is_kept_whole) {
  write_queue q;
  const std::string big = pattern(3 * write_queue::min_chunk + 5);
  q.append(bytes_of(big));
  auto g = gather_all(q);
  ASSERT_EQ(g.buffers, 1u);
  EXPECT_EQ(g.bytes, big);
}

TEST(write_queue, gathers_no_more_buffers_than_asked_for_and_from_the_front) {
  write_queue q;
  std::string all;
  for (std::size_t i = 0; i < 5; ++i) {
    const std::string part = pattern(write_queue::min_chunk, i);  // exactly one chunk each
    q.append(bytes_of(part));
    all += part;
  }
  auto two = gather_all(q, 2);
  EXPECT_EQ(two.buffers, 2u);
  EXPECT_EQ(two.bytes, all.substr(0, 2 * write_queue::min_chunk));
  auto every = gather_all(q, 64);
  EXPECT_EQ(every.buffers, 5u);
  EXPECT_EQ(every.bytes, all);
  EXPECT_EQ(gather_all(q, 0).buffers, 0u);
}

TEST(write_queue, partial_consumes_drop_bytes_from_the_front_across_chunk_boundaries) {
  write_queue q;
  std::string all;
  for (std::size_t i = 0; i < 3; ++i) {
    const std::string part = pattern(write_queue::min_chunk, i);
    q.append(bytes_of(part));
    all += part;
  }
  std::size_t gone = 0;
  // Inside the first chunk, to its exact end, across the next boundary, then one byte.
  for (std::size_t n :
       {std::size_t{10}, write_queue::min_chunk - 10, write_queue::min_chunk + 1, std::size_t{1}}) {
    q.consume(n);
    gone += n;
    EXPECT_EQ(q.size(), all.size() - gone);
    EXPECT_EQ(gather_all(q).bytes, all.substr(gone)) << "after consuming " << gone;
  }
  q.consume(q.size());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(gather_all(q).buffers, 0u);
}

TEST(write_queue, appends_after_a_partial_consume_follow_the_remaining_bytes) {
  write_queue q;
  q.append(bytes_of("abcdef"));
  q.consume(4);
  q.append(bytes_of("gh"));
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(gather_all(q).bytes, "efgh");
}

TEST(write_queue, consuming_everything_leaves_a_queue_that_works_like_new) {
  write_queue q;
  q.append(bytes_of(pattern(2 * write_queue::min_chunk + 3)));
  q.consume(q.size());
  EXPECT_TRUE(q.empty());
  q.append(bytes_of("again"));
  auto g = gather_all(q);
  EXPECT_EQ(g.buffers, 1u);
  EXPECT_EQ(g.bytes, "again");
}

TEST(write_queue, clear_drops_every_byte) {
  write_queue q;
  q.append(bytes_of(pattern(3 * write_queue::min_chunk)));
  q.consume(5);
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(gather_all(q).buffers, 0u);
  q.append(bytes_of("x"));
  EXPECT_EQ(gather_all(q).bytes, "x");
}

TEST(write_queue, an_emptied_queue_gives_its_memory_back) {
  write_queue q;
  const std::size_t before = heap_in_use();
  q.append(bytes_of(pattern(5 * write_queue::min_chunk)));
  q.append(bytes_of(pattern(5 * write_queue::min_chunk)));
  EXPECT_GE(heap_in_use(), before + 10 * write_queue::min_chunk);
  q.consume(q.size());
  EXPECT_LE(heap_in_use(), before);
}

TEST(write_queue, memory_stays_bounded_when_the_queue_never_drains_completely) {
  // A connection that streams steadily to a peer reading at the same pace always has a few
  // bytes queued: the queue is never empty, yet what it holds stays small. Its memory must
  // follow what it holds, not what it has ever held (before the fix, consume() freed drained
  // chunks only once the queue was empty: ~490 chunks, 2 MB, for 1 KB queued here).
  write_queue q;
  const std::string part = pattern(1000);
  const std::size_t before = heap_in_use();
  q.append(bytes_of(part));
  std::size_t most = 0;
  for (int i = 0; i < 2000; ++i) {
    q.append(bytes_of(part));
    q.consume(part.size());  // the kernel takes as much as was appended: 1000 bytes stay queued
    most = std::max(most, heap_in_use() - std::min(before, heap_in_use()));
  }
  EXPECT_EQ(q.size(), part.size());
  EXPECT_EQ(gather_all(q).bytes, pattern(1000));
  // 2 MB passed through, at most 2 KB were queued at once: a few chunks and the chunk vector.
  EXPECT_LE(most, 8 * write_queue::min_chunk);
}

}  // namespace
