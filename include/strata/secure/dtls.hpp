// dtls — secrecy and authentication for any message layer (DTLS 1.2, RFC 6347, on
// OpenSSL 3): udp, unix-dgram, seqpacket, later dccp.
//
// row: requires message
//      provides connection-based secure authenticated max_message (what one record carries
//               within the MTU)
//      passes   unit reliable ordered dup_free domain topology sharing direction multiplexed
//               congestion_controlled priority_ordered
//               (not fd_passing: descriptors cannot travel inside records)
// spec: udp:127.0.0.1:4444 | dtls(sni=localhost, ca=ca.pem)           (client side)
//       udp-listen:127.0.0.1:4444 | dtls(cert=server.pem, key=server.key)   (server side)
//
// Like tls, the protocol is a sans-I/O engine (dtls::session: datagrams in, datagrams
// out, a retransmission timer to honour) and dtls::connection<Lower> is a thin coroutine
// driver: the handshake's lost flights are sent again on strata timers under the caller's
// deadline, a server answers a ClientHello with a cookie (HelloVerifyRequest) before it
// does any work, and records replayed or from an old epoch are dropped (OpenSSL's replay
// window). Over a listener that splits one endpoint by sender (udp-listen,
// unix-dgram-listen) the cookie exchange runs on the listening side before the listener
// keeps anything for a peer (cookie_gate, an admission gate; dtls::listen and the
// pipeline install it). Configuration, errors and facts are tls's (tls::context_options,
// tls::error, fact::alpn/peer_certificate/secure_session).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/handshaking_listener.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"
#include "strata/secure/tls.hpp"

namespace strata::dtls {

/// link_options describe the path below: the largest datagram DTLS may send, and how
/// soon a lost handshake flight is sent again.
struct link_options {
  /// mtu: the largest datagram DTLS sends (the UDP payload, not the IP packet): handshake
  /// messages are fragmented to fit and one record carries at most mtu less its
  /// overhead. 256..65507; 1200 by default, which crosses any IPv6 path.
  std::size_t mtu = 1200;
  /// retransmit: the first retransmission timeout of a handshake flight, doubled after
  /// each loss up to 60 s (RFC 6347 4.2.4 recommends 1 s).
  std::chrono::milliseconds retransmit{1000};
};

/// row is dtls's capability declaration.
inline constexpr capability_row row{
    .name = "dtls",
    .required = prop::unit,
    .required_value = {.unit = unit::message},
    .provided = prop::connection | prop::secure | prop::authenticated | prop::max_message,
    .provided_value = {.connection = connection::based,
                       .secure = true,
                       .authenticated = true,
                       .max_message = 1136},
    .passed = prop_set::all() -
              (prop::connection | prop::secure | prop::authenticated | prop::fd_passing | prop::max_message),
};

/// layer names the row for the stacks_on concept.
struct layer {
  static constexpr const capability_row& row = dtls::row;
};

/// client_context / server_context make a DTLS 1.2 context from the same options as tls
/// (the version fields are ignored: DTLS 1.2 only). A server's context issues cookies.
result<tls::context> client_context(const tls::context_options& options, std::string* why = nullptr);
result<tls::context> server_context(const tls::context_options& options, std::string* why = nullptr);

/// record_overhead is the most a record adds to its payload in a datagram (header,
/// explicit nonce or IV, tag or MAC and padding) for the suites OpenSSL negotiates;
/// max_payload(mtu) = mtu - record_overhead is what a pipeline promises before the
/// handshake (after it, a connection's max_message() is exact and never smaller).
inline constexpr std::size_t record_overhead = 64;

/// max_record_plaintext is the most one record carries, whatever the MTU (2^14 bytes,
/// RFC 5246 6.2.1 as RFC 6347 4.1 keeps it): a receive buffer at least this large takes
/// a record without a copy through the session's own buffer.
inline constexpr std::size_t max_record_plaintext = 16384;

/// session is the sans-I/O DTLS engine of one association: feed it each datagram that
/// arrives, send each datagram it produces, and call on_timeout() when retransmit_in()
/// has passed.
class session {
 public:
  session() noexcept;
  session(session&&) noexcept;
  session& operator=(session&&) noexcept;
  ~session();

  /// client: `peer_ip` is verified when options.server_name is empty (as tls).
  static result<session> client(const tls::context& ctx, const tls::client_options& options,
                                std::string_view peer_ip, const link_options& link);
  /// server: `peer` identifies the client (its address) for the cookie exchange. Until a
  /// ClientHello with a valid cookie for `peer` arrives the session is stateless
  /// (OpenSSL's DTLSv1_listen): a ClientHello without one gets a HelloVerifyRequest,
  /// anything else is dropped; the handshake continues from the ClientHello that has one
  /// (also when a cookie_gate admitted it first).
  static result<session> server(const tls::context& ctx, std::string_view peer, const link_options& link);

