#pragma once
// Listen sockets of one listener: created, bound and listening (TCP, Unix path) or adopted
// (listener_config::adopt_fd, e.g. from systemd socket activation). Only the sockets; what to
// do with the connections they accept is the listener's and the admission policy's business.

#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include "atoll/endpoint.hpp"
#include "atoll/listener.hpp"
#include "unique_fd.hpp"

namespace atl::detail {

struct listen_sockets {
  std::vector<unique_fd> fds;   // non-blocking, listening; an adopted socket as a dup
  std::vector<endpoint> bound;  // the local address of each of `fds`
  // TCP: the port the first socket got (the kernel's choice for port 0), set as soon as it is
  // bound, even if a later socket fails; 0 otherwise.
  std::uint16_t port = 0;
  // config.adopt_fd is listening (set once listen(2) on it succeeded, even if the dup failed):
  // the descriptor is the caller's to close at the final stop, never to unlink or re-bind.
  bool adopted = false;
};

// Opens the listen sockets `config` asks for, in this order: `adopt_fd` if >= 0 (made
// non-blocking and listening with `backlog`), else `unix_path` (a stale socket file nobody
// accepts on is replaced; a live one, or a file that is not a socket, is EADDRINUSE), else
// `host`:`port` over TCP with SO_REUSEADDR, one socket, or `count` sockets on one port with
// `reuse_port`. `port`, when not 0, replaces config.port (a re-bind after suspend() keeps the
// port the kernel chose). On failure `ec` is set, `fds`/`bound` are empty (nothing stays bound;
// a Unix file created here is removed) and `what` names the option or address and the
// operation, e.g. "bind 127.0.0.1:80", "adopt_fd 7 is not a stream socket".
listen_sockets open_listen_sockets(const listener_config& config, std::size_t count,
                                   std::uint16_t port, std::error_code& ec, std::string& what);

}  // namespace atl::detail
