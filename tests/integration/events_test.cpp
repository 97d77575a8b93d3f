// The event sink: each event type carries exactly its own fields (no sentinel reasons), in the
// order a connection's life produces them.
#include <gtest/gtest.h>

#include <atoll/error.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <mutex>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::event;
using atl::event_type;

struct journal {
  std::mutex m;
  std::vector<event> events;
  void add(const event& e) {
    std::lock_guard lock(m);
    events.push_back(e);
  }
  std::vector<event> of(event_type t) {
    std::lock_guard lock(m);
    std::vector<event> out;
    for (const auto& e : events)
      if (e.type == t) out.push_back(e);
    return out;
  }
};

TEST(events, each_event_carries_only_the_fields_of_its_type) {
  auto j = std::make_shared<journal>();
  auto p = std::make_shared<atl::test::probe>();
  atl::server_config sc = atl::test::threads(1);
  sc.events = [j](const event& e) { j->add(e); };
  atl::server s(sc);
  auto cfg = atl::test::loopback_listener();
  cfg.max_connections = 1;
  auto id = s.add_listener(cfg, atl::test::echo_factory(p));
  s.start();
  const atl::endpoint bound = s.local_endpoint(id);

  auto a = atl::test::client::connect(bound);
  ASSERT_TRUE(a.valid());
  ASSERT_TRUE(a.echo("held", 2s));
  auto b = atl::test::client::connect(bound);  // over the limit
  EXPECT_NE(b.wait_closed(5s), atl::test::outcome::timeout);
  a.close();
  ASSERT_TRUE(p->wait_closes(1, 5s));
  s.stop();

  const auto started = j->of(event_type::listener_started);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].peer.to_string(), bound.to_string());
  EXPECT_FALSE(started[0].reject);
  EXPECT_FALSE(started[0].close);

  const auto accepted = j->of(event_type::accepted);
  ASSERT_EQ(accepted.size(), 1u);
  EXPECT_NE(accepted[0].connection_id, 0u);
  EXPECT_FALSE(accepted[0].reject);
  EXPECT_FALSE(accepted[0].close);
  EXPECT_FALSE(accepted[0].error);

  const auto rejected = j->of(event_type::rejected);
  ASSERT_EQ(rejected.size(), 1u);
  ASSERT_TRUE(rejected[0].reject);
  EXPECT_EQ(*rejected[0].reject, atl::reject_reason::limit);
  EXPECT_EQ(rejected[0].error, atl::errc::over_limit);
  EXPECT_FALSE(rejected[0].close);

  const auto closed = j->of(event_type::closed);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].connection_id, accepted[0].connection_id);
  ASSERT_TRUE(closed[0].close);
  EXPECT_EQ(*closed[0].close, atl::close_reason::peer_closed);
  EXPECT_FALSE(closed[0].reject);

  const auto stopped = j->of(event_type::listener_stopped);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0].error, atl::errc::shutting_down);
  EXPECT_FALSE(stopped[0].close);
}

TEST(events, every_reject_reason_has_its_own_error_code) {
  for (std::size_t r = 0; r < atl::reject_reason_count; ++r) {
    const auto why = static_cast<atl::reject_reason>(r);
    const std::error_code ec = atl::to_error_code(why);
    EXPECT_EQ(&ec.category(), &atl::error_category()) << atl::to_string(why);
    for (std::size_t q = 0; q < r; ++q) {
      EXPECT_NE(ec, atl::to_error_code(static_cast<atl::reject_reason>(q)))
          << atl::to_string(why) << " and " << atl::to_string(static_cast<atl::reject_reason>(q));
    }
  }
}

}  // namespace
