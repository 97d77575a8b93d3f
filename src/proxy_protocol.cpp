// The PROXY protocol parser and builders. Section numbers refer to HAProxy's
// doc/proxy-protocol.txt (v1: §2.1, v2: §2.2, TLVs: §2.2.1-§2.2.7).
#include "atoll/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace atl::proxy {
namespace {

constexpr std::array<std::uint8_t, 12> v2_signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view v1_signature = "PROXY ";

// §2.2: the 14th byte's high nibble (family) and low nibble (transport).
constexpr std::uint8_t family_unspec = 0x0;
constexpr std::uint8_t family_inet = 0x1;
constexpr std::uint8_t family_inet6 = 0x2;
constexpr std::uint8_t family_unix = 0x3;
constexpr std::uint8_t transport_stream = 0x1;
constexpr std::uint8_t transport_dgram = 0x2;

constexpr std::size_t inet_block_size = 2 * 4 + 2 * 2;
constexpr std::size_t inet6_block_size = 2 * 16 + 2 * 2;
constexpr std::size_t unix_address_size = 108;
constexpr std::size_t unix_block_size = 2 * unix_address_size;
constexpr std::size_t tlv_header_size = 3;
constexpr std::size_t crc32c_size = 4;
constexpr std::size_t ssl_fixed_size = 5;                    // client (1) + verify (4), §2.2.6
constexpr std::size_t max_ipv4_text = 15;                    // "255.255.255.255"
constexpr std::size_t max_ipv6_text = INET6_ADDRSTRLEN - 1;  // with a dotted IPv4 tail

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) as RFC 4960 Appendix B computes it,
// which is what §2.2.3 refers to. A table built at compile time: no static initialisation.
constexpr std::array<std::uint32_t, 256> make_crc32c_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto crc32c_table = make_crc32c_table();

// The checksum of `data` with the 4 bytes at `zero_at` counted as zeros (§2.2.3: the
// receiver zeroes the checksum field before computing it).
std::uint32_t crc32c(std::span<const std::byte> data, std::size_t zero_at) noexcept {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const bool zeroed = i >= zero_at && i - zero_at < crc32c_size;
    const std::uint32_t b = zeroed ? 0u : std::to_integer<std::uint32_t>(data[i]);
    c = crc32c_table[(c ^ b) & 0xFFu] ^ (c >> 8);
  }
  return ~c;
}

std::uint8_t u8_at(std::span<const std::byte> d, std::size_t i) noexcept {
  return std::to_integer<std::uint8_t>(d[i]);
}
std::uint16_t be16_at(std::span<const std::byte> d, std::size_t i) noexcept {
  return static_cast<std::uint16_t>(u8_at(d, i) << 8 | u8_at(d, i + 1));
}
std::uint32_t be32_at(std::span<const std::byte> d, std::size_t i) noexcept {
  return std::uint32_t{be16_at(d, i)} << 16 | be16_at(d, i + 2);
}

