#include "readiness_set.hpp"

#include <unistd.h>

#include <cerrno>
#include <limits>
#include <stdexcept>

namespace atl::detail {

namespace {

constexpr readiness_set::key make_key(std::uint32_t index, std::uint32_t generation) noexcept {
  return (static_cast<std::uint64_t>(generation) << 32) | index;
}

}  // namespace

readiness_set::readiness_set(executor_type ex, dispatch_fn fn) : dispatch_(fn) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    throw std::system_error(errno, std::system_category(), "atoll: epoll_create1");
  }
  events_.resize(max_batch);
  wait_.emplace(ex);
  std::error_code ec;
  wait_->assign(epfd_, ec);  // the descriptor closes the set when it goes
  if (ec) {
    ::close(epfd_);
    throw std::system_error(ec, "atoll: cannot register the readiness set");
  }
}

readiness_set::~readiness_set() { release_io_objects(); }

void readiness_set::start() {
  if (started_) return;
  started_ = true;
  arm();
}

void readiness_set::release_io_objects() noexcept {
  if (!wait_) return;
  std::error_code ignored;
  wait_->close(ignored);  // closes epfd_
  wait_.reset();
  epfd_ = -1;
}

readiness_set::key readiness_set::add(int fd, void* target, std::error_code& ec) {
  ec.clear();
  if (epfd_ < 0) {
    ec = std::make_error_code(std::errc::operation_canceled);
    return 0;
  }
  std::uint32_t index;
  if (free_head_ != 0) {
    index = free_head_ - 1;
    free_head_ = slots_[index].next_free;
  } else {
    if (slots_.size() >= std::numeric_limits<std::uint32_t>::max()) {
      ec = std::make_error_code(std::errc::too_many_files_open);
      return 0;
    }
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slot_entry& s = slots_[index];
  s.target = target;
  s.next_free = 0;
  ++live_;
  const key k = make_key(index, s.generation);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = k;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ec.assign(errno, std::system_category());
    remove(k);
    return 0;
  }
  return k;
}

void readiness_set::remove(key k) noexcept {
  const auto index = static_cast<std::uint32_t>(k);
  const auto generation = static_cast<std::uint32_t>(k >> 32);
  if (k == 0 || index >= slots_.size()) return;
  slot_entry& s = slots_[index];
  if (s.generation != generation) return;
  if (s.target != nullptr) --live_;
  s.target = nullptr;
  // A new generation; 0 is skipped so no key is ever 0.
  if (++s.generation == 0) s.generation = 1;
  s.next_free = free_head_;
  free_head_ = index + 1;
}

void readiness_set::arm() {
  if (!wait_) return;
  wait_->async_wait(asio::posix::descriptor_base::wait_read, [this](std::error_code ec) {
    if (ec) return;  // operation_aborted: released
    run_batch();
    arm();
  });
}

void readiness_set::run_batch() {
  if (epfd_ < 0) return;
  int n;
  do {
    n = ::epoll_wait(epfd_, events_.data(), max_batch, 0);
  } while (n < 0 && errno == EINTR);
  for (int i = 0; i < n; ++i) {
    const key k = events_[static_cast<std::size_t>(i)].data.u64;
    const auto index = static_cast<std::uint32_t>(k);
    if (index >= slots_.size()) continue;
    const slot_entry& s = slots_[index];
    // A target removed earlier in this batch (or long ago, its descriptor still registered
    // through a copy) has another generation now.
    if (s.generation != static_cast<std::uint32_t>(k >> 32) || s.target == nullptr) continue;
    dispatch_(s.target, events_[static_cast<std::size_t>(i)].events);
  }
}

}  // namespace atl::detail
