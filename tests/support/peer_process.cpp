#include "support/peer_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>

extern char** environ;

namespace strata::test {

namespace {

using clock = std::chrono::steady_clock;

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void set_nonblocking(int fd) {
  if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// poll_ms is the time left until `until` in whole milliseconds, rounded up so a wait
// never ends before its deadline.
int poll_ms(clock::time_point until) {
  auto left = until - clock::now();
  if (left <= clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<long long>(ms, 1'000'000));
}

// environment is the test's environment with `extra` added (a name already there is
// replaced), as the strings posix_spawn wants.
std::vector<std::string> environment(const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    auto name = entry.substr(0, entry.find('='));
    bool replaced = std::any_of(extra.begin(), extra.end(), [&](const auto& kv) { return kv.first == name; });
    if (!replaced) env.emplace_back(entry);
  }
  for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string find_program(std::string_view name) {
  if (name.empty()) return {};
  auto absolute = [](const std::string& p) {
    std::error_code ec;
    auto a = std::filesystem::absolute(p, ec);
    return ec ? p : a.lexically_normal().string();
  };
  if (name.find('/') != std::string_view::npos) {
    std::string path = absolute(std::string(name));
    return is_executable_file(path) ? path : std::string();
  }
  const char* env_path = std::getenv("PATH");
  std::string dirs = env_path ? env_path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t begin = 0;
  while (begin <= dirs.size()) {
    auto end = dirs.find(':', begin);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(begin, end - begin);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + std::string(name);
    if (is_executable_file(candidate)) return absolute(candidate);
    begin = end + 1;
  }
  return {};
}

spawned_child spawn_child(const std::vector<std::string>& argv, const spawn_options& options) {
  spawned_child c;
  if (argv.empty()) {
    c.error = EINVAL;
    return c;
  }
  std::string program = find_program(argv[0]);
  if (program.empty()) {
    c.error = ENOENT;
    return c;
  }
  // Writing to a child that died must fail with EPIPE, not kill the test program.
  ::signal(SIGPIPE, SIG_IGN);

  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {in, out, err}) {
      close_fd(p[0]);
      close_fd(p[1]);
    }
  };
  if ((options.stdin_pipe && ::pipe2(in, O_CLOEXEC) != 0) || ::pipe2(out, O_CLOEXEC) != 0 ||
      (!options.merge_output && ::pipe2(err, O_CLOEXEC) != 0)) {
    c.error = errno;
    close_all();
    return c;
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (options.stdin_pipe)
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  else
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, options.merge_output ? out[1] : err[1], 2);
  if (!options.working_directory.empty())
    posix_spawn_file_actions_addchdir_np(&actions, options.working_directory.c_str());
  // The child starts with every signal at its default disposition and an empty mask,
  // whatever the test runner set up for itself (SIGPIPE ignored, above).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args(argv.begin(), argv.end());
  std::vector<std::string> env = environment(options.env);
  int rc =
      ::posix_spawn(&c.pid, program.c_str(), &actions, &attr, c_strings(args).data(), c_strings(env).data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close_fd(in[0]);
  close_fd(out[1]);
  close_fd(err[1]);
  if (rc != 0) {
    c.pid = -1;
    c.error = rc;
    close_all();
    return c;
  }
  c.stdin_fd = std::exchange(in[1], -1);
  c.stdout_fd = std::exchange(out[0], -1);
  c.stderr_fd = std::exchange(err[0], -1);
  for (int fd : {c.stdin_fd, c.stdout_fd, c.stderr_fd}) set_nonblocking(fd);
  // Without a pidfd the exit could not be awaited without polling: a failed start.
  c.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, c.pid, 0));
  if (c.pidfd < 0) {
    c.error = errno;
    ::kill(c.pid, SIGKILL);
    ::waitpid(c.pid, nullptr, 0);
    c.pid = -1;
    for (int* fd : {&c.stdin_fd, &c.stdout_fd, &c.stderr_fd}) close_fd(*fd);
  }
  return c;
}

int exit_code(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

// -- peer_process --------------------------------------------------------------------------

peer_process peer_process::start(std::vector<std::string> argv, peer_options options) {
  peer_process p;
  for (const auto& a : argv) p.command_line_ += (p.command_line_.empty() ? "" : " ") + a;
  if (argv.empty()) {
    ADD_FAILURE() << "peer_process::start: no program given";
    return p;
  }
  if (find_program(argv[0]).empty()) {
    const char* path = std::getenv("PATH");
    ADD_FAILURE() << "peer program '" << argv[0]
                  << "' is not installed (not found on PATH=" << (path ? path : "(unset)")
                  << "); this test needs it as a third-party peer: `scripts/quickstart setup` installs the "
                     "peers (docs/dependencies.md)";
    return p;
  }
  spawned_child c = spawn_child(argv, spawn_options{.env = std::move(options.env),
                                                    .working_directory = options.working_directory,
                                                    .stdin_pipe = options.stdin_pipe,
                                                    .merge_output = true});
  if (c.error != 0) {
    ADD_FAILURE() << "peer_process: cannot start `" << p.command_line_ << "`"
                  << (options.working_directory.empty() ? "" : " in " + options.working_directory) << ": "
                  << std::strerror(c.error);
    return p;
  }
  p.pid_ = c.pid;
  p.pidfd_ = c.pidfd;
  p.stdin_fd_ = c.stdin_fd;
  p.output_fd_ = c.stdout_fd;
  return p;
}

peer_process::peer_process(peer_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      stdin_fd_(std::exchange(other.stdin_fd_, -1)),
      output_fd_(std::exchange(other.output_fd_, -1)),
      status_(std::exchange(other.status_, std::nullopt)),
      output_(std::move(other.output_)),
      command_line_(std::move(other.command_line_)) {}

peer_process& peer_process::operator=(peer_process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) stop();
    close_fds();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    stdin_fd_ = std::exchange(other.stdin_fd_, -1);
    output_fd_ = std::exchange(other.output_fd_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
    output_ = std::move(other.output_);
    command_line_ = std::move(other.command_line_);
  }
  return *this;
}

peer_process::~peer_process() {
  if (pid_ > 0) stop();
  close_fds();
}

bool peer_process::write_stdin(std::string_view data, std::chrono::milliseconds timeout) {
  auto until = clock::now() + timeout;
  while (!data.empty()) {
    if (stdin_fd_ < 0) return false;
    ssize_t n = ::write(stdin_fd_, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!poll_once(until, true)) return false;
      continue;
    }
    return false;  // EPIPE: the peer closed its stdin or exited
  }
  return true;
}

