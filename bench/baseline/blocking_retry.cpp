// blocking-retry-echo: reproduces the field-report failure on purpose, so the overload
// benchmark can show it next to atoll. It is an echo server with a connection limit whose
// accept loop behaves like Thousand Island's default at the limit: it holds the accepted
// socket and *sleeps* retry_wait, up to retry_count times, waiting for a slot, and only then
// closes it. While it sleeps it accepts nothing, so new clients pile up in the kernel's accept
// queue (and, once that is full, in connect()).
//
//   blocking-retry-echo --port 0 --max-connections 100 --retry-count 5 --retry-wait-ms 1000
//                       --health-port 0
//
// Prints "listening on HOST:PORT" (and "health on HOST:PORT"). The health listener is served
// by a thread of its own with no limit and answers "ok\n" to every line, so the health probe
// measures only whether the machine is responsive, not this server's accept loop: the same
// fairness atoll gets from a second listener. SIGINT/SIGTERM exit at once (exit 0).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <asio.hpp>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using asio::ip::tcp;

std::atomic<std::size_t> active{0};

// An echo connection that holds one of the `max_connections` slots until it is destroyed.
class echo_session : public std::enable_shared_from_this<echo_session> {
 public:
  explicit echo_session(tcp::socket socket) : socket_(std::move(socket)) {}
  ~echo_session() { active.fetch_sub(1); }

  void read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](std::error_code ec, std::size_t n) {
                              if (!ec) self->write(n);
                            });
  }

 private:
  void write(std::size_t n) {
    asio::async_write(socket_, asio::buffer(buffer_, n),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  std::array<char, 4096> buffer_;
};

// Health: "ok\n" per line received, no limit.
class health_session : public std::enable_shared_from_this<health_session> {
 public:
  explicit health_session(tcp::socket socket) : socket_(std::move(socket)) {}

  void read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](std::error_code ec, std::size_t n) {
                              if (ec) return;
                              std::string reply;
                              for (std::size_t i = 0; i < n; ++i)
                                if (self->buffer_[i] == '\n') reply += "ok\n";
                              if (reply.empty()) return self->read();
                              self->reply_ = std::move(reply);
                              asio::async_write(self->socket_, asio::buffer(self->reply_),
                                                [self](std::error_code ec2, std::size_t) {
                                                  if (!ec2) self->read();
                                                });
                            });
  }

 private:
  tcp::socket socket_;
  std::array<char, 512> buffer_;
  std::string reply_;
};

bool try_acquire(std::size_t max) {
  std::size_t cur = active.load();
  while (cur < max) {
    if (active.compare_exchange_weak(cur, cur + 1)) return true;
  }
  return false;
}

struct options {
  std::string host = "127.0.0.1";
  unsigned short port = 4060;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::size_t max_connections = 16384;
  unsigned retry_count = 5;       // Thousand Island's max_connections_retry_count default
  unsigned retry_wait_ms = 1000;  // Thousand Island's max_connections_retry_wait default
  unsigned acceptors = 100;       // Thousand Island's num_acceptors default
  std::optional<unsigned short> health_port;
};

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: blocking-retry-echo [flags]\n"
               "  --host ADDR            address to bind (default 127.0.0.1)\n"
               "  --port N               echo port; 0 = any (default 4060)\n"
               "  --threads N            io threads serving admitted connections (default: "
               "hardware concurrency)\n"
               "  --max-connections N    limit on open echo connections (default 16384)\n"
               "  --retry-count N        sleeps per over-limit socket before closing it "
               "(default 5)\n"
               "  --retry-wait-ms MS     length of each sleep (default 1000)\n"
               "  --acceptors N          accept threads sharing the listen socket (default "
               "100)\n"
               "  --health-port N        health listener on its own thread (default: off)\n");
  std::exit(code);
}

unsigned long parse(std::string_view flag, std::string_view v, unsigned long min,
                    unsigned long max) {
  unsigned long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n < min || n > max) {
    std::fprintf(stderr, "blocking-retry-echo: bad value '%.*s' for %.*s\n", int(v.size()),
                 v.data(), int(flag.size()), flag.data());
    std::exit(2);
  }
  return n;
}

