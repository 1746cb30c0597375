// dtls: DTLS 1.2 on one machine — message goodput and handshakes — strata's
// dtls::connection next to raw OpenSSL DTLS doing the same in the same run, over the same
// kind of socket, with the same certificate, cipher suite and MTU.
//
//   bulk       messages one way (the client sends, the server receives) over a connected
//              UDP socket pair on 127.0.0.1 (MTU 1200) and over a unix datagram
//              socketpair (MTU 1200 and 8000), each with 1 KiB messages and with messages
//              of max_message() (all one record carries within the MTU). strata:
//              dtls::connection<udp::connected> / <unix_dgram::connected>, client and
//              server each on its own thread with its own strata::run. raw: two plain
//              threads, blocking sockets, OpenSSL's datagram BIO (BIO_new_dgram,
//              connected), SSL_write_ex / SSL_read_ex.
//              Flow control, the same for both (UDP drops what a receiver that falls
//              behind has no room for): the client sends a window of --window messages,
//              then waits for the server application's ack of that window (a 9-byte
//              message, sent when the window's last message arrives); an ack not there
//              after 20 ms draws a probe, which the server answers with an ack, so a lost
//              datagram costs a probe instead of a stall. A sample is one round: a fresh
//              association carrying --round messages; goodput = messages the server
//              received / time from the client's first send to its last ack; rounds
//              alternate raw and strata. Every message carries its index and size, checked
//              by both receivers (out of order, repeated or corrupt exits 1); the messages
//              lost and the probes sent are reported.
//   handshake  full DTLS 1.2 handshakes (no resumption) over fresh connected UDP socket
//              pairs, one at a time, with the cookie exchange (HelloVerifyRequest) on both
//              servers: strata's dtls::accept always asks for a cookie; the raw server has
//              SSL_OP_COOKIE_EXCHANGE with callbacks that, as strata's, HMAC-SHA256 the
//              peer's address under a random key. Latency: per handshake, from before the
//              client's SSL object is made to its handshake done. Rate: per batch
//              (batches alternate). The socket pairs of a batch are made before it.
//
// Placement: see pin_mode in openssl_common.hpp (default: both threads on one CPU).
//
// The raw contexts are configured as strata's (make_context in
// src/secure/openssl_session.cpp): DTLS 1.2 only, no renegotiation, no compression,
// server cipher preference, SSL_MODE_RELEASE_BUFFERS, SSL_OP_NO_QUERY_MTU and the MTU set
// with SSL_set_mtu, the same first retransmission timeout (1 s, doubling); tickets off;
// the client verifies the server's certificate and the name "localhost" (SNI sent) as
// strata's does. The certificate is an ECDSA P-256 key and a self-signed certificate made
// at startup by tls::self_signed, the same for both.
//
// The cipher suite: DTLS 1.2 takes TLS 1.2's cipher list, which strata's context_options
// do not set; this program chooses it for the whole process through an OpenSSL
// configuration (CipherString in the system_default section) loaded before anything else
// uses OpenSSL, so strata's contexts and the raw ones get it alike. --cipher default leaves
// OpenSSL's own list (ECDHE-ECDSA-AES256-GCM-SHA384 first for this key). Both ends report
// the suite they negotiated; a mismatch between strata and raw exits 1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "openssl_common.hpp"
#include "strata/runtime.hpp"
#include "strata/secure/dtls.hpp"
#include "strata/transport/udp.hpp"
#include "strata/transport/unix_dgram.hpp"

