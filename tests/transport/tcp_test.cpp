// tcp: the shared stream and listener conformance suites, then TCP's own behaviour matrix
// (orderly end, half-close, reset, sticky directions, a peer that never reads, ports,
// refused connects, connect deadlines, SO_REUSEPORT, adopt, localhost, IPv6, nodelay).
// Loopback only, ephemeral ports only.
#include "strata/transport/tcp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"

using namespace std::chrono_literals;

namespace strata::test {

// -- conformance (traits outside the anonymous namespace: see conformance.hpp) ----------

namespace tcp_conformance {

/// connected_pair connects to a fresh listener on `host` and accepts: (client, server).
inline task<result<std::pair<tcp::stream, tcp::stream>>> connected_pair(std::string_view host, deadline dl) {
  auto l = tcp::listener::bind(std::string(host) + ":0");
  if (!l) co_return unexpected(l.error());
  auto where = l->local_address();
  if (!where) co_return unexpected(where.error());
  // The kernel completes the handshake against the backlog, so connecting before
  // accepting needs no second task.
  auto c = co_await tcp::connect(*where, dl);
  if (!c) co_return unexpected(c.error());
  auto s = co_await l->accept(dl);
  if (!s) co_return unexpected(s.error());
  co_return std::pair<tcp::stream, tcp::stream>{std::move(*c), std::move(*s)};
}

struct tcp_v4 {
  using stream_type = tcp::stream;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static task<result<std::pair<tcp::stream, tcp::stream>>> make_pair(deadline dl) {
    return connected_pair("127.0.0.1", dl);
  }
};

struct tcp_v6 {
  using stream_type = tcp::stream;
  static constexpr bool close_unblocks_reader = true;
  static constexpr bool write_after_peer_close_breaks = true;
  static constexpr std::size_t transfer_size = 1 << 20;
  static task<result<std::pair<tcp::stream, tcp::stream>>> make_pair(deadline dl) {
    return connected_pair("[::1]", dl);
  }
};

using stream_types = ::testing::Types<tcp_v4, tcp_v6>;
INSTANTIATE_TYPED_TEST_SUITE_P(Tcp, stream_conformance, stream_types);

struct tcp_listener_traits {
  using listener_type = tcp::listener;
  static constexpr bool has_port = true;
  static result<tcp::listener> make_listener() { return tcp::listener::bind("127.0.0.1:0"); }
  static task<result<tcp::stream>> connect(tcp::listener& l, deadline dl) {
    auto where = l.local_address();
    if (!where) co_return unexpected(where.error());
    co_return co_await tcp::connect(*where, dl);
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Tcp, listener_conformance, ::testing::Types<tcp_listener_traits>);

}  // namespace tcp_conformance

namespace {

using tcp_conformance::connected_pair;

static_assert(byte_stream<tcp::stream>);
static_assert(listener<tcp::listener>);

/// run_pair_test runs `body(client, server, dl)` as a test over a fresh loopback
/// connection, `dl` five seconds away.
template <class Body>
void run_pair_test(Body body) {
  run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    auto p = co_await connected_pair("127.0.0.1", dl);
    CO_ASSERT_OK(p);
    co_await body(p->first, p->second, dl);
  });
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t len = sizeof value;
  ::getsockopt(fd, level, name, &value, &len);
  return value;
}

// shrink_buffers makes the kernel buffers of `fd` as small as it allows, so a few
// kilobytes fill the pipe.
void shrink_buffers(int fd) {
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
}

// fill_until_timeout writes 64 KiB blocks until a write fails; returns that error.
task<std::error_code> fill_until_timeout(tcp::stream& s, deadline dl) {
  std::vector<std::byte> block(64 * 1024, std::byte{'x'});
  for (int i = 0; i < 4096; ++i) {  // 256 MiB: far beyond any loopback buffering
    auto w = co_await s.write(const_buffer(block), dl);
    if (!w) co_return w.error();
  }
  co_return std::error_code{};
}

// drain_until_error reads until an error and returns it.
task<std::error_code> drain_until_error(tcp::stream& s, deadline dl) {
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) co_return n.error();
  }
}

TEST(Tcp, CapabilityRowIsTheTransportRow) {
  constexpr auto caps = tcp::stream::capabilities;
  EXPECT_EQ(caps.connection, connection::based);
  EXPECT_EQ(caps.unit, unit::stream);
  EXPECT_TRUE(caps.reliable && caps.ordered && caps.dup_free && caps.congestion_controlled);
  EXPECT_EQ(caps.domain, domain::net);
  EXPECT_FALSE(caps.fd_passing);
}

