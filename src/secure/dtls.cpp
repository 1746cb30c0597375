// dtls: the sans-I/O DTLS 1.2 session over OpenSSL 3. The BIO (openssl_session) runs in
// datagram mode: one read takes one datagram the driver fed, one write makes one datagram
// the driver sends. Timers are OpenSSL's, read out and fired by the driver. A server
// exchanges cookies with OpenSSL's stateless DTLSv1_listen, in its session until a valid
// cookie came, and in cookie_gate on the listening side before any session exists.
#include "strata/secure/dtls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "openssl_session.hpp"

namespace strata::dtls {

using tls::detail::clear_errors;
using tls::detail::session_impl;

result<tls::context> client_context(const tls::context_options& options, std::string* why) {
  return tls::detail::make_context(options, false, true, why);
}

result<tls::context> server_context(const tls::context_options& options, std::string* why) {
  return tls::detail::make_context(options, true, true, why);
}

session::session() noexcept = default;
session::session(std::unique_ptr<tls::detail::session_impl> impl, link_options link) noexcept
    : impl_(std::move(impl)), link_(link) {}
session::session(session&&) noexcept = default;
session& session::operator=(session&&) noexcept = default;
session::~session() = default;

namespace {

/// next_timeout doubles the retransmission timeout from the link's first value up to
/// 60 s (OpenSSL calls it with 0 when a flight is first sent).
unsigned int next_timeout(SSL* ssl, unsigned int previous_us) {
  auto* s = static_cast<session_impl*>(SSL_get_app_data(ssl));
  unsigned int first = s && s->datagram ? s->datagram->retransmit_us : 1000000;
  if (previous_us == 0) return first;
  return std::min(previous_us * 2, 60u * 1000000u);
}

result<std::unique_ptr<session_impl>> start(const tls::context& ctx, const link_options& link) {
  if (!ctx || !ctx.impl()->datagram) return errc::invalid_argument;
  if (link.mtu < 256 || link.mtu > 65507) return errc::invalid_argument;
  auto made = tls::detail::new_session(ctx);
  if (!made) return unexpected(made.error());
  auto& s = **made;
  s.datagram = std::make_unique<session_impl::datagram_state>();
  s.datagram->retransmit_us = static_cast<unsigned>(std::clamp<long long>(
      std::chrono::duration_cast<std::chrono::microseconds>(link.retransmit).count(), 1000, 60LL * 1000000));
  SSL_set_mtu(s.ssl, static_cast<long>(link.mtu));
  DTLS_set_timer_cb(s.ssl, next_timeout);
  return made;
}

}  // namespace

result<session> session::client(const tls::context& ctx, const tls::client_options& options,
                                std::string_view peer_ip, const link_options& link) {
  if (ctx.is_server()) return errc::invalid_argument;
  auto made = start(ctx, link);
  if (!made) return unexpected(made.error());
  auto identity = tls::detail::set_client_identity(**made, ctx, options, peer_ip);
  if (!identity) return unexpected(identity.error());
  SSL_set_connect_state((*made)->ssl);
  return session(std::move(*made), link);
}

result<session> session::server(const tls::context& ctx, std::string_view peer, const link_options& link) {
  if (!ctx.is_server()) return errc::invalid_argument;
  auto made = start(ctx, link);
  if (!made) return unexpected(made.error());
  (*made)->datagram->cookie_peer = std::string(peer);
  (*made)->datagram->listening = true;
  SSL_set_accept_state((*made)->ssl);
  return session(std::move(*made), link);
}

namespace {

using bio_addr_ptr = std::unique_ptr<BIO_ADDR, tls::detail::openssl_deleter<BIO_ADDR, BIO_ADDR_free>>;

/// listen_once runs DTLSv1_listen over the datagram fed to `s`: 1 when it was a
/// ClientHello with a valid cookie (the SSL is then set to continue the handshake from it,
/// its message and record sequence numbers included), 0 when it was answered with a
/// HelloVerifyRequest (queued as output) or dropped, -1 on OpenSSL's failure. The
/// datagram is consumed either way; the error queue is left empty.
int listen_once(session_impl& s, BIO_ADDR* client) {
  clear_errors();
  int r = DTLSv1_listen(s.ssl, client);
  ERR_clear_error();  // a dropped datagram leaves its reason behind
  return r;
}

}  // namespace

result<tls::want> session::handshake() {
  auto& s = *impl_;
  if (s.datagram && s.datagram->listening) {
    // Stateless until a ClientHello brings a valid cookie: each one without gets a
    // HelloVerifyRequest, anything else is dropped.
    bio_addr_ptr client(BIO_ADDR_new());
    if (!client) return unexpected(make_error_code(tls::error::handshake_failed));
    while (s.datagram->listening && !s.datagram->in.empty()) {
      int r = listen_once(s, client.get());
      if (r < 0) return unexpected(make_error_code(tls::error::handshake_failed));
      if (r == 1) s.datagram->listening = false;
    }
    if (s.datagram->listening) return tls::want::input;
  }
  return s.handshake_step();
}

bool session::handshake_done() const noexcept { return impl_ && impl_->handshake_done; }

void session::feed(const_buffer datagram) {
  auto& d = *impl_->datagram;
  d.receive_buffer(datagram.size());
  if (!datagram.empty()) std::memcpy(d.rx.bytes.get(), datagram.data(), datagram.size());
  commit_input(datagram.size());
}

mutable_buffer session::input_space(std::size_t min) {
  auto& d = *impl_->datagram;
  d.receive_buffer(min);
  return mutable_buffer(d.rx.bytes.get(), d.rx.capacity);
}

void session::commit_input(std::size_t n) {
  auto& d = *impl_->datagram;
  d.rx.size = std::min(n, d.rx.capacity);
  d.in.push_back(std::move(d.rx));
  d.rx = {};
}

bool session::has_output() const noexcept { return impl_ && !impl_->datagram->out.empty(); }

std::vector<std::byte> session::next_output() {
  auto& q = impl_->datagram->out;
  if (q.empty()) return {};
  auto out = std::move(q.front());
  q.pop_front();
  return out;
}

void session::recycle(std::vector<std::byte> sent) noexcept {
  if (impl_ && impl_->datagram) impl_->datagram->give_back(std::move(sent));
}

std::optional<std::chrono::milliseconds> session::retransmit_in() const {
  timeval left{};
  if (!impl_ || DTLSv1_get_timeout(impl_->ssl, &left) != 1) return std::nullopt;
  return std::chrono::milliseconds(left.tv_sec * 1000 + (left.tv_usec + 999) / 1000);
}

void session::on_timeout() {
  clear_errors();
  (void)DTLSv1_handle_timeout(impl_->ssl);
  clear_errors();
}

result<std::size_t> session::read(mutable_buffer buf) {
  auto& s = *impl_;
  if (s.received_close) return errc::end_of_stream;
  if (s.read_failure) return unexpected(s.read_failure);
  if (!s.handshake_done) return unexpected(make_error_code(tls::error::handshake_failed));
  // A record is read whole: a caller's smaller buffer must not cut a message silently.
  // A buffer that holds any record's plaintext takes it directly; a smaller one gets it
  // through the session's own.
  const bool direct = buf.size() >= max_record_plaintext;
  if (!direct && s.stage.size() < max_record_plaintext) s.stage.resize(max_record_plaintext);
  const mutable_buffer into = direct ? buf : mutable_buffer(s.stage.data(), s.stage.size());
  for (;;) {
    if (s.datagram->in.empty() && SSL_pending(s.ssl) == 0) return std::size_t{0};
    clear_errors();
    std::size_t n = 0;
    int r = SSL_read_ex(s.ssl, into.data(), into.size(), &n);
    if (r == 1) {
      if (direct) return n;
      if (n > buf.size()) return errc::message_too_large;
      std::memcpy(buf.data(), s.stage.data(), n);
      return n;
    }
    int e = SSL_get_error(s.ssl, r);
    if (e == SSL_ERROR_WANT_READ) continue;  // a record that was dropped, or not data
    if (e == SSL_ERROR_ZERO_RETURN) {
      s.received_close = true;
      return errc::end_of_stream;
    }
    s.read_failure = s.failure(e, false);
    return unexpected(s.read_failure);
  }
}

result<void> session::seal(const_buffers message, tls::record_sink sink) {
  impl_->sink = sink;
  auto sealed = seal(message);
  impl_->sink = {};
  return sealed;
}

result<void> session::seal(const_buffers message) {
  auto& s = *impl_;
  if (s.sent_close) return errc::closed;
  if (!s.handshake_done) return unexpected(make_error_code(tls::error::handshake_failed));
  auto parts = message.view();
  std::size_t size = 0;
  for (auto p : parts) size += p.size();
  if (size > max_payload()) return errc::message_too_large;
  const std::byte* data = nullptr;
  if (parts.size() == 1) {
    data = parts.front().data();
  } else {
    s.stage.clear();
    for (auto p : parts) s.stage.insert(s.stage.end(), p.begin(), p.end());
    data = s.stage.data();
  }
  clear_errors();
  std::size_t written = 0;
  if (SSL_write_ex(s.ssl, data, size, &written) != 1 || written != size) {
    clear_errors();
    return errc::broken;
  }
  return result<void>{};
}

std::size_t session::max_payload() const noexcept {
  if (!impl_ || !impl_->handshake_done) return link_.mtu > record_overhead ? link_.mtu - record_overhead : 0;
  // Fixed once the handshake is done (the MTU is set, never queried, and the suite
  // cannot change: no renegotiation), so worked out once, not per record.
  auto& d = *impl_->datagram;
  if (d.max_payload == 0) d.max_payload = DTLS_get_data_mtu(impl_->ssl);
  return d.max_payload;
}

void session::close_notify() { impl_->queue_close_notify(); }

bool session::sent_close_notify() const noexcept { return impl_->sent_close; }
bool session::received_close_notify() const noexcept { return impl_->received_close; }

result<std::string> session::alpn() const { return tls::detail::alpn_of(impl_.get()); }
result<certificate_info> session::peer_certificate() const {
  return tls::detail::peer_certificate_of(impl_.get());
}
result<security_info> session::security() const { return tls::detail::security_of(impl_.get()); }
bool session::peer_verified() const noexcept { return tls::detail::peer_verified_of(impl_.get()); }

// -- the listening side's cookie exchange -----------------------------------------------

namespace {

/// cookie_check is the state of one listener's cookie gate: one server session, made when
/// first needed, that DTLSv1_listen clears and reuses for every refused datagram (one
/// SSL_clear instead of an SSL_new and a free per forged ClientHello).
struct cookie_check {
  tls::context ctx;
  std::unique_ptr<session_impl> probe;
  bio_addr_ptr client{BIO_ADDR_new()};

