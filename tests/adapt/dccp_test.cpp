// dccp: the codec (round trips of every packet type, the checksum and its coverage, every
// malformed header and option), the state machine driven directly with a virtual clock
// (handshake with lost packets, data both ways, CCID 2's reaction to loss and to a
// timeout, out-of-window packets drawing a Sync, close from either side, reset, bad
// service code, garbage), the admission gate, and then the layer over real UDP from spec
// strings: one listener with several clients, back-pressure, message_too_large, dtls over
// dccp, and tshark decoding a capture of our traffic.
#include "strata/adapt/dccp.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/udp.hpp"
#include "support/co_test.hpp"
#include "support/conformance.hpp"
#include "support/peer_process.hpp"
#include "support/pki.hpp"

using namespace std::chrono_literals;

namespace strata::test {
namespace {

using dccp::packet_type;

address ip(const char* text) { return *address::parse_ip(text); }

const dccp::endpoints client_path = dccp::endpoints::from(ip("127.0.0.1:40000"), ip("127.0.0.1:5000"));
const dccp::endpoints server_path = client_path.reversed();

std::string text(const std::vector<std::byte>& b, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(b.data()), n);
}

// -- codec -------------------------------------------------------------------------------

TEST(DccpCodec, RoundTripsEveryPacketType) {
  for (int t = 0; t <= 9; ++t) {
    dccp::header h;
    h.type = static_cast<packet_type>(t);
    h.seq = 0xABCDEF012345ull;
    h.ack = 0x123456789ABCull;
    h.service_code = 0x01020304;
    h.code = dccp::reset_code::too_busy;
    h.reset_data = {1, 2, 3};
    h.ccval = 5;
    const std::uint8_t opts[] = {dccp::option::timestamp, 6, 0, 0, 1, 2};
    auto wire = dccp::encode(h, as_bytes(std::string_view(reinterpret_cast<const char*>(opts), sizeof opts)),
                             as_bytes(std::string_view("payload")), client_path);
    EXPECT_EQ((wire.size() - 7) % 4, 0u);  // header and options in 32-bit words
    auto d = dccp::decode(wire, client_path);
    ASSERT_TRUE(d) << t << ": " << d.error().message();
    EXPECT_EQ(d->h.type, h.type);
    EXPECT_EQ(d->h.seq, h.seq);
    EXPECT_EQ(d->h.source_port, 40000);
    EXPECT_EQ(d->h.dest_port, 5000);
    EXPECT_EQ(d->h.ccval, 5);
    if (dccp::has_ack(h.type)) {
      EXPECT_EQ(d->h.ack, h.ack);
    }
    if (h.type == packet_type::request || h.type == packet_type::response) {
      EXPECT_EQ(d->h.service_code, 0x01020304u);
    }
    if (h.type == packet_type::reset) {
      EXPECT_EQ(d->h.code, dccp::reset_code::too_busy);
      EXPECT_EQ(d->h.reset_data[2], 3);
    }
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(d->payload.data()), d->payload.size()), "payload");
    EXPECT_EQ(d->options.size(), 8u);  // padded to 32 bits
    auto o = dccp::parse_options(d->options);
    ASSERT_TRUE(o);
    EXPECT_EQ(*o->timestamp, 0x102u);
  }
}

TEST(DccpCodec, ChecksumCoversPseudoHeaderAndPacket) {
  dccp::header h;
  h.type = packet_type::data;
  h.seq = 7;
  auto wire = dccp::encode(h, {}, as_bytes(std::string_view("some data")), client_path);
  ASSERT_TRUE(dccp::decode(wire, client_path));
  // Another address in the pseudo-header, a flipped payload bit: bad checksum.
  auto other = dccp::endpoints::from(ip("127.0.0.2:40000"), ip("127.0.0.1:5000"));
  EXPECT_EQ(dccp::decode(wire, other).error(), make_error_code(dccp::error::bad_checksum));
  auto flipped = wire;
  flipped.back() ^= std::byte{1};
  EXPECT_EQ(dccp::decode(flipped, client_path).error(), make_error_code(dccp::error::bad_checksum));
  EXPECT_TRUE(dccp::decode(flipped, client_path, false));
  // Partial coverage (CsCov=1: the header only): the payload is not covered.
  h.cscov = 1;
  auto partial = dccp::encode(h, {}, as_bytes(std::string_view("some data")), client_path);
  partial.back() ^= std::byte{1};
  EXPECT_TRUE(dccp::decode(partial, client_path));
  // Coverage past the end of the packet.
  h.cscov = 15;
  auto beyond = dccp::encode(h, {}, as_bytes(std::string_view("x")), client_path);
  EXPECT_EQ(dccp::decode(beyond, client_path).error(), make_error_code(dccp::error::bad_coverage));
}

TEST(DccpCodec, RefusesMalformedHeaders) {
  dccp::header h;
  h.type = packet_type::ack;
  h.seq = 1;
  auto good = dccp::encode(h, {}, {}, client_path);
  auto expect = [&](std::vector<std::byte> w, dccp::error e) {
    auto d = dccp::decode(w, client_path, false);
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error(), make_error_code(e));
    EXPECT_EQ(d.error(), errc::protocol_error);
  };
  expect(std::vector<std::byte>(good.begin(), good.begin() + 11), dccp::error::truncated);
  expect(std::vector<std::byte>(good.begin(), good.begin() + 20), dccp::error::truncated);
  auto w = good;
  w[8] = std::byte((12u << 1) | 1u);
  expect(w, dccp::error::bad_type);
  w = good;
  w[8] = std::byte(unsigned(w[8]) & ~1u);
  expect(w, dccp::error::short_sequence);
  w = good;
  w[4] = std::byte{3};
  expect(w, dccp::error::bad_data_offset);
  w = good;
  w[4] = std::byte{200};
  expect(w, dccp::error::bad_data_offset);
}

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int x : v) out.push_back(std::byte(x));
  return out;
}

TEST(DccpCodec, OptionsHaveLimits) {
  auto err = [](std::vector<std::byte> area) {
    auto o = dccp::parse_options(area);
    return o ? std::error_code{} : o.error();
  };
  EXPECT_EQ(err(bytes({32, 1})), make_error_code(dccp::error::bad_option));           // length below 2
  EXPECT_EQ(err(bytes({32, 9, 1})), make_error_code(dccp::error::bad_option));        // past the area
  EXPECT_EQ(err(bytes({41, 5, 0, 0, 0})), make_error_code(dccp::error::bad_option));  // Timestamp is 6
  EXPECT_EQ(err(bytes({43, 5, 0, 0, 0})), make_error_code(dccp::error::bad_option));  // Elapsed 4 or 6
  EXPECT_EQ(err(bytes({0, 1})), make_error_code(dccp::error::bad_option));            // Mandatory last
  EXPECT_EQ(err(bytes({1, 1, 0})), make_error_code(dccp::error::bad_option));         // Mandatory twice
  EXPECT_EQ(err(bytes({37, 9, 1, 1, 1, 1, 1, 1, 1})), make_error_code(dccp::error::bad_option));  // NDP > 6
  std::vector<std::byte> many;
  for (int i = 0; i < 17; ++i) {
    auto one = bytes({34, 4, 1, 2});
    many.insert(many.end(), one.begin(), one.end());
  }
  EXPECT_EQ(err(many), make_error_code(dccp::error::too_many_options));
  std::vector<std::byte> vectors;
  for (int i = 0; i < 5; ++i) {
    auto one = bytes({38, 3, 0});
    vectors.insert(vectors.end(), one.begin(), one.end());
  }
  EXPECT_EQ(err(vectors), make_error_code(dccp::error::bad_ack_vector));
  // Every option we know, well formed.
  auto all = bytes({0,  2, 32, 4, 1,  2, 33, 4,  1, 2,    34,   3,  6, 35, 5,  3, 0, 100,
                    36, 4, 9,  9, 37, 3, 5,  38, 4, 0x05, 0xC0, 41, 6, 0,  0,  0, 7, 42,
                    10, 0, 0,  0, 7,  0, 0,  0,  1, 43,   4,    0,  9, 1,  36, 3, 1});
  auto o = dccp::parse_options(all);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_TRUE(o->slow_receiver);
  EXPECT_EQ(o->features.size(), 4u);
  EXPECT_EQ(o->init_cookie.size(), 1u);  // the last one wins
  EXPECT_EQ(*o->ndp_count, 5u);
  EXPECT_EQ(o->ack_vector.size(), 2u);
  EXPECT_EQ(*o->timestamp, 7u);
  EXPECT_EQ(*o->timestamp_echo, 7u);
  EXPECT_EQ(*o->elapsed_time, 9u);
  EXPECT_FALSE(o->unknown_mandatory);
  // Mandatory before an option we do not know.
  auto m = dccp::parse_options(bytes({1, 44, 6, 0, 0, 0, 0}));
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->unknown_mandatory);
}

