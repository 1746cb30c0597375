// strata listen --serve DIR: a static file server on any listener pipeline that ends in
// `| http` or `| http1`, one task per connection.
#include "serve.hpp"

#include <cstdio>
#include <memory>
#include <utility>

namespace strata::cli {
namespace {

/// log_line writes one request to stderr: PEER METHOD TARGET STATUS BYTES.
void log_line(const std::string& peer, std::string_view method, std::string_view target,
              const http1::served& what) {
  std::fprintf(stderr, "%s %.*s %.*s %d %llu\n", peer.c_str(), static_cast<int>(method.size()), method.data(),
               static_cast<int>(target.size()), target.data(), what.status,
               static_cast<unsigned long long>(what.bytes));
  std::fflush(stderr);
}

/// handlers_for serves `files`, logging each request with -v.
http::handlers handlers_for(const http1::file_server& files, const std::string& peer, bool verbose) {
  if (!verbose) return files.as_handlers();
  return http::both([files, peer](auto& req, auto& res) -> task<result<void>> {
    auto what = co_await files.serve(req, res);
    if (!what) {
      std::fprintf(stderr, "%s %.*s %.*s failed: %s\n", peer.c_str(), static_cast<int>(req.method().size()),
                   req.method().data(), static_cast<int>(req.target().size()), req.target().data(),
                   error_text(what.error()).c_str());
      std::fflush(stderr);
      co_return unexpected(what.error());
    }
    log_line(peer, req.method(), req.target(), *what);
    co_return result<void>{};
  });
}

task<void> serve_connection(any_connection conn, std::string peer, http1::file_server files,
                            const serve_options& options) {
  if (!conn.is_stream()) {
    (void)co_await conn.close(deadline::after(std::chrono::milliseconds(100)));
    co_return;
  }
  auto h = handlers_for(files, peer, options.verbose);
  std::error_code failed;
  switch (options.speak) {
    case serve_options::protocol::http1: {
      auto served = co_await http1::serve(conn.take_stream(), std::move(h.http1), options.http);
      if (!served) failed = served.error();
      break;
    }
    case serve_options::protocol::http2: {
      auto served = co_await http2::serve(conn.take_stream(), std::move(h.http2), options.http2);
      if (!served) failed = served.error();
      break;
    }
    case serve_options::protocol::http: {
      http::server_options both;
      both.http1 = options.http;
      both.http2 = options.http2;
      auto served = co_await http::serve(conn.take_stream(), std::move(h), both);
      if (!served) failed = served.error();
      break;
    }
  }
  if (failed && options.verbose && failed != errc::operation_canceled)
    report("connection from " + peer, failed);
}

}  // namespace

task<int> serve_files(any_listener& listener, const http1::file_server& files, const serve_options& options) {
  int code = exit_ok;
  std::size_t live = 0;
  event one_ended;
  co_await with_scope([&](scope& s) -> task<void> {
    bool said_full = false;
    for (;;) {
      if (live >= options.max_connections) {
        if (options.verbose && !said_full) {
          std::fprintf(stderr, "serving %zu connections (--max-connections): the next waits for one to end\n",
                       live);
          std::fflush(stderr);
        }
        said_full = true;
        one_ended.reset();
        auto w = co_await one_ended.wait(deadline::never());
        if (!w) {
          s.cancel();
          co_return;
        }
        continue;
      }
      said_full = false;
      auto conn = co_await listener.accept(deadline::never());
      if (!conn) {
        if (conn.error() != errc::operation_canceled) {
          report("accept on " + options.label, conn.error());
          code = exit_failure;
        }
        s.cancel();
        co_return;
      }
      auto peer_address = conn->peer_address();
      std::string peer = peer_address && !peer_address->to_string().empty() ? peer_address->to_string() : "-";
      ++live;
      s.spawn([](task<void> served, std::size_t& count, event& ended) -> task<void> {
        co_await std::move(served);
        --count;
        ended.set();
      }(serve_connection(std::move(*conn), std::move(peer), files, options), live, one_ended));
    }
  });
  listener.close();
  co_return code;
}

}  // namespace strata::cli
