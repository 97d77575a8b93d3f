#pragma once
/// @file deflate.hpp
/// permessage-deflate (RFC 7692): negotiation of the extension in the opening handshake, and
/// the per-connection compressor / decompressor (zlib, raw DEFLATE).
///
/// Memory, per connection with compression on (zlib's own formulas): the compressor takes
/// about 2^(window_bits+2) + 2^(mem_level+9) bytes (256 KiB at 15 bits and mem_level 8), the
/// decompressor about 2^window_bits + 7 KiB (39 KiB at 15 bits). Both are allocated lazily,
/// on the first message that needs them. Lower window bits and mem_level trade compression
/// ratio for memory.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "atoll/ws/frame.hpp"

namespace atl::ws {

/// The server's permessage-deflate policy: what it asks for and what it accepts.
/// Defaults: zlib's defaults (15-bit windows, level 6, mem_level 8), context takeover allowed
/// both ways, no inflate ratio cap (the reader's `max_message_size` bounds every message).
struct deflate_options {
  /// Always drop the compressor's history after each message we send (saves no memory by
  /// itself, but stops messages from compressing against earlier ones). Also agreed when a
  /// client asks for it. Default false.
  bool server_no_context_takeover = false;
  /// Ask clients to drop their compressor's history after each message (`client_no_context_
  /// takeover` in the response), so our decompressor can be reset between messages. Default
  /// false.
  bool client_no_context_takeover = false;
  /// Largest LZ77 window (base-2 log, 8..15) our compressor uses. A client's smaller
  /// `server_max_window_bits` wins; below 15 it is announced in the response even when the
  /// client did not ask. Default 15.
  int server_max_window_bits = 15;
  /// Largest window (8..15) we ask clients to compress with, when their offer has
  /// `client_max_window_bits` (RFC 7692 §7.1.2.2: we may not ask otherwise, and then accept
  /// their full 15-bit window). Default 15.
  int client_max_window_bits = 15;
  /// zlib compression level, 0 (store) .. 9 (best). Default 6 (zlib's default).
  int compression_level = 6;
  /// zlib memLevel, 1..9: memory of the compressor's internal state. Default 8.
  int mem_level = 8;
  /// Messages smaller than this many bytes are sent uncompressed (RSV1 clear): compressing a
  /// few bytes costs CPU and usually grows them. 0 compresses everything. Default 0.
  std::size_t compress_threshold = 0;
  /// Inflate ratio cap, opt-in: a compressed message whose inflated size exceeds this many
  /// times its compressed size (once past `inflate_ratio_threshold`) fails with
  /// `error::inflate_ratio_exceeded` (close 1009), as Bandit's `max_inflate_ratio`. 0 = no
  /// cap. Default 0.
  ///
  /// Off by default because the reader's `max_message_size` already bounds what one message
  /// can cost — memory (the inflated message) and CPU (inflating is linear in the compressed
  /// plus inflated bytes, and both are capped by it, see `inflater`) — while ordinary
  /// repetitive text compresses far beyond any fixed ratio (1 MiB of one repeated JSON line:
  /// about 290:1; all one letter: about 1000:1, near DEFLATE's maximum of 1032:1) and would
  /// be refused although it is within the limit. Python's websockets and Node's ws have no
  /// ratio cap either. Set it to bound what one received byte may cost (at most this many
  /// inflated bytes) when `max_message_size` is large; 25 refuses such text past 64 KiB.
  std::uint32_t max_inflate_ratio = 0;
  /// With `max_inflate_ratio` set, the cap only applies once a message has inflated past this
  /// many bytes, so short, highly repetitive messages ("aaaa...", JSON with repeated keys) are
  /// not refused. Default 64 KiB.
  std::size_t inflate_ratio_threshold = 64 * 1024;
};

/// Checks `options` at setup: window bits 8..15, `compression_level` 0..9, `mem_level` 1..9.
/// Throws `std::invalid_argument` naming the field, e.g. "atoll: deflate_options.mem_level:
/// must be 1..9" (`prefix` replaces "deflate_options."). The codecs themselves clamp
/// out-of-range values rather than fail at run time.
void validate_deflate_options(const deflate_options& options,
                              std::string_view prefix = "deflate_options.");

/// The agreed parameters, as written in the 101 response (RFC 7692 §7.1). "server" is the
/// side that accepted the connection, whatever the local role.
struct deflate_params {
  bool server_no_context_takeover = false;  ///< the server resets its compressor per message.
  bool client_no_context_takeover = false;  ///< the client resets its compressor per message.
  int server_max_window_bits = 15;          ///< the server compresses with at most this window.
  int client_max_window_bits = 15;          ///< the client compresses with at most this window.
  /// Equal when all four parameters are equal.
  friend bool operator==(const deflate_params&, const deflate_params&) = default;
};

/// The outcome of a successful negotiation: what both sides use, and the extension to put in
/// the 101 response.
struct deflate_negotiation {
  deflate_params params;  ///< the agreed parameters.
  /// The `Sec-WebSocket-Extensions` value of the 101 response, e.g. "permessage-deflate;
  /// server_no_context_takeover; client_max_window_bits=10".
  std::string response;
};

/// Negotiates permessage-deflate from the client's `Sec-WebSocket-Extensions` (all header
/// lines joined with ", "). Offers are tried in the client's order of preference (RFC 6455
/// §9.1); an offer is declined, and the next one tried, when it repeats a parameter, has an
/// unknown parameter, gives a value to `*_no_context_takeover`, lacks the value of
/// `server_max_window_bits`, or has a window bits value that is not 8..15 in plain decimal
/// (RFC 7692 §7, §7.1.2). A header that is not valid extension syntax declines everything.
/// Other extensions are ignored. Returns nullopt for no compression (the connection goes on
/// uncompressed). Pure function, thread-safe.
///
/// The response repeats every window size the client offered (as §7.1.2.1 requires to
/// accept it) and adds our own limits when they are below 15. A client's
/// `server_max_window_bits=8` is honoured with zlib's 9-bit window, which never refers further
/// back than 256 bytes (see `deflater`).
std::optional<deflate_negotiation> negotiate_deflate(std::string_view extensions,
                                                     const deflate_options& options);

/// Client side: checks the server's `Sec-WebSocket-Extensions` response (one
/// permessage-deflate with valid, unrepeated parameters and nothing else) and returns the
/// agreed parameters, or nullopt if it is not an acceptable answer (the client must then fail
/// the connection, RFC 6455 §4.1). An empty string is not an agreement either: check for it
/// first. For test clients and the load generator.
std::optional<deflate_params> parse_deflate_response(std::string_view extensions);

/// The offer a client sends: "permessage-deflate; client_max_window_bits" followed by the
/// parameters in which `options` asks for less than the defaults. For test clients and the
/// load generator.
std::string format_deflate_offer(const deflate_options& options);

/// Compresses outgoing messages (RFC 7692 §7.2.1): raw DEFLATE, each message ended with a
/// sync flush whose trailing 0x00 0x00 0xff 0xff is removed; the history is kept between
/// messages (context takeover) unless the agreed parameters say otherwise for the local side.
///
/// zlib's windowBits quirk: zlib refuses windowBits 8 for raw deflate (since 1.2.9; earlier it
/// silently used 9). A negotiated 8 is therefore run as 9 — safe, because zlib's deflate never
/// emits a distance beyond window size − 262 bytes (250 for a 512-byte window), so a peer with
/// a 256-byte window decodes it (the same reasoning as Node's zlib binding).
///
/// Not thread-safe: one per connection, used on its io thread.
class deflater {
 public:
  /// A compressor for the `local` role's side of `params` (a server compresses with the
  /// server_* parameters), at `compression_level` and `mem_level` from `options`.
  deflater(const deflate_params& params, role local, const deflate_options& options = {});
  ~deflater();                               ///< Frees the zlib state.
  deflater(deflater&&) noexcept;             ///< Moves the zlib state.
  deflater& operator=(deflater&&) noexcept;  ///< Moves the zlib state.

