// Cancellation: every blocking call completes with operation_canceled when its scope is
// canceled, whether it was already waiting or starts waiting afterwards; nested scopes
// follow their parent; join(deadline) cancels and waits for the unwinding.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <memory>
#include <string>

#include "strata/runtime.hpp"
#include "strata/transport/tcp.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

using clock_type = deadline::clock;
const std::error_code canceled = make_error_code(errc::operation_canceled);
const std::error_code not_finished = make_error_code(errc::protocol_error);  // a sentinel

using test::call;

// socket_pair is a non-blocking AF_UNIX stream pair that tells the loop before closing.
struct socket_pair {
  int fd[2] = {-1, -1};
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0); }
  ~socket_pair() {
    for (int f : fd) {
      if (auto* loop = event_loop::current()) loop->forget_fd(f);
      ::close(f);
    }
  }
  // fill writes into fd[0] until the kernel buffer is full.
  void fill() {
    std::array<char, 65536> junk{};
    while (::write(fd[0], junk.data(), junk.size()) > 0) {
    }
    EXPECT_EQ(errno, EAGAIN);
  }
};

// outcome_when_canceled spawns `op` (a callable returning task<std::error_code>), lets it
// block, cancels its scope from another task and returns what the operation reported.
template <class Op>
task<std::error_code> outcome_when_canceled(Op op) {
  std::error_code seen = not_finished;
  co_await with_scope([&](scope& s) -> task<void> {
    s.spawn(call([&]() -> task<void> { seen = co_await op(); }));
    co_await yield();  // the operation runs until it blocks
    EXPECT_EQ(seen, not_finished) << "the operation did not block";
    s.cancel();
  });
  co_return seen;
}

// outcome_in_canceled_scope runs `op` in an already canceled scope and checks that it
// fails without suspending (a queued sibling has not run when it returns).
template <class Op>
task<std::error_code> outcome_in_canceled_scope(Op op) {
  std::error_code seen = not_finished;
  bool sibling_ran = false;  // outlives the body: the sibling runs while the scope joins
  co_await with_scope([&](scope& s) -> task<void> {
    s.cancel();
    s.spawn(call([&]() -> task<void> {
      sibling_ran = true;
      co_return;
    }));
    seen = co_await op();
    EXPECT_FALSE(sibling_ran) << "the operation suspended";
  });
  co_return seen;
}

// expect_canceled_both_ways checks `op` both ways: canceled while waiting, and called in a
// scope that is canceled already.
template <class Op>
task<void> expect_canceled_both_ways(const char* what, Op op) {
  EXPECT_EQ(co_await outcome_when_canceled(op), canceled) << what << " (canceled while waiting)";
  EXPECT_EQ(co_await outcome_in_canceled_scope(op), canceled) << what << " (in a canceled scope)";
}

TEST(Cancel, Sleep) {
  run([]() -> task<void> {
    co_await expect_canceled_both_ways(
        "sleep_for", []() -> task<std::error_code> { co_return (co_await sleep_for(10s)).error(); });
    co_await expect_canceled_both_ways("sleep_until(never)", []() -> task<std::error_code> {
      co_return (co_await sleep_until(deadline::never())).error();
    });
    // Even a zero sleep is a blocking call: canceled wins over the expired deadline.
    EXPECT_EQ(co_await outcome_in_canceled_scope(
                  []() -> task<std::error_code> { co_return (co_await sleep_for(0ms)).error(); }),
              canceled);
  }());
}

TEST(Cancel, EventWait) {
  run([]() -> task<void> {
    event ev;
    co_await expect_canceled_both_ways("event.wait", [&]() -> task<std::error_code> {
      co_return (co_await ev.wait(deadline::never())).error();
    });
    EXPECT_FALSE(ev.is_set());
  }());
}

