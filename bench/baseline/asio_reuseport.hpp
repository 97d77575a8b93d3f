#pragma once
// The serving skeleton the bare-Asio baselines share (bare-asio-echo, bare-asio-tls-echo), the
// way Asio's examples scale a server: one io_context per thread, one SO_REUSEPORT listen
// socket per thread (backlog 1024, atoll's default), SIGINT/SIGTERM stop every loop. Only the
// per-connection code differs between the baselines, and that stays in each one's file.

#include <sys/socket.h>

#include <asio.hpp>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace bench {

// Binds `threads` listen sockets on host:port (port 0: the first picks one, the others join
// it), prints "listening on HOST:PORT", calls `start_accepting` for each acceptor, then runs
// the loops until a signal. Returns the process exit code (1 when it cannot listen).
inline int serve_reuseport(const char* name, const std::string& host, unsigned short port,
                           unsigned threads,
                           const std::function<void(asio::ip::tcp::acceptor&)>& start_accepting) {
  using asio::ip::tcp;
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  tcp::endpoint endpoint(asio::ip::make_address(host), port);
  try {
    for (unsigned i = 0; i < threads; ++i) {
      contexts.push_back(std::make_unique<asio::io_context>(1));
      auto a = std::make_unique<tcp::acceptor>(*contexts.back());
      a->open(endpoint.protocol());
      a->set_option(tcp::acceptor::reuse_address(true));
      const int one = 1;
      ::setsockopt(a->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      a->bind(endpoint);
      a->listen(1024);  // atoll's default backlog
      if (i == 0) endpoint = a->local_endpoint();
      acceptors.push_back(std::move(a));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: cannot listen on %s:%u: %s\n", name, host.c_str(), port, e.what());
    return 1;
  }
  std::printf("listening on %s:%u\n", endpoint.address().to_string().c_str(), endpoint.port());
  std::fflush(stdout);

  asio::signal_set signals(*contexts[0], SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int) {
    for (auto& c : contexts) c->stop();
  });
  for (auto& a : acceptors) start_accepting(*a);

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&, i] { contexts[i]->run(); });
  contexts[0]->run();
  for (auto& c : contexts) c->stop();
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace bench
