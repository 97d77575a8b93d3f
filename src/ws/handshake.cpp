#include "atoll/ws/handshake.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <vector>

#include "atoll/ws/error.hpp"
#include "http_chars.hpp"

namespace atl::ws {
namespace {

// RFC 6455 §1.3 / §4.2.2: the GUID appended to the key before hashing.
constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

constexpr bool is_base64_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

std::string base64(const unsigned char* data, std::size_t size) {
  std::string out(4 * ((size + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string join_header(const http_request& request, std::string_view name) {
  std::string joined;
  for (const auto& h : request.headers()) {
    if (!iequals(h.name, name)) continue;
    if (!joined.empty()) joined += ", ";
    joined += h.value;
  }
  return joined;
}

handshake_result refuse(std::error_code ec) {
  handshake_result r;
  r.ec = ec;
  r.status = http_status(ec);
  r.response = format_error_response(ec);
  return r;
}

}  // namespace

bool is_valid_websocket_key(std::string_view key) noexcept {
  // §4.1: "a randomly selected 16-byte value that has been base64-encoded"; 16 bytes encode
  // to 22 characters and "==" padding. §4.2.1 item 5 requires the server to check it.
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  return std::all_of(key.begin(), key.begin() + 22, is_base64_char);
}

std::string compute_accept_key(std::string_view key) {
  std::string input;
  input.reserve(key.size() + websocket_guid.size());
  input += key;
  input += websocket_guid;
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_size = 0;
  if (EVP_Digest(input.data(), input.size(), digest.data(), &digest_size, EVP_sha1(), nullptr) !=
      1) {
    // Only on a broken OpenSSL (SHA-1 unavailable): not a per-connection condition.
    throw std::runtime_error("atoll: OpenSSL SHA-1 digest failed");
  }
  return base64(digest.data(), digest_size);
}

bool is_websocket_upgrade(const http_request& request) noexcept {
  return request.has_token("Upgrade", "websocket");
}

handshake_result accept_handshake(const http_request& request, const handshake_options& options) {
  // RFC 6455 §4.2.1, in the order of the list there; §4.2.2 says to answer a failed check
  // with an HTTP error such as 400 and to stop.
  if (request.method() != "GET") return refuse(error::method_not_allowed);
  if (request.version_major() != 1 || request.version_minor() < 1) {
    return refuse(error::upgrade_needs_http11);
  }
  if (request.header_count("Host") != 1) return refuse(error::missing_host);
  // The Upgrade value is a list of protocols (RFC 9110 §7.8), compared case-insensitively.
  if (!request.has_token("Upgrade", "websocket")) return refuse(error::no_upgrade_websocket);
  if (!request.has_token("Connection", "upgrade")) return refuse(error::no_connection_upgrade);
  // §4.2.2: an unsupported version is answered with 426 and the versions we speak, before
  // anything else about the key matters to that client.
  const auto version = request.header("Sec-WebSocket-Version");
  if (!version || request.header_count("Sec-WebSocket-Version") != 1 || *version != "13") {
    return refuse(error::bad_websocket_version);
  }
  const auto key = request.header("Sec-WebSocket-Key");
  if (!key || request.header_count("Sec-WebSocket-Key") != 1 || !is_valid_websocket_key(*key)) {
    return refuse(error::bad_websocket_key);
  }

  // §4.1: Sec-WebSocket-Protocol is a list of tokens, possibly over several lines.
  std::vector<std::string_view> offered;
  for (const auto& h : request.headers()) {
    if (!iequals(h.name, "Sec-WebSocket-Protocol")) continue;
    for (std::string_view p : token_list{h.value}) {
      if (!detail::is_token(p)) return refuse(error::bad_subprotocol_list);
      offered.push_back(p);
    }
  }

  // §4.2.2 item 4 / §10.2: the Origin check protects browsers' users; non-browser clients
  // usually send no Origin, hence the empty value.
  if (options.check_origin) {
    const std::string_view origin = request.header("Origin").value_or(std::string_view{});
    if (!options.check_origin(origin, request)) return refuse(error::origin_refused);
  }

  handshake_result r;
  r.status = 101;
  if (!offered.empty() && options.select_subprotocol) {
    std::string chosen = options.select_subprotocol(offered, request);
    if (std::find(offered.begin(), offered.end(), chosen) != offered.end()) {
      r.subprotocol = std::move(chosen);
    }
  }

  std::optional<deflate_negotiation> negotiated;
  if (options.deflate) {
    const std::string offers = join_header(request, "Sec-WebSocket-Extensions");
    if (!offers.empty()) negotiated = negotiate_deflate(offers, *options.deflate);
  }

  std::string& out = r.response;
  out.reserve(160);
  out += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
  out += "Sec-WebSocket-Accept: ";
  out += compute_accept_key(*key);
  out += "\r\n";
  if (!r.subprotocol.empty()) {
    out += "Sec-WebSocket-Protocol: ";
    out += r.subprotocol;
    out += "\r\n";
  }
  if (negotiated) {
    out += "Sec-WebSocket-Extensions: ";
    out += negotiated->response;
    out += "\r\n";
    r.deflate = negotiated->params;
  }
  out += "\r\n";
  return r;
}

std::string_view reason_phrase(unsigned status) noexcept {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

std::string format_error_response(unsigned status, std::string_view body,
                                  std::string_view extra_headers) {
  std::string out;
  out.reserve(128 + extra_headers.size() + body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!body.empty()) out += "Content-Type: text/plain; charset=utf-8\r\n";
  out += "Content-Length: ";
  out += std::to_string(body.size());
  out += "\r\nConnection: close\r\n";
  out += extra_headers;
  out += "\r\n";
  out += body;
  return out;
}

std::string format_error_response(std::error_code ec) {
  unsigned status = http_status(ec);
  if (status == 0) status = 400;
  std::string_view extra;
  if (status == 405) extra = "Allow: GET\r\n";  // RFC 9110 §15.5.6: a 405 MUST list them
  // RFC 9110 §15.5.22: a 426 MUST carry Upgrade; RFC 6455 §4.2.2: and the versions we speak.
  if (status == 426) extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
  return format_error_response(status, ec.message() + "\n", extra);
}

std::string generate_websocket_key() {
  std::array<unsigned char, 16> nonce{};
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
    throw std::runtime_error("atoll: OpenSSL RAND_bytes failed");
  }
  return base64(nonce.data(), nonce.size());
}

std::string format_upgrade_request(std::string_view host, std::string_view target,
                                   std::string_view key, std::string_view extra_headers) {
  std::string out;
  out.reserve(160 + host.size() + target.size() + extra_headers.size());
  out += "GET ";
  out += target;
  out += " HTTP/1.1\r\nHost: ";
  out += host;
  out += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
  out += key;
  out += "\r\nSec-WebSocket-Version: 13\r\n";
  out += extra_headers;
  out += "\r\n";
  return out;
}

}  // namespace atl::ws
