#pragma once
// Hostile peers for the tests in tests/hostile: clients that send as fast as the server takes
// bytes and never read, bounded in bytes and time. The bounds are "the test did not hang"
// limits; what a test asserts is a byte or count (how much a peer could send before it was
// cut off, how much memory the server holds per peer), never a speed.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/test_client.hpp"

namespace atl::test {

/// How one peer's flood ended.
enum class flood_end {
  cut,      ///< the server ended the connection (a send failed: EPIPE/ECONNRESET, or POLLHUP)
  limit,    ///< the peer sent its `max_bytes`
  stalled,  ///< the server stopped taking bytes (nothing could be sent for `stall`)
  deadline  ///< the overall time bound passed
};

inline const char* to_string(flood_end e) {
  switch (e) {
    case flood_end::cut:
      return "cut";
    case flood_end::limit:
      return "limit";
    case flood_end::stalled:
      return "stalled";
    case flood_end::deadline:
      return "deadline";
  }
  return "?";
}

struct flood_result {
  std::size_t sent = 0;
  flood_end end = flood_end::deadline;
  int error = 0;  ///< errno of the failed send when `cut`
};

/// "N peers sent B bytes (cut 2, limit 8)": for failure messages.
inline std::string describe(const std::vector<flood_result>& results) {
  std::size_t total = 0;
  std::size_t by_end[4] = {};
  for (const auto& r : results) {
    total += r.sent;
    ++by_end[static_cast<int>(r.end)];
  }
  std::string s =
      std::to_string(results.size()) + " peers sent " + std::to_string(total) + " bytes (";
  for (int e = 0; e < 4; ++e) {
    s += std::string(e ? ", " : "") + to_string(static_cast<flood_end>(e)) + " " +
         std::to_string(by_end[e]);
  }
  return s + ")";
}

/// Shrinks a socket's kernel buffers (SO_SNDBUF/SO_RCVBUF; 0 leaves one as it is), so that
/// what a peer sends reaches the server's user space instead of waiting in the kernel, and
/// memory measured in the server is not hidden in socket buffers.
inline void shrink_socket_buffers(int fd, int sndbuf, int rcvbuf) {
  if (sndbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
}

/// Every peer in `fds` sends `pattern` over and over (cyclically, so a pattern made of whole
/// frames or requests stays a valid stream across partial sends), never reading, until it has
/// sent `max_bytes`, the server cut it off, or the server took nothing from any unfinished peer
/// for `stall`; all within `overall`. One thread, non-blocking sockets and poll(): the peers
/// press on the server at the same time. The descriptors are left blocking again.
inline std::vector<flood_result> flood(std::span<const int> fds, std::string_view pattern,
                                       std::size_t max_bytes,
                                       std::chrono::milliseconds stall = std::chrono::seconds{1},
                                       std::chrono::milliseconds overall = std::chrono::seconds{
                                           20}) {
  std::vector<flood_result> out(fds.size());
  std::vector<std::size_t> offset(fds.size(), 0);
  std::vector<int> flags(fds.size());
  for (std::size_t i = 0; i < fds.size(); ++i) {
    flags[i] = ::fcntl(fds[i], F_GETFL);
    ::fcntl(fds[i], F_SETFL, flags[i] | O_NONBLOCK);
  }
  const auto deadline = clock::now() + overall;
  auto last_progress = clock::now();
  std::vector<bool> done(fds.size(), pattern.empty());
  // Bounded by `overall` (and each peer by `max_bytes`).
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<std::size_t> who;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (done[i]) continue;
      pfds.push_back({fds[i], POLLOUT, 0});
      who.push_back(i);
    }
    if (pfds.empty()) break;
    const auto now = clock::now();
    if (now >= deadline || now - last_progress >= stall) {
      for (std::size_t i : who)
        out[i].end = now >= deadline ? flood_end::deadline : flood_end::stalled;
      break;
    }
    const int n = ::poll(pfds.data(), pfds.size(), 50);
    if (n < 0 && errno != EINTR) break;
    for (std::size_t k = 0; k < pfds.size() && n > 0; ++k) {
      if (pfds[k].revents == 0) continue;
      const std::size_t i = who[k];
      // A few sends per wakeup, so one peer does not starve the others.
      for (int round = 0; round < 16 && !done[i]; ++round) {
        const std::size_t want = std::min(pattern.size() - offset[i], max_bytes - out[i].sent);
        const ssize_t r = ::send(fds[i], pattern.data() + offset[i], want, MSG_NOSIGNAL);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          out[i].end = flood_end::cut;
          out[i].error = errno;
          done[i] = true;
          break;
        }
        out[i].sent += static_cast<std::size_t>(r);
        offset[i] = (offset[i] + static_cast<std::size_t>(r)) % pattern.size();
        last_progress = clock::now();
        if (out[i].sent >= max_bytes) {
          out[i].end = flood_end::limit;
          done[i] = true;
        }
      }
      if (!done[i] && (pfds[k].revents & (POLLERR | POLLHUP)) != 0) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        ::getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &soerr, &len);
        out[i].end = flood_end::cut;
        out[i].error = soerr;
        done[i] = true;
      }
    }
  }
  for (std::size_t i = 0; i < fds.size(); ++i) ::fcntl(fds[i], F_SETFL, flags[i]);
  return out;
}

