// The data of the socket transports (tcp, unix, udp, unix_dgram, seqpacket), and nothing
// else: plain structs that the public classes hold by value, so that a socket stays a
// descriptor plus a few flags, with no allocation and no indirection, and its size is
// known to the code that embeds it. The machinery that drives them (read, write, accept,
// send, receive, close) is private to the library (src/transport/socket_io.hpp and
// packet_io.hpp); the public classes declare every operation they offer themselves.
// Nothing in namespace detail is meant to be used outside the library.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>

#include "strata/runtime/error.hpp"
#include "strata/runtime/pollable_fd.hpp"

namespace strata {

/// accept_stats counts what a listener's accept survived instead of failing.
struct accept_stats {
  std::uint64_t resource_errors = 0;      ///< EMFILE, ENFILE, ENOBUFS, ENOMEM: retried after a back-off
  std::uint64_t dropped_connections = 0;  ///< ECONNABORTED and the like: the next one is taken
  std::error_code last_resource_error{};  ///< the latest of resource_errors
};

namespace detail {

/// stream_socket_state is a connected stream socket (tcp, unix): its descriptor, the
/// sticky error of each direction (a failed direction stays failed) and the accepted
/// peer. Moving leaves `closed` in both directions of the moved-from state.
struct stream_socket_state {
  stream_socket_state() noexcept = default;
  /// stream_socket_state owns `owned`. `drains` sets short_read_drains.
  explicit stream_socket_state(int owned, bool drains = true) noexcept
      : fd(owned), short_read_drains(drains) {}
  stream_socket_state(stream_socket_state&& other) noexcept
      : fd(std::move(other.fd)),
        read_error(std::exchange(other.read_error, errc::closed)),
        write_error(std::exchange(other.write_error, errc::closed)),
        write_shut(other.write_shut),
        short_read_drains(other.short_read_drains),
        peer_family(other.peer_family),
        peer_port(other.peer_port),
        peer_ip(other.peer_ip) {}
  stream_socket_state& operator=(stream_socket_state&& other) noexcept {
    if (this != &other) {
      fd = std::move(other.fd);
      read_error = std::exchange(other.read_error, errc::closed);
      write_error = std::exchange(other.write_error, errc::closed);
      write_shut = other.write_shut;
      short_read_drains = other.short_read_drains;
      peer_family = other.peer_family;
      peer_port = other.peer_port;
      peer_ip = other.peer_ip;
    }
    return *this;
  }

  pollable_fd fd;
  std::error_code read_error{};
  std::error_code write_error{};
  bool write_shut = false;
  /// short_read_drains says whether a read that returns less than asked proves the
  /// receive queue empty (true for TCP). Unix sockets end a read early at bytes that
  /// carried descriptors with more bytes queued behind them, so for them only EAGAIN
  /// proves it.
  bool short_read_drains = true;
  // The accepted peer in 20 bytes (not an `address`: 144 bytes on every connection).
  std::uint8_t peer_family = 0;  ///< 0 none, 4 IPv4, 6 IPv6
  std::uint16_t peer_port = 0;   ///< host order
  std::array<std::uint8_t, 16> peer_ip{};
};

/// listener_socket_state is a listening stream socket: its descriptor, what its accepts
/// survived and the current back-off after running out of descriptors or memory.
struct listener_socket_state {
  pollable_fd fd;
  accept_stats stats{};
  std::chrono::milliseconds backoff{};
};

/// unix_socket_file owns the filesystem entry of a socket this process bound to a path
/// and removes it when reset or destroyed (moving hands the duty over). It remembers the
/// file's device and inode at bind time and removes the path only while it still names
/// that file: another process may have replaced a socket file it found stale. Empty for
/// abstract names.
class unix_socket_file {
 public:
  unix_socket_file() noexcept = default;
  /// claims the socket file just bound at `path` (empty: nothing to own).
  explicit unix_socket_file(std::string path) noexcept;
  unix_socket_file(unix_socket_file&& other) noexcept
      : path_(std::exchange(other.path_, {})), device_(other.device_), inode_(other.inode_) {}
  unix_socket_file& operator=(unix_socket_file&& other) noexcept;
  ~unix_socket_file() { reset(); }
  /// reset removes the file now if it is still ours.
  void reset() noexcept;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  unsigned long long device_ = 0, inode_ = 0;
};

}  // namespace detail
}  // namespace strata
