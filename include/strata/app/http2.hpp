// http2 — HTTP/2 (RFC 9113) server and client over any reliable byte stream, on libnghttp2.
//
// row: requires stream reliable ordered
//      provides (application: requests and responses on concurrent streams)
//      passes   secure authenticated domain
// spec: tcp:127.0.0.1:8443 | tls(alpn=h2, ca=ca.pem) | http2     (client)
//       tcp-listen:127.0.0.1:8080 | http2                          (prior-knowledge h2c server)
//
// nghttp2 is the sans-I/O engine (frames and HPACK in, frames out, flow control); strata
// owns the connection: a reader task feeds what arrives, a writer task sends what the
// engine produced (coalesced into large writes), and one task per request stream runs the
// handler. The API mirrors http1's request and response, so one generic handler serves
// both protocols. Limits guard every resource a peer can make the server spend: concurrent
// streams and handlers, header list size and count (HPACK bombs), CONTINUATION frames,
// the rate of stream resets (CVE-2023-44487), body size, flow-control windows (bounded
// buffering).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "strata/app/http1.hpp"
#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::http2 {

/// row is http2's capability declaration (an application protocol, like http1).
inline constexpr capability_row row{
    .name = "http2",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop_set{},
    .provided_value = {},
    .passed = prop::secure | prop::authenticated | prop::domain,
};

/// preface is what every HTTP/2 client sends first (RFC 9113 3.4): a server sniffing a
/// cleartext connection tells h2 from HTTP/1.1 by it.
inline constexpr std::string_view preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// error is what goes wrong in HTTP/2, each code refining a strata::errc. The error codes
/// of RFC 9113 section 7 a peer sent are peer_error + code.
enum class error {
  not_http2 = 1,      ///< protocol_error: the peer's first bytes are not the HTTP/2 preface
  connection_failed,  ///< protocol_error: the session failed (a frame, HPACK or flow-control error)
  going_away,         ///< broken: the peer sent GOAWAY before this stream was processed
  stream_reset,       ///< broken: the stream was reset (by the peer or the session)
  refused_stream,     ///< broken: the server refused the stream (retry elsewhere)
  header_too_large,   ///< message_too_large: a header list over its limit
  body_too_large,     ///< message_too_large: a body over its limit
  enhance_your_calm,  ///< protocol_error: the peer abused the connection; it was closed
  bad_response,       ///< protocol_error: a response without a valid :status
  no_authority,  ///< invalid_argument: a request with no authority (set_host, client_options::authority or a
                 ///< Host header)
  /// peer_error + n: the peer ended the stream or connection with RFC 9113 error code n.
  peer_error = 1000,
};

/// category is the std::error_category of http2::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

/// request_head is a request's pseudo-header fields and fields (views stay valid while the
/// request is handled).
struct request_head {
  std::string_view method;
  std::string_view scheme;
  std::string_view authority;
  std::string_view path;
  std::string_view protocol;  ///< :protocol of an extended CONNECT (RFC 8441), e.g. "websocket"
  http1::fields fields;
  std::int32_t stream_id = 0;
};

class server_session;
struct stream_state;

/// request is one request a server received on its stream.
class request {
 public:
  const request_head& head() const noexcept { return head_; }
  std::string_view method() const noexcept { return head_.method; }
  /// target is :path (the origin-form target, as http1::request::target).
  std::string_view target() const noexcept { return head_.path; }
  std::optional<std::string_view> header(std::string_view name) const noexcept {
    return head_.fields.get(name);
  }
  /// read_some reads body bytes: 1..size, or end_of_stream after the last. Reading opens
  /// the flow-control window again, so an unread body stops its sender, not the server.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// read_body reads the rest of the body into a string of at most `max` bytes.
  task<result<std::string>> read_body(std::size_t max, deadline dl);
  const http1::fields& trailers() const noexcept;

 private:
  friend class server_session;
  request(server_session& s, stream_state& st) noexcept : session_(&s), stream_(&st) {}
  server_session* session_;
  stream_state* stream_;
  request_head head_;
};

