#include "admission.hpp"

#include <utility>

namespace atl::detail {

admission_verdict admission::decide(waiter& w, clock::time_point now) {
  // Without retries the room is always empty; with them, a waiter is served before a
  // newcomer (DESIGN.md: admitted oldest first).
  if (rules_.retry_count == 0 || sup_.waiting() == 0) {
    if (slot s = sup_.try_acquire()) return admission_verdict::admit(std::move(s));
  }
  if (rules_.retry_count == 0) return admission_verdict::reject(reject_reason::limit);
  w.deadline = now + rules_.wait_span();
  if (!sup_.enqueue(w)) return admission_verdict::reject(reject_reason::waiting_room_full);
  return admission_verdict::wait();
}

}  // namespace atl::detail
