// The ready queue: spawn order, yield round-robin, tasks spawned from tasks, fairness
// between yielding tasks and I/O or timers.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

// call keeps a callable (a lambda with captures) alive in the frame of the task it runs.
using test::call;

TEST(Scheduler, SpawnOrderIsStartOrder) {
  std::vector<int> order;
  run([](std::vector<int>& order) -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      for (int i = 0; i < 10; ++i) {
        s.spawn(call([&order, i]() -> task<void> {
          order.push_back(i);
          co_return;
        }));
      }
      // Spawning only queues the tasks: none has run yet.
      EXPECT_TRUE(order.empty());
      co_return;
    });
  }(order));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Scheduler, YieldIsRoundRobinFifo) {
  std::string trace;
  run([](std::string& trace) -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      for (char name : {'a', 'b', 'c'}) {
        s.spawn(call([&trace, name]() -> task<void> {
          for (int i = 0; i < 3; ++i) {
            trace += name;
            co_await yield();
          }
        }));
      }
      co_return;
    });
  }(trace));
  EXPECT_EQ(trace, "abcabcabc");
}

TEST(Scheduler, YieldLetsTheSpawnerRunBetween) {
  std::string trace;
  run([](std::string& trace) -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&trace]() -> task<void> {
        trace += "c1";
        co_await yield();
        trace += "c2";
      }));
      trace += "p1";
      co_await yield();  // the child runs up to its yield
      trace += "p2";
      co_await yield();  // the child finishes
      trace += "p3";
    });
  }(trace));
  EXPECT_EQ(trace, "p1c1p2c2p3");
}

TEST(Scheduler, TasksSpawnedFromTasksRunAfterTheirSpawner) {
  std::vector<std::string> order;
  run([](std::vector<std::string>& order) -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&order, &s]() -> task<void> {
        order.push_back("a");
        s.spawn(call([&order, &s]() -> task<void> {
          order.push_back("a.1");
          s.spawn(call([&order]() -> task<void> {
            order.push_back("a.1.1");
            co_return;
          }));
          co_return;
        }));
        order.push_back("a-end");
        co_return;
      }));
      s.spawn(call([&order]() -> task<void> {
        order.push_back("b");
        co_return;
      }));
      co_return;
    });
  }(order));
  EXPECT_EQ(order, (std::vector<std::string>{"a", "a-end", "b", "a.1", "a.1.1"}));
}

TEST(Scheduler, ManyQueuedTasksGrowTheReadyQueueInOrder) {
  // More tasks than the ready queue's initial size, queued while some are already
  // waiting, so the ring buffer wraps before it grows.
  std::vector<int> order;
  run([](std::vector<int>& order) -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      for (int i = 0; i < 40; ++i)
        s.spawn(call([&order, i]() -> task<void> {
          co_await yield();
          order.push_back(i);
        }));
      co_await yield();  // the first 40 ran to their yield; the ring's head has moved
      for (int i = 40; i < 1000; ++i)
        s.spawn(call([&order, i]() -> task<void> {
          co_await yield();
          order.push_back(i);
        }));
    });
  }(order));
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(order[i], i) << "at " << i;
}

TEST(Scheduler, YieldingTasksDoNotStarveTimers) {
  // Two tasks that only yield until a timer fires: the loop must still look at timers.
  int spins = 0;
  bool fired = run([](int& spins) -> task<bool> {
    bool done = false;
    co_await with_scope([&](scope& s) -> task<void> {
      for (int k = 0; k < 2; ++k) {
        s.spawn(call([&]() -> task<void> {
          auto limit = deadline::after(5s);
          while (!done && !limit.expired()) {
            ++spins;
            co_await yield();
          }
        }));
      }
      (void)co_await sleep_for(5ms);
      done = true;
    });
    co_return done;
  }(spins));
  EXPECT_TRUE(fired);
  EXPECT_GT(spins, 0);
}

}  // namespace
}  // namespace strata
