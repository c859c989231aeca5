/* Linear-chain CRF and MEMM kernels (see crf.h); one source for both precisions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crf.h"
#include "fc_parallel.h"

#define FC_REAL_DOUBLE 0
#include "fc_real.h"
#include "crf_impl.h"

#undef FC_REAL_DOUBLE
#define FC_REAL_DOUBLE 1
#include "fc_real.h"
#include "crf_impl.h"
