// Registry entries for crlf and term (include/strata/adapt/crlf.hpp): message boundaries
// on a byte stream by a delimiter after every message; `term` is crlf with a delimiter
// the user must choose.
//
// row:  crlf_row / term_row (requires stream reliable ordered; provides message, max_message)
// spec: crlf, crlf(max=4096), crlf(delim="\n"), term("\0"), term(delim="\n", max=1k)
#include "strata/adapt/crlf.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info crlf_params[] = {
    {.name = "max",
     .default_value = "64k",
     .help = "largest message in bytes, delimiter excluded (at most 1g)"},
    {.name = "delim", .default_value = "\"\\r\\n\"", .help = "the delimiter, 1..16 bytes"},
};

constexpr param_info term_params[] = {
    {.name = "delim", .default_value = {}, .help = "the delimiter, 1..16 bytes", .positional = true},
    {.name = "max",
     .default_value = "64k",
     .help = "largest message in bytes, delimiter excluded (at most 1g)"},
};

/// crlf_config is crlf(...) or term(...) parsed.
struct crlf_config final : layer_options {
  crlf_options options;
};

constexpr std::uint64_t max_limit = std::uint64_t{1} << 30;

bool options_of(const protocol_entry& entry, const spec_layer& layer, crlf_options& options,
                spec_error& error) {
  std::uint64_t max = 0;
  if (!size_param(entry, layer, "max", crlf_options{}.max_message, 1, max_limit, max, error)) return false;
  if (const auto* delim = entry.find_param(layer, "delim")) {
    if (delim->value.empty() || delim->value.size() > crlf_options::max_delimiter) {
      return fail(error,
                  std::string(entry.name) + ": delim must be 1 to " +
                      std::to_string(crlf_options::max_delimiter) + " bytes, got " +
                      std::to_string(delim->value.size()),
                  delim->position);
    }
    options.delimiter = delim->value;
  }
  options.max_message = static_cast<std::size_t>(max);
  return true;
}

template <const protocol_entry& Entry>
layer_options_ptr configure(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<crlf_config>();
  if (!check_shape(Entry, layer, error) || !options_of(Entry, layer, config->options, error)) return nullptr;
  return config;
}

properties refine(properties computed, const layer_options& options) {
  computed.max_message = static_cast<const crlf_config&>(options).options.max_message;
  return computed;
}

task<result<any_connection>> wrap(any_connection lower, layer_options_ptr options, layer_side, deadline dl) {
  if (!lower.is_stream()) {
    if (lower.is_message()) (void)co_await lower.close(dl);
    co_return errc::invalid_argument;
  }
  const auto& config = static_cast<const crlf_config&>(*options);
  co_return any_connection(any_message(crlf<any_stream>(lower.take_stream(), config.options)));
}

}  // namespace

constinit const protocol_entry crlf_entry{
    .name = "crlf",
    .protocol = "crlf",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &crlf_row,
    .summary = "messages on a byte stream, each ended by \\r\\n (or delim)",
    .target_help = {},
    .params = crlf_params,
    .parses_peer_input = true,
    .configure = configure<crlf_entry>,
    .refine = refine,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
};

constinit const protocol_entry term_entry{
    .name = "term",
    .protocol = "crlf",
    .layer = "adapt",
    .role = layer_role::adapter,
    .row = &term_row,
    .summary = "messages on a byte stream, each ended by a delimiter you choose",
    .target_help = {},
    .params = term_params,
    .parses_peer_input = true,
    .configure = configure<term_entry>,
    .refine = refine,
    .connect = nullptr,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = wrap,
};

}  // namespace strata::pipeline_detail
