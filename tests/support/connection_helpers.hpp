#pragma once
// Helpers for the connection, drain and listener integration tests: thread-safe recorders that
// handlers write to and tests wait on (condition variables with deadlines, never sleeps),
// small handlers, endpoints, payloads, and a bounded background `run()`.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atoll/connection.hpp>
#include <atoll/endpoint.hpp>
#include <atoll/handler.hpp>
#include <atoll/listener.hpp>
#include <atoll/server.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "support/endpoints.hpp"

#include "support/test_client.hpp"

namespace atl::test {

// ---------------------------------------------------------------------------------------------
// Bytes and payloads

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline std::string to_text(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

/// A deterministic payload without a short period, so a lost, duplicated or reordered chunk
/// shows up as a mismatch.
inline std::string pattern_payload(std::size_t n, std::uint32_t seed = 1) {
  std::string out(n, '\0');
  std::uint32_t x = seed * 2654435761u + 12345u;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

/// Index of the first differing byte, or npos.
inline std::size_t first_mismatch(std::string_view a, std::string_view b) {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return i;
  return a.size() == b.size() ? std::string::npos : n;
}

// ---------------------------------------------------------------------------------------------
// Configurations

/// A listener on 127.0.0.1, any port, with test-sized timeouts.
inline atl::listener_config loopback_listener() {
  atl::listener_config c;
  c.host = "127.0.0.1";
  c.port = 0;
  c.read_timeout = std::chrono::seconds{30};
  c.shutdown_timeout = std::chrono::seconds{3};
  return c;
}

inline atl::server_config threads(std::size_t n) {
  atl::server_config c;
  c.io_threads = n;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Waiting for values set on io threads

/// A value set once (later sets are ignored) and awaited with a deadline.
template <class T>
class oneshot {
 public:
  void set(T v) {
    {
      std::lock_guard lock(m_);
      if (v_) return;
      v_ = std::move(v);
    }
    cv_.notify_all();
  }
  std::optional<T> wait(std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    std::unique_lock lock(m_);
    cv_.wait_for(lock, timeout, [&] { return v_.has_value(); });
    return v_;
  }
  bool is_set() const {
    std::lock_guard lock(m_);
    return v_.has_value();
  }

 private:
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::optional<T> v_;
};

/// What a handler saw of one connection.
struct connection_record {
  std::uint64_t id = 0;
  std::size_t listener = 0;
  std::size_t thread_index = 0;
  atl::endpoint peer;
  atl::endpoint local;
  std::thread::id open_thread;
  int opens = 0;
  int closes = 0;
  atl::close_reason reason = atl::close_reason::error;
  std::error_code ec;
  std::thread::id close_thread;
  /// Callback names in order ("open", "data", "timeout", "shutdown", "close", ...).
  std::vector<std::string> calls;
  /// Thread of every entry of `calls`.
  std::vector<std::thread::id> call_threads;
};

/// A thread-safe journal of connection callbacks and free-form notes; tests wait on it.
class probe {
 public:
  void opened(atl::connection& c) {
    {
      std::lock_guard lock(m_);
      auto& r = records_[c.id()];
      r.id = c.id();
      r.listener = c.listener();
      r.thread_index = c.thread_index();
      r.peer = c.peer();
      r.local = c.local();
      r.open_thread = std::this_thread::get_id();
      ++r.opens;
      r.calls.push_back("open");
      r.call_threads.push_back(std::this_thread::get_id());
      order_.push_back(c.id());
      ++opens_;
    }
    cv_.notify_all();
  }

  void closed(atl::connection& c, atl::close_reason reason, std::error_code ec) {
    {
      std::lock_guard lock(m_);
      auto& r = records_[c.id()];
      r.id = c.id();
      ++r.closes;
      r.reason = reason;
      r.ec = ec;
      r.close_thread = std::this_thread::get_id();
      r.calls.push_back("close");
      r.call_threads.push_back(std::this_thread::get_id());
      ++closes_;
    }
    cv_.notify_all();
  }

  /// Records another callback of connection `c` (for thread-affinity and order checks).
  void called(atl::connection& c, std::string name) { called(c.id(), std::move(name)); }
  void called(std::uint64_t id, std::string name) {
    {
      std::lock_guard lock(m_);
      auto& r = records_[id];
      r.calls.push_back(std::move(name));
      r.call_threads.push_back(std::this_thread::get_id());
    }
    cv_.notify_all();
  }

  void note(std::string s) {
    {
      std::lock_guard lock(m_);
      notes_.push_back(std::move(s));
    }
    cv_.notify_all();
  }

  bool wait_opens(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return opens_ >= n; });
  }
  bool wait_closes(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return closes_ >= n; });
  }
  /// Waits until a note equal to `s` exists.
  bool wait_note(std::string_view s, std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return has_note_locked(s); });
  }
  /// Waits until a note starting with `prefix` exists.
  bool wait_note_prefix(std::string_view prefix,
                        std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] {
      for (const auto& n : notes_)
        if (n.rfind(prefix, 0) == 0) return true;
      return false;
    });
  }

  std::size_t opens() const {
    std::lock_guard lock(m_);
    return opens_;
  }
  std::size_t closes() const {
    std::lock_guard lock(m_);
    return closes_;
  }
  std::vector<std::string> notes() const {
    std::lock_guard lock(m_);
    return notes_;
  }
  std::map<std::uint64_t, connection_record> records() const {
    std::lock_guard lock(m_);
    return records_;
  }
  /// "" if every recorded connection had exactly one on_open, first, and exactly one
  /// on_close, last; otherwise a description of each violation. Call after the server stopped.
  std::string lifecycle_violations() const {
    std::lock_guard lock(m_);
    std::string out;
    for (const auto& [id, r] : records_) {
      const std::string who = "connection " + std::to_string(id) + ": ";
      if (r.opens != 1) out += who + std::to_string(r.opens) + " on_open calls; ";
      if (r.closes != 1) out += who + std::to_string(r.closes) + " on_close calls; ";
      if (!r.calls.empty() && r.calls.front() != "open")
        out += who + "first call " + r.calls.front() + "; ";
      if (!r.calls.empty() && r.calls.back() != "close")
        out += who + "last call " + r.calls.back() + "; ";
    }
    return out;
  }

  /// The record of the n-th opened connection (0-based); empty record if none.
  connection_record nth(std::size_t n) const {
    std::lock_guard lock(m_);
    if (n >= order_.size()) return {};
    return records_.at(order_[n]);
  }

 private:
  bool has_note_locked(std::string_view s) const {
    for (const auto& n : notes_)
      if (n == s) return true;
    return false;
  }

  mutable std::mutex m_;
  std::condition_variable cv_;
  std::map<std::uint64_t, connection_record> records_;
  std::vector<std::uint64_t> order_;
  std::vector<std::string> notes_;
  std::size_t opens_ = 0;
  std::size_t closes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Handlers

