// reliable: the packet codec and the sans-I/O engine (include/strata/adapt/reliable.hpp).
// The coroutine driver is in reliable_connection.cpp.
#include "strata/adapt/reliable.hpp"

#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <string>

namespace strata::reliable {

namespace {

class reliable_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "reliable"; }
  std::string message(int value) const override {
    switch (static_cast<error>(value)) {
      case error::truncated:
        return "reliable: packet shorter than its header or its SACK list";
      case error::bad_version:
        return "reliable: unknown wire format version";
      case error::bad_type:
        return "reliable: unknown packet type";
      case error::bad_flags:
        return "reliable: flags not allowed on this packet type";
      case error::bad_ack:
        return "reliable: invalid acknowledgement (SACK ranges or an ack of what was never sent)";
      case error::bad_payload:
        return "reliable: payload on a packet type that carries none";
      case error::bad_sequence:
        return "reliable: data after the peer's CLOSE";
      case error::message_too_large:
        return "reliable: message larger than one packet of the layer below carries (mtu less 40 bytes)";
      case error::peer_dead:
        return "reliable: the peer answered nothing within dead-after";
      case error::reset:
        return "reliable: connection reset by the peer";
      case error::aborted:
        return "reliable: connection reset (close past its deadline)";
      case error::bad_tag:
        return "reliable: packet without its sender's tag";
    }
    return "reliable error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    switch (static_cast<error>(value)) {
      case error::message_too_large:
        return errc::message_too_large;
      case error::peer_dead:
      case error::reset:
      case error::aborted:
        return errc::broken;
      default:
        return errc::protocol_error;
    }
  }
};

std::uint32_t load32(const std::byte* p) noexcept {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}
std::uint64_t load64(const std::byte* p) noexcept { return (std::uint64_t(load32(p)) << 32) | load32(p + 4); }
void store32(std::byte* p, std::uint32_t v) noexcept {
  p[0] = std::byte(v >> 24);
  p[1] = std::byte(v >> 16);
  p[2] = std::byte(v >> 8);
  p[3] = std::byte(v);
}
void store64(std::byte* p, std::uint64_t v) noexcept {
  store32(p, static_cast<std::uint32_t>(v >> 32));
  store32(p + 4, static_cast<std::uint32_t>(v));
}

result<void> bad(error e) noexcept { return unexpected(make_error_code(e)); }

// A stale sender gets at most one RESET per interval, whatever it sends.
constexpr std::chrono::milliseconds stale_reset_interval{10};

std::uint32_t random_tag() noexcept {
  std::uint32_t t = 0;
  if (::getrandom(&t, sizeof t, 0) != static_cast<ssize_t>(sizeof t)) {
    // No entropy call (seccomp, an old kernel): the clock and an address still tell two
    // incarnations apart, which is all a tag is for without an attacker on the path.
    static std::atomic<std::uint32_t> counter{0};
    auto ticks = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    t = static_cast<std::uint32_t>(ticks ^ (ticks >> 32)) ^ (counter.fetch_add(0x9e3779b9u) + 1);
  }
  return t;
}

// Acks within this much of the 64-bit limit are refused, so ack + 2 * 2^32 never wraps.
constexpr std::uint64_t max_ack = std::numeric_limits<std::uint64_t>::max() - (std::uint64_t{1} << 34);

using usec = std::chrono::microseconds;

// pace_burst: how much sending time pacing lets an idle sender save up (the event loop's
// timers have a resolution of 1 ms, so a finer pace would not be kept anyway).
constexpr std::chrono::milliseconds pace_burst{1};

}  // namespace

const std::error_category& category() noexcept {
  static const reliable_error_category c;
  return c;
}

// -- codec -------------------------------------------------------------------------------

