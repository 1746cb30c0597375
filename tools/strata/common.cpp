#include "common.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace strata::cli {

// -- options ------------------------------------------------------------------------------

std::optional<std::string_view> option_value(args& a, std::string_view name, bool& missing) {
  if (a.empty()) return std::nullopt;
  std::string_view head = a.peek();
  if (head == name) {
    if (a.remaining() < 2) {
      missing = true;  // leave the name in front for the caller's report
      return std::nullopt;
    }
    a.next();
    return a.next();
  }
  if (head.size() > name.size() && head.substr(0, name.size()) == name && head[name.size()] == '=') {
    a.next();
    return head.substr(name.size() + 1);
  }
  return std::nullopt;
}

namespace {

// split_number separates "1.5ms" into 1.5 and "ms".
bool split_number(std::string_view text, double& number, std::string_view& suffix) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return false;
  std::string digits(text.substr(0, i));
  char* end = nullptr;
  errno = 0;
  number = std::strtod(digits.c_str(), &end);
  if (errno != 0 || end != digits.c_str() + digits.size() || number < 0) return false;
  suffix = text.substr(i);
  return true;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
  double number = 0;
  std::string_view suffix;
  if (!split_number(text, number, suffix)) return std::nullopt;
  double seconds = 0;
  if (suffix.empty() || suffix == "s") {
    seconds = number;
  } else if (suffix == "ms") {
    seconds = number / 1e3;
  } else if (suffix == "us") {
    seconds = number / 1e6;
  } else if (suffix == "m" || suffix == "min") {
    seconds = number * 60;
  } else if (suffix == "h") {
    seconds = number * 3600;
  } else {
    return std::nullopt;
  }
  // Bound the value so that deadline arithmetic cannot overflow (a year is plenty).
  if (seconds > 365.0 * 24 * 3600) return std::nullopt;
  return std::chrono::duration_cast<duration>(std::chrono::duration<double>(seconds));
}

std::string format_duration(duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  char text[64];
  if (ms % 1000 == 0) {
    std::snprintf(text, sizeof text, "%llds", static_cast<long long>(ms / 1000));
  } else if (ms < 1000) {
    std::snprintf(text, sizeof text, "%lldms", static_cast<long long>(ms));
  } else {
    std::snprintf(text, sizeof text, "%.3gs", static_cast<double>(ms) / 1000.0);
  }
  return text;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  double number = 0;
  std::string_view suffix;
  if (!split_number(text, number, suffix)) return std::nullopt;
  std::string lower;
  for (char c : suffix) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!lower.empty() && lower.back() == 'b') lower.pop_back();  // "KiB", "MB", "B"
  if (lower.size() == 2 && lower[1] == 'i') lower.pop_back();   // "ki" -> "k"
  double scale = 1;
  if (lower.empty()) {
    scale = 1;
  } else if (lower == "k") {
    scale = 1024.0;
  } else if (lower == "m") {
    scale = 1024.0 * 1024;
  } else if (lower == "g") {
    scale = 1024.0 * 1024 * 1024;
  } else {
    return std::nullopt;
  }
  double bytes = number * scale;
  if (bytes > 1e15) return std::nullopt;
  return static_cast<std::uint64_t>(bytes);
}

std::optional<std::size_t> parse_connection_limit(std::string_view text) {
  auto n = parse_size(text);
  if (!n || *n == 0 || *n > max_connections_limit) return std::nullopt;
  return static_cast<std::size_t>(*n);
}

std::string connection_limit_refusal(std::string_view text) {
  return "--max-connections: not a count from 1 to " + std::to_string(max_connections_limit) + ": '" +
         std::string(text) + "'";
}

// -- reports ------------------------------------------------------------------------------

int usage_error(std::string_view command, std::string_view message) {
  if (command.empty()) {
    std::fprintf(stderr, "strata: %.*s\nTry 'strata --help'.\n", static_cast<int>(message.size()),
                 message.data());
  } else {
    std::fprintf(stderr, "strata: %.*s: %.*s\nTry 'strata %.*s --help'.\n", static_cast<int>(command.size()),
                 command.data(), static_cast<int>(message.size()), message.data(),
                 static_cast<int>(command.size()), command.data());
  }
  return exit_usage;
}

