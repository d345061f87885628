#pragma once
// Umbrella header for the spattn C++ API.
#include "spattn/attention.hpp"
#include "spattn/baselines.hpp"
#include "spattn/block_mask.hpp"
#include "spattn/error.hpp"
#include "spattn/isa.hpp"
#include "spattn/shape.hpp"
#include "spattn/patterns.hpp"
#include "spattn/session.hpp"
#include "spattn/evaluate.hpp"
