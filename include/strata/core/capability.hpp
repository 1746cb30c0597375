// The capability model (DESIGN §3): every protocol declares, in one constexpr row, the
// properties it requires from the layer below, the properties it sets for the layer above
// and the properties it passes through unchanged. The same rows drive the concepts that
// refuse a bad typed stack at compile time and the checker that refuses a bad spec string
// at run time, so the two can never disagree.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strata {

enum class connection : std::uint8_t { unspecified, less, based };
enum class unit : std::uint8_t { unspecified, stream, message };
enum class domain : std::uint8_t { unspecified, inproc, ipc, net };
enum class topology : std::uint8_t { unspecified, p2p, multicast, mpmc };
enum class sharing : std::uint8_t { unspecified, any_process, related_only };
enum class direction : std::uint8_t { unspecified, duplex, simplex };

/// prop names one property of the vocabulary; prop_set is a set of them.
enum class prop : std::uint32_t {
  connection = 1u << 0,
  unit = 1u << 1,
  reliable = 1u << 2,
  ordered = 1u << 3,
  dup_free = 1u << 4,
  secure = 1u << 5,
  authenticated = 1u << 6,
  domain = 1u << 7,
  topology = 1u << 8,
  sharing = 1u << 9,
  direction = 1u << 10,
  multiplexed = 1u << 11,
  congestion_controlled = 1u << 12,
  fd_passing = 1u << 13,
  priority_ordered = 1u << 14,
  max_message = 1u << 15,
};
inline constexpr std::size_t prop_count = 16;

struct prop_set {
  std::uint32_t bits = 0;
  constexpr prop_set() noexcept = default;
  constexpr prop_set(prop p) noexcept : bits(static_cast<std::uint32_t>(p)) {}  // NOLINT
  constexpr bool has(prop p) const noexcept { return bits & static_cast<std::uint32_t>(p); }
  constexpr prop_set operator|(prop_set o) const noexcept { return from_bits(bits | o.bits); }
  constexpr prop_set operator-(prop_set o) const noexcept { return from_bits(bits & ~o.bits); }
  static constexpr prop_set from_bits(std::uint32_t b) noexcept {
    prop_set s;
    s.bits = b;
    return s;
  }
  static constexpr prop_set all() noexcept { return from_bits((1u << prop_count) - 1); }
};
constexpr prop_set operator|(prop a, prop b) noexcept { return prop_set(a) | prop_set(b); }

/// properties is what a layer offers to the layer above it.
struct properties {
  strata::connection connection = connection::unspecified;
  strata::unit unit = unit::unspecified;
  bool reliable = false;
  bool ordered = false;
  bool dup_free = false;
  bool secure = false;
  bool authenticated = false;
  strata::domain domain = domain::unspecified;
  strata::topology topology = topology::unspecified;
  strata::sharing sharing = sharing::unspecified;
  strata::direction direction = direction::unspecified;
  bool multiplexed = false;
  bool congestion_controlled = false;
  bool fd_passing = false;
  bool priority_ordered = false;
  std::size_t max_message = 0;  ///< largest message in bytes; 0 = unbounded or n/a
};

/// capability_row is one protocol's declaration: requires / provides / passes.
struct capability_row {
  std::string_view name;
  prop_set required;          ///< which properties the layer below must have...
  properties required_value;  ///< ...with these values (booleans: must be true)
  prop_set provided;          ///< which properties this layer sets...
  properties provided_value;  ///< ...to these values
  prop_set passed;            ///< which properties are inherited unchanged from below
};

/// stack_on computes what `row` offers when placed on a layer offering `below`.
/// Properties neither provided nor passed are reset to their defaults.
constexpr properties stack_on(const properties& below, const capability_row& row) noexcept {
  properties out{};
  auto pick = [&](prop p, auto member) {
    if (row.provided.has(p)) {
      out.*member = row.provided_value.*member;
    } else if (row.passed.has(p)) {
      out.*member = below.*member;
    }
  };
  pick(prop::connection, &properties::connection);
  pick(prop::unit, &properties::unit);
  pick(prop::reliable, &properties::reliable);
  pick(prop::ordered, &properties::ordered);
  pick(prop::dup_free, &properties::dup_free);
  pick(prop::secure, &properties::secure);
  pick(prop::authenticated, &properties::authenticated);
  pick(prop::domain, &properties::domain);
  pick(prop::topology, &properties::topology);
  pick(prop::sharing, &properties::sharing);
  pick(prop::direction, &properties::direction);
  pick(prop::multiplexed, &properties::multiplexed);
  pick(prop::congestion_controlled, &properties::congestion_controlled);
  pick(prop::fd_passing, &properties::fd_passing);
  pick(prop::priority_ordered, &properties::priority_ordered);
  pick(prop::max_message, &properties::max_message);
  return out;
}

