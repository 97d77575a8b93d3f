#pragma once
// NOTE for all tests: the C++ namespace is `atl` (not `atoll`: `::atoll(const char*)` from
// <stdlib.h> occupies that name in the global scope). CMake targets stay atoll::atoll.
// Blocking loopback test clients with hard time bounds, shared by the integration tests.
// Every wait is bounded by a timeout; nothing here sleeps to synchronise.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atoll/endpoint.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace atl::test {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

/// Polls `pred` every millisecond until it is true or `timeout` passes (bounded in time and
/// count). Returns the final value of `pred`. For state that has no event to await (counters
/// of another thread).
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = clock::now() + timeout;
  while (!pred()) {
    if (clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// How a read or a wait for the server's close ended.
enum class outcome { data, eof, reset, timeout, error };

inline const char* to_string(outcome o) {
  switch (o) {
    case outcome::data: return "data";
    case outcome::eof: return "eof";
    case outcome::reset: return "reset";
    case outcome::timeout: return "timeout";
    case outcome::error: return "error";
  }
  return "?";
}

/// A blocking-with-deadline client socket (TCP or Unix). Move-only; closes on destruction.
class client {
 public:
  client() = default;
  explicit client(int fd) : fd_(fd) {}
  client(client&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  client& operator=(client&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~client() { close(); }

  /// Connects to `ep` within `timeout`; returns an invalid client (`!valid()`) on failure,
  /// with the errno in `*err` if given.
  static client connect(const atl::endpoint& ep, std::chrono::milliseconds timeout = 2s,
                         int* err = nullptr) {
    int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      if (err) *err = errno;
      return client{};
    }
    int rc = ::connect(fd, ep.data(), ep.size());
    if (rc != 0 && errno != EINPROGRESS) {
      if (err) *err = errno;
      ::close(fd);
      return client{};
    }
    if (rc != 0) {
      pollfd p{fd, POLLOUT, 0};
      int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
      if (n <= 0 || soerr != 0) {
        if (err) *err = n <= 0 ? ETIMEDOUT : soerr;
        ::close(fd);
        return client{};
      }
    }
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    if (ep.is_ip()) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return client{fd};
  }

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  /// Writes all of `data` (blocking; the socket buffer absorbs test-sized payloads).
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  /// Waits up to `timeout` for one read: data (appended to `out`), EOF, reset or timeout.
  outcome read_some(std::string& out, std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n == 0) return outcome::timeout;
    if (n < 0) return outcome::error;
    char buf[65536];
    ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
    if (r > 0) {
      out.append(buf, static_cast<std::size_t>(r));
      return outcome::data;
    }
    if (r == 0) return outcome::eof;
    return errno == ECONNRESET ? outcome::reset : outcome::error;
  }

  /// Reads until `n` bytes have arrived or `timeout` passes; returns what arrived.
  std::string read_exact(std::size_t n, std::chrono::milliseconds timeout = 2s) {
    std::string out;
    const auto deadline = clock::now() + timeout;
    while (out.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) break;
      if (read_some(out, left) != outcome::data) break;
    }
    return out;
  }

  /// Sends `msg` and reads back as many bytes (an echo round trip); true if they match.
  bool echo(std::string_view msg, std::chrono::milliseconds timeout = 2s) {
    return send(msg) && read_exact(msg.size(), timeout) == msg;
  }

  /// Reads (discarding data) until the server closes (eof/reset) or `timeout` passes.
  outcome wait_closed(std::chrono::milliseconds timeout = 2s, std::string* data = nullptr) {
    const auto deadline = clock::now() + timeout;
    std::string sink;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) return outcome::timeout;
      auto o = read_some(data ? *data : sink, left);
      if (o != outcome::data) return o;
      if (!data) sink.clear();
    }
  }

  /// Closes with a TCP reset (SO_LINGER {1, 0}).
  void reset() {
    if (fd_ < 0) return;
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
};

}  // namespace atl::test
