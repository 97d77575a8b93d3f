#pragma once
// What atoll-load reads about the server under test, from the kernel rather than from the
// server (so bare Asio, the blocking-retry baseline and atoll are measured alike):
//   - CPU time (user and system, all threads) from /proc/PID/stat,
//   - resident memory (VmRSS) from /proc/PID/status,
//   - the accept-queue length of the listen sockets on a port (what `ss -ltn` shows as Recv-Q),
//     through a NETLINK_SOCK_DIAG dump of listening sockets only; /proc/net/tcp is the fallback.

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace atoll_load {

struct cpu_times {
  double user_s = 0;    // /proc/PID/stat utime: 10 ms units
  double system_s = 0;  // /proc/PID/stat stime: 10 ms units
  double on_cpu_s = 0;  // sum of /proc/PID/task/*/schedstat: nanosecond precision, user + system
};

// CPU the process has used so far (all threads), or nullopt if it is gone.
std::optional<cpu_times> read_cpu_times(pid_t pid);
// VmRSS in KiB, or nullopt.
std::optional<std::uint64_t> read_rss_kib(pid_t pid);

// Bytes received but not yet read by the server, summed over its connected TCP sockets on
// local `port` (sock_diag: the receive queues of every non-listening socket with that source
// port). nullopt if sock_diag is unavailable.
std::optional<std::uint64_t> unread_bytes(std::uint16_t port, bool ipv6);

// Sums the accept queues (connections completed by the kernel but not yet accepted) of every
// listening TCP socket bound to `port` (several with SO_REUSEPORT). nullopt if unreadable.
class accept_queue_reader {
 public:
  // `force_proc`: skip sock_diag and parse /proc/net/tcp{,6} (slower; lists every socket).
  accept_queue_reader(std::uint16_t port, bool ipv6, bool force_proc = false);
  ~accept_queue_reader();
  accept_queue_reader(const accept_queue_reader&) = delete;
  accept_queue_reader& operator=(const accept_queue_reader&) = delete;

  std::optional<std::uint32_t> read();
  // "netlink" or "proc": which source answered.
  const char* source() const noexcept { return netlink_fd_ >= 0 ? "netlink" : "proc"; }

 private:
  std::optional<std::uint32_t> read_netlink();
  std::optional<std::uint32_t> read_proc();

  std::uint16_t port_;
  bool ipv6_;
  int netlink_fd_ = -1;
};

}  // namespace atoll_load
