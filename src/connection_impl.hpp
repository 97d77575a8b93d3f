#pragma once
// One admitted connection: socket, read loop, write path, read timeout, handler.
//
// Pieces: the handshake stage (handshake.hpp: PROXY header, then TLS) runs first when the
// listener asks for it and hands over {PROXY header, transport}; the transport (transport.hpp:
// plain or TLS) moves the bytes; the write path (write_path.hpp) holds what the kernel has not
// taken. This class owns the readiness waits, the timeout, the handler and the life cycle.
// Readiness (issue 10, item 2): the descriptor is in its io thread's edge-triggered readiness
// set from admission to close, read and write interest together, never modified per message;
// no Asio socket object, no pending operation. An edge sets `ready_` bits; a transport that
// reports "would block" clears the matching bit (and so does a plain short read, which drained
// the socket). A wait whose bit is set is served by posted work (the edge has passed); one
// whose bit is clear waits for the next edge.
// Reads: when readable, the connection reads through its transport into its io thread's
// receive buffer (no buffer held while idle), handing the handler a span.
// Writes: send() first writes straight through; only what the kernel refuses is queued, and
// the queue is flushed with one gathered write per writable event.
// State: `phase` is the life cycle (opening → [handshaking →] open → [closing →] finishing →
// finished; finishing: a finish was requested and the outermost entry's end will carry it
// out); `read_wait` says what brings the read loop back (a readiness wait, posted work, or
// nothing); `write_end` whether the write side is open, shutting after the queue, or shut.
// Lifetime: the connection owns itself (self_) from on_open (or the handshake) until it
// finishes; posted work holds a shared_ptr too. The readiness set names it by a key, not a
// pointer, and forgets it when it finishes, so an event cannot reach it after that. It always
// finishes on its own io thread.
// Entries (issue 9, the keepalive use-after-free): every way into a connection from its
// thread's loop — readiness, the read timeout, timers, posted work, handle calls, a drain —
// holds an `entry` for its whole run. finish() never tears down synchronously: it records the
// reason, and the outermost entry's end (settle) does it. A finish requested outside any entry
// (user code on the io thread holding a connection&) is settled by posted work.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "asio_types.hpp"
#include "atoll/connection.hpp"
#include "compact_address.hpp"
#include "connection_context.hpp"
#include "intrusive_list.hpp"
#include "io_thread.hpp"
#include "read_timeouts.hpp"
#include "supervisor.hpp"
#include "readiness_set.hpp"
#include "transport.hpp"
#include "unique_fd.hpp"
#include "write_path.hpp"

namespace atl::detail {

class handshake_stage;

// What connection::after() allocates: the timer and the callback, owned by the returned
// connection_timer; the wait's completion holds only weak references.
struct connection_timer_state {
  explicit connection_timer_state(executor_type ex) : timer(ex) {}
  steady_timer timer;
  std::function<void(connection&)> fn;  // empty once started or cancelled
};

class connection_impl final : public connection,
                              public list_node<registry_tag>,
                              public timeout_entry,
                              public std::enable_shared_from_this<connection_impl> {
 public:
  connection_impl(io_thread& t, connection_context& l, slot s, unique_fd fd,
                  const compact_address& peer, std::uint64_t id);
  ~connection_impl();

  // Starts the connection: the PROXY header and TLS handshake first when the listener has
  // them, then makes the handler, calls on_open and starts reading. `after_wait`: came from
  // the waiting room (counted as such).
  void open(bool after_wait);

  // One entry into the connection (see the file comment); nests.
  class entry {
   public:
    explicit entry(connection_impl& c) noexcept : c_(c) { ++c_.depth_; }
    ~entry() {
      if (--c_.depth_ == 0) c_.settle();
    }
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;

   private:
    connection_impl& c_;
  };

  // connection API (io thread).
  send_result send(std::span<const std::byte> data);
  void close();
  void close_with(std::span<const std::byte> last, close_reason why);
  connection_timer after(std::chrono::milliseconds delay, std::function<void(connection&)> fn);
  std::size_t max_write_buffer() const noexcept;
  void abort();
  void shutdown_write();
  void pause_reading();
  void resume_reading();
  bool reading_paused() const noexcept { return paused_; }
  void set_read_timeout(std::chrono::milliseconds d);
  std::chrono::milliseconds read_timeout() const noexcept { return read_timeout_; }
  endpoint peer() const noexcept;
  endpoint local() const noexcept;
  std::uint64_t id() const noexcept { return id_; }
  std::size_t listener_index() const noexcept;
  std::size_t thread_index() const noexcept { return thread_.index(); }
  std::size_t buffered_amount() const noexcept;
  bool is_open() const noexcept { return phase_ == phase::open; }
  std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length);
  const tls_info* tls() const noexcept;
  const proxy::header* proxy_header() const noexcept;
  executor_type io_executor() noexcept { return thread_.executor(); }
  connection_handle make_handle() { return connection_handle(weak_from_this(), id_); }
  void upgrade(std::unique_ptr<handler> next, std::span<const std::byte> leftover);

