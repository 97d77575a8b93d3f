// atoll-chat: a chat room in the browser. `GET /` serves one HTML page with a small chat client
// (plain HTTP on the same port); the page opens a WebSocket to `/ws`, and every text message a
// participant sends is broadcast to every connected participant, whichever io thread each one
// lives on. Try it: `atoll-chat --port 8000`, then open http://127.0.0.1:8000/ in two tabs.

#include <algorithm>
#include <atoll/atoll.hpp>
#include <atoll/ws/session.hpp>
#include <csignal>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "../common/cli.hpp"

namespace {

constexpr std::string_view index_html = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>atoll chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { list-style: none; padding: 0; height: 20em; overflow-y: auto; border: 1px solid #ccc; }
  #log li { padding: .2em .5em; }
  form { display: flex; gap: .5em; margin-top: .5em; }
  #text { flex: 1; }
</style>
</head>
<body>
<h1>atoll chat</h1>
<p id="status">connecting…</p>
<ul id="log"></ul>
<form id="form">
  <input id="name" size="10" aria-label="name">
  <input id="text" autocomplete="off" placeholder="message" aria-label="message">
  <button>Send</button>
</form>
<script>
const log = document.getElementById('log');
const status = document.getElementById('status');
const name = document.getElementById('name');
const text = document.getElementById('text');
name.value = 'guest' + Math.floor(Math.random() * 1000);
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
ws.onopen = () => { status.textContent = 'connected'; };
ws.onclose = (e) => { status.textContent = 'disconnected (' + e.code + ')'; };
ws.onmessage = (e) => {
  const li = document.createElement('li');
  li.textContent = e.data;
  log.append(li);
  log.scrollTop = log.scrollHeight;
};
document.getElementById('form').onsubmit = (e) => {
  e.preventDefault();
  if (text.value && ws.readyState === WebSocket.OPEN) {
    ws.send(name.value + ': ' + text.value);
    text.value = '';
  }
};
</script>
</body>
</html>
)html";

// Everyone in the chat, from any io thread: a handle per session, keyed by connection id.
class room {
 public:
  void join(atl::ws::session_handle h) {
    std::lock_guard lock(mutex_);
    members_.emplace(h.id(), std::move(h));
  }
  void leave(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    members_.erase(id);
  }
  // Posts the message to every member's io thread (one shared copy; never blocks).
  void broadcast(std::string_view text) {
    auto shared = std::make_shared<const std::string>(text);
    std::lock_guard lock(mutex_);
    for (const auto& [id, member] : members_) member.send_text(shared);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::uint64_t, atl::ws::session_handle> members_;
};

// One per WebSocket session; its callbacks run on the session's io thread.
class participant final : public atl::ws::handler {
 public:
  explicit participant(room& r) : room_(r) {}
  void on_open(atl::ws::session& s) override { room_.join(s.handle()); }
  void on_text(atl::ws::session&, std::string_view text) override { room_.broadcast(text); }
  void on_binary(atl::ws::session& s, std::span<const std::byte>) override {
    s.close(atl::ws::close_code::unsupported_data, "text only");
  }
  void on_close(atl::ws::session& s, atl::ws::close_code, std::string_view) override {
    room_.leave(s.id());
  }

 private:
  room& room_;
};

// Requests that are not WebSocket upgrades: the page, or 404 / 405.
void serve_page(const atl::ws::http_request& req, atl::connection& c) {
  using atl::ws::format_http_response;
  if (req.method() != "GET")
    c.send(
        format_http_response(405, "text/plain", "GET only\n", req.keep_alive(), "Allow: GET\r\n"));
  else if (req.path() != "/")
    c.send(format_http_response(404, "text/plain", "not found\n", req.keep_alive()));
  else
    c.send(format_http_response(200, "text/html; charset=utf-8", index_html, req.keep_alive()));
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::size_t max_connections = 16384;
  example::cli cli("atoll-chat", "A chat room: GET / serves the page, /ws broadcasts messages.");
  cli.add("--host", "IP address to bind", host);
  cli.add("--port", "TCP port; 0 = any free port", port);
  cli.add("--threads", "io threads", threads);
  cli.add("--max-connections", "most connections at once", max_connections);
  cli.parse(argc, argv);

  room chat;  // outlives the server, whose handlers refer to it

  atl::server_config config;
  config.io_threads = threads;
  config.stop_signals = {SIGINT, SIGTERM};  // run() drains and returns on these
  atl::server server(config);

  atl::ws::options ws;
  ws.max_message_size = 64 * 1024;              // a chat line, not a file transfer
  ws.ping_interval = std::chrono::seconds(30);  // keeps idle browsers' connections alive
  atl::listener_config listener;
  listener.name = "chat";
  listener.host = host;
  listener.port = port;
  listener.max_connections = max_connections;
  const auto id = server.add_listener(
      listener, atl::ws::upgrade_factory(
                    ws,
                    [&chat](const atl::ws::http_request& req,
                            atl::connection&) -> std::unique_ptr<atl::ws::handler> {
                      if (req.path() != "/ws") return nullptr;  // 404
                      return std::make_unique<participant>(chat);
                    },
                    serve_page));

  std::error_code ec;
  server.start(ec);
  if (ec) {
    std::fprintf(stderr, "atoll-chat: %s\n", server.last_error().c_str());
    return ec == atl::errc::invalid_config ? 2 : 1;
  }
  std::printf("listening on %s\n", server.local_endpoint(id).to_string().c_str());
  std::fflush(stdout);
  server.run();
}
