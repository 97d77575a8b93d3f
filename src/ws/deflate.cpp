#include "atoll/ws/deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <limits>
#include <stdexcept>

#include "atoll/ws/error.hpp"
#include "atoll/ws/http_request.hpp"
#include "http_chars.hpp"

namespace atl::ws {
namespace {

// ---------------------------------------------------------------------------------------------
// Sec-WebSocket-Extensions syntax (RFC 6455 §9.1):
//   extension-list = 1#extension
//   extension      = extension-token *( ";" extension-param )
//   extension-param = token [ "=" (token | quoted-string) ]
// with OWS allowed around the separators (the list rules of RFC 9110 §5.6.1).

struct ext_param {
  std::string_view name;
  std::string value;  // unescaped when it was a quoted-string
  bool has_value = false;
};

struct extension {
  std::string_view name;
  std::vector<ext_param> params;
};

std::optional<std::vector<extension>> parse_extensions(std::string_view s) {
  using detail::is_ows;
  using detail::is_tchar;
  std::size_t i = 0;
  const std::size_t n = s.size();
  auto skip_ows = [&] {
    while (i < n && is_ows(static_cast<unsigned char>(s[i]))) ++i;
  };
  auto token = [&] {
    const std::size_t begin = i;
    while (i < n && is_tchar(static_cast<unsigned char>(s[i]))) ++i;
    return s.substr(begin, i - begin);
  };

  std::vector<extension> out;
  for (;;) {
    skip_ows();
    if (i == n) break;
    if (s[i] == ',') {  // empty list element
      ++i;
      continue;
    }
    extension e;
    e.name = token();
    if (e.name.empty()) return std::nullopt;
    skip_ows();
    while (i < n && s[i] == ';') {
      ++i;
      skip_ows();
      ext_param p;
      p.name = token();
      if (p.name.empty()) return std::nullopt;
      skip_ows();
      if (i < n && s[i] == '=') {
        ++i;
        skip_ows();
        p.has_value = true;
        if (i < n && s[i] == '"') {
          // quoted-string (RFC 9110 §5.6.4) with quoted-pairs; §9.1 then requires the
          // unescaped value to be a token, which the parameter checks below enforce.
          ++i;
          bool closed = false;
          while (i < n) {
            char c = s[i++];
            if (c == '"') {
              closed = true;
              break;
            }
            if (c == '\\') {
              if (i == n) return std::nullopt;
              c = s[i++];
            }
            p.value.push_back(c);
          }
          if (!closed) return std::nullopt;
        } else {
          const std::string_view v = token();
          if (v.empty()) return std::nullopt;
          p.value = std::string{v};
        }
        skip_ows();
      }
      e.params.push_back(std::move(p));
    }
    if (i < n && s[i] != ',') return std::nullopt;
    out.push_back(std::move(e));
  }
  return out;
}

// RFC 7692 §7.1.2.1: the value is a decimal integer 8..15 without leading zeros.
std::optional<int> parse_window_bits(std::string_view v) noexcept {
  if (v.size() == 1 && (v[0] == '8' || v[0] == '9')) return v[0] - '0';
  if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
  return std::nullopt;
}

struct offer {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::optional<int> server_max_window_bits;
  bool client_max_window_bits_present = false;
  std::optional<int> client_max_window_bits;
};

// Reads the parameters of one permessage-deflate element. `response` applies the rules for a
// server's answer (client_max_window_bits needs a value there, §7.1.2.2).
std::optional<offer> read_params(const extension& e, bool response) {
  offer o;
  bool seen[4] = {false, false, false, false};
  for (const auto& p : e.params) {
    // §7: "a server MUST decline an extension negotiation offer ... if the offer has any
    // extension parameter not defined for use in an offer, has an extension parameter with an
    // invalid value, or has multiple extension parameters with the same name".
    int index;
    if (iequals(p.name, "server_no_context_takeover")) {
      index = 0;
    } else if (iequals(p.name, "client_no_context_takeover")) {
      index = 1;
    } else if (iequals(p.name, "server_max_window_bits")) {
      index = 2;
    } else if (iequals(p.name, "client_max_window_bits")) {
      index = 3;
    } else {
      return std::nullopt;
    }
    if (seen[index]) return std::nullopt;
    seen[index] = true;
    switch (index) {
      case 0:
        if (p.has_value) return std::nullopt;  // §7.1.1.1: "has no value"
        o.server_no_context_takeover = true;
        break;
      case 1:
        if (p.has_value) return std::nullopt;  // §7.1.1.2
        o.client_no_context_takeover = true;
        break;
      case 2:
        if (!p.has_value) return std::nullopt;  // §7.1.2.1: the value is required
        o.server_max_window_bits = parse_window_bits(p.value);
        if (!o.server_max_window_bits) return std::nullopt;
        break;
      default:
        o.client_max_window_bits_present = true;
        if (p.has_value) {
          o.client_max_window_bits = parse_window_bits(p.value);
          if (!o.client_max_window_bits) return std::nullopt;
        } else if (response) {
          return std::nullopt;  // §7.1.2.2: a response must give the value
        }
        break;
    }
  }
  return o;
}

int clamp_bits(int bits) noexcept { return std::clamp(bits, 8, 15); }

// zlib's deflate refuses windowBits 8 for raw streams (since 1.2.9; before, it silently used
// 9). 9 is safe for an agreed 8: deflate never emits a distance beyond w_size - MIN_LOOKAHEAD
// (512 - 262 = 250 bytes), within the peer's 256-byte window. The inflater uses 9 as well, so
// a peer whose own zlib made the same substitution is decoded too.
int zlib_window_bits(int agreed) noexcept { return std::max(clamp_bits(agreed), 9); }

constexpr std::array<unsigned char, 4> deflate_tail = {0x00, 0x00, 0xff, 0xff};

// zlib counts in uInt; feed it in pieces that fit.
constexpr std::size_t max_zlib_piece = std::size_t{1} << 30;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Negotiation

std::optional<deflate_negotiation> negotiate_deflate(std::string_view extensions,
                                                     const deflate_options& options) {
  const auto list = parse_extensions(extensions);
  if (!list) return std::nullopt;

  for (const auto& e : *list) {
    if (!iequals(e.name, "permessage-deflate")) continue;
    const auto o = read_params(e, false);
    if (!o) continue;  // declined: try the client's next offer (RFC 6455 §9.1 order)

    deflate_negotiation result;
    deflate_params& p = result.params;
    std::string& r = result.response;
    r = "permessage-deflate";

    // §7.1.1.1 / §7.1.1.2: either side may ask; the server may add either on its own.
    p.server_no_context_takeover =
        o->server_no_context_takeover || options.server_no_context_takeover;
    p.client_no_context_takeover =
        o->client_no_context_takeover || options.client_no_context_takeover;
    if (p.server_no_context_takeover) r += "; server_no_context_takeover";
    if (p.client_no_context_takeover) r += "; client_no_context_takeover";

    // §7.1.2.1: an offered server_max_window_bits is accepted by answering it with the same
    // or a smaller value; without one, the server may still announce a smaller window.
    int server_bits = clamp_bits(options.server_max_window_bits);
    if (o->server_max_window_bits) server_bits = std::min(server_bits, *o->server_max_window_bits);
    p.server_max_window_bits = server_bits;
    if (o->server_max_window_bits || server_bits < 15) {
      r += "; server_max_window_bits=" + std::to_string(server_bits);
    }

    // §7.1.2.2: client_max_window_bits may only appear in the response if the client offered
    // it; then we may ask for a window no larger than the value it gave.
    if (o->client_max_window_bits_present) {
      int client_bits = clamp_bits(options.client_max_window_bits);
      if (o->client_max_window_bits) {
        client_bits = std::min(client_bits, *o->client_max_window_bits);
      }
      p.client_max_window_bits = client_bits;
      if (o->client_max_window_bits || client_bits < 15) {
        r += "; client_max_window_bits=" + std::to_string(client_bits);
      }
    } else {
      p.client_max_window_bits = 15;
    }
    return result;
  }
  return std::nullopt;
}

std::optional<deflate_params> parse_deflate_response(std::string_view extensions) {
  const auto list = parse_extensions(extensions);
  // RFC 6455 §9.1: the server answers with extensions the client offered, and we offer one.
  if (!list || list->size() != 1 || !iequals(list->front().name, "permessage-deflate")) {
    return std::nullopt;
  }
  const auto o = read_params(list->front(), true);
  if (!o) return std::nullopt;
  deflate_params p;
  p.server_no_context_takeover = o->server_no_context_takeover;
  p.client_no_context_takeover = o->client_no_context_takeover;
  p.server_max_window_bits = o->server_max_window_bits.value_or(15);
  p.client_max_window_bits = o->client_max_window_bits.value_or(15);
  return p;
}

std::string format_deflate_offer(const deflate_options& options) {
  std::string r = "permessage-deflate";
  if (options.server_no_context_takeover) r += "; server_no_context_takeover";
  if (options.client_no_context_takeover) r += "; client_no_context_takeover";
  const int server_bits = clamp_bits(options.server_max_window_bits);
  if (server_bits < 15) r += "; server_max_window_bits=" + std::to_string(server_bits);
  const int client_bits = clamp_bits(options.client_max_window_bits);
  r += "; client_max_window_bits";
  if (client_bits < 15) r += "=" + std::to_string(client_bits);
  return r;
}

void validate_deflate_options(const deflate_options& options, std::string_view prefix) {
  auto refuse = [&](std::string_view field, std::string_view why) {
    throw std::invalid_argument("atoll: " + std::string{prefix} + std::string{field} + ": " +
                                std::string{why});
  };
  if (options.server_max_window_bits < 8 || options.server_max_window_bits > 15) {
    refuse("server_max_window_bits", "must be 8..15");
  }
  if (options.client_max_window_bits < 8 || options.client_max_window_bits > 15) {
    refuse("client_max_window_bits", "must be 8..15");
  }
  if (options.compression_level < 0 || options.compression_level > 9) {
    refuse("compression_level", "must be 0..9");
  }
  if (options.mem_level < 1 || options.mem_level > 9) refuse("mem_level", "must be 1..9");
}

// ---------------------------------------------------------------------------------------------
// Compressor

struct deflater::impl {
  z_stream zs{};
  bool ready = false;
  int window_bits;
  int level;
  int mem_level;
  bool no_context_takeover;

