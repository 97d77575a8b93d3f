// HAProxy (Debian's `haproxy`) in front of three atoll-echo processes, as in the README's
// "Deploying behind a load balancer": `send-proxy-v2` to servers started with
// `--proxy-protocol v2`, `option tcp-check` health checks that carry a PROXY v2 LOCAL header
// (`check-send-proxy`), `retries 3` and `option redispatch 1`. Each test starts its own
// HAProxy and servers on loopback ports and kills them at the end; every wait is bounded.
// Skipped when haproxy is not installed or the examples are not built.
//
// What HAProxy's TCP mode does and does not retry matters here: `retries` and `redispatch`
// cover connections the server *refuses* (nothing listens: a server that is draining or
// dead). A connection the server accepts and then closes (atoll at its limit with
// retry_count 0) counts as established and is not retried; it is the health check, which gets
// the same prompt close, that takes a full server out of rotation.

#include "support/haproxy.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atoll/endpoint.hpp>
#include <atoll/proxy_protocol.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/test_client.hpp"
#include "support/tls_certs.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;
using atl::test::echo_process;
using atl::test::logged_process;
using atl::test::outcome;
using atl::test::wait_until;

// Generous bounds: the binaries may be built with TSan, which starts and runs slower.
constexpr auto startup_timeout = 20s;
constexpr auto exit_timeout = 15s;
constexpr auto state_timeout = 5s;  // checks run every 100 ms with fall 1 / rise 1
constexpr auto reply_timeout = 3s;
constexpr std::size_t server_count = 3;
// The test's clients connect from 127.0.0.2, HAProxy from 127.0.0.1: an address that reaches
// a server's log as 127.0.0.2 can only have come from the PROXY header.
constexpr const char* client_address = "127.0.0.2";

/// Sends `msg` and reads until as many bytes came back, the connection ended, or `timeout`.
/// Returns what came back; `*end` says how the read ended (data = complete).
std::string round_trip(client& c, std::string_view msg, std::chrono::milliseconds timeout,
                       outcome* end, bool* sent) {
  *sent = c.send(msg);
  std::string got;
  *end = outcome::data;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.size() < msg.size()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      *end = outcome::timeout;
      break;
    }
    *end = c.read_some(got, left);
    if (*end != outcome::data) break;
  }
  return got;
}

/// A keep-alive client through HAProxy that reconnects every `requests_per_connection`
/// requests (so new connections keep being spread over the servers) and retries a request
/// once on a fresh connection when its connection closed before any byte of the reply: the
/// rule HTTP clients apply to an idle keep-alive connection the server closed. Any other
/// outcome (a second close, a partial or wrong reply, a timeout) is a failed request.
class keep_alive_client {
 public:
  keep_alive_client(atl::endpoint frontend, int requests_per_connection)
      : frontend_(frontend), per_connection_(requests_per_connection) {}

  /// True if `msg` came back whole; `*why` says why not.
  bool request(const std::string& msg, int& retries, std::string* why) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!c_.valid() || used_ >= per_connection_) {
        c_ = atl::test::connect_from(client_address, frontend_, reply_timeout);
        used_ = 0;
        if (!c_.valid()) {
          *why = "connect to haproxy failed";
          return false;
        }
      }
      ++used_;
      outcome end{};
      bool sent = false;
      const std::string got = round_trip(c_, msg, reply_timeout, &end, &sent);
      if (got == msg) return true;
      c_.close();
      if (got.empty() && attempt == 0 && (end == outcome::eof || end == outcome::reset || !sent)) {
        ++retries;  // closed before any byte of the reply: retry once on a new connection
        continue;
      }
      *why = "'" + msg.substr(0, msg.size() - 1) + "': got " + std::to_string(got.size()) +
             " bytes, then " + atl::test::to_string(end) + (attempt ? " (after a retry)" : "");
      return false;
    }
    return false;
  }

 private:
  atl::endpoint frontend_;
  int per_connection_;
  int used_ = 0;
  client c_;
};

/// A fresh connection through HAProxy: true if `msg` is echoed within `reply_timeout`.
bool one_shot(const atl::endpoint& frontend, const std::string& msg, atl::endpoint* from) {
  client c = atl::test::connect_from(client_address, frontend, reply_timeout, from);
  return c.valid() && c.echo(msg, reply_timeout);
}