TEST(Tcp, OrderlyEndWhenBothSidesCloseAtOnce) {
  run_pair_test([](tcp::stream& a, tcp::stream& b, deadline dl) -> task<void> {
    auto w = co_await a.write(as_bytes("from a"), dl);
    CO_ASSERT_OK(w);
    auto w2 = co_await b.write(as_bytes("from b"), dl);
    CO_ASSERT_OK(w2);
    // Each close waits for the other's end, which the other close sends: both succeed,
    // neither resets (the unread bytes are drained, not answered with RST).
    result<void> ca, cb;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](tcp::stream& x, result<void>& out, deadline dl) -> task<void> {
        out = co_await x.close(dl);
      }(a, ca, dl));
      s.spawn([](tcp::stream& x, result<void>& out, deadline dl) -> task<void> {
        out = co_await x.close(dl);
      }(b, cb, dl));
      co_return;
    });
    EXPECT_TRUE(ca) << ca.error().message();
    EXPECT_TRUE(cb) << cb.error().message();
    EXPECT_FALSE(a.is_open());
    EXPECT_FALSE(b.is_open());
  });
}

TEST(Tcp, HalfCloseFromTheAcceptingSide) {
  run_pair_test([](tcp::stream& client, tcp::stream& server, deadline dl) -> task<void> {
    auto w = co_await server.write(as_bytes("banner"), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await server.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto again = co_await server.shutdown_write(dl);
    EXPECT_TRUE(again) << "a second shutdown_write is a no-op";
    auto banner = co_await read_text(client, 6, dl);
    CO_ASSERT_OK(banner);
    EXPECT_EQ(*banner, "banner");
    std::array<std::byte, 8> buf;
    auto end = co_await client.read_some(buf, dl);
    EXPECT_EQ(end.error(), errc::end_of_stream);
    // The server's read direction is untouched by its own half-close.
    auto reply = co_await client.write(as_bytes("thanks"), dl);
    CO_ASSERT_OK(reply);
    auto got = co_await read_text(server, 6, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "thanks");
  });
}

TEST(Tcp, AResetSaysConnectionResetByPeerAndStaysBroken) {
  // A reset is a `broken` to callers (the same sticky semantics) and reads
  // "connection reset by peer" in reports, on every later read too, not "connection broken".
  run_pair_test([](tcp::stream& a, tcp::stream& b, deadline dl) -> task<void> {
    a.reset();
    std::array<std::byte, 8> buf;
    auto r1 = co_await b.read_some(buf, dl);
    EXPECT_EQ(r1.error(), errc::broken);
    EXPECT_EQ(r1.error(), cause::connection_reset);
    EXPECT_EQ(r1.error().message(), "connection reset by peer");
    auto r2 = co_await b.read_some(buf, dl);
    EXPECT_EQ(r2.error(), cause::connection_reset) << r2.error().message();
  });
}

TEST(Tcp, ResetBreaksThePeersReadsAndWritesForGood) {
  run_pair_test([](tcp::stream& a, tcp::stream& b, deadline dl) -> task<void> {
    a.reset();
    EXPECT_FALSE(a.is_open());
    std::array<std::byte, 8> buf;
    auto r1 = co_await b.read_some(buf, dl);
    EXPECT_EQ(r1.error(), errc::broken);
    // The kernel reports ECONNRESET once and then 0 (end of file); strata keeps broken.
    auto r2 = co_await b.read_some(buf, dl);
    EXPECT_EQ(r2.error(), errc::broken);
    auto w1 = co_await b.write(as_bytes("x"), dl);
    EXPECT_EQ(w1.error(), errc::broken);
    auto w2 = co_await b.write(as_bytes("x"), dl);
    EXPECT_EQ(w2.error(), errc::broken);
    // Our own side answers closed.
    auto own = co_await a.read_some(buf, dl);
    EXPECT_EQ(own.error(), errc::closed);
  });
}

TEST(Tcp, ResetWakesAPendingReader) {
  run_pair_test([](tcp::stream& a, tcp::stream& b, deadline dl) -> task<void> {
    std::error_code outcome;
    co_await with_scope([&](scope& s) -> task<void> {
      event parked;
      s.spawn([](tcp::stream& b, event& parked, std::error_code& out) -> task<void> {
        std::array<std::byte, 8> buf;
        parked.set();
        auto r = co_await b.read_some(buf, deadline::after(5s));
        out = r ? std::error_code{} : r.error();
      }(b, parked, outcome));
      (void)co_await parked.wait(dl);
      a.reset();
    });
    EXPECT_EQ(outcome, errc::broken);
  });
}

TEST(Tcp, TryWriteSomeWritesWithoutWaitingAndKeepsTheOrder) {
  run_pair_test([](tcp::stream& a, tcp::stream& b, deadline dl) -> task<void> {
    auto n = a.try_write_some(as_bytes("first "));
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 6u);
    auto w = co_await a.write(as_bytes("second"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(b, 12, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "first second");
    b.reset();
    std::array<std::byte, 8> buf;
    (void)co_await a.read_some(buf, dl);  // the reset has arrived
    auto broken = a.try_write_some(as_bytes("x"));
    EXPECT_EQ(broken.error(), errc::broken);
    auto w2 = co_await a.write(as_bytes("x"), dl);
    EXPECT_EQ(w2.error(), errc::broken);
  });
}

TEST(Tcp, ShutDownWriteDirectionStaysFailedWhileReadingWorks) {
  run_pair_test([](tcp::stream& a, tcp::stream& b, deadline dl) -> task<void> {
    auto sh = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(sh);
    for (int i = 0; i < 2; ++i) {
      auto w = co_await a.write(as_bytes("x"), dl);
      EXPECT_EQ(w.error(), errc::closed) << "attempt " << i;
    }
    for (int i = 0; i < 3; ++i) {
      auto w = co_await b.write(as_bytes("ab"), dl);
      CO_ASSERT_OK(w);
      auto got = co_await read_text(a, 2, dl);
      CO_ASSERT_OK(got);
      EXPECT_EQ(*got, "ab");
    }
  });
}

TEST(Tcp, PeerThatNeverReadsTimesTheWriterOutAndCloseStillReturns) {
  run_pair_test([](tcp::stream& a, tcp::stream& b, deadline dl) -> task<void> {
    shrink_buffers(a.native_handle());
    shrink_buffers(b.native_handle());

    auto start = deadline::clock::now();
    auto failure = co_await fill_until_timeout(a, deadline::after(100ms));
    auto took = elapsed_since(start);
    EXPECT_EQ(failure, errc::timed_out);
    EXPECT_GE(took, 100ms);
    EXPECT_LT(took, 100ms + timing_tolerance);

    // The timed-out write left a prefix in flight: the write direction is lost...
    auto again = co_await a.write(as_bytes("x"), deadline::after(5s));
    EXPECT_EQ(again.error(), errc::timed_out);
    // ...while the read direction still works.
    auto w = co_await b.write(as_bytes("pong"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(a, 4, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "pong");

    // The peer never finishes either, so an orderly close cannot complete: it must give
    // up at its deadline and reset instead of hanging.
    start = deadline::clock::now();
    auto c = co_await a.close(deadline::after(100ms));
    took = elapsed_since(start);
    EXPECT_EQ(c.error(), errc::timed_out);
    EXPECT_GE(took, 100ms);
    EXPECT_LT(took, 100ms + timing_tolerance);
    EXPECT_FALSE(a.is_open());
    // The peer sees the reset after whatever data reached it, never a clean end.
    auto end = co_await drain_until_error(b, dl);
    EXPECT_EQ(end, errc::broken);
  });
}

TEST(Tcp, AddressesCarryTheEphemeralPorts) {
  run_test([]() -> task<void> {
    auto l = tcp::listener::bind("127.0.0.1:0");
    CO_ASSERT_OK(l);
    auto where = l->local_address();
    CO_ASSERT_OK(where);
    EXPECT_EQ(where->kind(), address::family::ipv4);
    EXPECT_NE(where->port(), 0);
    auto dl = deadline::after(5s);
    auto c = co_await tcp::connect(*where, dl);
    CO_ASSERT_OK(c);
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    auto c_local = c->local_address();
    auto c_peer = c->peer_address();
    auto s_local = s->local_address();
    auto s_peer = s->peer_address();
    CO_ASSERT_OK(c_local);
    CO_ASSERT_OK(c_peer);
    CO_ASSERT_OK(s_local);
    CO_ASSERT_OK(s_peer);
    EXPECT_NE(c_local->port(), 0);
    EXPECT_EQ(*c_peer, *where);
    EXPECT_EQ(*s_local, *where);
    EXPECT_EQ(*s_peer, *c_local);
    EXPECT_EQ(s_peer->to_string(), "127.0.0.1:" + std::to_string(c_local->port()));
  });
}

TEST(Tcp, ConnectToAClosedPortIsRefused) {
  run_test([]() -> task<void> {
    address where;
    {
      auto l = tcp::listener::bind("127.0.0.1:0");
      CO_ASSERT_OK(l);
      auto a = l->local_address();
      CO_ASSERT_OK(a);
      where = *a;
    }  // closed: nobody listens on the port any more
    auto c = co_await tcp::connect(where, deadline::after(5s));
    CO_ASSERT_TRUE(!c);
    EXPECT_EQ(c.error(), std::errc::connection_refused) << c.error().message();
  });
}

TEST(Tcp, ConnectDeadlineExpiresWhileTheBacklogIsFull) {
  // A listener that never accepts, with backlog 0: Linux queues one connection and then
  // drops further SYNs (tcp_abort_on_overflow=0), so a connect stays pending and only its
  // deadline ends it. No packet leaves loopback.
  bool timed_out_seen = false;
  run_test([&]() -> task<void> {
    auto l = tcp::listener::bind("127.0.0.1:0", {.backlog = 0});
    CO_ASSERT_OK(l);
    auto where = l->local_address();
    CO_ASSERT_OK(where);
    std::vector<tcp::stream> held;
    for (int i = 0; i < 8 && !timed_out_seen; ++i) {
      auto start = deadline::clock::now();
      auto c = co_await tcp::connect(*where, deadline::after(100ms));
      auto took = elapsed_since(start);
      if (c) {
        held.push_back(std::move(*c));
        continue;
      }
      EXPECT_EQ(c.error(), errc::timed_out) << c.error().message();
      EXPECT_GE(took, 100ms);
      EXPECT_LT(took, 100ms + timing_tolerance);
      timed_out_seen = true;
    }
  });
  if (!timed_out_seen) GTEST_SKIP() << "this kernel accepted 8 connections on a full backlog (syncookies?)";
}

TEST(Tcp, ReusePortLetsTwoListenersShareAPort) {
  run_test([]() -> task<void> {
    auto first = tcp::listener::bind("127.0.0.1:0", {.reuse_port = true});
    CO_ASSERT_OK(first);
    auto where = first->local_address();
    CO_ASSERT_OK(where);
    auto second = tcp::listener::bind(*where, {.reuse_port = true});
    CO_ASSERT_OK(second);
    auto second_where = second->local_address();
    CO_ASSERT_OK(second_where);
    EXPECT_EQ(*second_where, *where);
    // Without SO_REUSEPORT the port is taken.
    auto third = tcp::listener::bind(*where);
    CO_ASSERT_TRUE(!third);
    EXPECT_EQ(third.error(), std::errc::address_in_use) << third.error().message();

    // Every connection is accepted by one of the two.
    constexpr int count = 12;
    int accepted = 0;
    auto dl = deadline::after(5s);
    std::vector<tcp::stream> clients;
    for (int i = 0; i < count; ++i) {
      auto c = co_await tcp::connect(*where, dl);
      CO_ASSERT_OK(c);
      clients.push_back(std::move(*c));
    }
    for (auto* l : {&*first, &*second}) {
      for (;;) {
        auto s = co_await l->accept(deadline::already());
        if (!s) break;
        ++accepted;
      }
    }
    EXPECT_EQ(accepted, count);
  });
}

TEST(Tcp, BindingATakenPortFails) {
  auto first = tcp::listener::bind("127.0.0.1:0");
  ASSERT_TRUE(first);
  auto second = tcp::listener::bind(*first->local_address());
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), std::errc::address_in_use);
}

TEST(Tcp, AdoptTakesOverConnectedAndListeningDescriptors) {
  run_test([]() -> task<void> {
    // A listener made with plain system calls, adopted.
    int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
    CO_ASSERT_TRUE(lfd >= 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CO_ASSERT_TRUE(::bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    CO_ASSERT_TRUE(::listen(lfd, 4) == 0);
    auto l = tcp::listener::adopt(lfd);
    CO_ASSERT_OK(l);
    auto where = l->local_address();
    CO_ASSERT_OK(where);
    EXPECT_NE(where->port(), 0);

    // A blocking connected socket made with plain system calls, adopted.
    int cfd = ::socket(AF_INET, SOCK_STREAM, 0);
    CO_ASSERT_TRUE(cfd >= 0);
    CO_ASSERT_TRUE(::connect(cfd, where->data(), static_cast<socklen_t>(where->size())) == 0);
    auto c = tcp::stream::adopt(cfd);
    CO_ASSERT_OK(c);
    EXPECT_EQ(c->native_handle(), cfd);

    auto dl = deadline::after(5s);
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    auto w = co_await c->write(as_bytes("adopted"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(*s, 7, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "adopted");
    // The adopted descriptor was made non-blocking: a read with nothing to read waits
    // for its deadline instead of blocking the thread.
    std::array<std::byte, 4> buf;
    auto r = co_await c->read_some(buf, deadline::after(10ms));
    EXPECT_EQ(r.error(), errc::timed_out);

    // release hands the descriptor back.
    int back = c->release();
    EXPECT_EQ(back, cfd);
    EXPECT_FALSE(c->is_open());
    ::close(back);
  });
}

TEST(Tcp, AdoptRejectsABadDescriptor) {
  auto s = tcp::stream::adopt(-1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), std::errc::bad_file_descriptor);
}

TEST(Tcp, LocalhostAndIpv6Loopback) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    for (std::string host : {"localhost", "[::1]"}) {
      auto l = tcp::listener::bind(host + ":0");
      CO_ASSERT_OK(l);
      auto port = l->local_address()->port();
      auto c = co_await tcp::connect(host + ":" + std::to_string(port), dl);
      CO_ASSERT_OK(c);
      auto s = co_await l->accept(dl);
      CO_ASSERT_OK(s);
      auto w = co_await c->write(as_bytes("hi"), dl);
      CO_ASSERT_OK(w);
      auto got = co_await read_text(*s, 2, dl);
      CO_ASSERT_OK(got);
      EXPECT_EQ(*got, "hi") << host;
      auto peer = s->peer_address();
      CO_ASSERT_OK(peer);
      EXPECT_EQ(peer->kind(), host == "localhost" ? address::family::ipv4 : address::family::ipv6);
    }
  });
}

TEST(Tcp, BadAddressesAreInvalidArguments) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto c = co_await tcp::connect("not an address", dl);
    EXPECT_EQ(c.error(), errc::invalid_argument);
    auto unix_where = address::unix_path("/tmp/x.sock");
    CO_ASSERT_OK(unix_where);
    auto c2 = co_await tcp::connect(*unix_where, dl);
    EXPECT_EQ(c2.error(), errc::invalid_argument);
    auto l = tcp::listener::bind(*unix_where);
    EXPECT_EQ(l.error(), errc::invalid_argument);
    auto l2 = tcp::listener::bind("127.0.0.1:99999");
    EXPECT_EQ(l2.error(), errc::invalid_argument);
  });
}

