#include "strata/transport/pipe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <vector>

#include "io_parts.hpp"
#include "sigpipe.hpp"
#include "socket_io.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/timer.hpp"

extern char** environ;

namespace strata::detail {

/// pipe_access builds pipe ends and children from descriptors (the classes' private
/// constructors), for make(), fifo::open_* and spawn().
struct pipe_access {
  static pipe::reader make_reader(int fd, bool fifo) noexcept { return pipe::reader(fd, fifo); }
  static pipe::writer make_writer(int fd, bool fifo) noexcept { return pipe::writer(fd, fifo); }
  static void set_child(pipe::child& c, pid_t pid, int pidfd, pipe::duplex stream) noexcept {
    c.pid_ = pid;
    c.pidfd_ = pollable_fd(pidfd);
    c.stream_ = std::move(stream);
  }
};

}  // namespace strata::detail

namespace strata::pipe {
namespace {

using detail::block_sigpipe;
using detail::consume_sigpipe;
using detail::pipe_access;

// waited_out: the error came from the wait (the deadline or the scope), not the pipe.
bool waited_out(std::error_code ec) noexcept {
  return ec == errc::timed_out || ec == errc::operation_canceled;
}

// writer_gone tells whether a FIFO's read end saw a writer come and go since it was
// opened: the kernel then reports POLLHUP. A read that returns 0 before any writer came
// is no end of stream.
bool writer_gone(int fd) noexcept {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLHUP);
}

result<void> make_nonblocking(int fd) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return from_errno(errno);
  return {};
}

// is_fifo checks that `fd` is a FIFO (or pipe); a FIFO spec naming a regular file or a
// directory is refused instead of writing into it.
result<void> check_fifo(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return from_errno(errno);
  if (!S_ISFIFO(st.st_mode)) return make_error_code(cause::not_a_fifo);
  return {};
}

// backoff_sleep waits min(`delay`, until `dl`) and doubles `delay` up to 50 ms.
// Errors: timed_out (dl passed), operation_canceled.
task<result<void>> backoff_sleep(std::chrono::milliseconds& delay, deadline dl) {
  if (dl.expired()) co_return errc::timed_out;
  auto wake = deadline::earlier(deadline::after(delay), dl);
  delay = std::min(delay * 2, std::chrono::milliseconds(50));
  auto r = co_await sleep_until(wake);
  if (!r) co_return r.error();
  co_return result<void>{};
}

}  // namespace

// -- reader -------------------------------------------------------------------------------

reader::reader(reader&& other) noexcept
    : fd_(std::move(other.fd_)), fifo_(other.fifo_), error_(std::exchange(other.error_, errc::closed)) {}

reader& reader::operator=(reader&& other) noexcept {
  if (this != &other) {
    fd_ = std::move(other.fd_);
    fifo_ = other.fifo_;
    error_ = std::exchange(other.error_, errc::closed);
  }
  return *this;
}

reader::~reader() = default;

void reader::release_fd() noexcept { fd_.close(); }

result<reader> reader::adopt(int fd) {
  if (auto r = detail::set_nonblocking_cloexec(fd); !r) return unexpected(r.error());
  return reader(fd, false);
}

int reader::release() noexcept {
  error_ = errc::closed;
  return fd_.release();
}

properties reader::runtime_capabilities() const noexcept {
  return transport_properties(fifo_ ? fifo::row : row);
}

task<result<std::size_t>> reader::read_some(mutable_buffer buf, deadline dl) {
  if (error_) co_return unexpected(error_);
  if (!fd_) co_return errc::closed;
  if (buf.empty()) co_return std::size_t{0};
  const int fd = fd_.get();
  const bool fifo = fifo_;
  // A pipe read returns less than asked only when the pipe is empty.
  auto n = co_await fd_.perform_read(
      [&]() -> ssize_t {
        ssize_t got = ::read(fd, buf.data(), buf.size());
        if (got == 0 && fifo && !writer_gone(fd)) {
          // No writer has opened the FIFO yet: wait for one to write (or come and go).
          errno = EAGAIN;
          return -1;
        }
        return got;
      },
      buf.size(), dl);
  if (n && *n > 0) co_return n;
  if (n) {
    error_ = errc::end_of_stream;
  } else if (waited_out(n.error())) {
    co_return n;
  } else if (!error_) {
    error_ = n.error();
  }
  co_return unexpected(error_);
}

