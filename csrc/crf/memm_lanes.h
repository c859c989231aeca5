/* MEMM: the per-token kernels (one direction, both directions in shared-exp form, the
 * token-lane groups for K <= 10).  Instantiated once per precision (crf_memm_f32.c / _f64.c):
 * no include guard on purpose. */

/* Teacher-forced log-likelihood of one direction of a MEMM.  Gp: (K+1, Kp) rows
 * indexed by the conditioning label (G for left-to-right, G^T for right-to-left),
 * row K all zeros (no conditioning label); padding columns are -inf.  r, ex: (Kp)
 * scratch.  Adds coef * d(-ll) to ge (T, K) and to gacc (K, Kp, rows by the
 * conditioning label) when ge != NULL.  The local normalisers are multiplied in
 * double and their log taken only when the product exceeds 1e150. */
static FC_MULTIVERSION double fc_memm_dir(const fc_real *emb, const fc_real *Gp, const ptrdiff_t *pos,
                                                   ptrdiff_t n, const int64_t *y, ptrdiff_t K, ptrdiff_t Kp,
                                                   int reverse, double coef, fc_real *ge, double *gacc,
                                                   fc_real *restrict r, fc_real *restrict ex)
{
    double ll = 0.0, prod = 1.0;
    int dead = 0;
    const fc_real fcoef = (fc_real)coef;
    for (ptrdiff_t j = K; j < Kp; ++j) r[j] = -FC_INF;
    if (n == 0) return 0.0;
#if FC_VECTOR_EXT
    const fc_real *e_end = emb + (pos[n - 1] + 1) * K;
    fc_vi bmask;
    fc_crf_bmask(K, &bmask);
#endif
    for (ptrdiff_t q = 0; q < n; ++q) {
        ptrdiff_t k = reverse ? n - 1 - q : q;
        ptrdiff_t t = pos[k];
        const fc_real *e = emb + t * K;
        int64_t cond = q == 0 ? K : y[pos[reverse ? k + 1 : k - 1]];
        const fc_real *g = Gp + cond * Kp;
#if FC_VECTOR_EXT
        fc_real m = fc_crf_row_load(e, g, K, Kp, r, e_end, &bmask);
#else
        for (ptrdiff_t j = 0; j < K; ++j) r[j] = g[j] + e[j];
        fc_real m = fc_crf_maxv(r, Kp);
#endif
        if (m == -FC_INF) { dead = 1; continue; }
        /* padding lanes hold exp(-inf) <= 2^-149: never used, negligible in the sum (writing
         * exact zeros with scalar stores would stall the vector loads that follow) */
        for (ptrdiff_t j = 0; j < Kp; ++j) ex[j] = FC_EXP(r[j] - m);
        fc_real s = fc_crf_sumv(ex, Kp);
        int64_t yk = y[t];
        ll += (double)r[yk] - (double)m;
        prod *= (double)s;
        if (prod > 1e150) { ll -= log(prod); prod = 1.0; }
        if (ge == NULL) continue;
        fc_real *gt = ge + t * K;
        fc_real f = fcoef / s; /* ex[j] * f = coef * softmax_j */
        for (ptrdiff_t j = 0; j < K; ++j) gt[j] += ex[j] * f;
        gt[yk] -= fcoef;
        if (cond < K) {
            double *ga = gacc + cond * Kp;
            for (ptrdiff_t j = 0; j < K; ++j) ga[j] += (double)(ex[j] * f);
            ga[yk] -= coef;
        }
    }
    ll -= log(prod);
    return dead ? -INFINITY : ll;
}

#if FC_VECTOR_EXT
/* Transitions-gradient rows of fc_memm_seq: each token adds one fc_real row per direction
 * to a block accumulator (2K rows of Kp, row counts cnt[0 .. 2K)) instead of converting it
 * to double.  A row is added to its double accumulator and cleared after FC_MEMM_FLUSH terms
 * from single tokens, and every row is after FC_MEMM_FLUSH / FC_VLEN token-lane groups
 * (counted in cnt[2K]; a group adds at most FC_VLEN terms to a row) and at the end of every
 * chunk of sequences: a block holds fewer than 2 FC_MEMM_FLUSH terms.  Each term is
 * coef (softmax - onehot), |term_j| <= |coef|, so a block's rounding error is at most
 * 2 FC_MEMM_FLUSH eps sum |terms| (eps = 2^-24 in float: below 8e-6 of the sum of
 * magnitudes; 1.5e-14 in double), and the long sum over blocks stays in double. */
#define FC_MEMM_FLUSH 64
FC_INLINE void fc_memm_vadd(fc_real *p, fc_vr v)
{
    fc_vr w;
    memcpy(&w, p, sizeof w);
    w += v;
    memcpy(p, &w, sizeof w);
}

FC_INLINE void fc_memm_flush_row(fc_real *restrict f, double *restrict d, ptrdiff_t Kp)
{
    fc_crf_add_row(f, d, Kp);
    memset(f, 0, sizeof(fc_real) * Kp);
}

/* Every block row flushed, every count (cnt[0 .. 2K]) cleared. */
FC_INLINE void fc_memm_flush_all(fc_real *restrict facc, double *restrict gacc, int *cnt, ptrdiff_t K,
                                          ptrdiff_t Kp)
{
    /* the K label columns of each row (padding columns are never read), cleared
     * row by row (small stores: the token lanes flush every few groups, where one memset of
     * the whole block ran as a slow `rep stos`) */
    for (ptrdiff_t i = 0; i < 2 * K; ++i) {
        fc_crf_add_row(facc + i * Kp, gacc + i * Kp, K);
        memset(facc + i * Kp, 0, sizeof(fc_real) * (size_t)K);
    }
    memset(cnt, 0, sizeof(int) * (size_t)(2 * K + 1));
}

