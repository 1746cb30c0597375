// The run-time checker and the pipeline object. check_stack walks a parsed spec bottom
// up with the same capability rows the typed concepts use (first_unmet, stack_on), so a
// stack refused here is one that would not compile as templates either; its errors name
// the layer pair, the unmet property and, where the registry has one, the adapter that
// fixes it. pipeline then builds stacks through the registry's factories.
#include "strata/pipeline/pipeline.hpp"

#include <algorithm>
#include <memory>
#include <utility>

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
std::string transport_names(const protocol_entry& upper) {
  std::vector<std::string_view> names;
  for (const auto& e : registry()) {
    if (e.role != layer_role::adapter && !first_unmet(transport_properties(*e.row), *upper.row)) {
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

std::string known_names() {
  std::string out;
  for (const auto& e : registry()) {
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
std::string adapter_first(const spec& parsed, const protocol_entry& entry) {
  const auto& first = parsed.layers.front();
  auto u = first_unmet(properties{}, *entry.row);
  std::string message = first.name + " needs " + (u ? needs_phrase(*u) : std::string("a transport")) +
                        " below it, but it is the first layer; a pipeline starts with a transport (" +
                        transport_names(entry) + ")";
  for (std::size_t i = 1; i < parsed.layers.size(); ++i) {
    const auto* later = find_protocol(parsed.layers[i].name);
    if (!later || later->role == layer_role::adapter) continue;
    std::string reordered = written(parsed.layers[i], *later);
    for (std::size_t j = 0; j < parsed.layers.size(); ++j) {
      if (j != i) reordered += " | " + parsed.layers[j].text();
    }
    return message + ": " + parsed.layers[i].name + " must be the first layer, as in `" + reordered + "`";
  }
  return message + ", e.g. `tcp:HOST:PORT | " + first.text() + "`";
}

/// unmet_message explains an adapter whose requirements the layer below does not meet.
std::string unmet_message(const spec_layer& upper, const protocol_entry& entry, const spec_layer& lower,
                          const properties& below, const unmet& u) {
  std::string message = upper.name + " needs " + needs_phrase(u) + " below it, but " + lower.text() +
                        " provides " + std::string(u.offered) +
                        " (unmet property: " + std::string(to_string(u.property)) + ")";
  auto chain = find_adapters(below, *entry.row);
  if (chain.empty()) {
    return message + "; no registered adapter turns " + std::string(u.offered) + " into " +
           std::string(u.needed);
  }
  std::string inserted;
  for (const auto* a : chain) inserted += (inserted.empty() ? "" : " | ") + suggestion(*a);
  return message + "; insert " + inserted + " between them: `" + lower.text() + " | " + inserted + " | " +
         upper.text() + "`";
}

/// wrap_upper stacks `upper` layers, bottom first, on `conn`.
result<any_connection> wrap_upper(any_connection conn, std::span<const pipeline_layer> upper) {
  for (const auto& layer : upper) {
    auto next = layer.entry->wrap(std::move(conn), layer.spec);
    if (!next) return unexpected(next.error());
    conn = std::move(*next);
  }
  return conn;
}

task<result<any_connection>> connect_stack(task<result<any_connection>> bottom,
                                           std::vector<pipeline_layer> upper) {
  auto conn = co_await std::move(bottom);
  if (!conn) co_return unexpected(conn.error());
  co_return wrap_upper(std::move(*conn), upper);
}

task<result<any_connection>> refused(errc e) { co_return e; }

/// stacked_listener accepts from the transport's listener and stacks the upper layers
/// on every accepted connection.
class stacked_listener final : public any_listener::iface {
 public:
  stacked_listener(any_listener bottom, std::vector<pipeline_layer> upper)
      : bottom_(std::move(bottom)), upper_(std::move(upper)) {}

  task<result<any_connection>> accept(deadline dl) override {
    auto conn = co_await bottom_.accept(dl);
    if (!conn) co_return unexpected(conn.error());
    co_return wrap_upper(std::move(*conn), upper_);
  }
  result<address> local_address() const override { return bottom_.local_address(); }
  void close() override { bottom_.close(); }

 private:
  any_listener bottom_;
  std::vector<pipeline_layer> upper_;
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

bool check_stack(const spec& parsed, std::vector<pipeline_layer>& layers, pipeline_error& error) {
  layers.clear();
  if (parsed.layers.empty()) return refuse(error, "empty pipeline", 0);
  properties below{};
  for (std::size_t i = 0; i < parsed.layers.size(); ++i) {
    const auto& layer = parsed.layers[i];
    const auto* entry = find_protocol(layer.name);
    if (!entry) {
      auto close = closest_protocol(layer.name);
      std::string hint = close.empty() ? "; known protocols: " + known_names()
                                       : "; did you mean '" + std::string(close) + "'?";
      return refuse(error, "unknown protocol '" + layer.name + "'" + hint, layer.position);
    }
    bool transport = entry->role != layer_role::adapter;
    if (i == 0 && !transport) return refuse(error, adapter_first(parsed, *entry), layer.position);
    if (i > 0 && transport) {
      return refuse(error,
                    layer.name + " is a transport (" + std::string(to_string(entry->role)) +
                        ") and must be the first layer, but it stands above " + parsed.layers[i - 1].text() +
                        "; a pipeline has one transport, at the bottom",
                    layer.position);
    }
    if (entry->validate) {
      spec_error why;
      if (!entry->validate(layer, why)) return refuse(error, why.message, why.position);
    }
    if (i > 0) {
      if (auto u = first_unmet(below, *entry->row)) {
        return refuse(error, unmet_message(layer, *entry, parsed.layers[i - 1], below, *u), layer.position);
      }
    }
    properties offers = stack_on(below, *entry->row);
    if (entry->refine) offers = entry->refine(offers, layer);
    layers.push_back(pipeline_layer{layer, entry, offers});
    below = offers;
  }
  return true;
}

std::optional<pipeline> pipeline::parse(std::string_view text, pipeline_error& error) {
  spec parsed;
  spec_error why;
  if (!parse_spec(text, parsed, why)) {
    error = pipeline_error{why.message, why.position};
    return std::nullopt;
  }
  pipeline p;
  if (!check_stack(parsed, p.layers_, error)) return std::nullopt;
  p.text_ = std::string(text);
  return p;
}

bool pipeline::is_listener() const noexcept {
  return !layers_.empty() && layers_.front().entry->role == layer_role::listener;
}

properties pipeline::top() const noexcept { return layers_.empty() ? properties{} : layers_.back().offers; }

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
    out += strata::describe(layers_[i].offers);
    out += '\n';
  }
  return out;
}

task<result<any_connection>> pipeline::connect(deadline dl) const {
  if (layers_.empty() || layers_.front().entry->role != layer_role::connector) {
    return refused(errc::invalid_argument);
  }
  // The bottom factory reads its spec_layer before returning; the rest is copied into
  // the task so the task does not depend on this object.
  auto bottom = layers_.front().entry->connect(layers_.front().spec, dl);
  return connect_stack(std::move(bottom), std::vector<pipeline_layer>(layers_.begin() + 1, layers_.end()));
}

result<any_listener> pipeline::listen() const {
  if (!is_listener()) return errc::invalid_argument;
  auto bottom = layers_.front().entry->listen(layers_.front().spec);
  if (!bottom) return unexpected(bottom.error());
  if (layers_.size() == 1) return std::move(*bottom);
  return any_listener(std::make_unique<stacked_listener>(
      std::move(*bottom), std::vector<pipeline_layer>(layers_.begin() + 1, layers_.end())));
}

task<result<any_connection>> connect(std::string_view spec_text, deadline dl) {
  pipeline_error error;
  auto p = pipeline::parse(spec_text, error);
  if (!p) return refused(errc::invalid_argument);
  return p->connect(dl);
}

result<any_listener> listen(std::string_view spec_text) {
  pipeline_error error;
  auto p = pipeline::parse(spec_text, error);
  if (!p) return errc::invalid_argument;
  return p->listen();
}

}  // namespace strata
