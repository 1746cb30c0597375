// websocket — message boundaries, message kinds (text, binary) and a closing handshake on
// an HTTP/1.1 connection that switched protocols (RFC 6455), with permessage-deflate
// compression (RFC 7692).
//
// row: requires stream reliable ordered
//      provides message, max_message (from the options), reliable, ordered
//      passes   connection dup_free secure authenticated domain topology sharing direction
//               multiplexed congestion_controlled priority_ordered
//               (not fd_passing: frames cannot carry descriptors)
// spec: tcp:127.0.0.1:8080 | websocket(path=/chat, protocols="chat,superchat", deflate=1)
//       tcp-listen:127.0.0.1:8080 | websocket(protocols=chat, max=16m)
//
// RFC 6455: section 4 (opening handshake, Sec-WebSocket-Key/Accept, version 13,
// subprotocols), 5.1-5.8 (framing, client masking, fragmentation, control frames,
// ping/pong), 7 (closing handshake, status codes, failing the connection), 8.1 (UTF-8
// of text). RFC 7692: section 5 (extension negotiation), 7 (permessage-deflate and its
// four parameters), 7.2.3 (the trailing 00 00 ff ff).
//
// The protocol is sans-I/O (frame header codec, masking, an incremental UTF-8 validator,
// receiver: bytes in, messages and control frames out; sender: messages in, frames out;
// the handshake's key, accept value and extension negotiation as plain functions) under
// one thin coroutine driver, websocket::connection, a message_socket over any_stream.
// accept() runs the server's opening handshake inside an http1 handler, connect() the
// client's over http1::client. No zlib or OpenSSL type appears here.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "strata/app/http1.hpp"
#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::websocket {

/// row is websocket's capability declaration. Messages are whole and never split or
/// merged; reliable and ordered are restated because a message layer built on a stream
/// keeps them.
inline constexpr capability_row row{
    .name = "websocket",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop::unit | prop::max_message | prop::reliable | prop::ordered,
    .provided_value = {.unit = unit::message, .reliable = true, .ordered = true, .max_message = 1 << 20},
    .passed = prop_set::all() -
              (prop::unit | prop::max_message | prop::reliable | prop::ordered | prop::fd_passing),
};

/// layer names the row for the stacks_on concept.
struct layer {
  static constexpr const capability_row& row = websocket::row;
};

/// error is what goes wrong in WebSocket, each code refining a strata::errc (compare with
/// `ec == errc::protocol_error`). close_code_for gives the status code a connection is
/// closed with when it fails with the code.
enum class error {
  reserved_bits = 1,  ///< protocol_error (1002): RSV bits no negotiated extension defines
  reserved_opcode,    ///< protocol_error (1002): opcode 3-7 or 11-15
  bad_control_frame,  ///< protocol_error (1002): a control frame fragmented or over 125 bytes
  bad_continuation,  ///< protocol_error (1002): a continuation outside a message, or a new message inside one
  bad_masking,       ///< protocol_error (1002): a client frame unmasked, or a server frame masked
  bad_length,        ///< protocol_error (1002): a 64-bit length with its top bit set
  bad_close_frame,   ///< protocol_error (1002): a close payload of one byte, or an invalid status code
  invalid_utf8,      ///< protocol_error (1007): a text message or close reason that is not UTF-8
  bad_compressed_data,    ///< protocol_error (1007): permessage-deflate data that does not inflate
  message_too_big,        ///< message_too_large (1009): a message over max_message (inflated, for deflate)
  truncated,              ///< broken (1006): the connection ended without a close frame
  bad_handshake,          ///< protocol_error: a malformed upgrade request (400) or response
  version_not_supported,  ///< protocol_error: Sec-WebSocket-Version other than 13 (426)
  upgrade_required,       ///< protocol_error: a request without "Upgrade: websocket" (426)
  handshake_refused,      ///< protocol_error: the server answered with a status other than 101
  bad_accept,             ///< protocol_error: Sec-WebSocket-Accept does not match the key sent
  bad_negotiation,        ///< protocol_error: a subprotocol or extension the client did not offer, or bad
                          ///< parameters
};

/// category is the std::error_category of websocket::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

