// tls: TLS 1.3 on loopback — bulk throughput, full handshakes and the memory an idle
// connection keeps — strata's tls::stream next to raw OpenSSL doing the same in the same
// run, over the same kind of socket, with the same certificate, groups and cipher suite.
//
//   bulk       16 KiB writes one way (client writes, server reads 16 KiB at a time) for a
//              fixed volume, over a TCP loopback connection and over a unix socketpair.
//              strata: tls::stream<tcp::stream> / <uds::stream>, client and server each
//              on its own thread with its own strata::run. raw: two plain threads,
//              blocking sockets, SSL_set_fd (OpenSSL's socket BIO), SSL_write_ex /
//              SSL_read_ex. A sample is one round (a fresh connection carrying
//              --round-mib), MB/s from the client's first write to the server's last
//              read; rounds alternate raw and strata. Every 16 KiB carries its index,
//              checked by both receivers.
//   handshake  full TLS 1.3 handshakes (tickets off, so nothing is resumed), one at a
//              time, with P-256 and with X25519 as the only group: connect, handshake,
//              close (no close_notify) on a client thread against a server thread that
//              accepts. strata: tcp::connect + tls::connect against tcp::listener::accept +
//              tls::accept. raw: connect + SSL_connect against accept + SSL_accept.
//              Latency: per handshake, from before the TCP connect to the client's
//              handshake done. Rate: per batch of handshakes (batches alternate).
//   idle       heap in use (mallinfo2: uordblks + hblkhd, after strata's frame cache is
//              given back) before and after opening N connections in one thread, both
//              ends in this process, divided by N (`idle_conn`); then per end (client
//              ends dropped: `idle_server_end`, `idle_client_end`). strata: one
//              strata::run opening tls::stream<tcp::stream> pairs. raw: SSL objects
//              after SSL_do_handshake on non-blocking TCP loopback sockets.
//              `idle_server_reading`: a read pending on every server end (strata: a
//              read_some waiting in the event loop; raw: an SSL_read that returned
//              SSL_ERROR_WANT_READ, as an event-driven server leaves it).
//              `idle_after_1MiB_write`: per connection, after one 1 MiB write from the
//              client that the server read 16 KiB at a time (100 connections).
//
// Placement: see pin_mode in openssl_common.hpp (default: both threads on one CPU).
//
// The raw contexts are configured as strata's (make_context in
// src/secure/openssl_session.cpp): no renegotiation, no compression, server cipher
// preference, SSL_MODE_RELEASE_BUFFERS, TLS 1.3 only, the same groups, tickets off; the
// client verifies the server's certificate and the name "localhost" as strata's does.
// The certificate is an ECDSA P-256 key and a self-signed certificate made at startup by
// tls::self_signed (OpenSSL 3's API; no key file anywhere), the same for both.
//
// The cipher suite: strata's context_options have no cipher suite setting, so the suite
// is chosen for the whole process through an OpenSSL configuration (system_default
// section) that this program writes and loads before anything else uses OpenSSL: both
// strata's contexts and the raw ones get it. --suite default leaves OpenSSL's own list
// (which puts TLS_AES_256_GCM_SHA384 first). Both ends report the suite they negotiated;
// a mismatch between strata and raw exits 1.
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "openssl_common.hpp"
#include "strata/runtime.hpp"
#include "strata/secure/tls.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/unix.hpp"

