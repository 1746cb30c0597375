// strata: the command-line tool. Connects, listens and bridges pipelines written as
// spec strings, prints the capability table and runs a self-checking demo. The commands
// and their dispatch live in dispatch.cpp.
#include <string_view>
#include <vector>

#include "commands.hpp"

int main(int argc, char** argv) {
  return strata::cli::run_cli(std::vector<std::string_view>(argv + 1, argv + argc));
}
