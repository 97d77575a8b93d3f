#include "atoll/ws/http_request.hpp"

#include <limits>

#include "atoll/ws/error.hpp"
#include "http_chars.hpp"

namespace atl::ws {

using detail::is_ows;
using detail::is_tchar;
using detail::is_vchar;

// ---------------------------------------------------------------------------------------------
// Helpers

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) {
      return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void token_list::iterator::advance() noexcept {
  for (;;) {
    if (last_) {
      at_end_ = true;
      current_ = {};
      return;
    }
    const std::size_t comma = rest_.find(',');
    std::string_view element = rest_.substr(0, comma);
    if (comma == std::string_view::npos) {
      last_ = true;
      rest_ = rest_.substr(rest_.size());
    } else {
      rest_ = rest_.substr(comma + 1);
    }
    // RFC 9110 §5.6.1: recipients accept and ignore empty elements ("a, , b").
    element = detail::trim_ows(element);
    if (!element.empty()) {
      current_ = element;
      return;
    }
  }
}

bool list_contains_token(std::string_view list, std::string_view token) noexcept {
  for (std::string_view element : token_list{list}) {
    if (iequals(element, token)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// http_request

http_request::http_request(const http_request& other)
    : head_(other.head_),
      method_(other.method_),
      target_(other.target_),
      version_major_(other.version_major_),
      version_minor_(other.version_minor_),
      headers_(other.headers_),
      content_length_(other.content_length_) {
  rebase(other.head_.data());
}

http_request::http_request(http_request&& other) noexcept
    : method_(other.method_),
      target_(other.target_),
      version_major_(other.version_major_),
      version_minor_(other.version_minor_),
      headers_(std::move(other.headers_)),
      content_length_(other.content_length_) {
  const char* old = other.head_.data();
  head_ = std::move(other.head_);
  rebase(old);  // a short head lives in the string object itself (SSO) and moved with it
  other.clear();
}

http_request& http_request::operator=(const http_request& other) {
  if (this != &other) *this = http_request{other};
  return *this;
}

http_request& http_request::operator=(http_request&& other) noexcept {
  if (this == &other) return *this;
  const char* old = other.head_.data();
  head_ = std::move(other.head_);
  method_ = other.method_;
  target_ = other.target_;
  version_major_ = other.version_major_;
  version_minor_ = other.version_minor_;
  headers_ = std::move(other.headers_);
  content_length_ = other.content_length_;
  rebase(old);
  other.clear();
  return *this;
}

void http_request::rebase(const char* old_base) noexcept {
  const char* base = head_.data();
  if (base == old_base) return;
  auto fix = [&](std::string_view& v) {
    if (v.data() == nullptr) return;
    v = std::string_view{base + (v.data() - old_base), v.size()};
  };
  fix(method_);
  fix(target_);
  for (auto& h : headers_) {
    fix(h.name);
    fix(h.value);
  }
}

void http_request::clear() noexcept {
  head_.clear();
  method_ = {};
  target_ = {};
  version_major_ = 0;
  version_minor_ = 0;
  headers_.clear();
  content_length_.reset();
}

std::string_view http_request::path() const noexcept {
  return target_.substr(0, target_.find('?'));
}

std::string_view http_request::query() const noexcept {
  const std::size_t q = target_.find('?');
  return q == std::string_view::npos ? std::string_view{} : target_.substr(q + 1);
}

std::optional<std::string_view> http_request::header(std::string_view name) const noexcept {
  for (const auto& h : headers_) {
    if (iequals(h.name, name)) return h.value;
  }
  return std::nullopt;
}

std::size_t http_request::header_count(std::string_view name) const noexcept {
  std::size_t n = 0;
  for (const auto& h : headers_) {
    if (iequals(h.name, name)) ++n;
  }
  return n;
}

bool http_request::has_token(std::string_view name, std::string_view token) const noexcept {
  // RFC 9110 §5.3: several lines of a list-valued field are one comma-joined list.
  for (const auto& h : headers_) {
    if (iequals(h.name, name) && list_contains_token(h.value, token)) return true;
  }
  return false;
}

bool http_request::keep_alive() const noexcept {
  // RFC 9112 §9.3.
  if (has_token("Connection", "close")) return false;
  if (version_major_ == 1 && version_minor_ >= 1) return true;
  return has_token("Connection", "keep-alive");
}

// ---------------------------------------------------------------------------------------------
// http_request_parser

void http_request_parser::reset() noexcept {
  request_.clear();
  fields_.clear();
  state_ = state::start;
  line_bytes_ = 0;
  header_bytes_ = 0;
  method_begin_ = method_end_ = target_begin_ = target_end_ = 0;
  version_chars_ = 0;
  major_ = minor_ = 0;
  spaces_ = 0;
  value_started_ = false;
  value_last_ = 0;
  field_ = {};
  error_.clear();
}

parse_result http_request_parser::fail(std::error_code ec, std::size_t consumed) {
  state_ = state::failed;
  error_ = ec;
  return {parse_status::error, consumed, ec};
}

parse_result http_request_parser::parse(std::span<const std::byte> data) {
  return parse(std::string_view{reinterpret_cast<const char*>(data.data()), data.size()});
}

parse_result http_request_parser::parse(std::string_view data) {
  if (state_ == state::done) return {parse_status::complete, 0, {}};
  if (state_ == state::failed) return {parse_status::error, 0, error_};

  // One byte at a time through a state machine (RFC 9112 §3 request-line, §5 field lines),
  // so the first impossible byte ends the parse and every limit is checked before a byte is
  // kept. Offsets are into the head: what is buffered already plus this call's bytes, which
  // are appended when the call ends.
  const std::size_t base = request_.head_.size();
  const std::size_t n = data.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(data[i]);
    const std::size_t at = base + i;

    if (state_ <= state::request_line_lf) {
      // The request line's own CRLF does not count against its limit.
      const bool line_end =
          (state_ == state::version && c == '\r') || state_ == state::request_line_lf;
      if (!line_end && ++line_bytes_ > limits_.max_request_line) {
        // RFC 9112 §3: a request-target longer than the server will parse gets 414. Past the
        // method the target is what is long (the version is 8 bytes), even when the limit is
        // only crossed inside the version; a method or empty lines this long are malformed.
        return fail(spaces_ >= 1 ? error::uri_too_long : error::bad_request_line, i);
      }
    } else if (++header_bytes_ > limits_.max_header_bytes) {
      return fail(error::headers_too_large, i);  // RFC 6585 §5: 431
    }

    switch (state_) {
      case state::start:
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the
        // request-line (left over by clients after a POST body).
        if (c == '\r') {
          state_ = state::start_lf;
        } else if (is_tchar(c)) {
          method_begin_ = at;
          state_ = state::method;
        } else {
          return fail(error::bad_request_line, i);
        }
        break;
      case state::start_lf:
        if (c != '\n') return fail(error::bad_request_line, i);
        state_ = state::start;
        break;
      case state::method:
        // RFC 9112 §3: request-line = method SP request-target SP HTTP-version; method = token.
        if (c == ' ') {
          method_end_ = at;
          spaces_ = 1;
          state_ = state::target_start;
        } else if (!is_tchar(c)) {
          return fail(error::bad_request_line, i);
        }
        break;
      case state::target_start:
        // No empty target and no second SP (§3: exactly one SP between the parts).
        if (!is_vchar(c)) return fail(error::bad_request_line, i);
        target_begin_ = at;
        state_ = state::target;
        break;
      case state::target:
        // The target is URI syntax: visible ASCII only (no CTL, no SP, no bytes >= 0x80).
        if (c == ' ') {
          target_end_ = at;
          spaces_ = 2;
          state_ = state::version;
        } else if (!is_vchar(c)) {
          return fail(error::bad_request_line, i);
        }
        break;
      case state::version: {
        // §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
        if (c == '\r') {
          if (version_chars_ != 8) return fail(error::bad_request_line, i);
          // RFC 9110 §15.6.6: 505 for a major version the server does not support.
          if (major_ != 1) return fail(error::http_version_not_supported, i);
          state_ = state::request_line_lf;
          break;
        }
        constexpr std::string_view prefix = "HTTP/";
        const std::size_t k = version_chars_++;
        const bool digit = c >= '0' && c <= '9';
        if (k < prefix.size()) {
          if (c != static_cast<unsigned char>(prefix[k])) return fail(error::bad_request_line, i);
        } else if (k == 5 && digit) {
          major_ = c - '0';
        } else if (k == 6 && c == '.') {
        } else if (k == 7 && digit) {
          minor_ = c - '0';
        } else {
          return fail(error::bad_request_line, i);
        }
        break;
      }
      case state::request_line_lf:
        // CRLF only: a bare CR or LF is refused (§2.2 lets a server do so; accepting bare LF
        // where a proxy in front does not is a request smuggling vector).
        if (c != '\n') return fail(error::bad_request_line, i);
        state_ = state::header_start;
        break;
      case state::header_start:
        if (c == '\r') {
          state_ = state::final_lf;
        } else if (is_tchar(c)) {
          if (fields_.size() >= limits_.max_headers) return fail(error::too_many_headers, i);
          field_ = {};
          field_.name_begin = at;
          state_ = state::name;
        } else {
          // A line starting with SP/HTAB is obs-fold (§5.2: a server may reject it with 400)
          // or whitespace after the start-line (§2.2: must be rejected or ignored).
          return fail(error::bad_header_field, i);
        }
        break;
      case state::name:
        if (c == ':') {
          field_.name_end = at;
          value_started_ = false;
          state_ = state::value;
        } else if (!is_tchar(c)) {
          // §5.1: no whitespace between field name and colon (a server MUST reject it).
          return fail(error::bad_header_field, i);
        }
        break;
      case state::value:
        // RFC 9110 §5.5: field-value is VCHAR / obs-text with SP and HTAB inside; CR, LF,
        // NUL and other controls are refused outright (as Bandit does since 1.12.4).
        if (c == '\r') {
          if (value_started_) {
            field_.value_end = value_last_;
          } else {
            field_.value_begin = field_.value_end = at;
          }
          fields_.push_back(field_);
          state_ = state::header_lf;
        } else if (is_ows(c)) {
          // Leading OWS is skipped, trailing OWS is cut by value_last_.
        } else if (is_vchar(c) || c >= 0x80) {
          if (!value_started_) {
            value_started_ = true;
            field_.value_begin = at;
          }
          value_last_ = at + 1;
        } else {
          return fail(error::bad_header_field, i);
        }
        break;
      case state::header_lf:
        if (c != '\n') return fail(error::bad_header_field, i);
        state_ = state::header_start;
        break;
      case state::final_lf: {
        if (c != '\n') return fail(error::bad_header_field, i);
        request_.head_.append(data.substr(0, i + 1));
        if (auto ec = finish_head()) return fail(ec, i + 1);
        state_ = state::done;
        return {parse_status::complete, i + 1, {}};
      }
      case state::done:
      case state::failed:
        break;  // not reached: handled before the loop
    }
  }
  request_.head_.append(data);
  return {parse_status::need_more, n, {}};
}

std::error_code http_request_parser::finish_head() {
  http_request& r = request_;
  const std::string_view head = r.head_;
  r.method_ = head.substr(method_begin_, method_end_ - method_begin_);
  r.target_ = head.substr(target_begin_, target_end_ - target_begin_);
  r.version_major_ = major_;
  r.version_minor_ = minor_;
  r.headers_.clear();
  r.headers_.reserve(fields_.size());
  for (const auto& f : fields_) {
    r.headers_.push_back({head.substr(f.name_begin, f.name_end - f.name_begin),
                          head.substr(f.value_begin, f.value_end - f.value_begin)});
  }

  // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
  // HTTP/1.1 request message that lacks a Host header field and to any request message that
  // contains more than one Host header field line".
  const std::size_t hosts = r.header_count("Host");
  if (hosts > 1) return error::duplicate_host;
  if (hosts == 0 && minor_ >= 1) return error::missing_host;

  // RFC 9112 §6.3: Content-Length must be a single valid number; one that disagrees with
  // another, or comes with Transfer-Encoding, is the classic request-smuggling shape and is
  // refused rather than guessed at.
  std::optional<std::uint64_t> length;
  bool transfer_encoding = false;
  for (const auto& h : r.headers_) {
    if (iequals(h.name, "Transfer-Encoding")) transfer_encoding = true;
    if (!iequals(h.name, "Content-Length")) continue;
    if (h.value.empty()) return error::bad_content_length;
    std::uint64_t v = 0;
    for (char ch : h.value) {
      if (ch < '0' || ch > '9') return error::bad_content_length;
      const auto d = static_cast<std::uint64_t>(ch - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) {
        return error::bad_content_length;
      }
      v = v * 10 + d;
    }
    if (length && *length != v) return error::bad_content_length;
    length = v;
  }
  if (length && transfer_encoding) return error::bad_content_length;
  r.content_length_ = length;
  return {};
}

}  // namespace atl::ws
