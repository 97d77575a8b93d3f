// The WebSocket session layer: the HTTP/1.1 upgrade stage and the RFC 6455 session, both as
// core handlers (atl::handler), glued to the socket-free codecs of this module.

#include "atoll/ws/session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include "atoll/log.hpp"
#include "atoll/ws/close.hpp"
#include "atoll/ws/message_reader.hpp"
#include "atoll/ws/message_writer.hpp"

namespace atl::ws {

namespace {

// What every connection of one upgrade_factory shares (read-only after construction).
struct endpoint_config {
  options opts;
  handshake_options handshake;  // opts.handshake with the deflate policy filled in
  reader_options reader;
  handler_maker make;
  http_fallback fallback;
};

std::span<const std::byte> as_bytes(std::string_view s) noexcept {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

constexpr std::size_t max_kept_out_buffer = 256 * 1024;  // see keep_capacity in message_reader.cpp

}  // namespace

namespace detail {

// ---- the session ----------------------------------------------------------------------------

class session_impl final : public ws::session, public atl::handler {
 public:
  session_impl(std::shared_ptr<const endpoint_config> config, atl::connection& c,
               std::unique_ptr<ws::handler> user, std::string subprotocol,
               std::optional<deflate_params> deflate)
      : config_(std::move(config)),
        conn_(&c),
        user_(std::move(user)),
        subprotocol_(std::move(subprotocol)),
        deflate_(deflate),
        reader_(config_->reader),
        writer_(role::server) {
    if (deflate_) {
      reader_.enable_deflate(*deflate_, config_->opts.compression);
      writer_.enable_deflate(*deflate_, config_->opts.compression);
    }
  }

  // -- atl::handler -----------------------------------------------------------------------------

  void on_open(atl::connection& c) override {
    conn_ = &c;
    c.set_read_timeout(config_->opts.idle_timeout);
    if (config_->opts.ping_interval.count() > 0) arm_timer(config_->opts.ping_interval);
    user_->on_open(*this);
  }

  void on_data(atl::connection&, std::span<const std::byte> data) override {
    // Read in place (issue 10): frames are unmasked where they lie and messages handed to the
    // user from there, not copied out. `data` is const in the handler interface, but this
    // handler's is always memory atoll owns, writes itself and does not read again after
    // on_data returns: the io thread's receive buffer (plain and TLS reads) or the core's copy
    // of an upgrade's leftover bytes (connection.cpp: read_some, settle). A
    // session_impl is installed only by connection::upgrade from http_stage, so no user code
    // calls this with memory of its own.
    read_frames(std::span<std::byte>{const_cast<std::byte*>(data.data()), data.size()});
    // The pong for the last ping of this read (one send, however many pings it held).
    send_pending_pong();
  }

  void read_frames(const std::span<std::byte> input) {
    std::span<std::byte> data = input;
    while (state_ == state::open || state_ == state::close_sent) {
      const read_event ev = reader_.next(data);
      switch (ev.kind) {
        case read_kind::need_more:
          return;
        case read_kind::message:
          if (state_ != state::open) break;  // data after our close is discarded (§1.4)
          if (ev.in_place) {
            // The reply to this message may be built in front of it (send_in_place).
            const auto end = static_cast<std::size_t>(ev.payload.data() - input.data()) +
                             ev.payload.size();
            reply_room_ = input.first(end);
            reply_payload_ = ev.payload.size();
          }
          if (ev.type == opcode::text) {
            user_->on_text(*this, ev.text());
          } else {
            user_->on_binary(*this, ev.payload);
          }
          reply_room_ = {};
          break;
        case read_kind::fragment:
          if (state_ != state::open) break;
          user_->on_fragment(*this, ev.type, ev.payload, ev.last);
          break;
        case read_kind::ping:
          if (state_ != state::open) break;
          answer_ping(ev.payload);
          user_->on_ping(*this, ev.payload);
          break;
        case read_kind::pong:
          if (state_ != state::open) break;
          user_->on_pong(*this, ev.payload);
          break;
        case read_kind::close:
          on_peer_close(ev.close);
          return;
        case read_kind::error:
          fail(ev.code());
          return;
      }
    }
  }

