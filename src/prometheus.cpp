// Prometheus text exposition format 0.0.4: one HELP and TYPE line per metric family, then
// its samples; label values escaped (backslash, double quote, newline).

#include <string.h>

#include <fmt/format.h>

#include "atoll/stats.hpp"

namespace atl {
namespace {

std::string escape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char ch : v) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '"') out += "\\\"";
    else if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}

std::string errno_label(int err) {
  // strerrorname_np (glibc >= 2.32) gives "EMFILE"; fall back to the number.
  if (const char* n = ::strerrorname_np(err)) return n;
  return std::to_string(err);
}

class writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP atoll_{} {}\n# TYPE atoll_{} {}\n", name, help, name, type);
  }
  template <class V>
  void sample(std::string_view name, std::string_view labels, V value) {
    out_ += fmt::format("atoll_{}{{{}}} {}\n", name, labels, value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

double seconds(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1e6; }

}  // namespace

std::string to_prometheus(const server_stats& s) {
  writer w;
  auto per_listener = [&](std::string_view name, std::string_view type, std::string_view help,
                          auto value) {
    w.family(name, type, help);
    for (const auto& l : s.listeners) {
      w.sample(name, fmt::format("listener=\"{}\"", escape(l.name)), value(l));
    }
  };
  per_listener("connections_active", "gauge", "Connections open now.",
               [](const listener_stats& l) { return l.active; });
  per_listener("connections_max", "gauge", "The listener's max_connections.",
               [](const listener_stats& l) { return l.max_connections; });
  per_listener("connections_waiting", "gauge", "Sockets in the waiting room now.",
               [](const listener_stats& l) { return l.waiting; });
  per_listener("listener_suspended", "gauge", "1 while the listener is suspended.",
               [](const listener_stats& l) { return l.suspended ? 1 : 0; });
  per_listener("connections_accepted_total", "counter", "Sockets taken from accept(2).",
               [](const listener_stats& l) { return l.accepted_total; });
  per_listener("connections_admitted_after_wait_total", "counter",
               "Connections admitted from the waiting room.",
               [](const listener_stats& l) { return l.admitted_after_wait_total; });

  w.family("connections_rejected_total", "counter",
           "Sockets closed without being admitted, by reason.");
  for (const auto& l : s.listeners) {
    for (std::size_t r = 0; r < reject_reason_count; ++r) {
      w.sample("connections_rejected_total",
               fmt::format("listener=\"{}\",reason=\"{}\"", escape(l.name),
                           to_string(static_cast<reject_reason>(r))),
               l.rejected_total[r]);
    }
  }
  w.family("connections_closed_total", "counter", "Connections ended, by close reason.");
  for (const auto& l : s.listeners) {
    for (std::size_t r = 0; r < close_reason_count; ++r) {
      w.sample("connections_closed_total",
               fmt::format("listener=\"{}\",reason=\"{}\"", escape(l.name),
                           to_string(static_cast<close_reason>(r))),
               l.closed_total[r]);
    }
  }
  w.family("accept_errors_total", "counter", "accept(2) failures, by errno.");
  for (const auto& l : s.listeners) {
    for (const auto& [err, n] : l.accept_errors_total) {
      w.sample("accept_errors_total",
               fmt::format("listener=\"{}\",errno=\"{}\"", escape(l.name), errno_label(err)), n);
    }
  }
  per_listener("bytes_received_total", "counter", "Bytes read from connections.",
               [](const listener_stats& l) { return l.bytes_in_total; });
  per_listener("bytes_sent_total", "counter", "Bytes written to connections.",
               [](const listener_stats& l) { return l.bytes_out_total; });

  auto per_thread = [&](std::string_view name, std::string_view type, std::string_view help,
                        auto value) {
    w.family(name, type, help);
    for (std::size_t i = 0; i < s.threads.size(); ++i) {
      w.sample(name, fmt::format("thread=\"{}\"", i), value(s.threads[i]));
    }
  };
  per_thread("event_loop_lag_max_seconds", "gauge",
             "Largest lateness of the io thread's 100 ms probe timer since start.",
             [](const thread_stats& t) { return seconds(t.loop_lag_max); });
  per_thread("event_loop_lag_p99_seconds", "gauge",
             "99th percentile lateness of the probe timer over its last 128 firings.",
             [](const thread_stats& t) { return seconds(t.loop_lag_p99); });
  per_thread("thread_connections", "gauge", "Connections living on the io thread now.",
             [](const thread_stats& t) { return t.connections; });
  return w.take();
}

}  // namespace atl
