// atoll-daytime (examples/daytime): writes one RFC 867 line and closes; refuses bad flags;
// drains and exits 0 on SIGTERM. Runs the real binary as a child process.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <regex>
#include <string>

#include "support/child_process.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::child_process;
using atl::test::client;
using atl::test::outcome;

#ifdef ATOLL_DAYTIME_BINARY
constexpr const char* daytime_binary = ATOLL_DAYTIME_BINARY;
#else
constexpr const char* daytime_binary = nullptr;
#endif

class daytime_example : public ::testing::Test {
 protected:
  void SetUp() override {
    if (daytime_binary == nullptr) GTEST_SKIP() << "atoll-daytime is not built";
  }
  void TearDown() override { child_.kill_and_reap(); }

  void start_server() {
    ASSERT_TRUE(child_.spawn(daytime_binary, {"--port", "0", "--threads", "2"}, false));
    const auto line = child_.read_line(10s);
    ASSERT_TRUE(line.has_value()) << "no 'listening on HOST:PORT' line";
    ASSERT_TRUE(line->starts_with("listening on ")) << *line;
    server_ = atl::test::parse_endpoint(std::string_view(*line).substr(13));
    ASSERT_NE(server_.port(), 0) << *line;
  }

  child_process child_;
  atl::endpoint server_;
};

TEST_F(daytime_example, writes_one_rfc_867_line_then_closes) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  for (int i = 0; i < 3; ++i) {  // several clients, each gets its own line
    client c = client::connect(server_);
    ASSERT_TRUE(c.valid());
    std::string text;
    EXPECT_EQ(c.wait_closed(2s, &text), outcome::eof) << "the server did not close after writing";
    // e.g. "Saturday, November 28, 2026 15:51:03-UTC\r\n"
    static const std::regex rfc867(R"([A-Z][a-z]+day, [A-Z][a-z]+ \d{2}, \d{4} \d{2}:\d{2}:\d{2}-UTC\r\n)");
    EXPECT_TRUE(std::regex_match(text, rfc867)) << "got '" << text << "'";
  }
}

TEST_F(daytime_example, exits_zero_on_sigterm) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_TRUE(child_.signal(SIGTERM));
  const auto status = child_.wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "still running 10 s after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status)) << "killed by signal " << WTERMSIG(*status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST_F(daytime_example, refuses_a_bad_flag_value_naming_the_flag) {
  ASSERT_TRUE(child_.spawn(daytime_binary, {"--port", "not-a-port"}, true));
  child_.read_to_end(5s);
  const auto status = child_.wait_exit(5s);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(child_.err().find("--port"), std::string::npos) << child_.err();
}

}  // namespace
