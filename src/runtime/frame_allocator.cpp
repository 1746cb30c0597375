#include "strata/runtime/frame_allocator.hpp"

#include <array>
#include <cstdlib>
#include <cstring>
#include <new>

// Defined by the AddressSanitizer runtime when the process runs with it (a weak reference
// stays null otherwise).
extern "C" void __asan_init() __attribute__((weak));  // NOLINT(bugprone-reserved-identifier)

namespace strata::detail {
namespace {

constexpr std::size_t granule = 64;
constexpr std::size_t classes = 32;  // frames up to 2 KiB are pooled
constexpr std::size_t max_cached_per_class = 1024;

struct free_block {
  free_block* next;
};

// Under AddressSanitizer frames go straight to malloc/free, so that a resumed or touched
// frame that was already destroyed is reported (a recycled block would hide it).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool built_with_asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool built_with_asan = true;
#else
constexpr bool built_with_asan = false;
#endif
#else
constexpr bool built_with_asan = false;
#endif

// pooling_wanted decides for the calling thread, once (see frame_allocator.hpp).
bool pooling_wanted() noexcept {
  if (built_with_asan || &__asan_init != nullptr) return false;
  const char* env = std::getenv("STRATA_FRAME_POOL");
  return !(env && (std::strcmp(env, "0") == 0 || std::strcmp(env, "off") == 0));
}

struct frame_pool {
  std::array<free_block*, classes> heads{};
  std::array<std::size_t, classes> counts{};
  signed char enabled = -1;  // -1: not decided yet
  bool on() noexcept {
    if (enabled < 0) enabled = pooling_wanted() ? 1 : 0;
    return enabled == 1;
  }
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

std::size_t size_class(std::size_t size) noexcept { return (size + granule - 1) / granule - 1; }

}  // namespace

void* allocate_frame(std::size_t size) {
  auto cls = size_class(size);
  if (cls < classes) {
    if (pool.on()) {
      if (auto* block = pool.heads[cls]) {
        pool.heads[cls] = block->next;
        --pool.counts[cls];
        return block;
      }
    }
    // Always a whole class, also without the pool: a frame allocated by a thread without
    // the pool can be freed by a thread with one (the setting is per thread).
    if (!built_with_asan) size = (cls + 1) * granule;
  }
  void* p = std::malloc(size);
  if (!p) throw std::bad_alloc();
  return p;
}

void deallocate_frame(void* p, std::size_t size) noexcept {
  auto cls = size_class(size);
  if (cls < classes && pool.on() && pool.counts[cls] < max_cached_per_class) {
    auto* block = static_cast<free_block*>(p);
    block->next = pool.heads[cls];
    pool.heads[cls] = block;
    ++pool.counts[cls];
    return;
  }
  std::free(p);
}

std::size_t release_cached_frames() noexcept { return pool.release(); }

bool frame_pool_enabled() noexcept { return pool.on(); }

}  // namespace strata::detail
