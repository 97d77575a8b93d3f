// Proves an installed (or add_subdirectory'd) atoll::websocket compiles, links with its
// private dependencies (OpenSSL's crypto library, zlib) and runs: the RFC 6455 §1.3 accept
// key, and a compressed message written by a server and read back by a client.
#include <atoll/ws/codec.hpp>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

int main() {
  namespace ws = atl::ws;
  const std::string accept = ws::compute_accept_key("dGhlIHNhbXBsZSBub25jZQ==");

  ws::message_writer writer{ws::role::server};
  writer.enable_deflate(ws::deflate_params{});
  std::vector<std::byte> wire;
  if (writer.write_text("hello hello hello hello", wire)) return 1;

  ws::reader_options options;
  options.local_role = ws::role::client;
  ws::message_reader reader{options};
  reader.enable_deflate(ws::deflate_params{});
  std::span<const std::byte> data{wire};
  const ws::read_event ev = reader.next(data);

  if (accept != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || ev.kind != ws::read_kind::message ||
      ev.text() != "hello hello hello hello") {
    std::fprintf(stderr, "atoll websocket package consumer: wrong result (accept %s)\n",
                 accept.c_str());
    return 1;
  }
  std::printf("atoll websocket package consumer: accept key %s, %zu compressed bytes\n",
              accept.c_str(), wire.size());
  return 0;
}
