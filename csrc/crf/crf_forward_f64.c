/* Linear-chain CRF: log-partition and path scores, forward-backward (marginals, gradients) and the input check (crf.h), float64.
 * crf_forward_f32.c is the other precision. */
#define FC_REAL_DOUBLE 1
#include "crf/crf_unit.h"
#include "crf/check.h"
#include "crf/scaled.h"
#include "crf/logspace.h"
#include "crf/forward.h"
