// tls — secrecy and authentication for any reliable byte stream (TLS 1.2 and 1.3, RFC 8446
// and RFC 5246, on OpenSSL 3).
//
// row: requires stream reliable ordered
//      provides secure authenticated (authenticated only while the peer is verified)
//      passes   connection unit reliable ordered dup_free domain topology sharing direction
//               multiplexed congestion_controlled priority_ordered max_message
//               (not fd_passing: descriptors cannot travel inside records)
// spec: tls(sni=localhost, alpn="h2,http/1.1", ca=ca.pem)          (client side)
//       tls(cert=server.pem, key=server.key)                        (server side)
//
// The protocol is a sans-I/O engine (tls::session: ciphertext in, plaintext out, records
// to send) over OpenSSL with a custom BIO that reads from and writes to the session's own
// buffers; tls::stream<Lower> is a thin coroutine driver over it. Every wait is the lower
// layer's, under the caller's deadline; OpenSSL never blocks and never sees a descriptor.
#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/flush.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::tls {

/// row is tls's capability declaration.
inline constexpr capability_row row{
    .name = "tls",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop::secure | prop::authenticated,
    .provided_value = {.secure = true, .authenticated = true},
    .passed = prop_set::all() - (prop::secure | prop::authenticated | prop::fd_passing),
};

/// layer names the row for the stacks_on concept.
struct layer {
  static constexpr const capability_row& row = tls::row;
};

/// error is what goes wrong in TLS, each code refining a strata::errc: compare with
/// `ec == errc::authentication_failed` to branch, print `ec.message()` to explain.
enum class error {
  not_tls = 1,                ///< protocol_error: the peer's bytes are not TLS
  handshake_failed,           ///< protocol_error: the handshake failed for another reason
  version_mismatch,           ///< protocol_error: no TLS version both ends accept
  no_application_protocol,    ///< protocol_error: no ALPN protocol in common
  certificate_untrusted,      ///< authentication_failed: the peer's chain ends at no trusted CA
  certificate_expired,        ///< authentication_failed: expired or not yet valid
  certificate_name_mismatch,  ///< authentication_failed: valid, but for another name or address
  certificate_invalid,        ///< authentication_failed: any other verification failure
  certificate_required,       ///< authentication_failed: a certificate is required and none came
  certificate_rejected,       ///< authentication_failed: the peer rejected our certificate
  truncated,                  ///< broken: the peer closed the connection without close_notify
  closed_in_handshake,        ///< broken: the peer closed the connection during the handshake
  no_server_name,             ///< invalid_argument: nothing to verify the server against
  bad_configuration,          ///< invalid_argument: unusable certificate, key or CA
  /// peer_alert + n: protocol_error: the peer ended the connection with TLS alert n
  /// (RFC 8446 section 6), for alerts without a more precise code above.
  peer_alert = 1000,
};

/// category is the std::error_category of tls::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

/// version names a protocol version.
enum class version : std::uint8_t { tls1_2, tls1_3 };

/// credential is a certificate chain (leaf first) and its private key, each from a PEM
/// file or PEM text in memory (the text wins when both are given).
struct credential {
  std::string cert_file{};
  std::string key_file{};
  std::string cert_pem{};
  std::string key_pem{};
};

/// self_signed makes a throwaway P-256 key and a self-signed certificate for `names`
/// (DNS names or IP addresses; the first is also the subject's CN), valid from an hour
/// ago for `valid_for`: for demos and development servers. A client trusts it by taking
/// the certificate itself as its CA (ca_pem = cert_pem). Errors: invalid_argument (no
/// names), bad_configuration (OpenSSL failed).
result<credential> self_signed(std::span<const std::string> names,
                               std::chrono::seconds valid_for = std::chrono::hours(24));

/// client_auth is what a server asks of its clients' certificates.
enum class client_auth : std::uint8_t {
  none,      ///< no certificate asked for
  optional,  ///< asked for and verified when sent
  required,  ///< the handshake fails without a valid one (certificate_required)
};

