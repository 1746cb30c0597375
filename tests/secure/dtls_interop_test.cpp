// dtls against an implementation the project did not write (issue 9, item 4):
//   - strata's client against `openssl s_server -listen` (OpenSSL's stateless cookie
//     exchange, ALPN, -mtu 1200, a client certificate s_server demands);
//   - `openssl s_client` against strata's server: its HelloVerifyRequest is the first
//     thing s_client's trace shows; mutual authentication with client-cert=require;
//   - several s_clients at once on one strata listener (one udp-listen address).
//
// Every peer is started here on a 127.0.0.1 port and stopped by its PID
// (support/peer_process.hpp); a missing peer fails the test. The strata side runs on a
// thread of its own with its own event loop, because the peer waits block the test
// thread. Nothing sleeps: the test thread waits for the peers' output, the strata thread
// for its sockets, both under deadlines.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"
#include "support/co_test.hpp"
#include "support/peer_process.hpp"
#include "support/pki.hpp"

namespace strata {
namespace {

using namespace std::chrono_literals;
using test::peer_options;
using test::peer_process;
using test::pki;

/// patience bounds every wait of these tests, on either thread.
constexpr auto patience = 10s;

/// on_strata_thread runs `body` (a callable returning task<void>) on a thread of its own
/// with its own event loop, under run_test's time limit; the thread joins when the
/// returned object goes (or at join()). Declare it after everything the body uses.
template <class Body>
std::jthread on_strata_thread(Body body) {
  return std::jthread([body = std::move(body)]() mutable { test::run_test(body, patience + 5s); });
}

std::string text(const std::vector<std::byte>& v, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(v.data()), n);
}

/// openssl runs `openssl <args>` as a peer whose stdin the test writes (s_server quits at
/// end of file on its stdin; s_client sends what it reads there).
peer_process openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  peer_options options;
  options.stdin_pipe = true;
  return peer_process::start(std::move(args), options);
}

/// seen is what one strata end knows about its association and what it received.
struct seen {
  std::error_code error{};  ///< the first failure (handshake or I/O); empty when none
  std::string alpn;
  std::string version;
  std::string peer_subject;
  bool peer_verified = false;
  bool authenticated = false;  ///< runtime_capabilities().authenticated
  std::string peer;            ///< the peer's address
  std::string received;        ///< the first message
  int extra_messages = 0;      ///< messages after it, until the end
  std::error_code end{};       ///< how the association ended (end_of_stream: close_notify)
};

void record_facts(any_connection& c, seen& out) {
  if (auto alpn = query<fact::alpn>(c)) out.alpn = *alpn;
  if (auto sec = query<fact::secure_session>(c)) {
    out.version = sec->version;
    out.peer_verified = sec->peer_verified;
  }
  if (auto cert = query<fact::peer_certificate>(c)) out.peer_subject = cert->subject;
  if (auto peer = c.peer_address()) out.peer = peer->to_string();
  out.authenticated = c.runtime_capabilities().authenticated;
}

/// receive_one puts the next message of `c` into out.received.
task<void> receive_one(any_connection& c, seen& out, deadline dl) {
  std::vector<std::byte> buf(4096);
  auto n = co_await c.message().recv(buf, dl);
  if (!n) {
    out.error = n.error();
  } else {
    out.received = text(buf, *n);
  }
}

/// receive_end reads `c` until it fails, counting the messages, and records how it
/// ended (end_of_stream after the peer's close_notify).
task<void> receive_end(any_connection& c, seen& out, deadline dl) {
  std::vector<std::byte> buf(4096);
  for (;;) {
    auto n = co_await c.message().recv(buf, dl);
    if (!n) {
      out.end = n.error();
      co_return;
    }
    ++out.extra_messages;
  }
}

/// serve answers one accepted association: records its facts, reads one message, sends
/// `reply_prefix` + that message back, and reads until the peer ends.
task<void> serve(any_connection c, std::string reply_prefix, seen& out, deadline dl) {
  record_facts(c, out);
  co_await receive_one(c, out, dl);
  if (!out.error) {
    std::string reply = reply_prefix + out.received;
    auto sent = co_await c.message().send(as_bytes(std::string_view(reply)), dl);
    if (!sent) out.error = sent.error();
  }
  if (!out.error) co_await receive_end(c, out, dl);
  (void)co_await c.close(dl);
}

/// serve_one accepts one association on `l` and serves it (see serve); false when the
/// accept failed (out.error says why).
task<bool> serve_one(any_listener& l, std::string reply_prefix, seen& out, deadline dl) {
  auto c = co_await l.accept(dl);
  if (!c) {
    out.error = c.error();
    co_return false;
  }
  co_await serve(std::move(*c), std::move(reply_prefix), out, dl);
  co_return true;
}