namespace {

using bench::clock;
using bench::ns_between;
using bench::openssl::compare;
using bench::openssl::contexts;
using bench::openssl::die;
using bench::openssl::die_ec;
using bench::openssl::die_errno;
using bench::openssl::die_ssl;
using bench::openssl::handshake_batch;
using bench::openssl::pin_server;
using bench::openssl::pki;
using bench::openssl::raw_context;
using namespace std::chrono_literals;
namespace tls = strata::tls;
namespace dtls = strata::dtls;

constexpr const char* server_name = "localhost";
constexpr std::size_t receive_size = 16384;  // both receivers' buffer: any record fits
constexpr auto probe_after = 20ms;           // a sender's wait for an ack before it probes
constexpr auto stall_after = 2s;             // a receiver's wait before it gives up

// -- contexts ------------------------------------------------------------------------

// The raw server's cookie key (strata's contexts keep their own).
unsigned char cookie_secret[32];

/// raw_cookie is HMAC-SHA256 of the peer's address under cookie_secret, as strata's
/// cookie_mac (which uses the address as text).
bool raw_cookie(SSL* ssl, unsigned char* out, unsigned int* out_len) {
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (::getpeername(SSL_get_fd(ssl), reinterpret_cast<sockaddr*>(&peer), &len) < 0) return false;
  return HMAC(EVP_sha256(), cookie_secret, sizeof cookie_secret,
              reinterpret_cast<const unsigned char*>(&peer), len, out, out_len) != nullptr;
}
int generate_cookie(SSL* ssl, unsigned char* cookie, unsigned int* len) {
  return raw_cookie(ssl, cookie, len);
}
int verify_cookie(SSL* ssl, const unsigned char* cookie, unsigned int len) {
  unsigned char expected[EVP_MAX_MD_SIZE];
  unsigned int expected_len = 0;
  if (!raw_cookie(ssl, expected, &expected_len)) return 0;
  return expected_len == len && CRYPTO_memcmp(expected, cookie, len) == 0 ? 1 : 0;
}

std::unique_ptr<contexts> make_contexts(const pki& p) {
  auto c = std::make_unique<contexts>();
  tls::context_options server_options;
  server_options.certificates.push_back(tls::credential{.cert_pem = p.cert_pem, .key_pem = p.key_pem});
  server_options.session_tickets = false;
  tls::context_options client_options;
  client_options.ca_pem = p.cert_pem;
  client_options.session_tickets = false;
  std::string why;
  auto server = dtls::server_context(server_options, &why);
  if (!server) die("strata server context: " + why);
  auto client = dtls::client_context(client_options, &why);
  if (!client) die("strata client context: " + why);
  c->strata_server = *server;
  c->strata_client = *client;

  if (RAND_bytes(cookie_secret, sizeof cookie_secret) != 1) die_ssl("RAND_bytes");
  c->raw_server = raw_context(true, DTLS_server_method(), DTLS1_2_VERSION,
                              SSL_OP_NO_QUERY_MTU | SSL_OP_COOKIE_EXCHANGE, p);
  SSL_CTX_set_cookie_generate_cb(c->raw_server, generate_cookie);
  SSL_CTX_set_cookie_verify_cb(c->raw_server, verify_cookie);
  c->raw_client = raw_context(false, DTLS_client_method(), DTLS1_2_VERSION, SSL_OP_NO_QUERY_MTU, p);
  return c;
}

/// raw_ssl is an SSL on the connected datagram socket `fd` through OpenSSL's datagram
/// BIO, with the link's MTU; a client sends SNI and verifies "localhost" as strata's does.
SSL* raw_ssl(SSL_CTX* ctx, int fd, bool client, std::size_t mtu) {
  SSL* ssl = SSL_new(ctx);
  BIO* bio = BIO_new_dgram(fd, BIO_NOCLOSE);
  if (!ssl || !bio) die_ssl("SSL_new / BIO_new_dgram");
  // A connected BIO writes with write(2) and takes the peer as given.
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) < 0) die_errno("getpeername");
  BIO_ADDR* addr = BIO_ADDR_new();
  if (peer.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(peer);
    BIO_ADDR_rawmake(addr, AF_INET, &in.sin_addr, sizeof in.sin_addr, in.sin_port);
  } else {
    BIO_ADDR_rawmake(addr, AF_UNIX, "", 0, 0);
  }
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, addr);
  BIO_ADDR_free(addr);
  SSL_set_bio(ssl, bio, bio);
  if (SSL_set_mtu(ssl, static_cast<long>(mtu)) <= 0) die_ssl("SSL_set_mtu");  // it returns the MTU
  if (client) {
    SSL_set_tlsext_host_name(ssl, server_name);
    X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(ssl), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, server_name) != 1) die_ssl("SSL_set1_host");
  }
  return ssl;
}

