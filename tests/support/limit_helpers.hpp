#pragma once
// Helpers for the connection-limit, waiting-room, accept-error and stampede integration tests:
// small handlers, listener/server builders, stats accessors, and a classified client attempt
// ("was this client served, closed, refused, or left hanging?"). Every wait is bounded.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atoll/connection.hpp>
#include <atoll/endpoint.hpp>
#include <atoll/handler.hpp>
#include <atoll/listener.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/test_client.hpp"

namespace atl::test::limits {

using namespace std::chrono_literals;
using atl::test::client;
using atl::test::outcome;

// ---------------------------------------------------------------------------------------------
// Handlers

/// Bytes in, same bytes out.
class echo_handler : public atl::handler {
 public:
  void on_data(atl::connection& c, std::span<const std::byte> data) override { c.send(data); }
};

/// Echoes, except for a few magic payloads that make the server end the connection in a
/// chosen way (for slot accounting):
///   "THROW" → the handler throws (close_reason::handler_error)
///   "ABORT" → connection::abort() (close_reason::local_close, RST)
///   "CLOSE" → connection::close() (close_reason::local_close, FIN)
///   "FLOOD" → sends until `send` drops (close_reason::slow_consumer when the client never reads)
class scripted_handler : public atl::handler {
 public:
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    const std::string_view s(reinterpret_cast<const char*>(data.data()), data.size());
    if (s.find("THROW") != std::string_view::npos) throw std::runtime_error("scripted failure");
    if (s.find("ABORT") != std::string_view::npos) return c.abort();
    if (s.find("CLOSE") != std::string_view::npos) return c.close();
    if (s.find("FLOOD") != std::string_view::npos) return flood(c);
    c.send(data);
  }

 private:
  static void flood(atl::connection& c) {
    static const std::string chunk(16 * 1024, 'f');
    // Bounded: at most 64 MiB, far beyond any loopback socket buffer plus max_write_buffer.
    for (int i = 0; i < 4096; ++i)
      if (c.send(chunk) == atl::send_result::dropped) return;
  }
};

inline atl::handler_factory echo_factory() {
  return [](atl::connection&) { return std::make_unique<echo_handler>(); };
}

inline atl::handler_factory scripted_factory() {
  return [](atl::connection&) { return std::make_unique<scripted_handler>(); };
}

// ---------------------------------------------------------------------------------------------
// Configurations

/// A loopback listener (127.0.0.1, port 0) with the given limit and test-sized timeouts.
inline atl::listener_config limit_listener(std::size_t max_connections, std::size_t retry_count = 0,
                                           std::chrono::milliseconds retry_wait = 100ms,
                                           std::size_t max_waiting = 1024) {
  atl::listener_config c;
  c.host = "127.0.0.1";
  c.port = 0;
  c.max_connections = max_connections;
  c.retry_count = retry_count;
  c.retry_wait = retry_wait;
  c.max_waiting = max_waiting;
  c.read_timeout = 30s;
  c.shutdown_timeout = 1s;
  return c;
}

inline atl::server_config limit_server(std::size_t io_threads = 2) {
  atl::server_config c;
  c.io_threads = io_threads;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Stats

inline atl::listener_stats listener_stats_of(const atl::server& s, atl::listener_id id) {
  return s.stats().listeners.at(id);
}

inline std::uint64_t accept_errors(const atl::listener_stats& ls, int err) {
  auto it = ls.accept_errors_total.find(err);
  return it == ls.accept_errors_total.end() ? 0 : it->second;
}

inline std::uint64_t closed_sum(const atl::listener_stats& ls) {
  std::uint64_t n = 0;
  for (auto v : ls.closed_total) n += v;
  return n;
}

inline std::uint64_t rejected_sum(const atl::listener_stats& ls) {
  std::uint64_t n = 0;
  for (auto v : ls.rejected_total) n += v;
  return n;
}

/// Waits (bounded) until `pred(listener_stats)` holds.
template <class Pred>
bool wait_for_stats(const atl::server& s, atl::listener_id id, Pred pred,
                    std::chrono::milliseconds timeout = 5s) {
  return atl::test::wait_until([&] { return pred(listener_stats_of(s, id)); }, timeout);
}

/// Waits (bounded) until the listener's `active` equals `n`.
inline bool wait_active(const atl::server& s, atl::listener_id id, std::uint64_t n,
                        std::chrono::milliseconds timeout = 5s) {
  return wait_for_stats(
      s, id, [n](const atl::listener_stats& ls) { return ls.active == n; }, timeout);
}

/// Waits (bounded) until the listener's `waiting` equals `n`.
inline bool wait_waiting(const atl::server& s, atl::listener_id id, std::uint64_t n,
                         std::chrono::milliseconds timeout = 5s) {
  return wait_for_stats(
      s, id, [n](const atl::listener_stats& ls) { return ls.waiting == n; }, timeout);
}

// ---------------------------------------------------------------------------------------------
// Classified client attempts

/// What happened to one client attempt.
enum class verdict {
  served,   ///< the echo came back
  closed,   ///< the server closed it (EOF or RST, or a send failed on a reset socket)
  refused,  ///< connect(2) failed with ECONNREFUSED (nobody listening)
  hung,     ///< no definite outcome within the deadline (connect or read timed out)
  failed,   ///< another error
};

inline const char* to_string(verdict v) {
  switch (v) {
    case verdict::served:
      return "served";
    case verdict::closed:
      return "closed";
    case verdict::refused:
      return "refused";
    case verdict::hung:
      return "hung";
    case verdict::failed:
      return "failed";
  }
  return "?";
}

inline bool is_close(outcome o) { return o == outcome::eof || o == outcome::reset; }

struct attempt {
  verdict result = verdict::failed;
  int error = 0;         ///< connect errno, when the connect failed
  std::string received;  ///< bytes read before the outcome
  client socket;         ///< the connected socket (kept open when served)
};

/// Reads until `want` bytes arrived or something else happened; classifies.
inline verdict read_verdict(client& c, std::size_t want, std::string& got,
                            std::chrono::milliseconds timeout) {
  const auto deadline = atl::test::clock::now() + timeout;
  while (got.size() < want) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - atl::test::clock::now());
    if (left.count() <= 0) return verdict::hung;
    switch (c.read_some(got, left)) {
      case outcome::data:
        break;
      case outcome::eof:
      case outcome::reset:
        return verdict::closed;
      case outcome::timeout:
        return verdict::hung;
      case outcome::error:
        return verdict::failed;
    }
  }
  return verdict::served;
}

