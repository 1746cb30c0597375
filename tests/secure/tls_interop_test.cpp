// tls against implementations the project did not write (issue 9, item 4): strata's client
// against `openssl s_server`, `openssl s_client` and curl against strata's server, and
// tshark decrypting a capture of strata's own records with strata's key log, which
// proves the bytes on the wire are real TLS. Expired and untrusted certificates fail
// with their typed errors across the implementations too.
//
// Every peer is started here on a 127.0.0.1 port and stopped by its PID
// (support/peer_process.hpp); a missing peer fails the test. The strata side runs on a
// thread of its own with its own event loop (test::on_strata_thread), because the peer waits
// block the test thread. Nothing sleeps: the test thread waits for the peers' output,
// the strata thread for its sockets, both under deadlines.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/secure/tls.hpp"
#include "strata/transport/tcp.hpp"
#include "support/co_test.hpp"
#include "support/peer_process.hpp"
#include "support/pki.hpp"

namespace strata {
namespace {

using namespace std::chrono_literals;
using test::peer_options;
using test::peer_process;
using test::pki;
using tls_tcp = tls::stream<tcp::stream>;

/// patience bounds every wait of these tests, on either thread.
constexpr auto patience = 10s;

using test::on_strata_thread;

tls::credential cred(const test::credential& c) { return {.cert_file = c.cert_file, .key_file = c.key_file}; }

tls::context make_client(tls::context_options o) {
  if (o.ca_file.empty()) o.ca_file = pki().ca.cert_file;
  std::string why;
  auto c = tls::context::client(o, &why);
  EXPECT_TRUE(c) << why;
  return c ? *c : tls::context{};
}

tls::context make_server(tls::context_options o) {
  if (o.certificates.empty()) o.certificates.push_back(cred(pki().server));
  std::string why;
  auto c = tls::context::server(o, &why);
  EXPECT_TRUE(c) << why;
  return c ? *c : tls::context{};
}

/// seen is what one end knows about its connection (its facts) and what it received.
struct seen {
  std::error_code error{};  ///< the first failure (handshake or I/O); empty when none
  std::string alpn;
  std::string version;
  std::string server_name;
  std::string peer_subject;
  bool resumed = false;
  bool peer_verified = false;
  std::string received;
};

template <class S>
void record_facts(const S& s, seen& out) {
  if (auto alpn = query<fact::alpn>(s)) out.alpn = *alpn;
  if (auto sec = query<fact::secure_session>(s)) {
    out.version = sec->version;
    out.server_name = sec->server_name;
    out.resumed = sec->resumed;
    out.peer_verified = sec->peer_verified;
  }
  if (auto cert = query<fact::peer_certificate>(s)) out.peer_subject = cert->subject;
}

/// read_until reads `s` until what came holds `marker`; everything read is in `into`.
template <class S>
task<result<void>> read_until(S& s, std::string_view marker, std::string& into, deadline dl) {
  std::array<char, 4096> buf{};
  while (into.find(marker) == std::string::npos) {
    auto n = co_await s.read_some(as_writable_bytes(std::span(buf.data(), buf.size())), dl);
    if (!n) co_return unexpected(n.error());
    into.append(buf.data(), *n);
  }
  co_return result<void>{};
}

/// drain reads `s` until it fails and returns that error (end_of_stream for an orderly end).
template <class S>
task<std::error_code> drain(S& s, deadline dl) {
  std::array<std::byte, 4096> buf{};
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) co_return n.error();
  }
}

/// talk_as_client connects strata's TLS client to 127.0.0.1:`port`, writes `say`, reads
/// until `expect` came (each skipped when empty) and closes, recording it all in `out`.
task<void> talk_as_client(int port, tls::context ctx, std::string_view server_name, std::string_view say,
                          std::string_view expect, seen& out) {
  auto dl = deadline::after(patience);
  std::string where = "127.0.0.1:" + std::to_string(port);
  tcp::connect_options tcp_options;
  auto lower = co_await tcp::connect(where, dl, tcp_options);
  if (!lower) {
    out.error = lower.error();
    co_return;
  }
  tls::client_options options{.server_name = std::string(server_name)};
  auto s = co_await tls::connect(std::move(*lower), std::move(ctx), options, dl);
  if (!s) {
    out.error = s.error();
    co_return;
  }
  record_facts(*s, out);
  if (!say.empty()) {
    auto sent = co_await s->write(as_bytes(say), dl);
    if (!sent) out.error = sent.error();
  }
  if (!out.error && !expect.empty()) {
    auto got = co_await read_until(*s, expect, out.received, dl);
    if (!got) out.error = got.error();
  }
  (void)co_await s->close(dl);
}

