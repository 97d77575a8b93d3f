// libFuzzer target: the receive path. The frame header parser on its own (whole vs. byte by
// byte), then message_reader in a fuzzer-chosen configuration (role, deflate, streaming,
// limits), fed whole and in fuzzer-chosen chunk sizes: both must report the same events, and
// every event must respect the limits and validation rules. Finally the input as a message
// payload through message_writer must read back unchanged.
#include <cstdint>
#include <string>
#include <vector>

#include "atoll/ws/error.hpp"
#include "atoll/ws/frame.hpp"
#include "atoll/ws/message_reader.hpp"
#include "atoll/ws/message_writer.hpp"
#include "atoll/ws/utf8.hpp"
#include "fuzz_support.hpp"

namespace {

namespace ws = atl::ws;

struct event {
  ws::read_kind kind;
  ws::opcode type;
  bool last;
  std::vector<std::byte> payload;
  ws::close_code code;
  std::error_code ec;
  bool operator==(const event&) const = default;
};

// Reads `data` in chunks of `chunk` bytes (0 = whole), collecting events; in streaming mode
// consecutive fragments are merged so that chunking does not change the record.
std::vector<event> read_events(const ws::reader_options& options, bool deflate,
                               const ws::deflate_params& params,
                               const ws::deflate_options& deflate_options,
                               std::span<const std::byte> data, std::size_t chunk) {
  ws::message_reader reader{options};
  if (deflate) reader.enable_deflate(params, deflate_options);
  std::vector<event> events;
  std::size_t offset = 0;
  while (offset < data.size() || offset == 0) {
    const std::size_t n = chunk == 0 ? data.size() : std::min(chunk, data.size() - offset);
    std::span<const std::byte> piece = data.subspan(offset, n);
    offset += n;
    for (;;) {
      const ws::read_event ev = reader.next(piece);
      if (ev.kind == ws::read_kind::need_more) {
        ATOLL_FUZZ_CHECK(piece.empty());
        break;
      }
      // Invariants of every event.
      switch (ev.kind) {
        case ws::read_kind::message:
        case ws::read_kind::fragment:
          ATOLL_FUZZ_CHECK(ev.type == ws::opcode::text || ev.type == ws::opcode::binary);
          if (options.max_message_size != 0) {
            ATOLL_FUZZ_CHECK(ev.payload.size() <= options.max_message_size);
          }
          if (ev.kind == ws::read_kind::message && ev.type == ws::opcode::text) {
            ATOLL_FUZZ_CHECK(ws::is_valid_utf8(ev.payload));
          }
          break;
        case ws::read_kind::ping:
        case ws::read_kind::pong:
          ATOLL_FUZZ_CHECK(ev.payload.size() <= ws::max_control_payload_size);
          break;
        case ws::read_kind::close:
          ATOLL_FUZZ_CHECK(ev.close.code == ws::close_code::no_status ||
                           ws::is_valid_close_code(ev.close.code));
          ATOLL_FUZZ_CHECK(ws::is_valid_utf8(ev.close.reason));
          break;
        case ws::read_kind::error: {
          const auto code = ev.code();
          ATOLL_FUZZ_CHECK(code == ws::close_code::protocol_error ||
                           code == ws::close_code::invalid_payload ||
                           code == ws::close_code::message_too_big);
          break;
        }
        case ws::read_kind::need_more:
          break;
      }
      const bool merge = ev.kind == ws::read_kind::fragment && !events.empty() &&
                         events.back().kind == ws::read_kind::fragment && !events.back().last;
      if (merge) {
        events.back().payload.insert(events.back().payload.end(), ev.payload.begin(),
                                     ev.payload.end());
        events.back().last = ev.last;
      } else {
        events.push_back({ev.kind,
                          ev.type,
                          ev.last,
                          {ev.payload.begin(), ev.payload.end()},
                          ev.close.code,
                          ev.ec});
      }
      if (ev.kind == ws::read_kind::error || ev.kind == ws::read_kind::close) return events;
    }
    if (data.empty()) break;
  }
  return events;
}

// In streaming mode, the bytes of a message that precede an error are delivered or not
// depending on where reads end (the bad byte may come in the same read). Drop that unfinished
// piece so the record compares across chunkings.
void drop_piece_before_error(std::vector<event>& events) {
  const std::size_t n = events.size();
  if (n >= 2 && events[n - 1].kind == ws::read_kind::error &&
      events[n - 2].kind == ws::read_kind::fragment && !events[n - 2].last) {
    events.erase(events.end() - 2);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  atoll_fuzz::input in{bytes, size};
  const std::uint8_t config = in.take_byte();
  const std::uint8_t chunk_byte = in.take_byte();
  const auto data = in.rest();

  // 1. The header parser alone: whole and byte by byte agree.
  {
    ws::frame_parser_options o;
    o.local_role = (config & 1) ? ws::role::client : ws::role::server;
    o.allow_rsv1 = (config & 2) != 0;
    o.max_frame_size = (config & 8) ? 1000 : 0;
    ws::frame_parser whole{o};
    const auto a = whole.parse(data);
    ws::frame_parser bytewise{o};
    ws::parse_result b;
    for (std::size_t i = 0; i < data.size(); ++i) {
      b = bytewise.parse(data.subspan(i, 1));
      if (b.status != ws::parse_status::need_more) break;
    }
    if (data.size() > 0) {
      ATOLL_FUZZ_CHECK(a.status == b.status);
      ATOLL_FUZZ_CHECK(a.ec == b.ec);
      if (a.status == ws::parse_status::complete) {
        const auto& ha = whole.header();
        const auto& hb = bytewise.header();
        ATOLL_FUZZ_CHECK(ha.payload_size == hb.payload_size && ha.op == hb.op && ha.fin == hb.fin &&
                         ha.key == hb.key && ha.rsv1 == hb.rsv1);
        ATOLL_FUZZ_CHECK(a.consumed == ws::frame_header_size(ha.payload_size, ha.masked));
      }
    }
  }

  // 2. The reader, whole vs. chunked.
  ws::reader_options options;
  options.local_role = (config & 1) ? ws::role::client : ws::role::server;
  const bool deflate = (config & 2) != 0;
  options.stream_fragments = (config & 4) != 0;
  if (config & 8) {
    options.max_frame_size = 1000;
    options.max_message_size = 4000;
  }
  ws::deflate_params params;
  params.client_no_context_takeover = (config & 16) != 0;
  params.server_no_context_takeover = (config & 16) != 0;
  params.client_max_window_bits = 8 + (config >> 5);
  params.server_max_window_bits = 8 + (config >> 5);

  ws::deflate_options deflate_options;
  deflate_options.max_inflate_ratio = 25;  // opt-in: keeps the ratio error path fuzzed
  auto whole = read_events(options, deflate, params, deflate_options, data, 0);
  const std::size_t chunk = 1 + chunk_byte % 17;
  auto chunked = read_events(options, deflate, params, deflate_options, data, chunk);
  drop_piece_before_error(whole);
  drop_piece_before_error(chunked);
  if (whole != chunked) {
    // Two legitimate differences, both ending the record with an error:
    // - the inflate ratio is measured against the compressed bytes received so far, so
    //   smaller reads can only trip it earlier, never later;
    // - with a window under 32 KiB, a stream that refers further back than the negotiated
    //   window (RFC 7692 §7.1.2 forbids it) is refused by zlib only when the bytes referred
    //   to are not in the same inflate() call's output, so whether such a peer is refused
    //   depends on where its reads end. Valid streams read the same in any chunking; with a
    //   32 KiB window there is nothing further back, so the full check holds there.
    const auto ends_with = [](const std::vector<event>& e, ws::error what) {
      return !e.empty() && e.back().ec == what;
    };
    const bool ratio = ends_with(chunked, ws::error::inflate_ratio_exceeded);
    const bool window = deflate && params.client_max_window_bits < 15 &&
                        (ends_with(chunked, ws::error::inflate_failed) ||
                         ends_with(whole, ws::error::inflate_failed));
    ATOLL_FUZZ_CHECK(ratio || window);
    if (ratio) ATOLL_FUZZ_CHECK(chunked.size() <= whole.size() + 1);
    const std::size_t common = ratio ? chunked.size() : std::min(chunked.size(), whole.size());
    for (std::size_t i = 0; i + 2 < common; ++i) ATOLL_FUZZ_CHECK(chunked[i] == whole[i]);
  }

  // 3. The input as a message: written by the peer role, read back unchanged.
  {
    const ws::role writer_role =
        options.local_role == ws::role::server ? ws::role::client : ws::role::server;
    ws::message_writer writer{writer_role};
    if (deflate) writer.enable_deflate(params);
    std::vector<std::byte> wire;
    const ws::opcode type = ws::is_valid_utf8(data) ? ws::opcode::text : ws::opcode::binary;
    ATOLL_FUZZ_CHECK(!writer.write_message(type, data, wire));
    ws::reader_options round_trip = options;
    round_trip.max_frame_size = 0;
    round_trip.max_message_size = 0;
    round_trip.stream_fragments = false;
    ws::deflate_options no_ratio_cap;
    no_ratio_cap.max_inflate_ratio = 0;  // the input may be all zeros
    const auto events = read_events(round_trip, deflate, params, no_ratio_cap, wire, chunk);
    ATOLL_FUZZ_CHECK(events.size() == 1);
    ATOLL_FUZZ_CHECK(events[0].kind == ws::read_kind::message && events[0].type == type);
    ATOLL_FUZZ_CHECK(events[0].payload.size() == data.size() &&
                     std::equal(data.begin(), data.end(), events[0].payload.begin()));
  }
  return 0;
}
