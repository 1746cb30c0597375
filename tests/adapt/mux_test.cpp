// mux: the codec (round trips, every malformed frame), many streams both ways with data
// integrity, flow control without head-of-line blocking, half-close, reset, the stream
// limit, GOAWAY, keepalive detecting a dead peer, and tls and http1 over a mux stream.
#include "strata/adapt/mux.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "strata/app/http1.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "strata/secure/tls.hpp"
#include "support/co_test.hpp"
#include "support/mem_stream.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace {

// -- codec -------------------------------------------------------------------------------

std::string header(std::uint32_t length, std::uint8_t type, std::uint8_t flags, std::uint32_t id) {
  std::string h(9, '\0');
  h[0] = static_cast<char>(length >> 16);
  h[1] = static_cast<char>(length >> 8);
  h[2] = static_cast<char>(length);
  h[3] = static_cast<char>(type);
  h[4] = static_cast<char>(flags);
  h[5] = static_cast<char>(id >> 24);
  h[6] = static_cast<char>(id >> 16);
  h[7] = static_cast<char>(id >> 8);
  h[8] = static_cast<char>(id);
  return h;
}

TEST(MuxCodec, RoundTripsEveryFrameType) {
  std::string wire;
  mux::append_data(wire, 7, mux::flag_syn | mux::flag_fin, as_bytes(std::string_view("hello")));
  mux::append_window_update(wire, 7, 12345);
  mux::append_rst(wire, 9, 2);
  mux::append_ping(wire, mux::flag_ack, 0x0102030405060708ull);
  mux::append_goaway(wire, 41, 1);
  EXPECT_EQ(wire.substr(0, 9), header(5, 0, 3, 7));
  mux::decoder d;
  auto in = as_bytes(wire);
  std::size_t off = 0;
  std::vector<mux::frame> frames;
  for (;;) {
    auto f = d.decode(in.subspan(off));
    ASSERT_TRUE(f);
    if (!*f) break;
    frames.push_back(**f);
    off += (*f)->size;
  }
  EXPECT_EQ(off, wire.size());
  ASSERT_EQ(frames.size(), 5u);
  EXPECT_EQ(frames[0].type, mux::frame_type::data);
  EXPECT_EQ(frames[0].flags, mux::flag_syn | mux::flag_fin);
  EXPECT_EQ(frames[0].stream_id, 7u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(frames[0].payload.data()), frames[0].payload.size()),
            "hello");
  EXPECT_EQ(frames[1].type, mux::frame_type::window_update);
  EXPECT_EQ(frames[1].value, 12345u);
  EXPECT_EQ(frames[2].type, mux::frame_type::rst);
  EXPECT_EQ(frames[2].stream_id, 9u);
  EXPECT_EQ(frames[2].value, 2u);
  EXPECT_EQ(frames[3].type, mux::frame_type::ping);
  EXPECT_EQ(frames[3].flags, mux::flag_ack);
  EXPECT_EQ(frames[3].value, 0x0102030405060708ull);
  EXPECT_EQ(frames[4].type, mux::frame_type::goaway);
  EXPECT_EQ(frames[4].last_id, 41u);
  EXPECT_EQ(frames[4].value, 1u);
}

TEST(MuxCodec, IncompleteFramesNeedMoreAtEveryByte) {
  std::string wire;
  mux::append_data(wire, 3, 0, as_bytes(std::string_view("abcdef")));
  for (std::size_t n = 0; n < wire.size(); ++n) {
    mux::decoder d;
    auto f = d.decode(as_bytes(wire).first(n));
    ASSERT_TRUE(f);
    EXPECT_FALSE(*f) << n;
  }
}

struct bad_case {
  std::string wire;
  mux::error expected;
};