namespace {

using bench::clock;
using bench::ns_between;
using namespace std::chrono_literals;
namespace tls = strata::tls;

constexpr std::size_t record = 16 * 1024;  // bytes per write and per read
constexpr const char* server_name = "localhost";

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

// -- contexts ------------------------------------------------------------------------

/// make_contexts configures TLS 1.3 only, `groups` (empty: OpenSSL's), tickets off.
std::unique_ptr<contexts> make_contexts(const pki& p, const std::string& groups) {
  auto c = std::make_unique<contexts>();
  tls::context_options server_options;
  server_options.certificates.push_back(tls::credential{.cert_pem = p.cert_pem, .key_pem = p.key_pem});
  server_options.min_version = tls::version::tls1_3;
  server_options.groups = groups;
  server_options.session_tickets = false;
  tls::context_options client_options;
  client_options.ca_pem = p.cert_pem;
  client_options.min_version = tls::version::tls1_3;
  client_options.groups = groups;
  client_options.session_tickets = false;
  std::string why;
  auto server = tls::context::server(server_options, &why);
  if (!server) die("strata server context: " + why);
  auto client = tls::context::client(client_options, &why);
  if (!client) die("strata client context: " + why);
  c->strata_server = *server;
  c->strata_client = *client;

  c->raw_server = raw_context(true, TLS_server_method(), TLS1_3_VERSION, 0, p);
  SSL_CTX_set_num_tickets(c->raw_server, 0);
  c->raw_client = raw_context(false, TLS_client_method(), TLS1_3_VERSION, 0, p);
  for (SSL_CTX* ctx : {c->raw_server, c->raw_client}) {
    if (!groups.empty() && SSL_CTX_set1_groups_list(ctx, groups.c_str()) != 1)
      die_ssl("SSL_CTX_set1_groups_list");
  }
  return c;
}

/// raw_client_ssl is a client SSL on `fd` that sends SNI and verifies "localhost", as
/// strata's session::client does.
SSL* raw_client_ssl(SSL_CTX* ctx, int fd) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl || SSL_set_fd(ssl, fd) != 1) die_ssl("SSL_new (client)");
  SSL_set_tlsext_host_name(ssl, server_name);
  X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(ssl), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set1_host(ssl, server_name) != 1) die_ssl("SSL_set1_host");
  return ssl;
}

SSL* raw_server_ssl(SSL_CTX* ctx, int fd) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl || SSL_set_fd(ssl, fd) != 1) die_ssl("SSL_new (server)");
  return ssl;
}

// The suites the two implementations negotiated; they must agree.
std::string strata_suite;
std::string raw_suite;

void note_raw_suite(SSL* ssl) {
  if (raw_suite.empty()) raw_suite = SSL_CIPHER_standard_name(SSL_get_current_cipher(ssl));
}
template <class Stream>
void note_strata_suite(const Stream& s) {
  if (!strata_suite.empty()) return;
  auto info = s.query(strata::fact::secure_session{});
  if (!info) die_ec("secure_session", info.error());
  strata_suite = info->cipher;
  if (info->version != "TLSv1.3") die("strata negotiated " + info->version);
}

// -- sockets ---------------------------------------------------------------------------

void no_delay(int fd) {
  int one = 1;  // strata's tcp default on both ends
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int raw_listener(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || ::listen(fd, 1024) < 0)
    die_errno("bind/listen");
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  port = ntohs(sa.sin_port);
  return fd;
}

int raw_connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die_errno("connect");
  no_delay(fd);
  return fd;
}

int raw_accept(int listen_fd) {
  int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) die_errno("accept");
  no_delay(fd);
  return fd;
}

// -- bulk ------------------------------------------------------------------------------

enum class transport { tcp, unix_pair };

// mark is what one side reports: when it started (client) or finished (server), and its
// thread's CPU time in its loop.
struct mark {
  clock::time_point at;
  double cpu_ns = 0;
};

struct bulk_outcome {
  double mb_per_s = 0;
  double cpu_ns_per_kib = 0;  // client + server thread
};

bulk_outcome combine(std::size_t bytes, mark client, mark server) {
  auto b = static_cast<double>(bytes);
  return {b / 1e6 / (ns_between(client.at, server.at) / 1e9), (client.cpu_ns + server.cpu_ns) / (b / 1024)};
}

void stamp(std::vector<std::byte>& buf, std::uint64_t index) {
  std::memcpy(buf.data(), &index, sizeof index);
}

/// checker follows the stream position and checks the index at the start of every
/// 16 KiB block that a read returned whole enough to see it.
struct checker {
  std::uint64_t offset = 0;
  void check(const std::byte* data, std::size_t n, const char* who) {
    std::uint64_t first = (offset + record - 1) / record * record;
    for (std::uint64_t at = first; at + 8 <= offset + n; at += record) {
      std::uint64_t index;
      std::memcpy(&index, data + (at - offset), sizeof index);
      if (index != at / record) die(std::string(who) + ": data out of order or corrupt");
    }
    offset += n;
  }
};

