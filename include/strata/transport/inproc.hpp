// inproc — reliable, ordered byte streams and message pairs inside one process, without
// the kernel: for tests, for joining components of one program and for bridging.
//
// The property it adds: a connected pair whose two ends may run on one thread or on two
// threads of the process (each end belongs to one thread at a time). Each direction is a
// bounded strata::channel of owned chunks, so writers wait when the reader falls behind
// (back-pressure), a canceled or timed-out read loses nothing, and a wake-up that
// crosses threads goes through the other thread's event loop (eventfd). Bytes are copied
// once into the channel and once out of it.
//
// row: requires nothing (bottom layer)
//      stream_row   connection-based stream reliable ordered dup_free inproc p2p duplex
//      message_row  connection-based message reliable ordered dup_free inproc p2p duplex
//                   max_message (message_options::max_message, 1 MiB by default)
// spec: inproc:NAME (connect), inproc-listen:NAME (listen) — a byte stream through a
//       process-wide table of names (guarded by a mutex)
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"

namespace strata::inproc {

/// stream_row is the inproc byte stream's capability declaration.
inline constexpr capability_row stream_row{
    .name = "inproc",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::stream,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::inproc,
                       .topology = topology::p2p,
                       .direction = direction::duplex},
    .passed = {},
};

/// default_max_message is the largest message of a message pair unless chosen otherwise.
inline constexpr std::size_t default_max_message = std::size_t{1} << 20;

/// message_row is the inproc message pair's capability declaration.
inline constexpr capability_row message_row{
    .name = "inproc-message",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::message,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::inproc,
                       .topology = topology::p2p,
                       .direction = direction::duplex,
                       .max_message = default_max_message},
    .passed = {},
};

/// stream_options tune a stream pair.
struct stream_options {
  /// buffer_limit bounds the bytes one direction holds that the reader has not read
  /// (at least 1): a writer waits when it is reached. Writes are cut into chunks of at
  /// most min(buffer_limit, 64 KiB) and a direction holds buffer_limit / chunk chunks
  /// (at least 1), so many tiny writes reach the limit in chunks before bytes.
  std::size_t buffer_limit = 256 * 1024;
};

/// message_options tune a message pair.
struct message_options {
  std::size_t capacity = 64;                      ///< messages one direction holds (at least 1)
  std::size_t max_message = default_max_message;  ///< larger sends fail with message_too_large
};

namespace detail {
struct stream_state;
struct message_state;
}  // namespace detail

/// stream is one end of an inproc byte stream; the contract is core/stream.hpp's
/// byte_stream. close() never waits (no kernel could answer unread data with a reset):
/// the peer reads the bytes already written, then end_of_stream, and its writes fail with
/// broken. Destroying an open end is close(). Move-only; a moved-from end answers
/// closed. One thread at a time per end; the two ends may live on different threads.
class stream {
 public:
  static constexpr properties capabilities = transport_properties(stream_row);

  stream() noexcept = default;
  stream(stream&& other) noexcept;
  stream& operator=(stream&& other) noexcept;
  ~stream();

  /// read_some waits for at least one byte. Errors: end_of_stream (the peer shut down
  /// or closed; sticky), timed_out / operation_canceled (nothing consumed), closed.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// write hands every byte to the peer, waiting while the direction is full.
  /// Errors: broken (the peer closed; sticky), closed (after shutdown_write or close),
  /// timed_out / operation_canceled (sticky once part of the data was handed over).
  task<result<void>> write(const_buffers bufs, deadline dl);
  /// shutdown_write ends this direction: the peer reads end_of_stream after the last
  /// byte. Never blocks. Errors: closed.
  task<result<void>> shutdown_write(deadline dl);
  /// close ends both directions at once and drops unread input; tasks waiting on this
  /// end resume with closed. Errors: closed (already closed).
  task<result<void>> close(deadline dl);

  bool is_open() const noexcept { return state_ != nullptr && !closed_; }

 private:
  friend std::pair<stream, stream> stream_pair(stream_options);
  stream(std::shared_ptr<detail::stream_state> state, int side) noexcept
      : state_(std::move(state)), side_(side) {}
  void close_now() noexcept;

