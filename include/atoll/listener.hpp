#pragma once
/// @file listener.hpp
/// Configuration of one listening endpoint and its connection limit: `atl::listener_config`.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "atoll/proxy_protocol.hpp"
#include "atoll/tls.hpp"

namespace atl {

/// Options applied to every accepted socket of a listener.
struct socket_options {
  /// TCP_NODELAY (disable Nagle). Default on. Ignored for Unix sockets.
  bool tcp_nodelay = true;
  /// SO_KEEPALIVE. Default off.
  bool keep_alive = false;
  /// SO_LINGER. **Not set by default**, and it should stay so: a lingering close() blocks the
  /// io thread for up to this long when the peer does not read (the Thousand Island 1.3.3
  /// hang). Only `std::chrono::seconds{0}` (close with RST) is accepted by validation.
  std::optional<std::chrono::seconds> linger;
  /// SO_RCVBUF / SO_SNDBUF in bytes; 0 keeps the kernel default.
  int receive_buffer_size = 0;
  int send_buffer_size = 0;
};

/// A connection-count alarm (as Ranch's `alarms`): `callback` runs when an admission brings
/// the listener's active connections to `threshold` or more, at most once per `cooldown`.
/// It runs on the io thread that admitted the connection, so it must be fast and must not
/// block; it may call any thread-safe `server` function.
struct connection_alarm {
  /// Active connections at or above which the alarm fires. Must be > 0.
  std::size_t threshold = 0;
  /// Least time between two calls. Default 5 s (Ranch's default).
  std::chrono::milliseconds cooldown{5000};
  /// Receives the listener's index (`listener_id`) and its active connections then. Required.
  std::function<void(std::size_t listener, std::size_t active)> callback;
};

/// One listening endpoint with its own limit, timeouts and handler.
///
/// The endpoint is chosen in this order: `adopt_fd` if >= 0, else `unix_path` if not empty,
/// else `host` + `port`. Plain aggregate: set the fields you need; `server::start()` validates
/// all of them and throws `std::invalid_argument` naming the first bad field.
struct listener_config {
  /// A label for logs and metrics (`listener="..."`); empty → "listener<index>".
  std::string name;

  /// IP literal to bind ("127.0.0.1", "::1", "0.0.0.0", "::"), or "localhost" (= 127.0.0.1).
  /// No DNS lookups are made.
  std::string host = "127.0.0.1";
  /// TCP port; 0 = any free port (read it back with `server::local_endpoint`).
  std::uint16_t port = 0;
  /// For "::": accept IPv6 only (true) or dual-stack IPv4+IPv6 (false, the default).
  bool v6_only = false;
  /// Unix domain socket path. A stale socket file (nobody accepting) is replaced; the file is
  /// removed when the listener closes.
  std::string unix_path;
  /// An already-open listening socket descriptor (systemd socket activation, inherited fds).
  /// atoll takes ownership and closes it at stop. -1 = none.
  int adopt_fd = -1;

  /// listen(2) backlog. Default 1024.
  int backlog = 1024;
  /// One listen socket per acceptor with SO_REUSEPORT (the kernel spreads connections) instead
  /// of one socket shared by all acceptors. TCP only. Default off.
  bool reuse_port = false;
  /// How many io threads accept on this listener (thread i, i+1, ...); 0 = every io thread.
  /// A connection lives on the thread that accepted it.
  std::size_t num_acceptors = 0;
  /// Options set on each accepted socket.
  socket_options socket;

  /// Most connections open at once on this listener, across all threads. Exact: never
  /// exceeded. Default 16384. Change it at run time with `server::set_max_connections`.
  std::size_t max_connections = 16384;
  /// 0 (default): a connection over the limit is closed at once (after the optional
  /// `reject_response`) and the acceptor keeps accepting. N > 0: it waits in the waiting room
  /// for a free slot for at most `retry_count * retry_wait`, then is closed. The acceptor
  /// never sleeps or blocks in either case.
  std::size_t retry_count = 0;
  /// See `retry_count`. Default 1 s; must be > 0 when retry_count > 0.
  std::chrono::milliseconds retry_wait{1000};
  /// Most sockets in the waiting room; beyond it they are closed at once
  /// (`rejected_total{reason="waiting_room_full"}`). Default 1024; must be > 0 when
  /// retry_count > 0.
  std::size_t max_waiting = 1024;
  /// Connection-count alarms; see `connection_alarm`.
  std::vector<connection_alarm> alarms;
  /// Bytes written with one non-blocking send to a rejected socket before it is closed
  /// (e.g. "HTTP/1.1 503 Service Unavailable\r\n..."); never waited for. Empty = none.
  std::string reject_response;

  /// TLS termination (see tls.hpp); off unless `tls.cert_chain_file` is set.
  tls_config tls;
  /// A PROXY protocol header (HAProxy's, v1 text or v2 binary) is expected first on every
  /// connection, before TLS: `connection::peer()`/`local()` then report the addresses it
  /// carries. A missing or malformed header closes the connection
  /// (`rejected_total{reason="proxy_header_invalid"}`). Only enable it behind a proxy that
  /// always sends one: anyone who can connect directly could claim any address. Default off.
  proxy_protocol_mode proxy_protocol = proxy_protocol_mode::off;
  /// Time from admission until the PROXY header has been read and the TLS handshake has
  /// completed (`on_open` runs after both); past it the connection is closed
  /// (`rejected_total{reason="handshake_timeout"}`). Holds a slot meanwhile. Default 10 s.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// After this long (plus a random 0..`max_connection_age_jitter`, spreading the goodbyes),
  /// an open connection gets `handler::on_shutdown` once, so long-lived connections
  /// rebalance across a cluster; the default `on_shutdown` closes after the queued writes
  /// (`on_close` then gets `close_reason::local_close` with `errc::max_age_reached`).
  /// 0 = no limit (default).
  std::chrono::milliseconds max_connection_age{0};
  /// See `max_connection_age`. Default 0.
  std::chrono::milliseconds max_connection_age_jitter{0};

  /// Time without incoming data before `handler::on_timeout`; 0 = none. Default 60 s.
  std::chrono::milliseconds read_timeout{60'000};
  /// How long `server::stop()` lets this listener's connections drain after `on_shutdown`
  /// before aborting them. Default 15 s; 0 aborts at once.
  std::chrono::milliseconds shutdown_timeout{15'000};

  /// Most bytes a connection may have queued for writing: a `send()` made while more than
  /// this is already queued resets the connection as `close_reason::slow_consumer`
  /// (uWebSockets' rule: one message larger than the limit still goes out whole; what gets a
  /// peer dropped is letting messages pile up). A connection's queue is therefore bounded by
  /// this plus the largest single send. Default 4 MiB.
  std::size_t max_write_buffer = 4 * 1024 * 1024;
  /// `handler::on_writable` fires when the queue falls to this many bytes after a `send()`
  /// returned `send_result::backpressure`. Default 64 KiB; must be < max_write_buffer.
  std::size_t write_low_water = 64 * 1024;
};

}  // namespace atl