/// close_code names the status codes of RFC 6455 section 7.4.1 (and IANA's 1012-1014).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;  ///< never sent: the close frame had no code
inline constexpr std::uint16_t abnormal = 1006;   ///< never sent: the connection ended without a close frame
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t message_too_big = 1009;
inline constexpr std::uint16_t mandatory_extension = 1010;
inline constexpr std::uint16_t internal_error = 1011;
}  // namespace close_code

/// close_code_for is the status code a connection failing with `e` is closed with:
/// 1002, 1007 (UTF-8, inflate) or 1009; 1002 for the handshake's codes.
std::uint16_t close_code_for(error e) noexcept;

/// valid_close_code says whether `code` may travel in a close frame (RFC 6455 7.4):
/// 1000-1003, 1007-1014, 3000-4999. 1005 and 1006 are never sent.
bool valid_close_code(std::uint16_t code) noexcept;

// -- frames ------------------------------------------------------------------------------

/// opcode is a frame's type (RFC 6455 5.2).
enum class opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xa,
};

/// message_kind is what a data message holds: UTF-8 text or bytes.
enum class message_kind : std::uint8_t { text, binary };

/// role is the end of the connection: clients mask what they send, servers do not.
enum class role : std::uint8_t { client, server };

/// mask_key is a frame's 4-byte masking key, in wire order.
using mask_key = std::array<std::byte, 4>;

/// max_header_size is the longest frame header: 2 + 8 (length) + 4 (key).
inline constexpr std::size_t max_header_size = 14;
/// max_control_payload is the largest payload of a control frame.
inline constexpr std::size_t max_control_payload = 125;

/// frame_header is a frame's header fields.
struct frame_header {
  bool fin = true;
  bool rsv1 = false;  ///< permessage-deflate: set on the first frame of a compressed message
  bool rsv2 = false;
  bool rsv3 = false;
  websocket::opcode opcode = opcode::binary;
  bool masked = false;
  mask_key key{};
  std::uint64_t length = 0;
};

/// encode_header writes `h` into `out` and returns its size (2..14 bytes), using the
/// shortest length encoding.
std::size_t encode_header(const frame_header& h, std::span<std::byte, max_header_size> out) noexcept;

/// apply_mask XORs `in` with `key`, starting at byte `phase` (0..3) of the key, into
/// `out` (out.size() >= in.size(); `out` may be `in` itself for masking in place) and
/// returns the phase after the last byte. Works 16 bytes per step (8 for the tail).
/// Masking and unmasking are the same operation.
std::size_t apply_mask(const_buffer in, std::byte* out, mask_key key, std::size_t phase = 0) noexcept;

/// mask_keys hands out client masking keys: 4 fresh random bytes per frame, taken from
/// OpenSSL's CSPRNG 64 keys at a time. A seeded instance gives a fixed sequence instead
/// (tests, fuzzing; never on a real connection: RFC 6455 10.3).
class mask_keys {
 public:
  mask_keys() = default;
  explicit mask_keys(std::uint64_t seed) noexcept : seeded_(true), state_(seed) {}
  mask_key next();

 private:
  std::array<std::byte, 256> pool_{};
  std::size_t used_ = 256;
  bool seeded_ = false;
  std::uint64_t state_ = 0;
};

/// utf8_validator checks UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
/// above U+10FFFF) fed in pieces; a code point may be split across pieces. Once invalid
/// it stays invalid. ASCII runs are checked 8 bytes per step.
class utf8_validator {
 public:
  /// feed checks the next bytes; false once the text so far cannot be UTF-8.
  bool feed(const_buffer bytes) noexcept;
  /// complete: everything fed is valid and no code point is cut short.
  bool complete() const noexcept { return !failed_ && remaining_ == 0; }
  bool failed() const noexcept { return failed_; }
  void reset() noexcept { *this = utf8_validator{}; }

 private:
  std::uint8_t remaining_ = 0;  // continuation bytes still expected
  std::uint8_t lower_ = 0x80;   // bounds of the next continuation byte
  std::uint8_t upper_ = 0xbf;
  bool failed_ = false;
};

/// is_utf8 checks a whole text.
bool is_utf8(const_buffer bytes) noexcept;

