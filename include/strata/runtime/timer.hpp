// Sleeping and yielding: the simplest waits, built on the same waiter as all I/O.
#pragma once

#include "strata/core/result.hpp"
#include "strata/runtime/event_loop.hpp"

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
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { event_loop::current()->schedule(h); }
  void await_resume() const noexcept {}
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
