#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <asio/any_io_executor.hpp>
#include <cerrno>
#include <cstring>
#include <random>

#include "atoll/error.hpp"
#include "connection_impl.hpp"
#include "listener.hpp"
#include "server_impl.hpp"
#include "tls_context.hpp"

namespace atl {
namespace detail {

namespace {
// Most buffers handed to one sendmsg(2); IOV_MAX is 1024 on Linux, 64 covers any realistic
// queue of small messages while keeping the iovec array on the stack.
constexpr std::size_t max_iov = 64;
// Reads per readable event before yielding to other connections on the thread (fairness):
// one turn of a connection is at most this many receive buffers (256 KiB at the default 64 KiB).
// A peer flooding tiny frames (pings, 1-byte fragments: ~1-4 ms of CPU per MiB) thus holds the
// thread ~1 ms per turn; 16 reads made that 4-16 ms and other clients' p99 followed (issue 9,
// the attack bench). Bulk transfers lose nothing measurable: one more wait per 256 KiB.
constexpr int max_reads_per_event = 4;
// Plaintext handed to one SSL_write: one TLS record.
constexpr std::size_t tls_record = 16 * 1024;
// Bytes read from a file per step when it cannot go through sendfile(2) (TLS), and the most
// one sendfile(2) call is asked for (so one big file does not starve the thread).
constexpr std::size_t file_chunk = 64 * 1024;
constexpr std::size_t sendfile_step = 1024 * 1024;

// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE on a reset connection;
// this one uses send(MSG_NOSIGNAL) and recv(2) on the connection's descriptor.
int bio_write(BIO* b, const char* data, int len) {
  const int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(b)));
  BIO_clear_retry_flags(b);
  const ssize_t n = ::send(fd, data, static_cast<std::size_t>(len), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_write(b);
  }
  return static_cast<int>(n);
}

int bio_read(BIO* b, char* data, int len) {
  const int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(b)));
  BIO_clear_retry_flags(b);
  const ssize_t n = ::recv(fd, data, static_cast<std::size_t>(len), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_read(b);
  }
  return static_cast<int>(n);
}

long bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

const BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "atoll-socket");
    BIO_meth_set_write(m, &bio_write);
    BIO_meth_set_read(m, &bio_read);
    BIO_meth_set_ctrl(m, &bio_ctrl);
    BIO_meth_set_create(m, &bio_create);
    return m;
  }();
  return method;
}

// Scratch space for one TLS record of queued plaintext (the receive buffer may be the span a
// handler is reading while it sends).
std::byte* tls_scratch() {
  thread_local std::array<std::byte, tls_record> buf;
  return buf.data();
}

std::chrono::milliseconds jittered(std::chrono::milliseconds base, std::chrono::milliseconds jitter) {
  if (jitter.count() <= 0) return base;
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> d(0, jitter.count());
  return base + std::chrono::milliseconds(d(rng));
}

}  // namespace

connection_impl::extras::~extras() {
  if (ssl != nullptr) SSL_free(ssl);
}

connection_impl::connection_impl(io_thread& t, listener_state& l, slot s, stream_socket socket,
                                 const compact_address& peer, std::uint64_t id)
    : thread_(t),
      listener_(l),
      counters_(t.counters(l.index())),
      slot_(std::move(s)),
      socket_(std::move(socket)),
      peer_(peer),
      id_(id),
      read_timeout_(l.config().read_timeout) {}

connection_impl::extras& connection_impl::more() {
  if (!extras_) extras_ = std::make_unique<extras>();
  return *extras_;
}

connection_impl::~connection_impl() {
  // Normally finished (and unlinked) already; this covers a connection dropped before it
  // opened. Unlinked connections may be destroyed after the thread's timeouts are gone.
  if (static_cast<timeout_entry&>(*this).linked()) thread_.timeouts().remove(*this);
  thread_.remove(*this);
}

