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
#include "strata/secure/tls.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "sni",
     .default_value = {},
     .help = "client: the server's name, sent as SNI and checked against its certificate "
             "(default: the peer's IP address is checked)",
     .optional = true},
    {.name = "alpn",
     .default_value = {},
     .help = "application protocols in preference order, comma-separated (alpn=\"h2,http/1.1\")",
     .optional = true},
    {.name = "ca",
     .default_value = {},
     .help = "PEM file of the CAs trusted to sign the peer's certificate (default: the system's store)",
     .optional = true},
    {.name = "cert",
     .default_value = {},
     .help = "PEM certificate chain: the server's (comma-separated for several names, picked by SNI) "
             "or the client's own",
     .optional = true},
    {.name = "key", .default_value = {}, .help = "PEM private key, one per cert", .optional = true},
    {.name = "verify",
     .default_value = "1",
     .help = "client: check the server's certificate and name (0: secret but not authenticated)"},
    {.name = "client-cert",
     .default_value = "none",
     .help = "server: none, optional or require a client certificate (checked against ca)"},
    {.name = "min", .default_value = "1.2", .help = "lowest TLS version: 1.2 or 1.3"},
    {.name = "max", .default_value = "1.3", .help = "highest TLS version: 1.2 or 1.3"},
    {.name = "groups",
     .default_value = {},
     .help = "key exchange groups in preference order, colon-separated (X25519:P-256)",
     .optional = true},
    {.name = "tickets", .default_value = "1", .help = "session resumption with tickets: 1 or 0"},
    {.name = "keylog",
     .default_value = {},
     .help = "file to append session secrets to, for Wireshark (default: $SSLKEYLOGFILE)",
     .optional = true},
};

/// tls_config is tls(...) parsed, with the contexts made once for every connection.
struct tls_config final : layer_options {
  tls::context_options options;
  tls::client_options client;
  tls::context client_context;  ///< always made
  tls::context server_context;  ///< made when certificates are given
  std::string server_problem;   ///< why there is no server context
  bool verify_given = false;
  bool sni_given = false;
  bool client_cert_given = false;
};

constexpr std::string_view versions[] = {"1.2", "1.3"};
constexpr std::string_view client_auths[] = {"none", "optional", "require"};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    auto item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    out.push_back(item);
    start = comma + 1;
  }
  return out;
}

std::string value_of(const spec_layer& layer, std::string_view key) {
  const auto* p = tls_entry.find_param(layer, key);
  return p ? p->value : std::string();
}

