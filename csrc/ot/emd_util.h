/* Exact OT (emd.c) and document distances (documents.c): the sorting and 4-wide vector helpers
 * both use.  Static functions: each translation unit has its own copy. */
#ifndef FC_EMD_UTIL_H
#define FC_EMD_UTIL_H

#include "ot/emd.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fc_math.h"
#include "core/fc_parallel.h"
#include "core/fc_simd.h"

/* Sorting */
typedef struct {
    double c;
    int32_t i, j;
} fc_cand;

FC_INLINE int cand_less(const fc_cand *x, const fc_cand *y)
{
    if (x->c != y->c) return x->c < y->c;
    if (x->i != y->i) return x->i < y->i;
    return x->j < y->j;
}

/* Sort by (c, i, j): quicksort with median of three and insertion sort on short runs. */
static void cand_sort(fc_cand *v, ptrdiff_t n)
{
    while (n > 16) {
        ptrdiff_t mid = n / 2, last = n - 1;
        fc_cand t;
        if (cand_less(&v[mid], &v[0])) { t = v[mid]; v[mid] = v[0]; v[0] = t; }
        if (cand_less(&v[last], &v[0])) { t = v[last]; v[last] = v[0]; v[0] = t; }
        if (cand_less(&v[last], &v[mid])) { t = v[last]; v[last] = v[mid]; v[mid] = t; }
        fc_cand piv = v[mid];
        ptrdiff_t lo = 0, hi = last;
        for (;;) {
            while (cand_less(&v[lo], &piv)) lo++;
            while (cand_less(&piv, &v[hi])) hi--;
            if (lo >= hi) break;
            t = v[lo]; v[lo] = v[hi]; v[hi] = t;
            lo++; hi--;
        }
        /* [0, hi] <= piv <= [hi+1, n) ; recurse into the smaller part */
        ptrdiff_t nl = hi + 1, nr = n - hi - 1;
        if (nl < nr) { cand_sort(v, nl); v += nl; n = nr; }
        else { cand_sort(v + nl, nr); n = nl; }
    }
    for (ptrdiff_t a = 1; a < n; a++) {
        fc_cand t = v[a];
        ptrdiff_t b = a;
        while (b > 0 && cand_less(&t, &v[b - 1])) { v[b] = v[b - 1]; b--; }
        v[b] = t;
    }
}

/* Sort 64-bit keys: quicksort with a branch-free (Lomuto) partition, insertion sort on
 * short runs.  The greedy start of small problems sorts by cost this way (the branchy
 * comparisons of cand_sort mispredicted about once per element and cost ~65 cycles per
 * candidate there). */
static void key_sort(uint64_t *v, ptrdiff_t n)
{
    while (n > 16) {
        ptrdiff_t mid = n / 2, last = n - 1;
        uint64_t t;
        if (v[mid] < v[0]) { t = v[mid]; v[mid] = v[0]; v[0] = t; }
        if (v[last] < v[0]) { t = v[last]; v[last] = v[0]; v[0] = t; }
        if (v[last] < v[mid]) { t = v[last]; v[last] = v[mid]; v[mid] = t; }
        /* pivot (the median) to the end, partition [0, last) on x < piv */
        uint64_t piv = v[mid];
        v[mid] = v[last]; v[last] = piv;
        ptrdiff_t p = 0;
        for (ptrdiff_t i = 0; i < last; i++) {
            uint64_t x = v[i];
            v[i] = v[p];
            v[p] = x;
            p += x < piv;
        }
        v[last] = v[p]; v[p] = piv;
        /* [0, p) < piv <= (p, n) ; recurse into the smaller part */
        ptrdiff_t nl = p, nr = n - p - 1;
        if (nl < nr) { key_sort(v, nl); v += p + 1; n = nr; }
        else { key_sort(v + p + 1, nr); n = nl; }
    }
    for (ptrdiff_t a = 1; a < n; a++) {
        uint64_t t = v[a];
        ptrdiff_t b = a;
        while (b > 0 && t < v[b - 1]) { v[b] = v[b - 1]; b--; }
        v[b] = t;
    }
}

/* monotone map of a finite double to uint64 (x < y  =>  key(x) <= key(y)) */
FC_INLINE uint64_t order_key(double c)
{
    uint64_t b;
    memcpy(&b, &c, sizeof b);
    return (b >> 63) ? ~b : b | 0x8000000000000000ull;
}

