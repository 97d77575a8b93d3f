// epoll-echo: the physical-limit yardstick. A minimal echo server on the kernel's own
// interface, no framework: per thread one epoll set and one SO_REUSEPORT listen socket, every
// connection registered once, edge-triggered, with EPOLLIN | EPOLLOUT | EPOLLRDHUP and never
// modified; recv into one buffer per thread, send(MSG_NOSIGNAL) straight back. What atoll and
// bare Asio spend beyond this is what a library costs over recv + send + epoll_wait.
//
//   epoll-echo --port 0 --threads 2      prints "listening on 127.0.0.1:PORT"
//   epoll-echo ... --read-until-eagain   no short-read shortcut: every drain ends in EAGAIN
//
// SIGINT/SIGTERM stop it (exit 0).
//
// Why one SO_REUSEPORT listener per thread rather than one shared listener with
// EPOLLEXCLUSIVE: bare-asio-echo does the same, so connections are spread over the threads
// alike in both yardsticks (the kernel hashes each 4-tuple to one listener), and no thread is
// ever woken for a connection another thread takes. bench/run runs every server with one
// thread, where the two designs are the same.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
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

// Unsent bytes of one connection: empty unless a send() came back short (the peer's receive
// window full). Reading pauses until EPOLLOUT has flushed it, so it never holds more than one
// read's worth.
struct connection {
  std::string pending;
  bool peer_closed = false;  // EPOLLRDHUP seen: read on to EOF, no short-read shortcut
};

class worker {
 public:
  worker(int listen_fd, int stop_fd, bool until_eagain)
      : listen_fd_(listen_fd), stop_fd_(stop_fd), until_eagain_(until_eagain) {}
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  ~worker() {
    for (std::size_t fd = 0; fd < conns_.size(); ++fd) {
      if (conns_[fd]) ::close(static_cast<int>(fd));
    }
    if (epfd_ >= 0) ::close(epfd_);
  }

  bool init() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return false;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = listen_fd_;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) return false;
    ev.events = EPOLLIN;  // level-triggered: every thread sees the one stop event
    ev.data.fd = stop_fd_;
    return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, stop_fd_, &ev) == 0;
  }

  void run() {
    epoll_event events[256];
    for (;;) {
      const int n = ::epoll_wait(epfd_, events, 256, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("epoll-echo: epoll_wait");
        return;
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == stop_fd_) return;
        if (fd == listen_fd_) {
          accept_all();
        } else {
          on_event(fd, events[i].events);
        }
      }
    }
  }

 private:
  void accept_all() {
    // Edge-triggered: take every queued connection. On EMFILE the rest wait for the next
    // connection's edge; the benchmarks never go there.
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      // atoll and bare-asio-echo set TCP_NODELAY; so does this yardstick.
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (static_cast<std::size_t>(fd) >= conns_.size()) conns_.resize(fd + 1024);
      conns_[fd] = std::make_unique<connection>();
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;  // once, never modified
      ev.data.fd = fd;
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) close_connection(fd);
    }
  }

  void on_event(int fd, std::uint32_t events) {
    connection& c = *conns_[fd];
    if (events & EPOLLERR) return close_connection(fd);
    if (events & (EPOLLRDHUP | EPOLLHUP)) c.peer_closed = true;
    if (!c.pending.empty()) {
      // Not reading while bytes wait: the send queue bounds what this connection holds.
      if (!(events & (EPOLLOUT | EPOLLHUP))) return;
      const ssize_t n = ::send(fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return close_connection(fd);
      }
      c.pending.erase(0, static_cast<std::size_t>(n));
      if (!c.pending.empty()) return;
      // Flushed: read what arrived meanwhile (its edge came while we were not reading).
    } else if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
      return;  // writable with nothing to write
    }
    read_all(fd, c);
  }

  // Reads and echoes until the socket is drained. A read shorter than the buffer drained it
  // (epoll(7): for stream sockets that tells the end of the readable data; anything arriving
  // later raises a new edge), which spares the recv() that would only say EAGAIN, unless the
  // peer has shut down its side: then read on until recv() returns 0.
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
        return;  // EPOLLOUT flushes it, then reading resumes
      }
      if (got < buffer_size && !c.peer_closed && !until_eagain_) return;
    }
  }

  void close_connection(int fd) {
    conns_[fd].reset();
    ::close(fd);  // also leaves the epoll set (no other descriptor refers to the socket)
  }

  static constexpr std::size_t buffer_size = 64 * 1024;
  int listen_fd_;
  int stop_fd_;
  bool until_eagain_;
  int epfd_ = -1;
  std::unique_ptr<char[]> buffer_ = std::make_unique<char[]>(buffer_size);
  std::vector<std::unique_ptr<connection>> conns_;  // by descriptor
};

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: epoll-echo [--host ADDR] [--port N] [--threads N] [--read-until-eagain]\n"
               "  --host ADDR   IPv4 address to bind (default 127.0.0.1)\n"
               "  --port N      port; 0 = any free port (default 4050)\n"
               "  --threads N   threads, one epoll set and listen socket each (default: "
               "hardware concurrency)\n"
               "  --read-until-eagain  read until recv() says EAGAIN (default: a read shorter "
               "than the buffer ends the drain, epoll(7))\n");
  std::exit(code);
}