TEST(MuxCodec, EveryMalformedFrameIsATypedStickyError) {
  std::string four(4, '\0');
  std::string eight(8, '\0');
  std::string one_credit = std::string(3, '\0') + '\x01';
  std::vector<bad_case> cases{
      {header(0, 5, 0, 1), mux::error::bad_frame_type},
      {header(0, 255, 0, 1), mux::error::bad_frame_type},
      {header(0, 0, 0x8, 1), mux::error::bad_flags},
      {header(0, 0, 0, 0), mux::error::bad_stream_id},
      {header(64 * 1024 + 1, 0, 0, 1), mux::error::frame_too_large},
      {header(4, 1, 1, 1) + one_credit, mux::error::bad_flags},
      {header(4, 1, 0, 0) + one_credit, mux::error::bad_stream_id},
      {header(3, 1, 0, 1), mux::error::bad_length},
      {header(4, 1, 0, 1) + four, mux::error::flow_control},  // zero increment
      {header(4, 1, 0, 1) + "\x80" + std::string(3, '\0'), mux::error::flow_control},
      {header(4, 2, 2, 1) + four, mux::error::bad_flags},
      {header(4, 2, 0, 0) + four, mux::error::bad_stream_id},
      {header(8, 2, 0, 1) + eight, mux::error::bad_length},
      {header(8, 3, 1, 0) + eight, mux::error::bad_flags},
      {header(8, 3, 0, 5) + eight, mux::error::bad_stream_id},
      {header(4, 3, 0, 0) + four, mux::error::bad_length},
      {header(8, 4, 4, 0) + eight, mux::error::bad_flags},
      {header(8, 4, 0, 2) + eight, mux::error::bad_stream_id},
      {header(9, 4, 0, 0), mux::error::bad_length},
  };
  for (const auto& c : cases) {
    mux::decoder d;
    auto f = d.decode(as_bytes(c.wire));
    ASSERT_FALSE(f) << "case " << static_cast<int>(c.expected);
    EXPECT_EQ(f.error(), mux::make_error_code(c.expected));
    EXPECT_EQ(f.error(), errc::protocol_error);
    EXPECT_TRUE(d.failed());
    std::string good;
    mux::append_ping(good, 0, 1);
    auto again = d.decode(as_bytes(good));
    EXPECT_FALSE(again);
  }
}

// -- sessions over memory ---------------------------------------------------------------

struct pair_of_sessions {
  mux::session client;
  mux::session server;
};

pair_of_sessions make_sessions(mux::options co = {}, mux::options so = {}) {
  auto [a, b] = mem_stream::pair();
  return {mux::session(any_stream(std::move(a)), mux::role::client, co),
          mux::session(any_stream(std::move(b)), mux::role::server, so)};
}

std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = std::byte(x >> 24);
  }
  return v;
}

std::uint64_t fnv(const std::vector<std::byte>& v) {
  std::uint64_t h = 1469598103934665603ull;
  for (auto b : v) h = (h ^ static_cast<std::uint8_t>(b)) * 1099511628211ull;
  return h;
}

task<result<std::vector<std::byte>>> read_all(mux::stream& s, deadline dl) {
  std::vector<std::byte> got;
  std::array<std::byte, 7000> buf{};
  for (;;) {
    auto n = co_await s.read_some(buf, dl);
    if (!n) {
      if (n.error() == errc::end_of_stream) co_return got;
      co_return unexpected(n.error());
    }
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  }
}

// Each side writes a pattern, half-closes and reads the peer's: echo-free exchange.
task<void> exchange(mux::stream s, std::uint32_t mine, std::uint32_t theirs, std::size_t size, int& ok) {
  auto dl = deadline::after(20s);
  auto data = pattern(size, mine);
  scope writers;
  writers.spawn(call([&]() -> task<void> {
    auto w = co_await s.write(const_buffer(data.data(), data.size()), dl);
    EXPECT_TRUE(w);
    auto sh = co_await s.shutdown_write(dl);
    EXPECT_TRUE(sh);
  }));
  auto got = co_await read_all(s, dl);
  (void)co_await writers.join(dl);
  EXPECT_TRUE(got);
  if (got && fnv(*got) == fnv(pattern(size, theirs)) && got->size() == size) ++ok;
  auto c = co_await s.close(dl);
  EXPECT_TRUE(c);
}

