#include "attempts.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace atoll_load {

namespace {
int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}
}  // namespace

// ---- attempt -----------------------------------------------------------------------------

attempt* attempt_pool::start(const attempt_spec& spec, attempt_listener& l, int tag,
                             std::int64_t now) {
  attempt* a;
  if (free_.empty()) {
    all_.push_back(std::make_unique<attempt>());
    a = all_.back().get();
  } else {
    a = free_.back();
    free_.pop_back();
  }
  a->pool_ = this;
  a->spec_ = &spec;
  a->listener_ = &l;
  a->tag = tag;
  a->started_ = now;
  a->connected_ = 0;
  a->deadline_ = now + spec.timeout_ns;
  a->got_ = 0;
  a->done_ = false;
  a->live_index_ = live_.size();
  live_.push_back(a);

  int err = 0;
  a->fd_ = spec.from->start_connect(*spec.to, err);
  if (a->fd_ < 0) {
    a->finish(classify_errno(err), now_ns());
    return a;
  }
  loop_.add(a->fd_, EPOLLOUT, a);
  return a;
}

void attempt_pool::expire(std::int64_t now) {
  // Walk backwards: finish() swap-removes from live_.
  for (std::size_t i = live_.size(); i-- > 0;) {
    if (i < live_.size() && live_[i]->deadline_ <= now) live_[i]->finish(outcome::timed_out, now);
  }
}

void attempt_pool::collect() {
  for (attempt* a : retired_) free_.push_back(a);
  retired_.clear();
}

void attempt_pool::retire(attempt& a) {
  attempt* last = live_.back();
  live_[a.live_index_] = last;
  last->live_index_ = a.live_index_;
  live_.pop_back();
  retired_.push_back(&a);
}

void attempt::finish(outcome o, std::int64_t now) {
  if (done_) return;
  done_ = true;
  if (fd_ >= 0) {
    ::close(fd_);  // also removes it from epoll
    fd_ = -1;
  }
  pool_->retire(*this);
  listener_->on_done(*this, o, now);
}

void attempt::on_connect_ready(std::int64_t now) {
  if (const int err = socket_error(fd_); err != 0) return finish(classify_errno(err), now);
  connected_ = now;
  listener_->on_connected(*this, now);
  if (done_) return;
  const std::string& req = spec_->request;
  // A few bytes always fit an empty send buffer: one send, never a partial write.
  if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return finish(classify_errno(errno), now_ns());
  }
  pool_->loop_.modify(fd_, EPOLLIN | EPOLLRDHUP, this);
}

void attempt::on_event(std::uint32_t events) {
  if (done_) return;
  const std::int64_t now = now_ns();
  if (!connected()) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connect_ready(now);
    return;
  }
  char buf[512];
  for (int i = 0; i < 4; ++i) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      got_ += static_cast<std::size_t>(n);
      if (got_ >= spec_->reply_size) return finish(outcome::served, now);
      continue;
    }
    if (n == 0) return finish(outcome::closed_by_server, now);
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EINTR) continue;
    return finish(classify_errno(errno), now);
  }
}

// ---- held_conn ---------------------------------------------------------------------------

bool held_conn::open(std::int64_t now) {
  int err = 0;
  fd_ = from_.start_connect(to_, err);
  opened_ = now;
  if (fd_ < 0) {
    state_ = state::lost;
    lost_because_ = classify_errno(err);
    return false;
  }
  state_ = state::connecting;
  loop_.add(fd_, EPOLLOUT, this);
  return true;
}

void held_conn::send_probe(std::int64_t now) {
  probe_sent_ = now;
  const char byte = 'h';
  if (io_.send(&byte, 1) != 1) lose(classify_errno(errno));
}

bool held_conn::check(std::int64_t now) {
  if (state_ != state::idle || upgrade_ != nullptr) return false;
  state_ = state::checking;
  send_probe(now);
  return state_ == state::checking;
}

void held_conn::close() noexcept {
  io_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void held_conn::lose(outcome why) {
  state_ = state::lost;
  lost_because_ = why;
  std::string().swap(upgrade_reply_);
  close();
}

void held_conn::verify(std::int64_t now) {
  if (upgrade_ == nullptr) {
    state_ = state::verifying;
    return send_probe(now);
  }
  state_ = state::upgrading;
  probe_sent_ = now;
  // A few hundred bytes always fit an empty send buffer: one send, never a partial write.
  const std::string& req = upgrade_->handshake;
  if (io_.send(req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    lose(classify_errno(errno));
  }
}

void held_conn::read_upgrade_reply(std::int64_t now) {
  char buf[512];
  for (int i = 0; i < 8; ++i) {
    const ssize_t n = io_.recv(buf, sizeof buf);
    if (n == 0) return lose(outcome::closed_by_server);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      return lose(classify_errno(errno));
    }
    upgrade_reply_.append(buf, static_cast<std::size_t>(n));
    std::size_t size = 0;
    switch (check_handshake_reply(*upgrade_, upgrade_reply_, size)) {
      case handshake_reply::incomplete:
        continue;
      case handshake_reply::refused:
        return lose(outcome::other_error);
      case handshake_reply::accepted:
        break;
    }
    // Anything after the reply is the server's (frames): read and dropped while idle, as
    // held_conn does with any unasked-for byte.
    rtt_.record(now - probe_sent_);
    ++answered_;
    std::string().swap(upgrade_reply_);
    state_ = state::idle;
    return;
  }
}

void held_conn::on_event(std::uint32_t events) {
  if (state_ == state::lost || fd_ < 0) return;
  const std::int64_t now = now_ns();
  if (state_ == state::connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (const int err = socket_error(fd_); err != 0) return lose(classify_errno(err));
    if (!io_.attach(fd_, tls_)) return lose(classify_errno(errno));
    loop_.modify(fd_, EPOLLIN | EPOLLRDHUP, this);
    if (io_.tls()) {
      state_ = state::tls_handshaking;
      return tls_step(now);
    }
    return verify(now);
  }
  if (state_ == state::tls_handshaking) return tls_step(now);
  if (state_ == state::upgrading) return read_upgrade_reply(now);
  char buf[64];
  const ssize_t n = io_.recv(buf, sizeof buf);
  if (n > 0) {
    if (state_ == state::verifying || state_ == state::checking) {
      rtt_.record(now - probe_sent_);
      ++answered_;
      state_ = state::idle;
    }
    return;
  }
  if (n == 0) return lose(outcome::closed_by_server);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
  lose(classify_errno(errno));
}

void held_conn::tls_step(std::int64_t now) {
  const int r = io_.handshake();
  if (r < 0) return lose(classify_errno(errno));
  if (r == 0) {
    loop_.modify(fd_, EPOLLIN | EPOLLRDHUP | (io_.blocked_on_write() ? EPOLLOUT : 0u), this);
    return;
  }
  loop_.modify(fd_, EPOLLIN | EPOLLRDHUP, this);
  verify(now);
}

}  // namespace atoll_load
