// dtls: the cookie exchange, handshakes and records over in-process message pairs (typed
// API), through an in-test lossy layer that drops, duplicates, replays and reorders
// datagrams, and over udp, unix-dgram and seqpacket pipelines built from spec strings.
#include "strata/secure/dtls.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <openssl/err.h>

#include <array>
#include <cstring>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/timer.hpp"
#include "strata/transport/inproc.hpp"
#include "strata/transport/udp.hpp"
#include "support/co_test.hpp"
#include "support/pki.hpp"

namespace strata {
namespace {

using namespace std::chrono_literals;
using test::pki;

// (Options are built in statements of their own, never inside a co_await expression:
// GCC 12 miscompiles aggregate temporaries there; see tls_test.cpp.)
tls::context server_context() {
  std::string why;
  auto c = dtls::server_context(
      {.certificates = {{.cert_file = pki().server.cert_file, .key_file = pki().server.key_file}},
       .alpn = {"coap"}},
      &why);
  EXPECT_TRUE(c) << why;
  return c ? *c : tls::context{};
}

tls::context client_context(const std::string& ca) {
  std::string why;
  auto c = dtls::client_context({.ca_file = ca, .alpn = {"coap"}}, &why);
  EXPECT_TRUE(c) << why;
  return c ? *c : tls::context{};
}

tls::context client_context() { return client_context(pki().ca.cert_file); }

/// faults say what a lossy layer does to the datagrams it sends, each with its own
/// probability in percent: dropped, duplicated (the copy is a replay an attacker could
/// make), or held back and sent after the next one (reordered). A fixed seed makes every
/// run the same. (Every n-th datagram would not do: a flight of n datagrams would lose
/// the same one on every retransmission.)
struct faults {
  int drop_percent = 0;
  int duplicate_percent = 0;
  int reorder_percent = 0;
};

/// lossy is a message layer that spoils what it sends as `faults` say, deterministically.
template <class Lower>
class lossy {
 public:
  static constexpr properties capabilities = Lower::capabilities;
  lossy(Lower lower, faults f) : lower_(std::move(lower)), faults_(f) {}

  task<result<void>> send(const_buffers msg, deadline dl) {
    std::vector<std::byte> bytes;
    msg.copy_to(bytes);
    if (roll(faults_.drop_percent)) co_return result<void>{};
    if (roll(faults_.reorder_percent) && held_.empty()) {
      held_ = std::move(bytes);
      co_return result<void>{};
    }
    auto sent = co_await lower_.send(const_buffer(bytes), dl);
    if (!sent) co_return sent;
    if (!held_.empty()) {
      auto late = std::move(held_);
      held_.clear();
      (void)co_await lower_.send(const_buffer(late), dl);
    }
    if (roll(faults_.duplicate_percent)) {
      (void)co_await lower_.send(const_buffer(bytes), dl);
    }
    co_return result<void>{};
  }
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) { return lower_.recv(buf, dl); }
  task<result<void>> shutdown_write(deadline dl) { return lower_.shutdown_write(dl); }
  task<result<void>> close(deadline dl) { return lower_.close(dl); }

 private:
  bool roll(int percent) {
    seed_ = seed_ * 1103515245u + 12345u;
    return static_cast<int>((seed_ >> 16) % 100) < percent;
  }

  Lower lower_;
  faults faults_;
  std::uint32_t seed_ = 2026;
  std::vector<std::byte> held_;
};

using lossy_message = lossy<inproc::message>;
using association = dtls::connection<lossy_message>;

struct handshake_outcome {
  result<association> client = errc::not_supported;
  result<association> server = errc::not_supported;
};

/// shake runs both handshakes over an in-process pair whose two directions spoil
/// datagrams as `f` says, with fast retransmission.
task<handshake_outcome> shake(tls::context client, tls::context server, faults f, deadline dl) {
  handshake_outcome out;
  auto [a, b] = inproc::message_pair();
  dtls::link_options link{.mtu = 1200, .retransmit = 20ms};
  tls::client_options to{.server_name = "localhost"};
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn([](lossy_message lower, tls::context ctx, deadline d, dtls::link_options l,
               result<association>& into) -> task<void> {
      into = co_await dtls::accept(std::move(lower), std::move(ctx), d, l);
    }(lossy_message(std::move(b), f), server, dl, link, out.server));
    out.client = co_await dtls::connect(lossy_message(std::move(a), f), client, to, dl, link);
  });
  co_return out;
}

std::string text(const std::vector<std::byte>& v, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(v.data()), n);
}

