// attack: what one hostile peer (or a few) costs the server and its other clients (issue 9).
//
// One well-behaved client sends a request (64 B echo by default) every 1/--client-rate s on its
// own connection and times each reply: first for --baseline s without attack, then for
// --duration s while --attackers connections run the scenario against the same server (started
// with one io thread, so the client shares the thread the attack loads). Reported: the client's
// round-trip percentiles in both phases, the server's CPU per MiB of attack input it consumed
// (exact on-CPU time from /proc/PID/task/*/schedstat, less what the client's requests cost in
// the baseline; bytes written by the attackers less those still in kernel buffers at the end,
// i.e. in their send queues and the server's receive queues), its RSS growth per attacking
// connection (peak VmRSS during the attack minus VmRSS before it), and whether it survived.
//
// The client paces its requests instead of sending the next one when the reply arrives (open
// loop at 1 kHz; at 1 kHz against a healthy server that is one request in flight, i.e. ping-pong):
// a stall then delays every request sent during it, and each counts, rather than one slow round
// trip standing for the whole stall (coordinated omission). Requests still unanswered when the
// phase ends count with their age then. The client runs on a thread of its own (SCHED_FIFO when
// allowed) so that attackers flooding from the main thread do not delay its timestamps.

#include <linux/sockios.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "echo_wire.hpp"

