/* Fast path vs reference path (csrc/optim/optim_reference.c) of every operation of optim.h and
 * norm.h, on random problems (fixed seeds, both dtypes), plus checks of the reference itself.
 * Standalone C, no Python.  Built and run by
 *
 *   bash tests/c/run.sh            (see that script for other compilers, backends, arm64 under qemu)
 *
 * Tables of 0 to 6 arrays of sizes around the vector widths (0, 1, 15, 16, 17, ...), a quarter of
 * them with one array longer than the work-list chunk (65536); norms also on huge, tiny, NaN and
 * infinite values.  Every SGD option combination (momentum, dampening, nesterov, first step,
 * coupled / decoupled weight decay, maximise, clip, WEISSI coefficients) and every Adam one
 * (amsgrad, weight decay, WEISSI, clip, maximise, beta1 on both sides of 0.5 and 0, step 1 or
 * later) runs one step from the same random state on both paths; the parameters and every state
 * array are then compared (one step: the tolerances are those of one update, not of a chain).
 * Batch norm: (N, C) and (N, C, L), training and inference, optional gamma / beta / running
 * statistics, then the backward from the same saved statistics.
 *
 * The fast kernels of a float32 request round every intermediate to float32 where the reference
 * stays in double, and an element may cancel to ~0 (d = scale g + c_p p + c_s sign(p), the Adam
 * lerp, dx of a batch of two): each element is compared against the magnitude of the terms that
 * make it, |fast - ref| <= tol (max(|fast|, |ref|) + terms), tol ~ 30 float32 or 900 float64 ulps
 * (the measured errors are a few ulps).  Adam elements whose d cancels to rounding are left out
 * (cancel_masks: the first step's d / (|d| + eps) is ill-conditioned there) and counted.  Norms are
 * summed in double by both paths: relative error within the summation bound (norm_tol).
 * Prints one summary line per operation; exits 1 on any mismatch.  Argument: number of array
 * tables per dtype (default 48; 30 batch norm problems per table).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/norm.h"
#include "optim/optim.h"

/* ---------------------------------------------------------------- random numbers */
static uint64_t rng_state;
static uint32_t rnd32(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}
static double unif(void) { return rnd32() / 2147483648.0; } /* [0, 1) */
static int irand(int n) { return (int)(unif() * n); }      /* [0, n) */
static double gauss(void) { return 1.7 * (unif() + unif() + unif() + unif() - 2.0); }
static void seed_rng(long seed) { rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 12345; }

/* ---------------------------------------------------------------- bookkeeping */
enum { OP_REDUCE, OP_GNORM, OP_ANORMS, OP_SGD, OP_ADAM, OP_BNF, OP_BNB, OP_ARGS, OP_SELF, NOP };
static const char *op_name[NOP] = {"fc_reduce", "fc_global_norm", "fc_array_norms", "fc_sgd_step",
                                   "fc_adam_step", "fc_bn_forward", "fc_bn_backward", "bad arguments",
                                   "reference identities"};
static long n_calls[NOP], n_bad[NOP];
static double max_err[NOP][2];
static int verbose_left = 16;
static long n_skipped; /* elements whose d cancels (see cancel_masks) */

/* Norms: summed in double by both paths, whatever the dtype, in different orders: n positive terms
 * to within (n - 1) ulps each (worst case), the p-th root dividing that by p.  For p other than 1, 2
 * and inf, the fast path's root pow(s, 1/p) of the unscaled sum s adds |ln s| times the rounding
 * of 1/p: up to 745 u / p (the reference's sum is O(n), its root exact to rounding). */
static double norm_tol(ptrdiff_t n, double p)
{
    const double root = p == 1.0 || p == 2.0 || isinf(p) ? 0.0 : 745.0 / p;
    return (2.0 * (double)(n + 8) * fmax(1.0, 1.0 / p) + root) * 0x1p-53;
}
static ptrdiff_t total_size(const ptrdiff_t *sizes, ptrdiff_t n)
{
    ptrdiff_t s = 0;
    for (ptrdiff_t k = 0; k < n; ++k) s += sizes[k];
    return s;
}
/* updates and batch norm: one float32 or float64 evaluation against double, on the terms' scale */
static double tol_of(fc_dtype dt) { return dt == FC_FLOAT32 ? 2e-6 : 2e-13; }

static void report(int op, const char *what, long seed, ptrdiff_t idx, double fast, double ref)
{
    n_bad[op]++;
    if (verbose_left-- > 0)
        printf("  MISMATCH %s: %s (seed %ld, index %td): fast %.17g, reference %.17g\n", op_name[op], what, seed, idx,
               fast, ref);
}

/* |a - b| <= tol (max(|a|, |b|) + scale); NaNs equal, infinities equal by sign; records the error */
static int close_to(int op, fc_dtype dt, double a, double b, double scale, double tol)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    double den = fmax(fabs(a), fabs(b)) + scale;
    double err = den > 0 ? fabs(a - b) / den : 0.0;
    if (err > max_err[op][dt]) max_err[op][dt] = err;
    return err <= tol;
}

static size_t rsize(fc_dtype dt) { return dt == FC_FLOAT32 ? sizeof(float) : sizeof(double); }
static double rget(const void *a, fc_dtype dt, ptrdiff_t i)
{
    return dt == FC_FLOAT32 ? (double)((const float *)a)[i] : ((const double *)a)[i];
}
static void rset(void *a, fc_dtype dt, ptrdiff_t i, double v)
{
    if (dt == FC_FLOAT32) ((float *)a)[i] = (float)v; else ((double *)a)[i] = v;
}
static void *ralloc(fc_dtype dt, ptrdiff_t n) { return calloc((size_t)(n > 0 ? n : 1), rsize(dt)); }
static void *rdup(fc_dtype dt, const void *a, ptrdiff_t n)
{
    if (a == NULL) return NULL;
    void *b = ralloc(dt, n);
    memcpy(b, a, rsize(dt) * (size_t)n);
    return b;
}

