/* What sinkhorn_f32.c and sinkhorn_f64.c share: the headers and helpers around one instantiation of
 * the sinkhorn_*.h implementation headers (FC_REAL_DOUBLE is defined by the including .c file). */
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "ot/sinkhorn_internal.h"
#include "core/fc_math.h"
#include "core/fc_parallel.h"

#define FC_SK_LANES 16     /* independent partial sums / maxima per reduction */
#define FC_SK_CBLOCK 256   /* columns per task of the exact column log-sum-exp */

/* Iterations synchronise the threads twice; below this many entries of M (times k) a
 * pass is too short for that to pay, above all on a loaded machine.  The single passes (the
 * kernel, the plan) use the same bound: at n = m = 300 their two threads measured 1.09x faster
 * on a quiet machine and up to 1.2x slower with a second process competing. */
#define FC_SK_MIN_PARALLEL 200000.0
#define FC_SK_RATE_FROM 20  /* auto over-relaxation: first window starts at iteration 20 */
#define FC_SK_RATE_WIN 50   /* of the last stage, and windows are 50 iterations long */
/* 1.99, not 1.95: at reg = 0.001 x median cost (n = 500) plain Sinkhorn's rate is ~1 - 2e-5,
 * whose optimal omega is ~1.991; with 1.95, 3 of 12 such problems missed stopThr = 1e-9 in
 * 5000 iterations, with 1.99 one (the guard against error blow-ups still applies) */
#define FC_SK_OMEGA_MAX 1.99
/* Auto over-relaxation is given up (omega = 1 from then on: plain Sinkhorn, whose error
 * is the true marginal error, 1 / (2 - omega) times smaller) after two consecutive windows
 * whose per-iteration error ratio is in [FC_SK_STALL, 1]: the error fell by less than
 * 1% in 100 iterations.  At small reg a plan can hold nearly isolated blocks (a row and
 * a column exchanging mass with the rest through entries ~1e-7 of their own), whose
 * imbalance Sinkhorn corrects by ~1e-7 of itself per iteration, with or without
 * over-relaxation; such a mode, not float64 round-off, is what limits the error then. */
#define FC_SK_STALL 0.9998

/* exp(x) for the fused pass: exactly 0 below exp(-600), so that the products and sums
 * never meet subnormal numbers (which the processor handles 100x slower).  It is
 * fc_exp_f64 without what this range does not need: the argument is clamped to
 * [-600, 700] first (even discarded lanes compute no subnormal), so 2^n is one
 * normal factor and NaN cannot occur (inputs are finite).  Same polynomial, so the
 * same accuracy (<= 3 ulp). */
FC_INLINE double fc_sk_exp(double x)
{
    double xc = x > -600.0 ? x : -600.0;
    xc = xc < 700.0 ? xc : 700.0;
    int64_t n;
    double y = fc_exp_split_f64(xc, &n) * fc_pow2i_f64(n);
    return x >= -600.0 ? y : 0.0;
}

/* fc_sk_exp with a degree-9 polynomial instead of 12 (relative error <= 7e-12 + a few
 * ulp): the row exponentials of the log-domain pass for float32 M, whose entries carry
 * a relative rounding of 6e-8 (an error of 6e-8 |M_ij / reg| in the exponent), so the
 * three dropped terms are far below the input's own precision.  Range reduction as in
 * fc_exp_split_f64. */
FC_INLINE double fc_sk_exp9(double x)
{
    double xc = x > -600.0 ? x : -600.0;
    xc = xc < 700.0 ? xc : 700.0;
    double t, nf, r, p = FC_EXP_LEAD9_F64;
    FC_EXP_REDUCE_F64(xc, t, nf, r);
    int64_t n = (int64_t)(fc_f64_to_bits(t) - fc_f64_to_bits(FC_EXP_MAGIC_F64));
    FC_EXP_TAYLOR9_F64(p, r);
    double y = p * fc_pow2i_f64(n);
    return x >= -600.0 ? y : 0.0;
}

/* exp(x), exactly 0 where the result would be subnormal (x < -708). */
FC_INLINE double fc_sk_exp_normal(double x)
{
    double e = fc_exp_f64(x > -708.0 ? x : -708.0);
    return x >= -708.0 ? e : 0.0;
}

/* a vectorised sum (the order of its terms depends on the vector width only): OpenMP's simd
 * directive, which setup.py enables with -fopenmp-simd (no OpenMP runtime); a compiler
 * without it ignores the pragma and sums in order */
#define FC_SK_PRAGMA(x) _Pragma(#x)
#define FC_SK_SIMD_SUM(s) FC_SK_PRAGMA(omp simd reduction(+ : s))
#define FC_SK_SIMD_SUM4(s, t, u, v) FC_SK_PRAGMA(omp simd reduction(+ : s, t, u, v))
#define FC_SK_SIMD_SUM2(s, t) FC_SK_PRAGMA(omp simd reduction(+ : s, t))
#define FC_SK_SIMD_SUM8(s, t, u, v, w, x, y, z) FC_SK_PRAGMA(omp simd simdlen(4) reduction(+ : s, t, u, v, w, x, y, z))

/* Rows per block and number of blocks: a function of n only (never of the thread
 * count), so that column sums are added in the same order whatever n_threads is. */
static void fc_sk_blocks(ptrdiff_t n, ptrdiff_t *rb, ptrdiff_t *nb)
{
    ptrdiff_t r = (n + 63) / 64;
    if (r < 16) r = 16;
    *rb = r;
    *nb = (n + r - 1) / r;
}

/* colsum[h] = the blocks' partial column sums of problem h added in block order, for the
 * entries [lo, hi) of the active problems' columns (nact * m of them). */
static void fc_sk_reduce_cols(const double *part, ptrdiff_t nb, ptrdiff_t k, ptrdiff_t m,
                              const ptrdiff_t *act, double *colsum, ptrdiff_t lo, ptrdiff_t hi)
{
    while (lo < hi) {
        ptrdiff_t q = lo / m, j0 = lo % m;
        ptrdiff_t j1 = (hi - q * m) < m ? hi - q * m : m;
        ptrdiff_t h = act[q];
        double *c = colsum + h * m;
        const double *p0 = part + h * m;
        for (ptrdiff_t j = j0; j < j1; ++j) c[j] = p0[j];
        for (ptrdiff_t bk = 1; bk < nb; ++bk) {
            const double *p = part + (bk * k + h) * m;
            for (ptrdiff_t j = j0; j < j1; ++j) c[j] += p[j];
        }
        lo = q * m + j1;
    }
}

#include "core/fc_real.h"
#include "ot/sinkhorn_rows.h"
#include "ot/sinkhorn_log.h"
#include "ot/sinkhorn_scaling.h"
#include "ot/sinkhorn_plan.h"
