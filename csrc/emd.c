/* Network simplex for the transportation problem, batched solves and document
 * distances (WMD / WRD) with k-NN pruning.  See emd.h for the method. */
#include "emd.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fc_math.h"
#include "fc_parallel.h"
#include "fc_simd.h"

#if defined(__GNUC__) && !defined(__clang__)
/* the 32-byte vector helpers below are always inlined: no ABI is involved */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

/* ------------------------------------------------------------------ sorting */
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

/* ------------------------------------------------------------------ vector helpers */
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

/* ------------------------------------------------------------------ solver state */
typedef struct {
    ptrdiff_t n, m;   /* compacted sizes; nodes 0..n-1 sources, n..n+m-1 sinks, n+m root */
    const double *C;  /* (n, m) costs, row stride ldc */
    ptrdiff_t ldc;
    int32_t *parent, *succ;           /* parent node, subtree sizes */
    int32_t *thread, *rev, *last;      /* preorder successor / predecessor, last node of the subtree */
    int32_t *first_child, *next_sib;   /* child lists, only while building the first tree */
    int32_t *pbuf;                     /* 4 (N + 1) scratch for pivots */
    double *flow;     /* flow on the arc between a node and its parent */
    double *pi;       /* node potentials: reduced cost of arc s->t is c + pi[s] - pi[t] */
    double cmax;      /* max |C| */
    double eps;       /* entering threshold: reduced cost < -eps */
    long long iters;
    /* working set of candidate arcs (with their costs, so pricing reads them in order) */
    struct fc_arc *W;
    ptrdiff_t nw, wcap, wpos, wblock;
    int w_all;        /* W holds every arc: no full scans needed */
    long long n_scans;
} fc_ns;

typedef struct fc_arc {
    int32_t i, j;
    double c;
} fc_arc;

static int ns_w_reserve(fc_ns *s, ptrdiff_t extra)
{
    if (s->nw + extra <= s->wcap) return FC_OK;
    ptrdiff_t cap = s->wcap * 2 > s->nw + extra ? s->wcap * 2 : s->nw + extra;
    fc_arc *w = realloc(s->W, sizeof(fc_arc) * (size_t)cap);
    if (!w) return FC_OUT_OF_MEMORY;
    s->W = w;
    s->wcap = cap;
    return FC_OK;
}

FC_INLINE void ns_w_push(fc_ns *s, int32_t i, int32_t j, double c)
{
    fc_arc *e = &s->W[s->nw++];
    e->i = i; e->j = j; e->c = c;
}

#define NS_ROOT(s) ((int32_t)((s)->n + (s)->m))

FC_INLINE double ns_arc_cost(const fc_ns *s, int32_t u, int32_t p)
{
    int32_t n = (int32_t)s->n;
    if (p == NS_ROOT(s)) return 0.0;
    if (u < n) return s->C[(ptrdiff_t)u * s->ldc + (p - n)];
    return s->C[(ptrdiff_t)p * s->ldc + (u - n)];
}

/* potential of u from its parent's (tree arc has zero reduced cost) */
FC_INLINE double ns_child_pi(const fc_ns *s, int32_t u, int32_t p)
{
    if (p == NS_ROOT(s)) return s->pi[p];
    double c = ns_arc_cost(s, u, p);
    return u < (int32_t)s->n ? s->pi[p] - c : s->pi[p] + c;
}

FC_INLINE void ns_link(fc_ns *s, int32_t v, int32_t p)
{
    s->next_sib[v] = s->first_child[p];
    s->first_child[p] = v;
    s->parent[v] = p;
}

FC_INLINE void th_link(fc_ns *s, int32_t x, int32_t y)
{
    s->thread[x] = y;
    s->rev[y] = x;
}

/* pi += shift on the subtree of top (a contiguous piece of the preorder thread) */
static void ns_shift_subtree(fc_ns *s, int32_t top, double shift)
{
    int32_t u = top, stop = s->last[top];
    for (;;) {
        s->pi[u] += shift;
        if (u == stop) return;
        u = s->thread[u];
    }
}

/* pi += shift on every node outside the subtree of skip (the root included) */
static void ns_shift_complement(fc_ns *s, int32_t skip, double shift)
{
    int32_t R = NS_ROOT(s), u = R;
    for (;;) {
        if (u == skip) {
            u = s->thread[s->last[skip]];
            if (u == R) return;
            continue;
        }
        s->pi[u] += shift;
        u = s->thread[u];
        if (u == R) return;
    }
}

static void ns_recompute_potentials(fc_ns *s)
{
    int32_t r = NS_ROOT(s);
    s->pi[r] = 0.0;
    for (int32_t u = s->thread[r]; u != r; u = s->thread[u]) s->pi[u] = ns_child_pi(s, u, s->parent[u]);
    double pmax = 0.0;
    for (int32_t u = 0; u < r; u++) {
        double a = fabs(s->pi[u]);
        pmax = a > pmax ? a : pmax;
    }
    /* rounding noise of c + pi_s - pi_t is a few ulps of the largest term */
    s->eps = 0x1p-42 * (s->cmax + pmax);
}

/* ------------------------------------------------------------------ initial tree */
#ifndef GREEDY_K
#define GREEDY_K 8   /* cheapest entries per row kept in round 1 (greedy candidates and W) */
#endif
#define GREEDY_K2 4  /* per row in later rounds */
#ifndef ROW_BLOCK_FACTOR
#define ROW_BLOCK_FACTOR 1.0
#endif
#ifndef ROW_BLOCK_FACTOR_SMALL
#define ROW_BLOCK_FACTOR_SMALL 8.0
#endif
#ifndef GREEDY_MIN_CLOSE
#define GREEDY_MIN_CLOSE 16 /* a greedy round that closes under 1/16 of the open rows and columns is the last */
#endif
#ifndef GREEDY_K_SMALL
#define GREEDY_K_SMALL 1 /* per row when whole rows are priced (small problems) */
#endif
#ifndef SCAN_ADD
#define SCAN_ADD 4   /* most negative arcs per row added to W by a full scan */
#endif
#ifndef W_BLOCK_FACTOR
#define W_BLOCK_FACTOR 1.0
#endif

/* First greedy round of small problems (every row and column active, one candidate per
 * row): the minimum of each row (lowest column among ties) into cand[i], the minimum of
 * each column (lowest row among ties) into colmin / colarg.  4-wide and branch-free:
 * the same answers as the scalar loop. */
