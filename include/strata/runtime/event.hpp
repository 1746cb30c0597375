// event: a one-thread, manual-reset signal. Tests and protocols wait on events instead
// of sleeping: set() wakes every waiter, and waits after set() return at once.
#pragma once

#include <vector>

#include "strata/core/result.hpp"
#include "strata/runtime/event_loop.hpp"

namespace strata {

/// event is a flag that tasks on the same thread can wait for.
class event {
 public:
  event() = default;
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  ~event() { set(); }

  /// set raises the flag and wakes every waiter.
  void set() noexcept {
    set_ = true;
    auto waiting = std::move(waiters_);
    waiters_.clear();
    for (auto* w : waiting) w->complete({});
  }
  void reset() noexcept { set_ = false; }
  bool is_set() const noexcept { return set_; }

  struct wait_awaiter {
    event* self;
    deadline dl;
    detail::waiter w{};
    static void unlink(detail::waiter& w) noexcept {
      auto& list = static_cast<event*>(w.source)->waiters_;
      std::erase(list, &w);
    }
    bool await_ready() const noexcept { return self->set_; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      if (!w.begin(h, detail::cancel_state_of(h), dl)) return false;
      w.source = self;
      w.unlink_source = &unlink;
      self->waiters_.push_back(&w);
      w.finish_arming(dl);
      return true;
    }
    result<void> await_resume() noexcept {
      w.resumed = true;
      return w.outcome;
    }
  };
  /// wait suspends until set(). Errors: timed_out, operation_canceled.
  wait_awaiter wait(deadline dl) noexcept { return {this, dl}; }

 private:
  bool set_ = false;
  std::vector<detail::waiter*> waiters_;
};

}  // namespace strata
