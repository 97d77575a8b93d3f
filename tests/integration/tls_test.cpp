// Integration tests of TLS termination (listener_config::tls, connection::tls()) with an
// in-process server and the OpenSSL test client of tests/support/tls_client.hpp: echo of small
// and large payloads, what the handler sees, SNI, ALPN, client certificates, versions, the
// handshake timeout and its slot, garbage instead of a ClientHello, configuration validation,
// close_notify and drain. Certificates are generated at test time (tests/support/tls_certs.hpp).
// Every wait is bounded; nothing sleeps to synchronise.
#include "atoll/tls.hpp"

#include <gtest/gtest.h>

#include <atoll/connection.hpp>
#include <atoll/error.hpp>
#include <atoll/handler.hpp>
#include <atoll/listener.hpp>
#include <atoll/proxy_protocol.hpp>
#include <atoll/server.hpp>
#include <atoll/stats.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/connection_helpers.hpp"
#include "support/test_client.hpp"
#include "support/tls_certs.hpp"
#include "support/tls_client.hpp"

namespace {

using namespace std::chrono_literals;
using atl::close_reason;
using atl::connection;
using atl::reject_reason;
using atl::server;
using atl::test::client;
using atl::test::outcome;
using atl::test::probe;
using atl::test::tls_client;
using atl::test::tls_client_options;
using atl::test::tls_close;
using atl::test::wait_until;
using clock_type = std::chrono::steady_clock;

const atl::test::tls_certs& certs() { return atl::test::test_certs(); }

// ---------------------------------------------------------------------------------------------
// What handlers saw of TLS

/// connection::tls() of every opened connection, in order of on_open (nullopt: nullptr).
class tls_journal {
 public:
  void push(const atl::tls_info* info) {
    {
      std::lock_guard lock(m_);
      seen_.push_back(info ? std::optional<atl::tls_info>(*info) : std::nullopt);
    }
    cv_.notify_all();
  }
  /// The n-th entry, waiting (bounded) for it; nullopt-in-nullopt if it never came.
  std::optional<std::optional<atl::tls_info>> wait_at(std::size_t n,
                                                      std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(m_);
    if (!cv_.wait_for(lock, timeout, [&] { return seen_.size() > n; })) return std::nullopt;
    return seen_[n];
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::optional<atl::tls_info>> seen_;
};

/// Echoes, with commands (each arriving as one on_data in these tests):
///   "BYE\n"        → replies "bye\n" and closes (connection::close(): close_notify after it)
///   "SEND n\n"     → replies n bytes of pattern_payload(n, 3) in 100 000-byte sends (the write
///                    queue under TLS)
///   "FILE path\n"  → connection::send_file(path), then "end\n"
///   "HALF\n"       → replies "half\n", then shutdown_write(); later data is noted in the
///                    probe as "after-half:<data>"
class tls_echo_handler : public atl::test::echo_handler {
 public:
  tls_echo_handler(std::shared_ptr<probe> p, std::shared_ptr<tls_journal> j)
      : echo_handler(std::move(p)), journal_(std::move(j)) {}

  void on_open(connection& c) override {
    if (journal_) journal_->push(c.tls());
    echo_handler::on_open(c);
  }

