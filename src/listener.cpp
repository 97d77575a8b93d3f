#include "listener.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <spdlog/spdlog.h>

#include "acceptor.hpp"
#include "atoll/error.hpp"
#include "atoll/log.hpp"
#include "connection_impl.hpp"
#include "io_thread.hpp"
#include "listen_socket.hpp"
#include "server_impl.hpp"
#include "tls_context.hpp"

namespace atl::detail {

namespace {

// At most this many 4 KiB reads of a refused socket before the reject response (16 KiB: a
// request head; a refused peer cannot make a refusal cost more).
constexpr int reject_drain_reads = 4;

std::string default_name(std::size_t index, const listener_config& c) {
  return c.name.empty() ? "listener" + std::to_string(index) : c.name;
}

}  // namespace

listener_state::listener_state(server_impl& server, std::size_t index, listener_config config,
                               handler_factory factory)
    : server_(server),
      index_(index),
      config_(std::move(config)),
      factory_(std::move(factory)),
      name_(default_name(index, config_)),
      sup_(config_.max_connections, config_.max_waiting, [this](waiter&& w, slot&& s) {
        // Hand the waiter and its slot to the io thread that accepted it. If that never runs
        // (the server is torn down first), the captured fd and slot are released by RAII.
        io_thread& t = server_.thread(w.thread);
        asio::post(t.executor(), [this, &t, w = std::move(w), s = std::move(s)]() mutable {
          admit(t, std::move(w.fd), std::move(s), w.peer, true);
        });
      }),
      admission_(sup_, admission_rules{config_.retry_count, config_.retry_wait}) {}

listener_state::~listener_state() = default;

void listener_state::prepare() {
  if (config_.tls.enabled() && !tls_) {
    tls_ = std::make_unique<tls_context>(config_.tls, "listener[" + std::to_string(index_) + "].tls");
  }
  if (!config_.alarms.empty() && !alarm_fired_) {
    alarm_fired_ = std::make_unique<std::atomic<std::int64_t>[]>(config_.alarms.size());
    for (std::size_t i = 0; i < config_.alarms.size(); ++i) {
      alarm_fired_[i].store(std::numeric_limits<std::int64_t>::min(), std::memory_order_relaxed);
    }
  }
}

void listener_state::check_alarms() {
  const std::size_t active = sup_.active();
  for (std::size_t i = 0; i < config_.alarms.size(); ++i) {
    const connection_alarm& a = config_.alarms[i];
    if (active < a.threshold) continue;
    const std::int64_t now = clock::now().time_since_epoch() / std::chrono::nanoseconds(1);
    std::int64_t last = alarm_fired_[i].load(std::memory_order_relaxed);
    const std::int64_t cooldown = a.cooldown / std::chrono::nanoseconds(1);
    // One thread wins the right to fire for this cooldown period.
    if (last != std::numeric_limits<std::int64_t>::min() && now - last < cooldown) continue;
    if (!alarm_fired_[i].compare_exchange_strong(last, now, std::memory_order_relaxed)) continue;
    try {
      a.callback(index_, active);
    } catch (const std::exception& e) {
      atl::logger()->error("listener '{}': connection alarm {} threw: {}", name_, i, e.what());
    } catch (...) {
      atl::logger()->error("listener '{}': connection alarm {} threw", name_, i);
    }
  }
}

void listener_state::debug_handshake_failure(std::uint64_t connection_id, const std::string& why) {
  atl::logger()->debug("listener '{}': connection {} handshake failed: {}", name_, connection_id,
                       why);
}

std::vector<std::size_t> listener_state::acceptor_threads() const {
  const std::size_t n = server_.thread_count();
  const std::size_t count = config_.num_acceptors == 0 ? n : config_.num_acceptors;
  std::vector<std::size_t> out;
  // Spread listeners with few acceptors over different threads.
  for (std::size_t i = 0; i < count; ++i) out.push_back((index_ + i) % n);
  return out;
}

// ---- binding ------------------------------------------------------------------------------

void listener_state::bind(std::error_code& ec, std::string& what) {
  std::lock_guard lock(mutex_);
  std::error_code e;
  std::string op;
  listen_sockets s = open_listen_sockets(config_, acceptor_threads().size(), resolved_port_, e, op);
  // As far as they got, even on failure (a later reuse_port socket may fail after the first
  // got its port; an adopted descriptor listens before its dup fails).
  if (s.port != 0) resolved_port_ = s.port;
  if (s.adopted) adopted_ = true;
  listen_fds_ = std::move(s.fds);
  bound_ = std::move(s.bound);
  if (e) {
    ec = e;
    what = "atoll: listener[" + std::to_string(index_) + "] '" + name_ + "': " + op;
  }
}

void listener_state::unbind() noexcept {
  std::lock_guard lock(mutex_);
  const bool had = !listen_fds_.empty();
  listen_fds_.clear();
  bound_.clear();
  if (had && !adopted_ && !config_.unix_path.empty()) ::unlink(config_.unix_path.c_str());
  adopted_ = false;
}

void listener_state::start_accepting() {
  const auto threads = acceptor_threads();
  std::vector<std::pair<std::size_t, int>> plan;  // (thread, dup'd fd)
  int family = AF_INET;
  {
    std::lock_guard lock(mutex_);
    if (!bound_.empty()) family = bound_.front().family();
    for (std::size_t i = 0; i < threads.size() && !listen_fds_.empty(); ++i) {
      const int src = listen_fds_[config_.reuse_port ? i : 0].get();
      // Each acceptor registers its own descriptor with its own thread's epoll; a dup of a
      // shared socket lets every io thread accept from it.
      plan.emplace_back(threads[i], ::fcntl(src, F_DUPFD_CLOEXEC, 0));
    }
    home_thread_ = threads.front();
  }
  suspended_.store(false, std::memory_order_relaxed);
  server_.execute(home_thread_, [this] {
    if (!expiry_timer_) expiry_timer_.emplace(server_.thread(home_thread_).executor());
  });
  for (auto [t, fd] : plan) {
    if (fd < 0) {
      count_accept_error(errno);
      continue;
    }
    server_.execute(t, [this, t = t, fd = fd, family] {
      auto a = std::make_shared<acceptor>(server_.thread(t), *this, fd, family);
      a->start();
      std::lock_guard lock(mutex_);
      acceptors_.emplace_back(t, std::move(a));
    });
  }
}

void listener_state::stop_accepting(bool final) {
  std::vector<std::pair<std::size_t, std::shared_ptr<acceptor>>> acceptors;
  std::vector<unique_fd> closing;
  {
    std::lock_guard lock(mutex_);
    acceptors.swap(acceptors_);
    if (final || !adopted_) {
      closing.swap(listen_fds_);
      bound_.clear();
    }
  }
  suspended_.store(!final, std::memory_order_relaxed);
  // Each acceptor closes its descriptor on its own thread; a pending wait keeps the object
  // alive until it has run there.
  for (auto& [t, a] : acceptors) {
    server_.execute(t, [a = std::move(a)] { a->stop(); });
  }
  const bool closed_socket = !closing.empty();
  closing.clear();
  if (final && adopted_ && config_.adopt_fd >= 0) ::close(config_.adopt_fd);
  // Remove the socket file we created, so clients get ECONNREFUSED/ENOENT, not a hang.
  if (closed_socket && !adopted_ && !config_.unix_path.empty()) {
    ::unlink(config_.unix_path.c_str());
  }
  reject_all_waiters();
}

// ---- data path ----------------------------------------------------------------------------

void listener_state::apply_socket_options(int fd) const noexcept {
  const socket_options& o = config_.socket;
  const int one = 1;
  if (o.tcp_nodelay) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (o.keep_alive) ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  if (o.linger) {
    linger l{1, static_cast<int>(o.linger->count())};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  if (o.receive_buffer_size > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o.receive_buffer_size, sizeof(int));
  }
  if (o.send_buffer_size > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o.send_buffer_size, sizeof(int));
  }
}

