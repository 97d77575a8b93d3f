#include "io_thread.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <spdlog/spdlog.h>

#include "atoll/log.hpp"
#include "connection_impl.hpp"
#include "sys_calls.hpp"

namespace atl::detail {

namespace {
thread_local io_thread* current_thread = nullptr;

int open_spare_fd() noexcept { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }
}  // namespace

io_thread::io_thread(std::size_t index, std::size_t receive_buffer_size,
                     std::size_t listener_count)
    : index_(index),
      receive_buffer_size_(receive_buffer_size),
      receive_buffer_(std::make_unique_for_overwrite<std::byte[]>(receive_buffer_size)),
      listener_count_(listener_count),
      registries_(std::make_unique<registry[]>(listener_count)),
      spare_fd_(open_spare_fd()),
      // Reactor locking off: every descriptor and timer of this context is created, used and
      // destroyed on this thread only (cross-thread work is posted, and posting keeps the
      // scheduler's locking). Measured: -11..15 % instructions per echoed message.
      ctx_(ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      work_(asio::make_work_guard(ctx_.get_executor())),
      timeouts_(std::make_unique<read_timeouts>(ctx_.get_executor())) {
  readiness_ = std::make_unique<readiness_set>(ctx_.get_executor(), &connection_impl::on_ready);
  counters_.reserve(listener_count);
  for (std::size_t i = 0; i < listener_count; ++i) {
    counters_.push_back(std::make_unique<listener_counters>());
  }
}

io_thread::~io_thread() {
  if (thread_.joinable()) stop_and_join();
  readiness_->release_io_objects();  // its Asio wait, while the io_context exists
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

io_thread* io_thread::current() noexcept { return current_thread; }

void io_thread::start(std::chrono::milliseconds lag_interval, std::function<void()> on_tick) {
  lag_interval_ = lag_interval;
  on_tick_ = std::move(on_tick);
  lag_timer_.emplace(ctx_.get_executor());
  arm_lag_probe();
  readiness_->start();
  thread_ = std::thread([this] {
    current_thread = this;
    // Handlers' exceptions are caught at the callback boundary; anything else escaping a
    // completion handler (e.g. bad_alloc) is logged and the loop goes on: one failure must
    // not take the server down.
    for (;;) {
      try {
        ctx_.run();
        break;
      } catch (const std::exception& e) {
        atl::logger()->error("io thread {}: unexpected exception: {}", index_, e.what());
      } catch (...) {
        atl::logger()->error("io thread {}: unexpected exception", index_);
      }
    }
    current_thread = nullptr;
  });
}

void io_thread::stop_and_join() {
  work_.reset();
  ctx_.stop();
  if (thread_.joinable()) thread_.join();
}

void io_thread::release_io_objects() noexcept {
  lag_timer_.reset();
  timeouts_.reset();
  readiness_->release_io_objects();
}

void io_thread::add(connection_impl& c) noexcept {
  registries_[c.listener_index()].push_back(c);
  live_.fetch_add(1, std::memory_order_relaxed);
}

void io_thread::remove(connection_impl& c) noexcept {
  // Checked first: an unfiled connection (dropped before it opened) is not asked for its
  // listener.
  if (!static_cast<list_node<registry_tag>&>(c).linked()) return;
  registries_[c.listener_index()].erase(c);
  live_.fetch_sub(1, std::memory_order_relaxed);
}

std::vector<std::shared_ptr<connection_impl>> io_thread::connections(std::size_t listener) {
  std::vector<std::shared_ptr<connection_impl>> out;
  registry& r = registries_[listener];
  out.reserve(r.size());
  r.for_each([&](connection_impl& c) { out.push_back(c.shared_from_this()); });
  return out;
}

std::vector<std::shared_ptr<connection_impl>> io_thread::connections() {
  std::vector<std::shared_ptr<connection_impl>> out;
  out.reserve(live_.load(std::memory_order_relaxed));
  for (std::size_t l = 0; l < listener_count_; ++l) {
    registries_[l].for_each([&](connection_impl& c) { out.push_back(c.shared_from_this()); });
  }
  return out;
}

int io_thread::take_spare_fd() noexcept { return std::exchange(spare_fd_, -1); }

void io_thread::restore_spare_fd() noexcept {
  if (spare_fd_ < 0) spare_fd_ = open_spare_fd();
}

void io_thread::arm_lag_probe() {
  lag_expected_ = clock::now() + lag_interval_;
  lag_timer_->expires_at(lag_expected_);
  lag_timer_->async_wait([this](std::error_code ec) {
    if (ec) return;
    // How late the timer fired = how long ready work waited on this loop.
    const auto late = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() -
                                                                            lag_expected_);
    const std::int64_t us = std::max<std::int64_t>(0, late.count());
    const std::uint32_t n = lag_count_.fetch_add(1, std::memory_order_relaxed);
    lag_samples_us_[n % lag_samples_us_.size()].store(us, std::memory_order_relaxed);
    if (us > lag_max_us_.load(std::memory_order_relaxed)) {
      lag_max_us_.store(us, std::memory_order_relaxed);
    }
    if (on_tick_) on_tick_();
    arm_lag_probe();
  });
}

io_thread::lag_snapshot io_thread::lag() const {
  lag_snapshot s;
  s.max = std::chrono::microseconds(lag_max_us_.load(std::memory_order_relaxed));
  const std::size_t n = std::min<std::size_t>(lag_count_.load(std::memory_order_relaxed),
                                              lag_samples_us_.size());
  if (n == 0) return s;
  std::vector<std::int64_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = lag_samples_us_[i].load(std::memory_order_relaxed);
  const std::size_t k = (n * 99 + 99) / 100 - 1;  // nearest-rank p99
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  s.p99 = std::chrono::microseconds(v[k]);
  return s;
}

}  // namespace atl::detail
