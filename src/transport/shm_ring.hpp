// shm_ring — the sans-I/O cores of the shared-memory transport (transport/shm.hpp): the
// segment layout and its validation, the rendezvous hello, and the three ring algorithms
// (SPSC byte ring, 1:N broadcast ring, MPMC message queue) working on memory that other
// processes write at the same time. Nothing here blocks or makes a system call: shm.cpp
// drives these cores with eventfds and the event loop, and fuzz/shm_fuzz.cpp feeds them
// what a crashed or malicious peer could leave in the shared memory.
//
// Trust: a segment is shared with processes we do not control. Every value this side
// reads that another process writes (its ring index, a flag, a slot's sequence number or
// length, the segment header) is validated before it is used as an offset or a size, and
// an impossible value is a protocol_error, never an out-of-bounds access. Each side keeps
// its own position in private memory and only publishes it, so a peer can never move it.
//
// Memory order: indices are published with release stores and read with acquire loads
// (std::atomic_ref on plain fields of the mapping; lock-free and address-free on every
// platform strata supports). Sleep/wake-up is a Dekker handshake: the sleeper stores its
// "waiting" flag, issues a seq_cst fence and re-checks the ring; the other side publishes,
// issues a seq_cst fence and then reads the flag. At least one of the two sees the other's
// store, so a wake-up is never lost. The layout is described in docs/protocols/shm.md.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "strata/core/buffer.hpp"
#include "strata/runtime/result.hpp"
#include "strata/transport/shm.hpp"

namespace strata::shm {

/// line_size separates fields that different processes write (two cache lines: the
/// adjacent-line prefetcher of x86 pairs them).
inline constexpr std::size_t line_size = 128;

/// segment_magic opens every segment ("STRASHM1" in little-endian memory).
inline constexpr std::uint64_t segment_magic = 0x314d485341525453ull;
/// hello_magic opens every rendezvous message ("STRAHLO1").
inline constexpr std::uint64_t hello_magic = 0x314f4c4841525453ull;
/// layout_version is the version of the segment layout and of the hello.
inline constexpr std::uint32_t layout_version = 3;

/// segment_kind says which ring a segment holds.
enum class segment_kind : std::uint32_t { stream = 1, broadcast = 2, queue = 3 };

// overflow_policy and the size bounds (min_ring_bytes ... max_segment_bytes) are public:
// strata/transport/shm.hpp.

template <class T>
std::atomic_ref<T> atom(T& field) noexcept {
  return std::atomic_ref<T>(field);
}

// -- segment layout -----------------------------------------------------------------------

/// segment_header is the first line of every segment, written once by its creator.
struct segment_header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t kind;         ///< segment_kind
  std::uint64_t size;         ///< bytes of the whole segment
  std::uint64_t capacity;     ///< stream: bytes per ring; broadcast, queue: slots (powers of two)
  std::uint64_t slot_size;    ///< broadcast, queue: bytes per slot, header included; stream: 0
  std::uint32_t policy;       ///< broadcast: overflow_policy; otherwise 0
  std::uint32_t members;      ///< broadcast, queue: entries of the member table; stream: 0
  std::uint64_t max_message;  ///< broadcast, queue: largest payload (slot_size == slot_stride of it)
};

/// spsc_control is the control block of one SPSC byte ring. The producer writes line 0
/// and writer_waiting, the consumer line 1 and reader_waiting; each flag is exchanged to 0
/// by the side that acts on it. Line 4 is written about once per connection, so reading
/// it on every operation costs no cache-line transfer.
struct spsc_control {
  alignas(line_size) std::uint64_t tail;  ///< bytes ever published (producer)
  std::uint32_t finished;                 ///< the producer will publish nothing more
  alignas(line_size) std::uint64_t head;  ///< bytes ever consumed (consumer)
  alignas(line_size) std::uint32_t reader_waiting;
  alignas(line_size) std::uint32_t writer_waiting;
  alignas(line_size) std::uint32_t reader_closed;  ///< the consumer is gone: writes fail with broken
  std::uint32_t reader_spins;                      ///< the consumer never sleeps: needs no wake-up
  std::uint32_t writer_spins;                      ///< the producer never sleeps: needs no wake-up
};
static_assert(sizeof(spsc_control) == 5 * line_size);

