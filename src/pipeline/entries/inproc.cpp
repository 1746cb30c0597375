// Registry entries for inproc (include/strata/transport/inproc.hpp): byte streams inside
// one process, met by name.
//
// row:  inproc::stream_row (connection-based stream reliable ordered dup_free inproc p2p
//       duplex)
// spec: inproc:NAME (connect), inproc-listen:NAME(backlog=N, buffer=SIZE)
#include "strata/transport/inproc.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info listen_params[] = {
    {.name = "backlog", .default_value = "16", .help = "connections waiting for accept (1..65535)"},
    {.name = "buffer",
     .default_value = "256k",
     .help = "bytes one direction of a connection holds before its writer waits (1..1g)"},
};

/// inproc_connect_config is inproc:NAME parsed.
struct inproc_connect_config final : layer_options {
  std::string name;
};

/// inproc_listen_config is inproc-listen:NAME(...) parsed.
struct inproc_listen_config final : layer_options {
  std::string name;
  inproc::listen_options options;
};

bool check_name(const protocol_entry& entry, const spec_layer& layer, spec_error& error) {
  if (layer.target.find('\0') != std::string::npos) {
    return fail(error, std::string(entry.name) + ": a name cannot contain a NUL byte", layer.target_position);
  }
  return true;
}

bool listen_options_of(const spec_layer& layer, inproc::listen_options& options, spec_error& error) {
  std::uint64_t backlog = 0;
  std::uint64_t buffer = 0;
  if (!uint_param(inproc_listen_entry, layer, "backlog", 16, 1, 65535, backlog, error)) return false;
  if (!size_param(inproc_listen_entry, layer, "buffer", 256 * 1024, 1, std::uint64_t{1} << 30, buffer, error))
    return false;
  options.backlog = static_cast<std::size_t>(backlog);
  options.stream.buffer_limit = static_cast<std::size_t>(buffer);
  return true;
}

layer_options_ptr configure_connect(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  if (!check_shape(inproc_connect_entry, layer, error) || !check_name(inproc_connect_entry, layer, error))
    return nullptr;
  auto config = std::make_shared<inproc_connect_config>();
  config->name = layer.target;
  return config;
}

layer_options_ptr configure_listen(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<inproc_listen_config>();
  if (!check_shape(inproc_listen_entry, layer, error) || !check_name(inproc_listen_entry, layer, error) ||
      !listen_options_of(layer, config->options, error)) {
    return nullptr;
  }
  config->name = layer.target;
  return config;
}

task<result<any_connection>> connect(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const inproc_connect_config&>(*options);
  auto s = co_await inproc::connect(config.name, dl);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& config = static_cast<const inproc_listen_config&>(*options);
  auto l = inproc::listener::bind(config.name, config.options);
  if (!l) return unexpected(l.error());
  return make_listener(std::move(*l));
}

}  // namespace

constinit const protocol_entry inproc_connect_entry{
    .name = "inproc",
    .protocol = "inproc",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &inproc::stream_row,
    .summary = "connect a byte stream to inproc-listen:NAME in this process",
    .target_help = "NAME",
    .params = {},
    .parses_peer_input = false,
    .configure = configure_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry inproc_listen_entry{
    .name = "inproc-listen",
    .protocol = "inproc",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &inproc::stream_row,
    .summary = "accept byte streams from inproc:NAME in this process",
    .target_help = "NAME",
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