  void on_data(connection& c, std::span<const std::byte> data) override {
    const std::string_view s(reinterpret_cast<const char*>(data.data()), data.size());
    if (s == "BYE\n") {
      if (probe_) probe_->called(c, "data");
      c.send("bye\n");
      c.close();
      return;
    }
    if (half_closed_) {
      if (probe_) probe_->note("after-half:" + std::string(s));
      return;
    }
    if (s == "HALF\n") {
      c.send("half\n");
      c.shutdown_write();
      half_closed_ = true;
      return;
    }
    if (s.starts_with("FILE ") && s.ends_with("\n")) {
      const auto ec = c.send_file(std::string(s.substr(5, s.size() - 6)));
      if (ec && probe_) probe_->note("send_file: " + ec.message());
      c.send("end\n");
      return;
    }
    if (s.starts_with("SEND ") && s.ends_with("\n")) {
      if (probe_) probe_->called(c, "data");
      const auto n = static_cast<std::size_t>(std::stoull(std::string(s.substr(5))));
      const std::string payload = atl::test::pattern_payload(n, 3);
      for (std::size_t off = 0; off < n; off += 100'000)
        c.send(std::string_view(payload).substr(off, 100'000));
      return;
    }
    echo_handler::on_data(c, data);
  }

 private:
  std::shared_ptr<tls_journal> journal_;
  bool half_closed_ = false;
};

// ---------------------------------------------------------------------------------------------
// Servers and clients

/// A loopback listener with the localhost certificate.
atl::listener_config tls_listener() {
  auto c = atl::test::loopback_listener();
  c.tls.cert_chain_file = certs().server_cert;
  c.tls.key_file = certs().server_key;
  c.handshake_timeout = 5s;
  c.shutdown_timeout = 5s;
  return c;
}

/// A started server with one listener (TLS or not) running tls_echo_handler.
struct echo_server {
  explicit echo_server(atl::listener_config config, std::size_t io_threads = 2)
      : s(atl::test::threads(io_threads)) {
    id = s.add_listener(std::move(config), [p = p, j = journal](connection&) {
      return std::make_unique<tls_echo_handler>(p, j);
    });
    s.start();
  }
  atl::endpoint endpoint() const { return s.local_endpoint(id); }
  atl::listener_stats stats() const { return s.stats().listeners.at(id); }
  std::uint64_t rejected(reject_reason r) const { return stats().rejected(r); }
  bool wait_rejected(reject_reason r, std::uint64_t n, std::chrono::milliseconds t = 5s) const {
    return wait_until([&] { return rejected(r) >= n; }, t);
  }
  bool wait_active(std::uint64_t n, std::chrono::milliseconds t = 5s) const {
    return wait_until([&] { return stats().active == n; }, t);
  }

  std::shared_ptr<probe> p = std::make_shared<probe>();
  std::shared_ptr<tls_journal> journal = std::make_shared<tls_journal>();
  server s;
  atl::listener_id id = 0;
};

/// Client options that verify the server against the test CA as `name` (also the SNI name).
tls_client_options trusting(std::string name = "localhost") {
  tls_client_options o;
  o.server_name = name;
  o.ca_file = certs().ca_cert;
  o.expected_host = name;
  return o;
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("unexpected exception type: ") + e.what();
  }
  return "(no exception)";
}

class tls : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(certs().ok) << certs().error; }
};

// ---------------------------------------------------------------------------------------------
// Echo and the write queue

TEST_F(tls, echoes_small_messages) {
  echo_server srv(tls_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.verify_result(), X509_V_OK);
  EXPECT_EQ(c.peer_cn(), "localhost");
  EXPECT_TRUE(c.echo("hello atoll\n")) << c.error();
  EXPECT_TRUE(c.echo("second line\n")) << c.error();
  ASSERT_TRUE(srv.p->wait_opens(1));
  EXPECT_EQ(srv.stats().active, 1u);
}

TEST_F(tls, the_certificate_verifies_for_the_loopback_ip_address) {
  echo_server srv(tls_listener());
  auto o = trusting();
  o.server_name.clear();  // no SNI for an IP literal (RFC 6066 section 3)
  o.expected_host = "127.0.0.1";
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.verify_result(), X509_V_OK);
  EXPECT_TRUE(c.echo("by address\n")) << c.error();
}

TEST_F(tls, echoes_a_one_mebibyte_payload_in_both_directions) {
  echo_server srv(tls_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  const std::string payload = atl::test::pattern_payload(1 << 20, 11);
  std::string got;
  const auto ok = c.exchange(payload, payload.size(), 30s, &got);
  EXPECT_TRUE(ok.has_value()) << c.error() << " after " << got.size() << " bytes";
  ASSERT_EQ(got.size(), payload.size());
  EXPECT_EQ(atl::test::first_mismatch(got, payload), std::string::npos);
  // The connection is still usable afterwards.
  EXPECT_TRUE(c.echo("after\n")) << c.error();
}

TEST_F(tls, a_large_reply_goes_through_the_write_queue_intact) {
  echo_server srv(tls_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  constexpr std::size_t n = 3 * 1024 * 1024;  // far more than a socket buffer, < 4 MiB limit
  ASSERT_TRUE(c.write_all("SEND " + std::to_string(n) + "\n")) << c.error();
  const std::string got = c.read_exact(n, 30s);
  ASSERT_EQ(got.size(), n) << c.error();
  EXPECT_EQ(atl::test::first_mismatch(got, atl::test::pattern_payload(n, 3)), std::string::npos);
  EXPECT_TRUE(c.echo("still here\n")) << c.error();
  EXPECT_EQ(srv.stats().closed(close_reason::slow_consumer), 0u);
}

/// Echoes; after every on_data it pauses reading and resumes from a posted call, as a
/// handler that waits for something else (a backend, on_writable) does.
class pause_each_chunk_handler : public atl::handler {
 public:
  void on_data(connection& c, std::span<const std::byte> data) override {
    c.send(data);
    c.pause_reading();
    c.handle().dispatch([](connection& conn) { conn.resume_reading(); });
  }
};

TEST_F(tls, resuming_reading_delivers_bytes_openssl_already_holds) {
  // A receive buffer smaller than a TLS record: SSL_read hands over part of a record and
  // OpenSSL keeps the rest, which epoll knows nothing about. resume_reading() must deliver
  // it without waiting for more bytes from the socket (the client sends nothing more).
  auto sc = atl::test::threads(1);
  sc.receive_buffer_size = 4096;
  server s(sc);
  const auto id = s.add_listener(
      tls_listener(), [](connection&) { return std::make_unique<pause_each_chunk_handler>(); });
  s.start();
  auto c = tls_client::connect(s.local_endpoint(id), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  const std::string payload = atl::test::pattern_payload(16000, 5);  // one record
  std::string got;
  const auto ok = c.exchange(payload, payload.size(), 5s, &got);
  EXPECT_TRUE(ok.has_value()) << c.error() << "; got " << got.size() << " of " << payload.size();
  EXPECT_EQ(atl::test::first_mismatch(got, payload), std::string::npos);
}

TEST_F(tls, a_small_receive_buffer_still_delivers_whole_records) {
  auto sc = atl::test::threads(1);
  sc.receive_buffer_size = 1024;
  server s(sc);
  const auto id = s.add_listener(tls_listener(), atl::test::echo_factory());
  s.start();
  auto c = tls_client::connect(s.local_endpoint(id), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  const std::string payload = atl::test::pattern_payload(200'000, 9);
  std::string got;
  const auto ok = c.exchange(payload, payload.size(), 15s, &got);
  EXPECT_TRUE(ok.has_value()) << c.error() << "; got " << got.size() << " of " << payload.size();
  EXPECT_EQ(atl::test::first_mismatch(got, payload), std::string::npos);
}

TEST_F(tls, send_file_arrives_encrypted_and_complete) {
  echo_server srv(tls_listener());
  atl::test::temp_dir dir;
  ASSERT_TRUE(dir.valid());
  const std::string path = dir.file("payload.bin");
  const std::string content = atl::test::pattern_payload(1'000'003, 13);  // not 16 KiB-aligned
  {
    std::ofstream out(path, std::ios::binary);
    out << content;
    ASSERT_TRUE(static_cast<bool>(out));
  }
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.write_all("FILE " + path + "\n")) << c.error();
  const std::string got = c.read_exact(content.size() + 4, 30s);
  ASSERT_EQ(got.size(), content.size() + 4)
      << c.error() << "; notes: " << (srv.p->notes().empty() ? "" : srv.p->notes()[0]);
  EXPECT_EQ(atl::test::first_mismatch(got.substr(0, content.size()), content), std::string::npos);
  EXPECT_EQ(got.substr(content.size()), "end\n");
}

TEST_F(tls, shutdown_write_sends_close_notify_and_keeps_reading) {
  echo_server srv(tls_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.write_all("HALF\n")) << c.error();
  std::string data;
  const tls_close how = c.read_until_close(5s, &data);
  EXPECT_EQ(data, "half\n");
  EXPECT_EQ(how, tls_close::clean) << to_string(how) << ": " << c.error();
  // TLS 1.3 allows the other direction to go on (RFC 8446 section 6.1).
  ASSERT_TRUE(c.write_all("late\n")) << c.error();
  EXPECT_TRUE(srv.p->wait_note("after-half:late\n"));
}

// ---------------------------------------------------------------------------------------------
// connection::tls()

TEST_F(tls, the_handler_sees_what_the_handshake_negotiated) {
  auto config = tls_listener();
  config.tls.alpn = {"h2", "http/1.1"};
  echo_server srv(config);
  auto o = trusting();
  o.alpn = {"http/1.1"};
  o.min_version = o.max_version = TLS1_3_VERSION;
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();

  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen.has_value()) << "on_open never ran";
  ASSERT_TRUE(seen->has_value()) << "connection::tls() was nullptr on a TLS listener";
  const atl::tls_info& info = **seen;
  EXPECT_EQ(info.version, "TLSv1.3");
  EXPECT_EQ(info.cipher, c.cipher());
  EXPECT_FALSE(info.cipher.empty());
  EXPECT_EQ(info.server_name, "localhost");
  EXPECT_EQ(info.alpn, "http/1.1");
  EXPECT_EQ(info.peer_subject, "");
}

TEST_F(tls, the_handler_sees_tls_1_2_when_the_client_caps_it) {
  echo_server srv(tls_listener());
  auto o = trusting();
  o.max_version = TLS1_2_VERSION;
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.version(), "TLSv1.2");
  EXPECT_TRUE(c.echo("twelve\n")) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->version, "TLSv1.2");
  EXPECT_EQ((*seen)->cipher, c.cipher());
}

TEST_F(tls, tls_is_null_on_a_plain_listener) {
  echo_server srv(atl::test::loopback_listener());
  auto c = client::connect(srv.endpoint());
  ASSERT_TRUE(c.valid());
  EXPECT_TRUE(c.echo("plain\n"));
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen.has_value()) << "on_open never ran";
  EXPECT_FALSE(seen->has_value()) << "connection::tls() was not nullptr on a plain listener";
}

// ---------------------------------------------------------------------------------------------
// SNI

tls_client_options with_cert(tls_client_options o, const std::string& cert, const std::string& key);

atl::listener_config sni_listener() {
  auto config = tls_listener();
  config.tls.sni_certificates.push_back(
      atl::tls_certificate{{"other.test"}, certs().other_cert, certs().other_key});
  return config;
}

TEST_F(tls, sni_selects_the_matching_certificate) {
  echo_server srv(sni_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting("other.test"));
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.peer_cn(), "other.test");
  EXPECT_EQ(c.verify_result(), X509_V_OK);
  EXPECT_TRUE(c.echo("other\n")) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->server_name, "other.test");
}

