// What the secure layers' registry entries share (tls and dtls take the same
// certificates, trust, ALPN and verification parameters): parsing them once into
// contexts, and checking them against the side the pipeline puts the layer on.
#pragma once

#include <string>

#include "strata/pipeline/registry.hpp"
#include "strata/secure/dtls.hpp"
#include "strata/secure/tls.hpp"

namespace strata::pipeline_detail {

/// The parameters both secure layers take, documented once.
namespace secure_param {
inline constexpr param_info sni{
    .name = "sni",
    .default_value = {},
    .help =
        "client: the server's name, sent as SNI and checked against its certificate "
        "(default: the peer's IP address is checked)",
    .optional = true};
inline constexpr param_info alpn{
    .name = "alpn",
    .default_value = {},
    .help = "application protocols in preference order, comma-separated (alpn=\"h2,http/1.1\")",
    .optional = true};
inline constexpr param_info ca{
    .name = "ca",
    .default_value = {},
    .help = "PEM file of the CAs trusted to sign the peer's certificate (default: the system's store)",
    .optional = true};
inline constexpr param_info cert{
    .name = "cert",
    .default_value = {},
    .help =
        "PEM certificate chain: the server's (comma-separated for several names, picked by SNI) "
        "or the client's own",
    .optional = true};
inline constexpr param_info key{
    .name = "key", .default_value = {}, .help = "PEM private key, one per cert", .optional = true};
inline constexpr param_info verify{
    .name = "verify",
    .default_value = "1",
    .help = "client: check the server's certificate and name (0: secret but not authenticated)"};
inline constexpr param_info client_cert{
    .name = "client-cert",
    .default_value = "none",
    .help = "server: none, optional or require a client certificate (checked against ca)"};
inline constexpr param_info groups{
    .name = "groups",
    .default_value = {},
    .help = "key exchange groups in preference order, colon-separated (X25519:P-256)",
    .optional = true};
inline constexpr param_info tickets{
    .name = "tickets", .default_value = "1", .help = "session resumption with tickets: 1 or 0"};
inline constexpr param_info keylog{
    .name = "keylog",
    .default_value = {},
    .help = "file to append session secrets to, for Wireshark (default: $SSLKEYLOGFILE)",
    .optional = true};
}  // namespace secure_param

/// secure_config is tls(...) or dtls(...) parsed, with the contexts made once for every
/// connection.
struct secure_config final : layer_options {
  tls::context_options options;
  tls::client_options client;
  tls::context client_context;  ///< always made
  tls::context server_context;  ///< made when certificates are given
  std::string server_problem;   ///< why there is no server context
  bool verify_given = false;
  bool sni_given = false;
  bool client_cert_given = false;
  dtls::link_options link{};  ///< dtls only
};

/// configure_secure parses `layer` for `entry` (tls, or dtls when `datagram`) and makes
/// the client context, and the server context when certificates are given.
layer_options_ptr configure_secure(const protocol_entry& entry, const spec_layer& layer, bool datagram,
                                   spec_error& error);

/// fit_secure_side refuses what cannot serve `side` and sets whether the stack
/// authenticates its peer there.
bool fit_secure_side(const protocol_entry& entry, const layer_options& options, layer_side side,
                     const spec_layer& layer, properties& offers, spec_error& error);

}  // namespace strata::pipeline_detail
