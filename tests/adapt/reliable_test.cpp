// reliable: the codec (round trips, every malformed packet), the engine in virtual time
// over a seeded lossy link (every message in order, checked by SHA-256, at 1%, 10% and 30%
// loss with reordering and duplication; RTO per RFC 6298; flow control; the dead-peer
// deadline; the close handshake), then the coroutine driver over an in-process lossy link
// and over real UDP from spec strings.
#include "strata/adapt/reliable.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "support/lossy_link.hpp"
#include "support/netns_link.hpp"

using namespace std::chrono_literals;

namespace strata::test {

// -- the shared message suite, over a link that loses, duplicates and reorders ---------------

namespace reliable_conformance {
struct lossy_traits {
  using message_type = reliable::connection;
  static constexpr std::size_t max_message = 1200 - reliable::header_size;
  static constexpr bool send_rejects_oversize = true;
  static task<result<std::pair<reliable::connection, reliable::connection>>> make_pair(deadline) {
    link_config link;
    link.loss = 0.05;
    link.duplicate = 0.05;
    link.reorder = 0.1;
    link.delay = 200us;
    link.jitter = 500us;
    auto [x, y] = lossy_pair(link);
    reliable::options o;
    o.rto_min = 10ms;
    o.rto_initial = 50ms;
    co_return std::pair<reliable::connection, reliable::connection>(reliable::connection(std::move(x), o),
                                                                    reliable::connection(std::move(y), o));
  }
};
}  // namespace reliable_conformance

INSTANTIATE_TYPED_TEST_SUITE_P(ReliableOverLossyLink, message_conformance,
                               ::testing::Types<reliable_conformance::lossy_traits>);

namespace {

using reliable::engine;
using time_point = engine::time_point;

// -- codec -------------------------------------------------------------------------------

/// test_peer_tag is the tag of the peer the engine tests play by hand.
constexpr std::uint32_t test_peer_tag = 0x7e57;

/// encoded writes `p` (with test_peer_tag as its sender's tag unless it has one).
std::vector<std::byte> encoded(reliable::packet p, const_buffer payload = {}) {
  if (p.from_tag == 0) p.from_tag = test_peer_tag;
  std::vector<std::byte> out(reliable::header_size + 8 * p.range_count + payload.size());
  auto n = reliable::encode(p, out);
  if (!payload.empty()) std::memcpy(out.data() + n, payload.data(), payload.size());
  return out;
}

TEST(ReliableCodec, RoundTripsEveryPacketType) {
  reliable::packet p;
  p.type = reliable::packet_type::ack;
  p.window = 77;
  p.ack = 1000;
  p.ranges[0] = {1002, 1005};
  p.ranges[1] = {1010, 1011};
  p.range_count = 2;
  auto wire = encoded(p);
  ASSERT_EQ(wire.size(), reliable::header_size + 16);
  reliable::packet q;
  ASSERT_TRUE(reliable::decode(wire, q));
  EXPECT_EQ(q.type, reliable::packet_type::ack);
  EXPECT_EQ(q.window, 77u);
  EXPECT_EQ(q.ack, 1000u);
  ASSERT_EQ(q.range_count, 2u);
  EXPECT_EQ(q.ranges[0].first, 1002u);
  EXPECT_EQ(q.ranges[0].end, 1005u);
  EXPECT_EQ(q.ranges[1].first, 1010u);
  EXPECT_EQ(q.ranges[1].end, 1011u);

  reliable::packet d;
  d.type = reliable::packet_type::data;
  d.seq = 0x0102030405060708ull;
  d.ack = 5;
  d.from_tag = 0xa1b2c3d4;
  d.to_tag = 0x01020304;
  std::string body = "hello";
  wire = encoded(d, as_bytes(body));
  ASSERT_TRUE(reliable::decode(wire, q));
  EXPECT_EQ(q.type, reliable::packet_type::data);
  EXPECT_EQ(q.seq, d.seq);
  EXPECT_EQ(q.from_tag, 0xa1b2c3d4u);
  EXPECT_EQ(q.to_tag, 0x01020304u);
  EXPECT_EQ(std::string(as_text(q.payload)), body);
  EXPECT_EQ(wire.size(), 40u + body.size());
  EXPECT_EQ(static_cast<int>(wire[0]), 2);  // version
  EXPECT_EQ(static_cast<int>(wire[1]), 0);  // type

  for (auto t :
       {reliable::packet_type::keepalive, reliable::packet_type::close, reliable::packet_type::reset}) {
    reliable::packet c;
    c.type = t;
    c.flags = t == reliable::packet_type::keepalive ? reliable::flag_ack_request : 0;
    c.seq = 9;
    wire = encoded(c);
    ASSERT_TRUE(reliable::decode(wire, q));
    EXPECT_EQ(q.type, t);
    EXPECT_EQ(q.flags, c.flags);
  }
}

std::error_code decode_error(std::vector<std::byte> wire) {
  reliable::packet q;
  auto r = reliable::decode(wire, q);
  return r ? std::error_code{} : r.error();
}

TEST(ReliableCodec, RefusesEveryMalformedPacketWithItsOwnError) {
  using reliable::error;
  reliable::packet base;
  base.type = reliable::packet_type::ack;
  base.ack = 10;
  auto good = encoded(base);
  EXPECT_FALSE(decode_error(good));

  EXPECT_EQ(decode_error(std::vector<std::byte>(good.begin(), good.begin() + 39)),
            make_error_code(error::truncated));
  auto v = good;
  v[0] = std::byte(1);  // the format before tags
  EXPECT_EQ(decode_error(v), make_error_code(error::bad_version));
  v[0] = std::byte(3);
  EXPECT_EQ(decode_error(v), make_error_code(error::bad_version));
  v = good;
  std::fill(v.begin() + 32, v.begin() + 36, std::byte(0));  // no sender's tag
  EXPECT_EQ(decode_error(v), make_error_code(error::bad_tag));
  v = good;
  v[1] = std::byte(5);
  EXPECT_EQ(decode_error(v), make_error_code(error::bad_type));
  v = good;
  v[2] = std::byte(1);  // ack_request is for keepalives only
  EXPECT_EQ(decode_error(v), make_error_code(error::bad_flags));
  // A SACK count with no ranges behind it, or more than the limit.
  v = good;
  v[3] = std::byte(1);
  EXPECT_EQ(decode_error(v), make_error_code(error::truncated));
  v = good;
  v[3] = std::byte(reliable::max_sack_ranges + 1);
  v.resize(v.size() + 8 * (reliable::max_sack_ranges + 1), std::byte(1));
  EXPECT_EQ(decode_error(v), make_error_code(error::bad_ack));
  // Bytes after the ranges.
  v = good;
  v.push_back(std::byte(0));
  EXPECT_EQ(decode_error(v), make_error_code(error::bad_payload));
  // Ranges: an empty one, one at the ack, overlapping or touching ones, on a data packet.
  auto with_ranges = [&](std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges, std::uint8_t type = 1) {
    auto w = good;
    w[1] = std::byte(type);
    w[3] = std::byte(ranges.size());
    for (auto [off, len] : ranges) {
      for (int i = 3; i >= 0; --i) w.push_back(std::byte(off >> (8 * i)));
      for (int i = 3; i >= 0; --i) w.push_back(std::byte(len >> (8 * i)));
    }
    return w;
  };
  EXPECT_FALSE(decode_error(with_ranges({{2, 3}, {6, 1}})));
  EXPECT_EQ(decode_error(with_ranges({{2, 0}})), make_error_code(error::bad_ack));
  EXPECT_EQ(decode_error(with_ranges({{0, 2}})), make_error_code(error::bad_ack));
  EXPECT_EQ(decode_error(with_ranges({{2, 3}, {5, 1}})), make_error_code(error::bad_ack));
  EXPECT_EQ(decode_error(with_ranges({{5, 3}, {2, 1}})), make_error_code(error::bad_ack));
  EXPECT_EQ(decode_error(with_ranges({{2, 3}}, 0)), make_error_code(error::bad_ack));
  // Payloads on packets that carry none.
  for (std::uint8_t t : {2, 3, 4}) {
    v = good;
    v[1] = std::byte(t);
    v.push_back(std::byte(0));
    EXPECT_EQ(decode_error(v), make_error_code(error::bad_payload)) << int(t);
  }
  // Every error is a protocol_error with a message that names reliable.
  EXPECT_TRUE(make_error_code(error::bad_ack) == errc::protocol_error);
  EXPECT_NE(make_error_code(error::bad_ack).message().find("reliable"), std::string::npos);
  EXPECT_TRUE(make_error_code(error::peer_dead) == errc::broken);
  EXPECT_TRUE(make_error_code(error::message_too_large) == errc::message_too_large);
}

// -- the engine in virtual time -------------------------------------------------------------

/// sim runs two engines over a lossy link in virtual time: a sends `count` messages (made
/// by message_bytes), b reads them and hashes what it gets.
struct sim {
  sim(const link_config& link, const reliable::options& oa, const reliable::options& ob)
      : start(time_point{} + std::chrono::hours(1)),
        now(start),
        a(oa, link.max_message, now),
        b(ob, link.max_message, now),
        ab(link, 1),
        ba(link, 2),
        buf(link.max_message) {}

