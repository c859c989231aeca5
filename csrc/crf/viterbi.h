/* CRF: fc_crf_viterbi, the best path (register-blocked max-plus recurrences) and the exact
 * top-k paths.  Instantiated once per precision (crf_viterbi_f32.c / _f64.c): no include guard. */

/* One Viterbi step (compilers without GCC vectors; GCC/Clang use fc_crf_vit_reg2):
 * d1[j] = max_i d0[i] + TP[i, j] and its argmax (lowest i on ties) for every j < Kp. */
#if !FC_VECTOR_EXT
FC_INLINE void fc_crf_vstep_w(const fc_real *restrict d0, const fc_real *restrict TP, ptrdiff_t K,
                                       ptrdiff_t Kp, fc_real *restrict d1, int32_t *restrict arg)
{
    for (ptrdiff_t j = 0; j < Kp; ++j) { d1[j] = -FC_INF; arg[j] = 0; }
    for (ptrdiff_t i = 0; i < K; ++i) {
        const fc_real v = d0[i];
        const fc_real *row = TP + i * Kp;
        for (ptrdiff_t j = 0; j < Kp; ++j) {
            fc_real c = v + row[j];
            if (c > d1[j]) { d1[j] = c; arg[j] = (int32_t)i; }
        }
    }
}
#endif

/* End of a top-1 Viterbi with backpointers bp ((n, Kp), rows from 1): the best last label of
 * the scores d (lowest index on ties), then the path at the kept positions.  Returns 0, or -1
 * when no path is allowed. */
FC_INLINE int fc_crf_vit_back(const fc_real *d, const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n,
                                       ptrdiff_t K, ptrdiff_t Kp, const int32_t *bp, int64_t *path)
{
    fc_real best = -FC_INF;
    ptrdiff_t bj = -1;
    for (ptrdiff_t j = 0; j < K; ++j) {
        fc_real v = d[j] + (end ? end[j] : (fc_real)0);
        if (v > best) { best = v; bj = j; }
    }
    if (bj < 0) return -1;
    for (ptrdiff_t k = n - 1; k >= 0; --k) {
        path[pos[k]] = bj;
        if (k > 0) bj = bp[k * Kp + bj];
    }
    return 0;
}

#if FC_VECTOR_EXT
/* fc_crf_vit1_bp (below) for Kp = 2 FC_VLEN (K <= FC_CRF_WS) with the scores held in two
 * registers: each step is two chains of (max, argmax) over the predecessors i (even / odd
 * i, lowest first) merged so that the lowest index wins ties; the emission row is loaded
 * off the step-to-step chain.  Written out with named vectors so that nothing spills. */
FC_INLINE int fc_crf_vit_reg2(const fc_real *emb, const fc_real *TP, const fc_real *start,
                                       const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n, ptrdiff_t K,
                                       int32_t *bp, int64_t *path)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    const ptrdiff_t Kp = 2 * FC_VLEN;
    const fc_real *e_end = emb + (pos[n - 1] + 1) * K;
    vi bmask;
    fc_crf_bmask(K, &bmask);
    const vi zi = {0};
    vr ninf;
    FC_SPLAT(ninf, -FC_INF);
    union { vr v[2]; fc_real s[2 * FC_VLEN]; } db; /* the scores, for the broadcasts */
    vr d[2], ev[2];
    fc_crf_vrow(emb + pos[0] * K, K, e_end, &bmask, d, 2);
    if (start != NULL) {
        fc_crf_vrow(start, K, start + K, &bmask, ev, 2);
        d[0] += ev[0];
        d[1] += ev[1];
    }
    vi one = zi + 1, two = zi + 2;
#define FC_VIT_TERM(i, idx, b0, b1, a0, a1)                                                \
    do {                                                                                   \
        const vr x_ = FC_BCAST(db.s[i]);                                                   \
        vr w0_, w1_;                                                                       \
        memcpy(&w0_, TP + (i) * Kp, sizeof w0_);                                           \
        memcpy(&w1_, TP + (i) * Kp + FC_VLEN, sizeof w1_);                                 \
        const vr s0_ = x_ + w0_, s1_ = x_ + w1_;                                           \
        const vi m0_ = s0_ > b0, m1_ = s1_ > b1;                                           \
        b0 = (vr)(((vi)s0_ & m0_) | ((vi)b0 & ~m0_));                                      \
        b1 = (vr)(((vi)s1_ & m1_) | ((vi)b1 & ~m1_));                                      \
        a0 = (idx & m0_) | (a0 & ~m0_);                                                    \
        a1 = (idx & m1_) | (a1 & ~m1_);                                                    \
    } while (0)
