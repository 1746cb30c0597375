// Registry entries for the shared-memory rings (include/strata/transport/shm.hpp): a
// duplex byte stream, a 1:N broadcast ring and an MPMC message queue between processes.
//
// row:  shm::stream_row (connection-based stream reliable ordered dup_free ipc p2p
//       any-process duplex), shm::broadcast_row (connection-based message ordered
//       dup_free ipc multicast any-process simplex; reliable under policy=block only;
//       max_message from max), shm::queue_row (connection-less message reliable ordered
//       dup_free ipc mpmc any-process duplex; max_message from max)
// spec: shm:NAME(spin=0|1)
//       shm-listen:NAME(size=SIZE, spin=0|1, backlog=N)
//       shm-pub:NAME(policy=block|overwrite, slots=N, max=SIZE, subscribers=N, spin=0|1)
//       shm-sub:NAME(spin=0|1)
//       shm-queue:NAME(role=both|send|recv, slots=N, max=SIZE, members=N, spin=0|1)
#include <bit>

#include "../../transport/shm_ring.hpp"  // make_layout checks a spec's sizes
#include "../entry_support.hpp"
#include "entries.hpp"
#include "strata/transport/shm.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info connect_params[] = {
    {.name = "spin", .default_value = "0", .help = "1: never sleep, poll the ring between event-loop turns"},
};

constexpr param_info listen_params[] = {
    {.name = "size", .default_value = "256k", .help = "ring bytes per direction, a power of two (4k..1g)"},
    {.name = "spin", .default_value = "0", .help = "1: accepted streams never sleep, they poll the ring"},
    {.name = "backlog",
     .default_value = "128",
     .help = "pending rendezvous connections the kernel queues (1..65535)"},
};

constexpr param_info pub_params[] = {
    {.name = "policy",
     .default_value = "block",
     .help = "slow subscribers: block (the publisher waits) or overwrite (they lose the oldest, counted)"},
    {.name = "slots", .default_value = "256", .help = "messages the ring holds, a power of two (2..1048576)"},
    {.name = "max", .default_value = "4k", .help = "largest message in bytes (1..16m)"},
    {.name = "subscribers", .default_value = "64", .help = "most subscribers at once (1..256)"},
    {.name = "spin",
     .default_value = "0",
     .help = "1: a publisher waiting for room polls instead of sleeping"},
};

constexpr param_info queue_params[] = {
    {.name = "role", .default_value = "both", .help = "what this member does: both, send or recv"},
    {.name = "slots", .default_value = "256", .help = "creator: messages the queue holds, a power of two"},
    {.name = "max", .default_value = "4k", .help = "creator: largest message in bytes (1..16m)"},
    {.name = "members", .default_value = "64", .help = "creator: most members at once (1..256)"},
    {.name = "spin", .default_value = "0", .help = "1: never sleep, poll the queue between event-loop turns"},
};

constexpr std::string_view policies[] = {"block", "overwrite"};
constexpr std::string_view roles[] = {"both", "send", "recv"};

bool check_name(const protocol_entry& entry, const spec_layer& layer, spec_error& error) {
  if (!shm::rendezvous_address(layer.target)) {
    return fail(error,
                std::string(entry.name) +
                    ": bad ring name (empty, a NUL byte, or too long for a Unix socket address: "
                    "at most 96 bytes, or 107 after '@')",
                layer.target_position);
  }
  return true;
}

bool wait_of(const protocol_entry& entry, const spec_layer& layer, shm::wait_options& wait,
             spec_error& error) {
  return flag_param(entry, layer, "spin", false, wait.spin, error);
}

bool pow2_param(const protocol_entry& entry, const spec_layer& layer, std::string_view key,
                std::uint64_t fallback, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out,
                spec_error& error) {
  if (!size_param(entry, layer, key, fallback, lo, hi, out, error)) return false;
  if (!std::has_single_bit(out)) {
    return fail(error,
                std::string(entry.name) + ": " + std::string(key) + " must be a power of two, got '" +
                    entry.find_param(layer, key)->value + "'",
                value_position(entry, layer, key));
  }
  return true;
}

// -- shm / shm-listen ---------------------------------------------------------------------

/// shm_connect_config is shm:NAME(...) or shm-sub:NAME(...) parsed.
struct shm_connect_config final : layer_options {
  std::string name;
  shm::wait_options wait;
};