/* Compares fast and ref (n entries of dtype dt) on the array's scale (max |ref|); first miss reported. */
static void cmp_array(int op, fc_dtype dt, long seed, const char *what, const void *fast, const void *ref,
                      ptrdiff_t n)
{
    double s = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i)
        if (isfinite(rget(ref, dt, i))) s = fmax(s, fabs(rget(ref, dt, i)));
    for (ptrdiff_t i = 0; i < n; ++i) {
        double a = rget(fast, dt, i), b = rget(ref, dt, i);
        if (!close_to(op, dt, a, b, s, tol_of(dt))) { report(op, what, seed, i, a, b); return; }
    }
}

/* The same with a scale per element (the magnitude of the terms that make it, scale[i] >= 0), except
 * the entries with skip[i] != 0 (skip may be NULL). */
static void cmp_terms(int op, fc_dtype dt, long seed, const char *what, const void *fast, const void *ref,
                      const double *scale, ptrdiff_t n, const unsigned char *skip)
{
    for (ptrdiff_t i = 0; i < n; ++i) {
        if (skip != NULL && skip[i]) continue;
        double a = rget(fast, dt, i), b = rget(ref, dt, i);
        if (!close_to(op, dt, a, b, scale[i], tol_of(dt))) { report(op, what, seed, i, a, b); return; }
    }
}

static void cmp_status(int op, long seed, const char *what, int sf, int sr)
{
    if (sf != sr) report(op, what, seed, -1, sf, sr);
}

/* ---------------------------------------------------------------- array tables */
#define MAXA 6
enum { PLAIN, HUGE, TINY, WITH_NAN, WITH_INF, NSPECIAL };
static const char *special_name[NSPECIAL] = {"plain", "huge", "tiny", "NaN", "inf"};

typedef struct {
    fc_dtype dt;
    long seed;
    int special;
    ptrdiff_t n, sizes[MAXA];
    void *x[MAXA];                                       /* gradients (the reduced arrays) */
    void *p[MAXA], *buf[MAXA], *m[MAXA], *v[MAXA], *vm[MAXA]; /* parameters and state */
    double cp[MAXA], cs[MAXA];                           /* WEISSI-like coefficients */
} table;

static void table_free(table *t)
{
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        free(t->x[k]); free(t->p[k]); free(t->buf[k]); free(t->m[k]); free(t->v[k]); free(t->vm[k]);
    }
}

static ptrdiff_t rand_size(int big)
{
    static const ptrdiff_t menu[] = {0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 1000, 4097};
    if (big) return irand(3) ? 65536 + 1 + irand(6000) : 2 * 65536 + 37; /* 2 or 3 chunks */
    return menu[irand((int)(sizeof menu / sizeof menu[0]))];
}

/* one array of n values: gauss * scale, a fraction `zeros` of them exactly 0 (NULL when empty, half the time) */
static void *rand_array(fc_dtype dt, ptrdiff_t n, double scale, double zeros, int nonneg)
{
    if (n == 0 && irand(2)) return NULL;
    void *a = ralloc(dt, n);
    for (ptrdiff_t i = 0; i < n; ++i) {
        double g = gauss() * scale;
        rset(a, dt, i, unif() < zeros ? 0.0 : nonneg ? fabs(g) : g);
    }
    return a;
}

static void make_table(table *t, fc_dtype dt, long seed)
{
    seed_rng(seed);
    memset(t, 0, sizeof *t);
    t->dt = dt;
    t->seed = seed;
    const int big = unif() < 0.25;
    const double u = unif();
    t->special = u < 0.6 ? PLAIN : u < 0.7 ? HUGE : u < 0.8 ? TINY : u < 0.9 ? WITH_NAN : WITH_INF;
    t->n = irand(MAXA + 1);
    const ptrdiff_t kbig = big && t->n > 0 ? irand((int)t->n) : -1;
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        const ptrdiff_t n = rand_size(k == kbig);
        t->sizes[k] = n;
        double scale = pow(10.0, 3 * unif() - 1.5); /* each array its own magnitude */
        if (t->special == HUGE) scale = dt == FC_FLOAT32 ? 1e37 : 1e300;
        if (t->special == TINY) scale = dt == FC_FLOAT32 ? 1e-42 : 1e-300 * (irand(2) ? 1.0 : 1e-10);
        t->x[k] = rand_array(dt, n, scale, 0.02, 0);
        t->p[k] = rand_array(dt, n, 1.0, 0.05, 0); /* exact zeros: sign(0) = 0 */
        t->buf[k] = rand_array(dt, n, 0.5, 0.0, 0);
        /* Adam's moments as a run leaves them: |m| <= sqrt(v) (v = 0 only with m = 0), vmax around v */
        t->m[k] = rand_array(dt, n, 0.1 * scale, 0.02, 0);
        t->v[k] = t->m[k] ? ralloc(dt, n) : NULL; /* (empty arrays: NULL or not, like m) */
        t->vm[k] = t->m[k] ? ralloc(dt, n) : NULL;
        for (ptrdiff_t i = 0; i < n; ++i) {
            const double mi = rget(t->m[k], dt, i);
            const double vi = mi == 0.0 && irand(2) ? 0.0 : mi * mi * (1.0 + unif()) + 1e-4 * scale * scale * unif();
            rset(t->v[k], dt, i, vi);
            rset(t->vm[k], dt, i, vi * (0.5 + 1.5 * unif()));
        }
        t->cp[k] = 0.2 * (unif() - 0.5);
        t->cs[k] = 0.05 * unif();
    }
    if (t->special == WITH_NAN || t->special == WITH_INF) { /* one bad value in a non-empty array */
        ptrdiff_t k = t->n > 0 ? irand((int)t->n) : 0, tries = 0;
        while (tries < t->n && t->sizes[k] == 0) k = (k + 1) % t->n, ++tries;
        if (tries < t->n)
            rset(t->x[k], dt, irand((int)t->sizes[k]), t->special == WITH_NAN ? NAN : irand(2) ? INFINITY : -INFINITY);
        else
            t->special = PLAIN; /* every array empty */
    }
}

