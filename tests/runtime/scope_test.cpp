// scope and with_scope: joining, exceptions, and destroying a scope whose tasks are
// suspended in every possible state (not started, queued by yield, woken but not yet
// resumed, parked on a socket, a timer or a nested scope). Run under ASan: a frame that
// is resumed or a waiter that is touched after its scope was destroyed is reported.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

using clock_type = deadline::clock;

using test::call;

// counted is passed by value into coroutines: the frame's copy counts its destruction.
struct counted {
  int* destroyed;
  explicit counted(int* d) : destroyed(d) {}
  counted(counted&& o) noexcept : destroyed(std::exchange(o.destroyed, nullptr)) {}
  ~counted() {
    if (destroyed) ++*destroyed;
  }
};

struct socket_pair {
  int fd[2] = {-1, -1};
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0); }
  ~socket_pair() {
    for (int f : fd) {
      if (auto* loop = event_loop::current()) loop->forget_fd(f);
      ::close(f);
    }
  }
};

TEST(Scope, JoinWaitsForAllTasks) {
  int done = 0;
  run([](int& done) -> task<void> {
    scope s;
    for (int i = 0; i < 5; ++i) {
      s.spawn(call([&done, i]() -> task<void> {
        (void)co_await sleep_for(std::chrono::milliseconds(i));
        ++done;
      }));
    }
    EXPECT_EQ(s.active(), 5u);
    auto r = co_await s.join(deadline::after(5s));
    EXPECT_TRUE(r);
    EXPECT_EQ(done, 5);
    EXPECT_EQ(s.active(), 0u);
  }(done));
  EXPECT_EQ(done, 5);
}

// spawn(f) keeps the lambda, and what it captured by value, until its task ends: the
// statement that made the lambda ends long before (ASan sees a use after free if not).
TEST(Scope, SpawnOfALambdaKeepsItsCapturesUntilItsTaskEnds) {
  std::string seen;
  run([](std::string& seen) -> task<void> {
    scope s;
    {
      std::string word = "still here";
      s.spawn([word, &seen]() -> task<void> {
        (void)co_await sleep_for(std::chrono::milliseconds(1));
        seen = word;
      });
    }
    EXPECT_EQ(s.active(), 1u);
    auto r = co_await s.join(deadline::after(5s));
    EXPECT_TRUE(r);
  }(seen));
  EXPECT_EQ(seen, "still here");
}

TEST(Scope, JoinWithNoTasksDoesNotSuspend) {
  run([]() -> task<void> {
    scope other;
    bool other_ran = false;
    other.spawn(call([&other_ran]() -> task<void> {
      other_ran = true;
      co_return;
    }));
    scope empty;
    auto r = co_await empty.join(deadline::already());  // even an expired deadline is fine
    EXPECT_TRUE(r);
    EXPECT_FALSE(other_ran);
    (void)co_await other.join();
    EXPECT_TRUE(other_ran);
  }());
}

TEST(Scope, JoinAgainAfterMoreSpawns) {
  run([]() -> task<void> {
    scope s;
    int n = 0;
    for (int round = 0; round < 3; ++round) {
      s.spawn(call([&n]() -> task<void> {
        co_await yield();
        ++n;
      }));
      (void)co_await s.join();
      EXPECT_EQ(n, round + 1);
    }
  }());
}

TEST(Scope, ExceptionInASpawnedTaskIsRethrownByJoin) {
  bool sibling_finished = false;
  auto what = run([](bool& sibling_finished) -> task<std::string> {
    scope s;
    s.spawn([]() -> task<void> {
      co_await yield();
      throw std::runtime_error("child failed");
    }());
    s.spawn(call([&sibling_finished]() -> task<void> {
      (void)co_await sleep_for(5ms);
      sibling_finished = true;  // the failure does not cancel siblings
    }));
    try {
      (void)co_await s.join(deadline::after(5s));
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(s.active(), 0u);  // join rethrows only once every task has finished
      co_return e.what();
    }
    co_return "nothing thrown";
  }(sibling_finished));
  EXPECT_EQ(what, "child failed");
  EXPECT_TRUE(sibling_finished);
}

TEST(Scope, WithScopeRethrowsAChildException) {
  EXPECT_THROW(run([]() -> task<void> {
                 co_await with_scope([](scope& s) -> task<void> {
                   s.spawn([]() -> task<void> {
                     throw std::logic_error("child");
                     co_return;
                   }());
                   co_return;
                 });
               }()),
               std::logic_error);
}

