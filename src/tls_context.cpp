#include "tls_context.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <strings.h>

#include <cstring>

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
  default_ = make_context(config_.cert_chain_file, config_.key_file, field_prefix_);
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
