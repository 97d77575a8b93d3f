// Runs the atoll-echo example binary (examples/echo) as a child process and checks what its
// README and --help promise: echo, the health and metrics listeners, the connection limit,
// graceful exit on SIGTERM/SIGINT, and its flag handling. Every wait is bounded; the child is
// always killed in TearDown.

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

#include <algorithm>
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

#include "../support/child_process.hpp"
#include "../support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;
using atl::test::outcome;
using clock_type = std::chrono::steady_clock;

// Generous bounds: the binary may be built with ASan or TSan, which start and run slower.
constexpr auto startup_timeout = 20s;
constexpr auto exit_timeout = 20s;

using atl::test::catches_signal;
using atl::test::child_process;
using atl::test::left_until;
using atl::test::parse_endpoint;

class echo_example : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef ATOLL_ECHO_BINARY
    GTEST_SKIP() << "the examples are not built (ATOLL_ECHO_BINARY undefined)";
#else
    binary_ = ATOLL_ECHO_BINARY;
    ASSERT_EQ(::access(binary_, X_OK), 0) << binary_ << ": " << std::strerror(errno);
#endif
  }

  void TearDown() override { child_.kill_and_reap(); }

  /// Starts the server and reads its address lines: "listening on", and "health on" /
  /// "metrics on" when those listeners were asked for.
  void start_server(std::vector<std::string> args) {
    const bool health = std::find(args.begin(), args.end(), "--health-port") != args.end();
    const bool metrics = std::find(args.begin(), args.end(), "--metrics-port") != args.end();
    ASSERT_TRUE(child_.spawn(binary_, args, /*capture_stderr=*/false));
    echo_ = expect_address_line("listening on ");
    if (health) health_ = expect_address_line("health on ");
    if (metrics) metrics_ = expect_address_line("metrics on ");
  }

  /// The server with every listener on a free port, as the README shows it.
  void start_default_server(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--port",         "0", "--health-port", "0",
                                  "--metrics-port", "0", "--threads",     "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    start_server(std::move(args));
  }

  atl::endpoint expect_address_line(std::string_view prefix) {
    auto line = child_.read_line(startup_timeout);
    if (!line) {
      ADD_FAILURE() << "no '" << prefix << "HOST:PORT' line on stdout";
      return {};
    }
    if (!std::string_view(*line).starts_with(prefix)) {
      ADD_FAILURE() << "expected '" << prefix << "HOST:PORT', got '" << *line << "'";
      return {};
    }
    auto ep = parse_endpoint(std::string_view(*line).substr(prefix.size()));
    EXPECT_FALSE(ep.empty()) << "unparsable address in '" << *line << "'";
    EXPECT_NE(ep.port(), 0) << "the bound port is printed, not 0: '" << *line << "'";
    return ep;
  }

  /// Runs the binary to completion with `args`; its wait status (nullopt: did not exit).
  std::optional<int> run_to_exit(std::vector<std::string> args) {
    if (!child_.spawn(binary_, args, /*capture_stderr=*/true)) return std::nullopt;
    child_.read_to_end(exit_timeout);
    return child_.wait_exit(exit_timeout);
  }

  const char* binary_ = "";
  child_process child_;
  atl::endpoint echo_, health_, metrics_;
};

TEST_F(echo_example, echoes_bytes_back_unchanged) {
  start_default_server();
  ASSERT_FALSE(echo_.empty());
  client c = client::connect(echo_);
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(c.echo("hello, atoll\n"));
  const std::string binary("\0\x01\xff\r\n\x7f", 6);
  EXPECT_TRUE(c.echo(binary));
}

TEST_F(echo_example, echoes_a_large_payload_while_the_client_reads_slowly) {
  start_default_server();
  ASSERT_FALSE(echo_.empty());
  client c = client::connect(echo_);
  ASSERT_TRUE(c.valid());
  // 4 MiB both ways at once: far more than the socket buffers, so the server must apply
  // backpressure (pause reading) rather than drop or reorder bytes.
  std::string payload(4 * 1024 * 1024, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + i / 251);
  bool sent = false;
  std::thread writer([&] { sent = c.send(payload); });
  const std::string back = c.read_exact(payload.size(), 30s);
  writer.join();
  EXPECT_TRUE(sent);
  ASSERT_EQ(back.size(), payload.size());
  EXPECT_TRUE(back == payload) << "echoed bytes differ";
}