TEST_F(tls, sni_matching_ignores_case) {
  echo_server srv(sni_listener());
  auto o = trusting("OTHER.Test");
  o.expected_host = "other.test";
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.peer_cn(), "other.test");
}

TEST_F(tls, an_unknown_or_missing_sni_name_gets_the_default_certificate) {
  echo_server srv(sni_listener());

  auto o = trusting("unknown.test");
  o.expected_host = "localhost";
  auto unknown = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(unknown.ok()) << unknown.error();
  EXPECT_EQ(unknown.peer_cn(), "localhost");
  EXPECT_TRUE(unknown.echo("unknown\n")) << unknown.error();

  o.server_name.clear();
  auto none = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(none.ok()) << none.error();
  EXPECT_EQ(none.peer_cn(), "localhost");
  EXPECT_TRUE(none.echo("none\n")) << none.error();

  auto first = srv.journal->wait_at(0);
  auto second = srv.journal->wait_at(1);
  ASSERT_TRUE(first && *first && second && *second);
  EXPECT_EQ((*first)->server_name, "unknown.test");
  EXPECT_EQ((*second)->server_name, "");
}

TEST_F(tls, an_sni_wildcard_matches_exactly_one_label) {
  auto config = tls_listener();
  config.tls.sni_certificates.push_back(
      atl::tls_certificate{{"*.wild.test"}, certs().other_cert, certs().other_key});
  echo_server srv(config);
  const auto cn_for = [&](const std::string& name) {
    tls_client_options o;
    o.server_name = name;
    auto c = tls_client::connect(srv.endpoint(), o);
    EXPECT_TRUE(c.ok()) << name << ": " << c.error();
    return c.peer_cn();
  };
  EXPECT_EQ(cn_for("a.wild.test"), "other.test");
  EXPECT_EQ(cn_for("A.WILD.TEST"), "other.test");
  EXPECT_EQ(cn_for("a.b.wild.test"), "localhost");
  EXPECT_EQ(cn_for("wild.test"), "localhost");
}