namespace atoll_load {

namespace {

// ---- scenarios -------------------------------------------------------------------------

enum class scenario_id : std::uint8_t {
  deflate_empty_blocks,
  ping_flood,
  reject_stream,
  proxy_tlv,
  slowloris,
  fragments,
};

struct scenario_entry {
  const char* name;
  scenario_id id;
  std::size_t attackers;  // default count
  const char* client;     // the well-behaved client's wire by default
  const char* server;     // what to run it against (bench/run)
  const char* what;
};

constexpr scenario_entry scenarios[] = {
    {"deflate-empty-blocks", scenario_id::deflate_empty_blocks, 1, "ws", "atoll-ws-echo --deflate",
     "permessage-deflate messages of 16,384 empty final DEFLATE blocks (03 00) each, flat out"},
    {"ping-flood", scenario_id::ping_flood, 10, "ws", "atoll-ws-echo",
     "125-byte pings flat out, never reading the pongs"},
    {"reject-stream", scenario_id::reject_stream, 2, "http",
     "atoll-http-hello --max-connections 1 (the client holds the one slot)",
     "refused clients: connect and write as fast as the socket takes it until closed, then again"},
    {"proxy-tlv", scenario_id::proxy_tlv, 50, "proxy-echo", "atoll-echo --proxy-protocol v2",
     "a 65,551-byte PROXY v2 header of 21,841 empty TLVs, one echoed byte, then hold"},
    {"slowloris", scenario_id::slowloris, 200, "ws", "atoll-ws-echo",
     "the HTTP upgrade request one byte per second"},
    {"fragments", scenario_id::fragments, 1, "ws", "atoll-ws-echo",
     "one message as 1-byte continuation frames (7 bytes each on the wire), flat out"},
};

const scenario_entry* find_scenario(const std::string& name) {
  for (const auto& s : scenarios)
    if (name == s.name) return &s;
  return nullptr;
}

// A PROXY protocol v2 header (HAProxy's proxy-protocol.txt §2.2): PROXY command, TCP over
// IPv4, 127.0.0.1:40000 -> 127.0.0.1:port, then `empty_tlvs` TLVs of type 0xE0 (the first
// custom type, which a receiver keeps as is) and length 0.
std::vector<char> proxy_v2_header(std::uint16_t port, std::size_t empty_tlvs) {
  static constexpr unsigned char signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  std::vector<char> h(signature, signature + sizeof signature);
  const std::size_t length = 12 + 3 * empty_tlvs;
  h.push_back(char(0x21));  // version 2, PROXY
  h.push_back(char(0x11));  // AF_INET, STREAM
  h.push_back(char(length >> 8));
  h.push_back(char(length & 0xff));
  const unsigned char addresses[8] = {127, 0, 0, 1, 127, 0, 0, 1};
  h.insert(h.end(), addresses, addresses + 8);
  const std::uint16_t ports[2] = {40000, port};
  for (std::uint16_t p : ports) {
    h.push_back(char(p >> 8));
    h.push_back(char(p & 0xff));
  }
  for (std::size_t i = 0; i < empty_tlvs; ++i) {
    h.push_back(char(0xE0));
    h.push_back(0);
    h.push_back(0);
  }
  return h;
}

// The well-behaved client's exchange. reply_size 0 means an HTTP response (headers, then
// Content-Length bytes).
echo_wire make_client_wire(const std::string& kind, std::size_t size, const target& t) {
  if (kind == "ws") return make_ws_wire(size, t.text);
  if (kind == "http") {
    echo_wire w;
    w.name = "http";
    const std::string get = "GET / HTTP/1.1\r\nHost: " + t.text + "\r\n\r\n";  // keep-alive
    w.request.assign(get.begin(), get.end());
    w.reply_size = 0;
    return w;
  }
  echo_wire w = make_raw_wire(size);
  if (kind == "proxy-echo") {
    w.name = "proxy-echo";
    const std::vector<char> h = proxy_v2_header(t.port, 0);
    w.handshake.assign(h.begin(), h.end());  // no reply to it: handshake_end stays empty
  }
  return w;
}

// Bytes of the first complete HTTP response at the start of `in`, or 0 if incomplete.
std::size_t http_response_size(const std::string& in) {
  const auto end = in.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  std::string head = in.substr(0, end);
  std::transform(head.begin(), head.end(), head.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  std::size_t body = 0;
  if (const auto cl = head.find("\r\ncontent-length:"); cl != std::string::npos) {
    body = std::strtoull(head.c_str() + cl + 17, nullptr, 10);
  }
  const std::size_t total = end + 4 + body;
  return in.size() >= total ? total : 0;
}

// ---- the well-behaved client -----------------------------------------------------------

enum phase_index : int { warmup = 0, baseline = 1, attack = 2, stopped = 3 };

class good_client final : public pollable {
 public:
  good_client(const options& o, const target& t, echo_wire wire)
      : opt_(o), to_(t), sources_(t, 1), wire_(std::move(wire)) {}
  ~good_client() override {
    if (fd_ >= 0) ::close(fd_);
    if (timer_fd_ >= 0) ::close(timer_fd_);
  }

  // Shared with the main thread.
  std::atomic<int> phase{warmup};
  std::atomic<int> status{0};  // 0 connecting, 1 ready, 2 failed or lost
  std::atomic<std::uint64_t> replies{0};
  // Read by the main thread only after join().
  histogram hist[3];
  std::uint64_t sent[3] = {0, 0, 0};
  std::uint64_t censored[3] = {0, 0, 0};
  std::size_t max_outstanding = 0;
  bool fifo = false;
  int error = 0;

  void run(std::int64_t deadline) {
    sched_param sp{};
    sp.sched_priority = 1;
    fifo = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &sp) == 0;
    fd_ = sources_.start_connect(to_, error);
    if (fd_ < 0) return fail(error);
    loop_.add(fd_, EPOLLOUT, this);
    if (opt_.client_rate > 0) {
      timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
      const auto period = std::int64_t(1e9 / opt_.client_rate);
      itimerspec its{};
      its.it_interval.tv_sec = period / s_ns;
      its.it_interval.tv_nsec = period % s_ns;
      its.it_value = its.it_interval;
      ::timerfd_settime(timer_fd_, 0, &its, nullptr);
      loop_.add(timer_fd_, EPOLLIN, &ticker_);
    }
    while (phase.load() != stopped && now_ns() < deadline) loop_.run_once(20);
    // Unanswered requests count with their age now: a stall that outlasts the phase still
    // shows in its percentiles.
    const std::int64_t now = now_ns();
    for (const auto& r : outstanding_) {
      if (r.phase == warmup) continue;
      hist[r.phase].record(now - r.at);
      ++censored[r.phase];
    }
  }

  void on_event(std::uint32_t events) override {
    if (status.load() == 2) return;
    if (!connected_) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(err);
      connected_ = true;
      loop_.modify(fd_, EPOLLIN, this);
      out_ = wire_.handshake;
      if (wire_.handshake_end.empty()) become_ready();
      return flush();
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_ready();
    if (status.load() != 2 && (events & EPOLLOUT)) flush();
  }

 private:
  struct request {
    std::int64_t at;
    int phase;
  };
  struct ticker final : pollable {
    good_client* self;
    explicit ticker(good_client* c) : self(c) {}
    void on_event(std::uint32_t) override {
      std::uint64_t expirations = 0;
      if (::read(self->timer_fd_, &expirations, sizeof expirations) < 0) return;
      // Late ticks (the thread was not scheduled) send one request, not a burst.
      self->send_request(now_ns());
    }
  };

  void become_ready() {
    status.store(1);
    if (opt_.client_rate <= 0) send_request(now_ns());
  }

  void send_request(std::int64_t now) {
    if (status.load() != 1) return;
    const int p = phase.load();
    if (p == stopped) return;
    // Bounded: a server stalled for minutes must not grow this without limit.
    if (outstanding_.size() >= 1'000'000) return;
    outstanding_.push_back({now, p});
    max_outstanding = std::max(max_outstanding, outstanding_.size());
    ++sent[p];
    out_.append(wire_.request.data(), wire_.request.size());
    flush();
  }

  void flush() {
    while (!out_.empty()) {
      const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n > 0) {
        out_.erase(0, std::size_t(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return fail(errno);
    }
    const bool want = !out_.empty();
    if (want != want_out_) {
      want_out_ = want;
      loop_.modify(fd_, EPOLLIN | (want ? EPOLLOUT : 0u), this);
    }
  }

  void read_ready() {
    char buf[65536];
    for (int i = 0; i < 16; ++i) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        consume(buf, std::size_t(n), now_ns());
        if (status.load() == 2) return;
        continue;
      }
      if (n == 0) return fail(ECONNRESET);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return fail(errno);
    }
  }

  void consume(const char* data, std::size_t n, std::int64_t now) {
    in_.append(data, n);
    if (status.load() == 0) {  // waiting for the handshake's reply
      const auto end = in_.find(wire_.handshake_end);
      if (end == std::string::npos) {
        if (in_.size() > 16384) fail(EPROTO);
        return;
      }
      if (!in_.starts_with(wire_.handshake_reply_prefix)) return fail(EPROTO);
      in_.erase(0, end + wire_.handshake_end.size());
      become_ready();
    }
    for (;;) {
      const std::size_t size = wire_.reply_size ? wire_.reply_size : http_response_size(in_);
      if (size == 0 || in_.size() < size || outstanding_.empty()) break;
      in_.erase(0, size);  // at 1 kHz a read holds a reply or two: the copy is cheap
      const request r = outstanding_.front();
      outstanding_.pop_front();
      if (r.phase != warmup) hist[r.phase].record(now - r.at);
      replies.fetch_add(1);
      if (opt_.client_rate <= 0) send_request(now);
    }
  }

  void fail(int err) {
    error = err;
    status.store(2);
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  const options& opt_;
  const target& to_;
  source_addresses sources_;
  echo_wire wire_;
  event_loop loop_;
  ticker ticker_{this};
  int fd_ = -1;
  int timer_fd_ = -1;
  bool connected_ = false;
  bool want_out_ = false;
  std::string out_;
  std::string in_;
  std::deque<request> outstanding_;
};

// ---- attackers ---------------------------------------------------------------------------

// What every attacking connection of a scenario does, in order: send `handshake` (all at once,
// or one byte per `slow_interval_ns`), wait for a 101 if `want_upgrade` (with
// permessage-deflate agreed if `want_deflate`), send `prefix` once, wait for `probe_reply`
// bytes (the connection is then "ready"), then send `repeat` over and over while the socket
// takes it. Closed by the server: reconnect, while the attack lasts.
struct attack_plan {
  std::string handshake;
  bool want_upgrade = false;
  bool want_deflate = false;
  std::int64_t slow_interval_ns = 0;
  std::vector<char> prefix;
  std::size_t probe_reply = 0;
  std::vector<char> repeat;
  bool never_read = false;  // after the handshake: the server's replies pile up
};

attack_plan make_plan(scenario_id id, const target& t) {
  attack_plan p;
  auto repeat_frames = [&p](unsigned char first, const std::vector<char>& payload,
                            std::size_t at_least) {
    // Whole frames, at least `at_least` bytes: one send() takes many.
    while (p.repeat.size() < at_least)
      append_ws_frame(p.repeat, first, payload.data(), payload.size());
  };
  switch (id) {
    case scenario_id::deflate_empty_blocks: {
      // RFC 7692 §7.2.3.4 lets a sender end the DEFLATE stream inside a message; `03 00` is an
      // empty fixed-Huffman block with BFINAL set: 2 bytes that decompress to nothing.
      p.handshake = ws_upgrade_request(t.text, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
      p.want_upgrade = p.want_deflate = true;
      // The closing 00 starts an empty stored block (BFINAL 0, BTYPE 00, padding) that the
      // 00 00 ff ff the receiver appends (§7.2.2) completes: the stream stays valid across
      // messages, so the connection keeps going instead of being closed with 1007.
      std::vector<char> payload;
      for (int i = 0; i < 16384; ++i) payload.insert(payload.end(), {char(0x03), char(0x00)});
      payload.push_back(0);
      repeat_frames(0xC2, payload, 1);  // FIN + RSV1 (compressed) + binary
      break;
    }
    case scenario_id::ping_flood: {
      p.handshake = ws_upgrade_request(t.text);
      p.want_upgrade = true;
      p.never_read = true;
      repeat_frames(0x89, std::vector<char>(125, 'p'), 64 * 1024);  // FIN + ping
      break;
    }
    case scenario_id::reject_stream:
      p.repeat.assign(256 * 1024, 'x');
      break;
    case scenario_id::proxy_tlv:
      p.prefix = proxy_v2_header(t.port, (65535 - 12) / 3);
      p.prefix.push_back('x');  // echoed once the header is accepted: the connection is open
      p.probe_reply = 1;
      break;
    case scenario_id::slowloris:
      p.handshake = ws_upgrade_request(t.text);
      p.want_upgrade = true;
      p.slow_interval_ns = s_ns;
      break;
    case scenario_id::fragments: {
      p.handshake = ws_upgrade_request(t.text);
      p.want_upgrade = true;
      const std::vector<char> one{'f'};
      append_ws_frame(p.prefix, 0x02, one.data(), 1);  // binary, FIN clear: more to come
      repeat_frames(0x00, one, 64 * 1024);             // continuation, FIN clear
      break;
    }
  }
  return p;
}

struct attack_stats {
  std::uint64_t connects = 0;
  std::uint64_t connect_errors = 0;
  std::uint64_t upgrade_refused = 0;  // no 101, or no permessage-deflate when it was wanted
  std::uint64_t closed_by_server = 0;
  std::uint64_t bytes = 0;  // written by all attackers
  std::int64_t last_error = 0;
};

class attacker final : public pollable {
 public:
  enum class state : std::uint8_t {
    idle,
    connecting,
    handshake,
    upgrade_wait,
    prefix,
    probe_wait,
    flooding,
    holding,
    closed
  };

  attacker(event_loop& loop, const target& t, source_addresses& from, const attack_plan& plan,
           attack_stats& stats)
      : loop_(loop), to_(t), from_(from), plan_(plan), stats_(stats) {}
  ~attacker() override { close_fd(); }
  attacker(const attacker&) = delete;
  attacker& operator=(const attacker&) = delete;

  state current() const noexcept { return state_; }
  // Bytes written but still in this socket's send queue (not yet in the server's).
  std::size_t unsent() const noexcept {
    int n = 0;
    return fd_ >= 0 && ::ioctl(fd_, SIOCOUTQ, &n) == 0 && n > 0 ? std::size_t(n) : 0;
  }
  // Connected (the attack under way, whatever its stage).
  bool open() const noexcept {
    return state_ != state::idle && state_ != state::connecting && state_ != state::closed;
  }
  // Past the handshake, the prefix and its probe: flooding or holding.
  bool ready() const noexcept { return state_ == state::flooding || state_ == state::holding; }
  bool may_start(std::int64_t now) const noexcept {
    return (state_ == state::idle || state_ == state::closed) && now >= retry_at_;
  }

  void start(std::int64_t now) {
    int err = 0;
    fd_ = from_.start_connect(to_, err);
    ++stats_.connects;
    if (fd_ < 0) {
      ++stats_.connect_errors;
      stats_.last_error = err;
      state_ = state::closed;
      retry_at_ = now + 10 * ms_ns;  // e.g. out of local ports: do not spin
      return;
    }
    state_ = state::connecting;
    sent_ = 0;
    in_.clear();
    watch(EPOLLOUT);
  }

  // One byte of a slow handshake, if one is due.
  void tick(std::int64_t now) {
    if (state_ != state::handshake || plan_.slow_interval_ns == 0 || now < next_byte_) return;
    next_byte_ = now + plan_.slow_interval_ns;
    send_some(plan_.handshake.data(), plan_.handshake.size(), 1);
    if (state_ == state::handshake && sent_ == plan_.handshake.size()) after_handshake();
  }

  void on_event(std::uint32_t events) override {
    if (fd_ < 0) return;  // closed earlier in this batch
    if (state_ == state::connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        ++stats_.connect_errors;
        stats_.last_error = err;
        return drop(false);
      }
      state_ = state::handshake;
      next_byte_ = 0;
      if (plan_.handshake.empty()) return after_handshake();
      if (plan_.slow_interval_ns > 0) {
        watch(EPOLLIN);
        return tick(now_ns());
      }
      return write_ready();
    }
    if (events & (EPOLLERR | EPOLLHUP)) return drop(true);
    if (events & EPOLLIN) {
      read_ready();
      if (fd_ < 0) return;
    }
    if (events & EPOLLOUT) write_ready();
  }

  void close_fd() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  void watch(std::uint32_t events) {
    if (!registered_) {
      loop_.add(fd_, events, this);
      registered_ = true;
    } else {
      loop_.modify(fd_, events, this);
    }
  }

  // Closed: by the server (counted) or a failed connect. The fd's registration goes with it;
  // start() registers the next one.
  void drop(bool by_server) {
    if (by_server) ++stats_.closed_by_server;
    close_fd();
    registered_ = false;
    state_ = state::closed;
    retry_at_ = 0;
  }

  // Sends up to `max` bytes of data[sent_, size); false if the connection is gone or the
  // socket is full.
  bool send_some(const char* data, std::size_t size, std::size_t max) {
    const std::size_t n = std::min(size - sent_, max);
    const ssize_t r = ::send(fd_, data + sent_, n, MSG_NOSIGNAL);
    if (r > 0) {
      sent_ += std::size_t(r);
      stats_.bytes += std::size_t(r);
      return true;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
    drop(true);
    return false;
  }

  void after_handshake() {
    sent_ = 0;
    if (plan_.want_upgrade) {
      state_ = state::upgrade_wait;
      return watch(EPOLLIN);
    }
    begin_prefix();
  }

  void begin_prefix() {
    sent_ = 0;
    state_ = state::prefix;
    if (plan_.prefix.empty()) return after_prefix();
    watch(read_mask() | EPOLLOUT);
  }

  void after_prefix() {
    sent_ = 0;
    if (plan_.probe_reply > 0) {
      state_ = state::probe_wait;
      return watch(EPOLLIN);
    }
    begin_repeat();
  }

  void begin_repeat() {
    sent_ = 0;
    state_ = plan_.repeat.empty() ? state::holding : state::flooding;
    watch(read_mask() | (state_ == state::flooding ? EPOLLOUT : 0u));
  }

  std::uint32_t read_mask() const noexcept { return plan_.never_read ? 0u : EPOLLIN; }

  // Writes until the socket is full, at most 1 MiB per event, so that other attackers get
  // their turn (the well-behaved client has a thread of its own).
  void write_ready() {
    constexpr std::size_t per_event = 1024 * 1024;
    switch (state_) {
      case state::handshake:
        if (send_some(plan_.handshake.data(), plan_.handshake.size(), per_event) &&
            sent_ == plan_.handshake.size()) {
          return after_handshake();
        }
        if (fd_ >= 0) watch(EPOLLIN | EPOLLOUT);
        return;
      case state::prefix:
        for (std::size_t n = 0; n < per_event && fd_ >= 0;) {
          const std::size_t before = sent_;
          if (!send_some(plan_.prefix.data(), plan_.prefix.size(), per_event - n)) return;
          n += sent_ - before;
          if (sent_ == plan_.prefix.size()) return after_prefix();
        }
        return;
      case state::flooding:
        for (std::size_t n = 0; n < per_event;) {
          const std::size_t before = sent_;
          if (!send_some(plan_.repeat.data(), plan_.repeat.size(), per_event - n)) return;
          n += sent_ - before;
          if (sent_ == plan_.repeat.size()) sent_ = 0;
        }
        return;
      default:
        return;
    }
  }

  void read_ready() {
    char buf[65536];
    for (int i = 0; i < 4; ++i) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return drop(true);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return drop(true);
      }
      if (state_ == state::upgrade_wait) {
        in_.append(buf, std::size_t(n));
        const auto end = in_.find("\r\n\r\n");
        if (end == std::string::npos) {
          if (in_.size() > 16384) return refuse();
          continue;
        }
        std::string head = in_.substr(0, end);
        std::transform(head.begin(), head.end(), head.begin(),
                       [](unsigned char c) { return char(std::tolower(c)); });
        if (!head.starts_with("http/1.1 101") ||
            (plan_.want_deflate && head.find("permessage-deflate") == std::string::npos)) {
          return refuse();
        }
        in_.clear();
        begin_prefix();
        if (plan_.never_read) return;
      } else if (state_ == state::probe_wait) {
        got_ += std::size_t(n);
        if (got_ >= plan_.probe_reply) {
          got_ = 0;
          begin_repeat();
        }
      }
      // Anything else (echoes, pongs, a 503) is read and dropped.
    }
  }

  // The server did not agree to what the scenario needs: count it, close, do not retry at once.
  void refuse() {
    ++stats_.upgrade_refused;
    close_fd();
    registered_ = false;
    state_ = state::closed;
    retry_at_ = now_ns() + 100 * ms_ns;
  }

  event_loop& loop_;
  const target& to_;
  source_addresses& from_;
  const attack_plan& plan_;
  attack_stats& stats_;
  int fd_ = -1;
  bool registered_ = false;
  state state_ = state::idle;
  std::size_t sent_ = 0;
  std::size_t got_ = 0;
  std::string in_;
  std::int64_t retry_at_ = 0;
  std::int64_t next_byte_ = 0;
};

// 'R', 'S', ... from /proc/PID/stat; 'Z' (zombie) or 0 (gone) means the server died.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() ? line[close + 2] : 0;
}

}  // namespace

