/* Batch normalisation over (N, C, L) C-contiguous data (L = 1 for (N, C)).
 *
 * fc_bn_forward: per channel c, over the N*L values of that channel,
 *   training: mean and biased variance (two passes, in double);
 *             save_mean = mean, save_invstd = 1/sqrt(var + eps); when running_mean /
 *             running_var are not NULL they become (1-momentum)*old + momentum*batch,
 *             using the unbiased variance var*M/(M-1) (torch's convention, M = N*L >= 2).
 *   inference: mean = running_mean, invstd = 1/sqrt(running_var + eps) (both required),
 *             also written to save_mean / save_invstd.
 *   y = (x - mean) * invstd * gamma + beta   (gamma / beta NULL = 1 / 0).
 * fc_bn_backward: dbeta = sum dy, dgamma = sum dy * xhat, with xhat = (x - mean)*invstd;
 *   training: dx = gamma*invstd*(dy - dbeta/M - xhat*dgamma/M);  inference: dx = gamma*invstd*dy.
 *   dgamma / dbeta may be NULL.  Sums in double.  Returns FC_OK or FC_BAD_ARGUMENT.
 */
#ifndef FC_NORM_H
#define FC_NORM_H

#include <stddef.h>
#include "fc_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FC_NORM_DECLARE(T, SUF)                                                                   \
    int fc_bn_forward##SUF(const T *x, T *y, ptrdiff_t N, ptrdiff_t C, ptrdiff_t L, const T *gamma, \
                           const T *beta, T *running_mean, T *running_var, int training,            \
                           double momentum, double eps, T *save_mean, T *save_invstd,               \
                           int n_threads);                                                          \
    int fc_bn_backward##SUF(const T *dy, const T *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t L,          \
                            const T *gamma, const T *save_mean, const T *save_invstd, int training,  \
                            T *dx, T *dgamma, T *dbeta, int n_threads);

FC_NORM_DECLARE(float, _f32)
FC_NORM_DECLARE(double, _f64)

#undef FC_NORM_DECLARE

#ifdef __cplusplus
}
#endif
#endif /* FC_NORM_H */
