// Runs the atoll-http-hello example (examples/http_hello) as a child process and checks its
// HTTP/1.1 behaviour on loopback: keep-alive, pipelining, /metrics, the 503 reject_response at
// the connection limit, bad requests, Connection: close / HTTP/1.0, and a graceful SIGTERM.
// Every wait is bounded; the child is always killed in TearDown.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/child_process.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::child_process;
using atl::test::client;
using atl::test::outcome;

constexpr auto startup_timeout = 20s;  // generous: the binary may be built with sanitizers
constexpr auto exit_timeout = 20s;
constexpr auto response_timeout = 5s;

/// One parsed HTTP response.
struct response {
  int status = 0;
  std::string head;  ///< status line and header lines, each with its CRLF
  std::string body;
  bool has_header(std::string_view line) const {  // e.g. "Connection: close"
    return head.find("\r\n" + std::string(line) + "\r\n") != std::string::npos;
  }
};

/// Reads responses one after the other from a client, keeping bytes that belong to the next.
class response_reader {
 public:
  explicit response_reader(client& c) : c_(c) {}

  /// The next complete response (head + Content-Length body; no body after a HEAD request),
  /// or nullopt on EOF/timeout.
  std::optional<response> next(std::chrono::milliseconds timeout = response_timeout,
                               bool to_head_request = false) {
    const auto deadline = atl::test::child_clock::now() + timeout;
    std::size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return std::nullopt;
    response r;
    r.head = buf_.substr(0, head_end + 2);
    if (r.head.size() < 12 || !r.head.starts_with("HTTP/1.1 ")) return std::nullopt;
    r.status = std::atoi(r.head.substr(9, 3).c_str());
    std::size_t length = 0;
    if (auto p = r.head.find("\r\nContent-Length: "); p != std::string::npos && !to_head_request)
      length = std::strtoul(r.head.c_str() + p + 18, nullptr, 10);
    while (buf_.size() < head_end + 4 + length)
      if (!fill(deadline)) return std::nullopt;
    r.body = buf_.substr(head_end + 4, length);
    buf_.erase(0, head_end + 4 + length);
    return r;
  }

  /// Bytes received after the last complete response.
  const std::string& rest() const { return buf_; }

 private:
  bool fill(atl::test::child_clock::time_point deadline) {
    const auto left = atl::test::left_until(deadline);
    return left.count() > 0 && c_.read_some(buf_, left) == outcome::data;
  }

  client& c_;
  std::string buf_;
};

std::string get(std::string_view path, std::string_view extra_headers = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n" +
         std::string(extra_headers) + "\r\n";
}

class http_hello_example : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef ATOLL_HTTP_HELLO_BINARY
    GTEST_SKIP() << "atoll-http-hello is not built (ATOLL_HTTP_HELLO_BINARY undefined)";
#else
    binary_ = ATOLL_HTTP_HELLO_BINARY;
    ASSERT_EQ(::access(binary_, X_OK), 0) << binary_ << ": " << std::strerror(errno);
#endif
  }

  void TearDown() override { child_.kill_and_reap(); }

  void start_server(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--port", "0", "--threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_TRUE(child_.spawn(binary_, args, /*capture_stderr=*/false));
    const auto line = child_.read_line(startup_timeout);
    ASSERT_TRUE(line.has_value()) << "no 'listening on HOST:PORT' line on stdout";
    ASSERT_TRUE(line->starts_with("listening on ")) << *line;
    server_ = atl::test::parse_endpoint(std::string_view(*line).substr(13));
    ASSERT_FALSE(server_.empty()) << *line;
    ASSERT_NE(server_.port(), 0) << *line;
  }

  client connect() {
    client c = client::connect(server_);
    EXPECT_TRUE(c.valid());
    return c;
  }

  const char* binary_ = "";
  child_process child_;
  atl::endpoint server_;
};

TEST_F(http_hello_example, answers_two_requests_on_one_keep_alive_connection) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  client c = connect();
  response_reader reader(c);
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(c.send(get("/")));
    const auto r = reader.next();
    ASSERT_TRUE(r.has_value()) << "no response on the kept-alive connection";
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "Hello, world!\n");
    EXPECT_FALSE(r->has_header("Connection: close")) << r->head;
    EXPECT_TRUE(r->head.find("\r\nDate: ") != std::string::npos) << r->head;
  }
}

TEST_F(http_hello_example, answers_three_pipelined_requests_in_order) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  client c = connect();
  response_reader reader(c);
  // One write holding three requests: the server parses all of them from one read and carries
  // the bytes after each head over to the next parse.
  ASSERT_TRUE(c.send(get("/missing") + get("/") + "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const auto first = reader.next();
  const auto second = reader.next();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->status, 404);
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(second->body, "Hello, world!\n");
  // HEAD: the same headers (Content-Length of the GET body), no body.
  const auto third = reader.next(response_timeout, /*to_head_request=*/true);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->status, 200);
  EXPECT_TRUE(third->has_header("Content-Length: 14")) << third->head;

  // A request split across writes in the middle of a header still works after the pipeline.
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHo"));
  ASSERT_TRUE(c.send("st: localhost\r\n\r\n"));
  const auto fourth = reader.next();
  ASSERT_TRUE(fourth.has_value());
  EXPECT_EQ(fourth->status, 200);
  EXPECT_EQ(reader.rest(), "") << "a HEAD response has no body";
}

TEST_F(http_hello_example, skips_a_request_body_and_answers_the_next_pipelined_request) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  client c = connect();
  response_reader reader(c);
  ASSERT_TRUE(
      c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nGET / HTTP/" + get("/")));
  const auto post = reader.next();
  const auto next = reader.next();
  ASSERT_TRUE(post && next);
  EXPECT_EQ(post->status, 405);
  EXPECT_TRUE(post->has_header("Allow: GET, HEAD")) << post->head;
  EXPECT_EQ(next->status, 200) << "the body bytes were not taken for a request";
}

