// http1_files: the static file server (include/strata/app/http1_files.hpp): target
// decoding, ranges, HTTP dates, content types, and the handler that opens files beneath
// the served directory and sends them with response::send_file.
#include "strata/app/http1_files.hpp"
#include "../core/ascii.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace strata::http1 {
namespace {

using strata::detail::iequals;
using strata::detail::trim_ows;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// parse_position reads 1*DIGIT without overflow.
std::optional<std::uint64_t> parse_position(std::string_view s) noexcept {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

constexpr std::array<std::string_view, 7> day_names = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> month_names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

int month_of(std::string_view name) noexcept {
  for (std::size_t i = 0; i < month_names.size(); ++i) {
    if (month_names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

/// digits reads exactly `n` decimal digits at `at` of `s`; -1 when they are not there.
int digits(std::string_view s, std::size_t at, std::size_t n) noexcept {
  if (at + n > s.size()) return -1;
  int v = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/// clock_time reads "HH:MM:SS" at `at` into `tm`.
bool clock_time(std::string_view s, std::size_t at, std::tm& tm) noexcept {
  if (at + 8 > s.size() || s[at + 2] != ':' || s[at + 5] != ':') return false;
  tm.tm_hour = digits(s, at, 2);
  tm.tm_min = digits(s, at + 3, 2);
  tm.tm_sec = digits(s, at + 6, 2);
  return tm.tm_hour >= 0 && tm.tm_hour < 24 && tm.tm_min >= 0 && tm.tm_min < 60 && tm.tm_sec >= 0 &&
         tm.tm_sec <= 60;
}

std::optional<std::time_t> finish_date(std::tm& tm) noexcept {
  if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_mon < 0 || tm.tm_year < 0) return std::nullopt;
  auto t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return t;
}

/// sys_openat2 is openat2(2) without a libc wrapper (glibc has none).
int sys_openat2(int dir, const char* path, std::uint64_t flags, std::uint64_t resolve) noexcept {
  open_how how{};
  how.flags = flags;
  how.resolve = resolve;
  return static_cast<int>(::syscall(SYS_openat2, dir, path, &how, sizeof how));
}

/// fd_guard closes a descriptor it owns.
struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f) noexcept : fd(f) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

// -- the pieces ------------------------------------------------------------------------------

decoded_path decode_path(std::string_view target) {
  decoded_path out;
  auto fail = [&](path_error e) {
    out.error = e;
    return out;
  };
  if (target.empty()) return fail(path_error::malformed);
  if (target.front() != '/') {
    // absolute-form: scheme "://" authority path
    auto scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return fail(path_error::malformed);
    auto path_start = target.find_first_of("/?#", scheme_end + 3);
    target = path_start == std::string_view::npos ? std::string_view("/") : target.substr(path_start);
    if (target.front() != '/') return fail(path_error::malformed);
  }
  auto end = target.find_first_of("?#");
  out.raw_path = target.substr(0, end);
  if (end != std::string_view::npos && target[end] == '?') {
    auto query = target.substr(end + 1);
    out.query = query.substr(0, query.find('#'));
  }
  std::string decoded;
  decoded.reserve(out.raw_path.size());
  for (std::size_t i = 0; i < out.raw_path.size(); ++i) {
    char c = out.raw_path[i];
    if (c == '%') {
      if (i + 2 >= out.raw_path.size()) return fail(path_error::malformed);
      int hi = hex_value(out.raw_path[i + 1]);
      int lo = hex_value(out.raw_path[i + 2]);
      if (hi < 0 || lo < 0) return fail(path_error::malformed);
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return fail(path_error::malformed);
    decoded.push_back(c);
  }
  out.trailing_slash = decoded.size() > 1 && decoded.back() == '/';
  std::string_view rest = decoded;
  while (!rest.empty()) {
    auto slash = rest.find('/');
    auto segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") return fail(path_error::traversal);
    if (!out.relative.empty()) out.relative += '/';
    out.relative.append(segment);
  }
  return out;
}

range_request parse_range(std::string_view value, std::uint64_t size) noexcept {
  range_request whole;
  auto eq = value.find('=');
  if (eq == std::string_view::npos || !iequals(trim_ows(value.substr(0, eq)), "bytes")) return whole;
  auto set = trim_ows(value.substr(eq + 1));
  if (set.empty() || set.find(',') != std::string_view::npos) return whole;  // several: the whole
  auto dash = set.find('-');
  if (dash == std::string_view::npos) return whole;
  auto first_text = trim_ows(set.substr(0, dash));
  auto last_text = trim_ows(set.substr(dash + 1));
  range_request out;
  if (first_text.empty()) {
    // suffix-range: the last N bytes
    auto n = parse_position(last_text);
    if (!n) return whole;
    if (*n == 0 || size == 0) {
      out.what = range_request::unsatisfiable;
      return out;
    }
    auto length = std::min(*n, size);
    out.what = range_request::partial;
    out.range = {size - length, length};
    return out;
  }
  auto first = parse_position(first_text);
  if (!first) return whole;
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!last_text.empty()) {
    auto given = parse_position(last_text);
    if (!given || *given < *first) return whole;  // invalid: ignored (RFC 9110 14.1.1)
    last = std::min(last, *given);
  }
  if (*first >= size) {
    out.what = range_request::unsatisfiable;
    return out;
  }
  out.what = range_request::partial;
  out.range = {*first, last - *first + 1};
  return out;
}

std::optional<std::time_t> parse_http_date(std::string_view s) noexcept {
  std::tm tm{};
  if (s.size() == 29 && s[3] == ',' && s.substr(25) == " GMT") {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ') return std::nullopt;
    tm.tm_mday = digits(s, 5, 2);
    tm.tm_mon = month_of(s.substr(8, 3));
    tm.tm_year = digits(s, 12, 4) - 1900;
    if (!clock_time(s, 17, tm)) return std::nullopt;
    return finish_date(tm);
  }
  if (auto comma = s.find(", "); comma != std::string_view::npos && comma > 3 && s.size() == comma + 24 &&
                                 s.substr(s.size() - 4) == " GMT") {
    // rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT" (two-digit years: 1970..2069)
    auto d = s.substr(comma + 2);
    if (d[2] != '-' || d[6] != '-' || d[9] != ' ') return std::nullopt;
    tm.tm_mday = digits(d, 0, 2);
    tm.tm_mon = month_of(d.substr(3, 3));
    int year = digits(d, 7, 2);
    if (year < 0) return std::nullopt;
    tm.tm_year = year < 70 ? year + 100 : year;
    if (!clock_time(d, 10, tm)) return std::nullopt;
    return finish_date(tm);
  }
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    // asctime-date: "Sun Nov  6 08:49:37 1994"
    tm.tm_mon = month_of(s.substr(4, 3));
    tm.tm_mday = s[8] == ' ' ? digits(s, 9, 1) : digits(s, 8, 2);
    if (!clock_time(s, 11, tm)) return std::nullopt;
    tm.tm_year = digits(s, 20, 4) - 1900;
    return finish_date(tm);
  }
  return std::nullopt;
}

std::string format_http_date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::array<char, 40> text{};
  std::snprintf(text.data(), text.size(), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                day_names[static_cast<std::size_t>(tm.tm_wday)].data(), tm.tm_mday,
                month_names[static_cast<std::size_t>(tm.tm_mon)].data(), tm.tm_year + 1900, tm.tm_hour,
                tm.tm_min, tm.tm_sec);
  return text.data();
}

std::string_view content_type(std::string_view name) noexcept {
  struct type {
    std::string_view extension, media;
  };
  static constexpr type types[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"map", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"md", "text/markdown; charset=utf-8"},
      {"csv", "text/csv; charset=utf-8"},
      {"xml", "application/xml"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"webp", "image/webp"},
      {"avif", "image/avif"},
      {"ico", "image/vnd.microsoft.icon"},
      {"pdf", "application/pdf"},
      {"wasm", "application/wasm"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"ttf", "font/ttf"},
      {"otf", "font/otf"},
      {"mp3", "audio/mpeg"},
      {"ogg", "audio/ogg"},
      {"wav", "audio/wav"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"zip", "application/zip"},
      {"gz", "application/gzip"},
      {"tar", "application/x-tar"},
  };
  auto slash = name.rfind('/');
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return "application/octet-stream";
  auto extension = name.substr(dot + 1);
  for (const auto& t : types) {
    if (iequals(t.extension, extension)) return t.media;
  }
  return "application/octet-stream";
}

// -- file_server -----------------------------------------------------------------------------

struct file_server::state {
  std::string root;
  std::string real_root;  // realpath(root), for kernels without openat2
  int dir = -1;           // the opened directory (O_PATH)
  files_options options;
  ~state() {
    if (dir >= 0) ::close(dir);
  }
};

namespace {

/// opened is a file (or directory) opened beneath the root, or why not (an HTTP status).
struct opened {
  int fd = -1;
  int status = 0;  // 403, 404 when fd < 0
};

int status_for_open_errno(int err) noexcept {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
      return 404;
    default:
      return 403;  // EXDEV (a way out of the root), ELOOP, EACCES, ...
  }
}

/// open_beneath opens `relative` ("" is `dir` itself) beneath the directory `dir` (whose
/// resolved path is `real_dir`), following no path out of it.
opened open_beneath(int dir, const std::string& real_dir, const std::string& relative) {
  const char* path = relative.empty() ? "." : relative.c_str();
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below anyway).
  std::uint64_t flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  int fd = sys_openat2(dir, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
  if (fd >= 0) return {fd, 0};
  int err = errno;
  if (err != ENOSYS && err != EPERM) return {-1, status_for_open_errno(err)};
  // No openat2 (an old kernel, or a seccomp filter): the resolved path must lie inside
  // the directory's resolved path.
  std::string joined = real_dir + (relative.empty() ? "" : "/" + relative);
  std::array<char, PATH_MAX> resolved{};
  if (::realpath(joined.c_str(), resolved.data()) == nullptr) return {-1, status_for_open_errno(errno)};
  std::string_view real(resolved.data());
  bool inside =
      real == real_dir || (real.size() > real_dir.size() && real.substr(0, real_dir.size()) == real_dir &&
                           (real_dir.back() == '/' || real[real_dir.size()] == '/'));
  if (!inside) return {-1, 403};
  fd = ::open(resolved.data(), static_cast<int>(flags) | O_NOFOLLOW);
  if (fd < 0) return {-1, status_for_open_errno(errno)};
  return {fd, 0};
}

std::time_t mtime_of(const struct stat& st) noexcept { return st.st_mtim.tv_sec; }

template <class Response>
task<result<served>> answer(Response& res, int status, std::string_view text, deadline dl) {
  (void)res.set_header("Content-Type", "text/plain; charset=utf-8");
  std::string body = std::to_string(status) + " " + std::string(reason_phrase(status)) + "\n";
  if (!text.empty()) body = std::string(text) + "\n";
  auto sent = co_await res.send(status, body, dl);
  if (!sent) co_return unexpected(sent.error());
  co_return served{status, body.size()};
}

}  // namespace