/// context_options configure one side of TLS, shared by all its connections.
struct context_options {
  /// certificates: a server's certificates. With several, the server presents the first
  /// whose names (subjectAltName) match the client's SNI, else the first. A client's
  /// first entry is its own certificate for mutual TLS.
  std::vector<credential> certificates{};
  /// ca_file / ca_pem: the certificates trusted to sign the peer's. Neither: the system's
  /// store (/etc/ssl/certs).
  std::string ca_file{};
  std::string ca_pem{};
  /// verify_peer: a client checks the server's chain and name (on by default; turning it
  /// off leaves the connection secret but not authenticated).
  bool verify_peer = true;
  /// client_certificates: what a server asks of its clients (verified against ca_*).
  client_auth client_certificates = client_auth::none;
  /// alpn: a client offers these in order; a server picks the first of its own list the
  /// client offered and refuses a client whose offer has none of them
  /// (no_application_protocol). Empty: no ALPN.
  std::vector<std::string> alpn{};
  version min_version = version::tls1_2;
  version max_version = version::tls1_3;
  /// groups: key exchange groups in preference order, as OpenSSL names them
  /// ("X25519:P-256"); empty: OpenSSL's defaults.
  std::string groups{};
  /// session_tickets: a server issues resumption tickets; a client keeps the latest per
  /// server name (at most 256 names) and offers it on its next connection there.
  bool session_tickets = true;
  /// keylog_file: where session secrets are appended in NSS key log format, for
  /// Wireshark. Empty: $SSLKEYLOGFILE when set, else nowhere.
  std::string keylog_file{};
};

namespace detail {
struct context_impl;
struct session_impl;

/// writes_without_waiting: the lower stream can take bytes at once without a coroutine
/// (tcp::stream, uds::stream), so records can go to it straight from OpenSSL's buffer.
template <class Lower>
concept writes_without_waiting = requires(Lower& lower, const_buffer bytes) {
  { lower.try_write_some(bytes) } -> std::same_as<result<std::size_t>>;
};
}  // namespace detail

/// context is the configuration every connection of one side shares (an SSL_CTX with the
/// certificates loaded, the trust store and the client's session cache). Cheap to copy
/// (shared); immutable once made, so connections may share it across threads.
class context {
 public:
  context() = default;
  /// client / server load and check everything `options` name. Errors: bad_configuration,
  /// with the reason (file, OpenSSL's words) in `why` when given.
  static result<context> client(const context_options& options, std::string* why = nullptr);
  static result<context> server(const context_options& options, std::string* why = nullptr);

  bool is_server() const noexcept;
  /// verifies_peer: connections made with this context authenticate their peer.
  bool verifies_peer() const noexcept;
  explicit operator bool() const noexcept { return static_cast<bool>(impl_); }
  const std::shared_ptr<detail::context_impl>& impl() const noexcept { return impl_; }
  /// adopt wraps a made context (for the implementation).
  static context adopt(std::shared_ptr<detail::context_impl> impl) noexcept {
    return context(std::move(impl));
  }

 private:
  explicit context(std::shared_ptr<detail::context_impl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<detail::context_impl> impl_;
};

/// client_options say whom a client expects.
struct client_options {
  /// server_name is sent as SNI (when it is a DNS name) and checked against the
  /// server's certificate. Empty: the lower layer's peer IP address is checked instead,
  /// and a stack that has none (a unix socket) fails with no_server_name unless the
  /// context does not verify.
  std::string server_name{};
};

/// step is what the session needs before it can go on.
enum class want : std::uint8_t {
  nothing,  ///< done (the handshake finished; plaintext was produced)
  input,    ///< more ciphertext from the peer (after sending pending_output())
};

/// record_sink takes records as encrypt makes them, straight from OpenSSL's own buffer:
/// `write` is handed each record's bytes (valid only during the call) and returns how
/// many of them it took, 0..size; the rest queue in pending_output() as usual. A sink
/// that writes to a socket without waiting spares the copy into the session's buffer
/// (what OpenSSL's socket BIO does).
struct record_sink {
  void* context = nullptr;
  std::size_t (*write)(void* context, const_buffer bytes) noexcept = nullptr;
};

/// session is the sans-I/O TLS engine of one connection: feed it the peer's bytes
/// (input_space/commit_input), take the records it produced (pending_output/consume_output)
/// and drive it with handshake, read and encrypt. It performs no I/O and allocates only
/// in OpenSSL and for its two buffers, so it can be replayed and fuzzed.
class session {
 public:
  session() noexcept;
  session(session&&) noexcept;
  session& operator=(session&&) noexcept;
  ~session();