/// accept_tls accepts one TCP connection on `l` and runs strata's server handshake on it.
task<result<tls_tcp>> accept_tls(tcp::listener& l, tls::context ctx, deadline dl) {
  auto lower = co_await l.accept(dl);
  if (!lower) co_return unexpected(lower.error());
  co_return co_await tls::accept(std::move(*lower), std::move(ctx), dl);
}

/// serve_once accepts one TLS connection, reads until `expect` (when not empty), answers
/// `reply` (when not empty), then reads until the client ends and closes.
task<void> serve_once(tcp::listener& l, tls::context ctx, std::string_view expect, std::string_view reply,
                      seen& out) {
  auto dl = deadline::after(patience);
  auto s = co_await accept_tls(l, std::move(ctx), dl);
  if (!s) {
    out.error = s.error();
    co_return;
  }
  record_facts(*s, out);
  if (!expect.empty()) {
    auto got = co_await read_until(*s, expect, out.received, dl);
    if (!got) out.error = got.error();
  }
  if (!out.error && !reply.empty()) {
    auto sent = co_await s->write(as_bytes(reply), dl);
    if (!sent) out.error = sent.error();
  }
  // The peer's orderly end or its hang-up: either way the connection is over.
  if (!out.error && reply.empty()) (void)co_await drain(*s, dl);
  (void)co_await s->close(dl);
}

/// bound_listener is a TCP listener on 127.0.0.1 with an ephemeral port.
struct bound_listener {
  tcp::listener listener;
  int port = 0;
};

bound_listener bind_loopback() {
  bound_listener out;
  auto l = tcp::listener::bind("127.0.0.1:0");
  EXPECT_TRUE(l) << l.error().message();
  if (!l) return out;
  out.port = l->local_address()->port();
  out.listener = std::move(*l);
  return out;
}

// -- the peers -------------------------------------------------------------------------

std::string text_of(int port) { return std::to_string(port); }

/// s_server starts `openssl s_server` on 127.0.0.1:`port` presenting `cert`, with `more`
/// options, and waits until it listens ("ACCEPT"). It quits at end of file on its
/// stdin, so it gets a pipe there; what the test writes to it goes to the client.
peer_process s_server(int port, const test::credential& cert, std::vector<std::string> more = {}) {
  std::vector<std::string> argv{"openssl", "s_server",     "-accept", "127.0.0.1:" + text_of(port),
                                "-cert",   cert.cert_file, "-key",    cert.key_file};
  argv.insert(argv.end(), more.begin(), more.end());
  peer_options options;
  options.stdin_pipe = true;
  auto p = peer_process::start(argv, options);
  if (p && !p.wait_for_output("ACCEPT", patience)) {
    ADD_FAILURE() << p.command_line() << " did not start listening:\n" << p.output();
  }
  return p;
}

/// s_client starts `openssl s_client` against strata on 127.0.0.1:`port`, checking the
/// server against the test CA and asking for "localhost" (SNI), with `more` options.
peer_process s_client(int port, std::vector<std::string> more, bool stdin_pipe) {
  std::vector<std::string> argv{
      "openssl",          "s_client",    "-connect",  "127.0.0.1:" + text_of(port), "-CAfile",
      pki().ca.cert_file, "-servername", "localhost", "-verify_return_error"};
  argv.insert(argv.end(), more.begin(), more.end());
  peer_options options;
  options.stdin_pipe = stdin_pipe;
  return peer_process::start(argv, options);
}