static FC_MULTIVERSION void greedy_scan_full(const double *C, ptrdiff_t ldc, ptrdiff_t n, ptrdiff_t m,
                                             fc_cand *cand, double *colmin, int32_t *colarg, double *colargd)
{
#if FC_VECTOR_EXT
    const fc_v4d four = {4, 4, 4, 4}, pinf = {INFINITY, INFINITY, INFINITY, INFINITY};
#endif
    for (ptrdiff_t q = 0; q < m; q++) { colmin[q] = INFINITY; colargd[q] = -1.0; }
    for (ptrdiff_t i = 0; i < n; i++) {
        const double *Ci = C + i * ldc;
        double di = (double)i;
        ptrdiff_t q = 0;
#if FC_VECTOR_EXT
        fc_v4d vi = {di, di, di, di}, b4 = pinf, bq4 = {0, 0, 0, 0}, jx = {0, 1, 2, 3};
        for (; q + 4 <= m; q += 4, jx += four) {
            fc_v4d c = v4_load(Ci + q), cm = v4_load(colmin + q), ca = v4_load(colargd + q);
            fc_v4l lt = c < cm, lb = c < b4;
            cm = (fc_v4d)(((fc_v4l)c & lt) | ((fc_v4l)cm & ~lt));
            ca = (fc_v4d)(((fc_v4l)vi & lt) | ((fc_v4l)ca & ~lt));
            memcpy(colmin + q, &cm, sizeof cm);
            memcpy(colargd + q, &ca, sizeof ca);
            b4 = (fc_v4d)(((fc_v4l)c & lb) | ((fc_v4l)b4 & ~lb));
            bq4 = (fc_v4d)(((fc_v4l)jx & lb) | ((fc_v4l)bq4 & ~lb));
        }
#else
        double b4[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, bq4[4] = {0, 0, 0, 0};
#endif
        /* lanes: lowest value, then lowest column; the tail columns come after them */
        double best = INFINITY, bq = 0.0;
        for (int l = 0; l < 4; l++) {
            int better = b4[l] < best || (b4[l] == best && bq4[l] < bq);
            best = better ? b4[l] : best;
            bq = better ? bq4[l] : bq;
        }
        for (; q < m; q++) {
            double c = Ci[q];
            int lt = c < colmin[q], lb = c < best;
            colmin[q] = lt ? c : colmin[q];
            colargd[q] = lt ? di : colargd[q];
            best = lb ? c : best;
            bq = lb ? (double)q : bq;
        }
        cand[i].c = best; cand[i].i = (int32_t)i; cand[i].j = (int32_t)bq;
    }
    for (ptrdiff_t q = 0; q < m; q++) colarg[q] = (int32_t)colargd[q];
}

/* Greedy matrix-minimum allocation on the cheapest K entries of each active row and the
 * cheapest entry of each active column, repeated on what is left.  Every allocation
 * exhausts a row or a column, so the positive allocations form a forest. */
static int ns_greedy(fc_ns *s, const double *a, const double *b, int32_t *ei, int32_t *ej, double *ef,
                     ptrdiff_t *n_edges)
{
    ptrdiff_t n = s->n, m = s->m, ne = 0;
    int32_t K = s->w_all ? GREEDY_K_SMALL : GREEDY_K;
    int first_round = 1;
    /* one block: cand (n K + m + 1), ra/rb (n + m), colmin (m), rows/cols (n + m), colarg (m) */
    ptrdiff_t ncand = s->w_all ? n * K + m + 1 : 0; /* sort keys: small problems only */
    fc_cand *cand = malloc(sizeof(fc_cand) * (size_t)(n * K + m + 1) + sizeof(uint64_t) * (size_t)ncand +
                           sizeof(double) * (size_t)(n + 3 * m) + sizeof(int32_t) * (size_t)(n + 2 * m));
    if (!cand) return FC_OUT_OF_MEMORY;
    uint64_t *keybuf = (uint64_t *)(cand + (n * K + m + 1));
    double *ra = (double *)(keybuf + ncand), *colmin = ra + n + m, *colargd = colmin + m;
    int32_t *rows = (int32_t *)(colargd + m), *colarg = rows + n + m;
    double *rb = ra + n;
    int32_t *cols = rows + n;
    memcpy(ra, a, sizeof(double) * (size_t)n);
    memcpy(rb, b, sizeof(double) * (size_t)m);
    ptrdiff_t nr = n, nc = m;
    for (ptrdiff_t i = 0; i < n; i++) rows[i] = (int32_t)i;
    for (ptrdiff_t j = 0; j < m; j++) cols[j] = (int32_t)j;

    while (nr > 0 && nc > 0) {
        if (fc_interrupted()) { /* Ctrl-C: a round scans every remaining cost once */
            free(cand);
            return FC_INTERRUPTED;
        }
        ptrdiff_t kk = nc < K ? nc : K, nca = 0;
        for (ptrdiff_t q = 0; q < nc; q++) { colmin[q] = INFINITY; colarg[q] = -1; }
        if (kk == 1 && nr == n && nc == m) {
            greedy_scan_full(s->C, s->ldc, n, m, cand, colmin, colarg, colargd);
            nca = n;
        }
        for (ptrdiff_t p = nca; p < nr; p++) {
            int32_t i = rows[p];
            const double *Ci = s->C + (ptrdiff_t)i * s->ldc;
            fc_cand *top = cand + nca;  /* sorted ascending, kk slots */
            ptrdiff_t nt = 0;
            if (kk == 1) {
                /* branch-free: which entry wins is unpredictable */
                double best = INFINITY;
                ptrdiff_t bq = 0;
                for (ptrdiff_t q = 0; q < nc; q++) {
                    double c = nc == m ? Ci[q] : Ci[cols[q]];
                    int lt = c < colmin[q], lb = c < best;
                    colmin[q] = lt ? c : colmin[q];
                    colarg[q] = lt ? i : colarg[q];
                    best = lb ? c : best;
                    bq = lb ? q : bq;
                }
                top[0].c = best; top[0].i = i; top[0].j = cols[bq];
                nca += 1;
                continue;
            }
            for (ptrdiff_t q = 0; q < nc; q++) {
                double c = nc == m ? Ci[q] : Ci[cols[q]];
                if (c < colmin[q]) { colmin[q] = c; colarg[q] = i; }
                if (nt < kk || c < top[kk - 1].c) {
                    ptrdiff_t t = nt < kk ? nt++ : kk - 1;
                    while (t > 0 && top[t - 1].c > c) { top[t] = top[t - 1]; t--; }
                    top[t].c = c; top[t].i = i; top[t].j = cols[q];
                }
            }
            nca += nt;
        }
        for (ptrdiff_t q = 0; q < nc; q++) {
            cand[nca].c = colmin[q]; cand[nca].i = colarg[q]; cand[nca].j = cols[q];
            nca++;
        }
        if (first_round && !s->w_all) {
            if (ns_w_reserve(s, nca) != FC_OK) {
                free(cand);
                return FC_OUT_OF_MEMORY;
            }
            for (ptrdiff_t t = 0; t < nca; t++) ns_w_push(s, cand[t].i, cand[t].j, cand[t].c);
        }
        first_round = 0;
        K = K < GREEDY_K2 ? K : GREEDY_K2;
        /* small problems: keys = cost with its low 12 bits replaced by the candidate's
         * index (any order gives a feasible start; this one is by cost to ~2^-40) */
        uint64_t *keys = s->w_all && nca <= 4096 ? keybuf : NULL;
        if (keys) {
            for (ptrdiff_t t = 0; t < nca; t++) keys[t] = (order_key(cand[t].c) & ~0xfffull) | (uint64_t)t;
            key_sort(keys, nca);
        } else {
            cand_sort(cand, nca);
        }
        for (ptrdiff_t tt = 0; tt < nca; tt++) {
            ptrdiff_t t = keys ? (ptrdiff_t)(keys[tt] & 0xfff) : tt;
            int32_t i = cand[t].i, j = cand[t].j;
            double x = ra[i], y = rb[j];
            if (x <= 0.0 || y <= 0.0) continue;
            double f;
            if (x <= y) { f = x; ra[i] = 0.0; rb[j] = y - x; }
            else { f = y; rb[j] = 0.0; ra[i] = x - y; }
            if (rb[j] <= 0.0) rb[j] = 0.0;
            ei[ne] = i; ej[ne] = j; ef[ne] = f; ne++;
            if (ne >= n + m) break; /* cannot happen: a forest has < n + m edges */
        }
        ptrdiff_t w = 0, open0 = nr + nc;
        for (ptrdiff_t p = 0; p < nr; p++) if (ra[rows[p]] > 0.0) rows[w++] = rows[p];
        nr = w;
        w = 0;
        for (ptrdiff_t q = 0; q < nc; q++) if (rb[cols[q]] > 0.0) cols[w++] = cols[q];
        nc = w;
        if (nr > 0 && nc > 0 && (open0 - nr - nc) * GREEDY_MIN_CLOSE < open0) {
            /* slow progress (everyone wants the same few cheap cells, e.g. shifted clouds: one
             * round per ~1% of the rows, each a scan of what is left): pair what is left in
             * order instead (north-west corner).  Every edge here and above joins two open
             * nodes and closes one, so each component keeps at most one open node and the
             * edges stay a forest. */
            for (ptrdiff_t p = 0, q = 0; p < nr && q < nc && ne < n + m;) {
                int32_t i = rows[p], j = cols[q];
                double x = ra[i], y = rb[j], f = x <= y ? x : y;
                ei[ne] = i; ej[ne] = j; ef[ne] = f; ne++;
                if (x <= y) { ra[i] = 0.0; rb[j] = y - x > 0.0 ? y - x : 0.0; p++; }
                else { rb[j] = 0.0; ra[i] = x - y; q++; }
                if (q < nc && rb[cols[q]] <= 0.0 && x <= y) q++;
            }
            break;
        }
    }
    free(cand);
    *n_edges = ne;
    return FC_OK;
}

/* Build the tree: each component of the forest is hung from the root by a zero-flow arc
 * that points to the root (such arcs can never carry flow: the root has no supply and no
 * outgoing arcs), so the tree is strongly feasible. */
static int ns_build_tree(fc_ns *s, const int32_t *ei, const int32_t *ej, const double *ef, ptrdiff_t ne)
{
    int32_t n = (int32_t)s->n, N = (int32_t)(s->n + s->m), R = N;
    /* one block: adjf (2 ne + 1 doubles), deg (N + 1), adj (2 ne + 1), queue (N + 1) */
    double *adjf = malloc(sizeof(double) * (size_t)(2 * ne + 1) + sizeof(int32_t) * (size_t)(2 * N + 2 * ne + 3));
    if (!adjf) return FC_OUT_OF_MEMORY;
    int32_t *deg = (int32_t *)(adjf + 2 * ne + 1), *adj = deg + N + 1, *queue = adj + 2 * ne + 1;
    memset(deg, 0, sizeof(int32_t) * ((size_t)N + 1));
    for (ptrdiff_t e = 0; e < ne; e++) { deg[ei[e] + 1]++; deg[n + ej[e] + 1]++; }
    for (int32_t u = 0; u < N; u++) deg[u + 1] += deg[u];
    int32_t *pos = queue; /* reuse as fill cursor */
    for (int32_t u = 0; u < N; u++) pos[u] = deg[u];
    for (ptrdiff_t e = 0; e < ne; e++) {
        int32_t x = ei[e], y = n + ej[e];
        adj[pos[x]] = y; adjf[pos[x]++] = ef[e];
        adj[pos[y]] = x; adjf[pos[y]++] = ef[e];
    }
    for (int32_t u = 0; u <= N; u++) {
        s->parent[u] = -2; s->first_child[u] = -1; s->next_sib[u] = -1;
    }
    s->parent[R] = -1;
    s->pi[R] = 0.0;
    s->flow[R] = 0.0;
    int32_t qh = 0, qt = 0; /* BFS order over all components */
    for (int32_t r0 = 0; r0 < N; r0++) {
        if (s->parent[r0] != -2) continue;
        ns_link(s, r0, R);
        s->flow[r0] = 0.0;
        queue[qt++] = r0;
        while (qh < qt) {
            int32_t u = queue[qh++];
            for (int32_t t = deg[u]; t < deg[u + 1]; t++) {
                int32_t w = adj[t];
                if (s->parent[w] != -2) continue;
                ns_link(s, w, u);
                s->flow[w] = adjf[t];
                queue[qt++] = w;
            }
        }
    }
    for (int32_t u = 0; u <= N; u++) s->succ[u] = 1;
    for (int32_t t = qt - 1; t >= 0; t--) s->succ[s->parent[queue[t]]] += s->succ[queue[t]];
    /* preorder thread from the child lists; last[u] = order[index(u) + succ(u) - 1] */
    {
        int32_t *order = s->pbuf, *index = s->pbuf + (N + 1), k = 0, u = R, prev = R;
        for (;;) {
            order[k] = u; index[u] = k++;
            if (u != R) th_link(s, prev, u);
            prev = u;
            int32_t c = s->first_child[u];
            if (c >= 0) { u = c; continue; }
            while (u != R && s->next_sib[u] < 0) u = s->parent[u];
            if (u == R) break;
            u = s->next_sib[u];
        }
        th_link(s, prev, R);
        for (int32_t x = 0; x <= N; x++) s->last[x] = order[index[x] + s->succ[x] - 1];
    }
    free(adjf);
    ns_recompute_potentials(s);
    return FC_OK;
}

/* ------------------------------------------------------------------ pivoting */
FC_INLINE int ns_dir_up(const fc_ns *s, int32_t u)
{
    return u < (int32_t)s->n || s->parent[u] == NS_ROOT(s);
}

/* Pivot arc (i -> n + j) with reduced cost rc < 0 into the tree. */
static int ns_pivot(fc_ns *s, int32_t i, int32_t j, double rc)
{
    int32_t first = i, second = (int32_t)s->n + j;
    int32_t *parent = s->parent, *succ = s->succ;
    int32_t u = first, w = second;
    while (u != w) {  /* an ancestor has a strictly larger subtree */
        if (succ[u] < succ[w]) u = parent[u];
        else w = parent[w];
    }
    int32_t join = u;

    /* Cunningham: last blocking arc met going round the cycle from the apex in the
     * direction of the entering arc (second side preferred, ties to the apex). */
    double delta = INFINITY;
    int32_t u_out = -1, side = 0;
    for (u = first; u != join; u = parent[u]) {
        if (ns_dir_up(s, u) && s->flow[u] < delta) { delta = s->flow[u]; u_out = u; side = 1; }
    }
    for (u = second; u != join; u = parent[u]) {
        if (!ns_dir_up(s, u) && s->flow[u] <= delta) { delta = s->flow[u]; u_out = u; side = 2; }
    }
    if (u_out < 0) return FC_INTERNAL;
    if (delta > 0.0) {
        for (u = first; u != join; u = parent[u]) s->flow[u] += ns_dir_up(s, u) ? -delta : delta;
        for (u = second; u != join; u = parent[u]) s->flow[u] += ns_dir_up(s, u) ? delta : -delta;
    }
    s->flow[u_out] = 0.0;

    /* Re-hang the subtree S cut off at u_out: reverse the path p0 = v_0 .. v_t = u_out. */
    int32_t p0 = side == 1 ? first : second, q = side == 1 ? second : first;
    int32_t sz = succ[u_out];
    int32_t *thread = s->thread, *rev = s->rev, *last = s->last;
    /* (1) old thread values along the path, read before any write:
     * piece of v_0: [v_0 .. last(v_0)]; piece of v_k: [v_k .. rev(v_{k-1})] and, unless
     * empty, [thread(last(v_{k-1})) .. last(v_k)]: its old subtree minus v_{k-1}'s. */
    int32_t N1 = (int32_t)(s->n + s->m + 1);
    int32_t *path = s->pbuf, *a_end = s->pbuf + N1, *b_start = s->pbuf + 2 * N1, *b_end = s->pbuf + 3 * N1;
    int32_t t = 0;
    for (int32_t v = p0;; v = parent[v]) {
        path[t] = v;
        if (t > 0) {
            int32_t prevv = path[t - 1];
            a_end[t] = rev[prevv];
            b_start[t] = last[prevv] == last[v] ? -1 : thread[last[prevv]];
            b_end[t] = last[v];
        }
        if (v == u_out) break;
        t++;
    }
    int32_t s_last_old = last[u_out], before = rev[u_out], after = thread[s_last_old];
    /* (2) the new preorder of S */
    int32_t tail = last[p0];
    for (int32_t k = 1; k <= t; k++) {
        th_link(s, tail, path[k]);
        tail = a_end[k];
        if (b_start[k] >= 0) { th_link(s, tail, b_start[k]); tail = b_end[k]; }
    }
    int32_t s_end = tail;
    /* (3) cut S out of the old place; ancestors that ended with S now end before it */
    th_link(s, before, after);
    for (int32_t x = parent[u_out]; x >= 0 && last[x] == s_last_old; x = parent[x]) last[x] = before;
    /* (4) insert S right after q (as its first child) */
    int32_t nq = thread[q];
    th_link(s, q, p0);
    th_link(s, s_end, nq);
    if (last[q] == q)
        for (int32_t x = q; x >= 0 && last[x] == q; x = parent[x]) last[x] = s_end;
    for (int32_t k = 0; k <= t; k++) last[path[k]] = s_end;

    /* subtree sizes: ancestors of u_out lose S, q and its ancestors gain it (up to join) */
    for (u = parent[u_out]; u != join; u = parent[u]) succ[u] -= sz;
    for (u = q; u != join; u = parent[u]) succ[u] += sz;
    int32_t v = p0, newpar = q, prev_old = 0;
    double newflow = delta;
    for (;;) {
        int32_t oldpar = parent[v], old_size = succ[v];
        double oldflow = s->flow[v];
        parent[v] = newpar;
        s->flow[v] = newflow;
        succ[v] = sz - prev_old;  /* new size along the reversed path */
        if (v == u_out) break;
        prev_old = old_size;
        newpar = v;
        newflow = oldflow;
        v = oldpar;
    }
    /* make the entering arc's reduced cost zero: shift the smaller side */
    double shift = side == 1 ? -rc : rc;
    if (2 * (ptrdiff_t)sz <= s->n + s->m + 1) ns_shift_subtree(s, p0, shift);
    else ns_shift_complement(s, p0, -shift);
    return FC_OK;
}

FC_INLINE int ns_is_tree_arc(const fc_ns *s, int32_t i, int32_t j)
{
    int32_t jn = (int32_t)s->n + j;
    return s->parent[i] == jn || s->parent[jn] == i;
}

/* Block search over the working set W: the most negative reduced cost in the first block
 * (of wblock arcs, cyclically from the last position) that has one.  1 if found. */
static FC_MULTIVERSION int ns_price_w(fc_ns *s, int32_t *bi, int32_t *bj, double *brc)
{
    ptrdiff_t nw = s->nw, B = s->wblock, pos = s->wpos, cnt = 0, bk = -1;
    const fc_arc *W = s->W;
    const double *pi = s->pi, *pv = s->pi + s->n;
    double best = -s->eps;
    for (ptrdiff_t t = 0; t < nw; t++) {
        const fc_arc *e = &W[pos];
        double rc = (e->c + pi[e->i]) - pv[e->j];
        if (rc < best) { best = rc; bk = pos; }
        if (++pos == nw) pos = 0;
        if (++cnt == B) {
            if (bk >= 0) break;
            cnt = 0;
        }
    }
    s->wpos = pos;
    if (bk < 0) return 0;
    *bi = W[bk].i; *bj = W[bk].j; *brc = best;
    return 1;
}

/* Full pricing pass over M with the current potentials: for every row whose minimum
 * reduced cost is < -eps, add its SCAN_ADD most negative arcs to W.  Returns the number
 * added (0 = optimal), or -1 when out of memory. */
static FC_MULTIVERSION ptrdiff_t ns_full_scan(fc_ns *s)
{
    ptrdiff_t n = s->n, m = s->m, added = 0;
    const double *pv = s->pi + n;
    s->n_scans++;
    for (ptrdiff_t i = 0; i < n; i++) {
        const double *Ci = s->C + i * s->ldc;
        double pii = s->pi[i];
        if (row_min_diff(Ci, pv, m) + pii >= -s->eps) continue;
        double tv[SCAN_ADD];
        int32_t tj[SCAN_ADD];
        int nt = 0;
        for (ptrdiff_t j = 0; j < m; j++) {
            double rc = (Ci[j] - pv[j]) + pii;
            if (rc < -s->eps && (nt < SCAN_ADD || rc < tv[SCAN_ADD - 1])) {
                if (ns_is_tree_arc(s, (int32_t)i, (int32_t)j)) continue;
                int t = nt < SCAN_ADD ? nt++ : SCAN_ADD - 1;
                while (t > 0 && tv[t - 1] > rc) { tv[t] = tv[t - 1]; tj[t] = tj[t - 1]; t--; }
                tv[t] = rc; tj[t] = (int32_t)j;
            }
        }
        if (nt == 0) continue;
        if (ns_w_reserve(s, nt) != FC_OK) return -1;
        for (int t = 0; t < nt; t++) ns_w_push(s, (int32_t)i, tj[t], Ci[tj[t]]);
        added += nt;
    }
    return added;
}

/* Small problems: block search over whole rows of M (vectorised row minimum), block of
 * `block` entries.  1 if an arc with reduced cost < -eps was found. */
static FC_MULTIVERSION int ns_price_rows(fc_ns *s, ptrdiff_t *row_ptr, ptrdiff_t block, int32_t *bi, int32_t *bj,
                                         double *brc)
{
    ptrdiff_t n = s->n, m = s->m, r = *row_ptr, scanned = 0;
    const double *pv = s->pi + n;
    double best = -s->eps;
    int32_t ii = -1, jj = -1;
    for (ptrdiff_t seen = 0; seen < n; seen++) {
        const double *Ci = s->C + r * s->ldc;
        double target = row_min_diff(Ci, pv, m);
        double mn = target + s->pi[r];
        if (mn < best) {
            int32_t j = 0;
            while (j < m && (Ci[j] - pv[j]) != target) j++;
            if (j < m) { best = mn; ii = (int32_t)r; jj = j; }
        }
        scanned += m;
        r = r + 1 == n ? 0 : r + 1;
        if (ii >= 0 && scanned >= block) break;
    }
    *row_ptr = r;
    if (ii < 0) return 0;
    *bi = ii; *bj = jj; *brc = best;
    return 1;
}

static void ns_set_block(fc_ns *s)
{
    ptrdiff_t B = (ptrdiff_t)(W_BLOCK_FACTOR * sqrt((double)s->nw));
    s->wblock = B < 16 ? 16 : B;
}

/* Solve the compacted problem (all masses > 0).  Fills s->flow/parent/pi. */
static int ns_solve(fc_ns *s, const double *a, const double *b, long long max_iter)
{
    ptrdiff_t n = s->n, m = s->m, N = n + m;
    int status = FC_OK;
    double cmax = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) {
        double x = row_max_abs(s->C + i * s->ldc, m);
        if (!(x >= 0.0)) return FC_NON_FINITE;
        cmax = x > cmax ? x : cmax;
    }
    s->cmax = cmax;
    double *ef = malloc((sizeof(double) + 2 * sizeof(int32_t)) * (size_t)N);
    if (!ef) return FC_OUT_OF_MEMORY;
    int32_t *ei = (int32_t *)(ef + N);
    ptrdiff_t ne = 0;
    s->W = NULL; s->nw = 0; s->wcap = 0; s->wpos = 0; s->n_scans = 0;
    s->w_all = n * m <= 4096 || n * m <= (GREEDY_K + 2) * (n + m);
    status = ns_greedy(s, a, b, ei, ei + N, ef, &ne);
    if (status == FC_OK) status = ns_build_tree(s, ei, ei + N, ef, ne);
    free(ef);
    if (status != FC_OK) return status;

    ns_set_block(s);
    /* small problems: larger blocks (fewer pivots: 66 -> 44 on 26 x 31 WMD problems, a
     * whole scan costs less than a pivot there) */
    double bf = n * m <= 4096 ? ROW_BLOCK_FACTOR_SMALL : ROW_BLOCK_FACTOR;
    ptrdiff_t row_ptr = 0, rblock = (ptrdiff_t)(bf * sqrt((double)n * (double)m));
    long long it = 0;
    int verified = 0, tree_guard = 0;
    const long long refresh = 4096;
    for (;;) {
        int32_t bi, bj;
        double rc;
        int found = s->w_all ? ns_price_rows(s, &row_ptr, rblock, &bi, &bj, &rc) : ns_price_w(s, &bi, &bj, &rc);
        if (!found) {
            if (s->w_all && verified) break;
            ns_recompute_potentials(s);
            if (s->w_all) { verified = 1; continue; }
            ptrdiff_t added = ns_full_scan(s);
            if (added < 0) { status = FC_OUT_OF_MEMORY; break; }
            if (added == 0) break;
            /* W keeps missing many good arcs (the optimum is not local, e.g. shifted
             * clouds): price whole rows from now on */
            if (added > n + m || (s->n_scans >= 2 && 2 * added > n + m)) s->w_all = 1;
            ns_set_block(s);
            continue;
        }
        verified = 0;
        if (ns_is_tree_arc(s, bi, bj)) {
            /* potentials drifted: refresh them (then tree arcs price to ~0) */
            if (++tree_guard > 2) { status = FC_INTERNAL; break; }
            ns_recompute_potentials(s);
            continue;
        }
        tree_guard = 0;
        if (max_iter > 0 && it >= max_iter) { status = FC_MAX_ITER_REACHED; break; }
        status = ns_pivot(s, bi, bj, rc);
        if (status != FC_OK) break;
        it++;
        if (it % refresh == 0) ns_recompute_potentials(s);
        if (it % 1024 == 0 && fc_interrupted()) { status = FC_INTERRUPTED; break; } /* Ctrl-C */
    }
    s->iters = it;
    return status;
}

