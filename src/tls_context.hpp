#pragma once
// A TLS listener's OpenSSL state, built once at start(): one asio::ssl::context per
// certificate (the default one plus one per SNI entry), the SNI and ALPN callbacks, and the
// client-certificate policy, the cipher profile and the OCSP staple. Shared read-only by every io
// thread afterwards (SSL_new on an SSL_CTX is thread-safe).

#include <openssl/ssl.h>

#include <asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "atoll/tls.hpp"

namespace atl::detail {

class tls_context {
 public:
  // Reads the files; throws std::invalid_argument naming the field
  // ("listener[0].tls.key_file: ...") when one is missing, unreadable or does not match.
  tls_context(const tls_config& config, const std::string& field_prefix);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  // A new server-side SSL for a connection (nullptr on allocation failure).
  SSL* new_session() const;

 private:
  struct sni_entry {
    std::vector<std::string> names;
    std::unique_ptr<asio::ssl::context> ctx;
  };
  static int on_server_name(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg);
  static int on_status_request(SSL* ssl, void* arg);
  std::unique_ptr<asio::ssl::context> make_context(const std::string& cert,
                                                   const std::string& key,
                                                   const std::string& field);
  SSL_CTX* context_for(const char* name) const;

  tls_config config_;
  std::string field_prefix_;
  std::vector<unsigned char> alpn_wire_;  // server preference list, RFC 7301 wire format
  std::vector<unsigned char> ocsp_response_;  // DER, stapled when a client asks (RFC 6066 §8)
  std::unique_ptr<asio::ssl::context> default_;
  std::vector<sni_entry> sni_;
};

// Fills `out` from a completed handshake.
void describe_session(SSL* ssl, tls_info& out);

}  // namespace atl::detail
