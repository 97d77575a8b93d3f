// Unit tests of atl::errc and its std::error_category, and of the reason names.
#include "atoll/error.hpp"

#include <gtest/gtest.h>

#include <atoll/handler.hpp>
#include <atoll/stats.hpp>
#include <cctype>
#include <set>
#include <string>
#include <string_view>
#include <system_error>

namespace {

constexpr atl::errc all_errors[] = {
    atl::errc::invalid_config,
    atl::errc::over_limit,
    atl::errc::waiting_room_full,
    atl::errc::wait_expired,
    atl::errc::descriptors_exhausted,
    atl::errc::shutting_down,
    atl::errc::read_timeout,
    atl::errc::slow_consumer,
    atl::errc::handler_exception,
    atl::errc::handler_refused,
    atl::errc::aborted,
    atl::errc::not_running,
    atl::errc::already_started,
    atl::errc::handshake_timeout,
    atl::errc::proxy_header_invalid,
};

TEST(error, category_is_named_atoll) {
  EXPECT_STREQ(atl::error_category().name(), "atoll");
  EXPECT_EQ(&atl::error_category(), &atl::error_category());
}

TEST(error, every_errc_has_a_distinct_non_empty_message) {
  std::set<std::string> messages;
  for (auto e : all_errors) {
    std::error_code ec = e;
    EXPECT_TRUE(ec) << static_cast<int>(e);
    EXPECT_FALSE(ec.message().empty()) << static_cast<int>(e);
    messages.insert(ec.message());
  }
  EXPECT_EQ(messages.size(), std::size(all_errors));
}

TEST(error, errc_converts_implicitly_to_error_code) {
  std::error_code ec = atl::errc::over_limit;
  EXPECT_EQ(&ec.category(), &atl::error_category());
  EXPECT_EQ(ec.value(), static_cast<int>(atl::errc::over_limit));
  EXPECT_TRUE(ec == atl::errc::over_limit);
  EXPECT_FALSE(ec == atl::errc::waiting_room_full);
  EXPECT_EQ(ec, atl::make_error_code(atl::errc::over_limit));
  EXPECT_STREQ(ec.category().name(), "atoll");
}

TEST(error, ok_is_not_an_error) {
  std::error_code ec = atl::errc::ok;
  EXPECT_FALSE(ec);
  EXPECT_EQ(atl::make_error_code(atl::errc::invalid_config).value(), 1);
}

TEST(error, atoll_codes_differ_from_system_codes_with_the_same_value) {
  std::error_code ours = atl::errc::over_limit;
  std::error_code sys(ours.value(), std::system_category());
  EXPECT_NE(ours, sys);
}

TEST(error, can_be_thrown_as_system_error) {
  try {
    throw std::system_error(atl::errc::invalid_config, "listener[0].backlog");
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), atl::errc::invalid_config);
    EXPECT_NE(std::string(e.what()).find("listener[0].backlog"), std::string::npos);
  }
}

bool is_snake_case(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!(std::islower(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

TEST(error, close_reasons_have_distinct_snake_case_names) {
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < atl::close_reason_count; ++i) {
    auto n = atl::to_string(static_cast<atl::close_reason>(i));
    EXPECT_TRUE(is_snake_case(n)) << n;
    names.insert(n);
  }
  EXPECT_EQ(names.size(), atl::close_reason_count);
  EXPECT_EQ(atl::to_string(atl::close_reason::peer_closed), "peer_closed");
  EXPECT_EQ(atl::to_string(atl::close_reason::slow_consumer), "slow_consumer");
  EXPECT_EQ(atl::to_string(atl::close_reason::rejected), "rejected");
}

TEST(error, reject_reasons_have_distinct_snake_case_names) {
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < atl::reject_reason_count; ++i) {
    auto n = atl::to_string(static_cast<atl::reject_reason>(i));
    EXPECT_TRUE(is_snake_case(n)) << n;
    names.insert(n);
  }
  EXPECT_EQ(names.size(), atl::reject_reason_count);
  EXPECT_EQ(atl::to_string(atl::reject_reason::limit), "limit");
  EXPECT_EQ(atl::to_string(atl::reject_reason::waiting_room_full), "waiting_room_full");
  EXPECT_EQ(atl::to_string(atl::reject_reason::refused), "refused");
}

}  // namespace
