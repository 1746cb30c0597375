// The machinery of the stream socket transports (tcp, unix, and seqpacket's listener): a
// non-blocking descriptor driven by the event loop, with sticky per-direction errors (a
// failed direction stays failed) and the orderly close of the stream contract, as free
// functions over the state the public classes hold (strata/transport/socket_state.hpp).
// The public classes forward to these; their doc comments carry the contracts. Also the
// descriptor helpers the pipe and shm transports share. Private to src/ (the project's
// tests and benchmarks reach it through strata_internal).
#pragma once

#include <cstddef>
#include <system_error>

#include "strata/core/address.hpp"
#include "strata/core/buffer.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/pollable_fd.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"
#include "strata/transport/socket_state.hpp"

namespace strata::detail {

/// set_nonblocking_cloexec prepares an adopted descriptor for the event loop.
result<void> set_nonblocking_cloexec(int fd) noexcept;

/// local_address_of is where the socket `fd` is bound (getsockname); closed when it is not open.
result<address> local_address_of(const pollable_fd& fd);

// -- connected stream sockets ----------------------------------------------------------------

/// stream_fail_read / stream_fail_write record a sticky error for one direction (the
/// first one stays).
inline void stream_fail_read(stream_socket_state& s, std::error_code ec) noexcept {
  if (!s.read_error) s.read_error = ec;
}
inline void stream_fail_write(stream_socket_state& s, std::error_code ec) noexcept {
  if (!s.write_error) s.write_error = ec;
}

/// The byte_stream operations of core/stream.hpp, over a stream socket's state.
task<result<std::size_t>> stream_read_some(stream_socket_state& s, mutable_buffer buf, deadline dl);
task<result<void>> stream_write(stream_socket_state& s, const_buffers bufs, deadline dl);
/// stream_try_write writes what the socket takes now, without waiting: 0..buf.size()
/// bytes (0 when it has no room). Errors as stream_write's system errors (sticky).
result<std::size_t> stream_try_write(stream_socket_state& s, const_buffer buf);
task<result<void>> stream_shutdown_write(stream_socket_state& s, deadline dl);
task<result<void>> stream_close(stream_socket_state& s, deadline dl);

/// stream_peer_address is the connected peer: the remembered one (see
/// stream_remember_peer), else getpeername().
result<address> stream_peer_address(const stream_socket_state& s);
/// stream_remember_peer keeps `peer` (an IP address; others are ignored) for
/// stream_peer_address, so an accepted connection whose peer reset it before the accept
/// still has a peer address.
void stream_remember_peer(stream_socket_state& s, const address& peer) noexcept;
/// stream_release gives the descriptor to the caller; every later call gets `closed`.
int stream_release(stream_socket_state& s) noexcept;
/// stream_reset closes abruptly (SO_LINGER 0: TCP peers see a reset).
void stream_reset(stream_socket_state& s) noexcept;

// -- listening stream sockets ----------------------------------------------------------------

/// accept_fd waits for a connection and returns its non-blocking descriptor. Running out
/// of descriptors or memory does not fail it: it retries after a back-off that doubles
/// from 5 ms to at most 1 s while the shortage lasts (established connections are not
/// affected), and a connection that failed before it was accepted is skipped; both are
/// counted in `s.stats`. Errors: timed_out (also while backing off), operation_canceled,
/// closed, other system errors. With `peer`, the connection's peer address is stored there.
task<result<int>> accept_fd(listener_socket_state& s, deadline dl, address* peer = nullptr);

/// socket_options tune open_listener.
struct socket_options {
  int backlog = 128;
  bool reuse_address = true;
  bool reuse_port = false;
};

/// open_listener creates, binds and listens on `where`.
result<int> open_listener(const address& where, const socket_options& options);
/// connect_fd connects a non-blocking stream socket to `where` before `dl`.
task<result<int>> connect_fd(address where, deadline dl);

}  // namespace strata::detail
