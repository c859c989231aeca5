/* Fast path vs reference path (csrc/crf/crf_reference.c) of every CRF / MEMM operation of crf.h, on
 * random problems (fixed seeds, both dtypes), plus a brute-force check of the reference itself on
 * tiny problems.  Standalone C, no Python.  Built and run by
 *
 *   bash tests/c/run.sh            (see that script for other compilers, backends, arm64 under qemu)
 *
 * Prints one summary line per operation; exits 1 on any mismatch.  Argument: number of problems
 * per dtype (default 3000).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crf/crf.h"

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
enum { OP_FWD, OP_FB, OP_VIT, OP_VITPOT, OP_MEMM, OP_MEMM_GT, OP_POT, OP_CHECK, OP_ARGS, OP_BRUTE, OP_SELF, NOP };
static const char *op_name[NOP] = {"fc_crf_forward", "fc_crf_fb", "fc_crf_viterbi", "fc_crf_viterbi(-inf em)",
                                   "fc_memm_nll", "fc_memm_nll(g_trans only)", "fc_memm_potentials",
                                   "fc_crf_check", "bad arguments", "reference vs brute force",
                                   "reference identities"};
static long n_calls[NOP], n_bad[NOP], n_ties[NOP], n_exact_ties[NOP];
static double max_err[NOP][2];
static int verbose_left = 12;

static double tol_of(fc_dtype dt) { return dt == FC_FLOAT32 ? 1e-4 : 1e-9; }

/* |a - b| <= tol (1 + max |a|, |b|), infinities equal by sign; records the error. */
static int close_to(int op, fc_dtype dt, double a, double b)
{
    if (isnan(a) || isnan(b)) return 0;
    if (isinf(a) || isinf(b)) return a == b;
    double err = fabs(a - b) / (1.0 + fmax(fabs(a), fabs(b)));
    if (err > max_err[op][dt]) max_err[op][dt] = err;
    return err <= tol_of(dt);
}

static void report(int op, const char *what, long seed, ptrdiff_t idx, double fast, double ref)
{
    n_bad[op]++;
    if (op == OP_MEMM_GT ? n_bad[op] <= 2 : verbose_left-- > 0)
        printf("  MISMATCH %s: %s (problem seed %ld, index %td): fast %.17g, reference %.17g\n", op_name[op], what,
               seed, idx, fast, ref);
}

