#pragma once
/// @file codec.hpp
/// Umbrella header of the socket-free half of `atoll::websocket`: every parser and codec,
/// pure functions and objects over bytes, usable without a server (tests, tools, clients).
///
/// | header              | what                                                      |
/// |---------------------|-----------------------------------------------------------|
/// | error.hpp           | `ws::error` (error_code enum), `close_code`               |
/// | http_request.hpp    | incremental HTTP/1.1 request-head parser                  |
/// | handshake.hpp       | RFC 6455 §4.2 upgrade validation, 101 / error responses   |
/// | frame.hpp           | frame header parser, masking, frame serialisation         |
/// | message_reader.hpp  | bytes → messages / control frames, with every check      |
/// | message_writer.hpp  | messages / control frames → bytes                         |
/// | utf8.hpp            | incremental fail-fast UTF-8 validation                    |
/// | close.hpp           | close payload parsing and building                        |
/// | deflate.hpp         | permessage-deflate negotiation and zlib codecs (RFC 7692)  |

/// How a server session puts them together (one connection, on its io thread):
/// 1. `http_request_parser::parse` the bytes until `complete`; on `error` write
///    `format_error_response(ec)` and close.
/// 2. `accept_handshake(parser.request(), options)`; write `result.response`; if not
///    `accepted()`, close once it is written.
/// 3. `message_reader reader{reader_options}` and `message_writer writer{role::server}`; if
///    `result.deflate`, call `enable_deflate(*result.deflate, deflate_options)` on both.
/// 4. Feed the bytes after the request head (`parse_result::consumed`: a client may send its
///    first frames right behind the upgrade request) and every later read to `reader.next`:
///    `ping` → `writer.write_control(opcode::pong, ev.payload, out)`; `close` →
///    `writer.write_close(ev.close.code, {}, out)` (an empty close for `no_status`), then close
///    the TCP connection; `error` → `writer.write_close(ev.code(), {}, out)`, then close.
/// 5. Send with `writer.write_message(type, payload, out)` and `connection::send(out)`.

#include "atoll/ws/close.hpp"
#include "atoll/ws/deflate.hpp"
#include "atoll/ws/error.hpp"
#include "atoll/ws/frame.hpp"
#include "atoll/ws/handshake.hpp"
#include "atoll/ws/http_request.hpp"
#include "atoll/ws/message_reader.hpp"
#include "atoll/ws/message_writer.hpp"
#include "atoll/ws/parse_result.hpp"
#include "atoll/ws/utf8.hpp"
