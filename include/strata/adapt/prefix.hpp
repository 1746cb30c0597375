// prefix — message boundaries on a byte stream: every message travels behind a
// fixed-size length header (1..8 bytes, big- or little-endian) that counts the payload.
//
// row: requires stream reliable ordered
//      provides message, max_message (from the options, capped by what the header can count)
//      passes   connection reliable ordered dup_free secure authenticated domain topology
//               sharing direction multiplexed congestion_controlled priority_ordered
//               (not fd_passing: prefix has no call that carries descriptors)
// spec: prefix(4), prefix(bytes=2, order=little, max=64k)
//
// The codec is sans-I/O (prefix_decoder, encode_prefix_header); prefix<Lower> is a thin
// coroutine driver over it that reads the lower stream in large chunks.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "strata/adapt/framing.hpp"
#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/datagram.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// prefix_options configure the length header and the size limit. Bad values (see
/// validate) are not refused by the constructor: send and recv then fail with
/// invalid_argument.
struct prefix_options {
  std::size_t header_bytes = 4;               ///< size of the length header, 1..8
  std::endian byte_order = std::endian::big;  ///< byte order of the length header
  std::size_t max_message = 1 << 20;          ///< larger messages are refused both ways
};

/// prefix_row is prefix's capability declaration.
inline constexpr capability_row prefix_row{
    .name = "prefix",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop::unit | prop::max_message,
    .provided_value = {.unit = unit::message, .max_message = prefix_options{}.max_message},
    .passed = prop_set::all() - (prop::unit | prop::max_message | prop::fd_passing),
};

/// prefix_layer names the row for the stacks_on concept.
struct prefix_layer {
  static constexpr const capability_row& row = prefix_row;
};

/// validate checks prefix options: header_bytes must be 1..8 and byte_order big or
/// little. Errors: invalid_argument.
result<void> validate(const prefix_options& options) noexcept;

/// prefix_limit is the largest payload `options` allow: max_message, capped by what
/// header_bytes can count (255 for one byte). Only meaningful for valid options.
std::size_t prefix_limit(const prefix_options& options) noexcept;

/// encode_prefix_header writes the header announcing a `size`-byte payload into `out`
/// and returns its length (options.header_bytes). Errors: invalid_argument for bad
/// options, message_too_large when size exceeds prefix_limit (nothing is written).
result<std::size_t> encode_prefix_header(const prefix_options& options, std::size_t size,
                                         std::span<std::byte, 8> out) noexcept;

/// prefix_decoder is the sans-I/O receive side of prefix: it looks at the unconsumed
/// bytes, which always start at a frame boundary, and finds the first message. It keeps
/// no reference to the input and allocates nothing. Once it reported an error it
/// reports it for every later input (no resynchronisation).
class prefix_decoder {
 public:
  explicit prefix_decoder(const prefix_options& options) noexcept;

  /// decode inspects `input` (bytes received and not yet consumed, starting at a frame
  /// boundary). need_more: the header or payload is incomplete. message: the first
  /// frame is whole; the caller consumes `frame` bytes, then calls decode again.
  /// error: invalid_argument (bad options) or message_too_large (the header announces
  /// more than prefix_limit).
  decode_step decode(const_buffer input) noexcept;
  /// reset forgets state after the caller consumed a frame (no-op: prefix is stateless,
  /// present so drivers treat both decoders alike). A sticky error survives.
  void reset() noexcept {}
  bool failed() const noexcept { return failed_ != errc{}; }

 private:
  prefix_options options_;
  std::size_t limit_;
  errc failed_{};
};

