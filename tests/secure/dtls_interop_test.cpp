// dtls against an implementation the project did not write, and over lossy paths (issue
// 9, item 4):
//   - strata's client against `openssl s_server -listen` (OpenSSL's stateless cookie
//     exchange, ALPN, -mtu 1200, a client certificate s_server demands);
//   - `openssl s_client` against strata's server: its HelloVerifyRequest is the first
//     thing s_client's trace shows; mutual authentication with client-cert=require;
//     s_client's renegotiation refused;
//   - several s_clients at once on one strata listener (one udp-listen address);
//   - strata's client and server exchanging requests, resent until echoed, over a path
//     that loses, delays, reorders and duplicates datagrams: a real lossy link through the
//     kernel in a network namespace the test makes (support/netns_link: a TUN device that
//     loses and delays, since this kernel has no netem), and a relay in the test drawing
//     netem's fates, reordering and duplication included (on any kernel);
//   - each implementation retransmitting to the other through the relay, which spoils
//     chosen handshake messages by script, so every run is the same.
//
// Every peer is started here on a 127.0.0.1 port and stopped by its PID
// (support/peer_process.hpp); a missing peer fails the test. The strata side runs on a
// thread of its own with its own event loop, because the peer waits block the test
// thread. Nothing sleeps: the test thread waits for the peers' output, the strata thread
// for its sockets, both under deadlines; the relay's thread waits for its sockets and for
// the datagrams it delays.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/secure/dtls.hpp"
#include "strata/transport/udp.hpp"
#include "support/co_test.hpp"
#include "support/netns_link.hpp"
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

using test::on_strata_thread;

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
  bool authenticated = false;          ///< runtime_capabilities().authenticated
  std::string peer;                    ///< the peer's address
  std::string received;                ///< the first message
  int extra_messages = 0;              ///< messages after it, until the end
  std::error_code end{};               ///< how the association ended (end_of_stream: close_notify)
  datagram_listener_stats listener{};  ///< what the listener below did, when it closed
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

