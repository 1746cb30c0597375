// mq — POSIX message queues (mq_overview(7)): named kernel queues of whole messages that
// any process on the host may open, with a priority per message.
//
// The property it adds: connection-less, reliable messages up to the queue's msgsize,
// received highest priority first (oldest first within a priority), shared by any number
// of senders and receivers (mpmc). A queue descriptor is pollable on Linux, so every wait
// goes through the event loop (a pollable_fd), never a blocking call.
//
// row: requires nothing (bottom layer)
//      provides connection-less message reliable dup_free ipc mpmc any-process duplex
//               priority_ordered max_message=8192 (the queue's msgsize)
// spec: mq:/NAME (send to a queue; reply=/OTHER also receives from /OTHER),
//       mq-listen:/NAME (create and receive from a queue; reply=/OTHER also sends to it)
//
// A queue has no connection: mq::endpoint and mq::listener (at the end of this file) give
// the spec forms their socat-like shape, a pair of queues per conversation and a
// listener that hands out one endpoint at a time.
//
// Limits: the kernel bounds a queue's maxmsg by /proc/sys/fs/mqueue/msg_max and its
// msgsize by /proc/sys/fs/mqueue/msgsize_max (10 and 8192 on many hosts, even for root
// without CAP_SYS_RESOURCE in the initial namespace); asking more fails with EINVAL,
// which open() reports as invalid_argument and explain_attributes() turns into a
// sentence naming the limit. The number of queues is bounded by queues_max (ENOSPC) and
// their memory per user by RLIMIT_MSGQUEUE (EMFILE from the kernel; open() reports
// cause::mq_memory_limit when that limit, not the descriptor limit, was hit).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/capability.hpp"
#include "strata/core/stream.hpp"
#include "strata/runtime/pollable_fd.hpp"

namespace strata::mq {

/// default_message_size is the msgsize of a queue created without one (the usual
/// system limit).
inline constexpr std::size_t default_message_size = 8192;

/// row is a message queue's capability declaration. Messages of one priority keep their
/// order; a higher priority overtakes, so the row says priority_ordered, not ordered.
inline constexpr capability_row row{
    .name = "mq",
    .required = {},
    .required_value = {},
    .provided = prop_set::all(),
    .provided_value = {.connection = connection::less,
                       .unit = unit::message,
                       .reliable = true,
                       .ordered = false,
                       .dup_free = true,
                       .domain = domain::ipc,
                       .topology = topology::mpmc,
                       .sharing = sharing::any_process,
                       .direction = direction::duplex,
                       .priority_ordered = true,
                       .max_message = default_message_size},
    .passed = {},
};

/// max_priority is the highest message priority Linux accepts (MQ_PRIO_MAX - 1).
inline constexpr unsigned max_priority = 32767;

/// attributes of a queue, fixed when it is created.
struct attributes {
  long max_messages = 10;                                       ///< mq_maxmsg
  long message_size = static_cast<long>(default_message_size);  ///< mq_msgsize, bytes
};

/// system_limits are the host's bounds on new queues (/proc/sys/fs/mqueue).
struct system_limits {
  long msg_max = 0;      ///< largest maxmsg (msg_max)
  long msgsize_max = 0;  ///< largest msgsize (msgsize_max)
  long queues_max = 0;   ///< queues on the host (queues_max)
};

/// read_system_limits reads /proc/sys/fs/mqueue. Errors: ENOENT without mqueue support.
result<system_limits> read_system_limits();

/// explain_attributes says in one sentence why the kernel would refuse to create a queue
/// with `attr`, e.g. "maxmsg 20 exceeds the system limit 10
/// (/proc/sys/fs/mqueue/msg_max)"; empty when they are within the limits.
std::string explain_attributes(const attributes& attr);

/// access says which directions a queue descriptor is opened for.
enum class access : std::uint8_t { send, receive, both };

/// open_options tune queue::open.
struct open_options {
  access mode = access::both;
  bool create = false;        ///< O_CREAT: create the queue when it does not exist
  bool exclusive = false;     ///< O_EXCL: with create, fail (EEXIST) when it exists
  mode_t permissions = 0600;  ///< of a created queue (before the umask)
  attributes attr = {};       ///< of a created queue; an existing queue keeps its own
  unsigned priority = 0;      ///< the priority of send() calls that name none
};

/// message_info is what a receive returns: the message's size and priority.
struct message_info {
  std::size_t size = 0;
  unsigned priority = 0;
};

/// queue is one open descriptor of a message queue. It is a message_socket
/// (core/stream.hpp) whose send and recv both use this queue: used alone it is a work
/// queue (many processes send, many receive); a two-way conversation needs two queues
/// (mq::duplex). Move-only; a moved-from queue answers closed. One thread at a time.
class queue {
 public:
  static constexpr properties capabilities = transport_properties(row);

