// echo: C connections each keep K messages of S bytes in flight (K = 1: ping-pong) for
// --duration after --warmup; msgs/s, MB/s (one direction), round-trip latency percentiles, and
// with --server-pid the server's CPU per message over the measured window.
//
// ws-echo is this same loop: everything protocol-specific is in `echo_wire` (an optional
// handshake, the bytes of one request, the size of one reply; echo_wire.hpp), and main.cpp's
// mode table picks the wire. With --tls every connection first completes a TLS 1.3 handshake
// (tls_stream.hpp); the connect phase (before warm-up and the measured window) waits for them.

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "echo_wire.hpp"
#include "tls_stream.hpp"

namespace atoll_load {

namespace {

constexpr std::size_t max_connecting = 256;  // connects in progress at once
constexpr std::int64_t connect_phase_limit = 20 * s_ns;

struct echo_run;

class echo_client final : public pollable {
 public:
  echo_client(echo_run& run) : run_(run) {}
  ~echo_client() override {
    if (fd_ >= 0) ::close(fd_);
  }
  bool start(std::int64_t now);
  void on_event(std::uint32_t events) override;
  bool alive() const noexcept { return fd_ >= 0; }
  bool ready() const noexcept { return phase_ == phase::running; }

 private:
  enum class phase : std::uint8_t { connecting, tls_handshaking, handshaking, running, dead };

  void on_connected(std::int64_t now);
  void tls_step(std::int64_t now);
  void begin(std::int64_t now);
  void enqueue(std::int64_t now);
  void flush();
  void read_ready(std::int64_t now);
  void consume(std::size_t n, const char* data, std::int64_t now);
  void fail(int err);
  void set_want_out(bool on);

  echo_run& run_;
  int fd_ = -1;
  byte_stream io_;
  phase phase_ = phase::connecting;
  std::vector<std::int64_t> sent_at_;  // ring: when each in-flight request was queued
  std::size_t head_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t owed_ = 0;     // request bytes queued but not yet written
  std::size_t out_pos_ = 0;  // offset of the next byte within one request
  std::size_t partial_ = 0;  // reply bytes received towards the next whole reply
  std::string handshake_in_;
  bool want_out_ = false;
};

struct echo_run {
  const options& opt;
  event_loop loop;
  source_addresses sources;
  const target& to;
  echo_wire wire;
  std::optional<tls_client_context> tls;
  std::vector<char> burst;  // the request repeated, so several can go in one send()
  std::vector<char> recv_buf = std::vector<char>(256 * 1024);
  histogram latency;
  bool measuring = false;
  bool sending = true;
  std::uint64_t msgs = 0;
  std::uint64_t connected = 0;
  std::uint64_t connect_errors = 0;
  std::uint64_t lost = 0;  // connections that failed after connecting
  std::int64_t last_error = 0;