/// ring_control is the control block of a broadcast ring or a queue.
struct ring_control {
  alignas(line_size) std::uint64_t head;              ///< broadcast: next sequence; queue: enqueue position
  std::uint32_t finished;                             ///< broadcast: the publisher finished
  alignas(line_size) std::uint64_t tail;              ///< queue: dequeue position; broadcast: unused
  alignas(line_size) std::uint32_t readers_sleeping;  ///< readers parked on the data eventfd
  std::uint32_t readers_armed;                        ///< broadcast: a reader parked since the last wake-up
  alignas(line_size) std::uint32_t writers_sleeping;  ///< writers parked on the space eventfd
};
static_assert(sizeof(ring_control) == 4 * line_size);

/// member_entry is one process attached to a broadcast ring or a queue. The service
/// thread of the creator fills and frees it; the member writes its own cursor, claims and
/// waiting flags.
struct member_entry {
  alignas(line_size) std::uint32_t state;  ///< member_state
  std::uint32_t generation;                ///< bumped each time the entry is reused
  std::uint32_t pid;                       ///< the member's process (informational)
  std::uint32_t waiting;                   ///< the member sleeps (broadcast: on data)
  std::uint64_t cursor;                    ///< broadcast: next sequence this subscriber reads
  std::uint64_t send_claim;                ///< queue: enqueue position being written (or none)
  std::uint64_t recv_claim;                ///< queue: dequeue position being read (or none)
};
static_assert(sizeof(member_entry) == line_size);

enum class member_state : std::uint32_t { free = 0, active = 1, dead = 2 };
/// no_claim marks a member_entry claim field as empty.
inline constexpr std::uint64_t no_claim = ~std::uint64_t{0};

/// slot_header opens every slot of a broadcast ring or a queue.
struct slot_header {
  std::uint64_t seq;    ///< see broadcast_writer / queue_core for the sequence protocol
  std::uint32_t size;   ///< payload bytes
  std::uint32_t flags;  ///< queue: slot_abandoned when a dead producer's claim was skipped
};
static_assert(sizeof(slot_header) == 16);
inline constexpr std::uint32_t slot_abandoned = 1;
/// slot_busy is the broadcast sequence of a slot the publisher is rewriting.
inline constexpr std::uint64_t slot_busy = ~std::uint64_t{0};

/// layout is a validated segment description with every offset computed locally (never
/// read from the segment).
struct layout {
  segment_kind kind = segment_kind::stream;
  std::uint64_t capacity = 0;
  std::uint64_t slot_size = 0;
  overflow_policy policy = overflow_policy::block;
  std::uint32_t members = 0;
  std::uint64_t max_message = 0;  ///< broadcast, queue: largest payload of a slot
  std::uint64_t size = 0;
  // offsets from the start of the segment
  std::uint64_t ring[2] = {0, 0};  ///< stream: spsc_control of ring 0 and 1 (data follows)
  std::uint64_t control = 0;       ///< broadcast, queue: ring_control
  std::uint64_t table = 0;         ///< broadcast, queue: member_entry[members]
  std::uint64_t slots = 0;         ///< broadcast, queue: slot array
};

/// slot_stride rounds a payload limit up to a whole slot (header included, 64-byte
/// multiple); 0 when the payload is out of bounds.
constexpr std::uint64_t slot_stride(std::uint64_t max_payload) noexcept {
  if (max_payload == 0 || max_payload > max_slot_payload) return 0;
  return (max_payload + sizeof(slot_header) + 63) & ~std::uint64_t{63};
}

/// make_layout describes a segment of `kind` from its parameters; invalid_argument when a
/// parameter is out of bounds (capacity not a power of two, too large a segment...).
/// For streams `capacity` is bytes per ring (max_message, policy and members must be
/// 0, block, 0); otherwise `capacity` slots of messages up to `max_message` bytes and a
/// table of `members` entries.
result<layout> make_layout(segment_kind kind, std::uint64_t capacity, std::uint64_t max_message,
                           overflow_policy policy, std::uint32_t members) noexcept;

/// header_of renders the segment header that describes `l`.
segment_header header_of(const layout& l) noexcept;

/// parse_layout validates a segment header another process wrote (`first_line` holds at
/// least sizeof(segment_header) bytes copied out of the segment) against the real size of
/// the shared object. protocol_error when anything is off: magic, version, kind, sizes,
/// or a declared size that differs from `file_size`.
result<layout> parse_layout(const_buffer first_line, std::uint64_t file_size) noexcept;

// -- rendezvous hello -----------------------------------------------------------------------