void connection_impl::open(bool after_wait) {
  entry in(*this);
  const listener_config& cfg = listener_.config();
  const bool proxy = cfg.proxy_protocol != proxy_protocol_mode::off;
  if (!proxy && listener_.tls() == nullptr) return open_handler(after_wait);

  // Handshake first (PROXY header, then TLS), bounded by handshake_timeout; the slot is
  // held meanwhile. No handler exists yet: a failure is a rejection, not a close.
  state_ = state::handshaking;
  extras& x = more();
  x.after_wait = after_wait;
  x.proxy_done = !proxy;
  if (const tls_context* ctx = listener_.tls()) {
    x.ssl = ctx->new_session();
    BIO* bio = x.ssl != nullptr ? BIO_new(socket_bio_method()) : nullptr;
    if (bio == nullptr) return reject_unopened(reject_reason::tls_handshake_failed,
                                               errc::tls_handshake_failed);
    BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(socket_.native_handle())));
    SSL_set_bio(x.ssl, bio, bio);
    SSL_set_accept_state(x.ssl);
  }
  self_ = shared_from_this();
  thread_.add(*this);
  timeout_entry::queue = thread_.timeouts().queue_for(cfg.handshake_timeout);
  touch_timeout();
  handshake_step();
}

void connection_impl::open_handler(bool after_wait) {
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
    return reject_unopened(reject_reason::refused, errc::handler_refused);
  }
  handler_ = std::move(h);
  if (!self_) {
    self_ = shared_from_this();
    thread_.add(*this);
  } else {
    thread_.timeouts().remove(*this);  // the handshake's timeout
  }
  if (after_wait) bump(counters_.admitted_after_wait);
  timeout_entry::queue = thread_.timeouts().queue_for(read_timeout_);
  touch_timeout();
  if (listener_.server().has_event_sink()) {
    listener_.server().emit(after_wait
                                ? event::admitted(listener_.index(), id_, peer_.to_endpoint())
                                : event::accepted(listener_.index(), id_, peer_.to_endpoint()));
  }
  if (listener_.config().max_connection_age.count() > 0) start_age_timer();
  invoke("on_open", [&](handler& hd) { hd.on_open(*this); });
  arm_read();
}

void connection_impl::reject_unopened(reject_reason why, std::error_code ec) {
  auto keep = shared_from_this();
  state_ = state::finished;
  thread_.timeouts().remove(*this);
  thread_.remove(*this);
  if (why == reject_reason::handshake_timeout || why == reject_reason::proxy_header_invalid) {
    // A stalled handshake or a peer that is not our proxy: reset, nothing to say to it. (A
    // failed TLS handshake closes normally, so OpenSSL's alert, already written, arrives.)
    linger l{1, 0};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  std::error_code ignored;
  socket_.close(ignored);
  bump(counters_.rejected[static_cast<std::size_t>(why)]);
  if (listener_.server().has_event_sink()) {
    listener_.server().emit(event::rejected(listener_.index(), id_, why, ec, peer_.to_endpoint()));
  }
  extras_.reset();
  slot_.release();
  self_.reset();
}

// ---- handshake: PROXY header, then TLS ------------------------------------------------------

// 1: header read; 0: wait for more; -1: rejected (done here).
int connection_impl::read_proxy_header() {
  extras& x = *extras_;
  const int fd = socket_.native_handle();
  std::byte* buf = thread_.receive_buffer();
  const std::size_t cap = thread_.receive_buffer_size();
  for (int i = 0; i < max_reads_per_event; ++i) {
    // Peek, so that nothing after the header is taken from the socket (it belongs to TLS or
    // to the handler); then consume exactly what belongs to the header.
    const ssize_t n = ::recv(fd, buf, cap, MSG_PEEK);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      reject_unopened(reject_reason::proxy_header_invalid, {errno, std::system_category()});
      return -1;
    }
    if (n == 0) {  // closed before a whole header: a port scan, or not a proxy
      reject_unopened(reject_reason::proxy_header_invalid, errc::proxy_header_invalid);
      return -1;
    }
    const std::size_t have = x.proxy_bytes.size();
    x.proxy_bytes.insert(x.proxy_bytes.end(), buf, buf + n);
    proxy::result r = proxy::parse(x.proxy_bytes, listener_.config().proxy_protocol);
    if (r.status == proxy::status::invalid) {
      listener_.debug_handshake_failure(id_, "PROXY header: " + r.error);
      reject_unopened(reject_reason::proxy_header_invalid, errc::proxy_header_invalid);
      return -1;
    }
    // All peeked bytes belong to the header while it is incomplete; once complete, only
    // its remainder does.
    const std::size_t take = r.status == proxy::status::complete
                                 ? r.hdr.header_length - have
                                 : static_cast<std::size_t>(n);
    std::size_t got = 0;
    while (got < take) {
      const ssize_t m = ::recv(fd, buf, take - got, 0);
      if (m > 0) {
        got += static_cast<std::size_t>(m);
      } else if (m < 0 && errno == EINTR) {
        continue;
      } else {  // cannot happen for peeked bytes, short of a reset in between
        reject_unopened(reject_reason::proxy_header_invalid, errc::proxy_header_invalid);
        return -1;
      }
    }
    bump(counters_.bytes_in, take);
    if (r.status == proxy::status::complete) {
      x.proxy = std::move(r.hdr);
      // Also in peer_, which events report.
      if (const proxy::header* h = proxied()) peer_ = compact_address(h->source.data(), h->source.size());
      x.proxy_bytes = {};
      x.proxy_done = true;
      return 1;
    }
  }
  return 0;
}