mark raw_bulk_send(SSL* ssl, std::size_t bytes) {
  if (SSL_connect(ssl) != 1) die_ssl("SSL_connect");
  note_raw_suite(ssl);
  std::vector<std::byte> buf(record, std::byte{0x5a});
  mark start{clock::now(), bench::thread_cpu_ns()};
  for (std::uint64_t i = 0; i * record < bytes; ++i) {
    stamp(buf, i);
    std::size_t written = 0;
    if (SSL_write_ex(ssl, buf.data(), buf.size(), &written) != 1 || written != record)
      die_ssl("SSL_write_ex");
  }
  start.cpu_ns = bench::thread_cpu_ns() - start.cpu_ns;
  SSL_shutdown(ssl);
  return start;
}

mark raw_bulk_receive(SSL* ssl, std::size_t bytes) {
  if (SSL_accept(ssl) != 1) die_ssl("SSL_accept");
  std::vector<std::byte> buf(record);
  checker check;
  mark last{{}, bench::thread_cpu_ns()};
  while (check.offset < bytes) {
    std::size_t n = 0;
    if (SSL_read_ex(ssl, buf.data(), buf.size(), &n) != 1) die_ssl("SSL_read_ex");
    check.check(buf.data(), n, "raw");
  }
  last.at = clock::now();
  last.cpu_ns = bench::thread_cpu_ns() - last.cpu_ns;
  if (check.offset != bytes) die("raw: received more than was sent");
  return last;
}

bulk_outcome raw_bulk_round(const contexts& c, transport t, std::size_t bytes) {
  int client_fd = -1;
  int server_fd = -1;
  if (t == transport::tcp) {
    std::uint16_t port = 0;
    int lfd = raw_listener(port);
    client_fd = raw_connect(port);
    server_fd = raw_accept(lfd);
    ::close(lfd);
  } else {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die_errno("socketpair");
    client_fd = sv[0];
    server_fd = sv[1];
  }
  SSL* client = raw_client_ssl(c.raw_client, client_fd);
  SSL* server = raw_server_ssl(c.raw_server, server_fd);
  mark last;
  std::thread receiver([&] {
    pin_server();
    last = raw_bulk_receive(server, bytes);
  });
  auto start = raw_bulk_send(client, bytes);
  receiver.join();
  SSL_free(client);
  SSL_free(server);
  ::close(client_fd);
  ::close(server_fd);
  return combine(bytes, start, last);
}

template <class Lower>
strata::task<mark> strata_bulk_send(Lower lower, tls::context ctx, std::size_t bytes) {
  tls::client_options to;
  to.server_name = server_name;
  auto s = co_await tls::connect(std::move(lower), std::move(ctx), to, strata::deadline::after(10s));
  if (!s) die_ec("strata tls::connect", s.error());
  note_strata_suite(*s);
  std::vector<std::byte> buf(record, std::byte{0x5a});
  mark start{clock::now(), bench::thread_cpu_ns()};
  for (std::uint64_t i = 0; i * record < bytes; ++i) {
    stamp(buf, i);
    auto w = co_await s->write(strata::const_buffer(buf.data(), buf.size()), strata::deadline::never());
    if (!w) die_ec("strata write", w.error());
  }
  start.cpu_ns = bench::thread_cpu_ns() - start.cpu_ns;
  (void)co_await s->close(strata::deadline::after(10s));
  co_return start;
}

template <class Lower>
strata::task<mark> strata_bulk_receive(Lower lower, tls::context ctx, std::size_t bytes) {
  auto s = co_await tls::accept(std::move(lower), std::move(ctx), strata::deadline::after(10s));
  if (!s) die_ec("strata tls::accept", s.error());
  std::vector<std::byte> buf(record);
  checker check;
  mark last{{}, bench::thread_cpu_ns()};
  while (check.offset < bytes) {
    auto n = co_await s->read_some(strata::mutable_buffer(buf.data(), buf.size()), strata::deadline::never());
    if (!n) die_ec("strata read_some", n.error());
    check.check(buf.data(), *n, "strata");
  }
  last.at = clock::now();
  last.cpu_ns = bench::thread_cpu_ns() - last.cpu_ns;
  (void)co_await s->close(strata::deadline::after(10s));
  if (check.offset != bytes) die("strata: received more than was sent");
  co_return last;
}

