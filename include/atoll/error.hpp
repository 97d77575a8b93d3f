#pragma once
/// @file error.hpp
/// atoll's own error conditions, as a `std::error_code` enum.

#include <string>
#include <system_error>

namespace atl {

/// Conditions atoll itself reports through `std::error_code` (in `handler::on_close`, in the
/// `std::error_code&` overloads of setup calls, and in `event`s). System errors (errno values)
/// are reported with `std::system_category()` as they are.
enum class errc {
  ok = 0,
  invalid_config = 1,      ///< a configuration value was refused by validation (`start()`).
  over_limit,              ///< the listener was at `max_connections` (retry_count == 0).
  waiting_room_full,       ///< the waiting room held `max_waiting` sockets already.
  wait_expired,            ///< a waiting socket got no slot within retry_count x retry_wait.
  descriptors_exhausted,   ///< accept(2) failed with EMFILE/ENFILE; the client was shed.
  shutting_down,           ///< the server or listener is stopping.
  read_timeout,            ///< no data arrived for the connection's read timeout.
  slow_consumer,           ///< the write queue grew beyond `max_write_buffer`.
  handler_exception,       ///< a handler callback threw; the message is in the log.
  handler_refused,         ///< the handler factory returned no handler.
  aborted,                 ///< `connection::abort()` was called.
  not_running,             ///< the call needs a started server.
  already_started,         ///< the call is only valid before `start()`.
  handshake_timeout,       ///< the PROXY header / TLS handshake exceeded handshake_timeout.
  proxy_header_invalid,    ///< the PROXY protocol header was missing or malformed.
  tls_handshake_failed,    ///< the TLS handshake failed (details in the debug log).
  max_age_reached,         ///< the connection reached listener_config::max_connection_age.
};

/// The category of `atl::errc`; its name is "atoll".
const std::error_category& error_category() noexcept;

/// Makes a `std::error_code` from an `atl::errc` (found by ADL).
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace atl

template <>
struct std::is_error_code_enum<atl::errc> : std::true_type {};
