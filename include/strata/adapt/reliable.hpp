// reliable — reliable, ordered, duplicate-free message delivery over any unreliable
// message layer (udp connected, each per-peer connection of udp-listen, dtls,
// unix-dgram, dccp): an ARQ protocol of strata's own.
//
// row: requires message
//      provides connection-based message reliable ordered dup_free congestion_controlled
//               max_message (refined: min(mtu, the layer below's) less the 32-byte header)
//      passes   secure authenticated domain topology sharing direction multiplexed
//               (not fd_passing: a retransmission cannot carry descriptors again;
//               not priority_ordered: delivery is in sequence order)
// spec: udp:127.0.0.1:9000 | reliable                  (connector)
//       udp-listen:127.0.0.1:9000 | reliable(window=512)  (each peer its own connection)
//
// The wire format is documented in docs/protocols/reliable.md: a 40-byte header (version,
// type, flags, SACK count, receive window, cumulative ack, sequence number, transmission
// number and its echo, the sender's tag and the receiver's) on DATA, ACK (with up to 64
// selective-ack ranges), KEEPALIVE, CLOSE (the FIN, which takes a sequence number so it
// arrives after every message) and RESET packets. Sequence numbers count messages and are
// 64 bits wide: they never wrap. The tags tell each end's incarnations apart.
//
// The protocol is a sans-I/O state machine (reliable::engine: packets and the time in;
// packets, delivered messages and the next timer deadline out), which implements
// retransmission timeouts per RFC 6298 (Karn's rule, exponential backoff, a minimum and a
// maximum), SACK-based loss detection with fast retransmit (RFC 6675's three-packet
// rule, here counted in transmission order so a retransmission can be lost again) and
// duplicate acks, NewReno-like congestion control (RFC 5681: slow start, congestion
// avoidance, halving once per loss episode, one packet after a timeout) with pacing, a
// receive window advertised in messages, delayed cumulative acks, keepalive probes and a
// dead-peer deadline. reliable::connection is the thin coroutine driver: a receive task and a send
// task on strata timers.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::reliable {

/// header_size is the size of every packet's header.
inline constexpr std::size_t header_size = 40;
/// max_sack_ranges bounds the selective-ack ranges of one ACK packet (more: bad_ack).
inline constexpr std::size_t max_sack_ranges = 64;
/// max_window bounds a receive window, ours and the peer's (messages).
inline constexpr std::uint32_t max_window = 1u << 16;
/// min_window is the smallest receive window: what a sender assumes before it hears from
/// the peer, and the largest initial congestion window.
inline constexpr std::uint32_t min_window = 16;
/// version is the wire format's version byte.
inline constexpr std::uint8_t version = 2;

/// row is reliable's capability declaration.
inline constexpr capability_row row{
    .name = "reliable",
    .required = prop::unit,
    .required_value = {.unit = unit::message},
    .provided = prop::connection | prop::unit | prop::reliable | prop::ordered | prop::dup_free |
                prop::congestion_controlled,
    .provided_value = {.connection = connection::based,
                       .unit = unit::message,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .congestion_controlled = true},
    // max_message is passed so that the registry entry's refine sees the layer below's and
    // makes it min(below, mtu) - header_size.
    .passed = prop::secure | prop::authenticated | prop::domain | prop::topology | prop::sharing |
              prop::direction | prop::multiplexed | prop::max_message,
};

/// layer names the row for the stacks_on concept.
struct layer {
  static constexpr const capability_row& row = reliable::row;
};

/// error is what goes wrong in reliable, each code refining a strata::errc.
enum class error {
  truncated = 1,      ///< protocol_error: a packet shorter than its header or its SACK list
  bad_version,        ///< protocol_error: a version byte other than 2
  bad_type,           ///< protocol_error: an unknown packet type
  bad_flags,          ///< protocol_error: flags the packet type does not allow
  bad_ack,            ///< protocol_error: SACK ranges out of order, empty, too many, or on a
                      ///< packet that is not an ACK; an ack of what was never sent
  bad_payload,        ///< protocol_error: a payload on a packet type that carries none
  bad_sequence,       ///< protocol_error: data after the peer's CLOSE, or a second CLOSE elsewhere
  message_too_large,  ///< message_too_large: more than one packet of the layer below carries
  peer_dead,          ///< broken: the peer answered nothing for dead-after
  reset,              ///< broken: the peer reset the connection
  aborted,            ///< broken: this side reset the connection (close past its deadline)
  bad_tag,            ///< protocol_error: a packet whose sender's tag is 0
};

