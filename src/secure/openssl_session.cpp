// The OpenSSL machinery tls and dtls share: contexts, the BIO between OpenSSL and a
// session's buffers (a byte stream for tls, whole datagrams for dtls), OpenSSL's errors
// as tls::error codes, and the facts of a finished handshake.
#include "openssl_session.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace strata::tls::detail {
namespace {

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

bool is_ip_literal(const std::string& name) {
  unsigned char scratch[16];
  return inet_pton(AF_INET, name.c_str(), scratch) == 1 || inet_pton(AF_INET6, name.c_str(), scratch) == 1;
}

// -- the BIO between OpenSSL and the session's buffers --------------------------------

int bio_write(BIO* bio, const char* data, std::size_t len, std::size_t* written) {
  auto* s = static_cast<session_impl*>(BIO_get_data(bio));
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  *written = len;
  if (s->datagram) {
    // A sink (dtls::session::seal with one) takes a datagram straight from OpenSSL's
    // buffer when none waits before it; one it leaves is copied into the queue.
    if (!s->sink.write || !s->datagram->out.empty() ||
        s->sink.write(s->sink.context, const_buffer(bytes, len)) < len)
      s->datagram->out.push_back(s->datagram->take(bytes, len));
    return 1;
  }
  if (s->sink.write && s->out_begin == s->out.size()) {
    // Nothing queued before this record: the sink may take it straight from OpenSSL's
    // buffer; only what it leaves is copied.
    std::size_t took = std::min(s->sink.write(s->sink.context, const_buffer(bytes, len)), len);
    bytes += took;
    len -= took;
  }
  s->out.insert(s->out.end(), bytes, bytes + len);
  return 1;
}

int bio_read(BIO* bio, char* data, std::size_t len, std::size_t* read) {
  auto* s = static_cast<session_impl*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (s->datagram) {
    // One read, one whole datagram (its tail is lost if OpenSSL asked for less, as
    // with a datagram socket).
    if (s->datagram->in.empty()) {
      BIO_set_retry_read(bio);
      *read = 0;
      return 0;
    }
    auto d = std::move(s->datagram->in.front());
    s->datagram->in.pop_front();
    std::size_t n = std::min(len, d.size);
    std::memcpy(data, d.bytes.get(), n);
    s->datagram->give_back_received(std::move(d));
    *read = n;
    return 1;
  }
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
    // Datagram mode: the MTU is set, never queried (SSL_OP_NO_QUERY_MTU); the rest of
    // the datagram BIO interface has nothing to do here.
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
      return 1200;
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_MTU_EXCEEDED:
    case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT:
    case BIO_CTRL_DGRAM_GET_PEER:
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

bool load_credential(const credential& in, loaded_credential& out, std::string& why) {
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

/// cookie_mac binds a DTLS cookie to the peer's address with the context's secret.
bool cookie_mac(SSL* ssl, unsigned char* out, unsigned int* out_len) {
  auto* c = context_of(ssl);
  auto* s = static_cast<session_impl*>(SSL_get_app_data(ssl));
  if (!c || !s || !s->datagram) return false;
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), c->cookie_secret, sizeof c->cookie_secret,
            reinterpret_cast<const unsigned char*>(s->datagram->cookie_peer.data()),
            s->datagram->cookie_peer.size(), out, &len)) {
    return false;
  }
  *out_len = len;
  return true;
}

int generate_cookie(SSL* ssl, unsigned char* cookie, unsigned int* len) {
  return cookie_mac(ssl, cookie, len) ? 1 : 0;
}

int verify_cookie(SSL* ssl, const unsigned char* cookie, unsigned int len) {
  unsigned char expected[EVP_MAX_MD_SIZE];
  unsigned int expected_len = 0;
  if (!cookie_mac(ssl, expected, &expected_len)) return 0;
  return expected_len == len && CRYPTO_memcmp(expected, cookie, len) == 0 ? 1 : 0;
}

}  // namespace

