/* Fast path vs reference path (csrc/ot/sinkhorn_reference.c) of the Sinkhorn operations of
 * sinkhorn.h (fc_sinkhorn_log, fc_sinkhorn_knopp, fc_sinkhorn_plan), on random problems (fixed
 * seeds, both dtypes of M): n, m up to 60 (and a few larger ones, where the fast path uses two
 * threads), k = 1..3 histograms, zeros in a and b, tiny weights, regularisations down to 0.001 x
 * max|M| (where the row maxima shifts matter), 2-stage epsilon scaling, warm starts, breakdowns of
 * the scaling form, bad arguments.  The log-domain runs use relax = 1 (plain Sinkhorn: the
 * over-relaxed iterations of the fast path differ by design, and the reference rejects them).
 * Plus identities of the reference itself (log domain = scaling form, the plan of the last
 * iterate).  Standalone C, no Python.  Built and run by
 *
 *   bash tests/c/run.sh            (see that script for other compilers, backends, arm64 under qemu)
 *
 * It compiles with every file of csrc/ot/ (the exact solver's too, unused here).  Prints one
 * summary line per operation; exits 1 on any mismatch.  Argument: number of problems per dtype
 * (default 600).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ot/sinkhorn.h"

/* ---------------------------------------------------------------- random numbers */
static uint64_t rng_state;
static uint32_t rnd32(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}
static double unif(void) { return rnd32() / 2147483648.0; } /* [0, 1) */
static int irand(int n) { return (int)(unif() * n); }      /* [0, n) */

/* ---------------------------------------------------------------- bookkeeping */
enum { OP_LOG, OP_SCHED, OP_STOP, OP_PLAN_IT, OP_PLAN_RAND, OP_KNOPP, OP_BREAK, OP_ARGS, OP_RELAX, OP_SELF, NOP };
static const char *op_name[NOP] = {"fc_sinkhorn_log (1 reg)", "fc_sinkhorn_log (2 regs)", "fc_sinkhorn_log (tol > 0)",
                                   "fc_sinkhorn_plan (iterates)", "fc_sinkhorn_plan (random)", "fc_sinkhorn_knopp",
                                   "fc_sinkhorn_knopp (hard)", "bad arguments", "relax != 1",
                                   "reference identities"};
static long n_calls[NOP], n_bad[NOP], n_border[NOP], n_state[NOP][3];
static double max_err[NOP][2];
static int verbose_left = 16;

/* potentials, errors and costs are double whatever M is; float32 changes the fast path's
 * exponentials (a degree-9 polynomial, relative error <= 7e-12) and rounds the plan */
static double tol_of(fc_dtype dt) { return dt == FC_FLOAT32 ? 1e-8 : 1e-9; }
#define TOL_PLAN32 1e-6 /* plan entries stored as float */

/* |a - b| <= tol (1 + max |a|, |b|), infinities equal by sign; records the error. */
static int close_tol(int op, fc_dtype dt, double a, double b, double tol)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    double err = fabs(a - b) / (1.0 + fmax(fabs(a), fabs(b)));
    if (err > max_err[op][dt]) max_err[op][dt] = err;
    return err <= tol;
}

static void report(int op, const char *what, long seed, ptrdiff_t idx, double fast, double ref)
{
    n_bad[op]++;
    if (verbose_left-- > 0)
        printf("  MISMATCH %s: %s (problem seed %ld, index %td): fast %.17g, reference %.17g\n", op_name[op], what,
               seed, idx, fast, ref);
}

/* ---------------------------------------------------------------- problems */
typedef struct {
    fc_dtype dt;
    ptrdiff_t n, m, k;
    void *M;           /* (n, m) of dtype dt */
    double *a, *b;     /* (n,), (k, m), each of mass 1 */
    double mmax;       /* max |M| */
    long seed;
} problem;

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
static double *dalloc(ptrdiff_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }
static double *dfill(ptrdiff_t n, double v)
{
    double *x = dalloc(n);
    for (ptrdiff_t i = 0; i < n; ++i) x[i] = v;
    return x;
}

static void problem_free(problem *q) { free(q->M); free(q->a); free(q->b); }