  /// handshake advances the handshake with what was fed. Send every next_output()
  /// afterwards. Errors: tls::error codes.
  result<tls::want> handshake();
  bool handshake_done() const noexcept;

  /// feed hands the session one datagram from the peer (a copy of it).
  void feed(const_buffer datagram);
  /// input_space is a buffer of at least `min` bytes, the session's own, to receive the
  /// peer's next datagram into; commit_input(n) then feeds its first n bytes as one
  /// datagram without a copy. The buffer stays valid until commit_input, feed or the
  /// session's end; after commit_input, ask again.
  mutable_buffer input_space(std::size_t min);
  void commit_input(std::size_t n);
  bool has_output() const noexcept;
  /// next_output is the next datagram to send (moved out).
  std::vector<std::byte> next_output();
  /// recycle hands back a datagram from next_output once it was sent, so that its buffer
  /// carries a later datagram instead of a new allocation (optional).
  void recycle(std::vector<std::byte> sent) noexcept;
  /// retransmit_in is how long until a flight must be sent again; nullopt when no timer
  /// runs. on_timeout sends it again (then send next_output()).
  std::optional<std::chrono::milliseconds> retransmit_in() const;
  void on_timeout();

  /// read decrypts the next record fed into `buf`: its size, or 0 when the session needs
  /// another datagram. A `buf` of max_record_plaintext bytes or more is written directly,
  /// a smaller one receives a copy. Records that fail authentication, replays and stale
  /// epochs are dropped silently (RFC 6347 4.1.2.7). Errors: end_of_stream (close_notify;
  /// sticky), message_too_large (`buf` is smaller than the record, which is dropped),
  /// tls::error.
  result<std::size_t> read(mutable_buffer buf);
  /// seal turns `message` into one record in one datagram. Errors: message_too_large
  /// above max_payload() (nothing sent), closed after close_notify.
  result<void> seal(const_buffers message);
  /// seal with a sink hands the datagram to `sink` straight from OpenSSL's buffer when no
  /// earlier datagram waits in next_output(); one the sink does not take whole (it
  /// returns less than its size) queues in next_output() as usual.
  result<void> seal(const_buffers message, tls::record_sink sink);
  /// max_payload is the largest message one record carries at the negotiated suite.
  std::size_t max_payload() const noexcept;

  void close_notify();
  bool sent_close_notify() const noexcept;
  bool received_close_notify() const noexcept;

  result<std::string> alpn() const;
  result<certificate_info> peer_certificate() const;
  result<security_info> security() const;
  bool peer_verified() const noexcept;

 private:
  explicit session(std::unique_ptr<tls::detail::session_impl> impl, link_options link) noexcept;
  std::unique_ptr<tls::detail::session_impl> impl_;
  link_options link_{};
};

/// cookie_gate makes the cookie exchange of a DTLS server (RFC 6347 4.2.1) an admission
/// gate (core/datagram.hpp) for the listener below it: a ClientHello without a valid
/// cookie for its sender's address gets a HelloVerifyRequest, sent from the listening
/// socket, and the listener keeps nothing for that sender; a ClientHello whose cookie is
/// valid is admitted, and the association dtls::accept then runs on that connection
/// continues the handshake from it; anything else is refused without an answer. The
/// cookie is the context's own (the HMAC-SHA256 of the address under the context's
/// secret, as dtls::accept's), so a forged source address costs the listener one small
/// datagram and no state. Install it with udp::listener::set_gate or
/// unix_dgram::listener::set_gate before the first accept; dtls::listen and a
/// `udp-listen:... | dtls(...)` pipeline do. Each listener needs its own gate (it reuses
/// one OpenSSL object; not thread-safe). Errors: invalid_argument for a context that is
/// not a DTLS server's.
result<admission_gate> cookie_gate(const tls::context& ctx);

namespace detail {

/// sends_without_waiting: the lower message layer can send one datagram at once without
/// a coroutine, or say that it would wait (try_send).
template <class Lower>
concept sends_without_waiting = requires(Lower& lower, const_buffer bytes) {
  { lower.try_send(bytes) } -> std::same_as<result<bool>>;
};

}  // namespace detail

/// connection is a DTLS association over the message layer `Lower`, which it owns; the
/// contract is core/stream.hpp's message_socket. Made by dtls::connect and dtls::accept.
/// One send and one recv may be pending at the same time (from different tasks).
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower>
class connection {
 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, row);

  connection(Lower lower, session s) : lower_(std::move(lower)), session_(std::move(s)) {}
  connection(connection&&) noexcept = default;
  connection& operator=(connection&&) noexcept = default;

