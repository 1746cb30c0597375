// The one registry of protocols (src/pipeline/registry.cpp lists them all, each entry
// defined beside its protocol). It serves the spec parser's checker, the factories that
// build dynamic stacks, `strata caps` and the docs/test completeness check.
#pragma once

#include <span>
#include <string_view>

#include "strata/core/any.hpp"
#include "strata/core/capability.hpp"
#include "strata/core/result.hpp"
#include "strata/pipeline/spec.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// layer_role says where a registry entry may stand in a pipeline.
enum class layer_role {
  connector,  ///< bottom layer that connects out (tcp:HOST:PORT)
  listener,   ///< bottom layer that accepts (tcp-listen:HOST:PORT)
  adapter,    ///< a layer stacked on another (prefix, crlf)
};

/// param_info documents one parameter of a protocol.
struct param_info {
  std::string_view name;
  std::string_view default_value;  ///< empty: required, unless `optional`
  std::string_view help;
  bool optional = false;    ///< may be left out although it has no default
  bool positional = false;  ///< may be given without its key, as the first positional value
};

/// protocol_entry is one row of the registry.
struct protocol_entry {
  std::string_view name;      ///< the spec name: "tcp", "tcp-listen", "prefix"
  std::string_view protocol;  ///< the protocol it belongs to: docs/protocols/<protocol>.md,
                              ///< tests/<layer>/<protocol>_test.cpp
  std::string_view layer;     ///< "transport", "adapt", ...
  layer_role role;
  const capability_row* row;
  std::string_view summary;      ///< one line
  std::string_view target_help;  ///< what follows ':' ("HOST:PORT"); empty: no target
  std::span<const param_info> params;
  bool parses_peer_input;  ///< decodes bytes from the peer: needs fuzz/<protocol>_fuzz.cpp

  /// validate checks target and parameters; on failure fills `error` (with position).
  bool (*validate)(const spec_layer& layer, spec_error& error) = nullptr;
  /// refine adjusts the row's result for the parameters (e.g. max_message); may be null.
  properties (*refine)(properties computed, const spec_layer& layer) = nullptr;
  /// connect builds a connector's connection (role connector). `layer` has passed
  /// validate; it is read before connect returns, so the task does not refer to it.
  task<result<any_connection>> (*connect)(const spec_layer& layer, deadline dl) = nullptr;
  /// listen binds a listener (role listener); `layer` has passed validate.
  result<any_listener> (*listen)(const spec_layer& layer) = nullptr;
  /// wrap stacks this adapter on `lower` (role adapter); `layer` has passed validate and
  /// `lower` offers what the row requires (the checker made sure). Does not block.
  result<any_connection> (*wrap)(any_connection lower, const spec_layer& layer) = nullptr;

  /// param_named finds the documentation of parameter `key`; nullptr when unknown.
  const param_info* param_named(std::string_view key) const noexcept {
    for (const auto& p : params) {
      if (p.name == key) return &p;
    }
    return nullptr;
  }
  /// find_param finds the value given for parameter `key` in `layer`: by its key, or as
  /// the positional value when the parameter is `positional`. nullptr when absent.
  const spec_param* find_param(const spec_layer& layer, std::string_view key) const noexcept {
    const auto* info = param_named(key);
    return layer.param(key, info && info->positional ? 0 : static_cast<std::size_t>(-1));
  }
};

/// registry returns every protocol entry, in the order `strata caps` prints them.
std::span<const protocol_entry> registry();
/// find_protocol looks an entry up by its spec name; nullptr when unknown.
const protocol_entry* find_protocol(std::string_view name);
/// closest_protocol names the registered spec name nearest to `name` by edit distance
/// (for "did you mean"), or an empty view when none is close.
std::string_view closest_protocol(std::string_view name);
/// to_string names a role as the docs and `strata caps` spell it.
std::string_view to_string(layer_role role) noexcept;

}  // namespace strata
