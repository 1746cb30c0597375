// Fuzz target for the `strata` tool's command line: the input is split into argv entries
// at NUL bytes (the first entry is the command name) and handed to run_cli in parse-only
// mode, so every command parses its options, checks its specs and stops where it would
// bind, connect or touch stdin, stdout or signals.
//
// Invariants checked (abort on violation, so libFuzzer and the replayer report it):
// - no crash and no read past the argument list (ASan, UBSan);
// - the exit code is 0 (parsed) or 2 (usage error; caps prints and exits 0 too);
// - a usage error is reported on stderr as "strata: ..." and names the option that
//   lacks its value (never "COMMAND:  needs a value");
// - a refused spec is echoed as a window around the caret (at most 60 bytes either
//   side), whatever its length.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"

namespace {

void require(bool ok, const char* what, std::string_view input, std::string_view err) {
  if (ok) return;
  std::fprintf(stderr, "cli_args_fuzz: invariant failed: %s\ninput (%zu bytes), stderr was:\n%.*s\n", what,
               input.size(), static_cast<int>(err.size()), err.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  strata::cli::set_parse_only(true);
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> argv;
  for (std::size_t begin = 0; begin <= input.size();) {
    auto end = input.find('\0', begin);
    if (end == std::string_view::npos) end = input.size();
    argv.push_back(input.substr(begin, end - begin));
    begin = end + 1;
  }
  if (!argv.empty() && argv.back().empty()) argv.pop_back();  // a trailing NUL ends the list

  // The tool writes through stdout and stderr: send stdout nowhere and keep stderr in
  // memory for the checks. Sanitizer reports go to file descriptor 2, untouched.
  static std::FILE* null_out = std::fopen("/dev/null", "w");
  char* err_data = nullptr;
  std::size_t err_size = 0;
  std::FILE* err_mem = ::open_memstream(&err_data, &err_size);
  std::FILE* saved_out = stdout;
  std::FILE* saved_err = stderr;
  if (null_out) stdout = null_out;
  if (err_mem) stderr = err_mem;
  int code = strata::cli::run_cli(argv);
  stdout = saved_out;
  stderr = saved_err;
  std::string err;
  if (err_mem) {
    std::fclose(err_mem);
    err.assign(err_data, err_size);
    std::free(err_data);
  }

  require(code == strata::cli::exit_ok || code == strata::cli::exit_usage, "exit code other than 0 or 2",
          input, err);
  if (code == strata::cli::exit_usage && !err.empty())
    require(err.rfind("strata: ", 0) == 0, "a usage error without 'strata: '", input, err);
  // "strata: CMD: NAME needs a value" names an option (it read "CMD:  needs a value").
  std::string_view first_line = std::string_view(err).substr(0, err.find('\n'));
  constexpr std::string_view needs = " needs a value";
  if (!argv.empty() && first_line.size() >= needs.size() &&
      first_line.substr(first_line.size() - needs.size()) == needs) {
    std::string prefix = "strata: " + std::string(argv.front()) + ": ";
    if (first_line.rfind(prefix, 0) == 0) {
      auto name = first_line.substr(prefix.size(), first_line.size() - prefix.size() - needs.size());
      require(!name.empty(), "a missing value without the option's name", input, err);
    }
  }
  // Every line shown above a caret line is the spec's window: 60 bytes either side of
  // the caret, "..." at a cut end, a UTF-8 sequence completed at each end, the indent.
  std::vector<std::string_view> lines;
  std::string_view rest = err;
  while (!rest.empty()) {
    auto eol = rest.find('\n');
    lines.push_back(rest.substr(0, eol));
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
  }
  for (std::size_t i = 1; i < lines.size(); ++i) {
    auto line = lines[i];
    bool caret = line.size() >= 3 && line.substr(0, 2) == "  " && line.back() == '^' &&
                 line.find_first_not_of(" \t", 2) == line.size() - 1;
    if (caret)
      require(lines[i - 1].size() <= 2 + 2 * 3 + 2 * 60 + 2 * 3, "a spec echoed beyond its window", input,
              err);
  }
  return 0;
}
