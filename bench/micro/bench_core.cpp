// Micro-benchmarks of atoll's hot paths (Google Benchmark 1.7), each beside the bare-Asio or
// bare-syscall floor it should be compared with where there is one:
//
//   supervisor_admit_release   try_acquire + release of a slot (1 and 2 threads, one limit)
//   supervisor_reject_at_limit try_acquire when the limit is reached
//   waiting_room_admit         enqueue a waiter, release a slot, the waiter is admitted
//   reject_path                listener_state::on_accepted at the limit (retry 0): count, close;
//                              vs socketpair_floor, the socketpair + close the loop costs anyway
//   dispatch_echo_atoll        one 64-byte message through a connection: readiness, recv into
//                              the thread's buffer, on_data, send — driven in one thread over a
//                              socketpair, so no wake-ups are measured;
//                              vs dispatch_echo_asio: the same with async_read_some/async_write
//                              and a 4 KiB per-connection buffer (bench/baseline's loop);
//                              dispatch_echo_epoll_floor: a bare edge-triggered epoll loop
//   write_queue                append N messages of S bytes, gather, consume
//
// They include atoll's private headers (src/): they measure internals, not the public API.
// WebSocket micro-benchmarks (frame parse/serialise, UTF-8, masking, deflate) go in
// bench/micro/ws_*.cpp, built only with the WebSocket module (see bench/CMakeLists.txt).

#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <atoll/atoll.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "io_thread.hpp"
#include "listener.hpp"
#include "server_impl.hpp"
#include "supervisor.hpp"
#include "write_queue.hpp"

