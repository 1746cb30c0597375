// Registry entry for mux (include/strata/adapt/mux.hpp): many byte streams over one
// reliable stream. In a pipeline a connection carries one mux stream: the connector's
// side opens it, the listener's side accepts it (the first stream the peer opens). The
// session then sends GOAWAY, so neither side opens another; programs that want many
// streams per connection use mux::session directly.
//
// row:  mux::row (requires stream reliable ordered; provides connection-based, multiplexed)
// spec: tcp:127.0.0.1:7000 | mux | tls(ca=ca.pem)
//       tcp-listen:127.0.0.1:7000 | mux(window=1m, keepalive=15s)
#include "strata/adapt/mux.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "window", .default_value = "256k", .help = "each stream's receive window (256k..1g)"},
    {.name = "max-frame", .default_value = "16k", .help = "largest DATA frame payload (1k..16m)"},
    {.name = "max-streams", .default_value = "256", .help = "streams the peer may have open at once"},
    {.name = "keepalive", .default_value = "0", .help = "ping after this much silence (0: off)"},
    {.name = "dead-after", .default_value = "10s", .help = "the peer is dead without an answer this long"},
};

/// mux_config is mux(...) parsed.
struct mux_config final : layer_options {
  mux::options options;
};

constexpr std::uint64_t hour_ms = 3'600'000;

layer_options_ptr configure(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  if (!check_shape(self, layer, error)) return nullptr;
  auto config = std::make_shared<mux_config>();
  std::uint64_t window = 0;
  std::uint64_t max_frame = 0;
  std::uint64_t max_streams = 0;
  std::uint64_t keepalive = 0;
  std::uint64_t dead_after = 0;
  if (!size_param(self, layer, "window", mux::initial_window, mux::initial_window, std::uint64_t{1} << 30,
                  window, error) ||
      !size_param(self, layer, "max-frame", 16 * 1024, 1024, (1u << 24) - 1, max_frame, error) ||
      !uint_param(self, layer, "max-streams", 256, 1, 1'000'000, max_streams, error) ||
      !duration_param(self, layer, "keepalive", 0, 0, hour_ms, keepalive, error) ||
      !duration_param(self, layer, "dead-after", 10'000, 1, hour_ms, dead_after, error)) {
    return nullptr;
  }
  config->options.window = static_cast<std::size_t>(window);
  config->options.max_frame = static_cast<std::size_t>(max_frame);
  config->options.max_streams = static_cast<std::size_t>(max_streams);
  config->options.keepalive = std::chrono::milliseconds(keepalive);
  config->options.dead_after = std::chrono::milliseconds(dead_after);
  return config;
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side side,
                                  deadline dl) {
  if (!lower.is_stream()) {
    if (lower.is_message()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const mux_config&>(*options);
  mux::session session(lower.take_stream(),
                       side == layer_side::client ? mux::role::client : mux::role::server, config.options);
  result<mux::stream> stream = errc::closed;
  if (side == layer_side::client) {
    stream = co_await session.open(dl);
  } else {
    stream = co_await session.accept(dl);
  }
  if (!stream) {
    (void)co_await session.close(dl);
    co_return unexpected(stream.error());
  }
  // The session's state lives on with the stream; the session itself says GOAWAY.
  co_return any_connection(any_stream(std::move(*stream)));
}

}  // namespace

constinit const protocol_entry mux_entry{
    .name = "mux",
    .protocol = "mux",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &mux::row,
    .summary = "one of many byte streams over one reliable stream (a connection carries one)",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
    .refine = nullptr,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
};

}  // namespace strata::pipeline_detail