/// hello_status is the listener's answer to a hello.
enum class hello_status : std::uint32_t {
  ok = 0,
  wrong_kind = 1,  ///< the name serves another kind of ring (e.g. shm-sub on a shm-listen)
  full = 2,        ///< no free member entry
  failed = 3,      ///< the listener could not create the segment
};

/// hello is the fixed 32-byte message of the rendezvous: the connector sends one with the
/// kind it wants, the listener answers with one that carries the descriptors.
struct hello {
  std::uint32_t version = layout_version;
  segment_kind kind = segment_kind::stream;
  hello_status status = hello_status::ok;
  std::uint32_t fds = 0;     ///< descriptors attached to this message (reply)
  std::uint32_t member = 0;  ///< reply: the member entry assigned to the connector
  std::uint32_t flags = 0;   ///< reserved, 0
};
inline constexpr std::size_t hello_size = 32;
inline constexpr std::uint32_t max_hello_fds = 8;

/// encode_hello writes `h` into `out` (host byte order: both ends share the host).
void encode_hello(const hello& h, std::span<std::byte, hello_size> out) noexcept;
/// decode_hello reads a hello; protocol_error for a wrong size, magic or version, an
/// unknown kind or status, more than max_hello_fds descriptors or non-zero flags.
result<hello> decode_hello(const_buffer in) noexcept;

// -- end records --------------------------------------------------------------------------
//
// The segment can be rewritten by any process that reaches the memfd, the control
// connection only by the two processes at its ends. So the flags that end a ring (a
// stream's `finished` and `reader_closed`, a broadcast's or queue's `finished`) are
// only hints: each end is also announced by an end record on the control connection,
// sent *before* the flag is set. A flag seen without its record is forged
// (protocol_error); a hang-up without the record is a death (peer_died).

/// end_kind says what an end record announces.
enum class end_kind : std::uint32_t {
  fin = 1,  ///< the sender publishes nothing more; `position` is its final ring position
  bye = 2,  ///< the sender reads nothing more (stream: its close)
};
/// end_magic opens every end record ("STRAEND1").
inline constexpr std::uint64_t end_magic = 0x31444e4541525453ull;
inline constexpr std::size_t end_record_size = 24;

/// end_record is the 24-byte message {magic, kind, 0, position} of the control connection.
struct end_record {
  end_kind kind = end_kind::fin;
  std::uint64_t position = 0;  ///< fin: stream bytes / broadcast messages ever published
};
/// encode_end writes `r` into `out`.
void encode_end(const end_record& r, std::span<std::byte, end_record_size> out) noexcept;
/// decode_end reads an end record; protocol_error for a wrong size, magic, kind or pad.
result<end_record> decode_end(const_buffer in) noexcept;

// -- SPSC byte ring -----------------------------------------------------------------------

/// spsc_reader is the consuming side of one SPSC byte ring. The ring's positions are
/// monotonically increasing 64-bit byte counts; capacity is a power of two.
class spsc_reader {
 public:
  spsc_reader() noexcept = default;
  spsc_reader(spsc_control* control, std::byte* data, std::uint64_t capacity) noexcept
      : c_(control), data_(data), capacity_(capacity) {}