  void on_writable(atl::connection& c) override {
    if (state_ != state::open) return;
    backpressured_ = false;
    send_pending_pong();
    if (state_ != state::open) return;
    if (paused_by_us_) {
      paused_by_us_ = false;
      c.resume_reading();
    }
    user_->on_writable(*this);
  }

  void on_timeout(atl::connection& c) override {
    if (state_ == state::open) {
      // Idle: nothing received for idle_timeout. Going away, with the close handshake bounded
      // by close_timeout.
      close(close_code::going_away, "idle timeout");
    } else if (state_ == state::done) {
      c.close();
    }
    // close_sent: the close timer decides.
  }

  void on_shutdown(atl::connection& c) override {
    if (state_ == state::open) {
      user_->on_shutdown(*this);
    } else if (state_ == state::done) {
      c.close();
    }
  }

  void on_close(atl::connection&, close_reason, std::error_code) override {
    state_ = state::done;
    timer_.cancel();
    if (!closed_reported_) {
      closed_reported_ = true;
      user_->on_close(*this, close_code_, close_reason_);
    }
  }

  // -- ws::session ------------------------------------------------------------------------------

  send_result send_message(opcode type, std::span<const std::byte> data) {
    if (state_ != state::open) return send_result::dropped;
    write_pending_pong();
    if (out_.empty()) {
      if (auto frame = frame_in_place(type, data); !frame.empty()) return send_frames(frame);
    }
    if (writer_.write_message(type, data, out_)) {
      // zlib could not compress (out of memory): the compressor is unusable from now on.
      out_.clear();
      fail(close_code::internal_error);
      return send_result::dropped;
    }
    return flush();
  }

  send_result send_fragment(opcode type, std::span<const std::byte> data, bool last) {
    if (state_ != state::open) return send_result::dropped;
    if (!writer_.in_message() && type != opcode::text && type != opcode::binary) {
      return send_result::dropped;  // a message starts as text or binary, nothing else
    }
    write_pending_pong();
    if (writer_.write_fragment(type, data, last, out_)) {
      out_.clear();
      fail(close_code::internal_error);
      return send_result::dropped;
    }
    return flush();
  }

  send_result ping(std::span<const std::byte> payload) {
    if (state_ != state::open) return send_result::dropped;
    if (payload.size() > 125) return send_result::dropped;
    write_pending_pong();
    if (writer_.write_control(opcode::ping, payload, out_)) return send_result::dropped;
    return flush();
  }

  void close(close_code code, std::string_view reason) {
    if (state_ != state::open) return;
    if (writer_.write_close(code, reason, out_)) {
      out_.clear();
      code = close_code::no_status;
      reason = {};
      writer_.write_close(close_code::no_status, {}, out_);
    }
    close_code_ = code;
    close_reason_.assign(reason.data(), std::min(reason.size(), max_close_reason_size));
    state_ = state::close_sent;
    if (flush() == send_result::dropped) return;
    // The peer's close, then its FIN, are waited for; close_timeout bounds it. Reading goes
    // on whatever the queue holds: the peer's close frame is what we wait for.
    resume_if_paused();
    arm_timer(config_->opts.close_timeout);
  }

  bool is_open() const noexcept { return state_ == state::open; }
  std::string_view subprotocol() const noexcept { return subprotocol_; }
  const std::optional<deflate_params>& deflate() const noexcept { return deflate_; }
  atl::connection& conn() noexcept { return *conn_; }
  const atl::connection& conn() const noexcept { return *conn_; }

 private:
  enum class state : std::uint8_t {
    open,        // messages flow both ways
    close_sent,  // we sent a close frame; waiting for the peer's (data is discarded)
    done,        // the close handshake is over or the connection failed; TCP is closing
  };