TEST(Scope, WithScopeBodyExceptionCancelsTheChildrenThenPropagates) {
  std::error_code child = make_error_code(errc::protocol_error);
  auto what = run([](std::error_code& child) -> task<std::string> {
    try {
      co_await with_scope([&child](scope& s) -> task<void> {
        s.spawn(call([&child]() -> task<void> { child = (co_await sleep_for(10s)).error(); }));
        co_await yield();
        throw std::runtime_error("body failed");
      });
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "nothing thrown";
  }(child));
  EXPECT_EQ(what, "body failed");
  EXPECT_EQ(child, make_error_code(errc::operation_canceled));
}

// -- with_scope: what children may use after the body returned ------------------------

// body_with_parameters is a with_scope body whose child uses the body's parameters after
// the body has returned: they live in the body's frame, which must outlive the join.
task<void> body_with_parameters(scope& s, counted guard, std::string name, std::string& seen) {
  s.spawn(call([&name, &seen, destroyed = guard.destroyed]() -> task<void> {
    co_await yield();
    co_await yield();  // the body has returned meanwhile; with_scope is joining
    EXPECT_EQ(*destroyed, 0) << "the body's frame was destroyed before its children ended";
    seen = name;
  }));
  co_return;
}

TEST(WithScope, ChildUsesTheBodysParametersAfterTheBodyReturned) {
  int destroyed = 0;
  std::string seen;
  run([](int& destroyed, std::string& seen) -> task<void> {
    co_await with_scope(
        [&](scope& s) { return body_with_parameters(s, counted(&destroyed), std::string(100, 'p'), seen); });
    EXPECT_EQ(destroyed, 1);  // the frame is gone once with_scope returns
  }(destroyed, seen));
  EXPECT_EQ(seen, std::string(100, 'p'));
}

task<void> read_after_the_body(const int* local, int* seen);

// body_with_local is the body of the next test: it spawns a child that reads its local
// after the body has returned. Called without `seen`, it only writes -1 into a frame of
// its own size (the reader uses that to reuse a body frame that was freed too early).
task<void> body_with_local(scope& s, int* seen) {
  int local = -1;
  if (seen) {
    s.spawn(read_after_the_body(&local, seen));
    local = 42;
    co_await yield();  // the store is made before the child can run
  }
}

task<void> read_after_the_body(const int* local, int* seen) {
  co_await yield();
  co_await yield();  // the body has returned meanwhile
  scope unused;
  co_await body_with_local(unused, nullptr);  // would take the body's frame if it was freed
  *seen = *local;
}

// What users write: a child reads a local of the body. The local's storage lives until the
// join; formally its lifetime ended with the body (a local with a destructor is destroyed
// then, see with_scope), so only a trivially destructible local can be used like this. It
// used to be a read of freed memory: ASan reported it, and the recycled frame gave -1.
TEST(WithScope, ChildReadsABodyLocalAfterTheBodyReturned) {
  int seen = 0;
  run([](int& seen) -> task<void> {
    co_await with_scope([&seen](scope& s) { return body_with_local(s, &seen); });
  }(seen));
  EXPECT_EQ(seen, 42);
}

// -- destroying a scope with suspended tasks -------------------------------------------

TEST(ScopeDestroy, TaskSpawnedButNotStarted) {
  int destroyed = 0;
  bool ran = false;
  run([](int& destroyed, bool& ran) -> task<void> {
    {
      scope s;
      s.spawn([](counted, bool& ran) -> task<void> {
        ran = true;
        co_return;
      }(counted(&destroyed), ran));
    }
    EXPECT_EQ(destroyed, 1);
    co_await yield();  // the loop must not resume the destroyed frame
    co_await yield();
  }(destroyed, ran));
  EXPECT_FALSE(ran);
  EXPECT_EQ(destroyed, 1);
}

TEST(ScopeDestroy, TaskQueuedByYield) {
  int steps = 0;
  run([](int& steps) -> task<void> {
    {
      scope s;
      s.spawn(call([&steps]() -> task<void> {
        ++steps;
        co_await yield();
        ++steps;
      }));
      co_await yield();  // the child ran up to its yield and is queued again
      EXPECT_EQ(steps, 1);
    }
    co_await yield();
    co_await yield();
  }(steps));
  EXPECT_EQ(steps, 1);
}

TEST(ScopeDestroy, TaskWokenButNotYetResumed) {
  bool resumed = false;
  run([](bool& resumed) -> task<void> {
    event ev;
    {
      scope s;
      s.spawn(call([&]() -> task<void> {
        (void)co_await ev.wait(deadline::after(10s));
        resumed = true;
      }));
      co_await yield();
      ev.set();  // completes the waiter and queues the task ...
    }            // ... whose frame is destroyed before it runs
    co_await yield();
    co_await yield();
  }(resumed));
  EXPECT_FALSE(resumed);
}

TEST(ScopeDestroy, SleeperDoesNotFireLater) {
  bool fired = false;
  run([](bool& fired) -> task<void> {
    {
      scope s;
      s.spawn(call([&fired]() -> task<void> {
        (void)co_await sleep_for(5ms);
        fired = true;
      }));
      co_await yield();
    }
    (void)co_await sleep_for(20ms);  // well past the destroyed sleeper's deadline
  }(fired));
  EXPECT_FALSE(fired);
}

TEST(ScopeDestroy, SocketReaderIsDeregistered) {
  run([]() -> task<void> {
    socket_pair sp;
    bool first_reader_woke = false;
    {
      scope s;
      s.spawn(call([&]() -> task<void> {
        (void)co_await wait_readable(sp.fd[1], deadline::after(10s));
        first_reader_woke = true;
      }));
      co_await yield();
    }
    // The descriptor is free again: a new task can wait on it and is woken by data.
    scope s2;
    std::error_code second = make_error_code(errc::protocol_error);
    s2.spawn(call([&]() -> task<void> { second = co_await wait_readable(sp.fd[1], deadline::after(5s)); }));
    s2.spawn(call([&]() -> task<void> {
      co_await yield();
      EXPECT_EQ(::write(sp.fd[0], "x", 1), 1);
    }));
    (void)co_await s2.join(deadline::after(5s));
    EXPECT_EQ(second, std::error_code{});
    EXPECT_FALSE(first_reader_woke);
  }());
}

task<void> sleeper_chain(int depth, counted, int& woke) {
  if (depth == 0) {
    (void)co_await sleep_for(5ms);
    ++woke;
    co_return;
  }
  co_await with_scope([depth, &woke](scope& s) -> task<void> {
    s.spawn(sleeper_chain(depth - 1, counted(nullptr), woke));
    (void)co_await sleep_for(5ms);
    ++woke;
  });
}

TEST(ScopeDestroy, NestedTasksAndScopesAreAllDestroyed) {
  int destroyed = 0, woke = 0;
  run([](int& destroyed, int& woke) -> task<void> {
    {
      scope s;
      for (int i = 0; i < 10; ++i) s.spawn(sleeper_chain(4, counted(&destroyed), woke));
      co_await yield();
      co_await yield();
      co_await yield();
    }
    EXPECT_EQ(destroyed, 10);
    (void)co_await sleep_for(20ms);
  }(destroyed, woke));
  EXPECT_EQ(woke, 0);
  EXPECT_EQ(destroyed, 10);
}

TEST(ScopeDestroy, OtherWorkKeepsRunning) {
  // Tasks of a surviving scope are interleaved in the ready queue with tasks of a scope
  // that is destroyed; the survivors keep their order and nothing else runs.
  std::string trace;
  run([](std::string& trace) -> task<void> {
    scope keep;
    auto doomed = std::make_unique<scope>();
    for (int i = 0; i < 3; ++i) {
      keep.spawn(call([&trace, i]() -> task<void> {
        for (int k = 0; k < 3; ++k) {
          trace += static_cast<char>('a' + i);
          co_await yield();
        }
      }));
      doomed->spawn(call([&trace]() -> task<void> {
        for (;;) {
          trace += 'X';
          co_await yield();
        }
      }));
    }
    co_await yield();
    doomed.reset();
    (void)co_await keep.join(deadline::after(5s));
  }(trace));
  EXPECT_EQ(trace, "aXbXcXabcabc");
}

TEST(ScopeDestroy, ManySuspendedTasks) {
  int destroyed = 0;
  run([](int& destroyed) -> task<void> {
    event never;
    {
      scope s;
      for (int i = 0; i < 2000; ++i) {
        s.spawn([](counted, event& ev, int i) -> task<void> {
          if (i % 3 == 0) {
            (void)co_await ev.wait(deadline::never());
          } else if (i % 3 == 1) {
            (void)co_await sleep_for(10s);
          } else {
            for (;;) co_await yield();
          }
        }(counted(&destroyed), never, i));
      }
      co_await yield();
    }
    co_await yield();
  }(destroyed));
  EXPECT_EQ(destroyed, 2000);
}

// Destroying a scope with n unfinished tasks is O(n log n) (see ~scope): each destroyed
// frame unlinks its wait in O(1) (O(log n) for a deadline), and the coroutines waiting in
// the ready queue are taken out in one pass. It used to be O(n^2) (a scan of the ready
// queue per frame, and of the event's waiter list per event waiter): 10 000 tasks took
// about a second in a debug build, so 100 000 would take minutes and hit the test timeout.
// This runs in a fraction of a second.
TEST(ScopeDestroy, HundredThousandSuspendedTasksInEveryState) {
  static constexpr int n = 100000;
  int destroyed = 0;
  bool resumed_after_destruction = false;
  run([](int& destroyed, bool& resumed) -> task<void> {
    event never, wake;
    scope keep;  // a survivor, queued among the doomed tasks
    keep.spawn(call([&]() -> task<void> {
      co_await yield();
      co_await yield();
    }));
    {
      scope s;
      for (int i = 0; i < n; ++i) {
        s.spawn([](counted, int kind, event& never, event& wake, bool& resumed) -> task<void> {
          switch (kind) {
            case 0:
              (void)co_await never.wait(deadline::never());
              break;
            case 1:
              (void)co_await sleep_for(10s);
              break;
            case 2:
              (void)co_await sleep_until(deadline::never());
              break;
            case 3:
              for (;;) co_await yield();
            case 4:
              (void)co_await wake.wait(deadline::never());
              break;
            default:
              co_return;  // spawned after the yield below: never started
          }
          resumed = true;
        }(counted(&destroyed), i < n - n / 6 ? i % 5 : 5, never, wake, resumed));
        if (i == n - n / 6 - 1) co_await yield();  // all but the last sixth start and wait
      }
      wake.set();  // a fifth are woken but not resumed when the scope goes
      EXPECT_EQ(s.active(), static_cast<std::size_t>(n));
    }
    EXPECT_EQ(destroyed, n);
    co_await yield();
    co_await yield();
    (void)co_await keep.join(deadline::after(5s));
    never.set();
  }(destroyed, resumed_after_destruction));
  EXPECT_EQ(destroyed, n);
  EXPECT_FALSE(resumed_after_destruction);
}

TEST(ScopeDestroy, EventKeepsItsOtherWaitersInOrder) {
  // Waiters that leave an event (destroyed, canceled or timed out) leave holes in its list;
  // set() still wakes the others once each, in the order they arrived.
  std::string order;
  run([](std::string& order) -> task<void> {
    event ev;
    scope keep;
    auto doomed = std::make_unique<scope>();
    scope canceled;
    for (int i = 0; i < 12; ++i) {
      auto waiter = [](event& ev, std::string& order, char name, deadline dl) -> task<void> {
        if (co_await ev.wait(dl)) order += name;
      };
      char name = static_cast<char>('a' + i);
      switch (i % 4) {
        case 0:
          keep.spawn(waiter(ev, order, name, deadline::never()));
          break;
        case 1:
          doomed->spawn(waiter(ev, order, name, deadline::never()));
          break;
        case 2:
          canceled.spawn(waiter(ev, order, name, deadline::never()));
          break;
        default:
          keep.spawn(waiter(ev, order, name, deadline::after(1ms)));
          break;
      }
    }
    co_await yield();
    doomed.reset();
    canceled.cancel();
    (void)co_await canceled.join();
    (void)co_await sleep_for(5ms);  // the timed waits end
    ev.set();
    (void)co_await keep.join(deadline::after(5s));
    ev.reset();
    keep.spawn([](event& ev, std::string& order) -> task<void> {
      if (co_await ev.wait(deadline::after(5s))) order += '!';
    }(ev, order));
    co_await yield();
    ev.set();
    (void)co_await keep.join(deadline::after(5s));
  }(order));
  EXPECT_EQ(order, "aei!");
}

}  // namespace
}  // namespace strata
