// task<T> and run(): values, exceptions, move-only results, stack depth, frame lifetime,
// the frame allocator and the deadlock detector.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "strata/runtime.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

task<int> answer() { co_return 42; }
task<int> sum() { co_return co_await answer() + co_await answer(); }

TEST(Task, NestedAwaitReturnsValues) { EXPECT_EQ(run(sum()), 84); }

TEST(Task, RunReturnsTheValue) {
  EXPECT_EQ(run([]() -> task<std::string> { co_return std::string(1000, 'x'); }()), std::string(1000, 'x'));
}

task<void> bump(int& n) {
  ++n;
  co_return;
}

TEST(Task, VoidTasks) {
  int n = 0;
  run([](int& n) -> task<void> {
    co_await bump(n);
    co_await bump(n);
  }(n));
  EXPECT_EQ(n, 2);
}

task<int> thrower() {
  co_await yield();  // throw after a real suspension, not only synchronously
  throw std::runtime_error("boom");
}

TEST(Task, ExceptionPropagatesToTheAwaiter) {
  auto caught = run([]() -> task<std::string> {
    try {
      (void)co_await thrower();
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "not thrown";
  }());
  EXPECT_EQ(caught, "boom");
}

TEST(Task, ExceptionPropagatesThroughRun) { EXPECT_THROW(run(thrower()), std::runtime_error); }

task<std::unique_ptr<int>> make_owned(int v) { co_return std::make_unique<int>(v); }

TEST(Task, MoveOnlyResult) {
  auto p = run([]() -> task<std::unique_ptr<int>> {
    auto a = co_await make_owned(7);
    auto b = co_await make_owned(*a + 1);
    co_return b;
  }());
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, 8);
}

task<long> depth(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await depth(n - 1);
}

// 100000 tasks awaiting each other: with plain symmetric transfer this only holds when
// the compiler emits tail calls (not at -O0 nor under ASan); the transfer depth bound
// must keep the stack flat in every build.
TEST(Task, DeepRecursionDoesNotOverflowTheStack) { EXPECT_EQ(run(depth(100000)), 100000); }

task<int> one() { co_return 1; }

TEST(Task, LongLoopOfSynchronousAwaitsDoesNotOverflowTheStack) {
  auto total = run([]() -> task<long> {
    long s = 0;
    for (int i = 0; i < 300000; ++i) s += co_await one();
    co_return s;
  }());
  EXPECT_EQ(total, 300000);
}

struct flag_on_destroy {
  bool* flag;
  explicit flag_on_destroy(bool* f) : flag(f) {}
  flag_on_destroy(flag_on_destroy&& o) noexcept : flag(std::exchange(o.flag, nullptr)) {}
  ~flag_on_destroy() {
    if (flag) *flag = true;
  }
};

task<void> never_started(flag_on_destroy guard, bool& ran) {
  ran = true;
  (void)guard;
  co_return;
}

TEST(Task, DestroyingAnUnstartedTaskDestroysItsFrame) {
  bool destroyed = false, ran = false;
  {
    auto t = never_started(flag_on_destroy(&destroyed), ran);
    EXPECT_TRUE(t.valid());
    EXPECT_FALSE(t.done());
    EXPECT_FALSE(destroyed);
  }
  EXPECT_TRUE(destroyed);
  EXPECT_FALSE(ran);
}

TEST(Task, MoveAssignmentDestroysThePreviousFrame) {
  bool first = false, second = false, ran = false;
  auto t = never_started(flag_on_destroy(&first), ran);
  t = never_started(flag_on_destroy(&second), ran);
  EXPECT_TRUE(first);
  EXPECT_FALSE(second);
  task<void> u = std::move(t);
  EXPECT_FALSE(t.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_TRUE(u.valid());
  u = task<void>{};
  EXPECT_TRUE(second);
  EXPECT_FALSE(ran);
}

TEST(Task, AwaitedTaskInheritsTheCancelDomain) {
  bool canceled = run([]() -> task<bool> {
    bool seen = false;
    co_await with_scope([&](scope& s) -> task<void> {
      s.cancel();
      // A plain nested task (no scope of its own) sees the body's canceled domain.
      auto r = co_await
          [](deadline dl) -> task<result<void>> { co_return co_await sleep_until(dl); }(deadline::after(10s));
      seen = r.error() == errc::operation_canceled;
    });
    co_return seen;
  }());
  EXPECT_TRUE(canceled);
}

// -- frame allocator -------------------------------------------------------------------

// frame_address is an awaitable that reports the address of the awaiting frame.
struct frame_address {
  void* where = nullptr;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    where = h.address();
    return false;
  }
  void* await_resume() const noexcept { return where; }
};

task<void> note_frame(std::set<void*>& seen) { seen.insert(co_await frame_address{}); }

TEST(FrameAllocator, SpawnJoinCyclesReuseFrames) {
  // Off under AddressSanitizer and with STRATA_FRAME_POOL=0 (the pool would hide misuse).
  if (!detail::frame_pool_enabled()) GTEST_SKIP() << "frames are not pooled in this process";
  std::set<void*> seen;
  run([](std::set<void*>& seen) -> task<void> {
    for (int i = 0; i < 100000; ++i) {
      scope s;
      s.spawn(note_frame(seen));
      (void)co_await s.join();
    }
  }(seen));
  // Each cycle frees its frames before the next allocates: a handful of blocks serve all.
  EXPECT_LE(seen.size(), 4u);
}

TEST(FrameAllocator, LargeFramesAreNotPooledButWork) {
  auto r = run([]() -> task<int> {
    int total = 0;
    for (int i = 0; i < 1000; ++i) {
      total += co_await []() -> task<int> {
        volatile char big[8192];  // a frame beyond the pooled size classes
        big[0] = 1;
        co_await yield();
        co_return big[0];
      }();
    }
    co_return total;
  }());
  EXPECT_EQ(r, 1000);
}

// -- deadlock detector -----------------------------------------------------------------

// never_resumes is not a strata waiter: nothing in the loop knows about it.
struct never_resumes {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
};

TEST(RunDeathTest, AbortsWhenNothingCanWakeTheRootTask) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run([]() -> task<void> { co_await never_resumes{}; }()), "nothing can wake it");
}

TEST(RunDeathTest, AbortsWhenEveryTaskWaitsOnSomethingForeign) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run([]() -> task<void> {
                 co_await with_scope([](scope& s) -> task<void> {
                   s.spawn([]() -> task<void> { co_await never_resumes{}; }());
                   co_return;
                 });
               }()),
               "nothing can wake it");
}

TEST(Run, NestedRunOnAnotherThreadIsIndependent) {
  auto r = run([]() -> task<int> {
    int inner = 0;
    std::thread t([&] { inner = run(answer()); });
    t.join();
    co_return inner + co_await answer();
  }());
  EXPECT_EQ(r, 84);
}

}  // namespace
}  // namespace strata
