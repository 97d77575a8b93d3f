#pragma once
// What runs between admission and on_open when a listener asks for it: the PROXY header
// (read exactly, nothing after it taken from the socket), then the TLS handshake. The
// connection drives it on readiness, bounded by handshake_timeout, and holds its slot
// meanwhile; when it is done the stage hands over {PROXY header, transport} and is destroyed.
// A failure is a rejection (no handler has seen the connection). Io thread only.

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "atoll/proxy_protocol.hpp"
#include "atoll/stats.hpp"
#include "transport.hpp"

namespace atl::detail {

class handshake_stage {
 public:
  // `tls`: the session to bring up after the header (nullptr: plain).
  handshake_stage(proxy_protocol_mode proxy, std::unique_ptr<tls_transport> tls);

  struct result {
    // want_read / want_write: the socket would block (the next edge brings the stage back);
    // yield: a turn's worth of reads done and more may be there (come back by posted work).
    enum class kind : std::uint8_t { done, want_read, want_write, yield, rejected };
    kind what = kind::want_read;
    std::size_t bytes_in = 0;         // header bytes taken from the socket by this step
    bool proxy_completed = false;     // the PROXY header became complete in this step
    reject_reason why = reject_reason::proxy_header_invalid;  // when rejected
    std::error_code ec;                                          // when rejected
    std::string debug;  // when rejected: what to log at debug level ("" for nothing)
  };

  // Runs as far as the socket allows. `scratch`: the io thread's receive buffer.
  result step(int fd, std::span<std::byte> scratch);

  // The header read so far (complete once proxy_completed was reported).
  const std::optional<proxy::header>& proxy() const noexcept { return proxy_; }
  // After `done`: what the connection keeps.
  std::optional<proxy::header> take_proxy() noexcept { return std::move(proxy_); }
  std::unique_ptr<tls_transport> take_tls() noexcept { return std::move(tls_); }

 private:
  result read_proxy_header(int fd, std::span<std::byte> scratch);

  proxy_protocol_mode mode_;
  bool proxy_done_;
  std::vector<std::byte> proxy_bytes_;  // header bytes read so far
  std::optional<proxy::header> proxy_;
  std::unique_ptr<tls_transport> tls_;
};

}  // namespace atl::detail
