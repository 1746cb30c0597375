// buffered — fewer system calls for small writes: writes are copied into an output
// buffer, and the lower stream gets them in one write when the buffer fills, when this
// connection is about to wait for input, at shutdown_write / close / detach, or when the
// user flushes (DESIGN.md §9, "batching without changing the stream contract": the
// contract changes only for stacks that opt into this layer).
//
// row: requires stream
//      provides nothing new
//      passes   connection reliable ordered dup_free secure authenticated domain topology
//               sharing direction multiplexed congestion_controlled priority_ordered
//               max_message (not fd_passing: buffered has no call that carries descriptors)
// spec: buffered, buffered(16k), buffered(size=1m)
//
// The write contract differs from an unbuffered stream's (core/stream.hpp):
//   - a write that succeeds has *accepted* its bytes; they may still be in this layer's
//     buffer. An error writing them surfaces at the operation that writes them out: the
//     write that fills the buffer, flush, the read that flushes before it waits,
//     shutdown_write, close or detach; after it the write direction stays failed.
//   - bytes leave in the order they were written, and only at those points: no timer and
//     no end-of-loop flush. A task that writes and then waits for something other than
//     a read of this connection (another connection, a channel, a sleep) must flush first.
//
// Flushing a stack built from a spec string: strata::flush(conn, dl) (core/flush.hpp)
// finds this layer through the query interface (fact::flusher), however many erased
// layers sit on top of it.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/flush.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// buffered_options size the output buffer.
struct buffered_options {
  /// size is the flush threshold: written bytes collect while they total less than
  /// `size`; the write that would bring them to `size` or beyond goes out together with
  /// them in one gather write. 0 or 1: nothing is held back (every write goes through).
  std::size_t size = 64 * 1024;
};

/// buffered_row is buffered's capability declaration.
inline constexpr capability_row buffered_row{
    .name = "buffered",
    .required = prop::unit,
    .required_value = {.unit = unit::stream},
    .provided = {},
    .provided_value = {},
    .passed = prop_set::all() - prop::fd_passing,
};

/// buffered_layer names the row for the stacks_on concept.
struct buffered_layer {
  static constexpr const capability_row& row = buffered_row;
};

/// buffered is the byte stream `Lower` (which it owns) with its small writes coalesced:
/// see the file comment for how its write contract differs from Lower's.
///
/// Memory: the output buffer grows with what is written (from 4 KiB, at most about
/// `size`) and is given back by a read_some that flushes it before waiting for input (an
/// explicit flush keeps it for the next writes); a second one exists
/// only while a write of the lower layer is in flight and another task writes. Not
/// thread-safe; one task may read while another writes (write, flush, shutdown_write are
/// the writing side; close may come from a third task).
template <class Lower>
requires stacks_on<Lower, buffered_layer> && byte_stream<Lower>
class buffered {
 public:
  static constexpr properties capabilities = stack_on(Lower::capabilities, buffered_row);
  /// answers lists the facts buffered answers itself, for type erasure.
  using answers = fact_list<fact::flusher>;

  /// buffered takes ownership of `lower`. `unread` are bytes a previous layer had already
  /// read from `lower` (see detach); read_some returns them before reading `lower`.
  explicit buffered(Lower lower, buffered_options options = {}, std::vector<std::byte> unread = {})
      : lower_(std::move(lower)), size_(std::max<std::size_t>(options.size, 1)), unread_(std::move(unread)) {}

