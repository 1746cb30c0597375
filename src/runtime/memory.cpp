#include "strata/runtime/memory.hpp"

#include <malloc.h>

#include "strata/runtime/frame_allocator.hpp"

namespace strata {

std::size_t release_unused_memory() noexcept {
  auto frames = detail::release_cached_frames();
  // Freed blocks between live ones keep their pages until trimmed: glibc returns only the
  // top of the heap by itself.
  ::malloc_trim(0);
  return frames;
}

}  // namespace strata
