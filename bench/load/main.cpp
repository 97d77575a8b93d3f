// atoll-load: the load generator of atoll's benchmarks. Single-threaded (one epoll loop), for
// loopback targets only, every mode bounded by --duration and by counts. Prints at most one
// progress line per second on stderr (runs longer than a few seconds) and exactly one JSON
// line on stdout.
//
//   atoll-load echo     --port P -c 50 --size 64 [--inflight K] [--server-pid PID]
//   atoll-load churn    --port P -c 8 [--server-pid PID]
//   atoll-load overload --port P --held 100 --extra 50 [--rate R] --health-port H
//   atoll-load idle     --port P -c 10000 --src-ips 8 --server-pid PID
//   atoll-load idle     --ws --port P -c 10000 --src-ips 8 --server-pid PID   (atoll-ws-echo)
//   atoll-load echo     --tls --port P -c 50 --size 1024    (also idle --tls, ws-echo --tls)
//   atoll-load attack   --port P --scenario NAME [--attackers N] --server-pid PID
//
// `atoll-load --help` lists every flag.

#include <signal.h>
#include <sys/resource.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "common.hpp"

namespace {

using namespace atoll_load;

// The modes. A new mode is one row here and one run_* function (common.hpp).
struct mode_entry {
  const char* name;
  int (*run)(const options&, const target&);
  const char* what;
};

constexpr mode_entry modes[] = {
    {"echo", run_echo, "C connections, S-byte messages, K in flight; msgs/s, latency"},
    {"churn", run_churn, "connect -> 1-byte echo -> close loops; conns/s, errors by kind"},
    {"overload", run_overload, "held connections + extra clients + health probes; outcomes"},
    {"idle", run_idle, "open N idle connections and hold them; server RSS per connection"},
    {"ws-echo", run_echo, "echo over WebSocket: upgrade, then masked binary frames"},
    {"attack", run_attack, "a well-behaved client's latency before and during an attack"},
};

void print_help() {
  const options d;
  std::printf("usage: atoll-load MODE --port N [flags]\n\nmodes:\n");
  for (const auto& m : modes) std::printf("  %-9s %s\n", m.name, m.what);
  std::printf("\nattack scenarios (--scenario):\n");
  print_attack_scenarios();
  std::printf(
      "\ncommon flags:\n"
      "  --host ADDR             server address, loopback only (default %s)\n"
      "  --port N                server port (required)\n"
      "  --duration S            measured window / load phase / hold time, seconds (default %g)\n"
      "  --warmup S              echo, churn: load before measuring (default %g)\n"
      "  -c, --connections N     echo: connections; churn: lanes; idle: connections (default %zu)\n"
      "  --server-pid PID        report the server's CPU (user/system per message or connection)\n"
      "                          and RSS from /proc/PID\n"
      "  --src-ips N             bind clients to 127.0.0.1..127.0.0.N (IPv4; default 1 = no bind)\n"
      "  --attempt-timeout-ms MS churn, overload: an attempt with no outcome by then is timed "
      "out (default %lld)\n"
      "  --no-progress           no progress lines on stderr\n"
      "  --tls                   echo, ws-echo, idle: TLS 1.3 client (OpenSSL, no certificate\n"
      "                          verification); the handshake precedes the measured window\n"
      "echo, ws-echo:\n"
      "  --size S                message bytes (ws-echo: payload per frame) (default %zu)\n"
      "  --inflight K            messages in flight per connection; 1 = ping-pong (default %zu)\n"
      "idle:\n"
      "  --ws                    every connection does a WebSocket upgrade (GET, Version 13, no\n"
      "                          extension offered; a 101 naming one fails it) instead of the\n"
      "                          1-byte echo, then holds idle; the JSON says \"ws\":true\n"
      "overload:\n"
      "  --held N                connections held open, verified by echo (default %zu)\n"
      "  --extra K               extra clients in flight at most (default %zu)\n"
      "  --rate R                extra attempts started per second; 0 = each of the K starts\n"
      "                          again as soon as its attempt ended (default 0)\n"
      "  --health-port N         probe this port with \"ping\\n\", expect \"ok\\n\" (default: "
      "none)\n"
      "  --health-interval-ms MS (default %lld)   --health-timeout-ms MS (default %lld)\n"
      "  --held-check-ms MS      echo on every held connection this often (default %lld)\n"
      "  --queue-sample-ms MS    accept-queue sampling period (default %lld)\n"
      "  --queue-source auto|proc  sock_diag netlink (auto) or /proc/net/tcp (default auto)\n"
      "  --recovery-timeout-ms MS give up waiting for recovery after (default %lld)\n"
      "attack (--duration: the attack):\n"
      "  --scenario NAME         see the list above (required)\n"
      "  --attackers N           attacking connections at once (default: the scenario's)\n"
      "  --client-rate R        the well-behaved client's requests/s, paced; 0 = closed-loop\n"
      "                          ping-pong (default %g)\n"
      "  --baseline S            its measured window before the attack (default: --duration)\n"
      "  --client-wire W         echo, ws, http or proxy-echo (default: the scenario's)\n",
      d.host.c_str(), d.duration_s, d.warmup_s, d.connections,
      static_cast<long long>(d.attempt_timeout_ms), d.size, d.inflight, d.held, d.extra,
      static_cast<long long>(d.health_interval_ms), static_cast<long long>(d.health_timeout_ms),
      static_cast<long long>(d.held_check_ms), static_cast<long long>(d.queue_sample_ms),
      static_cast<long long>(d.recovery_timeout_ms), d.client_rate);
}

[[noreturn]] void bad(std::string_view flag, std::string_view value, const char* expected) {
  std::fprintf(stderr, "atoll-load: %.*s: expected %s, got '%.*s'\n", int(flag.size()), flag.data(),
               expected, int(value.size()), value.data());
  std::exit(2);
}

std::uint64_t integer(std::string_view flag, std::string_view v, std::uint64_t min,
                      std::uint64_t max) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n < min || n > max) {
    bad(flag, v,
        ("an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]").c_str());
  }
  return n;
}