/// response writes the response on a request's stream; the same calls as http1::response.
class response {
 public:
  /// set_header adds a field; names are sent in lower case. Connection-specific fields
  /// (Connection, Keep-Alive, Transfer-Encoding, Upgrade) are refused, as is bad text.
  result<void> set_header(std::string_view name, std::string_view value);
  task<result<void>> send(int status, std::string_view body, deadline dl);
  task<result<void>> start(int status, std::optional<std::uint64_t> content_length, deadline dl);
  /// write queues body bytes; it waits while more than the stream's send buffer limit is
  /// queued (the peer's flow-control window sets the pace).
  task<result<void>> write(const_buffers body, deadline dl);
  task<result<void>> finish(std::span<const http1::header> trailers, deadline dl);
  task<result<void>> finish(deadline dl);
  /// tunnel accepts an extended CONNECT (request_head::protocol set, RFC 8441): it sends
  /// 200 and returns the stream's DATA frames as a byte stream, so any stream protocol
  /// (websocket, tls, ...) runs over this one HTTP/2 stream. The handler should run the
  /// tunnel to its end before it returns. Errors: invalid_argument (not an extended
  /// CONNECT, or a response started).
  task<result<any_stream>> tunnel(deadline dl);
  /// send_file sends `length` bytes of the open file `fd` from `offset` as body bytes of
  /// a started response (see http1::response::send_file): read with pread(2) in 64 KiB
  /// pieces into the stream's DATA, at the pace of the peer's window. `fd` stays the
  /// caller's. Errors: invalid_argument (not started, finished, fd < 0), end_of_stream
  /// (the file ended early), the file's read errors, the stream's errors.
  task<result<void>> send_file(int fd, std::uint64_t offset, std::uint64_t length, deadline dl);
  bool started() const noexcept { return started_; }
  bool finished() const noexcept { return finished_; }

 private:
  friend class server_session;
  response(server_session& s, stream_state& st) noexcept : session_(&s), stream_(&st) {}
  server_session* session_;
  stream_state* stream_;
  std::vector<http1::header> headers_;
  bool started_ = false;
  bool finished_ = false;
};

/// handler serves one request (see http1::handler).
using handler = std::function<task<result<void>>(request&, response&)>;

