// uring-echo (experiment for issue 10, item 2; not built by CMake, not in bench/run).
// The 64 B echo of bench/baseline/epoll_echo.cpp on io_uring (liburing 2.3, Debian's
// liburing-dev), one ring per thread, one SO_REUSEPORT listener per thread, accepted with a
// multishot accept. Two ways to drive a connection, both armed once per connection:
//   --io recv  (default) one multishot recv per connection (IORING_RECV_MULTISHOT, kernel 6.0)
//              taking buffers from a provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19);
//              the reply is a send SQE on the same buffer, which goes back to the buffer ring
//              when the send completes. No per-connection buffer; at most one send in flight
//              per connection (later bytes queue behind it, so order holds).
//   --io poll  one multishot poll per connection (IORING_POLL_ADD_MULTI, POLLIN | POLLRDHUP),
//              then recv()/send() system calls as epoll-echo makes them: the ring used only
//              as a readiness set.
// Two ways to run the ring:
//   (default)  io_uring_submit_and_wait(1) loop: one io_uring_enter per batch submits the new
//              SQEs and waits (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN).
//   --asio     an Asio io_context runs the thread and waits on the ring's descriptor through an
//              asio::posix::stream_descriptor (async_wait(wait_read) -> reap CQEs ->
//              io_uring_submit -> re-arm): what coexisting with atoll's io_context costs.
//              No DEFER_TASKRUN there: a deferred-taskrun ring only posts completions inside
//              io_uring_enter(GETEVENTS), so its descriptor would not become readable by itself.
//
// Build (needs liburing-dev; one line):
//   g++ -std=c++20 -O2 -DNDEBUG -DASIO_STANDALONE -DASIO_NO_DEPRECATED
//       -DASIO_HAS_STD_ALIGNED_ALLOC=1 bench/experiments/uring_echo.cpp
//       -o build/bench/bench/uring-echo -luring -pthread
// Run:
//   build/bench/bench/uring-echo --port 0 [--threads 1] [--io recv|poll] [--asio]
//   prints "listening on 127.0.0.1:PORT"; SIGINT/SIGTERM stop it (exit 0).

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#ifndef URING_BUF_COUNT
#define URING_BUF_COUNT 1024
#endif

namespace {

enum op : std::uint64_t { op_accept, op_recv, op_send, op_poll, op_pollout, op_stop, op_ignore };
constexpr std::uint64_t tag(op o, int fd) { return (static_cast<std::uint64_t>(fd) << 8) | o; }

struct connection {
  std::string pending;         // bytes behind the send in flight (recv mode) / unsent (poll)
  std::string inflight;        // recv mode: the bytes of a send of queued bytes
  int send_buf = -1;           // recv mode: ring buffer id of the send in flight, -1 = none,
                               // buf_count = the send is of `inflight`
  unsigned send_len = 0;       // recv mode: bytes of the send in flight
  bool recv_armed = false;     // recv mode: the multishot recv is live
  bool peer_closed = false;    // poll mode: POLLRDHUP seen
  bool closing = false;
};

struct options {
  bool poll_mode = false;
  bool asio = false;
  int taskrun = -1;  // --taskrun: -1 = per mode (defer standalone, plain under Asio)
};
enum taskrun_mode { taskrun_plain, taskrun_coop, taskrun_defer };

class worker {
 public:
  worker(int listen_fd, int stop_fd, options opt)
      : listen_fd_(listen_fd), stop_fd_(stop_fd), opt_(opt) {}
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  ~worker() {
    for (std::size_t fd = 0; fd < conns_.size(); ++fd) {
      if (conns_[fd]) ::close(static_cast<int>(fd));
    }
    if (ring_ok_) io_uring_queue_exit(&ring_);
    if (bufs_) std::free(bufs_);
    if (br_) ::munmap(br_, br_bytes_);
  }

