#include "support/pki.hpp"

#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace strata::test {

namespace {

template <auto Free>
struct openssl_free {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_free<EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, openssl_free<X509_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_free<BIO_free_all>>;
using extension_ptr = std::unique_ptr<X509_EXTENSION, openssl_free<X509_EXTENSION_free>>;
using bignum_ptr = std::unique_ptr<BIGNUM, openssl_free<BN_free>>;

// fail throws for `what` (the certificate) at `step`, with OpenSSL's error queue.
[[noreturn]] void fail(const std::string& what, const std::string& step) {
  std::string message = "test pki: " + what + ": " + step + " failed";
  bool any = false;
  while (unsigned long e = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    message += any ? "; " : ": ";
    message += text;
    any = true;
  }
  if (!any) message += " (OpenSSL reported no error)";
  throw std::runtime_error(message);
}

[[noreturn]] void fail_errno(const std::string& what, const std::string& step, int err) {
  throw std::runtime_error("test pki: " + what + ": " + step + ": " + std::strerror(err));
}

// pki_directory is the process's temporary directory, removed at exit by the process
// that made it (not by a forked child that exits, e.g. in a death test).
class pki_directory {
 public:
  pki_directory() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/strata-pki-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) fail_errno("directory", "mkdtemp(" + pattern + ")", errno);
    path_ = pattern;
    owner_ = ::getpid();
  }
  pki_directory(const pki_directory&) = delete;
  pki_directory& operator=(const pki_directory&) = delete;
  ~pki_directory() {
    if (::getpid() != owner_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  pid_t owner_ = -1;
};

const std::string& directory() {
  static const pki_directory dir;  // a throwing constructor is retried on the next call
  return dir.path();
}

// write_new_file creates `path` (it must not exist) with `mode` and writes `text`.
void write_new_file(const std::string& what, const std::string& path, const std::string& text, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    fail_errno(what, "create " + path + (errno == EEXIST ? " (the name is already used)" : ""), errno);
  std::string_view left = text;
  while (!left.empty()) {
    ssize_t n = ::write(fd, left.data(), left.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(path.c_str());
      fail_errno(what, "write " + path, err);
    }
    left.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    fail_errno(what, "close " + path, err);
  }
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string cert_pem(const std::string& what, X509* cert) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) fail(what, "PEM_write_bio_X509");
  return bio_text(bio.get());
}

std::string key_pem(const std::string& what, EVP_PKEY* key) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    fail(what, "PEM_write_bio_PrivateKey");
  return bio_text(bio.get());
}

x509_ptr read_cert(const std::string& what, const std::string& pem) {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  x509_ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) fail(what, "reading the issuer's certificate (PEM_read_bio_X509)");
  return cert;
}

pkey_ptr read_key(const std::string& what, const std::string& pem) {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  pkey_ptr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) fail(what, "reading the issuer's key (PEM_read_bio_PrivateKey)");
  return key;
}

void add_extension(const std::string& what, X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  extension_ptr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    fail(what, std::string("extension ") + OBJ_nid2sn(nid) + "=" + value);
}

void add_name_entry(const std::string& what, X509_NAME* name, const char* field, const std::string& value) {
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1)
    fail(what, std::string("subject ") + field + "=" + value);
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ",") + p;
  return out;
}

void check_request(const std::string& what, const certificate_request& r) {
  auto name_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  };
  if (r.name.empty() || r.name.front() == '.' || !std::all_of(r.name.begin(), r.name.end(), name_char))
    throw std::runtime_error("test pki: " + what + ": the name must be letters, digits, '-', '_' and '.'");
  for (const auto& n : r.dns_names)
    if (n.empty() || n.find_first_of(",:") != std::string::npos)
      throw std::runtime_error("test pki: " + what + ": bad DNS name '" + n + "'");
  for (const auto& a : r.ip_addresses)
    if (a.empty() || a.find(',') != std::string::npos)
      throw std::runtime_error("test pki: " + what + ": bad IP address '" + a + "'");
  if (r.not_after <= r.not_before)
    throw std::runtime_error("test pki: " + what + ": not_after must come after not_before");
}

// root_ca asks for a self-signed CA that covers the expired certificate's lifetime, so
// that certificate's validity is its only fault.
certificate_request root_ca(std::string name, std::string common_name) {
  const std::chrono::hours day(24);
  return {.name = std::move(name),
          .common_name = std::move(common_name),
          .is_ca = true,
          .not_before = -31 * day,
          .not_after = 30 * day};
}

// localhost_server asks for a server certificate for localhost, 127.0.0.1 and ::1.
certificate_request localhost_server(std::string name, const credential& issuer) {
  return {.name = std::move(name),
          .common_name = "localhost",
          .dns_names = {"localhost"},
          .ip_addresses = {"127.0.0.1", "::1"},
          .server_auth = true,
          .issuer = &issuer};
}

