// Registry entries for POSIX message queues (include/strata/transport/mq.hpp): whole
// messages through named kernel queues, highest priority first.
//
// row:  mq::row (connection-less message reliable dup_free ipc mpmc any-process
//       priority_ordered), refined: max_message = msgsize; ordered, because a pipeline
//       sends every message with one priority (prio=); simplex without reply=.
// spec: mq:/NAME(reply=/OTHER, prio=N, create=0|1, maxmsg=N, msgsize=SIZE, unlink=0|1)
//       mq-listen:/NAME(reply=/OTHER, prio=N, excl=0|1, maxmsg=N, msgsize=SIZE, unlink=0|1)
//
// A queue has no connection, so the pipeline gives these forms socat-like semantics:
// `mq:/NAME` sends to an existing queue NAME (and, with reply=, receives answers from the
// queue OTHER, created when missing); `mq-listen:/NAME` creates NAME when missing and its
// accept waits for the first message, then returns a connection receiving from NAME (and,
// with reply=, sending answers to OTHER). A listener hands out one connection at a time:
// the next accept waits until the previous connection is closed. Queues that a listener
// or connection created are unlinked when it and everything made from it are closed
// (unlink=0 keeps them).
#include <algorithm>

#include "../entry_support.hpp"
#include "entries.hpp"
#include "strata/runtime/event.hpp"
#include "strata/transport/mq.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info connect_params[] = {
    {.name = "reply",
     .default_value = "",
     .help =
         "queue /OTHER to receive answers from (created when missing); without it the connection only sends",
     .optional = true},
    {.name = "prio", .default_value = "0", .help = "priority of the messages sent, 0..32767"},
    {.name = "create", .default_value = "0", .help = "1 creates the queue NAME when it does not exist"},
    {.name = "maxmsg",
     .default_value = "10",
     .help = "messages a created queue holds (at most fs.mqueue.msg_max)"},
    {.name = "msgsize",
     .default_value = "8k",
     .help = "largest message of a created queue in bytes (at most fs.mqueue.msgsize_max)"},
    {.name = "unlink",
     .default_value = "1",
     .help = "1 removes the queues this connection created when it closes"},
};

constexpr param_info listen_params[] = {
    {.name = "reply",
     .default_value = "",
     .help = "queue /OTHER to send answers to (created when missing); without it connections only receive",
     .optional = true},
    {.name = "prio", .default_value = "0", .help = "priority of the messages sent, 0..32767"},
    {.name = "excl", .default_value = "0", .help = "1 refuses to use a queue NAME that already exists"},
    {.name = "maxmsg",
     .default_value = "10",
     .help = "messages a created queue holds (at most fs.mqueue.msg_max)"},
    {.name = "msgsize",
     .default_value = "8k",
     .help = "largest message of a created queue in bytes (at most fs.mqueue.msgsize_max)"},
    {.name = "unlink",
     .default_value = "1",
     .help = "1 removes the queues the listener created once it and its connections are closed"},
};

/// mq_spec is what a layer's target and parameters say.
struct mq_spec {
  std::string name;
  std::string reply;  // empty: simplex
  unsigned priority = 0;
  bool create = false;
  bool exclusive = false;
  mq::attributes attr;
  bool unlink = true;
};

/// queue_name turns "NAME" or "/NAME" into "/NAME", or returns "" when it cannot be one.
std::string queue_name(std::string_view text) {
  std::string name = !text.empty() && text[0] == '/' ? std::string(text) : "/" + std::string(text);
  if (name.size() < 2 || name.size() > 256 || name.find('/', 1) != std::string::npos ||
      name.find('\0') != std::string::npos)
    return {};
  return name;
}