TEST(MuxSession, ManyStreamsBothWaysKeepTheirData) {
  run_test(
      []() -> task<void> {
        auto p = make_sessions();
        auto dl = deadline::after(20s);
        constexpr int n = 40;
        int ok = 0;
        scope s;
        s.spawn(call([&]() -> task<void> {
          for (int i = 0; i < n; ++i) {
            auto st = co_await p.server.accept(dl);
            CO_ASSERT_OK(st);
            auto id = st->id();
            s.spawn(exchange(std::move(*st), 1000 + id, id, 100'000 + id * 1000, ok));
          }
        }));
        for (int i = 0; i < n; ++i) {
          auto st = co_await p.client.open(dl);
          CO_ASSERT_OK(st);
          auto id = st->id();
          EXPECT_EQ(id % 2, 1u);
          s.spawn(exchange(std::move(*st), id, 1000 + id, 100'000 + id * 1000, ok));
        }
        auto joined = co_await s.join(dl);
        CO_ASSERT_OK(joined);
        EXPECT_EQ(ok, 2 * n);
        EXPECT_EQ(p.client.open_streams(), 0u);
        EXPECT_EQ(p.server.open_streams(), 0u);
        auto c1 = co_await p.client.close(dl);
        EXPECT_TRUE(c1);
        auto c2 = co_await p.server.close(dl);
        (void)c2;
      },
      30s);
}

// A read waiting with nothing buffered takes the next payload straight into its buffer;
// what does not fit stays buffered for the next read, and a read that timed out before
// anything came loses nothing that comes later.
TEST(MuxSession, AWaitingReadTakesThePayloadAndTheRestStaysBuffered) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(5s);
    auto out = co_await p.client.open(dl);
    CO_ASSERT_OK(out);
    auto w = co_await out->write(as_bytes(std::string_view("x")), dl);
    CO_ASSERT_OK(w);
    auto in = co_await p.server.accept(dl);
    CO_ASSERT_OK(in);
    std::array<std::byte, 5> small{};
    auto first = co_await in->read_some(small, dl);
    CO_ASSERT_OK(first);
    CO_ASSERT_EQ(*first, 1u);
    auto timed_out = co_await in->read_some(small, deadline::after(10ms));
    CO_ASSERT_TRUE(!timed_out);
    EXPECT_EQ(timed_out.error(), errc::timed_out);
    std::string got;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        // Waiting (nothing buffered) when the frame arrives.
        auto n = co_await in->read_some(small, dl);
        CO_ASSERT_OK(n);
        got.append(reinterpret_cast<const char*>(small.data()), *n);
      }));
      co_await yield();
      auto sent = co_await out->write(as_bytes(std::string_view("hello world")), dl);
      CO_ASSERT_OK(sent);
    });
    EXPECT_EQ(got, std::string("hello"));
    auto sh = co_await out->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto rest = co_await read_all(*in, dl);
    CO_ASSERT_OK(rest);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(rest->data()), rest->size()), std::string(" world"));
  });
}

TEST(MuxSession, ServerOpensEvenStreams) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(5s);
    auto st = co_await p.server.open(dl);
    CO_ASSERT_OK(st);
    EXPECT_EQ(st->id(), 2u);
    auto w = co_await st->write(as_bytes(std::string_view("hi")), dl);
    CO_ASSERT_OK(w);
    auto got = co_await p.client.accept(dl);
    CO_ASSERT_OK(got);
    std::array<std::byte, 8> buf{};
    auto n = co_await got->read_some(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 2u);
  });
}

// A stream whose reader stopped fills its window; another stream goes on.
TEST(MuxSession, AStalledStreamDoesNotBlockOthers) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(10s);
    auto stalled = co_await p.client.open(dl);
    CO_ASSERT_OK(stalled);
    auto live = co_await p.client.open(dl);
    CO_ASSERT_OK(live);
    auto s1 = co_await p.server.accept(dl);
    CO_ASSERT_OK(s1);
    auto s2 = co_await p.server.accept(dl);
    CO_ASSERT_OK(s2);
    // Fill the stalled stream's window: a write beyond it waits (times out).
    auto big = pattern(mux::initial_window + 1000, 1);
    auto w = co_await stalled->write(const_buffer(big.data(), big.size()), deadline::after(300ms));
    EXPECT_FALSE(w);
    if (!w) {
      EXPECT_EQ(w.error(), errc::timed_out);
    }
    // Meanwhile 4 MiB flow on the other stream.
    auto data = pattern(4 << 20, 2);
    scope s;
    s.spawn(call([&]() -> task<void> {
      auto w2 = co_await live->write(const_buffer(data.data(), data.size()), dl);
      EXPECT_TRUE(w2);
      auto sh = co_await live->shutdown_write(dl);
      EXPECT_TRUE(sh);
    }));
    auto got = co_await read_all(*s2, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(got->size(), data.size());
    EXPECT_EQ(fnv(*got), fnv(data));
    (void)co_await s.join(dl);
  });
}