  echo_run(const options& o, const target& t)
      : opt(o),
        sources(t, o.src_ips),
        to(t),
        wire(o.mode == "ws-echo" ? make_ws_wire(o.size, t.text) : make_raw_wire(o.size)) {
    if (o.tls) tls.emplace();
    const std::size_t copies = std::max<std::size_t>(o.inflight, 1) + 1;
    for (std::size_t i = 0; i < copies; ++i)
      burst.insert(burst.end(), wire.request.begin(), wire.request.end());
  }
};

bool echo_client::start(std::int64_t now) {
  (void)now;
  int err = 0;
  fd_ = run_.sources.start_connect(run_.to, err);
  if (fd_ < 0) {
    phase_ = phase::dead;
    ++run_.connect_errors;
    run_.last_error = err;
    return false;
  }
  sent_at_.assign(std::max<std::size_t>(run_.opt.inflight, 1), 0);
  run_.loop.add(fd_, EPOLLOUT, this);
  return true;
}

void echo_client::fail(int err) {
  if (phase_ == phase::running || phase_ == phase::handshaking ||
      phase_ == phase::tls_handshaking) {
    ++run_.lost;
  } else {
    ++run_.connect_errors;
  }
  run_.last_error = err;
  phase_ = phase::dead;
  io_.reset();
  ::close(fd_);
  fd_ = -1;
}

void echo_client::set_want_out(bool on) {
  if (on == want_out_) return;
  want_out_ = on;
  run_.loop.modify(fd_, EPOLLIN | (on ? EPOLLOUT : 0u), this);
}

void echo_client::on_connected(std::int64_t now) {
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return fail(err);
  ++run_.connected;
  run_.loop.modify(fd_, EPOLLIN, this);
  if (!io_.attach(fd_, run_.tls ? run_.tls->native() : nullptr)) return fail(errno);
  if (io_.tls()) {
    phase_ = phase::tls_handshaking;
    return tls_step(now);
  }
  begin(now);
}

void echo_client::tls_step(std::int64_t now) {
  const int r = io_.handshake();
  if (r < 0) return fail(errno);
  set_want_out(r == 0 && io_.blocked_on_write());
  if (r == 1) begin(now);
}

// The connection is ready for the wire: its handshake if it has one, else the first requests.
void echo_client::begin(std::int64_t now) {
  if (!run_.wire.handshake.empty()) {
    phase_ = phase::handshaking;
    const std::string& h = run_.wire.handshake;
    if (io_.send(h.data(), h.size()) != static_cast<ssize_t>(h.size())) return fail(errno);
    return;
  }
  phase_ = phase::running;
  for (std::size_t i = 0; i < sent_at_.size(); ++i) enqueue(now);
  flush();
}

void echo_client::enqueue(std::int64_t now) {
  sent_at_[(head_ + in_flight_) % sent_at_.size()] = now;
  ++in_flight_;
  owed_ += run_.wire.request.size();
}

void echo_client::flush() {
  while (owed_ > 0) {
    const ssize_t n = io_.send(run_.burst.data() + out_pos_, owed_);
    if (n > 0) {
      owed_ -= static_cast<std::size_t>(n);
      out_pos_ = (out_pos_ + static_cast<std::size_t>(n)) % run_.wire.request.size();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // TLS may wait to read instead (a record still incoming): the next EPOLLIN calls flush.
      set_want_out(!io_.tls() || io_.blocked_on_write());
      return;
    }
    if (n < 0 && errno == EINTR) continue;
    return fail(errno);
  }
  set_want_out(false);
}

void echo_client::consume(std::size_t n, const char* data, std::int64_t now) {
  if (phase_ == phase::handshaking) {
    handshake_in_.append(data, n);
    std::size_t size = 0;
    switch (check_handshake_reply(run_.wire, handshake_in_, size)) {
      case handshake_reply::incomplete:
        return;
      case handshake_reply::refused:
        return fail(EPROTO);
      case handshake_reply::accepted:
        break;
    }
    const std::size_t rest = handshake_in_.size() - size;
    handshake_in_.clear();
    phase_ = phase::running;
    for (std::size_t i = 0; i < sent_at_.size(); ++i) enqueue(now);
    n = rest;  // bytes after the handshake response count towards replies
  }
  partial_ += n;
  const std::size_t reply = run_.wire.reply_size;
  while (partial_ >= reply && in_flight_ > 0) {
    partial_ -= reply;
    const std::int64_t sent = sent_at_[head_];
    head_ = (head_ + 1) % sent_at_.size();
    --in_flight_;
    if (run_.measuring) {
      run_.latency.record(now - sent);
      ++run_.msgs;
    }
    if (run_.sending) enqueue(now);
  }
}

void echo_client::read_ready(std::int64_t now) {
  for (int i = 0; i < 8; ++i) {
    const ssize_t n = io_.recv(run_.recv_buf.data(), run_.recv_buf.size());
    if (n > 0) {
      consume(static_cast<std::size_t>(n), run_.recv_buf.data(), now);
      if (phase_ == phase::dead) return;
      // A short read drained the socket (TLS: one record read; level-triggered epoll reports
      // the next one, only bytes the TLS layer already holds need another read now).
      if (static_cast<std::size_t>(n) < run_.recv_buf.size() && io_.pending() == 0) break;
      continue;
    }
    if (n == 0) return fail(ECONNRESET);  // the server closed an echo connection
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (errno == EINTR) continue;
    return fail(errno);
  }
  flush();
}

void echo_client::on_event(std::uint32_t events) {
  if (phase_ == phase::dead) return;
  const std::int64_t now = now_ns();
  if (phase_ == phase::connecting) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(now);
    return;
  }
  if (phase_ == phase::tls_handshaking) return tls_step(now);
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
    read_ready(now);
    return;
  }
  if (events & EPOLLOUT) flush();
}

