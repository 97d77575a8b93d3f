// Tests of configuration validation at server::start(): every bad value is refused with
// std::invalid_argument naming the field (or errc::invalid_config through the error_code
// overload), and a refused server binds nothing.
#include "atoll/server.hpp"  // the subject, first: it must be self-contained

// Then what the test itself uses.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atoll/connection.hpp>
#include <atoll/error.hpp>
#include <atoll/handler.hpp>
#include <atoll/listener.hpp>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

namespace {

using namespace std::chrono_literals;

class null_handler : public atl::handler {
 public:
  void on_data(atl::connection&, std::span<const std::byte>) override {}
};

atl::handler_factory factory() {
  return [](atl::connection&) { return std::make_unique<null_handler>(); };
}

atl::listener_config good_listener() {
  atl::listener_config c;
  c.host = "127.0.0.1";
  c.port = 0;
  return c;
}

atl::server_config good_server() {
  atl::server_config c;
  c.io_threads = 2;
  return c;
}

/// The message of the std::invalid_argument thrown by start(), or a failure description.
std::string start_error(atl::server_config sc, std::vector<atl::listener_config> listeners) {
  atl::server s(std::move(sc));
  for (auto& l : listeners) s.add_listener(std::move(l), factory());
  try {
    s.start();
  } catch (const std::invalid_argument& e) {
    if (s.running()) return "<running after a refused start>";
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<wrong exception type: ") + e.what() + ">";
  }
  return "<accepted>";
}

std::string listener_error(std::function<void(atl::listener_config&)> change,
                           atl::server_config sc = good_server()) {
  auto l = good_listener();
  change(l);
  return start_error(std::move(sc), {l});
}

std::string server_error(std::function<void(atl::server_config&)> change) {
  auto sc = good_server();
  change(sc);
  return start_error(std::move(sc), {good_listener()});
}

#define EXPECT_NAMES(message, field)                                                 \
  do {                                                                               \
    const std::string m_ = (message);                                                \
    EXPECT_NE(m_.find(field), std::string::npos) << "message: " << m_;               \
    EXPECT_EQ(m_.find("<accepted>"), std::string::npos) << "the value was accepted"; \
  } while (0)

TEST(config_validation, refuses_zero_io_threads) {
  EXPECT_NAMES(server_error([](auto& c) { c.io_threads = 0; }), "io_threads");
}

TEST(config_validation, refuses_a_receive_buffer_under_one_kibibyte) {
  EXPECT_NAMES(server_error([](auto& c) { c.receive_buffer_size = 1023; }), "receive_buffer_size");
  EXPECT_NAMES(server_error([](auto& c) { c.receive_buffer_size = 0; }), "receive_buffer_size");
}

TEST(config_validation, accepts_a_receive_buffer_of_exactly_one_kibibyte) {
  EXPECT_EQ(server_error([](auto& c) { c.receive_buffer_size = 1024; }), "<accepted>");
}

TEST(config_validation, refuses_an_empty_endpoint) {
  EXPECT_NAMES(listener_error([](auto& c) { c.host = ""; }), "host");
}

TEST(config_validation, refuses_a_host_that_is_not_an_ip_literal) {
  EXPECT_NAMES(listener_error([](auto& c) { c.host = "example.com"; }), "host");
  EXPECT_NAMES(listener_error([](auto& c) { c.host = "127.0.0.256"; }), "host");
  EXPECT_NAMES(listener_error([](auto& c) { c.host = "::1::2"; }), "host");
}

TEST(config_validation, accepts_localhost_and_ip_literals) {
  EXPECT_EQ(listener_error([](auto& c) { c.host = "localhost"; }), "<accepted>");
  EXPECT_EQ(listener_error([](auto& c) { c.host = "0.0.0.0"; }), "<accepted>");
}

TEST(config_validation, refuses_a_backlog_that_is_not_positive) {
  EXPECT_NAMES(listener_error([](auto& c) { c.backlog = 0; }), "backlog");
  EXPECT_NAMES(listener_error([](auto& c) { c.backlog = -1; }), "backlog");
}

TEST(config_validation, refuses_retries_without_a_positive_retry_wait) {
  EXPECT_NAMES(listener_error([](auto& c) {
                 c.retry_count = 3;
                 c.retry_wait = 0ms;
               }),
               "retry_wait");
  EXPECT_NAMES(listener_error([](auto& c) {
                 c.retry_count = 3;
                 c.retry_wait = -5ms;
               }),
               "retry_wait");
}

TEST(config_validation, refuses_retries_without_a_waiting_room) {
  EXPECT_NAMES(listener_error([](auto& c) {
                 c.retry_count = 3;
                 c.max_waiting = 0;
               }),
               "max_waiting");
}

TEST(config_validation, accepts_an_empty_waiting_room_when_there_are_no_retries) {
  EXPECT_EQ(listener_error([](auto& c) {
              c.retry_count = 0;
              c.max_waiting = 0;
              c.retry_wait = 0ms;
            }),
            "<accepted>");
}

TEST(config_validation, refuses_zero_max_connections) {
  EXPECT_NAMES(listener_error([](auto& c) { c.max_connections = 0; }), "max_connections");
}

TEST(config_validation, refuses_negative_timeouts) {
  EXPECT_NAMES(listener_error([](auto& c) { c.read_timeout = -1ms; }), "read_timeout");
  EXPECT_NAMES(listener_error([](auto& c) { c.shutdown_timeout = -1ms; }), "shutdown_timeout");
}

TEST(config_validation, accepts_zero_timeouts_where_zero_has_a_meaning) {
  EXPECT_EQ(listener_error([](auto& c) {
              c.read_timeout = 0ms;      // none
              c.shutdown_timeout = 0ms;  // abort at once
            }),
            "<accepted>");
}

TEST(config_validation, refuses_a_handshake_timeout_that_is_not_positive) {
  EXPECT_NAMES(listener_error([](auto& c) { c.handshake_timeout = 0ms; }), "listener[0].handshake_timeout");
  EXPECT_NAMES(listener_error([](auto& c) { c.handshake_timeout = -5ms; }), "handshake_timeout");
}

TEST(config_validation, refuses_a_negative_max_connection_age_or_jitter) {
  EXPECT_NAMES(listener_error([](auto& c) { c.max_connection_age = -1ms; }),
               "listener[0].max_connection_age");
  EXPECT_NAMES(listener_error([](auto& c) { c.max_connection_age_jitter = -1ms; }),
               "listener[0].max_connection_age_jitter");
  EXPECT_EQ(listener_error([](auto& c) {
              c.max_connection_age = 0ms;  // none
              c.max_connection_age_jitter = 0ms;
            }),
            "<accepted>");
}

TEST(config_validation, refuses_alarms_without_threshold_or_callback) {
  auto cb = [](std::size_t, std::size_t) {};
  EXPECT_NAMES(listener_error([&](auto& c) { c.alarms.push_back({0, 10ms, cb}); }),
               "listener[0].alarms[0].threshold");
  EXPECT_NAMES(listener_error([&](auto& c) {
                 c.alarms.push_back({5, 10ms, cb});
                 c.alarms.push_back({5, 10ms, nullptr});
               }),
               "listener[0].alarms[1].callback");
  EXPECT_NAMES(listener_error([&](auto& c) { c.alarms.push_back({5, -1ms, cb}); }),
               "listener[0].alarms[0].cooldown");
  EXPECT_EQ(listener_error([&](auto& c) { c.alarms.push_back({5, 10ms, cb}); }), "<accepted>");
}

TEST(config_validation, refuses_tls_options_without_a_certificate) {
  EXPECT_NAMES(listener_error([](auto& c) { c.tls.key_file = "/nonexistent/key.pem"; }),
               "listener[0].tls.cert_chain_file");
  EXPECT_NAMES(listener_error([](auto& c) { c.tls.alpn = {"h2"}; }),
               "listener[0].tls.cert_chain_file");
  EXPECT_NAMES(listener_error([](auto& c) { c.tls.cert_chain_file = "/nonexistent/cert.pem"; }),
               "listener[0].tls.key_file");
}

TEST(config_validation, refuses_a_missing_certificate_file_naming_it) {
  EXPECT_NAMES(listener_error([](auto& c) {
                 c.tls.cert_chain_file = "/nonexistent/cert.pem";
                 c.tls.key_file = "/nonexistent/key.pem";
               }),
               "listener[0].tls.cert_chain_file");
}

TEST(config_validation, refuses_a_low_water_mark_at_or_above_max_write_buffer) {
  EXPECT_NAMES(listener_error([](auto& c) {
                 c.max_write_buffer = 64 * 1024;
                 c.write_low_water = 64 * 1024;
               }),
               "write_low_water");
  EXPECT_NAMES(listener_error([](auto& c) {
                 c.max_write_buffer = 1024;
                 c.write_low_water = 4096;
               }),
               "write_low_water");
}

TEST(config_validation, refuses_more_acceptors_than_io_threads) {
  EXPECT_NAMES(listener_error([](auto& c) { c.num_acceptors = 3; }), "num_acceptors");
}

TEST(config_validation, refuses_reuse_port_on_a_unix_socket) {
  EXPECT_NAMES(listener_error([](auto& c) {
                 c.unix_path = "/tmp/atoll-config-validation-never-bound.sock";
                 c.reuse_port = true;
               }),
               "reuse_port");
}

TEST(config_validation, refuses_a_linger_other_than_zero_seconds) {
  EXPECT_NAMES(listener_error([](auto& c) { c.socket.linger = std::chrono::seconds{30}; }),
               "linger");
  EXPECT_NAMES(listener_error([](auto& c) { c.socket.linger = std::chrono::seconds{1}; }),
               "linger");
}

TEST(config_validation, accepts_a_linger_of_zero_seconds) {
  EXPECT_EQ(listener_error([](auto& c) { c.socket.linger = std::chrono::seconds{0}; }),
            "<accepted>");
}

TEST(config_validation, refuses_adopt_fd_together_with_unix_path) {
  // A real descriptor, so only the combination is wrong. It is deliberately not closed here:
  // whether atoll took ownership of it on a refused start is not specified.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  const std::string m = listener_error([fd](auto& c) {
    c.adopt_fd = fd;
    c.unix_path = "/tmp/atoll-config-validation-never-bound.sock";
  });
  EXPECT_TRUE(m.find("adopt_fd") != std::string::npos || m.find("unix_path") != std::string::npos)
      << "message: " << m;
  EXPECT_EQ(m.find("<accepted>"), std::string::npos);
}

