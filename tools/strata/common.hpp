// Helpers every `strata` command shares: exit codes, option parsing, error reports,
// signal handling through the event loop, and non-blocking stdin/stdout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "strata/core/buffer.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime.hpp"
#include "strata/runtime/result.hpp"

namespace strata::cli {

/// Exit codes of every command (documented in `strata --help` and docs/cli.md).
inline constexpr int exit_ok = 0;        ///< success
inline constexpr int exit_failure = 1;   ///< runtime failure: refused, broken, timed out...
inline constexpr int exit_usage = 2;     ///< bad command line or refused SPEC
inline constexpr int exit_mismatch = 3;  ///< `strata demo`: a checksum did not match
/// exit_signal returns the code for a run stopped by `signo` (128 + signo, as shells do).
constexpr int exit_signal(int signo) noexcept { return 128 + signo; }

using duration = std::chrono::steady_clock::duration;

/// first_failure is the outcome of a group of tasks that stop together: the first
/// failure wins (where it happened and its error) and cancels the group; the
/// cancellations it causes in the other tasks are not failures of their own.
struct first_failure {
  std::string what;
  std::error_code error;

  void fail(std::string where, std::error_code ec, scope& s) {
    if (ec == errc::operation_canceled) return;
    if (!error) {
      what = std::move(where);
      error = ec;
    }
    s.cancel();
  }
};

/// args is a command's argument list after the command name, consumed front to back.
/// peek() and next() on an empty list return an empty argument instead of reading past
/// the end.
class args {
 public:
  explicit args(std::vector<std::string_view> list) : list_(std::move(list)) {}
  bool empty() const noexcept { return pos_ >= list_.size(); }
  std::string_view peek() const noexcept { return empty() ? std::string_view() : list_[pos_]; }
  std::string_view next() noexcept { return empty() ? std::string_view() : list_[pos_++]; }
  std::size_t remaining() const noexcept { return empty() ? 0 : list_.size() - pos_; }

 private:
  std::vector<std::string_view> list_;
  std::size_t pos_ = 0;
};

/// option_value matches `--name VALUE` or `--name=VALUE` at the front of `a`. Returns
/// the value and consumes both. When `--name` is the last argument it sets `missing`
/// and consumes nothing, so `a.peek()` is still the option's name for the report
/// ("--timeout needs a value").
std::optional<std::string_view> option_value(args& a, std::string_view name, bool& missing);

/// parse_duration reads "10s", "250ms", "2m", "1.5s", "100us" or a bare number of seconds.
std::optional<duration> parse_duration(std::string_view text);
/// format_duration renders a duration the way parse_duration reads it ("10s", "250ms").
std::string format_duration(duration d);
/// parse_size reads "4096", "64k", "64KiB", "16M", "1G" (binary multiples).
std::optional<std::uint64_t> parse_size(std::string_view text);
/// max_connections_limit is the largest --max-connections a command takes.
inline constexpr std::uint64_t max_connections_limit = 1'000'000;
/// parse_connection_limit reads --max-connections' value: a count from 1 to
/// max_connections_limit (nullopt otherwise).
std::optional<std::size_t> parse_connection_limit(std::string_view text);
/// connection_limit_refusal is the usage error for a --max-connections value it refused.
std::string connection_limit_refusal(std::string_view text);

/// usage_error prints "strata: COMMAND: MESSAGE" and a hint to --help; returns exit_usage.
int usage_error(std::string_view command, std::string_view message);
/// error_text renders an error code for humans in lower case ("connection refused").
std::string error_text(std::error_code ec);
/// report prints "strata: WHAT: ERROR" to stderr.
void report(std::string_view what, std::error_code ec);
/// report prints "strata: MESSAGE" to stderr.
void report(std::string_view message);

/// parse_pipeline parses and checks `text`; on refusal prints the rendered error (with
/// the caret under the offending position) prefixed by `label` and returns nullopt.
std::optional<pipeline> parse_pipeline(std::string_view label, std::string_view text);

/// render_spec_error renders a refusal like pipeline_error::render, but shows at most
/// `context` bytes of the spec on either side of the caret (elisions marked "...") and
/// shortens a message longer than about 4 * `context` in its middle, so a huge spec never
/// echoes back whole.
std::string render_spec_error(const pipeline_error& error, std::string_view text, std::size_t context = 60);

/// unit_name names a top's unit for messages: "a byte stream" or "messages".
std::string_view unit_phrase(unit u) noexcept;

// -- signals ------------------------------------------------------------------------------

/// signal_guard blocks SIGINT, SIGTERM and SIGHUP for the process and receives them
/// through a signalfd that the event loop can wait on, so each one unwinds the command
/// (a Unix socket file is removed) before it exits with 128 + the signal number; SIGPIPE
/// is ignored (write errors are values). Create it in main() before any thread exists.
/// In parse-only mode it changes nothing.
class signal_guard {
 public:
  signal_guard();
  ~signal_guard();
  signal_guard(const signal_guard&) = delete;
  signal_guard& operator=(const signal_guard&) = delete;