  queue() noexcept = default;
  queue(queue&& other) noexcept;
  queue& operator=(queue&& other) noexcept;
  ~queue();

  /// open opens (or creates) the queue `name`, which is '/' followed by 1 to 255 bytes
  /// without another '/'. The descriptor is non-blocking and close-on-exec.
  /// Errors: invalid_argument (a bad name, or attributes beyond the system limits: see
  /// explain_attributes), ENOENT (missing and !create), EEXIST (exclusive), EACCES,
  /// ENOSPC (queues_max reached), EMFILE (descriptors exhausted),
  /// cause::mq_memory_limit (creating it would exceed the user's RLIMIT_MSGQUEUE bytes).
  static result<queue> open(std::string_view name, open_options options = {});

  /// send queues `msg` (the gather list as one message) with the default priority.
  task<result<void>> send(const_buffers msg, deadline dl) { return send(msg, priority_, dl); }
  /// send queues `msg` with `priority` (0..max_priority), waiting while the queue is
  /// full. Errors: message_too_large (over msgsize; nothing sent), invalid_argument
  /// (priority), not_supported (opened receive-only), closed, timed_out /
  /// operation_canceled (nothing sent).
  task<result<void>> send(const_buffers msg, unsigned priority, deadline dl);
  /// recv receives the oldest message of the highest priority; see recv_with_priority.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// recv_with_priority receives the oldest message of the highest priority and tells
  /// its priority. A buffer of at least msgsize bytes is filled by the kernel directly;
  /// a smaller one goes through an internal msgsize buffer, and a message that does not
  /// fit it fails with message_too_large and is kept: the next recv returns it first.
  /// Errors: message_too_large, not_supported (opened send-only), closed, timed_out /
  /// operation_canceled (nothing consumed).
  task<result<message_info>> recv_with_priority(mutable_buffer buf, deadline dl);
  /// close closes the descriptor (the queue and its messages stay until unlinked);
  /// tasks waiting on it resume with closed. Never blocks. Errors: closed.
  task<result<void>> close(deadline dl);

  /// unlink removes the queue's name; it lives on until every descriptor is closed.
  result<void> unlink();
  /// get_attributes reads the queue's maxmsg and msgsize.
  result<attributes> get_attributes() const;
  /// queued is the number of messages in the queue now.
  result<std::size_t> queued() const;
  /// wait_message waits until the queue holds a message (or `dl`), without taking it;
  /// another receiver of the queue may take it first. Errors: timed_out,
  /// operation_canceled, closed (the queue was closed meanwhile), system errors.
  task<result<void>> wait_message(deadline dl);
  /// max_message is the queue's msgsize.
  std::size_t max_message() const noexcept { return message_size_; }
  /// runtime_capabilities is row's with this queue's msgsize.
  properties runtime_capabilities() const noexcept;
  const std::string& name() const noexcept { return name_; }
  int native_handle() const noexcept { return fd_.get(); }
  bool is_open() const noexcept { return fd_.is_open(); }

 private:
  void release_fd() noexcept;

  pollable_fd fd_;  // an mqd_t is a descriptor on Linux (mq_close is close)
  access mode_ = access::both;
  unsigned priority_ = 0;
  std::size_t message_size_ = 0;
  std::string name_;
  std::vector<std::byte> scratch_;       // msgsize bytes for receives into small buffers
  std::optional<message_info> pending_;  // a received message kept in scratch_
  std::vector<std::byte> gather_;        // a gather list sent as one message
};

static_assert(message_socket<queue>);

/// unlink removes the queue `name`. Errors: ENOENT, EACCES, invalid_argument.
result<void> unlink(std::string_view name);

/// duplex is a two-way message_socket over two queues: send() goes to `out`, recv()
/// comes from `in`. Each side of a conversation opens the same two queues the other way
/// round. Its max_message is the smaller msgsize of the two.
class duplex {
 public:
  static constexpr properties capabilities = transport_properties(row);

  duplex() noexcept = default;
  duplex(queue out, queue in) noexcept : out_(std::move(out)), in_(std::move(in)) {}