TEST(MuxSession, HalfCloseLeavesTheOtherDirectionOpen) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(5s);
    auto c = co_await p.client.open(dl);
    CO_ASSERT_OK(c);
    auto w = co_await c->write(as_bytes(std::string_view("question")), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await c->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto again = co_await c->write(as_bytes(std::string_view("x")), dl);
    EXPECT_FALSE(again);
    auto s = co_await p.server.accept(dl);
    CO_ASSERT_OK(s);
    auto got = co_await read_all(*s, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(got->size(), 8u);
    auto r = co_await s->write(as_bytes(std::string_view("answer")), dl);
    CO_ASSERT_OK(r);
    auto sc = co_await s->close(dl);
    CO_ASSERT_OK(sc);
    auto back = co_await read_all(*c, dl);
    CO_ASSERT_OK(back);
    EXPECT_EQ(back->size(), 6u);
    auto cc = co_await c->close(dl);
    EXPECT_TRUE(cc);
  });
}

TEST(MuxSession, ResetReachesThePeerAndSparesOtherStreams) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(5s);
    auto a = co_await p.client.open(dl);
    CO_ASSERT_OK(a);
    auto b = co_await p.client.open(dl);
    CO_ASSERT_OK(b);
    auto sa = co_await p.server.accept(dl);
    CO_ASSERT_OK(sa);
    auto sb = co_await p.server.accept(dl);
    CO_ASSERT_OK(sb);
    a->reset();
    std::array<std::byte, 16> buf{};
    auto r = co_await sa->read_some(buf, dl);
    CO_ASSERT_TRUE(!r);
    EXPECT_EQ(r.error(), mux::make_error_code(mux::error::stream_reset));
    EXPECT_EQ(r.error(), errc::broken);
    auto local = co_await a->read_some(buf, dl);
    CO_ASSERT_TRUE(!local);
    EXPECT_EQ(local.error(), errc::closed);
    auto w = co_await b->write(as_bytes(std::string_view("still")), dl);
    CO_ASSERT_OK(w);
    auto n = co_await sb->read_some(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, 5u);
  });
}

TEST(MuxSession, StreamsOverTheLimitAreRefused) {
  run_test([]() -> task<void> {
    mux::options so;
    so.max_streams = 2;
    auto p = make_sessions({}, so);
    auto dl = deadline::after(5s);
    auto a = co_await p.client.open(dl);
    CO_ASSERT_OK(a);
    auto b = co_await p.client.open(dl);
    CO_ASSERT_OK(b);
    auto c = co_await p.client.open(dl);
    CO_ASSERT_OK(c);
    std::array<std::byte, 16> buf{};
    auto r = co_await c->read_some(buf, dl);
    CO_ASSERT_TRUE(!r);
    EXPECT_EQ(r.error(), mux::make_error_code(mux::error::refused_stream));
    EXPECT_EQ(p.server.counters().refused, 1u);
    // Closing one makes room again.
    auto sa = co_await p.server.accept(dl);
    CO_ASSERT_OK(sa);
    a->reset();
    auto gone = co_await sa->read_some(buf, dl);
    EXPECT_FALSE(gone);
    auto d = co_await p.client.open(dl);
    CO_ASSERT_OK(d);
    auto w = co_await d->write(as_bytes(std::string_view("ok")), dl);
    CO_ASSERT_OK(w);
    auto sb = co_await p.server.accept(dl);
    CO_ASSERT_OK(sb);
    auto sd = co_await p.server.accept(dl);
    CO_ASSERT_OK(sd);
    EXPECT_EQ(sd->id(), d->id());
  });
}

