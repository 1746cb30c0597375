// The stdin/stdout relay behind `strata connect` and `strata listen`: the bytes (or
// lines, on a message stack) of stdin go to the connection, what the connection
// delivers goes to stdout.
#pragma once

#include <optional>
#include <string>

#include "common.hpp"
#include "strata/core/any.hpp"

namespace strata::cli {

/// stdin_source reads stdin for one relay after another (`listen -k`): bytes read but
/// not yet handed to a connection stay here for the next one, and the end of stdin is
/// remembered.
struct stdin_source {
  byte_buffer pending;  ///< read from stdin, not yet sent
  bool ended = false;   ///< stdin reached its end (or failed)
};

/// relay_options tune one relay.
struct relay_options {
  std::optional<duration> idle;  ///< end with timed_out after this long without data
  /// linger: once the peer has finished sending, stdin is still relayed until it ends
  /// or until it has delivered nothing for this long.
  duration linger = std::chrono::milliseconds(500);
  std::string label;  ///< names the connection in error messages
};

/// relay runs both directions between `stdio` and `conn`. stdin's end shuts the
/// connection's write side down; the relay keeps reading until the peer has finished
/// sending (everything it sent is on stdout by then). If stdin is still open then, it
/// is relayed until it ends or stays quiet for `options.linger` (like socat's -t);
/// should the peer have closed entirely, the rest of stdin is dropped without error.
/// On a message stack each stdin line (without '\n') is one message and each received
/// message is written with a '\n' after it. Closes `conn` before returning.
/// Returns exit_ok or exit_failure (after printing the error).
task<int> relay(any_connection& conn, stdio_guard& stdio, stdin_source& in, const relay_options& options);

}  // namespace strata::cli
