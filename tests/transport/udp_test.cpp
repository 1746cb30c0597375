// udp: the shared message conformance suite over connected loopback sockets (IPv4 drop and
// keep modes, IPv6), then UDP's own behaviour: send_to / recv_from, size limits (65507 /
// 65527, no silent truncation), batching, the socat-like listener, IPv4 multicast on
// loopback, and the other processes: socat as a third-party peer and the strata CLI.
// Loopback only, ephemeral ports only. UDP may lose datagrams in principle; on loopback,
// with small volumes and receive buffers larger than what a test has in flight, it does
// not, so the tests may expect every datagram.
#include "strata/transport/udp.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "transport/dgram_child.hpp"

using namespace std::chrono_literals;

namespace strata::test {

namespace udp_conformance {

/// connected_pair binds two sockets on `host` port 0 and connects each to the other.
inline result<std::pair<udp::connected, udp::connected>> connected_pair(std::string_view host, bool keep) {
  udp::bind_options options{.receive_buffer = 1 << 20, .keep_too_large = keep};
  auto a = udp::socket::bind(std::string(host) + ":0", options);
  if (!a) return unexpected(a.error());
  auto b = udp::socket::bind(std::string(host) + ":0", options);
  if (!b) return unexpected(b.error());
  auto a_at = a->local_address();
  auto b_at = b->local_address();
  if (!a_at || !b_at) return errc::invalid_argument;
  auto ca = std::move(*a).connect(*b_at);
  if (!ca) return unexpected(ca.error());
  auto cb = std::move(*b).connect(*a_at);
  if (!cb) return unexpected(cb.error());
  return std::pair<udp::connected, udp::connected>{std::move(*ca), std::move(*cb)};
}

struct udp_ipv4 {
  using message_type = udp::connected;
  static constexpr std::size_t max_message = udp::max_ipv4_message;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = false;  // the kernel drops it
  static task<result<std::pair<udp::connected, udp::connected>>> make_pair(deadline) {
    co_return connected_pair("127.0.0.1", false);
  }
};

struct udp_ipv4_keep {
  using message_type = udp::connected;
  static constexpr std::size_t max_message = udp::max_ipv4_message;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = true;  // keep_too_large peeks first
  static task<result<std::pair<udp::connected, udp::connected>>> make_pair(deadline) {
    co_return connected_pair("127.0.0.1", true);
  }
};

struct udp_ipv6 {
  using message_type = udp::connected;
  static constexpr std::size_t max_message = udp::max_ipv6_message;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = false;
  static task<result<std::pair<udp::connected, udp::connected>>> make_pair(deadline) {
    co_return connected_pair("[::1]", false);
  }
};

using message_types = ::testing::Types<udp_ipv4, udp_ipv4_keep, udp_ipv6>;
INSTANTIATE_TYPED_TEST_SUITE_P(Udp, message_conformance, message_types);

}  // namespace udp_conformance

namespace {

using dgram::child;

static_assert(message_socket<udp::connected>);
static_assert(datagram_socket<udp::socket>);
static_assert(listener<udp::listener>);

udp::socket bound(std::string_view where = "127.0.0.1:0", udp::bind_options options = {}) {
  auto s = udp::socket::bind(where, options);
  EXPECT_TRUE(s) << s.error().message();
  return s ? std::move(*s) : udp::socket{};
}

std::string text_of(const std::vector<std::byte>& buf, std::size_t n) {
  return std::string(as_text(const_buffer(buf.data(), n)));
}

TEST(Udp, CapabilityRowIsConnectionlessUnreliableMulticast) {
  constexpr auto caps = udp::socket::capabilities;
  EXPECT_EQ(caps.connection, connection::less);
  EXPECT_EQ(caps.unit, unit::message);
  EXPECT_FALSE(caps.reliable);
  EXPECT_FALSE(caps.ordered);
  EXPECT_EQ(caps.domain, domain::net);
  EXPECT_EQ(caps.topology, topology::multicast);
  EXPECT_EQ(caps.max_message, 65507u);
  auto v6 = bound("[::1]:0");
  EXPECT_EQ(v6.max_message(), 65527u);
  EXPECT_EQ(v6.runtime_capabilities().max_message, 65527u);
}

TEST(Udp, SendToAndRecvFromCarryTheSender) {
  run_test([]() -> task<void> {
    auto a = bound();
    auto b = bound();
    auto dl = deadline::after(5s);
    auto b_at = b.local_address();
    CO_ASSERT_OK(b_at);
    EXPECT_NE(b_at->port(), 0);
    auto w = co_await a.send_to(as_bytes("hello"), *b_at, dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(64);
    auto r = co_await b.recv_from(buf, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(text_of(buf, r->size), "hello");
    EXPECT_EQ(r->from, *a.local_address());
    // Answer the sender at the address it came from.
    auto back = co_await b.send_to(as_bytes("hi back"), r->from, dl);
    CO_ASSERT_OK(back);
    auto r2 = co_await a.recv_from(buf, dl);
    CO_ASSERT_OK(r2);
    EXPECT_EQ(text_of(buf, r2->size), "hi back");
    EXPECT_EQ(r2->from, *b_at);
  });
}

TEST(Udp, EmptyDatagramsAreMessages) {
  run_test([]() -> task<void> {
    auto p = udp_conformance::connected_pair("127.0.0.1", false);
    CO_ASSERT_OK(p);
    auto dl = deadline::after(5s);
    auto w = co_await p->first.send(const_buffer{}, dl);
    CO_ASSERT_OK(w);
    std::array<std::byte, 8> buf;
    auto n = co_await p->second.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 0u);
    // ...and receiving one into an empty buffer is no error either.
    auto w2 = co_await p->first.send(const_buffer{}, dl);
    CO_ASSERT_OK(w2);
    auto n2 = co_await p->second.recv(mutable_buffer{}, dl);
    CO_ASSERT_OK(n2);
    EXPECT_EQ(*n2, 0u);
  });
}

TEST(Udp, TrySendSendsADatagramAndKeepsTheSizeLimit) {
  run_test([]() -> task<void> {
    auto p = udp_conformance::connected_pair("127.0.0.1", false);
    CO_ASSERT_OK(p);
    auto w = p->first.try_send(as_bytes("now"));
    CO_ASSERT_OK(w);
    EXPECT_TRUE(*w);
    std::vector<std::byte> too_big(p->first.max_message() + 1);
    EXPECT_EQ(p->first.try_send(too_big).error(), errc::message_too_large);
    std::array<std::byte, 8> buf;
    auto n = co_await p->second.recv(buf, deadline::after(5s));
    CO_ASSERT_OK(n);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *n), "now");
  });
}

TEST(Udp, SizeLimitsAreEnforcedWithoutTruncation) {
  run_test([]() -> task<void> {
    auto a = bound();
    auto b = bound("127.0.0.1:0", {.receive_buffer = 1 << 20});
    auto to = *b.local_address();
    auto dl = deadline::after(5s);
    std::vector<std::byte> big(udp::max_ipv4_message + 1, std::byte{'u'});
    // One byte over the IPv4 limit: refused before the kernel sees it.
    auto over = co_await a.send_to(const_buffer(big), to, dl);
    EXPECT_EQ(over.error(), errc::message_too_large);
    // A gather list is measured as a whole.
    std::array<const_buffer, 2> halves{const_buffer(big.data(), 40000), const_buffer(big.data(), 25508)};
    auto over2 = co_await a.send_to(std::span<const const_buffer>(halves), to, dl);
    EXPECT_EQ(over2.error(), errc::message_too_large);
    // Exactly the limit arrives whole.
    auto at_limit = co_await a.send_to(const_buffer(big.data(), udp::max_ipv4_message), to, dl);
    CO_ASSERT_OK(at_limit);
    std::vector<std::byte> buf(70000);
    auto r = co_await b.recv_from(buf, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->size, udp::max_ipv4_message);
    // Nothing else arrived: the refused sends sent nothing.
    auto none = co_await b.recv_from(buf, deadline::already());
    EXPECT_EQ(none.error(), errc::timed_out);
  });
}

TEST(Udp, Ipv6CarriesUpTo65527Bytes) {
  run_test([]() -> task<void> {
    auto a = bound("[::1]:0");
    auto b = bound("[::1]:0", {.receive_buffer = 1 << 20});
    auto to = *b.local_address();
    auto dl = deadline::after(5s);
    std::vector<std::byte> big(udp::max_ipv6_message + 1, std::byte{'6'});
    auto over = co_await a.send_to(const_buffer(big), to, dl);
    EXPECT_EQ(over.error(), errc::message_too_large);
    auto ok = co_await a.send_to(const_buffer(big.data(), udp::max_ipv6_message), to, dl);
    CO_ASSERT_OK(ok);
    std::vector<std::byte> buf(70000);
    auto r = co_await b.recv_from(buf, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(r->size, udp::max_ipv6_message);
    EXPECT_EQ(r->from.kind(), address::family::ipv6);
  });
}

TEST(Udp, TooSmallBufferDropsTheDatagramByDefaultAndKeepsItOnRequest) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    for (bool keep : {false, true}) {
      auto a = bound();
      auto b = bound("127.0.0.1:0", {.keep_too_large = keep});
      EXPECT_EQ(b.keeps_too_large(), keep);
      auto to = *b.local_address();
      auto w = co_await a.send_to(as_bytes("0123456789"), to, dl);
      CO_ASSERT_OK(w);
      auto w2 = co_await a.send_to(as_bytes("next"), to, dl);
      CO_ASSERT_OK(w2);
      std::vector<std::byte> small(9);
      auto r = co_await b.recv_from(small, dl);
      EXPECT_EQ(r.error(), errc::message_too_large);
      std::vector<std::byte> buf(64);
      auto again = co_await b.recv_from(buf, dl);
      CO_ASSERT_OK(again);
      EXPECT_EQ(text_of(buf, again->size), keep ? "0123456789" : "next") << "keep=" << keep;
    }
  });
}

