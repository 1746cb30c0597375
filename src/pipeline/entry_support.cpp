#include "entry_support.hpp"

#include <sys/un.h>

#include <limits>

namespace strata::pipeline_detail {
namespace {

std::string list_params(const protocol_entry& entry) {
  if (entry.params.empty()) return "it takes none";
  std::string out = "it takes ";
  for (std::size_t i = 0; i < entry.params.size(); ++i) {
    if (i) out += ", ";
    out += entry.params[i].name;
  }
  return out;
}

const param_info* positional_param(const protocol_entry& entry) {
  for (const auto& p : entry.params) {
    if (p.positional) return &p;
  }
  return nullptr;
}

bool parse_decimal(std::string_view text, std::uint64_t& out) noexcept {
  if (text.empty()) return false;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

std::string where(const protocol_entry& entry, std::string_view key) {
  return std::string(entry.name) + ": " + std::string(key);
}

}  // namespace

bool fail(spec_error& error, std::string message, std::size_t position) {
  error.message = std::move(message);
  error.position = position;
  return false;
}

namespace {
// sun_path holds a path plus its terminating NUL, or '\0' plus an abstract name.
constexpr std::size_t max_unix_path = sizeof(sockaddr_un{}.sun_path) - 1;
constexpr std::size_t max_unix_abstract = sizeof(sockaddr_un{}.sun_path) - 1;
}  // namespace

std::string explain_unix(const std::string& text) {
  if (text.empty()) return "empty socket address";
  if (text.find('\0') != std::string::npos) return "a socket path cannot contain a NUL byte";
  if (text.front() == '@') {
    if (text.size() == 1) return "empty abstract name after '@'";
    if (text.size() - 1 > max_unix_abstract) {
      return "abstract name too long (" + std::to_string(text.size() - 1) + " bytes; at most " +
             std::to_string(max_unix_abstract) + ")";
    }
  } else if (text.size() > max_unix_path) {
    return "path too long (" + std::to_string(text.size()) + " bytes; at most " +
           std::to_string(max_unix_path) + ")";
  }
  return {};
}

bool check_unix_target(const protocol_entry& entry, const spec_layer& layer, spec_error& error) {
  auto why = explain_unix(layer.target);
  if (!why.empty()) return fail(error, std::string(entry.name) + ": " + why, layer.target_position);
  return true;
}

bool check_shape(const protocol_entry& entry, const spec_layer& layer, spec_error& error) {
  std::string name(entry.name);
  if (entry.target_help.empty() && !layer.target.empty()) {
    return fail(error, name + " takes no target (remove ':" + layer.target + "')",
                layer.target_position > 0 ? layer.target_position - 1 : layer.position);
  }
  if (!entry.target_help.empty() && layer.target.empty()) {
    std::string_view help = entry.target_help;
    return fail(error,
                name + " needs a target " + std::string(help) + ", as in `" + name + ":" +
                    std::string(help.substr(0, help.find(' '))) + "`",
                layer.position + layer.name.size());
  }
  const param_info* positional = positional_param(entry);
  std::size_t positional_count = 0;
  for (std::size_t i = 0; i < layer.params.size(); ++i) {
    const auto& p = layer.params[i];
    std::string_view key = p.key;
    if (key.empty()) {
      ++positional_count;
      if (!positional) {
        std::string hint = entry.params.empty()
                               ? std::string()
                               : "; name it, e.g. " + name + "(" + std::string(entry.params.front().name) +
                                     "=" + p.value + ")";
        return fail(error, name + " takes no positional value" + hint, p.position);
      }
      if (positional_count > 1) {
        return fail(error,
                    name + " takes one positional value (" + std::string(positional->name) +
                        "); name the others as key=value: " + list_params(entry),
                    p.position);
      }
      key = positional->name;
    } else if (!entry.param_named(key)) {
      return fail(error, name + " has no parameter '" + p.key + "'; " + list_params(entry), p.position);
    }
    for (std::size_t j = 0; j < i; ++j) {
      const auto& q = layer.params[j];
      std::string_view other = q.key.empty() && positional ? positional->name : std::string_view(q.key);
      if (other == key) {
        return fail(error, name + ": parameter '" + std::string(key) + "' is given twice", p.position);
      }
    }
  }
  for (const auto& info : entry.params) {
    if (!info.default_value.empty() || info.optional) continue;
    if (!entry.find_param(layer, info.name)) {
      std::string upper(info.name);
      for (auto& c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
      std::string example = info.positional ? name + "(" + upper + ")"
                                            : name + "(" + std::string(info.name) + "=" + upper + ")";
      return fail(error,
                  name + " needs parameter '" + std::string(info.name) + "' (" + std::string(info.help) +
                      "), e.g. " + example,
                  layer.position + layer.length);
    }
  }
  return true;
}

bool parse_size(std::string_view text, std::uint64_t& out) noexcept {
  if (text.empty()) return false;
  std::uint64_t scale = 1;
  switch (text.back()) {
    case 'k':
    case 'K':
      scale = std::uint64_t{1} << 10;
      break;
    case 'm':
    case 'M':
      scale = std::uint64_t{1} << 20;
      break;
    case 'g':
    case 'G':
      scale = std::uint64_t{1} << 30;
      break;
    default:
      break;
  }
  if (scale != 1) text.remove_suffix(1);
  std::uint64_t value = 0;
  if (!parse_decimal(text, value)) return false;
  if (value > std::numeric_limits<std::uint64_t>::max() / scale) return false;
  out = value * scale;
  return true;
}

std::string format_size(std::uint64_t size) {
  if (size != 0) {
    if (size % (std::uint64_t{1} << 30) == 0) return std::to_string(size >> 30) + "g";
    if (size % (std::uint64_t{1} << 20) == 0) return std::to_string(size >> 20) + "m";
    if (size % (std::uint64_t{1} << 10) == 0) return std::to_string(size >> 10) + "k";
  }
  return std::to_string(size);
}

std::size_t value_position(const protocol_entry& entry, const spec_layer& layer, std::string_view key) {
  if (const auto* p = entry.find_param(layer, key)) return p->position;
  return layer.position + layer.length;
}

bool size_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                std::uint64_t fallback, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out,
                spec_error& error) {
  const auto* p = entry.find_param(layer, key);
  if (!p) {
    out = fallback;
    return true;
  }
  std::uint64_t value = 0;
  if (!parse_size(p->value, value)) {
    // Well-formed but unparseable means it overflowed 64 bits.
    std::string_view digits = p->value;
    if (!digits.empty() && std::string_view("kKmMgG").find(digits.back()) != std::string_view::npos) {
      digits.remove_suffix(1);
    }
    bool overflow = !digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos;
    std::string why =
        overflow ? " is too large" : " is not a size (a number with an optional k, m or g suffix)";
    return fail(error,
                where(entry, key) + " '" + p->value + "'" + why + "; expected " + format_size(lo) + " to " +
                    format_size(hi),
                p->position);
  }
  if (value < lo || value > hi) {
    return fail(error,
                where(entry, key) + " must be " + format_size(lo) + " to " + format_size(hi) + ", got '" +
                    p->value + "'",
                p->position);
  }
  out = value;
  return true;
}

bool uint_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                std::uint64_t fallback, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out,
                spec_error& error) {
  const auto* p = entry.find_param(layer, key);
  if (!p) {
    out = fallback;
    return true;
  }
  std::uint64_t value = 0;
  if (!parse_decimal(p->value, value) || value < lo || value > hi) {
    return fail(error,
                where(entry, key) + " must be a number from " + std::to_string(lo) + " to " +
                    std::to_string(hi) + ", got '" + p->value + "'",
                p->position);
  }
  out = value;
  return true;
}

bool flag_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key, bool fallback,
                bool& out, spec_error& error) {
  const auto* p = entry.find_param(layer, key);
  if (!p) {
    out = fallback;
    return true;
  }
  if (p->value != "0" && p->value != "1") {
    return fail(error, where(entry, key) + " must be 0 or 1, got '" + p->value + "'", p->position);
  }
  out = p->value == "1";
  return true;
}