double seconds(std::string_view flag, std::string_view v, double max) {
  char* end = nullptr;
  const std::string s(v);
  const double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(d >= 0) || d > max) bad(flag, v, "a number of seconds");
  return d;
}

options parse(int argc, char** argv) {
  options o;
  bool have_port = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      print_help();
      std::exit(0);
    }
    if (!flag.starts_with("-")) {
      if (!o.mode.empty()) bad("MODE", flag, "one mode");
      o.mode = flag;
      continue;
    }
    if (flag == "--no-progress") {
      o.progress = false;
      continue;
    }
    if (flag == "--tls") {
      o.tls = true;
      continue;
    }
    if (flag == "--ws") {
      o.ws = true;
      continue;
    }
    std::string_view v;
    if (auto eq = flag.find('='); eq != std::string_view::npos) {
      v = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      bad(flag, "", "a value");
    }
    constexpr std::uint64_t big = 1'000'000;
    if (flag == "--mode")
      o.mode = v;
    else if (flag == "--host")
      o.host = v;
    else if (flag == "--port") {
      o.port = std::uint16_t(integer(flag, v, 1, 65535));
      have_port = true;
    } else if (flag == "--duration")
      o.duration_s = seconds(flag, v, 3600);
    else if (flag == "--warmup")
      o.warmup_s = seconds(flag, v, 600);
    else if (flag == "-c" || flag == "--connections")
      o.connections = integer(flag, v, 1, 200'000);
    else if (flag == "--size")
      o.size = integer(flag, v, 1, 16 * 1024 * 1024);
    else if (flag == "--inflight")
      o.inflight = integer(flag, v, 1, 4096);
    else if (flag == "--server-pid")
      o.server_pid = pid_t(integer(flag, v, 1, 1u << 30));
    else if (flag == "--src-ips")
      o.src_ips = integer(flag, v, 1, 254);
    else if (flag == "--held")
      o.held = integer(flag, v, 0, 200'000);
    else if (flag == "--extra")
      o.extra = integer(flag, v, 0, 100'000);
    else if (flag == "--rate")
      o.rate = seconds(flag, v, 1e6);
    else if (flag == "--attempt-timeout-ms")
      o.attempt_timeout_ms = std::int64_t(integer(flag, v, 1, 600'000));
    else if (flag == "--health-port")
      o.health_port = std::uint16_t(integer(flag, v, 1, 65535));
    else if (flag == "--health-interval-ms")
      o.health_interval_ms = std::int64_t(integer(flag, v, 1, big));
    else if (flag == "--health-timeout-ms")
      o.health_timeout_ms = std::int64_t(integer(flag, v, 1, big));
    else if (flag == "--held-check-ms")
      o.held_check_ms = std::int64_t(integer(flag, v, 1, big));
    else if (flag == "--queue-sample-ms")
      o.queue_sample_ms = std::int64_t(integer(flag, v, 1, big));
    else if (flag == "--queue-source") {
      if (v != "proc" && v != "auto") bad(flag, v, "auto or proc");
      o.queue_from_proc = v == "proc";
    } else if (flag == "--recovery-timeout-ms")
      o.recovery_timeout_ms = std::int64_t(integer(flag, v, 1, big));
    else if (flag == "--scenario")
      o.scenario = v;
    else if (flag == "--attackers")
      o.attackers = integer(flag, v, 1, 20'000);
    else if (flag == "--client-rate")
      o.client_rate = seconds(flag, v, 100'000);
    else if (flag == "--baseline")
      o.baseline_s = seconds(flag, v, 3600);
    else if (flag == "--client-wire") {
      if (v != "echo" && v != "ws" && v != "http" && v != "proxy-echo")
        bad(flag, v, "echo, ws, http or proxy-echo");
      o.client_wire = v;
    } else
      bad(flag, v, "a known flag (see --help)");
  }
  if (o.mode.empty()) bad("MODE", "", "echo, churn, overload, idle, ws-echo or attack");
  if (!have_port) bad("--port", "", "the server's port");
  if (o.tls && o.mode != "echo" && o.mode != "ws-echo" && o.mode != "idle")
    bad("--tls", o.mode, "the mode echo, ws-echo or idle");
  if (o.ws && o.mode != "idle") bad("--ws", o.mode, "the mode idle");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  // A server that resets a connection must not kill the load generator.
  ::signal(SIGPIPE, SIG_IGN);
  // One descriptor per connection: take whatever the hard limit allows.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  const auto t = make_loopback_target(o.host, o.port);
  if (!t) return 2;
  for (const auto& m : modes) {
    if (o.mode == m.name) return m.run(o, *t);
  }
  bad("MODE", o.mode, "echo, churn, overload, idle, ws-echo or attack");
}
