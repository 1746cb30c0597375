// http — one HTTP server for every way a client may ask: HTTP/1.1, HTTP/2 chosen by TLS
// ALPN, cleartext HTTP/2 recognised by its connection preface ("prior knowledge"), and
// HTTP/1.1 switched to HTTP/2 by the h2c Upgrade. The choice is made per connection; each
// switch re-checks that the stream below offers what the chosen protocol requires. A
// WebSocket Upgrade is the handler's to accept (websocket::accept), like any other.
//
// spec: tcp-listen:127.0.0.1:8080 | http                 (h1, h2 prior knowledge, h2c)
//       tcp-listen:127.0.0.1:8443 | tls(cert=.., key=.., alpn="h2,http/1.1") | http
#pragma once

#include <chrono>
#include <cstdint>
#include <utility>

#include "strata/app/http1.hpp"
#include "strata/app/http2.hpp"
#include "strata/core/any.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata::http {

/// handlers serve the requests of each protocol.
struct handlers {
  http1::handler http1;
  http2::handler http2;
};

/// both makes handlers from one generic callable, `[](auto& req, auto& res) ->
/// task<result<void>>`: http1's and http2's request and response offer the same calls.
template <class F>
handlers both(F f) {
  handlers out;
  out.http1 = http1::handler(f);
  out.http2 = http2::handler(std::move(f));
  return out;
}

/// server_options tune both protocols and the choice between them.
struct server_options {
  http1::server_options http1{};
  http2::server_options http2{};
  bool h2c_upgrade = true;         ///< accept "Upgrade: h2c" from HTTP/1.1 clients
  bool h2_prior_knowledge = true;  ///< accept the HTTP/2 preface on a connection without ALPN h2
};

/// protocol says how a connection was served.
enum class protocol {
  http1,                  ///< HTTP/1.1 (or 1.0) throughout
  http2_alpn,             ///< HTTP/2, negotiated by TLS ALPN
  http2_prior_knowledge,  ///< HTTP/2, the client sent the preface at once
  http2_upgrade,          ///< HTTP/1.1 switched to HTTP/2 by the h2c Upgrade
};

/// serve_stats say how a connection was served.
struct serve_stats {
  http::protocol protocol = protocol::http1;
  std::uint64_t requests = 0;
};

/// serve serves one connection with the protocol its client chose. Errors: as
/// http1::serve and http2::serve; errc::invalid_argument when the stream cannot carry the
/// protocol the client chose (its capabilities).
task<result<serve_stats>> serve(any_stream stream, handlers h, server_options options);
task<result<serve_stats>> serve(any_stream stream, handlers h);

}  // namespace strata::http
