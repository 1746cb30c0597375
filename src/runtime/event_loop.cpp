#include "strata/runtime/event_loop.hpp"

#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_THREAD__)
#define STRATA_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRATA_THREAD_SANITIZER 1
#endif
#endif
#ifdef STRATA_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#endif

namespace strata {
namespace {

constexpr std::size_t no_index = static_cast<std::size_t>(-1);
// After this many resumptions without polling, the loop polls once so that a task that
// keeps yielding cannot starve I/O and timers.
constexpr int resumes_between_polls = 256;

[[noreturn]] void fatal(const char* what) {
  std::fprintf(stderr, "strata: event loop: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

// io_uring user data: the wake eventfd's poll, the epoll descriptor's poll, a poll
// removal (its own completion says nothing), or a descriptor's read poll: fd in the low
// 32 bits, the slot's generation in the 31 above (bit 63, set in the others, stays clear).
constexpr std::uint64_t wake_tag = ~std::uint64_t{0};
constexpr std::uint64_t removal_tag = wake_tag - 1;
constexpr std::uint64_t epoll_tag = wake_tag - 2;
constexpr std::uint32_t generation_mask = 0x7fffffff;

std::uint64_t poll_tag(int fd, std::uint32_t generation) noexcept {
  return static_cast<std::uint32_t>(fd) | (std::uint64_t{generation & generation_mask} << 32);
}

}  // namespace

loop_backend default_loop_backend() noexcept {
  static const loop_backend chosen = [] {
    const char* name = std::getenv("STRATA_LOOP");
    if (!name || std::strcmp(name, "io_uring") == 0) return loop_backend::io_uring;
    if (std::strcmp(name, "epoll") == 0) return loop_backend::epoll;
    std::fprintf(stderr, "strata: STRATA_LOOP=%s is neither io_uring nor epoll; using io_uring\n", name);
    return loop_backend::io_uring;
  }();
  return chosen;
}

namespace {

// liburing maps and unmaps a ring with raw system calls, which ThreadSanitizer does not
// see: when one thread's ring is unmapped and another thread's new ring lands at the same
// addresses, it would take the two threads' writes for a race. One synchronisation
// object orders every unmapping before every later mapping.
[[maybe_unused]] char ring_mapping_order;

void exit_ring(io_uring& ring) noexcept {
#ifdef STRATA_THREAD_SANITIZER
  __tsan_release(&ring_mapping_order);
#endif
  io_uring_queue_exit(&ring);
}

bool init_ring(io_uring& ring, io_uring_params& params) noexcept {
  if (io_uring_queue_init_params(256, &ring, &params) != 0) return false;
#ifdef STRATA_THREAD_SANITIZER
  __tsan_acquire(&ring_mapping_order);
#endif
  return true;
}

// spare_ring is the ring of this thread's last loop, kept for its next one. Closing a ring
// that a thread has used makes the kernel's clean-up, later and from a worker, queue work
// on that thread with a notification that interrupts its next blocking system call: a
// program's recv with SO_RCVTIMEO after run() returned failed with EINTR. A ring kept
// until the thread exits (when the clean-up runs synchronously) never does that.
struct spare_ring {
  io_uring ring{};
  pid_t owner = 0;  // the process whose ring it is: a forked child has a copy of the fields
  bool held = false;
  spare_ring() = default;
  spare_ring(const spare_ring&) = delete;
  spare_ring& operator=(const spare_ring&) = delete;
  ~spare_ring() {
    if (held) exit_ring(ring);
  }
};
thread_local spare_ring spare;

constexpr std::uint64_t quiesce_tag = wake_tag - 3;

}  // namespace

struct event_loop::uring {
  io_uring ring{};
  bool opened = false;
  ~uring() {
    if (!opened) return;
    // An empty ring of this process goes back to the thread for its next loop.
    if (!spare.held && quiesce()) {
      spare.ring = ring;
      spare.owner = ::getpid();
      spare.held = true;
      return;
    }
    exit_ring(ring);
  }

  // open takes this thread's spare ring or sets up a new one; false when the kernel
  // refuses one (none built in, io_uring disabled by sysctl or a seccomp filter).
  bool open() noexcept {
    if (spare.held) {
      spare.held = false;
      if (spare.owner == ::getpid()) {
        ring = spare.ring;
        opened = true;
        return true;
      }
      exit_ring(spare.ring);  // a forked child's copy: drop it, the parent's ring lives on
    }
    // DEFER_TASKRUN (6.1) runs completions only when this thread waits for them, which is
    // when the loop wants them; COOP_TASKRUN (5.19) at least does not interrupt it.
    const unsigned flag_sets[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                  IORING_SETUP_COOP_TASKRUN, 0};
    for (unsigned flags : flag_sets) {
      io_uring_params params{};
      // Polls wait in the ring however many there are; completions beyond the queue's
      // size are kept by the kernel (IORING_FEAT_NODROP) until the loop reads them.
      params.flags = flags | IORING_SETUP_CQSIZE;
      params.cq_entries = 4096;
      if (init_ring(ring, params)) {
        opened = true;
        return true;
      }
    }
    return false;
  }

  // quiesce cancels every request still in the ring (polls of descriptors that outlive
  // the loop, the loop's own two) and reaps every completion, so the ring can serve
  // another loop. False when the kernel cannot cancel them all at once (before 5.19).
  bool quiesce() noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, quiesce_tag);
    // As for forget_fd: the canceled polls complete within this call.
    if (io_uring_submit_and_get_events(&ring) < 0) return false;
    bool canceled = false;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      if (cqe->user_data == quiesce_tag) canceled = cqe->res >= 0 || cqe->res == -ENOENT;
    }
    io_uring_cq_advance(&ring, seen);
    return canceled && io_uring_cq_ready(&ring) == 0;
  }

