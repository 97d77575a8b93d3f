// The helpers for running atoll in production, through the C++ API on loopback:
// `server::status()`, `server::wait_for_connections()` (every comparison, and the predicate
// form), connection-count alarms (`listener_config::alarms`), `max_connection_age` (+ jitter)
// and `connection::send_file()` (whole files, ranges, interleaved with send(), errors; over
// plain TCP and over TLS). Every wait is bounded.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atoll/connection.hpp>
#include <atoll/error.hpp>
#include <atoll/handler.hpp>
#include <atoll/listener.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/test_client.hpp"
#include "support/tls_certs.hpp"
#include "support/tls_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::count_is;
using atl::test::client;
using atl::test::outcome;
using atl::test::wait_until;
using steady = std::chrono::steady_clock;

/// A started server with one echo listener configured by `tweak`.
struct echo_server {
  template <class Tweak>
  explicit echo_server(Tweak tweak, std::size_t threads = 2) : server(atl::test::threads(threads)) {
    atl::listener_config cfg = atl::test::loopback_listener();
    tweak(cfg);
    id = server.add_listener(cfg, atl::test::echo_factory(probe));
  }
  void start() {
    server.start();
    address = server.local_endpoint(id);
  }
  client connect_and_echo(std::string_view msg = "x") {
    client c = client::connect(address);
    EXPECT_TRUE(c.valid());
    EXPECT_TRUE(c.echo(msg)) << "not admitted";  // the echo proves the admission is done
    return c;
  }

  std::shared_ptr<atl::test::probe> probe = std::make_shared<atl::test::probe>();
  atl::server server;
  atl::listener_id id = 0;
  atl::endpoint address;
};

// ---------------------------------------------------------------------------------------------
// status()

TEST(server_status, reports_running_suspended_active_waiting_and_the_limit) {
  echo_server s([](atl::listener_config& c) {
    c.max_connections = 2;
    c.retry_count = 10;  // the third client waits
    c.retry_wait = 1s;
  });
  EXPECT_FALSE(s.server.status(s.id).running) << "not started yet";
  EXPECT_THROW(s.server.status(s.id + 1), std::out_of_range);
  s.start();

  auto st = s.server.status(s.id);
  EXPECT_TRUE(st.running);
  EXPECT_FALSE(st.suspended);
  EXPECT_EQ(st.active, 0u);
  EXPECT_EQ(st.waiting, 0u);
  EXPECT_EQ(st.max_connections, 2u);

  client a = s.connect_and_echo();
  client b = s.connect_and_echo();
  EXPECT_EQ(s.server.status(s.id).active, 2u);
  client c = client::connect(s.address);
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(wait_until([&] { return s.server.status(s.id).waiting == 1; }, 2s));
  EXPECT_EQ(s.server.status(s.id).active, 2u);

  s.server.set_max_connections(s.id, 3);  // admits the waiting one
  EXPECT_TRUE(wait_until(
      [&] {
        const auto now = s.server.status(s.id);
        return now.active == 3 && now.waiting == 0;
      },
      2s));
  EXPECT_EQ(s.server.status(s.id).max_connections, 3u);
  EXPECT_TRUE(c.echo("admitted"));

  s.server.suspend(s.id);
  st = s.server.status(s.id);
  EXPECT_TRUE(st.running);
  EXPECT_TRUE(st.suspended);
  EXPECT_EQ(st.active, 3u) << "live connections carry on";
  s.server.resume(s.id);
  EXPECT_FALSE(s.server.status(s.id).suspended);

  a.close();
  EXPECT_TRUE(wait_until([&] { return s.server.status(s.id).active == 2; }, 2s));
  s.server.stop();
  st = s.server.status(s.id);
  EXPECT_FALSE(st.running);
  EXPECT_EQ(st.active, 0u);
}

// ---------------------------------------------------------------------------------------------
// wait_for_connections()

