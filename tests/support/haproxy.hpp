#pragma once
// Deployment tests with real processes: HAProxy (Debian's `haproxy`) in front of atoll-echo
// servers, socket activation, SO_REUSEPORT restarts.
//
//   logged_process  fork/exec a server with its stdout and stderr read as they come by a
//                   background thread, kept line by line (every line, for the whole run) and
//                   awaited with deadlines; optional extra environment and a descriptor passed
//                   as fd 3 with LISTEN_PID set to the child's own pid (systemd's protocol).
//   echo_process    atoll-echo as a logged_process: its address, its --log-connections lines.
//   haproxy         HAProxy started from a config written to a private temp dir
//                   (`haproxy -f cfg -db`), awaited until its runtime API socket answers,
//                   queried for server states, killed at the end.
// Every wait is bounded; nothing sleeps to synchronise (condition variables and poll).

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atoll/endpoint.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/child_process.hpp"
#include "support/endpoints.hpp"
#include "support/test_client.hpp"

extern char** environ;

namespace atl::test {

// ---------------------------------------------------------------------------------------------
// A child process whose output is read as it comes

/// What `logged_process::spawn` sets up besides argv.
struct spawn_options {
  /// "NAME=value" entries added to (or replacing in) the inherited environment.
  std::vector<std::string> env;
  /// A descriptor the child gets as fd 3 (close-on-exec cleared), or -1.
  int pass_fd = -1;
  /// Also set LISTEN_PID to the child's pid (what a service manager does with LISTEN_FDS).
  bool listen_pid = false;
};

/// A child process with stdout and stderr on pipes, both read continuously by a background
/// thread (so a chatty child never blocks on a full pipe) and kept as lines. Killed (SIGKILL)
/// and reaped on destruction.
class logged_process {
 public:
  enum class stream { out, err };

  logged_process() = default;
  logged_process(const logged_process&) = delete;
  logged_process& operator=(const logged_process&) = delete;
  ~logged_process() { kill_and_reap(); }

  /// fork + execve `binary args...`; false (with a gtest failure) if that fails.
  bool spawn(const std::string& binary, const std::vector<std::string>& args,
             const spawn_options& opts = {}) {
    kill_and_reap();
    // Everything exec needs is prepared before fork: after fork only async-signal-safe calls.
    std::vector<std::string> argv_storage{binary};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_storage) argv.push_back(s.data());
    argv.push_back(nullptr);

    std::vector<std::string> env_storage;
    auto overridden = [&](std::string_view entry) {
      const auto name = entry.substr(0, entry.find('=') + 1);
      if (opts.listen_pid && name == "LISTEN_PID=") return true;
      for (const auto& e : opts.env)
        if (std::string_view(e).substr(0, e.find('=') + 1) == name) return true;
      return false;
    };
    for (char** e = environ; e && *e; ++e)
      if (!overridden(*e)) env_storage.emplace_back(*e);
    for (const auto& e : opts.env) env_storage.push_back(e);
    // The child writes its own pid into this entry's digits (getpid() is async-signal-safe).
    std::size_t listen_pid_index = env_storage.size();
    if (opts.listen_pid) env_storage.push_back("LISTEN_PID=" + std::string(20, '\0'));
    std::vector<char*> envp;
    for (auto& s : env_storage) envp.push_back(s.data());
    envp.push_back(nullptr);
    char* listen_pid_digits = opts.listen_pid ? envp[listen_pid_index] + 11 : nullptr;

