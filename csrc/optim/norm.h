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
 *   dgamma / dbeta may be NULL.  Sums in double.  Returns FC_OK or FC_BAD_ARGUMENT (also for a
 *   NULL problem, a dtype other than FC_FLOAT32 / FC_FLOAT64 or a path other than FC_PATH_FAST /
 *   FC_PATH_REFERENCE).  FC_PATH_REFERENCE routes a problem to optim/optim_reference.c (tests).
 */
#ifndef FC_NORM_H
#define FC_NORM_H

#include <stddef.h>
#include "core/fc_request.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The layer both operations read.  Arrays are float or double by dtype; a pointer may be NULL
 * when its array is empty. */
typedef struct fc_bn_problem {
    fc_dtype dtype;
    fc_path path;             /* FC_PATH_REFERENCE: optim/optim_reference.c answers (tests) */
    ptrdiff_t N, C, L;        /* batch, channels, positions per channel and sample (all >= 0) */
    const void *x;            /* (N, C, L) input */
    const void *gamma;        /* (C,) scale, or NULL (ones) */
    const void *beta;         /* (C,) shift, or NULL (zeros); forward only */
    void *running_mean;       /* (C,) forward only: updated when training (or NULL: not kept), */
    void *running_var;        /* (C,)   only read when not training (then required) */
    void *save_mean;          /* (C,) the mean used: written by the forward, read by the backward */
    void *save_invstd;        /* (C,) 1/sqrt(var + eps) used: likewise */
    int training;             /* batch statistics (nonzero, needs N*L >= 2) or the running ones */
    double momentum;          /* forward only: weight of the batch statistic in the running ones */
    double eps;               /* forward only: added to the variance (>= 0) */
    int n_threads;            /* at most this many threads (>= 1) */
} fc_bn_problem;

/* y (N, C, L): the normalised x; also writes save_mean / save_invstd and, when training, the
 * running statistics. */
int fc_bn_forward(const fc_bn_problem *p, void *y);

/* dx (N, C, L) from dy (N, C, L), and dgamma (C,) / dbeta (C,) unless NULL, with the problem's
 * save_mean / save_invstd (the forward's). */
int fc_bn_backward(const fc_bn_problem *p, const void *dy, void *dx, void *dgamma, void *dbeta);

#ifdef __cplusplus
}
#endif
#endif /* FC_NORM_H */