  time_point start;
  time_point now;
  engine a;
  engine b;
  sim_link ab;
  sim_link ba;
  std::vector<std::byte> buf;
  std::vector<std::byte> in = std::vector<std::byte>(65536);
  bool b_reads = true;

  // Moves packets, runs timers, returns false when nothing will ever happen again.
  bool step() {
    bool moved = false;
    while (auto p = ab.pop_due(now)) {
      b.on_packet(*p, now);
      moved = true;
    }
    while (auto p = ba.pop_due(now)) {
      a.on_packet(*p, now);
      moved = true;
    }
    a.on_timer(now);
    b.on_timer(now);
    while (std::size_t n = a.poll(buf, now)) {
      ab.push_checked(const_buffer(buf.data(), n), now);
      moved = true;
    }
    while (std::size_t n = b.poll(buf, now)) {
      ba.push_checked(const_buffer(buf.data(), n), now);
      moved = true;
    }
    auto next = std::min({a.next_deadline(), b.next_deadline(), ab.next_due(), ba.next_due()});
    if (next == time_point::max()) return moved;
    now = next <= now ? now + 1us : next;
    return true;
  }

  // Transfers `count` messages of up to `max_size` bytes from a to b, then both close.
  // Returns {sender hash, receiver hash}.
  struct outcome {
    std::string sent_hash, got_hash;
    std::uint64_t sent = 0, got = 0;
    bool a_done = false, b_done = false;
    std::chrono::milliseconds took{0};
  };
  outcome transfer(std::uint64_t count, std::size_t max_size, std::chrono::seconds limit) {
    sha256 hs;
    sha256 hr;
    outcome o;
    while (now - start < limit) {
      while (o.sent < count && a.writable()) {
        auto m = message_bytes(7, o.sent, max_size);
        std::uint64_t len = m.size();
        hs.update(&len, sizeof len);
        hs.update(m.data(), m.size());
        auto r = a.send(const_buffer(m));
        if (!r) {
          ADD_FAILURE() << r.error().message();
          return o;
        }
        ++o.sent;
      }
      if (o.sent == count) a.shutdown();
      if (b_reads) {
        while (b.readable()) {
          auto n = b.recv(in);
          if (!n) {
            if (n.error() == errc::end_of_stream) {
              if (!o.b_done) b.shutdown();
              o.b_done = true;
            } else {
              ADD_FAILURE() << "recv: " << n.error().message();
              return o;
            }
            break;
          }
          std::uint64_t len = *n;
          hr.update(&len, sizeof len);
          hr.update(in.data(), *n);
          ++o.got;
        }
      }
      if (a.finished_sending() && a.finished_receiving() && o.b_done && b.finished_sending()) {
        o.a_done = true;
        break;
      }
      if (a.failure() || b.failure()) break;
      if (!step()) break;
    }
    o.sent_hash = hs.hex();
    o.got_hash = hr.hex();
    o.took = std::chrono::duration_cast<std::chrono::milliseconds>(now - start);
    return o;
  }
};

reliable::options fast_options() {
  reliable::options o;
  o.rto_min = 20ms;
  o.rto_initial = 100ms;
  o.keepalive = 0ms;
  o.dead_after = 30s;
  return o;
}

void expect_transfer(double loss, double dup, double reorder, std::uint64_t seed, std::uint64_t count = 3000,
                     reliable::options::control control = reliable::options::control::newreno) {
  link_config link;
  link.loss = loss;
  link.duplicate = dup;
  link.reorder = reorder;
  link.delay = 5ms;
  link.jitter = 10ms;
  link.seed = seed;
  auto o_a = fast_options();
  o_a.congestion = control;
  sim s(link, o_a, fast_options());
  auto o = s.transfer(count, 1100, 600s);
  EXPECT_TRUE(o.a_done) << "loss " << loss << ": the transfer did not finish (got " << o.got << " of "
                        << o.sent << "); a: " << s.a.failure().message()
                        << ", b: " << s.b.failure().message();
  EXPECT_EQ(o.got, count);
  EXPECT_EQ(o.sent_hash, o.got_hash);
  const auto& st = s.a.counters();
  if (loss > 0) {
    EXPECT_GT(st.retransmits, 0u);
  }
  if (loss >= 0.1) {
    EXPECT_GT(st.fast_retransmits, 0u);
  }
  if (dup > 0) {
    EXPECT_GT(s.b.counters().duplicates, 0u);
  }
}

TEST(ReliableEngine, DeliversEveryMessageInOrderWithoutLoss) { expect_transfer(0, 0, 0, 1); }
TEST(ReliableEngine, DeliversEveryMessageInOrderAtOnePercentLoss) { expect_transfer(0.01, 0.01, 0.1, 2); }
TEST(ReliableEngine, DeliversEveryMessageInOrderAtTenPercentLoss) { expect_transfer(0.10, 0.05, 0.2, 3); }
TEST(ReliableEngine, DeliversEveryMessageInOrderAtThirtyPercentLoss) {
  expect_transfer(0.30, 0.05, 0.3, 4, 1500);
}
TEST(ReliableEngine, DeliversEveryMessageOnceUnderHeavyDuplicationAndReordering) {
  expect_transfer(0.02, 0.5, 0.8, 5);
}
TEST(ReliableEngine, ManySeedsAtTenPercentLoss) {
  for (std::uint64_t seed = 10; seed < 30; ++seed) {
    SCOPED_TRACE(seed);
    expect_transfer(0.10, 0.02, 0.3, seed, 300);
  }
}

// The rate control delivers every message in order under loss, duplication and
// reordering as newreno does.
TEST(ReliableEngine, RateControlDeliversEveryMessageInOrderAtTenPercentLoss) {
  expect_transfer(0.10, 0.05, 0.2, 5, 3000, reliable::options::control::rate);
}
TEST(ReliableEngine, RateControlDeliversEveryMessageInOrderAtThirtyPercentLoss) {
  expect_transfer(0.30, 0.05, 0.3, 6, 1500, reliable::options::control::rate);
}

// Random loss (2%, no congestion: the link has no queue) halves newreno's window again and
// again; the rate control keeps sending at the delivery rate it measured, so the same
// transfer takes far less (virtual) time, every message still in order.
TEST(ReliableEngine, RateControlKeepsItsPaceThroughRandomLoss) {
  auto run = [](reliable::options::control control) {
    link_config link;
    link.loss = 0.02;
    link.delay = 5ms;
    link.jitter = 0us;
    link.seed = 11;
    auto o = fast_options();
    o.congestion = control;
    sim s(link, o, fast_options());
    auto out = s.transfer(20000, 1000, 600s);
    EXPECT_TRUE(out.a_done);
    EXPECT_EQ(out.got, 20000u);
    EXPECT_EQ(out.sent_hash, out.got_hash);
    return std::make_pair(out.took, s.a.counters());
  };
  auto [newreno_took, newreno] = run(reliable::options::control::newreno);
  auto [rate_took, rate] = run(reliable::options::control::rate);
  EXPECT_GT(rate.retransmits, 0u);
  EXPECT_GT(rate.delivery_rate, 0.0);
  EXPECT_GE(rate.min_rtt, 10ms);
  EXPECT_LT(rate.min_rtt, 12ms);
  EXPECT_LT(rate_took * 2, newreno_took)
      << "rate " << rate_took.count() << " ms, newreno " << newreno_took.count() << " ms";
}

TEST(ReliableEngine, RefusesAMessageLargerThanOnePacket) {
  auto now = time_point{} + 1h;
  engine e(fast_options(), 1200, now);
  EXPECT_EQ(e.max_payload(), 1200 - reliable::header_size);
  std::vector<std::byte> big(e.max_payload() + 1);
  auto r = e.send(const_buffer(big));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(reliable::error::message_too_large));
  EXPECT_TRUE(r.error() == errc::message_too_large);
  big.pop_back();
  EXPECT_TRUE(e.send(const_buffer(big)));
  // The mtu is capped by the layer below.
  engine small(fast_options(), 500, now);
  EXPECT_EQ(small.max_payload(), 500 - reliable::header_size);
}

TEST(ReliableEngine, RetransmissionTimeoutFollowsRfc6298) {
  // Every packet from a is lost: the RTO starts at rto_initial and doubles up to rto_max.
  link_config link;
  link.delay = 5ms;
  auto o = fast_options();
  o.rto_initial = 1000ms;
  o.rto_min = 200ms;
  o.rto_max = 8000ms;
  o.dead_after = 0ms;
  sim s(link, o, o);
  std::array<std::byte, 10> m{};
  ASSERT_TRUE(s.a.send(const_buffer(m)));
  std::vector<time_point> sends;
  std::vector<std::byte> buf(1200);
  for (int i = 0; i < 8; ++i) {
    s.a.on_timer(s.now);
    while (s.a.poll(buf, s.now) > 0) sends.push_back(s.now);
    s.now = s.a.next_deadline();
  }
  ASSERT_GE(sends.size(), 6u);
  std::vector<std::chrono::milliseconds> gaps;
  for (std::size_t i = 1; i < sends.size(); ++i)
    gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(sends[i] - sends[i - 1]));
  EXPECT_EQ(gaps[0], 1000ms);
  EXPECT_EQ(gaps[1], 2000ms);
  EXPECT_EQ(gaps[2], 4000ms);
  EXPECT_EQ(gaps[3], 8000ms);
  EXPECT_EQ(gaps[4], 8000ms);  // rto_max
  EXPECT_EQ(s.a.counters().timeouts, sends.size() - 1);
  EXPECT_EQ(s.a.counters().cwnd, 1.0);
}

