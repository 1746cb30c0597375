// Registry entries for udp (include/strata/transport/udp.hpp): connection-less datagrams
// between hosts, one message per datagram, with IPv4 multicast.
//
// row:  udp::row (requires nothing; provides connection-less message unreliable
//       unordered net multicast any-process duplex max_message=65507, 65527 over IPv6)
// spec: udp:HOST:PORT(bind=HOST:PORT, ttl=N, loop=0|1, interface=ADDR)
//       udp-listen:HOST:PORT(multicast=GROUP, interface=ADDR, loop=0|1)   (port 0: ephemeral)
//       udp-bind:HOST:PORT(reuseport=0|1, rcvbuf=SIZE)   (a bound endpoint: any sender, any peer)
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "strata/transport/udp.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info connect_params[] = {
    {.name = "bind",
     .default_value = "",
     .help = "local HOST:PORT to send from (default: any address, an ephemeral port)",
     .optional = true},
    {.name = "ttl",
     .default_value = "",
     .help = "hop limit: IP_MULTICAST_TTL for a group peer (0..255), else IP_TTL (1..255)",
     .optional = true},
    {.name = "loop",
     .default_value = "1",
     .help = "IP_MULTICAST_LOOP for a group peer: 1 delivers our sends to local members too"},
    {.name = "interface",
     .default_value = "",
     .help = "IPv4 address of the interface group sends leave by (IP_MULTICAST_IF)",
     .optional = true},
};

constexpr param_info listen_params[] = {
    {.name = "multicast",
     .default_value = "",
     .help = "IPv4 group to join (bind HOST 0.0.0.0 or the group itself); accepts once",
     .optional = true},
    {.name = "interface",
     .default_value = "",
     .help = "IPv4 address of the interface to join the group on",
     .optional = true},
    {.name = "loop", .default_value = "1", .help = "IP_MULTICAST_LOOP on the listening socket"},
};

constexpr param_info bind_params[] = {
    {.name = "reuseport",
     .default_value = "0",
     .help = "SO_REUSEPORT: several endpoints on one port, the kernel spreads the senders over them"},
    {.name = "rcvbuf",
     .default_value = "",
     .help =
         "SO_RCVBUF in bytes (the kernel doubles it; default: the system's), for bursts from many senders",
     .optional = true},
};

/// udp_connect_config is udp:HOST:PORT(...) parsed.
struct udp_connect_config final : layer_options {
  address where;
  udp::connect_options options;
};

/// udp_listen_config is udp-listen:HOST:PORT(...) parsed.
struct udp_listen_config final : layer_options {
  address where;
  udp::listen_options options;
};

/// udp_bind_config is udp-bind:HOST:PORT(...) parsed.
struct udp_bind_config final : layer_options {
  address where;
  udp::bind_options options;
};

bool check_address(const protocol_entry& entry, const spec_layer& layer, bool connecting, spec_error& error) {
  auto why = address::explain_ip(layer.target);
  if (!why.empty()) return fail(error, std::string(entry.name) + ": " + why, layer.target_position);
  if (connecting && address::parse_ip(layer.target)->port() == 0) {
    return fail(error, "udp: cannot send to port 0 (port 0 only means 'any port' for udp-listen)",
                layer.target_position);
  }
  return true;
}

bool is_ipv4_multicast(const address& a) {
  if (a.kind() != address::family::ipv4) return false;
  return IN_MULTICAST(ntohl(reinterpret_cast<const sockaddr_in*>(a.data())->sin_addr.s_addr));
}

/// host_param reads an IPv4 host parameter `key` (no port); `group` asks for a multicast one.
bool host_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key, bool group,
                std::optional<address>& out, spec_error& error) {
  const auto* p = entry.find_param(layer, key);
  if (!p) return true;
  auto a = address::parse_ip(p->value + ":0");
  std::string what = std::string(entry.name) + ": " + std::string(key);
  if (!a || a->kind() != address::family::ipv4) {
    return fail(error, what + " must be a numeric IPv4 address, got '" + p->value + "'", p->position);
  }
  if (group && !is_ipv4_multicast(*a)) {
    return fail(
        error,
        what + " must be an IPv4 multicast group (224.0.0.0 to 239.255.255.255), got '" + p->value + "'",
        p->position);
  }
  out = *a;
  return true;
}

bool connect_options_of(const spec_layer& layer, const address& peer, udp::connect_options& options,
                        spec_error& error) {
  const auto& entry = udp_connect_entry;
  bool group = is_ipv4_multicast(peer);
  if (const auto* b = entry.find_param(layer, "bind")) {
    auto why = address::explain_ip(b->value);
    if (!why.empty()) return fail(error, "udp: bind: " + why, b->position);
    options.bind = *address::parse_ip(b->value);
    if (options.bind->socket_family() != peer.socket_family()) {
      return fail(error, "udp: bind address and peer must both be IPv4 or both IPv6", b->position);
    }
  }
  std::uint64_t ttl = 0;
  if (entry.find_param(layer, "ttl")) {
    if (!uint_param(entry, layer, "ttl", 0, group ? 0 : 1, 255, ttl, error)) return false;
    if (group) {
      options.multicast.ttl = static_cast<int>(ttl);
    } else {
      options.ttl = static_cast<int>(ttl);
    }
  }
  bool loop = true;
  if (!flag_param(entry, layer, "loop", true, loop, error)) return false;
  if (group) options.multicast.loop = loop;
  if (!host_param(entry, layer, "interface", false, options.multicast.interface, error)) return false;
  if (options.multicast.interface && !group) {
    return fail(error, "udp: interface applies to a multicast peer only",
                value_position(entry, layer, "interface"));
  }
  options.keep_too_large = true;
  return true;
}

