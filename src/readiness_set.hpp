#pragma once
// One io thread's readiness loop (issue 10, item 2): an edge-triggered epoll set of its own
// holding every connection descriptor of the thread, registered once at admission with read
// and write interest together and never modified per message. The thread's io_context still
// runs the loop: the set's descriptor is waited on through one Asio stream_descriptor, so
// timers, posted work, signals and a user's own Asio objects share the thread as before. One
// Asio wait per batch of events (Asio 1.22 pays an epoll_ctl for each wait it starts; per batch
// that is amortised, where a wait per connection per message was not). Why this and not
// io_uring: bench/profile.md, "Readiness loop".
//
// Targets are not named by pointer in the kernel: each registration gets a key (slot index
// and generation in a table of this set), and an event whose key's generation no longer
// matches is dropped. So a target that goes away mid-batch (closed by the target dispatched
// before it), or whose descriptor outlives it somewhere else (a fork holding a copy keeps the
// kernel's registration alive after our close), can never be called; removing a target is a
// table operation, no system call: closing the descriptor takes it out of the kernel's set.
//
// Thread rules: owner thread only, but for construction and destruction.

#include <sys/epoll.h>

#include <asio/posix/basic_stream_descriptor.hpp>
#include <cstdint>
#include <optional>
#include <system_error>
#include <vector>

#include "asio_types.hpp"

namespace atl::detail {

class readiness_set {
 public:
  // What the set calls for a target's event: `events` are EPOLLIN, EPOLLOUT, EPOLLRDHUP,
  // EPOLLHUP, EPOLLERR bits. One function serves every target of a set (no per-target vtable).
  using dispatch_fn = void (*)(void* target, std::uint32_t events);

  // A registration: slot index and generation. 0 is never a valid key.
  using key = std::uint64_t;

  // Events taken per epoll_wait before the set yields to the rest of the loop.
  static constexpr int max_batch = 256;

  readiness_set(executor_type ex, dispatch_fn fn);
  ~readiness_set();
  readiness_set(const readiness_set&) = delete;
  readiness_set& operator=(const readiness_set&) = delete;

  // Starts waiting (once; the io thread need not run yet).
  void start();
  // Destroys the Asio wait while the io_context exists; the set accepts no more descriptors.
  // Registered descriptors are left to their owners (they close them).
  void release_io_objects() noexcept;

  // Registers `fd` (a non-blocking socket) for read and write readiness, edge-triggered, on
  // behalf of `target`. The first event reports the state at registration.
  key add(int fd, void* target, std::error_code& ec);
  // Forgets `k`: its pending and future events are dropped. The descriptor must be closed by
  // its owner (or was registered elsewhere) — the kernel's registration goes with the close.
  void remove(key k) noexcept;

  std::size_t size() const noexcept { return live_; }
  // The set's epoll descriptor (tests).
  int native_handle() const noexcept { return epfd_; }
  // Runs one batch now (tests): what the wait's completion does.
  void run_batch();

 private:
  struct slot_entry {
    void* target = nullptr;
    std::uint32_t generation = 1;
    std::uint32_t next_free = 0;  // 1-based index of the next free slot, 0 = none
  };

  void arm();

  int epfd_ = -1;
  dispatch_fn dispatch_;
  std::vector<slot_entry> slots_;
  std::uint32_t free_head_ = 0;  // 1-based
  std::size_t live_ = 0;
  std::vector<epoll_event> events_;
  std::optional<asio::posix::basic_stream_descriptor<executor_type>> wait_;
  bool started_ = false;
};

}  // namespace atl::detail