task<result<void>> reader::close(deadline) {
  if (!fd_) co_return errc::closed;
  release_fd();  // wakes a task parked in read_some: it gets `closed`
  error_ = errc::closed;
  co_return result<void>{};
}

task<result<void>> reader::drain_and_close(deadline dl) {
  if (!fd_) co_return errc::closed;
  const int fd = fd_.get();
  const bool fifo = fifo_;
  fd_.abort_waits();  // a task parked in read_some resumes with `closed`
  std::error_code outcome;
  if (!error_) {
    thread_local std::array<std::byte, 4096> scratch;
    for (;;) {
      auto n = co_await fd_.perform_read(
          [&]() -> ssize_t {
            ssize_t got = ::read(fd, scratch.data(), scratch.size());
            if (got == 0 && fifo && !writer_gone(fd)) {
              errno = EAGAIN;
              return -1;
            }
            return got;
          },
          dl);
      if (n && *n > 0) continue;
      if (!n && waited_out(n.error())) outcome = n.error();
      break;
    }
  }
  release_fd();
  error_ = errc::closed;
  co_return outcome;
}

// -- writer -------------------------------------------------------------------------------

writer::writer(writer&& other) noexcept
    : fd_(std::move(other.fd_)),
      fifo_(other.fifo_),
      shut_(std::exchange(other.shut_, false)),
      error_(std::exchange(other.error_, errc::closed)) {}

writer& writer::operator=(writer&& other) noexcept {
  if (this != &other) {
    fd_ = std::move(other.fd_);
    fifo_ = other.fifo_;
    shut_ = std::exchange(other.shut_, false);
    error_ = std::exchange(other.error_, errc::closed);
  }
  return *this;
}

writer::~writer() = default;

void writer::release_fd() noexcept { fd_.close(); }

result<writer> writer::adopt(int fd) {
  if (auto r = detail::set_nonblocking_cloexec(fd); !r) return unexpected(r.error());
  return writer(fd, false);
}

int writer::release() noexcept {
  error_ = errc::closed;
  shut_ = false;
  return fd_.release();
}

properties writer::runtime_capabilities() const noexcept {
  return transport_properties(fifo_ ? fifo::row : row);
}

task<result<void>> writer::write(const_buffers bufs, deadline dl) {
  if (error_) co_return error_;
  if (!fd_) co_return errc::closed;
  block_sigpipe();
  const int fd = fd_.get();
  detail::iovec_list iov(bufs);
  std::size_t sent = 0;
  while (sent < iov.total()) {
    auto n = co_await fd_.perform_write(
        [&] {
          return ::writev(fd, iov.data(), static_cast<int>(std::min<std::size_t>(iov.count(), IOV_MAX)));
        },
        dl);
    if (!n) {
      if (n.error() == errc::broken) consume_sigpipe();  // EPIPE
      // A partial write leaves the reader with an unknown prefix: the writer is lost.
      if ((sent > 0 || !waited_out(n.error())) && !error_) error_ = n.error();
      co_return error_ ? error_ : n.error();
    }
    sent += *n;
    iov.advance(*n);
  }
  co_return result<void>{};
}

task<result<void>> writer::shutdown_write(deadline) {
  if (shut_) co_return result<void>{};
  if (!fd_) co_return errc::closed;
  release_fd();  // the reader sees the end after the last byte
  shut_ = true;
  error_ = errc::closed;
  co_return result<void>{};
}

task<result<void>> writer::close(deadline) {
  if (!fd_ && !shut_) co_return errc::closed;
  release_fd();
  shut_ = false;
  error_ = errc::closed;
  co_return result<void>{};
}

// -- make, duplex -------------------------------------------------------------------------

result<std::pair<reader, writer>> make() {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return unexpected(from_errno(errno));
  return std::pair<reader, writer>{pipe_access::make_reader(fds[0], false),
                                   pipe_access::make_writer(fds[1], false)};
}

result<std::pair<duplex, duplex>> duplex::pair() {
  auto ab = make();
  if (!ab) return unexpected(ab.error());
  auto ba = make();
  if (!ba) return unexpected(ba.error());
  return std::pair<duplex, duplex>{duplex(std::move(ba->first), std::move(ab->second)),
                                   duplex(std::move(ab->first), std::move(ba->second))};
}

