// prefix: the length-header codec and the explicit instantiations of common stacks.
#include "strata/adapt/prefix.hpp"

#include <limits>

namespace strata {
namespace {

// Largest value a header of `bytes` bytes can hold.
constexpr std::uint64_t header_capacity(std::size_t bytes) noexcept {
  return bytes >= 8 ? std::numeric_limits<std::uint64_t>::max() : (std::uint64_t{1} << (8 * bytes)) - 1;
}

}  // namespace

result<void> validate(const prefix_options& options) noexcept {
  if (options.header_bytes < 1 || options.header_bytes > 8) return errc::invalid_argument;
  if (options.byte_order != std::endian::big && options.byte_order != std::endian::little)
    return errc::invalid_argument;
  return {};
}

std::size_t prefix_limit(const prefix_options& options) noexcept {
  auto cap = header_capacity(options.header_bytes);
  if (cap >= std::numeric_limits<std::size_t>::max()) return options.max_message;
  return std::min(options.max_message, static_cast<std::size_t>(cap));
}

result<std::size_t> encode_prefix_header(const prefix_options& options, std::size_t size,
                                         std::span<std::byte, 8> out) noexcept {
  if (!validate(options)) return errc::invalid_argument;
  if (size > prefix_limit(options)) return errc::message_too_large;
  auto n = options.header_bytes;
  auto value = static_cast<std::uint64_t>(size);
  for (std::size_t i = 0; i < n; ++i) {
    // i-th least significant byte goes last (big) or first (little).
    auto pos = options.byte_order == std::endian::big ? n - 1 - i : i;
    out[pos] = static_cast<std::byte>(value & 0xff);
    value >>= 8;
  }
  return n;
}

prefix_decoder::prefix_decoder(const prefix_options& options) noexcept
    : options_(options), limit_(validate(options) ? prefix_limit(options) : 0) {
  if (!validate(options)) failed_ = errc::invalid_argument;
}

decode_step prefix_decoder::decode(const_buffer input) noexcept {
  decode_step step;
  if (failed()) {
    step.state = decode_step::status::error;
    step.error = failed_;
    return step;
  }
  auto n = options_.header_bytes;
  if (input.size() < n) {
    step.need = n - input.size();
    return step;
  }
  std::uint64_t length = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto pos = options_.byte_order == std::endian::big ? i : n - 1 - i;
    length = (length << 8) | std::to_integer<std::uint64_t>(input[pos]);
  }
  if (length > limit_) {
    // No resynchronisation: after an oversized header the stream position is lost.
    failed_ = errc::message_too_large;
    step.state = decode_step::status::error;
    step.error = failed_;
    return step;
  }
  auto size = static_cast<std::size_t>(length);
  if (input.size() - n < size) {
    step.need = size - (input.size() - n);
    return step;
  }
  step.state = decode_step::status::message;
  step.offset = n;
  step.length = size;
  step.frame = n + size;
  return step;
}

template class detail::framed_stream<any_stream, prefix_decoder>;
template class prefix<any_stream>;

}  // namespace strata
