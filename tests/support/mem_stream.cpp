#include "support/mem_stream.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "strata/core/buffer.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"

namespace strata::test {
namespace {

thread_local int injected_count = 0;

/// wait_list parks the tasks waiting for one condition; wake_all makes them re-check.
struct wait_list {
  std::vector<strata::detail::waiter*> waiters;

  void wake_all() noexcept {
    auto woken = std::move(waiters);
    waiters.clear();
    for (auto* w : woken) w->complete({});
  }
};

/// parked suspends on a wait_list until woken, the deadline or cancellation.
struct parked {
  wait_list* list;
  deadline dl;
  strata::detail::waiter w{};

  static void unlink(strata::detail::waiter& w) noexcept {
    std::erase(static_cast<wait_list*>(w.source)->waiters, &w);
  }
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if (!w.begin(h, strata::detail::cancel_state_of(h), dl)) return false;
    w.source = list;
    w.unlink_source = &unlink;
    list->waiters.push_back(&w);
    w.finish_arming(dl);
    return true;
  }
  std::error_code await_resume() noexcept {
    w.resumed = true;
    return w.outcome;
  }
};

/// pass_turn lets every other ready task run once. Unlike strata::yield it goes through a
/// waiter, so a frame destroyed while queued is taken off the ready queue, and it
/// reports cancellation.
struct pass_turn {
  strata::detail::waiter w{};
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if (!w.begin(h, strata::detail::cancel_state_of(h), deadline::never())) return false;
    w.complete({});
    return true;
  }
  std::error_code await_resume() noexcept {
    w.resumed = true;
    return w.outcome;
  }
};

}  // namespace

/// mem_state is shared by both ends: dir[i] carries what end i writes.
struct mem_state {
  /// direction_state holds the bytes one end wrote and the other has not read yet.
  struct direction_state {
    byte_buffer bytes;
    bool eof = false;          // the writer shut down: end_of_stream after the bytes
    bool failed = false;       // reset or injected failure: broken (after the bytes)
    bool reader_gone = false;  // the reader closed: writes fail with broken
    wait_list readers;         // wait for bytes, eof or failure
    wait_list writers;         // wait for room
  };
  struct endpoint_state {
    mem_options options;
    std::size_t ops = 0;
    bool closed = false;
    std::error_code read_error;
    std::error_code write_error;
  };

  direction_state dir[2];
  endpoint_state end[2];

  // inject reports whether this call is the one that must fail.
  bool inject(int side) noexcept {
    auto& e = end[side];
    bool hit =
        e.options.fail_at_operation >= 0 && e.ops == static_cast<std::size_t>(e.options.fail_at_operation);
    ++e.ops;
    if (hit) ++injected_count;
    return hit;
  }
  void wake_everyone() noexcept {
    for (auto& d : dir) {
      d.readers.wake_all();
      d.writers.wake_all();
    }
  }
};