bool options_of(const spec_layer& layer, tls_config& config, spec_error& error) {
  const auto& entry = tls_entry;
  auto& o = config.options;
  bool verify = true;
  std::size_t min = 0, max = 1, auth = 0;
  bool tickets = true;
  if (!flag_param(entry, layer, "verify", true, verify, error)) return false;
  if (!choice_param(entry, layer, "min", versions, 0, min, error)) return false;
  if (!choice_param(entry, layer, "max", versions, 1, max, error)) return false;
  if (!choice_param(entry, layer, "client-cert", client_auths, 0, auth, error)) return false;
  if (!flag_param(entry, layer, "tickets", true, tickets, error)) return false;
  if (min > max) return fail(error, "tls: min 1.3 is above max 1.2", value_position(entry, layer, "min"));
  o.verify_peer = verify;
  o.min_version = min == 0 ? tls::version::tls1_2 : tls::version::tls1_3;
  o.max_version = max == 0 ? tls::version::tls1_2 : tls::version::tls1_3;
  o.client_certificates = static_cast<tls::client_auth>(auth);
  o.session_tickets = tickets;
  o.ca_file = value_of(layer, "ca");
  o.groups = value_of(layer, "groups");
  o.keylog_file = value_of(layer, "keylog");
  config.client.server_name = value_of(layer, "sni");
  config.verify_given = entry.find_param(layer, "verify") != nullptr;
  config.sni_given = entry.find_param(layer, "sni") != nullptr;
  config.client_cert_given = entry.find_param(layer, "client-cert") != nullptr;
  if (config.sni_given && config.client.server_name.empty()) {
    return fail(error, "tls: sni is empty", value_position(entry, layer, "sni"));
  }
  if (auto alpn = value_of(layer, "alpn"); !alpn.empty()) {
    o.alpn = split_list(alpn);
    for (const auto& p : o.alpn) {
      if (p.empty() || p.size() > 255) {
        return fail(error, "tls: ALPN names are 1 to 255 bytes, separated by single commas",
                    value_position(entry, layer, "alpn"));
      }
    }
  }
  bool has_cert = entry.find_param(layer, "cert") != nullptr;
  bool has_key = entry.find_param(layer, "key") != nullptr;
  if (has_cert != has_key) {
    return fail(error, has_cert ? "tls: cert= needs its key= too" : "tls: key= needs its cert= too",
                value_position(entry, layer, has_cert ? "cert" : "key"));
  }
  if (has_cert) {
    auto certs = split_list(value_of(layer, "cert"));
    auto keys = split_list(value_of(layer, "key"));
    if (certs.size() != keys.size()) {
      return fail(error,
                  "tls: " + std::to_string(certs.size()) + " certificate(s) but " +
                      std::to_string(keys.size()) +
                      " key(s); give one key per certificate, in the same order",
                  value_position(entry, layer, "key"));
    }
    for (std::size_t i = 0; i < certs.size(); ++i) {
      o.certificates.push_back(tls::credential{.cert_file = certs[i], .key_file = keys[i]});
    }
  }
  if (o.client_certificates != tls::client_auth::none && o.ca_file.empty()) {
    return fail(error, "tls: client-cert=" + value_of(layer, "client-cert") + " needs ca= to check them with",
                value_position(entry, layer, "client-cert"));
  }
  return true;
}

layer_options_ptr configure(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<tls_config>();
  if (!check_shape(tls_entry, layer, error) || !options_of(layer, *config, error)) return nullptr;
  std::string why;
  auto client = tls::context::client(config->options, &why);
  if (!client) {
    fail(error, "tls: " + why, layer.position);
    return nullptr;
  }
  config->client_context = std::move(*client);
  if (!config->options.certificates.empty()) {
    auto server = tls::context::server(config->options, &why);
    if (!server) {
      fail(error, "tls: " + why, layer.position);
      return nullptr;
    }
    config->server_context = std::move(*server);
  } else {
    config->server_problem = "a TLS server needs its certificate: give cert= and key=";
  }
  return config;
}

bool fit_side(const layer_options& options, layer_side side, const spec_layer& layer, properties& offers,
              spec_error& error) {
  const auto& config = static_cast<const tls_config&>(options);
  // authenticated means the peer was verified: a client does unless verify=0, a server
  // only when it asks for client certificates (and then only if they are required).
  offers.authenticated = side == layer_side::client
                             ? config.options.verify_peer
                             : config.options.client_certificates == tls::client_auth::required;
  if (side == layer_side::server) {
    if (!config.server_context)
      return fail(error, "tls (server side): " + config.server_problem, layer.position);
    if (config.sni_given) {
      return fail(error, "tls (server side): sni= is the client's; a server picks among its cert= by SNI",
                  value_position(tls_entry, layer, "sni"));
    }
    if (config.verify_given) {
      return fail(error, "tls (server side): verify= is the client's; a server uses client-cert=",
                  value_position(tls_entry, layer, "verify"));
    }
  } else if (config.client_cert_given) {
    return fail(error,
                "tls (client side): client-cert= is the server's; a client sends its own with cert= and key=",
                value_position(tls_entry, layer, "client-cert"));
  }
  return true;
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side side,
                                  deadline dl) {
  if (!lower.is_stream()) {
    if (lower.is_message()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const tls_config&>(*options);
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
