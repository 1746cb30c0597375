// Registry entry for bytes (include/strata/adapt/bytes.hpp): a byte stream over a
// reliable, ordered message layer, so stream protocols (tls, http1, mux) run on udp |
// reliable, seqpacket or unix-dgram. No parameters: the message size is the layer below's.
//
// row:  bytes_row (requires message reliable ordered; provides stream)
// spec: udp:127.0.0.1:9000 | reliable | bytes | tls(sni=localhost, ca=ca.pem)
#include "strata/adapt/bytes.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

/// bytes_config is bytes parsed (it has no parameters).
struct bytes_config final : layer_options {};

layer_options_ptr configure(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  if (!check_shape(self, layer, error)) return nullptr;
  return std::make_shared<bytes_config>();
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr, layer_side, deadline dl) {
  if (!lower.is_message()) {
    if (lower.is_stream()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  co_return any_connection(any_stream(bytes_stream<any_message>(lower.take_message())));
}

}  // namespace

constinit const protocol_entry bytes_entry{
    .name = "bytes",
    .protocol = "bytes",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &bytes_row,
    .summary = "a byte stream over a reliable, ordered message layer (writes cut to its message size)",
    .target_help = {},
    .params = {},
    .parses_peer_input = false,
    .configure = configure,
    .refine = nullptr,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
};

}  // namespace strata::pipeline_detail
