// dccp — connections and congestion control for unreliable datagrams: DCCP (RFC 4340)
// in user space, carried in UDP (RFC 6773), with CCID 2, TCP-like congestion control
// (RFC 4341).
//
// row: requires message (connection-less is fine: one udp-listen socket serves many peers)
//      provides connection-based message unreliable unordered congestion_controlled
//               max_message (the path's limit less the DCCP header)
//      passes   secure authenticated domain sharing direction
// spec: udp:127.0.0.1:5000 | dccp(service=42)               (client)
//       udp-listen:127.0.0.1:5000 | dccp(service=42)        (server: one connection per peer)
//
// Implemented: the generic header with 48-bit sequence numbers (X=1; 5.1), every packet
// type and its subheaders (5.2-5.6), service codes (8.1.2), Reset codes (5.6), the
// checksum and its coverage (9; the pseudo-header is built from the addresses the
// lower layer knows), the options (5.8: Padding, Mandatory, Slow Receiver, Change and
// Confirm L/R, Init Cookie, NDP Count, Ack Vector, Timestamp, Timestamp Echo, Elapsed
// Time) with limits, feature negotiation (6) for CCID, Ack Ratio, Send Ack Vector,
// Sequence Window and Allow Short Seqnos, the handshake (8.1) with retransmission, the
// teardown (8.3: CloseReq, Close, Reset, TIMEWAIT), sequence and acknowledgement
// validity windows with Sync/SyncAck (7.5), and CCID 2: a congestion window counted in
// packets, Ack Vectors (11.4), Ack Ratio, the retransmission timeout (RFC 6298's
// estimator) and acknowledgements of acknowledgements (RFC 4341 6.1.4).
//
// The protocol is a sans-I/O state machine (dccp::engine: datagrams and the time in,
// datagrams, delivered messages and the next deadline out), unit-tested and fuzzed on
// its own; dccp::connection<Lower> is a thin coroutine driver over it.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/handshaking_listener.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::dccp {

/// row is dccp's capability declaration.
inline constexpr capability_row row{
    .name = "dccp",
    .required = prop::unit,
    .required_value = {.unit = unit::message},
    .provided = prop::connection | prop::unit | prop::reliable | prop::ordered | prop::congestion_controlled |
                prop::max_message | prop::topology,
    .provided_value = {.connection = connection::based,
                       .unit = unit::message,
                       .reliable = false,
                       .ordered = false,
                       .topology = topology::p2p,
                       .congestion_controlled = true,
                       .max_message = 1400 - 24},
    .passed = prop::secure | prop::authenticated | prop::domain | prop::sharing | prop::direction,
};

/// layer names the row for the stacks_on concept.
struct layer {
  static constexpr const capability_row& row = dccp::row;
};

/// error lists what DCCP reports besides the errc conditions. Each refines an errc:
/// protocol_error for malformed packets, broken for a connection the peer reset.
enum class error {
  truncated = 1,       ///< protocol_error: shorter than its header says
  bad_data_offset,     ///< protocol_error: Data Offset outside the packet or below the header
  bad_checksum,        ///< protocol_error: the checksum does not match
  bad_coverage,        ///< protocol_error: CsCov covers more than the packet
  bad_type,            ///< protocol_error: a reserved packet type
  short_sequence,      ///< protocol_error: X=0 (24-bit sequence numbers are not allowed)
  bad_option,          ///< protocol_error: an option's length is wrong or runs past the header
  too_many_options,    ///< protocol_error: more options (or feature changes) than the limits allow
  bad_ack_vector,      ///< protocol_error: an Ack Vector longer than the limit
  mandatory_failure,   ///< protocol_error: a Mandatory option precedes one we cannot honour
  bad_port,            ///< protocol_error: the ports are not this connection's
  out_of_window,       ///< protocol_error: a sequence or acknowledgement number outside the windows (7.5)
  negotiation_failed,  ///< protocol_error: the peer would not agree on CCID 2
  peer_reset,          ///< broken: the peer reset the connection (Reset: aborted, no connection, ...)
  refused,             ///< broken: the peer refused the connection (Reset: connection refused, too busy)
  bad_service_code,    ///< broken: the peer does not offer the service code (Reset code 8)
  handshake_failed,    ///< broken: no Response after the most Requests allowed
};

