#pragma once
// All configuration checks in one place (STYLE.md habit 3): `start()` calls validate() before
// binding anything, and every message names the field ("listener[1].retry_wait: ...").

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "atoll/listener.hpp"
#include "atoll/server.hpp"

namespace atl::detail {

// Throws std::invalid_argument naming the first bad field.
void validate(const server_config& server, const std::vector<listener_config>& listeners);

// Parses an IP literal (optionally in [brackets]) or "localhost" into `out` with `port`.
bool parse_host(const std::string& host, std::uint16_t port, sockaddr_storage& out,
                socklen_t& len);

}  // namespace atl::detail
