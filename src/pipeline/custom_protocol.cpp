// The non-template half of custom_protocol.hpp: reading a program's parameters with the
// same rules and messages as the built-in entries' (entry_support).
#include "strata/pipeline/custom_protocol.hpp"

#include <charconv>

#include "entry_support.hpp"

namespace strata::detail {
namespace {

/// parse_duration reads "250ms", "5s", "2m" or a bare number of milliseconds.
bool parse_duration(std::string_view text, std::uint64_t& ms) {
  std::uint64_t scale = 1;
  if (text.ends_with("ms")) {
    text.remove_suffix(2);
  } else if (text.ends_with("s")) {
    text.remove_suffix(1);
    scale = 1000;
  } else if (text.ends_with("m")) {
    text.remove_suffix(1);
    scale = 60'000;
  }
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return false;
  if (n > ~std::uint64_t{0} / scale) return false;
  ms = n * scale;
  return true;
}

std::string render_duration(std::uint64_t ms) {
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

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
      if (!parse_duration(given->value, ms)) {
        return pipeline_detail::fail(error,
                                     std::string(entry.name) + ": " + std::string(key) + " '" + given->value +
                                         "' is not a duration (a number with ms, s or m)",
                                     given->position);
      }
      if (ms < lo || ms > hi) {
        return pipeline_detail::fail(error,
                                     std::string(entry.name) + ": " + std::string(key) + " must be from " +
                                         render_duration(lo) + " to " + render_duration(hi) + ", got '" +
                                         given->value + "'",
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
      return render_duration(value.number);
  }
  return {};
}

}  // namespace strata::detail
