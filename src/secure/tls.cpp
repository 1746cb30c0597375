// tls: the sans-I/O session over OpenSSL 3 and the contexts it is made from.
//
// OpenSSL reads and writes through a BIO of our own whose two ends are the session's
// buffers: it never sees a descriptor, never blocks, and its errors are turned into
// tls::error codes here, once.
#include "strata/secure/tls.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

namespace strata::tls {
namespace {

class tls_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int value) const override {
    if (value >= static_cast<int>(error::peer_alert)) {
      const char* alert = SSL_alert_desc_string_long(value - static_cast<int>(error::peer_alert));
      return std::string("peer sent TLS alert: ") + (alert ? alert : "unknown");
    }
    switch (static_cast<error>(value)) {
      case error::not_tls:
        return "peer's data is not TLS";
      case error::handshake_failed:
        return "TLS handshake failed";
      case error::version_mismatch:
        return "no TLS version both ends accept";
      case error::no_application_protocol:
        return "no application protocol (ALPN) in common";
      case error::certificate_untrusted:
        return "peer certificate not trusted (unknown CA)";
      case error::certificate_expired:
        return "peer certificate expired or not yet valid";
      case error::certificate_name_mismatch:
        return "peer certificate is for another name";
      case error::certificate_invalid:
        return "peer certificate invalid";
      case error::certificate_required:
        return "peer sent no certificate, and one is required";
      case error::certificate_rejected:
        return "peer rejected our certificate";
      case error::truncated:
        return "peer closed the connection without close_notify (truncated)";
      case error::closed_in_handshake:
        return "peer closed the connection during the TLS handshake";
      case error::no_server_name:
        return "no server name to verify the certificate against";
      case error::bad_configuration:
        return "unusable TLS configuration";
      case error::peer_alert:
        break;
    }
    return "tls error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    if (value >= static_cast<int>(error::peer_alert)) return errc::protocol_error;
    switch (static_cast<error>(value)) {
      case error::certificate_untrusted:
      case error::certificate_expired:
      case error::certificate_name_mismatch:
      case error::certificate_invalid:
      case error::certificate_required:
      case error::certificate_rejected:
        return errc::authentication_failed;
      case error::truncated:
      case error::closed_in_handshake:
        return errc::broken;
      case error::no_server_name:
      case error::bad_configuration:
        return errc::invalid_argument;
      default:
        return errc::protocol_error;
    }
  }
};

template <class T, void (*Free)(T*)>
struct openssl_deleter {
  void operator()(T* p) const noexcept { Free(p); }
};
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO, BIO_free_all>>;

void free_x509_stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), openssl_deleter<STACK_OF(X509), free_x509_stack>>;

/// openssl_reason is OpenSSL's queued explanation, emptied.
std::string openssl_reason() {
  std::string out;
  while (auto code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out;
}

bio_ptr open_pem(const std::string& file, const std::string& pem, std::string& why, const char* what) {
  BIO* bio = pem.empty() ? BIO_new_file(file.c_str(), "r")
                         : BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio)
    why = std::string("cannot read ") + what + " " + (pem.empty() ? file : "(PEM text)") + ": " +
          openssl_reason();
  return bio_ptr(bio);
}

}  // namespace

const std::error_category& category() noexcept {
  static const tls_error_category instance;
  return instance;
}

namespace detail {

/// loaded_credential is a credential parsed once, shared by every connection.
struct loaded_credential {
  x509_ptr leaf;
  x509_stack_ptr chain;
  pkey_ptr key;
};

struct context_impl {
  SSL_CTX* ctx = nullptr;
  bool server = false;
  bool verify = true;
  std::vector<std::string> alpn;  // a server's choices, in preference order
  std::vector<loaded_credential> certificates;
  FILE* keylog = nullptr;
  std::mutex keylog_mutex;
  // The client's session cache: the latest session per server name, oldest first.
  std::mutex cache_mutex;
  std::deque<std::pair<std::string, SSL_SESSION*>> sessions;
  static constexpr std::size_t max_cached_sessions = 256;