std::string_view as_text(std::span<const std::byte> d) noexcept {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

result need(std::size_t total) {
  result r;
  r.status = status::need_more;
  r.needed = total;
  return r;
}

result fail(std::string reason) {
  result r;
  r.status = status::invalid;
  r.error = std::move(reason);
  return r;
}

result done(header hdr) {
  result r;
  r.status = status::complete;
  r.needed = hdr.header_length;
  r.hdr = std::move(hdr);
  return r;
}

endpoint make_inet(const void* address4, const void* port_be) noexcept {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  std::memcpy(&a.sin_addr, address4, 4);
  std::memcpy(&a.sin_port, port_be, 2);
  return {reinterpret_cast<const sockaddr*>(&a), sizeof a};
}

endpoint make_inet6(const void* address16, const void* port_be) noexcept {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  std::memcpy(&a.sin6_addr, address16, 16);
  std::memcpy(&a.sin6_port, port_be, 2);
  return {reinterpret_cast<const sockaddr*>(&a), sizeof a};
}

// ---------------------------------------------------------------------------------------------
// v1 (§2.1)

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_hex(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// §2.1: "exactly 4 integers in the range [0..255] ... separated by exactly one dot",
// "heading zeroes are not permitted" (an octal reading would give another address).
bool parse_ipv4(std::string_view s, in_addr& out) noexcept {
  std::array<std::uint8_t, 4> octets{};
  std::size_t part = 0;
  std::size_t i = 0;
  while (true) {
    const std::size_t start = i;
    unsigned value = 0;
    while (i < s.size() && is_digit(s[i]) && i - start < 3) {
      value = value * 10 + static_cast<unsigned>(s[i] - '0');
      ++i;
    }
    const std::size_t digits = i - start;
    if (digits == 0 || value > 255 || (digits > 1 && s[start] == '0')) return false;
    octets[part++] = static_cast<std::uint8_t>(value);
    if (part == 4) break;
    if (i == s.size() || s[i] != '.') return false;
    ++i;
  }
  if (i != s.size()) return false;
  std::memcpy(&out, octets.data(), 4);
  return true;
}

bool parse_ipv6(std::string_view s, in6_addr& out) noexcept {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (s.size() >= text.size()) return false;
  std::memcpy(text.data(), s.data(), s.size());
  return ::inet_pton(AF_INET6, text.data(), &out) == 1;
}

// §2.1: decimal in [0..65535] without heading zeroes (and so without a sign).
bool parse_port(std::string_view s, std::uint16_t& out) noexcept {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  std::uint32_t value = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  out = static_cast<std::uint16_t>(value);
  return true;
}

struct v1_field {
  const char* name;       // for the error: "v1: bad <name>"
  bool (*allowed)(char);  // characters that may appear, checked as they arrive
  std::size_t max_size;   // longest valid text
};

bool ipv4_char(char c) noexcept { return is_digit(c) || c == '.'; }
bool ipv6_char(char c) noexcept { return is_hex(c) || c == ':' || c == '.'; }

result parse_v1(std::span<const std::byte> data) {
  // §2.1: the CRLF must be within the first 107 bytes; never look further.
  const std::string_view line = as_text(data.first(std::min(data.size(), max_v1_header_size)));
  const auto out_of_bytes = [&] {
    if (data.size() >= max_v1_header_size) return fail("v1: no CRLF within 107 bytes");
    return need(data.size() + 1);
  };

  std::size_t pos = 0;
  for (char c : v1_signature) {
    if (pos == line.size()) return out_of_bytes();
    if (line[pos] != c) return fail("v1: signature mismatch");
    ++pos;
  }

  // A CRLF after the last field; "a single CR or LF" must not end the line (§2.1).
  const auto expect_crlf = [&](std::size_t at) -> std::optional<result> {
    if (at == line.size()) return out_of_bytes();
    if (line[at] != '\r') return fail("v1: expected CRLF");
    if (at + 1 == line.size()) return out_of_bytes();
    if (line[at + 1] != '\n') return fail("v1: CR without LF");
    return std::nullopt;
  };

  const std::size_t proto_start = pos;
  while (pos < line.size() && line[pos] != ' ' && line[pos] != '\r') ++pos;
  const std::string_view proto = line.substr(proto_start, pos - proto_start);
  constexpr std::array<std::string_view, 3> protos = {"TCP4", "TCP6", "UNKNOWN"};
  const bool known_prefix = std::any_of(protos.begin(), protos.end(), [&](std::string_view p) {
    return p.substr(0, proto.size()) == proto;
  });
  if (!known_prefix) return fail("v1: unknown protocol");
  if (pos == line.size()) return out_of_bytes();
  if (std::find(protos.begin(), protos.end(), proto) == protos.end()) {
    return fail("v1: unknown protocol");
  }

  header hdr;
  hdr.version = version::v1;

  if (proto == "UNKNOWN") {
    // §2.1: for UNKNOWN the receiver ignores whatever comes before the CRLF, and uses the
    // connection's own addresses: that is what command::local means here.
    if (line[pos] == ' ') {
      while (pos < line.size() && line[pos] != '\r' && line[pos] != '\n') ++pos;
      if (pos < line.size() && line[pos] == '\n') return fail("v1: LF without CR");
    }
    if (auto r = expect_crlf(pos)) return std::move(*r);
    hdr.command = command::local;
    hdr.header_length = static_cast<std::uint32_t>(pos + 2);
    return done(std::move(hdr));
  }

  const bool v6 = proto == "TCP6";
  const std::array<v1_field, 4> fields = {{
      {"source address", v6 ? ipv6_char : ipv4_char, v6 ? max_ipv6_text : max_ipv4_text},
      {"destination address", v6 ? ipv6_char : ipv4_char, v6 ? max_ipv6_text : max_ipv4_text},
      {"source port", is_digit, 5},
      {"destination port", is_digit, 5},
  }};
  std::array<std::string_view, 4> text;
  for (std::size_t f = 0; f < fields.size(); ++f) {
    if (line[pos] != ' ') return fail(std::string("v1: missing ") + fields[f].name);
    const std::size_t start = ++pos;
    // Reject a field as soon as it cannot be valid, without waiting for the CRLF.
    while (pos < line.size() && line[pos] != ' ' && line[pos] != '\r') {
      if (!fields[f].allowed(line[pos]) || pos - start >= fields[f].max_size) {
        return fail(std::string("v1: bad ") + fields[f].name);
      }
      ++pos;
    }
    if (pos == line.size()) return out_of_bytes();
    if (pos == start) return fail(std::string("v1: bad ") + fields[f].name);  // two spaces
    text[f] = line.substr(start, pos - start);
  }
  if (auto r = expect_crlf(pos)) return std::move(*r);

  std::uint16_t ports[2] = {};
  for (std::size_t p = 0; p < 2; ++p) {
    if (!parse_port(text[2 + p], ports[p]))
      return fail(std::string("v1: bad ") + fields[2 + p].name);
  }
  endpoint addresses[2];
  for (std::size_t a = 0; a < 2; ++a) {
    const std::uint16_t port_be = htons(ports[a]);
    if (v6) {
      in6_addr address{};
      if (!parse_ipv6(text[a], address)) return fail(std::string("v1: bad ") + fields[a].name);
      addresses[a] = make_inet6(&address, &port_be);
    } else {
      in_addr address{};
      if (!parse_ipv4(text[a], address)) return fail(std::string("v1: bad ") + fields[a].name);
      addresses[a] = make_inet(&address, &port_be);
    }
  }
  hdr.command = command::proxy;
  hdr.source = addresses[0];
  hdr.destination = addresses[1];
  hdr.header_length = static_cast<std::uint32_t>(pos + 2);
  return done(std::move(hdr));
}

// ---------------------------------------------------------------------------------------------
// v2 (§2.2)

std::size_t address_block_size(std::uint8_t family) noexcept {
  switch (family) {
    case family_inet:
      return inet_block_size;
    case family_inet6:
      return inet6_block_size;
    case family_unix:
      return unix_block_size;
    default:
      return 0;
  }
}

// One 108-byte AF_UNIX address: a path up to its NUL (an unnamed endpoint when empty).
std::optional<endpoint> make_unix(std::span<const std::byte> raw) noexcept {
  const auto* text = reinterpret_cast<const char*>(raw.data());
  const auto* nul = static_cast<const char*>(std::memchr(text, '\0', raw.size()));
  if (nul == nullptr) return std::nullopt;
  const auto length = static_cast<std::size_t>(nul - text);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, text, length);
  const std::size_t size = offsetof(sockaddr_un, sun_path) + (length > 0 ? length + 1 : 0);
  return endpoint{reinterpret_cast<const sockaddr*>(&a), static_cast<socklen_t>(size)};
}

// The size of the whole TLV at the start of `rest` (header and value), or 0 when it would
// run past `rest`.
std::size_t whole_tlv_size(std::span<const std::byte> rest) noexcept {
  if (rest.size() < tlv_header_size) return 0;
  const std::size_t size = tlv_header_size + be16_at(rest, 1);
  return size <= rest.size() ? size : 0;
}

// How many TLVs exactly fill `block`, or nothing when they do not (one runs past it).
std::optional<std::size_t> count_tlvs(std::span<const std::byte> block) noexcept {
  std::size_t count = 0;
  while (!block.empty()) {
    const std::size_t size = whole_tlv_size(block);
    if (size == 0) return std::nullopt;
    block = block.subspan(size);
    ++count;
  }
  return count;
}

// On `complete`, `tlvs_out` is the TLV block within `data`, for `parse` to keep.
result parse_v2(std::span<const std::byte> data, const tlv_limits& limits,
                std::span<const std::byte>& tlvs_out) {
  // Check every byte as soon as it is there: a peer that is not speaking PROXY v2 is
  // refused without waiting for 16 bytes.
  const std::size_t signature_bytes = std::min(data.size(), v2_signature.size());
  for (std::size_t i = 0; i < signature_bytes; ++i) {
    if (u8_at(data, i) != v2_signature[i]) return fail("v2: signature mismatch");
  }
  std::uint8_t cmd = 0;
  std::uint8_t family = 0;
  std::uint8_t transport = 0;
  if (data.size() > 12) {
    const std::uint8_t ver = u8_at(data, 12) >> 4;
    cmd = u8_at(data, 12) & 0x0F;
    if (ver != 2) return fail("v2: unsupported version " + std::to_string(ver));
    if (cmd > 1) return fail("v2: unsupported command " + std::to_string(cmd));
  }
  if (data.size() > 13) {
    family = u8_at(data, 13) >> 4;
    transport = u8_at(data, 13) & 0x0F;
    if (family > family_unix) return fail("v2: unsupported family " + std::to_string(family));
    if (transport > transport_dgram) {
      return fail("v2: unsupported transport " + std::to_string(transport));
    }
  }
  if (data.size() < v2_fixed_size) return need(v2_fixed_size);

  const std::size_t length = be16_at(data, 14);
  const std::size_t block_size = address_block_size(family);
  if (length < block_size) {
    return fail("v2: length " + std::to_string(length) + " too short for the address family");
  }
  // Refused before its bytes are waited for: a reader never buffers past the limit.
  if (length - block_size > limits.max_bytes) {
    return fail("v2: " + std::to_string(length - block_size) + " bytes of TLVs over the limit of " +
                std::to_string(limits.max_bytes));
  }
  const std::size_t total = v2_fixed_size + length;
  if (data.size() < total) return need(total);
  const auto bytes = data.first(total);

  header hdr;
  hdr.version = version::v2;
  hdr.command = cmd == 1 ? command::proxy : command::local;
  hdr.header_length = static_cast<std::uint32_t>(total);

  // §2.2: LOCAL ignores the address block; so does a receiver for transports it does not
  // implement (it "falls back to the UNSPEC mode"): atoll speaks TCP only, so DGRAM and
  // UNSPEC transports leave the addresses empty.
  const auto block = bytes.subspan(v2_fixed_size, block_size);
  if (hdr.command == command::proxy && transport == transport_stream) {
    if (family == family_inet) {
      hdr.source = make_inet(&block[0], &block[8]);
      hdr.destination = make_inet(&block[4], &block[10]);
    } else if (family == family_inet6) {
      hdr.source = make_inet6(&block[0], &block[32]);
      hdr.destination = make_inet6(&block[16], &block[34]);
    } else if (family == family_unix) {
      auto source = make_unix(block.first(unix_address_size));
      if (!source) return fail("v2: unterminated UNIX source address");
      auto destination = make_unix(block.subspan(unix_address_size));
      if (!destination) return fail("v2: unterminated UNIX destination address");
      hdr.source = *source;
      hdr.destination = *destination;
    }
  }

  // Only checked here; `header` keeps the block as it is and reads it in place.
  const std::size_t tlvs_at = v2_fixed_size + block_size;
  std::size_t pos = tlvs_at;
  std::size_t crc_at = 0;
  std::size_t count = 0;
  const auto count_up_to_limit = [&](std::size_t n) {
    count += n;
    return count <= limits.max_count;
  };
  const auto too_many = [&] {
    return fail("v2: more than " + std::to_string(limits.max_count) + " TLVs");
  };
  while (pos < total) {
    if (total - pos < tlv_header_size) return fail("v2: truncated TLV");
    const std::uint8_t type = u8_at(bytes, pos);
    const std::size_t value_size = be16_at(bytes, pos + 1);
    const std::size_t value_at = pos + tlv_header_size;
    if (total - value_at < value_size) return fail("v2: TLV overruns the header");
    if (!count_up_to_limit(1)) return too_many();
    const auto value = bytes.subspan(value_at, value_size);
    switch (type) {
      case tlv_type::crc32c:
        if (value_size != crc32c_size) return fail("v2: CRC32C TLV is not 4 bytes");
        if (crc_at != 0) return fail("v2: more than one CRC32C TLV");
        crc_at = value_at;
        break;
      case tlv_type::unique_id:
        if (value_size > max_unique_id_size) return fail("v2: UNIQUE_ID TLV over 128 bytes");
        break;
      case tlv_type::ssl: {
        // §2.2.6: client (1), verify (4), then sub-TLVs that exactly fill the value. Each
        // counts towards the cap: `header::ssl()` walks them.
        if (value_size < ssl_fixed_size) return fail("v2: malformed SSL TLV");
        const auto subs = count_tlvs(value.subspan(ssl_fixed_size));
        if (!subs) return fail("v2: malformed SSL TLV");
        if (!count_up_to_limit(*subs)) return too_many();
        break;
      }
      default:
        break;  // ALPN, AUTHORITY, NOOP, NETNS and unregistered types: any value
    }
    pos = value_at + value_size;
  }

  // §2.2.3: a receiver that supports the checksum MUST verify it and treat the connection
  // as invalid when it differs.
  if (crc_at != 0 && crc32c(bytes, crc_at) != be32_at(bytes, crc_at)) {
    return fail("v2: CRC32C mismatch");
  }
  tlvs_out = bytes.subspan(tlvs_at);
  return done(std::move(hdr));
}

void append(std::vector<std::byte>& out, std::string_view text) {
  for (char c : text) out.push_back(static_cast<std::byte>(c));
}
void append_u8(std::vector<std::byte>& out, std::uint8_t v) { out.push_back(std::byte{v}); }
void append_be16(std::vector<std::byte>& out, std::size_t v) {
  append_u8(out, static_cast<std::uint8_t>(v >> 8));
  append_u8(out, static_cast<std::uint8_t>(v));
}
void append_raw(std::vector<std::byte>& out, const void* p, std::size_t n) {
  const auto* b = static_cast<const std::byte*>(p);
  out.insert(out.end(), b, b + n);
}

// The path of a named Unix endpoint that fits a NUL-terminated 108-byte field, or nothing.
std::optional<std::string_view> unix_path_for_v2(const endpoint& e) noexcept {
  const auto* a = reinterpret_cast<const sockaddr_un*>(e.data());
  const std::size_t offset = offsetof(sockaddr_un, sun_path);
  if (e.size() <= offset || a->sun_path[0] == '\0') return std::string_view{};  // unnamed
  const std::size_t n =
      ::strnlen(a->sun_path, std::min<std::size_t>(e.size() - offset, sizeof a->sun_path));
  if (n >= unix_address_size) return std::nullopt;
  return std::string_view{a->sun_path, n};
}

}  // namespace

