#pragma once
// A blocking WebSocket test client over a real loopback socket, built from the module's own
// client-role codecs (message_writer masks, message_reader expects unmasked frames). Every
// read is bounded by a deadline; nothing sleeps to synchronise.

#include <atoll/endpoint.hpp>
#include <atoll/ws/codec.hpp>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "support/test_client.hpp"

namespace atl::test {

/// One event read by `ws_client`, copied out of the reader's buffers.
struct ws_event {
  ws::read_kind kind = ws::read_kind::need_more;  ///< need_more here means: timeout.
  ws::opcode type = ws::opcode::continuation;
  std::string payload;
  ws::close_code code = ws::close_code::no_status;
  std::string reason;
  bool eof = false;  ///< the server closed TCP (kind is need_more then).
};

inline std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

class ws_client {
 public:
  /// The HTTP response head of the handshake.
  std::string response;
  /// The status of that response (0 when none arrived).
  unsigned status = 0;
  /// The agreed permessage-deflate parameters, if any.
  std::optional<ws::deflate_params> deflate;

  /// Connects and performs the opening handshake with `extra_headers` (complete lines);
  /// `offer_deflate` adds a permessage-deflate offer. Check `status == 101`.
  static ws_client open(const atl::endpoint& ep, std::string_view target = "/",
                        bool offer_deflate = false, std::string extra_headers = {}) {
    ws_client c;
    c.sock_ = client::connect(ep);
    if (!c.sock_.valid()) return c;
    if (offer_deflate) {
      extra_headers += "Sec-WebSocket-Extensions: " + ws::format_deflate_offer({}) + "\r\n";
    }
    const std::string key = ws::generate_websocket_key();
    c.sock_.send(ws::format_upgrade_request("127.0.0.1", target, key, extra_headers));
    c.read_response_head();
    if (c.status == 101) {
      const auto accept = header_value(c.response, "Sec-WebSocket-Accept");
      if (accept != ws::compute_accept_key(key)) c.status = 0;
      const auto ext = header_value(c.response, "Sec-WebSocket-Extensions");
      if (!ext.empty()) {
        c.deflate = ws::parse_deflate_response(ext);
        if (c.deflate) {
          c.reader_.enable_deflate(*c.deflate);
          c.writer_.enable_deflate(*c.deflate);
        }
      }
    }
    return c;
  }

  /// Sends raw bytes and reads the HTTP response (for malformed handshakes).
  static ws_client raw_request(const atl::endpoint& ep, std::string_view request) {
    ws_client c;
    c.sock_ = client::connect(ep);
    if (!c.sock_.valid()) return c;
    c.sock_.send(request);
    c.read_response_head();
    return c;
  }

  /// The value of header `name` in `head` (case-sensitive name match is enough here).
  static std::string header_value(std::string_view head, std::string_view name) {
    const std::string needle = "\r\n" + std::string(name) + ": ";
    const auto at = head.find(needle);
    if (at == std::string_view::npos) return {};
    const auto begin = at + needle.size();
    return std::string(head.substr(begin, head.find("\r\n", begin) - begin));
  }

  bool send_text(std::string_view text) {
    out_.clear();
    writer_.write_text(text, out_);
    return flush();
  }
  bool send_binary(std::string_view data) {
    out_.clear();
    writer_.write_message(ws::opcode::binary, bytes_of(data), out_);
    return flush();
  }
  bool send_fragment(ws::opcode type, std::string_view data, bool fin) {
    out_.clear();
    writer_.write_fragment(type, bytes_of(data), fin, out_);
    return flush();
  }
  bool send_control(ws::opcode type, std::string_view payload) {
    out_.clear();
    writer_.write_control(type, bytes_of(payload), out_);
    return flush();
  }
  bool send_close(ws::close_code code, std::string_view reason = {}) {
    out_.clear();
    writer_.write_close(code, reason, out_);
    return flush();
  }
  /// Bytes as they are (hand-made frames).
  bool send_raw(std::string_view bytes) { return sock_.send(bytes); }

  /// The next event within `timeout` (kind need_more on timeout or EOF; see `eof`).
  ws_event next(std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    const auto deadline = clock::now() + timeout;
    for (;;) {
      std::span<const std::byte> data(pending_);
      const ws::read_event ev = reader_.next(data);
      const std::size_t used = pending_.size() - data.size();
      ws_event out;
      out.kind = ev.kind;
      out.type = ev.type;
      if (ev.kind != ws::read_kind::need_more) {
        out.payload.assign(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size());
        if (ev.kind == ws::read_kind::close) {
          out.code = ev.close.code;
          out.reason = std::string(ev.close.reason);
        }
        if (ev.kind == ws::read_kind::error) out.code = ev.code();
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
        return out;
      }
      pending_.clear();
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) return out;
      std::string chunk;
      const outcome o = sock_.read_some(chunk, left);
      if (o != outcome::data) {
        out.eof = o == outcome::eof || o == outcome::reset;
        return out;
      }
      const auto b = bytes_of(chunk);
      pending_.insert(pending_.end(), b.begin(), b.end());
    }
  }

  /// Next event that is not a ping or pong (pings are not answered here).
  ws_event next_data(std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    const auto deadline = clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      ws_event ev = next(left);
      if (ev.kind != ws::read_kind::ping && ev.kind != ws::read_kind::pong) return ev;
    }
  }

  /// Waits for the server to close TCP (eof or reset) within `timeout`.
  bool wait_eof(std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    const auto o = sock_.wait_closed(timeout);
    return o == outcome::eof || o == outcome::reset;
  }

  client& socket() { return sock_; }
  bool valid() const { return sock_.valid(); }

 private:
  bool flush() {
    return sock_.send(std::string_view(reinterpret_cast<const char*>(out_.data()), out_.size()));
  }

  void read_response_head() {
    std::string buf;
    const auto deadline = clock::now() + std::chrono::seconds{5};
    std::size_t end = std::string::npos;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0 || sock_.read_some(buf, left) != outcome::data) break;
    }
    if (end == std::string::npos) {
      response = buf;
      return;
    }
    response = buf.substr(0, end + 4);
    if (response.size() > 12 && response.starts_with("HTTP/1.1 ")) {
      status = static_cast<unsigned>(std::stoul(response.substr(9, 3)));
    }
    const auto rest = bytes_of(std::string_view(buf).substr(end + 4));
    pending_.assign(rest.begin(), rest.end());
  }

  static ws::reader_options client_reader() {
    ws::reader_options o;
    o.local_role = ws::role::client;
    o.max_frame_size = 0;
    o.max_message_size = 0;
    return o;
  }

  client sock_;
  ws::message_writer writer_{ws::role::client};
  ws::message_reader reader_{client_reader()};
  std::vector<std::byte> out_;
  std::vector<std::byte> pending_;
};

}  // namespace atl::test