#define FC_VIT_MERGE(b, a, bo, ao)                                                         \
    do {                                                                                   \
        const vi t_ = (bo > b) | ((bo == b) & (ao < a));                                   \
        b = (vr)(((vi)bo & t_) | ((vi)b & ~t_));                                           \
        a = (ao & t_) | (a & ~t_);                                                         \
    } while (0)
    for (ptrdiff_t k = 1; k < n; ++k) {
        fc_crf_vrow(emb + pos[k] * K, K, e_end, &bmask, ev, 2);
        db.v[0] = d[0];
        db.v[1] = d[1];
        vr b00 = ninf, b01 = ninf, b10 = ninf, b11 = ninf; /* chain c, vector q: bcq */
        vi a00 = zi, a01 = zi, a10 = zi, a11 = zi, i0 = zi, i1 = one;
        ptrdiff_t i = 0;
        for (; i + 2 <= K; i += 2) {
            FC_VIT_TERM(i, i0, b00, b01, a00, a01);
            FC_VIT_TERM(i + 1, i1, b10, b11, a10, a11);
            i0 += two;
            i1 += two;
        }
        if (i < K) FC_VIT_TERM(i, i0, b00, b01, a00, a01);
        FC_VIT_MERGE(b00, a00, b10, a10);
        FC_VIT_MERGE(b01, a01, b11, a11);
        d[0] = b00 + ev[0];
        d[1] = b01 + ev[1];
        int32_t *arg = bp + k * Kp;
#if FC_REAL_DOUBLE
        for (int l = 0; l < (int)FC_VLEN; ++l) {
            arg[l] = (int32_t)a00[l];
            arg[FC_VLEN + l] = (int32_t)a01[l];
        }
#else
        memcpy(arg, &a00, sizeof a00);
        memcpy(arg + FC_VLEN, &a01, sizeof a01);
#endif
    }
#undef FC_VIT_TERM
#undef FC_VIT_MERGE
    db.v[0] = d[0];
    db.v[1] = d[1];
    return fc_crf_vit_back(db.s, end, pos, n, K, Kp, bp, path);
}
#endif

/* Top-1 Viterbi with backpointers (used for K <= FC_CRF_WS, where the argmax blend is
 * cheaper than the scalar argmax of the backtrack); path written at kept positions.
 * TP: (K, Kp) trans padded with -inf.  Returns 0, or -1 when no path is allowed. */
static FC_MULTIVERSION int fc_crf_vit1_bp(const fc_real *emb, const fc_real *TP, const fc_real *start,
                                                const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n,
                                                ptrdiff_t K, ptrdiff_t Kp, fc_real *d0, fc_real *d1,
                                                int32_t *bp, int64_t *path)
{
#if FC_VECTOR_EXT
    (void)d0; (void)d1;
    (void)Kp; /* = FC_CRF_WS = 2 FC_VLEN */
    return fc_crf_vit_reg2(emb, TP, start, end, pos, n, K, bp, path);
#else
    const fc_real *e = emb + pos[0] * K;
    for (ptrdiff_t j = 0; j < Kp; ++j) d0[j] = j < K ? e[j] + (start ? start[j] : (fc_real)0) : -FC_INF;
    for (ptrdiff_t k = 1; k < n; ++k) {
        e = emb + pos[k] * K;
        int32_t *arg = bp + k * Kp;
        fc_crf_vstep_w(d0, TP, K, Kp, d1, arg);
        for (ptrdiff_t j = 0; j < K; ++j) d1[j] += e[j];
        fc_real *t = d0; d0 = d1; d1 = t;
    }
    return fc_crf_vit_back(d0, end, pos, n, K, Kp, bp, path);
#endif
}

