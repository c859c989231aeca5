/* The reference path of the training-step kernels (optim.h, norm.h): plain C, one element at a
 * time, every quantity in double, written to be read against the formulas below and compared with
 * the fast kernels by the tests (request .path = FC_PATH_REFERENCE).  No SIMD, no threads, no
 * work list, no chunks: nothing here is shared with optim_impl.h / norm_impl.h.  Values are
 * rounded to the dtype only where they are stored.
 *
 * Reductions, over arrays x_k of n_k elements:
 *   fc_reduce       out[k] = sum_i (s x_ki)^2 | sum_i |s x_ki| | sum_i |s x_ki|^p | max_i |x_ki|
 *                   (FC_RED_SUMSQ | SUMABS | SUMPOW | MAXABS; MAXABS ignores s and is NaN when
 *                   some x_ki is NaN; every kind is 0 for an empty array)
 *   fc_global_norm  ||x||_p = (sum_k sum_i |x_ki|^p)^(1/p), ||x||_inf = max_ki |x_ki|, computed as
 *                   m (sum_ki (|x_ki| / m)^p)^(1/p) with m = ||x||_inf, so that no sum overflows or
 *                   underflows; m = 0, +inf or NaN is itself the answer (so NaN anywhere gives NaN,
 *                   else an infinity gives +inf).
 *   fc_array_norms  l2[k] = ||x_k||_2 (as above), l1[k] = sum_i |x_ki|.
 * Updates, element by element, with c_p = c_p[k], c_s = c_s[k] (0 when NULL), sign(0) = 0:
 *   d = scale g + c_p p + c_s sign(p),   then  p <- decay p;
 *   SGD   buf <- buf_keep buf + buf_new d,   u = nesterov ? d + momentum buf : buf   (u = d
 *         without buffers),   p <- p - lr u
 *   Adam  m <- m + (1 - beta1) (d - m),   v <- beta2 v + (1 - beta2) d^2,
 *         vmax <- max(vmax, v) (amsgrad, when vmax != NULL),
 *         p <- p - step_size m / (sqrt(vmax or v) / bc2_sqrt + eps)
 * Batch normalisation of x (N, C, L), per channel c over its M = N L values:
 *   training   mean = sum x / M,  var = sum (x - mean)^2 / M (biased),  invstd = 1/sqrt(var + eps),
 *              running_mean <- (1 - momentum) running_mean + momentum mean,
 *              running_var  <- (1 - momentum) running_var + momentum sum (x - mean)^2 / (M - 1)
 *   inference  mean = running_mean,  invstd = 1/sqrt(running_var + eps)
 *   save_mean = mean,  save_invstd = invstd,  y = (x - mean) invstd gamma + beta
 *   backward, with mean = save_mean, invstd = save_invstd, xhat = (x - mean) invstd:
 *              dbeta = sum dy,  dgamma = sum dy xhat,
 *              dx = gamma invstd (dy - dbeta/M - xhat dgamma/M)   (training)
 *              dx = gamma invstd dy                              (inference)
 * The argument checks and status codes are those of the fast entry points.
 */
#include <math.h>
#include <stddef.h>

#include "optim/optim_internal.h"
#include "core/fc_reference.h"

/* ---------------------------------------------------------------- helpers */

static double sign(double v) { return (double)((v > 0.0) - (v < 0.0)); }

/* n arrays of sizes[k] elements: n >= 0, sizes[k] >= 0, ptrs[k] != NULL when sizes[k] > 0
 * (ptrs may be NULL: not checked). */
static int bad_table(ptrdiff_t n, const ptrdiff_t *sizes, const void *const *ptrs)
{
    if (n < 0 || (n > 0 && sizes == NULL)) return 1;
    for (ptrdiff_t k = 0; k < n; ++k)
        if (sizes[k] < 0 || (sizes[k] > 0 && ptrs != NULL && ptrs[k] == NULL)) return 1;
    return 0;
}

/* What every reduction checks: a request of a known dtype, threads, arrays. */
static int bad_arrays(const fc_arrays *a)
{
    return a == NULL || fc_ref_bad_dtype(a->dtype) || a->n_threads < 1 || (a->n_arrays > 0 && a->x == NULL) ||
           bad_table(a->n_arrays, a->sizes, a->x);
}