TEST_F(tls, an_sni_certificate_keeps_client_certificate_verification) {
  auto config = sni_listener();
  config.tls.verify_clients = atl::client_certificates::required;
  config.tls.client_ca_file = certs().client_ca_cert;
  echo_server srv(config);

  auto bad = tls_client::connect(srv.endpoint(), trusting("other.test"));
  EXPECT_FALSE(bad.round_trip()) << "other.test accepted a client without a certificate";
  EXPECT_TRUE(srv.wait_rejected(reject_reason::tls_handshake_failed, 1));

  auto good = tls_client::connect(
      srv.endpoint(), with_cert(trusting("other.test"), certs().client_cert, certs().client_key));
  ASSERT_TRUE(good.round_trip()) << good.error();
  EXPECT_EQ(good.peer_cn(), "other.test");
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_NE((*seen)->peer_subject.find("CN=test-client"), std::string::npos)
      << "peer_subject: '" << (*seen)->peer_subject << "'";
}

// ---------------------------------------------------------------------------------------------
// ALPN

TEST_F(tls, alpn_follows_the_server_preference) {
  auto config = tls_listener();
  config.tls.alpn = {"h2", "http/1.1"};
  echo_server srv(config);
  auto o = trusting();
  o.alpn = {"http/1.1", "h2"};  // the client prefers http/1.1; the server's order wins
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.alpn(), "h2");
  EXPECT_TRUE(c.echo("alpn\n")) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->alpn, "h2");
}

TEST_F(tls, a_client_offering_no_common_alpn_protocol_fails_the_handshake) {
  auto config = tls_listener();
  config.tls.alpn = {"h2", "http/1.1"};
  echo_server srv(config);
  auto o = trusting();
  o.alpn = {"imap", "smtp"};
  auto c = tls_client::connect(srv.endpoint(), o);
  EXPECT_FALSE(c.round_trip()) << "negotiated ALPN '" << c.alpn() << "'";
  EXPECT_FALSE(c.ok()) << "RFC 7301 section 3.2: the server sends no_application_protocol";
  EXPECT_TRUE(srv.wait_rejected(reject_reason::tls_handshake_failed, 1));
  EXPECT_TRUE(srv.wait_active(0));
  EXPECT_EQ(srv.p->opens(), 0u);
}

TEST_F(tls, a_client_without_alpn_is_accepted_when_the_server_has_a_list) {
  auto config = tls_listener();
  config.tls.alpn = {"h2", "http/1.1"};
  echo_server srv(config);
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.alpn(), "");
  EXPECT_TRUE(c.echo("no alpn\n")) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->alpn, "");
}

TEST_F(tls, a_server_without_alpn_ignores_the_clients_offer) {
  echo_server srv(tls_listener());
  auto o = trusting();
  o.alpn = {"h2"};
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.alpn(), "");
  EXPECT_TRUE(c.echo("x\n")) << c.error();
}

// ---------------------------------------------------------------------------------------------
// Client certificates

atl::listener_config client_cert_listener(atl::client_certificates mode) {
  auto config = tls_listener();
  config.tls.verify_clients = mode;
  config.tls.client_ca_file = certs().client_ca_cert;
  return config;
}

tls_client_options with_cert(tls_client_options o, const std::string& cert,
                             const std::string& key) {
  o.cert_file = cert;
  o.key_file = key;
  return o;
}

/// The client's handshake fails, or (TLS 1.3: the server checks the client's certificate
/// after the client's handshake is done) its first round trip does; counted, never opened.
void expect_refused(echo_server& srv, const tls_client_options& o, std::uint64_t nth = 1) {
  auto c = tls_client::connect(srv.endpoint(), o);
  EXPECT_FALSE(c.round_trip()) << "the server accepted the client";
  SCOPED_TRACE("client saw: " + c.error());
  EXPECT_TRUE(srv.wait_rejected(reject_reason::tls_handshake_failed, nth))
      << "rejected_total{tls_handshake_failed} = "
      << srv.rejected(reject_reason::tls_handshake_failed);
  EXPECT_TRUE(srv.wait_active(0));
  EXPECT_EQ(srv.p->opens(), 0u);
}

TEST_F(tls, client_certificates_none_does_not_ask_for_one) {
  echo_server srv(client_cert_listener(atl::client_certificates::none));
  auto c = tls_client::connect(srv.endpoint(),
                               with_cert(trusting(), certs().client_cert, certs().client_key));
  ASSERT_TRUE(c.round_trip()) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->peer_subject, "") << "a certificate that was not asked for was reported";
}

TEST_F(tls, optional_client_certificates_accept_a_client_without_one) {
  echo_server srv(client_cert_listener(atl::client_certificates::optional));
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.round_trip()) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->peer_subject, "");
}

TEST_F(tls, optional_client_certificates_report_a_verified_subject) {
  echo_server srv(client_cert_listener(atl::client_certificates::optional));
  auto c = tls_client::connect(srv.endpoint(),
                               with_cert(trusting(), certs().client_cert, certs().client_key));
  ASSERT_TRUE(c.round_trip()) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_NE((*seen)->peer_subject.find("CN=test-client"), std::string::npos)
      << "peer_subject: '" << (*seen)->peer_subject << "'";
}

TEST_F(tls, required_client_certificates_accept_a_valid_one) {
  echo_server srv(client_cert_listener(atl::client_certificates::required));
  auto c = tls_client::connect(srv.endpoint(),
                               with_cert(trusting(), certs().client_cert, certs().client_key));
  ASSERT_TRUE(c.round_trip()) << c.error();
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen);
  EXPECT_NE((*seen)->peer_subject.find("CN=test-client"), std::string::npos)
      << "peer_subject: '" << (*seen)->peer_subject << "'";
}