/// serving serves one association on `listener` (serve_one) on a strata thread, then
/// closes the listener; `out` must outlive the thread.
std::jthread serving(any_listener listener, std::string reply_prefix, seen& out) {
  return on_strata_thread(
      [held = std::move(listener), reply_prefix = std::move(reply_prefix), &out]() mutable -> task<void> {
        auto l = std::move(held);  // ends with the coroutine, on its loop
        (void)co_await serve_one(l, reply_prefix, out, deadline::after(patience));
        out.listener = l.datagrams();
        l.close();
      });
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
  auto strata_side = serving(std::move(listener), "hello from strata, ", server);

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
  // The cookie was asked for on the listening side: s_client's first ClientHello was
  // answered there, and only the one that echoed the cookie made a connection.
  EXPECT_GE(server.listener.refused, 1u);
  EXPECT_GE(server.listener.answered, 1u);
  EXPECT_EQ(server.listener.admitted, 1u);
  EXPECT_EQ(server.listener.accepted, 1u);
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

// strata's contexts refuse renegotiation: s_client's "R" gets a no_renegotiation alert,
// s_client gives up, and strata's recv reports s_client's handshake_failure alert.
TEST(DtlsInterop, SClientRenegotiationIsRefused) {
  auto listener = listen_dtls("");
  ASSERT_TRUE(listener);
  int port = port_of(listener);
  seen served;
  auto strata_side = serving(std::move(listener), "hello, ", served);

  auto client = openssl(s_client_args(port));
  ASSERT_TRUE(client);
  ASSERT_TRUE(client.wait_for_output(handshake_done, patience)) << client.output();
  EXPECT_TRUE(client.write_stdin("hello from openssl\n"));
  EXPECT_TRUE(client.wait_for_output("hello, hello from openssl", patience)) << client.output();
  EXPECT_TRUE(client.write_stdin("R\n"));
  EXPECT_TRUE(client.wait_for_output("no renegotiation", patience)) << client.output();
  auto code = client.wait_exit(patience);
  EXPECT_TRUE(code && *code != 0) << client.output();
  strata_side.join();

  EXPECT_FALSE(served.error) << served.error.message();
  EXPECT_EQ(served.extra_messages, 0);
  constexpr int handshake_failure_alert = 40;  // RFC 5246 7.2
  EXPECT_EQ(served.end, std::error_code(static_cast<int>(tls::error::peer_alert) + handshake_failure_alert,
                                        tls::category()))
      << served.end.message();
}

// Several s_clients hold associations with one strata listener (one udp-listen address)
// at the same time: the server takes all of them before it answers any. They start all
// at once: udp-listen keeps the first datagrams of the peers it has not accepted yet for
// their accepts (docs/protocols/udp.md), so none waits for a retransmission.
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

// -- a lossy path: a kernel link in a namespace, and a relay in user space -----------------

/// fate is what a lossy path does with one datagram.
enum class fate {
  pass,       ///< sent after the path's delay
  drop,       ///< lost
  duplicate,  ///< sent twice (the copy is a replay)
  early,      ///< sent at once, overtaking those still delayed (netem's reorder)
  hold,       ///< sent right after the next datagram in the same direction (reordered)
};

/// fate_of decides the fate of each datagram from its direction and bytes (on the relay's
/// thread).
using fate_of = std::function<fate(bool to_client, std::span<const char> datagram)>;

/// netem_like draws the fates of netem's "loss 20% delay 5ms reorder 25% duplicate 5%"
/// from a fixed seed, for the relay and its 5 ms delay; the namespace link loses and
/// delays as much.
constexpr auto netem_delay = 5ms;

fate_of netem_like(std::uint32_t seed) {
  return [random = std::minstd_rand(seed)](bool, std::span<const char>) mutable {
    auto roll = [&random](unsigned percent) { return random() % 100 < percent; };
    if (roll(20)) return fate::drop;
    if (roll(5)) return fate::duplicate;
    if (roll(25)) return fate::early;
    return fate::pass;
  };
}

/// lossy_relay forwards datagrams between one client and a server on 127.0.0.1, each as
/// `decide` says: netem in user space, for any kernel, or a script that spoils chosen
/// handshake messages. It polls its two sockets on a thread of its own and holds delayed
/// datagrams until they are due (the only waiting it does); stop() ends it.
class lossy_relay {
 public:
  /// counts say what the relay did.
  struct counts {
    int forwarded = 0;
    int dropped = 0;
    int duplicated = 0;
    int reordered = 0;  ///< sent early or held
  };

  /// lossy_relay listens on 127.0.0.1 (port()) and forwards to 127.0.0.1:`server_port`.
  lossy_relay(int server_port, std::chrono::milliseconds delay, fate_of decide)
      : delay_(delay), decide_(std::move(decide)) {
    int back_port = 0;
    front_ = test::loopback_socket(SOCK_DGRAM, -1, port_);
    back_ = test::loopback_socket(SOCK_DGRAM, -1, back_port);
    wake_ = ::eventfd(0, EFD_CLOEXEC);
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server.sin_port = htons(static_cast<std::uint16_t>(server_port));
    if (front_ < 0 || back_ < 0 || wake_ < 0 ||
        ::connect(back_, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
      ADD_FAILURE() << "lossy_relay: " << std::strerror(errno);
      port_ = 0;
      return;
    }
    thread_ = std::thread([this] { run(); });
  }
  lossy_relay(const lossy_relay&) = delete;
  lossy_relay& operator=(const lossy_relay&) = delete;
  ~lossy_relay() {
    stop();
    for (int fd : {front_, back_, wake_})
      if (fd >= 0) ::close(fd);
  }

  /// port is where the client sends; 0 when the relay could not start.
  int port() const noexcept { return port_; }

  /// stop ends the relay (what it still holds is lost) and returns what it did.
  counts stop() {
    if (thread_.joinable()) {
      std::uint64_t one = 1;
      (void)!::write(wake_, &one, sizeof one);
      thread_.join();
    }
    return counts_;
  }

 private:
  using clock = std::chrono::steady_clock;
  struct queued {
    clock::time_point due;
    bool to_client;
    std::vector<char> bytes;
  };

  void enqueue(clock::time_point due, bool to_client, std::vector<char> bytes) {
    auto at = std::upper_bound(queue_.begin(), queue_.end(), due,
                               [](clock::time_point t, const queued& q) { return t < q.due; });
    queue_.insert(at, queued{due, to_client, std::move(bytes)});
  }

  // take gives one datagram its fate.
  void take(bool to_client, const char* data, std::size_t size) {
    std::vector<char> bytes(data, data + size);
    auto now = clock::now();
    auto& held = held_[to_client ? 1 : 0];
    switch (decide_(to_client, std::span<const char>(bytes))) {
      case fate::drop:
        ++counts_.dropped;
        return;
      case fate::hold:
        ++counts_.reordered;
        held = std::move(bytes);
        return;
      case fate::duplicate:
        ++counts_.duplicated;
        enqueue(now + delay_, to_client, bytes);
        enqueue(now + delay_, to_client, std::move(bytes));
        break;
      case fate::early:
        ++counts_.reordered;
        enqueue(now, to_client, std::move(bytes));
        break;
      case fate::pass:
        enqueue(now + delay_, to_client, std::move(bytes));
        break;
    }
    if (!held.empty()) {
      enqueue(now + delay_, to_client, std::move(held));
      held.clear();
    }
  }

  void run() {
    sockaddr_in client{};
    socklen_t client_size = 0;
    std::vector<char> buf(65536);
    for (;;) {
      int timeout = -1;
      if (!queue_.empty()) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(queue_.front().due - clock::now());
        timeout = static_cast<int>(std::max<std::int64_t>(0, left.count()));
      }
      std::array<pollfd, 3> fds{pollfd{front_, POLLIN, 0}, pollfd{back_, POLLIN, 0},
                                pollfd{wake_, POLLIN, 0}};
      if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) return;
      if (fds[2].revents != 0) return;
      if (fds[0].revents != 0) {
        sockaddr_in from{};
        socklen_t size = sizeof from;
        auto n = ::recvfrom(front_, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from),
                            &size);
        if (n >= 0) {
          client = from;
          client_size = size;
          take(false, buf.data(), static_cast<std::size_t>(n));
        }
      }
      if (fds[1].revents != 0) {
        auto n = ::recv(back_, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n >= 0 && client_size != 0) take(true, buf.data(), static_cast<std::size_t>(n));
      }
      for (auto now = clock::now(); !queue_.empty() && queue_.front().due <= now; queue_.pop_front()) {
        const auto& q = queue_.front();
        if (q.to_client) {
          (void)::sendto(front_, q.bytes.data(), q.bytes.size(), 0, reinterpret_cast<sockaddr*>(&client),
                         client_size);
        } else {
          (void)::send(back_, q.bytes.data(), q.bytes.size(), 0);
        }
        ++counts_.forwarded;
      }
    }
  }

  std::chrono::milliseconds delay_;
  fate_of decide_;
  int front_ = -1;
  int back_ = -1;
  int wake_ = -1;
  int port_ = 0;
  std::deque<queued> queue_;
  std::array<std::vector<char>, 2> held_;  // [to_client]
  counts counts_;
  std::thread thread_;
};