TEST(Cancel, ChannelSendWhenFullAndRecvWhenEmpty) {
  run([]() -> task<void> {
    channel<int> ch(1);
    co_await expect_canceled_both_ways("channel.recv", [&]() -> task<std::error_code> {
      co_return (co_await ch.recv(deadline::after(10s))).error();
    });
    int v = 1;
    EXPECT_TRUE(ch.try_send(v));
    co_await expect_canceled_both_ways("channel.send", [&]() -> task<std::error_code> {
      co_return (co_await ch.send(2, deadline::after(10s))).error();
    });
    // The canceled send left the channel as it was.
    auto got = ch.try_recv();
    EXPECT_TRUE(got && *got == 1);
    EXPECT_EQ(ch.try_recv().error(), errc::timed_out);
  }());
}

TEST(Cancel, WaitReadableAndWritable) {
  run([]() -> task<void> {
    socket_pair sp;
    co_await expect_canceled_both_ways("wait_readable", [&]() -> task<std::error_code> {
      co_return co_await wait_readable(sp.fd[1], deadline::after(10s));
    });
    sp.fill();
    co_await expect_canceled_both_ways("wait_writable", [&]() -> task<std::error_code> {
      co_return co_await wait_writable(sp.fd[0], deadline::after(10s));
    });
    // The canceled waits were deregistered: a new wait on the same directions works.
    EXPECT_EQ(co_await wait_readable(sp.fd[1], deadline::after(5s)), std::error_code{});
  }());
}

TEST(Cancel, TcpAcceptAndReadSome) {
  run([]() -> task<void> {
    auto l = tcp::listener::bind("127.0.0.1:0");
    if (!l) {
      ADD_FAILURE() << l.error().message();
      co_return;
    }
    co_await expect_canceled_both_ways("accept", [&]() -> task<std::error_code> {
      co_return (co_await l->accept(deadline::after(10s))).error();
    });

    auto port = l->local_address()->port();
    auto c = co_await tcp::connect("127.0.0.1:" + std::to_string(port), deadline::after(5s));
    auto a = co_await l->accept(deadline::after(5s));
    if (!c || !a) {
      ADD_FAILURE() << "connect/accept failed";
      co_return;
    }
    std::array<std::byte, 16> buf;
    co_await expect_canceled_both_ways("read_some", [&]() -> task<std::error_code> {
      co_return (co_await a->read_some(buf, deadline::after(10s))).error();
    });
    // Cancel is not an error of the connection: the stream still works afterwards.
    EXPECT_TRUE(co_await c->write(as_bytes("ping"), deadline::after(5s)));
    auto n = co_await a->read_some(buf, deadline::after(5s));
    EXPECT_TRUE(n && *n == 4u);
  }());
}

TEST(Cancel, TcpConnect) {
  run([]() -> task<void> {
    // With a backlog of 0 the accept queue is full after one unaccepted connection, and
    // Linux drops further SYNs, so a second connect stays pending until canceled.
    auto l = tcp::listener::bind("127.0.0.1:0", {.backlog = 0});
    if (!l) {
      ADD_FAILURE() << l.error().message();
      co_return;
    }
    auto where = "127.0.0.1:" + std::to_string(l->local_address()->port());
    auto first = co_await tcp::connect(where, deadline::after(5s));
    EXPECT_TRUE(first);
    co_await expect_canceled_both_ways("connect", [&]() -> task<std::error_code> {
      co_return (co_await tcp::connect(where, deadline::after(10s))).error();
    });
  }());
}

