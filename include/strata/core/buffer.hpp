// Buffers: byte spans, and gather lists that a single buffer converts to implicitly, so
// `s.write(as_bytes("hi"), dl)` and `s.write(std::span<const const_buffer>(parts), dl)`
// are the same call.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string_view>
#include <utility>
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

namespace detail {
// Storage of byte_buffer (src/core/buffer.cpp). Small blocks come from malloc; large ones
// are mapped pages of their own, so growing them moves no bytes (mremap), untouched
// capacity costs no memory, and freeing them gives the memory back to the system.
std::byte* buffer_allocate(std::size_t capacity);
std::byte* buffer_grow(std::byte* data, std::size_t capacity, std::size_t used, std::size_t new_capacity);
void buffer_free(std::byte* data, std::size_t capacity) noexcept;
void buffer_move_out(std::byte* data, std::size_t capacity, std::size_t from,
                     std::span<std::byte> to) noexcept;
}  // namespace detail

/// byte_buffer is an owned, growable byte array with a consumed prefix, used by layers
/// that buffer reads: data lives in [begin, end); compact() reclaims the consumed front.
/// Memory follows the bytes that were written into it: capacity is never zero-filled,
/// grows only when writable() asks for more room than is free, and release() returns it.
class byte_buffer {
 public:
  byte_buffer() = default;
  explicit byte_buffer(std::size_t capacity)
      : data_(capacity ? detail::buffer_allocate(capacity) : nullptr), capacity_(capacity) {}
  byte_buffer(byte_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        capacity_(std::exchange(other.capacity_, 0)),
        begin_(std::exchange(other.begin_, 0)),
        end_(std::exchange(other.end_, 0)) {}
  byte_buffer& operator=(byte_buffer&& other) noexcept {
    if (this != &other) {
      detail::buffer_free(data_, capacity_);
      data_ = std::exchange(other.data_, nullptr);
      capacity_ = std::exchange(other.capacity_, 0);
      begin_ = std::exchange(other.begin_, 0);
      end_ = std::exchange(other.end_, 0);
    }
    return *this;
  }
  byte_buffer(const byte_buffer&) = delete;
  byte_buffer& operator=(const byte_buffer&) = delete;
  ~byte_buffer() { detail::buffer_free(data_, capacity_); }

  std::span<std::byte> readable() noexcept { return {data_ + begin_, end_ - begin_}; }
  std::span<const std::byte> readable() const noexcept { return {data_ + begin_, end_ - begin_}; }
  std::size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return begin_ == end_; }
  /// capacity is the storage held (0 after release()).
  std::size_t capacity() const noexcept { return capacity_; }
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  /// writable returns free space at the end with room for at least `want` bytes. Growth
  /// doubles the capacity (at least), but only bytes later written become resident.
  std::span<std::byte> writable(std::size_t want) {
    if (capacity_ - end_ < want) {
      compact();
      if (capacity_ - end_ < want) grow(std::max(capacity_ * 2, end_ + want));
    }
    return {data_ + end_, capacity_ - end_};
  }
  void commit(std::size_t n) noexcept { end_ += n; }
  void append(const_buffer b) {
    if (b.empty()) return;
    auto w = writable(b.size());
    std::memcpy(w.data(), b.data(), b.size());
    commit(b.size());
  }
  void compact() noexcept {
    if (begin_ == 0) return;
    std::memmove(data_, data_ + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  /// move_out copies readable()[offset, offset + to.size()) into `to`; those bytes must
  /// be consumed next, since the memory of a large block is given back while the copy
  /// proceeds (so a 100 MB message costs one copy plus a step, not two copies).
  void move_out(std::size_t offset, std::span<std::byte> to) noexcept {
    detail::buffer_move_out(data_, capacity_, begin_ + offset, to);
  }
  /// take moves the unread bytes out, leaving the buffer empty.
  std::vector<std::byte> take() {
    std::vector<std::byte> out(data_ + begin_, data_ + end_);
    begin_ = end_ = 0;
    return out;
  }
  /// release drops the unread bytes and frees the storage.
  void release() noexcept {
    detail::buffer_free(data_, capacity_);
    data_ = nullptr;
    capacity_ = begin_ = end_ = 0;
  }

 private:
  void grow(std::size_t new_capacity) {
    data_ = data_ ? detail::buffer_grow(data_, capacity_, end_, new_capacity)
                  : detail::buffer_allocate(new_capacity);
    capacity_ = new_capacity;
  }

  std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace strata