/// category is the std::error_category of dccp::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

// -- the codec -----------------------------------------------------------------------------

/// packet_type is the Type field of the generic header (RFC 4340 5.1).
enum class packet_type : std::uint8_t {
  request = 0,
  response = 1,
  data = 2,
  ack = 3,
  data_ack = 4,
  close_req = 5,
  close = 6,
  reset = 7,
  sync = 8,
  sync_ack = 9,
};
/// to_string names a packet type ("DCCP-Request").
const char* to_string(packet_type t) noexcept;

/// reset_code is the first byte of a Reset's subheader (RFC 4340 5.6).
enum class reset_code : std::uint8_t {
  unspecified = 0,
  closed = 1,
  aborted = 2,
  no_connection = 3,
  packet_error = 4,
  option_error = 5,
  mandatory_error = 6,
  connection_refused = 7,
  bad_service_code = 8,
  too_busy = 9,
  bad_init_cookie = 10,
  aggression_penalty = 11,
};

/// option numbers (RFC 4340 5.8; Ack Vector 11.4).
namespace option {
inline constexpr std::uint8_t padding = 0, mandatory = 1, slow_receiver = 2, change_l = 32, confirm_l = 33,
                              change_r = 34, confirm_r = 35, init_cookie = 36, ndp_count = 37,
                              ack_vector_0 = 38, ack_vector_1 = 39, data_dropped = 40, timestamp = 41,
                              timestamp_echo = 42, elapsed_time = 43, data_checksum = 44;
}
/// feature numbers (RFC 4340 6.4).
namespace feature {
inline constexpr std::uint8_t ccid = 1, allow_short_seqnos = 2, sequence_window = 3, ecn_incapable = 4,
                              ack_ratio = 5, send_ack_vector = 6, send_ndp_count = 7,
                              min_checksum_coverage = 8, check_data_checksum = 9;
}

/// seq_mask keeps sequence numbers to 48 bits; sequence arithmetic is modulo 2^48.
inline constexpr std::uint64_t seq_mask = (std::uint64_t(1) << 48) - 1;
/// seq_add is a + n modulo 2^48.
constexpr std::uint64_t seq_add(std::uint64_t a, std::int64_t n) noexcept {
  return (a + static_cast<std::uint64_t>(n)) & seq_mask;
}
/// seq_delta is b - a as a signed distance in (-2^47, 2^47].
constexpr std::int64_t seq_delta(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t d = (b - a) & seq_mask;
  return d >= (std::uint64_t(1) << 47) ? static_cast<std::int64_t>(d) - (std::int64_t(1) << 48)
                                       : static_cast<std::int64_t>(d);
}
/// seq_in is true when lo <= x <= hi in circular order.
constexpr bool seq_in(std::uint64_t x, std::uint64_t lo, std::uint64_t hi) noexcept {
  return seq_delta(lo, x) >= 0 && seq_delta(x, hi) >= 0;
}

/// endpoints are what the checksum's pseudo-header and the port fields need: the
/// addresses of the sender and the receiver of a packet (RFC 4340 9.1). For DCCP in UDP
/// the ports are the UDP ports (RFC 6773); an unknown address (not IP) counts as zero.
struct endpoints {
  std::array<std::uint8_t, 16> source_ip{};
  std::array<std::uint8_t, 16> dest_ip{};
  bool ipv6 = false;
  std::uint16_t source_port = 0;
  std::uint16_t dest_port = 0;
  /// from makes the endpoints of a packet sent from `source` to `dest`.
  static endpoints from(const address& source, const address& dest) noexcept;
  /// reversed is the same path in the other direction.
  endpoints reversed() const noexcept;
};

/// header holds the generic header and the type's subheader of one packet.
struct header {
  std::uint16_t source_port = 0;
  std::uint16_t dest_port = 0;
  std::uint8_t ccval = 0;
  std::uint8_t cscov = 0;  ///< 0: the checksum covers the whole packet; n: the header and n-1 words
  packet_type type = packet_type::data;
  std::uint64_t seq = 0;
  std::uint64_t ack = 0;                      ///< for every type but Request and Data
  std::uint32_t service_code = 0;             ///< Request and Response
  reset_code code = reset_code::unspecified;  ///< Reset
  std::array<std::uint8_t, 3> reset_data{};   ///< Reset
};

