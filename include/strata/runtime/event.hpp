// event: a one-thread, manual-reset signal. Tests and protocols wait on events instead
// of sleeping: set() wakes every waiter, and waits after set() return at once.
#pragma once

#include <vector>

#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/result.hpp"

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
    holes_ = 0;
    for (auto* w : waiting) {
      if (w) w->complete({});
    }
  }
  void reset() noexcept { set_ = false; }
  bool is_set() const noexcept { return set_; }

  struct wait_awaiter {
    event* self;
    deadline dl;
    detail::waiter w{};
    // A waiter leaves a hole at its index (source_tag) instead of being erased, so that
    // destroying or canceling n waiters costs O(n), not O(n^2); the list is compacted when
    // half of it is holes. (After set() the list no longer holds the waiter.)
    static void unlink(detail::waiter& w) noexcept {
      auto* ev = static_cast<event*>(w.source);
      auto& list = ev->waiters_;
      if (w.source_tag >= list.size() || list[w.source_tag] != &w) return;
      list[w.source_tag] = nullptr;
      if (++ev->holes_ * 2 > list.size()) ev->compact();
    }
    bool await_ready() const noexcept { return self->set_; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      if (!w.begin(h, detail::cancel_state_of(h), dl)) return false;
      w.source = self;
      w.source_tag = self->waiters_.size();
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
  void compact() noexcept {
    std::size_t n = 0;
    for (auto* w : waiters_) {
      if (!w) continue;
      w->source_tag = n;
      waiters_[n++] = w;
    }
    waiters_.resize(n);
    holes_ = 0;
  }

  bool set_ = false;
  std::vector<detail::waiter*> waiters_;  // in arrival order; nullptr: a waiter that left
  std::size_t holes_ = 0;
};

}  // namespace strata
