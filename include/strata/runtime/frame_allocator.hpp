// Per-thread recycling allocator for coroutine frames. Frames are freed on the thread
// that runs them (tasks never migrate), so a plain thread-local free list per size
// class needs no locks. Blocks are individually malloc'd, so a frame that does end up
// freed on another thread simply joins that thread's list.
//
// The pool is off (every frame is malloc'd and freed) when the library is built with
// AddressSanitizer, when the process runs under AddressSanitizer (a user's sanitizer build
// linked against a release library), or when the environment variable STRATA_FRAME_POOL
// is 0 when a thread allocates its first frame: a recycled block would hide a use of a
// destroyed frame from the sanitizer.
#pragma once

#include <cstddef>

namespace strata::detail {

void* allocate_frame(std::size_t size);
void deallocate_frame(void* p, std::size_t size) noexcept;
/// release_cached_frames frees the calling thread's cached frames; returns their bytes.
std::size_t release_cached_frames() noexcept;
/// frame_pool_enabled tells whether the calling thread recycles frames (see above).
bool frame_pool_enabled() noexcept;

}  // namespace strata::detail
