// The PROXY protocol on a listener (`listener_config::proxy_protocol`), end to end over
// loopback with an in-process server: headers built with atl::proxy::build_v1 / build_v2 are
// sent first by a plain client, and the handler's view is checked: `peer()` / `local()` are
// the header's addresses (or the socket's for LOCAL / UNKNOWN), `proxy_header()` carries the
// TLVs, the bytes behind the header reach `on_data` intact however the header was split, and
// a bad, late or wrong-version header closes the connection before `on_open`, counted by
// reason. Every wait is bounded.

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atoll/connection.hpp>
#include <atoll/endpoint.hpp>
#include <atoll/handler.hpp>
#include <atoll/listener.hpp>
#include <atoll/proxy_protocol.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/test_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::proxy_protocol_mode;
using atl::reject_reason;
using atl::test::client;
using atl::test::ip_endpoint;
using atl::test::outcome;
using atl::test::wait_until;
namespace proxy = atl::proxy;

std::string text(const std::vector<std::byte>& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

/// What the handler saw of one connection when it opened.
struct opened {
  atl::endpoint peer, local;
  std::optional<proxy::header> header;  // nullopt when proxy_header() was nullptr
};

/// Thread-safe record of on_open calls, awaited with deadlines.
class open_log {
 public:
  void add(opened o) {
    {
      std::lock_guard lock(m_);
      v_.push_back(std::move(o));
    }
    cv_.notify_all();
  }
  /// The n-th (0-based) connection opened, waiting up to `timeout` for it.
  std::optional<opened> wait(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(m_);
    if (!cv_.wait_for(lock, timeout, [&] { return v_.size() > n; })) return std::nullopt;
    return v_[n];
  }
  std::size_t size() const {
    std::lock_guard lock(m_);
    return v_.size();
  }

 private:
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::vector<opened> v_;
};

/// Records what on_open sees, then echoes.
class recording_echo : public atl::handler {
 public:
  explicit recording_echo(std::shared_ptr<open_log> log) : log_(std::move(log)) {}
  void on_open(atl::connection& c) override {
    opened o{c.peer(), c.local(), std::nullopt};
    if (const proxy::header* h = c.proxy_header()) o.header = *h;
    log_->add(std::move(o));
  }
  void on_data(atl::connection& c, std::span<const std::byte> data) override { c.send(data); }

 private:
  std::shared_ptr<open_log> log_;
};

/// An in-process server with one PROXY-protocol listener on 127.0.0.1.
class proxy_server {
 public:
  explicit proxy_server(proxy_protocol_mode mode, std::chrono::milliseconds handshake = 2s,
                        std::size_t max_connections = 100)
      : server_(atl::test::threads(2)) {
    atl::listener_config cfg = atl::test::loopback_listener();
    cfg.proxy_protocol = mode;
    cfg.handshake_timeout = handshake;
    cfg.max_connections = max_connections;
    id_ = server_.add_listener(
        cfg, [log = log_](atl::connection&) { return std::make_unique<recording_echo>(log); });
    server_.start();
    address_ = server_.local_endpoint(id_);
  }

  const atl::endpoint& address() const { return address_; }
  open_log& opens() { return *log_; }
  atl::listener_stats stats() const { return server_.stats().listeners.at(id_); }
  std::uint64_t rejected(reject_reason r) const { return stats().rejected(r); }
  bool wait_rejected(reject_reason r, std::uint64_t n, std::chrono::milliseconds timeout = 5s) {
    return wait_until([&] { return rejected(r) >= n; }, timeout);
  }

 private:
  std::shared_ptr<open_log> log_ = std::make_shared<open_log>();
  atl::server server_;
  atl::listener_id id_ = 0;
  atl::endpoint address_;
};

/// Connects, sends `bytes` in one send(), and checks that `payload` (sent with them, after
/// the header) comes back whole.
void expect_echo_after(client& c, std::string_view header, std::string_view payload) {
  ASSERT_TRUE(c.send(std::string(header) + std::string(payload)));
  EXPECT_EQ(c.read_exact(payload.size(), 5s), payload);
}

const atl::endpoint v4_src = ip_endpoint("192.0.2.10", 40000);
const atl::endpoint v4_dst = ip_endpoint("198.51.100.20", 443);
const atl::endpoint v6_src = ip_endpoint("2001:db8::10", 50123);
const atl::endpoint v6_dst = ip_endpoint("2001:db8:ffff::1", 8443);

// ---------------------------------------------------------------------------------------------
// Addresses

TEST(proxy_protocol, v1_tcp4_header_sets_peer_and_local_to_its_addresses) {
  proxy_server s(proxy_protocol_mode::v1);
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  const std::string header = text(proxy::build_v1(v4_src, v4_dst));
  ASSERT_TRUE(header.starts_with("PROXY TCP4 192.0.2.10 198.51.100.20 40000 443\r\n")) << header;
  expect_echo_after(c, header, "hello after a v1 header");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), "192.0.2.10:40000");
  EXPECT_EQ(o->local.to_string(), "198.51.100.20:443");
  ASSERT_TRUE(o->header);
  EXPECT_EQ(o->header->version, proxy::version::v1);
  EXPECT_EQ(o->header->command, proxy::command::proxy);
  EXPECT_EQ(o->header->header_length, header.size());
  EXPECT_TRUE(o->header->tlvs().empty());
}