/* ---------------------------------------------------------------- problems */
typedef struct {
    fc_dtype dt;
    ptrdiff_t B, T, K;
    void *em, *trans, *start, *end; /* of dtype dt; start / end may be NULL */
    uint8_t *mask;                   /* may be NULL */
    int64_t *tags;
    double *weight;
    long seed;
    int integer; /* small integer scores: many exact ties, whose order must then match exactly */
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

static void problem_free(problem *q)
{
    free(q->em); free(q->trans); free(q->start); free(q->end); free(q->mask); free(q->tags); free(q->weight);
}

/* a (K,) or (K, K) table: normal-ish values, each -inf with probability pinf */
static void *rand_table(fc_dtype dt, ptrdiff_t n, double scale, double pinf)
{
    void *a = ralloc(dt, n);
    for (ptrdiff_t i = 0; i < n; ++i) rset(a, dt, i, unif() < pinf ? -INFINITY : scale * (2 * unif() - 1));
    return a;
}

static void make_problem(problem *q, fc_dtype dt, long seed)
{
    rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 12345;
    memset(q, 0, sizeof *q);
    q->dt = dt;
    q->seed = seed;
    const int large = unif() < 0.15; /* the fast kernels' other branches (wider K blocks, ...) */
    q->B = 1 + irand(4);
    q->T = large ? irand(31) : irand(13);
    q->K = large ? 1 + irand(40) : 1 + irand(12);
    const ptrdiff_t B = q->B, T = q->T, K = q->K;
    const double u = unif(); /* emission scale; the largest push the fast kernels to their fallbacks */
    const double scale = u < 0.7 ? 3.0 : u < 0.9 ? (dt == FC_FLOAT32 ? 8.0 : 30.0) : (dt == FC_FLOAT32 ? 40.0 : 300.0);
    const double pinf = (double[]){0.0, 0.0, 0.15, 0.4}[irand(4)];
    q->integer = unif() < 0.15;
    q->em = rand_table(dt, B * T * K, scale, 0.0);
    q->trans = rand_table(dt, K * K, 2.0, pinf);
    if (unif() < 0.6) q->start = rand_table(dt, K, 2.0, unif() < 0.1 ? 1.0 : pinf / 2); /* sometimes all -inf */
    if (unif() < 0.6) q->end = rand_table(dt, K, 2.0, unif() < 0.1 ? 1.0 : pinf / 2);
    void *tabs[4] = {q->em, q->trans, q->start, q->end};
    const ptrdiff_t ns[4] = {B * T * K, K * K, K, K};
    for (int a = 0; q->integer && a < 4; ++a)
        for (ptrdiff_t i = 0; tabs[a] && i < ns[a]; ++i) rset(tabs[a], dt, i, round(rget(tabs[a], dt, i) / 2));
    if (unif() < 0.75) {
        q->mask = malloc((size_t)(B * T > 0 ? B * T : 1));
        for (ptrdiff_t b = 0; b < B; ++b) {
            uint8_t *m = q->mask + b * T;
            int mode = irand(5);
            ptrdiff_t len = irand((int)T + 1);
            for (ptrdiff_t t = 0; t < T; ++t)
                m[t] = mode == 0 ? 1 : mode == 1 ? 0 : mode == 2 ? t < len : (uint8_t)(unif() < 0.6 ? 1 + irand(3) : 0);
            if (mode == 4 && T > 0) m[0] = 0; /* masked first position */
        }
    }
    q->tags = malloc(sizeof(int64_t) * (size_t)(B * T > 0 ? B * T : 1));
    for (ptrdiff_t i = 0; i < B * T; ++i) {
        int kept = q->mask == NULL || q->mask[i];
        q->tags[i] = kept ? irand((int)K) : (irand(2) ? -1 : K + 3); /* garbage at masked positions */
    }
    q->weight = malloc(sizeof(double) * (size_t)B);
    for (ptrdiff_t b = 0; b < B; ++b) q->weight[b] = 0.25 + 2 * unif();
}

static fc_crf_problem as_crf(const problem *q, fc_path path, int n_threads)
{
    fc_crf_problem p = {.dtype = q->dt, .path = path, .B = q->B, .T = q->T, .K = q->K, .em = q->em,
                        .trans = q->trans, .start = q->start, .end = q->end, .mask = q->mask, .tags = q->tags,
                        .n_threads = n_threads};
    return p;
}

/* Compares two real arrays of dtype dt (n entries). */
static void cmp_real(int op, const problem *q, const char *what, const void *fast, const void *ref, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; ++i) {
        double a = rget(fast, q->dt, i), b = rget(ref, q->dt, i);
        if (!close_to(op, q->dt, a, b)) { report(op, what, q->seed, i, a, b); return; }
    }
}
static void cmp_double(int op, const problem *q, const char *what, const double *fast, const double *ref, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        if (!close_to(op, q->dt, fast[i], ref[i])) { report(op, what, q->seed, i, fast[i], ref[i]); return; }
}
static void cmp_status(int op, const problem *q, const char *what, int sf, int sr)
{
    if (sf != 0 || sr != 0) report(op, what, q->seed, -1, sf, sr);
}

