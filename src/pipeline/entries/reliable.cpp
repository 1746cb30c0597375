// Registry entry for reliable (include/strata/adapt/reliable.hpp): reliable, ordered
// messages over an unreliable message layer. No handshake: both sides are alike, so it
// stacks the same way above a connector (udp) and above each connection of a listener
// (udp-listen, unix-dgram-listen).
//
// row:  reliable::row (requires message; provides connection-based message reliable ordered
//       dup_free congestion_controlled; max_message refined to min(mtu, below) - 24)
// spec: udp:127.0.0.1:9000 | reliable
//       udp-listen:127.0.0.1:9000 | reliable(window=1024, keepalive=1s, dead-after=10s)
#include "strata/adapt/reliable.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "mtu", .default_value = "1200", .help = "largest packet sent, header included (64..65507)"},
    {.name = "window", .default_value = "256", .help = "receive window in messages (16..65536)"},
    {.name = "send-buffer",
     .default_value = "256",
     .help = "messages queued unacknowledged before send waits"},
    {.name = "rto-min", .default_value = "200ms", .help = "smallest retransmission timeout"},
    {.name = "rto-max",
     .default_value = "60s",
     .help = "largest retransmission timeout (at most dead-after/16)"},
    {.name = "ack-delay", .default_value = "10ms", .help = "how long an ack may wait for a second message"},
    {.name = "keepalive", .default_value = "5s", .help = "probe after this much silence (0: off)"},
    {.name = "dead-after",
     .default_value = "15s",
     .help = "fail when the peer answers nothing this long (0: never)"},
    {.name = "cc",
     .default_value = "newreno",
     .help = "congestion control: newreno (halves on loss) or rate (follows the measured delivery rate)"},
};

constexpr std::string_view controls[] = {"newreno", "rate"};

/// reliable_config is reliable(...) parsed.
struct reliable_config final : layer_options {
  reliable::options options;
};

constexpr std::uint64_t hour_ms = 3'600'000;

layer_options_ptr configure(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  if (!check_shape(self, layer, error)) return nullptr;
  auto config = std::make_shared<reliable_config>();
  std::uint64_t mtu = 0;
  std::uint64_t window = 0;
  std::uint64_t send_buffer = 0;
  std::uint64_t rto_min = 0;
  std::uint64_t rto_max = 0;
  std::uint64_t ack_delay = 0;
  std::uint64_t keepalive = 0;
  std::uint64_t dead_after = 0;
  std::size_t control = 0;
  if (!size_param(self, layer, "mtu", 1200, 64, 65507, mtu, error) ||
      !uint_param(self, layer, "window", 256, reliable::min_window, reliable::max_window, window, error) ||
      !uint_param(self, layer, "send-buffer", 256, 1, reliable::max_window, send_buffer, error) ||
      !duration_param(self, layer, "rto-min", 200, 1, 60'000, rto_min, error) ||
      !duration_param(self, layer, "rto-max", 60'000, 1, hour_ms, rto_max, error) ||
      !duration_param(self, layer, "ack-delay", 10, 0, 1'000, ack_delay, error) ||
      !duration_param(self, layer, "keepalive", 5'000, 0, hour_ms, keepalive, error) ||
      !duration_param(self, layer, "dead-after", 15'000, 0, hour_ms, dead_after, error) ||
      !choice_param(self, layer, "cc", controls, 0, control, error)) {
    return nullptr;
  }
  if (rto_max < rto_min) {
    fail(error, "reliable: rto-max must not be below rto-min", value_position(self, layer, "rto-max"));
    return nullptr;
  }
  auto& o = config->options;
  o.mtu = static_cast<std::size_t>(mtu);
  o.window = static_cast<std::uint32_t>(window);
  o.send_buffer = static_cast<std::size_t>(send_buffer);
  o.rto_min = std::chrono::milliseconds(rto_min);
  o.rto_max = std::chrono::milliseconds(rto_max);
  o.ack_delay = std::chrono::milliseconds(ack_delay);
  o.keepalive = std::chrono::milliseconds(keepalive);
  o.dead_after = std::chrono::milliseconds(dead_after);
  o.congestion = control == 1 ? reliable::options::control::rate : reliable::options::control::newreno;
  return config;
}

properties refine(properties computed, const layer_options& options) {
  const auto& config = static_cast<const reliable_config&>(options);
  std::size_t mtu = config.options.mtu;
  if (computed.max_message != 0) mtu = std::min(mtu, computed.max_message);
  computed.max_message = mtu > reliable::header_size ? mtu - reliable::header_size : 0;
  return computed;
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side, deadline dl) {
  if (!lower.is_message()) {
    if (lower.is_stream()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const reliable_config&>(*options);
  co_return any_connection(any_message(reliable::connection(lower.take_message(), config.options)));
}

}  // namespace

constinit const protocol_entry reliable_entry{
    .name = "reliable",
    .protocol = "reliable",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &reliable::row,
    .summary = "reliable, ordered messages over an unreliable message layer (SACK, RTO, congestion control)",
    .target_help = {},
    .params = params,
    .parses_peer_input = true,
    .configure = configure,
    .refine = refine,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
};

}  // namespace strata::pipeline_detail