  bool init() {
    io_uring_params p{};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER;
    const int taskrun = opt_.taskrun >= 0 ? opt_.taskrun : opt_.asio ? taskrun_plain : taskrun_defer;
    if (taskrun == taskrun_defer) p.flags |= IORING_SETUP_DEFER_TASKRUN;
    if (taskrun == taskrun_coop) p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    p.cq_entries = 16384;
    if (int e = io_uring_queue_init_params(4096, &ring_, &p); e < 0) {
      std::fprintf(stderr, "uring-echo: io_uring_queue_init: %s\n", std::strerror(-e));
      return false;
    }
    ring_ok_ = true;
    if (!opt_.poll_mode && !init_buffers()) return false;
    io_uring_prep_multishot_accept(sqe(), listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(last_, tag(op_accept, listen_fd_));
    if (!opt_.asio) {
      io_uring_prep_poll_add(sqe(), stop_fd_, POLLIN);
      io_uring_sqe_set_data64(last_, tag(op_stop, stop_fd_));
    }
    return true;
  }

  void run() {
    if (opt_.asio) return run_asio();
    while (!stopped_) {
      const int r = io_uring_submit_and_wait(&ring_, 1);
      if (r < 0 && r != -EINTR && r != -EBUSY) {
        std::fprintf(stderr, "uring-echo: submit_and_wait: %s\n", std::strerror(-r));
        return;
      }
      reap();
    }
  }

  void stop() {
    if (opt_.asio) asio::post(ctx_, [this] { ctx_.stop(); });
  }

 private:
  static constexpr unsigned buf_count = URING_BUF_COUNT;  // power of two (-DURING_BUF_COUNT=N)
  static constexpr unsigned buf_size = 4096;
  static constexpr int bgid = 1;

  bool init_buffers() {
    br_bytes_ = buf_count * sizeof(io_uring_buf);
    void* m = ::mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (m == MAP_FAILED) return false;
    br_ = static_cast<io_uring_buf_ring*>(m);
    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(br_);
    reg.ring_entries = buf_count;
    reg.bgid = bgid;
    if (int e = io_uring_register_buf_ring(&ring_, &reg, 0); e < 0) {
      std::fprintf(stderr, "uring-echo: register_buf_ring: %s\n", std::strerror(-e));
      return false;
    }
    bufs_ = static_cast<char*>(std::aligned_alloc(4096, std::size_t{buf_count} * buf_size));
    for (unsigned i = 0; i < buf_count; ++i) {
      io_uring_buf_ring_add(br_, buf(i), buf_size, static_cast<unsigned short>(i),
                            io_uring_buf_ring_mask(buf_count), static_cast<int>(i));
    }
    io_uring_buf_ring_advance(br_, buf_count);
    return true;
  }

  char* buf(unsigned id) const { return bufs_ + std::size_t{id} * buf_size; }
  void give_back(int id) {
    io_uring_buf_ring_add(br_, buf(static_cast<unsigned>(id)), buf_size,
                          static_cast<unsigned short>(id), io_uring_buf_ring_mask(buf_count), 0);
    io_uring_buf_ring_advance(br_, 1);
  }

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    while (!s) {  // SQ full: submit what is there (rare: 4096 entries)
      io_uring_submit(&ring_);
      s = io_uring_get_sqe(&ring_);
    }
    last_ = s;
    return s;
  }

  void run_asio() {
    ring_fd_.assign(ring_.ring_fd);
    io_uring_submit(&ring_);  // the accept queued by init()
    arm_asio();
    ctx_.run();
    ring_fd_.release();  // the ring closes it
  }