strata::task<strata::tcp::stream> strata_tcp_connect(std::uint16_t port) {
  auto s = co_await strata::tcp::connect("127.0.0.1:" + std::to_string(port), strata::deadline::after(10s));
  if (!s) die_ec("strata tcp::connect", s.error());
  co_return std::move(*s);
}

strata::task<strata::tcp::stream> strata_tcp_accept(strata::tcp::listener& l) {
  auto s = co_await l.accept(strata::deadline::after(10s));
  if (!s) die_ec("strata accept", s.error());
  co_return std::move(*s);
}

bulk_outcome strata_bulk_round(const contexts& c, transport t, std::size_t bytes) {
  mark start;
  mark last;
  if (t == transport::tcp) {
    auto l = strata::tcp::listener::bind("127.0.0.1:0");
    if (!l) die_ec("strata listen", l.error());
    auto port = l->local_address()->port();
    std::thread receiver([&] {
      pin_server();
      last =
          strata::run([](strata::tcp::listener& lst, tls::context ctx, std::size_t n) -> strata::task<mark> {
            co_return co_await strata_bulk_receive(co_await strata_tcp_accept(lst), std::move(ctx), n);
          }(*l, c.strata_server, bytes));
    });
    start = strata::run([](std::uint16_t p, tls::context ctx, std::size_t n) -> strata::task<mark> {
      co_return co_await strata_bulk_send(co_await strata_tcp_connect(p), std::move(ctx), n);
    }(port, c.strata_client, bytes));
    receiver.join();
  } else {
    auto pair = strata::uds::stream::pair();
    if (!pair) die_ec("uds::stream::pair", pair.error());
    std::thread receiver([&] {
      pin_server();
      last = strata::run(strata_bulk_receive(std::move(pair->second), c.strata_server, bytes));
    });
    start = strata::run(strata_bulk_send(std::move(pair->first), c.strata_client, bytes));
    receiver.join();
  }
  return combine(bytes, start, last);
}

// -- handshakes --------------------------------------------------------------------------

handshake_batch raw_handshake_batch(const contexts& c, int count) {
  std::uint16_t port = 0;
  int lfd = raw_listener(port);
  double server_cpu = 0;
  std::thread server([&] {
    pin_server();
    double cpu0 = bench::thread_cpu_ns();
    for (int i = 0; i < count; ++i) {
      int fd = raw_accept(lfd);
      SSL* ssl = raw_server_ssl(c.raw_server, fd);
      if (SSL_accept(ssl) != 1) die_ssl("SSL_accept");
      SSL_free(ssl);
      ::close(fd);
    }
    server_cpu = bench::thread_cpu_ns() - cpu0;
  });
  handshake_batch out;
  out.latency_us.reserve(static_cast<std::size_t>(count));
  double cpu0 = bench::thread_cpu_ns();
  auto begin = clock::now();
  for (int i = 0; i < count; ++i) {
    auto t0 = clock::now();
    int fd = raw_connect(port);
    SSL* ssl = raw_client_ssl(c.raw_client, fd);
    if (SSL_connect(ssl) != 1) die_ssl("SSL_connect");
    out.latency_us.push_back(ns_between(t0, clock::now()) / 1e3);
    note_raw_suite(ssl);
    SSL_free(ssl);
    ::close(fd);
  }
  double client_cpu = bench::thread_cpu_ns() - cpu0;
  server.join();
  ::close(lfd);
  return bench::openssl::finish_batch(std::move(out), count, begin, client_cpu, server_cpu);
}

strata::task<void> strata_handshake_server(strata::tcp::listener& l, tls::context ctx, int count) {
  for (int i = 0; i < count; ++i) {
    auto lower = co_await l.accept(strata::deadline::after(10s));
    if (!lower) die_ec("strata accept", lower.error());
    auto s = co_await tls::accept(std::move(*lower), ctx, strata::deadline::after(10s));
    if (!s) die_ec("strata tls::accept", s.error());
  }
}

