#pragma once
/// @file server.hpp
/// `atl::server`: io threads, listeners, acceptors, supervisors, drain.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "atoll/endpoint.hpp"
#include "atoll/handler.hpp"
#include "atoll/listener.hpp"
#include "atoll/stats.hpp"

namespace atl {

namespace detail {
class server_impl;
}

/// Server-wide options. Plain aggregate, validated by `server::start()`.
struct server_config {
  /// Number of io threads, each running its own event loop; connections stay on the thread
  /// that accepted them. Default: the hardware concurrency (at least 1). 0 is refused.
  std::size_t io_threads = std::max(1u, std::thread::hardware_concurrency());
  /// Size of each io thread's receive buffer (shared by all its connections), in bytes.
  /// Also the most one `on_data` call delivers. Default 64 KiB; at least 1 KiB.
  std::size_t receive_buffer_size = 64 * 1024;
  /// Interval of the event-loop lag probe on each io thread. Default 100 ms.
  std::chrono::milliseconds loop_lag_interval{100};
  /// Rate limit of warnings (rejected connections, accept errors): at most one line per
  /// listener and kind per interval, carrying the count. Default 1 s.
  std::chrono::milliseconds warn_interval{1000};
  /// Signals that make `run()` drain and return (e.g. {SIGINT, SIGTERM}); empty = none.
  /// They are handled from `start()` on (so a listening server is never killed by their
  /// default action) until the server is destroyed; a signal before `run()` makes `run()`
  /// return at once after draining.
  std::vector<int> stop_signals;
  /// Optional structured-event receiver; see `event_sink`.
  event_sink events;
};

/// Index of a listener in its server (`add_listener`'s result).
using listener_id = std::size_t;

/// A listener's state for health endpoints and drain logic (`server::status`).
struct listener_status {
  /// Started and not stopped.
  bool running = false;
  /// Not accepting (`server::suspend`), while existing connections carry on.
  bool suspended = false;
  /// Connections open now (including those still in their TLS / PROXY handshake).
  std::size_t active = 0;
  /// Sockets in the waiting room now.
  std::size_t waiting = 0;
  std::size_t max_connections = 0;
};

/// How `server::wait_for_connections` compares the active count with its number.
enum class count_is { equal, not_equal, less, less_equal, greater, greater_equal };

/// A TCP / Unix-socket server: listeners with connection limits, handled by user `handler`s.
///
/// Lifecycle: construct → `add_listener` (one or more) → `start()` (validates, binds, starts
/// the io threads) → ... → `stop()` (drains) or `run()` (blocks until a stop is requested).
/// The destructor stops a running server (draining with each listener's shutdown_timeout).
///
/// Thread rules: `stats()`, `local_endpoints()`, `set_max_connections()`, `suspend()`,
/// `resume()` and `request_stop()` may be called from any thread, including io threads
/// (handlers). `start()`, `run()` and `stop()` must be called from a thread that is not one
/// of this server's io threads (`stop()` from an io thread only requests the stop).
class server {
 public:
  explicit server(server_config config = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Adds a listener; only before `start()` (else throws std::logic_error). `factory` makes
  /// the handler of each admitted connection (see `handler_factory`).
  listener_id add_listener(listener_config config, handler_factory factory);

  /// Validates the configuration, binds every listener, starts the io threads and accepting.
  /// Throws std::invalid_argument naming the bad field ("listener[0].retry_wait: ..."), or
  /// std::system_error naming the address when binding fails. Nothing stays bound on failure.
  void start();
  /// As `start()`, reporting failure in `ec` (`errc::invalid_config` or the system error);
  /// the message is logged and kept in `last_error()`.
  void start(std::error_code& ec) noexcept;
  /// The message of the last failed `start`/`resume` (empty if none).
  std::string last_error() const;

  /// Starts if needed, blocks until a stop is requested (`request_stop()`, `stop()` from
  /// another thread, or one of `server_config::stop_signals`), drains like `stop()` and
  /// returns when all io threads have ended.
  void run();
  /// Asks a `run()` to drain and return. Any thread; never blocks.
  void request_stop() noexcept;

  /// Graceful stop: closes the listeners, rejects waiting sockets, calls `on_shutdown` on
  /// every connection (on its own thread), waits until all have closed or each listener's
  /// `shutdown_timeout` has passed, aborts the rest, joins the io threads. Idempotent.
  void stop();
  /// As `stop()`, with at most `timeout` for the whole drain (the smaller of this and each
  /// listener's shutdown_timeout applies).
  void stop(std::chrono::milliseconds timeout);

  /// True between a successful `start()` and the end of `stop()`.
  bool running() const noexcept;
  /// Number of io threads.
  std::size_t io_threads() const noexcept;

  /// A snapshot of all counters. Any thread; takes no lock on the data path.
  server_stats stats() const;
  /// The bound addresses of a listener (one per listen socket); empty before `start()` or
  /// while suspended.
  std::vector<endpoint> local_endpoints(listener_id id) const;
  /// The first bound address of a listener (port 0 resolved). Throws std::out_of_range for
  /// an unknown id, std::logic_error if it is not bound.
  endpoint local_endpoint(listener_id id) const;

  /// A listener's status now. Any thread. Throws std::out_of_range for an unknown id.
  listener_status status(listener_id id) const;
  /// Blocks until the listener's active connection count compares to `n` as `op` says
  /// (e.g. `count_is::equal, 0` after `suspend()`: drained), or until `timeout`. Returns
  /// whether the condition held. As Ranch's `wait_for_connections`. Any thread except the
  /// server's io threads (it would block the connections it waits for); it polls the
  /// counters every millisecond, so it costs the data path nothing.
  bool wait_for_connections(listener_id id, count_is op, std::size_t n,
                            std::chrono::milliseconds timeout) const;
  /// As above with any condition on the status.
  bool wait_for_connections(listener_id id,
                            const std::function<bool(const listener_status&)>& condition,
                            std::chrono::milliseconds timeout) const;

  /// Changes a listener's limit now. Raising it admits waiting sockets at once; lowering it
  /// never closes live connections, it only refuses new ones until `active` falls below it.
  /// Throws std::invalid_argument for 0.
  void set_max_connections(listener_id id, std::size_t max_connections);
  /// Stops accepting on a listener and closes its listen sockets (new clients are refused by
  /// the kernel); live connections carry on; waiting sockets are rejected. An adopted
  /// descriptor is kept open (only accepting stops).
  void suspend(listener_id id);
  /// Binds again (the same port, also when it was 0) and accepts again.
  void resume(listener_id id);
  void resume(listener_id id, std::error_code& ec) noexcept;

 private:
  std::unique_ptr<detail::server_impl> impl_;
};

}  // namespace atl
