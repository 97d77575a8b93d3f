// Integration tests of listening endpoints: IPv6, dual stack, Unix sockets, adopted
// descriptors, port 0, reuse_port, several listeners, bind failures, accepted-socket options.
#include "atoll/listener.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include <atoll/connection.hpp>
#include <atoll/error.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::connection;
using atl::handler;
using atl::server;
using atl::test::client;
using atl::test::echo_factory;
using atl::test::held_port;
using atl::test::loopback_listener;
using atl::test::outcome;
using atl::test::probe;
using atl::test::to_text;
using atl::test::wait_until;

// ---------------------------------------------------------------------------------------------
// IPv6

TEST(listener, serves_ipv6_loopback) {
  if (!atl::test::has_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.host = "::1";
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, echo_factory(p));
  s.start();

  const auto ep = s.local_endpoint(id);
  EXPECT_EQ(ep.family(), AF_INET6);
  EXPECT_EQ(ep.address(), "::1");
  EXPECT_NE(ep.port(), 0);
  EXPECT_EQ(ep.to_string(), "[::1]:" + std::to_string(ep.port()));

  auto c = client::connect(ep);
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(c.echo("over ipv6"));
  ASSERT_TRUE(p->wait_opens(1));
  EXPECT_EQ(p->nth(0).peer.family(), AF_INET6);
  EXPECT_EQ(p->nth(0).peer.address(), "::1");
}

TEST(listener, dual_stack_any_address_accepts_ipv4_clients) {
  if (!atl::test::has_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  auto cfg = loopback_listener();
  cfg.host = "::";
  cfg.v6_only = false;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, echo_factory());
  s.start();

  const auto port = s.local_endpoint(id).port();
  auto v4 = client::connect(atl::test::ip_endpoint("127.0.0.1", port));
  ASSERT_TRUE(v4.valid());
  EXPECT_TRUE(v4.echo("ipv4 client"));
  auto v6 = client::connect(atl::test::ip_endpoint("::1", port));
  ASSERT_TRUE(v6.valid());
  EXPECT_TRUE(v6.echo("ipv6 client"));
}

TEST(listener, v6_only_any_address_refuses_ipv4_clients) {
  if (!atl::test::has_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  auto cfg = loopback_listener();
  cfg.host = "::";
  cfg.v6_only = true;
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, echo_factory());
  s.start();

  const auto port = s.local_endpoint(id).port();
  auto v6 = client::connect(atl::test::ip_endpoint("::1", port));
  ASSERT_TRUE(v6.valid());
  EXPECT_TRUE(v6.echo("ipv6 client"));
  int err = 0;
  auto v4 = client::connect(atl::test::ip_endpoint("127.0.0.1", port), 1s, &err);
  EXPECT_FALSE(v4.valid());
  EXPECT_EQ(err, ECONNREFUSED);
}

// ---------------------------------------------------------------------------------------------
// Unix domain sockets

TEST(listener, serves_a_unix_socket_replacing_a_stale_file_and_removing_it_at_stop) {
  atl::test::temp_dir dir;
  ASSERT_TRUE(dir.valid());
  const std::string path = dir.file("atoll.sock");

  {  // A stale socket file: bound once, nobody listening any more.
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto ep = atl::test::unix_endpoint(path);
    ASSERT_EQ(::bind(fd, ep.data(), ep.size()), 0);
    ::close(fd);
    ASSERT_TRUE(atl::test::is_socket_file(path));
  }

  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.unix_path = path;
  server s(atl::test::threads(2));
  auto id = s.add_listener(cfg, echo_factory(p));
  s.start();

  const auto ep = s.local_endpoint(id);
  EXPECT_TRUE(ep.is_unix());
  EXPECT_EQ(ep.path(), path);
  EXPECT_EQ(ep.to_string(), "unix:" + path);
  EXPECT_EQ(ep.port(), 0);

  auto c = atl::test::connect_unix(path);
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(c.echo("over a unix socket"));
  auto c2 = client::connect(ep);
  ASSERT_TRUE(c2.valid());
  EXPECT_TRUE(c2.echo("via local_endpoint"));
  ASSERT_TRUE(p->wait_opens(2));
  EXPECT_TRUE(p->nth(0).peer.is_unix());
  EXPECT_EQ(p->nth(0).local.path(), path);

  s.stop();
  EXPECT_FALSE(atl::test::file_exists(path)) << "socket file left behind after stop";
  EXPECT_EQ(c.wait_closed(2s), outcome::eof);
}