layer_options_ptr configure_connect(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  if (!check_shape(udp_connect_entry, layer, error) || !check_address(udp_connect_entry, layer, true, error))
    return nullptr;
  auto config = std::make_shared<udp_connect_config>();
  config->where = *address::parse_ip(layer.target);
  if (!connect_options_of(layer, config->where, config->options, error)) return nullptr;
  return config;
}

bool listen_options_of(const spec_layer& layer, const address& where, udp::listen_options& options,
                       spec_error& error) {
  const auto& entry = udp_listen_entry;
  if (!host_param(entry, layer, "multicast", true, options.multicast.group, error)) return false;
  if (!host_param(entry, layer, "interface", false, options.multicast.interface, error)) return false;
  bool loop = true;
  if (!flag_param(entry, layer, "loop", true, loop, error)) return false;
  if (options.multicast.group) {
    options.multicast.loop = loop;
    if (where.kind() != address::family::ipv4) {
      return fail(error, "udp-listen: multicast needs an IPv4 HOST (0.0.0.0 or the group)",
                  layer.target_position);
    }
  } else if (options.multicast.interface) {
    return fail(error, "udp-listen: interface applies with multicast=GROUP only",
                value_position(entry, layer, "interface"));
  }
  options.keep_too_large = true;
  return true;
}

layer_options_ptr configure_listen(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  if (!check_shape(udp_listen_entry, layer, error) || !check_address(udp_listen_entry, layer, false, error))
    return nullptr;
  auto config = std::make_shared<udp_listen_config>();
  config->where = *address::parse_ip(layer.target);
  if (!listen_options_of(layer, config->where, config->options, error)) return nullptr;
  return config;
}

layer_options_ptr configure_bind(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  const auto& entry = udp_bind_entry;
  if (!check_shape(entry, layer, error) || !check_address(entry, layer, false, error)) return nullptr;
  auto config = std::make_shared<udp_bind_config>();
  config->where = *address::parse_ip(layer.target);
  if (!flag_param(entry, layer, "reuseport", false, config->options.reuse_port, error)) return nullptr;
  std::uint64_t rcvbuf = 0;
  if (!size_param(entry, layer, "rcvbuf", 0, 1024, 1u << 30, rcvbuf, error)) return nullptr;
  config->options.receive_buffer = static_cast<int>(rcvbuf);
  // A message larger than the caller's buffer stays queued, so it can be received again
  // with a larger one (as the connected entries do).
  config->options.keep_too_large = true;
  return config;
}

/// refine gives an IPv6 socket its larger message limit.
template <class Config>
properties refine(properties computed, const layer_options& options) {
  const auto& config = static_cast<const Config&>(options);
  if (config.where.kind() == address::family::ipv6) computed.max_message = udp::max_ipv6_message;
  return computed;
}

task<result<any_connection>> connected_task(udp::connected c) {
  co_return any_connection(any_message(std::move(c)));
}

task<result<any_connection>> connect(layer_options_ptr options, deadline) {
  const auto& config = static_cast<const udp_connect_config&>(*options);
  // UDP has no handshake: the socket is ready at once.
  auto c = udp::connect(config.where, config.options);
  if (!c) return failed_connect(c.error());
  return connected_task(std::move(*c));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& config = static_cast<const udp_listen_config&>(*options);
  auto l = udp::listener::bind(config.where, config.options);
  if (!l) return unexpected(l.error());
  return make_listener(std::move(*l));
}

result<any_datagram> bind(layer_options_ptr options) {
  const auto& config = static_cast<const udp_bind_config&>(*options);
  auto s = udp::socket::bind(config.where, config.options);
  if (!s) return unexpected(s.error());
  return any_datagram(std::move(*s));
}

}  // namespace

constinit const protocol_entry udp_connect_entry{
    .name = "udp",
    .protocol = "udp",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &udp::row,
    .summary = "a UDP message socket connected to HOST:PORT (unicast or an IPv4 group)",
    .target_help = "HOST:PORT",
    .params = connect_params,
    .parses_peer_input = false,
    .configure = configure_connect,
    .refine = refine<udp_connect_config>,
    .connect = connect,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry udp_listen_entry{
    .name = "udp-listen",
    .protocol = "udp",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &udp::row,
    .summary = "bind UDP HOST:PORT; each accept takes a new sender's first datagram (socat's UDP-LISTEN)",
    .target_help = "HOST:PORT",
    .params = listen_params,
    .parses_peer_input = false,
    .configure = configure_listen,
    .refine = refine<udp_listen_config>,
    .connect = nullptr,
    .listen = listen,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry udp_bind_entry{
    .name = "udp-bind",
    .protocol = "udp",
    .layer = "transport",
    .role = layer_role::bound,
    .row = &udp::row,
    .summary = "bind UDP HOST:PORT as one endpoint: receive from any sender (with its address), send to any",
    .target_help = "HOST:PORT",
    .params = bind_params,
    .parses_peer_input = false,
    .configure = configure_bind,
    .refine = refine<udp_bind_config>,
    .connect = nullptr,
    .listen = nullptr,
    .bind = bind,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
