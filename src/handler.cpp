#include "atoll/handler.hpp"

#include "atoll/connection.hpp"
#include "atoll/error.hpp"
#include "atoll/stats.hpp"

namespace atl {

void handler::on_timeout(connection& c) { c.close(); }
void handler::on_shutdown(connection& c) { c.close(); }

std::string_view to_string(close_reason r) noexcept {
  switch (r) {
    case close_reason::peer_closed: return "peer_closed";
    case close_reason::local_close: return "local_close";
    case close_reason::timeout: return "timeout";
    case close_reason::error: return "error";
    case close_reason::slow_consumer: return "slow_consumer";
    case close_reason::handler_error: return "handler_error";
    case close_reason::shutdown: return "shutdown";
    case close_reason::rejected: return "rejected";
  }
  return "unknown";
}

namespace {

// One row per reject_reason: its name (metrics labels, logs) and the error code it is reported
// with (events, stats). One table, so the two cannot disagree or miss a reason.
struct reject_row {
  std::string_view name;
  errc code;
};

constexpr reject_row row_of(reject_reason r) noexcept {
  switch (r) {
    case reject_reason::limit: return {"limit", errc::over_limit};
    case reject_reason::waiting_room_full: return {"waiting_room_full", errc::waiting_room_full};
    case reject_reason::wait_expired: return {"wait_expired", errc::wait_expired};
    case reject_reason::emfile: return {"emfile", errc::descriptors_exhausted};
    case reject_reason::shutdown: return {"shutdown", errc::shutting_down};
    case reject_reason::refused: return {"refused", errc::handler_refused};
    case reject_reason::handshake_timeout: return {"handshake_timeout", errc::handshake_timeout};
    case reject_reason::tls_handshake_failed:
      return {"tls_handshake_failed", errc::tls_handshake_failed};
    case reject_reason::proxy_header_invalid:
      return {"proxy_header_invalid", errc::proxy_header_invalid};
  }
  return {"unknown", errc::handler_refused};
}

}  // namespace

std::string_view to_string(reject_reason r) noexcept { return row_of(r).name; }

std::error_code to_error_code(reject_reason r) noexcept { return row_of(r).code; }

}  // namespace atl