/// server_options tune serve(). Every limit bounds what one peer can make us hold.
struct server_options {
  std::uint32_t max_concurrent_streams = 100;      ///< SETTINGS_MAX_CONCURRENT_STREAMS
  std::uint32_t max_active_handlers = 200;         ///< handlers running, reset streams included
  std::int32_t stream_window = 1 << 20;            ///< receive window per stream (bytes buffered)
  std::int32_t connection_window = 8 << 20;        ///< receive window of the connection
  std::uint32_t max_header_list = 64 * 1024;       ///< decoded header bytes per request (RFC 9113 6.5.2)
  std::uint32_t max_fields = 100;                  ///< header fields per request
  std::uint64_t max_body = 16ull << 20;            ///< request body bytes
  std::size_t max_continuations = 8;               ///< CONTINUATION frames per header block
  std::uint64_t reset_burst = 1000;                ///< stream resets in a burst, then...
  std::uint64_t reset_rate = 33;                   ///< ...per second (token bucket; GOAWAY beyond)
  std::size_t send_buffer = 256 * 1024;            ///< queued response bytes per stream before write waits
  bool enable_connect_protocol = true;             ///< extended CONNECT (RFC 8441)
  std::chrono::milliseconds idle_timeout{60'000};  ///< without streams
  std::chrono::milliseconds write_timeout{30'000};
  std::chrono::milliseconds shutdown_grace{5'000};  ///< for streams in progress after GOAWAY
  std::string server_name = "strata";               ///< the server field; empty: none
  /// stop, when set (by another task), starts a graceful shutdown: GOAWAY with the last
  /// stream processed, streams in progress finish (up to shutdown_grace), then close.
  event* stop = nullptr;
};

/// serve_stats count what serve() did on one connection.
struct serve_stats {
  std::uint64_t requests = 0;
  std::uint64_t resets_received = 0;
  std::uint64_t refused = 0;      ///< streams refused because max_active_handlers ran
  std::uint64_t writes = 0;       ///< write calls on the stream
  std::uint32_t goaway_code = 0;  ///< the code of the GOAWAY we sent (0: NO_ERROR or none)
};

/// serve runs an HTTP/2 server connection (the client's preface first) until the client
/// ends it, a stop or an error; each request stream runs `h` in a task of its own.
/// `unread` are bytes already read from `stream` (by a sniffer, or after an ALPN
/// handshake), fed first.
task<result<serve_stats>> serve(any_stream stream, handler h);
task<result<serve_stats>> serve(any_stream stream, handler h, server_options options);
task<result<serve_stats>> serve(any_stream stream, std::vector<std::byte> unread, handler h,
                                server_options options);

/// upgraded_request is the HTTP/1.1 request that carried "Upgrade: h2c" (RFC 7540 3.2):
/// it becomes stream 1 and is answered over HTTP/2.
struct upgraded_request {
  std::string method;
  std::string target;
  std::string authority;
  std::vector<http1::header> headers;
  std::string body;
  std::string settings;  ///< the HTTP2-Settings field (base64url SETTINGS payload)
};

/// serve_upgraded runs serve() on a connection switched from HTTP/1.1 by the h2c Upgrade
/// (after http1::response::upgrade("h2c")), answering `first` on stream 1. Errors as
/// serve; connection_failed for a malformed HTTP2-Settings.
task<result<serve_stats>> serve_upgraded(any_stream stream, std::vector<std::byte> unread,
                                         upgraded_request first, handler h, server_options options);

/// client_options tune a client.
struct client_options {
  std::int32_t stream_window = 1 << 20;
  std::int32_t connection_window = 8 << 20;
  std::uint32_t max_header_list = 64 * 1024;
  std::uint64_t max_body = 64ull << 20;  ///< read_body's hard limit per response
  std::chrono::milliseconds write_timeout{30'000};
  std::string authority{};  ///< :authority of requests without a Host header (one is required)
  /// scheme is the requests' :scheme; empty: "https" when the stream below is secure
  /// (tls), else "http".
  std::string scheme{};
};

/// client_response is one response: its head and its streamed body.
class client_response {
 public:
  client_response();
  client_response(client_response&&) noexcept;
  client_response& operator=(client_response&&) noexcept;
  ~client_response();
  int status() const noexcept;
  const http1::fields& fields() const noexcept;
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  task<result<std::string>> read_body(std::size_t max, deadline dl);
  const http1::fields& trailers() const noexcept;
  /// tunnel turns the 2xx answer to an extended CONNECT (outgoing::protocol) into a byte
  /// stream over the request's stream, ending this response object. Errors:
  /// invalid_argument (not an accepted extended CONNECT).
  result<any_stream> tunnel();

 private:
  friend class client;
  std::shared_ptr<stream_state> stream_;
  std::shared_ptr<void> session_;
};

/// client runs HTTP/2 requests, concurrently, on one connection. Its I/O runs in tasks of
/// its own, started by the first request and ended by close().
class client {
 public:
  explicit client(any_stream stream);
  client(any_stream stream, client_options options);
  client(client&&) noexcept;
  client& operator=(client&&) noexcept;
  ~client();

  /// outgoing is a request to send (see http1::client::outgoing).
  struct outgoing {
    std::string method = "GET";
    std::string target = "/";
    std::vector<http1::header> headers{};
    std::string body{};
    /// protocol, when set, makes the request an extended CONNECT (RFC 8441) for that
    /// protocol (method ignored): client_response::tunnel() then gives the stream.
    std::string protocol{};
  };
  /// set_host is the :authority of every request that sends no Host header (as
  /// http1::client::set_host; client_options::authority sets it at construction).
  void set_host(std::string host);
  /// request sends `r` and waits for its response head. Several may run at once.
  /// Errors: no_authority (no Host header and no set_host), invalid_argument (bad
  /// header), http2::error, the stream's errors.
  task<result<client_response>> request(const outgoing& r, deadline dl);
  /// upgrade starts HTTP/2 by the h2c Upgrade (RFC 7540 3.2) on a cleartext connection:
  /// `first` goes as an HTTP/1.1 request offering "Upgrade: h2c" (with its body, if
  /// any); a server that answers 101 continues in HTTP/2, and `first`'s response comes on
  /// stream 1. Returns the client for the next requests and that response. Errors:
  /// not_supported (the server answered in HTTP/1.1 and did not switch; that answer is
  /// dropped and the connection closed), invalid_argument (an extended CONNECT cannot be
  /// upgraded), http1's and http2's errors. `options.authority` is the Host field.
  static task<result<std::pair<client, client_response>>> upgrade(any_stream stream, const outgoing& first,
                                                                  client_options options, deadline dl);
  /// close sends GOAWAY, waits for the responses in progress up to `dl` and closes.
  task<result<void>> close(deadline dl);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace strata::http2

template <>
struct std::is_error_code_enum<strata::http2::error> : std::true_type {};