/// set_receive_timeout bounds each blocking read of a raw SSL (BIO_dgram's SO_RCVTIMEO):
/// a read that times out reports SSL_ERROR_WANT_READ.
void set_receive_timeout(SSL* ssl, std::chrono::microseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000000), static_cast<suseconds_t>(t.count() % 1000000)};
  BIO_ctrl(SSL_get_rbio(ssl), BIO_CTRL_DGRAM_SET_RECV_TIMEOUT, 0, &tv);
}

// The suites the two implementations negotiated, and the largest message each could
// send in each MTU; they must agree.
std::string strata_suite;
std::string raw_suite;

void note_raw(SSL* ssl) {
  if (raw_suite.empty()) raw_suite = SSL_CIPHER_standard_name(SSL_get_current_cipher(ssl));
}
template <class Connection>
void note_strata(const Connection& c) {
  if (!strata_suite.empty()) return;
  auto info = c.query(strata::fact::secure_session{});
  if (!info) die_ec("secure_session", info.error());
  strata_suite = info->cipher;
  if (info->version != "DTLSv1.2") die("strata negotiated " + info->version);
}

// -- sockets ---------------------------------------------------------------------------

enum class transport { udp, unix_dgram };

const char* transport_name(transport t) { return t == transport::udp ? "udp" : "unix"; }

/// raw_pair is two connected datagram sockets (blocking): client end first.
std::pair<int, int> raw_pair(transport t) {
  if (t == transport::unix_dgram) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) die_errno("socketpair");
    return {sv[0], sv[1]};
  }
  int fd[2];
  sockaddr_in sa[2]{};
  for (int i = 0; i < 2; ++i) {
    fd[i] = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sa[i].sin_family = AF_INET;
    sa[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa[i];
    if (fd[i] < 0 || ::bind(fd[i], reinterpret_cast<sockaddr*>(&sa[i]), len) < 0 ||
        ::getsockname(fd[i], reinterpret_cast<sockaddr*>(&sa[i]), &len) < 0) {
      die_errno("udp socket");
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (::connect(fd[i], reinterpret_cast<sockaddr*>(&sa[1 - i]), sizeof sa[1 - i]) < 0)
      die_errno("udp connect");
  }
  return {fd[0], fd[1]};
}

std::pair<strata::udp::connected, strata::udp::connected> strata_udp_pair() {
  auto a = strata::udp::socket::bind("127.0.0.1:0");
  auto b = strata::udp::socket::bind("127.0.0.1:0");
  if (!a || !b) die_ec("udp::socket::bind", a ? b.error() : a.error());
  auto a_at = a->local_address();
  auto b_at = b->local_address();
  auto ca = std::move(*a).connect(*b_at);
  auto cb = std::move(*b).connect(*a_at);
  if (!ca || !cb) die_ec("udp connect", ca ? cb.error() : ca.error());
  return {std::move(*ca), std::move(*cb)};
}

std::pair<strata::unix_dgram::connected, strata::unix_dgram::connected> strata_unix_pair() {
  auto p = strata::unix_dgram::connected::pair();
  if (!p) die_ec("unix_dgram::connected::pair", p.error());
  return std::move(*p);
}

// -- bulk ------------------------------------------------------------------------------

/// plan is one round's traffic: `count` messages of `size` bytes (0: max_message(),
/// which each end reads from its own association) in windows of `window`.
struct plan {
  std::size_t size = 0;
  std::uint64_t count = 0;
  std::uint64_t window = 32;
};

// Every message starts with its kind and a number: data (its index; the message's last
// byte is the index's low byte), ack and probe (a window), done.
enum class kind : std::uint8_t { data = 1, probe = 2, ack = 3, done = 4 };
constexpr std::size_t header = 9;

void stamp(std::byte* m, kind k, std::uint64_t value) {
  m[0] = static_cast<std::byte>(k);
  std::memcpy(m + 1, &value, sizeof value);
}
/// stamp_data makes `m` (`size` bytes) data message `index`.
void stamp_data(std::byte* m, std::size_t size, std::uint64_t index) {
  stamp(m, kind::data, index);
  m[size - 1] = static_cast<std::byte>(index & 0xff);
}
std::uint64_t number_of(const std::byte* m) {
  std::uint64_t v;
  std::memcpy(&v, m + 1, sizeof v);
  return v;
}

/// receiver checks each message a server receives and says what to answer: the same
/// logic for strata and raw.
struct receiver {
  receiver(const plan& round, std::size_t message_size, const char* name)
      : p(round), size(message_size), who(name) {}

  plan p;
  std::size_t size;  // the resolved message size
  const char* who;
  std::uint64_t received = 0;
  std::uint64_t next_index = 0;  // the lowest index still acceptable
  bool finished = false;         // the sender said done
  std::byte reply[header]{};

  /// take returns the size of the reply to send (0: none).
  std::size_t take(const std::byte* m, std::size_t n) {
    if (n < header) die(std::string(who) + ": a short message");
    auto v = number_of(m);
    switch (static_cast<kind>(m[0])) {
      case kind::data:
        if (n != size || v < next_index || v >= p.count || m[n - 1] != static_cast<std::byte>(v & 0xff)) {
          die(std::string(who) + ": a message out of order, repeated or corrupt");
        }
        next_index = v + 1;
        ++received;
        if (v % p.window != p.window - 1 && v + 1 != p.count) return 0;
        stamp(reply, kind::ack, v / p.window);  // the window's last message
        return header;
      case kind::probe:
        stamp(reply, kind::ack, v);  // the window probed
        return header;
      case kind::done:
        finished = true;
        return 0;
      default:
        die(std::string(who) + ": an unknown message");
    }
  }
  /// may_end: may a receive that timed out end the round? Only once every window was
  /// acked (the done message was lost).
  bool may_end() const { return next_index == p.count; }
};

bool is_ack_for(const std::byte* m, std::size_t n, std::uint64_t window) {
  return n == header && static_cast<kind>(m[0]) == kind::ack && number_of(m) >= window;
}

/// context_switches is how often the calling thread has given up its CPU, voluntarily
/// (it waited) or not (it was preempted).
double context_switches() {
  rusage u{};
  ::getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_nvcsw + u.ru_nivcsw);
}