  /// send seals `message` as one record. Errors: message_too_large (above
  /// max_message(); nothing sent), closed, the lower layer's send errors.
  task<result<void>> send(const_buffers message, deadline dl) {
    if (closed_) co_return errc::closed;
    // Straight from OpenSSL's buffer to a socket that takes it now, unless an earlier
    // datagram waits or is on its way (it must leave first).
    const bool direct = detail::sends_without_waiting<Lower> && !flushing_ && !session_.has_output();
    direct_error_ = {};
    auto sealed = direct ? session_.seal(message, direct_sink()) : session_.seal(message);
    if (!sealed) co_return unexpected(sealed.error());
    if (direct_error_) co_return direct_error_;
    if (!session_.has_output()) co_return result<void>{};
    co_return co_await flush(dl);
  }

  /// recv returns the next message. While it waits it also keeps the handshake's
  /// retransmission timer (a peer whose last flight was lost is answered). A `buf` of
  /// max_record_plaintext bytes or more saves a copy per message. Errors:
  /// end_of_stream after the peer's close_notify, message_too_large (the message is
  /// dropped), closed, the lower layer's errors.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) {
    if (closed_) co_return errc::closed;
    for (;;) {
      auto n = session_.read(buf);
      if (session_.has_output()) (void)co_await flush(dl);
      if (!n) co_return unexpected(n.error());
      if (*n > 0 || buf.empty()) co_return *n;
      auto got = co_await next_datagram(dl);
      if (!got) co_return unexpected(got.error());
    }
  }

  /// shutdown_write sends close_notify (the peer's recv reports end_of_stream), then ends
  /// the lower layer's write direction where it has one (seqpacket), so a peer whose
  /// close waits for our end is not kept waiting.
  task<result<void>> shutdown_write(deadline dl) {
    if (closed_) co_return errc::closed;
    session_.close_notify();
    auto sent = co_await flush(dl);
    if (!sent) co_return sent;
    if constexpr (requires { lower_.shutdown_write(dl); }) {
      auto shut = co_await lower_.shutdown_write(dl);
      if (!shut && shut.error() != errc::not_supported) co_return shut;
    }
    co_return result<void>{};
  }

  /// close sends close_notify (once) and closes the lower layer.
  task<result<void>> close(deadline dl) {
    if (closed_) co_return errc::closed;
    closed_ = true;
    if (!session_.sent_close_notify()) {
      session_.close_notify();
      (void)co_await flush(dl);
    }
    co_return co_await lower_.close(dl);
  }

  const Lower& next_layer() const noexcept { return lower_; }
  Lower& next_layer() noexcept { return lower_; }

  using answers = fact_list<fact::alpn, fact::peer_certificate, fact::secure_session>;
  result<std::string> query(fact::alpn) const { return session_.alpn(); }
  result<certificate_info> query(fact::peer_certificate) const { return session_.peer_certificate(); }
  result<security_info> query(fact::secure_session) const { return session_.security(); }
  /// max_message is what one record carries (answers fact::max_message).
  std::size_t max_message() const noexcept { return session_.max_payload(); }

  properties runtime_capabilities() const {
    properties below = Lower::capabilities;
    if constexpr (requires { lower_.runtime_capabilities(); }) below = lower_.runtime_capabilities();
    auto out = stack_on(below, row);
    out.authenticated = session_.peer_verified();
    out.max_message = session_.max_payload();
    return out;
  }

  session& engine() noexcept { return session_; }

  /// next_datagram waits for one datagram from the lower layer and feeds it, sending a
  /// flight again whenever the retransmission timer fires first.
  task<result<void>> next_datagram(deadline dl) {
    for (;;) {
      auto wait = dl;
      auto timer = session_.retransmit_in();
      if (timer) wait = deadline::earlier(dl, deadline::after(*timer));
      // Received straight into the session's buffer, which OpenSSL reads it from.
      const mutable_buffer space = session_.input_space(receive_size);
      auto n = co_await lower_.recv(space, wait);
      if (n) {
        session_.commit_input(*n);
        co_return result<void>{};
      }
      if (n.error() == errc::timed_out && timer && wait != dl) {
        session_.on_timeout();
        auto sent = co_await flush(dl);
        if (!sent) co_return sent;
        continue;
      }
      // A datagram too large for any record is not DTLS: drop it and go on.
      if (n.error() == errc::message_too_large) continue;
      co_return unexpected(n.error());
    }
  }

  /// flush sends every datagram the session produced, in order.
  task<result<void>> flush(deadline dl) {
    flushing_ = true;
    while (session_.has_output()) {
      auto datagram = session_.next_output();
      auto sent = co_await lower_.send(const_buffer(datagram), dl);
      if (!sent) {
        flushing_ = false;
        co_return sent;
      }
      session_.recycle(std::move(datagram));
    }
    flushing_ = false;
    co_return result<void>{};
  }

 private:
  static constexpr std::size_t receive_size = 65536;

  /// direct_sink sends a sealed datagram with the lower layer's try_send; an error is
  /// kept for send to report (the datagram is then lost, as a failed send loses it).
  tls::record_sink direct_sink() noexcept {
    tls::record_sink sink;
    sink.context = this;
    sink.write = [](void* self, const_buffer bytes) noexcept -> std::size_t {
      if constexpr (detail::sends_without_waiting<Lower>) {
        auto& c = *static_cast<connection*>(self);
        auto sent = c.lower_.try_send(bytes);
        if (!sent) {
          c.direct_error_ = sent.error();
          return bytes.size();
        }
        return *sent ? bytes.size() : 0;
      } else {
        return 0;
      }
    };
    return sink;
  }

  Lower lower_;
  session session_;
  bool closed_ = false;
  bool flushing_ = false;  // a flush is sending (or waiting to send) queued datagrams
  std::error_code direct_error_{};
};