/// Echoes every byte; reports open/close to an optional probe.
class echo_handler : public atl::handler {
 public:
  explicit echo_handler(std::shared_ptr<probe> p = nullptr) : probe_(std::move(p)) {}
  void on_open(atl::connection& c) override {
    if (probe_) probe_->opened(c);
  }
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    if (probe_) probe_->called(c, "data");
    c.send(data);
  }
  void on_close(atl::connection& c, atl::close_reason r, std::error_code ec) override {
    if (probe_) probe_->closed(c, r, ec);
  }

 protected:
  std::shared_ptr<probe> probe_;
};

/// A factory making `H(args...)` for every connection (args are copied into each handler).
template <class H, class... Args>
atl::handler_factory make_factory(Args... args) {
  return [=](atl::connection&) -> std::unique_ptr<atl::handler> {
    return std::make_unique<H>(args...);
  };
}

inline atl::handler_factory echo_factory(std::shared_ptr<probe> p = nullptr) {
  return make_factory<echo_handler>(std::move(p));
}

// ---------------------------------------------------------------------------------------------
// run() on a background thread, bounded

/// Runs `server.run()` on a thread. The destructor requests a stop and joins; if `run()` does
/// not return within 10 s it aborts the test binary rather than hanging the suite.
class background_run {
 public:
  explicit background_run(atl::server& s)
      : server_(s), thread_([this] {
          try {
            server_.run();
          } catch (...) {
            error_ = std::current_exception();
          }
          returned_.set(true);
        }) {}
  background_run(const background_run&) = delete;
  background_run& operator=(const background_run&) = delete;