TEST(listener, refuses_a_unix_path_where_another_server_is_accepting) {
  atl::test::temp_dir dir;
  ASSERT_TRUE(dir.valid());
  const std::string path = dir.file("busy.sock");

  server first(atl::test::threads(1));
  auto cfg = loopback_listener();
  cfg.unix_path = path;
  auto first_id = first.add_listener(cfg, echo_factory());
  first.start();

  server second(atl::test::threads(1));
  second.add_listener(cfg, echo_factory());
  std::error_code ec;
  second.start(ec);
  EXPECT_TRUE(ec) << "a live socket must not be replaced";
  EXPECT_FALSE(second.running());

  // The first server is untouched.
  auto c = atl::test::connect_unix(path);
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(c.echo("first still serves"));
  EXPECT_EQ(first.local_endpoint(first_id).path(), path);
}

// ---------------------------------------------------------------------------------------------
// Adopted descriptors

TEST(listener, serves_an_adopted_listening_descriptor) {
  held_port sock;  // socket + bind + listen, done by "systemd"
  ASSERT_TRUE(sock.valid());
  const auto port = sock.port();

  auto cfg = loopback_listener();
  cfg.adopt_fd = sock.take();
  const int fd = cfg.adopt_fd;
  server s(atl::test::threads(2));
  auto id = s.add_listener(cfg, echo_factory());
  s.start();

  EXPECT_EQ(s.local_endpoint(id).port(), port);
  EXPECT_EQ(s.local_endpoint(id).address(), "127.0.0.1");
  for (int i = 0; i < 4; ++i) {
    auto c = client::connect(atl::test::ip_endpoint("127.0.0.1", port));
    ASSERT_TRUE(c.valid());
    EXPECT_TRUE(c.echo("adopted " + std::to_string(i)));
  }
  s.stop();
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "the adopted descriptor is still open after stop";
  EXPECT_EQ(errno, EBADF);
}

// ---------------------------------------------------------------------------------------------
// Port 0, local endpoints

TEST(listener, port_zero_is_resolved_in_local_endpoint) {
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), echo_factory());
  EXPECT_TRUE(s.local_endpoints(id).empty());
  EXPECT_THROW(s.local_endpoint(id), std::logic_error);
  s.start();

  const auto ep = s.local_endpoint(id);
  EXPECT_EQ(ep.family(), AF_INET);
  EXPECT_EQ(ep.address(), "127.0.0.1");
  EXPECT_NE(ep.port(), 0);
  EXPECT_EQ(ep.to_string(), "127.0.0.1:" + std::to_string(ep.port()));
  ASSERT_EQ(s.local_endpoints(id).size(), 1u);
  EXPECT_EQ(s.local_endpoints(id)[0].to_string(), ep.to_string());
  EXPECT_THROW(s.local_endpoint(id + 1), std::out_of_range);

  auto stats = s.stats();
  ASSERT_EQ(stats.listeners.size(), 1u);
  ASSERT_EQ(stats.listeners[0].endpoints.size(), 1u);
  EXPECT_EQ(stats.listeners[0].endpoints[0].port(), ep.port());

  auto c = client::connect(ep);
  EXPECT_TRUE(c.echo("port zero"));
}

TEST(listener, localhost_means_ipv4_loopback) {
  auto cfg = loopback_listener();
  cfg.host = "localhost";
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, echo_factory());
  s.start();
  EXPECT_EQ(s.local_endpoint(id).address(), "127.0.0.1");
  auto c = client::connect(s.local_endpoint(id));
  EXPECT_TRUE(c.echo("localhost"));
}

// ---------------------------------------------------------------------------------------------
// reuse_port and several acceptors

TEST(listener, reuse_port_opens_one_socket_per_thread_on_the_same_port) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.reuse_port = true;
  server s(atl::test::threads(2));
  auto id = s.add_listener(cfg, echo_factory(p));
  s.start();

  auto eps = s.local_endpoints(id);
  ASSERT_EQ(eps.size(), 2u);
  EXPECT_NE(eps[0].port(), 0);
  EXPECT_EQ(eps[0].port(), eps[1].port());
  EXPECT_EQ(s.local_endpoint(id).port(), eps[0].port());

  constexpr int clients = 32;
  for (int i = 0; i < clients; ++i) {
    auto c = client::connect(eps[0]);
    ASSERT_TRUE(c.valid());
    ASSERT_TRUE(c.echo("client " + std::to_string(i))) << i;
  }
  ASSERT_TRUE(p->wait_opens(clients));
  std::set<std::size_t> used;
  for (const auto& [cid, r] : p->records()) used.insert(r.thread_index);
  EXPECT_EQ(used, (std::set<std::size_t>{0, 1})) << "the kernel should spread 32 clients";
  EXPECT_TRUE(wait_until([&] { return s.stats().listeners[id].accepted_total == clients; }));
}