bool options_of(const protocol_entry& entry, const spec_layer& layer, bool listening, mq_spec& out,
                spec_error& error) {
  std::string who(entry.name);
  out.name = queue_name(layer.target);
  if (out.name.empty()) {
    return fail(
        error,
        who + ": a queue name is /NAME: 1 to 255 bytes without another '/', got '" + layer.target + "'",
        layer.target_position);
  }
  if (const auto* p = entry.find_param(layer, "reply")) {
    out.reply = queue_name(p->value);
    if (out.reply.empty())
      return fail(error, who + ": reply must name a queue /OTHER, got '" + p->value + "'", p->position);
    if (out.reply == out.name)
      return fail(error, who + ": reply must be another queue than " + out.name + " (one queue would echo)",
                  p->position);
  }
  std::uint64_t prio = 0, maxmsg = 0, msgsize = 0;
  if (!uint_param(entry, layer, "prio", 0, 0, mq::max_priority, prio, error)) return false;
  if (!uint_param(entry, layer, "maxmsg", 10, 1, 65536, maxmsg, error)) return false;
  if (!size_param(entry, layer, "msgsize", mq::default_message_size, 1, std::uint64_t{16} << 20, msgsize,
                  error))
    return false;
  if (!flag_param(entry, layer, "unlink", true, out.unlink, error)) return false;
  if (listening) {
    out.create = true;
    if (!flag_param(entry, layer, "excl", false, out.exclusive, error)) return false;
  } else if (!flag_param(entry, layer, "create", false, out.create, error)) {
    return false;
  }
  out.priority = static_cast<unsigned>(prio);
  out.attr.max_messages = static_cast<long>(maxmsg);
  out.attr.message_size = static_cast<long>(msgsize);
  // Defaults (not explicit values) shrink to a host whose limits are lower.
  if (auto limits = mq::read_system_limits()) {
    if (!entry.find_param(layer, "maxmsg"))
      out.attr.max_messages = std::min(out.attr.max_messages, limits->msg_max);
    if (!entry.find_param(layer, "msgsize"))
      out.attr.message_size = std::min(out.attr.message_size, limits->msgsize_max);
  }
  // Say which system limit a queue we may create would exceed, before anything is made.
  if (out.create || !out.reply.empty()) {
    auto why = mq::explain_attributes(out.attr);
    if (!why.empty()) {
      std::string_view key = why.rfind("msgsize", 0) == 0 ? "msgsize" : "maxmsg";
      return fail(error, who + ": " + why, value_position(entry, layer, key));
    }
  }
  return true;
}

// -- connections --------------------------------------------------------------------------

/// owner_state holds the names of the queues a listener or connection created; the last
/// of them to go away unlinks them.
struct owner_state {
  std::vector<std::string> created;
  bool unlink = true;
  ~owner_state() {
    if (!unlink) return;
    for (const auto& name : created) (void)mq::unlink(name);
  }
};

/// gate_state lets a listener hand out one connection at a time (one thread).
struct gate_state {
  bool busy = false;
  bool closed = false;
  event freed;
};

/// open_queue opens `name` for `mode`; with `create` it makes the queue when missing and
/// records that it did (exclusive: it must not exist).
result<mq::queue> open_queue(const std::string& name, mq::access mode, bool create, bool exclusive,
                             const mq_spec& spec, owner_state& owner) {
  mq::open_options options{.mode = mode, .attr = spec.attr, .priority = spec.priority};
  if (create) {
    options.create = options.exclusive = true;
    auto q = mq::queue::open(name, options);
    if (q) {
      owner.created.push_back(name);
      return q;
    }
    if (exclusive || q.error() != std::errc::file_exists) return q;
    options.create = options.exclusive = false;
  }
  return mq::queue::open(name, options);
}

/// mq_connection is the message socket a pipeline gets: a sending queue, a receiving queue
/// or both. The missing direction answers not_supported.
class mq_connection {
 public:
  static constexpr properties capabilities = transport_properties(mq::row);

  mq_connection(mq::queue out, mq::queue in, std::shared_ptr<owner_state> owner,
                std::shared_ptr<gate_state> gate)
      : out_(std::move(out)),
        in_(std::move(in)),
        owner_(std::move(owner)),
        gate_(std::move(gate)),
        can_send_(out_.is_open()),
        can_recv_(in_.is_open()) {}
  mq_connection(mq_connection&&) noexcept = default;
  mq_connection& operator=(mq_connection&&) = delete;
  ~mq_connection() { release(); }

  task<result<void>> send(const_buffers msg, deadline dl) {
    if (!can_send_ && !closed_) return unsupported();
    return out_.send(msg, dl);
  }
  task<result<std::size_t>> recv(mutable_buffer buf, deadline dl) {
    if (!can_recv_ && !closed_) return unsupported_size();
    return in_.recv(buf, dl);
  }
  task<result<void>> close(deadline dl) {
    if (closed_) co_return errc::closed;
    closed_ = true;
    if (out_.is_open()) (void)co_await out_.close(dl);
    if (in_.is_open()) (void)co_await in_.close(dl);
    release();
    co_return result<void>{};
  }
  properties runtime_capabilities() const noexcept {
    auto caps = capabilities;
    caps.ordered = true;  // one priority for every message sent
    bool both = can_send_ && can_recv_;
    caps.direction = both ? direction::duplex : direction::simplex;
    std::size_t a = out_.max_message(), b = in_.max_message();
    caps.max_message = both ? std::min(a, b) : std::max(a, b);
    return caps;
  }

 private:
  static task<result<void>> unsupported() { co_return errc::not_supported; }
  static task<result<std::size_t>> unsupported_size() { co_return errc::not_supported; }
  void release() noexcept {
    owner_.reset();
    if (gate_) {
      gate_->busy = false;
      gate_->freed.set();
      gate_.reset();
    }
  }

  mq::queue out_;
  mq::queue in_;
  std::shared_ptr<owner_state> owner_;
  std::shared_ptr<gate_state> gate_;
  bool can_send_ = false;
  bool can_recv_ = false;
  bool closed_ = false;
};

static_assert(message_socket<mq_connection>);

