// pipe — a reliable, ordered, one-way byte stream between processes on one host
// (pipe(7)): anonymous pipes between related processes, a duplex pair of pipes (e.g. a
// child's stdin and stdout) and FIFOs reached by path (mkfifo(3), namespace `fifo`).
//
// The property it adds: a simplex byte stream whose ends are typed. A read end
// (`pipe::reader`, a byte_source) has no write member and a write end (`pipe::writer`, a
// byte_sink) has no read member, so misuse does not compile. `pipe::duplex` joins a
// reader and a writer of two pipes into a byte_stream; `pipe::spawn` starts a child
// process whose stdin and stdout are such a duplex.
//
// row: requires nothing (bottom layer)
//      pipe::row         connection-based stream reliable ordered dup_free ipc p2p
//                        related-only simplex (an anonymous pipe's end)
//      pipe::duplex_row  the same, duplex (two pipes, e.g. a child's stdin/stdout)
//      fifo::row         the same as pipe::row, any-process (a FIFO has a path)
// spec: exec:COMMAND (a child's stdin/stdout as a duplex stream), fifo-read:PATH and
//       fifo-write:PATH (one end of a FIFO; the missing direction answers not_supported)
//
// SIGPIPE: a write to a pipe whose read end is closed raises SIGPIPE, which would kill
// the process, and pipes have no MSG_NOSIGNAL. A writer therefore blocks SIGPIPE in the
// signal mask of the thread that writes (once per thread; other threads and the process's
// disposition are untouched) and, after a write failed with EPIPE, consumes the signal
// that became pending, so the failure is only the errc::broken result. Children started
// by spawn() get an empty signal mask and SIGPIPE's default action.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/pollable_fd.hpp"

namespace strata::detail {
struct pipe_access;  // builds ends from descriptors (src/transport/pipe.cpp)
}  // namespace strata::detail

namespace strata::pipe {

/// row is an anonymous pipe end's capability declaration.
inline constexpr capability_row row{
    .name = "pipe",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::stream,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::p2p,
                       .sharing = sharing::related_only,
                       .direction = direction::simplex},
    .passed = {},
};

/// duplex_row declares a pair of anonymous pipes used as one two-way stream.
inline constexpr capability_row duplex_row{
    .name = "pipe-duplex",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::stream,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::p2p,
                       .sharing = sharing::related_only,
                       .direction = direction::duplex},
    .passed = {},
};

class writer;

/// reader is the read end of a pipe or FIFO: a byte_source (core/stream.hpp).
/// Move-only; a moved-from reader answers every call with errc::closed.
class reader {
 public:
  static constexpr properties capabilities = transport_properties(row);

  reader() noexcept = default;
  reader(reader&& other) noexcept;
  reader& operator=(reader&& other) noexcept;
  ~reader();

  /// adopt takes ownership of the read end `fd` of a pipe (made non-blocking and
  /// close-on-exec). Errors: EBADF and other fcntl errors.
  static result<reader> adopt(int fd);

  /// read_some waits until at least one byte is available and returns 1..buf.size()
  /// bytes (0 only for an empty buf). Errors: end_of_stream once every write end is
  /// closed and the data is read (sticky); timed_out / operation_canceled (nothing was
  /// consumed); closed (this end was closed, also while waiting). A FIFO opened before
  /// any writer waits for the first writer instead of reporting the end.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// close releases the read end; writers then fail with broken. Never blocks; a task
  /// parked in read_some resumes with closed. Errors: closed (already closed).
  task<result<void>> close(deadline dl);

  /// runtime_capabilities is fifo::row's for a FIFO, pipe::row's otherwise.
  properties runtime_capabilities() const noexcept;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return fd_.get(); }
  /// release gives the descriptor to the caller, who must close it.
  int release() noexcept;
  bool is_open() const noexcept { return fd_.is_open(); }

 private:
  friend struct detail::pipe_access;
  friend class duplex;
  reader(int fd, bool fifo) noexcept : fd_(fd), fifo_(fifo) {}
  void release_fd() noexcept;
  /// drain_and_close wakes a parked reader (closed), drops input until the end or `dl`,
  /// then closes. Errors: timed_out, operation_canceled (closed anyway).
  task<result<void>> drain_and_close(deadline dl);

  pollable_fd fd_;
  bool fifo_ = false;
  std::error_code error_{};  // sticky: end_of_stream, closed or a system error
};

/// writer is the write end of a pipe or FIFO: a byte_sink (core/stream.hpp).
/// Move-only; a moved-from writer answers every call with errc::closed.
class writer {
 public:
  static constexpr properties capabilities = transport_properties(row);

  writer() noexcept = default;
  writer(writer&& other) noexcept;
  writer& operator=(writer&& other) noexcept;
  ~writer();

  /// adopt takes ownership of the write end `fd` of a pipe (made non-blocking and
  /// close-on-exec).
  static result<writer> adopt(int fd);

