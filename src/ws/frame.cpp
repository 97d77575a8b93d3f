#include "atoll/ws/frame.hpp"

#include <algorithm>
#include <cstring>

#include "atoll/ws/error.hpp"

namespace atl::ws {
namespace {

constexpr bool is_reserved(unsigned op) noexcept {
  // RFC 6455 §5.2: 0x3-0x7 are reserved for further non-control frames, 0xB-0xF for further
  // control frames.
  return (op >= 0x3 && op <= 0x7) || op >= 0xb;
}

unsigned byte_at(const std::array<std::byte, max_frame_header_size>& b, std::size_t i) noexcept {
  return std::to_integer<unsigned>(b[i]);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Header parser

void frame_parser::reset() noexcept {
  header_ = {};
  have_ = 0;
  need_ = 2;
  error_.clear();
}

std::error_code frame_parser::check_first_bytes() noexcept {
  const unsigned b0 = byte_at(buf_, 0);
  const unsigned b1 = byte_at(buf_, 1);
  header_ = {};
  header_.fin = (b0 & 0x80) != 0;
  header_.rsv1 = (b0 & 0x40) != 0;
  header_.rsv2 = (b0 & 0x20) != 0;
  header_.rsv3 = (b0 & 0x10) != 0;
  const unsigned op = b0 & 0x0f;
  header_.op = static_cast<opcode>(op);
  header_.masked = (b1 & 0x80) != 0;
  const unsigned len7 = b1 & 0x7f;

  // Everything below is decided by the first two bytes, so a bad frame is refused before its
  // extended length, mask or payload arrive.
  if (is_reserved(op)) return error::reserved_opcode;
  // §5.2: a nonzero RSV bit with no extension defining it fails the connection. RFC 7692 §6
  // defines RSV1 for data messages only ("Per-Message Compressed"), set on the first frame
  // (§6.1): never on control frames or continuations.
  if (header_.rsv2 || header_.rsv3) return error::reserved_bits;
  if (header_.rsv1 &&
      (!options_.allow_rsv1 || is_control(header_.op) || header_.op == opcode::continuation)) {
    return error::reserved_bits;
  }
  if (is_control(header_.op)) {
    // §5.5: control frames carry at most 125 bytes and are never fragmented.
    if (!header_.fin) return error::fragmented_control_frame;
    if (len7 > max_control_payload_size) return error::control_frame_too_large;
  }
  // §5.1: a server closes on an unmasked client frame, a client on a masked server frame.
  if (options_.local_role == role::server && !header_.masked) return error::unmasked_frame;
  if (options_.local_role == role::client && header_.masked) return error::masked_frame;

  if (len7 < 126) {
    header_.payload_size = len7;
    if (options_.max_frame_size != 0 && header_.payload_size > options_.max_frame_size) {
      return error::frame_too_large;
    }
  }
  need_ = static_cast<std::uint8_t>(2 +
                                    (len7 == 126   ? 2
                                     : len7 == 127 ? 8
                                                   : 0) +
                                    (header_.masked ? 4 : 0));
  return {};
}

std::error_code frame_parser::decode_rest() noexcept {
  const unsigned len7 = byte_at(buf_, 1) & 0x7f;
  std::size_t pos = 2;
  if (len7 == 126) {
    header_.payload_size = (byte_at(buf_, 2) << 8) | byte_at(buf_, 3);
    pos = 4;
    // §5.2: "the minimal number of bytes MUST be used to encode the length".
    if (header_.payload_size < 126) return error::bad_payload_length;
  } else if (len7 == 127) {
    std::uint64_t v = 0;
    for (std::size_t i = 2; i < 10; ++i) v = (v << 8) | byte_at(buf_, i);
    pos = 10;
    // §5.2: "the most significant bit MUST be 0", and the minimal encoding rule again.
    if ((v >> 63) != 0 || v <= 0xffff) return error::bad_payload_length;
    header_.payload_size = v;
  }
  if (len7 >= 126 && options_.max_frame_size != 0 &&
      header_.payload_size > options_.max_frame_size) {
    return error::frame_too_large;
  }
  if (header_.masked) std::memcpy(header_.key.data(), buf_.data() + pos, 4);
  return {};
}

parse_result frame_parser::parse(std::span<const std::byte> data) noexcept {
  if (error_) return {parse_status::error, 0, error_};

  std::size_t used = 0;
  while (have_ < need_) {
    if (used == data.size()) return {parse_status::need_more, used, {}};
    const std::size_t take = std::min<std::size_t>(need_ - have_, data.size() - used);
    std::memcpy(buf_.data() + have_, data.data() + used, take);
    have_ = static_cast<std::uint8_t>(have_ + take);
    used += take;
    if (have_ == 2) {
      // need_ is still 2 here: the first two bytes just arrived; they set the real length.
      if (auto ec = check_first_bytes()) {
        error_ = ec;
        return {parse_status::error, used, ec};
      }
    }
  }
  if (auto ec = decode_rest()) {
    error_ = ec;
    return {parse_status::error, used, ec};
  }
  have_ = 0;
  need_ = 2;
  return {parse_status::complete, used, {}};
}

// ---------------------------------------------------------------------------------------------
// Masking (§5.3)

void copy_masked(std::span<const std::byte> src, std::byte* dst, mask_key key,
                 std::uint64_t offset) noexcept {
  // The key repeated twice, rotated so that pattern byte 0 applies to src[0]; since 8 is a
  // multiple of 4, pattern byte i % 8 applies to src[i] for every i.
  unsigned char pattern[8];
  for (std::size_t i = 0; i < 8; ++i) {
    pattern[i] = std::to_integer<unsigned char>(key[(offset + i) % 4]);
  }
  std::uint64_t word_key;
  std::memcpy(&word_key, pattern, 8);

  const auto* in = reinterpret_cast<const unsigned char*>(src.data());
  auto* out = reinterpret_cast<unsigned char*>(dst);
  const std::size_t n = src.size();
  std::size_t i = 0;
  // Word at a time through memcpy (no alignment or aliasing assumptions; compilers turn it
  // into plain 64-bit loads and stores, and vectorise the loop).
  for (; i + 32 <= n; i += 32) {
    std::uint64_t w[4];
    std::memcpy(w, in + i, 32);
    w[0] ^= word_key;
    w[1] ^= word_key;
    w[2] ^= word_key;
    w[3] ^= word_key;
    std::memcpy(out + i, w, 32);
  }
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, in + i, 8);
    w ^= word_key;
    std::memcpy(out + i, &w, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<unsigned char>(in[i] ^ pattern[i % 8]);
}

void apply_mask(std::span<std::byte> data, mask_key key, std::uint64_t offset) noexcept {
  copy_masked(data, data.data(), key, offset);
}

// ---------------------------------------------------------------------------------------------
// Serialisation

std::size_t write_frame_header(const frame_header& h,
                               std::span<std::byte, max_frame_header_size> out) noexcept {
  unsigned b0 = static_cast<unsigned>(h.op) & 0x0f;
  if (h.fin) b0 |= 0x80;
  if (h.rsv1) b0 |= 0x40;
  if (h.rsv2) b0 |= 0x20;
  if (h.rsv3) b0 |= 0x10;
  const unsigned mask_bit = h.masked ? 0x80 : 0;
  out[0] = static_cast<std::byte>(b0);

  std::size_t pos;
  const std::uint64_t n = h.payload_size;
  if (n < 126) {
    out[1] = static_cast<std::byte>(mask_bit | static_cast<unsigned>(n));
    pos = 2;
  } else if (n <= 0xffff) {
    out[1] = static_cast<std::byte>(mask_bit | 126);
    out[2] = static_cast<std::byte>((n >> 8) & 0xff);
    out[3] = static_cast<std::byte>(n & 0xff);
    pos = 4;
  } else {
    out[1] = static_cast<std::byte>(mask_bit | 127);
    for (std::size_t i = 0; i < 8; ++i) {
      out[2 + i] = static_cast<std::byte>((n >> (56 - 8 * i)) & 0xff);
    }
    pos = 10;
  }
  if (h.masked) {
    std::memcpy(out.data() + pos, h.key.data(), 4);
    pos += 4;
  }
  return pos;
}

void append_frame(std::vector<std::byte>& out, frame_header h, std::span<const std::byte> payload) {
  h.payload_size = payload.size();
  std::array<std::byte, max_frame_header_size> header;
  const std::size_t header_size = write_frame_header(h, header);
  // insert(), not resize(): the bytes are written once, never zero-filled first. One
  // allocation for header and payload, but never an exact-fit reserve: that would defeat the
  // vector's geometric growth and make appending many small frames to one buffer quadratic.
  const std::size_t needed = out.size() + header_size + payload.size();
  if (out.capacity() < needed) out.reserve(std::max(needed, 2 * out.capacity()));
  out.insert(out.end(), header.begin(), header.begin() + static_cast<std::ptrdiff_t>(header_size));
  const std::size_t start = out.size();
  out.insert(out.end(), payload.begin(), payload.end());
  if (h.masked) apply_mask(std::span{out.data() + start, payload.size()}, h.key, 0);
}

}  // namespace atl::ws
