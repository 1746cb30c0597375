// Fuzz target for the shm transport's sans-I/O cores (include/strata/transport/
// shm_ring.hpp): everything this side reads that another process writes. A crashed or
// malicious peer can leave any bytes in the shared segment and send any hello, so the
// input plays that peer: it is decoded as a hello, as a segment header, or as a script
// that rewrites the ring state between our operations.
//
// Input: byte 0 selects the target (0 hello, 1 segment header, 2 SPSC ring, 3 broadcast
// ring, 4 queue, 5 end record of the control connection); the rest is its data. Scripts are a sequence of
// 9-byte steps (opcode, 64-bit value). Invariants (abort() on violation; ASan catches any access outside the
// segment): decoded values are within their documented bounds; available()/space() never
// exceed the capacity; reads never return more than asked or available; a broadcast or
// queue message never exceeds the buffer or the ring's max_message; positions only move
// forward by what was consumed; every error names its cause (fault()).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "transport/shm_ring.hpp"  // src/

namespace {

using namespace strata;
using namespace strata::shm;

void check(bool ok) {
  if (!ok) std::abort();
}

struct script {
  const std::uint8_t* p;
  std::size_t n;
  bool next(std::uint8_t& op, std::uint64_t& value) {
    if (n < 9) return false;
    op = p[0];
    std::memcpy(&value, p + 1, 8);
    p += 9;
    n -= 9;
    return true;
  }
};

// An aligned, zeroed buffer standing in for a mapped segment.
struct fake_segment {
  std::vector<std::uint64_t> words;
  explicit fake_segment(std::size_t bytes) : words((bytes + 7) / 8 + 16) {}
  std::byte* base() {
    auto at = reinterpret_cast<std::uintptr_t>(words.data());
    return reinterpret_cast<std::byte*>((at + 127) & ~std::uintptr_t{127});
  }
};

void fuzz_hello(const std::uint8_t* data, std::size_t size) {
  auto h = decode_hello(const_buffer(reinterpret_cast<const std::byte*>(data), size));
  if (!h) {
    check(h.error() == errc::protocol_error);
    return;
  }
  check(size == hello_size);
  check(h->fds <= max_hello_fds);
  check(static_cast<std::uint32_t>(h->kind) >= 1 && static_cast<std::uint32_t>(h->kind) <= 3);
  check(static_cast<std::uint32_t>(h->status) <= 3);
  std::array<std::byte, hello_size> again;
  encode_hello(*h, again);
  check(std::memcmp(again.data(), data, hello_size) == 0);  // decoding is exact
}

void fuzz_end(const std::uint8_t* data, std::size_t size) {
  auto r = decode_end(const_buffer(reinterpret_cast<const std::byte*>(data), size));
  if (!r) {
    check(r.error() == errc::protocol_error);
    return;
  }
  check(size == end_record_size);
  check(r->kind == end_kind::fin || r->kind == end_kind::bye);
  std::array<std::byte, end_record_size> again;
  encode_end(*r, again);
  check(std::memcmp(again.data(), data, end_record_size) == 0);  // decoding is exact
}

void fuzz_layout(const std::uint8_t* data, std::size_t size) {
  if (size < 8) return;
  std::uint64_t file_size;
  std::memcpy(&file_size, data, 8);
  auto l = parse_layout(const_buffer(reinterpret_cast<const std::byte*>(data + 8), size - 8), file_size);
  if (!l) {
    check(l.error() == errc::protocol_error);
    return;
  }
  check(l->size == file_size && l->size <= max_segment_bytes);
  check(l->capacity != 0 && (l->capacity & (l->capacity - 1)) == 0);
  if (l->kind == segment_kind::stream) {
    check(l->ring[1] + sizeof(spsc_control) + l->capacity == l->size);
    check(l->ring[0] >= sizeof(segment_header));
  } else {
    check(l->max_message >= 1 && l->max_message + sizeof(slot_header) <= l->slot_size);
    check(l->slots + l->capacity * l->slot_size == l->size);
    check(l->table + std::uint64_t{l->members} * sizeof(member_entry) <= l->slots);
    check(l->members >= 1 && l->members <= max_members);
  }
}

void fuzz_spsc(const std::uint8_t* data, std::size_t size) {
  constexpr std::uint64_t capacity = min_ring_bytes;
  fake_segment seg(sizeof(spsc_control) + capacity);
  auto* control = reinterpret_cast<spsc_control*>(seg.base());
  std::byte* ring = seg.base() + sizeof(spsc_control);
  spsc_reader reader(control, ring, capacity);
  spsc_writer writer(control, ring, capacity);
  std::vector<std::byte> buf(2 * capacity);
  script s{data, size};
  std::uint8_t op;
  std::uint64_t value;
  while (s.next(op, value)) {
    switch (op % 8) {
      case 0:  // the peer writes its tail
        atom(control->tail).store(value);
        break;
      case 1:  // the peer writes its head
        atom(control->head).store(value);
        break;
      case 2: {  // we read
        auto avail = reader.available();
        if (!avail) {
          check(reader.fault() != nullptr);
          break;
        }
        check(*avail <= capacity);
        auto before = reader.position();
        std::size_t want = static_cast<std::size_t>(value % buf.size());
        std::size_t n = reader.read(mutable_buffer(buf.data(), want), *avail);
        check(n <= want && n <= *avail);
        check(reader.position() == before + n);
        break;
      }
      case 3: {  // we write
        auto space = writer.space();
        if (!space) {
          check(writer.fault() != nullptr);
          break;
        }
        check(*space <= capacity);
        auto before = writer.position();
        std::size_t want = static_cast<std::size_t>(value % buf.size());
        std::size_t n = writer.write(const_buffer(buf.data(), want), *space);
        check(n <= want && n <= *space);
        check(writer.position() == before + n);
        writer.publish();
        (void)writer.reader_needs_wake();
        break;
      }
      case 4:  // flags the peer controls
        atom(control->finished).store(static_cast<std::uint32_t>(value));
        atom(control->reader_closed).store(static_cast<std::uint32_t>(value >> 32));
        (void)reader.finished();
        (void)writer.reader_closed();
        break;
      case 5:
        atom(control->reader_waiting).store(static_cast<std::uint32_t>(value));
        atom(control->writer_waiting).store(static_cast<std::uint32_t>(value >> 32));
        atom(control->reader_spins).store(static_cast<std::uint32_t>(value >> 8) & 1);
        atom(control->writer_spins).store(static_cast<std::uint32_t>(value >> 40) & 1);
        (void)reader.writer_needs_wake();
        (void)writer.reader_needs_wake();
        break;
      case 6:  // the peer scribbles on the data
        ring[value % capacity] = static_cast<std::byte>(value >> 56);
        break;
      default:
        reader.prepare_wait();
        reader.end_wait();
        // Our own fields against what we wrote (the peer may have rewritten them).
        if (!reader.verify()) check(reader.fault() != nullptr);
        if (!writer.verify()) check(writer.fault() != nullptr);
        (void)reader.tail_now();
        break;
    }
  }
}

// poke writes `value` at a script-chosen 8-byte-aligned offset of the segment: the peer
// may write anywhere in it.
void poke(std::byte* base, std::uint64_t size, std::uint64_t value, std::uint64_t where) {
  std::uint64_t at = (where % (size / 8)) * 8;
  std::memcpy(base + at, &value, 8);
}

void fuzz_broadcast(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return;
  auto policy = data[0] & 1 ? overflow_policy::overwrite : overflow_policy::block;
  auto l = make_layout(segment_kind::broadcast, 4, 48, policy, 2);
  check(static_cast<bool>(l));
  fake_segment seg(l->size);
  auto v = ring_view::of(seg.base(), *l);
  broadcast_writer writer(v);
  broadcast_reader reader(v, 0, data[1] % 8);
  std::vector<std::byte> buf(80);
  script s{data + 2, size - 2};
  std::uint8_t op;
  std::uint64_t value;
  std::uint64_t delivered = 0;
  while (s.next(op, value)) {
    switch (op % 5) {
      case 0:
        poke(seg.base(), l->size, value, op);
        break;
      case 1: {
        auto step = reader.read(mutable_buffer(buf.data(), value % buf.size()));
        switch (step.state) {
          case broadcast_step::status::message:
            check(step.size <= value % buf.size() && step.size <= l->max_message);
            ++delivered;
            break;
          case broadcast_step::status::too_small:
            check(step.size > value % buf.size() && step.size <= l->max_message);
            break;
          case broadcast_step::status::error:
            check(reader.fault() != nullptr);
            break;
          default:
            break;
        }
        // Under block nothing is ever lost: a lap is an error, never a count.
        if (policy == overflow_policy::block) check(step.lost == 0);
        break;
      }
      case 2:
        if (writer.can_publish()) {
          std::size_t n = static_cast<std::size_t>(value % (l->max_message + 1));
          writer.publish(const_buffer(buf.data(), n));
        }
        break;
      case 3:
        (void)join_broadcast(v, static_cast<std::uint32_t>(value % l->members), 1);
        break;
      default:
        leave_member(v, static_cast<std::uint32_t>(value % l->members));
        (void)reader.has_news();
        (void)reader.publisher_needs_wake();
        if (!reader.verify()) check(reader.fault() != nullptr);
        if (!writer.verify()) check(writer.fault() != nullptr);
        break;
    }
  }
}

void fuzz_queue(const std::uint8_t* data, std::size_t size) {
  auto l = make_layout(segment_kind::queue, 4, 48, overflow_policy::block, 3);
  check(static_cast<bool>(l));
  fake_segment seg(l->size);
  auto v = ring_view::of(seg.base(), *l);
  for (std::uint64_t i = 0; i < l->capacity; ++i) atom(v.slot(i)->seq).store(i);
  for (std::uint32_t m = 0; m < l->members; ++m) join_queue(v, m, 1);
  queue_core me(v, 0);
  std::vector<std::byte> buf(80);
  script s{data, size};
  std::uint8_t op;
  std::uint64_t value;
  while (s.next(op, value)) {
    switch (op % 6) {
      case 0:
        poke(seg.base(), l->size, value, op);
        break;
      case 1: {
        std::size_t want = static_cast<std::size_t>(value % buf.size());
        auto step = me.try_recv(mutable_buffer(buf.data(), want));
        if (step.state == queue_step::status::message)
          check(step.size <= want && step.size <= l->max_message);
        if (step.state == queue_step::status::too_small)
          check(step.size > want && step.size <= l->max_message);
        if (step.state == queue_step::status::error) check(me.fault() != nullptr);
        break;
      }
      case 2:
        (void)me.try_send(const_buffer(buf.data(), static_cast<std::size_t>(value % (l->max_message + 1))));
        break;
      case 3: {
        std::uint64_t position = 0;
        (void)queue_core(v, 1).try_claim(position);  // another member claims and never commits
        break;
      }
      case 4:
        (void)recover_member(v, static_cast<std::uint32_t>(1 + value % (l->members - 1)));
        break;
      default:
        (void)me.can_send();
        (void)me.can_recv();
        me.prepare_wait(value & 1);
        me.end_wait(value & 1);
        (void)me.verify();
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  switch (data[0] % 6) {
    case 0:
      fuzz_hello(data + 1, size - 1);
      break;
    case 1:
      fuzz_layout(data + 1, size - 1);
      break;
    case 2:
      fuzz_spsc(data + 1, size - 1);
      break;
    case 3:
      fuzz_broadcast(data + 1, size - 1);
      break;
    case 4:
      fuzz_queue(data + 1, size - 1);
      break;
    default:
      fuzz_end(data + 1, size - 1);
      break;
  }
  return 0;
}
