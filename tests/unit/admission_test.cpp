// Unit tests of detail::admission, the listener's admission policy (DESIGN.md "The limit"):
// admit / wait / reject at the limit, the waiting room's bound, expiry after
// retry_count x retry_wait, and a freed slot going to the oldest waiter.
#include "admission.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace {

using atl::reject_reason;
using atl::detail::admission;
using atl::detail::admission_rules;
using atl::detail::admission_verdict;
using atl::detail::clock;
using atl::detail::slot;
using atl::detail::supervisor;
using atl::detail::waiter;
using namespace std::chrono_literals;
using action = admission_verdict::action;

// A socket told apart by its `thread` field (no descriptor: nothing to close).
waiter socket_from(std::size_t id) {
  waiter w;
  w.thread = id;
  return w;
}

// A supervisor and its policy, keeping the slots handed to admitted waiters in admission
// order. They are dropped in the destructor's body, while the supervisor still exists (a slot
// released later would reach a destroyed supervisor); each drop may admit the next waiter.
struct listener_model {
  std::vector<std::size_t> ids;
  std::vector<slot> slots;
  supervisor sup;
  admission policy;

  listener_model(std::size_t max_connections, std::size_t max_waiting, admission_rules rules)
      : sup(max_connections, max_waiting,
            [this](waiter&& w, slot&& s) {
              ids.push_back(w.thread);
              slots.push_back(std::move(s));
            }),
        policy(sup, rules) {}
  ~listener_model() {
    (void)policy.evict_all();
    while (!slots.empty()) release_newest();
  }
  void release_newest() {
    slot s = std::move(slots.back());
    slots.pop_back();
    s.release();
  }
};

const clock::time_point t0 = clock::time_point{} + 1h;

TEST(admission, admits_while_below_the_limit) {
  listener_model m(2, 4, admission_rules{0, 0ms});
  admission& policy = m.policy;
  supervisor& sup = m.sup;
  waiter a = socket_from(1);
  waiter b = socket_from(2);
  admission_verdict va = policy.decide(a, t0);
  admission_verdict vb = policy.decide(b, t0);
  EXPECT_EQ(va.what, action::admit);
  EXPECT_EQ(vb.what, action::admit);
  EXPECT_TRUE(va.granted && vb.granted);
  EXPECT_EQ(sup.active(), 2u);
  EXPECT_EQ(sup.waiting(), 0u);
}

TEST(admission, rejects_immediately_at_limit_when_retry_count_is_zero) {
  listener_model m(1, 4, admission_rules{0, 100ms});
  admission& policy = m.policy;
  supervisor& sup = m.sup;
  waiter a = socket_from(1);
  admission_verdict first = policy.decide(a, t0);
  ASSERT_EQ(first.what, action::admit);
  waiter b = socket_from(2);
  admission_verdict v = policy.decide(b, t0);
  EXPECT_EQ(v.what, action::reject);
  EXPECT_EQ(v.why, reject_reason::limit);
  EXPECT_FALSE(v.granted);
  EXPECT_EQ(b.thread, 2u);  // left to the caller to reject
  EXPECT_EQ(sup.waiting(), 0u);
}

TEST(admission, waits_at_limit_while_the_waiting_room_has_room_then_rejects) {
  listener_model m(1, 2, admission_rules{3, 100ms});
  admission& policy = m.policy;
  supervisor& sup = m.sup;
  waiter a = socket_from(1);
  admission_verdict held = policy.decide(a, t0);
  ASSERT_EQ(held.what, action::admit);

  waiter b = socket_from(2);
  waiter c = socket_from(3);
  EXPECT_EQ(policy.decide(b, t0).what, action::wait);
  EXPECT_EQ(policy.decide(c, t0).what, action::wait);
  EXPECT_EQ(sup.waiting(), 2u);

  waiter d = socket_from(4);
  admission_verdict full = policy.decide(d, t0);
  EXPECT_EQ(full.what, action::reject);
  EXPECT_EQ(full.why, reject_reason::waiting_room_full);
  EXPECT_EQ(d.thread, 4u);
  EXPECT_EQ(sup.waiting(), 2u);
  EXPECT_TRUE(m.ids.empty());
}

