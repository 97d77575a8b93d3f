// atoll-http-hello: a small HTTP/1.1 server. `GET /` answers "Hello, world!", `GET /metrics`
// the server's counters in the Prometheus text format. Keep-alive and pipelining (several
// requests in one read are answered in order, in one write), `Connection: close` and HTTP/1.0
// semantics, the strict request parser of atoll::websocket (a bad request gets its status and
// a close), and `503 Service Unavailable` + `Retry-After` for clients over --max-connections.
// Try it: `atoll-http-hello --port 0`, then `curl -v http://127.0.0.1:PORT/`.

#include <algorithm>
#include <atoll/atoll.hpp>
#include <atoll/ws/error.hpp>
#include <atoll/ws/handshake.hpp>
#include <atoll/ws/http_request.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <thread>

#include "../common/cli.hpp"

namespace {

// Sent (one non-blocking try) to a client that arrives when the listener is full.
constexpr std::string_view busy_response =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Retry-After: 1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Length: 5\r\n"
    "Connection: close\r\n"
    "\r\n"
    "busy\n";

// The IMF-fixdate of now, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 §5.6.7).
std::string http_date() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char text[40];
  return {text, std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc)};
}

// One handler per connection; all its callbacks run on the connection's io thread.
class http_handler final : public atl::handler {
 public:
  explicit http_handler(const atl::server& server) : server_(server) {}

  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    out_.clear();  // the responses to every request in this read, sent with one write
    while (!data.empty() && !closing_) {
      if (body_left_ > 0) {  // a request body: this server ignores it
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, data.size()));
        body_left_ -= n;
        data = data.subspan(n);
        continue;
      }
      const auto r = parser_.parse(data);
      if (r.status == atl::ws::parse_status::need_more) break;  // the parser kept the bytes
      if (r.failed()) {                                         // 400, 414, 431 or 505, then close
        out_ += atl::ws::format_error_response(r.ec);
        closing_ = true;
        break;
      }
      data = data.subspan(r.consumed);  // what follows is a body or the next request
      respond(parser_.request());
      parser_.reset();
    }
    if (!out_.empty() && c.send(out_) == atl::send_result::backpressure)
      c.pause_reading();      // the client is not reading its responses: stop reading requests
    if (closing_) c.close();  // after the queued responses are written
  }

  void on_writable(atl::connection& c) override { c.resume_reading(); }

 private:
  void respond(const atl::ws::http_request& req) {
    // A chunked body cannot be skipped without decoding it: refuse it and close.
    closing_ = !req.keep_alive() || req.header("Transfer-Encoding").has_value();
    body_left_ = req.content_length().value_or(0);

    unsigned status = 200;
    std::string_view content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string_view extra;
    if (req.header("Transfer-Encoding")) {
      status = 501;
      body = "Transfer-Encoding is not supported\n";
    } else if (req.method() != "GET" && req.method() != "HEAD") {
      status = 405;
      body = "only GET and HEAD\n";
      extra = "Allow: GET, HEAD\r\n";
    } else if (req.path() == "/") {
      body = "Hello, world!\n";
    } else if (req.path() == "/metrics") {
      content_type = "text/plain; version=0.0.4";
      body = atl::to_prometheus(server_.stats());  // any thread may take a snapshot
    } else {
      status = 404;
      body = "not found\n";
    }

    out_ += "HTTP/1.1 " + std::to_string(status) + " ";
    out_ += atl::ws::reason_phrase(status);
    out_ += "\r\nDate: " + http_date();
    out_ += "\r\nContent-Type: ";
    out_ += content_type;
    out_ += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    out_ += extra;
    if (closing_)
      out_ += "Connection: close\r\n";
    else if (req.version_minor() == 0)
      out_ += "Connection: keep-alive\r\n";  // HTTP/1.0 asked for it: confirm (RFC 9112 §9.3)
    out_ += "\r\n";
    if (req.method() != "HEAD") out_ += body;
  }

  const atl::server& server_;
  atl::ws::http_request_parser parser_;
  std::string out_;  // reused: keeps its capacity from read to read
  std::uint64_t body_left_ = 0;
  bool closing_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::size_t max_connections = 16384;
  example::cli cli("atoll-http-hello",
                   "HTTP/1.1 hello server: GET / and GET /metrics, keep-alive, pipelining.");
  cli.add("--host", "IP address to bind", host);
  cli.add("--port", "TCP port; 0 = any free port", port);
  cli.add("--threads", "io threads", threads);
  cli.add("--max-connections", "most connections at once; more get 503", max_connections);
  cli.parse(argc, argv);

  atl::server_config config;
  config.io_threads = threads;
  config.stop_signals = {SIGINT, SIGTERM};  // run() drains and returns on these
  atl::server server(config);

  atl::listener_config listener;
  listener.name = "http";
  listener.host = host;
  listener.port = port;
  listener.max_connections = max_connections;
  listener.reject_response = std::string(busy_response);
  const auto id = server.add_listener(
      listener, [&server](atl::connection&) { return std::make_unique<http_handler>(server); });

  std::error_code ec;
  server.start(ec);
  if (ec) {
    std::fprintf(stderr, "atoll-http-hello: %s\n", server.last_error().c_str());
    return ec == atl::errc::invalid_config ? 2 : 1;
  }
  std::printf("listening on %s\n", server.local_endpoint(id).to_string().c_str());
  std::fflush(stdout);
  server.run();
}
