// framing — what the stream-to-message adapters (prefix, crlf) share: the decoder's
// answer type, a gather list for one outgoing frame, and framed_stream, the driver that
// owns the lower stream and the receive buffer. A framing adapter is then its sans-I/O
// decoder, its options and row, and how it writes a frame; receiving, half-close,
// orderly close and detach are the same for all of them and live here once.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/flush.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

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

namespace detail {

/// frame_parts is the gather list of one frame: an optional header, the caller's parts
/// (not copied) and an optional trailer. Up to 6 parts live inline, so sending a
/// message allocates nothing; it must stay alive until the write completes (keep it in
/// the sending coroutine's frame).
class frame_parts {
 public:
  frame_parts(const_buffer header, std::span<const const_buffer> parts, const_buffer trailer) {
    std::size_t count = parts.size() + (header.empty() ? 0 : 1) + (trailer.empty() ? 0 : 1);
    std::span<const_buffer> list(small_);
    if (count > small_.size()) {
      large_.resize(count);
      list = large_;
    }
    std::size_t i = 0;
    if (!header.empty()) list[i++] = header;
    for (auto p : parts) list[i++] = p;
    if (!trailer.empty()) list[i++] = trailer;
    view_ = std::span<const const_buffer>(list.data(), count);
  }
  frame_parts(const frame_parts&) = delete;
  frame_parts& operator=(const frame_parts&) = delete;

  const_buffers view() const noexcept { return const_buffers(view_); }

 private:
  std::array<const_buffer, 8> small_{};
  std::vector<const_buffer> large_;
  std::span<const const_buffer> view_;
};

/// frame_batch builds the gather list of many frames for one write (a batch send).
/// Small pieces — headers, trailers and caller parts under copy_below bytes — are copied
/// into one staging buffer, consecutive ones into one piece, so a batch of small
/// messages is one contiguous buffer: the kernel copies a few large pieces much faster
/// than many tiny ones (on the machine of docs/performance.md a writev of 64 frames as
/// 128 iovecs of 4 and 64 bytes costs about three times the CPU of one write of the same
/// 4352 bytes). Larger parts are written from the caller's memory. Its storage is kept
/// from one batch to the next (a framed_stream owns one; one send at a time).
class frame_batch {
 public:
  /// copy_below: caller parts smaller than this are copied, larger ones referenced.
  static constexpr std::size_t copy_below = 512;

  /// staged_size is how many bytes of `parts` add() copies.
  static std::size_t staged_size(std::span<const const_buffer> parts) noexcept {
    std::size_t n = 0;
    for (auto p : parts) {
      if (p.size() < copy_below) n += p.size();
    }
    return n;
  }

  /// prepare empties the batch and makes room for `frames` frames with `parts` caller
  /// parts in all and `staged` bytes to copy (headers, trailers and staged_size of every
  /// frame's parts), so nothing moves while the frames are added and written.
  void prepare(std::size_t frames, std::size_t parts, std::size_t staged) {
    list_.clear();
    list_.reserve(2 * frames + parts);
    staging_.consume(staging_.size());
    if (staged != 0) (void)staging_.writable(staged);
    last_staged_ = false;
  }

  /// add appends one frame: `header`, the caller's `parts` and `trailer`.
  void add(const_buffer header, std::span<const const_buffer> parts, const_buffer trailer) {
    if (!header.empty()) stage(header);
    for (auto p : parts) {
      if (p.empty()) continue;
      if (p.size() < copy_below) {
        stage(p);
      } else {
        list_.push_back(p);
        last_staged_ = false;
      }
    }
    if (!trailer.empty()) {
      if (trailer.size() < copy_below) {
        stage(trailer);
      } else {
        list_.push_back(trailer);
        last_staged_ = false;
      }
    }
  }

  const_buffers view() const noexcept { return const_buffers(std::span<const const_buffer>(list_)); }

  /// finish drops the batch (after its write) and gives back storage beyond `keep` bytes.
  void finish() noexcept {
    list_.clear();
    staging_.consume(staging_.size());
    if (staging_.capacity() > keep) staging_.release();
    if (list_.capacity() > keep / sizeof(const_buffer)) std::vector<const_buffer>().swap(list_);
  }

 private:
  static constexpr std::size_t keep = 64 * 1024;

