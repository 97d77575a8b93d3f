#pragma once
/// @file proxy_protocol.hpp
/// The PROXY protocol (HAProxy's proxy-protocol.txt, v1 text and v2 binary headers): a pure
/// parser over bytes and builders, with no sockets. A listener with
/// `listener_config::proxy_protocol` set reads the header with it before anything else.
///
/// Thread rules: every function here is pure (no I/O, no shared state) and may be called from
/// any thread at once. The types are plain values.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "atoll/endpoint.hpp"

namespace atl {

/// Which PROXY protocol header a listener expects (`listener_config::proxy_protocol`).
enum class proxy_protocol_mode : std::uint8_t {
  off,  ///< no header: the connection's bytes are the application's from the first one.
  v1,   ///< a v1 text header ("PROXY TCP4 ...\r\n") is required.
  v2,   ///< a v2 binary header (12-byte signature) is required.
  any,  ///< either, told apart by the first byte ('P' for v1, '\r' for v2).
};

namespace proxy {

/// Largest v1 header, CRLF included ("PROXY UNKNOWN <two IPv6> 65535 65535\r\n"): 107 bytes.
inline constexpr std::size_t max_v1_header_size = 107;
/// Size of the fixed part of a v2 header (signature, version/command, family, length).
inline constexpr std::size_t v2_fixed_size = 16;
/// Largest v2 header: the fixed part plus a 16-bit length, 65551 bytes.
inline constexpr std::size_t max_v2_header_size = v2_fixed_size + 65535;
/// Most bytes a reader ever needs to buffer to get a complete header of either version.
inline constexpr std::size_t max_header_size = max_v2_header_size;

/// The protocol version of a parsed header.
enum class version : std::uint8_t { v1 = 1, v2 = 2 };

/// What the header says about the connection.
enum class command : std::uint8_t {
  /// The proxy opened the connection itself (a v2 LOCAL, e.g. a health check) or could not
  /// describe it (a v1 "UNKNOWN"): the addresses are empty, so the receiver uses the
  /// connection's own addresses, as the spec requires for both.
  local,
  /// The connection is relayed on behalf of a client: `source`/`destination` are the
  /// original addresses, unless the family or transport is one atoll does not use (v2
  /// AF_UNSPEC, UNSPEC or DGRAM transport), in which case they are empty as for `local`.
  proxy,
};

/// Registered v2 TLV types (proxy-protocol.txt §2.2). Values of `tlv_view::type`.
namespace tlv_type {
inline constexpr std::uint8_t alpn = 0x01;         ///< ALPN protocol name (RFC 7301).
inline constexpr std::uint8_t authority = 0x02;    ///< host name the client asked for (SNI).
inline constexpr std::uint8_t crc32c = 0x03;       ///< CRC32C of the header, 4 bytes big-endian.
inline constexpr std::uint8_t noop = 0x04;         ///< padding; ignored.
inline constexpr std::uint8_t unique_id = 0x05;    ///< opaque connection id, at most 128 bytes.
inline constexpr std::uint8_t ssl = 0x20;          ///< TLS details: client, verify, sub-TLVs.
inline constexpr std::uint8_t ssl_version = 0x21;  ///< sub-TLV of `ssl`: "TLSv1.3".
inline constexpr std::uint8_t ssl_cn = 0x22;       ///< sub-TLV of `ssl`: client cert CN.
inline constexpr std::uint8_t ssl_cipher = 0x23;   ///< sub-TLV of `ssl`: cipher name.
inline constexpr std::uint8_t ssl_sig_alg = 0x24;  ///< sub-TLV of `ssl`: cert signature alg.
inline constexpr std::uint8_t ssl_key_alg = 0x25;  ///< sub-TLV of `ssl`: cert key alg.
inline constexpr std::uint8_t netns = 0x30;        ///< network namespace name.
}  // namespace tlv_type

/// Largest `unique_id` TLV value the spec allows; a longer one makes the header invalid.
inline constexpr std::size_t max_unique_id_size = 128;

/// Caps `parse` puts on a v2 header's TLVs; a header past either is `invalid` (a listener
/// refuses the connection as `reject_reason::proxy_header_invalid`).
///
/// The spec itself only bounds the TLVs by the 16-bit header length: up to 21845 of them
/// (empty ones are 3 bytes each). Proxies send a handful (HAProxy: ALPN, AUTHORITY, CRC32C,
/// UNIQUE_ID, SSL with up to 5 sub-TLVs, NETNS, a few custom ones; cloud balancers one or two
/// of their own), so the default count cap is far above real traffic and far below what a
/// hostile peer could pack into a header.
struct tlv_limits {
  /// Most TLVs in one header, each sub-TLV of an `ssl` TLV counted as one more. It bounds
  /// the work of `header::find` and `header::ssl()`, which walk the TLVs. Default 128.
  std::size_t max_count = 128;
  /// Most bytes of TLVs (types, lengths and values: what `header` keeps) in one header.
  /// Checked as soon as the 16-byte fixed part is in, so a reader never buffers more than
  /// 16 + the address block + this. Default 65535: no cap beyond the spec's own.
  std::size_t max_bytes = max_v2_header_size - v2_fixed_size;
};

/// One v2 Type-Length-Value entry as parsed: a view into the `header` (or other bytes) it
/// came from, valid as long as those bytes are alive and unchanged.
struct tlv_view {
  std::uint8_t type = 0;               ///< a `tlv_type` value, or any other (not interpreted).
  std::span<const std::byte> value{};  ///< the raw value bytes (0..65535 of them).