/// Runs `wait_for_connections` and checks how long a `false` took.
class waiter {
 public:
  explicit waiter(echo_server& s) : s_(s) {}
  bool operator()(count_is op, std::size_t n, std::chrono::milliseconds timeout) {
    const auto t0 = steady::now();
    const bool held = s_.server.wait_for_connections(s_.id, op, n, timeout);
    const auto took = steady::now() - t0;
    if (!held) {
      EXPECT_GE(took, timeout - 5ms) << "false only after the timeout";
      EXPECT_LT(took, timeout + 2s) << "and promptly then";
    }
    return held;
  }

 private:
  echo_server& s_;
};

TEST(wait_for_connections, each_comparison_is_true_when_it_holds_and_false_after_the_timeout) {
  echo_server s([](atl::listener_config&) {});
  s.start();
  waiter wait(s);

  // active == 0
  EXPECT_TRUE(wait(count_is::equal, 0, 1s));
  EXPECT_TRUE(wait(count_is::less, 1, 1s));
  EXPECT_TRUE(wait(count_is::less_equal, 0, 1s));
  EXPECT_TRUE(wait(count_is::greater_equal, 0, 1s));
  EXPECT_TRUE(wait(count_is::not_equal, 1, 1s));
  EXPECT_FALSE(wait(count_is::not_equal, 0, 50ms));
  EXPECT_FALSE(wait(count_is::greater, 0, 50ms));
  EXPECT_FALSE(wait(count_is::greater_equal, 1, 50ms));
  EXPECT_FALSE(wait(count_is::equal, 1, 50ms));
  EXPECT_FALSE(wait(count_is::less, 0, 50ms));

  // Conditions that come true while waiting: three clients arrive.
  auto equal3 = std::async(std::launch::async, [&] { return wait(count_is::equal, 3, 10s); });
  auto greater2 = std::async(std::launch::async, [&] { return wait(count_is::greater, 2, 10s); });
  auto at_least3 =
      std::async(std::launch::async, [&] { return wait(count_is::greater_equal, 3, 10s); });
  auto not0 = std::async(std::launch::async, [&] { return wait(count_is::not_equal, 0, 10s); });
  std::vector<client> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(s.connect_and_echo());
  EXPECT_TRUE(equal3.get());
  EXPECT_TRUE(greater2.get());
  EXPECT_TRUE(at_least3.get());
  EXPECT_TRUE(not0.get());

  // active == 3
  EXPECT_FALSE(wait(count_is::less, 3, 50ms));
  EXPECT_FALSE(wait(count_is::less_equal, 2, 50ms));
  EXPECT_FALSE(wait(count_is::equal, 2, 50ms));
  EXPECT_FALSE(wait(count_is::greater, 3, 50ms));
  EXPECT_TRUE(wait(count_is::less_equal, 3, 1s));

  // ... and the drain: all three leave.
  auto drained = std::async(std::launch::async, [&] { return wait(count_is::equal, 0, 10s); });
  auto below2 = std::async(std::launch::async, [&] { return wait(count_is::less, 2, 10s); });
  clients.clear();
  EXPECT_TRUE(drained.get());
  EXPECT_TRUE(below2.get());
}

TEST(wait_for_connections, the_predicate_form_sees_the_whole_status) {
  echo_server s([](atl::listener_config&) {});
  s.start();
  auto suspended_and_empty = [](const atl::listener_status& st) {
    return st.suspended && st.active == 0;
  };
  client c = s.connect_and_echo();
  const auto t0 = steady::now();
  EXPECT_FALSE(s.server.wait_for_connections(s.id, suspended_and_empty, 50ms));
  EXPECT_GE(steady::now() - t0, 45ms);

  // The "stop taking traffic, then wait until drained" pattern.
  auto drained = std::async(std::launch::async, [&] {
    return s.server.wait_for_connections(s.id, suspended_and_empty, 10s);
  });
  s.server.suspend(s.id);
  EXPECT_TRUE(c.echo("still served while suspended"));
  c.close();
  EXPECT_TRUE(drained.get());
}

// ---------------------------------------------------------------------------------------------
// Alarms