namespace {

// The operations are free coroutines holding the shared state, not members: they never
// touch the mem_stream object after their first suspension, so moving or destroying an
// endpoint while one of its operations waits wakes that operation with `closed` instead
// of leaving it with a dangling `this`.

task<result<std::size_t>> do_read(std::shared_ptr<mem_state> st, int side, mutable_buffer buf, deadline dl) {
  auto& me = st->end[side];
  auto& in = st->dir[1 - side];
  if (me.closed) co_return errc::closed;
  if (me.read_error) co_return unexpected(me.read_error);
  if (st->inject(side)) {
    me.read_error = errc::broken;
    in.failed = true;
    in.reader_gone = true;
    in.bytes.consume(in.bytes.size());
    in.writers.wake_all();
    co_return errc::broken;
  }
  if (buf.empty()) co_return std::size_t{0};
  for (;;) {
    if (me.closed) co_return errc::closed;
    if (!in.bytes.empty()) {
      auto avail = in.bytes.readable();
      std::size_t n =
          std::min({buf.size(), avail.size(), std::max<std::size_t>(me.options.max_read_chunk, 1)});
      std::memcpy(buf.data(), avail.data(), n);
      in.bytes.consume(n);
      in.writers.wake_all();
      co_return n;
    }
    if (in.failed) {
      me.read_error = errc::broken;
      co_return errc::broken;
    }
    if (in.eof) {
      me.read_error = errc::end_of_stream;
      co_return errc::end_of_stream;
    }
    if (auto ec = co_await parked{&in.readers, dl}) co_return unexpected(ec);
  }
}

task<result<void>> do_write(std::shared_ptr<mem_state> st, int side, const_buffers bufs, deadline dl) {
  auto& me = st->end[side];
  auto& out = st->dir[side];
  if (me.closed) co_return errc::closed;
  if (me.write_error) co_return me.write_error;
  if (st->inject(side)) {
    me.write_error = errc::broken;
    out.failed = true;
    out.readers.wake_all();
    co_return errc::broken;
  }
  const std::size_t total = bufs.total_size();
  const std::size_t limit = std::max<std::size_t>(me.options.buffer_limit, 1);
  const std::size_t chunk = std::max<std::size_t>(me.options.max_write_chunk, 1);
  auto view = bufs.view();
  std::size_t index = 0;   // current buffer of the gather list
  std::size_t offset = 0;  // bytes of it already handed over
  std::size_t sent = 0;
  // A wait that ends early after part of the data went over loses the direction: the
  // peer holds a prefix it cannot tell from a whole message.
  auto give_up = [&](std::error_code ec) -> std::error_code {
    if (sent > 0) me.write_error = ec;
    return ec;
  };
  while (sent < total) {
    if (me.closed) co_return errc::closed;
    if (out.failed || out.reader_gone) {
      me.write_error = errc::broken;
      co_return errc::broken;
    }
    std::size_t room = out.bytes.size() < limit ? limit - out.bytes.size() : 0;
    if (room == 0) {
      if (auto ec = co_await parked{&out.writers, dl}) co_return give_up(ec);
      continue;
    }
    std::size_t step = std::min({room, chunk, total - sent});
    for (std::size_t left = step; left > 0;) {
      auto b = view[index];
      std::size_t n = std::min(left, b.size() - offset);
      out.bytes.append(b.subspan(offset, n));
      offset += n;
      left -= n;
      if (offset == b.size()) {
        ++index;
        offset = 0;
      }
    }
    sent += step;
    out.readers.wake_all();
    if (sent < total && step == chunk) {
      if (auto ec = co_await pass_turn{}) co_return give_up(ec);
    }
  }
  co_return result<void>{};
}

task<result<void>> do_shutdown(std::shared_ptr<mem_state> st, int side) {
  auto& me = st->end[side];
  if (me.closed) co_return errc::closed;
  auto& out = st->dir[side];
  if (!out.eof) {
    out.eof = true;
    if (!me.write_error) me.write_error = errc::closed;
    out.readers.wake_all();
  }
  co_return result<void>{};
}

void close_now(mem_state& st, int side) noexcept {
  auto& me = st.end[side];
  if (me.closed) return;
  me.closed = true;
  me.read_error = me.write_error = errc::closed;
  st.dir[side].eof = true;
  auto& in = st.dir[1 - side];
  in.reader_gone = true;
  in.bytes.consume(in.bytes.size());
  st.wake_everyone();
}

task<result<void>> do_close(std::shared_ptr<mem_state> st, int side) {
  if (st->end[side].closed) co_return errc::closed;
  close_now(*st, side);
  co_return result<void>{};
}

task<result<std::size_t>> closed_size() { co_return errc::closed; }
task<result<void>> closed_void() { co_return errc::closed; }

}  // namespace

std::pair<mem_stream, mem_stream> mem_stream::pair(mem_options a, mem_options b) {
  auto st = std::make_shared<mem_state>();
  st->end[0].options = a;
  st->end[1].options = b;
  return {mem_stream(st, 0), mem_stream(st, 1)};
}

