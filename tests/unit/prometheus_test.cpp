// Unit tests of to_prometheus(): a hand-made server_stats rendered in the text exposition
// format 0.0.4, parsed back line by line and checked for syntax, naming and content.
#include "atoll/stats.hpp"  // the subject, first: it must be self-contained

// Then what the test itself uses.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using labels = std::map<std::string, std::string>;

struct sample {
  std::string name;
  labels l;
  double value = 0;
  std::string line;
};

struct exposition {
  std::vector<sample> samples;
  std::map<std::string, std::string> types;  // family -> counter/gauge/...
  std::vector<std::string> errors;           // syntax errors found
};

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

bool valid_metric_name(std::string_view n) {
  if (n.empty() || !is_name_start(n[0])) return false;
  for (char c : n)
    if (!is_name_char(c)) return false;
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || !is_name_start(n[0]) || n[0] == ':') return false;
  for (char c : n)
    if (!is_name_char(c) || c == ':') return false;
  return true;
}

std::optional<double> parse_value(std::string_view v) {
  if (v == "+Inf") return 1e308 * 10;
  if (v == "-Inf") return -1e308 * 10;
  if (v == "NaN") return 0.0;
  std::string s(v);
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0') return std::nullopt;
  return d;
}

/// Parses a sample line; returns an error text or "".
std::string parse_sample(const std::string& line, sample& out) {
  std::size_t i = 0;
  while (i < line.size() && is_name_char(line[i])) ++i;
  out.name = line.substr(0, i);
  out.line = line;
  if (!valid_metric_name(out.name)) return "bad metric name";
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      std::size_t start = i;
      while (i < line.size() && line[i] != '=') ++i;
      std::string lname = line.substr(start, i - start);
      if (!valid_label_name(lname)) return "bad label name '" + lname + "'";
      if (i + 1 >= line.size() || line[i + 1] != '"') return "label value not quoted";
      i += 2;
      std::string value;
      for (;; ++i) {
        if (i >= line.size()) return "unterminated label value";
        char c = line[i];
        if (c == '"') break;
        if (c == '\\') {
          if (i + 1 >= line.size()) return "dangling escape";
          char e = line[++i];
          if (e == 'n')
            value += '\n';
          else if (e == '\\' || e == '"')
            value += e;
          else
            return "bad escape";
        } else {
          value += c;
        }
      }
      ++i;  // closing quote
      if (out.l.count(lname)) return "duplicate label " + lname;
      out.l[lname] = value;
      if (i < line.size() && line[i] == ',')
        ++i;
      else if (i < line.size() && line[i] != '}')
        return "expected ',' or '}'";
    }
    if (i >= line.size()) return "unterminated label set";
    ++i;  // '}'
  }
  if (i >= line.size() || line[i] != ' ') return "expected one space before the value";
  ++i;
  std::string rest = line.substr(i);
  std::string value = rest.substr(0, rest.find(' '));
  auto v = parse_value(value);
  if (!v) return "bad value '" + value + "'";
  out.value = *v;
  if (rest.find(' ') != std::string::npos) {  // optional timestamp
    std::string ts = rest.substr(rest.find(' ') + 1);
    if (ts.empty() || ts.find_first_not_of("-0123456789") != std::string::npos)
      return "bad timestamp";
  }
  return "";
}

std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  if (types.count(name)) return name;
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string base = name.substr(0, name.size() - suffix.size());
      auto it = types.find(base);
      if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
    }
  }
  return name;
}

exposition parse(const std::string& text) {
  exposition e;
  std::istringstream in(text);
  std::string line;
  std::string current_family;
  std::set<std::string> finished_families;
  std::set<std::string> series;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const std::string where = "line " + std::to_string(n) + ": '" + line + "': ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream words(line);
      std::string hash, kind, name;
      words >> hash >> kind >> name;
      if (kind == "TYPE") {
        std::string type;
        words >> type;
        if (!valid_metric_name(name)) e.errors.push_back(where + "bad name in TYPE");
        static const std::set<std::string> known{"counter", "gauge", "histogram", "summary",
                                                 "untyped"};
        if (!known.count(type)) e.errors.push_back(where + "unknown type");
        if (e.types.count(name)) e.errors.push_back(where + "second TYPE line for " + name);
        e.types[name] = type;
      } else if (kind == "HELP") {
        if (!valid_metric_name(name)) e.errors.push_back(where + "bad name in HELP");
      }
      continue;
    }
    sample s;
    auto err = parse_sample(line, s);
    if (!err.empty()) {
      e.errors.push_back(where + err);
      continue;
    }
    const auto family = family_of(s.name, e.types);
    if (!e.types.count(family)) e.errors.push_back(where + "sample before its # TYPE line");
    if (family != current_family) {
      if (finished_families.count(family))
        e.errors.push_back(where + "samples of " + family + " are not grouped together");
      if (!current_family.empty()) finished_families.insert(current_family);
      current_family = family;
    }
    std::string key = s.name;
    for (const auto& [k, v] : s.l) key += "|" + k + "=" + v;
    if (!series.insert(key).second) e.errors.push_back(where + "duplicate series");
    e.samples.push_back(std::move(s));
  }
  return e;
}

