#include "atoll/server.hpp"

#include <algorithm>
#include <spdlog/spdlog.h>
#include <stdexcept>

#include "atoll/error.hpp"
#include "atoll/log.hpp"
#include "config_validation.hpp"
#include "connection_impl.hpp"
#include "server_impl.hpp"

namespace atl {
namespace detail {

namespace {
void atoll_log_unexpected(const char* what) {
  atl::logger()->error("internal work on an io thread failed: {}", what);
}
}  // namespace

server_impl::server_impl(server_config config) : config_(std::move(config)) {}

server_impl::~server_impl() {
  stop(std::nullopt);
  teardown();
}

listener_id server_impl::add_listener(listener_config config, handler_factory factory) {
  std::lock_guard lock(mutex_);
  if (phase_ != phase::idle) throw std::logic_error("atoll: add_listener after start()");
  if (!factory) throw std::invalid_argument("atoll: add_listener: the handler factory is empty");
  const listener_id id = listeners_.size();
  listeners_.push_back(
      std::make_unique<listener_state>(*this, id, std::move(config), std::move(factory)));
  return id;
}

void server_impl::start() {
  std::lock_guard lock(mutex_);
  if (phase_ != phase::idle) throw std::logic_error("atoll: start() called twice");
  try {
    start_locked();
  } catch (const std::exception& e) {
    last_error_ = e.what();
    throw;
  }
}

void server_impl::start(std::error_code& ec) noexcept {
  ec.clear();
  try {
    start();
  } catch (const std::invalid_argument& e) {
    ec = errc::invalid_config;
    atl::logger()->error("{}", e.what());
  } catch (const std::system_error& e) {
    ec = e.code();
    atl::logger()->error("{}", e.what());
  } catch (const std::logic_error& e) {
    ec = errc::already_started;
    std::lock_guard lock(mutex_);
    last_error_ = e.what();
  } catch (const std::exception& e) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    std::lock_guard lock(mutex_);
    last_error_ = e.what();
  }
}

std::string server_impl::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

void server_impl::start_locked() {
  std::vector<listener_config> configs;
  for (const auto& l : listeners_) configs.push_back(l->config());
  validate(config_, configs);
  for (auto& l : listeners_) l->prepare();  // TLS files: refused here with the field's name

  for (std::size_t i = 0; i < config_.io_threads; ++i) {
    threads_.push_back(
        std::make_unique<io_thread>(i, config_.receive_buffer_size, listeners_.size()));
  }
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    std::error_code ec;
    std::string what;
    listeners_[i]->bind(ec, what);
    if (ec) {
      for (std::size_t j = 0; j < i; ++j) listeners_[j]->unbind();
      threads_.clear();
      throw std::system_error(ec, what);
    }
  }
  for (std::size_t i = 0; i < threads_.size(); ++i) {
    std::function<void()> tick;
    if (i == 0) tick = [this] { on_tick(); };
    threads_[i]->start(config_.loop_lag_interval, std::move(tick));
  }
  phase_ = phase::running;
  if (!config_.stop_signals.empty()) {
    // From start() on, not from run(): a server that is already listening must never be
    // killed by a stop signal's default action (an orchestrator may send SIGTERM at once).
    execute(0, [this] {
      signals_.emplace(thread(0).context());
      for (int s : config_.stop_signals) signals_->add(s);
      signals_->async_wait([this](std::error_code ec, int) {
        if (!ec) request_stop();
      });
    });
  }
  for (auto& l : listeners_) {
    l->start_accepting();
    for (const auto& ep : l->endpoints()) {
      atl::logger()->debug("listener '{}' accepting on {}", l->name(), ep.to_string());
      emit(event::listener_started(l->index(), ep));
    }
  }
}

void server_impl::run() {
  {
    std::unique_lock lock(mutex_);
    if (phase_ == phase::idle) {
      lock.unlock();
      start();
    }
  }
  {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return stop_requested_ || phase_ == phase::stopped; });
  }
  stop(std::nullopt);
}

void server_impl::request_stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  cv_.notify_all();
}

bool server_impl::running() const noexcept {
  std::lock_guard lock(mutex_);
  return phase_ == phase::running;
}

