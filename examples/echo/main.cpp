// atoll-echo: a plain-TCP echo server (bytes in, the same bytes out) built on atoll.
//
//   atoll-echo --port 4040 --health-port 4041 --metrics-port 4042    (--help lists all flags)
//   nc 127.0.0.1 4040
//
// Read it top to bottom: the three handlers (what one connection does), the command-line
// flags, then main(): listeners → start() → run(). SIGINT or SIGTERM makes run() drain every
// connection gracefully and return.

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

namespace {

using namespace std::chrono_literals;

// ---- Handlers: one object per connection; every callback runs on that connection's io
// ---- thread, never concurrently, so no locks are needed.

/// Echo: bytes in, the same bytes out.
class echo_handler final : public atl::handler {
 public:
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    // `data` points into the io thread's shared receive buffer and is reused after we return;
    // send() writes what it can now and copies the rest into this connection's queue.
    // A peer that writes faster than it reads fills that queue: stop reading until it drains
    // (TCP flow control then slows the peer down) instead of buffering without bound.
    if (c.send(data) == atl::send_result::backpressure) c.pause_reading();
  }
  void on_writable(atl::connection& c) override { c.resume_reading(); }
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
  std::optional<std::uint16_t> health_port;   // none by default
  std::optional<std::uint16_t> metrics_port;  // none by default
};

void print_help() {
  const options d;
  std::printf(
      "usage: atoll-echo [flags]\n"
      "A plain-TCP echo server. Ctrl-C (SIGINT) or SIGTERM drains connections and exits 0.\n"
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
      "  --health-port N          also listen on N, answer \"ok\\n\" to every line; "
      "own limit of 16\n"
      "                           connections (default: off)\n"
      "  --metrics-port N         also listen on N, serve Prometheus metrics to HTTP GET "
      "(default: off)\n"
      "  --help                   show this text\n"
      "\n"
      "Prints \"listening on HOST:PORT\" (and \"health on ...\", \"metrics on ...\") once bound.\n"
      "Exit codes: 0 ok, 1 start failed (e.g. port in use), 2 bad flag.\n",
      d.host.c_str(), unsigned{d.port}, d.threads, d.max_connections, d.retry_count,
      static_cast<long long>(d.retry_wait.count()), static_cast<long long>(d.read_timeout.count()));
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
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse_flags(argc, argv);

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
  const atl::listener_id echo_id =
      server.add_listener(echo, [](atl::connection&) { return std::make_unique<echo_handler>(); });

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

  // Blocks until SIGINT/SIGTERM, then drains: stops accepting, calls on_shutdown on every
  // connection (the default closes it after its queued writes), waits up to each listener's
  // shutdown_timeout (15 s) and aborts what is left.
  server.run();
  std::printf("stopped\n");
  return 0;
}