  /// available is how many published bytes we have not consumed yet (at least; the
  /// producer's tail is read again only when the last one read is used up).
  /// protocol_error when the tail is impossible (behind the tail read before, which is
  /// our head, or more than a ring ahead); fault() names the cause.
  result<std::size_t> available() noexcept {
    if (tail_ != head_) return static_cast<std::size_t>(tail_ - head_);
    std::uint64_t tail = atom(c_->tail).load(std::memory_order_acquire);
    std::uint64_t used = tail - head_;
    if (used > capacity_) {
      return fail(static_cast<std::int64_t>(used) < 0 ? "shm: ring tail moved backwards"
                                                      : "shm: ring tail more than a ring ahead of the head");
    }
    if (used == 0) {
      // Ask for the next bytes' line together with the tail's, so that a polling reader
      // pays one cache-line transfer for both once the producer wrote them.
      __builtin_prefetch(data_ + (head_ & (capacity_ - 1)));
    }
    tail_ = tail;
    return static_cast<std::size_t>(used);
  }
  /// read copies min(buf.size(), avail) bytes, `avail` as returned by available(), and
  /// publishes the new head. Returns the count.
  std::size_t read(mutable_buffer buf, std::size_t avail) noexcept {
    std::size_t n = buf.size() < avail ? buf.size() : avail;
    std::size_t at = static_cast<std::size_t>(head_ & (capacity_ - 1));
    std::size_t first = n < capacity_ - at ? n : static_cast<std::size_t>(capacity_ - at);
    std::memcpy(buf.data(), data_ + at, first);
    if (n > first) std::memcpy(buf.data() + first, data_, n - first);
    head_ += n;
    atom(c_->head).store(head_, std::memory_order_release);
    return n;
  }
  /// finished reports the producer's end. Bytes published before it are visible after it
  /// (acquire), so call available() again after finished() returned true.
  bool finished() const noexcept { return atom(c_->finished).load(std::memory_order_acquire) != 0; }
  /// prepare_wait announces that we are about to sleep; re-check the ring afterwards.
  void prepare_wait() noexcept {
    atom(c_->reader_waiting).store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  /// end_wait withdraws the announcement.
  void end_wait() noexcept { atom(c_->reader_waiting).store(0, std::memory_order_relaxed); }
  /// writer_needs_wake is called after read(): true (once) when the producer sleeps on a
  /// full ring and must be woken. A producer that declared it never sleeps costs no
  /// fence (the fence waits for our stores to reach the other core).
  bool writer_needs_wake() noexcept {
    if (atom(c_->writer_spins).load(std::memory_order_relaxed) != 0) return false;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    auto flag = atom(c_->writer_waiting);
    return flag.load(std::memory_order_relaxed) != 0 && flag.exchange(0, std::memory_order_relaxed) != 0;
  }
  /// close tells the producer that nobody reads any more.
  void close() noexcept { atom(c_->reader_closed).store(1, std::memory_order_release); }
  /// declare_spinning promises that this reader never sleeps (spin mode), so the
  /// producer skips the wake-up handshake.
  void declare_spinning() noexcept {
    spins_ = 1;
    atom(c_->reader_spins).store(1, std::memory_order_relaxed);
  }
  /// verify checks the fields only this reader writes (its head, reader_closed,
  /// reader_spins): someone else changed them when they differ from what we wrote.
  /// Called before sleeping and on every periodic re-check, so that garbage that would
  /// keep both sides asleep (a head that says the ring is full) is found.
  result<void> verify() noexcept {
    if (atom(c_->head).load(std::memory_order_relaxed) != head_) return fail("shm: ring head overwritten");
    if (atom(c_->reader_closed).load(std::memory_order_relaxed) != 0)
      return fail("shm: reader-closed flag set by another process");
    if (atom(c_->reader_spins).load(std::memory_order_relaxed) != spins_)
      return fail("shm: reader spin flag overwritten");
    return {};
  }
  /// tail_now reads the producer's tail without caching it (for the end check).
  std::uint64_t tail_now() const noexcept { return atom(c_->tail).load(std::memory_order_acquire); }
  std::uint64_t position() const noexcept { return head_; }
  std::uint64_t capacity() const noexcept { return capacity_; }
  /// fault names the last protocol_error's cause (a static string), or nullptr.
  const char* fault() const noexcept { return fault_; }

 private:
  errc fail(const char* why) noexcept {
    fault_ = why;
    return errc::protocol_error;
  }
  spsc_control* c_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t head_ = 0;
  std::uint64_t tail_ = 0;  ///< the producer's tail as last read (validated)
  std::uint32_t spins_ = 0;
  const char* fault_ = nullptr;
};

/// spsc_writer is the producing side of one SPSC byte ring.
class spsc_writer {
 public:
  spsc_writer() noexcept = default;
  spsc_writer(spsc_control* control, std::byte* data, std::uint64_t capacity) noexcept
      : c_(control), data_(data), capacity_(capacity) {}