TEST(ReliableEngine, RttSamplesSetTheTimeoutAndRespectTheMinimum) {
  link_config link;
  link.delay = 40ms;  // RTT 80 ms (+ the delayed ack)
  auto o = fast_options();
  o.rto_min = 200ms;
  o.ack_delay = 0ms;
  sim s(link, o, o);
  auto out = s.transfer(50, 100, 60s);
  EXPECT_TRUE(out.a_done);
  auto st = s.a.counters();
  EXPECT_GE(st.srtt, 75ms);
  EXPECT_LE(st.srtt, 95ms);
  EXPECT_GE(st.rto, 200ms);
  EXPECT_LE(st.rto, 400ms);

  link.delay = 1ms;
  sim fast(link, o, o);
  out = fast.transfer(50, 100, 60s);
  EXPECT_TRUE(out.a_done);
  EXPECT_EQ(fast.a.counters().rto, 200ms);  // clamped to rto_min
}

TEST(ReliableEngine, KarnsRuleTakesNoSampleFromARetransmission) {
  // One message, its first transmission lost, the retransmission acked 10 ms later: the
  // RTO must not come from that 10 ms (nor from the 1 s since the first send).
  auto o = fast_options();
  o.rto_initial = 1000ms;
  o.rto_min = 1ms;
  auto t0 = time_point{} + 1h;
  engine a(o, 1200, t0);
  engine b(o, 1200, t0);
  std::vector<std::byte> buf(1200);
  std::array<std::byte, 4> m{};
  ASSERT_TRUE(a.send(const_buffer(m)));
  ASSERT_GT(a.poll(buf, t0), 0u);  // lost
  auto t1 = a.next_deadline();
  EXPECT_EQ(t1, t0 + 1000ms);
  a.on_timer(t1);
  auto n = a.poll(buf, t1);
  ASSERT_GT(n, 0u);
  b.on_packet(const_buffer(buf.data(), n), t1 + 5ms);
  b.on_timer(t1 + 5ms + o.ack_delay);
  n = b.poll(buf, t1 + 5ms + o.ack_delay);
  ASSERT_GT(n, 0u);
  a.on_packet(const_buffer(buf.data(), n), t1 + 20ms);
  EXPECT_TRUE(a.all_acked());
  EXPECT_EQ(a.counters().srtt, 0us);    // no sample
  EXPECT_EQ(a.counters().rto, 1000ms);  // the backoff ended with the ack, no new value
}

TEST(ReliableEngine, FlowControlHoldsAtMostTheReceiveWindow) {
  link_config link;
  link.delay = 2ms;
  auto oa = fast_options();
  auto ob = fast_options();
  ob.window = 16;
  sim s(link, oa, ob);
  s.b_reads = false;
  for (std::uint64_t i = 0; i < 100; ++i) {
    auto m = message_bytes(3, i, 100);
    ASSERT_TRUE(s.a.send(const_buffer(m)));
  }
  for (int i = 0; i < 2000 && s.step() && s.now - s.start < 5s;) ++i;
  std::size_t held = 0;
  while (s.b.readable()) {
    auto n = s.b.recv(s.in);
    ASSERT_TRUE(n);
    EXPECT_EQ(std::vector<std::byte>(s.in.begin(), s.in.begin() + *n), message_bytes(3, held, 100));
    ++held;
  }
  EXPECT_EQ(held, 16u);
  EXPECT_EQ(s.b.counters().out_of_window, 0u);  // a never sent beyond the window
  // The window opens as b reads: the rest arrives (through the zero-window probe too).
  s.b_reads = true;
  std::uint64_t got = held;
  while (got < 100 && s.now - s.start < 60s) {
    while (s.b.readable()) {
      auto n = s.b.recv(s.in);
      ASSERT_TRUE(n);
      EXPECT_EQ(std::vector<std::byte>(s.in.begin(), s.in.begin() + *n), message_bytes(3, got, 100));
      ++got;
    }
    if (!s.step()) break;
  }
  EXPECT_EQ(got, 100u);
}

TEST(ReliableEngine, TheSendBufferBoundsQueuedMessages) {
  auto o = fast_options();
  o.send_buffer = 4;
  engine e(o, 1200, time_point{} + 1h);
  std::array<std::byte, 1> m{};
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(e.send(const_buffer(m)));
  EXPECT_FALSE(e.writable());
  EXPECT_EQ(e.send(const_buffer(m)).error(), errc::invalid_argument);
}

TEST(ReliableEngine, ADeadPeerFailsTheConnectionAtItsDeadline) {
  link_config link;
  link.delay = 5ms;
  auto o = fast_options();
  o.keepalive = 200ms;
  o.dead_after = 1000ms;
  sim s(link, o, o);
  // Healthy and idle: keepalives keep both alive well past dead_after.
  for (int i = 0; i < 10000 && s.now - s.start < 5s; ++i) s.step();
  EXPECT_FALSE(s.a.failure());
  EXPECT_FALSE(s.b.failure());
  EXPECT_GT(s.a.counters().keepalives_sent, 0u);
  // The link dies: each side fails about dead_after after it last heard the other.
  s.ab.cut();
  s.ba.cut();
  auto cut_at = s.now;
  while (!s.a.failure() && s.now - cut_at < 10s) s.step();
  ASSERT_TRUE(s.a.failure());
  EXPECT_EQ(s.a.failure(), make_error_code(reliable::error::peer_dead));
  EXPECT_TRUE(s.a.failure() == errc::broken);
  EXPECT_LE(s.now - cut_at, 1000ms + 250ms);
  EXPECT_GE(s.now - cut_at, 1000ms - 250ms);
  // A reader learns it.
  EXPECT_TRUE(s.a.readable());
  EXPECT_EQ(s.a.recv(s.in).error(), make_error_code(reliable::error::peer_dead));
}