  void stage(const_buffer b) {
    auto room = staging_.writable(b.size());  // within what prepare reserved: never moves
    std::memcpy(room.data(), b.data(), b.size());
    staging_.commit(b.size());
    if (last_staged_) {
      list_.back() = const_buffer(list_.back().data(), list_.back().size() + b.size());
    } else {
      list_.emplace_back(room.data(), b.size());
      last_staged_ = true;
    }
  }

  byte_buffer staging_;
  std::vector<const_buffer> list_;
  bool last_staged_ = false;
};

/// framed_stream owns a byte stream and turns it into messages with `Decoder` (a class
/// with `decode_step decode(const_buffer)` and `void reset()`). Reads are buffered: one
/// read_some into read_chunk or more bytes of free space serves every message that
/// arrived with it. One send and one recv may be pending at the same time (from
/// different tasks); not thread-safe.
template <class Lower, class Decoder>
class framed_stream {
 public:
  /// recv waits for the next message and copies its payload into `buf`; returns its size.
  /// Errors:
  /// - message_too_large: `buf` is smaller than the message, which stays pending (a
  ///   retry with a larger buffer gets it); or the peer sent more than the adapter's
  ///   max_message: then the read direction fails for good.
  /// - end_of_stream: the peer finished at a message boundary (sticky).
  /// - protocol_error: the stream ended inside a message (sticky).
  /// - timed_out, operation_canceled: nothing is lost; bytes received so far stay buffered.
  /// - invalid_argument (bad options), closed (detached or closed), the lower layer's
  ///   read errors.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) {
    if (!valid_) co_return errc::invalid_argument;
    if (read_error_) co_return unexpected(read_error_);
    for (;;) {
      auto step = decoder_.decode(in_.readable());
      if (step.state == decode_step::status::message) {
        if (step.length > buf.size()) co_return errc::message_too_large;
        in_.move_out(step.offset, buf.first(step.length));
        in_.consume(step.frame);
        decoder_.reset();
        // A large message grew the buffer: give that memory back once it is consumed.
        if (in_.empty() && in_.capacity() > 4 * read_chunk) in_.release();
        co_return step.length;
      }
      if (step.state == decode_step::status::error) {
        read_error_ = make_error_code(step.error);
        co_return unexpected(read_error_);
      }
      // Memory follows the bytes that arrived, never what a header claims (`step.need`
      // may be a peer's lie): each read offers room for about as much as is buffered
      // (at least min_room, at most read_chunk), so a peer that trickles a frame in
      // costs what it sent, and one that sends fast gets whole chunks after a few reads.
      if (!in_.empty()) {
        auto n = co_await lower_.read_some(in_.writable(std::clamp(in_.size(), min_room, read_chunk)), dl);
        if (!n) co_return unexpected(read_failed(n.error()));
        in_.commit(*n);
        continue;
      }
      // Nothing buffered. While bytes keep coming the chunk is kept and read into; once
      // nothing came for idle_grace it is freed and a small read in this frame does the
      // waiting, so an idle connection holds no receive buffer.
      if (in_.capacity() != 0) {
        auto until = deadline::earlier(dl, deadline::after(idle_grace));
        // A buffering layer below flushes before it waits, bounded by the read's
        // deadline, and a write cut short part-way breaks the direction: while output
        // is held back, the grace is not worth that risk.
        if (detail::output_pending(lower_)) until = dl;
        auto n = co_await lower_.read_some(in_.writable(read_chunk), until);
        if (n) {
          in_.commit(*n);
          continue;
        }
        if (n.error() != errc::timed_out || until == dl) co_return unexpected(read_failed(n.error()));
        in_.release();
      }
      std::array<std::byte, wake_read> first;
      auto n = co_await lower_.read_some(first, dl);
      if (!n) co_return unexpected(read_failed(n.error()));
      // A full small read means more is waiting: take a whole chunk for it.
      in_.writable(*n == first.size() ? read_chunk : min_room);
      in_.append(const_buffer(first.data(), *n));
    }
  }

  /// shutdown_write half-closes: the peer's recv reports end_of_stream after the last
  /// message. Errors: closed (detached), the lower layer's shutdown_write errors.
  task<result<void>> shutdown_write(deadline dl) {
    if (detached_) co_return errc::closed;
    co_return co_await lower_.shutdown_write(dl);
  }

  /// close closes the lower layer (its orderly close; see core/stream.hpp) and drops
  /// buffered input. Errors: closed (detached), the lower layer's close errors.
  task<result<void>> close(deadline dl) {
    if (detached_) co_return errc::closed;
    in_.release();
    read_error_ = make_error_code(errc::closed);
    co_return co_await lower_.close(dl);
  }

