#include "tls_stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cerrno>
#include <stdexcept>

namespace atoll_load {

tls_client_context::tls_client_context() : ctx_(SSL_CTX_new(TLS_client_method())) {
  if (ctx_ == nullptr) throw std::runtime_error("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx_, TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
  // A server that closes without close_notify reads as a close, as on a plain socket.
  SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
}

tls_client_context::~tls_client_context() { SSL_CTX_free(ctx_); }

void byte_stream::ssl_free::operator()(SSL* s) const noexcept { SSL_free(s); }

bool byte_stream::attach(int fd, SSL_CTX* ctx) {
  fd_ = fd;
  want_write_ = false;
  ssl_.reset();
  if (ctx == nullptr) return true;
  ssl_.reset(SSL_new(ctx));
  if (!ssl_ || SSL_set_fd(ssl_.get(), fd) != 1) {
    ERR_clear_error();
    ssl_.reset();
    errno = ENOMEM;
    return false;
  }
  SSL_set_connect_state(ssl_.get());
  return true;
}

void byte_stream::reset() noexcept {
  ssl_.reset();
  fd_ = -1;
  want_write_ = false;
}

ssize_t byte_stream::fail(int result) {
  const int err = SSL_get_error(ssl_.get(), result);
  want_write_ = err == SSL_ERROR_WANT_WRITE;
  switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (errno == 0) return 0;  // EOF without close_notify
      return -1;                 // errno from the socket
    default:
      ERR_clear_error();
      errno = EPROTO;
      return -1;
  }
}

int byte_stream::handshake() {
  if (!ssl_) return 1;
  errno = 0;
  const int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    want_write_ = false;
    return 1;
  }
  const ssize_t f = fail(r);
  if (f < 0 && errno == EAGAIN) return 0;
  if (f == 0) errno = ECONNRESET;  // closed during the handshake
  return -1;
}

ssize_t byte_stream::send(const void* data, std::size_t n) {
  if (!ssl_) return ::send(fd_, data, n, MSG_NOSIGNAL);
  if (n == 0) return 0;
  errno = 0;
  const int r = SSL_write(ssl_.get(), data, static_cast<int>(n > 1u << 30 ? 1u << 30 : n));
  if (r > 0) {
    want_write_ = false;
    return r;
  }
  const ssize_t f = fail(r);
  if (f == 0) errno = EPIPE;  // SSL_write never "reads" a close
  return -1;
}

ssize_t byte_stream::recv(void* data, std::size_t n) {
  if (!ssl_) return ::recv(fd_, data, n, 0);
  errno = 0;
  const int r = SSL_read(ssl_.get(), data, static_cast<int>(n > 1u << 30 ? 1u << 30 : n));
  if (r > 0) {
    want_write_ = false;
    return r;
  }
  return fail(r);
}

std::size_t byte_stream::pending() const noexcept {
  return ssl_ ? static_cast<std::size_t>(SSL_pending(ssl_.get())) : 0;
}

}  // namespace atoll_load