result<void> decode(const_buffer d, packet& out) noexcept {
  if (d.size() < header_size) return bad(error::truncated);
  const std::byte* p = d.data();
  if (static_cast<std::uint8_t>(p[0]) != version) return bad(error::bad_version);
  auto type = static_cast<std::uint8_t>(p[1]);
  if (type > static_cast<std::uint8_t>(packet_type::reset)) return bad(error::bad_type);
  out.type = static_cast<packet_type>(type);
  out.flags = static_cast<std::uint8_t>(p[2]);
  std::size_t count = static_cast<std::uint8_t>(p[3]);
  out.window = load32(p + 4);
  out.ack = load64(p + 8);
  out.seq = load64(p + 16);
  out.xmit = load32(p + 24);
  out.echo = load32(p + 28);
  out.from_tag = load32(p + 32);
  out.to_tag = load32(p + 36);
  out.payload = const_buffer(p + header_size, d.size() - header_size);
  out.range_count = 0;
  if (out.from_tag == 0) return bad(error::bad_tag);
  if (out.ack > max_ack) return bad(error::bad_ack);
  const std::uint8_t allowed = out.type == packet_type::keepalive ? flag_ack_request
                               : out.type == packet_type::ack     ? flag_done
                                                                  : 0;
  if ((out.flags & ~allowed) != 0) return bad(error::bad_flags);
  if (out.type != packet_type::ack && count != 0) return bad(error::bad_ack);
  switch (out.type) {
    case packet_type::data:
      return {};
    case packet_type::ack: {
      if (count > max_sack_ranges) return bad(error::bad_ack);
      if (out.payload.size() < count * 8) return bad(error::truncated);
      if (out.payload.size() > count * 8) return bad(error::bad_payload);
      std::uint64_t prev_end = out.ack;
      for (std::size_t i = 0; i < count; ++i) {
        const std::byte* r = out.payload.data() + i * 8;
        std::uint64_t offset = load32(r);
        std::uint64_t length = load32(r + 4);
        if (offset == 0 || length == 0) return bad(error::bad_ack);
        std::uint64_t first = out.ack + offset;
        // Ascending, with a gap before each range (the first starts above the ack).
        if (first <= prev_end && i > 0) return bad(error::bad_ack);
        out.ranges[i] = sack_range{first, first + length};
        prev_end = first + length;
      }
      out.range_count = count;
      out.payload = {};
      return {};
    }
    case packet_type::keepalive:
    case packet_type::close:
    case packet_type::reset:
      if (!out.payload.empty()) return bad(error::bad_payload);
      return {};
  }
  return bad(error::bad_type);
}

std::size_t encode(const packet& p, std::span<std::byte> out) noexcept {
  std::byte* b = out.data();
  b[0] = std::byte(version);
  b[1] = std::byte(static_cast<std::uint8_t>(p.type));
  b[2] = std::byte(p.flags);
  b[3] = std::byte(static_cast<std::uint8_t>(p.range_count));
  store32(b + 4, p.window);
  store64(b + 8, p.ack);
  store64(b + 16, p.seq);
  store32(b + 24, p.xmit);
  store32(b + 28, p.echo);
  store32(b + 32, p.from_tag);
  store32(b + 36, p.to_tag);
  std::size_t n = header_size;
  for (std::size_t i = 0; i < p.range_count; ++i) {
    store32(b + n, static_cast<std::uint32_t>(p.ranges[i].first - p.ack));
    store32(b + n + 4, static_cast<std::uint32_t>(p.ranges[i].end - p.ranges[i].first));
    n += 8;
  }
  return n;
}

// -- engine --------------------------------------------------------------------------------

engine::engine(const options& o, std::size_t lower_max, time_point now) : opts_(o), tag_(o.tag) {
  while (tag_ == 0) tag_ = random_tag();
  std::size_t cap = lower_max == 0 ? opts_.mtu : std::min(opts_.mtu, lower_max);
  mtu_ = std::clamp<std::size_t>(cap, header_size + 8, 65507);
  opts_.window = std::clamp<std::uint32_t>(opts_.window, min_window, max_window);
  opts_.send_buffer = std::clamp<std::size_t>(opts_.send_buffer, 1, max_window);
  if (opts_.rto_min.count() < 1) opts_.rto_min = std::chrono::milliseconds(1);
  // Sixteen retransmissions fit in the dead-peer deadline: at 30% loss each way a try
  // fails half the time, and a peer must not be declared dead for a run of bad luck.
  if (opts_.dead_after.count() > 0) opts_.rto_max = std::min(opts_.rto_max, opts_.dead_after / 16);
  if (opts_.rto_max < opts_.rto_min) opts_.rto_max = opts_.rto_min;
  // Before the peer's first packet its window is assumed to be min_window, so the initial
  // window is at most that.
  opts_.initial_cwnd = std::clamp<std::uint32_t>(opts_.initial_cwnd, 1, min_window);
  rto_ = std::clamp<usec>(opts_.rto_initial, opts_.rto_min, opts_.rto_max);
  base_rto_ = rto_;
  cwnd_ = opts_.initial_cwnd;
  ssthresh_ = max_window;
  peer_right_ = opts_.initial_cwnd;
  rcv_right_ = 0;
  update_window();
  advertised_right_ = rcv_right_;
  last_heard_ = now;
  waiting_since_ = now;
  last_probe_ = now;
  last_stale_reset_ = now - stale_reset_interval;
}

const stats& engine::counters() const noexcept {
  stats_.srtt = srtt_;
  stats_.rto = rto_;
  stats_.cwnd = cwnd_;
  stats_.ssthresh = ssthresh_;
  stats_.delivery_rate = bandwidth();
  stats_.min_rtt = min_rtt_;
  return stats_;
}