/* ------------------------------------------------------------------ square, uniform masses */
#ifndef LSAP_MAX
#define LSAP_MAX 256 /* largest n solved as an assignment problem: measured 1.5-6x faster than the
                       * simplex up to 256 on uniform, shifted and d=64 clouds, 0.75x on shifted 2-D
                       * clouds at 512 */
#endif

/* n x n problems whose masses are all equal (after compaction and rescaling) are
 * assignment problems: the transportation polytope is then n-times the Birkhoff
 * polytope, whose vertices are permutations.  Shortest augmenting paths (Dijkstra on
 * reduced costs with dual potentials, one row at a time, O(n^3) worst case) solve them
 * without the long runs of degenerate pivots the simplex makes on such problems.
 * The Dijkstra step is branch-free over all n columns (4-wide): finished columns
 * hold dist = -inf, so they are never updated and never picked again.
 * work: 6 n doubles, 4 n int32.  Writes the optimal column of each row to col4row. */
static FC_MULTIVERSION int lsap_solve(ptrdiff_t n, const double *C, ptrdiff_t ldc, int32_t *col4row,
                                      double *dwork, int32_t *iwork)
{
    double *u = dwork, *v = u + n, *dist = v + n, *fin = dist + n, *pred = fin + n, *busy = pred + n;
    int32_t *row4col = iwork, *rows_seen = iwork + n, *cols_seen = iwork + 2 * n;
#if FC_VECTOR_EXT
    const fc_v4d ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    const fc_v4d pinf = {INFINITY, INFINITY, INFINITY, INFINITY};
#endif
    for (ptrdiff_t t = 0; t < n; t++) { u[t] = 0.0; v[t] = 0.0; busy[t] = 0.0; pred[t] = 0.0; }
    for (ptrdiff_t t = 0; t < n; t++) { row4col[t] = -1; col4row[t] = -1; }
    /* column reduction (as in Jonker-Volgenant): v_j = min_i C_ij keeps the duals
     * feasible with u = 0; column j goes to its cheapest row when that row is free */
    uint64_t bad = 0;  /* bit 63 set once an exponent field is all ones (inf or NaN) */
    for (ptrdiff_t j = 0; j < n; j++) v[j] = INFINITY;
    for (ptrdiff_t i = n - 1; i >= 0; i--) {
        const double *Ci = C + i * ldc;
        for (ptrdiff_t j = 0; j < n; j++) {
            uint64_t bits;
            memcpy(&bits, Ci + j, sizeof bits);
            bad |= (bits & 0x7ff0000000000000ull) + 0x0010000000000000ull;
            int lt = Ci[j] < v[j];
            v[j] = lt ? Ci[j] : v[j];
            pred[j] = lt ? (double)i : pred[j];
        }
    }
    if (bad >> 63) return FC_NON_FINITE;
    for (int32_t j = 0; j < (int32_t)n; j++) {
        int32_t i = (int32_t)pred[j];
        if (col4row[i] < 0) { col4row[i] = j; row4col[j] = i; busy[j] = INFINITY; }
    }
    for (int32_t r0 = 0; r0 < (int32_t)n; r0++) {
        if (col4row[r0] >= 0) continue;
        int32_t nrs = 0, ncs = 0, i = r0, sink = -1;
        for (ptrdiff_t t = 0; t < n; t++) dist[t] = INFINITY;
        double dmin = 0.0;
        while (sink < 0) {
            rows_seen[nrs++] = i;
            const double *Ci = C + (ptrdiff_t)i * ldc;
            double base = dmin - u[i], di = (double)i;
            ptrdiff_t j = 0;
#if FC_VECTOR_EXT
            fc_v4d vb = {base, base, base, base}, vi = {di, di, di, di}, lo4 = pinf, lf4 = pinf;
            fc_v4d jx = {0, 1, 2, 3}, at4 = {-1, -1, -1, -1}, af4 = at4;
            const fc_v4d four = {4, 4, 4, 4};
            for (; j + 4 <= n; j += 4, jx += four) {
                fc_v4d r = vb + v4_load(Ci + j) - v4_load(v + j), d = v4_load(dist + j), p = v4_load(pred + j);
                fc_v4l up = r < d;
                d = (fc_v4d)(((fc_v4l)r & up) | ((fc_v4l)d & ~up));
                p = (fc_v4d)(((fc_v4l)vi & up) | ((fc_v4l)p & ~up));
                memcpy(dist + j, &d, sizeof d);
                memcpy(pred + j, &p, sizeof p);
                fc_v4d df = d + v4_load(busy + j);  /* +inf on assigned columns */
                fc_v4l lt = (d < lo4) & (d > ninf), ltf = (df < lf4) & (d > ninf);
                lo4 = (fc_v4d)(((fc_v4l)d & lt) | ((fc_v4l)lo4 & ~lt));
                at4 = (fc_v4d)(((fc_v4l)jx & lt) | ((fc_v4l)at4 & ~lt));
                lf4 = (fc_v4d)(((fc_v4l)df & ltf) | ((fc_v4l)lf4 & ~ltf));
                af4 = (fc_v4d)(((fc_v4l)jx & ltf) | ((fc_v4l)af4 & ~ltf));
            }
#else
            double lo4[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, lf4[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
            double at4[4] = {-1, -1, -1, -1}, af4[4] = {-1, -1, -1, -1};
#endif
            for (; j < n; j++) {  /* tail columns, same rules (every column in the plain-C backend) */
                double r = base + Ci[j] - v[j], d = dist[j];
                int up = r < d;
                d = up ? r : d;
                pred[j] = up ? di : pred[j];
                dist[j] = d;
                double df = d + busy[j];
                int live = d > -INFINITY, lt = live & (d < lo4[0]), ltf = live & (df < lf4[0]);
                lo4[0] = lt ? d : lo4[0];
                at4[0] = lt ? (double)j : at4[0];
                lf4[0] = ltf ? df : lf4[0];
                af4[0] = ltf ? (double)j : af4[0];
            }
            /* lowest value, then lowest column; a free column if one ties (ends the search).
             * Branch-free: the winner changes unpredictably. */
            double lo = lo4[0] < lo4[1] ? lo4[0] : lo4[1], lo23 = lo4[2] < lo4[3] ? lo4[2] : lo4[3];
            double lf = lf4[0] < lf4[1] ? lf4[0] : lf4[1], lf23 = lf4[2] < lf4[3] ? lf4[2] : lf4[3];
            lo = lo < lo23 ? lo : lo23;
            lf = lf < lf23 ? lf : lf23;
            double atd = 1e300, afd = 1e300;
            for (int l = 0; l < 4; l++) {
                double x = lo4[l] == lo ? at4[l] : 1e300, y = lf4[l] == lf ? af4[l] : 1e300;
                atd = x < atd ? x : atd;
                afd = y < afd ? y : afd;
            }
            if (!(lo < INFINITY)) return FC_INTERNAL; /* cannot happen with finite costs */
            int32_t at = (int32_t)(lf == lo ? afd : atd);
            dmin = lo;
            fin[at] = lo;
            dist[at] = -INFINITY;
            cols_seen[ncs++] = at;
            if (row4col[at] < 0) sink = at;
            else i = row4col[at];
        }
        /* dual update keeps u_i + v_j <= C_ij, with equality on the assignment */
        u[r0] += dmin;
        for (int32_t t = 1; t < nrs; t++) {
            int32_t r = rows_seen[t];
            u[r] += dmin - fin[col4row[r]];
        }
        for (int32_t t = 0; t < ncs; t++) {
            int32_t j = cols_seen[t];
            v[j] -= dmin - fin[j];
        }
        /* augment along the alternating path ending at sink */
        busy[sink] = INFINITY;
        for (int32_t j = sink;;) {
            int32_t r = (int32_t)pred[j], prev = col4row[r];
            row4col[j] = r;
            col4row[r] = j;
            if (r == r0) break;
            j = prev;
        }
    }
    return FC_OK;
}

/* ------------------------------------------------------------------ public entry points */
typedef struct {
    int64_t *rows, *cols;
    double *vals;
    ptrdiff_t nnz;
    double *G;
    ptrdiff_t ldg;
} fc_plan_out;

/* The cost from its rows' sums, in row order (both paths of emd_core). */
static double sum_rows(const double *rowsum, ptrdiff_t n)
{
    double total = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) total += rowsum[i];
    return total;
}

static int emd_core(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M, ptrdiff_t ldm,
                    fc_plan_out *out, double *u, double *v, double *cost, long long max_iter, long long *n_iter)
{
    if (n < 0 || m < 0 || ldm < m || !cost || (n > 0 && (!a || !M)) || (m > 0 && !b)) return FC_BAD_ARGUMENT;
    if (n + m >= INT32_MAX / 2) return FC_BAD_ARGUMENT;
    *cost = 0.0;
    if (n_iter) *n_iter = 0;
    if (out && out->G)
        for (ptrdiff_t i = 0; i < n; i++) memset(out->G + i * out->ldg, 0, sizeof(double) * (size_t)m);
    if (out) out->nnz = 0;

    int32_t *ri = malloc(sizeof(int32_t) * (size_t)(n + m + 1));
    double *ab = malloc(sizeof(double) * (size_t)(n + m + 1));
    if (!ri || !ab) { free(ri); free(ab); return FC_OUT_OF_MEMORY; }
    int32_t *cj = ri + n;
    ptrdiff_t nn = 0, mm = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        if (!(a[i] >= 0.0) || !isfinite(a[i])) { free(ri); free(ab); return FC_BAD_ARGUMENT; }
        if (a[i] > 0.0) { ri[nn] = (int32_t)i; ab[nn++] = a[i]; }
    }
    for (ptrdiff_t j = 0; j < m; j++) {
        if (!(b[j] >= 0.0) || !isfinite(b[j])) { free(ri); free(ab); return FC_BAD_ARGUMENT; }
        if (b[j] > 0.0) { cj[mm] = (int32_t)j; ab[nn + mm++] = b[j]; }
    }
    /* rescale b to a's mass (the caller checked they agree to its tolerance) */
    {
        double sa = 0.0, sb = 0.0;
        for (ptrdiff_t i = 0; i < nn; i++) sa += ab[i];
        for (ptrdiff_t j = 0; j < mm; j++) sb += ab[nn + j];
        if (sa != sb && sb > 0.0) {
            double r = sa / sb;
            for (ptrdiff_t j = 0; j < mm; j++) ab[nn + j] *= r;
        }
    }
    int status = FC_OK;
    fc_ns s;
    memset(&s, 0, sizeof s);
    double *Cc = NULL, *work = NULL;
    int32_t *iwork = NULL;
    if (nn == 0 || mm == 0) {
        if (nn != mm) status = FC_INFEASIBLE;
        goto duals;
    }
    if (nn == n && mm == m) {
        s.C = M;
        s.ldc = ldm;
    } else {
        Cc = malloc(sizeof(double) * (size_t)(nn * mm));
        if (!Cc) { status = FC_OUT_OF_MEMORY; goto done; }
        for (ptrdiff_t i = 0; i < nn; i++) {
            const double *Mi = M + (ptrdiff_t)ri[i] * ldm;
            for (ptrdiff_t j = 0; j < mm; j++) Cc[i * mm + j] = Mi[cj[j]];
        }
        s.C = Cc;
        s.ldc = mm;
    }
    s.n = nn;
    s.m = mm;
    if (!out && !u && !v && max_iter <= 0 && nn == mm && nn <= LSAP_MAX) {
        int uniform = 1;
        for (ptrdiff_t t = 1; t < nn + mm; t++) uniform &= ab[t] == ab[0];
        if (uniform) {
            iwork = malloc(sizeof(int32_t) * 4 * (size_t)nn);
            work = malloc(sizeof(double) * 6 * (size_t)nn);
            if (!iwork || !work) { status = FC_OUT_OF_MEMORY; goto done; }
            status = lsap_solve(nn, s.C, s.ldc, iwork + 3 * nn, work, iwork);
            if (status == FC_NON_FINITE) goto done;
            if (status == FC_OK) {
                /* the same sum, in the same order, as the simplex path below: the rounded
                 * products first (stored, so that no compiler fuses them into the sum with an
                 * FMA, which the simplex path's row sums cannot get), then sum_rows */
                for (ptrdiff_t i = 0; i < nn; i++) work[i] = ab[0] * s.C[i * s.ldc + iwork[3 * nn + i]];
                *cost = sum_rows(work, nn);
                goto done;
            }
            free(iwork); free(work);  /* overflowing reduced costs (|C| near DBL_MAX): simplex */
            iwork = NULL; work = NULL;
            status = FC_OK;
        }
    }
    {
        size_t N1 = (size_t)(nn + mm + 1);
        iwork = malloc(sizeof(int32_t) * 12 * N1);
        work = malloc(sizeof(double) * (2 * N1 + (size_t)nn));
        if (!iwork || !work) { status = FC_OUT_OF_MEMORY; goto done; }
        s.parent = iwork; s.first_child = iwork + N1; s.next_sib = iwork + 2 * N1;
        s.succ = iwork + 3 * N1; s.thread = iwork + 4 * N1; s.rev = iwork + 5 * N1;
        s.last = iwork + 6 * N1; s.pbuf = iwork + 8 * N1;
        s.flow = work; s.pi = work + N1;
    }
    status = ns_solve(&s, ab, ab + nn, max_iter);
    if (status != FC_OK && status != FC_MAX_ITER_REACHED) goto done;
    if (n_iter) *n_iter = s.iters;
    {
        /* sum_i (sum over row i's arcs): row by row, so that a problem with one arc per
         * row (an assignment) sums in the same order as lsap_solve's */
        double *rowsum = work + 2 * (nn + mm + 1);
        int32_t R = NS_ROOT(&s), n32 = (int32_t)nn;
        for (ptrdiff_t i = 0; i < nn; i++) rowsum[i] = 0.0;
        for (int32_t x = 0; x < R; x++) {
            int32_t p = s.parent[x];
            if (p == R || !(s.flow[x] > 0.0)) continue;
            int32_t i = x < n32 ? x : p, j = (x < n32 ? p : x) - n32;
            double f = s.flow[x];
            rowsum[i] += f * s.C[(ptrdiff_t)i * s.ldc + j];
            if (out) {
                if (out->G) out->G[(ptrdiff_t)ri[i] * out->ldg + cj[j]] = f;
                if (out->rows) {
                    out->rows[out->nnz] = ri[i];
                    out->cols[out->nnz] = cj[j];
                    out->vals[out->nnz] = f;
                }
                out->nnz++;
            }
        }
        *cost = sum_rows(rowsum, nn);
    }
duals:
    if (u || v) {
        /* active duals from the potentials; removed rows/columns get the tightest
         * dual-feasible value (columns first, against active rows; then rows). */
        double *uu = malloc(sizeof(double) * (size_t)(n + 1));
        double *vv = malloc(sizeof(double) * (size_t)(m + 1));
        unsigned char *ua = calloc((size_t)(n + m + 1), 1);
        if (!uu || !vv || !ua) { free(uu); free(vv); free(ua); if (status == FC_OK) status = FC_OUT_OF_MEMORY; goto done; }
        unsigned char *va = ua + n;
        if (nn > 0 && mm > 0) {
            for (ptrdiff_t i = 0; i < nn; i++) { uu[ri[i]] = -s.pi[i]; ua[ri[i]] = 1; }
            for (ptrdiff_t j = 0; j < mm; j++) { vv[cj[j]] = s.pi[nn + j]; va[cj[j]] = 1; }
        }
        for (ptrdiff_t j = 0; j < m; j++) {
            if (va[j]) continue;
            double best = INFINITY;
            for (ptrdiff_t i = 0; i < n; i++)
                if (ua[i]) { double t = M[i * ldm + j] - uu[i]; best = t < best ? t : best; }
            vv[j] = isfinite(best) ? best : 0.0;
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            if (ua[i]) continue;
            double best = INFINITY;
            for (ptrdiff_t j = 0; j < m; j++) { double t = M[i * ldm + j] - vv[j]; best = t < best ? t : best; }
            uu[i] = isfinite(best) ? best : 0.0;
        }
        if (u) memcpy(u, uu, sizeof(double) * (size_t)n);
        if (v) memcpy(v, vv, sizeof(double) * (size_t)m);
        free(uu); free(vv); free(ua);
    }
done:
    free(s.W); free(Cc); free(work); free(iwork); free(ri); free(ab);
    return status;
}

