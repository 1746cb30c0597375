// Umbrella header of strata's runtime layer.
#pragma once

#include "strata/runtime/channel.hpp"
#include "strata/runtime/deadline.hpp"
#include "strata/runtime/error.hpp"
#include "strata/runtime/event.hpp"
#include "strata/runtime/event_loop.hpp"
#include "strata/runtime/memory.hpp"
#include "strata/runtime/pollable_fd.hpp"
#include "strata/runtime/result.hpp"
#include "strata/runtime/run.hpp"
#include "strata/runtime/scope.hpp"
#include "strata/runtime/task.hpp"
#include "strata/runtime/timer.hpp"
