#include "acceptor.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "io_thread.hpp"
#include "listener.hpp"
#include "sys_calls.hpp"

namespace atl::detail {

namespace {

// Connections taken per readiness event before yielding to the rest of the loop.
constexpr int max_accepts_per_event = 64;

// accept(2): "Linux accept() passes already-pending network errors on the new socket as an
// error code from accept() ... the application should treat them like EAGAIN by retrying".
bool is_transient(int err) noexcept {
  switch (err) {
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case ETIMEDOUT:
    case EPERM:  // firewall rules forbid the connection
      return true;
    default:
      return false;
  }
}

}  // namespace

acceptor::acceptor(io_thread& t, listener_state& l, int listen_fd, int family)
    : thread_(t),
      listener_(l),
      socket_(t.executor()),
      backoff_timer_(t.executor()) {
  const int protocol = family == AF_UNIX ? 0 : IPPROTO_TCP;
  std::error_code ec;
  socket_.assign(stream_protocol(family, protocol), listen_fd, ec);
  if (ec) {
    sys::current().close(listen_fd);
    throw std::system_error(ec, "atoll: cannot register listen socket");
  }
}

void acceptor::start() { arm(); }

void acceptor::stop() noexcept {
  stopped_ = true;
  std::error_code ignored;
  backoff_timer_.cancel();
  socket_.close(ignored);
}

void acceptor::arm() {
  if (stopped_) return;
  socket_.async_wait(socket_acceptor::wait_read,
                     [self = shared_from_this()](std::error_code ec) { self->on_ready(ec); });
}

void acceptor::on_ready(std::error_code ec) {
  if (stopped_) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    listener_.count_accept_error(ec.value());
    back_off();
    return;
  }
  const int lfd = socket_.native_handle();
  for (int i = 0; i < max_accepts_per_event; ++i) {
    sockaddr_storage addr;
    socklen_t len = sizeof addr;
    const int fd = sys::current().accept4(lfd, reinterpret_cast<sockaddr*>(&addr), &len,
                                          SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (err == EINTR) continue;
      listener_.count_accept_error(err);
      if (is_transient(err)) continue;
      if (err == EMFILE || err == ENFILE) shed();
      // EMFILE/ENFILE, ENOBUFS/ENOMEM, or something unexpected: pause instead of spinning.
      back_off();
      return;
    }
    backoff_ = std::chrono::milliseconds(0);
    listener_.on_accepted(thread_, unique_fd(fd), reinterpret_cast<sockaddr*>(&addr), len);
    if (stopped_) return;
  }
  arm();
}

// Out of descriptors: the clients in the backlog cannot be served now. Free the reserve
// descriptor, accept and close them one by one (each gets a prompt FIN/RST instead of hanging
// in the backlog until it times out), then take the reserve back.
void acceptor::shed() {
  int spare = thread_.take_spare_fd();
  if (spare < 0) {
    // The reserve was lost earlier (another thread took the slot before we reopened it):
    // try again now, or shedding would stop for good.
    thread_.restore_spare_fd();
    spare = thread_.take_spare_fd();
    if (spare < 0) return;
  }
  sys::current().close(spare);
  const int lfd = socket_.native_handle();
  for (int i = 0; i < max_accepts_per_event; ++i) {
    sockaddr_storage addr;
    socklen_t len = sizeof addr;
    const int fd = sys::current().accept4(lfd, reinterpret_cast<sockaddr*>(&addr), &len,
                                          SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) listener_.count_accept_error(errno);
      break;
    }
    listener_.reject(thread_.counters(listener_.index()), unique_fd(fd), reject_reason::emfile,
                     compact_address(reinterpret_cast<sockaddr*>(&addr), len));
  }
  thread_.restore_spare_fd();
}

void acceptor::back_off() {
  backoff_ = backoff_.count() == 0 ? min_backoff : std::min(backoff_ * 2, max_backoff);
  backoff_timer_.expires_after(backoff_);
  backoff_timer_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (ec || self->stopped_) return;
    self->arm();
  });
}

}  // namespace atl::detail
