// Proves an installed (or add_subdirectory'd) atoll can be compiled against, linked and run:
// a server with one listener on 127.0.0.1, port 0, started, its bound port read, stopped.
#include <atoll/atoll.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <span>

namespace {

class echo_handler final : public atl::handler {
 public:
  void on_data(atl::connection& c, std::span<const std::byte> data) override { c.send(data); }
};

}  // namespace

int main() {
  try {
    atl::server server{atl::server_config{.io_threads = 1}};
    atl::listener_config listener;
    listener.host = "127.0.0.1";
    listener.port = 0;
    const auto id = server.add_listener(
        listener, [](atl::connection&) { return std::make_unique<echo_handler>(); });

    server.start();
    const atl::endpoint bound = server.local_endpoint(id);
    std::printf("atoll package consumer: listening on %s\n", bound.to_string().c_str());
    server.stop(std::chrono::milliseconds{1000});

    if (bound.port() == 0) {
      std::fprintf(stderr, "atoll package consumer: bound port is 0\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "atoll package consumer: %s\n", e.what());
    return 1;
  }
}
