// libFuzzer target: the PROXY protocol header parser (v1 text, v2 binary) in a fuzzer-chosen
// mode. Whatever the bytes: no crash, nothing read past the input, a self-consistent result
// (need_more asks for more than it has, complete fits in the input); a complete header parses
// the same without the bytes after it, is incomplete one byte short, keeps exactly its TLV
// bytes and at most 128 TLVs, and rebuilt with build_v2 (and build_v1) parses back to the
// same addresses and TLVs. Tighter, fuzzer-chosen `tlv_limits` only ever refuse more.
#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

#include "atoll/proxy_protocol.hpp"
#include "fuzz_support.hpp"

namespace {

namespace proxy = atl::proxy;
using atl::proxy_protocol_mode;

bool same_endpoint(const atl::endpoint& a, const atl::endpoint& b) {
  return a.family() == b.family() && a.to_string() == b.to_string();
}

bool same_addresses(const proxy::header& a, const proxy::header& b) {
  return same_endpoint(a.source, b.source) && same_endpoint(a.destination, b.destination);
}

// Equal TLVs, except the CRC32C value: build_v2 recomputes it for the header it writes.
bool same_tlvs(proxy::tlv_range a, proxy::tlv_range b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const proxy::tlv_view& x, const proxy::tlv_view& y) {
                      return x.type == y.type && (x.type == proxy::tlv_type::crc32c || x == y);
                    });
}

// The header keeps its TLV bytes exactly, once, and its TLVs are views that tile them.
void check_tlv_block(const proxy::header& h, std::span<const std::byte> data) {
  const auto block = h.tlv_bytes();
  ATOLL_FUZZ_CHECK(h.retained_bytes() == sizeof(proxy::header) + block.size());
  if (h.version == proxy::version::v1) {
    ATOLL_FUZZ_CHECK(block.empty() && h.tlvs().empty());
    return;
  }
  ATOLL_FUZZ_CHECK(block.size() <= h.header_length - proxy::v2_fixed_size);
  ATOLL_FUZZ_CHECK(std::ranges::equal(block, data.first(h.header_length).last(block.size())));
  std::size_t count = 0;
  const std::byte* next = block.data();
  for (const proxy::tlv_view t : h.tlvs()) {
    ATOLL_FUZZ_CHECK(t.value.data() == next + 3);
    next = t.value.data() + t.value.size();
    ++count;
  }
  ATOLL_FUZZ_CHECK(next == block.data() + block.size());
  ATOLL_FUZZ_CHECK(count == h.tlvs().size() && count <= proxy::tlv_limits{}.max_count);
}

void check_complete(const proxy::header& h, std::span<const std::byte> data,
                    proxy_protocol_mode mode) {
  ATOLL_FUZZ_CHECK(h.header_length <= data.size());
  if (h.version == proxy::version::v1) {
    ATOLL_FUZZ_CHECK(mode != proxy_protocol_mode::v2);
    ATOLL_FUZZ_CHECK(h.header_length >= 15 && h.header_length <= proxy::max_v1_header_size);
  } else {
    ATOLL_FUZZ_CHECK(mode != proxy_protocol_mode::v1);
    ATOLL_FUZZ_CHECK(h.header_length >= proxy::v2_fixed_size);
  }
  ATOLL_FUZZ_CHECK(h.source.family() == h.destination.family());
  if (h.command == proxy::command::local) ATOLL_FUZZ_CHECK(h.source.empty());
  ATOLL_FUZZ_CHECK(h.unique_id().size() <= proxy::max_unique_id_size);
  check_tlv_block(h, data);

  // Bytes after the header are never looked at; a valid header is never refused early.
  const auto alone = proxy::parse(data.first(h.header_length), mode);
  ATOLL_FUZZ_CHECK(alone.status == proxy::status::complete);
  ATOLL_FUZZ_CHECK(alone.hdr.header_length == h.header_length);
  ATOLL_FUZZ_CHECK(alone.hdr.command == h.command && same_addresses(alone.hdr, h));
  ATOLL_FUZZ_CHECK(std::ranges::equal(alone.hdr.tlv_bytes(), h.tlv_bytes()));
  const auto short_by_one = proxy::parse(data.first(h.header_length - 1), mode);
  ATOLL_FUZZ_CHECK(short_by_one.status == proxy::status::need_more);
  ATOLL_FUZZ_CHECK(short_by_one.needed <= h.header_length);

  // build_v2(parse(x)) parses back equal (it can only be shorter: unused address blocks go).
  const auto v2 = proxy::build_v2(h.command, h.source, h.destination, h.tlvs().to_vector());
  ATOLL_FUZZ_CHECK(v2.size() <= h.header_length || h.version == proxy::version::v1);
  const auto back = proxy::parse(v2, proxy_protocol_mode::v2);
  ATOLL_FUZZ_CHECK(back.status == proxy::status::complete);
  ATOLL_FUZZ_CHECK(back.hdr.header_length == v2.size());
  ATOLL_FUZZ_CHECK(back.hdr.version == proxy::version::v2);
  ATOLL_FUZZ_CHECK(back.hdr.command == h.command);
  ATOLL_FUZZ_CHECK(same_addresses(back.hdr, h));
  ATOLL_FUZZ_CHECK(same_tlvs(back.hdr.tlvs(), h.tlvs()));
  ATOLL_FUZZ_CHECK(back.hdr.alpn() == h.alpn() && back.hdr.authority() == h.authority());
  ATOLL_FUZZ_CHECK(back.hdr.unique_id() == h.unique_id() && back.hdr.ssl() == h.ssl());

  // build_v1 carries IP addresses; anything else becomes UNKNOWN (= local, no addresses).
  const auto v1 = proxy::build_v1(h.source, h.destination);
  const auto back1 = proxy::parse(v1, proxy_protocol_mode::v1);
  ATOLL_FUZZ_CHECK(back1.status == proxy::status::complete);
  ATOLL_FUZZ_CHECK(back1.hdr.header_length == v1.size());
  if (h.source.is_ip()) {
    ATOLL_FUZZ_CHECK(back1.hdr.command == proxy::command::proxy);
    ATOLL_FUZZ_CHECK(same_addresses(back1.hdr, h));
  } else {
    ATOLL_FUZZ_CHECK(back1.hdr.command == proxy::command::local);
    ATOLL_FUZZ_CHECK(back1.hdr.source.empty() && back1.hdr.destination.empty());
  }
}

