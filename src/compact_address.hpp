#pragma once
// A peer or local address in 32 bytes instead of sockaddr_storage's 128: connections keep two
// of them, and memory per idle connection is a goal (≤ 512 bytes at 10k connections).

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "atoll/endpoint.hpp"

namespace atl::detail {

class compact_address {
 public:
  compact_address() noexcept { std::memset(&u_, 0, sizeof u_); }
  // IP addresses are kept whole; for other families (Unix) only the family is kept.
  compact_address(const sockaddr* sa, socklen_t len) noexcept : compact_address() {
    if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
      len_ = len < static_cast<socklen_t>(sizeof u_) ? len : static_cast<socklen_t>(sizeof u_);
      std::memcpy(&u_, sa, len_);
    } else {
      u_.sa.sa_family = sa->sa_family;
      len_ = sizeof(sa_family_t);
    }
  }
  int family() const noexcept { return u_.sa.sa_family; }
  endpoint to_endpoint() const noexcept { return len_ ? endpoint(&u_.sa, len_) : endpoint(); }

 private:
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } u_;
  socklen_t len_ = 0;
};

}  // namespace atl::detail
