// http1: the sans-I/O head parser and chunked decoder, the server connection driver and
// the client (include/strata/app/http1.hpp).
#include "strata/app/http1.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <ctime>
#include <limits>
#include <memory>

#include <sys/sendfile.h>
#include <unistd.h>

#include "../core/ascii.hpp"
#include "strata/runtime/event_loop.hpp"

namespace strata::http1 {
namespace {

// -- errors ----------------------------------------------------------------------------------

class http1_error_category final : public refining_category {
 public:
  const char* name() const noexcept override { return "http1"; }
  std::string message(int value) const override {
    switch (static_cast<error>(value)) {
      case error::bad_request_line:
        return "malformed HTTP request line";
      case error::bad_status_line:
        return "malformed HTTP status line";
      case error::bad_version:
        return "malformed HTTP version";
      case error::version_not_supported:
        return "HTTP major version not supported";
      case error::bad_line_ending:
        return "HTTP line not ended by CRLF";
      case error::bad_field:
        return "malformed HTTP field line";
      case error::whitespace_before_colon:
        return "whitespace between HTTP field name and colon";
      case error::obsolete_line_folding:
        return "HTTP field folded over lines (obs-fold)";
      case error::bad_host:
        return "Host field missing, repeated or malformed";
      case error::bad_content_length:
        return "invalid or conflicting Content-Length";
      case error::conflicting_framing:
        return "Transfer-Encoding with Content-Length, or in HTTP/1.0";
      case error::bad_transfer_encoding:
        return "Transfer-Encoding without chunked last, or chunked twice";
      case error::unknown_transfer_coding:
        return "transfer coding not implemented";
      case error::bad_chunk:
        return "malformed chunked body";
      case error::expectation_failed:
        return "Expect other than 100-continue";
      case error::uri_too_long:
        return "HTTP request line too long";
      case error::header_too_large:
        return "HTTP header block too large";
      case error::too_many_fields:
        return "too many HTTP field lines";
      case error::body_too_large:
        return "HTTP body too large";
      case error::header_timeout:
        return "HTTP header block not received in time";
      case error::body_timeout:
        return "HTTP body not received in time";
      case error::truncated:
        return "connection closed inside an HTTP message";
      case error::bad_response:
        return "malformed HTTP response";
    }
    return "http1 error " + std::to_string(value);
  }
  errc refines(int value) const noexcept override {
    switch (static_cast<error>(value)) {
      case error::uri_too_long:
      case error::header_too_large:
      case error::too_many_fields:
      case error::body_too_large:
        return errc::message_too_large;
      case error::header_timeout:
      case error::body_timeout:
        return errc::timed_out;
      case error::truncated:
        return errc::broken;
      default:
        return errc::protocol_error;
    }
  }
};

// -- characters (RFC 9110 section 5.6.2, 5.5) ----------------------------------------------

constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto tchar = make_tchar();

// field-value bytes: VCHAR, obs-text, SP and HTAB.
constexpr std::array<bool, 256> make_value_char() {
  std::array<bool, 256> t{};
  for (int c = 0x21; c <= 0x7e; ++c) t[c] = true;
  for (int c = 0x80; c <= 0xff; ++c) t[c] = true;
  t[' '] = t['\t'] = true;
  return t;
}
constexpr auto value_char = make_value_char();

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!tchar[c]) return false;
  }
  return true;
}

bool valid_value(std::string_view s) noexcept {
  for (unsigned char c : s) {
    if (!value_char[c]) return false;
  }
  return true;
}

using strata::detail::iequals;
using strata::detail::trim_ows;

/// for_each_element calls `f` with each trimmed, non-empty element of a comma-separated
/// list (RFC 9110 5.6.1: empty elements are ignored); stops when `f` returns false.
template <class F>
void for_each_element(std::string_view list, F&& f) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto element = trim_ows(list.substr(0, comma));
    if (!element.empty() && !f(element)) return;
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