TEST_F(tls, required_client_certificates_refuse_a_client_without_one) {
  echo_server srv(client_cert_listener(atl::client_certificates::required));
  expect_refused(srv, trusting());
}

TEST_F(tls, required_client_certificates_refuse_one_from_an_unrelated_ca) {
  echo_server srv(client_cert_listener(atl::client_certificates::required));
  expect_refused(srv, with_cert(trusting(), certs().bad_client_cert, certs().bad_client_key));
}

TEST_F(tls, optional_client_certificates_refuse_one_from_an_unrelated_ca) {
  echo_server srv(client_cert_listener(atl::client_certificates::optional));
  expect_refused(srv, with_cert(trusting(), certs().bad_client_cert, certs().bad_client_key));
}

TEST_F(tls, required_client_certificates_refuse_a_client_without_one_over_tls_1_2) {
  echo_server srv(client_cert_listener(atl::client_certificates::required));
  auto o = trusting();
  o.max_version = TLS1_2_VERSION;  // here the refusal is part of the client's handshake
  expect_refused(srv, o);
}

// ---------------------------------------------------------------------------------------------
// Versions

TEST_F(tls, min_version_tls1_3_refuses_a_client_capped_at_tls1_2) {
  auto config = tls_listener();
  config.tls.min_version = atl::tls_version::tls1_3;
  echo_server srv(config);
  auto o = trusting();
  o.max_version = TLS1_2_VERSION;
  auto c = tls_client::connect(srv.endpoint(), o);
  EXPECT_FALSE(c.ok()) << "negotiated " << c.version();
  EXPECT_TRUE(srv.wait_rejected(reject_reason::tls_handshake_failed, 1));
  EXPECT_TRUE(srv.wait_active(0));
  EXPECT_EQ(srv.p->opens(), 0u);

  // A TLS 1.3 client is fine.
  auto good = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(good.ok()) << good.error();
  EXPECT_EQ(good.version(), "TLSv1.3");
  EXPECT_TRUE(good.echo("v13\n")) << good.error();
}

TEST_F(tls, the_default_minimum_accepts_tls1_2_and_tls1_3) {
  echo_server srv(tls_listener());
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    auto o = trusting();
    o.min_version = o.max_version = version;
    auto c = tls_client::connect(srv.endpoint(), o);
    ASSERT_TRUE(c.ok()) << version << ": " << c.error();
    EXPECT_EQ(c.version(), version == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.3");
    EXPECT_TRUE(c.echo("v\n")) << c.error();
  }
}

// ---------------------------------------------------------------------------------------------
// The handshake timeout and its slot

TEST_F(tls, a_client_that_sends_nothing_is_closed_at_the_handshake_timeout) {
  auto config = tls_listener();
  config.handshake_timeout = 200ms;
  echo_server srv(config);

  const auto start = clock_type::now();
  auto c = client::connect(srv.endpoint());
  ASSERT_TRUE(c.valid());
  const outcome o = c.wait_closed(5s);
  const auto elapsed = clock_type::now() - start;
  EXPECT_TRUE(o == outcome::eof || o == outcome::reset) << to_string(o);
  EXPECT_GE(elapsed, 190ms);  // not before the timeout (10 ms for timer rounding)
  EXPECT_LT(elapsed, 4s);
  EXPECT_TRUE(srv.wait_rejected(reject_reason::handshake_timeout, 1));
  EXPECT_EQ(srv.rejected(reject_reason::tls_handshake_failed), 0u);
  EXPECT_TRUE(srv.wait_active(0));
  EXPECT_EQ(srv.p->opens(), 0u);
}

TEST_F(tls, a_client_that_stalls_mid_handshake_is_closed_at_the_handshake_timeout) {
  auto config = tls_listener();
  config.handshake_timeout = 200ms;
  echo_server srv(config);
  auto c = client::connect(srv.endpoint());
  ASSERT_TRUE(c.valid());
  // The first 5 bytes of a TLS record header (handshake, TLS 1.0 legacy version, 512 bytes):
  // the server waits for the rest, which never comes.
  ASSERT_TRUE(c.send(std::string("\x16\x03\x01\x02\x00", 5)));
  const outcome o = c.wait_closed(5s);
  EXPECT_TRUE(o == outcome::eof || o == outcome::reset) << to_string(o);
  EXPECT_TRUE(srv.wait_rejected(reject_reason::handshake_timeout, 1));
  EXPECT_EQ(srv.p->opens(), 0u);
}

