// Buffers: byte spans, and gather lists that a single buffer converts to implicitly, so
// `s.write(as_bytes("hi"), dl)` and `s.write(std::span<const const_buffer>(parts), dl)`
// are the same call.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

namespace strata {

using mutable_buffer = std::span<std::byte>;
using const_buffer = std::span<const std::byte>;

/// as_bytes views text as bytes (no copy).
inline const_buffer as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
/// as_text views bytes as text (no copy).
inline std::string_view as_text(const_buffer b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

/// const_buffers is a read-only gather list: one buffer, or a span of buffers that the
/// caller keeps alive for the duration of the call.
class const_buffers {
 public:
  const_buffers() noexcept = default;
  const_buffers(const_buffer one) noexcept : one_(one) {}                                   // NOLINT implicit
  const_buffers(std::span<const const_buffer> list) noexcept : list_(list), many_(true) {}  // NOLINT
  const_buffers(const std::vector<const_buffer>& list) noexcept                             // NOLINT implicit
      : list_(list), many_(true) {}

  /// view is the list of buffers (valid as long as this object and the caller's list).
  std::span<const const_buffer> view() const noexcept {
    return many_ ? list_ : std::span<const const_buffer>(&one_, 1);
  }
  std::size_t total_size() const noexcept {
    std::size_t n = 0;
    for (auto b : view()) n += b.size();
    return n;
  }
  /// copy_to appends every byte to `out`.
  void copy_to(std::vector<std::byte>& out) const {
    for (auto b : view()) out.insert(out.end(), b.begin(), b.end());
  }

 private:
  const_buffer one_{};
  std::span<const const_buffer> list_{};
  bool many_ = false;
};

/// byte_buffer is an owned, growable byte array with a consumed prefix, used by layers
/// that buffer reads: data lives in [begin, end); compact() reclaims the consumed front.
class byte_buffer {
 public:
  byte_buffer() = default;
  explicit byte_buffer(std::size_t capacity) { storage_.resize(capacity); }

  std::span<std::byte> readable() noexcept { return {storage_.data() + begin_, end_ - begin_}; }
  std::span<const std::byte> readable() const noexcept { return {storage_.data() + begin_, end_ - begin_}; }
  std::size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return begin_ == end_; }
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  /// writable returns free space at the end with room for at least `want` bytes.
  std::span<std::byte> writable(std::size_t want) {
    if (storage_.size() - end_ < want) {
      compact();
      if (storage_.size() - end_ < want) storage_.resize(std::max(storage_.size() * 2, end_ + want));
    }
    return {storage_.data() + end_, storage_.size() - end_};
  }
  void commit(std::size_t n) noexcept { end_ += n; }
  void append(const_buffer b) {
    auto w = writable(b.size());
    std::copy(b.begin(), b.end(), w.begin());
    commit(b.size());
  }
  void compact() noexcept {
    if (begin_ == 0) return;
    std::copy(storage_.begin() + static_cast<std::ptrdiff_t>(begin_),
              storage_.begin() + static_cast<std::ptrdiff_t>(end_), storage_.begin());
    end_ -= begin_;
    begin_ = 0;
  }
  /// take moves the unread bytes out, leaving the buffer empty.
  std::vector<std::byte> take() {
    std::vector<std::byte> out(storage_.begin() + static_cast<std::ptrdiff_t>(begin_),
                               storage_.begin() + static_cast<std::ptrdiff_t>(end_));
    begin_ = end_ = 0;
    return out;
  }

 private:
  std::vector<std::byte> storage_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace strata
