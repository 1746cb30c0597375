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

bool check_address(const protocol_entry& entry, const spec_layer& layer, bool connecting, spec_error& error) {
  auto why = address::explain_ip(layer.target);
  if (!why.empty()) return fail(error, std::string(entry.name) + ": " + why, layer.target_position);
  if (connecting && address::parse_ip(layer.target)->port() == 0) {
    return fail(error, "tcp: cannot connect to port 0 (port 0 only means 'any port' for tcp-listen)",
                layer.target_position);
  }
  return true;
}

bool validate_connect(const spec_layer& layer, spec_error& error) {
  const auto& entry = tcp_connect_entry;
  bool nodelay = true;
  return check_shape(entry, layer, error) && check_address(entry, layer, true, error) &&
         flag_param(entry, layer, "nodelay", true, nodelay, error);
}

bool listen_options_of(const spec_layer& layer, tcp::listen_options& options, spec_error& error) {
  const auto& entry = tcp_listen_entry;
  std::uint64_t backlog = 0;
  if (!flag_param(entry, layer, "reuseport", false, options.reuse_port, error)) return false;
  if (!uint_param(entry, layer, "backlog", 128, 1, 65535, backlog, error)) return false;
  if (!flag_param(entry, layer, "nodelay", true, options.no_delay, error)) return false;
  options.backlog = static_cast<int>(backlog);
  return true;
}

bool validate_listen(const spec_layer& layer, spec_error& error) {
  tcp::listen_options options;
  return check_shape(tcp_listen_entry, layer, error) &&
         check_address(tcp_listen_entry, layer, false, error) && listen_options_of(layer, options, error);
}

task<result<any_connection>> connect_to(address where, deadline dl, tcp::connect_options options) {
  auto s = co_await tcp::connect(where, dl, options);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

task<result<any_connection>> connect(const spec_layer& layer, deadline dl) {
  spec_error error;
  tcp::connect_options options;
  if (!validate_connect(layer, error) ||
      !flag_param(tcp_connect_entry, layer, "nodelay", true, options.no_delay, error)) {
    return failed_connect(make_error_code(errc::invalid_argument));
  }
  auto where = address::parse_ip(layer.target);
  if (!where) return failed_connect(where.error());
  return connect_to(*where, dl, options);
}

result<any_listener> listen(const spec_layer& layer) {
  spec_error error;
  tcp::listen_options options;
  if (!validate_listen(layer, error) || !listen_options_of(layer, options, error))
    return errc::invalid_argument;
  auto l = tcp::listener::bind(layer.target, options);
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
    .validate = validate_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
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
    .validate = validate_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