TEST(DccpCodec, SequenceArithmeticWraps) {
  EXPECT_EQ(dccp::seq_add(dccp::seq_mask, 1), 0u);
  EXPECT_EQ(dccp::seq_delta(dccp::seq_mask, 2), 3);
  EXPECT_EQ(dccp::seq_delta(2, dccp::seq_mask), -3);
  EXPECT_TRUE(dccp::seq_in(1, dccp::seq_mask - 5, 10));
  EXPECT_FALSE(dccp::seq_in(11, dccp::seq_mask - 5, 10));
}

// -- the state machine -------------------------------------------------------------------

dccp::config test_config() {
  dccp::config c;
  c.retransmit = 100ms;
  c.min_rto = 100ms;
  c.initial_rto = 100ms;
  c.timewait = 200ms;
  return c;
}

/// net connects a client and a server engine through a virtual network with a virtual
/// clock; `drop` decides per datagram (with its decoded header) whether it is lost.
struct net {
  dccp::time_point now = dccp::clock::time_point{} + 1000s;
  dccp::engine client;
  dccp::engine server;
  std::function<bool(bool from_client, const dccp::header&)> drop = [](bool, const dccp::header&) {
    return false;
  };
  std::vector<std::pair<bool, dccp::header>> seen;  // every datagram sent, in order
  /// record, when set, receives every datagram delivered, with its path (for a pcap).
  std::vector<std::pair<dccp::endpoints, std::vector<std::byte>>>* record = nullptr;

  explicit net(dccp::config ccfg = test_config(), dccp::config scfg = test_config()) {
    server = dccp::engine::server(scfg, server_path, now);
    client = dccp::engine::client(ccfg, client_path, now);
  }
  /// exchange moves datagrams both ways until neither side has any.
  void exchange() {
    for (int round = 0; round < 10000 && (client.has_output() || server.has_output()); ++round) {
      while (client.has_output()) pass(true, client.next_output());
      while (server.has_output()) pass(false, server.next_output());
    }
  }
  void pass(bool from_client, std::vector<std::byte> d) {
    auto h = dccp::decode(d, from_client ? client_path : server_path);
    EXPECT_TRUE(h) << "we sent a packet we cannot decode";
    if (!h) return;
    seen.emplace_back(from_client, h->h);
    if (drop(from_client, h->h)) return;
    if (record) record->emplace_back(from_client ? client_path : server_path, d);
    (void)(from_client ? server : client).on_datagram(d, now);
  }
  /// advance moves the clock to the next timer (of either side) within `limit` and runs it.
  bool advance(std::chrono::milliseconds limit = 10s) {
    std::optional<dccp::time_point> t;
    for (auto* e : {&client, &server}) {
      auto d = e->next_deadline();
      if (d && (!t || *d < *t)) t = d;
    }
    if (!t || *t > now + limit) return false;
    now = std::max(now, *t);
    client.on_timer(now);
    server.on_timer(now);
    exchange();
    return true;
  }
  void open() {
    exchange();
    for (int i = 0;
         i < 20 && !(client.current() == dccp::state::open && server.current() == dccp::state::open); ++i)
      advance();
  }
  int count(bool from_client, packet_type t) const {
    return static_cast<int>(std::count_if(seen.begin(), seen.end(), [&](const auto& s) {
      return s.first == from_client && s.second.type == t;
    }));
  }
};

TEST(DccpEngine, HandshakeNegotiatesCcid2) {
  net n;
  EXPECT_EQ(n.client.current(), dccp::state::request);
  EXPECT_EQ(n.server.current(), dccp::state::listen);
  n.exchange();
  EXPECT_EQ(n.client.current(), dccp::state::open);
  EXPECT_EQ(n.server.current(), dccp::state::open);
  EXPECT_EQ(n.count(true, packet_type::request), 1);
  EXPECT_EQ(n.count(false, packet_type::response), 1);
  EXPECT_EQ(n.client.ccid(), 2);
  EXPECT_EQ(n.server.ccid(), 2);
  EXPECT_TRUE(n.client.ack_vector_on());
  EXPECT_TRUE(n.server.ack_vector_on());
  EXPECT_EQ(n.client.ack_ratio(), 2);
  EXPECT_FALSE(n.client.next_deadline() && n.client.current() != dccp::state::open);
  EXPECT_FALSE(n.client.failure());
}

TEST(DccpEngine, HandshakeSurvivesLostRequestAndResponse) {
  net n;
  int requests = 0, responses = 0;
  n.drop = [&](bool from_client, const dccp::header& h) {
    if (from_client && h.type == packet_type::request) return ++requests == 1;     // the first Request
    if (!from_client && h.type == packet_type::response) return ++responses == 1;  // the first Response
    return false;
  };
  n.open();
  EXPECT_EQ(n.client.current(), dccp::state::open);
  EXPECT_EQ(n.server.current(), dccp::state::open);
  EXPECT_EQ(requests, 3);  // lost, answered by a lost Response, answered
  // Each retransmitted Request has a new sequence number (RFC 4340 8.1.1).
  std::vector<std::uint64_t> seqs;
  for (auto& [c, h] : n.seen)
    if (c && h.type == packet_type::request) seqs.push_back(h.seq);
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_EQ(dccp::seq_delta(seqs[0], seqs[2]), 2);
}

TEST(DccpEngine, ClientGivesUpAfterMaxRequests) {
  net n;
  n.drop = [](bool, const dccp::header&) { return true; };
  for (int i = 0; i < 20 && n.advance(100s);) ++i;
  EXPECT_EQ(n.client.current(), dccp::state::closed);
  EXPECT_EQ(n.client.failure(), make_error_code(dccp::error::handshake_failed));
  EXPECT_EQ(n.client.failure(), errc::broken);
}

TEST(DccpEngine, LostAckLeavesPartopenByRetransmission) {
  net n;
  int acks = 0;
  n.drop = [&](bool from_client, const dccp::header& h) {
    return from_client && h.type == packet_type::ack && ++acks == 1;
  };
  n.exchange();
  EXPECT_EQ(n.client.current(), dccp::state::partopen);
  EXPECT_TRUE(n.client.established());  // data may flow in PARTOPEN
  EXPECT_EQ(n.server.current(), dccp::state::respond);
  n.open();
  EXPECT_EQ(n.client.current(), dccp::state::open);
  EXPECT_EQ(n.server.current(), dccp::state::open);
}

void send_text(dccp::engine& e, const std::string& s, dccp::time_point now) {
  auto r = e.send(as_bytes(std::string_view(s)), now);
  EXPECT_TRUE(r) << r.error().message();
}

std::vector<std::string> read_all(dccp::engine& e) {
  std::vector<std::string> out;
  std::vector<std::byte> buf(2048);
  while (e.has_message()) {
    auto n = e.read(buf);
    if (!n) break;
    out.push_back(text(buf, *n));
  }
  return out;
}

TEST(DccpEngine, DataFlowsBothWays) {
  net n;
  n.open();
  ASSERT_TRUE(n.client.can_send());
  send_text(n.client, "from client", n.now);
  send_text(n.server, "from server", n.now);
  n.exchange();
  EXPECT_EQ(read_all(n.server), std::vector<std::string>{"from client"});
  EXPECT_EQ(read_all(n.client), std::vector<std::string>{"from server"});
  std::vector<std::byte> buf(16);
  EXPECT_EQ(n.client.read(buf).error(), errc::timed_out);  // nothing yet
  // A message larger than the path allows is refused, nothing queued.
  std::string big(n.client.max_message() + 1, 'x');
  EXPECT_EQ(n.client.send(as_bytes(std::string_view(big)), n.now).error(), errc::message_too_large);
  std::string exact(n.client.max_message(), 'y');
  ASSERT_TRUE(n.client.can_send());
  send_text(n.client, exact, n.now);
  n.exchange();
  std::vector<std::byte> small(10);
  EXPECT_EQ(n.server.read(small).error(), errc::message_too_large);  // stays for a larger buffer
  std::vector<std::byte> large(2000);
  EXPECT_EQ(*n.server.read(large), exact.size());
}

TEST(DccpEngine, AckRatioAndDelayedAcks) {
  net n;
  n.open();
  const auto before = n.count(false, packet_type::ack);
  for (int i = 0; i < 2; ++i) send_text(n.client, "m" + std::to_string(i), n.now);
  n.exchange();
  EXPECT_EQ(n.count(false, packet_type::ack), before + 1);  // Ack Ratio 2: one Ack for two
  send_text(n.client, "odd one", n.now);
  n.exchange();
  EXPECT_EQ(n.count(false, packet_type::ack), before + 1);  // held back...
  ASSERT_TRUE(n.advance(1s));
  EXPECT_EQ(n.count(false, packet_type::ack), before + 2);  // ...until the ack delay
  EXPECT_EQ(n.client.pipe(), 0u);
}