  io_uring_sqe* next_sqe() noexcept {
    auto* sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
      io_uring_submit(&ring);  // the submission queue is full: hand it to the kernel
      sqe = io_uring_get_sqe(&ring);
      if (!sqe) fatal("io_uring submission queue");
    }
    return sqe;
  }

  // arm_notifier polls one of the loop's own descriptors (the wake eventfd, epoll).
  void arm_notifier(int fd, std::uint64_t tag) {
    auto* sqe = next_sqe();
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag);
  }
};

namespace detail {

cancel_state::cancel_state(cancel_state* parent_state) noexcept : parent(parent_state) {
  if (parent) {
    canceled = parent->canceled;
    next_sibling = parent->first_child;
    if (next_sibling) next_sibling->prev_sibling = this;
    parent->first_child = this;
  }
}

cancel_state::~cancel_state() {
  for (auto* c = first_child; c; c = c->next_sibling) c->parent = nullptr;
  if (parent) {
    if (prev_sibling) {
      prev_sibling->next_sibling = next_sibling;
    } else {
      parent->first_child = next_sibling;
    }
    if (next_sibling) next_sibling->prev_sibling = prev_sibling;
  }
}

void cancel_state::cancel() noexcept {
  canceled = true;
  while (waiters) waiters->complete(errc::operation_canceled);
  for (auto* c = first_child; c; c = c->next_sibling) c->cancel();
}

waiter::~waiter() {
  if (armed) disarm();
  if (completed && !resumed && loop) loop->unschedule(handle);
}

bool waiter::begin(std::coroutine_handle<> h, cancel_state* cancel_domain, deadline dl) noexcept {
  handle = h;
  loop = event_loop::current();
  outcome = {};
  completed = false;
  resumed = false;
  if (cancel_domain && cancel_domain->canceled) {
    outcome = errc::operation_canceled;
    return false;
  }
  if (dl.expired() || dl == deadline::already()) {
    outcome = errc::timed_out;
    return false;
  }
  cancel = cancel_domain;
  return true;
}

void waiter::finish_arming(deadline dl) noexcept {
  armed = true;
  if (!dl.is_never()) {
    when = dl.time_point();
    loop->add_timer(*this);
  }
  if (cancel) {
    cancel_prev = nullptr;
    cancel_next = cancel->waiters;
    if (cancel_next) cancel_next->cancel_prev = this;
    cancel->waiters = this;
  }
  loop->note_waiter(+1);
}

void waiter::complete(std::error_code ec) noexcept {
  if (completed) return;
  completed = true;
  outcome = ec;
  disarm();
  loop->schedule(handle);
}

void waiter::disarm() noexcept {
  if (!armed) return;
  armed = false;
  if (heap_index != no_index) loop->remove_timer(*this);
  if (cancel) {
    if (cancel_prev) {
      cancel_prev->cancel_next = cancel_next;
    } else {
      cancel->waiters = cancel_next;
    }
    if (cancel_next) cancel_next->cancel_prev = cancel_prev;
    cancel_prev = cancel_next = nullptr;
    cancel = nullptr;
  }
  if (unlink_source) unlink_source(*this);
  loop->note_waiter(-1);
}

}  // namespace detail

