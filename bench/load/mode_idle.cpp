// idle: open N connections (each verified with a 1-byte echo, so the server has really taken
// it on; with --tls after a TLS 1.3 handshake) and hold them for --duration without traffic.
// With --ws each one does a WebSocket upgrade instead of the echo (no extension offered; the
// server's 101 verifies it; echo_wire.hpp's make_ws_upgrade_wire, as ws-echo's) and is sent
// nothing after it, so what is held is the server's session as the upgrade left it.
// With --server-pid: the server's RSS before and after, and the difference per connection.

#include <sys/resource.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include "attempts.hpp"
#include "common.hpp"
#include "echo_wire.hpp"

namespace atoll_load {

int run_idle(const options& o, const target& t) {
  constexpr std::size_t max_connecting = 256;
  constexpr std::int64_t open_limit = 60 * s_ns;
  // Descriptors: one per connection, plus a few; the runner raises the hard limit.
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < o.connections + 64 && rl.rlim_max >= o.connections + 64) {
    rl.rlim_cur = o.connections + 64;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }

  event_loop loop;
  source_addresses sources(t, o.src_ips);
  std::optional<tls_client_context> tls;
  if (o.tls) tls.emplace();
  std::optional<echo_wire> ws;
  if (o.ws) ws = make_ws_upgrade_wire(t.text);
  const server_sample before = sample_server(o);

  std::vector<std::unique_ptr<held_conn>> conns;
  conns.reserve(o.connections);
  const std::int64_t t0 = now_ns();
  progress_line progress(o, o.duration_s + 3);
  std::size_t ready = 0, lost = 0;
  while (now_ns() - t0 < open_limit) {
    ready = lost = 0;
    std::size_t pending = 0;
    for (auto& c : conns) {
      switch (c->current()) {
        case held_conn::state::idle:
          ++ready;
          break;
        case held_conn::state::lost:
          ++lost;
          break;
        default:
          ++pending;
      }
    }
    if (ready + lost >= o.connections) break;
    while (conns.size() < o.connections && pending < max_connecting) {
      conns.push_back(std::make_unique<held_conn>(loop, t, sources, tls ? tls->native() : nullptr,
                                                  ws ? &*ws : nullptr));
      conns.back()->open(now_ns());
      ++pending;
    }
    loop.run_once(10);
    if (progress.due(now_ns())) {
      std::fprintf(stderr, "atoll-load idle: %zu of %zu connections open\n", ready, o.connections);
    }
  }
  const double open_s = double(now_ns() - t0) / 1e9;

  // Hold them; keep serving events so a server-side close is noticed.
  const std::int64_t hold_end = now_ns() + std::int64_t(o.duration_s * 1e9);
  server_sample during;
  bool sampled = false;
  for (std::int64_t now = now_ns(); now < hold_end; now = now_ns()) {
    loop.run_once(int(std::min<std::int64_t>(50, (hold_end - now) / ms_ns + 1)));
    // RSS once the server has settled (half-way through the hold).
    if (!sampled && now >= hold_end - std::int64_t(o.duration_s * 0.5e9)) {
      during = sample_server(o);
      sampled = true;
    }
    if (progress.due(now)) {
      std::fprintf(stderr, "atoll-load idle: holding %zu connections\n", ready);
    }
  }
  if (!sampled) during = sample_server(o);
  std::size_t still_open = 0;
  for (auto& c : conns)
    if (c->current() == held_conn::state::idle) ++still_open;
  conns.clear();  // closes them all

  json_object j;
  j.str("mode", "idle").str("target", t.text).boolean("tls", o.tls).boolean("ws", o.ws);
  j.integer("connections", static_cast<std::int64_t>(o.connections));
  j.integer("established", static_cast<std::int64_t>(ready));
  j.integer("failed", static_cast<std::int64_t>(lost));
  j.integer("still_open", static_cast<std::int64_t>(still_open));
  j.num("open_s", open_s).num("hold_s", o.duration_s);
  if (o.server_pid) {
    json_object s;
    s.integer("pid", *o.server_pid);
    if (before.rss_kib && during.rss_kib) {
      s.integer("rss_before_kib", static_cast<std::int64_t>(*before.rss_kib));
      s.integer("rss_kib", static_cast<std::int64_t>(*during.rss_kib));
      const double delta = (double(*during.rss_kib) - double(*before.rss_kib)) * 1024.0;
      if (ready > 0) s.num("rss_bytes_per_conn", delta / double(ready));
    }
    j.obj("server", s);
  }
  std::printf("%s\n", j.text().c_str());
  return ready == o.connections ? 0 : 1;
}

}  // namespace atoll_load