TEST(DccpEngine, WindowGrowsAndBlocksSends) {
  net n;
  n.open();
  const auto initial = n.client.cwnd();
  EXPECT_GE(initial, 2u);
  EXPECT_LE(initial, 4u);
  int sent = 0;
  while (n.client.can_send()) {
    send_text(n.client, "x", n.now);
    ++sent;
  }
  EXPECT_EQ(static_cast<std::uint32_t>(sent), initial);  // the window is full: back-pressure
  EXPECT_EQ(n.client.send(as_bytes(std::string_view("y")), n.now).error(), errc::invalid_argument);
  n.exchange();
  n.advance(1s);
  EXPECT_EQ(n.client.pipe(), 0u);
  EXPECT_GT(n.client.cwnd(), initial);  // slow start
}

TEST(DccpEngine, LossHalvesTheWindow) {
  net n;
  n.open();
  // Grow the window first.
  for (int round = 0; round < 6; ++round) {
    while (n.client.can_send()) send_text(n.client, "warm", n.now);
    n.exchange();
    n.advance(1s);
    (void)read_all(n.server);
  }
  const auto before = n.client.cwnd();
  ASSERT_GE(before, 8u);
  // Lose one data packet out of a full window.
  int data = 0;
  n.drop = [&](bool from_client, const dccp::header& h) {
    return from_client && h.type == packet_type::data_ack && ++data == 2;
  };
  int burst = 0;
  while (n.client.can_send()) {
    send_text(n.client, "burst", n.now);
    ++burst;
  }
  n.exchange();
  const auto got = read_all(n.server).size();
  n.advance(1s);
  EXPECT_EQ(static_cast<int>(got + read_all(n.server).size()), burst - 1);
  EXPECT_EQ(n.client.statistics().data_lost, 1u);
  EXPECT_EQ(n.client.statistics().congestion_events, 1u);
  // Half the window at the loss (slow start may have added one or two before it showed).
  EXPECT_NEAR(n.client.ssthresh(), before / 2, 2);
  EXPECT_NEAR(n.client.cwnd(), n.client.ssthresh(), 1);
  EXPECT_EQ(n.client.statistics().timeouts, 0u);
  EXPECT_EQ(n.client.pipe(), 0u);
}

TEST(DccpEngine, TimeoutCollapsesTheWindow) {
  net n;
  n.open();
  bool blackhole = false;
  n.drop = [&](bool from_client, const dccp::header&) { return blackhole && !from_client; };
  blackhole = true;  // every ack is lost
  while (n.client.can_send()) send_text(n.client, "into the void", n.now);
  EXPECT_FALSE(n.client.can_send());
  n.exchange();
  ASSERT_TRUE(n.client.next_deadline());
  const auto rto = n.client.rto();
  for (int i = 0; i < 10 && n.client.statistics().timeouts == 0;) i += n.advance(5s) ? 1 : 10;
  EXPECT_EQ(n.client.statistics().timeouts, 1u);
  EXPECT_EQ(n.client.cwnd(), 1u);
  EXPECT_EQ(n.client.pipe(), 0u);
  EXPECT_TRUE(n.client.can_send());  // the sender is never stuck
  EXPECT_GT(n.client.rto(), rto);    // backed off
  // With a window of one packet, the Ack Ratio comes down to 1 (RFC 4341 6.1.2), so the
  // next packet is acknowledged at once rather than after the ack delay...
  blackhole = false;
  EXPECT_EQ(n.server.own_ack_ratio(), 2);
  send_text(n.client, "one", n.now);
  n.exchange();
  EXPECT_EQ(n.server.own_ack_ratio(), 1);
  EXPECT_EQ(n.client.ack_ratio(), 1);
  EXPECT_EQ(n.client.pipe(), 0u);
  // ...and goes back up as the window grows.
  for (int round = 0; round < 6; ++round) {
    while (n.client.can_send()) send_text(n.client, "grow", n.now);
    n.exchange();
    n.advance(1s);
    (void)read_all(n.server);
  }
  EXPECT_GE(n.client.cwnd(), 4u);
  EXPECT_EQ(n.client.ack_ratio(), 2);
  EXPECT_EQ(n.server.own_ack_ratio(), 2);
}

TEST(DccpEngine, AckOfAcksTrimsTheAckVector) {
  auto cfg = test_config();
  cfg.receive_queue = 100000;
  cfg.receive_bytes = 100 << 20;
  net n(cfg, cfg);
  n.open();
  for (int i = 0; i < 40; ++i) {
    while (n.client.can_send()) send_text(n.client, "a", n.now);
    if (n.server.can_send()) send_text(n.server, "b", n.now);  // carries acks of the client's Acks
    n.exchange();
    n.advance(1s);
    (void)read_all(n.server);
    (void)read_all(n.client);
  }
  EXPECT_EQ(n.client.statistics().data_lost, 0u);
  EXPECT_EQ(n.server.statistics().data_lost, 0u);
  EXPECT_GT(n.client.cwnd(), 100u);
  // Over 10000 packets arrived; what the server still reports is what the client has
  // not acknowledged (its last window), far below max_history.
  EXPECT_LT(n.server.ack_history(), 600u);
  EXPECT_LT(n.client.ack_history(), 600u);
}

std::vector<std::byte> forge(packet_type t, std::uint64_t seq, std::uint64_t ack,
                             const dccp::endpoints& path) {
  dccp::header h;
  h.type = t;
  h.seq = seq;
  h.ack = ack;
  return dccp::encode(h, {}, as_bytes(std::string_view(t == packet_type::data_ack ? "forged" : "")), path);
}

TEST(DccpEngine, OutOfWindowPacketDrawsSync) {
  net n;
  n.open();
  const auto far = dccp::seq_add(n.client.gss(), 1'000'000);
  auto r = n.server.on_datagram(forge(packet_type::data_ack, far, n.server.gss(), client_path), n.now);
  EXPECT_EQ(r.error(), make_error_code(dccp::error::out_of_window));
  EXPECT_EQ(r.error(), errc::protocol_error);
  EXPECT_EQ(n.server.statistics().dropped_invalid_seq, 1u);
  EXPECT_FALSE(n.server.has_message());
  ASSERT_TRUE(n.server.has_output());
  auto sync = dccp::decode(n.server.next_output(), server_path);
  ASSERT_TRUE(sync);
  EXPECT_EQ(sync->h.type, packet_type::sync);
  EXPECT_EQ(sync->h.ack, far);  // acknowledges the offending number
  // A forged number the client never sent: the client ignores the Sync (its ack is out
  // of the client's window) and sends nothing back.
  (void)n.client.on_datagram(dccp::encode(sync->h, {}, {}, server_path), n.now);
  EXPECT_FALSE(n.client.has_output());
  // Syncs are rate-limited.
  for (int i = 0; i < 5; ++i)
    (void)n.server.on_datagram(
        forge(packet_type::data_ack, dccp::seq_add(far, i + 1), n.server.gss(), client_path), n.now);
  int syncs = 0;
  while (n.server.has_output())
    syncs += dccp::decode(n.server.next_output(), server_path)->h.type == packet_type::sync;
  EXPECT_EQ(syncs, 0);
  send_text(n.client, "still fine", n.now);
  n.exchange();
  EXPECT_EQ(read_all(n.server), std::vector<std::string>{"still fine"});
  // A forged Reset out of the window does not end the connection.
  (void)n.client.on_datagram(
      forge(packet_type::reset, dccp::seq_add(n.server.gss(), 5000), n.client.gss(), server_path), n.now);
  EXPECT_EQ(n.client.current(), dccp::state::open);
}