  /// Compresses one piece of a message and appends the output to `out`. `fin` marks the
  /// last piece: the stream is sync-flushed, the 4-byte tail stripped (an empty message
  /// becomes the single byte 0x00, §7.2.3.6), and the history dropped if no context takeover
  /// was agreed for our side. For a whole message, one call with `fin = true`. Errors:
  /// `error::deflate_failed` (zlib out of memory); the deflater is then unusable.
  std::error_code compress(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out);

  /// Frees the zlib state (about 256 KiB at the defaults) until the next `compress`. Only
  /// allowed between messages; with context takeover the next message then compresses without
  /// the history, which is always valid (the history is an optimisation, not an agreement).
  void release() noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The work an `inflater` has done since it was made, for tests and monitoring: its CPU time is
/// linear in these.
struct inflate_stats {
  std::uint64_t input = 0;        ///< compressed bytes zlib consumed (appended tails included).
  std::uint64_t output = 0;       ///< inflated bytes produced.
  /// DEFLATE streams that ended (a block with BFINAL set) and were restarted for what follows.
  std::uint64_t stream_restarts = 0;
};

/// Decompresses incoming compressed messages (RFC 7692 §7.2.2), with limits:
/// - the absolute `max_size` per message, on the inflated size and on the compressed size
///   (as Node's ws and Python's websockets count it) → `error::message_too_large` (1009);
/// - the opt-in ratio cap of `deflate_options::max_inflate_ratio` (past
///   `inflate_ratio_threshold`) → `error::inflate_ratio_exceeded` (1009);
/// - data that is not valid DEFLATE → `error::inflate_failed` (1007); so is a message in
///   which more than one DEFLATE stream ends (a block with BFINAL set) without producing a
///   byte: no sender's flush (§7.2.3.4) does that, it only makes the receiver restart.
/// Limits are checked while inflating, in chunks of at most 16 KiB, so a bomb is stopped
/// after at most one chunk past the limit, never after inflating it whole. The ratio is
/// measured against the compressed bytes of the message received so far (never against a
/// length the peer merely announced), so output can never run ahead of the ratio times what
/// actually arrived; a message close to the ratio may therefore pass when it arrives in one
/// read and fail when the network splits it. The compressed size is checked in stream order
/// too: the bytes up to `max_size` are inflated, the first one past it fails the message.
///
/// Work: linear in the compressed plus the inflated bytes of a message, both at most
/// `max_size`, plus a small constant per call. zlib reads each compressed byte once, the output
/// buffer grows only as output arrives, and the restart after a stream end is O(1) (the window is
/// kept in place, never copied) and needs a byte of output (but once a message), so no input makes
/// the inflater work without consuming or producing bytes in proportion.
///
/// Not thread-safe: one per connection, used on its io thread.
class inflater {
 public:
  /// A decompressor for what the peer of the `local` role sends (a server inflates with the
  /// client_* parameters).
  inflater(const deflate_params& params, role local, const deflate_options& options = {});
  ~inflater();                               ///< Frees the zlib state.
  inflater(inflater&&) noexcept;             ///< Moves the zlib state.
  inflater& operator=(inflater&&) noexcept;  ///< Moves the zlib state.

  /// Inflates one piece of a compressed message (the payload of one frame, or part of it)
  /// and appends the output to `out`. `fin` marks the end of the message: the 4-byte tail is
  /// appended (§7.2.2) and the history dropped if the peer agreed to no context takeover.
  /// `max_size` caps the inflated size of the whole message (0 = no cap). On error the
  /// inflater is unusable (the connection must close).
  std::error_code decompress(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out,
                             std::uint64_t max_size);

  /// Inflated bytes of the current message so far.
  std::uint64_t message_size() const noexcept;

  /// The work done since construction (see `inflate_stats`).
  inflate_stats stats() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace atl::ws