/* One kept position of a (Bi-)MEMM, rows of NV vectors held in registers (NV a
 * compile-time constant after inlining).  ev: the emission row (-inf padded); gf/gb:
 * conditioning rows of G / G^T (-inf padded, gb NULL when one direction); ey = e[yk].
 * Adds to the log-likelihoods and normaliser products (a direction whose logits are all
 * -inf is marked dead and contributes nothing else); when gout != NULL writes
 * gout (NV vectors) = cf (softmax_f - onehot) + cb (softmax_b - onehot) and adds the two
 * terms to the double rows gaf, gab (either may be NULL). */
FC_INLINE void fc_memm_tok(const fc_vr *ev, const fc_real *gf, const fc_real *gb, fc_real ey,
                                    int64_t yk, const int NV, fc_real cf, fc_real cb, double *llf,
                                    double *prf, int *deadf, double *llb, double *prb, int *deadb,
                                    fc_vr *gout, fc_real *gaf, fc_real *gab)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    const vr z = {0};
    vr lf[16], lb[16], mf, mb = z, sf = z, sb = z;
    for (int q = 0; q < NV; ++q) {
        vr w;
        memcpy(&w, gf + q * FC_VLEN, sizeof w);
        lf[q] = ev[q] + w;
        lb[q] = z;
        if (gb != NULL) {
            memcpy(&w, gb + q * FC_VLEN, sizeof w);
            lb[q] = ev[q] + w;
        }
    }
    mf = lf[0];
    for (int q = 1; q < NV; ++q) { vi g = lf[q] > mf; mf = (vr)(((vi)lf[q] & g) | ((vi)mf & ~g)); }
    fc_real m1 = fc_crf_vhmax(&mf, 1), m2 = -FC_INF;
    if (gb != NULL) {
        mb = lb[0];
        for (int q = 1; q < NV; ++q) { vi g = lb[q] > mb; mb = (vr)(((vi)lb[q] & g) | ((vi)mb & ~g)); }
        m2 = fc_crf_vhmax(&mb, 1);
    }
    const int okf = m1 != -FC_INF, okb = gb != NULL && m2 != -FC_INF;
    mf = z + (okf ? m1 : (fc_real)0);
    mb = z + (okb ? m2 : (fc_real)0);
    for (int q = 0; q < NV; ++q) {
        lf[q] -= mf;
        fc_crf_vexp(&lf[q], 1);
        sf += lf[q];
        if (gb != NULL) {
            lb[q] -= mb;
            fc_crf_vexp(&lb[q], 1);
            sb += lb[q];
        }
    }
    fc_real s1 = fc_crf_vhsum(&sf, 1), s2 = gb != NULL ? fc_crf_vhsum(&sb, 1) : (fc_real)1;
    if (okf) { *llf += (double)(ey + gf[yk]) - (double)m1; *prf *= (double)s1; } else { *deadf = 1; }
    if (okb) { *llb += (double)(ey + gb[yk]) - (double)m2; *prb *= (double)s2; } else if (gb != NULL) { *deadb = 1; }
    if (gout == NULL) return;
    const fc_real uf = okf ? cf : (fc_real)0, ub = okb ? cb : (fc_real)0;
    const vr af = z + (okf ? uf / s1 : (fc_real)0), ab = z + (okb ? ub / s2 : (fc_real)0);
    vi lane;
    for (int l = 0; l < (int)FC_VLEN; ++l) lane[l] = l;
    for (int q = 0; q < NV; ++q) {
        vi hot = lane + (q * (int)FC_VLEN) == (vi){0} + (__typeof__(lane[0]))yk;
        vr a = lf[q] * af - (vr)(hot & (vi)(z + uf));
        vr b = gb != NULL ? lb[q] * ab - (vr)(hot & (vi)(z + ub)) : z;
        gout[q] = a + b;
        if (gaf != NULL && okf) fc_memm_vadd(gaf + q * FC_VLEN, a);
        if (gab != NULL && okb) fc_memm_vadd(gab + q * FC_VLEN, b);
    }
}

/* The same token with one exp per label shared by both directions: with x = exp(e - e[yk])
 * and the tables EG[c, :] = exp(G[c, :] - rm[c]) (rm[c] = max of row c), the local
 * normaliser of a direction is sum_j x_j EG[c, j] times exp(e[yk] + rm[c]).  Returns -1,
 * having changed nothing, when a normaliser falls below FC_MEMM_TINY (a dead row, or
 * emission and transition maxima far apart) or some e_j - e[yk] > FC_MEMM_SHIFT: the
 * caller then does the token exactly. */
