#pragma once
// The limit of one listener: the live-connection count, the waiting room, and slots.
// The rules that decide between admit, wait and reject over it are in admission.hpp.
//
// A slot is the right to be one of the `max_connections` live connections. It is an RAII
// object: acquired by the CAS in try_acquire(), released in exactly one place (its destructor
// or release()), so no code path can leak one — the failure mode of envoy#41867, where a
// counter that was never decremented rejected every connection until a restart.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "asio_types.hpp"
#include "compact_address.hpp"
#include "unique_fd.hpp"

namespace atl::detail {

class supervisor;

class slot {
 public:
  slot() noexcept = default;
  slot(slot&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)) {}
  slot& operator=(slot&& o) noexcept {
    if (this != &o) {
      release();
      owner_ = std::exchange(o.owner_, nullptr);
    }
    return *this;
  }
  slot(const slot&) = delete;
  slot& operator=(const slot&) = delete;
  ~slot() { release(); }

  explicit operator bool() const noexcept { return owner_ != nullptr; }
  void release() noexcept;

 private:
  friend class supervisor;
  explicit slot(supervisor* owner) noexcept : owner_(owner) {}
  supervisor* owner_ = nullptr;
};

// An accepted socket waiting for a slot. Deadlines are now + retry_count x retry_wait, the
// same span for every waiter, so the FIFO is also ordered by deadline: the front expires first.
struct waiter {
  unique_fd fd;
  compact_address peer;
  clock::time_point deadline;
  std::size_t thread = 0;  // the io thread that accepted it, where it will live
};

class supervisor {
 public:
  // `admit` is called (from whatever thread freed or found the slot, never under a lock) with
  // a waiter and the slot it gets; it must hand both to the waiter's io thread.
  supervisor(std::size_t max_connections, std::size_t max_waiting,
             std::function<void(waiter&&, slot&&)> admit);

  // A slot if active < max, exact under concurrency (CAS).
  slot try_acquire() noexcept;
  std::size_t active() const noexcept { return active_.load(std::memory_order_relaxed); }
  std::size_t max_connections() const noexcept { return max_.load(std::memory_order_relaxed); }
  // Raising the limit admits waiters at once; lowering it never touches live connections.
  void set_max_connections(std::size_t n);

  std::size_t waiting() const noexcept { return waiting_.load(std::memory_order_seq_cst); }
  // Queues `w` at the back unless the room is full (then `w` is left untouched and false is
  // returned). Then admits waiters while slots are free.
  bool enqueue(waiter& w);
  // Admits waiters, oldest first, while there are free slots.
  void pump();
  // Removes the waiters whose deadline has passed.
  std::vector<waiter> take_expired(clock::time_point now);
  // Removes every waiter (stop / suspend).
  std::vector<waiter> take_all();
  std::optional<clock::time_point> next_deadline();

  // Blocks until active() == 0 or `deadline`; true if idle.
  bool wait_idle(clock::time_point deadline);

 private:
  friend class slot;
  void release() noexcept;

  std::atomic<std::size_t> active_{0};
  std::atomic<std::size_t> max_;
  std::atomic<std::size_t> waiting_{0};
  const std::size_t max_waiting_;
  std::function<void(waiter&&, slot&&)> admit_;

  std::mutex room_mutex_;
  std::deque<waiter> room_;

  std::mutex idle_mutex_;
  std::condition_variable idle_cv_;
  std::atomic<bool> idle_watch_{false};
};

}  // namespace atl::detail
