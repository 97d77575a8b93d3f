// bare-asio-echo: the yardstick for atoll's overhead. A minimal echo server written the way
// the Asio examples write one: one io_context per thread, one SO_REUSEPORT listen socket per
// thread (the kernel spreads connections), and per connection a 4 KiB buffer with
// async_read_some → async_write → async_read_some. No limit, no timeouts, no metrics: any
// CPU or memory atoll spends beyond this is its overhead.
//
//   bare-asio-echo --port 0 --threads 2      prints "listening on 127.0.0.1:PORT"
//
// SIGINT/SIGTERM stop it (exit 0).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <asio.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "asio_reuseport.hpp"

namespace {

using asio::ip::tcp;

class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket socket) : socket_(std::move(socket)) {}

  void start() { read(); }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](std::error_code ec, std::size_t n) {
                              if (!ec) self->write(n);
                            });
  }

  void write(std::size_t n) {
    asio::async_write(socket_, asio::buffer(buffer_, n),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  std::array<char, 4096> buffer_;  // the per-connection buffer atoll avoids (DESIGN.md)
};

void accept_loop(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](std::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (!ec) {
      // atoll sets TCP_NODELAY by default; so does the yardstick, or latency would differ
      // for reasons that have nothing to do with either library.
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<session>(std::move(socket))->start();
    }
    // On EMFILE this re-arms at once and spins, exactly like the Asio examples: the
    // benchmarks never go there.
    accept_loop(acceptor);
  });
}

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: bare-asio-echo [--host ADDR] [--port N] [--threads N]\n"
               "  --host ADDR   address to bind (default 127.0.0.1)\n"
               "  --port N      port; 0 = any free port (default 4050)\n"
               "  --threads N   io threads, one io_context and listen socket each (default: "
               "hardware concurrency)\n");
  std::exit(code);
}

unsigned long parse(std::string_view flag, std::string_view v, unsigned long max) {
  unsigned long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n > max) {
    std::fprintf(stderr, "bare-asio-echo: bad value '%.*s' for %.*s\n", int(v.size()), v.data(),
                 int(flag.size()), flag.data());
    std::exit(2);
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned short port = 4050;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") usage(0);
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

  return bench::serve_reuseport("bare-asio-echo", host, port, threads,
                                [&](tcp::acceptor& a) { accept_loop(a); });
}