void engine::fail(std::error_code ec) {
  if (failed_) return;
  failed_ = ec;
  rto_at_ = time_point::max();
  ack_at_ = time_point::max();
  ack_now_ = false;
  probe_now_ = false;
}

// -- application side --

bool engine::only_close_unacked() const noexcept { return sendq_.size() == 1 && sendq_.front().fin; }

bool engine::writable() const noexcept {
  return static_cast<bool>(failed_) || fin_queued_ || sendq_.size() < opts_.send_buffer;
}

result<void> engine::send(const_buffers message) {
  if (failed_) return unexpected(failed_);
  if (fin_queued_) return errc::closed;
  std::size_t size = message.total_size();
  if (size > max_payload()) return unexpected(make_error_code(error::message_too_large));
  if (sendq_.size() >= opts_.send_buffer) return errc::invalid_argument;
  out_msg m;
  m.data.reserve(size);
  for (auto part : message.view()) m.data.insert(m.data.end(), part.begin(), part.end());
  sendq_.push_back(std::move(m));
  ++stats_.messages_sent;
  return {};
}

bool engine::readable() const noexcept {
  return !ready_.empty() || peer_finished_ || static_cast<bool>(failed_);
}

std::optional<std::size_t> engine::next_size() const noexcept {
  if (ready_.empty()) return std::nullopt;
  return ready_.front().size();
}

result<std::size_t> engine::recv(mutable_buffer buf) {
  if (!ready_.empty()) {
    auto& m = ready_.front();
    if (m.size() > buf.size()) return errc::message_too_large;
    std::size_t n = m.size();
    if (n > 0) std::memcpy(buf.data(), m.data(), n);
    held_bytes_ -= n;
    ready_.pop_front();
    ++stats_.messages_delivered;
    update_window();
    // A window that was closed, or has grown by a quarter, is announced at once.
    std::uint64_t grown = rcv_right_ - advertised_right_;
    if (!peer_finished_ &&
        (advertised_right_ <= rcv_nxt_ || grown >= std::max<std::uint32_t>(1, opts_.window / 4)))
      ack_now_ = true;
    return n;
  }
  if (peer_finished_) return errc::end_of_stream;
  if (failed_) return unexpected(failed_);
  return errc::timed_out;
}

void engine::shutdown() {
  if (fin_queued_ || failed_) return;
  out_msg m;
  m.fin = true;
  sendq_.push_back(std::move(m));
  fin_queued_ = true;
}

void engine::abort() {
  if (failed_) return;
  reset_pending_ = true;
  fail(make_error_code(error::aborted));
}

void engine::discard_input() noexcept {
  discarding_ = true;
  ready_.clear();
  for (auto& [seq, data] : ooo_) {
    data.clear();
    data.shrink_to_fit();
  }
  held_bytes_ = 0;
  update_window();
}

void engine::update_window() noexcept {
  std::uint64_t free_msgs = opts_.window - std::min<std::uint64_t>(opts_.window, ready_.size());
  if (!discarding_) {
    std::uint64_t free_bytes = opts_.max_buffer > held_bytes_ ? opts_.max_buffer - held_bytes_ : 0;
    free_msgs = std::min<std::uint64_t>(free_msgs, free_bytes / max_payload());
  }
  rcv_right_ = std::max(rcv_right_, rcv_nxt_ + free_msgs);
}

// -- bookkeeping of the send queue --

void engine::mark_lost(out_msg& m) noexcept {
  if (m.lost || m.sacked) return;
  m.lost = true;
  --inflight_;
  ++lost_count_;
}

void engine::mark_delivered(out_msg& m) noexcept {
  if (m.sacked) return;
  if (m.lost) {
    m.lost = false;
    --lost_count_;
  } else {
    --inflight_;
  }
  m.sacked = true;
}

bool engine::awaiting_answer() const noexcept { return snd_nxt_ > snd_una_ || probe_outstanding_; }

void engine::note_awaiting(time_point now) noexcept {
  bool a = awaiting_answer();
  if (a && !was_awaiting_) waiting_since_ = now;
  was_awaiting_ = a;
}

void engine::rtt_sample(usec r) {
  if (r.count() < 1) r = usec(1);
  if (!have_rtt_) {
    srtt_ = r;
    rttvar_ = r / 2;
    have_rtt_ = true;
  } else {
    usec diff = srtt_ > r ? srtt_ - r : r - srtt_;
    rttvar_ = (3 * rttvar_ + diff) / 4;
    srtt_ = (7 * srtt_ + r) / 8;
  }
  usec g(1000);  // clock granularity G: 1 ms
  rto_ = std::clamp<usec>(srtt_ + std::max(g, 4 * rttvar_), opts_.rto_min, opts_.rto_max);
  base_rto_ = rto_;
  backoffs_ = 0;
}

