/* Tiled softmax attention with structural masks, talking-heads mixing and backward.
 *
 * Layout (all C-contiguous):
 *   q (B, H, T, dk), k (B, H, S, dk), v (B, H, S, dv), out (B, H, T, dv), lse (B, H, T).
 *   Query i of head h in batch b attends to key j with logit
 *       z[b,h,i,j] = scale * <q[b,h,i], k[b,h,j]>             (no mixing), or
 *       z[b,h,i,j] = sum_g pre_mix[h,g] * scale * <q[b,g,i], k[b,g,j]>   (talking heads),
 *   plus bias[b,h,i,j] when a bias is given, where every mask of fc_attn_mask lets it
 *   through (all masks are ANDed), and -inf elsewhere.
 *   P[b,h,i,:] = softmax_j(z[b,h,i,:]);  lse[b,h,i] = log sum_j exp z[b,h,i,j].
 *   out[b,h,i] = sum_j U[b,h,i,j] v[b,h,j] with U = P, or U[b,h] = sum_g post_mix[h,g] P[b,g]
 *   when post_mix is given.
 *   A row with no visible key has P = 0, out = 0 and lse = -inf.
 *
 * The (T, S) score matrix is never stored: queries are processed in tiles of
 * FC_ATTN_BQ rows against key tiles of FC_ATTN_BK keys with an online softmax
 * (running max, running sum, rescaled accumulator).  Key tiles that the structural
 * masks (causal, kv_len, segments) hide entirely are skipped.  The only workspace
 * besides per-thread tiles (the forward without mixing transposes each key tile it
 * uses into one) is a tiled transposed copy of k with talking-heads mixing (and of k
 * and v in backward), O(B*H*S*d).  Work items are (b, h, 4 query tiles) (or
 * (b, query tile) with mixing; (b, h), or b with mixing, in backward), each computed
 * by one thread in a fixed order: results do not depend on n_threads.
 *
 * Sums of exponentials are accumulated in double; dot products in the input precision.
 *
 * Backward: dq, dk, dv (overwritten) from dout, the forward's out and lse, recomputing
 * the probabilities tile by tile as P = exp(z - lse).  With pre_mix / post_mix (the
 * same as the forward's), all heads of a batch element are processed together
 * (one work item per b); with post_mix the row term D_h[i] = sum_j P dP, which is no
 * longer rowsum(dout * out), takes a first sweep over the key tiles.  Optional float64
 * outputs: dpre, dpost (H x H, overwritten; dpre[h,g] = dL/dpre_mix[h,g]) and dbias
 * (accumulated into: the caller zeroes it), laid out like the bias (mask->bias_strides,
 * 0 along broadcast axes, read at q_pos / k_pos; needs mask->bias).  Items that share
 * dbias entries are grouped on one thread, so no result depends on n_threads.
 *
 * Returns FC_OK, FC_BAD_ARGUMENT (negative sizes, NULL pointers, n_threads < 1) or
 * FC_OUT_OF_MEMORY.
 */
#ifndef FC_ATTENTION_H
#define FC_ATTENTION_H

#include <stddef.h>
#include <stdint.h>
#include "fc_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The masks, in "kernel index space" (the caller may have permuted queries and keys).
 * Every pointer may be NULL (= that mask is absent). */
typedef struct fc_attn_mask {
    int causal;                 /* nonzero: key j visible from query i only when j <= i + causal_offset */
    ptrdiff_t causal_offset;
    const int64_t *kv_len;      /* (B,): keys j >= kv_len[b] are hidden */
    const int64_t *q_seg;       /* (B, T) and (B, S): key j visible from query i only when */
    const int64_t *k_seg;       /*   k_seg[b, j] <= q_seg[b, i] (both or neither)          */
    const uint8_t *key_keep;    /* (B, S): 0 hides key j */
    const uint8_t *mask;        /* read at mask[b*ms[0] + h*ms[1] + qp*ms[2] + kp*ms[3]], 0 hides */
    ptrdiff_t mask_strides[4];
    const void *bias;           /* same dtype as q, read like mask, added after mixing */
    ptrdiff_t bias_strides[4];
    const int64_t *q_pos;       /* (B, T), (B, S): the row / column index qp, kp used to read */
    const int64_t *k_pos;       /*   mask and bias (identity when NULL) */
} fc_attn_mask;

#define FC_ATTENTION_DECLARE(T_, SUF)                                                          \
    int fc_attention##SUF(const T_ *q, const T_ *k, const T_ *v, T_ *out, T_ *lse,             \
                          ptrdiff_t B, ptrdiff_t H, ptrdiff_t T, ptrdiff_t S, ptrdiff_t dk,    \
                          ptrdiff_t dv, double scale, const fc_attn_mask *mask,                \
                          const T_ *pre_mix, const T_ *post_mix, int n_threads);               \
    int fc_attention_backward##SUF(const T_ *q, const T_ *k, const T_ *v, const T_ *out,       \
                                   const T_ *dout, const T_ *lse, T_ *dq, T_ *dk_, T_ *dv_,    \
                                   ptrdiff_t B, ptrdiff_t H, ptrdiff_t T, ptrdiff_t S,         \
                                   ptrdiff_t dk, ptrdiff_t dv, double scale,                   \
                                   const fc_attn_mask *mask, const T_ *pre_mix,                \
                                   const T_ *post_mix, double *dpre, double *dpost,            \
                                   double *dbias, int n_threads);                              \
    /* 1 when the n values at x are all finite, else 0 */                                      \
    int fc_attention_finite##SUF(const T_ *x, ptrdiff_t n);

FC_ATTENTION_DECLARE(float, _f32)
FC_ATTENTION_DECLARE(double, _f64)

#undef FC_ATTENTION_DECLARE

#ifdef __cplusplus
}
#endif
#endif /* FC_ATTENTION_H */
