// address: where an endpoint lives. IPv4 and IPv6 with port, Unix socket paths and Linux
// abstract names ("@name"). Parsing is strict and errors say what was wrong.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "strata/runtime/result.hpp"

struct sockaddr;

namespace strata {

/// address is a socket address of one of the families strata speaks.
class address {
 public:
  enum class family : std::uint8_t { none, ipv4, ipv6, unix_path, unix_abstract };

  address() noexcept;

  /// parse_ip reads "1.2.3.4:80", "[::1]:80" or "localhost:80" (-> 127.0.0.1).
  /// Errors: invalid_argument (the message is lost; use parse_ip_error for text).
  static result<address> parse_ip(std::string_view host_port);
  /// unix_path makes a filesystem socket address. Errors: invalid_argument (too long).
  static result<address> unix_path(std::string_view path);
  /// abstract makes a Linux abstract socket address (no filesystem entry).
  static result<address> abstract(std::string_view name);
  /// parse_unix reads "@name" as abstract and anything else as a path.
  static result<address> parse_unix(std::string_view text);
  /// from_sockaddr copies a kernel socket address.
  static address from_sockaddr(const sockaddr* sa, std::size_t len) noexcept;
  /// explain_ip returns why parse_ip refuses `host_port` (empty when it accepts it).
  static std::string explain_ip(std::string_view host_port);

  family kind() const noexcept { return family_; }
  bool is_ip() const noexcept { return family_ == family::ipv4 || family_ == family::ipv6; }
  bool is_unix() const noexcept { return family_ == family::unix_path || family_ == family::unix_abstract; }
  std::uint16_t port() const noexcept;
  void set_port(std::uint16_t port) noexcept;

  const sockaddr* data() const noexcept;
  sockaddr* data() noexcept;
  std::size_t size() const noexcept { return len_; }
  int socket_family() const noexcept;

  /// to_string renders "127.0.0.1:80", "[::1]:80", "/path" or "@name".
  std::string to_string() const;
  /// host_text renders an IP address without its port ("127.0.0.1", "::1"); empty for
  /// addresses of other families.
  std::string host_text() const;

  friend bool operator==(const address& a, const address& b) noexcept;

 private:
  alignas(8) unsigned char storage_[128];
  std::size_t len_ = 0;
  family family_ = family::none;
};

}  // namespace strata
