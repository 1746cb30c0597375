// shm — rings in memory shared between processes: the lowest-latency IPC strata has.
// Data moves by plain loads and stores in a memfd that both sides map; the kernel is
// involved only to set a connection up and to wake a side that went to sleep, so a busy
// ring makes no system call at all.
//
// Three shapes, each with its own row:
//   stream     a duplex byte stream: two SPSC byte rings, one per direction.
//              row: provides connection-based stream reliable ordered dup_free ipc p2p
//                   any-process duplex
//   broadcast  one publisher, N subscribers; every subscriber sees every message and the
//              publisher writes each message once (its cost does not grow with N). A
//              slow subscriber either blocks the publisher (policy block) or loses the
//              oldest messages and is told how many (policy overwrite).
//              row: provides connection-based message ordered dup_free ipc multicast
//                   any-process simplex max_message; reliable under block only
//   queue      an MPMC message queue: any number of member processes send into and
//              receive from one bounded ring; each message is received once.
//              row: provides connection-less message reliable ordered dup_free ipc mpmc
//                   any-process duplex max_message
//
// spec: shm:NAME (connect a stream), shm-listen:NAME (accept streams),
//       shm-pub:NAME (publish), shm-sub:NAME (subscribe), shm-queue:NAME (join or create)
//
// Set-up (rendezvous): NAME is a Unix socket (`@strata-shm-NAME` in the abstract
// namespace, or `/path`, `./path`, `@abstract` as written). The side that owns the name
// creates the memfd (size sealed) and the eventfds for each connecting process and sends
// them over that connection (SCM_RIGHTS). The connection then stays open for the life of
// the ring: the kernel closes it when a process dies, even on SIGKILL, which is how the
// other side learns of the death (errc::peer_died, after any data written before it).
//
// Wake-ups: a side that finds its ring empty (or full) spins briefly (adaptive, bounded,
// default at most 20 µs), then announces that it sleeps (Dekker handshake, see
// shm_ring.hpp) and waits on a private epoll set holding its eventfd and the control
// connection. The other side writes the eventfd only when the flag says someone sleeps.
// Option `spin` never sleeps: the waiting task polls the ring between turns of the event
// loop (other tasks still run) until its deadline.
//
// Trust: everything read from shared memory is validated (shm_ring.hpp); a peer can make
// our calls fail with protocol_error but cannot make us read or write out of bounds or
// hang past a deadline. docs/protocols/shm.md has the layout and the full contract.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"

namespace strata::shm {

class queue_core;  // the ring algorithm (src/transport/shm_ring.hpp)

/// overflow_policy is what a broadcast producer does when the slowest subscriber is a
/// whole ring behind: wait for it (block) or overwrite its oldest messages (overwrite).
enum class overflow_policy : std::uint32_t { block = 0, overwrite = 1 };

// Bounds on the sizes a segment may declare (also the bounds of the spec parameters).
inline constexpr std::uint64_t min_ring_bytes = 4096;
inline constexpr std::uint64_t max_ring_bytes = std::uint64_t{1} << 30;
inline constexpr std::uint64_t min_slots = 2;
inline constexpr std::uint64_t max_slots = std::uint64_t{1} << 20;
inline constexpr std::uint64_t max_slot_payload = std::uint64_t{1} << 24;
inline constexpr std::uint32_t max_members = 256;
/// max_segment_bytes bounds a whole segment (rings, slots and tables).
inline constexpr std::uint64_t max_segment_bytes = std::uint64_t{4} << 30;

/// stream_row is the shm stream's capability declaration.
inline constexpr capability_row stream_row{
    .name = "shm",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::stream,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::p2p,
                       .sharing = sharing::any_process,
                       .direction = direction::duplex},
    .passed = {},
};

/// broadcast_row is the broadcast ring's declaration for the default policy (block,
/// reliable); the pipeline refines `reliable` and `max_message` from the parameters.
inline constexpr capability_row broadcast_row{
    .name = "shm-broadcast",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::based,
                       .unit = unit::message,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::multicast,
                       .sharing = sharing::any_process,
                       .direction = direction::simplex,
                       .max_message = 4096},
    .passed = {},
};

/// queue_row is the MPMC queue's declaration (max_message refined from the parameters).
inline constexpr capability_row queue_row{
    .name = "shm-queue",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::less,
                       .unit = unit::message,
                       .reliable = true,
                       .ordered = true,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::mpmc,
                       .sharing = sharing::any_process,
                       .direction = direction::duplex,
                       .max_message = 4096},
    .passed = {},
};