class haproxy_cluster : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef ATOLL_ECHO_BINARY
    GTEST_SKIP() << "the examples are not built (ATOLL_ECHO_BINARY undefined)";
#else
    echo_binary_ = ATOLL_ECHO_BINARY;
#endif
    if (atl::test::haproxy_binary().empty())
      GTEST_SKIP() << "haproxy is not installed (apt-get install haproxy)";
  }

  /// The flags every server runs with (plus `extra`).
  static std::vector<std::string> echo_args(std::uint16_t port,
                                            const std::vector<std::string>& extra) {
    std::vector<std::string> args{
        "--port", std::to_string(port), "--threads",          "2",    "--proxy-protocol",
        "v2",     "--log-connections",  "--drain-timeout-ms", "5000", "--read-timeout-ms",
        "20000"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  bool start_echo(std::size_t i, std::uint16_t port, const std::vector<std::string>& extra = {}) {
    echo_[i] = std::make_unique<echo_process>();
    return echo_[i]->start(echo_binary_, echo_args(port, extra), startup_timeout) &&
           echo_[i]->wait_catches_sigterm(startup_timeout);
  }

  /// HAProxy's config for the three servers (the README's, with test-sized timings).
  std::string config() const {
    std::string c;
    auto line = [&c](const std::string& l) { c += l + "\n"; };
    line("global");
    line("  stats socket " + hp_.admin_socket() + " mode 600 level admin");
    line("  log stderr format short local0 info");
    line("defaults");
    line("  mode tcp");
    line("  log global");
    line("  option tcplog");
    line("  timeout connect 1s");
    line("  timeout client 30s");
    line("  timeout server 30s");
    line("  timeout check 1s");
    line("  retries 3");
    line("  option redispatch 1");
    line("frontend fe");
    line("  bind 127.0.0.1:" + std::to_string(frontend_.port()));
    line("  default_backend echo");
    line("backend echo");
    line("  balance roundrobin");
    line("  option tcp-check");
    line("  tcp-check send-binary 70696e670a");    // "ping\n"
    line("  tcp-check expect binary 70696e670a");  // echoed
    line("  default-server send-proxy-v2 check-send-proxy check inter 100 fall 1 rise 1");
    for (std::size_t i = 0; i < server_count; ++i)
      line("  server e" + std::to_string(i) + " 127.0.0.1:" + std::to_string(ports_[i]) +
           server_options_);
    return c;
  }

  /// Three servers (`extra[i]` added to server i's flags), then HAProxy; waits until HAProxy
  /// sees every server up.
  void start_cluster(std::vector<std::vector<std::string>> extra = {}) {
    extra.resize(server_count);
    for (std::size_t i = 0; i < server_count; ++i) {
      ASSERT_TRUE(start_echo(i, 0, extra[i]));
      ports_[i] = echo_[i]->address.port();
    }
    // The frontend's port was free a moment ago; should another test take it meanwhile,
    // HAProxy exits at once and we pick another.
    bool started = false;
    for (int attempt = 1; attempt <= 3 && !started; ++attempt) {
      const std::uint16_t port = atl::test::free_loopback_port();
      ASSERT_NE(port, 0);
      frontend_ = atl::test::ip_endpoint("127.0.0.1", port);
      started = hp_.start(config(), startup_timeout, /*report=*/attempt == 3);
    }
    ASSERT_TRUE(started);
    for (std::size_t i = 0; i < server_count; ++i)
      ASSERT_TRUE(hp_.wait_server("echo", name(i), true, state_timeout))
          << name(i) << " not up\n"
          << hp_.process().dump() << echo_[i]->proc.dump();
  }

  static std::string name(std::size_t i) { return "e" + std::to_string(i); }

  /// The index of the server whose log has an "open" from `peer`, waiting up to `timeout`;
  /// server_count if none.
  std::size_t server_of(const atl::endpoint& peer, std::chrono::milliseconds timeout) {
    std::size_t found = server_count;
    wait_until(
        [&] {
          for (std::size_t i = 0; i < server_count; ++i)
            if (echo_[i] && echo_[i]->opened_from(peer)) {
              found = i;
              return true;
            }
          return false;
        },
        timeout);
    return found;
  }

  std::string diagnostics() const {
    std::string s = "haproxy:\n" + hp_log();
    for (std::size_t i = 0; i < server_count; ++i)
      if (echo_[i]) s += name(i) + ":\n" + echo_[i]->proc.dump();
    return s;
  }
  std::string hp_log() const {
    std::string s;
    for (const auto& l : hp_.process().lines(logged_process::stream::err)) s += "  " + l + "\n";
    return s;
  }

  std::string echo_binary_;
  std::string server_options_;  // appended to every `server` line
  std::unique_ptr<echo_process> echo_[server_count];
  std::uint16_t ports_[server_count] = {};
  atl::endpoint frontend_;
  atl::test::haproxy hp_;  // declared last: killed first
};

TEST_F(haproxy_cluster, servers_see_the_real_client_address_from_the_proxy_v2_header) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::size_t per_server[server_count] = {};
  for (int n = 0; n < 6; ++n) {
    atl::endpoint from;
    ASSERT_TRUE(one_shot(frontend_, "who am i " + std::to_string(n) + "\n", &from))
        << diagnostics();
    ASSERT_EQ(from.address(), client_address);
    // The server's handler saw the client's own address and port (as the client's
    // getsockname reports them), not HAProxy's 127.0.0.1.
    const std::size_t i = server_of(from, 3s);
    ASSERT_LT(i, server_count) << "no server logged peer=" << from.to_string() << "\n"
                               << diagnostics();
    ++per_server[i];
  }
  for (std::size_t i = 0; i < server_count; ++i)
    EXPECT_GE(per_server[i], 1u) << "round robin reaches every server";

  // The health checks carry a PROXY v2 header too (check-send-proxy): a LOCAL one, so the
  // servers admit them with the proxy's real address, 127.0.0.1.
  for (std::size_t i = 0; i < server_count; ++i)
    EXPECT_TRUE(wait_until([&] { return echo_[i]->opens_from_address("127.0.0.1") >= 1; }, 3s))
        << name(i) << " logged no health check\n"
        << echo_[i]->proc.dump();
}

