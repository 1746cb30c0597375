// demux — route each accepted connection to one of several handlers (or pipelines) by
// sniffing its first bytes, without losing a byte: the sniffed bytes are replayed to the
// handler that gets the connection.
//
// What is recognised (docs/protocols/demux.md):
//   - TLS: a ClientHello (RFC 8446 4.1.2; RFC 5246 7.4.1.2), possibly spread over several
//     records: its server_name (SNI, RFC 6066 3) and the ALPN protocols it offers
//     (RFC 7301 3.1). Our own bounded parser; nothing is decrypted.
//   - HTTP/2 with prior knowledge: the client connection preface (RFC 9113 3.4).
//   - HTTP/1.x: the request line and the Host field (RFC 9112 3, 9110 7.2).
//   - anything else is `unknown`; a user predicate sees the bytes of every connection.
// Every sniff has a deadline and a byte limit, and fails with a typed error (demux::error).
//
// The sniffer is a sans-I/O state machine (demux::sniffer: bytes in, "need more / done /
// error" out), fuzzed in fuzz/demux_fuzz.cpp; demux::listener is the thin driver.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/buffer.hpp"
#include "strata/pipeline/pipeline.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::demux {

/// error is what goes wrong while sniffing, each code refining a strata::errc.
enum class error {
  sniff_timeout = 1,  ///< timed_out: the first bytes did not arrive before the sniff deadline
  sniff_limit,        ///< message_too_large: no decision within max_sniff bytes
  bad_client_hello,   ///< protocol_error: a TLS record or ClientHello that breaks its own lengths
  ended_early,        ///< end_of_stream: the client ended before a decision
  no_route,           ///< not_supported: no route takes the connection
};

/// category is the std::error_category of demux::error.
const std::error_category& category() noexcept;
inline std::error_code make_error_code(error e) noexcept { return {static_cast<int>(e), category()}; }

/// kind is what the first bytes are.
enum class kind : std::uint8_t { unknown, tls, http2, http1 };

/// kind_name: "unknown", "tls", "http2", "http1".
std::string_view kind_name(kind k) noexcept;

/// sniffed is what the sniffer learned.
struct sniffed {
  demux::kind kind = kind::unknown;
  std::string sni{};                ///< tls: the host_name of server_name (lower-case); empty: none
  std::vector<std::string> alpn{};  ///< tls: the protocols offered, in order
  std::string host{};               ///< http1: the Host field without its port (lower-case)
  std::string method{};             ///< http1: the request method
  std::string target{};             ///< http1: the request target
};

/// limits of the sniffer.
inline constexpr std::size_t default_max_sniff = 16 * 1024;
inline constexpr std::size_t max_alpn_protocols = 32;

/// sniffer is the sans-I/O core: feed it the connection's first bytes, all of them from
/// the first on, as they arrive (each call with the whole prefix so far); it answers
/// need_more until it has decided. It looks again only once enough bytes for a decision
/// may be there (a whole TLS record, one byte more of an HTTP/1 head), and the HTTP/1
/// head is scanned once overall, so a client that sends one byte at a time costs O(n)
/// for HTTP/1; for TLS each completed record re-walks the records before it (bounded by
/// max_sniff, O(records x max_sniff) at worst).
class sniffer {
 public:
  explicit sniffer(std::size_t max_sniff = default_max_sniff) noexcept : max_(max_sniff) {}

  enum class status : std::uint8_t { need_more, done };
  /// feed looks at `prefix` (the first bytes, growing from call to call). Returns done
  /// when result() is final, need_more otherwise. Errors: bad_client_hello (a TLS record
  /// or handshake whose lengths do not add up), sniff_limit (no decision within
  /// max_sniff bytes). Errors are sticky.
  result<status> feed(const_buffer prefix);
  /// finish is called when the client ended (or stopped sending): what was seen decides
  /// if it can (a partial request line is unknown); ended_early when nothing came.
  result<status> finish(const_buffer prefix);
  const sniffed& result_value() const noexcept { return out_; }

 private:
  result<status> feed_tls(const_buffer prefix);
  result<status> feed_http1(const_buffer prefix);
  std::size_t max_;
  std::size_t need_ = 1;     // no new look before this many bytes
  std::size_t scanned_ = 0;  // http1: bytes known to hold no "\r\n\r\n"
  std::error_code failed_{};
  sniffed out_;
};

