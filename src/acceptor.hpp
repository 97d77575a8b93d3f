#pragma once
// One accept loop of a listener on one io thread. It waits for the listen socket to become
// readable and then accepts in a batch with accept4(2) through the syscall seam. It never
// sleeps and never blocks: at the connection limit the listener decides per socket (admit,
// wait, reject) and the loop goes on. On EMFILE/ENFILE it sheds the waiting clients with the
// reserve descriptor (so they see a prompt close, not a hang) and backs off on a timer,
// 100 ms doubling to 1 s, instead of spinning (the Asio examples and uWS#445 spin).

#include <chrono>
#include <memory>
#include <system_error>

#include "asio_types.hpp"

namespace atl::detail {

class io_thread;
class listener_state;

class acceptor : public std::enable_shared_from_this<acceptor> {
 public:
  acceptor(io_thread& t, listener_state& l, int listen_fd, int family);

  // Both on the acceptor's io thread.
  void start();
  void stop() noexcept;

  static constexpr std::chrono::milliseconds min_backoff{100};
  static constexpr std::chrono::milliseconds max_backoff{1000};

 private:
  void arm();
  void on_ready(std::error_code ec);
  void shed();
  void back_off();

  io_thread& thread_;
  listener_state& listener_;
  socket_acceptor socket_;
  steady_timer backoff_timer_;
  std::chrono::milliseconds backoff_{0};
  bool stopped_ = false;
};

}  // namespace atl::detail