strata::task<void> strata_handshake_client(std::uint16_t port, tls::context ctx, int count,
                                           std::vector<double>& out) {
  tls::client_options to;
  to.server_name = server_name;
  const std::string where = "127.0.0.1:" + std::to_string(port);
  for (int i = 0; i < count; ++i) {
    auto t0 = clock::now();
    auto lower = co_await strata::tcp::connect(where, strata::deadline::after(10s));
    if (!lower) die_ec("strata tcp::connect", lower.error());
    auto s = co_await tls::connect(std::move(*lower), ctx, to, strata::deadline::after(10s));
    if (!s) die_ec("strata tls::connect", s.error());
    out.push_back(ns_between(t0, clock::now()) / 1e3);
    note_strata_suite(*s);
  }
}

handshake_batch strata_handshake_batch(const contexts& c, int count) {
  auto l = strata::tcp::listener::bind("127.0.0.1:0");
  if (!l) die_ec("strata listen", l.error());
  auto port = l->local_address()->port();
  double server_cpu = 0;
  std::thread server([&] {
    pin_server();
    double cpu0 = bench::thread_cpu_ns();
    strata::run(strata_handshake_server(*l, c.strata_server, count));
    server_cpu = bench::thread_cpu_ns() - cpu0;
  });
  handshake_batch out;
  out.latency_us.reserve(static_cast<std::size_t>(count));
  double cpu0 = bench::thread_cpu_ns();
  auto begin = clock::now();
  strata::run(strata_handshake_client(port, c.strata_client, count, out.latency_us));
  double client_cpu = bench::thread_cpu_ns() - cpu0;
  server.join();
  return bench::openssl::finish_batch(std::move(out), count, begin, client_cpu, server_cpu);
}

// -- idle memory ---------------------------------------------------------------------------

/// heap_in_use is the bytes malloc has handed out and not had back, in every arena.
double heap_in_use() {
  strata::release_unused_memory();  // the thread's cached coroutine frames are not in use
  struct mallinfo2 m = ::mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd);
}

struct memory_outcome {
  double both = 0;         // bytes per connection (client end + server end)
  double server = 0;       // bytes per server end
  double client = 0;       // bytes per client end
  double reading = 0;      // bytes per server end with a read pending
  double after_write = 0;  // bytes per connection after one large write went through it
};

using strata_tls = tls::stream<strata::tcp::stream>;

// The application's read buffer, one for all connections (it is not the layer's memory).
std::byte user_buffer[record];

// The large write of `after_write`, made once before anything is measured.
constexpr std::size_t large_write = 1 << 20;
constexpr int max_transfers = 100;
strata::const_buffer large_payload() {
  static const std::vector<std::byte> payload(large_write, std::byte{0x5a});
  return payload;
}

strata::task<void> strata_open_one(strata::tcp::listener& l, std::uint16_t port, const contexts& c,
                                   std::vector<std::unique_ptr<strata_tls>>& servers,
                                   std::vector<std::unique_ptr<strata_tls>>& clients) {
  co_await strata::with_scope([&](strata::scope& sc) -> strata::task<void> {
    sc.spawn([](strata::tcp::listener& lst, tls::context ctx,
                std::vector<std::unique_ptr<strata_tls>>& into) -> strata::task<void> {
      auto lower = co_await lst.accept(strata::deadline::after(10s));
      if (!lower) die_ec("strata accept", lower.error());
      auto s = co_await tls::accept(std::move(*lower), std::move(ctx), strata::deadline::after(10s));
      if (!s) die_ec("strata tls::accept", s.error());
      into.push_back(std::make_unique<strata_tls>(std::move(*s)));
    }(l, c.strata_server, servers));
    tls::client_options to;
    to.server_name = server_name;
    auto lower =
        co_await strata::tcp::connect("127.0.0.1:" + std::to_string(port), strata::deadline::after(10s));
    if (!lower) die_ec("strata tcp::connect", lower.error());
    auto s = co_await tls::connect(std::move(*lower), c.strata_client, to, strata::deadline::after(10s));
    if (!s) die_ec("strata tls::connect", s.error());
    note_strata_suite(*s);
    clients.push_back(std::make_unique<strata_tls>(std::move(*s)));
  });
}

// The memory figures come from three separate sets of connections, so that what one
// phase leaves behind (a buffer a read took) does not count in another:
//   A  open `count`, measure (both ends), drop the client ends, measure (server ends);
//   B  open `count`, leave a read pending on every server end, measure;
//   C  open `transfers`, send one large write through each, measure.