task<result<void>> duplex::close(deadline dl) {
  if (closed_ || (!in_.is_open() && !out_.is_open())) co_return errc::closed;
  closed_ = true;
  (void)co_await out_.close(dl);
  if (!in_.is_open()) co_return result<void>{};
  // Orderly end: let the peer finish writing rather than break its last writes.
  co_return co_await in_.drain_and_close(dl);
}

// -- child processes ----------------------------------------------------------------------

std::string exit_status::to_string() const {
  if (exited) return "exit " + std::to_string(code);
  return "killed by signal " + std::to_string(signal);
}

namespace {

exit_status decode_status(int status) {
  exit_status s;
  if (WIFEXITED(status)) {
    s.exited = true;
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
  }
  return s;
}

int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);  // pidfds are close-on-exec already
    return static_cast<int>(fd);
  }
#endif
  (void)pid;
  return -1;
}

// spawn_guard releases what spawn() allocated on every path.
struct spawn_guard {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool have_actions = false;
  bool have_attr = false;
  int fds[4] = {-1, -1, -1, -1};  // child stdin (r, w), child stdout (r, w)
  ~spawn_guard() {
    if (have_actions) posix_spawn_file_actions_destroy(&actions);
    if (have_attr) posix_spawnattr_destroy(&attr);
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

}  // namespace

child::child(child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      stream_(std::move(other.stream_)),
      status_(std::exchange(other.status_, std::nullopt)),
      closed_(std::exchange(other.closed_, true)) {}

child& child::operator=(child&& other) noexcept {
  if (this != &other) {
    reap_now();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    stream_ = std::move(other.stream_);
    status_ = std::exchange(other.status_, std::nullopt);
    closed_ = std::exchange(other.closed_, true);
  }
  return *this;
}

child::~child() { reap_now(); }

void child::reap_now() noexcept {
  if (pid_ > 0 && !status_) {
    (void)kill(SIGKILL);
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
    if (r == pid_) status_ = decode_status(status);
  }
  pidfd_.close();
}

task<result<exit_status>> child::wait(deadline dl) {
  if (status_) co_return *status_;
  if (pid_ <= 0) co_return errc::closed;
  int status = 0;
  auto reap = [&]() -> ssize_t {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == 0) errno = EAGAIN;  // still running
    return r > 0 ? r : -1;
  };
  if (pidfd_) {
    // A pidfd turns readable when the process exits; the exit cannot slip between a
    // waitpid and the wait: epoll keeps the event for us.
    auto r = co_await pidfd_.perform_read(reap, dl);
    if (!r) co_return unexpected(r.error());
  } else {
    auto delay = std::chrono::milliseconds(1);
    for (;;) {
      ssize_t r = reap();
      if (r > 0) break;
      if (errno == EINTR) continue;
      if (errno != EAGAIN) co_return unexpected(from_errno(errno));
      if (auto w = co_await backoff_sleep(delay, dl); !w) co_return unexpected(w.error());
    }
  }
  status_ = decode_status(status);
  pidfd_.close();
  co_return *status_;
}

result<void> child::kill(int signo) {
  if (pid_ <= 0 || status_) return errc::closed;
#ifdef SYS_pidfd_send_signal
  if (pidfd_) {
    if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), signo, nullptr, 0) < 0) return from_errno(errno);
    return {};
  }
#endif
  if (::kill(pid_, signo) < 0) return from_errno(errno);
  return {};
}

task<result<void>> child::close(deadline dl) {
  if (closed_ || pid_ <= 0) co_return errc::closed;
  closed_ = true;
  auto closed = co_await stream_.close(dl);
  std::error_code outcome = closed ? std::error_code{} : closed.error();
  if (!outcome) {
    auto st = co_await wait(dl);
    if (!st) outcome = st.error();
  }
  // Timed out or canceled: the child does not get to outlive its stream.
  if (!status_) reap_now();
  co_return outcome;
}