FC_INLINE int fc_memm_tok_sh(const fc_vr *ev, const fc_real *ef, const fc_real *eb,
                                      fc_real rf, fc_real rb, const fc_real *gf, const fc_real *gb, fc_real ey,
                                      int64_t yk, const int NV, fc_real cf, fc_real cb, double *llf,
                                      double *prf, double *llb, double *prb, fc_vr *gout,
                                      fc_real *gaf, fc_real *gab)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    const vr z = {0};
    vr x[16], sf = z, sb = z;
    /* shift by the gold emission instead of the row maximum (no horizontal max): exps of
     * e - e[yk] <= FC_MEMM_SHIFT stay far from overflow (sums <= 130 e^40 in float, e^100 in
     * double, so coef / sum stays normal and the double normaliser products, renormalised
     * above 1e150, stay finite); a token with a larger gap is done exactly */
    const fc_real me = ey;
    const vr mev = z + me;
    for (int q = 0; q < NV; ++q) {
        x[q] = ev[q] - mev;
        /* all-ones bits (a NaN) where the gap is too large (also e[yk] = -inf, or NaN there
         * from -inf - -inf): the sums below become NaN and fail the FC_MEMM_TINY test */
        x[q] = (vr)((vi)x[q] | (x[q] > (fc_real)FC_MEMM_SHIFT));
        fc_crf_vexp(&x[q], 1);
    }
    vr pf[16], pb[16];
    for (int q = 0; q < NV; ++q) {
        pf[q] = x[q] * FC_VLOAD(ef + q * FC_VLEN);
        sf += pf[q];
    }
    if (gb != NULL) /* (tests hoisted out of the vector loops: GCC kept them inside) */
        for (int q = 0; q < NV; ++q) {
            pb[q] = x[q] * FC_VLOAD(eb + q * FC_VLEN);
            sb += pb[q];
        }
    else
        for (int q = 0; q < NV; ++q) pb[q] = z;
    const fc_real s1 = fc_crf_vhsum(&sf, 1), s2 = gb != NULL ? fc_crf_vhsum(&sb, 1) : (fc_real)1;
    if (!(s1 >= (fc_real)FC_MEMM_TINY) || !(s2 >= (fc_real)FC_MEMM_TINY)) return -1;
    *llf += (double)(ey + gf[yk]) - (double)me - (double)rf;
    *prf *= (double)s1;
    if (gb != NULL) {
        *llb += (double)(ey + gb[yk]) - (double)me - (double)rb;
        *prb *= (double)s2;
    }
    if (gout == NULL) return 0;
    const vr af = z + cf / s1, ab = z + cb / s2;
    const vi cfv = (vi)(z + cf), cbv = gb != NULL ? (vi)(z + cb) : (vi)z; /* pb = 0 without gb */
    vi lane;
    for (int l = 0; l < (int)FC_VLEN; ++l) lane[l] = l;
    const vi yv = (vi){0} + (__typeof__(lane[0]))yk;
    if (gaf != NULL && gab != NULL) { /* an interior Bi-MEMM token: no tests in the loop */
        for (int q = 0; q < NV; ++q) {
            const vi hot = lane + (q * (int)FC_VLEN) == yv;
            const vr a = pf[q] * af - (vr)(hot & cfv), b = pb[q] * ab - (vr)(hot & cbv);
            gout[q] = a + b;
            fc_memm_vadd(gaf + q * FC_VLEN, a);
            fc_memm_vadd(gab + q * FC_VLEN, b);
        }
        return 0;
    }
    for (int q = 0; q < NV; ++q) {
        const vi hot = lane + (q * (int)FC_VLEN) == yv;
        const vr a = pf[q] * af - (vr)(hot & cfv), b = pb[q] * ab - (vr)(hot & cbv);
        gout[q] = a + b;
        if (gaf != NULL) fc_memm_vadd(gaf + q * FC_VLEN, a);
        if (gab != NULL) fc_memm_vadd(gab + q * FC_VLEN, b);
    }
    return 0;
}

/* One kept position k (of n, at pos[k]) of fc_memm_seq_nv: the shared-exp token, or the exact
 * one when that fails or exact != 0; adds to the gradient rows (ge row fully written; with
 * safe == 0 whole-vector stores may run into the following rows, writing zeros there). */
FC_INLINE void fc_memm_one(const fc_real *emb, const fc_real *Gp, const fc_real *GTp, const ptrdiff_t *pos,
                                    ptrdiff_t k, ptrdiff_t n, ptrdiff_t Tn, const int64_t *y, ptrdiff_t K, int bidir,
                                    fc_real fc, fc_real *ge, double *gacc, fc_real *facc, int *cnt,
                                    const fc_real *EG, const fc_real *rm, const int NV, int exact, int safe,
                                    const fc_vi *bmask, double *llf, double *prf, int *deadf,
                                    double *llb, double *prb, int *deadb)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    const ptrdiff_t Kp = NV * FC_VLEN, Kv = (K + FC_VLEN - 1) / FC_VLEN * FC_VLEN;
    const fc_real *e_end = emb + Tn * K;
    const ptrdiff_t t = pos[k];
    const fc_real *e = emb + t * K;
    vr ev[16], go[16];
    fc_crf_vrow(e, K, e_end, bmask, ev, NV);
    const int64_t yk = y[t];
    const int64_t cf = k == 0 ? K : y[pos[k - 1]];
    const int64_t cb = k == n - 1 ? K : y[pos[k + 1]];
    fc_real *gaf = gacc != NULL && cf < K ? facc + cf * Kp : NULL;
    fc_real *gab = gacc != NULL && bidir && cb < K ? facc + (K + cb) * Kp : NULL;
    const fc_real *gfr = Gp + cf * Kp, *gbr = bidir ? GTp + cb * Kp : NULL;
    if (exact || EG == NULL
        || fc_memm_tok_sh(ev, EG + cf * Kp, EG + (K + 1 + cb) * Kp, rm[cf], rm[K + 1 + cb], gfr, gbr,
                                   e[yk], yk, NV, fc, bidir ? fc : (fc_real)0, llf, prf, llb, prb,
                                   ge != NULL ? go : NULL, gaf, gab) != 0)
        fc_memm_tok(ev, gfr, gbr, e[yk], yk, NV, fc, bidir ? fc : (fc_real)0, llf, prf, deadf,
                             llb, prb, deadb, ge != NULL ? go : NULL, gaf, gab);
    if (*prf > 1e150 || *prf < 1e-150) { *llf -= log(*prf); *prf = 1.0; }
    if (*prb > 1e150 || *prb < 1e-150) { *llb -= log(*prb); *prb = 1.0; }
    if (gaf != NULL && ++cnt[cf] == FC_MEMM_FLUSH) {
        fc_memm_flush_row(gaf, gacc + cf * Kp, Kp);
        cnt[cf] = 0;
    }
    if (gab != NULL && ++cnt[K + cb] == FC_MEMM_FLUSH) {
        fc_memm_flush_row(gab, gacc + (K + cb) * Kp, Kp);
        cnt[K + cb] = 0;
    }
    if (ge == NULL) return;
    /* the row: softmax terms minus the onehot, lanes >= K zero; whole-vector stores may
     * run into the next rows (they get zeros, and later kept rows are written after) */
    fc_real *gt = ge + t * K;
    if (!safe && gt + Kv <= ge + Tn * K) {
        for (int q = 0; q < NV; ++q) {
            ptrdiff_t j0 = q * FC_VLEN;
            if (j0 >= K) break;
            vr v = go[q];
            if (j0 + FC_VLEN > K) v = (vr)((vi)v & *bmask);
            memcpy(gt + j0, &v, sizeof v);
        }
    } else {
        fc_crf_vstore_row(gt, go, K, NV); /* exact width: nothing past the row */
    }
}

