// task<T>: a lazy, move-only coroutine that produces a T. Awaiting a task starts it and
// resumes the awaiter by symmetric transfer when it finishes, so chains of tasks need no
// scheduler round trip. Frames come from a per-thread recycling allocator.
//
// Symmetric transfer only uses no stack when the compiler turns it into a tail call, which
// g++ does at -O2 without sanitizers but not at -O0/-O1 or under ASan. So that a loop of a
// million synchronously finishing awaits (or a recursion 100000 awaits deep) cannot
// overflow the stack in those builds either, every transfer is counted: after
// max_transfer_depth transfers without returning to the event loop, the next one hands the
// coroutine to the loop's resume_chain (a trampoline) instead, which unwinds the stack.
#pragma once

#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include "strata/runtime/frame_allocator.hpp"

namespace strata {

class scope;

namespace detail {

struct cancel_state;

/// trampoline is this thread's resume_chain state (see transfer_to).
struct trampoline {
  std::coroutine_handle<> next{};
  unsigned depth = 0;
  bool active = false;
};
inline constinit thread_local trampoline trampoline_state{};
inline constexpr unsigned max_transfer_depth = 64;

/// transfer_to is what an await_suspend returns to switch to `h`: `h` itself (symmetric
/// transfer) while the chain is shallow, or noop_coroutine() after parking `h` for the
/// resume_chain that runs this thread's coroutines, which resumes it with an empty stack.
inline std::coroutine_handle<> transfer_to(std::coroutine_handle<> h) noexcept {
  auto& t = trampoline_state;
  if (t.active && ++t.depth >= max_transfer_depth) {
    t.next = h;
    return std::noop_coroutine();
  }
  return h;
}

/// resume_chain resumes `h` and then every coroutine that transfer_to parked meanwhile.
/// The event loop resumes coroutines only through it; strata code never calls resume().
inline void resume_chain(std::coroutine_handle<> h) {
  auto& t = trampoline_state;
  const trampoline saved = t;  // a nested run() on this thread keeps the outer chain
  t.active = true;
  while (h) {
    t.depth = 0;
    t.next = {};
    h.resume();
    h = t.next;
  }
  t = saved;
}

/// promise_base is shared by every strata coroutine: the continuation to resume, the
/// cancellation domain inherited from the awaiter, and the scope that owns a spawned task.
struct promise_base {
  std::coroutine_handle<> continuation_{};
  cancel_state* cancel_ = nullptr;
  scope* owner_ = nullptr;
  promise_base* scope_prev_ = nullptr;
  promise_base* scope_next_ = nullptr;
  std::coroutine_handle<> self_{};
  std::exception_ptr exception_{};
  bool started_ = false;  // left initial_suspend (so it is not waiting in a ready queue)

  static void* operator new(std::size_t size) { return allocate_frame(size); }
  static void operator delete(void* p, std::size_t size) noexcept { deallocate_frame(p, size); }

  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
};

/// scope_task_finished is called when a task spawned into a scope reaches its end; it
/// destroys the frame and returns the coroutine to run next.
std::coroutine_handle<> scope_task_finished(promise_base& promise) noexcept;

struct initial_awaiter {
  promise_base* promise;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept { promise->started_ = true; }
};

struct final_awaiter {
  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
    promise_base& p = h.promise();
    if (p.continuation_) return transfer_to(p.continuation_);
    if (p.owner_) return scope_task_finished(p);
    return std::noop_coroutine();
  }
  void await_resume() const noexcept {}
};

template <class P>
cancel_state* cancel_state_of(std::coroutine_handle<P> h) noexcept {
  if constexpr (std::is_base_of_v<promise_base, P>) {
    return h.promise().cancel_;
  } else {
    return nullptr;
  }
}

template <class T>
struct value_storage {
  std::variant<std::monostate, T> value_;
  template <class U = T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.template emplace<1>(std::forward<U>(v));
  }
  T take() { return std::get<1>(std::move(value_)); }
};

template <>
struct value_storage<void> {
  void return_void() noexcept {}
  void take() noexcept {}
};

}  // namespace detail

/// task is a lazily started coroutine returning T; co_await it to run it.
///
/// A task that is destroyed before it finishes destroys its frame, which deregisters
/// every wait it was suspended in. An exception escaping the coroutine is rethrown to the
/// awaiter (strata's I/O paths report errors as values and do not throw).
template <class T = void>
class [[nodiscard]] task {
 public:
  struct promise_type : detail::promise_base, detail::value_storage<T> {
    task get_return_object() noexcept {
      auto h = std::coroutine_handle<promise_type>::from_promise(*this);
      self_ = h;
      return task{h};
    }
    detail::initial_awaiter initial_suspend() noexcept { return {this}; }
    detail::final_awaiter final_suspend() const noexcept { return {}; }
  };
  using handle_type = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  task(task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_) h_.destroy();
  }

  bool valid() const noexcept { return static_cast<bool>(h_); }
  bool done() const noexcept { return h_ && h_.done(); }

  struct awaiter {
    handle_type h;
    bool await_ready() const noexcept { return !h || h.done(); }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) noexcept {
      auto& p = h.promise();
      p.continuation_ = caller;
      if (!p.cancel_) p.cancel_ = detail::cancel_state_of(caller);
      return detail::transfer_to(h);
    }
    T await_resume() {
      auto& p = h.promise();
      if (p.exception_) std::rethrow_exception(std::exchange(p.exception_, {}));
      return p.take();
    }
  };
  awaiter operator co_await() && noexcept { return awaiter{h_}; }
  awaiter operator co_await() & noexcept { return awaiter{h_}; }

  /// release gives up ownership of the frame (used by scope and run).
  handle_type release() noexcept { return std::exchange(h_, {}); }
  handle_type handle() const noexcept { return h_; }

 private:
  explicit task(handle_type h) noexcept : h_(h) {}
  handle_type h_{};
};

}  // namespace strata
