// A program's own protocols in spec strings. A typed layer becomes a registry entry with
// its capability row and an options struct whose members are the spec's parameters:
//
//   struct rpc_options { std::uint64_t max_pending = 64; std::chrono::milliseconds timeout{2000}; };
//
//   strata::protocol_registry protocols;              // the built-in protocols...
//   protocols.add(strata::adapter_entry<rpc_options>({  // ...plus this one
//       .name = "rpc",
//       .summary = "requests and responses matched by id",
//       .row = &rpc_row,
//       .params = {strata::field<&rpc_options::max_pending>("max_pending", "requests in flight", 1, 4096),
//                  strata::field<&rpc_options::timeout>("timeout", "time for one response")},
//       .wrap = [](strata::any_connection lower, const rpc_options& o, strata::deadline dl)
//                   -> strata::task<strata::result<strata::any_connection>> { ... },
//   }));
//   auto conn = co_await strata::connect("tcp:127.0.0.1:7000 | prefix | rpc(timeout=5s)", dl, protocols);
//
// The checker treats the entry like a built-in one: its row is checked against the layer
// below, its parameters are named in errors ("rpc: parameter 'timeout' ..."), and `wrap`
// may run a handshake (listening pipelines run it concurrently per connection).
//
// Parameter types: bool (0|1), unsigned integers (with k, m, g suffixes), std::string,
// std::chrono::milliseconds (a number with ms, s or m).
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/capability.hpp"
#include "strata/pipeline/registry.hpp"

