#pragma once
// Memory of a server under attack, for the hostile-peer tests: the resident set of a process
// (self or an example server run as a child), and the bytes the heap of this process holds
// live. The second is what an in-process server pins for its peers: unlike RSS it does not
// include memory the allocator keeps after a free, nor (under AddressSanitizer) the quarantine
// of freed blocks, so a delta measures what is still referenced.

#include <malloc.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ATOLL_TEST_SANITIZER_HEAP 1
#endif
#if __has_feature(thread_sanitizer)
#define ATOLL_TEST_THREAD_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ATOLL_TEST_SANITIZER_HEAP 1
#endif
#if defined(__SANITIZE_THREAD__)
#define ATOLL_TEST_THREAD_SANITIZER 1
#endif
#ifdef ATOLL_TEST_SANITIZER_HEAP
#include <sanitizer/allocator_interface.h>
#endif

namespace atl::test {

/// VmRSS of process `pid` (0 = this process) in bytes; 0 if it cannot be read (the process
/// has exited).
inline std::size_t rss_bytes(pid_t pid = 0) {
  std::ifstream status(pid == 0 ? std::string("/proc/self/status")
                                : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // in kB
  }
  return 0;
}

/// Bytes of this process's heap in live allocations (the sanitizer allocator's count under
/// ASan/TSan, glibc's mallinfo2 otherwise).
inline std::size_t heap_in_use() {
#ifdef ATOLL_TEST_SANITIZER_HEAP
  return __sanitizer_get_current_allocated_bytes();
#else
  const struct mallinfo2 m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
#endif
}

/// How much more resident memory the same heap costs in this build: ThreadSanitizer keeps
/// shadow memory of about 4x every byte the program touches (plus its metadata), so a bound
/// on a child server's RSS growth (the examples are built the same way) is multiplied by this.
/// AddressSanitizer's shadow (1/8) and redzones fit in the bounds' headroom.
#ifdef ATOLL_TEST_THREAD_SANITIZER
inline constexpr std::size_t rss_overhead_factor = 6;
#else
inline constexpr std::size_t rss_overhead_factor = 1;
#endif

/// Growth from `before` to `after` (0 when it shrank), divided by `n` (per attacker).
inline std::size_t growth_per(std::size_t before, std::size_t after, std::size_t n) {
  return after > before && n > 0 ? (after - before) / n : 0;
}

}  // namespace atl::test