  /// space is how many bytes may be written without overwriting unread ones (at least;
  /// the consumer's head is read again only when the last one read leaves less than
  /// `wanted` bytes). protocol_error when the head is impossible (behind the head read
  /// before, or ahead of our tail); fault() names the cause.
  result<std::size_t> space(std::size_t wanted = 1) noexcept {
    std::uint64_t room = capacity_ - (tail_ - head_);
    if (room >= wanted && room > 0) return static_cast<std::size_t>(room);
    std::uint64_t head = atom(c_->head).load(std::memory_order_acquire);
    if (static_cast<std::int64_t>(head - head_) < 0) return fail("shm: ring head moved backwards");
    if (static_cast<std::int64_t>(tail_ - head) < 0) return fail("shm: ring head ahead of the tail");
    std::uint64_t used = tail_ - head;  // <= capacity: head_ was at most a ring behind
    if (used > capacity_) return fail("shm: ring head more than a ring behind the tail");
    head_ = head;
    return static_cast<std::size_t>(capacity_ - used);
  }
  /// write copies min(data.size(), space) bytes (space from space()) without publishing
  /// them; returns the count. Call publish() after one or more writes.
  std::size_t write(const_buffer data, std::size_t space) noexcept {
    std::size_t n = data.size() < space ? data.size() : space;
    std::size_t at = static_cast<std::size_t>(tail_ & (capacity_ - 1));
    std::size_t first = n < capacity_ - at ? n : static_cast<std::size_t>(capacity_ - at);
    std::memcpy(data_ + at, data.data(), first);
    if (n > first) std::memcpy(data_, data.data() + first, n - first);
    tail_ += n;
    return n;
  }
  /// publish makes the written bytes visible to the consumer.
  void publish() noexcept { atom(c_->tail).store(published_ = tail_, std::memory_order_release); }
  /// reader_needs_wake is called after publish(): true (once) when the consumer sleeps on
  /// an empty ring and must be woken. Free when the consumer declared it never sleeps.
  bool reader_needs_wake() noexcept {
    if (atom(c_->reader_spins).load(std::memory_order_relaxed) != 0) return false;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    auto flag = atom(c_->reader_waiting);
    return flag.load(std::memory_order_relaxed) != 0 && flag.exchange(0, std::memory_order_relaxed) != 0;
  }
  /// finish marks the end of the byte stream (after the last publish()).
  void finish() noexcept {
    finished_ = 1;
    atom(c_->finished).store(1, std::memory_order_release);
  }
  /// reader_closed reports that the consumer went away (its close()).
  bool reader_closed() const noexcept { return atom(c_->reader_closed).load(std::memory_order_acquire) != 0; }
  void prepare_wait() noexcept {
    atom(c_->writer_waiting).store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void end_wait() noexcept { atom(c_->writer_waiting).store(0, std::memory_order_relaxed); }
  /// declare_spinning promises that this producer never sleeps (spin mode).
  void declare_spinning() noexcept {
    spins_ = 1;
    atom(c_->writer_spins).store(1, std::memory_order_relaxed);
  }
  /// verify checks the fields only this producer writes (its published tail, finished,
  /// writer_spins); see spsc_reader::verify.
  result<void> verify() noexcept {
    if (atom(c_->tail).load(std::memory_order_relaxed) != published_)
      return fail("shm: ring tail overwritten");
    if (atom(c_->finished).load(std::memory_order_relaxed) != finished_)
      return fail("shm: end flag changed by another process");
    if (atom(c_->writer_spins).load(std::memory_order_relaxed) != spins_)
      return fail("shm: writer spin flag overwritten");
    return {};
  }
  /// position is the count of bytes written (published or not).
  std::uint64_t position() const noexcept { return tail_; }
  /// published is the count of bytes published.
  std::uint64_t published() const noexcept { return published_; }
  std::uint64_t capacity() const noexcept { return capacity_; }
  const char* fault() const noexcept { return fault_; }

 private:
  errc fail(const char* why) noexcept {
    fault_ = why;
    return errc::protocol_error;
  }
  spsc_control* c_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t tail_ = 0;
  std::uint64_t published_ = 0;
  std::uint64_t head_ = 0;  ///< the consumer's head as last read (validated)
  std::uint32_t spins_ = 0;
  std::uint32_t finished_ = 0;
  const char* fault_ = nullptr;
};

// -- broadcast ring ---------------------------------------------------------------------
//
// One publisher, N subscribers, `capacity` slots. Message number s lives in slot
// s % capacity. The publisher rewrites a slot by storing slot_busy in its sequence,
// writing size and payload, then storing s + 1 in the sequence and s + 1 in the ring's
// head (release). A subscriber expecting message c reads head; if head > c it reads the
// slot's sequence (acquire), copies, fences (acquire) and re-reads the sequence: only
// c + 1 both times is message c intact (a seqlock). Anything else, with head at least a
// ring ahead of c, is a message the publisher overwrote: counted as lost, never returned
// torn. Under `block` the publisher never overwrites a message that an active subscriber
// (member_entry.cursor) has not read; it rescans the cursors only when it is about to lap
// the slowest one it knew of, so its cost per message does not grow with N.

/// broadcast_step is the outcome of one broadcast_reader::read.
struct broadcast_step {
  enum class status {
    empty,      ///< nothing new (check finished() / sleep)
    message,    ///< `size` bytes copied; `lost` messages were skipped before this one
    too_small,  ///< the next message has `size` bytes, more than the buffer (kept)
    error,      ///< the publisher left impossible state (protocol_error; sticky)
  };
  status state = status::empty;
  std::size_t size = 0;
  std::uint64_t lost = 0;
};

/// broadcast_view addresses the parts of a broadcast or queue segment.
struct ring_view {
  ring_control* control = nullptr;
  member_entry* table = nullptr;
  std::byte* slots = nullptr;
  layout shape{};