tlv_range::iterator::iterator(std::span<const std::byte> rest) noexcept {
  if (whole_tlv_size(rest) != 0) {
    at_ = rest.data();
    left_ = rest.size();
  }
}

tlv_view tlv_range::iterator::operator*() const noexcept {
  const std::span<const std::byte> rest{at_, left_};
  return {u8_at(rest, 0), rest.subspan(tlv_header_size, be16_at(rest, 1))};
}

tlv_range::iterator& tlv_range::iterator::operator++() noexcept {
  const std::span<const std::byte> rest{at_, left_};
  *this = iterator{rest.subspan(whole_tlv_size(rest))};
  return *this;
}

std::size_t tlv_range::size() const noexcept {
  return static_cast<std::size_t>(std::distance(begin(), end()));
}

std::optional<tlv_view> tlv_range::find(std::uint8_t type) const noexcept {
  for (const tlv_view t : *this) {
    if (t.type == type) return t;
  }
  return std::nullopt;
}

std::vector<tlv> tlv_range::to_vector() const {
  std::vector<tlv> out;
  for (const tlv_view t : *this) out.push_back({t.type, std::string(t.text())});
  return out;
}

ssl_info header::ssl() const noexcept {
  ssl_info info;
  const auto t = find(tlv_type::ssl);
  if (!t || t->value.size() < ssl_fixed_size) return info;
  info.present = true;
  info.client = u8_at(t->value, 0);
  info.verify = be32_at(t->value, 1);
  for (const tlv_view sub : tlv_range{t->value.subspan(ssl_fixed_size)}) {
    std::string_view* field = nullptr;
    switch (sub.type) {
      case tlv_type::ssl_version:
        field = &info.version;
        break;
      case tlv_type::ssl_cn:
        field = &info.common_name;
        break;
      case tlv_type::ssl_cipher:
        field = &info.cipher;
        break;
      case tlv_type::ssl_sig_alg:
        field = &info.sig_alg;
        break;
      case tlv_type::ssl_key_alg:
        field = &info.key_alg;
        break;
      default:
        break;  // unknown sub-TLVs are skipped, like unknown TLVs
    }
    // The first of each sub-type, even an empty one: its view still points into the block,
    // so only a field never set has a null data().
    if (field != nullptr && field->data() == nullptr) *field = sub.text();
  }
  return info;
}