/// listen_dtls binds a strata DTLS listener on 127.0.0.1 (an ephemeral port) with the
/// test server's credential and `extra` parameters.
any_listener listen_dtls(const std::string& extra) {
  auto l = strata::listen("udp-listen:127.0.0.1:0 | dtls(cert=" + pki().server.cert_file +
                          ", key=" + pki().server.key_file + extra + ")");
  EXPECT_TRUE(l) << l.error().message();
  return l ? std::move(*l) : any_listener{};
}

int port_of(const any_listener& l) {
  auto where = l.local_address();
  return where ? where->port() : 0;
}

// -- strata's client against openssl s_server --------------------------------------------

/// talk_to_s_server connects strata's DTLS client (`spec`) and says hello to s_server,
/// which prints it and sends back what the test writes to its stdin; then strata closes
/// with close_notify.
void talk_to_s_server(peer_process& server, const std::string& spec, seen& client) {
  auto strata_side = on_strata_thread([&]() -> task<void> {
    auto dl = deadline::after(patience);
    auto c = co_await strata::connect(spec, dl);
    if (!c) {
      client.error = c.error();
      co_return;
    }
    record_facts(*c, client);
    auto sent = co_await c->message().send(as_bytes(std::string_view("hello from strata\n")), dl);
    if (!sent) client.error = sent.error();
    if (!client.error) co_await receive_one(*c, client, dl);
    (void)co_await c->close(dl);
  });
  if (server.wait_for_output("hello from strata", patience)) {
    EXPECT_TRUE(server.write_stdin("hello from openssl\n"));
  } else {
    ADD_FAILURE() << "s_server did not print strata's message:\n" << server.output();
  }
  strata_side.join();
  // close_notify: s_server ends the association cleanly and, with -naccept 1, exits 0.
  EXPECT_EQ(server.wait_exit(patience), 0) << server.output();
}

/// start_s_server starts `openssl s_server -dtls1_2 -listen` (cookies on) on a free
/// 127.0.0.1 port (into `port`) with the test server's credential, serving one client,
/// with `extra` arguments, and waits until it listens. A false peer_process (the failure
/// recorded) when it does not.
peer_process start_s_server(int& port, const std::vector<std::string>& extra) {
  port = test::free_loopback_port(SOCK_DGRAM);
  if (port == 0) return {};
  std::vector<std::string> args{"s_server", "-dtls1_2", "-listen", "-naccept", "1"};
  args.insert(args.end(), {"-accept", "127.0.0.1:" + std::to_string(port)});
  args.insert(args.end(), {"-cert", pki().server.cert_file, "-key", pki().server.key_file});
  args.insert(args.end(), extra.begin(), extra.end());
  auto server = openssl(args);
  if (server && !server.wait_for_output("ACCEPT", patience)) {
    ADD_FAILURE() << "s_server did not listen:\n" << server.output();
    return {};
  }
  return server;
}

/// client_spec is strata's DTLS client towards 127.0.0.1:`port`, trusting the test CA,
/// with `extra` parameters.
std::string client_spec(int port, const std::string& extra) {
  return "udp:127.0.0.1:" + std::to_string(port) + " | dtls(sni=localhost, ca=" + pki().ca.cert_file + extra +
         ")";
}

TEST(DtlsInterop, StrataClientAgainstSServerWithCookiesAlpnAndMtu) {
  int port = 0;
  auto server = start_s_server(port, {"-alpn", "coap", "-mtu", "1200"});
  ASSERT_TRUE(server);
  seen client;
  talk_to_s_server(server, client_spec(port, ", alpn=coap, mtu=1200"), client);
  EXPECT_FALSE(client.error) << client.error.message();
  EXPECT_EQ(client.received, "hello from openssl\n");
  EXPECT_EQ(client.version, "DTLSv1.2");
  EXPECT_EQ(client.alpn, "coap");
  EXPECT_TRUE(client.peer_verified);
  EXPECT_NE(client.peer_subject.find("CN=localhost"), std::string::npos) << client.peer_subject;
  auto out = server.output();
  EXPECT_NE(out.find("ALPN protocols advertised by the client: coap"), std::string::npos) << out;
  EXPECT_NE(out.find("DONE"), std::string::npos) << out;
  EXPECT_EQ(out.find("ERROR"), std::string::npos) << out;
}