event_loop::event_loop(loop_backend backend) : ready_(64) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) fatal("eventfd");
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) fatal("epoll_create1");
  if (backend == loop_backend::io_uring) {
    uring_ = std::make_unique<uring>();
    if (uring_->open()) {
      uring_->arm_notifier(wake_fd_, wake_tag);
      uring_->arm_notifier(epoll_fd_, epoll_tag);
    } else {
      uring_.reset();
    }
  }
  if (!uring_) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0) fatal("epoll_ctl(eventfd)");
  }
  previous_ = current_;
  current_ = this;
}

event_loop::~event_loop() {
  // Hooks run while the loop still works: they destroy tasks that would otherwise touch
  // it after it is gone.
  while (exit_hooks_) {
    auto* h = exit_hooks_;
    remove_exit_hook(*h);
    h->on_exit(*h);
  }
  current_ = previous_;
  uring_.reset();
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void event_loop::add_exit_hook(detail::exit_hook& h) noexcept {
  h.loop = this;
  h.prev = nullptr;
  h.next = exit_hooks_;
  if (exit_hooks_) exit_hooks_->prev = &h;
  exit_hooks_ = &h;
}

void event_loop::remove_exit_hook(detail::exit_hook& h) noexcept {
  if (!h.loop) return;
  if (h.prev) {
    h.prev->next = h.next;
  } else {
    h.loop->exit_hooks_ = h.next;
  }
  if (h.next) h.next->prev = h.prev;
  h.prev = h.next = nullptr;
  h.loop = nullptr;
}

void event_loop::grow_ready() {
  std::vector<std::coroutine_handle<>> bigger(ready_.size() * 2);
  for (std::size_t i = 0; i < ready_count_; ++i) {
    bigger[i] = ready_[(ready_head_ + i) & (ready_.size() - 1)];
  }
  ready_.swap(bigger);
  ready_head_ = 0;
}

void event_loop::unschedule(std::coroutine_handle<> h) noexcept {
  if (unschedule_batch_depth_ > 0) {
    try {
      unscheduled_.emplace_back(h.address(), 1);
      return;
    } catch (...) {  // out of memory: scan now instead
    }
  }
  for (std::size_t i = 0; i < ready_count_; ++i) {
    auto& slot_h = ready_[(ready_head_ + i) & (ready_.size() - 1)];
    if (slot_h == h) {
      slot_h = nullptr;  // a suspended coroutine is queued at most once
      return;
    }
  }
}

void event_loop::end_unschedule_batch() noexcept {
  if (--unschedule_batch_depth_ > 0 || unscheduled_.empty()) return;
  // An address can be recorded twice only if its frame was destroyed and a new frame at
  // the same address was queued and destroyed again within the batch. The old frame's
  // entry always precedes the new one, so removing the first `times` occurrences of each
  // address in queue order removes exactly what the single unschedule() calls would have.
  auto& rec = unscheduled_;
  std::sort(rec.begin(), rec.end());
  std::size_t n = 0;
  for (std::size_t i = 0; i < rec.size(); ++i) {
    if (n > 0 && rec[n - 1].first == rec[i].first) {
      ++rec[n - 1].second;
    } else {
      rec[n++] = rec[i];
    }
  }
  rec.resize(n);
  for (std::size_t i = 0; i < ready_count_; ++i) {
    auto& slot_h = ready_[(ready_head_ + i) & (ready_.size() - 1)];
    if (!slot_h) continue;
    auto it = std::lower_bound(rec.begin(), rec.end(), std::pair<void*, std::size_t>(slot_h.address(), 0));
    if (it != rec.end() && it->first == slot_h.address() && it->second > 0) {
      --it->second;
      slot_h = nullptr;
    }
  }
  std::vector<std::pair<void*, std::size_t>>().swap(rec);  // give back a big batch's memory
}

void event_loop::post_completion(detail::waiter* w, std::error_code ec) {
  {
    std::lock_guard lock(remote_mutex_);
    remote_.push_back({w, ec});
  }
  if (!remote_pending_.exchange(true, std::memory_order_acq_rel)) {
    std::uint64_t one = 1;
    // EAGAIN means the counter is already non-zero: the loop will wake anyway.
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
}

void event_loop::withdraw_completion(detail::waiter* w) noexcept {
  std::lock_guard lock(remote_mutex_);
  remote_.erase(
      std::remove_if(remote_.begin(), remote_.end(), [w](const remote_item& item) { return item.w == w; }),
      remote_.end());
}

void event_loop::drain_remote() {
  if (!remote_pending_.load(std::memory_order_acquire)) return;
  std::vector<remote_item> items;
  {
    std::lock_guard lock(remote_mutex_);
    remote_pending_.store(false, std::memory_order_release);
    items.swap(remote_);
  }
  for (auto& item : items) {
    item.w->posted = false;
    item.w->complete(item.ec);
  }
}

void event_loop::run_ready() {
  int budget = resumes_between_polls;
  // This is detail::resume_chain's loop with the trampoline state saved once per pass
  // instead of once per resume: copying the state per resume cost a store-forwarding
  // stall each time (the yield switch went from ~5 to ~12 ns; bench/runtime_bench).
  auto& t = detail::trampoline_state;
  const std::coroutine_handle<> saved_next = t.next;  // a nested run() keeps the outer chain
  const unsigned saved_depth = t.depth;
  const bool saved_active = t.active;
  t.active = true;
  while (ready_count_ > 0) {
    auto h = ready_[ready_head_];
    ready_head_ = (ready_head_ + 1) & (ready_.size() - 1);
    --ready_count_;
    while (h) {
      t.depth = 0;
      t.next = {};
      h.resume();
      h = t.next;
    }
    if (--budget == 0) {
      budget = resumes_between_polls;
      // Remote completions are seen by drain_remote, not through the wake eventfd.
      if (watched_fds_ > 0) poll(false);
      expire_timers();
      drain_remote();
    }
  }
  t.next = saved_next;
  t.depth = saved_depth;
  t.active = saved_active;
}

void event_loop::run_until(std::coroutine_handle<> root) {
  schedule(root);
  while (!root.done()) {
    run_ready();
    if (root.done()) break;
    if (ready_count_ == 0 && pending_waits_ == 0 && !remote_pending_.load(std::memory_order_acquire)) {
      std::fprintf(stderr,
                   "strata: event loop: the root task is suspended but nothing can wake it "
                   "(no pending I/O, timer, channel or event wait)\n");
      std::abort();
    }
    poll(ready_count_ == 0);
    expire_timers();
    drain_remote();
  }
}

void event_loop::poll(bool block) {
  if (uring_) {
    uring_wait_once(block);
  } else {
    epoll_wait_once(block);
  }
}

// wait_timeout_ms is how long a blocking wait may sleep: until the first deadline,
// rounded up to whole milliseconds (-1: no deadline).
int event_loop::wait_timeout_ms() const {
  if (timers_.empty()) return -1;
  auto now = deadline::clock::now();
  auto when = timers_.front()->when;
  if (when <= now) return 0;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(when - now).count();
  return static_cast<int>(std::min<long long>((us + 999) / 1000, 1 << 30));
}

void event_loop::epoll_wait_once(bool block) {
  epoll_event events[64];
  int n = ::epoll_wait(epoll_fd_, events, 64, block ? wait_timeout_ms() : 0);
  if (n < 0) {
    if (errno == EINTR) return;
    fatal("epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    auto ev = events[i].events;
    if (fd == wake_fd_) {
      std::uint64_t count;
      [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof count);
      continue;
    }
    if (static_cast<std::size_t>(fd) >= io_.size()) continue;
    auto& s = io_[fd];
    const bool writable = ev & (EPOLLOUT | EPOLLHUP | EPOLLERR);
    const bool write_interest_unused = writable && !s.writer && (ev & EPOLLOUT) && (s.interest & EPOLLOUT);
    on_io_event(fd, s, ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR), writable,
                ev & (EPOLLRDHUP | EPOLLHUP));
    if (write_interest_unused) drop_write_interest(fd, s);
  }
}

void event_loop::uring_wait_once(bool block) {
  auto& ring = uring_->ring;
  int rc;
  if (block) {
    // The polls armed since the last wait go in with it: one system call.
    io_uring_cqe* first = nullptr;
    if (timers_.empty()) {
      rc = io_uring_submit_and_wait_timeout(&ring, &first, 1, nullptr, nullptr);
    } else {
      auto left = std::max(timers_.front()->when - deadline::clock::now(), deadline::clock::duration::zero());
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      __kernel_timespec ts{};
      ts.tv_sec = ns / 1'000'000'000;
      ts.tv_nsec = ns % 1'000'000'000;
      rc = io_uring_submit_and_wait_timeout(&ring, &first, 1, &ts, nullptr);
    }
  } else {
    rc = io_uring_submit_and_get_events(&ring);
  }
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
    errno = -rc;
    fatal("io_uring_enter");
  }
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring, head, cqe) {
    ++seen;
    const std::uint64_t tag = cqe->user_data;
    const int res = cqe->res;
    if (tag == wake_tag) {
      std::uint64_t count;
      [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof count);
      uring_->arm_notifier(wake_fd_, wake_tag);
      continue;
    }
    if (tag == epoll_tag) {
      epoll_wait_once(false);
      uring_->arm_notifier(epoll_fd_, epoll_tag);
      continue;
    }
    if (tag == removal_tag) continue;
    const int fd = static_cast<int>(tag & 0xffffffff);
    if (static_cast<std::size_t>(fd) >= io_.size()) continue;
    auto& s = io_[fd];
    // A poll of a descriptor forgotten since (its number perhaps reused) says nothing.
    if ((tag >> 32) != (s.generation & generation_mask) || !s.read_armed) continue;
    s.read_armed = false;
    --watched_fds_;
    if (res < 0) {
      // The poll itself failed (EBADF: closed without forget_fd): so does its waiter.
      if (auto* w = std::exchange(s.reader, nullptr)) {
        s.read_attempt = nullptr;
        w->complete(from_errno(-res));
      }
      continue;
    }
    const auto events = static_cast<unsigned>(res);
    on_io_event(fd, s, true, false, events & (POLLRDHUP | POLLHUP));
  }
  io_uring_cq_advance(&ring, seen);
}