    int out[2], err[2], wake[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 ||
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, wake) != 0)
      return fail("pipe2/socketpair");
    const int pass_fd = opts.pass_fd;
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) return fail("fork");
    if (pid_ == 0) {
      // Die with the test (also when it crashes or a ctest timeout kills it), never orphaned.
      // (PDEATHSIG follows the forking thread: tests spawn from their main thread.)
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      if (pass_fd >= 0) {
        if (pass_fd == 3)
          ::fcntl(3, F_SETFD, 0);  // dup2(3, 3) would leave close-on-exec set
        else
          ::dup2(pass_fd, 3);
      }
      if (listen_pid_digits) {
        char digits[24];
        int n = 0;
        for (auto pid = static_cast<unsigned long>(::getpid()); pid > 0 || n == 0; pid /= 10)
          digits[n++] = static_cast<char>('0' + pid % 10);
        for (int i = 0; i < n; ++i) listen_pid_digits[i] = digits[n - 1 - i];
        listen_pid_digits[n] = '\0';
      }
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    wake_fd_ = wake[1];
    {
      std::lock_guard lock(m_);
      out_lines_.clear();
      err_lines_.clear();
      partial_[0].clear();
      partial_[1].clear();
      eof_ = false;
    }
    reader_ = std::thread([this, o = out[0], e = err[0], w = wake[0]] { read_loop(o, e, w); });
    return true;
  }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  bool signal(int sig) const { return pid_ > 0 && ::kill(pid_, sig) == 0; }

  /// Every complete line of one stream so far (without '\n').
  std::vector<std::string> lines(stream s) const {
    std::lock_guard lock(m_);
    return s == stream::out ? out_lines_ : err_lines_;
  }
  std::size_t line_count(stream s) const {
    std::lock_guard lock(m_);
    return (s == stream::out ? out_lines_ : err_lines_).size();
  }

  /// The first line at index >= `from` of stream `s` for which `pred` holds, waiting up to
  /// `timeout` for it; nullopt on timeout or when the stream ended without one. `*index`
  /// receives the line's index.
  std::optional<std::string> wait_line(stream s,
                                       const std::function<bool(const std::string&)>& pred,
                                       std::chrono::milliseconds timeout, std::size_t from = 0,
                                       std::size_t* index = nullptr) {
    std::unique_lock lock(m_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::size_t next = from;
    for (;;) {
      const auto& v = s == stream::out ? out_lines_ : err_lines_;
      for (; next < v.size(); ++next) {
        if (pred(v[next])) {
          if (index) *index = next;
          return v[next];
        }
      }
      if (eof_) return std::nullopt;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        // One last look: lines may have arrived with the timeout.
        const auto& w = s == stream::out ? out_lines_ : err_lines_;
        for (; next < w.size(); ++next)
          if (pred(w[next])) {
            if (index) *index = next;
            return w[next];
          }
        return std::nullopt;
      }
    }
  }

  /// Waits for a line starting with `prefix`.
  std::optional<std::string> wait_prefix(stream s, std::string_view prefix,
                                         std::chrono::milliseconds timeout, std::size_t from = 0) {
    return wait_line(
        s, [prefix](const std::string& l) { return l.rfind(prefix, 0) == 0; }, timeout, from);
  }

  /// Waits (bounded) for the child to exit; its wait status, or nullopt if it is still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (pid_ <= 0) return exit_status_;
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        exit_status_ = status;
        return status;
      }
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      // No event for a child's exit short of SIGCHLD handling: poll every 5 ms, bounded.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  /// SIGKILL (if still running), reap, and stop the reader thread.
  void kill_and_reap() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      exit_status_ = status;
      pid_ = -1;
    }
    stop_reader();
  }

  /// Everything the child wrote so far, for failure messages.
  std::string dump() const {
    std::lock_guard lock(m_);
    std::string s = "stdout:\n";
    for (const auto& l : out_lines_) s += "  " + l + "\n";
    s += "stderr:\n";
    for (const auto& l : err_lines_) s += "  " + l + "\n";
    return s;
  }

 private:
  static bool fail(const char* what) {
    ADD_FAILURE() << what << ": " << std::strerror(errno);
    return false;
  }

  void stop_reader() {
    if (wake_fd_ >= 0) {
      // A grandchild may still hold the pipes open: wake the reader explicitly.
      // (A socket, not a pipe: MSG_NOSIGNAL, as the reader may have ended already.)
      const char x = 'x';
      [[maybe_unused]] auto n = ::send(wake_fd_, &x, 1, MSG_NOSIGNAL);
    }
    if (reader_.joinable()) reader_.join();
    if (wake_fd_ >= 0) ::close(std::exchange(wake_fd_, -1));
  }

  void read_loop(int out_fd, int err_fd, int wake_fd) {
    int fds[2] = {out_fd, err_fd};
    for (;;) {
      pollfd p[3] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (fds[0] < 0 && fds[1] < 0) break;
      const int n = ::poll(p, 3, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || (p[2].revents != 0)) break;
      for (int i = 0; i < 2; ++i) {
        if (fds[i] < 0 || p[i].revents == 0) continue;
        char buf[4096];
        const ssize_t r = ::read(fds[i], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          ::close(std::exchange(fds[i], -1));
          continue;
        }
        append(i, std::string_view(buf, static_cast<std::size_t>(r)));
      }
    }
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
    ::close(wake_fd);
    {
      std::lock_guard lock(m_);
      eof_ = true;
    }
    cv_.notify_all();
  }

  void append(int which, std::string_view data) {
    {
      std::lock_guard lock(m_);
      auto& partial = partial_[which];
      auto& lines = which == 0 ? out_lines_ : err_lines_;
      partial.append(data);
      std::size_t start = 0;
      for (std::size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1)
        lines.push_back(partial.substr(start, nl - start));
      partial.erase(0, start);
    }
    cv_.notify_all();
  }

  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  int wake_fd_ = -1;
  std::thread reader_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::string> out_lines_, err_lines_;
  std::string partial_[2];
  bool eof_ = false;
};