std::size_t count_of(const std::string& text, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// version_case is one protocol version: the openssl option that forces it and the
/// name strata reports for it.
struct version_case {
  const char* flag;
  const char* name;
};
constexpr std::array<version_case, 2> versions{{{"-tls1_3", "TLSv1.3"}, {"-tls1_2", "TLSv1.2"}}};

/// scratch_path is a fresh file name in the test PKI's directory (removed at exit).
std::string scratch_path(std::string_view stem) {
  static std::atomic<int> counter{0};
  return pki().directory + "/" + std::string(stem) + "-" + std::to_string(++counter);
}

// -- 1. strata's client against openssl s_server -----------------------------------------

/// talk_to_s_server runs talk_as_client against `server` (on 127.0.0.1:`port`) on a
/// strata thread: strata writes `say`, and once s_server has printed it the test writes
/// `answer` (when not empty) to s_server's stdin, which strata reads. It returns what
/// strata's client saw.
seen talk_to_s_server(peer_process& server, int port, const tls::context& ctx, std::string_view say,
                      std::string_view answer = {}) {
  seen out;
  auto strata = on_strata_thread(
      [&]() -> task<void> { co_await talk_as_client(port, ctx, "localhost", say, answer, out); });
  EXPECT_TRUE(server.wait_for_output(say, patience)) << server.output();
  if (!answer.empty()) {
    EXPECT_TRUE(server.write_stdin(answer));
  }
  strata.join();
  return out;
}

TEST(TlsInterop, ClientTalksToOpensslServerInBothVersionsWithAlpn) {
  for (auto vc : versions) {
    SCOPED_TRACE(vc.name);
    int port = test::free_loopback_port(SOCK_STREAM);
    auto server = s_server(port, pki().server, {vc.flag, "-alpn", "h2"});
    ASSERT_TRUE(server);
    auto ctx = make_client({.alpn = {"h2", "http/1.1"}});
    auto client = talk_to_s_server(server, port, ctx, "hello from strata\n", "hello from openssl\n");
    EXPECT_FALSE(client.error) << client.error.message() << "\n" << server.output();
    EXPECT_EQ(client.alpn, "h2");
    EXPECT_EQ(client.version, vc.name);
    EXPECT_TRUE(client.peer_verified);
    EXPECT_NE(client.peer_subject.find("CN=localhost"), std::string::npos) << client.peer_subject;
    EXPECT_NE(client.received.find("hello from openssl\n"), std::string::npos) << client.received;
    // s_server lists the protocols our ClientHello offered.
    EXPECT_TRUE(server.wait_for_output("ALPN protocols advertised by the client: h2, http/1.1", patience))
        << server.output();
  }
}

// s_server switches to its second certificate (-cert2, for "localhost") only when the
// ClientHello carries that name: verifying "localhost" succeeds only if SNI arrived.
TEST(TlsInterop, ClientSendsSniThatOpensslServerActsOn) {
  int port = test::free_loopback_port(SOCK_STREAM);
  auto server = s_server(
      port, pki().other_name_server,
      {"-servername", "localhost", "-cert2", pki().server.cert_file, "-key2", pki().server.key_file});
  ASSERT_TRUE(server);
  auto client = talk_to_s_server(server, port, make_client({}), "sni\n");
  EXPECT_FALSE(client.error) << client.error.message() << "\n" << server.output();
  EXPECT_NE(client.peer_subject.find("CN=localhost"), std::string::npos) << client.peer_subject;
  EXPECT_TRUE(server.wait_for_output("Hostname in TLS extension: \"localhost\"", patience))
      << server.output();
  EXPECT_TRUE(server.wait_for_output("Switching server context", patience)) << server.output();
}

TEST(TlsInterop, ClientPresentsItsCertificateToOpensslServerThatRequiresOne) {
  int port = test::free_loopback_port(SOCK_STREAM);
  auto server =
      s_server(port, pki().server, {"-Verify", "1", "-verify_return_error", "-CAfile", pki().ca.cert_file});
  ASSERT_TRUE(server);
  auto with_cert =
      talk_to_s_server(server, port, make_client({.certificates = {cred(pki().client)}}), "mutual\n");
  EXPECT_FALSE(with_cert.error) << with_cert.error.message() << "\n" << server.output();
  // s_server verified us and prints our certificate's subject.
  EXPECT_TRUE(server.wait_for_output("strata test client", patience)) << server.output();

  // Without a certificate s_server refuses us. A TLS 1.3 client has finished its
  // handshake by then: the refusal is the alert its first read gets.
  seen without_cert;
  auto ctx_without = make_client({});
  {
    auto strata = on_strata_thread([&]() -> task<void> {
      co_await talk_as_client(port, ctx_without, "localhost", "", "never sent", without_cert);
    });
  }
  EXPECT_EQ(without_cert.error, tls::error::certificate_required) << without_cert.error.message();
  EXPECT_EQ(without_cert.error, errc::authentication_failed);
}

// strata's client keeps the session s_server gave it (TLS 1.3: in tickets after the
// handshake, which the first read takes in) and resumes it on its next connection.
TEST(TlsInterop, ClientResumesSessionsWithOpensslServer) {
  for (auto vc : versions) {
    SCOPED_TRACE(vc.name);
    int port = test::free_loopback_port(SOCK_STREAM);
    auto server = s_server(port, pki().server, {vc.flag});
    ASSERT_TRUE(server);
    auto ctx = make_client({});
    std::array<seen, 2> rounds;
    for (std::size_t i = 0; i < rounds.size(); ++i) {
      rounds[i] = talk_to_s_server(server, port, ctx, "round " + std::to_string(i) + "\n",
                                   "answer " + std::to_string(i) + "\n");
    }
    EXPECT_FALSE(rounds[0].error) << rounds[0].error.message();
    EXPECT_FALSE(rounds[1].error) << rounds[1].error.message();
    EXPECT_FALSE(rounds[0].resumed);
    EXPECT_TRUE(rounds[1].resumed);
    EXPECT_EQ(rounds[1].version, vc.name);
    // A resumed session still counts as verified: it carries the first one's check.
    EXPECT_TRUE(rounds[1].peer_verified);
    EXPECT_TRUE(server.wait_for_output("Reused session-id", patience)) << server.output();
  }
}

// s_server killed mid-connection ends the TCP stream without a close_notify: strata's
// client reads truncated, not an orderly end.
TEST(TlsInterop, ClientSeesTruncationWhenOpensslServerDies) {
  int port = test::free_loopback_port(SOCK_STREAM);
  auto server = s_server(port, pki().server);
  ASSERT_TRUE(server);
  seen client;
  auto ctx = make_client({});
  {
    auto strata = on_strata_thread([&]() -> task<void> {
      co_await talk_as_client(port, ctx, "localhost", "last words\n", "never sent", client);
    });
    EXPECT_TRUE(server.wait_for_output("last words\n", patience)) << server.output();
    server.stop();
  }
  EXPECT_EQ(client.error, tls::error::truncated) << client.error.message();
  EXPECT_EQ(client.error, errc::broken);
}

// A HelloRetryRequest in both roles: OpenSSL's first key share is X25519, so an end that
// accepts P-384 only must ask the other for a second ClientHello.
TEST(TlsInterop, HelloRetryRequestWorksInBothRoles) {
  int port = test::free_loopback_port(SOCK_STREAM);
  auto server = s_server(port, pki().server, {"-groups", "P-384"});
  ASSERT_TRUE(server);
  auto client = talk_to_s_server(server, port, make_client({}), "retried\n");
  EXPECT_FALSE(client.error) << client.error.message() << "\n" << server.output();
  EXPECT_EQ(client.version, "TLSv1.3");

  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto server_ctx = make_server({.groups = "P-384"});
  seen served;
  auto strata = on_strata_thread(
      [&]() -> task<void> { co_await serve_once(bound.listener, server_ctx, "", "bye\n", served); });
  auto s_client_run = s_client(bound.port, {"-msg"}, true);
  ASSERT_TRUE(s_client_run);
  EXPECT_EQ(s_client_run.wait_exit(patience), 0) << s_client_run.output();
  strata.join();
  EXPECT_FALSE(served.error) << served.error.message();
  auto out = s_client_run.output();
  // -msg shows both: the retry request is a ServerHello too.
  EXPECT_EQ(count_of(out, "], ServerHello"), 2u) << out;
  EXPECT_NE(out.find("Server Temp Key: ECDH, secp384r1"), std::string::npos) << out;
}

// -- 5. failures against openssl s_server -------------------------------------------------

TEST(TlsInterop, ClientRefusesOpensslServersWithExpiredOrUntrustedCertificates) {
  int expired_port = test::free_loopback_port(SOCK_STREAM);
  int rogue_port = test::free_loopback_port(SOCK_STREAM);
  auto expired = s_server(expired_port, pki().expired_server);
  auto rogue = s_server(rogue_port, pki().rogue_server);
  ASSERT_TRUE(expired);
  ASSERT_TRUE(rogue);
  seen to_expired;
  seen to_rogue;
  auto ctx = make_client({});
  {
    auto strata = on_strata_thread([&]() -> task<void> {
      co_await talk_as_client(expired_port, ctx, "localhost", "", "", to_expired);
      co_await talk_as_client(rogue_port, ctx, "localhost", "", "", to_rogue);
    });
  }
  EXPECT_EQ(to_expired.error, tls::error::certificate_expired) << to_expired.error.message();
  EXPECT_EQ(to_rogue.error, tls::error::certificate_untrusted) << to_rogue.error.message();
  EXPECT_EQ(to_rogue.error, errc::authentication_failed);
  // Each s_server hears why from our alert.
  EXPECT_TRUE(expired.wait_for_output("certificate expired", patience)) << expired.output();
  EXPECT_TRUE(rogue.wait_for_output("unknown ca", patience)) << rogue.output();
}

// -- 2. openssl s_client against strata's server -----------------------------------------

TEST(TlsInterop, OpensslClientTalksToServerInBothVersionsWithAlpnAndSni) {
  for (auto vc : versions) {
    SCOPED_TRACE(vc.name);
    auto bound = bind_loopback();
    ASSERT_NE(bound.port, 0);
    seen served;
    auto ctx = make_server({.alpn = {"h2", "http/1.1"}});
    auto strata = on_strata_thread([&]() -> task<void> {
      co_await serve_once(bound.listener, ctx, "ping from s_client\n", "pong from strata\n", served);
    });
    auto client = s_client(bound.port, {vc.flag, "-alpn", "h2"}, true);
    ASSERT_TRUE(client);
    EXPECT_TRUE(client.write_stdin("ping from s_client\n"));
    EXPECT_TRUE(client.wait_for_output("pong from strata\n", patience)) << client.output();
    // Our close_notify ends s_client's session: it exits by itself, successfully.
    EXPECT_EQ(client.wait_exit(patience), 0) << client.output();
    strata.join();
    auto out = client.output();
    EXPECT_NE(out.find("Verify return code: 0 (ok)"), std::string::npos) << out;
    EXPECT_NE(out.find("ALPN protocol: h2"), std::string::npos) << out;
    EXPECT_NE(out.find(std::string("New, ") + vc.name), std::string::npos) << out;
    EXPECT_FALSE(served.error) << served.error.message();
    EXPECT_EQ(served.alpn, "h2");
    EXPECT_EQ(served.version, vc.name);
    EXPECT_EQ(served.server_name, "localhost");
    EXPECT_NE(served.received.find("ping from s_client\n"), std::string::npos) << served.received;
  }
}

/// numbered_lines is `count` lines "<prefix><number>\n" of 8 bytes each.
std::string numbered_lines(char prefix, int count) {
  std::string out;
  out.reserve(static_cast<std::size_t>(count) * 8);
  for (int i = 0; i < count; ++i) {
    std::string n = std::to_string(i);
    out += prefix;
    out.append(6 - n.size(), '0');
    out += n;
    out += '\n';
  }
  return out;
}

// A mebibyte each way: many full records, written whole from the caller's memory, read
// by OpenSSL's own record layer, and the other way round.
TEST(TlsInterop, MebibytesBothWaysWithOpensslClient) {
  const std::string upload = numbered_lines('u', 131072);
  const std::string download = numbered_lines('d', 131072);
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto ctx = make_server({});
  seen served;
  bool upload_intact = false;
  auto strata = on_strata_thread([&]() -> task<void> {
    auto dl = deadline::after(patience);
    auto s = co_await accept_tls(bound.listener, ctx, dl);
    if (!s) {
      served.error = s.error();
      co_return;
    }
    std::string got(upload.size(), '\0');
    auto r = co_await read_exact(*s, as_writable_bytes(std::span(got.data(), got.size())), dl);
    if (!r) {
      served.error = r.error();
      co_return;
    }
    upload_intact = got == upload;
    auto sent = co_await s->write(as_bytes(download), dl);
    if (!sent) served.error = sent.error();
    (void)co_await s->close(dl);
  });
  // -quiet: s_client's stdout is the bytes it received and nothing else; no command
  // letters, and stdin's end is not the connection's.
  auto client = s_client(bound.port, {"-quiet", "-verify_quiet", "-nocommands"}, true);
  ASSERT_TRUE(client);
  EXPECT_TRUE(client.write_stdin(upload, patience));
  EXPECT_EQ(client.wait_exit(patience), 0);
  strata.join();
  EXPECT_FALSE(served.error) << served.error.message();
  EXPECT_TRUE(upload_intact);
  auto out = client.output();
  EXPECT_EQ(out.size(), download.size());
  EXPECT_TRUE(out == download) << out.substr(0, 200);
}

// With two certificates the server presents the one for the name s_client asks for.
TEST(TlsInterop, ServerPicksItsCertificateByOpensslClientsSni) {
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto ctx = make_server({.certificates = {cred(pki().server), cred(pki().other_name_server)}});
  const std::array<const char*, 2> names{"other.test", "localhost"};
  std::array<seen, versions.size() * names.size()> served;
  auto strata = on_strata_thread([&]() -> task<void> {
    for (auto& one : served) co_await serve_once(bound.listener, ctx, "", "", one);
  });
  std::size_t i = 0;
  for (auto vc : versions) {
    for (const char* name : names) {
      SCOPED_TRACE(std::string(vc.name) + " " + name);
      std::vector<std::string> argv{
          "openssl", "s_client",         "-connect", "127.0.0.1:" + text_of(bound.port),
          "-CAfile", pki().ca.cert_file, vc.flag,    "-servername",
          name,      "-verify_hostname", name,       "-verify_return_error"};
      auto client = peer_process::start(argv);
      ASSERT_TRUE(client);
      EXPECT_EQ(client.wait_exit(patience), 0) << client.output();
      EXPECT_NE(client.output().find("Verify return code: 0 (ok)"), std::string::npos) << client.output();
      EXPECT_EQ(served[i++].server_name, name);
    }
  }
  strata.join();
}

TEST(TlsInterop, ServerRequiringClientCertificatesChecksOpensslClients) {
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto ctx = make_server({.ca_file = pki().ca.cert_file, .client_certificates = tls::client_auth::required});
  seen with_cert;
  seen without_cert;
  auto strata = on_strata_thread([&]() -> task<void> {
    co_await serve_once(bound.listener, ctx, "ping\n", "pong\n", with_cert);
    co_await serve_once(bound.listener, ctx, "", "", without_cert);
  });
  {
    auto client =
        s_client(bound.port, {"-cert", pki().client.cert_file, "-key", pki().client.key_file}, true);
    ASSERT_TRUE(client);
    EXPECT_TRUE(client.write_stdin("ping\n"));
    EXPECT_TRUE(client.wait_for_output("pong\n", patience)) << client.output();
    EXPECT_EQ(client.wait_exit(patience), 0) << client.output();
  }
  {
    // stdin stays open: s_client waits on the connection and reads the server's alert.
    auto client = s_client(bound.port, {}, true);
    ASSERT_TRUE(client);
    EXPECT_TRUE(client.wait_for_output("alert certificate required", patience)) << client.output();
    EXPECT_NE(client.wait_exit(patience), 0) << client.output();
  }
  strata.join();
  EXPECT_FALSE(with_cert.error) << with_cert.error.message();
  EXPECT_TRUE(with_cert.peer_verified);
  EXPECT_NE(with_cert.peer_subject.find("CN=strata test client"), std::string::npos)
      << with_cert.peer_subject;
  EXPECT_EQ(without_cert.error, tls::error::certificate_required) << without_cert.error.message();
}

// TLS 1.2: s_client -reconnect resumes five times with the server's ticket.
TEST(TlsInterop, OpensslClientResumesTls12SessionsWithReconnect) {
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto ctx = make_server({});
  std::vector<seen> served(6);
  auto strata = on_strata_thread([&]() -> task<void> {
    for (auto& one : served) co_await serve_once(bound.listener, ctx, "", "", one);
  });
  auto client = s_client(bound.port, {"-tls1_2", "-reconnect"}, false);
  ASSERT_TRUE(client);
  EXPECT_TRUE(client.wait_exit(patience).has_value()) << client.output();
  strata.join();
  auto out = client.output();
  EXPECT_EQ(count_of(out, "New, TLSv1.2"), 1u) << out;
  EXPECT_EQ(count_of(out, "Reused, TLSv1.2"), 5u) << out;
  for (std::size_t i = 0; i < served.size(); ++i) {
    EXPECT_EQ(served[i].version, "TLSv1.2") << "connection " << i << ": " << served[i].error.message();
    EXPECT_EQ(served[i].resumed, i > 0) << "connection " << i;
  }
}

// TLS 1.3: the tickets come after the handshake; s_client saves the session they make
// (-sess_out) and offers it on its next connection (-sess_in).
TEST(TlsInterop, OpensslClientResumesTls13SessionsWithASavedTicket) {
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto ctx = make_server({});
  std::vector<seen> served(2);
  auto strata = on_strata_thread([&]() -> task<void> {
    // The first connection's data follows the tickets: once s_client has printed it, it
    // has read them (it saves the session as each ticket arrives). Our close_notify
    // then ends it. (s_client's own report of a ticket sits in its stdio buffer until
    // it exits, so it cannot be waited for.)
    co_await serve_once(bound.listener, ctx, "", "after the tickets\n", served[0]);
    co_await serve_once(bound.listener, ctx, "", "", served[1]);
  });
  std::string saved = scratch_path("s_client-session.pem");
  {
    auto first = s_client(bound.port, {"-sess_out", saved}, true);
    ASSERT_TRUE(first);
    EXPECT_TRUE(first.wait_for_output("after the tickets\n", patience)) << first.output();
    EXPECT_EQ(first.wait_exit(patience), 0) << first.output();
    EXPECT_NE(first.output().find("New, TLSv1.3"), std::string::npos) << first.output();
    EXPECT_NE(first.output().find("Post-Handshake New Session Ticket arrived"), std::string::npos)
        << first.output();
  }
  {
    auto second = s_client(bound.port, {"-sess_in", saved}, false);
    ASSERT_TRUE(second);
    EXPECT_EQ(second.wait_exit(patience), 0) << second.output();
    EXPECT_NE(second.output().find("Reused, TLSv1.3"), std::string::npos) << second.output();
  }
  strata.join();
  EXPECT_FALSE(served[0].error) << served[0].error.message();
  EXPECT_FALSE(served[0].resumed);
  EXPECT_TRUE(served[1].resumed);
  EXPECT_EQ(served[1].version, "TLSv1.3");
}

// s_client's "K" command sends a TLS 1.3 KeyUpdate asking for ours in return: the server
// answers it while reading and the data goes on under the new keys. Its "R" command
// asks for a TLS 1.2 renegotiation, which the server refuses (no_renegotiation).
TEST(TlsInterop, ServerAnswersOpensslKeyUpdatesAndRefusesRenegotiation) {
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto ctx = make_server({});
  seen updated;
  seen renegotiated;
  auto strata = on_strata_thread([&]() -> task<void> {
    co_await serve_once(bound.listener, ctx, "after the key update\n", "pong\n", updated);
    co_await serve_once(bound.listener, ctx, "never sent\n", "", renegotiated);
  });
  {
    auto client = s_client(bound.port, {"-msg"}, true);
    ASSERT_TRUE(client);
    // One command per read of s_client's stdin: the next line only after it acted.
    EXPECT_TRUE(client.write_stdin("K\n"));
    EXPECT_TRUE(client.wait_for_output("KEYUPDATE", patience)) << client.output();
    EXPECT_TRUE(client.write_stdin("after the key update\n"));
    EXPECT_TRUE(client.wait_for_output("pong\n", patience)) << client.output();
    EXPECT_EQ(client.wait_exit(patience), 0) << client.output();
    EXPECT_NE(client.output().find("<<< TLS 1.3, Handshake [length 0005], KeyUpdate"), std::string::npos)
        << client.output();
  }
  {
    auto client = s_client(bound.port, {"-tls1_2"}, true);
    ASSERT_TRUE(client);
    EXPECT_TRUE(client.wait_for_output("Verify return code: 0 (ok)", patience)) << client.output();
    EXPECT_TRUE(client.write_stdin("R\n"));
    EXPECT_TRUE(client.wait_for_output("no renegotiation", patience)) << client.output();
    EXPECT_NE(client.wait_exit(patience), 0) << client.output();
  }
  strata.join();
  EXPECT_FALSE(updated.error) << updated.error.message();
  EXPECT_NE(updated.received.find("after the key update\n"), std::string::npos) << updated.received;
  // s_client gives up with a fatal alert of its own.
  EXPECT_EQ(renegotiated.version, "TLSv1.2");
  EXPECT_EQ(renegotiated.error, errc::protocol_error) << renegotiated.error.message();
}

TEST(TlsInterop, OpensslClientRefusesServerWithUntrustedCertificate) {
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  auto ctx = make_server({.certificates = {cred(pki().rogue_server)}});
  seen served;
  auto strata =
      on_strata_thread([&]() -> task<void> { co_await serve_once(bound.listener, ctx, "", "", served); });
  auto client = s_client(bound.port, {}, true);
  ASSERT_TRUE(client);
  EXPECT_TRUE(client.wait_for_output("verify error", patience)) << client.output();
  EXPECT_NE(client.wait_exit(patience), 0) << client.output();
  strata.join();
  // s_client's alert (unknown CA) tells the server it was refused.
  EXPECT_EQ(served.error, tls::error::certificate_rejected) << served.error.message();
}

// -- 3. curl against strata's server -------------------------------------------------------

TEST(TlsInterop, CurlGetsAnHttpsResponseFromServer) {
  // The server is a pipeline from a spec string, as an application would write it.
  auto listener = strata::listen("tcp-listen:127.0.0.1:0 | tls(cert=" + pki().server.cert_file +
                                 ", key=" + pki().server.key_file + ", alpn=\"http/1.1\")");
  ASSERT_TRUE(listener) << listener.error().message();
  int port = listener->local_address()->port();
  const std::string body = "hello from strata over https\n";
  std::vector<seen> served(2);
  auto strata = on_strata_thread([&]() -> task<void> {
    auto dl = deadline::after(patience);
    std::string response =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\n\r\n" + body;
    for (auto& one : served) {
      auto conn = co_await listener->accept(dl);
      if (!conn) {
        one.error = conn.error();
        co_return;
      }
      record_facts(*conn, one);
      auto& s = conn->stream();
      auto got = co_await read_until(s, "\r\n\r\n", one.received, dl);
      if (!got) one.error = got.error();
      auto sent = co_await s.write(as_bytes(response), dl);
      if (!sent && !one.error) one.error = sent.error();
      (void)co_await conn->close(dl);
    }
    listener->close();
  });
  std::string url = "https://localhost:" + text_of(port) + "/";
  std::string resolve = "localhost:" + text_of(port) + ":127.0.0.1";
  {
    auto curl =
        peer_process::start({"curl", "-sS", "--cacert", pki().ca.cert_file, "--resolve", resolve, url});
    ASSERT_TRUE(curl);
    EXPECT_EQ(curl.wait_exit(patience), 0) << curl.output();
    EXPECT_EQ(curl.output(), body);
  }
  {
    auto curl = peer_process::start(
        {"curl", "-sS", "-v", "--http1.1", "--cacert", pki().ca.cert_file, "--resolve", resolve, url});
    ASSERT_TRUE(curl);
    EXPECT_EQ(curl.wait_exit(patience), 0) << curl.output();
    EXPECT_NE(curl.output().find("ALPN: server accepted http/1.1"), std::string::npos) << curl.output();
    EXPECT_NE(curl.output().find(body), std::string::npos) << curl.output();
  }
  strata.join();
  for (auto& one : served) {
    EXPECT_FALSE(one.error) << one.error.message();
    EXPECT_EQ(one.alpn, "http/1.1");
    EXPECT_EQ(one.received.rfind("GET / HTTP/1.1\r\n", 0), 0u) << one.received;
    EXPECT_NE(one.received.find("Host: localhost:" + text_of(port)), std::string::npos) << one.received;
  }
}

// -- 4. tshark decrypts a capture of strata talking to itself ----------------------------

/// mark_capture sends `payload` from the UDP socket `fd` to itself (127.0.0.1:`port`)
/// until tshark has printed the datagram (its summary line ends in "PORT Len=N"): then
/// every packet sent before it is in the capture. It sends again every 200 ms: tshark
/// prints a few hundred milliseconds late, and a datagram sent the moment the capture
/// announced itself was once missed altogether.
bool mark_capture(peer_process& tshark, int fd, int port, std::string_view payload) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  auto needle = text_of(port) + " Len=" + std::to_string(payload.size());
  auto until = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < until) {
    auto n =
        ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    if (n != static_cast<ssize_t>(payload.size())) return false;
    if (tshark.wait_for_output(needle, 200ms)) return true;
  }
  return false;
}

