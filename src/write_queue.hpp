#pragma once
// The bytes of a connection that the kernel has not taken yet. Small sends are appended into
// the tail chunk (one allocation serves many), and the queue hands out up to `max_iov`
// buffers for one gathered sendmsg. Empty costs no allocation (an idle connection's queue is
// empty).

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace atl::detail {

class write_queue {
 public:
  static constexpr std::size_t min_chunk = 4096;

  bool empty() const noexcept { return bytes_ == 0; }
  std::size_t size() const noexcept { return bytes_; }

  void append(std::span<const std::byte> data) {
    if (data.empty()) return;
    if (!chunks_.empty()) {
      chunk& tail = chunks_.back();
      const std::size_t room = tail.capacity - tail.end;
      const std::size_t n = std::min(room, data.size());
      if (n > 0) {
        std::memcpy(tail.data.get() + tail.end, data.data(), n);
        tail.end += n;
        bytes_ += n;
        data = data.subspan(n);
      }
    }
    if (data.empty()) return;
    const std::size_t cap = std::max(min_chunk, data.size());
    chunk c{std::make_unique_for_overwrite<std::byte[]>(cap), cap, 0, data.size()};
    std::memcpy(c.data.get(), data.data(), data.size());
    chunks_.push_back(std::move(c));
    bytes_ += data.size();
  }

  // Fills `iov` with up to `max_iov` buffers from the front; returns how many.
  std::size_t gather(iovec* iov, std::size_t max_iov) const noexcept {
    std::size_t n = 0;
    for (std::size_t i = head_; i < chunks_.size() && n < max_iov; ++i, ++n) {
      const chunk& c = chunks_[i];
      iov[n].iov_base = c.data.get() + c.begin;
      iov[n].iov_len = c.end - c.begin;
    }
    return n;
  }

  // Drops `n` bytes from the front (what the kernel took). A drained chunk's memory goes back
  // at once and the chunk list is compacted as its drained front grows, so a queue that never
  // empties (a peer reading steadily, just behind) holds what it holds, not what it ever held.
  void consume(std::size_t n) noexcept {
    bytes_ -= n;
    while (n > 0) {
      chunk& c = chunks_[head_];
      const std::size_t len = c.end - c.begin;
      if (n < len) {
        c.begin += n;
        break;
      }
      n -= len;
      c.data.reset();
      ++head_;
    }
    if (head_ == chunks_.size()) {
      clear_storage();
    } else if (head_ * 2 >= chunks_.size()) {
      // Amortised O(1): at most as many moves as chunks drained since the last compaction.
      chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  void clear() noexcept {
    bytes_ = 0;
    clear_storage();
  }

 private:
  struct chunk {
    std::unique_ptr<std::byte[]> data;
    std::size_t capacity = 0;
    std::size_t begin = 0;
    std::size_t end = 0;
  };

  void clear_storage() noexcept {
    head_ = 0;
    // Give the memory back: a connection that once queued a burst should not keep it idle.
    std::vector<chunk>().swap(chunks_);
  }

  std::vector<chunk> chunks_;
  std::size_t head_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace atl::detail
