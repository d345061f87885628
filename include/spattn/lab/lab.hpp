#pragma once
// The lab: what the tools and tests use beside the library (libspattn_lab.a):
// the double-precision reference and the dense baselines, the synthetic
// workload and .npy I/O, accuracy metrics, evaluate() and the tuner's search.
// An inference engine needs none of it.
#include "spattn/lab/baselines.hpp"
#include "spattn/lab/evaluate.hpp"
#include "spattn/lab/workload.hpp"
#include "spattn/spattn.hpp"
#if SPATTN_HAS_YAML
#include "spattn/lab/tune.hpp"
#endif