/* Vector helpers */
#if FC_VECTOR_EXT
/* GCC vector extensions: the compiler does not vectorise a floating-point min/max
 * reduction without -ffinite-math-only, so the blend is written out (lowered to SSE2 in
 * the baseline clone, AVX in the others). */
typedef double fc_v4d __attribute__((vector_size(32), aligned(8)));
typedef long long fc_v4l __attribute__((vector_size(32), aligned(8)));

FC_INLINE fc_v4d v4_load(const double *p)
{
    fc_v4d v;
    memcpy(&v, p, sizeof v);
    return v;
}

FC_INLINE fc_v4d v4_min(fc_v4d a, fc_v4d b)
{
    fc_v4l k = a < b;
    return (fc_v4d)(((fc_v4l)a & k) | ((fc_v4l)b & ~k));
}

/* min_j (c[j] - p[j]) */
FC_INLINE double row_min_diff(const double *c, const double *p, ptrdiff_t m)
{
    const fc_v4d inf = {INFINITY, INFINITY, INFINITY, INFINITY};
    fc_v4d a0 = inf, a1 = inf;
    ptrdiff_t j = 0;
    for (; j + 8 <= m; j += 8) {
        a0 = v4_min(v4_load(c + j) - v4_load(p + j), a0);
        a1 = v4_min(v4_load(c + j + 4) - v4_load(p + j + 4), a1);
    }
    if (j + 4 <= m) {
        a0 = v4_min(v4_load(c + j) - v4_load(p + j), a0);
        j += 4;
    }
    a0 = v4_min(a0, a1);
    double r = INFINITY;
    for (; j < m; j++) {
        double t = c[j] - p[j];
        r = t < r ? t : r;
    }
    for (int l = 0; l < 4; l++) r = a0[l] < r ? a0[l] : r;
    return r;
}

/* max_j |c[j]|, or NaN if some c[j] is not finite */
FC_INLINE double row_max_abs(const double *c, ptrdiff_t m)
{
    const fc_v4d zero = {0, 0, 0, 0};
    fc_v4d a0 = zero, bad = zero;
    ptrdiff_t j = 0;
    for (; j + 4 <= m; j += 4) {
        fc_v4d x = v4_load(c + j);
        a0 = v4_min(v4_min(x, zero - x), a0);  /* -|x| */
        bad += x * zero;                       /* NaN once any x is NaN or inf */
    }
    double r = 0.0, nb = 0.0;
    for (; j < m; j++) {
        r = fabs(c[j]) > r ? fabs(c[j]) : r;
        nb += c[j] * 0.0;
    }
    for (int l = 0; l < 4; l++) {
        r = -a0[l] > r ? -a0[l] : r;
        nb += bad[l];
    }
    return nb == 0.0 ? r : NAN;
}
#else
/* the plain-C backend (fc_simd.h): the same answers, one element at a time */
FC_INLINE double row_min_diff(const double *c, const double *p, ptrdiff_t m)
{
    double r = INFINITY;
    for (ptrdiff_t j = 0; j < m; j++) {
        double t = c[j] - p[j];
        r = t < r ? t : r;
    }
    return r;
}

FC_INLINE double row_max_abs(const double *c, ptrdiff_t m)
{
    double r = 0.0, nb = 0.0;
    for (ptrdiff_t j = 0; j < m; j++) {
        r = fabs(c[j]) > r ? fabs(c[j]) : r;
        nb += c[j] * 0.0;
    }
    return nb == 0.0 ? r : NAN;
}
#endif

FC_INLINE double sq_dist(const double *x, const double *y, ptrdiff_t d)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t k = 0;
    for (; k + 8 <= d; k += 8)
        for (int l = 0; l < 8; l++) {
            double t = x[k + l] - y[k + l];
            acc[l] += t * t;
        }
    double r = 0.0;
    for (; k < d; k++) {
        double t = x[k] - y[k];
        r += t * t;
    }
    return r + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

FC_INLINE double dot(const double *x, const double *y, ptrdiff_t d)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t k = 0;
    for (; k + 8 <= d; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[k + l] * y[k + l];
    double r = 0.0;
    for (; k < d; k++) r += x[k] * y[k];
    return r + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}
#endif /* FC_EMD_UTIL_H */
