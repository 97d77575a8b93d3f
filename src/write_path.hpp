#pragma once
// A connection's outgoing side: the bytes and files the kernel has not taken yet, and how they
// go out through the connection's transport. send() writes straight through while nothing is
// queued; what the kernel refuses is queued (write_queue) and flushed with one gathered write
// per writable event. Files go with sendfile(2) where the transport allows it (plain), else
// they are read into the queue in 64 KiB steps (TLS); bytes sent after a file wait behind it.
//
// The write path moves bytes and says what it needs next (io_result: done, want_write,
// want_read, failed); the connection owns the waits, the counters and what a drained queue
// means (a close, a shutdown, on_writable). Io thread only.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "transport.hpp"
#include "unique_fd.hpp"
#include "write_queue.hpp"

namespace atl::detail {

class write_path {
 public:
  // Bytes accepted and not yet taken by the kernel (files not counted: only what was sent
  // after them, as the limit applies to memory).
  std::size_t buffered() const noexcept { return queue_.size() + (files_ ? files_->after_bytes : 0); }
  // Anything left to send, files included.
  bool pending() const noexcept { return !queue_.empty() || (files_ && !files_->list.empty()); }

  // Sends `data`, or queues it in order. `may_write`: no wait is armed that these bytes must
  // queue behind. Returns how many bytes went to the transport (n) and what is needed next:
  // done (nothing: all sent, or queued behind bytes whose wait is armed), want_write (arm a
  // writable wait), want_read (TLS: wait for the peer's bytes first), failed.
  io_result write(transport& tx, int fd, std::span<const std::byte> data, bool may_write);

  // Queues `length` bytes of `fd` (owned from here) from `offset`.
  void add_file(unique_fd fd, std::uint64_t offset, std::uint64_t length);

  // Sends what is queued, files included, until all is sent (done), the socket is full
  // (want_write), the transport needs the peer's bytes (want_read) or it failed. n: bytes sent.
  io_result flush(transport& tx, int fd);

  // Drops everything (an abort, a reset, the end).
  void clear() noexcept;

 private:
  // A file (or part) queued by send_file, and the bytes sent after it.
  struct file_segment {
    unique_fd fd;
    std::uint64_t offset = 0;
    std::uint64_t remaining = 0;
    std::vector<std::byte> after;
  };
  // Allocated by the first send_file: a connection that never sends a file does not pay for
  // a deque (libstdc++ allocates ~600 bytes for an empty one).
  struct file_list {
    std::deque<file_segment> list;
    std::size_t after_bytes = 0;  // sum of list[i].after sizes
  };

  // Sends from the queue until it is empty or the transport stops.
  io_result flush_queue(transport& tx, int fd, std::size_t& sent);
  // One step on the front file: done (progress: a chunk queued, sent, or the file finished),
  // want_write or failed.
  io_result flush_file(transport& tx, int fd, std::size_t& sent);

  write_queue queue_;
  std::unique_ptr<file_list> files_;
};

}  // namespace atl::detail
