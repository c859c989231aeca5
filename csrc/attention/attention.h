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
 * Returns FC_OK, FC_BAD_ARGUMENT (negative sizes, NULL pointers, n_threads < 1, an unknown
 * dtype) or FC_OUT_OF_MEMORY.
 */
#ifndef FC_ATTENTION_H
#define FC_ATTENTION_H

#include <stddef.h>
#include <stdint.h>
#include "core/fc_request.h"

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
    const void *bias;           /* the problem's dtype, read like mask, added after mixing */
    ptrdiff_t bias_strides[4];
    const int64_t *q_pos;       /* (B, T), (B, S): the row / column index qp, kp used to read */
    const int64_t *k_pos;       /*   mask and bias (identity when NULL) */
} fc_attn_mask;

/* The problem the forward and the backward read.  Real arrays (q, k, v, the mask's bias,
 * pre_mix, post_mix, and the real arrays of the operations) are float or double by dtype. */
typedef struct fc_attention_problem {
    fc_dtype dtype;
    fc_path path;               /* FC_PATH_REFERENCE: attention/attention_reference.c answers (tests) */
    ptrdiff_t B, H, T, S;       /* batch, heads, queries, keys (>= 0) */
    ptrdiff_t dk, dv;           /* key / query size and value size (>= 1) */
    double scale;               /* logit scale (the scale of z above) */
    const void *q;              /* (B, H, T, dk) */
    const void *k;              /* (B, H, S, dk) */
    const void *v;              /* (B, H, S, dv) */
    const fc_attn_mask *mask;   /* required (a zeroed struct: no mask) */
    const void *pre_mix;        /* (H, H) talking-heads logit mixing, or NULL */
    const void *post_mix;       /* (H, H) probability mixing, or NULL */
    int n_threads;              /* at most this many threads (>= 1) */
} fc_attention_problem;

/* out (B, H, T, dv) and lse (B, H, T), of the problem's dtype. */
int fc_attention(const fc_attention_problem *p, void *out, void *lse);

/* What one backward reads (the forward's out and lse, and dout) and writes.  Real arrays are of
 * the problem's dtype; dpre, dpost and dbias are float64 and may be NULL (not wanted). */
typedef struct fc_attention_grads {
    const void *out;            /* (B, H, T, dv) the forward's output */
    const void *dout;           /* (B, H, T, dv) gradient of the loss with respect to out */
    const void *lse;            /* (B, H, T) the forward's lse */
    void *dq;                   /* (B, H, T, dk) overwritten */
    void *dk;                   /* (B, H, S, dk) overwritten */
    void *dv;                   /* (B, H, S, dv) overwritten */
    double *dpre;               /* (H, H) overwritten: dpre[h,g] = dL/dpre_mix[h,g] */
    double *dpost;              /* (H, H) overwritten: dL/dpost_mix */
    double *dbias;              /* laid out like the bias, accumulated into (needs mask->bias) */
} fc_attention_grads;
int fc_attention_backward(const fc_attention_problem *p, const fc_attention_grads *g);

/* 1 when the n values at x (float or double by dtype) are all finite, else 0; -1 for a
 * dtype that is neither. */
int fc_attention_finite(fc_dtype dtype, const void *x, ptrdiff_t n);

#ifdef __cplusplus
}
#endif
#endif /* FC_ATTENTION_H */