/// has_ack is true for the packet types with an acknowledgement subheader.
constexpr bool has_ack(packet_type t) noexcept { return t != packet_type::request && t != packet_type::data; }
/// header_size is the generic header plus the subheader of `t` (X=1), before options.
std::size_t header_size(packet_type t) noexcept;

/// decoded is a parsed packet: views into the datagram.
struct decoded {
  header h;
  const_buffer options;
  const_buffer payload;
};

/// decode parses one DCCP-in-UDP datagram sent along `path` and checks its checksum (when
/// `verify_checksum`). Errors: dccp::error (truncated, bad_data_offset, bad_checksum,
/// bad_coverage, bad_type, short_sequence).
result<decoded> decode(const_buffer datagram, const endpoints& path, bool verify_checksum = true);

/// encode builds the datagram of a packet sent along `path`: `h` (its ports are replaced
/// by the path's), `options` (padded to 32 bits here) and `payload`; computes the
/// checksum. `options` must be at most max_options bytes.
std::vector<std::byte> encode(const header& h, const_buffer options, const_buffers payload,
                              const endpoints& path);

/// max_options is the most option bytes a header may carry (Data Offset counts 32-bit
/// words in 8 bits: 1020 bytes of header).
inline constexpr std::size_t max_options = 1020 - 24 - 4;

/// checksum computes the Internet checksum of `datagram` under the pseudo-header of
/// `path` with the coverage of its CsCov field, with the checksum field counted as zero.
std::uint16_t checksum(const_buffer datagram, const endpoints& path) noexcept;

/// feature_option is one Change or Confirm option.
struct feature_option {
  std::uint8_t kind = 0;  ///< option::change_l, confirm_l, change_r or confirm_r
  std::uint8_t feature = 0;
  std::vector<std::uint8_t> values;  ///< Change: preference list or NN value; Confirm: value, preferences
};

/// options_limits bound what one packet's options may ask of a receiver.
struct options_limits {
  std::size_t max_features = 16;        ///< Change and Confirm options per packet
  std::size_t max_ack_vectors = 4;      ///< Ack Vector options per packet
  std::size_t max_ack_cells = 4 * 253;  ///< their cells together
};

/// parsed_options is what a packet's options said (RFC 4340 5.8).
struct parsed_options {
  std::vector<feature_option> features;
  std::vector<std::uint8_t> ack_vector;  ///< the cells of every Ack Vector option, in order
  bool ack_vector_present = false;
  bool slow_receiver = false;
  std::vector<std::uint8_t> init_cookie;
  std::optional<std::uint64_t> ndp_count;
  std::optional<std::uint32_t> timestamp;
  std::optional<std::uint32_t> timestamp_echo;
  std::optional<std::uint32_t> elapsed_time;  ///< in units of 10 microseconds
  bool unknown_mandatory = false;             ///< a Mandatory option preceded an option we do not know
};

/// parse_options reads an options area. Errors: bad_option (a length below its minimum
/// or running past the area, Mandatory last), too_many_options, bad_ack_vector.
result<parsed_options> parse_options(const_buffer area, const options_limits& limits = {});

// -- the state machine ---------------------------------------------------------------------

