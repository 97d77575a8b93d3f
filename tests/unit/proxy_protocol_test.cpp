// Unit tests of the PROXY protocol parser and builders (HAProxy proxy-protocol.txt): the spec's
// v1 and v2 examples, every TLV type, CRC32C, every truncation point, every malformed case,
// mode mismatches, round trips through build_v1/build_v2 (no sockets), the TLV caps and the
// memory a parsed header keeps (the live heap, as tests/support/process_memory.hpp counts it).
#include "atoll/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/endpoints.hpp"
#include "support/process_memory.hpp"

namespace {

using atl::test::ip_endpoint;
using atl::test::unix_endpoint;

namespace proxy = atl::proxy;
using atl::proxy_protocol_mode;
using bytes = std::vector<std::byte>;

bytes text(std::string_view s) {
  bytes out;
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}

bytes raw(std::initializer_list<unsigned> v) {
  bytes out;
  for (unsigned x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

bytes operator+(bytes a, const bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The 12-byte v2 signature (§2.2).
const bytes signature =
    raw({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A});

// A v2 header: signature, version/command, family/transport, the length of `body`, `body`.
bytes v2(unsigned ver_cmd, unsigned fam, const bytes& body) {
  return signature +
         raw({ver_cmd, fam, static_cast<unsigned>(body.size() >> 8),
              static_cast<unsigned>(body.size() & 0xFF)}) +
         body;
}

bytes tlv_bytes(unsigned type, const bytes& value) {
  return raw({type, static_cast<unsigned>(value.size() >> 8),
              static_cast<unsigned>(value.size() & 0xFF)}) +
         value;
}

bytes zeros(std::size_t n) { return bytes(n, std::byte{0}); }

// A Unix endpoint whose 108-byte path has no NUL (Linux allows it; v2 cannot carry it).
atl::endpoint unterminated_unix_path() {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memset(a.sun_path, 'x', sizeof a.sun_path);
  return {reinterpret_cast<const sockaddr*>(&a), sizeof a};
}

// A 108-byte AF_UNIX address field holding `path` and NULs.
bytes unix_field(std::string_view path) {
  bytes out = text(path);
  out.resize(108, std::byte{0});
  return out;
}

proxy::header parse_complete(const bytes& data, proxy_protocol_mode mode, std::size_t length) {
  const auto r = proxy::parse(data, mode);
  EXPECT_EQ(r.status, proxy::status::complete) << r.error;
  EXPECT_EQ(r.needed, length);
  EXPECT_EQ(r.hdr.header_length, length);
  EXPECT_TRUE(r.error.empty());
  return r.hdr;
}

std::string parse_error(const bytes& data, proxy_protocol_mode mode) {
  const auto r = proxy::parse(data, mode);
  EXPECT_EQ(r.status, proxy::status::invalid);
  EXPECT_EQ(r.needed, 0u);
  EXPECT_FALSE(r.error.empty());
  return r.error;
}

// Every proper prefix of a complete header needs more bytes, and says how many sensibly.
void expect_need_more_for_every_prefix(const bytes& header, proxy_protocol_mode mode) {
  SCOPED_TRACE(testing::Message() << "header of " << header.size() << " bytes");
  for (std::size_t k = 0; k < header.size(); ++k) {
    const auto r = proxy::parse(std::span{header}.first(k), mode);
    ASSERT_EQ(r.status, proxy::status::need_more) << "prefix " << k << ": " << r.error;
    EXPECT_GT(r.needed, k) << "prefix " << k;
    EXPECT_LE(r.needed, header.size()) << "prefix " << k;  // a lower bound: never overshoots
    if (header[0] == std::byte{'P'}) {
      EXPECT_EQ(r.needed, k + 1) << "prefix " << k;
    } else if (mode != proxy_protocol_mode::any || k > 0) {
      EXPECT_EQ(r.needed, k < 16 ? 16 : header.size()) << "prefix " << k;
    }
  }
  const auto r = proxy::parse(header, mode);
  EXPECT_EQ(r.status, proxy::status::complete) << r.error;
}

// ---------------------------------------------------------------------------------------------
// v1

TEST(proxy_protocol_v1, parses_the_spec_tcp4_example_and_leaves_the_request_alone) {
  const bytes line = text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  const bytes data = line + text("GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
  const auto h = parse_complete(data, proxy_protocol_mode::v1, line.size());
  EXPECT_EQ(h.version, proxy::version::v1);
  EXPECT_EQ(h.command, proxy::command::proxy);
  EXPECT_EQ(h.source.to_string(), "192.168.0.1:56324");
  EXPECT_EQ(h.destination.to_string(), "192.168.0.11:443");
  EXPECT_EQ(h.source.family(), AF_INET);
  EXPECT_TRUE(h.tlvs().empty());
  EXPECT_TRUE(h.alpn().empty());
  EXPECT_FALSE(h.ssl().present);
}

TEST(proxy_protocol_v1, parses_tcp6_with_compressed_and_full_addresses) {
  const auto h =
      parse_complete(text("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"), proxy_protocol_mode::v1, 36);
  EXPECT_EQ(h.command, proxy::command::proxy);
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:65535");
  EXPECT_EQ(h.destination.to_string(), "[::1]:0");

  // The spec's longest TCP6 line: 104 bytes.
  const std::string f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const auto longest = text("PROXY TCP6 " + f + " " + f + " 65535 65535\r\n");
  ASSERT_EQ(longest.size(), 104u);
  const auto l = parse_complete(longest, proxy_protocol_mode::v1, 104);
  EXPECT_EQ(l.source.address(), f);
  EXPECT_EQ(l.destination.port(), 65535);

  // Upper-case hex and the longest TCP4 line (56 bytes).
  EXPECT_EQ(
      parse_complete(text("PROXY TCP6 FE80::A 2001:DB8::2 1 2\r\n"), proxy_protocol_mode::v1, 36)
          .source.address(),
      "fe80::a");
  parse_complete(text("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
                 proxy_protocol_mode::v1, 56);
}

TEST(proxy_protocol_v1, unknown_is_local_with_empty_addresses_and_its_rest_ignored) {
  const auto h = parse_complete(text("PROXY UNKNOWN\r\nGET"), proxy_protocol_mode::v1, 15);
  EXPECT_EQ(h.version, proxy::version::v1);
  EXPECT_EQ(h.command, proxy::command::local);
  EXPECT_TRUE(h.source.empty());
  EXPECT_TRUE(h.destination.empty());

  const auto g = parse_complete(text("PROXY UNKNOWN 1.2.3.4 whatever \x01 junk\r\n"),
                                proxy_protocol_mode::v1, 39);
  EXPECT_EQ(g.command, proxy::command::local);
  EXPECT_TRUE(g.source.empty());

  // The spec's worst case is 107 bytes; one byte more is refused.
  const std::string f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const auto worst = text("PROXY UNKNOWN " + f + " " + f + " 65535 65535\r\n");
  ASSERT_EQ(worst.size(), 107u);
  parse_complete(worst, proxy_protocol_mode::v1, 107);
  EXPECT_EQ(
      parse_error(text("PROXY UNKNOWN " + std::string(92, 'a') + "\r\n"), proxy_protocol_mode::v1),
      "v1: no CRLF within 107 bytes");
}

TEST(proxy_protocol_v1, waits_for_the_crlf_up_to_107_bytes_then_refuses) {
  const bytes partial = text("PROXY UNKNOWN " + std::string(92, 'a'));  // 106 bytes
  const auto r = proxy::parse(partial, proxy_protocol_mode::v1);
  EXPECT_EQ(r.status, proxy::status::need_more);
  EXPECT_EQ(r.needed, 107u);
  EXPECT_EQ(parse_error(partial + text("a"), proxy_protocol_mode::v1),
            "v1: no CRLF within 107 bytes");
  // A CR as the 107th byte: its LF would be the 108th.
  EXPECT_EQ(parse_error(partial + text("\r\n"), proxy_protocol_mode::v1),
            "v1: no CRLF within 107 bytes");
}

TEST(proxy_protocol_v1, refuses_each_malformed_line_with_a_reason) {
  struct bad {
    std::string line;
    std::string error;
  };
  const std::vector<bad> cases = {
      {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: signature mismatch"},
      {"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: signature mismatch"},
      {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1: unknown protocol"},
      {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: unknown protocol"},
      {"PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", "v1: unknown protocol"},
      {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: unknown protocol"},
      {"PROXY \r\n", "v1: unknown protocol"},
      {"PROXY UNKNOWN\n", "v1: unknown protocol"},
      {"PROXY UNKNOWNX\r\n", "v1: unknown protocol"},
      {"PROXY UNKNOWN x\ny\r\n", "v1: LF without CR"},
      {"PROXY UNKNOWN\rx\n", "v1: CR without LF"},
      {"PROXY TCP4\r\n", "v1: missing source address"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1: missing destination port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "v1: missing source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1: expected CRLF"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1: expected CRLF"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "v1: CR without LF"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1: bad destination port"},
      {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1: bad destination address"},
      {"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1111.2.3.4 5.6.7.8 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1.2.3.4 5.6.7.300 1 2\r\n", "v1: bad destination address"},
      {"PROXY TCP4 ::1 ::1 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "v1: bad destination address"},
      {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP6 ::1 ::g 1 2\r\n", "v1: bad destination address"},
      {"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP6 :::1 ::1 1 2\r\n", "v1: bad source address"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1: bad source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", "v1: bad source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "v1: bad source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "v1: bad source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "v1: bad source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1: bad source port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n", "v1: bad destination port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", "v1: bad destination port"},
      {std::string("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33), "v1: bad source address"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    EXPECT_EQ(parse_error(text(c.line), proxy_protocol_mode::v1), c.error);
    // `any` picks v1 by the leading 'P'; anything else is not PROXY at all.
    EXPECT_EQ(parse_error(text(c.line), proxy_protocol_mode::any),
              c.line[0] == 'P' ? c.error : "signature mismatch");
  }
}

TEST(proxy_protocol_v1, refuses_a_wrong_prefix_at_once_without_waiting_for_the_crlf) {
  EXPECT_EQ(parse_error(text("G"), proxy_protocol_mode::v1), "v1: signature mismatch");
  EXPECT_EQ(parse_error(text("PROXX"), proxy_protocol_mode::v1), "v1: signature mismatch");
  EXPECT_EQ(proxy::parse(text("PROXY U"), proxy_protocol_mode::v1).status,
            proxy::status::need_more);
  EXPECT_EQ(parse_error(text("PROXY UDP4"), proxy_protocol_mode::v1), "v1: unknown protocol");
  EXPECT_EQ(parse_error(text("PROXY TCP4 1.2.3.4:"), proxy_protocol_mode::v1),
            "v1: bad source address");
  EXPECT_EQ(parse_error(text("PROXY TCP4 1.2.3.4 5.6.7.8 8x"), proxy_protocol_mode::v1),
            "v1: bad source port");
  EXPECT_EQ(parse_error(text("PROXY TCP4 1.2.3.4 5.6.7.8 123456"), proxy_protocol_mode::v1),
            "v1: bad source port");
  EXPECT_EQ(parse_error(text("PROXY TCP4 1234567890123456"), proxy_protocol_mode::v1),
            "v1: bad source address");
}

TEST(proxy_protocol_v1, every_truncation_point_needs_exactly_one_more_byte) {
  for (const char* line :
       {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "PROXY TCP6 2001:db8::1 ::1 0 1\r\n",
        "PROXY UNKNOWN\r\n", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"}) {
    expect_need_more_for_every_prefix(text(line), proxy_protocol_mode::v1);
    expect_need_more_for_every_prefix(text(line), proxy_protocol_mode::any);
  }
}

// ---------------------------------------------------------------------------------------------
// v2

TEST(proxy_protocol_v2, parses_proxy_tcp_over_ipv4_and_leaves_the_payload_alone) {
  // 192.168.0.1:56324 -> 192.168.0.11:443
  const bytes header =
      v2(0x21, 0x11, raw({192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB}));
  ASSERT_EQ(header.size(), 28u);
  const bytes data = header + text("GET / HTTP/1.1\r\n") + signature;
  const auto h = parse_complete(data, proxy_protocol_mode::v2, 28);
  EXPECT_EQ(h.version, proxy::version::v2);
  EXPECT_EQ(h.command, proxy::command::proxy);
  EXPECT_EQ(h.source.to_string(), "192.168.0.1:56324");
  EXPECT_EQ(h.destination.to_string(), "192.168.0.11:443");
  EXPECT_TRUE(h.tlvs().empty());
  parse_complete(data, proxy_protocol_mode::any, 28);
}

TEST(proxy_protocol_v2, parses_proxy_tcp_over_ipv6) {
  bytes body = raw({0x20, 0x01, 0x0D, 0xB8}) + zeros(11) + raw({1});  // 2001:db8::1
  body = body + zeros(15) + raw({1});                                 // ::1
  body = body + raw({0xFF, 0xFF, 0x00, 0x50});                        // 65535 -> 80
  const auto h = parse_complete(v2(0x21, 0x21, body), proxy_protocol_mode::v2, 52);
  EXPECT_EQ(h.command, proxy::command::proxy);
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:65535");
  EXPECT_EQ(h.destination.to_string(), "[::1]:80");
}

TEST(proxy_protocol_v2, parses_proxy_unix_stream_paths_up_to_their_nul) {
  const std::string longest(107, 'p');
  const auto h =
      parse_complete(v2(0x21, 0x31, unix_field("/run/client.sock") + unix_field(longest)),
                     proxy_protocol_mode::v2, 232);
  EXPECT_EQ(h.command, proxy::command::proxy);
  EXPECT_TRUE(h.source.is_unix());
  EXPECT_EQ(h.source.path(), "/run/client.sock");
  EXPECT_EQ(h.destination.path(), longest);

  // An all-NUL field is an unnamed socket; bytes after the NUL are not part of the path.
  bytes with_tail = unix_field("/a");
  with_tail[5] = std::byte{'x'};
  const auto u =
      parse_complete(v2(0x21, 0x31, zeros(108) + with_tail), proxy_protocol_mode::v2, 232);
  EXPECT_TRUE(u.source.is_unix());
  EXPECT_EQ(u.source.path(), "");
  EXPECT_EQ(u.destination.path(), "/a");
}

TEST(proxy_protocol_v2, refuses_unix_addresses_without_a_nul) {
  EXPECT_EQ(parse_error(v2(0x21, 0x31, bytes(108, std::byte{'a'}) + unix_field("/b")),
                        proxy_protocol_mode::v2),
            "v2: unterminated UNIX source address");
  EXPECT_EQ(parse_error(v2(0x21, 0x31, unix_field("/b") + bytes(108, std::byte{'a'})),
                        proxy_protocol_mode::v2),
            "v2: unterminated UNIX destination address");
}

TEST(proxy_protocol_v2, local_has_empty_addresses_even_with_an_address_block_but_keeps_tlvs) {
  const auto h = parse_complete(v2(0x20, 0x00, {}) + text("xyz"), proxy_protocol_mode::v2, 16);
  EXPECT_EQ(h.version, proxy::version::v2);
  EXPECT_EQ(h.command, proxy::command::local);
  EXPECT_TRUE(h.source.empty());
  EXPECT_TRUE(h.destination.empty());

  // §2.2: receivers must not assume LOCAL has length 0.
  const bytes body = raw({10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2}) + tlv_bytes(0x02, text("health"));
  const auto l = parse_complete(v2(0x20, 0x11, body), proxy_protocol_mode::v2, 16 + body.size());
  EXPECT_EQ(l.command, proxy::command::local);
  EXPECT_TRUE(l.source.empty());
  EXPECT_TRUE(l.destination.empty());
  EXPECT_EQ(l.authority(), "health");
  ASSERT_EQ(l.tlvs().size(), 1u);

  // LOCAL skips the address block unread: an unterminated UNIX field is not looked at.
  parse_complete(v2(0x20, 0x31, bytes(216, std::byte{'a'})), proxy_protocol_mode::v2, 232);
}

TEST(proxy_protocol_v2, unspec_family_or_transport_and_dgram_leave_addresses_empty) {
  const bytes inet = raw({10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2});
  for (unsigned fam : {0x00u, 0x01u, 0x02u, 0x10u, 0x12u, 0x20u, 0x30u, 0x32u}) {
    SCOPED_TRACE(fam);
    bytes body;
    if (fam >> 4 == 1) body = inet;
    if (fam >> 4 == 2) body = zeros(36);
    if (fam >> 4 == 3) body = zeros(216);
    body = body + tlv_bytes(0x01, text("h2"));
    const auto h = parse_complete(v2(0x21, fam, body), proxy_protocol_mode::v2, 16 + body.size());
    EXPECT_EQ(h.command, proxy::command::proxy);
    EXPECT_TRUE(h.source.empty());
    EXPECT_TRUE(h.destination.empty());
    EXPECT_EQ(h.alpn(), "h2");
  }
}

TEST(proxy_protocol_v2, parses_every_registered_tlv_type_in_order) {
  bytes ssl_value = raw({0x07, 0x00, 0x00, 0x00, 0x00});  // client: SSL | CERT_CONN | CERT_SESS
  ssl_value = ssl_value + tlv_bytes(0x21, text("TLSv1.3")) + tlv_bytes(0x22, text("example.com")) +
              tlv_bytes(0x23, text("ECDHE-RSA-AES128-GCM-SHA256")) +
              tlv_bytes(0x24, text("RSA-SHA256")) + tlv_bytes(0x25, text("RSA2048")) +
              tlv_bytes(0x2F, text("future")) + tlv_bytes(0x22, text("second-cn-ignored"));
  const std::string id(128, 'i');
  const bytes tlvs = tlv_bytes(0x01, text("h2")) + tlv_bytes(0x02, text("example.org")) +
                     tlv_bytes(0x04, {}) + tlv_bytes(0x04, zeros(5)) + tlv_bytes(0x05, text(id)) +
                     tlv_bytes(0x20, ssl_value) + tlv_bytes(0x30, text("blue")) +
                     tlv_bytes(0xE0, raw({1, 2, 3})) + tlv_bytes(0x01, text("http/1.1"));
  const bytes body = raw({127, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39, 0x01, 0xBB}) + tlvs;
  const auto h = parse_complete(v2(0x21, 0x11, body), proxy_protocol_mode::v2, 16 + body.size());

  const auto all = h.tlvs().to_vector();
  ASSERT_EQ(all.size(), 9u);
  const std::vector<std::uint8_t> types = {0x01, 0x02, 0x04, 0x04, 0x05, 0x20, 0x30, 0xE0, 0x01};
  for (std::size_t i = 0; i < types.size(); ++i) EXPECT_EQ(all[i].type, types[i]) << i;
  EXPECT_EQ(all[0].value, "h2");
  EXPECT_EQ(all[2].value, "");
  EXPECT_EQ(all[3].value, std::string(5, '\0'));
  EXPECT_EQ(all[5].value.size(), ssl_value.size());
  EXPECT_EQ(all[6].value, "blue");
  EXPECT_EQ(all[7].value, "\x01\x02\x03");

  EXPECT_EQ(h.alpn(), "h2");  // the first of each type
  EXPECT_EQ(h.authority(), "example.org");
  EXPECT_EQ(h.unique_id(), id);
  EXPECT_TRUE(h.ssl().present);
  EXPECT_EQ(h.ssl().client, 0x07);
  EXPECT_EQ(h.ssl().verify, 0u);
  EXPECT_EQ(h.ssl().version, "TLSv1.3");
  EXPECT_EQ(h.ssl().common_name, "example.com");
  EXPECT_EQ(h.ssl().cipher, "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_EQ(h.ssl().sig_alg, "RSA-SHA256");
  EXPECT_EQ(h.ssl().key_alg, "RSA2048");
  EXPECT_EQ(h.source.to_string(), "127.0.0.1:12345");
}

TEST(proxy_protocol_v2, ssl_verify_is_big_endian_and_sub_tlvs_are_optional) {
  const bytes body = tlv_bytes(0x20, raw({0x01, 0x00, 0x00, 0x01, 0x02}));
  const auto h = parse_complete(v2(0x21, 0x00, body), proxy_protocol_mode::v2, 16 + body.size());
  EXPECT_TRUE(h.ssl().present);
  EXPECT_EQ(h.ssl().client, 0x01);
  EXPECT_EQ(h.ssl().verify, 0x102u);
  EXPECT_TRUE(h.ssl().version.empty());
}

// The header below with its CRC32C computed by an independent (bitwise) implementation:
// crc32c("123456789") = 0xE3069283 checked there first.
const bytes crc_header = v2(0x21, 0x11,
                            raw({192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB,  //
                                 0x03, 0x00, 0x04, 0x1C, 0x1A, 0xE9, 0xC6}));

TEST(proxy_protocol_v2, accepts_a_matching_crc32c) {
  const auto h = parse_complete(crc_header + text("payload"), proxy_protocol_mode::v2, 35);
  ASSERT_EQ(h.tlvs().size(), 1u);
  const auto crc = h.find(proxy::tlv_type::crc32c);
  ASSERT_TRUE(crc);
  EXPECT_EQ(crc->text(), "\x1C\x1A\xE9\xC6");
}

TEST(proxy_protocol_v2, refuses_a_crc32c_that_does_not_match_any_changed_byte) {
  // The addresses (16..27) and the checksum itself (31..34); the other bytes change the
  // structure and fail otherwise.
  for (std::size_t i = 16; i < crc_header.size(); ++i) {
    if (i >= 28 && i < 31) continue;
    SCOPED_TRACE(i);
    bytes changed = crc_header;
    changed[i] ^= std::byte{0x01};
    EXPECT_EQ(parse_error(changed, proxy_protocol_mode::v2), "v2: CRC32C mismatch");
  }
}

TEST(proxy_protocol_v2, refuses_a_malformed_or_repeated_crc32c_tlv) {
  const bytes inet = raw({1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2});
  EXPECT_EQ(parse_error(v2(0x21, 0x11, inet + tlv_bytes(0x03, zeros(3))), proxy_protocol_mode::v2),
            "v2: CRC32C TLV is not 4 bytes");
  EXPECT_EQ(parse_error(v2(0x21, 0x11, inet + tlv_bytes(0x03, zeros(5))), proxy_protocol_mode::v2),
            "v2: CRC32C TLV is not 4 bytes");
  EXPECT_EQ(
      parse_error(v2(0x21, 0x11, inet + tlv_bytes(0x03, zeros(4)) + tlv_bytes(0x03, zeros(4))),
                  proxy_protocol_mode::v2),
      "v2: more than one CRC32C TLV");
}

TEST(proxy_protocol_v2, refuses_each_malformed_header_with_a_reason) {
  const bytes inet = raw({1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2});
  struct bad {
    const char* what;
    bytes data;
    std::string error;
  };
  bytes ssl_short = tlv_bytes(0x20, raw({1, 0, 0, 0}));
  const std::vector<bad> cases = {
      {"version 1", v2(0x11, 0x11, inet), "v2: unsupported version 1"},
      {"version 3", v2(0x31, 0x11, inet), "v2: unsupported version 3"},
      {"version 0", v2(0x01, 0x11, inet), "v2: unsupported version 0"},
      {"command 2", v2(0x22, 0x11, inet), "v2: unsupported command 2"},
      {"command 15", v2(0x2F, 0x11, inet), "v2: unsupported command 15"},
      {"family 4", v2(0x21, 0x41, inet), "v2: unsupported family 4"},
      {"transport 3", v2(0x21, 0x13, inet), "v2: unsupported transport 3"},
      {"inet block short", v2(0x21, 0x11, zeros(11)),
       "v2: length 11 too short for the address family"},
      {"inet6 block short", v2(0x21, 0x21, zeros(35)),
       "v2: length 35 too short for the address family"},
      {"unix block short", v2(0x21, 0x31, zeros(215)),
       "v2: length 215 too short for the address family"},
      {"local inet block short", v2(0x20, 0x11, {}),
       "v2: length 0 too short for the address family"},
      {"1 byte after addresses", v2(0x21, 0x11, inet + raw({4})), "v2: truncated TLV"},
      {"2 bytes after addresses", v2(0x21, 0x11, inet + raw({4, 0})), "v2: truncated TLV"},
      {"TLV overruns", v2(0x21, 0x11, inet + raw({4, 0, 2, 0})), "v2: TLV overruns the header"},
      {"TLV overruns by lots", v2(0x21, 0x00, raw({1, 0xFF, 0xFF})), "v2: TLV overruns the header"},
      {"unique id 129", v2(0x21, 0x11, inet + tlv_bytes(0x05, zeros(129))),
       "v2: UNIQUE_ID TLV over 128 bytes"},
      {"SSL under 5 bytes", v2(0x21, 0x11, inet + ssl_short), "v2: malformed SSL TLV"},
      {"SSL sub-TLV truncated",
       v2(0x21, 0x11, inet + tlv_bytes(0x20, raw({1, 0, 0, 0, 0, 0x21, 0}))),
       "v2: malformed SSL TLV"},
      {"SSL sub-TLV overruns",
       v2(0x21, 0x11, inet + tlv_bytes(0x20, raw({1, 0, 0, 0, 0, 0x21, 0, 3, 'a', 'b'}))),
       "v2: malformed SSL TLV"},
      {"second SSL malformed",
       v2(0x21, 0x11, inet + tlv_bytes(0x20, zeros(5)) + tlv_bytes(0x20, zeros(1))),
       "v2: malformed SSL TLV"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(parse_error(c.data, proxy_protocol_mode::v2), c.error);
    EXPECT_EQ(parse_error(c.data, proxy_protocol_mode::any), c.error);
  }
}

TEST(proxy_protocol_v2, refuses_a_bad_fixed_part_as_soon_as_the_byte_arrives) {
  // Each signature byte changed: invalid with only that many bytes in.
  for (std::size_t i = 0; i < 12; ++i) {
    SCOPED_TRACE(i);
    bytes prefix(signature.begin(), signature.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    prefix[i] ^= std::byte{0x20};
    EXPECT_EQ(parse_error(prefix, proxy_protocol_mode::v2), "v2: signature mismatch");
  }
  EXPECT_EQ(parse_error(signature + raw({0x31}), proxy_protocol_mode::v2),
            "v2: unsupported version 3");
  EXPECT_EQ(parse_error(signature + raw({0x21, 0x51}), proxy_protocol_mode::v2),
            "v2: unsupported family 5");
  // The length is checked against the family before waiting for the body.
  EXPECT_EQ(parse_error(signature + raw({0x21, 0x21, 0x00, 0x10}), proxy_protocol_mode::v2),
            "v2: length 16 too short for the address family");
}

TEST(proxy_protocol_v2, every_truncation_point_needs_16_then_exactly_the_header_length) {
  const bytes inet = raw({1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2});
  expect_need_more_for_every_prefix(crc_header, proxy_protocol_mode::v2);
  expect_need_more_for_every_prefix(crc_header, proxy_protocol_mode::any);
  expect_need_more_for_every_prefix(v2(0x20, 0x00, {}), proxy_protocol_mode::v2);
  expect_need_more_for_every_prefix(v2(0x21, 0x31, unix_field("/x") + unix_field("/y")),
                                    proxy_protocol_mode::v2);
  expect_need_more_for_every_prefix(
      v2(0x21, 0x11, inet + tlv_bytes(0x20, zeros(5) + tlv_bytes(0x21, text("TLSv1.2")))),
      proxy_protocol_mode::any);
}

TEST(proxy_protocol_v2, the_longest_header_needs_65551_bytes) {
  const bytes header = v2(0x21, 0x00, tlv_bytes(0x04, zeros(65535 - 3)));
  ASSERT_EQ(header.size(), proxy::max_v2_header_size);
  const auto r = proxy::parse(std::span{header}.first(16), proxy_protocol_mode::v2);
  EXPECT_EQ(r.status, proxy::status::need_more);
  EXPECT_EQ(r.needed, 65551u);
  parse_complete(header, proxy_protocol_mode::v2, 65551);
}

// ---------------------------------------------------------------------------------------------
// TLV caps and retained memory

// `count` TLVs of `type` with empty values: 3 bytes each on the wire.
bytes empty_tlvs(std::size_t count, unsigned type = 0x04) {
  bytes out;
  for (std::size_t i = 0; i < count; ++i) out.insert(out.end(), {std::byte(type), {}, {}});
  return out;
}

const bytes inet_block = raw({10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x01, 0xBB});

// Heap bytes still held once `parse` has returned a complete header and everything but the
// header is gone (what a connection keeps for its life), plus the header object itself.
std::size_t retained_after_parse(const bytes& data, const proxy::tlv_limits& limits = {}) {
  std::optional<proxy::header> kept;
  const std::size_t before = atl::test::heap_in_use();
  {
    auto r = proxy::parse(data, proxy_protocol_mode::v2, limits);
    EXPECT_EQ(r.status, proxy::status::complete) << r.error;
    kept = std::move(r.hdr);
  }
  return atl::test::heap_in_use() - before + sizeof(proxy::header);
}

// "A small constant" over the header's own bytes: the header object and allocator slack.
constexpr std::size_t retained_overhead = 512;

TEST(proxy_protocol_tlv_caps, a_65_kb_header_of_empty_tlvs_is_refused_not_kept) {
  // The attack: 21845 empty NOOP TLVs fill the largest v2 header. One `tlv` object each
  // pinned ~1 MiB per connection for its life; now it is past the count cap.
  const bytes attack = v2(0x21, 0x00, empty_tlvs(21845));
  ASSERT_EQ(attack.size(), proxy::max_v2_header_size);
  EXPECT_EQ(parse_error(attack, proxy_protocol_mode::v2), "v2: more than 128 TLVs");
  EXPECT_EQ(parse_error(attack, proxy_protocol_mode::any), "v2: more than 128 TLVs");
}

TEST(proxy_protocol_tlv_caps, a_header_keeps_no_more_than_its_own_bytes_plus_a_constant) {
  // 128 empty TLVs (the most allowed): 412 bytes on the wire.
  const bytes at_cap = v2(0x21, 0x11, inet_block + empty_tlvs(128, 0xE0));
  ASSERT_EQ(at_cap.size(), 412u);
  EXPECT_LE(retained_after_parse(at_cap), at_cap.size() + retained_overhead);

  // Without the count cap the bound still holds for the largest header: memory follows the
  // bytes on the wire, not the number of TLVs in them.
  const bytes flood = v2(0x21, 0x00, empty_tlvs(21845));
  const proxy::tlv_limits no_count_cap{.max_count = 21845};
  EXPECT_LE(retained_after_parse(flood, no_count_cap), flood.size() + retained_overhead);
  const auto r = proxy::parse(flood, proxy_protocol_mode::v2, no_count_cap);
  ASSERT_EQ(r.status, proxy::status::complete) << r.error;
  EXPECT_EQ(r.hdr.tlvs().size(), 21845u);
}

TEST(proxy_protocol_tlv_caps, retained_bytes_is_the_header_object_and_exactly_its_tlv_bytes) {
  const bytes tlvs = tlv_bytes(0x01, text("h2")) + empty_tlvs(10);
  const auto h = parse_complete(v2(0x21, 0x11, inet_block + tlvs), proxy_protocol_mode::v2,
                                16 + 12 + tlvs.size());
  EXPECT_EQ(h.retained_bytes(), sizeof(proxy::header) + tlvs.size());
  EXPECT_TRUE(std::ranges::equal(h.tlv_bytes(), tlvs)) << "the TLVs as on the wire";
  // A copy (what a handler that keeps the header holds) is as small.
  const proxy::header copy = h;
  EXPECT_EQ(copy.retained_bytes(), h.retained_bytes());
  // v1 and TLV-less v2 headers keep nothing beyond the object.
  EXPECT_EQ(parse_complete(text("PROXY UNKNOWN\r\n"), proxy_protocol_mode::v1, 15).retained_bytes(),
            sizeof(proxy::header));
  EXPECT_EQ(parse_complete(v2(0x20, 0x00, {}), proxy_protocol_mode::v2, 16).retained_bytes(),
            sizeof(proxy::header));
}

TEST(proxy_protocol_tlv_caps, one_tlv_past_the_count_cap_is_refused_with_a_clear_error) {
  parse_complete(v2(0x21, 0x11, inet_block + empty_tlvs(128)), proxy_protocol_mode::v2,
                 16 + 12 + 3 * 128);
  EXPECT_EQ(parse_error(v2(0x21, 0x11, inet_block + empty_tlvs(129)), proxy_protocol_mode::v2),
            "v2: more than 128 TLVs");

  // Each SSL sub-TLV counts as one more: header::ssl() walks them.
  const auto ssl_with = [](std::size_t subs) {
    return tlv_bytes(0x20, zeros(5) + empty_tlvs(subs, 0x2F));
  };
  parse_complete(v2(0x21, 0x00, ssl_with(127)), proxy_protocol_mode::v2, 16 + 3 + 5 + 3 * 127);
  EXPECT_EQ(parse_error(v2(0x21, 0x00, ssl_with(128)), proxy_protocol_mode::v2),
            "v2: more than 128 TLVs");

  // The cap is a parameter.
  const proxy::tlv_limits two{.max_count = 2};
  EXPECT_EQ(proxy::parse(v2(0x21, 0x00, empty_tlvs(2)), proxy_protocol_mode::v2, two).status,
            proxy::status::complete);
  const auto r = proxy::parse(v2(0x21, 0x00, empty_tlvs(3)), proxy_protocol_mode::any, two);
  EXPECT_EQ(r.status, proxy::status::invalid);
  EXPECT_EQ(r.error, "v2: more than 2 TLVs");
}

TEST(proxy_protocol_tlv_caps, tlv_bytes_past_max_bytes_are_refused_once_the_length_is_in) {
  const proxy::tlv_limits small{.max_bytes = 64};
  // 64 bytes of TLVs after an IPv4 block: fine, and waited for.
  const bytes fits = v2(0x21, 0x11, inet_block + tlv_bytes(0xE0, zeros(61)));
  const auto partial = proxy::parse(std::span{fits}.first(16), proxy_protocol_mode::v2, small);
  EXPECT_EQ(partial.status, proxy::status::need_more);
  EXPECT_EQ(partial.needed, fits.size());
  EXPECT_EQ(proxy::parse(fits, proxy_protocol_mode::v2, small).status, proxy::status::complete);
  // One byte more is refused from the 16-byte fixed part alone, before the body is buffered.
  const bytes over = v2(0x21, 0x11, inet_block + tlv_bytes(0xE0, zeros(62)));
  const auto r = proxy::parse(std::span{over}.first(16), proxy_protocol_mode::v2, small);
  EXPECT_EQ(r.status, proxy::status::invalid);
  EXPECT_EQ(r.error, "v2: 65 bytes of TLVs over the limit of 64");
}

TEST(proxy_protocol_tlv_views, read_each_registered_type_in_place) {
  const bytes ssl_value = raw({0x03, 0x00, 0x00, 0x00, 0x00}) + tlv_bytes(0x21, text("TLSv1.2")) +
                          tlv_bytes(0x2F, text("future")) + tlv_bytes(0x22, text("client.example"));
  const std::vector<proxy::tlv> tlvs = {
      {proxy::tlv_type::alpn, "http/1.1"},
      {proxy::tlv_type::authority, "svc.example"},
      {proxy::tlv_type::crc32c, ""},  // build_v2 writes the checksum
      {proxy::tlv_type::unique_id, "id-7"},
      {proxy::tlv_type::ssl,
       std::string(reinterpret_cast<const char*>(ssl_value.data()), ssl_value.size())},
      {proxy::tlv_type::netns, "ns1"},
  };
  const auto built = proxy::build_v2(proxy::command::proxy, ip_endpoint("10.0.0.1", 12345),
                                     ip_endpoint("10.0.0.2", 443), tlvs);
  const auto h = parse_complete(built, proxy_protocol_mode::v2, built.size());

  const auto block = h.tlv_bytes();
  const auto inside = [&](std::span<const std::byte> v) {
    return v.data() >= block.data() && v.data() + v.size() <= block.data() + block.size();
  };
  const std::vector<std::uint8_t> types = {0x01, 0x02, 0x03, 0x05, 0x20, 0x30};
  std::size_t i = 0;
  for (const proxy::tlv_view t : h.tlvs()) {
    ASSERT_LT(i, types.size());
    EXPECT_EQ(t.type, types[i++]);
    EXPECT_TRUE(inside(t.value)) << "a view into the header's one block, not a copy";
  }
  EXPECT_EQ(i, types.size());

  EXPECT_EQ(h.alpn(), "http/1.1");
  EXPECT_EQ(h.authority(), "svc.example");
  EXPECT_EQ(h.unique_id(), "id-7");
  ASSERT_TRUE(h.find(proxy::tlv_type::crc32c));
  EXPECT_EQ(h.find(proxy::tlv_type::crc32c)->value.size(), 4u);
  ASSERT_TRUE(h.find(proxy::tlv_type::netns));
  EXPECT_EQ(h.find(proxy::tlv_type::netns)->text(), "ns1");
  EXPECT_FALSE(h.find(proxy::tlv_type::noop));
  EXPECT_FALSE(h.find(0xE0));

  const proxy::ssl_info ssl = h.ssl();
  EXPECT_TRUE(ssl.present);
  EXPECT_EQ(ssl.client, 0x03);
  EXPECT_EQ(ssl.version, "TLSv1.2");
  EXPECT_EQ(ssl.common_name, "client.example");
  EXPECT_TRUE(ssl.cipher.empty());
  // Every sub-TLV, unknown ones included, through a range over the SSL value.
  const auto ssl_tlv = h.find(proxy::tlv_type::ssl);
  ASSERT_TRUE(ssl_tlv);
  const proxy::tlv_range subs{ssl_tlv->value.subspan(5)};
  EXPECT_EQ(subs.size(), 3u);
  ASSERT_TRUE(subs.find(0x2F));
  EXPECT_EQ(subs.find(0x2F)->text(), "future");

  // A copy's views are into the copy: the original can go.
  std::optional<proxy::header> original = h;
  const proxy::header copy = *original;
  original.reset();
  EXPECT_EQ(copy.alpn(), "http/1.1");
  EXPECT_EQ(copy.ssl(), ssl);
  EXPECT_EQ(copy.tlvs().to_vector(), h.tlvs().to_vector());
}

TEST(proxy_protocol_tlv_views, zero_length_tlvs_are_kept_and_found_within_the_caps) {
  // The first of each type wins, even when it is empty: `find` tells empty from absent.
  const bytes body = tlv_bytes(0x01, {}) + tlv_bytes(0x01, text("h2")) + tlv_bytes(0x02, {}) +
                     tlv_bytes(0x05, {}) + tlv_bytes(0x20, zeros(5) + tlv_bytes(0x21, {})) +
                     empty_tlvs(122, 0xE1);
  const auto h = parse_complete(v2(0x21, 0x00, body), proxy_protocol_mode::v2, 16 + body.size());
  EXPECT_EQ(h.tlvs().size(), 127u);  // + 1 SSL sub-TLV = 128, the cap
  ASSERT_TRUE(h.find(proxy::tlv_type::alpn));
  EXPECT_TRUE(h.find(proxy::tlv_type::alpn)->value.empty());
  EXPECT_EQ(h.alpn(), "");
  EXPECT_EQ(h.authority(), "");
  EXPECT_TRUE(h.find(proxy::tlv_type::unique_id));
  EXPECT_FALSE(h.find(proxy::tlv_type::netns));
  EXPECT_TRUE(h.ssl().present);
  EXPECT_EQ(h.ssl().version, "");
  EXPECT_EQ(h.find(0xE1)->type, 0xE1);
  EXPECT_EQ(h.retained_bytes(), sizeof(proxy::header) + body.size());
}

TEST(proxy_protocol_tlv_views, a_range_over_other_bytes_stops_before_a_tlv_that_overruns) {
  EXPECT_TRUE(proxy::tlv_range{}.empty());
  const bytes ok_then_bad = tlv_bytes(0x01, text("a")) + raw({0x02, 0x00, 0x05, 'x'});
  const proxy::tlv_range r{ok_then_bad};
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ((*r.begin()).text(), "a");
  EXPECT_FALSE(r.find(0x02));
  EXPECT_TRUE(proxy::tlv_range{std::span{ok_then_bad}.first(2)}.empty());
}

// ---------------------------------------------------------------------------------------------
// Modes

TEST(proxy_protocol_modes, refuses_the_other_version_and_other_protocols) {
  const bytes v1_line = text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
  EXPECT_EQ(parse_error(v1_line, proxy_protocol_mode::v2), "v2: signature mismatch");
  EXPECT_EQ(parse_error(crc_header, proxy_protocol_mode::v1), "v1: signature mismatch");
  EXPECT_EQ(parse_error(text("GET / HTTP/1.1\r\n"), proxy_protocol_mode::any),
            "signature mismatch");
  EXPECT_EQ(parse_error(raw({0x16, 0x03, 0x01}), proxy_protocol_mode::any), "signature mismatch");
  EXPECT_EQ(parse_error(v1_line, proxy_protocol_mode::off), "PROXY protocol mode is off");
  EXPECT_EQ(parse_error({}, proxy_protocol_mode::off), "PROXY protocol mode is off");
}

TEST(proxy_protocol_modes, empty_input_needs_more) {
  EXPECT_EQ(proxy::parse({}, proxy_protocol_mode::v1).needed, 1u);
  EXPECT_EQ(proxy::parse({}, proxy_protocol_mode::v2).needed, 16u);
  EXPECT_EQ(proxy::parse({}, proxy_protocol_mode::any).needed, 1u);
  for (auto mode : {proxy_protocol_mode::v1, proxy_protocol_mode::v2, proxy_protocol_mode::any}) {
    EXPECT_EQ(proxy::parse({}, mode).status, proxy::status::need_more);
  }
}

// ---------------------------------------------------------------------------------------------
// Builders

TEST(proxy_protocol_build, build_v1_writes_the_spec_line_and_parses_back) {
  const auto line = proxy::build_v1(ip_endpoint("192.168.0.1", 56324), ip_endpoint("192.168.0.11", 443));
  EXPECT_EQ(line, text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));

  const auto six = proxy::build_v1(ip_endpoint("2001:db8::1", 1), ip_endpoint("::ffff:10.0.0.1", 65535));
  EXPECT_EQ(six, text("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\n"));
  const auto h = parse_complete(six, proxy_protocol_mode::v1, six.size());
  EXPECT_EQ(h.source.to_string(), "[2001:db8::1]:1");
  EXPECT_EQ(h.destination.to_string(), "[::ffff:10.0.0.1]:65535");
}

TEST(proxy_protocol_build, build_v1_writes_unknown_when_families_differ_or_are_not_ip) {
  const bytes unknown = text("PROXY UNKNOWN\r\n");
  EXPECT_EQ(proxy::build_v1(ip_endpoint("1.2.3.4", 1), ip_endpoint("::1", 2)), unknown);
  EXPECT_EQ(proxy::build_v1(unix_endpoint("/a"), unix_endpoint("/b")), unknown);
  EXPECT_EQ(proxy::build_v1({}, {}), unknown);
  EXPECT_EQ(proxy::parse(unknown, proxy_protocol_mode::v1).hdr.command, proxy::command::local);
}

TEST(proxy_protocol_build, build_v2_matches_a_hand_built_header_and_its_crc) {
  const std::vector<proxy::tlv> tlvs = {{proxy::tlv_type::crc32c, "ignored"}};
  EXPECT_EQ(proxy::build_v2(proxy::command::proxy, ip_endpoint("192.168.0.1", 56324),
                            ip_endpoint("192.168.0.11", 443), tlvs),
            crc_header);
  EXPECT_EQ(proxy::build_v2(proxy::command::local, ip_endpoint("192.168.0.1", 1), ip_endpoint("192.168.0.11", 2)),
            v2(0x20, 0x00, {}));
}

TEST(proxy_protocol_build, build_v2_round_trips_every_family_with_tlvs) {
  const std::vector<proxy::tlv> tlvs = {
      {proxy::tlv_type::alpn, "h2"},
      {proxy::tlv_type::authority, "example.com"},
      {proxy::tlv_type::unique_id, std::string(128, '\xAB')},
      {proxy::tlv_type::ssl, std::string("\x05\0\0\0\x09\x21\0\x07TLSv1.3", 15)},
      {proxy::tlv_type::netns, "ns"},
      {proxy::tlv_type::crc32c, ""},
      {proxy::tlv_type::noop, std::string(3, '\0')},
  };
  const std::vector<std::pair<atl::endpoint, atl::endpoint>> pairs = {
      {ip_endpoint("10.0.0.1", 1234), ip_endpoint("10.0.0.2", 80)},
      {ip_endpoint("2001:db8::5", 0), ip_endpoint("fe80::1", 65535)},
      {unix_endpoint("/run/src.sock"), unix_endpoint(std::string(107, 'd'))},
  };
  for (const auto& [src, dst] : pairs) {
    SCOPED_TRACE(src.to_string());
    const auto built = proxy::build_v2(proxy::command::proxy, src, dst, tlvs);
    const auto h = parse_complete(built + text("rest"), proxy_protocol_mode::any, built.size());
    EXPECT_EQ(h.command, proxy::command::proxy);
    EXPECT_EQ(h.source.family(), src.family());
    EXPECT_EQ(h.source.to_string(), src.to_string());
    EXPECT_EQ(h.destination.to_string(), dst.to_string());
    const auto parsed = h.tlvs().to_vector();
    ASSERT_EQ(parsed.size(), tlvs.size());
    for (std::size_t i = 0; i < tlvs.size(); ++i) {
      EXPECT_EQ(parsed[i].type, tlvs[i].type);
      if (tlvs[i].type != proxy::tlv_type::crc32c) {
        EXPECT_EQ(parsed[i].value, tlvs[i].value);
      }
    }
    EXPECT_EQ(parsed[5].value.size(), 4u);
    EXPECT_EQ(h.alpn(), "h2");
    EXPECT_EQ(h.authority(), "example.com");
    EXPECT_EQ(h.unique_id(), tlvs[2].value);
    EXPECT_EQ(h.ssl().client, 0x05);
    EXPECT_EQ(h.ssl().verify, 9u);
    EXPECT_EQ(h.ssl().version, "TLSv1.3");
  }
}

TEST(proxy_protocol_build, build_v2_sends_unspec_for_mixed_or_unrepresentable_endpoints) {
  for (const auto& [src, dst] : std::vector<std::pair<atl::endpoint, atl::endpoint>>{
           {ip_endpoint("1.2.3.4", 1), ip_endpoint("::1", 2)},
           {atl::endpoint{}, atl::endpoint{}},
           {unterminated_unix_path(), unix_endpoint("/b")},
       }) {
    const auto built = proxy::build_v2(proxy::command::proxy, src, dst);
    EXPECT_EQ(built, v2(0x21, 0x00, {}));
    const auto h = parse_complete(built, proxy_protocol_mode::v2, 16);
    EXPECT_EQ(h.command, proxy::command::proxy);
    EXPECT_TRUE(h.source.empty());
  }
  // Unnamed Unix sockets are sent as all-zero fields.
  sockaddr_un unnamed{};
  unnamed.sun_family = AF_UNIX;
  const atl::endpoint u{reinterpret_cast<const sockaddr*>(&unnamed), sizeof(sa_family_t)};
  EXPECT_EQ(proxy::build_v2(proxy::command::proxy, u, u), v2(0x21, 0x31, zeros(216)));
}

TEST(proxy_protocol_build, build_v2_throws_when_the_header_cannot_be_encoded) {
  const atl::endpoint none;
  const std::vector<proxy::tlv> too_long_value = {{0x04, std::string(65536, 'x')}};
  EXPECT_THROW(proxy::build_v2(proxy::command::local, none, none, too_long_value),
               std::length_error);
  const std::vector<proxy::tlv> fits = {{0x04, std::string(65535 - 3, 'x')}};
  EXPECT_EQ(proxy::build_v2(proxy::command::local, none, none, fits).size(), 65551u);
  const std::vector<proxy::tlv> one_over = {{0x04, std::string(65535 - 2, 'x')}};
  EXPECT_THROW(proxy::build_v2(proxy::command::local, none, none, one_over), std::length_error);
  const std::vector<proxy::tlv> two_crcs = {{0x03, ""}, {0x03, ""}};
  EXPECT_THROW(proxy::build_v2(proxy::command::local, none, none, two_crcs), std::invalid_argument);
}

}  // namespace
