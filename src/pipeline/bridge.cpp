// bridge: two connections joined end to end (pipeline/bridge.hpp). Each direction is a
// task: a copy through a buffer of its own, or splice(2) through a pipe of its own when
// both ends are bare kernel descriptors. A shared state records the first failure and
// cancels both directions.
#include "strata/pipeline/bridge.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <span>
#include <utility>

#include "../transport/sigpipe.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/flush.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/timer.hpp"

namespace strata {
namespace {

using detail::block_sigpipe;
using detail::consume_sigpipe;

constexpr std::size_t chunk = 128 * 1024;
constexpr std::size_t default_message_limit = 64u << 20;
/// A spliced direction asks for a pipe this large (fewer system calls and wake-ups per
/// byte); where the kernel refuses (an unprivileged user over pipe-user-pages-soft) the
/// pipe keeps its default 64 KiB. One splice moves at most the pipe's capacity, so one
/// busy bridge does not starve the loop.
constexpr int splice_pipe_size = 1 << 20;

// Each direction holds a chunk only while data flows: a direction that waited
// idle_grace for data gives its chunk back and waits with a small read in its own frame.
constexpr std::size_t wake_read = 16;
constexpr std::chrono::milliseconds idle_grace{50};

struct bridge_state {
  bridge_result out;
  const bridge_options* options = nullptr;
  deadline::clock::time_point last_activity = deadline::clock::now();
  int running = 2;  // directions still running
  event done;       // both directions have ended

