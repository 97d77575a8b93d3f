#include "atoll/endpoint.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace atl {

endpoint::endpoint() noexcept : storage_{}, size_(0) { storage_.ss_family = AF_UNSPEC; }

endpoint::endpoint(const sockaddr* addr, socklen_t len) noexcept : endpoint() {
  if (addr == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return;
  size_ = std::min<socklen_t>(len, sizeof storage_);
  std::memcpy(&storage_, addr, size_);
}

bool endpoint::is_ip() const noexcept { return family() == AF_INET || family() == AF_INET6; }

std::string endpoint::address() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&storage_);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
  } else if (family() == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&storage_);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

std::uint16_t endpoint::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string endpoint::path() const {
  if (!is_unix()) return {};
  auto* a = reinterpret_cast<const sockaddr_un*>(&storage_);
  const std::size_t offset = offsetof(sockaddr_un, sun_path);
  if (size_ <= offset) return {};
  std::size_t n = size_ - offset;
  // Abstract sockets start with NUL; report them with a leading '@' as ss(8) does.
  if (a->sun_path[0] == '\0') return n > 1 ? "@" + std::string(a->sun_path + 1, n - 1) : "";
  return std::string(a->sun_path, ::strnlen(a->sun_path, n));
}

std::string endpoint::to_string() const {
  switch (family()) {
    case AF_INET: return address() + ":" + std::to_string(port());
    case AF_INET6: return "[" + address() + "]:" + std::to_string(port());
    case AF_UNIX: return "unix:" + path();
    default: return {};
  }
}

}  // namespace atl
