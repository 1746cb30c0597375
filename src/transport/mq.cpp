#include "strata/transport/mq.hpp"

#include <fcntl.h>
#include <mqueue.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "strata/runtime/event.hpp"
#include "strata/runtime/event_loop.hpp"

namespace strata::mq {
namespace {

constexpr const char* limits_dir = "/proc/sys/fs/mqueue/";

bool valid_name(std::string_view name) noexcept {
  return name.size() >= 2 && name.size() <= NAME_MAX + 1 && name[0] == '/' &&
         name.find('/', 1) == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

// descriptor_available tells whether the process can still open a descriptor (mq_open
// reports both RLIMIT_NOFILE and RLIMIT_MSGQUEUE as EMFILE).
bool descriptor_available() noexcept {
  int probe = ::eventfd(0, EFD_CLOEXEC);
  if (probe < 0) return false;
  ::close(probe);
  return true;
}

result<long> read_limit(const char* file) {
  std::ifstream in(std::string(limits_dir) + file);
  long value = 0;
  if (!(in >> value)) return unexpected(std::make_error_code(std::errc::no_such_file_or_directory));
  return value;
}

}  // namespace

result<system_limits> read_system_limits() {
  system_limits limits;
  auto msg_max = read_limit("msg_max");
  auto msgsize_max = read_limit("msgsize_max");
  auto queues_max = read_limit("queues_max");
  if (!msg_max) return unexpected(msg_max.error());
  if (!msgsize_max) return unexpected(msgsize_max.error());
  limits.msg_max = *msg_max;
  limits.msgsize_max = *msgsize_max;
  limits.queues_max = queues_max ? *queues_max : 0;
  return limits;
}

std::string explain_attributes(const attributes& attr) {
  if (attr.max_messages < 1) return "maxmsg must be at least 1, got " + std::to_string(attr.max_messages);
  if (attr.message_size < 1) return "msgsize must be at least 1, got " + std::to_string(attr.message_size);
  auto limits = read_system_limits();
  if (!limits) return {};
  if (attr.max_messages > limits->msg_max) {
    return "maxmsg " + std::to_string(attr.max_messages) + " exceeds the system limit " +
           std::to_string(limits->msg_max) + " (" + limits_dir + "msg_max)";
  }
  if (attr.message_size > limits->msgsize_max) {
    return "msgsize " + std::to_string(attr.message_size) + " exceeds the system limit " +
           std::to_string(limits->msgsize_max) + " (" + limits_dir + "msgsize_max)";
  }
  return {};
}

// -- queue --------------------------------------------------------------------------------

queue::queue(queue&& other) noexcept
    : fd_(std::move(other.fd_)),
      mode_(other.mode_),
      priority_(other.priority_),
      message_size_(other.message_size_),
      name_(std::move(other.name_)),
      scratch_(std::move(other.scratch_)),
      pending_(std::exchange(other.pending_, std::nullopt)),
      gather_(std::move(other.gather_)) {}

queue& queue::operator=(queue&& other) noexcept {
  if (this != &other) {
    fd_ = std::move(other.fd_);
    mode_ = other.mode_;
    priority_ = other.priority_;
    message_size_ = other.message_size_;
    name_ = std::move(other.name_);
    scratch_ = std::move(other.scratch_);
    pending_ = std::exchange(other.pending_, std::nullopt);
    gather_ = std::move(other.gather_);
  }
  return *this;
}

queue::~queue() { release_fd(); }

void queue::release_fd() noexcept {
  fd_.close();
  pending_.reset();
}

result<queue> queue::open(std::string_view name, open_options options) {
  if (!valid_name(name)) return errc::invalid_argument;
  if (options.priority > max_priority) return errc::invalid_argument;
  int flags = O_NONBLOCK | O_CLOEXEC;
  switch (options.mode) {
    case access::send:
      flags |= O_WRONLY;
      break;
    case access::receive:
      flags |= O_RDONLY;
      break;
    case access::both:
      flags |= O_RDWR;
      break;
  }
  if (options.create) flags |= O_CREAT;
  if (options.create && options.exclusive) flags |= O_EXCL;
  mq_attr attr{};
  attr.mq_maxmsg = options.attr.max_messages;
  attr.mq_msgsize = options.attr.message_size;
  std::string path(name);
  mqd_t fd = ::mq_open(path.c_str(), flags, options.permissions, options.create ? &attr : nullptr);
  if (fd == static_cast<mqd_t>(-1)) {
    int err = errno;
    // EINVAL here means attributes the kernel refuses (the name was checked above).
    if (err == EINVAL) return errc::invalid_argument;
    // EMFILE also means that creating the queue would exceed the user's RLIMIT_MSGQUEUE
    // bytes; when a descriptor can still be allocated, the descriptor limit was not it.
    if (err == EMFILE && options.create && descriptor_available())
      return unexpected(make_error_code(cause::mq_memory_limit));
    return unexpected(from_errno(err));
  }
  mq_attr actual{};
  if (::mq_getattr(fd, &actual) < 0) {
    int err = errno;
    ::mq_close(fd);
    return unexpected(from_errno(err));
  }
  queue q;
  q.fd_ = pollable_fd(fd);
  q.mode_ = options.mode;
  q.priority_ = options.priority;
  q.message_size_ = static_cast<std::size_t>(actual.mq_msgsize);
  q.name_ = std::move(path);
  return q;
}

task<result<void>> queue::send(const_buffers msg, unsigned priority, deadline dl) {
  if (!fd_) co_return errc::closed;
  if (mode_ == access::receive) co_return errc::not_supported;
  if (priority > max_priority) co_return errc::invalid_argument;
  std::size_t size = msg.total_size();
  if (size > message_size_) co_return errc::message_too_large;
  auto view = msg.view();
  static constexpr char empty = 0;
  const char* data = &empty;
  if (view.size() == 1 && size > 0) {
    data = reinterpret_cast<const char*>(view[0].data());
  } else if (size > 0) {
    // The kernel takes one buffer per message: gather into the scratch buffer.
    gather_.clear();
    msg.copy_to(gather_);
    data = reinterpret_cast<const char*>(gather_.data());
  }
  const int fd = fd_.get();
  auto sent = co_await fd_.perform_write(
      [&]() -> ssize_t { return ::mq_send(fd, data, size, priority) == 0 ? 0 : -1; }, dl);
  if (!sent) co_return sent.error();
  co_return result<void>{};
}

task<result<std::size_t>> queue::recv(mutable_buffer buf, deadline dl) {
  auto r = co_await recv_with_priority(buf, dl);
  if (!r) co_return unexpected(r.error());
  co_return r->size;
}

task<result<message_info>> queue::recv_with_priority(mutable_buffer buf, deadline dl) {
  if (!fd_) co_return errc::closed;
  if (mode_ == access::send) co_return errc::not_supported;
  if (pending_) {
    if (pending_->size > buf.size()) co_return errc::message_too_large;
    std::memcpy(buf.data(), scratch_.data(), pending_->size);
    co_return *std::exchange(pending_, std::nullopt);
  }
  // mq_receive refuses (EMSGSIZE) any buffer smaller than msgsize, whatever the message.
  bool direct = buf.size() >= message_size_;
  if (!direct && scratch_.size() < message_size_) scratch_.resize(message_size_);
  const int fd = fd_.get();
  unsigned priority = 0;
  char* target = reinterpret_cast<char*>(direct ? buf.data() : scratch_.data());
  const std::size_t room = direct ? buf.size() : message_size_;
  auto n = co_await fd_.perform_read([&] { return ::mq_receive(fd, target, room, &priority); }, dl);
  if (!n) co_return unexpected(n.error());
  message_info info{*n, priority};
  if (!direct) {
    if (info.size > buf.size()) {
      pending_ = info;  // kept in scratch_ for the next recv
      co_return errc::message_too_large;
    }
    std::memcpy(buf.data(), scratch_.data(), info.size);
  }
  co_return info;
}

task<result<void>> queue::close(deadline) {
  if (!fd_) co_return errc::closed;
  release_fd();  // wakes tasks parked on the descriptor with `closed`
  co_return result<void>{};
}

result<void> queue::unlink() {
  if (name_.empty()) return errc::closed;
  return mq::unlink(name_);
}

result<attributes> queue::get_attributes() const {
  if (!fd_) return errc::closed;
  mq_attr a{};
  if (::mq_getattr(fd_.get(), &a) < 0) return unexpected(from_errno(errno));
  return attributes{a.mq_maxmsg, a.mq_msgsize};
}

result<std::size_t> queue::queued() const {
  if (!fd_) return errc::closed;
  mq_attr a{};
  if (::mq_getattr(fd_.get(), &a) < 0) return unexpected(from_errno(errno));
  return static_cast<std::size_t>(a.mq_curmsgs);
}

task<result<void>> queue::wait_message(deadline dl) {
  const int fd = fd_.get();
  auto n = co_await fd_.perform_read(
      [fd]() -> ssize_t {
        mq_attr a{};
        if (::mq_getattr(fd, &a) < 0) return -1;
        if (a.mq_curmsgs > 0) return static_cast<ssize_t>(a.mq_curmsgs);
        errno = EAGAIN;  // empty: wait for the queue's readiness edge
        return -1;
      },
      dl);
  if (!n) co_return n.error();
  co_return result<void>{};
}

properties queue::runtime_capabilities() const noexcept {
  auto caps = capabilities;
  if (message_size_) caps.max_message = message_size_;
  return caps;
}

result<void> unlink(std::string_view name) {
  if (!valid_name(name)) return errc::invalid_argument;
  std::string path(name);
  if (::mq_unlink(path.c_str()) < 0) return from_errno(errno);
  return {};
}

// -- duplex -------------------------------------------------------------------------------

task<result<void>> duplex::close(deadline dl) {
  if (!out_.is_open() && !in_.is_open()) co_return errc::closed;
  (void)co_await out_.close(dl);
  (void)co_await in_.close(dl);
  co_return result<void>{};
}

properties duplex::runtime_capabilities() const noexcept {
  auto caps = capabilities;
  std::size_t a = out_.max_message();
  std::size_t b = in_.max_message();
  caps.max_message = a && b ? std::min(a, b) : std::max(a, b);
  return caps;
}

// -- endpoints and listeners ------------------------------------------------------------------

namespace detail {

/// created_queues holds the names of the queues a listener or endpoint created; the last
/// of its owners to go away unlinks them.
struct created_queues {
  std::vector<std::string> names;
  bool unlink = true;
  ~created_queues() {
    if (!unlink) return;
    for (const auto& name : names) (void)mq::unlink(name);
  }
};

/// gate lets a listener hand out one endpoint at a time (one thread).
struct gate {
  bool busy = false;
  bool closed = false;
  event freed;
};

}  // namespace detail

namespace {

/// open_queue opens `name` for `mode`; with `create` it makes the queue when missing and
/// records that it did (exclusive: it must not exist).
result<queue> open_queue(const std::string& name, access mode, bool create, bool exclusive,
                         const endpoint_options& options, detail::created_queues& owner) {
  open_options open{.mode = mode, .attr = options.attr, .priority = options.priority};
  if (create) {
    open.create = open.exclusive = true;
    auto q = queue::open(name, open);
    if (q) {
      owner.names.push_back(name);
      return q;
    }
    if (exclusive || q.error() != std::errc::file_exists) return q;
    open.create = open.exclusive = false;
  }
  return queue::open(name, open);
}

task<result<void>> not_supported_void() { co_return errc::not_supported; }
task<result<std::size_t>> not_supported_size() { co_return errc::not_supported; }

}  // namespace

endpoint::endpoint(queue out, queue in, std::shared_ptr<detail::created_queues> owner,
                   std::shared_ptr<detail::gate> gate)
    : out_(std::move(out)),
      in_(std::move(in)),
      owner_(std::move(owner)),
      gate_(std::move(gate)),
      can_send_(out_.is_open()),
      can_recv_(in_.is_open()) {}

endpoint::~endpoint() { release(); }

void endpoint::release() noexcept {
  owner_.reset();
  if (gate_) {
    gate_->busy = false;
    gate_->freed.set();
    gate_.reset();
  }
}

task<result<void>> endpoint::send(const_buffers msg, deadline dl) {
  if (!can_send_ && !closed_) return not_supported_void();
  return out_.send(msg, dl);
}

task<result<std::size_t>> endpoint::recv(mutable_buffer buf, deadline dl) {
  if (!can_recv_ && !closed_) return not_supported_size();
  return in_.recv(buf, dl);
}

task<result<void>> endpoint::close(deadline dl) {
  if (closed_) co_return errc::closed;
  closed_ = true;
  if (out_.is_open()) (void)co_await out_.close(dl);
  if (in_.is_open()) (void)co_await in_.close(dl);
  release();
  co_return result<void>{};
}

properties endpoint::runtime_capabilities() const noexcept {
  auto caps = capabilities;
  caps.ordered = true;  // one priority for every message sent
  bool both = can_send_ && can_recv_;
  caps.direction = both ? direction::duplex : direction::simplex;
  std::size_t a = out_.max_message(), b = in_.max_message();
  caps.max_message = both ? std::min(a, b) : std::max(a, b);
  return caps;
}

result<endpoint> connect(const endpoint_options& options) {
  auto owner = std::make_shared<detail::created_queues>();
  owner->unlink = options.unlink;
  auto out = open_queue(options.name, access::send, options.create, false, options, *owner);
  if (!out) return unexpected(out.error());
  queue in;
  if (!options.reply.empty()) {
    auto r = open_queue(options.reply, access::receive, true, false, options, *owner);
    if (!r) return unexpected(r.error());
    in = std::move(*r);
  }
  return endpoint(std::move(*out), std::move(in), std::move(owner), nullptr);
}

listener::~listener() { close(); }

result<listener> listener::open(const endpoint_options& options) {
  listener l;
  l.options_ = options;
  l.owner_ = std::make_shared<detail::created_queues>();
  l.owner_->unlink = options.unlink;
  auto watch = open_queue(options.name, access::receive, true, options.exclusive, options, *l.owner_);
  if (!watch) return unexpected(watch.error());
  l.watch_ = std::move(*watch);
  if (!options.reply.empty()) {
    auto r = open_queue(options.reply, access::send, true, false, options, *l.owner_);
    if (!r) return unexpected(r.error());
  }
  l.gate_ = std::make_shared<detail::gate>();
  return l;
}

task<result<endpoint>> listener::accept(deadline dl) {
  if (!gate_) co_return errc::closed;
  auto gate = gate_;  // close() may run while this waits
  while (!gate->closed && gate->busy) {
    gate->freed.reset();
    auto r = co_await gate->freed.wait(dl);
    if (!r) co_return unexpected(r.error());
  }
  if (gate->closed) co_return errc::closed;
  if (auto r = co_await watch_.wait_message(dl); !r) co_return unexpected(r.error());
  if (gate->closed) co_return errc::closed;
  auto in = queue::open(options_.name, {.mode = access::receive});
  if (!in) co_return unexpected(in.error());
  queue out;
  if (!options_.reply.empty()) {
    auto o = queue::open(options_.reply, {.mode = access::send, .priority = options_.priority});
    if (!o) co_return unexpected(o.error());
    out = std::move(*o);
  }
  gate->busy = true;
  co_return endpoint(std::move(out), std::move(*in), owner_, gate);
}

void listener::close() noexcept {
  if (!gate_ || gate_->closed) return;
  gate_->closed = true;
  gate_->freed.set();
  watch_ = queue();  // wakes an accept waiting for a message: closed
  owner_.reset();
}

}  // namespace strata::mq