void engine::enter_recovery() {
  // The rate control does not take a loss for congestion: the delivery rate it measures
  // already says what the path carries.
  if (opts_.congestion == options::control::rate) return;
  // Once per loss episode (RFC 6582): not again until what was in flight is acked.
  if (in_recovery_ || snd_una_ < recovery_point_) return;
  double flight = static_cast<double>(snd_nxt_ - snd_una_);
  ssthresh_ = std::max(flight / 2, 2.0);
  cwnd_ = ssthresh_;
  in_recovery_ = true;
  recovery_point_ = snd_nxt_;
}

// -- pacing --

std::chrono::nanoseconds engine::pace_interval() const noexcept {
  // Spread a window over the round trip: twice as fast in slow start, 1.25x in congestion
  // avoidance (as Linux's pacing does), so the window is never what limits.
  if (!opts_.pacing || !have_rtt_ || cwnd_ <= 0) return std::chrono::nanoseconds(0);
  if (opts_.congestion == options::control::rate && bandwidth() > 0) {
    // One message per 1 / (gain x bandwidth).
    return std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / (pacing_gain() * bandwidth())));
  }
  double gain = cwnd_ < ssthresh_ ? 2.0 : 1.25;
  double ns = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(srtt_).count()) /
              (cwnd_ * gain);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(ns));
}

bool engine::pacing_blocked(time_point now) const noexcept {
  return pace_interval().count() > 0 && pace_next_ > now;
}

void engine::pace_after_send(time_point now) noexcept {
  auto interval = pace_interval();
  if (interval.count() == 0) return;
  // At most pace_burst of sending time is saved up while idle.
  pace_next_ = std::max(pace_next_, now - pace_burst) + interval;
}

// -- the rate control (options::control::rate) --

double engine::pacing_gain() const noexcept {
  // Startup doubles the rate each round trip; then one round trip at 1.25 probes for more
  // bandwidth, one at 0.75 drains the queue that made, six at 1.
  static constexpr double cycle[8] = {1.25, 0.75, 1, 1, 1, 1, 1, 1};
  return startup_ ? 2.89 : cycle[cycle_phase_];
}

void engine::rate_sample(const out_msg& m, time_point now) noexcept {
  ++delivered_total_;
  delivered_stamp_ = now;
  first_sent_stamp_ = m.sent_at;
  // The rate over the interval this message measured: what was delivered since it was
  // sent, over the longer of the send and the ack spans (acks that arrive bunched do not
  // make a short span).
  const auto ack_span = now - m.delivered_stamp;
  const auto send_span = m.sent_at - m.first_sent;
  const auto span = std::max(ack_span, send_span);
  if (span.count() > 0 && (min_rtt_.count() == 0 || span >= min_rtt_)) {
    const double rate = static_cast<double>(delivered_total_ - m.delivered_before) /
                        std::chrono::duration<double>(span).count();
    // The bandwidth is the largest sample of the last two windows of ten round trips.
    const auto length = std::max<std::chrono::nanoseconds>(10 * (min_rtt_.count() ? min_rtt_ : srtt_),
                                                           std::chrono::milliseconds(10));
    if (now - bw_window_start_ > length) {
      bw_window_max_[1] = bw_window_max_[0];
      bw_window_max_[0] = 0;
      bw_window_start_ = now;
    }
    bw_window_max_[0] = std::max(bw_window_max_[0], rate);
  }
  rate_round(m, now);
}

void engine::rate_round(const out_msg& m, time_point now) noexcept {
  // A round ends when a message sent after the previous round's end is delivered.
  if (m.delivered_before < round_end_) return;
  round_end_ = delivered_total_;
  if (!startup_) return;
  // Startup ends when three rounds in a row grew the bandwidth by less than 25%: the pipe
  // is full. The first phase after it drains what startup queued.
  if (bandwidth() >= full_bw_ * 1.25) {
    full_bw_ = bandwidth();
    full_bw_rounds_ = 0;
  } else if (++full_bw_rounds_ >= 3) {
    startup_ = false;
    cycle_phase_ = 1;
    cycle_stamp_ = now;
  }
}

// -- network side --

