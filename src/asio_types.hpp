#pragma once
// The Asio types atoll uses internally. One generic stream protocol serves TCP v4/v6 and Unix
// sockets, so every code path below is written once; executors are the concrete io_context
// executor (8 bytes) rather than any_io_executor, which matters at 100k connections.

#include <asio/basic_socket_acceptor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/basic_waitable_timer.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <chrono>

namespace atl::detail {

using executor_type = asio::io_context::executor_type;
using stream_protocol = asio::generic::stream_protocol;
using stream_socket = asio::basic_stream_socket<stream_protocol, executor_type>;
using socket_acceptor = asio::basic_socket_acceptor<stream_protocol, executor_type>;

// The clock of every atoll deadline and timer (read timeouts, handshake timeouts, the waiting
// room, max age, back-off): steady_clock plus an offset that only tests move. It is the time
// seam, as sys_calls.hpp is the one for accept/close: the data-path fuzzer jumps past read and
// handshake timeouts in one step instead of sleeping through them. The offset only grows, so
// the clock stays steady; its time_point is steady_clock's (same epoch), so deadlines mix with
// code that reads steady_clock directly. Cost: one relaxed atomic load and an add per now().
struct clock {
  using duration = std::chrono::steady_clock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    return std::chrono::steady_clock::now() + duration(offset_.load(std::memory_order_relaxed));
  }

  // Tests only: moves now() forward by `d` (> 0) for every thread. An io thread sleeping on a
  // timer computed its wait before the jump: wake it by arming a detail::steady_timer due at
  // time_point{} (the earliest possible, so Asio recomputes its timer wait), or it notices only
  // when its old wait ends.
  static void advance(duration d) noexcept {
    offset_.fetch_add(d.count(), std::memory_order_relaxed);
  }

 private:
  static inline std::atomic<rep> offset_{0};
};

using steady_timer = asio::basic_waitable_timer<clock, asio::wait_traits<clock>, executor_type>;

}  // namespace atl::detail