// -- permessage-deflate (RFC 7692) ---------------------------------------------------------

/// deflate_options say whether to compress and what to ask of the peer. The names are
/// from this end's point of view; the handshake maps them to the RFC's server_/client_
/// parameters by role.
struct deflate_options {
  bool enabled = false;                   ///< client: offer permessage-deflate; server: accept an offer
  bool no_context_takeover = false;       ///< our compressor starts afresh for every message
  bool peer_no_context_takeover = false;  ///< ask the peer's compressor to do the same
  int max_window_bits = 15;               ///< our compressor's window, 9..15 (zlib cannot deflate with 8)
  int peer_max_window_bits = 15;          ///< ask the peer for at most this window, 8..15 (15: ask nothing)
  int level = 6;                          ///< zlib compression level, 1..9
  std::size_t min_size = 0;               ///< messages shorter than this are sent uncompressed
};

/// deflate_params are what the handshake agreed, from this end's point of view.
struct deflate_params {
  bool enabled = false;
  bool no_context_takeover = false;       ///< our compressor is reset after every message
  bool peer_no_context_takeover = false;  ///< the peer's is: our inflater is reset too
  int window_bits = 15;                   ///< our compressor's window
  int peer_window_bits = 15;              ///< the peer's (our inflater's) window
  int level = 6;
  std::size_t min_size = 0;
};

/// deflate_offer is the client's Sec-WebSocket-Extensions value for `o` (RFC 7692 7.1):
/// "permessage-deflate; client_max_window_bits" plus what `o` asks.
std::string deflate_offer(const deflate_options& o);

/// deflate_answer is a server's choice among the client's offers.
struct deflate_answer {
  deflate_params params;  ///< what the server's connection uses
  std::string response;   ///< the Sec-WebSocket-Extensions value to answer with
};

/// negotiate_deflate picks the first permessage-deflate offer in `offers` (every
/// Sec-WebSocket-Extensions value of the request, in order) that the server can accept
/// under `o`; offers with unknown, repeated or malformed parameters, or asking for an
/// 8-bit server window, are declined. nullopt: none accepted (or `o` disables it).
std::optional<deflate_answer> negotiate_deflate(std::span<const std::string_view> offers,
                                                const deflate_options& o);

/// accept_deflate checks the server's response `value` to the offer deflate_offer(o)
/// made and returns the client's parameters. Errors: bad_negotiation (unknown, repeated
/// or out-of-range parameters, a window larger than asked for, an 8-bit client window).
result<deflate_params> accept_deflate(std::string_view value, const deflate_options& o);

namespace detail {
struct deflater;
struct inflater;
struct deflater_deleter {
  void operator()(deflater* d) const noexcept;
};
struct inflater_deleter {
  void operator()(inflater* i) const noexcept;
};
}  // namespace detail

// -- receiving ---------------------------------------------------------------------------

/// receive_limits bound what a peer can make the receiver hold.
struct receive_limits {
  std::size_t max_message = 1 << 20;  ///< a message's payload (inflated); 1009 above
};

/// receiver is the sans-I/O receive side: fed the unconsumed bytes of the connection, it
/// decodes one frame at a time, unmasks it in place, checks every rule of RFC 6455 5
/// (and RSV1 for deflate), reassembles fragments, inflates compressed messages (never
/// past max_message: a deflate bomb costs max_message bytes at most), validates text and
/// close reasons as UTF-8 (across fragments), and reports one event per call. Errors are
/// sticky. Not thread-safe.
class receiver {
 public:
  receiver(websocket::role local, const deflate_params& deflate, const receive_limits& limits);
  receiver(receiver&&) noexcept;
  receiver& operator=(receiver&&) noexcept;
  ~receiver();

  /// event is what next() found.
  struct event {
    enum class type : std::uint8_t {
      need_more,  ///< no whole frame yet: at least `need` more bytes
      message,    ///< a whole data message: `kind` and `data`
      ping,       ///< `data` is the ping's payload (answer with a pong carrying it)
      pong,       ///< `data` is the pong's payload
      close,      ///< the peer's close frame: `code` (1005 when it had none) and `reason`
      error,      ///< `failure`; close the connection with close_code_for(failure)
    };
    type what = type::need_more;
    std::size_t need = 0;
    std::size_t consumed = 0;  ///< bytes of the input this event used up
    message_kind kind = message_kind::binary;
    const_buffer data{};  ///< into the input or the receiver's own buffer; valid until the next call
    std::uint16_t code = 0;
    std::string_view reason{};  ///< into the input; valid until the next call
    error failure{};
  };

