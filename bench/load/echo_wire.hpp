#pragma once
// What one echo exchange looks like on the wire, so the echo mode's loop serves any
// request/reply protocol where every request gets one reply of known size. The handshake part
// alone (make_ws_upgrade_wire, check_handshake_reply) also opens idle --ws's connections.

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace atoll_load {

struct echo_wire {
  std::string name;                    // the mode name reported in the JSON
  std::string handshake;               // sent once after connecting (empty: none)
  std::string handshake_end;           // the reply to it ends with this (e.g. "\r\n\r\n")
  std::string handshake_reply_prefix;  // and must start with this (e.g. "HTTP/1.1 101")
  std::string handshake_reply_absent;  // and must not contain this (lower case; any case matches)
  std::vector<char> request;           // one request, sent again for every reply
  std::size_t reply_size = 0;          // bytes of one whole reply
};

// How the reply to a wire's handshake, as received so far, stands.
enum class handshake_reply : std::uint8_t { incomplete, accepted, refused };

// Checks the reply to `w.handshake` received so far (`in`): incomplete until it holds
// `w.handshake_end` (refused past 16 KiB without it); then accepted, with `size` its bytes up to
// and including `handshake_end` (whatever follows is the protocol's), or refused if it does not
// start with `w.handshake_reply_prefix` or contains `w.handshake_reply_absent` (any case).
inline handshake_reply check_handshake_reply(const echo_wire& w, std::string_view in,
                                             std::size_t& size) {
  const auto end = in.find(w.handshake_end);
  if (end == std::string_view::npos) {
    return in.size() > 16384 ? handshake_reply::refused : handshake_reply::incomplete;
  }
  if (!in.starts_with(w.handshake_reply_prefix)) return handshake_reply::refused;
  if (!w.handshake_reply_absent.empty()) {
    std::string head(in.substr(0, end));
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char c) { return char(std::tolower(c)); });
    if (head.find(w.handshake_reply_absent) != std::string::npos) return handshake_reply::refused;
  }
  size = end + w.handshake_end.size();
  return handshake_reply::accepted;
}

// Raw TCP echo: S bytes out, the same S bytes back.
inline echo_wire make_raw_wire(std::size_t size) {
  echo_wire w;
  w.name = "echo";
  w.request.resize(size == 0 ? 1 : size);
  for (std::size_t i = 0; i < w.request.size(); ++i) w.request[i] = char('a' + i % 26);
  w.reply_size = w.request.size();
  return w;
}

// A WebSocket upgrade request (RFC 6455 section 4.1) for any path on `host_port`;
// `extra_headers` (each ending in "\r\n") go before the blank line, e.g. an extension offer.
inline std::string ws_upgrade_request(const std::string& host_port,
                                      const std::string& extra_headers = "") {
  return "GET / HTTP/1.1\r\n"
         "Host: " +
         host_port +
         "\r\n"
         "Upgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"  // RFC 6455 section 1.3's example
         "Sec-WebSocket-Version: 13\r\n" +
         extra_headers + "\r\n";
}

// Appends one masked client frame (RFC 6455 section 5.2) to `out`: `first` is the first header
// byte (FIN, RSV1..3 and the opcode, e.g. 0x82 = FIN + binary), then the mask bit with a 7-bit
// length, or 126 + 16-bit, or 127 + 64-bit length, big-endian, the key and the masked payload.
// One fixed key for every frame: the server must unmask whatever the key is, and a fixed one
// lets every frame be prebuilt (the load generator must not be the bottleneck).
inline void append_ws_frame(std::vector<char>& out, unsigned char first, const char* payload,
                            std::size_t n) {
  std::size_t ext = 0;
  out.push_back(char(first));
  if (n <= 125) {
    out.push_back(char(0x80 | n));
  } else if (n <= 0xffff) {
    out.push_back(char(0x80 | 126));
    ext = 2;
  } else {
    out.push_back(char(0x80 | 127));
    ext = 8;
  }
  for (std::size_t i = ext; i-- > 0;) out.push_back(char((n >> (8 * i)) & 0xff));
  const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  for (unsigned char m : mask) out.push_back(char(m));
  for (std::size_t i = 0; i < n; ++i) out.push_back(char(payload[i] ^ char(mask[i % 4])));
}

// The size of the server's (unmasked) frame carrying `n` payload bytes.
inline std::size_t ws_server_frame_size(std::size_t n) {
  return 2 + (n <= 125 ? 0 : n <= 0xffff ? 2 : 8) + n;
}

// The WebSocket upgrade of ws-echo and idle --ws, and nothing after it (no request, no reply):
// a GET upgrade request offering no extension, answered by a 101 that agrees to none.
inline echo_wire make_ws_upgrade_wire(const std::string& host_port) {
  echo_wire w;
  w.name = "ws";
  w.handshake = ws_upgrade_request(host_port);
  w.handshake_end = "\r\n\r\n";
  w.handshake_reply_prefix = "HTTP/1.1 101";
  // No extension is offered, so none may be agreed: a server that compressed its replies
  // (permessage-deflate) would not be measured alike (ws-echo: its frames would not have the
  // size counted on; idle --ws: its session would hold compression state).
  w.handshake_reply_absent = "sec-websocket-extensions";
  return w;
}

// ws-echo: the same exchange over WebSocket (RFC 6455). The handshake is the upgrade above;
// every request is one masked binary frame of S payload bytes (a client must mask, section
// 5.3); the reply is the server's unmasked frame of the same payload.
inline echo_wire make_ws_wire(std::size_t size, const std::string& host_port) {
  echo_wire w = make_ws_upgrade_wire(host_port);
  w.name = "ws-echo";
  std::vector<char> payload(size == 0 ? 1 : size);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = char('a' + i % 26);
  append_ws_frame(w.request, 0x82, payload.data(), payload.size());  // FIN + binary
  w.reply_size = ws_server_frame_size(payload.size());
  return w;
}

}  // namespace atoll_load
