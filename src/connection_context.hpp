#pragma once
// What a connection may know about the listener that admitted it, and nothing more: its
// configuration, handler factory and TLS context, where events and log lines go, and the
// listen address (for connection::local() on Unix sockets). A connection holds a reference to
// this narrow interface instead of the listener and the server it belongs to, so it cannot
// reach the supervisor, the acceptors or other listeners (issue 10).
//
// Thread rules: every member may be called from any io thread; the listener outlives all of
// its connections (a server drains and destroys connections before its listeners).

#include <cstddef>
#include <cstdint>
#include <string>

#include "atoll/endpoint.hpp"
#include "atoll/handler.hpp"
#include "atoll/listener.hpp"
#include "atoll/stats.hpp"

namespace atl::detail {

class tls_context;

class connection_context {
 public:
  // The listener's index in the server (events, stats, per-listener registries).
  virtual std::size_t index() const noexcept = 0;
  virtual const listener_config& config() const noexcept = 0;
  virtual const handler_factory& factory() const noexcept = 0;
  // nullptr for a plain listener.
  virtual const tls_context* tls() const noexcept = 0;
  // Address of the listen socket (connection::local() of a Unix-socket connection).
  virtual endpoint first_endpoint() const = 0;

  // Events: whether anyone listens (so a connection builds an event only then), and delivery.
  virtual bool has_event_sink() const noexcept = 0;
  virtual void emit(const event& e) const noexcept = 0;

  // Logging, rate-limited by the listener: a handler's exception (error level) and a failed
  // PROXY/TLS handshake (debug level; counted anyway, a scanner must not flood the log).
  virtual void warn_handler_exception(std::uint64_t connection_id, const char* what,
                                      const char* message) = 0;
  virtual void debug_handshake_failure(std::uint64_t connection_id, const std::string& why) = 0;

 protected:
  ~connection_context() = default;
};

}  // namespace atl::detail