double cpu_seconds_self() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int run_echo(const options& o, const target& t) {
  echo_run run(o, t);
  std::vector<std::unique_ptr<echo_client>> clients;
  clients.reserve(o.connections);
  for (std::size_t i = 0; i < o.connections; ++i)
    clients.push_back(std::make_unique<echo_client>(run));

  // Connect everyone (at most max_connecting at once), bounded in time.
  const std::int64_t t0 = now_ns();
  std::size_t started = 0;
  while (now_ns() - t0 < connect_phase_limit) {
    const std::size_t settled = run.connected + run.connect_errors;
    while (started < clients.size() && started - settled < max_connecting) {
      clients[started++]->start(now_ns());
    }
    if (run.connected + run.connect_errors >= clients.size() &&
        (!o.tls || std::all_of(clients.begin(), clients.end(), [](const auto& c) {
          return c->ready() || !c->alive();
        }))) {
      break;
    }
    run.loop.run_once(10);
  }
  const double connect_s = double(now_ns() - t0) / 1e9;

  progress_line progress(o, o.warmup_s + o.duration_s);
  auto run_for = [&](double seconds, const char* phase) {
    const std::int64_t end = now_ns() + std::int64_t(seconds * 1e9);
    std::uint64_t last_msgs = run.msgs;
    for (std::int64_t now = now_ns(); now < end; now = now_ns()) {
      run.loop.run_once(int(std::min<std::int64_t>(10, (end - now) / ms_ns + 1)));
      if (progress.due(now)) {
        std::fprintf(stderr, "atoll-load echo: %s, %zu conns, %.0f msgs/s\n", phase,
                     std::size_t(run.connected - run.lost), double(run.msgs - last_msgs));
        last_msgs = run.msgs;
      }
    }
  };

  run_for(o.warmup_s, "warmup");
  const server_sample before = sample_server(o);
  const double self_before = cpu_seconds_self();
  const std::int64_t w0 = now_ns();
  run.measuring = true;
  run_for(o.duration_s, "measuring");
  run.measuring = false;
  const std::int64_t w1 = now_ns();
  const server_sample after = sample_server(o);
  const double self_cpu = cpu_seconds_self() - self_before;
  run.sending = false;

  const double window = double(w1 - w0) / 1e9;
  const double msgs_per_s = double(run.msgs) / window;
  json_object j;
  j.str("mode", run.wire.name).str("target", t.text).boolean("tls", o.tls);
  j.integer("connections", static_cast<std::int64_t>(o.connections));
  j.integer("connected", static_cast<std::int64_t>(run.connected));
  j.integer("connect_errors", static_cast<std::int64_t>(run.connect_errors));
  j.integer("lost", static_cast<std::int64_t>(run.lost));
  j.integer("size", static_cast<std::int64_t>(o.size));
  j.integer("inflight", static_cast<std::int64_t>(o.inflight));
  j.num("connect_s", connect_s).num("warmup_s", o.warmup_s).num("window_s", window);
  j.integer("msgs", static_cast<std::int64_t>(run.msgs));
  j.num("msgs_per_s", msgs_per_s);
  j.num("mb_per_s", msgs_per_s * double(o.size) / 1e6);
  j.obj("latency_us", percentiles_json(run.latency, 1e3));
  j.num("load_cpu_pct", 100.0 * self_cpu / window);
  if (o.server_pid) j.obj("server", server_json(o, before, after, double(run.msgs), "msg"));
  if (run.last_error) j.str("last_error", std::strerror(int(run.last_error)));
  std::printf("%s\n", j.text().c_str());
  return run.connected > 0 && run.msgs > 0 ? 0 : 1;
}

}  // namespace atoll_load
