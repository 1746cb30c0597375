// Helpers shared by the registry entries (src/pipeline/entries/*.cpp): the generic shape
// check of a layer (target present or not, parameter names, repeats, positional values),
// typed parameter readers whose errors name the parameter and point at it, and the
// adapter from a typed transport listener to any_listener. Private to src/pipeline.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "strata/core/any.hpp"
#include "strata/pipeline/registry.hpp"
#include "strata/pipeline/spec.hpp"

namespace strata::pipeline_detail {

/// fail fills `error` and returns false, so validators read `return fail(...)`.
bool fail(spec_error& error, std::string message, std::size_t position);

/// check_shape refuses what no entry accepts: a missing or unexpected target, unknown
/// parameter names, a parameter given twice, positional values the entry does not take,
/// and missing required parameters.
bool check_shape(const protocol_entry& entry, const spec_layer& layer, spec_error& error);

/// explain_unix says why `text` is not a unix socket address (PATH or @NAME, within
/// sun_path's size); empty when it is one.
std::string explain_unix(const std::string& text);

/// check_unix_target refuses a target that explain_unix objects to, naming the entry.
bool check_unix_target(const protocol_entry& entry, const spec_layer& layer, spec_error& error);

/// parse_size reads "4096", "64k", "1M", "2g" (k = 1024); false on anything else or
/// on overflow.
bool parse_size(std::string_view text, std::uint64_t& out) noexcept;
/// format_size renders a size the way parse_size reads it, with the largest exact
/// suffix ("64k", "1m", "1000").
std::string format_size(std::uint64_t size);

/// size_param reads size parameter `key` (or `fallback` when absent) and checks that it
/// lies in [lo, hi].
bool size_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                std::uint64_t fallback, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out,
                spec_error& error);
/// uint_param reads a plain decimal parameter `key` in [lo, hi] (no suffixes).
bool uint_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                std::uint64_t fallback, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out,
                spec_error& error);
/// flag_param reads a 0|1 parameter `key`.
bool flag_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key, bool fallback,
                bool& out, spec_error& error);
/// choice_param reads parameter `key`, which must be one of `choices`; `out` is its index.
bool choice_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                  std::span<const std::string_view> choices, std::size_t fallback, std::size_t& out,
                  spec_error& error);

/// parse_duration_ms reads "250ms", "5s", "2m" or a bare number of milliseconds; false on
/// anything else or on overflow.
bool parse_duration_ms(std::string_view text, std::uint64_t& ms) noexcept;
/// format_duration_ms renders milliseconds the way parse_duration_ms reads them, with the
/// largest exact unit ("2m", "10s", "250ms").
std::string format_duration_ms(std::uint64_t ms);
/// duration_param reads duration parameter `key` in milliseconds (or `fallback` when
/// absent) and checks that it lies in [lo, hi].
bool duration_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                    std::uint64_t fallback, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out,
                    spec_error& error);

/// value_position is where the value of parameter `key` is written, or the end of the
/// layer when it is absent.
std::size_t value_position(const protocol_entry& entry, const spec_layer& layer, std::string_view key);

/// failed_connect is a task that completes at once with `ec`.
task<result<any_connection>> failed_connect(std::error_code ec);

/// listener_model adapts a typed transport listener (tcp::listener, uds::listener) to
/// any_listener: each accepted stream becomes an any_stream, each accepted message
/// socket (udp, seqpacket) an any_message.
template <class Listener>
class listener_model final : public any_listener::iface {
 public:
  explicit listener_model(Listener listener) : listener_(std::move(listener)) {}

  task<result<any_connection>> accept(deadline dl) override {
    auto s = co_await listener_.accept(dl);
    if (!s) co_return unexpected(s.error());
    using accepted = std::remove_cvref_t<decltype(*s)>;
    if constexpr (byte_stream<accepted>) {
      co_return any_connection(any_stream(std::move(*s)));
    } else {
      co_return any_connection(any_message(std::move(*s)));
    }
  }
  result<address> local_address() const override { return listener_.local_address(); }
  void close() override { listener_.close(); }
  result<void> set_gate(admission_gate gate) override {
    if constexpr (requires { listener_.set_gate(std::move(gate)); }) {
      listener_.set_gate(std::move(gate));
      return {};
    } else {
      return errc::not_supported;
    }
  }
  datagram_listener_stats datagrams() const override {
    if constexpr (requires {
                    { listener_.stats() } -> std::convertible_to<datagram_listener_stats>;
                  }) {
      return listener_.stats();
    } else {
      return {};
    }
  }

 private:
  Listener listener_;
};

/// make_listener wraps a typed listener into an any_listener.
template <class Listener>
any_listener make_listener(Listener listener) {
  return any_listener(std::make_unique<listener_model<Listener>>(std::move(listener)));
}

}  // namespace strata::pipeline_detail
