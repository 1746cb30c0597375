// http1_files — a static file server for http1::serve: the files under one directory,
// answered to GET and HEAD with their content types, byte ranges and conditional
// requests (RFC 9110 sections 13 and 14), sent with response::send_file (sendfile(2)
// where the stream allows it). `strata listen 'tcp-listen:... | http' --serve DIR` is
// this handler.
//
// Paths are confined to the directory: the request path is percent-decoded once, a ".."
// segment is refused (403), and the file is opened beneath the directory with
// openat2(RESOLVE_BENEATH), so no symbolic link leads out of it either (403); where the
// kernel has no openat2, the resolved path must lie inside the directory's own.
//
// The pieces a request goes through (decode_path, parse_range, parse_http_date,
// content_type) are plain functions, tested and usable on their own.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "strata/app/http.hpp"
#include "strata/app/http1.hpp"
#include "strata/app/http2.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::http1 {

/// path_error is why a request target names no file of the served directory.
enum class path_error {
  none,
  malformed,  ///< not a path ("*", authority form), a malformed %-escape or a NUL: 400
  traversal,  ///< a ".." segment (also written %2e%2e): 403
};

/// decoded_path is a request target as a path relative to the served directory.
struct decoded_path {
  std::string relative;         ///< "a/b" ("" for the directory itself)
  bool trailing_slash = false;  ///< the path ended in '/' (a directory was asked for)
  std::string_view raw_path;    ///< the target's path as sent, before its query (a view into it)
  std::string_view query;       ///< what followed '?' (without it), or empty
  path_error error = path_error::none;
};

/// decode_path turns a request target into a path relative to the served directory: the
/// path of an origin-form ("/a/b%20c?q") or absolute-form ("http://h/a") target, its
/// query and fragment dropped, percent-decoded once, "." and empty segments removed
/// ("/a//./b/" is "a/b"). `error` says why a target names no file.
decoded_path decode_path(std::string_view target);

/// byte_range is one satisfiable range of a representation: [first, first + length).
struct byte_range {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};

/// range_request is what a Range field asks of a representation of `size` bytes.
struct range_request {
  enum kind { whole, partial, unsatisfiable } what = whole;
  byte_range range{};
};

/// parse_range reads a Range field value ("bytes=0-99", "bytes=100-", "bytes=-500")
/// against a representation of `size` bytes (RFC 9110 14.1.2, 14.2). One range gives
/// partial (the last position clamped to the size), or unsatisfiable when it starts at
/// or beyond the end (416). Anything else answers the whole representation: a malformed
/// value or another unit is ignored, as the RFC allows, and so are several ranges (this
/// server does not send multipart/byteranges).
range_request parse_range(std::string_view value, std::uint64_t size) noexcept;

/// parse_http_date reads an HTTP-date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
/// and the obsolete RFC 850 and asctime forms recipients must accept (RFC 9110 5.6.7);
/// nullopt when it is none of them.
std::optional<std::time_t> parse_http_date(std::string_view text) noexcept;
/// format_http_date writes `t` as an IMF-fixdate.
std::string format_http_date(std::time_t t);

/// content_type is the media type for a file name, by its extension ("index.html" is
/// "text/html; charset=utf-8"), or "application/octet-stream" when unknown.
std::string_view content_type(std::string_view file_name) noexcept;

/// files_options tune file_server.
struct files_options {
  /// index is the file served for a directory ("index.html"); empty: a directory is 404.
  std::string index = "index.html";
};

/// served is what file_server::serve answered: the status and the body bytes sent.
struct served {
  int status = 0;
  std::uint64_t bytes = 0;
};

/// file_server serves the regular files under one directory. Copies share the opened
/// directory; it may serve many connections at once (one event loop thread).
///
/// - GET and HEAD only; other methods get 405 with "Allow: GET, HEAD".
/// - A directory asked without its trailing '/' is redirected there (301); with it, its
///   index file is served, or 404. No listings.
/// - Content-Type by extension, Last-Modified, Accept-Ranges: bytes. If-Modified-Since
///   not older than the file's time gives 304. A single Range gives 206 with
///   Content-Range (If-Range honoured with the Last-Modified date); an unsatisfiable one
///   416 with "Content-Range: bytes */SIZE"; several ranges give the whole file (200).
/// - A missing file is 404; anything that is not a regular file, a ".." segment or a
///   path that leads out of the directory (through a symbolic link too) is 403.
class file_server {
 public:
  /// open opens `root` (which must be a directory) for serving. Errors: the open(2)
  /// errors (ENOENT, ENOTDIR, EACCES).
  static result<file_server> open(std::string root, files_options options = {});

  /// serve answers `req` on `res`, as a handler does (see the class comment), and says
  /// what it answered. Errors: the stream's (the response may be cut; the connection
  /// then closes).
  task<result<served>> serve(request& req, response& res) const;

  /// serve answers an HTTP/2 request the same way (without sendfile: DATA frames).
  task<result<served>> serve(http2::request& req, http2::response& res) const;

  /// as_handler is serve() as an http1::handler for http1::serve.
  handler as_handler() const;
  /// as_handlers is serve() for both protocols, for http::serve.
  http::handlers as_handlers() const;

  /// root is the directory as given to open().
  const std::string& root() const noexcept;

 private:
  struct state;
  template <class Request, class Response>
  static task<result<served>> serve_any(const state& s, Request& req, Response& res);
  explicit file_server(std::shared_ptr<const state> s) noexcept : state_(std::move(s)) {}
  std::shared_ptr<const state> state_;
};

}  // namespace strata::http1
