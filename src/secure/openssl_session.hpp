// The OpenSSL machinery tls and dtls share (private to src/secure): contexts, the
// per-connection session state with the BIO that joins OpenSSL to its buffers, the
// mapping of OpenSSL's errors to tls::error, and the facts a session answers.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "strata/secure/tls.hpp"

namespace strata::tls::detail {

template <class T, void (*Free)(T*)>
struct openssl_deleter {
  void operator()(T* p) const noexcept { Free(p); }
};
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO, BIO_free_all>>;

inline void free_x509_stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), openssl_deleter<STACK_OF(X509), free_x509_stack>>;

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
  bool datagram = false;              // a DTLS context
  unsigned char cookie_secret[32]{};  // a DTLS server's cookie key
  std::vector<std::string> alpn;      // a server's choices, in preference order
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
  // Where records go first while encrypt (stream mode) or seal (datagram mode) runs with a
  // sink.
  record_sink sink{};

  // Datagram mode (dtls): one BIO read takes one whole datagram, one BIO write makes one.
  // Behind a pointer: a tls session pays nothing for it (two empty deques are 160 bytes
  // and allocate their maps: 1.4 KB per idle connection, bench/tls.cpp).
  struct datagram_state {
    /// received is one datagram from the peer: `size` bytes of a buffer of `capacity`
    /// (not zero-filled: a receive buffer is written before it is read).
    struct received {
      std::unique_ptr<std::byte[]> bytes;
      std::size_t size = 0;
      std::size_t capacity = 0;
    };
    std::deque<received> in;
    std::deque<std::vector<std::byte>> out;
    // The receive buffer (input_space/commit_input): lent to the lower layer's receive,
    // then queued whole as the datagram, and back here once OpenSSL has read it, so a
    // datagram is received straight into the buffer OpenSSL reads it from.
    received rx;
    // Buffers of datagrams already sent, kept for the next ones so that a datagram costs
    // no allocation: none larger than the largest record with its header and a
    // worst-case expansion (what a sane MTU carries).
    std::vector<std::vector<std::byte>> spare;
    static constexpr std::size_t spare_count = 2;
    static constexpr std::size_t spare_capacity = 16384 + 2048;
    std::string cookie_peer;           // a server's: the peer address its cookies are bound to
    unsigned retransmit_us = 1000000;  // the first retransmission timeout
    bool listening = false;            // a server's, until a ClientHello brought a valid cookie
    std::size_t max_payload = 0;       // once the handshake is done (the MTU and suite are fixed)

    /// take is a buffer holding a copy of `n` bytes at `bytes`: a spare one if any.
    std::vector<std::byte> take(const std::byte* bytes, std::size_t n) {
      if (spare.empty()) return std::vector<std::byte>(bytes, bytes + n);
      auto buffer = std::move(spare.back());
      spare.pop_back();
      buffer.assign(bytes, bytes + n);
      return buffer;
    }
    /// give_back keeps `buffer` for a later take, or frees it.
    void give_back(std::vector<std::byte>&& buffer) noexcept {
      if (spare.size() < spare_count && buffer.capacity() <= spare_capacity)
        spare.push_back(std::move(buffer));
    }
    /// receive_buffer makes rx at least `n` bytes large (its contents are not kept).
    void receive_buffer(std::size_t n) {
      if (rx.capacity >= n) return;
      rx.bytes.reset(new std::byte[n]);  // default-initialised: no zero fill
      rx.capacity = n;
    }
    /// give_back_received keeps a datagram's buffer that OpenSSL has read as the next
    /// receive buffer when there is none, or frees it.
    void give_back_received(received&& r) noexcept {
      if (!rx.bytes) rx = std::move(r);
    }
  };
  std::unique_ptr<datagram_state> datagram;

  bool handshake_done = false;
  bool sent_close = false;
  bool received_close = false;
  std::error_code read_failure{};

  ~session_impl() { SSL_free(ssl); }

  std::error_code failure(int ssl_error, bool in_handshake);
  /// handshake_step runs SSL_do_handshake once over what was fed (tls and dtls alike).
  result<want> handshake_step();
  /// queue_close_notify queues the alert that ends our direction, once.
  void queue_close_notify();
};

/// clear_errors empties the thread's OpenSSL error queue, as every SSL call whose outcome
/// SSL_get_error reads needs. ERR_clear_error resets all 16 slots of the queue each time
/// (~100 ns, once per record: bench/dtls.cpp); the queue is almost always empty
/// already, which ERR_peek_error tells for much less.
inline void clear_errors() noexcept {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

/// make_context builds a TLS (datagram: DTLS 1.2) context for one side.
result<context> make_context(const context_options& options, bool server, bool datagram, std::string* why);

/// new_session makes the per-connection state for `ctx`, joined to its BIO.
result<std::unique_ptr<session_impl>> new_session(const context& ctx);

/// set_client_identity sends SNI and sets what a client verifies (the server name, else
/// `peer_ip`), and offers a cached session. Errors: no_server_name.
result<void> set_client_identity(session_impl& s, const context& ctx, const client_options& options,
                                 std::string_view peer_ip);

/// The facts a finished handshake answers.
result<std::string> alpn_of(const session_impl* s);
result<certificate_info> peer_certificate_of(const session_impl* s);
result<security_info> security_of(const session_impl* s);
bool peer_verified_of(const session_impl* s) noexcept;

}  // namespace strata::tls::detail
