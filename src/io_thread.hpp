#pragma once
// One io thread: its io_context, its readiness set (every connection descriptor of the thread,
// readiness_set.hpp), its receive buffer (shared by all its connections: DESIGN.md
// "Read buffers"), its connection registries (one per listener, for draining), its read
// timeouts, its event-loop lag probe and its reserve descriptor for EMFILE.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "asio_types.hpp"
#include "intrusive_list.hpp"
#include "listener_counters.hpp"
#include "read_timeouts.hpp"
#include "readiness_set.hpp"

namespace atl::detail {

class connection_impl;
struct registry_tag {};

class io_thread {
 public:
  io_thread(std::size_t index, std::size_t receive_buffer_size, std::size_t listener_count);
  ~io_thread();
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;

  std::size_t index() const noexcept { return index_; }
  executor_type executor() noexcept { return ctx_.get_executor(); }
  asio::io_context& context() noexcept { return ctx_; }

  // Starts the thread running the loop; `on_tick` runs on it every lag-probe interval.
  void start(std::chrono::milliseconds lag_interval, std::function<void()> on_tick);
  // Stops the loop and joins (from another thread).
  void stop_and_join();
  // Destroys the thread's own io objects (timers) while the io_context still exists.
  void release_io_objects() noexcept;
  // True when called on this io thread.
  bool on_this_thread() const noexcept { return current() == this; }
  static io_thread* current() noexcept;

  listener_counters& counters(std::size_t listener) noexcept { return *counters_[listener]; }
  std::byte* receive_buffer() noexcept { return receive_buffer_.get(); }
  std::size_t receive_buffer_size() const noexcept { return receive_buffer_size_; }
  read_timeouts& timeouts() noexcept { return *timeouts_; }
  // The thread's connection descriptors (owner thread only).
  readiness_set& readiness() noexcept { return *readiness_; }

  // Registries of live connections on this thread, one per listener, so a listener's drain
  // visits only its own connections (owner thread only). add() files `c` under its
  // listener_index(); remove() is a no-op for a connection that is not filed.
  void add(connection_impl& c) noexcept;
  void remove(connection_impl& c) noexcept;
  // Shared owners of every live connection of `listener` on this thread (callbacks may end
  // connections while the caller iterates).
  std::vector<std::shared_ptr<connection_impl>> connections(std::size_t listener);
  // The same for every listener.
  std::vector<std::shared_ptr<connection_impl>> connections();
  std::size_t connection_count() const noexcept {
    return live_.load(std::memory_order_relaxed);
  }
  std::uint64_t next_connection_id(std::size_t thread_count) noexcept {
    return ++id_counter_ * thread_count + index_;
  }

  // Reserve descriptor for shedding under EMFILE (owner thread only).
  int take_spare_fd() noexcept;
  void restore_spare_fd() noexcept;

  struct lag_snapshot {
    std::chrono::microseconds max{0};
    std::chrono::microseconds p99{0};
  };
  lag_snapshot lag() const;

 private:
  void arm_lag_probe();

  const std::size_t index_;
  std::vector<std::unique_ptr<listener_counters>> counters_;
  const std::size_t receive_buffer_size_;
  std::unique_ptr<std::byte[]> receive_buffer_;
  using registry = intrusive_list<connection_impl, registry_tag>;
  const std::size_t listener_count_;
  std::unique_ptr<registry[]> registries_;  // [listener]; not movable (self-linked heads)
  std::atomic<std::size_t> live_{0};
  std::uint64_t id_counter_ = 0;
  int spare_fd_ = -1;

  std::chrono::milliseconds lag_interval_{100};
  clock::time_point lag_expected_{};
  std::function<void()> on_tick_;
  std::atomic<std::int64_t> lag_max_us_{0};
  std::array<std::atomic<std::int64_t>, 128> lag_samples_us_{};
  std::atomic<std::uint32_t> lag_count_{0};

  // Declared before the io_context: its table outlives the work the context destroys (which
  // may hold connections); its Asio wait is released first (release_io_objects, destructor).
  std::unique_ptr<readiness_set> readiness_;
  // Io objects must be destroyed before their io_context: the context is declared before
  // the members that use it, so it is destroyed after them.
  asio::io_context ctx_;
  std::optional<asio::executor_work_guard<executor_type>> work_;
  std::unique_ptr<read_timeouts> timeouts_;
  std::optional<steady_timer> lag_timer_;
  std::thread thread_;
};

}  // namespace atl::detail