/// config configures one endpoint.
struct config {
  /// service is the service code (RFC 4340 8.1.2): a client asks for it, a server accepts
  /// only Requests for it. 4294967295 is invalid.
  std::uint32_t service = 0;
  /// mtu is the largest datagram DCCP sends (the UDP payload); max_message is mtu less 24.
  std::size_t mtu = 1400;
  /// retransmit is the first interval of Request and Close retransmissions, doubled
  /// each time up to 64 s (RFC 4340 8.1.1 asks for 1 s).
  std::chrono::milliseconds retransmit{1000};
  /// max_requests bounds the Requests a client sends before it gives up.
  int max_requests = 8;
  /// partopen_ack is how often a client in PARTOPEN sends its Ack again (8.1.5: 200 ms).
  std::chrono::milliseconds partopen_ack{200};
  /// min_rto / initial_rto bound CCID 2's retransmission timeout (RFC 6298; RFC 4341 5
  /// uses TCP's: 1 s). The timeout halves nothing but the window: DCCP never resends data.
  std::chrono::milliseconds min_rto{1000};
  std::chrono::milliseconds initial_rto{1000};
  /// ack_delay is how long a receiver holds an acknowledgement that Ack Ratio has not
  /// made due yet.
  std::chrono::milliseconds ack_delay{20};
  /// timewait is how long an endpoint stays in TIMEWAIT (RFC 4340 says 2 MSL; a user-space
  /// endpoint over its own UDP socket needs far less).
  std::chrono::milliseconds timewait{1000};
  /// sequence_window is the Sequence Window this endpoint announces for the numbers it
  /// sends (feature 3; 32..2^20 here; RFC 4340's default is 100). CCID 2's window is
  /// kept at most half of it, so that acknowledgements of a full window stay valid
  /// (7.5.2 asks for a window well above the packets in flight).
  std::uint64_t sequence_window = 1000;
  /// ack_ratio is the Ack Ratio this endpoint asks of its peer as HC-Receiver (feature 5).
  std::uint16_t ack_ratio = 2;
  /// max_cwnd caps the congestion window in packets (and so the sender's state).
  std::uint32_t max_cwnd = 1024;
  /// receive_queue / receive_bytes bound the delivered messages nobody read yet; beyond
  /// them arriving data is not acknowledged (the sender sees a loss) and the next
  /// acknowledgement carries Slow Receiver.
  std::size_t receive_queue = 256;
  std::size_t receive_bytes = 1 << 20;
  /// max_history bounds the received packets an Ack Vector reports (and their state).
  std::size_t max_history = 2048;
  /// verify_checksum can be turned off for replay tools; always on in the pipeline.
  bool verify_checksum = true;
  /// iss fixes the initial sequence number (tests and replays); nullopt: random.
  std::optional<std::uint64_t> iss{};
};

/// state is the connection state (RFC 4340 8.4), plus the server's waiting state.
enum class state : std::uint8_t {
  closed,
  listen,
  request,
  respond,
  partopen,
  open,
  closereq,
  closing,
  timewait,
};
const char* to_string(state s) noexcept;

/// stats count what an engine saw and did.
struct stats {
  std::uint64_t packets_in = 0, packets_out = 0;
  std::uint64_t dropped_malformed = 0;    ///< failed decode (checksum, lengths, options)
  std::uint64_t dropped_invalid_seq = 0;  ///< outside the validity windows (each may draw a Sync)
  std::uint64_t dropped_duplicate = 0;
  std::uint64_t dropped_queue_full = 0;
  std::uint64_t syncs_sent = 0;
  std::uint64_t data_lost = 0;  ///< own data packets CCID 2 declared lost
  std::uint64_t timeouts = 0;   ///< CCID 2 retransmission timeouts
  std::uint64_t congestion_events = 0;
};

using clock = deadline::clock;
using time_point = clock::time_point;

/// engine is the sans-I/O DCCP endpoint of one connection. Feed it each datagram from
/// the peer (on_datagram) and call on_timer when next_deadline() has come; send every
/// next_output() datagram in order; take delivered messages with read(). Not
/// thread-safe; no I/O and no clock of its own (the caller passes the time).
class engine {
 public:
  engine() = default;
  /// client starts a connection: the first output is a Request.
  static engine client(const config& cfg, const endpoints& path, time_point now);
  /// server waits for a Request (state listen); `path` is from this end to the peer.
  static engine server(const config& cfg, const endpoints& path, time_point now);

  /// on_datagram processes one datagram from the peer. The result is for tests and
  /// statistics only: a malformed or out-of-window packet is dropped (the state stays
  /// usable; a Sync may be queued), a valid one returns its type.
  result<packet_type> on_datagram(const_buffer datagram, time_point now);
  /// on_timer runs every timer that is due at `now`.
  void on_timer(time_point now);
  /// next_deadline is when on_timer must run next; nullopt: no timer.
  std::optional<time_point> next_deadline() const noexcept;

  bool has_output() const noexcept { return !outbox_.empty(); }
  /// next_output takes the next datagram to send.
  std::vector<std::byte> next_output();