static fc_arrays as_arrays(const table *t, fc_path path, int nt)
{
    fc_arrays a = {.dtype = t->dt, .path = path, .n_arrays = t->n, .x = (const void *const *)t->x,
                   .sizes = t->sizes, .n_threads = nt};
    return a;
}

/* ---------------------------------------------------------------- reductions */
static void test_reductions(const table *t, int nt)
{
    static const double scales[3] = {1.0, 0.125, 0.3};
    static const double pows[4] = {0.5, 1.5, 3.0, 2.0};
    for (int kind = FC_RED_SUMSQ; kind <= FC_RED_MAXABS; ++kind) {
        const double sc = scales[irand(3)], pw = pows[irand(4)];
        double out[2][MAXA];
        int s[2];
        for (int r = 0; r < 2; ++r) {
            fc_arrays a = as_arrays(t, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
            s[r] = fc_reduce(&a, kind, pw, sc, out[r]);
        }
        n_calls[OP_REDUCE]++;
        if (s[0] != 0 || s[1] != 0) { cmp_status(OP_REDUCE, t->seed, "status", s[0], s[1]); continue; }
        for (ptrdiff_t k = 0; k < t->n; ++k)
            if (!close_to(OP_REDUCE, t->dt, out[0][k], out[1][k], 0.0, norm_tol(t->sizes[k], 1.0))) {
                report(OP_REDUCE, (const char *[]){"SUMSQ", "SUMABS", "SUMPOW", "MAXABS"}[kind], t->seed, k,
                       out[0][k], out[1][k]);
                break;
            }
    }
    static const double ps[6] = {2.0, 1.0, 3.0, 0.5, INFINITY, 1.7};
    for (int i = 0; i < 6; ++i) {
        double nrm[2] = {-1, -1};
        int s[2];
        for (int r = 0; r < 2; ++r) {
            fc_arrays a = as_arrays(t, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
            s[r] = fc_global_norm(&a, ps[i], &nrm[r]);
        }
        n_calls[OP_GNORM]++;
        if (s[0] != 0 || s[1] != 0) { cmp_status(OP_GNORM, t->seed, "status", s[0], s[1]); continue; }
        char what[64];
        snprintf(what, sizeof what, "p = %g, %s values", ps[i], special_name[t->special]);
        if (!close_to(OP_GNORM, t->dt, nrm[0], nrm[1], 0.0, norm_tol(total_size(t->sizes, t->n), ps[i]))) report(OP_GNORM, what, t->seed, i, nrm[0], nrm[1]);
    }
    double l2[2][MAXA], l1[2][MAXA];
    const int with_l1 = irand(4) != 0;
    int s[2];
    for (int r = 0; r < 2; ++r) {
        fc_arrays a = as_arrays(t, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        s[r] = fc_array_norms(&a, l2[r], with_l1 ? l1[r] : NULL);
    }
    n_calls[OP_ANORMS]++;
    if (s[0] != 0 || s[1] != 0) { cmp_status(OP_ANORMS, t->seed, "status", s[0], s[1]); return; }
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        if (!close_to(OP_ANORMS, t->dt, l2[0][k], l2[1][k], 0.0, norm_tol(t->sizes[k], 2.0))) {
            report(OP_ANORMS, "l2", t->seed, k, l2[0][k], l2[1][k]);
            break;
        }
        if (with_l1 && !close_to(OP_ANORMS, t->dt, l1[0][k], l1[1][k], 0.0, norm_tol(t->sizes[k], 1.0))) {
            report(OP_ANORMS, "l1", t->seed, k, l1[0][k], l1[1][k]);
            break;
        }
    }
}

/* The reference norms against each other and against a plain sum of squares (finite tables). */
static void test_norm_identities(const table *t)
{
    fc_arrays a = as_arrays(t, FC_PATH_REFERENCE, 1);
    double g2, l2[MAXA], plain = 0.0, sum_l2sq = 0.0;
    if (fc_global_norm(&a, 2.0, &g2) != 0 || fc_array_norms(&a, l2, NULL) != 0) {
        report(OP_SELF, "status", t->seed, -1, 1, 0);
        return;
    }
    n_calls[OP_SELF]++;
    if (t->special == WITH_NAN || t->special == WITH_INF) {
        int ok = t->special == WITH_NAN ? isnan(g2) : g2 == INFINITY;
        if (!ok) report(OP_SELF, "norm of a NaN / inf table", t->seed, -1, g2, NAN);
        return;
    }
    double big = 0.0;
    for (ptrdiff_t k = 0; k < t->n; ++k) big = fmax(big, l2[k]);
    for (ptrdiff_t k = 0; k < t->n; ++k) sum_l2sq += big > 0 ? (l2[k] / big) * (l2[k] / big) : 0.0;
    const double tol = norm_tol(total_size(t->sizes, t->n), 2.0);
    if (!close_to(OP_SELF, t->dt, g2, big * sqrt(sum_l2sq), 0.0, tol))
        report(OP_SELF, "global norm vs array norms", t->seed, -1, g2, big * sqrt(sum_l2sq));
    if (t->special != PLAIN) return;
    for (ptrdiff_t k = 0; k < t->n; ++k)
        for (ptrdiff_t i = 0; i < t->sizes[k]; ++i) plain += rget(t->x[k], t->dt, i) * rget(t->x[k], t->dt, i);
    if (!close_to(OP_SELF, t->dt, g2, sqrt(plain), 0.0, tol))
        report(OP_SELF, "global norm vs sqrt(sum x^2)", t->seed, -1, g2, sqrt(plain));
}

/* ---------------------------------------------------------------- updates */
/* State of one path: copies of the table's parameters and state arrays. */
typedef struct {
    void *p[MAXA], *buf[MAXA], *m[MAXA], *v[MAXA], *vm[MAXA];
} state;

static void state_copy(state *s, const table *t)
{
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        s->p[k] = rdup(t->dt, t->p[k], t->sizes[k]);
        s->buf[k] = rdup(t->dt, t->buf[k], t->sizes[k]);
        s->m[k] = rdup(t->dt, t->m[k], t->sizes[k]);
        s->v[k] = rdup(t->dt, t->v[k], t->sizes[k]);
        s->vm[k] = rdup(t->dt, t->vm[k], t->sizes[k]);
    }
}

static void state_free(state *s, const table *t)
{
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        free(s->p[k]); free(s->buf[k]); free(s->m[k]); free(s->v[k]); free(s->vm[k]);
    }
}

