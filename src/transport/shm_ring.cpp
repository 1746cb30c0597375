// The sans-I/O ring cores of the shm transport; see shm_ring.hpp
// for the algorithms and docs/protocols/shm.md for the layout.
#include "shm_ring.hpp"

#include <limits>

namespace strata::shm {
namespace {

constexpr bool is_pow2(std::uint64_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

// Loops over state another process may have left inconsistent are bounded: past this
// many retries the state is called impossible rather than waited for.
constexpr int max_retries = 1 << 16;

template <class T>
T load_raw(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// copy_gather copies the gather list into `out` (which holds total_size() bytes).
void copy_gather(std::byte* out, const_buffers msg) noexcept {
  for (auto b : msg.view()) {
    if (b.empty()) continue;
    std::memcpy(out, b.data(), b.size());
    out += b.size();
  }
}

}  // namespace

// -- layout -----------------------------------------------------------------------------

result<layout> make_layout(segment_kind kind, std::uint64_t capacity, std::uint64_t max_message,
                           overflow_policy policy, std::uint32_t members) noexcept {
  layout l;
  l.kind = kind;
  l.capacity = capacity;
  switch (kind) {
    case segment_kind::stream: {
      if (!is_pow2(capacity) || capacity < min_ring_bytes || capacity > max_ring_bytes || max_message != 0 ||
          members != 0 || policy != overflow_policy::block)
        return errc::invalid_argument;
      l.ring[0] = line_size;
      l.ring[1] = l.ring[0] + sizeof(spsc_control) + capacity;
      l.size = l.ring[1] + sizeof(spsc_control) + capacity;
      break;
    }
    case segment_kind::broadcast:
    case segment_kind::queue: {
      if (!is_pow2(capacity) || capacity < min_slots || capacity > max_slots) return errc::invalid_argument;
      std::uint64_t slot_size = slot_stride(max_message);
      if (slot_size == 0) return errc::invalid_argument;
      if (members == 0 || members > max_members) return errc::invalid_argument;
      if (kind == segment_kind::queue && policy != overflow_policy::block) return errc::invalid_argument;
      if (policy != overflow_policy::block && policy != overflow_policy::overwrite)
        return errc::invalid_argument;
      l.slot_size = slot_size;
      l.max_message = max_message;
      l.policy = policy;
      l.members = members;
      l.control = line_size;
      l.table = l.control + sizeof(ring_control);
      l.slots = l.table + std::uint64_t{members} * sizeof(member_entry);
      // capacity <= 2^20 and slot_size < 2^25: the product cannot overflow.
      l.size = l.slots + capacity * slot_size;
      break;
    }
    default:
      return errc::invalid_argument;
  }
  if (l.size > max_segment_bytes) return errc::invalid_argument;
  return l;
}

segment_header header_of(const layout& l) noexcept {
  segment_header h{};
  h.magic = segment_magic;
  h.version = layout_version;
  h.kind = static_cast<std::uint32_t>(l.kind);
  h.size = l.size;
  h.capacity = l.capacity;
  h.slot_size = l.slot_size;
  h.policy = static_cast<std::uint32_t>(l.policy);
  h.members = l.members;
  h.max_message = l.max_message;
  return h;
}

result<layout> parse_layout(const_buffer first_line, std::uint64_t file_size) noexcept {
  if (first_line.size() < sizeof(segment_header)) return errc::protocol_error;
  segment_header h;
  std::memcpy(&h, first_line.data(), sizeof h);
  if (h.magic != segment_magic || h.version != layout_version) return errc::protocol_error;
  if (h.kind < 1 || h.kind > 3 || h.policy > 1) return errc::protocol_error;
  if (h.members > max_members) return errc::protocol_error;
  auto l = make_layout(static_cast<segment_kind>(h.kind), h.capacity, h.max_message,
                       static_cast<overflow_policy>(h.policy), h.members);
  if (!l) return errc::protocol_error;
  if (l->slot_size != h.slot_size || l->size != h.size || h.size != file_size) return errc::protocol_error;
  return l;
}

// -- hello ----------------------------------------------------------------------------------

void encode_hello(const hello& h, std::span<std::byte, hello_size> out) noexcept {
  std::uint32_t words[6] = {
      h.version, static_cast<std::uint32_t>(h.kind), static_cast<std::uint32_t>(h.status), h.fds, h.member,
      h.flags};
  std::memcpy(out.data(), &hello_magic, 8);
  std::memcpy(out.data() + 8, words, sizeof words);
}

result<hello> decode_hello(const_buffer in) noexcept {
  if (in.size() != hello_size) return errc::protocol_error;
  if (load_raw<std::uint64_t>(in.data()) != hello_magic) return errc::protocol_error;
  std::uint32_t w[6];
  std::memcpy(w, in.data() + 8, sizeof w);
  if (w[0] != layout_version || w[1] < 1 || w[1] > 3 || w[2] > 3 || w[3] > max_hello_fds || w[5] != 0)
    return errc::protocol_error;
  hello h;
  h.version = w[0];
  h.kind = static_cast<segment_kind>(w[1]);
  h.status = static_cast<hello_status>(w[2]);
  h.fds = w[3];
  h.member = w[4];
  h.flags = w[5];
  return h;
}

// -- end records ----------------------------------------------------------------------------

void encode_end(const end_record& r, std::span<std::byte, end_record_size> out) noexcept {
  std::uint32_t words[2] = {static_cast<std::uint32_t>(r.kind), 0};
  std::memcpy(out.data(), &end_magic, 8);
  std::memcpy(out.data() + 8, words, sizeof words);
  std::memcpy(out.data() + 16, &r.position, 8);
}

result<end_record> decode_end(const_buffer in) noexcept {
  if (in.size() != end_record_size) return errc::protocol_error;
  if (load_raw<std::uint64_t>(in.data()) != end_magic) return errc::protocol_error;
  std::uint32_t w[2];
  std::memcpy(w, in.data() + 8, sizeof w);
  if (w[0] < 1 || w[0] > 2 || w[1] != 0) return errc::protocol_error;
  end_record r;
  r.kind = static_cast<end_kind>(w[0]);
  r.position = load_raw<std::uint64_t>(in.data() + 16);
  return r;
}

// -- broadcast ------------------------------------------------------------------------------

broadcast_step broadcast_reader::read(mutable_buffer buf) noexcept {
  using status = broadcast_step::status;
  const std::uint64_t capacity = v_.shape.capacity;
  const std::uint64_t max_payload = v_.shape.max_message;
  const bool block = v_.shape.policy == overflow_policy::block;
  // load_head reads the head and checks that it never moves backwards.
  auto load_head = [&](std::uint64_t& head) {
    head = atom(v_.control->head).load(std::memory_order_acquire);
    if (static_cast<std::int64_t>(head - head_seen_) < 0) return false;
    head_seen_ = head;
    return true;
  };
  for (int tries = 0; tries < max_retries; ++tries) {
    std::uint64_t head;
    if (!load_head(head)) return error("shm: broadcast head moved backwards");
    std::uint64_t ahead = head - next_;
    if (ahead == 0) return {status::empty, 0, 0};
    if (ahead > (std::numeric_limits<std::uint64_t>::max() >> 1))
      return error("shm: broadcast head behind the subscriber");
    if (ahead > capacity) {
      // Under block the publisher waits for us: it cannot be a ring ahead.
      if (block) return error("shm: broadcast head more than a ring ahead under policy=block");
      // Lapped: everything older than the last `capacity` messages is gone.
      lost_ += ahead - capacity;
      next_ = head - capacity;
      continue;
    }
    slot_header* s = v_.slot(next_);
    std::uint64_t seq = atom(s->seq).load(std::memory_order_acquire);
    if (seq != next_ + 1) {
      // The publisher rewrites a slot only once the head is a ring ahead of it, which
      // `block` never allows for a message we have not read. Otherwise the slot either
      // is being rewritten (slot_busy) or holds a later message of the same slot, and
      // either way the head (read after the sequence) has reached that message.
      if (block) return error("shm: broadcast slot sequence wrong under policy=block");
      if (!load_head(head)) return error("shm: broadcast head moved backwards");
      if (seq == slot_busy) {
        if (head - next_ < capacity) return error("shm: broadcast slot rewritten before the head lapped it");
      } else if (static_cast<std::int64_t>(seq - (next_ + 1)) < 0) {
        return error("shm: broadcast slot sequence behind the head");
      } else if ((seq - (next_ + 1)) % capacity != 0 || static_cast<std::int64_t>(head + 1 - seq) < 0) {
        return error("shm: broadcast slot sequence out of place");
      }
      ++lost_;
      ++next_;
      continue;
    }
    std::uint64_t size = atom(s->size).load(std::memory_order_relaxed);
    auto still_intact = [&] {
      std::atomic_thread_fence(std::memory_order_acquire);
      return atom(s->seq).load(std::memory_order_relaxed) == seq;
    };
    auto torn = [&] {
      // Changed while we looked: only `overwrite` rewrites a slot we have not read.
      ++lost_;
      ++next_;
      return !block;
    };
    if (size > max_payload) {
      if (still_intact()) return error("shm: broadcast message size over max_message");
      if (!torn()) return error("shm: broadcast slot rewritten under policy=block");
      continue;
    }
    if (size > buf.size()) {
      if (still_intact()) return {status::too_small, static_cast<std::size_t>(size), 0};
      if (!torn()) return error("shm: broadcast slot rewritten under policy=block");
      continue;
    }
    std::memcpy(buf.data(), v_.payload(s), static_cast<std::size_t>(size));
    if (!still_intact()) {
      if (!torn()) return error("shm: broadcast slot rewritten under policy=block");
      continue;
    }
    ++next_;
    cursor_ = next_;
    atom(me_->cursor).store(next_, std::memory_order_release);
    broadcast_step step{status::message, static_cast<std::size_t>(size), lost_};
    lost_ = 0;
    return step;
  }
  return error("shm: broadcast state never settles");
}

bool broadcast_writer::can_publish() noexcept {
  const std::uint64_t capacity = v_.shape.capacity;
  if (v_.shape.policy == overflow_policy::overwrite) return true;
  if (head_ - slowest_ < capacity) return true;
  // Rescan: the fence pairs with join_broadcast's, so a subscriber joining now is either
  // seen here or starts at a head that this rescan already accounts for.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint64_t slowest = head_;
  for (std::uint32_t i = 0; i < v_.shape.members; ++i) {
    auto& e = v_.table[i];
    if (atom(e.state).load(std::memory_order_acquire) != static_cast<std::uint32_t>(member_state::active))
      continue;
    std::uint64_t c = atom(e.cursor).load(std::memory_order_acquire);
    // A cursor ahead of us (garbage) counts as caught up; one more than a ring behind is
    // as slow as can matter.
    if (c > head_) c = head_;
    if (c < slowest) slowest = c;
  }
  slowest_ = slowest;
  return head_ - slowest_ < capacity;
}

void broadcast_writer::publish(const_buffers msg) noexcept {
  slot_header* s = v_.slot(head_);
  atom(s->seq).store(slot_busy, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  copy_gather(v_.payload(s), msg);
  atom(s->size).store(static_cast<std::uint32_t>(msg.total_size()), std::memory_order_relaxed);
  atom(s->flags).store(0, std::memory_order_relaxed);
  atom(s->seq).store(head_ + 1, std::memory_order_release);
  ++head_;
  atom(v_.control->head).store(head_, std::memory_order_release);
}

std::uint64_t join_broadcast(const ring_view& v, std::uint32_t member, std::uint32_t pid) noexcept {
  auto& e = v.table[member];
  atom(e.pid).store(pid, std::memory_order_relaxed);
  atom(e.waiting).store(0, std::memory_order_relaxed);
  atom(e.generation).fetch_add(1, std::memory_order_relaxed);
  std::uint64_t h = atom(v.control->head).load(std::memory_order_acquire);
  atom(e.cursor).store(h, std::memory_order_relaxed);
  atom(e.state).store(static_cast<std::uint32_t>(member_state::active), std::memory_order_release);
  // Converge on a head that did not move across our fence: the publisher's rescans
  // after that point see our cursor, and those before it could not lap it (see header).
  for (int tries = 0; tries < max_retries; ++tries) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::uint64_t again = atom(v.control->head).load(std::memory_order_acquire);
    if (again == h) break;
    h = again;
    atom(e.cursor).store(h, std::memory_order_relaxed);
  }
  return h;
}

void leave_member(const ring_view& v, std::uint32_t member) noexcept {
  auto& e = v.table[member];
  atom(e.state).store(static_cast<std::uint32_t>(member_state::free), std::memory_order_release);
  std::uint32_t was = atom(e.waiting).exchange(0, std::memory_order_relaxed);
  if (v.shape.kind == segment_kind::broadcast) {
    if (was) atom(v.control->readers_sleeping).fetch_sub(1, std::memory_order_relaxed);
  } else {
    if (was & 1u) atom(v.control->readers_sleeping).fetch_sub(1, std::memory_order_relaxed);
    if (was & 2u) atom(v.control->writers_sleeping).fetch_sub(1, std::memory_order_relaxed);
  }
  atom(e.generation).fetch_add(1, std::memory_order_relaxed);
}

// -- queue ----------------------------------------------------------------------------------

bool queue_core::try_claim(std::uint64_t& position) noexcept {
  const std::uint64_t capacity = v_.shape.capacity;
  auto head = atom(v_.control->head);
  std::uint64_t pos = head.load(std::memory_order_relaxed);
  for (int tries = 0; tries < max_retries; ++tries) {
    slot_header* s = v_.slot(pos);
    std::uint64_t seq = atom(s->seq).load(std::memory_order_acquire);
    auto dif = static_cast<std::int64_t>(seq - pos);
    if (dif == 0) {
      // Record the claim before making it: the service thread must be able to tell whose
      // claim a position was if we die right after the CAS.
      atom(me_->send_claim).store(pos, std::memory_order_relaxed);
      if (head.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        position = pos;
        return true;
      }
    } else if (dif < 0) {
      atom(me_->send_claim).store(no_claim, std::memory_order_relaxed);
      // Full: the slot still holds the message of the previous lap (claimed: pos -
      // capacity, committed: one more). Anything older is impossible.
      if (dif < -static_cast<std::int64_t>(capacity))
        fault_ = "shm: queue slot sequence behind the enqueue position";
      return false;
    } else {
      // Another producer claimed pos (and moved the head before committing).
      std::uint64_t again = head.load(std::memory_order_relaxed);
      if (again == pos) {
        atom(me_->send_claim).store(no_claim, std::memory_order_relaxed);
        fault_ = "shm: queue slot sequence ahead of the enqueue position";
        return false;
      }
      pos = again;
    }
  }
  atom(me_->send_claim).store(no_claim, std::memory_order_relaxed);
  fault_ = "shm: queue state never settles";
  return false;
}

void queue_core::commit(std::uint64_t position, const_buffers msg) noexcept {
  slot_header* s = v_.slot(position);
  copy_gather(v_.payload(s), msg);
  atom(s->size).store(static_cast<std::uint32_t>(msg.total_size()), std::memory_order_relaxed);
  atom(s->flags).store(0, std::memory_order_relaxed);
  atom(s->seq).store(position + 1, std::memory_order_release);
  atom(me_->send_claim).store(no_claim, std::memory_order_relaxed);
}

bool queue_core::try_send(const_buffers msg) noexcept {
  std::uint64_t pos;
  if (!try_claim(pos)) return false;
  commit(pos, msg);
  return true;
}

queue_step queue_core::try_recv(mutable_buffer buf) noexcept {
  using status = queue_step::status;
  const std::uint64_t capacity = v_.shape.capacity;
  auto tail = atom(v_.control->tail);
  std::uint64_t pos = tail.load(std::memory_order_relaxed);
  std::uint64_t skipped = 0;
  for (int tries = 0; tries < max_retries; ++tries) {
    slot_header* s = v_.slot(pos);
    std::uint64_t seq = atom(s->seq).load(std::memory_order_acquire);
    auto dif = static_cast<std::int64_t>(seq - (pos + 1));
    if (dif < 0) {
      // Empty: the slot waits for its producer (pos), or still holds the previous lap
      // (freed: pos; a consumer of pos - capacity copying: pos + 1 - capacity).
      if (dif < -static_cast<std::int64_t>(capacity))
        return error("shm: queue slot sequence behind the dequeue position", skipped);
      return {status::empty, 0, skipped};
    }
    if (dif > 0) {
      // Another consumer took pos (and moved the tail before freeing the slot).
      std::uint64_t again = tail.load(std::memory_order_relaxed);
      if (again == pos) return error("shm: queue slot sequence ahead of the dequeue position", skipped);
      pos = again;
      continue;
    }
    std::uint32_t flags = atom(s->flags).load(std::memory_order_relaxed);
    std::uint64_t size = atom(s->size).load(std::memory_order_relaxed);
    bool abandoned = (flags & slot_abandoned) != 0;
    if (flags & ~slot_abandoned) return error("shm: queue slot flags unknown", skipped);
    if (!abandoned) {
      if (size > v_.shape.max_message) return error("shm: queue message size over max_message", skipped);
      if (size > buf.size()) return {status::too_small, static_cast<std::size_t>(size), skipped};
    }
    atom(me_->recv_claim).store(pos, std::memory_order_relaxed);
    if (!tail.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_relaxed))
      continue;
    if (!abandoned) std::memcpy(buf.data(), v_.payload(s), static_cast<std::size_t>(size));
    atom(s->seq).store(pos + capacity, std::memory_order_release);
    atom(me_->recv_claim).store(no_claim, std::memory_order_relaxed);
    if (abandoned) {
      ++skipped;
      pos = tail.load(std::memory_order_relaxed);
      continue;
    }
    return {status::message, static_cast<std::size_t>(size), skipped};
  }
  atom(me_->recv_claim).store(no_claim, std::memory_order_relaxed);
  return error("shm: queue state never settles", skipped);
}

void join_queue(const ring_view& v, std::uint32_t member, std::uint32_t pid) noexcept {
  auto& e = v.table[member];
  atom(e.pid).store(pid, std::memory_order_relaxed);
  atom(e.waiting).store(0, std::memory_order_relaxed);
  atom(e.send_claim).store(no_claim, std::memory_order_relaxed);
  atom(e.recv_claim).store(no_claim, std::memory_order_relaxed);
  atom(e.generation).fetch_add(1, std::memory_order_relaxed);
  atom(e.state).store(static_cast<std::uint32_t>(member_state::active), std::memory_order_release);
}

namespace {

// claimed_by_other reports whether a live member other than `member` records `position`
// in the claim field `field` (its claim is in flight: the position may be its own).
bool claimed_by_other(const ring_view& v, std::uint32_t member, std::uint64_t member_entry::*field,
                      std::uint64_t position) noexcept {
  for (std::uint32_t i = 0; i < v.shape.members; ++i) {
    if (i == member) continue;
    auto& e = v.table[i];
    if (atom(e.state).load(std::memory_order_acquire) != static_cast<std::uint32_t>(member_state::active))
      continue;
    if (atom(e.*field).load(std::memory_order_acquire) == position) return true;
  }
  return false;
}

}  // namespace

bool recover_member(const ring_view& v, std::uint32_t member) noexcept {
  auto& e = v.table[member];
  atom(e.state).store(static_cast<std::uint32_t>(member_state::dead), std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::uint64_t capacity = v.shape.capacity;
  std::uint64_t send = atom(e.send_claim).load(std::memory_order_acquire);
  if (send != no_claim) {
    slot_header* s = v.slot(send);
    bool claimed = atom(v.control->head).load(std::memory_order_acquire) > send;
    if (claimed && atom(s->seq).load(std::memory_order_acquire) == send) {
      // Claimed and never committed: ours unless another member's claim is in flight.
      if (claimed_by_other(v, member, &member_entry::send_claim, send)) return false;
      atom(s->size).store(0, std::memory_order_relaxed);
      atom(s->flags).store(slot_abandoned, std::memory_order_relaxed);
      atom(s->seq).store(send + 1, std::memory_order_release);
    }
    atom(e.send_claim).store(no_claim, std::memory_order_relaxed);
  }
  std::uint64_t recv = atom(e.recv_claim).load(std::memory_order_acquire);
  if (recv != no_claim) {
    slot_header* s = v.slot(recv);
    bool claimed = atom(v.control->tail).load(std::memory_order_acquire) > recv;
    if (claimed && atom(s->seq).load(std::memory_order_acquire) == recv + 1) {
      if (claimed_by_other(v, member, &member_entry::recv_claim, recv)) return false;
      atom(s->seq).store(recv + capacity, std::memory_order_release);  // its message is lost
    }
    atom(e.recv_claim).store(no_claim, std::memory_order_relaxed);
  }
  leave_member(v, member);
  return true;
}

}  // namespace strata::shm