void listener_state::on_accepted(io_thread& t, unique_fd fd, const sockaddr* addr,
                                 socklen_t len) {
  listener_counters& ctr = t.counters(index_);
  bump(ctr.accepted);
  const compact_address peer(addr, len);
  if (stopping()) return reject(ctr, std::move(fd), reject_reason::shutdown, peer);
  if (peer.family() != AF_UNIX) apply_socket_options(fd.get());

  waiter w{std::move(fd), peer, {}, t.index()};
  admission_verdict v = admission_.decide(w, clock::now());
  switch (v.what) {
    case admission_verdict::action::admit:
      return admit(t, std::move(w.fd), std::move(v.granted), peer, false);
    case admission_verdict::action::reject:
      return reject(ctr, std::move(w.fd), *v.why, peer);
    case admission_verdict::action::wait:
      break;
  }
  if (server_.has_event_sink()) {
    server_.emit(event::waiting(index_, peer.to_endpoint()));
  }
  schedule_expiry();
}

void listener_state::admit(io_thread& t, unique_fd fd, slot s, const compact_address& peer,
                           bool after_wait) {
  if (stopping()) return reject(t.counters(index_), std::move(fd), reject_reason::shutdown, peer);
  const std::uint64_t id = t.next_connection_id(server_.thread_count()) + 1;
  auto c = std::make_shared<connection_impl>(t, *this, std::move(s), std::move(fd), peer, id);
  if (alarm_fired_) check_alarms();
  c->open(after_wait);
}

