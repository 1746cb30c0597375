// The per-thread event loop: a ready queue of coroutines, a backend that waits for file
// descriptors (epoll, edge-triggered and registered lazily, or io_uring, one poll per
// wait), a heap of deadlines and a remote queue that other threads post completions to
// (woken through an eventfd).
//
// Every blocking primitive in strata suspends through a detail::waiter, which completes
// exactly once: by its source (fd readiness, a channel, an event), by its deadline or by
// the cancellation of its scope. A waiter destroyed while suspended (its frame destroyed)
// unlinks itself from all three.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>
#include <vector>

#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

class event_loop;

namespace detail {

struct waiter;

/// cancel_state is one cancellation domain (a scope, or the root of run()). Canceling it
/// completes every waiter linked to it and to its child domains with operation_canceled.
struct cancel_state {
  cancel_state* parent = nullptr;
  cancel_state* first_child = nullptr;
  cancel_state* prev_sibling = nullptr;
  cancel_state* next_sibling = nullptr;
  waiter* waiters = nullptr;
  bool canceled = false;

  explicit cancel_state(cancel_state* parent_state = nullptr) noexcept;
  ~cancel_state();
  cancel_state(const cancel_state&) = delete;
  cancel_state& operator=(const cancel_state&) = delete;
  void cancel() noexcept;
};

/// waiter is one suspended operation.
struct waiter {
  std::coroutine_handle<> handle{};
  event_loop* loop = nullptr;
  std::error_code outcome{};
  bool armed = false;      // linked into loop/cancel/source
  bool completed = false;  // outcome decided, resumption scheduled
  bool resumed = false;    // the awaiting coroutine took the outcome
  bool posted = false;     // a completion from another thread is queued
  // deadline heap
  deadline::clock::time_point when{};
  std::size_t heap_index = static_cast<std::size_t>(-1);
  // cancellation list
  cancel_state* cancel = nullptr;
  waiter* cancel_prev = nullptr;
  waiter* cancel_next = nullptr;
  // the source (fd slot, channel, event) unlinks the waiter through this hook
  void (*unlink_source)(waiter&) noexcept = nullptr;
  void* source = nullptr;
  std::uintptr_t source_tag = 0;

  waiter() noexcept = default;
  waiter(const waiter&) = delete;
  waiter& operator=(const waiter&) = delete;
  ~waiter();

  /// begin prepares the waiter for `h` in `cancel_domain` with `dl`. Returns false (and
  /// sets outcome) when it must not suspend: canceled already or deadline passed.
  bool begin(std::coroutine_handle<> h, cancel_state* cancel_domain, deadline dl) noexcept;
  /// finish_arming links the deadline and cancellation once the source holds the waiter.
  void finish_arming(deadline dl) noexcept;
  /// complete decides the outcome and schedules the coroutine (owning thread only).
  void complete(std::error_code ec) noexcept;
  /// disarm unlinks from deadline, cancellation and source without resuming.
  void disarm() noexcept;
};

/// exit_hook is called when its loop is about to end (e.g. run() returns) while the loop
/// still works: an object whose tasks outlive one run() (a listener's accept loop)
/// destroys them there, instead of touching a dead loop later.
struct exit_hook {
  void (*on_exit)(exit_hook&) noexcept = nullptr;
  exit_hook* prev = nullptr;
  exit_hook* next = nullptr;
  event_loop* loop = nullptr;  // where it is linked; nullptr when not
};

}  // namespace detail

/// loop_backend is how an event loop waits for descriptors (docs/runtime.md, *Backends*).
enum class loop_backend : std::uint8_t {
  /// epoll, edge-triggered: a descriptor stays registered from its first wait on, so the
  /// kernel runs the loop's wake-up callback for every readiness change of it.
  epoll,
  /// io_uring: a one-shot poll per read wait, submitted with the loop's next wait, so
  /// nothing stays registered while a descriptor is busy (writers still wait in epoll).
  /// Falls back to epoll where the kernel refuses io_uring (event_loop::backend() tells).
  io_uring,
};

/// default_loop_backend is the backend run() gives a loop: STRATA_LOOP=epoll or
/// STRATA_LOOP=io_uring in the environment, else io_uring.
loop_backend default_loop_backend() noexcept;