TEST(MuxSession, GoawayLetsExistingStreamsFinish) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(5s);
    auto a = co_await p.client.open(dl);
    CO_ASSERT_OK(a);
    auto sa = co_await p.server.accept(dl);
    CO_ASSERT_OK(sa);
    p.server.go_away();
    auto refused = co_await p.server.accept(dl);
    CO_ASSERT_TRUE(!refused);
    EXPECT_EQ(refused.error(), mux::make_error_code(mux::error::going_away));
    // The client learns it: its next open fails (after the GOAWAY arrived).
    std::array<std::byte, 16> buf{};
    auto w = co_await sa->write(as_bytes(std::string_view("last words")), dl);
    CO_ASSERT_OK(w);
    auto sh = co_await sa->shutdown_write(dl);
    CO_ASSERT_OK(sh);
    auto got = co_await read_all(*a, dl);
    CO_ASSERT_OK(got);
    EXPECT_EQ(got->size(), 10u);
    auto late = co_await p.client.open(dl);
    CO_ASSERT_TRUE(!late);
    EXPECT_EQ(late.error(), mux::make_error_code(mux::error::going_away));
    auto w2 = co_await a->write(as_bytes(std::string_view("bye")), dl);
    CO_ASSERT_OK(w2);
    auto ac = co_await a->shutdown_write(dl);
    CO_ASSERT_OK(ac);
    auto rest = co_await read_all(*sa, dl);
    CO_ASSERT_OK(rest);
    EXPECT_EQ(rest->size(), 3u);
    (void)buf;
    auto closed = co_await p.server.close(dl);
    EXPECT_TRUE(closed);
  });
}

TEST(MuxSession, KeepaliveDetectsADeadPeer) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    mux::options o;
    o.keepalive = 50ms;
    o.dead_after = 100ms;
    mux::session s(any_stream(std::move(a)), mux::role::client, o);
    auto dl = deadline::after(5s);
    auto st = co_await s.open(dl);
    CO_ASSERT_OK(st);
    std::array<std::byte, 16> buf{};
    auto start = deadline::clock::now();
    auto r = co_await st->read_some(buf, dl);
    CO_ASSERT_TRUE(!r);
    EXPECT_EQ(r.error(), mux::make_error_code(mux::error::peer_dead));
    EXPECT_LT(elapsed_since(start), 3s);
    EXPECT_GE(s.counters().pings, 1u);
    (void)b;
  });
}

TEST(MuxSession, KeepaliveKeepsALivePeer) {
  run_test([]() -> task<void> {
    mux::options o;
    o.keepalive = 20ms;
    o.dead_after = 200ms;
    auto p = make_sessions(o, {});
    auto dl = deadline::after(5s);
    auto st = co_await p.client.open(dl);
    CO_ASSERT_OK(st);
    std::array<std::byte, 16> buf{};
    auto r = co_await st->read_some(buf, deadline::after(400ms));
    CO_ASSERT_TRUE(!r);
    EXPECT_EQ(r.error(), errc::timed_out);
    EXPECT_FALSE(p.client.failure());
    EXPECT_GE(p.client.counters().pings, 2u);
  });
}

TEST(MuxSession, APeerSendingGarbageFailsTheSession) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    mux::session s(any_stream(std::move(a)), mux::role::server);
    auto dl = deadline::after(5s);
    std::string junk = header(0, 9, 0, 1);
    auto w = co_await b.write(as_bytes(junk), dl);
    CO_ASSERT_OK(w);
    auto st = co_await s.accept(dl);
    CO_ASSERT_TRUE(!st);
    EXPECT_EQ(st.error(), mux::make_error_code(mux::error::bad_frame_type));
  });
}