void peer_process::close_stdin() { close_fd(stdin_fd_); }

bool peer_process::wait_for_output(std::string_view needle, std::chrono::milliseconds timeout) {
  auto until = clock::now() + timeout;
  read_output();
  reap();
  for (;;) {
    if (output_.find(needle) != std::string::npos) return true;
    // Exited (its output was drained when it was reaped), or its output closed:
    // nothing more can come.
    if (status_ || output_fd_ < 0) return false;
    if (!poll_once(until, false)) return output_.find(needle) != std::string::npos;
  }
}

std::string peer_process::output() {
  read_output();
  return output_;
}

std::optional<int> peer_process::wait_exit(std::chrono::milliseconds timeout) {
  auto until = clock::now() + timeout;
  reap();
  while (!status_) {
    if (pid_ <= 0) return std::nullopt;
    if (!poll_once(until, false)) {
      reap();
      break;
    }
  }
  return status_;
}

int peer_process::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  reap();
  if (!status_) {
    ::kill(pid_, SIGTERM);
    if (!wait_exit(grace)) {
      ::kill(pid_, SIGKILL);
      if (!wait_exit(std::chrono::seconds(10))) {
        // A SIGKILLed child that is not gone after 10 s is stuck in the kernel; waiting
        // for it is all that is left (it must not outlive the test).
        int st = 0;
        ::waitpid(pid_, &st, 0);
        status_ = exit_code(st);
      }
    }
  }
  read_output();
  return *status_;
}

bool peer_process::poll_once(clock::time_point until, bool want_stdin) {
  pollfd fds[3];
  nfds_t n = 0;
  if (output_fd_ >= 0) fds[n++] = pollfd{output_fd_, POLLIN, 0};
  if (!status_ && pidfd_ >= 0) fds[n++] = pollfd{pidfd_, POLLIN, 0};
  if (want_stdin && stdin_fd_ >= 0) fds[n++] = pollfd{stdin_fd_, POLLOUT, 0};
  if (n == 0 || clock::now() >= until) return false;
  int ready = ::poll(fds, n, poll_ms(until));
  if (ready < 0) return errno == EINTR;
  for (nfds_t i = 0; i < n; ++i) {
    if (fds[i].revents == 0) continue;
    if (fds[i].fd == output_fd_) read_output();
    if (fds[i].fd == pidfd_) reap();
  }
  return ready > 0 || clock::now() < until;
}

void peer_process::read_output() {
  char buf[65536];
  while (output_fd_ >= 0) {
    ssize_t n = ::read(output_fd_, buf, sizeof buf);
    if (n > 0) {
      output_.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      close_fd(output_fd_);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      break;
    } else {
      close_fd(output_fd_);
    }
  }
}

void peer_process::reap() {
  if (status_ || pid_ <= 0) return;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = exit_code(st);
    // Everything it wrote is in the pipe now (a process it started may still hold the
    // pipe open, so end of file is not awaited).
    read_output();
  } else if (r < 0 && errno == ECHILD) {
    status_ = -1;  // reaped behind our back; nothing to wait for
  }
}

void peer_process::close_fds() {
  close_fd(pidfd_);
  close_fd(stdin_fd_);
  close_fd(output_fd_);
}

// -- loopback ports ------------------------------------------------------------------------

int loopback_socket(int type, int backlog, int& port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      (type == SOCK_STREAM && backlog >= 0 && ::listen(fd, backlog) != 0) ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    int saved = errno;
    if (fd >= 0) ::close(fd);
    errno = saved;
    return -1;
  }
  port = ntohs(sa.sin_port);
  return fd;
}

int free_loopback_port(int type) {
  int port = 0;
  int fd = loopback_socket(type, -1, port);
  if (fd < 0) {
    ADD_FAILURE() << "free_loopback_port: no free 127.0.0.1 port: " << std::strerror(errno);
    return 0;
  }
  ::close(fd);
  return port;
}

bool wait_tcp_listening(int port, std::chrono::milliseconds timeout) {
  auto until = clock::now() + timeout;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  for (;;) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ADD_FAILURE() << "wait_tcp_listening: socket: " << std::strerror(errno);
      return false;
    }
    bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
    if (!connected && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      connected = ::poll(&p, 1, poll_ms(until)) == 1 &&
                  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    // A port in the ephemeral range can be connected to itself (TCP simultaneous open)
    // when the kernel happens to pick it as the source port: that is nobody listening.
    sockaddr_in local{};
    socklen_t len = sizeof local;
    if (connected && ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        local.sin_port == to.sin_port)
      connected = false;
    ::close(fd);
    if (connected) return true;
    if (clock::now() >= until) return false;
    // Refused: nobody listens yet. Try again shortly; the pause is bounded by the deadline.
    ::poll(nullptr, 0, std::min(poll_ms(until), 10));
  }
}

}  // namespace strata::test