TEST(Dtls, HandshakeCarriesMessagesAndAnswersFacts) {
  test::run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto out = co_await shake(client_context(), server_context(), {}, dl);
    CO_ASSERT_OK(out.client);
    CO_ASSERT_OK(out.server);
    auto& c = *out.client;
    auto& s = *out.server;
    EXPECT_EQ(*query<fact::alpn>(c), std::string("coap"));
    auto sec = query<fact::secure_session>(c);
    CO_ASSERT_OK(sec);
    EXPECT_EQ(sec->version, std::string("DTLSv1.2"));
    EXPECT_TRUE(sec->peer_verified);
    EXPECT_NE(query<fact::peer_certificate>(c)->subject.find("CN=localhost"), std::string::npos);
    EXPECT_TRUE(c.runtime_capabilities().secure);
    EXPECT_EQ(c.runtime_capabilities().connection, connection::based);
    // One record within the 1200-byte MTU: about 1160 bytes with AES-GCM.
    EXPECT_GE(c.max_message(), 1200 - dtls::record_overhead);
    EXPECT_LT(c.max_message(), 1200u);

    std::vector<std::byte> buf(2048);
    for (int i = 0; i < 50; ++i) {
      std::string msg = "message " + std::to_string(i);
      auto sent = co_await c.send(as_bytes(std::string_view(msg)), dl);
      CO_ASSERT_OK(sent);
      auto n = co_await s.recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text(buf, *n), msg);
    }
    // Boundaries are kept, and a message over the record's payload is refused whole.
    std::vector<std::byte> big(c.max_message() + 1, std::byte{'x'});
    auto refused = co_await c.send(const_buffer(big), dl);
    EXPECT_EQ(refused.error(), errc::message_too_large);
    big.pop_back();
    auto fits = co_await c.send(const_buffer(big), dl);
    CO_ASSERT_OK(fits);
    auto n = co_await s.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, big.size());
    // A buffer too small for the record: message_too_large, the record is dropped.
    auto again = co_await c.send(const_buffer(big), dl);
    CO_ASSERT_OK(again);
    std::array<std::byte, 16> tiny{};
    auto small = co_await s.recv(tiny, dl);
    EXPECT_EQ(small.error(), errc::message_too_large);

    auto ended = co_await s.shutdown_write(dl);
    CO_ASSERT_OK(ended);
    auto end = co_await c.recv(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
  });
}

// The server answers a ClientHello with a HelloVerifyRequest (handshake type 3) carrying
// a cookie, and goes on only when the ClientHello comes back with it.
TEST(Dtls, ServerAsksForACookieFirst) {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  tls::client_options to{.server_name = "localhost"};
  auto client = dtls::session::client(client_ctx, to, {}, {});
  ASSERT_TRUE(client);
  auto server = dtls::session::server(server_ctx, "127.0.0.1:5000", {});
  ASSERT_TRUE(server);
  ASSERT_TRUE(client->handshake());
  auto hello = client->next_output();
  ASSERT_GT(hello.size(), 13u);
  EXPECT_EQ(std::to_integer<int>(hello[0]), 22);  // handshake record
  EXPECT_EQ(std::to_integer<int>(hello[13]), 1);  // ClientHello
  server->feed(hello);
  ASSERT_TRUE(server->handshake());
  auto verify = server->next_output();
  ASSERT_GT(verify.size(), 13u);
  EXPECT_EQ(std::to_integer<int>(verify[13]), 3);  // HelloVerifyRequest
  EXPECT_FALSE(server->has_output());              // nothing else: no certificate, no key share
  // The same ClientHello replayed from another address gets another cookie, never a
  // ServerHello.
  auto other = dtls::session::server(server_ctx, "10.0.0.9:5000", {});
  ASSERT_TRUE(other);
  other->feed(hello);
  ASSERT_TRUE(other->handshake());
  auto other_verify = other->next_output();
  ASSERT_GT(other_verify.size(), 13u);
  EXPECT_EQ(std::to_integer<int>(other_verify[13]), 3);
  EXPECT_NE(other_verify, verify);
  // With the cookie echoed, the server answers with its flight.
  client->feed(verify);
  ASSERT_TRUE(client->handshake());
  auto second_hello = client->next_output();
  server->feed(second_hello);
  ASSERT_TRUE(server->handshake());
  ASSERT_TRUE(server->has_output());
  EXPECT_EQ(std::to_integer<int>(server->next_output()[13]), 2);  // ServerHello
}

