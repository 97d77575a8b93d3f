#include "read_timeouts.hpp"

#include "connection_impl.hpp"

namespace atl::detail {

timeout_queue* read_timeouts::queue_for(std::chrono::milliseconds d) {
  if (d.count() <= 0) return nullptr;
  for (auto& q : queues_) {
    if (q->duration == d) return q.get();
  }
  // Few distinct durations exist in practice (the listeners' defaults plus what handlers
  // set), so a linear scan beats a map.
  queues_.push_back(std::make_unique<timeout_queue>());
  queues_.back()->duration = d;
  return queues_.back().get();
}

void read_timeouts::touch(connection_impl& c, clock::time_point now) {
  timeout_entry& e = c;
  if (e.queue == nullptr) return;
  e.queue->list.erase(c);
  e.deadline = now + e.queue->duration;
  e.queue->list.push_back(c);
  if (e.deadline < armed_for_) arm(e.deadline);
}

void read_timeouts::remove(connection_impl& c) noexcept {
  timeout_entry& e = c;
  if (e.queue != nullptr) e.queue->list.erase(c);
}

void read_timeouts::cancel() noexcept {
  armed_for_ = clock::time_point::min();  // never re-arm
  timer_.cancel();
}

void read_timeouts::arm(clock::time_point t) {
  armed_for_ = t;
  timer_.expires_at(t);
  timer_.async_wait([this](std::error_code ec) { on_timer(ec); });
}

void read_timeouts::on_timer(std::error_code ec) {
  if (ec) return;  // re-armed earlier, or cancelled
  armed_for_ = clock::time_point::max();
  const auto now = clock::now();
  clock::time_point next = clock::time_point::max();
  // By index: a handler's on_timeout may set a new duration, appending to queues_ (a range-for
  // would then read a reallocated vector). Queues themselves never move (unique_ptr).
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    timeout_queue* q = queues_[i].get();
    // A connection that is kept gets a deadline after `now`, at the back, so this ends.
    while (connection_impl* c = q->list.front()) {
      if (static_cast<timeout_entry&>(*c).deadline > now) break;
      q->list.erase(*c);
      auto keep = c->shared_from_this();
      c->on_read_timeout();
    }
    if (connection_impl* c = q->list.front()) {
      next = std::min(next, static_cast<timeout_entry&>(*c).deadline);
    }
  }
  if (next != clock::time_point::max() && next < armed_for_) arm(next);
}

}  // namespace atl::detail