  int fd() const noexcept { return fd_.get(); }
  /// received is the signal number that stopped the run, or 0.
  int received() const noexcept { return received_; }
  /// watch waits for SIGINT/SIGTERM/SIGHUP and then cancels `target`. Ends with
  /// operation_canceled when its own scope is canceled first.
  task<void> watch(scope& target);

 private:
  pollable_fd fd_;  // the signalfd
  int received_ = 0;
};

/// run_command runs `body` on a fresh event loop, canceling it on SIGINT/SIGTERM/SIGHUP.
/// Returns body's exit code, or exit_signal(signo) when a signal stopped it. In
/// parse-only mode it returns exit_ok without running `body`.
int run_command(signal_guard& signals, std::function<task<int>()> body);

/// set_parse_only switches parse-only mode: every command parses and checks its
/// arguments and specs as usual, then stops where it would start doing I/O (no bind, no
/// connect, stdin/stdout and signals untouched). For the argument fuzzer.
void set_parse_only(bool on) noexcept;
/// parse_only tells whether parse-only mode is on.
bool parse_only() noexcept;

/// run_cli is the whole tool behind main(): dispatches `argv` (without the program name)
/// to a command and returns the exit code.
int run_cli(std::vector<std::string_view> argv);

// -- stdin / stdout -----------------------------------------------------------------------

/// stdio_guard puts fd 0 and fd 1 into non-blocking mode when they are pipes, sockets or
/// terminals (so the event loop can wait on them) and restores their flags on
/// destruction. Regular files are left blocking: epoll refuses them and they never block
/// for long. The terminal mode (termios) is never changed. In parse-only mode it changes
/// nothing.
class stdio_guard {
 public:
  stdio_guard();
  ~stdio_guard();
  stdio_guard(const stdio_guard&) = delete;
  stdio_guard& operator=(const stdio_guard&) = delete;

  /// in and out are fd 0 and fd 1 for read_fd / write_fd (released, never closed, when
  /// the guard goes).
  pollable_fd& in() noexcept { return in_; }
  pollable_fd& out() noexcept { return out_; }

 private:
  int in_flags_ = -1;
  int out_flags_ = -1;
  pollable_fd in_;
  pollable_fd out_;
};

/// read_fd reads 1..buf.size() bytes from `fd`, waiting through the loop when the
/// descriptor is non-blocking. Errors: end_of_stream at EOF, timed_out,
/// operation_canceled (nothing was consumed), system errors.
task<result<std::size_t>> read_fd(pollable_fd& fd, mutable_buffer buf, deadline dl);
/// write_fd writes every byte of `bufs` to `fd`. Errors: broken (EPIPE), timed_out,
/// operation_canceled (a prefix may have been written), system errors.
task<result<void>> write_fd(pollable_fd& fd, const_buffers bufs, deadline dl);

// -- checksums ----------------------------------------------------------------------------

/// checksum is an order-sensitive 64-bit checksum (FNV-1a over 64-bit words, the final
/// partial word zero-padded, the length mixed in at the end). Not cryptographic: it
/// detects lost, duplicated, reordered or corrupted bytes in the demo and tests.
class checksum {
 public:
  void update(const_buffer data) noexcept;
  /// update_message mixes a message boundary in: its length, then its bytes.
  void update_message(const_buffer data) noexcept;
  std::uint64_t value() const noexcept;
  std::uint64_t bytes() const noexcept { return total_; }

 private:
  void mix(std::uint64_t word) noexcept;
  std::uint64_t hash_ = 0xcbf29ce484222325ull;
  std::uint64_t carry_ = 0;
  std::size_t carry_len_ = 0;
  std::uint64_t total_ = 0;
};

/// pattern fills buffers with a deterministic pseudo-random byte sequence (xorshift64*).
class pattern {
 public:
  explicit pattern(std::uint64_t seed) noexcept : state_(seed ? seed : 1) {}
  void fill(mutable_buffer out) noexcept;
  std::uint64_t next() noexcept;

 private:
  std::uint64_t state_;
};

}  // namespace strata::cli