TEST(DccpEngine, SyncResynchronisesAfterABurstOfLoss) {
  auto scfg = test_config();
  scfg.sequence_window = 32;  // the client validates the server's numbers with W = 32
  net n(test_config(), scfg);
  n.open();
  // The server's next 29 packets were lost: the 30th is beyond the client's window
  // (GSR + 3W/4 = GSR + 24). Played here by forging the server's side.
  const auto next = dccp::seq_add(n.client.gsr(), 30);
  auto r = n.client.on_datagram(forge(packet_type::data_ack, next, n.client.gss(), server_path), n.now);
  EXPECT_EQ(r.error(), make_error_code(dccp::error::out_of_window));
  ASSERT_TRUE(n.client.has_output());
  auto sync = dccp::decode(n.client.next_output(), client_path);
  ASSERT_TRUE(sync);
  EXPECT_EQ(sync->h.type, packet_type::sync);
  EXPECT_EQ(sync->h.ack, next);
  EXPECT_TRUE(read_all(n.client).empty());  // that one was dropped...
  // The server's SyncAck (acknowledging the Sync) moves the client's window forward.
  dccp::header sync_ack;
  sync_ack.type = packet_type::sync_ack;
  sync_ack.seq = dccp::seq_add(next, 1);
  sync_ack.ack = sync->h.seq;
  EXPECT_EQ(*n.client.on_datagram(dccp::encode(sync_ack, {}, {}, server_path), n.now), packet_type::sync_ack);
  EXPECT_EQ(n.client.gsr(), dccp::seq_add(next, 1));
  EXPECT_EQ(*n.client.on_datagram(
                forge(packet_type::data_ack, dccp::seq_add(next, 2), n.client.gss(), server_path), n.now),
            packet_type::data_ack);
  EXPECT_EQ(read_all(n.client), std::vector<std::string>{"forged"});  // ...the next one is fine
  // A Sync from the peer is answered with a SyncAck that acknowledges it.
  dccp::header peer_sync;
  peer_sync.type = packet_type::sync;
  peer_sync.seq = dccp::seq_add(next, 3);
  peer_sync.ack = n.client.gss();
  (void)n.client.on_datagram(dccp::encode(peer_sync, {}, {}, server_path), n.now);
  bool answered = false;
  while (n.client.has_output()) {
    auto d = dccp::decode(n.client.next_output(), client_path);
    if (d->h.type == packet_type::sync_ack && d->h.ack == peer_sync.seq) answered = true;
  }
  EXPECT_TRUE(answered);
}

TEST(DccpEngine, ClientCloseEndsInTimewait) {
  net n;
  n.open();
  send_text(n.client, "last words", n.now);
  n.client.close(n.now);
  EXPECT_EQ(n.client.current(), dccp::state::closing);
  n.exchange();
  EXPECT_EQ(n.count(true, packet_type::close), 1);
  EXPECT_EQ(n.count(false, packet_type::reset), 1);
  EXPECT_EQ(n.server.current(), dccp::state::closed);
  EXPECT_EQ(n.client.current(), dccp::state::timewait);
  EXPECT_EQ(read_all(n.server), std::vector<std::string>{"last words"});
  std::vector<std::byte> buf(16);
  EXPECT_EQ(n.server.read(buf).error(), errc::end_of_stream);
  ASSERT_TRUE(n.advance(1s));  // TIMEWAIT ends
  EXPECT_EQ(n.client.current(), dccp::state::closed);
  EXPECT_FALSE(n.client.failure());
}

TEST(DccpEngine, ServerCloseUsesCloseReqAndSurvivesLoss) {
  net n;
  n.open();
  int closereqs = 0;
  n.drop = [&](bool from_client, const dccp::header& h) {
    return !from_client && h.type == packet_type::close_req && ++closereqs == 1;
  };
  n.server.close(n.now);
  EXPECT_EQ(n.server.current(), dccp::state::closereq);
  n.exchange();
  EXPECT_EQ(n.server.current(), dccp::state::closereq);  // lost
  n.advance(1s);
  EXPECT_EQ(closereqs, 2);
  EXPECT_EQ(n.server.current(), dccp::state::closed);
  EXPECT_EQ(n.client.current(), dccp::state::timewait);  // the client holds TIMEWAIT
  std::vector<std::byte> buf(16);
  EXPECT_EQ(n.client.read(buf).error(), errc::end_of_stream);
}

TEST(DccpEngine, AbortResetsThePeer) {
  net n;
  n.open();
  n.server.abort(n.now);
  n.exchange();
  EXPECT_EQ(n.client.current(), dccp::state::timewait);
  std::vector<std::byte> buf(16);
  EXPECT_EQ(n.client.read(buf).error(), make_error_code(dccp::error::peer_reset));
  EXPECT_EQ(n.client.read(buf).error(), errc::broken);
  // A closed endpoint answers anything but a Reset with Reset(no connection).
  EXPECT_TRUE(n.server.on_datagram(forge(packet_type::data_ack, 1, 1, client_path), n.now));
  ASSERT_TRUE(n.server.has_output());
  auto reset = dccp::decode(n.server.next_output(), server_path);
  EXPECT_EQ(reset->h.type, packet_type::reset);
  EXPECT_EQ(reset->h.code, dccp::reset_code::no_connection);
  // Those answers are rate-limited (a flood of junk is not answered packet for packet).
  for (int i = 0; i < 10; ++i)
    (void)n.server.on_datagram(forge(packet_type::data_ack, 2 + i, 1, client_path), n.now);
  int answers = 0;
  while (n.server.has_output()) answers += (n.server.next_output(), 1);
  EXPECT_EQ(answers, 0);
}

TEST(DccpEngine, WrongServiceCodeIsRefused) {
  auto ccfg = test_config();
  ccfg.service = 7;
  auto scfg = test_config();
  scfg.service = 8;
  net n(ccfg, scfg);
  n.exchange();
  EXPECT_EQ(n.server.current(), dccp::state::closed);
  EXPECT_EQ(n.client.current(), dccp::state::closed);
  EXPECT_EQ(n.client.failure(), make_error_code(dccp::error::bad_service_code));
  EXPECT_EQ(n.count(false, packet_type::reset), 1);
}

TEST(DccpEngine, GarbageChangesNothing) {
  net n;
  n.open();
  std::mt19937 rng(1234);
  std::vector<std::byte> junk;
  for (int i = 0; i < 2000; ++i) {
    junk.resize(rng() % 80);
    for (auto& b : junk) b = std::byte(rng());
    // Some with a valid checksum, so the state machine (not only the codec) sees them.
    if (junk.size() >= 28 && (i % 2)) {
      junk[4] = std::byte(std::min<unsigned>(unsigned(junk[4]) % 8 + 4, junk.size() / 4));
      junk[5] = std::byte{0};
      junk[8] = std::byte(unsigned(junk[8]) | 1u);
      const auto c = dccp::checksum(junk, client_path);
      junk[6] = std::byte(c >> 8);
      junk[7] = std::byte(c);
    }
    (void)n.server.on_datagram(junk, n.now);
    (void)n.client.on_datagram(junk, n.now);
  }
  while (n.server.has_output()) (void)n.server.next_output();
  while (n.client.has_output()) (void)n.client.next_output();
  EXPECT_GT(n.server.statistics().dropped_malformed, 1000u);
  EXPECT_EQ(n.server.current(), dccp::state::open);
  EXPECT_EQ(n.client.current(), dccp::state::open);
  send_text(n.client, "after the storm", n.now);
  n.exchange();
  EXPECT_EQ(read_all(n.server), std::vector<std::string>{"after the storm"});
}

TEST(DccpEngine, SlowReaderIsNotAcknowledged) {
  auto scfg = test_config();
  scfg.receive_queue = 4;
  net n(test_config(), scfg);
  n.open();
  for (int round = 0; round < 4; ++round) {
    while (n.client.can_send()) send_text(n.client, "flood", n.now);
    n.exchange();
    n.advance(1s);
  }
  EXPECT_EQ(read_all(n.server).size(), 4u);  // the queue's bound
  EXPECT_GT(n.server.statistics().dropped_queue_full, 0u);
  EXPECT_GT(n.client.statistics().data_lost + n.client.statistics().timeouts, 0u);
}

TEST(DccpGate, AdmitsOnlyRequestsForTheService) {
  dccp::config cfg;
  cfg.service = 42;
  auto gate = dccp::request_gate(cfg);
  std::vector<std::byte> reply;
  dccp::header h;
  h.type = packet_type::request;
  h.service_code = 42;
  EXPECT_EQ(gate(ip("127.0.0.1:1"), dccp::encode(h, {}, {}, client_path), reply), admission::admit);
  h.service_code = 41;
  EXPECT_EQ(gate(ip("127.0.0.1:1"), dccp::encode(h, {}, {}, client_path), reply), admission::refuse);
  h.type = packet_type::data_ack;
  EXPECT_EQ(gate(ip("127.0.0.1:1"), dccp::encode(h, {}, {}, client_path), reply), admission::refuse);
  EXPECT_EQ(gate(ip("127.0.0.1:1"), as_bytes(std::string_view("garbage")), reply), admission::refuse);
  EXPECT_TRUE(reply.empty());
}

// -- the typed stack: the message conformance suite and dccp::listen -----------------------

}  // namespace