  // The frame for `payload` built in place, when `payload` is (the front of) the message being
  // delivered, read in place: its header goes into the consumed bytes in front of it (at least
  // the received frame's own header, 6-14 bytes, where a server header takes 2-10), so the
  // frame is sent from the receive buffer as one span, with no copy of the payload — an echo
  // then costs a raw echo plus the unmasking. A gathered send (header + payload) in the core
  // would do the same for any payload. Empty when that does not apply.
  std::span<const std::byte> frame_in_place(opcode type, std::span<const std::byte> payload) {
    if (reply_room_.empty() || payload.empty() || payload.size() > reply_payload_) return {};
    const std::size_t headroom = reply_room_.size() - reply_payload_;
    if (payload.data() != reply_room_.data() + headroom) return {};
    std::array<std::byte, max_frame_header_size> header;
    const std::size_t n = writer_.message_header(type, payload.size(), header);
    if (n == 0 || n > headroom) return {};
    const std::span<std::byte> frame = reply_room_.subspan(headroom - n, n + payload.size());
    std::memcpy(frame.data(), header.data(), n);
    return frame;
  }

  // Sends the frames in out_.
  send_result flush() {
    const send_result r = send_frames(out_);
    out_.clear();
    if (out_.capacity() > max_kept_out_buffer) std::vector<std::byte>().swap(out_);
    return r;
  }

  // Flow control (issue 9): when the queue is above the connection's low-water mark the
  // session stops reading until on_writable, so a peer that does not read cannot make us
  // queue replies (pongs, echoes) without bound. A peer that lets more than max_write_buffer
  // pile up anyway is dropped with a close frame 1008, not a bare reset.
  send_result send_frames(std::span<const std::byte> frames) {
    if (conn_->buffered_amount() > conn_->max_write_buffer()) {
      drop_slow_consumer();
      return send_result::dropped;
    }
    const send_result r = conn_->send(frames);
    if (r == send_result::backpressure && state_ != state::done) {
      backpressured_ = true;  // on_writable follows once the queue has drained
      if (!conn_->reading_paused()) {
        paused_by_us_ = true;
        conn_->pause_reading();
      }
    }
    return r;
  }

  // §5.5.2: a pong with the identical payload. §5.5.3: when pings arrive faster than we can
  // answer, only the most recent needs one. So the last ping's payload (≤ 125 bytes) waits
  // here, replacing the one before, and is answered once per read (on_data's end), before
  // anything the handler sends, or, while the queue is above its low-water mark
  // (backpressured_), from on_writable: a flood of pings costs one pong per read, and nothing
  // while the peer does not read.
  void answer_ping(std::span<const std::byte> payload) {
    pending_pong_.assign(payload.begin(), payload.end());
    pong_pending_ = true;
  }

  // Frames the pending pong into out_ (sent with what follows it), unless backpressured.
  void write_pending_pong() {
    if (!pong_pending_ || backpressured_) return;
    pong_pending_ = false;
    writer_.write_control(opcode::pong, pending_pong_, out_);
  }

  void send_pending_pong() {
    if (state_ != state::open || !pong_pending_ || backpressured_) return;
    write_pending_pong();
    if (!out_.empty()) flush();
  }

  void resume_if_paused() {
    if (!paused_by_us_) return;
    paused_by_us_ = false;
    conn_->resume_reading();
  }

  // The peer lets our messages pile up past max_write_buffer: a close frame 1008 goes behind
  // what is queued (reaching the peer if it ever reads), and the connection is closed as a
  // slow consumer once it has drained, or reset after close_timeout.
  void drop_slow_consumer() {
    if (state_ == state::done) return;
    static constexpr std::string_view why = "slow consumer";
    std::vector<std::byte> frame;
    if (state_ == state::open) {
      close_code_ = close_code::policy_violation;
      close_reason_.assign(why);
      writer_.write_close(close_code::policy_violation, why, frame);
    }
    state_ = state::done;
    timer_.cancel();
    conn_->set_read_timeout(config_->opts.close_timeout);
    conn_->close_with(frame, close_reason::slow_consumer);
  }

  void on_peer_close(const close_info& info) {
    close_code_ = info.code;
    close_reason_.assign(info.reason);
    if (state_ == state::open) {
      // §5.5.1: echo the status code (an empty close for none); we then close TCP first
      // (§7.1.1: the server should).
      if (writer_.write_close(info.code, {}, out_)) {
        out_.clear();
        writer_.write_close(close_code::no_status, {}, out_);
      }
      flush();
    }
    end_tcp();
  }

