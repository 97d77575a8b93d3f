#include "atoll/ws/message_reader.hpp"

#include <algorithm>
#include <cstring>

#include "atoll/ws/error.hpp"

namespace atl::ws {
namespace {

// Buffers larger than this are freed after their message is delivered: one 16 MiB message
// must not pin 16 MiB for the rest of a long-lived connection (100k idle connections). Not
// lower: a buffer just over glibc's trim threshold, freed and grown again for every message,
// costs a heap trim (madvise, TLB shootdowns) and fresh page faults each time — 70 KB
// messages (two 64 KiB reads, so a 128 KiB buffer) ran at a tenth of the speed of 64 KB ones
// with a 64 KiB limit (bench/profile.md).
constexpr std::size_t keep_capacity = 256 * 1024;

void recycle(std::vector<std::byte>& v) noexcept {
  if (v.capacity() > keep_capacity) {
    std::vector<std::byte>{}.swap(v);
  } else {
    v.clear();
  }
}

// Appends `chunk` (payload from byte `offset` of frame `f`) to `buf`, unmasked. insert()
// grows without value-initialising the new bytes, which resize() would zero-fill only to have
// them overwritten (memset was 4 % of the server's CPU at 16 KiB, 17 % at 70 KB:
// bench/profile.md).
void append_unmasked(std::vector<std::byte>& buf, std::span<const std::byte> chunk,
                     const frame_header& f, std::uint64_t offset) {
  const std::size_t before = buf.size();
  buf.insert(buf.end(), chunk.begin(), chunk.end());
  if (f.masked) apply_mask(std::span{buf.data() + before, chunk.size()}, f.key, offset);
}

frame_parser_options parser_options(const reader_options& o) noexcept {
  frame_parser_options p;
  p.local_role = o.local_role;
  p.max_frame_size = o.max_frame_size;
  p.allow_rsv1 = false;
  return p;
}

}  // namespace

message_reader::message_reader(const reader_options& options)
    : options_(options), parser_(parser_options(options)) {}

message_reader::~message_reader() = default;
message_reader::message_reader(message_reader&&) noexcept = default;
message_reader& message_reader::operator=(message_reader&&) noexcept = default;

void message_reader::enable_deflate(const deflate_params& params, const deflate_options& options) {
  inflater_ = std::make_unique<inflater>(params, options_.local_role, options);
  parser_.allow_rsv1(true);  // RFC 7692 §6: RSV1 now means "Per-Message Compressed"
}

read_event message_reader::fail(std::error_code ec) {
  phase_ = phase::failed;
  error_ = ec;
  read_event ev;
  ev.kind = read_kind::error;
  ev.ec = ec;
  return ev;
}

void message_reader::recycle_buffers() noexcept {
  recycle(message_);
  recycle(wire_);
  recycle_ = false;
}

std::error_code message_reader::begin_data_frame() noexcept {
  // RFC 6455 §5.4: a fragmented message is one text/binary frame with FIN clear, then zero
  // or more continuations, the last with FIN set; only control frames may come in between.
  if (frame_.op == opcode::continuation) {
    if (!in_message_) return error::unexpected_continuation;
  } else {
    if (in_message_) return error::expected_continuation;
    in_message_ = true;
    message_type_ = frame_.op;
    compressed_ = frame_.rsv1;  // RFC 7692 §6.1: RSV1 on the first frame marks the message
    message_size_ = 0;
    utf8_.reset();
  }
  message_size_ += frame_.payload_size;
  // Uncompressed: refuse from the header, before the payload is buffered. Compressed
  // messages are measured by the inflater, as received and as inflated (its max_size).
  if (!compressed_ && options_.max_message_size != 0 && message_size_ > options_.max_message_size) {
    return error::message_too_large;
  }
  return {};
}

read_event message_reader::finish_control_frame() {
  read_event ev;
  ev.type = frame_.op;
  ev.payload = std::span<const std::byte>{control_.data(), control_size_};
  switch (frame_.op) {
    case opcode::ping:
      ev.kind = read_kind::ping;
      break;
    case opcode::pong:
      ev.kind = read_kind::pong;
      break;
    default: {  // close (the parser refused reserved control opcodes)
      if (auto ec = parse_close_payload(ev.payload, ev.close)) return fail(ec);
      ev.kind = read_kind::close;
      // §5.5.1: after a close frame the peer sends no more data frames; whatever follows is
      // ignored, the session answers and closes.
      phase_ = phase::closed;
      break;
    }
  }
  return ev;
}

read_event message_reader::next(std::span<const std::byte>& data) { return read(data, {}); }

read_event message_reader::next(std::span<std::byte>& data) {
  std::span<const std::byte> rest = data;
  const read_event ev = read(rest, data);
  data = data.last(rest.size());  // read() consumes from the front only
  return ev;
}

// `writable`: empty, or the caller's whole writable input of which `data` is a suffix (the
// in-place overload).
read_event message_reader::read(std::span<const std::byte>& data, std::span<std::byte> writable) {
  if (phase_ == phase::failed) {
    read_event ev;
    ev.kind = read_kind::error;
    ev.ec = error_;
    return ev;
  }
  if (phase_ == phase::closed) {
    data = {};
    return {};
  }
  if (recycle_) recycle_buffers();

  for (;;) {
    switch (phase_) {
      case phase::header: {
        const parse_result r = parser_.parse(data);
        if (r.status == parse_status::error) return fail(r.ec);
        data = data.subspan(r.consumed);
        if (r.status == parse_status::need_more) return {};
        frame_ = parser_.header();
        remaining_ = frame_.payload_size;
        frame_offset_ = 0;
        if (is_control(frame_.op)) {
          control_size_ = 0;
          phase_ = phase::control_payload;
        } else {
          if (auto ec = begin_data_frame()) return fail(ec);
          phase_ = phase::data_payload;
        }
        break;
      }

      case phase::control_payload: {
        // ≤ 125 bytes (checked from the header): collected in a fixed buffer.
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size()));
        if (frame_.masked) {
          copy_masked(data.first(n), control_.data() + control_size_, frame_.key, frame_offset_);
        } else if (n > 0) {
          std::memcpy(control_.data() + control_size_, data.data(), n);
        }
        control_size_ += n;
        frame_offset_ += n;
        remaining_ -= n;
        data = data.subspan(n);
        if (remaining_ > 0) return {};
        phase_ = phase::header;
        return finish_control_frame();
      }

      case phase::data_payload: {
        read_event ev = read_data(data, writable);
        if (ev.kind != read_kind::need_more || phase_ != phase::header) return ev;
        break;  // a frame ended without an event (a non-final fragment): next header
      }

      case phase::closed:
      case phase::failed:
        return {};  // not reached: handled on entry
    }
  }
}