  // Per batch: Asio's epoll_wait, the epoll_ctl(MOD) of this async_wait, and one
  // io_uring_submit (io_uring_enter) when the batch queued SQEs.
  void arm_asio() {
    ring_fd_.async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
      if (ec) return;
      reap();
      if (io_uring_sq_ready(&ring_) > 0) io_uring_submit(&ring_);
      arm_asio();
    });
  }

  void reap() {
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      on_cqe(cqe->user_data, cqe->res, cqe->flags);
    }
    io_uring_cq_advance(&ring_, seen);
  }

  void on_cqe(std::uint64_t data, int res, unsigned flags) {
    const int fd = static_cast<int>(data >> 8);
    switch (static_cast<op>(data & 0xff)) {
      case op_stop:
        stopped_ = true;
        return;
      case op_accept:
        if (res >= 0) admit(res);
        if (!(flags & IORING_CQE_F_MORE)) {  // the multishot accept ended: re-arm it
          io_uring_prep_multishot_accept(sqe(), listen_fd_, nullptr, nullptr,
                                         SOCK_NONBLOCK | SOCK_CLOEXEC);
          io_uring_sqe_set_data64(last_, tag(op_accept, listen_fd_));
        }
        return;
      case op_recv:
        return on_recv(fd, res, flags);
      case op_send:
        return on_send(fd, res);
      case op_poll:
        return on_poll(fd, res, flags);
      case op_pollout:
        return on_poll(fd, res, IORING_CQE_F_MORE);  // one-shot: the multishot poll is alive
      case op_ignore:
        return;
    }
  }

  void admit(int fd) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (static_cast<std::size_t>(fd) >= conns_.size()) conns_.resize(fd + 1024);
    conns_[fd] = std::make_unique<connection>();
    if (opt_.poll_mode) {
      io_uring_prep_poll_multishot(sqe(), fd, POLLIN | POLLRDHUP);
      io_uring_sqe_set_data64(last_, tag(op_poll, fd));
    } else {
      arm_recv(fd, *conns_[fd]);
    }
  }

  void arm_recv(int fd, connection& c) {
    io_uring_prep_recv_multishot(sqe(), fd, nullptr, 0, 0);
    last_->flags |= IOSQE_BUFFER_SELECT;
    last_->buf_group = bgid;
    io_uring_sqe_set_data64(last_, tag(op_recv, fd));
    c.recv_armed = true;
  }

  // --io recv --------------------------------------------------------------------------------
  void on_recv(int fd, int res, unsigned flags) {
    connection& c = *conns_[fd];
    const bool more = flags & IORING_CQE_F_MORE;
    if (!more) c.recv_armed = false;
    if (res > 0) {
      const int id = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
      if (c.send_buf < 0 && c.pending.empty()) {
        submit_send(fd, c, buf(static_cast<unsigned>(id)), static_cast<unsigned>(res), id);
      } else {  // a send is in flight: queue behind it, keep order
        c.pending.append(buf(static_cast<unsigned>(id)), static_cast<std::size_t>(res));
        give_back(id);
      }
      if (!more && !c.closing) arm_recv(fd, c);  // ended early (e.g. buffers ran out)
      return;
    }
    if (res == -ENOBUFS && !c.closing) return arm_recv(fd, c);
    // 0 = EOF, or an error: the multishot recv has ended (no F_MORE).
    c.closing = true;
    maybe_close(fd, c);
  }

  void submit_send(int fd, connection& c, const char* p, unsigned n, int id) {
    io_uring_prep_send(sqe(), fd, p, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(last_, tag(op_send, fd));
    c.send_buf = id;
    c.send_len = n;
  }

  void on_send(int fd, int res) {
    connection& c = *conns_[fd];
    const int id = c.send_buf;
    c.send_buf = -1;
    const bool from_ring = id < int(buf_count);
    const char* data = from_ring ? buf(static_cast<unsigned>(id)) : c.inflight.data();
    if (res >= 0 && static_cast<unsigned>(res) < c.send_len) {
      // short send: the unsent tail goes ahead of anything queued meanwhile
      c.pending.insert(0, data + res, c.send_len - static_cast<unsigned>(res));
    }
    if (from_ring) give_back(id);
    if (res < 0) {
      c.closing = true;
      return maybe_close(fd, c);
    }
    if (!c.pending.empty()) {
      c.inflight.swap(c.pending);  // `pending` may grow while this send is in flight
      c.pending.clear();
      submit_send(fd, c, c.inflight.data(), static_cast<unsigned>(c.inflight.size()),
                  static_cast<int>(buf_count));
      return;
    }
    maybe_close(fd, c);
  }

  void maybe_close(int fd, connection& c) {
    if (!c.closing || c.send_buf >= 0 || c.recv_armed) return;
    conns_[fd].reset();
    ::close(fd);
  }

  // --io poll --------------------------------------------------------------------------------
  void on_poll(int fd, int res, unsigned flags) {
    connection* cp = conns_[fd].get();
    if (!cp) return;
    connection& c = *cp;
    if (res == -ECANCELED) return;
    if (!(flags & IORING_CQE_F_MORE) && res >= 0) {  // the multishot poll ended: re-arm it
      io_uring_prep_poll_multishot(sqe(), fd, POLLIN | POLLRDHUP);
      io_uring_sqe_set_data64(last_, tag(op_poll, fd));
    }
    if (res < 0 || (res & (POLLERR | POLLNVAL))) return close_polled(fd);
    if (res & (POLLRDHUP | POLLHUP)) c.peer_closed = true;
    if (!c.pending.empty()) {
      if (!(res & (POLLOUT | POLLHUP))) return;
      const ssize_t n = ::send(fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return arm_pollout(fd);
        return close_polled(fd);
      }
      c.pending.erase(0, static_cast<std::size_t>(n));
      if (!c.pending.empty()) return arm_pollout(fd);
    } else if (!(res & (POLLIN | POLLRDHUP | POLLHUP))) {
      return;
    }
    for (;;) {
      const ssize_t n = ::recv(fd, buffer_.get(), buffer_size, 0);
      if (n == 0) return close_polled(fd);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        return close_polled(fd);
      }
      const auto got = static_cast<std::size_t>(n);
      ssize_t sent = ::send(fd, buffer_.get(), got, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) return close_polled(fd);
        sent = 0;
      }
      if (static_cast<std::size_t>(sent) < got) {
        c.pending.assign(buffer_.get() + sent, got - static_cast<std::size_t>(sent));
        return arm_pollout(fd);
      }
      if (got < buffer_size && !c.peer_closed) return;
    }
  }

  void arm_pollout(int fd) {  // the one per-connection change: only after a short send
    io_uring_prep_poll_add(sqe(), fd, POLLOUT);
    io_uring_sqe_set_data64(last_, tag(op_pollout, fd));
  }

  void close_polled(int fd) {
    // The multishot poll holds a reference to the file: cancel it, or close() would not
    // release the socket. CQEs that still arrive for fd find no connection (or, if the number
    // is reused, a fresh one: a spurious wakeup, harmless for a readiness notification).
    io_uring_prep_cancel_fd(sqe(), fd, 0);
    io_uring_sqe_set_data64(last_, tag(op_ignore, 0));
    conns_[fd].reset();
    ::close(fd);
  }

  static constexpr std::size_t buffer_size = 64 * 1024;
  int listen_fd_;
  int stop_fd_;
  options opt_;
  io_uring ring_{};
  bool ring_ok_ = false;
  bool stopped_ = false;
  io_uring_sqe* last_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t br_bytes_ = 0;
  char* bufs_ = nullptr;
  std::unique_ptr<char[]> buffer_ = std::make_unique<char[]>(buffer_size);
  std::vector<std::unique_ptr<connection>> conns_;
  asio::io_context ctx_{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  asio::posix::stream_descriptor ring_fd_{ctx_};
};

