#include "transport.hpp"

#include <openssl/err.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "tls_context.hpp"
#include "write_queue.hpp"

namespace atl::detail {

namespace {
// Most buffers handed to one sendmsg(2); IOV_MAX is 1024 on Linux, 64 covers any realistic
// queue of small messages while keeping the iovec array on the stack.
constexpr std::size_t max_iov = 64;
// Plaintext handed to one SSL_write: one TLS record.
constexpr std::size_t tls_record = 16 * 1024;

bool would_block(int err) noexcept { return err == EAGAIN || err == EWOULDBLOCK; }

// ---- the BIO between OpenSSL and the descriptor --------------------------------------------

int bio_fd(BIO* b) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(b))); }

int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  const ssize_t n =
      ::send(bio_fd(b), data, static_cast<std::size_t>(len), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (would_block(errno) || errno == EINTR)) BIO_set_retry_write(b);
  return static_cast<int>(n);
}

int bio_read(BIO* b, char* data, int len) {
  BIO_clear_retry_flags(b);
  const ssize_t n = ::recv(bio_fd(b), data, static_cast<std::size_t>(len), 0);
  if (n < 0 && (would_block(errno) || errno == EINTR)) BIO_set_retry_read(b);
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

io_result failed(int err) noexcept { return {io_status::failed, 0, err}; }

}  // namespace

// ---- plain --------------------------------------------------------------------------------

plain_transport& plain_transport::instance() noexcept {
  static plain_transport t;
  return t;
}

io_result plain_transport::read(int fd, std::byte* buf, std::size_t cap) {
  for (;;) {
    const ssize_t n = ::recv(fd, buf, cap, 0);
    if (n > 0) return {io_status::done, static_cast<std::size_t>(n)};
    if (n == 0) return {io_status::eof};
    if (errno == EINTR) continue;
    if (would_block(errno)) return {io_status::want_read};
    return failed(errno);
  }
}

io_result plain_transport::write(int fd, std::span<const std::byte> data) {
  const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0) {
    if (would_block(errno) || errno == EINTR) return {io_status::want_write};
    return failed(errno);
  }
  const auto sent = static_cast<std::size_t>(n);
  return {sent == data.size() ? io_status::done : io_status::want_write, sent};
}

io_result plain_transport::write_queued(int fd, const write_queue& q) {
  iovec iov[max_iov];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = q.gather(iov, max_iov);
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return {io_status::done, static_cast<std::size_t>(n)};
    if (errno == EINTR) continue;
    if (would_block(errno)) return {io_status::want_write};
    return failed(errno);
  }
}

void plain_transport::shutdown_write(int fd) { ::shutdown(fd, SHUT_WR); }

// ---- TLS ----------------------------------------------------------------------------------

tls_transport::tls_transport(SSL* ssl, int fd) : ssl_(ssl) {
  if (!ssl_) return;
  BIO* bio = BIO_new(socket_bio_method());
  if (bio == nullptr) {
    ssl_.reset();
    return;
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
  SSL_set_bio(ssl_.get(), bio, bio);  // the SSL owns the BIO from here
  SSL_set_accept_state(ssl_.get());
}

tls_transport::~tls_transport() = default;

io_result tls_transport::handshake(std::string& error) {
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    describe_session(ssl_.get(), info_);
    return {io_status::done};
  }
  const int e = SSL_get_error(ssl_.get(), rc);
  if (e == SSL_ERROR_WANT_READ) return {io_status::want_read};
  if (e == SSL_ERROR_WANT_WRITE) return {io_status::want_write};
  const unsigned long code = ERR_peek_last_error();
  char text[256] = "connection closed";
  if (code != 0) ERR_error_string_n(code, text, sizeof text);
  ERR_clear_error();
  error = text;
  return failed(EPROTO);
}

io_result tls_transport::from_ssl_error(int rc) {
  switch (SSL_get_error(ssl_.get(), rc)) {
    case SSL_ERROR_WANT_READ: return {io_status::want_read};
    case SSL_ERROR_WANT_WRITE: return {io_status::want_write};
    case SSL_ERROR_ZERO_RETURN: return {io_status::eof};  // close_notify
    case SSL_ERROR_SYSCALL: return failed(errno);          // errno 0: see the callers
    default: ERR_clear_error(); return failed(EPROTO);
  }
}

io_result tls_transport::read(int, std::byte* buf, std::size_t cap) {
  ERR_clear_error();
  errno = 0;  // SSL_ERROR_SYSCALL with errno 0 means EOF without close_notify
  const int n = SSL_read(ssl_.get(), buf, static_cast<int>(std::min<std::size_t>(cap, 1 << 30)));
  if (n > 0) return {io_status::done, static_cast<std::size_t>(n)};
  io_result r = from_ssl_error(n);
  if (r.status == io_status::failed && r.err == 0) r.status = io_status::eof;
  return r;
}

// Plaintext is queued first and written from the queue: after SSL_ERROR_WANT_WRITE OpenSSL
// must be called again with the same bytes, which only the queue keeps.
io_result tls_transport::write(int, std::span<const std::byte>) { return {io_status::done}; }

io_result tls_transport::write_queued(int, const write_queue& q) {
  // After SSL_ERROR_WANT_WRITE OpenSSL must be called again with the same bytes (at least as
  // many): the front of the queue is unchanged until a write succeeds, so it is.
  const std::size_t want = std::min(q.size(), tls_record);
  iovec iov[max_iov]{};
  const std::size_t count = q.gather(iov, max_iov);
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
  errno = 0;
  const int n = SSL_write(ssl_.get(), p, static_cast<int>(want));
  if (n > 0) return {io_status::done, static_cast<std::size_t>(n)};
  io_result r = from_ssl_error(n);
  // WANT_READ: the peer's bytes are needed first (e.g. a renegotiation); waiting for
  // writability would spin, the socket being writable.
  if (r.status == io_status::eof) r = failed(EPROTO);
  if (r.status == io_status::failed && r.err == 0) r.err = EPIPE;
  return r;
}

void tls_transport::shutdown_write(int fd) {
  before_close();  // close_notify; reading goes on
  ::shutdown(fd, SHUT_WR);
}

void tls_transport::before_close() {
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // one non-blocking attempt
}

}  // namespace atl::detail
