/* The reference path of the CRF / MEMM kernels (crf.h): plain C, one sequence at a time, every
 * quantity in log space in double, written to be read against the maths and compared with the
 * fast kernels by the tests (fc_crf_problem.path = FC_PATH_REFERENCE).  No SIMD, no threads,
 * no rescaling: nothing here is shared with the fast kernels.
 *
 * Notation for one sequence b: its kept positions pos[0..n) (masked positions removed, the chain
 * joins the kept ones), e[k][j] = em[b, pos[k], j], G = trans (K, K), s = start, f = end (zeros
 * when NULL), y[k] = tags[b, pos[k]].  lse = log-sum-exp (-inf when every term is -inf).
 *
 * CRF   score(y) = s[y0] + e[0][y0] + sum_{k>=1} (G[y_{k-1}, y_k] + e[k][y_k]) + f[y_{n-1}]
 *       alpha[0][j] = s[j] + e[0][j],  alpha[k][j] = lse_i(alpha[k-1][i] + G[i, j]) + e[k][j]
 *       beta[n-1][j] = f[j],           beta[k-1][i] = lse_j(G[i, j] + e[k][j] + beta[k][j])
 *       log Z = lse_j(alpha[n-1][j] + f[j])   (0 when n = 0; -inf when no path is allowed)
 *       node[pos[k], j]    = exp(alpha[k][j] + beta[k][j] - log Z)
 *       pair[pos[k], i, j] = exp(alpha[k-1][i] + G[i, j] + e[k][j] + beta[k][j] - log Z), k >= 1
 *       (marginals are 0 when log Z = -inf, and at masked positions; pair is 0 at the first kept)
 *       Gradients of sum_b w_b (log Z_b - score_b): marginals minus the gold one-hot counts,
 *       g_em[b, pos[k], j] = w_b (node - [y_k = j]), g_trans = sum_b w_b sum_{k>=1} (pair - gold),
 *       g_start / g_end from the first / last kept node marginals.
 * Viterbi top_k: list Viterbi.  Every (k, j) keeps the top_k best partial paths ending in label j
 *       at k with a back-pointer (previous label, rank in its list); candidates G-extended from
 *       the lists at k-1 are ordered by score (before adding e[k][j]) descending, ties by lower
 *       previous label, then lower rank; the final ranking likewise by (last label, rank).  This
 *       is the tie order of the fast kernels (and for top_k = 1 plain Viterbi with the lowest
 *       index winning ties).  -inf partial scores are dropped, so only allowed paths come out;
 *       missing paths are -1 with score -inf; an empty sequence has one empty path of score 0.
 *       Scores are the path scores recomputed along the returned paths.
 * MEMM  forward: P(y_0) = softmax(e[0])[y_0], P(y_k | y_{k-1}) = softmax_j(G[y_{k-1}, j] + e[k][j])[y_k]
 *       backward: P(y_{n-1}) = softmax(e[n-1]), P(y_k | y_{k+1}) = softmax_a(G[a, y_{k+1}] + e[k][a])[y_k]
 *       ll = forward log-likelihood, or the mean of both when bidir.  A step whose logits are all
 *       -inf makes its direction -inf and adds no gradient.  Gradients of sum_b w_b (-ll_b):
 *       c (softmax - onehot) per step and direction (c = w_b, or w_b / 2 when bidir) into the
 *       step's emission row and into G's row y_{k-1} (forward) or column y_{k+1} (backward).
 *       g_trans is computed whenever it is given, with or without g_em (crf.h only promises it
 *       with g_em; the fast kernels leave it 0 or partial without g_em).
 * MEMM potentials: with e'[k][j] = e[k][j] - max_j e[k][j] (softmaxes do not see the shift),
 *       u[k][y] = e'[k][y] - wf [k = 0] lse(e'[0]) - wb [k = n-1] lse(e'[n-1])
 *                 - wf [k < n-1] lse_c(G[y, c] + e'[k+1][c]) - wb [k > 0] lse_a(G[a, y] + e'[k-1][a])
 *       so that sum_k u[k][y_k] + sum_{k>=1} G[y_{k-1}, y_k] = wf ll_fwd + wb ll_bwd; a label whose
 *       lse term is -inf (it cannot be continued) gets -inf; a term whose weight is 0 is skipped.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crf/crf_internal.h"
#include "core/fc_reference.h"

/* ---------------------------------------------------------------- helpers */