  /// True if run() returned within `timeout`.
  bool wait_returned(std::chrono::milliseconds timeout) {
    return returned_.wait(timeout).has_value();
  }
  std::exception_ptr error() const { return error_; }

  ~background_run() {
    if (!returned_.is_set()) {
      server_.request_stop();
      if (!returned_.wait(std::chrono::seconds{10})) {
        std::fprintf(stderr, "background_run: server::run() did not return after request_stop\n");
        std::abort();
      }
    }
    thread_.join();
  }

 private:
  atl::server& server_;
  oneshot<bool> returned_;
  std::exception_ptr error_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// Endpoints and sockets

/// getsockname of `fd`.
inline atl::endpoint local_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return {reinterpret_cast<const sockaddr*>(&ss), len};
}

/// getpeername of `fd`.
inline atl::endpoint peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return {reinterpret_cast<const sockaddr*>(&ss), len};
}

/// Bounds every blocking send of a test client (so a stalled server fails the test instead of
/// hanging it) and optionally shrinks its receive buffer.
inline void bound_client(client& c,
                         std::chrono::milliseconds send_timeout = std::chrono::seconds{5},
                         int rcvbuf = 0) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(send_timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((send_timeout.count() % 1000) * 1000);
  ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (rcvbuf > 0) ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
}

/// True if a socket can be bound to ::1 (the machine has an IPv6 loopback).
inline bool has_ipv6_loopback() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// A listening TCP socket on 127.0.0.1 (no SO_REUSEADDR/SO_REUSEPORT), closed on destruction.
class held_port {
 public:
  explicit held_port(std::uint16_t port = 0, bool listen_too = true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        (listen_too && ::listen(fd_, 16) != 0)) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return;
    }
    port_ = local_of(fd_).port();
  }
  held_port(const held_port&) = delete;
  held_port& operator=(const held_port&) = delete;
  ~held_port() { release(); }
  bool valid() const { return fd_ >= 0; }
  std::uint16_t port() const { return port_; }
  int fd() const { return fd_; }
  /// Gives up ownership of the descriptor (e.g. to `adopt_fd`).
  int take() { return std::exchange(fd_, -1); }
  void release() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// True if 127.0.0.1:`port` can be bound now (nothing listens on it).
inline bool port_is_free(std::uint16_t port) { return held_port(port).valid(); }

/// A port that was free a moment ago (for tests that need a fixed port number).
inline std::uint16_t free_port() {
  held_port p;
  return p.port();
}

/// A private directory under $TMPDIR or /tmp, removed with its contents on destruction.
class temp_dir {
 public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/atoll-test-XXXXXX";
    if (char* p = ::mkdtemp(tmpl.data())) path_ = p;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  bool valid() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

inline bool file_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

inline bool is_socket_file(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

/// Connects a Unix-socket client to `path`.
inline client connect_unix(const std::string& path,
                           std::chrono::milliseconds timeout = std::chrono::seconds{2}) {
  return client::connect(unix_endpoint(path), timeout);
}

/// Connects to `ep` and waits until the server closes the connection. A reset that arrives
/// while connect() is still completing (client::connect reads it from SO_ERROR) counts as
/// `outcome::reset`; any other connect failure as `outcome::error`.
inline outcome connect_and_wait_closed(const atl::endpoint& ep,
                                       std::chrono::milliseconds timeout = std::chrono::seconds{2},
                                       std::string_view first_message = {}) {
  int err = 0;
  auto c = client::connect(ep, timeout, &err);
  if (!c.valid()) return err == ECONNRESET ? outcome::reset : outcome::error;
  if (!first_message.empty()) c.send(first_message);
  return c.wait_closed(timeout);
}

}  // namespace atl::test
