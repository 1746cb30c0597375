// http1 — HTTP/1.1 (RFC 9110, RFC 9112) server and client over any reliable byte stream.
//
// row: requires stream reliable ordered
//      provides (application: the stack ends here; requests and responses, not bytes)
//      passes   secure authenticated domain
// spec: tcp-listen:127.0.0.1:8080 | http1          (the CLI serves files with --serve DIR)
//       unix:/run/app.sock | http1                  (the CLI fetches a URL over it)
//
// The protocol is sans-I/O (head_parser, chunked_decoder: bytes in, views and framing
// out, no allocation per field) under two thin coroutine drivers: serve() runs one
// connection's requests through a handler, client sends requests and streams responses.
// Every byte a peer controls has a limit (limits); a violation is a typed error (error),
// which a server answers with its status code and a close.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::http1 {

/// row is http1's capability declaration. HTTP ends the stack: what it provides above
/// is requests and responses, so it passes on only what describes the connection.
inline constexpr capability_row row{
    .name = "http1",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop_set{},
    .provided_value = {},
    .passed = prop::secure | prop::authenticated | prop::domain,
};

/// error is what goes wrong in HTTP/1.1, each code refining a strata::errc (compare with
/// `ec == errc::protocol_error`); status_for gives the status a server answers with.
enum class error {
  bad_request_line = 1,     ///< protocol_error (400): malformed request line
  bad_status_line,          ///< protocol_error: malformed status line (client side)
  bad_version,              ///< protocol_error (400): malformed HTTP-version
  version_not_supported,    ///< protocol_error (505): an HTTP major version other than 1
  bad_line_ending,          ///< protocol_error (400): a CR without LF, or an LF without CR
  bad_field,                ///< protocol_error (400): malformed field line or invalid character
  whitespace_before_colon,  ///< protocol_error (400): "Name : value" (RFC 9112 5.1)
  obsolete_line_folding,    ///< protocol_error (400): a field line continued on the next line
  bad_host,                 ///< protocol_error (400): Host missing (HTTP/1.1), repeated or malformed
  bad_content_length,       ///< protocol_error (400): not a number, or differing values
  conflicting_framing,      ///< protocol_error (400): Transfer-Encoding with Content-Length, or in HTTP/1.0
  bad_transfer_encoding,    ///< protocol_error (400): chunked not last, or applied twice
  unknown_transfer_coding,  ///< protocol_error (501): a transfer coding other than chunked
  bad_chunk,                ///< protocol_error (400): malformed chunk size, extension or terminator
  expectation_failed,       ///< protocol_error (417): an Expect other than 100-continue
  uri_too_long,             ///< message_too_large (414): the request line is over its limit
  header_too_large,         ///< message_too_large (431): the header block is over its limit
  too_many_fields,          ///< message_too_large (431): more field lines than the limit
  body_too_large,           ///< message_too_large (413): the body is over its limit
  header_timeout,           ///< timed_out (408): the header block did not arrive in time
  body_timeout,             ///< timed_out (408): the body did not arrive in time
  truncated,                ///< broken: the peer closed the connection inside a message
  bad_response,             ///< protocol_error: the server's response cannot be framed
};

/// category is the std::error_category of http1::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

/// status_for is the status code a server answers `e` with (400 for malformed requests,
/// 413, 414, 417, 431, 501, 505; 408 for the timeouts); 400 for codes of no status.
int status_for(error e) noexcept;

/// reason_phrase is the standard reason phrase of `status` ("OK", "Not Found"...), or
/// "Unknown" for codes it does not know.
std::string_view reason_phrase(int status) noexcept;

/// date_now is the current time as an IMF-fixdate ("Sat, 05 Dec 2026 06:10:00 GMT") for
/// Date fields, formatted at most once a second per thread. The view stays valid on the
/// calling thread until its next call.
std::string_view date_now() noexcept;

/// limits bound everything a peer sends. The defaults suit a public server.
struct limits {
  std::size_t max_request_line = 8 * 1024;    ///< request or status line (414 above)
  std::size_t max_header_block = 64 * 1024;   ///< start line and fields together (431 above)
  std::size_t max_fields = 100;               ///< field lines (431 above)
  std::uint64_t max_body = 16ull << 20;       ///< body bytes, whatever the framing (413 above)
  std::size_t max_chunk_line = 4096;          ///< a chunk's size line with its extensions
  std::size_t max_trailer_block = 16 * 1024;  ///< the trailer section of a chunked body
};

/// field is one field line, its name and value as views (into the parser's input, or into
/// what the caller keeps alive). The value has no leading or trailing whitespace.
struct field {
  std::string_view name;
  std::string_view value;
};