  /// read_some returns what the lower layer has (read_some's contract, core/stream.hpp).
  /// When it would have to wait for the lower layer and output is held back, it first
  /// writes that output out (bounded by `dl`), so a request written before waiting for
  /// its answer leaves; a read that finds bytes at once (in the kernel, or buffered by a
  /// layer below) does not flush. Errors: the lower layer's read errors; if the flush
  /// fails, its error (nothing was read): timed_out / operation_canceled leave the output
  /// held for the next attempt (unless the lower write had begun: then the lower layer
  /// fails the write direction, and the next flush reports that); any other error fails
  /// the write direction for good, drops the output, and is reported by this read once
  /// (later reads go on reading). closed after close or detach.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) {
    if (out_.empty() && unread_at_ == unread_.size() && !closed_) return lower_.read_some(buf, dl);
    return read_slow(buf, dl);
  }

  /// write accepts every byte of `bufs`: it copies them into the output buffer and
  /// returns. When they would bring the buffer to its size, the buffered bytes and these
  /// (not copied) go to the lower layer in one gather write instead, and the call
  /// returns when that write does: a large write goes straight through, after what was
  /// buffered. Errors: the write direction's sticky error (an earlier failed flush, or
  /// closed after shutdown_write, close or detach); from the gather write, the lower
  /// layer's write errors: timed_out / operation_canceled did not accept this write's
  /// bytes and keep the buffered ones (the lower layer fails the direction if its write
  /// had begun); any other error fails the direction and drops the buffered bytes.
  task<result<void>> write(const_buffers bufs, deadline dl) {
    if (try_write(bufs)) co_return result<void>{};
    if (write_error_) co_return write_error_;
    if (in_flight_) {
      auto landed = co_await wait_landed(dl);
      if (!landed) co_return landed;
      if (write_error_) co_return write_error_;
    }
    co_return co_await write_out(bufs, dl);
  }

  /// try_write is write's fast path, without a coroutine: it accepts `bufs` (copies
  /// them into the buffer) and returns true when that needs no write of the lower layer
  /// and no error is pending; otherwise it does nothing and returns false, and write
  /// does the rest. Layers above use it when they can (framing's send does), saving a
  /// coroutine frame per small write.
  bool try_write(const_buffers bufs) {
    if (write_error_) return false;
    auto n = bufs.total_size();
    if (out_.size() + n >= size_) return false;
    if (n == 0) return true;
    if (out_.capacity() == 0) (void)out_.writable(std::min(size_, std::max(n, initial_room)));
    for (auto b : bufs.view()) out_.append(b);
    return true;
  }

  /// flush writes out every byte accepted so far, then flushes the buffering layers below
  /// (if any), and returns when the lower layers have taken them (for a socket: the kernel
  /// has them). When another task's write of the lower layer is in flight it waits for
  /// it first. Errors: as write's gather write; the write direction's sticky error.
  task<result<void>> flush(deadline dl) {
    if (in_flight_) {
      auto landed = co_await wait_landed(dl);
      if (!landed) co_return landed;
    }
    if (write_error_) co_return write_error_;
    if (!out_.empty()) {
      const_buffers nothing;
      auto sent = co_await write_out(nothing, dl);
      if (!sent) co_return sent;
    }
    if constexpr (detail::may_hold_output<Lower>()) {
      auto below = query_below();
      if (below) co_return co_await below->flush(dl);
    }
    co_return result<void>{};
  }

  /// shutdown_write flushes, then half-closes the lower layer: the peer reads
  /// end_of_stream after the last byte. Later writes fail with closed. Errors: the
  /// flush's (then nothing was shut down: a retry may finish the job), the lower layer's
  /// shutdown_write errors, closed after close or detach.
  task<result<void>> shutdown_write(deadline dl) {
    if (closed_) co_return errc::closed;
    if (!shut_) {
      auto flushed = co_await flush(dl);
      if (!flushed) co_return flushed;
      shut_ = true;
      write_error_ = make_error_code(errc::closed);
    }
    co_return co_await lower_.shutdown_write(dl);
  }

  /// close flushes (bounded by `dl`), then closes the lower layer (its orderly close;
  /// core/stream.hpp), in either case. Returns the flush's error if it failed (the bytes
  /// it could not write are lost), else the lower layer's close result. Afterwards every
  /// call fails with closed; a task waiting in read_some wakes with closed.
  task<result<void>> close(deadline dl) {
    if (closed_) co_return errc::closed;
    std::error_code flush_error;
    if (!write_error_) {
      auto flushed = co_await flush(dl);
      if (!flushed) flush_error = flushed.error();
    }
    closed_ = true;
    write_error_ = make_error_code(errc::closed);
    if (!in_flight_) out_.release();
    auto closed = co_await lower_.close(dl);
    if (flush_error) co_return flush_error;
    co_return closed;
  }

  /// detach flushes, then hands back the lower layer and the bytes of `unread` (see the
  /// constructor) not yet returned by read_some. Errors: the flush's (nothing is
  /// detached: the object stays usable), closed after close or detach. No other
  /// operation may be pending. Afterwards every call fails with closed.
  task<result<detached<Lower>>> detach(deadline dl) {
    if (closed_) co_return errc::closed;
    if (!write_error_) {
      auto flushed = co_await flush(dl);
      if (!flushed) co_return unexpected(flushed.error());
    }
    closed_ = true;
    write_error_ = make_error_code(errc::closed);
    out_.release();
    std::vector<std::byte> rest(unread_.begin() + static_cast<std::ptrdiff_t>(unread_at_), unread_.end());
    unread_.clear();
    unread_at_ = 0;
    detached<Lower> out{std::move(lower_), std::move(rest)};
    co_return std::move(out);
  }

  /// query(fact::flusher) answers the query interface (core/flush.hpp) with a handle
  /// on this layer: strata::flush(stack, dl) reaches flush() through it.
  result<flush_handle> query(fact::flusher) const noexcept {
    return flush_handle(const_cast<buffered*>(this), &handle_ops);
  }

  /// pending is how many accepted bytes this layer and the buffering layers below it
  /// still hold (in its buffer or in a write of the lower layer that has not returned).
  std::size_t pending() const noexcept {
    std::size_t below = 0;
    if constexpr (detail::may_hold_output<Lower>()) {
      if (auto handle = query_below(); handle) below = handle->pending();
    }
    return out_.size() + flight_.size() + below;
  }
  /// buffered_capacity is the output buffers' memory now (zero while nothing is held
  /// back and the connection waited for input since).
  std::size_t buffered_capacity() const noexcept { return out_.capacity() + flight_.capacity(); }
  /// size is the flush threshold (buffered_options::size, at least 1).
  std::size_t size() const noexcept { return size_; }

  /// runtime_capabilities is what this stack offers (Lower's properties but fd_passing).
  properties runtime_capabilities() const {
    if constexpr (requires { lower_.runtime_capabilities(); }) {
      return stack_on(lower_.runtime_capabilities(), buffered_row);
    } else {
      return capabilities;
    }
  }

  /// next_layer is the owned lower layer (strata::query reaches the layers below through it).
  Lower& next_layer() noexcept { return lower_; }
  const Lower& next_layer() const noexcept { return lower_; }

 private:
  // The first allocation of the output buffer (unless the write is larger): small
  // messages then fit without growing it several times.
  static constexpr std::size_t initial_room = 4096;

  static task<result<void>> flush_erased(void* self, deadline dl) {
    return static_cast<buffered*>(self)->flush(dl);
  }
  static std::size_t pending_erased(const void* self) noexcept {
    return static_cast<const buffered*>(self)->pending();
  }
  static constexpr flush_handle::ops handle_ops{&flush_erased, &pending_erased};

  result<flush_handle> query_below() const { return strata::query<fact::flusher>(lower_); }

  static bool waited_out(std::error_code ec) noexcept {
    return ec == errc::timed_out || ec == errc::operation_canceled;
  }

  task<result<std::size_t>> read_slow(mutable_buffer buf, deadline dl) {
    if (closed_) co_return errc::closed;
    if (unread_at_ < unread_.size()) {
      auto n = std::min(buf.size(), unread_.size() - unread_at_);
      std::copy_n(unread_.begin() + static_cast<std::ptrdiff_t>(unread_at_), n, buf.begin());
      unread_at_ += n;
      if (unread_at_ == unread_.size()) {
        std::vector<std::byte>().swap(unread_);
        unread_at_ = 0;
      }
      co_return n;
    }
    // Output held back and nobody writing it out: flush, but only if the read must wait.
    if (!out_.empty() && !in_flight_ && !buf.empty()) {
      auto ready = co_await lower_.read_some(buf, deadline::already());
      if (ready || ready.error() != errc::timed_out) co_return ready;
      const_buffers nothing;
      auto sent = co_await write_out(nothing, dl);
      if (!sent) co_return unexpected(sent.error());
      // The connection now waits for input: it holds no output buffer while it does.
      if (out_.empty() && !in_flight_) out_.release();
    }
    co_return co_await lower_.read_some(buf, dl);
  }

  /// wait_landed waits until no write of the lower layer is in flight.
  task<result<void>> wait_landed(deadline dl) {
    while (in_flight_) {
      if (!landed_) landed_ = std::make_unique<event>();
      auto waited = co_await landed_->wait(dl);
      if (!waited) co_return waited;
    }
    co_return result<void>{};
  }

  /// write_out writes what out_ holds and then `tail` (not copied) with one write of the
  /// lower layer. Precondition: no write in flight. While it runs, out_ is empty and
  /// takes the writes of another task; the bytes in flight are in flight_.
  task<result<void>> write_out(const_buffers tail, deadline dl) {
    std::swap(out_, flight_);
    in_flight_ = true;
    if (landed_) landed_->reset();
    auto tail_parts = tail.view();
    std::vector<const_buffer> many;
    std::array<const_buffer, 4> few{};
    std::span<const_buffer> list(few);
    if (tail_parts.size() + 1 > few.size()) {
      many.resize(tail_parts.size() + 1);
      list = many;
    }
    std::size_t count = 0;
    if (!flight_.empty()) list[count++] = flight_.readable();
    for (auto p : tail_parts) list[count++] = p;
    const_buffers gather{std::span<const const_buffer>(list.data(), count)};
    auto sent = co_await lower_.write(gather, dl);
    in_flight_ = false;
    if (sent) {
      flight_.consume(flight_.size());
      // Keep one buffer's storage for the next writes, not two.
      if (out_.empty() && out_.capacity() < flight_.capacity()) std::swap(out_, flight_);
      flight_.release();
    } else if (waited_out(sent.error()) && !closed_) {
      // Keep the bytes, in order, for the next attempt (the lower layer fails the
      // direction if its write had begun, and the next attempt then reports that).
      if (!out_.empty()) flight_.append(out_.readable());
      std::swap(out_, flight_);
      flight_.release();
    } else {
      if (!write_error_) write_error_ = sent.error();
      out_.release();
      flight_.release();
    }
    if (landed_) landed_->set();
    co_return sent;
  }

  Lower lower_;
  std::size_t size_;
  byte_buffer out_;     // accepted bytes not yet handed to the lower layer
  byte_buffer flight_;  // bytes of the lower write in flight
  bool in_flight_ = false;
  bool shut_ = false;
  bool closed_ = false;
  std::error_code write_error_{};
  // An event cannot move; the layer can (it lives in any_stream, in results). Made by
  // the first task that has to wait for a write in flight.
  std::unique_ptr<event> landed_;
  std::vector<std::byte> unread_;
  std::size_t unread_at_ = 0;
};

extern template class buffered<any_stream>;

}  // namespace strata
