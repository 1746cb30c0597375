// runtime_bench: the cost of strata's runtime primitives, each against a bare C++20
// coroutine baseline measured in the same run, batch by batch in alternation.
//
//   spawn_join        spawn N trivial tasks into a scope, then join it      ns per task
//   spawn_await       co_await a child task<int> that returns at once       ns per child
//   switch_yield      two tasks ping-ponging with yield()                   ns per switch
//   channel_local     one producer, one consumer task, one thread, cap 8    ns per message
//   channel_threads   producer and consumer on two threads (two run()s)     ns per message
//
// Baselines (written here, minimal, frames from a thread-local free list like strata's):
//   bare_queue      coroutines resumed from a ring of handles, destroyed at the end
//   bare_await      a task type with symmetric transfer, no scheduler
//   bare_generator  a generator resumed by a loop (each resume + co_yield = 2 switches)
//   bare_channel    a ring buffer with one parked producer/consumer and a ready ring
//   mutex_condvar   std::thread + std::mutex + std::condition_variable bounded queue
//
// Each sample is one batch; its value is the batch time divided by its operations, so
// p50/p99 are over batches (the clock is read twice per batch, not per operation).
//
// Targets (issue 8) are on the same-run ratio p50 strata / p50 baseline: spawn_join <= 3.8,
// switch_yield <= 7, channel_local <= 10 (libdill's unbuffered channel measured 11x
// bare_channel on this machine); issue 1's absolute ones are printed second.
#include <array>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "bench_common.hpp"
#include "strata/runtime.hpp"

namespace {

using bench::clock;
using bench::ns_between;

// -- the bare C++20 baseline -------------------------------------------------------------

// pool is a thread-local free list per 64-byte size class: what "a pooled frame" means.
struct pool {
  static constexpr std::size_t classes = 16;
  struct block {
    block* next;
  };
  static inline thread_local std::array<block*, classes> heads{};

