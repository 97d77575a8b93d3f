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

#include <chrono>
#include <cstdint>
#include <memory>
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
#include "write_queue.hpp"

namespace atl::detail {

class listener_state;

class connection_impl final : public connection,
                              public list_node<registry_tag>,
                              public timeout_entry,
                              public std::enable_shared_from_this<connection_impl> {
 public:
  connection_impl(io_thread& t, listener_state& l, slot s, stream_socket socket,
                  const compact_address& peer, const compact_address& local, std::uint64_t id);
  ~connection_impl();

  // Makes the handler, calls on_open and starts reading. `after_wait`: came from the waiting
  // room (counted as such).
  void open(bool after_wait);

  // connection API (io thread).
  send_result send(std::span<const std::byte> data);
  void close();
  void abort();
  void shutdown_write();
  void pause_reading();
  void resume_reading();
  bool reading_paused() const noexcept { return paused_; }
  void set_read_timeout(std::chrono::milliseconds d);
  std::chrono::milliseconds read_timeout() const noexcept { return read_timeout_; }
  endpoint peer() const noexcept { return peer_.to_endpoint(); }
  endpoint local() const noexcept;
  std::uint64_t id() const noexcept { return id_; }
  std::size_t listener_index() const noexcept;
  std::size_t thread_index() const noexcept { return thread_.index(); }
  std::size_t buffered_amount() const noexcept { return queue_.size(); }
  bool is_open() const noexcept { return state_ == state::open && !finish_pending_; }
  executor_type io_executor() noexcept { return thread_.executor(); }
  connection_handle make_handle() { return connection_handle(weak_from_this(), id_); }
  void upgrade(std::unique_ptr<handler> next, std::span<const std::byte> leftover);

  // Server machinery (io thread).
  void on_read_timeout();
  void begin_shutdown();
  void force_close();
  // Runs user work posted through a connection_handle, with the same exception guard as
  // handler callbacks.
  template <class F>
  void run_guarded(const char* what, F&& f) {
    if (state_ == state::finished) return;
    ++depth_;
    try {
      f();
    } catch (const std::exception& e) {
      on_handler_exception(what, e.what());
    } catch (...) {
      on_handler_exception(what, "unknown exception");
    }
    if (--depth_ == 0) settle();
  }

 private:
  enum class state : std::uint8_t { opening, open, closing, finished };

  struct upgrade_state {
    std::unique_ptr<handler> next;
    std::vector<std::byte> leftover;
  };

  template <class F>
  void invoke(const char* what, F&& f) {
    if (!handler_) return;
    run_guarded(what, [&] { f(*handler_); });
  }

  void arm_read();
  void on_readable(std::error_code ec);
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
  write_queue queue_;
  compact_address peer_;
  compact_address local_;
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
};

}  // namespace atl::detail