namespace strata {

/// field_kind is how a parameter's text is read.
enum class field_kind { flag, size, text, duration };

/// field_value is a parameter's value once read.
struct field_value {
  bool flag = false;
  std::uint64_t number = 0;  ///< size; duration in milliseconds
  std::string text;
};

namespace detail {
/// read_field reads parameter `key` of `layer` as `kind` (bounds lo..hi for size and
/// duration); `present` is false when the spec leaves it out. Errors name the entry and
/// the parameter and point at the value.
bool read_field(const protocol_entry& entry, const spec_layer& layer, std::string_view key, field_kind kind,
                std::uint64_t lo, std::uint64_t hi, field_value& out, bool& present, spec_error& error);
/// check_layer_shape refuses unknown or repeated parameters and a missing or unexpected
/// target, as for the built-in entries.
bool check_layer_shape(const protocol_entry& entry, const spec_layer& layer, spec_error& error);
/// render_field writes a default value the way the spec reads it.
std::string render_field(field_kind kind, const field_value& value);

template <class M>
struct member_traits;
template <class C, class T>
struct member_traits<T C::*> {
  using object = C;
  using type = T;
};

template <class T>
constexpr field_kind kind_of() {
  if constexpr (std::same_as<T, bool>) {
    return field_kind::flag;
  } else if constexpr (std::unsigned_integral<T>) {
    return field_kind::size;
  } else if constexpr (std::same_as<T, std::string>) {
    return field_kind::text;
  } else {
    static_assert(std::same_as<T, std::chrono::milliseconds>,
                  "a parameter is a bool, an unsigned integer, a std::string or std::chrono::milliseconds");
    return field_kind::duration;
  }
}
}  // namespace detail

/// option_field binds one spec parameter to a member of the options struct `Options`.
template <class Options>
struct option_field {
  std::string_view name{};
  std::string_view help{};
  field_kind kind = field_kind::text;
  std::uint64_t lo = 0;
  std::uint64_t hi = ~std::uint64_t{0};
  bool positional = false;
  void (*assign)(Options& options, const field_value& value) = nullptr;
  field_value (*read_default)(const Options& options) = nullptr;
};

/// field makes the option_field of member `Member` (e.g. `&rpc_options::timeout`):
/// `lo`..`hi` bound sizes and durations (milliseconds).
template <auto Member>
option_field<typename detail::member_traits<decltype(Member)>::object> field(
    std::string_view name, std::string_view help, std::uint64_t lo = 0, std::uint64_t hi = ~std::uint64_t{0},
    bool positional = false) {
  using traits = detail::member_traits<decltype(Member)>;
  using options = typename traits::object;
  using type = typename traits::type;
  constexpr auto kind = detail::kind_of<type>();
  if constexpr (kind == field_kind::size) hi = std::min<std::uint64_t>(hi, std::numeric_limits<type>::max());
  return option_field<options>{
      .name = name,
      .help = help,
      .kind = kind,
      .lo = lo,
      .hi = hi,
      .positional = positional,
      .assign =
          [](options& o, const field_value& v) {
            if constexpr (kind == field_kind::flag) {
              o.*Member = v.flag;
            } else if constexpr (kind == field_kind::size) {
              o.*Member = static_cast<type>(v.number);
            } else if constexpr (kind == field_kind::text) {
              o.*Member = v.text;
            } else {
              o.*Member = std::chrono::milliseconds(v.number);
            }
          },
      .read_default =
          [](const options& o) {
            field_value v;
            if constexpr (kind == field_kind::flag) {
              v.flag = o.*Member;
            } else if constexpr (kind == field_kind::size) {
              v.number = o.*Member;
            } else if constexpr (kind == field_kind::text) {
              v.text = o.*Member;
            } else {
              v.number = static_cast<std::uint64_t>((o.*Member).count());
            }
            return v;
          },
  };
}

/// adapter_definition describes a program's adapter: names, row, parameters and the
/// function that stacks it (and runs its handshake) on the layer below.
template <class Options>
struct adapter_definition {
  std::string_view name{};     ///< the spec name (a view of a string that outlives the registry)
  std::string_view summary{};  ///< one line for `strata caps`-style listings
  const capability_row* row = nullptr;
  std::vector<option_field<Options>> params{};
  /// wrap stacks the layer on `lower` (which meets the row's requirements), within `dl`;
  /// on failure it closes `lower`.
  task<result<any_connection>> (*wrap)(any_connection lower, const Options& options, layer_side side,
                                       deadline dl) = nullptr;
  bool parses_peer_input = true;
  Options defaults{};  ///< values of the parameters a spec leaves out
};

namespace detail {

template <class Options>
struct custom_definition {
  adapter_definition<Options> def;
  std::weak_ptr<const custom_definition> self;  // for options that outlive the registry
  std::vector<std::string> default_texts;       // storage behind info[i].default_value
  std::vector<param_info> info;
};

template <class Options>
struct custom_options final : layer_options {
  std::shared_ptr<const custom_definition<Options>> definition;
  Options value;
};

template <class Options>
layer_options_ptr configure_custom(const protocol_entry& self, const spec_layer& layer, spec_error& error) {
  const auto* definition = static_cast<const custom_definition<Options>*>(self.context);
  if (!definition || !check_layer_shape(self, layer, error)) return nullptr;
  auto out = std::make_shared<custom_options<Options>>();
  out->definition = definition->self.lock();
  out->value = definition->def.defaults;
  for (const auto& f : definition->def.params) {
    field_value value;
    bool present = false;
    if (!read_field(self, layer, f.name, f.kind, f.lo, f.hi, value, present, error)) return nullptr;
    if (present) f.assign(out->value, value);
  }
  return out;
}

template <class Options>
task<result<any_connection>> wrap_custom(any_connection lower, layer_options_ptr options, layer_side side,
                                         deadline dl) {
  const auto& mine = static_cast<const custom_options<Options>&>(*options);
  co_return co_await mine.definition->def.wrap(std::move(lower), mine.value, side, dl);
}

}  // namespace detail

/// adapter_entry turns a definition into a registry entry (protocol_registry::add).
template <class Options>
owned_entry adapter_entry(adapter_definition<Options> def) {
  auto definition = std::make_shared<detail::custom_definition<Options>>();
  definition->self = definition;
  definition->def = std::move(def);
  const auto& d = definition->def;
  definition->default_texts.reserve(d.params.size());
  for (const auto& f : d.params)
    definition->default_texts.push_back(detail::render_field(f.kind, f.read_default(d.defaults)));
  for (std::size_t i = 0; i < d.params.size(); ++i) {
    definition->info.push_back(param_info{.name = d.params[i].name,
                                          .default_value = definition->default_texts[i],
                                          .help = d.params[i].help,
                                          .optional = definition->default_texts[i].empty(),
                                          .positional = d.params[i].positional});
  }
  protocol_entry entry{
      .name = d.name,
      .protocol = d.name,
      .layer = "app",
      .role = layer_role::adapter,
      .row = d.row,
      .summary = d.summary,
      .target_help = {},
      .params = definition->info,
      .parses_peer_input = d.parses_peer_input,
      .configure = detail::configure_custom<Options>,
      .refine = nullptr,
      .connect = nullptr,
      .listen = nullptr,
      .bind = nullptr,
      .wrap = detail::wrap_custom<Options>,
      .context = definition.get(),
  };
  return owned_entry{entry, std::move(definition)};
}

/// adapter_entry<Layer> takes the row from the layer class (`Layer::row`).
template <class Layer, class Options>
owned_entry adapter_entry(adapter_definition<Options> def) {
  if (!def.row) def.row = &Layer::row;
  return adapter_entry(std::move(def));
}

}  // namespace strata