/// fields is a message's field section in received order.
class fields {
 public:
  /// get is the value of the first field named `name` (case-insensitive), if any.
  std::optional<std::string_view> get(std::string_view name) const noexcept;
  /// count counts the fields named `name`.
  std::size_t count(std::string_view name) const noexcept;
  /// has_token says whether any field named `name` holds `token` in its comma-separated
  /// list, case-insensitively ("Connection: keep-alive, Upgrade" has "upgrade").
  bool has_token(std::string_view name, std::string_view token) const noexcept;
  std::span<const field> all() const noexcept { return items_; }
  std::size_t size() const noexcept { return items_.size(); }
  void clear() noexcept { items_.clear(); }
  void add(field f) { items_.push_back(f); }
  /// rebase moves every view after the bytes they point into were copied from `from` to
  /// `to` (a head kept beyond its input buffer).
  void rebase(const char* from, const char* to) noexcept;

 private:
  std::vector<field> items_;
};

/// framing is how a message's body is delimited (RFC 9112 section 6.3).
enum class framing {
  none,            ///< no body (GET without Content-Length, 204, 304, HEAD responses...)
  content_length,  ///< exactly content_length bytes
  chunked,         ///< chunked transfer coding, maybe with trailers
  until_close,     ///< a response body that ends when the server closes the connection
};

/// request_head is a parsed request head; its views point into the parser's input.
struct request_head {
  std::string_view method;
  std::string_view target;  ///< as sent: origin-form "/a?b", absolute-form, authority-form or "*"
  int minor_version = 1;    ///< HTTP/1.<minor>: 0 or 1
  http1::fields fields;
  http1::framing framing = framing::none;
  std::uint64_t content_length = 0;  ///< for framing::content_length
  bool keep_alive = true;            ///< the connection may carry another request after this one
  bool expect_continue = false;      ///< "Expect: 100-continue"
  /// upgrade is the Upgrade field's value when Connection names "upgrade" (an offer to
  /// switch protocols: "websocket", "h2c"); empty otherwise.
  std::string_view upgrade;
};

/// response_head is a parsed response head; its views point into the parser's input.
struct response_head {
  int status = 0;
  std::string_view reason;
  int minor_version = 1;
  http1::fields fields;
  http1::framing framing = framing::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
};

/// head_parser finds and parses one message head at the start of its input. It is fed
/// the same growing input (the unconsumed bytes of the connection, starting at the
/// message) until it completes; it remembers how far it scanned, so a head that arrives a
/// byte at a time costs linear time. Strict RFC 9112: every line ends in CRLF, field names
/// are tokens with no whitespace before the colon, values hold no control characters, no
/// line folding, one Host, Content-Length and Transfer-Encoding never together.
class head_parser {
 public:
  enum class status { incomplete, complete, failed };

  explicit head_parser(const limits& l = {}) noexcept : limits_(l) {}

  /// parse_request looks at `input` (the bytes received so far, from the start of the
  /// message). complete: `out` is filled and consumed() tells the head's size; failed:
  /// failure() tells why. Empty lines before a request line are skipped (RFC 9112 2.2).
  status parse_request(std::string_view input, request_head& out);
  /// parse_response likewise, for the response to a request with `request_method` (HEAD
  /// and CONNECT responses are framed differently).
  status parse_response(std::string_view input, std::string_view request_method, response_head& out);

  std::size_t consumed() const noexcept { return consumed_; }
  error failure() const noexcept { return failure_; }
  /// reset prepares the parser for the next message.
  void reset() noexcept {
    scanned_ = 0;
    consumed_ = 0;
    skipped_ = 0;
    line_start_ = 0;
    first_line_end_ = 0;
  }

 private:
  status find_end(std::string_view input, std::size_t line_limit);
  status fail(error e) noexcept {
    failure_ = e;
    return status::failed;
  }

  limits limits_;
  std::size_t scanned_ = 0;   // input before this holds no end of the head
  std::size_t skipped_ = 0;   // leading empty lines
  std::size_t consumed_ = 0;  // the head's size, once complete
  std::size_t line_start_ = 0;
  std::size_t first_line_end_ = 0;  // past the start line's LF; 0 until found
  error failure_{};
};

/// chunked_decoder is the sans-I/O decoder of the chunked transfer coding (RFC 9112
/// section 7.1). Fed the unconsumed body bytes, it returns one run of data at a time as a
/// view into its input, and the trailer fields at the end.
class chunked_decoder {
 public:
  explicit chunked_decoder(const limits& l = {}) noexcept : limits_(l) {}

  struct step {
    std::size_t consumed = 0;  ///< bytes of the input used (framing and data)
    std::string_view data;     ///< body bytes: a view into the input (within `consumed`)
    bool done = false;         ///< the last chunk and the trailers are in
    bool failed = false;       ///< see failure()
  };
  /// decode takes what it can from `input`, returning at most `max_data` body bytes. A
  /// step that consumed nothing and is neither done nor failed needs more input (keep
  /// the unconsumed bytes and add to them; the next input starts at the first of them).
  step decode(std::string_view input, std::size_t max_data = static_cast<std::size_t>(-1));