void server_impl::stop(std::optional<std::chrono::milliseconds> timeout) {
  if (io_thread* t = io_thread::current()) {
    for (auto& mine : threads_) {
      if (mine.get() == t) {
        // Blocking here would wait for this very thread: only ask run() to stop.
        request_stop();
        return;
      }
    }
  }
  std::lock_guard serial(stop_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (phase_ != phase::running) return;
    phase_ = phase::stopping;
  }
  drain(timeout);
  for (auto& t : threads_) t->stop_and_join();
  {
    std::lock_guard lock(mutex_);
    phase_ = phase::stopped;
  }
  cv_.notify_all();
}

// DESIGN.md "Shutdown": stop accepting, reject waiters, on_shutdown everywhere, wait for the
// connections to close until each listener's deadline, abort the rest.
void server_impl::drain(std::optional<std::chrono::milliseconds> timeout) {
  const auto started = clock::now();
  for (auto& l : listeners_) {
    // Stop the acceptors first: a socket they accept meanwhile is admitted and then drained
    // like the others. Marking the listener stopping first made them reject it (the client
    // saw a close or a reset in the middle of a rolling restart).
    l->stop_accepting(true);
    l->set_stopping();
    emit(event::listener_stopped(l->index(), errc::shutting_down));
  }
  for (std::size_t i = 0; i < threads_.size(); ++i) {
    execute(i, [t = threads_[i].get()] {
      for (auto& c : t->connections()) c->begin_shutdown();
    });
  }
  std::vector<listener_state*> order;
  for (auto& l : listeners_) order.push_back(l.get());
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) {
    return a->config().shutdown_timeout < b->config().shutdown_timeout;
  });
  for (auto* l : order) {
    auto limit = l->config().shutdown_timeout;
    if (timeout) limit = std::min(limit, *timeout);
    if (l->sup().wait_idle(started + limit)) continue;
    const std::size_t index = l->index();
    for (std::size_t i = 0; i < threads_.size(); ++i) {
      execute(i, [t = threads_[i].get(), index] {
        for (auto& c : t->connections(index)) c->force_close();
      });
    }
  }
  for (auto& l : listeners_) {
    // Sockets in flight to an io thread are rejected there when they arrive; give them a
    // moment, but never hang.
    if (!l->sup().wait_idle(clock::now() + std::chrono::seconds(2))) {
      atl::logger()->error("listener '{}': {} connection slot(s) still held after stop",
                             l->name(), l->sup().active());
    }
  }
  for (std::size_t i = 0; i < threads_.size(); ++i) {
    execute(i, [t = threads_[i].get()] { t->timeouts().cancel(); });
  }
  flush_all_warnings();
}

void server_impl::on_tick() { flush_all_warnings(); }

void server_impl::flush_all_warnings() {
  const auto now = clock::now();
  for (auto& l : listeners_) l->flush_warnings(now);
}

void server_impl::teardown() noexcept {
  signals_.reset();  // an io object: its io_context still exists here
  // Io objects first (their io_contexts must still exist), then the io_contexts (pending
  // handlers they destroy may release slots into listeners), then the listeners.
  for (auto& l : listeners_) l->release_io_objects();
  for (auto& t : threads_) t->release_io_objects();
  threads_.clear();
  listeners_.clear();
}