// mark is what one side reports: when it started and finished, its thread's CPU time and
// context switches in its loop.
struct mark {
  clock::time_point start, end;
  double cpu_ns = 0;
  double switches = 0;
  std::uint64_t probes = 0;    // client
  std::uint64_t received = 0;  // server
};

void begin(mark& m) {
  m.start = clock::now();
  m.cpu_ns = bench::thread_cpu_ns();
  m.switches = context_switches();
}
void finish(mark& m) {
  m.end = clock::now();
  m.cpu_ns = bench::thread_cpu_ns() - m.cpu_ns;
  m.switches = context_switches() - m.switches;
}

struct bulk_outcome {
  double msg_per_s = 0;
  double mb_per_s = 0;
  double cpu_ns_per_msg = 0;    // client + server thread
  double switches_per_msg = 0;  // client + server thread
  std::uint64_t lost = 0;
  std::uint64_t probes = 0;
};

std::size_t max_strata = 0;  // max_message() of the last round, strata and raw
std::size_t max_raw = 0;

bulk_outcome combine(const plan& p, std::size_t size, const mark& client, const mark& server) {
  bulk_outcome out;
  double seconds = ns_between(client.start, client.end) / 1e9;
  auto got = static_cast<double>(server.received);
  out.msg_per_s = got / seconds;
  out.mb_per_s = got * static_cast<double>(size) / 1e6 / seconds;
  out.cpu_ns_per_msg = (client.cpu_ns + server.cpu_ns) / std::max(got, 1.0);
  out.switches_per_msg = (client.switches + server.switches) / std::max(got, 1.0);
  out.lost = p.count - server.received;
  out.probes = client.probes;
  return out;
}

void raw_write(SSL* ssl, const std::byte* m, std::size_t n) {
  std::size_t written = 0;
  if (SSL_write_ex(ssl, m, n, &written) != 1 || written != n) die_ssl("SSL_write_ex");
}

/// raw_read is the size of the next message, or 0 when the read timed out.
std::size_t raw_read(SSL* ssl, std::byte* buf) {
  std::size_t n = 0;
  int r = SSL_read_ex(ssl, buf, receive_size, &n);
  if (r == 1) return n;
  if (SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ) {
    ERR_clear_error();
    return 0;
  }
  die_ssl("SSL_read_ex");
}