// The cookie exchange on the listening side (cookie_gate): stateless refusals with a
// HelloVerifyRequest, a cookie bound to the address, and an admitted ClientHello from
// which a fresh server session continues the handshake (its message_seq is 1: OpenSSL's
// DTLSv1_listen sets the session up for that).
TEST(Dtls, CookieGateRefusesStatelesslyAndAdmitsAnEchoedCookie) {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  EXPECT_EQ(dtls::cookie_gate(client_ctx).error(), errc::invalid_argument);
  EXPECT_EQ(dtls::cookie_gate(tls::context{}).error(), errc::invalid_argument);
  auto gate = dtls::cookie_gate(server_ctx);
  ASSERT_TRUE(gate);
  auto here = *address::parse_ip("127.0.0.1:5000");
  auto elsewhere = *address::parse_ip("10.0.0.9:5000");
  tls::client_options to{.server_name = "localhost"};
  auto client = dtls::session::client(client_ctx, to, {}, {});
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->handshake());
  auto hello = client->next_output();
  std::vector<std::byte> reply;
  EXPECT_EQ((*gate)(here, hello, reply), admission::refuse);
  ASSERT_GT(reply.size(), 13u);
  EXPECT_EQ(std::to_integer<int>(reply[0]), 22);  // handshake record
  EXPECT_EQ(std::to_integer<int>(reply[13]), 3);  // HelloVerifyRequest
  auto verify = reply;
  // Not a ClientHello: dropped without an answer.
  for (const std::string& junk :
       std::vector<std::string>{"", "hello", std::string(13, '\x16'), std::string(200, '\x17')}) {
    reply.clear();
    EXPECT_EQ((*gate)(here, as_bytes(std::string_view(junk)), reply), admission::refuse);
    EXPECT_TRUE(reply.empty()) << junk.size();
  }
  client->feed(verify);
  ASSERT_TRUE(client->handshake());
  auto echoed = client->next_output();
  // The cookie is the address's: from elsewhere the same ClientHello gets a new one.
  reply.clear();
  EXPECT_EQ((*gate)(elsewhere, echoed, reply), admission::refuse);
  ASSERT_GT(reply.size(), 13u);
  EXPECT_EQ(std::to_integer<int>(reply[13]), 3);
  reply.clear();
  EXPECT_EQ((*gate)(here, echoed, reply), admission::admit);
  EXPECT_TRUE(reply.empty());
  // The association a listener then makes continues from the admitted ClientHello.
  auto server = dtls::session::server(server_ctx, here.to_string(), {});
  ASSERT_TRUE(server);
  server->feed(echoed);
  for (int round = 0; round < 10 && !(client->handshake_done() && server->handshake_done()); ++round) {
    auto s_step = server->handshake();
    ASSERT_TRUE(s_step) << s_step.error().message();
    if (round == 0) {
      ASSERT_TRUE(server->has_output());
      auto first = server->next_output();
      EXPECT_EQ(std::to_integer<int>(first[13]), 2);  // ServerHello, no second cookie
      client->feed(first);
    }
    while (server->has_output()) client->feed(server->next_output());
    auto c_step = client->handshake();
    ASSERT_TRUE(c_step) << c_step.error().message();
    while (client->has_output()) server->feed(client->next_output());
  }
  EXPECT_TRUE(client->handshake_done());
  EXPECT_TRUE(server->handshake_done());
}

// Loss, duplication (replays) and reordering: the handshake completes by retransmission,
// and every message that arrives arrives once and intact.
TEST(Dtls, LossReplaysAndReorderingAreSurvived) {
  struct scenario {
    const char* what;
    faults f;
  };
  for (auto sc :
       {scenario{"30% dropped", {.drop_percent = 30}}, scenario{"50% duplicated", {.duplicate_percent = 50}},
        scenario{"50% reordered", {.reorder_percent = 50}},
        scenario{"all three", {.drop_percent = 20, .duplicate_percent = 30, .reorder_percent = 30}}}) {
    SCOPED_TRACE(sc.what);
    test::run_test([&]() -> task<void> {
      auto dl = deadline::after(10s);
      auto out = co_await shake(client_context(), server_context(), sc.f, dl);
      CO_ASSERT_OK(out.client);
      CO_ASSERT_OK(out.server);
      constexpr int count = 60;
      std::set<int> seen;
      co_await with_scope([&](scope& s) -> task<void> {
        s.spawn([](association& c, deadline d) -> task<void> {
          for (int i = 0; i < count; ++i) {
            std::string msg = "m" + std::to_string(i);
            (void)co_await c.send(as_bytes(std::string_view(msg)), d);
          }
          // The end marker is sent until it is read: loss may eat some copies.
          for (int i = 0; i < 20; ++i) (void)co_await c.send(as_bytes(std::string_view("end")), d);
        }(*out.client, dl));
        std::vector<std::byte> buf(2048);
        for (;;) {
          auto n = co_await out.server->recv(buf, deadline::after(2s));
          CO_ASSERT_OK(n);
          auto got = text(buf, *n);
          if (got == "end") break;
          CO_ASSERT_TRUE(got.size() > 1 && got[0] == 'm');
          int i = std::stoi(got.substr(1));
          EXPECT_TRUE(seen.insert(i).second) << "message " << i << " delivered twice";
          EXPECT_LT(i, count);
        }
      });
      if (sc.f.drop_percent == 0) {
        EXPECT_EQ(seen.size(), static_cast<std::size_t>(count));
      } else {
        EXPECT_GT(seen.size(), 0u);
      }
    });
  }
}

/// engines are a client and a server session whose handshake ran in memory, datagram by
/// datagram (cookie exchange included).
struct engines {
  dtls::session client;
  dtls::session server;
};

