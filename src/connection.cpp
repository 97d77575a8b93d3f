#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <asio/any_io_executor.hpp>
#include <cerrno>

#include "atoll/error.hpp"
#include "connection_impl.hpp"
#include "listener.hpp"
#include "server_impl.hpp"

namespace atl {
namespace detail {

namespace {
// Most buffers handed to one sendmsg(2); IOV_MAX is 1024 on Linux, 64 covers any realistic
// queue of small messages while keeping the iovec array on the stack.
constexpr std::size_t max_iov = 64;
// Reads per readable event before yielding to other connections on the thread (fairness).
constexpr int max_reads_per_event = 16;
}  // namespace

connection_impl::connection_impl(io_thread& t, listener_state& l, slot s, stream_socket socket,
                                 const compact_address& peer, const compact_address& local,
                                 std::uint64_t id)
    : thread_(t),
      listener_(l),
      counters_(t.counters(l.index())),
      slot_(std::move(s)),
      socket_(std::move(socket)),
      peer_(peer),
      local_(local),
      id_(id),
      read_timeout_(l.config().read_timeout) {}

connection_impl::~connection_impl() {
  // Normally finished (and unlinked) already; this covers a connection dropped before it
  // opened. Unlinked connections may be destroyed after the thread's timeouts are gone.
  if (static_cast<timeout_entry&>(*this).linked()) thread_.timeouts().remove(*this);
  thread_.remove(*this);
}

void connection_impl::open(bool after_wait) {
  state_ = state::open;
  std::unique_ptr<handler> h;
  try {
    h = listener_.factory()(*this);
  } catch (const std::exception& e) {
    listener_.warn_handler_exception(id_, "handler_factory", e.what());
  } catch (...) {
    listener_.warn_handler_exception(id_, "handler_factory", "unknown exception");
  }
  if (!h) {
    // Refused: no handler ever saw it, so no on_close; counted as a rejection.
    state_ = state::finished;
    std::error_code ignored;
    socket_.close(ignored);
    bump(counters_.rejected[static_cast<std::size_t>(reject_reason::refused)]);
    slot_.release();
    if (listener_.server().has_event_sink()) {
      event e{event_type::rejected, listener_.index(), id_, reject_reason::refused,
              close_reason::rejected, errc::handler_refused, peer_.to_endpoint()};
      listener_.server().emit(e);
    }
    return;
  }
  handler_ = std::move(h);
  self_ = shared_from_this();
  thread_.add(*this);
  if (after_wait) bump(counters_.admitted_after_wait);
  timeout_entry::queue = thread_.timeouts().queue_for(read_timeout_);
  touch_timeout();
  if (listener_.server().has_event_sink()) {
    event e{after_wait ? event_type::admitted : event_type::accepted,
            listener_.index(),
            id_,
            reject_reason::limit,
            close_reason::local_close,
            {},
            peer_.to_endpoint()};
    listener_.server().emit(e);
  }
  invoke("on_open", [&](handler& hd) { hd.on_open(*this); });
  arm_read();
}

endpoint connection_impl::local() const noexcept {
  if (local_.family() == AF_UNIX) return listener_.first_endpoint();
  return local_.to_endpoint();
}

std::size_t connection_impl::listener_index() const noexcept { return listener_.index(); }

// ---- reading ------------------------------------------------------------------------------

void connection_impl::arm_read() {
  if (read_armed_ || paused_ || state_ != state::open || finish_pending_) return;
  read_armed_ = true;
  socket_.async_wait(stream_socket::wait_read,
                     [self = shared_from_this()](std::error_code ec) { self->on_readable(ec); });
}

void connection_impl::on_readable(std::error_code ec) {
  read_armed_ = false;
  if (state_ != state::open || finish_pending_) return;
  if (ec) {
    if (ec != asio::error::operation_aborted) finish(close_reason::error, ec);
    return;
  }
  std::byte* buf = thread_.receive_buffer();
  const std::size_t cap = thread_.receive_buffer_size();
  const int fd = socket_.native_handle();
  for (int i = 0; i < max_reads_per_event; ++i) {
    if (state_ != state::open || paused_ || finish_pending_) return;
    const ssize_t n = ::recv(fd, buf, cap, 0);
    if (n > 0) {
      const auto len = static_cast<std::size_t>(n);
      bump(counters_.bytes_in, len);
      touch_timeout();
      invoke("on_data", [&](handler& h) { h.on_data(*this, {buf, len}); });
      if (len < cap) break;  // drained (almost surely); let epoll say when there is more
      continue;
    }
    if (n == 0) {
      on_peer_eof();
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (errno == EINTR) continue;
    fail(errno);
    return;
  }
  arm_read();
}

void connection_impl::on_peer_eof() {
  if (queue_.empty()) {
    finish(close_reason::peer_closed, {});
    return;
  }
  // Deliver what is queued first (the peer may only have half-closed), then finish.
  state_ = state::closing;
  closing_reason_ = close_reason::peer_closed;
  touch_timeout();
}

void connection_impl::pause_reading() {
  if (paused_) return;
  paused_ = true;
  // Pausing to wait for something else is not idleness: the timeout stops. But with bytes
  // queued (backpressure: the peer is not reading) it keeps running, or a peer that neither
  // reads nor writes would hold its slot forever.
  if (state_ == state::open && queue_.empty()) thread_.timeouts().remove(*this);
}

void connection_impl::resume_reading() {
  if (!paused_) return;
  paused_ = false;
  if (state_ != state::open) return;
  touch_timeout();
  arm_read();
}

// ---- timeouts -----------------------------------------------------------------------------

void connection_impl::touch_timeout() {
  if (timeout_entry::queue != nullptr) thread_.timeouts().touch(*this, clock::now());
}

void connection_impl::set_read_timeout(std::chrono::milliseconds d) {
  if (d.count() < 0) d = std::chrono::milliseconds(0);
  read_timeout_ = d;
  if (state_ == state::finished || state_ == state::opening) return;
  thread_.timeouts().remove(*this);
  timeout_entry::queue = thread_.timeouts().queue_for(d);
  if (!paused_ || state_ == state::closing) touch_timeout();
}

void connection_impl::on_read_timeout() {
  if (state_ == state::finished) return;
  if (state_ == state::closing) {
    // close() could not flush within the timeout: the peer is not reading.
    reset_on_close_ = true;
    finish(close_reason::timeout, errc::read_timeout);
    return;
  }
  in_timeout_ = true;
  invoke("on_timeout", [&](handler& h) { h.on_timeout(*this); });
  in_timeout_ = false;
  // The handler kept the connection: give it another full timeout.
  if (state_ == state::open && !finish_pending_ && (!paused_ || !queue_.empty()) &&
      !static_cast<timeout_entry&>(*this).linked()) {
    touch_timeout();
  }
}

// ---- writing ------------------------------------------------------------------------------

send_result connection_impl::send(std::span<const std::byte> data) {
  if (state_ != state::open || finish_pending_ || write_shut_ || shutdown_write_pending_) {
    return send_result::dropped;
  }
  if (data.empty()) return queue_.size() > listener_.config().write_low_water
                               ? send_result::backpressure
                               : send_result::ok;
  if (queue_.empty()) {
    const ssize_t n = ::send(socket_.native_handle(), data.data(), data.size(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(errno);
        return send_result::dropped;
      }
    } else {
      bump(counters_.bytes_out, static_cast<std::size_t>(n));
      data = data.subspan(static_cast<std::size_t>(n));
      if (data.empty()) return send_result::ok;
    }
  }
  if (queue_.size() + data.size() > listener_.config().max_write_buffer) {
    reset_on_close_ = true;
    finish(close_reason::slow_consumer, errc::slow_consumer);
    return send_result::dropped;
  }
  queue_.append(data);
  arm_write();
  if (paused_ && !static_cast<timeout_entry&>(*this).linked()) touch_timeout();
  if (queue_.size() > listener_.config().write_low_water) {
    want_writable_ = true;
    return send_result::backpressure;
  }
  return send_result::ok;
}

void connection_impl::arm_write() {
  if (write_armed_ || state_ == state::finished) return;
  write_armed_ = true;
  socket_.async_wait(
      stream_socket::wait_write,
      [self = shared_from_this()](std::error_code ec) { self->on_writable_ready(ec); });
}

void connection_impl::on_writable_ready(std::error_code ec) {
  write_armed_ = false;
  if (state_ == state::finished || finish_pending_) return;
  if (ec) {
    if (ec != asio::error::operation_aborted) finish(close_reason::error, ec);
    return;
  }
  flush();
}

void connection_impl::flush() {
  const int fd = socket_.native_handle();
  while (!queue_.empty()) {
    iovec iov[max_iov];
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = queue_.gather(iov, max_iov);
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail(errno);
      return;
    }
    bump(counters_.bytes_out, static_cast<std::size_t>(n));
    queue_.consume(static_cast<std::size_t>(n));
  }
  after_drain();
}

// Called whenever the queue may have shrunk: finishes a close, a shutdown_write, or tells the
// handler it may write again.
void connection_impl::after_drain() {
  if (!queue_.empty()) {
    arm_write();
    if (want_writable_ && queue_.size() <= listener_.config().write_low_water &&
        state_ == state::open) {
      want_writable_ = false;
      invoke("on_writable", [&](handler& h) { h.on_writable(*this); });
    }
    return;
  }
  if (paused_ && state_ == state::open) thread_.timeouts().remove(*this);
  if (shutdown_write_pending_) {
    shutdown_write_pending_ = false;
    write_shut_ = true;
    ::shutdown(socket_.native_handle(), SHUT_WR);
  }
  if (state_ == state::closing) {
    finish(closing_reason_, code_for(closing_reason_));
    return;
  }
  if (want_writable_ && state_ == state::open) {
    want_writable_ = false;
    invoke("on_writable", [&](handler& h) { h.on_writable(*this); });
  }
}

void connection_impl::shutdown_write() {
  if (state_ != state::open || write_shut_ || shutdown_write_pending_) return;
  if (queue_.empty()) {
    write_shut_ = true;
    ::shutdown(socket_.native_handle(), SHUT_WR);
  } else {
    shutdown_write_pending_ = true;
  }
}

// ---- closing ------------------------------------------------------------------------------

close_reason connection_impl::reason_for_close() const noexcept {
  if (in_timeout_) return close_reason::timeout;
  if (draining_) return close_reason::shutdown;
  return close_reason::local_close;
}

std::error_code connection_impl::code_for(close_reason r) const noexcept {
  switch (r) {
    case close_reason::timeout: return errc::read_timeout;
    case close_reason::shutdown: return errc::shutting_down;
    default: return {};
  }
}

void connection_impl::close() {
  if (state_ != state::open || finish_pending_) return;
  state_ = state::closing;
  closing_reason_ = reason_for_close();
  if (queue_.empty() && !write_armed_) {
    finish(closing_reason_, code_for(closing_reason_));
    return;
  }
  // Bound the flush by the read timeout, also when reading was paused.
  if (!static_cast<timeout_entry&>(*this).linked()) touch_timeout();
}

void connection_impl::abort() {
  if (state_ == state::finished) return;
  reset_on_close_ = true;
  queue_.clear();
  finish(close_reason::local_close, errc::aborted);
}

void connection_impl::begin_shutdown() {
  if (state_ == state::finished || draining_) return;
  draining_ = true;
  if (state_ == state::open) invoke("on_shutdown", [&](handler& h) { h.on_shutdown(*this); });
}

void connection_impl::force_close() {
  if (state_ == state::finished) return;
  reset_on_close_ = true;
  queue_.clear();
  finish(close_reason::shutdown, errc::shutting_down);
}

void connection_impl::fail(int err) {
  // The peer went away (reset, or we wrote after its close): not a server-side error.
  const bool by_peer = err == ECONNRESET || err == EPIPE;
  finish(by_peer ? close_reason::peer_closed : close_reason::error,
         std::error_code(err, std::system_category()));
}

void connection_impl::finish(close_reason r, std::error_code ec) {
  if (state_ == state::finished || finish_pending_) return;
  if (depth_ > 0) {
    // Inside a handler callback: end the connection once the callback has returned, so a
    // handler is never destroyed (or told on_close) while one of its own calls is running.
    finish_pending_ = true;
    pending_reason_ = r;
    pending_ec_ = ec;
    return;
  }
  do_finish(r, ec);
}

void connection_impl::do_finish(close_reason r, std::error_code ec) {
  auto keep = shared_from_this();
  state_ = state::finished;
  thread_.timeouts().remove(*this);
  thread_.remove(*this);
  if (reset_on_close_) {
    // RST instead of FIN; with a zero linger time close(2) never blocks.
    linger l{1, 0};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  std::error_code ignored;
  socket_.close(ignored);  // also cancels the pending waits
  queue_.clear();
  bump(counters_.closed[static_cast<std::size_t>(r)]);
  if (listener_.server().has_event_sink()) {
    event e{event_type::closed,      listener_.index(), id_, reject_reason::limit, r, ec,
            peer_.to_endpoint()};
    listener_.server().emit(e);
  }
  if (handler_) {
    ++depth_;
    try {
      handler_->on_close(*this, r, ec);
    } catch (const std::exception& e) {
      listener_.warn_handler_exception(id_, "on_close", e.what());
    } catch (...) {
      listener_.warn_handler_exception(id_, "on_close", "unknown exception");
    }
    --depth_;
  }
  handler_.reset();
  upgrade_.reset();
  slot_.release();  // may admit a waiting socket
  self_.reset();
}

void connection_impl::settle() {
  if (finish_pending_) {
    finish_pending_ = false;
    do_finish(pending_reason_, pending_ec_);
    return;
  }
  if (upgrade_ && state_ != state::finished) {
    auto u = std::move(upgrade_);
    handler_ = std::move(u->next);  // the old handler is destroyed here, outside its calls
    invoke("on_open", [&](handler& h) { h.on_open(*this); });
    if (!u->leftover.empty() && state_ == state::open && !finish_pending_ && handler_) {
      const std::span<const std::byte> bytes(u->leftover);
      invoke("on_data", [&](handler& h) { h.on_data(*this, bytes); });
    }
  }
}

void connection_impl::upgrade(std::unique_ptr<handler> next, std::span<const std::byte> leftover) {
  if (state_ == state::finished || !next) return;
  upgrade_ = std::make_unique<upgrade_state>(
      upgrade_state{std::move(next), std::vector<std::byte>(leftover.begin(), leftover.end())});
  if (depth_ == 0) settle();
}

void connection_impl::on_handler_exception(const char* what, const char* message) {
  listener_.warn_handler_exception(id_, what, message);
  reset_on_close_ = true;
  finish(close_reason::handler_error, errc::handler_exception);
}

}  // namespace detail

// ---- public facade ------------------------------------------------------------------------

detail::connection_impl& connection::impl() noexcept {
  return static_cast<detail::connection_impl&>(*this);
}
const detail::connection_impl& connection::impl() const noexcept {
  return static_cast<const detail::connection_impl&>(*this);
}

send_result connection::send(std::span<const std::byte> bytes) { return impl().send(bytes); }
send_result connection::send(std::string_view text) {
  return impl().send(std::as_bytes(std::span<const char>(text.data(), text.size())));
}
void connection::close() { impl().close(); }
void connection::abort() { impl().abort(); }
void connection::shutdown_write() { impl().shutdown_write(); }
void connection::pause_reading() { impl().pause_reading(); }
void connection::resume_reading() { impl().resume_reading(); }
bool connection::reading_paused() const noexcept { return impl().reading_paused(); }
void connection::set_read_timeout(std::chrono::milliseconds t) { impl().set_read_timeout(t); }
std::chrono::milliseconds connection::read_timeout() const noexcept {
  return impl().read_timeout();
}
endpoint connection::peer() const noexcept { return impl().peer(); }
endpoint connection::local() const noexcept { return impl().local(); }
std::uint64_t connection::id() const noexcept { return impl().id(); }
std::size_t connection::listener() const noexcept { return impl().listener_index(); }
std::size_t connection::thread_index() const noexcept { return impl().thread_index(); }
std::size_t connection::buffered_amount() const noexcept { return impl().buffered_amount(); }
bool connection::is_open() const noexcept { return impl().is_open(); }
asio::any_io_executor connection::executor() const {
  return const_cast<detail::connection_impl&>(impl()).io_executor();
}
connection_handle connection::handle() { return impl().make_handle(); }
void connection::upgrade(std::unique_ptr<handler> next, std::span<const std::byte> leftover) {
  impl().upgrade(std::move(next), leftover);
}

namespace {

// Posts `fn(connection_impl&)` to the connection's thread if it still exists. The shared_ptr
// is moved into the posted work, so the connection can only be destroyed on its own thread
// (or after the io threads have ended).
template <class F>
bool post_to(const std::weak_ptr<detail::connection_impl>& weak, F&& fn) {
  auto p = weak.lock();
  if (!p) return false;
  auto ex = p->io_executor();
  asio::post(ex, [p = std::move(p), fn = std::forward<F>(fn)]() mutable { fn(*p); });
  return true;
}

}  // namespace

bool connection_handle::send(std::span<const std::byte> bytes) const {
  return post_to(impl_, [copy = std::vector<std::byte>(bytes.begin(), bytes.end())](
                            detail::connection_impl& c) {
    c.run_guarded("connection_handle::send", [&] { c.send(copy); });
  });
}

bool connection_handle::send(std::string_view text) const {
  return send(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

bool connection_handle::close() const {
  return post_to(impl_, [](detail::connection_impl& c) {
    c.run_guarded("connection_handle::close", [&] { c.close(); });
  });
}

bool connection_handle::abort() const {
  return post_to(impl_, [](detail::connection_impl& c) {
    c.run_guarded("connection_handle::abort", [&] { c.abort(); });
  });
}

bool connection_handle::dispatch(std::function<void(connection&)> fn) const {
  if (!fn) return false;
  return post_to(impl_, [fn = std::move(fn)](detail::connection_impl& c) {
    c.run_guarded("connection_handle::dispatch", [&] {
      if (c.is_open()) fn(c);
    });
  });
}

bool connection_handle::expired() const noexcept { return impl_.expired(); }

}  // namespace atoll
