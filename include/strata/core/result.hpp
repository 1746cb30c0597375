// Forwarding header: result<T> lives in the runtime layer (strata/runtime/result.hpp),
// below core, so that runtime never includes core. Include that header in new code.
#pragma once

#include "strata/runtime/result.hpp"