/// event_loop runs the coroutines of one thread. Create one per thread (run() does).
class event_loop {
 public:
  explicit event_loop(loop_backend backend = default_loop_backend());
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  /// current returns this thread's loop, or nullptr outside run().
  static event_loop* current() noexcept { return current_; }
  /// backend is the backend this loop runs (epoll when io_uring was asked for but refused).
  loop_backend backend() const noexcept { return uring_ ? loop_backend::io_uring : loop_backend::epoll; }

  /// schedule queues `h` to be resumed by this loop (owning thread only).
  void schedule(std::coroutine_handle<> h) {
    // Inline: every yield, spawn and wake-up passes here (bench/runtime_bench switch_yield).
    if (ready_count_ == ready_.size()) grow_ready();
    ready_[(ready_head_ + ready_count_) & (ready_.size() - 1)] = h;
    ++ready_count_;
  }
  /// unschedule removes `h` from the ready queue (a frame destroyed while queued). Inside
  /// an unschedule batch it only records `h`: each call would scan the queue.
  void unschedule(std::coroutine_handle<> h) noexcept;
  /// begin_unschedule_batch opens a batch (batches nest): until the outermost one ends,
  /// unschedule() records handles, and end_unschedule_batch() removes them all in one pass
  /// over the ready queue. ~scope destroys its frames in a batch, which makes destroying n
  /// queued tasks O(n log n) instead of n scans of the queue. Nothing may be resumed in a
  /// batch.
  void begin_unschedule_batch() noexcept { ++unschedule_batch_depth_; }
  void end_unschedule_batch() noexcept;

  /// post_completion completes `w` on this loop's thread; callable from any thread.
  void post_completion(detail::waiter* w, std::error_code ec);
  /// withdraw_completion removes a posted completion of `w` (owning thread only).
  void withdraw_completion(detail::waiter* w) noexcept;

  /// run_until runs until `root` is done. Aborts with a message when nothing can ever
  /// wake the loop again: no task is ready and no I/O, timer, channel or event wait nor
  /// posted completion is pending (joins do not count: only a task can end them). A wait
  /// on a foreign awaitable, or an event no one will set, is not detected.
  void run_until(std::coroutine_handle<> root);

  /// add_exit_hook links `h` (unlinked) to this loop: h.on_exit runs when the loop ends.
  void add_exit_hook(detail::exit_hook& h) noexcept;
  /// remove_exit_hook unlinks `h` from whichever loop it is linked to.
  static void remove_exit_hook(detail::exit_hook& h) noexcept;

  /// root_cancel is the cancellation domain of tasks started by run().
  detail::cancel_state& root_cancel() noexcept { return root_cancel_; }

  // -- used by the I/O and timer primitives --------------------------------------
  void add_timer(detail::waiter& w);
  void remove_timer(detail::waiter& w) noexcept;
  // watch_io, io_ready and io_drained are pollable_fd's (and the runtime tests'):
  // transports reach descriptors only through pollable_fd.

  /// io_attempt retries a parked operation when its readiness edge comes: true when it
  /// is done (the waiter completes), false when it would still block (it stays parked).
  using io_attempt = bool (*)(detail::waiter&) noexcept;
  /// watch_io parks `w` until `fd` becomes readable (write=false) or writable; with
  /// `attempt`, the loop calls it on each edge and completes `w` only once it is done.
  /// Returns false, with w.outcome set, when the caller must not suspend.
  bool watch_io(int fd, bool write, detail::waiter& w, io_attempt attempt = nullptr);
  /// io_ready reports whether `fd` may be ready for the direction (a hint; see .cpp).
  bool io_ready(int fd, bool write) const noexcept;
  /// io_drained records that the direction returned EAGAIN or a short transfer.
  void io_drained(int fd, bool write) noexcept;
  /// forget_fd drops the registration of `fd`; call before closing it.
  void forget_fd(int fd) noexcept;
  void note_waiter(int delta) noexcept { pending_waits_ += delta; }