/// parse_version reads "HTTP/d.d"; returns the minor version, -1 when malformed, -2 for a
/// major version other than 1.
int parse_version(std::string_view v) noexcept {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.') return -1;
  if (v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9') return -1;
  if (v[5] != '1') return -2;
  // A higher minor version is answered as the highest we speak (RFC 9110 2.5).
  return v[7] == '0' ? 0 : 1;
}

/// parse_decimal reads 1*DIGIT without overflow.
std::optional<std::uint64_t> parse_decimal(std::string_view s) noexcept {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

/// parse_field_lines parses the field lines of `block` (each ending in CRLF, the
/// terminating empty line excluded) into `out`.
std::optional<error> parse_field_lines(std::string_view block, std::size_t max_fields, fields& out) {
  out.clear();
  while (!block.empty()) {
    auto lf = block.find('\n');  // the scan made sure every line ends in CRLF
    auto line = block.substr(0, lf - 1);
    block.remove_prefix(lf + 1);
    if (line.empty()) return error::bad_field;
    if (line.front() == ' ' || line.front() == '\t') return error::obsolete_line_folding;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return error::bad_field;
    auto name = line.substr(0, colon);
    if (!name.empty() && (name.back() == ' ' || name.back() == '\t')) return error::whitespace_before_colon;
    if (!is_token(name)) return error::bad_field;
    auto value = trim_ows(line.substr(colon + 1));
    if (!valid_value(value)) return error::bad_field;
    if (out.size() >= max_fields) return error::too_many_fields;
    out.add({name, value});
  }
  return std::nullopt;
}

/// content_length_of reads every Content-Length field: each a list of equal numbers.
/// nullopt: none present; error when malformed or differing.
std::optional<std::uint64_t> content_length_of(const fields& f, bool& bad) {
  std::optional<std::uint64_t> length;
  for (const auto& item : f.all()) {
    if (!iequals(item.name, "content-length")) continue;
    bool any = false;
    for_each_element(item.value, [&](std::string_view element) {
      any = true;
      auto v = parse_decimal(element);
      if (!v || (length && *length != *v)) {
        bad = true;
        return false;
      }
      length = v;
      return true;
    });
    if (!any) bad = true;
    if (bad) return std::nullopt;
  }
  return length;
}

/// transfer_coding_of checks Transfer-Encoding: whether chunked is last (and once), and
/// whether another coding appears.
struct transfer_coding {
  bool present = false;
  bool chunked_last = false;
  bool chunked_twice = false;
  bool chunked_not_last = false;
  bool other = false;
  bool empty = false;
};
transfer_coding transfer_coding_of(const fields& f) {
  transfer_coding t;
  std::size_t chunked_seen = 0;
  for (const auto& item : f.all()) {
    if (!iequals(item.name, "transfer-encoding")) continue;
    t.present = true;
    bool any = false;
    for_each_element(item.value, [&](std::string_view element) {
      any = true;
      auto name = trim_ows(element.substr(0, element.find(';')));
      bool chunked = iequals(name, "chunked");
      if (t.chunked_last) t.chunked_not_last = true;  // something follows a chunked
      t.chunked_last = chunked;
      if (chunked) {
        ++chunked_seen;
      } else {
        t.other = true;
      }
      return true;
    });
    if (!any) t.empty = true;
  }
  if (chunked_seen > 1) t.chunked_twice = true;
  if (chunked_seen >= 1 && !t.chunked_last) t.chunked_not_last = true;
  return t;
}

bool valid_host(std::string_view host) noexcept {
  for (unsigned char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("-._~!$&'()*+,;=:[]%").find(static_cast<char>(c)) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

/// valid_target checks the request-target's form against the method (RFC 9112 3.2).
bool valid_target(std::string_view method, std::string_view target) noexcept {
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  if (method == "CONNECT") {
    // authority-form: host:port
    return target.front() != '/' && target.find(':') != std::string_view::npos &&
           target.find('/') == std::string_view::npos;
  }
  if (target == "*") return method == "OPTIONS";
  if (target.front() == '/') return true;
  auto scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return false;
  for (char c : target.substr(0, scheme_end)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

const std::error_category& category() noexcept {
  static const http1_error_category instance;
  return instance;
}

int status_for(error e) noexcept {
  switch (e) {
    case error::version_not_supported:
      return 505;
    case error::unknown_transfer_coding:
      return 501;
    case error::expectation_failed:
      return 417;
    case error::uri_too_long:
      return 414;
    case error::header_too_large:
    case error::too_many_fields:
      return 431;
    case error::body_too_large:
      return 413;
    case error::header_timeout:
    case error::body_timeout:
      return 408;
    default:
      return 400;
  }
}

std::string_view date_now() noexcept {
  thread_local std::time_t last = 0;
  thread_local std::array<char, 40> text{};
  thread_local std::size_t length = 0;
  auto now = std::time(nullptr);
  if (now != last) {
    last = now;
    std::tm tm{};
    gmtime_r(&now, &tm);
    length = std::strftime(text.data(), text.size(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  }
  return {text.data(), length};
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

// -- fields ----------------------------------------------------------------------------------

std::optional<std::string_view> fields::get(std::string_view name) const noexcept {
  for (const auto& f : items_) {
    if (iequals(f.name, name)) return f.value;
  }
  return std::nullopt;
}

std::size_t fields::count(std::string_view name) const noexcept {
  std::size_t n = 0;
  for (const auto& f : items_) n += iequals(f.name, name) ? 1 : 0;
  return n;
}

bool fields::has_token(std::string_view name, std::string_view token) const noexcept {
  bool found = false;
  for (const auto& f : items_) {
    if (!iequals(f.name, name)) continue;
    for_each_element(f.value, [&](std::string_view element) {
      found = iequals(element, token);
      return !found;
    });
    if (found) return true;
  }
  return false;
}

namespace {
std::string_view moved(std::string_view v, const char* from, const char* to) noexcept {
  return v.empty() ? std::string_view{} : std::string_view(to + (v.data() - from), v.size());
}
}  // namespace

void fields::rebase(const char* from, const char* to) noexcept {
  for (auto& f : items_) {
    f.name = moved(f.name, from, to);
    f.value = moved(f.value, from, to);
  }
}

// -- head_parser -----------------------------------------------------------------------------

head_parser::status head_parser::find_end(std::string_view input, std::size_t line_limit) {
  // Empty lines before the start line (RFC 9112 2.2), a few at most.
  if (scanned_ == 0) {
    while (input.size() >= skipped_ + 2 && input[skipped_] == '\r' && input[skipped_ + 1] == '\n') {
      skipped_ += 2;
      if (skipped_ > 8) return fail(error::bad_request_line);
    }
    if (input.size() > skipped_ && input[skipped_] == '\n') return fail(error::bad_line_ending);
    if (input.size() < skipped_ + 2) return status::incomplete;
    scanned_ = skipped_;
    line_start_ = skipped_;
  }
  const char* base = input.data();
  while (scanned_ < input.size()) {
    const void* found = std::memchr(base + scanned_, '\n', input.size() - scanned_);
    if (!found) {
      scanned_ = input.size();
      break;
    }
    auto lf = static_cast<std::size_t>(static_cast<const char*>(found) - base);
    // The limits first, in the order the unterminated case below checks them, so the
    // outcome does not depend on how the bytes were split into reads.
    if (first_line_end_ == 0 && lf + 1 - line_start_ > line_limit) return fail(error::uri_too_long);
    if (lf + 1 - skipped_ > limits_.max_header_block) return fail(error::header_too_large);
    if (lf == line_start_ || base[lf - 1] != '\r') return fail(error::bad_line_ending);
    if (first_line_end_ == 0) {
      first_line_end_ = lf + 1;
    } else if (lf == line_start_ + 1) {
      consumed_ = lf + 1;  // the empty line ends the head
      if (consumed_ - skipped_ > limits_.max_header_block) return fail(error::header_too_large);
      return status::complete;
    }
    line_start_ = lf + 1;
    scanned_ = lf + 1;
  }
  if (first_line_end_ == 0 && input.size() - skipped_ > line_limit) return fail(error::uri_too_long);
  if (input.size() - skipped_ > limits_.max_header_block) return fail(error::header_too_large);
  return status::incomplete;
}

head_parser::status head_parser::parse_request(std::string_view input, request_head& out) {
  if (auto st = find_end(input, limits_.max_request_line); st != status::complete) return st;
  // request-line = method SP request-target SP HTTP-version
  auto line = input.substr(skipped_, first_line_end_ - skipped_ - 2);
  auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return fail(error::bad_request_line);
  auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return fail(error::bad_request_line);
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (!is_token(out.method) || out.target.empty()) return fail(error::bad_request_line);
  int minor = parse_version(version);
  if (minor == -2) return fail(error::version_not_supported);
  if (minor < 0)
    return fail(version.find(' ') != std::string_view::npos ? error::bad_request_line : error::bad_version);
  if (!valid_target(out.method, out.target)) return fail(error::bad_request_line);
  out.minor_version = minor;

  if (auto e = parse_field_lines(input.substr(first_line_end_, consumed_ - first_line_end_ - 2),
                                 limits_.max_fields, out.fields)) {
    return fail(*e);
  }
  const auto& f = out.fields;
  // Host (RFC 9112 3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0.
  auto hosts = f.count("host");
  if (hosts > 1 || (hosts == 0 && minor == 1)) return fail(error::bad_host);
  if (hosts == 1 && !valid_host(*f.get("host"))) return fail(error::bad_host);

  // Framing (RFC 9112 6.1-6.3). Content-Length and Transfer-Encoding together are how
  // requests are smuggled past a proxy that reads the other one: refused.
  bool bad_length = false;
  auto length = content_length_of(f, bad_length);
  if (bad_length) return fail(error::bad_content_length);
  auto te = transfer_coding_of(f);
  out.framing = framing::none;
  out.content_length = 0;
  if (te.present) {
    if (length || minor == 0) return fail(error::conflicting_framing);
    if (te.empty || te.chunked_twice || te.chunked_not_last || !te.chunked_last) {
      return fail(error::bad_transfer_encoding);
    }
    if (te.other) return fail(error::unknown_transfer_coding);
    out.framing = framing::chunked;
  } else if (length) {
    out.content_length = *length;
    out.framing = *length > 0 ? framing::content_length : framing::none;
  }

  bool close = f.has_token("connection", "close");
  out.keep_alive = minor == 1 ? !close : (!close && f.has_token("connection", "keep-alive"));
  out.expect_continue = false;
  if (auto expect = f.get("expect")) {
    if (!iequals(*expect, "100-continue")) return fail(error::expectation_failed);
    // An HTTP/1.0 client cannot wait for 100 (RFC 9110 10.1.1).
    out.expect_continue = minor == 1;
  }
  out.upgrade = {};
  if (f.has_token("connection", "upgrade")) {
    if (auto u = f.get("upgrade")) out.upgrade = *u;
  }
  return status::complete;
}

head_parser::status head_parser::parse_response(std::string_view input, std::string_view request_method,
                                                response_head& out) {
  auto st = find_end(input, limits_.max_request_line);
  if (st == status::failed && failure_ == error::uri_too_long) return fail(error::header_too_large);
  if (st != status::complete) return st;
  // status-line = HTTP-version SP status-code SP [ reason-phrase ]
  auto line = input.substr(skipped_, first_line_end_ - skipped_ - 2);
  if (line.size() < 12 || line[8] != ' ') return fail(error::bad_status_line);
  int minor = parse_version(line.substr(0, 8));
  if (minor == -2) return fail(error::version_not_supported);
  if (minor < 0) return fail(error::bad_status_line);
  int code = 0;
  for (char c : line.substr(9, 3)) {
    if (c < '0' || c > '9') return fail(error::bad_status_line);
    code = code * 10 + (c - '0');
  }
  if (code < 100) return fail(error::bad_status_line);
  auto rest = line.substr(12);
  if (!rest.empty() && rest.front() != ' ') return fail(error::bad_status_line);
  out.reason = rest.empty() ? rest : rest.substr(1);
  if (!valid_value(out.reason)) return fail(error::bad_status_line);
  out.status = code;
  out.minor_version = minor;
  if (auto e = parse_field_lines(input.substr(first_line_end_, consumed_ - first_line_end_ - 2),
                                 limits_.max_fields, out.fields)) {
    return fail(*e);
  }
  const auto& f = out.fields;
  bool close = f.has_token("connection", "close");
  out.keep_alive = minor == 1 ? !close : (!close && f.has_token("connection", "keep-alive"));
  out.content_length = 0;
  // RFC 9112 6.3, in order.
  if (request_method == "HEAD" || code < 200 || code == 204 || code == 304 ||
      (request_method == "CONNECT" && code < 300)) {
    out.framing = framing::none;
    return status::complete;
  }
  auto te = transfer_coding_of(f);
  if (te.present) {
    if (te.chunked_last && !te.chunked_twice) {
      out.framing = framing::chunked;
    } else {
      out.framing = framing::until_close;
      out.keep_alive = false;
    }
    // A length next to a coding is ignored, and the connection not reused (6.3 item 3).
    if (f.count("content-length") > 0) out.keep_alive = false;
    return status::complete;
  }
  bool bad_length = false;
  auto length = content_length_of(f, bad_length);
  if (bad_length) return fail(error::bad_content_length);
  if (length) {
    out.content_length = *length;
    out.framing = *length > 0 ? framing::content_length : framing::none;
  } else {
    out.framing = framing::until_close;
    out.keep_alive = false;
  }
  return status::complete;
}

// -- chunked_decoder -------------------------------------------------------------------------

chunked_decoder::step chunked_decoder::fail(error e) noexcept {
  state_ = state::failed;
  failure_ = e;
  return {.consumed = 0, .data = {}, .done = false, .failed = true};
}

chunked_decoder::step chunked_decoder::decode(std::string_view input, std::size_t max_data) {
  auto out = decode_step(input, max_data);
  // The next input starts at the first unconsumed byte.
  scanned_ = scanned_ > out.consumed ? scanned_ - out.consumed : 0;
  return out;
}

chunked_decoder::step chunked_decoder::decode_step(std::string_view input, std::size_t max_data) {
  step out;
  std::size_t pos = 0;
  auto next_line = [&](std::size_t limit, std::string_view& line) -> int {
    // 1: a line; 0: need more; -1: failed (set)
    auto from = std::max(pos, scanned_);
    const void* found =
        from < input.size() ? std::memchr(input.data() + from, '\n', input.size() - from) : nullptr;
    if (!found) {
      scanned_ = input.size();
      if (input.size() - pos > limit) return -1;
      return 0;
    }
    auto lf = static_cast<std::size_t>(static_cast<const char*>(found) - input.data());
    if (lf + 1 - pos > limit) return -1;
    if (lf == pos || input[lf - 1] != '\r') return -2;
    line = input.substr(pos, lf - 1 - pos);
    pos = lf + 1;
    scanned_ = pos;
    return 1;
  };
  for (;;) {
    switch (state_) {
      case state::size_line: {
        std::string_view line;
        int got = next_line(limits_.max_chunk_line, line);
        if (got < 0) return fail(error::bad_chunk);
        if (got == 0) {
          out.consumed = pos;
          return out;
        }
        // chunk-size [ chunk-ext ]: 1*HEXDIG, then BWS ";" ... (RFC 9112 7.1.1)
        std::size_t digits = 0;
        std::uint64_t size = 0;
        while (digits < line.size()) {
          char c = line[digits];
          int v = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
          if (v < 0) break;
          if (size > (std::numeric_limits<std::uint64_t>::max() >> 4)) return fail(error::bad_chunk);
          size = (size << 4) | static_cast<std::uint64_t>(v);
          ++digits;
        }
        if (digits == 0) return fail(error::bad_chunk);
        auto ext = trim_ows(line.substr(digits));
        if (!ext.empty() && (ext.front() != ';' || !valid_value(ext))) return fail(error::bad_chunk);
        if (size > limits_.max_body || total_ > limits_.max_body - size) return fail(error::body_too_large);
        if (size == 0) {
          state_ = state::trailers;
        } else {
          remaining_ = size;
          state_ = state::data;
        }
        break;
      }
      case state::data: {
        auto available = std::min<std::uint64_t>(remaining_, input.size() - pos);
        auto take = static_cast<std::size_t>(std::min<std::uint64_t>(available, max_data));
        if (take == 0) {
          out.consumed = pos;
          return out;
        }
        out.data = input.substr(pos, take);
        pos += take;
        remaining_ -= take;
        total_ += take;
        if (remaining_ == 0) state_ = state::data_end;
        out.consumed = pos;
        return out;
      }
      case state::data_end: {
        if (input.size() - pos < 2) {
          if (input.size() > pos && input[pos] != '\r') return fail(error::bad_chunk);
          out.consumed = pos;
          return out;
        }
        if (input[pos] != '\r' || input[pos + 1] != '\n') return fail(error::bad_chunk);
        pos += 2;
        scanned_ = pos;
        state_ = state::size_line;
        break;
      }
      case state::trailers: {
        std::string_view line;
        int got = next_line(limits_.max_trailer_block, line);
        if (got == -2) return fail(error::bad_chunk);
        if (got < 0) return fail(error::header_too_large);
        if (got == 0) {
          out.consumed = pos;
          return out;
        }
        if (!line.empty()) {
          if (trailer_text_.size() + line.size() + 2 > limits_.max_trailer_block) {
            return fail(error::header_too_large);
          }
          trailer_text_.append(line).append("\r\n");
          break;
        }
        if (auto e = parse_field_lines(trailer_text_, limits_.max_fields, trailers_)) return fail(*e);
        state_ = state::done;
        out.consumed = pos;
        out.done = true;
        return out;
      }
      case state::done:
        out.done = true;
        return out;
      case state::failed:
        out.failed = true;
        return out;
    }
  }
}

// -- shared by server and client -------------------------------------------------------------

namespace {

/// date_field is "Date: <IMF-fixdate>\r\n" for now, from date_now()'s text.
std::string_view date_field() {
  thread_local std::time_t last = 0;
  thread_local std::string line;
  auto now = std::time(nullptr);
  if (now != last) {
    last = now;
    line.assign("Date: ").append(date_now()).append("\r\n");
  }
  return line;
}

void append_number(std::string& out, std::uint64_t v, int base = 10) {
  std::array<char, 24> digits{};
  auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), v, base);
  out.append(digits.data(), end);
}

result<void> check_header(std::string_view name, std::string_view value) {
  if (!is_token(name) || !valid_value(value)) return errc::invalid_argument;
  return {};
}

/// input_buffer holds received bytes [begin, end) in storage that grows to a bound.
struct input_buffer {
  std::unique_ptr<char[]> data;
  std::size_t capacity = 0;
  std::size_t begin = 0;
  std::size_t end = 0;

  std::string_view view() const noexcept { return {data.get() + begin, end - begin}; }
  std::size_t size() const noexcept { return end - begin; }
  void consume(std::size_t n) noexcept {
    begin += n;
    if (begin == end) begin = end = 0;
  }
  /// room makes at least `want` bytes free at the end (moving or growing the storage).
  mutable_buffer room(std::size_t want) {
    if (capacity - end < want) {
      if (begin > 0) {
        std::memmove(data.get(), data.get() + begin, end - begin);
        end -= begin;
        begin = 0;
      }
      if (capacity - end < want) {
        auto bigger = std::max(capacity * 2, end + want);
        auto fresh = std::make_unique<char[]>(bigger);
        if (end) std::memcpy(fresh.get(), data.get(), end);
        data = std::move(fresh);
        capacity = bigger;
      }
    }
    return {reinterpret_cast<std::byte*>(data.get() + end), capacity - end};
  }
};

constexpr std::size_t read_chunk = 16 * 1024;
/// Body pieces up to this size are copied into the output buffer; larger ones are
/// written from the caller's memory, behind the buffered bytes in the same call.
constexpr std::size_t copy_limit = 16 * 1024;
/// Buffered output (pipelined responses) past this leaves without waiting.
constexpr std::size_t flush_limit = 64 * 1024;
/// A body the handler left unread is read and dropped up to this size; beyond, the
/// connection closes after the response.
constexpr std::uint64_t drain_limit = 256 * 1024;

/// body_reader reads one message body from a connection's input buffer and stream.
struct body_reader {
  framing kind = framing::none;
  std::uint64_t remaining = 0;  // content_length
  bool done = true;
  chunked_decoder chunked;
  std::error_code failure{};

  void start(framing f, std::uint64_t length, const limits& l) {
    kind = f;
    remaining = length;
    done = f == framing::none;
    chunked = chunked_decoder(l);
    failure = {};
  }
};

/// read_body_some is the body read of server and client: from `in` first, then from
/// the stream (straight into `buf` when nothing is buffered and no framing is in the
/// way). `timeout_error` is what a deadline of `timeout_at` (not of `dl`) becomes.
task<result<std::size_t>> read_body_some(any_stream& stream, input_buffer& in, body_reader& body,
                                         mutable_buffer buf, deadline dl, deadline timeout_at,
                                         error timeout_error) {
  if (body.failure) co_return unexpected(body.failure);
  if (body.done) co_return errc::end_of_stream;
  if (buf.empty()) co_return std::size_t{0};
  auto wait_until = deadline::earlier(dl, timeout_at);
  auto failed = [&](std::error_code ec) -> std::error_code {
    if (ec == errc::timed_out && wait_until == timeout_at && !(dl == timeout_at))
      ec = make_error_code(timeout_error);
    if (ec == errc::end_of_stream) ec = make_error_code(error::truncated);
    if (ec != errc::timed_out && ec != errc::operation_canceled) body.failure = ec;
    return ec;
  };
  switch (body.kind) {
    case framing::content_length: {
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(body.remaining, buf.size()));
      std::size_t n = 0;
      if (in.size() > 0) {
        n = std::min(want, in.size());
        std::memcpy(buf.data(), in.view().data(), n);
        in.consume(n);
      } else {
        auto got = co_await stream.read_some(buf.first(want), wait_until);
        if (!got) co_return unexpected(failed(got.error()));
        n = *got;
      }
      body.remaining -= n;
      if (body.remaining == 0) body.done = true;
      co_return n;
    }
    case framing::until_close: {
      if (in.size() > 0) {
        auto n = std::min(buf.size(), in.size());
        std::memcpy(buf.data(), in.view().data(), n);
        in.consume(n);
        co_return n;
      }
      auto got = co_await stream.read_some(buf, wait_until);
      if (!got) {
        if (got.error() == errc::end_of_stream) {
          body.done = true;
          co_return unexpected(got.error());
        }
        co_return unexpected(failed(got.error()));
      }
      co_return *got;
    }
    case framing::chunked:
      for (;;) {
        auto step = body.chunked.decode(in.view(), buf.size());
        if (step.failed) {
          body.failure = make_error_code(body.chunked.failure());
          co_return unexpected(body.failure);
        }
        if (!step.data.empty()) std::memcpy(buf.data(), step.data.data(), step.data.size());
        in.consume(step.consumed);
        if (step.done) body.done = true;
        if (!step.data.empty()) co_return step.data.size();
        if (step.done) co_return errc::end_of_stream;
        if (step.consumed > 0) continue;
        auto space = in.room(read_chunk);
        auto got = co_await stream.read_some(space, wait_until);
        if (!got) co_return unexpected(failed(got.error()));
        in.end += *got;
      }
    case framing::none:
      break;
  }
  body.done = true;
  co_return errc::end_of_stream;
}

/// read_whole_body reads the rest of a body into a string of at most `max` bytes.
task<result<std::string>> read_whole_body(any_stream& stream, input_buffer& in, body_reader& body,
                                          std::size_t max, deadline dl, deadline timeout_at,
                                          error timeout_error) {
  std::string out;
  if (body.kind == framing::content_length) {
    if (body.remaining > max) co_return unexpected(make_error_code(error::body_too_large));
    out.reserve(static_cast<std::size_t>(body.remaining));
  }
  for (;;) {
    if (out.size() == max) {
      if (body.done) co_return out;
      // One more byte tells whether the body ends exactly here.
      std::byte probe{};
      auto n =
          co_await read_body_some(stream, in, body, mutable_buffer(&probe, 1), dl, timeout_at, timeout_error);
      if (!n && n.error() == errc::end_of_stream) co_return out;
      if (!n) co_return unexpected(n.error());
      co_return unexpected(make_error_code(error::body_too_large));
    }
    auto old = out.size();
    out.resize(std::min(max, std::max(old + read_chunk, old * 2)));
    auto n = co_await read_body_some(
        stream, in, body, mutable_buffer(reinterpret_cast<std::byte*>(out.data() + old), out.size() - old),
        dl, timeout_at, timeout_error);
    if (!n) {
      out.resize(old);
      if (n.error() == errc::end_of_stream) co_return out;
      co_return unexpected(n.error());
    }
    out.resize(old + *n);
  }
}

}  // namespace

// -- server ----------------------------------------------------------------------------------

/// connection drives one server connection (serve()); request and response call into it.
class connection {
 public:
  connection(any_stream s, handler h, const server_options& o)
      : stream(std::move(s)), handle(std::move(h)), options(o), parser(o.limits) {}

  task<result<serve_stats>> run();
  task<result<void>> flush(deadline dl);
  task<result<void>> flush() { return flush(deadline::after(options.write_timeout)); }
  deadline write_due(deadline dl) const noexcept {
    return deadline::earlier(dl, deadline::after(options.write_timeout));
  }
  task<result<void>> answer_error(std::error_code e);
  task<result<void>> finish_connection();
  result<void> begin_response(response& r, int status, std::optional<std::uint64_t> length);
  /// write_body frames and sends body bytes: small ones are copied behind what is
  /// buffered and, unless `now` is false, flushed; large ones leave from the caller's
  /// memory in the same write as the buffered bytes.
  task<result<void>> write_body(response& r, const_buffers body, bool now, deadline dl);
  task<result<std::size_t>> read_body(mutable_buffer buf, deadline dl);
  task<result<void>> send_continue();

  any_stream stream;
  handler handle;
  server_options options;
  head_parser parser;
  input_buffer in;
  std::string head_text;  // the current request's head, which its views point into
  std::string out;        // responses not written yet
  body_reader body;
  bool continue_sent = false;
  bool close = false;
  bool upgraded = false;  // the stream was handed over (response::upgrade)
  std::unique_ptr<request> current;
  response* current_response = nullptr;
  serve_stats stats;
};

task<result<void>> connection::flush(deadline dl) {
  if (out.empty()) co_return result<void>{};
  ++stats.writes;
  auto sent = co_await stream.write(as_bytes(out), dl);
  out.clear();
  co_return sent;
}

task<result<void>> connection::finish_connection() {
  auto flushed = co_await flush();
  // Lingering close: what the client still sends is read and dropped for a moment, so
  // our last response is not lost to a reset (RFC 9112 9.6).
  auto closed = co_await stream.close(deadline::after(std::chrono::seconds(1)));
  if (!flushed) co_return flushed;
  (void)closed;
  co_return result<void>{};
}

task<result<void>> connection::answer_error(std::error_code e) {
  int status = 400;
  if (e.category() == category()) status = status_for(static_cast<error>(e.value()));
  std::string text = e.message() + "\n";
  out += "HTTP/1.1 ";
  append_number(out, static_cast<std::uint64_t>(status));
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!options.server_name.empty()) out.append("Server: ").append(options.server_name).append("\r\n");
  out += date_field();
  out += "Content-Type: text/plain\r\nContent-Length: ";
  append_number(out, text.size());
  out += "\r\nConnection: close\r\n\r\n";
  out += text;
  ++stats.errors_answered;
  co_return co_await finish_connection();
}

result<void> connection::begin_response(response& r, int status, std::optional<std::uint64_t> length) {
  if (r.started_ || status < 200 || status > 999) return errc::invalid_argument;
  const auto& head = current->head_;
  r.started_ = true;
  r.head_only_ = head.method == "HEAD";
  bool no_body = status == 204 || status == 304;
  // A body still unread behind "Expect: 100-continue" may or may not come: the
  // connection cannot be reused.
  if (!body.done && head.expect_continue && !continue_sent) close = true;
  if (!head.keep_alive || r.close_) close = true;
  if (options.max_requests && stats.requests >= options.max_requests) close = true;
  r.length_ = length;
  r.chunked_ = false;
  if (!no_body && !length) {
    if (head.minor_version == 1) {
      r.chunked_ = true;
    } else {
      close = true;  // HTTP/1.0: the body ends with the connection
    }
  }
  if (no_body) r.length_ = 0;
  out += "HTTP/1.1 ";
  append_number(out, static_cast<std::uint64_t>(status));
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!options.server_name.empty()) out.append("Server: ").append(options.server_name).append("\r\n");
  out += date_field();
  for (const auto& h : r.headers_) out.append(h.name).append(": ").append(h.value).append("\r\n");
  if (!no_body) {
    if (length) {
      out += "Content-Length: ";
      append_number(out, *length);
      out += "\r\n";
    } else if (r.chunked_) {
      out += "Transfer-Encoding: chunked\r\n";
    }
  }
  if (close) {
    out += "Connection: close\r\n";
  } else if (head.minor_version == 0) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (r.head_only_ || no_body) r.chunked_ = false;
  return {};
}

task<result<void>> connection::write_body(response& r, const_buffers body_bytes, bool now, deadline dl) {
  auto total = body_bytes.total_size();
  if (r.length_ && (r.written_ + total > *r.length_)) co_return errc::invalid_argument;
  r.written_ += total;
  if (r.head_only_ || total == 0 || (r.length_ && *r.length_ == 0)) co_return result<void>{};
  if (r.chunked_) {
    append_number(out, total, 16);
    out += "\r\n";
  }
  std::array<const_buffer, 18> parts{};
  auto pieces = body_bytes.view();
  if (total <= copy_limit || pieces.size() > parts.size() - 2) {
    for (auto p : pieces) out.append(reinterpret_cast<const char*>(p.data()), p.size());
    if (r.chunked_) out += "\r\n";
    if (!now) co_return result<void>{};
    co_return co_await flush(dl);
  }
  std::size_t n = 0;
  parts[n++] = as_bytes(out);
  for (auto p : pieces) parts[n++] = p;
  static constexpr std::string_view crlf = "\r\n";
  if (r.chunked_) parts[n++] = as_bytes(crlf);
  ++stats.writes;
  auto sent = co_await stream.write(std::span<const const_buffer>(parts.data(), n), dl);
  out.clear();
  co_return sent;
}

task<result<void>> connection::send_continue() {
  // The client waits for this before sending the body (RFC 9110 10.1.1); once a final
  // response started, the body is unwanted and the connection closes after it.
  if (body.done || !current->head_.expect_continue || continue_sent || current_response->started_) {
    co_return result<void>{};
  }
  continue_sent = true;
  out += "HTTP/1.1 100 Continue\r\n\r\n";
  co_return co_await flush();
}

task<result<std::size_t>> connection::read_body(mutable_buffer buf, deadline dl) {
  if (auto sent = co_await send_continue(); !sent) co_return unexpected(sent.error());
  auto n = co_await read_body_some(stream, in, body, buf, dl, deadline::after(options.body_timeout),
                                   error::body_timeout);
  co_return n;
}

task<result<serve_stats>> connection::run() {
  current.reset(new request(*this));
  auto& head = current->head_;
  for (;;) {
    // The next head: parsed from what is buffered; responses to the requests before it
    // leave, in one write, only when we must wait for more bytes.
    parser.reset();
    auto st = head_parser::status::incomplete;
    auto head_due = deadline::after(options.header_timeout);
    for (;;) {
      if (in.size() > 0) {
        st = parser.parse_request(in.view(), head);
        if (st != head_parser::status::incomplete) break;
      }
      if (auto sent = co_await flush(); !sent) {
        (void)co_await stream.close(deadline::after(std::chrono::seconds(1)));
        co_return unexpected(sent.error());
      }
      bool idle = in.size() == 0;
      auto space = in.room(read_chunk);
      auto got = co_await stream.read_some(space, idle ? deadline::after(options.idle_timeout) : head_due);
      if (!got) {
        if (got.error() == errc::timed_out && !idle) {
          (void)co_await answer_error(make_error_code(error::header_timeout));
          co_return stats;
        }
        (void)co_await stream.close(deadline::after(std::chrono::seconds(1)));
        if (got.error() == errc::end_of_stream || got.error() == errc::timed_out) co_return stats;
        co_return unexpected(got.error());
      }
      if (idle) head_due = deadline::after(options.header_timeout);
      in.end += *got;
    }
    if (st == head_parser::status::failed) {
      (void)co_await answer_error(make_error_code(parser.failure()));
      co_return stats;
    }
    // The head moves out of the input buffer, which the body may reuse.
    auto head_bytes = in.view().substr(0, parser.consumed());
    head_text.assign(head_bytes);
    const char* from = head_bytes.data();
    const char* to = head_text.data();
    head.method = moved(head.method, from, to);
    head.target = moved(head.target, from, to);
    head.upgrade = moved(head.upgrade, from, to);
    head.fields.rebase(from, to);
    in.consume(parser.consumed());
    ++stats.requests;

    if (head.framing == framing::content_length && head.content_length > options.limits.max_body) {
      (void)co_await answer_error(make_error_code(error::body_too_large));
      co_return stats;
    }
    body.start(head.framing, head.content_length, options.limits);
    continue_sent = false;
    response res(*this);
    current_response = &res;
    auto handled = co_await handle(*current, res);
    current_response = nullptr;
    if (upgraded) co_return stats;
    if (!res.started_) {
      // Nothing was sent: the body's own error if reading it failed, else 500.
      auto why = body.failure ? body.failure : make_error_code(errc::protocol_error);
      if (body.failure && body.failure.category() == category()) {
        (void)co_await answer_error(why);
        co_return stats;
      }
      std::string_view text = handled ? "handler sent no response\n" : "handler failed\n";
      res.close_ = true;
      (void)begin_response(res, 500, text.size());
      (void)co_await write_body(res, as_bytes(text), false, deadline::never());
    } else if (!res.finished_) {
      close = true;  // the client sees the body end early
    }
    if (!close && !body.done) {
      // An unread body is read and dropped, when small enough, to reach the next request.
      std::array<std::byte, 4096> sink{};
      std::uint64_t dropped = 0;
      while (!body.done && dropped <= drain_limit) {
        auto n = co_await read_body_some(stream, in, body, sink, deadline::after(options.body_timeout),
                                         deadline::never(), error::body_timeout);
        if (!n) break;
        dropped += *n;
      }
      if (!body.done) close = true;
    }
    if (close) {
      auto finished = co_await finish_connection();
      if (!finished) co_return unexpected(finished.error());
      co_return stats;
    }
    if (out.size() >= flush_limit) {
      if (auto sent = co_await flush(); !sent) co_return unexpected(sent.error());
    }
  }
}

task<result<serve_stats>> serve(any_stream stream, handler h, server_options options) {
  auto c = std::make_unique<connection>(std::move(stream), std::move(h), options);
  co_return co_await c->run();
}

task<result<serve_stats>> serve(any_stream stream, std::vector<std::byte> unread, handler h,
                                server_options options) {
  auto c = std::make_unique<connection>(std::move(stream), std::move(h), options);
  if (!unread.empty()) {
    auto space = c->in.room(unread.size());
    std::memcpy(space.data(), unread.data(), unread.size());
    c->in.end += unread.size();
  }
  co_return co_await c->run();
}

task<result<serve_stats>> serve(any_stream stream, handler h) {
  server_options options;
  co_return co_await serve(std::move(stream), std::move(h), options);
}

// -- request and response --------------------------------------------------------------------

task<result<std::size_t>> request::read_some(mutable_buffer buf, deadline dl) {
  return conn_->read_body(buf, dl);
}

task<result<std::string>> request::read_body(std::size_t max, deadline dl) {
  auto& c = *conn_;
  if (auto sent = co_await c.send_continue(); !sent) co_return unexpected(sent.error());
  auto whole = co_await read_whole_body(c.stream, c.in, c.body, max, dl,
                                        deadline::after(c.options.body_timeout), error::body_timeout);
  if (!whole && whole.error() == make_error_code(error::body_too_large)) c.body.failure = whole.error();
  co_return whole;
}

const fields& request::trailers() const noexcept { return conn_->body.chunked.trailers(); }

result<void> response::set_header(std::string_view name, std::string_view value) {
  if (started_) return errc::invalid_argument;
  if (auto ok = check_header(name, value); !ok) return ok;
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding") || iequals(name, "connection")) {
    return errc::invalid_argument;
  }
  headers_.push_back({std::string(name), std::string(value)});
  return {};
}

void response::close_after() noexcept { close_ = true; }

task<result<void>> response::send(int status, std::string_view body, deadline dl) {
  if (auto begun = conn_->begin_response(*this, status, body.size()); !begun) co_return begun;
  finished_ = true;
  // Not flushed: it leaves with the responses to requests pipelined behind this one.
  co_return co_await conn_->write_body(*this, as_bytes(body), false, conn_->write_due(dl));
}

task<result<void>> response::start(int status, std::optional<std::uint64_t> content_length, deadline dl) {
  (void)dl;
  co_return conn_->begin_response(*this, status, content_length);
}

task<result<void>> response::write(const_buffers body, deadline dl) {
  if (!started_ || finished_) co_return errc::invalid_argument;
  co_return co_await conn_->write_body(*this, body, true, conn_->write_due(dl));
}

task<result<void>> response::finish(std::span<const header> trailers, deadline dl) {
  (void)dl;
  if (!started_ || finished_) co_return errc::invalid_argument;
  finished_ = true;
  auto& out = conn_->out;
  if (chunked_) {
    for (const auto& t : trailers) {
      if (auto ok = check_header(t.name, t.value); !ok) co_return ok;
    }
    out += "0\r\n";
    for (const auto& t : trailers) out.append(t.name).append(": ").append(t.value).append("\r\n");
    out += "\r\n";
  } else if (length_ && written_ != *length_ && !head_only_) {
    conn_->close = true;  // the body is shorter than announced: the client sees it cut
    co_return errc::invalid_argument;
  }
  co_return result<void>{};
}

task<result<void>> response::finish(deadline dl) { return finish(std::span<const header>{}, dl); }

task<result<detached<any_stream>>> response::upgrade(std::string_view protocol, deadline dl) {
  auto& c = *conn_;
  const auto& head = c.current->head();
  if (started_ || head.upgrade.empty() || !c.body.done || !is_token(protocol))
    co_return errc::invalid_argument;
  started_ = true;
  finished_ = true;
  auto& out = c.out;
  out += "HTTP/1.1 101 Switching Protocols\r\n";
  for (const auto& h : headers_) out.append(h.name).append(": ").append(h.value).append("\r\n");
  out.append("Connection: Upgrade\r\nUpgrade: ").append(protocol).append("\r\n\r\n");
  if (auto sent = co_await c.flush(c.write_due(dl)); !sent) {
    c.close = true;
    co_return unexpected(sent.error());
  }
  auto rest = c.in.view();
  std::vector<std::byte> unread(reinterpret_cast<const std::byte*>(rest.data()),
                                reinterpret_cast<const std::byte*>(rest.data() + rest.size()));
  c.in.consume(rest.size());
  c.upgraded = true;
  co_return detached<any_stream>{std::move(c.stream), std::move(unread)};
}

// -- client ----------------------------------------------------------------------------------

struct client::impl {
  impl(any_stream s, const client_options& o) : stream(std::move(s)), options(o), parser(o.limits) {}
  any_stream stream;
  client_options options;
  head_parser parser;
  input_buffer in;
  std::string host;
  std::string head_text;
  std::string out;
  body_reader body;
  bool reusable = true;
  bool closed = false;
};

client::client(any_stream stream) : client(std::move(stream), client_options{}) {}
client::client(any_stream stream, client_options options)
    : impl_(std::make_unique<impl>(std::move(stream), options)) {}
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;
client::~client() = default;

void client::set_host(std::string host) { impl_->host = std::move(host); }

task<result<response_head>> client::send(const outgoing& r, deadline dl) {
  auto& c = *impl_;
  if (c.closed) co_return errc::closed;
  if (!c.reusable || !c.body.done) co_return errc::invalid_argument;
  if (!is_token(r.method) || r.target.empty() || !valid_target(r.method, r.target))
    co_return errc::invalid_argument;
  bool has_host = false;
  for (const auto& h : r.headers) {
    if (auto ok = check_header(h.name, h.value); !ok) co_return unexpected(ok.error());
    if (iequals(h.name, "host")) has_host = true;
    if (iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding"))
      co_return errc::invalid_argument;
  }
  if (!has_host && (c.host.empty() || !valid_host(c.host))) co_return errc::invalid_argument;
  auto& out = c.out;
  out.clear();
  out.append(r.method).append(" ").append(r.target).append(" HTTP/1.1\r\n");
  if (!has_host) out.append("Host: ").append(c.host).append("\r\n");
  for (const auto& h : r.headers) out.append(h.name).append(": ").append(h.value).append("\r\n");
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT") {
    out += "Content-Length: ";
    append_number(out, r.body.size());
    out += "\r\n";
  }
  out += "\r\n";
  std::array<const_buffer, 2> parts{as_bytes(out), as_bytes(r.body)};
  auto sent = co_await c.stream.write(std::span<const const_buffer>(parts), dl);
  if (!sent) {
    c.reusable = false;
    co_return unexpected(sent.error());
  }
  auto head_due = deadline::earlier(dl, deadline::after(c.options.header_timeout));
  response_head head;
  for (;;) {
    c.parser.reset();
    auto st = head_parser::status::incomplete;
    for (;;) {
      if (c.in.size() > 0) {
        st = c.parser.parse_response(c.in.view(), r.method, head);
        if (st != head_parser::status::incomplete) break;
      }
      auto space = c.in.room(read_chunk);
      auto got = co_await c.stream.read_some(space, head_due);
      if (!got) {
        c.reusable = false;
        if (got.error() == errc::end_of_stream) co_return unexpected(make_error_code(error::truncated));
        if (got.error() == errc::timed_out && !(head_due == dl))
          co_return unexpected(make_error_code(error::header_timeout));
        co_return unexpected(got.error());
      }
      c.in.end += *got;
    }
    if (st == head_parser::status::failed) {
      c.reusable = false;
      co_return unexpected(make_error_code(c.parser.failure()));
    }
    if (head.status >= 100 && head.status < 200 && head.status != 101) {
      c.in.consume(c.parser.consumed());  // interim: 100 Continue, 103 Early Hints
      continue;
    }
    break;
  }
  auto head_bytes = c.in.view().substr(0, c.parser.consumed());
  c.head_text.assign(head_bytes);
  const char* from = head_bytes.data();
  const char* to = c.head_text.data();
  head.reason = moved(head.reason, from, to);
  head.fields.rebase(from, to);
  c.in.consume(c.parser.consumed());
  if (head.framing == framing::content_length && head.content_length > c.options.limits.max_body) {
    c.reusable = false;
    co_return unexpected(make_error_code(error::body_too_large));
  }
  c.body.start(head.framing, head.content_length, c.options.limits);
  c.reusable = head.keep_alive && head.status != 101;
  co_return head;
}

task<result<std::size_t>> client::read_some(mutable_buffer buf, deadline dl) {
  auto& c = *impl_;
  auto n = co_await read_body_some(c.stream, c.in, c.body, buf, dl, dl, error::body_timeout);
  if (!n && n.error() != errc::end_of_stream && n.error() != errc::timed_out) c.reusable = false;
  co_return n;
}

task<result<std::string>> client::read_body(std::size_t max, deadline dl) {
  auto& c = *impl_;
  auto whole = co_await read_whole_body(c.stream, c.in, c.body, max, dl, dl, error::body_timeout);
  if (!whole) c.reusable = false;
  co_return whole;
}

const fields& client::trailers() const noexcept { return impl_->body.chunked.trailers(); }

bool client::reusable() const noexcept { return impl_->reusable && impl_->body.done && !impl_->closed; }

result<detached<any_stream>> client::take_stream() {
  auto& c = *impl_;
  if (c.closed) return errc::closed;
  c.closed = true;
  auto rest = c.in.view();
  std::vector<std::byte> unread(reinterpret_cast<const std::byte*>(rest.data()),
                                reinterpret_cast<const std::byte*>(rest.data() + rest.size()));
  c.in.consume(rest.size());
  return detached<any_stream>{std::move(c.stream), std::move(unread)};
}

task<result<void>> client::close(deadline dl) {
  auto& c = *impl_;
  if (c.closed) co_return errc::closed;
  c.closed = true;
  co_return co_await c.stream.close(dl);
}

// -- files: response::send_file ---------------------------------------------------------------
// (Added with the CLI's file server: sendfile(2) where the stream is a bare descriptor,
// pread + write through the stream elsewhere.)

namespace {

constexpr std::size_t file_piece = 64 * 1024;
/// One sendfile call moves at most this much, so a huge file does not starve the loop.
constexpr std::size_t sendfile_piece = 1 << 20;

/// sendfile_refused: sendfile(2) cannot join this pair of descriptors (a file that cannot
/// be mapped, an output it does not support); the caller falls back to read + write.
bool sendfile_refused(int err) noexcept { return err == EINVAL || err == ENOSYS || err == EOPNOTSUPP; }

/// send_native sends `length` bytes of `file` from `offset` into the descriptor `out` with
/// sendfile(2), waiting for room through the loop. `sent` counts what left. Returns
/// not_supported when sendfile refuses before the first byte.
task<result<void>> send_native(int out, int file, std::uint64_t offset, std::uint64_t length,
                               std::uint64_t& sent, std::chrono::milliseconds wait_limit, deadline dl) {
  while (sent < length) {
    auto off = static_cast<off_t>(offset + sent);
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(length - sent, sendfile_piece));
    ssize_t n = ::sendfile(out, file, &off, want);
    if (n > 0) {
      sent += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n == 0) co_return errc::end_of_stream;  // the file is shorter than announced
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      auto until = deadline::earlier(dl, deadline::after(wait_limit));
      auto room = wait_writable(out, until);
      auto ready = co_await room;
      if (ready) co_return unexpected(ready);
      continue;
    }
    if (sent == 0 && sendfile_refused(err)) co_return errc::not_supported;
    co_return unexpected(from_errno(err));
  }
  co_return result<void>{};
}

}  // namespace

task<result<void>> response::send_file(int fd, std::uint64_t offset, std::uint64_t length, deadline dl) {
  auto& c = *conn_;
  if (!started_ || finished_ || fd < 0) co_return errc::invalid_argument;
  if (length_ && (written_ + length > *length_ || written_ + length < written_))
    co_return errc::invalid_argument;
  written_ += length;
  if (head_only_ || length == 0 || (length_ && *length_ == 0)) co_return result<void>{};
  if (chunked_) {
    append_number(c.out, length, 16);
    c.out += "\r\n";
  }
  auto failed = [&](std::error_code ec) -> result<void> {
    // The body is cut: nothing more may follow (finish() refuses) and the connection
    // closes after it, so the client sees it end early.
    finished_ = true;
    c.close = true;
    return unexpected(ec);
  };
  if (auto flushed = co_await c.flush(c.write_due(dl)); !flushed) co_return failed(flushed.error());
  std::uint64_t sent = 0;
  if (auto out = query<fact::native_handle>(c.stream)) {
    auto native = co_await send_native(*out, fd, offset, length, sent, c.options.write_timeout, dl);
    c.stats.sendfile_bytes += sent;
    if (!native && native.error() != errc::not_supported) co_return failed(native.error());
  }
  if (sent < length) {
    auto piece = std::make_unique<std::byte[]>(file_piece);
    while (sent < length) {
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(length - sent, file_piece));
      ssize_t n = ::pread(fd, piece.get(), want, static_cast<off_t>(offset + sent));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) co_return failed(from_errno(errno));
      if (n == 0) co_return failed(make_error_code(errc::end_of_stream));
      ++c.stats.writes;
      auto wrote =
          co_await c.stream.write(const_buffer(piece.get(), static_cast<std::size_t>(n)), c.write_due(dl));
      if (!wrote) co_return failed(wrote.error());
      sent += static_cast<std::uint64_t>(n);
    }
  }
  if (chunked_) c.out += "\r\n";
  co_return result<void>{};
}

}  // namespace strata::http1