bool choice_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                  std::span<const std::string_view> choices, std::size_t fallback, std::size_t& out,
                  spec_error& error) {
  const auto* p = entry.find_param(layer, key);
  if (!p) {
    out = fallback;
    return true;
  }
  std::string names;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (p->value == choices[i]) {
      out = i;
      return true;
    }
    if (i) names += i + 1 == choices.size() ? " or " : ", ";
    names += choices[i];
  }
  return fail(error, where(entry, key) + " must be " + names + ", got '" + p->value + "'", p->position);
}

bool parse_duration_ms(std::string_view text, std::uint64_t& ms) noexcept {
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
  if (!parse_decimal(text, n) || n > std::numeric_limits<std::uint64_t>::max() / scale) return false;
  ms = n * scale;
  return true;
}

std::string format_duration_ms(std::uint64_t ms) {
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

bool duration_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                    std::uint64_t fallback, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out,
                    spec_error& error) {
  const auto* p = entry.find_param(layer, key);
  if (!p) {
    out = fallback;
    return true;
  }
  std::uint64_t ms = 0;
  if (!parse_duration_ms(p->value, ms)) {
    return fail(error, where(entry, key) + " '" + p->value + "' is not a duration (a number with ms, s or m)",
                p->position);
  }
  if (ms < lo || ms > hi) {
    return fail(error,
                where(entry, key) + " must be from " + format_duration_ms(lo) + " to " +
                    format_duration_ms(hi) + ", got '" + p->value + "'",
                p->position);
  }
  out = ms;
  return true;
}

task<result<any_connection>> failed_connect(std::error_code ec) { co_return unexpected(ec); }

}  // namespace strata::pipeline_detail