/// category is the std::error_category of reliable::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

// -- the codec ---------------------------------------------------------------------------

/// packet_type is the type byte of a header.
enum class packet_type : std::uint8_t { data = 0, ack = 1, keepalive = 2, close = 3, reset = 4 };

/// flag_ack_request asks the peer to answer with an ACK at once (KEEPALIVE only).
inline constexpr std::uint8_t flag_ack_request = 0x1;
/// flag_done says "your ACK of my CLOSE arrived; I am gone" (ACK only, sent once): the
/// peer that sent that ACK may stop lingering.
inline constexpr std::uint8_t flag_done = 0x2;

/// sack_range is a run of sequence numbers [first, end) the receiver holds above its
/// cumulative ack.
struct sack_range {
  std::uint64_t first = 0;
  std::uint64_t end = 0;
};

/// packet is one decoded packet. `payload` views the decoder's input (DATA only).
struct packet {
  packet_type type = packet_type::data;
  std::uint8_t flags = 0;
  std::uint32_t window = 0;    ///< sequence numbers beyond `ack` the sender accepts
  std::uint64_t ack = 0;       ///< the sender's next expected sequence number (cumulative)
  std::uint64_t seq = 0;       ///< DATA, CLOSE: this packet's sequence number
  std::uint32_t xmit = 0;      ///< DATA, CLOSE: this transmission's number (a retransmission gets a new one)
  std::uint32_t echo = 0;      ///< the xmit of the peer's packet that made this one carry its ack
  std::uint32_t from_tag = 0;  ///< the sender's tag: names this incarnation of its end (never 0)
  std::uint32_t to_tag = 0;    ///< the receiver's tag as the sender knows it (0: not yet known)
  const_buffer payload{};
  std::array<sack_range, max_sack_ranges> ranges{};
  std::size_t range_count = 0;
};

/// decode parses one packet (a whole datagram of the layer below). Errors: reliable::error
/// codes truncated, bad_version, bad_type, bad_flags, bad_ack, bad_payload, bad_tag. Keeps no
/// reference beyond `payload`; allocates nothing.
result<void> decode(const_buffer datagram, packet& out) noexcept;

/// encode writes the header of `p` (and its SACK ranges, for an ACK) to `out`, which must
/// hold header_size + 8 * p.range_count bytes, and returns the bytes written; a DATA
/// packet's payload follows the header (the caller copies it). The ranges must be valid
/// (ascending, above `p.ack`, within 2^32 of it).
std::size_t encode(const packet& p, std::span<std::byte> out) noexcept;

// -- the state machine ---------------------------------------------------------------------

