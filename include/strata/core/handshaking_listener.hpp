// handshaking_listener: a listener that hands out only connections whose handshake has
// finished. Each accepted connection's handshake (the upper layers of a stack: tls, a
// websocket upgrade, a user's greeting) runs as its own task in the listener's scope under
// its own deadline, so a client that sends nothing, or half a handshake, delays neither
// accepts nor other clients' handshakes. A failed handshake closes that connection only:
// it is counted, reported to the failure observer and never returned by accept().
//
//   auto ready = handshaking_listener(std::move(tcp_listener),
//       [](tcp::stream s, deadline dl) { return my_layer::wrap(std::move(s), options, dl); });
//   auto conn = co_await ready.accept(dl);   // my_layer<tcp::stream>, ready to use
//
// The listener must be used and destroyed on the thread of its event loop. Destroying it
// (or close()) cancels the handshakes in flight and closes what is queued.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "strata/core/address.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/channel.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

namespace detail {
template <class T>
struct task_result;
template <class T>
struct task_result<task<result<T>>> {
  using type = T;
};
/// task_value_t is X for a task<result<X>>.
template <class Task>
using task_value_t = typename task_result<std::remove_cvref_t<Task>>::type;
}  // namespace detail

template <listener Lower, class Wrap>
class handshaking_listener {
  using accepted = detail::task_value_t<decltype(std::declval<Lower&>().accept(std::declval<deadline>()))>;

 public:
  /// connection is what accept() returns: the ready top of the stack.
  using connection = detail::task_value_t<std::invoke_result_t<Wrap&, accepted, deadline>>;

  handshaking_listener(Lower lower, Wrap wrap, handshake_options options = {})
      : state_(std::make_unique<state>(std::move(lower), std::move(wrap), options)) {}

  /// accept waits for the next connection whose handshake finished. Starts accepting
  /// from the listener below on first use. Errors: timed_out / operation_canceled (only
  /// this wait ends; handshakes go on), closed (after close()), else the error that
  /// ended the listener below (returned to every later call).
  task<result<connection>> accept(deadline dl) {
    state& s = *state_;
    if (!s.started && !s.closed) {
      s.started = true;
      s.tasks.emplace();
      if (auto* loop = event_loop::current()) loop->add_exit_hook(s.hook);
      s.tasks->spawn(accept_loop(s));
    }
    auto next = co_await s.ready.recv(dl);
    if (!next) {
      if (next.error() == errc::closed && s.fatal) co_return unexpected(s.fatal);
      co_return unexpected(next.error());
    }
    --s.pending;
    s.room.set();
    co_return std::move(*next);
  }

  result<address> local_address() const { return state_->lower.local_address(); }
  /// next_layer is the listener below (for its own counts and settings).
  const Lower& next_layer() const noexcept { return state_->lower; }
  Lower& next_layer() noexcept { return state_->lower; }

  /// close stops accepting, cancels the handshakes in flight and closes what is ready but
  /// not taken; waiting accept() calls return closed.
  void close() {
    state& s = *state_;
    if (s.closed) return;
    s.closed = true;
    if (s.tasks) s.tasks->cancel();
    s.lower.close();
    s.ready.close();
    // What was ready but not taken is dropped (its destructor releases it).
    while (s.ready.try_recv()) {
      --s.pending;
    }
  }

  handshake_stats stats() const {
    auto out = state_->stats;
    out.handshaking = state_->handshaking;
    return out;
  }
  /// on_failure sets a function called for every failed handshake (on the loop's thread).
  void on_failure(std::function<void(const handshake_failure&)> observer) {
    state_->observer = std::move(observer);
  }

 private:
  struct state;
  /// loop_ended: the loop that ran the accept loop and the handshakes is ending; they end
  /// with it (handshakes in flight are dropped) and the next accept(), on a new loop,
  /// starts accepting again. Ready connections stay queued.
  struct exit_hook : detail::exit_hook {
    state* owner = nullptr;
  };
  static void loop_ended(detail::exit_hook& h) noexcept {
    state& s = *static_cast<exit_hook&>(h).owner;
    s.tasks.reset();
    s.pending -= s.handshaking;
    s.handshaking = 0;
    s.started = false;
  }

  struct state {
    state(Lower l, Wrap w, handshake_options o)
        : lower(std::move(l)), wrap(std::move(w)), options(o), ready(o.max_pending ? o.max_pending : 1) {
      hook.on_exit = loop_ended;
      hook.owner = this;
    }
    ~state() {
      event_loop::remove_exit_hook(hook);
      tasks.reset();  // first: its tasks use everything else
    }
    state(const state&) = delete;
    state& operator=(const state&) = delete;
    Lower lower;
    Wrap wrap;
    handshake_options options;
    channel<connection> ready;
    event room;  // set when pending fell below max_pending
    std::function<void(const handshake_failure&)> observer;
    handshake_stats stats;
    std::size_t pending = 0;  // accepted, not yet taken by accept()
    std::size_t handshaking = 0;
    std::error_code fatal;
    bool started = false;
    bool closed = false;
    exit_hook hook;
    std::optional<scope> tasks;  // the accept loop and the handshakes, while a loop runs them
  };

  static task<void> accept_loop(state& s) {
    for (;;) {
      while (s.pending >= s.options.max_pending) {
        s.room.reset();
        if (!co_await s.room.wait(deadline::never())) co_return;
      }
      auto conn = co_await s.lower.accept(deadline::never());
      if (!conn) {
        if (conn.error() == errc::operation_canceled) co_return;
        // The socket listeners ride out descriptor famine themselves; what reaches here
        // ends the listener (closed, a broken socket, a listener that accepts once).
        // Handshakes in flight still finish and are handed out; accept() reports the
        // error after them.
        s.fatal = conn.error();
        if (s.handshaking == 0) s.ready.close();
        co_return;
      }
      ++s.stats.accepted;
      ++s.pending;
      ++s.handshaking;
      s.tasks->spawn(handshake(s, std::move(*conn)));
    }
  }

  static task<void> handshake(state& s, accepted conn) {
    auto peer = query<fact::peer_address>(conn);
    auto dl = deadline::after(s.options.timeout);
    auto made = co_await s.wrap(std::move(conn), dl);
    --s.handshaking;
    // The listener below ended while this handshake ran: after the last one, accept()
    // reports why (values already queued stay receivable).
    struct close_when_last {
      state& s;
      ~close_when_last() {
        if (s.fatal && s.handshaking == 0) s.ready.close();
      }
    } last{s};
    if (made) {
      ++s.stats.ready;
      connection ready_conn = std::move(*made);
      if (s.ready.try_send(ready_conn)) co_return;
      // Closed while handshaking: close what is no longer wanted.
      (void)co_await ready_conn.close(deadline::after(std::chrono::milliseconds(100)));
    } else if (made.error() == errc::operation_canceled && s.closed) {
      // close() ended it: not the peer's failure.
    } else {
      ++s.stats.failed;
      // A handshake that ran into its deadline failed because of it, whatever the layer
      // reported (a read cut short, a close that could not finish).
      bool late = made.error() == errc::timed_out || dl.expired();
      if (late) ++s.stats.timed_out;
      if (s.observer)
        s.observer(handshake_failure{late ? make_error_code(errc::timed_out) : made.error(), peer});
    }
    --s.pending;
    s.room.set();
  }

  std::unique_ptr<state> state_;
};

}  // namespace strata