engines shake_in_memory() {
  auto server_ctx = server_context();
  auto client_ctx = client_context();
  tls::client_options to{.server_name = "localhost"};
  auto client = dtls::session::client(client_ctx, to, {}, {});
  auto server = dtls::session::server(server_ctx, "127.0.0.1:5000", {});
  EXPECT_TRUE(client && server);
  if (!client || !server) return {};
  for (int i = 0; i < 10 && !(client->handshake_done() && server->handshake_done()); ++i) {
    EXPECT_TRUE(client->handshake());
    while (client->has_output()) server->feed(client->next_output());
    EXPECT_TRUE(server->handshake());
    while (server->has_output()) client->feed(server->next_output());
  }
  EXPECT_TRUE(client->handshake_done() && server->handshake_done());
  return {std::move(*client), std::move(*server)};
}

/// seal_one seals `text` and returns its datagram.
std::vector<std::byte> seal_one(dtls::session& s, std::string_view text) {
  EXPECT_TRUE(s.seal(as_bytes(text)));
  EXPECT_TRUE(s.has_output());
  return s.next_output();
}

// A datagram handed back after sending carries the next one: no allocation per message.
TEST(Dtls, SentDatagramBuffersAreReused) {
  auto e = shake_in_memory();
  ASSERT_TRUE(e.client.handshake_done());
  const std::string one(1000, 'a');
  const std::string two(1000, 'b');
  auto first = seal_one(e.client, one);
  const std::byte* where = first.data();
  const std::size_t bytes = first.capacity();
  e.server.feed(first);
  e.client.recycle(std::move(first));
  // Had the buffer been freed, this would most likely take its memory.
  std::vector<std::byte> blocker(bytes);
  auto second = seal_one(e.client, two);
  EXPECT_EQ(second.data(), where);
  e.server.feed(second);
  std::vector<std::byte> buf(2048);
  for (const auto& expected : {one, two}) {
    auto n = e.server.read(buf);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(text(buf, *n), expected);
  }
}

// seal with a sink hands the datagram over straight from OpenSSL's buffer; one the sink
// does not take, and every one sealed while another waits, queues in order.
TEST(Dtls, SealedDatagramsGoToASinkThatTakesThem) {
  auto e = shake_in_memory();
  ASSERT_TRUE(e.client.handshake_done());
  struct catcher {
    std::vector<std::vector<std::byte>> taken;
    bool take = true;
  } c;
  tls::record_sink sink;
  sink.context = &c;
  sink.write = [](void* context, const_buffer bytes) noexcept -> std::size_t {
    auto& self = *static_cast<catcher*>(context);
    if (!self.take) return 0;
    self.taken.emplace_back(bytes.begin(), bytes.end());
    return bytes.size();
  };
  ASSERT_TRUE(e.client.seal(const_buffers(as_bytes("straight")), sink));
  EXPECT_FALSE(e.client.has_output());
  ASSERT_EQ(c.taken.size(), 1u);
  c.take = false;
  ASSERT_TRUE(e.client.seal(const_buffers(as_bytes("refused")), sink));
  EXPECT_TRUE(e.client.has_output());
  c.take = true;
  // An earlier datagram waits: this one must queue behind it, not overtake it.
  ASSERT_TRUE(e.client.seal(const_buffers(as_bytes("behind")), sink));
  EXPECT_EQ(c.taken.size(), 1u);
  e.server.feed(c.taken.front());
  while (e.client.has_output()) e.server.feed(e.client.next_output());
  std::vector<std::byte> buf(2048);
  for (const auto* expected : {"straight", "refused", "behind"}) {
    auto n = e.server.read(buf);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(text(buf, *n), expected);
  }
}

// A datagram received into input_space() is read from that buffer (no copy), and the
// buffer comes back for the next one; feed's copies and input_space mix in order.
TEST(Dtls, DatagramsAreReceivedIntoTheSessionsBuffer) {
  auto e = shake_in_memory();
  ASSERT_TRUE(e.client.handshake_done());
  std::vector<std::byte> buf(2048);
  auto receive = [&](std::string_view message) -> const std::byte* {
    auto datagram = seal_one(e.client, message);
    auto space = e.server.input_space(65536);
    EXPECT_GE(space.size(), 65536u);
    EXPECT_LE(datagram.size(), space.size());
    std::memcpy(space.data(), datagram.data(), datagram.size());
    e.server.commit_input(datagram.size());
    return space.data();
  };
  const std::byte* first = receive("first");
  auto n = e.server.read(buf);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(text(buf, *n), "first");
  EXPECT_EQ(receive("second"), first) << "the buffer OpenSSL read from carries the next datagram";
  e.server.feed(seal_one(e.client, "third"));
  receive("fourth");
  for (const auto* expected : {"second", "third", "fourth"}) {
    n = e.server.read(buf);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(text(buf, *n), expected);
  }
  n = e.server.read(buf);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 0u);
}

