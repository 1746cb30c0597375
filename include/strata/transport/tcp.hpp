// tcp — a reliable, ordered byte stream between two hosts (RFC 9293).
//
// row: requires nothing (bottom layer)
//      provides connection-based stream reliable ordered dup_free congestion_controlled
//               net p2p any-process duplex
// spec: tcp:HOST:PORT (connect), tcp-listen:HOST:PORT (listen; port 0 = ephemeral)
#pragma once

#include <string_view>

#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/transport/socket_state.hpp"

namespace strata::tcp {

/// row is tcp's capability declaration.
inline constexpr capability_row row{
    .name = "tcp",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::stream,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::net,
                       .topology = topology::p2p,
                       .sharing = sharing::any_process,
                       .direction = direction::duplex,
                       .congestion_controlled = true},
    .passed = {},
};

/// connect_options tune a new connection.
struct connect_options {
  bool no_delay = true;  ///< TCP_NODELAY: send small writes at once (latency over batching)
};

/// listen_options tune a listener.
struct listen_options {
  int backlog = 128;
  bool reuse_port = false;  ///< SO_REUSEPORT: several listeners (one per thread) share a port
  bool no_delay = true;     ///< TCP_NODELAY on accepted connections
};

/// stream is a connected TCP socket; the contract is core/stream.hpp's byte_stream.
/// Thread-compatible: one task reads and one writes at a time.
class stream {
 public:
  static constexpr properties capabilities = transport_properties(row);

  stream() noexcept = default;
  /// adopt takes ownership of a connected TCP socket descriptor (made non-blocking).
  static result<stream> adopt(int fd);

  /// read_some waits until at least one byte is available and returns 1..buf.size()
  /// bytes (0 only for an empty `buf`). Errors: end_of_stream once the peer finished
  /// (sticky); timed_out / operation_canceled consume nothing (a retry loses no byte);
  /// `closed` after close or release (also for a read waiting when close is called);
  /// other system errors (ECONNRESET, ...) are sticky.
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
  /// close shuts our direction down, drops the peer's remaining input until it ends, so
  /// the kernel does not answer unread data with a reset that could destroy our last
  /// bytes in flight, and releases the socket. When `dl` passes first (timed_out) or the
  /// scope is canceled (operation_canceled) the connection is reset instead. Tasks
  /// waiting on the socket get `closed`, as does every later call.
  task<result<void>> close(deadline dl);

  /// local_address is where this end is bound (the ephemeral port filled in).
  result<address> local_address() const;
  /// peer_address is the connected peer. For an accepted connection it is the address
  /// accept() reported, so it survives a peer that reset the connection before it was
  /// accepted (getpeername() then has nothing to say).
  result<address> peer_address() const;
  /// native_handle is the descriptor (still owned by this object: setsockopt is fine), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// release gives the descriptor to the caller, who must close it; every later call
  /// gets `closed`.
  int release() noexcept;
  /// reset closes abruptly: the peer sees a reset (RST).
  void reset() noexcept;
  bool is_open() const noexcept { return state_.fd.is_open(); }
  /// set_no_delay switches Nagle's algorithm off (true) or on.
  result<void> set_no_delay(bool on);

 private:
  friend task<result<stream>> connect(address, deadline, connect_options);
  friend class listener;
  explicit stream(int fd) noexcept : state_(fd) {}
  detail::stream_socket_state state_;
};

/// connect opens a connection to `where` (IPv4 or IPv6) before `dl`.
/// Errors: timed_out, operation_canceled, ECONNREFUSED and other system errors.
task<result<stream>> connect(address where, deadline dl, connect_options options = {});
/// connect parses "HOST:PORT" (numeric or localhost) and connects.
/// Errors: invalid_argument for a malformed address, then as above.
task<result<stream>> connect(std::string_view host_port, deadline dl, connect_options options = {});

/// listener accepts TCP connections.
class listener {
 public:
  listener() noexcept = default;
  /// bind listens on `where`; port 0 picks an ephemeral port (see local_address()).
  static result<listener> bind(const address& where, listen_options options = {});
  static result<listener> bind(std::string_view host_port, listen_options options = {});
  /// adopt takes ownership of a listening socket descriptor.
  static result<listener> adopt(int fd);
  /// accept waits for the next connection. Running out of descriptors or memory does
  /// not fail it: it retries after a back-off that doubles from 5 ms to at most 1 s while
  /// the shortage lasts (established connections are not affected), and a connection
  /// that failed before it was accepted is skipped; both are counted in stats().
  /// Errors: timed_out (also while backing off), operation_canceled, closed.
  task<result<stream>> accept(deadline dl);
  /// stats is what accept has survived so far.
  const accept_stats& stats() const noexcept { return state_.stats; }
  /// local_address is where the listener is bound (the ephemeral port filled in).
  result<address> local_address() const;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return state_.fd.get(); }
  /// close releases the socket; a waiting accept gets `closed`.
  void close() noexcept { state_.fd.close(); }

 private:
  explicit listener(int fd, bool no_delay) noexcept : state_{.fd = pollable_fd(fd)}, no_delay_(no_delay) {}
  detail::listener_socket_state state_;
  bool no_delay_ = true;
};

}  // namespace strata::tcp
