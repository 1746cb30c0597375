// channel<T>: a bounded queue between tasks, on one thread or across threads.
//
// Values live only in the channel's buffer, never in a waiter: a woken task retries its
// operation. So a receive that is canceled or times out never loses a value, and a wake-up
// that crosses threads (posted to the other loop, woken through its eventfd) only says
// "look again". A wake-up that its waiter will not use (the waiter timed out, was canceled
// or destroyed first) is handed on to the next waiter, so no value or slot is left with
// tasks still waiting for it.
//
// Fast paths (bench/runtime_bench channel_local): send() and recv() return awaitables
// that try the operation in await_ready, so an operation that can complete at once costs
// one lock of the channel and no coroutine frame, timer or clock read; only an operation
// that has to wait starts a coroutine (send_wait/recv_wait), which loops on "wait, retry".
// The buffer is a ring that grows up to the capacity, and the waiting tasks form intrusive
// lists (no allocation per wait).
#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// channel is a bounded multi-producer multi-consumer queue with close.
template <class T>
class channel {
  // status is the outcome of one try: done, closed, or it would have to wait.
  enum class status : unsigned char { done, closed, would_wait };
  struct wait_awaiter;
  struct wait_list {
    wait_awaiter* head = nullptr;
    wait_awaiter* tail = nullptr;
    bool empty() const noexcept { return head == nullptr; }
  };

 public:
  /// channel creates a queue holding at most `capacity` values (at least 1).
  explicit channel(std::size_t capacity) : capacity_(capacity ? capacity : 1) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// try_send queues `value` if there is room; the value is moved from only on success.
  /// Never waits. Errors: closed, timed_out (full).
  result<void> try_send(T& value) {
    switch (send_now(value)) {
      case status::done:
        return {};
      case status::closed:
        return errc::closed;
      case status::would_wait:
        break;
    }
    return errc::timed_out;
  }

  /// try_recv takes a value if one is queued. Never waits. Errors: closed (closed and
  /// drained), timed_out (empty).
  result<T> try_recv() {
    std::optional<T> value;
    switch (recv_now(value)) {
      case status::done:
        return std::move(*value);
      case status::closed:
        return errc::closed;
      case status::would_wait:
        break;
    }
    return errc::timed_out;
  }

  class send_op;
  class recv_op;

  /// send queues `value`, waiting for room until `dl`. Awaitable (`co_await ch.send(v,
  /// dl)`, once): it completes without suspending when there is room (even with an expired
  /// deadline) or the channel is closed. The value is held by the returned object until
  /// it is queued. Errors: closed, timed_out, operation_canceled (the value is then not
  /// queued).
  send_op send(T value, deadline dl) { return send_op{this, std::move(value), dl}; }

  /// recv takes the oldest value, waiting until `dl`. Awaitable (`co_await ch.recv(dl)`,
  /// once): it completes without suspending when a value is queued (even with an expired
  /// deadline). After close() it drains what is queued, then fails with closed.
  /// Errors: closed, timed_out, operation_canceled.
  recv_op recv(deadline dl) { return recv_op{this, dl}; }

  /// close refuses further sends and wakes every waiter; queued values stay receivable.
  void close() {
    std::unique_lock lock(mutex_);
    closed_ = true;
    while (!receivers_.empty() || !senders_.empty()) {
      wake_one(receivers_, lock);
      lock.lock();
      wake_one(senders_, lock);
      lock.lock();
    }
  }

  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  /// send_op is the awaitable of send(): try at once, else wait in a coroutine.
  class [[nodiscard]] send_op {
   public:
    send_op(const send_op&) = delete;
    send_op& operator=(const send_op&) = delete;

    bool await_ready() {
      status_ = self_->send_now(value_);
      return status_ != status::would_wait;
    }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) {
      slow_ = self_->send_wait(std::move(value_), dl_);
      return typename task<result<void>>::awaiter{slow_.handle()}.await_suspend(caller);
    }
    result<void> await_resume() {
      if (status_ == status::done) return {};
      if (status_ == status::closed) return errc::closed;
      return typename task<result<void>>::awaiter{slow_.handle()}.await_resume();
    }

