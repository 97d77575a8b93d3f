#pragma once
// The seam between atoll and the few system calls whose failures must be testable
// deterministically (STYLE.md habit 9, after fmt's FMT_POSIX_CALL): tests swap these pointers
// to inject EMFILE, ECONNABORTED, ... without exhausting real resources.

#include <sys/socket.h>
#include <unistd.h>

namespace atl::detail::sys {

struct calls {
  int (*accept4)(int fd, sockaddr* addr, socklen_t* len, int flags) = ::accept4;
  int (*close)(int fd) = ::close;
};

// The calls in use. Tests may assign to it before `server::start()` and must restore it
// (`calls{}`) after `stop()`; it is not synchronised.
calls& current() noexcept;

}  // namespace atl::detail::sys
