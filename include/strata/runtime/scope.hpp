// scope: structured concurrency. A scope owns the tasks spawned into it; join() waits for
// them; cancel() makes every pending operation in them (and in nested scopes) complete
// with errc::operation_canceled so they unwind normally. No task outlives its scope.
#pragma once

#include <cstddef>
#include <exception>

#include "strata/core/result.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// scope is a nursery of tasks running on the current thread's loop.
class scope {
 public:
  /// scope creates a nursery whose cancellation follows `parent` (nullptr: independent).
  explicit scope(detail::cancel_state* parent = nullptr) noexcept : state_(parent) {}
  /// ~scope cancels the tasks still running and destroys their frames, which
  /// deregisters their waits. Prefer join(): destruction gives them no chance to unwind.
  /// Takes time linear in the number of unfinished tasks (log-linear with deadlines).
  ~scope();
  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;

  /// spawn starts `t` on this thread's loop as a child of this scope.
  void spawn(task<void> t);
  /// cancel makes every pending and future blocking call of the scope's tasks complete
  /// with errc::operation_canceled.
  void cancel() noexcept { state_.cancel(); }
  bool canceled() const noexcept { return state_.canceled; }
  /// active is the number of spawned tasks that have not finished.
  std::size_t active() const noexcept { return count_; }

  /// join waits until every spawned task has finished. When `dl` passes first, join
  /// cancels the scope, keeps waiting for the tasks to unwind and then returns timed_out.
  /// An exception that escaped a spawned task is rethrown here.
  task<result<void>> join(deadline dl = deadline::never());

  detail::cancel_state& cancel_domain() noexcept { return state_; }

 private:
  friend std::coroutine_handle<> detail::scope_task_finished(detail::promise_base&) noexcept;
  struct join_wait;

  detail::cancel_state state_;
  detail::promise_base* tasks_ = nullptr;   // newest first; linked through scope_next_
  detail::promise_base* oldest_ = nullptr;  // the tail of tasks_
  std::size_t count_ = 0;
  detail::waiter* joiner_ = nullptr;
  std::exception_ptr first_exception_{};
};

/// with_scope runs `body(scope&)` (a coroutine) inside a fresh scope whose cancellation
/// follows the caller's, then joins the scope. The body itself runs in the scope's
/// cancellation domain, so scope.cancel() also stops the body's own waits (e.g. accept).
template <class Body>
task<void> with_scope(Body body) {
  scope s(co_await detail::current_cancel{});
  std::exception_ptr failure;
  try {
    auto t = body(s);
    t.handle().promise().cancel_ = &s.cancel_domain();
    co_await std::move(t);
  } catch (...) {
    failure = std::current_exception();
    s.cancel();
  }
  (void)co_await s.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace strata