TEST(Udp, DeadlinesAndCancelConsumeNothing) {
  run_test([]() -> task<void> {
    auto a = bound();
    auto b = bound();
    std::array<std::byte, 16> buf;
    auto start = deadline::clock::now();
    auto r = co_await b.recv_from(buf, deadline::after(20ms));
    EXPECT_EQ(r.error(), errc::timed_out);
    EXPECT_GE(elapsed_since(start), 20ms);
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](udp::socket& b, event& parked, std::error_code& outcome) -> task<void> {
        std::array<std::byte, 16> buf;
        parked.set();
        auto r = co_await b.recv_from(buf, deadline::after(5s));
        outcome = r ? std::error_code{} : r.error();
      }(b, parked, outcome));
      (void)co_await parked.wait(deadline::after(5s));
      s.cancel();
      co_return;
    });
    EXPECT_EQ(outcome, errc::operation_canceled);
    auto w = co_await a.send_to(as_bytes("after"), *b.local_address(), deadline::after(5s));
    CO_ASSERT_OK(w);
    auto got = co_await b.recv_from(buf, deadline::after(5s));
    CO_ASSERT_OK(got);
    EXPECT_EQ(as_text(const_buffer(buf.data(), got->size)), "after");
  });
}

TEST(Udp, CloseUnblocksAReceiverAndLaterCallsFailClosed) {
  run_test([]() -> task<void> {
    auto b = bound();
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](udp::socket& b, event& parked, std::error_code& outcome) -> task<void> {
        std::array<std::byte, 16> buf;
        parked.set();
        auto r = co_await b.recv_from(buf, deadline::after(5s));
        outcome = r ? std::error_code{} : r.error();
      }(b, parked, outcome));
      (void)co_await parked.wait(deadline::after(5s));
      auto c = co_await b.close(deadline::after(1s));
      EXPECT_TRUE(c) << c.error().message();
    });
    EXPECT_EQ(outcome, errc::closed);
    std::array<std::byte, 16> buf;
    auto r = co_await b.recv_from(buf, deadline::after(1s));
    EXPECT_EQ(r.error(), errc::closed);
    auto where = address::parse_ip("127.0.0.1:9");
    auto w = co_await b.send_to(as_bytes("x"), *where, deadline::after(1s));
    EXPECT_EQ(w.error(), errc::closed);
    EXPECT_EQ(b.local_address().error(), errc::closed);
  });
}

TEST(Udp, ConnectedSocketReportsARefusedPeerOnceAndRecovers) {
  run_test([]() -> task<void> {
    // A port nobody listens on: bind, learn the port, close.
    address nobody;
    {
      auto gone = bound();
      nobody = *gone.local_address();
    }
    auto c = udp::connect(nobody);
    CO_ASSERT_OK(c);
    auto dl = deadline::after(5s);
    auto w = co_await c->send(as_bytes("anyone?"), dl);
    CO_ASSERT_OK(w);  // UDP has no handshake: the first send goes out
    std::array<std::byte, 16> buf;
    auto r = co_await c->recv(buf, dl);
    EXPECT_EQ(r.error(), std::errc::connection_refused) << r.error().message();
    // Reported once: the socket still works and waits again.
    auto r2 = co_await c->recv(buf, deadline::after(10ms));
    EXPECT_EQ(r2.error(), errc::timed_out);
  });
}