  /// write writes every byte of the gather list (writev), waiting while the pipe is
  /// full. Writes of at most PIPE_BUF (4096) bytes in one call are atomic between
  /// several writers of a FIFO. Errors: broken when no reader is left (sticky; no
  /// SIGPIPE, see the file comment); closed; timed_out / operation_canceled (after a
  /// partial write they fail the writer for good: the reader saw an unknown prefix).
  task<result<void>> write(const_buffers bufs, deadline dl);
  /// shutdown_write closes the write end: the reader gets end_of_stream after the last
  /// byte. Later writes fail with closed; close() still succeeds once. Never blocks.
  task<result<void>> shutdown_write(deadline dl);
  /// close releases the write end (as shutdown_write). Errors: closed (already closed).
  task<result<void>> close(deadline dl);

  /// runtime_capabilities is fifo::row's for a FIFO, pipe::row's otherwise.
  properties runtime_capabilities() const noexcept;
  int native_handle() const noexcept { return fd_.get(); }
  int release() noexcept;
  bool is_open() const noexcept { return fd_.is_open(); }

 private:
  friend struct detail::pipe_access;
  writer(int fd, bool fifo) noexcept : fd_(fd), fifo_(fifo) {}
  void release_fd() noexcept;

  pollable_fd fd_;
  bool fifo_ = false;
  bool shut_ = false;        // shutdown_write closed the descriptor; close() is still due
  std::error_code error_{};  // sticky
};

static_assert(byte_source<reader>);
static_assert(byte_sink<writer>);

/// make creates an anonymous pipe: {read end, write end}, both non-blocking and
/// close-on-exec. Errors: EMFILE, ENFILE.
result<std::pair<reader, writer>> make();

/// duplex is a reader and a writer of two pipes acting as one byte_stream (core/stream.hpp):
/// what is written goes out through the writer, what is read comes from the reader.
class duplex {
 public:
  static constexpr properties capabilities = transport_properties(duplex_row);

  duplex() noexcept = default;
  duplex(reader in, writer out) noexcept : in_(std::move(in)), out_(std::move(out)) {}

  /// pair returns two duplex streams joined by two pipes: what one writes the other reads.
  static result<std::pair<duplex, duplex>> pair();

  /// read_some reads from the reader; see reader::read_some.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) { return in_.read_some(buf, dl); }
  /// write writes to the writer; see writer::write.
  task<result<void>> write(const_buffers bufs, deadline dl) { return out_.write(bufs, dl); }
  /// shutdown_write closes the writer: the peer reads end_of_stream.
  task<result<void>> shutdown_write(deadline dl) { return out_.shutdown_write(dl); }
  /// close closes the writer, then reads and drops the peer's remaining output until its
  /// end or `dl`, then closes the reader. On timed_out (the peer never finished) the
  /// reader is closed anyway, so the peer's later writes fail with broken. Afterwards
  /// every call fails with closed. Errors: timed_out, operation_canceled, closed.
  task<result<void>> close(deadline dl);

  reader& read_end() noexcept { return in_; }
  writer& write_end() noexcept { return out_; }

 private:
  reader in_;
  writer out_;
  bool closed_ = false;
};

static_assert(byte_stream<duplex>);

/// simplex_stream shows one simplex end (a reader or a writer) as a byte_stream, for
/// dynamic stacks (any_stream): the direction the end lacks answers errc::not_supported
/// (read_some of a writer; write and shutdown_write of a reader). Its capabilities are
/// the end's, with direction simplex.
template <class End>
class simplex_stream {
 public:
  static constexpr properties capabilities = End::capabilities;

  simplex_stream() noexcept = default;
  explicit simplex_stream(End end) noexcept : end_(std::move(end)) {}

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) {
    if constexpr (requires { end_.read_some(buf, dl); }) {
      return end_.read_some(buf, dl);
    } else {
      return unsupported<std::size_t>();
    }
  }
  task<result<void>> write(const_buffers bufs, deadline dl) {
    if constexpr (requires { end_.write(bufs, dl); }) {
      return end_.write(bufs, dl);
    } else {
      return unsupported<void>();
    }
  }
  task<result<void>> shutdown_write(deadline dl) {
    if constexpr (requires { end_.shutdown_write(dl); }) {
      return end_.shutdown_write(dl);
    } else {
      return unsupported<void>();
    }
  }
  task<result<void>> close(deadline dl) { return end_.close(dl); }
  properties runtime_capabilities() const noexcept { return end_.runtime_capabilities(); }
  End& end() noexcept { return end_; }

 private:
  template <class T>
  static task<result<T>> unsupported() {
    co_return errc::not_supported;
  }
  End end_;
};

static_assert(byte_stream<simplex_stream<reader>>);
static_assert(byte_stream<simplex_stream<writer>>);

/// exit_status is how a child process ended.
struct exit_status {
  bool exited = false;  ///< true: it called exit(code); false: a signal killed it
  int code = 0;         ///< exit code when `exited`
  int signal = 0;       ///< the terminating signal when !exited
  bool success() const noexcept { return exited && code == 0; }
  /// to_string renders "exit 0" or "killed by signal 9".
  std::string to_string() const;
  friend bool operator==(const exit_status&, const exit_status&) = default;
};