  // §7.1.7 "Fail the WebSocket Connection": a close frame with the reason's code, then TCP.
  void fail(close_code code) {
    if (state_ == state::open) {
      close_code_ = code;
      close_reason_.clear();
      if (!writer_.write_close(code, {}, out_)) flush();
    }
    end_tcp();
  }

  // Our side of the close handshake is over: close TCP after the queue (the server closes
  // first, §7.1.1). A peer that does not read gets close_timeout, even with idle_timeout 0.
  void end_tcp() {
    state_ = state::done;
    timer_.cancel();
    conn_->set_read_timeout(config_->opts.close_timeout);
    conn_->close();
  }

  // The connection's own guarded timer: a send inside on_timer that ends the connection
  // cannot destroy this session under it (the keepalive use-after-free of issue 9).
  void arm_timer(std::chrono::milliseconds after) {
    timer_ = conn_->after(after, [this](atl::connection&) { on_timer(); });
  }

  void on_timer() {
    switch (state_) {
      case state::open:
        // Keepalive; a dead peer is caught by idle_timeout (no pong, no data).
        ping({});
        arm_timer(config_->opts.ping_interval);
        break;
      case state::close_sent:
        // close_timeout: the peer never answered our close.
        end_tcp();
        break;
      case state::done:
        break;  // a keepalive tick after the end: TCP is closing already

    }
  }

  std::shared_ptr<const endpoint_config> config_;
  atl::connection* conn_;
  std::unique_ptr<ws::handler> user_;
  std::string subprotocol_;
  std::optional<deflate_params> deflate_;
  message_reader reader_;
  message_writer writer_;
  std::vector<std::byte> out_;  // frames being built; sent (copied or written) at once
  // While on_text/on_binary runs for a message read in place: the input from its start to the
  // message's end (the bytes in front of the message are consumed: frame_in_place's room).
  std::span<std::byte> reply_room_;
  std::size_t reply_payload_ = 0;  // the message's size (the end of reply_room_)
  std::vector<std::byte> pending_pong_;  // the last ping's payload while a pong waits
  atl::connection_timer timer_;
  state state_ = state::open;
  bool closed_reported_ = false;
  bool pong_pending_ = false;
  bool backpressured_ = false;  // a send said backpressure; on_writable has not come yet
  bool paused_by_us_ = false;   // flush() paused reading for it; on_writable resumes
  close_code close_code_ = close_code::abnormal;
  std::string close_reason_;
};

// ---- the HTTP/1.1 upgrade stage ------------------------------------------------------------

class http_stage final : public atl::handler {
 public:
  explicit http_stage(std::shared_ptr<const endpoint_config> config)
      : config_(std::move(config)), parser_(config_->opts.http) {}

  void on_open(atl::connection& c) override {
    conn_ = &c;
    arm_request_timer();
  }

  void on_data(atl::connection& c, std::span<const std::byte> data) override {
    process(c, data);
  }

  // The fallback's replies met backpressure (below): go on with the requests kept back.
  void on_writable(atl::connection& c) override {
    if (!paused_ || done_) return;
    paused_ = false;
    std::vector<std::byte> kept = std::move(kept_);
    kept_ = {};
    c.resume_reading();
    process(c, kept);
  }

  void on_close(atl::connection&, close_reason, std::error_code) override { timer_.cancel(); }

 private:
  void process(atl::connection& c, std::span<const std::byte> data) {
    while (!data.empty() && !done_) {
      const parse_result r = parser_.parse(data);
      if (r.status == parse_status::need_more) return;
      if (r.status == parse_status::error) {
        refuse(c, format_error_response(r.ec));
        return;
      }
      const std::span<const std::byte> rest = data.subspan(r.consumed);
      const http_request& request = parser_.request();
      if (config_->fallback && !is_websocket_upgrade(request)) {
        if (!serve_fallback(c, request)) return;
        parser_.reset();
        arm_request_timer();
        data = rest;
        // Flow control (issue 9): a client that pipelines requests and does not read the
        // answers would make us queue them without bound. Above the low-water mark (an empty
        // send reports it) the rest of this read waits, with reading paused, for on_writable.
        if (c.send(std::span<const std::byte>{}) == send_result::backpressure) {
          kept_.assign(data.begin(), data.end());
          paused_ = true;
          c.pause_reading();
          return;
        }
        continue;
      }
      upgrade(c, request, rest);
      return;
    }
  }

