#include "tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <strings.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <stdexcept>

namespace atl::detail {

namespace {

[[noreturn]] void refuse(const std::string& field, const std::string& why) {
  throw std::invalid_argument("atoll: " + field + ": " + why);
}

// The newest OpenSSL error as text (empties the queue).
std::string openssl_error() {
  unsigned long e = 0;
  unsigned long last = 0;
  while ((e = ERR_get_error()) != 0) last = e;
  if (last == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(last, buf, sizeof buf);
  return buf;
}

// "*.example.com" matches exactly one label in front of example.com.
bool name_matches(const std::string& pattern, const char* name) {
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    const char* dot = std::strchr(name, '.');
    return dot != nullptr && dot != name && ::strcasecmp(dot + 1, pattern.c_str() + 2) == 0;
  }
  return ::strcasecmp(pattern.c_str(), name) == 0;
}

using ctx_setter = int (*)(SSL_CTX*, const char*);

// OpenSSL accepts a cipher or group list as long as one element is usable and drops unknown
// ones silently, so a typo would narrow the configuration unnoticed. Each element that adds
// something is tried alone on a scratch context at security level 0 (the question here is
// whether OpenSSL knows the name, not whether the level allows it). `separators` are the ones
// OpenSSL's parser accepts for that list.
void check_each_element(const std::string& list, const char* separators, const std::string& field,
                        const char* what, ctx_setter set) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> scratch(SSL_CTX_new(TLS_server_method()),
                                                            &SSL_CTX_free);
  if (!scratch) refuse(field, "cannot create an OpenSSL context: " + openssl_error());
  SSL_CTX_set_security_level(scratch.get(), 0);
  std::size_t begin = 0;
  while (begin <= list.size()) {
    const std::size_t end = std::min(list.find_first_of(separators, begin), list.size());
    const std::string element = list.substr(begin, end - begin);
    begin = end + 1;
    // "!X", "-X" and "+X" only remove or move what other elements added; "@STRENGTH" and
    // "@SECLEVEL=n" are commands. Empty elements ("a::b") are skipped by OpenSSL too.
    if (element.empty() || std::strchr("!-+@", element[0]) != nullptr) continue;
    if (set(scratch.get(), element.c_str()) != 1) {
      ERR_clear_error();
      refuse(field, fmt::format("'{}' is not a known {}", element, what));
    }
  }
}

int set_cipher_list(SSL_CTX* ctx, const char* list) { return SSL_CTX_set_cipher_list(ctx, list); }
int set_ciphersuites(SSL_CTX* ctx, const char* list) { return SSL_CTX_set_ciphersuites(ctx, list); }
int set_groups(SSL_CTX* ctx, const char* list) {
  return static_cast<int>(SSL_CTX_set1_groups_list(ctx, list));
}

// The DER bytes of a successful OCSP response read from `path`.
std::vector<unsigned char> read_ocsp_response(const std::string& path, const std::string& field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) refuse(field, fmt::format("'{}': {}", path, std::strerror(errno)));
  std::vector<unsigned char> der{std::istreambuf_iterator<char>(in),
                                 std::istreambuf_iterator<char>()};
  const unsigned char* p = der.data();
  OCSP_RESPONSE* response = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size()));
  if (response == nullptr) {
    refuse(field, fmt::format("'{}' is not a DER OCSP response: {}", path, openssl_error()));
  }
  const int status = OCSP_response_status(response);
  OCSP_RESPONSE_free(response);
  if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    refuse(field, fmt::format("'{}': the responder answered '{}', not a certificate status", path,
                              OCSP_response_status_str(status)));
  }
  return der;
}

}  // namespace