TEST_F(tls, a_handshaking_client_holds_a_slot) {
  auto config = tls_listener();
  config.max_connections = 1;
  config.handshake_timeout = 2s;  // long enough for the checks below, even under sanitizers
  echo_server srv(config);

  auto first = client::connect(srv.endpoint());
  ASSERT_TRUE(first.valid());
  ASSERT_TRUE(srv.wait_active(1)) << "the handshaking connection was not admitted";
  EXPECT_EQ(srv.s.status(srv.id).active, 1u);

  // The second client finds the listener full.
  auto second = client::connect(srv.endpoint());
  ASSERT_TRUE(second.valid());
  const outcome o = second.wait_closed(1500ms);
  EXPECT_TRUE(o == outcome::eof || o == outcome::reset) << to_string(o);
  EXPECT_TRUE(srv.wait_rejected(reject_reason::limit, 1));
  // ... while the first is still handshaking.
  std::string none;
  EXPECT_EQ(first.read_some(none, 0ms), outcome::timeout) << "the first client was closed early";
  EXPECT_EQ(srv.rejected(reject_reason::handshake_timeout), 0u);
  EXPECT_EQ(srv.stats().active, 1u);

  // The first times out and frees its slot: a TLS client gets in.
  const outcome first_end = first.wait_closed(5s);
  EXPECT_TRUE(first_end == outcome::eof || first_end == outcome::reset) << to_string(first_end);
  EXPECT_TRUE(srv.wait_rejected(reject_reason::handshake_timeout, 1));
  EXPECT_TRUE(srv.wait_active(0));
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_TRUE(c.echo("my turn\n")) << c.error();
  EXPECT_EQ(srv.p->opens(), 1u);
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol before TLS

TEST_F(tls, a_proxy_header_comes_before_the_tls_handshake) {
  auto config = tls_listener();
  config.proxy_protocol = atl::proxy_protocol_mode::v1;
  echo_server srv(config);
  auto o = trusting();
  o.preamble = "PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n";
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_TRUE(c.echo("proxied\n")) << c.error();
  ASSERT_TRUE(srv.p->wait_opens(1));
  EXPECT_EQ(srv.p->nth(0).peer.to_string(), "203.0.113.7:51000");
  auto seen = srv.journal->wait_at(0);
  ASSERT_TRUE(seen && *seen) << "connection::tls() was nullptr behind a PROXY header";
  EXPECT_EQ((*seen)->server_name, "localhost");
}

TEST_F(tls, the_handshake_timeout_covers_the_proxy_header_and_tls_together) {
  auto config = tls_listener();
  config.proxy_protocol = atl::proxy_protocol_mode::v1;
  config.handshake_timeout = 300ms;
  echo_server srv(config);
  auto plain = client::connect(srv.endpoint());
  ASSERT_TRUE(plain.valid());
  ASSERT_TRUE(plain.send("PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n"));  // then nothing
  const outcome o = plain.wait_closed(5s);
  EXPECT_TRUE(o == outcome::eof || o == outcome::reset) << to_string(o);
  EXPECT_TRUE(srv.wait_rejected(reject_reason::handshake_timeout, 1));
  EXPECT_EQ(srv.rejected(reject_reason::proxy_header_invalid), 0u);
  EXPECT_EQ(srv.p->opens(), 0u);
}

TEST_F(tls, a_tls_client_hello_without_the_required_proxy_header_is_refused) {
  auto config = tls_listener();
  config.proxy_protocol = atl::proxy_protocol_mode::v1;
  echo_server srv(config);
  auto c = tls_client::connect(srv.endpoint(), trusting());
  EXPECT_FALSE(c.round_trip());
  EXPECT_TRUE(srv.wait_rejected(reject_reason::proxy_header_invalid, 1));
  EXPECT_EQ(srv.rejected(reject_reason::tls_handshake_failed), 0u);
  EXPECT_EQ(srv.p->opens(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Bad clients

TEST_F(tls, garbage_instead_of_a_client_hello_is_closed_and_counted) {
  echo_server srv(tls_listener());
  auto plain = client::connect(srv.endpoint());
  ASSERT_TRUE(plain.valid());
  ASSERT_TRUE(plain.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  const outcome o = plain.wait_closed(5s);
  EXPECT_TRUE(o == outcome::eof || o == outcome::reset) << to_string(o);
  EXPECT_TRUE(srv.wait_rejected(reject_reason::tls_handshake_failed, 1));
  EXPECT_EQ(srv.rejected(reject_reason::handshake_timeout), 0u);
  EXPECT_TRUE(srv.wait_active(0));

  // The server goes on serving TLS clients.
  for (int i = 0; i < 3; ++i) {
    auto c = tls_client::connect(srv.endpoint(), trusting());
    ASSERT_TRUE(c.ok()) << c.error();
    EXPECT_TRUE(c.echo("still serving\n")) << c.error();
  }
  EXPECT_EQ(srv.p->opens(), 3u);
}

TEST_F(tls, a_client_that_rejects_the_server_certificate_is_counted) {
  echo_server srv(tls_listener());
  auto o = trusting();
  o.ca_file = certs().bad_ca_cert;  // the client does not trust the server's CA
  auto c = tls_client::connect(srv.endpoint(), o);
  EXPECT_FALSE(c.ok());
  EXPECT_TRUE(srv.wait_rejected(reject_reason::tls_handshake_failed, 1));
  EXPECT_TRUE(srv.wait_active(0));
  EXPECT_EQ(srv.p->opens(), 0u);
}

TEST_F(tls, failed_handshakes_never_reach_the_handler) {
  auto config = client_cert_listener(atl::client_certificates::required);
  config.tls.alpn = {"h2"};
  config.handshake_timeout = 300ms;
  echo_server srv(config);
  const auto with_client_cert = with_cert(trusting(), certs().client_cert, certs().client_key);

  {  // garbage
    auto plain = client::connect(srv.endpoint());
    ASSERT_TRUE(plain.send("garbage garbage garbage\r\n"));
    plain.wait_closed(5s);
  }
  {  // no client certificate
    auto c = tls_client::connect(srv.endpoint(), trusting());
    EXPECT_FALSE(c.round_trip());
  }
  {  // no common ALPN protocol
    auto o = with_client_cert;
    o.alpn = {"imap"};
    auto c = tls_client::connect(srv.endpoint(), o);
    EXPECT_FALSE(c.round_trip());
  }
  {  // silence until the timeout
    auto plain = client::connect(srv.endpoint());
    plain.wait_closed(5s);
  }
  {  // the client hangs up in the middle of the handshake
    auto plain = client::connect(srv.endpoint());
    ASSERT_TRUE(plain.send(std::string("\x16\x03\x01\x02\x00", 5)));
    ASSERT_TRUE(srv.wait_active(1));
  }
  EXPECT_TRUE(srv.wait_rejected(reject_reason::tls_handshake_failed, 3));
  EXPECT_TRUE(srv.wait_rejected(reject_reason::handshake_timeout, 1));
  EXPECT_TRUE(srv.wait_active(0));

  // One good client, then stop: exactly its on_open and on_close.
  auto good = tls_client::connect(srv.endpoint(), with_client_cert);
  ASSERT_TRUE(good.round_trip()) << good.error();
  srv.s.stop();
  EXPECT_EQ(srv.p->opens(), 1u);
  EXPECT_EQ(srv.p->closes(), 1u);
  EXPECT_EQ(srv.p->lifecycle_violations(), "");
}

// ---------------------------------------------------------------------------------------------
// Cipher profile (the defaults are also scanned by testssl.sh: testssl_test.cpp)

TEST_F(tls, tls1_2_uses_the_servers_cipher_order) {
  // OpenSSL's client lists AES-256-GCM before AES-128-GCM; the server's order puts AES-128 first.
  echo_server srv(tls_listener());
  auto o = trusting();
  o.max_version = TLS1_2_VERSION;
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.cipher(), "ECDHE-ECDSA-AES128-GCM-SHA256");
}

TEST_F(tls, configured_ciphers_decide_the_tls1_2_suite) {
  auto config = tls_listener();
  config.tls.ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305";
  echo_server srv(config);
  auto o = trusting();
  o.max_version = TLS1_2_VERSION;
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.cipher(), "ECDHE-ECDSA-CHACHA20-POLY1305");
  EXPECT_TRUE(c.echo("chacha\n")) << c.error();
}

TEST_F(tls, configured_ciphersuites_decide_the_tls1_3_suite) {
  auto config = tls_listener();
  config.tls.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256";
  echo_server srv(config);
  auto o = trusting();
  o.min_version = TLS1_3_VERSION;
  auto c = tls_client::connect(srv.endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c.cipher(), "TLS_CHACHA20_POLY1305_SHA256");
}

TEST_F(tls, empty_cipher_settings_mean_openssls_own_defaults) {
  auto config = tls_listener();
  config.tls.ciphers.clear();
  config.tls.ciphersuites.clear();
  config.tls.groups.clear();
  echo_server srv(config);
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    auto o = trusting();
    o.min_version = o.max_version = version;
    auto c = tls_client::connect(srv.endpoint(), o);
    ASSERT_TRUE(c.ok()) << c.error();
    EXPECT_TRUE(c.echo("defaults\n")) << c.error();
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration validation

std::string start_error(atl::listener_config config, std::size_t plain_before = 0) {
  server s(atl::test::threads(1));
  for (std::size_t i = 0; i < plain_before; ++i)
    s.add_listener(atl::test::loopback_listener(), atl::test::echo_factory());
  s.add_listener(std::move(config), atl::test::echo_factory());
  return message_of([&] { s.start(); });
}

TEST_F(tls, start_rejects_a_missing_certificate_file) {
  auto config = tls_listener();
  config.tls.cert_chain_file = certs().missing_file;
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.cert_chain_file"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_a_certificate_file_that_is_not_pem) {
  auto config = tls_listener();
  config.tls.cert_chain_file = certs().garbage_file;
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.cert_chain_file"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_a_missing_key_file) {
  auto config = tls_listener();
  config.tls.key_file = certs().missing_file;
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.key_file"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_a_key_that_does_not_match_the_certificate) {
  auto config = tls_listener();
  config.tls.key_file = certs().other_key;
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.key_file"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_client_verification_without_a_client_ca_file) {
  for (auto mode : {atl::client_certificates::optional, atl::client_certificates::required}) {
    auto config = tls_listener();
    config.tls.verify_clients = mode;
    const std::string msg = start_error(config);
    EXPECT_NE(msg.find("listener[0].tls.client_ca_file"), std::string::npos) << msg;
  }
}

TEST_F(tls, start_rejects_a_missing_client_ca_file) {
  auto config = client_cert_listener(atl::client_certificates::required);
  config.tls.client_ca_file = certs().missing_file;
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.client_ca_file"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_a_bad_sni_certificate_and_names_it) {
  auto config = sni_listener();
  config.tls.sni_certificates[0].key_file = certs().server_key;  // not other.test's key
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.sni_certificates[0]"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_an_sni_certificate_without_names) {
  auto config = sni_listener();
  config.tls.sni_certificates[0].server_names.clear();
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.sni_certificates[0].server_names"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_an_empty_alpn_protocol_name) {
  auto config = tls_listener();
  config.tls.alpn = {"h2", ""};
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.alpn[1]"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_an_unknown_cipher_and_names_it) {
  // OpenSSL alone would drop the unknown name and run with the rest.
  auto config = tls_listener();
  config.tls.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA265";
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.ciphers"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'ECDHE-ECDSA-AES128-GCM-SHA265'"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_a_tls1_3_suite_in_the_tls1_2_cipher_list) {
  auto config = tls_listener();
  config.tls.ciphers = "TLS_AES_128_GCM_SHA256";
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.ciphers"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ciphersuites"), std::string::npos) << msg;  // says where it belongs
}

TEST_F(tls, start_accepts_cipher_string_keywords_and_exclusions) {
  auto config = tls_listener();
  config.tls.ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1:-RSA:@STRENGTH";
  EXPECT_EQ(start_error(config), "(no exception)");
}

TEST_F(tls, start_rejects_an_unknown_tls1_3_ciphersuite_and_names_it) {
  auto config = tls_listener();
  config.tls.ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM_SHA384";
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.ciphersuites"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'TLS_AES_512_GCM_SHA384'"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_an_unknown_group_and_names_it) {
  auto config = tls_listener();
  config.tls.groups = "X25519:P-257";
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.groups"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'P-257'"), std::string::npos) << msg;
}

