// Registry entries for unix datagram sockets (include/strata/transport/unix_dgram.hpp):
// reliable, ordered messages between processes on one host, connection-less.
//
// row:  unix_dgram::row (requires nothing; provides connection-less message reliable
//       ordered dup_free ipc p2p any-process duplex fd_passing max_message=212960)
// spec: unix-dgram:PATH or unix-dgram:@NAME (bind=PATH|@NAME)
//       unix-dgram-listen:PATH or unix-dgram-listen:@NAME   (accepts one sender)

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

bool connect_options_of(const spec_layer& layer, unix_dgram::connect_options& options, spec_error& error) {
  options.keep_too_large = true;
  const auto* b = unix_dgram_connect_entry.find_param(layer, "bind");
  if (!b) return true;
  auto why = explain_unix(b->value);
  if (!why.empty()) return fail(error, "unix-dgram: bind: " + why, b->position);
  options.bind = *address::parse_unix(b->value);
  return true;
}

bool validate_connect(const spec_layer& layer, spec_error& error) {
  unix_dgram::connect_options options;
  return check_shape(unix_dgram_connect_entry, layer, error) &&
         check_unix_target(unix_dgram_connect_entry, layer, error) &&
         connect_options_of(layer, options, error);
}

bool validate_listen(const spec_layer& layer, spec_error& error) {
  return check_shape(unix_dgram_listen_entry, layer, error) &&
         check_unix_target(unix_dgram_listen_entry, layer, error);
}

task<result<any_connection>> connected_task(unix_dgram::connected c) {
  co_return any_connection(any_message(std::move(c)));
}

task<result<any_connection>> connect(const spec_layer& layer, deadline) {
  spec_error error;
  unix_dgram::connect_options options;
  if (!validate_connect(layer, error) || !connect_options_of(layer, options, error)) {
    return failed_connect(make_error_code(errc::invalid_argument));
  }
  // Connecting a datagram socket does not block.
  auto c = unix_dgram::connect(layer.target, options);
  if (!c) return failed_connect(c.error());
  return connected_task(std::move(*c));
}

result<any_listener> listen(const spec_layer& layer) {
  spec_error error;
  if (!validate_listen(layer, error)) return errc::invalid_argument;
  auto l = unix_dgram::listener::bind(layer.target, {.keep_too_large = true});
  if (!l) return unexpected(l.error());
  return make_listener(std::move(*l));
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
    .validate = validate_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
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
    .validate = validate_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
