// The capability model on the transport rows (tcp, unix): what they offer, what stacking
// a layer on them yields (stack_on), which requirement is unmet first (first_unmet), and
// that the static checker (stacks_on) agrees with the dynamic one.
#include "strata/core/capability.hpp"

#include <gtest/gtest.h>

#include "strata/core/any.hpp"
#include "strata/transport/tcp.hpp"
#include "strata/transport/unix.hpp"

namespace strata {
namespace {

// Rows shaped like the adapters, defined here so the test does not depend on them.
constexpr capability_row framing_row{
    .name = "framing",
    .required = prop::unit | prop::reliable,
    .required_value = {.unit = unit::stream, .reliable = true},
    .provided = prop::unit | prop::max_message,
    .provided_value = {.unit = unit::message, .max_message = 1 << 20},
    .passed = prop_set::all() - (prop::unit | prop::max_message),
};
constexpr capability_row secure_row{
    .name = "secure",
    .required = prop::unit | prop::reliable | prop::ordered,
    .required_value = {.unit = unit::stream, .reliable = true, .ordered = true},
    .provided = prop::secure | prop::authenticated,
    .provided_value = {.secure = true, .authenticated = true},
    .passed = prop_set::all() - (prop::secure | prop::authenticated),
};
constexpr capability_row needs_message_row{
    .name = "needs-message",
    .required = prop::unit,
    .required_value = {.unit = unit::message},
    .provided = {},
    .provided_value = {},
    .passed = prop_set::all(),
};
constexpr capability_row needs_fds_row{
    .name = "needs-fds",
    .required = prop::fd_passing,
    .required_value = {.fd_passing = true},
    .provided = {},
    .provided_value = {},
    .passed = prop_set::all(),
};
constexpr capability_row needs_ipc_row{
    .name = "needs-ipc",
    .required = prop::domain,
    .required_value = {.domain = domain::ipc},
    .provided = {},
    .provided_value = {},
    .passed = prop_set::all(),
};
constexpr capability_row needs_secure_row{
    .name = "needs-secure",
    .required = prop::secure,
    .required_value = {.secure = true},
    .provided = {},
    .provided_value = {},
    .passed = prop_set::all(),
};
// Passes nothing: whatever it does not provide falls back to the defaults.
constexpr capability_row opaque_row{
    .name = "opaque",
    .required = {},
    .required_value = {},
    .provided = prop::unit,
    .provided_value = {.unit = unit::stream},
    .passed = {},
};

struct framing {
  static constexpr capability_row row = framing_row;
};
struct secure_layer {
  static constexpr capability_row row = secure_row;
};
struct needs_message {
  static constexpr capability_row row = needs_message_row;
};

constexpr properties tcp_caps = transport_properties(tcp::row);
constexpr properties unix_caps = transport_properties(uds::row);

TEST(Capability, TcpRowOffersAReliableNetworkStream) {
  EXPECT_EQ(tcp_caps.connection, connection::based);
  EXPECT_EQ(tcp_caps.unit, unit::stream);
  EXPECT_TRUE(tcp_caps.reliable);
  EXPECT_TRUE(tcp_caps.ordered);
  EXPECT_TRUE(tcp_caps.dup_free);
  EXPECT_FALSE(tcp_caps.secure);
  EXPECT_EQ(tcp_caps.domain, domain::net);
  EXPECT_EQ(tcp_caps.topology, topology::p2p);
  EXPECT_EQ(tcp_caps.sharing, sharing::any_process);
  EXPECT_EQ(tcp_caps.direction, direction::duplex);
  EXPECT_TRUE(tcp_caps.congestion_controlled);
  EXPECT_FALSE(tcp_caps.fd_passing);
  EXPECT_EQ(tcp_caps.max_message, 0u);
  EXPECT_EQ(
      describe(tcp_caps),
      "connection-based stream reliable ordered dup_free net p2p any-process duplex congestion_controlled");
  EXPECT_EQ(tcp::stream::capabilities.domain, domain::net);
}

TEST(Capability, UnixRowOffersAnIpcStreamWithDescriptorPassing) {
  EXPECT_EQ(unix_caps.connection, connection::based);
  EXPECT_EQ(unix_caps.unit, unit::stream);
  EXPECT_TRUE(unix_caps.reliable && unix_caps.ordered && unix_caps.dup_free);
  EXPECT_EQ(unix_caps.domain, domain::ipc);
  EXPECT_TRUE(unix_caps.fd_passing);
  EXPECT_FALSE(unix_caps.congestion_controlled);
  EXPECT_EQ(describe(unix_caps),
            "connection-based stream reliable ordered dup_free ipc p2p any-process duplex fd_passing");
}

TEST(Capability, FramingOnTcpGivesReliableMessagesAndKeepsTheRest) {
  auto p = stack_on(tcp_caps, framing_row);
  EXPECT_EQ(p.unit, unit::message);
  EXPECT_EQ(p.max_message, 1u << 20);
  EXPECT_TRUE(p.reliable && p.ordered);
  EXPECT_EQ(p.domain, domain::net);
  EXPECT_TRUE(p.congestion_controlled);
  EXPECT_FALSE(first_unmet(tcp_caps, framing_row).has_value());
  EXPECT_FALSE(first_unmet(unix_caps, framing_row).has_value());
}

TEST(Capability, SecureOnUnixAddsSecrecyAndPassesDescriptorPassing) {
  auto p = stack_on(unix_caps, secure_row);
  EXPECT_TRUE(p.secure);
  EXPECT_TRUE(p.authenticated);
  EXPECT_EQ(p.domain, domain::ipc);
  EXPECT_TRUE(p.fd_passing);
  EXPECT_EQ(p.unit, unit::stream);
  // And a layer that needs secrecy accepts the result, not the bare transport.
  EXPECT_FALSE(first_unmet(p, needs_secure_row).has_value());
  auto u = first_unmet(unix_caps, needs_secure_row);
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->property, prop::secure);
  EXPECT_EQ(u->needed, "secure");
  EXPECT_EQ(u->offered, "not secure");
}

TEST(Capability, UnpassedPropertiesFallBackToDefaults) {
  auto p = stack_on(tcp_caps, opaque_row);
  EXPECT_EQ(p.unit, unit::stream);
  EXPECT_FALSE(p.reliable);
  EXPECT_EQ(p.domain, domain::unspecified);
  EXPECT_EQ(p.connection, connection::unspecified);
  EXPECT_EQ(describe(p), "stream unreliable unordered");
}

TEST(Capability, FirstUnmetNamesTheMissingPropertyOfTheTransports) {
  auto unit_gap = first_unmet(tcp_caps, needs_message_row);
  ASSERT_TRUE(unit_gap.has_value());
  EXPECT_EQ(unit_gap->property, prop::unit);
  EXPECT_EQ(unit_gap->needed, "message");
  EXPECT_EQ(unit_gap->offered, "stream");

  auto fds_gap = first_unmet(tcp_caps, needs_fds_row);
  ASSERT_TRUE(fds_gap.has_value());
  EXPECT_EQ(fds_gap->property, prop::fd_passing);
  EXPECT_EQ(fds_gap->needed, "fd_passing");
  EXPECT_EQ(fds_gap->offered, "no fd passing");
  EXPECT_FALSE(first_unmet(unix_caps, needs_fds_row).has_value());

  auto domain_gap = first_unmet(tcp_caps, needs_ipc_row);
  ASSERT_TRUE(domain_gap.has_value());
  EXPECT_EQ(domain_gap->property, prop::domain);
  EXPECT_EQ(domain_gap->needed, "ipc");
  EXPECT_EQ(domain_gap->offered, "net");
  EXPECT_FALSE(first_unmet(unix_caps, needs_ipc_row).has_value());

  // Stacked: framing turns tcp's stream into messages, so a message layer now fits and
  // a second framing layer (it needs a stream) does not.
  auto framed = stack_on(tcp_caps, framing_row);
  EXPECT_FALSE(first_unmet(framed, needs_message_row).has_value());
  auto twice = first_unmet(framed, framing_row);
  ASSERT_TRUE(twice.has_value());
  EXPECT_EQ(twice->needed, "stream");
  EXPECT_EQ(twice->offered, "message");
}

TEST(Capability, StaticCheckerAgreesWithTheDynamicOne) {
  static_assert(stacks_on<tcp::stream, framing>);
  static_assert(stacks_on<uds::stream, framing>);
  static_assert(stacks_on<tcp::stream, secure_layer>);
  static_assert(!stacks_on<tcp::stream, needs_message>);
  static_assert(!lower_is_message<uds::stream, needs_message>);
  static_assert(lower_is_stream<tcp::stream, framing>);
  // Type-erased stacks are checked at run time, so they satisfy the static checker.
  static_assert(checked_at_runtime<any_stream>);
  static_assert(stacks_on<any_stream, needs_message>);
  static_assert(!has_capabilities<int>);
  constexpr bool statically_refused = !stacks_on<tcp::stream, needs_message>;
  EXPECT_EQ(first_unmet(tcp_caps, needs_message_row).has_value(), statically_refused);
}

TEST(Capability, PropSetsAndNames) {
  constexpr prop_set s = prop::unit | prop::reliable;
  static_assert(s.has(prop::unit) && s.has(prop::reliable) && !s.has(prop::ordered));
  static_assert(!(s - prop::unit).has(prop::unit));
  static_assert((s - prop::unit).has(prop::reliable));
  static_assert(prop_set::all().has(prop::max_message));
  static_assert(!prop_set{}.has(prop::connection));
  EXPECT_EQ(to_string(prop::congestion_controlled), "congestion_controlled");
  EXPECT_EQ(to_string(prop::fd_passing), "fd_passing");
  EXPECT_EQ(to_string(unit::message), "message");
  EXPECT_EQ(to_string(connection::less), "connection-less");
  EXPECT_EQ(to_string(domain::inproc), "inproc");
  EXPECT_EQ(to_string(sharing::related_only), "related-only");
  EXPECT_EQ(to_string(direction::simplex), "simplex");
  EXPECT_EQ(to_string(topology::multicast), "multicast");
}

}  // namespace
}  // namespace strata
