// System-call plumbing shared by the socket, pipe and shm transports: a gather list as
// iovecs (with the bookkeeping of a partial write), and descriptors attached to a message
// (SCM_RIGHTS). Private to src/transport.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "strata/core/buffer.hpp"

namespace strata::detail {

/// inline_iovecs is how many buffers a gather list may have before iovec_list allocates.
inline constexpr std::size_t inline_iovecs = 16;

/// iovec_list turns a gather list into iovecs (empty buffers left out) without allocating
/// for short lists. After a partial write, advance(n) drops the first n bytes; data() and
/// count() then describe what is left.
class iovec_list {
 public:
  explicit iovec_list(const_buffers bufs);
  iovec_list(const iovec_list&) = delete;
  iovec_list& operator=(const iovec_list&) = delete;
  iovec* data() noexcept { return data_ + first_; }
  std::size_t count() const noexcept { return count_ - first_; }
  /// total is the byte count of the whole list as built.
  std::size_t total() const noexcept { return total_; }
  void advance(std::size_t n) noexcept;

 private:
  std::array<iovec, inline_iovecs> small_;
  std::vector<iovec> large_;
  iovec* data_ = nullptr;
  std::size_t count_ = 0;
  std::size_t first_ = 0;
  std::size_t total_ = 0;
};

/// fd_control_bytes is the control room SCM_RIGHTS needs for `fds` descriptors.
constexpr std::size_t fd_control_bytes(std::size_t fds) noexcept { return CMSG_SPACE(sizeof(int) * fds); }

/// control_buffer is room for `N` bytes of ancillary data, aligned for cmsghdr by its
/// type. (Not `alignas(cmsghdr) std::array<char, N>` as a local: GCC 12 drops the
/// alignas of a coroutine's local variable, and UBSan caught a misaligned cmsghdr.)
template <std::size_t N>
struct alignas(cmsghdr) control_buffer {
  std::array<char, N> bytes;
  char* data() noexcept { return bytes.data(); }
  static constexpr std::size_t size() noexcept { return N; }
  operator std::span<char>() noexcept { return bytes; }
};

/// attach_fds points `msg`'s control data at `control` (cmsghdr-aligned, at least
/// fd_control_bytes(fds.size()) bytes) and fills it with one SCM_RIGHTS header carrying
/// `fds`. Nothing is attached for an empty `fds`.
void attach_fds(msghdr& msg, std::span<char> control, std::span<const int> fds) noexcept;

/// take_fds appends to `out` the descriptors of every SCM_RIGHTS header in what recvmsg
/// filled into `msg` (they are the caller's to close).
void take_fds(msghdr& msg, std::vector<int>& out);

}  // namespace strata::detail
