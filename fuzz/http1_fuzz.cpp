// Fuzz target for http1's peer-input parsers: the request head parser, the response head
// parser and the chunked decoder.
//
// Input: byte 0 picks the parser (mod 3) and byte 1 the size of the pieces the rest is
// fed in (1..64; the connection's reads). The rest is what a peer sent. Each parser runs
// once on the whole input and once fed piece by piece, growing its input as a connection
// does. Invariants (abort() on violation): both feedings reach the same outcome (the same
// head, error, consumed size, body bytes and trailers); every view lies inside the input;
// a head is never longer than max_header_block; a body never exceeds max_body; a step
// never consumes more than it was given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "strata/app/http1.hpp"

namespace {

namespace http1 = strata::http1;

void check(bool ok) {
  if (!ok) std::abort();
}

bool inside(std::string_view view, std::string_view input) {
  return view.empty() ||
         (view.data() >= input.data() && view.data() + view.size() <= input.data() + input.size());
}

http1::limits fuzz_limits() {
  http1::limits l;
  l.max_request_line = 256;
  l.max_header_block = 1024;
  l.max_fields = 16;
  l.max_body = 4096;
  l.max_chunk_line = 64;
  l.max_trailer_block = 256;
  return l;
}

struct head_outcome {
  http1::head_parser::status st = http1::head_parser::status::incomplete;
  std::size_t consumed = 0;
  http1::error failure{};
  std::vector<std::string> parts;  // start line pieces and fields, as text
};

template <class Head>
void record_fields(const Head& head, std::string_view input, head_outcome& out) {
  for (const auto& f : head.fields.all()) {
    check(inside(f.name, input) && inside(f.value, input));
    out.parts.emplace_back(f.name);
    out.parts.emplace_back(f.value);
  }
}

head_outcome parse_head(bool request, std::string_view input, std::size_t piece) {
  http1::head_parser parser(fuzz_limits());
  head_outcome out;
  std::size_t fed = 0;
  for (;;) {
    fed = std::min(input.size(), fed + piece);
    auto seen = input.substr(0, fed);
    if (request) {
      http1::request_head head;
      out.st = parser.parse_request(seen, head);
      if (out.st == http1::head_parser::status::complete) {
        check(inside(head.method, seen) && inside(head.target, seen) && inside(head.upgrade, seen));
        out.parts = {std::string(head.method),
                     std::string(head.target),
                     std::to_string(head.minor_version),
                     std::to_string(static_cast<int>(head.framing)),
                     std::to_string(head.content_length),
                     std::to_string(head.keep_alive),
                     std::to_string(head.expect_continue)};
        record_fields(head, seen, out);
      }
    } else {
      http1::response_head head;
      out.st = parser.parse_response(seen, "GET", head);
      if (out.st == http1::head_parser::status::complete) {
        check(inside(head.reason, seen));
        check(head.status >= 100 && head.status <= 999);
        out.parts = {std::to_string(head.status), std::string(head.reason),
                     std::to_string(static_cast<int>(head.framing)), std::to_string(head.content_length),
                     std::to_string(head.keep_alive)};
        record_fields(head, seen, out);
      }
    }
    if (out.st == http1::head_parser::status::complete) {
      out.consumed = parser.consumed();
      check(out.consumed <= seen.size());
      check(out.consumed <= fuzz_limits().max_header_block + 8);
      return out;
    }
    if (out.st == http1::head_parser::status::failed) {
      out.failure = parser.failure();
      return out;
    }
    if (fed == input.size()) return out;
  }
}

struct chunked_outcome {
  std::string body;
  bool done = false;
  bool failed = false;
  http1::error failure{};
  std::size_t consumed = 0;
  std::vector<std::string> trailers;
};

chunked_outcome decode_chunked(std::string_view input, std::size_t piece) {
  http1::chunked_decoder decoder(fuzz_limits());
  chunked_outcome out;
  std::string pending;
  std::size_t fed = 0;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto step = decoder.decode(pending, piece);
    check(step.consumed <= pending.size());
    check(inside(step.data, pending));
    out.body.append(step.data);
    check(out.body.size() <= fuzz_limits().max_body);
    pending.erase(0, step.consumed);
    out.consumed += step.consumed;
    if (step.failed) {
      out.failed = true;
      out.failure = decoder.failure();
      return out;
    }
    if (step.done) {
      out.done = true;
      check(decoder.body_size() == out.body.size());
      for (const auto& f : decoder.trailers().all()) {
        out.trailers.emplace_back(f.name);
        out.trailers.emplace_back(f.value);
      }
      return out;
    }
    if (step.consumed == 0 && step.data.empty()) {
      if (fed == input.size()) return out;
      auto n = std::min(piece, input.size() - fed);
      pending.append(input.substr(fed, n));
      fed += n;
    }
  }
  std::abort();  // no progress: the decoder loops
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  int mode = data[0] % 3;
  std::size_t piece = 1 + data[1] % 64;
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  if (mode < 2) {
    auto whole = parse_head(mode == 0, input, input.size() + 1);
    auto pieces = parse_head(mode == 0, input, piece);
    check(whole.st == pieces.st);
    check(whole.consumed == pieces.consumed);
    check(whole.failure == pieces.failure);
    check(whole.parts == pieces.parts);
    return 0;
  }
  auto whole = decode_chunked(input, input.size() + 1);
  auto pieces = decode_chunked(input, piece);
  check(whole.done == pieces.done && whole.failed == pieces.failed);
  check(whole.failure == pieces.failure);
  check(whole.body == pieces.body);
  check(whole.trailers == pieces.trailers);
  if (whole.done) check(whole.consumed == pieces.consumed);
  return 0;
}
