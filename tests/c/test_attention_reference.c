/* Fast path vs reference path of every attention and softmax operation (attention.h:
 * csrc/attention/attention_reference.c; softmax.h: csrc/attention/softmax_reference.c) on random
 * problems (fixed seeds, both dtypes), plus the reference backward against finite differences of
 * the reference forward.  Standalone C, no Python.  Built and run by
 *
 *   bash tests/c/run.sh            (see that script for other compilers, backends, arm64 under qemu)
 *
 * Prints one summary line per operation and how often each mask kind was drawn; exits 1 on any
 * mismatch.  Argument: number of problems per dtype (default 1500).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention/attention.h"
#include "attention/softmax.h"

/* ---------------------------------------------------------------- random numbers */
static uint64_t rng_state;
static uint32_t rnd32(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}
static double unif(void) { return rnd32() / 2147483648.0; } /* [0, 1) */
static int irand(int n) { return (int)(unif() * n); }      /* [0, n) */
static void seed_rng(long seed) { rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 12345; }

/* ---------------------------------------------------------------- bookkeeping */
enum { OP_FWD, OP_BWD, OP_SM, OP_SM_SPECIAL, OP_SM_INPLACE, OP_LSE, OP_LSE_SPECIAL, OP_ARGS, OP_FD, NOP };
static const char *op_name[NOP] = {"fc_attention", "fc_attention_backward", "fc_softmax", "fc_softmax(+-inf, NaN)",
                                   "fc_softmax(+-inf, NaN, in place)", "fc_logsumexp", "fc_logsumexp(+-inf, NaN)",
                                   "bad arguments", "reference vs finite differences"};
static long n_calls[NOP], n_bad[NOP];
static double max_ratio[NOP][2]; /* the largest error / tolerance */

enum { K_CAUSAL, K_KVLEN, K_SEG_UNILM, K_SEG, K_KEYKEEP, K_MASK, K_BIAS, K_BIAS_INF, K_ORDER, K_PRE, K_POST,
       K_LARGE, K_NONE, NKIND };
static const char *kind_name[NKIND] = {"causal", "kv_len", "segments (UniLM)", "segments (general)", "key_keep",
                                       "mask", "bias", "bias -inf", "order", "pre_mix", "post_mix",
                                       "T or S > 64", "no mask"};
static long n_kind[NKIND];

static double tol_of(fc_dtype dt) { return dt == FC_FLOAT32 ? 1e-4 : 1e-9; }

/* |a - b| <= tol (1 + mag), mag = max(|a|, |b|) (softmax) or the largest finite |entry| of the
 * reference array (attention: a float32 gradient entry carries the rounding of the largest terms
 * of its sums; float64 keeps the comparison sharp); infinities equal by sign, NaN equal to NaN;
 * records the error / tolerance. */
static int close_mag(int op, fc_dtype dt, double a, double b, double mag, double tol)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    double ratio = fabs(a - b) / (1.0 + mag) / tol; /* error / tolerance */
    if (ratio > max_ratio[op][dt]) max_ratio[op][dt] = ratio;
    return ratio <= 1.0;
}
static int close_to(int op, fc_dtype dt, double a, double b)
{
    return close_mag(op, dt, a, b, fmax(fabs(a), fabs(b)), tol_of(dt));
}

/* The tolerance of the attention comparisons: float32 logits z carry a rounding of about
 * 1e-7 |z| (dot products in float), which P = exp(z - lse) turns into relative errors, and the
 * gradient sums (dpre, dbias) cancel (each row of dZ sums to 0): in float32 it grows with the
 * largest |lse| of the problem. */
static double att_tol = 1e-4;

static void report(int op, const char *what, long seed, ptrdiff_t idx, double fast, double ref)
{
    if (n_bad[op]++ < 4) /* the first few of each operation */
        printf("  MISMATCH %s: %s (problem seed %ld, index %td): fast %.17g, reference %.17g\n", op_name[op], what,
               seed, idx, fast, ref);
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
static void *rcopy(fc_dtype dt, const void *a, ptrdiff_t n)
{
    void *c = ralloc(dt, n);
    memcpy(c, a, rsize(dt) * (size_t)n);
    return c;
}
static void *rfill(fc_dtype dt, ptrdiff_t n, double v)
{
    void *a = ralloc(dt, n);
    for (ptrdiff_t i = 0; i < n; ++i) rset(a, dt, i, v);
    return a;
}
static void *rand_real(fc_dtype dt, ptrdiff_t n, double amp)
{
    void *a = ralloc(dt, n);
    for (ptrdiff_t i = 0; i < n; ++i) rset(a, dt, i, amp * (2 * unif() - 1));
    return a;
}
static int64_t *ialloc(ptrdiff_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t)); }

