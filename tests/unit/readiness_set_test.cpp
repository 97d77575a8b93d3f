// Unit tests of detail::readiness_set over real socket pairs: registration reports the state
// at once, edges are reported once per change (edge-triggered), a removed target is never
// called again — also when it is removed by the target dispatched before it in the same batch,
// and when its descriptor stays registered through a copy — and slots are reused under a new
// generation. Batches are run by hand (run_batch) or through the io_context.
#include "readiness_set.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <vector>

#include "unique_fd.hpp"

namespace {

using atl::detail::readiness_set;
using atl::detail::unique_fd;

struct socket_pair {
  unique_fd a;
  unique_fd b;
  socket_pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    a = unique_fd(fds[0]);
    b = unique_fd(fds[1]);
  }
};

struct recorder;

// What a dispatch does for a target: record, and maybe run an action.
struct target {
  recorder* rec = nullptr;
  int id = 0;
  std::function<void()> on_event;
};

struct recorder {
  std::vector<std::pair<int, std::uint32_t>> calls;
};

void dispatch(void* p, std::uint32_t events) {
  auto* t = static_cast<target*>(p);
  t->rec->calls.emplace_back(t->id, events);
  if (t->on_event) t->on_event();
}

void drain(int fd) {
  char buf[256];
  while (::recv(fd, buf, sizeof buf, 0) > 0) {
  }
}

class readiness_set_test : public ::testing::Test {
 protected:
  asio::io_context ctx;
  readiness_set set{ctx.get_executor(), &dispatch};
  recorder rec;
};

TEST_F(readiness_set_test, registration_reports_writable_then_edges_only_on_change) {
  socket_pair p;
  target t{&rec, 1, {}};
  std::error_code ec;
  const auto k = set.add(p.a.get(), &t, ec);
  ASSERT_FALSE(ec);
  ASSERT_NE(k, 0u);
  EXPECT_EQ(set.size(), 1u);

  set.run_batch();
  ASSERT_EQ(rec.calls.size(), 1u);
  EXPECT_TRUE(rec.calls[0].second & EPOLLOUT);
  EXPECT_FALSE(rec.calls[0].second & EPOLLIN);

  set.run_batch();  // edge-triggered: nothing changed, nothing reported
  EXPECT_EQ(rec.calls.size(), 1u);

  ASSERT_EQ(::send(p.b.get(), "x", 1, 0), 1);
  set.run_batch();
  ASSERT_EQ(rec.calls.size(), 2u);
  EXPECT_TRUE(rec.calls[1].second & EPOLLIN);

  // Bytes left unread: no new edge until more arrive — which is why the connection keeps a
  // "readable" bit of its own.
  set.run_batch();
  EXPECT_EQ(rec.calls.size(), 2u);
  ASSERT_EQ(::send(p.b.get(), "y", 1, 0), 1);
  set.run_batch();
  EXPECT_EQ(rec.calls.size(), 3u);
  drain(p.a.get());

  p.b.reset();  // the peer closes: read side hangs up
  set.run_batch();
  ASSERT_EQ(rec.calls.size(), 4u);
  EXPECT_TRUE(rec.calls[3].second & EPOLLRDHUP);
  set.remove(k);
  EXPECT_EQ(set.size(), 0u);
}

TEST_F(readiness_set_test, a_target_removed_earlier_in_the_batch_is_not_called) {
  socket_pair p1, p2;
  target t1{&rec, 1, {}};
  target t2{&rec, 2, {}};
  std::error_code ec;
  readiness_set::key k1 = set.add(p1.a.get(), &t1, ec);
  ASSERT_FALSE(ec);
  readiness_set::key k2 = set.add(p2.a.get(), &t2, ec);
  ASSERT_FALSE(ec);
  // Whichever comes first in the batch removes the other (as a connection's callback may end
  // another connection of its thread): the other must not be called.
  t1.on_event = [&] {
    set.remove(k2);
    p2.a.reset();
  };
  t2.on_event = [&] {
    set.remove(k1);
    p1.a.reset();
  };
  set.run_batch();
  ASSERT_EQ(rec.calls.size(), 1u);
}

TEST_F(readiness_set_test, a_descriptor_registered_through_a_copy_reaches_no_removed_target) {
  socket_pair p;
  target t{&rec, 1, {}};
  std::error_code ec;
  const auto k = set.add(p.a.get(), &t, ec);
  ASSERT_FALSE(ec);
  set.run_batch();
  ASSERT_EQ(rec.calls.size(), 1u);
  // A copy of the descriptor (as a fork would hold) keeps the kernel's registration after
  // the owner closes its own: the set must drop its events.
  unique_fd copy(::fcntl(p.a.get(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(copy);
  set.remove(k);
  p.a.reset();
  ASSERT_EQ(::send(p.b.get(), "x", 1, 0), 1);
  set.run_batch();
  EXPECT_EQ(rec.calls.size(), 1u);
}

TEST_F(readiness_set_test, slots_are_reused_under_a_new_generation) {
  socket_pair p1, p2;
  target t1{&rec, 1, {}};
  target t2{&rec, 2, {}};
  std::error_code ec;
  const auto k1 = set.add(p1.a.get(), &t1, ec);
  ASSERT_FALSE(ec);
  set.remove(k1);
  set.remove(k1);  // twice: no effect
  const auto k2 = set.add(p2.a.get(), &t2, ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(static_cast<std::uint32_t>(k1), static_cast<std::uint32_t>(k2));  // same slot
  EXPECT_NE(k1, k2);                                                         // new generation
  EXPECT_EQ(set.size(), 1u);
  set.remove(k1);  // the old key does not remove the new target
  EXPECT_EQ(set.size(), 1u);
  // p1's descriptor is still open and registered in the kernel under k1: its events are
  // dropped, p2's reach t2.
  set.run_batch();
  ASSERT_EQ(rec.calls.size(), 1u);
  EXPECT_EQ(rec.calls[0].first, 2);
}

TEST_F(readiness_set_test, a_bad_descriptor_is_refused_with_the_kernels_error) {
  target t{&rec, 1, {}};
  std::error_code ec;
  EXPECT_EQ(set.add(-1, &t, ec), 0u);
  EXPECT_EQ(ec, std::error_code(EBADF, std::system_category()));
  EXPECT_EQ(set.size(), 0u);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  unique_fd r(fds[0]), w(fds[1]);
  EXPECT_NE(set.add(r.get(), &t, ec), 0u);  // a pipe can be watched too
  EXPECT_FALSE(ec);
}

TEST_F(readiness_set_test, the_io_context_runs_batches_once_started) {
  socket_pair p;
  target t{&rec, 1, {}};
  std::error_code ec;
  set.add(p.a.get(), &t, ec);
  ASSERT_FALSE(ec);
  set.start();
  ASSERT_EQ(::send(p.b.get(), "x", 1, 0), 1);
  // Bounded: each run_one handles one completion; the first batch may report only the
  // registration (writable) if the byte came after it.
  const auto saw_readable = [&] {
    for (auto& c : rec.calls) {
      if (c.second & EPOLLIN) return true;
    }
    return false;
  };
  for (int i = 0; i < 20 && !saw_readable(); ++i) ctx.run_one_for(std::chrono::seconds(5));
  EXPECT_TRUE(saw_readable());
  set.release_io_objects();
  EXPECT_EQ(set.native_handle(), -1);
  EXPECT_EQ(set.add(p.a.get(), &t, ec), 0u);  // released: refused
  EXPECT_TRUE(ec);
}

}  // namespace