std::unique_ptr<asio::ssl::context> tls_context::make_context(const std::string& cert,
                                                              const std::string& key,
                                                              const std::string& field) {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
  const int min = config_.min_version == tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  SSL_CTX_set_min_proto_version(native, min);
  // Partial writes: SSL_write returns after each record, like send(2) returns a short count.
  SSL_CTX_set_mode(native, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               SSL_MODE_RELEASE_BUFFERS);
  // The profile tls.hpp documents. PRIORITIZE_CHACHA: under server preference, a client that
  // lists ChaCha20 first (phones without AES instructions) still gets it. NO_TICKET: resumption
  // through the session cache (TLS 1.3: stateful tickets), as OpenSSL never rotates ticket keys.
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                                  SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_NO_TICKET);
  if (!config_.ciphers.empty() && SSL_CTX_set_cipher_list(native, config_.ciphers.c_str()) != 1) {
    refuse(field_prefix_ + ".ciphers",
           fmt::format("'{}' selects no TLS 1.2 cipher suite usable at OpenSSL's security level: "
                       "{}",
                       config_.ciphers, openssl_error()));
  }
  if (!config_.ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(native, config_.ciphersuites.c_str()) != 1) {
    refuse(field_prefix_ + ".ciphersuites",
           fmt::format("'{}': {}", config_.ciphersuites, openssl_error()));
  }
  if (!config_.groups.empty() && SSL_CTX_set1_groups_list(native, config_.groups.c_str()) != 1) {
    refuse(field_prefix_ + ".groups", fmt::format("'{}': {}", config_.groups, openssl_error()));
  }
  std::error_code ec;
  ctx->use_certificate_chain_file(cert, ec);
  if (ec) refuse(field + ".cert_chain_file", fmt::format("'{}': {}", cert, ec.message()));
  if (key.empty()) refuse(field + ".key_file", "empty (the certificate's private key is needed)");
  ctx->use_private_key_file(key, asio::ssl::context::pem, ec);
  if (ec) refuse(field + ".key_file", fmt::format("'{}': {}", key, ec.message()));
  if (SSL_CTX_check_private_key(native) != 1) {
    refuse(field + ".key_file",
           fmt::format("'{}' does not match the certificate in '{}': {}", key, cert,
                       openssl_error()));
  }
  if (config_.verify_clients != client_certificates::none) {
    const std::string ca_field = field_prefix_ + ".client_ca_file";
    ctx->load_verify_file(config_.client_ca_file, ec);
    if (ec) refuse(ca_field, fmt::format("'{}': {}", config_.client_ca_file, ec.message()));
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config_.client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(native, names);
    int mode = SSL_VERIFY_PEER;
    if (config_.verify_clients == client_certificates::required) {
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(native, mode, nullptr);
  }
  if (!alpn_wire_.empty()) SSL_CTX_set_alpn_select_cb(native, &tls_context::on_alpn, this);
  return ctx;
}

