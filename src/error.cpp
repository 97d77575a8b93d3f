#include "atoll/error.hpp"

namespace atl {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "atoll"; }
  std::string message(int v) const override {
    switch (static_cast<errc>(v)) {
      case errc::ok: return "success";
      case errc::invalid_config: return "invalid configuration";
      case errc::over_limit: return "listener at max_connections";
      case errc::waiting_room_full: return "waiting room full";
      case errc::wait_expired: return "no free slot within retry_count x retry_wait";
      case errc::descriptors_exhausted: return "out of file descriptors (EMFILE/ENFILE)";
      case errc::shutting_down: return "server is shutting down";
      case errc::read_timeout: return "read timeout";
      case errc::slow_consumer: return "write queue exceeded max_write_buffer";
      case errc::handler_exception: return "handler threw an exception";
      case errc::handler_refused: return "handler factory refused the connection";
      case errc::aborted: return "connection aborted locally";
      case errc::not_running: return "server is not running";
      case errc::already_started: return "server already started";
      case errc::handshake_timeout: return "handshake timeout";
      case errc::proxy_header_invalid: return "invalid PROXY protocol header";
      case errc::tls_handshake_failed: return "TLS handshake failed";
      case errc::max_age_reached: return "connection reached max_connection_age";
    }
    return "unknown atoll error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category c;
  return c;
}

}  // namespace atl
