// buffered: the explicit instantiation of the common stack (the pipeline's).
#include "strata/adapt/buffered.hpp"

namespace strata {

template class buffered<any_stream>;

}  // namespace strata
