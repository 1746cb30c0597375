#include "strata/transport/inproc.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "strata/runtime/channel.hpp"

namespace strata::inproc {

using chunk = std::vector<std::byte>;

namespace detail {

/// stream_state is shared by both ends of a stream pair: to[i] carries what end i writes.
struct stream_state {
  stream_state(std::size_t chunks, std::size_t chunk_bytes)
      : to{channel<chunk>(chunks), channel<chunk>(chunks)}, chunk_size(chunk_bytes) {}
  channel<chunk> to[2];
  std::size_t chunk_size;
};

/// message_state is shared by both ends of a message pair.
struct message_state {
  message_state(std::size_t capacity, std::size_t max)
      : to{channel<chunk>(capacity), channel<chunk>(capacity)}, max_message(max) {}
  channel<chunk> to[2];
  std::size_t max_message;
};

/// listener_state is a named listener: the backlog of server ends waiting for accept.
struct listener_state {
  listener_state(std::string n, const listen_options& o)
      : name(std::move(n)), options(o), backlog(o.backlog) {}
  std::string name;
  listen_options options;
  channel<stream> backlog;
};

}  // namespace detail

namespace {

// drain drops what a channel still holds (values are freed here, not when the last end
// goes away).
void drain(channel<chunk>& ch) {
  while (ch.try_recv()) {
  }
}

// gather_cursor walks a gather list, cutting it into chunks.
struct gather_cursor {
  std::span<const const_buffer> bufs;
  std::size_t index = 0;
  std::size_t offset = 0;

  chunk take(std::size_t max) {
    chunk out;
    while (index < bufs.size() && out.size() < max) {
      auto b = bufs[index];
      std::size_t n = std::min(b.size() - offset, max - out.size());
      out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(offset),
                 b.begin() + static_cast<std::ptrdiff_t>(offset + n));
      offset += n;
      if (offset == b.size()) {
        ++index;
        offset = 0;
      }
    }
    return out;
  }
};

}  // namespace

// -- stream -------------------------------------------------------------------------------

std::pair<stream, stream> stream_pair(stream_options options) {
  std::size_t limit = std::max<std::size_t>(options.buffer_limit, 1);
  std::size_t chunk_size = std::min<std::size_t>(limit, 64 * 1024);
  std::size_t chunks = std::max<std::size_t>(limit / chunk_size, 1);
  auto state = std::make_shared<detail::stream_state>(chunks, chunk_size);
  return {stream(state, 0), stream(state, 1)};
}

stream::stream(stream&& other) noexcept
    : state_(std::move(other.state_)),
      side_(other.side_),
      closed_(std::exchange(other.closed_, true)),
      write_shut_(other.write_shut_),
      read_error_(other.read_error_),
      write_error_(other.write_error_),
      pending_(std::move(other.pending_)),
      pending_offset_(std::exchange(other.pending_offset_, 0)) {}

stream& stream::operator=(stream&& other) noexcept {
  if (this != &other) {
    close_now();
    state_ = std::move(other.state_);
    side_ = other.side_;
    closed_ = std::exchange(other.closed_, true);
    write_shut_ = other.write_shut_;
    read_error_ = other.read_error_;
    write_error_ = other.write_error_;
    pending_ = std::move(other.pending_);
    pending_offset_ = std::exchange(other.pending_offset_, 0);
  }
  return *this;
}

stream::~stream() { close_now(); }

void stream::close_now() noexcept {
  if (!state_ || closed_) return;
  closed_ = true;
  state_->to[side_].close();  // the peer reads what is queued, then the end
  auto& in = state_->to[1 - side_];
  in.close();  // the peer's writes fail with broken; our parked reader wakes
  drain(in);
  pending_.clear();
  pending_offset_ = 0;
  read_error_ = write_error_ = errc::closed;
}