mark raw_send(SSL* ssl, const plan& p, std::size_t& size) {
  if (SSL_connect(ssl) != 1) die_ssl("SSL_connect");
  note_raw(ssl);
  max_raw = DTLS_get_data_mtu(ssl);
  size = p.size ? p.size : max_raw;
  set_receive_timeout(ssl, probe_after);
  std::vector<std::byte> msg(size, std::byte{0x5a});
  std::vector<std::byte> in(receive_size);
  mark m;
  begin(m);
  for (std::uint64_t w = 0; w * p.window < p.count; ++w) {
    for (std::uint64_t i = w * p.window; i < std::min(p.count, (w + 1) * p.window); ++i) {
      stamp_data(msg.data(), size, i);
      raw_write(ssl, msg.data(), size);
    }
    for (;;) {
      std::size_t n = raw_read(ssl, in.data());
      if (n > 0 && is_ack_for(in.data(), n, w)) break;
      if (n > 0) continue;
      std::byte probe[header];
      stamp(probe, kind::probe, w);
      raw_write(ssl, probe, header);
      ++m.probes;
    }
  }
  finish(m);
  std::byte done[header];
  stamp(done, kind::done, 0);
  raw_write(ssl, done, header);
  return m;
}

mark raw_receive(SSL* ssl, const plan& p) {
  if (SSL_accept(ssl) != 1) die_ssl("SSL_accept");
  set_receive_timeout(ssl, stall_after);
  receiver r(p, p.size ? p.size : DTLS_get_data_mtu(ssl), "raw");
  std::vector<std::byte> in(receive_size);
  mark m;
  begin(m);
  while (!r.finished) {
    std::size_t n = raw_read(ssl, in.data());
    if (n == 0) {
      if (r.may_end()) break;
      die("raw: the sender went silent");
    }
    if (std::size_t reply = r.take(in.data(), n)) raw_write(ssl, r.reply, reply);
  }
  finish(m);
  m.received = r.received;
  return m;
}

bulk_outcome raw_bulk_round(const contexts& c, transport t, std::size_t mtu, const plan& p) {
  auto [client_fd, server_fd] = raw_pair(t);
  SSL* client = raw_ssl(c.raw_client, client_fd, true, mtu);
  SSL* server = raw_ssl(c.raw_server, server_fd, false, mtu);
  mark last;
  std::thread receiving([&] {
    pin_server();
    last = raw_receive(server, p);
  });
  std::size_t size = 0;
  auto first = raw_send(client, p, size);
  receiving.join();
  SSL_free(client);
  SSL_free(server);
  ::close(client_fd);
  ::close(server_fd);
  return combine(p, size, first, last);
}

template <class Lower>
strata::task<mark> strata_send(Lower lower, tls::context ctx, plan p, dtls::link_options link,
                               std::size_t& size) {
  tls::client_options to;
  to.server_name = server_name;
  auto dl = strata::deadline::after(10s);
  auto c = co_await dtls::connect(std::move(lower), std::move(ctx), to, dl, link);
  if (!c) die_ec("strata dtls::connect", c.error());
  note_strata(*c);
  max_strata = c->max_message();
  size = p.size ? p.size : max_strata;
  std::vector<std::byte> msg(size, std::byte{0x5a});
  std::vector<std::byte> in(receive_size);
  const strata::const_buffer whole(msg.data(), size);
  const strata::mutable_buffer space(in.data(), in.size());
  mark m;
  begin(m);
  for (std::uint64_t w = 0; w * p.window < p.count; ++w) {
    for (std::uint64_t i = w * p.window; i < std::min(p.count, (w + 1) * p.window); ++i) {
      stamp_data(msg.data(), size, i);
      auto sent = co_await c->send(whole, strata::deadline::never());
      if (!sent) die_ec("strata send", sent.error());
    }
    for (;;) {
      auto n = co_await c->recv(space, strata::deadline::after(probe_after));
      if (n && is_ack_for(in.data(), *n, w)) break;
      if (n) continue;
      if (n.error() != strata::errc::timed_out) die_ec("strata recv", n.error());
      std::byte probe[header];
      stamp(probe, kind::probe, w);
      auto sent = co_await c->send(strata::const_buffer(probe, header), strata::deadline::never());
      if (!sent) die_ec("strata send", sent.error());
      ++m.probes;
    }
  }
  finish(m);
  std::byte done[header];
  stamp(done, kind::done, 0);
  auto sent = co_await c->send(strata::const_buffer(done, header), strata::deadline::never());
  if (!sent) die_ec("strata send", sent.error());
  co_return m;
}

