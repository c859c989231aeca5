/* What crf_f32.c and crf_f64.c share: the headers and helpers around one instantiation of
 * crf_impl.h (FC_REAL_DOUBLE is defined by the including .c file). */
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

#include "fc_real.h"
#include "crf_impl.h"
