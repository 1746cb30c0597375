// bridge — two connections joined end to end: what one delivers is written to the other,
// both ways, with back-pressure, half-close carried across and a clean shutdown.
//
// The seed's "IP/IPC conversion" at its smallest: `tcp-listen | ...` on one side, `unix:`
// or `shm:` on the other. Any two connections of the same unit can be joined (two byte
// streams, or two message sockets: each message is forwarded whole). Between two bare
// kernel descriptors (stream sockets, pipes and FIFOs with no user-space layer above
// them: fact::native_handle answers) the bytes move with splice(2) through a pipe of the
// bridge's own, so they never enter the process.
//
// `strata bridge` (tools/strata) and the gateway (pipeline/gateway.hpp) are built on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "strata/core/any.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// bridge_options tune one bridge. The labels are views: their text must outlive the
/// bridge (a server with many bridges then keeps one copy, and an idle bridge stays small).
struct bridge_options {
  /// idle: the bridge fails with timed_out when no data moved either way for this long.
  std::optional<deadline::clock::duration> idle;
  std::string_view label_a = "a";  ///< names side a in bridge_result::what
  std::string_view label_b = "b";  ///< names side b in bridge_result::what
  std::string_view peer_a;         ///< if set, side a is "<label_a> connection from <peer_a>"
  /// splice: move the bytes with splice(2) where both ends of a direction are bare kernel
  /// descriptors (see the file comment); false always copies through user space.
  bool splice = true;
  /// reset_on_failure: when the bridge fails (an error on either side, idle) or is
  /// canceled, a TCP side is reset (its peer reads ECONNRESET) instead of closed in order,
  /// so a peer never mistakes a cut-off transfer for a complete one; every side is closed
  /// with a deadline that has passed (a layer that then resets, as the stream contract's
  /// timed-out close does, resets too).
  bool reset_on_failure = false;
  /// close_grace bounds the orderly close of both sides after a normal end.
  deadline::clock::duration close_grace = std::chrono::seconds(2);
};

/// bridge_result is what a bridge moved and, when it failed, where and why.
struct bridge_result {
  std::uint64_t bytes_ab = 0;     ///< payload bytes moved from a to b
  std::uint64_t bytes_ba = 0;     ///< payload bytes moved from b to a
  std::uint64_t messages_ab = 0;  ///< messages moved (message sockets only)
  std::uint64_t messages_ba = 0;
  std::uint64_t spliced = 0;  ///< of bytes_ab + bytes_ba, those moved by splice(2)
  std::string what;           ///< the failed operation: "<label>: write", "no data for 5s"
  std::error_code error;      ///< the first failure; empty after a normal end
  bool idle_expired = false;  ///< the failure is options.idle's
  bool canceled = false;      ///< the caller's scope stopped the bridge (no error)
};

/// bridge copies a -> b and b -> a until both directions have ended, then closes both
/// connections (also when it fails or is canceled). Blocks the calling task until then.
///
/// Back-pressure: each direction holds at most one buffer (128 KiB for streams, one
/// message for message sockets; with splice, a pipe of up to 1 MiB inside the kernel) and reads
/// its source again only after the previous bytes were completely written to the other
/// side, so a slow side slows the other and memory stays bounded. A direction that has
/// waited 50 ms for data gives its buffer back (an idle bridge costs a few hundred bytes).
///
/// Half-close: the end of one side's input (end_of_stream; not_supported from a simplex
/// side that never sends) shuts the other side's write direction down; the bridge ends
/// when both directions have ended. Any failure (reset, protocol error, message too
/// large, `idle`) stops both directions and closes both sides (resetting TCP sides with
/// `reset_on_failure`); the result names the first one. Cancellation of the caller's
/// scope stops the bridge too: the result has no error.
///
/// Both connections must have the same unit: a mismatch gives invalid_argument before
/// anything is read (both are still closed). Messages larger than a side's max_message
/// (64 MiB when it declares none) fail with message_too_large.
task<bridge_result> bridge(any_connection& a, any_connection& b, const bridge_options& options);

/// splice_handle is the descriptor a stream's bytes may be spliced from and to: the
/// stream's fact::native_handle when it is a stream socket, a pipe or a FIFO; nullopt
/// for anything else (a layer above the descriptor, a datagram socket, a regular file).
std::optional<int> splice_handle(const any_stream& s);

/// reset_tcp resets `c` at once when it is a bare TCP connection (SO_LINGER 0 and a
/// disconnect: the peer reads ECONNRESET, without the FIN an orderly close sends first);
/// does nothing for anything else. The connection still needs its close().
void reset_tcp(any_connection& c);

}  // namespace strata
