// churn: C lanes, each looping connect → 1-byte echo → close as fast as the server allows;
// connections/s over the measured window, connect latency (connect() to writable), full cycle
// time, and errors by kind. With --server-pid: the server's CPU per connection.

#include <array>
#include <cstdio>
#include <vector>

#include "attempts.hpp"
#include "common.hpp"

namespace atoll_load {

namespace {

struct churn_run final : attempt_listener {
  bool measuring = false;
  bool restarting = true;
  std::size_t restarts_due = 0;  // lanes whose attempt ended: restarted by the main loop
  histogram connect_latency;
  histogram cycle;
  std::array<std::uint64_t, std::size_t(outcome::count_)> outcomes{};
  std::uint64_t served_total = 0;

  void on_connected(attempt& a, std::int64_t now) override {
    if (measuring) connect_latency.record(now - a.started());
  }
  void on_done(attempt& a, outcome o, std::int64_t now) override {
    if (o == outcome::served) ++served_total;
    if (measuring) {
      ++outcomes[std::size_t(o)];
      if (o == outcome::served) cycle.record(now - a.started());
    }
    if (restarting) ++restarts_due;
  }
};

}  // namespace

int run_churn(const options& o, const target& t) {
  event_loop loop;
  source_addresses sources(t, o.src_ips);
  attempt_pool pool(loop);
  attempt_spec spec{&t, &sources, "c", 1, o.attempt_timeout_ms * ms_ns};
  churn_run run;

  const std::size_t lanes = std::max<std::size_t>(o.connections, 1);
  for (std::size_t i = 0; i < lanes; ++i) pool.start(spec, run, 0, now_ns());

  progress_line progress(o, o.warmup_s + o.duration_s);
  auto run_for = [&](double seconds, const char* phase) {
    const std::int64_t end = now_ns() + std::int64_t(seconds * 1e9);
    std::uint64_t last = run.served_total;
    for (std::int64_t now = now_ns(); now < end; now = now_ns()) {
      loop.run_once(int(std::min<std::int64_t>(10, (end - now) / ms_ns + 1)));
      pool.collect();
      now = now_ns();
      pool.expire(now);
      pool.collect();
      for (; run.restarts_due > 0; --run.restarts_due) pool.start(spec, run, 0, now);
      if (progress.due(now)) {
        std::fprintf(stderr, "atoll-load churn: %s, %.0f conns/s\n", phase,
                     double(run.served_total - last));
        last = run.served_total;
      }
    }
  };

  run_for(o.warmup_s, "warmup");
  const server_sample before = sample_server(o);
  const std::int64_t w0 = now_ns();
  run.measuring = true;
  run_for(o.duration_s, "measuring");
  run.measuring = false;
  const std::int64_t w1 = now_ns();
  const server_sample after = sample_server(o);

  // Let the attempts in flight end (bounded by their timeout), uncounted.
  run.restarting = false;
  const std::int64_t drain_end = now_ns() + spec.timeout_ns + s_ns;
  while (pool.outstanding() > 0 && now_ns() < drain_end) {
    loop.run_once(10);
    pool.expire(now_ns());
    pool.collect();
  }

  const double window = double(w1 - w0) / 1e9;
  const auto served = run.outcomes[std::size_t(outcome::served)];
  json_object errors;
  std::uint64_t error_total = 0;
  for (std::size_t i = 1; i < run.outcomes.size(); ++i) {
    errors.integer(outcome_name(outcome(i)), static_cast<std::int64_t>(run.outcomes[i]));
    error_total += run.outcomes[i];
  }
  json_object j;
  j.str("mode", "churn").str("target", t.text);
  j.integer("lanes", static_cast<std::int64_t>(lanes));
  j.num("warmup_s", o.warmup_s).num("window_s", window);
  j.integer("connections", static_cast<std::int64_t>(served));
  j.num("conns_per_s", double(served) / window);
  j.integer("errors_total", static_cast<std::int64_t>(error_total));
  j.obj("errors", errors);
  j.obj("connect_latency_us", percentiles_json(run.connect_latency, 1e3));
  j.obj("cycle_us", percentiles_json(run.cycle, 1e3));
  if (o.server_pid) j.obj("server", server_json(o, before, after, double(served), "conn"));
  std::printf("%s\n", j.text().c_str());
  return served > 0 ? 0 : 1;
}

}  // namespace atoll_load
