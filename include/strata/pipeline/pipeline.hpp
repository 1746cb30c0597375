// pipeline: a stack built from a spec string, checked position by position against the
// capability rows before anything connects, printable with each layer's properties.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/any.hpp"
#include "strata/pipeline/registry.hpp"
#include "strata/pipeline/spec.hpp"

namespace strata {

/// pipeline_error is why a spec was refused: the message names the layer pair, the
/// unmet property and, where one exists, the adapter that would fix it.
struct pipeline_error {
  std::string message;
  std::size_t position = 0;  ///< offset into the spec text
  /// render returns the message with the spec text and a caret under the position.
  std::string render(std::string_view text) const;
};

/// pipeline_layer is one checked layer: its spec, registry entry and what it offers.
struct pipeline_layer {
  spec_layer spec;
  const protocol_entry* entry = nullptr;
  properties offers;  ///< properties above this layer
};

/// pipeline is a checked stack; copyable, and reusable for many connections.
class pipeline {
 public:
  /// parse reads and checks `text`. Returns nullopt and fills `error` when refused.
  static std::optional<pipeline> parse(std::string_view text, pipeline_error& error);

  const std::string& text() const noexcept { return text_; }
  const std::vector<pipeline_layer>& layers() const noexcept { return layers_; }
  /// is_listener is true when the bottom layer accepts (e.g. tcp-listen).
  bool is_listener() const noexcept;
  /// top is what the whole stack offers to the application.
  properties top() const noexcept;
  /// describe prints one line per layer, bottom first: "tcp:127.0.0.1:7000  ->  <props>".
  std::string describe() const;

  /// connect builds the stack bottom up (connector pipelines only). Errors: as the
  /// layers' (timed_out, ECONNREFUSED, ...); invalid_argument for a listener pipeline.
  /// The task keeps its own copy of the layers: the pipeline may go away before it runs.
  task<result<any_connection>> connect(deadline dl) const;
  /// listen binds the bottom layer; each accepted connection gets the upper layers.
  /// Errors: as the transport's bind (EADDRINUSE, ...); invalid_argument for a
  /// connector pipeline. The listener keeps its own copy of the layers.
  result<any_listener> listen() const;

 private:
  std::string text_;
  std::vector<pipeline_layer> layers_;
};

/// check_stack checks parsed layers against the registry (used by pipeline::parse;
/// public for tests and tools). Fills `layers` on success.
bool check_stack(const spec& parsed, std::vector<pipeline_layer>& layers, pipeline_error& error);

/// find_adapters searches `entries` for the shortest chain of adapters (one, else two)
/// that can stand on a layer offering `below` and under which `upper`'s requirements
/// are met; the checker uses it to suggest a fix. Empty when there is none. Adapters'
/// parameters are not considered (their rows as declared).
std::vector<const protocol_entry*> find_adapters(const properties& below, const capability_row& upper,
                                                 std::span<const protocol_entry> entries = registry());

/// connect parses, checks and connects a spec in one call; refused specs yield
/// errc::invalid_argument (use pipeline::parse to get the message).
task<result<any_connection>> connect(std::string_view spec_text, deadline dl);
/// listen parses, checks and binds a listener spec in one call.
result<any_listener> listen(std::string_view spec_text);

}  // namespace strata
