// The machinery every socket-based transport shares: a non-blocking descriptor driven by
// the event loop, with sticky per-direction errors (a failed direction stays failed) and
// the orderly close of the stream contract. tcp and unix streams are this plus their
// capability row and their own extras; they are not meant to be used through this type.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>

#include "strata/core/address.hpp"
#include "strata/core/buffer.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/pollable_fd.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::detail {

/// set_nonblocking_cloexec prepares an adopted descriptor for the event loop.
result<void> set_nonblocking_cloexec(int fd) noexcept;

/// socket_stream is a connected stream socket; see core/stream.hpp for the contract.
class socket_stream {
 public:
  socket_stream() noexcept = default;
  /// socket_stream owns `fd`. `short_read_drains` says whether a read that returns less
  /// than asked proves the receive queue empty (true for TCP). Unix sockets end a read
  /// early at bytes that carried descriptors with more bytes queued behind them, so for
  /// them only EAGAIN proves it.
  explicit socket_stream(int fd, bool short_read_drains = true) noexcept
      : fd_(fd), short_read_drains_(short_read_drains) {}
  socket_stream(socket_stream&& other) noexcept;
  socket_stream& operator=(socket_stream&& other) noexcept;
  ~socket_stream();

  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  task<result<void>> write(const_buffers bufs, deadline dl);
  task<result<void>> shutdown_write(deadline dl);
  task<result<void>> close(deadline dl);

  result<address> local_address() const;
  /// peer_address is the connected peer. For an accepted IP connection it is the address
  /// accept() reported, so it survives a peer that reset the connection before it was
  /// accepted (getpeername() then has nothing to say).
  result<address> peer_address() const;
  /// remember_peer keeps `peer` (an IP address; others are ignored) for peer_address.
  void remember_peer(const address& peer) noexcept;
  /// native_handle is the descriptor (still owned by this object), or -1.
  int native_handle() const noexcept { return fd_.get(); }
  /// release gives the descriptor to the caller, who must close it.
  int release() noexcept;
  /// reset closes abruptly; TCP peers see a reset (RST).
  void reset() noexcept;
  bool is_open() const noexcept { return fd_.is_open(); }

 protected:
  /// fail_read / fail_write record a sticky error for one direction.
  void fail_read(std::error_code ec) noexcept {
    if (!read_error_) read_error_ = ec;
  }
  void fail_write(std::error_code ec) noexcept {
    if (!write_error_) write_error_ = ec;
  }
  std::error_code read_error() const noexcept { return read_error_; }
  std::error_code write_error() const noexcept { return write_error_; }
  void release_fd() noexcept { fd_.close(); }

  pollable_fd fd_;

 private:
  std::error_code read_error_{};
  std::error_code write_error_{};
  bool write_shut_ = false;
  bool short_read_drains_ = true;
  // The accepted peer in 20 bytes (not an `address`: 144 bytes on every connection).
  std::uint8_t peer_family_ = 0;  // 0 none, 4 IPv4, 6 IPv6
  std::uint16_t peer_port_ = 0;   // host order
  std::array<std::uint8_t, 16> peer_ip_{};
};

/// socket_listener is a listening stream socket.
class socket_listener {
 public:
  socket_listener() noexcept = default;
  explicit socket_listener(int fd) noexcept : fd_(fd) {}
  socket_listener(socket_listener&& other) noexcept;
  socket_listener& operator=(socket_listener&& other) noexcept;
  ~socket_listener();

  /// accept_stats counts what accept_fd survived instead of failing.
  struct accept_stats {
    std::uint64_t resource_errors = 0;      ///< EMFILE, ENFILE, ENOBUFS, ENOMEM: retried after a back-off
    std::uint64_t dropped_connections = 0;  ///< ECONNABORTED and the like: the next one is taken
    std::error_code last_resource_error{};  ///< the latest of resource_errors
  };

  /// accept_fd waits for a connection and returns its non-blocking descriptor. Running
  /// out of descriptors or memory does not fail it: it retries after a back-off that
  /// doubles from 5 ms to at most 1 s while the shortage lasts (established connections
  /// are not affected), and a connection that failed before it was accepted is skipped.
  /// Errors: timed_out (also while backing off), operation_canceled, closed, other
  /// system errors.
  /// With `peer`, the connection's peer address is stored there.
  task<result<int>> accept_fd(deadline dl, address* peer = nullptr);
  /// stats is what accept_fd has survived so far.
  const accept_stats& stats() const noexcept { return stats_; }
  result<address> local_address() const;
  int native_handle() const noexcept { return fd_.get(); }
  void close() noexcept { fd_.close(); }

 protected:
  pollable_fd fd_;

 private:
  accept_stats stats_{};
  std::chrono::milliseconds backoff_{};
};

struct socket_options {
  int backlog = 128;
  bool reuse_address = true;
  bool reuse_port = false;
};

/// open_listener creates, binds and listens on `where`.
result<int> open_listener(const address& where, const socket_options& options);
/// connect_fd connects a non-blocking stream socket to `where` before `dl`.
task<result<int>> connect_fd(address where, deadline dl);

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

}  // namespace strata::detail