/* weights of mass 1: uniform-ish, some zeros (never all), sometimes a tiny one */
static void rand_weights(double *w, ptrdiff_t n)
{
    const int zeros = n > 1 && unif() < 0.35, tiny = unif() < 0.1;
    double s = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) {
        w[i] = zeros && unif() < 0.3 ? 0.0 : 0.05 + unif();
        s += w[i];
    }
    if (s == 0.0) { w[irand((int)n)] = 1.0; s = 1.0; }
    for (ptrdiff_t i = 0; i < n; ++i) w[i] /= s;
    if (tiny && n > 1) { /* one weight 1e-30 .. 1e-200, mass moved to the others */
        ptrdiff_t i = irand((int)n);
        double t = pow(10.0, -30.0 - 170.0 * unif()), d = w[i] - t;
        w[i] = t;
        for (ptrdiff_t l = 0; l < n; ++l)
            if (l != i && w[l] > 0.0) { w[l] += d; break; }
    }
}

static void make_problem(problem *q, fc_dtype dt, long seed, int large)
{
    rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 777;
    memset(q, 0, sizeof *q);
    q->dt = dt;
    q->seed = seed;
    const int small = unif() < 0.5;
    q->n = large ? 200 + irand(100) : 1 + irand(small ? 12 : 60);
    q->m = large ? 200 + irand(100) : 1 + irand(small ? 12 : 60);
    q->k = large ? 3 : 1 + irand(3);
    const ptrdiff_t n = q->n, m = q->m, k = q->k;
    q->M = ralloc(dt, n * m);
    const int kind = irand(4);
    double px[64 * 2], py[64 * 2];
    for (int i = 0; i < 128; ++i) { px[i] = unif(); py[i] = unif() + 0.3; }
    for (ptrdiff_t i = 0; i < n; ++i)
        for (ptrdiff_t j = 0; j < m; ++j) {
            double v;
            if (kind == 0) v = unif();                                       /* uniform [0, 1) */
            else if (kind == 1) {                                            /* squared distances */
                double dx = px[2 * (i % 64)] - py[2 * (j % 64)], dy = px[2 * (i % 64) + 1] - py[2 * (j % 64) + 1];
                v = dx * dx + dy * dy;
            } else if (kind == 2) v = (double)irand(4);                      /* ties */
            else v = 2.0 * unif() - 1.0;                                     /* negative costs */
            rset(q->M, dt, i * m + j, v * (unif() < 0.02 ? 1.0 : 3.0));
        }
    q->mmax = 0.0;
    for (ptrdiff_t i = 0; i < n * m; ++i) q->mmax = fmax(q->mmax, fabs(rget(q->M, dt, i)));
    if (q->mmax == 0.0) q->mmax = 1.0;
    q->a = dalloc(n);
    q->b = dalloc(k * m);
    rand_weights(q->a, n);
    for (ptrdiff_t h = 0; h < k; ++h) rand_weights(q->b + h * m, m);
}

static double rand_reg(const problem *q)
{
    static const double rel[7] = {1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001};
    return rel[irand(7)] * q->mmax * (0.8 + 0.4 * unif());
}

static fc_sinkhorn_problem as_sk(const problem *q, fc_path path, int n_threads)
{
    fc_sinkhorn_problem p = {.dtype = q->dt, .path = path, .n = q->n, .m = q->m, .k = q->k, .M = q->M, .a = q->a,
                             .b = q->b, .relax = 1.0, .n_threads = n_threads};
    return p;
}

static int cmp_arr(int op, const problem *q, const char *what, const double *fast, const double *ref, ptrdiff_t n,
                   double tol)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        if (!close_tol(op, q->dt, fast[i], ref[i], tol)) { report(op, what, q->seed, i, fast[i], ref[i]); return 0; }
    return 1;
}
static int cmp_plan(int op, const problem *q, const void *fast, const void *ref, ptrdiff_t n)
{
    const double tol = q->dt == FC_FLOAT32 ? TOL_PLAN32 : tol_of(q->dt);
    for (ptrdiff_t i = 0; i < n; ++i) {
        double a = rget(fast, q->dt, i), b = rget(ref, q->dt, i);
        if (!close_tol(op, q->dt, a, b, tol)) { report(op, "plan", q->seed, i, a, b); return 0; }
    }
    return 1;
}
static void cmp_status(int op, const problem *q, const char *what, int sf, int sr)
{
    if (sf != 0 || sr != 0) report(op, what, q->seed, -1, sf, sr);
}

/* ---------------------------------------------------------------- log domain and its plan */

/* The outputs of one fc_sinkhorn_log run and of the plan from its iterates. */
typedef struct {
    double *alpha, *beta, *err, *hist;
    ptrdiff_t *niter;
    int *state;
    double *palpha, *cost, *plogp, *perr; /* the plan of the iterates */
    void *plan;
} log_run;

static void run_free(log_run *r)
{
    free(r->alpha); free(r->beta); free(r->err); free(r->hist); free(r->niter); free(r->state);
    free(r->palpha); free(r->cost); free(r->plogp); free(r->perr); free(r->plan);
}

