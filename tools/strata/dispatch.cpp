// The command table of the `strata` tool, the global help and the dispatch from an
// argument list to a command (run_cli; main.cpp only hands it argv, the argument
// fuzzer hands it its inputs).
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"

namespace strata::cli {
namespace {

constexpr std::string_view main_help = R"(usage: strata COMMAND [options] [ARGS]

Composable network protocols from the command line. A SPEC is a pipeline written
bottom layer first, e.g. 'tcp:127.0.0.1:7000 | prefix(4)' or 'unix-listen:@app | crlf';
quote it, as '|' and spaces are shell syntax.

commands:
)";

constexpr std::string_view main_help_tail = R"(
'strata COMMAND --help' describes a command and its options.

exit status:
  0    success
  1    runtime failure: connection refused or reset, timeout, cannot bind...
  2    usage error, or a SPEC the pipeline checker refused (with a caret under the
       offending layer and the property that is missing)
  3    strata demo: a checksum did not match
  22   strata get: the response's status was 400 or more (curl -f's code)
  129  stopped by SIGHUP, 130 by SIGINT, 143 by SIGTERM (128 + signal number)
)";

const command table[] = {
    {"connect", "dial a connector SPEC and relay stdin/stdout over it (like nc)", connect_help, connect_main},
    {"listen", "accept a connection on a listener SPEC and relay stdin/stdout (like nc -l), or serve files",
     listen_help, listen_main},
    {"bridge", "join two pipelines end to end, with back-pressure (like socat)", bridge_help, bridge_main},
    {"get", "fetch a URL over HTTP/1.1, over any pipeline (like curl)", get_help, get_main},
    {"caps", "print the capability table of the registered protocols", caps_help, caps_main},
    {"demo", "run servers and clients over several pipelines in-process and verify checksums", demo_help,
     demo_main},
};

void print_main_help() {
  std::fwrite(main_help.data(), 1, main_help.size(), stdout);
  for (const auto& c : table) {
    std::printf("  %-9.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(),
                static_cast<int>(c.summary.size()), c.summary.data());
  }
  std::fwrite(main_help_tail.data(), 1, main_help_tail.size(), stdout);
}

}  // namespace

std::span<const command> commands() { return table; }

int run_cli(std::vector<std::string_view> list) {
  if (list.empty()) {
    print_main_help();
    return exit_usage;
  }
  std::string_view name = list.front();
  if (name == "-h" || name == "--help" || name == "help") {
    if (name == "help" && list.size() > 1) {
      name = list[1];
    } else {
      print_main_help();
      return exit_ok;
    }
    list = {name, "--help"};
  }
  if (name == "--version") {
    std::printf("strata 0.1.0\n");
    return exit_ok;
  }
  for (const auto& c : commands()) {
    if (c.name != name) continue;
    for (std::size_t i = 1; i < list.size(); ++i) {
      if (list[i] == "-h" || list[i] == "--help") {
        std::fwrite(c.help.data(), 1, c.help.size(), stdout);
        return exit_ok;
      }
    }
    args a(std::vector<std::string_view>(list.begin() + 1, list.end()));
    signal_guard signals;
    return c.main(a, signals);
  }
  return usage_error("", "unknown command '" + std::string(name) + "'");
}

}  // namespace strata::cli
