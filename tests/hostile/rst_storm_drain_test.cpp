// A storm of resets while the server drains (issue 9): every client resets its connection
// (SO_LINGER {1, 0}) while `server::stop()` waits for the connections to close. Each reset
// ends a connection in the middle of its drain; the server must account for every one (one
// on_close each), stop within its shutdown_timeout, and not crash (run under ASan).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "support/connection_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using atl::test::client;

// Keeps its connection open when the server drains (says so instead), so the drain waits for
// the peers: here, for their resets.
class lingering_handler : public atl::test::echo_handler {
 public:
  using echo_handler::echo_handler;
  void on_shutdown(atl::connection& c) override {
    c.send(std::string_view("draining\n"));
    probe_->note("shutdown");
  }
};

TEST(hostile_rst_storm, clients_resetting_during_the_drain_let_the_server_stop_cleanly) {
  constexpr std::size_t clients = 200;
  constexpr auto shutdown_timeout = 20s;
  auto probe = std::make_shared<atl::test::probe>();
  atl::server s(atl::test::threads(2));
  auto l = atl::test::loopback_listener();
  l.shutdown_timeout = shutdown_timeout;
  const auto id = s.add_listener(l, atl::test::make_factory<lingering_handler>(probe));
  s.start();
  const auto ep = s.local_endpoint(id);

  std::vector<client> peers;
  for (std::size_t i = 0; i < clients; ++i) {
    peers.push_back(client::connect(ep));
    ASSERT_TRUE(peers.back().valid());
    ASSERT_TRUE(peers.back().echo("hi", 10s));
  }

  atl::test::oneshot<bool> stopped;
  const auto started = atl::test::clock::now();
  std::thread stopper([&] {
    s.stop();
    stopped.set(true);
  });
  ASSERT_TRUE(atl::test::wait_until([&] { return probe->notes().size() == clients; }, 10s))
      << probe->notes().size() << " connections told of the drain";
  // The storm: every peer resets; more connect attempts hit the closed listener meanwhile.
  for (std::size_t i = 0; i < clients; ++i) {
    peers[i].reset();
    if (i % 20 == 0) {
      auto late = client::connect(ep, 1s);
      late.reset();
    }
  }
  const bool stopped_in_time = stopped.wait(shutdown_timeout + 10s).has_value();
  if (!stopped_in_time) {
    // stop() hangs: fail rather than block the test binary on join.
    ADD_FAILURE() << "server::stop() did not return";
    std::abort();
  }
  stopper.join();
  EXPECT_LT(atl::test::clock::now() - started, shutdown_timeout)
      << "the drain waited for its deadline although every connection had been reset";
  EXPECT_EQ(probe->closes(), clients);
  EXPECT_EQ(probe->lifecycle_violations(), "");
}

}  // namespace
