// Suspected use-after-free (issue 9, 8a): `read_timeouts::on_timer` iterates its queues (one
// per distinct read-timeout duration) while a handler's `on_timeout` may call
// `set_read_timeout` with a duration the thread has never used, which appends a queue and
// can reallocate the vector being iterated. Many connections time out in one pass here, each
// setting a new duration; under AddressSanitizer a use of the old storage is reported.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "support/connection_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;

constexpr auto first_timeout = 50ms;

// On its read timeout, moves the connection to a timeout of its own (a duration no other
// connection uses: a new queue) and closes it. The text "stall" blocks the io thread for a
// few read timeouts, so that every other connection's deadline passes meanwhile and they all
// time out in the same pass of the timer.
class retiming_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    if (atl::test::to_text(data) == "stall") {
      std::this_thread::sleep_for(first_timeout * 4);
      c.send(std::string_view("stalled"));
      return;
    }
    echo_handler::on_data(c, data);
  }
  void on_timeout(atl::connection& c) override {
    c.set_read_timeout(std::chrono::milliseconds(10'000 + c.id()));
    c.close();
  }
};

TEST(hostile_read_timeouts, on_timeout_setting_new_durations_for_many_connections_at_once_is_safe) {
  constexpr std::size_t connections = 64;
  auto probe = std::make_shared<atl::test::probe>();
  atl::server s(atl::test::threads(1));
  auto l = atl::test::loopback_listener();
  l.read_timeout = first_timeout;
  const auto id = s.add_listener(l, atl::test::make_factory<retiming_handler>(probe));
  s.start();

  // The staller opens first and stalls at once (its own timeout is refreshed by its data).
  auto staller = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(staller.valid());
  std::vector<client> idle;
  for (std::size_t i = 0; i < connections; ++i) {
    idle.push_back(client::connect(s.local_endpoint(id)));
    ASSERT_TRUE(idle.back().valid());
  }
  ASSERT_TRUE(probe->wait_opens(connections + 1, 10s));
  ASSERT_TRUE(staller.send("stall"));
  ASSERT_EQ(staller.read_exact(7, 10s), "stalled");

  // Every idle connection timed out and was closed.
  EXPECT_TRUE(probe->wait_closes(connections, 10s)) << probe->closes() << " closed";
  auto good = client::connect(s.local_endpoint(id));
  ASSERT_TRUE(good.valid());
  EXPECT_TRUE(good.echo("well-behaved", 10s));
  s.stop();
  EXPECT_EQ(probe->lifecycle_violations(), "");
}

}  // namespace
