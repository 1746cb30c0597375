// Per-thread recycling allocator for coroutine frames. Frames are freed on the thread
// that runs them (tasks never migrate), so a plain thread-local free list per size
// class needs no locks. Blocks are individually malloc'd, so a frame that does end up
// freed on another thread simply joins that thread's list.
#pragma once

#include <cstddef>

namespace strata::detail {

void* allocate_frame(std::size_t size);
void deallocate_frame(void* p, std::size_t size) noexcept;
/// release_cached_frames frees the calling thread's cached frames; returns their bytes.
std::size_t release_cached_frames() noexcept;

}  // namespace strata::detail