/* log sum_i exp v[i]; -inf when every v[i] is -inf (or n = 0) */
static double lse(const double *v, ptrdiff_t n)
{
    double m = -INFINITY, s = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i)
        if (v[i] > m) m = v[i];
    if (m == -INFINITY) return m;
    for (ptrdiff_t i = 0; i < n; ++i) s += exp(v[i] - m);
    return m + log(s);
}

/* The problem in double, and the current sequence gathered at its kept positions. */
typedef struct {
    const fc_crf_problem *p;
    ptrdiff_t T, K;
    double *G;         /* (K, K) trans */
    double *s, *f;     /* (K,) start, end (zeros when NULL) */
    ptrdiff_t *pos;    /* (T,) kept positions of the current sequence */
    int64_t *y;        /* (T,) its gold labels, y[k] = tags[b, pos[k]] (when tags != NULL) */
    double *e;         /* (T, K) its emissions, e[k K + j] = em[b, pos[k], j] */
    double *A, *Bt;    /* (T, K) alpha, beta (or other per-step rows) */
    double *v;         /* (K,) scratch */
} ref_ctx;

static void ctx_free(ref_ctx *c)
{
    free(c->G); free(c->s); free(c->f); free(c->pos); free(c->y); free(c->e); free(c->A); free(c->Bt);
    free(c->v);
}

static int ctx_init(ref_ctx *c, const fc_crf_problem *p)
{
    const ptrdiff_t T = p->T, K = p->K, T1 = T > 0 ? T : 1;
    memset(c, 0, sizeof *c);
    c->p = p; c->T = T; c->K = K;
    c->G = malloc(sizeof(double) * (size_t)(K * K));
    c->s = malloc(sizeof(double) * (size_t)K);
    c->f = malloc(sizeof(double) * (size_t)K);
    c->pos = malloc(sizeof(ptrdiff_t) * (size_t)T1);
    c->y = malloc(sizeof(int64_t) * (size_t)T1);
    c->e = malloc(sizeof(double) * (size_t)(T1 * K));
    c->A = malloc(sizeof(double) * (size_t)(T1 * K));
    c->Bt = malloc(sizeof(double) * (size_t)(T1 * K));
    c->v = malloc(sizeof(double) * (size_t)K);
    if (!c->G || !c->s || !c->f || !c->pos || !c->y || !c->e || !c->A || !c->Bt || !c->v) {
        ctx_free(c);
        return FC_OUT_OF_MEMORY;
    }
    for (ptrdiff_t i = 0; i < K * K; ++i) c->G[i] = fc_ref_load(p->trans, p->dtype, i);
    for (ptrdiff_t j = 0; j < K; ++j) {
        c->s[j] = p->start ? fc_ref_load(p->start, p->dtype, j) : 0.0;
        c->f[j] = p->end ? fc_ref_load(p->end, p->dtype, j) : 0.0;
    }
    return FC_OK;
}

/* Gathers sequence b (emissions of `em`, which has the problem's layout); returns n, the number
 * of kept positions. */
static ptrdiff_t ctx_seq(ref_ctx *c, ptrdiff_t b, const void *em)
{
    const fc_crf_problem *p = c->p;
    const ptrdiff_t T = c->T, K = c->K;
    ptrdiff_t n = 0;
    for (ptrdiff_t t = 0; t < T; ++t)
        if (p->mask == NULL || p->mask[b * T + t]) c->pos[n++] = t;
    for (ptrdiff_t k = 0; k < n; ++k) {
        for (ptrdiff_t j = 0; j < K; ++j) c->e[k * K + j] = fc_ref_load(em, p->dtype, (b * T + c->pos[k]) * K + j);
        if (p->tags) c->y[k] = p->tags[b * T + c->pos[k]];
    }
    return n;
}