/* Compares two arrays (real of dtype dt, or double) of n entries entry by entry (softmax) or
 * against the largest finite |entry| of ref (attention); the first mismatch is reported. */
static double val(const void *a, fc_dtype dt, int dbl, ptrdiff_t i) { return dbl ? ((const double *)a)[i] : rget(a, dt, i); }
static void cmp_any(int op, fc_dtype dt, int dbl, int whole, long seed, const char *what, const void *fast,
                    const void *ref, ptrdiff_t n)
{
    double mag = 0.0;
    for (ptrdiff_t i = 0; whole && i < n; ++i)
        if (isfinite(val(ref, dt, dbl, i))) mag = fmax(mag, fabs(val(ref, dt, dbl, i)));
    for (ptrdiff_t i = 0; i < n; ++i) {
        double a = val(fast, dt, dbl, i), b = val(ref, dt, dbl, i);
        if (!(whole ? close_mag(op, dt, a, b, mag, att_tol) : close_to(op, dt, a, b))) {
            report(op, what, seed, i, a, b);
            return;
        }
    }
}
static void cmp_real(int op, fc_dtype dt, long seed, const char *what, const void *fast, const void *ref, ptrdiff_t n)
{
    cmp_any(op, dt, 0, op == OP_FWD || op == OP_BWD, seed, what, fast, ref, n);
}
static void cmp_double(int op, fc_dtype dt, long seed, const char *what, const double *fast, const double *ref,
                       ptrdiff_t n)
{
    cmp_any(op, dt, 1, op == OP_FWD || op == OP_BWD, seed, what, fast, ref, n);
}

/* ---------------------------------------------------------------- attention problems */
typedef struct {
    fc_dtype dt;
    long seed;
    ptrdiff_t B, H, T, S, dk, dv;
    double scale;
    void *q, *k, *v, *pre, *post, *bias; /* pre, post, bias may be NULL */
    ptrdiff_t nbias;                      /* entries of the (broadcast) bias array */
    uint8_t *mask, *key_keep;
    int64_t *kv_len, *q_seg, *k_seg, *pos; /* pos: the order (q_pos = k_pos) */
    fc_attn_mask mk;
} aproblem;

static void aproblem_free(aproblem *a)
{
    free(a->q); free(a->k); free(a->v); free(a->pre); free(a->post); free(a->bias);
    free(a->mask); free(a->key_keep); free(a->kv_len); free(a->q_seg); free(a->k_seg); free(a->pos);
}

/* Strides of an array broadcast to (B, H, T, S): each axis kept with probability 0.7, else of
 * length 1 (stride 0); returns the number of entries. */
static ptrdiff_t bcast_strides(const aproblem *a, ptrdiff_t st[4])
{
    const ptrdiff_t full[4] = {a->B, a->H, a->T, a->S};
    ptrdiff_t len[4], n = 1;
    for (int x = 0; x < 4; ++x) len[x] = unif() < 0.7 ? full[x] : 1;
    for (int x = 3; x >= 0; --x) {
        st[x] = len[x] == 1 ? 0 : n;
        n *= len[x];
    }
    return n;
}

/* (B, N) cumulative sums of random 0/1 segment ids (UniLM: cumsum(segment_ids)). */
static int64_t *cum_segments(ptrdiff_t B, ptrdiff_t N)
{
    int64_t *c = ialloc(B * N);
    for (ptrdiff_t b = 0; b < B; ++b) {
        int64_t run = 0;
        for (ptrdiff_t j = 0; j < N; ++j) c[b * N + j] = run += unif() < 0.2;
    }
    return c;
}

