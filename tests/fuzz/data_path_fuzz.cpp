// libFuzzer target: the whole data path, not only its parsers. A real in-process atl::server
// (one io thread) serves five Unix-socket listeners: a plain echo, a WebSocket echo with
// permessage-deflate, the same with a 1 ms keepalive ping, and a PROXY-protocol echo (plus a
// control listener whose connection the harness uses to reach the io thread). Each input is a
// client script (data_path_script.hpp) played against one of them: arbitrary bytes, valid
// masked (and compressed) WebSocket frames built from the input, half-close, reset, stop and
// resume reading, sends and closes through the connection's handle from this (another)
// thread, and time jumping past the read, handshake and idle timeouts through the clock seam
// (detail::clock, src/asio_types.hpp).
//
// Small limits make the interesting states cheap to reach: max_write_buffer 4 KiB, the
// accepted sockets' SO_SNDBUF at its minimum (set through the accept4 seam, since the listener
// applies socket options to TCP only), so a client that stops reading fills the server's write
// queue within a few steps.
//
// Determinism: after every step the harness waits until the io thread is quiescent (a chain of
// posted no-ops, each behind one more poll of the reactor), so the server has handled all the
// client did before the next step. Timeouts run on the seam clock, which `advance` steps move.
// The keepalive listener pings every millisecond of real time (its timer was an
// asio::steady_timer in ws::session at 037861d; since then it is a connection::after() timer on
// the seam clock, which also follows real time), so for its inputs the io thread is parked
// between steps and let go after one ping interval: one ping per step. Under heavy load a
// quiescence wait can outlast an interval, so a race-dependent input (a reset while a ping is
// due) may need `-runs=N` to reproduce; queue arithmetic (pings filling the write queue)
// reproduces at once.
// At the end of every input the client closes and the harness waits until the server has no
// fuzz connection left, so a crash always belongs to the input that caused it. A connection
// that outlives its peer (after a jump past every timeout) is a finding.
//
// One server serves all inputs (starting one costs ~1 ms); it is started again if its control
// connection was lost.
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "asio_types.hpp"
#include "atoll/connection.hpp"
#include "atoll/log.hpp"
#include "atoll/proxy_protocol.hpp"
#include "atoll/server.hpp"
#include "atoll/ws/deflate.hpp"
#include "atoll/ws/frame.hpp"
#include "atoll/ws/session.hpp"
#include "data_path_script.hpp"
#include "fuzz_support.hpp"
#include "sys_calls.hpp"

namespace {

namespace ws = atl::ws;
using namespace std::chrono_literals;
using atoll_fuzz::step;
using atoll_fuzz::variant;

// The accepted sockets' SO_SNDBUF: the kernel raises it to its minimum (about 4.5 KiB).
constexpr int small_socket_buffer = 1;
constexpr std::size_t max_write_buffer = 4096;
constexpr std::size_t write_low_water = 1024;

// The keepalive listener's ping_interval, and how long the io thread stays parked per step in
// ticking mode: a bit more than one interval, so the ping timer is due exactly once.
constexpr auto ping_interval = 1ms;
constexpr auto tick = 1100us;

// Posted no-ops per quiescence wait: each runs behind one more poll of the reactor, and a
// connection's own follow-ups (speculative reads, the upgrade's settle) are posted at most
// twice in a row.
constexpr int quiet_rounds = 4;
// The io thread answers a quiescence wait within this, or it is stuck (a finding).
constexpr auto stall_limit = 5s;

// What the server's handlers tell the harness; written on the io thread, read by the fuzzer.
struct shared_state {
  std::mutex m;
  std::condition_variable cv;
  std::optional<asio::any_io_executor> io;  // the io thread, from the control connection
  bool control_closed = false;
  atl::connection_handle conn;  // the fuzz connection (plain, proxy, or under a ws session)
  ws::session_handle session;   // its WebSocket session, once upgraded
};

shared_state& state() {
  static shared_state s;
  return s;
}

class control_handler final : public atl::handler {
 public:
  void on_open(atl::connection& c) override {
    std::lock_guard lock(state().m);
    state().io = c.executor();
    state().cv.notify_all();
  }
  void on_data(atl::connection&, std::span<const std::byte>) override {}
  void on_close(atl::connection&, atl::close_reason, std::error_code) override {
    std::lock_guard lock(state().m);
    state().control_closed = true;
  }
};

class echo_handler final : public atl::handler {
 public:
  void on_open(atl::connection& c) override {
    std::lock_guard lock(state().m);
    state().conn = c.handle();
  }
  void on_data(atl::connection& c, std::span<const std::byte> data) override { c.send(data); }
};

class ws_echo final : public ws::handler {
 public:
  void on_open(ws::session& s) override {
    std::lock_guard lock(state().m);
    state().session = s.handle();
  }
  void on_text(ws::session& s, std::string_view text) override { s.send_text(text); }
  void on_binary(ws::session& s, std::span<const std::byte> data) override { s.send_binary(data); }
};

// accept4 through the seam, shrinking the accepted socket's send buffer: Unix sockets get no
// socket_options from the listener, and a small buffer makes backpressure a few steps away.
int accept_with_small_buffer(int fd, sockaddr* addr, socklen_t* len, int flags) {
  const int s = ::accept4(fd, addr, len, flags);
  if (s >= 0) ::setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small_socket_buffer, sizeof(int));
  return s;
}

