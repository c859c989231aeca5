/* Linear-chain CRF: Viterbi and exact n-best (crf.h), float32.
 * crf_viterbi_f64.c is the other precision. */
#define FC_REAL_DOUBLE 0
#include "crf/crf_unit.h"
#include "crf/viterbi.h"