// (The suite's traits live outside the anonymous namespace, as every suite's do.)
namespace dccp_conformance {

using end = dccp::connection<udp::connected>;

/// udp_pair binds two loopback sockets on `host` and connects each to the other.
result<std::pair<udp::connected, udp::connected>> udp_pair(std::string_view host) {
  auto a = udp::socket::bind(std::string(host) + ":0");
  if (!a) return unexpected(a.error());
  auto b = udp::socket::bind(std::string(host) + ":0");
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

/// dccp_pair runs both handshakes of a typed dccp-over-udp pair on this loop.
task<result<std::pair<end, end>>> dccp_pair(std::string_view host, deadline dl) {
  auto lower = udp_pair(host);
  if (!lower) co_return unexpected(lower.error());
  std::optional<result<end>> client, server;
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn([](udp::connected l, std::optional<result<end>>& out, deadline d) -> task<void> {
      dccp::config cfg;
      cfg.retransmit = 100ms;
      out.emplace(co_await dccp::accept(std::move(l), cfg, d));
    }(std::move(lower->second), server, dl));
    s.spawn([](udp::connected l, std::optional<result<end>>& out, deadline d) -> task<void> {
      dccp::config cfg;
      cfg.retransmit = 100ms;
      out.emplace(co_await dccp::connect(std::move(l), cfg, d));
    }(std::move(lower->first), client, dl));
    co_return;
  });
  if (!*client) co_return unexpected(client->error());
  if (!*server) co_return unexpected(server->error());
  co_return std::pair<end, end>{std::move(**client), std::move(**server)};
}

struct over_udp {
  using message_type = end;
  static constexpr std::size_t max_message = 1400 - 24;
  static constexpr bool send_rejects_oversize = true;
  static constexpr bool keeps_message_on_too_large = true;  // the engine keeps it
  static task<result<std::pair<end, end>>> make_pair(deadline dl) { return dccp_pair("127.0.0.1", dl); }
};

struct over_udp6 : over_udp {
  static task<result<std::pair<end, end>>> make_pair(deadline dl) { return dccp_pair("[::1]", dl); }
};

using message_types = ::testing::Types<over_udp, over_udp6>;
INSTANTIATE_TYPED_TEST_SUITE_P(Dccp, message_conformance, message_types);

TEST(DccpTyped, ListenGatesAndHandsOutReadyConnections) {
  auto l = udp::listener::bind("127.0.0.1:0");
  ASSERT_TRUE(l) << l.error().message();
  const auto at = *l->local_address();
  dccp::config cfg;
  cfg.service = 11;
  cfg.retransmit = 100ms;
  handshake_options hs;
  hs.timeout = 2s;
  auto ready = dccp::listen(std::move(*l), cfg, hs);
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](decltype(ready)& r, deadline d) -> task<void> {
        auto c = co_await r.accept(d);
        CO_ASSERT_OK(c);
        EXPECT_EQ(c->state_machine().current(), dccp::state::open);
        std::vector<std::byte> buf(64);
        auto n = co_await c->recv(buf, d);
        CO_ASSERT_OK(n);
        (void)co_await c->send(const_buffer(buf.data(), *n), d);
        (void)co_await c->recv(buf, d);  // until the client's Close
        (void)co_await c->close(d);
      }(ready, dl));
      auto lower = udp::connect(at);
      CO_ASSERT_OK(lower);
      dccp::config ccfg = cfg;
      auto c = co_await dccp::connect(std::move(*lower), ccfg, dl);
      CO_ASSERT_OK(c);
      EXPECT_EQ(query<fact::peer_address>(*c)->port(), at.port());  // facts pass through
      EXPECT_EQ(c->max_message(), 1400u - 24u);
      (void)co_await c->send(as_bytes(std::string_view("typed")), dl);
      std::vector<std::byte> buf(64);
      auto echo = co_await c->recv(buf, dl);
      CO_ASSERT_OK(echo);
      EXPECT_EQ(text(buf, *echo), "typed");
      auto closed = co_await c->close(dl);
      EXPECT_TRUE(closed) << closed.error().message();
      EXPECT_EQ(c->state_machine().current(), dccp::state::timewait);
    });
  });
}

}  // namespace dccp_conformance

namespace {

// -- over real UDP, from spec strings ------------------------------------------------------

std::string fast(const std::string& min_rto = "100") { return "retransmit=100, min-rto=" + min_rto; }

/// echo_all answers every message of a connection until the peer closes it.
task<void> echo_all(any_connection c, deadline dl) {
  auto& m = c.message();
  std::vector<std::byte> buf(2048);
  for (;;) {
    auto got = co_await m.recv(buf, dl);
    if (!got) break;
    (void)co_await m.send(const_buffer(buf.data(), *got), dl);
  }
  (void)co_await c.close(dl);
}

task<void> serve(any_listener& l, int n, int& accepted, deadline dl) {
  co_await with_scope([&](scope& s) -> task<void> {
    for (int i = 0; i < n; ++i) {
      auto conn = co_await l.accept(dl);
      if (!conn) {
        ADD_FAILURE() << "accept: " << conn.error().message();
        co_return;
      }
      ++accepted;
      s.spawn(echo_all(std::move(*conn), dl));
    }
  });
}

TEST(DccpPipeline, OneListenerServesSeveralClients) {
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dccp(service=42, " + fast() + ")");
  ASSERT_TRUE(listener) << listener.error().message();
  const auto port = listener->local_address()->port();
  const std::string spec = "udp:127.0.0.1:" + std::to_string(port) + " | dccp(42, " + fast() + ")";
  static constexpr int clients = 4;
  static constexpr int messages = 30;
  int accepted = 0;
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(8s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(serve(*listener, clients, accepted, dl));
      for (int i = 0; i < clients; ++i) {
        s.spawn([](std::string client_spec, int id, deadline d) -> task<void> {
          auto c = co_await strata::connect(client_spec, d);
          if (!c) {
            ADD_FAILURE() << "client " << id << ": " << c.error().message();
            co_return;
          }
          auto caps = c->runtime_capabilities();
          EXPECT_EQ(caps.connection, connection::based);
          EXPECT_TRUE(caps.congestion_controlled);
          EXPECT_FALSE(caps.reliable);
          EXPECT_EQ(caps.max_message, 1400u - 24u);
          auto& m = c->message();
          int echoed = 0;
          std::vector<std::byte> buf(2048);
          for (int k = 0; k < messages; ++k) {
            std::string msg = "client " + std::to_string(id) + " message " + std::to_string(k);
            auto sent = co_await m.send(as_bytes(std::string_view(msg)), d);
            EXPECT_TRUE(sent) << sent.error().message();
            auto echo = co_await m.recv(buf, deadline::earlier(d, deadline::after(2s)));
            if (!echo) {
              ADD_FAILURE() << "client " << id << " echo " << k << ": " << echo.error().message();
              break;
            }
            EXPECT_EQ(text(buf, *echo), msg);
            ++echoed;
          }
          EXPECT_EQ(echoed, messages);
          auto closed = co_await c->close(d);
          EXPECT_TRUE(closed) << closed.error().message();
        }(spec, i, dl));
      }
      co_return;
    });
  });
  EXPECT_EQ(accepted, clients);
  auto stats = listener->datagrams();
  EXPECT_EQ(stats.accepted, static_cast<std::uint64_t>(clients));
  listener->close();
}

TEST(DccpPipeline, WildcardListenerLearnsItsAddressFromTheConnection) {
  // The pseudo-header needs this end's address; an accepted UDP socket is connected to
  // its peer, so the kernel reports the address it sends from, not 0.0.0.0.
  auto listener = strata::listen("udp-listen:0.0.0.0:0 | dccp(" + fast() + ")");
  ASSERT_TRUE(listener) << listener.error().message();
  const auto port = listener->local_address()->port();
  int accepted = 0;
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(serve(*listener, 1, accepted, dl));
      auto c =
          co_await strata::connect("udp:127.0.0.1:" + std::to_string(port) + " | dccp(" + fast() + ")", dl);
      CO_ASSERT_OK(c);
      (void)co_await c->message().send(as_bytes(std::string_view("wild")), dl);
      std::vector<std::byte> buf(64);
      auto echo = co_await c->message().recv(buf, dl);
      CO_ASSERT_OK(echo);
      EXPECT_EQ(text(buf, *echo), "wild");
      (void)co_await c->close(dl);
    });
  });
  EXPECT_EQ(accepted, 1);
  listener->close();
}

