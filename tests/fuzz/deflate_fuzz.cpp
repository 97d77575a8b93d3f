// libFuzzer target: permessage-deflate. Arbitrary bytes inflated under the caps never crash
// and never exceed them, and the inflater's work stays in proportion to its input and output
// (stream restarts need output); arbitrary messages compressed in fuzzer-chosen pieces and
// window sizes inflate back unchanged, message after message (context takeover on or off).
// The seed corpus holds the inflate bombs of issue 9: empty blocks with and without BFINAL,
// one-letter streams, and zeros.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "atoll/ws/deflate.hpp"
#include "atoll/ws/error.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  namespace ws = atl::ws;
  atoll_fuzz::input in{bytes, size};
  const std::uint8_t config = in.take_byte();
  const std::uint8_t piece_byte = in.take_byte();
  const auto data = in.rest();
  const std::size_t piece = 1 + piece_byte % 64;

  ws::deflate_params params;
  params.server_max_window_bits = 8 + (config & 7);
  params.client_max_window_bits = 8 + ((config >> 3) & 7);
  params.server_no_context_takeover = (config & 0x40) != 0;
  params.client_no_context_takeover = (config & 0x80) != 0;

  // 1. Untrusted compressed bytes, in pieces, under a 64 KiB absolute cap and the ratio cap.
  {
    ws::deflate_options options;
    options.max_inflate_ratio = 25;
    options.inflate_ratio_threshold = 1024;
    ws::inflater inflater{params, ws::role::server, options};
    std::vector<std::byte> out;
    std::error_code ec;
    for (std::size_t off = 0; off < data.size() && !ec; off += piece) {
      const std::size_t n = std::min(piece, data.size() - off);
      ec = inflater.decompress(data.subspan(off, n), off + n == data.size(), out, 64 * 1024);
    }
    if (ec) {
      ATOLL_FUZZ_CHECK(ec == ws::error::inflate_failed || ec == ws::error::message_too_large ||
                       ec == ws::error::inflate_ratio_exceeded);
    }
    // The caps hold whatever the input: at most one byte past either of them.
    ATOLL_FUZZ_CHECK(out.size() <= 64 * 1024 + 1);
    ATOLL_FUZZ_CHECK(out.size() <= std::max<std::size_t>(1024, 25 * (data.size() + 4)) + 1);
    // Bounded work: no more than the input (and the appended tail) is read, and every stream
    // restart but one is paid for by a byte of output.
    const ws::inflate_stats work = inflater.stats();
    ATOLL_FUZZ_CHECK(work.input <= data.size() + 4);
    ATOLL_FUZZ_CHECK(work.output == out.size());
    ATOLL_FUZZ_CHECK(work.stream_restarts <= work.output + 1);
  }

  // 2. Round trips: the input as two messages, compressed in pieces, both directions.
  for (const ws::role sender : {ws::role::server, ws::role::client}) {
    const ws::role receiver = sender == ws::role::server ? ws::role::client : ws::role::server;
    ws::deflate_options options;
    options.compression_level = config % 10;
    options.max_inflate_ratio = 0;
    ws::deflater deflater{params, sender, options};
    ws::inflater inflater{params, receiver, options};
    for (int message = 0; message < 2; ++message) {
      std::vector<std::byte> compressed;
      std::size_t off = 0;
      do {
        const std::size_t n = std::min(piece, data.size() - off);
        ATOLL_FUZZ_CHECK(
            !deflater.compress(data.subspan(off, n), off + n == data.size(), compressed));
        off += n;
      } while (off < data.size());
      std::vector<std::byte> out;
      ATOLL_FUZZ_CHECK(!inflater.decompress(compressed, true, out, 0));
      ATOLL_FUZZ_CHECK(out.size() == data.size() &&
                       std::equal(out.begin(), out.end(), data.begin()));
    }
  }
  return 0;
}
