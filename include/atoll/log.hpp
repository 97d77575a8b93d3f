#pragma once
/// @file log.hpp
/// The spdlog logger atoll writes to.

#include <memory>

namespace spdlog {
class logger;
}

namespace atl {

/// The logger atoll uses. Defaults to the spdlog logger registered under the name "atoll"
/// if there is one when first needed, else a new stderr logger of that name (level info).
/// atoll logs nothing per connection above debug level, and its warnings about rejected
/// connections or accept errors are rate-limited to one line per interval with counts.
/// Thread-safe.
std::shared_ptr<spdlog::logger> logger();

/// Replaces the logger (e.g. to send atoll's lines to your sinks, or to set its level).
/// nullptr restores the default. Thread-safe; takes effect for lines logged afterwards.
void set_logger(std::shared_ptr<spdlog::logger> l);

}  // namespace atl