int fc_emd(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M, ptrdiff_t ldm,
           double *G, double *u, double *v, double *cost, long long max_iter, long long *n_iter)
{
    fc_plan_out out = {NULL, NULL, NULL, 0, G, m};
    fc_interrupt_begin();
    return emd_core(n, m, a, b, M, ldm, G ? &out : NULL, u, v, cost, max_iter, n_iter);
}

/* checks of the Python layer, uniform weights for NULL a / b, then the solve */
static int emd_checked(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M,
                       double mass_rtol, double *cost, long long max_iter, long long *n_iter)
{
    if (n < 1 || m < 1 || !M || !cost) return FC_BAD_ARGUMENT;
    double *ua = NULL, *ub = NULL;
    if (!a || !b) {
        ua = malloc(sizeof(double) * (size_t)(n + m));
        if (!ua) return FC_OUT_OF_MEMORY;
        ub = ua + n;
        for (ptrdiff_t i = 0; i < n; i++) ua[i] = 1.0 / (double)n;
        for (ptrdiff_t j = 0; j < m; j++) ub[j] = 1.0 / (double)m;
        if (!a) a = ua;
        if (!b) b = ub;
    }
    double sa = 0.0, sb = 0.0;
    int ok = 1;
    for (ptrdiff_t i = 0; i < n; i++) { ok &= a[i] >= 0.0 && a[i] <= DBL_MAX; sa += a[i]; }
    for (ptrdiff_t j = 0; j < m; j++) { ok &= b[j] >= 0.0 && b[j] <= DBL_MAX; sb += b[j]; }
    int status;
    if (!ok || !(sa > 0.0) || !(sb > 0.0) || fabs(sa - sb) > mass_rtol * (sa > sb ? sa : sb))
        status = FC_BAD_ARGUMENT;
    else
        status = emd_core(n, m, a, b, M, m, NULL, NULL, NULL, cost, max_iter, n_iter);
    free(ua);
    return status;
}