template <class Lower>
strata::task<mark> strata_receive(Lower lower, tls::context ctx, plan p, dtls::link_options link) {
  auto dl = strata::deadline::after(10s);
  auto c = co_await dtls::accept(std::move(lower), std::move(ctx), dl, link);
  if (!c) die_ec("strata dtls::accept", c.error());
  receiver r(p, p.size ? p.size : c->max_message(), "strata");
  std::vector<std::byte> in(receive_size);
  const strata::mutable_buffer space(in.data(), in.size());
  mark m;
  begin(m);
  while (!r.finished) {
    auto n = co_await c->recv(space, strata::deadline::after(stall_after));
    if (!n && n.error() == strata::errc::timed_out && r.may_end()) break;
    if (!n) die_ec("strata recv", n.error());
    if (std::size_t reply = r.take(in.data(), *n)) {
      auto sent = co_await c->send(strata::const_buffer(r.reply, reply), strata::deadline::never());
      if (!sent) die_ec("strata send", sent.error());
    }
  }
  finish(m);
  m.received = r.received;
  co_return m;
}

template <class Lower>
bulk_outcome strata_round_over(std::pair<Lower, Lower> ends, const contexts& c, std::size_t mtu,
                               const plan& p) {
  dtls::link_options link;
  link.mtu = mtu;
  mark last;
  std::thread receiving([&] {
    pin_server();
    last = strata::run(strata_receive(std::move(ends.second), c.strata_server, p, link));
  });
  std::size_t size = 0;
  auto first = strata::run(strata_send(std::move(ends.first), c.strata_client, p, link, size));
  receiving.join();
  return combine(p, size, first, last);
}

bulk_outcome strata_bulk_round(const contexts& c, transport t, std::size_t mtu, const plan& p) {
  if (t == transport::udp) return strata_round_over(strata_udp_pair(), c, mtu, p);
  return strata_round_over(strata_unix_pair(), c, mtu, p);
}

// -- handshakes --------------------------------------------------------------------------

handshake_batch raw_handshake_batch(const contexts& c, int count, std::size_t mtu) {
  std::vector<std::pair<int, int>> pairs;
  for (int i = 0; i < count; ++i) pairs.push_back(raw_pair(transport::udp));
  double server_cpu = 0;
  std::thread server([&] {
    pin_server();
    double cpu0 = bench::thread_cpu_ns();
    for (auto [client_fd, server_fd] : pairs) {
      SSL* ssl = raw_ssl(c.raw_server, server_fd, false, mtu);
      if (SSL_accept(ssl) != 1) die_ssl("SSL_accept");
      SSL_free(ssl);
      ::close(server_fd);
    }
    server_cpu = bench::thread_cpu_ns() - cpu0;
  });
  handshake_batch out;
  double cpu0 = bench::thread_cpu_ns();
  auto begin = clock::now();
  for (auto [client_fd, server_fd] : pairs) {
    auto t0 = clock::now();
    SSL* ssl = raw_ssl(c.raw_client, client_fd, true, mtu);
    if (SSL_connect(ssl) != 1) die_ssl("SSL_connect");
    out.latency_us.push_back(ns_between(t0, clock::now()) / 1e3);
    note_raw(ssl);
    SSL_free(ssl);
    ::close(client_fd);
  }
  double client_cpu = bench::thread_cpu_ns() - cpu0;
  server.join();
  return bench::openssl::finish_batch(std::move(out), count, begin, client_cpu, server_cpu);
}

using udp_ends = std::vector<strata::udp::connected>;

strata::task<void> strata_handshake_server(udp_ends ends, tls::context ctx, dtls::link_options link) {
  for (auto& lower : ends) {
    auto dl = strata::deadline::after(10s);
    auto s = co_await dtls::accept(std::move(lower), ctx, dl, link);
    if (!s) die_ec("strata dtls::accept", s.error());
  }
}