// One client connection of the script.
struct client {
  int fd = -1;
  bool write_shut = false;
  bool reading = true;                   // reads what the server sent after every step
  std::optional<ws::deflater> deflater;  // the compressed message being sent, if any
  std::uint8_t mask_seed = 0;
};

class harness {
 public:
  harness() { start(); }

  void run(const std::uint8_t* data, std::size_t size);
  // Stops the server and removes its socket directory (at exit).
  void shut_down() {
    stop();
    ::rmdir(dir_.c_str());
  }

 private:
  void start();
  void stop();
  std::string path(variant v) const { return dir_ + "/" + std::to_string(static_cast<int>(v)); }
  atl::listener_id listener(variant v) const { return ids_[static_cast<std::size_t>(v)]; }

  int connect_to(variant v);
  void post(std::function<void()> fn);
  void quiesce();
  void park();
  void unpark();
  void advance(std::chrono::milliseconds d);
  void wait_drained(variant v);

  void perform(variant v, client& c, const step& s);
  void write_all(client& c, std::span<const std::byte> bytes);
  void read_available(client& c, std::size_t limit);
  void close_client(client& c, bool drain);
  void send_frame(client& c, const step& s);

  std::string dir_;
  std::unique_ptr<atl::server> server_;
  std::vector<atl::listener_id> ids_;
  int control_fd_ = -1;
  asio::any_io_executor io_;
  // Ticking mode (the keepalive listener): its ping timer follows real time, so to keep inputs
  // reproducible the io thread is parked between steps and each step lets exactly one
  // interval pass: one ping per step.
  bool ticking_ = false;
  bool parked_ = false;
  std::chrono::steady_clock::time_point parked_at_;
  struct park_gate {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
  };
  std::shared_ptr<park_gate> gate_;
  // DATA_PATH_TRACE=1: print each step and what the client read (to understand an input).
  bool trace_ = std::getenv("DATA_PATH_TRACE") != nullptr;
};

