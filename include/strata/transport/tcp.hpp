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
#include "strata/transport/socket.hpp"

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
class stream : public detail::socket_stream {
 public:
  static constexpr properties capabilities = transport_properties(row);

  stream() noexcept = default;
  /// adopt takes ownership of a connected TCP socket descriptor (made non-blocking).
  static result<stream> adopt(int fd);
  /// set_no_delay switches Nagle's algorithm off (true) or on.
  result<void> set_no_delay(bool on);

 private:
  friend task<result<stream>> connect(address, deadline, connect_options);
  friend class listener;
  explicit stream(int fd) noexcept : detail::socket_stream(fd) {}
};

/// connect opens a connection to `where` (IPv4 or IPv6) before `dl`.
/// Errors: timed_out, operation_canceled, ECONNREFUSED and other system errors.
task<result<stream>> connect(address where, deadline dl, connect_options options = {});
/// connect parses "HOST:PORT" (numeric or localhost) and connects.
/// Errors: invalid_argument for a malformed address, then as above.
task<result<stream>> connect(std::string_view host_port, deadline dl, connect_options options = {});

/// listener accepts TCP connections.
class listener : public detail::socket_listener {
 public:
  listener() noexcept = default;
  /// bind listens on `where`; port 0 picks an ephemeral port (see local_address()).
  static result<listener> bind(const address& where, listen_options options = {});
  static result<listener> bind(std::string_view host_port, listen_options options = {});
  /// adopt takes ownership of a listening socket descriptor.
  static result<listener> adopt(int fd);
  /// accept waits for the next connection. Errors: timed_out, operation_canceled, closed.
  task<result<stream>> accept(deadline dl);

 private:
  explicit listener(int fd, bool no_delay) noexcept : detail::socket_listener(fd), no_delay_(no_delay) {}
  bool no_delay_ = true;
};

}  // namespace strata::tcp
