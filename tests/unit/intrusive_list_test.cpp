// Unit tests of detail::intrusive_list: order, erase anywhere, membership, two lists through
// two tags, and erasing the current element from inside for_each.
#include "intrusive_list.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace {

using atl::detail::intrusive_list;
using atl::detail::list_node;

struct registry_tag {};
struct timeout_tag {};

// An element in two lists at once, as a connection is in its thread's registry and in a
// read-timeout queue.
struct item : list_node<registry_tag>, list_node<timeout_tag> {
  explicit item(int i) : id(i) {}
  int id;
};

using registry = intrusive_list<item, registry_tag>;
using timeouts = intrusive_list<item, timeout_tag>;

template <class List>
std::vector<int> ids(List& list) {
  std::vector<int> out;
  list.for_each([&](item& i) { out.push_back(i.id); });
  return out;
}

bool in_registry(const item& i) { return static_cast<const list_node<registry_tag>&>(i).linked(); }
bool in_timeouts(const item& i) { return static_cast<const list_node<timeout_tag>&>(i).linked(); }

TEST(intrusive_list, a_new_list_is_empty_and_has_no_front) {
  registry list;
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.size(), 0u);
  EXPECT_EQ(list.front(), nullptr);
  EXPECT_TRUE(ids(list).empty());
}

TEST(intrusive_list, keeps_elements_in_the_order_they_were_pushed) {
  item a(1), b(2), c(3);
  registry list;
  list.push_back(a);
  list.push_back(b);
  list.push_back(c);
  EXPECT_FALSE(list.empty());
  EXPECT_EQ(list.size(), 3u);
  EXPECT_EQ(list.front(), &a);
  EXPECT_EQ(ids(list), (std::vector<int>{1, 2, 3}));
  list.erase(a);
  list.erase(b);
  list.erase(c);
}

TEST(intrusive_list, an_element_is_linked_only_while_it_is_in_the_list) {
  item a(1);
  EXPECT_FALSE(in_registry(a));
  registry list;
  list.push_back(a);
  EXPECT_TRUE(in_registry(a));
  list.erase(a);
  EXPECT_FALSE(in_registry(a));
}

TEST(intrusive_list, erases_from_the_front_the_middle_and_the_back) {
  item a(1), b(2), c(3), d(4);
  registry list;
  for (item* i : {&a, &b, &c, &d}) list.push_back(*i);
  list.erase(b);
  EXPECT_EQ(ids(list), (std::vector<int>{1, 3, 4}));
  list.erase(a);
  EXPECT_EQ(list.front(), &c);
  EXPECT_EQ(ids(list), (std::vector<int>{3, 4}));
  list.erase(d);
  EXPECT_EQ(ids(list), (std::vector<int>{3}));
  EXPECT_EQ(list.size(), 1u);
  list.erase(c);
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.front(), nullptr);
}

TEST(intrusive_list, erasing_an_element_that_is_not_linked_does_nothing) {
  item a(1), b(2);
  registry list;
  list.push_back(a);
  list.erase(b);
  EXPECT_EQ(list.size(), 1u);
  list.erase(a);
  list.erase(a);  // twice: the second is a no-op, the count does not underflow
  EXPECT_EQ(list.size(), 0u);
  EXPECT_TRUE(list.empty());
}

TEST(intrusive_list, an_erased_element_can_be_pushed_again_at_the_back) {
  // What read_timeouts::touch does: erase, then push_back with a new deadline.
  item a(1), b(2), c(3);
  registry list;
  for (item* i : {&a, &b, &c}) list.push_back(*i);
  list.erase(a);
  list.push_back(a);
  EXPECT_EQ(ids(list), (std::vector<int>{2, 3, 1}));
  EXPECT_EQ(list.size(), 3u);
  for (item* i : {&a, &b, &c}) list.erase(*i);
}

TEST(intrusive_list, one_element_lives_in_two_lists_through_two_tags_independently) {
  item a(1), b(2);
  registry reg;
  timeouts tmo;
  reg.push_back(a);
  reg.push_back(b);
  tmo.push_back(b);
  EXPECT_TRUE(in_registry(a));
  EXPECT_FALSE(in_timeouts(a));
  EXPECT_TRUE(in_timeouts(b));
  tmo.erase(b);
  EXPECT_TRUE(in_registry(b));
  EXPECT_EQ(ids(reg), (std::vector<int>{1, 2}));
  EXPECT_TRUE(tmo.empty());
  reg.erase(a);
  reg.erase(b);
}

TEST(intrusive_list, for_each_may_erase_the_current_element) {
  // Its contract: f may unlink the element it is called with (the drain path closes
  // connections while walking the registry), and the walk goes on with the next one.
  item a(1), b(2), c(3), d(4);
  registry list;
  for (item* i : {&a, &b, &c, &d}) list.push_back(*i);
  std::vector<int> seen;
  list.for_each([&](item& i) {
    seen.push_back(i.id);
    if (i.id % 2 == 0) list.erase(i);
  });
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(ids(list), (std::vector<int>{1, 3}));
  EXPECT_FALSE(in_registry(b));
  EXPECT_FALSE(in_registry(d));

  list.for_each([&](item& i) { list.erase(i); });
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.size(), 0u);
  EXPECT_FALSE(in_registry(a));
  EXPECT_FALSE(in_registry(c));
}

}  // namespace
