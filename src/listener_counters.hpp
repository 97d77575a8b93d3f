#pragma once
// Counters of one listener on one io thread. Each io thread has its own block per listener so
// the data path never shares a cache line with another thread; stats() sums the blocks.

#include <array>
#include <atomic>
#include <cstdint>

#include "atoll/handler.hpp"
#include "atoll/stats.hpp"

namespace atl::detail {

struct alignas(64) listener_counters {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> admitted_after_wait{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::array<std::atomic<std::uint64_t>, reject_reason_count> rejected{};
  std::array<std::atomic<std::uint64_t>, close_reason_count> closed{};
};

inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace atl::detail
