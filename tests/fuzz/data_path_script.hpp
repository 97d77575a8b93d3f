#pragma once
// The client script language of data_path_fuzz, decoded from the fuzzer's input.
//
//   input   := target step*
//   target  := 1 byte: which listener (variant), modulo 5
//   step    := kind byte (modulo 14), then its arguments:
//     write       len:1, bytes[len]                      raw bytes
//     write_big   len:2 (mod 16 KiB), fill:1             that many copies of `fill`
//     ws_upgrade  flags:1                                a canned request (see below)
//     ws_frame    flags:1, len:1, bytes[len]             one masked frame (see below)
//     ws_big      flags:1, len:2 (mod 16 KiB), fill:1    one masked frame of copies of `fill`
//     read        k:1                                    read up to k*256 bytes (0: all)
//     half_close                                         shutdown(SHUT_WR)
//     reset|close k:1                                    even: close without reading
//                                                        (ECONNRESET); odd: read, then close
//     reconnect                                          close, then a new connection
//     handle_send flags:1, len:1, bytes[len]             send through the handle, this thread
//     handle_close flags:1                               close / ws close(code) / abort
//     advance     k:1                                    jump the clock (table below)
//     run_loop    k:1                                    sleep 1-4 ms of real time (keepalive)
//     proxy       flags:1                                a valid PROXY v1 or v2 header
//     reading     on:1                                   stop (even) or resume (odd) reading
//
// The client starts reading: after every step it reads what the server sent, until a
// `reading` step stops it (the server's write queue then fills).
// Bounded: at most `max_steps` steps, `max_bytes` written, `max_sleep` of real time per input.
// Payload bytes past the end of the input are simply absent (shorter payloads).

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "atoll/endpoint.hpp"
#include "atoll/proxy_protocol.hpp"
#include "atoll/ws/frame.hpp"

namespace atoll_fuzz {

using namespace std::chrono_literals;

enum class variant : std::uint8_t { plain, ws, ws_keepalive, proxy, control, count };

enum class step_kind : std::uint8_t {
  write,
  ws_frame,
  read,
  half_close,
  reset,
  close,
  reconnect,
  handle_send,
  handle_close,
  advance,
  run_loop,
  reading,
};

struct step {
  step_kind kind = step_kind::write;
  std::vector<std::byte> payload;  // write, ws_frame, handle_send
  // ws_frame
  atl::ws::opcode op = atl::ws::opcode::binary;
  bool fin = true;
  bool compress = false;
  bool unmasked = false;
  bool rsv2 = false;
  // handle_send: a text message (ws); handle_close: abort instead of close
  bool text = false;
  bool abort = false;
  bool on = false;                        // reading
  std::size_t amount = 0;                 // read: byte limit; handle_close: close code
  std::chrono::milliseconds duration{0};  // advance, run_loop
};

class script {
 public:
  static constexpr int max_steps = 48;
  static constexpr std::size_t max_bytes = 128 * 1024;
  static constexpr std::chrono::milliseconds max_sleep{8};
  static constexpr std::size_t max_big = 16 * 1024;

