// event: set before or after the wait, reset, deadlines, many waiters.
#include <gtest/gtest.h>

#include <vector>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

using clock_type = deadline::clock;

using test::call;

TEST(Event, SetBeforeWaitReturnsAtOnce) {
  run([]() -> task<void> {
    event ev;
    EXPECT_FALSE(ev.is_set());
    ev.set();
    EXPECT_TRUE(ev.is_set());
    // Even with an expired deadline: nothing needs to wait.
    EXPECT_TRUE(co_await ev.wait(deadline::already()));
    EXPECT_TRUE(co_await ev.wait(deadline::never()));
    EXPECT_TRUE(ev.is_set());  // manual reset: waits do not consume the flag
  }());
}

TEST(Event, SetAfterWaitWakesTheWaiter) {
  run([]() -> task<void> {
    event ev;
    std::vector<int> order;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        order.push_back(1);
        auto r = co_await ev.wait(deadline::after(5s));
        EXPECT_TRUE(r);
        order.push_back(3);
      }));
      co_await yield();
      order.push_back(2);
      ev.set();
    });
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  }());
}

TEST(Event, ResetMakesWaitersWaitAgain) {
  run([]() -> task<void> {
    event ev;
    ev.set();
    ev.reset();
    EXPECT_FALSE(ev.is_set());
    auto r = co_await ev.wait(deadline::after(10ms));
    EXPECT_EQ(r.error(), errc::timed_out);
    // A waiter woken by set() is not un-woken by a reset before it runs.
    bool woke = false;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { woke = static_cast<bool>(co_await ev.wait(deadline::after(5s))); }));
      co_await yield();
      ev.set();
      ev.reset();
    });
    EXPECT_TRUE(woke);
  }());
}

TEST(Event, WaitTimesOutWithinTolerance) {
  run([]() -> task<void> {
    event ev;
    auto start = clock_type::now();
    auto r = co_await ev.wait(deadline::after(15ms));
    auto elapsed = clock_type::now() - start;
    EXPECT_EQ(r.error(), errc::timed_out);
    EXPECT_GE(elapsed, 15ms);
    EXPECT_LT(elapsed, 215ms);
  }());
}

TEST(Event, ManyWaitersAllWake) {
  constexpr int n = 1000;
  int woke = 0, timed_out = 0;
  run([](int& woke, int& timed_out) -> task<void> {
    event ev;
    co_await with_scope([&](scope& s) -> task<void> {
      for (int i = 0; i < n; ++i) {
        // Half with a deadline, half without: both kinds are woken by set().
        auto dl = i % 2 ? deadline::after(10s) : deadline::never();
        s.spawn(call([&, dl]() -> task<void> {
          auto r = co_await ev.wait(dl);
          if (r) {
            ++woke;
          } else {
            ++timed_out;
          }
        }));
      }
      co_await yield();
      ev.set();
    });
  }(woke, timed_out));
  EXPECT_EQ(woke, n);
  EXPECT_EQ(timed_out, 0);
}

TEST(Event, WaiterThatTimedOutIsRemovedFromTheEvent) {
  run([]() -> task<void> {
    event ev;
    int early = 0, late = 0;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        early += (co_await ev.wait(deadline::after(1ms))).error() == errc::timed_out;
      }));
      s.spawn(
          call([&]() -> task<void> { late += static_cast<bool>(co_await ev.wait(deadline::after(5s))); }));
      (void)co_await sleep_for(10ms);  // the first waiter has timed out and left
      ev.set();
    });
    EXPECT_EQ(early, 1);
    EXPECT_EQ(late, 1);
  }());
}

}  // namespace
}  // namespace strata