/* ---------------------------------------------------------------- the operations */
static void test_forward(const problem *q, int nt)
{
    const ptrdiff_t B = q->B;
    double lz[2][4], sc[2][4];
    int with_score = irand(4) != 0;
    for (int r = 0; r < 2; ++r) {
        fc_crf_problem p = as_crf(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        int s = fc_crf_forward(&p, lz[r], with_score ? sc[r] : NULL);
        if (s != 0) { cmp_status(OP_FWD, q, "status", r ? 0 : s, r ? s : 0); return; }
    }
    n_calls[OP_FWD]++;
    cmp_double(OP_FWD, q, "logz", lz[0], lz[1], B);
    if (with_score) cmp_double(OP_FWD, q, "score", sc[0], sc[1], B);
}

static void test_fb(const problem *q, int nt)
{
    const ptrdiff_t B = q->B, T = q->T, K = q->K;
    const ptrdiff_t sz[6] = {B * T * K, B * T * K * K, B * T * K, K * K, K, K};
    const char *names[6] = {"node", "pair", "g_em", "g_trans", "g_start", "g_end"};
    void *arr[2][6];
    double lz[2][4], sc[2][4];
    int want[6];
    for (int a = 0; a < 6; ++a) want[a] = irand(10) < 7;
    for (int r = 0; r < 2; ++r)
        for (int a = 0; a < 6; ++a) {
            arr[r][a] = want[a] ? ralloc(q->dt, sz[a]) : NULL;
            /* poison: every entry must be written */
            for (ptrdiff_t i = 0; want[a] && i < sz[a]; ++i) rset(arr[r][a], q->dt, i, 12345.0);
        }
    int grad = want[2] || want[3] || want[4] || want[5];
    for (int r = 0; r < 2; ++r) {
        fc_crf_problem p = as_crf(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        fc_crf_fb_out out = {.weight = grad ? q->weight : NULL, .logz = lz[r], .score = sc[r], .node = arr[r][0],
                             .pair = arr[r][1], .g_em = arr[r][2], .g_trans = arr[r][3], .g_start = arr[r][4],
                             .g_end = arr[r][5]};
        int s = fc_crf_fb(&p, &out);
        if (s != 0) { cmp_status(OP_FB, q, "status", r ? 0 : s, r ? s : 0); goto done; }
    }
    n_calls[OP_FB]++;
    cmp_double(OP_FB, q, "logz", lz[0], lz[1], B);
    cmp_double(OP_FB, q, "score", sc[0], sc[1], B);
    for (int a = 0; a < 6; ++a)
        if (want[a]) cmp_real(OP_FB, q, names[a], arr[0][a], arr[1][a], sz[a]);
done:
    for (int r = 0; r < 2; ++r)
        for (int a = 0; a < 6; ++a) free(arr[r][a]);
}

/* Viterbi of q (emissions em, start / end as in q unless no_se); op: OP_VIT or OP_VITPOT. */
static void test_viterbi_em(int op, const problem *q, const void *em, int no_se, int nt)
{
    const ptrdiff_t B = q->B, T = q->T, top_k = 1 + irand(4);
    int64_t *pth[3];
    double *scs[3];
    for (int r = 0; r < 3; ++r) { /* fast, reference, reference with top_k + 1 (to see ties) */
        ptrdiff_t k = r == 2 ? top_k + 1 : top_k;
        pth[r] = malloc(sizeof(int64_t) * (size_t)(B * k * T + 1));
        scs[r] = malloc(sizeof(double) * (size_t)(B * k));
        fc_crf_problem p = as_crf(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        p.em = em;
        if (no_se) p.start = p.end = NULL;
        int s = fc_crf_viterbi(&p, k, pth[r], scs[r]);
        if (s != 0) { cmp_status(op, q, "status", r ? 0 : s, r ? s : 0); goto done; }
    }
    n_calls[op]++;
    for (ptrdiff_t b = 0; b < B; ++b)
        for (ptrdiff_t k = 0; k < top_k; ++k) {
            const double *s3 = scs[2] + b * (top_k + 1); /* exact ties met by this rank */
            if (q->integer && isfinite(s3[k]) && ((k > 0 && s3[k - 1] == s3[k]) || s3[k + 1] == s3[k]))
                n_exact_ties[op]++;
            double sf = scs[0][b * top_k + k], sr = scs[1][b * top_k + k];
            if (!close_to(op, q->dt, sf, sr)) { report(op, "score", q->seed, b * top_k + k, sf, sr); goto done; }
            const int64_t *pf = pth[0] + (b * top_k + k) * T, *pr = pth[1] + (b * top_k + k) * T;
            if (memcmp(pf, pr, sizeof(int64_t) * (size_t)T) == 0) continue;
            /* different paths: allowed only for a score tied (within tolerance) with another of the
             * top_k + 1 best, where the two implementations may round differently */
            int tied = 0;
            if (q->integer && op == OP_VIT) {
                ptrdiff_t t = 0;
                while (pf[t] == pr[t]) ++t;
                report(op, "path (exact ties, integer scores)", q->seed, (b * top_k + k) * T + t, (double)pf[t], (double)pr[t]);
                goto done;
            }
            const double *s2 = scs[2] + b * (top_k + 1);
            for (ptrdiff_t k2 = 0; k2 <= top_k; ++k2)
                if (k2 != k && isfinite(s2[k2]) && fabs(s2[k2] - sr) <= tol_of(q->dt) * (1.0 + fabs(sr))) tied = 1;
            if (!tied) {
                ptrdiff_t t = 0;
                while (pf[t] == pr[t]) ++t;
                report(op, "path (untied)", q->seed, (b * top_k + k) * T + t, (double)pf[t], (double)pr[t]);
                goto done;
            }
            n_ties[op]++;
        }
done:
    for (int r = 0; r < 3; ++r) { free(pth[r]); free(scs[r]); }
}

/* MEMM nll; gmode 0: ll only, 1: g_em and g_trans, 2: g_em only, 3: g_trans only (OP_MEMM_GT: a
 * bad argument for both paths, crf.h: the gradients come with g_em) */
static void test_memm(const problem *q, int nt, int bidir, int gmode)
{
    const ptrdiff_t B = q->B, T = q->T, K = q->K;
    const int op = gmode == 3 ? OP_MEMM_GT : OP_MEMM;
    if (gmode == 3) {
        void *g = ralloc(q->dt, K * K);
        for (int r = 0; r < 2; ++r) {
            double llr[4];
            fc_crf_problem p = as_crf(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
            int st = fc_memm_nll(&p, bidir, q->weight, llr, NULL, g);
            if (st != FC_BAD_ARGUMENT) cmp_status(op, q, "status (g_trans without g_em)", st, FC_BAD_ARGUMENT);
        }
        n_calls[op]++;
        free(g);
        return;
    }
    double ll[2][4];
    void *ge[2] = {NULL, NULL}, *gt[2] = {NULL, NULL};
    for (int r = 0; r < 2; ++r) {
        if (gmode == 1 || gmode == 2) ge[r] = ralloc(q->dt, B * T * K);
        if (gmode == 1 || gmode == 3) gt[r] = ralloc(q->dt, K * K);
        for (ptrdiff_t i = 0; ge[r] && i < B * T * K; ++i) rset(ge[r], q->dt, i, 12345.0);
        for (ptrdiff_t i = 0; gt[r] && i < K * K; ++i) rset(gt[r], q->dt, i, 12345.0);
        fc_crf_problem p = as_crf(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        int s = fc_memm_nll(&p, bidir, gmode ? q->weight : NULL, ll[r], ge[r], gt[r]);
        if (s != 0) { cmp_status(op, q, "status", r ? 0 : s, r ? s : 0); goto done; }
    }
    n_calls[op]++;
    cmp_double(op, q, bidir ? "ll (bidir)" : "ll", ll[0], ll[1], B);
    if (ge[0]) cmp_real(op, q, bidir ? "g_em (bidir)" : "g_em", ge[0], ge[1], B * T * K);
    if (gt[0]) cmp_real(op, q, bidir ? "g_trans (bidir)" : "g_trans", gt[0], gt[1], K * K);
done:
    for (int r = 0; r < 2; ++r) { free(ge[r]); free(gt[r]); }
}

/* MEMM potentials, compared; then the reference's identity: the CRF score (no start / end) of
 * the tags under the potentials = wf ll_fwd + wb ll_bwd; then Viterbi over the potentials. */
static void test_potentials(const problem *q, int nt)
{
    const ptrdiff_t B = q->B, T = q->T, K = q->K;
    static const double wts[4][2] = {{1, 0}, {0, 1}, {0.5, 0.5}, {0.3, 0.7}};
    const int w = irand(4);
    const double wf = wts[w][0], wb = wts[w][1];
    void *pot[2];
    for (int r = 0; r < 2; ++r) {
        pot[r] = ralloc(q->dt, B * T * K);
        for (ptrdiff_t i = 0; i < B * T * K; ++i) rset(pot[r], q->dt, i, 12345.0);
        fc_crf_problem p = as_crf(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        int s = fc_memm_potentials(&p, wf, wb, pot[r]);
        if (s != 0) { cmp_status(OP_POT, q, "status", r ? 0 : s, r ? s : 0); goto done; }
    }
    n_calls[OP_POT]++;
    cmp_real(OP_POT, q, "potentials", pot[0], pot[1], B * T * K);
    { /* identity, reference only */
        fc_crf_problem p = as_crf(q, FC_PATH_REFERENCE, 1);
        double lf[4], lbi[4], sc[4], lz[4];
        p.em = pot[1];
        p.start = p.end = NULL;
        int s = fc_crf_forward(&p, lz, sc);
        p.em = q->em;
        s |= fc_memm_nll(&p, 0, NULL, lf, NULL, NULL) | fc_memm_nll(&p, 1, NULL, lbi, NULL, NULL);
        n_calls[OP_SELF]++;
        for (ptrdiff_t b = 0; b < B && s == 0; ++b) {
            double lb = 2 * lbi[b] - lf[b], want = (wf != 0 ? wf * lf[b] : 0) + (wb != 0 ? wb * lb : 0);
            if (isinf(lf[b]) || isinf(lbi[b])) continue; /* -inf: a forbidden gold transition */
            if (!close_to(OP_SELF, q->dt, sc[b], want)) { report(OP_SELF, "potentials path score", q->seed, b, sc[b], want); break; }
        }
        if (s != 0) report(OP_SELF, "status", q->seed, -1, s, 0);
    }
    test_viterbi_em(OP_VITPOT, q, pot[1], 1, nt); /* -inf unaries, as memm_decode does */
done:
    free(pot[0]); free(pot[1]);
}

static void test_check(const problem *q, int nt)
{
    const ptrdiff_t B = q->B, T = q->T, K = q->K;
    problem c = *q;
    c.em = ralloc(q->dt, B * T * K);
    c.trans = ralloc(q->dt, K * K);
    memcpy(c.em, q->em, rsize(q->dt) * (size_t)(B * T * K));
    memcpy(c.trans, q->trans, rsize(q->dt) * (size_t)(K * K));
    c.start = q->start ? ralloc(q->dt, K) : NULL;
    if (c.start) memcpy(c.start, q->start, rsize(q->dt) * (size_t)K);
    c.tags = malloc(sizeof(int64_t) * (size_t)(B * T > 0 ? B * T : 1));
    memcpy(c.tags, q->tags, sizeof(int64_t) * (size_t)(B * T));
    static const double bad[4] = {NAN, INFINITY, -INFINITY, 1.0};
    int what = irand(6);
    if (what == 0 && B * T * K > 0) rset(c.em, q->dt, irand((int)(B * T * K)), bad[irand(3)]);
    if (what == 1) rset(c.trans, q->dt, irand((int)(K * K)), bad[irand(4)]);
    if (what == 2 && c.start) rset(c.start, q->dt, irand((int)K), bad[irand(4)]);
    if (what == 3 && B * T > 0) c.tags[irand((int)(B * T))] = irand(2) ? -2 : K;
    int res[2];
    for (int r = 0; r < 2; ++r) {
        fc_crf_problem p = as_crf(&c, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        if (what == 4) p.tags = NULL;
        if (what == 5) p.em = NULL;
        res[r] = fc_crf_check(&p);
    }
    n_calls[OP_CHECK]++;
    if (res[0] != res[1]) report(OP_CHECK, "bits", q->seed, what, res[0], res[1]);
    free(c.em); free(c.trans); free(c.start); free(c.tags);
}

/* Same status from both paths for bad arguments. */
static void test_args(const problem *q)
{
    double d[8];
    int64_t ip[64];
    float dummy[64];
    for (int c = 0; c < 16; ++c) {
        int s[2];
        for (int r = 0; r < 2; ++r) {
            fc_crf_problem p = as_crf(q, r ? FC_PATH_REFERENCE : FC_PATH_FAST, 1);
            fc_crf_fb_out out = {.logz = d};
            switch (c) {
            case 0: p.B = -1; s[r] = fc_crf_forward(&p, d, NULL); break;
            case 1: p.K = 0; s[r] = fc_crf_forward(&p, d, NULL); break;
            case 2: p.em = NULL; s[r] = fc_crf_forward(&p, d, NULL); break;
            case 3: p.tags = NULL; s[r] = fc_crf_forward(&p, d, d + 4); break;
            case 4: p.n_threads = 0; s[r] = fc_crf_fb(&p, &out); break;
            case 5: out.g_trans = dummy; s[r] = fc_crf_fb(&p, &out); break; /* no weight */
            case 6: s[r] = fc_crf_fb(&p, NULL); break;
            case 7: s[r] = fc_crf_viterbi(&p, 0, ip, d); break;
            case 8: s[r] = fc_crf_viterbi(&p, 1, NULL, d); break;
            case 9: p.tags = NULL; s[r] = fc_memm_nll(&p, 0, NULL, d, NULL, NULL); break;
            case 10: s[r] = fc_memm_nll(&p, 1, NULL, d, dummy, NULL); break; /* no weight */
            case 11: s[r] = fc_memm_potentials(&p, 1, 0, NULL); break;
            case 12: p.K = -1; s[r] = fc_crf_check(&p); break;
            case 13: p.dtype = (fc_dtype)7; s[r] = fc_crf_forward(&p, d, NULL); break;
            case 14: p.dtype = (fc_dtype)7; s[r] = fc_crf_check(&p); break;
            default: p.B = 0; p.em = NULL; s[r] = fc_crf_viterbi(&p, 2, ip, d); break; /* B = 0: OK first */
            }
        }
        n_calls[OP_ARGS]++;
        if (s[0] != s[1]) report(OP_ARGS, "status", q->seed, c, s[0], s[1]);
    }
}

/* ---------------------------------------------------------------- brute force (reference only) */
static double lse2(double a, double b)
{
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double m = fmax(a, b);
    return m + log(exp(a - m) + exp(b - m));
}

/* Every path of every sequence of q (when K^n <= 4096): log Z, node marginals and the top_k
 * scores of the reference against enumeration. */
static void test_brute(const problem *q)
{
    const ptrdiff_t B = q->B, T = q->T, K = q->K, top_k = 3;
    double lz[4], ks[4 * 3];
    int64_t *kp = malloc(sizeof(int64_t) * (size_t)(B * top_k * T + 1));
    void *node = ralloc(q->dt, B * T * K);
    fc_crf_problem p = as_crf(q, FC_PATH_REFERENCE, 1);
    fc_crf_fb_out out = {.logz = lz, .node = node};
    if (fc_crf_fb(&p, &out) != 0 || fc_crf_viterbi(&p, top_k, kp, ks) != 0) {
        report(OP_BRUTE, "status", q->seed, -1, 1, 0);
        goto done;
    }
    for (ptrdiff_t b = 0; b < B; ++b) {
        ptrdiff_t pos[32], n = 0;
        for (ptrdiff_t t = 0; t < T; ++t)
            if (q->mask == NULL || q->mask[b * T + t]) pos[n++] = t;
        double npaths = pow((double)K, (double)n);
        if (npaths > 4096 || n > 16 || K > 12) continue;
        n_calls[OP_BRUTE]++;
        double z = n == 0 ? 0.0 : -INFINITY, best[3] = {-INFINITY, -INFINITY, -INFINITY};
        double marg[16 * 12];
        for (int i = 0; i < 16 * 12; ++i) marg[i] = -INFINITY;
        if (n == 0) best[0] = 0.0;
        int64_t y[16];
        for (long id = 0; n > 0 && id < (long)npaths; ++id) {
            long r = id;
            for (ptrdiff_t k = n - 1; k >= 0; --k) { y[k] = r % K; r /= K; }
            double s = 0.0;
            for (ptrdiff_t k = 0; k < n; ++k) {
                s += rget(q->em, q->dt, (b * T + pos[k]) * K + y[k]);
                if (k > 0) s += rget(q->trans, q->dt, y[k - 1] * K + y[k]);
            }
            if (q->start) s += rget(q->start, q->dt, y[0]);
            if (q->end) s += rget(q->end, q->dt, y[n - 1]);
            z = lse2(z, s);
            for (ptrdiff_t k = 0; k < n; ++k) marg[k * K + y[k]] = lse2(marg[k * K + y[k]], s);
            for (int i = 0; i < 3; ++i)
                if (s > best[i]) {
                    for (int m = 2; m > i; --m) best[m] = best[m - 1];
                    best[i] = s;
                    break;
                }
        }
        if (!close_to(OP_BRUTE, q->dt, lz[b], z)) report(OP_BRUTE, "log Z", q->seed, b, lz[b], z);
        for (int i = 0; i < 3; ++i)
            if (!close_to(OP_BRUTE, q->dt, ks[b * 3 + i], best[i])) report(OP_BRUTE, "top-k score", q->seed, b * 3 + i, ks[b * 3 + i], best[i]);
        for (ptrdiff_t k = 0; k < n && z != -INFINITY; ++k)
            for (ptrdiff_t j = 0; j < K; ++j) {
                double want = exp(marg[k * K + j] - z), got = rget(node, q->dt, (b * T + pos[k]) * K + j);
                if (!close_to(OP_BRUTE, q->dt, got, want)) { report(OP_BRUTE, "marginal", q->seed, k * K + j, got, want); break; }
            }
    }
done:
    free(kp); free(node);
}

int main(int argc, char **argv)
{
    long nprob = argc > 1 ? atol(argv[1]) : 3000;
    for (int d = 0; d < 2; ++d) {
        fc_dtype dt = d ? FC_FLOAT64 : FC_FLOAT32;
        for (long i = 0; i < nprob; ++i) {
            long seed = d * 1000000L + i;
            problem q;
            make_problem(&q, dt, seed);
            int nt = 1 + irand(2);
            test_forward(&q, nt);
            test_fb(&q, nt);
            test_viterbi_em(OP_VIT, &q, q.em, 0, nt);
            test_memm(&q, nt, irand(2), irand(3));
            test_memm(&q, nt, irand(2), 3);
            test_potentials(&q, nt);
            test_check(&q, nt);
            if (i < 50) test_args(&q);
            test_brute(&q);
            problem_free(&q);
        }
    }
    int fail = 0;
    for (int op = 0; op < NOP; ++op) {
        printf("%-28s %6ld calls  %4ld mismatches  max rel err f32 %.1e  f64 %.1e", op_name[op], n_calls[op],
               n_bad[op], max_err[op][0], max_err[op][1]);
        if (op == OP_VIT || op == OP_VITPOT)
            printf("  (ranks tied exactly: %ld%s; tied within tolerance, ordered differently: %ld)", n_exact_ties[op],
                   op == OP_VIT ? ", same order required" : "", n_ties[op]);
        printf("\n");
        fail |= n_bad[op] != 0;
    }
    printf(fail ? "FAIL\n" : "OK\n");
    return fail;
}