TEST(TlsInterop, TsharkDecryptsTheCaptureOnlyWithTheKeyLog) {
  const std::string to_server = "strata-interop-marker: client to server";
  const std::string to_client = "strata-interop-marker: server to client";
  auto bound = bind_loopback();
  ASSERT_NE(bound.port, 0);
  // A UDP datagram to ourselves marks each end of the exchange in the capture: once
  // tshark has printed it, every packet before it is in the file.
  int marker_port = 0;
  int marker_fd = test::loopback_socket(SOCK_DGRAM, -1, marker_port);
  ASSERT_GE(marker_fd, 0);
  struct fd_closer {
    int fd;
    ~fd_closer() { ::close(fd); }
  } close_marker{marker_fd};
  auto capture = scratch_path("tls.pcapng");
  auto keylog = scratch_path("tls-keylog.txt");
  auto tshark = peer_process::start(
      {"tshark", "-i", "lo", "-f", "tcp port " + text_of(bound.port) + " or udp port " + text_of(marker_port),
       "-w", capture, "-P", "-l"});
  ASSERT_TRUE(tshark);
  ASSERT_TRUE(tshark.wait_for_output("Capturing on", patience)) << tshark.output();
  ASSERT_TRUE(mark_capture(tshark, marker_fd, marker_port, "begin")) << tshark.output();

  seen client;
  seen server;
  {
    auto client_ctx = make_client({.keylog_file = keylog});
    auto server_ctx = make_server({});
    auto strata = on_strata_thread([&]() -> task<void> {
      co_await with_scope([&](scope& s) -> task<void> {
        s.spawn(serve_once(bound.listener, server_ctx, to_server, to_client, server));
        co_await talk_as_client(bound.port, client_ctx, "localhost", to_server, to_client, client);
      });
    });
  }
  ASSERT_FALSE(client.error) << client.error.message();
  ASSERT_FALSE(server.error) << server.error.message();
  EXPECT_EQ(client.version, "TLSv1.3");
  ASSERT_TRUE(mark_capture(tshark, marker_fd, marker_port, "end")) << tshark.output();
  tshark.stop();
  // tshark recognised the handshake on the wire (its summaries of the capture).
  EXPECT_NE(tshark.output().find("Client Hello"), std::string::npos) << tshark.output();
  EXPECT_NE(tshark.output().find("Server Hello"), std::string::npos) << tshark.output();

  // The plaintext never crossed the wire.
  auto raw = file_text(capture);
  ASSERT_FALSE(raw.empty()) << capture;
  EXPECT_EQ(raw.find("strata-interop-marker"), std::string::npos);

  auto follow = [&](const std::string& keys) {
    auto reader =
        peer_process::start({"tshark", "-r", capture, "-o", "tls.keylog_file:" + keys, "-d",
                             "tcp.port==" + text_of(bound.port) + ",tls", "-q", "-z", "follow,tls,ascii,0"});
    EXPECT_TRUE(reader);
    EXPECT_EQ(reader.wait_exit(patience), 0) << reader.output();
    return reader.output();
  };
  auto decrypted = follow(keylog);
  EXPECT_NE(decrypted.find(to_server), std::string::npos) << decrypted;
  EXPECT_NE(decrypted.find(to_client), std::string::npos) << decrypted;
  auto sealed = follow("/dev/null");
  EXPECT_EQ(sealed.find("strata-interop-marker"), std::string::npos) << sealed;
}

}  // namespace
}  // namespace strata