void server_impl::execute(std::size_t i, std::function<void()> fn,
                          std::chrono::milliseconds limit) {
  io_thread& target = *threads_[i];
  io_thread* here = io_thread::current();
  if (here == &target) {
    fn();
    return;
  }
  if (here != nullptr) {
    asio::post(target.executor(), [fn = std::move(fn)] {
      try {
        fn();
      } catch (const std::exception& e) {
        atoll_log_unexpected(e.what());
      }
    });
    return;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  asio::post(target.executor(), [fn = std::move(fn), done] {
    try {
      fn();
    } catch (const std::exception& e) {
      atoll_log_unexpected(e.what());
    }
    done->set_value();
  });
  if (future.wait_for(limit) != std::future_status::ready) {
    atl::logger()->error("io thread {} did not run posted work within {} ms (blocked loop?)",
                           i, limit.count());
  }
}

void server_impl::emit(const event& e) const noexcept {
  if (!config_.events) return;
  try {
    config_.events(e);
  } catch (...) {
    // An event sink must not break the io loop.
  }
}

listener_state& server_impl::listener(listener_id id) {
  if (id >= listeners_.size()) throw std::out_of_range("atoll: unknown listener id");
  return *listeners_[id];
}

const listener_state& server_impl::listener(listener_id id) const {
  if (id >= listeners_.size()) throw std::out_of_range("atoll: unknown listener id");
  return *listeners_[id];
}

server_stats server_impl::stats() const {
  server_stats s;
  s.listeners.resize(listeners_.size());
  for (std::size_t i = 0; i < listeners_.size(); ++i) listeners_[i]->fill_stats(s.listeners[i]);
  for (const auto& t : threads_) {
    const auto lag = t->lag();
    s.threads.push_back(thread_stats{lag.max, lag.p99, t->connection_count()});
  }
  return s;
}

void server_impl::suspend(listener_id id) {
  listener_state& l = listener(id);
  if (!running()) throw std::logic_error("atoll: suspend() needs a running server");
  if (l.suspended()) return;
  l.stop_accepting(false);
}

void server_impl::resume(listener_id id, std::error_code& ec) {
  ec.clear();
  listener_state& l = listener(id);
  if (!running()) {
    ec = errc::not_running;
    return;
  }
  if (!l.suspended()) return;
  std::string what;
  l.bind(ec, what);
  if (ec) {
    std::lock_guard lock(mutex_);
    last_error_ = what + ": " + ec.message();
    return;
  }
  l.start_accepting();
}

}  // namespace detail

// ---- public facade ------------------------------------------------------------------------

server::server(server_config config)
    : impl_(std::make_unique<detail::server_impl>(std::move(config))) {}
server::~server() = default;

listener_id server::add_listener(listener_config config, handler_factory factory) {
  return impl_->add_listener(std::move(config), std::move(factory));
}
void server::start() { impl_->start(); }
void server::start(std::error_code& ec) noexcept { impl_->start(ec); }
std::string server::last_error() const { return impl_->last_error(); }
void server::run() { impl_->run(); }
void server::request_stop() noexcept { impl_->request_stop(); }
void server::stop() { impl_->stop(std::nullopt); }
void server::stop(std::chrono::milliseconds timeout) { impl_->stop(timeout); }
bool server::running() const noexcept { return impl_->running(); }
std::size_t server::io_threads() const noexcept { return impl_->config().io_threads; }
server_stats server::stats() const { return impl_->stats(); }

std::vector<endpoint> server::local_endpoints(listener_id id) const {
  return impl_->listener(id).endpoints();
}

endpoint server::local_endpoint(listener_id id) const {
  auto eps = impl_->listener(id).endpoints();
  if (eps.empty()) throw std::logic_error("atoll: listener is not bound");
  return eps.front();
}

void server::set_max_connections(listener_id id, std::size_t max_connections) {
  if (max_connections == 0) {
    throw std::invalid_argument("atoll: set_max_connections: max_connections must be > 0");
  }
  impl_->listener(id).sup().set_max_connections(max_connections);
}

void server::suspend(listener_id id) { impl_->suspend(id); }

listener_status server::status(listener_id id) const {
  const auto& l = impl_->listener(id);
  listener_status st;
  st.running = impl_->running();
  st.suspended = l.suspended();
  st.active = l.sup().active();
  st.waiting = l.sup().waiting();
  st.max_connections = l.sup().max_connections();
  return st;
}

bool server::wait_for_connections(listener_id id, count_is op, std::size_t n,
                                  std::chrono::milliseconds timeout) const {
  return wait_for_connections(
      id,
      [op, n](const listener_status& st) {
        switch (op) {
          case count_is::equal: return st.active == n;
          case count_is::not_equal: return st.active != n;
          case count_is::less: return st.active < n;
          case count_is::less_equal: return st.active <= n;
          case count_is::greater: return st.active > n;
          case count_is::greater_equal: return st.active >= n;
        }
        return false;
      },
      timeout);
}

bool server::wait_for_connections(listener_id id,
                                  const std::function<bool(const listener_status&)>& condition,
                                  std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition(status(id))) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void server::resume(listener_id id) {
  std::error_code ec;
  impl_->resume(id, ec);
  if (ec) throw std::system_error(ec, "atoll: resume listener " + std::to_string(id));
}

void server::resume(listener_id id, std::error_code& ec) noexcept {
  try {
    impl_->resume(id, ec);
  } catch (const std::exception&) {
    ec = std::make_error_code(std::errc::invalid_argument);
  }
}

}  // namespace atl
