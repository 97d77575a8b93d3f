#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/any_io_executor.hpp>
#include <cerrno>
#include <random>

#include "atoll/error.hpp"
#include "connection_impl.hpp"
#include "handshake.hpp"
#include "tls_context.hpp"

namespace atl {
namespace detail {

namespace {

std::chrono::milliseconds jittered(std::chrono::milliseconds base, std::chrono::milliseconds jitter) {
  if (jitter.count() <= 0) return base;
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> d(0, jitter.count());
  return base + std::chrono::milliseconds(d(rng));
}

// The PROXY header when it carries the client's addresses (a PROXY command with a family).
const proxy::header* proxied(const std::optional<proxy::header>& h) noexcept {
  return h && h->command == proxy::command::proxy && !h->source.empty() ? &*h : nullptr;
}

}  // namespace

connection_impl::extras::extras() = default;
connection_impl::extras::~extras() = default;

connection_impl::connection_impl(io_thread& t, connection_context& l, slot s, unique_fd fd,
                                 const compact_address& peer, std::uint64_t id)
    : thread_(t),
      context_(l),
      counters_(t.counters(l.index())),
      slot_(std::move(s)),
      peer_(peer),
      id_(id),
      read_timeout_(l.config().read_timeout),
      fd_(std::move(fd)) {}

connection_impl::extras& connection_impl::more() {
  if (!extras_) extras_ = std::make_unique<extras>();
  return *extras_;
}

connection_impl::~connection_impl() {
  // Normally finished (and unlinked) already; this covers a connection dropped before it
  // opened. Unlinked connections may be destroyed after the thread's timeouts are gone.
  if (static_cast<timeout_entry&>(*this).linked()) thread_.timeouts().remove(*this);
  thread_.remove(*this);
  close_descriptor();
}

// Owned by itself, filed in the thread's registry and in its readiness set. False: the set
// refused the descriptor (rejected; nothing else to do).
bool connection_impl::attach() {
  std::error_code ec;
  key_ = thread_.readiness().add(fd_.get(), this, ec);
  if (ec) {
    context_.warn_handler_exception(id_, "readiness set", ec.message().c_str());
    reject_unopened(reject_reason::refused, ec);
    return false;
  }
  self_ = shared_from_this();
  thread_.add(*this);
  return true;
}

// Leaves the readiness set (no system call: the close removes the kernel's registration) and
// closes the socket.
void connection_impl::close_descriptor() noexcept {
  if (key_ != 0) thread_.readiness().remove(std::exchange(key_, 0));
  fd_.reset();
  ready_ = 0;
}

void connection_impl::open(bool after_wait) {
  entry in(*this);
  const listener_config& cfg = context_.config();
  const tls_context* ctx = context_.tls();
  if (cfg.proxy_protocol == proxy_protocol_mode::off && ctx == nullptr) {
    return open_handler(after_wait);
  }

  // Handshake first (PROXY header, then TLS), bounded by handshake_timeout; the slot is
  // held meanwhile. No handler exists yet: a failure is a rejection, not a close.
  phase_ = phase::handshaking;
  extras& x = more();
  x.after_wait = after_wait;
  std::unique_ptr<tls_transport> tls;
  if (ctx != nullptr) {
    tls = std::make_unique<tls_transport>(ctx->new_session(), fd_.get());
    if (!tls->valid()) {
      return reject_unopened(reject_reason::tls_handshake_failed, errc::tls_handshake_failed);
    }
  }
  x.stage = std::make_unique<handshake_stage>(cfg.proxy_protocol, std::move(tls));
  if (!attach()) return;
  timeout_entry::queue = thread_.timeouts().queue_for(cfg.handshake_timeout);
  touch_timeout();
  handshake_step();
}

void connection_impl::open_handler(bool after_wait) {
  phase_ = phase::open;
  std::unique_ptr<handler> h;
  try {
    h = context_.factory()(*this);
  } catch (const std::exception& e) {
    context_.warn_handler_exception(id_, "handler_factory", e.what());
  } catch (...) {
    context_.warn_handler_exception(id_, "handler_factory", "unknown exception");
  }
  if (!h) {
    // Refused: no handler ever saw it, so no on_close; counted as a rejection.
    return reject_unopened(reject_reason::refused, errc::handler_refused);
  }
  if (!self_) {
    if (!attach()) return;
  } else {
    thread_.timeouts().remove(*this);  // the handshake's timeout
  }
  handler_ = std::move(h);
  if (after_wait) bump(counters_.admitted_after_wait);
  timeout_entry::queue = thread_.timeouts().queue_for(read_timeout_);
  touch_timeout();
  if (context_.has_event_sink()) {
    context_.emit(after_wait
                                ? event::admitted(context_.index(), id_, peer_.to_endpoint())
                                : event::accepted(context_.index(), id_, peer_.to_endpoint()));
  }
  if (context_.config().max_connection_age.count() > 0) start_age_timer();
  invoke("on_open", [&](handler& hd) { hd.on_open(*this); });
  arm_read();
}

void connection_impl::reject_unopened(reject_reason why, std::error_code ec) {
  auto keep = shared_from_this();
  phase_ = phase::finished;
  thread_.timeouts().remove(*this);
  thread_.remove(*this);
  if (why == reject_reason::handshake_timeout || why == reject_reason::proxy_header_invalid) {
    // A stalled handshake or a peer that is not our proxy: reset, nothing to say to it. (A
    // failed TLS handshake closes normally, so OpenSSL's alert, already written, arrives.)
    linger l{1, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close_descriptor();
  bump(counters_.rejected[static_cast<std::size_t>(why)]);
  if (context_.has_event_sink()) {
    context_.emit(event::rejected(context_.index(), id_, why, ec, peer_.to_endpoint()));
  }
  transport_ = &plain_transport::instance();
  extras_.reset();
  slot_.release();
  // Inside an entry (a readiness event names the connection by key and holds no reference),
  // the last reference goes when the outermost entry ends (settle).
  if (depth_ == 0) self_.reset();
}

// ---- handshake stage ------------------------------------------------------------------------

void connection_impl::handshake_step() {
  if (phase_ != phase::handshaking) return;
  extras& x = *extras_;
  const handshake_stage::result r =
      x.stage->step(fd_.get(), {thread_.receive_buffer(), thread_.receive_buffer_size()});
  if (r.bytes_in > 0) bump(counters_.bytes_in, r.bytes_in);
  if (r.proxy_completed) {
    // Also in peer_, which events report.
    if (const proxy::header* h = detail::proxied(x.stage->proxy())) {
      peer_ = compact_address(h->source.data(), h->source.size());
    }
  }
  using kind = handshake_stage::result::kind;
  switch (r.what) {
    // The stage read or wrote until the socket would block (or took all there was): the next
    // edge brings it back.
    case kind::want_read: ready_ &= ~ready_read; return arm_read();
    case kind::want_write: ready_ &= ~ready_write; return arm_write();
    case kind::yield:  // more may be there: come back by posted work
      ready_ |= ready_read;
      return arm_read();
    case kind::rejected:
      if (!r.debug.empty()) context_.debug_handshake_failure(id_, r.debug);
      return reject_unopened(r.why, r.ec);
    case kind::done: break;
  }
  // Handed over: the stage is gone before on_open.
  x.proxy = x.stage->take_proxy();
  x.tls = x.stage->take_tls();
  x.stage.reset();
  if (x.tls) transport_ = x.tls.get();
  open_handler(x.after_wait);
}

const tls_info* connection_impl::tls() const noexcept { return transport_->tls(); }

const proxy::header* connection_impl::proxy_header() const noexcept {
  return extras_ && extras_->proxy ? &*extras_->proxy : nullptr;
}

// ---- max connection age ---------------------------------------------------------------------

void connection_impl::start_age_timer() {
  const listener_config& cfg = context_.config();
  more().age_timer =
      after(jittered(cfg.max_connection_age, cfg.max_connection_age_jitter), [this](connection&) {
        if (phase_ != phase::open || draining_) return;
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
      if (self->phase_ < phase::finishing) f(*self);
    });
  });
  return connection_timer(std::move(st));
}

const proxy::header* connection_impl::proxied() const noexcept {
  return extras_ ? detail::proxied(extras_->proxy) : nullptr;
}

endpoint connection_impl::peer() const noexcept {
  // The PROXY header's source in full (a Unix path too; peer_ keeps only IP addresses).
  if (const proxy::header* h = proxied()) return h->source;
  return peer_.to_endpoint();
}

endpoint connection_impl::local() const noexcept {
  if (const proxy::header* h = proxied(); h && !h->destination.empty()) return h->destination;
  if (peer_.family() == AF_UNIX) return context_.first_endpoint();
  // Asked for rarely, so not stored: one getsockname(2) per call, none per accept.
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (!fd_ || ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return {};
  }
  if (ss.ss_family == AF_UNIX) return context_.first_endpoint();
  return endpoint(reinterpret_cast<sockaddr*>(&ss), len);
}

std::size_t connection_impl::listener_index() const noexcept { return context_.index(); }

// ---- reading ------------------------------------------------------------------------------

void connection_impl::arm_read() {
  if (paused_ || (phase_ != phase::open && phase_ != phase::handshaking)) return;
  arm_read_wait();
}

// A read wait whatever the read state (arm_read checks that first). Also used alone when a
// TLS write needs the peer's bytes to go on, while reading is paused or a close is flushing.
void connection_impl::arm_read_wait() {
  if (read_wait_ != read_wait::none || phase_ == phase::finished) return;
  // An edge already seen and not used up (reading was paused, or stopped after a full turn):
  // none will come for those bytes, so come back by posted work.
  if (ready_ & ready_read) return post_read();
  read_wait_ = read_wait::readiness;
}

// Comes back after the other work queued on the thread: to read bytes an edge announced
// earlier, or the bytes OpenSSL may already hold (which epoll cannot report).
void connection_impl::post_read() {
  read_wait_ = read_wait::posted;
  // self_ is set from open to finish: copying it is one atomic increment, cheaper than
  // shared_from_this() (a weak_ptr lock).
  asio::post(thread_.executor(), [self = self_] {
    entry in(*self);
    if (self->read_wait_ != read_wait::posted) return;
    self->on_readable();
  });
}

void connection_impl::on_ready(void* target, std::uint32_t events) {
  static_cast<connection_impl*>(target)->ready(events);
}

// An edge from the readiness set. Errors and hang-ups make both sides ready: the next read or
// write reports them.
void connection_impl::ready(std::uint32_t events) {
  if (phase_ == phase::finished) return;
  entry in(*this);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ready_ |= ready_read;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ready_ |= ready_write;
  if (read_wait_ == read_wait::readiness && (ready_ & ready_read)) on_readable();
  if (write_armed_ && (ready_ & ready_write) && phase_ < phase::finishing) on_writable_ready();
}

void connection_impl::on_readable() {
  read_wait_ = read_wait::none;
  if (phase_ == phase::handshaking) return handshake_step();
  if (phase_ >= phase::finishing) return;
  if (write_waits_for_read()) {
    extras_->write_wants_read = false;
    flush();
    if (phase_ >= phase::finishing) return;
  }
  if (phase_ != phase::open || paused_) return;
  read_some();
}

// The read loop, one turn: at most max_reads_per_turn reads, then yield.
void connection_impl::read_some() {
  std::byte* buf = thread_.receive_buffer();
  const std::size_t cap = thread_.receive_buffer_size();
  const int fd = fd_.get();
  transport& tx = *transport_;
  for (int i = 0; i < max_reads_per_turn; ++i) {
    if (phase_ != phase::open || paused_) return;
    const io_result r = tx.read(fd, buf, cap);
    if (r.status == io_status::done) {
      bump(counters_.bytes_in, r.n);
      touch_timeout();
      // Plain: a short read drained the socket; the next bytes bring an edge. TLS: records
      // are at most 16 KiB and more may wait in the socket; read on until OpenSSL wants it.
      const bool drained = r.n < cap && !tx.buffers_input();
      if (drained) ready_ &= ~ready_read;
      invoke("on_data", [&](handler& h) { h.on_data(*this, {buf, r.n}); });
      if (drained) return arm_read();
      continue;
    }
    switch (r.status) {
      case io_status::want_read:
        ready_ &= ~ready_read;
        return arm_read();
      case io_status::want_write:  // TLS: e.g. answering a key update while the socket is full
        ready_ &= ~ready_write;
        extras_->read_wants_write = true;
        return arm_write();
      case io_status::eof: return on_peer_eof();
      default: return fail(r.err);
    }
  }
  // A full turn: yield to the other connections and come back by posted work (the socket,
  // or OpenSSL, may hold more).
  if (phase_ != phase::open || paused_ || read_wait_ != read_wait::none) return;
  post_read();
}

void connection_impl::on_peer_eof() {
  if (!write_pending()) {
    finish(close_reason::peer_closed, {});
    return;
  }
  // Deliver what is queued first (the peer may only have half-closed), then finish.
  phase_ = phase::closing;
  closing_reason_ = close_reason::peer_closed;
  touch_timeout();
}

void connection_impl::pause_reading() {
  if (paused_) return;
  paused_ = true;
  // Pausing to wait for something else is not idleness: the timeout stops. But with bytes
  // queued (backpressure: the peer is not reading) it keeps running, or a peer that neither
  // reads nor writes would hold its slot forever.
  if (phase_ == phase::open && !write_pending()) thread_.timeouts().remove(*this);
}

void connection_impl::resume_reading() {
  if (!paused_) return;
  paused_ = false;
  if (phase_ != phase::open) return;
  touch_timeout();
  if (transport_->buffers_input() && read_wait_ == read_wait::none) {
    return post_read();  // OpenSSL may hold bytes
  }
  arm_read();
}

// ---- timeouts -----------------------------------------------------------------------------

void connection_impl::touch_timeout() {
  if (timeout_entry::queue != nullptr) thread_.timeouts().touch(*this, clock::now());
}

void connection_impl::set_read_timeout(std::chrono::milliseconds d) {
  if (d.count() < 0) d = std::chrono::milliseconds(0);
  read_timeout_ = d;
  if (phase_ == phase::finished || phase_ == phase::opening) return;
  thread_.timeouts().remove(*this);
  timeout_entry::queue = thread_.timeouts().queue_for(d);
  if (!paused_ || phase_ == phase::closing) touch_timeout();
}

void connection_impl::on_read_timeout() {
  entry in(*this);
  if (phase_ >= phase::finishing) return;
  if (phase_ == phase::handshaking) {
    return reject_unopened(reject_reason::handshake_timeout, errc::handshake_timeout);
  }
  if (phase_ == phase::closing) {
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
  if (phase_ == phase::open && (!paused_ || write_pending()) &&
      !static_cast<timeout_entry&>(*this).linked()) {
    touch_timeout();
  }
}

// ---- writing ------------------------------------------------------------------------------

std::size_t connection_impl::buffered_amount() const noexcept { return out_.buffered(); }

send_result connection_impl::send(std::span<const std::byte> data) {
  if (phase_ != phase::open || write_end_ != write_end::open) return send_result::dropped;
  const listener_config& cfg = context_.config();
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

// Writes what the transport takes now and queues the rest (in order behind a queued file).
// False: the connection failed (its finish is pending).
bool connection_impl::write_or_queue(std::span<const std::byte> data) {
  const bool may_write = !write_armed_ && !write_waits_for_read();
  const io_result r = out_.write(*transport_, fd_.get(), data, may_write);
  if (r.n > 0) bump(counters_.bytes_out, r.n);
  if (!await_write(r)) return false;
  // Queued bytes keep the timeout running while reading is paused (see pause_reading).
  if (paused_ && write_pending() && !static_cast<timeout_entry&>(*this).linked()) touch_timeout();
  return true;
}

// Arms what the write path needs next. False: the connection failed (its finish is pending).
bool connection_impl::await_write(const io_result& r) {
  switch (r.status) {
    case io_status::want_write:
      ready_ &= ~ready_write;
      arm_write();
      return true;
    case io_status::want_read:
      // The peer's bytes are needed first (TLS, e.g. a key update): waiting for writability
      // would spin, the socket being writable. on_readable flushes again.
      ready_ &= ~ready_read;
      extras_->write_wants_read = true;
      arm_read_wait();
      return true;
    case io_status::failed: fail(r.err); return false;
    default: return true;
  }
}

std::size_t connection_impl::max_write_buffer() const noexcept {
  return context_.config().max_write_buffer;
}

std::error_code connection_impl::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (phase_ != phase::open || write_end_ != write_end::open) return errc::shutting_down;
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
  out_.add_file(std::move(dup), offset, length);
  if (!write_armed_) flush();
  return {};
}

void connection_impl::arm_write() {
  if (write_armed_ || phase_ == phase::finished) return;
  write_armed_ = true;
  if (!(ready_ & ready_write)) return;  // the next edge
  // Writable already (the last write did not fill the socket): come back by posted work.
  asio::post(thread_.executor(), [self = self_] {
    entry in(*self);
    if (self->write_armed_) self->on_writable_ready();
  });
}

void connection_impl::on_writable_ready() {
  write_armed_ = false;
  if (phase_ == phase::handshaking) return handshake_step();
  if (phase_ >= phase::finishing) return;
  if (extras_ && extras_->read_wants_write) {
    extras_->read_wants_write = false;
    if (read_wait_ == read_wait::none) on_readable();
    if (phase_ >= phase::finishing) return;
  }
  flush();
}

void connection_impl::flush() {
  const io_result r = out_.flush(*transport_, fd_.get());
  if (r.n > 0) bump(counters_.bytes_out, r.n);
  if (!await_write(r)) return;
  after_drain();
}

// Called whenever the queue may have shrunk: finishes a close, a shutdown_write, or tells the
// handler it may write again.
void connection_impl::after_drain() {
  if (write_pending()) {
    // (Not while a TLS write waits for the peer's bytes: the socket is writable, that wait
    // would complete at once, again and again.)
    if (!write_waits_for_read()) arm_write();
    if (want_writable_ && buffered_amount() <= context_.config().write_low_water &&
        phase_ == phase::open) {
      want_writable_ = false;
      invoke("on_writable", [&](handler& h) { h.on_writable(*this); });
    }
    return;
  }
  if (paused_ && phase_ == phase::open) thread_.timeouts().remove(*this);
  if (write_end_ == write_end::shut_pending) shut_write_now();
  if (phase_ == phase::closing) {
    finish(closing_reason_, code_for(closing_reason_));
    return;
  }
  if (want_writable_ && phase_ == phase::open) {
    want_writable_ = false;
    invoke("on_writable", [&](handler& h) { h.on_writable(*this); });
  }
}

void connection_impl::shut_write_now() {
  write_end_ = write_end::shut;
  transport_->shutdown_write(fd_.get());
}

void connection_impl::shutdown_write() {
  if (phase_ != phase::open || write_end_ != write_end::open) return;
  if (!write_pending()) {
    shut_write_now();
  } else {
    write_end_ = write_end::shut_pending;
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
  if (phase_ != phase::open) return;
  close_after_queue(reason_for_close());
}

void connection_impl::close_with(std::span<const std::byte> last, close_reason why) {
  if (phase_ != phase::open) return;
  if (!last.empty() && write_end_ == write_end::open && !write_or_queue(last)) return;
  close_after_queue(why);
}

// Stops reading and finishes once the queue has drained (now, if it is empty).
void connection_impl::close_after_queue(close_reason why) {
  phase_ = phase::closing;
  closing_reason_ = why;
  if (!write_pending() && !write_armed_) {
    finish(closing_reason_, code_for(closing_reason_));
    return;
  }
  // Bound the flush by the read timeout, also when reading was paused.
  if (!static_cast<timeout_entry&>(*this).linked()) touch_timeout();
}

void connection_impl::abort() {
  if (phase_ == phase::finished) return;
  reset_on_close_ = true;
  out_.clear();
  finish(close_reason::local_close, errc::aborted);
}

void connection_impl::begin_shutdown() {
  entry in(*this);
  if (phase_ == phase::handshaking) {
    return reject_unopened(reject_reason::shutdown, errc::shutting_down);
  }
  if (phase_ == phase::finished || draining_) return;
  draining_ = true;
  if (phase_ == phase::open) invoke("on_shutdown", [&](handler& h) { h.on_shutdown(*this); });
}

void connection_impl::force_close() {
  entry in(*this);
  if (phase_ == phase::handshaking) {
    return reject_unopened(reject_reason::shutdown, errc::shutting_down);
  }
  if (phase_ == phase::finished) return;
  reset_on_close_ = true;
  out_.clear();
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
  if (phase_ >= phase::finishing) return;
  phase_ = phase::finishing;
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
  phase_ = phase::finished;
  thread_.timeouts().remove(*this);
  thread_.remove(*this);
  if (reset_on_close_) {
    // RST instead of FIN; with a zero linger time close(2) never blocks.
    linger l{1, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  } else if (write_end_ != write_end::shut) {
    transport_->before_close();  // TLS: close_notify, one non-blocking attempt
  }
  if (extras_) extras_->age_timer.cancel();
  close_descriptor();  // no event reaches it from here
  out_.clear();
  bump(counters_.closed[static_cast<std::size_t>(r)]);
  if (context_.has_event_sink()) {
    context_.emit(event::closed(context_.index(), id_, r, ec, peer_.to_endpoint()));
  }
  if (handler_) {
    ++depth_;
    try {
      handler_->on_close(*this, r, ec);
    } catch (const std::exception& e) {
      context_.warn_handler_exception(id_, "on_close", e.what());
    } catch (...) {
      context_.warn_handler_exception(id_, "on_close", "unknown exception");
    }
    --depth_;
  }
  handler_.reset();
  upgrade_.reset();
  transport_ = &plain_transport::instance();  // tls() is nullptr from here
  extras_.reset();
  slot_.release();  // may admit a waiting socket
  self_.reset();
}

void connection_impl::settle() {
  if (phase_ == phase::finishing) {
    do_finish(pending_reason_, pending_ec_);
    return;
  }
  if (phase_ == phase::finished) {
    self_.reset();  // rejected before it opened (reject_unopened); may destroy *this
    return;
  }
  if (upgrade_ && phase_ != phase::finished) {
    auto u = std::move(upgrade_);
    handler_ = std::move(u->next);  // the old handler is destroyed here, outside its calls
    invoke("on_open", [&](handler& h) { h.on_open(*this); });
    if (!u->leftover.empty() && phase_ == phase::open && handler_) {
      const std::span<const std::byte> bytes(u->leftover);
      invoke("on_data", [&](handler& h) { h.on_data(*this, bytes); });
    }
  }
}

void connection_impl::upgrade(std::unique_ptr<handler> next, std::span<const std::byte> leftover) {
  if (phase_ == phase::finished || !next) return;
  upgrade_ = std::make_unique<upgrade_state>(
      upgrade_state{std::move(next), std::vector<std::byte>(leftover.begin(), leftover.end())});
  if (depth_ == 0) settle();
}

void connection_impl::on_handler_exception(const char* what, const char* message) {
  context_.warn_handler_exception(id_, what, message);
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