  error failure() const noexcept { return failure_; }
  /// trailers are the trailer fields, once done (views into the decoder's own copy).
  const http1::fields& trailers() const noexcept { return trailers_; }
  std::uint64_t body_size() const noexcept { return total_; }

 private:
  enum class state { size_line, data, data_end, trailers, done, failed };
  step fail(error e) noexcept;
  step decode_step(std::string_view input, std::size_t max_data);

  limits limits_;
  state state_ = state::size_line;
  std::uint64_t remaining_ = 0;  // of the current chunk
  std::uint64_t total_ = 0;
  std::size_t scanned_ = 0;  // of the line being looked for
  std::string trailer_text_;
  http1::fields trailers_;
  error failure_{};
};

/// header is a field to send. Names and values are checked before anything is written:
/// a name must be a token and a value must hold no CR, LF or NUL (no response splitting).
struct header {
  std::string name;
  std::string value;
};

class connection;

/// request is one request a server received: its head and its body, which the handler
/// may read whole (read_body) or in pieces (read_some), or leave unread.
class request {
 public:
  const request_head& head() const noexcept { return head_; }
  std::string_view method() const noexcept { return head_.method; }
  std::string_view target() const noexcept { return head_.target; }
  /// header is the value of the first field named `name`, if any.
  std::optional<std::string_view> header(std::string_view name) const noexcept {
    return head_.fields.get(name);
  }
  /// read_some reads body bytes into `buf`: 1..size, or end_of_stream after the last.
  /// With "Expect: 100-continue" the first read sends the interim 100 response.
  /// Errors: end_of_stream, http1::error (bad_chunk, body_too_large, truncated,
  /// body_timeout), the stream's errors.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// read_body reads the rest of the body into a string of at most `max` bytes
  /// (body_too_large beyond it).
  task<result<std::string>> read_body(std::size_t max, deadline dl);
  /// trailers are the trailer fields of a chunked body, once it was read to its end.
  const fields& trailers() const noexcept;

 private:
  friend class connection;
  explicit request(connection& c) noexcept : conn_(&c) {}
  connection* conn_;
  request_head head_;
};

/// response is the writer of the response to one request. Set the headers, then either
/// send() a whole body, or start() and write() pieces and finish(). Content-Length, or
/// chunked coding when the length is unknown, is chosen here; a HEAD request gets the
/// head only. The response leaves when the connection next waits to read, together with
/// those of requests pipelined before it (one write for many small responses).
class response {
 public:
  /// set_header adds a field (checked as described at `header`). Content-Length,
  /// Transfer-Encoding and Connection are the connection's; setting them is refused.
  result<void> set_header(std::string_view name, std::string_view value);
  /// close_after asks to close the connection after this response.
  void close_after() noexcept;
  /// send sends `status`, the headers and the whole `body`.
  /// Errors: invalid_argument (started already, or a bad status), the stream's errors.
  task<result<void>> send(int status, std::string_view body, deadline dl);
  /// start sends the head; with a content_length the body must be exactly that long,
  /// without one it is sent chunked (HTTP/1.1) or until close (HTTP/1.0).
  task<result<void>> start(int status, std::optional<std::uint64_t> content_length, deadline dl);
  /// write sends body bytes (large pieces go without being copied).
  task<result<void>> write(const_buffers body, deadline dl);
  /// finish ends the body, with trailer fields for a chunked one.
  task<result<void>> finish(std::span<const header> trailers, deadline dl);
  task<result<void>> finish(deadline dl);
  /// upgrade accepts the client's offer to switch protocols (request_head::upgrade):
  /// it sends "101 Switching Protocols" with the headers set, "Connection: Upgrade" and
  /// "Upgrade: <protocol>" (after the responses to earlier requests), then hands the
  /// connection over: the stream and the bytes the client sent after this request, the
  /// new protocol's first. serve() returns once the handler does, leaving the stream to
  /// its new owner. Errors: invalid_argument (no offer, a response started, the request
  /// body not read to its end), the stream's errors.
  task<result<detached<any_stream>>> upgrade(std::string_view protocol, deadline dl);
  bool started() const noexcept { return started_; }
  bool finished() const noexcept { return finished_; }

  // -- files (send_file; added with the CLI's file server, strata listen --serve) --------

