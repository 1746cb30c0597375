// channel<T>: order, back-pressure, close, try_ operations, deadlines, cancellation that
// loses no value and no wake-up, and channels between threads (each with its own loop),
// including cancellation and destruction racing a wake-up posted from another thread.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "strata/runtime.hpp"
#include "support/co_test.hpp"

using namespace std::chrono_literals;

namespace strata {
namespace {

using clock_type = deadline::clock;
const std::error_code closed_code = make_error_code(errc::closed);
const std::error_code timed_out_code = make_error_code(errc::timed_out);
const std::error_code canceled_code = make_error_code(errc::operation_canceled);

using test::call;

// spin_until waits (off any loop) until `cond` holds or 10 s pass; returns whether it held.
template <class Cond>
bool spin_until(Cond cond) {
  auto limit = clock_type::now() + 10s;
  while (!cond()) {
    if (clock_type::now() > limit) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(Channel, FifoOrder) {
  run([]() -> task<void> {
    channel<int> ch(100);
    for (int i = 0; i < 100; ++i) EXPECT_TRUE(co_await ch.send(i, deadline::already()));
    for (int i = 0; i < 100; ++i) {
      auto v = co_await ch.recv(deadline::already());
      if (!v) {
        ADD_FAILURE() << "recv " << i << ": " << v.error().message();
        co_return;
      }
      EXPECT_EQ(*v, i);
    }
  }());
}

TEST(Channel, TrySendAndTryRecv) {
  channel<int> ch(0);  // capacity 0 means 1
  int a = 1, b = 2;
  EXPECT_TRUE(ch.try_send(a));
  EXPECT_EQ(ch.try_send(b).error(), timed_out_code);  // full
  EXPECT_EQ(b, 2);                                    // a refused value is left alone
  auto v = ch.try_recv();
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 1);
  EXPECT_EQ(ch.try_recv().error(), timed_out_code);  // empty
  EXPECT_TRUE(ch.try_send(b));
  ch.close();
  EXPECT_TRUE(ch.closed());
  EXPECT_EQ(ch.try_send(a).error(), closed_code);
  v = ch.try_recv();  // queued values survive close
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 2);
  EXPECT_EQ(ch.try_recv().error(), closed_code);
}

TEST(Channel, MoveOnlyValues) {
  run([]() -> task<void> {
    channel<std::unique_ptr<int>> ch(2);
    EXPECT_TRUE(co_await ch.send(std::make_unique<int>(5), deadline::after(1s)));
    auto v = co_await ch.recv(deadline::after(1s));
    if (!v) {
      ADD_FAILURE() << v.error().message();
      co_return;
    }
    EXPECT_EQ(**v, 5);
  }());
}

TEST(Channel, SenderBlocksWhenFullUntilAReceiverTakes) {
  run([]() -> task<void> {
    channel<int> ch(2);
    int sent = 0;
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> {
        for (int i = 0; i < 5; ++i) {
          auto r = co_await ch.send(i, deadline::after(5s));
          EXPECT_TRUE(r);
          ++sent;
        }
      }));
      co_await yield();
      EXPECT_EQ(sent, 2);  // the third send waits for room
      co_await yield();
      EXPECT_EQ(sent, 2);
      for (int expect = 0; expect < 5; ++expect) {
        auto v = co_await ch.recv(deadline::after(5s));
        EXPECT_TRUE(v && *v == expect);
        co_await yield();  // the sender refills the slot just freed, and no more
        EXPECT_EQ(sent, std::min(5, expect + 3));
      }
    });
  }());
}

TEST(Channel, ReceiversWaitInFifoOrder) {
  run([]() -> task<void> {
    channel<int> ch(4);
    std::vector<int> got(3, -1);
    co_await with_scope([&](scope& s) -> task<void> {
      for (int r = 0; r < 3; ++r) {
        s.spawn(call([&, r]() -> task<void> {
          auto v = co_await ch.recv(deadline::after(5s));
          if (v) got[r] = *v;
        }));
      }
      co_await yield();  // all three are waiting, in spawn order
      for (int i = 10; i < 13; ++i) EXPECT_TRUE(co_await ch.send(i, deadline::after(5s)));
    });
    EXPECT_EQ(got, (std::vector<int>{10, 11, 12}));
  }());
}

