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

  // The defaults below are Mozilla's "intermediate" profile
  // (https://wiki.mozilla.org/Security/Server_Side_TLS), narrowed to ECDHE key exchange: TLS 1.2
  // with forward-secret AEAD suites only, plus TLS 1.3. Every TLS 1.2 client of the last decade
  // can connect; no CBC suite (LUCKY13), no RSA key transport (ROBOT), no finite-field DHE.
  // Whatever the settings: TLS 1.2 uses the server's cipher order (a client that prefers
  // ChaCha20 gets it), and compression and renegotiation are off (CRIME; a renegotiating peer
  // would cost a full handshake each time). Resumption uses the server's session cache, not
  // stateless session tickets: OpenSSL never rotates its ticket key, so a stolen key would
  // decrypt every past session of the process (Mozilla's reason for turning tickets off).

  /// Cipher suites for TLS 1.2, as an OpenSSL cipher string in server preference order
  /// (`openssl ciphers -v '...'` shows what one selects). Default: ECDHE with AES-GCM and
  /// ChaCha20-Poly1305 (ECDSA and RSA certificates). Empty = OpenSSL's built-in default list,
  /// which includes CBC suites. Every name must be known to OpenSSL: a typo fails `start()`
  /// naming "tls.ciphers", it is not silently dropped. TLS 1.3 suites are set by `ciphersuites`.
  std::string ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  /// Cipher suites for TLS 1.3, colon-separated IANA names in server preference order.
  /// Default: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256.
  /// Empty = OpenSSL's built-in default (the same three today). An unknown name fails
  /// `start()` naming "tls.ciphersuites".
  std::string ciphersuites =
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
  /// Key-exchange groups (curves) for ECDHE and TLS 1.3, colon-separated OpenSSL names in
  /// preference order. Default X25519, prime256v1 (P-256), secp384r1 (P-384). Empty =
  /// OpenSSL's built-in default list (which adds P-521, X448 and the ffdhe groups). An unknown
  /// name fails `start()` naming "tls.groups".
  std::string groups = "X25519:prime256v1:secp384r1";
  /// DER file of an OCSP response for the default certificate (`cert_chain_file`), stapled to
  /// the handshake of every client that asks for certificate status (RFC 6066 status_request).
  /// Read once at `start()`: fetch a fresh one (e.g. `openssl ocsp ... -respout FILE`) and
  /// restart before it expires. SNI certificates get no staple. Empty (default) = no stapling.
  /// A missing file, or one that is not a successful OCSP response, fails `start()` naming
  /// "tls.ocsp_response_file".
  std::string ocsp_response_file;

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