  /// can_send is true when a message may be sent now: the connection is open (or
  /// PARTOPEN) and CCID 2's window has room.
  bool can_send() const noexcept;
  /// send queues `message` as one DataAck packet (every data packet also acknowledges).
  /// Errors, nothing queued: the connection's error once it failed, closed after
  /// close(), message_too_large above max_message(), invalid_argument when can_send() is
  /// false (not open yet, or CCID 2's window is full: the caller waits, see connection).
  result<void> send(const_buffers message, time_point now);
  /// max_message is the largest message one packet carries.
  std::size_t max_message() const noexcept;

  /// has_message is true when read() will return a message.
  bool has_message() const noexcept { return !inbox_.empty(); }
  /// read moves the next delivered message into `buf`. Errors: message_too_large (the
  /// message stays for a larger buffer), end_of_stream once the peer closed and every
  /// message was read, the connection's error; timed_out when nothing is there yet (the
  /// driver waits).
  result<std::size_t> read(mutable_buffer buf);
  /// next_message_size is the size of the message read() returns next (0 when none).
  std::size_t next_message_size() const noexcept { return inbox_.empty() ? 0 : inbox_.front().size(); }

  /// close starts the teardown: a client sends Close, a server CloseReq (8.3); in
  /// REQUEST/RESPOND the connection is reset. Idempotent.
  void close(time_point now);
  /// abort resets the connection (Reset: aborted) and closes it at once.
  void abort(time_point now);

  state current() const noexcept { return state_; }
  /// established is true once data may flow (PARTOPEN for a client, OPEN).
  bool established() const noexcept;
  /// finished is true when nothing more will happen (CLOSED or TIMEWAIT).
  bool finished() const noexcept { return state_ == state::closed || state_ == state::timewait; }
  /// failure is the connection's error (empty while it is fine or closed normally).
  std::error_code failure() const noexcept { return error_; }
  bool peer_closed() const noexcept { return peer_closed_; }
  /// close_requested is true once close() or abort() was called (or the peer closed).
  bool close_requested() const noexcept { return close_requested_; }

  // Introspection for tests, tools and docs.
  std::uint32_t cwnd() const noexcept { return cwnd_; }
  std::uint32_t ssthresh() const noexcept { return ssthresh_; }
  std::uint32_t pipe() const noexcept { return pipe_; }
  std::chrono::microseconds rto() const noexcept { return rto_; }
  std::uint64_t gss() const noexcept { return gss_; }
  std::uint64_t gsr() const noexcept { return gsr_; }
  /// ack_ratio is how many of our data packets the peer acknowledges at once (confirmed);
  /// own_ack_ratio how many of the peer's we acknowledge at once.
  std::uint16_t ack_ratio() const noexcept { return peer_ack_ratio_; }
  std::uint16_t own_ack_ratio() const noexcept { return own_ack_ratio_; }
  std::uint8_t ccid() const noexcept { return ccid_; }
  bool ack_vector_on() const noexcept { return send_ack_vector_; }
  /// ack_history is how many received packets the next Ack Vector may report.
  std::size_t ack_history() const noexcept { return history_.size(); }
  const dccp::stats& statistics() const noexcept { return stats_; }

 private:
  struct sent_data {
    std::uint64_t seq;
    time_point when;
    bool acked = false;
    bool lost = false;
  };
  struct ack_record {
    std::uint64_t seq;      // our packet that carried the Ack Vector
    std::uint64_t ack_num;  // the acknowledgement number it carried
  };
  struct pending_change {
    std::uint8_t kind;
    std::uint8_t feature;
    std::vector<std::uint8_t> values;
  };

  void emit(packet_type type, const_buffers payload, time_point now);
  void emit_reset(reset_code code, std::uint64_t seq, std::uint64_t ack, time_point now);
  void emit_sync(packet_type type, std::uint64_t ack, time_point now);
  bool reply_allowed(time_point now);
  std::vector<std::uint8_t> build_options(packet_type type, time_point now, std::size_t budget);
  void fail(std::error_code ec);
  void enter(state s, time_point now);
  bool seq_valid(const header& h) const noexcept;
  void record_received(std::uint64_t seq);
  void process_features(const parsed_options& o, time_point now);
  void process_acks(const header& h, const parsed_options& o, time_point now);
  void on_data(const header& h, const_buffer payload, time_point now);
  void take_rtt_sample(std::chrono::microseconds sample);
  void congestion_event(time_point now);
  void arm_rto(time_point now);
  void on_rto();
  void append_ack_vector(std::vector<std::uint8_t>& options, std::size_t budget);
  std::uint32_t max_window() const noexcept;
  void adjust_ack_ratio();
  void handle_listen(const decoded& d, const parsed_options& o, time_point now);