/// transport_properties is what a bottom layer offers: its row applied to nothing.
constexpr properties transport_properties(const capability_row& row) noexcept {
  return stack_on(properties{}, row);
}

/// unmet is the first requirement of a row that the layer below does not meet.
struct unmet {
  prop property;
  std::string_view needed;   ///< e.g. "stream", "reliable"
  std::string_view offered;  ///< e.g. "message", "unreliable"
};

constexpr std::string_view to_string(strata::unit u) noexcept {
  switch (u) {
    case unit::stream:
      return "stream";
    case unit::message:
      return "message";
    default:
      return "nothing";
  }
}
constexpr std::string_view to_string(strata::connection c) noexcept {
  switch (c) {
    case connection::based:
      return "connection-based";
    case connection::less:
      return "connection-less";
    default:
      return "unspecified";
  }
}
constexpr std::string_view to_string(strata::domain d) noexcept {
  switch (d) {
    case domain::inproc:
      return "inproc";
    case domain::ipc:
      return "ipc";
    case domain::net:
      return "net";
    default:
      return "unspecified";
  }
}
constexpr std::string_view to_string(strata::topology t) noexcept {
  switch (t) {
    case topology::p2p:
      return "p2p";
    case topology::multicast:
      return "multicast";
    case topology::mpmc:
      return "mpmc";
    default:
      return "unspecified";
  }
}
constexpr std::string_view to_string(strata::sharing s) noexcept {
  switch (s) {
    case sharing::any_process:
      return "any-process";
    case sharing::related_only:
      return "related-only";
    default:
      return "unspecified";
  }
}
constexpr std::string_view to_string(strata::direction d) noexcept {
  switch (d) {
    case direction::duplex:
      return "duplex";
    case direction::simplex:
      return "simplex";
    default:
      return "unspecified";
  }
}
/// to_string names a property as the docs, the CLI and the errors spell it.
constexpr std::string_view to_string(prop p) noexcept {
  switch (p) {
    case prop::connection:
      return "connection";
    case prop::unit:
      return "unit";
    case prop::reliable:
      return "reliable";
    case prop::ordered:
      return "ordered";
    case prop::dup_free:
      return "dup_free";
    case prop::secure:
      return "secure";
    case prop::authenticated:
      return "authenticated";
    case prop::domain:
      return "domain";
    case prop::topology:
      return "topology";
    case prop::sharing:
      return "sharing";
    case prop::direction:
      return "direction";
    case prop::multiplexed:
      return "multiplexed";
    case prop::congestion_controlled:
      return "congestion_controlled";
    case prop::fd_passing:
      return "fd_passing";
    case prop::priority_ordered:
      return "priority_ordered";
    case prop::max_message:
      return "max_message";
  }
  return "?";
}

