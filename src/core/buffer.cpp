// byte_buffer storage: malloc for small blocks, private mappings for large ones.
//
// Why not std::vector: resize() zero-fills, so a buffer sized for what a peer announced
// costs that much memory before a byte arrives; growing copies (two copies live at the
// peak); and glibc keeps freed heap blocks of many connections, so a burst of large
// buffers leaves the process big after they are gone. Mapped blocks avoid all three.
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "strata/core/buffer.hpp"

namespace strata::detail {
namespace {

// From this size on a block is a mapping of its own (glibc's initial mmap threshold).
constexpr std::size_t mapped_from = 128 * 1024;
constexpr std::size_t page = 4096;

constexpr std::size_t round_to_pages(std::size_t n) noexcept { return (n + page - 1) & ~(page - 1); }

std::byte* map_block(std::size_t capacity) {
  void* p =
      ::mmap(nullptr, round_to_pages(capacity), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

}  // namespace

std::byte* buffer_allocate(std::size_t capacity) {
  if (capacity >= mapped_from) return map_block(capacity);
  void* p = std::malloc(capacity);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

std::byte* buffer_grow(std::byte* data, std::size_t capacity, std::size_t used, std::size_t new_capacity) {
  if (capacity >= mapped_from) {
    // The kernel moves the pages: no byte is copied, nothing new becomes resident.
    void* p = ::mremap(data, round_to_pages(capacity), round_to_pages(new_capacity), MREMAP_MAYMOVE);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return static_cast<std::byte*>(p);
  }
  if (new_capacity < mapped_from) {
    void* p = std::realloc(data, new_capacity);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<std::byte*>(p);
  }
  // From the heap to a mapping: one copy of fewer than mapped_from bytes.
  auto* block = map_block(new_capacity);
  if (used != 0) std::memcpy(block, data, used);
  std::free(data);
  return block;
}

void buffer_move_out(std::byte* data, std::size_t capacity, std::size_t from,
                     std::span<std::byte> to) noexcept {
  constexpr std::size_t step = 1 << 20;
  if (capacity < mapped_from || to.size() < 2 * step) {
    if (!to.empty()) std::memcpy(to.data(), data + from, to.size());
    return;
  }
  // Copy a step at a time and drop the source pages already copied: the copy grows
  // while the original shrinks. Only pages wholly inside the range are dropped (they
  // read as zeros afterwards; the caller consumes them).
  auto base = reinterpret_cast<std::uintptr_t>(data);
  auto dropped = (base + from + page - 1) & ~(page - 1);
  for (std::size_t done = 0; done < to.size();) {
    auto n = std::min(step, to.size() - done);
    std::memcpy(to.data() + done, data + from + done, n);
    done += n;
    auto copied_to = (base + from + done) & ~(page - 1);
    if (copied_to > dropped) {
      ::madvise(reinterpret_cast<void*>(dropped), copied_to - dropped, MADV_DONTNEED);
      dropped = copied_to;
    }
  }
}

void buffer_free(std::byte* data, std::size_t capacity) noexcept {
  if (data == nullptr) return;
  if (capacity >= mapped_from) {
    ::munmap(data, round_to_pages(capacity));
  } else {
    std::free(data);
  }
}

}  // namespace strata::detail
