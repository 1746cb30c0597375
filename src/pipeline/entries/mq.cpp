// Registry entries for POSIX message queues (include/strata/transport/mq.hpp): whole
// messages through named kernel queues, highest priority first.
//
// row:  mq::row (connection-less message reliable dup_free ipc mpmc any-process
//       priority_ordered), refined: max_message = msgsize; ordered, because a pipeline
//       sends every message with one priority (prio=); simplex without reply=.
// spec: mq:/NAME(reply=/OTHER, prio=N, create=0|1, maxmsg=N, msgsize=SIZE, unlink=0|1)
//       mq-listen:/NAME(reply=/OTHER, prio=N, excl=0|1, maxmsg=N, msgsize=SIZE, unlink=0|1)
//
// A queue has no connection, so these forms have socat-like semantics, implemented by
// mq::endpoint and mq::listener (include/strata/transport/mq.hpp); this file only parses
// the spec into mq::endpoint_options:
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

/// mq_spec is what a layer's target and parameters say: the transport's endpoint options.
using mq_spec = mq::endpoint_options;

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

// -- listener ---------------------------------------------------------------------------

/// mq_listener is an mq::listener behind the pipeline's listener interface.
class mq_listener final : public any_listener::iface {
 public:
  explicit mq_listener(mq::listener listener) : listener_(std::move(listener)) {}

  task<result<any_connection>> accept(deadline dl) override {
    auto e = co_await listener_.accept(dl);
    if (!e) co_return unexpected(e.error());
    co_return any_connection(any_message(std::move(*e)));
  }
  result<address> local_address() const override { return errc::not_supported; }
  void close() override { listener_.close(); }

 private:
  mq::listener listener_;
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
  auto e = mq::connect(spec);
  if (!e) return failed_connect(e.error());
  return connected(any_message(std::move(*e)));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& spec = static_cast<const mq_config&>(*options).spec;
  auto l = mq::listener::open(spec);
  if (!l) return unexpected(l.error());
  return any_listener(std::make_unique<mq_listener>(std::move(*l)));
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