static void make_aproblem(aproblem *a, fc_dtype dt, long seed, int tiny)
{
    seed_rng(seed);
    memset(a, 0, sizeof *a);
    a->dt = dt;
    a->seed = seed;
    const int large = !tiny && unif() < 0.12; /* several query / key tiles (64) and query groups (4 tiles) */
    a->B = tiny ? 1 + irand(2) : 1 + irand(3);
    a->H = tiny ? 1 + irand(3) : 1 + irand(4);
    a->T = tiny ? irand(5) : large ? 1 + irand(300) : irand(14);
    a->S = tiny ? irand(5) : large ? 1 + irand(160) : irand(14);
    a->dk = tiny ? 1 + irand(3) : 1 + irand(unif() < 0.2 ? 70 : 17);
    a->dv = tiny ? 1 + irand(3) : 1 + irand(unif() < 0.2 ? 70 : 17);
    const int order = unif() < 0.15;
    if (order) a->S = a->T;
    if (!order && unif() < 0.15) a->S = a->T; /* UniLM segments need T == S */
    const ptrdiff_t B = a->B, H = a->H, T = a->T, S = a->S;
    const double u = unif();
    a->scale = u < 0.4 ? 1.0 / sqrt((double)a->dk) : u < 0.6 ? 1.0 : 0.05 + 2 * unif();
    const double amp = unif() < 0.8 ? 1.5 : 4.0;
    a->q = rand_real(dt, B * H * T * a->dk, amp);
    a->k = rand_real(dt, B * H * S * a->dk, amp);
    a->v = rand_real(dt, B * H * S * a->dv, 2.0);
    if (unif() < 0.3) { /* talking heads: near the identity */
        a->pre = rand_real(dt, H * H, 0.4);
        for (ptrdiff_t h = 0; h < H; ++h) rset(a->pre, dt, h * H + h, rget(a->pre, dt, h * H + h) + 1.0);
    }
    if (unif() < 0.3) {
        a->post = rand_real(dt, H * H, 0.4);
        for (ptrdiff_t h = 0; h < H; ++h) rset(a->post, dt, h * H + h, rget(a->post, dt, h * H + h) + 1.0);
    }
    fc_attn_mask *mk = &a->mk;
    const int lengths = unif() < 0.3, segs = unif() < 0.25;
    if (order) {
        /* fastcore/attention.py's order: kernel index r is the token at position order[b, r];
         * causal in that index space, mask / bias read at the positions, padding key by key */
        a->pos = ialloc(B * T);
        for (ptrdiff_t b = 0; b < B; ++b) {
            int64_t *o = a->pos + b * T;
            for (ptrdiff_t r = 0; r < T; ++r) o[r] = r;
            for (ptrdiff_t r = T - 1; r > 0; --r) {
                ptrdiff_t x = irand((int)r + 1);
                int64_t t = o[r]; o[r] = o[x]; o[x] = t;
            }
        }
        mk->causal = 1;
        mk->causal_offset = irand(2) ? 0 : -1; /* order_inclusive or not */
        mk->q_pos = mk->k_pos = a->pos;
        if (lengths) {
            a->key_keep = malloc((size_t)(B * S > 0 ? B * S : 1));
            for (ptrdiff_t b = 0; b < B; ++b) {
                ptrdiff_t len = irand((int)S + 1);
                for (ptrdiff_t j = 0; j < S; ++j) a->key_keep[b * S + j] = a->pos[b * S + j] < len;
            }
        }
        if (segs) {
            int64_t *c = cum_segments(B, S);
            a->q_seg = ialloc(B * S);
            for (ptrdiff_t b = 0; b < B; ++b)
                for (ptrdiff_t j = 0; j < S; ++j) a->q_seg[b * S + j] = c[b * S + a->pos[b * S + j]];
            free(c);
            a->k_seg = ialloc(B * S);
            memcpy(a->k_seg, a->q_seg, sizeof(int64_t) * (size_t)(B * S));
            n_kind[K_SEG_UNILM]++;
        }
        if (lengths) n_kind[K_KEYKEEP]++;
        n_kind[K_ORDER]++;
    } else {
        if (unif() < 0.3) {
            mk->causal = 1;
            mk->causal_offset = S - T + (unif() < 0.5 ? 0 : irand(7) - 3);
            n_kind[K_CAUSAL]++;
        }
        if (lengths) {
            a->kv_len = ialloc(B);
            for (ptrdiff_t b = 0; b < B; ++b) a->kv_len[b] = unif() < 0.9 ? irand((int)S + 1) : irand(2) ? -1 : S + 5;
            n_kind[K_KVLEN]++;
        }
        if (segs) {
            if (T == S && unif() < 0.6) {
                a->q_seg = cum_segments(B, S);
                a->k_seg = ialloc(B * S);
                memcpy(a->k_seg, a->q_seg, sizeof(int64_t) * (size_t)(B * S));
                n_kind[K_SEG_UNILM]++;
            } else {
                a->q_seg = ialloc(B * T);
                a->k_seg = ialloc(B * S);
                for (ptrdiff_t x = 0; x < B * T; ++x) a->q_seg[x] = irand(4);
                for (ptrdiff_t x = 0; x < B * S; ++x) a->k_seg[x] = irand(4);
                n_kind[K_SEG]++;
            }
        }
        if (unif() < 0.2) {
            a->key_keep = malloc((size_t)(B * S > 0 ? B * S : 1));
            for (ptrdiff_t x = 0; x < B * S; ++x) a->key_keep[x] = unif() < 0.8 ? (uint8_t)(1 + irand(3)) : 0;
            n_kind[K_KEYKEEP]++;
        }
        mk->kv_len = a->kv_len;
    }
    mk->q_seg = a->q_seg;
    mk->k_seg = a->k_seg;
    mk->key_keep = a->key_keep;
    if (unif() < 0.3) {
        ptrdiff_t nm = bcast_strides(a, mk->mask_strides);
        const double pk = (double[]){0.5, 0.85, 0.97}[irand(3)];
        a->mask = malloc((size_t)(nm > 0 ? nm : 1));
        for (ptrdiff_t x = 0; x < nm; ++x) a->mask[x] = unif() < pk ? (uint8_t)(1 + irand(255)) : 0;
        mk->mask = a->mask;
        n_kind[K_MASK]++;
    }
    if (unif() < 0.35) {
        a->nbias = bcast_strides(a, mk->bias_strides);
        a->bias = rand_real(dt, a->nbias, unif() < 0.8 ? 1.0 : 5.0);
        if (unif() < 0.3) {
            for (ptrdiff_t x = 0; x < a->nbias; ++x)
                if (unif() < 0.2) rset(a->bias, dt, x, -INFINITY);
            n_kind[K_BIAS_INF]++;
        }
        mk->bias = a->bias;
        n_kind[K_BIAS]++;
    }
    if (a->pre) n_kind[K_PRE]++;
    if (a->post) n_kind[K_POST]++;
    if (T > 64 || S > 64) n_kind[K_LARGE]++;
    if (!mk->causal && !mk->kv_len && !mk->q_seg && !mk->key_keep && !mk->mask && !mk->bias) n_kind[K_NONE]++;
}