result<file_server> file_server::open(std::string root, files_options options) {
  int dir = ::open(root.empty() ? "." : root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return unexpected(from_errno(errno));
  auto s = std::make_shared<state>();
  s->dir = dir;
  s->root = std::move(root);
  s->options = std::move(options);
  std::array<char, PATH_MAX> resolved{};
  if (::realpath(s->root.empty() ? "." : s->root.c_str(), resolved.data()) == nullptr)
    return unexpected(from_errno(errno));
  s->real_root = resolved.data();
  return file_server(std::move(s));
}

const std::string& file_server::root() const noexcept { return state_->root; }

handler file_server::as_handler() const {
  return [self = *this](request& req, response& res) -> task<result<void>> {
    auto done = co_await self.serve(req, res);
    if (!done) co_return unexpected(done.error());
    co_return result<void>{};
  };
}

task<result<served>> file_server::serve(request& req, response& res) const {
  return serve_any(*state_, req, res);
}

task<result<served>> file_server::serve(http2::request& req, http2::response& res) const {
  return serve_any(*state_, req, res);
}

http::handlers file_server::as_handlers() const {
  return http::both([self = *this](auto& req, auto& res) -> task<result<void>> {
    auto done = co_await self.serve(req, res);
    if (!done) co_return unexpected(done.error());
    co_return result<void>{};
  });
}

template <class Request, class Response>
task<result<served>> file_server::serve_any(const state& s, Request& req, Response& res) {
  auto dl = deadline::never();  // the server's timeouts bound every wait
  bool head = req.method() == "HEAD";
  if (req.method() != "GET" && !head) {
    (void)res.set_header("Allow", "GET, HEAD");
    co_return co_await answer(res, 405, {}, dl);
  }
  auto path = decode_path(req.target());
  if (path.error == path_error::malformed) co_return co_await answer(res, 400, "400 malformed path", dl);
  if (path.error == path_error::traversal)
    co_return co_await answer(res, 403, "403 forbidden: '..' in the path", dl);

  auto file = open_beneath(s.dir, s.real_root, path.relative);
  if (file.fd < 0) co_return co_await answer(res, file.status, {}, dl);
  fd_guard guard(file.fd);
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) co_return co_await answer(res, 403, {}, dl);
  std::string name = path.relative;
  if (S_ISDIR(st.st_mode)) {
    if (!path.trailing_slash && !path.relative.empty()) {
      std::string location(path.raw_path);
      location += '/';
      if (!path.query.empty()) location.append("?").append(path.query);
      (void)res.set_header("Location", location);
      co_return co_await answer(res, 301, {}, dl);
    }
    if (s.options.index.empty()) co_return co_await answer(res, 404, {}, dl);
    auto index_path = path.relative.empty() ? s.options.index : path.relative + "/" + s.options.index;
    auto index = open_beneath(s.dir, s.real_root, index_path);
    if (index.fd < 0) co_return co_await answer(res, 404, {}, dl);
    ::close(guard.fd);
    guard.fd = index.fd;
    if (::fstat(guard.fd, &st) != 0 || S_ISDIR(st.st_mode)) co_return co_await answer(res, 404, {}, dl);
    name = s.options.index;
  }
  if (!S_ISREG(st.st_mode)) co_return co_await answer(res, 403, "403 forbidden: not a regular file", dl);

  auto size = static_cast<std::uint64_t>(st.st_size);
  auto modified = format_http_date(mtime_of(st));
  (void)res.set_header("Last-Modified", modified);
  if (auto since = req.header("If-Modified-Since")) {
    auto when = parse_http_date(*since);
    if (when && mtime_of(st) <= *when) {
      auto sent = co_await res.send(304, {}, dl);
      if (!sent) co_return unexpected(sent.error());
      co_return served{304, 0};
    }
  }
  (void)res.set_header("Accept-Ranges", "bytes");
  range_request range;
  if (!head) {
    if (auto value = req.header("Range")) {
      range = parse_range(*value, size);
      // If-Range: the range only if the file is the one the client has (the
      // Last-Modified date, strong when at least a second old: RFC 9110 13.1.5, 8.8.2.2).
      if (auto if_range = req.header("If-Range")) {
        bool strong = mtime_of(st) + 1 < std::time(nullptr);
        if (*if_range != modified || !strong) range = range_request{};
      }
    }
  }
  if (range.what == range_request::unsatisfiable) {
    (void)res.set_header("Content-Range", "bytes */" + std::to_string(size));
    co_return co_await answer(res, 416, {}, dl);
  }
  (void)res.set_header("Content-Type", content_type(name));
  int status = 200;
  byte_range body{0, size};
  if (range.what == range_request::partial) {
    status = 206;
    body = range.range;
    (void)res.set_header("Content-Range", "bytes " + std::to_string(body.first) + "-" +
                                              std::to_string(body.first + body.length - 1) + "/" +
                                              std::to_string(size));
  }
  auto started = co_await res.start(status, body.length, dl);
  if (!started) co_return unexpected(started.error());
  auto sent = co_await res.send_file(guard.fd, body.first, body.length, dl);
  if (!sent) co_return unexpected(sent.error());
  auto finished = co_await res.finish(dl);
  if (!finished) co_return unexpected(finished.error());
  co_return served{status, head ? 0 : body.length};
}

}  // namespace strata::http1
