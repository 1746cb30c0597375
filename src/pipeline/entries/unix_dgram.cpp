// Registry entries for unix datagram sockets (include/strata/transport/unix_dgram.hpp):
// reliable, ordered messages between processes on one host, connection-less.
//
// row:  unix_dgram::row (requires nothing; provides connection-less message reliable
//       ordered dup_free ipc p2p any-process duplex fd_passing max_message=212960)
// spec: unix-dgram:PATH or unix-dgram:@NAME (bind=PATH|@NAME)
//       unix-dgram-listen:PATH or unix-dgram-listen:@NAME   (accepts one sender)
//       unix-dgram-bind:PATH or unix-dgram-bind:@NAME       (a bound endpoint: any sender, any peer)

#include "strata/transport/unix_dgram.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info connect_params[] = {
    {.name = "bind",
     .default_value = "",
     .help = "our own PATH or @NAME, where answers arrive (default: a kernel-chosen abstract name)",
     .optional = true},
};

/// unix_dgram_connect_config is unix-dgram:PATH(...) parsed.
struct unix_dgram_connect_config final : layer_options {
  address peer;
  unix_dgram::connect_options options;
};

/// unix_dgram_listen_config is unix-dgram-listen:PATH parsed.
struct unix_dgram_listen_config final : layer_options {
  address where;
};

/// unix_dgram_bind_config is unix-dgram-bind:PATH parsed.
struct unix_dgram_bind_config final : layer_options {
  address where;
};

bool connect_options_of(const spec_layer& layer, unix_dgram::connect_options& options, spec_error& error) {
  options.keep_too_large = true;
  const auto* b = unix_dgram_connect_entry.find_param(layer, "bind");
  if (!b) return true;
  auto why = explain_unix(b->value);
  if (!why.empty()) return fail(error, "unix-dgram: bind: " + why, b->position);
  options.bind = *address::parse_unix(b->value);
  return true;
}

layer_options_ptr configure_connect(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<unix_dgram_connect_config>();
  if (!check_shape(unix_dgram_connect_entry, layer, error) ||
      !check_unix_target(unix_dgram_connect_entry, layer, error) ||
      !connect_options_of(layer, config->options, error)) {
    return nullptr;
  }
  config->peer = *address::parse_unix(layer.target);
  return config;
}

layer_options_ptr configure_listen(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  if (!check_shape(unix_dgram_listen_entry, layer, error) ||
      !check_unix_target(unix_dgram_listen_entry, layer, error)) {
    return nullptr;
  }
  auto config = std::make_shared<unix_dgram_listen_config>();
  config->where = *address::parse_unix(layer.target);
  return config;
}

layer_options_ptr configure_bind(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  if (!check_shape(unix_dgram_bind_entry, layer, error) ||
      !check_unix_target(unix_dgram_bind_entry, layer, error)) {
    return nullptr;
  }
  auto config = std::make_shared<unix_dgram_bind_config>();
  config->where = *address::parse_unix(layer.target);
  return config;
}

task<result<any_connection>> connected_task(unix_dgram::connected c) {
  co_return any_connection(any_message(std::move(c)));
}

task<result<any_connection>> connect(layer_options_ptr options, deadline) {
  const auto& config = static_cast<const unix_dgram_connect_config&>(*options);
  // Connecting a datagram socket does not block.
  auto c = unix_dgram::connect(config.peer, config.options);
  if (!c) return failed_connect(c.error());
  return connected_task(std::move(*c));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& config = static_cast<const unix_dgram_listen_config&>(*options);
  auto l = unix_dgram::listener::bind(config.where, {.keep_too_large = true});
  if (!l) return unexpected(l.error());
  return make_listener(std::move(*l));
}

result<any_datagram> bind(layer_options_ptr options) {
  const auto& config = static_cast<const unix_dgram_bind_config&>(*options);
  // keep_too_large: a message larger than the caller's buffer stays queued for a larger one.
  auto s = unix_dgram::socket::bind(config.where, {.keep_too_large = true});
  if (!s) return unexpected(s.error());
  return any_datagram(std::move(*s));
}

}  // namespace

constinit const protocol_entry unix_dgram_connect_entry{
    .name = "unix-dgram",
    .protocol = "unix_dgram",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &unix_dgram::row,
    .summary = "a unix datagram socket connected to the one bound at PATH or @NAME",
    .target_help = "PATH or @NAME",
    .params = connect_params,
    .parses_peer_input = false,
    .configure = configure_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry unix_dgram_listen_entry{
    .name = "unix-dgram-listen",
    .protocol = "unix_dgram",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &unix_dgram::row,
    .summary = "bind a unix datagram socket at PATH or @NAME; accept takes the first sender (once)",
    .target_help = "PATH or @NAME",
    .params = {},
    .parses_peer_input = false,
    .configure = configure_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry unix_dgram_bind_entry{
    .name = "unix-dgram-bind",
    .protocol = "unix_dgram",
    .layer = "transport",
    .role = layer_role::bound,
    .row = &unix_dgram::row,
    .summary =
        "bind a unix datagram socket at PATH or @NAME as one endpoint: receive from any sender, send to any",
    .target_help = "PATH or @NAME",
    .params = {},
    .parses_peer_input = false,
    .configure = configure_bind,
    .refine = nullptr,
    .connect = nullptr,
    .listen = nullptr,
    .bind = bind,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