TEST(ReliableEngine, DeadPeerWithDataOutstandingAndNoKeepalive) {
  link_config link;
  link.loss = 1.0;
  auto o = fast_options();
  o.dead_after = 2000ms;
  sim s(link, o, o);
  std::array<std::byte, 10> m{};
  ASSERT_TRUE(s.a.send(const_buffer(m)));
  while (!s.a.failure() && s.now - s.start < 10s) s.step();
  EXPECT_EQ(s.a.failure(), make_error_code(reliable::error::peer_dead));
  EXPECT_EQ(s.now - s.start, 2000ms);
  // b heard nothing and waits for nothing: it does not fail.
  EXPECT_FALSE(s.b.failure());
}

TEST(ReliableEngine, CloseHandshakeEndsBothDirectionsCleanly) {
  link_config link;
  link.delay = 3ms;
  link.loss = 0.2;
  link.seed = 9;
  sim s(link, fast_options(), fast_options());
  auto o = s.transfer(20, 50, 60s);
  ASSERT_TRUE(o.a_done);
  EXPECT_TRUE(s.a.finished_sending());
  EXPECT_TRUE(s.a.finished_receiving());
  EXPECT_TRUE(s.b.finished_receiving());
  for (int i = 0; i < 1000 && !s.b.finished_sending(); ++i) s.step();
  EXPECT_TRUE(s.b.finished_sending());
  // After the end: end_of_stream is sticky, send is closed.
  EXPECT_EQ(s.a.recv(s.in).error(), errc::end_of_stream);
  EXPECT_EQ(s.a.recv(s.in).error(), errc::end_of_stream);
  std::array<std::byte, 1> m{};
  EXPECT_EQ(s.a.send(const_buffer(m)).error(), errc::closed);
}

TEST(ReliableEngine, AResetFailsThePeer) {
  link_config link;
  sim s(link, fast_options(), fast_options());
  s.a.abort();
  EXPECT_EQ(s.a.failure(), make_error_code(reliable::error::aborted));
  for (int i = 0; i < 100 && !s.b.failure(); ++i) s.step();
  EXPECT_EQ(s.b.failure(), make_error_code(reliable::error::reset));
  EXPECT_TRUE(s.b.failure() == errc::broken);
}

// -- tags ----------------------------------------------------------------------------------

reliable::options tagged(std::uint32_t tag) {
  auto o = fast_options();
  o.tag = tag;
  return o;
}

/// deliver_all moves every packet `from` has to send into `to`; returns the packets moved.
std::vector<reliable::packet> deliver_all(engine& from, engine& to, time_point now,
                                          std::vector<std::vector<std::byte>>* wire = nullptr) {
  std::vector<reliable::packet> moved;
  std::vector<std::byte> buf(1200);
  std::vector<std::vector<std::byte>> keep;
  while (std::size_t n = from.poll(buf, now)) {
    keep.emplace_back(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    to.on_packet(const_buffer(keep.back()), now);
  }
  for (auto& k : keep) {
    reliable::packet p;
    EXPECT_TRUE(reliable::decode(k, p));
    p.payload = {};
    moved.push_back(p);
  }
  if (wire) *wire = std::move(keep);
  return moved;
}

/// established makes a client (tag `c`) and a server (tag `s`) that have exchanged one
/// message and its ack.
struct established {
  time_point now = time_point{} + 1h;
  engine client;
  engine server;
  established(std::uint32_t c, std::uint32_t s) : client(tagged(c), 1200, now), server(tagged(s), 1200, now) {
    EXPECT_TRUE(client.send(as_bytes("hello")));
    deliver_all(client, server, now);
    std::array<std::byte, 16> got{};
    EXPECT_TRUE(server.recv(got));
    now += 50ms;  // past the delayed ack
    server.on_timer(now);
    deliver_all(server, client, now);
  }
};

TEST(ReliableEngine, EachEndLearnsThePeersTagFromItsFirstPacket) {
  auto now = time_point{} + 1h;
  engine client(tagged(0xc1), 1200, now);
  engine server(tagged(0x51), 1200, now);
  EXPECT_EQ(client.tag(), 0xc1u);
  EXPECT_EQ(client.peer_tag(), 0u);
  ASSERT_TRUE(client.send(as_bytes("hello")));
  auto first = deliver_all(client, server, now);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].from_tag, 0xc1u);
  EXPECT_EQ(first[0].to_tag, 0u);  // the client has not heard from the server yet
  EXPECT_EQ(server.peer_tag(), 0xc1u);
  server.on_timer(now + 50ms);
  auto answer = deliver_all(server, client, now + 50ms);
  ASSERT_FALSE(answer.empty());
  EXPECT_EQ(answer[0].from_tag, 0x51u);
  EXPECT_EQ(answer[0].to_tag, 0xc1u);
  EXPECT_EQ(client.peer_tag(), 0x51u);
  // A tag of 0 asks for a random one: two engines practically never draw the same.
  engine r1(fast_options(), 1200, now), r2(fast_options(), 1200, now);
  EXPECT_NE(r1.tag(), 0u);
  EXPECT_NE(r1.tag(), r2.tag());
}

// The client restarts on the same address (a new engine, a new tag) while the server
// still holds the old connection: the server drops the newcomer's packet, probes the old
// tag, the newcomer answers that probe with a RESET to the server's tag, and the old
// connection fails with reset — at once, not after dead-after.
TEST(ReliableEngine, APeerThatRestartedIsFoundByItsTagAndEndsTheOldConnection) {
  established e(0xc1, 0x51);
  ASSERT_EQ(e.server.peer_tag(), 0xc1u);
  engine reborn(tagged(0xc2), 1200, e.now);
  ASSERT_TRUE(reborn.send(as_bytes("hello again")));
  deliver_all(reborn, e.server, e.now);
  EXPECT_EQ(e.server.counters().foreign, 1u);
  EXPECT_FALSE(e.server.failure());
  EXPECT_FALSE(e.server.readable()) << "the newcomer's message went to the old connection";
  auto probe = deliver_all(e.server, reborn, e.now);
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(probe[0].type, reliable::packet_type::keepalive);
  EXPECT_EQ(probe[0].to_tag, 0xc1u);
  EXPECT_EQ(reborn.counters().stale, 1u);
  auto reset = deliver_all(reborn, e.server, e.now);
  ASSERT_FALSE(reset.empty());
  EXPECT_EQ(reset[0].type, reliable::packet_type::reset);
  EXPECT_EQ(reset[0].from_tag, 0xc2u);
  EXPECT_EQ(reset[0].to_tag, 0x51u);
  EXPECT_EQ(e.server.failure(), make_error_code(reliable::error::reset));
  EXPECT_FALSE(reborn.failure());
}

// The server restarted: the client's packets name the old server's tag; the new one
// answers them with one RESET (not one per packet), and the client fails with reset.
TEST(ReliableEngine, APacketForAnEarlierTagOfOursIsAnsweredWithOneReset) {
  established e(0xc1, 0x51);
  engine reborn(tagged(0x52), 1200, e.now);
  ASSERT_TRUE(e.client.send(as_bytes("one")));
  std::vector<std::vector<std::byte>> wire;
  deliver_all(e.client, reborn, e.now, &wire);
  ASSERT_FALSE(wire.empty());
  reborn.on_packet(const_buffer(wire[0]), e.now + 1ms);  // as a retransmission would come
  EXPECT_EQ(reborn.counters().stale, 2u);
  EXPECT_EQ(reborn.peer_tag(), 0u) << "learned a tag from a stale packet";
  auto reset = deliver_all(reborn, e.client, e.now);
  ASSERT_EQ(reset.size(), 1u);
  EXPECT_EQ(reset[0].type, reliable::packet_type::reset);
  EXPECT_EQ(reset[0].to_tag, 0xc1u);
  EXPECT_EQ(e.client.failure(), make_error_code(reliable::error::reset));
  EXPECT_FALSE(reborn.failure());
}

