// address: strict parsing of "HOST:PORT", unix paths and abstract names, the messages
// explain_ip gives for bad input, and round trips through to_string and sockaddr.
#include "strata/core/address.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <string>

namespace strata {
namespace {

struct good_ip {
  const char* text;
  address::family kind;
  std::uint16_t port;
  const char* rendered;
};

class AddressGoodIp : public ::testing::TestWithParam<good_ip> {};

TEST_P(AddressGoodIp, ParsesAndRendersCanonically) {
  const auto& c = GetParam();
  EXPECT_EQ(address::explain_ip(c.text), "") << c.text;
  auto a = address::parse_ip(c.text);
  ASSERT_TRUE(a) << c.text;
  EXPECT_EQ(a->kind(), c.kind);
  EXPECT_TRUE(a->is_ip());
  EXPECT_FALSE(a->is_unix());
  EXPECT_EQ(a->port(), c.port);
  EXPECT_EQ(a->to_string(), c.rendered);
  EXPECT_EQ(a->socket_family(), c.kind == address::family::ipv4 ? AF_INET : AF_INET6);
  // The rendering parses back to the same address.
  auto again = address::parse_ip(a->to_string());
  ASSERT_TRUE(again) << a->to_string();
  EXPECT_EQ(*again, *a);
}

INSTANTIATE_TEST_SUITE_P(
    Core, AddressGoodIp,
    ::testing::Values(good_ip{"127.0.0.1:80", address::family::ipv4, 80, "127.0.0.1:80"},
                      good_ip{"0.0.0.0:0", address::family::ipv4, 0, "0.0.0.0:0"},
                      good_ip{"255.255.255.255:65535", address::family::ipv4, 65535, "255.255.255.255:65535"},
                      good_ip{"10.1.2.3:0080", address::family::ipv4, 80, "10.1.2.3:80"},
                      good_ip{"localhost:8080", address::family::ipv4, 8080, "127.0.0.1:8080"},
                      good_ip{":7000", address::family::ipv4, 7000, "0.0.0.0:7000"},  // any address
                      good_ip{"[::1]:443", address::family::ipv6, 443, "[::1]:443"},
                      good_ip{"[::]:0", address::family::ipv6, 0, "[::]:0"},
                      good_ip{"[0:0:0:0:0:0:0:1]:9", address::family::ipv6, 9, "[::1]:9"},
                      good_ip{"[2001:DB8::1]:53", address::family::ipv6, 53, "[2001:db8::1]:53"},
                      good_ip{"[::ffff:127.0.0.1]:1", address::family::ipv6, 1, "[::ffff:127.0.0.1]:1"}));

struct bad_ip {
  const char* text;
  const char* why;  // explain_ip's message, exactly
};

class AddressBadIp : public ::testing::TestWithParam<bad_ip> {};

TEST_P(AddressBadIp, IsRefusedWithAReason) {
  const auto& c = GetParam();
  EXPECT_EQ(address::explain_ip(c.text), c.why) << "input: '" << c.text << "'";
  auto a = address::parse_ip(c.text);
  ASSERT_FALSE(a) << "input: '" << c.text << "' parsed as " << a->to_string();
  EXPECT_EQ(a.error(), errc::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(
    Core, AddressBadIp,
    ::testing::Values(
        bad_ip{"", "empty address (expected HOST:PORT)"},
        bad_ip{"127.0.0.1", "missing ':PORT' in '127.0.0.1'"},
        bad_ip{"localhost", "missing ':PORT' in 'localhost'"}, bad_ip{"127.0.0.1:", "empty port"},
        bad_ip{"127.0.0.1:65536", "bad port '65536' (0-65535)"},
        bad_ip{"127.0.0.1:-1", "bad port '-1' (0-65535)"},
        bad_ip{"127.0.0.1:+80", "bad port '+80' (0-65535)"},
        bad_ip{"127.0.0.1:8o", "bad port '8o' (0-65535)"},
        bad_ip{"127.0.0.1: 80", "bad port ' 80' (0-65535)"},
        bad_ip{"127.0.0.1:80 ", "bad port '80 ' (0-65535)"},
        bad_ip{"127.0.0.1:99999999999999999999", "bad port '99999999999999999999' (0-65535)"},
        bad_ip{"[::1", "missing ']' after IPv6 address"}, bad_ip{"[::1]80", "missing ':PORT' after ']'"},
        bad_ip{"[::1]", "missing ':PORT' after ']'"}, bad_ip{"[::1]:", "empty port"},
        bad_ip{"::1:80", "IPv6 addresses need brackets: [::1]:PORT"},
        bad_ip{"[127.0.0.1]:80", "'127.0.0.1' in brackets is not an IPv6 address"},
        bad_ip{"[localhost]:80", "'localhost' in brackets is not an IPv6 address"},
        bad_ip{"[]:80", "'' in brackets is not an IPv6 address"},
        bad_ip{"[fe80::1%lo]:80", "'fe80::1%lo' in brackets is not an IPv6 address"},
        bad_ip{"example.org:80",
               "'example.org' is not a numeric IPv4/IPv6 address or localhost (names need DNS, not yet "
               "supported)"},
        bad_ip{"256.0.0.1:80",
               "'256.0.0.1' is not a numeric IPv4/IPv6 address or localhost (names need DNS, not yet "
               "supported)"},
        bad_ip{"1.2.3:80",
               "'1.2.3' is not a numeric IPv4/IPv6 address or localhost (names need DNS, not yet supported)"},
        bad_ip{" 127.0.0.1:80",
               "' 127.0.0.1' is not a numeric IPv4/IPv6 address or localhost (names need DNS, not yet "
               "supported)"}));

TEST(Address, DefaultIsNone) {
  address a;
  EXPECT_EQ(a.kind(), address::family::none);
  EXPECT_FALSE(a.is_ip());
  EXPECT_FALSE(a.is_unix());
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.port(), 0);
  EXPECT_EQ(a.socket_family(), AF_UNSPEC);
  EXPECT_EQ(a.to_string(), "(none)");
  EXPECT_EQ(a, address{});
}

TEST(Address, PortCanBeChangedAndTakesPartInEquality) {
  auto a = address::parse_ip("127.0.0.1:1");
  auto b = address::parse_ip("127.0.0.1:2");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  a->set_port(2);
  EXPECT_EQ(a->port(), 2);
  EXPECT_EQ(*a, *b);
  auto v6 = address::parse_ip("[::1]:1");
  ASSERT_TRUE(v6);
  v6->set_port(65535);
  EXPECT_EQ(v6->to_string(), "[::1]:65535");
  EXPECT_NE(*v6, *b);  // another family
}

TEST(Address, UnixPaths) {
  auto a = address::unix_path("/run/app.sock");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind(), address::family::unix_path);
  EXPECT_TRUE(a->is_unix());
  EXPECT_EQ(a->socket_family(), AF_UNIX);
  EXPECT_EQ(a->to_string(), "/run/app.sock");
  EXPECT_EQ(a->port(), 0);
  auto relative = address::parse_unix("rel/x.sock");
  ASSERT_TRUE(relative);
  EXPECT_EQ(relative->to_string(), "rel/x.sock");

  // sun_path holds 108 bytes including the terminating NUL.
  constexpr std::size_t room = sizeof(sockaddr_un{}.sun_path);
  EXPECT_TRUE(address::unix_path(std::string(room - 1, 'p')));
  EXPECT_EQ(address::unix_path(std::string(room, 'p')).error(), errc::invalid_argument);
  EXPECT_EQ(address::unix_path("").error(), errc::invalid_argument);
  EXPECT_EQ(address::parse_unix("").error(), errc::invalid_argument);
}

TEST(Address, AbstractNames) {
  auto a = address::parse_unix("@strata");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind(), address::family::unix_abstract);
  EXPECT_TRUE(a->is_unix());
  EXPECT_EQ(a->to_string(), "@strata");
  auto b = address::abstract("strata");
  ASSERT_TRUE(b);
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *address::unix_path("strata"));
  // Names are byte strings: a name may hold what a path may not.
  auto odd = address::abstract(std::string("a\0b", 3));
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->to_string(), std::string("@a\0b", 4));
  EXPECT_EQ(address::parse_unix("@").error(), errc::invalid_argument);
  EXPECT_EQ(address::abstract("").error(), errc::invalid_argument);
  // The kernel takes names of up to 107 bytes (sun_path minus the leading NUL).
  constexpr std::size_t room = sizeof(sockaddr_un{}.sun_path);
  auto longest = address::abstract(std::string(room - 1, 'n'));
  ASSERT_TRUE(longest);
  EXPECT_EQ(longest->size(), sizeof(sockaddr_un));
  EXPECT_EQ(longest->to_string(), "@" + std::string(room - 1, 'n'));
  EXPECT_EQ(address::abstract(std::string(room, 'n')).error(), errc::invalid_argument);
}

