// channel<T>: a bounded queue between tasks, on one thread or across threads.
//
// Values live only in the channel's buffer, never in a waiter: a woken task retries its
// operation. So a receive that is canceled or times out never loses a value, and a wake-up
// that crosses threads (posted to the other loop, woken through its eventfd) only says
// "look again". A wake-up that its waiter will not use (the waiter timed out, was canceled
// or destroyed first) is handed on to the next waiter, so no value or slot is left with
// tasks still waiting for it.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "strata/core/result.hpp"
#include "strata/runtime/event_loop.hpp"

namespace strata {

/// channel is a bounded multi-producer multi-consumer queue with close.
template <class T>
class channel {
 public:
  /// channel creates a queue holding at most `capacity` values (at least 1).
  explicit channel(std::size_t capacity) : capacity_(capacity ? capacity : 1) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// try_send queues `value` if there is room. Errors: closed, timed_out (full).
  result<void> try_send(T& value) {
    std::unique_lock lock(mutex_);
    if (closed_) return errc::closed;
    if (buffer_.size() >= capacity_) return errc::timed_out;
    buffer_.push_back(std::move(value));
    wake_one(receivers_, lock);
    return {};
  }

  /// try_recv takes a value if one is queued. Errors: closed (closed and drained),
  /// timed_out (empty).
  result<T> try_recv() {
    std::unique_lock lock(mutex_);
    if (buffer_.empty()) return closed_ ? errc::closed : errc::timed_out;
    T value = std::move(buffer_.front());
    buffer_.pop_front();
    wake_one(senders_, lock);
    return value;
  }

  /// send queues `value`, waiting for room until `dl`.
  /// Errors: closed, timed_out, operation_canceled (the value is then not queued).
  task<result<void>> send(T value, deadline dl) {
    for (;;) {
      auto r = try_send(value);
      if (r || r.error() != errc::timed_out) co_return r;
      if (auto ec = co_await wait_awaiter{this, &senders_, dl}) co_return ec;
    }
  }

  /// recv takes the oldest value, waiting until `dl`. After close() it drains what is
  /// queued, then fails with closed. Errors: closed, timed_out, operation_canceled.
  task<result<T>> recv(deadline dl) {
    for (;;) {
      auto r = try_recv();
      if (r || r.error() != errc::timed_out) co_return r;
      if (auto ec = co_await wait_awaiter{this, &receivers_, dl}) co_return unexpected(ec);
    }
  }

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

 private:
  struct wait_awaiter {
    channel* self;
    std::deque<detail::waiter*>* list;
    deadline dl;
    detail::waiter w{};

    wait_awaiter(channel* ch, std::deque<detail::waiter*>* l, deadline d) noexcept
        : self(ch), list(l), dl(d) {}
    wait_awaiter(const wait_awaiter&) = delete;
    wait_awaiter& operator=(const wait_awaiter&) = delete;
    // Destroyed after a wake-up from the channel but before running (its scope was
    // destroyed): the wake-up would be lost, so hand it on.
    ~wait_awaiter() {
      if (w.completed && !w.resumed && !w.outcome) {
        std::unique_lock lock(self->mutex_);
        self->pass_on(*list, lock);
      }
    }

    static void unlink(detail::waiter& w) noexcept {
      auto* ch = static_cast<channel*>(w.source);
      auto& l = w.source_tag ? ch->senders_ : ch->receivers_;
      std::unique_lock lock(ch->mutex_);
      for (auto it = l.begin(); it != l.end(); ++it) {
        if (*it == &w) {
          l.erase(it);
          return;
        }
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
      std::lock_guard lock(self->mutex_);
      if (self->can_proceed(*list)) {  // re-checked under the lock: it may have changed
        w.outcome = {};
        return false;
      }
      w.source = self;
      w.source_tag = (list == &self->senders_) ? 1 : 0;
      w.unlink_source = &unlink;
      list->push_back(&w);
      w.finish_arming(dl);
      return true;
    }
    std::error_code await_resume() noexcept {
      w.resumed = true;
      return w.outcome;
    }
  };

  // can_proceed tells whether a waiter of `list` would now succeed or see closed (locked).
  bool can_proceed(const std::deque<detail::waiter*>& list) const noexcept {
    if (closed_) return true;
    return &list == &receivers_ ? !buffer_.empty() : buffer_.size() < capacity_;
  }

  // pass_on wakes the next waiter of `list` when it could proceed, and releases the lock.
  void pass_on(std::deque<detail::waiter*>& list, std::unique_lock<std::mutex>& lock) {
    if (can_proceed(list)) {
      wake_one(list, lock);
    } else {
      lock.unlock();
    }
  }

  // wake_one wakes the oldest waiter of `list` and releases the lock.
  void wake_one(std::deque<detail::waiter*>& list, std::unique_lock<std::mutex>& lock) {
    if (list.empty()) {
      lock.unlock();
      return;
    }
    detail::waiter* w = list.front();
    list.pop_front();
    if (w->loop == event_loop::current()) {
      lock.unlock();
      w->complete({});
    } else {
      w->posted = true;
      w->loop->post_completion(w, {});
      lock.unlock();
    }
  }

  mutable std::mutex mutex_;
  std::deque<T> buffer_;
  std::size_t capacity_;
  bool closed_ = false;
  std::deque<detail::waiter*> receivers_;
  std::deque<detail::waiter*> senders_;
};

}  // namespace strata