TEST(Channel, CloseLetsReceiversDrainThenReportsClosed) {
  run([]() -> task<void> {
    channel<int> ch(4);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(co_await ch.send(i, deadline::after(1s)));
    ch.close();
    auto s = co_await ch.send(9, deadline::after(1s));
    EXPECT_EQ(s.error(), closed_code);
    for (int i = 0; i < 3; ++i) {
      auto v = co_await ch.recv(deadline::after(1s));
      EXPECT_TRUE(v && *v == i);
    }
    auto end = co_await ch.recv(deadline::after(1s));
    EXPECT_EQ(end.error(), closed_code);
  }());
}

TEST(Channel, CloseWakesBlockedReceiversAndSenders) {
  run([]() -> task<void> {
    channel<int> empty(1), full(1);
    int one = 1;
    EXPECT_TRUE(full.try_send(one));
    std::vector<std::error_code> receivers, senders;
    co_await with_scope([&](scope& s) -> task<void> {
      for (int i = 0; i < 3; ++i) {
        s.spawn(call([&]() -> task<void> {
          receivers.push_back((co_await empty.recv(deadline::after(5s))).error());
        }));
        s.spawn(call([&]() -> task<void> {
          senders.push_back((co_await full.send(2, deadline::after(5s))).error());
        }));
      }
      co_await yield();
      empty.close();
      full.close();
    });
    EXPECT_EQ(receivers, std::vector<std::error_code>(3, closed_code));
    EXPECT_EQ(senders, std::vector<std::error_code>(3, closed_code));
    auto v = full.try_recv();  // the blocked senders' values were not queued
    EXPECT_TRUE(v && *v == 1);
    EXPECT_EQ(full.try_recv().error(), closed_code);
  }());
}

TEST(Channel, DeadlinesOnSendAndRecv) {
  run([]() -> task<void> {
    channel<int> ch(1);
    auto start = clock_type::now();
    auto r = co_await ch.recv(deadline::after(15ms));
    EXPECT_EQ(r.error(), timed_out_code);
    EXPECT_GE(clock_type::now() - start, 15ms);
    EXPECT_LT(clock_type::now() - start, 215ms);
    EXPECT_TRUE(co_await ch.send(1, deadline::after(15ms)));
    start = clock_type::now();
    auto s = co_await ch.send(2, deadline::after(15ms));
    EXPECT_EQ(s.error(), timed_out_code);
    EXPECT_GE(clock_type::now() - start, 15ms);
    EXPECT_LT(clock_type::now() - start, 215ms);
    auto v = co_await ch.recv(deadline::already());  // the timed-out send queued nothing
    EXPECT_TRUE(v && *v == 1);
    EXPECT_EQ((co_await ch.recv(deadline::already())).error(), timed_out_code);
  }());
}

TEST(Channel, CanceledRecvLosesNoValue) {
  run([]() -> task<void> {
    channel<int> ch(1);
    std::error_code first{};
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(call([&]() -> task<void> { first = (co_await ch.recv(deadline::after(5s))).error(); }));
      co_await yield();
      s.cancel();
    });
    EXPECT_EQ(first, canceled_code);
    EXPECT_TRUE(co_await ch.send(42, deadline::after(1s)));
    auto v = co_await ch.recv(deadline::after(1s));
    EXPECT_TRUE(v && *v == 42);
  }());
}

TEST(Channel, WokenReceiverDestroyedBeforeRunningHandsTheWakeOn) {
  // r1 is woken by a send but its scope is destroyed before it runs: r2, still waiting,
  // must get the value instead of sleeping next to it.
  run([]() -> task<void> {
    channel<int> ch(1);
    scope keep;
    result<int> second = errc::protocol_error;
    bool first_ran = false;
    {
      scope doomed;
      doomed.spawn(call([&]() -> task<void> {
        (void)co_await ch.recv(deadline::after(5s));
        first_ran = true;
      }));
      co_await yield();
      keep.spawn(call([&]() -> task<void> { second = co_await ch.recv(deadline::after(5s)); }));
      co_await yield();
      int v = 7;
      EXPECT_TRUE(ch.try_send(v));  // wakes the oldest receiver: the doomed one
    }
    (void)co_await keep.join(deadline::after(10s));
    EXPECT_FALSE(first_ran);
    EXPECT_TRUE(second && *second == 7) << second.error().message();
  }());
}

