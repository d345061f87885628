#pragma once
// Umbrella header for the spattn C++ API: what an inference engine links
// (libspattn.a). The lab (reference, baselines, workloads, metrics, the
// tuner's search) is spattn/lab/lab.hpp, for the tools and tests.
#include "spattn/attention.hpp"
#include "spattn/block_mask.hpp"
#include "spattn/config.h"
#include "spattn/error.hpp"
#include "spattn/isa.hpp"
#include "spattn/kv_cache.hpp"
#include "spattn/patterns.hpp"
#include "spattn/phase_times.hpp"
#include "spattn/session.hpp"
#include "spattn/shape.hpp"
#include "spattn/version.hpp"
#if SPATTN_HAS_YAML
#include "spattn/profile.hpp"
#endif
