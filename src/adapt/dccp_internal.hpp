// Helpers shared by dccp.cpp and dccp_ccid2.cpp; private to src/adapt.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace strata::dccp::detail {

/// max_backoff caps every doubling timer (RFC 4340 8.1.1: 64 s).
inline constexpr std::chrono::milliseconds max_backoff{64000};

/// nn_bytes encodes a non-negotiable feature value in `n` bytes, big-endian.
inline std::vector<std::uint8_t> nn_bytes(std::uint64_t v, std::size_t n) {
  std::vector<std::uint8_t> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = std::uint8_t(v >> (8 * (n - 1 - i)));
  return b;
}

/// nn_value decodes one (at most 8 bytes are read).
inline std::uint64_t nn_value(const std::vector<std::uint8_t>& b) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < b.size() && i < 8; ++i) v = (v << 8) | b[i];
  return v;
}

}  // namespace strata::dccp::detail
