// Listening sockets that outlive a process: systemd socket activation (LISTEN_FDS /
// LISTEN_PID, `atl::systemd_listen_fds()` and atoll-echo adopting the passed socket) and a
// zero-downtime restart on one port with SO_REUSEPORT (`--reuse-port`).
//
// The restart test runs in a network namespace of its own with net.ipv4.tcp_migrate_req=1:
// without it, Linux resets the connections that sit in the old server's accept queue when
// that server closes its listening socket, however briefly they were there (see the README,
// "Deploying behind a load balancer"). The namespace needs CAP_SYS_ADMIN (root); without it
// the test runs in the current namespace if tcp_migrate_req is already 1, else it is skipped.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atoll/socket_activation.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/haproxy.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;
using atl::test::echo_process;
using atl::test::logged_process;
using atl::test::outcome;
using atl::test::wait_until;

constexpr auto startup_timeout = 20s;
constexpr auto exit_timeout = 15s;

/// A listening TCP socket on 127.0.0.1, any port (close-on-exec), closed on destruction.
class listening_socket {
 public:
  listening_socket() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const atl::endpoint any = atl::test::ip_endpoint("127.0.0.1", 0);
    if (fd_ < 0 || ::bind(fd_, any.data(), any.size()) != 0 || ::listen(fd_, 128) != 0) {
      close();
      return;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    address_ = atl::endpoint(reinterpret_cast<const sockaddr*>(&ss), len);
  }
  listening_socket(const listening_socket&) = delete;
  listening_socket& operator=(const listening_socket&) = delete;
  ~listening_socket() { close(); }
  int fd() const { return fd_; }
  const atl::endpoint& address() const { return address_; }
  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
  atl::endpoint address_;
};

/// Puts `fd` at descriptor `target` for the life of this object, keeping whatever was there
/// (e.g. a descriptor of the test runner) aside and restoring it afterwards.
class fd_at {
 public:
  fd_at(int fd, int target) : target_(target) {
    if (::fcntl(target, F_GETFD) >= 0) saved_ = ::fcntl(target, F_DUPFD_CLOEXEC, 100);
    ok_ = ::dup2(fd, target) == target;
  }
  fd_at(const fd_at&) = delete;
  fd_at& operator=(const fd_at&) = delete;
  ~fd_at() {
    if (saved_ >= 0) {
      ::dup2(saved_, target_);
      ::close(saved_);
    } else {
      ::close(target_);
    }
  }
  bool ok() const { return ok_; }

 private:
  int target_;
  int saved_ = -1;
  bool ok_ = false;
};

/// Sets or removes the three variables for one test, and removes them again at the end.
class listen_env {
 public:
  listen_env() { clear(); }
  ~listen_env() { clear(); }
  static void set(const std::string& fds, const std::string& pid, const char* names = nullptr) {
    ::setenv("LISTEN_FDS", fds.c_str(), 1);
    ::setenv("LISTEN_PID", pid.c_str(), 1);
    if (names) ::setenv("LISTEN_FDNAMES", names, 1);
  }
  static void clear() {
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDNAMES");
  }
};

/// getsockname of `fd` as text.
std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return atl::endpoint(reinterpret_cast<const sockaddr*>(&ss), len).to_string();
}

/// The kernel's counters of listen-queue migration and aborted connections (this thread's
/// network namespace), for failure messages.
std::string tcp_counters() {
  std::ifstream f("/proc/net/netstat");
  std::string names, values, out;
  while (std::getline(f, names) && std::getline(f, values)) {
    std::istringstream n(names), v(values);
    std::string name, value;
    while (n >> name && v >> value)
      if (name.find("Migrate") != std::string::npos || name.find("Listen") != std::string::npos ||
          name.find("AbortOnClose") != std::string::npos)
        out += " " + name + "=" + value;
  }
  return out;
}

bool close_on_exec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

// ---------------------------------------------------------------------------------------------
// atl::systemd_listen_fds() in this process