void listener_state::reject(listener_counters& ctr, unique_fd fd, reject_reason why,
                            const compact_address& peer) {
  if (!config_.reject_response.empty()) {
    // Read what the client already sent (a request head), so close() sends FIN rather than
    // RST and the response is not discarded by the client's kernel; one non-blocking send,
    // never waited for. Bounded (issue 9): a refused peer that streams could otherwise keep
    // the io thread here as long as it likes; past the bound it gets a reset, as it would
    // with no response configured and bytes unread.
    char sink[4096];
    for (int i = 0; i < reject_drain_reads; ++i) {
      if (::recv(fd.get(), sink, sizeof sink, MSG_DONTWAIT) < static_cast<ssize_t>(sizeof sink)) {
        break;
      }
    }
    ::send(fd.get(), config_.reject_response.data(), config_.reject_response.size(),
           MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  fd.reset();
  bump(ctr.rejected[static_cast<std::size_t>(why)]);
  if (server_.has_event_sink()) {
    server_.emit(event::rejected(index_, 0, why, to_error_code(why), peer.to_endpoint()));
  }
  if (const auto n = reject_warn_.hit(clock::now(), server_.config().warn_interval)) {
    log_rejections(n);
  }
}

void listener_state::count_accept_error(int err) {
  {
    std::lock_guard lock(mutex_);
    ++accept_errors_[err];
    last_accept_error_ = err;
  }
  if (server_.has_event_sink()) {
    server_.emit(event::accept_error(index_, std::error_code(err, std::system_category())));
  }
  if (const auto n = accept_error_warn_.hit(clock::now(), server_.config().warn_interval)) {
    log_accept_errors(n);
  }
}

void listener_state::warn_handler_exception(std::uint64_t connection_id, const char* what,
                                            const char* message) {
  if (const auto n = handler_error_warn_.hit(clock::now(), server_.config().warn_interval)) {
    atl::logger()->error(
        "listener '{}': handler exception in {} (connection {}): {}; {} handler exception(s) "
        "since the last report; each closed only its own connection",
        name_, what, connection_id, message, n);
  }
}

// ---- waiting-room expiry (home thread) -----------------------------------------------------

void listener_state::schedule_expiry() {
  asio::post(server_.thread(home_thread_).executor(), [this] { arm_expiry(); });
}

void listener_state::arm_expiry() {
  if (!expiry_timer_) return;
  const auto next = admission_.next_expiry();
  if (!next) return;
  if (expiry_armed_ && *next >= expiry_at_) return;
  expiry_armed_ = true;
  expiry_at_ = *next;
  expiry_timer_->expires_at(*next);
  expiry_timer_->async_wait([this](std::error_code ec) {
    if (ec) return;  // re-armed for an earlier deadline, or cancelled
    expiry_armed_ = false;
    expire_waiters();
    arm_expiry();
  });
}

void listener_state::expire_waiters() {
  listener_counters& ctr = server_.thread(home_thread_).counters(index_);
  for (auto& w : admission_.expire(clock::now())) {
    reject(ctr, std::move(w.fd), reject_reason::wait_expired, w.peer);
  }
}

void listener_state::reject_all_waiters() {
  listener_counters& ctr = server_.thread(home_thread_).counters(index_);
  for (auto& w : admission_.evict_all()) {
    reject(ctr, std::move(w.fd), reject_reason::shutdown, w.peer);
  }
}

// ---- stats and warnings ---------------------------------------------------------------------

endpoint listener_state::first_endpoint() const {
  std::lock_guard lock(mutex_);
  return bound_.empty() ? endpoint() : bound_.front();
}

bool listener_state::has_event_sink() const noexcept { return server_.has_event_sink(); }

void listener_state::emit(const event& e) const noexcept { server_.emit(e); }

std::vector<endpoint> listener_state::endpoints() const {
  std::lock_guard lock(mutex_);
  return bound_;
}

void listener_state::fill_stats(listener_stats& out) const {
  out.name = name_;
  out.suspended = suspended();
  out.active = sup_.active();
  out.max_connections = sup_.max_connections();
  out.waiting = sup_.waiting();
  {
    std::lock_guard lock(mutex_);
    out.endpoints = bound_;
    out.accept_errors_total = accept_errors_;
  }
  for (std::size_t i = 0; i < server_.thread_count(); ++i) {
    const listener_counters& c = server_.thread(i).counters(index_);
    auto get = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    out.accepted_total += get(c.accepted);
    out.admitted_after_wait_total += get(c.admitted_after_wait);
    out.bytes_in_total += get(c.bytes_in);
    out.bytes_out_total += get(c.bytes_out);
    for (std::size_t r = 0; r < reject_reason_count; ++r) out.rejected_total[r] += get(c.rejected[r]);
    for (std::size_t r = 0; r < close_reason_count; ++r) out.closed_total[r] += get(c.closed[r]);
  }
}

void listener_state::flush_warnings(clock::time_point now) {
  const auto interval = server_.config().warn_interval;
  if (const auto n = reject_warn_.due(now, interval)) log_rejections(n);
  if (const auto n = accept_error_warn_.due(now, interval)) log_accept_errors(n);
}

void listener_state::log_rejections(std::uint64_t count) {
  listener_stats s;
  fill_stats(s);
  std::string by_reason;
  for (std::size_t r = 0; r < reject_reason_count; ++r) {
    if (s.rejected_total[r] == 0) continue;
    if (!by_reason.empty()) by_reason += ", ";
    by_reason += fmt::format("{}={}", to_string(static_cast<reject_reason>(r)), s.rejected_total[r]);
  }
  atl::logger()->warn(
      "listener '{}': rejected {} connection(s) since the last report (active {}/{}, waiting "
      "{}; totals: {})",
      name_, count, s.active, s.max_connections, s.waiting, by_reason);
}

void listener_state::log_accept_errors(std::uint64_t count) {
  int last = 0;
  {
    std::lock_guard lock(mutex_);
    last = last_accept_error_;
  }
  atl::logger()->warn(
      "listener '{}': {} accept error(s) since the last report (last: {}); accepting goes on{}",
      name_, count, std::strerror(last),
      (last == EMFILE || last == ENFILE) ? " after a back-off; raise the descriptor limit "
                                           "(ulimit -n) or lower max_connections"
                                         : "");
}

void listener_state::release_io_objects() noexcept {
  expiry_timer_.reset();
  std::lock_guard lock(mutex_);
  acceptors_.clear();
}

}  // namespace atl::detail
