// Registry entries for tcp (include/strata/transport/tcp.hpp): a reliable, ordered byte
// stream between two hosts.
//
// row:  tcp::row (requires nothing; provides connection-based stream reliable ordered
//       dup_free congestion_controlled net p2p any-process duplex)
// spec: tcp:HOST:PORT(nodelay=0|1)
//       tcp-listen:HOST:PORT(reuseport=0|1, backlog=N, nodelay=0|1)   (port 0: ephemeral)
#include "strata/transport/tcp.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info connect_params[] = {
    {.name = "nodelay",
     .default_value = "1",
     .help = "TCP_NODELAY: 1 sends small writes at once, 0 lets Nagle batch"},
};

constexpr param_info listen_params[] = {
    {.name = "reuseport", .default_value = "0", .help = "SO_REUSEPORT: several listeners share the port"},
    {.name = "backlog", .default_value = "128", .help = "pending connections the kernel queues (1..65535)"},
    {.name = "nodelay", .default_value = "1", .help = "TCP_NODELAY on accepted connections"},
};

/// tcp_connect_config is tcp:HOST:PORT(...) parsed.
struct tcp_connect_config final : layer_options {
  address where;
  tcp::connect_options options;
};

/// tcp_listen_config is tcp-listen:HOST:PORT(...) parsed.
struct tcp_listen_config final : layer_options {
  address where;
  tcp::listen_options options;
};

bool check_address(const protocol_entry& entry, const spec_layer& layer, bool connecting, spec_error& error) {
  auto why = address::explain_ip(layer.target);
  if (!why.empty()) return fail(error, std::string(entry.name) + ": " + why, layer.target_position);
  if (connecting && address::parse_ip(layer.target)->port() == 0) {
    return fail(error, "tcp: cannot connect to port 0 (port 0 only means 'any port' for tcp-listen)",
                layer.target_position);
  }
  return true;
}

layer_options_ptr configure_connect(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  const auto& entry = tcp_connect_entry;
  auto config = std::make_shared<tcp_connect_config>();
  if (!check_shape(entry, layer, error) || !check_address(entry, layer, true, error) ||
      !flag_param(entry, layer, "nodelay", true, config->options.no_delay, error)) {
    return nullptr;
  }
  config->where = *address::parse_ip(layer.target);
  return config;
}

layer_options_ptr configure_listen(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  const auto& entry = tcp_listen_entry;
  auto config = std::make_shared<tcp_listen_config>();
  auto& options = config->options;
  std::uint64_t backlog = 0;
  if (!check_shape(entry, layer, error) || !check_address(entry, layer, false, error) ||
      !flag_param(entry, layer, "reuseport", false, options.reuse_port, error) ||
      !uint_param(entry, layer, "backlog", 128, 1, 65535, backlog, error) ||
      !flag_param(entry, layer, "nodelay", true, options.no_delay, error)) {
    return nullptr;
  }
  options.backlog = static_cast<int>(backlog);
  config->where = *address::parse_ip(layer.target);
  return config;
}

task<result<any_connection>> connect(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const tcp_connect_config&>(*options);
  auto s = co_await tcp::connect(config.where, dl, config.options);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& config = static_cast<const tcp_listen_config&>(*options);
  auto l = tcp::listener::bind(config.where, config.options);
  if (!l) return unexpected(l.error());
  return make_listener(std::move(*l));
}

}  // namespace

constinit const protocol_entry tcp_connect_entry{
    .name = "tcp",
    .protocol = "tcp",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &tcp::row,
    .summary = "connect a TCP byte stream to HOST:PORT",
    .target_help = "HOST:PORT",
    .params = connect_params,
    .parses_peer_input = false,
    .configure = configure_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry tcp_listen_entry{
    .name = "tcp-listen",
    .protocol = "tcp",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &tcp::row,
    .summary = "accept TCP byte streams on HOST:PORT (port 0: an ephemeral port)",
    .target_help = "HOST:PORT",
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
