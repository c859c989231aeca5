/* The reference path of softmax and log-sum-exp (softmax.h): plain C, one slice at a time, in
 * double, written to be read against the maths and compared with the fast kernels by the tests
 * (fc_softmax_problem.path = FC_PATH_REFERENCE).  No lanes, no column blocks, no threads:
 * nothing here is shared with softmax_impl.h.
 *
 * x is viewed as (outer, n, inner); slice (o, c) is x_i = x[o, i, c], i < n, and its entry i is
 * kept when there is no mask or mask[mask_offsets[o] + i mask_stride_n + c mask_stride_inner]
 * is nonzero.  Over the kept entries of a slice:
 *   some x_i is NaN:     softmax NaN at the kept entries, lse NaN;
 *   else c of them +inf: they share the mass, softmax 1/c there, lse +inf;
 *   else m = max x_i:    m = -inf (nothing kept, all -inf, or n = 0): softmax 0, lse -inf;
 *                        otherwise lse = m + log sum_i exp(x_i - m),
 *                        softmax_i = exp(x_i - m) / sum_i' exp(x_i' - m).
 * Entries that are not kept get softmax 0 (and are never read).  The whole slice is read
 * before anything is written, so out may be x.
 */
#include <math.h>
#include <stdlib.h>

#include "attention/softmax_internal.h"
#include "core/fc_reference.h"

/* The log-sum-exp of the kept entries of x[0..n), and their softmax into y (when not NULL). */
static double slice(const double *x, const unsigned char *keep, ptrdiff_t n, double *y)
{
    int nan = 0;
    ptrdiff_t n_inf = 0;
    double m = -INFINITY;
    for (ptrdiff_t i = 0; i < n; ++i)
        if (keep[i]) {
            nan |= isnan(x[i]);
            n_inf += x[i] == INFINITY;
            if (x[i] > m) m = x[i];
        }
    if (nan || n_inf > 0 || m == -INFINITY) { /* no finite maximum */
        for (ptrdiff_t i = 0; y != NULL && i < n; ++i)
            y[i] = !keep[i] ? 0.0 : nan ? NAN : x[i] == INFINITY ? 1.0 / (double)n_inf : 0.0;
        return nan ? NAN : n_inf > 0 ? INFINITY : -INFINITY;
    }
    double sum = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i)
        if (keep[i]) sum += exp(x[i] - m);
    for (ptrdiff_t i = 0; y != NULL && i < n; ++i) y[i] = keep[i] ? exp(x[i] - m) / sum : 0.0;
    return m + log(sum);
}

/* Softmax into sm or log-sum-exp into lse (one of them NULL); the argument checks of the fast
 * kernels (softmax_impl.h), in their order. */
static int softmax_ref(const fc_softmax_problem *p, void *sm, void *lse)
{
    const ptrdiff_t outer = p->outer, n = p->n, inner = p->inner;
    const fc_dtype dt = p->dtype;
    if (outer < 0 || n < 0 || inner < 0 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (outer == 0 || inner == 0) return FC_OK;
    if (p->x == NULL && n > 0) return FC_BAD_ARGUMENT;
    if (p->mask != NULL && p->mask_offsets == NULL) return FC_BAD_ARGUMENT;
    if (sm != NULL && n == 0) return FC_OK;
    const size_t n1 = (size_t)(n > 0 ? n : 1);
    double *x = malloc(sizeof(double) * n1), *y = malloc(sizeof(double) * n1);
    unsigned char *keep = malloc(n1);
    if (x == NULL || y == NULL || keep == NULL) {
        free(x); free(y); free(keep);
        return FC_OUT_OF_MEMORY;
    }
    for (ptrdiff_t o = 0; o < outer; ++o)
        for (ptrdiff_t c = 0; c < inner; ++c) {
            for (ptrdiff_t i = 0; i < n; ++i) {
                const uint8_t *mk = p->mask;
                keep[i] = mk == NULL
                       || mk[p->mask_offsets[o] + i * p->mask_stride_n + c * p->mask_stride_inner] != 0;
                x[i] = fc_ref_load(p->x, dt, (o * n + i) * inner + c);
            }
            double l = slice(x, keep, n, sm != NULL ? y : NULL);
            if (lse != NULL) fc_ref_store(lse, dt, o * inner + c, l); /* (outer, inner) */
            for (ptrdiff_t i = 0; sm != NULL && i < n; ++i) fc_ref_store(sm, dt, (o * n + i) * inner + c, y[i]);
        }
    free(x); free(y); free(keep);
    return FC_OK;
}

int fc_softmax_ref(const fc_softmax_problem *p, void *out)
{
    if (p == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    if (out == NULL) return p->outer > 0 && p->n > 0 && p->inner > 0 ? FC_BAD_ARGUMENT : FC_OK;
    return softmax_ref(p, out, NULL);
}

int fc_logsumexp_ref(const fc_softmax_problem *p, void *out)
{
    if (p == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    if (out == NULL) return p->outer > 0 && p->inner > 0 ? FC_BAD_ARGUMENT : FC_OK;
    return softmax_ref(p, NULL, out);
}