TEST(proxy_protocol, v1_tcp6_header_sets_ipv6_addresses_on_an_ipv4_socket) {
  proxy_server s(proxy_protocol_mode::v1);
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  const std::string header = text(proxy::build_v1(v6_src, v6_dst));
  ASSERT_TRUE(header.starts_with("PROXY TCP6 ")) << header;
  expect_echo_after(c, header, "six");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), "[2001:db8::10]:50123");
  EXPECT_EQ(o->local.to_string(), "[2001:db8:ffff::1]:8443");
  EXPECT_EQ(o->peer.family(), AF_INET6);
}

TEST(proxy_protocol, v1_unknown_header_keeps_the_socket_addresses) {
  proxy_server s(proxy_protocol_mode::v1);
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  const std::string header = text(proxy::build_v1(v4_src, v6_dst));  // mixed: UNKNOWN
  ASSERT_EQ(header, "PROXY UNKNOWN\r\n");
  expect_echo_after(c, header, "unknown");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), atl::test::local_of(c.fd()).to_string());
  EXPECT_EQ(o->local.to_string(), s.address().to_string());
  ASSERT_TRUE(o->header);
  EXPECT_EQ(o->header->command, proxy::command::local);
}

TEST(proxy_protocol, v2_ipv4_header_sets_addresses_and_exposes_its_tlvs) {
  proxy_server s(proxy_protocol_mode::v2);
  const std::vector<proxy::tlv> tlvs{{proxy::tlv_type::alpn, "h2"},
                                     {proxy::tlv_type::authority, "example.com"},
                                     {proxy::tlv_type::unique_id, "conn-42"},
                                     {0xE0, std::string("\x00\x01custom", 8)}};
  const std::string header = text(proxy::build_v2(proxy::command::proxy, v4_src, v4_dst, tlvs));
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  expect_echo_after(c, header, "hello after a v2 header");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), "192.0.2.10:40000");
  EXPECT_EQ(o->local.to_string(), "198.51.100.20:443");
  ASSERT_TRUE(o->header);
  EXPECT_EQ(o->header->version, proxy::version::v2);
  EXPECT_EQ(o->header->command, proxy::command::proxy);
  EXPECT_EQ(o->header->header_length, header.size());
  EXPECT_EQ(o->header->alpn(), "h2");
  EXPECT_EQ(o->header->authority(), "example.com");
  EXPECT_EQ(o->header->unique_id(), "conn-42");
  EXPECT_EQ(o->header->tlvs().to_vector(), tlvs) << "every TLV, raw, in wire order";
}

TEST(proxy_protocol, v2_ipv6_header_with_a_crc32c_tlv_is_verified_and_accepted) {
  proxy_server s(proxy_protocol_mode::v2);
  const std::vector<proxy::tlv> tlvs{{proxy::tlv_type::crc32c, ""},
                                     {proxy::tlv_type::authority, "v6.example"}};
  const std::string header = text(proxy::build_v2(proxy::command::proxy, v6_src, v6_dst, tlvs));
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  expect_echo_after(c, header, "six two");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), "[2001:db8::10]:50123");
  EXPECT_EQ(o->local.to_string(), "[2001:db8:ffff::1]:8443");
  ASSERT_TRUE(o->header);
  EXPECT_EQ(o->header->authority(), "v6.example");
  EXPECT_EQ(s.rejected(reject_reason::proxy_header_invalid), 0u);
}