result<child> spawn(std::span<const std::string> argv, const spawn_options& options) {
  if (argv.empty() || argv[0].empty()) return errc::invalid_argument;
  spawn_guard g;
  // The child's ends stay blocking (programs expect that); ours become non-blocking.
  if (::pipe2(g.fds, O_CLOEXEC) < 0 || ::pipe2(g.fds + 2, O_CLOEXEC) < 0)
    return unexpected(from_errno(errno));
  if (auto r = make_nonblocking(g.fds[1]); !r) return unexpected(r.error());
  if (auto r = make_nonblocking(g.fds[2]); !r) return unexpected(r.error());

  if (int rc = posix_spawn_file_actions_init(&g.actions)) return unexpected(from_errno(rc));
  g.have_actions = true;
  int rc = posix_spawn_file_actions_adddup2(&g.actions, g.fds[0], STDIN_FILENO);
  if (!rc) rc = posix_spawn_file_actions_adddup2(&g.actions, g.fds[3], STDOUT_FILENO);
  if (!rc && options.error == child_stderr::to_stdout)
    rc = posix_spawn_file_actions_adddup2(&g.actions, g.fds[3], STDERR_FILENO);
  if (!rc && options.error == child_stderr::null)
    rc = posix_spawn_file_actions_addopen(&g.actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  if (!rc && !options.working_directory.empty())
    rc = posix_spawn_file_actions_addchdir_np(&g.actions, options.working_directory.c_str());
  // Descriptors the program inherited without close-on-exec do not leak into the child.
  if (!rc) rc = posix_spawn_file_actions_addclosefrom_np(&g.actions, 3);
  if (rc) return unexpected(from_errno(rc));

  if (int r = posix_spawnattr_init(&g.attr)) return unexpected(from_errno(r));
  g.have_attr = true;
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  rc = posix_spawnattr_setsigmask(&g.attr, &empty);
  if (!rc) rc = posix_spawnattr_setsigdefault(&g.attr, &defaults);
  if (!rc) rc = posix_spawnattr_setflags(&g.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc) return unexpected(from_errno(rc));

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  rc = options.search_path ? posix_spawnp(&pid, args[0], &g.actions, &g.attr, args.data(), environ)
                           : posix_spawn(&pid, args[0], &g.actions, &g.attr, args.data(), environ);
  if (rc) return unexpected(from_errno(rc));

  ::close(std::exchange(g.fds[0], -1));
  ::close(std::exchange(g.fds[3], -1));
  child c;
  duplex stream(pipe_access::make_reader(std::exchange(g.fds[2], -1), false),
                pipe_access::make_writer(std::exchange(g.fds[1], -1), false));
  pipe_access::set_child(c, pid, open_pidfd(pid), std::move(stream));
  return c;
}

std::vector<std::string> split_command(std::string_view command) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < command.size()) {
    while (i < command.size() && (command[i] == ' ' || command[i] == '\t')) ++i;
    std::size_t start = i;
    while (i < command.size() && command[i] != ' ' && command[i] != '\t') ++i;
    if (i > start) out.emplace_back(command.substr(start, i - start));
  }
  return out;
}

}  // namespace strata::pipe

// -- FIFOs --------------------------------------------------------------------------------

namespace strata::fifo {
namespace {

result<void> ensure_fifo(const std::string& path, const open_options& options) {
  if (!options.create) return {};
  if (::mkfifo(path.c_str(), options.mode) < 0 && errno != EEXIST) return from_errno(errno);
  return {};
}

}  // namespace

result<pipe::reader> open_reader(std::string_view path_view, open_options options) {
  std::string path(path_view);
  if (path.empty()) return errc::invalid_argument;
  if (auto r = ensure_fifo(path, options); !r) return unexpected(r.error());
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return unexpected(from_errno(errno));
  if (auto r = pipe::check_fifo(fd); !r) {
    ::close(fd);
    return unexpected(r.error());
  }
  return detail::pipe_access::make_reader(fd, true);
}

task<result<pipe::writer>> open_writer(std::string path, deadline dl, open_options options) {
  if (path.empty()) co_return errc::invalid_argument;
  if (auto r = ensure_fifo(path, options); !r) co_return unexpected(r.error());
  auto delay = std::chrono::milliseconds(1);
  for (;;) {
    int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      if (auto r = pipe::check_fifo(fd); !r) {
        ::close(fd);
        co_return unexpected(r.error());
      }
      co_return detail::pipe_access::make_writer(fd, true);
    }
    if (errno == EINTR) continue;
    if (errno != ENXIO) co_return unexpected(from_errno(errno));
    // No reader yet, and no event will announce one: retry at growing intervals.
    if (auto w = co_await pipe::backoff_sleep(delay, dl); !w) co_return unexpected(w.error());
  }
}

}  // namespace strata::fifo