/* One Viterbi step without backpointers (K > FC_CRF_WS): d1[j] = max_i d0[i] + TP[i, j] for j < Kp, over
 * blocks of W columns with two chains (even / odd i).  A max is exact in any order and
 * compiles to a vector max (add + max per element); the argmax is recovered for the one
 * label on the path during the backtrack, from the same sums, so ties still go to the
 * lowest index. */
FC_INLINE void fc_crf_vmax_w(const fc_real *restrict d0, const fc_real *restrict TP, ptrdiff_t K,
                                      ptrdiff_t Kp, fc_real *restrict d1, const int W)
{
    for (ptrdiff_t jb = 0; jb < Kp; jb += W) {
        fc_real b0[2 * FC_CRF_WS], b1[2 * FC_CRF_WS];
        for (int w = 0; w < W; ++w) { b0[w] = -FC_INF; b1[w] = -FC_INF; }
        ptrdiff_t i = 0;
        for (; i + 1 < K; i += 2) {
            const fc_real v0 = d0[i], v1 = d0[i + 1];
            const fc_real *r0 = TP + i * Kp + jb, *r1 = r0 + Kp;
            for (int w = 0; w < W; ++w) {
                fc_real c0 = v0 + r0[w], c1 = v1 + r1[w];
                b0[w] = c0 > b0[w] ? c0 : b0[w];
                b1[w] = c1 > b1[w] ? c1 : b1[w];
            }
        }
        if (i < K) {
            const fc_real v0 = d0[i];
            const fc_real *r0 = TP + i * Kp + jb;
            for (int w = 0; w < W; ++w) {
                fc_real c0 = v0 + r0[w];
                b0[w] = c0 > b0[w] ? c0 : b0[w];
            }
        }
        for (int w = 0; w < W; ++w) d1[jb + w] = b1[w] > b0[w] ? b1[w] : b0[w];
    }
}

/* Top-1 Viterbi of one sequence for K > FC_CRF_WS (max-only steps, argmax recovered in
 * the backtrack); path written at kept positions (others untouched).
 * TP: (K, Kp) trans padded with -inf; D: (n, Kp) scores table.  Returns 0, or -1 when no
 * path is allowed. */
static FC_MULTIVERSION int fc_crf_vit1(const fc_real *emb, const fc_real *TP, const fc_real *start,
                                                const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n,
                                                ptrdiff_t K, ptrdiff_t Kp, fc_real *D, int64_t *path)
{
    const fc_real *e = emb + pos[0] * K;
    for (ptrdiff_t j = 0; j < Kp; ++j) D[j] = j < K ? e[j] + (start ? start[j] : (fc_real)0) : -FC_INF;
    for (ptrdiff_t k = 1; k < n; ++k) {
        e = emb + pos[k] * K;
        fc_real *d1 = D + k * Kp;
        fc_crf_vmax_w(d1 - Kp, TP, K, Kp, d1, 2 * FC_CRF_WS);
        for (ptrdiff_t j = 0; j < K; ++j) d1[j] += e[j];
    }
    const fc_real *dl = D + (n - 1) * Kp;
    fc_real best = -FC_INF;
    ptrdiff_t bj = -1;
    for (ptrdiff_t j = 0; j < K; ++j) {
        fc_real v = dl[j] + (end ? end[j] : (fc_real)0);
        if (v > best) { best = v; bj = j; }
    }
    if (bj < 0) return -1;
    for (ptrdiff_t k = n - 1; k >= 0; --k) {
        path[pos[k]] = bj;
        if (k == 0) break;
        /* the predecessor: lowest i reaching max_i D[k-1, i] + TP[i, bj] (the same sums
         * as the forward step, so the same maximum) */
        const fc_real *dp = D + (k - 1) * Kp;
        fc_real m = -FC_INF;
        ptrdiff_t arg = 0;
        for (ptrdiff_t i = 0; i < K; ++i) {
            fc_real c = dp[i] + TP[i * Kp + bj];
            if (c > m) { m = c; arg = i; }
        }
        bj = arg;
    }
    return 0;
}

typedef struct { double s; int32_t i, r; } fc_nb_ent;