/// Sends `pattern` (cyclically) without blocking until the kernel takes no more: the peer's
/// send buffer and the server's receive buffer are then full. Returns the bytes sent. For a
/// server that does not read (or has not accepted the connection yet). A later `flood` starts
/// at the pattern's beginning again: use a pattern of identical bytes when that matters.
inline std::size_t fill_socket_buffers(int fd, std::string_view pattern,
                                       std::size_t max_bytes = 64 * 1024 * 1024) {
  std::size_t sent = 0;
  while (sent < max_bytes && !pattern.empty()) {
    const std::size_t at = sent % pattern.size();
    const ssize_t r =
        ::send(fd, pattern.data() + at, std::min(pattern.size() - at, max_bytes - sent),
               MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    sent += static_cast<std::size_t>(r);
  }
  return sent;
}

/// Waits until `count()` (e.g. the server's bytes_in_total) has not changed for `quiet`, i.e.
/// the server has taken in what the attackers sent, or stopped taking it; at most `overall`.
/// Returns the final count. A "settled" guess only bounds the wait: a server that is slow
/// but still working shows up as a larger count, never as a failure of this wait.
template <class Count>
auto wait_settled(Count count, std::chrono::milliseconds quiet = std::chrono::seconds{1},
                  std::chrono::milliseconds overall = std::chrono::seconds{20}) {
  const auto deadline = clock::now() + overall;
  auto last = count();
  auto changed = clock::now();
  while (clock::now() < deadline && clock::now() - changed < quiet) {
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
    const auto now = count();
    if (now != last) {
      last = now;
      changed = clock::now();
    }
  }
  return last;
}

/// How a slow-loris peer ended.
struct loris_result {
  std::size_t sent = 0;  ///< bytes sent before the server closed (or all of them)
  bool closed = false;   ///< the server closed the connection (EOF, reset, failed send)
};

/// A slow-loris peer: sends `bytes` one byte per `tick`, watching for the server's close
/// between bytes (what the server sends meanwhile, e.g. a TLS alert, is discarded). Ends when
/// the server closes or every byte was sent: bounded by `bytes.size()` ticks. The pacing is
/// the attack itself, not a synchronisation.
inline loris_result slow_loris(client& c, std::string_view bytes,
                               std::chrono::milliseconds tick = std::chrono::milliseconds{20}) {
  loris_result r;
  for (char byte : bytes) {
    if (!c.send(std::string_view(&byte, 1))) {
      r.closed = true;
      return r;
    }
    ++r.sent;
    std::string sink;
    const outcome o = c.read_some(sink, tick);
    if (o == outcome::eof || o == outcome::reset || o == outcome::error) {
      r.closed = true;
      return r;
    }
  }
  return r;
}

/// `n` copies of `unit` (one request, or one frame), as a pattern for `flood`.
inline std::string repeated(std::string_view unit, std::size_t n) {
  std::string s;
  s.reserve(unit.size() * n);
  for (std::size_t i = 0; i < n; ++i) s.append(unit);
  return s;
}

}  // namespace atl::test
