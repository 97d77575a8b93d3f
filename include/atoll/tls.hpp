#pragma once
/// @file tls.hpp
/// TLS for a listener (`atl::tls_config`) and what a TLS connection negotiated (`atl::tls_info`).
///
/// atoll terminates TLS with OpenSSL (configured through `asio::ssl::context`) on the
/// connection's io thread: the handshake runs after admission, so it holds a connection slot,
/// and is bounded by `listener_config::handshake_timeout`. Handlers see plaintext only:
/// `on_open` runs after the handshake has completed.

#include <string>
#include <vector>

namespace atl {

/// Lowest protocol version a TLS listener accepts.
enum class tls_version { tls1_2, tls1_3 };

/// Whether clients must present a certificate (verified against `tls_config::client_ca_file`).
enum class client_certificates {
  none,      ///< not asked for.
  optional,  ///< asked for; a client without one is accepted, one with a bad one is refused.
  required,  ///< a client without a valid certificate fails the handshake.
};

/// An extra certificate, chosen by SNI when the client asks for one of `server_names`.
struct tls_certificate {
  /// Host names this certificate serves (exact match, case-insensitive; "*.example.com"
  /// matches one label).
  std::vector<std::string> server_names;
  /// PEM file: the leaf certificate first, then its chain.
  std::string cert_chain_file;
  /// PEM private key of the leaf certificate.
  std::string key_file;
};

/// TLS settings of a listener. TLS is on when `cert_chain_file` is not empty. All files are
/// read once, at `server::start()`; a missing or mismatched file fails `start()` with the
/// field's name ("listener[0].tls.key_file: ...").
struct tls_config {
  /// PEM file of the default certificate (leaf first, then the chain).
  std::string cert_chain_file;
  /// PEM private key of that certificate.
  std::string key_file;
  /// Certificates chosen by SNI; a client that sends no name, or one that matches none of
  /// these, gets the default certificate.
  std::vector<tls_certificate> sni_certificates;
  /// Client-certificate verification; needs `client_ca_file` unless `none`.
  client_certificates verify_clients = client_certificates::none;
  /// PEM file of the CAs client certificates must chain to.
  std::string client_ca_file;
  /// ALPN protocol names in server preference order ("h2", "http/1.1"). Empty = no ALPN.
  /// A client that offers ALPN but none of these fails the handshake (RFC 7301).
  std::vector<std::string> alpn;
  /// Lowest accepted version (the highest is TLS 1.3). Default TLS 1.2.
  tls_version min_version = tls_version::tls1_2;

  /// True when TLS is configured for the listener.
  bool enabled() const noexcept { return !cert_chain_file.empty(); }
};

/// What the TLS handshake of a connection settled (`connection::tls()`), fixed for the life
/// of the connection.
struct tls_info {
  std::string version;      ///< "TLSv1.3", "TLSv1.2"
  std::string cipher;       ///< e.g. "TLS_AES_256_GCM_SHA384"
  std::string server_name;  ///< the SNI name the client sent (empty if none)
  std::string alpn;         ///< the selected ALPN protocol (empty if none)
  /// The client certificate's subject (RFC 2253 text), empty if it sent none. When it is not
  /// empty the certificate was verified against `client_ca_file`.
  std::string peer_subject;
};

}  // namespace atl
