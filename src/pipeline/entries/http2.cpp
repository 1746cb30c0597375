// Registry entry for http2 (include/strata/app/http2.hpp): HTTP/2 on any reliable byte
// stream, as the application protocol on top of a pipeline: prior knowledge in
// cleartext, or after TLS negotiated ALPN "h2". As http1's entry, it checks the spec and
// keeps the settings (pipeline/application.hpp); the program runs the protocol on the
// connections the pipeline gives (`strata listen --serve`, `strata get`).
//
// row:  http2::row (requires stream reliable ordered; passes secure authenticated domain)
// spec: tcp-listen:127.0.0.1:8080 | http2(max-streams=100)
//       tcp:127.0.0.1:8443 | tls(alpn=h2, ca=ca.pem) | http2
#include <memory>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "strata/pipeline/application.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "max-body",
     .default_value = "16m",
     .help = "largest request (server) or response (client) body"},
    {.name = "max-header",
     .default_value = "64k",
     .help = "largest decoded header list (RFC 9113 6.5.2 sizes); a larger one resets the stream"},
    {.name = "max-fields", .default_value = "100", .help = "server: most header fields in a request"},
    {.name = "max-streams",
     .default_value = "100",
     .help = "server: SETTINGS_MAX_CONCURRENT_STREAMS (handlers are capped at twice it)"},
    {.name = "idle-timeout",
     .default_value = "60s",
     .help = "server: time a connection without streams stays open"},
    {.name = "write-timeout", .default_value = "30s", .help = "time for each write to the connection"},
};

constexpr std::uint64_t max_body_limit = std::uint64_t{1} << 40;
constexpr std::uint64_t hour_ms = 3'600'000;

layer_options_ptr configure(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  if (!check_shape(self, layer, error)) return nullptr;
  auto config = std::make_shared<http2_settings>();
  std::uint64_t max_body = 0, max_header = 0, max_fields = 0, max_streams = 0, idle_ms = 0, write_ms = 0;
  if (!size_param(self, layer, "max-body", 16u << 20, 0, max_body_limit, max_body, error) ||
      !size_param(self, layer, "max-header", 64u << 10, 1024, 16u << 20, max_header, error) ||
      !uint_param(self, layer, "max-fields", 100, 1, 10'000, max_fields, error) ||
      !uint_param(self, layer, "max-streams", 100, 1, 100'000, max_streams, error) ||
      !duration_param(self, layer, "idle-timeout", 60'000, 1, hour_ms, idle_ms, error) ||
      !duration_param(self, layer, "write-timeout", 30'000, 1, hour_ms, write_ms, error)) {
    return nullptr;
  }
  auto& server = config->server;
  server.max_body = max_body;
  server.max_header_list = static_cast<std::uint32_t>(max_header);
  server.max_fields = static_cast<std::uint32_t>(max_fields);
  server.max_concurrent_streams = static_cast<std::uint32_t>(max_streams);
  server.max_active_handlers = static_cast<std::uint32_t>(2 * max_streams);
  server.idle_timeout = std::chrono::milliseconds(idle_ms);
  server.write_timeout = std::chrono::milliseconds(write_ms);
  auto& client = config->client;
  client.max_body = max_body;
  client.max_header_list = static_cast<std::uint32_t>(max_header);
  client.write_timeout = std::chrono::milliseconds(write_ms);
  return config;
}

}  // namespace

constinit const protocol_entry http2_entry{
    .name = "http2",
    .protocol = "http2",
    .layer = "app",
    .role = layer_role::application,
    .row = &http2::row,
    .summary =
        "HTTP/2 on a reliable byte stream (nghttp2): prior knowledge, or ALPN h2 under tls (the top layer)",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
};

}  // namespace strata::pipeline_detail