  static ring_view of(std::byte* base, const layout& l) noexcept {
    return {reinterpret_cast<ring_control*>(base + l.control),
            reinterpret_cast<member_entry*>(base + l.table), base + l.slots, l};
  }
  slot_header* slot(std::uint64_t seq) const noexcept {
    return reinterpret_cast<slot_header*>(slots + (seq & (shape.capacity - 1)) * shape.slot_size);
  }
  std::byte* payload(slot_header* s) const noexcept { return reinterpret_cast<std::byte*>(s + 1); }
};

/// broadcast_reader is one subscriber's view of a broadcast ring.
class broadcast_reader {
 public:
  broadcast_reader() noexcept = default;
  /// The subscriber owns table entry `member` and starts at message `start`.
  broadcast_reader(ring_view v, std::uint32_t member, std::uint64_t start) noexcept
      : v_(v), me_(&v.table[member]), next_(start), head_seen_(start), cursor_(start) {}

  /// read copies the next message into `buf` and advances (see broadcast_step). Checks
  /// what the publisher wrote: the head never moves backwards; under `block` the head is
  /// never more than a ring ahead of us and the slot of the next message holds exactly
  /// it; under `overwrite` a slot holds the next message, a later one of the same slot
  /// that the head already covers, or is being rewritten for one — a sequence behind the
  /// head or out of place is error (fault() names the cause).
  broadcast_step read(mutable_buffer buf) noexcept;
  /// verify checks what only this subscriber writes: its cursor and its entry's state
  /// (see spsc_reader::verify).
  result<void> verify() noexcept {
    if (atom(me_->cursor).load(std::memory_order_relaxed) != cursor_)
      return fail("shm: subscriber cursor overwritten");
    if (atom(me_->state).load(std::memory_order_relaxed) != static_cast<std::uint32_t>(member_state::active))
      return fail("shm: subscriber entry overwritten");
    return {};
  }
  const char* fault() const noexcept { return fault_; }
  /// finished reports the publisher's end; read() again after it returned true.
  bool finished() const noexcept { return atom(v_.control->finished).load(std::memory_order_acquire) != 0; }
  /// has_news reports whether read() could return something other than empty.
  bool has_news() const noexcept {
    return atom(v_.control->head).load(std::memory_order_acquire) != next_ || finished();
  }
  void prepare_wait() noexcept {
    atom(me_->waiting).store(1, std::memory_order_relaxed);
    atom(v_.control->readers_sleeping).fetch_add(1, std::memory_order_seq_cst);
    atom(v_.control->readers_armed).store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void end_wait() noexcept {
    // The publisher's service thread may have cleared the flag of a subscriber it
    // dropped; only the side that clears the flag decrements the count.
    if (atom(me_->waiting).exchange(0, std::memory_order_relaxed) != 0)
      atom(v_.control->readers_sleeping).fetch_sub(1, std::memory_order_relaxed);
  }
  /// publisher_needs_wake is called after a read under `block`: true (once) when the
  /// publisher sleeps waiting for subscribers.
  bool publisher_needs_wake() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    auto flag = atom(v_.control->writers_sleeping);
    return flag.load(std::memory_order_relaxed) != 0 && flag.exchange(0, std::memory_order_relaxed) != 0;
  }
  std::uint64_t next() const noexcept { return next_; }

 private:
  errc fail(const char* why) noexcept {
    fault_ = why;
    return errc::protocol_error;
  }
  broadcast_step error(const char* why) noexcept {
    fault_ = why;
    return {broadcast_step::status::error, 0, 0};
  }
  ring_view v_{};
  member_entry* me_ = nullptr;
  std::uint64_t next_ = 0;
  std::uint64_t lost_ = 0;       ///< skipped, not yet reported with a message
  std::uint64_t head_seen_ = 0;  ///< the highest head read (it never moves backwards)
  std::uint64_t cursor_ = 0;     ///< what our entry's cursor holds
  const char* fault_ = nullptr;
};

/// reader_wake says how a publisher wakes sleeping subscribers. All of them sleep on one
/// eventfd and one write wakes them all, but the kernel does that work per sleeper in the
/// writer's system call. With more than direct_wake_limit sleepers the publisher hands
/// the write to its service thread (one wake-up of one thread), so its own cost per
/// message stays the same whatever the number of subscribers.
enum class reader_wake { none, direct, fan_out };
inline constexpr std::uint32_t direct_wake_limit = 1;

/// broadcast_writer is the publisher's view of a broadcast ring.
class broadcast_writer {
 public:
  broadcast_writer() noexcept = default;
  explicit broadcast_writer(ring_view v) noexcept : v_(v) {}

