// Memory measurements for tests that check what a peer can make a process allocate.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <fstream>

namespace strata::test {

/// resident_bytes is this process's resident set size now (from /proc/self/statm).
inline std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages_total = 0;
  std::size_t pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace strata::test