atl::endpoint loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return {reinterpret_cast<const sockaddr*>(&a), sizeof a};
}

atl::server_stats sample_stats() {
  atl::server_stats s;
  atl::listener_stats pub;
  pub.name = "public";
  pub.endpoints = {loopback(8080)};
  pub.active = 3;
  pub.max_connections = 100;
  pub.waiting = 2;
  pub.accepted_total = 1001;
  pub.admitted_after_wait_total = 17;
  for (std::size_t i = 0; i < atl::reject_reason_count; ++i) pub.rejected_total[i] = 5 + i;
  pub.accept_errors_total = {{24, 11}, {103, 12}};
  for (std::size_t i = 0; i < atl::close_reason_count; ++i) pub.closed_total[i] = 21 + i;
  pub.bytes_in_total = 123456;
  pub.bytes_out_total = 654321;

  atl::listener_stats health;
  health.name = "health";
  health.endpoints = {loopback(8081)};
  health.max_connections = 16;
  health.suspended = true;

  s.listeners = {pub, health};
  atl::thread_stats t0;
  t0.loop_lag_max = std::chrono::microseconds{2500};
  t0.loop_lag_p99 = std::chrono::microseconds{1500};
  t0.connections = 2;
  atl::thread_stats t1;
  t1.connections = 1;
  s.threads = {t0, t1};
  return s;
}

std::string dump(const exposition& e) {
  std::string out;
  for (const auto& err : e.errors) out += err + "\n";
  return out;
}

/// Samples carrying label `label` (any value) with listener="<listener>" if given.
std::vector<sample> with_label(const exposition& e, const std::string& label,
                               const std::string& listener = "") {
  std::vector<sample> out;
  for (const auto& s : e.samples) {
    if (!s.l.count(label)) continue;
    if (!listener.empty() && (!s.l.count("listener") || s.l.at("listener") != listener)) continue;
    out.push_back(s);
  }
  return out;
}

class prometheus : public ::testing::Test {
 protected:
  void SetUp() override {
    text_ = atl::to_prometheus(sample_stats());
    e_ = parse(text_);
  }
  std::string text_;
  exposition e_;
};

TEST_F(prometheus, output_is_valid_exposition_format) {
  ASSERT_FALSE(text_.empty());
  EXPECT_EQ(text_.back(), '\n');
  EXPECT_TRUE(e_.errors.empty()) << dump(e_) << "\n" << text_;
  EXPECT_FALSE(e_.samples.empty());
  EXPECT_FALSE(e_.types.empty());
}

TEST_F(prometheus, every_metric_name_is_prefixed_atoll) {
  for (const auto& [name, type] : e_.types) EXPECT_EQ(name.rfind("atoll_", 0), 0u) << name;
  for (const auto& s : e_.samples) EXPECT_EQ(s.name.rfind("atoll_", 0), 0u) << s.line;
}

TEST_F(prometheus, counters_end_with_total_and_gauges_do_not) {
  int counters = 0;
  for (const auto& [name, type] : e_.types) {
    const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    if (type == "counter") {
      ++counters;
      EXPECT_TRUE(total) << name;
    }
    if (type == "gauge") {
      EXPECT_FALSE(total) << name;
    }
  }
  EXPECT_GE(counters, 5) << "accepted, rejected, closed, accept errors, bytes...";
}

TEST_F(prometheus, the_listener_label_carries_each_listener_name) {
  std::set<std::string> seen;
  for (const auto& s : e_.samples)
    if (s.l.count("listener")) seen.insert(s.l.at("listener"));
  EXPECT_EQ(seen, (std::set<std::string>{"public", "health"}));
}

TEST_F(prometheus, rejected_total_has_one_sample_per_reason_per_listener) {
  // The rejected counter is the one carrying reason="waiting_room_full".
  std::string name;
  for (const auto& s : with_label(e_, "reason", "public"))
    if (s.l.at("reason") == "waiting_room_full") name = s.name;
  ASSERT_FALSE(name.empty()) << text_;
  EXPECT_EQ(e_.types[name], "counter");
  for (const std::string listener : {"public", "health"}) {
    std::map<std::string, int> per_reason;
    for (const auto& s : with_label(e_, "reason", listener)) {
      if (s.name != name) continue;
      ++per_reason[s.l.at("reason")];
      if (listener == "public") {
        bool matched = false;
        for (std::size_t i = 0; i < atl::reject_reason_count; ++i)
          if (s.l.at("reason") == atl::to_string(static_cast<atl::reject_reason>(i))) {
            matched = true;
            EXPECT_EQ(s.value, static_cast<double>(5 + i)) << s.line;
          }
        EXPECT_TRUE(matched) << s.line;
      } else {
        EXPECT_EQ(s.value, 0.0) << s.line;
      }
    }
    EXPECT_EQ(per_reason.size(), atl::reject_reason_count) << listener;
    for (const auto& [reason, count] : per_reason) EXPECT_EQ(count, 1) << listener << " " << reason;
  }
}

