// reliable: the coroutine driver (include/strata/adapt/reliable.hpp). A receive task feeds
// every datagram of the layer below to the engine; a send task runs the engine's timers
// and sends what it produces, in batches. Both run in the connection's own scope.
#include <algorithm>
#include <array>
#include <system_error>

#include "strata/adapt/reliable.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/timer.hpp"

namespace strata::reliable {

namespace {
// Packets gathered for one batch send.
constexpr std::size_t batch = 32;
// How long the send task may take to get a RESET out after close gave up.
constexpr std::chrono::milliseconds reset_grace{100};
// A lingering close waits for eight RTOs of quiet, at least min_linger (the peer's
// retransmissions of its CLOSE back off) and at most max_linger.
constexpr std::chrono::milliseconds min_linger{500};
constexpr std::chrono::milliseconds max_linger{2000};
// A close whose last CLOSE went after the peer's stops waiting for its acknowledgement
// once the peer has been silent this long: a peer lingering for our CLOSE has left by
// then (see close).
constexpr std::chrono::milliseconds peer_gone_after = 2 * max_linger;

bool transient(const std::error_code& ec) {
  // An ICMP port unreachable (udp reports it once) or a datagram too large to be ours.
  return ec == std::errc::connection_refused || ec == errc::message_too_large;
}
}  // namespace

struct connection_state {
  connection_state(any_message lower, const options& o)
      : io(std::move(lower)), eng(o, lower_max(io), deadline::clock::now()) {
    rx.resize(std::max<std::size_t>(eng.mtu(), 65536));
    tx.resize(batch * eng.mtu());
  }
  connection_state(const connection_state&) = delete;
  connection_state& operator=(const connection_state&) = delete;

  static std::size_t lower_max(const any_message& m) {
    auto max = query<fact::max_message>(m);
    return max ? *max : 0;
  }

  any_message io;
  engine eng;
  std::vector<std::byte> rx;
  std::vector<std::byte> tx;
  event wake;     // the send task has work
  event changed;  // the engine's state changed: readers, writers and close look again
  event flushed;  // the send task has nothing more to send now
  bool closed = false;
  scope tasks;  // last: destroyed first, before what the tasks use

  void notify() {
    changed.set();
    wake.set();
  }

  task<void> receiver() {
    for (;;) {
      auto n = co_await io.recv(mutable_buffer(rx.data(), rx.size()), deadline::never());
      if (!n) {
        if (transient(n.error())) continue;
        if (n.error() == errc::operation_canceled) co_return;
        eng.fail_below(n.error());
        notify();
        co_return;
      }
      eng.on_packet(const_buffer(rx.data(), *n), deadline::clock::now());
      notify();
    }
  }

  task<void> sender() {
    std::array<outgoing_datagram, batch> out{};
    for (;;) {
      wake.reset();
      auto now = deadline::clock::now();
      eng.on_timer(now);
      for (;;) {
        std::size_t count = 0;
        while (count < batch) {
          std::span<std::byte> slot(tx.data() + count * eng.mtu(), eng.mtu());
          std::size_t n = eng.poll(slot, now);
          if (n == 0) break;
          out[count].data = const_buffer(slot.data(), n);
          ++count;
        }
        if (count == 0) break;
        std::size_t done = 0;
        while (done < count) {
          auto sent = co_await io.send_batch(
              std::span<const outgoing_datagram>(out.data() + done, count - done), deadline::never());
          if (!sent) {
            if (sent.error() == errc::operation_canceled) co_return;
            if (transient(sent.error())) {
              ++done;  // that datagram is lost, as UDP may lose any
              continue;
            }
            eng.fail_below(sent.error());
            notify();
            flushed.set();
            co_return;
          }
          done += *sent;
        }
        now = deadline::clock::now();
      }
      changed.set();
      flushed.set();
      if (wake.is_set()) continue;
      auto w = co_await wake.wait(deadline::at(eng.next_deadline()));
      if (!w && w.error() != errc::timed_out) co_return;
    }
  }
};

connection::connection() noexcept = default;
connection::connection(any_message lower, const options& o)
    : state_(std::make_shared<connection_state>(std::move(lower), o)) {
  auto& s = *state_;
  s.tasks.spawn(s.receiver());
  s.tasks.spawn(s.sender());
}
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&& other) noexcept {
  state_ = std::move(other.state_);
  return *this;
}
connection::~connection() = default;

std::size_t connection::max_message() const noexcept { return state_ ? state_->eng.max_payload() : 0; }

properties connection::runtime_capabilities() const {
  properties below = state_ ? state_->io.runtime_capabilities() : properties{};
  auto out = stack_on(below, row);
  out.max_message = max_message();
  return out;
}