/* Token lanes (fc_memm_grp): used for K <= FC_MEMM_LK (measured crossover, float32 1 thread:
 * about 15% faster at K = 4..9, slower from K = 12), where label lanes waste padding
 * and each token's short dependency chain (exp, horizontal sums, division) leaves the
 * core idle. */
#define FC_MEMM_LK 10
_Static_assert(FC_MEMM_LK == 10, "fc_memm_lanes has a case for each K <= FC_MEMM_LK");

/* v[l] = table[idx[l]] for a table of nt vectors (entry c at tab[c / W][c % W]) and
 * idx[l] < nt * W, nt <= NT (compile-time): in-register permutes, two vectors at a time
 * (GCC's __builtin_shuffle with run-time indices; Clang loads the lanes). */
FC_INLINE void fc_memm_lookup(const fc_real *tab, int nt, const int NT, const fc_vi *idxp,
                                       fc_vr *out)
{
    const fc_vi idx = *idxp;
#if defined(__clang__)
    /* Clang has no shuffle by run-time indices: the lanes are loaded from the table (a gather) */
    (void)nt;
    (void)NT;
    for (int l = 0; l < (int)FC_VLEN; ++l) (*out)[l] = tab[idx[l]];
#else
    typedef fc_vr vr;
    typedef fc_vi vi;
    vr t0, t1;
    memcpy(&t0, tab, sizeof t0);
    if (nt == 1) {
        *out = __builtin_shuffle(t0, idx);
        return;
    }
    memcpy(&t1, tab + FC_VLEN, sizeof t1);
    vr r = __builtin_shuffle(t0, t1, idx);
    for (int p = 1; 2 * p < NT; ++p) {
        if (2 * p >= nt) break;
        memcpy(&t0, tab + 2 * p * FC_VLEN, sizeof t0);
        if (2 * p + 1 < nt) memcpy(&t1, tab + (2 * p + 1) * FC_VLEN, sizeof t1);
        else t1 = t0;
        vr s = __builtin_shuffle(t0, t1, idx);
        vi sel = idx / (2 * (int)FC_VLEN) == (vi){0} + p;
        r = (vr)(((vi)s & sel) | ((vi)r & ~sel));
    }
    *out = r;
#endif
}

/* In-register transpose of a W x W block (W = FC_VLEN vectors r[0..W)): unpack, shuffle and
 * 128-bit lane permutes with constant masks. */
FC_INLINE void fc_memm_transpose(fc_vr *r)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
#if FC_REAL_DOUBLE
    vr t0 = FC_SHUFFLE2(r[0], r[1], vi, 0, 4, 2, 6), t1 = FC_SHUFFLE2(r[0], r[1], vi, 1, 5, 3, 7);
    vr t2 = FC_SHUFFLE2(r[2], r[3], vi, 0, 4, 2, 6), t3 = FC_SHUFFLE2(r[2], r[3], vi, 1, 5, 3, 7);
    r[0] = FC_SHUFFLE2(t0, t2, vi, 0, 1, 4, 5);
    r[1] = FC_SHUFFLE2(t1, t3, vi, 0, 1, 4, 5);
    r[2] = FC_SHUFFLE2(t0, t2, vi, 2, 3, 6, 7);
    r[3] = FC_SHUFFLE2(t1, t3, vi, 2, 3, 6, 7);