/* Insert (s, i, r) in the descending list L of length *cnt <= cap (ties keep the earlier entry first). */
FC_INLINE void fc_nb_insert(fc_nb_ent *L, ptrdiff_t *cnt, ptrdiff_t cap, double s,
                                     int32_t i, int32_t r)
{
    ptrdiff_t c = *cnt;
    if (c == cap && !(s > L[c - 1].s)) return;
    ptrdiff_t q = c < cap ? c : cap - 1;
    while (q > 0 && s > L[q - 1].s) { L[q] = L[q - 1]; --q; }
    L[q].s = s; L[q].i = i; L[q].r = r;
    if (c < cap) *cnt = c + 1;
}

/* Exact k-best (list Viterbi) of one sequence, in double.  bt: (n, K, k) entries;
 * cur/prv: (K, k) scores; cnt: (2, K).  Writes up to k paths. */
static int fc_crf_vitk(const fc_real *emb, const fc_real *trans, const fc_real *start,
                                const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n, ptrdiff_t K,
                                ptrdiff_t k, fc_nb_ent *bt, ptrdiff_t *cnt, int64_t *paths,
                                ptrdiff_t Tn, fc_nb_ent *fin)
{
    ptrdiff_t *c0 = cnt, *c1 = cnt + K;
    const fc_real *e = emb + pos[0] * K;
    for (ptrdiff_t j = 0; j < K; ++j) {
        double s = (double)e[j] + (start ? (double)start[j] : 0.0);
        c0[j] = 0;
        if (s != -INFINITY) { bt[j * k].s = s; bt[j * k].i = -1; bt[j * k].r = -1; c0[j] = 1; }
    }
    for (ptrdiff_t t = 1; t < n; ++t) {
        e = emb + pos[t] * K;
        fc_nb_ent *P = bt + (t - 1) * K * k, *C = bt + t * K * k;
        for (ptrdiff_t j = 0; j < K; ++j) {
            ptrdiff_t cj = 0;
            fc_nb_ent *L = C + j * k;
            for (ptrdiff_t i = 0; i < K; ++i) {
                double tr = (double)trans[i * K + j];
                if (tr == -INFINITY) continue;
                for (ptrdiff_t r = 0; r < c0[i]; ++r) {
                    double s = P[i * k + r].s + tr;
                    if (cj == k && !(s > L[k - 1].s)) break;
                    fc_nb_insert(L, &cj, k, s, (int32_t)i, (int32_t)r);
                }
            }
            for (ptrdiff_t r = 0; r < cj; ++r) L[r].s += (double)e[j];
            c1[j] = e[j] == -FC_INF ? 0 : cj; /* (-inf unaries: MEMM potentials) */
        }
        ptrdiff_t *tmp = c0; c0 = c1; c1 = tmp;
    }
    ptrdiff_t cf = 0;
    fc_nb_ent *Lst = bt + (n - 1) * K * k;
    for (ptrdiff_t j = 0; j < K; ++j) {
        double en = end ? (double)end[j] : 0.0;
        if (en == -INFINITY) continue;
        for (ptrdiff_t r = 0; r < c0[j]; ++r) {
            double s = Lst[j * k + r].s + en;
            if (cf == k && !(s > fin[k - 1].s)) break;
            fc_nb_insert(fin, &cf, k, s, (int32_t)j, (int32_t)r);
        }
    }
    for (ptrdiff_t q = 0; q < cf; ++q) {
        int64_t *path = paths + q * Tn;
        int32_t j = fin[q].i, r = fin[q].r;
        for (ptrdiff_t t = n - 1; t >= 0; --t) {
            path[pos[t]] = j;
            const fc_nb_ent *en = bt + t * K * k + j * k + r;
            j = en->i; r = en->r;
        }
    }
    return (int)cf;
}

/* The shared state of fc_crf_viterbi's team (fc_team). */
typedef struct {
    const fc_real *em, *trans, *start, *end, *TP;
    const uint8_t *mask;
    int64_t *paths;
    double *scores;
    ptrdiff_t B, Tn, K, Kp, T1, top_k;
    int status;     /* FC_OMP_FAIL */
    ptrdiff_t next; /* work items claimed with fc_claim */
} fc_crf_vit_job;