/// shm_listen_config is shm-listen:NAME(...) parsed.
struct shm_listen_config final : layer_options {
  std::string name;
  shm::listen_options options;
};

template <const protocol_entry& Entry>
layer_options_ptr configure_connect(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<shm_connect_config>();
  if (!check_shape(Entry, layer, error) || !check_name(Entry, layer, error) ||
      !wait_of(Entry, layer, config->wait, error)) {
    return nullptr;
  }
  config->name = layer.target;
  return config;
}

bool listen_options_of(const spec_layer& layer, shm::listen_options& options, spec_error& error) {
  const auto& entry = shm_listen_entry;
  std::uint64_t size = 0, backlog = 0;
  if (!pow2_param(entry, layer, "size", shm::default_ring_bytes, shm::min_ring_bytes, shm::max_ring_bytes,
                  size, error))
    return false;
  if (!uint_param(entry, layer, "backlog", 128, 1, 65535, backlog, error)) return false;
  if (!wait_of(entry, layer, options.wait, error)) return false;
  options.ring_bytes = static_cast<std::size_t>(size);
  options.backlog = static_cast<int>(backlog);
  return true;
}

layer_options_ptr configure_listen(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<shm_listen_config>();
  if (!check_shape(shm_listen_entry, layer, error) || !check_name(shm_listen_entry, layer, error) ||
      !listen_options_of(layer, config->options, error)) {
    return nullptr;
  }
  config->name = layer.target;
  return config;
}

task<result<any_connection>> connect(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const shm_connect_config&>(*options);
  auto s = co_await shm::connect(config.name, dl, config.wait);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_stream(std::move(*s)));
}

result<any_listener> listen(layer_options_ptr options) {
  const auto& config = static_cast<const shm_listen_config&>(*options);
  auto l = shm::listener::bind(config.name, config.options);
  if (!l) return unexpected(l.error());
  return make_listener(std::move(*l));
}

// -- shm-pub / shm-sub ----------------------------------------------------------------------

/// shm_pub_config is shm-pub:NAME(...) parsed.
struct shm_pub_config final : layer_options {
  std::string name;
  shm::publish_options options;
};

bool pub_options_of(const spec_layer& layer, shm::publish_options& options, spec_error& error) {
  const auto& entry = shm_pub_entry;
  std::size_t policy = 0;
  std::uint64_t slots = 0, max = 0, subscribers = 0;
  if (!choice_param(entry, layer, "policy", policies, 0, policy, error)) return false;
  if (!pow2_param(entry, layer, "slots", 256, shm::min_slots, shm::max_slots, slots, error)) return false;
  if (!size_param(entry, layer, "max", 4096, 1, shm::max_slot_payload, max, error)) return false;
  if (!uint_param(entry, layer, "subscribers", 64, 1, shm::max_members, subscribers, error)) return false;
  if (!wait_of(entry, layer, options.wait, error)) return false;
  options.policy = policy == 0 ? shm::overflow_policy::block : shm::overflow_policy::overwrite;
  options.slots = static_cast<std::size_t>(slots);
  options.max_message = static_cast<std::size_t>(max);
  options.max_subscribers = static_cast<std::uint32_t>(subscribers);
  if (!shm::make_layout(shm::segment_kind::broadcast, slots, max, options.policy, options.max_subscribers)) {
    return fail(error, "shm-pub: slots x max is too large a ring (at most 4g)",
                value_position(entry, layer, "max"));
  }
  return true;
}

layer_options_ptr configure_pub(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<shm_pub_config>();
  if (!check_shape(shm_pub_entry, layer, error) || !check_name(shm_pub_entry, layer, error) ||
      !pub_options_of(layer, config->options, error)) {
    return nullptr;
  }
  config->name = layer.target;
  return config;
}

properties refine_pub(properties computed, const layer_options& options) {
  const auto& config = static_cast<const shm_pub_config&>(options);
  computed.reliable = config.options.policy == shm::overflow_policy::block;
  computed.max_message = config.options.max_message;
  return computed;
}

task<result<any_connection>> connect_pub(layer_options_ptr options, deadline) {
  const auto& config = static_cast<const shm_pub_config&>(*options);
  auto p = shm::publisher::bind(config.name, config.options);
  if (!p) return failed_connect(p.error());
  return [](shm::publisher p) -> task<result<any_connection>> {
    co_return any_connection(any_message(std::move(p)));
  }(std::move(*p));
}