/// prefix carries whole messages over the byte stream `Lower`, which it owns.
///
/// recv returns exactly one message per call. Reads from `Lower` are buffered: one
/// read_some into 16 KiB or more of free space serves every message that arrived with
/// it. Not thread-safe; one send and one recv may be pending at the same time (from
/// different tasks).
template <class Lower>
requires stacks_on<Lower, prefix_layer> && byte_stream<Lower>
class prefix : public detail::framed_stream<Lower, prefix_decoder> {
  using base = detail::framed_stream<Lower, prefix_decoder>;

 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, prefix_row);

  /// prefix takes ownership of `lower`. `unread` are bytes a previous layer had already
  /// read from `lower` (see detach); they are decoded before anything read from `lower`.
  explicit prefix(Lower lower, prefix_options options = {}, std::vector<std::byte> unread = {})
      : base(std::move(lower), prefix_decoder(options), static_cast<bool>(strata::validate(options)),
             std::move(unread)),
        options_(options),
        limit_(this->valid() ? prefix_limit(options) : 0) {}

  /// validate checks `options` (see the free function validate).
  static result<void> validate(const prefix_options& options) noexcept { return strata::validate(options); }

  /// send writes `message` (a gather list, not copied) as one frame with a single
  /// write of the lower layer. Errors: invalid_argument (bad options),
  /// message_too_large (over max_message or what the header can count; nothing sent),
  /// closed (detached), else the lower layer's write errors: timed_out or
  /// operation_canceled before any byte left send nothing; after a partial write the
  /// direction is broken for good (the lower layer's rule).
  task<result<void>> send(const_buffers message, deadline dl) {
    if (!this->valid()) co_return errc::invalid_argument;
    auto parts = message.view();
    std::size_t size = 0;
    for (auto p : parts) size += p.size();
    if (size > limit_) co_return errc::message_too_large;
    std::array<std::byte, 8> header;
    detail::frame_parts frame(const_buffer(header.data(), put_header(size, header)), parts, {});
    if (this->send_frame_now(frame)) co_return result<void>{};
    co_return co_await this->send_frame(frame, dl);
  }

  /// send_batch sends `msgs` in order as consecutive frames with a single write of the
  /// lower layer and returns msgs.size(). `to` is ignored: the stream has one peer. The
  /// headers and every part under 512 bytes (frame_batch::copy_below) are copied into
  /// one buffer that the layer keeps for its next batches, so a batch of small messages
  /// is one contiguous write; larger parts are written from the caller's memory, so
  /// `msgs` and their buffers must outlive the task. Over a socket a batch is one
  /// system call unless it has more than 1024 pieces. An empty batch writes nothing and
  /// returns 0. One send or send_batch at a time.
  ///
  /// Every message is checked before anything is written: invalid_argument (bad options)
  /// or message_too_large (one message over max_message or what the header can count)
  /// refuse the whole batch and not a byte of it leaves. closed when detached. Otherwise
  /// the lower layer's write errors, for the batch as a whole (a stream write has no
  /// per-message outcome, so unlike udp's send_batch this never returns a partial
  /// count): timed_out or operation_canceled before any byte left sent nothing (the same
  /// batch may be sent again); after a partial write, or with any other error, an unknown
  /// prefix of the batch reached the peer, possibly ending inside a frame, and the write
  /// direction is broken for good.
  task<result<std::size_t>> send_batch(std::span<const outgoing_datagram> msgs, deadline dl) {
    if (!this->valid()) co_return errc::invalid_argument;
    std::size_t parts = 0;
    std::size_t staged = 0;
    for (const auto& m : msgs) {
      auto view = m.data.view();
      if (m.data.total_size() > limit_) co_return errc::message_too_large;
      parts += view.size();
      staged += options_.header_bytes + detail::frame_batch::staged_size(view);
    }
    if (msgs.empty()) co_return std::size_t{0};
    auto& batch = this->batch();
    batch.prepare(msgs.size(), parts, staged);
    for (const auto& m : msgs) {
      std::array<std::byte, 8> header;
      batch.add(const_buffer(header.data(), put_header(m.data.total_size(), header)), m.data.view(), {});
    }
    auto sent = co_await this->send_frames(dl);
    if (!sent) co_return unexpected(sent.error());
    co_return msgs.size();
  }

  // recv, shutdown_write, close, detach and next_layer (through which strata::query reaches the layers below)
  // come from detail::framed_stream (adapt/framing.hpp), with their contracts written there.

  /// runtime_capabilities is what this stack offers, with max_message from the options.
  properties runtime_capabilities() const {
    auto out = stack_on(this->lower_capabilities(), prefix_row);
    out.max_message = limit_;
    return out;
  }
  const prefix_options& options() const noexcept { return options_; }
  /// max_message is the largest message this layer carries (answers fact::max_message).
  std::size_t max_message() const noexcept { return limit_; }

 private:
  // put_header is encode_prefix_header for options already validated and a size already
  // checked against the limit (so it cannot fail); returns the header's length.
  std::size_t put_header(std::size_t size, std::array<std::byte, 8>& out) const noexcept {
    auto n = options_.header_bytes;
    auto value = static_cast<std::uint64_t>(size);
    for (std::size_t i = 0; i < n; ++i) {
      auto pos = options_.byte_order == std::endian::big ? n - 1 - i : i;
      out[pos] = static_cast<std::byte>(value & 0xff);
      value >>= 8;
    }
    return n;
  }

  prefix_options options_;
  std::size_t limit_;
};

extern template class detail::framed_stream<any_stream, prefix_decoder>;
extern template class prefix<any_stream>;

}  // namespace strata