  // Server machinery (io thread).
  // The readiness set's dispatch function: `target` is a connection_impl.
  static void on_ready(void* target, std::uint32_t events);
  void on_read_timeout();
  void begin_shutdown();
  void force_close();
  // Runs user code (a handler callback, work posted through a connection_handle, a timer's
  // callback) inside an entry, with the exception guard of handler callbacks.
  template <class F>
  void run_guarded(const char* what, F&& f) {
    if (phase_ == phase::finished) return;
    entry in(*this);
    try {
      f();
    } catch (const std::exception& e) {
      on_handler_exception(what, e.what());
    } catch (...) {
      on_handler_exception(what, "unknown exception");
    }
  }

 private:
  // Ordered: every phase from `finishing` on means "no more I/O, no more callbacks but on_close".
  enum class phase : std::uint8_t { opening, handshaking, open, closing, finishing, finished };
  // What brings the read loop back.
  enum class read_wait : std::uint8_t { none, readiness, posted };
  enum class write_end : std::uint8_t { open, shut_pending, shut };

  struct upgrade_state {
    std::unique_ptr<handler> next;
    std::vector<std::byte> leftover;
  };

  // What only some connections need (handshake, TLS, PROXY header, max age), allocated on
  // first use so a plain idle connection does not pay for it.
  struct extras {
    extras();
    ~extras();
    std::unique_ptr<handshake_stage> stage;  // while handshaking
    std::unique_ptr<tls_transport> tls;      // after a TLS handshake: the transport
    std::optional<proxy::header> proxy;
    bool read_wants_write = false;  // a TLS read asked to wait for writability
    bool write_wants_read = false;  // a TLS write asked to wait for readability
    bool after_wait = false;        // came from the waiting room (for open_handler)
    connection_timer age_timer;
  };

  template <class F>
  void invoke(const char* what, F&& f) {
    if (!handler_) return;
    run_guarded(what, [&] { f(*handler_); });
  }

  extras& more();
  void open_handler(bool after_wait);
  bool attach();
  void handshake_step();
  void reject_unopened(reject_reason why, std::error_code ec);
  void start_age_timer();
  void arm_read();
  void arm_read_wait();
  void ready(std::uint32_t events);
  void on_readable();
  void read_some();
  void post_read();
  void close_descriptor() noexcept;
  const proxy::header* proxied() const noexcept;
  bool write_or_queue(std::span<const std::byte> data);
  bool await_write(const io_result& r);
  void close_after_queue(close_reason why);
  void shut_write_now();
  bool write_pending() const noexcept { return out_.pending(); }
  bool write_waits_for_read() const noexcept { return extras_ && extras_->write_wants_read; }
  void arm_write();
  void on_writable_ready();
  void flush();
  void after_drain();
  void on_peer_eof();
  void fail(int err);
  void touch_timeout();
  close_reason reason_for_close() const noexcept;
  std::error_code code_for(close_reason r) const noexcept;
  void finish(close_reason r, std::error_code ec);
  void do_finish(close_reason r, std::error_code ec);
  void settle();
  void on_handler_exception(const char* what, const char* message);

  io_thread& thread_;
  connection_context& context_;  // the admitting listener, through its narrow interface
  listener_counters& counters_;
  slot slot_;
  transport* transport_ = &plain_transport::instance();  // or extras_->tls
  std::unique_ptr<handler> handler_;
  std::unique_ptr<upgrade_state> upgrade_;
  std::shared_ptr<connection_impl> self_;
  std::unique_ptr<extras> extras_;
  write_path out_;
  compact_address peer_;
  std::uint64_t id_;
  readiness_set::key key_ = 0;  // in the thread's readiness set while non-zero
  std::chrono::milliseconds read_timeout_;
  std::uint32_t depth_ = 0;
  unique_fd fd_;
  phase phase_ = phase::opening;
  read_wait read_wait_ = read_wait::none;
  write_end write_end_ = write_end::open;
  close_reason closing_reason_ = close_reason::local_close;
  close_reason pending_reason_ = close_reason::local_close;  // of a finish in `finishing`
  std::error_code pending_ec_;
  bool write_armed_ = false;  // a writable wait is pending
  bool paused_ = false;       // by pause_reading()
  bool want_writable_ = false;  // on_writable is owed once the queue drains to low water
  bool draining_ = false;
  bool in_timeout_ = false;
  bool reset_on_close_ = false;
  bool aged_ = false;  // max_connection_age passed: a close says errc::max_age_reached
  // Edges seen and not yet consumed by a "would block": readable / writable.
  static constexpr std::uint8_t ready_read = 1, ready_write = 2;
  std::uint8_t ready_ = 0;
};

}  // namespace atl::detail