tls_context::tls_context(const tls_config& config, const std::string& field_prefix)
    : config_(config), field_prefix_(field_prefix) {
  for (std::size_t i = 0; i < config_.alpn.size(); ++i) {
    const std::string& p = config_.alpn[i];
    if (p.empty() || p.size() > 255) {
      refuse(fmt::format("{}.alpn[{}]", field_prefix_, i), "must be 1..255 bytes long");
    }
    alpn_wire_.push_back(static_cast<unsigned char>(p.size()));
    alpn_wire_.insert(alpn_wire_.end(), p.begin(), p.end());
  }
  if (config_.verify_clients != client_certificates::none && config_.client_ca_file.empty()) {
    refuse(field_prefix_ + ".client_ca_file", "needed when verify_clients is not none");
  }
  check_each_element(config_.ciphers, ":;, ", field_prefix_ + ".ciphers",
                     "TLS 1.2 cipher suite or cipher-string keyword (see `openssl ciphers -v`; "
                     "TLS 1.3 suites go in ciphersuites)",
                     &set_cipher_list);
  check_each_element(config_.ciphersuites, ":", field_prefix_ + ".ciphersuites",
                     "TLS 1.3 cipher suite (e.g. TLS_AES_128_GCM_SHA256)", &set_ciphersuites);
  check_each_element(config_.groups, ":", field_prefix_ + ".groups",
                     "key-exchange group (e.g. X25519, prime256v1, secp384r1)", &set_groups);
  if (!config_.ocsp_response_file.empty()) {
    ocsp_response_ =
        read_ocsp_response(config_.ocsp_response_file, field_prefix_ + ".ocsp_response_file");
  }
  default_ = make_context(config_.cert_chain_file, config_.key_file, field_prefix_);
  if (!ocsp_response_.empty()) {
    // Only on the default context: after an SNI switch OpenSSL asks the new context's callback
    // (none), so an SNI certificate never gets the default certificate's staple.
    SSL_CTX_set_tlsext_status_cb(default_->native_handle(), &tls_context::on_status_request);
    SSL_CTX_set_tlsext_status_arg(default_->native_handle(), this);
  }
  for (std::size_t i = 0; i < config_.sni_certificates.size(); ++i) {
    const auto& c = config_.sni_certificates[i];
    const std::string f = fmt::format("{}.sni_certificates[{}]", field_prefix_, i);
    if (c.server_names.empty()) refuse(f + ".server_names", "empty");
    sni_.push_back({c.server_names, make_context(c.cert_chain_file, c.key_file, f)});
  }
  if (!sni_.empty()) {
    SSL_CTX_set_tlsext_servername_callback(default_->native_handle(), &tls_context::on_server_name);
    SSL_CTX_set_tlsext_servername_arg(default_->native_handle(), this);
  }
}

tls_context::~tls_context() = default;

SSL* tls_context::new_session() const { return SSL_new(default_->native_handle()); }

SSL_CTX* tls_context::context_for(const char* name) const {
  for (const auto& e : sni_) {
    for (const auto& n : e.names) {
      if (name_matches(n, name)) return e.ctx->native_handle();
    }
  }
  return nullptr;
}

int tls_context::on_server_name(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const tls_context*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_CTX* ctx = self->context_for(name)) {
    SSL_set_SSL_CTX(ssl, ctx);
    // SSL_set_SSL_CTX switches the certificate but not the verification settings.
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), nullptr);
  }
  return SSL_TLSEXT_ERR_OK;
}

int tls_context::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                         const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* self = static_cast<const tls_context*>(arg);
  unsigned char* selected = nullptr;
  // Server preference: the first of our protocols that the client offers.
  if (SSL_select_next_proto(&selected, outlen, self->alpn_wire_.data(),
                            static_cast<unsigned>(self->alpn_wire_.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // RFC 7301: no_application_protocol
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int tls_context::on_status_request(SSL* ssl, void* arg) {
  const auto* self = static_cast<const tls_context*>(arg);
  // OpenSSL takes the buffer and frees it with OPENSSL_free after the handshake.
  void* copy = OPENSSL_memdup(self->ocsp_response_.data(), self->ocsp_response_.size());
  if (copy == nullptr) return SSL_TLSEXT_ERR_NOACK;  // no staple rather than a failed handshake
  SSL_set_tlsext_status_ocsp_resp(ssl, static_cast<unsigned char*>(copy),
                                  static_cast<long>(self->ocsp_response_.size()));
  return SSL_TLSEXT_ERR_OK;
}

void describe_session(SSL* ssl, tls_info& out) {
  out.version = SSL_get_version(ssl);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl)) out.cipher = SSL_CIPHER_get_name(c);
  if (const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) {
    out.server_name = name;
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn != nullptr) out.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  if (X509* peer = SSL_get1_peer_certificate(ssl)) {
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
      BIO* bio = BIO_new(BIO_s_mem());
      X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      if (n > 0) out.peer_subject.assign(data, static_cast<std::size_t>(n));
      BIO_free(bio);
    }
    X509_free(peer);
  }
}

}  // namespace atl::detail
