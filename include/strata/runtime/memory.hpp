// memory: giving back what a burst of work left cached.
#pragma once

#include <cstddef>

namespace strata {

/// release_unused_memory returns memory that is kept for reuse to the system: the calling
/// thread's cached coroutine frames, then the free pages of the heap (malloc_trim). A
/// server calls it when its load has fallen far below a peak (e.g. most connections of a
/// burst have closed); it walks the heap, so it is not for every operation. Returns the
/// bytes of cached frames it freed. Thread-safe; affects the calling thread's frame cache.
std::size_t release_unused_memory() noexcept;

}  // namespace strata