/// wait_options say how a side waits for its peer.
struct wait_options {
  /// spin: never sleep; poll the ring between turns of the event loop (co_await yield())
  /// until the deadline. Lowest latency, one core busy while waiting.
  bool spin = false;
  /// spin_limit bounds the adaptive spin before sleeping in the default mode (0: sleep
  /// at once). The spin adapts between 1 µs and this limit: it grows when spinning found
  /// the peer's answer and shrinks when it did not.
  std::chrono::nanoseconds spin_limit = std::chrono::microseconds(20);
  /// recheck bounds each sleep: a sleeping side wakes at least this often and validates
  /// the ring again, so that a segment another process rewrote (a swallowed wake-up,
  /// indices that keep both sides waiting) ends in protocol_error rather than a hang.
  /// Spin mode re-validates every 1024 bursts of polls.
  std::chrono::milliseconds recheck = std::chrono::milliseconds(250);
};

/// default_ring_bytes is the default size of each direction of a stream.
inline constexpr std::size_t default_ring_bytes = 256 * 1024;

/// listen_options tune a stream listener (the ring size is the listener's choice).
struct listen_options {
  std::size_t ring_bytes = default_ring_bytes;  ///< per direction: a power of two, 4 KiB..1 GiB
  int backlog = 128;
  wait_options wait{};  ///< how accepted streams wait
};

/// rendezvous_address maps NAME to the Unix socket of the rendezvous: "/p" or "./p" is
/// a path, "@n" the abstract name n, anything else the abstract name "strata-shm-NAME".
/// Errors: invalid_argument (empty, NUL byte, too long).
result<address> rendezvous_address(std::string_view name);

/// stream is one end of a duplex shm byte stream; the contract is core/stream.hpp's
/// byte_stream. Errors beyond the contract: peer_died (the peer process died without
/// closing: sticky; bytes it wrote before are delivered first), protocol_error (the peer
/// left impossible ring state: sticky), broken (write after the peer closed its end).
/// One task at a time per direction. Not thread-safe: use it on the loop that made it.
struct stream_factory;

class stream {
 public:
  static constexpr properties capabilities = transport_properties(stream_row);

  stream() noexcept;
  stream(stream&&) noexcept;
  stream& operator=(stream&&) noexcept;
  /// ~stream closes like close(): the peer reads end_of_stream after our last byte.
  ~stream();

  /// read_some waits for at least one byte and returns 1..buf.size() bytes.
  task<result<std::size_t>> read_some(mutable_buffer buf, deadline dl);
  /// write copies every byte into the ring, waiting for room as needed. A timeout or
  /// cancel after part of it was written fails the write direction for good.
  task<result<void>> write(const_buffers bufs, deadline dl);
  /// shutdown_write: the peer reads end_of_stream after the last byte. Does not block.
  task<result<void>> shutdown_write(deadline dl);
  /// close finishes our direction, tells the peer's writer that nobody reads any more
  /// (its writes fail with broken), wakes our own pending reader and writer (closed) and
  /// unmaps the rings. Does not wait for the peer: bytes it sent and we did not read are
  /// dropped, ours stay readable for it. Afterwards every call fails with closed.
  task<result<void>> close(deadline dl);

  /// local_address / peer_address are those of the control connection (the rendezvous
  /// name on the side that connected, an unnamed socket on the accepting side).
  result<address> local_address() const;
  result<address> peer_address() const;
  /// ring_bytes is the capacity of each direction.
  std::size_t ring_bytes() const noexcept;
  /// fault names the cause of a protocol_error this stream reported (e.g. "shm: ring
  /// head moved backwards"); empty when there was none.
  std::string_view fault() const noexcept;

  struct state;

 private:
  friend struct stream_factory;
  friend task<result<stream>> connect(std::string_view, deadline, wait_options);
  explicit stream(std::unique_ptr<state> s) noexcept;
  std::unique_ptr<state> s_;
};

/// connect asks the shm listener NAME for a stream before `dl`.
/// Errors: timed_out, operation_canceled, ENOENT/ECONNREFUSED (nobody listens),
/// protocol_error (the name serves another kind of ring, or its answer is malformed),
/// invalid_argument (bad NAME), system errors (mmap, EMFILE...).
task<result<stream>> connect(std::string_view name, deadline dl, wait_options options = {});

/// listener accepts shm streams at NAME: each accepted process gets its own rings.
class listener {
 public:
  listener() noexcept;
  listener(listener&&) noexcept;
  listener& operator=(listener&&) noexcept;
  ~listener();