// A readiness wait of the handshake phase completed.
void connection_impl::on_handshake_io(std::error_code ec) {
  if (!ec) return handshake_step();
  if (ec == asio::error::operation_aborted) return;
  const bool in_proxy = extras_ && !extras_->proxy_done;
  reject_unopened(in_proxy ? reject_reason::proxy_header_invalid
                           : reject_reason::tls_handshake_failed,
                  ec);
}

void connection_impl::handshake_step() {
  if (state_ != state::handshaking) return;
  extras& x = *extras_;
  if (!x.proxy_done) {
    const int r = read_proxy_header();
    if (r < 0) return;
    if (r == 0) return arm_read();
  }
  if (x.ssl != nullptr) {
    ERR_clear_error();
    const int rc = SSL_do_handshake(x.ssl);
    if (rc != 1) {
      switch (SSL_get_error(x.ssl, rc)) {
        case SSL_ERROR_WANT_READ: return arm_read();
        case SSL_ERROR_WANT_WRITE: return arm_write();
        default: {
          const unsigned long e = ERR_peek_last_error();
          char text[256] = "connection closed";
          if (e != 0) ERR_error_string_n(e, text, sizeof text);
          ERR_clear_error();
          listener_.debug_handshake_failure(id_, std::string("TLS: ") + text);
          return reject_unopened(reject_reason::tls_handshake_failed, errc::tls_handshake_failed);
        }
      }
    }
    describe_session(x.ssl, x.tls);
    tls_ = true;
  }
  open_handler(x.after_wait);
}

const tls_info* connection_impl::tls() const noexcept {
  return tls_ ? &extras_->tls : nullptr;
}

const proxy::header* connection_impl::proxy_header() const noexcept {
  return extras_ && extras_->proxy ? &*extras_->proxy : nullptr;
}

// ---- max connection age ---------------------------------------------------------------------

void connection_impl::start_age_timer() {
  const listener_config& cfg = listener_.config();
  more().age_timer =
      after(jittered(cfg.max_connection_age, cfg.max_connection_age_jitter), [this](connection&) {
        if (state_ != state::open || draining_) return;
        // A goodbye, as at a drain; the default on_shutdown closes after the queued writes.
        aged_ = true;
        invoke("on_shutdown", [&](handler& h) { h.on_shutdown(*this); });
      });
}

// ---- timers (connection::after) -------------------------------------------------------------

connection_timer connection_impl::after(std::chrono::milliseconds delay,
                                        std::function<void(connection&)> fn) {
  auto st = std::make_shared<connection_timer_state>(thread_.executor());
  st->fn = std::move(fn);
  st->timer.expires_after(delay);
  // Weak references only: a timer kept by nobody, or a connection that has ended, makes the
  // completion a no-op. An expired timer whose completion is already queued when it is
  // cancelled sees an empty fn (Asio cannot un-queue it).
  st->timer.async_wait([weak_state = std::weak_ptr<connection_timer_state>(st),
                        weak = weak_from_this()](std::error_code ec) {
    if (ec) return;
    auto s = weak_state.lock();
    if (!s || !s->fn) return;
    auto self = weak.lock();
    if (!self) return;
    auto f = std::move(s->fn);
    s->fn = nullptr;
    self->run_guarded("timer", [&] {
      if (!self->finish_pending_) f(*self);
    });
  });
  return connection_timer(std::move(st));
}

// The PROXY header when it carries the client's addresses (a PROXY command with a family).
const proxy::header* connection_impl::proxied() const noexcept {
  if (!extras_ || !extras_->proxy) return nullptr;
  const proxy::header& h = *extras_->proxy;
  return h.command == proxy::command::proxy && !h.source.empty() ? &h : nullptr;
}

