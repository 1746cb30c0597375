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

bool validate_connect(const spec_layer& layer, spec_error& error) {
  return check_shape(seqpacket_connect_entry, layer, error) &&
         check_unix_target(seqpacket_connect_entry, layer, error);
}

bool validate_listen(const spec_layer& layer, spec_error& error) {
  std::uint64_t backlog = 0;
  return check_shape(seqpacket_listen_entry, layer, error) &&
         check_unix_target(seqpacket_listen_entry, layer, error) &&
         uint_param(seqpacket_listen_entry, layer, "backlog", 128, 1, 65535, backlog, error);
}

task<result<any_connection>> connect_to(address where, deadline dl) {
  auto s = co_await seqpacket::connect(where, dl);
  if (!s) co_return unexpected(s.error());
  s->set_keep_too_large(true);
  co_return any_connection(any_message(std::move(*s)));
}

task<result<any_connection>> connect(const spec_layer& layer, deadline dl) {
  spec_error error;
  if (!validate_connect(layer, error)) return failed_connect(make_error_code(errc::invalid_argument));
  auto where = address::parse_unix(layer.target);
  if (!where) return failed_connect(where.error());
  return connect_to(*where, dl);
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

result<any_listener> listen(const spec_layer& layer) {
  spec_error error;
  std::uint64_t backlog = 0;
  if (!validate_listen(layer, error) ||
      !uint_param(seqpacket_listen_entry, layer, "backlog", 128, 1, 65535, backlog, error)) {
    return errc::invalid_argument;
  }
  auto l = seqpacket::listener::bind(layer.target, {.backlog = static_cast<int>(backlog)});
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
    .validate = validate_connect,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
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
    .validate = validate_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
