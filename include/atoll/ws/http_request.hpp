#pragma once
/// @file http_request.hpp
/// A strict, incremental HTTP/1.1 request-head parser (RFC 9112 §2-§5, RFC 9110 §5), used for
/// the WebSocket upgrade and reusable by plain HTTP/1.1 servers (keep-alive, pipelining).
///
/// It parses the request line and header section only; a body (Content-Length) is the
/// caller's business. Strict means: CRLF line endings only, no whitespace before the colon,
/// no obs-fold, no CR/LF/NUL or other controls in values, one `Host` exactly for HTTP/1.1,
/// a consistent `Content-Length`. What it refuses maps to an HTTP status with
/// `http_status(ec)`.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "atoll/ws/parse_result.hpp"

namespace atl::ws {

/// Size limits of a request head; each one refuses a request that exceeds it.
struct http_limits {
  /// Longest request line in bytes, without its CRLF (empty lines before it, which RFC 9112
  /// §2.2 lets a server skip, count too). Over it: 414 when the target is what is too long,
  /// otherwise 400. Default 8 KiB.
  std::size_t max_request_line = 8 * 1024;
  /// Largest header section in bytes: every header line with its CRLF, and the final CRLF.
  /// Over it: 431. Default 16 KiB.
  std::size_t max_header_bytes = 16 * 1024;
  /// Most header lines. Over it: 431. Default 100.
  std::size_t max_headers = 100;
};

/// One header line: the name as sent (compare with `iequals`) and the value without leading
/// and trailing whitespace. Views into the `http_request` that holds it.
struct http_header {
  std::string_view name;   ///< the field name, case preserved.
  std::string_view value;  ///< the field value, OWS trimmed; may be empty.
};

/// ASCII case-insensitive equality (header names, tokens such as `websocket`, `upgrade`).
bool iequals(std::string_view a, std::string_view b) noexcept;

/// The elements of a comma-separated list (RFC 9110 §5.6.1, `#rule`): each element without
/// surrounding whitespace, empty elements skipped. For lists of tokens (`Connection`,
/// `Upgrade`, `Sec-WebSocket-Protocol`); it does not understand quoted strings.
///
///     for (std::string_view t : token_list{"keep-alive, Upgrade"}) ...  // "keep-alive", "Upgrade"
class token_list {
 public:
  /// A forward iterator over the elements.
  class iterator {
   public:
    using value_type = std::string_view;     ///< an element.
    using difference_type = std::ptrdiff_t;  ///< unused, for the iterator concepts.
    iterator() = default;                    ///< the end iterator.
    std::string_view operator*() const noexcept { return current_; }  ///< the element.
    iterator& operator++() noexcept {  ///< advances to the next element.
      advance();
      return *this;
    }
    iterator operator++(int) noexcept {  ///< advances, returning the old position.
      iterator old = *this;
      advance();
      return old;
    }
    /// Iterators are equal when both are at the end or at the same position.
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.at_end_ == b.at_end_ &&
             (a.at_end_ || (a.rest_.data() == b.rest_.data() && a.last_ == b.last_));
    }

   private:
    friend class token_list;
    explicit iterator(std::string_view list) noexcept : rest_(list), at_end_(false) { advance(); }
    void advance() noexcept;

    std::string_view rest_;
    std::string_view current_;
    bool last_ = false;  // current_ is the last element
    bool at_end_ = true;
  };

  /// A view of `list`; it must outlive the iteration.
  explicit token_list(std::string_view list) noexcept : list_(list) {}
  /// The first element.
  iterator begin() const noexcept { return iterator{list_}; }
  /// Past the last element.
  iterator end() const noexcept { return {}; }

 private:
  std::string_view list_;
};

/// True if the comma-separated `list` has an element equal to `token`, ignoring ASCII case.
bool list_contains_token(std::string_view list, std::string_view token) noexcept;

/// A parsed request head. Owns its bytes: the views it hands out stay valid as long as the
/// request object (copies and moves carry their own bytes). Not thread-safe to modify; const
/// access from several threads is fine.
class http_request {
 public:
  /// An empty request (no method, no headers).
  http_request() = default;
  /// Copies the bytes; the views of the copy point into the copy.
  http_request(const http_request& other);
  /// Moves the bytes; views are re-pointed where the string's storage moved.
  http_request(http_request&& other) noexcept;
  /// Copy assignment (see the copy constructor).
  http_request& operator=(const http_request& other);
  /// Move assignment (see the move constructor).
  http_request& operator=(http_request&& other) noexcept;
  ~http_request() = default;  ///< Frees the bytes (views into it dangle).

  /// The method, e.g. "GET" (case-sensitive, RFC 9110 §9.1).
  std::string_view method() const noexcept { return method_; }
  /// The request target as sent, e.g. "/chat?room=1" (origin-form) or "*".
  std::string_view target() const noexcept { return target_; }
  /// The path part of the target: up to the first '?' (the whole target when there is none).
  std::string_view path() const noexcept;
  /// The query part of the target, after the first '?', or empty.
  std::string_view query() const noexcept;
  /// The major version: always 1 for a parsed request (others get 505).
  unsigned version_major() const noexcept { return version_major_; }
  /// The minor version: 0 or 1 (a higher HTTP/1.x is kept as sent and treated as 1.1).
  unsigned version_minor() const noexcept { return version_minor_; }

