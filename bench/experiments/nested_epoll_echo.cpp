// nested-epoll-echo (experiment for issue 10, item 2; not built by CMake, not in bench/run).
// The design the issue proposes for atoll's io threads: per thread one edge-triggered epoll set
// that owns the connections (each registered once at accept with
// EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, never modified), and an Asio io_context that still
// runs the thread: it waits on the set's descriptor through an asio::posix::stream_descriptor
// (async_wait(wait_read) -> epoll_wait(timeout 0) -> handle up to --batch events -> re-arm), so
// timers, posted work and signals keep working. The echo itself is bench/baseline/epoll_echo.cpp's
// (same recv/send loop, same short-read rule, same per-connection struct), so the difference
// between the two is what running the set under Asio costs. A 1 s steady_timer and a counter
// of posted handlers show that Asio's own work still runs (printed at exit).
//
// Build (from the repository root, after configuring build/bench):
//   g++ -std=c++20 -O2 -DNDEBUG -DASIO_STANDALONE -DASIO_NO_DEPRECATED
//       -DASIO_HAS_STD_ALIGNED_ALLOC=1 bench/experiments/nested_epoll_echo.cpp
//       -o build/bench/bench/nested-epoll-echo -pthread            (one line)
// (the io_context gets ASIO_CONCURRENCY_HINT_UNSAFE_IO, as atoll's io threads do)
// Run:
//   build/bench/bench/nested-epoll-echo --port 0 --threads 1 [--batch 256]
//   prints "listening on 127.0.0.1:PORT"; SIGINT/SIGTERM stop it (exit 0).
// Measure: taskset -c 1 build/bench/bench/nested-epoll-echo --port 4061 --threads 1 &
//          taskset -c 0 build/bench/bench/atoll-load echo --port 4061 --connections 500 --size 64 ...

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct connection {  // as in epoll_echo.cpp
  std::string pending;
  bool peer_closed = false;
};

class worker {
 public:
  worker(int listen_fd, int batch) : listen_fd_(listen_fd), batch_(batch), events_(batch) {}
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  ~worker() {
    for (std::size_t fd = 0; fd < conns_.size(); ++fd) {
      if (conns_[fd]) ::close(static_cast<int>(fd));
    }
  }

