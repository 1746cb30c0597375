// Third-party peers for the tests (openssl s_server/s_client, curl, tshark, nghttpd,
// socat): a program the project did not write, started as a child process with its
// output captured through a pipe and read with poll() against deadlines, and stopped
// (SIGTERM, then SIGKILL) when the test lets go of it, so no child outlives its test.
//
// Nothing here sleeps to synchronise: every wait polls the child's pipe and its pidfd
// until the awaited thing happens or the deadline passes. A missing peer program fails
// the test (ADD_FAILURE naming the program): a missing peer is a setup bug, never a
// reason to skip. `scripts/quickstart setup` installs the peers (docs/dependencies.md).
//
// The lower pieces (find_program, spawn_child, loopback_socket) are shared with the CLI
// harness (tests/cli/cli_support.hpp) and the datagram transports' child
// (tests/transport/dgram_child.hpp).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace strata::test {

// -- programs and processes ------------------------------------------------------------

/// find_program returns the absolute path of the executable `name`, searched on PATH
/// like a shell does (a `name` containing '/' is checked as it is, made absolute); empty
/// when there is none. Does not block.
std::string find_program(std::string_view name);

/// spawn_options says how spawn_child starts a child.
struct spawn_options {
  /// env holds variables added to the test's environment (a name already there is
  /// replaced).
  std::vector<std::pair<std::string, std::string>> env{};
  /// working_directory is where the child starts; empty: the test's own.
  std::string working_directory{};
  /// stdin_pipe gives the child a pipe on stdin (spawned_child::stdin_fd); otherwise its
  /// stdin is /dev/null and it reads end of file at once.
  bool stdin_pipe = true;
  /// merge_output sends stderr into the stdout pipe (spawned_child::stderr_fd is -1).
  bool merge_output = false;
};

/// spawned_child is the parent's side of a child started by spawn_child. The caller owns
/// the descriptors (all close-on-exec and nonblocking) and must reap `pid`.
struct spawned_child {
  /// error is 0 when the child runs, otherwise the errno of the step that failed
  /// (ENOENT: the program is not on PATH); then no descriptor is open and pid is -1.
  int error = 0;
  pid_t pid = -1;
  int pidfd = -1;      ///< readable once the child has exited (pidfd_open)
  int stdin_fd = -1;   ///< write end of the child's stdin; -1 without stdin_pipe
  int stdout_fd = -1;  ///< read end of its stdout (and stderr with merge_output)
  int stderr_fd = -1;  ///< read end of its stderr; -1 with merge_output
};

/// spawn_child starts argv[0] (resolved with find_program) with `argv` and returns the
/// parent's ends of its pipes. The child starts with every signal at its default
/// disposition and an empty signal mask, whatever the test set up for itself; the test
/// program itself ignores SIGPIPE from then on, so writing to a child that died fails
/// with EPIPE instead of killing the runner. Does not block on the child.
spawned_child spawn_child(const std::vector<std::string>& argv, const spawn_options& options);

/// exit_code turns a waitpid() status into the child's exit code, or 128 + the signal
/// that killed it (as a shell reports it); -1 for a status that is neither.
int exit_code(int wait_status);

/// peer_options says how peer_process::start runs a peer.
struct peer_options {
  /// env holds variables added to the test's environment (a name already there is
  /// replaced), e.g. SSLKEYLOGFILE.
  std::vector<std::pair<std::string, std::string>> env{};
  /// stdin_pipe gives the peer a stdin the test writes with write_stdin(); otherwise its
  /// stdin is /dev/null. openssl s_server quits at end of file on stdin, so it needs the
  /// pipe; s_client without it sends nothing and closes after the handshake.
  bool stdin_pipe = false;
  /// working_directory is where the peer starts; empty: the test's own.
  std::string working_directory{};
};

/// peer_process is one running third-party peer with its stdout and stderr captured,
/// interleaved as it wrote them, through one pipe. Not thread-safe: one test thread
/// drives it. Moving it moves the child; the destructor stops it (see stop()).
class peer_process {
 public:
  /// start runs `argv` (argv[0] is looked up on PATH unless it holds a '/'). On failure
  /// it records a GoogleTest failure naming the program and why (not installed, not
  /// executable, no such working directory) and returns a peer that is false; use it as
  /// `auto p = peer_process::start(...); ASSERT_TRUE(p);`.
  static peer_process start(std::vector<std::string> argv, peer_options options = {});