/// Thread-safe record of alarm calls.
class alarm_log {
 public:
  void add(std::size_t listener, std::size_t active) {
    {
      std::lock_guard lock(m_);
      calls_.push_back({listener, active, steady::now()});
    }
    cv_.notify_all();
  }
  bool wait_count(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return calls_.size() >= n; });
  }
  struct call {
    std::size_t listener, active;
    steady::time_point at;
  };
  std::vector<call> calls() const {
    std::lock_guard lock(m_);
    return calls_;
  }
  std::size_t count() const {
    std::lock_guard lock(m_);
    return calls_.size();
  }

 private:
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::vector<call> calls_;
};

TEST(connection_alarms, fire_once_per_cooldown_at_or_above_the_threshold_and_never_below) {
  constexpr auto cooldown = 1000ms;
  auto log = std::make_shared<alarm_log>();
  auto never = std::make_shared<alarm_log>();
  echo_server s([&](atl::listener_config& c) {
    c.alarms.push_back({3, cooldown, [log](std::size_t l, std::size_t a) { log->add(l, a); }});
    c.alarms.push_back({100, 10ms, [never](std::size_t l, std::size_t a) { never->add(l, a); }});
  });
  s.start();

  std::vector<client> clients;
  clients.push_back(s.connect_and_echo());
  clients.push_back(s.connect_and_echo());
  EXPECT_EQ(log->count(), 0u) << "2 < threshold 3";

  clients.push_back(s.connect_and_echo());  // reaches 3
  ASSERT_TRUE(log->wait_count(1, 2s));
  const auto first = log->calls().front();
  EXPECT_EQ(first.listener, s.id);
  EXPECT_GE(first.active, 3u);

  clients.push_back(s.connect_and_echo());  // 4 and 5, within the cooldown
  clients.push_back(s.connect_and_echo());
  if (steady::now() < first.at + cooldown - 100ms) {
    EXPECT_EQ(log->count(), 1u) << "at most once per cooldown";
  }

  std::this_thread::sleep_until(first.at + cooldown + 20ms);  // the cooldown itself
  clients.push_back(s.connect_and_echo());                    // 6, after the cooldown
  ASSERT_TRUE(log->wait_count(2, 2s));
  const auto second = log->calls().back();
  EXPECT_GE(second.active, 3u);
  EXPECT_GE(second.at - first.at, cooldown);

  // Below the threshold nothing fires, however long after the cooldown.
  clients.resize(1);
  ASSERT_TRUE(s.server.wait_for_connections(s.id, count_is::equal, 1, 5s));
  std::this_thread::sleep_until(second.at + cooldown + 20ms);
  clients.push_back(s.connect_and_echo());  // active 2
  EXPECT_EQ(log->count(), 2u);
  EXPECT_EQ(never->count(), 0u);
}

// ---------------------------------------------------------------------------------------------
// max_connection_age

/// Records when on_shutdown is called relative to on_open; closes only if `close_on_shutdown`.
class aging_handler : public atl::handler {
 public:
  struct log {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::chrono::milliseconds> ages;  // one entry per on_shutdown call
    std::vector<std::uint64_t> ids;
    std::vector<std::pair<atl::close_reason, std::error_code>> closes;
  };
  aging_handler(std::shared_ptr<log> l, bool close_on_shutdown)
      : log_(std::move(l)), close_(close_on_shutdown) {}

  void on_open(atl::connection&) override { opened_ = steady::now(); }
  void on_data(atl::connection& c, std::span<const std::byte> data) override { c.send(data); }
  void on_shutdown(atl::connection& c) override {
    {
      std::lock_guard lock(log_->m);
      log_->ages.push_back(
          std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - opened_));
      log_->ids.push_back(c.id());
    }
    log_->cv.notify_all();
    if (close_) atl::handler::on_shutdown(c);  // the default: close after queued writes
  }
  void on_close(atl::connection&, atl::close_reason r, std::error_code ec) override {
    {
      std::lock_guard lock(log_->m);
      log_->closes.emplace_back(r, ec);
    }
    log_->cv.notify_all();
  }

 private:
  std::shared_ptr<log> log_;
  bool close_;
  steady::time_point opened_;
};