  /// send_file sends `length` bytes of the open file `fd`, from `offset`, as body bytes
  /// of a started response (start() with a content_length, or chunked; then finish()).
  /// When the stream below is a descriptor with nothing between it and HTTP
  /// (fact::native_handle: tcp, unix, a pipe; not tls) the bytes go with sendfile(2) and
  /// never enter the process; otherwise, or where sendfile refuses the pair of
  /// descriptors, they are read with pread(2) and written through the stream in 64 KiB
  /// pieces. Responses buffered before it leave first. `fd` stays the caller's and its
  /// file offset does not move. A HEAD request counts the bytes and sends none. Each wait
  /// for the peer is bounded by the server's write_timeout, the whole call by `dl`.
  /// Errors: invalid_argument (not started, finished, fd < 0, more than the announced
  /// length), end_of_stream (the file ended before `length` bytes), the file's read
  /// errors, the stream's errors, timed_out. A failure after bytes were sent cuts the
  /// body: the connection closes after it.
  task<result<void>> send_file(int fd, std::uint64_t offset, std::uint64_t length, deadline dl);

 private:
  friend class connection;
  explicit response(connection& c) noexcept : conn_(&c) {}
  connection* conn_;
  std::vector<header> headers_;
  bool started_ = false;
  bool finished_ = false;
  bool close_ = false;
  bool chunked_ = false;
  bool head_only_ = false;
  std::optional<std::uint64_t> length_;
  std::uint64_t written_ = 0;
};

/// handler serves one request. It returns when the response is finished (an unfinished
/// response is completed with 500 if nothing was sent yet, or the connection is closed).
using handler = std::function<task<result<void>>(request&, response&)>;

/// server_options tune serve().
struct server_options {
  http1::limits limits{};
  std::chrono::milliseconds header_timeout{10'000};  ///< for each head, from its first byte
  std::chrono::milliseconds body_timeout{30'000};    ///< for each body read
  std::chrono::milliseconds idle_timeout{60'000};    ///< between requests on a kept-alive connection
  std::chrono::milliseconds write_timeout{30'000};   ///< for each write
  std::size_t max_requests = 0;                      ///< per connection; 0: no limit
  std::string server_name = "strata";                ///< the Server field; empty: none
};

/// serve_stats count what serve() did on one connection.
struct serve_stats {
  std::uint64_t requests = 0;
  std::uint64_t errors_answered = 0;  ///< requests refused with a 4xx/5xx by the parser
  std::uint64_t writes = 0;           ///< write calls on the stream
  std::uint64_t sendfile_bytes = 0;   ///< body bytes response::send_file sent with sendfile(2)
};

/// serve runs the requests of one connection through `h` until the client closes it, a
/// request asks to close, an error is answered or a timeout passes; then it closes the
/// stream. A malformed request is answered with its status and "Connection: close".
/// Returns what happened, or the error that ended the connection.
task<result<serve_stats>> serve(any_stream stream, handler h, server_options options);
task<result<serve_stats>> serve(any_stream stream, handler h);
/// serve with `unread`: bytes already read from `stream` (by a sniffer) come first.
task<result<serve_stats>> serve(any_stream stream, std::vector<std::byte> unread, handler h,
                                server_options options);

/// client_options tune a client.
struct client_options {
  http1::limits limits{};
  std::chrono::milliseconds header_timeout{30'000};
};

/// client sends requests on one connection and reads their responses, one at a time
/// (keep-alive: the next request may go once the previous response's body is read).
class client {
 public:
  explicit client(any_stream stream);
  client(any_stream stream, client_options options);
  client(client&&) noexcept;
  client& operator=(client&&) noexcept;
  ~client();

  /// outgoing is a request to send. Host defaults to what was given to set_host.
  struct outgoing {
    std::string method = "GET";
    std::string target = "/";
    std::vector<header> headers{};
    std::string body{};
  };

  /// set_host is the Host field sent with every request that sets none.
  void set_host(std::string host);
  /// send sends `r` and waits for the response head (an interim 1xx is skipped).
  /// Errors: invalid_argument (bad header), http1::error for a malformed response,
  /// the stream's errors.
  task<result<response_head>> send(const outgoing& r, deadline dl);
  /// read_some reads the current response's body: 1..size bytes, or end_of_stream.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// read_body reads the rest of the body, at most `max` bytes (body_too_large beyond).
  task<result<std::string>> read_body(std::size_t max, deadline dl);
  /// trailers of the last chunked body.
  const fields& trailers() const noexcept;
  /// reusable says whether another request may follow on this connection.
  bool reusable() const noexcept;
  /// take_stream ends the client and hands its connection over with the bytes received
  /// after the last response's head: after "101 Switching Protocols", the new protocol's
  /// first bytes. Errors: closed (already closed or taken).
  result<detached<any_stream>> take_stream();
  task<result<void>> close(deadline dl);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace strata::http1

template <>
struct std::is_error_code_enum<strata::http1::error> : std::true_type {};
