/* MEMM and Bi-MEMM: log-likelihood, gradients and the potentials of exact decoding (crf.h), float64.
 * crf_memm_f32.c is the other precision. */
#define FC_REAL_DOUBLE 1
#include "crf/crf_unit.h"
#include "crf/memm_lanes.h"
#include "crf/memm.h"
