#pragma once
/// @file handler.hpp
/// The user's per-connection code: `atl::handler`, `close_reason`, `handler_factory`.

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>

namespace atl {

class connection;

/// Why a connection ended; passed to `handler::on_close` and counted in
/// `listener_stats::closed_total`.
enum class close_reason {
  peer_closed,    ///< the peer closed (EOF) or reset the connection.
  local_close,    ///< `connection::close()` or `connection::abort()` was called.
  timeout,        ///< no data for the read timeout (the default `on_timeout` closes).
  error,          ///< a socket error (the `std::error_code` says which).
  slow_consumer,  ///< the write queue exceeded `listener_config::max_write_buffer`.
  handler_error,  ///< a handler callback threw; the exception was logged.
  shutdown,       ///< the server's drain ended: closed by `on_shutdown` or aborted at the deadline.
  rejected,       ///< refused before it was fully open (used by handshake modules).
};

/// Number of `close_reason` values (for arrays indexed by reason).
inline constexpr std::size_t close_reason_count = 8;

/// "peer_closed", "local_close", ... (the Prometheus label value).
std::string_view to_string(close_reason r) noexcept;

/// User code for one connection. atoll makes one handler per admitted connection with the
/// listener's `handler_factory` and destroys it after `on_close`.
///
/// Thread rules: every callback of one connection runs on that connection's io thread, never
/// concurrently with another callback of the same connection, so a handler needs no locks for
/// its own state. Callbacks must not block: they run on an event loop shared with other
/// connections.
///
/// Exceptions: an exception escaping any callback is caught, logged (logger "atoll", level
/// error), and that connection alone is closed with `close_reason::handler_error`. An
/// exception from `on_close` is logged and ignored.
class handler {
 public:
  virtual ~handler() = default;

  /// The connection is admitted and ready; called once, first.
  virtual void on_open(connection&) {}

  /// Bytes arrived. `data` points into a per-thread receive buffer that is reused after this
  /// call returns: copy what you need to keep. Never called with an empty span.
  virtual void on_data(connection& c, std::span<const std::byte> data) = 0;

  /// The write queue fell to `listener_config::write_low_water` bytes or fewer after a
  /// `send()` had returned `send_result::backpressure`.
  virtual void on_writable(connection&) {}

  /// No data arrived for the connection's read timeout. The default closes the connection
  /// (`close_reason::timeout`). A handler that does not close is given another full timeout.
  virtual void on_timeout(connection& c);

  /// The server is draining (`server::stop`). The default closes the connection after its
  /// queued writes; override to say goodbye first. Connections still open at the drain
  /// deadline are aborted with `close_reason::shutdown`.
  virtual void on_shutdown(connection& c);

  /// The connection has ended; called exactly once for every `on_open`, last. The socket is
  /// already closed; the `connection` may still be queried (id, peer) but not written to.
  /// `ec` is a system error for `close_reason::error`, otherwise an `atl::errc` or empty.
  virtual void on_close(connection&, close_reason, std::error_code) {}
};

/// Makes the handler for a newly admitted connection; called on that connection's io thread
/// before `on_open`. Returning nullptr refuses the connection: it is closed at once and
/// counted as `rejected_total{reason="refused"}`, and no handler callback runs. An exception
/// thrown here is logged and treated the same way. Must be callable from several io threads
/// at once.
using handler_factory = std::function<std::unique_ptr<handler>(connection&)>;

}  // namespace atl