  // fail records the first failure and stops both directions; operation_canceled is how
  // the directions learn that the bridge stops, never a failure of its own.
  void fail(std::string_view label, const char* operation, std::error_code ec, scope& s) {
    if (ec == errc::operation_canceled) return;
    if (!out.error) {
      out.what.assign(label);
      out.what += operation;
      out.error = ec;
    }
    s.cancel();
  }
  // fail_side names side 0 (a) or 1 (b) as the options say.
  void fail_side(int side, const char* operation, std::error_code ec, scope& s) {
    if (ec == errc::operation_canceled || out.error) return fail({}, operation, ec, s);
    std::string label(side == 0 ? options->label_a : options->label_b);
    if (side == 0 && !options->peer_a.empty()) label.append(" connection from ").append(options->peer_a);
    fail(label, operation, ec, s);
  }
  void touch() { last_activity = deadline::clock::now(); }
};

// finished raises `done` when the last of `running` directions has ended, however it ended.
struct finished {
  int& running;
  event& done;
  ~finished() {
    if (--running == 0) done.set();
  }
};

// copy_stream is a direction through a buffer of its own (see pump_stream).
task<void> copy_stream(any_stream& from, int from_side, any_stream& to, std::uint64_t& bytes,
                       bridge_state& st, scope& s) {
  const int to_side = 1 - from_side;
  byte_buffer held;
  std::array<std::byte, wake_read> small;
  for (;;) {
    // What went to `to` leaves before this direction waits: a buffering layer there
    // (`| buffered`) flushes only when its own reader starts to wait, which here may
    // have happened long before.
    if (detail::output_pending(to)) {
      auto flushed = co_await flush(to, deadline::never());
      if (!flushed) co_return st.fail_side(to_side, ": flush", flushed.error(), s);
    }
    bool chunked = held.capacity() != 0;
    mutable_buffer into = chunked ? held.writable(chunk).first(chunk) : mutable_buffer(small);
    auto n = co_await from.read_some(into, chunked ? deadline::after(idle_grace) : deadline::never());
    if (!n && chunked && n.error() == errc::timed_out) {
      held.release();  // idle: wait with the small buffer
      continue;
    }
    if (n && !chunked && *n == small.size()) (void)held.writable(chunk);  // more is likely waiting
    if (!n) {
      // A write-only (simplex) side never sends: as if it had ended at once.
      if (n.error() != errc::end_of_stream && n.error() != errc::not_supported)
        co_return st.fail_side(from_side, ": read", n.error(), s);
      auto r = co_await to.shutdown_write(deadline::never());
      if (!r && r.error() != errc::not_supported) st.fail_side(to_side, ": shutdown", r.error(), s);
      co_return;
    }
    st.touch();
    auto w = co_await to.write(const_buffer(into.first(*n)), deadline::never());
    if (!w && w.error() == errc::not_supported) co_return;  // a read-only (simplex) side
    if (!w) co_return st.fail_side(to_side, ": write", w.error(), s);
    bytes += *n;
  }
}

task<void> pump_stream(any_stream& from, int from_side, any_stream& to, std::uint64_t& bytes,
                       bridge_state& st, scope& s) {
  finished counted{st.running, st.done};
  co_await copy_stream(from, from_side, to, bytes, st, s);
}

// A message larger than the buffer stays with the layer and is received again into a
// larger `held`, up to `limit`.
task<void> pump_messages(any_message& from, std::size_t limit, int from_side, any_message& to,
                         std::uint64_t& bytes, std::uint64_t& messages, bridge_state& st, scope& s) {
  const int to_side = 1 - from_side;
  finished counted{st.running, st.done};
  byte_buffer held;
  std::array<std::byte, wake_read> small;
  for (;;) {
    if (detail::output_pending(to)) {  // as copy_stream
      auto flushed = co_await flush(to, deadline::never());
      if (!flushed) co_return st.fail_side(to_side, ": flush", flushed.error(), s);
    }
    bool chunked = held.capacity() != 0;
    mutable_buffer into =
        chunked ? held.writable(held.capacity()) : std::span(small).first(std::min(small.size(), limit));
    auto n = co_await from.recv(into, chunked ? deadline::after(idle_grace) : deadline::never());
    if (!n && chunked && n.error() == errc::timed_out) {
      held.release();  // idle: wait with the small buffer
      continue;
    }
    if (!n) {
      if (n.error() == errc::message_too_large && into.size() < limit) {
        held.release();
        (void)held.writable(std::min(std::max(into.size() * 4, chunk), limit));
        continue;
      }
      if (n.error() != errc::end_of_stream && n.error() != errc::not_supported)
        co_return st.fail_side(from_side, ": receive", n.error(), s);
      auto r = co_await to.shutdown_write(deadline::never());
      if (!r && r.error() != errc::not_supported) st.fail_side(to_side, ": shutdown", r.error(), s);
      co_return;
    }
    st.touch();
    auto w = co_await to.send(const_buffer(into.first(*n)), deadline::never());
    if (!w && w.error() == errc::not_supported) co_return;  // a receive-only (simplex) side
    if (!w) co_return st.fail_side(to_side, ": send", w.error(), s);
    bytes += *n;
    ++messages;
  }
}

// -- splice ----------------------------------------------------------------------------

// splice_pipe is the kernel buffer of one spliced direction: bytes go source -> pipe ->
// destination and never through the process.
struct splice_pipe {
  int r = -1;
  int w = -1;
  std::size_t capacity = 64 * 1024;
  splice_pipe() = default;
  splice_pipe(const splice_pipe&) = delete;
  splice_pipe& operator=(const splice_pipe&) = delete;
  ~splice_pipe() { close(); }
  void close() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
    r = w = -1;
  }
  bool open() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return false;
    r = fds[0];
    w = fds[1];
    (void)::fcntl(w, F_SETPIPE_SZ, splice_pipe_size);
    if (int size = ::fcntl(w, F_GETPIPE_SZ); size > 0) capacity = static_cast<std::size_t>(size);
    return true;
  }
};

// can_read / can_write: the descriptor's access mode allows the direction (a FIFO's
// read end cannot be spliced into).
bool access_allows(int fd, bool write) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return false;
  int mode = fl & O_ACCMODE;
  return mode == O_RDWR || mode == (write ? O_WRONLY : O_RDONLY);
}