struct aging_server {
  aging_server(std::chrono::milliseconds age, std::chrono::milliseconds jitter, bool close)
      : server(atl::test::threads(2)) {
    atl::listener_config cfg = atl::test::loopback_listener();
    cfg.max_connection_age = age;
    cfg.max_connection_age_jitter = jitter;
    id = server.add_listener(cfg, [l = log, close](atl::connection&) {
      return std::make_unique<aging_handler>(l, close);
    });
    server.start();
    address = server.local_endpoint(id);
  }
  std::size_t shutdowns() {
    std::lock_guard lock(log->m);
    return log->ages.size();
  }
  bool wait_shutdowns(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(log->m);
    return log->cv.wait_for(lock, timeout, [&] { return log->ages.size() >= n; });
  }

  std::shared_ptr<aging_handler::log> log = std::make_shared<aging_handler::log>();
  atl::server server;
  atl::listener_id id = 0;
  atl::endpoint address;
};

TEST(max_connection_age, calls_on_shutdown_once_per_connection_around_the_age) {
  aging_server s(300ms, 0ms, /*close=*/false);
  client c = client::connect(s.address);
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.echo("young"));
  ASSERT_TRUE(s.wait_shutdowns(1, 5s));
  {
    std::lock_guard lock(s.log->m);
    EXPECT_GE(s.log->ages[0], 295ms);
    EXPECT_LT(s.log->ages[0], 1500ms);
  }
  // Once only: the handler kept the connection open, and it is not asked again.
  EXPECT_FALSE(s.wait_shutdowns(2, 1000ms));
  EXPECT_TRUE(c.echo("old but open")) << "a handler that does not close keeps its connection";
}

TEST(max_connection_age, the_default_on_shutdown_closes_the_connection_after_its_writes) {
  aging_server s(300ms, 0ms, /*close=*/true);
  const auto t0 = steady::now();
  client c = client::connect(s.address);
  ASSERT_TRUE(c.valid());
  ASSERT_TRUE(c.echo("hello"));
  const outcome end = c.wait_closed(5s);
  EXPECT_EQ(end, outcome::eof) << "a graceful close, not a reset";
  EXPECT_GE(steady::now() - t0, 295ms);
  std::unique_lock lock(s.log->m);
  ASSERT_TRUE(s.log->cv.wait_for(lock, 2s, [&] { return !s.log->closes.empty(); }));
  const auto [reason, ec] = s.log->closes[0];
  EXPECT_NE(reason, atl::close_reason::error);
  EXPECT_NE(reason, atl::close_reason::timeout);
  std::printf("closed by max_connection_age: reason=%s ec=%s\n",
              std::string(atl::to_string(reason)).c_str(), ec.message().c_str());
}

TEST(max_connection_age, jitter_spreads_the_goodbyes_over_age_to_age_plus_jitter) {
  aging_server s(200ms, 400ms, /*close=*/true);
  std::vector<client> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(client::connect(s.address));
    ASSERT_TRUE(clients.back().valid());
    ASSERT_TRUE(clients.back().echo("j"));
  }
  ASSERT_TRUE(s.wait_shutdowns(8, 5s));
  for (auto& c : clients) EXPECT_EQ(c.wait_closed(3s), outcome::eof);
  std::lock_guard lock(s.log->m);
  ASSERT_EQ(s.log->ages.size(), 8u);
  auto sorted_ids = s.log->ids;
  std::sort(sorted_ids.begin(), sorted_ids.end());
  EXPECT_EQ(std::adjacent_find(sorted_ids.begin(), sorted_ids.end()), sorted_ids.end())
      << "once per connection";
  const auto [lo, hi] = std::minmax_element(s.log->ages.begin(), s.log->ages.end());
  EXPECT_GE(*lo, 195ms);
  EXPECT_LT(*hi, 600ms + 1500ms);
  EXPECT_GE(*hi - *lo, 20ms) << "8 uniform draws over 400 ms are not all within 20 ms";
}

// ---------------------------------------------------------------------------------------------
// send_file

