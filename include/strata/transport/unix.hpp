// unix — a reliable, ordered byte stream between processes on one host, with
// descriptor passing (unix(7), SOCK_STREAM). Namespace `uds` because `unix` is a
// predefined macro in GNU C++ modes.
//
// row: requires nothing (bottom layer)
//      provides connection-based stream reliable ordered dup_free ipc p2p any-process
//               duplex fd_passing
// spec: unix:PATH or unix:@ABSTRACT (connect), unix-listen:PATH or unix-listen:@ABSTRACT
#pragma once

#include <sys/types.h>

#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/core/capability.hpp"
#include "strata/core/query.hpp"
#include "strata/core/stream.hpp"
#include "strata/transport/socket_state.hpp"

namespace strata::uds {

/// row is the unix stream socket's capability declaration.
inline constexpr capability_row row{
    .name = "unix",
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
                       .direction = direction::duplex,
                       .fd_passing = true},
    .passed = {},
};

/// max_fds_per_message bounds descriptors passed in one call (the kernel allows 253).
inline constexpr std::size_t max_fds_per_message = 64;

/// credentials of the peer process, as the kernel recorded them at connect time
/// (strata::credentials, answered through strata::query as fact::peer_credentials).
using credentials = strata::credentials;

/// stream is a connected unix stream socket; the contract is core/stream.hpp's byte_stream.
/// Thread-compatible: one task reads and one writes at a time.
class stream {
 public:
  static constexpr properties capabilities = transport_properties(row);

  stream() noexcept = default;
  /// pair returns two connected streams (socketpair), e.g. to hand one to a child.
  static result<std::pair<stream, stream>> pair();
  /// adopt takes ownership of a connected unix stream socket descriptor.
  static result<stream> adopt(int fd);

  /// read_some waits until at least one byte is available and returns 1..buf.size()
  /// bytes (0 only for an empty `buf`). Descriptors sent along with the bytes it reads
  /// are closed by the kernel (see recv_fds). Errors: end_of_stream once the peer
  /// finished (sticky); timed_out / operation_canceled consume nothing (a retry loses no
  /// byte); `closed` after close or release (also for a read waiting when close is
  /// called); other system errors (ECONNRESET, ...) are sticky.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// write writes every byte of `bufs`. timed_out / operation_canceled before any byte
  /// went leave the stream usable; after a partial write they, like every system error
  /// (EPIPE, ECONNRESET), fail the write direction for good (the peer saw an unknown
  /// prefix).
  task<result<void>> write(const_buffers bufs, deadline dl);
  /// try_write_some writes what the socket takes now, without waiting or a coroutine:
  /// 0..buf.size() bytes, 0 when it has no room (write() then waits for the rest). For a
  /// layer above that has bytes ready in a buffer it does not own for long (tls hands
  /// over its records this way, as OpenSSL's socket BIO does). Errors: as write's, and
  /// as there they fail the write direction for good.
  result<std::size_t> try_write_some(const_buffer buf);
  /// shutdown_write half-closes (SHUT_WR): the peer reads end_of_stream after our last
  /// byte; later writes get `closed`. Does not block.
  task<result<void>> shutdown_write(deadline dl);
  /// close shuts our direction down, drops the peer's remaining input until it ends and
  /// releases the socket; when `dl` passes first (timed_out) or the scope is canceled
  /// (operation_canceled) the socket is closed at once instead. Tasks waiting on the
  /// socket get `closed`, as does every later call.
  task<result<void>> close(deadline dl);

  /// send_fds writes `data` (at least one byte) with `fds` attached to its first byte.
  /// The descriptors stay owned by the caller. Errors: as write; invalid_argument when
  /// data is empty or more than max_fds_per_message descriptors are given.
  task<result<void>> send_fds(const_buffer data, std::span<const int> fds, deadline dl);
  /// recv_fds reads like read_some and appends descriptors that arrived with the bytes
  /// to `fds` (close-on-exec, owned by the caller). Descriptors sent alongside bytes
  /// that a plain read_some consumed are closed by the kernel.
  task<result<std::size_t>> recv_fds(mutable_buffer buf, std::vector<int>& fds, deadline dl);

  /// local_address is the name this end is bound to, if it has one.
  result<address> local_address() const;
  /// peer_address is the name of the socket at the other end, if it has one.
  result<address> peer_address() const;
  /// peer_credentials reports the peer's pid, uid and gid (SO_PEERCRED).
  result<credentials> peer_credentials() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// release gives the descriptor to the caller, who must close it; every later call
  /// gets `closed`.
  int release() noexcept;
  /// reset closes at once, without close's orderly end.
  void reset() noexcept;
  bool is_open() const noexcept { return state_.fd.is_open(); }

 private:
  friend task<result<stream>> connect(address, deadline);
  friend class listener;
  explicit stream(int fd) noexcept : state_(fd, false) {}
  // short_read_drains is off: a read ends early at bytes that carried descriptors.
  detail::stream_socket_state state_{-1, false};
};

/// connect opens a connection to a unix socket address before `dl`.
/// Errors: timed_out, operation_canceled, ENOENT, ECONNREFUSED, invalid_argument.
task<result<stream>> connect(address where, deadline dl);
/// connect parses "PATH" or "@ABSTRACT" and connects.
task<result<stream>> connect(std::string_view path, deadline dl);

/// listen_options tune a unix listener.
struct listen_options {
  int backlog = 128;
  /// unlink_stale removes a leftover socket file at PATH before binding, when no listener
  /// answers behind it (a probe connect is refused). A live listener's file is never
  /// replaced: bind then fails with EADDRINUSE, as it does for a file that is not a socket.
  bool unlink_stale = true;
};

/// listener accepts unix stream connections. A listener bound to a path removes the
/// socket file when it is closed.
class listener {
 public:
  listener() noexcept = default;
  listener(listener&& other) noexcept;
  listener& operator=(listener&& other) noexcept;
  ~listener();

  static result<listener> bind(const address& where, listen_options options = {});
  static result<listener> bind(std::string_view path, listen_options options = {});
  /// accept waits for the next connection. Running out of descriptors or memory does
  /// not fail it: it retries after a back-off (see tcp::listener::accept) counted in
  /// stats(). Errors: timed_out, operation_canceled, closed.
  task<result<stream>> accept(deadline dl);
  /// stats is what accept has survived so far.
  const accept_stats& stats() const noexcept { return state_.stats; }
  /// local_address is the bound name.
  result<address> local_address() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// close removes the socket file (if it is still ours) and releases the socket; a
  /// waiting accept gets `closed`.
  void close() noexcept;

 private:
  listener(int fd, detail::unix_socket_file file) noexcept
      : state_{.fd = pollable_fd(fd)}, file_(std::move(file)) {}
  detail::listener_socket_state state_;
  detail::unix_socket_file file_;
};

}  // namespace strata::uds
