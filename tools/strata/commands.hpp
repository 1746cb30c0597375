// The commands of the `strata` tool. Each has a help text (printed by `--help`, and the
// truth about its options) and an entry point that returns the process exit code.
#pragma once

#include <span>
#include <string_view>

#include "common.hpp"

namespace strata::cli {

/// command is one row of the command table that main() dispatches on.
struct command {
  std::string_view name;
  std::string_view summary;  ///< one line for `strata --help`
  std::string_view help;     ///< the full `strata NAME --help` text
  int (*main)(args& a, signal_guard& signals);
};

/// commands lists every command in the order `strata --help` prints them.
std::span<const command> commands();

int connect_main(args& a, signal_guard& signals);
int listen_main(args& a, signal_guard& signals);
int bridge_main(args& a, signal_guard& signals);
int caps_main(args& a, signal_guard& signals);
int demo_main(args& a, signal_guard& signals);
int get_main(args& a, signal_guard& signals);

extern const std::string_view connect_help;
extern const std::string_view listen_help;
extern const std::string_view bridge_help;
extern const std::string_view caps_help;
extern const std::string_view demo_help;
extern const std::string_view get_help;

}  // namespace strata::cli
