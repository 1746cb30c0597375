#include "secure_options.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "../entry_support.hpp"

namespace strata::pipeline_detail {
namespace {

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

std::string value_of(const protocol_entry& entry, const spec_layer& layer, std::string_view key) {
  const auto* p = entry.find_param(layer, key);
  return p ? p->value : std::string();
}

bool options_of(const protocol_entry& entry, const spec_layer& layer, secure_config& config,
                spec_error& error) {
  auto& o = config.options;
  bool verify = true;
  std::size_t min = 0, max = 1, auth = 0;
  bool tickets = true;
  if (!flag_param(entry, layer, "verify", true, verify, error)) return false;
  if (!choice_param(entry, layer, "min", versions, 0, min, error)) return false;
  if (!choice_param(entry, layer, "max", versions, 1, max, error)) return false;
  if (!choice_param(entry, layer, "client-cert", client_auths, 0, auth, error)) return false;
  if (!flag_param(entry, layer, "tickets", true, tickets, error)) return false;
  if (min > max)
    return fail(error, std::string(entry.name) + ": min 1.3 is above max 1.2",
                value_position(entry, layer, "min"));
  o.verify_peer = verify;
  o.min_version = min == 0 ? tls::version::tls1_2 : tls::version::tls1_3;
  o.max_version = max == 0 ? tls::version::tls1_2 : tls::version::tls1_3;
  o.client_certificates = static_cast<tls::client_auth>(auth);
  o.session_tickets = tickets;
  o.ca_file = value_of(entry, layer, "ca");
  o.groups = value_of(entry, layer, "groups");
  o.keylog_file = value_of(entry, layer, "keylog");
  config.client.server_name = value_of(entry, layer, "sni");
  config.verify_given = entry.find_param(layer, "verify") != nullptr;
  config.sni_given = entry.find_param(layer, "sni") != nullptr;
  config.client_cert_given = entry.find_param(layer, "client-cert") != nullptr;
  if (config.sni_given && config.client.server_name.empty()) {
    return fail(error, std::string(entry.name) + ": sni is empty", value_position(entry, layer, "sni"));
  }
  if (auto alpn = value_of(entry, layer, "alpn"); !alpn.empty()) {
    o.alpn = split_list(alpn);
    for (const auto& p : o.alpn) {
      if (p.empty() || p.size() > 255) {
        return fail(error,
                    std::string(entry.name) + ": ALPN names are 1 to 255 bytes, separated by single commas",
                    value_position(entry, layer, "alpn"));
      }
    }
  }
  bool has_cert = entry.find_param(layer, "cert") != nullptr;
  bool has_key = entry.find_param(layer, "key") != nullptr;
  if (has_cert != has_key) {
    return fail(error,
                has_cert ? std::string(entry.name) + ": cert= needs its key= too"
                         : std::string(entry.name) + ": key= needs its cert= too",
                value_position(entry, layer, has_cert ? "cert" : "key"));
  }
  if (has_cert) {
    auto certs = split_list(value_of(entry, layer, "cert"));
    auto keys = split_list(value_of(entry, layer, "key"));
    if (certs.size() != keys.size()) {
      return fail(error,
                  std::string(entry.name) + ": " + std::to_string(certs.size()) + " certificate(s) but " +
                      std::to_string(keys.size()) +
                      " key(s); give one key per certificate, in the same order",
                  value_position(entry, layer, "key"));
    }
    for (std::size_t i = 0; i < certs.size(); ++i) {
      o.certificates.push_back(tls::credential{.cert_file = certs[i], .key_file = keys[i]});
    }
  }
  if (o.client_certificates != tls::client_auth::none && o.ca_file.empty()) {
    return fail(error,
                std::string(entry.name) + ": client-cert=" + value_of(entry, layer, "client-cert") +
                    " needs ca= to check them with",
                value_position(entry, layer, "client-cert"));
  }
  return true;
}

}  // namespace

layer_options_ptr configure_secure(const protocol_entry& entry, const spec_layer& layer, bool datagram,
                                   spec_error& error) {
  auto config = std::make_shared<secure_config>();
  if (!check_shape(entry, layer, error) || !options_of(entry, layer, *config, error)) return nullptr;
  std::string why;
  if (datagram) {
    std::uint64_t mtu = 0, retransmit = 0;
    if (!size_param(entry, layer, "mtu", 1200, 256, 65507, mtu, error)) return nullptr;
    if (!duration_param(entry, layer, "retransmit", 1000, 1, 60000, retransmit, error)) return nullptr;
    config->link.mtu = static_cast<std::size_t>(mtu);
    config->link.retransmit = std::chrono::milliseconds(retransmit);
  }
  auto client =
      datagram ? dtls::client_context(config->options, &why) : tls::context::client(config->options, &why);
  if (!client) {
    fail(error, std::string(entry.name) + ": " + why, layer.position);
    return nullptr;
  }
  config->client_context = std::move(*client);
  if (!config->options.certificates.empty()) {
    auto server =
        datagram ? dtls::server_context(config->options, &why) : tls::context::server(config->options, &why);
    if (!server) {
      fail(error, std::string(entry.name) + ": " + why, layer.position);
      return nullptr;
    }
    config->server_context = std::move(*server);
  } else {
    config->server_problem = "a TLS server needs its certificate: give cert= and key=";
  }
  return config;
}

bool fit_secure_side(const protocol_entry& entry, const layer_options& options, layer_side side,
                     const spec_layer& layer, properties& offers, spec_error& error) {
  const auto& config = static_cast<const secure_config&>(options);
  // authenticated means the peer was verified: a client does unless verify=0, a server
  // only when it asks for client certificates (and then only if they are required).
  offers.authenticated = side == layer_side::client
                             ? config.options.verify_peer
                             : config.options.client_certificates == tls::client_auth::required;
  if (side == layer_side::server) {
    if (!config.server_context)
      return fail(error, std::string(entry.name) + " (server side): " + config.server_problem,
                  layer.position);
    if (config.sni_given) {
      return fail(error,
                  std::string(entry.name) +
                      " (server side): sni= is the client's; a server picks among its cert= by SNI",
                  value_position(entry, layer, "sni"));
    }
    if (config.verify_given) {
      return fail(
          error,
          std::string(entry.name) + " (server side): verify= is the client's; a server uses client-cert=",
          value_position(entry, layer, "verify"));
    }
  } else if (config.client_cert_given) {
    return fail(
        error,
        std::string(entry.name) +
            " (client side): client-cert= is the server's; a client sends its own with cert= and key=",
        value_position(entry, layer, "client-cert"));
  }
  return true;
}

}  // namespace strata::pipeline_detail
