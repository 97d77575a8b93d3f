#pragma once
/// @file stats.hpp
/// Counters (`server_stats`), their Prometheus text rendering, and structured events.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "atoll/endpoint.hpp"
#include "atoll/handler.hpp"

namespace atl {

/// Why a socket was closed without being admitted.
enum class reject_reason {
  limit,              ///< at max_connections with retry_count == 0.
  waiting_room_full,  ///< at max_connections and the waiting room was full.
  wait_expired,       ///< waited retry_count x retry_wait without a slot.
  emfile,             ///< shed because accept(2) hit EMFILE/ENFILE.
  shutdown,           ///< waiting (or being admitted) when the server or listener stopped.
  refused,            ///< the handler factory returned nullptr or threw.
  handshake_timeout,  ///< the PROXY header or TLS handshake took longer than handshake_timeout.
  tls_handshake_failed,  ///< the TLS handshake failed (bad client hello, certificate, ALPN).
  proxy_header_invalid,  ///< the PROXY protocol header was missing or malformed.
};

/// Number of `reject_reason` values.
inline constexpr std::size_t reject_reason_count = 9;

/// "limit", "waiting_room_full", ... (the Prometheus label value).
std::string_view to_string(reject_reason r) noexcept;
/// The error code a rejection is reported with (`event::error`): `errc::over_limit` for
/// `limit`, `errc::waiting_room_full`, ... (one table, in handler.cpp).
std::error_code to_error_code(reject_reason r) noexcept;

/// A snapshot of one listener's counters. `*_total` counters only grow.
struct listener_stats {
  std::string name;
  /// Bound addresses (one per listen socket; several with reuse_port).
  std::vector<endpoint> endpoints;
  bool suspended = false;
  /// Connections open now (admitted, not yet finished).
  std::uint64_t active = 0;
  std::uint64_t max_connections = 0;
  /// Sockets in the waiting room now.
  std::uint64_t waiting = 0;
  /// Sockets taken from accept(2) (admitted, waiting or rejected).
  std::uint64_t accepted_total = 0;
  /// Connections admitted from the waiting room.
  std::uint64_t admitted_after_wait_total = 0;
  /// Indexed by `reject_reason`.
  std::array<std::uint64_t, reject_reason_count> rejected_total{};
  /// accept(2) failures by errno value.
  std::map<int, std::uint64_t> accept_errors_total;
  /// Indexed by `close_reason`.
  std::array<std::uint64_t, close_reason_count> closed_total{};
  std::uint64_t bytes_in_total = 0;
  std::uint64_t bytes_out_total = 0;

  std::uint64_t rejected(reject_reason r) const { return rejected_total[std::size_t(r)]; }
  std::uint64_t closed(close_reason r) const { return closed_total[std::size_t(r)]; }
};

/// Event-loop lag of one io thread: how late its 100 ms probe timer fired. A loop that is
/// busy (or blocked by a handler) shows it here first.
struct thread_stats {
  std::chrono::microseconds loop_lag_max{0};  ///< since start
  std::chrono::microseconds loop_lag_p99{0};  ///< over the last 128 probes (~12.8 s)
  std::uint64_t connections = 0;              ///< connections living on this thread now
};

/// A snapshot of the whole server (`server::stats()`).
struct server_stats {
  std::vector<listener_stats> listeners;
  std::vector<thread_stats> threads;
};

/// Renders `s` in the Prometheus text exposition format (version 0.0.4), metric names
/// prefixed `atoll_`, with `listener`, `reason`, `errno` and `thread` labels.
std::string to_prometheus(const server_stats& s);

/// What an `event` reports.
enum class event_type {
  listener_started,  ///< `endpoint` = bound address
  listener_stopped,
  accepted,   ///< a socket was admitted (connection id set)
  rejected,   ///< `reject` says why
  waiting,    ///< a socket entered the waiting room
  admitted,   ///< a waiting socket got a slot (connection id set)
  closed,     ///< a connection ended (`close` and `error` set)
  accept_error,  ///< accept(2) failed (`error` set)
};

/// A structured event for tracing (see `server_config::event_sink`). Made by the named
/// constructors below, one per `event_type`, so each carries exactly the fields its type has.
struct event {
  event_type type;
  std::size_t listener = 0;
  std::uint64_t connection_id = 0;     ///< 0 when there is no connection yet
  std::optional<reject_reason> reject;  ///< set for `rejected` only
  std::optional<close_reason> close;    ///< set for `closed` only
  std::error_code error;                ///< `rejected`, `closed`, `accept_error`, `listener_stopped`
  endpoint peer;  ///< the client, where known; the bound address for `listener_started`

  /// A listener bound `bound` and is accepting.
  static event listener_started(std::size_t listener, endpoint bound) {
    return {event_type::listener_started, listener, 0, {}, {}, {}, std::move(bound)};
  }
  /// A listener stopped accepting (`errc::shutting_down`).
  static event listener_stopped(std::size_t listener, std::error_code why) {
    return {event_type::listener_stopped, listener, 0, {}, {}, why, {}};
  }
  /// Connection `id` from `peer` was admitted at once.
  static event accepted(std::size_t listener, std::uint64_t id, endpoint peer) {
    return {event_type::accepted, listener, id, {}, {}, {}, std::move(peer)};
  }
  /// A socket from `peer` entered the waiting room.
  static event waiting(std::size_t listener, endpoint peer) {
    return {event_type::waiting, listener, 0, {}, {}, {}, std::move(peer)};
  }
  /// Connection `id` from `peer` got a slot after waiting.
  static event admitted(std::size_t listener, std::uint64_t id, endpoint peer) {
    return {event_type::admitted, listener, id, {}, {}, {}, std::move(peer)};
  }
  /// A socket from `peer` was refused for `why` (`id` 0 before a connection existed).
  static event rejected(std::size_t listener, std::uint64_t id, reject_reason why,
                        std::error_code ec, endpoint peer) {
    return {event_type::rejected, listener, id, why, {}, ec, std::move(peer)};
  }
  /// Connection `id` ended for `why`.
  static event closed(std::size_t listener, std::uint64_t id, close_reason why,
                      std::error_code ec, endpoint peer) {
    return {event_type::closed, listener, id, {}, why, ec, std::move(peer)};
  }
  /// accept(2) failed with `ec`.
  static event accept_error(std::size_t listener, std::error_code ec) {
    return {event_type::accept_error, listener, 0, {}, {}, ec, {}};
  }
};

/// Receives events; called on io threads (several at once) and from `stop()`: must be
/// thread-safe and fast.
using event_sink = std::function<void(const event&)>;

}  // namespace atl
