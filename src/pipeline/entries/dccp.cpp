// Registry entry for dccp (include/strata/adapt/dccp.hpp): connections and CCID 2
// congestion control on an unreliable datagram layer, DCCP in UDP (RFC 4340, RFC 6773).
// The side comes from the pipeline: above a listener (udp-listen: one connection per
// peer) the layer is a DCCP server, above a connector a client. On udp-listen it gates
// new senders: only a well-formed Request for its service code makes the listener keep
// anything for a sender.
//
// row:  dccp::row (requires message; provides connection-based message unreliable
//       congestion_controlled max_message)
// spec: dccp, dccp(service=42), dccp(service=42, mtu=1200, retransmit=200ms)
#include <string>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "strata/adapt/dccp.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "service",
     .default_value = "0",
     .help = "service code a client asks for and a server accepts (RFC 4340 8.1.2), 0..4294967294",
     .positional = true},
    {.name = "mtu",
     .default_value = "1400",
     .help = "largest datagram DCCP sends, 128..65507 (messages: mtu - 24)"},
    {.name = "retransmit",
     .default_value = "1s",
     .help = "first interval of Request and Close retransmissions, 10ms..60s (doubled up to 64 s)"},
    {.name = "min-rto",
     .default_value = "1s",
     .help = "CCID 2's smallest retransmission timeout, 10ms..60s (RFC 4341: 1 s)"},
    {.name = "ack-ratio", .default_value = "2", .help = "data packets the peer acknowledges at once, 1..64"},
    {.name = "window",
     .default_value = "1000",
     .help =
         "Sequence Window announced for our numbers, 32..1048576 (the congestion window stays below half)"},
};

/// dccp_config is dccp(...) parsed.
struct dccp_config final : layer_options {
  dccp::config cfg;
};

bool options_of(const spec_layer& layer, dccp::config& cfg, spec_error& error) {
  const auto& entry = dccp_entry;
  std::uint64_t service = 0, mtu = 0, retransmit = 0, min_rto = 0, ratio = 0, window = 0;
  if (!uint_param(entry, layer, "service", 0, 0, 4294967294u, service, error)) return false;
  if (!uint_param(entry, layer, "mtu", 1400, 128, 65507, mtu, error)) return false;
  if (!duration_param(entry, layer, "retransmit", 1000, 10, 60000, retransmit, error)) return false;
  if (!duration_param(entry, layer, "min-rto", 1000, 10, 60000, min_rto, error)) return false;
  if (!uint_param(entry, layer, "ack-ratio", 2, 1, 64, ratio, error)) return false;
  if (!uint_param(entry, layer, "window", 1000, 32, 1048576, window, error)) return false;
  cfg.service = static_cast<std::uint32_t>(service);
  cfg.mtu = static_cast<std::size_t>(mtu);
  cfg.retransmit = std::chrono::milliseconds(retransmit);
  cfg.min_rto = std::chrono::milliseconds(min_rto);
  cfg.initial_rto = std::max(cfg.min_rto, std::chrono::milliseconds(1000));
  if (cfg.min_rto < std::chrono::milliseconds(1000)) cfg.initial_rto = cfg.min_rto;
  cfg.ack_ratio = static_cast<std::uint16_t>(ratio);
  cfg.sequence_window = window;
  return true;
}

layer_options_ptr configure(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<dccp_config>();
  if (!check_shape(dccp_entry, layer, error) || !options_of(layer, config->cfg, error)) return nullptr;
  return config;
}

properties refine(properties computed, const layer_options& options) {
  const auto& cfg = static_cast<const dccp_config&>(options).cfg;
  computed.max_message = cfg.mtu - dccp::header_size(dccp::packet_type::data_ack);
  return computed;
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side side,
                                  deadline dl) {
  if (!lower.is_message()) {
    if (lower.is_stream()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const dccp_config&>(*options);
  if (side == layer_side::server) {
    auto c = co_await dccp::accept(lower.take_message(), config.cfg, dl);
    if (!c) co_return unexpected(c.error());
    co_return any_connection(any_message(std::move(*c)));
  }
  auto c = co_await dccp::connect(lower.take_message(), config.cfg, dl);
  if (!c) co_return unexpected(c.error());
  co_return any_connection(any_message(std::move(*c)));
}

/// gate admits only well-formed Requests for the service code (dccp::request_gate).
admission_gate gate(const layer_options& options) {
  return dccp::request_gate(static_cast<const dccp_config&>(options).cfg);
}

}  // namespace

constinit const protocol_entry dccp_entry{
    .name = "dccp",
    .protocol = "dccp",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &dccp::row,
    .summary = "DCCP in UDP (RFC 4340, 6773): connections, CCID 2 congestion control, unreliable messages",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
    .refine = refine,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
    .fit_side = nullptr,
    .gate = gate,
};

}  // namespace strata::pipeline_detail
