// Fuzz target for mux: the frame decoder and, behind it, a server session.
//
// Input: byte 0 seeds the chunking and picks the mode; the rest is what the peer sent.
// The bytes are decoded once whole and once fed in random pieces, as the session's
// reader feeds them. Invariants (abort() on violation): frames lie inside the input,
// DATA payloads respect max_frame, both feedings agree frame by frame, re-encoding the
// decoded frames reproduces the consumed bytes exactly, and errors are sticky. With bit
// 0 of byte 0 set the bytes also go to a mux::session (server) over a socket pair, which
// must end (accept fails once the input is over) without crashing or leaking.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "strata/adapt/mux.hpp"
#include "strata/runtime.hpp"
#include "strata/transport/unix.hpp"

namespace {

using strata::const_buffer;
namespace mux = strata::mux;

constexpr std::size_t max_frame = 4096;

void check(bool ok) {
  if (!ok) std::abort();
}

struct outcome {
  std::string reencoded;
  std::vector<std::size_t> sizes;
  std::size_t consumed = 0;
  bool failed = false;
};

void reencode(const mux::frame& f, std::string& out) {
  switch (f.type) {
    case mux::frame_type::data:
      mux::append_data(out, f.stream_id, f.flags, f.payload);
      break;
    case mux::frame_type::window_update:
      mux::append_window_update(out, f.stream_id, static_cast<std::uint32_t>(f.value));
      break;
    case mux::frame_type::rst:
      mux::append_rst(out, f.stream_id, static_cast<std::uint32_t>(f.value));
      break;
    case mux::frame_type::ping:
      mux::append_ping(out, f.flags, f.value);
      break;
    case mux::frame_type::goaway:
      mux::append_goaway(out, f.last_id, static_cast<std::uint32_t>(f.value));
      break;
  }
}

// decode_all feeds `in` to a decoder `step` bytes more at a time (0: all at once).
outcome decode_all(const std::uint8_t* data, std::size_t size, std::uint32_t seed) {
  outcome o;
  mux::decoder d(max_frame);
  std::size_t available = seed == 0 ? size : 0;
  std::uint32_t x = seed;
  for (;;) {
    auto in = const_buffer(reinterpret_cast<const std::byte*>(data) + o.consumed, available - o.consumed);
    auto f = d.decode(in);
    if (!f) {
      o.failed = true;
      check(d.failed());
      check(!d.decode(in));  // sticky
      return o;
    }
    if (*f) {
      const auto& fr = **f;
      check(fr.size >= mux::header_size && fr.size <= in.size());
      if (fr.type == mux::frame_type::data) {
        check(fr.payload.size() <= max_frame);
        check(fr.payload.data() == in.data() + mux::header_size);
        check(fr.stream_id != 0);
      }
      reencode(fr, o.reencoded);
      o.sizes.push_back(fr.size);
      o.consumed += fr.size;
      continue;
    }
    if (available == size) return o;
    x = x * 1103515245u + 12345u;
    available = std::min(size, available + 1 + (x >> 16) % 64);
  }
}

strata::task<void> drive_session(const std::uint8_t* data, std::size_t size) {
  auto pair = strata::uds::stream::pair();
  if (!pair) co_return;
  auto dl = strata::deadline::after(std::chrono::seconds(5));
  mux::session s(strata::any_stream(std::move(pair->first)), mux::role::server);
  auto& peer = pair->second;
  (void)co_await peer.write(const_buffer(reinterpret_cast<const std::byte*>(data), size), dl);
  (void)co_await peer.shutdown_write(dl);
  std::vector<mux::stream> streams;
  for (;;) {
    auto st = co_await s.accept(dl);
    if (!st) break;
    std::array<std::byte, 256> buf{};
    (void)co_await st->read_some(buf, strata::deadline::already());
    streams.push_back(std::move(*st));
  }
  streams.clear();
  (void)co_await s.close(dl);
  (void)co_await peer.close(dl);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::uint32_t seed = data[0];
  const std::uint8_t* body = data + 1;
  std::size_t n = size - 1;
  auto whole = decode_all(body, n, 0);
  auto pieces = decode_all(body, n, seed | 1u);
  check(whole.sizes == pieces.sizes);
  check(whole.consumed == pieces.consumed);
  check(whole.failed == pieces.failed);
  check(whole.reencoded.size() == whole.consumed);
  check(whole.reencoded.compare(0, whole.consumed, reinterpret_cast<const char*>(body), whole.consumed) == 0);
  if ((seed & 1u) != 0 && n <= 64 * 1024) strata::run(drive_session(body, n));
  return 0;
}