TEST_F(tls, start_rejects_a_missing_or_malformed_ocsp_response_file) {
  for (const std::string& file : {certs().missing_file, certs().garbage_file}) {
    auto config = tls_listener();
    config.tls.ocsp_response_file = file;
    const std::string msg = start_error(config);
    EXPECT_NE(msg.find("listener[0].tls.ocsp_response_file"), std::string::npos) << msg;
  }
}

TEST_F(tls, start_rejects_an_ocsp_response_without_a_certificate) {
  auto config = atl::test::loopback_listener();
  config.tls.ocsp_response_file = certs().garbage_file;
  const std::string msg = start_error(config);
  EXPECT_NE(msg.find("listener[0].tls.cert_chain_file"), std::string::npos) << msg;
}

TEST_F(tls, start_names_the_index_of_the_bad_listener) {
  auto config = tls_listener();
  config.tls.key_file = certs().missing_file;
  const std::string msg = start_error(config, /*plain_before=*/1);
  EXPECT_NE(msg.find("listener[1].tls.key_file"), std::string::npos) << msg;
}

TEST_F(tls, start_with_an_error_code_reports_invalid_config_and_binds_nothing) {
  auto config = tls_listener();
  config.tls.key_file = certs().missing_file;
  server s(atl::test::threads(1));
  s.add_listener(config, atl::test::echo_factory());
  std::error_code ec;
  s.start(ec);
  EXPECT_EQ(ec, atl::errc::invalid_config) << ec.message();
  EXPECT_NE(s.last_error().find("listener[0].tls.key_file"), std::string::npos) << s.last_error();
  EXPECT_FALSE(s.running());
}

