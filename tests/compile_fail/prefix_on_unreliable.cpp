// expect: lower_is_reliable
// prefix needs a reliable stream: one lost byte would desynchronise every later frame.
#include "strata/adapt/prefix.hpp"

namespace {

// A byte stream that admits it may lose bytes (as `udp | bytes` would).
inline constexpr strata::capability_row lossy_row{
    .name = "lossy",
    .provided = strata::prop::unit | strata::prop::ordered,
    .provided_value = {.unit = strata::unit::stream, .ordered = true},
};

struct lossy_stream {
  static constexpr strata::properties capabilities = strata::transport_properties(lossy_row);
  strata::task<strata::result<std::size_t>> read_some(strata::mutable_buffer, strata::deadline);
  strata::task<strata::result<void>> write(strata::const_buffers, strata::deadline);
  strata::task<strata::result<void>> shutdown_write(strata::deadline);
  strata::task<strata::result<void>> close(strata::deadline);
};

}  // namespace

strata::prefix<lossy_stream>* refused = nullptr;
int main() {}