strata::task<memory_outcome> strata_memory(const contexts& c, int count) {
  auto l = strata::tcp::listener::bind("127.0.0.1:0");
  if (!l) die_ec("strata listen", l.error());
  auto port = l->local_address()->port();
  std::vector<std::unique_ptr<strata_tls>> servers, clients;
  servers.reserve(static_cast<std::size_t>(count));
  clients.reserve(static_cast<std::size_t>(count));
  auto open = [&](int n) -> strata::task<void> {
    for (int i = 0; i < n; ++i) co_await strata_open_one(*l, port, c, servers, clients);
  };
  // Warm-up: what the first connections allocate once (OpenSSL's caches, the loop's
  // tables) is not per connection.
  co_await open(16);
  servers.clear();
  clients.clear();
  (void)large_payload();
  const double n = count;
  memory_outcome out;

  double before = heap_in_use();  // A
  co_await open(count);
  double both = heap_in_use();
  clients.clear();
  double servers_only = heap_in_use();
  servers.clear();
  out.both = (both - before) / n;
  out.client = (both - servers_only) / n;
  out.server = (servers_only - before) / n;

  co_await open(count);  // B: as a server waiting for its clients' next request
  double idle = heap_in_use();
  co_await strata::with_scope([&](strata::scope& sc) -> strata::task<void> {
    for (auto& s : servers) {
      sc.spawn([](strata_tls& st) -> strata::task<void> {
        auto got = co_await st.read_some(strata::mutable_buffer(user_buffer, sizeof user_buffer),
                                         strata::deadline::after(60s));
        if (got || got.error() != strata::errc::operation_canceled) die("strata: an idle read returned");
      }(*s));
    }
    co_await strata::yield();  // let every reader reach its wait
    co_await strata::yield();
    out.reading = out.server + (heap_in_use() - idle) / n;
    sc.cancel();
  });
  clients.clear();
  servers.clear();

  const int transfers = std::min(count, max_transfers);  // C
  before = heap_in_use();
  co_await open(transfers);
  for (std::size_t i = 0; i < servers.size(); ++i) {
    co_await strata::with_scope([&](strata::scope& sc) -> strata::task<void> {
      sc.spawn([](strata_tls& server) -> strata::task<void> {
        std::size_t got = 0;
        while (got < large_write) {
          auto r = co_await server.read_some(strata::mutable_buffer(user_buffer, sizeof user_buffer),
                                             strata::deadline::after(10s));
          if (!r) die_ec("strata read_some", r.error());
          got += *r;
        }
      }(*servers[i]));
      auto w = co_await clients[i]->write(large_payload(), strata::deadline::after(10s));
      if (!w) die_ec("strata write", w.error());
    });
  }
  out.after_write = (heap_in_use() - before) / transfers;
  clients.clear();
  servers.clear();
  co_return out;
}

void set_non_blocking(int fd) {
  int one = 1;
  if (::ioctl(fd, FIONBIO, &one) < 0) die_errno("FIONBIO");
}

