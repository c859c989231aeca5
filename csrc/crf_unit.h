/* What crf_f32.c and crf_f64.c share: the headers and helpers around one instantiation of
 * crf_impl.h (FC_REAL_DOUBLE is defined by the including .c file). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crf.h"
#include "fc_parallel.h"

/* ranks of fc_crf_check at most (a pass over the emissions: a few ranks saturate memory) */
#define FC_CRF_CHECK_RANKS 64

#include "fc_real.h"
#include "crf_impl.h"