endpoint connection_impl::peer() const noexcept {
  // The PROXY header's source in full (a Unix path too; peer_ keeps only IP addresses).
  if (const proxy::header* h = proxied()) return h->source;
  return peer_.to_endpoint();
}

endpoint connection_impl::local() const noexcept {
  if (const proxy::header* h = proxied(); h && !h->destination.empty()) return h->destination;
  if (peer_.family() == AF_UNIX) return listener_.first_endpoint();
  // Asked for rarely, so not stored: one getsockname(2) per call, none per accept.
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (!socket_.is_open() ||
      ::getsockname(const_cast<stream_socket&>(socket_).native_handle(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return {};
  }
  if (ss.ss_family == AF_UNIX) return listener_.first_endpoint();
  return endpoint(reinterpret_cast<sockaddr*>(&ss), len);
}

std::size_t connection_impl::listener_index() const noexcept { return listener_.index(); }

// ---- reading ------------------------------------------------------------------------------

void connection_impl::arm_read() {
  if (paused_ || finish_pending_) return;
  if (state_ != state::open && state_ != state::handshaking) return;
  arm_read_wait();
}

// A read wait whatever the read state (arm_read checks that first). Also used alone when
// SSL_write needs the peer's bytes to go on, while reading is paused or a close is flushing.
void connection_impl::arm_read_wait() {
  if (read_armed_ || state_ == state::finished) return;
  read_armed_ = true;
  // self_ is set from open to finish: copying it is one atomic increment, cheaper than
  // shared_from_this() (a weak_ptr lock).
  socket_.async_wait(stream_socket::wait_read,
                     [self = self_](std::error_code ec) { self->on_readable(ec); });
}

void connection_impl::on_readable(std::error_code ec) {
  entry in(*this);
  read_armed_ = false;
  if (state_ == state::handshaking) return on_handshake_io(ec);
  if (state_ == state::finished || finish_pending_) return;
  if (ec) {
    if (ec != asio::error::operation_aborted) finish(close_reason::error, ec);
    return;
  }
  if (extras_ && extras_->write_wants_read) {
    extras_->write_wants_read = false;
    flush();
    if (finish_pending_) return;
  }
  if (state_ != state::open || paused_) return;
  if (tls_) return on_readable_tls();
  read_some(false);
}

// The recv loop of a plain connection. `speculative`: called without a readiness event, to
// see whether the next bytes are already there (saves the epoll_ctl of a new wait).
void connection_impl::read_some(bool speculative) {
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
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (speculative && i == 0 && spec_hits_ > 0) --spec_hits_;
      if (i == 0 || !speculative) return arm_read();
      break;
    }
    if (errno == EINTR) continue;
    fail(errno);
    return;
  }
  if (speculative && spec_hits_ < 3) ++spec_hits_;
  rearm_read();
}

// After a read, wait for the next bytes. Waiting (async_wait) costs an epoll_ctl(MOD) per
// message in Asio 1.22's reactor; when the peer's next bytes are usually there already (many
// busy connections), a posted speculative recv is cheaper. A small per-connection score
// chooses, and a miss-only connection still probes every 16th time.
void connection_impl::rearm_read() {
  if (read_armed_ || paused_ || state_ != state::open || finish_pending_) return;
  if (spec_hits_ == 0 && (++spec_probe_ & 15) != 0) return arm_read();
  post_read();
}

// Reads without waiting for readiness, after the other work queued on the thread: a
// speculative recv on a plain connection, or the bytes OpenSSL may already hold (which epoll
// cannot report) on a TLS one.
void connection_impl::post_read() {
  read_armed_ = true;
  asio::post(thread_.executor(), [self = self_] {
    entry in(*self);
    self->read_armed_ = false;
    if (self->state_ != state::open || self->paused_ || self->finish_pending_) return;
    if (self->tls_) return self->on_readable_tls();
    self->read_some(true);
  });
}

