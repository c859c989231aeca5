/* Linear-chain CRF: Viterbi and exact n-best (crf.h), float64.
 * crf_viterbi_f32.c is the other precision. */
#define FC_REAL_DOUBLE 1
#include "crf/crf_unit.h"
#include "crf/viterbi.h"
