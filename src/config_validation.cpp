#include "config_validation.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <fmt/format.h>
#include <stdexcept>

namespace atl::detail {

bool parse_host(const std::string& host, std::uint16_t port, sockaddr_storage& out,
                socklen_t& len) {
  std::string h = host == "localhost" ? "127.0.0.1" : host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  out = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
    return true;
  }
  out = {};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

namespace {

[[noreturn]] void refuse(const std::string& field, const std::string& why) {
  throw std::invalid_argument("atoll: " + field + ": " + why);
}

void validate_listener(const listener_config& c, std::size_t i, const server_config& s) {
  const std::string at = fmt::format("listener[{}]", i);
  auto field = [&](const char* name) { return at + "." + name; };

  if (c.adopt_fd >= 0 && !c.unix_path.empty()) {
    refuse(field("adopt_fd"), "set together with unix_path; choose one endpoint");
  }
  if (c.adopt_fd < -1) refuse(field("adopt_fd"), "must be a descriptor >= 0, or -1 for none");
  if (c.adopt_fd < 0 && c.unix_path.empty()) {
    if (c.host.empty()) refuse(field("host"), "empty endpoint (set host, unix_path or adopt_fd)");
    sockaddr_storage ss;
    socklen_t len;
    if (!parse_host(c.host, c.port, ss, len)) {
      refuse(field("host"), fmt::format("'{}' is not an IP address literal (no DNS lookups "
                                        "are made; use e.g. 127.0.0.1, ::1, 0.0.0.0, ::)",
                                        c.host));
    }
  }
  if (!c.unix_path.empty()) {
    if (c.unix_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      refuse(field("unix_path"), fmt::format("longer than {} bytes",
                                             sizeof(sockaddr_un{}.sun_path) - 1));
    }
    if (c.reuse_port) refuse(field("reuse_port"), "not supported for Unix domain sockets");
  }
  if (c.backlog <= 0) refuse(field("backlog"), fmt::format("must be > 0 (got {})", c.backlog));
  if (c.num_acceptors > s.io_threads) {
    refuse(field("num_acceptors"),
           fmt::format("must be <= io_threads ({}); got {}", s.io_threads, c.num_acceptors));
  }
  if (c.socket.linger && c.socket.linger->count() != 0) {
    refuse(field("socket.linger"),
           fmt::format("only 0 s (reset on close) is allowed; a lingering close() blocks an io "
                       "thread (got {} s)",
                       c.socket.linger->count()));
  }
  if (c.socket.receive_buffer_size < 0) refuse(field("socket.receive_buffer_size"), "must be >= 0");
  if (c.socket.send_buffer_size < 0) refuse(field("socket.send_buffer_size"), "must be >= 0");
  if (c.max_connections == 0) refuse(field("max_connections"), "must be > 0");
  if (c.retry_count > 0) {
    if (c.retry_wait.count() <= 0) {
      refuse(field("retry_wait"), fmt::format("must be > 0 when retry_count > 0 (got {} ms)",
                                              c.retry_wait.count()));
    }
    if (c.max_waiting == 0) refuse(field("max_waiting"), "must be > 0 when retry_count > 0");
    if (c.retry_count > 1'000'000) refuse(field("retry_count"), "must be <= 1000000");
    // The deadline is now + retry_count x retry_wait: keep it far from overflow.
    constexpr std::int64_t max_wait_ms = 24LL * 3600 * 1000;
    if (c.retry_wait.count() > max_wait_ms / static_cast<std::int64_t>(c.retry_count)) {
      refuse(field("retry_wait"), fmt::format("retry_count x retry_wait must be <= 24 h (got {} "
                                              "x {} ms)",
                                              c.retry_count, c.retry_wait.count()));
    }
  } else if (c.retry_wait.count() < 0) {
    refuse(field("retry_wait"), "must not be negative");
  }
  if (c.read_timeout.count() < 0) {
    refuse(field("read_timeout"),
           fmt::format("must be >= 0 (0 = none); got {} ms", c.read_timeout.count()));
  }
  if (c.shutdown_timeout.count() < 0) {
    refuse(field("shutdown_timeout"),
           fmt::format("must be >= 0 (0 = abort at once); got {} ms", c.shutdown_timeout.count()));
  }
  if (c.handshake_timeout.count() <= 0) {
    refuse(field("handshake_timeout"),
           fmt::format("must be > 0 (got {} ms)", c.handshake_timeout.count()));
  }
  if (c.max_connection_age.count() < 0) {
    refuse(field("max_connection_age"),
           fmt::format("must be >= 0 (0 = none); got {} ms", c.max_connection_age.count()));
  }
  if (c.max_connection_age_jitter.count() < 0) {
    refuse(field("max_connection_age_jitter"),
           fmt::format("must be >= 0; got {} ms", c.max_connection_age_jitter.count()));
  }
  for (std::size_t a = 0; a < c.alarms.size(); ++a) {
    const std::string af = fmt::format("{}.alarms[{}]", at, a);
    if (c.alarms[a].threshold == 0) refuse(af + ".threshold", "must be > 0");
    if (c.alarms[a].cooldown.count() < 0) refuse(af + ".cooldown", "must be >= 0");
    if (!c.alarms[a].callback) refuse(af + ".callback", "empty");
  }
  if (!c.tls.enabled()) {
    if (!c.tls.key_file.empty() || !c.tls.sni_certificates.empty() ||
        c.tls.verify_clients != client_certificates::none || !c.tls.alpn.empty() ||
        !c.tls.ocsp_response_file.empty()) {
      refuse(field("tls.cert_chain_file"), "empty, but other tls options are set");
    }
  } else if (c.tls.key_file.empty()) {
    refuse(field("tls.key_file"), "empty (the certificate's private key is needed)");
  }
  if (c.max_write_buffer == 0) refuse(field("max_write_buffer"), "must be > 0");
  if (c.write_low_water >= c.max_write_buffer) {
    refuse(field("write_low_water"), fmt::format("must be < max_write_buffer ({}); got {}",
                                                 c.max_write_buffer, c.write_low_water));
  }
}

}  // namespace

void validate(const server_config& s, const std::vector<listener_config>& listeners) {
  if (s.io_threads == 0) refuse("server_config.io_threads", "must be at least 1");
  if (s.io_threads > 1024) refuse("server_config.io_threads", "must be <= 1024");
  if (s.receive_buffer_size < 1024) {
    refuse("server_config.receive_buffer_size",
           fmt::format("must be at least 1024 bytes (got {})", s.receive_buffer_size));
  }
  if (s.loop_lag_interval.count() <= 0) refuse("server_config.loop_lag_interval", "must be > 0");
  if (s.warn_interval.count() <= 0) refuse("server_config.warn_interval", "must be > 0");
  if (listeners.empty()) refuse("server", "no listeners (call add_listener before start)");
  for (std::size_t i = 0; i < listeners.size(); ++i) validate_listener(listeners[i], i, s);
}

}  // namespace atl::detail