// The error queue is emptied only when it holds something: an error some other code left
// on this thread must still not turn a dropped record (a replay) into a failed read, nor
// fail a seal.
TEST(Dtls, AStaleOpenSslErrorFailsNothing) {
  auto e = shake_in_memory();
  ASSERT_TRUE(e.client.handshake_done());
  auto once = seal_one(e.client, "once");
  std::vector<std::byte> buf(2048);
  e.server.feed(once);
  auto n = e.server.read(buf);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(text(buf, *n), "once");
  ERR_raise(ERR_LIB_USER, 1);
  e.server.feed(once);  // a replay: dropped
  auto replayed = e.server.read(buf);
  ASSERT_TRUE(replayed) << replayed.error().message();
  EXPECT_EQ(*replayed, 0u);
  ERR_raise(ERR_LIB_USER, 2);
  auto again = seal_one(e.client, "again");
  e.server.feed(again);
  n = e.server.read(buf);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(text(buf, *n), "again");
  ERR_clear_error();
}

// A buffer of max_record_plaintext bytes or more takes records directly, a smaller one
// through the session's buffer; either way a message arrives whole or not at all.
TEST(Dtls, ReadsIntoLargeAndSmallBuffers) {
  auto e = shake_in_memory();
  ASSERT_TRUE(e.client.handshake_done());
  const std::string message(e.client.max_payload(), 'm');
  for (std::size_t size : {dtls::max_record_plaintext + 1, dtls::max_record_plaintext,
                           dtls::max_record_plaintext - 1, message.size(), message.size() - 1}) {
    SCOPED_TRACE(size);
    std::vector<std::byte> buf(size, std::byte{'-'});
    e.server.feed(seal_one(e.client, message));
    auto n = e.server.read(buf);
    if (size < message.size()) {
      EXPECT_EQ(n.error(), errc::message_too_large);
      continue;
    }
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(text(buf, *n), message);
    if (*n < size) {
      EXPECT_EQ(buf[*n], std::byte{'-'});  // nothing written past the message
    }
  }
  // After a message too large for the buffer, the next one arrives whole.
  std::vector<std::byte> buf(dtls::max_record_plaintext);
  e.server.feed(seal_one(e.client, "next"));
  auto n = e.server.read(buf);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(text(buf, *n), "next");
}

TEST(Dtls, UntrustedServerAndSilentServerFail) {
  test::run_test([]() -> task<void> {
    auto rogue_trust = client_context(pki().rogue_ca.cert_file);
    auto out = co_await shake(rogue_trust, server_context(), {}, deadline::after(5s));
    EXPECT_EQ(out.client.error(), tls::error::certificate_untrusted) << out.client.error().message();
    EXPECT_EQ(out.server.error(), errc::authentication_failed) << out.server.error().message();

    // Nobody answers: the client retransmits until its deadline.
    auto [a, b] = inproc::message_pair();
    dtls::link_options link{.mtu = 1200, .retransmit = 20ms};
    tls::client_options to{.server_name = "localhost"};
    auto start = deadline::clock::now();
    auto c = co_await dtls::connect(std::move(a), client_context(), to, deadline::after(200ms), link);
    EXPECT_EQ(c.error(), errc::timed_out);
    EXPECT_GE(test::elapsed_since(start), 190ms);
    // ... and it did retransmit: the silent end holds several ClientHellos.
    int hellos = 0;
    std::vector<std::byte> buf(4096);
    while (co_await b.recv(buf, deadline::after(10ms))) ++hellos;
    EXPECT_GE(hellos, 3);
  });
}

// Pipelines: one listening datagram endpoint, a DTLS association per peer.
struct transport_case {
  std::string listen;
  std::string connect;
  int peers;  // unix-dgram-listen accepts once: its first sender gets the socket
};
class DtlsOver : public ::testing::TestWithParam<transport_case> {};

TEST_P(DtlsOver, SpecStringsServeSeveralPeers) {
  auto [listen_spec, connect_prefix, peers] = GetParam();
  auto listener = strata::listen(listen_spec + " | dtls(cert=" + pki().server.cert_file +
                                 ", key=" + pki().server.key_file + ", retransmit=50)");
  ASSERT_TRUE(listener) << listener.error().message();
  std::string target = connect_prefix;
  if (connect_prefix.back() == ':') target += std::to_string(listener->local_address()->port());
  std::string client_spec = target + " | dtls(sni=localhost, ca=" + pki().ca.cert_file + ", retransmit=50)";
  int served = 0;
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(10s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](any_listener& l, int n, int& count, deadline d) -> task<void> {
        co_await with_scope([&](scope& inner) -> task<void> {
          for (int i = 0; i < n; ++i) {
            auto conn = co_await l.accept(d);
            if (!conn) {
              ADD_FAILURE() << "accept: " << conn.error().message();
              co_return;
            }
            ++count;
            inner.spawn([](any_connection c, deadline dd) -> task<void> {
              auto& m = c.message();
              std::vector<std::byte> buf(2048);
              auto got = co_await m.recv(buf, dd);
              if (!got) co_return;
              (void)co_await m.send(const_buffer(buf.data(), *got), dd);
              std::vector<std::byte> rest(64);
              (void)co_await m.recv(rest, dd);  // until the client's close_notify
              (void)co_await c.close(dd);
            }(std::move(*conn), d));
          }
        });
      }(*listener, peers, served, dl));
      for (int i = 0; i < peers; ++i) {
        s.spawn([](std::string spec, int id, deadline d) -> task<void> {
          auto c = co_await strata::connect(spec, d);
          if (!c) {
            ADD_FAILURE() << "peer " << id << ": " << c.error().message();
            co_return;
          }
          EXPECT_EQ(query<fact::secure_session>(*c)->version, std::string("DTLSv1.2"));
          EXPECT_TRUE(c->runtime_capabilities().secure);
          auto& m = c->message();
          std::string msg = "hello from peer " + std::to_string(id);
          auto sent = co_await m.send(as_bytes(std::string_view(msg)), d);
          EXPECT_TRUE(sent) << sent.error().message();
          std::vector<std::byte> buf(2048);
          auto echo = co_await m.recv(buf, d);
          EXPECT_TRUE(echo) << echo.error().message();
          if (echo) {
            EXPECT_EQ(text(buf, *echo), msg);
          }
          (void)co_await c->close(d);
        }(client_spec, i, dl));
      }
      co_return;
    });
  });
  EXPECT_EQ(served, peers);
  listener->close();
}

