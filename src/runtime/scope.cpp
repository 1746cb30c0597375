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
  if (p.scope_next_) p.scope_next_->scope_prev_ = p.scope_prev_;
  if (p.exception_ && !s->first_exception_) s->first_exception_ = p.exception_;
  auto frame = p.self_;
  frame.destroy();
  if (--s->count_ == 0 && s->joiner_) std::exchange(s->joiner_, nullptr)->complete({});
  return std::noop_coroutine();
}

}  // namespace detail

scope::~scope() {
  if (!tasks_) return;
  // Canceling first completes the waits (and cascades to nested domains); each waiter then
  // takes its completed-but-not-resumed coroutine back out of the ready queue as its frame
  // is destroyed. A task that never started is still queued by spawn(): unqueue it here.
  state_.cancel();
  auto* loop = event_loop::current();
  while (tasks_) {
    auto* p = tasks_;
    tasks_ = p->scope_next_;
    if (tasks_) tasks_->scope_prev_ = nullptr;
    --count_;
    if (!p->started_ && loop) loop->unschedule(p->self_);
    p->self_.destroy();
  }
}

void scope::spawn(task<void> t) {
  auto h = t.release();
  auto& p = h.promise();
  p.owner_ = this;
  p.cancel_ = &state_;
  p.scope_prev_ = nullptr;
  p.scope_next_ = tasks_;
  if (tasks_) tasks_->scope_prev_ = &p;
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