  ~context_impl() {
    for (auto& [name, s] : sessions) SSL_SESSION_free(s);
    if (keylog) std::fclose(keylog);
    SSL_CTX_free(ctx);
  }

  void remember(const std::string& name, SSL_SESSION* s) {
    std::lock_guard lock(cache_mutex);
    for (auto it = sessions.begin(); it != sessions.end(); ++it) {
      if (it->first == name) {
        SSL_SESSION_free(it->second);
        sessions.erase(it);
        break;
      }
    }
    if (sessions.size() >= max_cached_sessions) {
      SSL_SESSION_free(sessions.front().second);
      sessions.pop_front();
    }
    sessions.emplace_back(name, s);
  }
  /// cached is a new reference to the session kept for `name`, or nullptr.
  SSL_SESSION* cached(const std::string& name) {
    std::lock_guard lock(cache_mutex);
    for (auto& [n, s] : sessions) {
      if (n == name && SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_up_ref(s);
        return s;
      }
    }
    return nullptr;
  }
};

struct session_impl {
  SSL* ssl = nullptr;
  std::shared_ptr<context_impl> context;
  std::string cache_key;  // a client's: where its sessions are remembered

  // The peer's bytes: [in_begin, in_end) are received and not yet given to OpenSSL.
  std::vector<std::byte> in;
  std::size_t in_begin = 0;
  std::size_t in_end = 0;
  bool in_ended = false;
  // Records to send: [out_begin, out.size()).
  std::vector<std::byte> out;
  std::size_t out_begin = 0;
  // Small pieces of a gather write collect here until a record is full.
  std::vector<std::byte> stage;

  bool handshake_done = false;
  bool sent_close = false;
  bool received_close = false;
  std::error_code read_failure{};

  ~session_impl() { SSL_free(ssl); }

  std::error_code failure(int ssl_error, bool in_handshake);
};

}  // namespace detail