INSTANTIATE_TEST_SUITE_P(Transports, DtlsOver,
                         ::testing::Values(transport_case{"udp-listen:127.0.0.1:0", "udp:127.0.0.1:", 5},
                                           transport_case{"unix-dgram-listen:@strata-dtls-test",
                                                          "unix-dgram:@strata-dtls-test", 1},
                                           transport_case{"seqpacket-listen:@strata-dtls-test",
                                                          "seqpacket:@strata-dtls-test", 5}));

// Simultaneous peers over udp-listen: every client's first flight is sent before the
// listener serves anyone, and every handshake completes without a retransmission. Both
// ends wait 5 s before sending a flight again and the deadline is shorter, so a first
// flight that the listener dropped fails the test.
constexpr int simultaneous_peers = 8;

/// simultaneous_clients starts `n` DTLS clients of `spec` at once and has each echo one
/// message through the server.
task<void> simultaneous_clients(std::string spec, int n, deadline dl) {
  co_await with_scope([&](scope& s) -> task<void> {
    for (int i = 0; i < n; ++i) {
      s.spawn([](std::string client_spec, int id, deadline d) -> task<void> {
        auto c = co_await strata::connect(client_spec, d);
        if (!c) {
          ADD_FAILURE() << "peer " << id << ": " << c.error().message();
          co_return;
        }
        auto& m = c->message();
        std::string msg = "simultaneous peer " + std::to_string(id);
        auto sent = co_await m.send(as_bytes(std::string_view(msg)), d);
        EXPECT_TRUE(sent) << sent.error().message();
        std::vector<std::byte> buf(2048);
        auto echo = co_await m.recv(buf, d);
        EXPECT_TRUE(echo) << "peer " << id << ": " << echo.error().message();
        if (echo) {
          EXPECT_EQ(text(buf, *echo), msg);
        }
        (void)co_await c->close(d);
      }(spec, i, dl));
    }
    co_return;
  });
}

/// echo_once answers one message of an association and closes it.
template <class Message>
task<void> echo_once(Message m, deadline dl) {
  std::vector<std::byte> buf(2048);
  auto got = co_await m.recv(buf, dl);
  if (got) (void)co_await m.send(const_buffer(buf.data(), *got), dl);
  (void)co_await m.close(dl);
}

std::string slow_client_spec(std::uint16_t port) {
  return "udp:127.0.0.1:" + std::to_string(port) + " | dtls(sni=localhost, ca=" + pki().ca.cert_file +
         ", retransmit=5s)";
}

TEST(DtlsPipeline, SimultaneousHandshakesOverUdpListenNeedNoRetransmission) {
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dtls(cert=" + pki().server.cert_file +
                                 ", key=" + pki().server.key_file + ", retransmit=5000ms)");
  ASSERT_TRUE(listener) << listener.error().message();
  auto spec = slow_client_spec(listener->local_address()->port());
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(4s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(simultaneous_clients(spec, simultaneous_peers, dl));
      // Every client sends its ClientHello before it first waits: once they all ran,
      // the listener starts serving.
      co_await yield();
      co_await with_scope([&](scope& inner) -> task<void> {
        for (int i = 0; i < simultaneous_peers; ++i) {
          auto conn = co_await listener->accept(dl);
          if (!conn) {
            ADD_FAILURE() << "accept " << i << ": " << conn.error().message();
            co_return;
          }
          inner.spawn([](any_connection c, deadline d) -> task<void> {
            co_await echo_once(std::move(c.message()), d);
          }(std::move(*conn), dl));
        }
      });
    });
  });
  EXPECT_EQ(listener->handshakes().ready, std::uint64_t{simultaneous_peers});
  listener->close();
}

