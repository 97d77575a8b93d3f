// overload: the field-report scenario. Phases:
//   1. hold: open --held connections (the server's limit), each verified by an echo;
//   2. load, for --duration: up to --extra extra clients connect + send 1 byte + wait for the
//      echo (closed loop, or --rate attempts/s open loop), every attempt classified (served,
//      closed by server, reset, timed out, refused, ...) with its time to outcome; meanwhile a
//      health probe hits --health-port every --health-interval-ms, the held connections are
//      checked every --held-check-ms, and the listen socket's accept queue is sampled every
//      --queue-sample-ms;
//   3. release: close the held connections and measure the time until the first client is
//      served again (recovery);
//   4. drain: wait for attempts still in flight to end (bounded by their timeout).

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <vector>

#include "attempts.hpp"
#include "common.hpp"

namespace atoll_load {

namespace {

enum kind : int { extra_client = 0, health_probe = 1, recovery_probe = 2 };

struct outcome_stats {
  std::array<std::uint64_t, std::size_t(outcome::count_)> counts{};
  std::array<histogram, std::size_t(outcome::count_)> time_to{};
  histogram all;
  std::uint64_t timed_out_connecting = 0;  // timed out before the TCP handshake completed

  void add(const attempt& a, outcome o, std::int64_t now) {
    ++counts[std::size_t(o)];
    time_to[std::size_t(o)].record(now - a.started());
    all.record(now - a.started());
    if (o == outcome::timed_out && !a.connected()) ++timed_out_connecting;
  }
  std::uint64_t total() const {
    std::uint64_t n = 0;
    for (auto c : counts) n += c;
    return n;
  }
  json_object to_json() const {
    json_object j;
    j.integer("attempts", static_cast<std::int64_t>(total()));
    for (std::size_t i = 0; i < counts.size(); ++i)
      j.integer(outcome_name(outcome(i)), static_cast<std::int64_t>(counts[i]));
    j.integer("timed_out_connecting", static_cast<std::int64_t>(timed_out_connecting));
    json_object tto;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] > 0) tto.obj(outcome_name(outcome(i)), percentiles_json(time_to[i], 1e6));
    }
    // Closed or reset by the server: the "rejected promptly" figure.
    histogram rejected = time_to[std::size_t(outcome::closed_by_server)];
    rejected.merge(time_to[std::size_t(outcome::reset)]);
    if (rejected.count() > 0) tto.obj("rejected", percentiles_json(rejected, 1e6));
    tto.obj("all", percentiles_json(all, 1e6));
    j.obj("time_to_outcome_ms", tto);
    j.raw("cdf_ms", cdf_json(all, 1e6));
    return j;
  }
};

struct overload_run final : attempt_listener {
  outcome_stats extra;
  outcome_stats health;
  outcome_stats recovery;
  bool load_phase = true;
  bool closed_loop = true;       // --rate 0: a lane starts again when its attempt ends
  std::size_t restarts_due = 0;  // closed loop: lanes to restart from the main loop
  std::int64_t released_at = 0;  // 0 until phase 3
  std::int64_t first_served_after_release = 0;

  void on_done(attempt& a, outcome o, std::int64_t now) override {
    switch (a.tag) {
      case extra_client:
        extra.add(a, o, now);
        if (load_phase && closed_loop) ++restarts_due;
        break;
      case health_probe:
        health.add(a, o, now);
        break;
      case recovery_probe:
        recovery.add(a, o, now);
        break;
    }
    if (o == outcome::served && a.tag != health_probe && released_at != 0 &&
        first_served_after_release == 0) {
      first_served_after_release = now;
    }
  }
};

struct queue_stats {
  histogram samples;
  std::uint64_t failures = 0;
  void sample(accept_queue_reader& r) {
    if (auto q = r.read()) {
      samples.record(*q);
    } else {
      ++failures;
    }
  }
};

}  // namespace