/* max |x| over the arrays [k0, k1) of a; NaN when some element is NaN */
static double max_abs(const fc_arrays *a, ptrdiff_t k0, ptrdiff_t k1)
{
    double m = 0.0;
    for (ptrdiff_t k = k0; k < k1; ++k)
        for (ptrdiff_t i = 0; i < a->sizes[k]; ++i) {
            double v = fabs(fc_ref_load(a->x[k], a->dtype, i));
            if (isnan(v)) return v;
            if (v > m) m = v;
        }
    return m;
}

/* The p-norm (p > 0 or +inf) of the arrays [k0, k1) of a taken together: m (sum (|x|/m)^p)^(1/p). */
static double p_norm(const fc_arrays *a, ptrdiff_t k0, ptrdiff_t k1, double p)
{
    const double m = max_abs(a, k0, k1);
    if (isinf(p) || m == 0.0 || !isfinite(m)) return m;
    double s = 0.0;
    for (ptrdiff_t k = k0; k < k1; ++k)
        for (ptrdiff_t i = 0; i < a->sizes[k]; ++i) s += pow(fabs(fc_ref_load(a->x[k], a->dtype, i)) / m, p);
    return m * pow(s, 1.0 / p);
}

/* ---------------------------------------------------------------- reductions */

int fc_reduce_ref(const fc_arrays *a, int kind, double p, double scale, double *out)
{
    if (bad_arrays(a) || kind < FC_RED_SUMSQ || kind > FC_RED_MAXABS) return FC_BAD_ARGUMENT;
    if (a->n_arrays > 0 && out == NULL) return FC_BAD_ARGUMENT;
    if (kind == FC_RED_SUMPOW && !(p > 0.0)) return FC_BAD_ARGUMENT;
    for (ptrdiff_t k = 0; k < a->n_arrays; ++k) {
        if (kind == FC_RED_MAXABS) {
            out[k] = max_abs(a, k, k + 1);
            continue;
        }
        double r = 0.0;
        for (ptrdiff_t i = 0; i < a->sizes[k]; ++i) {
            double v = fabs(scale * fc_ref_load(a->x[k], a->dtype, i));
            r += kind == FC_RED_SUMSQ ? v * v : kind == FC_RED_SUMABS ? v : pow(v, p);
        }
        out[k] = r; /* out (n_arrays,) */
    }
    return FC_OK;
}

int fc_global_norm_ref(const fc_arrays *a, double p, double *norm)
{
    if (a == NULL || norm == NULL || !(p > 0.0) || bad_arrays(a)) return FC_BAD_ARGUMENT;
    *norm = p_norm(a, 0, a->n_arrays, p);
    return FC_OK;
}

int fc_array_norms_ref(const fc_arrays *a, double *l2, double *l1)
{
    if (bad_arrays(a) || (a->n_arrays > 0 && l2 == NULL)) return FC_BAD_ARGUMENT;
    for (ptrdiff_t k = 0; k < a->n_arrays; ++k) {
        l2[k] = p_norm(a, k, k + 1, 2.0); /* l2 (n_arrays,) */
        if (l1 == NULL) continue;
        double s = 0.0;
        for (ptrdiff_t i = 0; i < a->sizes[k]; ++i) s += fabs(fc_ref_load(a->x[k], a->dtype, i));
        l1[k] = s; /* l1 (n_arrays,) */
    }
    return FC_OK;
}

/* ---------------------------------------------------------------- updates */

