#pragma once
// One admitted connection: socket, read loop, write queue, read timeout, handler.
//
// Reads: the connection waits for readability (async_wait, no buffer held while idle) and then
// reads with recv(2) into its io thread's receive buffer, handing the handler a span.
// Writes: send() first writes straight to the socket; only what the kernel refuses is queued,
// and the queue is flushed with one gathered sendmsg(2) per writable event.
// Lifetime: the connection owns itself (self_) from on_open until it finishes; pending async
// waits hold a shared_ptr too, so it is destroyed only after they complete. It always
// finishes on its own io thread.
// Entries (issue 9, the keepalive use-after-free): every way into a connection from its
// thread's loop — readiness, the read timeout, timers, posted work, handle calls, a drain —
// holds an `entry` for its whole run. finish() never tears down synchronously: it records the
// reason, and the outermost entry's end (settle) does it. A finish requested outside any entry
// (user code on the io thread holding a connection&) is settled by posted work.

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "asio_types.hpp"
#include "atoll/connection.hpp"
#include "compact_address.hpp"
#include "intrusive_list.hpp"
#include "io_thread.hpp"
#include "read_timeouts.hpp"
#include "supervisor.hpp"
#include "unique_fd.hpp"
#include "write_queue.hpp"

namespace atl::detail {

class listener_state;

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
  connection_impl(io_thread& t, listener_state& l, slot s, stream_socket socket,
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
  bool is_open() const noexcept { return state_ == state::open && !finish_pending_; }
  std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length);
  const tls_info* tls() const noexcept;
  const proxy::header* proxy_header() const noexcept;
  executor_type io_executor() noexcept { return thread_.executor(); }
  connection_handle make_handle() { return connection_handle(weak_from_this(), id_); }
  void upgrade(std::unique_ptr<handler> next, std::span<const std::byte> leftover);

  // Server machinery (io thread).
  void on_read_timeout();
  void begin_shutdown();
  void force_close();
  // Runs user code (a handler callback, work posted through a connection_handle, a timer's
  // callback) inside an entry, with the exception guard of handler callbacks.
  template <class F>
  void run_guarded(const char* what, F&& f) {
    if (state_ == state::finished) return;
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
  enum class state : std::uint8_t { opening, handshaking, open, closing, finished };

  struct upgrade_state {
    std::unique_ptr<handler> next;
    std::vector<std::byte> leftover;
  };

  // A file (or part) queued by send_file, and the bytes sent after it.
  struct file_segment {
    unique_fd fd;
    std::uint64_t offset = 0;
    std::uint64_t remaining = 0;
    std::vector<std::byte> after;
  };

  // What only some connections need (TLS, PROXY header, max age, files), allocated on first
  // use so a plain idle connection does not pay for it.
  struct extras {
    ~extras();
    SSL* ssl = nullptr;
    tls_info tls;
    std::optional<proxy::header> proxy;
    std::vector<std::byte> proxy_bytes;  // header bytes read so far
    bool proxy_done = false;
    bool read_wants_write = false;  // SSL_read asked to wait for writability
    bool write_wants_read = false;  // SSL_write asked to wait for readability
    bool after_wait = false;        // came from the waiting room (for open_handler)
    connection_timer age_timer;
    std::deque<file_segment> files;
    std::size_t after_bytes = 0;  // sum of files[i].after sizes
  };

  template <class F>
  void invoke(const char* what, F&& f) {
    if (!handler_) return;
    run_guarded(what, [&] { f(*handler_); });
  }

  extras& more();
  void open_handler(bool after_wait);
  void handshake_step();
  void on_handshake_io(std::error_code ec);
  int read_proxy_header();
  void reject_unopened(reject_reason why, std::error_code ec);
  void start_age_timer();
  void arm_read();
  void arm_read_wait();
  void on_readable(std::error_code ec);
  void on_readable_tls();
  void read_some(bool speculative);
  void rearm_read();
  void post_read();
  const proxy::header* proxied() const noexcept;
  bool write_or_queue(std::span<const std::byte> data);
  bool tls_write_queued();
  int flush_files();
  void close_after_queue(close_reason why);
  void shut_write_now();
  bool write_pending() const noexcept;
  void arm_write();
  void on_writable_ready(std::error_code ec);
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
  listener_state& listener_;
  listener_counters& counters_;
  slot slot_;
  stream_socket socket_;
  std::unique_ptr<handler> handler_;
  std::unique_ptr<upgrade_state> upgrade_;
  std::shared_ptr<connection_impl> self_;
  std::unique_ptr<extras> extras_;
  write_queue queue_;
  compact_address peer_;
  std::uint64_t id_;
  std::chrono::milliseconds read_timeout_;
  std::uint32_t depth_ = 0;
  state state_ = state::opening;
  close_reason closing_reason_ = close_reason::local_close;
  close_reason pending_reason_ = close_reason::local_close;
  std::error_code pending_ec_;
  bool finish_pending_ = false;
  bool read_armed_ = false;
  bool write_armed_ = false;
  bool paused_ = false;
  bool want_writable_ = false;
  bool shutdown_write_pending_ = false;
  bool write_shut_ = false;
  bool draining_ = false;
  bool in_timeout_ = false;
  bool reset_on_close_ = false;
  bool aged_ = false;  // max_connection_age passed: a close says errc::max_age_reached
  bool tls_ = false;  // extras_->ssl is set: reads and writes go through OpenSSL
  std::uint8_t spec_hits_ = 0;   // speculative-read score, 0..3 (rearm_read)
  std::uint8_t spec_probe_ = 0;  // counts re-arms while the score is 0
};

}  // namespace atl::detail