void connection_impl::on_readable_tls() {
  SSL* ssl = extras_->ssl;
  std::byte* buf = thread_.receive_buffer();
  const int cap = static_cast<int>(std::min<std::size_t>(thread_.receive_buffer_size(), 1 << 30));
  for (int i = 0; i < max_reads_per_event; ++i) {
    if (state_ != state::open || paused_ || finish_pending_) return;
    ERR_clear_error();
    errno = 0;  // SSL_ERROR_SYSCALL with errno 0 means EOF
    const int n = SSL_read(ssl, buf, cap);
    if (n > 0) {
      const auto len = static_cast<std::size_t>(n);
      bump(counters_.bytes_in, len);
      touch_timeout();
      invoke("on_data", [&](handler& h) { h.on_data(*this, {buf, len}); });
      continue;  // records are at most 16 KiB: read on until OpenSSL wants the socket
    }
    switch (SSL_get_error(ssl, n)) {
      case SSL_ERROR_WANT_READ: return arm_read();
      case SSL_ERROR_WANT_WRITE:  // e.g. answering a key update while the socket is full
        extras_->read_wants_write = true;
        return arm_write();
      case SSL_ERROR_ZERO_RETURN: return on_peer_eof();  // close_notify
      case SSL_ERROR_SYSCALL:
        if (errno == 0) return on_peer_eof();  // EOF without close_notify
        return fail(errno);
      default:
        ERR_clear_error();
        return finish(close_reason::error, std::error_code(EPROTO, std::system_category()));
    }
  }
  // Yield to the other connections. OpenSSL may hold decrypted bytes epoll knows nothing
  // of, so come back by a post rather than by waiting for the socket.
  if (state_ != state::open || paused_ || finish_pending_ || read_armed_) return;
  post_read();
}

void connection_impl::on_peer_eof() {
  if (!write_pending()) {
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
  if (state_ == state::open && !write_pending()) thread_.timeouts().remove(*this);
}

void connection_impl::resume_reading() {
  if (!paused_) return;
  paused_ = false;
  if (state_ != state::open) return;
  touch_timeout();
  if (tls_ && !read_armed_ && !finish_pending_) return post_read();  // OpenSSL may hold bytes
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
  entry in(*this);
  if (state_ == state::finished || finish_pending_) return;
  if (state_ == state::handshaking) {
    return reject_unopened(reject_reason::handshake_timeout, errc::handshake_timeout);
  }
  if (state_ == state::closing) {
    // close() could not flush within the timeout: the peer is not reading. A slow consumer
    // dropped with a goodbye (close_with) stays counted as one.
    reset_on_close_ = true;
    if (closing_reason_ == close_reason::slow_consumer) {
      finish(close_reason::slow_consumer, errc::slow_consumer);
    } else {
      finish(close_reason::timeout, errc::read_timeout);
    }
    return;
  }
  in_timeout_ = true;
  invoke("on_timeout", [&](handler& h) { h.on_timeout(*this); });
  in_timeout_ = false;
  // The handler kept the connection: give it another full timeout.
  if (state_ == state::open && !finish_pending_ && (!paused_ || write_pending()) &&
      !static_cast<timeout_entry&>(*this).linked()) {
    touch_timeout();
  }
}

// ---- writing ------------------------------------------------------------------------------

std::size_t connection_impl::buffered_amount() const noexcept {
  return queue_.size() + (extras_ ? extras_->after_bytes : 0);
}

bool connection_impl::write_pending() const noexcept {
  return !queue_.empty() || (extras_ && !extras_->files.empty());
}

send_result connection_impl::send(std::span<const std::byte> data) {
  if (state_ != state::open || finish_pending_ || write_shut_ || shutdown_write_pending_) {
    return send_result::dropped;
  }
  const listener_config& cfg = listener_.config();
  // The limit applies to what was queued before this send (uWebSockets' rule): one message
  // larger than the limit still goes out whole; a peer that lets messages pile up is dropped.
  if (buffered_amount() > cfg.max_write_buffer) {
    reset_on_close_ = true;
    finish(close_reason::slow_consumer, errc::slow_consumer);
    return send_result::dropped;
  }
  if (!data.empty() && !write_or_queue(data)) return send_result::dropped;
  if (buffered_amount() > cfg.write_low_water) {
    want_writable_ = true;
    return send_result::backpressure;
  }
  return send_result::ok;
}

// Writes what the kernel takes now and queues the rest (in order behind a queued file). False:
// the connection failed (finish is pending).
bool connection_impl::write_or_queue(std::span<const std::byte> data) {
  const bool behind_file = extras_ && !extras_->files.empty();
  if (queue_.empty() && !behind_file && !tls_) {
    const ssize_t n = ::send(socket_.native_handle(), data.data(), data.size(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(errno);
        return false;
      }
    } else {
      bump(counters_.bytes_out, static_cast<std::size_t>(n));
      data = data.subspan(static_cast<std::size_t>(n));
      if (data.empty()) return true;
    }
  }
  if (behind_file) {
    // After a file: kept in order behind it.
    auto& after = extras_->files.back().after;
    after.insert(after.end(), data.begin(), data.end());
    extras_->after_bytes += data.size();
  } else {
    queue_.append(data);
    if (tls_) {
      if (!write_armed_ && !extras_->write_wants_read && !tls_write_queued()) return false;
    } else {
      arm_write();
    }
  }
  if (paused_ && !static_cast<timeout_entry&>(*this).linked()) touch_timeout();
  return true;
}

std::size_t connection_impl::max_write_buffer() const noexcept {
  return listener_.config().max_write_buffer;
}

std::error_code connection_impl::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (state_ != state::open || finish_pending_ || write_shut_ || shutdown_write_pending_) {
    return errc::shutting_down;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {errno, std::system_category()};
  if (!S_ISREG(st.st_mode)) return std::make_error_code(std::errc::invalid_argument);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (offset > size || length > size - offset) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  if (length == 0) length = size - offset;
  if (length == 0) return {};
  unique_fd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup) return {errno, std::system_category()};
  more().files.push_back(file_segment{std::move(dup), offset, length, {}});
  if (!write_armed_) flush();
  return {};
}