TEST(listener, a_shared_socket_is_accepted_on_by_every_io_thread) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  server s(atl::test::threads(2));
  auto id = s.add_listener(cfg, echo_factory(p));
  s.start();
  EXPECT_EQ(s.local_endpoints(id).size(), 1u);

  // Hold the clients open so both acceptors get the chance to take some.
  constexpr int clients = 32;
  std::vector<client> cs;
  for (int i = 0; i < clients; ++i) {
    cs.push_back(client::connect(s.local_endpoint(id)));
    ASSERT_TRUE(cs.back().echo("c")) << i;
  }
  ASSERT_TRUE(p->wait_opens(clients));
  std::set<std::size_t> used;
  for (const auto& [cid, r] : p->records()) used.insert(r.thread_index);
  EXPECT_FALSE(used.empty());
  for (auto i : used) EXPECT_LT(i, 2u);
}

TEST(listener, num_acceptors_limits_which_threads_accept) {
  auto p = std::make_shared<probe>();
  auto cfg = loopback_listener();
  cfg.num_acceptors = 1;
  cfg.reuse_port = true;
  server s(atl::test::threads(2));
  auto id = s.add_listener(cfg, echo_factory(p));
  s.start();
  EXPECT_EQ(s.local_endpoints(id).size(), 1u);

  for (int i = 0; i < 16; ++i) {
    auto c = client::connect(s.local_endpoint(id));
    ASSERT_TRUE(c.echo("c")) << i;
  }
  ASSERT_TRUE(p->wait_opens(16));
  std::set<std::size_t> used;
  for (const auto& [cid, r] : p->records()) used.insert(r.thread_index);
  EXPECT_EQ(used.size(), 1u) << "one acceptor: every connection lives on its thread";
}

// ---------------------------------------------------------------------------------------------
// Several listeners

/// Answers every message with a fixed prefix, to tell listeners apart.
class tagging_handler : public handler {
 public:
  explicit tagging_handler(std::string tag) : tag_(std::move(tag)) {}
  void on_data(connection& c, std::span<const std::byte> data) override {
    c.send(tag_ + ":" + std::to_string(c.listener()) + ":" + to_text(data));
  }

 private:
  std::string tag_;
};

TEST(listener, several_listeners_each_use_their_own_handler) {
  auto cfg_a = loopback_listener();
  cfg_a.name = "alpha";
  auto cfg_b = loopback_listener();
  cfg_b.name = "beta";
  server s(atl::test::threads(2));
  auto a = s.add_listener(cfg_a, atl::test::make_factory<tagging_handler>(std::string("A")));
  auto b = s.add_listener(cfg_b, atl::test::make_factory<tagging_handler>(std::string("B")));
  auto e = s.add_listener(loopback_listener(), echo_factory());
  EXPECT_NE(a, b);
  s.start();

  EXPECT_NE(s.local_endpoint(a).port(), s.local_endpoint(b).port());
  auto ca = client::connect(s.local_endpoint(a));
  auto cb = client::connect(s.local_endpoint(b));
  auto ce = client::connect(s.local_endpoint(e));
  ASSERT_TRUE(ca.send("x"));
  ASSERT_TRUE(cb.send("y"));
  const std::string want_a = "A:" + std::to_string(a) + ":x";
  const std::string want_b = "B:" + std::to_string(b) + ":y";
  EXPECT_EQ(ca.read_exact(want_a.size()), want_a);
  EXPECT_EQ(cb.read_exact(want_b.size()), want_b);
  EXPECT_TRUE(ce.echo("plain"));

  auto stats = s.stats();
  ASSERT_EQ(stats.listeners.size(), 3u);
  EXPECT_EQ(stats.listeners[a].name, "alpha");
  EXPECT_EQ(stats.listeners[b].name, "beta");
  EXPECT_FALSE(stats.listeners[e].name.empty());
  EXPECT_TRUE(wait_until([&] {
    auto st = s.stats();
    return st.listeners[a].accepted_total == 1 && st.listeners[b].accepted_total == 1 &&
           st.listeners[e].accepted_total == 1;
  }));
}

// ---------------------------------------------------------------------------------------------
// Bind failures

TEST(listener, bind_failure_throws_system_error_naming_the_address) {
  held_port taken;
  ASSERT_TRUE(taken.valid());
  auto cfg = loopback_listener();
  cfg.port = taken.port();
  server s(atl::test::threads(1));
  s.add_listener(cfg, echo_factory());

  const std::string address = "127.0.0.1:" + std::to_string(taken.port());
  try {
    s.start();
    ADD_FAILURE() << "start() bound a port that is in use";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find(address), std::string::npos) << e.what();
    EXPECT_EQ(e.code(), std::errc::address_in_use) << e.code().message();
  }
  EXPECT_FALSE(s.running());
}

