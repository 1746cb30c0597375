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

bool validate_connect(const spec_layer& layer, spec_error& error) {
  return check_shape(inproc_connect_entry, layer, error) && check_name(inproc_connect_entry, layer, error);
}

bool validate_listen(const spec_layer& layer, spec_error& error) {
  inproc::listen_options options;
  return check_shape(inproc_listen_entry, layer, error) && check_name(inproc_listen_entry, layer, error) &&
         listen_options_of(layer, options, error);
}

task<result<any_connection>> connect_to(std::string name, deadline dl) {
  auto s = co_await inproc::connect(std::move(name), dl);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

task<result<any_connection>> connect(const spec_layer& layer, deadline dl) {
  spec_error error;
  if (!validate_connect(layer, error)) return failed_connect(make_error_code(errc::invalid_argument));
  return connect_to(layer.target, dl);
}

result<any_listener> listen(const spec_layer& layer) {
  spec_error error;
  inproc::listen_options options;
  if (!validate_listen(layer, error) || !listen_options_of(layer, options, error))
    return errc::invalid_argument;
  auto l = inproc::listener::bind(layer.target, options);
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
    .validate = validate_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
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
    .validate = validate_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