namespace {

using detail::context_impl;
using detail::session_impl;

// -- the BIO between OpenSSL and the session's buffers --------------------------------

int bio_write(BIO* bio, const char* data, std::size_t len, std::size_t* written) {
  auto* s = static_cast<session_impl*>(BIO_get_data(bio));
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  s->out.insert(s->out.end(), bytes, bytes + len);
  *written = len;
  return 1;
}

int bio_read(BIO* bio, char* data, std::size_t len, std::size_t* read) {
  auto* s = static_cast<session_impl*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  std::size_t available = s->in_end - s->in_begin;
  if (available == 0) {
    // No retry flag after the end: OpenSSL reports an unexpected EOF, which the
    // session turns into truncated or closed_in_handshake.
    if (!s->in_ended) BIO_set_retry_read(bio);
    *read = 0;
    return 0;
  }
  std::size_t n = std::min(len, available);
  std::memcpy(data, s->in.data() + s->in_begin, n);
  s->in_begin += n;
  *read = n;
  return 1;
}

long bio_ctrl(BIO* bio, int cmd, long, void*) {
  auto* s = static_cast<session_impl*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return s ? static_cast<long>(s->in_end - s->in_begin) : 0;
    case BIO_CTRL_EOF:
      return s && s->in_ended && s->in_begin == s->in_end;
    default:
      return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* session_bio_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "strata tls session");
    BIO_meth_set_write_ex(m, bio_write);
    BIO_meth_set_read_ex(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

// -- callbacks ----------------------------------------------------------------------

context_impl* context_of(const SSL* ssl) {
  return static_cast<context_impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}

void write_keylog(const SSL* ssl, const char* line) {
  auto* c = context_of(ssl);
  if (!c || !c->keylog) return;
  std::lock_guard lock(c->keylog_mutex);
  std::fputs(line, c->keylog);
  std::fputc('\n', c->keylog);
  std::fflush(c->keylog);
}

int remember_session(SSL* ssl, SSL_SESSION* s) {
  auto* c = context_of(ssl);
  auto* owner = static_cast<session_impl*>(SSL_get_app_data(ssl));
  if (!c || !owner || owner->cache_key.empty()) return 0;
  c->remember(owner->cache_key, s);
  return 1;  // we keep the reference
}

int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned inlen, void*) {
  auto* c = context_of(ssl);
  for (const auto& mine : c->alpn) {
    for (unsigned i = 0; i < inlen;) {
      unsigned len = in[i];
      if (i + 1 + len > inlen) break;
      if (len == mine.size() && std::memcmp(in + i + 1, mine.data(), len) == 0) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;  // RFC 7301: no_application_protocol
}

/// select_certificate presents the first certificate whose names match the client's SNI
/// (OpenSSL chooses the certificate after this callback, TLS 1.2 and 1.3 alike).
int select_certificate(SSL* ssl, int*, void*) {
  auto* c = context_of(ssl);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!c || !name || c->certificates.size() < 2) return SSL_TLSEXT_ERR_OK;
  for (std::size_t i = 1; i < c->certificates.size(); ++i) {
    auto& cred = c->certificates[i];
    if (X509_check_host(cred.leaf.get(), name, 0, 0, nullptr) == 1) {
      SSL_use_cert_and_key(ssl, cred.leaf.get(), cred.key.get(), cred.chain.get(), 1);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

// -- contexts -----------------------------------------------------------------------

bool load_credential(const credential& in, detail::loaded_credential& out, std::string& why) {
  auto certs = open_pem(in.cert_file, in.cert_pem, why, "certificate");
  if (!certs) return false;
  out.leaf.reset(PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr));
  if (!out.leaf) {
    why = "no certificate in " + (in.cert_pem.empty() ? in.cert_file : "the PEM text") + ": " +
          openssl_reason();
    return false;
  }
  out.chain.reset(sk_X509_new_null());
  while (X509* more = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr))
    sk_X509_push(out.chain.get(), more);
  ERR_clear_error();  // the end of the file
  auto keys = open_pem(in.key_file, in.key_pem, why, "private key");
  if (!keys) return false;
  out.key.reset(PEM_read_bio_PrivateKey(keys.get(), nullptr, nullptr, nullptr));
  if (!out.key) {
    why =
        "no private key in " + (in.key_pem.empty() ? in.key_file : "the PEM text") + ": " + openssl_reason();
    return false;
  }
  if (X509_check_private_key(out.leaf.get(), out.key.get()) != 1) {
    why = "the private key does not match the certificate " +
          (in.cert_pem.empty() ? in.cert_file : "(PEM text)");
    ERR_clear_error();
    return false;
  }
  return true;
}

bool load_trust(SSL_CTX* ctx, const context_options& o, std::string& why) {
  if (!o.ca_pem.empty()) {
    auto bio = open_pem({}, o.ca_pem, why, "CA");
    if (!bio) return false;
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    int added = 0;
    while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, ca);
      X509_free(ca);
      ++added;
    }
    ERR_clear_error();
    if (added == 0) {
      why = "no certificate in the CA PEM text";
      return false;
    }
    return true;
  }
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_file(ctx, o.ca_file.c_str()) != 1) {
      why = "cannot load CA file " + o.ca_file + ": " + openssl_reason();
      return false;
    }
    return true;
  }
  if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    why = "cannot load the system's CA store: " + openssl_reason();
    return false;
  }
  return true;
}

int version_number(version v) { return v == version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION; }

