#include "listen_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config_validation.hpp"

namespace atl::detail {

namespace {

std::error_code last_errno() { return {errno, std::system_category()}; }

endpoint local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return endpoint(reinterpret_cast<sockaddr*>(&ss), len);
}

bool set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// A Unix socket file nobody accepts on (left by a crashed process) is replaced; a live one,
// or a file that is not a socket, is an error (EADDRINUSE), never silently taken over.
std::error_code clear_stale_unix_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return {};
  if (!S_ISSOCK(st.st_mode)) return std::make_error_code(std::errc::address_in_use);
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return last_errno();
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());
  const int rc = ::connect(probe, reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  const int err = errno;
  ::close(probe);
  if (rc == 0) return std::make_error_code(std::errc::address_in_use);
  if (err == ECONNREFUSED) ::unlink(path.c_str());
  return {};
}

void open_adopted(const listener_config& config, listen_sockets& out, std::error_code& ec,
                  std::string& what) {
  const int fd = config.adopt_fd;
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    ec = last_errno();
    what = "adopt_fd " + std::to_string(fd);
    return;
  }
  if (type != SOCK_STREAM) {
    ec = std::make_error_code(std::errc::not_supported);
    what = "adopt_fd " + std::to_string(fd) + " is not a stream socket";
    return;
  }
  if (!set_nonblocking(fd) || ::listen(fd, config.backlog) != 0) {
    ec = last_errno();
    what = "listen on adopt_fd " + std::to_string(fd);
    return;
  }
  out.adopted = true;
  // A dup, so the listener's own descriptor can be closed on suspend(); the adopted one
  // stays open until the final stop.
  out.fds.emplace_back(::dup(fd));
  if (!out.fds.back()) {
    ec = last_errno();
    what = "dup adopt_fd";
    return;
  }
  out.bound.push_back(local_address(fd));
}

void open_unix(const listener_config& config, listen_sockets& out, std::error_code& ec,
               std::string& what) {
  const std::string& path = config.unix_path;
  if (auto e = clear_stale_unix_socket(path)) {
    ec = e;
    what = "bind unix:" + path;
    return;
  }
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    ec = last_errno();
    what = "socket unix:" + path;
    return;
  }
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    ec = last_errno();
    what = "bind unix:" + path;
    return;
  }
  if (::listen(fd.get(), config.backlog) != 0) {
    ec = last_errno();
    what = "listen unix:" + path;
    ::unlink(path.c_str());
    return;
  }
  out.bound.push_back(local_address(fd.get()));
  out.fds.push_back(std::move(fd));
}

void open_tcp(const listener_config& config, std::size_t count, std::uint16_t port,
              listen_sockets& out, std::error_code& ec, std::string& what) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (!parse_host(config.host, port != 0 ? port : config.port, addr, addr_len)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    what = "host " + config.host;
    return;
  }
  auto fail = [&](std::error_code e, std::string op) {
    ec = e;
    what = std::move(op);
  };
  const std::size_t sockets = config.reuse_port ? count : 1;
  for (std::size_t i = 0; i < sockets; ++i) {
    const std::string where = endpoint(reinterpret_cast<sockaddr*>(&addr), addr_len).to_string();
    unique_fd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                          IPPROTO_TCP));
    if (!fd) return fail(last_errno(), "socket " + where);
    const int one = 1;
    // SO_REUSEADDR: restart without waiting for TIME_WAIT (as Ranch/Thousand Island force).
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (config.reuse_port &&
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      return fail(last_errno(), "SO_REUSEPORT " + where);
    }
    if (addr.ss_family == AF_INET6) {
      const int v6only = config.v6_only ? 1 : 0;
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
      return fail(last_errno(), "bind " + where);
    }
    if (::listen(fd.get(), config.backlog) != 0) return fail(last_errno(), "listen " + where);
    endpoint ep = local_address(fd.get());
    if (i == 0) {
      out.port = ep.port();
      // Join the port the kernel chose (port 0), for the other reuse_port sockets.
      if (addr.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(out.port);
      } else {
        reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(out.port);
      }
    }
    out.bound.push_back(ep);
    out.fds.push_back(std::move(fd));
  }
}

}  // namespace

listen_sockets open_listen_sockets(const listener_config& config, std::size_t count,
                                   std::uint16_t port, std::error_code& ec, std::string& what) {
  ec.clear();
  listen_sockets out;
  if (config.adopt_fd >= 0) {
    open_adopted(config, out, ec, what);
  } else if (!config.unix_path.empty()) {
    open_unix(config, out, ec, what);
  } else {
    open_tcp(config, count, port, out, ec, what);
  }
  if (ec) {
    out.fds.clear();
    out.bound.clear();
  }
  return out;
}

}  // namespace atl::detail
