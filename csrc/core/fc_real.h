/* One C source, two precisions.
 *
 * A kernel family writes its implementation once in headers without include guards (e.g.
 * csrc/attention/softmax_impl.h) using the names below, and compiles it once per precision,
 * in two translation units that differ in one line (csrc/attention/softmax_f32.c):
 *
 *     #define FC_REAL_DOUBLE 0                  // softmax_f64.c: 1
 *     #include "attention/softmax_unit.h"      // the headers, then fc_real.h and softmax_impl.h
 *
 * Every unit compiles one precision, so static helpers carry plain names that grep finds
 * (fc_cols, fc_crf_fwd_scaled, ...); only a family's entry points are pasted with FC_NAME
 * (fc_softmax -> fc_softmax_f32 / fc_softmax_f64), and those names are written out where they
 * are declared, in the family's *_internal.h: where a grep for fc_softmax_f32 (a profiler's
 * symbol) lands.  The family's *_dispatch.c picks one by the request's dtype.
 *
 * Names provided:
 *   fc_real            float or double
 *   FC_NAME(base)      base_f32 or base_f64 (a family's entry points only, see above)
 *   FC_EXP(x)          fast vectorisable exp of fc_math.h (<= 2 ulp, IEEE edge cases kept)
 *   FC_EXP_FTZ(x)      cheaper exp for x <= 88: subnormal results flushed to 0, no NaN handling
 *   FC_LOG, FC_LOG1P, FC_SQRT, FC_FABS, FC_LIBM_EXP   the libm function of that precision
 *   FC_INF             +infinity of that precision
 *   FC_EPS             machine epsilon of that precision
 *   FC_MAXVAL          largest finite value
 *
 * Accumulations (sums, norms, log-sum-exp) should use double whatever fc_real is.
 */
#include <float.h>
#include <math.h>
#include "core/fc_math.h"

#undef fc_real
#undef FC_SUFFIX
#undef FC_NAME
#undef FC_EXP
#undef FC_EXP_FTZ
#undef FC_LIBM_EXP
#undef FC_LOG
#undef FC_LOG1P
#undef FC_SQRT
#undef FC_FABS
#undef FC_INF
#undef FC_EPS
#undef FC_MAXVAL

#ifndef FC_CAT
#define FC_CAT_(a, b) a##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#endif

#if !defined(FC_REAL_DOUBLE)
#error "define FC_REAL_DOUBLE to 0 or 1 before including fc_real.h"
#elif FC_REAL_DOUBLE
#define fc_real double
#define FC_SUFFIX _f64
#define FC_EXP(x) fc_exp_f64(x)
#define FC_EXP_FTZ(x) fc_exp_ftz_f64(x)
#define FC_LIBM_EXP(x) exp(x)
#define FC_LOG(x) log(x)
#define FC_LOG1P(x) log1p(x)
#define FC_SQRT(x) sqrt(x)
#define FC_FABS(x) fabs(x)
#define FC_INF ((double)INFINITY)
#define FC_EPS DBL_EPSILON
#define FC_MAXVAL DBL_MAX
#else
#define fc_real float
#define FC_SUFFIX _f32
#define FC_EXP(x) fc_exp_f32(x)
#define FC_EXP_FTZ(x) fc_exp_ftz_f32(x)
#define FC_LIBM_EXP(x) expf(x)
#define FC_LOG(x) logf(x)
#define FC_LOG1P(x) log1pf(x)
#define FC_SQRT(x) sqrtf(x)
#define FC_FABS(x) fabsf(x)
#define FC_INF ((float)INFINITY)
#define FC_EPS FLT_EPSILON
#define FC_MAXVAL FLT_MAX
#endif

#define FC_NAME(base) FC_CAT(base, FC_SUFFIX)