// ---------------------------------------------------------------------------------------------
// atoll-echo

/// atoll-echo as a child process: started, its "listening on" address read, and its
/// `--log-connections` lines ("atoll-echo: open id=N peer=ADDR") searchable.
class echo_process {
 public:
  /// Starts `binary args...` and waits for "listening on HOST:PORT"; false (with a gtest
  /// failure, the child's output attached) if it does not come within `timeout`.
  bool start(const std::string& binary, const std::vector<std::string>& args,
             std::chrono::milliseconds timeout, const spawn_options& opts = {}) {
    if (!proc.spawn(binary, args, opts)) return false;
    const auto line = proc.wait_prefix(logged_process::stream::out, "listening on ", timeout);
    if (!line) {
      ADD_FAILURE() << "atoll-echo printed no 'listening on' line\n" << proc.dump();
      return false;
    }
    address = parse_endpoint(std::string_view(*line).substr(13));
    if (address.empty()) {
      ADD_FAILURE() << "unparsable: " << *line;
      return false;
    }
    return true;
  }

  /// Waits until the server handles SIGTERM (it installs the handler in run(), just after
  /// printing its addresses), so a SIGTERM means "drain", never the default action.
  bool wait_catches_sigterm(std::chrono::milliseconds timeout) {
    return wait_until([&] { return catches_signal(proc.pid(), SIGTERM); }, timeout);
  }

  /// "atoll-echo: open id=N peer=<peer>" was logged (waiting up to `timeout`).
  bool wait_opened_from(const atl::endpoint& peer, std::chrono::milliseconds timeout) {
    const std::string needle = " peer=" + peer.to_string();
    return proc
        .wait_line(
            logged_process::stream::err,
            [&](const std::string& l) {
              return l.rfind("atoll-echo: open ", 0) == 0 && l.size() >= needle.size() &&
                     l.compare(l.size() - needle.size(), needle.size(), needle) == 0;
            },
            timeout)
        .has_value();
  }
  /// Same without waiting.
  bool opened_from(const atl::endpoint& peer) {
    return wait_opened_from(peer, std::chrono::milliseconds(0));
  }

  /// Number of "open" lines whose peer address (without port) is `address`.
  std::size_t opens_from_address(const std::string& address) const {
    std::size_t n = 0;
    const std::string v4 = " peer=" + address + ":";
    const std::string v6 = " peer=[" + address + "]:";
    for (const auto& l : proc.lines(logged_process::stream::err))
      if (l.rfind("atoll-echo: open ", 0) == 0 &&
          (l.find(v4) != std::string::npos || l.find(v6) != std::string::npos))
        ++n;
    return n;
  }

  logged_process proc;
  atl::endpoint address;
};

// ---------------------------------------------------------------------------------------------
// HAProxy

