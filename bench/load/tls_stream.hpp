#pragma once
// TLS for atoll-load's clients (--tls): one client context (TLS 1.3 only, no certificate
// verification: the targets are loopback servers with a throwaway certificate) and, per
// connection, a non-blocking stream whose send/recv behave like send(2)/recv(2) over either a
// plain socket or an OpenSSL SSL on it, so a mode's loop is the same for both.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>

using SSL = struct ssl_st;
using SSL_CTX = struct ssl_ctx_st;

namespace atoll_load {

// The client side's SSL_CTX: TLS 1.3 only, no verification, partial writes, buffers released
// while idle (so 10,000 held connections stay small in atoll-load), no session resumption
// (every connection pays a full handshake, the same for every server). Throws
// std::runtime_error when OpenSSL refuses.
class tls_client_context {
 public:
  tls_client_context();
  ~tls_client_context();
  tls_client_context(const tls_client_context&) = delete;
  tls_client_context& operator=(const tls_client_context&) = delete;
  SSL_CTX* native() const noexcept { return ctx_; }

 private:
  SSL_CTX* ctx_;
};

// One connection's byte stream: plain (no context given) or TLS over a connected non-blocking
// socket. Does not own the descriptor. send/recv return what send(2)/recv(2) would: bytes,
// 0 for the peer's close (recv), or -1 with errno (EAGAIN while TLS waits for the socket;
// blocked_on_write() then says whether it waits to write; EPROTO for a TLS failure).
class byte_stream {
 public:
  // Plain (ctx == nullptr) or TLS client on `fd`. False (errno set) if OpenSSL refuses.
  bool attach(int fd, SSL_CTX* ctx);
  // Drops the SSL (no close_notify); the descriptor is the owner's to close.
  void reset() noexcept;
  bool tls() const noexcept { return ssl_ != nullptr; }
  // Drives the TLS handshake: 1 done (also for plain streams), 0 in progress (wait as
  // blocked_on_write() says), -1 failed (errno set).
  int handshake();
  ssize_t send(const void* data, std::size_t n);
  ssize_t recv(void* data, std::size_t n);
  // Decrypted bytes already held by the TLS layer (epoll does not see them).
  std::size_t pending() const noexcept;
  bool blocked_on_write() const noexcept { return want_write_; }

 private:
  struct ssl_free {
    void operator()(SSL* s) const noexcept;
  };
  // Maps SSL_get_error for a result <= 0 to the send(2)-like result.
  ssize_t fail(int result);

  int fd_ = -1;
  std::unique_ptr<SSL, ssl_free> ssl_;
  bool want_write_ = false;
};

}  // namespace atoll_load