/// DTLS adds no reliability, so the client resends a request until its echo comes back.
constexpr int request_count = 50;
constexpr auto resend_after = 40ms;

/// request is copy `attempt` of request `id`: a header naming both, then a body whose
/// length (16..915 bytes) and bytes follow from the id, so a damaged or mixed-up message
/// shows.
std::string request(int id, int attempt) {
  std::string m = "request " + std::to_string(id) + " copy " + std::to_string(attempt) + ":";
  int body = 16 + (id * 97) % 900;
  for (int i = 0; i < body; ++i) m.push_back(static_cast<char>('a' + (id + i) % 26));
  return m;
}

/// parse_request reads id and copy back from `m` and checks all of it against request();
/// nullopt when `m` is not exactly one of them.
std::optional<std::pair<int, int>> parse_request(std::string_view m) {
  auto number = [&m](std::string_view before, int& into) {
    if (!m.starts_with(before)) return false;
    m.remove_prefix(before.size());
    auto [end, ec] = std::from_chars(m.data(), m.data() + m.size(), into);
    if (ec != std::errc{}) return false;
    m.remove_prefix(static_cast<std::size_t>(end - m.data()));
    return true;
  };
  std::string_view whole = m;
  int id = 0, attempt = 0;
  if (!number("request ", id) || !number(" copy ", attempt) || id < 0 || attempt < 0) return std::nullopt;
  if (whole != request(id, attempt)) return std::nullopt;
  return std::pair{id, attempt};
}