TEST(DccpPipeline, SendBlocksOnAFullWindowAndRefusesLargeMessages) {
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dccp(" + fast("5s") + ")");
  ASSERT_TRUE(listener) << listener.error().message();
  const auto port = listener->local_address()->port();
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    std::optional<any_connection> server;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](any_listener& l, std::optional<any_connection>& out, deadline d) -> task<void> {
        auto c = co_await l.accept(d);
        if (c) out.emplace(std::move(*c));
      }(*listener, server, dl));
      auto c = co_await strata::connect(
          "udp:127.0.0.1:" + std::to_string(port) + " | dccp(" + fast("5s") + ")", dl);
      CO_ASSERT_OK(c);
      auto& m = c->message();
      std::string big(c->runtime_capabilities().max_message + 1, 'x');
      auto refused = co_await m.send(as_bytes(std::string_view(big)), dl);
      EXPECT_EQ(refused.error(), errc::message_too_large);
      // The server accepts but never reads: no acknowledgement comes back, so the window
      // (3 packets at first) fills and the next send waits until its deadline.
      int sent = 0;
      for (;;) {
        auto r = co_await m.send(as_bytes(std::string_view("fill")), deadline::after(200ms));
        if (!r) {
          EXPECT_EQ(r.error(), errc::timed_out);
          break;
        }
        ++sent;
        if (sent > 100) break;
      }
      EXPECT_GE(sent, 2);
      EXPECT_LE(sent, 4);
      // Once the server reads (and so acknowledges), the window opens again.
      s.spawn([](std::optional<any_connection>& srv, deadline d) -> task<void> {
        std::vector<std::byte> buf(2048);
        while (srv && co_await srv->message().recv(buf, d)) {
        }
      }(server, deadline::after(1500ms)));
      auto again = co_await m.send(as_bytes(std::string_view("after acks")), deadline::after(1s));
      EXPECT_TRUE(again) << again.error().message();
      (void)co_await c->close(deadline::after(1s));
    });
    if (server) (void)co_await server->close(deadline::after(1s));
  });
  listener->close();
}

TEST(DccpPipeline, WrongServiceCodeGetsNoConnection) {
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dccp(service=1, " + fast() + ")");
  ASSERT_TRUE(listener) << listener.error().message();
  const auto port = listener->local_address()->port();
  test::run_test([&]() -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](any_listener& l) -> task<void> {
        auto none = co_await l.accept(deadline::after(700ms));
        EXPECT_FALSE(none);
      }(*listener));
      auto c = co_await strata::connect(
          "udp:127.0.0.1:" + std::to_string(port) + " | dccp(service=2, " + fast() + ")",
          deadline::after(500ms));
      EXPECT_FALSE(c);
      if (!c) {
        EXPECT_EQ(c.error(), errc::timed_out);
      }
      // The gate refused every Request: the listener kept nothing for the client.
      auto stats = listener->datagrams();
      EXPECT_GE(stats.refused, 2u);
      EXPECT_EQ(stats.admitted, 0u);
      EXPECT_EQ(stats.pending_senders, 0u);
    });
  });
  listener->close();
}

/// raw_request sends one well-formed Request for `service` from a fresh UDP socket to
/// 127.0.0.1:`port` and returns the socket (never answered by the caller).
int raw_request(std::uint16_t port, std::uint32_t service) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local);
  socklen_t len = sizeof local;
  (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  sockaddr_in to = local;
  to.sin_port = htons(port);
  const auto path =
      dccp::endpoints::from(address::from_sockaddr(reinterpret_cast<const sockaddr*>(&local), len),
                            address::from_sockaddr(reinterpret_cast<const sockaddr*>(&to), sizeof to));
  dccp::header h;
  h.type = packet_type::request;
  h.seq = 77;
  h.service_code = service;
  auto wire = dccp::encode(h, {}, {}, path);
  (void)::sendto(fd, wire.data(), wire.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  return fd;
}

TEST(DccpPipeline, RequestsThatNeverCompleteCostBoundedState) {
  listen_options options;
  options.handshakes.timeout = 300ms;
  options.handshakes.max_pending = 8;
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dccp(service=3, " + fast() + ")", options);
  ASSERT_TRUE(listener) << listener.error().message();
  const auto port = listener->local_address()->port();
  std::vector<int> half_open;
  for (int i = 0; i < 24; ++i) half_open.push_back(raw_request(port, 3));
  test::run_test([&]() -> task<void> {
    // Nobody completes a handshake: the accept waits in vain while the listener works
    // through the Requests, at most max_pending at a time, each for its timeout.
    auto none = co_await listener->accept(deadline::after(700ms));
    EXPECT_FALSE(none);
    auto hs = listener->handshakes();
    EXPECT_LE(hs.handshaking, 8u);
    EXPECT_GE(hs.timed_out, 8u);
    EXPECT_EQ(hs.ready, 0u);
    auto dg = listener->datagrams();
    EXPECT_LE(dg.pending_senders, 24u);
    // A real client is still served.
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn([](any_listener& l) -> task<void> {
        for (;;) {
          auto c = co_await l.accept(deadline::after(5s));
          if (!c) co_return;
          std::vector<std::byte> buf(64);
          auto got = co_await c->message().recv(buf, deadline::after(5s));
          if (got) {
            (void)co_await c->message().send(const_buffer(buf.data(), *got), deadline::after(1s));
            (void)co_await c->message().recv(buf, deadline::after(1s));  // until the client's Close
            (void)co_await c->close(deadline::after(1s));
            co_return;
          }
        }
      }(*listener));
      auto c = co_await strata::connect(
          "udp:127.0.0.1:" + std::to_string(port) + " | dccp(service=3, " + fast() + ")",
          deadline::after(5s));
      CO_ASSERT_OK(c);
      (void)co_await c->message().send(as_bytes(std::string_view("real")), deadline::after(1s));
      std::vector<std::byte> buf(64);
      auto echo = co_await c->message().recv(buf, deadline::after(5s));
      EXPECT_TRUE(echo);
      (void)co_await c->close(deadline::after(1s));
    });
  });
  for (int fd : half_open) ::close(fd);
  listener->close();
}

TEST(DccpPipeline, SpecStringsAreChecked) {
  pipeline_error e;
  EXPECT_TRUE(pipeline::parse("udp:127.0.0.1:1 | dccp", e)) << e.message;
  EXPECT_FALSE(pipeline::parse("tcp:127.0.0.1:1 | dccp", e));  // dccp needs messages
  EXPECT_NE(e.message.find("message"), std::string::npos) << e.message;
  EXPECT_FALSE(pipeline::parse("udp:127.0.0.1:1 | dccp(service=4294967295)", e));
  EXPECT_FALSE(pipeline::parse("udp:127.0.0.1:1 | dccp(mtu=20)", e));
  auto p = pipeline::parse("udp:127.0.0.1:1 | dccp(mtu=1000)", e);
  ASSERT_TRUE(p) << e.message;
  EXPECT_EQ(p->top().connection, connection::based);
  EXPECT_TRUE(p->top().congestion_controlled);
  EXPECT_FALSE(p->top().reliable);
  EXPECT_EQ(p->top().max_message, 1000u - 24u);
  auto secured = pipeline::parse("udp:127.0.0.1:1 | dccp | dtls(ca=" + pki().ca.cert_file + ")", e);
  ASSERT_TRUE(secured) << e.message;
  EXPECT_TRUE(secured->top().secure);
  EXPECT_TRUE(secured->top().congestion_controlled);
}

TEST(DccpPipeline, DtlsRunsOverDccp) {
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dccp(service=9, " + fast() +
                                 ") | dtls(cert=" + pki().server.cert_file +
                                 ", key=" + pki().server.key_file + ", retransmit=100)");
  ASSERT_TRUE(listener) << listener.error().message();
  const auto port = listener->local_address()->port();
  const std::string spec = "udp:127.0.0.1:" + std::to_string(port) + " | dccp(service=9, " + fast() +
                           ") | dtls(sni=localhost, ca=" + pki().ca.cert_file + ", retransmit=100)";
  int accepted = 0;
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(8s);
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(serve(*listener, 2, accepted, dl));
      for (int i = 0; i < 2; ++i) {
        s.spawn([](std::string client_spec, int id, deadline d) -> task<void> {
          auto c = co_await strata::connect(client_spec, d);
          if (!c) {
            ADD_FAILURE() << "client " << id << ": " << c.error().message();
            co_return;
          }
          EXPECT_EQ(query<fact::secure_session>(*c)->version, std::string("DTLSv1.2"));
          auto caps = c->runtime_capabilities();
          EXPECT_TRUE(caps.secure);
          EXPECT_TRUE(caps.congestion_controlled);  // passed up from dccp
          auto& m = c->message();
          std::string msg = "secret over dccp " + std::to_string(id);
          auto sent = co_await m.send(as_bytes(std::string_view(msg)), d);
          EXPECT_TRUE(sent) << sent.error().message();
          std::vector<std::byte> buf(4096);
          auto echo = co_await m.recv(buf, d);
          EXPECT_TRUE(echo) << echo.error().message();
          if (echo) {
            EXPECT_EQ(text(buf, *echo), msg);
          }
          (void)co_await c->close(d);
        }(spec, i, dl));
      }
      co_return;
    });
  });
  EXPECT_EQ(accepted, 2);
  listener->close();
}