TEST(Udp, ConnectedSocketIgnoresOtherSenders) {
  run_test([]() -> task<void> {
    auto peer = bound();
    auto stranger = bound();
    auto me = bound();
    auto me_at = *me.local_address();
    auto dl = deadline::after(5s);
    // The stranger's datagram queues before the connect; the kernel filters later ones.
    auto early = co_await stranger.send_to(as_bytes("early stranger"), me_at, dl);
    CO_ASSERT_OK(early);
    auto c = std::move(me).connect(*peer.local_address());
    CO_ASSERT_OK(c);
    EXPECT_EQ(*c->peer_address(), *peer.local_address());
    auto late = co_await stranger.send_to(as_bytes("late stranger"), me_at, dl);
    CO_ASSERT_OK(late);
    auto w = co_await peer.send_to(as_bytes("from the peer"), me_at, dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(64);
    auto n = co_await c->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "from the peer");
    auto none = co_await c->recv(buf, deadline::already());
    EXPECT_EQ(none.error(), errc::timed_out);
  });
}

TEST(Udp, BatchesSendAndReceiveManyDatagramsPerCall) {
  run_test([]() -> task<void> {
    auto a = bound();
    auto b = bound("127.0.0.1:0", {.receive_buffer = 1 << 20});
    auto c = bound();
    auto b_at = *b.local_address();
    auto c_at = *c.local_address();
    auto dl = deadline::after(5s);
    constexpr std::size_t count = 40;
    std::vector<std::string> texts;
    for (std::size_t i = 0; i < count; ++i) texts.push_back("datagram " + std::to_string(i));
    std::vector<udp::outgoing> out;
    for (std::size_t i = 0; i < count; ++i) out.push_back({as_bytes(texts[i]), i % 4 == 3 ? &c_at : &b_at});
    auto sent = co_await a.send_batch(out, dl);
    CO_ASSERT_OK(sent);
    EXPECT_EQ(*sent, count);

    std::vector<std::vector<std::byte>> storage(64, std::vector<std::byte>(32));
    std::vector<udp::incoming> slots(storage.size());
    for (std::size_t i = 0; i < slots.size(); ++i) slots[i].buf = storage[i];
    std::vector<std::string> got;
    while (got.size() < count - count / 4) {
      auto n = co_await b.recv_batch(slots, dl);
      CO_ASSERT_OK(n);
      CO_ASSERT_TRUE(*n >= 1 && *n <= slots.size());
      for (std::size_t i = 0; i < *n; ++i) {
        EXPECT_FALSE(slots[i].truncated);
        EXPECT_EQ(slots[i].from, *a.local_address());
        got.emplace_back(as_text(const_buffer(slots[i].buf.data(), slots[i].size)));
      }
    }
    std::vector<std::string> expected;
    for (std::size_t i = 0; i < count; ++i) {
      if (i % 4 != 3) expected.push_back(texts[i]);
    }
    EXPECT_EQ(got, expected);
    auto n = co_await c.recv_batch(slots, dl);
    CO_ASSERT_OK(n);
    EXPECT_GE(*n, 1u);
    EXPECT_EQ(as_text(const_buffer(slots[0].buf.data(), slots[0].size)), "datagram 3");
  });
}

TEST(Udp, BatchFlagsTruncationAndRefusesOversizeUpFront) {
  run_test([]() -> task<void> {
    auto a = bound();
    auto b = bound();
    auto b_at = *b.local_address();
    auto dl = deadline::after(5s);
    std::vector<std::byte> huge(udp::max_ipv4_message + 1);
    std::vector<udp::outgoing> bad{{as_bytes("fine"), &b_at}, {const_buffer(huge), &b_at}};
    auto refused = co_await a.send_batch(bad, dl);
    EXPECT_EQ(refused.error(), errc::message_too_large);
    std::vector<udp::outgoing> good{{as_bytes("a long datagram"), &b_at}, {as_bytes("short"), &b_at}};
    auto sent = co_await a.send_batch(good, dl);
    CO_ASSERT_OK(sent);
    EXPECT_EQ(*sent, 2u);
    std::array<std::byte, 8> s0, s1;
    std::array<udp::incoming, 2> slots{udp::incoming{.buf = s0}, udp::incoming{.buf = s1}};
    std::size_t filled = 0;
    while (filled < 2) {
      auto n = co_await b.recv_batch(std::span(slots).subspan(filled), dl);
      CO_ASSERT_OK(n);
      filled += *n;
    }
    // Only "fine" of the refused batch would have come first: nothing of it was sent.
    EXPECT_TRUE(slots[0].truncated);
    EXPECT_EQ(slots[0].size, 15u);
    EXPECT_EQ(as_text(const_buffer(s0)), "a long d");
    EXPECT_FALSE(slots[1].truncated);
    EXPECT_EQ(as_text(const_buffer(s1.data(), slots[1].size)), "short");
  });
}

TEST(Udp, ConnectedBatchesGoToThePeer) {
  run_test([]() -> task<void> {
    auto p = udp_conformance::connected_pair("127.0.0.1", false);
    CO_ASSERT_OK(p);
    auto& [a, b] = *p;
    auto dl = deadline::after(5s);
    auto elsewhere = *address::parse_ip("127.0.0.1:9");
    std::array<udp::outgoing, 3> out{udp::outgoing{as_bytes("one"), &elsewhere},
                                     udp::outgoing{as_bytes("two")}, udp::outgoing{as_bytes("three")}};
    auto sent = co_await a.send_batch(out, dl);
    CO_ASSERT_OK(sent);
    EXPECT_EQ(*sent, 3u);
    std::vector<std::string> got;
    std::array<std::array<std::byte, 16>, 4> storage;
    std::array<udp::incoming, 4> slots;
    for (std::size_t i = 0; i < slots.size(); ++i) slots[i].buf = storage[i];
    while (got.size() < 3) {
      auto n = co_await b.recv_batch(slots, dl);
      CO_ASSERT_OK(n);
      for (std::size_t i = 0; i < *n; ++i)
        got.emplace_back(as_text(const_buffer(slots[i].buf.data(), slots[i].size)));
    }
    EXPECT_EQ(got, (std::vector<std::string>{"one", "two", "three"}));
  });
}

// -- the listener ------------------------------------------------------------------------