int fc_emd2_checked(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M,
                    double mass_rtol, double *cost)
{
    fc_interrupt_begin();
    return emd_checked(n, m, a, b, M, mass_rtol, cost, 0, NULL);
}

int fc_emd_sparse(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M,
                  ptrdiff_t ldm, int64_t *rows, int64_t *cols, double *vals, ptrdiff_t *nnz,
                  double *u, double *v, double *cost, long long max_iter, long long *n_iter)
{
    if (!rows || !cols || !vals || !nnz) return FC_BAD_ARGUMENT;
    fc_plan_out out = {rows, cols, vals, 0, NULL, 0};
    fc_interrupt_begin();
    int st = emd_core(n, m, a, b, M, ldm, &out, u, v, cost, max_iter, n_iter);
    *nnz = out.nnz;
    return st;
}

typedef struct {
    const ptrdiff_t *ns, *ms;
    const double *const *as, *const *bs, *const *Ms;
    double mass_rtol, *costs;
    int *status;
    long long *iters, max_iter;
    ptrdiff_t n_problems, next;
} fc_emd_batch_job;

/* One rank of fc_emd2_batch: problems claimed one at a time (their sizes differ). */
static void emd_batch_team(void *arg)
{
    fc_emd_batch_job *j = arg;
    for (ptrdiff_t k; (k = fc_claim(&j->next)) < j->n_problems;) {
        if (fc_interrupted()) { j->status[k] = FC_INTERRUPTED; continue; } /* Ctrl-C: mark the rest */
        long long it = 0;
        j->status[k] = emd_checked(j->ns[k], j->ms[k], j->as[k], j->bs[k], j->Ms[k], j->mass_rtol, &j->costs[k],
                                   j->max_iter, &it);
        if (j->iters) j->iters[k] = it;
    }
}

