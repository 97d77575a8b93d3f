#include "supervisor.hpp"

namespace atl::detail {

void slot::release() noexcept {
  if (auto* s = std::exchange(owner_, nullptr)) s->release();
}

supervisor::supervisor(std::size_t max_connections, std::size_t max_waiting,
                       std::function<void(waiter&&, slot&&)> admit)
    : max_(max_connections), max_waiting_(max_waiting), admit_(std::move(admit)) {}

slot supervisor::try_acquire() noexcept {
  std::size_t cur = active_.load(std::memory_order_relaxed);
  // seq_cst pairs with release(): a releasing thread that sees waiting_ == 0 is guaranteed
  // that a concurrent enqueuer will see its decrement here (no lost wake-up).
  while (cur < max_.load(std::memory_order_relaxed)) {
    if (active_.compare_exchange_weak(cur, cur + 1, std::memory_order_seq_cst)) {
      return slot(this);
    }
  }
  return slot();
}

void supervisor::release() noexcept {
  const std::size_t before = active_.fetch_sub(1, std::memory_order_seq_cst);
  if (waiting_.load(std::memory_order_seq_cst) > 0) pump();
  if (before == 1 && idle_watch_.load(std::memory_order_seq_cst)) {
    std::lock_guard lock(idle_mutex_);
    idle_cv_.notify_all();
  }
}

void supervisor::set_max_connections(std::size_t n) {
  max_.store(n, std::memory_order_seq_cst);
  pump();
}

bool supervisor::enqueue(waiter& w) {
  {
    std::lock_guard lock(room_mutex_);
    if (room_.size() >= max_waiting_) return false;
    room_.push_back(std::move(w));
    waiting_.store(room_.size(), std::memory_order_seq_cst);
  }
  // A slot may have been freed between the caller's failed try_acquire and the push.
  pump();
  return true;
}

void supervisor::pump() {
  for (;;) {
    waiter w;
    slot s;
    {
      std::lock_guard lock(room_mutex_);
      if (room_.empty()) return;
      s = try_acquire();
      if (!s) return;
      w = std::move(room_.front());
      room_.pop_front();
      waiting_.store(room_.size(), std::memory_order_seq_cst);
    }
    admit_(std::move(w), std::move(s));
  }
}

std::vector<waiter> supervisor::take_expired(clock::time_point now) {
  std::vector<waiter> out;
  std::lock_guard lock(room_mutex_);
  while (!room_.empty() && room_.front().deadline <= now) {
    out.push_back(std::move(room_.front()));
    room_.pop_front();
  }
  waiting_.store(room_.size(), std::memory_order_seq_cst);
  return out;
}

std::vector<waiter> supervisor::take_all() {
  std::vector<waiter> out;
  std::lock_guard lock(room_mutex_);
  for (auto& w : room_) out.push_back(std::move(w));
  room_.clear();
  waiting_.store(0, std::memory_order_seq_cst);
  return out;
}

std::optional<clock::time_point> supervisor::next_deadline() {
  std::lock_guard lock(room_mutex_);
  if (room_.empty()) return std::nullopt;
  return room_.front().deadline;
}

bool supervisor::wait_idle(clock::time_point deadline) {
  idle_watch_.store(true, std::memory_order_seq_cst);
  std::unique_lock lock(idle_mutex_);
  return idle_cv_.wait_until(lock, deadline, [&] { return active() == 0; });
}

}  // namespace atl::detail