TEST(admission, a_waiter_expires_after_retry_count_times_retry_wait) {
  listener_model m(0, 4, admission_rules{3, 100ms});
  admission& policy = m.policy;
  supervisor& sup = m.sup;
  EXPECT_EQ(policy.rules().wait_span(), 300ms);
  waiter a = socket_from(1);
  ASSERT_EQ(policy.decide(a, t0).what, action::wait);
  waiter b = socket_from(2);
  ASSERT_EQ(policy.decide(b, t0 + 50ms).what, action::wait);
  ASSERT_EQ(policy.next_expiry(), t0 + 300ms);

  EXPECT_TRUE(policy.expire(t0 + 299ms).empty());
  EXPECT_EQ(sup.waiting(), 2u);
  auto expired = policy.expire(t0 + 300ms);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].thread, 1u);
  EXPECT_EQ(policy.next_expiry(), t0 + 350ms);
  expired = policy.expire(t0 + 10s);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].thread, 2u);
  EXPECT_EQ(sup.waiting(), 0u);
  EXPECT_FALSE(policy.next_expiry());
}

TEST(admission, a_freed_slot_goes_to_the_oldest_waiter) {
  listener_model m(1, 4, admission_rules{5, 1s});
  admission& policy = m.policy;
  supervisor& sup = m.sup;
  waiter a = socket_from(1);
  admission_verdict held = policy.decide(a, t0);
  ASSERT_EQ(held.what, action::admit);
  for (std::size_t id : {2u, 3u, 4u}) {
    waiter w = socket_from(id);
    ASSERT_EQ(policy.decide(w, t0).what, action::wait);
  }
  held.granted.release();
  ASSERT_EQ(m.ids, (std::vector<std::size_t>{2}));
  EXPECT_EQ(sup.active(), 1u);
  EXPECT_EQ(sup.waiting(), 2u);
  // Still full: the next one released goes to 3, not to a newcomer.
  m.release_newest();
  EXPECT_EQ(m.ids, (std::vector<std::size_t>{2, 3}));
}

TEST(admission, a_newcomer_never_overtakes_a_waiter) {
  // A free slot while sockets wait exists only for a moment: between a pump's admissions.
  // Arrive in exactly that moment, from the admit callback of the first waiter.
  std::vector<std::size_t> ids;
  std::vector<slot> slots;
  std::optional<admission> policy;
  std::optional<action> newcomer;
  bool arrived = false;
  supervisor sup(0, 8, [&](waiter&& w, slot&& s) {
    ids.push_back(w.thread);
    slots.push_back(std::move(s));
    if (!arrived) {
      arrived = true;  // before deciding: the decision's own pump calls back here
      waiter late = socket_from(99);
      newcomer = policy->decide(late, t0).what;
    }
  });
  struct drop_slots {
    std::vector<slot>& v;
    ~drop_slots() {
      while (!v.empty()) {
        slot s = std::move(v.back());
        v.pop_back();
      }
    }
  } guard{slots};
  policy.emplace(sup, admission_rules{2, 1s});
  for (std::size_t id : {1u, 2u, 3u}) {
    waiter w = socket_from(id);
    ASSERT_EQ(policy->decide(w, t0).what, action::wait);
  }
  sup.set_max_connections(2);  // admits 1 (the newcomer arrives here), then 2
  ASSERT_TRUE(newcomer.has_value());
  EXPECT_EQ(*newcomer, action::wait);
  EXPECT_EQ(ids, (std::vector<std::size_t>{1, 2}));
  auto rest = policy->evict_all();
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].thread, 3u);
  EXPECT_EQ(rest[1].thread, 99u);
}

TEST(admission, evict_all_empties_the_waiting_room_in_order) {
  listener_model m(0, 4, admission_rules{1, 1s});
  admission& policy = m.policy;
  supervisor& sup = m.sup;
  for (std::size_t id : {1u, 2u, 3u}) {
    waiter w = socket_from(id);
    ASSERT_EQ(policy.decide(w, t0).what, action::wait);
  }
  auto all = policy.evict_all();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].thread, 1u);
  EXPECT_EQ(all[2].thread, 3u);
  EXPECT_EQ(sup.waiting(), 0u);
}

}  // namespace