strata::task<void> strata_handshake_client(udp_ends ends, tls::context ctx, dtls::link_options link,
                                           std::vector<double>& out) {
  tls::client_options to;
  to.server_name = server_name;
  for (auto& lower : ends) {
    auto t0 = clock::now();
    auto dl = strata::deadline::after(10s);
    auto s = co_await dtls::connect(std::move(lower), ctx, to, dl, link);
    if (!s) die_ec("strata dtls::connect", s.error());
    out.push_back(ns_between(t0, clock::now()) / 1e3);
    note_strata(*s);
  }
}

handshake_batch strata_handshake_batch(const contexts& c, int count, std::size_t mtu) {
  udp_ends clients, servers;
  for (int i = 0; i < count; ++i) {
    auto [a, b] = strata_udp_pair();
    clients.push_back(std::move(a));
    servers.push_back(std::move(b));
  }
  dtls::link_options link;
  link.mtu = mtu;
  double server_cpu = 0;
  std::thread server([&] {
    pin_server();
    double cpu0 = bench::thread_cpu_ns();
    strata::run(strata_handshake_server(std::move(servers), c.strata_server, link));
    server_cpu = bench::thread_cpu_ns() - cpu0;
  });
  handshake_batch out;
  out.latency_us.reserve(static_cast<std::size_t>(count));
  double cpu0 = bench::thread_cpu_ns();
  auto begin = clock::now();
  strata::run(strata_handshake_client(std::move(clients), c.strata_client, link, out.latency_us));
  double client_cpu = bench::thread_cpu_ns() - cpu0;
  server.join();
  return bench::openssl::finish_batch(std::move(out), count, begin, client_cpu, server_cpu);
}

// -- main ----------------------------------------------------------------------------------

/// settings are the program's own options (the common ones are bench::options).
struct settings {
  std::uint64_t messages = 200000;  // per implementation and case
  std::uint64_t round = 10000;
  std::uint64_t window = 32;
  int handshakes = 1000;  // per implementation
  int batch = 50;
  std::string cipher = "ECDHE-ECDSA-AES128-GCM-SHA256";
};

const char* const usage_extra =
    " [--messages N] [--round N] [--window N] [--handshakes N] [--cipher NAME|default]"
    " [--pin split|same|none]";

settings parse_settings(int& argc, char** argv, bool quick) {
  settings s;
  if (quick) {
    s.messages = 4000;
    s.round = 1000;
    s.handshakes = 40;
    s.batch = 20;
  }
  for (bench::openssl::own_options o(argc, argv); o.next();) {
    const std::string& a = o.name();
    if (a == "--messages") {
      s.messages = o.number();
    } else if (a == "--round") {
      s.round = o.number();
    } else if (a == "--window") {
      s.window = o.number();
    } else if (a == "--handshakes") {
      s.handshakes = static_cast<int>(o.number());
    } else if (a == "--cipher") {
      s.cipher = o.value();
    } else {
      o.keep();
    }
  }
  s.round = std::min(s.round, s.messages);
  s.batch = std::min(s.batch, s.handshakes);
  return s;
}

/// bulk_case is one line of the bulk table.
struct bulk_case {
  transport t;
  std::size_t mtu;
  std::size_t size;  // 0: max_message()
};