test_pki generate() {
  const std::chrono::hours day(24);
  test_pki p;
  p.directory = directory();
  p.ca = make_credential(root_ca("ca", "strata test CA"));
  p.server = make_credential(localhost_server("server", p.ca));
  p.other_name_server = make_credential({.name = "other_name_server",
                                         .common_name = "strata other-name server",
                                         .dns_names = {"other.test"},
                                         .server_auth = true,
                                         .issuer = &p.ca});
  p.client = make_credential(
      {.name = "client", .common_name = "strata test client", .client_auth = true, .issuer = &p.ca});
  auto expired = localhost_server("expired_server", p.ca);
  expired.not_before = -30 * day;
  expired.not_after = -day;
  p.expired_server = make_credential(expired);
  p.rogue_ca = make_credential(root_ca("rogue_ca", "strata rogue CA"));
  p.rogue_server = make_credential(localhost_server("rogue_server", p.rogue_ca));
  return p;
}

// generate_whole makes the PKI or, on failure, removes what it wrote (so the next call
// starts again with the same names) and throws.
test_pki generate_whole() {
  try {
    return generate();
  } catch (...) {
    std::error_code ec;
    for (const char* name :
         {"ca", "server", "other_name_server", "client", "expired_server", "rogue_ca", "rogue_server"}) {
      std::filesystem::remove(directory() + "/" + name + ".cert.pem", ec);
      std::filesystem::remove(directory() + "/" + name + ".key.pem", ec);
    }
    throw;
  }
}

}  // namespace

credential make_credential(const certificate_request& r) {
  const std::string what = "certificate '" + r.name + "'";
  check_request(what, r);
  const std::string& dir = directory();
  ERR_clear_error();

  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) fail(what, "EVP_EC_gen(P-256)");
  x509_ptr issuer_cert;
  pkey_ptr issuer_key;
  if (r.issuer) {
    issuer_cert = read_cert(what, r.issuer->cert_pem);
    issuer_key = read_key(what, r.issuer->key_pem);
  }

  x509_ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) fail(what, "X509_new");
  // A random positive 128-bit serial number.
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) fail(what, "RAND_bytes");
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x40);
  bignum_ptr bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()))) fail(what, "serial number");
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(r.not_before.count())) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(r.not_after.count())))
    fail(what, "validity");

  X509_NAME* subject = X509_get_subject_name(cert.get());
  add_name_entry(what, subject, "O", "strata tests");
  if (!r.common_name.empty()) add_name_entry(what, subject, "CN", r.common_name);
  X509* signer_cert = r.issuer ? issuer_cert.get() : cert.get();
  EVP_PKEY* signer_key = r.issuer ? issuer_key.get() : key.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer_cert)) != 1 ||
      X509_set_pubkey(cert.get(), key.get()) != 1)
    fail(what, "issuer name and public key");

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, signer_cert, cert.get(), nullptr, nullptr, 0);
  if (r.is_ca) {
    add_extension(what, cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(what, cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(what, cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(what, cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
  }
  std::vector<std::string> purposes;
  if (r.server_auth) purposes.push_back("serverAuth");
  if (r.client_auth) purposes.push_back("clientAuth");
  if (!purposes.empty()) add_extension(what, cert.get(), &ctx, NID_ext_key_usage, join(purposes));
  std::vector<std::string> names;
  for (const auto& n : r.dns_names) names.push_back("DNS:" + n);
  for (const auto& a : r.ip_addresses) names.push_back("IP:" + a);
  if (!names.empty()) add_extension(what, cert.get(), &ctx, NID_subject_alt_name, join(names));
  // The subject key identifier first: a self-signed certificate's authority key
  // identifier is taken from it.
  add_extension(what, cert.get(), &ctx, NID_subject_key_identifier, "hash");
  add_extension(what, cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");

  if (X509_sign(cert.get(), signer_key, EVP_sha256()) <= 0) fail(what, "X509_sign (ECDSA-SHA256)");

  credential c;
  c.cert_pem = cert_pem(what, cert.get());
  c.key_pem = key_pem(what, key.get());
  c.cert_file = dir + "/" + r.name + ".cert.pem";
  c.key_file = dir + "/" + r.name + ".key.pem";
  write_new_file(what, c.cert_file, c.cert_pem, 0644);
  try {
    write_new_file(what, c.key_file, c.key_pem, 0600);
  } catch (...) {
    ::unlink(c.cert_file.c_str());
    throw;
  }
  return c;
}

const test_pki& pki() {
  static const test_pki p = generate_whole();
  return p;
}

}  // namespace strata::test
