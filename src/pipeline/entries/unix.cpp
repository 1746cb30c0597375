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

bool validate_connect(const spec_layer& layer, spec_error& error) {
  return check_shape(unix_connect_entry, layer, error) && check_unix_target(unix_connect_entry, layer, error);
}

bool validate_listen(const spec_layer& layer, spec_error& error) {
  std::uint64_t backlog = 0;
  return check_shape(unix_listen_entry, layer, error) && check_unix_target(unix_listen_entry, layer, error) &&
         uint_param(unix_listen_entry, layer, "backlog", 128, 1, 65535, backlog, error);
}

task<result<any_connection>> connect_to(address where, deadline dl) {
  auto s = co_await uds::connect(where, dl);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

task<result<any_connection>> connect(const spec_layer& layer, deadline dl) {
  spec_error error;
  if (!validate_connect(layer, error)) return failed_connect(make_error_code(errc::invalid_argument));
  auto where = address::parse_unix(layer.target);
  if (!where) return failed_connect(where.error());
  return connect_to(*where, dl);
}

result<any_listener> listen(const spec_layer& layer) {
  spec_error error;
  std::uint64_t backlog = 0;
  if (!validate_listen(layer, error) ||
      !uint_param(unix_listen_entry, layer, "backlog", 128, 1, 65535, backlog, error)) {
    return errc::invalid_argument;
  }
  uds::listen_options options;
  options.backlog = static_cast<int>(backlog);
  auto l = uds::listener::bind(layer.target, options);
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
    .validate = validate_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
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
    .validate = validate_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
