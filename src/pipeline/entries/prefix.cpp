// Registry entry for prefix (include/strata/adapt/prefix.hpp): message boundaries on a
// byte stream by a length header before every message.
//
// row:  prefix_row (requires stream reliable ordered; provides message, max_message)
// spec: prefix, prefix(4), prefix(bytes=2, order=little, max=64k)
#include <limits>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "strata/adapt/prefix.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info params[] = {
    {.name = "bytes", .default_value = "4", .help = "size of the length header, 1..8", .positional = true},
    {.name = "order", .default_value = "big", .help = "byte order of the length header: big or little"},
    {.name = "max", .default_value = "1m", .help = "largest message in bytes (k, m, g suffixes; at most 1g)"},
};

/// prefix_config is prefix(...) parsed.
struct prefix_config final : layer_options {
  prefix_options options;
};

constexpr std::string_view orders[] = {"big", "little"};
constexpr std::uint64_t max_limit = std::uint64_t{1} << 30;

bool options_of(const spec_layer& layer, prefix_options& options, spec_error& error) {
  const auto& entry = prefix_entry;
  std::uint64_t bytes = 0;
  std::size_t order = 0;
  std::uint64_t max = 0;
  if (!uint_param(entry, layer, "bytes", 4, 1, 8, bytes, error)) return false;
  if (!choice_param(entry, layer, "order", orders, 0, order, error)) return false;
  if (!size_param(entry, layer, "max", prefix_options{}.max_message, 1, max_limit, max, error)) return false;
  // What the header can count; an explicit max beyond it is a mistake worth naming,
  // the default max is quietly capped (prefix(1) just means "short messages").
  std::uint64_t countable =
      bytes >= 8 ? std::numeric_limits<std::uint64_t>::max() : (std::uint64_t{1} << (8 * bytes)) - 1;
  if (max > countable) {
    if (entry.find_param(layer, "max")) {
      return fail(error,
                  "prefix: max " + entry.find_param(layer, "max")->value + " does not fit a " +
                      std::to_string(bytes) + "-byte header (at most " + std::to_string(countable) + ")",
                  value_position(entry, layer, "max"));
    }
    max = countable;
  }
  options.header_bytes = static_cast<std::size_t>(bytes);
  options.byte_order = order == 0 ? std::endian::big : std::endian::little;
  options.max_message = static_cast<std::size_t>(max);
  return true;
}

layer_options_ptr configure(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<prefix_config>();
  if (!check_shape(prefix_entry, layer, error) || !options_of(layer, config->options, error)) return nullptr;
  return config;
}

properties refine(properties computed, const layer_options& options) {
  computed.max_message = prefix_limit(static_cast<const prefix_config&>(options).options);
  return computed;
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side, deadline dl) {
  if (!lower.is_stream()) {
    if (lower.is_message()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const prefix_config&>(*options);
  co_return any_connection(any_message(prefix<any_stream>(lower.take_stream(), config.options)));
}

}  // namespace

constinit const protocol_entry prefix_entry{
    .name = "prefix",
    .protocol = "prefix",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &prefix_row,
    .summary = "messages on a byte stream, each behind a length header",
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