  void refuse(atl::connection& c, const std::string& response) {
    done_ = true;
    timer_.cancel();
    c.send(response);
    c.close();
  }

  // Returns true when the connection stays for another request.
  bool serve_fallback(atl::connection& c, const http_request& request) {
    if (request.content_length().value_or(0) > 0 || request.header("Transfer-Encoding")) {
      refuse(c, format_error_response(413, "request bodies are not supported\n"));
      return false;
    }
    try {
      config_->fallback(request, c);
    } catch (const std::exception& e) {
      atl::logger()->error("ws: connection {}: http fallback threw: {}", c.id(), e.what());
      refuse(c, format_error_response(500));
      return false;
    } catch (...) {
      atl::logger()->error("ws: connection {}: http fallback threw", c.id());
      refuse(c, format_error_response(500));
      return false;
    }
    if (!c.is_open()) {
      done_ = true;
      return false;
    }
    if (!request.keep_alive()) {
      done_ = true;
      c.close();
      return false;
    }
    return true;
  }

  void upgrade(atl::connection& c, const http_request& request,
               std::span<const std::byte> leftover) {
    handshake_result hs;
    std::unique_ptr<ws::handler> user;
    try {
      hs = accept_handshake(request, config_->handshake);
      if (!hs.accepted()) {
        refuse(c, hs.response);
        return;
      }
      user = config_->make(request, c);
    } catch (const std::exception& e) {
      atl::logger()->error("ws: connection {}: upgrade hook threw: {}", c.id(), e.what());
      refuse(c, format_error_response(500));
      return;
    } catch (...) {
      atl::logger()->error("ws: connection {}: upgrade hook threw", c.id());
      refuse(c, format_error_response(500));
      return;
    }
    if (!user) {
      refuse(c, format_error_response(404));
      return;
    }
    done_ = true;
    timer_.cancel();
    if (c.send(hs.response) == send_result::dropped) return;
    c.upgrade(std::make_unique<session_impl>(config_, c, std::move(user),
                                             std::move(hs.subprotocol), hs.deflate),
              leftover);
  }

  void arm_request_timer() {
    const auto timeout = config_->opts.request_timeout;
    if (timeout.count() <= 0 || conn_ == nullptr) return;
    timer_ = conn_->after(timeout, [this](atl::connection& c) {
      // The request head did not arrive in time: close without an answer (a slow-loris peer
      // does not deserve one, and a 408 would race with its next bytes).
      done_ = true;
      c.close();
    });
  }

