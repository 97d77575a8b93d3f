#include "proc_stats.hpp"

#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace atoll_load {

std::optional<cpu_times> read_cpu_times(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces; fields are counted after its ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  // utime(14) stime(15).
  for (int i = 3; i < 14; ++i) rest >> field;
  unsigned long long utime = 0, stime = 0;
  if (!(rest >> utime >> stime)) return std::nullopt;
  const double tick = double(::sysconf(_SC_CLK_TCK));
  cpu_times t{double(utime) / tick, double(stime) / tick, 0};
  // The split above comes in clock ticks; the total on-CPU time of every thread is exact.
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = ::opendir(tasks.c_str())) {
    unsigned long long total_ns = 0;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream sched(tasks + "/" + e->d_name + "/schedstat");
      unsigned long long ns = 0;
      if (sched >> ns) total_ns += ns;
    }
    ::closedir(d);
    t.on_cpu_s = double(total_ns) / 1e9;
  }
  return t;
}

std::optional<std::uint64_t> read_rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return std::nullopt;
}

accept_queue_reader::accept_queue_reader(std::uint16_t port, bool ipv6, bool force_proc)
    : port_(port), ipv6_(ipv6) {
  if (force_proc) return;
  netlink_fd_ = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (netlink_fd_ >= 0 && !read_netlink()) {
    ::close(netlink_fd_);
    netlink_fd_ = -1;
  }
}

accept_queue_reader::~accept_queue_reader() {
  if (netlink_fd_ >= 0) ::close(netlink_fd_);
}

std::optional<std::uint32_t> accept_queue_reader::read() {
  return netlink_fd_ >= 0 ? read_netlink() : read_proc();
}

namespace {

// One sock_diag dump of the TCP sockets in `states` (a bit mask of TCP_* states); the sum of
// the receive queues (for a LISTEN socket: its accept queue) of those whose local port is
// `port`.
std::optional<std::uint64_t> sum_receive_queues(int fd, bool ipv6, std::uint32_t states,
                                                std::uint16_t port) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = ipv6 ? AF_INET6 : AF_INET;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = states;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    return std::nullopt;
  }
  std::uint64_t total = 0;
  alignas(nlmsghdr) char buf[16384];
  // A dump of listeners is a few messages; of connections, one per ~50 sockets: bounded.
  for (int reads = 0; reads < 4096; ++reads) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    // NLMSG_OK/NLMSG_NEXT spelled out: the macros compare signed and unsigned lengths.
    const auto size = static_cast<std::size_t>(n);
    for (std::size_t at = 0; at + sizeof(nlmsghdr) <= size;) {
      const auto* h = reinterpret_cast<const nlmsghdr*>(buf + at);
      if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > size - at) break;
      at += NLMSG_ALIGN(h->nlmsg_len);
      if (h->nlmsg_type == NLMSG_DONE) return total;
      if (h->nlmsg_type == NLMSG_ERROR) return std::nullopt;
      const auto* d = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      if (ntohs(d->id.idiag_sport) == port) total += d->idiag_rqueue;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::uint64_t> unread_bytes(std::uint16_t port, bool ipv6) {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  const auto total = sum_receive_queues(fd, ipv6, 0xfffu & ~(1u << TCP_LISTEN), port);
  ::close(fd);
  return total;
}

// One dump request for listening sockets only (idiag_states), so the answer stays a few
// hundred bytes however many connections are open: cheap enough to sample every few ms
// without disturbing the run, unlike /proc/net/tcp, which lists every socket.
std::optional<std::uint32_t> accept_queue_reader::read_netlink() {
  const auto total = sum_receive_queues(netlink_fd_, ipv6_, 1u << TCP_LISTEN, port_);
  if (!total) return std::nullopt;
  return static_cast<std::uint32_t>(*total);
}

// /proc/net/tcp: "sl local_address rem_address st tx_queue:rx_queue ..."; for a LISTEN (0A)
// socket rx_queue is the accept-queue length.
std::optional<std::uint32_t> accept_queue_reader::read_proc() {
  std::ifstream in(ipv6_ ? "/proc/net/tcp6" : "/proc/net/tcp");
  if (!in) return std::nullopt;
  std::string line;
  std::getline(in, line);  // header
  std::uint32_t total = 0;
  char port_hex[8];
  std::snprintf(port_hex, sizeof port_hex, ":%04X", unsigned{port_});
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues;
    if (!(f >> sl >> local >> remote >> st >> queues)) continue;
    if (st != "0A" || local.size() < 5 || local.compare(local.size() - 5, 5, port_hex) != 0) {
      continue;
    }
    const auto colon = queues.find(':');
    if (colon != std::string::npos) {
      total += static_cast<std::uint32_t>(std::stoul(queues.substr(colon + 1), nullptr, 16));
    }
  }
  return total;
}

}  // namespace atoll_load