/* ---------------------------------------------------------------- CRF */

/* CRF score of the labels lab[pos[k]] (lab: (T,) row of the sequence; 0 when n = 0). */
static double crf_score(const ref_ctx *c, ptrdiff_t n, const int64_t *lab)
{
    const ptrdiff_t K = c->K;
    if (n == 0) return 0.0;
    int64_t prev = lab[c->pos[0]];
    double sc = c->s[prev] + c->e[prev];
    for (ptrdiff_t k = 1; k < n; ++k) {
        int64_t cur = lab[c->pos[k]];
        sc += c->G[prev * K + cur] + c->e[k * K + cur];
        prev = cur;
    }
    return sc + c->f[prev];
}

/* Forward recursion into c->A (n, K); returns log Z (0 when n = 0). */
static double crf_alpha(ref_ctx *c, ptrdiff_t n)
{
    const ptrdiff_t K = c->K;
    double *A = c->A, *v = c->v;
    if (n == 0) return 0.0;
    for (ptrdiff_t j = 0; j < K; ++j) A[j] = c->s[j] + c->e[j];
    for (ptrdiff_t k = 1; k < n; ++k)
        for (ptrdiff_t j = 0; j < K; ++j) {
            for (ptrdiff_t i = 0; i < K; ++i) v[i] = A[(k - 1) * K + i] + c->G[i * K + j];
            A[k * K + j] = lse(v, K) + c->e[k * K + j];
        }
    for (ptrdiff_t j = 0; j < K; ++j) v[j] = A[(n - 1) * K + j] + c->f[j];
    return lse(v, K);
}

/* Backward recursion into c->Bt (n, K). */
static void crf_beta(ref_ctx *c, ptrdiff_t n)
{
    const ptrdiff_t K = c->K;
    double *Bt = c->Bt, *v = c->v;
    if (n == 0) return;
    for (ptrdiff_t j = 0; j < K; ++j) Bt[(n - 1) * K + j] = c->f[j];
    for (ptrdiff_t k = n - 1; k >= 1; --k)
        for (ptrdiff_t i = 0; i < K; ++i) {
            for (ptrdiff_t j = 0; j < K; ++j) v[j] = c->G[i * K + j] + c->e[k * K + j] + Bt[k * K + j];
            Bt[(k - 1) * K + i] = lse(v, K);
        }
}