  /// next looks at `input` (received bytes not yet consumed, starting at a frame
  /// boundary; unmasked in place, hence mutable) and reports the first event. The caller
  /// drops `consumed` bytes from the front of its input before the next call, and takes
  /// what `data` and `reason` view before it (they may point into those bytes). Frames
  /// of a fragmented message are consumed (and kept by the receiver) as they come, with
  /// control frames between them. After `close` or `error` it reports the same again.
  event next(mutable_buffer input);

  /// in_message: a fragmented message has begun and not ended.
  bool in_message() const noexcept { return in_message_; }
  /// buffered_capacity is the memory of the reassembly buffer now.
  std::size_t buffered_capacity() const noexcept { return message_.capacity(); }

 private:
  struct frame;
  event fail(error e) noexcept;
  event control_frame(const frame& f, mutable_buffer payload, std::size_t end);
  std::optional<event> data_frame(const frame& f, mutable_buffer payload, std::size_t end);
  bool append_payload(const_buffer payload, bool fin, error& failure);

  websocket::role local_;
  deflate_params deflate_;
  receive_limits limits_;
  std::unique_ptr<detail::inflater, detail::inflater_deleter> inflater_;
  bool in_message_ = false;
  bool compressed_ = false;  // the current message is
  message_kind kind_ = message_kind::binary;
  std::uint64_t raw_size_ = 0;  // payload bytes of the current message as framed
  byte_buffer message_;         // the reassembled (inflated) message
  bool delivered_ = false;      // message_ holds a message already reported
  utf8_validator utf8_;
  std::optional<event> final_{};  // close or error: reported from now on
};

// -- sending -----------------------------------------------------------------------------

/// send_options shape the frames this end sends.
struct send_options {
  /// fragment_size: messages longer than this go in several frames of at most this
  /// payload each (compressed size, with deflate); 0: one frame per message.
  std::size_t fragment_size = 0;
};

/// sender is the sans-I/O send side: it turns a message into frames (compressed when
/// deflate was agreed, fragmented past fragment_size, masked with fresh keys on a
/// client) appended to an output buffer. Not thread-safe.
class sender {
 public:
  sender(websocket::role local, const deflate_params& deflate, const send_options& options);
  sender(sender&&) noexcept;
  sender& operator=(sender&&) noexcept;
  ~sender();

  /// encode_message appends the frames of one message to `out`.
  /// Errors: internal failures of zlib (not_supported, with nothing appended).
  result<void> encode_message(message_kind kind, const_buffers payload, byte_buffer& out);
  /// encode_control appends one control frame (ping, pong, close; payload <= 125
  /// bytes, else invalid_argument) to `out`.
  result<void> encode_control(websocket::opcode op, const_buffer payload, byte_buffer& out);
  /// direct_header is, for a message that needs no copy (a server's, uncompressed, in
  /// one frame), its header; 0 when the message must go through encode_message.
  std::size_t direct_header(message_kind kind, std::size_t size,
                            std::span<std::byte, max_header_size> out) const;
  /// keys is the masking key source (replace it with a seeded one in tests).
  websocket::mask_keys& keys() noexcept { return keys_; }

 private:
  void append_frame(websocket::opcode op, bool fin, bool rsv1, const_buffers payload, std::size_t offset,
                    std::size_t length, byte_buffer& out);

  websocket::role local_;
  deflate_params deflate_;
  send_options options_;
  websocket::mask_keys keys_;
  std::unique_ptr<detail::deflater, detail::deflater_deleter> deflater_;
  byte_buffer compressed_;
};

/// encode_close_payload writes a close frame's payload: the code (big-endian) and the
/// reason, which is cut at 123 bytes (at a UTF-8 boundary). An empty payload for
/// close_code::no_status.
std::vector<std::byte> encode_close_payload(std::uint16_t code, std::string_view reason);