memory_outcome raw_memory(const contexts& c, int count) {
  std::uint16_t port = 0;
  int lfd = raw_listener(port);
  std::vector<SSL*> servers, clients;
  std::vector<int> server_fds, client_fds;
  for (auto* v : {&servers, &clients}) v->reserve(static_cast<std::size_t>(count));
  for (auto* v : {&server_fds, &client_fds}) v->reserve(static_cast<std::size_t>(count));
  // Both handshakes in one thread: each end goes as far as it can, in turn.
  auto open_one = [&] {
    int cfd = raw_connect(port);
    int sfd = raw_accept(lfd);
    set_non_blocking(cfd);
    set_non_blocking(sfd);
    SSL* client = raw_client_ssl(c.raw_client, cfd);
    SSL* server = raw_server_ssl(c.raw_server, sfd);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    bool client_done = false;
    bool server_done = false;
    while (!client_done || !server_done) {
      for (auto [ssl, done] : {std::pair{client, &client_done}, std::pair{server, &server_done}}) {
        if (*done) continue;
        int r = SSL_do_handshake(ssl);
        if (r == 1) {
          *done = true;
        } else if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) {
          die_ssl("SSL_do_handshake (non-blocking)");
        }
      }
    }
    note_raw_suite(client);
    clients.push_back(client);
    servers.push_back(server);
    client_fds.push_back(cfd);
    server_fds.push_back(sfd);
  };
  auto drop = [](std::vector<SSL*>& ssls, std::vector<int>& fds) {
    for (SSL* s : ssls) SSL_free(s);
    for (int fd : fds) ::close(fd);
    ssls.clear();
    fds.clear();
  };
  auto open = [&](int n) {
    for (int i = 0; i < n; ++i) open_one();
  };
  auto drop_all = [&] {
    drop(clients, client_fds);
    drop(servers, server_fds);
  };
  open(16);  // warm-up, as for strata
  drop_all();
  (void)large_payload();
  const double n = count;
  memory_outcome out;

  double before = heap_in_use();  // A
  open(count);
  double both = heap_in_use();
  drop(clients, client_fds);
  double servers_only = heap_in_use();
  drop(servers, server_fds);
  out.both = (both - before) / n;
  out.client = (both - servers_only) / n;
  out.server = (servers_only - before) / n;

  open(count);  // B: an event-driven server's idle connection: its read said "want read"
  double idle = heap_in_use();
  for (SSL* s : servers) {
    std::size_t got = 0;
    int r = SSL_read_ex(s, user_buffer, sizeof user_buffer, &got);
    if (r == 1 || SSL_get_error(s, r) != SSL_ERROR_WANT_READ) die_ssl("raw: an idle read returned");
  }
  out.reading = out.server + (heap_in_use() - idle) / n;
  drop_all();

  const int transfers = std::min(count, max_transfers);  // C
  before = heap_in_use();
  open(transfers);
  const auto payload = large_payload();
  for (std::size_t i = 0; i < servers.size(); ++i) {
    bool written = false;
    std::size_t got = 0;
    while (!written || got < large_write) {
      std::size_t done = 0;
      if (!written) {
        int r = SSL_write_ex(clients[i], payload.data(), payload.size(), &done);
        if (r == 1) {
          written = true;
        } else if (SSL_get_error(clients[i], r) != SSL_ERROR_WANT_WRITE) {
          die_ssl("SSL_write_ex (non-blocking)");
        }
      }
      for (;;) {
        int r = SSL_read_ex(servers[i], user_buffer, sizeof user_buffer, &done);
        if (r == 1) {
          got += done;
        } else if (SSL_get_error(servers[i], r) == SSL_ERROR_WANT_READ) {
          break;
        } else {
          die_ssl("SSL_read_ex (non-blocking)");
        }
      }
    }
  }
  out.after_write = (heap_in_use() - before) / transfers;
  drop_all();
  ::close(lfd);
  return out;
}

// -- main ----------------------------------------------------------------------------------

/// settings are the program's own options (the common ones are bench::options).
struct settings {
  std::size_t volume_mib = 1024;  // per implementation and transport
  std::size_t round_mib = 64;
  int handshakes = 2000;  // per implementation and group
  int batch = 50;
  int connections = 1000;
  std::string suite = "TLS_AES_128_GCM_SHA256";
};

const char* const usage_extra =
    " [--volume-mib N] [--round-mib N] [--handshakes N] [--connections N] [--suite NAME|default]"
    " [--pin split|same|none]";

