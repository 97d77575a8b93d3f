// Unit tests of detail::handshake_stage (plain listeners: the PROXY header part) over a real
// socket pair: a header that arrives in pieces, exactly the header taken from the socket and
// nothing after it, and a malformed header rejected with its reason.
#include "handshake.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "atoll/handler.hpp"
#include "unique_fd.hpp"

namespace {

using atl::proxy_protocol_mode;
using atl::reject_reason;
using atl::detail::handshake_stage;
using atl::detail::unique_fd;
using kind = handshake_stage::result::kind;

struct socket_pair {
  unique_fd server;
  unique_fd peer;
  socket_pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    server = unique_fd(fds[0]);
    peer = unique_fd(fds[1]);
  }
  void send(const std::string& s) {
    ASSERT_EQ(::send(peer.get(), s.data(), s.size(), 0), static_cast<ssize_t>(s.size()));
  }
  std::string read_rest() {
    char buf[256];
    const ssize_t n = ::recv(server.get(), buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
};

struct fixture {
  socket_pair s;
  std::vector<std::byte> scratch = std::vector<std::byte>(65536);
  handshake_stage::result step(handshake_stage& h) { return h.step(s.server.get(), scratch); }
};

TEST(handshake_stage, a_v1_header_in_pieces_completes_and_leaves_the_data_behind_it) {
  fixture f;
  handshake_stage h(proxy_protocol_mode::v1, nullptr);
  const std::string header = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
  f.s.send(header.substr(0, 10));
  handshake_stage::result r = f.step(h);
  EXPECT_EQ(r.what, kind::want_read);
  EXPECT_FALSE(r.proxy_completed);
  EXPECT_FALSE(h.proxy().has_value());

  f.s.send(header.substr(10) + "GET / HTTP/1.1\r\n");
  r = f.step(h);
  ASSERT_EQ(r.what, kind::done);
  EXPECT_TRUE(r.proxy_completed);
  EXPECT_EQ(r.bytes_in, header.size() - 10);
  ASSERT_TRUE(h.proxy().has_value());
  EXPECT_EQ(h.proxy()->source.address(), "192.0.2.1");
  EXPECT_EQ(h.proxy()->source.port(), 56324);
  EXPECT_EQ(h.proxy()->destination.port(), 443);
  EXPECT_EQ(h.take_tls(), nullptr) << "plain: no TLS session to hand over";
  // The application's bytes are still in the socket, untouched.
  EXPECT_EQ(f.s.read_rest(), "GET / HTTP/1.1\r\n");
}

TEST(handshake_stage, a_malformed_header_is_rejected_as_invalid) {
  fixture f;
  handshake_stage h(proxy_protocol_mode::v1, nullptr);
  f.s.send("PROXY NONSENSE\r\n");
  const handshake_stage::result r = f.step(h);
  ASSERT_EQ(r.what, kind::rejected);
  EXPECT_EQ(r.why, reject_reason::proxy_header_invalid);
  EXPECT_TRUE(r.ec);
}

TEST(handshake_stage, a_peer_that_closes_mid_header_is_rejected) {
  fixture f;
  handshake_stage h(proxy_protocol_mode::any, nullptr);
  f.s.send("PROXY TCP4 19");
  EXPECT_EQ(f.step(h).what, kind::want_read);
  ::shutdown(f.s.peer.get(), SHUT_WR);
  const handshake_stage::result r = f.step(h);
  EXPECT_EQ(r.what, kind::rejected);
}

TEST(handshake_stage, without_proxy_or_tls_it_is_done_at_once) {
  fixture f;
  handshake_stage h(proxy_protocol_mode::off, nullptr);
  f.s.send("data");
  const handshake_stage::result r = f.step(h);
  EXPECT_EQ(r.what, kind::done);
  EXPECT_EQ(r.bytes_in, 0u);
  EXPECT_EQ(f.s.read_rest(), "data");
}

}  // namespace