  /// client / server start a session with `ctx` (a client or server context). `peer_ip`
  /// is what a client without a server name verifies (empty: none). Errors:
  /// invalid_argument (the context is of the other side), no_server_name.
  static result<session> client(const context& ctx, const client_options& options,
                                std::string_view peer_ip = {});
  static result<session> server(const context& ctx);

  /// handshake advances the handshake with the input so far: want::nothing when it is
  /// complete, want::input when it needs the peer's next bytes. Either way, send
  /// pending_output() first. Errors: tls::error codes.
  result<want> handshake();
  bool handshake_done() const noexcept;

  /// read decrypts into `buf`: the byte count, or 0 when it needs more input (after
  /// sending pending_output(), which a key update may have produced). Errors:
  /// end_of_stream (the peer's close_notify; sticky), truncated (the input ended without
  /// one), other tls::error codes.
  result<std::size_t> read(mutable_buffer buf);

  /// encrypt turns up to `limit` bytes of `parts`, starting at `*offset` bytes into them,
  /// into records in pending_output() and advances `*offset`. Small pieces share records
  /// (one record holds up to 16 KiB from as many pieces as fit); runs of whole records
  /// are encrypted straight from the caller's memory. Errors: closed (close_notify was
  /// sent), handshake_failed.
  result<void> encrypt(std::span<const const_buffer> parts, std::size_t& offset, std::size_t limit);
  /// encrypt with a sink: while nothing is pending, records go to `sink` first and only
  /// what it did not take queues in pending_output() (so order is kept).
  result<void> encrypt(std::span<const const_buffer> parts, std::size_t& offset, std::size_t limit,
                       record_sink sink);

  /// close_notify queues the alert that ends our direction (idempotent).
  void close_notify();
  bool sent_close_notify() const noexcept;
  bool received_close_notify() const noexcept;

  /// input_space is where the peer's next bytes go (at least `min` bytes); commit_input
  /// says how many arrived there; end_input says the lower layer ended.
  mutable_buffer input_space(std::size_t min = 18 * 1024);
  void commit_input(std::size_t n) noexcept;
  void end_input() noexcept;
  /// input_capacity is the size of the input buffer (0 while released); release_input
  /// frees it when it holds nothing unconsumed, so an idle connection keeps none.
  std::size_t input_capacity() const noexcept;
  void release_input() noexcept;
  /// trim_output frees the record buffer when it is empty and larger than `above`.
  void trim_output(std::size_t above) noexcept;
  /// unread_input is the peer's bytes after the record that carried its close_notify
  /// (what the layer below carries next, once TLS has ended).
  std::vector<std::byte> take_unread_input();

  /// pending_output is the records waiting to be sent; consume_output drops the first n.
  const_buffer pending_output() const noexcept;
  void consume_output(std::size_t n) noexcept;
  /// take_output moves the pending records out (leaving `spare` in their place, emptied),
  /// so new records can queue while these are being sent.
  std::vector<std::byte> take_output(std::vector<std::byte> spare);
  bool has_output() const noexcept;

  /// The facts tls answers (core/query.hpp). peer_certificate: not_supported when the
  /// peer sent none.
  result<std::string> alpn() const;
  result<certificate_info> peer_certificate() const;
  result<security_info> security() const;
  bool peer_verified() const noexcept;

 private:
  explicit session(std::unique_ptr<detail::session_impl> impl) noexcept;
  std::unique_ptr<detail::session_impl> impl_;
};

/// stream is a TLS connection over the byte stream `Lower`, which it owns; the contract is
/// core/stream.hpp's byte_stream. Made by tls::connect and tls::accept, which run the
/// handshake. Not thread-safe; one read_some and one write may be pending at the same
/// time (from different tasks).
template <class Lower>
requires stacks_on<Lower, layer> && byte_stream<Lower>
class stream {
 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, row);

  stream(Lower lower, session s) : lower_(std::move(lower)), session_(std::move(s)) {}
  stream(stream&&) noexcept = default;
  stream& operator=(stream&&) noexcept = default;

