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
#include "strata/transport/socket.hpp"

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
class stream : public detail::socket_stream {
 public:
  static constexpr properties capabilities = transport_properties(row);

  stream() noexcept : detail::socket_stream(-1, false) {}
  /// pair returns two connected streams (socketpair), e.g. to hand one to a child.
  static result<std::pair<stream, stream>> pair();
  /// adopt takes ownership of a connected unix stream socket descriptor.
  static result<stream> adopt(int fd);

  /// send_fds writes `data` (at least one byte) with `fds` attached to its first byte.
  /// The descriptors stay owned by the caller. Errors: as write; invalid_argument when
  /// data is empty or more than max_fds_per_message descriptors are given.
  task<result<void>> send_fds(const_buffer data, std::span<const int> fds, deadline dl);
  /// recv_fds reads like read_some and appends descriptors that arrived with the bytes
  /// to `fds` (close-on-exec, owned by the caller). Descriptors sent alongside bytes
  /// that a plain read_some consumed are closed by the kernel.
  task<result<std::size_t>> recv_fds(mutable_buffer buf, std::vector<int>& fds, deadline dl);
  /// peer_credentials reports the peer's pid, uid and gid (SO_PEERCRED).
  result<credentials> peer_credentials() const;

 private:
  friend task<result<stream>> connect(address, deadline);
  friend class listener;
  explicit stream(int fd) noexcept : detail::socket_stream(fd, false) {}
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
class listener : public detail::socket_listener {
 public:
  listener() noexcept = default;
  listener(listener&& other) noexcept;
  listener& operator=(listener&& other) noexcept;
  ~listener();

  static result<listener> bind(const address& where, listen_options options = {});
  static result<listener> bind(std::string_view path, listen_options options = {});
  /// accept waits for the next connection. Errors: timed_out, operation_canceled, closed.
  task<result<stream>> accept(deadline dl);
  void close() noexcept;

 private:
  listener(int fd, detail::unix_socket_file file) noexcept
      : detail::socket_listener(fd), file_(std::move(file)) {}
  detail::unix_socket_file file_;
};

}  // namespace strata::uds