  /// A default-constructed peer_process runs nothing and is false.
  peer_process() = default;
  peer_process(peer_process&& other) noexcept;
  peer_process& operator=(peer_process&& other) noexcept;
  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;
  /// The destructor stops a child still running (stop() with its default grace).
  ~peer_process();

  /// operator bool: the child was started (it may have exited since).
  explicit operator bool() const noexcept { return pid_ > 0; }
  /// pid is the child's process id; -1 when nothing was started.
  pid_t pid() const noexcept { return pid_; }
  /// command_line is argv joined with spaces, for failure messages.
  const std::string& command_line() const noexcept { return command_line_; }

  /// write_stdin writes all of `data` to the peer's stdin before `timeout`, reading its
  /// output meanwhile (so a peer blocked on a full output pipe cannot deadlock us).
  /// False at the deadline (a prefix may have been written), when the peer closed its
  /// stdin or exited, or when it was started without stdin_pipe.
  bool write_stdin(std::string_view data, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// close_stdin gives the peer end of file on its stdin. Does nothing without a pipe.
  void close_stdin();

  /// wait_for_output returns true as soon as everything captured so far contains
  /// `needle` (searched from the very beginning of the output). False when `timeout`
  /// passes first, or at once when the peer has exited without writing it (nothing more
  /// can come). Never sleeps: it polls the output pipe and the pidfd.
  bool wait_for_output(std::string_view needle, std::chrono::milliseconds timeout);
  /// output returns everything the peer wrote to stdout and stderr so far, including
  /// what is in the pipe now. Does not block.
  std::string output();

  /// wait_exit waits until the peer exits and returns its exit code (128 + the signal for
  /// a peer killed by one), reading its output meanwhile; nullopt when `timeout` passes
  /// first (the peer keeps running). After an exit, output() holds all it wrote.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  /// exited: the peer has exited and was reaped (by wait_exit, wait_for_output or stop).
  bool exited() const noexcept { return status_.has_value(); }

  /// stop ends the peer: SIGTERM, up to `grace` for it to exit, then SIGKILL; it
  /// returns once the child is reaped, with its exit code (143 after a SIGTERM it did not
  /// handle, 137 after the SIGKILL). A peer that already exited just reports its code.
  /// Only the child itself is signalled, not processes it started.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(2));

 private:
  using clock = std::chrono::steady_clock;

  // poll_once waits (until `until`) for output, the child's exit, or room on stdin when
  // `want_stdin`, and takes in what came. False when the deadline passed.
  bool poll_once(clock::time_point until, bool want_stdin);
  void read_output();
  void reap();
  void close_fds();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdin_fd_ = -1;
  int output_fd_ = -1;
  std::optional<int> status_;
  std::string output_;
  std::string command_line_;
};

// -- loopback ports ------------------------------------------------------------------------

/// loopback_socket returns a socket of `type` (SOCK_STREAM or SOCK_DGRAM, close-on-exec)
/// bound to 127.0.0.1 on a free port, listening with `backlog` unless it is negative (or
/// the type is not a stream); -1 on failure. `port` receives the port.
int loopback_socket(int type, int backlog, int& port);

/// free_loopback_port returns a 127.0.0.1 port of `type` (SOCK_STREAM or SOCK_DGRAM)
/// that was free a moment ago, for a peer that must be told its port up front (openssl
/// s_server -accept). Another process may take it before the peer binds it: prefer
/// peers that report the port they bound. Records a failure and returns 0 when no port
/// can be had.
int free_loopback_port(int type);

/// wait_tcp_listening returns true once a TCP connection to 127.0.0.1:`port` succeeds,
/// trying again (a nonblocking connect, then a pause of at most 10 ms, all bounded by
/// `timeout`) while it is refused; false at the deadline. The probe connection is
/// closed at once, so the server sees one empty connection: for a peer that serves a
/// single connection, wait for its "ACCEPT"-style output line instead.
bool wait_tcp_listening(int port, std::chrono::milliseconds timeout);

}  // namespace strata::test
