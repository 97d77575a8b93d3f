// Interop with a real TLS peer: Debian's `openssl s_client` against the atoll-echo example
// (examples/echo, started with --tls-cert/--tls-key as a child process) and against an
// in-process server for what the example has no flag for (ALPN, OCSP stapling). Sends a line
// on s_client's stdin and reads the echo from its stdout; TLS 1.2 and 1.3; the default cipher
// profile (no CBC suites, the server's order, the default groups). Every wait is bounded;
// skipped only when there is no openssl binary.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atoll/server.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/child_process.hpp"
#include "support/connection_helpers.hpp"
#include "support/tls_certs.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Generous: the example and s_client may run under ASan beside other tests.
constexpr auto startup_timeout = 20s;
constexpr auto io_timeout = 10s;

const atl::test::tls_certs& certs() { return atl::test::test_certs(); }

/// `openssl s_client ...` with stdin on a pipe and stdout+stderr merged on another.
class s_client {
 public:
  s_client() = default;
  s_client(const s_client&) = delete;
  s_client& operator=(const s_client&) = delete;
  ~s_client() { kill_and_reap(); }

  bool spawn(const std::string& openssl, std::vector<std::string> args) {
    std::vector<std::string> storage{openssl, "s_client"};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : storage) argv.push_back(s.data());
    argv.push_back(nullptr);
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return false;
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(out[1], STDERR_FILENO);
      ::execv(openssl.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    in_fd_ = in[1];
    out_fd_ = out[0];
    return true;
  }

  /// Writes `text` to s_client's stdin (a pipe: test-sized writes do not block).
  bool write(std::string_view text) {
    while (!text.empty()) {
      const ssize_t n = ::write(in_fd_, text.data(), text.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      text.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  /// Closes stdin: s_client (without -ign_eof) then closes the connection and exits.
  void close_stdin() {
    if (in_fd_ >= 0) ::close(std::exchange(in_fd_, -1));
  }

  /// Reads output until it contains `needle`, EOF, or `timeout`; true if found.
  bool wait_for_output(std::string_view needle, std::chrono::milliseconds timeout) {
    const auto deadline = clock_type::now() + timeout;
    while (output_.find(needle) == std::string::npos)
      if (!read_some(deadline)) return output_.find(needle) != std::string::npos;
    return true;
  }

  /// Reads to EOF and waits for the exit (bounded); the wait status, or nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = clock_type::now() + timeout;
    while (read_some(deadline)) {
    }
    // No event to block on for a child's exit: poll its status every few ms, bounded.
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        exit_status_ = status;
        break;
      }
      if ((r < 0 && errno != EINTR) || clock_type::now() >= deadline) break;
      std::this_thread::sleep_for(5ms);
    }
    return exit_status_;
  }

  const std::string& output() const { return output_; }

  void kill_and_reap() {
    close_stdin();
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    if (out_fd_ >= 0) ::close(std::exchange(out_fd_, -1));
  }

 private:
  bool read_some(clock_type::time_point deadline) {
    if (out_fd_ < 0) return false;
    pollfd p{out_fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(atl::test::left_until(deadline).count()));
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    char buf[4096];
    const ssize_t r = ::read(out_fd_, buf, sizeof buf);
    if (r < 0 && errno == EINTR) return true;
    if (r <= 0) {
      ::close(std::exchange(out_fd_, -1));
      return false;
    }
    output_.append(buf, static_cast<std::size_t>(r));
    return true;
  }

  pid_t pid_ = -1;
  int in_fd_ = -1;
  int out_fd_ = -1;
  std::string output_;
  std::optional<int> exit_status_;
};

/// Makes an OCSP response (DER) in the certificate directory saying the server certificate is
/// good, signed by the test CA itself (RFC 6960 §4.2.2.2), with `openssl ocsp`; its path, or
/// "" with `*error` set.
std::string make_ocsp_response(const std::string& openssl, std::string* error) {
  const auto& c = certs();
  // `openssl ocsp` answers from an index in the format of `openssl ca`'s database, keyed by
  // the certificate's serial number.
  std::string serial;
  if (FILE* f = std::fopen(c.server_cert.c_str(), "r")) {
    if (X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr)) {
      if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), nullptr)) {
        if (char* hex = BN_bn2hex(bn)) {
          serial = hex;
          OPENSSL_free(hex);
        }
        BN_free(bn);
      }
      X509_free(x);
    }
    std::fclose(f);
  }
  if (serial.empty()) {
    *error = "cannot read the serial number of " + c.server_cert;
    return "";
  }
  std::ofstream(c.dir + "/ocsp_index.txt")
      << "V\t491231235959Z\t\t" << serial << "\tunknown\t/CN=localhost\n";
  const std::string log = c.dir + "/ocsp.log";
  if (!atl::test::run_bounded(openssl,
                              {"ocsp", "-issuer", c.ca_cert, "-cert", c.server_cert, "-no_nonce",
                               "-reqout", "ocsp_request.der"},
                              c.dir, log, startup_timeout, error) ||
      !atl::test::run_bounded(openssl,
                              {"ocsp", "-index", "ocsp_index.txt", "-CA", c.ca_cert, "-rsigner",
                               c.ca_cert, "-rkey", c.dir + "/ca.key", "-reqin", "ocsp_request.der",
                               "-respout", "ocsp_response.der", "-ndays", "1"},
                              c.dir, log, startup_timeout, error))
    return "";
  return c.dir + "/ocsp_response.der";
}