  /// can_publish reports whether the next message may be written now: always under
  /// `overwrite`; under `block` when no active subscriber still needs the slot. Rescans
  /// the member table only when the cached slowest cursor would be lapped.
  bool can_publish() noexcept;
  /// publish writes one message (the gather list, at most max_payload bytes: checked by
  /// the caller) and makes it visible.
  void publish(const_buffers msg) noexcept;
  /// readers_to_wake is called after publish(): whether subscribers went to sleep since
  /// the last wake-up, and so who should wake them (see reader_wake). A burst of messages
  /// costs one wake-up per sleep, not one per message.
  reader_wake readers_to_wake() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    auto armed = atom(v_.control->readers_armed);
    if (armed.load(std::memory_order_relaxed) == 0 || armed.exchange(0, std::memory_order_relaxed) == 0)
      return reader_wake::none;
    return atom(v_.control->readers_sleeping).load(std::memory_order_relaxed) <= direct_wake_limit
               ? reader_wake::direct
               : reader_wake::fan_out;
  }
  void finish() noexcept {
    finished_ = 1;
    atom(v_.control->finished).store(1, std::memory_order_release);
  }
  /// verify checks what only the publisher writes: the head and the end flag.
  result<void> verify() noexcept {
    if (atom(v_.control->head).load(std::memory_order_relaxed) != head_)
      return fail("shm: broadcast head overwritten");
    if (atom(v_.control->finished).load(std::memory_order_relaxed) != finished_)
      return fail("shm: broadcast end flag changed by another process");
    return {};
  }
  const char* fault() const noexcept { return fault_; }
  void prepare_wait() noexcept {
    atom(v_.control->writers_sleeping).store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void end_wait() noexcept { atom(v_.control->writers_sleeping).store(0, std::memory_order_relaxed); }
  std::uint64_t head() const noexcept { return head_; }

 private:
  errc fail(const char* why) noexcept {
    fault_ = why;
    return errc::protocol_error;
  }
  ring_view v_{};
  std::uint64_t head_ = 0;
  std::uint64_t slowest_ = 0;  ///< no active subscriber needs a message before this one
  std::uint32_t finished_ = 0;
  const char* fault_ = nullptr;
};

/// join_broadcast registers table entry `member` as an active subscriber whose first
/// message is the current head, so that a publisher that races with the join never
/// overwrites that message under `block` (Dekker with the publisher's rescan). Returns
/// the start position. Called by the publisher's side (its service thread).
std::uint64_t join_broadcast(const ring_view& v, std::uint32_t member, std::uint32_t pid) noexcept;
/// leave_member frees table entry `member` of a broadcast ring or queue (its process
/// died or left) and clears its waiting flag. Called by the creator's service thread.
void leave_member(const ring_view& v, std::uint32_t member) noexcept;

// -- MPMC message queue -------------------------------------------------------------------
//
// A bounded MPMC queue of `capacity` slots with a sequence number per slot (the classic
// design by D. Vyukov, with claims recorded for crash recovery). Slot i starts with
// sequence i. A producer claims enqueue position p when the slot's sequence equals p, by
// a CAS on ring_control::head; it records p in its member entry's send_claim first, then
// writes size and payload and commits with sequence p + 1. A consumer claims dequeue
// position p when the sequence equals p + 1, by a CAS on ring_control::tail, records it in
// recv_claim, copies, and frees the slot for the next lap with sequence p + capacity.
// A process that dies between claim and commit leaves the slot claimed: the creator's
// service thread (which learns of the death from the member's control connection)
// resolves its claims with recover_member: a dead producer's slot is committed as
// abandoned (consumers skip it), a dead consumer's slot is freed (its message is lost).

/// queue_step is the outcome of a queue_core::try_recv.
struct queue_step {
  enum class status {
    empty,      ///< nothing committed at the dequeue position (maybe claimed, not committed)
    message,    ///< `size` bytes copied
    too_small,  ///< the next message has `size` bytes, more than the buffer (kept)
    error,      ///< impossible state (protocol_error)
  };
  status state = status::empty;
  std::size_t size = 0;
  std::uint64_t skipped = 0;  ///< abandoned slots skipped before this message
};

/// queue_core is one member's view of a queue segment.
class queue_core {
 public:
  queue_core() noexcept = default;
  queue_core(ring_view v, std::uint32_t member) noexcept : v_(v), me_(&v.table[member]) {}