int run_overload(const options& o, const target& t) {
  event_loop loop;
  source_addresses sources(t, o.src_ips);
  attempt_pool pool(loop);
  overload_run run;
  const attempt_spec extra_spec{&t, &sources, "x", 1, o.attempt_timeout_ms * ms_ns};
  std::optional<target> health_target;
  if (o.health_port) health_target = make_loopback_target(o.host, *o.health_port);
  source_addresses health_sources(t, 1);
  const attempt_spec health_spec{health_target ? &*health_target : &t, &health_sources, "ping\n", 3,
                                 o.health_timeout_ms * ms_ns};
  accept_queue_reader queue_reader(t.port, t.ipv6, o.queue_from_proc);
  queue_stats queue;

  // ---- 1. hold
  constexpr std::size_t max_connecting = 256;
  const std::int64_t t0 = now_ns();
  std::vector<std::unique_ptr<held_conn>> held;
  held.reserve(o.held);
  std::size_t held_ready = 0, held_failed = 0;
  while (now_ns() - t0 < 20 * s_ns) {
    held_ready = held_failed = 0;
    std::size_t pending = 0;
    for (auto& c : held) {
      if (c->current() == held_conn::state::idle) {
        ++held_ready;
      } else if (c->current() == held_conn::state::lost) {
        ++held_failed;
      } else {
        ++pending;
      }
    }
    if (held_ready + held_failed >= o.held) break;
    while (held.size() < o.held && pending < max_connecting) {
      held.push_back(std::make_unique<held_conn>(loop, t, sources));
      held.back()->open(now_ns());
      ++pending;
    }
    loop.run_once(10);
  }
  const double hold_s = double(now_ns() - t0) / 1e9;

  // ---- 2. load
  progress_line progress(o, o.duration_s + 2);
  const std::int64_t load_start = now_ns();
  const std::int64_t load_end = load_start + std::int64_t(o.duration_s * 1e9);
  std::int64_t next_extra = load_start;
  std::int64_t next_health = load_start;
  std::int64_t next_check = load_start + o.held_check_ms * ms_ns;
  std::int64_t next_queue = load_start;
  std::uint64_t skipped = 0, checks_sent = 0, checks_skipped = 0, extra_started = 0;
  const std::int64_t extra_interval = o.rate > 0 ? std::int64_t(1e9 / o.rate) : 0;
  run.closed_loop = o.rate <= 0;
  if (run.closed_loop) run.restarts_due = o.extra;  // start every lane now

  auto tick = [&](std::int64_t now) {
    pool.expire(now);
    if (now >= next_queue) {
      queue.sample(queue_reader);
      next_queue = now + o.queue_sample_ms * ms_ns;
    }
  };

  for (std::int64_t now = now_ns(); now < load_end; now = now_ns()) {
    // Closed loop: a lane starts again as soon as its attempt ended. Open loop: one attempt
    // every 1/rate s, unless --extra are already in flight (counted as skipped).
    for (; run.restarts_due > 0; --run.restarts_due) {
      ++extra_started;
      pool.start(extra_spec, run, extra_client, now);
    }
    while (extra_interval > 0 && now >= next_extra) {
      if (extra_started - run.extra.total() < o.extra) {
        ++extra_started;
        pool.start(extra_spec, run, extra_client, now);
      } else {
        ++skipped;
      }
      next_extra += extra_interval;
    }
    if (health_target && now >= next_health) {
      pool.start(health_spec, run, health_probe, now);
      next_health += o.health_interval_ms * ms_ns;
    }
    if (now >= next_check) {
      for (auto& c : held) {
        if (c->current() == held_conn::state::checking) ++checks_skipped;  // previous unanswered
        if (c->check(now)) ++checks_sent;
      }
      next_check += o.held_check_ms * ms_ns;
    }
    std::int64_t wake =
        std::min({load_end, next_queue, next_check, health_target ? next_health : load_end,
                  extra_interval > 0 ? next_extra : load_end});
    // Rounded up: sleeping a little past `wake` costs nothing (the schedule catches up and the
    // time to outcome is measured from each attempt's own start); spinning would.
    loop.run_once(int(std::clamp<std::int64_t>((wake - now_ns() + ms_ns - 1) / ms_ns, 0, 10)));
    pool.collect();
    now = now_ns();
    tick(now);
    pool.collect();
    if (progress.due(now)) {
      const auto& c = run.extra.counts;
      std::fprintf(stderr,
                   "atoll-load overload: served %llu closed %llu reset %llu timed out %llu, "
                   "health %llu/%llu\n",
                   (unsigned long long)c[std::size_t(outcome::served)],
                   (unsigned long long)c[std::size_t(outcome::closed_by_server)],
                   (unsigned long long)c[std::size_t(outcome::reset)],
                   (unsigned long long)c[std::size_t(outcome::timed_out)],
                   (unsigned long long)run.health.counts[std::size_t(outcome::served)],
                   (unsigned long long)run.health.total());
    }
  }
  run.load_phase = false;
  run.restarts_due = 0;

  // Held connections: one last round must be answered (1 s grace), then they count.
  {
    const std::int64_t now = now_ns();
    for (auto& c : held)
      if (c->check(now)) ++checks_sent;
    const std::int64_t grace_end = now + s_ns;
    while (now_ns() < grace_end) {
      const bool waiting = std::any_of(held.begin(), held.end(), [](auto& c) {
        return c->current() == held_conn::state::checking;
      });
      if (!waiting) break;
      loop.run_once(5);
      pool.collect();
      tick(now_ns());
      pool.collect();
    }
  }
  std::uint64_t answered = 0, unanswered = 0, lost = 0;
  histogram held_rtt;
  for (auto& c : held) {
    answered += c->answered();
    held_rtt.merge(c->rtt());
    if (c->current() == held_conn::state::checking) ++unanswered;
    if (c->current() == held_conn::state::lost) ++lost;
  }
  const std::uint64_t held_ok = held_ready - std::min<std::uint64_t>(held_ready, lost + unanswered);

  // ---- 3. release and recovery
  run.released_at = now_ns();
  held.clear();  // FIN on every held connection
  const std::int64_t recovery_end = run.released_at + o.recovery_timeout_ms * ms_ns;
  const attempt_spec probe_spec{&t, &sources, "r", 1,
                                std::min<std::int64_t>(1000, o.attempt_timeout_ms) * ms_ns};
  // A new probe every millisecond until one is served, at most 20 in flight.
  std::int64_t next_probe = run.released_at;
  constexpr std::uint64_t max_probes = 20;
  std::uint64_t probes_started = 0;
  while (run.first_served_after_release == 0 && now_ns() < recovery_end) {
    const std::int64_t now = now_ns();
    if (now >= next_probe && probes_started - run.recovery.total() < max_probes) {
      ++probes_started;
      pool.start(probe_spec, run, recovery_probe, now);
      next_probe = now + ms_ns;
    }
    loop.run_once(1);
    pool.collect();
    tick(now_ns());
    pool.collect();
  }

  // ---- 4. drain what is still in flight
  const std::int64_t drain_end = now_ns() + o.attempt_timeout_ms * ms_ns + s_ns;
  while (pool.outstanding() > 0 && now_ns() < drain_end) {
    loop.run_once(10);
    pool.collect();
    tick(now_ns());
    pool.collect();
  }

  json_object held_json;
  held_json.integer("requested", static_cast<std::int64_t>(o.held));
  held_json.integer("established", static_cast<std::int64_t>(held_ready));
  held_json.integer("failed_to_establish", static_cast<std::int64_t>(held_failed));
  held_json.num("establish_s", hold_s);
  held_json.integer("checks_sent", static_cast<std::int64_t>(checks_sent));
  held_json.integer("checks_late", static_cast<std::int64_t>(checks_skipped));
  held_json.integer("answered", static_cast<std::int64_t>(answered));
  held_json.integer("unanswered_at_end", static_cast<std::int64_t>(unanswered));
  held_json.integer("lost", static_cast<std::int64_t>(lost));
  held_json.integer("ok", static_cast<std::int64_t>(held_ok));
  held_json.obj("rtt_ms", percentiles_json(held_rtt, 1e6));

  json_object queue_json;
  queue_json.str("source", queue_reader.source());
  queue_json.integer("samples", static_cast<std::int64_t>(queue.samples.count()));
  queue_json.integer("failed_samples", static_cast<std::int64_t>(queue.failures));
  queue_json.integer("max", static_cast<std::int64_t>(queue.samples.max()));
  queue_json.integer("p50", static_cast<std::int64_t>(queue.samples.percentile(50)));
  queue_json.integer("p99", static_cast<std::int64_t>(queue.samples.percentile(99)));

  json_object health_json = run.health.to_json();
  const auto health_total = run.health.total();
  health_json.num("served_pct",
                  health_total ? 100.0 * double(run.health.counts[0]) / double(health_total) : 0.0);

  json_object recovery_json;
  recovery_json.boolean("recovered", run.first_served_after_release != 0);
  recovery_json.num("recovery_ms",
                    run.first_served_after_release
                        ? double(run.first_served_after_release - run.released_at) / 1e6
                        : -1.0);
  recovery_json.obj("probes", run.recovery.to_json());

  json_object j;
  j.str("mode", "overload").str("target", t.text);
  j.integer("extra", static_cast<std::int64_t>(o.extra));
  j.num("rate", o.rate);
  j.num("load_s", o.duration_s);
  j.integer("attempt_timeout_ms", o.attempt_timeout_ms);
  j.integer("skipped", static_cast<std::int64_t>(skipped));
  j.obj("extra_clients", run.extra.to_json());
  j.obj("held", held_json);
  j.obj("health", health_json);
  j.obj("accept_queue", queue_json);
  j.obj("recovery", recovery_json);
  if (o.server_pid) {
    const server_sample s = sample_server(o);
    if (s.rss_kib) j.integer("server_rss_kib", static_cast<std::int64_t>(*s.rss_kib));
  }
  std::printf("%s\n", j.text().c_str());
  return held_ready == o.held ? 0 : 1;
}

}  // namespace atoll_load