TEST(Channel, WokenSenderDestroyedBeforeRunningHandsTheWakeOn) {
  run([]() -> task<void> {
    channel<int> ch(1);
    int v = 1;
    EXPECT_TRUE(ch.try_send(v));
    scope keep;
    std::error_code second = make_error_code(errc::protocol_error);
    {
      scope doomed;
      doomed.spawn(call([&]() -> task<void> { (void)co_await ch.send(2, deadline::after(5s)); }));
      co_await yield();
      keep.spawn(call([&]() -> task<void> { second = (co_await ch.send(3, deadline::after(5s))).error(); }));
      co_await yield();
      EXPECT_TRUE(ch.try_recv());  // room for one: wakes the doomed sender
    }
    (void)co_await keep.join(deadline::after(10s));
    EXPECT_EQ(second, std::error_code{});
    auto got = ch.try_recv();
    EXPECT_TRUE(got && *got == 3);
  }());
}

TEST(Channel, OperationsThatNeedNoWaitCompleteAtOnceEvenCanceledOrExpired) {
  // send and recv try first: no suspension (a task spawned meanwhile has not run), and
  // neither a canceled domain nor an expired deadline stops an operation that can finish.
  run([]() -> task<void> {
    channel<int> ch(1);
    bool other_ran = false;
    scope s;
    s.spawn(call([&]() -> task<void> {
      other_ran = true;
      co_return;
    }));
    EXPECT_TRUE(co_await ch.send(1, deadline::already()));
    EXPECT_EQ((co_await ch.send(2, deadline::already())).error(), timed_out_code);  // full
    auto v = co_await ch.recv(deadline::already());
    EXPECT_TRUE(v && *v == 1);
    EXPECT_EQ((co_await ch.recv(deadline::already())).error(), timed_out_code);  // empty
    EXPECT_FALSE(other_ran);
    (void)co_await s.join();
    EXPECT_TRUE(other_ran);

    co_await with_scope([&](scope& inner) -> task<void> {
      inner.cancel();
      EXPECT_TRUE(co_await ch.send(3, deadline::never()));
      EXPECT_EQ((co_await ch.send(4, deadline::never())).error(), canceled_code);
      auto got = co_await ch.recv(deadline::never());
      EXPECT_TRUE(got && *got == 3);
      EXPECT_EQ((co_await ch.recv(deadline::never())).error(), canceled_code);
    });

    ch.close();
    EXPECT_EQ((co_await ch.send(5, deadline::never())).error(), closed_code);
    EXPECT_EQ((co_await ch.recv(deadline::never())).error(), closed_code);
  }());
}

TEST(Channel, BufferGrowsAndWrapsInOrder) {
  // The ring starts small and doubles up to the capacity; values keep their order across
  // growth while the ring's head has wrapped around, and move-only values survive it.
  run([]() -> task<void> {
    channel<std::unique_ptr<int>> ch(100);
    int next_in = 0, next_out = 0;
    auto recv_one = [&]() -> task<void> {
      auto v = co_await ch.recv(deadline::already());
      if (!v) {
        ADD_FAILURE() << "recv " << next_out << ": " << v.error().message();
        co_return;
      }
      EXPECT_EQ(**v, next_out);
      ++next_out;
    };
    bool full = false;
    while (!full) {  // net +2 per round until full: the head wraps around many times
      for (int k = 0; k < 5; ++k) {
        if (next_in - next_out == 100) {
          full = true;
          break;
        }
        EXPECT_TRUE(co_await ch.send(std::make_unique<int>(next_in), deadline::already()));
        ++next_in;
      }
      if (!full) {
        for (int k = 0; k < 3; ++k) co_await recv_one();
      }
    }
    EXPECT_EQ((co_await ch.send(std::make_unique<int>(-1), deadline::already())).error(), timed_out_code);
    while (next_out < next_in) co_await recv_one();
    EXPECT_EQ((co_await ch.recv(deadline::already())).error(), timed_out_code);
  }());
}

