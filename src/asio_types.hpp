#pragma once
// The Asio types atoll uses internally. One generic stream protocol serves TCP v4/v6 and Unix
// sockets, so every code path below is written once; executors are the concrete io_context
// executor (8 bytes) rather than any_io_executor, which matters at 100k connections.

#include <asio/basic_socket_acceptor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/basic_waitable_timer.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>

namespace atl::detail {

using executor_type = asio::io_context::executor_type;
using stream_protocol = asio::generic::stream_protocol;
using stream_socket = asio::basic_stream_socket<stream_protocol, executor_type>;
using socket_acceptor = asio::basic_socket_acceptor<stream_protocol, executor_type>;
using clock = std::chrono::steady_clock;
using steady_timer =
    asio::basic_waitable_timer<clock, asio::wait_traits<clock>, executor_type>;

}  // namespace atl::detail
