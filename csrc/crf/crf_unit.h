/* What every CRF / MEMM translation unit shares (crf_forward_*.c, crf_viterbi_*.c, crf_memm_*.c,
 * one per operation group and precision, FC_REAL_DOUBLE defined by the including .c file): the
 * headers, the thread heuristic, and the vector helpers and tables of vec.h and tables.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crf/crf_internal.h"
#include "core/fc_parallel.h"
#include "core/fc_simd.h"

/* ranks of fc_crf_check at most (a pass over the emissions: a few ranks saturate memory) */
#define FC_CRF_CHECK_RANKS 64

/* Work per thread below which a second thread does not pay, in units of one token's K (K + 16)
 * multiply-adds (see fc_crf_threads).  Measured on 2 cores (Viterbi, K = 5 / 9 / 50): 2 threads
 * were 4-8% slower at 2k-4k units, even at 17k-36k, 1.2-1.3x faster from 40k-90k. */
#ifndef FC_CRF_THREAD_WORK
#define FC_CRF_THREAD_WORK 32000
#endif

/* Threads for a call over `items` work items holding `tokens` tokens of K labels: at most one
 * per FC_CRF_THREAD_WORK units of work, so that small calls stay on the calling thread. */
static inline int fc_crf_threads(int n_threads, ptrdiff_t items, ptrdiff_t tokens, ptrdiff_t K)
{
    return fc_clamp_threads(fc_clamp_threads(n_threads, tokens * K * (K + 16) / FC_CRF_THREAD_WORK + 1), items);
}

#include "core/fc_real.h"
#include "crf/vec.h"
#include "crf/tables.h"
