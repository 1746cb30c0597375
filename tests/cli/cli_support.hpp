// The child-process harness of the CLI tests (cli_test.cpp, cli_input_test.cpp): a
// program started with pipes on its stdin, stdout and stderr, driven with poll() against
// a deadline (its exit seen through a pidfd, so nothing sleeps), and killed by its PID
// when the test lets go of it. Starting it, and the loopback sockets, are the shared
// pieces of support/peer_process.hpp.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/peer_process.hpp"

namespace strata::test::cli {

using steady = std::chrono::steady_clock;

/// has_line: `text` holds a complete line (one ended by '\n') containing `needle`.
inline bool has_line(const std::string& text, std::string_view needle) {
  auto at = text.find(needle);
  return at != std::string::npos && text.find('\n', at) != std::string::npos;
}

// loopback_socket binds a TCP socket to 127.0.0.1 on a free port (listening with
// `backlog` unless it is negative); -1 on failure. `port` receives the port.
inline int loopback_socket(int backlog, int& port) {
  return test::loopback_socket(SOCK_STREAM, backlog, port);
}

/// loopback_connect returns a TCP socket connected to 127.0.0.1:`port`; -1 on failure.
inline int loopback_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    fd = -1;
  }
  return fd;
}

// process is one child with its three standard streams on pipes. The destructor kills
// it (SIGKILL, by PID) and reaps it if it is still running.
class process {
 public:
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  static std::unique_ptr<process> start(std::vector<std::string> argv) {
    spawned_child c = spawn_child(argv, spawn_options{.stdin_pipe = true});
    if (c.error != 0) return nullptr;
    auto p = std::unique_ptr<process>(new process());
    p->pid_ = c.pid;
    p->pidfd_ = c.pidfd;
    p->in_ = c.stdin_fd;
    p->out_ = c.stdout_fd;
    p->err_ = c.stderr_fd;
    return p;
  }

  ~process() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_, out_, err_, pidfd_})
      if (fd >= 0) ::close(fd);
  }

  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_data_; }
  const std::string& err() const { return err_data_; }
  bool exited() const { return exited_; }
  /// exit_code is the exit status, or 128 + signal for a child killed by a signal.
  int exit_code() const { return test::exit_code(status_); }
  /// finished: exited and both output pipes at end of file.
  bool finished() const { return exited_ && out_ < 0 && err_ < 0; }

  /// send queues `data` for stdin; with `then_close` stdin is closed once written.
  void send(std::string data, bool then_close) {
    to_send_ += data;
    close_after_ = close_after_ || then_close;
    flush_stdin();
  }
  void close_stdin() {
    close_after_ = true;
    flush_stdin();
  }

  /// drive polls every process's pipes and exit until `done()` holds or `until` passes.
  static bool drive(std::initializer_list<process*> procs, steady::time_point until,
                    const std::function<bool()>& done) {
    for (;;) {
      if (done()) return true;
      auto now = steady::now();
      if (now >= until) return false;
      std::vector<pollfd> fds;
      std::vector<std::pair<process*, int>> owners;
      for (auto* p : procs) {
        auto add = [&](int fd, short events, int which) {
          if (fd < 0) return;
          fds.push_back(pollfd{fd, events, 0});
          owners.emplace_back(p, which);
        };
        if (!p->to_send_.empty()) add(p->in_, POLLOUT, 0);
        add(p->out_, POLLIN, 1);
        add(p->err_, POLLIN, 2);
        if (!p->exited_) add(p->pidfd_, POLLIN, 3);
      }
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
      int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(ms, 1000)));
      if (n < 0 && errno != EINTR) return false;
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        auto [p, which] = owners[i];
        switch (which) {
          case 0:
            p->flush_stdin();
            break;
          case 1:
            p->read_from(p->out_, p->out_data_);
            break;
          case 2:
            p->read_from(p->err_, p->err_data_);
            break;
          case 3:
            p->reap();
            break;
        }
      }
    }
  }

  /// wait_finished drives until the process has exited and closed its outputs.
  bool wait_finished(steady::time_point until) {
    return drive({this}, until, [&] { return finished(); });
  }

  /// wait_err_line drives until stderr holds a complete line containing `needle`; false
  /// at the deadline, or once the process has exited and its stderr is at end of file
  /// without one.
  bool wait_err_line(steady::time_point until, std::string_view needle) {
    return drive({this}, until, [&] { return has_line(err_data_, needle) || (exited_ && err_ < 0); }) &&
           has_line(err_data_, needle);
  }

 private:
  process() = default;

  void flush_stdin() {
    while (in_ >= 0 && !to_send_.empty()) {
      ssize_t n = ::write(in_, to_send_.data(), to_send_.size());
      if (n > 0) {
        to_send_.erase(0, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      // EPIPE: the child closed its stdin; nothing more can be delivered.
      to_send_.clear();
      break;
    }
    if (in_ >= 0 && to_send_.empty() && close_after_) {
      ::close(in_);
      in_ = -1;
    }
  }

  void read_from(int& fd, std::string& sink) {
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      sink.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      ::close(fd);
      fd = -1;
    }
  }

  void reap() {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      status_ = status;
      exited_ = true;
    }
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1, pidfd_ = -1;
  std::string to_send_;
  bool close_after_ = false;
  std::string out_data_, err_data_;
  int status_ = 0;
  bool exited_ = false;
};

}  // namespace strata::test::cli