void engine::on_packet(const_buffer datagram, time_point now) {
  packet p;
  if (!decode(datagram, p)) {
    ++stats_.malformed;
    return;
  }
  if (failed_) return;
  // Tags (docs/protocols/reliable.md, *Tags*). Addressed to another tag of ours: its
  // sender talks to an earlier incarnation of this end; a RESET tells it at once.
  if (p.to_tag != 0 && p.to_tag != tag_) {
    ++stats_.stale;
    if (p.type != packet_type::reset && now >= last_stale_reset_ + stale_reset_interval) {
      stale_reset_to_ = p.from_tag;
      last_stale_reset_ = now;
    }
    return;
  }
  // A RESET that names our tag answers something we sent, whichever incarnation of the
  // peer sends it (a restarted peer answering our packets to its predecessor).
  if (p.type == packet_type::reset && p.to_tag == tag_) {
    fail(make_error_code(error::reset));
    return;
  }
  // From another tag of the peer's: it restarted on the same address, or the packet is
  // forged. Dropped; a probe to the tag we know finds out (a live peer answers it, a
  // restarted one resets us).
  if (peer_tag_ != 0 && p.from_tag != peer_tag_) {
    ++stats_.foreign;
    if (!probe_outstanding_) probe_now_ = true;
    return;
  }
  // Validate the acknowledgement first, so a packet is taken whole or not at all.
  if (p.ack > snd_nxt_) {
    ++stats_.malformed;
    return;
  }
  for (std::size_t i = 0; i < p.range_count; ++i) {
    if (p.ranges[i].end > snd_nxt_) {
      ++stats_.malformed;
      return;
    }
  }
  if ((p.type == packet_type::data || p.type == packet_type::close) && p.seq > max_ack) {
    ++stats_.malformed;
    return;
  }
  ++stats_.packets_received;
  peer_tag_ = p.from_tag;
  last_heard_ = now;
  probe_outstanding_ = false;
  if (p.type == packet_type::reset) {
    fail(make_error_code(error::reset));
    return;
  }
  on_ack(p, now);
  if (p.type == packet_type::data || p.type == packet_type::close) on_data(p, now);
  if (p.type == packet_type::keepalive && (p.flags & flag_ack_request)) ack_now_ = true;
  if (p.type == packet_type::ack && (p.flags & flag_done)) peer_done_ = true;
  note_awaiting(now);
}

