// Registry entry for websocket (include/strata/app/websocket.hpp): whole text or binary
// messages on an HTTP/1.1 connection that switched protocols. The side comes from the
// pipeline: above a connector the layer sends the Upgrade request (a client), above a
// listener it serves one HTTP request and answers it with the 101 (a server); either
// handshake runs inside wrap, within the pipeline's handshake deadline.
//
// row:  websocket::row (requires stream reliable ordered; provides message, max_message)
// spec: websocket(path=/chat, host=example.org, protocols="chat,superchat", deflate=1)
//       tcp-listen:127.0.0.1:8080 | websocket(path=/chat, protocols=chat, max=16m)
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "strata/app/http1.hpp"
#include "strata/app/websocket.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "path",
     .default_value = "/",
     .help = "client: the request target; server: the only path served (any when not given)"},
    {.name = "host",
     .default_value = {},
     .help = "client: the Host field (default: the peer's address)",
     .optional = true},
    {.name = "protocols",
     .default_value = {},
     .help =
         "subprotocols, comma-separated: offered in order (client), accepted in order of preference (server)",
     .optional = true},
    {.name = "deflate",
     .default_value = "0",
     .help = "permessage-deflate: 1 offers (client) or accepts (server) it"},
    {.name = "max",
     .default_value = "1m",
     .help = "largest message in bytes both ways (k, m, g suffixes; at most 1g)"},
    {.name = "fragment",
     .default_value = "0",
     .help = "outgoing messages go in frames of at most this payload; 0: one frame"},
    {.name = "kind",
     .default_value = "binary",
     .help = "what a message sent through the pipeline is: binary or text"},
};

/// websocket_config is websocket(...) parsed.
struct websocket_config final : layer_options {
  websocket::options options;
  std::string path = "/";
  bool path_given = false;
  std::string host;
};

constexpr std::string_view kinds[] = {"binary", "text"};
constexpr std::uint64_t max_limit = std::uint64_t{1} << 30;

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    auto item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    out.push_back(item);
    start = comma + 1;
  }
  return out;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool options_of(const spec_layer& layer, websocket_config& config, spec_error& error) {
  const auto& entry = websocket_entry;
  auto& o = config.options;
  std::uint64_t max = 0;
  std::uint64_t fragment = 0;
  std::size_t kind = 0;
  bool deflate = false;
  if (!size_param(entry, layer, "max", websocket::options{}.max_message, 1, max_limit, max, error))
    return false;
  if (!size_param(entry, layer, "fragment", 0, 0, max_limit, fragment, error)) return false;
  if (!choice_param(entry, layer, "kind", kinds, 0, kind, error)) return false;
  if (!flag_param(entry, layer, "deflate", false, deflate, error)) return false;
  o.max_message = static_cast<std::size_t>(max);
  o.fragment_size = static_cast<std::size_t>(fragment);
  o.send_kind = kind == 0 ? websocket::message_kind::binary : websocket::message_kind::text;
  o.deflate.enabled = deflate;
  if (const auto* p = entry.find_param(layer, "path")) {
    if (p->value.empty() || p->value.front() != '/' ||
        !std::all_of(p->value.begin(), p->value.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
      return fail(error, "websocket: path must start with '/' and hold no spaces or control characters",
                  value_position(entry, layer, "path"));
    }
    config.path = p->value;
    config.path_given = true;
  }
  if (const auto* p = entry.find_param(layer, "host")) {
    if (p->value.empty() ||
        !std::all_of(p->value.begin(), p->value.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
      return fail(error, "websocket: host is empty or holds spaces", value_position(entry, layer, "host"));
    }
    config.host = p->value;
  }
  if (const auto* p = entry.find_param(layer, "protocols"); p && !p->value.empty()) {
    o.protocols = split_list(p->value);
    for (const auto& name : o.protocols) {
      if (!is_token(name)) {
        return fail(error,
                    "websocket: subprotocol names are tokens separated by single commas, got '" + name + "'",
                    value_position(entry, layer, "protocols"));
      }
    }
  }
  return true;
}

layer_options_ptr configure(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<websocket_config>();
  if (!check_shape(websocket_entry, layer, error) || !options_of(layer, *config, error)) return nullptr;
  return config;
}

properties refine(properties computed, const layer_options& options) {
  computed.max_message = static_cast<const websocket_config&>(options).options.max_message;
  return computed;
}

/// upgrade_state is what the server's one-request handler shares with wrap.
struct upgrade_state {
  const websocket_config* config = nullptr;
  deadline dl = deadline::never();
  std::optional<websocket::connection> conn;
  std::error_code failure;
};

task<result<void>> upgrade_one(upgrade_state& st, http1::request& req, http1::response& res) {
  const auto& config = *st.config;
  if (config.path_given) {
    auto target = req.target();
    if (target.substr(0, target.find('?')) != config.path) {
      st.failure = make_error_code(websocket::error::bad_handshake);
      res.close_after();
      co_return co_await res.send(404, "no WebSocket endpoint at this path\n", st.dl);
    }
  }
  auto o = config.options;
  auto c = co_await websocket::accept(req, res, std::move(o), st.dl);
  if (!c) {
    st.failure = c.error();  // answered with 400 or 426 already
    co_return result<void>{};
  }
  st.conn.emplace(std::move(*c));
  co_return result<void>{};
}

std::chrono::milliseconds until(deadline dl, std::chrono::milliseconds fallback) {
  if (dl.is_never()) return fallback;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(dl.remaining());
  return std::max(left, std::chrono::milliseconds(1));
}

task<result<any_connection>> serve_upgrade(any_stream stream, const websocket_config& config, deadline dl) {
  auto st = std::make_unique<upgrade_state>();
  st->config = &config;
  st->dl = dl;
  http1::server_options so;
  so.max_requests = 1;
  so.header_timeout = until(dl, so.header_timeout);
  so.idle_timeout = until(dl, so.idle_timeout);
  so.body_timeout = until(dl, so.body_timeout);
  so.write_timeout = until(dl, so.write_timeout);
  auto* shared = st.get();
  http1::handler h = [shared](http1::request& req, http1::response& res) {
    return upgrade_one(*shared, req, res);
  };
  auto served = co_await http1::serve(std::move(stream), std::move(h), so);
  if (st->conn) co_return any_connection(any_message(std::move(*st->conn)));
  if (st->failure) co_return unexpected(st->failure);
  if (!served) co_return unexpected(served.error());
  // The client left, or sent a request that http1 refused, before any upgrade.
  co_return unexpected(make_error_code(websocket::error::bad_handshake));
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side side,
                                  deadline dl) {
  if (!lower.is_stream()) {
    if (lower.is_message()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const websocket_config&>(*options);
  if (side == layer_side::server) co_return co_await serve_upgrade(lower.take_stream(), config, dl);
  auto stream = lower.take_stream();
  std::string host = config.host;
  if (host.empty()) {
    auto peer = stream.peer_address();
    host = peer && peer->is_ip() ? peer->to_string() : std::string("localhost");
  }
  auto o = config.options;
  auto c = co_await websocket::connect(std::move(stream), std::move(host), config.path, std::move(o), dl);
  if (!c) co_return unexpected(c.error());
  co_return any_connection(any_message(std::move(*c)));
}

}  // namespace

constinit const protocol_entry websocket_entry{
    .name = "websocket",
    .protocol = "websocket",
    .layer = "app",
    .role = layer_role::adapter,
    .row = &websocket::row,
    .summary = "whole text or binary messages over an HTTP/1.1 upgrade (RFC 6455), permessage-deflate",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
    .refine = refine,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
};

}  // namespace strata::pipeline_detail
