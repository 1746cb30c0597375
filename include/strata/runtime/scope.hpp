// scope: structured concurrency. A scope owns the tasks spawned into it; join() waits for
// them; cancel() makes every pending operation in them (and in nested scopes) complete
// with errc::operation_canceled so they unwind normally. No task outlives its scope.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <type_traits>

#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// scope is a nursery of tasks running on the current thread's loop.
///
/// A scope's cancellation domain either stands alone (`scope s;`) or follows another
/// one: `scope s = co_await scope::nested();` follows the awaiting task's domain (as
/// with_scope does), `scope s(parent);` follows the scope `parent`. A following scope is
/// canceled with everything it follows, and can also be canceled on its own (from any task
/// of the thread) without reaching its parent.
class scope {
 public:
  /// scope creates an independent nursery: nothing but its own cancel() cancels it.
  scope() noexcept : state_(nullptr) {}
  /// scope creates a nursery that follows `parent`'s cancellation: it starts canceled if
  /// `parent` is, and `parent.cancel()` (or the cancellation of anything `parent` follows)
  /// cancels it too. Canceling it does not cancel `parent`. If `parent` is destroyed first,
  /// this scope goes on as an independent one.
  explicit scope(scope& parent) noexcept : state_(&parent.state_) {}
  /// scope creates a nursery whose cancellation follows `parent` (nullptr: independent).
  /// Internal: user code uses scope(scope&) or scope::nested().
  explicit scope(detail::cancel_state* parent) noexcept : state_(parent) {}
  /// ~scope cancels the tasks still running and destroys their frames, which
  /// deregisters their waits. Prefer join(): destruction gives them no chance to unwind.
  /// Takes time linear in the number of unfinished tasks (log-linear with deadlines).
  ~scope();
  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;

  struct nested_awaiter;
  /// nested makes a scope that follows the awaiting task's cancellation (the domain its
  /// waits are canceled by): `scope s = co_await scope::nested();`. Canceling the task's
  /// scope (or anything it follows) cancels `s`; `s.cancel()`, e.g. from a sibling task,
  /// cancels only `s`'s tasks. Does not suspend.
  static nested_awaiter nested() noexcept;

  /// spawn starts `t` on this thread's loop as a child of this scope.
  void spawn(task<void> t);
  /// spawn(f) starts the coroutine `f()` as a child and keeps `f` (a lambda and its
  /// captures) alive until it has finished: `s.spawn([&]() -> task<void> { ... });`.
  /// Prefer it to `s.spawn([&]() -> task<void> { ... }())`, whose captures die with the
  /// temporary lambda when that statement ends, while the task runs on.
  template <class F>
  requires std::is_invocable_r_v<task<void>, F&> void spawn(F f) { spawn(owning(std::move(f))); }
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
  template <class F>
  static task<void> owning(F f) {
    co_await f();
  }
  friend std::coroutine_handle<> detail::scope_task_finished(detail::promise_base&) noexcept;
  struct join_wait;

  detail::cancel_state state_;
  detail::promise_base* tasks_ = nullptr;   // newest first; linked through scope_next_
  detail::promise_base* oldest_ = nullptr;  // the tail of tasks_
  std::size_t count_ = 0;
  detail::waiter* joiner_ = nullptr;
  std::exception_ptr first_exception_{};
};

/// scope::nested_awaiter is what scope::nested() returns; co_await it for the scope.
struct scope::nested_awaiter {
  detail::cancel_state* parent = nullptr;
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    parent = detail::cancel_state_of(h);
    return false;
  }
  // The scope is built in place (guaranteed copy elision): its domain is linked into the
  // parent's by address, so it can never be moved.
  scope await_resume() const noexcept { return scope(parent); }
};

inline scope::nested_awaiter scope::nested() noexcept { return {}; }

/// with_scope runs `body(scope&)` (a coroutine) inside a fresh scope whose cancellation
/// follows the caller's, then joins the scope. The body itself runs in the scope's
/// cancellation domain, so scope.cancel() also stops the body's own waits (e.g. accept).
///
/// What the spawned tasks may use after the body has returned: the body object (a
/// lambda's captures) and the body coroutine's frame with its parameters live until the
/// join has finished. The body's local variables do not: C++ ends them when the body
/// returns, before any join can run (a local with a destructor, such as a std::string, is
/// destroyed then). State that children share belongs in the caller, in the lambda's
/// captures, or in a local of a body that ends with `co_await s.join()`.
template <class Body>
task<void> with_scope(Body body) {
  scope s = co_await scope::nested();
  std::exception_ptr failure;
  // Declared outside the try block so that the body's frame is destroyed only after the
  // join: a child that still uses the frame (its parameters, or a local's storage) after
  // the body returned reads live memory, not a freed (or recycled) frame.
  task<void> t;
  try {
    t = body(s);
    t.handle().promise().cancel_ = &s.cancel_domain();
    co_await t;
  } catch (...) {
    failure = std::current_exception();
    s.cancel();
  }
  (void)co_await s.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace strata
