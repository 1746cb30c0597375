// Registry entry for tls (include/strata/secure/tls.hpp): secrecy and authentication on
// any reliable byte stream. The side comes from the pipeline: above a listener the layer
// is a TLS server, above a connector a client.
//
// row:  tls::row (requires stream reliable ordered; provides secure authenticated)
// spec: tls(sni=example.com, alpn="h2,http/1.1", ca=ca.pem)     (client)
//       tls(cert=server.pem, key=server.key, client-cert=require, ca=ca.pem)   (server)
#include <string>
#include <vector>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "secure_options.hpp"
#include "strata/secure/tls.hpp"

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
    {.name = "min", .default_value = "1.2", .help = "lowest TLS version: 1.2 or 1.3"},
    {.name = "max", .default_value = "1.3", .help = "highest TLS version: 1.2 or 1.3"},
    secure_param::groups,
    secure_param::tickets,
    secure_param::keylog,
};

layer_options_ptr configure(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  return configure_secure(self, layer, false, error);
}

bool fit_side(const layer_options& options, layer_side side, const spec_layer& layer, properties& offers,
              spec_error& error) {
  return fit_secure_side(tls_entry, options, side, layer, offers, error);
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side side,
                                  deadline dl) {
  if (!lower.is_stream()) {
    if (lower.is_message()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const secure_config&>(*options);
  if (side == layer_side::server) {
    auto s = co_await tls::accept(lower.take_stream(), config.server_context, dl);
    if (!s) co_return unexpected(s.error());
    co_return any_connection(any_stream(std::move(*s)));
  }
  auto s = co_await tls::connect(lower.take_stream(), config.client_context, config.client, dl);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

}  // namespace

constinit const protocol_entry tls_entry{
    .name = "tls",
    .protocol = "tls",
    .layer = "secure",
    .role = layer_role::adapter,
    .row = &tls::row,
    .summary = "TLS 1.2/1.3 on a reliable byte stream: secret, authenticated (OpenSSL 3)",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
    .refine = nullptr,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
    .fit_side = fit_side,
};

}  // namespace strata::pipeline_detail