unsigned long parse(std::string_view flag, std::string_view v, unsigned long max) {
  unsigned long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n > max) {
    std::fprintf(stderr, "epoll-echo: bad value '%.*s' for %.*s\n", int(v.size()), v.data(),
                 int(flag.size()), flag.data());
    std::exit(2);
  }
  return n;
}

// A non-blocking SO_REUSEPORT listen socket on addr; -1 on error (errno set).
int listen_on(const sockaddr_in& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 1024) != 0) {  // atoll's default backlog
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned short port = 4050;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  bool until_eagain = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") usage(0);
    if (flag == "--read-until-eagain") {
      until_eagain = true;
      continue;
    }
    if (i + 1 >= argc) usage(2);
    const std::string_view value = argv[++i];
    if (flag == "--host") {
      host = value;
    } else if (flag == "--port") {
      port = static_cast<unsigned short>(parse(flag, value, 65535));
    } else if (flag == "--threads") {
      threads = static_cast<unsigned>(parse(flag, value, 1024));
      if (threads == 0) usage(2);
    } else {
      usage(2);
    }
  }

  // SIGINT/SIGTERM are taken by sigwait() on the main thread; blocked before any thread starts
  // so no worker is interrupted by them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "epoll-echo: --host must be an IPv4 address: %s\n", host.c_str());
    return 2;
  }
  std::vector<int> listeners;
  for (unsigned i = 0; i < threads; ++i) {
    const int fd = listen_on(addr);
    if (fd < 0) {
      std::fprintf(stderr, "epoll-echo: cannot listen on %s:%u: %s\n", host.c_str(), port,
                   std::strerror(errno));
      return 1;
    }
    // Port 0: the first socket picks the port, the others join it.
    if (i == 0) {
      socklen_t len = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    }
    listeners.push_back(fd);
  }
  const int stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) {
    std::perror("epoll-echo: eventfd");
    return 1;
  }
  std::vector<std::unique_ptr<worker>> workers;
  for (const int fd : listeners) {
    workers.push_back(std::make_unique<worker>(fd, stop_fd, until_eagain));
    if (!workers.back()->init()) {
      std::perror("epoll-echo: epoll");
      return 1;
    }
  }
  std::printf("listening on %s:%u\n", host.c_str(), ntohs(addr.sin_port));
  std::fflush(stdout);

  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back([&w] { w->run(); });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  const std::uint64_t one = 1;
  if (::write(stop_fd, &one, sizeof one) < 0) std::perror("epoll-echo: eventfd write");
  for (auto& t : pool) t.join();
  workers.clear();
  for (const int fd : listeners) ::close(fd);
  ::close(stop_fd);
  return 0;
}