void connection_impl::arm_write() {
  if (write_armed_ || state_ == state::finished) return;
  write_armed_ = true;
  socket_.async_wait(stream_socket::wait_write,
                     [self = self_](std::error_code ec) { self->on_writable_ready(ec); });
}

void connection_impl::on_writable_ready(std::error_code ec) {
  entry in(*this);
  write_armed_ = false;
  if (state_ == state::handshaking) return on_handshake_io(ec);
  if (state_ == state::finished || finish_pending_) return;
  if (ec) {
    if (ec != asio::error::operation_aborted) finish(close_reason::error, ec);
    return;
  }
  if (extras_ && extras_->read_wants_write) {
    extras_->read_wants_write = false;
    if (!read_armed_) on_readable({});
    if (state_ == state::finished || finish_pending_) return;
  }
  flush();
}

// Writes queued plaintext through OpenSSL, one record per SSL_write, until the queue is empty
// or the socket is full (then a write wait is armed). False: the connection failed.
bool connection_impl::tls_write_queued() {
  SSL* ssl = extras_->ssl;
  while (!queue_.empty()) {
    // After SSL_ERROR_WANT_WRITE OpenSSL must be called again with the same bytes (at least
    // as many): the front of the queue is unchanged until a write succeeds, so it is.
    const std::size_t want = std::min(queue_.size(), tls_record);
    iovec iov[max_iov]{};
    const std::size_t count = queue_.gather(iov, max_iov);
    const void* p = iov[0].iov_base;
    if (iov[0].iov_len < want) {
      std::byte* scratch = tls_scratch();
      std::size_t copied = 0;
      for (std::size_t i = 0; i < count && copied < want; ++i) {
        const std::size_t k = std::min(iov[i].iov_len, want - copied);
        std::memcpy(scratch + copied, iov[i].iov_base, k);
        copied += k;
      }
      p = scratch;
    }
    ERR_clear_error();
    const int n = SSL_write(ssl, p, static_cast<int>(want));
    if (n > 0) {
      bump(counters_.bytes_out, static_cast<std::size_t>(n));
      queue_.consume(static_cast<std::size_t>(n));
      continue;
    }
    switch (SSL_get_error(ssl, n)) {
      case SSL_ERROR_WANT_WRITE:
        arm_write();
        return true;
      case SSL_ERROR_WANT_READ:
        // The peer's bytes are needed first (e.g. a renegotiation): waiting for writability
        // would spin, the socket being writable. on_readable retries the write.
        extras_->write_wants_read = true;
        arm_read_wait();
        return true;
      case SSL_ERROR_SYSCALL:
        fail(errno != 0 ? errno : EPIPE);
        return false;
      default:
        ERR_clear_error();
        finish(close_reason::error, std::error_code(EPROTO, std::system_category()));
        return false;
    }
  }
  return true;
}