  /// The value as characters (ALPN, authority, unique id and the SSL strings are text).
  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(value.data()), value.size()};
  }
  /// Same type and same value bytes.
  friend bool operator==(const tlv_view& a, const tlv_view& b) noexcept {
    return a.type == b.type && std::ranges::equal(a.value, b.value);
  }
};

/// One owned v2 TLV: the input of `build_v2`, and what `tlv_range::to_vector` copies out.
struct tlv {
  std::uint8_t type = 0;  ///< a `tlv_type` value, or any other.
  std::string value;      ///< the raw value bytes (at most 65535).

  friend bool operator==(const tlv&, const tlv&) = default;
};

/// The TLVs of a block of bytes in wire order (type, 16-bit big-endian length, value; the
/// proxy-protocol.txt §2.2 layout), read in place without copying or allocating.
///
/// Iteration stops at the end of the block, or before a TLV that would run past it (a
/// block `parse` accepted has none). To walk the sub-TLVs of an `ssl` TLV, which `ssl()`
/// decodes only in part: `tlv_range{h.find(tlv_type::ssl)->value.subspan(5)}`.
class tlv_range {
 public:
  /// A forward iterator yielding `tlv_view`s by value.
  class iterator {
   public:
    using value_type = tlv_view;
    using reference = tlv_view;
    using pointer = void;
    using difference_type = std::ptrdiff_t;
    using iterator_category = std::input_iterator_tag;  // `*it` is not a reference
    using iterator_concept = std::forward_iterator_tag;

    iterator() = default;  ///< the end iterator.
    tlv_view operator*() const noexcept;
    iterator& operator++() noexcept;
    iterator operator++(int) noexcept {
      iterator before = *this;
      ++*this;
      return before;
    }
    friend bool operator==(const iterator&, const iterator&) = default;

   private:
    friend class tlv_range;
    explicit iterator(std::span<const std::byte> rest) noexcept;
    const std::byte* at_ = nullptr;  // the current TLV; nullptr at the end
    std::size_t left_ = 0;           // bytes from `at_` to the end of the block
  };

  tlv_range() = default;  ///< no TLVs.
  /// The TLVs in `block`, which must outlive the range and its views.
  explicit tlv_range(std::span<const std::byte> block) noexcept : block_(block) {}

  iterator begin() const noexcept { return iterator{block_}; }
  iterator end() const noexcept { return {}; }
  bool empty() const noexcept { return begin() == end(); }
  /// How many TLVs; walks them (at most `tlv_limits::max_count` for a parsed header).
  std::size_t size() const noexcept;
  /// The first TLV of `type`, or nothing; walks the TLVs up to it.
  std::optional<tlv_view> find(std::uint8_t type) const noexcept;
  /// Owned copies of every TLV, in order (e.g. to `build_v2` them again).
  std::vector<tlv> to_vector() const;

 private:
  std::span<const std::byte> block_;
};

