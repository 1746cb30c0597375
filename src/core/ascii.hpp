// ASCII text helpers shared by the parsers of peer input (HTTP/1.1 fields, the WebSocket
// handshake, the file server's headers, demux's Host sniffing): protocol tokens compare
// case-insensitively in ASCII only, whatever the locale. Private to src/.
#pragma once

#include <cstddef>
#include <string_view>

namespace strata::detail {

/// ascii_lower lowers A-Z and leaves every other byte as it is.
constexpr char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

/// iequals compares two strings ignoring ASCII case.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

/// trim_ows drops optional whitespace (SP and HTAB, RFC 9110 5.6.3) from both ends.
constexpr std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace strata::detail