  /// try_send enqueues one message (at most max_payload bytes: checked by the caller).
  /// false when the queue is full, and also when the slot sequences contradict the
  /// enqueue position: then fault() names the cause (impossible state: protocol_error).
  bool try_send(const_buffers msg) noexcept;
  /// try_recv dequeues one message into `buf` (see queue_step).
  queue_step try_recv(mutable_buffer buf) noexcept;
  /// can_send / can_recv peek whether try_send / try_recv would find a slot (no claim).
  bool can_send() const noexcept {
    std::uint64_t pos = atom(v_.control->head).load(std::memory_order_relaxed);
    return atom(v_.slot(pos)->seq).load(std::memory_order_acquire) == pos;
  }
  bool can_recv() const noexcept {
    std::uint64_t pos = atom(v_.control->tail).load(std::memory_order_relaxed);
    return atom(v_.slot(pos)->seq).load(std::memory_order_acquire) == pos + 1;
  }
  /// finished reports that the creator closed the queue.
  bool finished() const noexcept { return atom(v_.control->finished).load(std::memory_order_acquire) != 0; }
  void finish() noexcept { atom(v_.control->finished).store(1, std::memory_order_release); }
  /// try_claim reserves the next enqueue position (recorded in our send_claim); false
  /// when the queue is full or its state impossible (fault() set, as try_send). commit
  /// writes the message into the claimed slot and publishes it. try_send is the two in a
  /// row; they are separate for crash tests.
  bool try_claim(std::uint64_t& position) noexcept;
  /// fault names the cause of the last impossible state found (a static string, sticky),
  /// or nullptr.
  const char* fault() const noexcept { return fault_; }
  void commit(std::uint64_t position, const_buffers msg) noexcept;
  /// Sleep/wake handshakes: readers sleep on an empty queue, writers on a full one. The
  /// member's waiting bits let the service thread undo a dead member's count.
  void prepare_wait(bool reader) noexcept {
    std::uint32_t bit = reader ? 1u : 2u;
    atom(me_->waiting).fetch_or(bit, std::memory_order_relaxed);
    atom(reader ? v_.control->readers_sleeping : v_.control->writers_sleeping)
        .fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void end_wait(bool reader) noexcept {
    std::uint32_t bit = reader ? 1u : 2u;
    if (atom(me_->waiting).fetch_and(~bit, std::memory_order_relaxed) & bit)
      atom(reader ? v_.control->readers_sleeping : v_.control->writers_sleeping)
          .fetch_sub(1, std::memory_order_relaxed);
  }
  /// others_need_wake: after a send (readers) or a receive (writers), whether anyone of
  /// the other kind sleeps.
  bool others_need_wake(bool wake_readers) noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return atom(wake_readers ? v_.control->readers_sleeping : v_.control->writers_sleeping)
               .load(std::memory_order_relaxed) != 0;
  }
  /// verify checks our member entry's state (the creator's service frees it only after
  /// our control connection closed).
  result<void> verify() noexcept {
    if (atom(me_->state).load(std::memory_order_relaxed) !=
        static_cast<std::uint32_t>(member_state::active)) {
      fault_ = "shm: queue member entry overwritten";
      return errc::protocol_error;
    }
    return {};
  }

 private:
  queue_step error(const char* why, std::uint64_t skipped) noexcept {
    fault_ = why;
    return {queue_step::status::error, 0, skipped};
  }
  ring_view v_{};
  member_entry* me_ = nullptr;
  const char* fault_ = nullptr;
};

/// join_queue registers table entry `member` as an active queue member.
void join_queue(const ring_view& v, std::uint32_t member, std::uint32_t pid) noexcept;
/// recover_member resolves the claims of dead member `member` (see above). Returns false
/// while a claim cannot be resolved yet (another member's claim on the same position is
/// still in flight): call again later. Marks the entry free once everything is resolved.
bool recover_member(const ring_view& v, std::uint32_t member) noexcept;

}  // namespace strata::shm
