// Registry entries for unix stream sockets (include/strata/transport/unix.hpp): a
// reliable, ordered byte stream between processes on one host.
//
// row:  uds::row (requires nothing; provides connection-based stream reliable ordered
//       dup_free ipc p2p any-process duplex fd_passing)
// spec: unix:PATH or unix:@NAME (abstract)
//       unix-listen:PATH or unix-listen:@NAME (backlog=N)

#include "strata/transport/unix.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info listen_params[] = {
    {.name = "backlog", .default_value = "128", .help = "pending connections the kernel queues (1..65535)"},
};

/// unix_connect_config is unix:PATH parsed.
struct unix_connect_config final : layer_options {
  address where;
};

/// unix_listen_config is unix-listen:PATH(...) parsed.
struct unix_listen_config final : layer_options {
  address where;
  uds::listen_options options;
};

layer_options_ptr configure_connect(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  if (!check_shape(unix_connect_entry, layer, error) || !check_unix_target(unix_connect_entry, layer, error))
    return nullptr;
  auto config = std::make_shared<unix_connect_config>();
  config->where = *address::parse_unix(layer.target);
  return config;
}

layer_options_ptr configure_listen(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  const auto& entry = unix_listen_entry;
  std::uint64_t backlog = 0;
  if (!check_shape(entry, layer, error) || !check_unix_target(entry, layer, error) ||
      !uint_param(entry, layer, "backlog", 128, 1, 65535, backlog, error)) {
    return nullptr;
  }
  auto config = std::make_shared<unix_listen_config>();
  config->where = *address::parse_unix(layer.target);
  config->options.backlog = static_cast<int>(backlog);
  return config;
}

task<result<any_connection>> connect(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const unix_connect_config&>(*options);
  auto s = co_await uds::connect(config.where, dl);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& config = static_cast<const unix_listen_config&>(*options);
  auto l = uds::listener::bind(config.where, config.options);
  if (!l) return unexpected(l.error());
  return make_listener(std::move(*l));
}

}  // namespace

constinit const protocol_entry unix_connect_entry{
    .name = "unix",
    .protocol = "unix",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &uds::row,
    .summary = "connect a unix stream socket at PATH or @NAME (abstract)",
    .target_help = "PATH or @NAME",
    .params = {},
    .parses_peer_input = false,
    .configure = configure_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry unix_listen_entry{
    .name = "unix-listen",
    .protocol = "unix",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &uds::row,
    .summary = "accept unix stream connections at PATH or @NAME (abstract)",
    .target_help = "PATH or @NAME",
    .params = listen_params,
    .parses_peer_input = false,
    .configure = configure_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .bind = nullptr,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