/// exchange_report is what both ends of the lossy exchange saw.
struct exchange_report {
  std::vector<std::string> problems;  ///< everything that went wrong, in words
  int answered = 0;                   ///< requests whose echo came back (counted once per id)
  int sends = 0;                      ///< requests sent, resends included
  int late_echoes = 0;                ///< echoes of a copy sent before the one answered
  int served = 0;                     ///< requests the server received
};

tls::context dtls_server_context() {
  std::string why;
  tls::context_options options{
      .certificates = {{.cert_file = pki().server.cert_file, .key_file = pki().server.key_file}}};
  auto c = dtls::server_context(options, &why);
  EXPECT_TRUE(c) << why;
  return c ? *c : tls::context{};
}

tls::context dtls_client_context() {
  std::string why;
  tls::context_options options{.ca_file = pki().ca.cert_file};
  auto c = dtls::client_context(options, &why);
  EXPECT_TRUE(c) << why;
  return c ? *c : tls::context{};
}

/// arrival checks a message that reached `where` ("the server", or "the client" for an
/// echo): an intact request, whose id and copy `arrived` did not hold yet. Its id and
/// copy, or nullopt when it is damaged; what is wrong goes into r.problems.
std::optional<std::pair<int, int>> arrival(const std::string& m, std::set<std::pair<int, int>>& arrived,
                                           const std::string& where, exchange_report& r) {
  auto which = parse_request(m);
  if (!which) {
    r.problems.push_back(where + " received a damaged message: " + m.substr(0, 40));
    return std::nullopt;
  }
  if (!arrived.insert(*which).second) {
    r.problems.push_back(where + " received request " + std::to_string(which->first) + " copy " +
                         std::to_string(which->second) + " twice");
  }
  return which;
}

/// echo_requests accepts one association on `l` and sends every request back as it came,
/// until it is canceled. No request may arrive twice: the path's duplicates are replays,
/// which DTLS drops.
task<void> echo_requests(udp::listener& l, tls::context ctx, dtls::link_options link, exchange_report& r,
                         deadline dl) {
  auto lower = co_await l.accept(dl);
  if (!lower) {
    r.problems.push_back("udp accept: " + lower.error().message());
    co_return;
  }
  auto s = co_await dtls::accept(std::move(*lower), std::move(ctx), dl, link);
  if (!s) {
    r.problems.push_back("server handshake: " + s.error().message());
    co_return;
  }
  std::set<std::pair<int, int>> received;
  std::vector<std::byte> buf(4096);
  for (;;) {
    auto n = co_await s->recv(buf, dl);
    if (!n) {
      if (n.error() != errc::operation_canceled) r.problems.push_back("server recv: " + n.error().message());
      break;
    }
    if (!arrival(text(buf, *n), received, "the server", r)) continue;
    ++r.served;
    (void)co_await s->send(const_buffer(buf.data(), *n),
                           dl);  // lost or not: the client resends
  }
  (void)co_await s->close(dl);
}

