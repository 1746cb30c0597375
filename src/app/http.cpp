// http: the per-connection choice between HTTP/1.1 and HTTP/2 (include/strata/app/http.hpp).
#include "strata/app/http.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/query.hpp"

namespace strata::http {
namespace {

bool can_carry(const any_stream& stream, const capability_row& row) {
  return !first_unmet(stream.runtime_capabilities(), row).has_value();
}

/// is_h2c_offer: "Upgrade: h2c" with exactly one HTTP2-Settings, named in Connection too
/// (RFC 7540 3.2).
bool is_h2c_offer(const http1::request& req) {
  const auto& f = req.head().fields;
  if (!f.has_token("upgrade", "h2c") || f.count("http2-settings") != 1) return false;
  return f.has_token("connection", "http2-settings");
}

/// sniff reads until the bytes either are the HTTP/2 preface or cannot be; returns them.
task<result<std::vector<std::byte>>> sniff(any_stream& stream, deadline dl, bool& is_preface) {
  std::vector<std::byte> got;
  std::array<std::byte, 4096> buf{};
  const auto want = http2::preface.size();
  for (;;) {
    auto seen = std::min(got.size(), want);
    // (memcmp's pointers must not be null, even for no bytes: `got` starts empty.)
    bool prefix = seen == 0 || std::memcmp(got.data(), http2::preface.data(), seen) == 0;
    if (!prefix || got.size() >= want) {
      is_preface = prefix;
      co_return got;
    }
    auto n = co_await stream.read_some(buf, dl);
    if (!n) {
      if (n.error() == errc::end_of_stream && !got.empty()) {
        is_preface = false;
        co_return got;
      }
      co_return unexpected(n.error());
    }
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  }
}

}  // namespace

task<result<serve_stats>> serve(any_stream stream, handlers h, server_options options) {
  serve_stats stats;
  auto negotiated = query<fact::alpn>(stream);
  if (negotiated && *negotiated == "h2") {
    if (!can_carry(stream, http2::row)) co_return errc::invalid_argument;
    stats.protocol = protocol::http2_alpn;
    auto served = co_await http2::serve(std::move(stream), std::move(h.http2), options.http2);
    if (!served) co_return unexpected(served.error());
    stats.requests = served->requests;
    co_return stats;
  }
  std::vector<std::byte> early;
  if (options.h2_prior_knowledge && !(negotiated && *negotiated == "http/1.1")) {
    bool is_preface = false;
    auto sniffed = co_await sniff(stream, deadline::after(options.http1.idle_timeout), is_preface);
    if (!sniffed) {
      (void)co_await stream.close(deadline::after(std::chrono::seconds(1)));
      if (sniffed.error() == errc::end_of_stream || sniffed.error() == errc::timed_out) co_return stats;
      co_return unexpected(sniffed.error());
    }
    if (is_preface) {
      if (!can_carry(stream, http2::row)) co_return errc::invalid_argument;
      stats.protocol = protocol::http2_prior_knowledge;
      auto served =
          co_await http2::serve(std::move(stream), std::move(*sniffed), std::move(h.http2), options.http2);
      if (!served) co_return unexpected(served.error());
      stats.requests = served->requests;
      co_return stats;
    }
    early = std::move(*sniffed);
  }
  // HTTP/1.1, which a request may switch to HTTP/2 (h2c).
  auto upgraded = std::make_shared<bool>(false);
  auto h2_requests = std::make_shared<std::uint64_t>(0);
  http1::handler h1 = h.http1;
  if (options.h2c_upgrade) {
    auto plain = std::move(h.http1);
    auto h2 = std::make_shared<http2::handler>(std::move(h.http2));
    auto h2_options = std::make_shared<http2::server_options>(options.http2);
    h1 = [plain = std::move(plain), h2, h2_options, upgraded, h2_requests](
             http1::request& req, http1::response& res) -> task<result<void>> {
      if (!is_h2c_offer(req)) co_return co_await plain(req, res);
      auto dl = deadline::after(std::chrono::seconds(30));
      http2::upgraded_request first;
      first.method = req.method();
      first.target = req.target();
      first.settings = *req.header("http2-settings");
      for (const auto& f : req.head().fields.all()) {
        std::string name(f.name);
        for (auto& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
        if (name == "host") {
          first.authority = f.value;
        } else if (name != "connection" && name != "upgrade" && name != "http2-settings" &&
                   name != "keep-alive" && name != "transfer-encoding" && name != "te" &&
                   name != "content-length") {
          first.headers.push_back({std::move(name), std::string(f.value)});
        }
      }
      auto body = co_await req.read_body(static_cast<std::size_t>(h2_options->max_body), dl);
      if (!body) co_return unexpected(body.error());
      first.body = std::move(*body);
      auto taken = co_await res.upgrade("h2c", dl);
      if (!taken) co_return unexpected(taken.error());
      *upgraded = true;
      if (!can_carry(taken->lower, http2::row)) co_return errc::invalid_argument;
      auto served = co_await http2::serve_upgraded(std::move(taken->lower), std::move(taken->unread),
                                                   std::move(first), *h2, *h2_options);
      if (served) *h2_requests = served->requests;
      co_return result<void>{};
    };
  }
  auto served = co_await http1::serve(std::move(stream), std::move(early), std::move(h1), options.http1);
  if (!served) co_return unexpected(served.error());
  stats.protocol = *upgraded ? protocol::http2_upgrade : protocol::http1;
  stats.requests = served->requests - (*upgraded ? 1 : 0) + *h2_requests;
  co_return stats;
}

task<result<serve_stats>> serve(any_stream stream, handlers h) {
  server_options options;
  co_return co_await serve(std::move(stream), std::move(h), options);
}

}  // namespace strata::http
