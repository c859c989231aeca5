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
 * Returns FC_OK or FC_BAD_ARGUMENT (negative sizes, NULL pointers, n_threads < 1).
 */
#ifndef FC_SOFTMAX_H
#define FC_SOFTMAX_H

#include <stddef.h>
#include <stdint.h>
#include "fc_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FC_SOFTMAX_DECLARE(T, SUF)                                                        \
    int fc_softmax##SUF(const T *x, T *out, ptrdiff_t outer, ptrdiff_t n, ptrdiff_t inner, \
                        const uint8_t *mask, const ptrdiff_t *mask_offsets,               \
                        ptrdiff_t mask_stride_n, ptrdiff_t mask_stride_inner, int n_threads); \
    int fc_logsumexp##SUF(const T *x, T *out, ptrdiff_t outer, ptrdiff_t n, ptrdiff_t inner, \
                          const uint8_t *mask, const ptrdiff_t *mask_offsets,             \
                          ptrdiff_t mask_stride_n, ptrdiff_t mask_stride_inner, int n_threads);

FC_SOFTMAX_DECLARE(float, _f32)
FC_SOFTMAX_DECLARE(double, _f64)

#undef FC_SOFTMAX_DECLARE

#ifdef __cplusplus
}
#endif
#endif /* FC_SOFTMAX_H */