result parse(std::span<const std::byte> data, proxy_protocol_mode mode, const tlv_limits& limits) {
  const auto v2 = [&] {
    std::span<const std::byte> tlvs;
    result r = parse_v2(data, limits, tlvs);
    // Assigned from a range: one allocation of exactly the TLV bytes (capacity == size).
    if (r.status == status::complete) r.hdr.tlv_block_.assign(tlvs.begin(), tlvs.end());
    return r;
  };
  switch (mode) {
    case proxy_protocol_mode::v1:
      return parse_v1(data);
    case proxy_protocol_mode::v2:
      return v2();
    case proxy_protocol_mode::any:
      if (data.empty()) return need(1);
      if (data[0] == std::byte{'P'}) return parse_v1(data);
      if (data[0] == std::byte{v2_signature[0]}) return v2();
      return fail("signature mismatch");
    case proxy_protocol_mode::off:
      break;
  }
  return fail("PROXY protocol mode is off");
}

std::vector<std::byte> build_v1(const endpoint& src, const endpoint& dst) {
  std::vector<std::byte> out;
  out.reserve(max_v1_header_size);
  append(out, v1_signature);
  if (src.is_ip() && src.family() == dst.family()) {
    append(out, src.family() == AF_INET ? "TCP4 " : "TCP6 ");
    append(out, src.address());
    append(out, " ");
    append(out, dst.address());
    append(out, " ");
    append(out, std::to_string(src.port()));
    append(out, " ");
    append(out, std::to_string(dst.port()));
  } else {
    append(out, "UNKNOWN");
  }
  append(out, "\r\n");
  return out;
}

