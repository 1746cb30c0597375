// Registry entries for http1 (include/strata/app/http1.hpp): HTTP/1.1 on any reliable
// byte stream, as the application protocol on top of a pipeline. The entry only checks
// the spec and keeps the settings (pipeline/application.hpp); the program runs the
// protocol on the connections the pipeline gives (the CLI: `strata listen --serve`,
// `strata get`).
//
// row:  http1::row (requires stream reliable ordered; passes secure authenticated domain)
// spec: tcp-listen:127.0.0.1:8080 | http1(max-body=1m, header-timeout=5s)
//       unix:/run/app.sock | http
// `http` is HTTP/1.1 or HTTP/2 as the peers agree (http::serve; a client by ALPN), with the
// same parameters applied to both where they have the setting.
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
    {.name = "max-header", .default_value = "64k", .help = "largest header block, start line included"},
    {.name = "max-fields", .default_value = "100", .help = "most field lines in a header block"},
    {.name = "header-timeout",
     .default_value = "10s",
     .help = "time for a whole header block (server: from its first byte; client: the response's)"},
    {.name = "body-timeout", .default_value = "30s", .help = "time for each read of a body"},
    {.name = "idle-timeout",
     .default_value = "60s",
     .help = "server: time between requests on a kept-alive connection"},
    {.name = "write-timeout", .default_value = "30s", .help = "server: time for each write of a response"},
    {.name = "max-requests",
     .default_value = "0",
     .help = "server: requests per connection, then close (0: no limit)"},
};

constexpr std::uint64_t max_body_limit = std::uint64_t{1} << 40;
constexpr std::uint64_t hour_ms = 3'600'000;

/// configure_into reads the shared parameters into `config`'s http1 options.
bool configure_into(const protocol_entry& self, const spec_layer& layer, http1_settings& into,
                    spec_error& error) {
  auto* config = &into;
  std::uint64_t max_body = 0, max_header = 0, max_fields = 0, max_requests = 0;
  std::uint64_t header_ms = 0, body_ms = 0, idle_ms = 0, write_ms = 0;
  if (!size_param(self, layer, "max-body", 16u << 20, 0, max_body_limit, max_body, error) ||
      !size_param(self, layer, "max-header", 64u << 10, 1024, 1u << 20, max_header, error) ||
      !uint_param(self, layer, "max-fields", 100, 1, 10'000, max_fields, error) ||
      !duration_param(self, layer, "header-timeout", 10'000, 1, hour_ms, header_ms, error) ||
      !duration_param(self, layer, "body-timeout", 30'000, 1, hour_ms, body_ms, error) ||
      !duration_param(self, layer, "idle-timeout", 60'000, 1, hour_ms, idle_ms, error) ||
      !duration_param(self, layer, "write-timeout", 30'000, 1, hour_ms, write_ms, error) ||
      !uint_param(self, layer, "max-requests", 0, 0, 1'000'000'000, max_requests, error)) {
    return false;
  }
  http1::limits limits;
  limits.max_body = max_body;
  limits.max_header_block = static_cast<std::size_t>(max_header);
  limits.max_request_line = std::min(limits.max_request_line, limits.max_header_block);
  limits.max_fields = static_cast<std::size_t>(max_fields);
  auto& server = config->server;
  server.limits = limits;
  server.header_timeout = std::chrono::milliseconds(header_ms);
  server.body_timeout = std::chrono::milliseconds(body_ms);
  server.idle_timeout = std::chrono::milliseconds(idle_ms);
  server.write_timeout = std::chrono::milliseconds(write_ms);
  server.max_requests = static_cast<std::size_t>(max_requests);
  auto& client = config->client;
  client.limits = limits;
  client.header_timeout = std::chrono::milliseconds(header_ms);
  return true;
}

layer_options_ptr configure(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  if (!check_shape(self, layer, error)) return nullptr;
  auto config = std::make_shared<http1_settings>();
  if (!configure_into(self, layer, *config, error)) return nullptr;
  return config;
}

layer_options_ptr configure_http(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  if (!check_shape(self, layer, error)) return nullptr;
  auto config = std::make_shared<http_settings>();
  if (!configure_into(self, layer, *config, error)) return nullptr;
  // The shared parameters apply to HTTP/2 too, where it has the same setting.
  auto& h1 = config->server;
  auto& h2 = config->server2;
  h2.max_body = h1.limits.max_body;
  h2.max_header_list = static_cast<std::uint32_t>(h1.limits.max_header_block);
  h2.max_fields = static_cast<std::uint32_t>(h1.limits.max_fields);
  h2.idle_timeout = h1.idle_timeout;
  h2.write_timeout = h1.write_timeout;
  config->client2.max_body = h1.limits.max_body;
  config->client2.max_header_list = h2.max_header_list;
  return config;
}

}  // namespace

constinit const protocol_entry http1_entry{
    .name = "http1",
    .protocol = "http1",
    .layer = "app",
    .role = layer_role::application,
    .row = &http1::row,
    .summary = "HTTP/1.1 requests and responses on a reliable byte stream (the top layer)",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
};

// http decodes nothing itself: it compares the first bytes with the HTTP/2 preface and
// hands them to http1 or http2, whose parsers have their fuzz targets.
constinit const protocol_entry http_entry{
    .name = "http",
    .protocol = "http",
    .layer = "app",
    .role = layer_role::application,
    .row = &http1::row,
    .summary = "HTTP/1.1 or HTTP/2 as the peers agree (ALPN, the h2 preface, the h2c Upgrade)",
    .target_help = {},
    .params = params,
    .parses_peer_input = false,
    .configure = configure_http,
};

}  // namespace strata::pipeline_detail