  static void* allocate(std::size_t n) {
    std::size_t c = (n + 63) / 64 - 1;
    if (c < classes && heads[c]) {
      block* b = heads[c];
      heads[c] = b->next;
      return b;
    }
    return ::operator new(c < classes ? (c + 1) * 64 : n);
  }
  static void deallocate(void* p, std::size_t n) noexcept {
    std::size_t c = (n + 63) / 64 - 1;
    if (c < classes) {
      auto* b = static_cast<block*>(p);
      b->next = heads[c];
      heads[c] = b;
      return;
    }
    ::operator delete(p);
  }
};

struct pooled_promise {
  static void* operator new(std::size_t n) { return pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { pool::deallocate(p, n); }
  void unhandled_exception() noexcept { std::terminate(); }
};

// bare_task<T>: lazy, awaited by symmetric transfer, nothing else.
template <class T>
struct bare_task {
  struct promise_type : pooled_promise {
    std::coroutine_handle<> continuation = std::noop_coroutine();
    T value{};
    bare_task get_return_object() {
      return bare_task{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        return h.promise().continuation;
      }
      void await_resume() noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }
    void return_value(T v) noexcept { value = v; }
  };
  explicit bare_task(std::coroutine_handle<promise_type> h) : h(h) {}
  bare_task(bare_task&& o) noexcept : h(std::exchange(o.h, {})) {}
  ~bare_task() {
    if (h) h.destroy();
  }
  bool await_ready() noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
    h.promise().continuation = caller;
    return h;
  }
  T await_resume() noexcept { return h.promise().value; }
  std::coroutine_handle<promise_type> h;
};

// bare_job: an eagerly-owned coroutine that frees itself at the end (for bare_queue).
struct bare_job {
  struct promise_type : pooled_promise {
    bare_job get_return_object() {
      return bare_job{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
  };
  std::coroutine_handle<promise_type> h;
};

// bare_generator: co_yield hands control back to the resumer.
struct bare_generator {
  struct promise_type : pooled_promise {
    std::uint64_t value = 0;
    bare_generator get_return_object() {
      return bare_generator{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(std::uint64_t v) noexcept {
      value = v;
      return {};
    }
    void return_void() noexcept {}
  };
  explicit bare_generator(std::coroutine_handle<promise_type> h) : h(h) {}
  ~bare_generator() { h.destroy(); }
  std::coroutine_handle<promise_type> h;
};

// ring is a power-of-two queue of handles, the whole "scheduler" of the baselines.
struct ring {
  std::array<std::coroutine_handle<>, 4096> slots{};
  std::size_t head = 0, count = 0;
  void push(std::coroutine_handle<> h) {
    if (count == slots.size()) std::abort();  // a batch larger than the ring
    slots[(head + count++) & (slots.size() - 1)] = h;
  }
  std::coroutine_handle<> pop() {
    auto h = slots[head];
    head = (head + 1) & (slots.size() - 1);
    --count;
    return h;
  }
  void run() {
    while (count) pop().resume();
  }
};

bare_job bare_noop(int& counter) {
  ++counter;
  co_return;
}

double bare_spawn_join(int n) {
  static ring r;
  int done = 0;
  auto t0 = clock::now();
  for (int i = 0; i < n; ++i) r.push(bare_noop(done).h);
  r.run();
  auto t1 = clock::now();
  if (done != n) std::abort();
  return ns_between(t0, t1) / n;
}

bare_task<int> bare_child(int i) { co_return i + 1; }

bare_task<int> bare_await_loop(int n, double& ns) {
  int sum = 0;
  auto t0 = clock::now();
  for (int i = 0; i < n; ++i) sum += co_await bare_child(i);
  ns = ns_between(t0, clock::now()) / n;
  co_return sum;
}

double bare_spawn_await(int n) {
  double ns = 0;
  auto t = bare_await_loop(n, ns);
  t.h.resume();  // runs to completion: every child finishes synchronously
  bench::keep(t.h.promise().value);
  return ns;
}

bare_generator bare_counter() {
  for (std::uint64_t i = 0;; ++i) co_yield i;
}

double bare_switch(int resumes) {
  bare_generator g = bare_counter();
  std::uint64_t sum = 0;
  auto t0 = clock::now();
  for (int i = 0; i < resumes; ++i) {
    g.h.resume();
    sum += g.h.promise().value;
  }
  auto t1 = clock::now();
  bench::keep(sum);
  return ns_between(t0, t1) / (2.0 * resumes);  // resume in, co_yield out
}

// bare_channel: bounded ring of ints; a full sender or empty receiver parks itself and
// the other side puts it back on the ready ring.
struct bare_channel {
  std::array<int, 8> buf{};
  std::size_t head = 0, count = 0;
  std::coroutine_handle<> parked_sender{}, parked_receiver{};
  ring* ready = nullptr;

