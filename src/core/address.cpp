#include "strata/core/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>

namespace strata {
namespace {

struct split_result {
  std::string_view host;
  std::string_view port;
  std::string error;
  bool bracketed = false;  // "[HOST]:PORT": HOST must be IPv6
};

split_result split_host_port(std::string_view text) {
  split_result r;
  if (text.empty()) {
    r.error = "empty address (expected HOST:PORT)";
    return r;
  }
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      r.error = "missing ']' after IPv6 address";
      return r;
    }
    r.host = text.substr(1, close - 1);
    r.bracketed = true;
    auto rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      r.error = "missing ':PORT' after ']'";
      return r;
    }
    r.port = rest.substr(1);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      r.error = "missing ':PORT' in '" + std::string(text) + "'";
      return r;
    }
    r.host = text.substr(0, colon);
    r.port = text.substr(colon + 1);
    if (r.host.find(':') != std::string_view::npos) {
      r.error = "IPv6 addresses need brackets: [" + std::string(r.host) + "]:PORT";
      return r;
    }
  }
  if (r.port.empty()) r.error = "empty port";
  return r;
}

bool parse_port(std::string_view text, std::uint16_t& port) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace

address::address() noexcept { std::memset(storage_, 0, sizeof storage_); }

std::string address::explain_ip(std::string_view text) {
  auto parts = split_host_port(text);
  if (!parts.error.empty()) return parts.error;
  std::uint16_t port;
  if (!parse_port(parts.port, port)) return "bad port '" + std::string(parts.port) + "' (0-65535)";
  std::string host(parts.host);
  in_addr v4;
  in6_addr v6;
  if (parts.bracketed) {
    if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) return {};
    return "'" + host + "' in brackets is not an IPv6 address";
  }
  if (host == "localhost" || host.empty()) return {};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return {};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) return {};
  return "'" + host + "' is not a numeric IPv4/IPv6 address or localhost (names need DNS, not yet supported)";
}

result<address> address::parse_ip(std::string_view text) {
  if (!explain_ip(text).empty()) return errc::invalid_argument;
  auto parts = split_host_port(text);
  std::uint16_t port = 0;
  parse_port(parts.port, port);
  std::string host(parts.host);
  if (host == "localhost" || host.empty()) host = host.empty() ? "0.0.0.0" : "127.0.0.1";
  address a;
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(a.storage_, &v4, sizeof v4);
    a.len_ = sizeof v4;
    a.family_ = family::ipv4;
    return a;
  }
  sockaddr_in6 v6{};
  ::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr);
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(port);
  std::memcpy(a.storage_, &v6, sizeof v6);
  a.len_ = sizeof v6;
  a.family_ = family::ipv6;
  return a;
}

result<address> address::unix_path(std::string_view path) {
  sockaddr_un un{};
  if (path.empty() || path.size() >= sizeof un.sun_path) return errc::invalid_argument;
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  address a;
  std::memcpy(a.storage_, &un, sizeof un);
  a.len_ = offsetof(sockaddr_un, sun_path) + path.size() + 1;
  a.family_ = family::unix_path;
  return a;
}

result<address> address::abstract(std::string_view name) {
  sockaddr_un un{};
  // sun_path holds the leading NUL and up to 107 name bytes (no terminator: the length
  // says where the name ends).
  if (name.empty() || name.size() > sizeof un.sun_path - 1) return errc::invalid_argument;
  un.sun_family = AF_UNIX;
  un.sun_path[0] = '\0';
  std::memcpy(un.sun_path + 1, name.data(), name.size());
  address a;
  std::memcpy(a.storage_, &un, sizeof un);
  a.len_ = offsetof(sockaddr_un, sun_path) + 1 + name.size();
  a.family_ = family::unix_abstract;
  return a;
}

result<address> address::parse_unix(std::string_view text) {
  if (!text.empty() && text.front() == '@') return abstract(text.substr(1));
  return unix_path(text);
}

address address::from_sockaddr(const sockaddr* sa, std::size_t len) noexcept {
  address a;
  if (!sa || len == 0 || len > sizeof a.storage_) return a;
  std::memcpy(a.storage_, sa, len);
  a.len_ = len;
  switch (sa->sa_family) {
    case AF_INET:
      a.family_ = family::ipv4;
      break;
    case AF_INET6:
      a.family_ = family::ipv6;
      break;
    case AF_UNIX: {
      auto* un = reinterpret_cast<const sockaddr_un*>(a.storage_);
      if (len <= offsetof(sockaddr_un, sun_path)) {
        a.family_ = family::unix_path;  // unnamed (socketpair or unbound client)
      } else {
        a.family_ = un->sun_path[0] == '\0' ? family::unix_abstract : family::unix_path;
      }
      break;
    }
    default:
      a.family_ = family::none;
  }
  return a;
}

std::uint16_t address::port() const noexcept {
  if (family_ == family::ipv4) return ntohs(reinterpret_cast<const sockaddr_in*>(storage_)->sin_port);
  if (family_ == family::ipv6) return ntohs(reinterpret_cast<const sockaddr_in6*>(storage_)->sin6_port);
  return 0;
}

void address::set_port(std::uint16_t port) noexcept {
  if (family_ == family::ipv4) reinterpret_cast<sockaddr_in*>(storage_)->sin_port = htons(port);
  if (family_ == family::ipv6) reinterpret_cast<sockaddr_in6*>(storage_)->sin6_port = htons(port);
}

const sockaddr* address::data() const noexcept { return reinterpret_cast<const sockaddr*>(storage_); }
sockaddr* address::data() noexcept { return reinterpret_cast<sockaddr*>(storage_); }

int address::socket_family() const noexcept {
  switch (family_) {
    case family::ipv4:
      return AF_INET;
    case family::ipv6:
      return AF_INET6;
    case family::unix_path:
    case family::unix_abstract:
      return AF_UNIX;
    default:
      return AF_UNSPEC;
  }
}

std::string address::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  switch (family_) {
    case family::ipv4: {
      auto* v4 = reinterpret_cast<const sockaddr_in*>(storage_);
      ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
      return std::string(text) + ":" + std::to_string(port());
    }
    case family::ipv6: {
      auto* v6 = reinterpret_cast<const sockaddr_in6*>(storage_);
      ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
      return "[" + std::string(text) + "]:" + std::to_string(port());
    }
    case family::unix_path: {
      auto* un = reinterpret_cast<const sockaddr_un*>(storage_);
      if (len_ <= offsetof(sockaddr_un, sun_path)) return "(unnamed)";
      return std::string(un->sun_path, strnlen(un->sun_path, len_ - offsetof(sockaddr_un, sun_path)));
    }
    case family::unix_abstract: {
      auto* un = reinterpret_cast<const sockaddr_un*>(storage_);
      return "@" + std::string(un->sun_path + 1, len_ - offsetof(sockaddr_un, sun_path) - 1);
    }
    default:
      return "(none)";
  }
}

std::string address::host_text() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (family_ == family::ipv4) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(storage_)->sin_addr, text, sizeof text);
  } else if (family_ == family::ipv6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(storage_)->sin6_addr, text, sizeof text);
  }
  return text;
}

bool operator==(const address& a, const address& b) noexcept {
  return a.family_ == b.family_ && a.len_ == b.len_ && std::memcmp(a.storage_, b.storage_, a.len_) == 0;
}

}  // namespace strata