TEST(Channel, SendNotAwaitedQueuesNothingAndQueuedValuesDieWithTheChannel) {
  auto value = std::make_shared<int>(1);
  {
    channel<std::shared_ptr<int>> ch(4);
    {
      auto op = ch.send(value, deadline::never());  // holds a copy until awaited: never
      EXPECT_EQ(value.use_count(), 2);
    }
    EXPECT_EQ(value.use_count(), 1);
    EXPECT_EQ(ch.try_recv().error(), timed_out_code);
    auto copy = value;
    EXPECT_TRUE(ch.try_send(copy));
    EXPECT_EQ(copy, nullptr);  // moved in
    EXPECT_EQ(value.use_count(), 2);
  }
  EXPECT_EQ(value.use_count(), 1);
}

// -- across threads --------------------------------------------------------------------

TEST(ChannelThreads, ProducersOnTheirOwnLoopsOneConsumer) {
  constexpr int producers = 4, per_producer = 5000;
  channel<int> ch(8);
  std::atomic<int> running{producers};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&ch, &running, p] {
      run([](channel<int>& ch, int p) -> task<void> {
        for (int i = 0; i < per_producer; ++i) {
          auto r = co_await ch.send(p * per_producer + i, deadline::after(10s));
          EXPECT_TRUE(r) << r.error().message();
        }
      }(ch, p));
      if (--running == 0) ch.close();
    });
  }
  std::vector<int> last(producers, -1);
  long long sum = 0;
  int count = 0;
  run([](channel<int>& ch, std::vector<int>& last, long long& sum, int& count) -> task<void> {
    for (;;) {
      auto v = co_await ch.recv(deadline::after(10s));
      if (!v) {
        EXPECT_EQ(v.error(), closed_code);
        break;
      }
      int p = *v / per_producer;
      EXPECT_LT(last[p], *v) << "values of one producer out of order";
      last[p] = *v;
      sum += *v;
      ++count;
    }
  }(ch, last, sum, count));
  for (auto& t : threads) t.join();
  long long n = static_cast<long long>(producers) * per_producer;
  EXPECT_EQ(count, n);
  EXPECT_EQ(sum, n * (n - 1) / 2);
}

TEST(ChannelThreads, ManyProducersManyConsumers) {
  constexpr int producers = 2, consumers = 2, per_producer = 5000;
  channel<int> ch(3);
  std::atomic<int> producing{producers};
  std::atomic<long long> sum{0};
  std::atomic<int> count{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      run([](channel<int>& ch, int p) -> task<void> {
        for (int i = 1; i <= per_producer; ++i)
          EXPECT_TRUE(co_await ch.send(p * per_producer + i, deadline::after(10s)));
      }(ch, p));
      if (--producing == 0) ch.close();
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      run([](channel<int>& ch, std::atomic<long long>& sum, std::atomic<int>& count) -> task<void> {
        // Two receivers per thread: local and remote wake-ups mix.
        co_await with_scope([&](scope& s) -> task<void> {
          for (int k = 0; k < 2; ++k) {
            s.spawn(call([&]() -> task<void> {
              for (;;) {
                auto v = co_await ch.recv(deadline::after(10s));
                if (!v) {
                  EXPECT_EQ(v.error(), closed_code);
                  break;
                }
                sum += *v;
                ++count;
              }
            }));
          }
          co_return;
        });
      }(ch, sum, count));
    });
  }
  for (auto& t : threads) t.join();
  long long n = static_cast<long long>(producers) * per_producer;
  EXPECT_EQ(count.load(), n);
  EXPECT_EQ(sum.load(), n * (n + 1) / 2);
}