/* Adam: masks of the elements whose d = scale g + c_p p + c_s sign(p) cancels to below 4096 ulps of
 * its terms; they are not compared.  There the fast kernel's d (rounded to the dtype) carries a
 * relative error r > 1/2048, and the first step's lr d / (|d| + eps) moves p by up to lr r / 4 for
 * it: with eps << |d| a small difference, with |d| ~ eps an O(lr r) one, beyond the tolerance.
 * Above the threshold that is at most a tenth of the tolerance.  skip[k] is freed by the caller. */
static void cancel_masks(const table *t, double scale, const double *c_p, const double *c_s, unsigned char **skip)
{
    const double ulp = t->dt == FC_FLOAT32 ? 0x1p-24 : 0x1p-53;
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        const double cp = c_p ? c_p[k] : 0.0, cs = c_s ? c_s[k] : 0.0;
        skip[k] = calloc((size_t)(t->sizes[k] > 0 ? t->sizes[k] : 1), 1);
        for (ptrdiff_t i = 0; i < t->sizes[k]; ++i) {
            const double p = rget(t->p[k], t->dt, i), g = rget(t->x[k], t->dt, i);
            const double sg = (double)((p > 0) - (p < 0));
            const double d = scale * g + cp * p + cs * sg;
            const double terms = fabs(scale * g) + fabs(cp * p) + fabs(cs * sg);
            skip[k][i] = fabs(d) < 4096 * ulp * terms;
            n_skipped += skip[k][i];
        }
    }
}

#define N_SGD_COMBOS 192
static void test_sgd(const table *t, int nt, int combo)
{
    const int mom_mode = combo % 4; /* none, plain, dampened, nesterov */
    const int first = combo / 4 % 2, wd = combo / 8 % 3, maximize = combo / 24 % 2;
    const int clip = combo / 48 % 2, weissi = combo / 96 % 2;
    const double lr = 0.05, wdv = 0.01, momentum = mom_mode ? 0.9 : 0.0, damp = mom_mode == 2 ? 0.3 : 0.0;
    double cp[MAXA], cs[MAXA];
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        cp[k] = (weissi ? t->cp[k] : 0.0) + (wd == 1 ? wdv : 0.0);
        cs[k] = t->cs[k];
    }
    char name[128];
    snprintf(name, sizeof name, "momentum %d first %d wd %d maximize %d clip %d weissi %d", mom_mode, first, wd,
             maximize, clip, weissi);
    const double scale = (clip ? 0.37 : 1.0) * (maximize ? -1.0 : 1.0), decay = wd == 2 ? 1.0 - lr * wdv : 1.0;
    const double keep = first ? 0.0 : momentum, newc = first ? 1.0 : 1.0 - damp;
    state s[2];
    int st[2];
    for (int r = 0; r < 2; ++r) {
        state_copy(&s[r], t);
        fc_sgd_request q = {.dtype = t->dt, .path = r ? FC_PATH_REFERENCE : FC_PATH_FAST, .n_arrays = t->n,
                            .sizes = t->sizes, .p = s[r].p, .g = (const void *const *)t->x,
                            .buf = momentum > 0 ? s[r].buf : NULL, .c_p = wd == 1 || weissi ? cp : NULL,
                            .c_s = weissi ? cs : NULL, .scale = scale, .lr = lr, .decay = decay,
                            .momentum = momentum, .buf_keep = keep, .buf_new = newc, .nesterov = mom_mode == 3,
                            .n_threads = r ? 1 : nt};
        st[r] = fc_sgd_step(&q);
    }
    n_calls[OP_SGD]++;
    if (st[0] != 0 || st[1] != 0) cmp_status(OP_SGD, t->seed, "status", st[0], st[1]);
    for (ptrdiff_t k = 0; k < t->n && st[0] == 0 && st[1] == 0; ++k) {
        /* the update is linear: each element against the magnitude of its terms (d may cancel) */
        const ptrdiff_t n = t->sizes[k];
        const double c_p = wd == 1 || weissi ? cp[k] : 0.0, c_s = weissi ? cs[k] : 0.0;
        double *tp = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1)), *tb = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
        for (ptrdiff_t i = 0; i < n; ++i) {
            const double p = rget(t->p[k], t->dt, i), g = rget(t->x[k], t->dt, i);
            const double td = fabs(scale * g) + fabs(c_p * p) + fabs(c_s); /* d's terms */
            tb[i] = momentum > 0 ? fabs(keep * rget(t->buf[k], t->dt, i)) + fabs(newc) * td : 0.0;
            const double tu = momentum > 0 ? (mom_mode == 3 ? td + momentum * tb[i] : tb[i]) : td;
            tp[i] = fabs(decay * p) + lr * tu;
        }
        char what[200];
        snprintf(what, sizeof what, "p[%td], %s", k, name);
        if (n > 0) cmp_terms(OP_SGD, t->dt, t->seed, what, s[0].p[k], s[1].p[k], tp, n, NULL);
        snprintf(what, sizeof what, "buf[%td], %s", k, name);
        if (n > 0 && momentum > 0) cmp_terms(OP_SGD, t->dt, t->seed, what, s[0].buf[k], s[1].buf[k], tb, n, NULL);
        free(tp);
        free(tb);
    }
    state_free(&s[0], t);
    state_free(&s[1], t);
}

