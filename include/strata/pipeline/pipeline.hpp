// pipeline: a stack built from a spec string, checked position by position against the
// capability rows before anything connects, printable with each layer's properties.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
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

/// pipeline_layer is one checked layer: its spec, registry entry, its parameters parsed
/// once by the entry (configure) and what it offers.
struct pipeline_layer {
  spec_layer spec;
  const protocol_entry* entry = nullptr;
  layer_options_ptr options;
  properties offers;  ///< properties above this layer
};

/// stack_error is why a stack could not be built or used, and where: the operation, the
/// spec and the layer that failed, the way Go's net.OpError reads:
/// "connect tcp:127.0.0.1:1 | prefix(4): tcp: connection refused". Compares equal to the
/// errc of its code.
class stack_error {
 public:
  stack_error() = default;
  /// stack_error: `op` "connect"/"listen"/"accept"; `layer` the failing layer's spec name
  /// (empty when the whole spec was refused); `detail` replaces the code's message (the
  /// checker's explanation).
  stack_error(std::string op, std::string spec, std::string layer, std::error_code code,
              std::string detail = {})
      : op_(std::move(op)),
        spec_(std::move(spec)),
        layer_(std::move(layer)),
        code_(code),
        detail_(std::move(detail)) {}

  const std::error_code& code() const noexcept { return code_; }
  operator std::error_code() const noexcept { return code_; }  // NOLINT: usable wherever an error_code is
  const std::string& layer() const noexcept { return layer_; }
  /// message is the whole sentence: "<op> <spec>: <layer>: <what>".
  std::string message() const;
  /// where is the sentence without what happened: "<op> <spec>: <layer>".
  std::string where() const;
  explicit operator bool() const noexcept { return static_cast<bool>(code_); }
  friend bool operator==(const stack_error& e, errc c) noexcept { return e.code_ == c; }
  friend bool operator==(const stack_error& e, const std::error_code& c) noexcept { return e.code_ == c; }

 private:
  std::string op_, spec_, layer_;
  std::error_code code_;
  std::string detail_;
};

/// stack_result is a value or the stack_error that says where building it failed.
template <class T>
class [[nodiscard]] stack_result {
 public:
  stack_result(T value) : value_(std::move(value)) {}                                  // NOLINT implicit
  stack_result(stack_error error) : value_(std::nullopt), error_(std::move(error)) {}  // NOLINT implicit

  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  const stack_error& error() const noexcept { return error_; }
  /// operator result<T> drops the where, for code that wants a plain result.
  operator result<T>() && {  // NOLINT implicit
    if (value_) return std::move(*value_);
    return unexpected(error_.code());
  }

 private:
  std::optional<T> value_;
  stack_error error_;
};

/// listen_options shape a listening pipeline.
struct listen_options {
  /// handshakes: each accepted connection's upper layers run concurrently under this
  /// deadline and bound (handshaking_listener); only ready connections are accepted.
  handshake_options handshakes{};
};

/// pipeline is a checked stack; copyable, and reusable for many connections.
class pipeline {
 public:
  /// parse reads and checks `text` against `protocols` (the built-in ones by default; a
  /// program's own registry adds its protocols). Returns nullopt and fills `error` when
  /// refused. The pipeline keeps the entries it uses alive.
  static std::optional<pipeline> parse(std::string_view text, pipeline_error& error,
                                       const protocol_registry& protocols = protocol_registry::builtin());

  const std::string& text() const noexcept { return text_; }
  const std::vector<pipeline_layer>& layers() const noexcept { return layers_; }
  /// is_listener is true when the bottom layer accepts (e.g. tcp-listen).
  bool is_listener() const noexcept;
  /// is_bound is true when the bottom layer is a bound, connection-less endpoint
  /// (udp-bind, unix-dgram-bind): build it with bind(), not connect() or listen().
  bool is_bound() const noexcept;
  /// application is the application layer on top of the stack (role application:
  /// `tcp-listen:127.0.0.1:8080 | http1`), or nullptr when the stack ends in a byte
  /// stream or messages. connect() and listen() build the layers below it; the program
  /// speaks the protocol it names (entry->protocol: "http1") on the connections they
  /// give, with the settings the spec gave it (pipeline/application.hpp: http1_settings_of).
  const pipeline_layer* application() const noexcept;
  /// top is what the connections that connect() and listen() give offer: the top
  /// layer's properties or, under an application, those of the layer below it.
  properties top() const noexcept;
  /// describe prints one line per layer, bottom first: "tcp:127.0.0.1:7000  ->  <props>".
  std::string describe() const;

  /// connect builds the stack bottom up (connector pipelines only), each layer's
  /// handshake included, all within `dl`; an application on top is left to the caller
  /// (see application()). Errors name the failing layer (stack_error):
  /// the layers' (timed_out, ECONNREFUSED, a handshake's protocol_error, ...);
  /// invalid_argument for a listener pipeline. The task keeps its own copy of the
  /// layers: the pipeline may go away before it runs.
  task<stack_result<any_connection>> connect(deadline dl) const;
  /// listen binds the bottom layer; each accepted connection gets the upper layers (all
  /// but an application on top, which the caller runs),
  /// concurrently and under options.handshakes (see handshaking_listener): accept()
  /// returns only connections whose stack is ready, and stats() counts the failures.
  /// Errors: as the transport's bind (EADDRINUSE, ...); invalid_argument for a
  /// connector pipeline. The listener keeps its own copy of the layers.
  stack_result<any_listener> listen(listen_options options = {}) const;
  /// bind binds a bound pipeline's endpoint (udp-bind, unix-dgram-bind): one socket that
  /// receives from any sender, with its address, and sends to any address. It does not
  /// block. Errors name the layer (stack_error, op "bind"): as the transport's bind
  /// (EADDRINUSE, EACCES, ...); invalid_argument for a connector or listener pipeline.
  stack_result<any_datagram> bind() const;

 private:
  std::string text_;
  std::vector<pipeline_layer> layers_;
  std::shared_ptr<const protocol_registry::storage> entries_;  // keeps layers_[i].entry valid
};

/// check_stack checks parsed layers against the registry (used by pipeline::parse;
/// public for tests and tools). Fills `layers` on success.
bool check_stack(const spec& parsed, std::vector<pipeline_layer>& layers, pipeline_error& error,
                 const protocol_registry& protocols = protocol_registry::builtin());

/// find_adapters searches `entries` for the shortest chain of adapters (one, else two)
/// that can stand on a layer offering `below` and under which `upper`'s requirements
/// are met; the checker uses it to suggest a fix. Empty when there is none. Adapters'
/// parameters are not considered (their rows as declared).
std::vector<const protocol_entry*> find_adapters(const properties& below, const capability_row& upper,
                                                 std::span<const protocol_entry> entries = registry());

/// connect parses, checks and connects a spec in one call. A refused spec is
/// invalid_argument with the checker's message (error().message()); a failure while
/// connecting names the layer.
task<stack_result<any_connection>> connect(std::string_view spec_text, deadline dl,
                                           const protocol_registry& protocols = protocol_registry::builtin());
/// listen parses, checks and binds a listener spec in one call (errors as connect).
stack_result<any_listener> listen(std::string_view spec_text, listen_options options = {},
                                  const protocol_registry& protocols = protocol_registry::builtin());
/// bind parses, checks and binds a bound spec (`udp-bind:127.0.0.1:5514`) in one call
/// (errors as connect, with op "bind").
stack_result<any_datagram> bind(std::string_view spec_text,
                                const protocol_registry& protocols = protocol_registry::builtin());

}  // namespace strata