/// The haproxy binary, or "" when it is not installed (`apt-get install haproxy`).
inline std::string haproxy_binary() {
  for (const char* p : {"/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

/// A private temporary directory, removed with its contents on destruction.
class scratch_dir {
 public:
  scratch_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/atoll-deploy-XXXXXX";
    if (char* p = ::mkdtemp(tmpl.data())) path_ = p;
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

/// Sends one command to a Unix stream socket (HAProxy's runtime API, non-interactive mode:
/// one command, the answer, then HAProxy closes) and returns the answer; nullopt on error
/// or timeout.
inline std::optional<std::string> unix_request(const std::string& path, const std::string& cmd,
                                               std::chrono::milliseconds timeout) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  if (path.size() >= sizeof un.sun_path) return std::nullopt;
  std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
  const atl::endpoint ep(reinterpret_cast<const sockaddr*>(&un),
                         static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1));
  client c = client::connect(ep, timeout);
  if (!c.valid() || !c.send(cmd + "\n")) return std::nullopt;
  std::string answer;
  if (c.wait_closed(timeout, &answer) != outcome::eof) return std::nullopt;
  return answer;
}

/// HAProxy run by a test: the config goes to a private temp dir; `start` runs
/// `haproxy -f <cfg> -db` (foreground, no daemon) and waits until its runtime API answers
/// (by then every `bind` of the config is listening). Killed on destruction.
class haproxy {
 public:
  const std::string& dir() const { return dir_.path(); }
  /// The runtime API socket path; the config must contain
  /// `stats socket <admin_socket()> level admin`.
  std::string admin_socket() const { return dir_.file("admin.sock"); }

  /// Writes `config` and starts HAProxy; false when it does not come up within `timeout`
  /// (with a gtest failure and HAProxy's output if `report`).
  bool start(const std::string& config, std::chrono::milliseconds timeout, bool report = true) {
    const std::string cfg = dir_.file("haproxy.cfg");
    {
      std::ofstream f(cfg);
      f << config;
      if (!f) {
        ADD_FAILURE() << "cannot write " << cfg;
        return false;
      }
    }
    if (!proc_.spawn(haproxy_binary(), {"-f", cfg, "-db"})) return false;
    const bool up = wait_until(
        [&] {
          if (proc_.wait_exit(std::chrono::milliseconds(0))) return true;  // died: stop waiting
          return unix_request(admin_socket(), "show info", std::chrono::milliseconds(500))
              .has_value();
        },
        timeout);
    if (!up || !proc_.running()) {
      if (report)
        ADD_FAILURE() << "haproxy did not start\nconfig:\n" << config << "\n" << proc_.dump();
      proc_.kill_and_reap();
      return false;
    }
    return true;
  }

  /// One runtime API command ("show servers state be", "disable server be/s1", ...).
  std::optional<std::string> command(const std::string& cmd) {
    return unix_request(admin_socket(), cmd, std::chrono::milliseconds(2000));
  }

  /// srv_op_state of `server` in `backend` from "show servers state": 0 stopped (down),
  /// 1 starting, 2 running (up), 3 stopping; nullopt if not found.
  std::optional<int> server_state(const std::string& backend, const std::string& server) {
    const auto answer = command("show servers state " + backend);
    if (!answer) return std::nullopt;
    std::istringstream in(*answer);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      // be_id be_name srv_id srv_name srv_addr srv_op_state ...
      std::istringstream fields(line);
      std::string be_id, be_name, srv_id, srv_name, srv_addr;
      int op_state = -1;
      if (fields >> be_id >> be_name >> srv_id >> srv_name >> srv_addr >> op_state &&
          be_name == backend && srv_name == server)
        return op_state;
    }
    return std::nullopt;
  }

  /// Waits until HAProxy sees `server` up (running) or down (stopped), as its checks decide.
  bool wait_server(const std::string& backend, const std::string& server, bool up,
                   std::chrono::milliseconds timeout) {
    return wait_until(
        [&] {
          const auto s = server_state(backend, server);
          return s && (up ? *s == 2 : *s == 0);
        },
        timeout);
  }

  logged_process& process() { return proc_; }
  const logged_process& process() const { return proc_; }

 private:
  scratch_dir dir_;
  logged_process proc_;
};

/// A free TCP port on 127.0.0.1 a moment ago (for configs that need a number up front).
inline std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  std::uint16_t port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) ::close(fd);
  return port;
}

/// Connects from `source` (an address of the loopback range, port 0 = any) to `to`, so the
/// client's address differs from the proxy's own (127.0.0.1). `*from` gets the bound source
/// address (getsockname). Invalid client on failure.
inline client connect_from(const char* source, const atl::endpoint& to,
                           std::chrono::milliseconds timeout, atl::endpoint* from = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return client{};
  const atl::endpoint src = ip_endpoint(source, 0);
  if (::bind(fd, src.data(), src.size()) != 0) {
    ::close(fd);
    return client{};
  }
  // Connect with a deadline: non-blocking connect + poll, then back to blocking.
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, to.data(), to.size());
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
      rc = 0;
  }
  if (rc != 0) {
    ::close(fd);
    return client{};
  }
  ::fcntl(fd, F_SETFL, flags);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (from) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    *from = atl::endpoint(reinterpret_cast<const sockaddr*>(&ss), len);
  }
  return client{fd};
}

}  // namespace atl::test
