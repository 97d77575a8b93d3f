#pragma once
// Character classes of HTTP (RFC 9110 §5.6.2, §5.5) shared by the request parser, the upgrade
// validation and the Sec-WebSocket-Extensions parser.

#include <string_view>

namespace atl::ws::detail {

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
//       / "~" / DIGIT / ALPHA
constexpr bool is_tchar(unsigned char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// VCHAR: visible US-ASCII.
constexpr bool is_vchar(unsigned char c) noexcept { return c >= 0x21 && c <= 0x7e; }

// OWS characters.
constexpr bool is_ows(unsigned char c) noexcept { return c == ' ' || c == '\t'; }

constexpr bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

constexpr std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace atl::ws::detail
