#include "atoll/socket_activation.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

namespace atl {

namespace {

// sd_listen_fds(3): passed descriptors start at 3.
constexpr int first_passed_fd = 3;

bool parse_number(const char* text, long& out) {
  if (text == nullptr || *text == '\0') return false;
  const std::string_view s(text);
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

}  // namespace

std::vector<inherited_socket> systemd_listen_fds(bool unset_environment) {
  std::vector<inherited_socket> out;
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  const char* names_text = std::getenv("LISTEN_FDNAMES");
  const std::string names = names_text != nullptr ? names_text : "";
  auto cleanup = [&] {
    if (!unset_environment) return;
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
  };
  if (pid_text == nullptr || fds_text == nullptr) {
    cleanup();
    return out;
  }
  long pid = 0;
  long count = 0;
  if (!parse_number(pid_text, pid) || pid <= 0) {
    cleanup();
    throw std::runtime_error(std::string("atoll: LISTEN_PID: not a pid: '") + pid_text + "'");
  }
  if (pid != static_cast<long>(::getpid())) {  // meant for another process (our parent)
    cleanup();
    return out;
  }
  if (!parse_number(fds_text, count) || count < 0 || count > 4096) {
    cleanup();
    throw std::runtime_error(std::string("atoll: LISTEN_FDS: not a count: '") + fds_text + "'");
  }
  std::size_t name_pos = 0;
  for (long i = 0; i < count; ++i) {
    const int fd = first_passed_fd + static_cast<int>(i);
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      cleanup();
      throw std::runtime_error("atoll: LISTEN_FDS: descriptor " + std::to_string(fd) +
                               " is not open");
    }
    inherited_socket s;
    s.fd = fd;
    if (name_pos <= names.size() && !names.empty()) {  // colon-separated, in fd order
      const std::size_t colon = names.find(':', name_pos);
      s.name = names.substr(name_pos, colon == std::string::npos ? std::string::npos
                                                                 : colon - name_pos);
      name_pos = colon == std::string::npos ? names.size() + 1 : colon + 1;
    }
    out.push_back(std::move(s));
  }
  cleanup();
  return out;
}

}  // namespace atl
