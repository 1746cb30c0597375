// Bridging: two connections joined end to end, both directions, with back-pressure.
// Used by `strata bridge` and by the in-process bridge of `strata demo`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "common.hpp"
#include "strata/core/any.hpp"

namespace strata::cli {

/// bridge_options tune one bridge. The labels are views: their text must outlive the
/// bridge (a bridge of `-k` holds no copy of them, so an idle bridge stays small).
struct bridge_options {
  std::optional<duration> idle;        ///< fail with timed_out after this long without data
  std::string_view label_a = "SPEC1";  ///< names side a in error messages
  std::string_view label_b = "SPEC2";  ///< names side b in error messages
  std::string_view peer_a;             ///< if set, side a is "<label_a> connection from <peer_a>"
};

/// bridge_result is what a bridge moved and, when it failed, where and why.
struct bridge_result {
  std::uint64_t bytes_ab = 0;  ///< payload bytes moved from a to b
  std::uint64_t bytes_ba = 0;
  std::uint64_t messages_ab = 0;  ///< messages moved (message stacks only)
  std::uint64_t messages_ba = 0;
  std::string what;  ///< the failed operation, e.g. "SPEC2: write"
  std::error_code error;
};

/// units_match says whether two tops can be bridged (same unit); when not, fills
/// `message` with which side gives what and the adapters that would convert.
bool units_match(const pipeline& a, const pipeline& b, std::string& message);

/// bridge copies a -> b and b -> a until both directions have ended, then closes both.
/// Each direction holds at most one buffer: it reads from its source only after the
/// previous chunk (or message) was completely written to the other side, so a slow side
/// slows the other down and nothing is buffered without bound. A direction that has
/// waited 50 ms for data holds no chunk (only a small read buffer in its frame). The end of one side's input
/// shuts the other side's write direction down (half-close); the bridge ends when both
/// directions have ended. Any failure (reset, protocol error, message too large, idle)
/// stops both directions and closes both connections. Cancellation of the caller's
/// scope stops the bridge too (result without error).
/// Both connections must have the same unit (see units_match); a mismatch fails with
/// invalid_argument before anything is read.
task<bridge_result> bridge(any_connection& a, any_connection& b, const bridge_options& options);

}  // namespace strata::cli
