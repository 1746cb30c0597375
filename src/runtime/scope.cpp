#include "strata/runtime/scope.hpp"

namespace strata {

namespace detail {

std::coroutine_handle<> scope_task_finished(promise_base& p) noexcept {
  scope* s = p.owner_;
  if (p.scope_prev_) {
    p.scope_prev_->scope_next_ = p.scope_next_;
  } else {
    s->tasks_ = p.scope_next_;
  }
  if (p.scope_next_) {
    p.scope_next_->scope_prev_ = p.scope_prev_;
  } else {
    s->oldest_ = p.scope_prev_;
  }
  if (p.exception_ && !s->first_exception_) s->first_exception_ = p.exception_;
  auto frame = p.self_;
  frame.destroy();
  if (--s->count_ == 0 && s->joiner_) std::exchange(s->joiner_, nullptr)->complete({});
  return std::noop_coroutine();
}

}  // namespace detail

// Destroying n unfinished tasks takes O(n log n) (the log from the deadline heap), not
// O(n^2). It used to be quadratic twice over: the scope canceled its domain first, which
// completed every waiter and so queued its coroutine, and each destroyed frame then took
// its coroutine back out of the ready queue by scanning the queue (as did every task that
// had not started or was queued by yield()); event waiters were also erased from their
// event's list by a scan each. Now the frames are destroyed before the domain is canceled:
// a waiter that was never completed is not queued and unlinks itself in O(1) (O(log n)
// from the deadline heap), and the coroutines that were queued are taken out of the ready
// queue in one pass at the end (event_loop::end_unschedule_batch). Frames are destroyed
// oldest first, the order in which waiters queue on a channel or event, so a list that is
// searched from its front finds each at once.
scope::~scope() {
  if (!tasks_) return;
  auto* loop = event_loop::current();
  if (loop) loop->begin_unschedule_batch();
  // No task code runs from here on (only destructors), so the domain needs to be marked
  // canceled only for them; the cancellation that completes waits is done afterwards, for
  // the scopes outside these frames that follow this one.
  state_.canceled = true;
  while (oldest_) {
    auto* p = oldest_;
    oldest_ = p->scope_prev_;
    if (oldest_) {
      oldest_->scope_next_ = nullptr;
    } else {
      tasks_ = nullptr;
    }
    --count_;
    if (!p->started_ && loop) loop->unschedule(p->self_);  // still queued by spawn()
    p->self_.destroy();
  }
  state_.cancel();
  if (loop) loop->end_unschedule_batch();
}

void scope::spawn(task<void> t) {
  auto h = t.release();
  auto& p = h.promise();
  p.owner_ = this;
  p.cancel_ = &state_;
  p.scope_prev_ = nullptr;
  p.scope_next_ = tasks_;
  if (tasks_) {
    tasks_->scope_prev_ = &p;
  } else {
    oldest_ = &p;
  }
  tasks_ = &p;
  ++count_;
  event_loop::current()->schedule(h);
}

struct scope::join_wait {
  scope* self;
  deadline dl;
  detail::waiter w{};

  // A join is woken only by one of the scope's tasks finishing, never from outside, so
  // it does not count as a pending wait for the loop's deadlock check: a loop whose only
  // waits are joins can never make progress again. (disarm subtracts one; give it back.)
  static void unlink(detail::waiter& w) noexcept {
    auto* s = static_cast<scope*>(w.source);
    if (s->joiner_ == &w) s->joiner_ = nullptr;
    w.loop->note_waiter(+1);
  }
  bool await_ready() const noexcept { return self->count_ == 0; }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    // Joining is not canceled by the scope itself: cancellation reaches the children,
    // and join waits for them to unwind.
    if (!w.begin(h, nullptr, dl)) return false;
    w.source = self;
    w.unlink_source = &unlink;
    self->joiner_ = &w;
    w.finish_arming(dl);
    w.loop->note_waiter(-1);
    return true;
  }
  std::error_code await_resume() noexcept {
    w.resumed = true;
    return w.outcome;
  }
};

task<result<void>> scope::join(deadline dl) {
  std::error_code outcome;
  while (count_ > 0) {
    auto ec = co_await join_wait{this, outcome ? deadline::never() : dl};
    if (ec == errc::timed_out) {
      outcome = ec;
      cancel();
    }
  }
  if (first_exception_) std::rethrow_exception(std::exchange(first_exception_, {}));
  co_return outcome;
}

}  // namespace strata