/// Where s_client connects: the atoll-echo example with --tls-cert/--tls-key when it has those
/// flags, else an in-process echo server with the same certificate.
class openssl_s_client : public ::testing::Test {
 protected:
  void SetUp() override {
    openssl_ = atl::test::openssl_binary();
    if (openssl_.empty()) GTEST_SKIP() << "no openssl binary (apt-get install openssl)";
    ASSERT_TRUE(certs().ok) << certs().error;
  }

  /// Starts the example (or the in-process fallback) with TLS; sets `port_`.
  void start_echo_example() {
#ifdef ATOLL_ECHO_BINARY
    if (example_has_tls_flags()) {
      ASSERT_TRUE(example_.spawn(ATOLL_ECHO_BINARY,
                                 {"--port", "0", "--threads", "2", "--tls-cert",
                                  certs().server_cert, "--tls-key", certs().server_key},
                                 /*capture_stderr=*/false));
      const auto line = example_.read_line(startup_timeout);
      ASSERT_TRUE(line.has_value()) << "atoll-echo printed no address";
      const std::string prefix = "listening on ";
      ASSERT_EQ(line->rfind(prefix, 0), 0u) << *line;
      const auto ep = atl::test::parse_endpoint(line->substr(prefix.size()));
      ASSERT_NE(ep.port(), 0) << *line;
      port_ = ep.port();
      return;
    }
    std::printf("note: atoll-echo has no --tls-cert flag yet; using an in-process server\n");
#endif
    start_in_process({});
  }

  /// An in-process TLS echo server with `alpn` and `ocsp_response_file`.
  void start_in_process(std::vector<std::string> alpn, std::string ocsp_response_file = {}) {
    server_ = std::make_unique<atl::server>(atl::test::threads(2));
    auto config = atl::test::loopback_listener();
    config.tls.cert_chain_file = certs().server_cert;
    config.tls.key_file = certs().server_key;
    config.tls.alpn = std::move(alpn);
    config.tls.ocsp_response_file = std::move(ocsp_response_file);
    const auto id = server_->add_listener(config, atl::test::echo_factory());
    server_->start();
    port_ = server_->local_endpoint(id).port();
  }

