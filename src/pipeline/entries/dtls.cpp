// Registry entry for dtls (include/strata/secure/dtls.hpp): secrecy and authentication on
// any message layer. The side comes from the pipeline: above a listener (udp-listen,
// unix-dgram-listen, seqpacket-listen: one connection per peer) the layer is a DTLS
// server, above a connector a client. On udp-listen and unix-dgram-listen it gates new
// senders with its cookie exchange before the listener keeps anything for them.
//
// row:  dtls::row (requires message; provides connection-based secure authenticated max_message)
// spec: dtls(sni=localhost, ca=ca.pem, mtu=1200)                  (client)
//       dtls(cert=server.pem, key=server.key)                     (server)
#include <string>
#include <vector>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "secure_options.hpp"
#include "strata/secure/dtls.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    secure_param::sni,
    secure_param::alpn,
    secure_param::ca,
    secure_param::cert,
    secure_param::key,
    secure_param::verify,
    secure_param::client_cert,
    {.name = "mtu",
     .default_value = "1200",
     .help = "largest datagram DTLS sends, 256..65507 (handshake messages are fragmented to fit)"},
    {.name = "retransmit",
     .default_value = "1s",
     .help = "first retransmission timeout of a lost handshake flight, 1ms..60s (doubled up to 60 s)"},
    secure_param::groups,
    secure_param::tickets,
    secure_param::keylog,
};

layer_options_ptr configure(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  return configure_secure(self, layer, true, error);
}

bool fit_side(const layer_options& options, layer_side side, const spec_layer& layer, properties& offers,
              spec_error& error) {
  return fit_secure_side(dtls_entry, options, side, layer, offers, error);
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side side,
                                  deadline dl) {
  if (!lower.is_message()) {
    if (lower.is_stream()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const secure_config&>(*options);
  if (side == layer_side::server) {
    auto s = co_await dtls::accept(lower.take_message(), config.server_context, dl, config.link);
    if (!s) co_return unexpected(s.error());
    co_return any_connection(any_message(std::move(*s)));
  }
  auto s =
      co_await dtls::connect(lower.take_message(), config.client_context, config.client, dl, config.link);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_message(std::move(*s)));
}

/// gate is the cookie exchange on the listening side (dtls::cookie_gate).
admission_gate gate(const layer_options& options) {
  const auto& config = static_cast<const secure_config&>(options);
  auto made = dtls::cookie_gate(config.server_context);
  return made ? std::move(*made) : admission_gate{};
}

properties refine(properties computed, const layer_options& options) {
  // What one record carries before the suite is known (after the handshake a
  // connection's max_message is exact, never smaller).
  const auto& config = static_cast<const secure_config&>(options);
  computed.max_message = config.link.mtu - dtls::record_overhead;
  return computed;
}

}  // namespace

constinit const protocol_entry dtls_entry{
    .name = "dtls",
    .protocol = "dtls",
    .layer = "secure",
    .role = layer_role::adapter,
    .row = &dtls::row,
    .summary = "DTLS 1.2 on a message layer: secret, authenticated, connection-based (OpenSSL 3)",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
    .refine = refine,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
    .fit_side = fit_side,
    .gate = gate,
};

}  // namespace strata::pipeline_detail
