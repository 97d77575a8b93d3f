#include "common.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace atoll_load {

std::optional<target> make_loopback_target(const std::string& host_in, std::uint16_t port) {
  const std::string host = host_in == "localhost" ? "127.0.0.1" : host_in;
  target t;
  t.port = port;
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    if ((ntohl(v4.sin_addr.s_addr) >> 24) != 127) {
      std::fprintf(stderr, "atoll-load: %s is not a loopback address (127.0.0.0/8 or ::1 only)\n",
                   host.c_str());
      return std::nullopt;
    }
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&t.addr, &v4, sizeof v4);
    t.len = sizeof v4;
    t.text = host + ":" + std::to_string(port);
    return t;
  }
  if (::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6.sin6_addr)) {
      std::fprintf(stderr, "atoll-load: %s is not a loopback address (127.0.0.0/8 or ::1 only)\n",
                   host.c_str());
      return std::nullopt;
    }
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&t.addr, &v6, sizeof v6);
    t.len = sizeof v6;
    t.ipv6 = true;
    t.text = "[" + host + "]:" + std::to_string(port);
    return t;
  }
  std::fprintf(stderr, "atoll-load: '%s' is not an IP address (names are not resolved)\n",
               host.c_str());
  return std::nullopt;
}

source_addresses::source_addresses(const target& t, std::size_t count) {
  if (t.ipv6 || count <= 1) return;  // the kernel's choice (the target's own address)
  for (std::size_t i = 1; i <= count && i <= 254; ++i) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl((127u << 24) | std::uint32_t(i));
    sources_.push_back(a);
  }
}

int source_addresses::start_connect(const target& t, int& err) {
  const int fd =
      ::socket(t.ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = errno;
    return -1;
  }
  const int one = 1;
  // Small request/response messages: without it Nagle would hold back pipelined writes.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!sources_.empty()) {
    // IP_BIND_ADDRESS_NO_PORT: pick the port at connect() time, per 4-tuple, instead of at
    // bind() time, where every port would have to be unique per source address.
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    const sockaddr_in& src = sources_[next_++ % sources_.size()];
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
      err = errno;
      ::close(fd);
      return -1;
    }
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&t.addr), t.len) != 0 &&
      errno != EINPROGRESS) {
    err = errno;
    ::close(fd);
    return -1;
  }
  err = 0;
  return fd;
}

event_loop::event_loop() : epfd_(::epoll_create1(EPOLL_CLOEXEC)), events_(1024) {
  if (epfd_ < 0) throw std::runtime_error("epoll_create1 failed");
}
event_loop::~event_loop() { ::close(epfd_); }

void event_loop::add(int fd, std::uint32_t events, pollable* p) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = p;
  ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
}

void event_loop::modify(int fd, std::uint32_t events, pollable* p) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = p;
  ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

int event_loop::run_once(int timeout_ms) {
  const int n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), timeout_ms);
  for (int i = 0; i < n; ++i) {
    static_cast<pollable*>(events_[i].data.ptr)->on_event(events_[i].events);
  }
  return n < 0 ? 0 : n;
}

const char* outcome_name(outcome o) noexcept {
  switch (o) {
    case outcome::served:
      return "served";
    case outcome::closed_by_server:
      return "closed_by_server";
    case outcome::reset:
      return "reset";
    case outcome::timed_out:
      return "timed_out";
    case outcome::refused:
      return "refused";
    case outcome::addr_unavailable:
      return "addr_unavailable";
    case outcome::fd_exhausted:
      return "fd_exhausted";
    case outcome::other_error:
      return "other_error";
    case outcome::count_:
      break;
  }
  return "?";
}

outcome classify_errno(int err) noexcept {
  switch (err) {
    case ECONNRESET:
    case EPIPE:
      return outcome::reset;
    case ECONNREFUSED:
      return outcome::refused;
    case ETIMEDOUT:
      return outcome::timed_out;
    case EADDRNOTAVAIL:
    case EADDRINUSE:
      return outcome::addr_unavailable;
    case EMFILE:
    case ENFILE:
      return outcome::fd_exhausted;
    default:
      return outcome::other_error;
  }
}

server_sample sample_server(const options& o) {
  server_sample s;
  if (o.server_pid) {
    s.cpu = read_cpu_times(*o.server_pid);
    s.rss_kib = read_rss_kib(*o.server_pid);
  }
  return s;
}

void json_object::key(const std::string& k) {
  if (!body_.empty()) body_ += ',';
  body_ += '"' + k + "\":";
}

json_object& json_object::num(const std::string& k, double v) {
  key(k);
  if (!std::isfinite(v)) {
    body_ += "null";
    return *this;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  body_ += buf;
  return *this;
}

json_object& json_object::integer(const std::string& k, std::int64_t v) {
  key(k);
  body_ += std::to_string(v);
  return *this;
}

json_object& json_object::str(const std::string& k, const std::string& v) {
  key(k);
  body_ += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') body_ += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) body_ += c;
  }
  body_ += '"';
  return *this;
}

json_object& json_object::boolean(const std::string& k, bool v) {
  key(k);
  body_ += v ? "true" : "false";
  return *this;
}

json_object& json_object::raw(const std::string& k, const std::string& json) {
  key(k);
  body_ += json;
  return *this;
}

json_object percentiles_json(const histogram& h, double unit_ns) {
  json_object j;
  j.integer("count", static_cast<std::int64_t>(h.count()));
  j.num("p50", double(h.percentile(50)) / unit_ns);
  j.num("p90", double(h.percentile(90)) / unit_ns);
  j.num("p99", double(h.percentile(99)) / unit_ns);
  j.num("p999", double(h.percentile(99.9)) / unit_ns);
  j.num("max", double(h.max()) / unit_ns);
  j.num("mean", h.mean() / unit_ns);
  return j;
}

std::string cdf_json(const histogram& h, double unit_ns) {
  static constexpr double points[] = {0,  1,  5,  10, 20, 30,   40,   50,    60, 70,
                                      80, 90, 95, 98, 99, 99.5, 99.9, 99.99, 100};
  std::string out = "[";
  if (h.count() > 0) {
    for (double p : points) {
      if (out.size() > 1) out += ',';
      char buf[64];
      std::snprintf(buf, sizeof buf, "[%g,%.6g]", p,
                    double(p == 0 ? h.min() : h.percentile(p)) / unit_ns);
      out += buf;
    }
  }
  return out + "]";
}

json_object server_json(const options& o, const server_sample& before, const server_sample& after,
                        double units, const char* per) {
  json_object j;
  j.integer("pid", o.server_pid ? *o.server_pid : 0);
  if (before.cpu && after.cpu) {
    const double user = after.cpu->user_s - before.cpu->user_s;
    const double sys = after.cpu->system_s - before.cpu->system_s;
    const double on_cpu = after.cpu->on_cpu_s - before.cpu->on_cpu_s;
    j.num("cpu_user_s", user);
    j.num("cpu_sys_s", sys);
    j.num("on_cpu_s", on_cpu);
    if (units > 0) {
      // user/sys: clock ticks (10 ms); on_cpu: exact (schedstat), user + system together.
      j.num(std::string("user_us_per_") + per, user * 1e6 / units);
      j.num(std::string("sys_us_per_") + per, sys * 1e6 / units);
      j.num(std::string("cpu_us_per_") + per, (user + sys) * 1e6 / units);
      j.num(std::string("on_cpu_us_per_") + per, on_cpu * 1e6 / units);
    }
  }
  if (after.rss_kib) j.integer("rss_kib", static_cast<std::int64_t>(*after.rss_kib));
  return j;
}

}  // namespace atoll_load
