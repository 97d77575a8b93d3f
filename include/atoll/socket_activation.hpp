#pragma once
/// @file socket_activation.hpp
/// Listening sockets handed over by a service manager (systemd's `LISTEN_FDS` protocol) or a
/// parent process, for `listener_config::adopt_fd`.

#include <string>
#include <vector>

namespace atl {

/// A descriptor passed with the systemd protocol, and its name (`LISTEN_FDNAMES`, empty if
/// none was given).
struct inherited_socket {
  int fd = -1;
  std::string name;
};

/// The descriptors passed by systemd socket activation: when `LISTEN_PID` is this process's
/// pid, descriptors 3 .. 3+`LISTEN_FDS`-1 (each marked close-on-exec, so children do not
/// inherit them). Empty when the variables are absent or meant for another process. With
/// `unset_environment` (default) the three variables are removed, as sd_listen_fds(1) does,
/// so child processes do not take them for theirs. Call it once, before starting threads
/// (it changes the environment). Throws std::runtime_error if the variables are malformed.
std::vector<inherited_socket> systemd_listen_fds(bool unset_environment = true);

}  // namespace atl
