// pollable_fd: the one descriptor type of the runtime. It owns a non-blocking descriptor,
// its registration with this thread's event loop and the loop's readiness hint, and runs
// the "try the system call; when it would block, wait for readiness until the deadline;
// try again" loop, so no transport writes that loop or sees the hint. (Seastar's
// pollable_fd is the model.) io_uring, when it comes, changes this type, not the
// transports (DESIGN.md section 9).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <system_error>
#include <utility>

#include "strata/runtime/deadline.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"
#include "strata/runtime/timer.hpp"

namespace strata {

namespace detail {

/// io_op is the awaitable of pollable_fd::perform_read / perform_write. It tries `Call`
/// at once when the hint says the direction may be ready; otherwise, or when the call
/// would block, it parks on the loop, which retries the call itself when the readiness
/// edge comes (a spurious edge parks it again), so one co_await costs no coroutine frame
/// and exactly the system calls the loop by hand would make.
template <class Call>
class io_op : private waiter {
 public:
  io_op(int fd, bool write, std::size_t short_below, deadline dl, Call call) noexcept
      : fd_(fd), write_(write), short_below_(short_below), dl_(dl), call_(std::move(call)) {}
  io_op(const io_op&) = delete;
  io_op& operator=(const io_op&) = delete;

  bool await_ready() noexcept {
    if (fd_ < 0) {
      error_ = make_error_code(errc::closed);
      return true;
    }
    auto* loop = event_loop::current();
    return loop->io_ready(fd_, write_) && attempt(loop);
  }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    for (;;) {
      if (!begin(h, cancel_state_of(h), dl_)) {
        error_ = outcome;
        return false;
      }
      if (loop->watch_io(fd_, write_, *this, &io_op::on_ready)) {
        finish_arming(dl_);
        return true;
      }
      if (outcome) {
        error_ = outcome;
        return false;
      }
      // A descriptor epoll cannot watch (a regular file) is always ready: try now.
      if (attempt(loop)) return false;
    }
  }

  /// await_resume is the call's result (its return value), or the error of the call or
  /// of the wait: timed_out, operation_canceled, closed (the descriptor was closed or
  /// its waits aborted), invalid_argument (another task waits on this direction).
  result<std::size_t> await_resume() noexcept {
    resumed = true;
    if (!done_ && !error_)
      error_ = outcome ? outcome : make_error_code(std::errc::resource_unavailable_try_again);
    if (error_) return unexpected(error_);
    return value_;
  }

 private:
  // attempt makes the call once (again on EINTR). true: done (value or error); false: it
  // would block, and the hint now says so.
  bool attempt(event_loop* loop) noexcept {
    for (;;) {
      ssize_t n = call_();
      if (n >= 0) {
        value_ = static_cast<std::size_t>(n);
        if (value_ > 0 && value_ < short_below_) loop->io_drained(fd_, write_);
        done_ = true;
        return true;
      }
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        loop->io_drained(fd_, write_);
        return false;
      }
      error_ = from_errno(err);
      done_ = true;
      return true;
    }
  }
  static bool on_ready(waiter& w) noexcept {
    auto& self = static_cast<io_op&>(w);
    return self.attempt(self.loop);
  }

  int fd_;
  bool write_;
  bool done_ = false;
  std::size_t short_below_;
  deadline dl_;
  Call call_;
  std::size_t value_ = 0;
  std::error_code error_{};
};

}  // namespace detail