int fc_emd2_batch(ptrdiff_t n_problems, const ptrdiff_t *ns, const ptrdiff_t *ms,
                  const double *const *as, const double *const *bs, const double *const *Ms,
                  double mass_rtol, double *costs, int *status, long long *iters, long long max_iter,
                  int n_threads)
{
    if (n_problems < 0 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (n_problems == 0) return FC_OK;
    if (!ns || !ms || !as || !bs || !Ms || !costs || !status) return FC_BAD_ARGUMENT;
    fc_emd_batch_job job = {.ns = ns, .ms = ms, .as = as, .bs = bs, .Ms = Ms, .mass_rtol = mass_rtol,
                            .costs = costs, .status = status, .iters = iters, .max_iter = max_iter,
                            .n_problems = n_problems, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_clamp_threads(n_threads, n_problems), emd_batch_team, &job);
    return fc_interrupt_pending() ? FC_INTERRUPTED : FC_OK;
}

/* ------------------------------------------------------------------ documents */
#if FC_VECTOR_EXT
FC_INLINE double v4_sum(fc_v4d v) { return (v[0] + v[2]) + (v[1] + v[3]); }

/* One R x Q block (R <= 3, Q <= 4, compile-time constants once inlined) of G = X Y^T:
 * R Q accumulators of 4 lanes over k, then a horizontal sum and the scalar tail. */
FC_INLINE void gram_tile(ptrdiff_t d, const double *X, const double *Y, ptrdiff_t i, ptrdiff_t j, int R, int Q,
                         double *G, ptrdiff_t m)
{
    const double *xs[3], *ys[4];
    for (int p = 0; p < R; p++) xs[p] = X + (i + p) * d;
    for (int q = 0; q < Q; q++) ys[q] = Y + (j + q) * d;
    fc_v4d acc[3][4];
    for (int p = 0; p < R; p++)
        for (int q = 0; q < Q; q++) acc[p][q] = (fc_v4d){0, 0, 0, 0};
    ptrdiff_t k = 0;
    for (; k + 4 <= d; k += 4) {
        fc_v4d b[4];
        for (int q = 0; q < Q; q++) b[q] = v4_load(ys[q] + k);
        for (int p = 0; p < R; p++) {
            fc_v4d a = v4_load(xs[p] + k);
            for (int q = 0; q < Q; q++) acc[p][q] += a * b[q];
        }
    }
    for (int p = 0; p < R; p++)
        for (int q = 0; q < Q; q++) {
            double r = v4_sum(acc[p][q]);
            for (ptrdiff_t kk = k; kk < d; kk++) r += xs[p][kk] * ys[q][kk];
            G[(i + p) * m + j + q] = r;
        }
}

/* G = X Y^T for X (n, d), Y (m, d): 3 x 4 register tiles of 4-wide vectors (12
 * accumulators, 7 loads per 12 FMAs), columns outermost so that the 4 rows of Y of a
 * tile stay in L1 while X streams past; the edges in smaller vector tiles. */
FC_INLINE void gram(ptrdiff_t d, const double *X, ptrdiff_t n, const double *Y, ptrdiff_t m, double *G)
{
    ptrdiff_t j = 0;
    for (; j + 4 <= m; j += 4) {
        ptrdiff_t i = 0;
        const double *y0 = Y + j * d, *y1 = y0 + d, *y2 = y1 + d, *y3 = y2 + d;
        for (; i + 3 <= n; i += 3) {
            const double *x0 = X + i * d, *x1 = x0 + d, *x2 = x1 + d;
            fc_v4d z = {0, 0, 0, 0};
            fc_v4d s00 = z, s01 = z, s02 = z, s03 = z, s10 = z, s11 = z, s12 = z, s13 = z;
            fc_v4d s20 = z, s21 = z, s22 = z, s23 = z;
            ptrdiff_t k = 0;
            for (; k + 4 <= d; k += 4) {
                fc_v4d b0 = v4_load(y0 + k), b1 = v4_load(y1 + k), b2 = v4_load(y2 + k), b3 = v4_load(y3 + k);
                fc_v4d a0 = v4_load(x0 + k);
                s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
                fc_v4d a1 = v4_load(x1 + k);
                s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
                fc_v4d a2 = v4_load(x2 + k);
                s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
            }
            double r[12] = {v4_sum(s00), v4_sum(s01), v4_sum(s02), v4_sum(s03),
                            v4_sum(s10), v4_sum(s11), v4_sum(s12), v4_sum(s13),
                            v4_sum(s20), v4_sum(s21), v4_sum(s22), v4_sum(s23)};
            for (; k < d; k++) {
                const double *xs[3] = {x0, x1, x2}, *ys[4] = {y0, y1, y2, y3};
                for (int p = 0; p < 3; p++)
                    for (int q = 0; q < 4; q++) r[4 * p + q] += xs[p][k] * ys[q][k];
            }
            for (int p = 0; p < 3; p++)
                for (int q = 0; q < 4; q++) G[(i + p) * m + j + q] = r[4 * p + q];
        }
        if (n - i == 2) gram_tile(d, X, Y, i, j, 2, 4, G, m);
        else if (n - i == 1) gram_tile(d, X, Y, i, j, 1, 4, G, m);
    }
    ptrdiff_t q = m - j;
    if (q == 0) return;
    ptrdiff_t i = 0;
    for (; i + 3 <= n; i += 3) {
        if (q == 3) gram_tile(d, X, Y, i, j, 3, 3, G, m);
        else if (q == 2) gram_tile(d, X, Y, i, j, 3, 2, G, m);
        else gram_tile(d, X, Y, i, j, 3, 1, G, m);
    }
    for (; i < n; i++) {
        if (q == 3) gram_tile(d, X, Y, i, j, 1, 3, G, m);
        else if (q == 2) gram_tile(d, X, Y, i, j, 1, 2, G, m);
        else gram_tile(d, X, Y, i, j, 1, 1, G, m);
    }
}
#else
/* G = X Y^T, the plain-C backend (fc_simd.h) */
FC_INLINE void gram(ptrdiff_t d, const double *X, ptrdiff_t n, const double *Y, ptrdiff_t m, double *G)
{
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < m; j++) {
            double r = 0.0;
            for (ptrdiff_t k = 0; k < d; k++) r += X[i * d + k] * Y[j * d + k];
            G[i * m + j] = r;
        }
}
#endif