TEST_F(tls, a_valid_configuration_with_every_option_starts) {
  auto config = sni_listener();
  config.tls.verify_clients = atl::client_certificates::optional;
  config.tls.client_ca_file = certs().client_ca_cert;
  config.tls.alpn = {"h2", "http/1.1"};
  config.tls.min_version = atl::tls_version::tls1_3;
  const std::string msg = start_error(config);
  EXPECT_EQ(msg, "(no exception)");
}

// ---------------------------------------------------------------------------------------------
// Closing

TEST_F(tls, a_local_close_reaches_the_client_as_close_notify) {
  echo_server srv(tls_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.write_all("BYE\n")) << c.error();
  std::string data;
  const tls_close how = c.read_until_close(5s, &data);
  EXPECT_EQ(data, "bye\n");
  EXPECT_EQ(how, tls_close::clean) << to_string(how) << ": " << c.error();
  ASSERT_TRUE(srv.p->wait_closes(1));
  EXPECT_EQ(srv.p->nth(0).reason, close_reason::local_close);
}

TEST_F(tls, a_client_close_notify_is_a_peer_close) {
  echo_server srv(tls_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.round_trip()) << c.error();
  c.close_notify();
  ASSERT_TRUE(srv.p->wait_closes(1));
  EXPECT_EQ(srv.p->nth(0).reason, close_reason::peer_closed);
  EXPECT_TRUE(srv.wait_active(0));
}

TEST_F(tls, a_client_that_vanishes_without_close_notify_is_a_peer_close) {
  // Common in practice (HTTP/1.1 clients that close after the response, killed processes):
  // the TCP EOF without a close_notify is the peer closing, not a server-side error.
  echo_server srv(tls_listener());
  auto c = tls_client::connect(srv.endpoint(), trusting());
  ASSERT_TRUE(c.round_trip()) << c.error();
  c.close();
  ASSERT_TRUE(srv.p->wait_closes(1));
  const auto r = srv.p->nth(0);
  EXPECT_EQ(r.reason, close_reason::peer_closed)
      << atl::to_string(r.reason) << " (" << r.ec.message() << ")";
  EXPECT_TRUE(srv.wait_active(0));
}

TEST_F(tls, stop_drains_open_tls_connections) {
  auto config = tls_listener();
  config.shutdown_timeout = 5s;
  echo_server srv(config);
  std::vector<tls_client> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(tls_client::connect(srv.endpoint(), trusting()));
    ASSERT_TRUE(clients.back().round_trip()) << clients.back().error();
  }
  ASSERT_TRUE(srv.p->wait_opens(3));

  const auto start = clock_type::now();
  std::thread stopper([&] { srv.s.stop(); });
  for (auto& c : clients) {
    const tls_close how = c.read_until_close(5s);
    EXPECT_EQ(how, tls_close::clean) << to_string(how) << ": " << c.error();
  }
  stopper.join();
  EXPECT_LT(clock_type::now() - start, 4s) << "the drain waited for the shutdown_timeout";
  EXPECT_EQ(srv.p->closes(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(srv.p->nth(i).reason, close_reason::shutdown);
  EXPECT_EQ(srv.p->lifecycle_violations(), "");
}

TEST_F(tls, stop_closes_connections_still_in_their_handshake) {
  auto config = tls_listener();
  config.handshake_timeout = 30s;
  config.shutdown_timeout = 5s;
  echo_server srv(config);
  auto plain = client::connect(srv.endpoint());
  ASSERT_TRUE(plain.valid());
  ASSERT_TRUE(srv.wait_active(1));
  const auto start = clock_type::now();
  srv.s.stop();
  EXPECT_LT(clock_type::now() - start, 4s);
  const outcome o = plain.wait_closed(2s);
  EXPECT_TRUE(o == outcome::eof || o == outcome::reset) << to_string(o);
  EXPECT_EQ(srv.rejected(reject_reason::shutdown), 1u);
  EXPECT_EQ(srv.p->opens(), 0u);
  EXPECT_EQ(srv.p->closes(), 0u);
}

}  // namespace
