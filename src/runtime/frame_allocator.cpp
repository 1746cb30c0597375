#include "strata/runtime/frame_allocator.hpp"

#include <array>
#include <cstdlib>
#include <new>

namespace strata::detail {
namespace {

constexpr std::size_t granule = 64;
constexpr std::size_t classes = 32;  // frames up to 2 KiB are pooled
constexpr std::size_t max_cached_per_class = 1024;

struct free_block {
  free_block* next;
};

struct frame_pool {
  std::array<free_block*, classes> heads{};
  std::array<std::size_t, classes> counts{};
  std::size_t release() noexcept {
    std::size_t bytes = 0;
    for (std::size_t cls = 0; cls < classes; ++cls) {
      for (auto* head = heads[cls]; head != nullptr;) {
        auto* next = head->next;
        std::free(head);
        bytes += (cls + 1) * granule;
        head = next;
      }
      heads[cls] = nullptr;
      counts[cls] = 0;
    }
    return bytes;
  }
  ~frame_pool() { release(); }
};

thread_local frame_pool pool;

// Under AddressSanitizer frames go straight to malloc/free, so that a resumed or touched
// frame that was already destroyed is reported (a recycled block would hide it).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool pooling = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool pooling = false;
#else
constexpr bool pooling = true;
#endif
#else
constexpr bool pooling = true;
#endif

std::size_t size_class(std::size_t size) noexcept { return (size + granule - 1) / granule - 1; }

}  // namespace

void* allocate_frame(std::size_t size) {
  auto cls = size_class(size);
  if (pooling && cls < classes) {
    if (auto* block = pool.heads[cls]) {
      pool.heads[cls] = block->next;
      --pool.counts[cls];
      return block;
    }
    size = (cls + 1) * granule;
  }
  void* p = std::malloc(size);
  if (!p) throw std::bad_alloc();
  return p;
}

void deallocate_frame(void* p, std::size_t size) noexcept {
  auto cls = size_class(size);
  if (pooling && cls < classes && pool.counts[cls] < max_cached_per_class) {
    auto* block = static_cast<free_block*>(p);
    block->next = pool.heads[cls];
    pool.heads[cls] = block;
    ++pool.counts[cls];
    return;
  }
  std::free(p);
}

std::size_t release_cached_frames() noexcept { return pool.release(); }

}  // namespace strata::detail