  /// read_some returns decrypted bytes. Errors: end_of_stream after the peer's
  /// close_notify, truncated when the lower stream ended without one, tls::error codes
  /// for bad records, the lower layer's errors; closed after close or detach.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) {
    if (closed_) co_return errc::closed;
    if (buf.empty()) co_return std::size_t{0};
    if (read_error_) co_return unexpected(read_error_);
    for (;;) {
      auto n = session_.read(buf);
      if (!n) {
        if (n.error() != errc::end_of_stream) read_error_ = n.error();
        co_return unexpected(n.error());
      }
      if (*n > 0) co_return *n;
      // Records our reading produced (a key update's answer) leave before we wait for
      // more; the flush also bounds them, since no input is taken while it runs.
      if (session_.has_output()) {
        auto sent = co_await flush(dl);
        if (!sent && (sent.error() == errc::timed_out || sent.error() == errc::operation_canceled)) {
          co_return unexpected(sent.error());
        }
      }
      auto more = co_await fill(dl);
      if (!more) co_return unexpected(more.error());
    }
  }

  /// write encrypts the gather list into whole records and sends them; it returns when
  /// the lower layer took every byte. Errors: closed after shutdown_write, close or
  /// detach; the lower layer's write errors (a write that failed midway fails the
  /// direction for good).
  task<result<void>> write(const_buffers bufs, deadline dl) {
    if (closed_) co_return errc::closed;
    if (write_error_) co_return unexpected(write_error_);
    auto parts = bufs.view();
    std::size_t offset = 0;
    std::size_t total = 0;
    for (auto p : parts) total += p.size();
    do {
      // At most write_batch bytes become records before they are sent: a large write
      // needs no ciphertext buffer of its own size. While nothing waits to be sent, a
      // lower layer that can write without waiting takes each record as OpenSSL makes
      // it (no copy, no coroutine); what it has no room for is sent by flush.
      auto sealed = direct_ok() ? session_.encrypt(parts, offset, write_batch, direct_sink())
                                : session_.encrypt(parts, offset, write_batch);
      if (!sealed) co_return unexpected(sealed.error());
      if (session_.has_output() || flushing_) {
        auto sent = co_await flush(dl);
        if (!sent) co_return unexpected(sent.error());
      }
    } while (offset < total);
    co_return result<void>{};
  }

  /// shutdown_write sends close_notify, then ends the lower stream's write direction:
  /// the peer reads end_of_stream after our last byte and may go on sending (TLS 1.3
  /// half-close). Nothing can follow on any layer, so a peer whose close waits for our
  /// end is not kept waiting (to continue in plaintext, use detach instead).
  task<result<void>> shutdown_write(deadline dl) {
    if (closed_) co_return errc::closed;
    session_.close_notify();
    auto sent = co_await flush(dl);
    if (!sent) co_return sent;
    co_return co_await lower_.shutdown_write(dl);
  }

  /// close sends close_notify (when not sent yet), then closes the lower layer, which
  /// drops what the peer still sends until its end or `dl`.
  task<result<void>> close(deadline dl) {
    if (closed_) co_return errc::closed;
    closed_ = true;
    if (!write_error_ && !session_.sent_close_notify()) {
      session_.close_notify();
      (void)co_await flush(dl);
    }
    co_return co_await lower_.close(dl);
  }

  /// detach ends TLS and hands back the lower stream with the bytes that followed the
  /// peer's close_notify, so plaintext goes on (a STARTTLS-style downgrade). It sends
  /// our close_notify if needed and reads until the peer's. Errors: protocol_error when
  /// application data arrives before the peer's close_notify (it would be lost),
  /// closed, the lower layer's errors. After it, every call fails with closed.
  task<result<detached<Lower>>> detach(deadline dl) {
    if (closed_) co_return errc::closed;
    if (!session_.sent_close_notify()) {
      session_.close_notify();
      auto sent = co_await flush(dl);
      if (!sent) co_return unexpected(sent.error());
    }
    std::byte scratch[1];
    while (!session_.received_close_notify()) {
      auto n = session_.read(mutable_buffer(scratch, 1));
      if (!n && n.error() != errc::end_of_stream) co_return unexpected(n.error());
      if (n && *n > 0) co_return errc::protocol_error;
      if (n) {
        auto more = co_await fill(dl);
        if (!more) co_return unexpected(more.error());
      }
    }
    closed_ = true;
    co_return detached<Lower>{std::move(lower_), session_.take_unread_input()};
  }

  /// next_layer is the stream below (facts tls does not know are asked there).
  const Lower& next_layer() const noexcept { return lower_; }
  Lower& next_layer() noexcept { return lower_; }

  using answers = fact_list<fact::alpn, fact::peer_certificate, fact::secure_session>;
  result<std::string> query(fact::alpn) const { return session_.alpn(); }
  result<certificate_info> query(fact::peer_certificate) const { return session_.peer_certificate(); }
  result<security_info> query(fact::secure_session) const { return session_.security(); }

  /// runtime_capabilities: the stack below plus tls; authenticated only when the peer
  /// was verified.
  properties runtime_capabilities() const {
    properties below = Lower::capabilities;
    if constexpr (requires { lower_.runtime_capabilities(); }) below = lower_.runtime_capabilities();
    auto out = stack_on(below, row);
    out.authenticated = session_.peer_verified();
    return out;
  }

  session& engine() noexcept { return session_; }

 private:
  static constexpr std::size_t write_batch = 256 * 1024;
  static constexpr std::size_t keep_output = 64 * 1024;
  static constexpr std::chrono::milliseconds idle_grace{50};
  static constexpr std::size_t wake_read = 64;
  static constexpr std::size_t record_room = 18 * 1024;  // a record, its header and expansion

  /// fill reads the lower stream into the session's input. While records keep coming the
  /// input buffer is kept and read into; after idle_grace without a byte it is freed and
  /// a small read does the waiting, so an idle connection holds no input buffer (the
  /// framing adapters do the same).
  task<result<void>> fill(deadline dl) {
    if (session_.input_capacity() != 0) {
      auto until = deadline::earlier(dl, deadline::after(idle_grace));
      // As the framing adapters: a buffering layer below flushes before it waits, and a
      // flush cut short by the grace part-way would break the write direction.
      if (strata::detail::output_pending(lower_)) until = dl;
      auto n = co_await lower_.read_some(session_.input_space(), until);
      if (n || n.error() != errc::timed_out || until == dl) co_return took(n);
      session_.release_input();
    }
    std::array<std::byte, wake_read> first;
    auto n = co_await lower_.read_some(mutable_buffer(first), dl);
    if (!n) co_return took(n);
    // A full small read means a record is arriving: room for a whole one.
    auto space = session_.input_space(*n == first.size() ? record_room : *n);
    std::memcpy(space.data(), first.data(), *n);
    session_.commit_input(*n);
    co_return result<void>{};
  }

  /// direct_ok: records may go straight to the lower layer (it can write without
  /// waiting, and no earlier record waits to be sent or is being sent).
  bool direct_ok() const noexcept {
    if constexpr (detail::writes_without_waiting<Lower>) {
      return !flushing_ && !write_error_ && !session_.has_output();
    } else {
      return false;
    }
  }
  record_sink direct_sink() noexcept {
    record_sink sink;
    sink.context = &lower_;
    sink.write = [](void* lower, const_buffer bytes) noexcept -> std::size_t {
      if constexpr (detail::writes_without_waiting<Lower>) {
        auto n = static_cast<Lower*>(lower)->try_write_some(bytes);
        return n ? *n : 0;  // an error comes back from the write of what is left
      } else {
        return 0;
      }
    };
    return sink;
  }

  /// took records what a read of the lower stream brought into the session.
  result<void> took(const result<std::size_t>& n) {
    if (!n) {
      if (n.error() == errc::end_of_stream) {
        session_.end_input();
        return result<void>{};
      }
      if (n.error() != errc::timed_out && n.error() != errc::operation_canceled) read_error_ = n.error();
      return unexpected(n.error());
    }
    session_.commit_input(*n);
    return result<void>{};
  }

  /// flush sends the pending records. When another task is already sending, it waits
  /// for that send and then sends what remains, so it returns only after every record
  /// pending at its call left.
  task<result<void>> flush(deadline dl) {
    while (session_.has_output()) {
      if (write_error_) co_return unexpected(write_error_);
      if (flushing_) {
        auto waited = co_await flushed_->wait(dl);
        if (!waited) co_return unexpected(waited.error());
        continue;
      }
      flushing_ = true;
      flushed_->reset();
      sending_ = session_.take_output(std::move(sending_));
      auto sent = co_await lower_.write(const_buffers(const_buffer(sending_.data(), sending_.size())), dl);
      flushing_ = false;
      flushed_->set();
      if (!sent) {
        write_error_ = sent.error();
        co_return unexpected(sent.error());
      }
    }
    // A large write grew the record buffers: give them back (bulk writes of a record or
    // two keep theirs).
    if (!flushing_) {
      if (sending_.capacity() > keep_output) std::vector<std::byte>().swap(sending_);
      session_.trim_output(keep_output);
    }
    co_return result<void>{};
  }

  Lower lower_;
  session session_;
  std::vector<std::byte> sending_;
  // An event cannot move; the stream can (it lives in any_stream, in results).
  std::unique_ptr<event> flushed_ = std::make_unique<event>();
  std::error_code read_error_{};
  std::error_code write_error_{};
  bool flushing_ = false;
  bool closed_ = false;
};