// on_io_event takes one readiness report for `fd`. A parked pollable_fd operation makes
// its system call here (its attempt); one that would still block stays parked (under
// io_uring with a new poll), so a spurious report costs no resumption.
void event_loop::on_io_event(int fd, io_slot& s, bool readable, bool writable, bool hang_up) {
  if (readable) {
    s.read_ready = true;
    if (hang_up) s.read_final = true;
    if (auto* w = s.reader) {
      if (!s.read_attempt || s.read_attempt(*w)) {
        s.reader = nullptr;
        s.read_attempt = nullptr;
        w->complete({});
      } else if (uring_ && !s.read_armed) {
        arm_read_poll(fd, s);
      }
    }
  }
  if (writable) {
    s.write_ready = true;
    if (auto* w = s.writer) {
      if (!s.write_attempt || s.write_attempt(*w)) {
        s.writer = nullptr;
        s.write_attempt = nullptr;
        w->complete({});
      }
    }
  }
}

void event_loop::drop_write_interest(int fd, io_slot& s) noexcept {
  epoll_event ev{};
  ev.events = s.interest & ~static_cast<std::uint32_t>(EPOLLOUT);
  ev.data.fd = fd;
  // On failure the interest stays: spurious wake-ups, nothing worse.
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) == 0) s.interest = ev.events;
}

