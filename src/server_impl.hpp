#pragma once
// The server: io threads, listeners, lifecycle (start / run / stop) and event emission.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <asio/signal_set.hpp>

#include "asio_types.hpp"
#include "atoll/server.hpp"
#include "io_thread.hpp"
#include "listener.hpp"

namespace atl::detail {

class server_impl {
 public:
  explicit server_impl(server_config config);
  ~server_impl();

  listener_id add_listener(listener_config config, handler_factory factory);
  void start();
  void start(std::error_code& ec) noexcept;
  std::string last_error() const;
  void run();
  void request_stop() noexcept;
  void stop(std::optional<std::chrono::milliseconds> timeout);
  bool running() const noexcept;

  server_stats stats() const;
  listener_state& listener(listener_id id);
  const listener_state& listener(listener_id id) const;
  void suspend(listener_id id);
  void resume(listener_id id, std::error_code& ec);

  const server_config& config() const noexcept { return config_; }
  std::size_t thread_count() const noexcept { return threads_.size(); }
  io_thread& thread(std::size_t i) noexcept { return *threads_[i]; }

  // Runs `fn` on io thread `i`: inline when already there; posted without waiting when
  // called from another io thread (two loops must never wait for each other); otherwise
  // posted and waited for, at most `limit` (a wedged loop must not hang stop()).
  void execute(std::size_t i, std::function<void()> fn,
               std::chrono::milliseconds limit = std::chrono::seconds(10));
  void emit(const event& e) const noexcept;
  bool has_event_sink() const noexcept { return static_cast<bool>(config_.events); }

 private:
  enum class phase { idle, running, stopping, stopped };

  void start_locked();
  void drain(std::optional<std::chrono::milliseconds> timeout);
  void on_tick();
  void flush_all_warnings();
  void teardown() noexcept;

  server_config config_;
  std::vector<std::unique_ptr<io_thread>> threads_;
  std::vector<std::unique_ptr<listener_state>> listeners_;

  mutable std::mutex mutex_;  // guards phase_, stop_requested_, last_error_
  std::condition_variable cv_;
  phase phase_ = phase::idle;
  bool stop_requested_ = false;
  std::string last_error_;
  std::mutex stop_mutex_;  // serialises stop()
  // server_config::stop_signals, handled from start() on, on io thread 0.
  std::optional<asio::signal_set> signals_;
};

}  // namespace atl::detail
