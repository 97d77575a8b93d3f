#pragma once
// How a connection's bytes cross the socket: plain (recv/send/sendmsg on the descriptor) or
// TLS (OpenSSL over the same descriptor). The connection's data path calls its transport and
// reacts to what it says (data, wait for readability, wait for writability, end of stream,
// failure); it has no TLS branches of its own.
//
// Thread rules: a transport is used only on its connection's io thread. The plain transport
// holds no state (one shared instance serves every plain connection); a TLS transport owns
// its SSL and the BIO that binds it to the descriptor.

#include <openssl/ssl.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "atoll/tls.hpp"

namespace atl::detail {

class write_queue;

// Reads per readable event before yielding to the other connections of the thread (fairness):
// one turn of a connection is at most this many receive buffers (256 KiB at the default 64 KiB).
// A peer flooding tiny frames (pings, 1-byte fragments: ~1-4 ms of CPU per MiB) thus holds the
// thread ~1 ms per turn; 16 reads made that 4-16 ms and other clients' p99 followed (issue 9,
// the attack bench). Bulk transfers lose nothing measurable: one more wait per 256 KiB.
inline constexpr int max_reads_per_turn = 4;

// What one transport step did. `n` is the number of bytes moved, whatever the status (a send
// may move some bytes and then find the socket full).
enum class io_status : std::uint8_t {
  done,        // progress (n bytes); call again for more
  want_read,   // wait for readability, then call again
  want_write,  // wait for writability, then call again
  eof,         // read side: the peer closed (FIN, or TLS close_notify)
  failed,      // `err` (an errno value) says why
};

struct io_result {
  io_status status = io_status::done;
  std::size_t n = 0;
  int err = 0;
};

class transport {
 public:
  virtual ~transport() = default;

  // Reads up to `cap` bytes into `buf`.
  virtual io_result read(int fd, std::byte* buf, std::size_t cap) = 0;
  // Writes from `data` at once if the transport can (the queue being empty). `done` with n <
  // size means: queue the rest and flush it now; `want_write`: queue the rest and wait.
  virtual io_result write(int fd, std::span<const std::byte> data) = 0;
  // One write step from the front of `q` (q is not consumed; the caller consumes n).
  virtual io_result write_queued(int fd, const write_queue& q) = 0;
  // Ends the write side (TLS: close_notify first); reading goes on.
  virtual void shutdown_write(int fd) = 0;
  // The connection closes without having shut its write side: say goodbye if the protocol has
  // a way to (TLS: one non-blocking close_notify attempt).
  virtual void before_close() {}

  // True when the transport may hold read bytes that readiness cannot report (OpenSSL's
  // decrypted records): the read loop then comes back by posted work, not by a wait.
  virtual bool buffers_input() const noexcept { return false; }
  // True when files can go to the socket with sendfile(2); otherwise they are read into the
  // write queue and go through write_queued.
  virtual bool sends_files() const noexcept { return true; }
  // The TLS session (nullptr when plain).
  virtual const tls_info* tls() const noexcept { return nullptr; }
};

// recv(2), send(2), sendmsg(2). Stateless: plain_transport::instance() serves every plain
// connection.
class plain_transport final : public transport {
 public:
  static plain_transport& instance() noexcept;

  io_result read(int fd, std::byte* buf, std::size_t cap) override;
  io_result write(int fd, std::span<const std::byte> data) override;
  io_result write_queued(int fd, const write_queue& q) override;
  void shutdown_write(int fd) override;
};

// OpenSSL over the descriptor, with a BIO that sends with MSG_NOSIGNAL (OpenSSL's own socket
// BIO uses write(2), which raises SIGPIPE on a reset connection).
class tls_transport final : public transport {
 public:
  // Takes ownership of `ssl` (from tls_context::new_session()); binds it to `fd` as a server.
  // valid() is false when the BIO could not be made.
  tls_transport(SSL* ssl, int fd);
  ~tls_transport() override;
  tls_transport(const tls_transport&) = delete;
  tls_transport& operator=(const tls_transport&) = delete;

  bool valid() const noexcept { return ssl_ != nullptr; }
  // One handshake step: done (n = 0) when the session is up, want_read / want_write, or
  // failed with OpenSSL's reason in `error`.
  io_result handshake(std::string& error);

  io_result read(int fd, std::byte* buf, std::size_t cap) override;
  io_result write(int fd, std::span<const std::byte> data) override;
  io_result write_queued(int fd, const write_queue& q) override;
  void shutdown_write(int fd) override;
  void before_close() override;
  bool buffers_input() const noexcept override { return true; }
  bool sends_files() const noexcept override { return false; }
  const tls_info* tls() const noexcept override { return &info_; }

 private:
  struct ssl_free {
    void operator()(SSL* s) const noexcept { SSL_free(s); }
  };

  // What SSL_get_error says of a failed call, as an io_result.
  io_result from_ssl_error(int rc);

  std::unique_ptr<SSL, ssl_free> ssl_;
  tls_info info_;
};

}  // namespace atl::detail