/* One thread of fc_crf_viterbi (all of them run this, see fc_team). */
static void fc_crf_viterbi_team(void *arg)
{
    fc_crf_vit_job *job = arg;
    const fc_real *em = job->em, *trans = job->trans, *start = job->start, *end = job->end, *TP = job->TP;
    const uint8_t *mask = job->mask;
    int64_t *paths = job->paths;
    double *scores = job->scores;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K, Kp = job->Kp, T1 = job->T1, top_k = job->top_k;
    ptrdiff_t *pos = malloc(sizeof(ptrdiff_t) * T1);
    const int use_bp = K <= FC_CRF_WS;
    fc_real *d = top_k == 1 ? malloc(sizeof(fc_real) * (use_bp ? 2 : T1) * Kp) : NULL;
    int32_t *bp = top_k == 1 && use_bp ? malloc(sizeof(int32_t) * T1 * Kp) : NULL;
    fc_nb_ent *bt = top_k > 1 ? malloc(sizeof(fc_nb_ent) * (T1 * K * top_k + top_k)) : NULL;
    ptrdiff_t *cnt = malloc(sizeof(ptrdiff_t) * 2 * K);
    int ok = pos && cnt && (top_k == 1 ? d != NULL && (bp != NULL || !use_bp) : bt != NULL);
    if (!ok) {
        FC_OMP_FAIL(job->status, FC_OUT_OF_MEMORY);
    }
    for (ptrdiff_t b; ok && !fc_interrupted() && (b = fc_claim(&job->next)) < B;) {
        const fc_real *emb = em + b * Tn * K;
        int64_t *pb = paths + b * top_k * Tn;
        double *sb = scores + b * top_k;
        for (ptrdiff_t q = 0; q < top_k * Tn; ++q) pb[q] = -1;
        ptrdiff_t n = fc_crf_positions(mask, b, Tn, pos);
        ptrdiff_t found;
        if (n == 0) {
            found = 1; /* the empty path */
        } else if (top_k == 1) {
            found = (use_bp ? fc_crf_vit1_bp(emb, TP, start, end, pos, n, K, Kp, d, d + Kp, bp, pb)
                            : fc_crf_vit1(emb, TP, start, end, pos, n, K, Kp, d, pb)) == 0;
        } else {
            found = fc_crf_vitk(emb, trans, start, end, pos, n, K, top_k, bt, cnt, pb, Tn,
                                         bt + T1 * K * top_k);
        }
        for (ptrdiff_t q = 0; q < top_k; ++q)
            sb[q] = q < found ? fc_crf_path_score(emb, trans, start, end, pos, n, pb + q * Tn, 1, K)
                              : -INFINITY;
    }
    free(pos); free(d); free(bp); free(bt); free(cnt);
}

int FC_NAME(fc_crf_viterbi)(const fc_crf_problem *p, ptrdiff_t top_k, int64_t *paths, double *scores)
{
    const fc_real *em = p->em, *trans = p->trans, *start = p->start, *end = p->end;
    const uint8_t *mask = p->mask;
    const ptrdiff_t B = p->B, Tn = p->T, K = p->K;
    const int n_threads = p->n_threads;
    if (B < 0 || Tn < 0 || K < 1 || top_k < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (B == 0) return FC_OK;
    if (em == NULL || trans == NULL || paths == NULL || scores == NULL) return FC_BAD_ARGUMENT;
    const ptrdiff_t Kp = fc_crf_kp(K);
    fc_real *TP = malloc(sizeof(fc_real) * K * Kp);
    if (TP == NULL) return FC_OUT_OF_MEMORY;
    for (ptrdiff_t i = 0; i < K; ++i)
        for (ptrdiff_t j = 0; j < Kp; ++j) TP[i * Kp + j] = j < K ? trans[i * K + j] : -FC_INF;
    fc_crf_vit_job job = {.em = em, .trans = trans, .start = start, .end = end, .TP = TP, .mask = mask,
                                   .paths = paths, .scores = scores, .B = B, .Tn = Tn, .K = K, .Kp = Kp,
                                   .T1 = Tn > 0 ? Tn : 1, .top_k = top_k, .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_crf_threads(n_threads, B, B * Tn * top_k, K), fc_crf_viterbi_team, &job);
    if (fc_interrupt_pending()) job.status = FC_INTERRUPTED; /* Ctrl-C */
    free(TP);
    return job.status;
}