task<result<any_connection>> connect_sub(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const shm_connect_config&>(*options);
  auto s = co_await shm::subscribe(config.name, dl, config.wait);
  if (!s) co_return unexpected(s.error());
  co_return any_connection(any_message(std::move(*s)));
}

// -- shm-queue ------------------------------------------------------------------------------

/// shm_queue_config is shm-queue:NAME(...) parsed.
struct shm_queue_config final : layer_options {
  std::string name;
  shm::queue_options options;
};

bool queue_options_of(const spec_layer& layer, shm::queue_options& options, spec_error& error) {
  const auto& entry = shm_queue_entry;
  std::size_t role = 0;
  std::uint64_t slots = 0, max = 0, members = 0;
  if (!choice_param(entry, layer, "role", roles, 0, role, error)) return false;
  if (!pow2_param(entry, layer, "slots", 256, shm::min_slots, shm::max_slots, slots, error)) return false;
  if (!size_param(entry, layer, "max", 4096, 1, shm::max_slot_payload, max, error)) return false;
  if (!uint_param(entry, layer, "members", 64, 1, shm::max_members, members, error)) return false;
  if (!wait_of(entry, layer, options.wait, error)) return false;
  options.role = role == 0   ? shm::queue_role::both
                 : role == 1 ? shm::queue_role::send
                             : shm::queue_role::recv;
  options.slots = static_cast<std::size_t>(slots);
  options.max_message = static_cast<std::size_t>(max);
  options.max_members = static_cast<std::uint32_t>(members);
  if (!shm::make_layout(shm::segment_kind::queue, slots, max, shm::overflow_policy::block,
                        options.max_members)) {
    return fail(error, "shm-queue: slots x max is too large a queue (at most 4g)",
                value_position(entry, layer, "max"));
  }
  return true;
}

layer_options_ptr configure_queue(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<shm_queue_config>();
  if (!check_shape(shm_queue_entry, layer, error) || !check_name(shm_queue_entry, layer, error) ||
      !queue_options_of(layer, config->options, error)) {
    return nullptr;
  }
  config->name = layer.target;
  return config;
}

properties refine_queue(properties computed, const layer_options& options) {
  computed.max_message = static_cast<const shm_queue_config&>(options).options.max_message;
  return computed;
}

task<result<any_connection>> connect_queue(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const shm_queue_config&>(*options);
  auto q = co_await shm::open_queue(config.name, dl, config.options);
  if (!q) co_return unexpected(q.error());
  co_return any_connection(any_message(std::move(*q)));
}

}  // namespace

constinit const protocol_entry shm_connect_entry{
    .name = "shm",
    .protocol = "shm",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &shm::stream_row,
    .summary = "connect a shared-memory byte stream to the shm listener NAME",
    .target_help = "NAME",
    .params = connect_params,
    .parses_peer_input = true,
    .configure = configure_connect<shm_connect_entry>,
    .refine = nullptr,
    .connect = connect,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry shm_listen_entry{
    .name = "shm-listen",
    .protocol = "shm",
    .layer = "transport",
    .role = layer_role::listener,
    .row = &shm::stream_row,
    .summary = "accept shared-memory byte streams at NAME (each process gets its own rings)",
    .target_help = "NAME",
    .params = listen_params,
    .parses_peer_input = true,
    .configure = configure_listen,
    .refine = nullptr,
    .connect = nullptr,
    .listen = listen,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry shm_pub_entry{
    .name = "shm-pub",
    .protocol = "shm",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &shm::broadcast_row,
    .summary = "publish messages to every subscriber of the broadcast ring NAME",
    .target_help = "NAME",
    .params = pub_params,
    .parses_peer_input = true,
    .configure = configure_pub,
    .refine = refine_pub,
    .connect = connect_pub,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry shm_sub_entry{
    .name = "shm-sub",
    .protocol = "shm",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &shm::broadcast_row,
    .summary = "receive every message of the broadcast ring NAME from now on",
    .target_help = "NAME",
    .params = connect_params,
    .parses_peer_input = true,
    .configure = configure_connect<shm_sub_entry>,
    .refine = nullptr,
    .connect = connect_sub,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry shm_queue_entry{
    .name = "shm-queue",
    .protocol = "shm",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &shm::queue_row,
    .summary = "join (or create) the MPMC message queue NAME",
    .target_help = "NAME",
    .params = queue_params,
    .parses_peer_input = true,
    .configure = configure_queue,
    .refine = refine_queue,
    .connect = connect_queue,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