TEST_F(haproxy_cluster, tls_servers_read_the_proxy_header_before_the_tls_handshake) {
  // HAProxy speaks TLS to the servers (`ssl`), its checks too; the PROXY header goes first,
  // in clear, as the spec requires.
  const auto& certs = atl::test::test_certs();
  ASSERT_TRUE(certs.ok) << certs.error;
  server_options_ = " ssl verify none sni str(localhost)";
  const std::vector<std::string> tls{"--tls-cert", certs.server_cert, "--tls-key",
                                     certs.server_key};
  ASSERT_NO_FATAL_FAILURE(start_cluster({tls, tls, tls}));
  for (int n = 0; n < 6; ++n) {
    atl::endpoint from;
    ASSERT_TRUE(one_shot(frontend_, "over tls " + std::to_string(n) + "\n", &from))
        << diagnostics();
    EXPECT_LT(server_of(from, 3s), server_count) << "no server logged peer=" << from.to_string();
  }
}

TEST_F(haproxy_cluster, max_connection_age_ends_long_lived_connections_so_clients_rebalance) {
  const std::vector<std::string> age{"--max-connection-age-ms", "300"};
  ASSERT_NO_FATAL_FAILURE(start_cluster({age, age, age}));
  client c = atl::test::connect_from(client_address, frontend_, reply_timeout);
  ASSERT_TRUE(c.valid());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.echo("long-lived\n", reply_timeout));
  // The server says goodbye after its echo (a graceful close, passed on by HAProxy) ...
  EXPECT_EQ(c.wait_closed(5s), outcome::eof);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  // ... and the client's next connection is balanced afresh.
  EXPECT_TRUE(one_shot(frontend_, "reconnected\n", nullptr));
}