static fc_attention_problem as_problem(const aproblem *a, fc_path path, int n_threads)
{
    fc_attention_problem p = {.dtype = a->dt, .path = path, .B = a->B, .H = a->H, .T = a->T, .S = a->S,
                              .dk = a->dk, .dv = a->dv, .scale = a->scale, .q = a->q, .k = a->k, .v = a->v,
                              .mask = &a->mk, .pre_mix = a->pre, .post_mix = a->post, .n_threads = n_threads};
    return p;
}

/* Forward of both paths, compared, then the backward of both paths from the fast forward's out
 * and lse (as fastcore.attention.attention_backward is used), compared. */
static void test_attention(const aproblem *a, int nt)
{
    const fc_dtype dt = a->dt;
    const ptrdiff_t B = a->B, H = a->H, T = a->T, S = a->S, dk = a->dk, dv = a->dv;
    const ptrdiff_t nout = B * H * T * dv, nlse = B * H * T;
    void *out[2], *lse[2], *dq[2] = {0}, *dk_[2] = {0}, *dv_[2] = {0}, *dout = NULL;
    double *dpre[2] = {0}, *dpost[2] = {0}, *dbias[2] = {0};
    for (int r = 0; r < 2; ++r) {
        out[r] = rfill(dt, nout, 12345.0); /* poison: every entry must be written */
        lse[r] = rfill(dt, nlse, 12345.0);
        fc_attention_problem p = as_problem(a, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        int s = fc_attention(&p, out[r], lse[r]);
        if (s != 0) { report(OP_FWD, "status", a->seed, r, s, 0); goto done; }
    }
    n_calls[OP_FWD]++;
    double lmax = 0.0;
    for (ptrdiff_t x = 0; x < nlse; ++x)
        if (isfinite(rget(lse[1], dt, x))) lmax = fmax(lmax, fabs(rget(lse[1], dt, x)));
    att_tol = dt == FC_FLOAT32 ? 1e-5 * (5.0 + lmax) : tol_of(dt);
    cmp_real(OP_FWD, dt, a->seed, "lse", lse[0], lse[1], nlse);
    cmp_real(OP_FWD, dt, a->seed, "out", out[0], out[1], nout);

    dout = rand_real(dt, nout, 1.0);
    const int want_pre = unif() < 0.7, want_post = unif() < 0.7, want_dbias = a->bias && unif() < 0.7;
    double *dbias0 = want_dbias ? malloc(sizeof(double) * (size_t)a->nbias) : NULL; /* accumulated into */
    for (ptrdiff_t x = 0; want_dbias && x < a->nbias; ++x) dbias0[x] = 2 * unif() - 1;
    for (int r = 0; r < 2; ++r) {
        dq[r] = rfill(dt, B * H * T * dk, 12345.0);
        dk_[r] = rfill(dt, B * H * S * dk, 12345.0);
        dv_[r] = rfill(dt, B * H * S * dv, 12345.0);
        dpre[r] = want_pre ? malloc(sizeof(double) * (size_t)(H * H > 0 ? H * H : 1)) : NULL;
        dpost[r] = want_post ? malloc(sizeof(double) * (size_t)(H * H > 0 ? H * H : 1)) : NULL;
        for (ptrdiff_t x = 0; x < H * H; ++x) {
            if (dpre[r]) dpre[r][x] = 12345.0;
            if (dpost[r]) dpost[r][x] = 12345.0;
        }
        if (want_dbias) {
            dbias[r] = malloc(sizeof(double) * (size_t)a->nbias);
            memcpy(dbias[r], dbias0, sizeof(double) * (size_t)a->nbias);
        }
        fc_attention_problem p = as_problem(a, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        fc_attention_grads g = {.out = out[0], .dout = dout, .lse = lse[0], .dq = dq[r], .dk = dk_[r],
                                .dv = dv_[r], .dpre = dpre[r], .dpost = dpost[r], .dbias = dbias[r]};
        int s = fc_attention_backward(&p, &g);
        if (s != 0) { report(OP_BWD, "status", a->seed, r, s, 0); free(dbias0); goto done; }
    }
    free(dbias0);
    n_calls[OP_BWD]++;
    cmp_real(OP_BWD, dt, a->seed, "dq", dq[0], dq[1], B * H * T * dk);
    cmp_real(OP_BWD, dt, a->seed, "dk", dk_[0], dk_[1], B * H * S * dk);
    cmp_real(OP_BWD, dt, a->seed, "dv", dv_[0], dv_[1], B * H * S * dv);
    if (want_pre) cmp_double(OP_BWD, dt, a->seed, a->pre ? "dpre" : "dpre (no pre_mix: 0)", dpre[0], dpre[1], H * H);
    if (want_post) cmp_double(OP_BWD, dt, a->seed, a->post ? "dpost" : "dpost (no post_mix: 0)", dpost[0], dpost[1], H * H);
    if (want_dbias) cmp_double(OP_BWD, dt, a->seed, "dbias", dbias[0], dbias[1], a->nbias);
done:
    free(dout);
    for (int r = 0; r < 2; ++r) {
        free(out[r]); free(lse[r]); free(dq[r]); free(dk_[r]); free(dv_[r]);
        free(dpre[r]); free(dpost[r]); free(dbias[r]);
    }
}

/* ---------------------------------------------------------------- finite differences (reference only) */

/* L = sum out * w of the reference forward (float64 problem). */
static double loss(const aproblem *a, const double *w, double *out, double *lse)
{
    fc_attention_problem p = as_problem(a, FC_PATH_REFERENCE, 1);
    if (fc_attention(&p, out, lse) != 0) return NAN;
    double L = 0.0;
    for (ptrdiff_t x = 0; x < a->B * a->H * a->T * a->dv; ++x) L += out[x] * w[x];
    return L;
}

/* The reference backward of a tiny float64 problem against central differences of L = <out, w>
 * in every entry of q, k, v, pre_mix, post_mix and the bias. */
static void test_fd(const aproblem *a)
{
    const ptrdiff_t B = a->B, H = a->H, T = a->T, S = a->S, dk = a->dk, dv = a->dv;
    const ptrdiff_t nout = B * H * T * dv;
    double *w = rand_real(FC_FLOAT64, nout, 1.0), *out = ralloc(FC_FLOAT64, nout);
    double *lse = ralloc(FC_FLOAT64, B * H * T), *dpre = ralloc(FC_FLOAT64, H * H), *dpost = ralloc(FC_FLOAT64, H * H);
    double *dq = ralloc(FC_FLOAT64, B * H * T * dk), *dk_ = ralloc(FC_FLOAT64, B * H * S * dk);
    double *dv_ = ralloc(FC_FLOAT64, B * H * S * dv), *dbias = a->bias ? ralloc(FC_FLOAT64, a->nbias) : NULL;
    fc_attention_problem p = as_problem(a, FC_PATH_REFERENCE, 1);
    if (fc_attention(&p, out, lse) != 0) { report(OP_FD, "status", a->seed, -1, 1, 0); goto done; }
    fc_attention_grads g = {.out = out, .dout = w, .lse = lse, .dq = dq, .dk = dk_, .dv = dv_,
                            .dpre = dpre, .dpost = dpost, .dbias = dbias};
    if (fc_attention_backward(&p, &g) != 0) { report(OP_FD, "status", a->seed, -1, 1, 0); goto done; }
    n_calls[OP_FD]++;
    struct { double *x; const double *grad; ptrdiff_t n; const char *name; } in[6] = {
        {a->q, dq, B * H * T * dk, "dq"}, {a->k, dk_, B * H * S * dk, "dk"}, {a->v, dv_, B * H * S * dv, "dv"},
        {a->pre, dpre, a->pre ? H * H : 0, "dpre"}, {a->post, dpost, a->post ? H * H : 0, "dpost"},
        {a->bias, dbias, a->bias ? a->nbias : 0, "dbias"}};
    const double eps = 1e-6;
    for (int t = 0; t < 6; ++t)
        for (ptrdiff_t x = 0; x < in[t].n; ++x) {
            const double x0 = in[t].x[x];
            if (isinf(x0)) continue; /* a -inf bias: no derivative (dbias 0 there) */
            in[t].x[x] = x0 + eps;
            double lp = loss(a, w, out, lse);
            in[t].x[x] = x0 - eps;
            double lm = loss(a, w, out, lse);
            in[t].x[x] = x0;
            double fd = (lp - lm) / (2 * eps), got = in[t].grad[x];
            double ratio = fabs(fd - got) / (1.0 + fabs(fd)) / 1e-6;
            if (ratio > max_ratio[OP_FD][1]) max_ratio[OP_FD][1] = ratio;
            if (!(ratio <= 1.0)) { report(OP_FD, in[t].name, a->seed, x, got, fd); goto done; }
        }
done:
    free(w); free(out); free(lse); free(dpre); free(dpost); free(dq); free(dk_); free(dv_); free(dbias);
}

/* ---------------------------------------------------------------- softmax */
typedef struct {
    fc_dtype dt;
    long seed;
    ptrdiff_t outer, n, inner;
    void *x;
    uint8_t *mask;
    ptrdiff_t *moff, msn, msi;
    int special; /* +-inf / NaN entries or rows all -inf */
} sproblem;

static void make_sproblem(sproblem *s, fc_dtype dt, long seed)
{
    seed_rng(seed);
    memset(s, 0, sizeof *s);
    s->dt = dt;
    s->seed = seed;
    const int large = unif() < 0.1;
    s->outer = irand(5);
    s->n = large ? irand(700) : irand(40);
    s->inner = unif() < 0.5 ? 1 : large ? 250 + irand(30) : 2 + irand(20); /* > 256: two column blocks */
    if (large && s->inner > 1) s->n = irand(40);
    const ptrdiff_t outer = s->outer, n = s->n, inner = s->inner, N = outer * n * inner;
    const double amp = (double[]){3.0, 3.0, 80.0, 1e30}[irand(4)];
    s->x = rand_real(dt, N, amp);
    const double pspecial = (double[]){0.0, 0.0, 0.02, 0.2}[irand(4)];
    for (ptrdiff_t i = 0; i < N; ++i)
        if (unif() < pspecial) {
            rset(s->x, dt, i, (double[]){-INFINITY, -INFINITY, INFINITY, NAN}[irand(4)]);
            s->special = 1;
        }
    if (n > 0 && unif() < 0.15) { /* a slice all -inf */
        ptrdiff_t o = irand((int)outer), c = irand((int)inner);
        for (ptrdiff_t i = 0; outer > 0 && i < n; ++i) rset(s->x, dt, (o * n + i) * inner + c, -INFINITY);
        s->special |= outer > 0;
    }
    if (unif() < 0.6) {
        /* any offsets and strides (0 = broadcast), the mask read where softmax.h says */
        s->msn = (ptrdiff_t[]){0, 1, inner, inner + 3}[irand(4)];
        s->msi = (ptrdiff_t[]){0, 1, 2, n}[irand(4)];
        s->moff = malloc(sizeof(ptrdiff_t) * (size_t)(outer > 0 ? outer : 1));
        ptrdiff_t span = 1 + (n > 0 ? (n - 1) * s->msn : 0) + (inner - 1) * s->msi, nm = 0;
        for (ptrdiff_t o = 0; o < outer; ++o) {
            s->moff[o] = irand(2) ? o * span : irand(20);
            if (s->moff[o] + span > nm) nm = s->moff[o] + span;
        }
        const double pk = (double[]){0.0, 0.5, 0.9, 1.0}[irand(4)];
        s->mask = malloc((size_t)(nm > 0 ? nm : 1));
        for (ptrdiff_t i = 0; i < nm; ++i) s->mask[i] = unif() < pk ? (uint8_t)(1 + irand(255)) : 0;
    }
}

static void sproblem_free(sproblem *s) { free(s->x); free(s->mask); free(s->moff); }

static fc_softmax_problem as_softmax(const sproblem *s, fc_path path, int n_threads)
{
    fc_softmax_problem p = {.dtype = s->dt, .path = path, .x = s->x, .outer = s->outer, .n = s->n,
                            .inner = s->inner, .mask = s->mask, .mask_offsets = s->moff,
                            .mask_stride_n = s->msn, .mask_stride_inner = s->msi, .n_threads = n_threads};
    return p;
}

static void test_softmax(const sproblem *s, int nt)
{
    const fc_dtype dt = s->dt;
    const ptrdiff_t N = s->outer * s->n * s->inner, NL = s->outer * s->inner;
    const int inplace = unif() < 0.3;
    const int op_sm = !s->special ? OP_SM : inplace ? OP_SM_INPLACE : OP_SM_SPECIAL;
    const int op_lse = s->special ? OP_LSE_SPECIAL : OP_LSE;
    void *sm[2], *lse[2];
    for (int r = 0; r < 2; ++r) {
        fc_softmax_problem p = as_softmax(s, r ? FC_PATH_REFERENCE : FC_PATH_FAST, r ? 1 : nt);
        if (inplace) {
            sm[r] = rcopy(dt, s->x, N);
            p.x = sm[r];
        } else {
            sm[r] = rfill(dt, N, 12345.0);
        }
        lse[r] = rfill(dt, NL, 12345.0);
        if (p.n == 0 && unif() < 0.5) p.x = NULL; /* allowed when n == 0 */
        int st = fc_softmax(&p, sm[r]);
        if (st != 0) report(op_sm, "status", s->seed, r, st, 0);
        p.x = s->x;
        if (s->n == 0 && unif() < 0.5) p.x = NULL;
        st = fc_logsumexp(&p, lse[r]);
        if (st != 0) report(op_lse, "status", s->seed, r, st, 0);
    }
    n_calls[op_sm]++;
    n_calls[op_lse]++;
    cmp_real(op_sm, dt, s->seed, inplace ? "softmax (in place)" : "softmax", sm[0], sm[1], N);
    cmp_real(op_lse, dt, s->seed, "logsumexp", lse[0], lse[1], NL);
    for (int r = 0; r < 2; ++r) { free(sm[r]); free(lse[r]); }
}

/* ---------------------------------------------------------------- bad arguments */

/* The same status from both paths for bad (and edge) arguments, and an unknown path refused. */
static void test_args(const aproblem *a, const sproblem *s)
{
    double buf[4096];
    float fbuf[4096];
    void *o = a->dt == FC_FLOAT32 ? (void *)fbuf : (void *)buf;
    fc_attn_mask half = a->mk, nobias = a->mk; /* q_seg without k_seg; no bias (for a dbias) */
    half.k_seg = NULL;
    half.q_seg = (const int64_t *)buf;
    nobias.bias = NULL;
    for (int c = 0; c < 27; ++c) {
        int st[2];
        for (int r = 0; r < 2; ++r) {
            fc_attention_problem p = as_problem(a, r ? FC_PATH_REFERENCE : FC_PATH_FAST, 1);
            fc_attention_grads g = {.out = o, .dout = o, .lse = o, .dq = o, .dk = o, .dv = o};
            fc_softmax_problem sp = as_softmax(s, r ? FC_PATH_REFERENCE : FC_PATH_FAST, 1);
            switch (c) {
            case 0: p.B = -1; st[r] = fc_attention(&p, o, o); break;
            case 1: p.dk = 0; st[r] = fc_attention(&p, o, o); break;
            case 2: p.dv = 0; st[r] = fc_attention_backward(&p, &g); break;
            case 3: p.n_threads = 0; st[r] = fc_attention(&p, o, o); break;
            case 4: p.mask = NULL; st[r] = fc_attention(&p, o, o); break;
            case 5: p.mask = &half; st[r] = fc_attention_backward(&p, &g); break;
            case 6: p.dtype = (fc_dtype)7; st[r] = fc_attention(&p, o, o); break;
            case 7: p.B = 1; p.T = 1; p.q = NULL; st[r] = fc_attention(&p, o, o); break;
            case 8: p.B = 1; p.T = 1; st[r] = fc_attention(&p, o, NULL); break;
            case 9: p.B = 1; p.T = 1; p.S = 2; p.k = NULL; st[r] = fc_attention(&p, o, o); break;
            case 10: p.T = 0; p.q = NULL; st[r] = fc_attention(&p, NULL, NULL); break; /* nothing to do: OK */
            case 11: st[r] = fc_attention_backward(&p, NULL); break;
            case 12: g.dbias = buf; p.mask = &nobias; st[r] = fc_attention_backward(&p, &g); break;
            case 13: p.B = 1; p.T = 1; p.S = 1; g.lse = NULL; st[r] = fc_attention_backward(&p, &g); break;
            case 14: p.B = 1; p.T = 1; p.S = 1; g.dv = NULL; st[r] = fc_attention_backward(&p, &g); break;
            case 15: p.H = 0; p.q = NULL; st[r] = fc_attention_backward(&p, &g); break;
            case 16: st[r] = fc_attention(NULL, o, o); break;
            case 17: sp.outer = -1; st[r] = fc_softmax(&sp, o); break;
            case 18: sp.n_threads = 0; st[r] = fc_logsumexp(&sp, o); break;
            case 19: sp.outer = 2; sp.n = 3; sp.inner = 1; sp.x = NULL; st[r] = fc_softmax(&sp, o); break;
            case 20: sp.outer = 2; sp.n = 3; sp.inner = 1; sp.mask = (const uint8_t *)buf; sp.mask_offsets = NULL;
                st[r] = fc_logsumexp(&sp, o); break;
            case 21: sp.outer = 2; sp.n = 3; sp.inner = 1; st[r] = fc_softmax(&sp, NULL); break;
            case 22: sp.outer = 2; sp.n = 0; sp.inner = 1; st[r] = fc_logsumexp(&sp, NULL); break;
            case 23: sp.outer = 0; st[r] = fc_softmax(&sp, NULL); break;
            case 24: sp.dtype = (fc_dtype)7; st[r] = fc_softmax(&sp, o); break;
            case 25: st[r] = fc_logsumexp(NULL, o); break;
            default: sp.outer = -1; st[r] = fc_softmax(&sp, NULL); break; /* out NULL first: OK */
            }
        }
        n_calls[OP_ARGS]++;
        if (st[0] != st[1]) report(OP_ARGS, "status", a->seed, c, st[0], st[1]);
    }
    fc_attention_problem p = as_problem(a, (fc_path)7, 1);
    fc_softmax_problem sp = as_softmax(s, (fc_path)7, 1);
    n_calls[OP_ARGS] += 2;
    if (fc_attention(&p, o, o) != FC_BAD_ARGUMENT) report(OP_ARGS, "unknown path (attention)", a->seed, -1, 0, 0);
    if (fc_softmax(&sp, o) != FC_BAD_ARGUMENT) report(OP_ARGS, "unknown path (softmax)", a->seed, -1, 0, 0);
}

int main(int argc, char **argv)
{
    long nprob = argc > 1 ? atol(argv[1]) : 1500;
    for (int d = 0; d < 2; ++d) {
        fc_dtype dt = d ? FC_FLOAT64 : FC_FLOAT32;
        for (long i = 0; i < nprob; ++i) {
            long seed = d * 1000000L + i;
            aproblem a;
            sproblem s;
            make_aproblem(&a, dt, seed, 0);
            make_sproblem(&s, dt, seed);
            seed_rng(seed + 777);
            int nt = 1 + irand(3);
            test_attention(&a, nt);
            test_softmax(&s, nt);
            if (i < 40) test_args(&a, &s);
            aproblem_free(&a);
            sproblem_free(&s);
            if (dt == FC_FLOAT64 && i < nprob / 5) {
                aproblem t;
                make_aproblem(&t, dt, seed + 500000L, 1);
                test_fd(&t);
                aproblem_free(&t);
            }
        }
    }
    int fail = 0;
    for (int op = 0; op < NOP; ++op) {
        printf("%-33s %6ld calls  %4ld mismatches  worst error / tolerance f32 %.1e  f64 %.1e\n", op_name[op],
               n_calls[op], n_bad[op], max_ratio[op][0], max_ratio[op][1]);
        fail |= n_bad[op] != 0;
    }
    printf("problems drawn with:");
    for (int k = 0; k < NKIND; ++k) printf("%s %s %ld", k ? "," : "", kind_name[k], n_kind[k]);
    printf("\n");
    printf(fail ? "FAIL\n" : "OK\n");
    return fail;
}