  ~impl() { release(); }

  void release() noexcept {
    if (ready) deflateEnd(&zs);
    ready = false;
  }

  bool init() noexcept {
    if (ready) return true;
    zs = z_stream{};
    // Negative windowBits: raw DEFLATE, no zlib header or checksum (RFC 7692 §7.2.1).
    ready =
        deflateInit2(&zs, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY) == Z_OK;
    return ready;
  }
};

deflater::deflater(const deflate_params& params, role local, const deflate_options& options)
    : impl_(std::make_unique<impl>()) {
  const bool server = local == role::server;
  impl_->window_bits =
      zlib_window_bits(server ? params.server_max_window_bits : params.client_max_window_bits);
  impl_->no_context_takeover =
      server ? params.server_no_context_takeover : params.client_no_context_takeover;
  impl_->level = std::clamp(options.compression_level, 0, 9);
  impl_->mem_level = std::clamp(options.mem_level, 1, 9);
}

deflater::~deflater() = default;
deflater::deflater(deflater&&) noexcept = default;
deflater& deflater::operator=(deflater&&) noexcept = default;

void deflater::release() noexcept {
  if (impl_) impl_->release();
}

std::error_code deflater::compress(std::span<const std::byte> in, bool fin,
                                   std::vector<std::byte>& out) {
  if (!impl_ || !impl_->init()) return error::deflate_failed;
  z_stream& zs = impl_->zs;
  const std::size_t start = out.size();

  for (;;) {
    const std::size_t piece = std::min(in.size(), max_zlib_piece);
    const bool last_piece = piece == in.size();
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
    zs.avail_in = static_cast<uInt>(piece);
    // §7.2.1: end the message with an empty stored block (a sync flush), whose 4-byte
    // 00 00 ff ff the receiver appends again; non-final pieces (fragments) need no flush.
    const int flush = (fin && last_piece) ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    do {
      const std::size_t room = std::max<std::size_t>(
          deflateBound(&zs, static_cast<uLong>(zs.avail_in)) + 16, std::size_t{256});
      const std::size_t old = out.size();
      out.resize(old + room);
      zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
      zs.avail_out = static_cast<uInt>(room);
      const int rc = deflate(&zs, flush);
      out.resize(old + room - zs.avail_out);
      if (rc == Z_STREAM_ERROR) {
        impl_->release();
        out.resize(start);
        return error::deflate_failed;
      }
      // Z_BUF_ERROR only says no progress was possible (nothing left to do): not an error.
    } while (zs.avail_in > 0 || zs.avail_out == 0);
    in = in.subspan(piece);
    if (last_piece) break;
  }

  if (fin) {
    // The sync flush ends with LEN=0000 NLEN=ffff of the empty stored block, written in this
    // very call; §7.2.1 says to remove those 4 octets. An empty message thus becomes 0x00.
    const std::size_t produced = out.size() - start;
    if (produced == 0) {
      // zlib emits nothing for a sync flush right after another one with no input between
      // (an empty message after a message, with context takeover). §7.2.3.6: an empty message
      // is then sent as the single byte 0x00, the header of an empty stored block whose
      // LEN/NLEN the receiver appends.
      out.push_back(std::byte{0x00});
    } else if (produced >= 4 &&
               std::equal(deflate_tail.begin(), deflate_tail.end(),
                          reinterpret_cast<const unsigned char*>(out.data()) + out.size() - 4)) {
      out.resize(out.size() - 4);
    } else {
      impl_->release();
      out.resize(start);
      return error::deflate_failed;
    }
    // §7.1.1.1 / §7.1.1.2: without context takeover every message starts from an empty
    // window.
    if (impl_->no_context_takeover) deflateReset(&zs);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Decompressor

namespace {

// The most output asked of zlib per inflate() call. The caps are checked between calls, so a
// bomb is stopped after at most this much output past them, whatever its ratio.
constexpr std::size_t max_output_room = 16 * 1024;

// The first output room of each call. std::vector zero-fills what it grows by, so the buffer
// grows only as output arrives (the room doubles while zlib fills it): a flood of tiny frames
// must not cost a 16 KiB fill each.
constexpr std::size_t min_output_room = 1024;

// DEFLATE streams that end (a block with BFINAL set, §7.2.3.4) without a byte of output,
// allowed per message. One is legitimate: an empty message flushed that way is `03 00`. More
// carry nothing and only make us restart the stream — two bytes each, so without this bound a
// message of them costs a restart per two bytes until max_size of input (issue 9, item 2).
constexpr std::uint32_t max_empty_streams = 1;

}  // namespace

struct inflater::impl {
  z_stream zs{};
  bool ready = false;
  bool broken = false;
  int window_bits;
  bool no_context_takeover;
  std::uint32_t max_ratio;
  std::size_t ratio_threshold;
  // The current message:
  std::uint64_t message_in = 0;        // compressed bytes the peer sent (not our tail)
  std::uint64_t message_out = 0;       // inflated bytes
  std::uint64_t stream_start_out = 0;  // message_out when the current DEFLATE stream began
  std::uint32_t empty_streams = 0;     // streams that ended without output
  inflate_stats stats;

  ~impl() {
    if (ready) inflateEnd(&zs);
  }

  bool init() noexcept {
    if (ready) return true;
    zs = z_stream{};
    ready = inflateInit2(&zs, -window_bits) == Z_OK;
    return ready;
  }

  void start_message() noexcept {
    message_in = 0;
    message_out = 0;
    stream_start_out = 0;
    empty_streams = 0;
  }

  // The most bytes the current message may inflate to right now.
  std::uint64_t cap(std::uint64_t max_size) const noexcept {
    std::uint64_t c = max_size == 0 ? std::numeric_limits<std::uint64_t>::max() : max_size;
    if (max_ratio != 0) {
      const std::uint64_t by_ratio =
          message_in > std::numeric_limits<std::uint64_t>::max() / max_ratio
              ? std::numeric_limits<std::uint64_t>::max()
              : message_in * max_ratio;
      c = std::min(c, std::max<std::uint64_t>(by_ratio, ratio_threshold));
    }
    return c;
  }

  std::error_code feed(const unsigned char* data, std::size_t size, std::vector<std::byte>& out,
                       std::uint64_t max_size);
  std::error_code inflate_input(std::vector<std::byte>& out, std::size_t& used, std::size_t& room,
                                std::uint64_t max_size);
  std::error_code end_stream() noexcept;
};

std::error_code inflater::impl::feed(const unsigned char* data, std::size_t size,
                                     std::vector<std::byte>& out, std::uint64_t max_size) {
  // `out` holds `used` bytes of output, then zero-filled room that zlib writes into; the room
  // left over is dropped at the end.
  std::size_t used = out.size();
  std::size_t room = min_output_room;
  std::error_code ec;
  while (!ec && size > 0) {
    const std::size_t piece = std::min(size, max_zlib_piece);
    zs.next_in = const_cast<Bytef*>(data);
    zs.avail_in = static_cast<uInt>(piece);
    data += piece;
    size -= piece;
    ec = inflate_input(out, used, room, max_size);
  }
  out.resize(used);
  return ec;
}

// Inflates all of zs's input into out[used..], growing `out` only as far as output arrives.
std::error_code inflater::impl::inflate_input(std::vector<std::byte>& out, std::size_t& used,
                                              std::size_t& room, std::uint64_t max_size) {
  do {
    // Never ask zlib for more than one byte past what the limits allow.
    const std::uint64_t limit = cap(max_size);
    const std::uint64_t left = limit >= message_out ? limit - message_out : 0;
    const std::size_t ask = left >= room ? room : static_cast<std::size_t>(left) + 1;
    if (out.size() < used + ask) out.resize(used + ask);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    zs.avail_out = static_cast<uInt>(ask);
    const uInt in_before = zs.avail_in;
    const int rc = inflate(&zs, Z_SYNC_FLUSH);
    const std::size_t produced = ask - zs.avail_out;
    used += produced;
    message_out += produced;
    stats.input += in_before - zs.avail_in;
    stats.output += produced;

    if (message_out > limit) {
      if (max_size != 0 && message_out > max_size) return error::message_too_large;
      return error::inflate_ratio_exceeded;
    }
    if (produced == ask) room = std::min(room * 2, max_output_room);
    if (rc == Z_STREAM_END) {
      if (auto ec = end_stream()) return ec;
      continue;
    }
    if (rc == Z_BUF_ERROR) {
      // No progress possible: all input used and nothing pending, or the output was full.
      if (zs.avail_in == 0 && produced < ask) break;
      continue;
    }
    if (rc != Z_OK) return error::inflate_failed;  // Z_DATA_ERROR, Z_NEED_DICT, Z_MEM_ERROR
  } while (zs.avail_in > 0 || zs.avail_out == 0);
  return {};
}

// A block with BFINAL set ended the DEFLATE stream (RFC 7692 §7.2.3.4 allows senders to flush
// that way); whatever follows (at least our appended tail) starts a new one.
std::error_code inflater::impl::end_stream() noexcept {
  if (message_out == stream_start_out && ++empty_streams > max_empty_streams) {
    return error::inflate_failed;
  }
  stream_start_out = message_out;
  ++stats.stream_restarts;
  // inflateResetKeep restarts the stream and keeps the window in place, in O(1): the next
  // stream may refer back into it (the sender's history, within the message and, with context
  // takeover, across messages). Copying the window out and back in (inflateGetDictionary /
  // inflateSetDictionary after inflateReset) would cost up to 64 KiB of copies per restart,
  // that is per two bytes of `03 00`. The function is exported by zlib since 1.2.5.2 (symbol
  // version ZLIB_1.2.5.2) and declared in zlib.h among its "undocumented functions";
  // inflateReset is inflateResetKeep plus forgetting the window.
  return inflateResetKeep(&zs) == Z_OK ? std::error_code{} : error::inflate_failed;
}

inflater::inflater(const deflate_params& params, role local, const deflate_options& options)
    : impl_(std::make_unique<impl>()) {
  const bool server = local == role::server;
  // We inflate what the peer compresses: a server reads with the client_* parameters.
  impl_->window_bits =
      zlib_window_bits(server ? params.client_max_window_bits : params.server_max_window_bits);
  impl_->no_context_takeover =
      server ? params.client_no_context_takeover : params.server_no_context_takeover;
  impl_->max_ratio = options.max_inflate_ratio;
  impl_->ratio_threshold = options.inflate_ratio_threshold;
}

inflater::~inflater() = default;
inflater::inflater(inflater&&) noexcept = default;
inflater& inflater::operator=(inflater&&) noexcept = default;

std::uint64_t inflater::message_size() const noexcept { return impl_ ? impl_->message_out : 0; }

inflate_stats inflater::stats() const noexcept { return impl_ ? impl_->stats : inflate_stats{}; }

std::error_code inflater::decompress(std::span<const std::byte> in, bool fin,
                                     std::vector<std::byte>& out, std::uint64_t max_size) {
  if (!impl_ || impl_->broken) return error::inflate_failed;
  impl& s = *impl_;
  if (!s.init()) {
    s.broken = true;
    return error::inflate_failed;
  }
  // The compressed size counts against max_size too (as in Node's ws and Python's
  // websockets): otherwise a message of blocks that inflate to nothing would never end. In
  // stream order, like every other check: the bytes up to the limit are inflated (an error in
  // them comes first, however the network split the reads), the first byte past it fails.
  std::size_t take = in.size();
  if (max_size != 0 && in.size() > max_size - std::min(max_size, s.message_in)) {
    take = static_cast<std::size_t>(max_size - std::min(max_size, s.message_in));
  }
  s.message_in += take;
  auto ec = s.feed(reinterpret_cast<const unsigned char*>(in.data()), take, out, max_size);
  if (!ec && take < in.size()) ec = error::message_too_large;
  // §7.2.2: append 00 00 ff ff to the payload of the last frame before inflating.
  if (!ec && fin) ec = s.feed(deflate_tail.data(), deflate_tail.size(), out, max_size);
  if (ec) {
    s.broken = true;
    return ec;
  }
  if (fin) {
    s.start_message();
    // §7.1.1.1 / §7.1.1.2: the peer starts every message from an empty window.
    if (s.no_context_takeover) inflateReset(&s.zs);
  }
  return {};
}

}  // namespace atl::ws