TEST_F(echo_example, health_listener_answers_ok_to_every_line) {
  start_default_server();
  ASSERT_FALSE(health_.empty());
  client c = client::connect(health_);
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.send("ping\n"));
  EXPECT_EQ(c.read_exact(3), "ok\n");
  ASSERT_TRUE(c.send("a\nb\n"));
  EXPECT_EQ(c.read_exact(6), "ok\nok\n");
  ASSERT_TRUE(c.send("split "));
  ASSERT_TRUE(c.send("line\n"));
  EXPECT_EQ(c.read_exact(3), "ok\n");
}

TEST_F(echo_example, metrics_listener_serves_prometheus_text_over_http_get) {
  start_default_server();
  ASSERT_FALSE(metrics_.empty());
  // Make the counters non-trivial first: one echo round trip.
  {
    client e = client::connect(echo_);
    ASSERT_TRUE(e.valid());
    ASSERT_TRUE(e.echo("x"));
  }
  client c = client::connect(metrics_);
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.send("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  std::string response;
  const outcome end = c.wait_closed(10s, &response);
  EXPECT_EQ(end, outcome::eof) << "the server closes after the response ("
                               << atl::test::to_string(end) << ")";

  ASSERT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response.substr(0, 200);
  const auto header_end = response.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos);
  const std::string headers = response.substr(0, header_end + 2);
  const std::string body = response.substr(header_end + 4);
  EXPECT_NE(headers.find("Content-Type: text/plain; version=0.0.4\r\n"), std::string::npos)
      << headers;
  EXPECT_NE(headers.find("Connection: close\r\n"), std::string::npos) << headers;
  EXPECT_NE(headers.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos)
      << headers << "(body is " << body.size() << " bytes)";
  EXPECT_NE(body.find("\natoll_connections_active{"), std::string::npos) << body;
  EXPECT_NE(body.find("listener=\"echo\""), std::string::npos) << body;
  EXPECT_NE(body.find("listener=\"health\""), std::string::npos) << body;
}

TEST_F(echo_example, closes_a_client_over_max_connections_at_once_and_serves_the_next_later) {
  start_default_server({"--max-connections", "1"});
  ASSERT_FALSE(echo_.empty());
  client first = client::connect(echo_);
  ASSERT_TRUE(first.valid());
  ASSERT_TRUE(first.echo("first\n")) << "the first client holds the only slot";

  // retry_count defaults to 0: the extra client is accepted and closed at once, not queued.
  client second = client::connect(echo_);
  ASSERT_TRUE(second.valid()) << "the acceptor keeps accepting at the limit";
  const auto t0 = clock_type::now();
  second.send("second\n");  // may fail if the close has already arrived
  const outcome o = second.wait_closed(5s);
  const auto waited = clock_type::now() - t0;
  EXPECT_TRUE(o == outcome::eof || o == outcome::reset)
      << "over the limit: " << atl::test::to_string(o);
  EXPECT_LT(waited, 2s) << "closed promptly, not after a retry wait";

  // The health listener has its own limit: unaffected.
  client probe = client::connect(health_);
  ASSERT_TRUE(probe.valid());
  ASSERT_TRUE(probe.send("?\n"));
  EXPECT_EQ(probe.read_exact(3), "ok\n");

  EXPECT_TRUE(first.echo("still here\n")) << "the admitted client keeps being served";
  first.close();

  // Once the server has seen the first client leave, the next one is served.
  const bool served = atl::test::wait_until(
      [&] {
        client next = client::connect(echo_);
        return next.valid() && next.echo("next\n", 500ms);
      },
      10s);
  EXPECT_TRUE(served) << "a client is served once the slot is free again";
}