result<context> make_context(const context_options& o, bool server, bool datagram, std::string* why_out) {
  std::string why;
  auto fail = [&](std::string reason) -> result<context> {
    if (why_out) *why_out = std::move(reason);
    return unexpected(make_error_code(error::bad_configuration));
  };
  ERR_clear_error();
  auto impl = std::make_shared<context_impl>();
  impl->server = server;
  impl->datagram = datagram;
  if (datagram) {
    impl->ctx = SSL_CTX_new(server ? DTLS_server_method() : DTLS_client_method());
  } else {
    impl->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  }
  if (!impl->ctx) return fail("SSL_CTX_new: " + openssl_reason());
  SSL_CTX* ctx = impl->ctx;
  SSL_CTX_set_app_data(ctx, impl.get());
  // Renegotiation is a TLS 1.2 feature attackers like (CVE-2009-3555, CPU floods): off.
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  // OpenSSL's own record buffers go back while a connection is idle.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (o.min_version > o.max_version) return fail("min_version is above max_version");
  if (datagram) {
    // DTLS 1.2 only (1.0 is obsolete, RFC 8996; OpenSSL 3.0 has no 1.3). The MTU is the
    // layer's to set: OpenSSL never asks the BIO.
    SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU);
    if (server) {
      // Cookies (HelloVerifyRequest, RFC 6347 4.2.1): a ClientHello from a forged
      // address gets a cookie and nothing else; state follows only its echo.
      if (RAND_bytes(impl->cookie_secret, sizeof impl->cookie_secret) != 1)
        return fail("no randomness for cookies");
      SSL_CTX_set_options(ctx, SSL_OP_COOKIE_EXCHANGE);
      SSL_CTX_set_cookie_generate_cb(ctx, generate_cookie);
      SSL_CTX_set_cookie_verify_cb(ctx, verify_cookie);
    }
  } else {
    SSL_CTX_set_min_proto_version(ctx, version_number(o.min_version));
    SSL_CTX_set_max_proto_version(ctx, version_number(o.max_version));
  }
  if (!o.groups.empty() && SSL_CTX_set1_groups_list(ctx, o.groups.c_str()) != 1) {
    return fail("unknown key exchange group in \"" + o.groups + "\": " + openssl_reason());
  }

  for (const auto& c : o.certificates) {
    loaded_credential loaded;
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

result<void> set_client_identity(session_impl& s, const context& ctx, const client_options& options,
                                 std::string_view peer_ip) {
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
  return result<void>{};
}

// -- errors -------------------------------------------------------------------------

result<want> session_impl::handshake_step() {
  if (handshake_done) return want::nothing;
  clear_errors();
  int r = SSL_do_handshake(ssl);
  if (r == 1) {
    handshake_done = true;
    return want::nothing;
  }
  int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ) return want::input;
  return unexpected(failure(e, true));
}

void session_impl::queue_close_notify() {
  if (sent_close) return;
  sent_close = true;
  if (!handshake_done) return;
  clear_errors();
  (void)SSL_shutdown(ssl);  // queues close_notify; the peer's comes through read
  clear_errors();
}

std::error_code session_impl::failure(int ssl_error, bool in_handshake) {
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

result<std::string> alpn_of(const session_impl* impl_) {
  if (!impl_ || !impl_->handshake_done) return errc::not_supported;
  const unsigned char* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(impl_->ssl, &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

result<certificate_info> peer_certificate_of(const session_impl* impl_) {
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

result<security_info> security_of(const session_impl* impl_) {
  if (!impl_ || !impl_->handshake_done) return errc::not_supported;
  security_info info;
  info.version = SSL_get_version(impl_->ssl);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(impl_->ssl)) info.cipher = SSL_CIPHER_standard_name(c);
  if (const char* name = SSL_get_servername(impl_->ssl, TLSEXT_NAMETYPE_host_name)) info.server_name = name;
  info.resumed = SSL_session_reused(impl_->ssl) == 1;
  info.peer_verified = peer_verified_of(impl_);
  return info;
}

bool peer_verified_of(const session_impl* impl_) noexcept {
  if (!impl_ || !impl_->handshake_done || !impl_->context->verify) return false;
  if (SSL_get_verify_result(impl_->ssl) != X509_V_OK) return false;
  // A resumed session carries the verification of the one it resumes.
  x509_ptr cert(SSL_get1_peer_certificate(impl_->ssl));
  return static_cast<bool>(cert);
}

}  // namespace strata::tls::detail