void event_loop::expire_timers() {
  if (timers_.empty()) return;
  auto now = deadline::clock::now();
  while (!timers_.empty() && timers_.front()->when <= now) {
    timers_.front()->complete(errc::timed_out);
  }
}

// -- deadline heap ---------------------------------------------------------------------

void event_loop::add_timer(detail::waiter& w) {
  w.heap_index = timers_.size();
  timers_.push_back(&w);
  heap_up(w.heap_index);
}

void event_loop::remove_timer(detail::waiter& w) noexcept {
  std::size_t i = w.heap_index;
  if (i == no_index) return;
  std::size_t last = timers_.size() - 1;
  if (i != last) heap_swap(i, last);
  timers_.pop_back();
  w.heap_index = no_index;
  if (i < timers_.size()) {
    heap_up(i);
    heap_down(i);
  }
}

void event_loop::heap_swap(std::size_t a, std::size_t b) noexcept {
  std::swap(timers_[a], timers_[b]);
  timers_[a]->heap_index = a;
  timers_[b]->heap_index = b;
}

void event_loop::heap_up(std::size_t i) noexcept {
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (timers_[parent]->when <= timers_[i]->when) break;
    heap_swap(i, parent);
    i = parent;
  }
}

void event_loop::heap_down(std::size_t i) noexcept {
  for (;;) {
    std::size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < timers_.size() && timers_[l]->when < timers_[m]->when) m = l;
    if (r < timers_.size() && timers_[r]->when < timers_[m]->when) m = r;
    if (m == i) return;
    heap_swap(i, m);
    i = m;
  }
}

