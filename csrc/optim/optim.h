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
 * Gradients are only read.  Return FC_OK, FC_BAD_ARGUMENT (NULL request, dtype not
 * FC_FLOAT32 / FC_FLOAT64, path not FC_PATH_FAST / FC_PATH_REFERENCE, negative sizes, NULL
 * pointers, n_threads < 1) or FC_OUT_OF_MEMORY (the work list).
 * FC_PATH_REFERENCE in a request routes it to optim/optim_reference.c (the tests' reference).
 */
#ifndef FC_OPTIM_H
#define FC_OPTIM_H

#include <stddef.h>
#include "core/fc_request.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FC_RED_SUMSQ 0
#define FC_RED_SUMABS 1
#define FC_RED_SUMPOW 2
#define FC_RED_MAXABS 3

/* The arrays a reduction reads: n_arrays flat arrays of one element type (float or double by
 * dtype).  x[k] may be NULL when sizes[k] == 0. */
typedef struct fc_arrays {
    fc_dtype dtype;
    fc_path path;            /* FC_PATH_REFERENCE: optim/optim_reference.c answers (tests) */
    ptrdiff_t n_arrays;      /* >= 0 */
    const void *const *x;    /* (n_arrays,) array k: (sizes[k],) */
    const ptrdiff_t *sizes;  /* (n_arrays,) elements of each array (>= 0) */
    int n_threads;           /* at most this many threads (>= 1) */
} fc_arrays;

/* out (n_arrays,): the reduction `kind` (FC_RED_*) of each array, elements scaled by `scale`
 * first; p > 0 is the power of FC_RED_SUMPOW. */
int fc_reduce(const fc_arrays *a, int kind, double p, double scale, double *out);

/* *norm: the p-norm (p > 0, INFINITY allowed) of all arrays together. */
int fc_global_norm(const fc_arrays *a, double p, double *norm);

/* l2 (n_arrays,): each array's L2 norm; l1 (n_arrays,) or NULL: each array's L1 norm. */
int fc_array_norms(const fc_arrays *a, double *l2, double *l1);

/* One fused SGD step over n_arrays parameters (formulas above).  The arrays p[k], g[k] and
 * buf[k] all have sizes[k] elements of the dtype; a pointer may be NULL when sizes[k] == 0. */
typedef struct fc_sgd_request {
    fc_dtype dtype;
    fc_path path;            /* FC_PATH_REFERENCE: optim/optim_reference.c answers (tests) */
    ptrdiff_t n_arrays;      /* >= 0 */
    const ptrdiff_t *sizes;  /* (n_arrays,) elements of each parameter (>= 0) */
    void *const *p;          /* (n_arrays,) parameters, updated in place */
    const void *const *g;    /* (n_arrays,) gradients, only read */
    void *const *buf;        /* (n_arrays,) momentum buffers, updated; or NULL (momentum == 0) */
    const double *c_p;       /* (n_arrays,) coefficient of p in d, or NULL (0) */
    const double *c_s;       /* (n_arrays,) coefficient of sign(p) in d, or NULL (0) */
    double scale;            /* factor of g in d (the clip's; negative to maximise) */
    double lr;               /* learning rate */
    double decay;            /* p <- decay*p before the update (decoupled weight decay; 1 = none) */
    double momentum;         /* nesterov's factor of buf */
    double buf_keep;         /* buf <- buf_keep*buf + buf_new*d (0 and 1 at the first step) */
    double buf_new;
    int nesterov;            /* u = d + momentum*buf (nonzero) or u = buf */
    int n_threads;           /* at most this many threads (>= 1) */
} fc_sgd_request;
int fc_sgd_step(const fc_sgd_request *r);

/* One fused Adam / AdamW step over n_arrays parameters (formulas above).  The arrays p[k],
 * g[k], m[k], v[k] and vmax[k] all have sizes[k] elements of the dtype; a pointer may be NULL
 * when sizes[k] == 0. */
typedef struct fc_adam_request {
    fc_dtype dtype;
    fc_path path;            /* FC_PATH_REFERENCE: optim/optim_reference.c answers (tests) */
    ptrdiff_t n_arrays;      /* >= 0 */
    const ptrdiff_t *sizes;  /* (n_arrays,) elements of each parameter (>= 0) */
    void *const *p;          /* (n_arrays,) parameters, updated in place */
    const void *const *g;    /* (n_arrays,) gradients, only read */
    void *const *m;          /* (n_arrays,) first moments (exp_avg), updated */
    void *const *v;          /* (n_arrays,) second moments (exp_avg_sq), updated */
    void *const *vmax;       /* (n_arrays,) running maxima of v (amsgrad), updated; or NULL */
    const double *c_p;       /* (n_arrays,) coefficient of p in d, or NULL (0) */
    const double *c_s;       /* (n_arrays,) coefficient of sign(p) in d, or NULL (0) */
    double scale;            /* factor of g in d (the clip's; negative to maximise) */
    double decay;            /* p <- decay*p before the update (decoupled weight decay; 1 = none) */
    double beta1, beta2;     /* moment decays, in [0, 1) */
    double step_size;        /* lr / (1 - beta1^t) */
    double bc2_sqrt;         /* sqrt(1 - beta2^t) */
    double eps;              /* added to the denominator, >= 0 */
    int n_threads;           /* at most this many threads (>= 1) */
} fc_adam_request;
int fc_adam_step(const fc_adam_request *r);

#ifdef __cplusplus
}
#endif
#endif /* FC_OPTIM_H */
