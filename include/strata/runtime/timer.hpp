// Sleeping and yielding: the simplest waits, built on the same waiter as all I/O.
#pragma once

#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/result.hpp"

namespace strata {

namespace detail {

struct sleep_wait {
  deadline dl;
  waiter w{};
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if (!w.begin(h, cancel_state_of(h), dl)) return false;
    w.finish_arming(dl);
    return true;
  }
  result<void> await_resume() noexcept {
    w.resumed = true;
    if (w.outcome == errc::timed_out) return {};
    return w.outcome;
  }
};

struct yield_wait {
  std::coroutine_handle<> handle{};
  event_loop* loop = nullptr;  // set while `handle` sits in the ready queue
  yield_wait() noexcept = default;
  yield_wait(const yield_wait&) = delete;
  yield_wait& operator=(const yield_wait&) = delete;
  // A frame destroyed while it waits in the ready queue (its scope was destroyed) must
  // not be resumed later.
  ~yield_wait() {
    if (loop) loop->unschedule(handle);
  }
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    handle = h;
    loop = event_loop::current();
    loop->schedule(h);
  }
  void await_resume() noexcept { loop = nullptr; }
};

}  // namespace detail

/// sleep_until suspends until `dl`. Returns success, or operation_canceled when the
/// scope is canceled first. sleep_until(deadline::never()) waits for cancellation.
inline detail::sleep_wait sleep_until(deadline dl) noexcept { return {dl}; }
/// sleep_for suspends for `d` (see sleep_until).
inline detail::sleep_wait sleep_for(deadline::clock::duration d) noexcept { return {deadline::after(d)}; }
/// yield lets every other ready task run once before this one continues.
inline detail::yield_wait yield() noexcept { return {}; }

}  // namespace strata