/// mq_listener waits for the first message of its queue and hands out one connection at a
/// time (see the file comment).
class mq_listener final : public any_listener::iface {
 public:
  mq_listener(mq_spec spec, mq::queue watch, std::shared_ptr<owner_state> owner)
      : spec_(std::move(spec)),
        watch_(std::move(watch)),
        owner_(std::move(owner)),
        gate_(std::make_shared<gate_state>()) {}
  ~mq_listener() override { close(); }

  task<result<any_connection>> accept(deadline dl) override {
    while (!gate_->closed && gate_->busy) {
      gate_->freed.reset();
      auto r = co_await gate_->freed.wait(dl);
      if (!r) co_return unexpected(r.error());
    }
    if (gate_->closed) co_return errc::closed;
    if (auto r = co_await watch_.wait_message(dl); !r) co_return unexpected(r.error());
    if (gate_->closed) co_return errc::closed;
    auto in = mq::queue::open(spec_.name, {.mode = mq::access::receive});
    if (!in) co_return unexpected(in.error());
    mq::queue out;
    if (!spec_.reply.empty()) {
      auto o = mq::queue::open(spec_.reply, {.mode = mq::access::send, .priority = spec_.priority});
      if (!o) co_return unexpected(o.error());
      out = std::move(*o);
    }
    gate_->busy = true;
    co_return any_connection(any_message(mq_connection(std::move(out), std::move(*in), owner_, gate_)));
  }
  result<address> local_address() const override { return errc::not_supported; }
  void close() override {
    if (gate_->closed) return;
    gate_->closed = true;
    gate_->freed.set();
    watch_ = mq::queue();  // wakes an accept waiting for a message: closed
    owner_.reset();
  }

 private:
  mq_spec spec_;
  mq::queue watch_;
  std::shared_ptr<owner_state> owner_;
  std::shared_ptr<gate_state> gate_;
};

// -- entry functions ----------------------------------------------------------------------

task<result<any_connection>> connected(any_connection c) { co_return std::move(c); }

/// mq_config is mq:/NAME(...) or mq-listen:/NAME(...) parsed.
struct mq_config final : layer_options {
  mq_spec spec;
};

template <const protocol_entry& Entry, bool Listening>
layer_options_ptr configure(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<mq_config>();
  if (!check_shape(Entry, layer, error) || !options_of(Entry, layer, Listening, config->spec, error))
    return nullptr;
  return config;
}

properties refine(properties computed, const layer_options& options) {
  const auto& spec = static_cast<const mq_config&>(options).spec;
  computed.ordered = true;
  computed.max_message = static_cast<std::size_t>(spec.attr.message_size);
  computed.direction = spec.reply.empty() ? direction::simplex : direction::duplex;
  return computed;
}

task<result<any_connection>> connect(layer_options_ptr options, deadline) {
  const auto& spec = static_cast<const mq_config&>(*options).spec;
  auto owner = std::make_shared<owner_state>();
  owner->unlink = spec.unlink;
  auto out = open_queue(spec.name, mq::access::send, spec.create, false, spec, *owner);
  if (!out) return failed_connect(out.error());
  mq::queue in;
  if (!spec.reply.empty()) {
    auto r = open_queue(spec.reply, mq::access::receive, true, false, spec, *owner);
    if (!r) return failed_connect(r.error());
    in = std::move(*r);
  }
  return connected(any_message(mq_connection(std::move(*out), std::move(in), std::move(owner), nullptr)));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& spec = static_cast<const mq_config&>(*options).spec;
  auto owner = std::make_shared<owner_state>();
  owner->unlink = spec.unlink;
  auto watch = open_queue(spec.name, mq::access::receive, true, spec.exclusive, spec, *owner);
  if (!watch) return unexpected(watch.error());
  if (!spec.reply.empty()) {
    auto r = open_queue(spec.reply, mq::access::send, true, false, spec, *owner);
    if (!r) return unexpected(r.error());
  }
  return any_listener(std::make_unique<mq_listener>(spec, std::move(*watch), std::move(owner)));
}

}  // namespace

constinit const protocol_entry mq_connect_entry{
    .name = "mq",
    .protocol = "mq",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &mq::row,
    .summary = "send messages to the POSIX message queue /NAME (reply=/OTHER: receive answers there)",
    .target_help = "/NAME",
    .params = connect_params,
    .parses_peer_input = false,
    .configure = configure<mq_connect_entry, false>,
    .refine = refine,
    .connect = connect,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry mq_listen_entry{
    .name = "mq-listen",
    .protocol = "mq",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &mq::row,
    .summary = "create the POSIX message queue /NAME and receive from it (reply=/OTHER: answer there)",
    .target_help = "/NAME",
    .params = listen_params,
    .parses_peer_input = false,
    .configure = configure<mq_listen_entry, true>,
    .refine = refine,
    .connect = nullptr,
    .listen = listen,
    .bind = nullptr,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