TEST_F(prometheus, closed_total_has_one_sample_per_close_reason_per_listener) {
  std::string name;
  for (const auto& s : with_label(e_, "reason", "public"))
    if (s.l.at("reason") == "slow_consumer") name = s.name;
  ASSERT_FALSE(name.empty()) << text_;
  EXPECT_EQ(e_.types[name], "counter");
  for (const std::string listener : {"public", "health"}) {
    std::map<std::string, int> per_reason;
    for (const auto& s : with_label(e_, "reason", listener)) {
      if (s.name != name) continue;
      ++per_reason[s.l.at("reason")];
      if (listener != "public") continue;
      for (std::size_t i = 0; i < atl::close_reason_count; ++i) {
        if (s.l.at("reason") == atl::to_string(static_cast<atl::close_reason>(i))) {
          EXPECT_EQ(s.value, static_cast<double>(21 + i)) << s.line;
        }
      }
    }
    EXPECT_EQ(per_reason.size(), atl::close_reason_count) << listener;
    for (const auto& [reason, count] : per_reason) EXPECT_EQ(count, 1) << listener << " " << reason;
  }
}

TEST_F(prometheus, accept_errors_are_labelled_by_errno) {
  auto errs = with_label(e_, "errno", "public");
  ASSERT_EQ(errs.size(), 2u) << text_;
  std::map<std::string, double> by_errno;
  for (const auto& s : errs) {
    by_errno[s.l.at("errno")] = s.value;
    EXPECT_EQ(e_.types[s.name], "counter");
  }
  // errno label: the number or the symbolic name.
  auto value_of = [&](const char* number, const char* symbol) {
    if (by_errno.count(number)) return by_errno[number];
    if (by_errno.count(symbol)) return by_errno[symbol];
    return -1.0;
  };
  EXPECT_EQ(value_of("24", "EMFILE"), 11.0) << text_;
  EXPECT_EQ(value_of("103", "ECONNABORTED"), 12.0) << text_;
}

TEST_F(prometheus, per_thread_metrics_are_labelled_by_thread) {
  std::set<std::string> threads;
  for (const auto& s : with_label(e_, "thread")) {
    threads.insert(s.l.at("thread"));
    EXPECT_FALSE(s.l.count("listener")) << s.line;
  }
  EXPECT_EQ(threads, (std::set<std::string>{"0", "1"})) << text_;
  // The lag of thread 0 is not zero; thread 1's is.
  bool nonzero_lag_on_0 = false;
  for (const auto& s : with_label(e_, "thread"))
    if (s.l.at("thread") == "0" && s.name.find("lag") != std::string::npos && s.value > 0)
      nonzero_lag_on_0 = true;
  EXPECT_TRUE(nonzero_lag_on_0) << text_;
}

TEST_F(prometheus, gauges_and_counters_carry_the_listener_values) {
  auto find = [&](std::string_view part, double value, const char* type) {
    for (const auto& s : with_label(e_, "listener", "public"))
      if (s.name.find(part) != std::string::npos && s.value == value &&
          e_.types[family_of(s.name, e_.types)] == type)
        return true;
    return false;
  };
  EXPECT_TRUE(find("active", 3, "gauge")) << text_;
  EXPECT_TRUE(find("waiting", 2, "gauge")) << text_;
  EXPECT_TRUE(find("accepted", 1001, "counter")) << text_;
  EXPECT_TRUE(find("admitted", 17, "counter")) << text_;
  EXPECT_TRUE(find("bytes", 123456, "counter")) << text_;
  EXPECT_TRUE(find("bytes", 654321, "counter")) << text_;
}

TEST(prometheus_escaping, label_values_are_escaped) {
  atl::server_stats s;
  atl::listener_stats l;
  l.name = "we\"ird\\name\nx";
  l.active = 1;
  s.listeners = {l};
  auto text = atl::to_prometheus(s);
  EXPECT_NE(text.find(R"(listener="we\"ird\\name\nx")"), std::string::npos) << text;
  auto e = parse(text);
  EXPECT_TRUE(e.errors.empty()) << dump(e) << text;
  bool found = false;
  for (const auto& smp : e.samples)
    if (smp.l.count("listener") && smp.l.at("listener") == l.name) found = true;
  EXPECT_TRUE(found);
}

TEST(prometheus_escaping, empty_stats_render_valid_text) {
  auto text = atl::to_prometheus(atl::server_stats{});
  auto e = parse(text);
  EXPECT_TRUE(e.errors.empty()) << dump(e) << text;
  for (const auto& smp : e.samples) EXPECT_FALSE(smp.l.count("listener")) << smp.line;
}

}  // namespace
