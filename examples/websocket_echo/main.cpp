// atoll-ws-echo: a WebSocket echo server (RFC 6455, optional RFC 7692 permessage-deflate).
// Every text or binary message comes back as the same type, on any request path. It is the
// server the interop tests and the benchmarks run against. Try it: `atoll-ws-echo --port 0`,
// then `python3 -m websockets ws://127.0.0.1:PORT/`.

#include <atoll/atoll.hpp>
#include <atoll/ws/session.hpp>
#include <csignal>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "../common/cli.hpp"

// One handler per WebSocket session. Flow control is the session's: when the client reads
// slower than it sends, the session stops reading until its write queue has drained, so
// memory stays bounded; one message of any allowed size (--max-message-size) still goes out.
class echo_handler final : public atl::ws::handler {
 public:
  void on_text(atl::ws::session& s, std::string_view text) override { s.send_text(text); }
  void on_binary(atl::ws::session& s, std::span<const std::byte> data) override {
    s.send_binary(data);
  }
};

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9001;
  std::size_t threads = 1;
  std::size_t max_connections = 16384;
  std::size_t max_message_size = 16 * 1024 * 1024;
  bool deflate = false;
  example::cli cli("atoll-ws-echo", "WebSocket echo server: every message comes back as sent.");
  cli.add("--host", "IP address to bind", host);
  cli.add("--port", "TCP port; 0 = any free port", port);
  cli.add("--threads", "io threads", threads);
  cli.add("--max-connections", "most connections at once", max_connections);
  cli.add("--max-message-size", "largest message and frame in bytes (bigger: close 1009)",
          max_message_size);
  cli.add("--deflate", "negotiate permessage-deflate (RFC 7692)", deflate);
  cli.parse(argc, argv);

  atl::server_config config;
  config.io_threads = threads;
  config.stop_signals = {SIGINT, SIGTERM};  // run() drains and returns on these
  atl::server server(config);

  atl::ws::options ws;
  ws.deflate = deflate;
  ws.max_message_size = max_message_size;
  ws.max_frame_size = max_message_size;

  atl::listener_config listener;
  listener.host = host;
  listener.port = port;
  listener.max_connections = max_connections;
  const auto id = server.add_listener(
      listener, atl::ws::upgrade_factory(ws, [](const atl::ws::http_request&, atl::connection&) {
        return std::make_unique<echo_handler>();
      }));

  std::error_code ec;
  server.start(ec);
  if (ec) {
    std::fprintf(stderr, "atoll-ws-echo: %s\n", server.last_error().c_str());
    return ec == atl::errc::invalid_config ? 2 : 1;
  }
  std::printf("listening on %s\n", server.local_endpoint(id).to_string().c_str());
  std::fflush(stdout);
  server.run();
}