/// pollable_fd owns one non-blocking descriptor driven by this thread's event loop.
///
/// Every system call that may block goes through perform_read or perform_write: the call
/// is a callable returning the system call's `ssize_t` (setting errno on -1), tried until
/// it does not fail with EAGAIN/EWOULDBLOCK (EINTR is retried at once). A caller that
/// wants another "not yet" (a FIFO without a writer yet) makes its call return -1 with
/// errno EAGAIN. The readiness hint (see event_loop.cpp) stays inside this type.
///
/// One task at a time may wait on each direction (a second gets invalid_argument). Not
/// thread-safe; the descriptor belongs to the thread whose loop it was first waited on.
class pollable_fd {
 public:
  pollable_fd() noexcept = default;
  /// pollable_fd owns `fd`, which must already be non-blocking (see adopt).
  explicit pollable_fd(int fd) noexcept : fd_(fd) {}
  pollable_fd(pollable_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  pollable_fd& operator=(pollable_fd&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~pollable_fd() { close(); }

  /// adopt makes `fd` non-blocking and close-on-exec and takes it; on failure `fd` is
  /// left open and the caller's.
  static result<pollable_fd> adopt(int fd) noexcept;

  /// get is the descriptor (still owned), or -1.
  int get() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  /// release gives the descriptor to the caller (who must close it) after aborting its
  /// waits and dropping its registration.
  int release() noexcept {
    abort_waits();
    return std::exchange(fd_, -1);
  }
  /// close aborts the waits, drops the registration and closes the descriptor.
  void close() noexcept;
  /// abort_waits makes every task waiting on the descriptor complete with `closed` and
  /// drops the registration; the descriptor stays open (a close that drains it first).
  void abort_waits() noexcept;

  /// perform_read runs `call` until it does not block, waiting for readability between
  /// tries until `dl`. Returns the call's non-negative result. A result below
  /// `short_below` (but above 0) tells the hint that the input is drained (a stream read
  /// that got less than it asked for); 0 (datagrams, descriptor-carrying reads) never
  /// does. Errors: the call's (from_errno), timed_out, operation_canceled, closed,
  /// invalid_argument. A timeout or cancel leaves nothing behind: the call did not run.
  template <class Call>
  detail::io_op<Call> perform_read(Call call, std::size_t short_below, deadline dl) noexcept {
    return {fd_, false, short_below, dl, std::move(call)};
  }
  template <class Call>
  detail::io_op<Call> perform_read(Call call, deadline dl) noexcept {
    return {fd_, false, 0, dl, std::move(call)};
  }
  /// perform_write is perform_read for the write direction (no short hint: a partial
  /// write may be followed by room).
  template <class Call>
  detail::io_op<Call> perform_write(Call call, deadline dl) noexcept {
    return {fd_, true, 0, dl, std::move(call)};
  }

  /// try_read makes `call` once without waiting, unless the readiness hint knows the
  /// descriptor cannot have become readable since a call last would have blocked (then
  /// it makes no system call). Returns the call's result, or would-block
  /// (std::errc::resource_unavailable_try_again), or the call's error.
  template <class Call>
  result<std::size_t> try_read(Call call) noexcept {
    return try_io(false, std::move(call));
  }

  /// try_write is try_read for the write direction: `call` once without waiting, unless
  /// the hint knows the descriptor cannot take anything since a call last would have
  /// blocked.
  template <class Call>
  result<std::size_t> try_write(Call call) noexcept {
    return try_io(true, std::move(call));
  }

  /// perform_polled runs `call` until it does not block, retrying on a timer (50 us
  /// doubling to 5 ms) rather than on readiness: for a would-block that no edge of this
  /// descriptor announces (a full unix datagram queue of another socket, a unix
  /// listener's full backlog). Errors as perform_read.
  template <class Call>
  task<result<std::size_t>> perform_polled(Call call, deadline dl) {
    auto backoff = std::chrono::microseconds(50);
    for (;;) {
      if (fd_ < 0) co_return errc::closed;
      ssize_t n = call();
      if (n >= 0) co_return static_cast<std::size_t>(n);
      int err = errno;
      if (err == EINTR) continue;
      if (err != EAGAIN && err != EWOULDBLOCK) co_return unexpected(from_errno(err));
      // TODO(perf): nothing announces room in another socket's queue; poll on a timer.
      if (dl.expired()) co_return errc::timed_out;
      if (auto slept = co_await sleep_until(deadline::earlier(dl, deadline::after(backoff))); !slept) {
        co_return unexpected(slept.error());
      }
      backoff = std::min<std::chrono::microseconds>(backoff * 2, std::chrono::milliseconds(5));
    }
  }

  /// readable waits until the descriptor may be readable (edge-triggered: call it after
  /// a read would have blocked), for descriptors whose "read" is a notification (pidfd,
  /// epoll, signalfd). Errors as perform_read.
  detail::io_wait readable(deadline dl) const noexcept { return wait_readable(fd_, dl); }
  /// writable waits until the descriptor may be writable; see readable.
  detail::io_wait writable(deadline dl) const noexcept { return wait_writable(fd_, dl); }

  /// connect starts a connection of this (stream) socket to the `len`-byte socket
  /// address `addr` and waits for it until `dl`. Errors: the connection's (refused,
  /// unreachable, ...), timed_out, operation_canceled, closed. EAGAIN from connect(2)
  /// is a failure, not "in progress" (a unix listener's full queue).
  task<result<void>> connect(const void* addr, unsigned len, deadline dl);

 private:
  template <class Call>
  result<std::size_t> try_io(bool write, Call call) noexcept {
    if (fd_ < 0) return errc::closed;
    auto* loop = event_loop::current();
    if (!loop->io_ready(fd_, write))
      return unexpected(make_error_code(std::errc::resource_unavailable_try_again));
    for (;;) {
      ssize_t n = call();
      if (n >= 0) return static_cast<std::size_t>(n);
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        loop->io_drained(fd_, write);
        return unexpected(make_error_code(std::errc::resource_unavailable_try_again));
      }
      return unexpected(from_errno(err));
    }
  }

  int fd_ = -1;
};

}  // namespace strata