void engine::on_ack(const packet& p, time_point now) {
  std::uint64_t window = std::min<std::uint64_t>(p.window, max_window);
  peer_right_ = std::max(peer_right_, p.ack + window);

  std::size_t newly = 0;
  delivered_.clear();
  // The RTT is sampled from the transmission whose arrival made the peer send this ack
  // (its number echoed), when this ack delivers it: unambiguous even under ack loss. Karn's
  // rule on top: only a message sent once is sampled.
  std::optional<time_point> sample_sent;
  const bool rate_control = opts_.congestion == options::control::rate;
  auto delivered = [&](const out_msg& m) {
    ++newly;
    delivered_.push_back(m.xmit);
    if (m.tx == 1 && static_cast<std::uint32_t>(m.xmit) == p.echo) sample_sent = m.sent_at;
    if (rate_control) rate_sample(m, now);
  };

  bool progressed = false;
  if (p.ack > snd_una_) {
    while (snd_una_ < p.ack) {
      auto& m = sendq_.front();
      if (!m.sacked) {
        if (m.lost) {
          --lost_count_;
        } else {
          --inflight_;
        }
        delivered(m);
      }
      if (m.fin) fin_acked_ = true;
      sendq_.pop_front();
      ++snd_una_;
    }
    progressed = true;
    dupacks_ = 0;
  }
  for (std::size_t i = 0; i < p.range_count; ++i) {
    std::uint64_t first = std::max(p.ranges[i].first, snd_una_);
    for (std::uint64_t seq = first; seq < p.ranges[i].end; ++seq) {
      auto& m = sendq_[seq - snd_una_];
      if (m.sacked) continue;
      mark_delivered(m);
      delivered(m);
    }
  }
  if (sample_sent) {
    auto r = std::chrono::duration_cast<usec>(now - *sample_sent);
    rtt_sample(r);
    // The round trip without queueing: the smallest sample of the last 10 s.
    if (min_rtt_.count() == 0 || r <= min_rtt_ || now - min_rtt_stamp_ > std::chrono::seconds(10)) {
      min_rtt_ = std::max(r, usec(1));
      min_rtt_stamp_ = now;
    }
  }

  if (progressed) {
    // An ack of new data proves the path works: the backoff ends (as RFC 9002 6.2.1 does
    // for QUIC's probe timeout) even without a sample, which Karn's rule withholds after a
    // timeout until new data is acked. Without this a lossy path stays backed off for
    // many round trips. Then RFC 6298 5.2/5.3: stop the timer when everything is acked,
    // else restart it.
    if (backoffs_ > 0) {
      rto_ = base_rto_;
      backoffs_ = 0;
    }
    rto_at_ = snd_nxt_ > snd_una_ ? now + rto_ : time_point::max();
  }

  // Duplicate acks: the cumulative ack stands still, the peer holds data above it (SACK
  // ranges) but nothing new is selectively acked (its ranges are cut at 64), and the window
  // did not move (a window update is no duplicate, RFC 5681 2).
  const std::uint64_t right = p.ack + window;
  const bool same_window = right == last_ack_right_;
  last_ack_right_ = right;
  if (!progressed && newly == 0 && p.type == packet_type::ack && p.range_count > 0 && same_window &&
      snd_nxt_ > snd_una_ && p.ack == snd_una_) {
    if (++dupacks_ == 3) {
      auto& m = sendq_.front();
      if (!m.sacked && !m.lost && m.tx > 0) {
        mark_lost(m);
        ++stats_.fast_retransmits;
        enter_recovery();
      }
    }
  }

  // Loss detection (RFC 6675's three-packet rule in transmission order): a message is lost
  // when three messages transmitted after it have been delivered.
  if (!delivered_.empty()) {
    std::sort(delivered_.begin(), delivered_.end());
    std::uint64_t top = delivered_.back();
    bool lost_any = false;
    std::size_t sent = snd_nxt_ - snd_una_;
    // Early retransmit (RFC 5827): with fewer than four messages in flight three later
    // deliveries cannot happen; one fewer than the flight will do.
    const std::uint8_t threshold =
        sent >= 4 ? 3 : static_cast<std::uint8_t>(std::max<std::size_t>(1, sent - 1));
    for (std::size_t i = 0; i < sent; ++i) {
      auto& m = sendq_[i];
      if (m.sacked || m.lost || m.xmit >= top) continue;
      auto later = delivered_.end() - std::upper_bound(delivered_.begin(), delivered_.end(), m.xmit);
      m.dup = static_cast<std::uint8_t>(std::min<std::ptrdiff_t>(255, m.dup + later));
      if (m.dup >= threshold) {
        mark_lost(m);
        ++stats_.fast_retransmits;
        lost_any = true;
      }
    }
    if (lost_any) enter_recovery();
  }

  if (in_recovery_ && snd_una_ >= recovery_point_) in_recovery_ = false;
  if (rate_control && newly > 0) {
    if (!startup_ && min_rtt_.count() > 0 && now - cycle_stamp_ > min_rtt_) {
      cycle_phase_ = (cycle_phase_ + 1) % 8;
      cycle_stamp_ = now;
    }
    if (bandwidth() > 0 && min_rtt_.count() > 0) {
      // Twice the bandwidth-delay product (three times in startup): room for the acks'
      // delay and for probing, while pacing sets the rate.
      const double bdp = bandwidth() * std::chrono::duration<double>(min_rtt_).count();
      cwnd_ = std::clamp((startup_ ? 3.0 : 2.0) * bdp, 4.0, static_cast<double>(max_window));
    } else {
      cwnd_ = std::min(cwnd_ + static_cast<double>(newly), static_cast<double>(max_window));
    }
  } else if (newly > 0 && !in_recovery_) {
    if (cwnd_ < ssthresh_) {
      cwnd_ = std::min(cwnd_ + static_cast<double>(newly), std::max(ssthresh_, cwnd_ + 1));
    } else {
      cwnd_ += static_cast<double>(newly) / cwnd_;
    }
    cwnd_ = std::min<double>(cwnd_, max_window);
  }
}

void engine::on_data(const packet& p, time_point now) {
  echo_ = p.xmit;
  if (p.type == packet_type::close) {
    if (peer_fin_seq_ && *peer_fin_seq_ != p.seq) {
      ++stats_.malformed;
      return;
    }
    if (p.seq < rcv_nxt_) {
      ++stats_.duplicates;
      ack_now_ = true;
      return;
    }
    if (p.seq >= rcv_right_ || (!ooo_.empty() && ooo_.rbegin()->first >= p.seq)) {
      if (p.seq >= rcv_right_) {
        ++stats_.out_of_window;
      } else {
        ++stats_.malformed;  // messages after the end
      }
      ack_now_ = true;
      return;
    }
    peer_fin_seq_ = p.seq;
    ack_now_ = true;
    advance();
    return;
  }
  if (peer_fin_seq_ && p.seq >= *peer_fin_seq_) {
    ++stats_.malformed;
    return;
  }
  if (p.seq < rcv_nxt_) {
    ++stats_.duplicates;
    ack_now_ = true;  // our ack may have been lost
    return;
  }
  std::size_t size = p.payload.size();
  if (p.seq >= rcv_right_ || (!discarding_ && held_bytes_ + size > opts_.max_buffer)) {
    ++stats_.out_of_window;
    ack_now_ = true;
    return;
  }
  if (p.seq == rcv_nxt_) {
    bool filled_gap = !ooo_.empty();
    if (!discarding_) {
      ready_.emplace_back(p.payload.begin(), p.payload.end());
      held_bytes_ += size;
    }
    ++rcv_nxt_;
    advance();
    if (filled_gap || !ooo_.empty()) {
      ack_now_ = true;
    } else if (++unacked_in_order_ >= 2) {
      ack_now_ = true;
    } else if (ack_at_ == time_point::max()) {
      ack_at_ = now + opts_.ack_delay;
    }
    return;
  }
  auto [it, inserted] = ooo_.try_emplace(p.seq);
  if (!inserted) {
    ++stats_.duplicates;
  } else if (!discarding_) {
    it->second.assign(p.payload.begin(), p.payload.end());
    held_bytes_ += size;
  }
  ack_now_ = true;  // out of order: ack at once (RFC 5681 4.2)
}

