// crlf: the delimiter codec and the explicit instantiations of common stacks.
#include "strata/adapt/crlf.hpp"

#include <limits>

namespace strata {
namespace {

// a + b without wrapping around.
constexpr std::size_t saturating_add(std::size_t a, std::size_t b) noexcept {
  return a > std::numeric_limits<std::size_t>::max() - b ? std::numeric_limits<std::size_t>::max() : a + b;
}

// delimiter_scanner looks for a delimiter in a byte sequence delivered in pieces, with
// no copy of the pieces: each piece is searched on its own, and the seam between the
// previous pieces and this one through a window of at most 2 * (max_delimiter - 1) bytes.
class delimiter_scanner {
 public:
  explicit delimiter_scanner(std::string_view delimiter) noexcept : delimiter_(delimiter) {}

  /// feed returns true when the delimiter occurs in everything fed so far.
  bool feed(std::string_view piece) noexcept {
    if (piece.empty()) return false;
    const auto keep = delimiter_.size() - 1;  // an occurrence crossing a seam has <= keep bytes on each side
    if (tail_size_ > 0) {
      std::array<char, 2 * (crlf_options::max_delimiter - 1)> window;
      auto head = std::min(keep, piece.size());
      std::memcpy(window.data(), tail_.data(), tail_size_);
      std::memcpy(window.data() + tail_size_, piece.data(), head);
      if (std::string_view(window.data(), tail_size_ + head).find(delimiter_) != std::string_view::npos)
        return true;
    }
    if (piece.find(delimiter_) != std::string_view::npos) return true;
    // The new tail is the last `keep` bytes of (old tail + piece).
    if (piece.size() >= keep) {
      std::memcpy(tail_.data(), piece.data() + piece.size() - keep, keep);
      tail_size_ = keep;
    } else {
      auto from_old = std::min(tail_size_, keep - piece.size());
      std::memmove(tail_.data(), tail_.data() + tail_size_ - from_old, from_old);
      std::memcpy(tail_.data() + from_old, piece.data(), piece.size());
      tail_size_ = from_old + piece.size();
    }
    return false;
  }

 private:
  std::string_view delimiter_;
  std::array<char, crlf_options::max_delimiter - 1> tail_{};
  std::size_t tail_size_ = 0;
};

}  // namespace

result<void> validate(const crlf_options& options) noexcept {
  if (options.delimiter.empty() || options.delimiter.size() > crlf_options::max_delimiter)
    return errc::invalid_argument;
  return {};
}

result<void> check_crlf_message(const crlf_options& options, const_buffers message) noexcept {
  if (!validate(options)) return errc::invalid_argument;
  std::string_view delimiter = options.delimiter;
  std::size_t size = 0;
  for (auto part : message.view()) size += part.size();
  if (size > options.max_message) return errc::message_too_large;
  if (delimiter.size() == 1) {
    for (auto part : message.view())
      if (std::memchr(part.data(), delimiter[0], part.size()) != nullptr)
        return make_error_code(cause::delimiter_in_message);
    return {};
  }
  // The receiver ends the message at the first delimiter of message + delimiter, so
  // that must be the appended one: no occurrence may start inside the message. Such an
  // occurrence lies within message + delimiter[0, size - 1).
  delimiter_scanner scanner(delimiter);
  for (auto part : message.view())
    if (scanner.feed(as_text(part))) return make_error_code(cause::delimiter_in_message);
  if (scanner.feed(delimiter.substr(0, delimiter.size() - 1)))
    return make_error_code(cause::delimiter_in_message);
  return {};
}

crlf_decoder::crlf_decoder(const crlf_options& options) noexcept : max_message_(options.max_message) {
  if (!validate(options)) {
    failed_ = errc::invalid_argument;
    return;
  }
  delimiter_size_ = options.delimiter.size();
  std::memcpy(delimiter_.data(), options.delimiter.data(), delimiter_size_);
}

decode_step crlf_decoder::decode(const_buffer input) noexcept {
  decode_step step;
  if (failed()) {
    step.state = decode_step::status::error;
    step.error = failed_;
    return step;
  }
  const std::string_view delimiter(delimiter_.data(), delimiter_size_);
  const auto text = as_text(input);
  // A valid message has at most max_message bytes, so its delimiter ends by `window`.
  const auto window = std::min(text.size(), saturating_add(max_message_, delimiter_size_));
  if (scanned_ > text.size()) scanned_ = 0;  // the caller consumed without reset(): search again
  auto found = text.substr(0, window).find(delimiter, scanned_);
  if (found != std::string_view::npos) {
    scanned_ = found;  // a retry (e.g. after a too small buffer) finds it at once
    step.state = decode_step::status::message;
    step.offset = 0;
    step.length = found;
    step.frame = found + delimiter_size_;
    return step;
  }
  if (text.size() >= saturating_add(max_message_, delimiter_size_)) {
    // max_message bytes and more, and no delimiter where one could still end the line.
    failed_ = errc::message_too_large;
    step.state = decode_step::status::error;
    step.error = failed_;
    return step;
  }
  // Every start position whose delimiter would lie inside `text` has been tried.
  if (text.size() >= delimiter_size_) scanned_ = std::max(scanned_, text.size() - delimiter_size_ + 1);
  step.need = text.size() < delimiter_size_ ? delimiter_size_ - text.size() : 1;
  return step;
}

template class detail::framed_stream<any_stream, crlf_decoder>;
template class crlf<any_stream>;

}  // namespace strata