int fc_sgd_step_ref(const fc_sgd_request *r)
{
    if (r == NULL || fc_ref_bad_dtype(r->dtype) || r->n_threads < 1) return FC_BAD_ARGUMENT;
    const ptrdiff_t n = r->n_arrays;
    const fc_dtype dt = r->dtype;
    if (n > 0 && (r->p == NULL || r->g == NULL)) return FC_BAD_ARGUMENT;
    if (bad_table(n, r->sizes, (const void *const *)r->p)) return FC_BAD_ARGUMENT;
    for (ptrdiff_t k = 0; k < n; ++k)
        if (r->sizes[k] > 0 && (r->g[k] == NULL || (r->buf != NULL && r->buf[k] == NULL))) return FC_BAD_ARGUMENT;
    for (ptrdiff_t k = 0; k < n; ++k) {
        const double cp = r->c_p ? r->c_p[k] : 0.0, cs = r->c_s ? r->c_s[k] : 0.0;
        for (ptrdiff_t i = 0; i < r->sizes[k]; ++i) {
            double p = fc_ref_load(r->p[k], dt, i);
            const double d = r->scale * fc_ref_load(r->g[k], dt, i) + cp * p + cs * sign(p);
            p = r->decay * p;
            double u = d;
            if (r->buf != NULL) {
                const double b = r->buf_keep * fc_ref_load(r->buf[k], dt, i) + r->buf_new * d;
                fc_ref_store(r->buf[k], dt, i, b); /* buf[k] (sizes[k],) */
                u = r->nesterov ? d + r->momentum * b : b;
            }
            fc_ref_store(r->p[k], dt, i, p - r->lr * u); /* p[k] (sizes[k],) */
        }
    }
    return FC_OK;
}

int fc_adam_step_ref(const fc_adam_request *r)
{
    if (r == NULL || fc_ref_bad_dtype(r->dtype) || r->n_threads < 1) return FC_BAD_ARGUMENT;
    const ptrdiff_t n = r->n_arrays;
    const fc_dtype dt = r->dtype;
    if (n > 0 && (r->p == NULL || r->g == NULL || r->m == NULL || r->v == NULL)) return FC_BAD_ARGUMENT;
    if (bad_table(n, r->sizes, (const void *const *)r->p)) return FC_BAD_ARGUMENT;
    for (ptrdiff_t k = 0; k < n; ++k)
        if (r->sizes[k] > 0 &&
            (r->g[k] == NULL || r->m[k] == NULL || r->v[k] == NULL || (r->vmax != NULL && r->vmax[k] == NULL)))
            return FC_BAD_ARGUMENT;
    for (ptrdiff_t k = 0; k < n; ++k) {
        const double cp = r->c_p ? r->c_p[k] : 0.0, cs = r->c_s ? r->c_s[k] : 0.0;
        for (ptrdiff_t i = 0; i < r->sizes[k]; ++i) {
            double p = fc_ref_load(r->p[k], dt, i);
            const double d = r->scale * fc_ref_load(r->g[k], dt, i) + cp * p + cs * sign(p);
            p = r->decay * p;
            const double m0 = fc_ref_load(r->m[k], dt, i), v0 = fc_ref_load(r->v[k], dt, i);
            const double m = m0 + (1.0 - r->beta1) * (d - m0);
            const double v = r->beta2 * v0 + (1.0 - r->beta2) * d * d;
            fc_ref_store(r->m[k], dt, i, m); /* m[k], v[k] (sizes[k],) */
            fc_ref_store(r->v[k], dt, i, v);
            double vhat = v;
            if (r->vmax != NULL) {
                const double old = fc_ref_load(r->vmax[k], dt, i);
                vhat = v > old ? v : old;
                fc_ref_store(r->vmax[k], dt, i, vhat); /* vmax[k] (sizes[k],) */
            }
            fc_ref_store(r->p[k], dt, i, p - r->step_size * m / (sqrt(vhat) / r->bc2_sqrt + r->eps));
        }
    }
    return FC_OK;
}

/* ---------------------------------------------------------------- batch normalisation */