  /// bind creates the rendezvous socket NAME. Errors: EADDRINUSE (a live listener
  /// has the name), invalid_argument (bad NAME or ring size).
  static result<listener> bind(std::string_view name, listen_options options = {});
  /// accept waits for the next process whose rings are ready and hands them over. Each
  /// connector is served in its own task (handshaking_listener): one that does not send
  /// its request within 2 s, asks for another kind of ring or cannot be given rings
  /// (memfd, EMFILE) is dropped and counted in handshakes(), delaying nobody else.
  /// Errors: timed_out, operation_canceled, closed.
  task<result<stream>> accept(deadline dl);
  /// handshakes counts what became of accepted connectors.
  handshake_stats handshakes() const;
  result<address> local_address() const;
  /// close stops listening (a pending accept completes with closed).
  void close() noexcept;

  struct state;

 private:
  std::unique_ptr<state> s_;
};

// -- broadcast ------------------------------------------------------------------------------

/// publish_options tune a broadcast ring (the publisher's choice).
struct publish_options {
  overflow_policy policy = overflow_policy::block;
  std::size_t slots = 256;             ///< messages the ring holds: a power of two, 2..2^20
  std::size_t max_message = 4096;      ///< largest message, 1..16 MiB
  std::uint32_t max_subscribers = 64;  ///< 1..256
  wait_options wait{};
};

/// delivery is what subscriber::receive returns.
struct delivery {
  std::size_t size = 0;    ///< bytes of this message
  std::uint64_t lost = 0;  ///< messages skipped right before it (policy overwrite)
};

/// publisher is the single producer of a broadcast ring, bound to NAME. A service thread
/// owned by the publisher answers subscribers joining at NAME and notices their deaths;
/// the publisher itself never waits for them except, under block, for room.
class publisher {
 public:
  static constexpr properties capabilities = transport_properties(broadcast_row);

  publisher() noexcept;
  publisher(publisher&&) noexcept;
  publisher& operator=(publisher&&) noexcept;
  ~publisher();

  /// bind creates the ring and the rendezvous NAME. Errors: EADDRINUSE, invalid_argument.
  static result<publisher> bind(std::string_view name, publish_options options = {});

  /// send publishes one message to every subscriber. Under block it waits while the
  /// slowest live subscriber is a whole ring behind (a subscriber that dies is dropped
  /// and stops holding it back); under overwrite it never waits.
  /// Errors: message_too_large (nothing sent), timed_out, operation_canceled, closed.
  task<result<void>> send(const_buffers msg, deadline dl);
  /// recv receives nothing: a publisher has no incoming direction. It waits until this
  /// publisher finished (shutdown_write or close) and then reports end_of_stream, so a
  /// relay reading both directions ends when the publisher's input does.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// shutdown_write ends the broadcast: subscribers read end_of_stream after the last
  /// message. The name stays bound until close.
  task<result<void>> shutdown_write(deadline dl);
  /// close ends the broadcast, stops the service thread (subscribers' control
  /// connections close) and releases the ring.
  task<result<void>> close(deadline dl);

  /// subscribers is the number of subscribers attached now.
  std::size_t subscribers() const noexcept;
  /// sent is the number of messages published so far.
  std::uint64_t sent() const noexcept;
  result<address> local_address() const;
  properties runtime_capabilities() const noexcept;

  struct state;

 private:
  explicit publisher(std::unique_ptr<state> s) noexcept;
  std::unique_ptr<state> s_;
};

/// subscriber is one reader of a broadcast ring. It starts with the first message
/// published after it joined.
class subscriber {
 public:
  static constexpr properties capabilities = transport_properties(broadcast_row);

  subscriber() noexcept;
  subscriber(subscriber&&) noexcept;
  subscriber& operator=(subscriber&&) noexcept;
  ~subscriber();

  /// receive waits for the next message and copies it into `buf`; `lost` counts the
  /// messages the publisher overwrote before we read them (always 0 under block).
  /// Errors: message_too_large (the message is kept: retry with a larger buffer, unless
  /// it is overwritten meanwhile), end_of_stream (the publisher finished; sticky),
  /// peer_died (the publisher died; sticky, after the messages it published),
  /// protocol_error, timed_out, operation_canceled, closed.
  task<result<delivery>> receive(mutable_buffer buf, deadline dl);
  /// recv is receive without the loss count (see loss_count()).
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// send: not_supported (a subscriber only receives).
  task<result<void>> send(const_buffers msg, deadline dl);
  /// shutdown_write: not_supported.
  task<result<void>> shutdown_write(deadline dl);
  /// close leaves the ring (the publisher stops waiting for us) and releases it.
  task<result<void>> close(deadline dl);

