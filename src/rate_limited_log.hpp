#pragma once
// Warnings that could fire once per connection (rejections, accept errors, handler
// exceptions) are collapsed into at most one line per interval carrying the count, so an
// overload never turns into a logging storm (DESIGN.md "Observability").

#include <atomic>
#include <chrono>
#include <cstdint>

namespace atl::detail {

class rate_limited_counter {
 public:
  // Counts one occurrence; returns the number to report if a line is due now, else 0.
  std::uint64_t hit(std::chrono::steady_clock::time_point now, std::chrono::nanoseconds interval,
                    std::uint64_t n = 1) noexcept {
    pending_.fetch_add(n, std::memory_order_relaxed);
    return due(now, interval);
  }

  // Returns the pending count if a line is due now (and resets it), else 0. Called by hit() and
  // by the periodic flush so that the last burst is reported too.
  std::uint64_t due(std::chrono::steady_clock::time_point now,
                    std::chrono::nanoseconds interval) noexcept {
    const std::int64_t t = now.time_since_epoch().count();
    std::int64_t next = next_.load(std::memory_order_relaxed);
    if (t < next || pending_.load(std::memory_order_relaxed) == 0) return 0;
    if (!next_.compare_exchange_strong(next, t + interval.count(), std::memory_order_relaxed)) {
      return 0;
    }
    return pending_.exchange(0, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<std::int64_t> next_{0};
};

}  // namespace atl::detail