// Without the tags a forger must guess, nothing it sends hurts a connection whose peer is
// alive: a packet from another tag draws a probe the real peer answers; RESETs that name
// no tag of ours, or come from a tag not the peer's without naming ours, are dropped.
TEST(ReliableEngine, ForgedPacketsWithoutTheTagsFailNothing) {
  established e(0xc1, 0x51);
  reliable::packet forged;
  forged.type = reliable::packet_type::reset;
  forged.from_tag = 0xbad;
  e.server.on_packet(encoded(forged), e.now);  // names no tag, not from the peer
  forged.to_tag = 0x1234;
  e.server.on_packet(encoded(forged), e.now);  // names a tag not ours
  reliable::packet data;
  data.type = reliable::packet_type::data;
  data.from_tag = 0xbad;
  e.server.on_packet(encoded(data, as_bytes("inject")), e.now);
  EXPECT_FALSE(e.server.failure());
  EXPECT_FALSE(e.server.readable()) << "the forged message was delivered";
  EXPECT_EQ(e.server.counters().foreign, 2u);
  EXPECT_EQ(e.server.counters().stale, 1u);
  // The probe that the foreign packets drew is answered by the live client.
  std::vector<std::vector<std::byte>> wire;
  auto out = deliver_all(e.server, e.client, e.now, &wire);
  bool probed = false;
  for (auto& p : out) probed |= p.type == reliable::packet_type::keepalive && p.to_tag == 0xc1u;
  EXPECT_TRUE(probed);
  deliver_all(e.client, e.server, e.now);
  EXPECT_FALSE(e.server.failure());
  EXPECT_FALSE(e.client.failure());
  // A RESET from the peer's own tag still works.
  e.client.abort();
  deliver_all(e.client, e.server, e.now);
  EXPECT_EQ(e.server.failure(), make_error_code(reliable::error::reset));
}

TEST(ReliableEngine, PacketsThatContradictWhatWasSentAreDroppedNotFatal) {
  auto now = time_point{} + 1h;
  engine e(fast_options(), 1200, now);
  // An ack of messages never sent.
  reliable::packet p;
  p.type = reliable::packet_type::ack;
  p.ack = 5;
  auto wire = encoded(p);
  e.on_packet(wire, now);
  EXPECT_EQ(e.counters().malformed, 1u);
  // Garbage.
  std::vector<std::byte> junk(40, std::byte(0xff));
  e.on_packet(junk, now);
  EXPECT_EQ(e.counters().malformed, 2u);
  // Data far beyond the window is refused and counted.
  reliable::packet d;
  d.type = reliable::packet_type::data;
  d.seq = 1'000'000;
  e.on_packet(encoded(d), now);
  EXPECT_EQ(e.counters().out_of_window, 1u);
  // Data after the peer's CLOSE.
  reliable::packet c;
  c.type = reliable::packet_type::close;
  c.seq = 3;
  e.on_packet(encoded(c), now);
  d.seq = 4;
  e.on_packet(encoded(d), now);
  EXPECT_EQ(e.counters().malformed, 3u);
  EXPECT_FALSE(e.failure());
  // A second CLOSE elsewhere.
  c.seq = 2;
  e.on_packet(encoded(c), now);
  EXPECT_EQ(e.counters().malformed, 4u);
  EXPECT_FALSE(e.failure());
}

TEST(ReliableEngine, OutOfOrderBufferIsBoundedInBytes) {
  auto o = fast_options();
  o.window = 1000;
  o.max_buffer = 10 * 1000;
  auto now = time_point{} + 1h;
  engine e(o, 1200, now);
  std::vector<std::byte> body(1000);
  reliable::packet d;
  d.type = reliable::packet_type::data;
  for (std::uint64_t seq = 1; seq < 40; ++seq) {
    d.seq = seq;
    e.on_packet(encoded(d, const_buffer(body)), now);
  }
  // At most max_buffer bytes held: the rest counted as beyond the window.
  EXPECT_GE(e.counters().out_of_window, 29u);
}

TEST(ReliableEngine, DelayedAcksCoverTwoMessagesOrWaitAckDelay) {
  auto o = fast_options();
  o.ack_delay = 10ms;
  auto now = time_point{} + 1h;
  engine e(o, 1200, now);
  std::vector<std::byte> buf(1200);
  reliable::packet d;
  d.type = reliable::packet_type::data;
  d.seq = 0;
  e.on_packet(encoded(d), now);
  EXPECT_EQ(e.poll(buf, now), 0u);  // the ack waits
  EXPECT_EQ(e.next_deadline(), now + 10ms);
  d.seq = 1;
  e.on_packet(encoded(d), now + 1ms);
  auto n = e.poll(buf, now + 1ms);  // the second message: ack at once
  ASSERT_GT(n, 0u);
  reliable::packet a;
  ASSERT_TRUE(reliable::decode(const_buffer(buf.data(), n), a));
  EXPECT_EQ(a.type, reliable::packet_type::ack);
  EXPECT_EQ(a.ack, 2u);
  // Out of order: at once, with a SACK range.
  d.seq = 4;
  e.on_packet(encoded(d), now + 2ms);
  n = e.poll(buf, now + 2ms);
  ASSERT_TRUE(reliable::decode(const_buffer(buf.data(), n), a));
  EXPECT_EQ(a.ack, 2u);
  ASSERT_EQ(a.range_count, 1u);
  EXPECT_EQ(a.ranges[0].first, 4u);
  EXPECT_EQ(a.ranges[0].end, 5u);
  // A lone message: the delayed ack fires after ack_delay.
  d.seq = 2;
  e.on_packet(encoded(d), now + 3ms);  // fills part of the gap: at once
  ASSERT_GT(e.poll(buf, now + 3ms), 0u);
}

// -- the driver ------------------------------------------------------------------------------

/// send_hashed sends `count` messages (message_bytes with `seed`, up to `max_size`) on any
/// message socket and returns the hash of what it sent (each message behind its length);
/// hash_until_end receives until end_of_stream, counting and hashing the same way.
template <class Messages>
task<std::string> send_hashed(Messages& m, std::uint64_t seed, std::uint64_t count, std::size_t max_size,
                              deadline dl) {
  sha256 h;
  for (std::uint64_t i = 0; i < count; ++i) {
    auto msg = message_bytes(seed, i, max_size);
    std::uint64_t len = msg.size();
    h.update(&len, sizeof len);
    h.update(msg.data(), msg.size());
    auto sent = co_await m.send(const_buffer(msg), dl);
    EXPECT_TRUE(sent) << sent.error().message();
    if (!sent) break;
  }
  co_return h.hex();
}

template <class Messages>
task<std::string> hash_until_end(Messages& m, std::size_t buffer, std::uint64_t& count, deadline dl) {
  sha256 h;
  std::vector<std::byte> buf(buffer);
  for (;;) {
    auto n = co_await m.recv(buf, dl);
    if (!n) {
      EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream)) << n.error().message();
      break;
    }
    std::uint64_t len = *n;
    h.update(&len, sizeof len);
    h.update(buf.data(), *n);
    ++count;
  }
  co_return h.hex();
}

/// send_all sends `count` messages (message_bytes with `seed`) and closes; recv_all reads
/// until end_of_stream, hashing what it gets, and closes.
task<void> send_all(reliable::connection& c, std::uint64_t seed, std::uint64_t count, std::size_t max_size,
                    std::string& hash, deadline dl) {
  hash = co_await send_hashed(c, seed, count, max_size, dl);
  auto closed = co_await c.close(dl);
  EXPECT_TRUE(closed) << closed.error().message();
}

task<void> recv_all(reliable::connection& c, std::uint64_t& count, std::string& hash, deadline dl) {
  hash = co_await hash_until_end(c, 65536, count, dl);
  auto closed = co_await c.close(dl);
  EXPECT_TRUE(closed) << closed.error().message();
}

void expect_driver_transfer(double loss, std::uint64_t seed, std::uint64_t count = 2000) {
  run_test(
      [&]() -> task<void> {
        link_config link;
        link.loss = loss;
        link.duplicate = 0.05;
        link.reorder = loss == 0 ? 0 : 0.1;
        link.delay = 1ms;
        link.jitter = 1ms;
        link.seed = seed;
        auto [x, y] = lossy_pair(link);
        auto o = fast_options();
        // At 30% loss each way a retransmission fails half the time, and an unbounded
        // exponential backoff has no finite expected wait: cap it.
        if (loss >= 0.3) o.rto_max = 50ms;
        reliable::connection a(std::move(x), o);
        reliable::connection b(std::move(y), o);
        std::string sent_hash;
        std::string got_hash;
        std::uint64_t got = 0;
        auto dl = deadline::after(20s);
        scope s;
        s.spawn(send_all(a, 11, count, 1100, sent_hash, dl));
        s.spawn(recv_all(b, got, got_hash, dl));
        (void)co_await s.join();
        EXPECT_EQ(got, count);
        EXPECT_EQ(sent_hash, got_hash);
        if (loss > 0) {
          EXPECT_GT(a.counters().retransmits, 0u);
        }
      },
      25s);
}