std::vector<std::byte> build_v2(command cmd, const endpoint& src, const endpoint& dst,
                                std::span<const tlv> tlvs) {
  std::vector<std::byte> out;
  out.reserve(v2_fixed_size + unix_block_size);
  append_raw(out, v2_signature.data(), v2_signature.size());
  append_u8(out, cmd == command::proxy ? 0x21 : 0x20);
  append_u8(out, 0);    // family and transport, set below
  append_be16(out, 0);  // length, set below

  std::uint8_t family = family_unspec;
  if (cmd == command::proxy && src.family() == dst.family()) {
    if (src.family() == AF_INET) {
      const auto* s = reinterpret_cast<const sockaddr_in*>(src.data());
      const auto* d = reinterpret_cast<const sockaddr_in*>(dst.data());
      append_raw(out, &s->sin_addr, 4);
      append_raw(out, &d->sin_addr, 4);
      append_raw(out, &s->sin_port, 2);
      append_raw(out, &d->sin_port, 2);
      family = family_inet;
    } else if (src.family() == AF_INET6) {
      const auto* s = reinterpret_cast<const sockaddr_in6*>(src.data());
      const auto* d = reinterpret_cast<const sockaddr_in6*>(dst.data());
      append_raw(out, &s->sin6_addr, 16);
      append_raw(out, &d->sin6_addr, 16);
      append_raw(out, &s->sin6_port, 2);
      append_raw(out, &d->sin6_port, 2);
      family = family_inet6;
    } else if (src.family() == AF_UNIX) {
      const auto s = unix_path_for_v2(src);
      const auto d = unix_path_for_v2(dst);
      if (s && d) {
        for (const std::string_view path : {*s, *d}) {
          append(out, path);
          out.insert(out.end(), unix_address_size - path.size(), std::byte{0});
        }
        family = family_unix;
      }
    }
  }
  if (family != family_unspec) out[13] = std::byte(family << 4 | transport_stream);

  std::size_t crc_at = 0;
  for (const tlv& t : tlvs) {
    if (t.type == tlv_type::crc32c) {
      if (crc_at != 0) throw std::invalid_argument("proxy::build_v2: more than one CRC32C TLV");
      append_u8(out, t.type);
      append_be16(out, crc32c_size);
      crc_at = out.size();
      out.insert(out.end(), crc32c_size, std::byte{0});
      continue;
    }
    if (t.value.size() > 0xFFFF) throw std::length_error("proxy::build_v2: TLV value too long");
    append_u8(out, t.type);
    append_be16(out, t.value.size());
    append(out, t.value);
    if (out.size() > max_v2_header_size) throw std::length_error("proxy::build_v2: too long");
  }
  if (out.size() > max_v2_header_size) throw std::length_error("proxy::build_v2: too long");
  const std::size_t length = out.size() - v2_fixed_size;
  out[14] = std::byte(static_cast<std::uint8_t>(length >> 8));
  out[15] = std::byte(static_cast<std::uint8_t>(length));
  if (crc_at != 0) {
    const std::uint32_t crc = crc32c(out, crc_at);
    for (std::size_t i = 0; i < crc32c_size; ++i) {
      out[crc_at + i] = std::byte(static_cast<std::uint8_t>(crc >> (24 - 8 * i)));
    }
  }
  return out;
}

}  // namespace atl::proxy