  /// All header lines in the order received (repeated names appear repeatedly).
  std::span<const http_header> headers() const noexcept { return headers_; }
  /// The value of the first header named `name` (case-insensitive), if any.
  std::optional<std::string_view> header(std::string_view name) const noexcept;
  /// How many header lines are named `name` (case-insensitive).
  std::size_t header_count(std::string_view name) const noexcept;
  /// True if any line named `name` holds `token` in its comma-separated list (both compared
  /// case-insensitively): `has_token("Connection", "upgrade")` is true for
  /// `Connection: keep-alive, Upgrade` and for two lines `keep-alive` / `Upgrade`.
  bool has_token(std::string_view name, std::string_view token) const noexcept;

  /// Whether the connection persists after this request (RFC 9112 §9.3): false with a
  /// `close` connection option; otherwise true for HTTP/1.1, and true for HTTP/1.0 only with
  /// a `keep-alive` connection option.
  bool keep_alive() const noexcept;
  /// The body length from `Content-Length` (validated by the parser), or nullopt when the
  /// header is absent. Note that a request with `Transfer-Encoding` has no Content-Length
  /// (the parser refuses both together); decoding chunked bodies is not done here.
  std::optional<std::uint64_t> content_length() const noexcept { return content_length_; }

  /// The raw request head as received (request line, headers, final CRLF).
  std::string_view raw() const noexcept { return head_; }

 private:
  friend class http_request_parser;
  void rebase(const char* old_base) noexcept;
  void clear() noexcept;

  std::string head_;
  std::string_view method_;
  std::string_view target_;
  unsigned version_major_ = 0;
  unsigned version_minor_ = 0;
  std::vector<http_header> headers_;
  std::optional<std::uint64_t> content_length_;
};

/// Incremental parser of one request head at a time. Feed it bytes as they arrive, split
/// anywhere; it copies the head into its `http_request` (so the caller's buffer may be reused
/// after each call) and stops exactly at the end of the head:
///
///     auto r = parser.parse(data);
///     if (r.status == parse_status::complete) {
///       use(parser.request());
///       data = data.subspan(r.consumed);  // body or the next pipelined request
///       parser.reset();                   // before the next request
///     } else if (r.status == parse_status::error) {
///       send_error(http_status(r.ec));    // 400, 414, 431 or 505, then close
///     }
///
/// Errors are found at the first offending byte where possible (a TLS ClientHello or binary
/// junk is refused at byte one, not after 8 KiB), and limits are enforced before bytes are
/// buffered, so a peer can never make the parser hold more than the limits allow.
///
/// Memory: the head buffer and header list keep their capacity across `reset()`, so a
/// keep-alive connection parses request after request without allocating. Not thread-safe.
class http_request_parser {
 public:
  /// A parser with the given limits (defaults: 8 KiB request line, 16 KiB headers, 100 lines).
  explicit http_request_parser(const http_limits& limits = {}) noexcept : limits_(limits) {}

  /// Consumes bytes of the request head. Returns `need_more` (all consumed), `complete`
  /// (`consumed` = bytes up to and including the final CRLF; the rest belongs to the body or
  /// the next request), or `error` (`ec` an `atl::ws::error`). After `complete` or `error`,
  /// further calls consume nothing and return the same result until `reset()`.
  parse_result parse(std::span<const std::byte> data);
  /// Same, for characters.
  parse_result parse(std::string_view data);

  /// The parsed request; complete after `parse` returned `complete`, valid until `reset()`.
  const http_request& request() const noexcept { return request_; }
  /// Moves the parsed request out (the parser must be `reset()` before the next request).
  http_request take_request() noexcept { return std::move(request_); }

  /// Prepares for the next request (keeps buffer capacity).
  void reset() noexcept;

  /// The limits in force.
  const http_limits& limits() const noexcept { return limits_; }

 private:
  enum class state : std::uint8_t {
    start,
    start_lf,
    method,
    target_start,
    target,
    version,
    request_line_lf,
    header_start,
    name,
    value,
    header_lf,
    final_lf,
    done,
    failed,
  };
  struct pending_field {  // offsets into the request head
    std::size_t name_begin, name_end, value_begin, value_end;
  };

  parse_result fail(std::error_code ec, std::size_t consumed);
  std::error_code finish_head();

  http_limits limits_;
  http_request request_;
  std::vector<pending_field> fields_;
  state state_ = state::start;
  std::size_t line_bytes_ = 0;    // bytes of the request line so far (plus leading CRLFs)
  std::size_t header_bytes_ = 0;  // bytes of the header section so far
  std::size_t method_begin_ = 0, method_end_ = 0, target_begin_ = 0, target_end_ = 0;
  std::size_t version_chars_ = 0;  // characters of "HTTP/x.y" seen so far
  unsigned major_ = 0, minor_ = 0;
  std::size_t spaces_ = 0;  // SPs seen in the request line (for 414 vs 400)
  bool value_started_ = false;
  std::size_t value_last_ = 0;  // one past the last non-whitespace byte of the value
  pending_field field_{};
  std::error_code error_;
};

}  // namespace atl::ws