// A peer that sends beyond the window it was granted gets the stream reset; the bytes
// within the window are still read.
TEST(MuxSession, DataBeyondTheWindowResetsTheStream) {
  run_test([]() -> task<void> {
    auto [a, b] =
        mem_stream::pair(mem_options{.buffer_limit = 1 << 20}, mem_options{.buffer_limit = 1 << 20});
    mux::session s(any_stream(std::move(a)), mux::role::server);
    auto dl = deadline::after(5s);
    std::string wire;
    mux::append_data(wire, 1, mux::flag_syn, {});
    std::string chunk(16 * 1024, 'z');
    for (std::size_t sent = 0; sent <= mux::initial_window; sent += chunk.size()) {
      mux::append_data(wire, 1, 0, as_bytes(chunk));
    }
    mux::append_ping(wire, 0, 99);
    auto w = co_await b.write(as_bytes(wire), dl);
    CO_ASSERT_OK(w);
    // The answer to the ping comes after every frame before it was handled (no reading
    // of the stream yet, so no credit went back): the RST, then the ACK.
    std::vector<std::byte> back;
    std::array<std::byte, 256> buf{};
    std::vector<mux::frame_type> seen;
    mux::decoder d;
    bool acked = false;
    while (!acked) {
      auto n = co_await b.read_some(buf, dl);
      CO_ASSERT_OK(n);
      back.insert(back.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
      std::size_t off = 0;
      for (;;) {
        auto f = d.decode(const_buffer(back.data() + off, back.size() - off));
        CO_ASSERT_OK(f);
        if (!*f) break;
        seen.push_back((*f)->type);
        if ((*f)->type == mux::frame_type::ping) acked = true;
        off += (*f)->size;
      }
      back.erase(back.begin(), back.begin() + static_cast<std::ptrdiff_t>(off));
    }
    CO_ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0], mux::frame_type::rst);
    auto st = co_await s.accept(dl);
    CO_ASSERT_OK(st);
    auto got = co_await read_all(*st, dl);
    CO_ASSERT_TRUE(!got);
    EXPECT_EQ(got.error(), mux::make_error_code(mux::error::flow_control));
    EXPECT_FALSE(s.failure());
  });
}

// A peer that pings without ever reading the answers fails the session once the replies
// pile up past the control backlog, instead of growing the send queue without end.
TEST(MuxSession, APingFloodThatNeverReadsFailsTheSession) {
  run_test([]() -> task<void> {
    auto [a, b] = mem_stream::pair();
    mux::options o;
    o.send_buffer = 64 * 1024;
    o.control_backlog = 16 * 1024;
    mux::session s(any_stream(std::move(a)), mux::role::server, o);
    std::string batch;
    for (int i = 0; i < 1000; ++i) mux::append_ping(batch, 0, static_cast<std::uint64_t>(i));
    std::size_t sent = 0;
    while (!s.failure() && sent < (64u << 20)) {
      auto w = co_await b.write(as_bytes(batch), deadline::after(5s));
      if (!w) break;
      sent += batch.size();
      co_await yield();
    }
    EXPECT_EQ(s.failure(), mux::make_error_code(mux::error::control_flood));
    // Well before the 64 MiB the loop allows: the bound is the send buffer plus the backlog.
    EXPECT_LT(sent, std::size_t{4} << 20);
  });
}

// Opening streams and resetting them before they are accepted (the HTTP/2 "rapid reset"
// pattern) leaves nothing behind: the reset streams never reach accept() and the backlog
// does not grow.
TEST(MuxSession, StreamsResetBeforeAcceptAreDroppedNotQueued) {
  run_test([]() -> task<void> {
    auto [a, b] =
        mem_stream::pair(mem_options{.buffer_limit = 1 << 20}, mem_options{.buffer_limit = 1 << 20});
    mux::session s(any_stream(std::move(a)), mux::role::server);
    auto dl = deadline::after(5s);
    constexpr std::uint32_t churn = 5000;
    std::string wire;
    for (std::uint32_t i = 0; i < churn; ++i) {
      mux::append_data(wire, 2 * i + 1, mux::flag_syn, {});
      mux::append_rst(wire, 2 * i + 1, 8);
    }
    std::string last = "still here";
    mux::append_data(wire, 2 * churn + 1, mux::flag_syn, as_bytes(last));
    auto w = co_await b.write(as_bytes(wire), dl);
    CO_ASSERT_OK(w);
    auto st = co_await s.accept(dl);
    CO_ASSERT_OK(st);
    EXPECT_EQ(st->id(), 2 * churn + 1);
    std::array<std::byte, 32> buf{};
    auto n = co_await st->read_some(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *n), last);
    EXPECT_EQ(s.counters().dropped, churn);
    EXPECT_EQ(s.counters().refused, 0u);
    EXPECT_FALSE(s.failure());
  });
}

// -- other layers over a mux stream ------------------------------------------------------