   private:
    friend class channel;
    send_op(channel* self, T&& value, deadline dl) : self_(self), value_(std::move(value)), dl_(dl) {}

    channel* self_;
    T value_;
    deadline dl_;
    status status_ = status::would_wait;
    task<result<void>> slow_{};
  };

  /// recv_op is the awaitable of recv(): take at once, else wait in a coroutine.
  class [[nodiscard]] recv_op {
   public:
    recv_op(const recv_op&) = delete;
    recv_op& operator=(const recv_op&) = delete;

    bool await_ready() {
      status_ = self_->recv_now(value_);
      return status_ != status::would_wait;
    }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) {
      slow_ = self_->recv_wait(dl_);
      return typename task<result<T>>::awaiter{slow_.handle()}.await_suspend(caller);
    }
    result<T> await_resume() {
      if (status_ == status::done) return std::move(*value_);
      if (status_ == status::closed) return errc::closed;
      return typename task<result<T>>::awaiter{slow_.handle()}.await_resume();
    }

   private:
    friend class channel;
    recv_op(channel* self, deadline dl) noexcept : self_(self), dl_(dl) {}

    channel* self_;
    deadline dl_;
    status status_ = status::would_wait;
    // The value taken by the fast path. (Kept apart from the error: building a whole
    // result here and copying it out read it with wider loads than the stores that had
    // just written it, a store-forwarding stall of ~4 ns per receive.)
    std::optional<T> value_{};
    task<result<T>> slow_{};
  };

 private:
  // send_now and recv_now are one try of the operation under the lock; a success wakes
  // the oldest waiter of the other side.
  status send_now(T& value) {
    std::unique_lock lock(mutex_);
    if (closed_) return status::closed;
    if (count_ >= capacity_) return status::would_wait;
    push(std::move(value));
    wake_one(receivers_, lock);
    return status::done;
  }
  status recv_now(std::optional<T>& out) {
    std::unique_lock lock(mutex_);
    if (count_ == 0) return closed_ ? status::closed : status::would_wait;
    auto& slot = slots_[head_];
    out.emplace(std::move(*slot));
    slot.reset();
    head_ = (head_ + 1) & (slots_.size() - 1);
    --count_;
    wake_one(senders_, lock);
    return status::done;
  }

  // send_wait and recv_wait are the slow paths, entered after a try found the channel
  // full (empty): wait for a wake-up, retry, and wait again if a newcomer got there first.
  task<result<void>> send_wait(T value, deadline dl) {
    for (;;) {
      if (auto ec = co_await wait_awaiter{this, true, dl}) co_return ec;
      auto r = try_send(value);
      if (r || r.error() != errc::timed_out) co_return r;
    }
  }
  task<result<T>> recv_wait(deadline dl) {
    for (;;) {
      if (auto ec = co_await wait_awaiter{this, false, dl}) co_return unexpected(ec);
      auto r = try_recv();
      if (r || r.error() != errc::timed_out) co_return r;
    }
  }

  struct wait_awaiter {
    channel* self;
    bool sender;
    deadline dl;
    detail::waiter w{};
    wait_awaiter* prev = nullptr;  // links in the channel's list (under its mutex)
    wait_awaiter* next = nullptr;
    bool linked = false;

    wait_awaiter(channel* ch, bool is_sender, deadline d) noexcept : self(ch), sender(is_sender), dl(d) {}
    wait_awaiter(const wait_awaiter&) = delete;
    wait_awaiter& operator=(const wait_awaiter&) = delete;
    // Destroyed after a wake-up from the channel but before running (its scope was
    // destroyed): the wake-up would be lost, so hand it on.
    ~wait_awaiter() {
      if (w.completed && !w.resumed && !w.outcome) {
        std::unique_lock lock(self->mutex_);
        self->pass_on(self->list_of(sender), lock);
      }
    }

    static void unlink(detail::waiter& w) noexcept {
      auto* node = static_cast<wait_awaiter*>(w.source);
      auto* ch = node->self;
      auto& l = ch->list_of(node->sender);
      std::unique_lock lock(ch->mutex_);
      if (node->linked) {
        remove(l, node);
        return;
      }
      if (w.posted) {
        // Another thread woke us but we complete otherwise (deadline, cancel, destroyed).
        w.posted = false;
        w.loop->withdraw_completion(&w);
        ch->pass_on(l, lock);
      }
    }
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      if (!w.begin(h, detail::cancel_state_of(h), dl)) return false;
      auto& l = self->list_of(sender);
      std::lock_guard lock(self->mutex_);
      if (self->can_proceed(l)) {  // re-checked under the lock: it may have changed
        w.outcome = {};
        return false;
      }
      w.source = this;
      w.unlink_source = &unlink;
      append(l, this);
      w.finish_arming(dl);
      return true;
    }
    std::error_code await_resume() noexcept {
      w.resumed = true;
      return w.outcome;
    }
  };

  static void append(wait_list& l, wait_awaiter* a) noexcept {
    a->prev = l.tail;
    a->next = nullptr;
    (l.tail ? l.tail->next : l.head) = a;
    l.tail = a;
    a->linked = true;
  }
  static void remove(wait_list& l, wait_awaiter* a) noexcept {
    (a->prev ? a->prev->next : l.head) = a->next;
    (a->next ? a->next->prev : l.tail) = a->prev;
    a->prev = a->next = nullptr;
    a->linked = false;
  }

  wait_list& list_of(bool sender) noexcept { return sender ? senders_ : receivers_; }

  // can_proceed tells whether a waiter of `list` would now succeed or see closed (locked).
  bool can_proceed(const wait_list& list) const noexcept {
    if (closed_) return true;
    return &list == &receivers_ ? count_ != 0 : count_ < capacity_;
  }

  // pass_on wakes the next waiter of `list` when it could proceed, and releases the lock.
  void pass_on(wait_list& list, std::unique_lock<std::mutex>& lock) {
    if (can_proceed(list)) {
      wake_one(list, lock);
    } else {
      lock.unlock();
    }
  }

  // wake_one wakes the oldest waiter of `list` and releases the lock.
  void wake_one(wait_list& list, std::unique_lock<std::mutex>& lock) {
    wait_awaiter* a = list.head;
    if (a == nullptr) {
      lock.unlock();
      return;
    }
    remove(list, a);
    detail::waiter* w = &a->w;
    if (w->loop == event_loop::current()) {
      // Out of the list and not posted: complete() has nothing to unlink (saves a lock).
      w->unlink_source = nullptr;
      lock.unlock();
      w->complete({});
    } else {
      w->posted = true;
      w->loop->post_completion(w, {});
      lock.unlock();
    }
  }

  // The buffer: a ring of slots that grows (doubling) up to the capacity, so that a
  // channel with a large capacity holds memory only for the values it has held at once.
  void push(T&& value) {
    if (count_ == slots_.size()) grow();
    slots_[(head_ + count_) & (slots_.size() - 1)].emplace(std::move(value));
    ++count_;
  }
  void grow() {
    std::size_t size = slots_.empty() ? initial_slots : slots_.size() * 2;
    std::vector<std::optional<T>> bigger(size);
    for (std::size_t i = 0; i < count_; ++i) {
      auto& slot = slots_[(head_ + i) & (slots_.size() - 1)];
      bigger[i].emplace(std::move(*slot));
      slot.reset();
    }
    slots_.swap(bigger);
    head_ = 0;
  }
  static constexpr std::size_t initial_slots = 8;  // a power of two, like every size

  mutable std::mutex mutex_;
  std::vector<std::optional<T>> slots_;  // the ring; its size is a power of two (or 0)
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::size_t capacity_;
  bool closed_ = false;
  wait_list receivers_;
  wait_list senders_;
};

}  // namespace strata
