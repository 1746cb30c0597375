// The spec-string parser: a hand-written recursive-descent reader over the grammar in
// include/strata/pipeline/spec.hpp. It only reads text; the registry gives it meaning
// (it is consulted once, for the example in a "missing target" message).
// Every error carries the offset of the byte the reader stopped at, so a caret can point
// at it; specs come from users and files, hence the hard bounds on size and counts.
#include "strata/pipeline/spec.hpp"

#include <algorithm>
#include <cstdio>

#include "strata/pipeline/registry.hpp"

namespace strata {
namespace {

bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_name_char(char c) noexcept { return is_alpha(c) || is_digit(c) || c == '-' || c == '_'; }
bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_control(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}
/// is_target_char: what a bare TARGET may contain (addresses use ':', '[', '@', '/').
bool is_target_char(char c) noexcept {
  return !is_space(c) && !is_control(c) && c != '|' && c != '(' && c != ')' && c != '"';
}
/// is_value_char: what a bare VALUE may contain.
bool is_value_char(char c) noexcept { return is_target_char(c) && c != ',' && c != '='; }

// target_example shows the registered target form of `name` (" (e.g. mq:/NAME)"); empty
// for a name the registry does not know or one that takes no target.
std::string target_example(const std::string& name) {
  const protocol_entry* entry = find_protocol(name);
  if (entry == nullptr || entry->target_help.empty()) return {};
  std::string_view help = entry->target_help;
  return " (e.g. " + name + ":" + std::string(help.substr(0, help.find(' '))) + ")";
}

std::string show_char(char c) {
  if (is_control(c) || static_cast<unsigned char>(c) >= 0x80) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
    return std::string("byte ") + buf;
  }
  return std::string("'") + c + "'";
}

int hex_value(char c) noexcept {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string quote(std::string_view value) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\0':
        out += "\\0";
        break;
      default:
        if (is_control(c)) {
          auto u = static_cast<unsigned char>(c);
          out += "\\x";
          out += hex[u >> 4];
          out += hex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string quote_target(std::string_view target) {
  if (!target.empty() && std::all_of(target.begin(), target.end(), is_target_char))
    return std::string(target);
  return quote(target);
}

class parser {
 public:
  parser(std::string_view text, spec_error& error) : t_(text), error_(error) {}

  bool run(spec& out) {
    out = spec{};
    if (t_.size() > max_spec_length) {
      return fail("spec is too long (" + std::to_string(t_.size()) + " bytes; at most " +
                      std::to_string(max_spec_length) + ")",
                  max_spec_length);
    }
    out.text = std::string(t_);
    skip_space();
    if (at_end()) return fail("empty pipeline: expected a protocol name such as 'tcp:HOST:PORT'", i_);
    for (;;) {
      skip_space();
      if (at_end()) return fail("empty layer after '|': expected a protocol name", i_);
      if (peek() == '|') return fail("empty layer: expected a protocol name before '|'", i_);
      if (out.layers.size() == max_spec_layers) {
        return fail("too many layers (at most " + std::to_string(max_spec_layers) + ")", i_);
      }
      spec_layer layer;
      if (!parse_layer(layer)) return false;
      out.layers.push_back(std::move(layer));
      skip_space();
      if (at_end()) return true;
      char c = peek();
      if (c == '|') {
        ++i_;
        continue;
      }
      if (c == ')') return fail("unexpected ')' with no matching '('", i_);
      if (c == '(') return fail("unexpected '(': parameters follow the name or target directly", i_);
      if (c == ':') return fail("unexpected ':': the target follows the name without spaces", i_);
      return fail("unexpected " + show_char(c) + ": layers are separated by '|'", i_);
    }
  }

 private:
  bool at_end() const noexcept { return i_ >= t_.size(); }
  char peek() const noexcept { return t_[i_]; }
  void skip_space() noexcept {
    while (!at_end() && is_space(peek())) ++i_;
  }
  bool fail(std::string message, std::size_t position) {
    error_.message = std::move(message);
    error_.position = std::min(position, t_.size());
    return false;
  }

  bool parse_layer(spec_layer& layer) {
    std::size_t start = i_;
    char c = peek();
    if (!is_alpha(c)) {
      if (c == '"') return fail("a protocol name cannot be quoted", i_);
      if (c == '(') return fail("missing protocol name before '('", i_);
      if (c == ')') return fail("unexpected ')' with no matching '('", i_);
      if (c == ':') return fail("missing protocol name before ':'", i_);
      return fail("expected a protocol name (a letter first), found " + show_char(c), i_);
    }
    while (!at_end() && is_name_char(peek())) ++i_;
    layer.name = std::string(t_.substr(start, i_ - start));
    layer.position = start;
    std::size_t end = i_;
    if (!at_end() && peek() == ':') {
      ++i_;
      layer.target_position = i_;
      if (at_end() || !(peek() == '"' || is_target_char(peek()))) {
        return fail("missing target after ':'" + target_example(layer.name), i_);
      }
      if (peek() == '"') {
        if (!parse_quoted(layer.target)) return false;
        if (layer.target.empty()) return fail("empty target", layer.target_position);
      } else {
        std::size_t t = i_;
        while (!at_end() && is_target_char(peek())) ++i_;
        layer.target = std::string(t_.substr(t, i_ - t));
      }
      end = i_;
    }
    skip_space();
    if (!at_end() && peek() == '(') {
      if (!parse_params(layer)) return false;
      end = i_;
    }
    layer.length = end - start;
    return true;
  }

  bool parse_params(spec_layer& layer) {
    std::size_t open = i_;
    auto unclosed = [&](std::size_t where) {
      return fail("missing ')' to close the '(' at offset " + std::to_string(open), where);
    };
    ++i_;
    skip_space();
    if (!at_end() && peek() == ')') {
      ++i_;
      return true;
    }
    for (;;) {
      skip_space();
      if (at_end()) return unclosed(i_);
      char c = peek();
      if (c == ',' || c == ')') return fail("empty parameter", i_);
      if (layer.params.size() == max_spec_params) {
        return fail("too many parameters (at most " + std::to_string(max_spec_params) + ")", i_);
      }
      spec_param p;
      p.position = i_;
      if (!parse_param(p, open)) return false;
      layer.params.push_back(std::move(p));
      skip_space();
      if (at_end()) return unclosed(i_);
      c = peek();
      if (c == ',') {
        ++i_;
        continue;
      }
      if (c == ')') {
        ++i_;
        return true;
      }
      if (c == '|') return unclosed(i_);
      if (c == '(') return fail("unexpected '(' inside parameters", i_);
      if (c == '=') return fail("unexpected '=' (quote a value that contains '=')", i_);
      return fail("expected ',' or ')' after a parameter, found " + show_char(c), i_);
    }
  }

  bool parse_param(spec_param& p, std::size_t open) {
    if (peek() == '"') {
      if (!parse_quoted(p.value)) return false;
      std::size_t after = i_;
      skip_space();
      if (!at_end() && peek() == '=') return fail("a parameter name cannot be quoted", p.position);
      i_ = after;
      return true;
    }
    if (is_alpha(peek())) {
      std::size_t k = i_;
      while (!at_end() && is_name_char(peek())) ++i_;
      std::size_t key_end = i_;
      skip_space();
      if (!at_end() && peek() == '=') {
        p.key = std::string(t_.substr(k, key_end - k));
        ++i_;
        skip_space();
        if (!at_end() && peek() == '"') return parse_quoted(p.value);
        std::size_t v = i_;
        while (!at_end() && is_value_char(peek())) ++i_;
        if (i_ == v) {
          return fail("missing value for '" + p.key + "' (write \"\" for an empty value)", i_);
        }
        p.value = std::string(t_.substr(v, i_ - v));
        return true;
      }
      i_ = k;  // not a key: re-read it as a positional value
    }
    std::size_t v = i_;
    while (!at_end() && is_value_char(peek())) ++i_;
    if (i_ == v) {
      char c = peek();
      if (c == '(') return fail("unexpected '(' inside parameters", i_);
      if (c == '|') return fail("missing ')' to close the '(' at offset " + std::to_string(open), i_);
      if (c == '=') return fail("missing parameter name before '='", i_);
      return fail("unexpected " + show_char(c) + " in parameters (quote such values)", i_);
    }
    p.value = std::string(t_.substr(v, i_ - v));
    return true;
  }

  /// parse_quoted reads a "quoted string" starting at the opening quote.
  bool parse_quoted(std::string& out) {
    std::size_t open = i_;
    ++i_;
    out.clear();
    for (;;) {
      if (at_end()) return fail("unterminated quoted string (missing '\"')", open);
      char c = peek();
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      std::size_t esc = i_;
      ++i_;
      if (at_end()) return fail("unterminated quoted string (missing '\"')", open);
      char e = peek();
      ++i_;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case '0':
          out += '\0';
          break;
        case 'x': {
          int hi = at_end() ? -1 : hex_value(peek());
          int lo = (hi < 0 || i_ + 1 >= t_.size()) ? -1 : hex_value(t_[i_ + 1]);
          if (hi < 0 || lo < 0) return fail("'\\x' needs two hex digits", esc);
          out += static_cast<char>(hi * 16 + lo);
          i_ += 2;
          break;
        }
        default:
          return fail("unknown escape '\\" + std::string(1, e) + "' (use \\\" \\\\ \\n \\r \\t \\0 or \\xHH)",
                      esc);
      }
    }
  }

  std::string_view t_;
  spec_error& error_;
  std::size_t i_ = 0;
};

}  // namespace

std::string quote_spec_value(std::string_view value) {
  if (!value.empty() && std::all_of(value.begin(), value.end(), is_value_char)) return std::string(value);
  return quote(value);
}

const spec_param* spec_layer::param(std::string_view key, std::size_t index) const {
  for (const auto& p : params) {
    if (!p.key.empty() && p.key == key) return &p;
  }
  std::size_t n = 0;
  for (const auto& p : params) {
    if (!p.key.empty()) continue;
    if (n == index) return &p;
    ++n;
  }
  return nullptr;
}

std::string spec_layer::text() const {
  std::string out = name;
  if (!target.empty()) {
    out += ':';
    out += quote_target(target);
  }
  if (!params.empty()) {
    out += '(';
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (i) out += ", ";
      if (!params[i].key.empty()) {
        out += params[i].key;
        out += '=';
      }
      out += quote_spec_value(params[i].value);
    }
    out += ')';
  }
  return out;
}

std::string spec::canonical_text() const {
  std::string out;
  for (const auto& layer : layers) {
    if (!out.empty()) out += " | ";
    out += layer.text();
  }
  return out;
}

std::string spec_error::render(std::string_view text) const {
  // The caret line copies tabs and skips UTF-8 continuation bytes so the caret stays
  // under the right character in a terminal; line breaks are shown as spaces.
  std::string shown;
  std::string caret;
  std::size_t pos = std::min(position, text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    shown += (c == '\t' || !is_control(c)) ? c : ' ';
    if (i < pos && (static_cast<unsigned char>(c) & 0xc0) != 0x80) caret += c == '\t' ? '\t' : ' ';
  }
  return message + "\n  " + shown + "\n  " + caret + "^";
}

bool parse_spec(std::string_view text, spec& out, spec_error& error) { return parser(text, error).run(out); }

}  // namespace strata
