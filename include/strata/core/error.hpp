// Forwarding header: the error model lives in the runtime layer
// (strata/runtime/error.hpp), below core, so that runtime never includes core. Include
// that header in new code.
#pragma once

#include "strata/runtime/error.hpp"