  std::shared_ptr<const endpoint_config> config_;
  http_request_parser parser_;
  atl::connection* conn_ = nullptr;
  atl::connection_timer timer_;
  std::vector<std::byte> kept_;  // unparsed bytes held back while paused (≤ one read)
  bool done_ = false;
  bool paused_ = false;  // reading paused for backpressure; on_writable goes on
};

}  // namespace detail

// ---- ws::handler ------------------------------------------------------------------------------

void handler::on_shutdown(session& s) { s.close(close_code::going_away, "server shutting down"); }

// ---- ws::session ------------------------------------------------------------------------------

detail::session_impl& session::impl() noexcept { return static_cast<detail::session_impl&>(*this); }
const detail::session_impl& session::impl() const noexcept {
  return static_cast<const detail::session_impl&>(*this);
}

send_result session::send_text(std::string_view text) {
  return impl().send_message(opcode::text, as_bytes(text));
}
send_result session::send_binary(std::span<const std::byte> data) {
  return impl().send_message(opcode::binary, data);
}
send_result session::send_fragment(opcode type, std::span<const std::byte> data, bool last) {
  return impl().send_fragment(type, data, last);
}
send_result session::ping(std::span<const std::byte> payload) { return impl().ping(payload); }
send_result session::ping(std::string_view payload) { return impl().ping(as_bytes(payload)); }
void session::close(close_code code, std::string_view reason) { impl().close(code, reason); }
std::size_t session::buffered_amount() const noexcept { return impl().conn().buffered_amount(); }
bool session::is_open() const noexcept { return impl().is_open(); }
std::string_view session::subprotocol() const noexcept { return impl().subprotocol(); }
const std::optional<deflate_params>& session::deflate() const noexcept { return impl().deflate(); }
endpoint session::peer() const noexcept { return impl().conn().peer(); }
std::uint64_t session::id() const noexcept { return impl().conn().id(); }
atl::connection& session::connection() noexcept { return impl().conn(); }
session_handle session::handle() { return session_handle(impl().conn().handle(), &impl()); }

// ---- ws::session_handle -----------------------------------------------------------------------

bool session_handle::dispatch(std::function<void(session&)> fn) const {
  if (session_ == nullptr) return false;
  return conn_.dispatch([s = session_, fn = std::move(fn)](atl::connection&) { fn(*s); });
}

bool session_handle::send_text(std::string text) const {
  return dispatch([text = std::move(text)](session& s) { s.send_text(text); });
}
bool session_handle::send_text(std::shared_ptr<const std::string> text) const {
  if (!text) return false;
  return dispatch([text = std::move(text)](session& s) { s.send_text(*text); });
}
bool session_handle::send_binary(std::vector<std::byte> data) const {
  return dispatch([data = std::move(data)](session& s) { s.send_binary(data); });
}
bool session_handle::send_binary(std::span<const std::byte> data) const {
  return send_binary(std::vector<std::byte>(data.begin(), data.end()));
}
bool session_handle::close(close_code code, std::string reason) const {
  return dispatch([code, reason = std::move(reason)](session& s) { s.close(code, reason); });
}

// ---- helpers and the factory ------------------------------------------------------------------

std::string format_http_response(unsigned status, std::string_view content_type,
                                 std::string_view body, bool keep_alive,
                                 std::string_view extra_headers) {
  std::string out;
  out.reserve(128 + content_type.size() + extra_headers.size() + body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!content_type.empty()) {
    out += "Content-Type: ";
    out += content_type;
    out += "\r\n";
  }
  out += "Content-Length: ";
  out += std::to_string(body.size());
  out += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
  out += extra_headers;
  out += "\r\n";
  out += body;
  return out;
}

namespace {

void validate(const options& o) {
  auto bad = [](std::string_view field, std::string_view why) {
    throw std::invalid_argument("atoll: ws::options." + std::string(field) + ": " +
                                std::string(why));
  };
  if (o.close_timeout.count() <= 0) bad("close_timeout", "must be > 0");
  if (o.idle_timeout.count() < 0) bad("idle_timeout", "must be >= 0 (0 = never)");
  if (o.ping_interval.count() < 0) bad("ping_interval", "must be >= 0 (0 = off)");
  if (o.request_timeout.count() < 0) bad("request_timeout", "must be >= 0 (0 = no limit)");
  if (o.http.max_request_line == 0) bad("http.max_request_line", "must be > 0");
  if (o.http.max_header_bytes == 0) bad("http.max_header_bytes", "must be > 0");
  if (o.http.max_headers == 0) bad("http.max_headers", "must be > 0");
  if (o.deflate) validate_deflate_options(o.compression, "ws::options.compression.");
}

}  // namespace

atl::handler_factory upgrade_factory(options opts, handler_maker make, http_fallback fallback) {
  validate(opts);
  if (!make) throw std::invalid_argument("atoll: ws::upgrade_factory: make_handler is empty");
  auto config = std::make_shared<endpoint_config>();
  config->handshake = opts.handshake;
  config->handshake.deflate.reset();
  if (opts.deflate) config->handshake.deflate = opts.compression;
  config->reader.local_role = role::server;
  config->reader.max_frame_size = opts.max_frame_size;
  config->reader.max_message_size = opts.max_message_size;
  config->reader.stream_fragments = opts.stream_fragments;
  config->opts = std::move(opts);
  config->make = std::move(make);
  config->fallback = std::move(fallback);
  std::shared_ptr<const endpoint_config> shared = std::move(config);
  return [shared](atl::connection&) -> std::unique_ptr<atl::handler> {
    return std::make_unique<detail::http_stage>(shared);
  };
}

}  // namespace atl::ws