#else
    vr t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = FC_SHUFFLE2(r[i], r[i + 1], vi, 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = FC_SHUFFLE2(r[i], r[i + 1], vi, 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = FC_SHUFFLE2(t[i], t[i + 2], vi, 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = FC_SHUFFLE2(t[i], t[i + 2], vi, 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = FC_SHUFFLE2(t[i + 1], t[i + 3], vi, 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = FC_SHUFFLE2(t[i + 1], t[i + 3], vi, 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int i = 0; i < 4; ++i) {
        r[i] = FC_SHUFFLE2(u[i], u[i + 4], vi, 0, 1, 2, 3, 8, 9, 10, 11);
        r[i + 4] = FC_SHUFFLE2(u[i], u[i + 4], vi, 4, 5, 6, 7, 12, 13, 14, 15);
    }
#endif
}

/* Per-lane log-likelihood accumulators of the token lanes: the product of the inverse gold
 * probabilities (normaliser over gold term, each >= 1) is kept as P * 2^(E + Ed) with P in
 * [1, 2) in fc_real lanes: after every multiply the exponent field goes to the integer lanes E
 * (exact, no overflow, no log per token; one rounding per factor, 2^-24 in float, far below
 * the float result's).  E holds biased exponent fields (at most 255 / 2047 a group), folded
 * into the double lanes Ed every FC_MEMM_LFOLD groups; a sequence's log-likelihood is
 * -log of the product of its lanes (fc_memm_lsum). */
#define FC_MEMM_LFOLD 4096
typedef double fc_vdl __attribute__((vector_size(8 * FC_VLEN))); /* FC_VLEN doubles */
typedef struct {
    fc_vr P;
    fc_vi E;
    fc_vdl Ed;
    int n; /* groups since the last fold */
} fc_memm_lacc;

FC_INLINE void fc_memm_lzero(fc_memm_lacc *a)
{
    memset(a, 0, sizeof *a);
    a->P = FC_BCAST((fc_real)1);
}

/* Ed += E - n bias (the unbiased exponents of the last n groups), E = 0 */
FC_INLINE void fc_memm_lfold(fc_memm_lacc *a)
{
    a->Ed += __builtin_convertvector(a->E, fc_vdl) - (double)a->n * (FC_REAL_DOUBLE ? 1023.0 : 127.0);
    a->E = (fc_vi){0};
    a->n = 0;
}

/* Multiplies in s (lanes; 1 where unused; from about 1 to FC_MEMM_QMAX, see fc_memm_grp, so
 * P s is positive and normal). */
FC_INLINE void fc_memm_lmul(fc_memm_lacc *a, const fc_vr *s)
{
    typedef fc_vi vi;
#if FC_REAL_DOUBLE
    typedef uint64_t vu __attribute__((vector_size(32)));
    const vu mant = (vu){0} + 0x000fffffffffffffULL, one = (vu){0} + 0x3ff0000000000000ULL;
    const int mb = 52;
#else
    typedef uint32_t vu __attribute__((vector_size(32)));
    const vu mant = (vu){0} + 0x007fffffu, one = (vu){0} + 0x3f800000u;
    const int mb = 23;
#endif
    const vu bits = (vu)(a->P * *s);
    a->E += (vi)(bits >> mb);
    a->P = (fc_vr)((bits & mant) | one);
    if (++a->n == FC_MEMM_LFOLD) fc_memm_lfold(a);
}

/* The log-likelihood: -log of the product of all lanes. */
FC_INLINE double fc_memm_lsum(fc_memm_lacc *a)
{
    fc_memm_lfold(a);
    double e = 0.0, p = 1.0; /* p: product of the FC_VLEN values in [1, 2), one log */
    for (int l = 0; l < (int)FC_VLEN; ++l) {
        e += a->Ed[l];
        p *= (double)a->P[l];
    }
    return -(e * 0.69314718055994530942 + log(p));
}

/* The gradient outputs of lane l of a token-lane group (fc_memm_grp): its emission-gradient
 * row gt = A + Bv (NULL: none), and when facc != NULL its transitions-gradient rows, forward
 * A (row cf, when cf < K) and backward Bv (row K + cb, when cb < K), into the block
 * accumulators facc (flushed by group counts, see fc_memm_lanes_k).  A, Bv: K label vectors
 * whose whole blocks of W are transposed (lane l of block j0 / W holds the row's entries
 * j0 .. j0 + W); Bv is zero when !bidir. */
FC_INLINE void fc_memm_lane_out(fc_real *gt, fc_real *facc, const fc_vr *A,
                                         const fc_vr *Bv, int l, ptrdiff_t cf, ptrdiff_t cb,
                                         const ptrdiff_t K, const ptrdiff_t Kp, int bidir)
{
    const ptrdiff_t W = FC_VLEN, Kf = K / W * W;
    if (gt != NULL) {
        for (ptrdiff_t j0 = 0; j0 < Kf; j0 += W) {
            const fc_vr g = A[j0 + l] + Bv[j0 + l];
            memcpy(gt + j0, &g, sizeof g);
        }
        for (ptrdiff_t j = Kf; j < K; ++j) gt[j] = A[j][l] + Bv[j][l];
    }
    if (facc == NULL) return;
    if (cf < K) {
        fc_real *fa = facc + cf * Kp;
        for (ptrdiff_t j0 = 0; j0 < Kf; j0 += W) fc_memm_vadd(fa + j0, A[j0 + l]);
        for (ptrdiff_t j = Kf; j < K; ++j) fa[j] += A[j][l];
    }
    if (bidir && cb < K) {
        fc_real *fb = facc + (K + cb) * Kp;
        for (ptrdiff_t j0 = 0; j0 < Kf; j0 += W) fc_memm_vadd(fb + j0, Bv[j0 + l]);
        for (ptrdiff_t j = Kf; j < K; ++j) fb[j] += Bv[j][l];
    }
}

/* nl <= W = FC_VLEN consecutive kept positions k0 .. k0 + nl - 1 of a sequence (n kept) with
 * the tokens in the vector lanes (K <= FC_MEMM_LK): the shared exp of fc_memm_tok_sh, label by
 * label, with vertical sums and two divisions per direction and group (no horizontal work);
 * rows in and out by W x W transposes.  EGT: (2K, Cp) transposed exp tables,
 * EGT[(d K + j) Cp + c] = EG[(d (K + 1) + c) Kp + j] for c <= K, 0 beyond (Cp = (NV + 1) W).
 * Multiplies the inverse gold probabilities (normaliser over gold term, both from the shared
 * exps) into the lane accumulators af_, ab_ and adds the gradients (exact-width row stores,
 * facc blocks with their FC_MEMM_FLUSH counts) as fc_memm_one does.  Returns the bit mask of
 * the lanes left untouched (shared exp not trusted): the caller does them exactly (with safe
 * stores), after this group. */
FC_INLINE unsigned fc_memm_grp(const fc_real *emb, const ptrdiff_t *pos, ptrdiff_t k0, int nl,
                                        ptrdiff_t n, const int64_t *y, const ptrdiff_t K, const int bidir, fc_real fc,
                                        fc_real *ge, fc_real *facc, const fc_real *EGT,
                                        const int NV, fc_memm_lacc *af_,
                                        fc_memm_lacc *ab_)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    typedef __typeof__(((vi){0})[0]) li; /* a lane of vi */
    enum { W = (int)FC_VLEN };
    const ptrdiff_t Kp = NV * FC_VLEN, Cp = (NV + 1) * FC_VLEN;
    const int nt = (int)((K + FC_VLEN) / FC_VLEN); /* table vectors holding c = 0..K */
    const vr z = {0};
    ptrdiff_t tl[W]; /* each lane's position (unused lanes repeat lane 0) */
    vi yv, cfv, cbv; /* gold label, forward and backward conditioning labels (K: none) */
    vi act;          /* lanes in use (l < nl) */
    const int64_t prev = k0 == 0 ? K : y[pos[k0 - 1]], next = k0 + nl == n ? K : y[pos[k0 + nl]];
    if (nl == W && pos[k0 + W - 1] - pos[k0] == W - 1) {
        /* W consecutive positions (no mask hole): labels by vector loads and lane shifts */
        typedef int64_t vl __attribute__((vector_size(8 * FC_VLEN)));
        vl yw;
        memcpy(&yw, y + pos[k0], sizeof yw);
        yv = __builtin_convertvector(yw, vi);
#if FC_REAL_DOUBLE
        cfv = FC_SHUFFLE1(yv, vi, 0, 0, 1, 2);
        cbv = FC_SHUFFLE1(yv, vi, 1, 2, 3, 3);
#else
        cfv = FC_SHUFFLE1(yv, vi, 0, 0, 1, 2, 3, 4, 5, 6);
        cbv = FC_SHUFFLE1(yv, vi, 1, 2, 3, 4, 5, 6, 7, 7);
#endif
        cfv[0] = (li)prev;
        cbv[W - 1] = (li)next;
        for (int l = 0; l < W; ++l) {
            act[l] = -1;
            tl[l] = pos[k0] + l;
        }
    } else {
        /* gold labels at kept positions k0 - 1 .. k0 + W: lane l has cf = yy[l], y = yy[l + 1],
         * cb = yy[l + 2] */
        int64_t yy[W + 2];
        yy[0] = prev;
        for (int l = 0; l < W; ++l) yy[l + 1] = l < nl ? y[pos[k0 + l]] : K;
        yy[nl + 1] = next;
        for (int l = 0; l < W; ++l) {
            const int i = l < nl ? l : 0;
            act[l] = l < nl ? -1 : 0;
            tl[l] = pos[k0 + i];
            yv[l] = (li)yy[i + 1];
            cfv[l] = (li)yy[i];
            cbv[l] = (li)yy[i + 2];
        }
    }
    const fc_real *er[W];
    for (int l = 0; l < W; ++l) er[l] = emb + tl[l] * K;
    /* the emissions label by label, xe[j][l] = er[l][j]: a transpose of row loads for each
     * whole block of W labels, lane by lane for the last partial one */
    vr xe[FC_MEMM_LK];
#pragma GCC unroll 4
    for (ptrdiff_t j0 = 0; j0 < K; j0 += W) {
        if (K - j0 >= W) {
#pragma GCC unroll 8
            for (int l = 0; l < W; ++l) xe[j0 + l] = FC_VLOAD(er[l] + j0); /* see FC_VLOAD */
            fc_memm_transpose(xe + j0);
        } else {
            for (ptrdiff_t j = j0; j < K; ++j)
                for (int l = 0; l < W; ++l) xe[j][l] = er[l][j];
        }
    }
    /* each lane's gold emission er[l][yv[l]], by selects (no gathers).  The masks of the gold
     * label, yv == j, are recomputed where used below: one compare each (an array of them,
     * computed once, was spilled and cost 2 % more instructions) */
    vr eyv = xe[0];
    for (ptrdiff_t j = 1; j < K; ++j) {
        const vi hit = yv == (vi){0} + (li)j;
        eyv = (vr)(((vi)xe[j] & hit) | ((vi)eyv & ~hit));
    }
    /* pf[j] = exp(e_j - e_y) EG[cf, j], sf their sum; tfy = EG[cf, y] (the gold term pf[y], as
     * exp(0) = 1): the gold probability is tfy / sf; the same backward */
    vr pf[FC_MEMM_LK], pb[FC_MEMM_LK], sf = z, sb = z, tfy = z, tby = z;
#pragma GCC unroll 16
    for (ptrdiff_t j = 0; j < K; ++j) {
        vr x = xe[j] - eyv;
        /* all-ones bits (a NaN) where the gap is too large, as in fc_memm_tok_sh */
        x = (vr)((vi)x | (x > (fc_real)FC_MEMM_SHIFT));
        fc_crf_vexp(&x, 0);
        vr tab;
        fc_memm_lookup(EGT + j * Cp, nt, NV + 1, &cfv, &tab);
        const vi hit = yv == (vi){0} + (li)j;
        tfy = (vr)(((vi)tab & hit) | ((vi)tfy & ~hit));
        pf[j] = x * tab;
        sf += pf[j];
        pb[j] = x;
    }
    /* the backward direction in a second pass over the exps (fewer live registers) */
    if (bidir)
#pragma GCC unroll 16
        for (ptrdiff_t j = 0; j < K; ++j) {
            vr tab;
            fc_memm_lookup(EGT + (K + j) * Cp, nt, NV + 1, &cbv, &tab);
            const vi hit = yv == (vi){0} + (li)j;
            tby = (vr)(((vi)tab & hit) | ((vi)tby & ~hit));
            pb[j] *= tab;
            sb += pb[j];
        }
    if (!bidir) sb = tby = z + 1;
    /* the inverse gold probabilities (normaliser over gold term), trusted with the normalisers
     * from FC_MEMM_TINY up and up to FC_MEMM_QMAX (a forbidden gold transition gives inf, or
     * NaN with a dead row, and is redone exactly) */
    const vr q1 = sf / tfy, q2 = sb / tby;
    const fc_real tiny = (fc_real)FC_MEMM_TINY, qmax = (fc_real)FC_MEMM_QMAX;
    const vi ok = (sf >= tiny) & (sb >= tiny) & (q1 <= qmax) & (q2 <= qmax), good = ok & act;
    unsigned bad = 0;
    {
        const vi b = act & ~ok;
        uint64_t u[4];
        memcpy(u, &b, sizeof u);
        if ((u[0] | u[1] | u[2] | u[3]) != 0)
            for (int l = 0; l < W; ++l) bad |= (unsigned)(b[l] & 1) << l;
    }
    {
        /* unused and bad lanes multiply by 1 */
        const vr one = FC_BCAST((fc_real)1);
        const vr s1 = (vr)(((vi)q1 & good) | ((vi)one & ~good));
        fc_memm_lmul(af_, &s1);
        if (bidir) {
            const vr s2 = (vr)(((vi)q2 & good) | ((vi)one & ~good));
            fc_memm_lmul(ab_, &s2);
        }
    }
    if (ge == NULL && facc == NULL) return bad;
    /* bad lanes may hold anything from here on: they are never stored */
    const vr fcv = z + fc, af = fc / sf, ab = bidir ? fc / sb : z;
    /* back to rows: whole blocks of W labels by transposes, the last partial block by lanes */
    vr A[FC_MEMM_LK], Bv[FC_MEMM_LK];
    for (ptrdiff_t j = 0; j < K; ++j) {
        const vr gold = (vr)((yv == (vi){0} + (li)j) & (vi)fcv); /* fc at the gold label */
        A[j] = pf[j] * af - gold;
        Bv[j] = bidir ? pb[j] * ab - gold : z;
    }
    const ptrdiff_t Kf = K / W * W; /* labels in whole blocks */
    for (ptrdiff_t j0 = 0; j0 < Kf; j0 += W) {
        fc_memm_transpose(A + j0);
        if (bidir) fc_memm_transpose(Bv + j0);
    }
    /* lane by lane in a rolled loop: unrolled (rows in registers, constant offsets, the
     * emission-gradient rows summed first) it ran 9% slower at K = 9 with 17% fewer
     * instructions (float32, 1 thread) */
#pragma GCC unroll 1
    for (int l = 0; l < nl; ++l)
        if (!(bad >> l & 1u))
            fc_memm_lane_out(ge != NULL ? ge + tl[l] * K : NULL, facc, A, Bv, l, cfv[l], cbv[l],
                                      K, Kp, bidir);
    return bad;
}

/* Token-lane groups of one sequence from kept position k on, with K a compile-time constant
 * (loops unrolled, rows of whole vectors and a fixed tail), while a group fills more than a
 * third of the lanes; stops after a group with untrusted lanes.  Returns the kept position
 * reached; *bad: the untrusted lanes of the last group, which starts at *kg (0: none, the
 * caller goes on with single tokens from the position returned). */
FC_INLINE ptrdiff_t fc_memm_lanes_k(const fc_real *emb, const ptrdiff_t *pos, ptrdiff_t k, ptrdiff_t n,
                                             const int64_t *y, const ptrdiff_t K, const int bidir, fc_real fc,
                                             fc_real *ge, double *gacc, fc_real *facc, int *cnt,
                                             const fc_real *EGT, const int NV, fc_memm_lacc *af,
                                             fc_memm_lacc *ab, ptrdiff_t *kg, unsigned *bad)
{
    while (k < n) {
        /* a partial last group when it fills more than a third of the lanes */
        const int nl = n - k < FC_VLEN ? (int)(n - k) : (int)FC_VLEN;
        if (3 * nl <= (int)FC_VLEN) break;
        unsigned b = fc_memm_grp(emb, pos, k, nl, n, y, K, bidir, fc, ge, facc, EGT, NV, af, ab);
        if (facc != NULL && ++cnt[2 * K] == FC_MEMM_FLUSH / FC_VLEN)
            fc_memm_flush_all(facc, gacc, cnt, K, NV * FC_VLEN);
        k += nl;
        if (b != 0) {
            *kg = k - nl;
            *bad = b;
            return k;
        }
    }
    *bad = 0;
    return k;
}

static FC_MULTIVERSION ptrdiff_t fc_memm_lanes(const fc_real *emb, const ptrdiff_t *pos, ptrdiff_t k,
                                                        ptrdiff_t n, const int64_t *y, ptrdiff_t K, int bidir,
                                                        fc_real fc, fc_real *ge, double *gacc, fc_real *facc,
                                                        int *cnt, const fc_real *EGT, fc_memm_lacc *af,
                                                        fc_memm_lacc *ab, ptrdiff_t *kg, unsigned *bad)
{
    /* K and the direction count as compile-time constants */
#define FC_MEMM_LANES_K(kc) \
    case kc: return bidir ? fc_memm_lanes_k(emb, pos, k, n, y, kc, 1, fc, ge, gacc, facc, cnt, EGT, \
                                                     (int)((kc + FC_VLEN - 1) / FC_VLEN), af, ab, kg, bad) \
                          : fc_memm_lanes_k(emb, pos, k, n, y, kc, 0, fc, ge, gacc, facc, cnt, EGT, \
                                                     (int)((kc + FC_VLEN - 1) / FC_VLEN), af, ab, kg, bad)
    switch (K) {
    FC_MEMM_LANES_K(1); FC_MEMM_LANES_K(2); FC_MEMM_LANES_K(3); FC_MEMM_LANES_K(4); FC_MEMM_LANES_K(5);
    FC_MEMM_LANES_K(6); FC_MEMM_LANES_K(7); FC_MEMM_LANES_K(8); FC_MEMM_LANES_K(9); FC_MEMM_LANES_K(10);
    default: *bad = 0; return k; /* not reached: K <= FC_MEMM_LK = 10, the cases above */
    }
#undef FC_MEMM_LANES_K
}

/* Both directions of one sequence in one pass over its kept positions (rows of NV
 * vectors, Kp = NV * FC_VLEN; NV in 1..8, 12 or 16, see fc_memm_stride).  Gp/GTp: (K+1, Kp) as for
 * fc_memm_dir.  ge: (Tn, K) rows of this sequence, fully written (0 at masked positions), or
 * NULL; gacc: (2, K, Kp) double, facc: (2, K, Kp) block accumulators with counts cnt (2K + 1),
 * see FC_MEMM_FLUSH; the caller flushes the rows left at the end of its chunk.  EGT: the
 * token-lane tables (fc_memm_grp) or NULL. */
FC_INLINE double fc_memm_seq_nv(const fc_real *emb, const fc_real *Gp, const fc_real *GTp,
                                         const ptrdiff_t *pos, ptrdiff_t n, ptrdiff_t Tn, const int64_t *y,
                                         ptrdiff_t K, int bidir, double coef, fc_real *ge, double *gacc,
                                         fc_real *facc, int *cnt, const fc_real *EG, const fc_real *rm,
                                         const fc_real *EGT, const int NV)
{
    double llf = 0.0, prf = 1.0, llb = 0.0, prb = 1.0;
    int deadf = 0, deadb = 0;
    const fc_real fc = (fc_real)coef;
    if (ge != NULL && n < Tn) { /* zero the masked rows only (kept rows are fully written) */
        ptrdiff_t t0 = 0; /* rows before t0 are done */
        for (ptrdiff_t k = 0; k < n;) {
            if (pos[k] > t0) memset(ge + t0 * K, 0, sizeof(fc_real) * (pos[k] - t0) * K);
            /* past the run of consecutive kept positions from k: at once when it reaches
             * the last one (a lengths mask), else 8 at a time, then one by one */
            if (pos[n - 1] - pos[k] == n - 1 - k) {
                k = n;
            } else {
                while (k + 8 < n && pos[k + 8] - pos[k] == 8) k += 8;
                for (++k; k < n && pos[k] == pos[k - 1] + 1; ++k) {
                }
            }
            t0 = pos[k - 1] + 1;
        }
        if (Tn > t0) memset(ge + t0 * K, 0, sizeof(fc_real) * (Tn - t0) * K);
    }
    if (n == 0) return 0.0;
    fc_vi bmask;
    fc_crf_bmask(K, &bmask);
    ptrdiff_t k = 0;
    if ((NV - 1) * FC_VLEN < FC_MEMM_LK && EGT != NULL && EG != NULL && K <= FC_MEMM_LK) {
        fc_memm_lacc af, ab;
        fc_memm_lzero(&af);
        fc_memm_lzero(&ab);
        for (;;) {
            ptrdiff_t kg = 0;
            unsigned bad = 0;
            k = fc_memm_lanes(emb, pos, k, n, y, K, bidir, fc, ge, gacc, facc, cnt, EGT, &af, &ab, &kg,
                                       &bad);
            if (bad == 0) break;
            for (int l = 0; bad != 0; ++l, bad >>= 1)
                if (bad & 1u)
                    fc_memm_one(emb, Gp, GTp, pos, kg + l, n, Tn, y, K, bidir, fc, ge, gacc, facc, cnt, EG,
                                         rm, NV, 1, 1, &bmask, &llf, &prf, &deadf, &llb, &prb, &deadb);
        }
        llf += fc_memm_lsum(&af);
        llb += fc_memm_lsum(&ab);
    }
    for (; k < n; ++k)
        fc_memm_one(emb, Gp, GTp, pos, k, n, Tn, y, K, bidir, fc, ge, gacc, facc, cnt, EG, rm, NV, 0, 0,
                             &bmask, &llf, &prf, &deadf, &llb, &prb, &deadb);
    llf -= log(prf);
    llb -= log(prb);
    llf = deadf ? -INFINITY : llf;
    if (!bidir) return llf;
    llb = deadb ? -INFINITY : llb;
    return 0.5 * (llf + llb);
}

static FC_MULTIVERSION double fc_memm_seq(const fc_real *emb, const fc_real *Gp, const fc_real *GTp,
                                                   const ptrdiff_t *pos, ptrdiff_t n, ptrdiff_t Tn,
                                                   const int64_t *y, ptrdiff_t K, ptrdiff_t Kp, int bidir,
                                                   double coef, fc_real *ge, double *gacc, fc_real *facc,
                                                   int *cnt, const fc_real *EG, const fc_real *rm,
                                                   const fc_real *EGT)
{
#define FC_MEMM_CASE(nv) \
    case nv: return fc_memm_seq_nv(emb, Gp, GTp, pos, n, Tn, y, K, bidir, coef, ge, gacc, facc, cnt, EG, rm, \
                                                EGT, nv)
    switch (Kp / FC_VLEN) {
    FC_MEMM_CASE(1); FC_MEMM_CASE(2); FC_MEMM_CASE(3); FC_MEMM_CASE(4); FC_MEMM_CASE(5);
    FC_MEMM_CASE(6); FC_MEMM_CASE(7); FC_MEMM_CASE(8); FC_MEMM_CASE(12);
    default:
        return fc_memm_seq_nv(emb, Gp, GTp, pos, n, Tn, y, K, bidir, coef, ge, gacc, facc, cnt, EG, rm, EGT,
                                       16);
    }
#undef FC_MEMM_CASE
}
#endif