/// send_requests connects to `host`:`port` and sends each request until its echo comes
/// back intact, one request at a time. The path's duplicates are replays, which DTLS
/// drops: no echo may arrive twice.
task<void> send_requests(std::string host, int port, tls::context ctx, dtls::link_options link,
                         exchange_report& r, deadline dl) {
  auto lower = udp::connect(host + ":" + std::to_string(port));
  if (!lower) {
    r.problems.push_back("udp connect: " + lower.error().message());
    co_return;
  }
  tls::client_options to{.server_name = "localhost"};
  auto c = co_await dtls::connect(std::move(*lower), std::move(ctx), to, dl, link);
  if (!c) {
    r.problems.push_back("client handshake: " + c.error().message());
    co_return;
  }
  std::set<std::pair<int, int>> echoes;
  std::vector<std::byte> buf(4096);
  for (int id = 0; id < request_count; ++id) {
    bool answered = false;
    for (int attempt = 0; !answered; ++attempt) {
      auto m = request(id, attempt);
      ++r.sends;
      auto sent = co_await c->send(as_bytes(std::string_view(m)), dl);
      if (!sent) {
        r.problems.push_back("client send: " + sent.error().message());
        co_return;
      }
      auto resend_at = deadline::earlier(dl, deadline::after(resend_after));
      while (!answered) {
        auto n = co_await c->recv(buf, resend_at);
        if (!n && n.error() == errc::timed_out && resend_at != dl) break;  // lost: send again
        if (!n) {
          r.problems.push_back("client recv (request " + std::to_string(id) + "): " + n.error().message());
          co_return;
        }
        auto which = arrival(text(buf, *n), echoes, "the client", r);
        if (!which) continue;
        if (which->first == id) {
          answered = true;
          ++r.answered;
        } else if (which->first < id) {
          ++r.late_echoes;
        } else {
          r.problems.push_back("an echo of request " + std::to_string(which->first) + " not sent yet");
        }
      }
    }
  }
  (void)co_await c->close(dl);
}

/// lossy_exchange runs strata's DTLS server on `l` and strata's client towards
/// 127.0.0.1:`port` (the server, or a relay in front of it) on this thread's loop, with
/// fast retransmission.
task<void> lossy_exchange(udp::listener& l, std::string host, int port, exchange_report& r) {
  auto dl = deadline::after(patience);
  dtls::link_options link{.mtu = 1200, .retransmit = 50ms};
  scope server;
  server.spawn(echo_requests(l, dtls_server_context(), link, r, dl));
  co_await send_requests(std::move(host), port, dtls_client_context(), link, r, dl);
  server.cancel();
  (void)co_await server.join(dl);
}

/// exchange_failures says in words what is wrong with an exchange (nothing when it is right).
std::vector<std::string> exchange_failures(const exchange_report& r) {
  auto out = r.problems;
  if (r.answered != request_count)
    out.push_back(std::to_string(r.answered) + " of " + std::to_string(request_count) + " requests answered");
  if (r.served < request_count) out.push_back("the server received only " + std::to_string(r.served));
  if (r.sends <= request_count) out.push_back("nothing was lost: the path did not spoil anything");
  return out;
}

void check_exchange(const exchange_report& r) {
  for (const auto& p : exchange_failures(r)) ADD_FAILURE() << p;
  ::testing::Test::RecordProperty("requests", request_count);
  ::testing::Test::RecordProperty("sends", r.sends);
  ::testing::Test::RecordProperty("served", r.served);
  ::testing::Test::RecordProperty("late_echoes", r.late_echoes);
}

