#pragma once
// Endpoints built from literals for tests: shared by the unit tests (endpoint, PROXY protocol)
// and the integration helpers.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atoll/endpoint.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace atl::test {

/// An IPv4 or IPv6 endpoint from an address literal; empty if `address` is neither.
inline atl::endpoint ip_endpoint(const char* address, std::uint16_t port) {
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, address, &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    return {reinterpret_cast<const sockaddr*>(&v4), sizeof v4};
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, address, &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    return {reinterpret_cast<const sockaddr*>(&v6), sizeof v6};
  }
  return {};
}

inline atl::endpoint unix_endpoint(const std::string& path) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
  return {reinterpret_cast<const sockaddr*>(&un),
          static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1)};
}

}  // namespace atl::test