/// child_stderr says where a spawned child's standard error goes.
enum class child_stderr {
  inherit,    ///< our own stderr
  to_stdout,  ///< the same pipe as its stdout (we read both, interleaved)
  null,       ///< /dev/null
};

/// spawn_options tune spawn().
struct spawn_options {
  bool search_path = true;  ///< look argv[0] up in PATH when it has no '/'
  child_stderr error = child_stderr::inherit;
  std::string working_directory{};  ///< empty: ours
};

/// child is a process started by spawn(), with pipes to its stdin and stdout. It is a
/// byte_stream itself (what is written goes to the child's stdin, what is read comes
/// from its stdout), and it reaps the process: close() and wait() collect the exit
/// status. Destroying a child whose exit was not collected kills it (SIGKILL) and reaps
/// it, so no zombie is left. Move-only; owned by one thread.
class child {
 public:
  static constexpr properties capabilities = transport_properties(duplex_row);

  child() noexcept = default;
  child(child&& other) noexcept;
  child& operator=(child&& other) noexcept;
  ~child();

  pid_t pid() const noexcept { return pid_; }
  /// stream is the duplex to the child's stdin (write) and stdout (read).
  duplex& stream() noexcept { return stream_; }

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl) { return stream_.read_some(buf, dl); }
  task<result<void>> write(const_buffers bufs, deadline dl) { return stream_.write(bufs, dl); }
  /// shutdown_write closes the child's stdin: it reads end of file.
  task<result<void>> shutdown_write(deadline dl) { return stream_.shutdown_write(dl); }
  /// close closes the stream (duplex::close: stdin closed, stdout drained to its end),
  /// then waits for the child to exit. When `dl` passes first the child is killed
  /// (SIGKILL) and reaped, and close returns timed_out. The exit status is then in
  /// status(). Errors: timed_out, operation_canceled (the child is then killed
  /// too), closed.
  task<result<void>> close(deadline dl);

  /// wait waits for the child to exit and returns how it ended (again on later calls).
  /// Waits on a pidfd (pidfd_open(2)) through the event loop; kernels without pidfds
  /// are polled with waitpid(WNOHANG) at growing intervals (1 ms to 50 ms).
  /// Errors: timed_out / operation_canceled (the child runs on), ECHILD (reaped elsewhere).
  task<result<exit_status>> wait(deadline dl);
  /// kill sends `signo` to the child (pidfd_send_signal when there is a pidfd, so a
  /// recycled pid is never hit). Errors: closed (already reaped), system errors.
  result<void> kill(int signo = SIGTERM);
  /// status is the collected exit status, once wait() or close() saw the exit.
  std::optional<exit_status> status() const noexcept { return status_; }

 private:
  friend struct detail::pipe_access;
  void reap_now() noexcept;

  pid_t pid_ = -1;
  pollable_fd pidfd_;
  duplex stream_;
  std::optional<exit_status> status_;
  bool closed_ = false;
};

static_assert(byte_stream<child>);

/// spawn starts argv[0] with arguments argv[1..] (no shell; posix_spawn(3)), its stdin
/// and stdout connected to pipes whose other ends the returned child holds. The child
/// gets an empty signal mask, SIGPIPE's default action, and no descriptor of ours other
/// than 0, 1 and 2. Errors: invalid_argument (empty argv), ENOENT / EACCES when the
/// program cannot be run, EMFILE, EAGAIN.
result<child> spawn(std::span<const std::string> argv, const spawn_options& options = {});

/// split_command splits a command line on spaces and tabs into argv, with no quoting
/// or expansion (what `exec:COMMAND` does; use `sh -c` through spawn for a shell).
std::vector<std::string> split_command(std::string_view command);

}  // namespace strata::pipe

namespace strata::fifo {

/// row is a FIFO end's capability declaration: a pipe end that any process can open.
inline constexpr capability_row row{
    .name = "fifo",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::stream,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::p2p,
                       .sharing = sharing::any_process,
                       .direction = direction::simplex},
    .passed = {},
};

/// open_options tune opening a FIFO.
struct open_options {
  bool create = true;  ///< mkfifo(3) the path when nothing is there
  mode_t mode = 0600;  ///< permissions of a created FIFO (before the umask)
};

/// open_reader opens the FIFO at `path` for reading. Never blocks: reads wait for a
/// writer to connect and write (a FIFO with no writer yet is not at its end). Errors:
/// ENOENT (missing and !create), invalid_argument (the path is not a FIFO:
/// cause::not_a_fifo), EACCES.
result<pipe::reader> open_reader(std::string_view path, open_options options = {});

/// open_writer opens the FIFO at `path` for writing, waiting until `dl` for a reader:
/// the kernel refuses a non-blocking write-open while no process has the FIFO open for
/// reading (ENXIO) and offers no event for a reader's arrival, so the open is retried
/// at growing intervals (1 ms to 50 ms). Errors: timed_out (no reader came),
/// operation_canceled, ENOENT, invalid_argument (not a FIFO: cause::not_a_fifo), EACCES.
task<result<pipe::writer>> open_writer(std::string path, deadline dl, open_options options = {});

}  // namespace strata::fifo
