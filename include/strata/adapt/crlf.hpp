// crlf — message boundaries on a byte stream: every message ends with a delimiter
// ("\r\n" by default; any 1..16 bytes, which is the `term` protocol). Messages cannot
// contain the delimiter.
//
// row: requires stream reliable ordered
//      provides message, max_message (bytes before the delimiter, from the options)
//      passes   connection reliable ordered dup_free secure authenticated domain topology
//               sharing direction multiplexed congestion_controlled priority_ordered
//               (not fd_passing: crlf has no call that carries descriptors)
// spec: crlf, crlf(max=4096), crlf(delim="\n"), term(delim="\n", max=1k)
//
// The codec is sans-I/O (crlf_decoder, check_crlf_message); crlf<Lower> is a thin
// coroutine driver over it that reads the lower stream in large chunks.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
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

/// crlf_options configure the delimiter and the size limit. Bad values (see validate)
/// are not refused by the constructor: send and recv then fail with invalid_argument.
struct crlf_options {
  /// max_delimiter is the longest delimiter accepted.
  static constexpr std::size_t max_delimiter = 16;

  std::string delimiter = "\r\n";       ///< ends every message; 1..max_delimiter bytes
  std::size_t max_message = 64 * 1024;  ///< largest message (bytes before the delimiter)
};

/// crlf_row is crlf's capability declaration.
inline constexpr capability_row crlf_row{
    .name = "crlf",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop::unit | prop::max_message,
    .provided_value = {.unit = unit::message, .max_message = 64 * 1024},
    .passed = prop_set::all() - (prop::unit | prop::max_message | prop::fd_passing),
};

/// term_row is the same declaration under the name of the `term` spec (crlf with a
/// delimiter the user chooses).
inline constexpr capability_row term_row{
    .name = "term",
    .required = crlf_row.required,
    .required_value = crlf_row.required_value,
    .provided = crlf_row.provided,
    .provided_value = crlf_row.provided_value,
    .passed = crlf_row.passed,
};

/// crlf_layer names the row for the stacks_on concept.
struct crlf_layer {
  static constexpr const capability_row& row = crlf_row;
};

/// validate checks crlf options: the delimiter must have 1..max_delimiter bytes.
/// Errors: invalid_argument.
result<void> validate(const crlf_options& options) noexcept;

/// check_crlf_message tells whether `message` can be sent: invalid_argument (as
/// cause::delimiter_in_message, whose message says so) when the delimiter occurs in it, or would occur early
/// once the delimiter is appended (only possible with self-overlapping delimiters such as "abab" and a
/// message ending in "ab"), or when the options are bad; message_too_large when it exceeds max_message. Reads
/// the gather list without copying it.
result<void> check_crlf_message(const crlf_options& options, const_buffers message) noexcept;

/// crlf_decoder is the sans-I/O receive side of crlf: it looks at the unconsumed bytes,
/// which always start at a message boundary, and finds the first delimiter. It
/// remembers how far it has searched, so feeding a long line in small pieces costs
/// linear time; call reset() after consuming a frame. It keeps no reference to the
/// input and allocates nothing. Once it reported an error it reports it for every later
/// input (no resynchronisation).
class crlf_decoder {
 public:
  explicit crlf_decoder(const crlf_options& options) noexcept;

  /// decode inspects `input` (bytes received and not yet consumed, starting at a message
  /// boundary; each call's input extends the previous one's until reset()).
  /// need_more: no delimiter yet. message: payload is input[0, length), the frame adds
  /// the delimiter. error: invalid_argument (bad options) or message_too_large (more
  /// than max_message bytes without a delimiter).
  decode_step decode(const_buffer input) noexcept;
  /// reset starts a new message: call it after consuming a frame. A sticky error survives.
  void reset() noexcept { scanned_ = 0; }
  bool failed() const noexcept { return failed_ != errc{}; }

 private:
  std::array<char, crlf_options::max_delimiter> delimiter_{};
  std::size_t delimiter_size_ = 0;
  std::size_t max_message_;
  std::size_t scanned_ = 0;  ///< no delimiter starts before this offset of the input
  errc failed_{};
};