/// Serves commands, one per line, from a file:
///   "ALL"          "<" + the whole file (own descriptor, closed right after send_file) + ">"
///   "RANGE o n"    "<" + n bytes from offset o (n = 0: to the end) + ">"
///   "PATH o n"     the same through send_file(path, ...)
///   "MULTI"        "A" + [10, 110) + "B" + the last 50 bytes + "C" + the first 5 (by path) + "D"
///   "BADFD" / "PIPE" / "PAST" / "MISSING": an invalid send_file; answers "E\n" when it
///                  returned an error (and queued nothing), "K\n" when it did not.
class file_handler : public atl::handler {
 public:
  file_handler(std::string path, std::uint64_t size) : path_(std::move(path)), size_(size) {}

  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    line_.append(reinterpret_cast<const char*>(data.data()), data.size());
    for (std::size_t nl; (nl = line_.find('\n')) != std::string::npos;) {
      const std::string cmd = line_.substr(0, nl);
      line_.erase(0, nl + 1);
      run(c, cmd);
    }
  }

 private:
  void check(atl::connection& c, std::error_code ec) {
    if (ec) {
      c.send("!" + ec.message() + "\n");
      c.close();
    }
  }

  void run(atl::connection& c, const std::string& cmd) {
    unsigned long long off = 0, len = 0;
    if (cmd == "ALL") {
      const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      c.send("<");
      const auto ec = c.send_file(fd);
      ::close(fd);  // send_file keeps its own duplicate
      check(c, ec);
      c.send(">");
    } else if (std::sscanf(cmd.c_str(), "RANGE %llu %llu", &off, &len) == 2) {
      const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      c.send("<");
      check(c, c.send_file(fd, off, len));
      ::close(fd);
      c.send(">");
    } else if (std::sscanf(cmd.c_str(), "PATH %llu %llu", &off, &len) == 2) {
      c.send("<");
      check(c, c.send_file(path_, off, len));
      c.send(">");
    } else if (cmd == "MULTI") {
      const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      c.send("A");
      check(c, c.send_file(fd, 10, 100));
      c.send("B");
      check(c, c.send_file(fd, size_ - 50, 50));
      c.send("C");
      check(c, c.send_file(path_, 0, 5));
      c.send("D");
      ::close(fd);
    } else {
      std::error_code ec;
      if (cmd == "BADFD") {
        ec = c.send_file(-1);
      } else if (cmd == "PIPE") {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) return c.abort();
        ec = c.send_file(p[0]);
        ::close(p[0]);
        ::close(p[1]);
      } else if (cmd == "PAST") {
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        ec = c.send_file(fd, size_ + 1, 0);
        ::close(fd);
      } else if (cmd == "MISSING") {
        ec = c.send_file(path_ + ".missing");
      } else {
        return c.abort();
      }
      c.send(ec ? "E\n" : "K\n");
    }
  }

  std::string path_;
  std::uint64_t size_;
  std::string line_;
};

/// A client over plain TCP or TLS (the TLS path of send_file reads the file in chunks).
class file_client {
 public:
  file_client(const atl::endpoint& ep, bool tls) : tls_(tls) {
    if (tls) {
      atl::test::tls_client_options o;
      o.server_name = "localhost";
      o.ca_file = atl::test::test_certs().ca_cert;
      t_ = atl::test::tls_client::connect(ep, o);
    } else {
      c_ = client::connect(ep);
    }
  }
  bool valid() const { return tls_ ? t_.ok() : c_.valid(); }
  std::string error() const { return tls_ ? t_.error() : "connect failed"; }
  bool send(std::string_view s) { return tls_ ? t_.write_all(s) : c_.send(s); }
  std::string read_exact(std::size_t n, std::chrono::milliseconds timeout) {
    return tls_ ? t_.read_exact(n, timeout) : c_.read_exact(n, timeout);
  }

 private:
  bool tls_;
  client c_;
  atl::test::tls_client t_;
};

