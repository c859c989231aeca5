/* MEMM and Bi-MEMM: log-likelihood, gradients and the potentials of exact decoding (crf.h), float32.
 * crf_memm_f64.c is the other precision. */
#define FC_REAL_DOUBLE 0
#include "crf/crf_unit.h"
#include "crf/memm_lanes.h"
#include "crf/memm.h"
