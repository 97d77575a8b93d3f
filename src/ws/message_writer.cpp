#include "atoll/ws/message_writer.hpp"

#include <openssl/rand.h>

#include <array>
#include <cstring>
#include <stdexcept>

#include "atoll/ws/error.hpp"

namespace atl::ws {
namespace {

// 64 mask keys per RAND_bytes call: the per-call overhead of the CSPRNG is paid once for many
// frames, and keys stay unpredictable to scripts in the page (RFC 6455 §10.3).
constexpr std::size_t key_batch = 64 * 4;

}  // namespace

message_writer::message_writer(role local) : role_(local) {}
message_writer::~message_writer() = default;
message_writer::message_writer(message_writer&&) noexcept = default;
message_writer& message_writer::operator=(message_writer&&) noexcept = default;

void message_writer::enable_deflate(const deflate_params& params, const deflate_options& options) {
  deflater_ = std::make_unique<deflater>(params, role_, options);
  compress_threshold_ = options.compress_threshold;
}

frame_header message_writer::make_header(opcode op, bool fin, bool rsv1) {
  frame_header h;
  h.fin = fin;
  h.rsv1 = rsv1;
  h.op = op;
  if (role_ == role::client) {
    // §5.3: a fresh, unpredictable key for every frame a client sends.
    if (key_pos_ + 4 > keys_.size()) {
      keys_.resize(key_batch);
      if (RAND_bytes(reinterpret_cast<unsigned char*>(keys_.data()),
                     static_cast<int>(keys_.size())) != 1) {
        throw std::runtime_error("atoll: OpenSSL RAND_bytes failed");
      }
      key_pos_ = 0;
    }
    h.masked = true;
    std::memcpy(h.key.data(), keys_.data() + key_pos_, 4);
    key_pos_ += 4;
  }
  return h;
}

std::error_code message_writer::write_message(opcode type, std::span<const std::byte> payload,
                                              std::vector<std::byte>& out) {
  if (deflater_ && payload.size() >= compress_threshold_) {
    scratch_.clear();
    if (auto ec = deflater_->compress(payload, true, scratch_)) return ec;
    // RFC 7692 §6: RSV1 on the (only) frame marks the message as compressed.
    append_frame(out, make_header(type, true, true), scratch_);
    if (scratch_.capacity() > 64 * 1024) std::vector<std::byte>{}.swap(scratch_);
    return {};
  }
  append_frame(out, make_header(type, true, false), payload);
  return {};
}

std::size_t message_writer::message_header(opcode type, std::size_t payload_size,
                                           std::span<std::byte, max_frame_header_size> header) {
  if (role_ == role::client || (deflater_ && payload_size >= compress_threshold_)) return 0;
  frame_header h = make_header(type, true, false);
  h.payload_size = payload_size;
  return write_frame_header(h, header);
}

std::error_code message_writer::write_text(std::string_view text, std::vector<std::byte>& out) {
  return write_message(opcode::text, std::as_bytes(std::span{text.data(), text.size()}), out);
}

std::error_code message_writer::write_fragment(opcode type, std::span<const std::byte> payload,
                                               bool fin, std::vector<std::byte>& out) {
  const bool first = !in_message_;
  if (first) compressing_ = deflater_ != nullptr;
  // §5.4: the first fragment carries the message's opcode, the rest are continuations;
  // RFC 7692 §6.1: RSV1 only on the first.
  const opcode op = first ? type : opcode::continuation;
  const bool rsv1 = first && compressing_;
  if (compressing_) {
    scratch_.clear();
    if (auto ec = deflater_->compress(payload, fin, scratch_)) return ec;
    append_frame(out, make_header(op, fin, rsv1), scratch_);
  } else {
    append_frame(out, make_header(op, fin, false), payload);
  }
  in_message_ = !fin;
  return {};
}

std::error_code message_writer::write_control(opcode type, std::span<const std::byte> payload,
                                              std::vector<std::byte>& out) {
  if (payload.size() > max_control_payload_size) return error::control_payload_too_large;
  append_frame(out, make_header(type, true, false), payload);
  return {};
}

std::error_code message_writer::write_close(close_code code, std::string_view reason,
                                            std::vector<std::byte>& out) {
  std::array<std::byte, max_close_payload_size> payload;
  std::error_code ec;
  const std::size_t n = write_close_payload(code, reason, payload, ec);
  if (ec) return ec;
  return write_control(opcode::close, std::span{payload.data(), n}, out);
}

}  // namespace atl::ws