TEST(ReliableConnection, TransfersEveryMessageOverALosslessLink) { expect_driver_transfer(0, 1); }
TEST(ReliableConnection, TransfersEveryMessageAtOnePercentLoss) { expect_driver_transfer(0.01, 2); }
TEST(ReliableConnection, TransfersEveryMessageAtTenPercentLoss) { expect_driver_transfer(0.10, 3, 800); }
TEST(ReliableConnection, TransfersEveryMessageAtThirtyPercentLoss) { expect_driver_transfer(0.30, 4, 150); }

TEST(ReliableConnection, ADeadPeerFailsPendingCallsAtItsDeadline) {
  run_test([]() -> task<void> {
    link_config link;
    auto [x, y] = lossy_pair(link);
    auto o = fast_options();
    o.keepalive = 50ms;
    o.dead_after = 300ms;
    reliable::connection a(std::move(x), o);
    reliable::connection b(std::move(y), o);
    std::array<std::byte, 16> buf{};
    // Alive: a receive times out without failing the connection.
    auto n = co_await a.recv(buf, deadline::after(400ms));
    CO_ASSERT_TRUE(!n);
    EXPECT_EQ(n.error(), make_error_code(errc::timed_out));
    // b goes without a word: a's pending recv fails with peer_dead about dead_after later.
    b = reliable::connection();
    auto start = deadline::clock::now();
    n = co_await a.recv(buf, deadline::after(3s));
    CO_ASSERT_TRUE(!n);
    EXPECT_EQ(n.error(), make_error_code(reliable::error::peer_dead));
    EXPECT_TRUE(n.error() == errc::broken);
    auto took = elapsed_since(start);
    EXPECT_GE(took, 250ms);
    EXPECT_LE(took, 1500ms);
    auto sent = co_await a.send(const_buffer(buf), deadline::after(1s));
    EXPECT_EQ(sent.error(), make_error_code(reliable::error::peer_dead));
  });
}

TEST(ReliableConnection, MessagesLargerThanOnePacketAreRefused) {
  run_test([]() -> task<void> {
    link_config link;
    link.max_message = 500;
    auto [x, y] = lossy_pair(link);
    reliable::connection a(std::move(x), fast_options());
    reliable::connection b(std::move(y), fast_options());
    EXPECT_EQ(a.max_message(), 500 - reliable::header_size);
    EXPECT_EQ(a.runtime_capabilities().max_message, 500 - reliable::header_size);
    EXPECT_TRUE(a.runtime_capabilities().reliable);
    EXPECT_TRUE(a.runtime_capabilities().ordered);
    std::vector<std::byte> big(a.max_message() + 1);
    auto sent = co_await a.send(const_buffer(big), deadline::after(1s));
    CO_ASSERT_TRUE(!sent);
    EXPECT_EQ(sent.error(), make_error_code(reliable::error::message_too_large));
    // A receive buffer too small keeps the message for a retry.
    big.pop_back();
    sent = co_await a.send(const_buffer(big), deadline::after(1s));
    CO_ASSERT_OK(sent);
    std::array<std::byte, 10> small{};
    auto n = co_await b.recv(small, deadline::after(2s));
    CO_ASSERT_TRUE(!n);
    EXPECT_EQ(n.error(), make_error_code(errc::message_too_large));
    std::vector<std::byte> buf(1000);
    n = co_await b.recv(buf, deadline::after(2s));
    CO_ASSERT_OK(n);
    EXPECT_EQ(*n, big.size());
    scope s;
    s.spawn(call([&]() -> task<void> { (void)co_await a.close(deadline::after(2s)); }));
    s.spawn(call([&]() -> task<void> { (void)co_await b.close(deadline::after(2s)); }));
    (void)co_await s.join();
  });
}

TEST(ReliableConnection, HalfCloseLetsThePeerAnswerThenBothCloseCleanly) {
  run_test([]() -> task<void> {
    link_config link;
    link.loss = 0.1;
    link.seed = 8;
    auto [x, y] = lossy_pair(link);
    reliable::connection a(std::move(x), fast_options());
    reliable::connection b(std::move(y), fast_options());
    auto dl = deadline::after(5s);
    auto sent = co_await a.send(as_bytes("question"), dl);
    CO_ASSERT_OK(sent);
    auto shut = co_await a.shutdown_write(dl);
    CO_ASSERT_OK(shut);
    std::array<std::byte, 64> buf{};
    auto n = co_await b.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(std::string(as_text(const_buffer(buf.data(), *n))), std::string("question"));
    n = co_await b.recv(buf, dl);
    CO_ASSERT_TRUE(!n);
    EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream));
    sent = co_await b.send(as_bytes("answer"), dl);
    CO_ASSERT_OK(sent);
    n = co_await a.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(std::string(as_text(const_buffer(buf.data(), *n))), std::string("answer"));
    result<void> ca = errc::closed;
    result<void> cb = errc::closed;
    scope s;
    s.spawn(call([&]() -> task<void> { ca = co_await a.close(dl); }));
    s.spawn(call([&]() -> task<void> { cb = co_await b.close(dl); }));
    (void)co_await s.join();
    EXPECT_TRUE(ca) << ca.error().message();
    EXPECT_TRUE(cb) << cb.error().message();
    auto after = co_await a.recv(buf, dl);
    EXPECT_EQ(after.error(), make_error_code(errc::closed));
  });
}

TEST(ReliableConnection, CloseWithoutThePeerTimesOutAndResets) {
  run_test([]() -> task<void> {
    link_config link;
    auto [x, y] = lossy_pair(link);
    reliable::connection a(std::move(x), fast_options());
    reliable::connection b(std::move(y), fast_options());
    // b never closes: a's close gives up at its deadline and resets, which b sees.
    auto closed = co_await a.close(deadline::after(200ms));
    CO_ASSERT_TRUE(!closed);
    EXPECT_EQ(closed.error(), make_error_code(errc::timed_out));
    std::array<std::byte, 16> buf{};
    // b learns the end of a's stream (a's CLOSE came first), then the reset: its sends fail.
    auto n = co_await b.recv(buf, deadline::after(2s));
    CO_ASSERT_TRUE(!n);
    EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream)) << n.error().message();
    result<void> sent{};
    for (int i = 0; i < 100 && sent; ++i) {
      sent = co_await b.send(const_buffer(buf), deadline::after(1s));
      if (sent) (void)co_await sleep_for(10ms);
    }
    CO_ASSERT_TRUE(!sent);
    EXPECT_EQ(sent.error(), make_error_code(reliable::error::reset)) << sent.error().message();
    (void)co_await b.close(deadline::after(200ms));
  });
}

TEST(ReliableConnection, CloseStopsWaitingForTheLastAckOnceTheLingeringPeerHasLeft) {
  run_test(
      []() -> task<void> {
        link_config link;
        link.delay = 1ms;
        link.jitter = 0ms;
        auto [x, y] = lossy_pair(link);
        // Once b starts closing, every packet from a is lost: a's ACK of b's CLOSE never
        // arrives, a lingers and leaves, and b is left with only its CLOSE unacked.
        auto a_silenced = std::make_shared<bool>(false);
        x.drop_sent_if([a_silenced](const_buffer) { return *a_silenced; });
        reliable::connection a(std::move(x), fast_options());
        reliable::connection b(std::move(y), fast_options());
        auto dl = deadline::after(20s);
        result<void> ca = errc::closed;
        result<void> cb = errc::closed;
        auto a_done = deadline::clock::time_point{};
        scope s;
        s.spawn(call([&]() -> task<void> {
          ca = co_await a.close(dl);
          a_done = deadline::clock::now();
        }));
        std::array<std::byte, 16> buf{};
        auto n = co_await b.recv(buf, dl);  // a's CLOSE arrived: b has acknowledged it
        CO_ASSERT_TRUE(!n);
        EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream));
        *a_silenced = true;
        auto b_started = deadline::clock::now();
        cb = co_await b.close(dl);
        auto b_done = deadline::clock::now();
        (void)co_await s.join();
        EXPECT_TRUE(ca) << ca.error().message();
        EXPECT_TRUE(cb) << cb.error().message();
        EXPECT_FALSE(b.counters().retransmits == 0) << "b sent its CLOSE again while a lingered";
        // b gave up on the ACK only after a had left, and long before its own deadline.
        EXPECT_LE(a_done, b_done);
        EXPECT_LT(b_done - b_started, 8s);
      },
      30s);
}