/* Di[j] = sqrt(max(nxi + ny[j] - 2 Di[j], 0)) */
FC_INLINE void dist_row(double *restrict Di, const double *restrict ny, double nxi, ptrdiff_t m)
{
    for (ptrdiff_t j = 0; j < m; j++) {
        double d2 = (nxi + ny[j]) - 2.0 * Di[j];
        d2 = d2 > 0.0 ? d2 : 0.0;
        Di[j] = sqrt(d2);
    }
}

/* Ground costs between the rows of X (n, d) and Y (m, d).  WMD: Euclidean distance from
 * ||x||^2 + ||y||^2 - 2 x.y (nx, ny: the squared norms of the rows, computed once per
 * call of the caller), recomputed as sqrt(sum (x - y)^2) wherever cancellation could
 * cost more than ~1e-13 relative (so identical vectors give exactly 0).
 * WRD (unit rows): max(1 - x.y, 0), nx / ny unused. */
static FC_MULTIVERSION void doc_cost(int metric, ptrdiff_t d, const double *X, ptrdiff_t n, const double *Y,
                                     ptrdiff_t m, double *D, const double *nx, const double *ny)
{
    gram(d, X, n, Y, m, D);
    if (metric != 0) {
        for (ptrdiff_t t = 0; t < n * m; t++) {
            double c = 1.0 - D[t];
            D[t] = c > 0.0 ? c : 0.0;
        }
        return;
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        double *Di = D + i * m;
        int near = 0;  /* some entry of the row needs the exact fallback (shared words) */
        for (ptrdiff_t j = 0; j < m; j++) {
            double s = nx[i] + ny[j];
            near |= s - 2.0 * Di[j] < 1e-3 * s;
        }
        if (!near) {  /* the same values as below, without the branch (vector sqrt) */
            dist_row(Di, ny, nx[i], m);
            continue;
        }
        for (ptrdiff_t j = 0; j < m; j++) {
            double s = nx[i] + ny[j], d2 = s - 2.0 * Di[j];
            if (d2 < 1e-3 * s) d2 = sq_dist(X + i * d, Y + j * d, d);
            Di[j] = sqrt(d2 > 0.0 ? d2 : 0.0);
        }
    }
}

typedef struct {
    const double *X;
    double *out;
    ptrdiff_t d;
} fc_sqnorm_job;

static void row_sqnorms_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_sqnorm_job *j = arg;
    for (ptrdiff_t i = lo; i < hi; i++) j->out[i] = dot(j->X + i * j->d, j->X + i * j->d, j->d);
}

/* squared norms of the n rows of X (d), threaded; NULL when out of memory */
static double *row_sqnorms(ptrdiff_t d, const double *X, ptrdiff_t n, int nt)
{
    double *out = malloc(sizeof(double) * (size_t)(n + 1));
    if (!out) return NULL;
    fc_sqnorm_job job = {X, out, d};
    fc_parallel_range(fc_clamp_threads(nt, n * d / 16384 + 1), n, row_sqnorms_range, &job);
    return out;
}

static double doc_rwmd(const double *D, ptrdiff_t n, ptrdiff_t m, const double *p, const double *q)
{
    double l1 = 0.0, l2 = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) {
        double mn = INFINITY;
        for (ptrdiff_t j = 0; j < m; j++) mn = D[i * m + j] < mn ? D[i * m + j] : mn;
        l1 += p[i] * mn;
    }
    for (ptrdiff_t j = 0; j < m; j++) {
        double mn = INFINITY;
        for (ptrdiff_t i = 0; i < n; i++) mn = D[i * m + j] < mn ? D[i * m + j] : mn;
        l2 += q[j] * mn;
    }
    return l1 > l2 ? l1 : l2;
}

static ptrdiff_t max_len(const int64_t *off, ptrdiff_t n)
{
    ptrdiff_t mx = 0;
    for (ptrdiff_t k = 0; k < n; k++) {
        ptrdiff_t l = (ptrdiff_t)(off[k + 1] - off[k]);
        mx = l > mx ? l : mx;
    }
    return mx;
}

/* The shared state of fc_doc_pairwise's and fc_doc_knn's teams. */
typedef struct {
    int metric;
    ptrdiff_t d, k;
    const double *XA, *wa, *XB, *wb, *nrmA, *nrmB, *cent_q, *cent_c;
    const int64_t *offa, *offb;
    ptrdiff_t na, nb, la, lb, next;
    double *out, *dist;
    int64_t *idx, *n_exact, *n_rwmd;
    int prune, status; /* the first failure, set once */
} fc_doc_job;

#define FC_DOC_PAIR_CHUNK 4 /* pairs claimed at a time */