result<context> make_context(const context_options& o, bool server, std::string* why_out) {
  std::string why;
  auto fail = [&](std::string reason) -> result<context> {
    if (why_out) *why_out = std::move(reason);
    return unexpected(make_error_code(error::bad_configuration));
  };
  ERR_clear_error();
  auto impl = std::make_shared<context_impl>();
  impl->server = server;
  impl->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!impl->ctx) return fail("SSL_CTX_new: " + openssl_reason());
  SSL_CTX* ctx = impl->ctx;
  SSL_CTX_set_app_data(ctx, impl.get());
  // Renegotiation is a TLS 1.2 feature attackers like (CVE-2009-3555, CPU floods): off.
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  // OpenSSL's own record buffers go back while a connection is idle.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (o.min_version > o.max_version) return fail("min_version is above max_version");
  SSL_CTX_set_min_proto_version(ctx, version_number(o.min_version));
  SSL_CTX_set_max_proto_version(ctx, version_number(o.max_version));
  if (!o.groups.empty() && SSL_CTX_set1_groups_list(ctx, o.groups.c_str()) != 1) {
    return fail("unknown key exchange group in \"" + o.groups + "\": " + openssl_reason());
  }

  for (const auto& c : o.certificates) {
    detail::loaded_credential loaded;
    if (!load_credential(c, loaded, why)) return fail(why);
    impl->certificates.push_back(std::move(loaded));
  }
  if (!impl->certificates.empty()) {
    auto& first = impl->certificates.front();
    if (SSL_CTX_use_cert_and_key(ctx, first.leaf.get(), first.key.get(), first.chain.get(), 1) != 1) {
      return fail("cannot use the certificate: " + openssl_reason());
    }
  } else if (server) {
    return fail("a TLS server needs a certificate and its key (cert=, key=)");
  }

  bool verifies = server ? o.client_certificates != client_auth::none : o.verify_peer;
  impl->verify = verifies;
  if (verifies && !load_trust(ctx, o, why)) return fail(why);
  if (server) {
    int mode = SSL_VERIFY_NONE;
    if (o.client_certificates != client_auth::none) mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
    if (o.client_certificates == client_auth::required) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, nullptr);
    if (!o.ca_file.empty() && o.client_certificates != client_auth::none) {
      if (auto* names = SSL_load_client_CA_file(o.ca_file.c_str())) SSL_CTX_set_client_CA_list(ctx, names);
      ERR_clear_error();
    }
    static const unsigned char id[] = "strata";
    SSL_CTX_set_session_id_context(ctx, id, sizeof id - 1);
    if (!o.session_tickets) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
    if (impl->certificates.size() > 1) SSL_CTX_set_tlsext_servername_callback(ctx, select_certificate);
    impl->alpn = o.alpn;
    if (!o.alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, o.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (!o.alpn.empty()) {
      std::vector<unsigned char> wire;
      for (const auto& p : o.alpn) {
        if (p.empty() || p.size() > 255) return fail("ALPN protocol names are 1 to 255 bytes: \"" + p + "\"");
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
      }
      if (SSL_CTX_set_alpn_protos(ctx, wire.data(), static_cast<unsigned>(wire.size())) != 0) {
        return fail("cannot set ALPN: " + openssl_reason());
      }
    }
    if (o.session_tickets) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ctx, remember_session);
    } else {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
  }

  std::string keylog = o.keylog_file;
  if (keylog.empty()) {
    if (const char* env = std::getenv("SSLKEYLOGFILE"); env && *env) keylog = env;
  }
  if (!keylog.empty()) {
    impl->keylog = std::fopen(keylog.c_str(), "a");
    if (!impl->keylog) return fail("cannot open the key log " + keylog + ": " + std::strerror(errno));
    SSL_CTX_set_keylog_callback(ctx, write_keylog);
  }
  return context::adopt(std::move(impl));
}

}  // namespace

result<context> context::client(const context_options& options, std::string* why) {
  return make_context(options, false, why);
}
result<context> context::server(const context_options& options, std::string* why) {
  return make_context(options, true, why);
}
bool context::is_server() const noexcept { return impl_ && impl_->server; }
bool context::verifies_peer() const noexcept { return impl_ && impl_->verify; }

// -- self-signed credentials --------------------------------------------------------