TEST(DtlsInterop, StrataClientCertificateToSServer) {
  int port = 0;
  // -Verify: s_server demands a client certificate and checks it against the CA.
  auto server = start_s_server(port, {"-Verify", "1", "-CAfile", pki().ca.cert_file, "-verify_return_error"});
  ASSERT_TRUE(server);
  seen client;
  talk_to_s_server(server,
                   client_spec(port, ", cert=" + pki().client.cert_file + ", key=" + pki().client.key_file),
                   client);
  EXPECT_FALSE(client.error) << client.error.message();
  EXPECT_EQ(client.received, "hello from openssl\n");
  auto out = server.output();
  EXPECT_NE(out.find("strata test client"), std::string::npos) << "s_server saw no client certificate:\n"
                                                               << out;
}

// -- openssl s_client against strata's server --------------------------------------------

std::vector<std::string> s_client_args(int port) {
  std::vector<std::string> args{"s_client", "-dtls1_2", "-connect", "127.0.0.1:" + std::to_string(port)};
  args.insert(args.end(),
              {"-CAfile", pki().ca.cert_file, "-verify_return_error", "-servername", "localhost"});
  return args;
}

/// handshake_done is what s_client prints once its handshake has finished and the
/// server's certificate was verified.
constexpr std::string_view handshake_done = "Verify return code: 0 (ok)";

/// talk_from_s_client has `client` (an s_client) say hello to the strata server behind
/// `served`'s thread, wait for the reply, then end with close_notify (stdin's end).
void talk_from_s_client(peer_process& client, std::string_view hello, std::string_view reply) {
  ASSERT_TRUE(client.wait_for_output(handshake_done, patience)) << client.output();
  EXPECT_TRUE(client.write_stdin(hello));
  EXPECT_TRUE(client.wait_for_output(reply, patience)) << client.output();
  client.close_stdin();
  EXPECT_EQ(client.wait_exit(patience), 0) << client.output();
}

TEST(DtlsInterop, SClientAgainstStrataServerIsAskedForACookieFirst) {
  auto listener = listen_dtls(", alpn=coap");
  ASSERT_TRUE(listener);
  int port = port_of(listener);
  seen server;
  auto strata_side = on_strata_thread([&, held = std::move(listener)]() mutable -> task<void> {
    auto l = std::move(held);  // ends with the coroutine, on its loop
    (void)co_await serve_one(l, "hello from strata, ", server, deadline::after(patience));
    l.close();
  });

  // -trace decodes DTLS 1.2 handshake messages by name (-msg in OpenSSL 3.0 does not).
  auto args = s_client_args(port);
  args.insert(args.end(), {"-alpn", "coap", "-trace"});
  auto client = openssl(args);
  ASSERT_TRUE(client);
  talk_from_s_client(client, "hello from openssl\n", "hello from strata, hello from openssl");
  strata_side.join();

  EXPECT_FALSE(server.error) << server.error.message();
  EXPECT_EQ(server.received, "hello from openssl\n");
  EXPECT_EQ(server.end, errc::end_of_stream) << server.end.message();
  EXPECT_EQ(server.version, "DTLSv1.2");
  EXPECT_EQ(server.alpn, "coap");
  EXPECT_FALSE(server.authenticated);  // no client certificate asked for
  auto out = client.output();
  EXPECT_NE(out.find("ALPN protocol: coap"), std::string::npos);
  // The first thing our server sent was a HelloVerifyRequest with a 32-byte cookie (an
  // HMAC-SHA256 of the client's address), and its ServerHello came only after the
  // ClientHello came back carrying that cookie.
  auto first_received = out.find("Received Record");
  ASSERT_NE(first_received, std::string::npos) << out;
  auto verify_request = out.find("HelloVerifyRequest", first_received);
  auto next_received = out.find("Received Record", first_received + 1);
  auto server_hello = out.find("ServerHello,", first_received);
  ASSERT_NE(verify_request, std::string::npos) << out;
  EXPECT_LT(verify_request, next_received) << "the first record from strata was not a HelloVerifyRequest";
  EXPECT_LT(verify_request, server_hello);
  auto cookie = out.find("cookie (len=32)", verify_request);
  EXPECT_NE(cookie, std::string::npos) << out;
  auto second_hello = out.find("ClientHello,", verify_request);
  EXPECT_LT(second_hello, server_hello);
  EXPECT_NE(out.find("cookie (len=32)", second_hello), std::string::npos);
}

