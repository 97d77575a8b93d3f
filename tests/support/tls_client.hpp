#pragma once
// A small blocking-with-deadline OpenSSL client for the TLS tests (loopback only). The socket is
// non-blocking and every wait is a poll() bounded by the caller's timeout: a server that stalls
// fails the test, it never hangs it. Nothing here sleeps.
//
//   auto c = tls_client::connect(ep, {.server_name = "localhost", .alpn = {"h2"},
//                                     .ca_file = certs.ca_cert});
//   ASSERT_TRUE(c.ok()) << c.error();
//   EXPECT_EQ(c.alpn(), "h2");
//   EXPECT_TRUE(c.echo("hello"));
//
// Under TLS 1.3 a server that refuses the client's certificate (or anything else it checks
// after its Finished) says so only after the client's handshake has completed: `ok()` is then
// true and the refusal shows on the first read (an alert or EOF). `round_trip` covers both.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atoll/endpoint.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace atl::test {

/// What a `tls_client` offers and checks.
struct tls_client_options {
  /// SNI host name to send; empty = no SNI extension.
  std::string server_name;
  /// ALPN protocols offered, in the client's order; empty = no ALPN extension.
  std::vector<std::string> alpn;
  /// Client certificate (PEM, leaf first) and its key; empty = none.
  std::string cert_file;
  std::string key_file;
  /// CA file to verify the server's certificate against; empty = no verification.
  std::string ca_file;
  /// Host name or IP the server's certificate must match (with `ca_file`); empty = not checked.
  std::string expected_host;
  /// TLS1_2_VERSION, TLS1_3_VERSION; 0 = OpenSSL's default bound.
  int min_version = 0;
  int max_version = 0;
  /// Bound on connect + handshake.
  std::chrono::milliseconds timeout{5000};
  /// Bytes written in the clear before the ClientHello (e.g. a PROXY protocol header).
  std::string preamble;
};

/// How `tls_client::read_until_close` ended.
enum class tls_close {
  clean,           ///< close_notify, then EOF: a graceful TLS close.
  unexpected_eof,  ///< TCP EOF without close_notify (truncation).
  reset,           ///< ECONNRESET.
  alert,           ///< a fatal TLS alert or another TLS error (see `error()`).
  timeout,         ///< still open at the deadline.
  error,           ///< a socket error.
};

inline const char* to_string(tls_close c) {
  switch (c) {
    case tls_close::clean:
      return "clean";
    case tls_close::unexpected_eof:
      return "unexpected_eof";
    case tls_close::reset:
      return "reset";
    case tls_close::alert:
      return "alert";
    case tls_close::timeout:
      return "timeout";
    case tls_close::error:
      return "error";
  }
  return "?";
}

/// A TLS client connection. Move-only; frees everything on destruction (without a
/// close_notify unless `close_notify()` was called).
class tls_client {
 public:
  using clock_type = std::chrono::steady_clock;

  tls_client() = default;
  tls_client(tls_client&& o) noexcept
      : ctx_(std::move(o.ctx_)),
        ssl_(std::move(o.ssl_)),
        fd_(std::exchange(o.fd_, -1)),
        ok_(o.ok_),
        error_(std::move(o.error_)) {}
  tls_client& operator=(tls_client&& o) noexcept {
    if (this != &o) {
      reset_state();
      ctx_ = std::move(o.ctx_);
      ssl_ = std::move(o.ssl_);
      fd_ = std::exchange(o.fd_, -1);
      ok_ = o.ok_;
      error_ = std::move(o.error_);
    }
    return *this;
  }
  ~tls_client() { reset_state(); }

  /// Connects to `ep` and runs the handshake, both within `o.timeout`. Check `ok()`.
  static tls_client connect(const atl::endpoint& ep, const tls_client_options& o = {}) {
    ignore_sigpipe();  // OpenSSL's socket BIO writes with write(2): no MSG_NOSIGNAL.
    tls_client c;
    const auto deadline = clock_type::now() + o.timeout;
    if (!c.connect_tcp(ep, deadline)) return c;
    if (!c.write_raw(o.preamble, deadline)) return c;
    if (!c.setup(o)) return c;
    int err = 0;
    const int r = c.drive([&] { return SSL_connect(c.ssl_.get()); }, deadline, &err);
    c.ok_ = r > 0;
    return c;
  }