void print_attack_scenarios() {
  for (const auto& s : scenarios) {
    std::printf("  %-21s %s\n  %-21s   (%zu attackers; server: %s; client: %s)\n", s.name, s.what,
                "", s.attackers, s.server, s.client);
  }
}

int run_attack(const options& o, const target& t) {
  const scenario_entry* sc = find_scenario(o.scenario);
  if (!sc) {
    std::fprintf(stderr, "atoll-load attack: --scenario '%s' unknown; one of:\n",
                 o.scenario.c_str());
    print_attack_scenarios();
    return 2;
  }
  const std::string wire_kind = o.client_wire.empty() ? sc->client : o.client_wire;
  const std::size_t attackers = o.attackers ? o.attackers : sc->attackers;
  const double baseline_s = o.baseline_s >= 0 ? o.baseline_s : o.duration_s;
  const std::int64_t hard_deadline =
      now_ns() + std::int64_t((baseline_s + o.duration_s + 60) * 1e9);

  // The well-behaved client: connected, then a short warm-up, then the baseline window.
  good_client client(o, t, make_client_wire(wire_kind, o.size, t));
  std::thread client_thread([&] { client.run(hard_deadline); });
  auto finish_client = [&] {
    client.phase.store(stopped);
    client_thread.join();
  };
  for (const std::int64_t until = now_ns() + 5 * s_ns;
       client.status.load() == 0 && now_ns() < until;) {
    ::usleep(1000);
  }
  if (client.status.load() != 1) {
    finish_client();
    std::fprintf(stderr, "atoll-load attack: the well-behaved client could not connect (%s)\n",
                 std::strerror(client.error ? client.error : ETIMEDOUT));
    return 1;
  }
  ::usleep(200'000);
  const server_sample base_before = sample_server(o);
  const std::uint64_t base_replies0 = client.replies.load();
  client.phase.store(baseline);
  ::usleep(useconds_t(baseline_s * 1e6));
  const server_sample base_after = sample_server(o);
  const std::uint64_t base_replies = client.replies.load() - base_replies0;

  // The attack.
  event_loop loop;
  source_addresses sources(t, o.src_ips);
  const attack_plan plan = make_plan(sc->id, t);
  attack_stats stats;
  std::vector<std::unique_ptr<attacker>> lanes;
  for (std::size_t i = 0; i < attackers; ++i)
    lanes.push_back(std::make_unique<attacker>(loop, t, sources, plan, stats));
  const std::uint64_t attack_replies0 = client.replies.load();
  client.phase.store(attack);
  const std::int64_t a0 = now_ns();
  const std::int64_t a_end = a0 + std::int64_t(o.duration_s * 1e9);
  // Every connect, and reconnect, is bounded: at most 256 in progress, at most this many in all.
  constexpr std::uint64_t max_connects = 200'000;
  constexpr std::size_t max_connecting = 256;
  std::uint64_t rss_peak = base_after.rss_kib.value_or(0);
  std::size_t ready_max = 0, open_max = 0;
  std::int64_t next_rss = 0;
  progress_line progress(o, baseline_s + o.duration_s);
  for (std::int64_t now = now_ns(); now < a_end; now = now_ns()) {
    std::size_t connecting = 0, ready = 0, open = 0;
    for (auto& a : lanes) {
      connecting += a->current() == attacker::state::connecting;
      ready += a->ready();
      open += a->open();
    }
    ready_max = std::max(ready_max, ready);
    open_max = std::max(open_max, open);
    for (auto& a : lanes) {
      if (connecting >= max_connecting || stats.connects >= max_connects) break;
      if (a->may_start(now)) {
        a->start(now);
        ++connecting;
      }
    }
    if (plan.slow_interval_ns > 0)
      for (auto& a : lanes) a->tick(now);
    if (o.server_pid && now >= next_rss) {
      next_rss = now + 50 * ms_ns;
      if (const auto rss = read_rss_kib(*o.server_pid)) rss_peak = std::max(rss_peak, *rss);
    }
    if (progress.due(now)) {
      std::fprintf(stderr,
                   "atoll-load attack %s: %zu of %zu attackers open, %zu ready, %.1f MiB sent\n",
                   sc->name, open, attackers, ready, double(stats.bytes) / 1048576.0);
    }
    loop.run_once(int(std::clamp<std::int64_t>((a_end - now) / ms_ns, 0, 10)));
  }
  const std::int64_t a1 = now_ns();
  const server_sample attack_after = sample_server(o);
  if (o.server_pid) {
    if (const auto rss = read_rss_kib(*o.server_pid)) rss_peak = std::max(rss_peak, *rss);
  }
  const std::uint64_t attack_replies = client.replies.load() - attack_replies0;
  // What the server took in: written, less what is still in kernel buffers on either side.
  std::uint64_t in_flight = unread_bytes(t.port, t.ipv6).value_or(0);
  for (auto& l : lanes) in_flight += l->unsent();
  const std::uint64_t consumed = stats.bytes > in_flight ? stats.bytes - in_flight : 0;
  finish_client();
  const bool alive =
      !o.server_pid || (process_state(*o.server_pid) != 0 && process_state(*o.server_pid) != 'Z');
  std::size_t ready_end = 0;
  for (auto& a : lanes) ready_end += a->ready();
  lanes.clear();  // closes every attacking connection

  json_object j;
  j.str("mode", "attack").str("scenario", sc->name).str("target", t.text);
  j.integer("attackers", static_cast<std::int64_t>(attackers));

  json_object c;
  c.str("wire", wire_kind).num("rate", o.client_rate).integer("size", std::int64_t(o.size));
  c.boolean("fifo", client.fifo).boolean("lost", client.status.load() == 2);
  if (client.error) c.str("error", std::strerror(client.error));
  c.num("baseline_s", baseline_s);
  c.obj("baseline_us", percentiles_json(client.hist[baseline], 1e3));
  c.integer("baseline_sent", std::int64_t(client.sent[baseline]));
  c.obj("attack_us", percentiles_json(client.hist[attack], 1e3));
  c.integer("attack_sent", std::int64_t(client.sent[attack]));
  c.integer("unanswered", std::int64_t(client.censored[baseline] + client.censored[attack]));
  c.integer("max_outstanding", std::int64_t(client.max_outstanding));
  j.obj("client", c);

  const double window = double(a1 - a0) / 1e9;
  json_object a;
  a.num("duration_s", window);
  a.integer("connects", std::int64_t(stats.connects));
  a.integer("connect_errors", std::int64_t(stats.connect_errors));
  a.integer("upgrade_refused", std::int64_t(stats.upgrade_refused));
  a.integer("closed_by_server", std::int64_t(stats.closed_by_server));
  a.integer("open_max", std::int64_t(open_max));
  a.integer("ready_max", std::int64_t(ready_max)).integer("ready_end", std::int64_t(ready_end));
  a.integer("bytes", std::int64_t(stats.bytes)).integer("consumed_bytes", std::int64_t(consumed));
  a.num("consumed_mib_per_s", window > 0 ? double(consumed) / 1048576.0 / window : 0);
  if (stats.last_error) a.str("last_error", std::strerror(int(stats.last_error)));
  j.obj("attack", a);

  json_object s;
  s.integer("pid", o.server_pid ? *o.server_pid : 0).boolean("alive", alive);
  if (base_before.cpu && base_after.cpu && base_replies > 0) {
    s.num("baseline_cpu_us_per_req",
          (base_after.cpu->on_cpu_s - base_before.cpu->on_cpu_s) * 1e6 / double(base_replies));
  }
  if (base_after.cpu && attack_after.cpu && window > 0) {
    const double on_cpu = attack_after.cpu->on_cpu_s - base_after.cpu->on_cpu_s;
    s.num("attack_on_cpu_s", on_cpu).num("attack_cpu_pct", 100 * on_cpu / window);
    // The well-behaved client's own requests cost what they cost in the baseline; the rest is
    // the attack's.
    double client_cpu = 0;
    if (base_before.cpu && base_after.cpu && base_replies > 0) {
      client_cpu = (base_after.cpu->on_cpu_s - base_before.cpu->on_cpu_s) / double(base_replies) *
                   double(attack_replies);
    }
    if (consumed > 0) {
      s.num("cpu_s_per_mib", std::max(0.0, on_cpu - client_cpu) / (double(consumed) / 1048576.0));
    }
  }
  if (base_after.rss_kib) {
    s.integer("rss_before_kib", std::int64_t(*base_after.rss_kib));
    s.integer("rss_peak_kib", std::int64_t(rss_peak));
    s.num("rss_delta_per_attacker_bytes",
          (double(rss_peak) - double(*base_after.rss_kib)) * 1024.0 / double(attackers));
  }
  j.obj("server", s);
  std::printf("%s\n", j.text().c_str());
  return client.sent[attack] > 0 ? 0 : 1;
}

}  // namespace atoll_load