// The same bytes under tighter limits: the same outcome, or refused for the TLVs.
void check_tighter_limits(const proxy::result& r, std::span<const std::byte> data,
                          proxy_protocol_mode mode, std::uint8_t choice) {
  const proxy::tlv_limits tight{.max_count = static_cast<std::size_t>(choice >> 2 & 0x0F),
                                .max_bytes = static_cast<std::size_t>(choice >> 6) * 64};
  const auto t = proxy::parse(data, mode, tight);
  if (t.status == proxy::status::invalid) {
    ATOLL_FUZZ_CHECK(r.status == proxy::status::invalid ||
                     std::string_view(t.error).find(" TLVs") != std::string_view::npos);
    return;
  }
  ATOLL_FUZZ_CHECK(t.status == r.status && t.needed == r.needed);
  if (t.status == proxy::status::complete) {
    ATOLL_FUZZ_CHECK(t.hdr.tlvs().size() <= tight.max_count);
    ATOLL_FUZZ_CHECK(t.hdr.tlv_bytes().size() <= tight.max_bytes);
    ATOLL_FUZZ_CHECK(std::ranges::equal(t.hdr.tlv_bytes(), r.hdr.tlv_bytes()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  atoll_fuzz::input in{data, size};
  // First byte: its value % 3 picks the mode, 0 v1, 1 v2, 2 any (the seeds use 0..2); its
  // high bits pick the tighter limits of check_tighter_limits.
  const std::uint8_t choice = in.take_byte();
  const auto mode = static_cast<proxy_protocol_mode>(1 + choice % 3);
  // A copy of exactly the input's size, so ASan catches any read past it.
  const auto rest = in.rest();
  const std::vector<std::byte> bytes(rest.begin(), rest.end());

  const auto r = proxy::parse(bytes, mode);
  switch (r.status) {
    case proxy::status::need_more:
      ATOLL_FUZZ_CHECK(r.error.empty());
      ATOLL_FUZZ_CHECK(r.needed > bytes.size());
      ATOLL_FUZZ_CHECK(r.needed <= proxy::max_header_size);
      if (mode == proxy_protocol_mode::v1) {
        ATOLL_FUZZ_CHECK(r.needed == bytes.size() + 1);
        ATOLL_FUZZ_CHECK(r.needed <= proxy::max_v1_header_size);
      }
      if (mode == proxy_protocol_mode::v2) {
        ATOLL_FUZZ_CHECK(bytes.size() < proxy::v2_fixed_size ? r.needed == proxy::v2_fixed_size
                                                             : r.needed > proxy::v2_fixed_size);
      }
      break;
    case proxy::status::invalid:
      ATOLL_FUZZ_CHECK(!r.error.empty());
      ATOLL_FUZZ_CHECK(r.needed == 0);
      break;
    case proxy::status::complete:
      ATOLL_FUZZ_CHECK(r.error.empty());
      ATOLL_FUZZ_CHECK(r.needed == r.hdr.header_length);
      check_complete(r.hdr, bytes, mode);
      break;
  }
  check_tighter_limits(r, bytes, mode, choice);
  return 0;
}