TEST(Udp, ListenerHandsOverTheFirstSendersDatagramsAndKeepsListening) {
  run_test([]() -> task<void> {
    auto l = udp::listener::bind("127.0.0.1:0");
    CO_ASSERT_OK(l);
    auto where = l->local_address();
    CO_ASSERT_OK(where);
    EXPECT_NE(where->port(), 0);
    auto dl = deadline::after(5s);
    auto first = udp::connect(*where);
    CO_ASSERT_OK(first);
    // A burst before the accept: all of it stays pending, in order.
    for (auto t : {"one", "two", "three"}) {
      auto w = co_await first->send(as_bytes(t), dl);
      CO_ASSERT_OK(w);
    }
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    EXPECT_EQ(*a->peer_address(), *first->local_address());
    std::vector<std::byte> buf(64);
    for (auto t : {"one", "two", "three"}) {
      auto n = co_await a->recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
    auto reply = co_await a->send(as_bytes("welcome"), dl);
    CO_ASSERT_OK(reply);
    auto n = co_await first->recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "welcome");

    // A second sender is a second connection on the same port; each keeps its own.
    auto second = udp::connect(*where);
    CO_ASSERT_OK(second);
    auto w2 = co_await second->send(as_bytes("second"), dl);
    CO_ASSERT_OK(w2);
    auto b = co_await l->accept(dl);
    CO_ASSERT_OK(b);
    EXPECT_EQ(*b->peer_address(), *second->local_address());
    auto n2 = co_await b->recv(buf, dl);
    CO_ASSERT_OK(n2);
    EXPECT_EQ(text_of(buf, *n2), "second");
    auto w3 = co_await first->send(as_bytes("still first"), dl);
    CO_ASSERT_OK(w3);
    auto n3 = co_await a->recv(buf, dl);
    CO_ASSERT_OK(n3);
    EXPECT_EQ(text_of(buf, *n3), "still first");
    auto stray = co_await b->recv(buf, deadline::already());
    EXPECT_EQ(stray.error(), errc::timed_out);
  });
}

// Simultaneous peers: every sender's first datagrams arrive before any accept. The first
// accept's connect must not cost the others theirs: each later accept returns at once,
// its sender's datagrams intact and in order, then what the sender sends afterwards.
TEST(Udp, ListenerKeepsSimultaneousSendersDatagramsForTheirAccepts) {
  run_test([]() -> task<void> {
    constexpr int peers = 8, each = 3;
    auto l = udp::listener::bind("127.0.0.1:0");
    CO_ASSERT_OK(l);
    auto where = *l->local_address();
    auto dl = deadline::after(5s);
    std::vector<udp::connected> clients;
    for (int i = 0; i < peers; ++i) {
      auto c = udp::connect(where);
      CO_ASSERT_OK(c);
      clients.push_back(std::move(*c));
    }
    // Interleaved: datagram k of every client, then datagram k+1 of every client.
    for (int k = 0; k < each; ++k) {
      for (int i = 0; i < peers; ++i) {
        std::string text = "peer " + std::to_string(i) + " #" + std::to_string(k);
        auto w = co_await clients[i].send(as_bytes(std::string_view(text)), dl);
        CO_ASSERT_OK(w);
      }
    }
    std::vector<udp::connected> accepted(peers);
    std::vector<bool> seen(peers, false);
    std::vector<std::byte> buf(64);
    for (int a = 0; a < peers; ++a) {
      // All of it is queued already: no accept and no receive needs to wait.
      auto c = co_await l->accept(deadline::already());
      CO_ASSERT_OK(c);
      auto peer = c->peer_address();
      CO_ASSERT_OK(peer);
      int who = -1;
      for (int i = 0; i < peers; ++i) {
        if (*clients[i].local_address() == *peer) who = i;
      }
      CO_ASSERT_TRUE(who >= 0 && !seen[who]);
      seen[who] = true;
      for (int k = 0; k < each; ++k) {
        auto n = co_await c->recv(buf, deadline::already());
        CO_ASSERT_OK(n);
        EXPECT_EQ(text_of(buf, *n), "peer " + std::to_string(who) + " #" + std::to_string(k));
      }
      auto none = co_await c->recv(buf, deadline::already());
      EXPECT_EQ(none.error(), errc::timed_out);
      accepted[who] = std::move(*c);
    }
    auto stats = l->stats();
    EXPECT_EQ(stats.accepted, std::uint64_t{peers});
    EXPECT_EQ(stats.dropped, 0u);
    EXPECT_EQ(stats.pending_senders, 0u);
    EXPECT_EQ(stats.pending_datagrams, 0u);
    EXPECT_EQ(stats.pending_bytes, 0u);
    // Later datagrams reach each sender's own connection, and answers reach the sender.
    for (int i = 0; i < peers; ++i) {
      std::string text = "later " + std::to_string(i);
      auto w = co_await clients[i].send(as_bytes(std::string_view(text)), dl);
      CO_ASSERT_OK(w);
    }
    for (int i = 0; i < peers; ++i) {
      auto n = co_await accepted[i].recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), "later " + std::to_string(i));
      auto w = co_await accepted[i].send(as_bytes("ok"), dl);
      CO_ASSERT_OK(w);
      auto back = co_await clients[i].recv(buf, dl);
      CO_ASSERT_OK(back);
      EXPECT_EQ(text_of(buf, *back), "ok");
    }
    auto idle = co_await l->accept(deadline::after(20ms));
    EXPECT_EQ(idle.error(), errc::timed_out);
  });
}

