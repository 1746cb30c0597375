// What `strata listen --serve DIR` does with a listener pipeline that ends in an HTTP
// application (`tcp-listen:127.0.0.1:8080 | http`): every accepted connection is served
// by its own task with http1::serve and the library's file server, until a signal.
#pragma once

#include <string>

#include "common.hpp"
#include "strata/app/http1_files.hpp"
#include "strata/core/any.hpp"
#include "strata/pipeline/application.hpp"

namespace strata::cli {

/// serve_options tune serve_files.
struct serve_options {
  /// speak is the spec's application: http1, http2 (prior knowledge or ALPN h2), or http
  /// (either, per connection: http::serve).
  enum class protocol { http1, http2, http };
  bool verbose = false;  ///< one line per request on stderr: PEER METHOD TARGET STATUS BYTES
  std::string label;     ///< the spec, for error messages
  protocol speak = protocol::http1;
  http1::server_options http;  ///< from the spec's application layer
  http2::server_options http2;
  /// max_connections bounds the connections served at once: at the limit the next is
  /// not accepted (it waits in the kernel's backlog) until one ends.
  std::size_t max_connections = default_max_connections;
  static constexpr std::size_t default_max_connections = 1000;
};

/// serve_files accepts connections from `listener` and serves each one concurrently, in
/// its own task, with `files`: requests one after another on each connection until the
/// client closes it or a timeout ends it. A connection's failure is reported (with -v)
/// and never stops the others. At most options.max_connections are served at once (-v
/// says when a connection waits for that). Runs until canceled (a signal: returns exit_ok) or accept
/// fails (exit_failure, after reporting). Closes the listener before returning.
task<int> serve_files(any_listener& listener, const http1::file_server& files, const serve_options& options);

}  // namespace strata::cli
