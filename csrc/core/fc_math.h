/* Branch-free elementwise maths that the compiler can vectorise.
 *
 * libm's exp() is a function call per element and blocks vectorisation unless
 * -ffast-math is used (which we never use: it breaks -inf masks and NaN checks).
 * These versions use the classic reduction exp(x) = 2^n * exp(r), n = round(x/ln2),
 * |r| <= ln2/2, with a two-constant (Cody-Waite) ln2 and a polynomial (float: minimax
 * of degree 6; double: Taylor of degree 12).  Accuracy (measured over the whole range):
 * <= 2 ulp for float, <= 3 ulp for double, including subnormal results.  Edge cases
 * follow IEEE: exp(-inf) = 0, exp(+inf) = +inf, exp(NaN) = NaN, overflow gives
 * +inf and deep underflow gives +0.
 */
#ifndef FC_MATH_H
#define FC_MATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#include "core/fc_simd.h" /* FC_INLINE */

static inline float fc_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint32_t fc_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline double fc_bits_to_f64(uint64_t u) { double f; memcpy(&f, &u, sizeof f); return f; }
static inline uint64_t fc_f64_to_bits(double f) { uint64_t u; memcpy(&u, &f, sizeof u); return u; }

/* The shared core: exp(x) = 2^n * p(r), n = round(x / ln2), r = x - n ln2 (two-constant
 * ln2), p a polynomial (minimax of degree 6 float, Taylor of degree 12 double).  x must be
 * finite and already clamped by the caller; returns p and sets *n.  Every exp below is
 * built on it. */
/* The algorithm's pieces as macros, so that the same operations serve scalars here and
 * the explicit GCC-vector exps of the families (scalar constants broadcast); there is one
 * copy of the constants and of the polynomial.
 * FC_EXP_REDUCE_*(x, t, nf, r): t = x log2e + magic (t's low bits hold n), nf = n as a
 * real, r = x - n ln2 in two steps.  FC_EXP_POLY6_F32 / FC_EXP_TAYLOR*_F64(p, r): p holds
 * the leading coefficient on entry and the polynomial at r on exit (Horner). */
#define FC_EXP_MAGIC_F32 12582912.0f           /* 1.5 * 2^23: adding it rounds to an integer */
#define FC_EXP_MAGIC_F64 6755399441055744.0    /* 1.5 * 2^52 */
#define FC_EXP_REDUCE_F32(x, t, nf, r)                                                      \
    t = (x) * 1.44269504088896341f + FC_EXP_MAGIC_F32;                                      \
    nf = t - FC_EXP_MAGIC_F32;                                                              \
    r = (x) - nf * 0.693359375f;              /* ln2 high part, exact in a few bits */      \
    r = r - nf * -2.12194440e-4f
#define FC_EXP_REDUCE_F64(x, t, nf, r)                                                      \
    t = (x) * 1.4426950408889634074 + FC_EXP_MAGIC_F64;                                     \
    nf = t - FC_EXP_MAGIC_F64;                                                              \
    r = (x) - nf * 6.93145751953125e-1;                                                     \
    r = r - nf * 1.42860682030941723212e-6
/* float: the degree-6 minimax polynomial of exp on [-ln2/2, ln2/2] (relative error 1.9e-9
 * before rounding, c0 = c1 = 1), one multiply-add fewer than the degree-7 Taylor polynomial
 * at the same accuracy: <= 1.04 ulp measured over [-87, 40] in float (Taylor-7: 0.92). */
#define FC_EXP_LEAD6_F32 0.0013836845755577087f
#define FC_EXP_POLY6_F32(p, r)                                                              \
    p = p * (r) + 0.008374815806746483f; p = p * (r) + 0.04166822507977486f;                \
    p = p * (r) + 0.16666419804096222f; p = p * (r) + 0.49999991059303284f;                 \
    p = p * (r) + 1.0f; p = p * (r) + 1.0f