std::string error_text(std::error_code ec) {
  std::string text = ec.message();
  // System messages start with a capital ("Connection refused"); errors read better
  // inside a sentence in lower case, as strata's own messages are written.
  if (!text.empty() && ec.category() != strata_category())
    text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

void report(std::string_view what, std::error_code ec) {
  std::string line = "strata: ";
  line += what;
  line += ": ";
  line += error_text(ec);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

void report(std::string_view message) {
  std::string line = "strata: ";
  line += message;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

namespace {

bool utf8_continuation(char c) noexcept { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

// shorten keeps the head and the tail of a long text, cut at character boundaries.
std::string shorten(std::string_view text, std::size_t keep) {
  if (text.size() <= 2 * keep + 5) return std::string(text);
  std::size_t head = keep;
  for (int i = 0; i < 3 && head > 0 && utf8_continuation(text[head]); ++i) --head;
  std::size_t tail = text.size() - keep;
  for (int i = 0; i < 3 && tail < text.size() && utf8_continuation(text[tail]); ++i) ++tail;
  return std::string(text.substr(0, head)) + " ... " + std::string(text.substr(tail));
}

}  // namespace

std::string render_spec_error(const pipeline_error& error, std::string_view text, std::size_t context) {
  std::size_t pos = std::min(error.position, text.size());
  std::size_t begin = pos > context ? pos - context : 0;
  // Cut at character boundaries: a UTF-8 sequence has at most 3 continuation bytes (in
  // invalid text a run of them may be longer; the window stays bounded regardless).
  for (int i = 0; i < 3 && begin < pos && utf8_continuation(text[begin]); ++i) ++begin;
  std::size_t end = std::min(text.size(), pos + context);
  for (int i = 0; i < 3 && end < text.size() && utf8_continuation(text[end]); ++i) ++end;
  constexpr std::string_view elision = "...";
  std::string shown;
  if (begin > 0) shown += elision;
  shown += text.substr(begin, end - begin);
  if (end < text.size()) shown += elision;
  pipeline_error windowed{shorten(error.message, 2 * context),
                          pos - begin + (begin > 0 ? elision.size() : 0)};
  return windowed.render(shown);
}

std::optional<pipeline> parse_pipeline(std::string_view label, std::string_view text) {
  pipeline_error error;
  auto p = pipeline::parse(text, error);
  if (!p) {
    std::string out = "strata: ";
    out += label;
    out += ": ";
    out += render_spec_error(error, text);
    if (out.back() != '\n') out += '\n';
    std::fwrite(out.data(), 1, out.size(), stderr);
    std::fflush(stderr);
  }
  return p;
}

std::string_view unit_phrase(unit u) noexcept {
  switch (u) {
    case unit::stream:
      return "a byte stream";
    case unit::message:
      return "messages";
    default:
      return "no data unit";
  }
}

// -- signals ------------------------------------------------------------------------------

namespace {

bool parse_only_mode = false;

}  // namespace

void set_parse_only(bool on) noexcept { parse_only_mode = on; }
bool parse_only() noexcept { return parse_only_mode; }

signal_guard::signal_guard() {
  if (parse_only()) return;
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);  // a closed terminal: unwind (remove socket files) as for SIGTERM
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  if (int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC); fd >= 0) fd_ = pollable_fd(fd);
}

signal_guard::~signal_guard() = default;

task<void> signal_guard::watch(scope& target) {
  if (!fd_) co_return;
  signalfd_siginfo info{};
  const int fd = fd_.get();
  for (;;) {
    auto n = co_await fd_.perform_read([&] { return ::read(fd, &info, sizeof info); }, deadline::never());
    if (!n) co_return;
    if (*n == sizeof info) break;
  }
  received_ = static_cast<int>(info.ssi_signo);
  target.cancel();
}

int run_command(signal_guard& signals, std::function<task<int>()> body) {
  if (parse_only()) return exit_ok;
  int code = exit_failure;
  run([&]() -> task<void> {
    co_await with_scope([&](scope& s) -> task<void> {
      s.spawn(signals.watch(s));
      code = co_await body();
      s.cancel();  // ends the signal watch
    });
  }());
  if (signals.received() != 0) return exit_signal(signals.received());
  return code;
}

// -- stdin / stdout -----------------------------------------------------------------------

namespace {

// make_nonblocking sets O_NONBLOCK on `fd` unless it is a regular file (or closed);
// returns the previous flags to restore, or -1 when nothing was changed.
int make_nonblocking(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return -1;
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -1;
  if (flags & O_NONBLOCK) return -1;
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -1;
  return flags;
}

}  // namespace

stdio_guard::stdio_guard() : in_(STDIN_FILENO), out_(STDOUT_FILENO) {
  if (parse_only()) return;
  in_flags_ = make_nonblocking(STDIN_FILENO);
  out_flags_ = make_nonblocking(STDOUT_FILENO);
}

stdio_guard::~stdio_guard() {
  // Not ours to close.
  (void)out_.release();
  (void)in_.release();
  // fd 0 and fd 1 often share one open file description (a terminal): restore in the
  // reverse order so the original flags win.
  if (out_flags_ >= 0) ::fcntl(STDOUT_FILENO, F_SETFL, out_flags_);
  if (in_flags_ >= 0) ::fcntl(STDIN_FILENO, F_SETFL, in_flags_);
}

task<result<std::size_t>> read_fd(pollable_fd& fd, mutable_buffer buf, deadline dl) {
  if (buf.empty()) co_return std::size_t{0};
  const int raw = fd.get();
  auto n = co_await fd.perform_read([&] { return ::read(raw, buf.data(), buf.size()); }, buf.size(), dl);
  if (n && *n == 0) co_return errc::end_of_stream;
  co_return n;
}

task<result<void>> write_fd(pollable_fd& fd, const_buffers bufs, deadline dl) {
  std::vector<iovec> iov;
  for (auto b : bufs.view())
    if (!b.empty()) iov.push_back(iovec{const_cast<std::byte*>(b.data()), b.size()});
  const int raw = fd.get();
  std::size_t first = 0;
  while (first < iov.size()) {
    int count = static_cast<int>(std::min<std::size_t>(iov.size() - first, IOV_MAX));
    auto n = co_await fd.perform_write([&] { return ::writev(raw, iov.data() + first, count); }, dl);
    if (!n) co_return n.error();
    auto done = *n;
    while (first < iov.size() && done >= iov[first].iov_len) done -= iov[first++].iov_len;
    if (first < iov.size() && done > 0) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
      iov[first].iov_len -= done;
    }
  }
  co_return result<void>{};
}

// -- checksums ----------------------------------------------------------------------------

void checksum::mix(std::uint64_t word) noexcept {
  hash_ ^= word;
  hash_ *= 0x100000001b3ull;
  hash_ ^= hash_ >> 29;
}

void checksum::update(const_buffer data) noexcept {
  total_ += data.size();
  const std::byte* p = data.data();
  std::size_t n = data.size();
  while (carry_len_ != 0 && n != 0) {
    carry_ |= static_cast<std::uint64_t>(*p++) << (8 * carry_len_);
    --n;
    if (++carry_len_ == 8) {
      mix(carry_);
      carry_ = 0;
      carry_len_ = 0;
    }
  }
  while (n >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    mix(word);
    p += 8;
    n -= 8;
  }
  while (n != 0) {
    carry_ |= static_cast<std::uint64_t>(*p++) << (8 * carry_len_++);
    --n;
  }
}

void checksum::update_message(const_buffer data) noexcept {
  std::uint64_t size = data.size();
  std::array<std::byte, 8> header;
  std::memcpy(header.data(), &size, 8);
  update(header);
  update(data);
}

std::uint64_t checksum::value() const noexcept {
  checksum copy = *this;
  if (copy.carry_len_ != 0) copy.mix(copy.carry_);
  copy.mix(total_);
  return copy.hash_;
}

std::uint64_t pattern::next() noexcept {
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return state_ * 0x2545f4914f6cdd1dull;
}

void pattern::fill(mutable_buffer out) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    std::uint64_t word = next();
    std::memcpy(out.data() + i, &word, 8);
  }
  if (i < out.size()) {
    std::uint64_t word = next();
    std::memcpy(out.data() + i, &word, out.size() - i);
  }
}

}  // namespace strata::cli