TEST(MuxSession, TlsRunsOverAMuxStream) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(10s);
    std::vector<std::string> names{"localhost"};
    auto cert = tls::self_signed(names);
    CO_ASSERT_OK(cert);
    tls::context_options server_options;
    server_options.certificates.push_back(*cert);
    auto server_ctx = tls::context::server(server_options);
    CO_ASSERT_OK(server_ctx);
    tls::context_options client_options;
    client_options.ca_pem = cert->cert_pem;
    auto client_ctx = tls::context::client(client_options);
    CO_ASSERT_OK(client_ctx);
    scope s;
    s.spawn(call([&]() -> task<void> {
      auto st = co_await p.server.accept(dl);
      CO_ASSERT_OK(st);
      auto secured = co_await tls::accept(any_stream(std::move(*st)), *server_ctx, dl);
      CO_ASSERT_OK(secured);
      std::array<std::byte, 1024> buf{};
      for (;;) {
        auto n = co_await secured->read_some(buf, dl);
        if (!n) break;
        auto w = co_await secured->write(const_buffer(buf.data(), *n), dl);
        if (!w) break;
      }
      (void)co_await secured->close(dl);
    }));
    auto plain = co_await p.client.open(dl);
    CO_ASSERT_OK(plain);
    tls::client_options hello;
    hello.server_name = "localhost";
    auto secured = co_await tls::connect(any_stream(std::move(*plain)), *client_ctx, hello, dl);
    CO_ASSERT_OK(secured);
    std::string message = "through TLS through one mux stream";
    auto w = co_await secured->write(as_bytes(message), dl);
    CO_ASSERT_OK(w);
    std::string echoed;
    std::array<std::byte, 1024> buf{};
    while (echoed.size() < message.size()) {
      auto n = co_await secured->read_some(buf, dl);
      CO_ASSERT_OK(n);
      echoed.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    EXPECT_EQ(echoed, message);
    (void)co_await secured->close(dl);
    (void)co_await s.join(dl);
  });
}

TEST(MuxSession, Http1RunsOverAMuxStream) {
  run_test([]() -> task<void> {
    auto p = make_sessions();
    auto dl = deadline::after(10s);
    scope s;
    s.spawn(call([&]() -> task<void> {
      for (int i = 0; i < 2; ++i) {
        auto st = co_await p.server.accept(dl);
        CO_ASSERT_OK(st);
        s.spawn(call([st = std::move(*st)]() mutable -> task<void> {
          auto h = [](http1::request& req, http1::response& res) -> task<result<void>> {
            std::string body = "you asked for " + std::string(req.target());
            co_return co_await res.send(200, body, deadline::after(5s));
          };
          // The client resets its stream when it goes: serve ends with that error.
          (void)co_await http1::serve(any_stream(std::move(st)), h);
        }));
      }
    }));
    for (int i = 0; i < 2; ++i) {
      auto st = co_await p.client.open(dl);
      CO_ASSERT_OK(st);
      http1::client c(any_stream(std::move(*st)));
      c.set_host("mux");
      http1::client::outgoing get;
      get.target = "/stream/" + std::to_string(i);
      auto head = co_await c.send(get, dl);
      CO_ASSERT_OK(head);
      auto body = co_await c.read_body(1024, dl);
      CO_ASSERT_OK(body);
      EXPECT_EQ(*body, std::string("you asked for /stream/") + std::to_string(i));
    }
    auto joined = co_await s.join(dl);
    EXPECT_TRUE(joined);
  });
}

// In a spec, a connection carries one mux stream, and layers stack on it.
TEST(MuxPipeline, ConnectorAndListenerMeetOnOneStream) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(5s);
    auto listener = strata::listen("tcp-listen:127.0.0.1:0 | mux(window=512k) | prefix(4)");
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    auto conn = co_await strata::connect("tcp:127.0.0.1:" + std::to_string(port) + " | mux | prefix(4)", dl);
    CO_ASSERT_OK(conn);
    CO_ASSERT_TRUE(conn->is_message());
    EXPECT_TRUE(conn->runtime_capabilities().multiplexed);
    auto sent = co_await conn->message().send(as_bytes(std::string_view("over mux")), dl);
    CO_ASSERT_OK(sent);
    auto peer = co_await listener->accept(dl);
    CO_ASSERT_OK(peer);
    CO_ASSERT_TRUE(peer->is_message());
    std::array<std::byte, 64> buf{};
    auto n = co_await peer->message().recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *n), std::string("over mux"));
    (void)co_await conn->close(dl);
    (void)co_await peer->close(dl);
    listener->close();
  });
}

}  // namespace
}  // namespace strata::test