#define N_ADAM_COMBOS 288
static void test_adam(const table *t, int nt, int combo)
{
    const int ams = combo % 2, wd = combo / 2 % 3, weissi = combo / 6 % 2, clip = combo / 12 % 2;
    const int maximize = combo / 24 % 2, b1i = combo / 48 % 3, later = combo / 144 % 2;
    const double lr = 1e-2, wdv = 0.01, beta1 = (double[]){0.9, 0.3, 0.0}[b1i], beta2 = later ? 0.99 : 0.999;
    const double tstep = later ? 7.0 : 1.0, eps = later ? 1e-3 : 1e-8;
    const double scale = (clip ? 0.37 : 1.0) * (maximize ? -1.0 : 1.0), decay = wd == 2 ? 1.0 - lr * wdv : 1.0;
    const double step_size = lr / (1.0 - pow(beta1, tstep)), bc2_sqrt = sqrt(1.0 - pow(beta2, tstep));
    double cp[MAXA], cs[MAXA];
    for (ptrdiff_t k = 0; k < t->n; ++k) {
        cp[k] = (weissi ? t->cp[k] : 0.0) + (wd == 1 ? wdv : 0.0);
        cs[k] = t->cs[k];
    }
    char name[128];
    snprintf(name, sizeof name, "amsgrad %d wd %d weissi %d clip %d maximize %d beta1 %g t %g", ams, wd, weissi,
             clip, maximize, beta1, tstep);
    state s[2];
    int st[2];
    for (int r = 0; r < 2; ++r) {
        state_copy(&s[r], t);
        for (ptrdiff_t k = 0; !later && k < t->n; ++k) { /* the first step starts from zeros */
            if (t->sizes[k] == 0) continue;
            memset(s[r].m[k], 0, rsize(t->dt) * (size_t)t->sizes[k]);
            memset(s[r].v[k], 0, rsize(t->dt) * (size_t)t->sizes[k]);
            memset(s[r].vm[k], 0, rsize(t->dt) * (size_t)t->sizes[k]);
        }
        fc_adam_request q = {.dtype = t->dt, .path = r ? FC_PATH_REFERENCE : FC_PATH_FAST, .n_arrays = t->n,
                             .sizes = t->sizes, .p = s[r].p, .g = (const void *const *)t->x, .m = s[r].m,
                             .v = s[r].v, .vmax = ams ? s[r].vm : NULL, .c_p = wd == 1 || weissi ? cp : NULL,
                             .c_s = weissi ? cs : NULL, .scale = scale, .decay = decay, .beta1 = beta1,
                             .beta2 = beta2, .step_size = step_size, .bc2_sqrt = bc2_sqrt, .eps = eps,
                             .n_threads = r ? 1 : nt};
        st[r] = fc_adam_step(&q);
    }
    n_calls[OP_ADAM]++;
    unsigned char *skip[MAXA];
    cancel_masks(t, scale, wd == 1 || weissi ? cp : NULL, weissi ? cs : NULL, skip);
    if (st[0] != 0 || st[1] != 0) cmp_status(OP_ADAM, t->seed, "status", st[0], st[1]);
    for (ptrdiff_t k = 0; k < t->n && st[0] == 0 && st[1] == 0; ++k) {
        /* each element against the magnitude of its terms, to first order: d's, then m's (the lerp
         * may cancel), v's (no cancellation), vmax's, and p's with m's through the denominator */
        const ptrdiff_t n = t->sizes[k], n1 = n > 0 ? n : 1;
        const double c_p = wd == 1 || weissi ? cp[k] : 0.0, c_s = weissi ? cs[k] : 0.0, w = 1.0 - beta1;
        double *tm = malloc(sizeof(double) * (size_t)n1), *tv = malloc(sizeof(double) * (size_t)n1);
        double *tx = malloc(sizeof(double) * (size_t)n1), *tp = malloc(sizeof(double) * (size_t)n1);
        for (ptrdiff_t i = 0; i < n; ++i) {
            const double p = rget(t->p[k], t->dt, i), g = rget(t->x[k], t->dt, i);
            const double m0 = later ? fabs(rget(t->m[k], t->dt, i)) : 0.0, v0 = later ? rget(t->v[k], t->dt, i) : 0.0;
            const double td = fabs(scale * g) + fabs(c_p * p) + fabs(c_s);
            tm[i] = m0 + w * (td + m0);
            tv[i] = beta2 * v0 + (1.0 - beta2) * td * td;
            tx[i] = fmax(tv[i], later ? rget(t->vm[k], t->dt, i) : 0.0);
            const double vhat = rget(ams ? s[1].vm[k] : s[1].v[k], t->dt, i);
            tp[i] = fabs(decay * p) + step_size * tm[i] / (sqrt(vhat) / bc2_sqrt + eps);
        }
        const char *names[4] = {"p", "m", "v", "vmax"};
        void *const *arr[4][2] = {{s[0].p, s[1].p}, {s[0].m, s[1].m}, {s[0].v, s[1].v}, {s[0].vm, s[1].vm}};
        const double *terms[4] = {tp, tm, tv, tx};
        for (int a = 0; a < (ams ? 4 : 3) && n > 0; ++a) {
            char what[200];
            snprintf(what, sizeof what, "%s[%td], %s", names[a], k, name);
            cmp_terms(OP_ADAM, t->dt, t->seed, what, arr[a][0][k], arr[a][1][k], terms[a], n, skip[k]);
        }
        free(tm); free(tv); free(tx); free(tp);
    }
    for (ptrdiff_t k = 0; k < t->n; ++k) free(skip[k]);
    state_free(&s[0], t);
    state_free(&s[1], t);
}