TEST(proxy_protocol, v2_local_command_keeps_the_socket_addresses_and_its_tlvs) {
  // What HAProxy's health checks send with check-send-proxy.
  proxy_server s(proxy_protocol_mode::v2);
  const std::vector<proxy::tlv> tlvs{{proxy::tlv_type::unique_id, "health-check"}};
  const std::string header = text(proxy::build_v2(proxy::command::local, v4_src, v4_dst, tlvs));
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  expect_echo_after(c, header, "ping\n");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), atl::test::local_of(c.fd()).to_string())
      << "LOCAL: the real peer, not the header's";
  EXPECT_EQ(o->local.to_string(), s.address().to_string());
  ASSERT_TRUE(o->header);
  EXPECT_EQ(o->header->command, proxy::command::local);
  EXPECT_TRUE(o->header->source.empty());
  EXPECT_EQ(o->header->unique_id(), "health-check");
}

TEST(proxy_protocol, a_listener_without_it_has_no_header_and_passes_proxy_text_as_data) {
  proxy_server s(proxy_protocol_mode::off);
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  const std::string header = text(proxy::build_v1(v4_src, v4_dst));
  ASSERT_TRUE(c.send(header));
  EXPECT_EQ(c.read_exact(header.size()), header) << "just bytes";
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->header.has_value());
  EXPECT_EQ(o->peer.to_string(), atl::test::local_of(c.fd()).to_string());
}

TEST(proxy_protocol, mode_any_accepts_v1_and_v2) {
  proxy_server s(proxy_protocol_mode::any);
  {
    client c = client::connect(s.address());
    ASSERT_TRUE(c.valid());
    expect_echo_after(c, text(proxy::build_v1(v4_src, v4_dst)), "one");
  }
  {
    client c = client::connect(s.address());
    ASSERT_TRUE(c.valid());
    expect_echo_after(c, text(proxy::build_v2(proxy::command::proxy, v6_src, v6_dst)), "two");
  }
  const auto first = s.opens().wait(0);
  const auto second = s.opens().wait(1);
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(first->header && second->header);
  // Two connections: their on_open order may differ from the connect order across threads.
  const bool v1_first = first->header->version == proxy::version::v1;
  const auto& v1 = v1_first ? *first : *second;
  const auto& v2 = v1_first ? *second : *first;
  EXPECT_EQ(v1.header->version, proxy::version::v1);
  EXPECT_EQ(v1.peer.to_string(), "192.0.2.10:40000");
  EXPECT_EQ(v2.header->version, proxy::version::v2);
  EXPECT_EQ(v2.peer.to_string(), "[2001:db8::10]:50123");
}

// ---------------------------------------------------------------------------------------------
// Segmentation

/// Sends `header` one byte per send() (TCP_NODELAY is on, and the pause between them lets
/// each go out as its own segment), its last byte together with `payload`.
void send_byte_by_byte(client& c, std::string_view header, std::string_view payload) {
  for (std::size_t i = 0; i + 1 < header.size(); ++i) {
    ASSERT_TRUE(c.send(header.substr(i, 1)));
    std::this_thread::sleep_for(1ms);  // pacing into separate segments, not synchronisation
  }
  ASSERT_TRUE(c.send(std::string(header.substr(header.size() - 1)) + std::string(payload)));
}

TEST(proxy_protocol,
     v2_header_split_into_single_bytes_still_parses_and_the_data_behind_it_arrives) {
  proxy_server s(proxy_protocol_mode::v2);
  const std::vector<proxy::tlv> tlvs{{proxy::tlv_type::authority, "split.example"}};
  const std::string header = text(proxy::build_v2(proxy::command::proxy, v6_src, v6_dst, tlvs));
  const std::string payload = atl::test::pattern_payload(3000, 7);
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  ASSERT_NO_FATAL_FAILURE(send_byte_by_byte(c, header, payload));
  EXPECT_EQ(c.read_exact(payload.size(), 5s), payload);
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), "[2001:db8::10]:50123");
  ASSERT_TRUE(o->header);
  EXPECT_EQ(o->header->authority(), "split.example");
}