TEST(systemd_listen_fds, returns_the_passed_descriptors_with_names_and_unsets_the_variables) {
  listen_env env;
  listening_socket a, b;
  ASSERT_GE(a.fd(), 0);
  ASSERT_GE(b.fd(), 0);
  fd_at three(a.fd(), 3), four(b.fd(), 4);
  ASSERT_TRUE(three.ok() && four.ok());
  ::fcntl(3, F_SETFD, 0);  // as a service manager passes them: inheritable
  ::fcntl(4, F_SETFD, 0);
  listen_env::set("2", std::to_string(::getpid()), "echo:admin");

  const auto sockets = atl::systemd_listen_fds();
  ASSERT_EQ(sockets.size(), 2u);
  EXPECT_EQ(sockets[0].fd, 3);
  EXPECT_EQ(sockets[0].name, "echo");
  EXPECT_EQ(sockets[1].fd, 4);
  EXPECT_EQ(sockets[1].name, "admin");
  EXPECT_TRUE(close_on_exec(3)) << "children must not inherit them";
  EXPECT_TRUE(close_on_exec(4));
  EXPECT_EQ(::getenv("LISTEN_FDS"), nullptr);
  EXPECT_EQ(::getenv("LISTEN_PID"), nullptr);
  EXPECT_EQ(::getenv("LISTEN_FDNAMES"), nullptr);
}

TEST(systemd_listen_fds, without_names_gives_empty_names_and_can_keep_the_variables) {
  listen_env env;
  listening_socket a;
  ASSERT_GE(a.fd(), 0);
  fd_at three(a.fd(), 3);
  ASSERT_TRUE(three.ok());
  listen_env::set("1", std::to_string(::getpid()));

  const auto sockets = atl::systemd_listen_fds(/*unset_environment=*/false);
  ASSERT_EQ(sockets.size(), 1u);
  EXPECT_EQ(sockets[0].fd, 3);
  EXPECT_EQ(sockets[0].name, "");
  ASSERT_NE(::getenv("LISTEN_FDS"), nullptr);
  EXPECT_STREQ(::getenv("LISTEN_FDS"), "1");
}

TEST(systemd_listen_fds, is_empty_without_the_variables_or_when_they_are_for_another_process) {
  listen_env env;
  EXPECT_TRUE(atl::systemd_listen_fds().empty());

  listen_env::set("1", std::to_string(::getpid() + 1));
  EXPECT_TRUE(atl::systemd_listen_fds().empty()) << "LISTEN_PID of another process";
}

TEST(systemd_listen_fds, throws_on_malformed_variables) {
  listen_env env;
  listen_env::set("abc", std::to_string(::getpid()));
  EXPECT_THROW(atl::systemd_listen_fds(), std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// atoll-echo started the way systemd starts a socket-activated service

class echo_binary_test : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef ATOLL_ECHO_BINARY
    GTEST_SKIP() << "the examples are not built (ATOLL_ECHO_BINARY undefined)";
#else
    binary_ = ATOLL_ECHO_BINARY;
#endif
  }
  std::string binary_;
};

using socket_activation = echo_binary_test;

TEST_F(socket_activation, atoll_echo_serves_on_the_socket_passed_as_fd_3) {
  // The test plays the service manager: it binds, then starts atoll-echo with the socket as
  // fd 3, LISTEN_FDS=1 and LISTEN_PID=<the child's pid>; --port 0 must then be ignored.
  listening_socket sock;
  ASSERT_GE(sock.fd(), 0);
  echo_process echo;
  atl::test::spawn_options opts;
  opts.pass_fd = sock.fd();
  opts.listen_pid = true;
  opts.env = {"LISTEN_FDS=1", "LISTEN_FDNAMES=echo"};
  ASSERT_TRUE(echo.start(binary_, {"--port", "0", "--threads", "2"}, startup_timeout, opts));
  EXPECT_EQ(echo.address.to_string(), sock.address().to_string())
      << "the printed address is the passed socket's";
  sock.close();  // only the server holds it now

  for (int n = 0; n < 3; ++n) {
    client c = client::connect(sock.address());
    ASSERT_TRUE(c.valid());
    EXPECT_TRUE(c.echo("activated " + std::to_string(n) + "\n"));
  }

  ASSERT_TRUE(echo.wait_catches_sigterm(startup_timeout));
  ASSERT_TRUE(echo.proc.signal(SIGTERM));
  const auto status = echo.proc.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << echo.proc.dump();
  client after = client::connect(sock.address(), 1s);
  EXPECT_FALSE(after.valid()) << "the socket is closed with the server";
}