  config cfg_{};
  endpoints path_{};  // from this end to the peer
  bool is_server_ = false;
  state state_ = state::closed;
  std::error_code error_{};
  bool peer_closed_ = false;
  bool close_requested_ = false;

  // Sequence state (RFC 4340 7.1).
  std::uint64_t iss_ = 0, isr_ = 0, gss_ = 0, gsr_ = 0, gar_ = 0;
  bool have_gar_ = false;
  std::uint64_t local_window_ = 1000;  // Sequence Window/B: what the peer validates our numbers with
  std::uint64_t peer_window_ = 100;    // what we validate the peer's numbers with

  // Feature negotiation (RFC 4340 6).
  std::vector<pending_change> changes_;    // sent until confirmed
  std::vector<std::uint8_t> confirms_;     // encoded Confirm options for the next packet
  std::vector<std::uint8_t> init_cookie_;  // echoed by a client in PARTOPEN
  std::uint8_t ccid_ = 2;
  std::uint16_t peer_ack_ratio_ = 2;  // how many of our data packets the peer acks at once
  std::uint16_t own_ack_ratio_ = 2;   // how many of the peer's data packets we ack at once
  bool send_ack_vector_ = false;      // we send Ack Vectors (the peer's HC-Sender asked)

  // Timers.
  std::optional<time_point> retransmit_at_;
  std::chrono::milliseconds retransmit_interval_{};
  int retransmissions_ = 0;
  std::optional<time_point> rto_at_;
  std::optional<time_point> ack_at_;
  std::optional<time_point> timewait_until_;
  std::optional<time_point> last_sync_;
  std::optional<time_point> last_reset_;
  bool seen_data_ = false;
  int partopen_answers_ = 0;

  // CCID 2 sender (RFC 4341 5).
  std::uint32_t cwnd_ = 3;
  std::uint32_t ssthresh_ = 0xffff;
  std::uint32_t pipe_ = 0;
  std::uint32_t acked_in_window_ = 0;
  std::uint64_t recovery_until_ = 0;  // no second reduction for losses sent before this
  bool in_recovery_ = false;
  std::optional<time_point> slow_receiver_until_;
  std::deque<sent_data> sent_;
  std::chrono::microseconds srtt_{0}, rttvar_{0}, rto_{1000000};
  bool have_rtt_ = false;

  // CCID 2 receiver: what arrived in [history_base_, gsr_] (1: received), for Ack Vectors.
  std::uint64_t history_base_ = 0;
  std::deque<std::uint8_t> history_;
  std::deque<ack_record> acks_sent_;
  std::uint32_t data_since_ack_ = 0;
  bool slow_receiver_pending_ = false;
  std::optional<std::uint32_t> echo_timestamp_;
  time_point echo_received_{};

  std::deque<std::vector<std::byte>> inbox_;
  std::size_t inbox_bytes_ = 0;
  std::deque<std::vector<std::byte>> outbox_;
  dccp::stats stats_{};
  time_point start_{};
};

// -- the driver ----------------------------------------------------------------------------

