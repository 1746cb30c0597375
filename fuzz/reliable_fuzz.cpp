// Fuzz target for reliable: the packet decoder and, behind it, the engine fed arbitrary
// packets as if from the peer.
//
// Input: byte 0 picks the mode (bits 0-2: messages the engine sends first, 0..7 x 8; bit
// 3: the application reads what arrives; bit 4: shut down after sending; bits 5-7: how
// far the clock moves between packets); an input of odd length runs the rate congestion
// control, an even one newreno. The rest is a sequence of packets, each behind
// a 2-byte big-endian length. Invariants (abort() on violation): a packet that decodes
// re-encodes to the same bytes; SACK ranges are ascending, non-empty and above the ack;
// every packet the engine sends decodes and fits the mtu; a message delivered fits
// max_payload, and no more messages are delivered than packets came; the engine never produces output without
// end (poll is bounded per step) and its next deadline is never in the past after a step.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "strata/adapt/reliable.hpp"

namespace {

namespace reliable = strata::reliable;
using strata::const_buffer;

void check(bool ok) {
  if (!ok) std::abort();
}

void check_codec(const_buffer in) {
  reliable::packet p;
  auto r = reliable::decode(in, p);
  if (!r) return;
  for (std::size_t i = 0; i < p.range_count; ++i) {
    check(p.ranges[i].first > p.ack);
    check(p.ranges[i].end > p.ranges[i].first);
    if (i > 0) check(p.ranges[i].first > p.ranges[i - 1].end);
  }
  std::vector<std::byte> out(reliable::header_size + 8 * p.range_count + p.payload.size());
  std::size_t n = reliable::encode(p, out);
  if (!p.payload.empty()) std::memcpy(out.data() + n, p.payload.data(), p.payload.size());
  check(out.size() == in.size());
  check(std::memcmp(out.data(), in.data(), in.size()) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  reliable::options o;
  o.mtu = 600;
  o.window = 32;
  o.send_buffer = 64;
  o.max_buffer = 16 * 1024;
  o.rto_min = std::chrono::milliseconds(10);
  o.rto_initial = std::chrono::milliseconds(50);
  o.keepalive = std::chrono::milliseconds(100);
  o.dead_after = std::chrono::milliseconds(5000);
  if (size % 2 == 1) o.congestion = reliable::options::control::rate;
  o.tag = 0x7e570001;  // the seeds address packets to it (fuzz/corpus/reliable)
  auto now = reliable::engine::time_point{} + std::chrono::hours(1);
  reliable::engine e(o, 1200, now);
  check(e.mtu() == 600);

  const std::size_t to_send = (mode & 7u) * 8;
  std::vector<std::byte> msg(e.max_payload());
  for (std::size_t i = 0; i < to_send && e.writable(); ++i) {
    msg[0] = std::byte(i);
    check(static_cast<bool>(e.send(const_buffer(msg.data(), i % msg.size()))));
  }
  if (mode & 0x10) e.shutdown();
  const auto tick = std::chrono::milliseconds(1 << ((mode >> 5) & 7));

  std::vector<std::byte> out(e.mtu());
  std::vector<std::byte> in(e.max_payload());
  std::uint64_t highest_ack_sent = 0;
  std::uint64_t delivered = 0;
  auto step = [&]() {
    e.on_timer(now);
    for (int i = 0;; ++i) {
      check(i < 10000);
      std::size_t n = e.poll(out, now);
      if (n == 0) break;
      check(n <= e.mtu());
      reliable::packet p;
      check(static_cast<bool>(reliable::decode(const_buffer(out.data(), n), p)));
      highest_ack_sent = std::max(highest_ack_sent, p.ack);
      check_codec(const_buffer(out.data(), n));
    }
    check(e.next_deadline() > now);
    if (mode & 0x8) {
      while (e.readable()) {
        auto r = e.recv(in);
        if (!r) break;
        check(*r <= e.max_payload());
        ++delivered;
      }
    }
  };

  std::size_t off = 1;
  std::uint64_t packets = 0;
  while (off + 2 <= size) {
    std::size_t len = (std::size_t(data[off]) << 8) | data[off + 1];
    off += 2;
    if (len > size - off) len = size - off;
    const_buffer pkt(reinterpret_cast<const std::byte*>(data + off), len);
    off += len;
    check_codec(pkt);
    e.on_packet(pkt, now);
    ++packets;
    step();
    now += tick;
  }
  // Let the timers run out a while: retransmissions, probes, the dead-peer deadline.
  for (int i = 0; i < 50; ++i) {
    auto next = e.next_deadline();
    if (next == reliable::engine::time_point::max()) break;
    now = next;
    step();
  }
  // Every message delivered came from a packet of its own.
  check(delivered <= packets);
  check(e.counters().packets_received <= packets);
  (void)highest_ack_sent;
  return 0;
}
