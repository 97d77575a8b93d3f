#include "admission.hpp"

#include <utility>

namespace atl::detail {

admission_verdict admission::decide(waiter& w, clock::time_point now) {
  admission_verdict v;
  // Without retries the room is always empty; with them, a waiter is served before a
  // newcomer (DESIGN.md: admitted oldest first).
  if (rules_.retry_count == 0 || sup_.waiting() == 0) {
    if (slot s = sup_.try_acquire()) {
      v.what = admission_verdict::action::admit;
      v.granted = std::move(s);
      return v;
    }
  }
  if (rules_.retry_count == 0) {
    v.why = reject_reason::limit;
    return v;
  }
  w.deadline = now + rules_.wait_span();
  if (!sup_.enqueue(w)) {
    v.why = reject_reason::waiting_room_full;
    return v;
  }
  v.what = admission_verdict::action::wait;
  return v;
}

}  // namespace atl::detail
