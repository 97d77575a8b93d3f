#pragma once
/// @file connection.hpp
/// One admitted connection (`atl::connection`) and a thread-safe reference to it
/// (`atl::connection_handle`).

#include <asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "atoll/endpoint.hpp"
#include "atoll/handler.hpp"
#include "atoll/proxy_protocol.hpp"
#include "atoll/tls.hpp"

namespace atl {

namespace detail {
class connection_impl;
struct connection_timer_state;
}  // namespace detail

class connection_handle;
class connection_timer;

/// What `connection::send` did with the bytes.
enum class send_result {
  ok,            ///< written to the kernel or queued; the queue is at or below the low mark.
  backpressure,  ///< queued, and the queue is above `write_low_water`: slow down until
                 ///< `handler::on_writable`.
  dropped,       ///< not queued: the connection is closing or closed, or more than
                 ///< `max_write_buffer` bytes were already queued before this send (the
                 ///< connection is then reset as `close_reason::slow_consumer`).
};

/// An admitted connection, owned by atoll. A handler receives it by reference in every
/// callback; the reference stays valid until `on_close` returns.
///
/// Thread rules: every member function must be called on the connection's io thread, i.e.
/// from its handler's callbacks or from work run on `executor()`. From other threads use
/// `handle()`.
///
/// Writes: `send()` first tries a non-blocking write straight to the socket; what the kernel
/// does not take is copied to the connection's write queue and written, gathered, when the
/// socket is writable. Nothing sent before `close()` is lost: `close()` waits for the queue.
/// No call blocks the io thread (atoll never sets SO_LINGER unless configured).
///
/// Entering and finishing (the one rule that keeps handlers safe): everything that runs code
/// of a connection — its readiness events, its read timeout, its timers (`after()`), work
/// posted through a `connection_handle`, a drain — enters through one guard. Whatever ends the
/// connection inside such an entry (`close()` with nothing queued, `abort()`, a failed or
/// over-limit `send()`, an exception) only marks it finished: `on_close` runs, and the
/// handler is destroyed and the slot released, when the outermost entry returns. So code
/// that called `send()` may go on touching its own members afterwards, whatever `send()`
/// did. Modules (e.g. `ws::session`) therefore never own raw Asio timers on a connection;
/// they use `after()`.
class connection {
 public:
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Queues `bytes` for writing (copied unless written at once). See `send_result`. An empty
  /// span queues nothing and reports the queue's state (`ok` or `backpressure`, the latter
  /// promising an `on_writable`); like any send, it drops a connection that already has more
  /// than `max_write_buffer` queued.
  send_result send(std::span<const std::byte> bytes);
  /// Queues the characters of `text`.
  send_result send(std::string_view text);

  /// Stops reading and closes once the write queue is empty (`close_reason::local_close`).
  /// If the queue cannot drain, the connection is aborted after its read timeout.
  void close();
  /// Closes now with a TCP reset (SO_LINGER {on, 0}, which never blocks); queued bytes are
  /// dropped. `on_close` gets `close_reason::local_close` and `errc::aborted`.
  void abort();
  /// Sends FIN after the queued bytes (shutdown(SHUT_WR)); reading goes on.
  void shutdown_write();
  /// A protocol's goodbye to a peer that is being dropped: queues `last` behind what is
  /// queued (whatever the queue holds: it is not checked against `max_write_buffer`), then
  /// closes as `close()` does, bounded by the read timeout (after which it is reset). `on_close`
  /// and `closed_total` get `why` (`close_reason::slow_consumer` gives `errc::slow_consumer`).
  /// E.g. a WebSocket close frame 1008 to a client that does not read.
  void close_with(std::span<const std::byte> last, close_reason why = close_reason::local_close);

  /// Stops reading from the socket (the kernel buffers, then TCP flow control pushes back).
  /// The read timeout does not run while reading is paused and nothing is queued for
  /// writing. With bytes queued (the usual backpressure case: the peer is not reading what
  /// we send) it keeps running, so a peer that neither reads nor writes cannot hold a
  /// connection forever.
  void pause_reading();
  /// Undoes `pause_reading()`; the read timeout starts again from now.
  void resume_reading();
  /// True between `pause_reading()` and `resume_reading()`.
  bool reading_paused() const noexcept;

  /// Sets this connection's read timeout (time without incoming data before
  /// `handler::on_timeout`); 0 disables it. Starts counting from now.
  void set_read_timeout(std::chrono::milliseconds timeout);
  /// The current read timeout (0 = none); initially `listener_config::read_timeout`.
  std::chrono::milliseconds read_timeout() const noexcept;

  /// The peer's address (for Unix sockets an unnamed `AF_UNIX` endpoint). Behind the PROXY
  /// protocol: the original client's address from the header (the proxy's own address for
  /// a LOCAL header, e.g. a health check). Returned by value:
  /// connections store addresses compactly (memory per idle connection matters).
  endpoint peer() const noexcept;
  /// The local address the connection was accepted on (for Unix sockets the listener's path;
  /// behind the PROXY protocol the header's destination). Looked up when asked (one
  /// getsockname(2)); empty once the socket has closed, i.e. in `on_close`.
  endpoint local() const noexcept;
  /// A server-wide unique id (never reused while the server lives).
  std::uint64_t id() const noexcept;
  /// The index of the listener that accepted it (as returned by `server::add_listener`).
  std::size_t listener() const noexcept;
  /// The io thread index (0-based) this connection lives on.
  std::size_t thread_index() const noexcept;

