// expect: lower_is_stream
// crlf needs a stream below it; prefix provides messages.
#include "strata/adapt/crlf.hpp"
#include "strata/adapt/prefix.hpp"
#include "strata/transport/tcp.hpp"

strata::crlf<strata::prefix<strata::tcp::stream>>* refused = nullptr;
int main() {}
