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
#include "fc_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FC_CRF_DECLARE(T, SUF)                                                                   \
    /* log Z (B,) and, when tags != NULL, the score of tags (B,). */                             \
    int fc_crf_forward##SUF(const T *em, const T *trans, const T *start, const T *end,           \
                            const uint8_t *mask, const int64_t *tags, ptrdiff_t B, ptrdiff_t Tn, \
                            ptrdiff_t K, double *logz, double *score, int n_threads);            \
    /* One forward-backward.  Outputs may be NULL:                                             \
     *   logz, score (B,) as above (score needs tags);                                           \
     *   node (B,T,K) marginals, pair (B,T,K,K) pairwise marginals of (previous kept, t);        \
     *   g_em (B,T,K), g_trans (K,K), g_start (K,), g_end (K,): gradients of                     \
     *   sum_b weight[b] * (log Z_b - score_b) (needs tags and weight). */                      \
    int fc_crf_fb##SUF(const T *em, const T *trans, const T *start, const T *end,                \
                       const uint8_t *mask, const int64_t *tags, ptrdiff_t B, ptrdiff_t Tn,      \
                       ptrdiff_t K, const double *weight, double *logz, double *score, T *node,  \
                       T *pair, T *g_em, T *g_trans, T *g_start, T *g_end, int n_threads);       \
    /* Best top_k paths: paths (B, top_k, T) int64 (-1 at masked positions and for             \
     * missing paths), scores (B, top_k) double (-inf for missing paths). */                    \
    int fc_crf_viterbi##SUF(const T *em, const T *trans, const T *start, const T *end,           \
                            const uint8_t *mask, ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K,         \
                            ptrdiff_t top_k, int64_t *paths, double *scores, int n_threads);     \
    /* MEMM log-likelihood (B,) of tags (left-to-right, or the mean of both directions        \
     * when bidir), and when g_em != NULL the gradients of sum_b weight[b] * (-ll_b). */         \
    int fc_memm_nll##SUF(const T *em, const T *trans, const uint8_t *mask, const int64_t *tags,  \
                         ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K, int bidir,                      \
                         const double *weight, double *ll, T *g_em, T *g_trans, int n_threads);  \
    /* Unary potentials (B,T,K) whose CRF path score with trans (no start/end) is the         \
     * exact MEMM log-likelihood wf * forward + wb * backward (wf + wb = 1). */                 \
    int fc_memm_potentials##SUF(const T *em, const T *trans, const uint8_t *mask, ptrdiff_t B,   \
                                ptrdiff_t Tn, ptrdiff_t K, double wf, double wb, T *out,         \
                                int n_threads);                                    \
    /* Validity of inputs already in kernel layout, in one pass: returns a bit set,      \
     * 1 = em (B*T*K) holds NaN or +-inf, 2 = trans (K*K) / start / end (K, may be NULL)     \
     * hold NaN or +inf (-inf is allowed), 4 = tags (B*T, may be NULL) outside [0, K) at a   \
     * kept position (mask may be NULL).  0 = valid.  Up to n_threads threads over the      \
     * sequences, from 64K emissions a thread. */                                            \
    int fc_crf_check##SUF(const T *em, const T *trans, const T *start, const T *end,             \
                          const uint8_t *mask, const int64_t *tags, ptrdiff_t B, ptrdiff_t Tn,   \
                          ptrdiff_t K, int n_threads);

FC_CRF_DECLARE(float, _f32)
FC_CRF_DECLARE(double, _f64)

#undef FC_CRF_DECLARE

#ifdef __cplusplus
}
#endif
#endif /* FC_CRF_H */