namespace {

std::string pem_text(int (*write)(BIO*, const void*), const void* object) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get(), object) != 1) return {};
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace

result<credential> self_signed(std::span<const std::string> names, std::chrono::seconds valid_for) {
  if (names.empty()) return errc::invalid_argument;
  ERR_clear_error();
  auto failed = [] {
    ERR_clear_error();
    return unexpected(make_error_code(error::bad_configuration));
  };
  pkey_ptr key(EVP_EC_gen("P-256"));
  x509_ptr cert(X509_new());
  if (!key || !cert) return failed();
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return failed();
  serial[0] &= 0x7f;  // a positive INTEGER
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  ok = ok && X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
       X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
       X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(valid_for.count())) != nullptr &&
       X509_set_pubkey(cert.get(), key.get()) == 1;
  X509_NAME* subject = X509_get_subject_name(cert.get());
  ok = ok &&
       X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(names.front().c_str()), -1, -1,
                                  0) == 1 &&
       X509_set_issuer_name(cert.get(), subject) == 1;
  std::string alt;
  for (const auto& n : names) {
    if (!alt.empty()) alt += ',';
    unsigned char scratch[16];
    bool ip = inet_pton(AF_INET, n.c_str(), scratch) == 1 || inet_pton(AF_INET6, n.c_str(), scratch) == 1;
    alt += (ip ? "IP:" : "DNS:") + n;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] :
       {std::pair{NID_subject_alt_name, alt.c_str()}, std::pair{NID_basic_constraints, "critical,CA:FALSE"},
        std::pair{NID_ext_key_usage, "serverAuth,clientAuth"}}) {
    X509_EXTENSION* ext = ok ? X509V3_EXT_conf_nid(nullptr, &v3, nid, value) : nullptr;
    ok = ext && X509_add_ext(cert.get(), ext, -1) == 1;
    X509_EXTENSION_free(ext);
  }
  ok = ok && X509_sign(cert.get(), key.get(), EVP_sha256()) > 0;
  if (!ok) return failed();
  credential out;
  out.cert_pem = pem_text(
      [](BIO* b, const void* c) { return PEM_write_bio_X509(b, static_cast<X509*>(const_cast<void*>(c))); },
      cert.get());
  out.key_pem = pem_text(
      [](BIO* b, const void* k) {
        return PEM_write_bio_PrivateKey(b, static_cast<EVP_PKEY*>(const_cast<void*>(k)), nullptr, nullptr, 0,
                                        nullptr, nullptr);
      },
      key.get());
  if (out.cert_pem.empty() || out.key_pem.empty()) return failed();
  return out;
}

// -- errors -------------------------------------------------------------------------

std::error_code detail::session_impl::failure(int ssl_error, bool in_handshake) {
  if (ssl_error == SSL_ERROR_ZERO_RETURN) return errc::end_of_stream;
  if (ssl_error == SSL_ERROR_SYSCALL) {
    // Our BIO makes no system call: this is the end of the input.
    ERR_clear_error();
    return in_handshake ? error::closed_in_handshake : error::truncated;
  }
  int reason = 0;
  while (auto code = ERR_get_error()) {
    if (reason == 0 && ERR_GET_LIB(code) == ERR_LIB_SSL) reason = ERR_GET_REASON(code);
  }
  if (reason >= SSL_AD_REASON_OFFSET) {
    switch (reason - SSL_AD_REASON_OFFSET) {
      case SSL_AD_CERTIFICATE_REQUIRED:
        return error::certificate_required;
      case SSL_AD_NO_APPLICATION_PROTOCOL:
        return error::no_application_protocol;
      case SSL_AD_PROTOCOL_VERSION:
        return error::version_mismatch;
      case SSL_AD_BAD_CERTIFICATE:
      case SSL_AD_UNSUPPORTED_CERTIFICATE:
      case SSL_AD_CERTIFICATE_REVOKED:
      case SSL_AD_CERTIFICATE_EXPIRED:
      case SSL_AD_CERTIFICATE_UNKNOWN:
      case SSL_AD_UNKNOWN_CA:
        return error::certificate_rejected;
      default:
        return std::error_code(static_cast<int>(error::peer_alert) + reason - SSL_AD_REASON_OFFSET,
                               category());
    }
  }
  switch (reason) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      switch (SSL_get_verify_result(ssl)) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_CERT_NOT_YET_VALID:
          return error::certificate_expired;
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
        case X509_V_ERR_EMAIL_MISMATCH:
          return error::certificate_name_mismatch;
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_CERT_UNTRUSTED:
          return error::certificate_untrusted;
        default:
          return error::certificate_invalid;
      }
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return error::certificate_required;
    case SSL_R_NO_APPLICATION_PROTOCOL:
      return error::no_application_protocol;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
      return error::version_mismatch;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return in_handshake ? error::closed_in_handshake : error::truncated;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
      if (in_handshake) return error::not_tls;
      return errc::protocol_error;
    default:
      if (in_handshake) return error::handshake_failed;
      return errc::protocol_error;
  }
}