/// The PP2_TYPE_SSL TLV, decoded (all empty / 0 when absent). The strings are views into
/// the `header` that `header::ssl()` was called on.
struct ssl_info {
  bool present = false;      ///< an `ssl` TLV was in the header.
  std::uint8_t client = 0;   ///< bit field: 0x01 client used TLS, 0x02 cert on this
                             ///< connection, 0x04 cert in this TLS session.
  std::uint32_t verify = 0;  ///< 0 when the client certificate was verified, else non-zero.

  std::string_view version;      ///< `ssl_version` sub-TLV ("TLSv1.3").
  std::string_view common_name;  ///< `ssl_cn` sub-TLV.
  std::string_view cipher;       ///< `ssl_cipher` sub-TLV ("ECDHE-RSA-AES128-GCM-SHA256").
  std::string_view sig_alg;      ///< `ssl_sig_alg` sub-TLV ("RSA-SHA256").
  std::string_view key_alg;      ///< `ssl_key_alg` sub-TLV ("RSA2048").

  friend bool operator==(const ssl_info&, const ssl_info&) = default;
};

struct result;

/// A parsed PROXY header.
///
/// Invariant: `source` and `destination` are both empty (AF_UNSPEC), or both of one family:
/// AF_INET, AF_INET6 (with ports) or AF_UNIX (path up to the first NUL; "" when unnamed).
/// An empty `source` means "use the connection's own addresses" whatever `command` says.
///
/// Memory: a listener keeps one `header` per PROXY connection for the connection's life.
/// It holds `sizeof(header)` bytes (two `endpoint`s and a vector: about 300 bytes) plus one
/// heap block holding exactly the header's TLV bytes as they were on the wire (0 for v1;
/// for v2 at most `header_length - 16`, and at most `tlv_limits::max_bytes`), however many
/// TLVs there are: `retained_bytes()`. The TLVs are read from that block in place, as views.
struct header {
  proxy::version version = proxy::version::v1;  ///< which format was on the wire.
  proxy::command command = proxy::command::local;
  endpoint source;       ///< the original client; empty for LOCAL / UNKNOWN / AF_UNSPEC.
  endpoint destination;  ///< the address the client connected to; empty likewise.
  /// Bytes the header occupied on the wire: 15..107 for v1, 16 + length for v2.
  std::uint32_t header_length = 0;

  /// Every v2 TLV in wire order, raw (also the ones below, also for LOCAL); empty for v1.
  /// The views are valid while this header is alive, not moved from and not assigned to.
  tlv_range tlvs() const noexcept { return tlv_range{tlv_block_}; }
  /// The first TLV of `type`, or nothing (e.g. `find(tlv_type::netns)`).
  std::optional<tlv_view> find(std::uint8_t type) const noexcept { return tlvs().find(type); }
  /// The first `alpn` TLV's value; empty when absent.
  std::string_view alpn() const noexcept { return text_of(tlv_type::alpn); }
  /// The first `authority` TLV's value; empty when absent.
  std::string_view authority() const noexcept { return text_of(tlv_type::authority); }
  /// The first `unique_id` TLV's value (at most 128 bytes); empty when absent.
  std::string_view unique_id() const noexcept { return text_of(tlv_type::unique_id); }
  /// The first `ssl` TLV with the first sub-TLV of each known type; decoded on each call.
  ssl_info ssl() const noexcept;
  /// The TLV bytes exactly as on the wire (everything after the address block).
  std::span<const std::byte> tlv_bytes() const noexcept { return tlv_block_; }
  /// Bytes this header holds, its own size included: `sizeof(header)` + the TLV block.
  std::size_t retained_bytes() const noexcept { return sizeof(header) + tlv_block_.capacity(); }

 private:
  friend result parse(std::span<const std::byte>, proxy_protocol_mode, const tlv_limits&);
  std::string_view text_of(std::uint8_t type) const noexcept {
    const auto t = find(type);
    return t ? t->text() : std::string_view{};
  }
  // One allocation of exactly the TLV bytes (assigned from a range, so capacity == size);
  // one `tlv` object per TLV here was 40+ bytes for each 3-byte empty TLV on the wire.
  std::vector<std::byte> tlv_block_;
};

/// What `parse` made of the bytes.
enum class status : std::uint8_t {
  need_more,  ///< a valid header so far, but incomplete: wait for `result::needed` bytes.
  complete,   ///< a whole valid header (`result::hdr`), `header_length` bytes long.
  invalid,    ///< not a valid header (`result::error`): close the connection.
};