namespace {

using namespace atl::detail;

// ---- supervisor ----------------------------------------------------------------------------

supervisor& shared_supervisor() {
  static supervisor s(std::size_t{1} << 40, 1024, [](waiter&&, slot&&) {});
  return s;
}

void supervisor_admit_release(benchmark::State& state) {
  supervisor& s = shared_supervisor();  // one limit shared by every thread, as in a server
  for (auto _ : state) {
    slot sl = s.try_acquire();
    benchmark::DoNotOptimize(sl);
  }  // the slot's destructor releases it
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(supervisor_admit_release)->Threads(1)->Threads(2)->UseRealTime();

void supervisor_reject_at_limit(benchmark::State& state) {
  supervisor s(1, 1024, [](waiter&&, slot&&) {});
  slot held = s.try_acquire();
  for (auto _ : state) {
    slot sl = s.try_acquire();
    benchmark::DoNotOptimize(sl);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(supervisor_reject_at_limit);

void waiting_room_admit(benchmark::State& state) {
  slot admitted;
  std::uint64_t admissions = 0;
  supervisor s(1, 1024, [&](waiter&&, slot&& sl) {
    admitted = std::move(sl);
    ++admissions;
  });
  admitted = s.try_acquire();
  for (auto _ : state) {
    waiter w{unique_fd(), compact_address(), clock::now(), 0};
    s.enqueue(w);        // the limit is reached: it waits
    admitted.release();  // a connection ends: the waiter gets the slot at once
  }
  if (admissions != static_cast<std::uint64_t>(state.iterations()))
    state.SkipWithError("a waiter was not admitted");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(waiting_room_admit);

// ---- a listener and an io thread, driven by the benchmark's own thread -------------------

class echo_handler final : public atl::handler {
 public:
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    if (c.send(data) == atl::send_result::backpressure) c.pause_reading();
  }
  void on_writable(atl::connection& c) override { c.resume_reading(); }
};

// A listener and an io thread that are never started: the benchmark thread runs the io
// context itself, so one message costs exactly what atoll does for it and nothing of the
// thread hand-offs a real server adds on both sides.
struct inline_server {
  server_impl server{atl::server_config{}};
  std::optional<listener_state> listener;
  std::optional<io_thread> thread;

  explicit inline_server(std::size_t max_connections) {
    atl::logger()->set_level(spdlog::level::off);  // reject warnings would only add noise
    atl::listener_config config;
    config.max_connections = max_connections;
    config.read_timeout = std::chrono::milliseconds(0);
    listener.emplace(server, 0, config,
                     [](atl::connection&) { return std::make_unique<echo_handler>(); });
    thread.emplace(0, 65536, 1);
  }
  ~inline_server() {
    thread->context().poll();
    thread->release_io_objects();
    thread.reset();
  }

  // Hands one end of a fresh socketpair to the listener as if accepted; returns the other.
  int accept_pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    sockaddr_un peer{};
    peer.sun_family = AF_UNIX;
    listener->on_accepted(*thread, unique_fd(sv[0]), reinterpret_cast<sockaddr*>(&peer),
                          sizeof(sa_family_t));
    return sv[1];
  }
};

void reject_path(benchmark::State& state) {
  inline_server s(1);
  const int held = s.accept_pair();  // takes the only slot
  for (auto _ : state) {
    const int client = s.accept_pair();  // over the limit: counted and closed at once
    ::close(client);
  }
  ::close(held);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(reject_path);

void socketpair_floor(benchmark::State& state) {
  for (auto _ : state) {
    int sv[2];
    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
    ::close(sv[0]);
    ::close(sv[1]);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(socketpair_floor);

// Sends `message` on `peer`, runs `poll` until the echo is back, and reads it.
template <class Poll>
bool echo_once(int peer, const std::array<char, 64>& message, Poll&& poll) {
  std::array<char, 64> reply;
  if (::send(peer, message.data(), message.size(), 0) != 64) return false;
  for (int spins = 0; spins < 1000; ++spins) {
    poll();
    if (::recv(peer, reply.data(), reply.size(), MSG_DONTWAIT) == 64) return true;
  }
  return false;
}

void dispatch_echo_atoll(benchmark::State& state) {
  inline_server s(16);
  const int peer = s.accept_pair();
  std::array<char, 64> message{};
  for (auto _ : state) {
    if (!echo_once(peer, message, [&] { s.thread->context().poll(); })) {
      state.SkipWithError("no echo");
      break;
    }
  }
  ::close(peer);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(dispatch_echo_atoll);

class asio_session : public std::enable_shared_from_this<asio_session> {
 public:
  explicit asio_session(asio::local::stream_protocol::socket s) : socket_(std::move(s)) {}
  void read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](std::error_code ec, std::size_t n) {
                              if (!ec) self->write(n);
                            });
  }

 private:
  void write(std::size_t n) {
    asio::async_write(socket_, asio::buffer(buffer_, n),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }
  asio::local::stream_protocol::socket socket_;
  std::array<char, 4096> buffer_;
};

void dispatch_echo_asio(benchmark::State& state) {
  asio::io_context ctx(1);
  int sv[2];
  ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
  {
    asio::local::stream_protocol::socket sock(ctx);
    sock.assign(asio::local::stream_protocol(), sv[0]);
    std::make_shared<asio_session>(std::move(sock))->read();
  }
  std::array<char, 64> message{};
  for (auto _ : state) {
    if (!echo_once(sv[1], message, [&] { ctx.poll(); })) {
      state.SkipWithError("no echo");
      break;
    }
  }
  ::close(sv[1]);
  ctx.poll();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(dispatch_echo_asio);

// The floor for both: a hand-written edge-triggered epoll loop, registered once, no
// re-arming (epoll_wait + recv + send per message). What an io thread that owned its epoll
// set could get down to.
void dispatch_echo_epoll_floor(benchmark::State& state) {
  int sv[2];
  ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event reg{};
  reg.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  reg.data.fd = sv[0];
  ::epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &reg);
  static std::array<char, 65536> buffer;  // one per thread, as atoll's receive buffer
  auto poll = [&] {
    epoll_event ready[8];
    const int n = ::epoll_wait(ep, ready, 8, 0);
    for (int i = 0; i < n; ++i) {
      const ssize_t got = ::recv(ready[i].data.fd, buffer.data(), buffer.size(), 0);
      if (got > 0) ::send(ready[i].data.fd, buffer.data(), static_cast<std::size_t>(got), 0);
    }
  };
  std::array<char, 64> message{};
  for (auto _ : state) {
    if (!echo_once(sv[1], message, poll)) {
      state.SkipWithError("no echo");
      break;
    }
  }
  ::close(ep);
  ::close(sv[0]);
  ::close(sv[1]);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(dispatch_echo_epoll_floor);

// ---- write queue ---------------------------------------------------------------------------

void write_queue_append_gather_consume(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto count = static_cast<std::size_t>(state.range(1));
  std::vector<std::byte> message(size, std::byte{'x'});
  write_queue q;
  iovec iov[64];
  for (auto _ : state) {
    for (std::size_t i = 0; i < count; ++i) q.append(message);
    std::size_t n = q.gather(iov, 64);
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < n; ++i) bytes += iov[i].iov_len;
    benchmark::DoNotOptimize(bytes);
    // What a partial sendmsg does: the kernel took half, then the rest.
    q.consume(bytes / 2);
    q.consume(q.size());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(count));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(count * size));
}
BENCHMARK(write_queue_append_gather_consume)
    ->Args({64, 1})
    ->Args({64, 16})
    ->Args({1024, 16})
    ->Args({16384, 4});

}  // namespace

BENCHMARK_MAIN();
