#pragma once
/// @file endpoint.hpp
/// A socket address (IPv4, IPv6 or Unix domain) as a small value type.

#include <cstdint>
#include <string>

#include <sys/socket.h>

namespace atl {

/// A socket address as the kernel reported it (getsockname/getpeername/accept).
/// Value type; cheap to copy (a `sockaddr_storage`). Thread-safe to read once constructed.
class endpoint {
 public:
  /// An empty endpoint (`family() == AF_UNSPEC`).
  endpoint() noexcept;
  /// Copies `len` bytes of `addr`; lengths beyond `sizeof(sockaddr_storage)` are truncated.
  endpoint(const sockaddr* addr, socklen_t len) noexcept;

  /// AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for an empty endpoint.
  int family() const noexcept { return storage_.ss_family; }
  bool empty() const noexcept { return family() == AF_UNSPEC; }
  bool is_ip() const noexcept;
  bool is_unix() const noexcept { return family() == AF_UNIX; }

  /// The IP address as text ("127.0.0.1", "::1"); empty for non-IP endpoints.
  std::string address() const;
  /// The TCP port in host byte order; 0 for non-IP endpoints.
  std::uint16_t port() const noexcept;
  /// The Unix socket path (empty when unnamed or not a Unix endpoint).
  std::string path() const;

  /// "127.0.0.1:4040", "[::1]:4040", "unix:/run/x.sock", or "" when empty.
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return size_; }

 private:
  sockaddr_storage storage_;
  socklen_t size_;
};

}  // namespace atl