  /// Bytes queued in user space and not yet handed to the kernel.
  std::size_t buffered_amount() const noexcept;
  /// The listener's `max_write_buffer`: a `send()` made while more than this is queued drops
  /// the connection as a slow consumer.
  std::size_t max_write_buffer() const noexcept;
  /// False once the connection is closing (after `close()`, `abort()`, an error, EOF).
  bool is_open() const noexcept;

  /// The executor of the connection's io thread (to run timers or work on that thread).
  asio::any_io_executor executor() const;
  /// A thread-safe handle for sending to / closing this connection from other threads.
  connection_handle handle();

  /// Runs `fn(*this)` once, `delay` from now, on the connection's io thread, entered through
  /// the same guard as the handler's callbacks (an exception closes the connection as
  /// `handler_error`; nothing it does can destroy the connection under it). It never runs
  /// once the connection has ended, nor after the returned timer was cancelled or destroyed.
  /// Keep the timer (e.g. as a handler member); discarding it cancels at once. Costs one
  /// small allocation per call; no thread is involved.
  [[nodiscard]] connection_timer after(std::chrono::milliseconds delay,
                                       std::function<void(connection&)> fn);

  /// Queues `length` bytes of the open file `fd` from `offset` (0 = to the end of the file as
  /// it is now), in order with `send()`s before and after it. The descriptor is duplicated
  /// (the caller may close theirs at once). Plain TCP uses sendfile(2): no copy to user space;
  /// under TLS it is read in 16 KiB chunks as the socket drains. Memory stays bounded either
  /// way, and the file's bytes do not count against `max_write_buffer`. Returns an error
  /// (and queues nothing) if `fd` is not a readable regular file, `offset` is past its end,
  /// or the connection is closing (`errc::shutting_down`).
  std::error_code send_file(int fd, std::uint64_t offset = 0, std::uint64_t length = 0);
  /// As above, opening `path` (read-only) first.
  std::error_code send_file(const std::string& path, std::uint64_t offset = 0,
                            std::uint64_t length = 0);

  /// What TLS negotiated, or nullptr on a plain connection.
  const tls_info* tls() const noexcept;
  /// The PROXY protocol header the connection began with, or nullptr when the listener does
  /// not use the PROXY protocol. `peer()` and `local()` already report its addresses (for a
  /// PROXY command with an address family); the header also carries its TLVs.
  const proxy::header* proxy_header() const noexcept;

  /// Replaces the handler (e.g. HTTP → WebSocket) once the current callback returns: the old
  /// handler is destroyed without `on_close`, the new one gets `on_open` and then, if
  /// `leftover` is not empty, `on_data(leftover)` (copied now: bytes the old handler had read
  /// past its protocol's end). Queued writes, the slot, and the timeout are kept.
  void upgrade(std::unique_ptr<handler> next, std::span<const std::byte> leftover = {});

 protected:
  connection() = default;
  ~connection() = default;

 private:
  detail::connection_impl& impl() noexcept;
  const detail::connection_impl& impl() const noexcept;
};

/// A pending `connection::after()` call. Move-only; cancelling or destroying it before the
/// callback has started guarantees it will not run. Thread rules: use and destroy it on the
/// connection's io thread (it may outlive the connection: then it does nothing).
class connection_timer {
 public:
  /// An empty timer (nothing pending).
  connection_timer() noexcept = default;
  connection_timer(connection_timer&&) noexcept = default;
  connection_timer& operator=(connection_timer&& other) noexcept;
  connection_timer(const connection_timer&) = delete;
  connection_timer& operator=(const connection_timer&) = delete;
  /// Cancels (see `cancel()`).
  ~connection_timer();

  /// Cancels the callback if it has not started yet; does nothing otherwise.
  void cancel() noexcept;
  /// True from `after()` until the callback starts or the timer is cancelled.
  bool pending() const noexcept;

 private:
  friend class detail::connection_impl;
  explicit connection_timer(std::shared_ptr<detail::connection_timer_state> s) noexcept
      : state_(std::move(s)) {}
  std::shared_ptr<detail::connection_timer_state> state_;
};

/// A copyable, thread-safe reference to a connection. It never keeps a connection open: when
/// the connection has ended, every call does nothing and returns false. A `true` result means
/// the work was posted to the connection's io thread; the connection may still end before it
/// runs, in which case the work is dropped.
class connection_handle {
 public:
  /// An empty handle; every call returns false.
  connection_handle() = default;

  /// Posts a copy of `bytes` to be sent.
  bool send(std::span<const std::byte> bytes) const;
  /// Posts a copy of `text` to be sent.
  bool send(std::string_view text) const;
  /// Posts `connection::close()`.
  bool close() const;
  /// Posts `connection::abort()`.
  bool abort() const;
  /// Posts `fn(connection&)` to run on the connection's io thread, if it is still open then.
  bool dispatch(std::function<void(connection&)> fn) const;

  /// True when the connection has certainly ended (or the handle is empty).
  bool expired() const noexcept;
  /// The connection's id (0 for an empty handle).
  std::uint64_t id() const noexcept { return id_; }

 private:
  friend class detail::connection_impl;
  connection_handle(std::weak_ptr<detail::connection_impl> impl, std::uint64_t id)
      : impl_(std::move(impl)), id_(id) {}

  std::weak_ptr<detail::connection_impl> impl_;
  std::uint64_t id_ = 0;
};

}  // namespace atl
