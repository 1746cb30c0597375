// mem_stream — an in-memory, one-thread byte stream pair for tests, with fault injection.
//
// The property it adds: a connected, reliable, ordered byte stream whose timing and
// failures the test controls (chunked reads and writes, back-pressure, failure of the
// Nth operation), so a protocol layer can be driven through every interleaving without
// sockets, sleeps or flakiness.
//
// row: requires nothing (bottom layer)
//      provides connection-based stream reliable ordered dup_free inproc p2p duplex
//
// Both ends live on one thread (the thread that runs the event loop); waits go through
// the loop's waiters, so deadlines and scope cancellation behave as for real sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/task.hpp"

namespace strata::test {

/// mem_row is mem_stream's capability declaration.
inline constexpr capability_row mem_row{
    .name = "mem",
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

/// mem_options shape one endpoint's behaviour; every field describes what THIS endpoint does.
struct mem_options {
  /// max_read_chunk bounds the bytes one read_some returns (1 = byte-at-a-time reads).
  std::size_t max_read_chunk = SIZE_MAX;
  /// max_write_chunk bounds the bytes a write hands over before it lets other tasks run
  /// (the reader then sees the data in pieces of at most this size).
  std::size_t max_write_chunk = SIZE_MAX;
  /// buffer_limit bounds the bytes this endpoint has written and the peer has not read
  /// yet; a write waits for the peer to read when it is reached (back-pressure). Min 1.
  std::size_t buffer_limit = 64 * 1024;
  /// fail_at_operation makes the Nth read_some/write call of this endpoint (0-based,
  /// every call on an open endpoint counts) fail with errc::broken. The direction it hit
  /// stays failed at both ends: a failed write makes the peer read broken after the bytes
  /// written before it; a failed read makes the peer's writes fail with broken. -1: never.
  int fail_at_operation = -1;
};

struct mem_state;

/// mem_stream is one end of an in-memory connection; see core/stream.hpp for the contract.
///
/// Differences from a socket, by design: close() never waits (there is no kernel that
/// could answer unread data with a reset), so it returns at once; the peer then reads the
/// bytes already written followed by end_of_stream, and the peer's writes fail with
/// broken. Destroying an open endpoint is close(). Move-only; a moved-from endpoint
/// answers every call with errc::closed. Not thread-safe: both ends belong to one thread.
class mem_stream {
 public:
  static constexpr capability_row row = mem_row;
  static constexpr properties capabilities = transport_properties(mem_row);

  /// pair returns two connected ends: what the first writes the second reads, and back.
  static std::pair<mem_stream, mem_stream> pair(mem_options a = {}, mem_options b = {});

  mem_stream() noexcept = default;
  mem_stream(mem_stream&& other) noexcept;
  mem_stream& operator=(mem_stream&& other) noexcept;
  mem_stream(const mem_stream&) = delete;
  mem_stream& operator=(const mem_stream&) = delete;
  ~mem_stream();

  /// read_some waits for at least one byte and returns 1..min(buf.size(), max_read_chunk)
  /// bytes (0 for an empty buf). Errors: end_of_stream (sticky), broken (peer reset or an
  /// injected failure; sticky), timed_out / operation_canceled (nothing consumed), closed
  /// (this end was closed, also while waiting).
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// write hands every byte to the peer, waiting while the peer's buffer is full.
  /// Errors: broken (peer closed or reset, injected failure; sticky), closed, timed_out /
  /// operation_canceled (sticky when part of the data was already handed over).
  task<result<void>> write(const_buffers bufs, deadline dl);
  /// shutdown_write ends this direction: the peer reads end_of_stream after the last
  /// byte. Later writes fail with closed. Never blocks. Errors: closed.
  task<result<void>> shutdown_write(deadline dl);
  /// close ends both directions and drops unread input at once (see the class comment).
  /// Tasks waiting on this end resume with closed. Errors: closed (already closed).
  task<result<void>> close(deadline dl);
  /// reset closes abortively: the peer's reads and writes fail with broken at once and
  /// the bytes still buffered in both directions are dropped.
  void reset() noexcept;

  bool is_open() const noexcept;
  /// operations is how many read_some/write calls this end has counted so far.
  std::size_t operations() const noexcept;
  /// buffered is how many bytes wait for this end to read them.
  std::size_t buffered() const noexcept;

  /// injected_failures counts, for the calling thread, every failure injected so far by
  /// fail_at_operation in any mem_stream (run_until_passes compares it across runs).
  static int injected_failures() noexcept;

 private:
  mem_stream(std::shared_ptr<mem_state> state, int side) noexcept : state_(std::move(state)), side_(side) {}

  std::shared_ptr<mem_state> state_;
  int side_ = 0;
};

static_assert(byte_stream<mem_stream>);

/// looped_options tune run_until_passes.
struct looped_options {
  int max_runs = 1000;                            ///< give up (and fail) after this many runs
  std::chrono::milliseconds run_timeout{5000};    ///< one run that takes longer has hung
  bool require_error_on_injected_failure = true;  ///< a run that swallowed its failure fails
};

/// looped_result tells how the loop went.
struct looped_result {
  int runs = 0;         ///< scenario runs, the last one included
  int failed_runs = 0;  ///< runs in which an injected failure fired
  bool passed = false;  ///< a run completed without any injected failure
};

/// run_until_passes runs `scenario(fail_at)` for fail_at = 0, 1, 2, ..., each in its own
/// strata::run (so call it from a test body, not from inside run()). The scenario builds
/// its mem_stream pairs with `.fail_at_operation = fail_at` on the ends it wants to hurt
/// and returns its overall outcome. A run in which an injected failure fired must finish
/// within run_timeout and report an error (any error: layers may translate broken); the
/// first run without an injected failure must succeed and ends the loop. Violations are
/// reported through GoogleTest (ADD_FAILURE) and stop the loop. In the spirit of Beast's
/// test::fail_count.
looped_result run_until_passes(const std::function<task<result<void>>(int fail_at)>& scenario,
                               looped_options options = {});

}  // namespace strata::test