// A waiting sender's datagrams reach its connection through recv_batch too, and the
// too-small-buffer rule of the socket applies to them.
TEST(Udp, ListenerSetAsideDatagramsKeepTheReceiveRules) {
  run_test([]() -> task<void> {
    udp::listen_options options;
    options.keep_too_large = true;
    auto l = udp::listener::bind("127.0.0.1:0", options);
    CO_ASSERT_OK(l);
    auto where = *l->local_address();
    auto dl = deadline::after(5s);
    auto first = udp::connect(where);
    auto second = udp::connect(where);
    CO_ASSERT_OK(first);
    CO_ASSERT_OK(second);
    auto w1 = co_await first->send(as_bytes("first"), dl);
    CO_ASSERT_OK(w1);
    for (auto t : {"a somewhat longer datagram", "b", "c"}) {
      auto w = co_await second->send(as_bytes(t), dl);
      CO_ASSERT_OK(w);
    }
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    EXPECT_EQ(l->stats().pending_datagrams, 3u);
    auto b = co_await l->accept(deadline::already());
    CO_ASSERT_OK(b);
    std::vector<std::byte> small(4);
    auto too_small = co_await b->recv(small, dl);
    EXPECT_EQ(too_small.error(), errc::message_too_large);  // kept: keep_too_large
    std::array<std::vector<std::byte>, 4> bufs{std::vector<std::byte>(64), std::vector<std::byte>(64),
                                               std::vector<std::byte>(64), std::vector<std::byte>(64)};
    std::array<udp::incoming, 4> slots{};
    for (std::size_t i = 0; i < slots.size(); ++i) slots[i].buf = bufs[i];
    auto n = co_await b->recv_batch(slots, dl);
    CO_ASSERT_OK(n);
    CO_ASSERT_EQ(*n, 3u);
    EXPECT_EQ(text_of(bufs[0], slots[0].size), "a somewhat longer datagram");
    EXPECT_EQ(text_of(bufs[1], slots[1].size), "b");
    EXPECT_EQ(text_of(bufs[2], slots[2].size), "c");
    EXPECT_EQ(slots[0].from, *second->local_address());
    EXPECT_FALSE(slots[0].truncated);
  });
}

// The datagrams set aside for waiting senders are bounded: per sender, in number and in
// bytes. Beyond a cap they are dropped and counted; what was kept is served in order.
TEST(Udp, ListenerCapsWhatWaitingSendersMayQueue) {
  run_test([]() -> task<void> {
    udp::listen_options options;
    options.pending_per_sender = 2;
    options.pending_datagrams = 5;
    options.pending_bytes = 1000;
    auto l = udp::listener::bind("127.0.0.1:0", options);
    CO_ASSERT_OK(l);
    auto where = *l->local_address();
    auto dl = deadline::after(5s);
    std::vector<udp::connected> c;
    for (int i = 0; i < 6; ++i) {
      auto s = udp::connect(where);
      CO_ASSERT_OK(s);
      c.push_back(std::move(*s));
    }
    auto send = [](udp::connected& to, std::string text, deadline d) -> task<void> {
      auto w = co_await to.send(as_bytes(std::string_view(text)), d);
      EXPECT_TRUE(w) << w.error().message();
    };
    co_await send(c[0], "accepted first", dl);
    for (int k = 0; k < 4; ++k) co_await send(c[1], "c1 #" + std::to_string(k), dl);  // 2 kept, 2 over
    co_await send(c[2], "c2 #0", dl);
    co_await send(c[2], "c2 #1", dl);  // 4 datagrams kept
    co_await send(c[3], "c3 #0", dl);  // the fifth
    co_await send(c[4], "c4 #0", dl);  // over the datagram cap
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    auto stats = l->stats();
    EXPECT_EQ(stats.pending_senders, 3u);
    EXPECT_EQ(stats.pending_datagrams, 5u);
    EXPECT_EQ(stats.dropped, 3u);
    std::vector<std::byte> buf(64);
    std::vector<std::vector<std::string>> expected{{"c1 #0", "c1 #1"}, {"c2 #0", "c2 #1"}, {"c3 #0"}};
    for (std::size_t i = 0; i < expected.size(); ++i) {
      auto next = co_await l->accept(deadline::already());
      CO_ASSERT_OK(next);
      EXPECT_EQ(*next->peer_address(), *c[i + 1].local_address());
      for (const auto& text : expected[i]) {
        auto n = co_await next->recv(buf, deadline::already());
        CO_ASSERT_OK(n);
        EXPECT_EQ(text_of(buf, *n), text);
      }
      auto none = co_await next->recv(buf, deadline::already());
      EXPECT_EQ(none.error(), errc::timed_out);
    }
    // Bytes: 1000 in all. Two of 400 fit, the third does not.
    std::string big(400, 'x');
    co_await send(c[5], "accepted next", dl);
    co_await send(c[1], big, dl);
    co_await send(c[2], big, dl);
    co_await send(c[3], big, dl);
    auto d = co_await l->accept(dl);
    CO_ASSERT_OK(d);
    EXPECT_EQ(*d->peer_address(), *c[5].local_address());
    stats = l->stats();
    EXPECT_EQ(stats.pending_bytes, 800u);
    EXPECT_EQ(stats.pending_datagrams, 2u);
    EXPECT_EQ(stats.dropped, 4u);
    l->close();
    EXPECT_EQ(l->stats().pending_datagrams, 0u);
  });
}

/// password_gate admits a sender whose first datagram is "let me in" and answers any
/// other first datagram with "no: <what it said>".
admission password_gate(const address&, const_buffer datagram, std::vector<std::byte>& reply) {
  auto said = as_text(datagram);
  if (said == "let me in") return admission::admit;
  std::string answer = "no: " + std::string(said);
  auto bytes = as_bytes(std::string_view(answer));
  reply.assign(bytes.begin(), bytes.end());
  return admission::refuse;
}

// An admission gate sees every new sender's first datagram before the listener keeps
// anything: refused ones are answered from the listening address and leave no trace,
// admitted ones are accepted with that datagram first, whether the accept takes it from
// the socket or from what an earlier accept set aside.
TEST(Udp, ListenerGateAnswersRefusedSendersAndAdmitsOthers) {
  run_test([]() -> task<void> {
    auto l = udp::listener::bind("127.0.0.1:0");
    CO_ASSERT_OK(l);
    l->set_gate(password_gate);
    auto where = *l->local_address();
    auto dl = deadline::after(5s);
    auto stranger = bound();
    auto friend_ = bound();
    auto late_friend = bound();
    auto noisy = bound();
    auto send = [](udp::socket& from, std::string text, address to, deadline d) -> task<void> {
      auto w = co_await from.send_to(as_bytes(std::string_view(text)), to, d);
      EXPECT_TRUE(w) << w.error().message();
    };
    co_await send(stranger, "hello?", where, dl);
    co_await send(friend_, "let me in", where, dl);
    co_await send(friend_, "and this", where, dl);
    co_await send(noisy, "knock", where, dl);
    co_await send(late_friend, "let me in", where, dl);
    co_await send(noisy, "knock knock", where, dl);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    EXPECT_EQ(*a->peer_address(), *friend_.local_address());
    std::vector<std::byte> buf(64);
    for (auto t : {"let me in", "and this"}) {
      auto n = co_await a->recv(buf, deadline::already());
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
    // The stranger was refused while the accept waited; the noisy sender (twice: nothing
    // is kept for a refused sender) while it set the late friend aside.
    auto answer = co_await stranger.recv_from(buf, dl);
    CO_ASSERT_OK(answer);
    EXPECT_EQ(text_of(buf, answer->size), "no: hello?");
    EXPECT_EQ(answer->from, where);
    for (auto t : {"no: knock", "no: knock knock"}) {
      auto n = co_await noisy.recv_from(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, n->size), t);
    }
    auto stats = l->stats();
    EXPECT_EQ(stats.accepted, 1u);
    EXPECT_EQ(stats.admitted, 2u);
    EXPECT_EQ(stats.refused, 3u);
    EXPECT_EQ(stats.answered, 3u);
    EXPECT_EQ(stats.pending_senders, 1u);
    EXPECT_EQ(stats.pending_datagrams, 1u);
    auto b = co_await l->accept(deadline::already());
    CO_ASSERT_OK(b);
    EXPECT_EQ(*b->peer_address(), *late_friend.local_address());
    auto n = co_await b->recv(buf, deadline::already());
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "let me in");
    // Nothing else waits: the refused senders got no connection.
    auto none = co_await l->accept(deadline::already());
    EXPECT_EQ(none.error(), errc::timed_out);
    EXPECT_EQ(l->stats().pending_senders, 0u);
    EXPECT_EQ(l->stats().accepted, 2u);
  });
}