int fc_bn_forward_ref(const fc_bn_problem *pr, void *y)
{
    if (pr == NULL || fc_ref_bad_dtype(pr->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t N = pr->N, C = pr->C, L = pr->L, M = N * L;
    const fc_dtype dt = pr->dtype;
    const double mom = pr->momentum, eps = pr->eps;
    if (N < 0 || C < 0 || L < 0 || pr->n_threads < 1 || !(eps >= 0.0)) return FC_BAD_ARGUMENT;
    if (C == 0) return FC_OK;
    if (pr->save_mean == NULL || pr->save_invstd == NULL) return FC_BAD_ARGUMENT;
    if (pr->training && M < 2) return FC_BAD_ARGUMENT;
    if (!pr->training && (pr->running_mean == NULL || pr->running_var == NULL)) return FC_BAD_ARGUMENT;
    if (M > 0 && (pr->x == NULL || y == NULL)) return FC_BAD_ARGUMENT;
    for (ptrdiff_t c = 0; c < C; ++c) {
        double mean, invstd;
        if (pr->training) {
            double s = 0.0, ss = 0.0;
            for (ptrdiff_t n = 0; n < N; ++n)
                for (ptrdiff_t l = 0; l < L; ++l) s += fc_ref_load(pr->x, dt, (n * C + c) * L + l);
            mean = s / (double)M;
            for (ptrdiff_t n = 0; n < N; ++n)
                for (ptrdiff_t l = 0; l < L; ++l) {
                    const double e = fc_ref_load(pr->x, dt, (n * C + c) * L + l) - mean;
                    ss += e * e;
                }
            invstd = 1.0 / sqrt(ss / (double)M + eps);
            if (pr->running_mean != NULL) /* running_mean, running_var (C,) */
                fc_ref_store(pr->running_mean, dt, c, (1.0 - mom) * fc_ref_load(pr->running_mean, dt, c) + mom * mean);
            if (pr->running_var != NULL)
                fc_ref_store(pr->running_var, dt, c, (1.0 - mom) * fc_ref_load(pr->running_var, dt, c) + mom * (ss / (double)(M - 1)));
        } else {
            mean = fc_ref_load(pr->running_mean, dt, c);
            invstd = 1.0 / sqrt(fc_ref_load(pr->running_var, dt, c) + eps);
        }
        fc_ref_store(pr->save_mean, dt, c, mean); /* save_mean, save_invstd (C,) */
        fc_ref_store(pr->save_invstd, dt, c, invstd);
        const double g = pr->gamma ? fc_ref_load(pr->gamma, dt, c) : 1.0, b = pr->beta ? fc_ref_load(pr->beta, dt, c) : 0.0;
        for (ptrdiff_t n = 0; n < N; ++n)
            for (ptrdiff_t l = 0; l < L; ++l) {
                const ptrdiff_t i = (n * C + c) * L + l;
                fc_ref_store(y, dt, i, (fc_ref_load(pr->x, dt, i) - mean) * invstd * g + b); /* y (N, C, L) */
            }
    }
    return FC_OK;
}

int fc_bn_backward_ref(const fc_bn_problem *pr, const void *dy, void *dx, void *dgamma, void *dbeta)
{
    if (pr == NULL || fc_ref_bad_dtype(pr->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t N = pr->N, C = pr->C, L = pr->L, M = N * L;
    const fc_dtype dt = pr->dtype;
    if (N < 0 || C < 0 || L < 0 || pr->n_threads < 1) return FC_BAD_ARGUMENT;
    if (C == 0) return FC_OK;
    if (pr->save_mean == NULL || pr->save_invstd == NULL) return FC_BAD_ARGUMENT;
    if (M > 0 && (pr->x == NULL || dy == NULL || dx == NULL)) return FC_BAD_ARGUMENT;
    for (ptrdiff_t c = 0; c < C; ++c) {
        const double mean = fc_ref_load(pr->save_mean, dt, c), invstd = fc_ref_load(pr->save_invstd, dt, c);
        const double g = pr->gamma ? fc_ref_load(pr->gamma, dt, c) : 1.0;
        double sdy = 0.0, sdyxhat = 0.0;
        for (ptrdiff_t n = 0; n < N; ++n)
            for (ptrdiff_t l = 0; l < L; ++l) {
                const ptrdiff_t i = (n * C + c) * L + l;
                sdy += fc_ref_load(dy, dt, i);
                sdyxhat += fc_ref_load(dy, dt, i) * (fc_ref_load(pr->x, dt, i) - mean) * invstd;
            }
        if (dgamma != NULL) fc_ref_store(dgamma, dt, c, sdyxhat); /* dgamma, dbeta (C,) */
        if (dbeta != NULL) fc_ref_store(dbeta, dt, c, sdy);
        for (ptrdiff_t n = 0; n < N; ++n)
            for (ptrdiff_t l = 0; l < L; ++l) {
                const ptrdiff_t i = (n * C + c) * L + l;
                const double xhat = (fc_ref_load(pr->x, dt, i) - mean) * invstd, d = fc_ref_load(dy, dt, i);
                const double v = pr->training ? g * invstd * (d - sdy / (double)M - xhat * sdyxhat / (double)M)
                                              : g * invstd * d;
                fc_ref_store(dx, dt, i, v); /* dx (N, C, L) */
            }
    }
    return FC_OK;
}