  /// The handshake completed (from the client's point of view; see the file comment).
  bool ok() const { return ok_; }
  /// Why the last operation failed: OpenSSL's error strings ("...:tlsv1 alert protocol
  /// version"), "timeout", "unexpected eof", or the errno text. Empty if nothing failed.
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }
  SSL* native() const { return ssl_.get(); }

  /// Negotiated ALPN protocol ("" if none).
  std::string alpn() const {
    if (!ssl_) return {};
    const unsigned char* p = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl_.get(), &p, &len);
    return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
  }
  /// "TLSv1.3", "TLSv1.2".
  std::string version() const { return ssl_ ? SSL_get_version(ssl_.get()) : ""; }
  /// "TLS_AES_256_GCM_SHA384", ...
  std::string cipher() const {
    return ssl_ ? std::string(SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_.get()))) : "";
  }
  /// The CN of the server certificate's subject ("" if none).
  std::string peer_cn() const {
    if (!ssl_) return {};
    X509* cert = SSL_get0_peer_certificate(ssl_.get());
    if (!cert) return {};
    char buf[256] = {};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf) < 0)
      return {};
    return buf;
  }
  /// X509_V_OK (0) when the server's certificate verified against `ca_file`.
  long verify_result() const { return ssl_ ? SSL_get_verify_result(ssl_.get()) : -1; }

  /// Writes all of `data` within `timeout`.
  bool write_all(std::string_view data,
                 std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    return exchange(data, 0, timeout).has_value();
  }

  /// Reads until `n` bytes arrived, the connection ended, or `timeout` passed; returns what
  /// arrived (fewer than `n` bytes on failure; `error()` says why).
  std::string read_exact(std::size_t n,
                         std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    std::string in;
    exchange({}, n, timeout, &in);
    return in;
  }

  /// Writes `out` while reading `in_bytes`, interleaved (so a large echo cannot deadlock on
  /// full socket buffers), within `timeout`. The bytes read, or nullopt on failure / timeout
  /// (`*partial`, if given, gets what was read anyway).
  std::optional<std::string> exchange(std::string_view out, std::size_t in_bytes,
                                      std::chrono::milliseconds timeout,
                                      std::string* partial = nullptr) {
    std::string local;
    std::string& in = partial ? *partial : local;
    if (!ssl_) return fail_opt("not connected");
    const auto deadline = clock_type::now() + timeout;
    std::size_t written = 0;
    std::size_t write_len = 0;  // a retried SSL_write must repeat its length
    bool write_wants_read = false, write_wants_write = false, read_wants_write = false;
    std::vector<char> buf(64 * 1024);
    while (written < out.size() || in.size() < in_bytes) {
      bool progressed = false;
      if (written < out.size()) {
        if (write_len == 0) write_len = std::min<std::size_t>(out.size() - written, 64 * 1024);
        ERR_clear_error();
        const int r = SSL_write(ssl_.get(), out.data() + written, static_cast<int>(write_len));
        write_wants_read = write_wants_write = false;
        if (r > 0) {
          written += static_cast<std::size_t>(r);
          write_len = 0;
          progressed = true;
        } else {
          const int e = SSL_get_error(ssl_.get(), r);
          if (e == SSL_ERROR_WANT_READ) {
            write_wants_read = true;
          } else if (e == SSL_ERROR_WANT_WRITE) {
            write_wants_write = true;
          } else {
            record_error(e, r);
            return std::nullopt;
          }
        }
      }
      if (in.size() < in_bytes) {
        ERR_clear_error();
        const int want = static_cast<int>(std::min(buf.size(), in_bytes - in.size()));
        const int r = SSL_read(ssl_.get(), buf.data(), want);
        read_wants_write = false;
        if (r > 0) {
          in.append(buf.data(), static_cast<std::size_t>(r));
          progressed = true;
        } else {
          const int e = SSL_get_error(ssl_.get(), r);
          if (e == SSL_ERROR_WANT_WRITE) {
            read_wants_write = true;
          } else if (e != SSL_ERROR_WANT_READ) {
            record_error(e, r);
            return std::nullopt;
          }
        }
      }
      if (progressed) continue;
      short events = 0;
      if (in.size() < in_bytes || write_wants_read) events |= POLLIN;
      if (write_wants_write || read_wants_write) events |= POLLOUT;
      if (!wait(events, deadline)) return std::nullopt;
    }
    return in;
  }

  /// Sends `msg` and reads back as many bytes; true if they match.
  bool echo(std::string_view msg, std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    auto got = exchange(msg, msg.size(), timeout);
    if (got && *got != msg) error_ = "echo mismatch";
    return got && *got == msg;
  }

  /// True if the handshake completed *and* an echo of `msg` came back: the server accepted
  /// the connection (see the file comment on TLS 1.3).
  bool round_trip(std::string_view msg = "ping\n",
                  std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    return ok_ && echo(msg, timeout);
  }

  /// Reads (appending to `*data` if given) until the server closes or `timeout` passes.
  tls_close read_until_close(std::chrono::milliseconds timeout = std::chrono::seconds{5},
                             std::string* data = nullptr) {
    if (!ssl_) return tls_close::error;
    const auto deadline = clock_type::now() + timeout;
    std::vector<char> buf(64 * 1024);
    for (;;) {
      ERR_clear_error();
      errno = 0;
      const int r = SSL_read(ssl_.get(), buf.data(), static_cast<int>(buf.size()));
      if (r > 0) {
        if (data) data->append(buf.data(), static_cast<std::size_t>(r));
        continue;
      }
      const int e = SSL_get_error(ssl_.get(), r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!wait(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
          return error_ == "timeout" ? tls_close::timeout : tls_close::error;
        continue;
      }
      const int saved_errno = errno;
      const unsigned long code = ERR_peek_error();
      record_error(e, r);
      if (e == SSL_ERROR_ZERO_RETURN) return tls_close::clean;
      if (e == SSL_ERROR_SYSCALL) {
        if (saved_errno == ECONNRESET) return tls_close::reset;
        return saved_errno == 0 ? tls_close::unexpected_eof : tls_close::error;
      }
      if (e == SSL_ERROR_SSL && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return tls_close::unexpected_eof;
      return tls_close::alert;
    }
  }

  /// Sends close_notify (once, without waiting for the server's).
  void close_notify() {
    if (ssl_ && ok_) {
      ERR_clear_error();
      SSL_shutdown(ssl_.get());
    }
  }

  /// Closes the TCP connection without a close_notify.
  void close() { reset_state(); }

 private:
  struct ctx_free {
    void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
  };
  struct ssl_free {
    void operator()(SSL* p) const { SSL_free(p); }
  };

  static void ignore_sigpipe() {
    static const bool once = [] {
      ::signal(SIGPIPE, SIG_IGN);
      return true;
    }();
    (void)once;
  }

  void reset_state() {
    ssl_.reset();
    ctx_.reset();
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    ok_ = false;
  }

  bool fail(std::string what) {
    error_ = std::move(what);
    return false;
  }
  std::optional<std::string> fail_opt(std::string what) {
    error_ = std::move(what);
    return std::nullopt;
  }

  /// Appends OpenSSL's queued errors (or the errno / EOF) to `error_`.
  void record_error(int ssl_error, int ret) {
    const int saved_errno = errno;
    std::string text;
    while (const unsigned long code = ERR_get_error()) {
      char buf[256];
      ERR_error_string_n(code, buf, sizeof buf);
      if (!text.empty()) text += "; ";
      text += buf;
    }
    if (text.empty()) {
      if (ssl_error == SSL_ERROR_ZERO_RETURN)
        text = "close_notify";
      else if (ssl_error == SSL_ERROR_SYSCALL && saved_errno == 0)
        text = "unexpected eof";
      else if (ssl_error == SSL_ERROR_SYSCALL)
        text = std::strerror(saved_errno);
      else
        text = "SSL error " + std::to_string(ssl_error) + " (ret " + std::to_string(ret) + ")";
    }
    error_ = text;
  }

  /// Polls for `events` until `deadline`; false (error_ = "timeout" or the errno) if none.
  bool wait(short events, clock_type::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (left.count() <= 0) return fail("timeout");
      pollfd p{fd_, events, 0};
      const int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n > 0) return true;
      if (n == 0) return fail("timeout");
      if (errno != EINTR) return fail(std::string("poll: ") + std::strerror(errno));
    }
  }

  /// Repeats `op` (SSL_connect, ...) through WANT_READ/WANT_WRITE until it succeeds, fails,
  /// or `deadline` passes.
  template <class Op>
  int drive(Op op, clock_type::time_point deadline, int* ssl_error) {
    for (;;) {
      ERR_clear_error();
      errno = 0;
      const int r = op();
      if (r > 0) return r;
      const int e = SSL_get_error(ssl_.get(), r);
      *ssl_error = e;
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!wait(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return -1;
        continue;
      }
      record_error(e, r);
      return r <= 0 ? r : -1;
    }
  }

  bool connect_tcp(const atl::endpoint& ep, clock_type::time_point deadline) {
    fd_ = ::socket(ep.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return fail(std::string("socket: ") + std::strerror(errno));
    if (::connect(fd_, ep.data(), ep.size()) != 0) {
      if (errno != EINPROGRESS) return fail(std::string("connect: ") + std::strerror(errno));
      if (!wait(POLLOUT, deadline)) return false;
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len);
      if (soerr != 0) return fail(std::string("connect: ") + std::strerror(soerr));
    }
    if (ep.is_ip()) {
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return true;
  }

  bool write_raw(std::string_view data, clock_type::time_point deadline) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait(POLLOUT, deadline)) return false;
      } else if (n < 0 && errno != EINTR) {
        return fail(std::string("send: ") + std::strerror(errno));
      }
    }
    return true;
  }

  bool setup(const tls_client_options& o) {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx_) return fail("SSL_CTX_new failed");
    SSL_CTX* ctx = ctx_.get();
    if (o.min_version && !SSL_CTX_set_min_proto_version(ctx, o.min_version))
      return fail("SSL_CTX_set_min_proto_version failed");
    if (o.max_version && !SSL_CTX_set_max_proto_version(ctx, o.max_version))
      return fail("SSL_CTX_set_max_proto_version failed");
    if (!o.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1)
        return fail("cannot load CA file " + o.ca_file);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    if (!o.cert_file.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1)
        return fail("cannot load client certificate " + o.cert_file);
      if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
        return fail("cannot load client key " + o.key_file);
    }
    if (!o.alpn.empty()) {
      std::string wire;
      for (const auto& p : o.alpn) {
        wire += static_cast<char>(p.size());
        wire += p;
      }
      // SSL_CTX_set_alpn_protos returns 0 on success.
      if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                  static_cast<unsigned>(wire.size())) != 0)
        return fail("SSL_CTX_set_alpn_protos failed");
    }
    ssl_.reset(SSL_new(ctx));
    if (!ssl_) return fail("SSL_new failed");
    SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!o.server_name.empty() && SSL_set_tlsext_host_name(ssl_.get(), o.server_name.c_str()) != 1)
      return fail("SSL_set_tlsext_host_name failed");
    if (!o.expected_host.empty() && !o.ca_file.empty()) {
      // An IP literal is checked against IP SANs, anything else as a DNS name.
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
      if (X509_VERIFY_PARAM_set1_ip_asc(param, o.expected_host.c_str()) != 1 &&
          SSL_set1_host(ssl_.get(), o.expected_host.c_str()) != 1)
        return fail("cannot set the expected host");
    }
    if (SSL_set_fd(ssl_.get(), fd_) != 1) return fail("SSL_set_fd failed");
    return true;
  }

  std::unique_ptr<SSL_CTX, ctx_free> ctx_;
  std::unique_ptr<SSL, ssl_free> ssl_;
  int fd_ = -1;
  bool ok_ = false;
  std::string error_;
};

}  // namespace atl::test