TEST(Tcp, NoDelayFollowsTheOptions) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto l = tcp::listener::bind("127.0.0.1:0", {.no_delay = false});
    CO_ASSERT_OK(l);
    auto c = co_await tcp::connect(*l->local_address(), dl, {.no_delay = true});
    CO_ASSERT_OK(c);
    auto s = co_await l->accept(dl);
    CO_ASSERT_OK(s);
    EXPECT_NE(int_option(c->native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);
    EXPECT_EQ(int_option(s->native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);
    auto on = s->set_no_delay(true);
    CO_ASSERT_OK(on);
    EXPECT_NE(int_option(s->native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);
    auto off = c->set_no_delay(false);
    CO_ASSERT_OK(off);
    EXPECT_EQ(int_option(c->native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);
  });
}

TEST(Tcp, MovedStreamKeepsTheConnectionAndTheMovedFromOneIsClosed) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto p = co_await connected_pair("127.0.0.1", dl);
    CO_ASSERT_OK(p);
    tcp::stream a = std::move(p->first);
    tcp::stream b;
    b = std::move(p->second);
    auto w = co_await a.write(as_bytes("moved"), dl);
    CO_ASSERT_OK(w);
    auto got = co_await read_text(b, 5, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(*got, "moved");
    std::array<std::byte, 4> buf;
    auto stale = co_await p->first.read_some(buf, dl);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(stale.error(), errc::closed);
    auto stale_w = co_await p->second.write(as_bytes("x"), dl);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(stale_w.error(), errc::closed);
  });
}

}  // namespace
}  // namespace strata::test