TEST(config_validation, refuses_a_server_without_listeners) {
  EXPECT_NAMES(start_error(good_server(), {}), "listener");
}

TEST(config_validation, names_the_index_of_the_bad_listener) {
  auto bad = good_listener();
  bad.backlog = 0;
  const std::string m = start_error(good_server(), {good_listener(), bad});
  EXPECT_NAMES(m, "listener[1]");
  EXPECT_NAMES(m, "backlog");
}

TEST(config_validation, error_code_overload_reports_invalid_config_without_throwing) {
  atl::server s(good_server());
  auto bad = good_listener();
  bad.retry_count = 2;
  bad.retry_wait = 0ms;
  s.add_listener(bad, factory());
  std::error_code ec;
  EXPECT_NO_THROW(s.start(ec));
  EXPECT_EQ(ec, atl::errc::invalid_config);
  EXPECT_NE(s.last_error().find("retry_wait"), std::string::npos) << s.last_error();
  EXPECT_FALSE(s.running());
}

TEST(config_validation, last_error_is_empty_before_any_failure) {
  atl::server s(good_server());
  EXPECT_EQ(s.last_error(), "");
}

bool port_is_free(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::uint16_t some_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(config_validation, a_refused_server_binds_nothing) {
  const auto port = some_free_port();
  ASSERT_NE(port, 0);
  atl::server s(good_server());
  auto ok = good_listener();
  ok.port = port;
  auto bad = good_listener();
  bad.max_connections = 0;
  auto first = s.add_listener(ok, factory());
  s.add_listener(bad, factory());

  EXPECT_THROW(s.start(), std::invalid_argument);
  EXPECT_TRUE(port_is_free(port)) << "the valid listener was bound although start() failed";
  EXPECT_TRUE(s.local_endpoints(first).empty());
  EXPECT_FALSE(s.running());
}

TEST(config_validation, set_max_connections_refuses_zero) {
  atl::server s(good_server());
  auto id = s.add_listener(good_listener(), factory());
  s.start();
  EXPECT_THROW(s.set_max_connections(id, 0), std::invalid_argument);
  EXPECT_NO_THROW(s.set_max_connections(id, 5));
  EXPECT_EQ(s.stats().listeners.at(id).max_connections, 5u);
  s.stop();
}

TEST(config_validation, add_listener_after_start_is_a_logic_error) {
  atl::server s(good_server());
  s.add_listener(good_listener(), factory());
  s.start();
  EXPECT_THROW(s.add_listener(good_listener(), factory()), std::logic_error);
  s.stop();
}

}  // namespace
