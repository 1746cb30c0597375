// Private machinery of the shm transport shared by shm.cpp (streams), shm_broadcast.cpp
// and shm_queue.cpp: descriptor and mapping ownership, segment creation and attachment,
// the wait set that wakes on an eventfd or a dead peer, the adaptive spinner, the
// rendezvous hello exchange and the service thread that answers rendezvous for rings
// with many members.
#pragma once

#include <poll.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "shm_ring.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/pollable_fd.hpp"
#include "strata/runtime/timer.hpp"
#include "strata/transport/shm.hpp"
#include "strata/transport/unix.hpp"

namespace strata::shm::detail {

/// mapping owns a shared mapping of a segment.
class mapping {
 public:
  mapping() noexcept = default;
  mapping(std::byte* base, std::size_t size) noexcept : base_(base), size_(size) {}
  mapping(mapping&& o) noexcept : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapping& operator=(mapping&& o) noexcept {
    if (this != &o) {
      reset();
      base_ = std::exchange(o.base_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~mapping() { reset(); }
  std::byte* base() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  void reset() noexcept;

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

/// segment is a mapped ring segment with its validated layout.
struct segment {
  pollable_fd memfd;  ///< kept by creators (to hand out); attachers close it after mapping
  mapping map;
  layout shape;
};

/// create_segment makes a memfd of `l.size` bytes, seals its size, maps it and writes the
/// header. Slot sequences of a queue are initialised (slot i starts with sequence i).
result<segment> create_segment(const layout& l);
/// attach_segment maps a segment another process created and validates it: the memfd's
/// size must be sealed (so it cannot shrink under us: no SIGBUS), its header must
/// describe exactly its size, and its kind must be `expected`.
result<segment> attach_segment(int memfd, segment_kind expected);

/// make_eventfd creates a non-blocking, close-on-exec eventfd.
result<pollable_fd> make_eventfd();
/// wake makes an eventfd readable (one write; a saturated counter is readable anyway).
void wake(int efd) noexcept;

/// waitset is a private epoll set holding eventfds (edge-triggered: each write to one of
/// them is an event; they are never drained) and, optionally, a control connection whose
/// hang-up means the peer process is gone. The event loop waits on the epoll descriptor
/// itself, so one task wakes on either. One task waits on a waitset at a time.
class waitset {
 public:
  waitset() noexcept = default;
  waitset(waitset&&) noexcept = default;
  waitset& operator=(waitset&&) noexcept = default;

  /// open makes the set; `hangup_fd` (or -1) is the control connection. With
  /// `records`, bytes arriving on it (end records) wake the set too.
  result<void> open(std::span<const int> wake_fds, int hangup_fd, bool records = false);
  /// hung_up reports (sticky) whether the control connection hung up. Costs a system
  /// call only when the event loop saw an event on the set since the last check.
  bool hung_up() noexcept;
  /// refresh collects pending events now (one epoll_wait with timeout 0); returns the
  /// count. Records a hang-up.
  int refresh() noexcept;
  /// wait suspends until an event arrives on the set. Returns success (re-check the
  /// ring), timed_out, operation_canceled or closed (close() of the owner ran).
  task<std::error_code> wait(deadline dl);
  /// close wakes a pending wait with closed and releases the epoll descriptor.
  void close() noexcept { epoll_.close(); }
  int fd() const noexcept { return epoll_.get(); }

 private:
  pollable_fd epoll_;
  int hangup_fd_ = -1;
  bool hung_up_ = false;
};

/// spinner bounds and adapts the busy wait before sleeping.
class spinner {
 public:
  explicit spinner(std::chrono::nanoseconds limit = std::chrono::microseconds(20)) noexcept
      : limit_(limit), budget_(limit / 2) {}
  /// spin polls `ready` until it holds (true) or the budget is spent (false).
  template <class Ready>
  bool spin(Ready&& ready) {
    if (limit_.count() <= 0) return false;
    auto start = std::chrono::steady_clock::now();
    for (unsigned i = 1;; ++i) {
      relax();
      if (ready()) {
        budget_ = std::min(limit_, budget_ * 2);
        return true;
      }
      if ((i & 15) == 0 && std::chrono::steady_clock::now() - start >= budget_) {
        budget_ = std::max(floor(), budget_ / 2);
        return false;
      }
    }
  }

 private:
  static void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  std::chrono::nanoseconds floor() const noexcept {
    return std::min(limit_, std::chrono::nanoseconds(std::chrono::microseconds(1)));
  }
  std::chrono::nanoseconds limit_;
  std::chrono::nanoseconds budget_;
};

/// end_records collects the end records (shm_ring.hpp) a peer sends on a control
/// connection. Another process can rewrite the segment, not this connection, so a
/// record is what makes an end flag true.
struct end_records {
  std::optional<std::uint64_t> fin;  ///< the peer finished: its final position
  bool bye = false;                  ///< the peer reads no more
  bool eof = false;                  ///< the connection ended (the peer closed or died)
  /// poll reads what has arrived, without waiting. protocol_error for a malformed or
  /// repeated record or bytes after the end; `fd` < 0 (no connection) reads nothing.
  result<void> poll(int fd) noexcept;

 private:
  std::array<std::byte, end_record_size> partial_{};
  std::size_t got_ = 0;
};
/// send_end sends one end record on a control connection without waiting (it is the
/// only traffic after the hello, so the socket buffer has room); errors are ignored:
/// the peer is gone then.
void send_end(int fd, const end_record& r) noexcept;

/// spin_burst is how many times spin mode polls a ring between turns of the event loop.
inline constexpr int spin_burst = 32;

/// wait_outcome is what await_ready reports: `ready` (re-check the ring), `slept` (the
/// same, after a sleep: something on the wait set may have woken us), `hung_up`.
enum class wait_outcome { ready, slept, hung_up };

/// await_ready parks the calling task until `ready()` may hold. It is the one wait loop
/// of every ring operation: spin mode polls between turns of the event loop; otherwise
/// it spins briefly, then `prepare()` announces the sleep, `ready()` is checked again
/// (the Dekker handshake) and the task sleeps on `ws` until a wake-up or a hang-up, and
/// `withdraw()` retracts the announcement. `alive` is false once the owner was closed
/// (the ring is unmapped: nothing may be touched then). Errors: timed_out,
/// operation_canceled, closed.
template <class Ready, class Prepare, class Withdraw>
task<result<wait_outcome>> await_ready(waitset& ws, spinner& sp, const wait_options& opt, const bool& alive,
                                       deadline dl, Ready ready, Prepare prepare, Withdraw withdraw) {
  if (dl == deadline::already() || dl.expired()) co_return errc::timed_out;
  if (ws.hung_up()) co_return wait_outcome::hung_up;
  if (opt.spin) {
    auto* cancel = co_await strata::detail::current_cancel{};
    for (unsigned i = 1;; ++i) {
      if (cancel && cancel->canceled) co_return errc::operation_canceled;
      co_await yield();
      if (!alive) co_return errc::closed;
      // A short burst of plain polls between turns of the loop: a peer that answers
      // within it is seen within a few nanoseconds, not a loop turn later.
      for (int k = 0; k < spin_burst; ++k) {
        if (ready()) co_return wait_outcome::ready;
      }
      if ((i & 63) == 0 && dl.expired()) co_return errc::timed_out;
      if ((i & 1023) == 0) {
        ws.refresh();
        if (ws.hung_up()) co_return wait_outcome::hung_up;
        co_return wait_outcome::ready;  // let the caller validate the ring again
      }
    }
  }
  if (sp.spin(ready)) co_return wait_outcome::ready;
  prepare();
  if (ready()) {
    withdraw();
    co_return wait_outcome::ready;
  }
  // Sleep at most opt.recheck: garbage another process left in the segment may have
  // swallowed our wake-up, and the caller's loop validates the ring again.
  auto ec = co_await ws.wait(deadline::earlier(dl, deadline::after(opt.recheck)));
  if (!alive) co_return errc::closed;
  withdraw();
  if (ec == errc::timed_out && !dl.expired()) ec = {};
  if (ec) co_return unexpected(ec);
  co_return wait_outcome::slept;  // re-check: the caller's loop also sees a hang-up next time
}

/// exchange_hello sends `request` and receives the reply with its descriptors (owned by
/// `fds` on return, also on failure). Errors: as the stream, protocol_error for a
/// malformed reply or a descriptor count that differs from what the reply announces.
task<result<hello>> exchange_hello(uds::stream& ctrl, const hello& request, std::vector<pollable_fd>& fds,
                                   deadline dl);
/// read_request reads a connector's hello on an accepted connection.
task<result<hello>> read_request(uds::stream& ctrl, deadline dl);
/// send_reply answers a connector, with descriptors when `fds` is not empty.
task<result<void>> send_reply(uds::stream& ctrl, const hello& reply, std::span<const int> fds, deadline dl);

/// connect_rendezvous opens the control connection to NAME and runs the hello for
/// `kind`: returns the connection, the reply and its descriptors. A reply that refuses
/// maps to protocol_error (wrong kind), EUSERS (no free member entry) or EIO (failed).
struct rendezvous {
  uds::stream ctrl;
  hello reply;
  std::vector<pollable_fd> fds;
};
task<result<rendezvous>> connect_rendezvous(std::string_view name, segment_kind kind,
                                            std::uint32_t fds_expected, deadline dl);

/// service answers the rendezvous of a ring with many members (broadcast, queue) on a
/// thread of its own, so that members can join while the owner's tasks are busy or idle,
/// and watches each member's control connection: a hang-up (the member closed or died)
/// calls `leave`. All shared state is in the segment (atomics) or behind eventfds.
class service {
 public:
  struct hooks {
    segment_kind kind;
    /// join picks and fills a member entry for process `pid`; nullopt when full.
    std::function<std::optional<std::uint32_t>(std::uint32_t pid)> join;
    /// leave frees a member entry; false asks to be called again later.
    std::function<bool(std::uint32_t member)> leave;
    /// fan_out runs on the service thread after fan_out() was called (once for a burst).
    std::function<void()> fan_out;
  };

  service() = default;
  service(const service&) = delete;
  service& operator=(const service&) = delete;
  ~service() { stop(); }

  /// start serves `listener` (its descriptor is only polled and accepted on, by the
  /// thread) and hands `fds` (borrowed: the owner keeps them open for the service's
  /// life) to each member that joins.
  result<void> start(uds::listener listener, std::vector<int> fds, hooks h);
  /// stop ends the thread and closes every member's control connection.
  void stop() noexcept;
  /// local_address is where the service listens.
  result<address> local_address() const { return listener_.local_address(); }
  /// fan_out asks the thread to run hooks::fan_out: one eventfd write, whatever the hook
  /// costs.
  void fan_out() noexcept { wake(fan_out_.get()); }
  /// members is the number of connected members.
  std::size_t members() const noexcept { return members_.load(std::memory_order_relaxed); }
  /// announce_end has the thread send an end record (fin, `position`) to every member
  /// and to every member that joins later, and returns once the connected ones have it
  /// (so the owner may set its end flag afterwards: a flag without a record is forged).
  void announce_end(std::uint64_t position) noexcept;

 private:
  /// joiner is a connection whose hello is still arriving.
  struct joiner {
    pollable_fd conn;
    std::array<std::byte, hello_size> wire;
    std::size_t got = 0;
    std::chrono::steady_clock::time_point until;  ///< dropped if the hello is not complete by then
  };
  /// max_joining bounds the connections whose hello is awaited at once.
  static constexpr std::size_t max_joining = 64;

  void run() noexcept;
  /// accept_joiners takes queued connections (up to max_joining awaited at once).
  void accept_joiners() noexcept;
  /// serve_joiners reads what arrived of each joiner's hello (`joiner_polls[i]` is the
  /// poll result of joining_[i]), admits the complete ones and drops the failed or late.
  void serve_joiners(std::span<const pollfd> joiner_polls) noexcept;
  /// read_hello reads what has arrived of `j`'s hello.
  enum class hello_progress { partial, complete, failed };
  static hello_progress read_hello(joiner& j) noexcept;
  /// admit answers a complete hello: a member entry and the descriptors, or a refusal.
  void admit(joiner& j) noexcept;
  void serve_fan_out() noexcept;
  /// serve_end sends the announced end record to every connected member.
  void serve_end() noexcept;
  /// drop_departed frees the entries of members whose connection hung up;
  /// `member_polls[i]` is the poll result of connected_[i].
  void drop_departed(std::span<const pollfd> member_polls) noexcept;

  uds::listener listener_;
  pollable_fd stop_;
  pollable_fd fan_out_;
  pollable_fd end_;  ///< announce_end wakes the thread here
  std::mutex end_mutex_;
  std::condition_variable end_done_cv_;
  std::optional<std::uint64_t> end_position_;  ///< announced (under end_mutex_)
  bool end_done_ = false;                      ///< sent to the connected members (under end_mutex_)
  std::vector<int> fds_;
  hooks hooks_;
  std::thread thread_;
  std::atomic<std::size_t> members_{0};
  // Owned by the thread:
  struct member {
    pollable_fd ctrl;
    std::uint32_t index;
  };
  std::vector<member> connected_;
  std::vector<joiner> joining_;
  std::vector<std::uint32_t> pending_leaves_;
  std::optional<std::uint64_t> ended_;  ///< the thread's copy: joiners get the record too
};

/// peer_pid reads SO_PEERCRED of a connected Unix socket (0 when unknown).
std::uint32_t peer_pid(int fd) noexcept;

}  // namespace strata::shm::detail