task<result<std::size_t>> stream::read_some(mutable_buffer buf, deadline dl) {
  if (!state_ || closed_) co_return errc::closed;
  if (read_error_) co_return unexpected(read_error_);
  if (buf.empty()) co_return std::size_t{0};
  if (pending_offset_ == pending_.size()) {
    auto r = co_await state_->to[1 - side_].recv(dl);
    if (closed_) co_return errc::closed;
    if (!r) {
      if (r.error() != errc::closed) co_return unexpected(r.error());
      read_error_ = errc::end_of_stream;
      co_return unexpected(read_error_);
    }
    pending_ = std::move(*r);
    pending_offset_ = 0;
  }
  std::size_t n = std::min(buf.size(), pending_.size() - pending_offset_);
  std::memcpy(buf.data(), pending_.data() + pending_offset_, n);
  pending_offset_ += n;
  if (pending_offset_ == pending_.size()) {
    pending_.clear();
    pending_offset_ = 0;
  }
  co_return n;
}

task<result<void>> stream::write(const_buffers bufs, deadline dl) {
  if (!state_ || closed_) co_return errc::closed;
  if (write_error_) co_return write_error_;
  gather_cursor cursor{bufs.view()};
  std::size_t handed = 0;
  for (;;) {
    chunk c = cursor.take(state_->chunk_size);
    if (c.empty()) break;
    std::size_t size = c.size();
    auto r = co_await state_->to[side_].send(std::move(c), dl);
    if (closed_) co_return errc::closed;
    if (!r) {
      auto ec = r.error();
      if (ec == errc::closed)
        ec = write_shut_ ? make_error_code(errc::closed) : make_error_code(errc::broken);
      // The peer saw a prefix of this write: the direction is lost.
      if (ec == errc::broken || handed > 0) write_error_ = ec;
      co_return ec;
    }
    handed += size;
  }
  co_return result<void>{};
}

task<result<void>> stream::shutdown_write(deadline) {
  if (!state_ || closed_) co_return errc::closed;
  if (!write_shut_) {
    write_shut_ = true;
    if (!write_error_) write_error_ = errc::closed;
    state_->to[side_].close();
  }
  co_return result<void>{};
}

task<result<void>> stream::close(deadline) {
  if (!state_ || closed_) co_return errc::closed;
  close_now();
  co_return result<void>{};
}

// -- message ------------------------------------------------------------------------------

std::pair<message, message> message_pair(message_options options) {
  auto state = std::make_shared<detail::message_state>(std::max<std::size_t>(options.capacity, 1),
                                                       options.max_message);
  return {message(state, 0), message(state, 1)};
}

message::message(message&& other) noexcept
    : state_(std::move(other.state_)),
      side_(other.side_),
      closed_(std::exchange(other.closed_, true)),
      write_shut_(other.write_shut_),
      read_error_(other.read_error_),
      pending_(std::exchange(other.pending_, std::nullopt)) {}

message& message::operator=(message&& other) noexcept {
  if (this != &other) {
    close_now();
    state_ = std::move(other.state_);
    side_ = other.side_;
    closed_ = std::exchange(other.closed_, true);
    write_shut_ = other.write_shut_;
    read_error_ = other.read_error_;
    pending_ = std::exchange(other.pending_, std::nullopt);
  }
  return *this;
}

message::~message() { close_now(); }

void message::close_now() noexcept {
  if (!state_ || closed_) return;
  closed_ = true;
  state_->to[side_].close();
  auto& in = state_->to[1 - side_];
  in.close();
  drain(in);
  pending_.reset();
  read_error_ = errc::closed;
}

properties message::runtime_capabilities() const noexcept {
  auto caps = capabilities;
  if (state_) caps.max_message = state_->max_message;
  return caps;
}