/// Connects, sends `msg`, and waits for its echo: served / closed / refused / hung / failed,
/// each within `timeout` (connect and read each get the whole `timeout`).
inline attempt try_echo(const atl::endpoint& ep, std::string_view msg,
                        std::chrono::milliseconds timeout = 2s) {
  attempt a;
  int err = 0;
  a.socket = client::connect(ep, timeout, &err);
  if (!a.socket.valid()) {
    a.error = err;
    a.result = err == ECONNREFUSED ? verdict::refused
               : err == ETIMEDOUT  ? verdict::hung
                                   : verdict::failed;
    if (err == ECONNRESET) a.result = verdict::closed;
    return a;
  }
  if (!a.socket.send(msg)) {
    // The server's RST arrived before the send: a definite close.
    a.result = (errno == EPIPE || errno == ECONNRESET) ? verdict::closed : verdict::failed;
    return a;
  }
  a.result = read_verdict(a.socket, msg.size(), a.received, timeout);
  if (a.result == verdict::served && a.received != msg) a.result = verdict::failed;
  return a;
}

/// Connects `n` clients one after the other and makes each echo once (so each is admitted).
/// Returns the served ones; fewer than `n` means a client was not served.
inline std::vector<client> hold_clients(const atl::endpoint& ep, std::size_t n,
                                        std::chrono::milliseconds timeout = 2s) {
  std::vector<client> out;
  for (std::size_t i = 0; i < n; ++i) {
    auto a = try_echo(ep, "hold-" + std::to_string(i) + "\n", timeout);
    if (a.result != verdict::served) break;
    out.push_back(std::move(a.socket));
  }
  return out;
}

/// Connects without waiting for anything else (the socket may be accepted, wait or be closed).
inline client connect_only(const atl::endpoint& ep, std::chrono::milliseconds timeout = 2s) {
  return client::connect(ep, timeout);
}

// ---------------------------------------------------------------------------------------------
// Descriptors

/// An unconnected TCP socket, created now so that connecting it later allocates no descriptor.
inline int make_socket_now(const atl::endpoint& ep) {
  return ::socket(ep.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
}

/// Connects an already created (blocking) socket `fd` to `ep` within `timeout`; takes
/// ownership of `fd`. Returns an invalid client on failure.
inline client connect_existing(int fd, const atl::endpoint& ep,
                               std::chrono::milliseconds timeout = 2s) {
  client c{fd};
  if (fd < 0) return c;
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, ep.data(), ep.size());
  if (rc != 0 && errno != EINPROGRESS) return client{};  // c closes fd
  if (rc != 0) {
    pollfd p{fd, POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    int soerr = 0;
    socklen_t len = sizeof soerr;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (n <= 0 || soerr != 0) return client{};
  }
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return c;
}

/// The lowest descriptor number not in use (what the next open/accept would get), found
/// without allocating one.
inline int lowest_free_fd(int limit = 65536) {
  for (int fd = 0; fd < limit; ++fd)
    if (::fcntl(fd, F_GETFD) == -1 && errno == EBADF) return fd;
  return limit;
}

}  // namespace atl::test::limits