unsigned long parse(std::string_view v, unsigned long max) {
  unsigned long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n > max) {
    std::fprintf(stderr, "uring-echo: bad value '%.*s'\n", int(v.size()), v.data());
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
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--asio") {
      opt.asio = true;
      continue;
    }
    if (i + 1 >= argc) return 2;
    const std::string_view value = argv[++i];
    if (flag == "--host") {
      host = value;
    } else if (flag == "--port") {
      port = static_cast<unsigned short>(parse(value, 65535));
    } else if (flag == "--threads") {
      threads = static_cast<unsigned>(std::max(1ul, parse(value, 1024)));
    } else if (flag == "--taskrun" && (value == "plain" || value == "coop" || value == "defer")) {
      opt.taskrun = value == "plain" ? taskrun_plain : value == "coop" ? taskrun_coop : taskrun_defer;
    } else if (flag == "--io" && (value == "recv" || value == "poll")) {
      opt.poll_mode = value == "poll";
    } else {
      std::fprintf(stderr,
                   "usage: uring-echo [--host A] [--port N] [--threads N] [--io recv|poll] [--asio]\n                  [--taskrun plain|coop|defer]\n");
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
  const int stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::vector<int> listeners;
  std::vector<std::unique_ptr<worker>> workers;
  for (unsigned i = 0; i < threads; ++i) {
    const int fd = listen_on(addr);
    if (fd < 0) {
      std::fprintf(stderr, "uring-echo: listen: %s\n", std::strerror(errno));
      return 1;
    }
    if (i == 0) {
      socklen_t len = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    }
    listeners.push_back(fd);
    workers.push_back(std::make_unique<worker>(fd, stop_fd, opt));
  }
  // Each ring is created on the thread that submits to it: IORING_SETUP_SINGLE_ISSUER (and
  // DEFER_TASKRUN) make any other task's io_uring_enter fail with EEXIST.
  std::latch ready(static_cast<std::ptrdiff_t>(workers.size()));
  std::vector<std::thread> pool;
  for (auto& w : workers) {
    pool.emplace_back([&w, &ready] {
      if (!w->init()) std::exit(1);
      ready.count_down();
      w->run();
    });
  }
  ready.wait();
  std::printf("listening on %s:%u\n", host.c_str(), ntohs(addr.sin_port));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  const std::uint64_t one = 1;
  if (::write(stop_fd, &one, sizeof one) < 0) std::perror("uring-echo: eventfd write");
  for (auto& w : workers) w->stop();
  for (auto& t : pool) t.join();
  workers.clear();
  for (const int fd : listeners) ::close(fd);
  ::close(stop_fd);
  return 0;
}
