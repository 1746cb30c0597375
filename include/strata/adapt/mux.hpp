// mux — many independent byte streams over one reliable, ordered byte stream.
//
// row: requires stream reliable ordered (message transports below are not supported yet)
//      provides connection-based streams, multiplexed
//      passes   reliable ordered dup_free secure authenticated domain topology sharing
//               direction congestion_controlled priority_ordered
// spec: tcp:127.0.0.1:7000 | mux            (connector: the first stream it opens)
//       tcp-listen:127.0.0.1:7000 | mux     (listener: the first stream the peer opens)
//
// The wire format is strata's own (docs/protocols/mux.md): 9-byte frame headers (length
// 24 bit, type, flags, stream id 32 bit); DATA (SYN opens a stream, FIN half-closes it),
// WINDOW_UPDATE, RST, PING and GOAWAY. The codec is sans-I/O (mux::decoder and the
// encode_* functions); mux::session is the driver: a reader task, a writer task that
// coalesces queued frames into large writes, per-stream receive buffers bounded by the
// window granted (credit goes back as the reader consumes), stream limits, keepalive
// pings with a dead-peer deadline and GOAWAY for graceful shutdown.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::mux {

/// row is mux's capability declaration.
inline constexpr capability_row row{
    .name = "mux",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop::connection | prop::multiplexed,
    .provided_value = {.connection = connection::based, .multiplexed = true},
    .passed = prop_set::all() - (prop::connection | prop::multiplexed | prop::fd_passing),
};

/// layer names the row for the stacks_on concept.
struct layer {
  static constexpr const capability_row& row = mux::row;
};

/// error is what goes wrong in mux, each code refining a strata::errc.
enum class error {
  bad_frame_type = 1,  ///< protocol_error: an unknown frame type
  bad_flags,           ///< protocol_error: flags the frame type does not allow
  bad_stream_id,       ///< protocol_error: a stream id the frame type or the peer's side does not allow
  bad_length,          ///< protocol_error: a control frame of the wrong length
  frame_too_large,     ///< protocol_error: a DATA frame over the decoder's max_frame
  flow_control,        ///< protocol_error: the peer sent more than the window it was granted
  stream_reset,        ///< broken: the stream was reset (by the peer or locally)
  refused_stream,      ///< broken: the peer refused the stream (stream limit, GOAWAY)
  going_away,          ///< broken: the session is shutting down (GOAWAY) or closed
  peer_dead,           ///< broken: the peer answered no keepalive ping in time
  control_flood,       ///< protocol_error: the peer made replies (PING ACKs, RSTs, credit) pile up unread
};

/// category is the std::error_category of mux::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

// -- the codec ---------------------------------------------------------------------------

/// frame_type is the type byte of a frame header.
enum class frame_type : std::uint8_t { data = 0, window_update = 1, rst = 2, ping = 3, goaway = 4 };

/// flags of a frame header: syn and fin on DATA, ack on PING.
inline constexpr std::uint8_t flag_syn = 0x1;
inline constexpr std::uint8_t flag_fin = 0x2;
inline constexpr std::uint8_t flag_ack = 0x4;

inline constexpr std::size_t header_size = 9;
/// initial_window is every stream's window in each direction when it opens; a receiver
/// grants more with WINDOW_UPDATE.
inline constexpr std::uint32_t initial_window = 256 * 1024;
/// max_window bounds a stream's send window (more credit than this is a flow_control error).
inline constexpr std::uint64_t max_window = (std::uint64_t{1} << 31) - 1;

/// frame is one decoded frame. `payload` views the decoder's input (DATA only); `value`
/// is the window increment (WINDOW_UPDATE), the error code (RST, GOAWAY) or the opaque
/// value (PING); `last_id` is GOAWAY's last accepted stream id.
struct frame {
  frame_type type = frame_type::data;
  std::uint8_t flags = 0;
  std::uint32_t stream_id = 0;
  std::uint64_t value = 0;
  std::uint32_t last_id = 0;
  const_buffer payload{};
  std::size_t size = 0;  ///< bytes the frame occupies in the input (header + payload)
};

/// decoder is the sans-I/O receive side: it looks at the unconsumed input, which starts
/// at a frame boundary, and decodes the first frame. Keeps no reference to the input.
/// Errors are sticky (no resynchronisation).
class decoder {
 public:
  explicit decoder(std::size_t max_frame = 64 * 1024) noexcept : max_frame_(max_frame) {}
  /// decode: nullopt when the first frame is incomplete, else the frame (the caller
  /// consumes frame.size bytes). Errors: mux::error codes (bad_frame_type, bad_flags,
  /// bad_stream_id, bad_length, frame_too_large).
  result<std::optional<frame>> decode(const_buffer input) noexcept;
  bool failed() const noexcept { return static_cast<bool>(failed_); }

 private:
  std::size_t max_frame_;
  std::error_code failed_{};
};

/// encode_header writes a frame header to `out`.
void encode_header(frame_type type, std::uint8_t flags, std::uint32_t stream_id, std::size_t length,
                   std::span<std::byte, header_size> out) noexcept;
/// append_data appends a DATA frame to `out` (payload at most 2^24 - 1 bytes).
void append_data(std::string& out, std::uint32_t stream_id, std::uint8_t flags, const_buffer payload);
/// append_window_update, append_rst, append_ping and append_goaway append control frames.
void append_window_update(std::string& out, std::uint32_t stream_id, std::uint32_t increment);
void append_rst(std::string& out, std::uint32_t stream_id, std::uint32_t code);
void append_ping(std::string& out, std::uint8_t flags, std::uint64_t opaque);
void append_goaway(std::string& out, std::uint32_t last_id, std::uint32_t code);