// -- the command-line tool ------------------------------------------------------------------

TEST(DccpCli, ConnectAndListenRelayLines) {
  const int port = free_loopback_port(SOCK_DGRAM);
  ASSERT_GT(port, 0);
  const std::string listen_spec =
      "udp-listen:127.0.0.1:" + std::to_string(port) + " | dccp(5, retransmit=100ms)";
  peer_options with_stdin;
  with_stdin.stdin_pipe = true;
  auto server = peer_process::start({STRATA_CLI_PATH, "listen", listen_spec}, with_stdin);
  ASSERT_TRUE(server);
  ASSERT_TRUE(server.wait_for_output("listening on", 10s)) << server.output();
  auto client = peer_process::start(
      {STRATA_CLI_PATH, "connect", "udp:127.0.0.1:" + std::to_string(port) + " | dccp(5, retransmit=100)"},
      with_stdin);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client.write_stdin("hello over dccp\nsecond line\n"));
  EXPECT_TRUE(server.wait_for_output("hello over dccp\nsecond line\n", 10s)) << server.output();
  ASSERT_TRUE(server.write_stdin("and back\n"));
  EXPECT_TRUE(client.wait_for_output("and back\n", 10s)) << client.output();
  // DCCP has no half-close: the ends keep the connection until they are stopped.
  client.close_stdin();
  EXPECT_FALSE(server.wait_exit(300ms));
  EXPECT_EQ(client.stop(), 143);
  EXPECT_EQ(server.stop(), 143);
}

// -- tshark decodes a capture of our traffic ------------------------------------------------

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, sep)) out.push_back(field);
  if (!line.empty() && line.back() == sep) out.emplace_back();
  return out;
}

/// hex renders bytes as tshark prints udp.payload.
std::string hex(std::string_view s) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

/// children lists the processes `pid` started (tshark's dumpcap).
std::vector<pid_t> children(pid_t pid) {
  std::vector<pid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  pid_t child = 0;
  while (in >> child) out.push_back(child);
  return out;
}

/// probe sends `marker` to 127.0.0.1:`port` until tshark prints it (the capture is
/// live, and everything sent before it was decoded); false after `timeout`.
bool probe(peer_process& tshark, int port, std::string_view marker, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto until = std::chrono::steady_clock::now() + timeout;
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() < until) {
    (void)::sendto(fd, marker.data(), marker.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    seen = tshark.wait_for_output(hex(marker), 100ms);
  }
  ::close(fd);
  return seen;
}

/// write_pcap writes `datagrams` (each with its path) as IPv4/UDP packets into a pcap file
/// (LINKTYPE_RAW): what tshark reads when the traffic came from engines, not sockets.
void write_pcap(const std::string& file,
                const std::vector<std::pair<dccp::endpoints, std::vector<std::byte>>>& packets) {
  std::ofstream out(file, std::ios::binary);
  auto put32 = [&](std::uint32_t v) { out.write(reinterpret_cast<const char*>(&v), 4); };  // host order
  auto put16 = [&](std::uint16_t v) { out.write(reinterpret_cast<const char*>(&v), 2); };
  put32(0xa1b2c3d4);
  put16(2);
  put16(4);
  put32(0);
  put32(0);
  put32(65535);
  put32(101);  // LINKTYPE_RAW: the packet starts with its IP header
  std::uint32_t t = 0;
  for (const auto& [path, datagram] : packets) {
    std::vector<std::uint8_t> ip(28 + datagram.size());
    const auto total = static_cast<std::uint16_t>(ip.size());
    ip[0] = 0x45;
    ip[2] = std::uint8_t(total >> 8);
    ip[3] = std::uint8_t(total);
    ip[8] = 64;
    ip[9] = 17;  // UDP
    std::copy(path.source_ip.begin(), path.source_ip.begin() + 4, ip.begin() + 12);
    std::copy(path.dest_ip.begin(), path.dest_ip.begin() + 4, ip.begin() + 16);
    std::uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += (std::uint32_t(ip[i]) << 8) | ip[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = std::uint8_t(~sum >> 8);
    ip[11] = std::uint8_t(~sum);
    const auto udp_len = static_cast<std::uint16_t>(8 + datagram.size());
    ip[20] = std::uint8_t(path.source_port >> 8);
    ip[21] = std::uint8_t(path.source_port);
    ip[22] = std::uint8_t(path.dest_port >> 8);
    ip[23] = std::uint8_t(path.dest_port);
    ip[24] = std::uint8_t(udp_len >> 8);
    ip[25] = std::uint8_t(udp_len);  // UDP checksum 0: none (IPv4)
    std::memcpy(ip.data() + 28, datagram.data(), datagram.size());
    put32(++t);
    put32(0);
    put32(static_cast<std::uint32_t>(ip.size()));
    put32(static_cast<std::uint32_t>(ip.size()));
    out.write(reinterpret_cast<const char*>(ip.data()), static_cast<std::streamsize>(ip.size()));
  }
}

TEST(DccpCapture, TsharkDecodesSyncResetAndOptionsFromTheEngines) {
  if (find_program("tshark").empty()) GTEST_SKIP() << "tshark is not installed (docs/dependencies.md)";
  // Packets the live test does not provoke, played between two engines: Sync and SyncAck
  // after a burst of lost Acks, Slow Receiver, Reset codes (aborted, no connection).
  std::vector<std::pair<dccp::endpoints, std::vector<std::byte>>> packets;
  auto ccfg = test_config();
  ccfg.sequence_window = 32;  // the server validates the client's numbers with W = 32
  ccfg.receive_queue = 100;
  auto scfg = test_config();
  scfg.max_cwnd = 60;  // a burst's Acks stay within the client's own window (30 < 32)
  net n(ccfg, scfg);
  n.record = &packets;
  n.open();
  for (int round = 0; round < 8; ++round) {
    while (n.server.can_send()) send_text(n.server, "warm", n.now);
    n.exchange();
    n.advance(1s);
    (void)read_all(n.client);
  }
  ASSERT_GE(n.server.cwnd(), 60u);
  // The client's Acks of 60 packets are lost: its next packet is beyond the server's
  // window, which answers with a Sync; the client's SyncAck resynchronises.
  n.drop = [](bool from_client, const dccp::header& h) { return from_client && h.type == packet_type::ack; };
  for (int i = 0; i < 60; ++i) send_text(n.server, "acks lost", n.now);
  n.exchange();
  n.drop = [](bool, const dccp::header&) { return false; };
  (void)read_all(n.client);
  send_text(n.client, "beyond the window", n.now);
  n.exchange();
  EXPECT_EQ(n.server.statistics().syncs_sent, 1u);
  EXPECT_EQ(n.server.pipe(), 0u);  // the client's Ack after its SyncAck acknowledged the burst
  EXPECT_EQ(n.server.statistics().timeouts, 0u);
  // A reader that stops reading: Slow Receiver.
  for (int round = 0; round < 16 && n.client.statistics().dropped_queue_full == 0; ++round) {
    while (n.server.can_send()) send_text(n.server, "unread", n.now);
    n.exchange();
    n.advance(1s);
  }
  EXPECT_GT(n.client.statistics().dropped_queue_full, 0u);
  n.client.abort(n.now);  // Reset (aborted)
  n.exchange();
  auto stray = forge(packet_type::data_ack, 1, 1, server_path);
  packets.emplace_back(server_path, stray);
  (void)n.client.on_datagram(stray, n.now);  // Reset (no connection)
  n.exchange();

  char dir_template[] = "/tmp/strata-dccp-pcap-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir = dir_template;
  {
    std::ofstream lua(dir / "dccp_udp.lua");
    lua << "local dccp = DissectorTable.get(\"ip.proto\"):get_dissector(33)\n"
        << "DissectorTable.get(\"udp.port\"):add(5000, dccp)\n";
  }
  write_pcap((dir / "engines.pcap").string(), packets);
  auto tshark = peer_process::start({"tshark",
                                     "-r",
                                     (dir / "engines.pcap").string(),
                                     "-n",
                                     "-X",
                                     "lua_script:" + (dir / "dccp_udp.lua").string(),
                                     "-o",
                                     "dccp.check_checksum:TRUE",
                                     "-T",
                                     "fields",
                                     "-E",
                                     "separator=;",
                                     "-e",
                                     "dccp.type",
                                     "-e",
                                     "dccp.seq_raw",
                                     "-e",
                                     "dccp.checksum.status",
                                     "-e",
                                     "_ws.malformed",
                                     "-e",
                                     "_ws.expert.severity",
                                     "-e",
                                     "dccp.reset_code",
                                     "-e",
                                     "dccp.option_type"});
  ASSERT_TRUE(tshark);
  ASSERT_EQ(tshark.wait_exit(20s), 0) << tshark.output();
  const std::string fields = tshark.output();
  std::map<int, int> types;
  std::set<std::string> reset_codes;
  int rows = 0, slow = 0;
  std::istringstream lines(fields);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(';') == std::string::npos) continue;
    auto f = split(line, ';');
    ASSERT_GE(f.size(), 7u) << line;
    ASSERT_FALSE(f[0].empty()) << "not decoded as DCCP: " << line;
    ++rows;
    ++types[std::stoi(f[0])];
    EXPECT_EQ(f[2], "1") << "checksum not good: " << line;
    EXPECT_TRUE(f[3].empty()) << "malformed: " << line;
    EXPECT_TRUE(f[4].find("8388608") == std::string::npos) << "expert error: " << line;
    if (!f[5].empty()) reset_codes.insert(f[5]);
    for (const auto& option : split(f[6], ',')) slow += option == "2";  // Slow Receiver
  }
  EXPECT_EQ(rows, static_cast<int>(packets.size()));
  for (auto t : {packet_type::sync, packet_type::sync_ack, packet_type::reset, packet_type::data_ack}) {
    EXPECT_GT(types[static_cast<int>(t)], 0) << dccp::to_string(t) << " not seen in:\n" << fields;
  }
  EXPECT_TRUE(reset_codes.count("2")) << fields;  // aborted
  EXPECT_TRUE(reset_codes.count("3")) << fields;  // no connection
  EXPECT_GT(slow, 0) << fields;
  std::filesystem::remove_all(dir);
}