/// connection is a DCCP connection over the message layer `Lower`, which it owns; the
/// contract is core/stream.hpp's message_socket. Made by dccp::connect and dccp::accept.
/// One send and one recv may be pending at the same time (from different tasks); the
/// connection makes progress (acknowledgements, timers) while either is pending, so a
/// program that only sends still has its window opened by the peer's acks.
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower>
class connection {
 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, row);

  connection(Lower lower, engine e) : lower_(std::move(lower)), engine_(std::move(e)) {}
  connection(connection&& o) noexcept : lower_(std::move(o.lower_)), engine_(std::move(o.engine_)) {}
  connection& operator=(connection&&) = delete;

  /// send sends `message` as one packet. It waits while CCID 2's congestion window is
  /// full (back-pressure) and until `dl`. Errors, nothing sent: message_too_large above
  /// max_message(), timed_out / operation_canceled, closed after close(), broken once
  /// the peer closed or the connection ended, dccp::error (a broken) after a reset or a
  /// failed handshake; then the lower layer's errors.
  task<result<void>> send(const_buffers message, deadline dl) {
    if (closed_) co_return errc::closed;
    if (message.total_size() > engine_.max_message()) co_return errc::message_too_large;
    while (!engine_.can_send()) {
      if (engine_.close_requested() && !engine_.failure())
        co_return engine_.peer_closed() ? errc::broken : errc::closed;
      if (engine_.finished() || !engine_.established()) {
        if (auto ec = engine_.failure()) co_return unexpected(ec);
        if (engine_.finished() || engine_.current() == state::closing || engine_.current() == state::closereq)
          co_return errc::broken;
      }
      auto step = co_await pump(dl);
      if (!step) co_return step;
    }
    auto sent = engine_.send(message, clock::now());
    if (!sent) co_return sent;
    co_return co_await flush(dl);
  }

  /// recv returns the next message. Errors: message_too_large (the message stays),
  /// end_of_stream after the peer closed, dccp::error for a reset, timed_out,
  /// operation_canceled, closed, the lower layer's errors.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) {
    if (closed_) co_return errc::closed;
    for (;;) {
      auto n = engine_.read(buf);
      if (n || n.error() != errc::timed_out) {
        (void)co_await flush(dl);
        co_return n;
      }
      auto step = co_await pump(dl);
      if (!step) co_return unexpected(step.error());
    }
  }

  // No shutdown_write: DCCP has no half-close (RFC 4340 8.3 ends a connection in both
  // directions at once), so a stack over dccp answers not_supported, as over udp; close()
  // ends the connection.

  /// close runs the teardown (Close or CloseReq until the Reset, under `dl`), then
  /// closes the lower layer.
  task<result<void>> close(deadline dl) {
    if (closed_) co_return errc::closed;
    engine_.close(clock::now());
    (void)co_await flush(dl);
    while (!engine_.finished()) {
      auto step = co_await pump(dl);
      if (!step) break;
    }
    closed_ = true;
    co_return co_await lower_.close(dl);
  }

  const Lower& next_layer() const noexcept { return lower_; }
  Lower& next_layer() noexcept { return lower_; }
  std::size_t max_message() const noexcept { return engine_.max_message(); }
  properties runtime_capabilities() const {
    properties below = Lower::capabilities;
    if constexpr (requires { lower_.runtime_capabilities(); }) below = lower_.runtime_capabilities();
    auto out = stack_on(below, row);
    out.max_message = engine_.max_message();
    return out;
  }
  engine& state_machine() noexcept { return engine_; }

  /// handshake drives the engine until the connection is established (or fails).
  task<result<void>> handshake(deadline dl) {
    (void)co_await flush(dl);
    while (!engine_.established()) {
      if (engine_.finished()) {
        if (auto ec = engine_.failure()) co_return unexpected(ec);
        co_return errc::broken;
      }
      auto step = co_await pump(dl);
      if (!step) co_return step;
    }
    co_return result<void>{};
  }

 private:
  static constexpr std::size_t receive_size = 65536;

  /// pump makes progress once: receives one datagram (or runs the timers that came due)
  /// when no other task is receiving; otherwise waits for that task's progress.
  task<result<void>> pump(deadline dl) {
    auto timer = engine_.next_deadline();
    auto wait = dl;
    if (timer) wait = deadline::earlier(dl, deadline::at(*timer));
    if (reading_) {
      auto woke = co_await progress_.wait(wait);
      if (!woke && woke.error() == errc::timed_out && wait != dl) {
        engine_.on_timer(clock::now());
        co_return co_await flush(dl);
      }
      co_return woke;
    }
    reading_ = true;
    if (buffer_.size() < receive_size) buffer_.resize(receive_size);
    auto n = co_await lower_.recv(mutable_buffer(buffer_), wait);
    reading_ = false;
    result<void> out{};
    if (n) {
      (void)engine_.on_datagram(const_buffer(buffer_.data(), *n), clock::now());
    } else if (n.error() == errc::timed_out && wait != dl) {
      engine_.on_timer(clock::now());
    } else if (n.error() != errc::message_too_large) {
      out = unexpected(n.error());
    }
    auto sent = co_await flush(dl);
    progress_.set();
    progress_.reset();
    if (!out) co_return out;
    co_return sent;
  }

  /// flush sends every datagram the engine produced, in order (one task at a time: a
  /// second caller leaves them to the first).
  task<result<void>> flush(deadline dl) {
    if (flushing_) co_return result<void>{};
    flushing_ = true;
    result<void> out{};
    while (engine_.has_output()) {
      auto datagram = engine_.next_output();
      auto sent = co_await lower_.send(const_buffer(datagram), dl);
      // A datagram lost to a full socket or an ICMP error is a loss DCCP survives.
      if (!sent && (sent.error() == errc::timed_out || sent.error() == errc::operation_canceled ||
                    sent.error() == errc::closed)) {
        out = sent;
        break;
      }
    }
    flushing_ = false;
    co_return out;
  }

  Lower lower_;
  engine engine_;
  std::vector<std::byte> buffer_;
  event progress_;
  bool reading_ = false;
  bool flushing_ = false;
  bool closed_ = false;
};

