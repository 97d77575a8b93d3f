#pragma once
// Test certificates for the TLS tests, made at test time with the `openssl` command-line tool
// (Debian's openssl package) in a fresh temporary directory, once per test process; no key is
// ever committed. EC P-256 keys (fast to generate). Every openssl run is bounded by a timeout.
//
//   ca            "atoll test CA"               signs the server certificates
//   server        CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1   (signed by ca)
//   other         CN=other.test, SAN DNS:other.test                        (signed by ca; SNI)
//   client_ca     "atoll test client CA"        signs client certificates
//   client        CN=test-client                                           (signed by client_ca)
//   bad_ca        "atoll unrelated CA"          trusted by nobody
//   bad_client    CN=bad-client                                            (signed by bad_ca)

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace atl::test {

/// The `openssl` binary to run: $ATOLL_OPENSSL if set, else the first `openssl` on PATH, else
/// /usr/bin/openssl. Empty when none is executable.
inline std::string openssl_binary() {
  if (const char* env = std::getenv("ATOLL_OPENSSL"); env && *env)
    return ::access(env, X_OK) == 0 ? std::string(env) : std::string();
  if (const char* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      if (dir.empty()) continue;
      std::string candidate = dir + "/openssl";
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return ::access("/usr/bin/openssl", X_OK) == 0 ? "/usr/bin/openssl" : "";
}

/// Runs `binary args...` with stdin from /dev/null and stdout+stderr appended to `log_file`,
/// in `work_dir`. Returns true if it exited 0 within `timeout`; otherwise kills it and puts a
/// description (and the log's tail) in `*error`.
inline bool run_bounded(const std::string& binary, const std::vector<std::string>& args,
                        const std::string& work_dir, const std::string& log_file,
                        std::chrono::milliseconds timeout, std::string* error) {
  std::vector<std::string> storage{binary};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    if (error) *error = "open " + log_file + ": " + std::strerror(errno);
    if (log_fd >= 0) ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return false;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls after fork.
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    if (::chdir(work_dir.c_str()) != 0) ::_exit(126);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  if (pid < 0) {
    if (error) *error = std::string("fork: ") + std::strerror(errno);
    return false;
  }

  // Waiting for a process to exit has no event a test can block on with a deadline (short of
  // pidfd); poll its status every few milliseconds, bounded.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      if (error) *error = std::string("waitpid: ") + std::strerror(errno);
      return false;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (error) *error = "timed out after " + std::to_string(timeout.count()) + " ms";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (error) {
    std::ifstream log(log_file);
    std::stringstream text;
    text << log.rdbuf();
    std::string tail = text.str();
    if (tail.size() > 2000) tail = tail.substr(tail.size() - 2000);
    *error = "exit status " + std::to_string(status) + "; output:\n" + tail;
  }
  return false;
}

/// Paths of the generated PEM files (see the table at the top of this file).
struct tls_certs {
  /// False if generation failed; `error` then says why (the tests fail with it).
  bool ok = false;
  std::string error;
  std::string dir;

  std::string ca_cert;                  ///< trust anchor for the server certificates
  std::string server_cert, server_key;  ///< CN=localhost
  std::string other_cert, other_key;    ///< CN=other.test
  std::string client_ca_cert;           ///< trust anchor for client certificates
  std::string client_cert, client_key;  ///< CN=test-client, signed by client_ca
  std::string bad_ca_cert;
  std::string bad_client_cert, bad_client_key;  ///< CN=bad-client, signed by bad_ca
  std::string missing_file;                     ///< a path in `dir` that does not exist
  std::string garbage_file;                     ///< a file that is not PEM
};

namespace detail_tls {

inline bool generate(tls_certs& c);

/// Generates on construction; removes the directory when the test process exits (static
/// destruction).
struct cert_store {
  tls_certs certs;
  cert_store() { certs.ok = generate(certs); }
  cert_store(const cert_store&) = delete;
  cert_store& operator=(const cert_store&) = delete;
  ~cert_store() {
    std::error_code ec;
    if (!certs.dir.empty()) std::filesystem::remove_all(certs.dir, ec);
  }
};

inline bool generate(tls_certs& c) {
  const std::string openssl = openssl_binary();
  if (openssl.empty()) {
    c.error = "no openssl binary (apt-get install openssl)";
    return false;
  }
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/atoll-tls-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    c.error = std::string("mkdtemp: ") + std::strerror(errno);
    return false;
  }
  c.dir = tmpl;
  const auto file = [&](const std::string& name) { return c.dir + "/" + name; };
  const std::string log = file("openssl.log");
  constexpr std::chrono::milliseconds timeout{20'000};  // generous: ASan/TSan runs in parallel
  const auto run = [&](std::vector<std::string> args) {
    std::string err;
    if (run_bounded(openssl, args, c.dir, log, timeout, &err)) return true;
    std::string cmd = "openssl";
    for (const auto& a : args) cmd += " " + a;
    c.error = cmd + ": " + err;
    return false;
  };
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream out(file(name));
    out << text;
    return static_cast<bool>(out);
  };

  // A self-signed CA.
  const auto make_ca = [&](const std::string& name, const std::string& cn) {
    return run({"req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                name + ".key",
                "-out",
                name + ".pem",
                "-days",
                "3",
                "-subj",
                "/CN=" + cn,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign"});
  };
  // A leaf signed by `ca` with the extensions in `ext` (an -extfile).
  int serial = 100;
  const auto make_leaf = [&](const std::string& name, const std::string& cn, const std::string& ca,
                             const std::string& ext) {
    if (!write(name + ".ext", ext)) {
      c.error = "cannot write " + file(name + ".ext");
      return false;
    }
    return run({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn}) &&
           run({"x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-set_serial", std::to_string(++serial), "-days", "3", "-extfile", name + ".ext",
                "-out", name + ".pem"});
  };
  const std::string server_ext =
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
      "extendedKeyUsage=serverAuth\n";
  const std::string client_ext =
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
      "extendedKeyUsage=clientAuth\n";

  if (!make_ca("ca", "atoll test CA") || !make_ca("client_ca", "atoll test client CA") ||
      !make_ca("bad_ca", "atoll unrelated CA"))
    return false;
  if (!make_leaf("server", "localhost", "ca",
                 server_ext + "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n") ||
      !make_leaf("other", "other.test", "ca", server_ext + "subjectAltName=DNS:other.test\n") ||
      !make_leaf("client", "test-client", "client_ca", client_ext) ||
      !make_leaf("bad_client", "bad-client", "bad_ca", client_ext))
    return false;
  if (!write("garbage.pem", "this is not a PEM file\n")) {
    c.error = "cannot write " + file("garbage.pem");
    return false;
  }

  c.ca_cert = file("ca.pem");
  c.server_cert = file("server.pem");
  c.server_key = file("server.key");
  c.other_cert = file("other.pem");
  c.other_key = file("other.key");
  c.client_ca_cert = file("client_ca.pem");
  c.client_cert = file("client.pem");
  c.client_key = file("client.key");
  c.bad_ca_cert = file("bad_ca.pem");
  c.bad_client_cert = file("bad_client.pem");
  c.bad_client_key = file("bad_client.key");
  c.missing_file = file("does-not-exist.pem");
  c.garbage_file = file("garbage.pem");
  return true;
}

}  // namespace detail_tls

/// The certificates of this test process, generated on first use (thread-safe). Check `ok`.
inline const tls_certs& test_certs() {
  static const detail_tls::cert_store store;
  return store.certs;
}

}  // namespace atl::test
