#pragma once
// Read timeouts without a timer per connection. Connections with the same timeout duration
// sit in one intrusive FIFO; touching a connection (data arrived) moves it to the back with
// deadline now + duration, so every FIFO stays ordered by deadline and only its front can be
// due. One timer per io thread fires at the earliest front; it is re-armed lazily, never per
// read. Cost per read: one clock read and two list splices.

#include <chrono>
#include <memory>
#include <system_error>
#include <vector>

#include "asio_types.hpp"
#include "intrusive_list.hpp"

namespace atl::detail {

class connection_impl;
struct timeout_tag {};
class read_timeouts;

// The per-connection part (a base of connection_impl).
struct timeout_entry : list_node<timeout_tag> {
  clock::time_point deadline{};
  // The FIFO for this connection's duration; null when it has no timeout.
  struct timeout_queue* queue = nullptr;
};

struct timeout_queue {
  std::chrono::milliseconds duration{0};
  intrusive_list<connection_impl, timeout_tag> list;
};

class read_timeouts {
 public:
  explicit read_timeouts(executor_type ex) : timer_(ex) {}

  // The queue for `d` (created on first use); null for d == 0 (no timeout).
  timeout_queue* queue_for(std::chrono::milliseconds d);
  // (Re)starts `c`'s timeout from `now`.
  void touch(connection_impl& c, clock::time_point now);
  // Stops `c`'s timeout.
  void remove(connection_impl& c) noexcept;
  // Cancels the timer (shutdown).
  void cancel() noexcept;

 private:
  void arm(clock::time_point t);
  void on_timer(std::error_code ec);

  std::vector<std::unique_ptr<timeout_queue>> queues_;
  steady_timer timer_;
  clock::time_point armed_for_ = clock::time_point::max();
};

}  // namespace atl::detail