TEST(proxy_protocol, v1_header_split_into_single_bytes_still_parses) {
  proxy_server s(proxy_protocol_mode::v1);
  const std::string header = text(proxy::build_v1(v4_src, v4_dst));
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  ASSERT_NO_FATAL_FAILURE(send_byte_by_byte(c, header, "tail"));
  EXPECT_EQ(c.read_exact(4, 5s), "tail");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peer.to_string(), "192.0.2.10:40000");
}

TEST(proxy_protocol, a_large_payload_in_the_headers_segment_reaches_on_data_intact) {
  proxy_server s(proxy_protocol_mode::any);
  const std::string header = text(proxy::build_v2(proxy::command::proxy, v4_src, v4_dst));
  const std::string payload = atl::test::pattern_payload(256 * 1024, 3);
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  bool sent = false;
  std::thread writer([&] { sent = c.send(header + payload); });
  const std::string back = c.read_exact(payload.size(), 10s);
  writer.join();
  EXPECT_TRUE(sent);
  EXPECT_EQ(back.size(), payload.size());
  EXPECT_EQ(atl::test::first_mismatch(back, payload), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// Sends `bytes` and expects the connection to be closed (EOF or reset) within 2 s.
void expect_closed_after(const atl::endpoint& server, std::string_view bytes) {
  client c = client::connect(server);
  ASSERT_TRUE(c.valid());
  c.send(bytes);  // may fail once the close has arrived
  const outcome end = c.wait_closed(2s);
  EXPECT_TRUE(end == outcome::eof || end == outcome::reset)
      << "after '" << bytes.substr(0, 20) << "...': " << atl::test::to_string(end);
}

TEST(proxy_protocol, a_malformed_header_is_closed_and_counted_without_on_open) {
  proxy_server s(proxy_protocol_mode::v1);
  expect_closed_after(s.address(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  expect_closed_after(s.address(), "PROXY TCP4 192.0.2.1 192.0.2.2 99999 80\r\n");  // bad port
  expect_closed_after(s.address(), "PROXY TCP4 192.0.2.1 192.0.2.2 1 80\n");        // no CR
  EXPECT_TRUE(s.wait_rejected(reject_reason::proxy_header_invalid, 3));
  EXPECT_EQ(s.rejected(reject_reason::proxy_header_invalid), 3u);
  EXPECT_EQ(s.opens().size(), 0u) << "no handler saw a refused connection";

  // The listener keeps serving.
  client good = client::connect(s.address());
  ASSERT_TRUE(good.valid());
  expect_echo_after(good, text(proxy::build_v1(v4_src, v4_dst)), "still serving");
}

TEST(proxy_protocol, the_wrong_version_for_the_mode_is_refused) {
  proxy_server v2_only(proxy_protocol_mode::v2);
  expect_closed_after(v2_only.address(), text(proxy::build_v1(v4_src, v4_dst)) + "data");
  EXPECT_TRUE(v2_only.wait_rejected(reject_reason::proxy_header_invalid, 1));
  EXPECT_EQ(v2_only.opens().size(), 0u);

  proxy_server v1_only(proxy_protocol_mode::v1);
  expect_closed_after(v1_only.address(),
                      text(proxy::build_v2(proxy::command::proxy, v4_src, v4_dst)) + "data");
  EXPECT_TRUE(v1_only.wait_rejected(reject_reason::proxy_header_invalid, 1));
  EXPECT_EQ(v1_only.opens().size(), 0u);
}

TEST(proxy_protocol, a_corrupted_v2_header_is_refused) {
  proxy_server s(proxy_protocol_mode::v2);
  const std::vector<proxy::tlv> tlvs{{proxy::tlv_type::crc32c, ""}};
  std::string header = text(proxy::build_v2(proxy::command::proxy, v4_src, v4_dst, tlvs));
  header[16] = static_cast<char>(header[16] ^ 0x01);  // a source address bit: CRC mismatch
  expect_closed_after(s.address(), header + "data");
  std::string bad_version = text(proxy::build_v2(proxy::command::proxy, v4_src, v4_dst));
  bad_version[12] = 0x31;  // version 3
  expect_closed_after(s.address(), bad_version + "data");
  EXPECT_TRUE(s.wait_rejected(reject_reason::proxy_header_invalid, 2));
  EXPECT_EQ(s.opens().size(), 0u);
}

TEST(proxy_protocol, a_v2_header_past_the_tlv_cap_is_refused_and_one_at_it_is_kept_small) {
  proxy_server s(proxy_protocol_mode::v2);
  // The attack (issue 9): the largest v2 header, 21845 empty TLVs, which pinned ~1.25 MiB
  // per connection for its life.
  const std::vector<proxy::tlv> flood(21845, {proxy::tlv_type::noop, ""});
  const std::string attack = text(proxy::build_v2(proxy::command::local, {}, {}, flood));
  ASSERT_EQ(attack.size(), proxy::max_v2_header_size);
  expect_closed_after(s.address(), attack + "data");
  EXPECT_TRUE(s.wait_rejected(reject_reason::proxy_header_invalid, 1));
  EXPECT_EQ(s.opens().size(), 0u);

  // 128 TLVs, the most allowed: served, and the header kept is its TLV bytes plus the object.
  std::vector<proxy::tlv> at_cap(127, {proxy::tlv_type::noop, ""});
  at_cap.push_back({proxy::tlv_type::alpn, "h2"});
  const std::string header = text(proxy::build_v2(proxy::command::proxy, v4_src, v4_dst, at_cap));
  client c = client::connect(s.address());
  ASSERT_TRUE(c.valid());
  expect_echo_after(c, header, "at the cap");
  const auto o = s.opens().wait(0);
  ASSERT_TRUE(o);
  ASSERT_TRUE(o->header);
  EXPECT_EQ(o->peer.to_string(), "192.0.2.10:40000");
  EXPECT_EQ(o->header->tlvs().size(), 128u);
  EXPECT_EQ(o->header->alpn(), "h2");
  EXPECT_EQ(o->header->retained_bytes(), sizeof(proxy::header) + 3 * 127 + 3 + 2);
  EXPECT_EQ(s.rejected(reject_reason::proxy_header_invalid), 1u);
}

TEST(proxy_protocol, no_header_within_the_handshake_timeout_closes_the_connection) {
  proxy_server s(proxy_protocol_mode::v2, 200ms);
  const auto t0 = std::chrono::steady_clock::now();
  {
    client silent = client::connect(s.address());
    ASSERT_TRUE(silent.valid());
    const outcome end = silent.wait_closed(3s);
    EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << atl::test::to_string(end);
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 150ms) << "not before the handshake timeout";
  EXPECT_LT(waited, 2s) << "promptly after it";

  // Half a header and then nothing: the same.
  const std::string header = text(proxy::build_v2(proxy::command::proxy, v4_src, v4_dst));
  {
    client half = client::connect(s.address());
    ASSERT_TRUE(half.valid());
    ASSERT_TRUE(half.send(header.substr(0, 10)));
    const outcome end = half.wait_closed(3s);
    EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << atl::test::to_string(end);
  }
  EXPECT_TRUE(s.wait_rejected(reject_reason::handshake_timeout, 2));
  EXPECT_EQ(s.rejected(reject_reason::handshake_timeout), 2u);
  EXPECT_EQ(s.rejected(reject_reason::proxy_header_invalid), 0u);
  EXPECT_EQ(s.opens().size(), 0u);

  client good = client::connect(s.address());
  ASSERT_TRUE(good.valid());
  expect_echo_after(good, header, "served after the timeouts");
}

TEST(proxy_protocol, a_connection_waiting_for_its_header_holds_its_slot_until_the_timeout) {
  proxy_server s(proxy_protocol_mode::v1, 300ms, /*max_connections=*/1);
  const std::string header = text(proxy::build_v1(v4_src, v4_dst));
  client silent = client::connect(s.address());
  ASSERT_TRUE(silent.valid());
  ASSERT_TRUE(wait_until([&] { return s.stats().active == 1; }, 2s)) << "admitted, in handshake";

  // The slot is taken: a second client is refused at once (retry_count 0).
  expect_closed_after(s.address(), header + "over");
  EXPECT_TRUE(s.wait_rejected(reject_reason::limit, 1));

  // The silent one times out and frees the slot.
  const outcome end = silent.wait_closed(3s);
  EXPECT_TRUE(end == outcome::eof || end == outcome::reset) << atl::test::to_string(end);
  EXPECT_TRUE(wait_until([&] { return s.stats().active == 0; }, 2s));
  client next = client::connect(s.address());
  ASSERT_TRUE(next.valid());
  expect_echo_after(next, header, "my turn");
}

}  // namespace