/* ---------------------------------------------------------------- batch norm */
static void test_bn(fc_dtype dt, long seed)
{
    seed_rng(seed);
    ptrdiff_t N, C, L;
    if (irand(2)) { /* (N, C): channel blocks of 64 */
        N = (ptrdiff_t[]){0, 1, 2, 3, 5, 9, 33}[irand(7)];
        C = (ptrdiff_t[]){1, 2, 5, 63, 64, 65, 130}[irand(7)];
        L = 1;
    } else {
        N = (ptrdiff_t[]){0, 1, 2, 3, 4}[irand(5)];
        C = 1 + irand(7);
        L = (ptrdiff_t[]){2, 3, 7, 8, 9, 17, 100}[irand(7)];
    }
    if (irand(40) == 0) C = 0;
    const ptrdiff_t n = N * C * L;
    const int training = irand(3) != 0, with_gamma = irand(4) != 0, with_beta = irand(4) != 0;
    const int with_running = !training || irand(4) != 0;
    const double momentum = (double[]){0.1, 0.0, 1.0, 0.5}[irand(4)];
    const double eps = (double[]){1e-5, 1e-1, 0.0}[irand(3)];
    void *x = ralloc(dt, n), *dy = ralloc(dt, n), *gamma = ralloc(dt, C), *beta = ralloc(dt, C);
    void *rm0 = ralloc(dt, C), *rv0 = ralloc(dt, C);
    for (ptrdiff_t c = 0; c < C; ++c) {
        const double off = 10 * unif() - 5, sc = pow(10.0, 2 * unif() - 1);
        for (ptrdiff_t i = 0; i < N; ++i)
            for (ptrdiff_t l = 0; l < L; ++l) {
                rset(x, dt, (i * C + c) * L + l, off + sc * gauss());
                rset(dy, dt, (i * C + c) * L + l, gauss());
            }
        rset(gamma, dt, c, 0.5 + unif());
        rset(beta, dt, c, gauss());
        rset(rm0, dt, c, off + gauss());
        rset(rv0, dt, c, sc * sc * (0.5 + unif()));
    }
    void *y[2], *sm[2], *si[2], *rm[2], *rv[2], *dx[2], *dg[2], *db[2];
    int s[2];
    for (int r = 0; r < 2; ++r) {
        y[r] = ralloc(dt, n); sm[r] = ralloc(dt, C); si[r] = ralloc(dt, C);
        rm[r] = rdup(dt, rm0, C); rv[r] = rdup(dt, rv0, C);
        fc_bn_problem p = {.dtype = dt, .path = r ? FC_PATH_REFERENCE : FC_PATH_FAST, .N = N, .C = C, .L = L,
                           .x = n ? x : NULL, .gamma = with_gamma ? gamma : NULL, .beta = with_beta ? beta : NULL,
                           .running_mean = with_running ? rm[r] : NULL, .running_var = with_running ? rv[r] : NULL,
                           .save_mean = sm[r], .save_invstd = si[r], .training = training,
                           .momentum = momentum, .eps = eps, .n_threads = r ? 1 : 1 + irand(3)};
        s[r] = fc_bn_forward(&p, n ? y[r] : NULL);
    }
    char what[160];
    snprintf(what, sizeof what, "(%td, %td, %td) training %d gamma %d beta %d running %d momentum %g eps %g", N, C,
             L, training, with_gamma, with_beta, with_running, momentum, eps);
    n_calls[OP_BNF]++;
    if (s[0] != 0 || s[1] != 0) {
        cmp_status(OP_BNF, seed, what, s[0], s[1]); /* e.g. training with N L < 2: both refuse */
        goto done;
    }
    {
        char w2[200];
        /* y's terms: (|x| + |mean|) invstd |gamma| + |beta| (the float32 kernel subtracts the mean
         * stored in float32: its rounding is scaled by invstd) */
        double *sc = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
        for (ptrdiff_t i = 0; i < N; ++i)
            for (ptrdiff_t c = 0; c < C; ++c)
                for (ptrdiff_t l = 0; l < L; ++l) {
                    const ptrdiff_t e = (i * C + c) * L + l;
                    sc[e] = (fabs(rget(x, dt, e)) + fabs(rget(sm[1], dt, c))) * rget(si[1], dt, c) *
                                (with_gamma ? fabs(rget(gamma, dt, c)) : 1.0) +
                            (with_beta ? fabs(rget(beta, dt, c)) : 0.0);
                }
        snprintf(w2, sizeof w2, "y %s", what);
        cmp_terms(OP_BNF, dt, seed, w2, y[0], y[1], sc, n, NULL);
        free(sc);
        snprintf(w2, sizeof w2, "save_mean %s", what);
        cmp_array(OP_BNF, dt, seed, w2, sm[0], sm[1], C);
        snprintf(w2, sizeof w2, "save_invstd %s", what);
        cmp_array(OP_BNF, dt, seed, w2, si[0], si[1], C);
        snprintf(w2, sizeof w2, "running_mean %s", what);
        cmp_array(OP_BNF, dt, seed, w2, rm[0], rm[1], C);
        snprintf(w2, sizeof w2, "running_var %s", what);
        cmp_array(OP_BNF, dt, seed, w2, rv[0], rv[1], C);
    }
    if (training && with_beta && N * L > 0) { /* reference: each channel of y has mean beta */
        n_calls[OP_SELF]++;
        for (ptrdiff_t c = 0; c < C; ++c) {
            double sum = 0.0, terms = 0.0; /* terms: the largest (|x| + |mean|) invstd |gamma| + |beta| */
            const double b = rget(beta, dt, c), g = with_gamma ? rget(gamma, dt, c) : 1.0;
            for (ptrdiff_t i = 0; i < N; ++i)
                for (ptrdiff_t l = 0; l < L; ++l) {
                    const ptrdiff_t e = (i * C + c) * L + l;
                    sum += rget(y[1], dt, e);
                    terms = fmax(terms, (fabs(rget(x, dt, e)) + fabs(rget(sm[1], dt, c))) * rget(si[1], dt, c) * fabs(g) + fabs(b));
                }
            if (!close_to(OP_SELF, dt, sum / (double)(N * L), b, terms, 10 * tol_of(dt))) {
                report(OP_SELF, "batch norm: mean of y = beta", seed, c, sum / (double)(N * L), b);
                break;
            }
        }
    }
    { /* backward from the reference's saved statistics, same flags */
        const int with_dg = irand(4) != 0, with_db = irand(4) != 0;
        for (int r = 0; r < 2; ++r) {
            dx[r] = ralloc(dt, n); dg[r] = ralloc(dt, C); db[r] = ralloc(dt, C);
            fc_bn_problem p = {.dtype = dt, .path = r ? FC_PATH_REFERENCE : FC_PATH_FAST, .N = N, .C = C, .L = L,
                               .x = n ? x : NULL, .gamma = with_gamma ? gamma : NULL, .save_mean = sm[1],
                               .save_invstd = si[1], .training = training, .n_threads = r ? 1 : 1 + irand(3)};
            s[r] = fc_bn_backward(&p, n ? dy : NULL, n ? dx[r] : NULL, with_dg ? dg[r] : NULL, with_db ? db[r] : NULL);
        }
        n_calls[OP_BNB]++;
        if (s[0] != 0 || s[1] != 0) cmp_status(OP_BNB, seed, what, s[0], s[1]);
        else {
            char w2[200];
            /* dx's terms: |gamma| invstd (|dy| + |dbeta|/M + |xhat| |dgamma|/M), xhat's with |x| + |mean|
             * (in training the three cancel: with M = 2 and eps = 0, dx is 0 up to rounding) */
            double *sc = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
            double *sg = malloc(sizeof(double) * (size_t)C), *sb = malloc(sizeof(double) * (size_t)C);
            for (ptrdiff_t c = 0; c < C; ++c) {
                const double mean = rget(sm[1], dt, c), inv = rget(si[1], dt, c);
                const double g = with_gamma ? fabs(rget(gamma, dt, c)) : 1.0;
                double sdy = 0.0, sdyx = 0.0;
                sg[c] = sb[c] = 0.0; /* dgamma's and dbeta's terms: sum |dy xhat|, sum |dy| */
                for (ptrdiff_t i = 0; i < N; ++i)
                    for (ptrdiff_t l = 0; l < L; ++l) {
                        const ptrdiff_t e = (i * C + c) * L + l;
                        sdy += rget(dy, dt, e);
                        sdyx += rget(dy, dt, e) * (rget(x, dt, e) - mean) * inv;
                        sb[c] += fabs(rget(dy, dt, e));
                        sg[c] += fabs(rget(dy, dt, e)) * (fabs(rget(x, dt, e)) + fabs(mean)) * inv;
                    }
                for (ptrdiff_t i = 0; i < N; ++i)
                    for (ptrdiff_t l = 0; l < L; ++l) {
                        const ptrdiff_t e = (i * C + c) * L + l;
                        const double xh = (fabs(rget(x, dt, e)) + fabs(mean)) * inv;
                        sc[e] = g * inv * (fabs(rget(dy, dt, e)) + (training ? (fabs(sdy) + xh * fabs(sdyx)) / (double)(N * L) : 0.0));
                    }
            }
            snprintf(w2, sizeof w2, "dx %s", what);
            cmp_terms(OP_BNB, dt, seed, w2, dx[0], dx[1], sc, n, NULL);
            snprintf(w2, sizeof w2, "dgamma %s", what);
            if (with_dg) cmp_terms(OP_BNB, dt, seed, w2, dg[0], dg[1], sg, C, NULL);
            snprintf(w2, sizeof w2, "dbeta %s", what);
            if (with_db) cmp_terms(OP_BNB, dt, seed, w2, db[0], db[1], sb, C, NULL);
            free(sc); free(sg); free(sb);
        }
        for (int r = 0; r < 2; ++r) { free(dx[r]); free(dg[r]); free(db[r]); }
    }
done:
    for (int r = 0; r < 2; ++r) { free(y[r]); free(sm[r]); free(si[r]); free(rm[r]); free(rv[r]); }
    free(x); free(dy); free(gamma); free(beta); free(rm0); free(rv0);
}

