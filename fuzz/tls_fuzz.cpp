// Fuzz target for tls::session (the sans-I/O engine of `tls`): the input is what a peer
// sends, fed to a server session (byte 0's low bit 0) or a client session (1), in pieces
// whose sizes byte 1 seeds. The server's certificate and key are made in memory when the
// target starts (no key is committed).
//
// Invariants (abort() on violation): no crash or sanitizer report; the session never
// returns more plaintext than it received; its pending records stay bounded (an answer
// is never larger than a few records per input record); an error, once reported by
// read, is reported again (sticky); a failed handshake never claims to be done.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "strata/secure/tls.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

std::string pem_of(EVP_PKEY* key, X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (key) PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  if (cert) PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return out;
}

struct contexts {
  strata::tls::context server;
  strata::tls::context client;
};

const contexts& made() {
  static const contexts c = [] {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"),
                               -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    strata::tls::credential cred{.cert_pem = pem_of(nullptr, cert), .key_pem = pem_of(key, nullptr)};
    X509_free(cert);
    EVP_PKEY_free(key);
    contexts out;
    out.server = *strata::tls::context::server({.certificates = {cred}, .alpn = {"h2", "http/1.1"}});
    out.client = *strata::tls::context::client({.verify_peer = false, .alpn = {"h2"}});
    return out;
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  bool as_client = data[0] & 1;
  std::uint32_t seed = data[1] | 1u;
  data += 2;
  size -= 2;
  auto s = as_client ? strata::tls::session::client(made().client, {.server_name = "localhost"})
                     : strata::tls::session::server(made().server);
  check(static_cast<bool>(s));
  std::size_t fed = 0;
  std::size_t plaintext = 0;
  std::error_code failed;
  std::byte out[4096];
  while (fed < size && !failed) {
    seed = seed * 1103515245u + 12345u;
    std::size_t piece = 1 + (seed >> 16) % 2048;
    if (piece > size - fed) piece = size - fed;
    auto space = s->input_space(piece);
    check(space.size() >= piece);
    std::memcpy(space.data(), data + fed, piece);
    s->commit_input(piece);
    fed += piece;
    if (!s->handshake_done()) {
      auto step = s->handshake();
      if (!step) {
        failed = step.error();
        check(!s->handshake_done());
        break;
      }
    }
    if (s->handshake_done()) {
      for (;;) {
        auto n = s->read(strata::mutable_buffer(out, sizeof out));
        if (!n) {
          failed = n.error();
          // Sticky: asking again reports the same.
          check(s->read(strata::mutable_buffer(out, sizeof out)).error() == failed);
          break;
        }
        if (*n == 0) break;
        plaintext += *n;
      }
    }
    check(plaintext <= fed);
    // Records we produced in answer: a flight of handshake messages or alerts, never
    // growing with the input's size beyond a small multiple of it.
    check(s->pending_output().size() <= 64 * 1024 + 4 * fed);
    s->consume_output(s->pending_output().size());
  }
  if (!failed && fed == size) {
    s->end_input();
    if (!s->handshake_done()) {
      auto step = s->handshake();
      check(!step || !s->handshake_done() || *step == strata::tls::want::nothing);
    }
  }
  return 0;
}
