// The test PKI of the TLS and DTLS tests: certificates and P-256 keys generated when a
// test first asks for them (with the OpenSSL 3 C API; no private key is committed),
// written as PEM files into a fresh temporary directory that is removed when the
// process exits, and also handed out as PEM text.
//
// Every certificate is X.509 v3, signed with ECDSA-SHA256, with a random serial number,
// subject and authority key identifiers, basicConstraints and keyUsage marked critical,
// and for leaves an extendedKeyUsage and a subjectAltName.
//
// Errors: generation never hands out half-made files. A failure throws
// std::runtime_error naming the certificate, the step and OpenSSL's error queue;
// GoogleTest reports it as the failure of the test that asked.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace strata::test {

/// credential is one certificate and its private key: PEM files in the PKI's directory
/// (the key file readable by the owner only) and the same PEM text.
struct credential {
  std::string cert_file;
  std::string key_file;
  std::string cert_pem;
  std::string key_pem;
};

/// certificate_request describes one certificate for make_credential.
struct certificate_request {
  /// name is the files' stem (<directory>/<name>.cert.pem and <name>.key.pem); one name
  /// per process, letters, digits, '-', '_' and '.' only.
  std::string name{};
  /// common_name is the subject's CN (the subject has only this, and O=strata tests).
  std::string common_name{};
  /// dns_names and ip_addresses (IPv4 or IPv6 text) go into the subjectAltName; no
  /// subjectAltName when both are empty.
  std::vector<std::string> dns_names{};
  std::vector<std::string> ip_addresses{};
  /// is_ca: basicConstraints CA:TRUE and keyUsage keyCertSign, cRLSign; otherwise
  /// CA:FALSE and keyUsage digitalSignature.
  bool is_ca = false;
  /// server_auth and client_auth are the extendedKeyUsage purposes (none when both are
  /// false).
  bool server_auth = false;
  bool client_auth = false;
  /// not_before and not_after are the validity, relative to now (negative: in the past).
  std::chrono::seconds not_before = std::chrono::hours(-1);
  std::chrono::seconds not_after = std::chrono::hours(24);
  /// issuer signs the certificate (its key_pem is the signing key); nullptr: self-signed.
  const credential* issuer = nullptr;
};

/// make_credential generates a P-256 key and a certificate as `request` says, writes both
/// into the PKI's directory and returns them. Thread-safe. Throws std::runtime_error
/// when OpenSSL fails, the name is invalid or already used, or a file cannot be written.
credential make_credential(const certificate_request& request);

/// test_pki is the process's fixed set of credentials.
struct test_pki {
  /// directory holds every file of this PKI and of make_credential; removed at exit.
  std::string directory;
  /// ca: self-signed root, CN "strata test CA"; it signs the credentials below except the
  /// rogue ones.
  credential ca;
  /// server: CN localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1, serverAuth, valid
  /// from an hour ago to a day from now.
  credential server;
  /// other_name_server: SAN DNS:other.test only (CN "strata other-name server"),
  /// serverAuth: for SNI certificate selection and wrong-host-name tests.
  credential other_name_server;
  /// client: CN "strata test client", clientAuth only.
  credential client;
  /// expired_server: like server, but valid from 30 days ago until a day ago.
  credential expired_server;
  /// rogue_ca: another self-signed root (CN "strata rogue CA") that nothing trusts.
  credential rogue_ca;
  /// rogue_server: like server, signed by rogue_ca (the unknown-CA case).
  credential rogue_server;
};

/// pki returns the process's test PKI, generated on the first call (thread-safe; the
/// later calls return the same files). Throws std::runtime_error when generation fails
/// (and tries again on the next call).
const test_pki& pki();

}  // namespace strata::test