// -- over real UDP, from spec strings -----------------------------------------------------------

TEST(ReliablePipeline, EchoesOverRealUdpFromSpecStrings) {
  run_test([]() -> task<void> {
    auto listener = strata::listen("udp-listen:127.0.0.1:0 | reliable(rto-min=20ms)");
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    auto dl = deadline::after(10s);
    const std::uint64_t count = 3000;
    std::string sent_hash;
    std::string echoed_hash;
    std::uint64_t echoed = 0;
    scope s;
    s.spawn(call([&]() -> task<void> {
      auto conn = co_await listener->accept(dl);
      CO_ASSERT_OK(conn);
      CO_ASSERT_TRUE(conn->is_message());
      auto& m = conn->message();
      EXPECT_TRUE(m.runtime_capabilities().reliable);
      EXPECT_EQ(m.runtime_capabilities().max_message, 1200 - reliable::header_size);
      std::vector<std::byte> buf(2000);
      for (;;) {
        auto n = co_await m.recv(buf, dl);
        if (!n) {
          EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream)) << n.error().message();
          break;
        }
        auto sent = co_await m.send(const_buffer(buf.data(), *n), dl);
        CO_ASSERT_OK(sent);
      }
      auto closed = co_await m.close(dl);
      EXPECT_TRUE(closed) << closed.error().message();
    }));
    auto text = "udp:127.0.0.1:" + std::to_string(port) + " | reliable(rto-min=20ms)";
    auto conn = co_await strata::connect(text, dl);
    CO_ASSERT_OK(conn);
    auto client = conn->take_message();
    s.spawn(call([&]() -> task<void> { echoed_hash = co_await hash_until_end(client, 2000, echoed, dl); }));
    sent_hash = co_await send_hashed(client, 21, count, 1200 - reliable::header_size, dl);
    auto shut = co_await client.shutdown_write(dl);
    CO_ASSERT_OK(shut);
    (void)co_await s.join();
    EXPECT_EQ(echoed, count);
    EXPECT_EQ(sent_hash, echoed_hash);
    auto closed = co_await client.close(dl);
    EXPECT_TRUE(closed) << closed.error().message();
  });
}

/// crashing_client is a reliable client on a plain UDP socket bound to a port of its
/// own, driven by hand: it can vanish without a RESET, as a killed process does.
struct crashing_client {
  int fd = -1;
  std::uint16_t port = 0;
  engine e;
  explicit crashing_client(std::uint16_t server_port) : e(fast_options(), 1200, deadline::clock::now()) {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in me{};
    me.sin_family = AF_INET;
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof me;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&me), sizeof me), 0);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len);
    port = ntohs(me.sin_port);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(server_port);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    timeval patience{0, 20'000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
  }
  ~crashing_client() {
    if (fd >= 0) ::close(fd);
  }
  /// exchange sends `message` and runs the engine until the echo of it arrives (or `dl`).
  std::string exchange(const std::string& message, deadline dl) {
    EXPECT_TRUE(e.send(as_bytes(message)));
    std::vector<std::byte> buf(1200), got(1200);
    while (!dl.expired()) {
      auto now = deadline::clock::now();
      e.on_timer(now);
      while (std::size_t n = e.poll(buf, now)) (void)::send(fd, buf.data(), n, 0);
      if (e.readable()) {
        auto n = e.recv(got);
        if (n) return std::string(reinterpret_cast<const char*>(got.data()), *n);
      }
      auto n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) e.on_packet(const_buffer(buf.data(), static_cast<std::size_t>(n)), deadline::clock::now());
    }
    return {};
  }
};

// A client process dies without a word and a new one starts on the same address and
// port: the server's old connection fails with reset as soon as the new client speaks
// (its tag differs), not dead-after (15 s) later, and the new client is served by a new
// connection.
TEST(ReliablePipeline, AClientRestartedOnTheSamePortIsServedAndTheOldConnectionReset) {
  // The server runs its own loop on a thread; the clients' blocking calls run here.
  std::promise<std::uint16_t> listening;
  std::vector<std::error_code> ended;
  auto server = on_strata_thread(
      [&]() -> task<void> {
        auto listener = strata::listen("udp-listen:127.0.0.1:0 | reliable(rto-min=20ms)");
        if (!listener) listening.set_value(0);
        CO_ASSERT_OK(listener);
        listening.set_value(listener->local_address()->port());
        auto dl = deadline::after(15s);
        for (int i = 0; i < 2; ++i) {
          auto conn = co_await listener->accept(dl);
          CO_ASSERT_OK(conn);
          auto m = conn->take_message();
          std::vector<std::byte> buf(2000);
          std::error_code why;
          for (;;) {
            auto n = co_await m.recv(buf, dl);
            if (!n) {
              why = n.error();
              break;
            }
            auto echoed = co_await m.send(const_buffer(buf.data(), *n), dl);
            if (!echoed) break;
          }
          ended.push_back(why);
          (void)co_await m.close(deadline::after(100ms));
        }
      },
      20s);
  auto server_port = listening.get_future().get();
  ASSERT_NE(server_port, 0);
  std::uint16_t client_port = 0;
  {
    crashing_client first(server_port);
    client_port = first.port;
    EXPECT_EQ(first.exchange("from the first client", deadline::after(5s)), "from the first client");
  }  // gone: no CLOSE, no RESET
  auto started = deadline::clock::now();
  run_test([&]() -> task<void> {
    auto dl = deadline::after(10s);
    auto spec = "udp:127.0.0.1:" + std::to_string(server_port) +
                "(bind=127.0.0.1:" + std::to_string(client_port) + ") | reliable(rto-min=20ms)";
    auto conn = co_await strata::connect(spec, dl);
    CO_ASSERT_OK(conn);
    auto second = conn->take_message();
    auto sent = co_await second.send(as_bytes("from the second client"), dl);
    CO_ASSERT_OK(sent);
    std::array<std::byte, 64> buf{};
    auto n = co_await second.recv(buf, dl);
    CO_ASSERT_OK(n);
    EXPECT_EQ(std::string(as_text(const_buffer(buf.data(), *n))), "from the second client");
    EXPECT_LT(deadline::clock::now() - started, 5s);
    (void)co_await second.close(deadline::after(2s));
  });
  server.join();
  ASSERT_EQ(ended.size(), 2u);
  EXPECT_EQ(ended[0], make_error_code(reliable::error::reset)) << ended[0].message();
}

TEST(ReliablePipeline, RunsOverDccpOverUdp) {
  // dccp gives connections with congestion control but no retransmission: reliable adds it.
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    auto listener = strata::listen("udp-listen:127.0.0.1:0 | dccp | reliable(rto-min=20ms)");
    CO_ASSERT_OK(listener);
    auto port = listener->local_address()->port();
    const std::uint64_t count = 500;
    std::string got_hash;
    std::uint64_t got = 0;
    scope s;
    s.spawn(call([&]() -> task<void> {
      auto conn = co_await listener->accept(dl);
      CO_ASSERT_OK(conn);
      auto m = conn->take_message();
      EXPECT_TRUE(m.runtime_capabilities().reliable);
      got_hash = co_await hash_until_end(m, 2000, got, dl);
      (void)co_await m.close(dl);
    }));
    auto conn = co_await strata::connect(
        "udp:127.0.0.1:" + std::to_string(port) + " | dccp | reliable(rto-min=20ms)", dl);
    CO_ASSERT_OK(conn);
    auto c = conn->take_message();
    auto max = c.runtime_capabilities().max_message;
    EXPECT_GT(max, 0u);
    auto sent_hash = co_await send_hashed(c, 41, count, max, dl);
    auto closed = co_await c.close(dl);
    EXPECT_TRUE(closed) << closed.error().message();
    (void)co_await s.join(dl);
    EXPECT_EQ(got, count);
    EXPECT_EQ(got_hash, sent_hash);
    listener->close();
  });
}