settings parse_settings(int& argc, char** argv, bool quick) {
  settings s;
  if (quick) {
    s.volume_mib = 32;
    s.round_mib = 8;
    s.handshakes = 60;
    s.batch = 20;
    s.connections = 100;
  }
  for (bench::openssl::own_options o(argc, argv); o.next();) {
    const std::string& a = o.name();
    if (a == "--volume-mib") {
      s.volume_mib = o.number();
    } else if (a == "--round-mib") {
      s.round_mib = o.number();
    } else if (a == "--handshakes") {
      s.handshakes = static_cast<int>(o.number());
    } else if (a == "--connections") {
      s.connections = static_cast<int>(o.number());
    } else if (a == "--suite") {
      s.suite = o.value();
    } else {
      o.keep();
    }
  }
  s.round_mib = std::min(s.round_mib, s.volume_mib);
  s.batch = std::min(s.batch, s.handshakes);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) quick = quick || !std::strcmp(argv[i], "--quick");
  auto set = parse_settings(argc, argv, quick);
  auto opt = bench::parse_options(argc, argv, usage_extra);
  bench::openssl::program = "tls";
  // The suite, before anything else touches OpenSSL.
  if (set.suite != "default") bench::openssl::configure_ssl("Ciphersuites = " + set.suite);
  bench::openssl::setup_placement();
  bench::report rep("tls", opt);
  const pki p = bench::openssl::make_pki(server_name);

  // Bulk: rounds of --round-mib on fresh connections, raw and strata alternating.
  auto default_contexts = make_contexts(p, "");
  for (auto [t, name] :
       {std::pair{transport::tcp, "bulk_tcp"}, std::pair{transport::unix_pair, "bulk_unix"}}) {
    if (!rep.wanted(name)) continue;
    const std::size_t round = set.round_mib << 20;
    const std::size_t rounds = std::max<std::size_t>(1, set.volume_mib / set.round_mib);
    (void)raw_bulk_round(*default_contexts, t, round / 4);  // warm-up
    (void)strata_bulk_round(*default_contexts, t, round / 4);
    std::vector<double> raw_rate, strata_rate, raw_cpu, strata_cpu;
    bench::openssl::alternate(rounds, [&](bool raw) {
      auto out =
          raw ? raw_bulk_round(*default_contexts, t, round) : strata_bulk_round(*default_contexts, t, round);
      (raw ? raw_rate : strata_rate).push_back(out.mb_per_s);
      (raw ? raw_cpu : strata_cpu).push_back(out.cpu_ns_per_kib);
    });
    rep.add(compare(name, "MB/s", true, strata_rate, raw_rate));
    rep.add(compare(std::string(name) + "_cpu", "cpu ns/KiB", false, strata_cpu, raw_cpu));
  }

  // Handshakes: batches alternating, one handshake at a time.
  for (auto [groups, name] :
       {std::pair{"P-256", "handshake_p256"}, std::pair{"X25519", "handshake_x25519"}}) {
    if (!rep.wanted(name)) continue;
    auto ctx = make_contexts(p, groups);
    (void)raw_handshake_batch(*ctx, std::min(set.batch, 20));  // warm-up
    (void)strata_handshake_batch(*ctx, std::min(set.batch, 20));
    bench::openssl::add_handshake_figures(rep, name, std::max(1, set.handshakes / set.batch), [&](bool raw) {
      return raw ? raw_handshake_batch(*ctx, set.batch) : strata_handshake_batch(*ctx, set.batch);
    });
  }

  // Idle memory: one pass each (heap figures do not move with load).
  if (rep.wanted("idle")) {
    auto ctx = make_contexts(p, "");
    auto raw = raw_memory(*ctx, set.connections);
    auto strata = strata::run(strata_memory(*ctx, set.connections));
    rep.add(compare("idle_conn", "B/conn", false, {strata.both}, {raw.both}));
    rep.add(compare("idle_server_end", "B/end", false, {strata.server}, {raw.server}));
    rep.add(compare("idle_client_end", "B/end", false, {strata.client}, {raw.client}));
    rep.add(compare("idle_server_reading", "B/end", false, {strata.reading}, {raw.reading}));
    rep.add(compare("idle_after_1MiB_write", "B/conn", false, {strata.after_write}, {raw.after_write}));
  }

  if (!strata_suite.empty() && !raw_suite.empty() && strata_suite != raw_suite) {
    die("strata negotiated " + strata_suite + ", raw OpenSSL " + raw_suite);
  }
  return rep.print("TLS 1.3, suite " + (strata_suite.empty() ? raw_suite : strata_suite) +
                   "; bulk: " + std::to_string(set.volume_mib) + " MiB per side and transport in rounds of " +
                   std::to_string(set.round_mib) + " MiB, " + std::to_string(record / 1024) +
                   " KiB writes; handshakes: " + std::to_string(set.handshakes) +
                   " per side and group, batches of " + std::to_string(set.batch) +
                   "; idle: " + std::to_string(set.connections) +
                   " connections (both ends in this process); placement " + bench::openssl::placement_name() +
                   "; baseline raw_openssl = blocking SSL_write/SSL_read "
                   "on a socket BIO (idle: non-blocking)");
}