int fc_crf_forward_ref(const fc_crf_problem *p, double *logz, double *score)
{
    if (p == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    if (p->B < 0 || p->T < 0 || p->K < 1 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (p->B == 0) return FC_OK;
    if (p->em == NULL || p->trans == NULL || logz == NULL || (score != NULL && p->tags == NULL))
        return FC_BAD_ARGUMENT;
    ref_ctx c;
    if (ctx_init(&c, p) != FC_OK) return FC_OUT_OF_MEMORY;
    for (ptrdiff_t b = 0; b < p->B; ++b) {
        ptrdiff_t n = ctx_seq(&c, b, p->em);
        logz[b] = crf_alpha(&c, n);                                 /* logz (B,) */
        if (score) score[b] = crf_score(&c, n, p->tags + b * p->T); /* score (B,) */
    }
    ctx_free(&c);
    return FC_OK;
}

int fc_crf_fb_ref(const fc_crf_problem *p, const fc_crf_fb_out *out)
{
    if (p == NULL || out == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t B = p->B, T = p->T, K = p->K;
    const fc_dtype dt = p->dtype;
    if (B < 0 || T < 0 || K < 1 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (p->em == NULL || p->trans == NULL) return FC_BAD_ARGUMENT;
    const int grad = out->g_em || out->g_trans || out->g_start || out->g_end;
    if (grad && (p->tags == NULL || out->weight == NULL)) return FC_BAD_ARGUMENT;
    if (out->score != NULL && p->tags == NULL) return FC_BAD_ARGUMENT;
    ref_ctx c;
    if (ctx_init(&c, p) != FC_OK) return FC_OUT_OF_MEMORY;
    /* gradient sums over the batch: gG (K, K), then gs (K,), gf (K,) */
    double *gG = calloc((size_t)(K * K + 2 * K), sizeof(double));
    if (gG == NULL) { ctx_free(&c); return FC_OUT_OF_MEMORY; }
    double *gs = gG + K * K, *gf = gs + K;
    for (ptrdiff_t b = 0; b < B; ++b) {
        const ptrdiff_t n = ctx_seq(&c, b, p->em);
        const double z = crf_alpha(&c, n);
        crf_beta(&c, n);
        const int any = n > 0 && z != -INFINITY; /* some path allowed: marginals defined */
        const double w = grad ? out->weight[b] : 0.0;
        if (out->logz) out->logz[b] = z;
        if (out->score) out->score[b] = crf_score(&c, n, p->tags + b * T);
        /* every row 0 first: masked positions (and the first kept one of pair) stay 0 */
        for (ptrdiff_t i = 0; i < T * K; ++i) {
            if (out->node) fc_ref_store(out->node, dt, b * T * K + i, 0.0);
            if (out->g_em) fc_ref_store(out->g_em, dt, b * T * K + i, 0.0);
        }
        if (out->pair)
            for (ptrdiff_t i = 0; i < T * K * K; ++i) fc_ref_store(out->pair, dt, b * T * K * K + i, 0.0);
        for (ptrdiff_t k = 0; k < n; ++k) {
            const ptrdiff_t t = c.pos[k];
            for (ptrdiff_t j = 0; j < K; ++j) {
                double q = any ? exp(c.A[k * K + j] + c.Bt[k * K + j] - z) : 0.0;
                if (out->node) fc_ref_store(out->node, dt, (b * T + t) * K + j, q);  /* node (B, T, K) */
                if (out->g_em) fc_ref_store(out->g_em, dt, (b * T + t) * K + j, w * (q - (c.y[k] == j)));
                if (k == 0) gs[j] += w * q;
                if (k == n - 1) gf[j] += w * q;
            }
            if (k == 0) continue;
            for (ptrdiff_t i = 0; i < K; ++i)
                for (ptrdiff_t j = 0; j < K; ++j) {
                    double q = any ? exp(c.A[(k - 1) * K + i] + c.G[i * K + j] + c.e[k * K + j]
                                         + c.Bt[k * K + j] - z)
                                   : 0.0;
                    if (out->pair) fc_ref_store(out->pair, dt, ((b * T + t) * K + i) * K + j, q); /* (B, T, K, K) */
                    gG[i * K + j] += w * q;
                }
        }
        if (grad && n > 0) { /* minus the gold counts */
            gs[c.y[0]] -= w;
            gf[c.y[n - 1]] -= w;
            for (ptrdiff_t k = 1; k < n; ++k) gG[c.y[k - 1] * K + c.y[k]] -= w;
        }
    }
    for (ptrdiff_t i = 0; out->g_trans && i < K * K; ++i) fc_ref_store(out->g_trans, dt, i, gG[i]); /* (K, K) */
    for (ptrdiff_t j = 0; j < K; ++j) {
        if (out->g_start) fc_ref_store(out->g_start, dt, j, gs[j]); /* (K,) */
        if (out->g_end) fc_ref_store(out->g_end, dt, j, gf[j]);     /* (K,) */
    }
    free(gG);
    ctx_free(&c);
    return FC_OK;
}

/* ---------------------------------------------------------------- Viterbi */

/* A partial path in a (k, j) list: its score and its prefix, the entry `rank` of the list of
 * label `prev` at k - 1 (-1 at k = 0).  In the final ranking prev is the last label. */
typedef struct {
    double score;
    ptrdiff_t prev, rank;
} vit_ent;

/* score descending, then prev ascending, then rank ascending */
static int vit_cmp(const void *a_, const void *b_)
{
    const vit_ent *a = a_, *b = b_;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->prev != b->prev) return a->prev < b->prev ? -1 : 1;
    return (a->rank > b->rank) - (a->rank < b->rank);
}

int fc_crf_viterbi_ref(const fc_crf_problem *p, ptrdiff_t top_k, int64_t *paths, double *scores)
{
    if (p == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t B = p->B, T = p->T, K = p->K, T1 = T > 0 ? T : 1;
    if (B < 0 || T < 0 || K < 1 || top_k < 1 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (B == 0) return FC_OK;
    if (p->em == NULL || p->trans == NULL || paths == NULL || scores == NULL) return FC_BAD_ARGUMENT;
    ref_ctx c;
    if (ctx_init(&c, p) != FC_OK) return FC_OUT_OF_MEMORY;
    vit_ent *L = malloc(sizeof(vit_ent) * (size_t)(T1 * K * top_k)); /* (T, K, top_k) lists */
    ptrdiff_t *cnt = malloc(sizeof(ptrdiff_t) * (size_t)(T1 * K));  /* (T, K) their lengths */
    vit_ent *cand = malloc(sizeof(vit_ent) * (size_t)(K * top_k));  /* (K * top_k) candidates */
    if (!L || !cnt || !cand) {
        free(L); free(cnt); free(cand); ctx_free(&c);
        return FC_OUT_OF_MEMORY;
    }
    for (ptrdiff_t b = 0; b < B; ++b) {
        int64_t *pb = paths + b * top_k * T; /* (top_k, T) */
        double *sb = scores + b * top_k;     /* (top_k,) */
        for (ptrdiff_t i = 0; i < top_k * T; ++i) pb[i] = -1;
        for (ptrdiff_t q = 0; q < top_k; ++q) sb[q] = -INFINITY;
        const ptrdiff_t n = ctx_seq(&c, b, p->em);
        if (n == 0) { /* one empty path */
            sb[0] = 0.0;
            continue;
        }
        for (ptrdiff_t j = 0; j < K; ++j) {
            vit_ent first = {c.s[j] + c.e[j], -1, -1};
            cnt[j] = first.score != -INFINITY;
            L[j * top_k] = first;
        }
        for (ptrdiff_t k = 1; k < n; ++k)
            for (ptrdiff_t j = 0; j < K; ++j) {
                ptrdiff_t m = 0;
                for (ptrdiff_t i = 0; i < K; ++i)
                    for (ptrdiff_t r = 0; r < cnt[(k - 1) * K + i]; ++r) {
                        vit_ent x = {L[((k - 1) * K + i) * top_k + r].score + c.G[i * K + j], i, r};
                        if (x.score != -INFINITY) cand[m++] = x;
                    }
                qsort(cand, (size_t)m, sizeof *cand, vit_cmp);
                const double ej = c.e[k * K + j];
                if (m > top_k) m = top_k;
                if (ej == -INFINITY) m = 0; /* (-inf unaries: MEMM potentials) */
                for (ptrdiff_t r = 0; r < m; ++r) {
                    cand[r].score += ej;
                    L[(k * K + j) * top_k + r] = cand[r];
                }
                cnt[k * K + j] = m;
            }
        ptrdiff_t m = 0; /* the final ranking: prev = last label, rank in its list */
        for (ptrdiff_t j = 0; j < K; ++j)
            for (ptrdiff_t r = 0; r < cnt[(n - 1) * K + j]; ++r) {
                vit_ent x = {L[((n - 1) * K + j) * top_k + r].score + c.f[j], j, r};
                if (x.score != -INFINITY) cand[m++] = x;
            }
        qsort(cand, (size_t)m, sizeof *cand, vit_cmp);
        if (m > top_k) m = top_k;
        for (ptrdiff_t q = 0; q < m; ++q) {
            ptrdiff_t j = cand[q].prev, r = cand[q].rank;
            for (ptrdiff_t k = n - 1; k >= 0; --k) {
                pb[q * T + c.pos[k]] = j;
                const vit_ent *x = &L[(k * K + j) * top_k + r];
                j = x->prev;
                r = x->rank;
            }
            sb[q] = crf_score(&c, n, pb + q * T);
        }
    }
    free(L); free(cnt); free(cand);
    ctx_free(&c);
    return FC_OK;
}

/* ---------------------------------------------------------------- MEMM */

/* One direction of the MEMM log-likelihood of the gathered sequence (n >= 1): left to right
 * (rev = 0, conditioning row G[y_{k-1}, :]) or right to left (rev = 1, column G[:, y_{k+1}]).
 * With ge != NULL adds coef (softmax - onehot) to ge (n, K) and to gG (K, K). */
static double memm_dir(ref_ctx *c, ptrdiff_t n, int rev, double coef, double *ge, double *gG)
{
    const ptrdiff_t K = c->K;
    double *z = c->v, ll = 0.0;
    int dead = 0;
    for (ptrdiff_t q = 0; q < n; ++q) {
        const ptrdiff_t k = rev ? n - 1 - q : q;
        const int64_t cond = q == 0 ? -1 : c->y[rev ? k + 1 : k - 1]; /* -1: no conditioning label */
        for (ptrdiff_t j = 0; j < K; ++j) {
            double g = cond < 0 ? 0.0 : rev ? c->G[j * K + cond] : c->G[cond * K + j];
            z[j] = g + c->e[k * K + j];
        }
        const double norm = lse(z, K);
        if (norm == -INFINITY) { dead = 1; continue; }
        ll += z[c->y[k]] - norm;
        if (ge == NULL) continue;
        for (ptrdiff_t j = 0; j < K; ++j) {
            double d = coef * (exp(z[j] - norm) - (c->y[k] == j));
            ge[k * K + j] += d;
            if (cond >= 0) gG[rev ? j * K + cond : cond * K + j] += d;
        }
    }
    return dead ? -INFINITY : ll;
}

int fc_memm_nll_ref(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em,
                    void *g_trans)
{
    if (p == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t B = p->B, T = p->T, K = p->K, T1 = T > 0 ? T : 1;
    const fc_dtype dt = p->dtype;
    if (B < 0 || T < 0 || K < 1 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (p->em == NULL || p->trans == NULL || p->tags == NULL || ll == NULL) return FC_BAD_ARGUMENT;
    const int grad = g_em != NULL || g_trans != NULL;
    if (grad && weight == NULL) return FC_BAD_ARGUMENT;
    ref_ctx c;
    if (ctx_init(&c, p) != FC_OK) return FC_OUT_OF_MEMORY;
    /* ge (T, K) emission gradient of the current sequence, gG (K, K) summed over the batch */
    double *ge = malloc(sizeof(double) * (size_t)(T1 * K)), *gG = calloc((size_t)(K * K), sizeof(double));
    if (!ge || !gG) { free(ge); free(gG); ctx_free(&c); return FC_OUT_OF_MEMORY; }
    for (ptrdiff_t b = 0; b < B; ++b) {
        const ptrdiff_t n = ctx_seq(&c, b, p->em);
        const double coef = grad ? (bidir ? 0.5 : 1.0) * weight[b] : 0.0;
        double *geb = grad ? ge : NULL;
        if (geb) memset(geb, 0, sizeof(double) * (size_t)(T1 * K));
        double l = n > 0 ? memm_dir(&c, n, 0, coef, geb, gG) : 0.0;
        if (bidir && n > 0) l = 0.5 * (l + memm_dir(&c, n, 1, coef, geb, gG));
        ll[b] = l; /* ll (B,) */
        if (g_em == NULL) continue;
        for (ptrdiff_t i = 0; i < T * K; ++i) fc_ref_store(g_em, dt, b * T * K + i, 0.0); /* masked rows: 0 */
        for (ptrdiff_t k = 0; k < n; ++k)
            for (ptrdiff_t j = 0; j < K; ++j) fc_ref_store(g_em, dt, (b * T + c.pos[k]) * K + j, ge[k * K + j]);
    }
    if (g_trans)
        for (ptrdiff_t i = 0; i < K * K; ++i) fc_ref_store(g_trans, dt, i, gG[i]); /* g_trans (K, K) */
    free(ge); free(gG);
    ctx_free(&c);
    return FC_OK;
}

int fc_memm_potentials_ref(const fc_crf_problem *p, double wf, double wb, void *out)
{
    if (p == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t B = p->B, T = p->T, K = p->K;
    const fc_dtype dt = p->dtype;
    if (B < 0 || T < 0 || K < 1 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (p->em == NULL || p->trans == NULL || out == NULL) return FC_BAD_ARGUMENT;
    ref_ctx c;
    if (ctx_init(&c, p) != FC_OK) return FC_OUT_OF_MEMORY;
    double *e = c.e, *u = c.A, *v = c.v;
    for (ptrdiff_t b = 0; b < B; ++b) {
        const ptrdiff_t n = ctx_seq(&c, b, p->em);
        for (ptrdiff_t k = 0; k < n; ++k) { /* e' = e - row max */
            double m = e[k * K];
            for (ptrdiff_t j = 1; j < K; ++j) m = e[k * K + j] > m ? e[k * K + j] : m;
            for (ptrdiff_t j = 0; j < K; ++j) e[k * K + j] -= m;
        }
        for (ptrdiff_t k = 0; k < n; ++k) {
            double *uk = u + k * K;
            const double own = lse(e + k * K, K); /* the first / last position's own normaliser */
            const double wown = (k == 0 ? wf : 0.0) + (k == n - 1 ? wb : 0.0);
            for (ptrdiff_t y = 0; y < K; ++y) uk[y] = e[k * K + y] - wown * own;
            if (k < n - 1 && wf != 0.0) /* forward normaliser of k+1 given y at k */
                for (ptrdiff_t y = 0; y < K; ++y) {
                    for (ptrdiff_t j = 0; j < K; ++j) v[j] = c.G[y * K + j] + e[(k + 1) * K + j];
                    const double l = lse(v, K);
                    uk[y] = l == -INFINITY ? -INFINITY : uk[y] - wf * l;
                }
            if (k > 0 && wb != 0.0) /* backward normaliser of k-1 given y at k */
                for (ptrdiff_t y = 0; y < K; ++y) {
                    for (ptrdiff_t a = 0; a < K; ++a) v[a] = c.G[a * K + y] + e[(k - 1) * K + a];
                    const double l = lse(v, K);
                    uk[y] = l == -INFINITY ? -INFINITY : uk[y] - wb * l;
                }
        }
        for (ptrdiff_t i = 0; i < T * K; ++i) fc_ref_store(out, dt, b * T * K + i, 0.0); /* masked rows: 0 */
        for (ptrdiff_t k = 0; k < n; ++k)
            for (ptrdiff_t y = 0; y < K; ++y) fc_ref_store(out, dt, (b * T + c.pos[k]) * K + y, u[k * K + y]);
    }
    ctx_free(&c);
    return FC_OK;
}

/* ---------------------------------------------------------------- input check */

int fc_crf_check_ref(const fc_crf_problem *p)
{
    if (p == NULL || fc_ref_bad_dtype(p->dtype)) return -1;
    const ptrdiff_t B = p->B, T = p->T, K = p->K;
    const fc_dtype dt = p->dtype;
    if (B < 0 || T < 0 || K < 0 || p->n_threads < 1) return -1;
    int bad = 0;
    for (ptrdiff_t i = 0; p->em && i < B * T * K; ++i)
        if (!isfinite(fc_ref_load(p->em, dt, i))) bad |= 1;        /* em: NaN or +-inf */
    const void *tabs[3] = {p->trans, p->start, p->end};
    const ptrdiff_t sizes[3] = {K * K, K, K};
    for (int a = 0; a < 3; ++a)
        for (ptrdiff_t i = 0; tabs[a] && i < sizes[a]; ++i) {
            double x = fc_ref_load(tabs[a], dt, i);
            if (isnan(x) || x == INFINITY) bad |= 2;       /* tables: NaN or +inf (-inf allowed) */
        }
    for (ptrdiff_t i = 0; p->tags && i < B * T; ++i)
        if ((p->mask == NULL || p->mask[i]) && (p->tags[i] < 0 || p->tags[i] >= K)) bad |= 4;
    return bad;
}