TEST(Udp, ListenerAcceptDeadlinesCancelAndClose) {
  run_test([]() -> task<void> {
    auto l = udp::listener::bind("127.0.0.1:0");
    CO_ASSERT_OK(l);
    auto past = co_await l->accept(deadline::already());
    EXPECT_EQ(past.error(), errc::timed_out);
    auto start = deadline::clock::now();
    auto during = co_await l->accept(deadline::after(20ms));
    EXPECT_EQ(during.error(), errc::timed_out);
    EXPECT_GE(elapsed_since(start), 20ms);
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](udp::listener& l, event& parked, std::error_code& outcome) -> task<void> {
        parked.set();
        auto c = co_await l.accept(deadline::after(5s));
        outcome = c ? std::error_code{} : c.error();
      }(*l, parked, outcome));
      (void)co_await parked.wait(deadline::after(5s));
      l->close();
      co_return;
    });
    EXPECT_EQ(outcome, errc::closed);
    auto later = co_await l->accept(deadline::after(1s));
    EXPECT_EQ(later.error(), errc::closed);
  });
}

// -- multicast on loopback ---------------------------------------------------------------

/// group_for picks a group per test program so parallel runs do not meet (the port is
/// ephemeral as well).
address group_for(int n) {
  auto a = address::parse_ip("239.255." + std::to_string(::getpid() % 250) + "." + std::to_string(n) + ":0");
  return *a;
}