TEST(Cancel, JoinWithDeadlineCancelsAndWaitsForTheUnwinding) {
  struct state {
    int canceled_children = 0;
    int cleaned_up = 0;
  } st;
  auto outcome = run([](state& st) -> task<std::error_code> {
    scope s;
    for (int i = 0; i < 3; ++i) {
      s.spawn(call([&st]() -> task<void> {
        auto r = co_await sleep_until(deadline::never());
        if (r.error() == errc::operation_canceled) ++st.canceled_children;
        co_await yield();  // unwinding takes a few turns of the loop
        co_await yield();
        ++st.cleaned_up;
      }));
    }
    auto start = clock_type::now();
    auto r = co_await s.join(deadline::after(20ms));
    auto elapsed = clock_type::now() - start;
    EXPECT_GE(elapsed, 20ms);
    EXPECT_LT(elapsed, 220ms);
    EXPECT_EQ(s.active(), 0u);
    EXPECT_TRUE(s.canceled());
    co_return r.error();
  }(st));
  EXPECT_EQ(outcome, make_error_code(errc::timed_out));
  EXPECT_EQ(st.canceled_children, 3);
  EXPECT_EQ(st.cleaned_up, 3);
}

TEST(Cancel, JoinWithAlreadyExpiredDeadline) {
  int unwound = 0;
  auto outcome = run([](int& unwound) -> task<std::error_code> {
    scope s;
    s.spawn(call([&unwound]() -> task<void> {
      auto r = co_await sleep_for(10s);
      unwound += r.error() == errc::operation_canceled;
    }));
    co_await yield();
    co_return (co_await s.join(deadline::already())).error();
  }(unwound));
  EXPECT_EQ(outcome, make_error_code(errc::timed_out));
  EXPECT_EQ(unwound, 1);
}

TEST(Cancel, JoinThatMeetsItsDeadlineIsNotCanceled) {
  auto outcome = run([]() -> task<std::error_code> {
    scope s;
    s.spawn([]() -> task<void> { (void)co_await sleep_for(1ms); }());
    auto r = co_await s.join(deadline::after(5s));
    EXPECT_FALSE(s.canceled());
    co_return r.error();
  }());
  EXPECT_EQ(outcome, std::error_code{});
}

TEST(Cancel, OuterScopeCancelsNestedScopes) {
  struct counts {
    int inner_body = 0, inner_child = 0, grandchild = 0;
  } c;
  run([](counts& c) -> task<void> {
    scope outer;
    outer.spawn(call([&c]() -> task<void> {
      co_await with_scope([&c](scope& inner) -> task<void> {
        inner.spawn(call([&c]() -> task<void> {
          co_await with_scope([&c](scope&) -> task<void> {
            c.grandchild += (co_await sleep_for(10s)).error() == errc::operation_canceled;
          });
        }));
        inner.spawn(call([&c]() -> task<void> {
          c.inner_child += (co_await sleep_for(10s)).error() == errc::operation_canceled;
        }));
        c.inner_body += (co_await sleep_for(10s)).error() == errc::operation_canceled;
      });
    }));
    co_await yield();
    co_await yield();  // everyone is asleep now
    auto start = clock_type::now();
    outer.cancel();
    auto r = co_await outer.join(deadline::after(5s));
    EXPECT_TRUE(r);
    EXPECT_LT(clock_type::now() - start, 1s);
  }(c));
  EXPECT_EQ(c.inner_body, 1);
  EXPECT_EQ(c.inner_child, 1);
  EXPECT_EQ(c.grandchild, 1);
}

TEST(Cancel, ScopeCreatedInsideACanceledScopeStartsCanceled) {
  run([]() -> task<void> {
    co_await with_scope([](scope& s) -> task<void> {
      s.cancel();
      scope child(s);
      EXPECT_TRUE(child.canceled());
      scope independent;  // no parent: not canceled
      EXPECT_FALSE(independent.canceled());
      bool inner_ran = false;
      co_await with_scope([&](scope& inner) -> task<void> {
        inner_ran = true;
        EXPECT_TRUE(inner.canceled());
        auto r = co_await sleep_for(10s);
        EXPECT_EQ(r.error(), errc::operation_canceled);
      });
      EXPECT_TRUE(inner_ran);
    });
  }());
}