// -- session ------------------------------------------------------------------------

session::session() noexcept = default;
session::session(std::unique_ptr<detail::session_impl> impl) noexcept : impl_(std::move(impl)) {}
session::session(session&&) noexcept = default;
session& session::operator=(session&&) noexcept = default;
session::~session() = default;

namespace {

result<std::unique_ptr<session_impl>> new_session(const context& ctx) {
  if (!ctx) return errc::invalid_argument;
  ERR_clear_error();
  auto s = std::make_unique<session_impl>();
  s->context = ctx.impl();
  s->ssl = SSL_new(ctx.impl()->ctx);
  if (!s->ssl) return unexpected(make_error_code(error::bad_configuration));
  BIO* bio = BIO_new(session_bio_method());
  if (!bio) return unexpected(make_error_code(error::bad_configuration));
  BIO_set_data(bio, s.get());
  SSL_set_bio(s->ssl, bio, bio);  // one reference serves both directions
  SSL_set_app_data(s->ssl, s.get());
  return s;
}

bool is_ip_literal(const std::string& name) {
  unsigned char scratch[16];
  return inet_pton(AF_INET, name.c_str(), scratch) == 1 || inet_pton(AF_INET6, name.c_str(), scratch) == 1;
}

}  // namespace

result<session> session::client(const context& ctx, const client_options& options, std::string_view peer_ip) {
  if (ctx.is_server()) return errc::invalid_argument;
  auto made = new_session(ctx);
  if (!made) return unexpected(made.error());
  auto& s = **made;
  const std::string& name = options.server_name;
  std::string identity = name.empty() ? std::string(peer_ip) : name;
  if (!name.empty() && !is_ip_literal(name)) SSL_set_tlsext_host_name(s.ssl, name.c_str());
  if (ctx.verifies_peer()) {
    if (identity.empty()) return unexpected(make_error_code(error::no_server_name));
    X509_VERIFY_PARAM* param = SSL_get0_param(s.ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int set = is_ip_literal(identity) ? X509_VERIFY_PARAM_set1_ip_asc(param, identity.c_str())
                                      : X509_VERIFY_PARAM_set1_host(param, identity.c_str(), identity.size());
    if (set != 1) return unexpected(make_error_code(error::no_server_name));
  }
  s.cache_key = identity;
  if (!identity.empty()) {
    if (SSL_SESSION* cached = ctx.impl()->cached(identity)) {
      SSL_set_session(s.ssl, cached);
      SSL_SESSION_free(cached);
    }
  }
  SSL_set_connect_state(s.ssl);
  return session(std::move(*made));
}

result<session> session::server(const context& ctx) {
  if (!ctx.is_server()) return errc::invalid_argument;
  auto made = new_session(ctx);
  if (!made) return unexpected(made.error());
  SSL_set_accept_state((*made)->ssl);
  return session(std::move(*made));
}

result<want> session::handshake() {
  auto& s = *impl_;
  if (s.handshake_done) return want::nothing;
  ERR_clear_error();
  int r = SSL_do_handshake(s.ssl);
  if (r == 1) {
    s.handshake_done = true;
    return want::nothing;
  }
  int e = SSL_get_error(s.ssl, r);
  if (e == SSL_ERROR_WANT_READ) return want::input;
  return unexpected(s.failure(e, true));
}

bool session::handshake_done() const noexcept { return impl_ && impl_->handshake_done; }

result<std::size_t> session::read(mutable_buffer buf) {
  auto& s = *impl_;
  if (s.received_close) return errc::end_of_stream;
  if (s.read_failure) return unexpected(s.read_failure);
  if (!s.handshake_done) return unexpected(make_error_code(error::handshake_failed));
  ERR_clear_error();
  std::size_t n = 0;
  int r = SSL_read_ex(s.ssl, buf.data(), buf.size(), &n);
  if (r == 1) return n;
  int e = SSL_get_error(s.ssl, r);
  if (e == SSL_ERROR_WANT_READ) return std::size_t{0};
  if (e == SSL_ERROR_ZERO_RETURN) {
    s.received_close = true;
    return errc::end_of_stream;
  }
  s.read_failure = s.failure(e, false);
  return unexpected(s.read_failure);
}

result<void> session::encrypt(std::span<const const_buffer> parts, std::size_t& offset, std::size_t limit) {
  auto& s = *impl_;
  if (s.sent_close) return errc::closed;
  if (!s.handshake_done) return unexpected(make_error_code(error::handshake_failed));
  constexpr std::size_t record = 16 * 1024;
  auto seal = [&](const std::byte* data, std::size_t size) -> bool {
    std::size_t written = 0;
    ERR_clear_error();
    return SSL_write_ex(s.ssl, data, size, &written) == 1 && written == size;
  };
  // Find where the previous call stopped.
  std::size_t skip = offset;
  std::size_t i = 0;
  while (i < parts.size() && skip >= parts[i].size()) skip -= parts[i++].size();
  std::size_t budget = limit;
  for (; i < parts.size() && budget > 0; ++i, skip = 0) {
    auto piece = parts[i].subspan(skip);
    while (!piece.empty() && budget > 0) {
      if (s.stage.empty() && piece.size() >= record && budget >= record) {
        // Whole records straight from the caller's memory.
        std::size_t run = std::min(piece.size(), budget) / record * record;
        if (!seal(piece.data(), run)) return unexpected(make_error_code(error::handshake_failed));
        piece = piece.subspan(run);
        budget -= run;
        offset += run;
        continue;
      }
      std::size_t take = std::min({record - s.stage.size(), piece.size(), budget});
      s.stage.insert(s.stage.end(), piece.begin(), piece.begin() + static_cast<std::ptrdiff_t>(take));
      piece = piece.subspan(take);
      budget -= take;
      offset += take;
      if (s.stage.size() == record) {
        if (!seal(s.stage.data(), s.stage.size()))
          return unexpected(make_error_code(error::handshake_failed));
        s.stage.clear();
      }
    }
    if (!piece.empty()) break;  // the budget ran out inside this piece
  }
  if (!s.stage.empty()) {
    if (!seal(s.stage.data(), s.stage.size())) return unexpected(make_error_code(error::handshake_failed));
    s.stage.clear();
  }
  return result<void>{};
}

void session::close_notify() {
  auto& s = *impl_;
  if (s.sent_close) return;
  s.sent_close = true;
  if (!s.handshake_done) return;
  ERR_clear_error();
  (void)SSL_shutdown(s.ssl);  // queues close_notify; the peer's comes through read
  ERR_clear_error();
}

bool session::sent_close_notify() const noexcept { return impl_->sent_close; }
bool session::received_close_notify() const noexcept { return impl_->received_close; }

mutable_buffer session::input_space(std::size_t min) {
  auto& s = *impl_;
  if (s.in_begin == s.in_end) s.in_begin = s.in_end = 0;
  if (s.in.size() - s.in_end < min) {
    if (s.in_begin > 0) {
      std::memmove(s.in.data(), s.in.data() + s.in_begin, s.in_end - s.in_begin);
      s.in_end -= s.in_begin;
      s.in_begin = 0;
    }
    if (s.in.size() - s.in_end < min) s.in.resize(s.in_end + min);
  }
  return mutable_buffer(s.in.data() + s.in_end, s.in.size() - s.in_end);
}

void session::commit_input(std::size_t n) noexcept { impl_->in_end += n; }
void session::end_input() noexcept { impl_->in_ended = true; }

std::vector<std::byte> session::take_unread_input() {
  auto& s = *impl_;
  std::vector<std::byte> rest(s.in.begin() + static_cast<std::ptrdiff_t>(s.in_begin),
                              s.in.begin() + static_cast<std::ptrdiff_t>(s.in_end));
  s.in_begin = s.in_end = 0;
  return rest;
}

const_buffer session::pending_output() const noexcept {
  auto& s = *impl_;
  return const_buffer(s.out.data() + s.out_begin, s.out.size() - s.out_begin);
}

void session::consume_output(std::size_t n) noexcept {
  auto& s = *impl_;
  s.out_begin += n;
  if (s.out_begin >= s.out.size()) {
    s.out.clear();
    s.out_begin = 0;
  }
}

std::vector<std::byte> session::take_output(std::vector<std::byte> spare) {
  auto& s = *impl_;
  spare.clear();
  if (s.out_begin > 0) {
    s.out.erase(s.out.begin(), s.out.begin() + static_cast<std::ptrdiff_t>(s.out_begin));
    s.out_begin = 0;
  }
  std::swap(s.out, spare);
  return spare;
}

bool session::has_output() const noexcept { return impl_ && impl_->out.size() > impl_->out_begin; }

// -- facts --------------------------------------------------------------------------

namespace {

std::string name_text(const X509_NAME* name) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace

result<std::string> session::alpn() const {
  if (!impl_ || !impl_->handshake_done) return errc::not_supported;
  const unsigned char* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(impl_->ssl, &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

result<certificate_info> session::peer_certificate() const {
  if (!impl_ || !impl_->handshake_done) return errc::not_supported;
  x509_ptr cert(SSL_get1_peer_certificate(impl_->ssl));
  if (!cert) return errc::not_supported;
  certificate_info info;
  info.subject = name_text(X509_get_subject_name(cert.get()));
  info.issuer = name_text(X509_get_issuer_name(cert.get()));
  int len = i2d_X509(cert.get(), nullptr);
  if (len > 0) {
    info.der.resize(static_cast<std::size_t>(len));
    auto* p = reinterpret_cast<unsigned char*>(info.der.data());
    i2d_X509(cert.get(), &p);
  }
  return info;
}

result<security_info> session::security() const {
  if (!impl_ || !impl_->handshake_done) return errc::not_supported;
  security_info info;
  info.version = SSL_get_version(impl_->ssl);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(impl_->ssl)) info.cipher = SSL_CIPHER_standard_name(c);
  if (const char* name = SSL_get_servername(impl_->ssl, TLSEXT_NAMETYPE_host_name)) info.server_name = name;
  info.resumed = SSL_session_reused(impl_->ssl) == 1;
  info.peer_verified = peer_verified();
  return info;
}

bool session::peer_verified() const noexcept {
  if (!impl_ || !impl_->handshake_done || !impl_->context->verify) return false;
  if (SSL_get_verify_result(impl_->ssl) != X509_V_OK) return false;
  // A resumed session carries the verification of the one it resumes.
  x509_ptr cert(SSL_get1_peer_certificate(impl_->ssl));
  return static_cast<bool>(cert);
}

template class stream<any_stream>;

}  // namespace strata::tls