TEST(listener, bind_failure_is_reported_through_error_code_without_throwing) {
  held_port taken;
  ASSERT_TRUE(taken.valid());
  auto cfg = loopback_listener();
  cfg.port = taken.port();
  server s(atl::test::threads(1));
  s.add_listener(cfg, echo_factory());

  std::error_code ec;
  EXPECT_NO_THROW(s.start(ec));
  EXPECT_TRUE(ec);
  EXPECT_EQ(ec, std::errc::address_in_use) << ec.message();
  const std::string address = "127.0.0.1:" + std::to_string(taken.port());
  EXPECT_NE(s.last_error().find(address), std::string::npos) << s.last_error();
  EXPECT_FALSE(s.running());
}

TEST(listener, a_failed_bind_leaves_no_listener_bound) {
  held_port taken;
  ASSERT_TRUE(taken.valid());
  const auto free = atl::test::free_port();
  ASSERT_NE(free, 0);

  auto ok_cfg = loopback_listener();
  ok_cfg.port = free;
  auto bad_cfg = loopback_listener();
  bad_cfg.port = taken.port();
  server s(atl::test::threads(1));
  s.add_listener(ok_cfg, echo_factory());
  s.add_listener(bad_cfg, echo_factory());

  EXPECT_THROW(s.start(), std::system_error);
  EXPECT_TRUE(atl::test::port_is_free(free)) << "the first listener stayed bound";
}

// ---------------------------------------------------------------------------------------------
// Options of accepted sockets (observed on the server's own descriptor: same process)

/// The descriptor in this process whose local port is `local_port` and peer port `peer_port`
/// (the server's end of a test connection), or -1.
int find_server_socket(std::uint16_t local_port, std::uint16_t peer_port) {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    auto local = atl::test::local_of(static_cast<int>(fd));
    auto peer = atl::test::peer_of(static_cast<int>(fd));
    if (local.is_ip() && peer.is_ip() && local.port() == local_port && peer.port() == peer_port) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(d);
  return found;
}

struct observed_options {
  int nodelay = -1;
  int keepalive = -1;
  linger lg{-1, -1};
};

observed_options options_of_accepted_socket(const atl::listener_config& cfg) {
  server s(atl::test::threads(1));
  auto id = s.add_listener(cfg, echo_factory());
  s.start();
  auto c = client::connect(s.local_endpoint(id));
  EXPECT_TRUE(c.echo("x"));
  observed_options o;
  int fd = find_server_socket(s.local_endpoint(id).port(), atl::test::local_of(c.fd()).port());
  EXPECT_GE(fd, 0) << "could not find the accepted socket in /proc/self/fd";
  if (fd < 0) return o;
  socklen_t len = sizeof o.nodelay;
  ::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &o.nodelay, &len);
  len = sizeof o.keepalive;
  ::getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &o.keepalive, &len);
  len = sizeof o.lg;
  ::getsockopt(fd, SOL_SOCKET, SO_LINGER, &o.lg, &len);
  return o;
}

TEST(listener, accepted_sockets_have_tcp_nodelay_and_no_linger_by_default) {
  auto o = options_of_accepted_socket(loopback_listener());
  EXPECT_NE(o.nodelay, 0);
  EXPECT_EQ(o.keepalive, 0);
  EXPECT_EQ(o.lg.l_onoff, 0) << "SO_LINGER must never be set by default";
}

TEST(listener, socket_options_are_applied_to_accepted_sockets) {
  auto cfg = loopback_listener();
  cfg.socket.tcp_nodelay = false;
  cfg.socket.keep_alive = true;
  cfg.socket.linger = std::chrono::seconds{0};
  auto o = options_of_accepted_socket(cfg);
  EXPECT_EQ(o.nodelay, 0);
  EXPECT_NE(o.keepalive, 0);
  EXPECT_NE(o.lg.l_onoff, 0);
  EXPECT_EQ(o.lg.l_linger, 0);
}

// ---------------------------------------------------------------------------------------------
// suspend / resume keep the port (port 0 included)

TEST(listener, resume_rebinds_the_same_port_after_suspend) {
  server s(atl::test::threads(1));
  auto id = s.add_listener(loopback_listener(), echo_factory());
  s.start();
  const auto port = s.local_endpoint(id).port();
  auto live = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(live.echo("before"));

  s.suspend(id);
  EXPECT_TRUE(s.local_endpoints(id).empty());
  EXPECT_TRUE(s.stats().listeners[id].suspended);
  int err = 0;
  EXPECT_FALSE(client::connect(atl::test::ip_endpoint("127.0.0.1", port), 1s, &err).valid());
  EXPECT_TRUE(live.echo("during"));  // live connections carry on

  std::error_code ec;
  s.resume(id, ec);
  ASSERT_FALSE(ec) << ec.message() << " " << s.last_error();
  EXPECT_EQ(s.local_endpoint(id).port(), port);
  auto c = client::connect(atl::test::ip_endpoint("127.0.0.1", port));
  EXPECT_TRUE(c.echo("after"));
}

}  // namespace