TEST(Address, SockaddrRoundTrips) {
  for (const char* text : {"127.0.0.1:5", "[::1]:6"}) {
    auto a = address::parse_ip(text);
    ASSERT_TRUE(a);
    auto b = address::from_sockaddr(a->data(), a->size());
    EXPECT_EQ(b, *a) << text;
    EXPECT_EQ(b.to_string(), text);
  }
  for (const char* text : {"/tmp/s.sock", "@abstract-name"}) {
    auto a = address::parse_unix(text);
    ASSERT_TRUE(a);
    auto b = address::from_sockaddr(a->data(), a->size());
    EXPECT_EQ(b, *a) << text;
    EXPECT_EQ(b.to_string(), text);
  }
  // An unnamed unix socket (socketpair, unbound client) has only the family.
  sockaddr_un unnamed{};
  unnamed.sun_family = AF_UNIX;
  auto u = address::from_sockaddr(reinterpret_cast<sockaddr*>(&unnamed), sizeof(sa_family_t));
  EXPECT_EQ(u.kind(), address::family::unix_path);
  EXPECT_EQ(u.to_string(), "(unnamed)");
  // Nothing, or an unknown family, is none.
  EXPECT_EQ(address::from_sockaddr(nullptr, 0).kind(), address::family::none);
  sockaddr other{};
  other.sa_family = AF_APPLETALK;
  EXPECT_EQ(address::from_sockaddr(&other, sizeof other).kind(), address::family::none);
}

}  // namespace
}  // namespace strata