TEST(Udp, MulticastReachesEveryMemberAndStopsAfterLeave) {
  run_test([]() -> task<void> {
    auto loopback = *address::parse_ip("127.0.0.1:0");
    auto group = group_for(1);
    auto r1 = bound("0.0.0.0:0", {.reuse_address = true});
    auto port = r1.local_address()->port();
    auto r2 = bound("0.0.0.0:" + std::to_string(port), {.reuse_address = true});
    CO_ASSERT_OK(r1.join_group(group, loopback));
    CO_ASSERT_OK(r2.join_group(group, loopback));
    auto sender = bound("127.0.0.1:0");
    CO_ASSERT_OK(sender.apply({.interface = loopback, .loop = true, .ttl = 0}));
    int ttl = -1;
    socklen_t len = sizeof ttl;
    ::getsockopt(sender.native_handle(), IPPROTO_IP, IP_MULTICAST_TTL, &ttl, &len);
    EXPECT_EQ(ttl, 0);
    auto to = group;
    to.set_port(port);
    auto dl = deadline::after(5s);
    auto w = co_await sender.send_to(as_bytes("to the group"), to, dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(64);
    for (auto* r : {&r1, &r2}) {
      auto got = co_await r->recv_from(buf, dl);
      CO_ASSERT_OK(got);
      EXPECT_EQ(text_of(buf, got->size), "to the group");
      EXPECT_EQ(got->from, *sender.local_address());
    }
    // r2 leaves: only r1 hears the next one.
    CO_ASSERT_OK(r2.leave_group(group, loopback));
    auto w2 = co_await sender.send_to(as_bytes("after leave"), to, dl);
    CO_ASSERT_OK(w2);
    auto got1 = co_await r1.recv_from(buf, dl);
    CO_ASSERT_OK(got1);
    EXPECT_EQ(text_of(buf, got1->size), "after leave");
    auto got2 = co_await r2.recv_from(buf, deadline::after(50ms));
    EXPECT_EQ(got2.error(), errc::timed_out);
    // The loop option is set (its effect shows only off loopback: see the netns test).
    CO_ASSERT_OK(sender.set_multicast_loop(false));
    int loop = -1;
    len = sizeof loop;
    ::getsockopt(sender.native_handle(), IPPROTO_IP, IP_MULTICAST_LOOP, &loop, &len);
    EXPECT_EQ(loop, 0);
  });
}

TEST(Udp, ConnectorToAGroupAndMulticastErrors) {
  run_test([]() -> task<void> {
    auto loopback = *address::parse_ip("127.0.0.1:0");
    auto group = group_for(2);
    auto member = bound("0.0.0.0:0", {.reuse_address = true});
    CO_ASSERT_OK(member.join_group(group, loopback));
    auto to = group;
    to.set_port(member.local_address()->port());
    auto c = udp::connect(to, {.multicast = {.interface = loopback, .loop = true, .ttl = 1}});
    CO_ASSERT_OK(c);
    auto dl = deadline::after(5s);
    auto w = co_await c->send(as_bytes("via connect"), dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(64);
    auto got = co_await member.recv_from(buf, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(text_of(buf, got->size), "via connect");
    // Not a group, IPv6 groups, bad TTLs.
    EXPECT_EQ(member.join_group(loopback).error(), errc::invalid_argument);
    EXPECT_EQ(member.join_group(*address::parse_ip("[ff02::1]:0")).error(), errc::not_supported);
    EXPECT_EQ(member.set_multicast_ttl(256).error(), errc::invalid_argument);
    EXPECT_EQ(c->set_ttl(0).error(), errc::invalid_argument);
    CO_ASSERT_OK(c->set_ttl(7));
  });
}

TEST(Udp, MulticastListenerFromASpec) {
  run_test([]() -> task<void> {
    auto group = group_for(3);
    auto g = group.to_string();
    g = g.substr(0, g.rfind(':'));
    auto l = strata::listen("udp-listen:0.0.0.0:0(multicast=" + g + ", interface=127.0.0.1)");
    CO_ASSERT_OK(l);
    auto port = l->local_address()->port();
    auto dl = deadline::after(5s);
    auto spec = "udp:" + g + ":" + std::to_string(port) + "(interface=127.0.0.1, ttl=0)";
    auto conn = co_await strata::connect(spec, dl);
    CO_ASSERT_OK(conn);
    CO_ASSERT_TRUE(conn->is_message());
    auto w = co_await conn->message().send(as_bytes("group hello"), dl);
    CO_ASSERT_OK(w);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    CO_ASSERT_TRUE(a->is_message());
    std::vector<std::byte> buf(64);
    auto n = co_await a->message().recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "group hello");
    // The accepted socket keeps hearing the group from that sender.
    auto w2 = co_await conn->message().send(as_bytes("again"), dl);
    CO_ASSERT_OK(w2);
    auto n2 = co_await a->message().recv(buf, dl);
    CO_ASSERT_OK(n2);
    EXPECT_EQ(text_of(buf, *n2), "again");
    auto second = co_await l->accept(dl);
    EXPECT_EQ(second.error(), errc::not_supported);
  });
}

/// loop_probe runs in a child process inside a network namespace of its own, with one
/// TAP interface (10.77.0.1/24): unlike loopback, whose device hands every group datagram
/// back anyway, a real interface shows IP_MULTICAST_LOOP's effect. Returns the exit code:
/// 0 when loop=1 delivers to a local member and loop=0 does not, 77 without privileges.
int loop_probe() {
  if (::unshare(CLONE_NEWNET) < 0) return 77;
  int tun = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (tun < 0) return 77;
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, "strata0", IFNAMSIZ - 1);
  if (::ioctl(tun, TUNSETIFF, &ifr) < 0) return 77;
  int ctl = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  ::inet_pton(AF_INET, "10.77.0.1", &sin->sin_addr);
  if (::ioctl(ctl, SIOCSIFADDR, &ifr) < 0) return 10;
  ::inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
  if (::ioctl(ctl, SIOCSIFNETMASK, &ifr) < 0) return 11;
  if (::ioctl(ctl, SIOCGIFFLAGS, &ifr) < 0) return 12;
  ifr.ifr_flags |= IFF_UP | IFF_MULTICAST;
  if (::ioctl(ctl, SIOCSIFFLAGS, &ifr) < 0) return 13;
  int code = 1;
  strata::run([](int& code) -> task<void> {
    auto interface = *address::parse_ip("10.77.0.1:0");
    auto group = *address::parse_ip("239.77.0.1:0");
    auto member = udp::socket::bind("0.0.0.0:0", {.reuse_address = true});
    if (!member || !member->join_group(group, interface)) co_return void(code = 20);
    auto sender = udp::socket::bind("10.77.0.1:0");
    if (!sender || !sender->set_multicast_interface(interface)) co_return void(code = 21);
    auto to = group;
    to.set_port(member->local_address()->port());
    std::array<std::byte, 16> buf;
    for (bool loop : {true, false, true}) {
      if (!sender->set_multicast_loop(loop)) co_return void(code = 22);
      auto w = co_await sender->send_to(as_bytes(loop ? "looped" : "not looped"), to, deadline::after(1s));
      if (!w) co_return void(code = 23);
      auto r = co_await member->recv_from(buf, deadline::after(loop ? 2000ms : 100ms));
      if (loop && !r) co_return void(code = 30);
      if (loop && as_text(const_buffer(buf.data(), r->size)) != "looped") co_return void(code = 31);
      if (!loop && r.error() != errc::timed_out) co_return void(code = 32);
    }
    code = 0;
  }(code));
  return code;
}

TEST(Udp, MulticastLoopInANetworkNamespace) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(loop_probe());
  int status = -1;
  run_test([&]() -> task<void> {
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    CO_ASSERT_TRUE(pidfd >= 0);
    auto ec = co_await wait_readable(pidfd, deadline::after(10s));
    event_loop::current()->forget_fd(pidfd);
    ::close(pidfd);
    EXPECT_FALSE(ec) << ec.message();
  });
  if (::waitpid(pid, &status, WNOHANG) != pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "the namespace probe did not finish";
  }
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "no privileges for a network namespace with a TAP device";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "probe step that failed (see loop_probe)";
}

// -- spec strings ------------------------------------------------------------------------

TEST(Udp, SpecsAreCheckedAndDescribed) {
  pipeline_error error;
  auto p = pipeline::parse("udp:127.0.0.1:9(ttl=3)", error);
  ASSERT_TRUE(p) << error.message;
  EXPECT_EQ(p->layers().back().offers.max_message, 65507u);
  auto p6 = pipeline::parse("udp-listen:[::1]:0", error);
  ASSERT_TRUE(p6) << error.message;
  EXPECT_EQ(p6->layers().back().offers.max_message, 65527u);
  for (std::string bad : {"udp:127.0.0.1:0", "udp:127.0.0.1", "udp-listen:0.0.0.0:0(multicast=10.0.0.1)",
                          "udp:127.0.0.1:9(ttl=0)", "udp:127.0.0.1:9(interface=127.0.0.1)",
                          "udp-listen:0.0.0.0:0(interface=127.0.0.1)", "udp:127.0.0.1:9(bind=[::1]:0)",
                          "udp:127.0.0.1:9 | prefix(4)"}) {
    EXPECT_FALSE(pipeline::parse(bad, error)) << bad;
  }
  EXPECT_TRUE(pipeline::parse("udp:239.1.2.3:9(ttl=0, loop=0, interface=127.0.0.1)", error)) << error.message;
}

TEST(Udp, ConnectAndListenFromSpecs) {
  run_test([]() -> task<void> {
    auto l = strata::listen("udp-listen:127.0.0.1:0");
    CO_ASSERT_OK(l);
    auto where = l->local_address();
    CO_ASSERT_OK(where);
    auto dl = deadline::after(5s);
    auto spec = "udp:" + where->to_string();
    auto c = co_await strata::connect(spec, dl);
    CO_ASSERT_OK(c);
    CO_ASSERT_TRUE(c->is_message());
    EXPECT_EQ(c->runtime_capabilities().max_message, 65507u);
    auto w = co_await c->message().send(as_bytes("spec"), dl);
    CO_ASSERT_OK(w);
    auto a = co_await l->accept(dl);
    CO_ASSERT_OK(a);
    std::vector<std::byte> buf(8);
    // The entries turn keep_too_large on: a short buffer can retry.
    auto small = co_await a->message().recv(mutable_buffer(buf.data(), 2), dl);
    EXPECT_EQ(small.error(), errc::message_too_large);
    auto n = co_await a->message().recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(text_of(buf, *n), "spec");
  });
}

