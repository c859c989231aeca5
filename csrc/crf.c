/* Linear-chain CRF and MEMM kernels (see crf.h); one source for both precisions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crf.h"
#include "fc_parallel.h"

/* an atomic update and read of a shared variable (no-ops without OpenMP: one thread) */
#ifdef _OPENMP
#define FC_CRF_ATOMIC FC_PRAGMA(omp atomic update)
#define FC_CRF_ATOMIC_READ FC_PRAGMA(omp atomic read)
#else
#define FC_CRF_ATOMIC
#define FC_CRF_ATOMIC_READ
#endif

#define FC_REAL_DOUBLE 0
#include "fc_real.h"
#include "crf_impl.h"

#undef FC_REAL_DOUBLE
#define FC_REAL_DOUBLE 1
#include "fc_real.h"
#include "crf_impl.h"