  /// detach hands back the lower layer and the bytes read from it but not consumed (a
  /// partial frame included), in order. Framing has no closing handshake. Afterwards
  /// every call on this object fails with `closed`.
  detached<Lower> detach() {
    detached_ = true;
    read_error_ = make_error_code(errc::closed);
    auto unread = in_.take();
    in_.release();
    return detached<Lower>{std::move(lower_), std::move(unread)};
  }

  /// buffered_capacity is the receive buffer's memory now: zero while no partial message
  /// is held and no read is in progress, so an idle connection costs no buffer.
  std::size_t buffered_capacity() const noexcept { return in_.capacity(); }

  /// next_layer is the owned lower layer.
  Lower& next_layer() noexcept { return lower_; }
  const Lower& next_layer() const noexcept { return lower_; }

 protected:
  /// framed_stream takes ownership of `lower`. `unread` are bytes a previous layer had
  /// already read from `lower` (see detach); they are decoded before anything new.
  framed_stream(Lower lower, Decoder decoder, bool valid, std::vector<std::byte> unread)
      : lower_(std::move(lower)), decoder_(std::move(decoder)), valid_(valid) {
    if (!unread.empty()) in_.append(unread);
  }

  /// send_frame writes one frame with a single write of the lower layer. Errors: closed
  /// (detached), else the lower layer's write errors (timed_out or operation_canceled
  /// before any byte left send nothing; after a partial write the direction is broken).
  task<result<void>> send_frame(const frame_parts& frame, deadline dl) {
    if (detached_) return closed_write();
    return lower_.write(frame.view(), dl);
  }

  /// send_frame_now hands `frame` to the lower layer at once, without a coroutine, when
  /// the lower layer can take it that way (a buffering layer with room: its try_write);
  /// false means nothing happened and send_frame must do it.
  bool send_frame_now(const frame_parts& frame) {
    if constexpr (requires(Lower & l, const_buffers b) {
                    { l.try_write(b) } -> std::same_as<bool>;
                  }) {
      return !detached_ && lower_.try_write(frame.view());
    } else {
      return false;
    }
  }

  /// send_frames writes the batch batch() holds with a single write of the lower layer,
  /// then empties it (errors as send_frame: the write is all or nothing for the batch as
  /// a whole, and after a partial write the direction is broken).
  task<result<void>> send_frames(deadline dl) {
    if (detached_) {
      batch_.finish();
      co_return errc::closed;
    }
    auto sent = co_await lower_.write(batch_.view(), dl);
    batch_.finish();
    co_return sent;
  }

  /// batch is the frame_batch a batch send fills before send_frames (one send at a time).
  frame_batch& batch() noexcept { return batch_; }

  /// lower_capabilities is what the layer below offers (known at run time for any_stream).
  properties lower_capabilities() const {
    if constexpr (requires { lower_.runtime_capabilities(); }) {
      return lower_.runtime_capabilities();
    } else {
      return Lower::capabilities;
    }
  }

  bool valid() const noexcept { return valid_; }
  bool is_detached() const noexcept { return detached_; }

 private:
  // Free space offered to each read_some: several small messages arrive per syscall,
  // and compaction (moving a partial frame to the front) happens once per chunk.
  static constexpr std::size_t read_chunk = 16 * 1024;
  // How long a connection may wait with its chunk before it gives it back.
  static constexpr std::chrono::milliseconds idle_grace{50};
  // The least room offered to a read that continues a partial frame.
  static constexpr std::size_t min_room = 1024;

  // Room for the read that waits on an idle connection: one small message fits, so a
  // request/response exchange of small messages still costs one read per message.
  static constexpr std::size_t wake_read = 512;

  static task<result<void>> closed_write() { co_return errc::closed; }

  // read_failed makes the failure of a lower read sticky where it must be and returns it:
  // the end of the stream is orderly only at a message boundary.
  std::error_code read_failed(std::error_code ec) {
    if (ec != errc::end_of_stream) return ec;
    read_error_ = in_.empty() ? ec : make_error_code(errc::protocol_error);
    return read_error_;
  }

  Lower lower_;
  Decoder decoder_;
  bool valid_;
  bool detached_ = false;
  byte_buffer in_;
  frame_batch batch_;
  std::error_code read_error_{};
};

}  // namespace detail
}  // namespace strata
