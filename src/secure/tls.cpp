// tls: the sans-I/O session over OpenSSL 3 and the contexts it is made from.
//
// OpenSSL reads and writes through a BIO of our own whose two ends are the session's
// buffers: it never sees a descriptor, never blocks, and its errors are turned into
// tls::error codes here, once.
#include "strata/secure/tls.hpp"

#include "openssl_session.hpp"

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

using detail::bio_ptr;
using detail::pkey_ptr;
using detail::x509_ptr;
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

}  // namespace

const std::error_category& category() noexcept {
  static const tls_error_category instance;
  return instance;
}

result<context> context::client(const context_options& options, std::string* why) {
  return detail::make_context(options, false, false, why);
}
result<context> context::server(const context_options& options, std::string* why) {
  return detail::make_context(options, true, false, why);
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

// -- session ------------------------------------------------------------------------

session::session() noexcept = default;
session::session(std::unique_ptr<detail::session_impl> impl) noexcept : impl_(std::move(impl)) {}
session::session(session&&) noexcept = default;
session& session::operator=(session&&) noexcept = default;
session::~session() = default;

result<session> session::client(const context& ctx, const client_options& options, std::string_view peer_ip) {
  if (ctx.is_server() || ctx.impl()->datagram) return errc::invalid_argument;
  auto made = detail::new_session(ctx);
  if (!made) return unexpected(made.error());
  auto identity = detail::set_client_identity(**made, ctx, options, peer_ip);
  if (!identity) return unexpected(identity.error());
  SSL_set_connect_state((*made)->ssl);
  return session(std::move(*made));
}

result<session> session::server(const context& ctx) {
  if (!ctx.is_server() || ctx.impl()->datagram) return errc::invalid_argument;
  auto made = detail::new_session(ctx);
  if (!made) return unexpected(made.error());
  SSL_set_accept_state((*made)->ssl);
  return session(std::move(*made));
}

result<want> session::handshake() { return impl_->handshake_step(); }

bool session::handshake_done() const noexcept { return impl_ && impl_->handshake_done; }

result<std::size_t> session::read(mutable_buffer buf) {
  auto& s = *impl_;
  if (s.received_close) return errc::end_of_stream;
  if (s.read_failure) return unexpected(s.read_failure);
  if (!s.handshake_done) return unexpected(make_error_code(error::handshake_failed));
  detail::clear_errors();
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

result<void> session::encrypt(std::span<const const_buffer> parts, std::size_t& offset, std::size_t limit,
                              record_sink sink) {
  struct sink_scope {
    detail::session_impl& s;
    ~sink_scope() { s.sink = {}; }
  } scope{*impl_};
  impl_->sink = sink;
  return encrypt(parts, offset, limit);
}

result<void> session::encrypt(std::span<const const_buffer> parts, std::size_t& offset, std::size_t limit) {
  auto& s = *impl_;
  if (s.sent_close) return errc::closed;
  if (!s.handshake_done) return unexpected(make_error_code(error::handshake_failed));
  constexpr std::size_t record = 16 * 1024;
  auto seal = [&](const std::byte* data, std::size_t size) -> bool {
    std::size_t written = 0;
    detail::clear_errors();
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

void session::close_notify() { impl_->queue_close_notify(); }

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

std::size_t session::input_capacity() const noexcept { return impl_ ? impl_->in.size() : 0; }

void session::release_input() noexcept {
  auto& s = *impl_;
  if (s.in_begin != s.in_end) return;
  std::vector<std::byte>().swap(s.in);
  s.in_begin = s.in_end = 0;
}

void session::trim_output(std::size_t above) noexcept {
  auto& s = *impl_;
  if (s.out.size() == s.out_begin && s.out.capacity() > above) {
    std::vector<std::byte>().swap(s.out);
    s.out_begin = 0;
  }
  if (s.stage.empty() && s.stage.capacity() > above) std::vector<std::byte>().swap(s.stage);
}
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

result<std::string> session::alpn() const { return detail::alpn_of(impl_.get()); }
result<certificate_info> session::peer_certificate() const {
  return detail::peer_certificate_of(impl_.get());
}
result<security_info> session::security() const { return detail::security_of(impl_.get()); }
bool session::peer_verified() const noexcept { return detail::peer_verified_of(impl_.get()); }

template class stream<any_stream>;

}  // namespace strata::tls