mem_stream::mem_stream(mem_stream&& other) noexcept
    : state_(std::move(other.state_)), side_(std::exchange(other.side_, 0)) {}

mem_stream& mem_stream::operator=(mem_stream&& other) noexcept {
  if (this != &other) {
    if (state_) close_now(*state_, side_);
    state_ = std::move(other.state_);
    side_ = std::exchange(other.side_, 0);
  }
  return *this;
}

mem_stream::~mem_stream() {
  if (state_) close_now(*state_, side_);
}

task<result<std::size_t>> mem_stream::read_some(mutable_buffer buf, deadline dl) {
  if (!state_) return closed_size();
  return do_read(state_, side_, buf, dl);
}

task<result<void>> mem_stream::write(const_buffers bufs, deadline dl) {
  if (!state_) return closed_void();
  return do_write(state_, side_, bufs, dl);
}

task<result<void>> mem_stream::shutdown_write(deadline) {
  if (!state_) return closed_void();
  return do_shutdown(state_, side_);
}

task<result<void>> mem_stream::close(deadline) {
  if (!state_) return closed_void();
  return do_close(state_, side_);
}

void mem_stream::reset() noexcept {
  if (!state_) return;
  auto& st = *state_;
  if (st.end[side_].closed) return;
  auto& out = st.dir[side_];
  out.failed = true;
  out.bytes.consume(out.bytes.size());
  close_now(st, side_);
}

bool mem_stream::is_open() const noexcept { return state_ && !state_->end[side_].closed; }

std::size_t mem_stream::operations() const noexcept { return state_ ? state_->end[side_].ops : 0; }

std::size_t mem_stream::buffered() const noexcept { return state_ ? state_->dir[1 - side_].bytes.size() : 0; }

int mem_stream::injected_failures() noexcept { return injected_count; }

// -- run_until_passes ---------------------------------------------------------------------

namespace {

task<void> drive(const std::function<task<result<void>>(int)>& scenario, int fail_at,
                 std::optional<result<void>>& outcome) {
  outcome = co_await scenario(fail_at);
}

task<bool> run_bounded(const std::function<task<result<void>>(int)>& scenario, int fail_at,
                       std::optional<result<void>>& outcome, std::chrono::milliseconds timeout) {
  scope s;
  s.spawn(drive(scenario, fail_at, outcome));
  auto joined = co_await s.join(deadline::after(timeout));
  co_return joined.has_value();
}

}  // namespace

looped_result run_until_passes(const std::function<task<result<void>>(int fail_at)>& scenario,
                               looped_options options) {
  looped_result report;
  for (int fail_at = 0; fail_at < options.max_runs; ++fail_at) {
    const int before = injected_count;
    std::optional<result<void>> outcome;
    bool finished = run(run_bounded(scenario, fail_at, outcome, options.run_timeout));
    const int injected = injected_count - before;
    ++report.runs;
    if (injected > 0) ++report.failed_runs;
    if (!finished || !outcome) {
      ADD_FAILURE() << "run_until_passes: the run with fail_at_operation=" << fail_at
                    << " did not finish within " << options.run_timeout.count()
                    << "ms (injected failures: " << injected << ")";
      return report;
    }
    if (injected == 0) {
      if (!*outcome) {
        ADD_FAILURE() << "run_until_passes: the run with fail_at_operation=" << fail_at
                      << " failed without an injected failure: " << outcome->error().message();
        return report;
      }
      report.passed = true;
      return report;
    }
    if (*outcome && options.require_error_on_injected_failure) {
      ADD_FAILURE() << "run_until_passes: the run with fail_at_operation=" << fail_at
                    << " reported success although an injected failure fired (error swallowed)";
      return report;
    }
  }
  ADD_FAILURE() << "run_until_passes: still failing after " << options.max_runs << " runs";
  return report;
}

}  // namespace strata::test