TEST_F(haproxy_cluster,
       a_server_at_its_limit_closes_at_once_and_its_check_sends_clients_elsewhere) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({{"--max-connections", "1"}}));

  // Hold e0's only slot with a direct connection (it needs a PROXY header like any other).
  const auto header = atl::proxy::build_v2(
      atl::proxy::command::proxy, atl::test::ip_endpoint("192.0.2.1", 1234), echo_[0]->address);
  const std::string header_text(reinterpret_cast<const char*>(header.data()), header.size());
  // A health check may hold the slot for a moment: then this one is refused; try again.
  client held;
  const bool holding = wait_until(
      [&] {
        held = client::connect(echo_[0]->address);
        return held.valid() && held.send(header_text) && held.echo("holding\n", reply_timeout);
      },
      5s);
  ASSERT_TRUE(holding) << echo_[0]->proc.dump();

  // Over the limit with retry_count 0: closed at once, never left hanging.
  {
    client extra = client::connect(echo_[0]->address);
    ASSERT_TRUE(extra.valid());
    const auto t0 = std::chrono::steady_clock::now();
    extra.send(header_text + "over\n");  // may already fail if the close came first
    const outcome end = extra.wait_closed(3s);
    EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << atl::test::to_string(end);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "closed promptly";
  }

  // The health check gets the same prompt close, so HAProxy takes e0 out of rotation.
  ASSERT_TRUE(hp_.wait_server("echo", "e0", false, state_timeout)) << diagnostics();

  // 50 clients in a row: every one served by the others, none waits.
  const std::size_t before = echo_[0]->opens_from_address(client_address);
  int served = 0;
  for (int n = 0; n < 50; ++n) {
    const auto t0 = std::chrono::steady_clock::now();
    if (one_shot(frontend_, "client " + std::to_string(n) + "\n", nullptr)) ++served;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "client " << n << " waited";
  }
  EXPECT_EQ(served, 50) << diagnostics();
  EXPECT_EQ(echo_[0]->opens_from_address(client_address), before) << "nothing reached e0";

  // The slot frees up: the next check passes, and e0 serves clients again.
  held.close();
  ASSERT_TRUE(hp_.wait_server("echo", "e0", true, state_timeout)) << diagnostics();
  bool e0_served = false;
  for (int n = 0; n < 30 && !e0_served; ++n) {
    atl::endpoint from;
    ASSERT_TRUE(one_shot(frontend_, "again " + std::to_string(n) + "\n", &from));
    e0_served = server_of(from, 2s) == 0;
  }
  EXPECT_TRUE(e0_served) << diagnostics();
}

