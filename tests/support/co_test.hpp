// Helpers for writing GoogleTest tests as coroutines.
//
// GoogleTest's ASSERT_* macros `return`, which a coroutine may not do; the CO_ASSERT_*
// macros below record the failure and `co_return` instead (from a task<void>).
// run_test drives a coroutine test body on a fresh event loop with a time limit, so a
// test that would hang fails instead.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <utility>

#include "strata/runtime/deadline.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/task.hpp"

/// CO_ASSERT_TRUE fails the test and leaves the coroutine when `cond` is false.
#define CO_ASSERT_TRUE(cond)                        \
  do {                                              \
    if (!(cond)) {                                  \
      ADD_FAILURE() << "CO_ASSERT_TRUE(" #cond ")"; \
      co_return;                                    \
    }                                               \
  } while (0)

/// CO_ASSERT_OK fails the test and leaves the coroutine when the result `r` (an lvalue,
/// evaluated twice) holds an error; the message names the error.
#define CO_ASSERT_OK(r)                                                          \
  do {                                                                           \
    if (!(r)) {                                                                  \
      ADD_FAILURE() << "CO_ASSERT_OK(" #r ") failed: " << (r).error().message(); \
      co_return;                                                                 \
    }                                                                            \
  } while (0)

/// CO_ASSERT_EQ is EXPECT_EQ that also leaves the coroutine on failure (operands are
/// evaluated twice on failure; pass plain values).
#define CO_ASSERT_EQ(a, b) \
  do {                     \
    if (!((a) == (b))) {   \
      EXPECT_EQ(a, b);     \
      co_return;           \
    }                      \
  } while (0)

namespace strata::test {

// (Not in a nested `detail` namespace: that would hide strata::detail from test code in
// strata::test.)
template <class Body>
task<void> run_test_root(Body& body, std::chrono::milliseconds limit, bool& hung) {
  scope s;
  s.spawn(body());
  auto joined = co_await s.join(deadline::after(limit));
  hung = !joined.has_value();
}

/// run_test runs `body()` (a callable returning task<void>) on a fresh event loop until
/// it finishes. When `limit` passes first the body is canceled, allowed to unwind, and
/// the test fails with "did not finish". Call it from a TEST body, not from inside run().
template <class Body>
void run_test(Body&& body, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  bool hung = false;
  strata::run(run_test_root(body, limit, hung));
  if (hung) ADD_FAILURE() << "the test body did not finish within " << limit.count() << "ms";
}

/// on_strata_thread runs `body` (a callable returning task<void>) on a thread of its own
/// with its own event loop, under run_test's `limit`: for tests whose own thread blocks
/// (waiting on a peer process). The thread joins when the returned object goes, or at
/// join(): declare it after everything the body uses by reference.
template <class Body>
std::jthread on_strata_thread(Body body, std::chrono::milliseconds limit = std::chrono::seconds(15)) {
  return std::jthread([body = std::move(body), limit]() mutable { run_test(body, limit); });
}

/// call runs a callable that returns an awaitable (e.g. a capturing lambda coroutine) in
/// a task that owns the callable, so its captures live as long as the coroutine:
/// `s.spawn(call([&]() -> task<void> { ... }))`.
template <class F>
task<void> call(F f) {
  co_await f();
}

/// elapsed_since is the time from `start` to now, in milliseconds (for deadline checks).
inline std::chrono::milliseconds elapsed_since(deadline::clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline::clock::now() - start);
}

}  // namespace strata::test