namespace detail {

/// run_handshake drives `c`'s session until the handshake completes or fails.
template <class Connection>
task<result<void>> run_handshake(Connection& c, deadline dl) {
  for (;;) {
    auto step = c.engine().handshake();
    auto sent = co_await c.flush(dl);
    if (!step) co_return unexpected(step.error());
    if (!sent) co_return sent;
    if (*step == tls::want::nothing) co_return result<void>{};
    auto got = co_await c.next_datagram(dl);
    if (!got) co_return got;
  }
}

/// associate runs the handshake of session `s` over `lower` (closed on failure).
template <class Lower>
task<result<connection<Lower>>> associate(result<session> s, Lower lower, deadline dl) {
  if (!s) {
    (void)co_await lower.close(dl);
    co_return unexpected(s.error());
  }
  connection<Lower> c(std::move(lower), std::move(*s));
  auto done = co_await run_handshake(c, dl);
  if (!done) {
    (void)co_await c.next_layer().close(dl);
    co_return unexpected(done.error());
  }
  co_return c;
}

}  // namespace detail

/// connect runs a client handshake over `lower` (closed on failure).
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower> task<result<connection<Lower>>> connect(
    Lower lower, tls::context ctx, tls::client_options options, deadline dl, link_options link) {
  auto s = session::client(ctx, options, tls::detail::peer_ip_of(lower), link);
  return detail::associate(std::move(s), std::move(lower), dl);
}

/// accept runs a server handshake over `lower` (closed on failure). The cookie is bound
/// to the lower layer's peer address.
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower> task<result<connection<Lower>>> accept(
    Lower lower, tls::context ctx, deadline dl, link_options link) {
  auto peer = query<fact::peer_address>(lower);
  auto s = session::server(ctx, peer ? peer->to_string() : std::string("(unknown)"), link);
  return detail::associate(std::move(s), std::move(lower), dl);
}

// The default link, as overloads rather than default arguments: not coroutines, so the
// options temporary is made here and not in the caller's co_await expression (which
// GCC 12 miscompiles for aggregates).
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower> task<result<connection<Lower>>> connect(
    Lower lower, tls::context ctx, tls::client_options options, deadline dl) {
  return dtls::connect(std::move(lower), std::move(ctx), std::move(options), dl, link_options{});
}
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower> task<result<connection<Lower>>> accept(
    Lower lower, tls::context ctx, deadline dl) {
  return dtls::accept(std::move(lower), std::move(ctx), dl, link_options{});
}

/// accepting is the handshake dtls::listen runs on each accepted connection.
struct accepting {
  tls::context ctx;
  link_options link;
  template <class Lower>
  auto operator()(Lower lower, deadline dl) const {
    return dtls::accept(std::move(lower), ctx, dl, link);
  }
};

/// listen makes a listener of DTLS associations out of a listener of message connections
/// (udp::listener, unix_dgram::listener, seqpacket::listener): each accepted connection's
/// server handshake runs as its own task under `options` (core/handshaking_listener.hpp),
/// and accept() returns ready connection<...>s. A listener that takes an admission gate
/// gets the context's cookie_gate first, so only peers that echoed a cookie get a
/// connection at all. `ctx` must be a DTLS server's context.
template <listener Lower>
handshaking_listener<Lower, accepting> listen(Lower lower, tls::context ctx, link_options link,
                                              handshake_options options) {
  if constexpr (requires { lower.set_gate(admission_gate{}); }) {
    if (auto gate = cookie_gate(ctx)) lower.set_gate(std::move(*gate));
  }
  return handshaking_listener<Lower, accepting>(std::move(lower), accepting{std::move(ctx), link}, options);
}
template <listener Lower>
handshaking_listener<Lower, accepting> listen(Lower lower, tls::context ctx) {
  return dtls::listen(std::move(lower), std::move(ctx), link_options{}, handshake_options{});
}

extern template class connection<any_message>;

}  // namespace strata::dtls
