// bytes — a byte stream over a reliable, ordered message layer: writes are cut into
// messages no larger than the layer below carries, reads deliver bytes across message
// boundaries, and half-close is the lower layer's end of stream.
//
// row: requires message reliable ordered
//      provides stream
//      passes   connection reliable ordered dup_free secure authenticated domain topology
//               sharing direction multiplexed congestion_controlled priority_ordered
//               (not fd_passing, not max_message: a stream has no message size)
// spec: udp:127.0.0.1:9000 | reliable | bytes | tls(sni=localhost, ca=ca.pem)
//       udp-listen:127.0.0.1:9000 | reliable | bytes | http1
//       seqpacket:@svc | bytes
//
// Message boundaries carry no meaning: a write of n bytes becomes ceil(n / max_message)
// messages, and a read returns what the current message still holds (at least one byte).
// Empty messages from the peer are skipped. No framing is added, so the peer may be any
// program that sends and receives plain messages.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// bytes_row is bytes's capability declaration.
inline constexpr capability_row bytes_row{
    .name = "bytes",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::message, .reliable = true, .ordered = true},
    .provided = prop::unit | prop::max_message,
    .provided_value = {.unit = unit::stream, .max_message = 0},
    .passed = prop_set::all() - (prop::unit | prop::max_message | prop::fd_passing),
};

/// bytes_layer names the row for the stacks_on concept.
struct bytes_layer {
  static constexpr const capability_row& row = bytes_row;
};

/// bytes_default_chunk is the message size used when the layer below does not tell its
/// max_message.
inline constexpr std::size_t bytes_default_chunk = 16 * 1024;

/// bytes_stream is a byte_stream (core/stream.hpp) over the message layer `Lower`, which
/// it owns. One reader and one writer may be pending at the same time (from different
/// tasks).
template <class Lower>
requires stacks_on<Lower, bytes_layer> && message_socket<Lower>
class bytes_stream {
 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, bytes_row);

  /// bytes_stream takes `lower`; writes are cut into messages of at most its max_message
  /// (asked through fact::max_message; bytes_default_chunk when it does not know).
  explicit bytes_stream(Lower lower) : lower_(std::move(lower)) {
    auto max = query<fact::max_message>(lower_);
    chunk_ = max && *max > 0 ? *max : bytes_default_chunk;
  }
  bytes_stream(bytes_stream&&) noexcept = default;
  bytes_stream& operator=(bytes_stream&&) noexcept = default;

  /// read_some returns 1..buf.size() bytes: what the current message still holds, or the
  /// next message (received straight into `buf` when it is large enough). Errors:
  /// end_of_stream after the peer's shutdown_write or close (sticky), the lower layer's
  /// errors, timed_out / operation_canceled (nothing consumed), closed.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) {
    if (closed_) co_return errc::closed;
    if (buf.empty()) co_return std::size_t{0};
    for (;;) {
      if (have_ > 0) {
        std::size_t n = std::min(buf.size(), have_);
        std::memcpy(buf.data(), in_.data() + off_, n);
        off_ += n;
        have_ -= n;
        co_return n;
      }
      if (buf.size() >= chunk_ && !large_peer_) {
        auto n = co_await lower_.recv(buf, dl);
        if (!n) {
          if (n.error() != errc::message_too_large) co_return unexpected(n.error());
          large_peer_ = true;  // the peer's messages are larger than ours: buffer them
          continue;
        }
        if (*n > 0) co_return *n;
        continue;  // an empty message carries nothing
      }
      if (in_.size() < chunk_) in_.resize(chunk_);
      auto n = co_await lower_.recv(mutable_buffer(in_.data(), in_.size()), dl);
      if (!n) {
        if (n.error() == errc::message_too_large && in_.size() < max_in) {
          in_.resize(max_in);  // the peer's messages are larger than ours: take them whole
          continue;
        }
        co_return unexpected(n.error());
      }
      off_ = 0;
      have_ = *n;
    }
  }

  /// write sends every byte, cut into messages of at most max_message bytes. Errors: the
  /// lower layer's send errors (a failed message may leave the ones before it sent),
  /// closed.
  task<result<void>> write(const_buffers bufs, deadline dl) {
    if (closed_) co_return errc::closed;
    auto parts = bufs.view();
    std::size_t i = 0;
    std::size_t off = 0;
    while (i < parts.size()) {
      if (off == parts[i].size()) {
        ++i;
        off = 0;
        continue;
      }
      // A whole chunk inside one part goes out from the caller's memory.
      if (parts[i].size() - off >= chunk_ || i + 1 == parts.size()) {
        std::size_t n = std::min(chunk_, parts[i].size() - off);
        auto sent = co_await lower_.send(const_buffer(parts[i].data() + off, n), dl);
        if (!sent) co_return sent;
        off += n;
        continue;
      }
      // Else gather small parts into one message.
      out_.clear();
      while (i < parts.size() && out_.size() < chunk_) {
        std::size_t n = std::min(chunk_ - out_.size(), parts[i].size() - off);
        out_.insert(out_.end(), parts[i].begin() + static_cast<std::ptrdiff_t>(off),
                    parts[i].begin() + static_cast<std::ptrdiff_t>(off + n));
        off += n;
        if (off == parts[i].size()) {
          ++i;
          off = 0;
        }
      }
      auto sent = co_await lower_.send(const_buffer(out_), dl);
      if (!sent) co_return sent;
    }
    co_return result<void>{};
  }

  /// shutdown_write ends the lower layer's write direction (reliable sends CLOSE): the
  /// peer reads end_of_stream after the last byte. not_supported when the layer below has
  /// no half-close.
  task<result<void>> shutdown_write(deadline dl) {
    if (closed_) co_return errc::closed;
    if constexpr (requires { lower_.shutdown_write(dl); }) {
      co_return co_await lower_.shutdown_write(dl);
    } else {
      co_return errc::not_supported;
    }
  }

  /// close closes the layer below (its orderly close); afterwards every call fails with
  /// closed.
  task<result<void>> close(deadline dl) {
    if (closed_) co_return errc::closed;
    closed_ = true;
    co_return co_await lower_.close(dl);
  }

  const Lower& next_layer() const noexcept { return lower_; }
  Lower& next_layer() noexcept { return lower_; }
  /// chunk is the largest message a write sends.
  std::size_t chunk() const noexcept { return chunk_; }

  properties runtime_capabilities() const {
    properties below = Lower::capabilities;
    if constexpr (requires { lower_.runtime_capabilities(); }) below = lower_.runtime_capabilities();
    return stack_on(below, bytes_row);
  }

 private:
  // The most a read takes in one message when the peer sends larger ones than we do.
  static constexpr std::size_t max_in = 65536 * 4;

  Lower lower_;
  std::size_t chunk_ = bytes_default_chunk;
  std::vector<std::byte> in_;  // the current message: in_[off_, off_ + have_) unread
  std::size_t off_ = 0;
  std::size_t have_ = 0;
  std::vector<std::byte> out_;
  bool large_peer_ = false;
  bool closed_ = false;
};

extern template class bytes_stream<any_message>;

}  // namespace strata