// The payload of a data frame: as much of it as `data` holds.
read_event message_reader::read_data(std::span<const std::byte>& data,
                                     std::span<std::byte> writable) {
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size()));
  const std::span<const std::byte> chunk = data.first(n);
  // The same bytes, writable, when reading in place (chunk lies inside `writable`).
  const std::span<std::byte> own =
      writable.empty() ? std::span<std::byte>{}
                       : writable.subspan(static_cast<std::size_t>(chunk.data() - writable.data()), n);
  const bool whole_frame = frame_offset_ == 0 && n == remaining_;
  data = data.subspan(n);
  remaining_ -= n;
  const bool frame_done = remaining_ == 0;
  const bool message_done = frame_done && frame_.fin;
  const std::size_t before = message_.size();
  // The message bytes this chunk adds, unmasked (and inflated): in message_ or in place.
  std::span<const std::byte> fresh;
  bool in_place = false;

  if (compressed_) {
    std::span<const std::byte> input = chunk;
    if (frame_.masked && n > 0) {
      if (!writable.empty()) {
        apply_mask(own, frame_.key, frame_offset_);
      } else {
        wire_.clear();
        append_unmasked(wire_, chunk, frame_, frame_offset_);
        input = wire_;
      }
    }
    if (n > 0 || message_done) {
      // The inflater measures the whole message across calls (also when message_ only
      // holds the streamed piece), so the per-message cap is passed as is.
      if (auto ec = inflater_->decompress(input, message_done, message_,
                                          options_.max_message_size)) {
        // Report the first failure in stream order: text inflated before the bad
        // DEFLATE data or the cap may already be invalid UTF-8 — what a reader fed in
        // smaller pieces would have found first.
        if (message_type_ == opcode::text && options_.validate_utf8 &&
            !utf8_.feed(std::span{message_.data() + before, message_.size() - before})) {
          return fail(error::invalid_utf8);
        }
        return fail(ec);
      }
    }
    fresh = std::span{message_.data() + before, message_.size() - before};
  } else if (!writable.empty() && (options_.stream_fragments ||
                                   (message_done && whole_frame && message_.empty()))) {
    // In place: the piece (streaming), or the message whose only non-empty frame lies wholly
    // in the input, is unmasked where it is and handed out from there — no copy at all.
    if (frame_.masked) apply_mask(own, frame_.key, frame_offset_);
    fresh = own;
    in_place = true;
  } else if (n > 0) {
    // The frame's size is known (and was checked against max_message_size): one allocation
    // for the first frame of a message, not a doubling per read and a copy of what was there.
    // Capped at what a reader keeps anyway (keep_capacity): a header alone cannot make us
    // commit more; larger messages grow as their bytes arrive.
    if (before == 0 && message_.capacity() < frame_.payload_size) {
      message_.reserve(static_cast<std::size_t>(
          std::min<std::uint64_t>(frame_.payload_size, keep_capacity)));
    }
    append_unmasked(message_, chunk, frame_, frame_offset_);
    fresh = std::span{message_.data() + before, n};
  }
  frame_offset_ += n;

  // §8.1 with fail-fast: check the new bytes now, not when the message is complete.
  if (message_type_ == opcode::text && options_.validate_utf8) {
    if (!utf8_.feed(fresh)) return fail(error::invalid_utf8);
    if (message_done && !utf8_.complete()) return fail(error::invalid_utf8);
  }

  if (frame_done) phase_ = phase::header;
  if (message_done) {
    in_message_ = false;
    compressed_ = false;
  }

  const bool deliver = options_.stream_fragments ? !fresh.empty() || message_done : message_done;
  if (!deliver) return {};
  read_event ev;
  ev.kind = options_.stream_fragments ? read_kind::fragment : read_kind::message;
  ev.type = message_type_;
  ev.last = message_done;
  ev.payload = in_place ? fresh : std::span<const std::byte>(message_);
  ev.in_place = in_place;
  recycle_ = true;  // the event points into message_: the next call starts afresh
  return ev;
}

}  // namespace atl::ws
