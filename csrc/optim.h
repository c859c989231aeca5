/* Training steps over lists of arrays: global norms, fused clip + SGD / Adam(W).
 *
 * Every function takes n_arrays flat arrays given as pointer tables (x[k] has
 * sizes[k] elements, C-contiguous) and splits the work into a flat list of
 * (array, chunk) items of FC_OPT_CHUNK elements; the ranks of a team take contiguous
 * runs of items.  Reductions are summed chunk by chunk, then in item order, so the
 * result does not depend on n_threads.  Sums are accumulated in double.
 *
 * fc_reduce:  out[k] = reduction of array k (kind below), with each element first
 *             multiplied by `scale` (exactly 1 normally; a power of two when a norm
 *             is recomputed to avoid overflow/underflow).
 *               FC_RED_SUMSQ   sum (scale*x)^2
 *               FC_RED_SUMABS  sum |scale*x|
 *               FC_RED_SUMPOW  sum |scale*x|^p
 *               FC_RED_MAXABS  max |x| (NaN if any element is NaN; scale ignored)
 * fc_global_norm: the p-norm of all arrays taken together (p = INFINITY allowed),
 *             robust to overflow and underflow of the sum (it rescales by a power
 *             of two and sums again when the plain sum is not finite or tiny).
 *             NaN anywhere gives NaN, an infinity gives +inf.
 * fc_array_norms: per array L2 norm (robust as above) and L1 norm (for WEISSI).
 *
 * fc_sgd_step: p <- SGD update with gradient
 *                 d = scale*g + c_p[k]*p + c_s[k]*sign(p)
 *              (c_p = coupled L2 weight decay + WEISSI linear part, c_s = WEISSI
 *              sign part; c_p / c_s may be NULL = 0), then p <- decay*p (decoupled
 *              weight decay, 1 = none), momentum buffer (buf may be NULL when
 *              momentum == 0):
 *                 buf <- buf_keep*buf + buf_new*d      (first step: 0 and 1)
 *                 u    = nesterov ? d + momentum*buf : buf
 *                 p   <- p - lr*u
 * fc_adam_step: same d; p <- decay*p; m <- lerp(m, d, 1-beta1);
 *              v <- beta2*v + (1-beta2)*d*d; vmax <- max(vmax, v) when vmax != NULL;
 *              p <- p - step_size * m / (sqrt(v or vmax)/bc2_sqrt + eps)
 *              (torch.optim's formulas; step_size = lr / (1 - beta1^t)).
 * Gradients are only read.  Return FC_OK, FC_BAD_ARGUMENT (negative sizes, NULL
 * pointers, n_threads < 1) or FC_OUT_OF_MEMORY (the work list).
 */
#ifndef FC_OPTIM_H
#define FC_OPTIM_H

#include <stddef.h>
#include "fc_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FC_RED_SUMSQ 0
#define FC_RED_SUMABS 1
#define FC_RED_SUMPOW 2
#define FC_RED_MAXABS 3

#define FC_OPTIM_DECLARE(T, SUF)                                                               \
    int fc_reduce##SUF(const T *const *x, const ptrdiff_t *sizes, ptrdiff_t n_arrays, int kind,  \
                       double p, double scale, double *out, int n_threads);                     \
    int fc_global_norm##SUF(const T *const *x, const ptrdiff_t *sizes, ptrdiff_t n_arrays,       \
                            double p, double *norm, int n_threads);                             \
    int fc_array_norms##SUF(const T *const *x, const ptrdiff_t *sizes, ptrdiff_t n_arrays,       \
                            double *l2, double *l1, int n_threads);                             \
    int fc_sgd_step##SUF(T *const *p, const T *const *g, T *const *buf, const ptrdiff_t *sizes,  \
                         ptrdiff_t n_arrays, const double *c_p, const double *c_s, double scale, \
                         double lr, double decay, double momentum, double buf_keep,             \
                         double buf_new, int nesterov, int n_threads);                          \
    int fc_adam_step##SUF(T *const *p, const T *const *g, T *const *m, T *const *v,              \
                          T *const *vmax, const ptrdiff_t *sizes, ptrdiff_t n_arrays,           \
                          const double *c_p, const double *c_s, double scale, double decay,     \
                          double beta1, double beta2, double step_size, double bc2_sqrt,        \
                          double eps, int n_threads);

FC_OPTIM_DECLARE(float, _f32)
FC_OPTIM_DECLARE(double, _f64)

#undef FC_OPTIM_DECLARE

#ifdef __cplusplus
}
#endif
#endif /* FC_OPTIM_H */