namespace detail {

/// run_handshake drives `s` over `lower` until the handshake completes or fails.
template <class Lower>
task<result<void>> run_handshake(Lower& lower, session& s, deadline dl) {
  std::vector<std::byte> sending;
  for (;;) {
    auto step = s.handshake();
    if (s.has_output()) {
      sending = s.take_output(std::move(sending));
      auto sent = co_await lower.write(const_buffers(const_buffer(sending.data(), sending.size())), dl);
      // A peer that refused us usually said why in an alert before hanging up: that
      // alert is the better error.
      if (!sent && step) co_return unexpected(sent.error());
    }
    if (!step) co_return unexpected(step.error());
    if (*step == want::nothing) {
      // A buffering layer below may hold the last flight (a client's Finished), which
      // the peer's handshake waits for while this side may read nothing for long.
      if (strata::detail::output_pending(lower)) {
        auto flushed = co_await strata::flush(lower, dl);
        if (!flushed) co_return unexpected(flushed.error());
      }
      // The connection may now sit idle for long: its first read waits with a small
      // buffer (tls::stream::fill), not this one.
      s.release_input();
      co_return result<void>{};
    }
    auto n = co_await lower.read_some(s.input_space(), dl);
    if (!n) {
      if (n.error() != errc::end_of_stream) co_return unexpected(n.error());
      s.end_input();
      continue;  // the session reports closed_in_handshake (or the alert that came first)
    }
    s.commit_input(*n);
  }
}

/// peer_ip_of is the lower stack's peer IP address as text, or empty.
template <class Lower>
std::string peer_ip_of(const Lower& lower) {
  auto peer = query<fact::peer_address>(lower);
  if (!peer) return {};
  return peer->host_text();
}

/// secured runs the handshake of session `s` over `lower` (closed on failure).
template <class Lower>
task<result<stream<Lower>>> secured(result<session> s, Lower lower, deadline dl) {
  if (!s) {
    (void)co_await lower.close(dl);
    co_return unexpected(s.error());
  }
  auto done = co_await run_handshake(lower, *s, dl);
  if (!done) {
    (void)co_await lower.close(dl);
    co_return unexpected(done.error());
  }
  co_return stream<Lower>(std::move(lower), std::move(*s));
}

}  // namespace detail

/// connect runs a client handshake over `lower` (which it owns: closed on failure) and
/// returns the TLS stream. Errors: tls::error codes, timed_out, the lower layer's errors.
template <class Lower>
requires stacks_on<Lower, layer> && byte_stream<Lower> task<result<stream<Lower>>> connect(
    Lower lower, context ctx, client_options options, deadline dl) {
  auto s = session::client(ctx, options, detail::peer_ip_of(lower));
  return detail::secured(std::move(s), std::move(lower), dl);
}

/// accept runs a server handshake over `lower` (closed on failure).
template <class Lower>
requires stacks_on<Lower, layer> && byte_stream<Lower> task<result<stream<Lower>>> accept(Lower lower,
                                                                                          context ctx,
                                                                                          deadline dl) {
  return detail::secured(session::server(ctx), std::move(lower), dl);
}

extern template class stream<any_stream>;

}  // namespace strata::tls

template <>
struct std::is_error_code_enum<strata::tls::error> : std::true_type {};
