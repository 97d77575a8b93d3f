// atoll-daytime: the classic smallest server (RFC 867): writes the current date and time,
// then closes. Try it: `atoll-daytime --port 0`, then `nc 127.0.0.1 PORT`.

#include <atoll/atoll.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>

#include "../common/cli.hpp"

// One handler per connection: on_open sends the time and closes after the write.
class daytime_handler final : public atl::handler {
 public:
  void on_open(atl::connection& c) override {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    ::gmtime_r(&now, &utc);
    char text[64];
    const auto n = std::strftime(text, sizeof text, "%A, %B %d, %Y %H:%M:%S-UTC\r\n", &utc);
    c.send(std::string_view(text, n));
    c.close();  // after the queued bytes are written
  }
  void on_data(atl::connection&, std::span<const std::byte>) override {}  // input is ignored
};

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::uint16_t port = 1313;
  std::size_t threads = 1;
  std::size_t max_connections = 1024;
  example::cli cli("atoll-daytime", "Writes the date and time (RFC 867) and closes.");
  cli.add("--host", "IP address to bind", host);
  cli.add("--port", "TCP port; 0 = any free port", port);
  cli.add("--threads", "io threads", threads);
  cli.add("--max-connections", "most connections at once", max_connections);
  cli.parse(argc, argv);

  atl::server_config config;
  config.io_threads = threads;
  config.stop_signals = {SIGINT, SIGTERM};  // run() drains and returns on these
  atl::server server(config);

  atl::listener_config listener;
  listener.host = host;
  listener.port = port;
  listener.max_connections = max_connections;
  const auto id = server.add_listener(
      listener, [](atl::connection&) { return std::make_unique<daytime_handler>(); });

  std::error_code ec;
  server.start(ec);
  if (ec) {
    std::fprintf(stderr, "atoll-daytime: %s\n", server.last_error().c_str());
    return ec == atl::errc::invalid_config ? 2 : 1;
  }
  std::printf("listening on %s\n", server.local_endpoint(id).to_string().c_str());
  std::fflush(stdout);
  server.run();
}