TEST_F(haproxy_cluster, rolling_restart_with_sigterm_loses_no_request) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());

  // Four keep-alive clients, round robin over them, each reconnecting every 10 requests.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0}, retried{0};
  std::mutex m;
  std::vector<std::string> failures;
  std::thread load([&] {
    std::vector<keep_alive_client> clients;
    for (int k = 0; k < 4; ++k) clients.emplace_back(frontend_, 10);
    int retries = 0;
    const auto deadline = std::chrono::steady_clock::now() + 25s;
    for (int n = 0; n < 50'000 && !stop.load() && std::chrono::steady_clock::now() < deadline;
         ++n) {
      std::string why;
      if (clients[n % 4].request("request " + std::to_string(n) + "\n", retries, &why)) {
        ++ok;
      } else {
        ++failed;
        std::lock_guard lock(m);
        failures.push_back(why);
      }
      retried = retries;
    }
  });
  auto ok_at_least = [&](int n, std::chrono::milliseconds timeout) {
    return wait_until([&] { return ok.load() >= n || failed.load() > 20; }, timeout) &&
           ok.load() >= n;
  };

  EXPECT_TRUE(ok_at_least(100, 10s));

  // A connection to e1 (straight, with its PROXY header) whose request is still to come:
  // the drain must wait for it.
  const atl::endpoint pending_client = atl::test::ip_endpoint("192.0.2.77", 7777);
  const auto header =
      atl::proxy::build_v2(atl::proxy::command::proxy, pending_client, echo_[1]->address);
  client pending = client::connect(echo_[1]->address);
  ASSERT_TRUE(pending.valid());
  ASSERT_TRUE(
      pending.send(std::string(reinterpret_cast<const char*>(header.data()), header.size())));
  ASSERT_TRUE(echo_[1]->wait_opened_from(pending_client, 5s)) << echo_[1]->proc.dump();

  // SIGTERM e1: it stops accepting (HAProxy's next connects are refused and redispatched) and
  // drains; the health check takes it out.
  std::unique_ptr<echo_process> old = std::move(echo_[1]);
  ASSERT_TRUE(old->proc.signal(SIGTERM));
  ASSERT_TRUE(old->proc.wait_prefix(logged_process::stream::out, "draining", exit_timeout))
      << old->proc.dump();
  EXPECT_TRUE(hp_.wait_server("echo", "e1", false, state_timeout)) << diagnostics();

  // Its replacement binds the same port while the old one is still draining; the health check
  // puts it back.
  const int ok_before_restart = ok.load();
  ASSERT_TRUE(start_echo(1, ports_[1])) << "the replacement could not bind port " << ports_[1];
  EXPECT_FALSE(old->proc.wait_exit(0ms).has_value()) << "the old one is still draining";
  EXPECT_TRUE(hp_.wait_server("echo", "e1", true, state_timeout)) << diagnostics();
  EXPECT_TRUE(wait_until([&] { return echo_[1]->opens_from_address(client_address) >= 1; }, 10s))
      << "the new e1 got no client\n"
      << diagnostics();
  EXPECT_TRUE(ok_at_least(ok_before_restart + 100, 10s));

  // The old one's last connection gets its answer, then the old one is done and exits 0.
  EXPECT_TRUE(pending.echo("late request\n", reply_timeout));
  EXPECT_EQ(pending.wait_closed(5s), outcome::eof);
  const auto status = old->proc.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value()) << "the old e1 still running after its drain";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << old->proc.dump();

  stop = true;
  load.join();
  EXPECT_EQ(failed.load(), 0) << [&] {
    std::string s;
    for (const auto& f : failures) s += "  " + f + "\n";
    return s + diagnostics();
  }();
  std::printf("rolling restart: %d requests, %d retried once on a closed idle connection\n",
              ok.load(), retried.load());
}

TEST_F(haproxy_cluster, sigkill_loses_only_that_servers_connections) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());

  // Six keep-alive connections, two per server (round robin).
  struct conn {
    client c;
    atl::endpoint from;
    std::size_t server = server_count;
  };
  std::vector<conn> conns(6);
  for (std::size_t k = 0; k < conns.size(); ++k) {
    conns[k].c = atl::test::connect_from(client_address, frontend_, reply_timeout, &conns[k].from);
    ASSERT_TRUE(conns[k].c.valid());
    ASSERT_TRUE(conns[k].c.echo("hello\n", reply_timeout)) << diagnostics();
    conns[k].server = server_of(conns[k].from, 3s);
    ASSERT_LT(conns[k].server, server_count) << diagnostics();
  }
  std::size_t on_victim = 0;
  for (const auto& k : conns) on_victim += k.server == 1;
  ASSERT_GE(on_victim, 1u);
  ASSERT_LT(on_victim, conns.size());

  ASSERT_TRUE(echo_[1]->proc.signal(SIGKILL));
  ASSERT_TRUE(echo_[1]->proc.wait_exit(exit_timeout).has_value());

  for (auto& k : conns) {
    if (k.server == 1) {
      const outcome end = k.c.wait_closed(5s);
      EXPECT_TRUE(end == outcome::eof || end == outcome::reset)
          << "a connection of the killed server: " << atl::test::to_string(end);
    } else {
      EXPECT_TRUE(k.c.echo("still here\n", reply_timeout))
          << "a connection of e" << k.server << " was lost";
    }
  }

  // New connections keep succeeding: connects to the dead server are refused and HAProxy
  // redispatches them, before and after the check marks it down.
  int served = 0;
  for (int n = 0; n < 30; ++n)
    served += one_shot(frontend_, "after " + std::to_string(n) + "\n", nullptr);
  EXPECT_EQ(served, 30) << diagnostics();
  EXPECT_TRUE(hp_.wait_server("echo", "e1", false, state_timeout));
  served = 0;
  for (int n = 0; n < 10; ++n)
    served += one_shot(frontend_, "down " + std::to_string(n) + "\n", nullptr);
  EXPECT_EQ(served, 10) << diagnostics();
}

}  // namespace