/* ---------------------------------------------------------------- bad arguments */
/* Same status from both paths for every bad request (and for a few good edge cases). */
static void test_args(fc_dtype dt)
{
    float buf32[64] = {0};
    double buf64[64] = {0}, out[8];
    void *mem = dt == FC_FLOAT32 ? (void *)buf32 : (void *)buf64;
    void *ptrs[2] = {mem, mem}, *nulls[2] = {mem, NULL};
    ptrdiff_t sizes[2] = {3, 4}, negsz[2] = {3, -1};
    for (int c = 0; c < 40; ++c) {
        int s[2];
        for (int r = 0; r < 2; ++r) {
            const fc_path path = r ? FC_PATH_REFERENCE : FC_PATH_FAST;
            fc_arrays a = {.dtype = dt, .path = path, .n_arrays = 2, .x = (const void *const *)ptrs, .sizes = sizes,
                           .n_threads = 1};
            fc_sgd_request q = {.dtype = dt, .path = path, .n_arrays = 2, .sizes = sizes, .p = ptrs,
                                .g = (const void *const *)ptrs, .buf = NULL, .scale = 1, .lr = 0, .decay = 1,
                                .n_threads = 1};
            fc_adam_request w = {.dtype = dt, .path = path, .n_arrays = 2, .sizes = sizes, .p = ptrs,
                                 .g = (const void *const *)ptrs, .m = ptrs, .v = ptrs, .scale = 1, .decay = 1,
                                 .beta1 = 0.9, .beta2 = 0.999, .step_size = 0, .bc2_sqrt = 1, .n_threads = 1};
            fc_bn_problem b = {.dtype = dt, .path = path, .N = 2, .C = 2, .L = 2, .x = mem, .save_mean = mem,
                               .save_invstd = mem, .running_mean = mem, .running_var = mem, .training = 1,
                               .eps = 1e-5, .n_threads = 1};
            switch (c) {
            case 0: s[r] = fc_reduce(NULL, FC_RED_SUMSQ, 2, 1, out); break;
            case 1: a.dtype = (fc_dtype)5; s[r] = fc_reduce(&a, FC_RED_SUMSQ, 2, 1, out); break;
            case 2: a.path = (fc_path)7; s[r] = fc_reduce(&a, FC_RED_SUMSQ, 2, 1, out); break;
            case 3: s[r] = fc_reduce(&a, 4, 2, 1, out); break;
            case 4: s[r] = fc_reduce(&a, FC_RED_SUMPOW, 0, 1, out); break;
            case 5: s[r] = fc_reduce(&a, FC_RED_SUMPOW, NAN, 1, out); break;
            case 6: s[r] = fc_reduce(&a, FC_RED_SUMSQ, 2, 1, NULL); break;
            case 7: a.x = (const void *const *)nulls; s[r] = fc_reduce(&a, FC_RED_SUMABS, 2, 1, out); break;
            case 8: a.sizes = negsz; s[r] = fc_reduce(&a, FC_RED_MAXABS, 2, 1, out); break;
            case 9: a.n_threads = 0; s[r] = fc_global_norm(&a, 2, out); break;
            case 10: s[r] = fc_global_norm(&a, -1, out); break;
            case 11: s[r] = fc_global_norm(&a, 2, NULL); break;
            case 12: a.n_arrays = -1; s[r] = fc_global_norm(&a, INFINITY, out); break;
            case 13: a.x = NULL; s[r] = fc_global_norm(&a, INFINITY, out); break;
            case 14: s[r] = fc_array_norms(&a, NULL, out); break;
            case 15: a.sizes = NULL; s[r] = fc_array_norms(&a, out, NULL); break;
            case 16: a.n_arrays = 0; a.x = NULL; s[r] = fc_array_norms(&a, NULL, NULL); break; /* OK */
            case 17: a.n_arrays = 0; a.x = NULL; s[r] = fc_global_norm(&a, 2, out); break;      /* OK */
            case 18: s[r] = fc_sgd_step(NULL); break;
            case 19: q.n_threads = 0; s[r] = fc_sgd_step(&q); break;
            case 20: q.g = NULL; s[r] = fc_sgd_step(&q); break;
            case 21: q.g = (const void *const *)nulls; s[r] = fc_sgd_step(&q); break;
            case 22: q.buf = nulls; s[r] = fc_sgd_step(&q); break;
            case 23: q.p = nulls; s[r] = fc_sgd_step(&q); break;
            case 24: q.sizes = negsz; s[r] = fc_sgd_step(&q); break;
            case 25: q.dtype = (fc_dtype)-1; s[r] = fc_sgd_step(&q); break;
            case 26: s[r] = fc_adam_step(NULL); break;
            case 27: w.m = NULL; s[r] = fc_adam_step(&w); break;
            case 28: w.v = nulls; s[r] = fc_adam_step(&w); break;
            case 29: w.vmax = nulls; s[r] = fc_adam_step(&w); break;
            case 30: w.n_arrays = -3; s[r] = fc_adam_step(&w); break;
            case 31: s[r] = fc_bn_forward(&b, NULL); break;
            case 32: b.N = 1; b.L = 1; s[r] = fc_bn_forward(&b, mem); break; /* training, M = 1 */
            case 33: b.training = 0; b.running_var = NULL; s[r] = fc_bn_forward(&b, mem); break;
            case 34: b.eps = -1; s[r] = fc_bn_forward(&b, mem); break;
            case 35: b.save_invstd = NULL; s[r] = fc_bn_forward(&b, mem); break;
            case 36: b.C = 0; b.save_mean = NULL; s[r] = fc_bn_forward(&b, NULL); break; /* OK: C = 0 first */
            case 37: b.L = -1; s[r] = fc_bn_backward(&b, mem, mem, NULL, NULL); break;
            case 38: s[r] = fc_bn_backward(&b, NULL, mem, NULL, NULL); break;
            default: b.path = (fc_path)2; s[r] = fc_bn_backward(&b, mem, mem, NULL, NULL); break;
            }
        }
        n_calls[OP_ARGS]++;
        if (s[0] != s[1]) report(OP_ARGS, "status", dt, c, s[0], s[1]);
    }
}