// -- file descriptors ------------------------------------------------------------------
//
// Descriptors are registered edge-triggered on their first wait, for the direction
// waited on: reading stays registered from then on, writing only while writes keep
// blocking. A Unix socket raises a write edge every time its peer reads, so a permanent
// write interest would wake a sleeping loop once per message it sent (a context switch
// each, seen as +4 us per round trip on unix sockets); the interest is dropped at the
// first write edge that finds no writer waiting, and added again by the next writer
// that waits (EPOLL_CTL_MOD reports a descriptor that is already writable at once).
// The ready flags remember the last edge so that a read that returned less than asked (or
// EAGAIN) waits before trying again: every arrival after that read raises a new edge that
// the next epoll_wait reports, so the hint never hides data.
//
// Under io_uring a read wait arms a one-shot poll instead (level: it completes at once if
// data came since the EAGAIN), and the read hint only says "not ready" while that poll
// stands; writers wait in epoll as above (see watch_io).

event_loop::io_slot& event_loop::slot(int fd) {
  if (static_cast<std::size_t>(fd) >= io_.size()) io_.resize(std::max<std::size_t>(fd + 1, io_.size() * 2));
  return io_[fd];
}

void event_loop::unlink_io(detail::waiter& w) noexcept {
  auto* loop = static_cast<event_loop*>(w.source);
  int fd = static_cast<int>(w.source_tag >> 1);
  bool write = w.source_tag & 1;
  if (static_cast<std::size_t>(fd) >= loop->io_.size()) return;
  auto& s = loop->io_[fd];
  auto*& parked = write ? s.writer : s.reader;
  if (parked == &w) {
    parked = nullptr;
    (write ? s.write_attempt : s.read_attempt) = nullptr;
  }
}

void event_loop::arm_read_poll(int fd, io_slot& s) {
  auto* sqe = uring_->next_sqe();
  io_uring_prep_poll_add(sqe, fd, POLLIN | POLLRDHUP);
  io_uring_sqe_set_data64(sqe, poll_tag(fd, s.generation));
  s.read_armed = true;
  ++watched_fds_;
}

void event_loop::cancel_read_poll(int fd, io_slot& s) noexcept {
  if (!s.read_armed) return;
  s.read_armed = false;
  --watched_fds_;
  auto* sqe = uring_->next_sqe();
  io_uring_prep_poll_remove(sqe, poll_tag(fd, s.generation));
  io_uring_sqe_set_data64(sqe, removal_tag);
  // A poll holds a reference to the file: the removal must take effect before the caller
  // closes the descriptor, or the close would not close (no FIN, no EOF for the peer).
  io_uring_submit_and_get_events(&uring_->ring);
}

