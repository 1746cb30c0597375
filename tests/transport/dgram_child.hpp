// A child process for the multi-process tests of the message transports (udp, unix_dgram,
// seqpacket): the built CLI (STRATA_CLI_PATH) or socat, started by spawn_child
// (support/peer_process.hpp), its stdin, stdout and stderr on pipes that the test drives
// through the event loop with deadlines. Exit is awaited through a pidfd, so nothing
// polls or sleeps. A child still running when the object goes away is killed (SIGKILL)
// and reaped.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/runtime.hpp"
#include "strata/runtime/result.hpp"
#include "support/peer_process.hpp"

namespace strata::test::dgram {

/// cli_path is the strata command-line tool built with the tests.
inline const char* cli_path() { return STRATA_CLI_PATH; }

/// child is one spawned process with piped standard streams.
class child {
 public:
  child() = default;
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  child(child&& o) noexcept
      : pid_(std::exchange(o.pid_, -1)),
        pidfd_(std::exchange(o.pidfd_, -1)),
        in_(std::exchange(o.in_, -1)),
        out_(std::exchange(o.out_, -1)),
        err_(std::exchange(o.err_, -1)),
        status_(o.status_),
        out_text_(std::move(o.out_text_)),
        err_text_(std::move(o.err_text_)) {}
  ~child() {
    if (pid_ > 0 && status_ < 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    for (int fd : {pidfd_, in_, out_, err_}) close_fd(fd);
  }

  /// spawn starts argv[0] (searched on PATH) with argv. Errors: the spawn's errno
  /// (ENOENT when the program is not installed: a missing peer fails the test).
  static result<child> spawn(const std::vector<std::string>& argv) {
    spawned_child s = spawn_child(argv, spawn_options{.stdin_pipe = true});
    if (s.error != 0) return unexpected(from_errno(s.error));
    child c;
    c.pid_ = s.pid;
    c.pidfd_ = s.pidfd;
    c.in_ = s.stdin_fd;
    c.out_ = s.stdout_fd;
    c.err_ = s.stderr_fd;
    return c;
  }

  pid_t pid() const noexcept { return pid_; }
  /// out / err are everything read from stdout / stderr so far.
  const std::string& out() const noexcept { return out_text_; }
  const std::string& err() const noexcept { return err_text_; }

  /// write_stdin writes all of `text` to the child's stdin before `dl`.
  task<result<void>> write_stdin(std::string_view text, deadline dl) {
    while (!text.empty()) {
      if (in_ < 0) co_return errc::closed;
      ssize_t n = ::write(in_, text.data(), text.size());
      if (n > 0) {
        text.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) co_return from_errno(errno);
      event_loop::current()->io_drained(in_, true);
      if (auto ec = co_await wait_writable(in_, dl)) co_return ec;
    }
    co_return result<void>{};
  }
  /// close_stdin ends the child's input.
  void close_stdin() { close_fd(in_); }

  /// read_stdout_until reads stdout until out() contains `needle` (or it ends: end_of_stream).
  task<result<void>> read_stdout_until(std::string_view needle, deadline dl) {
    return read_until(out_, out_text_, needle, dl);
  }
  /// read_stderr_until reads stderr until err() contains `needle`.
  task<result<void>> read_stderr_until(std::string_view needle, deadline dl) {
    return read_until(err_, err_text_, needle, dl);
  }
  /// read_stdout_to_end reads stdout until the child closes it.
  task<result<void>> read_stdout_to_end(deadline dl) {
    auto r = co_await read_until(out_, out_text_, std::string_view("\x01\x02 never \x03"), dl);
    if (r.error() == errc::end_of_stream) co_return result<void>{};
    co_return r;
  }

  /// wait_exit waits for the child to end and returns its exit status, or 128 + the
  /// signal that killed it.
  task<result<int>> wait_exit(deadline dl) {
    while (status_ < 0) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = exit_code(st);
        break;
      }
      if (r < 0) co_return unexpected(from_errno(errno));
      if (auto ec = co_await wait_readable(pidfd_, dl)) co_return unexpected(ec);
    }
    co_return status_;
  }
  /// signal sends `sig` to the child (if it still runs).
  void signal(int sig) {
    if (pid_ > 0 && status_ < 0) ::kill(pid_, sig);
  }

 private:
  static void close_fd(int& fd) {
    if (fd < 0) return;
    if (auto* loop = event_loop::current()) loop->forget_fd(fd);
    ::close(fd);
    fd = -1;
  }

  static task<result<void>> read_until(int fd, std::string& text, std::string_view needle, deadline dl) {
    char buf[4096];
    for (;;) {
      if (text.find(needle) != std::string::npos) co_return result<void>{};
      if (fd < 0) co_return errc::closed;
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        text.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) co_return errc::end_of_stream;
      if (errno == EINTR) continue;
      if (errno != EAGAIN) co_return from_errno(errno);
      event_loop::current()->io_drained(fd, false);
      if (auto ec = co_await wait_readable(fd, dl)) co_return ec;
    }
  }

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int in_ = -1;
  int out_ = -1;
  int err_ = -1;
  int status_ = -1;
  std::string out_text_;
  std::string err_text_;
};

/// port_after finds the number after `marker` in `text` ("listening on 127.0.0.1:PORT").
inline int port_after(const std::string& text, std::string_view marker) {
  auto at = text.find(marker);
  if (at == std::string::npos) return 0;
  auto line_end = text.find('\n', at);
  auto line = text.substr(at, line_end == std::string::npos ? std::string::npos : line_end - at);
  auto colon = line.rfind(':');
  if (colon == std::string::npos) return 0;
  return std::atoi(line.c_str() + colon + 1);
}

}  // namespace strata::test::dgram
