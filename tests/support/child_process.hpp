#pragma once
// Running an example server (atoll-http-hello, atoll-chat, ...) as a child process in an
// integration test: fork/exec with stdout (and optionally stderr) on pipes, bounded reads of
// its "listening on HOST:PORT" line, bounded waits for its exit, SIGKILL + reap on destruction.
// (The same helper as in echo_example_test.cpp, shared by the newer example tests.)

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atoll/endpoint.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace atl::test {

using child_clock = std::chrono::steady_clock;

inline std::chrono::milliseconds left_until(child_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - child_clock::now());
  return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

/// "127.0.0.1:4040" or "[::1]:4040" → endpoint; empty endpoint if it does not parse.
inline atl::endpoint parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return {};
  std::string host(text.substr(0, colon));
  const int port = std::atoi(std::string(text.substr(colon + 1)).c_str());
  if (port <= 0 || port > 65535) return {};
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &sa.sin6_addr) != 1)
      return {};
    return atl::endpoint(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return {};
  return atl::endpoint(reinterpret_cast<sockaddr*>(&sa), sizeof sa);
}

/// True when process `pid` has a handler installed for `sig` (the SigCgt mask of
/// /proc/PID/status). The server installs its stop-signal handlers in `run()`, just after it
/// printed its addresses: until then SIGTERM would kill it with the default action.
inline bool catches_signal(pid_t pid, int sig) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("SigCgt:", 0) == 0) {
      const unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      return ((mask >> (sig - 1)) & 1u) != 0;
    }
  }
  return false;
}

/// A child process (an example server) with its stdout (and optionally stderr) on pipes.
class child_process {
 public:
  child_process() = default;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() { kill_and_reap(); }

  /// fork + exec `binary args...`; false (with a gtest failure) if that fails.
  bool spawn(const char* binary, const std::vector<std::string>& args, bool capture_stderr) {
    out_.clear();
    err_.clear();
    // Everything exec needs is prepared before fork: after fork only async-signal-safe calls.
    std::vector<std::string> storage{binary};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : storage) argv.push_back(s.data());
    argv.push_back(nullptr);

    int out[2], err[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0) return fail("pipe2");
    if (capture_stderr && ::pipe2(err, O_CLOEXEC) != 0) return fail("pipe2");
    pid_ = ::fork();
    if (pid_ < 0) return fail("fork");
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      if (capture_stderr) ::dup2(err[1], STDERR_FILENO);
      ::execv(binary, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_fd_ = out[0];
    if (capture_stderr) {
      ::close(err[1]);
      err_fd_ = err[0];
    }
    return true;
  }

  /// The next line of the child's stdout (without '\n'), or nullopt on EOF or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = child_clock::now() + timeout;
    for (;;) {
      if (auto nl = out_.find('\n'); nl != std::string::npos) {
        std::string line = out_.substr(0, nl);
        out_.erase(0, nl + 1);
        return line;
      }
      if (!read_some(out_fd_, out_, deadline)) return std::nullopt;
    }
  }

  /// Reads stdout and stderr until both reach EOF or `timeout` passes.
  void read_to_end(std::chrono::milliseconds timeout) {
    const auto deadline = child_clock::now() + timeout;
    while (out_fd_ >= 0 && read_some(out_fd_, out_, deadline)) {
    }
    while (err_fd_ >= 0 && read_some(err_fd_, err_, deadline)) {
    }
  }

  /// Waits (bounded) for the child to exit; its wait status, or nullopt if it is still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = child_clock::now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (child_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  bool signal(int sig) const { return pid_ > 0 && ::kill(pid_, sig) == 0; }
  pid_t pid() const { return pid_; }

  void kill_and_reap() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    if (out_fd_ >= 0) ::close(std::exchange(out_fd_, -1));
    if (err_fd_ >= 0) ::close(std::exchange(err_fd_, -1));
  }

  /// Unread stdout (after `read_line` took the lines it wanted) and everything read of stderr.
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  static bool fail(const char* what) {
    ADD_FAILURE() << what << ": " << std::strerror(errno);
    return false;
  }

  /// One poll+read on `fd` into `buf`; false on EOF, error or deadline (then `fd` is done).
  bool read_some(int& fd, std::string& buf, child_clock::time_point deadline) {
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left_until(deadline).count()));
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    char tmp[4096];
    ssize_t r = ::read(fd, tmp, sizeof tmp);
    if (r < 0 && errno == EINTR) return true;
    if (r <= 0) {
      ::close(std::exchange(fd, -1));
      return false;
    }
    buf.append(tmp, static_cast<std::size_t>(r));
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
};

}  // namespace atl::test