 private:
  detail::exit_hook* exit_hooks_ = nullptr;
  struct io_slot {
    detail::waiter* reader = nullptr;
    detail::waiter* writer = nullptr;
    io_attempt read_attempt = nullptr;
    io_attempt write_attempt = nullptr;
    bool registered = false;
    std::uint32_t interest = 0;  // the epoll events registered (see watch_io)
    bool read_ready = true;
    bool read_final = false;  // RDHUP/HUP reported since the last drain (see io_drained)
    bool write_ready = true;
    // io_uring: a read poll is in the ring, tagged with the generation (forget_fd starts
    // a new one, so a late completion for a closed descriptor whose number was reused is
    // recognised and dropped). Writers wait in epoll under either backend (see watch_io).
    bool read_armed = false;
    std::uint32_t generation = 0;
  };
  struct uring;  // the io_uring backend's ring (event_loop.cpp); null under epoll
  struct remote_item {
    detail::waiter* w;
    std::error_code ec;
  };

  static void unlink_io(detail::waiter& w) noexcept;
  void drop_write_interest(int fd, io_slot& s) noexcept;
  void grow_ready();
  // This thread's loop; constinit so that access from inline code needs no init guard.
  static constinit inline thread_local event_loop* current_ = nullptr;
  void run_ready();
  void poll(bool block);
  void epoll_wait_once(bool block);
  void uring_wait_once(bool block);
  void on_io_event(int fd, io_slot& s, bool readable, bool writable, bool hang_up);
  void arm_read_poll(int fd, io_slot& s);
  void cancel_read_poll(int fd, io_slot& s) noexcept;
  int wait_timeout_ms() const;
  void expire_timers();
  void drain_remote();
  void heap_up(std::size_t i) noexcept;
  void heap_down(std::size_t i) noexcept;
  void heap_swap(std::size_t a, std::size_t b) noexcept;
  io_slot& slot(int fd);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::unique_ptr<uring> uring_;
  std::vector<std::coroutine_handle<>> ready_;
  std::size_t ready_head_ = 0;
  std::size_t ready_count_ = 0;
  std::vector<detail::waiter*> timers_;
  std::vector<io_slot> io_;
  // Descriptors registered with epoll, or polls in the io_uring ring (the wake eventfd's
  // aside): while there are none, the non-blocking poll between batches of resumes has
  // nothing to find and is skipped.
  std::size_t watched_fds_ = 0;
  std::mutex remote_mutex_;
  std::vector<remote_item> remote_;
  std::atomic<bool> remote_pending_{false};
  std::atomic<int> remote_expected_{0};
  std::size_t pending_waits_ = 0;
  unsigned unschedule_batch_depth_ = 0;
  std::vector<std::pair<void*, std::size_t>> unscheduled_;  // frame, times (see end_unschedule_batch)
  detail::cancel_state root_cancel_;
  event_loop* previous_ = nullptr;
};

namespace detail {

/// current_cancel is an awaitable that yields the awaiting coroutine's cancel domain.
struct current_cancel {
  cancel_state* state = nullptr;
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    state = cancel_state_of(h);
    return false;
  }
  cancel_state* await_resume() const noexcept { return state; }
};

/// io_wait suspends until an fd direction is ready, the deadline passes or cancel.
struct io_wait {
  int fd;
  bool write;
  deadline dl;
  waiter w{};
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if (!w.begin(h, cancel_state_of(h), dl)) return false;
    if (!w.loop->watch_io(fd, write, w)) return false;
    w.finish_arming(dl);
    return true;
  }
  std::error_code await_resume() noexcept {
    w.resumed = true;
    return w.outcome;
  }
};

}  // namespace detail

/// wait_readable suspends until `fd` becomes readable. Descriptors are edge-triggered:
/// call it after a read returned EAGAIN (or short, see io_drained), not to poll a
/// descriptor that may already hold unread data. Errors: timed_out, operation_canceled,
/// closed (forget_fd while waiting), invalid_argument (fd < 0, or another task already
/// waits on this direction of `fd`), system errors such as EBADF.
inline detail::io_wait wait_readable(int fd, deadline dl) noexcept { return {fd, false, dl}; }
/// wait_writable suspends until `fd` becomes writable; see wait_readable.
inline detail::io_wait wait_writable(int fd, deadline dl) noexcept { return {fd, true, dl}; }

}  // namespace strata
