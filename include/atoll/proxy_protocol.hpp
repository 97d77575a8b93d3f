#pragma once
/// @file proxy_protocol.hpp
/// The PROXY protocol (HAProxy's proxy-protocol.txt, v1 text and v2 binary headers): a pure
/// parser over bytes and builders, with no sockets. A listener with
/// `listener_config::proxy_protocol` set reads the header with it before anything else.
///
/// Thread rules: every function here is pure (no I/O, no shared state) and may be called from
/// any thread at once. The types are plain values.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
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

/// Registered v2 TLV types (proxy-protocol.txt §2.2). Values of `tlv::type`.
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

/// One v2 Type-Length-Value entry, as on the wire (the value's length is its size).
struct tlv {
  std::uint8_t type = 0;  ///< a `tlv_type` value, or any other (kept, not interpreted).
  std::string value;      ///< the raw value bytes (at most 65535).

  friend bool operator==(const tlv&, const tlv&) = default;
};

/// The PP2_TYPE_SSL TLV, decoded (all empty / 0 when absent).
struct ssl_info {
  bool present = false;      ///< an `ssl` TLV was in the header.
  std::uint8_t client = 0;   ///< bit field: 0x01 client used TLS, 0x02 cert on this
                             ///< connection, 0x04 cert in this TLS session.
  std::uint32_t verify = 0;  ///< 0 when the client certificate was verified, else non-zero.
  std::string version;       ///< `ssl_version` sub-TLV ("TLSv1.3").
  std::string common_name;   ///< `ssl_cn` sub-TLV.
  std::string cipher;        ///< `ssl_cipher` sub-TLV ("ECDHE-RSA-AES128-GCM-SHA256").
  std::string sig_alg;       ///< `ssl_sig_alg` sub-TLV ("RSA-SHA256").
  std::string key_alg;       ///< `ssl_key_alg` sub-TLV ("RSA2048").

  friend bool operator==(const ssl_info&, const ssl_info&) = default;
};

/// A parsed PROXY header.
///
/// Invariant: `source` and `destination` are both empty (AF_UNSPEC), or both of one family:
/// AF_INET, AF_INET6 (with ports) or AF_UNIX (path up to the first NUL; "" when unnamed).
/// An empty `source` means "use the connection's own addresses" whatever `command` says.
struct header {
  proxy::version version = proxy::version::v1;  ///< which format was on the wire.
  proxy::command command = proxy::command::local;
  endpoint source;       ///< the original client; empty for LOCAL / UNKNOWN / AF_UNSPEC.
  endpoint destination;  ///< the address the client connected to; empty likewise.
  /// Every v2 TLV in wire order, raw (also the ones below, also for LOCAL); empty for v1.
  std::vector<tlv> tlvs;
  // Convenience copies of the first TLV of each type (empty when absent):
  std::string alpn;       ///< `alpn` TLV.
  std::string authority;  ///< `authority` TLV.
  std::string unique_id;  ///< `unique_id` TLV (at most 128 bytes).
  ssl_info ssl;           ///< `ssl` TLV and its sub-TLVs.
  /// Bytes the header occupied on the wire: 15..107 for v1, 16 + length for v2.
  std::uint32_t header_length = 0;
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
result parse(std::span<const std::byte> data, proxy_protocol_mode mode);

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