// pump_splice moves in_fd -> out_fd through `p`. The pipe is made when the first bytes
// (or the end) can be read and closed again once the direction has waited idle_grace for
// data, so an idle bridge holds no pipe (as a copying direction gives its buffer back);
// when it cannot be made (no descriptors left) the direction copies instead. The pipe is empty at the top of
// each turn: what one splice took in is all given out before the next read, which is the back-pressure (at
// most the pipe's capacity in flight).
task<void> pump_splice(any_stream& from, int in_fd, int from_side, any_stream& to, int out_fd, splice_pipe& p,
                       std::uint64_t& bytes, std::uint64_t& spliced, bridge_state& st, scope& s) {
  // One place waits (one awaiter in the frame: an idle bridge stays small); each turn
  // decides what to do next from `open` and `left`.
  const int to_side = 1 - from_side;
  finished counted{st.running, st.done};
  auto* loop = event_loop::current();
  bool open = false;     // the pipe exists
  std::size_t left = 0;  // bytes in the pipe still to give out
  for (;;) {
    bool wait_write = false;
    if (!open) {
      // (poll looks without consuming; waiting after a "not yet" loses no edge: the
      // loop reads epoll only once this task is parked.)
      pollfd pf{in_fd, POLLIN | POLLRDHUP, 0};
      if (::poll(&pf, 1, 0) > 0) {
        if (!p.open()) break;  // no pipe: copy instead
        open = true;
        continue;
      }
    } else if (left > 0) {
      ssize_t m = ::splice(p.r, nullptr, out_fd, nullptr, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m >= 0) {
        left -= static_cast<std::size_t>(m);
        bytes += static_cast<std::uint64_t>(m);
        spliced += static_cast<std::uint64_t>(m);
        continue;
      }
      int err = errno;
      if (err == EINTR) continue;
      if (err != EAGAIN) {
        if (err == EPIPE) consume_sigpipe();
        co_return st.fail_side(to_side, ": write", from_errno(err), s);
      }
      loop->io_drained(out_fd, true);
      wait_write = true;
    } else {
      ssize_t n = ::splice(in_fd, nullptr, p.w, nullptr, p.capacity, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        st.touch();
        left = static_cast<std::size_t>(n);
        continue;
      }
      if (n == 0) {
        auto r = co_await to.shutdown_write(deadline::never());
        if (!r && r.error() != errc::not_supported) st.fail_side(to_side, ": shutdown", r.error(), s);
        co_return;
      }
      int err = errno;
      if (err == EINTR) continue;
      if (err != EAGAIN) co_return st.fail_side(from_side, ": read", from_errno(err), s);
      loop->io_drained(in_fd, false);
    }
    // An empty pipe waiting for input goes back after idle_grace.
    bool may_idle = open && left == 0 && !wait_write;
    // (The awaiter is built in a statement of its own: GCC 12 miscompiles aggregate
    // temporaries inside a co_await expression.)
    auto waiting = wait_write
                       ? wait_writable(out_fd, deadline::never())
                       : wait_readable(in_fd, may_idle ? deadline::after(idle_grace) : deadline::never());
    auto ec = co_await waiting;
    if (ec && may_idle && ec == errc::timed_out) {
      p.close();
      open = false;
      continue;
    }
    if (ec)
      co_return st.fail_side(wait_write ? to_side : from_side, wait_write ? ": write" : ": read", ec, s);
  }
  co_await copy_stream(from, from_side, to, bytes, st, s);
}

// -- the rest ----------------------------------------------------------------------------

std::string format_idle(deadline::clock::duration d) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(d).count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

task<void> idle_watch(deadline::clock::duration idle, bridge_state& st, scope& s) {
  for (;;) {
    auto until = st.last_activity + idle;
    if (deadline::clock::now() >= until) {
      st.out.idle_expired = !st.out.error;
      std::string what = "no data for " + format_idle(idle);
      co_return st.fail(what, "", errc::timed_out, s);
    }
    if (!co_await sleep_until(deadline::at(until))) co_return;
  }
}

std::size_t limit_of(const any_connection& c) {
  auto caps = c.runtime_capabilities();
  return caps.max_message ? caps.max_message : default_message_limit;
}

}  // namespace