std::string case_name(const bulk_case& bc) {
  return std::string(transport_name(bc.t)) + "_mtu" + std::to_string(bc.mtu) + "_" +
         (bc.size ? std::to_string(bc.size / 1024) + "KiB" : std::string("max"));
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) quick = quick || !std::strcmp(argv[i], "--quick");
  auto set = parse_settings(argc, argv, quick);
  auto opt = bench::parse_options(argc, argv, usage_extra);
  bench::openssl::program = "dtls";
  // The suite, before anything else touches OpenSSL.
  if (set.cipher != "default") bench::openssl::configure_ssl("CipherString = " + set.cipher);
  bench::openssl::setup_placement();
  bench::report rep("dtls", opt);
  const pki p = bench::openssl::make_pki(server_name);
  auto ctx = make_contexts(p);

  // Bulk: rounds of --round messages on fresh associations, raw and strata alternating.
  const bulk_case cases[] = {
      {transport::udp, 1200, 1024},        {transport::udp, 1200, 0},
      {transport::unix_dgram, 1200, 1024}, {transport::unix_dgram, 1200, 0},
      {transport::unix_dgram, 8000, 1024}, {transport::unix_dgram, 8000, 0},
  };
  std::string losses;
  std::string sizes;
  for (const auto& bc : cases) {
    const std::string name = case_name(bc);
    if (!rep.wanted(name)) continue;
    plan warm{bc.size, std::min<std::uint64_t>(set.round, 2000), set.window};
    (void)raw_bulk_round(*ctx, bc.t, bc.mtu, warm);
    (void)strata_bulk_round(*ctx, bc.t, bc.mtu, warm);
    if (max_raw != max_strata) {
      die("max_message at MTU " + std::to_string(bc.mtu) + ": strata " + std::to_string(max_strata) +
          ", raw " + std::to_string(max_raw));
    }
    if (bc.size == 0)
      sizes += (sizes.empty() ? "" : ", ") + std::to_string(bc.mtu) + " -> " + std::to_string(max_raw);
    const plan round{bc.size, set.round, set.window};
    const std::uint64_t rounds = std::max<std::uint64_t>(1, set.messages / set.round);
    std::vector<double> raw_rate, strata_rate, raw_mb, strata_mb, raw_cpu, strata_cpu, raw_sw, strata_sw;
    std::uint64_t lost[2] = {0, 0};
    std::uint64_t probes[2] = {0, 0};
    bench::openssl::alternate(rounds, [&](bool raw) {
      auto out =
          raw ? raw_bulk_round(*ctx, bc.t, bc.mtu, round) : strata_bulk_round(*ctx, bc.t, bc.mtu, round);
      (raw ? raw_rate : strata_rate).push_back(out.msg_per_s);
      (raw ? raw_mb : strata_mb).push_back(out.mb_per_s);
      (raw ? raw_cpu : strata_cpu).push_back(out.cpu_ns_per_msg);
      (raw ? raw_sw : strata_sw).push_back(out.switches_per_msg);
      lost[raw] += out.lost;
      probes[raw] += out.probes;
    });
    rep.add(compare(name, "msg/s", true, strata_rate, raw_rate));
    rep.add(compare(name + "_MBps", "MB/s", true, strata_mb, raw_mb));
    rep.add(compare(name + "_cpu", "cpu ns/msg", false, strata_cpu, raw_cpu));
    rep.add(compare(name + "_switches", "ctxsw/msg", false, strata_sw, raw_sw));
    losses += (losses.empty() ? "" : "; ") + name + " " + std::to_string(lost[0]) + "/" +
              std::to_string(lost[1]) + " (probes " + std::to_string(probes[0]) + "/" +
              std::to_string(probes[1]) + ")";
  }

  // Handshakes over UDP: batches alternating, one handshake at a time.
  if (rep.wanted("handshake")) {
    (void)raw_handshake_batch(*ctx, std::min(set.batch, 10), 1200);  // warm-up
    (void)strata_handshake_batch(*ctx, std::min(set.batch, 10), 1200);
    bench::openssl::add_handshake_figures(rep, "handshake_udp", std::max(1, set.handshakes / set.batch),
                                          [&](bool raw) {
                                            return raw ? raw_handshake_batch(*ctx, set.batch, 1200)
                                                       : strata_handshake_batch(*ctx, set.batch, 1200);
                                          });
  }

  if (!strata_suite.empty() && !raw_suite.empty() && strata_suite != raw_suite) {
    die("strata negotiated " + strata_suite + ", raw OpenSSL " + raw_suite);
  }
  return rep.print(
      "DTLS 1.2, suite " + (strata_suite.empty() ? raw_suite : strata_suite) +
      "; bulk: " + std::to_string(set.messages) + " messages per side and case in rounds of " +
      std::to_string(set.round) + ", windows of " + std::to_string(set.window) + " (max_message at MTU " +
      sizes + "); handshakes: " + std::to_string(set.handshakes) +
      " per side over udp, MTU 1200, cookie exchange, batches of " + std::to_string(set.batch) +
      "; placement " + bench::openssl::placement_name() +
      "\nlost messages strata/raw: " + (losses.empty() ? "-" : losses) +
      "\nbaseline raw_openssl = blocking SSL_write/SSL_read on OpenSSL's datagram BIO, two threads");
}
