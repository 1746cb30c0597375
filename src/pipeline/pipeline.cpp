// The run-time checker and the pipeline object. check_stack walks a parsed spec bottom
// up with the same capability rows the typed concepts use (first_unmet, stack_on), so a
// stack refused here is one that would not compile as templates either; its errors name
// the layer pair, the unmet property and, where the registry has one, the adapter that
// fixes it. pipeline then builds stacks through the registry's factories.
#include "strata/pipeline/pipeline.hpp"

#include <algorithm>
#include <memory>
#include <utility>

#include "strata/core/handshaking_listener.hpp"

namespace strata {
namespace {

bool starts_with_vowel(std::string_view word) {
  return !word.empty() && std::string_view("aeiou").find(word.front()) != std::string_view::npos;
}

/// needs_phrase says what a layer needs below it: "a stream", "a reliable layer".
std::string needs_phrase(const unmet& u) {
  std::string article = starts_with_vowel(u.needed) ? "an " : "a ";
  if (u.property == prop::unit) return article + std::string(u.needed);
  return article + std::string(u.needed) + " layer";
}

/// suggestion renders an entry as a user would write it, with placeholders for the
/// parameters it cannot do without.
std::string suggestion(const protocol_entry& entry) {
  std::string out(entry.name);
  if (!entry.target_help.empty()) out += ":" + std::string(entry.target_help);
  std::string required;
  for (const auto& p : entry.params) {
    if (!p.default_value.empty() || p.optional) continue;
    if (!required.empty()) required += ", ";
    required += std::string(p.name) + "=...";
  }
  if (!required.empty()) out += "(" + required + ")";
  return out;
}

/// written renders a layer as the user wrote it, or with its target placeholder when
/// the user left the target out.
std::string written(const spec_layer& layer, const protocol_entry& entry) {
  if (layer.target.empty() && !entry.target_help.empty()) {
    spec_layer copy = layer;
    copy.target = std::string(entry.target_help);
    return copy.text();
  }
  return layer.text();
}

/// transport_names lists the bottom layers that `upper` could stand on directly.
std::string transport_names(const protocol_entry& upper, const protocol_registry& protocols) {
  std::vector<std::string_view> names;
  for (const auto& e : protocols.entries()) {
    bool stacks = e.role == layer_role::connector || e.role == layer_role::listener;
    if (stacks && !first_unmet(transport_properties(*e.row), *upper.row)) {
      names.push_back(e.name);
    }
  }
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

std::string known_names(const protocol_registry& protocols) {
  std::string out;
  for (const auto& e : protocols.entries()) {
    if (!out.empty()) out += ", ";
    out += e.name;
  }
  return out;
}

bool refuse(pipeline_error& error, std::string message, std::size_t position) {
  error.message = std::move(message);
  error.position = position;
  return false;
}

/// adapter_first explains an adapter standing at the bottom of the stack.
std::string adapter_first(const spec& parsed, const protocol_entry& entry,
                          const protocol_registry& protocols) {
  const auto& first = parsed.layers.front();
  auto u = first_unmet(properties{}, *entry.row);
  std::string message = first.name + " needs " + (u ? needs_phrase(*u) : std::string("a transport")) +
                        " below it, but it is the first layer; a pipeline starts with a transport (" +
                        transport_names(entry, protocols) + ")";
  for (std::size_t i = 1; i < parsed.layers.size(); ++i) {
    const auto* later = protocols.find(parsed.layers[i].name);
    if (!later || (later->role != layer_role::connector && later->role != layer_role::listener)) continue;
    std::string reordered = written(parsed.layers[i], *later);
    for (std::size_t j = 0; j < parsed.layers.size(); ++j) {
      if (j != i) reordered += " | " + parsed.layers[j].text();
    }
    return message + ": " + parsed.layers[i].name + " must be the first layer, as in `" + reordered + "`";
  }
  return message + ", e.g. `tcp:HOST:PORT | " + first.text() + "`";
}

/// above_bound explains a layer standing on a bound endpoint, and names the protocol's
/// connections that layers can stack on.
std::string above_bound(const spec_layer& upper, const spec_layer& bottom, const protocol_entry& bound,
                        const protocol_registry& protocols) {
  std::string message = upper.name + " cannot stand on " + bottom.text() +
                        ": a bound endpoint is connection-less (it receives from any sender and sends to "
                        "any address), and no layer stacks on a bound endpoint yet";
  std::string instead;
  for (const auto& e : protocols.entries()) {
    if (e.protocol != bound.protocol || (e.role != layer_role::connector && e.role != layer_role::listener))
      continue;
    instead += (instead.empty() ? "" : " or ") + std::string(e.name);
  }
  if (!instead.empty()) message += "; for a connection that layers stack on, use " + instead;
  return message;
}

/// above_application explains a layer standing on an application protocol, which ends
/// the stack.
std::string above_application(const spec_layer& upper, const spec_layer& app) {
  return upper.name + " cannot stand on " + app.text() + ": " + app.name +
         " is an application protocol (it carries requests and responses, not bytes or messages) "
         "and must be the top layer; put the layers it runs on below it";
}

/// unmet_message explains an adapter whose requirements the layer below does not meet.
std::string unmet_message(const spec_layer& upper, const protocol_entry& entry, const spec_layer& lower,
                          const properties& below, const unmet& u, const protocol_registry& protocols) {
  std::string message = upper.name + " needs " + needs_phrase(u) + " below it, but " + lower.text() +
                        " provides " + std::string(u.offered) +
                        " (unmet property: " + std::string(to_string(u.property)) + ")";
  auto chain = find_adapters(below, *entry.row, protocols.entries());
  if (chain.empty()) {
    return message + "; no registered adapter turns " + std::string(u.offered) + " into " +
           std::string(u.needed);
  }
  std::string inserted;
  for (const auto* a : chain) inserted += (inserted.empty() ? "" : " | ") + suggestion(*a);
  return message + "; insert " + inserted + " between them: `" + lower.text() + " | " + inserted + " | " +
         upper.text() + "`";
}

/// built is what building part of a stack gives: the top so far, or the error naming
/// the layer that failed.
struct stack_step {
  result<any_connection> top = errc::invalid_argument;
  std::string failed_layer;
};

/// wrap_upper stacks `upper` layers, bottom first, on `conn`, each handshake within `dl`.
/// On failure the layer's wrap has closed what was below it.
task<stack_step> wrap_upper(any_connection conn, const std::vector<pipeline_layer>& upper, layer_side side,
                            deadline dl) {
  for (const auto& layer : upper) {
    auto next = co_await layer.entry->wrap(std::move(conn), layer.options, side, dl);
    if (!next) co_return stack_step{unexpected(next.error()), layer.spec.name};
    conn = std::move(*next);
  }
  co_return stack_step{std::move(conn), {}};
}

/// stack_copy is what a connect task or a listener keeps of a pipeline: its layers, the
/// entries they point into and the text for error messages.
struct stack_copy {
  std::vector<pipeline_layer> layers;
  std::shared_ptr<const protocol_registry::storage> entries;
  std::string text;
};

/// built_count counts the layers a pipeline builds: all but an application on
/// top, which the caller runs.
std::size_t built_count(const std::vector<pipeline_layer>& layers) noexcept {
  if (!layers.empty() && layers.back().entry->role == layer_role::application) return layers.size() - 1;
  return layers.size();
}

task<stack_result<any_connection>> connect_stack(stack_copy stack, deadline dl) {
  const auto& bottom = stack.layers.front();
  auto conn = co_await bottom.entry->connect(bottom.options, dl);
  if (!conn) co_return stack_error("connect", stack.text, bottom.spec.name, conn.error());
  auto built = static_cast<std::ptrdiff_t>(built_count(stack.layers));
  std::vector<pipeline_layer> upper(stack.layers.begin() + 1, stack.layers.begin() + built);
  auto step = co_await wrap_upper(std::move(*conn), upper, layer_side::client, dl);
  if (!step.top) co_return stack_error("connect", stack.text, step.failed_layer, step.top.error());
  co_return std::move(*step.top);
}

task<stack_result<any_connection>> refused(stack_error e) { co_return e; }

/// upper_layers is the handshake of a listening pipeline: the layers above the
/// transport, stacked on one accepted connection.
struct upper_layers {
  std::shared_ptr<const stack_copy> stack;
  task<result<any_connection>> operator()(any_connection conn, deadline dl) const {
    return stack_upper(stack, std::move(conn), dl);
  }
  static task<result<any_connection>> stack_upper(std::shared_ptr<const stack_copy> stack,
                                                  any_connection conn, deadline dl) {
    auto step = co_await wrap_upper(std::move(conn), stack->layers, layer_side::server, dl);
    if (!step.top) co_return unexpected(step.top.error());
    co_return std::move(*step.top);
  }
};

/// stacked_listener accepts from the transport's listener and hands out connections
/// whose upper layers are ready (handshaking_listener does the concurrency).
class stacked_listener final : public any_listener::iface {
 public:
  stacked_listener(any_listener bottom, std::shared_ptr<const stack_copy> upper, handshake_options options)
      : ready_(std::move(bottom), upper_layers{std::move(upper)}, options) {}

  task<result<any_connection>> accept(deadline dl) override { return ready_.accept(dl); }
  result<address> local_address() const override { return ready_.local_address(); }
  void close() override { ready_.close(); }
  handshake_stats handshakes() const override { return ready_.stats(); }
  void on_handshake_failure(std::function<void(const handshake_failure&)> observer) override {
    ready_.on_failure(std::move(observer));
  }
  datagram_listener_stats datagrams() const override { return ready_.next_layer().datagrams(); }

 private:
  handshaking_listener<any_listener, upper_layers> ready_;
};

}  // namespace

std::string pipeline_error::render(std::string_view text) const {
  return spec_error{message, position}.render(text);
}

std::vector<const protocol_entry*> find_adapters(const properties& below, const capability_row& upper,
                                                 std::span<const protocol_entry> entries) {
  for (const auto& a : entries) {
    if (a.role != layer_role::adapter || !a.row || first_unmet(below, *a.row)) continue;
    if (!first_unmet(stack_on(below, *a.row), upper)) return {&a};
  }
  for (const auto& a : entries) {
    if (a.role != layer_role::adapter || !a.row || first_unmet(below, *a.row)) continue;
    auto mid = stack_on(below, *a.row);
    for (const auto& b : entries) {
      if (b.role != layer_role::adapter || !b.row || first_unmet(mid, *b.row)) continue;
      if (!first_unmet(stack_on(mid, *b.row), upper)) return {&a, &b};
    }
  }
  return {};
}

bool check_stack(const spec& parsed, std::vector<pipeline_layer>& layers, pipeline_error& error,
                 const protocol_registry& protocols) {
  layers.clear();
  if (parsed.layers.empty()) return refuse(error, "empty pipeline", 0);
  properties below{};
  for (std::size_t i = 0; i < parsed.layers.size(); ++i) {
    const auto& layer = parsed.layers[i];
    const auto* entry = protocols.find(layer.name);
    if (!entry) {
      auto close = protocols.closest(layer.name);
      std::string hint = close.empty() ? "; known protocols: " + known_names(protocols)
                                       : "; did you mean '" + std::string(close) + "'?";
      return refuse(error, "unknown protocol '" + layer.name + "'" + hint, layer.position);
    }
    bool transport = entry->role == layer_role::connector || entry->role == layer_role::listener ||
                     entry->role == layer_role::bound;
    if (i == 0 && !transport) return refuse(error, adapter_first(parsed, *entry, protocols), layer.position);
    if (i > 0 && transport) {
      return refuse(error,
                    layer.name + " is a transport (" + std::string(to_string(entry->role)) +
                        ") and must be the first layer, but it stands above " + parsed.layers[i - 1].text() +
                        "; a pipeline has one transport, at the bottom",
                    layer.position);
    }
    if (i > 0 && layers.front().entry->role == layer_role::bound) {
      return refuse(error, above_bound(layer, parsed.layers.front(), *layers.front().entry, protocols),
                    layer.position);
    }
    if (i > 0 && layers.back().entry->role == layer_role::application) {
      return refuse(error, above_application(layer, parsed.layers[i - 1]), layer.position);
    }
    spec_error why;
    auto options = entry->configure(*entry, layer, why);
    if (!options) return refuse(error, why.message, why.position);
    if (i > 0) {
      if (auto u = first_unmet(below, *entry->row)) {
        return refuse(error, unmet_message(layer, *entry, parsed.layers[i - 1], below, *u, protocols),
                      layer.position);
      }
    }
    properties offers = stack_on(below, *entry->row);
    if (entry->refine) offers = entry->refine(offers, *options);
    if (i > 0 && entry->fit_side) {
      auto side =
          layers.front().entry->role == layer_role::listener ? layer_side::server : layer_side::client;
      if (!entry->fit_side(*options, side, layer, offers, why))
        return refuse(error, why.message, why.position);
    }
    layers.push_back(pipeline_layer{layer, entry, std::move(options), offers});
    below = offers;
  }
  return true;
}

std::optional<pipeline> pipeline::parse(std::string_view text, pipeline_error& error,
                                        const protocol_registry& protocols) {
  spec parsed;
  spec_error why;
  if (!parse_spec(text, parsed, why)) {
    error = pipeline_error{why.message, why.position};
    return std::nullopt;
  }
  pipeline p;
  if (!check_stack(parsed, p.layers_, error, protocols)) return std::nullopt;
  p.text_ = std::string(text);
  p.entries_ = protocols.shared();
  return p;
}

bool pipeline::is_listener() const noexcept {
  return !layers_.empty() && layers_.front().entry->role == layer_role::listener;
}

bool pipeline::is_bound() const noexcept {
  return !layers_.empty() && layers_.front().entry->role == layer_role::bound;
}

const pipeline_layer* pipeline::application() const noexcept {
  if (layers_.empty() || layers_.back().entry->role != layer_role::application) return nullptr;
  return &layers_.back();
}

properties pipeline::top() const noexcept {
  auto built = built_count(layers_);
  return built == 0 ? properties{} : layers_[built - 1].offers;
}

std::string pipeline::describe() const {
  std::vector<std::string> names;
  std::size_t width = 0;
  for (const auto& layer : layers_) {
    names.push_back(layer.spec.text());
    width = std::max(width, names.back().size());
  }
  std::string out;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    out += names[i];
    out.append(width - names[i].size(), ' ');
    out += "  ->  ";
    const auto& offers = layers_[i].offers;
    if (layers_[i].entry->role == layer_role::application) {
      // Not a stream or messages: only what describes the connection it runs on.
      out += "application";
      if (offers.secure) out += " secure";
      if (offers.authenticated) out += " authenticated";
      if (offers.domain != domain::unspecified) out += " " + std::string(to_string(offers.domain));
    } else {
      out += strata::describe(offers);
    }
    out += '\n';
  }
  return out;
}

std::string stack_error::where() const {
  std::string out = op_;
  if (!spec_.empty()) out += (out.empty() ? "" : " ") + spec_;
  if (!layer_.empty()) out += (out.empty() ? "" : ": ") + layer_;
  return out;
}

std::string stack_error::message() const {
  std::string out = where();
  std::string what = detail_.empty() ? code_.message() : detail_;
  return out.empty() ? what : out + ": " + what;
}

task<stack_result<any_connection>> pipeline::connect(deadline dl) const {
  if (layers_.empty() || layers_.front().entry->role != layer_role::connector) {
    return refused(stack_error("connect", text_, {}, make_error_code(errc::invalid_argument),
                               is_bound()
                                   ? "a bound pipeline is connection-less; it cannot connect (use bind)"
                                   : "a listener pipeline accepts; it cannot connect (use listen)"));
  }
  return connect_stack(stack_copy{layers_, entries_, text_}, dl);
}

stack_result<any_listener> pipeline::listen(listen_options options) const {
  if (!is_listener()) {
    return stack_error("listen", text_, {}, make_error_code(errc::invalid_argument),
                       is_bound() ? "a bound pipeline is connection-less; it cannot listen (use bind)"
                                  : "a connector pipeline connects; it cannot listen (use connect)");
  }
  const auto& bottom_layer = layers_.front();
  auto bottom = bottom_layer.entry->listen(bottom_layer.options);
  if (!bottom) return stack_error("listen", text_, bottom_layer.spec.name, bottom.error());
  auto built = static_cast<std::ptrdiff_t>(built_count(layers_));
  if (built == 1) return std::move(*bottom);
  // The layer right above a datagram listener may check new senders' first datagrams
  // before the listener keeps anything for them (dtls's cookie exchange). A listener that
  // takes no gate leaves it to the layer's handshake.
  const auto& above = layers_[1];
  if (above.entry->gate) {
    if (auto gate = above.entry->gate(*above.options)) (void)bottom->set_gate(std::move(gate));
  }
  auto upper = std::make_shared<const stack_copy>(
      stack_copy{std::vector<pipeline_layer>(layers_.begin() + 1, layers_.begin() + built), entries_, text_});
  return any_listener(
      std::make_unique<stacked_listener>(std::move(*bottom), std::move(upper), options.handshakes));
}

stack_result<any_datagram> pipeline::bind() const {
  if (!is_bound()) {
    return stack_error("bind", text_, {}, make_error_code(errc::invalid_argument),
                       is_listener() ? "a listener pipeline accepts connections; it cannot bind (use listen)"
                                     : "a connector pipeline connects; it cannot bind (use connect)");
  }
  const auto& bottom = layers_.front();
  auto endpoint = bottom.entry->bind(bottom.options);
  if (!endpoint) return stack_error("bind", text_, bottom.spec.name, endpoint.error());
  return std::move(*endpoint);
}

task<stack_result<any_connection>> connect(std::string_view spec_text, deadline dl,
                                           const protocol_registry& protocols) {
  pipeline_error error;
  auto p = pipeline::parse(spec_text, error, protocols);
  if (!p) {
    return refused(stack_error("connect", std::string(spec_text), {}, make_error_code(errc::invalid_argument),
                               error.message));
  }
  return p->connect(dl);
}

stack_result<any_listener> listen(std::string_view spec_text, listen_options options,
                                  const protocol_registry& protocols) {
  pipeline_error error;
  auto p = pipeline::parse(spec_text, error, protocols);
  if (!p)
    return stack_error("listen", std::string(spec_text), {}, make_error_code(errc::invalid_argument),
                       error.message);
  return p->listen(options);
}

stack_result<any_datagram> bind(std::string_view spec_text, const protocol_registry& protocols) {
  pipeline_error error;
  auto p = pipeline::parse(spec_text, error, protocols);
  if (!p)
    return stack_error("bind", std::string(spec_text), {}, make_error_code(errc::invalid_argument),
                       error.message);
  return p->bind();
}

}  // namespace strata
