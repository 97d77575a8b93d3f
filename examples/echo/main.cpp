// atoll-echo: a TCP echo server (bytes in, the same bytes out) built on atoll.
//
//   atoll-echo --port 4040 --health-port 4041 --metrics-port 4042    (--help lists all flags)
//   nc 127.0.0.1 4040
//
// Read it top to bottom: the three handlers (what one connection does), the command-line
// flags, then main(): listeners → start() → run(). SIGINT or SIGTERM makes run() drain every
// connection gracefully and return. Deployment flags: TLS, the PROXY protocol behind a load
// balancer, SO_REUSEPORT restarts, systemd socket activation, a maximum connection age.

#include <algorithm>
#include <atoll/atoll.hpp>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// ---- Handlers: one object per connection; every callback runs on that connection's io
// ---- thread, never concurrently, so no locks are needed.

/// Echo: bytes in, the same bytes out.
class echo_handler final : public atl::handler {
 public:
  explicit echo_handler(bool log_connections) : log_(log_connections) {}

  void on_open(atl::connection& c) override {
    // Behind the PROXY protocol, peer() is the original client from the header.
    if (log_)
      std::fprintf(stderr, "atoll-echo: open id=%llu peer=%s\n",
                   static_cast<unsigned long long>(c.id()), c.peer().to_string().c_str());
  }
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    // `data` points into the io thread's shared receive buffer and is reused after we return;
    // send() writes what it can now and copies the rest into this connection's queue.
    // A peer that writes faster than it reads fills that queue: stop reading until it drains
    // (TCP flow control then slows the peer down) instead of buffering without bound.
    if (c.send(data) == atl::send_result::backpressure) c.pause_reading();
    received_ = true;
    if (closing_) c.close();  // the first bytes came after the drain began: answered, done
  }
  void on_writable(atl::connection& c) override { c.resume_reading(); }
  // The server is draining (SIGTERM) or the connection reached --max-connection-age-ms. A
  // connection that has had its echo is closed (after its queued bytes); one whose first bytes
  // have not arrived yet (a client that connected just before the drain) gets them echoed
  // first, so no client loses its request to a restart; --drain-timeout-ms bounds the wait.
  void on_shutdown(atl::connection& c) override {
    if (received_) return c.close();
    closing_ = true;
  }
  void on_close(atl::connection& c, atl::close_reason reason, std::error_code) override {
    if (log_)
      std::fprintf(stderr, "atoll-echo: close id=%llu reason=%s\n",
                   static_cast<unsigned long long>(c.id()), std::string(to_string(reason)).c_str());
  }

 private:
  bool log_;
  bool received_ = false;
  bool closing_ = false;
};

/// Health check: answers "ok\n" to every line received.
class health_handler final : public atl::handler {
 public:
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    std::string reply;
    for (std::byte b : data)
      if (b == std::byte{'\n'}) reply += "ok\n";
    if (!reply.empty()) c.send(reply);
  }
};

/// Metrics: answers one plain HTTP GET with the Prometheus text of server.stats(), then closes.
class metrics_handler final : public atl::handler {
 public:
  explicit metrics_handler(const atl::server& server) : server_(server) {}

  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    if (!c.is_open()) return;  // already answered
    request_.append(reinterpret_cast<const char*>(data.data()), data.size());
    if (request_.find("\r\n\r\n") == std::string::npos) {
      if (request_.size() > 8192) c.abort();  // not a plain HTTP request
      return;
    }
    const bool is_get = request_.starts_with("GET ");
    // stats() may be called from any thread, io threads included.
    const std::string body = is_get ? atl::to_prometheus(server_.stats()) : "GET only\n";
    std::string response =
        is_get ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n";
    response += "Content-Type: text/plain; version=0.0.4\r\n";
    response += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    response += "Connection: close\r\n\r\n";
    response += body;
    c.send(response);
    c.close();  // after the queued response has been written
  }

 private:
  const atl::server& server_;
  std::string request_;
};

// ---- Command-line flags (defaults are atoll's own defaults where there is one).