/* Some threshold of the run within rounding of an error met: a stop the two paths may place
 * one iteration apart. */
static int borderline(const double *h, ptrdiff_t nh, double t1, double t2)
{
    for (ptrdiff_t i = 0; i < nh; ++i)
        if ((t1 > 0 && fabs(h[i] - t1) <= 1e-6 * t1) || (t2 > 0 && fabs(h[i] - t2) <= 1e-6 * t2)) return 1;
    return 0;
}

/* mode 0: one reg, tol 0; 1: two regs (epsilon scaling), tol 0; 2: tol > 0 (one or two regs) */
static void test_log(const problem *q, int nt, int mode)
{
    const ptrdiff_t n = q->n, m = q->m, k = q->k;
    const int op = mode == 0 ? OP_LOG : mode == 1 ? OP_SCHED : OP_STOP;
    const double reg = rand_reg(q);
    double regs[2];
    ptrdiff_t n_regs = 1;
    if (mode == 1 || (mode == 2 && irand(2))) {
        static const double ratio[3] = {2.0, 4.0, 10.0};
        regs[0] = reg * ratio[irand(3)];
        regs[1] = reg;
        n_regs = 2;
    } else
        regs[0] = reg;
    const ptrdiff_t max_inner = 1 + irand(30);
    const double inner_tol = n_regs == 2 && irand(2) ? pow(10.0, -1.0 - 3.0 * unif()) : 0.0;
    const ptrdiff_t max_iter = irand(8) == 0 ? 0 : 1 + irand(mode == 2 ? 150 : 60);
    const double tol = mode == 2 ? pow(10.0, -2.0 - 8.0 * unif()) : 0.0;
    const ptrdiff_t cap = (n_regs - 1) * max_inner + max_iter;
    const int with_hist = mode != 0 || irand(4) != 0;
    /* the start: cold (zeros), or a warm alpha (random, in units of 1 / reg), -inf where a = 0 */
    double *alpha0 = dalloc(k * n);
    const int warm = irand(3) == 0;
    for (ptrdiff_t h = 0; h < k; ++h)
        for (ptrdiff_t i = 0; i < n; ++i)
            alpha0[h * n + i] = !warm                          ? 0.0
                                : q->a[i] == 0.0 && irand(2) ? -INFINITY
                                                             : (2 * unif() - 1) * q->mmax / regs[0];
    const int want_plan = k == 1 && irand(4) != 0;
    log_run run[2];
    int sts[2];
    for (int r = 0; r < 2; ++r) {
        log_run *R = &run[r];
        R->alpha = dalloc(k * n);
        memcpy(R->alpha, alpha0, sizeof(double) * (size_t)(k * n));
        R->beta = dfill(k * m, 12345.0); /* poison: every entry must be written */
        R->err = dfill(k, 12345.0);
        R->hist = with_hist ? dfill(k * (cap > 0 ? cap : 1), 12345.0) : NULL;
        R->niter = calloc((size_t)k, sizeof(ptrdiff_t));
        R->state = calloc((size_t)k, sizeof(int));
        R->palpha = dalloc(k * n); R->cost = dalloc(k); R->plogp = dalloc(k); R->perr = dalloc(k);
        R->plan = want_plan ? ralloc(q->dt, n * m) : NULL;
        fc_sinkhorn_problem p = as_sk(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        p.regs = regs; p.n_regs = n_regs; p.max_inner = max_inner; p.inner_tol = inner_tol;
        p.max_iter = max_iter; p.tol = tol;
        fc_sinkhorn_state st = {.alpha = R->alpha, .beta = R->beta, .niter = R->niter, .err = R->err,
                                .state = R->state, .err_hist = R->hist, .hist_cap = cap};
        sts[r] = fc_sinkhorn_log(&p, &st);
    }
    if (sts[0] != 0 || sts[1] != 0) { cmp_status(op, q, "status", sts[0], sts[1]); goto done; }
    n_calls[op]++;
    const double tol_d = tol_of(q->dt);
    for (ptrdiff_t h = 0; h < k; ++h) {
        const int sf = run[0].state[h], sr = run[1].state[h];
        if (sr >= 0 && sr < 3) n_state[op][sr]++;
        if (sf != sr || run[0].niter[h] != run[1].niter[h]) {
            if (with_hist && borderline(run[1].hist + h * cap, run[1].niter[h], tol, inner_tol)) {
                n_border[op]++;
                goto done;
            }
            report(op, sf != sr ? "state" : "niter", q->seed, h, sf != sr ? sf : (double)run[0].niter[h],
                   sf != sr ? sr : (double)run[1].niter[h]);
            goto done;
        }
        if (with_hist
            && !cmp_arr(op, q, "err_hist", run[0].hist + h * cap, run[1].hist + h * cap, run[0].niter[h], tol_d))
            goto done;
    }
    if (!cmp_arr(op, q, "err", run[0].err, run[1].err, k, tol_d)) goto done;
    if (!cmp_arr(op, q, "alpha", run[0].alpha, run[1].alpha, k * n, tol_d)) goto done;
    if (!cmp_arr(op, q, "beta", run[0].beta, run[1].beta, k * m, tol_d)) goto done;

    /* the plan of each path's iterates (what fastcore.sinkhorn returns) */
    for (int r = 0; r < 2; ++r) {
        log_run *R = &run[r];
        memcpy(R->palpha, R->alpha, sizeof(double) * (size_t)(k * n));
        fc_sinkhorn_problem p = as_sk(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        fc_sinkhorn_state st = {.alpha = R->palpha, .beta = R->beta, .err = R->perr};
        fc_sinkhorn_plan_out out = {.plan = R->plan, .cost = R->cost, .plogp = R->plogp};
        sts[r] = fc_sinkhorn_plan(&p, 1.0 / reg, &st, &out);
    }
    if (sts[0] != 0 || sts[1] != 0) { cmp_status(OP_PLAN_IT, q, "status", sts[0], sts[1]); goto done; }
    n_calls[OP_PLAN_IT]++;
    if (!cmp_arr(OP_PLAN_IT, q, "alpha", run[0].palpha, run[1].palpha, k * n, tol_d)) goto done;
    if (!cmp_arr(OP_PLAN_IT, q, "cost", run[0].cost, run[1].cost, k, tol_d)) goto done;
    if (!cmp_arr(OP_PLAN_IT, q, "plogp", run[0].plogp, run[1].plogp, k, tol_d)) goto done;
    if (!cmp_arr(OP_PLAN_IT, q, "err", run[0].perr, run[1].perr, k, tol_d)) goto done;
    if (want_plan && !cmp_plan(OP_PLAN_IT, q, run[0].plan, run[1].plan, n * m)) goto done;

    /* the reference's own identities: after an iteration of the last stage, alpha is the row
     * update of beta, so the plan's row update gives alpha again and its error is the run's;
     * the plan's rows sum to a */
    n_calls[OP_SELF]++;
    for (ptrdiff_t h = 0; h < k; ++h) {
        if (run[1].state[h] == FC_SK_BREAKDOWN || max_iter == 0) continue;
        for (ptrdiff_t i = 0; i < n; ++i)
            if (!close_tol(OP_SELF, q->dt, run[1].palpha[h * n + i], run[1].alpha[h * n + i], 1e-12)) {
                report(OP_SELF, "plan alpha = last row update", q->seed, h * n + i, run[1].palpha[h * n + i],
                       run[1].alpha[h * n + i]);
                goto done;
            }
        if (fabs(run[1].perr[h] - run[1].err[h]) > 1e-12 * (1.0 + run[1].err[h])) {
            report(OP_SELF, "plan err = last iteration's err", q->seed, h, run[1].perr[h], run[1].err[h]);
            goto done;
        }
    }
    if (want_plan && q->dt == FC_FLOAT64)
        for (ptrdiff_t i = 0; i < n; ++i) {
            double s = 0.0;
            for (ptrdiff_t j = 0; j < m; ++j) s += rget(run[1].plan, q->dt, i * m + j);
            double want = run[1].palpha[i] > -INFINITY ? q->a[i] : 0.0;
            if (fabs(s - want) > 1e-13) { report(OP_SELF, "plan row sum = a_i", q->seed, i, s, want); break; }
        }
done:
    free(alpha0);
    run_free(&run[0]);
    run_free(&run[1]);
}

/* fc_sinkhorn_plan from random potentials: -inf where b = 0, sometimes a histogram whose every
 * beta_j is -inf (its rows' mass is missing), random shift hints. */
static void test_plan_random(const problem *q, int nt)
{
    const ptrdiff_t n = q->n, m = q->m, k = q->k;
    const double reg = rand_reg(q);
    double *beta = dalloc(k * m), *alpha0 = dalloc(k * n);
    for (ptrdiff_t h = 0; h < k; ++h) {
        const int dead = irand(12) == 0;
        for (ptrdiff_t j = 0; j < m; ++j)
            beta[h * m + j] = dead || q->b[h * m + j] == 0.0 ? -INFINITY : (2 * unif() - 1) * q->mmax / reg;
        for (ptrdiff_t i = 0; i < n; ++i) {
            const int c = irand(8);
            alpha0[h * n + i] = c == 0 ? -INFINITY : c == 1 ? 0.0 : (2 * unif() - 1) * q->mmax / reg;
        }
    }
    const int want_plan = k == 1 && irand(4) != 0;
    double *al[2], *cost[2], *plogp[2], *err[2];
    void *plan[2];
    int sts[2];
    for (int r = 0; r < 2; ++r) {
        al[r] = dalloc(k * n);
        memcpy(al[r], alpha0, sizeof(double) * (size_t)(k * n));
        cost[r] = dfill(k, 12345.0); plogp[r] = dfill(k, 12345.0); err[r] = dfill(k, 12345.0);
        plan[r] = want_plan ? ralloc(q->dt, n * m) : NULL;
        for (ptrdiff_t i = 0; want_plan && i < n * m; ++i) rset(plan[r], q->dt, i, 12345.0);
        fc_sinkhorn_problem p = as_sk(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        fc_sinkhorn_state st = {.alpha = al[r], .beta = beta, .err = err[r]};
        fc_sinkhorn_plan_out out = {.plan = plan[r], .cost = cost[r], .plogp = plogp[r]};
        sts[r] = fc_sinkhorn_plan(&p, 1.0 / reg, &st, &out);
    }
    if (sts[0] != 0 || sts[1] != 0) { cmp_status(OP_PLAN_RAND, q, "status", sts[0], sts[1]); goto done; }
    n_calls[OP_PLAN_RAND]++;
    const double tol = tol_of(q->dt);
    if (!cmp_arr(OP_PLAN_RAND, q, "alpha", al[0], al[1], k * n, tol)) goto done;
    if (!cmp_arr(OP_PLAN_RAND, q, "cost", cost[0], cost[1], k, tol)) goto done;
    if (!cmp_arr(OP_PLAN_RAND, q, "plogp", plogp[0], plogp[1], k, tol)) goto done;
    if (!cmp_arr(OP_PLAN_RAND, q, "err", err[0], err[1], k, tol)) goto done;
    if (want_plan) cmp_plan(OP_PLAN_RAND, q, plan[0], plan[1], n * m);
done:
    for (int r = 0; r < 2; ++r) { free(al[r]); free(cost[r]); free(plogp[r]); free(err[r]); free(plan[r]); }
    free(beta); free(alpha0);
}

/* ---------------------------------------------------------------- scaling form */

/* hard = 0: reg with max M / reg below 80 (kernel entries normal in float32), 700 (float64).
 * hard = 1: at the edge of the dtype's normal range (86 / 705), sometimes a row or a column of
 * the kernel exactly 0 (a cost of 800 reg): breakdowns, at the start or in the iterations. */
static void test_knopp(const problem *q0, int nt, int hard)
{
    problem cq = *q0, *q = &cq;
    const ptrdiff_t n = q->n, m = q->m, k = q->k;
    const int op = hard ? OP_BREAK : OP_KNOPP;
    const double lim = q->dt == FC_FLOAT32 ? (hard ? 86.0 : 80.0) : (hard ? 705.0 : 700.0);
    double reg = rand_reg(q);
    if (hard || q->mmax / reg > lim) reg = q->mmax / lim;
    if (hard && irand(2)) { /* a zero row or column of K */
        cq.M = ralloc(q->dt, n * m);
        memcpy(cq.M, q0->M, rsize(q->dt) * (size_t)(n * m));
        if (irand(2)) {
            ptrdiff_t i = irand((int)n);
            for (ptrdiff_t j = 0; j < m; ++j) rset(cq.M, q->dt, i * m + j, 800.0 * reg);
        } else {
            ptrdiff_t j = irand((int)m);
            for (ptrdiff_t i = 0; i < n; ++i) rset(cq.M, q->dt, i * m + j, 800.0 * reg);
        }
    }
    const ptrdiff_t max_iter = irand(8) == 0 ? 0 : 1 + irand(60);
    const double tol = irand(2) ? 0.0 : pow(10.0, -2.0 - 8.0 * unif());
    const int with_hist = irand(4) != 0, want_plan = k == 1 && irand(4) != 0;
    const int warm = irand(3) == 0;
    double *u0 = dalloc(k * n);
    for (ptrdiff_t i = 0; i < k * n; ++i) u0[i] = warm ? exp(2 * unif() - 1) : 1.0 / (double)n;
    double *u[2], *v[2], *err[2], *hist[2], *cost[2], *plogp[2];
    ptrdiff_t *niter[2];
    int *state[2], sts[2];
    void *plan[2];
    for (int r = 0; r < 2; ++r) {
        u[r] = dalloc(k * n);
        memcpy(u[r], u0, sizeof(double) * (size_t)(k * n));
        v[r] = dfill(k * m, 1.0); /* not written by a breakdown at the start: the same for both */
        err[r] = dfill(k, 12345.0);
        hist[r] = with_hist ? dfill(k * (max_iter > 0 ? max_iter : 1), 12345.0) : NULL;
        cost[r] = dfill(k, 12345.0); plogp[r] = dfill(k, 12345.0);
        niter[r] = calloc((size_t)k, sizeof(ptrdiff_t));
        state[r] = calloc((size_t)k, sizeof(int));
        plan[r] = want_plan ? ralloc(q->dt, n * m) : NULL;
        fc_sinkhorn_problem p = as_sk(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        p.reg = reg; p.max_iter = max_iter; p.tol = tol;
        fc_sinkhorn_state st = {.u = u[r], .v = v[r], .niter = niter[r], .err = err[r], .state = state[r],
                                .err_hist = hist[r], .hist_cap = max_iter};
        fc_sinkhorn_plan_out out = {.plan = plan[r], .cost = cost[r], .plogp = plogp[r]};
        sts[r] = fc_sinkhorn_knopp(&p, &st, &out);
    }
    if (sts[0] != 0 || sts[1] != 0) { cmp_status(op, q, "status", sts[0], sts[1]); goto done; }
    n_calls[op]++;
    const double tol_d = tol_of(q->dt);
    for (ptrdiff_t h = 0; h < k; ++h) {
        if (state[1][h] >= 0 && state[1][h] < 3) n_state[op][state[1][h]]++;
        if (state[0][h] != state[1][h] || niter[0][h] != niter[1][h]) {
            if (with_hist && borderline(hist[1] + h * max_iter, niter[1][h], tol, 0.0)) { n_border[op]++; goto done; }
            int s = state[0][h] != state[1][h];
            report(op, s ? "state" : "niter", q->seed, h, s ? state[0][h] : (double)niter[0][h],
                   s ? state[1][h] : (double)niter[1][h]);
            goto done;
        }
        if (with_hist && !cmp_arr(op, q, "err_hist", hist[0] + h * max_iter, hist[1] + h * max_iter, niter[0][h], tol_d))
            goto done;
    }
    if (!cmp_arr(op, q, "err", err[0], err[1], k, tol_d)) goto done;
    if (!cmp_arr(op, q, "u", u[0], u[1], k * n, tol_d)) goto done;
    if (!cmp_arr(op, q, "v", v[0], v[1], k * m, tol_d)) goto done;
    if (!cmp_arr(op, q, "cost", cost[0], cost[1], k, tol_d)) goto done;
    if (!cmp_arr(op, q, "plogp", plogp[0], plogp[1], k, tol_d)) goto done;
    if (want_plan && !cmp_plan(op, q, plan[0], plan[1], n * m)) goto done;

    /* the reference's identity: plain Sinkhorn in the log domain from alpha = log u0 has the
     * iterates log u, log v of the scaling form (float64, tol = 0, no breakdown, no tiny weight
     * or scaling, where the scaling form's products lose digits or underflow) */
    if (q->dt == FC_FLOAT64 && tol == 0.0) {
        int broken = 0; /* or scalings near the ends of the range (tiny weights): products underflow */
        for (ptrdiff_t h = 0; h < k; ++h) broken |= state[1][h] == FC_SK_BREAKDOWN;
        for (ptrdiff_t i = 0; i < k * n; ++i) broken |= u[1][i] != 0.0 && !(fabs(log(u[1][i])) < 300.0);
        for (ptrdiff_t j = 0; j < k * m; ++j) broken |= v[1][j] != 0.0 && !(fabs(log(v[1][j])) < 300.0);
        for (ptrdiff_t i = 0; i < n; ++i) broken |= q->a[i] > 0.0 && q->a[i] < 1e-20;
        for (ptrdiff_t j = 0; j < k * m; ++j) broken |= q->b[j] > 0.0 && q->b[j] < 1e-20;
        if (broken) goto done;
        double *al = dalloc(k * n), *be = dalloc(k * m), *er = dalloc(k);
        ptrdiff_t *ni = calloc((size_t)k, sizeof(ptrdiff_t));
        int *sa = calloc((size_t)k, sizeof(int));
        for (ptrdiff_t i = 0; i < k * n; ++i) al[i] = log(u0[i]);
        fc_sinkhorn_problem p = as_sk(q, FC_PATH_REFERENCE, 1);
        p.regs = &reg; p.n_regs = 1; p.max_iter = max_iter;
        fc_sinkhorn_state st = {.alpha = al, .beta = be, .niter = ni, .err = er, .state = sa};
        int s = fc_sinkhorn_log(&p, &st);
        n_calls[OP_SELF]++;
        if (s != 0) report(OP_SELF, "status (log = scaling)", q->seed, -1, s, 0);
        for (ptrdiff_t i = 0; s == 0 && i < k * n; ++i) {
            double lu = u[1][i] > 0.0 ? log(u[1][i]) : -INFINITY;
            if (!close_tol(OP_SELF, q->dt, al[i], lu, 1e-9)) {
                report(OP_SELF, "log u = alpha", q->seed, i, lu, al[i]);
                s = 1;
            }
        }
        for (ptrdiff_t j = 0; s == 0 && j < k * m; ++j) {
            double lv = v[1][j] > 0.0 ? log(v[1][j]) : -INFINITY;
            if (!close_tol(OP_SELF, q->dt, be[j], lv, 1e-9)) {
                report(OP_SELF, "log v = beta", q->seed, j, lv, be[j]);
                s = 1;
            }
        }
        for (ptrdiff_t h = 0; s == 0 && h < k; ++h)
            if (ni[h] != niter[1][h] || !close_tol(OP_SELF, q->dt, er[h], err[1][h], 1e-9)) {
                report(OP_SELF, "err (log = scaling)", q->seed, h, err[1][h], er[h]);
                s = 1;
            }
        free(al); free(be); free(er); free(ni); free(sa);
    }
done:
    for (int r = 0; r < 2; ++r) {
        free(u[r]); free(v[r]); free(err[r]); free(hist[r]); free(cost[r]); free(plogp[r]); free(niter[r]);
        free(state[r]); free(plan[r]);
    }
    free(u0);
    if (cq.M != q0->M) free(cq.M);
}

/* ---------------------------------------------------------------- arguments */

/* Same status from both paths for bad arguments; relax != 1 is valid for the fast path only. */
static void test_args(const problem *q)
{
    double regs[2] = {1.0, 0.5}, d[4 * 64], e[8], al[64 * 3], be[64 * 3], w[64 * 64];
    for (int i = 0; i < 64 * 3; ++i) be[i] = 0.0;
    for (int i = 0; i < 64 * 64; ++i) w[i] = 0.01;
    ptrdiff_t ni[4];
    int sv[4];
    for (int c = 0; c < 30; ++c) {
        int s[2];
        for (int r = 0; r < 2; ++r) {
            fc_sinkhorn_problem p = as_sk(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, 1);
            p.regs = regs; p.n_regs = 1; p.reg = 0.5; p.max_iter = 3; p.max_inner = 2; p.tol = 0.0;
            for (int i = 0; i < 64 * 3; ++i) al[i] = 0.0;
            fc_sinkhorn_state st = {.alpha = al, .beta = be, .u = d, .v = be, .niter = ni, .err = e, .state = sv,
                                    .err_hist = NULL, .hist_cap = 0};
            for (int i = 0; i < 64 * 3; ++i) d[i] = 1.0;
            fc_sinkhorn_plan_out out = {.plan = NULL, .cost = e + 4, .plogp = e + 4};
            switch (c) {
            case 0: p.n = 0; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 1: p.k = 0; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 2: p.M = NULL; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 3: p.n_regs = 0; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 4: regs[0] = 0.0; s[r] = fc_sinkhorn_log(&p, &st); regs[0] = 1.0; break;
            case 5: regs[0] = INFINITY; s[r] = fc_sinkhorn_log(&p, &st); regs[0] = 1.0; break;
            case 6: regs[0] = NAN; s[r] = fc_sinkhorn_log(&p, &st); regs[0] = 1.0; break;
            case 7: p.max_iter = -1; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 8: p.n_regs = 2; p.max_inner = -1; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 9: st.err_hist = w; st.hist_cap = 2; s[r] = fc_sinkhorn_log(&p, &st); break; /* < max_iter */
            case 10: p.relax = 2.0; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 11: p.relax = 0.5; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 12: p.n_threads = 0; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 13: s[r] = fc_sinkhorn_log(&p, NULL); break;
            case 14: st.state = NULL; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 15: p.dtype = (fc_dtype)7; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 16: p.path = (fc_path)7; s[r] = fc_sinkhorn_log(&p, &st); break;
            case 17: p.reg = 0.0; s[r] = fc_sinkhorn_knopp(&p, &st, &out); break;
            case 18: p.reg = INFINITY; s[r] = fc_sinkhorn_knopp(&p, &st, &out); break;
            case 19: p.k = 2; p.b = w; out.plan = w; s[r] = fc_sinkhorn_knopp(&p, &st, &out); break;
            case 20: s[r] = fc_sinkhorn_knopp(&p, &st, NULL); break;
            case 21: st.err_hist = w; st.hist_cap = 2; s[r] = fc_sinkhorn_knopp(&p, &st, &out); break;
            case 22: st.u = NULL; s[r] = fc_sinkhorn_knopp(&p, &st, &out); break;
            case 23: p.dtype = (fc_dtype)7; s[r] = fc_sinkhorn_knopp(&p, &st, &out); break;
            case 24: p.k = 2; p.b = w; out.plan = w; s[r] = fc_sinkhorn_plan(&p, 1.0, &st, &out); break;
            case 25: out.cost = NULL; s[r] = fc_sinkhorn_plan(&p, 1.0, &st, &out); break;
            case 26: p.m = 0; s[r] = fc_sinkhorn_plan(&p, 1.0, &st, &out); break;
            case 27: p.path = (fc_path)7; s[r] = fc_sinkhorn_plan(&p, 1.0, &st, &out); break;
            case 28: s[r] = fc_sinkhorn_plan(NULL, 1.0, &st, &out); break;
            default: s[r] = fc_sinkhorn_plan(&p, 1.0, &st, &out); break; /* valid: OK for both */
            }
        }
        n_calls[OP_ARGS]++;
        if (s[0] != s[1]) report(OP_ARGS, "status", q->seed, c, s[0], s[1]);
        else if ((c < 29) != (s[0] == FC_BAD_ARGUMENT)) report(OP_ARGS, "status (expected)", q->seed, c, s[0], c < 29);
    }
    /* over-relaxation (fixed 1.5, automatic 0): the fast path's; the reference rejects it */
    for (int c = 0; c < 2; ++c) {
        int s[2];
        for (int r = 0; r < 2; ++r) {
            fc_sinkhorn_problem p = as_sk(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, 1);
            p.regs = regs; p.n_regs = 1; p.max_iter = 3; p.relax = c ? 1.5 : 0.0;
            for (int i = 0; i < 64 * 3; ++i) al[i] = 0.0;
            fc_sinkhorn_state st = {.alpha = al, .beta = be, .niter = ni, .err = e, .state = sv};
            s[r] = fc_sinkhorn_log(&p, &st);
        }
        n_calls[OP_RELAX]++;
        if (s[0] != FC_OK || s[1] != FC_BAD_ARGUMENT)
            report(OP_RELAX, "status (fast OK, reference BAD_ARGUMENT)", q->seed, c, s[0], s[1]);
    }
}

int main(int argc, char **argv)
{
    long nprob = argc > 1 ? atol(argv[1]) : 600;
    for (int d = 0; d < 2; ++d) {
        fc_dtype dt = d ? FC_FLOAT64 : FC_FLOAT32;
        for (long i = 0; i < nprob; ++i) {
            long seed = d * 1000000L + i;
            problem q;
            make_problem(&q, dt, seed, i % 200 == 199); /* a few large problems: two threads */
            int nt = 1 + irand(2);
            test_log(&q, nt, 0);
            test_log(&q, nt, 1);
            test_log(&q, nt, 2);
            test_plan_random(&q, nt);
            test_knopp(&q, nt, 0);
            test_knopp(&q, nt, 1);
            if (i < 20 && q.n <= 64 && q.m <= 64 && q.k <= 3) test_args(&q);
            problem_free(&q);
        }
    }
    int fail = 0;
    for (int op = 0; op < NOP; ++op) {
        printf("%-28s %6ld calls  %4ld mismatches  max rel err f32 %.1e  f64 %.1e", op_name[op], n_calls[op],
               n_bad[op], max_err[op][0], max_err[op][1]);
        if (n_state[op][0] + n_state[op][1] + n_state[op][2] > 0)
            printf("  (states: %ld converged, %ld max_iter, %ld breakdown", n_state[op][0], n_state[op][1],
                   n_state[op][2]);
        if (op == OP_STOP || op == OP_SCHED || op == OP_KNOPP || op == OP_BREAK)
            printf("; stops within rounding of a threshold: %ld)", n_border[op]);
        else if (n_state[op][0] + n_state[op][1] + n_state[op][2] > 0)
            printf(")");
        printf("\n");
        fail |= n_bad[op] != 0;
    }
    printf(fail ? "FAIL\n" : "OK\n");
    return fail;
}