void engine::advance() {
  for (;;) {
    if (peer_fin_seq_ && *peer_fin_seq_ == rcv_nxt_) {
      peer_finished_ = true;
      ++rcv_nxt_;
      return;
    }
    auto it = ooo_.begin();
    if (it == ooo_.end() || it->first != rcv_nxt_) return;
    if (!discarding_) {
      ready_.push_back(std::move(it->second));
    }
    ooo_.erase(it);
    ++rcv_nxt_;
  }
}

void engine::on_timer(time_point now) {
  if (failed_) return;
  if (opts_.dead_after.count() > 0 && awaiting_answer() &&
      now >= std::max(last_heard_, waiting_since_) + opts_.dead_after) {
    fail(make_error_code(error::peer_dead));
    return;
  }
  if (ack_at_ <= now) {
    ack_now_ = true;
    ack_at_ = time_point::max();
  }
  if (rto_at_ <= now) {
    if (snd_nxt_ > snd_una_) {
      // RFC 6298 5.4-5.6 and RFC 5681 3.1: everything in flight is presumed lost, the
      // window drops to one packet, the timer backs off.
      ++stats_.timeouts;
      if (opts_.congestion == options::control::rate) {
        // A silent round trip: little in flight until acks measure the path again (the
        // next ack sets the window from the bandwidth estimate).
        cwnd_ = 4;
      } else {
        if (backoffs_ == 0) {
          ssthresh_ = std::max(static_cast<double>(snd_nxt_ - snd_una_) / 2, 2.0);
        }
        cwnd_ = 1;
      }
      std::size_t sent = snd_nxt_ - snd_una_;
      for (std::size_t i = 0; i < sent; ++i) mark_lost(sendq_[i]);
      in_recovery_ = false;
      recovery_point_ = snd_nxt_;
      ++backoffs_;
      rto_ = std::min<usec>(rto_ * 2, opts_.rto_max);
      rto_at_ = now + rto_;
    } else if (snd_nxt_ < snd_una_ + sendq_.size() && snd_nxt_ >= peer_right_) {
      // The peer's window is closed: probe it (persist timer).
      probe_now_ = true;
      ++backoffs_;
      rto_ = std::min<usec>(rto_ * 2, opts_.rto_max);
      rto_at_ = now + rto_;
    } else {
      rto_at_ = time_point::max();
    }
  }
  if (opts_.keepalive.count() > 0) {
    if (!probe_outstanding_ && now >= last_heard_ + opts_.keepalive) probe_now_ = true;
    if (probe_outstanding_ && now >= last_probe_ + opts_.keepalive) probe_now_ = true;
  }
  note_awaiting(now);
}

engine::time_point engine::next_deadline() const noexcept {
  if (failed_) return time_point::max();
  time_point t = std::min(ack_at_, rto_at_);
  // Data held back by pacing goes at pace_next_ (poll sends it when it is not held back).
  const bool sendable = static_cast<double>(inflight_) < cwnd_ &&
                        (lost_count_ > 0 || (snd_nxt_ < snd_una_ + sendq_.size() && snd_nxt_ < peer_right_));
  if (sendable && pace_interval().count() > 0) t = std::min(t, pace_next_);
  if (ack_now_ || probe_now_ || stale_reset_to_ != 0) t = time_point::min();
  if (opts_.keepalive.count() > 0) {
    t = std::min(t, (probe_outstanding_ ? last_probe_ : last_heard_) + opts_.keepalive);
  }
  if (opts_.dead_after.count() > 0 && awaiting_answer()) {
    t = std::min(t, std::max(last_heard_, waiting_since_) + opts_.dead_after);
  }
  return t;
}

packet engine::header(packet_type t) {
  packet p;
  p.type = t;
  update_window();
  p.window = static_cast<std::uint32_t>(rcv_right_ - rcv_nxt_);
  p.ack = rcv_nxt_;
  p.echo = echo_;
  p.from_tag = tag_;
  p.to_tag = peer_tag_;
  return p;
}

std::size_t engine::write_control(packet_type t, std::uint8_t flags, std::uint32_t to_tag,
                                  std::span<std::byte> out) {
  packet p = header(t);
  p.flags = flags;
  p.to_tag = to_tag;
  ++stats_.packets_sent;
  return encode(p, out);
}