  /// s_client verifying the server as localhost, plus `extra` flags.
  std::vector<std::string> args(std::vector<std::string> extra) const {
    std::vector<std::string> a{"-connect",
                               "127.0.0.1:" + std::to_string(port_),
                               "-servername",
                               "localhost",
                               "-CAfile",
                               certs().ca_cert,
                               "-verify_return_error",
                               "-verify_hostname",
                               "localhost",
                               "-nocommands"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  /// Runs s_client with `extra` flags: sends a line, expects it back, closes stdin, expects
  /// exit status 0. Returns s_client's output for further checks.
  std::string echo_through_s_client(std::vector<std::string> extra) {
    s_client c;
    EXPECT_TRUE(c.spawn(openssl_, args(std::move(extra))));
    const std::string line = "hello from s_client " + std::to_string(port_) + "\n";
    EXPECT_TRUE(c.write(line));
    EXPECT_TRUE(c.wait_for_output(line, io_timeout)) << "no echo; s_client said:\n" << c.output();
    c.close_stdin();
    const auto status = c.wait_exit(io_timeout);
    EXPECT_TRUE(status.has_value()) << "s_client did not exit; it said:\n" << c.output();
    if (status) {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "status " << *status << "; s_client said:\n"
          << c.output();
    }
    return c.output();
  }

  /// Runs s_client with `extra` flags for a handshake only (stdin closed at once); true if it
  /// exited 0 within the bound. `out` gets its output.
  bool handshake(std::vector<std::string> extra, std::string& out) {
    s_client c;
    if (!c.spawn(openssl_, args(std::move(extra)))) {
      out = "spawn failed";
      return false;
    }
    c.close_stdin();
    const auto status = c.wait_exit(io_timeout);
    out = c.output();
    return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
  }

  std::string openssl_;
  std::uint16_t port_ = 0;
  atl::test::child_process example_;
  std::unique_ptr<atl::server> server_;

 private:
#ifdef ATOLL_ECHO_BINARY
  static bool example_has_tls_flags() {
    atl::test::child_process help;
    if (!help.spawn(ATOLL_ECHO_BINARY, {"--help"}, /*capture_stderr=*/true)) return false;
    help.read_to_end(startup_timeout);
    help.wait_exit(startup_timeout);
    return help.out().find("--tls-cert") != std::string::npos ||
           help.err().find("--tls-cert") != std::string::npos;
  }
#endif
};

TEST_F(openssl_s_client, echoes_a_line_through_the_echo_example) {
  start_echo_example();
  const std::string out = echo_through_s_client({"-alpn", "http/1.1"});
  EXPECT_NE(out.find("Verify return code: 0 (ok)"), std::string::npos) << out;
  // The example configures no ALPN: the offer is ignored, not refused.
  EXPECT_NE(out.find("No ALPN negotiated"), std::string::npos) << out;
}

TEST_F(openssl_s_client, negotiates_tls1_3_with_the_echo_example) {
  start_echo_example();
  const std::string out = echo_through_s_client({"-tls1_3"});
  EXPECT_NE(out.find("New, TLSv1.3,"), std::string::npos) << out;
}

TEST_F(openssl_s_client, negotiates_tls1_2_with_the_echo_example) {
  start_echo_example();
  const std::string out = echo_through_s_client({"-tls1_2"});
  EXPECT_NE(out.find("New, TLSv1.2,"), std::string::npos) << out;
  EXPECT_NE(out.find("Protocol  : TLSv1.2"), std::string::npos) << out;
}

TEST_F(openssl_s_client, refuses_to_trust_the_echo_example_under_another_name) {
  start_echo_example();
  s_client c;
  auto a = args({"-tls1_3"});
  for (auto& s : a)
    if (s == "localhost") s = "other.test";  // SNI and the name checked: not in the cert
  ASSERT_TRUE(c.spawn(openssl_, a));
  c.close_stdin();
  const auto status = c.wait_exit(io_timeout);
  ASSERT_TRUE(status.has_value()) << c.output();
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << c.output();
  EXPECT_NE(c.output().find("hostname mismatch"), std::string::npos) << c.output();
}

TEST_F(openssl_s_client, the_echo_example_refuses_a_tls1_2_client_offering_only_cbc_suites) {
  start_echo_example();
  std::string out;
  EXPECT_FALSE(handshake({"-tls1_2", "-cipher",
                          "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:"
                          "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"},
                         out))
      << out;
  EXPECT_NE(out.find("handshake failure"), std::string::npos) << out;
}

TEST_F(openssl_s_client, the_echo_example_orders_tls1_2_suites_itself) {
  start_echo_example();
  std::string out;
  ASSERT_TRUE(handshake(
      {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"}, out))
      << out;
  EXPECT_NE(out.find("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"), std::string::npos) << out;
}

TEST_F(openssl_s_client, the_echo_example_gives_chacha20_to_a_client_that_prefers_it) {
  // Phones without AES instructions list ChaCha20 first; the server's order must not undo that.
  start_echo_example();
  std::string out;
  ASSERT_TRUE(handshake(
      {"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"}, out))
      << out;
  EXPECT_NE(out.find("Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"), std::string::npos) << out;
}

TEST_F(openssl_s_client, the_echo_example_offers_x25519_p256_and_p384_only) {
  start_echo_example();
  std::string out;
  for (const char* group : {"X25519", "prime256v1", "secp384r1"}) {
    EXPECT_TRUE(handshake({"-groups", group}, out)) << group << ":\n" << out;
  }
  for (const char* group : {"secp521r1", "X448", "ffdhe2048"}) {
    EXPECT_FALSE(handshake({"-groups", group}, out)) << group << ":\n" << out;
  }
}

TEST_F(openssl_s_client, staples_the_configured_ocsp_response) {
  std::string error;
  const std::string response = make_ocsp_response(openssl_, &error);
  ASSERT_FALSE(response.empty()) << error;
  start_in_process({}, response);
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    std::string out;
    ASSERT_TRUE(handshake({version, "-status"}, out)) << out;
    EXPECT_NE(out.find("OCSP Response Status: successful"), std::string::npos) << out;
    EXPECT_NE(out.find("Cert Status: good"), std::string::npos) << out;
  }
}

TEST_F(openssl_s_client, staples_nothing_by_default) {
  start_echo_example();
  std::string out;
  ASSERT_TRUE(handshake({"-status"}, out)) << out;
  EXPECT_NE(out.find("OCSP response: no response sent"), std::string::npos) << out;
}

TEST_F(openssl_s_client, selects_alpn_in_the_servers_order) {
  start_in_process({"h2", "http/1.1"});
  const std::string out = echo_through_s_client({"-alpn", "http/1.1,h2"});
  EXPECT_NE(out.find("ALPN protocol: h2"), std::string::npos) << out;
}

TEST_F(openssl_s_client, fails_without_a_common_alpn_protocol) {
  start_in_process({"h2"});
  s_client c;
  ASSERT_TRUE(c.spawn(openssl_, args({"-alpn", "imap"})));
  c.close_stdin();
  const auto status = c.wait_exit(io_timeout);
  ASSERT_TRUE(status.has_value()) << c.output();
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << c.output();
  EXPECT_NE(c.output().find("no application protocol"), std::string::npos) << c.output();
}

}  // namespace
