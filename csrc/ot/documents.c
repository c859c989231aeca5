/* Document distances (WMD / WRD): ground costs between word vectors, pairwise distances and
 * k-NN with relaxed-WMD pruning, every exact solve by fc_emd_core (emd.c).  See emd.h. */
#include "ot/emd_util.h"
#include "ot/emd_core.h"

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
            int st = fc_emd_core(n, m, j->wa + offa[ka], j->wb + offb[kb], D, m, NULL, NULL, NULL, &c, 0, NULL);
            j->out[t] = c;
            if (st != FC_OK && st_local == FC_OK) st_local = st;
        }
    }
    free(D);
    if (st_local != FC_OK) fc_atomic_cas_int(&j->status, FC_OK, st_local);
}

int fc_doc_pairwise(const fc_doc_problem *p, double *out)
{
    if (!p) return FC_BAD_ARGUMENT;
    const int metric = p->metric, n_threads = p->n_threads;
    const ptrdiff_t d = p->d, na = p->A.count, nb = p->B.count;
    const double *XA = p->A.X, *wa = p->A.w, *XB = p->B.X, *wb = p->B.w;
    const int64_t *offa = p->A.off, *offb = p->B.off;
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
            int st = fc_emd_core(n, m, pq, pc, D, m, NULL, NULL, NULL, &val, 0, NULL);
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

int fc_doc_knn(const fc_doc_problem *p, ptrdiff_t k, int prune, const fc_doc_knn_out *out)
{
    if (!p || !out) return FC_BAD_ARGUMENT;
    const int metric = p->metric, n_threads = p->n_threads;
    const ptrdiff_t d = p->d, nq = p->A.count, nc = p->B.count;
    const double *XQ = p->A.X, *wq = p->A.w, *XC = p->B.X, *wc = p->B.w;
    const double *cent_q = p->A.cent, *cent_c = p->B.cent;
    const int64_t *offq = p->A.off, *offc = p->B.off;
    int64_t *idx = out->idx, *n_exact = out->n_exact, *n_rwmd = out->n_rwmd;
    double *dist = out->dist;
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