TEST(DtlsInterop, SClientCertificateToStrataServerRequiringOne) {
  auto listener = listen_dtls(", client-cert=require, ca=" + pki().ca.cert_file);
  ASSERT_TRUE(listener);
  int port = port_of(listener);
  seen served;
  std::vector<handshake_failure> refused;
  auto strata_side = on_strata_thread([&, held = std::move(listener)]() mutable -> task<void> {
    auto l = std::move(held);  // ends with the coroutine, on its loop
    auto dl = deadline::after(patience);
    if (!co_await serve_one(l, "hello, ", served, dl)) co_return;
    // Then an s_client without a certificate: its handshake fails, which ends the wait.
    co_await with_scope([&](scope& s) -> task<void> {
      l.on_handshake_failure([&](const handshake_failure& f) {
        refused.push_back(f);
        s.cancel();
      });
      auto none = co_await l.accept(dl);
      EXPECT_FALSE(none) << "a client without a certificate was accepted";
    });
    l.on_handshake_failure(nullptr);
    l.close();
  });

  auto args = s_client_args(port);
  args.insert(args.end(), {"-cert", pki().client.cert_file, "-key", pki().client.key_file});
  auto client = openssl(args);
  ASSERT_TRUE(client);
  talk_from_s_client(client, "hello from openssl\n", "hello, hello from openssl");

  auto anonymous = openssl(s_client_args(port));
  ASSERT_TRUE(anonymous);
  auto code = anonymous.wait_exit(patience);
  EXPECT_TRUE(code && *code != 0) << "s_client without a certificate was served:\n" << anonymous.output();
  strata_side.join();

  EXPECT_FALSE(served.error) << served.error.message();
  EXPECT_EQ(served.received, "hello from openssl\n");
  EXPECT_EQ(served.end, errc::end_of_stream) << served.end.message();
  EXPECT_TRUE(served.peer_verified);
  EXPECT_TRUE(served.authenticated);
  EXPECT_NE(served.peer_subject.find("strata test client"), std::string::npos) << served.peer_subject;
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].error, errc::authentication_failed) << refused[0].error.message();
}

// Several s_clients hold associations with one strata listener (one udp-listen address)
// at the same time: the server takes all of them before it answers any.
TEST(DtlsInterop, SeveralSClientsAtOnceOnOneListener) {
  constexpr int peers = 4;
  auto listener = listen_dtls("");
  ASSERT_TRUE(listener);
  int port = port_of(listener);
  std::vector<seen> served(peers);
  auto strata_side = on_strata_thread([&, held = std::move(listener)]() mutable -> task<void> {
    auto l = std::move(held);  // ends with the coroutine, on its loop
    auto dl = deadline::after(patience);
    std::vector<any_connection> all;
    for (int i = 0; i < peers; ++i) {
      auto c = co_await l.accept(dl);
      if (!c) {
        served[static_cast<std::size_t>(i)].error = c.error();
        co_return;
      }
      all.push_back(std::move(*c));
    }
    co_await with_scope([&](scope& s) -> task<void> {
      for (std::size_t i = 0; i < all.size(); ++i) s.spawn(serve(std::move(all[i]), "echo: ", served[i], dl));
      co_return;
    });
    l.close();
  });

  std::vector<peer_process> clients;
  for (int i = 0; i < peers; ++i) {
    clients.push_back(openssl(s_client_args(port)));
    ASSERT_TRUE(clients.back());
  }
  for (auto& c : clients) ASSERT_TRUE(c.wait_for_output(handshake_done, patience)) << c.output();
  for (int i = 0; i < peers; ++i) {
    EXPECT_TRUE(clients[static_cast<std::size_t>(i)].write_stdin("peer " + std::to_string(i) + "\n"));
  }
  for (int i = 0; i < peers; ++i) {
    auto& c = clients[static_cast<std::size_t>(i)];
    EXPECT_TRUE(c.wait_for_output("echo: peer " + std::to_string(i) + "\n", patience)) << c.output();
    c.close_stdin();
  }
  for (auto& c : clients) EXPECT_EQ(c.wait_exit(patience), 0) << c.output();
  strata_side.join();

  std::set<std::string> messages, addresses;
  for (auto& s : served) {
    EXPECT_FALSE(s.error) << s.error.message();
    EXPECT_EQ(s.end, errc::end_of_stream) << s.end.message();
    messages.insert(s.received);
    addresses.insert(s.peer);
  }
  EXPECT_EQ(messages.size(), static_cast<std::size_t>(peers));
  EXPECT_EQ(addresses.size(), static_cast<std::size_t>(peers));
  for (int i = 0; i < peers; ++i) EXPECT_EQ(messages.count("peer " + std::to_string(i) + "\n"), 1u);
}

}  // namespace
}  // namespace strata
