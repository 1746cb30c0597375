// bytes: the common instantiation (include/strata/adapt/bytes.hpp).
#include "strata/adapt/bytes.hpp"

namespace strata {

template class bytes_stream<any_message>;

}  // namespace strata