std::optional<int> splice_handle(const any_stream& s) {
  auto fd = query<fact::native_handle>(s);
  if (!fd) return std::nullopt;
  struct stat sb {};
  if (::fstat(*fd, &sb) < 0) return std::nullopt;
  if (S_ISFIFO(sb.st_mode)) return *fd;
  if (!S_ISSOCK(sb.st_mode)) return std::nullopt;
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(*fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) return std::nullopt;
  return *fd;
}

void reset_tcp(any_connection& c) {
  if (!c.is_stream()) return;
  auto fd = query<fact::native_handle>(c.stream());
  if (!fd) return;
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(*fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) return;
  if (domain != AF_INET && domain != AF_INET6) return;
  linger lg{1, 0};
  (void)::setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  (void)::connect(*fd, &unspec, sizeof unspec);
}
task<bridge_result> bridge(any_connection& a, any_connection& b, const bridge_options& options) {
  bridge_state st;
  st.options = &options;
  if (a.is_stream() != b.is_stream()) {
    st.out.what = "bridge: both sides must carry the same unit";
    st.out.error = errc::invalid_argument;
    (void)co_await a.close(deadline::after(std::chrono::milliseconds(100)));
    (void)co_await b.close(deadline::after(std::chrono::milliseconds(100)));
    co_return st.out;
  }
  // Spliced directions: both ends bare descriptors, and a pipe to move through.
  std::optional<int> fd_a;
  std::optional<int> fd_b;
  splice_pipe pipe_ab;
  splice_pipe pipe_ba;
  bool splice_ab = false;
  bool splice_ba = false;
  if (a.is_stream() && options.splice) {
    fd_a = splice_handle(a.stream());
    fd_b = fd_a ? splice_handle(b.stream()) : std::nullopt;
    if (fd_a && fd_b) {
      block_sigpipe();
      splice_ab = access_allows(*fd_a, false) && access_allows(*fd_b, true);
      splice_ba = access_allows(*fd_b, false) && access_allows(*fd_a, true);
    }
  }
  co_await with_scope([&](scope& s) -> task<void> {
    if (options.idle) s.spawn(idle_watch(*options.idle, st, s));
    if (a.is_stream()) {
      if (splice_ab) {
        s.spawn(pump_splice(a.stream(), *fd_a, 0, b.stream(), *fd_b, pipe_ab, st.out.bytes_ab, st.out.spliced,
                            st, s));
      } else {
        s.spawn(pump_stream(a.stream(), 0, b.stream(), st.out.bytes_ab, st, s));
      }
      if (splice_ba) {
        s.spawn(pump_splice(b.stream(), *fd_b, 1, a.stream(), *fd_a, pipe_ba, st.out.bytes_ba, st.out.spliced,
                            st, s));
      } else {
        s.spawn(pump_stream(b.stream(), 1, a.stream(), st.out.bytes_ba, st, s));
      }
    } else {
      s.spawn(pump_messages(a.message(), limit_of(a), 0, b.message(), st.out.bytes_ab, st.out.messages_ab, st,
                            s));
      s.spawn(pump_messages(b.message(), limit_of(b), 1, a.message(), st.out.bytes_ba, st.out.messages_ba, st,
                            s));
    }
    // Both directions ended (or a failure canceled the scope): stop the idle watch.
    // operation_canceled here: the caller's scope stops the bridge.
    (void)co_await st.done.wait(deadline::never());
    if (!st.out.error && s.canceled()) st.out.canceled = true;
    s.cancel();
  });
  auto grace =
      st.out.error ? deadline::after(std::chrono::milliseconds(100)) : deadline::after(options.close_grace);
  if ((st.out.error || st.out.canceled) && options.reset_on_failure) {
    // A transfer cut short: reset what can be reset, and close with no time left (a
    // layer whose close then resets does so: the stream contract's timed-out close).
    reset_tcp(a);
    reset_tcp(b);
    grace = deadline::after(std::chrono::nanoseconds(0));
  }
  (void)co_await a.close(grace);
  (void)co_await b.close(grace);
  co_return st.out;
}

}  // namespace strata