struct options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 4040;
  std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::size_t max_connections = atl::listener_config{}.max_connections;
  std::size_t retry_count = atl::listener_config{}.retry_count;
  std::chrono::milliseconds retry_wait = atl::listener_config{}.retry_wait;
  std::chrono::milliseconds read_timeout = atl::listener_config{}.read_timeout;
  std::chrono::milliseconds drain_timeout = atl::listener_config{}.shutdown_timeout;
  std::optional<std::uint16_t> health_port;   // none by default
  std::optional<std::uint16_t> metrics_port;  // none by default
  std::string tls_cert, tls_key;              // TLS on the echo port when both are given
  atl::proxy_protocol_mode proxy_protocol = atl::proxy_protocol_mode::off;
  std::chrono::milliseconds handshake_timeout = atl::listener_config{}.handshake_timeout;
  bool reuse_port = false;
  std::chrono::milliseconds max_connection_age = atl::listener_config{}.max_connection_age;
  std::chrono::milliseconds max_connection_age_jitter{0};
  bool log_connections = false;
};

void print_help() {
  const options d;
  std::printf(
      "usage: atoll-echo [flags]\n"
      "A TCP echo server (plain or TLS). Ctrl-C (SIGINT) or SIGTERM drains connections and "
      "exits 0.\n"
      "\n"
      "  --host ADDR              IP address to bind, also for --health-port/--metrics-port "
      "(default %s)\n"
      "  --port N                 echo port; 0 = any free port (default %u)\n"
      "  --threads N              io threads (default %zu = hardware concurrency)\n"
      "  --max-connections N      most open echo connections (default %zu)\n"
      "  --retry-count N          0 = close a client over the limit at once; N > 0 = let it "
      "wait\n"
      "                           up to N x retry-wait for a free slot (default %zu)\n"
      "  --retry-wait-ms MS       see --retry-count (default %lld)\n"
      "  --read-timeout-ms MS     close an echo connection idle this long; 0 = never "
      "(default %lld)\n"
      "  --drain-timeout-ms MS    on SIGINT/SIGTERM, wait this long for connections to finish,"
      "\n"
      "                           then abort the rest; 0 = abort at once (default %lld)\n"
      "  --health-port N          also listen on N, answer \"ok\\n\" to every line; "
      "own limit of 16\n"
      "                           connections (default: off)\n"
      "  --metrics-port N         also listen on N, serve Prometheus metrics to HTTP GET "
      "(default: off)\n"
      "\n"
      "Deployment (echo port only):\n"
      "  --tls-cert FILE          TLS with this PEM certificate chain (needs --tls-key)\n"
      "  --tls-key FILE           PEM private key of --tls-cert\n"
      "  --proxy-protocol MODE    off, v1, v2 or any: expect a PROXY protocol header (HAProxy's"
      "\n"
      "                           send-proxy / send-proxy-v2) first on every connection "
      "(default off)\n"
      "  --handshake-timeout-ms MS  time for the PROXY header and TLS handshake (default "
      "%lld)\n"
      "  --reuse-port             bind with SO_REUSEPORT, so a new server can start on the "
      "same port\n"
      "                           before this one stops (zero-downtime restarts)\n"
      "  --max-connection-age-ms MS  close connections older than this (after their echo), so"
      "\n"
      "                           clients reconnect and rebalance; 0 = never (default 0)\n"
      "  --max-connection-age-jitter-ms MS  add a random 0..MS to each age (default 0)\n"
      "  --log-connections        one line on stderr per echo connection opened and closed:\n"
      "                           \"atoll-echo: open id=N peer=ADDR\", \"atoll-echo: close id=N "
      "reason=R\"\n"
      "  --help                   show this text\n"
      "\n"
      "Socket activation: when started with systemd's LISTEN_FDS/LISTEN_PID, the first passed\n"
      "socket is the echo listener and --host/--port are not bound for it.\n"
      "Prints \"listening on HOST:PORT\" (and \"health on ...\", \"metrics on ...\") once bound.\n"
      "Exit codes: 0 ok, 1 start failed (e.g. port in use), 2 bad flag.\n",
      d.host.c_str(), unsigned{d.port}, d.threads, d.max_connections, d.retry_count,
      static_cast<long long>(d.retry_wait.count()), static_cast<long long>(d.read_timeout.count()),
      static_cast<long long>(d.drain_timeout.count()),
      static_cast<long long>(d.handshake_timeout.count()));
}

[[noreturn]] void bad_flag(std::string_view flag, std::string_view value,
                           std::string_view expected) {
  std::fprintf(stderr, "atoll-echo: %.*s: expected %.*s, got '%.*s' (see --help)\n",
               int(flag.size()), flag.data(), int(expected.size()), expected.data(),
               int(value.size()), value.data());
  std::exit(2);
}