options parse_flags(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") usage(0);
    if (i + 1 >= argc) usage(2);
    const std::string_view value = argv[++i];
    if (flag == "--host") {
      o.host = value;
    } else if (flag == "--port") {
      o.port = static_cast<unsigned short>(parse(flag, value, 0, 65535));
    } else if (flag == "--threads") {
      o.threads = static_cast<unsigned>(parse(flag, value, 1, 1024));
    } else if (flag == "--max-connections") {
      o.max_connections = parse(flag, value, 1, 10'000'000);
    } else if (flag == "--retry-count") {
      o.retry_count = static_cast<unsigned>(parse(flag, value, 0, 1000));
    } else if (flag == "--retry-wait-ms") {
      o.retry_wait_ms = static_cast<unsigned>(parse(flag, value, 0, 3'600'000));
    } else if (flag == "--acceptors") {
      o.acceptors = static_cast<unsigned>(parse(flag, value, 1, 1000));
    } else if (flag == "--health-port") {
      o.health_port = static_cast<unsigned short>(parse(flag, value, 0, 65535));
    } else {
      usage(2);
    }
  }
  return o;
}

void health_accept_loop(tcp::acceptor& a) {
  a.async_accept([&a](std::error_code ec, tcp::socket s) {
    if (!ec) std::make_shared<health_session>(std::move(s))->read();
    if (a.is_open()) health_accept_loop(a);
  });
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse_flags(argc, argv);

  // Signals are taken synchronously by main (sigwait) after the other threads inherit the mask.
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGINT);
  sigaddset(&stop_set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);

  std::vector<std::unique_ptr<asio::io_context>> io;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;
  for (unsigned i = 0; i < opt.threads; ++i) {
    io.push_back(std::make_unique<asio::io_context>(1));
    work.push_back(asio::make_work_guard(*io.back()));
  }

  asio::io_context health_io(1);
  tcp::acceptor listener(io[0]->get_executor());  // only its descriptor is used (blocking)
  std::optional<tcp::acceptor> health;
  try {
    tcp::endpoint ep(asio::ip::make_address(opt.host), opt.port);
    listener.open(ep.protocol());
    listener.set_option(tcp::acceptor::reuse_address(true));
    listener.bind(ep);
    listener.listen(1024);  // the same backlog as atoll's default
    std::printf("listening on %s:%u\n", opt.host.c_str(), listener.local_endpoint().port());
    if (opt.health_port) {
      health.emplace(health_io, tcp::endpoint(asio::ip::make_address(opt.host), *opt.health_port));
      std::printf("health on %s:%u\n", opt.host.c_str(), health->local_endpoint().port());
      health_accept_loop(*health);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "blocking-retry-echo: cannot listen: %s\n", e.what());
    return 1;
  }
  std::fflush(stdout);

  std::vector<std::thread> threads;
  for (auto& ctx : io) threads.emplace_back([&ctx] { ctx->run(); });
  threads.emplace_back([&] { health_io.run(); });

  // The accept loops: blocking accept, and at the limit sleep while holding the socket.
  const int listen_fd = listener.native_handle();
  const tcp protocol = listener.local_endpoint().protocol();
  std::atomic<unsigned> next_thread{0};
  for (unsigned a = 0; a < opt.acceptors; ++a) {
    threads.emplace_back([&] {
      for (;;) {
        const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EMFILE || errno == ENFILE) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
          continue;
        }
        bool admitted = try_acquire(opt.max_connections);
        // The behaviour under test: sleep in the accept loop, holding the accepted socket.
        for (unsigned r = 0; !admitted && r < opt.retry_count; ++r) {
          std::this_thread::sleep_for(std::chrono::milliseconds(opt.retry_wait_ms));
          admitted = try_acquire(opt.max_connections);
        }
        if (!admitted) {
          ::close(fd);
          continue;
        }
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto& ctx = *io[next_thread.fetch_add(1) % io.size()];
        asio::post(ctx, [&ctx, fd, protocol] {
          std::error_code ec;
          tcp::socket s(ctx);
          s.assign(protocol, fd, ec);
          if (ec) {
            ::close(fd);
            active.fetch_sub(1);
            return;
          }
          std::make_shared<echo_session>(std::move(s))->read();
        });
      }
    });
  }

  int sig = 0;
  sigwait(&stop_set, &sig);
  // The accept threads sit in blocking calls; a benchmark fixture does not need a drain.
  std::fflush(stdout);
  std::_Exit(0);
}