  admission operator()(const address& from, const_buffer datagram, std::vector<std::byte>& reply) {
    if (!probe) {
      auto made = start(ctx, link_options{});
      if (!made || !client) return admission::refuse;
      probe = std::move(*made);
      SSL_set_accept_state(probe->ssl);
    }
    auto& d = *probe->datagram;
    d.cookie_peer = from.to_string();
    d.in.clear();
    session_impl::datagram_state::received copy;
    copy.bytes = std::make_unique_for_overwrite<std::byte[]>(datagram.size());
    if (!datagram.empty()) std::memcpy(copy.bytes.get(), datagram.data(), datagram.size());
    copy.size = copy.capacity = datagram.size();
    d.in.push_back(std::move(copy));
    int r = listen_once(*probe, client.get());
    d.in.clear();
    if (r == 1) {
      // This one holds the admitted ClientHello now: the association makes its own
      // session from the same datagram, the next check a fresh probe.
      probe.reset();
      return admission::admit;
    }
    if (!d.out.empty()) {
      const auto& verify = d.out.front();
      reply.assign(verify.begin(), verify.end());
      while (!d.out.empty()) {
        d.give_back(std::move(d.out.front()));
        d.out.pop_front();
      }
    }
    if (r < 0) probe.reset();
    return admission::refuse;
  }
};

}  // namespace

result<admission_gate> cookie_gate(const tls::context& ctx) {
  if (!ctx || !ctx.impl()->datagram || !ctx.is_server()) return errc::invalid_argument;
  auto check = std::make_shared<cookie_check>();
  check->ctx = ctx;
  return admission_gate([check](const address& from, const_buffer datagram, std::vector<std::byte>& reply) {
    return (*check)(from, datagram, reply);
  });
}

template class connection<any_message>;

}  // namespace strata::dtls
