#pragma once
// What every atoll-load mode shares: options, the loopback-only target, non-blocking connect
// with source addresses spread over 127.0.0.x, a small epoll loop, time, errno
// classification, server CPU/RSS sampling and the one-line JSON result.

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "histogram.hpp"
#include "proc_stats.hpp"

namespace atoll_load {

// ---- time --------------------------------------------------------------------------------

inline std::int64_t now_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
constexpr std::int64_t ms_ns = 1'000'000;
constexpr std::int64_t s_ns = 1'000'000'000;

// ---- options -----------------------------------------------------------------------------

struct options {
  std::string mode;
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  double duration_s = 5;         // measured window (echo, churn), overload phase, idle hold
  double warmup_s = 1;           // echo, churn: load before the measured window
  std::size_t connections = 50;  // echo: C; churn: concurrent lanes; idle: N
  std::size_t size = 64;         // echo: message bytes
  std::size_t inflight = 1;      // echo: messages in flight per connection (1 = ping-pong)
  std::optional<pid_t> server_pid;
  std::size_t src_ips = 1;  // spread clients over 127.0.0.1 .. 127.0.0.N
  bool tls = false;         // echo, ws-echo, idle: TLS 1.3 client (tls_stream.hpp)
  bool ws = false;          // idle: a WebSocket upgrade per connection instead of the echo
  // overload
  std::size_t held = 100;  // N connections held (the server's limit)
  std::size_t extra = 50;  // K extra clients at most at once
  double rate = 0;         // extra attempts started per second; 0 = closed loop
  std::int64_t attempt_timeout_ms = 2000;
  std::optional<std::uint16_t> health_port;
  std::int64_t health_interval_ms = 100;
  std::int64_t health_timeout_ms = 1000;
  std::int64_t held_check_ms = 250;
  std::int64_t queue_sample_ms = 5;
  bool queue_from_proc = false;  // --queue-source proc
  std::int64_t recovery_timeout_ms = 10000;
  // attack
  std::string scenario;       // deflate-empty-blocks, ping-flood, ... (mode_attack.cpp)
  std::size_t attackers = 0;  // attacking connections at once; 0 = the scenario's default
  double client_rate = 1000;  // the well-behaved client's requests/s; 0 = closed-loop ping-pong
  double baseline_s = -1;     // its measured window without attack; < 0 = --duration
  std::string client_wire;    // echo, ws, http or proxy-echo; empty = the scenario's
  bool progress = true;
};

// ---- target ------------------------------------------------------------------------------

// The server address. Only loopback (127.0.0.0/8, ::1) is accepted: a load generator must never
// be pointed at someone else's machine by a typo.
struct target {
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool ipv6 = false;
  std::uint16_t port = 0;
  std::string text;
};
// Parses host:port into a target; on a non-loopback or malformed address prints why and
// returns nullopt.
std::optional<target> make_loopback_target(const std::string& host, std::uint16_t port);

// Source addresses for bind-before-connect: 127.0.0.1 .. 127.0.0.N (IPv4 targets only). Each
// source address has its own ~28k ephemeral ports towards one server port, so 10k-connection
// runs and long churn runs (TIME_WAIT) do not run out of ports.
class source_addresses {
 public:
  source_addresses(const target& t, std::size_t count);
  // Starts a non-blocking connect; returns the fd (connect in progress or done) or -1 with
  // `err` set (errno of socket/bind/connect).
  int start_connect(const target& t, int& err);

 private:
  std::vector<sockaddr_in> sources_;
  std::size_t next_ = 0;
};

// ---- epoll -------------------------------------------------------------------------------

// Anything registered with the loop. The loop never frees one; owners retire objects only
// between batches (see event_loop::retire), so an event already returned for a closed fd
// never reaches freed memory.
struct pollable {
  virtual ~pollable() = default;
  virtual void on_event(std::uint32_t events) = 0;
};

class event_loop {
 public:
  event_loop();
  ~event_loop();
  void add(int fd, std::uint32_t events, pollable* p);
  void modify(int fd, std::uint32_t events, pollable* p);
  // Waits at most `timeout_ms` and dispatches what is ready. Returns the number of events.
  int run_once(int timeout_ms);

 private:
  int epfd_;
  std::vector<epoll_event> events_;
};

// ---- outcomes ----------------------------------------------------------------------------

// How one connect+request attempt ended (overload, churn, health probes).
enum class outcome : std::uint8_t {
  served,            // the expected reply arrived
  closed_by_server,  // EOF before the reply
  reset,             // ECONNRESET (on connect, read or write)
  timed_out,         // no answer within the attempt timeout
  refused,           // ECONNREFUSED
  addr_unavailable,  // EADDRNOTAVAIL: out of local ports
  fd_exhausted,      // EMFILE/ENFILE in the load generator itself
  other_error,
  count_
};
const char* outcome_name(outcome o) noexcept;
outcome classify_errno(int err) noexcept;

// ---- server measurements -----------------------------------------------------------------

struct server_sample {
  std::optional<cpu_times> cpu;
  std::optional<std::uint64_t> rss_kib;
};
server_sample sample_server(const options& o);

// ---- JSON --------------------------------------------------------------------------------

// Builds one JSON object; values are numbers, strings, booleans or nested objects (raw).
class json_object {
 public:
  json_object& num(const std::string& key, double v);
  json_object& integer(const std::string& key, std::int64_t v);
  json_object& str(const std::string& key, const std::string& v);
  json_object& boolean(const std::string& key, bool v);
  json_object& raw(const std::string& key, const std::string& json);
  json_object& obj(const std::string& key, const json_object& o) { return raw(key, o.text()); }
  std::string text() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

// Percentiles of a histogram of nanoseconds, in `unit_ns` units (1000 = microseconds).
json_object percentiles_json(const histogram& h, double unit_ns);
// The distribution as [[percentile, value], ...] for plotting a CDF.
std::string cdf_json(const histogram& h, double unit_ns);

// Server CPU and RSS over a measured window, per `units` (messages, connections).
json_object server_json(const options& o, const server_sample& before, const server_sample& after,
                        double units, const char* per);

// ---- progress ----------------------------------------------------------------------------

// At most one progress line per second on stderr, and only for runs longer than a few
// seconds (short smoke runs stay quiet).
class progress_line {
 public:
  progress_line(const options& o, double planned_s) : on_(o.progress && planned_s > 3) {}
  bool due(std::int64_t now) {
    if (!on_ || now < next_) return false;
    next_ = now + s_ns;
    return true;
  }

 private:
  bool on_;
  std::int64_t next_ = 0;
};

// ---- modes (one function each; main.cpp maps names to them) ------------------------------

int run_echo(const options& o, const target& t);
int run_churn(const options& o, const target& t);
int run_overload(const options& o, const target& t);
int run_idle(const options& o, const target& t);
int run_attack(const options& o, const target& t);
// Lists the attack scenarios (name and one line each) for --help.
void print_attack_scenarios();

}  // namespace atoll_load
