#pragma once
// What one echo exchange looks like on the wire, so the echo mode's loop serves any
// request/reply protocol where every request gets one reply of known size.

#include <cstddef>
#include <cstdint>
#include <string>
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

// Raw TCP echo: S bytes out, the same S bytes back.
inline echo_wire make_raw_wire(std::size_t size) {
  echo_wire w;
  w.name = "echo";
  w.request.resize(size == 0 ? 1 : size);
  for (std::size_t i = 0; i < w.request.size(); ++i) w.request[i] = char('a' + i % 26);
  w.reply_size = w.request.size();
  return w;
}

// ws-echo: the same exchange over WebSocket (RFC 6455). The handshake is a GET upgrade
// request; every request is one masked binary frame of S payload bytes (a client must mask,
// section 5.3); the reply is the server's unmasked frame of the same payload.
inline echo_wire make_ws_wire(std::size_t size, const std::string& host_port) {
  echo_wire w;
  w.name = "ws-echo";
  w.handshake =
      "GET / HTTP/1.1\r\n"
      "Host: " +
      host_port +
      "\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"  // RFC 6455 section 1.3's example
      "Sec-WebSocket-Version: 13\r\n"
      "\r\n";
  w.handshake_end = "\r\n\r\n";
  w.handshake_reply_prefix = "HTTP/1.1 101";
  // No extension is offered, so none may be agreed: a server that compressed its replies
  // (permessage-deflate) would not be measured alike, and its frames would not have the size
  // counted on below.
  w.handshake_reply_absent = "sec-websocket-extensions";
  const std::size_t n = size == 0 ? 1 : size;
  // Header (section 5.2): FIN + opcode 2 (binary); mask bit + 7-bit length, or 126 + 16-bit,
  // or 127 + 64-bit length, big-endian.
  std::size_t ext = 0;
  w.request.push_back(char(0x82));
  if (n <= 125) {
    w.request.push_back(char(0x80 | n));
  } else if (n <= 0xffff) {
    w.request.push_back(char(0x80 | 126));
    ext = 2;
  } else {
    w.request.push_back(char(0x80 | 127));
    ext = 8;
  }
  for (std::size_t i = ext; i-- > 0;) w.request.push_back(char((n >> (8 * i)) & 0xff));
  // One fixed mask for every frame: the server must unmask whatever the key is, and a fixed one
  // lets every request be prebuilt (the load generator must not be the bottleneck).
  const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  for (unsigned char m : mask) w.request.push_back(char(m));
  for (std::size_t i = 0; i < n; ++i) w.request.push_back(char(('a' + i % 26) ^ mask[i % 4]));
  w.reply_size = 2 + ext + n;  // the server's frames are not masked
  return w;
}

}  // namespace atoll_load