int main(int argc, char **argv)
{
    const long ntab = argc > 1 ? atol(argv[1]) : 48;
    for (int d = 0; d < 2; ++d) {
        const fc_dtype dt = d ? FC_FLOAT64 : FC_FLOAT32;
        test_args(dt);
        for (long i = 0; i < ntab; ++i) {
            table t;
            make_table(&t, dt, d * 1000000L + i);
            const int nt = 1 + irand(4);
            test_reductions(&t, nt);
            test_norm_identities(&t);
            if (t.special == PLAIN) {
                /* every combination on small tables; on tables with a long array, a stride of them
                 * (over the tables, still every combination) */
                long total = 0;
                for (ptrdiff_t k = 0; k < t.n; ++k) total += (long)t.sizes[k];
                const int stride = total > 65536 ? 12 : 1;
                for (int c = (int)(i % stride); c < N_SGD_COMBOS; c += stride) test_sgd(&t, nt, c);
                for (int c = (int)(i % stride); c < N_ADAM_COMBOS; c += stride) test_adam(&t, nt, c);
            }
            table_free(&t);
        }
        for (long i = 0; i < 30 * ntab; ++i) test_bn(dt, d * 1000000L + i);
    }
    int fail = 0;
    for (int op = 0; op < NOP; ++op) {
        printf("%-22s %6ld calls  %4ld mismatches  max err f32 %.1e  f64 %.1e", op_name[op], n_calls[op],
               n_bad[op], max_err[op][0], max_err[op][1]);
        if (op == OP_ADAM) printf("  (d cancelled, see cancel_masks: %ld elements)", n_skipped);
        printf("\n");
        fail |= n_bad[op] != 0;
    }
    printf(fail ? "FAIL\n" : "OK\n");
    return fail;
}