// -- other processes: socat and the strata CLI --------------------------------------------

TEST(Udp, SocatClientTalksToOurBoundSocket) {
  run_test([]() -> task<void> {
    auto s = bound();
    auto port = std::to_string(s.local_address()->port());
    auto peer = child::spawn({"socat", "-", "UDP-SENDTO:127.0.0.1:" + port});
    CO_ASSERT_OK(peer);
    auto dl = deadline::after(5s);
    auto w = co_await peer->write_stdin("hello from socat\n", dl);
    CO_ASSERT_OK(w);
    std::vector<std::byte> buf(128);
    auto r = co_await s.recv_from(buf, dl);
    CO_ASSERT_OK(r);
    EXPECT_EQ(text_of(buf, r->size), "hello from socat\n");
    auto back = co_await s.send_to(as_bytes("hello socat\n"), r->from, dl);
    CO_ASSERT_OK(back);
    auto got = co_await peer->read_stdout_until("hello socat\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; socat said: " << peer->err();
  });
}

TEST(Udp, SocatListenerEchoesOurConnectedSocket) {
  run_test([]() -> task<void> {
    auto echo = child::spawn({"socat", "-d", "-d", "UDP-LISTEN:0,bind=127.0.0.1", "PIPE"});
    CO_ASSERT_OK(echo);
    auto dl = deadline::after(5s);
    auto ready = co_await echo->read_stderr_until("listening on", dl);
    CO_ASSERT_OK(ready);
    (void)co_await echo->read_stderr_until("\n", dl);  // the whole line
    int port = dgram::port_after(echo->err(), "listening on");
    CO_ASSERT_TRUE(port > 0);
    auto c = udp::connect("127.0.0.1:" + std::to_string(port));
    CO_ASSERT_OK(c);
    std::vector<std::byte> buf(128);
    for (auto t : {"first datagram", "second datagram"}) {
      auto w = co_await c->send(as_bytes(t), dl);
      CO_ASSERT_OK(w);
      auto n = co_await c->recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
  });
}

TEST(Udp, CliConnectAgainstSocat) {
  run_test([]() -> task<void> {
    auto echo = child::spawn({"socat", "-d", "-d", "UDP-LISTEN:0,bind=127.0.0.1", "PIPE"});
    CO_ASSERT_OK(echo);
    auto dl = deadline::after(5s);
    auto ready = co_await echo->read_stderr_until("listening on", dl);
    CO_ASSERT_OK(ready);
    (void)co_await echo->read_stderr_until("\n", dl);
    int port = dgram::port_after(echo->err(), "listening on");
    CO_ASSERT_TRUE(port > 0);
    auto cli = child::spawn({dgram::cli_path(), "connect", "udp:127.0.0.1:" + std::to_string(port)});
    CO_ASSERT_OK(cli);
    // Each line is one datagram; socat echoes it; the CLI prints each one on a line.
    auto w = co_await cli->write_stdin("ping\n", dl);
    CO_ASSERT_OK(w);
    auto got = co_await cli->read_stdout_until("ping\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; strata said: " << cli->err();
    auto w2 = co_await cli->write_stdin("pong\n", dl);
    CO_ASSERT_OK(w2);
    auto got2 = co_await cli->read_stdout_until("ping\npong\n", dl);
    EXPECT_TRUE(got2) << got2.error().message() << "; strata said: " << cli->err();
    // UDP has no end of stream: the CLI runs until stopped.
    cli->signal(SIGTERM);
    auto code = co_await cli->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 143) << cli->err();
  });
}

TEST(Udp, CliListenWithSocatAsClient) {
  run_test([]() -> task<void> {
    auto cli = child::spawn({dgram::cli_path(), "listen", "udp-listen:127.0.0.1:0"});
    CO_ASSERT_OK(cli);
    auto dl = deadline::after(5s);
    auto ready = co_await cli->read_stderr_until("\n", dl);
    CO_ASSERT_OK(ready);
    int port = dgram::port_after(cli->err(), "listening on");
    CO_ASSERT_TRUE(port > 0);
    auto peer = child::spawn({"socat", "-", "UDP:127.0.0.1:" + std::to_string(port)});
    CO_ASSERT_OK(peer);
    auto w = co_await peer->write_stdin("from socat\n", dl);
    CO_ASSERT_OK(w);
    // The datagram carries socat's newline; the CLI adds one per message.
    auto got = co_await cli->read_stdout_until("from socat\n\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; strata said: " << cli->err();
    auto w2 = co_await cli->write_stdin("from strata\n", dl);
    CO_ASSERT_OK(w2);
    auto got2 = co_await peer->read_stdout_until("from strata", dl);
    EXPECT_TRUE(got2) << got2.error().message() << "; socat said: " << peer->err();
    cli->signal(SIGTERM);
    auto code = co_await cli->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 143) << cli->err();
  });
}

TEST(Udp, CliListenWithOurApiAsClient) {
  run_test([]() -> task<void> {
    auto cli = child::spawn({dgram::cli_path(), "listen", "udp-listen:[::1]:0"});
    CO_ASSERT_OK(cli);
    auto dl = deadline::after(5s);
    auto ready = co_await cli->read_stderr_until("\n", dl);
    CO_ASSERT_OK(ready);
    int port = dgram::port_after(cli->err(), "listening on");
    CO_ASSERT_TRUE(port > 0);
    auto c = udp::connect("[::1]:" + std::to_string(port));
    CO_ASSERT_OK(c);
    auto w = co_await c->send(as_bytes("over IPv6"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await cli->read_stdout_until("over IPv6\n", dl);
    EXPECT_TRUE(got) << got.error().message() << "; strata said: " << cli->err();
    auto w2 = co_await cli->write_stdin("line one\nline two\n", dl);
    CO_ASSERT_OK(w2);
    std::vector<std::byte> buf(64);
    for (auto t : {"line one", "line two"}) {
      auto n = co_await c->recv(buf, dl);
      CO_ASSERT_OK(n);
      EXPECT_EQ(text_of(buf, *n), t);
    }
    cli->signal(SIGTERM);
    auto code = co_await cli->wait_exit(dl);
    CO_ASSERT_OK(code);
    EXPECT_EQ(*code, 143) << cli->err();
  });
}

}  // namespace
}  // namespace strata::test