  bool init() {
    const int epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return false;
    set_.assign(epfd);  // Asio registers the set's descriptor in its own reactor (EPOLLET)
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = listen_fd_;
    return ::epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd_, &ev) == 0;
  }

  void run() {
    arm();
    tick();
    ctx_.run();
  }

  void stop() { asio::post(ctx_, [this] { ctx_.stop(); }); }

  void report() const {
    std::fprintf(stderr, "nested-epoll-echo: %llu wakeups, %llu events, %llu timer ticks\n",
                 static_cast<unsigned long long>(wakeups_),
                 static_cast<unsigned long long>(events_seen_),
                 static_cast<unsigned long long>(ticks_));
  }

 private:
  // One Asio wait per batch: in Asio 1.22 each async_wait costs one epoll_ctl(MOD) on the set's
  // descriptor in Asio's reactor (epoll_reactor::start_op, non-speculative branch). The MOD
  // also re-evaluates readiness, so a set that still holds events after a full batch fires again.
  void arm() {
    set_.async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
      if (ec) return;
      on_set_ready();
    });
  }

  void on_set_ready() {
    ++wakeups_;
    const int n = ::epoll_wait(set_.native_handle(), events_.data(), batch_, 0);
    for (int i = 0; i < n; ++i) {
      const int fd = events_[i].data.fd;
      if (fd == listen_fd_) {
        accept_all();
      } else {
        on_event(fd, events_[i].events);
      }
    }
    if (n > 0) events_seen_ += static_cast<std::uint64_t>(n);
    arm();
  }

  void tick() {
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([this](std::error_code ec) {
      if (ec) return;
      ++ticks_;
      tick();
    });
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (static_cast<std::size_t>(fd) >= conns_.size()) conns_.resize(fd + 1024);
      conns_[fd] = std::make_unique<connection>();
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;  // once, never modified
      ev.data.fd = fd;
      if (::epoll_ctl(set_.native_handle(), EPOLL_CTL_ADD, fd, &ev) != 0) close_connection(fd);
    }
  }

  void on_event(int fd, std::uint32_t events) {
    connection& c = *conns_[fd];
    if (events & EPOLLERR) return close_connection(fd);
    if (events & (EPOLLRDHUP | EPOLLHUP)) c.peer_closed = true;
    if (!c.pending.empty()) {
      if (!(events & (EPOLLOUT | EPOLLHUP))) return;
      const ssize_t n = ::send(fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return close_connection(fd);
      }
      c.pending.erase(0, static_cast<std::size_t>(n));
      if (!c.pending.empty()) return;
    } else if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
      return;
    }
    read_all(fd, c);
  }

  void read_all(int fd, connection& c) {
    for (;;) {
      const ssize_t n = ::recv(fd, buffer_.get(), buffer_size, 0);
      if (n == 0) return close_connection(fd);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return close_connection(fd);
      }
      const auto got = static_cast<std::size_t>(n);
      ssize_t sent = ::send(fd, buffer_.get(), got, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          return close_connection(fd);
        }
        sent = 0;
      }
      if (static_cast<std::size_t>(sent) < got) {
        c.pending.assign(buffer_.get() + sent, got - static_cast<std::size_t>(sent));
        return;
      }
      if (got < buffer_size && !c.peer_closed) return;
    }
  }

  void close_connection(int fd) {
    conns_[fd].reset();
    ::close(fd);
  }

  static constexpr std::size_t buffer_size = 64 * 1024;
  asio::io_context ctx_{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  asio::posix::stream_descriptor set_{ctx_};
  asio::steady_timer timer_{ctx_};
  int listen_fd_;
  int batch_;
  std::vector<epoll_event> events_;
  std::unique_ptr<char[]> buffer_ = std::make_unique<char[]>(buffer_size);
  std::vector<std::unique_ptr<connection>> conns_;
  std::uint64_t wakeups_ = 0, events_seen_ = 0, ticks_ = 0;
};

unsigned long parse(std::string_view v, unsigned long max) {
  unsigned long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n > max) {
    std::fprintf(stderr, "nested-epoll-echo: bad value '%.*s'\n", int(v.size()), v.data());
    std::exit(2);
  }
  return n;
}

int listen_on(const sockaddr_in& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 1024) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned short port = 4050;
  unsigned threads = 1;
  int batch = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i], value = argv[i + 1];
    if (flag == "--host") {
      host = value;
    } else if (flag == "--port") {
      port = static_cast<unsigned short>(parse(value, 65535));
    } else if (flag == "--threads") {
      threads = static_cast<unsigned>(std::max(1ul, parse(value, 1024)));
    } else if (flag == "--batch") {
      batch = static_cast<int>(std::max(1ul, parse(value, 4096)));
    } else {
      std::fprintf(stderr, "usage: nested-epoll-echo [--host A] [--port N] [--threads N] [--batch N]\n");
      return 2;
    }
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return 2;
  std::vector<int> listeners;
  std::vector<std::unique_ptr<worker>> workers;
  for (unsigned i = 0; i < threads; ++i) {
    const int fd = listen_on(addr);
    if (fd < 0) {
      std::fprintf(stderr, "nested-epoll-echo: listen: %s\n", std::strerror(errno));
      return 1;
    }
    if (i == 0) {
      socklen_t len = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    }
    listeners.push_back(fd);
    workers.push_back(std::make_unique<worker>(fd, batch));
    if (!workers.back()->init()) return 1;
  }
  std::printf("listening on %s:%u\n", host.c_str(), ntohs(addr.sin_port));
  std::fflush(stdout);
  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back([&w] { w->run(); });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  for (auto& w : workers) w->stop();
  for (auto& t : pool) t.join();
  for (auto& w : workers) w->report();
  workers.clear();
  for (const int fd : listeners) ::close(fd);
  return 0;
}
