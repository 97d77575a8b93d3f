// sizes (experiment for issue 10, item 2; not built by CMake): prints what an idle connection
// is made of today (atoll's connection_impl and what Asio keeps for its socket) for the
// field-by-field table in bench/profile.md. Read-only use of src/ headers.
//
// Build and run from the repository root (one line):
//   g++ -std=c++20 -O2 -DASIO_STANDALONE -DASIO_NO_DEPRECATED -DASIO_HAS_STD_ALIGNED_ALLOC=1
//       -Iinclude -Isrc bench/experiments/sizes.cpp -o /tmp/sizes -pthread && /tmp/sizes

#include <asio.hpp>
#include <cstdio>
#include <memory>

#include "connection_impl.hpp"

namespace {
struct wait_handler {  // what arm_read's async_wait carries: a shared_ptr copy (self_)
  std::shared_ptr<int> self;
  void operator()(std::error_code) {}
};
}  // namespace

int main() {
  using namespace atl::detail;
  using wait_op = asio::detail::reactive_wait_op<wait_handler, executor_type>;
#define P(x) std::printf("%-64s %4zu\n", #x, sizeof(x))
  P(asio::detail::epoll_reactor::descriptor_state);
  P(wait_op);
  P(stream_socket);
  P(connection_impl);
  P(atl::connection);
  P(list_node<registry_tag>);
  P(timeout_entry);
  P(std::enable_shared_from_this<connection_impl>);
  P(slot);
  P(write_queue);
  P(compact_address);
  P(std::error_code);
  P(std::shared_ptr<connection_impl>);
  P(std::unique_ptr<int>);
  P(std::chrono::milliseconds);
  P(clock::time_point);
}
