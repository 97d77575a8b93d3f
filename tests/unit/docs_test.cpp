// The docs name every value the code can report: each reject_reason and close_reason appears,
// as its Prometheus label value, in README's metrics table and stats() description (issue 11:
// three reject reasons were missing there).
#include <gtest/gtest.h>

#include <atoll/handler.hpp>
#include <atoll/stats.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace {

std::string readme() {
  std::ifstream in(std::string(ATOLL_SOURCE_DIR) + "/README.md");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The README line that starts a table row or bullet about `key` (the first line containing it).
std::string line_with(const std::string& text, std::string_view key) {
  const auto at = text.find(key);
  if (at == std::string::npos) return {};
  const auto begin = text.rfind('\n', at) + 1;
  const auto end = text.find('\n', at);
  return text.substr(begin, end - begin);
}

// The paragraph (up to a blank line) that contains `key`.
std::string paragraph_with(const std::string& text, std::string_view key) {
  const auto at = text.find(key);
  if (at == std::string::npos) return {};
  auto begin = text.rfind("\n\n", at);
  begin = begin == std::string::npos ? 0 : begin + 2;
  const auto end = text.find("\n\n", at);
  return text.substr(begin, end - begin);
}

std::string quoted(std::string_view label) { return "`" + std::string(label) + "`"; }

TEST(docs, the_metrics_table_lists_every_reject_reason) {
  const std::string row = line_with(readme(), "`atoll_connections_rejected_total`");
  ASSERT_FALSE(row.empty()) << "README has no row for atoll_connections_rejected_total";
  for (std::size_t r = 0; r < atl::reject_reason_count; ++r) {
    const auto label = atl::to_string(static_cast<atl::reject_reason>(r));
    EXPECT_NE(row.find(quoted(label)), std::string::npos) << "missing " << label << " in: " << row;
  }
}

TEST(docs, the_stats_description_lists_every_reject_reason) {
  const std::string text = paragraph_with(readme(), "`rejected_total` by `reject_reason`");
  ASSERT_FALSE(text.empty()) << "README no longer describes rejected_total by reject_reason";
  for (std::size_t r = 0; r < atl::reject_reason_count; ++r) {
    const auto label = atl::to_string(static_cast<atl::reject_reason>(r));
    EXPECT_NE(text.find(quoted(label)), std::string::npos) << "missing " << label;
  }
}

TEST(docs, the_metrics_table_lists_every_close_reason) {
  const std::string row = line_with(readme(), "`atoll_connections_closed_total`");
  ASSERT_FALSE(row.empty()) << "README has no row for atoll_connections_closed_total";
  for (std::size_t r = 0; r < atl::close_reason_count; ++r) {
    const auto label = atl::to_string(static_cast<atl::close_reason>(r));
    EXPECT_NE(row.find(quoted(label)), std::string::npos) << "missing " << label << " in: " << row;
  }
}

}  // namespace
