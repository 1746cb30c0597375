// Registry entries for seqpacket sockets (include/strata/transport/seqpacket.hpp):
// reliable, ordered messages over a connection between processes on one host.
//
// row:  seqpacket::row (requires nothing; provides connection-based message reliable
//       ordered dup_free ipc p2p any-process duplex fd_passing max_message=212960)
// spec: seqpacket:PATH or seqpacket:@NAME
//       seqpacket-listen:PATH or seqpacket-listen:@NAME (backlog=N)

#include "strata/transport/seqpacket.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info listen_params[] = {
    {.name = "backlog", .default_value = "128", .help = "pending connections the kernel queues (1..65535)"},
};

/// seqpacket_connect_config is seqpacket:PATH parsed.
struct seqpacket_connect_config final : layer_options {
  address where;
};

/// seqpacket_listen_config is seqpacket-listen:PATH(...) parsed.
struct seqpacket_listen_config final : layer_options {
  address where;
  seqpacket::listen_options options;
};

layer_options_ptr configure_connect(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  if (!check_shape(seqpacket_connect_entry, layer, error) ||
      !check_unix_target(seqpacket_connect_entry, layer, error)) {
    return nullptr;
  }
  auto config = std::make_shared<seqpacket_connect_config>();
  config->where = *address::parse_unix(layer.target);
  return config;
}

layer_options_ptr configure_listen(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  const auto& entry = seqpacket_listen_entry;
  std::uint64_t backlog = 0;
  if (!check_shape(entry, layer, error) || !check_unix_target(entry, layer, error) ||
      !uint_param(entry, layer, "backlog", 128, 1, 65535, backlog, error)) {
    return nullptr;
  }
  auto config = std::make_shared<seqpacket_listen_config>();
  config->where = *address::parse_unix(layer.target);
  config->options.backlog = static_cast<int>(backlog);
  return config;
}

task<result<any_connection>> connect(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const seqpacket_connect_config&>(*options);
  auto s = co_await seqpacket::connect(config.where, dl);
  if (!s) co_return unexpected(s.error());
  s->set_keep_too_large(true);
  co_return any_connection(any_message(std::move(*s)));
}

/// keeping_listener hands out sockets that keep a message too large for the caller's
/// buffer (the relay then retries with a larger one).
class keeping_listener {
 public:
  explicit keeping_listener(seqpacket::listener l) : listener_(std::move(l)) {}
  task<result<seqpacket::socket>> accept(deadline dl) {
    auto s = co_await listener_.accept(dl);
    if (s) s->set_keep_too_large(true);
    co_return s;
  }
  result<address> local_address() const { return listener_.local_address(); }
  void close() { listener_.close(); }

 private:
  seqpacket::listener listener_;
};

result<any_listener> listen(layer_options_ptr options) {
  const auto& config = static_cast<const seqpacket_listen_config&>(*options);
  auto l = seqpacket::listener::bind(config.where, config.options);
  if (!l) return unexpected(l.error());
  return make_listener(keeping_listener(std::move(*l)));
}

}  // namespace

constinit const protocol_entry seqpacket_connect_entry{
    .name = "seqpacket",
    .protocol = "seqpacket",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &seqpacket::row,
    .summary = "connect a unix seqpacket socket (reliable, ordered messages) at PATH or @NAME",
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

constinit const protocol_entry seqpacket_listen_entry{
    .name = "seqpacket-listen",
    .protocol = "seqpacket",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &seqpacket::row,
    .summary = "accept unix seqpacket connections at PATH or @NAME",
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