#define FC_EXP_LEAD9_F64 (1.0 / 362880.0)
#define FC_EXP_TAYLOR9_F64(p, r)                                                            \
    p = p * (r) + 1.0 / 40320.0; p = p * (r) + 1.0 / 5040.0; p = p * (r) + 1.0 / 720.0;     \
    p = p * (r) + 1.0 / 120.0; p = p * (r) + 1.0 / 24.0; p = p * (r) + 1.0 / 6.0;           \
    p = p * (r) + 0.5; p = p * (r) + 1.0; p = p * (r) + 1.0
#define FC_EXP_LEAD12_F64 (1.0 / 479001600.0)
#define FC_EXP_TAYLOR12_F64(p, r)                                                           \
    p = p * (r) + 1.0 / 39916800.0; p = p * (r) + 1.0 / 3628800.0;                          \
    p = p * (r) + FC_EXP_LEAD9_F64; FC_EXP_TAYLOR9_F64(p, r)

FC_INLINE float fc_exp_split_f32(float x, int32_t *n)
{
    float t, nf, r, p = FC_EXP_LEAD6_F32;
    FC_EXP_REDUCE_F32(x, t, nf, r);
    *n = (int32_t)(fc_f32_to_bits(t) - fc_f32_to_bits(FC_EXP_MAGIC_F32));
    FC_EXP_POLY6_F32(p, r);
    return p;
}

FC_INLINE double fc_exp_split_f64(double x, int64_t *n)
{
    double t, nf, r, p = FC_EXP_LEAD12_F64;
    FC_EXP_REDUCE_F64(x, t, nf, r);
    *n = (int64_t)(fc_f64_to_bits(t) - fc_f64_to_bits(FC_EXP_MAGIC_F64));
    FC_EXP_TAYLOR12_F64(p, r);
    return p;
}

/* 2^n for n in the normal exponent range. */
FC_INLINE float fc_pow2i_f32(int32_t n) { return fc_bits_to_f32((uint32_t)(n + 127) << 23); }
FC_INLINE double fc_pow2i_f64(int64_t n) { return fc_bits_to_f64((uint64_t)(n + 1023) << 52); }

/* exp over the whole range, IEEE edge cases kept (see the top of this file). */
FC_INLINE float fc_exp_f32(float x)
{
    float xc = x > 89.0f ? 89.0f : x;          /* NaN fails both tests and stays NaN */
    xc = xc < -104.0f ? -104.0f : xc;
    int32_t n;
    float p = fc_exp_split_f32(xc, &n);
    /* 2^n in two factors so that subnormal results round once, correctly */
    int32_t n1 = n >> 1;
    float y = (p * fc_pow2i_f32(n1)) * fc_pow2i_f32(n - n1);
    return x != x ? x : y;
}

FC_INLINE double fc_exp_f64(double x)
{
    double xc = x > 710.0 ? 710.0 : x;
    xc = xc < -746.0 ? -746.0 : xc;
    int64_t n;
    double p = fc_exp_split_f64(xc, &n);
    int64_t n1 = n >> 1;
    double y = (p * fc_pow2i_f64(n1)) * fc_pow2i_f64(n - n1);
    return x != x ? x : y;
}

/* exp(x) for x <= 88 (float) / 709 (double), results that would be subnormal flushed
 * to exactly 0 (x < -87 / -708).  Cheaper than fc_exp_*: one scale factor, no NaN or
 * overflow handling.  For softmax-style arguments (a score minus the running maximum),
 * where those terms are below 1e-37 of the sum. */
FC_INLINE float fc_exp_ftz_f32(float x)
{
    const float lo = -87.0f;
    int32_t n;
    float p = fc_exp_split_f32(x < lo ? lo : x, &n);
    float y = p * fc_pow2i_f32(n);
    return x < lo ? 0.0f : y;
}

FC_INLINE double fc_exp_ftz_f64(double x)
{
    const double lo = -708.0;
    int64_t n;
    double p = fc_exp_split_f64(x < lo ? lo : x, &n);
    double y = p * fc_pow2i_f64(n);
    return x < lo ? 0.0 : y;
}

#endif /* FC_MATH_H */
