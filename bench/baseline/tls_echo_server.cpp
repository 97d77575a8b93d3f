// bare-asio-tls-echo: the TLS twin of bare-asio-echo (echo_server.cpp), the yardstick for
// atoll's TLS rows. Written the way Asio's own ssl example writes a server: one io_context per
// thread, one SO_REUSEPORT listen socket per thread, and per connection an
// asio::ssl::stream<tcp::socket> with a 4 KiB buffer: async_handshake, then async_read_some →
// async_write → async_read_some. TLS 1.3 only (the bench rows measure TLS 1.3); otherwise
// OpenSSL's defaults as asio::ssl::context leaves them (no SSL_MODE_RELEASE_BUFFERS, session
// tickets on). No limit, no timeouts, no metrics: whatever atoll spends beyond this is its
// overhead.
//
//   bare-asio-tls-echo --port 0 --threads 2 --tls-cert cert.pem --tls-key key.pem
//                                                 prints "listening on 127.0.0.1:PORT"
//
// The certificate flags are atoll-echo's. SIGINT/SIGTERM stop it (exit 0).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <asio.hpp>
#include <asio/ssl.hpp>
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
using tls_socket = asio::ssl::stream<tcp::socket>;

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, asio::ssl::context& tls) : stream_(std::move(socket), tls) {}

  void start() {
    stream_.async_handshake(asio::ssl::stream_base::server,
                            [self = shared_from_this()](std::error_code ec) {
                              if (!ec) self->read();
                            });
  }

 private:
  void read() {
    stream_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](std::error_code ec, std::size_t n) {
                              if (!ec) self->write(n);
                            });
  }

  void write(std::size_t n) {
    asio::async_write(stream_, asio::buffer(buffer_, n),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

  tls_socket stream_;
  std::array<char, 4096> buffer_;  // as bare-asio-echo: one buffer per connection
};

void accept_loop(tcp::acceptor& acceptor, asio::ssl::context& tls) {
  acceptor.async_accept([&acceptor, &tls](std::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (!ec) {
      // TCP_NODELAY as atoll and bare-asio-echo set it.
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<session>(std::move(socket), tls)->start();
    }
    // On EMFILE this re-arms at once and spins, like the Asio examples: the benchmarks never
    // go there.
    accept_loop(acceptor, tls);
  });
}

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: bare-asio-tls-echo --tls-cert FILE --tls-key FILE [--host ADDR] [--port N] "
               "[--threads N]\n"
               "  --tls-cert FILE  PEM certificate chain (required)\n"
               "  --tls-key FILE   PEM private key of --tls-cert (required)\n"
               "  --host ADDR      address to bind (default 127.0.0.1)\n"
               "  --port N         port; 0 = any free port (default 4051)\n"
               "  --threads N      io threads, one io_context and listen socket each (default: "
               "hardware concurrency)\n");
  std::exit(code);
}

unsigned long parse(std::string_view flag, std::string_view v, unsigned long max) {
  unsigned long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n > max) {
    std::fprintf(stderr, "bare-asio-tls-echo: bad value '%.*s' for %.*s\n", int(v.size()),
                 v.data(), int(flag.size()), flag.data());
    std::exit(2);
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned short port = 4051;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::string cert, key;
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
    } else if (flag == "--tls-cert") {
      cert = value;
    } else if (flag == "--tls-key") {
      key = value;
    } else {
      usage(2);
    }
  }
  if (cert.empty() || key.empty()) usage(2);

  // One context shared by every thread, as the Asio example has it (OpenSSL's SSL_CTX is safe
  // to share once configured).
  asio::ssl::context tls(asio::ssl::context::tls_server);
  try {
    tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::single_dh_use);
    SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_3_VERSION);
    tls.use_certificate_chain_file(cert);
    tls.use_private_key_file(key, asio::ssl::context::pem);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bare-asio-tls-echo: cannot load %s / %s: %s\n", cert.c_str(),
                 key.c_str(), e.what());
    return 1;
  }

  return bench::serve_reuseport("bare-asio-tls-echo", host, port, threads,
                                [&](tcp::acceptor& a) { accept_loop(a, tls); });
}