TEST(Dtls, SimultaneousHandshakesOnATypedUdpListenerNeedNoRetransmission) {
  auto ctx = server_context();
  auto l = udp::listener::bind("127.0.0.1:0");
  ASSERT_TRUE(l);
  auto spec = slow_client_spec(l->local_address()->port());
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(4s);
    dtls::link_options link{.mtu = 1200, .retransmit = 5s};
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(simultaneous_clients(spec, simultaneous_peers, dl));
      co_await yield();
      co_await with_scope([&](scope& inner) -> task<void> {
        for (int i = 0; i < simultaneous_peers; ++i) {
          auto conn = co_await l->accept(dl);
          if (!conn) {
            ADD_FAILURE() << "accept " << i << ": " << conn.error().message();
            co_return;
          }
          inner.spawn(
              [](udp::connected c, tls::context server, deadline d, dtls::link_options lk) -> task<void> {
                auto a = co_await dtls::accept(std::move(c), std::move(server), d, lk);
                if (!a) {
                  ADD_FAILURE() << "handshake: " << a.error().message();
                  co_return;
                }
                co_await echo_once(std::move(*a), d);
              }(std::move(*conn), ctx, dl, link));
        }
      });
    });
  });
  EXPECT_EQ(l->stats().accepted, std::uint64_t{simultaneous_peers});
}

/// open_descriptors counts this process's open descriptors.
int open_descriptors() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n - 1;  // the directory's own
}

/// a_client_hello is a real ClientHello without a cookie, as a client's first flight.
std::vector<std::byte> a_client_hello() {
  auto ctx = client_context();
  tls::client_options to{.server_name = "localhost"};
  auto client = dtls::session::client(ctx, to, {}, {});
  EXPECT_TRUE(client);
  if (!client || !client->handshake()) return {};
  return client->next_output();
}

bool is_hello_verify_request(const std::vector<std::byte>& d, std::size_t n) {
  return n > 13 && std::to_integer<int>(d[0]) == 22 && std::to_integer<int>(d[13]) == 3;
}

// A flood of cookie-less ClientHellos from 200 addresses: each gets a HelloVerifyRequest
// from the listening socket, and the listener keeps nothing for any of them (no
// connection, no socket, no waiting datagram, no handshake). Then a real client is served.
TEST(DtlsPipeline, CookieGateAnswersAFloodOfClientHellosWithoutState) {
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dtls(cert=" + pki().server.cert_file +
                                 ", key=" + pki().server.key_file + ")");
  ASSERT_TRUE(listener) << listener.error().message();
  auto where = *listener->local_address();
  auto hello = a_client_hello();
  ASSERT_FALSE(hello.empty());
  auto client_spec = slow_client_spec(where.port());
  constexpr int forged = 200, wave = 25;  // waves: the listener's receive buffer is not flooded
  test::run_test([&]() -> task<void> {
    int descriptors_before = open_descriptors();  // the loop's included
    auto dl = deadline::after(8s);
    co_await with_scope([&](scope& s) -> task<void> {
      // The listener serves while the flood comes (its accept loop runs the gate).
      s.spawn([](any_listener& l, deadline d) -> task<void> {
        auto conn = co_await l.accept(d);
        if (!conn) {
          ADD_FAILURE() << "accept: " << conn.error().message();
          co_return;
        }
        co_await echo_once(std::move(conn->message()), d);
      }(*listener, dl));
      std::vector<std::byte> buf(2048);
      int answered = 0;
      for (int first = 0; first < forged; first += wave) {
        std::vector<udp::socket> senders;
        for (int i = 0; i < wave; ++i) {
          auto s = udp::socket::bind("127.0.0.1:0");
          CO_ASSERT_OK(s);
          auto w = co_await s->send_to(const_buffer(hello), where, dl);
          CO_ASSERT_OK(w);
          senders.push_back(std::move(*s));
        }
        for (auto& sender : senders) {
          auto got = co_await sender.recv_from(buf, dl);
          CO_ASSERT_OK(got);
          EXPECT_EQ(got->from, where);
          if (is_hello_verify_request(buf, got->size)) ++answered;
        }
      }
      EXPECT_EQ(answered, forged);
      auto seen = listener->datagrams();
      EXPECT_EQ(seen.refused, std::uint64_t{forged});
      EXPECT_EQ(seen.answered, std::uint64_t{forged});
      EXPECT_EQ(seen.accepted, 0u);
      EXPECT_EQ(seen.admitted, 0u);
      EXPECT_EQ(seen.pending_senders, 0u);
      EXPECT_EQ(listener->handshakes().accepted, 0u);
      // No descriptor besides the listening socket (the senders are closed by now).
      EXPECT_EQ(open_descriptors(), descriptors_before);
      // A real client (which echoes its cookie) is served.
      co_await simultaneous_clients(client_spec, 1, dl);
      seen = listener->datagrams();
      EXPECT_EQ(seen.accepted, 1u);
      EXPECT_EQ(seen.admitted, 1u);
      EXPECT_EQ(seen.refused, std::uint64_t{forged + 1});  // its own first ClientHello
    });
  });
  EXPECT_EQ(listener->handshakes().ready, 1u);
  listener->close();
}