TEST_F(socket_activation, variables_for_another_process_are_ignored) {
  // LISTEN_PID names someone else (e.g. inherited from a parent): atoll-echo binds --port.
  listening_socket sock;
  ASSERT_GE(sock.fd(), 0);
  echo_process echo;
  atl::test::spawn_options opts;
  opts.pass_fd = sock.fd();
  opts.env = {"LISTEN_FDS=1", "LISTEN_PID=1"};
  ASSERT_TRUE(echo.start(binary_, {"--port", "0", "--threads", "1"}, startup_timeout, opts));
  EXPECT_NE(echo.address.port(), sock.address().port());
  client c = client::connect(echo.address);
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(c.echo("bound itself\n"));
}

// ---------------------------------------------------------------------------------------------
// Zero-downtime restart with SO_REUSEPORT

/// Moves the calling thread (and the processes it forks) into a new network namespace with
/// the loopback up and net.ipv4.tcp_migrate_req=1, and back on destruction.
class migrating_netns {
 public:
  migrating_netns() {
    original_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (original_ < 0) {
      fail("open /proc/thread-self/ns/net");
      return;
    }
    if (::unshare(CLONE_NEWNET) != 0) {
      fail("unshare(CLONE_NEWNET)");
      return;
    }
    entered_ = true;
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    bool up = s >= 0 && ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
    if (up) {
      ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
      up = ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
    }
    if (s >= 0) ::close(s);
    if (!up) {
      fail("bring lo up");
      return;
    }
    // /proc/sys/net is the opening thread's namespace.
    std::ofstream("/proc/sys/net/ipv4/tcp_migrate_req") << "1\n";
    if (!migrating()) {
      fail("set net.ipv4.tcp_migrate_req=1");
      return;
    }
    ok_ = true;
  }
  migrating_netns(const migrating_netns&) = delete;
  migrating_netns& operator=(const migrating_netns&) = delete;
  ~migrating_netns() {
    if (entered_ && ::setns(original_, CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "migrating_netns: setns back failed: %s\n", std::strerror(errno));
      std::abort();  // every later test would run in the wrong namespace
    }
    if (original_ >= 0) ::close(original_);
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  /// net.ipv4.tcp_migrate_req of the calling thread's namespace is 1.
  static bool migrating() {
    std::ifstream f("/proc/sys/net/ipv4/tcp_migrate_req");
    int v = 0;
    return f >> v && v == 1;
  }

 private:
  void fail(const char* what) { error_ = std::string(what) + ": " + std::strerror(errno); }

  int original_ = -1;
  bool entered_ = false;
  bool ok_ = false;
  std::string error_;
};

using reuse_port_restart = echo_binary_test;

TEST_F(reuse_port_restart, a_new_server_takes_over_the_port_without_a_failed_connection) {
  std::unique_ptr<migrating_netns> ns;
  if (!migrating_netns::migrating()) {
    ns = std::make_unique<migrating_netns>();
    if (!ns->ok())
      GTEST_SKIP() << "net.ipv4.tcp_migrate_req is 0 and no namespace of our own (" << ns->error()
                   << "): the old server's accept queue would be reset";
  }

  const std::vector<std::string> flags{"--reuse-port",      "--threads",          "2",
                                       "--log-connections", "--drain-timeout-ms", "5000"};
  auto args = [&](std::uint16_t port) {
    std::vector<std::string> a{"--port", std::to_string(port)};
    a.insert(a.end(), flags.begin(), flags.end());
    return a;
  };
  echo_process old_server;
  ASSERT_TRUE(old_server.start(binary_, args(0), startup_timeout));
  ASSERT_TRUE(old_server.wait_catches_sigterm(startup_timeout));
  const atl::endpoint address = old_server.address;

  // One fresh connection per request, as fast as they go, bounded in count and time.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex m;
  std::vector<std::string> failures;
  std::thread load([&] {
    const auto deadline = std::chrono::steady_clock::now() + 25s;
    for (int n = 0; n < 100'000 && !stop.load() && std::chrono::steady_clock::now() < deadline;
         ++n) {
      const std::string msg = "request " + std::to_string(n) + "\n";
      int err = 0;
      client c = client::connect(address, 2s, &err);
      std::string why;
      if (!c.valid()) {
        why = "connect: " + std::string(std::strerror(err));
      } else if (!c.send(msg)) {
        why = "send: " + std::string(std::strerror(errno));
      } else {
        std::string got;
        outcome end = outcome::data;
        while (got.size() < msg.size() && (end = c.read_some(got, 2s)) == outcome::data) {
        }
        if (got != msg)
          why = "got " + std::to_string(got.size()) + " bytes, then " + atl::test::to_string(end) +
                " (from " + local_address(c.fd()) + ")";
      }
      if (why.empty()) {
        ++ok;
      } else {
        ++failed;
        std::lock_guard lock(m);
        failures.push_back(msg.substr(0, msg.size() - 1) + ": " + why);
      }
    }
  });
  auto ok_at_least = [&](int n, std::chrono::milliseconds timeout) {
    return wait_until([&] { return ok.load() >= n || failed.load() > 20; }, timeout) &&
           ok.load() >= n;
  };

  EXPECT_TRUE(ok_at_least(200, 10s));
  // The new server binds the same port beside the old one; the kernel spreads new
  // connections over both.
  echo_process new_server;
  ASSERT_TRUE(new_server.start(binary_, args(address.port()), startup_timeout));
  EXPECT_EQ(new_server.address.port(), address.port());
  EXPECT_TRUE(wait_until([&] { return new_server.opens_from_address("127.0.0.1") >= 1; }, 10s))
      << "the new server got no connection\n"
      << new_server.proc.dump();

  // The old one stops accepting, closes its listening sockets (what was queued there migrates
  // to the new one's), finishes its connections and exits 0.
  ASSERT_TRUE(old_server.proc.signal(SIGTERM));
  const auto status = old_server.proc.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value()) << "the old server did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << old_server.proc.dump();
  const int ok_at_exit = ok.load();
  EXPECT_TRUE(ok_at_least(ok_at_exit + 200, 10s)) << "served by the new server alone";

  stop = true;
  load.join();
  EXPECT_EQ(failed.load(), 0) << [&] {
    std::string s;
    for (std::size_t i = 0; i < failures.size() && i < 20; ++i) s += "  " + failures[i] + "\n";
    s += "kernel:" + tcp_counters() + "\n";
    s += "the old server's log, without its open/close lines:\n";
    for (const auto& l : old_server.proc.lines(logged_process::stream::err))
      if (l.rfind("atoll-echo: ", 0) != 0) s += "  " + l + "\n";
    for (const auto& f : failures) {
      const auto from = f.find("(from ");
      if (from == std::string::npos) continue;
      const std::string peer = f.substr(from + 6, f.size() - from - 7);
      for (auto* srv : {&old_server, &new_server})
        for (const auto& l : srv->proc.lines(logged_process::stream::err))
          if (l.find("peer=" + peer) != std::string::npos)
            s += std::string(srv == &old_server ? "  old: " : "  new: ") + l + "\n";
    }
    return s;
  }();
  EXPECT_GE(old_server.opens_from_address("127.0.0.1"), 1u);
  std::printf("reuse-port restart: %d requests, each on a new connection, %d failed\n", ok.load(),
              failed.load());
}

}  // namespace