// A real path through the kernel's IP and UDP code that loses and delays datagrams: the
// TUN link of support/netns_link in a network namespace the test makes in a child
// process (addresses 10.77.0.1 and 10.77.0.2 exist only there). It loses 20% of the
// datagrams and delays each by 5 ms, as netem would; this kernel has no netem qdisc, and
// the relay test below adds netem's reordering and duplication in user space.
TEST(DtlsLossyPath, KernelPathWithLossInANetworkNamespace) {
  if (auto why = test::netns_unavailable(); !why.empty()) GTEST_SKIP() << why;
  (void)pki();  // made before the fork: the child only reads the files
  test::netns_link_options link;
  link.loss = 0.2;
  link.delay = netem_delay;
  link.seed = 2026;
  int rc = test::run_in_netns(
      link,
      [] {
        exchange_report report;
        auto l = udp::listener::bind(std::string(test::netns_local) + ":0");
        if (!l) {
          std::fprintf(stderr, "udp bind in the namespace: %s\n", l.error().message().c_str());
          return 1;
        }
        int port = l->local_address()->port();
        strata::run([](udp::listener listener, int to, exchange_report& r) -> task<void> {
          co_await lossy_exchange(listener, test::netns_remote, to, r);
        }(std::move(*l), port, report));
        auto failures = exchange_failures(report);
        for (const auto& f : failures) std::fprintf(stderr, "dtls over the lossy link: %s\n", f.c_str());
        return failures.empty() ? 0 : 1;
      },
      std::chrono::duration_cast<std::chrono::seconds>(patience + 5s));
  EXPECT_EQ(rc, 0) << "the exchange in the namespace failed (its reasons are on stderr)";
}

// The same exchange through the relay drawing netem's fates: it runs on any kernel.
TEST(DtlsLossyPath, RelayThatLosesDelaysReordersAndDuplicates) {
  auto l = udp::listener::bind("127.0.0.1:0");
  ASSERT_TRUE(l) << l.error().message();
  lossy_relay relay(l->local_address()->port(), netem_delay, netem_like(2026));
  ASSERT_NE(relay.port(), 0);
  exchange_report report;
  {
    auto strata_side = on_strata_thread([&, held = std::move(*l)]() mutable -> task<void> {
      auto listener = std::move(held);
      co_await lossy_exchange(listener, "127.0.0.1", relay.port(), report);
    });
  }
  auto did = relay.stop();
  check_exchange(report);
  EXPECT_GT(did.dropped, 0);
  EXPECT_GT(did.duplicated, 0);
  EXPECT_GT(did.reordered, 0);
  ::testing::Test::RecordProperty("relay_forwarded", did.forwarded);
  ::testing::Test::RecordProperty("relay_dropped", did.dropped);
}

// -- retransmission across implementations: a script spoils chosen handshake messages ----
//
// Random loss is no way to test OpenSSL's end: its first timeout is 1 s, doubled after
// each loss, so a handshake under netem's 20% can take longer than a test should; and
// s_server -listen takes SSL_accept's retryable -1 for a failure ("ERROR"), which OpenSSL
// returns when it drops a ChangeCipherSpec that came before the ClientKeyExchange it
// follows (seen when the path lost that one message of strata's resent flight). A script
// names the datagrams to spoil instead, by the first record they carry, so every run
// loses, reorders and duplicates the same messages.

/// rule spoils the `nth` datagram (from 1) going `to_client` (or to the server) whose
/// first record has content type `content` and, for an epoch-0 handshake record,
/// handshake type `handshake` (-1: any).
struct rule {
  bool to_client;
  int content;
  int handshake;
  int nth;
  fate what;
  std::string name;  ///< for messages: what the rule does
};

constexpr int change_cipher_spec = 20, handshake_record = 22, application_data = 23;
constexpr int client_hello = 1, server_hello = 2, certificate_message = 11, server_key_exchange = 12,
              new_session_ticket = 4, client_key_exchange = 16;

/// script applies rules (on the relay's thread) and remembers which fired; read unfired()
/// after the relay stopped.
class script {
 public:
  explicit script(std::vector<rule> rules) : rules_(std::move(rules)), seen_(rules_.size()) {}

