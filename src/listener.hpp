#pragma once
// One configured listener: its listen sockets (opened by listen_socket.hpp), acceptors,
// supervisor (limit + waiting room) and the admission policy over it (admission.hpp), which it
// carries out (admits, rejects, expires waiters on a timer); counters' aggregation and
// rate-limited warnings.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <string>
#include <system_error>
#include <vector>

#include "admission.hpp"
#include "asio_types.hpp"
#include "atoll/endpoint.hpp"
#include "atoll/handler.hpp"
#include "atoll/listener.hpp"
#include "atoll/stats.hpp"
#include "compact_address.hpp"
#include "connection_context.hpp"
#include "listener_counters.hpp"
#include "rate_limited_log.hpp"
#include "supervisor.hpp"
#include "unique_fd.hpp"

namespace atl::detail {

class server_impl;
class io_thread;
class acceptor;
class tls_context;

class listener_state final : public connection_context {
 public:
  listener_state(server_impl& server, std::size_t index, listener_config config,
                 handler_factory factory);
  ~listener_state();

  std::size_t index() const noexcept override { return index_; }
  const std::string& name() const noexcept { return name_; }
  const listener_config& config() const noexcept override { return config_; }
  const handler_factory& factory() const noexcept override { return factory_; }
  supervisor& sup() noexcept { return sup_; }
  const supervisor& sup() const noexcept { return sup_; }
  server_impl& server() noexcept { return server_; }

  // Builds what start() needs besides sockets (the TLS context: reads the certificate
  // files). Throws std::invalid_argument naming the field. Caller's thread, before bind().
  void prepare();
  // The TLS context, or nullptr for a plain listener (fixed after prepare()).
  const tls_context* tls() const noexcept override { return tls_.get(); }

  // Binds the listen sockets (caller's thread). On failure nothing stays bound and `what`
  // names the address and the operation.
  void bind(std::error_code& ec, std::string& what);
  // Undoes bind() after a failed start (keeps an adopted descriptor open: the caller still
  // owns it when start() fails).
  void unbind() noexcept;
  // Starts an acceptor on each of its io threads (caller's thread; waits until they run).
  void start_accepting();
  // Stops accepting and closes the listen sockets (keeps an adopted one unless `final`).
  // Rejects waiting sockets. Caller's thread (not an io thread of this server).
  void stop_accepting(bool final);
  // Marks the listener as stopping: sockets that arrive at an io thread are rejected.
  void set_stopping() noexcept { stopping_.store(true, std::memory_order_seq_cst); }
  bool stopping() const noexcept { return stopping_.load(std::memory_order_relaxed); }
  bool suspended() const noexcept { return suspended_.load(std::memory_order_relaxed); }
  void set_suspended(bool s) noexcept { suspended_.store(s, std::memory_order_relaxed); }

  // Data path (io threads).
  void on_accepted(io_thread& t, unique_fd fd, const sockaddr* addr, socklen_t len);
  void reject(listener_counters& counters, unique_fd fd, reject_reason why,
              const compact_address& peer);
  void count_accept_error(int err);
  void warn_handler_exception(std::uint64_t connection_id, const char* what,
                              const char* message) override;
  // A failed PROXY / TLS handshake, logged at debug level (they are counted anyway; a
  // scanner must not be able to flood the log).
  void debug_handshake_failure(std::uint64_t connection_id, const std::string& why) override;
  // Address of the listen socket (for Unix listeners, connection::local()).
  endpoint first_endpoint() const override;
  bool has_event_sink() const noexcept override;
  void emit(const event& e) const noexcept override;

  // Stats and warnings (any thread).
  void fill_stats(listener_stats& out) const;
  std::vector<endpoint> endpoints() const;
  void flush_warnings(clock::time_point now);
  // Destroys io objects owned here while the io_contexts still exist (teardown).
  void release_io_objects() noexcept;

 private:
  void admit(io_thread& t, unique_fd fd, slot s, const compact_address& peer, bool after_wait);
  void check_alarms();
  void apply_socket_options(int fd) const noexcept;
  void schedule_expiry();
  void arm_expiry();
  void expire_waiters();
  void reject_all_waiters();
  void log_rejections(std::uint64_t count);
  void log_accept_errors(std::uint64_t count);
  std::vector<std::size_t> acceptor_threads() const;

  server_impl& server_;
  const std::size_t index_;
  const listener_config config_;
  const handler_factory factory_;
  const std::string name_;
  supervisor sup_;
  admission admission_;  // the rules over sup_ (declared after it)
  std::unique_ptr<tls_context> tls_;
  // Per alarm: when it last fired (steady clock, ns since epoch; min = never).
  std::unique_ptr<std::atomic<std::int64_t>[]> alarm_fired_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> suspended_{false};

  // Listen sockets as bound (owned here; acceptors get duplicates), guarded by mutex_.
  mutable std::mutex mutex_;
  std::vector<unique_fd> listen_fds_;
  std::vector<endpoint> bound_;
  std::uint16_t resolved_port_ = 0;
  bool adopted_ = false;
  std::vector<std::pair<std::size_t, std::shared_ptr<acceptor>>> acceptors_;  // (thread, acceptor)
  std::map<int, std::uint64_t> accept_errors_;
  int last_accept_error_ = 0;

  // Waiting-room expiry timer, on the home io thread (the first acceptor's).
  std::size_t home_thread_ = 0;
  std::optional<steady_timer> expiry_timer_;
  bool expiry_armed_ = false;
  clock::time_point expiry_at_{};

  rate_limited_counter reject_warn_;
  rate_limited_counter accept_error_warn_;
  rate_limited_counter handler_error_warn_;
};

}  // namespace atl::detail