/// options tune one end of a connection; every peer-controlled value is bounded by them.
struct options {
  /// mtu: the largest packet sent (header included), capped by the layer below's
  /// max_message; a message may take mtu - header_size bytes. 1200 by default (crosses
  /// any IPv6 path); 64..65507.
  std::size_t mtu = 1200;
  /// window: the receive window, in messages: how far beyond the next expected message
  /// the peer may send, and the most messages held for the reader. min_window..max_window.
  std::uint32_t window = 256;
  /// send_buffer: messages queued and not yet acknowledged before send waits.
  std::size_t send_buffer = 256;
  /// max_buffer: bytes held for the reader (delivered and out of order) at most; a packet
  /// beyond it is dropped (the sender retransmits it later).
  std::size_t max_buffer = 4u << 20;
  /// rto_initial / rto_min / rto_max: the retransmission timeout before the first RTT
  /// sample and its bounds (RFC 6298: 1 s, 1 s, >= 60 s; the minimum is lower here, as
  /// in Linux, for links whose round trip is far below a second). rto_max is capped at
  /// dead_after / 16, so a lossy path gets many tries before the peer counts as dead.
  std::chrono::milliseconds rto_initial{1000};
  std::chrono::milliseconds rto_min{200};
  std::chrono::milliseconds rto_max{60'000};
  /// ack_delay: how long an ACK may wait for a second in-order message (RFC 5681 4.2).
  std::chrono::milliseconds ack_delay{10};
  /// keepalive: a KEEPALIVE probe goes after this much silence from the peer; 0: off.
  std::chrono::milliseconds keepalive{5'000};
  /// dead_after: the connection fails with peer_dead when the peer answers nothing for
  /// this long while an answer is due (data or a probe outstanding); 0: never.
  std::chrono::milliseconds dead_after{15'000};
  /// pacing: spread each window's packets over the round trip (at 2x cwnd/SRTT in slow
  /// start, 1.25x after) instead of sending them in one burst; at most 1 ms of sending is
  /// saved up while idle. No pacing before the first RTT sample.
  bool pacing = true;
  /// initial_cwnd: the congestion window at the start (RFC 6928: 10), 1..min_window.
  std::uint32_t initial_cwnd = 10;
  /// congestion: how the sending rate follows the path. newreno (the default) halves the
  /// window on loss, as TCP reno does. rate sends at the delivery rate it measures (the
  /// largest of the last rounds, probed upward now and then, in the manner of BBR) with a
  /// window of twice the measured bandwidth-delay product, and does not slow down for a
  /// loss: for paths that lose packets without being congested (radio links, 1% random
  /// loss), where a loss-halving control gets a small fraction of the link.
  enum class control : std::uint8_t { newreno, rate };
  control congestion = control::newreno;
  /// tag names this end's incarnation on the wire (docs/protocols/reliable.md, *Tags*);
  /// 0: a random one (what a connection wants; tests and fuzzers set their own).
  std::uint32_t tag = 0;
};

/// stats counts what an engine did.
struct stats {
  std::uint64_t packets_sent = 0;
  std::uint64_t packets_received = 0;
  std::uint64_t messages_sent = 0;       ///< messages handed to send (first transmissions)
  std::uint64_t messages_delivered = 0;  ///< messages handed to the reader
  std::uint64_t retransmits = 0;         ///< DATA/CLOSE packets sent again
  std::uint64_t fast_retransmits = 0;    ///< losses detected by SACK or duplicate acks
  std::uint64_t timeouts = 0;            ///< retransmission timeouts that fired
  std::uint64_t duplicates = 0;          ///< DATA packets received that were already held
  std::uint64_t out_of_window = 0;       ///< DATA packets beyond the receive window or buffer
  std::uint64_t malformed = 0;           ///< packets dropped by decode or as inconsistent
  std::uint64_t stale = 0;               ///< packets for another tag of ours (answered with a RESET)
  std::uint64_t foreign = 0;             ///< packets from another tag of the peer's (dropped; probed)
  std::uint64_t acks_sent = 0;
  std::uint64_t keepalives_sent = 0;
  std::chrono::microseconds srtt{0};
  std::chrono::microseconds rto{0};
  double cwnd = 0;
  double ssthresh = 0;
  double delivery_rate = 0;              ///< congestion rate: the bandwidth estimate, messages per second
  std::chrono::microseconds min_rtt{0};  ///< congestion rate: the round-trip estimate
};

/// engine is the sans-I/O protocol of one end of a connection. Single-threaded; every
/// call takes `now`, the caller's clock (the driver uses deadline::clock). Feed every
/// datagram from the peer to on_packet, call on_timer when next_deadline() has passed,
/// and send every packet poll() produces (in order). Nothing here blocks or allocates
/// more than the bounded buffers the options allow.
class engine {
 public:
  using clock = deadline::clock;
  using time_point = clock::time_point;

  /// engine starts a connection at `now`; `lower_max` is the largest message of the
  /// layer below (the mtu is capped by it).
  engine(const options& o, std::size_t lower_max, time_point now);

  // -- application side --

  /// max_payload is the largest message send takes.
  std::size_t max_payload() const noexcept { return mtu_ - header_size; }
  /// writable: send would take a message now (the send buffer has room, or the
  /// connection failed or was shut down, which send then reports).
  bool writable() const noexcept;
  /// send queues one message. Errors: error::message_too_large (nothing queued),
  /// closed after shutdown, the connection's failure; invalid_argument when !writable().
  result<void> send(const_buffers message);
  /// readable: recv would return a message, end_of_stream or the failure now.
  bool readable() const noexcept;
  /// recv moves the next message into `buf` and returns its size. Errors: end_of_stream
  /// (the peer's CLOSE came after its last message; sticky), message_too_large (`buf` is
  /// too small; the message stays), the connection's failure; timed_out when nothing is
  /// there yet (see readable).
  result<std::size_t> recv(mutable_buffer buf);
  /// next_size is the size of the message recv would return next (nullopt: none).
  std::optional<std::size_t> next_size() const noexcept;
  /// shutdown queues CLOSE after every queued message: the peer's recv reports
  /// end_of_stream after the last one. Idempotent.
  void shutdown();
  /// abort sends RESET (the peer fails with error::reset) and fails this end with
  /// error::aborted.
  void abort();
  /// discard_input drops what the reader has not taken and every later message (close).
  void discard_input() noexcept;
  /// send_done queues one ACK with flag_done (after finished_sending and
  /// finished_receiving, by the side whose CLOSE was acked last).
  void send_done() noexcept { done_pending_ = true; }
  /// peer_done: the peer said it is gone (flag_done).
  bool peer_done() const noexcept { return peer_done_; }

  // -- network side --

  /// on_packet takes one datagram from the peer. Packets that do not decode, or
  /// contradict what was sent, are dropped and counted (stats::malformed): the layer below
  /// is not authenticated, so they never fail the connection.
  void on_packet(const_buffer datagram, time_point now);
  /// on_timer runs what is due at `now`: retransmission, delayed ack, keepalive, the
  /// dead-peer deadline.
  void on_timer(time_point now);
  /// poll writes the next packet to send into `out` (mtu() bytes) and returns its size;
  /// 0 when nothing may be sent now.
  std::size_t poll(std::span<std::byte> out, time_point now);
  /// next_deadline is when on_timer has work next (time_point::max(): none).
  time_point next_deadline() const noexcept;
  std::size_t mtu() const noexcept { return mtu_; }

  // -- state --

  /// failure is why the connection failed (empty while it works).
  std::error_code failure() const noexcept { return failed_; }
  /// finished_sending: our CLOSE was acknowledged (every message we sent arrived).
  bool finished_sending() const noexcept { return fin_acked_; }
  /// finished_receiving: the peer's CLOSE arrived in order (after all its messages).
  bool finished_receiving() const noexcept { return peer_finished_; }
  /// all_acked: nothing sent or queued waits for an acknowledgement.
  bool all_acked() const noexcept { return sendq_.empty(); }
  /// only_close_unacked: every message we sent was acknowledged but our CLOSE.
  bool only_close_unacked() const noexcept;
  /// flushed: no packet is due now (ACKs included).
  bool idle_output() const noexcept { return !ack_now_ && !reset_pending_; }
  const stats& counters() const noexcept;
  /// tag is this end's tag; peer_tag the peer's (0 until its first packet arrived).
  std::uint32_t tag() const noexcept { return tag_; }
  std::uint32_t peer_tag() const noexcept { return peer_tag_; }
  /// last_heard is when the latest valid packet from the peer arrived.
  time_point last_heard() const noexcept { return last_heard_; }
  /// rto is the retransmission timeout now; rto_min the option's floor.
  std::chrono::microseconds rto() const noexcept { return rto_; }
  std::chrono::microseconds rto_min() const noexcept { return opts_.rto_min; }
  /// fail_below fails the connection with the layer below's error (the driver's receive
  /// or send failed for good).
  void fail_below(std::error_code ec) { fail(ec); }

 private:
  struct out_msg {
    std::vector<std::byte> data;
    time_point sent_at{};
    // Delivery-rate sampling (congestion rate): what had been delivered, and when, as this
    // transmission left, and the send time of the delivery then latest.
    std::uint64_t delivered_before = 0;
    time_point delivered_stamp{};
    time_point first_sent{};
    std::uint64_t xmit = 0;  // transmission order of the latest send
    std::uint16_t tx = 0;    // times sent
    std::uint8_t dup = 0;    // later transmissions delivered (loss detection)
    bool sacked = false;
    bool lost = false;
    bool fin = false;
  };

  void fail(std::error_code ec);
  void on_ack(const packet& p, time_point now);
  void on_data(const packet& p, time_point now);
  void advance();
  void rtt_sample(std::chrono::microseconds r);
  void enter_recovery();
  void update_window() noexcept;
  std::chrono::nanoseconds pace_interval() const noexcept;
  bool pacing_blocked(time_point now) const noexcept;
  void pace_after_send(time_point now) noexcept;
  void mark_lost(out_msg& m) noexcept;
  void rate_sample(const out_msg& m, time_point now) noexcept;
  void rate_round(const out_msg& m, time_point now) noexcept;
  void mark_delivered(out_msg& m) noexcept;
  bool awaiting_answer() const noexcept;
  void note_awaiting(time_point now) noexcept;
  /// header is a packet of type `t` with what every packet carries: our window, our
  /// cumulative ack, the echo, our tag and the peer's.
  packet header(packet_type t);
  std::size_t write_ack(std::span<std::byte> out);
  std::size_t write_data(out_msg& m, std::uint64_t seq, std::span<std::byte> out, time_point now);
  std::size_t write_control(packet_type t, std::uint8_t flags, std::uint32_t to_tag,
                            std::span<std::byte> out);

  options opts_;
  std::size_t mtu_;
  std::error_code failed_{};

  // sender
  std::deque<out_msg> sendq_;  // sendq_[i] has sequence number snd_una_ + i
  std::uint64_t snd_una_ = 0;  // oldest unacknowledged
  std::uint64_t snd_nxt_ = 0;  // next never sent
  std::uint64_t peer_right_;   // we may send sequence numbers below it
  std::uint64_t xmit_counter_ = 0;
  std::size_t inflight_ = 0;              // sent, not delivered, not presumed lost
  std::size_t lost_count_ = 0;            // presumed lost, not yet sent again
  std::vector<std::uint64_t> delivered_;  // scratch: transmissions one ack delivered
  double cwnd_;
  double ssthresh_;
  bool in_recovery_ = false;
  std::uint64_t recovery_point_ = 0;
  std::uint32_t dupacks_ = 0;
  std::uint64_t last_ack_right_ = 0;  // ack + window of the latest packet (dup-ack rule)
  bool fin_queued_ = false;
  bool fin_acked_ = false;
  // RFC 6298
  bool have_rtt_ = false;
  std::chrono::microseconds srtt_{0};
  std::chrono::microseconds rttvar_{0};
  std::chrono::microseconds rto_;
  std::chrono::microseconds base_rto_;  // rto_ without backoff
  time_point rto_at_ = time_point::max();
  std::uint32_t backoffs_ = 0;  // timeouts since the last RTT sample
  time_point pace_next_{};      // pacing: the next data packet may leave then
  // congestion rate (see options::control)
  std::uint64_t delivered_total_ = 0;  // messages delivered so far
  time_point delivered_stamp_{};       // when the latest was
  time_point first_sent_stamp_{};      // the send time of the latest delivered
  double bw_window_max_[2] = {0, 0};   // the largest rate sample in this and the last window
  time_point bw_window_start_{};
  double full_bw_ = 0;                // startup: the bandwidth of the last growth
  std::uint32_t full_bw_rounds_ = 0;  // startup: rounds without 25% growth
  bool startup_ = true;
  std::uint64_t round_end_ = 0;  // a round ends when a message sent after this is delivered
  std::chrono::microseconds min_rtt_{0};
  time_point min_rtt_stamp_{};
  std::uint32_t cycle_phase_ = 0;  // probe_bw: index into the gain cycle
  time_point cycle_stamp_{};
  double bandwidth() const noexcept { return std::max(bw_window_max_[0], bw_window_max_[1]); }
  double pacing_gain() const noexcept;

  // receiver
  std::uint64_t rcv_nxt_ = 0;
  std::uint64_t rcv_right_;  // the highest right edge advertised (never shrinks)
  std::uint64_t advertised_right_;
  std::deque<std::vector<std::byte>> ready_;
  std::map<std::uint64_t, std::vector<std::byte>> ooo_;
  std::size_t held_bytes_ = 0;
  std::optional<std::uint64_t> peer_fin_seq_;
  bool peer_finished_ = false;
  bool discarding_ = false;
  bool ack_now_ = false;
  std::uint32_t unacked_in_order_ = 0;
  std::uint32_t echo_ = 0;  // the xmit of the latest DATA/CLOSE received
  time_point ack_at_ = time_point::max();

  // liveness
  time_point last_heard_;
  time_point waiting_since_;
  bool was_awaiting_ = false;
  bool probe_outstanding_ = false;
  bool probe_now_ = false;
  time_point last_probe_;
  bool reset_pending_ = false;
  bool done_pending_ = false;
  bool peer_done_ = false;

  // tags: this end's, the peer's once learned, and a RESET owed to a stale sender
  std::uint32_t tag_;
  std::uint32_t peer_tag_ = 0;
  std::uint32_t stale_reset_to_ = 0;
  time_point last_stale_reset_;

  mutable stats stats_{};
};

// -- the driver ------------------------------------------------------------------------------

struct connection_state;

/// connection is reliable over a message layer it owns (any_message; typed layers are
/// wrapped): a message_socket (core/stream.hpp) with shutdown_write. Construct it on the
/// thread whose event loop runs it: the constructor starts a receive task and a send task
/// that run the engine on strata timers. One send and one recv may be pending at the
/// same time (from different tasks).
class connection {
 public:
  static constexpr properties capabilities{.connection = strata::connection::based,
                                           .unit = unit::message,
                                           .reliable = true,
                                           .ordered = true,
                                           .dup_free = true,
                                           .congestion_controlled = true,
                                           .max_message = 1200 - header_size};

  connection() noexcept;
  connection(any_message lower, const options& o);
  template <message_socket Lower>
  requires(!std::same_as<Lower, any_message>) connection(Lower lower, const options& o)
      : connection(any_message(std::move(lower)), o) {}
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  /// ~connection without close resets the connection (RESET goes if the send task can
  /// still run; otherwise the peer finds out by its dead-peer deadline).
  ~connection();

  /// send queues one message; it waits while the send buffer is full. Returns once the
  /// message is queued (not acknowledged: close waits for that). Errors:
  /// error::message_too_large (above max_message(); nothing queued), closed after
  /// shutdown_write or close, the connection's failure (peer_dead, reset, the layer
  /// below's error), timed_out / operation_canceled (nothing queued).
  task<result<void>> send(const_buffers message, deadline dl);
  /// recv returns the next message, in order, each exactly once. Errors: end_of_stream
  /// after the peer's shutdown_write or close (sticky), message_too_large (`buf` too
  /// small: the message stays for a retry), the connection's failure, timed_out /
  /// operation_canceled (nothing consumed), closed.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// shutdown_write queues CLOSE after the messages queued: the peer's recv reports
  /// end_of_stream after the last one. Does not wait.
  task<result<void>> shutdown_write(deadline dl);
  /// close: shutdown_write, then waits until every message was acknowledged and the
  /// peer's CLOSE arrived (messages still arriving are dropped). When the peer's CLOSE
  /// came last (our ACK of it may be lost), it lingers — answering a CLOSE sent again —
  /// until the peer says it is done (one ACK with flag_done) or has been quiet for eight
  /// RTOs (at least 500 ms, at most 2 s), and closes the layer below. When the peer's
  /// CLOSE came first and only our CLOSE is unacked, a peer silent for 4 s has left
  /// (it lingers at most 2 s): close succeeds without that ACK. Past
  /// `dl` it resets the connection and returns timed_out. Afterwards every call fails with
  /// closed.
  task<result<void>> close(deadline dl);

  /// max_message is the largest message (answers fact::max_message).
  std::size_t max_message() const noexcept;
  properties runtime_capabilities() const;
  const any_message& next_layer() const noexcept;
  any_message& next_layer() noexcept;
  /// counters is a copy of the engine's statistics.
  stats counters() const;

 private:
  std::shared_ptr<connection_state> state_;
};

static_assert(message_socket<connection>);

}  // namespace strata::reliable

template <>
struct std::is_error_code_enum<strata::reliable::error> : std::true_type {};