void harness::start() {
  if (dir_.empty()) {
    char tmpl[] = "/tmp/atoll-data-path-fuzz-XXXXXX";
    ATOLL_FUZZ_CHECK(::mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
  }
  atl::detail::sys::current().accept4 = accept_with_small_buffer;

  atl::server_config sc;
  sc.io_threads = 1;
  sc.receive_buffer_size = 16 * 1024;
  sc.loop_lag_interval = 1h;  // the clock jumps would make every probe "late"
  if (trace_) {
    sc.events = [](const atl::event& e) {
      if (e.type != atl::event_type::closed && e.type != atl::event_type::rejected) return;
      std::fprintf(stderr, "  server: connection %llu %s (%s): %s\n",
                   static_cast<unsigned long long>(e.connection_id),
                   e.type == atl::event_type::closed ? "closed" : "rejected",
                   std::string(e.close ? atl::to_string(*e.close) : atl::to_string(*e.reject)).c_str(),
                   e.error.message().c_str());
    };
  }
  server_ = std::make_unique<atl::server>(sc);
  ids_.assign(static_cast<std::size_t>(variant::count), 0);

  auto base = [&](variant v) {
    atl::listener_config l;
    l.unix_path = path(v);
    l.max_write_buffer = max_write_buffer;
    l.write_low_water = write_low_water;
    l.read_timeout = 1000ms;
    l.handshake_timeout = 300ms;
    l.shutdown_timeout = 0ms;
    return l;
  };

  atl::listener_config control = base(variant::control);
  control.read_timeout = 0ms;  // immune to the clock jumps
  control.max_write_buffer = 4 * 1024 * 1024;
  control.write_low_water = 64 * 1024;
  ids_[static_cast<std::size_t>(variant::control)] = server_->add_listener(
      control, [](atl::connection&) { return std::make_unique<control_handler>(); });

  ids_[static_cast<std::size_t>(variant::plain)] = server_->add_listener(
      base(variant::plain), [](atl::connection&) { return std::make_unique<echo_handler>(); });

  atl::listener_config proxied = base(variant::proxy);
  proxied.proxy_protocol = atl::proxy_protocol_mode::any;
  ids_[static_cast<std::size_t>(variant::proxy)] = server_->add_listener(
      proxied, [](atl::connection&) { return std::make_unique<echo_handler>(); });

  for (variant v : {variant::ws, variant::ws_keepalive}) {
    ws::options o;
    o.deflate = true;
    o.idle_timeout = 2000ms;
    o.close_timeout = 500ms;
    o.max_message_size = 64 * 1024;
    atl::listener_config l = base(v);
    if (v == variant::ws_keepalive) {
      // Every keepalive tick adds 2 bytes to a queue that is not drained: a smaller limit
      // puts that tick's send within reach of max_write_buffer.
      o.ping_interval = ping_interval;
      l.max_write_buffer = 1024;
      l.write_low_water = 256;
    }
    auto factory = ws::upgrade_factory(o, [](const ws::http_request&, atl::connection& c) {
      {
        std::lock_guard lock(state().m);
        state().conn = c.handle();
      }
      return std::make_unique<ws_echo>();
    });
    ids_[static_cast<std::size_t>(v)] = server_->add_listener(l, std::move(factory));
  }
  server_->start();

  {
    std::lock_guard lock(state().m);
    state().io.reset();
    state().control_closed = false;
  }
  control_fd_ = connect_to(variant::control);
  std::unique_lock lock(state().m);
  ATOLL_FUZZ_CHECK(state().cv.wait_for(lock, stall_limit, [] { return state().io.has_value(); }));
  io_ = *state().io;
}

void harness::stop() {
  if (control_fd_ >= 0) ::close(control_fd_);
  control_fd_ = -1;
  server_->stop();
  server_.reset();
}

int harness::connect_to(variant v) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ATOLL_FUZZ_CHECK(fd >= 0);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small_socket_buffer, sizeof(int));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  const std::string p = path(v);
  ATOLL_FUZZ_CHECK(p.size() < sizeof sun.sun_path);
  std::memcpy(sun.sun_path, p.c_str(), p.size() + 1);
  ATOLL_FUZZ_CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
  return fd;
}

void harness::post(std::function<void()> fn) { asio::post(io_, std::move(fn)); }

// Returns once the io thread has run `quiet_rounds` posted no-ops in a row: everything the
// client did before (bytes, closes) has been seen and handled by then. In ticking mode the io
// thread is parked between quiescence waits and let go only after a whole keepalive interval,
// so each wait is exactly one tick of the real-clock ping timer (see `ticking_`).
void harness::quiesce() {
  if (parked_) {
    std::this_thread::sleep_until(parked_at_ + tick);
    unpark();
  }
  struct round {
    asio::any_io_executor io;
    int left;
    std::shared_ptr<std::promise<void>> done;
    void operator()() {
      if (--left == 0) return done->set_value();
      asio::post(io, round{io, left, done});
    }
  };
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  asio::post(io_, round{io_, quiet_rounds, done});
  if (f.wait_for(stall_limit) != std::future_status::ready) {
    std::fprintf(stderr, "data_path_fuzz: the io thread did not come back within 5 s\n");
    std::abort();
  }
  if (ticking_) park();
}

// Blocks the io thread in a posted handler until unpark(): meanwhile no timer fires and no
// socket event is handled.
void harness::park() {
  auto gate = std::make_shared<park_gate>();
  auto parked = std::make_shared<std::promise<void>>();
  auto f = parked->get_future();
  post([gate, parked] {
    std::unique_lock lock(gate->m);
    parked->set_value();
    gate->cv.wait_for(lock, stall_limit, [&] { return gate->open; });
  });
  ATOLL_FUZZ_CHECK(f.wait_for(stall_limit) == std::future_status::ready);
  gate_ = std::move(gate);
  parked_ = true;
  parked_at_ = std::chrono::steady_clock::now();
}

