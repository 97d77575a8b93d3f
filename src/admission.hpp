#pragma once
// The admission policy of one listener (DESIGN.md "The limit"): what becomes of an accepted
// socket — admitted into a slot, put in the bounded waiting room, or rejected now — and when a
// waiter expires. The rules live here and nowhere else; listener_state only carries a verdict
// out (builds the connection, writes the reject response, counts, emits the event).
//
// Pure policy over the supervisor: no sockets, no io thread, time passed in, so every rule is
// a unit test (tests/unit/admission_test.cpp).

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "asio_types.hpp"
#include "atoll/stats.hpp"
#include "supervisor.hpp"

namespace atl::detail {

// The listener's retry settings (listener_config::retry_count / retry_wait).
struct admission_rules {
  std::size_t retry_count = 0;
  std::chrono::milliseconds retry_wait{0};

  // How long a socket may wait for a slot: retry_count x retry_wait (0: it never waits).
  clock::duration wait_span() const noexcept {
    return retry_wait * static_cast<std::int64_t>(retry_count);
  }
};

// What to do with one accepted socket. Made by the named constructors, so a verdict carries
// only what its action has (a slot to admit with, a reason to reject for).
struct admission_verdict {
  enum class action { admit, wait, reject };

  static admission_verdict admit(slot s) noexcept { return {action::admit, std::move(s), {}}; }
  static admission_verdict wait() noexcept { return {action::wait, {}, {}}; }
  static admission_verdict reject(reject_reason why) noexcept { return {action::reject, {}, why}; }

  action what;
  slot granted;                      // admit: the socket's slot
  std::optional<reject_reason> why;  // reject: the reason to count
};

class admission {
 public:
  // `sup` must outlive this object.
  admission(supervisor& sup, admission_rules rules) noexcept : sup_(sup), rules_(rules) {}

  // Decides for the socket `w` accepted at `now` (its fd, peer and thread set by the caller):
  //   a free slot and nobody waiting    -> admit; `w` untouched, the verdict holds the slot
  //   retry_count == 0                  -> reject (limit)
  //   the waiting room has room         -> wait; `w` was moved into the room with deadline
  //                                        now + retry_count x retry_wait, and leaves it through
  //                                        the supervisor's admit callback (a freed slot, oldest
  //                                        waiter first) or through expire()
  //   otherwise                         -> reject (waiting_room_full); `w` untouched
  // With retries, sockets already waiting go first: a newcomer never overtakes them.
  // A stopping listener rejects before asking (DESIGN.md "Shutdown", not a limit rule).
  // Any thread (the supervisor is thread-safe).
  admission_verdict decide(waiter& w, clock::time_point now);

  // Removes and returns the waiters whose deadline is at or before `now` (oldest first); the
  // caller rejects them as wait_expired.
  std::vector<waiter> expire(clock::time_point now) { return sup_.take_expired(now); }
  // When the oldest waiter expires (all wait the same span, so the oldest expires first).
  std::optional<clock::time_point> next_expiry() { return sup_.next_deadline(); }
  // Removes and returns every waiter (stop / suspend); the caller rejects them as shutdown.
  std::vector<waiter> evict_all() { return sup_.take_all(); }

  const admission_rules& rules() const noexcept { return rules_; }

 private:
  supervisor& sup_;
  const admission_rules rules_;
};

}  // namespace atl::detail