namespace detail {

template <class Lower>
endpoints path_of(const Lower& lower) {
  auto local = query<fact::local_address>(lower);
  auto peer = query<fact::peer_address>(lower);
  return endpoints::from(local ? *local : address{}, peer ? *peer : address{});
}

template <class Lower>
task<result<connection<Lower>>> establish(Lower lower, engine e, deadline dl) {
  connection<Lower> c(std::move(lower), std::move(e));
  auto done = co_await c.handshake(dl);
  if (!done) {
    (void)co_await c.next_layer().close(dl);
    co_return unexpected(done.error());
  }
  co_return std::move(c);
}

}  // namespace detail

/// connect runs a client handshake over `lower` (closed on failure). Errors: timed_out,
/// dccp::error (refused, bad_service_code, handshake_failed, ...), the lower layer's.
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower> task<result<connection<Lower>>> connect(
    Lower lower, config cfg, deadline dl) {
  auto path = detail::path_of(lower);
  if constexpr (requires { lower.max_message(); })
    cfg.mtu = std::min<std::size_t>(cfg.mtu, lower.max_message());
  auto e = engine::client(cfg, path, clock::now());
  return detail::establish(std::move(lower), std::move(e), dl);
}

/// accept runs a server handshake over `lower`, whose first datagram is the peer's
/// Request (closed on failure).
template <class Lower>
requires stacks_on<Lower, layer> && message_socket<Lower> task<result<connection<Lower>>> accept(
    Lower lower, config cfg, deadline dl) {
  auto path = detail::path_of(lower);
  if constexpr (requires { lower.max_message(); })
    cfg.mtu = std::min<std::size_t>(cfg.mtu, lower.max_message());
  auto e = engine::server(cfg, path, clock::now());
  return detail::establish(std::move(lower), std::move(e), dl);
}

/// request_gate is the admission gate (core/datagram.hpp) a DCCP server installs on the
/// datagram listener below it: only a well-formed Request for `cfg.service` gets the
/// listener to keep anything for its sender; everything else is refused without an
/// answer. The checksum is checked by the connection (the gate does not know the local
/// address of the pseudo-header).
admission_gate request_gate(const config& cfg);

/// accepting is the handshake dccp::listen runs on each accepted connection.
struct accepting {
  config cfg;
  template <class Lower>
  auto operator()(Lower lower, deadline dl) const {
    return dccp::accept(std::move(lower), cfg, dl);
  }
};

/// listen makes a listener of DCCP connections out of a listener of message connections
/// (udp::listener): request_gate first, then each accepted connection's handshake as
/// its own task under `options` (timeout and max_pending bound what Requests that never
/// complete may cost).
template <listener Lower>
handshaking_listener<Lower, accepting> listen(Lower lower, config cfg, handshake_options options) {
  if constexpr (requires { lower.set_gate(admission_gate{}); }) lower.set_gate(request_gate(cfg));
  return handshaking_listener<Lower, accepting>(std::move(lower), accepting{std::move(cfg)}, options);
}

extern template class connection<any_message>;

}  // namespace strata::dccp

template <>
struct std::is_error_code_enum<strata::dccp::error> : std::true_type {};
