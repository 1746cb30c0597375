// The non-template half of custom_protocol.hpp: reading a program's parameters with the
// same rules and messages as the built-in entries' (entry_support).
#include "strata/pipeline/custom_protocol.hpp"

#include "entry_support.hpp"

namespace strata::detail {

using pipeline_detail::format_duration_ms;
using pipeline_detail::parse_duration_ms;

bool check_layer_shape(const protocol_entry& entry, const spec_layer& layer, spec_error& error) {
  return pipeline_detail::check_shape(entry, layer, error);
}

bool read_field(const protocol_entry& entry, const spec_layer& layer, std::string_view key, field_kind kind,
                std::uint64_t lo, std::uint64_t hi, field_value& out, bool& present, spec_error& error) {
  const auto* given = entry.find_param(layer, key);
  present = given != nullptr;
  if (!given) return true;
  switch (kind) {
    case field_kind::flag:
      return pipeline_detail::flag_param(entry, layer, key, false, out.flag, error);
    case field_kind::size:
      return pipeline_detail::size_param(entry, layer, key, 0, lo, hi, out.number, error);
    case field_kind::text:
      out.text = given->value;
      return true;
    case field_kind::duration: {
      std::uint64_t ms = 0;
      if (!parse_duration_ms(given->value, ms)) {
        return pipeline_detail::fail(error,
                                     std::string(entry.name) + ": " + std::string(key) + " '" + given->value +
                                         "' is not a duration (a number with ms, s or m)",
                                     given->position);
      }
      if (ms < lo || ms > hi) {
        return pipeline_detail::fail(error,
                                     std::string(entry.name) + ": " + std::string(key) + " must be from " +
                                         format_duration_ms(lo) + " to " + format_duration_ms(hi) +
                                         ", got '" + given->value + "'",
                                     given->position);
      }
      out.number = ms;
      return true;
    }
  }
  return false;
}

std::string render_field(field_kind kind, const field_value& value) {
  switch (kind) {
    case field_kind::flag:
      return value.flag ? "1" : "0";
    case field_kind::size:
      return pipeline_detail::format_size(value.number);
    case field_kind::text:
      return value.text;
    case field_kind::duration:
      return format_duration_ms(value.number);
  }
  return {};
}

}  // namespace strata::detail