/// The outcome of `parse`.
struct result {
  proxy::status status = proxy::status::invalid;
  /// need_more: the total byte count (from the start of the header) worth waiting for
  /// before calling again; always > the input size. For v2 after the 16-byte fixed part it
  /// is exactly 16 + length; before it, 16. For v1 (no CRLF yet) it is the input size + 1,
  /// at most 107. complete: `hdr.header_length`. invalid: 0.
  std::size_t needed = 0;
  /// The header; meaningful only when `status == complete`.
  header hdr;
  /// invalid: a short reason ("v1: bad source port", "v2: unsupported version 3",
  /// "v2: signature mismatch", ...); empty otherwise.
  std::string error;
};

/// Parses a PROXY header at the start of `data` (e.g. bytes peeked from a socket).
///
/// `limits` caps a v2 header's TLVs (count and bytes; see `tlv_limits`): past them the
/// header is `invalid` ("v2: more than 128 TLVs", "v2: 70000 bytes of TLVs over the limit
/// of 4096").
///
/// Pure: no I/O, never reads past `data`, nothing looked at after the header. Call again with
/// more bytes after `need_more` (parsing restarts from the first byte; there is no state).
/// Bytes that cannot begin a valid header are `invalid` at once, not `need_more`.
///
/// Validation is strict (proxy-protocol.txt §2.1, §2.2):
/// - v1: "PROXY " then "TCP4" / "TCP6" with single spaces, addresses of that family (IPv4
///   dotted quad without leading zeros; IPv6 as `inet_pton` reads it), ports 0..65535 in
///   decimal without sign or leading zeros, then CRLF within 107 bytes; a lone CR or LF is
///   invalid. "UNKNOWN" (then CRLF, or a space and anything up to the CRLF, ignored) gives
///   `command::local` with empty addresses.
/// - v2: the 12-byte signature, version 2, command LOCAL/PROXY, a known family (UNSPEC,
///   INET, INET6, UNIX) and transport (UNSPEC, STREAM, DGRAM), a length that holds the
///   family's address block (0/12/36/216 bytes) and TLVs that exactly fill the rest. Known
///   TLVs are checked: CRC32C must be 4 bytes and match (at most one), UNIQUE_ID at most 128
///   bytes, SSL at least 5 bytes with well-formed sub-TLVs. AF_UNIX addresses must hold a
///   NUL within their 108 bytes. Addresses are read only for a PROXY command with STREAM
///   transport; otherwise (LOCAL, AF_UNSPEC, UNSPEC transport, DGRAM) they are skipped and
///   left empty — atoll is TCP-only, and the spec has receivers fall back to the
///   connection's own addresses for transports they do not implement. TLVs are always
///   parsed, LOCAL included.
///
/// `mode` `any` tells the versions apart by the first byte; `off` is a programming error and
/// returns `invalid`.
result parse(std::span<const std::byte> data, proxy_protocol_mode mode,
             const tlv_limits& limits = {});

/// Builds a v1 header: "PROXY TCP4|TCP6 src dst sport dport\r\n", or "PROXY UNKNOWN\r\n"
/// when the endpoints are not both IPv4 or both IPv6. For clients that speak PROXY to a
/// server, load generators and tests.
std::vector<std::byte> build_v1(const endpoint& src, const endpoint& dst);

/// Builds a v2 header with `tlvs` after the addresses, in order.
///
/// - `command::local`: family AF_UNSPEC, no addresses (the endpoints are ignored).
/// - `command::proxy`: TCP over IPv4 / IPv6 or UNIX stream when both endpoints are of that
///   family, else AF_UNSPEC without addresses. A Unix path must fit in 107 bytes with its NUL
///   (else AF_UNSPEC); abstract and unnamed Unix addresses are sent as unnamed (all zeros).
/// - A `tlv_type::crc32c` TLV is written as 4 bytes holding the header's checksum (its given
///   value is ignored); other TLVs are written as given.
///
/// Throws `std::length_error` when a TLV value exceeds 65535 bytes or the header would
/// exceed `max_v2_header_size`, `std::invalid_argument` for more than one CRC32C TLV.
std::vector<std::byte> build_v2(command cmd, const endpoint& src, const endpoint& dst,
                                std::span<const tlv> tlvs = {});

}  // namespace proxy
}  // namespace atl