// -- the connection ------------------------------------------------------------------------

/// options configure a WebSocket end (both sides; each field says which side reads it).
struct options {
  /// max_message bounds every message received (its payload after inflating) and sent.
  std::size_t max_message = 1 << 20;
  /// fragment_size splits outgoing messages into frames of at most this payload; 0: no.
  std::size_t fragment_size = 0;
  /// send_kind is what send(message, dl) sends (the message_socket shape has no kind).
  message_kind send_kind = message_kind::binary;
  /// protocols: a client offers these subprotocols (Sec-WebSocket-Protocol) in order; a
  /// server picks the first of its own list the client offered (none: no subprotocol).
  std::vector<std::string> protocols{};
  /// deflate: permessage-deflate, offered by a client, accepted by a server.
  deflate_options deflate{};
  /// headers: extra fields of the client's request (Origin...) or the server's 101.
  std::vector<http1::header> headers{};
  /// close_timeout bounds the close frame recv writes when it fails the connection or
  /// answers the peer's close, and a pong it writes.
  std::chrono::milliseconds close_timeout{5000};
};

/// session is what an opening handshake decided.
struct session {
  websocket::role role = role::client;
  std::string protocol{};  ///< the subprotocol agreed; empty: none
  deflate_params deflate{};
};

/// close_status is a close frame's content.
struct close_status {
  std::uint16_t code = close_code::no_status;
  std::string reason{};
};

/// message_info describes a received message.
struct message_info {
  std::size_t size = 0;
  message_kind kind = message_kind::binary;
};

/// subprotocol is the fact of the subprotocol the handshake agreed (empty: none),
/// answered by connection through strata::query.
struct subprotocol {
  using type = std::string;
};

/// connection carries whole messages over an upgraded stream (any_stream), which it
/// owns. It is a message_socket: send, recv and close, plus message kinds, ping and the
/// close handshake. Pings are answered by recv; close frames are answered by recv and
/// sent by close. One send (or ping, or close) and one recv may be pending at the same
/// time, from different tasks; their frames never interleave. Not thread-safe. Moving
/// a connection moves its state; a moved-from connection may only be destroyed or
/// assigned to.
class connection {
 public:
  using answers = fact_list<subprotocol>;

  /// connection takes `lower` after an opening handshake that decided `s` (accept and
  /// connect make it; tests may make one directly). `unread` are bytes read from `lower`
  /// past the handshake, the first frames' bytes.
  connection(any_stream lower, session s, const options& o, std::vector<std::byte> unread);
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  ~connection();

  /// send sends `message` as one message of options().send_kind.
  task<result<void>> send(const_buffers message, deadline dl);
  /// send sends `message` as one message of `kind`: compressed when deflate was agreed,
  /// in frames of fragment_size, masked by a client. Control frames recv must answer
  /// meanwhile go between frames or after the message.
  /// Errors: message_too_large (over max_message; nothing sent), invalid_argument (text
  /// that is not UTF-8; nothing sent), closed (close sent or received, or closed), the
  /// connection's failure, the lower layer's write errors: timed_out or
  /// operation_canceled before any byte left send nothing; after a partial write the
  /// direction is broken for good.
  task<result<void>> send(message_kind kind, const_buffers message, deadline dl);
  /// recv waits for the next data message, copies it into `buf` and returns its size.
  /// It answers pings (pong) and the peer's close (close frame back) on the way.
  /// Errors:
  /// - message_too_large: `buf` is smaller than the message, which stays pending (a
  ///   retry with a larger buffer gets it); error::message_too_big: the peer sent more
  ///   than max_message (the connection fails with 1009).
  /// - end_of_stream: the peer closed (close frame; peer_close() says how), sticky.
  /// - error::truncated (a broken): the stream ended without a close frame, sticky.
  /// - protocol errors (websocket::error, sticky): the connection is failed with the
  ///   error's close code.
  /// - timed_out, operation_canceled: nothing is lost; frames received so far stay.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// recv_message is recv that also reports the message's kind.
  task<result<message_info>> recv_message(mutable_buffer buf, deadline dl);
  /// ping sends a ping with `payload` (at most 125 bytes, else invalid_argument). The
  /// peer's pong is seen by recv: pongs_received() and last_pong().
  task<result<void>> ping(const_buffer payload, deadline dl);
  /// close runs the closing handshake with status 1000: it sends a close frame (unless
  /// one was sent), waits for the peer's (reading and dropping data messages, unless a
  /// recv already pending in another task does the reading) and closes the lower layer
  /// in order. A recv called after close() began answers `closed`. Errors: timed_out
  /// (no close frame from the peer before `dl`; the stream is then reset), closed
  /// (already closed), the lower layer's errors.
  task<result<void>> close(deadline dl);
  /// close with a status code (valid_close_code, else invalid_argument) and a reason
  /// (UTF-8, cut at 123 bytes).
  task<result<void>> close(std::uint16_t code, std::string_view reason, deadline dl);

