/* Stable softmax and log-sum-exp over one axis, with an optional keep-mask.
 *
 * Layout: x is C-contiguous and viewed as (outer, n, inner); the reduction runs
 * over the middle axis of length n.  out has the shape of x (softmax) or
 * (outer, inner) (logsumexp).  out may be x itself (in-place softmax).
 *
 * Mask (optional, NULL = keep everything): a byte array, nonzero = keep, read at
 *     mask + mask_offsets[o] + i * mask_stride_n + j * mask_stride_inner
 * for element (o, i, j), so broadcast masks need no copy (strides may be 0).
 *
 * Semantics per reduced slice (documented in fastcore/softmax.py):
 *   - masked entries and -inf entries carry no mass; softmax writes 0 there;
 *   - a slice with no mass: softmax 0 everywhere, logsumexp -inf;
 *   - any unmasked NaN: softmax NaN on unmasked entries, logsumexp NaN;
 *   - unmasked +inf entries: they share the mass equally, logsumexp +inf.
 * Sums are accumulated in double for both precisions.
 *
 * Returns FC_OK or FC_BAD_ARGUMENT (negative sizes, NULL pointers, n_threads < 1, an unknown
 * dtype).
 */
#ifndef FC_SOFTMAX_H
#define FC_SOFTMAX_H

#include <stddef.h>
#include <stdint.h>
#include "core/fc_request.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The problem softmax and log-sum-exp read.  x (and out) are float or double by dtype. */
typedef struct fc_softmax_problem {
    fc_dtype dtype;
    fc_path path;                   /* FC_PATH_REFERENCE: attention/softmax_reference.c answers (tests) */
    const void *x;                  /* (outer, n, inner); may be NULL when n == 0 */
    ptrdiff_t outer, n, inner;      /* the reduction runs over n (all >= 0) */
    const uint8_t *mask;            /* the keep-mask above, or NULL (keep everything) */
    const ptrdiff_t *mask_offsets;  /* (outer,): where each outer index's mask starts */
    ptrdiff_t mask_stride_n;        /* mask step along the reduced axis (may be 0) */
    ptrdiff_t mask_stride_inner;    /* mask step along the inner axis (may be 0) */
    int n_threads;                  /* at most this many threads (>= 1) */
} fc_softmax_problem;

/* out (outer, n, inner) of the problem's dtype, the softmax of each slice; out may be x. */
int fc_softmax(const fc_softmax_problem *p, void *out);

/* out (outer, inner) of the problem's dtype, the log-sum-exp of each slice. */
int fc_logsumexp(const fc_softmax_problem *p, void *out);

#ifdef __cplusplus
}
#endif
#endif /* FC_SOFTMAX_H */
