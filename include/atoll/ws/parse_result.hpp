#pragma once
/// @file parse_result.hpp
/// The result of one step of an incremental parser (`http_request_parser`, `frame_parser`).

#include <cstddef>
#include <cstdint>
#include <system_error>

namespace atl::ws {

/// What an incremental parser made of the bytes it was given.
enum class parse_status : std::uint8_t {
  need_more,  ///< every byte was consumed (kept); the item is not complete yet: feed more.
  complete,   ///< the item is complete; bytes after `consumed` belong to what follows.
  error,      ///< the input is invalid (`ec` says why); the parser stays failed until reset.
};

/// One parse step: the status, how many input bytes were consumed, and the error.
struct parse_result {
  /// What happened (see `parse_status`).
  parse_status status = parse_status::need_more;
  /// Bytes of the input taken by this call. For `need_more` it is the whole input; for
  /// `complete` the bytes up to the end of the item (the rest is the caller's: a pipelined
  /// request, the frame payload); for `error`, unspecified (the connection is done anyway).
  std::size_t consumed = 0;
  /// Set for `error` only: an `atl::ws::error`.
  std::error_code ec;

  /// True for `parse_status::complete`.
  bool done() const noexcept { return status == parse_status::complete; }
  /// True for `parse_status::error`.
  bool failed() const noexcept { return status == parse_status::error; }
};

}  // namespace atl::ws