// -- the session -------------------------------------------------------------------------

/// role says which ids a side opens: the client odd ones, the server even ones.
enum class role : std::uint8_t { client, server };

/// options tune a session.
struct options {
  /// window is each stream's receive window: what the peer may send ahead of the reader
  /// (and the most a stream buffers). At least initial_window.
  std::size_t window = initial_window;
  /// max_frame is the largest DATA payload sent and accepted.
  std::size_t max_frame = 16 * 1024;
  /// max_streams bounds the streams the peer has open at once (accepted or waiting to be);
  /// excess opens are refused with RST (refused_stream).
  std::size_t max_streams = 256;
  /// keepalive: a PING goes after this much silence from the peer; 0 turns it off.
  std::chrono::milliseconds keepalive{0};
  /// dead_after: the session fails with peer_dead when nothing arrives this long after a ping.
  std::chrono::milliseconds dead_after{10'000};
  /// write_timeout bounds each write to the transport.
  std::chrono::milliseconds write_timeout{30'000};
  /// send_buffer: writers wait while this many bytes are queued for the transport.
  std::size_t send_buffer = 1 << 20;
  /// control_backlog bounds the replies the reader queues on its own (PING ACKs, RSTs of
  /// refused or misbehaving streams, credit for data dropped on closed streams) beyond
  /// send_buffer + max_frame: a peer that keeps sending such frames without reading the
  /// answers fails the session with control_flood instead of growing the queue forever.
  std::size_t control_backlog = 64 * 1024;
};

struct session_state;
struct stream_state;

/// stream is one logical stream: a byte_stream (core/stream.hpp) of its own, with
/// reset(). It keeps its session's state alive. One reader and one writer at a time.
class stream {
 public:
  static constexpr properties capabilities{.connection = connection::based,
                                           .unit = unit::stream,
                                           .reliable = true,
                                           .ordered = true,
                                           .multiplexed = true};

  stream() noexcept;
  stream(stream&&) noexcept;
  stream& operator=(stream&&) noexcept;
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  /// ~stream resets a stream that was not closed.
  ~stream();

  /// read_some: 1..size bytes; end_of_stream after the peer's FIN. Errors: stream_reset,
  /// refused_stream, going_away, peer_dead, the session's failure, timed_out /
  /// operation_canceled (nothing consumed), closed.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// write queues every byte in DATA frames as the peer's window allows, waiting while the
  /// window is closed or the session's send buffer is full. Errors as read_some.
  task<result<void>> write(const_buffers bufs, deadline dl);
  /// shutdown_write sends FIN: the peer reads end_of_stream after the last byte.
  task<result<void>> shutdown_write(deadline dl);
  /// close sends FIN and releases the stream without waiting: what the peer still sends
  /// until its FIN is dropped by the session (its credit returned at once), so the
  /// stream counts as open until then. Afterwards every call fails with closed.
  task<result<void>> close(deadline dl);
  /// reset abandons the stream both ways at once: RST goes to the peer.
  void reset() noexcept;

  std::uint32_t id() const noexcept;
  properties runtime_capabilities() const noexcept { return capabilities; }

 private:
  friend class session;
  friend struct session_state;
  stream(std::shared_ptr<session_state> s, std::shared_ptr<stream_state> st) noexcept;
  std::shared_ptr<session_state> session_;
  std::shared_ptr<stream_state> state_;
};

static_assert(byte_stream<stream>);

/// stats counts what a session did.
struct stats {
  std::uint64_t opened = 0;    ///< streams this side opened
  std::uint64_t accepted = 0;  ///< streams the peer opened that were admitted
  std::uint64_t refused = 0;   ///< peer streams refused (limit, GOAWAY)
  std::uint64_t writes = 0;    ///< writes to the transport
  std::uint64_t pings = 0;     ///< keepalive pings sent
  std::uint64_t dropped = 0;   ///< peer streams reset before they were accepted, never handed out
};

/// session runs mux over `transport`, which it owns. Construct it on the thread whose
/// event loop runs it: the constructor starts the reader, writer and keepalive tasks.
/// The session's state lives until the session and all its streams are gone.
class session {
 public:
  session(any_stream transport, role r, options o);
  session(any_stream transport, role r);
  session(session&&) noexcept;
  session& operator=(session&&) noexcept;
  /// ~session sends GOAWAY; streams still open go on working.
  ~session();

  /// open starts a new stream (SYN goes at once). Errors: going_away (either side sent
  /// GOAWAY), the session's failure, closed.
  task<result<stream>> open(deadline dl);
  /// accept waits for the next stream the peer opens. Errors: going_away once GOAWAY
  /// went either way and no opened stream waits, the session's failure (end_of_stream when
  /// the peer closed the transport), timed_out, operation_canceled, closed.
  task<result<stream>> accept(deadline dl);
  /// go_away sends GOAWAY: no new streams either way, existing ones finish.
  void go_away();
  /// close: GOAWAY, waits until every stream finished or `dl`, then fails the rest with
  /// going_away, flushes and closes the transport.
  task<result<void>> close(deadline dl);
  /// failure is why the session stopped (empty while it runs).
  std::error_code failure() const noexcept;
  /// open_streams counts streams not finished in both directions.
  std::size_t open_streams() const noexcept;
  stats counters() const noexcept;

 private:
  std::shared_ptr<session_state> state_;
};

}  // namespace strata::mux

template <>
struct std::is_error_code_enum<strata::mux::error> : std::true_type {};