  script(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

  variant target() noexcept {
    return static_cast<variant>(byte() % static_cast<std::uint8_t>(variant::control));
  }

  // The next step, or nullopt at the end of the input or of a budget.
  std::optional<step> next() {
    if (size_ == 0 || steps_ >= max_steps || bytes_ >= max_bytes) return std::nullopt;
    ++steps_;
    step s;
    switch (byte() % 15) {
      case 0:
        s.payload = bytes(byte());
        break;
      case 1:
        s.payload = fill(u16() % max_big);
        break;
      case 2:
        s.payload = upgrade_request(byte());
        break;
      case 3: {
        s.kind = step_kind::ws_frame;
        frame_flags(s, byte());
        s.payload = bytes(byte());
        break;
      }
      case 4: {
        s.kind = step_kind::ws_frame;
        frame_flags(s, byte());
        s.payload = fill(u16() % max_big);
        if (s.op == atl::ws::opcode::text) {
          for (auto& b : s.payload) b &= std::byte{0x7f};  // stays valid UTF-8
        }
        break;
      }
      case 5: {
        s.kind = step_kind::read;
        const std::size_t k = byte();
        s.amount = k == 0 ? SIZE_MAX : k * 256;
        break;
      }
      case 6:
        s.kind = step_kind::half_close;
        break;
      case 7:
        s.kind = byte() % 2 == 0 ? step_kind::reset : step_kind::close;
        break;
      case 8:
        s.kind = step_kind::reconnect;
        break;
      case 9: {
        s.kind = step_kind::handle_send;
        s.text = byte() % 2 == 1;
        s.payload = bytes(byte());
        break;
      }
      case 10: {
        s.kind = step_kind::handle_close;
        const std::uint8_t f = byte();
        s.abort = f % 4 == 3;
        static constexpr std::uint16_t codes[] = {1000, 1001, 1005, 1008, 1011, 3000, 999, 4999};
        s.amount = codes[(f / 4) % 8];
        break;
      }
      case 11: {
        s.kind = step_kind::advance;
        // Around the harness's timeouts: handshake 300 ms, close 500 ms, read 1 s, idle 2 s.
        static constexpr std::chrono::milliseconds jumps[] = {
            1ms,    10ms,   100ms,  299ms, 301ms, 499ms, 501ms, 999ms,
            1001ms, 1999ms, 2001ms, 5s,    11s,   61s,   3600s, 50ms};
        s.duration = jumps[byte() % 16];
        break;
      }
      case 12: {
        const std::chrono::milliseconds d{1 + byte() % 4};
        if (slept_ + d <= max_sleep) {
          slept_ += d;
          s.kind = step_kind::run_loop;
          s.duration = d;
        } else {
          s.kind = step_kind::read;  // out of real time: a harmless step instead
        }
        break;
      }
      case 13:
        s.payload = proxy_header(byte());
        break;
      default:
        s.kind = step_kind::reading;
        s.on = byte() % 2 == 1;
        break;
    }
    bytes_ += s.payload.size();
    return s;
  }

 private:
  std::uint8_t byte() noexcept {
    if (size_ == 0) return 0;
    --size_;
    return *data_++;
  }

  std::size_t u16() noexcept {
    const std::size_t hi = byte();
    return hi << 8 | byte();
  }

  std::vector<std::byte> bytes(std::size_t n) {
    n = std::min(n, size_);
    std::vector<std::byte> out(reinterpret_cast<const std::byte*>(data_),
                               reinterpret_cast<const std::byte*>(data_) + n);
    data_ += n;
    size_ -= n;
    return out;
  }

  std::vector<std::byte> fill(std::size_t n) {
    return std::vector<std::byte>(n, std::byte{byte()});
  }

  static void frame_flags(step& s, std::uint8_t f) {
    using atl::ws::opcode;
    static constexpr opcode ops[] = {
        opcode::binary, opcode::text,  opcode::continuation, opcode::ping,
        opcode::pong,   opcode::close, opcode::binary,       static_cast<opcode>(0x3)};
    s.op = ops[f % 8];
    s.fin = (f & 0x08) == 0;
    s.compress = (f & 0x10) != 0;
    // Rare on purpose: each ends the session at once with a protocol error.
    s.unmasked = (f & 0xe0) == 0xe0;
    s.rsv2 = (f & 0xe0) == 0xc0;
  }

  static std::vector<std::byte> text(std::string_view t) {
    const auto* p = reinterpret_cast<const std::byte*>(t.data());
    return std::vector<std::byte>(p, p + t.size());
  }

  // flags: bit 0 offers permessage-deflate (client_no_context_takeover, which the harness's
  // compressor relies on); bit 1 sends a request that is not an upgrade (refused with 426);
  // bit 2 drops the key (400); bit 3 a different path and an unknown extension too.
  static std::vector<std::byte> upgrade_request(std::uint8_t f) {
    std::string r = (f & 0x08) != 0 ? "GET /other?x=1 HTTP/1.1\r\n" : "GET /chat HTTP/1.1\r\n";
    r += "Host: localhost\r\n";
    if ((f & 0x02) == 0) r += "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    if ((f & 0x04) == 0) r += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    r += "Sec-WebSocket-Version: 13\r\n";
    if ((f & 0x01) != 0) {
      r += "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover";
      r += (f & 0x08) != 0 ? ", x-unknown\r\n" : "\r\n";
    }
    r += "\r\n";
    return text(r);
  }

  // flags: bit 0 picks v2 over v1; bit 1 a LOCAL (v2) / UNKNOWN (v1) header; bit 2 adds a
  // TLV (v2).
  static std::vector<std::byte> proxy_header(std::uint8_t f) {
    if ((f & 0x01) == 0) {
      return text((f & 0x02) != 0 ? "PROXY UNKNOWN\r\n"
                                  : "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n");
    }
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_port = htons(40000);
    src.sin_addr.s_addr = htonl(0xc0000201);
    sockaddr_in dst = src;
    dst.sin_port = htons(443);
    dst.sin_addr.s_addr = htonl(0xc6336402);
    const atl::endpoint s(reinterpret_cast<const sockaddr*>(&src), sizeof src);
    const atl::endpoint d(reinterpret_cast<const sockaddr*>(&dst), sizeof dst);
    std::vector<atl::proxy::tlv> tlvs;
    if ((f & 0x04) != 0) tlvs.push_back({0x02, "example.org"});  // PP2_TYPE_AUTHORITY
    const auto cmd = (f & 0x02) != 0 ? atl::proxy::command::local : atl::proxy::command::proxy;
    return atl::proxy::build_v2(cmd, s, d, tlvs);
  }

  const std::uint8_t* data_;
  std::size_t size_;
  int steps_ = 0;
  std::size_t bytes_ = 0;
  std::chrono::milliseconds slept_{0};
};

}  // namespace atoll_fuzz
