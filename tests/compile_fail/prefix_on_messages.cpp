// expect: lower_is_stream
// prefix needs a stream below it; prefix provides messages.
#include "strata/adapt/prefix.hpp"
#include "strata/transport/unix.hpp"

strata::prefix<strata::prefix<strata::uds::stream>>* refused = nullptr;
int main() {}