  struct send_op {
    bare_channel& ch;
    int v;
    bool await_ready() noexcept { return ch.count < ch.buf.size(); }
    void await_suspend(std::coroutine_handle<> h) noexcept { ch.parked_sender = h; }
    void await_resume() noexcept {
      ch.buf[(ch.head + ch.count++) % ch.buf.size()] = v;
      if (ch.parked_receiver) ch.ready->push(std::exchange(ch.parked_receiver, {}));
    }
  };
  struct recv_op {
    bare_channel& ch;
    bool await_ready() noexcept { return ch.count > 0; }
    void await_suspend(std::coroutine_handle<> h) noexcept { ch.parked_receiver = h; }
    int await_resume() noexcept {
      int v = ch.buf[ch.head];
      ch.head = (ch.head + 1) % ch.buf.size();
      --ch.count;
      if (ch.parked_sender) ch.ready->push(std::exchange(ch.parked_sender, {}));
      return v;
    }
  };
  send_op send(int v) { return {*this, v}; }
  recv_op recv() { return {*this}; }
};

bare_job bare_producer(bare_channel& ch, int n) {
  for (int i = 0; i < n; ++i) co_await ch.send(i);
}
bare_job bare_consumer(bare_channel& ch, int n, long& sum) {
  for (int i = 0; i < n; ++i) sum += co_await ch.recv();
}

double bare_channel_local(int n) {
  static ring r;
  bare_channel ch;
  ch.ready = &r;
  long sum = 0;
  auto t0 = clock::now();
  r.push(bare_producer(ch, n).h);
  r.push(bare_consumer(ch, n, sum).h);
  r.run();
  auto t1 = clock::now();
  if (sum != static_cast<long>(n) * (n - 1) / 2) std::abort();
  return ns_between(t0, t1) / n;
}

// -- strata --------------------------------------------------------------------------------

strata::task<void> noop_task(int& counter) {
  ++counter;
  co_return;
}

strata::task<double> strata_spawn_join(int n) {
  int done = 0;
  auto t0 = clock::now();
  {
    strata::scope s;
    for (int i = 0; i < n; ++i) s.spawn(noop_task(done));
    (void)co_await s.join();
  }
  auto t1 = clock::now();
  if (done != n) std::abort();
  co_return ns_between(t0, t1) / n;
}

strata::task<int> child_task(int i) { co_return i + 1; }

strata::task<double> strata_spawn_await(int n) {
  int sum = 0;
  auto t0 = clock::now();
  for (int i = 0; i < n; ++i) sum += co_await child_task(i);
  auto t1 = clock::now();
  bench::keep(sum);
  co_return ns_between(t0, t1) / n;
}

strata::task<void> yielder(int n) {
  for (int i = 0; i < n; ++i) co_await strata::yield();
}

strata::task<double> strata_switch(int per_task) {
  auto t0 = clock::now();
  {
    strata::scope s;
    s.spawn(yielder(per_task));
    s.spawn(yielder(per_task));
    (void)co_await s.join();
  }
  auto t1 = clock::now();
  co_return ns_between(t0, t1) / (2.0 * per_task);
}

strata::task<void> producer(strata::channel<int>& ch, int n) {
  for (int i = 0; i < n; ++i) {
    if (!co_await ch.send(i, strata::deadline::never())) std::abort();
  }
}

strata::task<void> consumer(strata::channel<int>& ch, int n, long& sum) {
  for (int i = 0; i < n; ++i) {
    auto v = co_await ch.recv(strata::deadline::never());
    if (!v) std::abort();
    sum += *v;
  }
}

strata::task<double> strata_channel_local(int n) {
  strata::channel<int> ch(8);
  long sum = 0;
  auto t0 = clock::now();
  {
    strata::scope s;
    s.spawn(producer(ch, n));
    s.spawn(consumer(ch, n, sum));
    (void)co_await s.join();
  }
  auto t1 = clock::now();
  if (sum != static_cast<long>(n) * (n - 1) / 2) std::abort();
  co_return ns_between(t0, t1) / n;
}

// -- cross-thread ----------------------------------------------------------------------------

constexpr std::size_t cross_capacity = 64;

double strata_channel_threads(int n) {
  strata::channel<int> ch(cross_capacity);
  long sum = 0;
  auto t0 = clock::now();
  std::thread prod([&] { strata::run(producer(ch, n)); });
  strata::run(consumer(ch, n, sum));
  prod.join();
  auto t1 = clock::now();
  if (sum != static_cast<long>(n) * (n - 1) / 2) std::abort();
  return ns_between(t0, t1) / n;
}

// condvar_queue: the plain-threads bounded queue strata's cross-thread channel replaces.
struct condvar_queue {
  std::mutex m;
  std::condition_variable not_empty, not_full;
  std::deque<int> q;
  void send(int v) {
    std::unique_lock lock(m);
    not_full.wait(lock, [&] { return q.size() < cross_capacity; });
    q.push_back(v);
    lock.unlock();
    not_empty.notify_one();
  }
  int recv() {
    std::unique_lock lock(m);
    not_empty.wait(lock, [&] { return !q.empty(); });
    int v = q.front();
    q.pop_front();
    lock.unlock();
    not_full.notify_one();
    return v;
  }
};

double condvar_channel_threads(int n) {
  condvar_queue cq;
  long sum = 0;
  auto t0 = clock::now();
  std::thread prod([&] {
    for (int i = 0; i < n; ++i) cq.send(i);
  });
  for (int i = 0; i < n; ++i) sum += cq.recv();
  prod.join();
  auto t1 = clock::now();
  if (sum != static_cast<long>(n) * (n - 1) / 2) std::abort();
  return ns_between(t0, t1) / n;
}

// -- driver ----------------------------------------------------------------------------------

struct plan {
  int samples;       // batches per figure (strata and baseline alternate)
  int batch;         // operations per batch
  int warmup;        // batches discarded first
  int cross_rounds;  // cross-thread rounds
  int cross_n;       // messages per cross-thread round
};

struct pair_samples {
  std::vector<double> strata, base;
};

bench::figure make_figure(std::string name, std::string unit, pair_samples s, std::string base_name,
                          std::string target_text = "", double target = 0) {
  bench::figure f;
  f.name = std::move(name);
  f.unit = std::move(unit);
  f.value = bench::summarize(std::move(s.strata));
  f.baseline_name = std::move(base_name);
  f.baseline = bench::summarize(std::move(s.base));
  f.target_text = std::move(target_text);
  f.target = target;
  return f;
}

// with_targets puts the target on the same-run ratio (issue 8, `max_ratio`) and
// keeps the earlier absolute target of the figure (issue 1), if any, as the second one.
bench::figure with_targets(bench::figure f, std::string ratio_text, double max_ratio) {
  f.abs_target_text = std::move(f.target_text);
  f.abs_target = f.target;
  f.target_text = std::move(ratio_text);
  f.target = max_ratio;
  f.target_on_ratio = true;
  return f;
}

template <class Strata, class Bare>
strata::task<pair_samples> alternate(const plan& p, int batch, Strata strata_batch, Bare bare_batch) {
  pair_samples out;
  for (int i = 0; i < p.warmup + p.samples; ++i) {
    double a = co_await strata_batch(batch);
    double b = bare_batch(batch);
    if (i < p.warmup) continue;
    out.strata.push_back(a);
    out.base.push_back(b);
  }
  co_return out;
}

strata::task<void> single_thread_figures(const plan& p, bench::report& rep) {
  if (rep.wanted("spawn_join")) {
    auto s = co_await alternate(p, p.batch, strata_spawn_join, bare_spawn_join);
    rep.add(with_targets(make_figure("spawn_join", "ns/task", std::move(s), "bare_queue", "<= 30 ns", 30),
                         "ratio <= 3.8", 3.8));
  }
  if (rep.wanted("spawn_await")) {
    auto s = co_await alternate(p, p.batch, strata_spawn_await, bare_spawn_await);
    rep.add(make_figure("spawn_await", "ns/child", std::move(s), "bare_await"));
  }
  if (rep.wanted("switch_yield")) {
    auto s = co_await alternate(p, p.batch, strata_switch, [](int n) { return bare_switch(n); });
    rep.add(
        with_targets(make_figure("switch_yield", "ns/switch", std::move(s), "bare_generator", "<= 10 ns", 10),
                     "ratio <= 7", 7.0));
  }
  if (rep.wanted("channel_local")) {
    auto s = co_await alternate(p, p.batch, strata_channel_local, bare_channel_local);
    rep.add(with_targets(make_figure("channel_local", "ns/msg", std::move(s), "bare_channel"), "ratio <= 10",
                         10.0));
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = bench::parse_options(argc, argv);
  plan p = opt.quick ? plan{40, 1000, 4, 3, 20000} : plan{3000, 1000, 100, 20, 200000};
  bench::report rep("runtime_bench", opt);

  strata::run(single_thread_figures(p, rep));

  if (rep.wanted("channel_threads")) {
    pair_samples s;
    for (int i = 0; i < p.cross_rounds + 1; ++i) {
      double a = strata_channel_threads(p.cross_n);
      double b = condvar_channel_threads(p.cross_n);
      if (i == 0) continue;  // warm-up round
      s.strata.push_back(a);
      s.base.push_back(b);
    }
    rep.add(make_figure("channel_threads", "ns/msg", std::move(s), "mutex_condvar"));
  }

  return rep.print(
      "reference (issue, same machine): C coroutine library switch 23-25 ns, spawn+close 62-65 ns, "
      "channel 52 ns; bare C++20 pooled spawn+await 5.5 ns, switch 2.3 ns");
}