const any_message& connection::next_layer() const noexcept { return state_->io; }
any_message& connection::next_layer() noexcept { return state_->io; }

stats connection::counters() const { return state_ ? state_->eng.counters() : stats{}; }

task<result<void>> connection::send(const_buffers message, deadline dl) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto keep = state_;
  auto& s = *keep;
  for (;;) {
    if (s.eng.writable()) {
      auto queued = s.eng.send(message);
      if (queued) s.wake.set();
      co_return queued;
    }
    s.changed.reset();
    auto w = co_await s.changed.wait(dl);
    if (!w) co_return unexpected(w.error());
    if (s.closed) co_return errc::closed;
  }
}

task<result<std::size_t>> connection::recv(mutable_buffer buf, deadline dl) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto keep = state_;
  auto& s = *keep;
  for (;;) {
    if (s.eng.readable()) {
      auto got = s.eng.recv(buf);
      s.wake.set();  // a window update may be due
      co_return got;
    }
    s.changed.reset();
    auto w = co_await s.changed.wait(dl);
    if (!w) co_return unexpected(w.error());
    if (s.closed) co_return errc::closed;
  }
}

task<result<void>> connection::shutdown_write(deadline) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto& s = *state_;
  if (s.eng.failure()) co_return unexpected(s.eng.failure());
  s.eng.shutdown();
  s.wake.set();
  co_return result<void>{};
}

task<result<void>> connection::close(deadline dl) {
  if (!state_ || state_->closed) co_return errc::closed;
  auto keep = state_;
  auto& s = *keep;
  s.closed = true;
  s.changed.set();  // pending sends and receives of this connection give up
  s.eng.shutdown();
  s.eng.discard_input();
  s.wake.set();
  result<void> outcome{};
  // Linger unless the peer's CLOSE came before ours was acked: then the peer sends the
  // last ACK and lingers itself.
  bool peer_first = false;
  const auto started = deadline::clock::now();
  for (;;) {
    if (s.eng.failure()) {
      if (s.eng.failure() != errc::closed) outcome = unexpected(s.eng.failure());
      break;
    }
    if (s.eng.finished_receiving() && !s.eng.finished_sending()) peer_first = true;
    if (s.eng.finished_sending() && s.eng.finished_receiving()) break;
    // Everything but our CLOSE arrived and the peer's CLOSE came first: the peer only
    // waits for our CLOSE and lingers at most max_linger once it has it. When every ACK
    // of it is lost, a peer silent for peer_gone_after (our CLOSE sent again several
    // times meanwhile) has left; nothing of ours is undelivered, so close succeeds.
    auto wait_until = dl;
    bool waiting_for_gone_peer = s.eng.finished_receiving() && s.eng.only_close_unacked();
    if (waiting_for_gone_peer) {
      auto quiet_from = std::max(s.eng.last_heard(), started);
      auto gone = deadline::at(quiet_from + peer_gone_after);
      if (gone.expired()) break;
      wait_until = deadline::earlier(dl, gone);
    }
    s.changed.reset();
    auto w = co_await s.changed.wait(wait_until);
    if (!w && waiting_for_gone_peer && w.error() == errc::timed_out && !dl.expired()) continue;
    if (!w) {
      s.eng.abort();
      s.wake.set();
      s.flushed.reset();
      (void)co_await s.flushed.wait(deadline::after(reset_grace));
      outcome = unexpected(w.error());
      break;
    }
  }
  if (outcome && peer_first) {
    // Our CLOSE was acked last: tell the peer, which lingers for that ACK, that it came.
    s.eng.send_done();
    s.wake.set();
    s.flushed.reset();
    (void)co_await s.flushed.wait(deadline::after(reset_grace));
  }
  if (outcome && !peer_first) {
    // TIME-WAIT, shortened: answer the peer's CLOSE sent again until it says it is done
    // (flag_done) or has been quiet for eight RTOs (at least 500 ms).
    auto until = deadline::earlier(dl, deadline::after(max_linger));
    for (;;) {
      auto floor = std::max<std::chrono::microseconds>(8 * s.eng.rto_min(), min_linger);
      auto quiet = std::clamp<std::chrono::microseconds>(8 * s.eng.rto(), floor, max_linger);
      auto end = deadline::earlier(until, deadline::at(s.eng.last_heard() + quiet));
      if (end.expired() || s.eng.peer_done()) break;
      s.changed.reset();
      auto w = co_await s.changed.wait(end);
      if (!w && w.error() != errc::timed_out) break;
    }
  }
  s.tasks.cancel();
  (void)co_await s.tasks.join(deadline::after(reset_grace));
  auto closed = co_await s.io.close(dl);
  if (outcome && !closed) outcome = closed;
  co_return outcome;
}

}  // namespace strata::reliable