// remote_wake_race parks r1 then r2 on an empty channel, has another thread send one
// value (its wake-up is posted to this loop for r1), then lets `spoil` end r1's wait
// another way before this loop processes the posted wake-up. r2 must get the value.
template <class Spoil>
void remote_wake_race(Spoil spoil) {
  channel<int> ch(1);
  std::atomic<int> stage{0};  // 1: both receivers parked, 2: value sent
  std::thread sender([&] {
    ASSERT_TRUE(spin_until([&] { return stage.load() == 1; }));
    int v = 99;
    EXPECT_TRUE(ch.try_send(v));  // not on a loop: r1's wake-up is posted to its loop
    stage = 2;
  });
  run([](channel<int>& ch, std::atomic<int>& stage, Spoil spoil) -> task<void> {
    auto first = std::make_unique<scope>();
    scope keep;
    std::error_code r1 = make_error_code(errc::protocol_error);
    result<int> r2 = errc::protocol_error;
    auto r1_deadline = deadline::after(30ms);
    first->spawn(call([&]() -> task<void> {
      auto v = co_await ch.recv(r1_deadline);
      r1 = v.error();
    }));
    co_await yield();
    keep.spawn(call([&]() -> task<void> { r2 = co_await ch.recv(deadline::after(10s)); }));
    co_await yield();
    stage = 1;
    // Block this thread (not the loop's task model: nothing else may run) until the
    // wake-up is queued for r1.
    EXPECT_TRUE(spin_until([&] { return stage.load() == 2; }));
    spoil(first, r1_deadline);
    (void)co_await keep.join(deadline::after(10s));
    if (first) (void)co_await first->join(deadline::after(10s));
    EXPECT_NE(r1, std::error_code{}) << "r1 should not have received";
    EXPECT_TRUE(r2 && *r2 == 99) << "the wake-up was lost: " << r2.error().message();
  }(ch, stage, spoil));
  sender.join();
}

TEST(ChannelThreads, RemoteWakeOfATimedOutReceiverIsHandedOn) {
  remote_wake_race([](std::unique_ptr<scope>&, deadline r1_deadline) {
    // Let r1's deadline pass while the posted wake-up is still queued: the loop expires
    // timers before it drains posted completions.
    EXPECT_TRUE(spin_until([&] { return r1_deadline.expired(); }));
  });
}

TEST(ChannelThreads, RemoteWakeOfACanceledReceiverIsHandedOn) {
  remote_wake_race([](std::unique_ptr<scope>& first, deadline) { first->cancel(); });
}

TEST(ChannelThreads, RemoteWakeOfADestroyedReceiverIsWithdrawnAndHandedOn) {
  remote_wake_race([](std::unique_ptr<scope>& first, deadline) { first.reset(); });
}

TEST(ChannelThreads, CancelAndDestroyRacingRemoteWakesStress) {
  // A producer thread keeps a capacity-1 channel full while this thread's receivers are
  // canceled, destroyed or time out at random moments, racing the wake-ups the producer
  // posts. No value may be lost or duplicated and nothing may touch a destroyed waiter.
  constexpr int rounds = 3000;
  channel<int> ch(1);
  long long sent_sum = 0;
  std::thread producer([&] {
    run([](channel<int>& ch, long long& sent_sum) -> task<void> {
      for (int i = 1;; ++i) {
        auto r = co_await ch.send(i, deadline::after(10s));
        if (!r) {
          EXPECT_EQ(r.error(), closed_code);
          break;
        }
        sent_sum += i;
      }
    }(ch, sent_sum));
  });
  long long got_sum = 0;
  run([](channel<int>& ch, long long& got_sum) -> task<void> {
    std::mt19937 rng(99);
    for (int round = 0; round < rounds; ++round) {
      auto s = std::make_unique<scope>();
      for (int k = 0; k < 2; ++k) {
        auto dl = deadline::after(std::chrono::microseconds(rng() % 200));
        s->spawn(call([&ch, &got_sum, dl]() -> task<void> {
          auto v = co_await ch.recv(dl);
          if (v) got_sum += *v;
        }));
      }
      switch (rng() % 4) {
        case 0:
          co_await yield();
          s->cancel();
          break;
        case 1:
          co_await yield();
          s.reset();
          break;
        case 2:
          s.reset();  // before the receivers even started
          break;
        default:
          break;
      }
      if (s) (void)co_await s->join(deadline::after(10s));
    }
    ch.close();
    for (;;) {
      auto v = ch.try_recv();
      if (!v) break;
      got_sum += *v;
    }
  }(ch, got_sum));
  producer.join();
  EXPECT_EQ(got_sum, sent_sum);
  EXPECT_GT(got_sum, 0);
}

}  // namespace
}  // namespace strata