TEST(Cancel, ChildScopeFollowsItsParentsCancel) {
  run([]() -> task<void> {
    scope parent;
    scope child(parent);
    std::error_code seen = not_finished;
    child.spawn(call([&seen]() -> task<void> { seen = (co_await sleep_for(10s)).error(); }));
    co_await yield();
    parent.cancel();
    EXPECT_TRUE(child.canceled());
    (void)co_await child.join(deadline::after(5s));
    EXPECT_EQ(seen, canceled);
  }());
}

// -- scopes that follow another domain and can be canceled on their own ----------------

TEST(NestedScope, CanceledByASiblingTaskWithoutCancelingItsParent) {
  struct seen_t {
    std::error_code child = not_finished, worker_after = not_finished, sibling = not_finished;
  } seen;
  run([](seen_t& seen) -> task<void> {
    scope outer;
    scope* inner = nullptr;
    event inner_ready;
    outer.spawn(call([&]() -> task<void> {
      scope s = co_await scope::nested();
      EXPECT_FALSE(s.canceled());
      inner = &s;
      s.spawn(call([&]() -> task<void> { seen.child = (co_await sleep_for(10s)).error(); }));
      inner_ready.set();
      EXPECT_TRUE(co_await s.join(deadline::after(5s)));
      inner = nullptr;
      // The task that owns the nested scope was not canceled, nor was its own scope.
      seen.worker_after = (co_await sleep_for(1ms)).error();
    }));
    outer.spawn(call([&]() -> task<void> {
      EXPECT_TRUE(co_await inner_ready.wait(deadline::after(5s)));
      co_await yield();  // the nested scope's child is asleep now
      inner->cancel();
      seen.sibling = (co_await sleep_for(1ms)).error();
    }));
    EXPECT_TRUE(co_await outer.join(deadline::after(5s)));
    EXPECT_FALSE(outer.canceled());
  }(seen));
  EXPECT_EQ(seen.child, canceled);
  EXPECT_EQ(seen.worker_after, std::error_code{});
  EXPECT_EQ(seen.sibling, std::error_code{});
}

TEST(NestedScope, FollowsTheCancellationOfTheAwaitingTasksScope) {
  struct seen_t {
    std::error_code child = not_finished, worker = not_finished;
    bool started_canceled = false;
  } seen;
  run([](seen_t& seen) -> task<void> {
    scope outer;
    outer.spawn(call([&]() -> task<void> {
      scope s = co_await scope::nested();
      s.spawn(call([&]() -> task<void> { seen.child = (co_await sleep_for(10s)).error(); }));
      (void)co_await s.join(deadline::after(5s));
      seen.worker = (co_await sleep_for(10s)).error();
      scope late = co_await scope::nested();  // made after the cancellation
      seen.started_canceled = late.canceled();
    }));
    co_await yield();
    co_await yield();  // the nested scope's child is asleep now
    outer.cancel();
    EXPECT_TRUE(co_await outer.join(deadline::after(5s)));
  }(seen));
  EXPECT_EQ(seen.child, canceled);
  EXPECT_EQ(seen.worker, canceled);
  EXPECT_TRUE(seen.started_canceled);
}

TEST(NestedScope, InsideWithScopeFollowsTheBody) {
  std::error_code child = not_finished;
  run([](std::error_code& child) -> task<void> {
    co_await with_scope([&child](scope& body_scope) -> task<void> {
      scope s = co_await scope::nested();  // the body runs in body_scope's domain
      s.spawn(call([&child]() -> task<void> { child = (co_await sleep_for(10s)).error(); }));
      co_await yield();
      body_scope.cancel();
      (void)co_await s.join(deadline::after(5s));
    });
  }(child));
  EXPECT_EQ(child, canceled);
}