TEST_F(http_hello_example, serves_prometheus_metrics) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  client c = connect();
  response_reader reader(c);
  ASSERT_TRUE(c.send(get("/metrics")));
  const auto r = reader.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->has_header("Content-Type: text/plain; version=0.0.4")) << r->head;
  EXPECT_NE(r->body.find("\natoll_connections_active{listener=\"http\"} 1\n"), std::string::npos)
      << "this connection is counted: " << r->body;
  EXPECT_NE(r->body.find("atoll_connections_accepted_total{"), std::string::npos) << r->body;
}

TEST_F(http_hello_example, answers_503_with_retry_after_over_max_connections) {
  ASSERT_NO_FATAL_FAILURE(start_server({"--max-connections", "1"}));
  client first = connect();
  response_reader first_reader(first);
  ASSERT_TRUE(first.send(get("/")));
  ASSERT_TRUE(first_reader.next().has_value()) << "the first client holds the only slot";

  client second = connect();
  ASSERT_TRUE(second.valid()) << "the acceptor keeps accepting at the limit";
  std::string answer;
  const outcome end = second.wait_closed(response_timeout, &answer);
  EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << atl::test::to_string(end);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")) << answer;
  EXPECT_NE(answer.find("\r\nRetry-After: 1\r\n"), std::string::npos) << answer;
  EXPECT_NE(answer.find("\r\nConnection: close\r\n"), std::string::npos) << answer;

  // The admitted client is still served; once it leaves, the next one gets a 200.
  ASSERT_TRUE(first.send(get("/")));
  ASSERT_TRUE(first_reader.next().has_value());
  first.close();
  const bool served = atl::test::wait_until(
      [&] {
        client next = client::connect(server_);
        if (!next.valid() || !next.send(get("/"))) return false;
        response_reader r(next);
        const auto resp = r.next(1s);
        return resp && resp->status == 200;
      },
      10s);
  EXPECT_TRUE(served) << "a client is served once the slot is free again";
}

TEST_F(http_hello_example, answers_400_and_closes_on_a_malformed_request) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  for (const std::string bad : {"GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                                "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\nHost: x\n\n"}) {
    SCOPED_TRACE(bad);
    client c = connect();
    ASSERT_TRUE(c.send(bad));
    std::string answer;
    EXPECT_EQ(c.wait_closed(response_timeout, &answer), outcome::eof) << "closed after the 400";
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 400 Bad Request\r\n")) << answer;
    EXPECT_NE(answer.find("\r\nConnection: close\r\n"), std::string::npos) << answer;
  }
  // The parser's other statuses come through too: an unsupported major version.
  client c = connect();
  ASSERT_TRUE(c.send("GET / HTTP/2.0\r\nHost: x\r\n\r\n"));
  std::string answer;
  EXPECT_EQ(c.wait_closed(response_timeout, &answer), outcome::eof);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 505 ")) << answer;
}

TEST_F(http_hello_example, closes_after_the_response_on_connection_close_and_http_1_0) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  {
    client c = connect();
    // Pipelined after the `Connection: close` request: must not be answered.
    ASSERT_TRUE(c.send(get("/", "Connection: close\r\n") + get("/")));
    std::string answer;
    EXPECT_EQ(c.wait_closed(response_timeout, &answer), outcome::eof);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 OK\r\n")) << answer;
    EXPECT_NE(answer.find("\r\nConnection: close\r\n"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("HTTP/1.1", 1), std::string::npos) << "one response only: " << answer;
  }
  {
    client c = connect();
    ASSERT_TRUE(c.send("GET / HTTP/1.0\r\n\r\n"));
    std::string answer;
    EXPECT_EQ(c.wait_closed(response_timeout, &answer), outcome::eof) << "HTTP/1.0 closes";
    EXPECT_TRUE(answer.ends_with("\r\n\r\nHello, world!\n")) << answer;
  }
  {
    client c = connect();
    response_reader reader(c);
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
      const auto r = reader.next();
      ASSERT_TRUE(r.has_value()) << "HTTP/1.0 with keep-alive stays open (request " << i << ")";
      EXPECT_TRUE(r->has_header("Connection: keep-alive")) << r->head;
    }
  }
}

TEST_F(http_hello_example, drains_and_exits_zero_on_sigterm) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  client c = connect();
  response_reader reader(c);
  ASSERT_TRUE(c.send(get("/")));
  ASSERT_TRUE(reader.next().has_value());
  ASSERT_TRUE(atl::test::wait_until(
      [&] { return atl::test::catches_signal(child_.pid(), SIGTERM); }, startup_timeout));
  ASSERT_TRUE(child_.signal(SIGTERM));
  EXPECT_EQ(c.wait_closed(exit_timeout), outcome::eof)
      << "the idle keep-alive connection is closed";
  const auto status = child_.wait_exit(exit_timeout);
  ASSERT_TRUE(status.has_value()) << "still running after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status)) << "ended by signal " << WTERMSIG(*status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST_F(http_hello_example, help_lists_every_flag) {
  ASSERT_TRUE(child_.spawn(binary_, {"--help"}, /*capture_stderr=*/true));
  child_.read_to_end(exit_timeout);
  const auto status = child_.wait_exit(exit_timeout);
  ASSERT_TRUE(status && WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  for (const char* flag : {"--host", "--port", "--threads", "--max-connections", "--help"})
    EXPECT_NE(child_.out().find(flag), std::string::npos) << flag << " missing from --help";
}

}  // namespace