std::size_t engine::write_ack(std::span<std::byte> out) {
  packet p = header(packet_type::ack);
  std::size_t limit = std::min(max_sack_ranges, (mtu_ - header_size) / 8);
  for (auto it = ooo_.begin(); it != ooo_.end() && p.range_count < limit;) {
    std::uint64_t first = it->first;
    std::uint64_t end = first + 1;
    ++it;
    while (it != ooo_.end() && it->first == end) {
      ++end;
      ++it;
    }
    p.ranges[p.range_count++] = sack_range{first, end};
  }
  advertised_right_ = rcv_right_;
  ack_now_ = false;
  ack_at_ = time_point::max();
  unacked_in_order_ = 0;
  ++stats_.acks_sent;
  ++stats_.packets_sent;
  return encode(p, out);
}

std::size_t engine::write_data(out_msg& m, std::uint64_t seq, std::span<std::byte> out, time_point now) {
  packet p = header(m.fin ? packet_type::close : packet_type::data);
  p.seq = seq;
  m.xmit = ++xmit_counter_;
  p.xmit = static_cast<std::uint32_t>(m.xmit);
  std::size_t n = encode(p, out);
  if (!m.data.empty()) std::memcpy(out.data() + n, m.data.data(), m.data.size());
  n += m.data.size();
  ++m.tx;
  m.sent_at = now;
  m.dup = 0;
  if (inflight_ == 0) {
    // Nothing in flight: the rate sample of this message starts now, not at the last
    // delivery before an idle period.
    delivered_stamp_ = now;
    first_sent_stamp_ = now;
  }
  m.delivered_before = delivered_total_;
  m.delivered_stamp = delivered_stamp_;
  m.first_sent = first_sent_stamp_;
  ++inflight_;
  ++stats_.packets_sent;
  pace_after_send(now);
  // The cumulative ack rides along; SACK ranges need an ACK of their own.
  advertised_right_ = rcv_right_;
  if (ooo_.empty()) {
    ack_now_ = false;
    ack_at_ = time_point::max();
    unacked_in_order_ = 0;
  }
  if (rto_at_ == time_point::max()) rto_at_ = now + rto_;
  return n;
}

std::size_t engine::poll(std::span<std::byte> out, time_point now) {
  if (out.size() < mtu_) return 0;
  if (reset_pending_) {
    reset_pending_ = false;
    return write_control(packet_type::reset, 0, peer_tag_, out);
  }
  if (stale_reset_to_ != 0) {
    // Addressed to the stale sender's tag, so that it, and only it, takes it.
    std::size_t n = write_control(packet_type::reset, 0, stale_reset_to_, out);
    stale_reset_to_ = 0;
    return n;
  }
  if (failed_) return 0;
  if (done_pending_) {
    done_pending_ = false;
    std::size_t n = write_ack(out);
    out[2] = std::byte(flag_done);
    return n;
  }
  const bool paced = pacing_blocked(now);
  const bool room = static_cast<double>(inflight_) < cwnd_ && !paced;
  const bool have_new = snd_nxt_ < snd_una_ + sendq_.size() && snd_nxt_ < peer_right_;
  if (ack_now_ && (!ooo_.empty() || !room || (lost_count_ == 0 && !have_new))) return write_ack(out);
  if (room && lost_count_ > 0) {
    std::size_t sent = snd_nxt_ - snd_una_;
    for (std::size_t i = 0; i < sent; ++i) {
      auto& m = sendq_[i];
      if (!m.lost) continue;
      m.lost = false;
      --lost_count_;
      ++stats_.retransmits;
      std::size_t n = write_data(m, snd_una_ + i, out, now);
      note_awaiting(now);
      return n;
    }
  }
  if (room && have_new) {
    auto& m = sendq_[snd_nxt_ - snd_una_];
    std::size_t n = write_data(m, snd_nxt_, out, now);
    ++snd_nxt_;
    note_awaiting(now);
    return n;
  }
  if (ack_now_) return write_ack(out);
  if (probe_now_) {
    probe_now_ = false;
    probe_outstanding_ = true;
    last_probe_ = now;
    ++stats_.keepalives_sent;
    std::size_t n = write_control(packet_type::keepalive, flag_ack_request, peer_tag_, out);
    note_awaiting(now);
    return n;
  }
  // A closed peer window with data waiting and nothing in flight: the persist timer.
  if (snd_nxt_ == snd_una_ && snd_nxt_ < snd_una_ + sendq_.size() && snd_nxt_ >= peer_right_ &&
      rto_at_ == time_point::max())
    rto_at_ = now + rto_;
  return 0;
}

}  // namespace strata::reliable
