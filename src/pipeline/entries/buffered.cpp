// Registry entry for buffered (include/strata/adapt/buffered.hpp): small writes coalesced
// into one write of the lower stream, flushed when the buffer fills, before the
// connection waits for input, at close, or by strata::flush(conn, dl).
//
// row:  buffered_row (requires stream; passes everything but fd_passing)
// spec: buffered, buffered(16k), buffered(size=1m)
#include "strata/adapt/buffered.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "size",
     .default_value = "64k",
     .help = "flush threshold in bytes: writes collect until they reach it (k, m suffixes; 1..64m)",
     .positional = true},
};

/// buffered_config is buffered(...) parsed.
struct buffered_config final : layer_options {
  buffered_options options;
};

constexpr std::uint64_t max_size = std::uint64_t{64} << 20;

layer_options_ptr configure(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<buffered_config>();
  std::uint64_t size = 0;
  if (!check_shape(buffered_entry, layer, error) ||
      !size_param(buffered_entry, layer, "size", buffered_options{}.size, 1, max_size, size, error)) {
    return nullptr;
  }
  config->options.size = static_cast<std::size_t>(size);
  return config;
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side, deadline dl) {
  if (!lower.is_stream()) {
    if (lower.is_message()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const buffered_config&>(*options);
  co_return any_connection(any_stream(buffered<any_stream>(lower.take_stream(), config.options)));
}

}  // namespace

constinit const protocol_entry buffered_entry{
    .name = "buffered",
    .protocol = "buffered",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &buffered_row,
    .summary = "small writes coalesced into one write; flushed when full, before a read waits, at close",
    .target_help = {},
    .params = params,
    .parses_peer_input = false,
    .configure = configure,
    .refine = nullptr,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
};

}  // namespace strata::pipeline_detail
