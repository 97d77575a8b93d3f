#include "handshake.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "atoll/error.hpp"

namespace atl::detail {

namespace {
using kind = handshake_stage::result::kind;

handshake_stage::result rejected(reject_reason why, std::error_code ec, std::string debug = {}) {
  handshake_stage::result r;
  r.what = kind::rejected;
  r.why = why;
  r.ec = ec;
  r.debug = std::move(debug);
  return r;
}
}  // namespace

handshake_stage::handshake_stage(proxy_protocol_mode proxy, std::unique_ptr<tls_transport> tls)
    : mode_(proxy), proxy_done_(proxy == proxy_protocol_mode::off), tls_(std::move(tls)) {}

handshake_stage::result handshake_stage::step(int fd, std::span<std::byte> scratch) {
  result r;
  if (!proxy_done_) {
    r = read_proxy_header(fd, scratch);
    if (!proxy_done_) return r;  // rejected, or waiting for more
  }
  if (tls_) {
    std::string error;
    const io_result h = tls_->handshake(error);
    if (h.status == io_status::want_read) {
      r.what = kind::want_read;
      return r;
    }
    if (h.status == io_status::want_write) {
      r.what = kind::want_write;
      return r;
    }
    if (h.status != io_status::done) {
      result f = rejected(reject_reason::tls_handshake_failed, errc::tls_handshake_failed,
                          "TLS: " + error);
      f.bytes_in = r.bytes_in;
      f.proxy_completed = r.proxy_completed;
      return f;
    }
  }
  r.what = kind::done;
  return r;
}

// Peeks, so that nothing after the header is taken from the socket (it belongs to TLS or to
// the handler); then consumes exactly what belongs to the header.
handshake_stage::result handshake_stage::read_proxy_header(int fd, std::span<std::byte> scratch) {
  result r;
  // A rejection still counts the header bytes taken before it.
  const auto fail = [&r](reject_reason why, std::error_code ec, std::string debug = {}) {
    result f = rejected(why, ec, std::move(debug));
    f.bytes_in = r.bytes_in;
    return f;
  };
  for (int i = 0; i < max_reads_per_turn; ++i) {
    const ssize_t n = ::recv(fd, scratch.data(), scratch.size(), MSG_PEEK);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return r;
      return fail(reject_reason::proxy_header_invalid, {errno, std::system_category()});
    }
    if (n == 0) {  // closed before a whole header: a port scan, or not a proxy
      return fail(reject_reason::proxy_header_invalid, errc::proxy_header_invalid);
    }
    const std::size_t have = proxy_bytes_.size();
    proxy_bytes_.insert(proxy_bytes_.end(), scratch.data(), scratch.data() + n);
    proxy::result p = proxy::parse(proxy_bytes_, mode_);
    if (p.status == proxy::status::invalid) {
      return fail(reject_reason::proxy_header_invalid, errc::proxy_header_invalid,
                      "PROXY header: " + p.error);
    }
    // All peeked bytes belong to the header while it is incomplete; once complete, only its
    // remainder does.
    const std::size_t take = p.status == proxy::status::complete ? p.hdr.header_length - have
                                                                 : static_cast<std::size_t>(n);
    std::size_t got = 0;
    while (got < take) {
      const ssize_t m = ::recv(fd, scratch.data(), take - got, 0);
      if (m > 0) {
        got += static_cast<std::size_t>(m);
      } else if (m < 0 && errno == EINTR) {
        continue;
      } else {  // cannot happen for peeked bytes, short of a reset in between
        return fail(reject_reason::proxy_header_invalid, errc::proxy_header_invalid);
      }
    }
    r.bytes_in += take;
    if (p.status == proxy::status::complete) {
      proxy_ = std::move(p.hdr);
      proxy_bytes_ = {};
      proxy_done_ = true;
      r.proxy_completed = true;
      return r;
    }
  }
  r.what = kind::yield;  // a turn's worth taken, the header still incomplete
  return r;
}

}  // namespace atl::detail