TEST(DccpCapture, TsharkDecodesOurPackets) {
  if (find_program("tshark").empty()) GTEST_SKIP() << "tshark is not installed (docs/dependencies.md)";
  char dir_template[] = "/tmp/strata-dccp-capture-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir = dir_template;
  auto listener = strata::listen("udp-listen:127.0.0.1:0 | dccp(service=77, " + fast() + ")");
  ASSERT_TRUE(listener) << listener.error().message();
  const auto port = listener->local_address()->port();
  // And one over IPv6, whose pseudo-header is the other form (RFC 4340 9.1).
  auto listener6 = strata::listen("udp-listen:[::1]:0 | dccp(service=77, " + fast() + ")");
  ASSERT_TRUE(listener6) << listener6.error().message();
  const auto port6 = listener6->local_address()->port();
  const int probe_port = free_loopback_port(SOCK_DGRAM);
  {
    std::ofstream lua(dir / "dccp_udp.lua");
    lua << "local dccp = DissectorTable.get(\"ip.proto\"):get_dissector(33)\n"
        << "DissectorTable.get(\"udp.port\"):add(" << port << ", dccp)\n"
        << "DissectorTable.get(\"udp.port\"):add(" << port6 << ", dccp)\n";
  }
  // tshark decodes live, one line per packet (-l); probes to another port tell when the
  // capture runs and when it has seen everything.
  auto tshark = peer_process::start({"tshark",
                                     "-i",
                                     "lo",
                                     "-l",
                                     "-n",
                                     "-f",
                                     "udp port " + std::to_string(port) + " or udp port " +
                                         std::to_string(port6) + " or udp port " + std::to_string(probe_port),
                                     "-X",
                                     "lua_script:" + (dir / "dccp_udp.lua").string(),
                                     "-o",
                                     "dccp.check_checksum:TRUE",
                                     "-o",
                                     "dccp.relative_sequence_numbers:FALSE",
                                     "-T",
                                     "fields",
                                     "-E",
                                     "separator=;",
                                     "-e",
                                     "udp.srcport",
                                     "-e",
                                     "dccp.type",
                                     "-e",
                                     "dccp.seq_raw",
                                     "-e",
                                     "dccp.ack_raw",
                                     "-e",
                                     "dccp.checksum.status",
                                     "-e",
                                     "_ws.malformed",
                                     "-e",
                                     "_ws.expert.severity",
                                     "-e",
                                     "udp.payload",
                                     "-e",
                                     "ipv6.src"});
  ASSERT_TRUE(tshark);
  const auto dumpcap = [&] {
    tshark.wait_for_output("Capturing on", 15s);
    return children(tshark.pid());
  }();
  ASSERT_TRUE(probe(tshark, probe_port, "strata-probe-start", 15s)) << tshark.output();

  // Traffic: three connections; data both ways; one closed by the client (Close,
  // Reset), one by the server (CloseReq, Close, Reset), the third over IPv6.
  test::run_test([&]() -> task<void> {
    auto dl = deadline::after(5s);
    for (int round = 0; round < 3; ++round) {
      const std::string spec =
          round < 2 ? "udp:127.0.0.1:" + std::to_string(port) + " | dccp(service=77, " + fast() + ")"
                    : "udp:[::1]:" + std::to_string(port6) + " | dccp(service=77, " + fast() + ")";
      any_listener& l = round < 2 ? *listener : *listener6;
      co_await with_scope([&](scope& s) -> task<void> {
        s.spawn([](any_listener& l, bool server_closes, deadline d) -> task<void> {
          auto c = co_await l.accept(d);
          if (!c) co_return;
          std::vector<std::byte> buf(2048);
          auto got = co_await c->message().recv(buf, d);
          if (got) (void)co_await c->message().send(const_buffer(buf.data(), *got), d);
          if (!server_closes) {
            (void)co_await c->message().recv(buf, d);  // until the client's Close
          }
          (void)co_await c->close(d);
        }(l, round == 1, dl));
        auto c = co_await strata::connect(spec, dl);
        CO_ASSERT_OK(c);
        for (int k = 0; k < 3; ++k)
          (void)co_await c->message().send(as_bytes(std::string_view("captured")), dl);
        std::vector<std::byte> buf(2048);
        auto echo = co_await c->message().recv(buf, dl);
        EXPECT_TRUE(echo);
        if (round == 1) {
          (void)co_await c->message().recv(buf, dl);  // until the server's CloseReq
        }
        (void)co_await c->close(dl);
      });
    }
  });
  listener->close();
  listener6->close();
  const bool complete = probe(tshark, probe_port, "strata-probe-end", 15s);
  const std::string fields = tshark.output();
  tshark.stop();
  for (pid_t child : dumpcap) ::kill(child, SIGTERM);  // tshark's capture child, if it outlived tshark
  ASSERT_TRUE(complete) << fields;

  std::map<int, int> types;
  int rows = 0, ipv6_rows = 0;
  std::istringstream lines(fields);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(';') == std::string::npos) continue;  // tshark's own notes on stderr
    auto f = split(line, ';');
    ASSERT_GE(f.size(), 9u) << line;
    if (f[1].empty() && f[7].rfind(hex("strata-probe"), 0) == 0) continue;  // a probe
    ++rows;
    // tshark's reading agrees with ours, field by field.
    std::vector<std::byte> datagram;
    for (std::size_t i = 0; i + 1 < f[7].size(); i += 2)
      datagram.push_back(std::byte(std::stoi(f[7].substr(i, 2), nullptr, 16)));
    auto ours = dccp::decode(datagram, {}, false);
    ASSERT_TRUE(ours) << line;
    ASSERT_FALSE(f[1].empty()) << "not decoded as DCCP: " << line;
    EXPECT_EQ(std::stoi(f[1]), static_cast<int>(ours->h.type)) << line;
    EXPECT_EQ(std::stoull(f[2]), ours->h.seq) << line;
    if (dccp::has_ack(ours->h.type)) {
      EXPECT_EQ(std::stoull(f[3]), ours->h.ack) << line;
    }
    EXPECT_EQ(f[4], "1") << "checksum not good: " << line;  // 1: PROTO_CHECKSUM_E_GOOD
    EXPECT_TRUE(f[5].empty()) << "malformed: " << line;
    EXPECT_TRUE(f[6].find("8388608") == std::string::npos) << "expert error: " << line;  // PI_ERROR
    ++types[static_cast<int>(ours->h.type)];
    if (!f[8].empty()) ++ipv6_rows;
  }
  EXPECT_GE(rows, 30);
  EXPECT_GE(ipv6_rows, 8);
  for (auto t : {packet_type::request, packet_type::response, packet_type::ack, packet_type::data_ack,
                 packet_type::close_req, packet_type::close, packet_type::reset}) {
    EXPECT_GT(types[static_cast<int>(t)], 0) << dccp::to_string(t) << " not seen in:\n" << fields;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace strata::test
