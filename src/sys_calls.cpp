#include "sys_calls.hpp"

namespace atl::detail::sys {

calls& current() noexcept {
  static calls c;
  return c;
}

}  // namespace atl::detail::sys