TEST_F(echo_example, drains_and_exits_zero_on_sigterm) {
  start_default_server();
  ASSERT_FALSE(echo_.empty());
  client c = client::connect(echo_);
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.echo("before\n"));

  ASSERT_TRUE(
      atl::test::wait_until([&] { return catches_signal(child_.pid(), SIGTERM); }, startup_timeout))
      << "atoll-echo never installed a SIGTERM handler";
  ASSERT_TRUE(child_.signal(SIGTERM));
  // The default on_shutdown closes the connection gracefully: a FIN, not a reset.
  EXPECT_EQ(c.wait_closed(exit_timeout), outcome::eof);
  const auto status = child_.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value()) << "still running after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status)) << "ended by signal " << WTERMSIG(*status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  child_.read_to_end(1s);
  EXPECT_EQ(child_.out(), "draining\nstopped\n");
}

TEST_F(echo_example, drains_and_exits_zero_on_sigint) {
  start_default_server();
  ASSERT_FALSE(echo_.empty());
  client c = client::connect(echo_);
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.echo("before\n"));

  ASSERT_TRUE(
      atl::test::wait_until([&] { return catches_signal(child_.pid(), SIGINT); }, startup_timeout))
      << "atoll-echo never installed a SIGINT handler";
  ASSERT_TRUE(child_.signal(SIGINT));
  EXPECT_EQ(c.wait_closed(exit_timeout), outcome::eof);
  const auto status = child_.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value()) << "still running after SIGINT";
  ASSERT_TRUE(WIFEXITED(*status)) << "ended by signal " << WTERMSIG(*status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST_F(echo_example, exits_zero_on_sigterm_sent_as_soon_as_it_prints_its_address) {
  // A supervisor may stop a server the moment it reports being up: from the first
  // "listening on" line on, SIGTERM must mean "drain and exit 0", never the default action.
  start_server({"--port", "0", "--threads", "2"});
  ASSERT_FALSE(echo_.empty());
  ASSERT_TRUE(child_.signal(SIGTERM));
  const auto status = child_.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value()) << "still running after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status)) << "killed by signal " << WTERMSIG(*status)
                                  << ": the stop signals were not handled yet";
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST_F(echo_example, help_exits_zero_and_lists_every_flag) {
  const auto status = run_to_exit({"--help"});
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  for (const char* flag :
       {"--host", "--port", "--threads", "--max-connections", "--retry-count", "--retry-wait-ms",
        "--read-timeout-ms", "--health-port", "--metrics-port", "--help"})
    EXPECT_NE(child_.out().find(flag), std::string::npos) << flag << " missing from --help";
}

TEST_F(echo_example, bad_flag_value_exits_two_naming_the_flag) {
  struct bad_case {
    std::vector<std::string> args;
    std::string flag;
  };
  const std::vector<bad_case> cases{
      {{"--port", "abc"}, "--port"},
      {{"--port", "70000"}, "--port"},
      {{"--threads", "0"}, "--threads"},
      {{"--max-connections", "-1"}, "--max-connections"},
      {{"--retry-count", "2x"}, "--retry-count"},
      {{"--retry-wait-ms", "0"}, "--retry-wait-ms"},
      {{"--read-timeout-ms", ""}, "--read-timeout-ms"},
      {{"--health-port=nope"}, "--health-port"},
      {{"--metrics-port"}, "--metrics-port"},  // missing value
      {{"--no-such-flag", "1"}, "--no-such-flag"},
  };
  for (const auto& bad : cases) {
    SCOPED_TRACE(bad.flag);
    child_.kill_and_reap();
    const auto status = run_to_exit(bad.args);
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 2);
    EXPECT_NE(child_.err().find(bad.flag), std::string::npos) << "stderr: " << child_.err();
  }
}

TEST_F(echo_example, exits_one_naming_the_port_when_it_is_taken) {
  start_server({"--port", "0", "--threads", "1"});
  ASSERT_FALSE(echo_.empty());
  child_process second;
  ASSERT_TRUE(second.spawn(binary_, {"--port", std::to_string(echo_.port()), "--threads", "1"},
                           /*capture_stderr=*/true));
  second.read_to_end(exit_timeout);
  const auto status = second.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value()) << "a second server on a taken port must not start";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_NE(second.err().find(std::to_string(echo_.port())), std::string::npos)
      << "stderr: " << second.err();
}

}  // namespace