/// crlf carries delimited messages over the byte stream `Lower`, which it owns.
///
/// recv returns exactly one message (without its delimiter) per call. Reads from `Lower`
/// are buffered: one read_some into 16 KiB or more of free space serves every message
/// that arrived with it. Not thread-safe; one send and one recv may be pending at the
/// same time (from different tasks).
template <class Lower>
requires stacks_on<Lower, crlf_layer> && byte_stream<Lower>
class crlf : public detail::framed_stream<Lower, crlf_decoder> {
  using base = detail::framed_stream<Lower, crlf_decoder>;

 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, crlf_row);

  /// crlf takes ownership of `lower`. `unread` are bytes a previous layer had already
  /// read from `lower` (see detach); they are decoded before anything read from `lower`.
  explicit crlf(Lower lower, crlf_options options = {}, std::vector<std::byte> unread = {})
      : base(std::move(lower), crlf_decoder(options), static_cast<bool>(strata::validate(options)),
             std::move(unread)),
        options_(std::move(options)) {}

  /// validate checks `options` (see the free function validate).
  static result<void> validate(const crlf_options& options) noexcept { return strata::validate(options); }

  /// send writes `message` (a gather list, not copied) followed by the delimiter with a
  /// single write of the lower layer. Errors: invalid_argument (bad options, or the
  /// message contains the delimiter: cause::delimiter_in_message; see
  /// check_crlf_message; nothing sent),
  /// message_too_large (over max_message; nothing sent), closed (detached), else the
  /// lower layer's write errors: timed_out or operation_canceled before any byte left
  /// send nothing; after a partial write the direction is broken for good.
  task<result<void>> send(const_buffers message, deadline dl) {
    if (!this->valid()) co_return errc::invalid_argument;
    if (auto ok = check_crlf_message(options_, message); !ok) co_return ok;
    detail::frame_parts frame({}, message.view(), as_bytes(options_.delimiter));
    if (this->send_frame_now(frame)) co_return result<void>{};
    co_return co_await this->send_frame(frame, dl);
  }

  /// send_batch sends `msgs` in order, each followed by the delimiter, with a single
  /// write of the lower layer, and returns msgs.size(); `to` is ignored. The rules are
  /// prefix's send_batch: every message is checked first (invalid_argument for bad options
  /// or a message that contains the delimiter, message_too_large) and one bad message
  /// refuses the whole batch before any byte leaves; the lower write's errors apply to the
  /// batch as a whole (timed_out or operation_canceled before any byte left: nothing
  /// sent; otherwise an unknown prefix reached the peer and the direction is broken).
  task<result<std::size_t>> send_batch(std::span<const outgoing_datagram> msgs, deadline dl) {
    if (!this->valid()) co_return errc::invalid_argument;
    std::size_t parts = 0;
    std::size_t staged = 0;
    for (const auto& m : msgs) {
      if (auto ok = check_crlf_message(options_, m.data); !ok) co_return unexpected(ok.error());
      parts += m.data.view().size();
      staged += options_.delimiter.size() + detail::frame_batch::staged_size(m.data.view());
    }
    if (msgs.empty()) co_return std::size_t{0};
    auto& batch = this->batch();
    batch.prepare(msgs.size(), parts, staged);
    for (const auto& m : msgs) batch.add({}, m.data.view(), as_bytes(options_.delimiter));
    auto sent = co_await this->send_frames(dl);
    if (!sent) co_return unexpected(sent.error());
    co_return msgs.size();
  }

  // recv (which returns a message without its delimiter), shutdown_write, close,
  // detach and next_layer (through which strata::query reaches the layers below) come from
  // detail::framed_stream (adapt/framing.hpp), with their contracts written there.

  /// runtime_capabilities is what this stack offers, with max_message from the options.
  properties runtime_capabilities() const {
    auto out = stack_on(this->lower_capabilities(), crlf_row);
    out.max_message = options_.max_message;
    return out;
  }
  const crlf_options& options() const noexcept { return options_; }
  /// max_message is the largest message this layer carries (answers fact::max_message).
  std::size_t max_message() const noexcept { return options_.max_message; }

 private:
  crlf_options options_;
};

extern template class detail::framed_stream<any_stream, crlf_decoder>;
extern template class crlf<any_stream>;

}  // namespace strata