  task<result<void>> send(const_buffers msg, deadline dl) { return out_.send(msg, dl); }
  task<result<void>> send(const_buffers msg, unsigned priority, deadline dl) {
    return out_.send(msg, priority, dl);
  }
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) { return in_.recv(buf, dl); }
  task<result<message_info>> recv_with_priority(mutable_buffer buf, deadline dl) {
    return in_.recv_with_priority(buf, dl);
  }
  /// close closes both descriptors. Errors: closed.
  task<result<void>> close(deadline dl);
  properties runtime_capabilities() const noexcept;

  queue& out() noexcept { return out_; }
  queue& in() noexcept { return in_; }

 private:
  queue out_;
  queue in_;
};

static_assert(message_socket<duplex>);

// -- endpoints and listeners: the queue pairs of `mq:` and `mq-listen:` ---------------------

namespace detail {
struct created_queues;
struct gate;
}  // namespace detail

/// endpoint_options name the queues of one side of a conversation and how they are made.
struct endpoint_options {
  std::string name{};      ///< the queue /NAME
  std::string reply{};     ///< the queue /OTHER for the other direction; empty: one direction
  unsigned priority = 0;   ///< of every message sent (so the messages keep their order)
  bool create = false;     ///< connect: create /NAME when missing (a listener always may)
  bool exclusive = false;  ///< listen: fail (EEXIST) when /NAME already exists
  attributes attr = {};    ///< of the queues created here
  bool unlink = true;      ///< unlink the queues created here once everything made from them is closed
};

/// endpoint is one side of a conversation over a pair of queues: send() goes to one
/// queue, recv() comes from the other, and either may be missing (the direction then
/// answers not_supported). It is a message_socket, ordered (one priority for every
/// message), duplex with both queues, simplex otherwise. Move-only.
class endpoint {
 public:
  static constexpr properties capabilities = transport_properties(row);

  endpoint() noexcept = default;
  endpoint(endpoint&&) noexcept = default;
  endpoint& operator=(endpoint&&) = delete;
  ~endpoint();

  /// send queues `msg`; see queue::send. not_supported without a sending queue.
  task<result<void>> send(const_buffers msg, deadline dl);
  /// recv receives the next message; see queue::recv. not_supported without a receiving
  /// queue.
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl);
  /// close closes both queues (unlinking those created for it once nothing else uses
  /// them) and lets its listener hand out the next endpoint. Never blocks. Errors: closed.
  task<result<void>> close(deadline dl);
  /// runtime_capabilities is row's, ordered, with this pair's direction and max_message.
  properties runtime_capabilities() const noexcept;

 private:
  friend result<endpoint> connect(const endpoint_options& options);
  friend class listener;
  endpoint(queue out, queue in, std::shared_ptr<detail::created_queues> owner,
           std::shared_ptr<detail::gate> gate);
  void release() noexcept;

  queue out_;
  queue in_;
  std::shared_ptr<detail::created_queues> owner_;
  std::shared_ptr<detail::gate> gate_;
  bool can_send_ = false;
  bool can_recv_ = false;
  bool closed_ = false;
};

static_assert(message_socket<endpoint>);

/// connect opens /NAME for sending (created when missing with options.create) and, with
/// options.reply, /OTHER for receiving (created when missing): the `mq:` side.
/// Errors: as queue::open.
result<endpoint> connect(const endpoint_options& options);

/// listener is the `mq-listen:` side: it creates /NAME when missing (and /OTHER with
/// options.reply) and its accept waits for the first message in /NAME, then returns an
/// endpoint receiving from /NAME (and sending to /OTHER). A queue has no connections, so
/// a listener hands out one endpoint at a time: the next accept waits until the previous
/// endpoint is closed. Move-only; one thread.
class listener {
 public:
  listener() noexcept = default;
  listener(listener&&) noexcept = default;
  listener& operator=(listener&&) noexcept = default;
  ~listener();

  /// open creates or opens the queues. Errors: as queue::open (EEXIST with exclusive).
  static result<listener> open(const endpoint_options& options);
  /// accept waits until the previous endpoint is closed and a message is queued in /NAME,
  /// then returns a new endpoint. Errors: closed (close() ran), timed_out,
  /// operation_canceled, system errors.
  task<result<endpoint>> accept(deadline dl);
  /// close ends the listener: a pending or later accept returns closed. The queues it
  /// created are unlinked once its endpoints are closed too.
  void close() noexcept;

 private:
  endpoint_options options_;
  queue watch_;
  std::shared_ptr<detail::created_queues> owner_;
  std::shared_ptr<detail::gate> gate_;
};

}  // namespace strata::mq