  /// loss_count is the total of messages lost so far.
  std::uint64_t loss_count() const noexcept;
  /// fault names the cause of a protocol_error (see stream::fault).
  std::string_view fault() const noexcept;
  /// max_message is the largest message of the ring.
  std::size_t max_message() const noexcept;
  result<address> peer_address() const;
  properties runtime_capabilities() const noexcept;

  struct state;

 private:
  friend task<result<subscriber>> subscribe(std::string_view, deadline, wait_options);
  explicit subscriber(std::unique_ptr<state> s) noexcept;
  std::unique_ptr<state> s_;
};

/// subscribe joins the broadcast ring NAME before `dl`. Errors: as connect, plus EUSERS
/// when the ring has max_subscribers already.
task<result<subscriber>> subscribe(std::string_view name, deadline dl, wait_options options = {});

/// loss_observer is told of messages that a subscriber of this process lost (policy
/// overwrite): `name` is the NAME it subscribed to, `lost` the messages skipped right
/// before the one it just received. Called on the subscriber's thread, from receive.
using loss_observer = void (*)(std::string_view name, std::uint64_t lost);
/// observe_losses installs `observer` for every subscriber of this process (nullptr:
/// none). For programs that hold subscribers behind type erasure (the CLI's
/// any_message), where loss_count() is out of reach.
void observe_losses(loss_observer observer) noexcept;

// -- MPMC queue -----------------------------------------------------------------------------

/// queue_role limits what a queue member does (a member may do both).
enum class queue_role { both, send, recv };

/// queue_options tune a queue. slots, max_message and max_members apply when this call
/// creates the queue; a member that joins an existing queue gets the creator's.
struct queue_options {
  std::size_t slots = 256;         ///< a power of two, 2..2^20
  std::size_t max_message = 4096;  ///< 1..16 MiB
  std::uint32_t max_members = 64;  ///< 1..256
  queue_role role = queue_role::both;
  wait_options wait{};
};

/// queue is one member of an MPMC message queue. The member that created the queue
/// serves its name (a service thread) and recovers the claims of members that die
/// mid-message: a producer's half-written slot is skipped, a consumer's half-read slot
/// freed. The queue lives as long as its creator: when it closes, members read
/// end_of_stream once the queue is empty; when it dies, peer_died.
class queue {
 public:
  static constexpr properties capabilities = transport_properties(queue_row);

  queue() noexcept;
  queue(queue&&) noexcept;
  queue& operator=(queue&&) noexcept;
  ~queue();

  /// send enqueues one message, waiting while the queue is full.
  /// Errors: message_too_large (nothing sent), not_supported (role recv), timed_out,
  /// operation_canceled, closed, peer_died (the creator died while we waited).
  task<result<void>> send(const_buffers msg, deadline dl);
  /// recv dequeues one message, waiting while the queue is empty. message_too_large
  /// leaves the message queued (another member may take it). Errors: as send, plus
  /// end_of_stream (the creator closed and the queue is empty). Role send: waits until
  /// this member finished (shutdown_write), then end_of_stream.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// shutdown_write: this member sends no more (later sends fail with closed).
  task<result<void>> shutdown_write(deadline dl);
  /// close leaves the queue; the creator's close also ends it for everyone.
  task<result<void>> close(deadline dl);

  /// creator reports whether this member created the queue (and serves it).
  bool creator() const noexcept;
  /// fault names the cause of a protocol_error (see stream::fault).
  std::string_view fault() const noexcept;
  /// skipped counts the slots of dead producers this member skipped.
  std::uint64_t skipped() const noexcept;
  std::size_t max_message() const noexcept;
  properties runtime_capabilities() const noexcept;
  /// core gives the ring algorithm itself, for tests that stage a crash mid-message.
  queue_core& core() noexcept;

  struct state;

 private:
  friend task<result<queue>> open_queue(std::string_view, deadline, queue_options);
  explicit queue(std::unique_ptr<state> s) noexcept;
  std::unique_ptr<state> s_;
};

/// open_queue joins the queue NAME, or creates it when nobody serves the name.
/// Errors: as connect, plus EUSERS when the queue has max_members already.
task<result<queue>> open_queue(std::string_view name, deadline dl, queue_options options = {});

}  // namespace strata::shm
