// Deadlines and timers: sleep ordering, expiry tolerance, already-expired deadlines that
// must fail without suspending, never, and deadline removal from the middle of the heap.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

using clock_type = deadline::clock;
// Upper bounds are generous: CI machines and sanitizers are slow; lower bounds are strict.
constexpr auto slack = 200ms;

using test::call;

TEST(Deadline, NeverAlreadyAndArithmetic) {
  auto never = deadline::never();
  EXPECT_TRUE(never.is_never());
  EXPECT_FALSE(never.expired());
  EXPECT_EQ(never.remaining(), clock_type::duration::max());
  EXPECT_TRUE(deadline::already().expired());
  EXPECT_EQ(deadline::already().remaining(), clock_type::duration::zero());
  auto soon = deadline::after(1s);
  EXPECT_FALSE(soon.expired());
  EXPECT_GT(soon.remaining(), 900ms);
  EXPECT_LE(soon.remaining(), 1s);
  EXPECT_EQ(deadline::earlier(never, soon), soon);
  EXPECT_EQ(deadline::earlier(soon, never), soon);
  EXPECT_EQ(deadline::earlier(deadline::already(), soon), deadline::already());
  auto past = deadline::at(clock_type::now() - 1s);
  EXPECT_TRUE(past.expired());
  EXPECT_EQ(past.remaining(), clock_type::duration::zero());
}

TEST(Timer, SleepForHonoursTheDuration) {
  auto elapsed = run([]() -> task<clock_type::duration> {
    auto start = clock_type::now();
    auto r = co_await sleep_for(30ms);
    EXPECT_TRUE(r);
    co_return clock_type::now() - start;
  }());
  EXPECT_GE(elapsed, 30ms);
  EXPECT_LT(elapsed, 30ms + slack);
}

TEST(Timer, SleepersWakeInDeadlineOrder) {
  struct wake {
    clock_type::time_point due, woke;
  };
  std::vector<wake> wakes;
  run([](std::vector<wake>& wakes) -> task<void> {
    auto base = clock_type::now() + 100ms;  // far enough that every sleeper parks first
    std::vector<int> offsets;
    for (int i = 0; i < 20; ++i) offsets.push_back(i % 10);  // pairs of equal deadlines
    std::shuffle(offsets.begin(), offsets.end(), std::mt19937(12345));
    co_await with_scope([&](scope& s) -> task<void> {
      for (int off : offsets) {
        auto due = base + std::chrono::milliseconds(2 * off);
        s.spawn(call([&wakes, due]() -> task<void> {
          auto r = co_await sleep_until(deadline::at(due));
          EXPECT_TRUE(r);
          wakes.push_back({due, clock_type::now()});
        }));
      }
      co_return;
    });
  }(wakes));
  ASSERT_EQ(wakes.size(), 20u);
  for (std::size_t i = 0; i < wakes.size(); ++i) {
    EXPECT_GE(wakes[i].woke, wakes[i].due) << "woke early at " << i;
    EXPECT_LT(wakes[i].woke, wakes[i].due + slack) << "woke late at " << i;
    if (i > 0) {
      EXPECT_LE(wakes[i - 1].due, wakes[i].due) << "out of deadline order at " << i;
    }
  }
}

TEST(Timer, SleepUntilAPastDeadlineSucceedsAtOnce) {
  bool ok = run([]() -> task<bool> {
    auto a = co_await sleep_until(deadline::already());
    auto b = co_await sleep_until(deadline::at(clock_type::now() - 1h));
    auto c = co_await sleep_for(0ms);
    auto d = co_await sleep_for(-5ms);
    co_return a&& b&& c&& d;
  }());
  EXPECT_TRUE(ok);
}

// did_not_suspend runs `op` in a task while a sibling is queued: when `op` completes
// without suspending, the sibling has not run yet.
template <class Op>
task<bool> did_not_suspend(Op op) {
  bool sibling_ran = false, suspended = true;
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(call([&]() -> task<void> {
      sibling_ran = true;
      co_return;
    }));
    co_await op();
    suspended = sibling_ran;
  });
  co_return !suspended;
}