TEST(ReliablePipeline, RunsOverUnixDatagrams) {
  run_test([]() -> task<void> {
    auto dl = deadline::after(10s);
    std::string name = "@strata-reliable-test-" + std::to_string(::getpid());
    auto listener = strata::listen("unix-dgram-listen:" + name + " | reliable");
    CO_ASSERT_OK(listener);
    scope s;
    std::string got;
    s.spawn(call([&]() -> task<void> {
      auto conn = co_await listener->accept(dl);
      CO_ASSERT_OK(conn);
      auto m = conn->take_message();
      std::array<std::byte, 256> buf{};
      for (;;) {
        auto n = co_await m.recv(buf, dl);
        if (!n) {
          EXPECT_EQ(n.error(), make_error_code(errc::end_of_stream)) << n.error().message();
          break;
        }
        got.append(as_text(const_buffer(buf.data(), *n)));
      }
      (void)co_await m.close(dl);
    }));
    auto conn = co_await strata::connect("unix-dgram:" + name + " | reliable", dl);
    CO_ASSERT_OK(conn);
    auto c = conn->take_message();
    for (const char* word : {"one ", "two ", "three"}) {
      auto sent = co_await c.send(as_bytes(word), dl);
      CO_ASSERT_OK(sent);
    }
    auto closed = co_await c.close(dl);
    EXPECT_TRUE(closed) << closed.error().message();
    (void)co_await s.join(dl);
    EXPECT_EQ(got, std::string("one two three"));
    listener->close();
  });
}

TEST(ReliablePipeline, TheCheckerKnowsWhatReliableNeedsAndGives) {
  pipeline_error error;
  auto p = pipeline::parse("udp:127.0.0.1:9 | reliable(mtu=1400) | prefix", error);
  EXPECT_FALSE(p);  // prefix needs a stream
  p = pipeline::parse("udp:127.0.0.1:9 | reliable(mtu=1400)", error);
  ASSERT_TRUE(p) << error.message;
  auto top = p->top();
  EXPECT_TRUE(top.reliable);
  EXPECT_TRUE(top.ordered);
  EXPECT_TRUE(top.dup_free);
  EXPECT_TRUE(top.congestion_controlled);
  EXPECT_EQ(top.connection, connection::based);
  EXPECT_EQ(top.max_message, 1400 - reliable::header_size);
  p = pipeline::parse("udp:127.0.0.1:9 | reliable(window=8)", error);
  EXPECT_FALSE(p);
  p = pipeline::parse("udp:127.0.0.1:9 | reliable(rto-min=2s, rto-max=1s)", error);
  EXPECT_FALSE(p);
  p = pipeline::parse("tcp:127.0.0.1:9 | reliable", error);
  EXPECT_FALSE(p);  // a stream below
}

// -- through a real lossy IP link in a network namespace (support/netns_link.hpp) --------------

/// in_child runs a coroutine body on a fresh loop in the netns child; its int is the exit code.
int in_child(std::function<task<int>()> body) { return strata::run(body()); }

TEST(ReliableNetns, TheLinkCarriesTcpAndUdpBetweenItsTwoAddresses) {
  if (auto why = netns_unavailable(); !why.empty()) GTEST_SKIP() << why;
  netns_link_options link;
  link.delay = 1ms;
  int rc = run_in_netns(
      link,
      [] {
        return in_child([]() -> task<int> {
          auto dl = deadline::after(5s);
          // TCP: a listener on 10.77.0.1 accepts a connection made to 10.77.0.2.
          auto tcp_listener = strata::listen(std::string("tcp-listen:") + netns_local + ":0");
          if (!tcp_listener) co_return 1;
          auto port = tcp_listener->local_address()->port();
          auto client =
              co_await strata::connect(std::string("tcp:") + netns_remote + ":" + std::to_string(port), dl);
          if (!client) co_return 2;
          auto server = co_await tcp_listener->accept(dl);
          if (!server) co_return 3;
          auto peer = server->peer_address();
          if (!peer || peer->to_string().rfind(netns_remote, 0) != 0) co_return 4;
          auto w = co_await client->stream().write(as_bytes("over tcp"), dl);
          if (!w) co_return 5;
          std::array<std::byte, 16> buf{};
          auto n = co_await server->stream().read_some(buf, dl);
          if (!n || std::string(as_text(const_buffer(buf.data(), *n))) != "over tcp") co_return 6;
          // UDP the same way.
          auto udp_listener = strata::listen(std::string("udp-listen:") + netns_local + ":0");
          if (!udp_listener) co_return 7;
          port = udp_listener->local_address()->port();
          auto u =
              co_await strata::connect(std::string("udp:") + netns_remote + ":" + std::to_string(port), dl);
          if (!u) co_return 8;
          auto sent = co_await u->message().send(as_bytes("over udp"), dl);
          if (!sent) co_return 9;
          auto got = co_await udp_listener->accept(dl);
          if (!got) co_return 10;
          n = co_await got->message().recv(buf, dl);
          if (!n || std::string(as_text(const_buffer(buf.data(), *n))) != "over udp") co_return 11;
          sent = co_await got->message().send(as_bytes("back"), dl);
          if (!sent) co_return 12;
          n = co_await u->message().recv(buf, dl);
          if (!n || std::string(as_text(const_buffer(buf.data(), *n))) != "back") co_return 13;
          co_return 0;
        });
      },
      20s);
  EXPECT_EQ(rc, 0);
}

void every_byte_through_ten_percent_loss(std::string params) {
  if (auto why = netns_unavailable(); !why.empty()) GTEST_SKIP() << why;
  netns_link_options link;
  link.loss = 0.10;
  link.delay = 1ms;
  link.seed = 10;
  netns_link_counters seen;
  int rc = run_in_netns(
      link,
      [params] {
        return in_child([params]() -> task<int> {
          auto dl = deadline::after(15s);
          auto listener = strata::listen(std::string("udp-listen:") + netns_local + ":0 | reliable" + params);
          if (!listener) co_return 1;
          auto port = listener->local_address()->port();
          const std::uint64_t count = 1500;
          std::string sent_hash;
          std::string got_hash;
          std::uint64_t got = 0;
          int failed = 0;
          scope s;
          s.spawn(call([&]() -> task<void> {
            auto conn = co_await listener->accept(dl);
            if (!conn) {
              failed = 2;
              co_return;
            }
            auto m = conn->take_message();
            sha256 h;
            std::vector<std::byte> buf(2000);
            for (;;) {
              auto n = co_await m.recv(buf, dl);
              if (!n) {
                if (n.error() != errc::end_of_stream) failed = 3;
                break;
              }
              std::uint64_t len = *n;
              h.update(&len, sizeof len);
              h.update(buf.data(), *n);
              ++got;
            }
            got_hash = h.hex();
            (void)co_await m.close(dl);
          }));
          auto conn = co_await strata::connect(
              std::string("udp:") + netns_remote + ":" + std::to_string(port) + " | reliable" + params, dl);
          if (!conn) co_return 4;
          auto c = conn->take_message();
          sha256 h;
          for (std::uint64_t i = 0; i < count; ++i) {
            auto msg = message_bytes(31, i, 1472 - reliable::header_size);
            std::uint64_t len = msg.size();
            h.update(&len, sizeof len);
            h.update(msg.data(), msg.size());
            auto sent = co_await c.send(const_buffer(msg), dl);
            if (!sent) co_return 5;
          }
          sent_hash = h.hex();
          auto closed = co_await c.close(dl);
          (void)co_await s.join();
          if (failed) co_return failed;
          if (!closed) co_return 6;
          if (got != count) co_return 7;
          if (sent_hash != got_hash) co_return 8;
          co_return 0;
        });
      },
      30s,
      [&](const netns_link_counters& c) {
        // In the child: the link really dropped packets.
        if (c.lost == 0) ::_exit(9);
      });
  (void)seen;
  EXPECT_EQ(rc, 0);
}

TEST(ReliableNetns, EveryByteArrivesInOrderThroughTenPercentLossOnRealUdp) {
  every_byte_through_ten_percent_loss("(mtu=1472, rto-min=20ms)");
}
TEST(ReliableNetns, TheRateControlDeliversEveryByteThroughTenPercentLoss) {
  every_byte_through_ten_percent_loss("(mtu=1472, rto-min=20ms, cc=rate)");
}

}  // namespace
}  // namespace strata::test