  std::shared_ptr<detail::stream_state> state_;
  int side_ = 0;
  bool closed_ = false;
  bool write_shut_ = false;
  std::error_code read_error_{};
  std::error_code write_error_{};
  std::vector<std::byte> pending_;  // the unread rest of the last chunk received
  std::size_t pending_offset_ = 0;
};

static_assert(byte_stream<stream>);

/// message is one end of an inproc message pair; the contract is core/stream.hpp's
/// message_socket. recv into a buffer too small for the next message fails with
/// message_too_large and keeps the message for the next recv. shutdown_write ends this
/// direction: the peer's recv fails with end_of_stream once it has received the rest.
/// close and threads as for stream.
class message {
 public:
  static constexpr properties capabilities = transport_properties(message_row);

  message() noexcept = default;
  message(message&& other) noexcept;
  message& operator=(message&& other) noexcept;
  ~message();

  /// send hands the gather list to the peer as one message, waiting while the direction
  /// is full. Errors: message_too_large (over max_message; nothing sent), broken (the
  /// peer closed), closed, timed_out / operation_canceled (nothing sent).
  task<result<void>> send(const_buffers msg, deadline dl);
  /// recv receives one whole message. Errors: message_too_large (kept), end_of_stream
  /// (sticky), timed_out / operation_canceled (nothing consumed), closed.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  task<result<void>> shutdown_write(deadline dl);
  task<result<void>> close(deadline dl);

  /// runtime_capabilities is message_row's with this pair's max_message.
  properties runtime_capabilities() const noexcept;
  bool is_open() const noexcept { return state_ != nullptr && !closed_; }

 private:
  friend std::pair<message, message> message_pair(message_options);
  message(std::shared_ptr<detail::message_state> state, int side) noexcept
      : state_(std::move(state)), side_(side) {}
  void close_now() noexcept;

  std::shared_ptr<detail::message_state> state_;
  int side_ = 0;
  bool closed_ = false;
  bool write_shut_ = false;
  std::error_code read_error_{};
  std::optional<std::vector<std::byte>> pending_;  // received but too large for the last buf
};

static_assert(message_socket<message>);

/// stream_pair returns two connected stream ends: what the first writes the second reads.
std::pair<stream, stream> stream_pair(stream_options options = {});
/// message_pair returns two connected message ends.
std::pair<message, message> message_pair(message_options options = {});

// -- named rendezvous ---------------------------------------------------------------------

/// listen_options tune a named listener.
struct listen_options {
  std::size_t backlog = 16;    ///< connections waiting for accept (at least 1)
  stream_options stream = {};  ///< options of every pair it makes
};

namespace detail {
struct listener_state;
}  // namespace detail

/// listener accepts inproc streams connected by name, from any thread of the process.
/// The name is taken from bind() until close() (or destruction); connections already
/// made live on. Move-only.
class listener {
 public:
  listener() noexcept = default;
  listener(listener&& other) noexcept = default;
  listener& operator=(listener&& other) noexcept;
  ~listener();

  /// bind takes `name` in the process-wide table. Errors: invalid_argument (empty
  /// name), EADDRINUSE (another listener has it).
  static result<listener> bind(std::string_view name, listen_options options = {});
  /// accept waits for the next connection. Errors: timed_out, operation_canceled, closed.
  task<result<stream>> accept(deadline dl);
  /// local_address: inproc names are no socket addresses; not_supported (see name()).
  result<address> local_address() const { return errc::not_supported; }
  const std::string& name() const noexcept;
  /// close frees the name, wakes a pending accept (closed) and drops connections not yet
  /// accepted (their connectors read end_of_stream).
  void close() noexcept;

 private:
  explicit listener(std::shared_ptr<detail::listener_state> state) noexcept : state_(std::move(state)) {}
  std::shared_ptr<detail::listener_state> state_;
};

/// connect makes a stream pair with the listener bound to `name`, queues one end for its
/// accept (waiting until `dl` while the backlog is full) and returns the other.
/// Errors: ECONNREFUSED (no listener has the name, or it closed), timed_out,
/// operation_canceled.
task<result<stream>> connect(std::string name, deadline dl);

}  // namespace strata::inproc