/// parse_client_hello decodes a complete ClientHello handshake message body (after the
/// 4-byte handshake header) into `out` (sni, alpn). Errors: bad_client_hello.
result<void> parse_client_hello(const_buffer body, sniffed& out);

/// connection is what a route's handler gets: the connection and the bytes sniffed from
/// it, in order (nothing was lost), and what they are.
struct connection {
  any_connection conn;
  std::vector<std::byte> sniffed_bytes;
  sniffed info;
  std::string peer;  ///< the peer's address as text, for logs
};

/// replay makes a byte stream that gives `first` before what `s` still delivers and
/// otherwise is `s`. Facts are forwarded, except native_handle (the bytes of `first` do
/// not come from the descriptor).
any_stream replay(any_stream s, std::vector<std::byte> first);

/// handler takes a routed connection (its stream is `replay`ed when it wants the bytes
/// again; see to_pipeline for a proxy).
using handler = std::function<task<void>(connection)>;

/// route says which connections a handler takes. Every field that is set must match;
/// the first route that matches wins (add() order).
struct route {
  std::optional<demux::kind> kind{};  ///< tls, http2, http1 or unknown
  /// sni: the TLS server name, exact (case-insensitive), or "*.example.org" for any
  /// name below example.org (one or more labels).
  std::string sni{};
  std::string alpn{};  ///< a protocol the client offers ("h2")
  std::string host{};  ///< the HTTP/1 Host (without port), exact or "*.suffix"
  /// predicate sees what was sniffed and the bytes; it must not block.
  std::function<bool(const sniffed&, const_buffer)> predicate{};
};

/// matches says whether `r` takes a connection with `info` and `bytes`.
bool matches(const route& r, const sniffed& info, const_buffer bytes);

/// to_pipeline is a handler that proxies to a new connection of `target` (a connector
/// pipeline giving a byte stream): it writes the sniffed bytes to it first, then bridges
/// the two (pipeline/bridge.hpp, spliced where both are bare descriptors), resetting the
/// client when the target cannot be reached or the bridge fails.
handler to_pipeline(pipeline target, std::chrono::milliseconds connect_timeout = std::chrono::seconds(5));

/// options of a demux listener.
struct options {
  std::size_t max_sniff = default_max_sniff;      ///< bytes at most before a decision
  std::chrono::milliseconds sniff_timeout{5000};  ///< the first bytes' deadline
  std::size_t max_pending = 256;                  ///< sniffs at once; accepting waits beyond
  std::function<void(std::string_view)> log;      ///< one line per refused connection
};

/// stats counts what a demux listener did.
struct stats {
  std::uint64_t accepted = 0;
  std::uint64_t routed = 0;
  std::uint64_t timed_out = 0;  ///< sniff_timeout
  std::uint64_t too_long = 0;   ///< sniff_limit
  std::uint64_t malformed = 0;  ///< bad_client_hello
  std::uint64_t ended = 0;      ///< ended_early (or a read error)
  std::uint64_t no_route = 0;
};

/// sniff reads from `s` until the sniffer decides, within `max_sniff` bytes and before
/// `dl`, and returns what it read and learned. Errors: demux::error codes; a read error
/// of `s` other than timed_out and end_of_stream as it is.
task<result<connection>> sniff(any_connection c, std::size_t max_sniff, deadline dl);

/// listener accepts from a lower listener (any byte-stream listener pipeline), sniffs
/// each connection concurrently and hands it to the first matching route's handler,
/// which runs in the listener's scope. A connection whose sniff fails or that no route
/// takes is reset and counted.
class listener {
 public:
  explicit listener(any_listener lower, options o = {});
  ~listener();
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  /// add appends a route. Before serve.
  void add(route r, handler h);
  /// serve runs until the calling scope is canceled (success) or the lower listener
  /// fails (its error). Handlers still running are canceled when it returns.
  task<result<void>> serve();
  const demux::stats& counters() const noexcept;
  result<address> local_address() const;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace strata::demux

template <>
struct std::is_error_code_enum<strata::demux::error> : std::true_type {};
