#include "atoll/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace atl {
namespace {

std::mutex& logger_mutex() {
  static std::mutex m;
  return m;
}

std::shared_ptr<spdlog::logger>& logger_slot() {
  static std::shared_ptr<spdlog::logger> l;
  return l;
}

std::shared_ptr<spdlog::logger> make_default_logger() {
  if (auto registered = spdlog::get("atoll")) return registered;
  // Not registered globally: a user who registers their own "atoll" logger later must not
  // collide with ours; they call set_logger instead.
  auto l = std::make_shared<spdlog::logger>(
      "atoll", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  l->set_level(spdlog::level::info);
  // A failure inside logging must never escape into an io loop.
  l->set_error_handler([](const std::string&) {});
  return l;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger() {
  std::lock_guard lock(logger_mutex());
  auto& l = logger_slot();
  if (!l) l = make_default_logger();
  return l;
}

void set_logger(std::shared_ptr<spdlog::logger> l) {
  std::lock_guard lock(logger_mutex());
  logger_slot() = std::move(l);
}

}  // namespace atl