task<result<void>> message::send(const_buffers msg, deadline dl) {
  if (!state_ || closed_ || write_shut_) co_return errc::closed;
  if (msg.total_size() > state_->max_message) co_return errc::message_too_large;
  chunk c;
  c.reserve(msg.total_size());
  msg.copy_to(c);
  auto r = co_await state_->to[side_].send(std::move(c), dl);
  if (closed_) co_return errc::closed;
  if (!r) {
    if (r.error() == errc::closed) co_return write_shut_ ? errc::closed : errc::broken;
    co_return r.error();
  }
  co_return result<void>{};
}

task<result<std::size_t>> message::recv(mutable_buffer buf, deadline dl) {
  if (!state_ || closed_) co_return errc::closed;
  if (!pending_) {
    if (read_error_) co_return unexpected(read_error_);
    auto r = co_await state_->to[1 - side_].recv(dl);
    if (closed_) co_return errc::closed;
    if (!r) {
      if (r.error() != errc::closed) co_return unexpected(r.error());
      read_error_ = errc::end_of_stream;
      co_return unexpected(read_error_);
    }
    pending_ = std::move(*r);
  }
  if (pending_->size() > buf.size()) co_return errc::message_too_large;  // kept for a retry
  std::size_t n = pending_->size();
  if (n) std::memcpy(buf.data(), pending_->data(), n);
  pending_.reset();
  co_return n;
}

task<result<void>> message::shutdown_write(deadline) {
  if (!state_ || closed_) co_return errc::closed;
  if (!write_shut_) {
    write_shut_ = true;
    state_->to[side_].close();
  }
  co_return result<void>{};
}

task<result<void>> message::close(deadline) {
  if (!state_ || closed_) co_return errc::closed;
  close_now();
  co_return result<void>{};
}

// -- named rendezvous ---------------------------------------------------------------------

namespace {

// The process-wide table of names. Function-local statics: built on first use, so no
// initialisation order applies, and never destroyed before a listener that outlives main.
std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}
std::unordered_map<std::string, std::shared_ptr<detail::listener_state>>& table() {
  static auto* t = new std::unordered_map<std::string, std::shared_ptr<detail::listener_state>>();
  return *t;
}

}  // namespace

listener& listener::operator=(listener&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
  }
  return *this;
}

listener::~listener() { close(); }

result<listener> listener::bind(std::string_view name, listen_options options) {
  if (name.empty()) return errc::invalid_argument;
  options.backlog = std::max<std::size_t>(options.backlog, 1);
  std::lock_guard lock(table_mutex());
  auto [it, inserted] = table().try_emplace(std::string(name));
  if (!inserted) return unexpected(std::make_error_code(std::errc::address_in_use));
  it->second = std::make_shared<detail::listener_state>(std::string(name), options);
  return listener(it->second);
}

const std::string& listener::name() const noexcept {
  static const std::string none;
  return state_ ? state_->name : none;
}

void listener::close() noexcept {
  if (!state_) return;
  {
    std::lock_guard lock(table_mutex());
    auto it = table().find(state_->name);
    if (it != table().end() && it->second == state_) table().erase(it);
  }
  state_->backlog.close();
  while (auto pending = state_->backlog.try_recv()) {
    (void)pending;  // destroyed here: its connector reads end_of_stream
  }
}

task<result<stream>> listener::accept(deadline dl) {
  if (!state_) co_return errc::closed;
  auto r = co_await state_->backlog.recv(dl);
  if (!r) co_return unexpected(r.error());
  co_return std::move(*r);
}

task<result<stream>> connect(std::string name, deadline dl) {
  std::shared_ptr<detail::listener_state> target;
  {
    std::lock_guard lock(table_mutex());
    auto it = table().find(name);
    if (it != table().end()) target = it->second;
  }
  auto refused = std::make_error_code(std::errc::connection_refused);
  if (!target) co_return unexpected(refused);
  auto [client, server] = stream_pair(target->options.stream);
  auto r = co_await target->backlog.send(std::move(server), dl);
  if (!r) co_return unexpected(r.error() == errc::closed ? refused : r.error());
  co_return std::move(client);
}

}  // namespace strata::inproc
