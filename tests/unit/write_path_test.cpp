// Unit tests of detail::write_path over a real socket pair (AF_UNIX stream, non-blocking, small
// send buffer): straight-through writes, queueing what the kernel refuses, order across queued
// bytes and files, what buffered() counts, and clear().
#include "write_path.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <span>
#include <string>

#include "transport.hpp"
#include "unique_fd.hpp"

namespace {

using atl::detail::io_result;
using atl::detail::io_status;
using atl::detail::plain_transport;
using atl::detail::unique_fd;
using atl::detail::write_path;

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string pattern(std::size_t n, std::size_t seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i + seed) % 26);
  return s;
}

// A connected non-blocking pair: `server` is written through the write path, `peer` reads.
struct socket_pair {
  unique_fd server;
  unique_fd peer;
  socket_pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    server = unique_fd(fds[0]);
    peer = unique_fd(fds[1]);
    const int small = 4096;  // the kernel doubles it; still far below the test's volumes
    ::setsockopt(server.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ::setsockopt(peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  // Everything readable now (non-blocking; bounded by the socket buffers).
  std::string drain() {
    std::string out;
    char buf[65536];
    for (int i = 0; i < 10000; ++i) {
      const ssize_t n = ::recv(peer.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
};

// Flushes and drains alternately until nothing is pending (bounded).
std::string flush_all(write_path& w, socket_pair& s) {
  std::string got = s.drain();
  for (int i = 0; i < 10000 && w.pending(); ++i) {
    const io_result r = w.flush(plain_transport::instance(), s.server.get());
    EXPECT_NE(r.status, io_status::failed) << r.err;
    got += s.drain();
  }
  EXPECT_FALSE(w.pending());
  return got + s.drain();
}

TEST(write_path, a_write_the_kernel_takes_whole_is_not_queued) {
  socket_pair s;
  write_path w;
  const std::string msg = "hello";
  const io_result r = w.write(plain_transport::instance(), s.server.get(), bytes_of(msg), true);
  EXPECT_EQ(r.status, io_status::done);
  EXPECT_EQ(r.n, msg.size());
  EXPECT_EQ(w.buffered(), 0u);
  EXPECT_FALSE(w.pending());
  EXPECT_EQ(s.drain(), msg);
}

TEST(write_path, what_the_kernel_refuses_is_queued_and_flushed_in_order) {
  socket_pair s;
  write_path w;
  const std::string big = pattern(1 << 20, 0);
  const io_result r = w.write(plain_transport::instance(), s.server.get(), bytes_of(big), true);
  ASSERT_EQ(r.status, io_status::want_write);
  ASSERT_LT(r.n, big.size());
  EXPECT_EQ(w.buffered(), big.size() - r.n);
  EXPECT_TRUE(w.pending());
  // More bytes while the first are queued: behind them, sent by the flush.
  const std::string tail = pattern(1000, 7);
  const io_result r2 = w.write(plain_transport::instance(), s.server.get(), bytes_of(tail), false);
  EXPECT_EQ(r2.status, io_status::done);
  EXPECT_EQ(r2.n, 0u);
  EXPECT_EQ(w.buffered(), big.size() - r.n + tail.size());
  EXPECT_EQ(flush_all(w, s), big + tail);
  EXPECT_EQ(w.buffered(), 0u);
}

TEST(write_path, bytes_sent_after_a_file_follow_it_and_count_as_buffered) {
  socket_pair s;
  write_path w;
  char name[] = "/tmp/atoll-write-path-XXXXXX";
  const int raw = ::mkstemp(name);
  ASSERT_GE(raw, 0);
  ::unlink(name);
  unique_fd file(raw);
  const std::string contents = pattern(200000, 3);
  ASSERT_EQ(::write(file.get(), contents.data(), contents.size()),
            static_cast<ssize_t>(contents.size()));

  const std::string head = "head:", after = ":tail";
  ASSERT_EQ(w.write(plain_transport::instance(), s.server.get(), bytes_of(head), true).n,
            head.size());
  w.add_file(std::move(file), 100, 150000);
  EXPECT_TRUE(w.pending());
  EXPECT_EQ(w.buffered(), 0u) << "a file's bytes are not memory";
  const io_result r = w.write(plain_transport::instance(), s.server.get(), bytes_of(after), true);
  EXPECT_EQ(r.status, io_status::done);
  EXPECT_EQ(r.n, 0u) << "kept behind the file";
  EXPECT_EQ(w.buffered(), after.size());
  EXPECT_EQ(flush_all(w, s), head + contents.substr(100, 150000) + after);
  EXPECT_EQ(w.buffered(), 0u);
}

TEST(write_path, clear_drops_queued_bytes_and_files) {
  socket_pair s;
  write_path w;
  const std::string big = pattern(1 << 20, 0);
  w.write(plain_transport::instance(), s.server.get(), bytes_of(big), true);
  char name[] = "/tmp/atoll-write-path-XXXXXX";
  const int raw = ::mkstemp(name);
  ASSERT_GE(raw, 0);
  ::unlink(name);
  w.add_file(unique_fd(raw), 0, 10);
  w.write(plain_transport::instance(), s.server.get(), bytes_of(big), true);
  ASSERT_TRUE(w.pending());
  w.clear();
  EXPECT_FALSE(w.pending());
  EXPECT_EQ(w.buffered(), 0u);
}

}  // namespace