TEST(NestedScope, ConstructedFromAParentScope) {
  run([]() -> task<void> {
    scope parent;
    scope a(parent), b(parent);
    scope grandchild(a);
    std::error_code seen_a = not_finished, seen_b = not_finished, seen_grandchild = not_finished;
    a.spawn(call([&]() -> task<void> { seen_a = (co_await sleep_for(10s)).error(); }));
    b.spawn(call([&]() -> task<void> { seen_b = (co_await sleep_for(10s)).error(); }));
    grandchild.spawn(call([&]() -> task<void> { seen_grandchild = (co_await sleep_for(10s)).error(); }));
    co_await yield();
    a.cancel();  // reaches a's descendants, not its parent or sibling
    (void)co_await a.join(deadline::after(5s));
    (void)co_await grandchild.join(deadline::after(5s));
    EXPECT_EQ(seen_a, canceled);
    EXPECT_EQ(seen_grandchild, canceled);
    EXPECT_FALSE(parent.canceled());
    EXPECT_FALSE(b.canceled());
    EXPECT_EQ(seen_b, not_finished);
    parent.cancel();
    (void)co_await b.join(deadline::after(5s));
    EXPECT_EQ(seen_b, canceled);
    scope late(parent);
    EXPECT_TRUE(late.canceled());
  }());
}

TEST(NestedScope, OutlivingItsParentMakesItIndependent) {
  run([]() -> task<void> {
    auto parent = std::make_unique<scope>();
    scope child(*parent);
    parent.reset();
    std::error_code seen = not_finished;
    child.spawn(call([&]() -> task<void> { seen = (co_await sleep_for(1ms)).error(); }));
    (void)co_await child.join(deadline::after(5s));
    EXPECT_EQ(seen, std::error_code{});
  }());
}

TEST(Cancel, FromWithinTheCanceledTaskItself) {
  struct seen_t {
    std::error_code self = not_finished, sibling = not_finished;
  } seen;
  run([](seen_t& seen) -> task<void> {
    scope s;
    s.spawn(call([&seen]() -> task<void> { seen.sibling = (co_await sleep_for(10s)).error(); }));
    s.spawn(call([&seen, &s]() -> task<void> {
      s.cancel();
      seen.self = (co_await sleep_for(10s)).error();
    }));
    auto r = co_await s.join(deadline::after(5s));
    EXPECT_TRUE(r);
  }(seen));
  EXPECT_EQ(seen.self, canceled);
  EXPECT_EQ(seen.sibling, canceled);
}

TEST(Cancel, WithScopeBodyIsCanceledByItsScope) {
  run([]() -> task<void> {
    std::error_code body = not_finished;
    auto start = clock_type::now();
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&s]() -> task<void> {
        (void)co_await sleep_for(5ms);
        s.cancel();
      }));
      body = (co_await sleep_for(10s)).error();
    });
    EXPECT_EQ(body, canceled);
    EXPECT_LT(clock_type::now() - start, 1s);
  }());
}

TEST(Cancel, CancelTwiceAndAfterTheTasksEndedIsHarmless) {
  run([]() -> task<void> {
    scope s;
    s.spawn([]() -> task<void> { co_return; }());
    (void)co_await s.join();
    s.cancel();
    s.cancel();
    EXPECT_TRUE(s.canceled());
    EXPECT_EQ(s.active(), 0u);
    // The canceled domain stays canceled: a task spawned now fails its first wait.
    std::error_code seen = not_finished;
    s.spawn(call([&seen]() -> task<void> { seen = (co_await sleep_for(10s)).error(); }));
    (void)co_await s.join(deadline::after(5s));
    EXPECT_EQ(seen, canceled);
  }());
}

TEST(Cancel, CanceledWaitsLeaveNoTimerBehind) {
  // A canceled sleep must not leave its deadline in the heap: the loop would otherwise
  // complete a destroyed waiter later (caught by ASan) or wake for nothing.
  run([]() -> task<void> {
    for (int round = 0; round < 50; ++round) {
      EXPECT_EQ(co_await outcome_when_canceled(
                    []() -> task<std::error_code> { co_return (co_await sleep_for(3ms)).error(); }),
                canceled);
    }
    (void)co_await sleep_for(10ms);  // past every canceled deadline
  }());
}

}  // namespace
}  // namespace strata
