// The registry of protocols: the built-in ones (src/pipeline/registry.cpp lists them all,
// each entry defined beside its protocol) and, in a protocol_registry value, a program's
// own. It serves the spec parser's checker, the factories that build dynamic stacks,
// `strata caps` and the docs/test completeness check.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/core/capability.hpp"
#include "strata/pipeline/spec.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/task.hpp"

namespace strata {

/// layer_role says where a registry entry may stand in a pipeline.
enum class layer_role {
  connector,  ///< bottom layer that connects out (tcp:HOST:PORT)
  listener,   ///< bottom layer that accepts (tcp-listen:HOST:PORT)
  adapter,    ///< a layer stacked on another (prefix, crlf)
  /// bound: a bottom layer that binds a connection-less endpoint (udp-bind:HOST:PORT):
  /// it receives from any sender and sends to any address (any_datagram). It stands
  /// alone: no layer is stacked on a bound endpoint yet.
  bound,
  /// application: the protocol a program speaks on top of the stack (`... | http1`). Its
  /// row is checked like an adapter's, but it must be the top layer (it carries requests
  /// and responses, not bytes or messages) and has no factory: pipeline::connect and
  /// listen build the layers below it, and the program runs the protocol that
  /// pipeline::application() names on the connection they give.
  application,
};

/// layer_side says which end of a connection a layer is stacked on: the end that
/// connected (client) or the end that accepted (server). Handshakes differ by side.
enum class layer_side { client, server };

/// param_info documents one parameter of a protocol.
struct param_info {
  std::string_view name;
  std::string_view default_value;  ///< empty: required, unless `optional`
  std::string_view help;
  bool optional = false;    ///< may be left out although it has no default
  bool positional = false;  ///< may be given without its key, as the first positional value
};

/// layer_options is one layer's parameters, parsed and checked once, when the pipeline is
/// built (protocol_entry::configure); each entry derives its own options type from it.
struct layer_options {
  virtual ~layer_options() = default;
};
using layer_options_ptr = std::shared_ptr<const layer_options>;

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

  /// configure checks target and parameters and returns them parsed into the entry's
  /// options type; on refusal returns nullptr and fills `error` (with position). `self`
  /// is this entry (entries made at run time keep their definition in `context`).
  layer_options_ptr (*configure)(const protocol_entry& self, const spec_layer& layer,
                                 spec_error& error) = nullptr;
  /// refine adjusts the row's result for the options (e.g. max_message); may be null.
  properties (*refine)(properties computed, const layer_options& options) = nullptr;
  /// connect builds a connector's connection (role connector) from configure's options.
  task<result<any_connection>> (*connect)(layer_options_ptr options, deadline dl) = nullptr;
  /// listen binds a listener (role listener).
  result<any_listener> (*listen)(layer_options_ptr options) = nullptr;
  /// bind binds a connection-less endpoint (role bound).
  result<any_datagram> (*bind)(layer_options_ptr options) = nullptr;
  /// wrap stacks this adapter on `lower` (role adapter), which offers what the row
  /// requires (the checker made sure), on the given side of the connection. It may
  /// exchange bytes with the peer before the layer is ready (a handshake); `dl` bounds
  /// all of it. On failure `lower` is closed.
  task<result<any_connection>> (*wrap)(any_connection lower, layer_options_ptr options, layer_side side,
                                       deadline dl) = nullptr;
  /// fit_side refuses options that cannot serve the side the pipeline puts the adapter
  /// on (a tls server without a certificate), so the mistake shows when the pipeline is
  /// parsed, not at the first connection, and adjusts what the layer offers on that side
  /// (`offers`, after refine). May be null: every side is fine and offers the same.
  bool (*fit_side)(const layer_options& options, layer_side side, const spec_layer& layer, properties& offers,
                   spec_error& error) = nullptr;
  /// gate makes the admission gate (core/datagram.hpp) this adapter installs on the
  /// listener directly below it, for one listener: pipeline::listen calls it each time
  /// it binds one, when the adapter is the first layer above a listener that takes gates
  /// (udp-listen, unix-dgram-listen), so that a stateless step of the adapter's
  /// handshake (dtls's cookie exchange) runs before the listener keeps anything for a new
  /// sender. May be null, or return an empty gate: none. Server side only by nature.
  admission_gate (*gate)(const layer_options& options) = nullptr;
  /// context is what an entry made at run time needs besides its functions (see
  /// custom_protocol.hpp), kept alive by the registry it is added to; null for the
  /// built-in entries, which are constant-initialised (constinit).
  const void* context = nullptr;

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

/// owned_entry is an entry made at run time with what its context points to.
struct owned_entry {
  protocol_entry entry;
  std::shared_ptr<const void> owner;
};

/// protocol_registry is the set of protocols a spec string may name: the built-in ones
/// plus a program's own (add). A value: copies are independent; pipelines parsed with a
/// registry keep what they use alive, so the registry may change or go away afterwards.
class protocol_registry {
 public:
  /// protocol_registry starts with the built-in entries.
  protocol_registry();
  /// builtin is the registry of the built-in protocols alone (what the free functions use).
  static const protocol_registry& builtin();

  /// add registers `entry`. Errors: invalid_argument when the entry is incomplete (no
  /// name, row or configure; no factory for its role) or its name is already taken.
  result<void> add(protocol_entry entry, std::shared_ptr<const void> owner = nullptr);
  /// add registers an entry made at run time (custom_protocol.hpp's adapter_entry).
  result<void> add(owned_entry entry) { return add(std::move(entry.entry), std::move(entry.owner)); }
  /// entries are every protocol, built-in ones first, in the order `strata caps` prints.
  std::span<const protocol_entry> entries() const noexcept { return storage_->entries; }
  /// find looks an entry up by its spec name; nullptr when unknown.
  const protocol_entry* find(std::string_view name) const noexcept;
  /// closest names the entry nearest to `name` by edit distance (for "did you mean"),
  /// or an empty view when none is close.
  std::string_view closest(std::string_view name) const;
  /// storage is what pipelines keep alive: the entries and what their contexts point to.
  struct storage {
    std::vector<protocol_entry> entries{};
    std::vector<std::shared_ptr<const void>> owners{};
  };
  const std::shared_ptr<const storage>& shared() const noexcept { return storage_; }

 private:
  std::shared_ptr<const storage> storage_;
};

/// registry returns the built-in protocol entries, in the order `strata caps` prints them.
std::span<const protocol_entry> registry();
/// find_protocol looks a built-in entry up by its spec name; nullptr when unknown.
const protocol_entry* find_protocol(std::string_view name);
/// closest_protocol names the built-in spec name nearest to `name` by edit distance
/// (for "did you mean"), or an empty view when none is close.
std::string_view closest_protocol(std::string_view name);
/// to_string names a role as the docs and `strata caps` spell it.
std::string_view to_string(layer_role role) noexcept;

}  // namespace strata