class send_file_test : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr std::size_t file_size = 3 * 1024 * 1024;

  void SetUp() override {
    ASSERT_TRUE(dir_.valid());
    path_ = dir_.file("payload.bin");
    content_ = atl::test::pattern_payload(file_size, 11);
    std::ofstream(path_, std::ios::binary) << content_;
    ASSERT_EQ(std::filesystem::file_size(path_), file_size);

    atl::listener_config cfg = atl::test::loopback_listener();
    // Smaller than the file: a file's bytes do not count against the write-queue limit.
    cfg.max_write_buffer = 1024 * 1024;
    if (tls()) {
      const auto& certs = atl::test::test_certs();
      ASSERT_TRUE(certs.ok) << certs.error;
      cfg.tls.cert_chain_file = certs.server_cert;
      cfg.tls.key_file = certs.server_key;
    }
    id_ = server_.add_listener(cfg, [p = path_](atl::connection&) {
      return std::make_unique<file_handler>(p, file_size);
    });
    server_.start();
    address_ = server_.local_endpoint(id_);
  }

  bool tls() const { return GetParam(); }

  file_client connect() {
    file_client c(address_, tls());
    EXPECT_TRUE(c.valid()) << c.error();
    return c;
  }

  /// Sends `cmd` and reads exactly `expected.size()` bytes; checks them.
  void expect_reply(file_client& c, const std::string& cmd, const std::string& expected) {
    ASSERT_TRUE(c.send(cmd + "\n"));
    const std::string got = c.read_exact(expected.size(), 30s);
    ASSERT_EQ(got.size(), expected.size()) << cmd << ": got '" << got.substr(0, 100) << "'";
    EXPECT_EQ(atl::test::first_mismatch(got, expected), std::string::npos) << cmd;
  }

  std::string slice(std::size_t off, std::size_t len) const { return content_.substr(off, len); }

  atl::test::temp_dir dir_;
  std::string path_, content_;
  atl::server server_{atl::test::threads(2)};
  atl::listener_id id_ = 0;
  atl::endpoint address_;
};

INSTANTIATE_TEST_SUITE_P(plain_and_tls, send_file_test, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "tls" : "plain";
                         });

TEST_P(send_file_test, sends_a_whole_file_in_order_with_the_sends_around_it) {
  file_client c = connect();
  ASSERT_TRUE(c.valid());
  expect_reply(c, "ALL", "<" + content_ + ">");
  expect_reply(c, "ALL", "<" + content_ + ">");  // twice on one connection
  EXPECT_EQ(server_.stats().listeners.at(id_).closed(atl::close_reason::slow_consumer), 0u);
}

TEST_P(send_file_test, sends_ranges_by_descriptor_and_by_path) {
  file_client c = connect();
  ASSERT_TRUE(c.valid());
  expect_reply(c, "RANGE 0 1000", "<" + slice(0, 1000) + ">");
  expect_reply(c, "RANGE 1000 0", "<" + slice(1000, file_size - 1000) + ">");  // 0: to the end
  expect_reply(c, "RANGE 1048576 65536", "<" + slice(1048576, 65536) + ">");
  expect_reply(c, "RANGE 3145727 1", "<" + slice(file_size - 1, 1) + ">");
  expect_reply(c, "PATH 12345 200000", "<" + slice(12345, 200000) + ">");
  expect_reply(c, "PATH 0 0", "<" + content_ + ">");
  expect_reply(c, "MULTI",
               "A" + slice(10, 100) + "B" + slice(file_size - 50, 50) + "C" + slice(0, 5) + "D");
}

TEST_P(send_file_test, pipelined_commands_keep_their_order) {
  file_client c = connect();
  ASSERT_TRUE(c.valid());
  expect_reply(c, "RANGE 0 10\nMULTI\nRANGE 2000000 500000",
               "<" + slice(0, 10) + ">" + "A" + slice(10, 100) + "B" + slice(file_size - 50, 50) +
                   "C" + slice(0, 5) + "D" + "<" + slice(2000000, 500000) + ">");
}

TEST_P(send_file_test, refuses_a_bad_descriptor_a_pipe_an_offset_past_the_end_and_a_missing_path) {
  file_client c = connect();
  ASSERT_TRUE(c.valid());
  for (const char* cmd : {"BADFD", "PIPE", "PAST", "MISSING"}) expect_reply(c, cmd, "E\n");
  // The connection is unharmed and nothing was queued by the failed calls.
  expect_reply(c, "RANGE 0 100", "<" + slice(0, 100) + ">");
}

}  // namespace