bool event_loop::watch_io(int fd, bool write, detail::waiter& w, io_attempt attempt) {
  if (fd < 0) {
    w.outcome = errc::invalid_argument;
    return false;
  }
  auto& s = slot(fd);
  if (uring_ && !write) {
    if (s.reader) {
      w.outcome = errc::invalid_argument;
      return false;
    }
    // A poll left by a waiter that timed out still stands and serves this one.
    if (!s.read_armed) arm_read_poll(fd, s);
    s.reader = &w;
    s.read_attempt = attempt;
    w.source = this;
    w.source_tag = static_cast<std::uintptr_t>(fd) << 1;
    w.unlink_source = &event_loop::unlink_io;
    return true;
  }
  // io_uring reports a half-closed peer (POLLRDHUP) to every poll, a POLLOUT one included,
  // at once and for as long as it lasts: a writer waiting for room there would spin. So
  // under io_uring writers wait in epoll too (without RDHUP), and the loop polls the
  // epoll descriptor through the ring.
  const std::uint32_t want =
      s.interest | (uring_ ? 0u : std::uint32_t{EPOLLRDHUP}) | EPOLLET | (write ? EPOLLOUT : EPOLLIN);
  if (s.registered && want != s.interest) {
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) < 0) {
      w.outcome = from_errno(errno);
      return false;
    }
    s.interest = want;
  }
  if (!s.registered) {
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
      if (errno == EEXIST) {
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
      } else if (errno == EPERM) {
        // Regular files are always ready; let the caller retry at once.
        w.outcome = {};
        return false;
      } else {
        // A descriptor that is not open (EBADF) or cannot be watched is the caller's
        // error to handle, not a reason to abort the process.
        w.outcome = from_errno(errno);
        return false;
      }
    }
    s.registered = true;
    s.interest = want;
    ++watched_fds_;
  }
  auto*& parked = write ? s.writer : s.reader;
  if (parked) {
    // Two tasks waiting on one direction of one descriptor is a usage error.
    w.outcome = errc::invalid_argument;
    return false;
  }
  parked = &w;
  (write ? s.write_attempt : s.read_attempt) = attempt;
  w.source = this;
  w.source_tag = (static_cast<std::uintptr_t>(fd) << 1) | (write ? 1 : 0);
  w.unlink_source = &event_loop::unlink_io;
  return true;
}

bool event_loop::io_ready(int fd, bool write) const noexcept {
  if (static_cast<std::size_t>(fd) >= io_.size()) return true;
  const auto& s = io_[fd];
  // Under io_uring only a standing poll reports readiness: without one, nothing would
  // ever set the hint again, so it may be ready.
  if (uring_ && !write) return s.read_ready || !s.read_armed;
  return write ? s.write_ready : s.read_ready;
}

void event_loop::io_drained(int fd, bool write) noexcept {
  auto& s = slot(fd);
  // Registration (on the wait that follows) reports the current state, so clearing the
  // hint before the descriptor is registered loses no edge either.
  // A hang-up reported before a short read raises no new edge: the read drained the data
  // and left the end of stream behind it. So the first drain after a hang-up keeps the
  // hint and the next read tries at once (and sees the end, or EAGAIN if the hang-up was
  // undone, e.g. a new FIFO writer: that drain then clears the hint as usual).
  if (!write && s.read_final) {
    s.read_final = false;
    return;
  }
  (write ? s.write_ready : s.read_ready) = false;
}

void event_loop::forget_fd(int fd) noexcept {
  if (fd < 0 || static_cast<std::size_t>(fd) >= io_.size()) return;
  auto& s = io_[fd];
  if (s.registered) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    --watched_fds_;
  }
  if (uring_) cancel_read_poll(fd, s);
  auto* r = std::exchange(s.reader, nullptr);
  auto* w = std::exchange(s.writer, nullptr);
  const auto next_generation = s.generation + 1;
  s = io_slot{};
  s.generation = next_generation;
  if (r) r->complete(errc::closed);
  if (w) w->complete(errc::closed);
}

}  // namespace strata
