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
#include <utility>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/result.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/task.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/unix.hpp"

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

/// decode_step is a decoder's answer about the bytes at the front of its input.
struct decode_step {
  enum class status : std::uint8_t {
    need_more,  ///< no whole message yet; `need` more bytes at least
    message,    ///< payload is input[offset, offset + length); the frame is `frame` bytes
    error,      ///< the input is unusable; `error` says why (sticky)
  };
  status state = status::need_more;
  std::size_t need = 0;               ///< need_more: lower bound of bytes still missing (>= 1)
  std::size_t offset = 0;             ///< message: where the payload starts
  std::size_t length = 0;             ///< message: payload size
  std::size_t frame = 0;              ///< message: bytes to consume (header + payload + trailer)
  errc error = errc::protocol_error;  ///< error: message_too_large or invalid_argument
};

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
class prefix {
 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, prefix_row);

  /// prefix takes ownership of `lower`. `unread` are bytes a previous layer had already
  /// read from `lower` (see detach); they are decoded before anything read from `lower`.
  explicit prefix(Lower lower, prefix_options options = {}, std::vector<std::byte> unread = {})
      : lower_(std::move(lower)),
        options_(options),
        decoder_(options),
        valid_(static_cast<bool>(strata::validate(options))),
        limit_(valid_ ? prefix_limit(options) : 0) {
    if (!unread.empty()) in_.append(unread);
  }

  /// validate checks `options` (see the free function validate).
  static result<void> validate(const prefix_options& options) noexcept { return strata::validate(options); }

  /// send writes `message` (a gather list, not copied) as one frame with a single
  /// write of the lower layer. Errors: invalid_argument (bad options),
  /// message_too_large (over max_message or what the header can count; nothing sent),
  /// closed (detached), else the lower layer's write errors: timed_out or
  /// operation_canceled before any byte left send nothing; after a partial write the
  /// direction is broken for good (the lower layer's rule).
  task<result<void>> send(const_buffers message, deadline dl) {
    if (!valid_) co_return errc::invalid_argument;
    if (detached_) co_return errc::closed;
    auto parts = message.view();
    std::size_t size = 0;
    for (auto p : parts) size += p.size();
    if (size > limit_) co_return errc::message_too_large;
    std::array<std::byte, 8> header;
    auto header_size = encode_prefix_header(options_, size, header);
    if (!header_size) co_return header_size.error();
    constexpr std::size_t inline_parts = 8;
    std::array<const_buffer, inline_parts> small;
    std::vector<const_buffer> large;  // only for gather lists of more than 7 parts
    std::span<const_buffer> list(small);
    if (parts.size() + 1 > inline_parts) {
      large.resize(parts.size() + 1);
      list = large;
    }
    list[0] = const_buffer(header.data(), *header_size);
    std::copy(parts.begin(), parts.end(), list.begin() + 1);
    co_return co_await lower_.write(
        const_buffers(std::span<const const_buffer>(list.data(), parts.size() + 1)), dl);
  }

  /// recv waits for the next message and copies it into `buf`; returns its size.
  /// Errors:
  /// - message_too_large: `buf` is smaller than the message, which stays pending (a
  ///   retry with a larger buffer gets it); or the peer announced more than
  ///   max_message: then the read direction fails for good.
  /// - end_of_stream: the peer finished at a message boundary (sticky).
  /// - protocol_error: the stream ended inside a frame (sticky).
  /// - timed_out, operation_canceled: nothing is lost; bytes received so far stay buffered.
  /// - invalid_argument (bad options), closed (detached), the lower layer's read errors.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) {
    if (!valid_) co_return errc::invalid_argument;
    if (read_error_) co_return unexpected(read_error_);
    for (;;) {
      auto step = decoder_.decode(in_.readable());
      if (step.state == decode_step::status::message) {
        if (step.length > buf.size()) co_return errc::message_too_large;
        if (step.length != 0) std::memcpy(buf.data(), in_.readable().data() + step.offset, step.length);
        in_.consume(step.frame);
        decoder_.reset();
        co_return step.length;
      }
      if (step.state == decode_step::status::error) {
        read_error_ = make_error_code(step.error);
        co_return unexpected(read_error_);
      }
      auto space = in_.writable(std::max(step.need, read_chunk));
      auto n = co_await lower_.read_some(space, dl);
      if (!n) {
        auto ec = n.error();
        if (ec == errc::end_of_stream) {
          read_error_ = in_.empty() ? ec : make_error_code(errc::protocol_error);
          co_return unexpected(read_error_);
        }
        co_return unexpected(ec);
      }
      in_.commit(*n);
    }
  }

  /// shutdown_write half-closes: the peer's recv reports end_of_stream after the last
  /// message. Errors: as the lower layer's shutdown_write.
  task<result<void>> shutdown_write(deadline dl) {
    if (detached_) co_return errc::closed;
    co_return co_await lower_.shutdown_write(dl);
  }
  /// close closes the lower layer (its orderly close; see core/stream.hpp) and drops
  /// buffered input.
  task<result<void>> close(deadline dl) {
    if (detached_) co_return errc::closed;
    (void)in_.take();
    read_error_ = make_error_code(errc::closed);
    co_return co_await lower_.close(dl);
  }

  /// detach hands back the lower layer and the bytes read from it but not consumed
  /// (a partial frame included), in order. prefix has no closing handshake. Afterwards
  /// every call on this object fails with `closed`.
  detached<Lower> detach() {
    detached_ = true;
    read_error_ = make_error_code(errc::closed);
    return detached<Lower>{std::move(lower_), in_.take()};
  }

  /// next_layer is the owned lower layer.
  Lower& next_layer() noexcept { return lower_; }
  const Lower& next_layer() const noexcept { return lower_; }
  result<address> local_address() const { return local_address_of(lower_); }
  result<address> peer_address() const { return peer_address_of(lower_); }

  /// runtime_capabilities is what this stack offers, with max_message from the options.
  properties runtime_capabilities() const {
    properties below;
    if constexpr (requires { lower_.runtime_capabilities(); }) {
      below = lower_.runtime_capabilities();
    } else {
      below = Lower::capabilities;
    }
    auto out = stack_on(below, prefix_row);
    out.max_message = limit_;
    return out;
  }
  const prefix_options& options() const noexcept { return options_; }

 private:
  // Free space offered to each read_some: several small messages arrive per syscall,
  // and compaction (moving a partial frame to the front) happens once per chunk.
  static constexpr std::size_t read_chunk = 16 * 1024;

  Lower lower_;
  prefix_options options_;
  prefix_decoder decoder_;
  bool valid_;
  bool detached_ = false;
  std::size_t limit_;
  byte_buffer in_;
  std::error_code read_error_{};
};

extern template class prefix<tcp::stream>;
extern template class prefix<uds::stream>;
extern template class prefix<any_stream>;

}  // namespace strata