void harness::unpark() {
  {
    std::lock_guard lock(gate_->m);
    gate_->open = true;
  }
  gate_->cv.notify_all();
  gate_.reset();
  parked_ = false;
}

// Moves the seam clock forward and makes the io thread notice: a timer due at the earliest
// possible time makes Asio recompute its wait, and the timers now due fire with it.
void harness::advance(std::chrono::milliseconds d) {
  atl::detail::clock::advance(d);
  auto fired = std::make_shared<std::promise<void>>();
  auto f = fired->get_future();
  post([io = io_, fired] {
    auto t = std::make_shared<asio::basic_waitable_timer<atl::detail::clock>>(io);
    t->expires_at(atl::detail::clock::time_point{});
    t->async_wait([t, fired](std::error_code) { fired->set_value(); });
  });
  for (int i = 0; i < 8 && f.wait_for(0s) != std::future_status::ready; ++i) quiesce();
  ATOLL_FUZZ_CHECK(f.wait_for(0s) == std::future_status::ready);
}

void harness::write_all(client& c, std::span<const std::byte> bytes) {
  if (c.fd < 0 || c.write_shut) return;
  // The server reads whatever arrives, so a full buffer empties once it has run; a server that
  // stopped reading (finishing, or a paused handler) leaves the rest unsent.
  for (int tries = 0; !bytes.empty() && tries < 4; ++tries) {
    const ssize_t n = ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      bytes = bytes.subspan(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return;
    quiesce();
  }
}

void harness::read_available(client& c, std::size_t limit) {
  if (c.fd < 0) return;
  std::byte buf[16 * 1024];
  std::size_t got = 0;
  ssize_t n = 0;
  while (got < limit) {
    n = ::recv(c.fd, buf, std::min(limit - got, sizeof buf), MSG_DONTWAIT);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (trace_) {
    std::fprintf(stderr, "  read %zu bytes%s\n", got,
                 n == 0                     ? " (eof)"
                 : n < 0 && errno != EAGAIN ? " (error)"
                                            : "");
  }
}

void harness::close_client(client& c, bool drain) {
  if (c.fd < 0) return;
  // A Unix socket closed with unread bytes resets its peer (ECONNRESET), like a TCP RST.
  if (drain) read_available(c, SIZE_MAX);
  ::close(c.fd);
  c.fd = -1;
  c.deflater.reset();
}

// A masked client frame from the step: `compress` deflates a text/binary message's payload
// (a fresh compressor per message: client_no_context_takeover was offered) and sets RSV1 on
// its first frame; on other frames it sets RSV1 over the raw payload (a protocol error).
void harness::send_frame(client& c, const step& s) {
  ws::frame_header h;
  h.op = s.op;
  h.fin = s.fin;
  h.rsv2 = s.rsv2;
  h.masked = !s.unmasked;
  h.key = {std::byte{c.mask_seed}, std::byte{0x5a}, std::byte{0xc3}, std::byte{0x17}};
  ++c.mask_seed;
  std::span<const std::byte> payload(s.payload);
  std::vector<std::byte> compressed;
  const bool data_op = s.op == ws::opcode::text || s.op == ws::opcode::binary;
  if (s.compress && (data_op || (s.op == ws::opcode::continuation && c.deflater))) {
    if (data_op) {
      ws::deflate_params params;
      params.client_no_context_takeover = true;
      c.deflater.emplace(params, ws::role::client);
      h.rsv1 = true;
    }
    if (c.deflater->compress(payload, s.fin, compressed)) return;
    payload = compressed;
    if (s.fin) c.deflater.reset();
  } else if (s.compress) {
    h.rsv1 = true;
  }
  std::vector<std::byte> frame;
  ws::append_frame(frame, h, payload);
  write_all(c, frame);
}

void harness::perform(variant v, client& c, const step& s) {
  using kind = atoll_fuzz::step_kind;
  if (trace_) {
    std::fprintf(stderr, "step %d: %zu bytes, op %d, amount %zu, %lld ms\n",
                 static_cast<int>(s.kind), s.payload.size(), static_cast<int>(s.op), s.amount,
                 static_cast<long long>(s.duration.count()));
  }
  switch (s.kind) {
    case kind::write:
      write_all(c, s.payload);
      break;
    case kind::ws_frame:
      send_frame(c, s);
      break;
    case kind::read:
      read_available(c, s.amount);
      break;
    case kind::half_close:
      if (c.fd >= 0 && !c.write_shut) ::shutdown(c.fd, SHUT_WR);
      c.write_shut = true;
      break;
    case kind::reset:
    case kind::close:
      close_client(c, s.kind == kind::close);
      break;
    case kind::reconnect:
      close_client(c, true);
      c = client{};
      c.fd = connect_to(v);
      break;
    case kind::handle_send: {
      std::lock_guard lock(state().m);
      if (v == variant::ws || v == variant::ws_keepalive) {
        if (s.text) {
          std::string text(s.payload.size(), 'x');
          for (std::size_t i = 0; i < text.size(); ++i) {
            text[i] = static_cast<char>(static_cast<std::uint8_t>(s.payload[i]) & 0x7f);
          }
          state().session.send_text(std::move(text));
        } else {
          state().session.send_binary(std::span<const std::byte>(s.payload));
        }
      } else {
        state().conn.send(std::span<const std::byte>(s.payload));
      }
      break;
    }
    case kind::handle_close: {
      std::lock_guard lock(state().m);
      if (s.abort) {
        state().conn.abort();
      } else if (v == variant::ws || v == variant::ws_keepalive) {
        state().session.close(static_cast<ws::close_code>(s.amount), "bye");
      } else {
        state().conn.close();
      }
      break;
    }
    case kind::advance:
      advance(s.duration);
      return;  // advance() waited already
    case kind::run_loop:
      // One tick per millisecond (ticking mode), else real time for the loop.
      for (auto t = 1ms; t < s.duration; t += 1ms) {
        if (ticking_) {
          quiesce();
        } else {
          std::this_thread::sleep_for(1ms);
        }
      }
      break;
    case kind::reading:
      c.reading = s.on;
      break;
  }
  quiesce();
}

// The client is gone: every fuzz connection must end, at the latest when its timeouts (all
// below a few seconds here) have passed.
void harness::wait_drained(variant v) {
  const atl::listener_id id = listener(v);
  for (int attempt = 0; attempt < 3; ++attempt) {
    for (int i = 0; i < 20; ++i) {
      if (server_->status(id).active == 0) return;
      quiesce();
    }
    advance(10s);
  }
  std::fprintf(stderr, "data_path_fuzz: a connection outlived its client by 30 s (%zu left)\n",
               server_->status(id).active);
  std::abort();
}

void harness::run(const std::uint8_t* data, std::size_t size) {
  {
    std::lock_guard lock(state().m);
    if (state().control_closed || !server_->running()) {
      stop();
      start();
    }
  }
  atoll_fuzz::script script(data, size);
  const variant v = script.target();
  ticking_ = v == variant::ws_keepalive;
  client c;
  c.fd = connect_to(v);
  quiesce();
  while (std::optional<step> s = script.next()) {
    perform(v, c, *s);
    if (c.reading) read_available(c, SIZE_MAX);
    if (trace_) {
      std::lock_guard lock(state().m);
      state().conn.dispatch([](atl::connection& conn) {
        std::fprintf(stderr, "  server: %zu bytes queued\n", conn.buffered_amount());
      });
    }
  }
  close_client(c, false);
  ticking_ = false;
  wait_drained(v);
  if (trace_) std::fprintf(stderr, "end of input: drained\n");
  std::lock_guard lock(state().m);
  state().conn = {};
  state().session = {};
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Warnings about handler errors, rejected headers and slow consumers are expected here.
  atl::logger()->set_level(spdlog::level::off);
  // OpenSSL initialises itself on first use, keeping some of it in that thread's state; done
  // by the io thread (the upgrade's SHA-1), LeakSanitizer reports it once the thread has ended.
  OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Stopped by an exit handler registered after the libraries' statics were built, so it
  // runs before their destructors (the io thread must not outlive them).
  static harness* h = [] {
    auto* made = new harness();
    std::atexit([] {
      h->shut_down();
      delete h;
    });
    return made;
  }();
  h->run(data, size);
  return 0;
}