  /// peer_close is the peer's close frame, once received.
  std::optional<close_status> peer_close() const;
  /// pongs_received counts the pongs recv saw; last_pong is the latest one's payload.
  std::uint64_t pongs_received() const noexcept;
  const std::vector<std::byte>& last_pong() const noexcept;
  /// protocol is the subprotocol agreed (empty: none).
  const std::string& protocol() const noexcept;
  /// compressed: permessage-deflate is in use.
  bool compressed() const noexcept;
  websocket::role side() const noexcept;
  const websocket::options& options() const noexcept;

  /// query answers the subprotocol fact (strata::query<websocket::subprotocol>).
  result<std::string> query(subprotocol) const { return protocol(); }
  /// max_message is the largest message this layer carries (answers fact::max_message).
  std::size_t max_message() const noexcept;
  /// runtime_capabilities is what this stack offers, with max_message from the options.
  properties runtime_capabilities() const;
  /// buffered_capacity is the memory held for received bytes and reassembly now.
  std::size_t buffered_capacity() const noexcept;
  /// next_layer is the owned stream below.
  any_stream& next_layer() noexcept;
  const any_stream& next_layer() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// -- opening handshakes ------------------------------------------------------------------

/// make_key returns a fresh Sec-WebSocket-Key: 16 random bytes, base64-encoded.
std::string make_key();
/// accept_key is the Sec-WebSocket-Accept value for `key`: base64(SHA-1(key + the GUID
/// of RFC 6455 1.3)).
std::string accept_key(std::string_view key);
/// check_request validates a request head as a WebSocket opening handshake (RFC 6455
/// 4.2.1): GET, HTTP/1.1, "Upgrade: websocket", "Connection: upgrade", one
/// Sec-WebSocket-Key of 16 bytes in base64, Sec-WebSocket-Version 13, no body. Returns
/// the key. Errors: upgrade_required, version_not_supported, bad_handshake.
result<std::string_view> check_request(const http1::request_head& head);

/// accept answers `req` (inside an http1 handler) as a WebSocket server: it checks the
/// request (refusing with 426 and "Sec-WebSocket-Version: 13", or 400), agrees a
/// subprotocol and permessage-deflate under `o`, sends the 101 with `o.headers` and
/// takes the connection over (response::upgrade). The handler then returns (serve
/// leaves the stream to the connection). Errors: error::upgrade_required,
/// version_not_supported, bad_handshake (the refusal was sent), the stream's errors.
task<result<connection>> accept(http1::request& req, http1::response& res, options o, deadline dl);
task<result<connection>> accept(http1::request& req, http1::response& res, deadline dl);

/// connect runs the client's opening handshake on `stream` for `path` ("/chat?room=1")
/// at `host` (the Host field): it offers o.protocols and, with o.deflate.enabled,
/// permessage-deflate; checks the 101 and its Sec-WebSocket-Accept; and returns the
/// connection. Errors: handshake_refused (another status), bad_accept, bad_handshake,
/// bad_negotiation, http1's errors for a malformed response, the stream's errors.
task<result<connection>> connect(any_stream stream, std::string host, std::string path, options o,
                                 deadline dl);
task<result<connection>> connect(any_stream stream, std::string host, std::string path, deadline dl);

}  // namespace strata::websocket

template <>
struct std::is_error_code_enum<strata::websocket::error> : std::true_type {};