  fate operator()(bool to_client, std::span<const char> d) {
    if (d.size() < 13) return fate::pass;
    int content = static_cast<unsigned char>(d[0]);
    bool epoch0 = d[3] == 0 && d[4] == 0;
    int handshake =
        content == handshake_record && epoch0 && d.size() > 13 ? static_cast<unsigned char>(d[13]) : -1;
    auto what = fate::pass;
    for (std::size_t i = 0; i < rules_.size(); ++i) {
      const auto& r = rules_[i];
      if (r.to_client != to_client || r.content != content || (r.handshake >= 0 && r.handshake != handshake))
        continue;
      if (++seen_[i] == r.nth) what = r.what;
    }
    return what;
  }

  /// unfired names the rules whose datagram never came.
  std::vector<std::string> unfired() const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < rules_.size(); ++i)
      if (seen_[i] < rules_[i].nth) out.push_back(rules_[i].name);
    return out;
  }

 private:
  std::vector<rule> rules_;
  std::vector<int> seen_;
};

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : "; ") + n;
  return out;
}

TEST(DtlsLossyPath, StrataClientAndSServerRetransmitToEachOther) {
  int port = 0;
  auto server = start_s_server(port, {});
  ASSERT_TRUE(server);
  script spoil({
      {false, handshake_record, client_hello, 1, fate::drop, "strata's first ClientHello lost"},
      {true, handshake_record, server_hello, 1, fate::drop, "s_server's first flight lost"},
      {true, handshake_record, server_hello, 2, fate::hold,
       "s_server's resent ServerHello after its Certificate"},
      {true, handshake_record, certificate_message, 1, fate::duplicate, "s_server's Certificate twice"},
      {false, handshake_record, client_key_exchange, 1, fate::drop,
       "strata's first ClientKeyExchange flight lost"},
      {false, handshake_record, client_key_exchange, 2, fate::duplicate,
       "strata's resent ClientKeyExchange twice"},
      // (No replayed application data: s_server's blocking SSL_read, having dropped the
      // replay, would wait for another datagram instead of sending what its stdin gets.)
  });
  lossy_relay relay(port, 0ms, std::ref(spoil));
  ASSERT_NE(relay.port(), 0);

  seen client;
  talk_to_s_server(server, client_spec(relay.port(), ", retransmit=100"), client);
  relay.stop();
  EXPECT_EQ(joined(spoil.unfired()), "");
  EXPECT_FALSE(client.error) << client.error.message();
  EXPECT_EQ(client.received, "hello from openssl\n");
  EXPECT_TRUE(client.peer_verified);
}

TEST(DtlsLossyPath, SClientAndStrataServerRetransmitToEachOther) {
  auto listener = listen_dtls(", retransmit=100");
  ASSERT_TRUE(listener);
  script spoil({
      {false, handshake_record, client_hello, 1, fate::drop, "s_client's first ClientHello lost"},
      {true, handshake_record, server_hello, 1, fate::drop, "strata's first flight lost"},
      {true, handshake_record, server_hello, 2, fate::hold,
       "strata's resent ServerHello after its Certificate"},
      {true, handshake_record, server_key_exchange, 1, fate::duplicate, "strata's ServerKeyExchange twice"},
      // The server has finished: its recv must answer s_client's resent flight.
      {true, handshake_record, new_session_ticket, 1, fate::drop, "strata's last flight lost"},
      {false, application_data, -1, 1, fate::duplicate, "s_client's first message replayed"},
  });
  lossy_relay relay(port_of(listener), 0ms, std::ref(spoil));
  ASSERT_NE(relay.port(), 0);
  seen served;
  auto strata_side = serving(std::move(listener), "hello from strata, ", served);

  auto client = openssl(s_client_args(relay.port()));
  ASSERT_TRUE(client);
  talk_from_s_client(client, "hello from openssl\n", "hello from strata, hello from openssl");
  strata_side.join();
  relay.stop();
  EXPECT_EQ(joined(spoil.unfired()), "");
  EXPECT_FALSE(served.error) << served.error.message();
  EXPECT_EQ(served.received, "hello from openssl\n");
  EXPECT_EQ(served.extra_messages, 0) << "the replayed record was delivered";
  EXPECT_EQ(served.end, errc::end_of_stream) << served.end.message();
}

}  // namespace
}  // namespace strata