/// first_unmet checks `row`'s requirements against `below`; nullopt when all are met.
constexpr std::optional<unmet> first_unmet(const properties& below, const capability_row& row) noexcept {
  const auto& need = row.required_value;
  auto flag = [&](prop p, bool have, std::string_view yes, std::string_view no) -> std::optional<unmet> {
    if (row.required.has(p) && !have) return unmet{p, yes, no};
    return std::nullopt;
  };
  if (row.required.has(prop::unit) && below.unit != need.unit)
    return unmet{prop::unit, to_string(need.unit), to_string(below.unit)};
  if (row.required.has(prop::connection) && below.connection != need.connection)
    return unmet{prop::connection, to_string(need.connection), to_string(below.connection)};
  if (auto u = flag(prop::reliable, below.reliable, "reliable", "unreliable")) return u;
  if (auto u = flag(prop::ordered, below.ordered, "ordered", "unordered")) return u;
  if (auto u = flag(prop::dup_free, below.dup_free, "dup_free", "duplicates")) return u;
  if (auto u = flag(prop::secure, below.secure, "secure", "not secure")) return u;
  if (auto u = flag(prop::authenticated, below.authenticated, "authenticated", "unauthenticated")) return u;
  if (auto u = flag(prop::multiplexed, below.multiplexed, "multiplexed", "not multiplexed")) return u;
  if (auto u = flag(prop::congestion_controlled, below.congestion_controlled, "congestion_controlled",
                    "no congestion control"))
    return u;
  if (auto u = flag(prop::fd_passing, below.fd_passing, "fd_passing", "no fd passing")) return u;
  if (row.required.has(prop::direction) && below.direction != need.direction)
    return unmet{prop::direction, to_string(need.direction), to_string(below.direction)};
  if (row.required.has(prop::domain) && below.domain != need.domain)
    return unmet{prop::domain, to_string(need.domain), to_string(below.domain)};
  return std::nullopt;
}

/// describe renders properties on one line, e.g.
/// "connection-based stream reliable ordered net p2p duplex".
std::string describe(const properties& p);

// -- the static checker ---------------------------------------------------------------
//
// Each concept names one property, so a compiler that refuses `prefix<udp_socket>` says
// which property was missing (e.g. "lower_is_stream"). Types whose capabilities are only
// known at run time (any_stream, any_message) opt out: the run-time checker covered them.

template <class T>
inline constexpr bool checked_at_runtime = false;

template <class Lower>
concept has_capabilities = requires {
  { Lower::capabilities } -> std::convertible_to<properties>;
};

namespace detail {
constexpr bool needs(const capability_row& row, prop p) noexcept { return row.required.has(p); }
}  // namespace detail

template <class Lower, class Layer>
concept lower_is_stream =
    checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::unit) ||
    Layer::row.required_value.unit != unit::stream || Lower::capabilities.unit == unit::stream;
template <class Lower, class Layer>
concept lower_is_message =
    checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::unit) ||
    Layer::row.required_value.unit != unit::message || Lower::capabilities.unit == unit::message;
template <class Lower, class Layer>
concept lower_is_reliable =
    checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::reliable) || Lower::capabilities.reliable;
template <class Lower, class Layer>
concept lower_is_ordered =
    checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::ordered) || Lower::capabilities.ordered;
template <class Lower, class Layer>
concept lower_is_connection_based =
    checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::connection) ||
    Layer::row.required_value.connection != connection::based ||
    Lower::capabilities.connection == connection::based;
template <class Lower, class Layer>
concept lower_is_connectionless = checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::connection) ||
                                  Layer::row.required_value.connection != connection::less ||
                                  Lower::capabilities.connection == connection::less;
template <class Lower, class Layer>
concept lower_is_secure =
    checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::secure) || Lower::capabilities.secure;
template <class Lower, class Layer>
concept lower_is_multiplexed = checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::multiplexed) ||
                               Lower::capabilities.multiplexed;
template <class Lower, class Layer>
concept lower_is_duplex = checked_at_runtime<Lower> || !detail::needs(Layer::row, prop::direction) ||
                          Lower::capabilities.direction == Layer::row.required_value.direction;

/// stacks_on holds when `Layer` (a type with a static capability_row `row`) may be placed
/// directly on `Lower`; the unmet conjunct names the missing property.
template <class Lower, class Layer>
concept stacks_on =
    (checked_at_runtime<Lower> || has_capabilities<Lower>)&&lower_is_stream<Lower, Layer>&& lower_is_message<Lower, Layer>&& lower_is_reliable<Lower, Layer>&& lower_is_ordered<
        Lower,
        Layer>&& lower_is_connection_based<Lower,
                                           Layer>&& lower_is_connectionless<Lower,
                                                                            Layer>&& lower_is_secure<Lower,
                                                                                                     Layer>&& lower_is_multiplexed<Lower,
                                                                                                                                   Layer>&& lower_is_duplex<Lower,
                                                                                                                                                            Layer>;

}  // namespace strata