/* One rank of fc_doc_pairwise: chunks of pairs claimed one at a time, one cost buffer. */
static void doc_pairwise_team(void *arg)
{
    fc_doc_job *j = arg;
    const ptrdiff_t d = j->d, nb = j->nb, total = j->na * j->nb;
    const int64_t *offa = j->offa, *offb = j->offb;
    double *D = malloc(sizeof(double) * (size_t)(j->la * j->lb + 1));
    int st_local = D ? FC_OK : FC_OUT_OF_MEMORY;
    for (ptrdiff_t ch; (ch = fc_claim(&j->next)) * FC_DOC_PAIR_CHUNK < total;) {
        if (fc_interrupted()) { st_local = FC_INTERRUPTED; break; } /* Ctrl-C */
        ptrdiff_t t1 = (ch + 1) * FC_DOC_PAIR_CHUNK < total ? (ch + 1) * FC_DOC_PAIR_CHUNK : total;
        for (ptrdiff_t t = ch * FC_DOC_PAIR_CHUNK; t < t1; t++) {
            ptrdiff_t ka = t / nb, kb = t % nb;
            if (!D) { j->out[t] = NAN; continue; }
            ptrdiff_t n = (ptrdiff_t)(offa[ka + 1] - offa[ka]), m = (ptrdiff_t)(offb[kb + 1] - offb[kb]);
            doc_cost(j->metric, d, j->XA + offa[ka] * d, n, j->XB + offb[kb] * d, m, D,
                     j->nrmA ? j->nrmA + offa[ka] : NULL, j->nrmB ? j->nrmB + offb[kb] : NULL);
            double c = NAN;
            int st = emd_core(n, m, j->wa + offa[ka], j->wb + offb[kb], D, m, NULL, NULL, NULL, &c, 0, NULL);
            j->out[t] = c;
            if (st != FC_OK && st_local == FC_OK) st_local = st;
        }
    }
    free(D);
    if (st_local != FC_OK) fc_atomic_cas_int(&j->status, FC_OK, st_local);
}

int fc_doc_pairwise(int metric, ptrdiff_t d,
                    const double *XA, const double *wa, const int64_t *offa, ptrdiff_t na,
                    const double *XB, const double *wb, const int64_t *offb, ptrdiff_t nb,
                    double *out, int n_threads)
{
    if ((metric != 0 && metric != 1) || d < 1 || na < 0 || nb < 0 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (na == 0 || nb == 0) return FC_OK;
    ptrdiff_t total = na * nb;
    double *nrmA = NULL, *nrmB = NULL;
    if (metric == 0) {
        nrmA = row_sqnorms(d, XA, (ptrdiff_t)offa[na], n_threads);
        nrmB = row_sqnorms(d, XB, (ptrdiff_t)offb[nb], n_threads);
        if (!nrmA || !nrmB) { free(nrmA); free(nrmB); return FC_OUT_OF_MEMORY; }
    }
    fc_doc_job job = {.metric = metric, .d = d, .XA = XA, .wa = wa, .XB = XB, .wb = wb, .nrmA = nrmA,
                      .nrmB = nrmB, .offa = offa, .offb = offb, .na = na, .nb = nb, .la = max_len(offa, na),
                      .lb = max_len(offb, nb), .next = 0, .out = out, .status = FC_OK};
    fc_interrupt_begin();
    fc_team(fc_clamp_threads(n_threads, (total + FC_DOC_PAIR_CHUNK - 1) / FC_DOC_PAIR_CHUNK), doc_pairwise_team,
            &job);
    free(nrmA); free(nrmB);
    return job.status;
}

/* insert (dist, idx) into the sorted top list of size *cnt <= k */
static void topk_insert(double *dist, int64_t *idx, ptrdiff_t *cnt, ptrdiff_t k, double dv, int64_t iv)
{
    ptrdiff_t t;
    if (*cnt == k) {
        if (!(dv < dist[k - 1] || (dv == dist[k - 1] && iv < idx[k - 1]))) return;
        t = k - 1;
    } else {
        t = (*cnt)++;
    }
    while (t > 0 && (dist[t - 1] > dv || (dist[t - 1] == dv && idx[t - 1] > iv))) {
        dist[t] = dist[t - 1]; idx[t] = idx[t - 1]; t--;
    }
    dist[t] = dv; idx[t] = iv;
}

/* One rank of fc_doc_knn: queries claimed one at a time, its own cost buffer and order. */
static void doc_knn_team(void *arg)
{
    fc_doc_job *j = arg;
    const ptrdiff_t d = j->d, k = j->k, nq = j->na, nc = j->nb;
    const int64_t *offq = j->offa, *offc = j->offb;
    const int metric = j->metric, prune = j->prune;
    const double slack = 1e-9; /* bounds must beat the k-th distance by this (relative) margin */
    double *D = malloc(sizeof(double) * (size_t)(j->la * j->lb + 1));
    fc_cand *order = malloc(sizeof(fc_cand) * (size_t)nc);
    int st_local = (D && order) ? FC_OK : FC_OUT_OF_MEMORY;
    for (ptrdiff_t qk; (qk = fc_claim(&j->next)) < nq;) {
        if (st_local == FC_OK && fc_interrupted()) st_local = FC_INTERRUPTED; /* Ctrl-C */
        if (st_local != FC_OK) continue;
        double *dk = j->dist + qk * k;
        int64_t *ik = j->idx + qk * k;
        ptrdiff_t cnt = 0;
        int64_t ne = 0, nr = 0;
        ptrdiff_t n = (ptrdiff_t)(offq[qk + 1] - offq[qk]);
        const double *Xq = j->XA + offq[qk] * d, *pq = j->wa + offq[qk];
        for (ptrdiff_t c = 0; c < nc; c++) {
            double lb = 0.0;
            if (prune) {
                double s2 = sq_dist(j->cent_q + qk * d, j->cent_c + c * d, d);
                lb = metric == 0 ? sqrt(s2) : 0.5 * s2;
            }
            order[c].c = lb; order[c].i = (int32_t)c; order[c].j = 0;
        }
        if (prune) cand_sort(order, nc);
        for (ptrdiff_t t = 0; t < nc; t++) {
            if (t % 64 == 63 && fc_interrupted()) { st_local = FC_INTERRUPTED; break; } /* Ctrl-C */
            int32_t c = order[t].i;
            double kth = cnt == k ? dk[k - 1] : INFINITY;
            double margin = kth + slack * fabs(kth) + 1e-300;
            if (prune && cnt == k && order[t].c > margin) break;
            ptrdiff_t m = (ptrdiff_t)(offc[c + 1] - offc[c]);
            const double *pc = j->wb + offc[c];
            doc_cost(metric, d, Xq, n, j->XB + offc[c] * d, m, D,
                     j->nrmA ? j->nrmA + offq[qk] : NULL, j->nrmB ? j->nrmB + offc[c] : NULL);
            if (prune && cnt == k) {
                nr++;
                if (doc_rwmd(D, n, m, pq, pc) > margin) continue;
            }
            double val = NAN;
            int st = emd_core(n, m, pq, pc, D, m, NULL, NULL, NULL, &val, 0, NULL);
            ne++;
            if (st != FC_OK) { st_local = st; break; }
            topk_insert(dk, ik, &cnt, k, val, c);
        }
        j->n_exact[qk] = ne;
        j->n_rwmd[qk] = nr;
    }
    free(D); free(order);
    if (st_local != FC_OK) fc_atomic_cas_int(&j->status, FC_OK, st_local);
}

int fc_doc_knn(int metric, ptrdiff_t d,
               const double *XQ, const double *wq, const int64_t *offq, ptrdiff_t nq,
               const double *XC, const double *wc, const int64_t *offc, ptrdiff_t nc,
               const double *cent_q, const double *cent_c, ptrdiff_t k, int prune,
               int64_t *idx, double *dist, int64_t *n_exact, int64_t *n_rwmd, int n_threads)
{
    if ((metric != 0 && metric != 1) || d < 1 || nq < 0 || nc < 1 || k < 1 || k > nc || n_threads < 1)
        return FC_BAD_ARGUMENT;
    if (nq == 0) return FC_OK;
    double *nrmQ = NULL, *nrmC = NULL;
    if (metric == 0) {
        nrmQ = row_sqnorms(d, XQ, (ptrdiff_t)offq[nq], n_threads);
        nrmC = row_sqnorms(d, XC, (ptrdiff_t)offc[nc], n_threads);
        if (!nrmQ || !nrmC) { free(nrmQ); free(nrmC); return FC_OUT_OF_MEMORY; }
    }
    fc_doc_job job = {.metric = metric, .d = d, .k = k, .XA = XQ, .wa = wq, .XB = XC, .wb = wc, .nrmA = nrmQ,
                      .nrmB = nrmC, .cent_q = cent_q, .cent_c = cent_c, .offa = offq, .offb = offc, .na = nq,
                      .nb = nc, .la = max_len(offq, nq), .lb = max_len(offc, nc), .next = 0, .dist = dist,
                      .idx = idx, .n_exact = n_exact, .n_rwmd = n_rwmd, .prune = prune, .status = FC_OK};
    fc_interrupt_begin();
    fc_team(fc_clamp_threads(n_threads, nq), doc_knn_team, &job);
    free(nrmQ); free(nrmC);
    return job.status;
}