/// A whole decimal number in [min, max], or exit 2 naming the flag.
std::uint64_t parse_number(std::string_view flag, std::string_view value, std::uint64_t min,
                           std::uint64_t max, std::string_view expected) {
  std::uint64_t n = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, n);
  if (value.empty() || ec != std::errc{} || ptr != end || n < min || n > max)
    bad_flag(flag, value, expected);
  return n;
}

options parse_flags(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      print_help();
      std::exit(0);
    }
    if (flag == "--reuse-port") {  // switches without a value
      o.reuse_port = true;
      continue;
    }
    if (flag == "--log-connections") {
      o.log_connections = true;
      continue;
    }
    std::string_view value;  // "--flag value" or "--flag=value"
    if (auto eq = flag.find('='); flag.starts_with("--") && eq != std::string_view::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      bad_flag(flag, "", "a value");
    }

    constexpr std::uint64_t max_u32 = 0xffff'ffff;
    if (flag == "--host") {
      if (value.empty()) bad_flag(flag, value, "an IP address");
      o.host = value;
    } else if (flag == "--port") {
      o.port = std::uint16_t(parse_number(flag, value, 0, 65535, "a port 0..65535"));
    } else if (flag == "--threads") {
      o.threads = parse_number(flag, value, 1, 1024, "a thread count 1..1024");
    } else if (flag == "--max-connections") {
      o.max_connections = parse_number(flag, value, 1, max_u32, "a number >= 1");
    } else if (flag == "--retry-count") {
      o.retry_count = parse_number(flag, value, 0, 1'000'000, "a number 0..1000000");
    } else if (flag == "--retry-wait-ms") {
      o.retry_wait = std::chrono::milliseconds(
          parse_number(flag, value, 1, 3'600'000, "milliseconds 1..3600000"));
    } else if (flag == "--read-timeout-ms") {
      o.read_timeout = std::chrono::milliseconds(
          parse_number(flag, value, 0, max_u32, "milliseconds >= 0 (0 = never)"));
    } else if (flag == "--drain-timeout-ms") {
      o.drain_timeout = std::chrono::milliseconds(
          parse_number(flag, value, 0, max_u32, "milliseconds >= 0 (0 = abort at once)"));
    } else if (flag == "--tls-cert") {
      if (value.empty()) bad_flag(flag, value, "a PEM file");
      o.tls_cert = value;
    } else if (flag == "--tls-key") {
      if (value.empty()) bad_flag(flag, value, "a PEM file");
      o.tls_key = value;
    } else if (flag == "--proxy-protocol") {
      if (value == "off")
        o.proxy_protocol = atl::proxy_protocol_mode::off;
      else if (value == "v1")
        o.proxy_protocol = atl::proxy_protocol_mode::v1;
      else if (value == "v2")
        o.proxy_protocol = atl::proxy_protocol_mode::v2;
      else if (value == "any")
        o.proxy_protocol = atl::proxy_protocol_mode::any;
      else
        bad_flag(flag, value, "off, v1, v2 or any");
    } else if (flag == "--handshake-timeout-ms") {
      o.handshake_timeout =
          std::chrono::milliseconds(parse_number(flag, value, 1, max_u32, "milliseconds >= 1"));
    } else if (flag == "--max-connection-age-ms") {
      o.max_connection_age = std::chrono::milliseconds(
          parse_number(flag, value, 0, max_u32, "milliseconds >= 0 (0 = never)"));
    } else if (flag == "--max-connection-age-jitter-ms") {
      o.max_connection_age_jitter =
          std::chrono::milliseconds(parse_number(flag, value, 0, max_u32, "milliseconds >= 0"));
    } else if (flag == "--health-port") {
      o.health_port = std::uint16_t(parse_number(flag, value, 0, 65535, "a port 0..65535"));
    } else if (flag == "--metrics-port") {
      o.metrics_port = std::uint16_t(parse_number(flag, value, 0, 65535, "a port 0..65535"));
    } else {
      std::fprintf(stderr, "atoll-echo: unknown flag '%.*s' (see --help)\n", int(flag.size()),
                   flag.data());
      std::exit(2);
    }
  }
  if (o.tls_cert.empty() != o.tls_key.empty())
    bad_flag(o.tls_cert.empty() ? "--tls-cert" : "--tls-key", "",
             "a PEM file (--tls-cert and --tls-key go together)");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse_flags(argc, argv);

  // Socket activation: systemd (or any parent speaking its LISTEN_FDS protocol) may hand us
  // the listening socket; then the echo port is that socket. Done first: it edits the
  // environment, which must happen before any thread starts.
  std::vector<atl::inherited_socket> inherited;
  try {
    inherited = atl::systemd_listen_fds();
  } catch (const std::exception& e) {  // malformed LISTEN_FDS / LISTEN_PID
    std::fprintf(stderr, "atoll-echo: %s\n", e.what());
    return 1;
  }

  atl::server_config config;
  config.io_threads = opt.threads;
  config.stop_signals = {SIGINT, SIGTERM};  // run() drains gracefully and returns on either
  // Structured events (accepted, rejected, closed, ...) arrive here from any thread; this one
  // only says when the drain begins.
  config.events = [](const atl::event& e) {
    static std::atomic_flag said = ATOMIC_FLAG_INIT;
    if (e.type == atl::event_type::listener_stopped && !said.test_and_set()) {
      std::printf("draining\n");
      std::fflush(stdout);
    }
  };
  atl::server server(config);

  // The public echo port, with the connection limit and what happens at it.
  atl::listener_config echo;
  echo.name = "echo";
  echo.host = opt.host;
  echo.port = opt.port;
  echo.max_connections = opt.max_connections;
  echo.retry_count = opt.retry_count;  // 0: over the limit → closed at once, never queued
  echo.retry_wait = opt.retry_wait;
  echo.read_timeout = opt.read_timeout;
  echo.shutdown_timeout = opt.drain_timeout;
  if (!inherited.empty()) echo.adopt_fd = inherited.front().fd;  // instead of host:port
  echo.reuse_port = opt.reuse_port;         // lets a new server bind this port while we still run
  echo.tls.cert_chain_file = opt.tls_cert;  // TLS is on when a certificate is given
  echo.tls.key_file = opt.tls_key;
  // Behind a load balancer that sends a PROXY header (HAProxy's send-proxy-v2): only enable
  // it when every client comes through the proxy, or anyone could claim any address.
  echo.proxy_protocol = opt.proxy_protocol;
  echo.handshake_timeout = opt.handshake_timeout;
  echo.max_connection_age = opt.max_connection_age;
  echo.max_connection_age_jitter = opt.max_connection_age_jitter;
  const atl::listener_id echo_id =
      server.add_listener(echo, [log = opt.log_connections](atl::connection&) {
        return std::make_unique<echo_handler>(log);
      });

  // Health and metrics get listeners of their own with a small limit of their own, so a
  // flood on the echo port can never starve the probes.
  std::optional<atl::listener_id> health_id;
  if (opt.health_port) {
    atl::listener_config health;
    health.name = "health";
    health.host = opt.host;
    health.port = *opt.health_port;
    health.max_connections = 16;
    health.read_timeout = 10s;
    health.shutdown_timeout = opt.drain_timeout;
    health_id = server.add_listener(
        health, [](atl::connection&) { return std::make_unique<health_handler>(); });
  }
  std::optional<atl::listener_id> metrics_id;
  if (opt.metrics_port) {
    atl::listener_config metrics;
    metrics.name = "metrics";
    metrics.host = opt.host;
    metrics.port = *opt.metrics_port;
    metrics.max_connections = 16;
    metrics.read_timeout = 10s;
    metrics.shutdown_timeout = opt.drain_timeout;
    metrics_id = server.add_listener(
        metrics, [&server](atl::connection&) { return std::make_unique<metrics_handler>(server); });
  }

  try {
    server.start();  // validates the configuration, binds, starts the io threads
  } catch (const std::invalid_argument& e) {  // a configuration value atoll refused
    std::fprintf(stderr, "atoll-echo: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // e.g. the address is already in use
    std::fprintf(stderr, "atoll-echo: %s\n", e.what());
    return 1;
  }

  std::printf("listening on %s\n", server.local_endpoint(echo_id).to_string().c_str());
  if (health_id)
    std::printf("health on %s\n", server.local_endpoint(*health_id).to_string().c_str());
  if (metrics_id)
    std::printf("metrics on %s\n", server.local_endpoint(*metrics_id).to_string().c_str());
  std::fflush(stdout);

  // Blocks until SIGINT/SIGTERM, then drains: stops accepting (closes the listening sockets,
  // so a load balancer's next connect is refused and goes to another server), calls
  // on_shutdown on every connection, waits up to --drain-timeout-ms (15 s) and aborts the rest.
  server.run();
  std::printf("stopped\n");
  return 0;
}