// A datagram from an unknown sender that is not a ClientHello is dropped without an
// answer and without state. The listener serves datagrams in order, so the answer to a
// ClientHello sent after it proves the junk was seen, and answered with nothing.
TEST(DtlsPipeline, CookieGateDropsWhatIsNotAClientHello) {
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dtls(cert=" + pki().server.cert_file +
                                 ", key=" + pki().server.key_file + ")");
  ASSERT_TRUE(listener) << listener.error().message();
  auto where = *listener->local_address();
  auto hello = a_client_hello();
  ASSERT_FALSE(hello.empty());
  // An application-data record of epoch 1, a truncated header, a ClientHello of epoch 1
  // and text.
  std::vector<std::byte> data_record(hello);
  data_record[0] = std::byte{23};
  std::vector<std::byte> epoch_one(hello);
  epoch_one[4] = std::byte{1};
  std::vector<std::byte> short_header(hello.begin(), hello.begin() + 10);
  std::vector<std::vector<std::byte>> junk{data_record, epoch_one, short_header};
  auto text_bytes = as_bytes("GET / HTTP/1.1\r\n\r\n");
  junk.emplace_back(text_bytes.begin(), text_bytes.end());
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](any_listener& l) -> task<void> {
        (void)co_await l.accept(deadline::after(5s));  // runs the gate; canceled at the end
      }(*listener));
      auto sender = udp::socket::bind("127.0.0.1:0");
      CO_ASSERT_OK(sender);
      for (const auto& j : junk) {
        auto w = co_await sender->send_to(const_buffer(j), where, dl);
        CO_ASSERT_OK(w);
      }
      auto w = co_await sender->send_to(const_buffer(hello), where, dl);
      CO_ASSERT_OK(w);
      std::vector<std::byte> buf(2048);
      auto got = co_await sender->recv_from(buf, dl);
      CO_ASSERT_OK(got);
      EXPECT_TRUE(is_hello_verify_request(buf, got->size)) << "the first answer is the ClientHello's";
      auto seen = listener->datagrams();
      EXPECT_EQ(seen.refused, junk.size() + 1);
      EXPECT_EQ(seen.answered, 1u);
      EXPECT_EQ(seen.accepted, 0u);
      EXPECT_EQ(seen.pending_senders, 0u);
      s.cancel();
    });
  });
  EXPECT_EQ(listener->handshakes().accepted, 0u);
  listener->close();
}

// dtls::listen puts the cookie gate on a typed listener and hands out ready associations.
TEST(Dtls, ListenGatesATypedUdpListenerAndServesSimultaneousPeers) {
  auto l = udp::listener::bind("127.0.0.1:0");
  ASSERT_TRUE(l);
  auto port = l->local_address()->port();
  dtls::link_options link{.mtu = 1200, .retransmit = 5s};
  handshake_options handshakes{.timeout = 4s};
  auto ready = dtls::listen(std::move(*l), server_context(), link, handshakes);
  auto spec = slow_client_spec(port);
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(4s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(simultaneous_clients(spec, simultaneous_peers, dl));
      co_await yield();
      co_await with_scope([&](scope& inner) -> task<void> {
        for (int i = 0; i < simultaneous_peers; ++i) {
          auto conn = co_await ready.accept(dl);
          if (!conn) {
            ADD_FAILURE() << "accept " << i << ": " << conn.error().message();
            co_return;
          }
          EXPECT_EQ(query<fact::secure_session>(*conn)->version, std::string("DTLSv1.2"));
          inner.spawn(echo_once(std::move(*conn), dl));
        }
      });
    });
  });
  auto seen = ready.next_layer().stats();
  EXPECT_EQ(seen.accepted, std::uint64_t{simultaneous_peers});
  EXPECT_EQ(seen.admitted, std::uint64_t{simultaneous_peers});
  EXPECT_GE(seen.refused, std::uint64_t{simultaneous_peers});  // their first ClientHellos
  EXPECT_EQ(ready.stats().ready, std::uint64_t{simultaneous_peers});
  ready.close();
}

TEST(DtlsPipeline, CheckerRefusesWhatCannotWork) {
  pipeline_error e;
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:1 | dtls", e));
  EXPECT_NE(e.message.find("message"), std::string::npos) << e.message;
  EXPECT_FALSE(pipeline::parse("udp-listen:127.0.0.1:0 | dtls", e));
  EXPECT_NE(e.message.find("cert="), std::string::npos) << e.message;
  EXPECT_FALSE(pipeline::parse("udp:127.0.0.1:1 | dtls(mtu=100)", e));
  EXPECT_NE(e.message.find("mtu"), std::string::npos) << e.message;
  auto checked = pipeline::parse("udp:127.0.0.1:1 | dtls(mtu=1400)", e);
  ASSERT_TRUE(checked) << e.message;
  EXPECT_TRUE(checked->top().secure);
  EXPECT_TRUE(checked->top().authenticated);
  EXPECT_EQ(checked->top().connection, connection::based);
  EXPECT_EQ(checked->top().max_message, 1400 - dtls::record_overhead);
  EXPECT_FALSE(checked->top().reliable);
}

}  // namespace
}  // namespace strata