// Sends (or, under TLS, reads into the queue) the front file. 1: progress (a chunk queued,
// or the file done and its trailing bytes queued); 0: the socket is full; -1: failed.
int connection_impl::flush_files() {
  file_segment& f = extras_->files.front();
  if (f.remaining == 0) {
    extras_->after_bytes -= f.after.size();
    if (!f.after.empty()) queue_.append(f.after);
    extras_->files.pop_front();
    return 1;
  }
  if (tls_) {
    thread_local std::array<std::byte, file_chunk> chunk;
    for (;;) {
      const ssize_t n = ::pread(f.fd.get(), chunk.data(),
                                static_cast<std::size_t>(std::min<std::uint64_t>(f.remaining, file_chunk)),
                                static_cast<off_t>(f.offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // n == 0: the file was truncated under us
        fail(n == 0 ? EIO : errno);
        return -1;
      }
      queue_.append({chunk.data(), static_cast<std::size_t>(n)});
      f.offset += static_cast<std::uint64_t>(n);
      f.remaining -= static_cast<std::uint64_t>(n);
      return 1;
    }
  }
  const int sock = socket_.native_handle();
  while (f.remaining > 0) {
    off_t off = static_cast<off_t>(f.offset);
    const ssize_t n = ::sendfile(
        sock, f.fd.get(), &off,
        static_cast<std::size_t>(std::min<std::uint64_t>(f.remaining, sendfile_step)));
    if (n > 0) {
      bump(counters_.bytes_out, static_cast<std::size_t>(n));
      f.offset += static_cast<std::uint64_t>(n);
      f.remaining -= static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      arm_write();
      return 0;
    }
    fail(n == 0 ? EIO : errno);
    return -1;
  }
  return 1;
}

void connection_impl::flush() {
  const int fd = socket_.native_handle();
  for (;;) {
    if (tls_) {
      if (!tls_write_queued()) return;
    } else {
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
    }
    if (!queue_.empty() || !extras_ || extras_->files.empty()) break;
    const int r = flush_files();
    if (r < 0) return;
    if (r == 0) break;
  }
  after_drain();
}

// Called whenever the queue may have shrunk: finishes a close, a shutdown_write, or tells the
// handler it may write again.
void connection_impl::after_drain() {
  if (write_pending()) {
    arm_write();
    if (want_writable_ && buffered_amount() <= listener_.config().write_low_water &&
        state_ == state::open) {
      want_writable_ = false;
      invoke("on_writable", [&](handler& h) { h.on_writable(*this); });
    }
    return;
  }
  if (paused_ && state_ == state::open) thread_.timeouts().remove(*this);
  if (shutdown_write_pending_) {
    shutdown_write_pending_ = false;
    shut_write_now();
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

void connection_impl::shut_write_now() {
  write_shut_ = true;
  if (tls_) {
    ERR_clear_error();
    SSL_shutdown(extras_->ssl);  // close_notify; reading goes on
  }
  ::shutdown(socket_.native_handle(), SHUT_WR);
}

void connection_impl::shutdown_write() {
  if (state_ != state::open || write_shut_ || shutdown_write_pending_) return;
  if (!write_pending()) {
    shut_write_now();
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
    case close_reason::slow_consumer: return errc::slow_consumer;
    case close_reason::local_close:
      if (aged_) return errc::max_age_reached;
      return {};
    default: return {};
  }
}

void connection_impl::close() {
  if (state_ != state::open || finish_pending_) return;
  close_after_queue(reason_for_close());
}

void connection_impl::close_with(std::span<const std::byte> last, close_reason why) {
  if (state_ != state::open || finish_pending_) return;
  if (!last.empty() && !write_shut_ && !shutdown_write_pending_ && !write_or_queue(last)) return;
  close_after_queue(why);
}

// Stops reading and finishes once the queue has drained (now, if it is empty).
void connection_impl::close_after_queue(close_reason why) {
  state_ = state::closing;
  closing_reason_ = why;
  if (!write_pending() && !write_armed_) {
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
  if (extras_) extras_->files.clear();
  finish(close_reason::local_close, errc::aborted);
}

void connection_impl::begin_shutdown() {
  entry in(*this);
  if (state_ == state::handshaking) {
    return reject_unopened(reject_reason::shutdown, errc::shutting_down);
  }
  if (state_ == state::finished || draining_) return;
  draining_ = true;
  if (state_ == state::open) invoke("on_shutdown", [&](handler& h) { h.on_shutdown(*this); });
}

void connection_impl::force_close() {
  entry in(*this);
  if (state_ == state::handshaking) {
    return reject_unopened(reject_reason::shutdown, errc::shutting_down);
  }
  if (state_ == state::finished) return;
  reset_on_close_ = true;
  queue_.clear();
  if (extras_) extras_->files.clear();
  finish(close_reason::shutdown, errc::shutting_down);
}

void connection_impl::fail(int err) {
  // The peer went away (reset, or we wrote after its close): not a server-side error.
  const bool by_peer = err == ECONNRESET || err == EPIPE;
  finish(by_peer ? close_reason::peer_closed : close_reason::error,
         std::error_code(err, std::system_category()));
}

// Never tears down here: the end of the outermost entry does (settle), so no code that runs
// inside the connection — a handler, a module's timer, atoll's own read loop — outlives what
// it is running in.
void connection_impl::finish(close_reason r, std::error_code ec) {
  if (state_ == state::finished || finish_pending_) return;
  finish_pending_ = true;
  pending_reason_ = r;
  pending_ec_ = ec;
  if (depth_ == 0) {
    // Called from outside any entry (user code on the io thread holding a connection&):
    // settle from posted work, itself an entry.
    asio::post(thread_.executor(), [self = shared_from_this()] { entry in(*self); });
  }
}

void connection_impl::do_finish(close_reason r, std::error_code ec) {
  auto keep = self_ ? self_ : shared_from_this();
  state_ = state::finished;
  thread_.timeouts().remove(*this);
  thread_.remove(*this);
  if (reset_on_close_) {
    // RST instead of FIN; with a zero linger time close(2) never blocks.
    linger l{1, 0};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  } else if (tls_ && !write_shut_) {
    ERR_clear_error();
    SSL_shutdown(extras_->ssl);  // close_notify, one non-blocking attempt
  }
  if (extras_) extras_->age_timer.cancel();
  std::error_code ignored;
  socket_.close(ignored);  // also cancels the pending waits
  queue_.clear();
  if (extras_) {
    extras_->files.clear();
    extras_->after_bytes = 0;
  }
  bump(counters_.closed[static_cast<std::size_t>(r)]);
  if (listener_.server().has_event_sink()) {
    listener_.server().emit(event::closed(listener_.index(), id_, r, ec, peer_.to_endpoint()));
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
  extras_.reset();
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
void connection::close_with(std::span<const std::byte> last, close_reason why) {
  impl().close_with(last, why);
}
std::size_t connection::max_write_buffer() const noexcept { return impl().max_write_buffer(); }
connection_timer connection::after(std::chrono::milliseconds delay,
                                   std::function<void(connection&)> fn) {
  return impl().after(delay, std::move(fn));
}

connection_timer& connection_timer::operator=(connection_timer&& other) noexcept {
  if (this != &other) {
    cancel();
    state_ = std::move(other.state_);
  }
  return *this;
}

connection_timer::~connection_timer() { cancel(); }

void connection_timer::cancel() noexcept {
  if (!state_) return;
  state_->fn = nullptr;
  state_->timer.cancel();
}

bool connection_timer::pending() const noexcept { return state_ && state_->fn != nullptr; }
void connection::pause_reading() { impl().pause_reading(); }
void connection::resume_reading() { impl().resume_reading(); }
bool connection::reading_paused() const noexcept { return impl().reading_paused(); }
void connection::set_read_timeout(std::chrono::milliseconds t) { impl().set_read_timeout(t); }
std::chrono::milliseconds connection::read_timeout() const noexcept {
  return impl().read_timeout();
}
endpoint connection::peer() const noexcept { return impl().peer(); }
endpoint connection::local() const noexcept { return impl().local(); }
std::error_code connection::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  return impl().send_file(fd, offset, length);
}
std::error_code connection::send_file(const std::string& path, std::uint64_t offset,
                                      std::uint64_t length) {
  detail::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {errno, std::system_category()};
  return impl().send_file(fd.get(), offset, length);  // duplicates it
}
const tls_info* connection::tls() const noexcept { return impl().tls(); }
const proxy::header* connection::proxy_header() const noexcept { return impl().proxy_header(); }
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

}  // namespace atl
