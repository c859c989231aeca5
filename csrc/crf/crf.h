/* Linear-chain CRF and MEMM kernels: log-partition, path scores, forward-backward
 * (marginals and gradients), Viterbi and exact n-best Viterbi, MEMM losses.
 *
 * Layout (all C-contiguous):
 *   em     (B, T, K)  emission scores
 *   trans  (K, K)     trans[i*K + j] = score of label i followed by label j
 *   start  (K,)       score of the first label, or NULL (zeros)
 *   end    (K,)       score of the last label, or NULL (zeros)
 *   mask   (B, T)     uint8, nonzero = position kept, or NULL (all kept).  Masked
 *                     positions are removed and the chain joins the kept ones.
 *   tags   (B, T)     int64 labels, read only at kept positions (the caller checks
 *                     they are in [0, K)).
 * -inf in trans/start/end means "forbidden"; the caller rejects NaN and +inf.
 * A sequence with no kept position has log Z = 0 and score 0.
 *
 * The forward-backward runs in exp space with per-step rescaling (K^2
 * multiply-adds and K exps per token); a sequence whose rescaled recursion comes
 * close to underflow (extreme score ranges, constraints that leave almost no
 * mass) is redone in log space in double, so results are exact to rounding for
 * any finite scores.  Log-scales and every sum over time are accumulated in double.
 *
 * Threads split the batch; results do not depend on n_threads.
 * Every function returns an fc_status code (fc_status.h).
 */
#ifndef FC_CRF_H
#define FC_CRF_H

#include <stddef.h>
#include <stdint.h>
#include "core/fc_request.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The problem every CRF / MEMM operation reads.  Real arrays (em, trans, start, end, and the
 * real outputs of the operations) are float or double by dtype. */
typedef struct fc_crf_problem {
    fc_dtype dtype;
    fc_path path;           /* FC_PATH_REFERENCE: crf/crf_reference.c answers (tests) */
    ptrdiff_t B, T, K;      /* batch, time steps, labels (K >= 1) */
    const void *em;         /* (B, T, K) */
    const void *trans;      /* (K, K); the MEMM operations read it as G (see fc_memm_nll) */
    const void *start;      /* (K,) or NULL (zeros); CRF only */
    const void *end;        /* (K,) or NULL (zeros); CRF only */
    const uint8_t *mask;    /* (B, T) or NULL (all kept) */
    const int64_t *tags;    /* (B, T) or NULL */
    int n_threads;          /* at most this many threads (>= 1) */
} fc_crf_problem;

/* log Z (B,) and, when score != NULL (needs tags), the score of tags (B,). */
int fc_crf_forward(const fc_crf_problem *p, double *logz, double *score);

/* What one forward-backward writes; every field may be NULL.  node (B,T,K) marginals, pair
 * (B,T,K,K) pairwise marginals of (previous kept, t); g_em (B,T,K), g_trans (K,K), g_start (K,),
 * g_end (K,): gradients of sum_b weight[b] * (log Z_b - score_b) (need tags and weight (B,)).
 * Real arrays are of the problem's dtype; logz, score and weight are double. */
typedef struct fc_crf_fb_out {
    const double *weight;
    double *logz, *score;
    void *node, *pair;
    void *g_em, *g_trans, *g_start, *g_end;
} fc_crf_fb_out;
int fc_crf_fb(const fc_crf_problem *p, const fc_crf_fb_out *out);

/* Best top_k paths: paths (B, top_k, T) int64 (-1 at masked positions and for missing paths),
 * scores (B, top_k) double (-inf for missing paths). */
int fc_crf_viterbi(const fc_crf_problem *p, ptrdiff_t top_k, int64_t *paths, double *scores);

/* MEMM log-likelihood ll (B,) of tags (left-to-right, or the mean of both directions when
 * bidir), and when g_em != NULL the gradients g_em (B,T,K) and g_trans (K,K) (problem dtype) of
 * sum_b weight[b] * (-ll_b) (weight (B,) then needed; g_trans without g_em: FC_BAD_ARGUMENT). */
int fc_memm_nll(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em,
                void *g_trans);

/* Unary potentials out (B,T,K) (problem dtype) whose CRF path score with trans (no start/end)
 * is the exact MEMM log-likelihood wf * forward + wb * backward (wf + wb = 1). */
int fc_memm_potentials(const fc_crf_problem *p, double wf, double wb, void *out);

/* Validity of inputs already in kernel layout, in one pass: returns a bit set, 1 = em holds NaN
 * or +-inf, 2 = trans / start / end hold NaN or +inf (-inf is allowed), 4 = tags (may be NULL)
 * outside [0, K) at a kept position.  0 = valid, -1 = bad sizes.  Up to n_threads threads over
 * the sequences, from 64K emissions a thread. */
int fc_crf_check(const fc_crf_problem *p);

#ifdef __cplusplus
}
#endif
#endif /* FC_CRF_H */