TEST(Timer, ExpiredDeadlinesFailAtOnceWithoutSuspending) {
  run([]() -> task<void> {
    for (auto dl : {deadline::already(), deadline::at(clock_type::now() - 1s)}) {
      event ev;
      EXPECT_TRUE(co_await did_not_suspend([&]() -> task<void> {
        auto r = co_await ev.wait(dl);
        EXPECT_EQ(r.error(), errc::timed_out);
      }));
      channel<int> ch(1);
      EXPECT_TRUE(co_await did_not_suspend([&]() -> task<void> {
        auto r = co_await ch.recv(dl);
        EXPECT_EQ(r.error(), errc::timed_out);
      }));
      EXPECT_TRUE(co_await did_not_suspend([&]() -> task<void> {
        EXPECT_TRUE(co_await ch.send(1, dl));  // room: succeeds without waiting
        auto r = co_await ch.send(2, dl);      // full
        EXPECT_EQ(r.error(), errc::timed_out);
      }));
      EXPECT_TRUE(co_await did_not_suspend([&]() -> task<void> {
        auto r = co_await sleep_until(dl);
        EXPECT_TRUE(r);
      }));
    }
  }());
}

TEST(Timer, EventWaitTimesOutWithinTolerance) {
  auto elapsed = run([]() -> task<clock_type::duration> {
    event ev;
    auto start = clock_type::now();
    auto r = co_await ev.wait(deadline::after(25ms));
    EXPECT_EQ(r.error(), errc::timed_out);
    co_return clock_type::now() - start;
  }());
  EXPECT_GE(elapsed, 25ms);
  EXPECT_LT(elapsed, 25ms + slack);
}

TEST(Timer, OneDeadlineSharedAcrossCalls) {
  run([]() -> task<void> {
    auto dl = deadline::after(20ms);
    event a, b;
    auto r1 = co_await a.wait(dl);
    EXPECT_EQ(r1.error(), errc::timed_out);
    EXPECT_TRUE(co_await did_not_suspend([&]() -> task<void> {
      auto r2 = co_await b.wait(dl);  // the budget is spent: fails at once
      EXPECT_EQ(r2.error(), errc::timed_out);
    }));
  }());
}

TEST(Timer, NeverWaitsUntilCanceled) {
  auto r = run([]() -> task<std::error_code> {
    std::error_code seen;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { seen = (co_await sleep_until(deadline::never())).error(); }));
      (void)co_await sleep_for(10ms);
      EXPECT_EQ(s.active(), 1u);  // still sleeping
      s.cancel();
    });
    co_return seen;
  }());
  EXPECT_EQ(r, make_error_code(errc::operation_canceled));
}

TEST(Timer, WaitsRemovedFromTheMiddleOfTheHeapDoNotDisturbTheRest) {
  // 200 waits with random deadlines; half are satisfied early in random order (removing
  // their deadline from arbitrary heap positions); the rest must time out in deadline order.
  struct outcome {
    int index;
    clock_type::time_point due, woke;
    std::error_code ec;
  };
  std::vector<outcome> outcomes;
  run([](std::vector<outcome>& outcomes) -> task<void> {
    constexpr int n = 200;
    std::mt19937 rng(7);
    std::vector<std::unique_ptr<event>> events;
    std::vector<clock_type::time_point> due;
    auto base = clock_type::now() + 100ms;  // far enough that the sets come first
    for (int i = 0; i < n; ++i) {
      events.push_back(std::make_unique<event>());
      due.push_back(base + std::chrono::microseconds(rng() % 30000));
    }
    co_await with_scope([&](scope& s) -> task<void> {
      for (int i = 0; i < n; ++i) {
        s.spawn(call([&outcomes, &events, &due, i]() -> task<void> {
          auto r = co_await events[i]->wait(deadline::at(due[i]));
          outcomes.push_back({i, due[i], clock_type::now(), r.error()});
        }));
      }
      co_await yield();  // every waiter is parked now
      std::vector<int> order(n);
      for (int i = 0; i < n; ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), rng);
      for (int i = 0; i < n / 2; ++i) events[order[i]]->set();
    });
  }(outcomes));
  ASSERT_EQ(outcomes.size(), 200u);
  int set = 0, timed_out = 0;
  clock_type::time_point last_due{};
  for (auto& o : outcomes) {
    if (!o.ec) {
      ++set;
      EXPECT_EQ(timed_out, 0) << "a set event woke after a timeout";
      continue;
    }
    ++timed_out;
    EXPECT_EQ(o.ec, make_error_code(errc::timed_out));
    EXPECT_GE(o.woke, o.due);
    EXPECT_LE(last_due, o.due) << "timeouts out of order at waiter " << o.index;
    last_due = o.due;
  }
  EXPECT_EQ(set, 100);
  EXPECT_EQ(timed_out, 100);
}

}  // namespace
}  // namespace strata
