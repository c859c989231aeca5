/* The primal network simplex on the transportation graph: solver state, the greedy / north-west
 * start and its spanning tree, block pricing and pivots (ns_solve).  Static functions included
 * once, by emd.c, so that the solver compiles as one unit with its entry points. */

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
