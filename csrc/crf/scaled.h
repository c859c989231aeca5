/* CRF: the forward and backward recursions in exp space with per-step rescaling (the fast
 * path of fc_crf_forward and fc_crf_fb): the general row-table form and the register-blocked
 * form for Kp <= 8 vectors.  Instantiated once per precision: no include guard on purpose. */

/* Fills ws->A, ws->P, ws->c for positions pos[0..n); returns log Z, or NAN when
 * the scaled recursion is not trusted (caller falls back to log space).
 * The step normalisers are multiplied in double and their log taken only when the
 * product leaves [1e-150, 1e150]. */
static FC_MULTIVERSION double fc_crf_fwd_scaled(const fc_crf_tab *tb, fc_crf_ws *ws,
                                                         const fc_real *emb, ptrdiff_t n)
{
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    fc_real *restrict eb = ws->eb;
    if (tb->smax == -INFINITY || tb->nmax == -INFINITY) return NAN;
#if FC_VECTOR_EXT
    const fc_real *e_end = emb + (ws->pos[n - 1] + 1) * K; /* last readable emission of the sequence */
    fc_vi bmask;
    fc_crf_bmask(K, &bmask);
#endif
    double logz = tb->smax + tb->nmax + (double)(n - 1) * tb->tmax, prod = 1.0;
    int64_t esum = 0;
    for (ptrdiff_t j = K; j < Kp; ++j) eb[j] = -FC_INF;
    for (ptrdiff_t k = 0; k < n; ++k) {
        const fc_real *e = emb + ws->pos[k] * K;
        fc_real *restrict a = ws->A + k * Kp, *restrict p = ws->P + k * Kp;
#if FC_VECTOR_EXT
        fc_real m = fc_crf_row_load(e, NULL, K, Kp, eb, e_end, &bmask);
#else
        for (ptrdiff_t j = 0; j < K; ++j) eb[j] = e[j];
        fc_real m = fc_crf_maxv(eb, Kp);
#endif
        /* padding lanes: exp(-inf) <= 2^-149, multiplied by the zero padding of S / E / N */
        for (ptrdiff_t j = 0; j < Kp; ++j) p[j] = FC_EXP(eb[j] - m);
        if (k == 0) {
            for (ptrdiff_t j = 0; j < Kp; ++j) a[j] = tb->S[j] * p[j];
        } else {
            fc_crf_mv(a - Kp, tb->E, K, Kp, p, a);
        }
        fc_real c = fc_crf_sumv(a, Kp);
        if (!((double)c >= FC_CRF_TINY)) return NAN;
        int ex;
        fc_real inv = fc_crf_pow2inv(c, &ex); /* exact rescaling: row sum in [0.5, 1) */
        for (ptrdiff_t j = 0; j < Kp; ++j) a[j] *= inv;
        ws->c[k] = inv; /* 2^-ex, exact */
        logz += (double)m;
        esum += ex;
    }
    logz += (double)esum * 0.69314718055994530942;
    (void)prod;
    if (n > 0) {
        const fc_real *a = ws->A + (n - 1) * Kp;
        fc_real *q = ws->q;
        for (ptrdiff_t j = 0; j < Kp; ++j) q[j] = a[j] * tb->N[j];
        double c = (double)fc_crf_sumv(q, Kp);
        if (!(c >= FC_CRF_TINY)) return NAN;
        ws->c[n] = 1.0 / c;
        logz += log(prod) + log(c);
    }
    return logz;
}

#if FC_VECTOR_EXT
/* out (NV vectors) = sum_i x[i] M[i, :] over i < Kr (rows of Kp = NV * FC_VLEN), C chains; Kr
 * a positive multiple of C (the table rows past K are zero and x is finite there: no tail,
 * so that the chains stay in registers). */
FC_INLINE void fc_crf_vmv(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t Kr,
                                   fc_vr *out, const int NV, const int C)
{
    typedef fc_vr vr;
    const ptrdiff_t Kp = NV * FC_VLEN;
    const vr z = {0};
    vr acc[8]; /* chain c, vector q at c * NV + q (C * NV <= 8: one flat array stays in registers) */
    for (int l = 0; l < C * NV; ++l) acc[l] = z;
    ptrdiff_t i = 0;
    do { /* Kr >= C: at least one pass (a zero-trip path kept acc in memory) */
        for (int c = 0; c < C; ++c) {
            const vr xb = FC_BCAST(x[i + c]);
            const fc_real *row = M + (i + c) * Kp;
            for (int q = 0; q < NV; ++q) acc[c * NV + q] += xb * FC_VLOAD(row + q * FC_VLEN);
        }
        i += C;
    } while (i < Kr);
    for (int w = C / 2; w >= 1; w /= 2)
        for (int c = 0; c < w; ++c)
            for (int q = 0; q < NV; ++q) acc[c * NV + q] += acc[(c + w) * NV + q];
    for (int q = 0; q < NV; ++q) out[q] = acc[q];
}

/* log Z of one sequence (positions pos[0..n), n >= 1) by the scaled forward recursion of
 * fc_crf_fwd_scaled with the alphas held in NV registers (Kp = NV * FC_VLEN) and nothing
 * stored: forward only.  The exact power-of-2 rescaling of step k (bringing its row sum
 * into [0.5, 1)) is folded into step k + 1's emission factor, so the horizontal sum is not
 * on the step-to-step dependency chain (matrix-vector product, one multiply); the
 * products, the trust test (every row sum >= FC_CRF_TINY) and the result are those of
 * fc_crf_fwd_scaled.  The product uses C accumulator chains.  When A != NULL (with P and cs)
 * also stores what fc_crf_fwd_scaled stores for the backward: the rescaled rows A, the
 * emission factors P and the reciprocal normalisers cs.  Returns NAN when not trusted (the caller redoes
 * the sequence in log space). */
FC_INLINE double fc_crf_fwd_reg_nv(const fc_crf_tab *tb, const fc_real *emb, const ptrdiff_t *pos,
                                            ptrdiff_t n, const int NV, const int C, fc_real *restrict A,
                                            fc_real *restrict P, double *restrict cs)
{
    typedef fc_vr vr;
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    if (tb->smax == -INFINITY || tb->nmax == -INFINITY) return NAN;
    const fc_real *e_end = emb + (pos[n - 1] + 1) * K;
    fc_vi bmask;
    fc_crf_bmask(K, &bmask);
    const vr z = {0};
    union { vr v[8]; fc_real s[8 * FC_VLEN]; } ab; /* the alphas, for the broadcasts */
    memset(&ab, 0, sizeof ab);
    vr a[8], p[8], tab[8];
    memset(a, 0, sizeof a);
    double logz = tb->smax + tb->nmax + (double)(n - 1) * tb->tmax;
    int64_t esum = 0;
    int ex = 0;
    fc_real inv = 1;
    for (ptrdiff_t k = 0; k < n; ++k) {
        fc_crf_vrow(emb + pos[k] * K, K, e_end, &bmask, p, NV);
        const fc_real m = fc_crf_vhmax(p, NV);
        for (int q = 0; q < NV; ++q) {
            p[q] -= z + m;
            fc_crf_vexp(&p[q], 1); /* padding lanes: exp(-inf) = 0 */
        }
        if (P != NULL)
            for (int q = 0; q < NV; ++q) FC_VSTORE(P + k * Kp + q * FC_VLEN, p[q]);
        if (k == 0) {
            for (int q = 0; q < NV; ++q) {
                tab[q] = FC_VLOAD(tb->S + q * FC_VLEN);
                a[q] = tab[q] * p[q];
            }
        } else {
            for (int q = 0; q < NV; ++q) {
                ab.v[q] = a[q];
                p[q] *= z + inv; /* the previous step's rescaling */
            }
            fc_crf_vmv(ab.s, tb->E, tb->Kr, tab, NV, C);
            for (int q = 0; q < NV; ++q) a[q] = tab[q] * p[q];
        }
        const fc_real s = fc_crf_vhsum(a, NV);
        if (!((double)s >= FC_CRF_TINY)) return NAN;
        inv = fc_crf_pow2inv(s, &ex); /* exact: the stored row sums to [0.5, 1) */
        if (A != NULL) {
            for (int q = 0; q < NV; ++q) FC_VSTORE(A + k * Kp + q * FC_VLEN, a[q] * (z + inv));
            cs[k] = inv;
        }
        esum += ex;
        logz += (double)m;
    }
    for (int q = 0; q < NV; ++q) {
        tab[q] = FC_VLOAD(tb->N + q * FC_VLEN);
        a[q] = a[q] * tab[q] * (z + inv);
    }
    const double c = (double)fc_crf_vhsum(a, NV);
    if (!(c >= FC_CRF_TINY)) return NAN;
    if (cs != NULL) cs[n] = 1.0 / c;
    return logz + (double)esum * 0.69314718055994530942 + log(c);
}

static FC_MULTIVERSION double fc_crf_fwd_reg(const fc_crf_tab *tb, const fc_real *emb,
                                                      const ptrdiff_t *pos, ptrdiff_t n)
{
    if (tb->Kp == 2 * FC_VLEN) return fc_crf_fwd_reg_nv(tb, emb, pos, n, 2, 4, NULL, NULL, NULL);
    if (tb->Kp == 4 * FC_VLEN) return fc_crf_fwd_reg_nv(tb, emb, pos, n, 4, 2, NULL, NULL, NULL);
    return fc_crf_fwd_reg_nv(tb, emb, pos, n, 8, 1, NULL, NULL, NULL);
}
#endif


/* Transitions counts of fc_crf_bwd_scaled: accT[i, j] += sum_k A[k-1, i] W[k, j] (k in
 * [1, n), rows of Kp), float partial sums over blocks of FC_CRF_CBLK steps added to the double
 * rows; W (the column block) a compile-time constant so that the sums stay in registers, two
 * rows i at a time sharing the loads of W (odd K: the last row is summed twice, added once). */
#define FC_CRF_CBLK 64
FC_INLINE void fc_crf_counts_w(const fc_real *restrict A, const fc_real *restrict Wk, ptrdiff_t n,
                                        ptrdiff_t K, ptrdiff_t Kp, double *restrict accT, const int W)
{
#if FC_VECTOR_EXT
    typedef fc_vr vr;
    const int NV = W / (int)FC_VLEN;
    for (ptrdiff_t k0 = 1; k0 < n; k0 += FC_CRF_CBLK) {
        ptrdiff_t k1 = k0 + FC_CRF_CBLK < n ? k0 + FC_CRF_CBLK : n;
        for (ptrdiff_t jb = 0; jb < Kp; jb += W)
            for (ptrdiff_t i = 0; i < K; i += 2) {
                const ptrdiff_t i1 = i + 1 < K ? i + 1 : i;
                vr s0[2 * FC_CRF_WS / FC_VLEN], s1[2 * FC_CRF_WS / FC_VLEN];
                for (int q = 0; q < NV; ++q) s0[q] = s1[q] = (vr){0};
                for (ptrdiff_t k = k0; k < k1; ++k) {
                    const vr a0 = FC_BCAST(A[(k - 1) * Kp + i]), a1 = FC_BCAST(A[(k - 1) * Kp + i1]);
                    const fc_real *wk = Wk + k * Kp + jb;
                    for (int q = 0; q < NV; ++q) {
                        vr w;
                        memcpy(&w, wk + q * FC_VLEN, sizeof w);
                        s0[q] += a0 * w;
                        s1[q] += a1 * w;
                    }
                }
                fc_real s[2 * FC_CRF_WS];
                memcpy(s, s0, sizeof(vr) * (size_t)NV);
                fc_crf_add_row(s, accT + i * Kp + jb, W);
                if (i1 == i) break;
                memcpy(s, s1, sizeof(vr) * (size_t)NV);
                fc_crf_add_row(s, accT + i1 * Kp + jb, W);
            }
    }
#else
    for (ptrdiff_t k0 = 1; k0 < n; k0 += FC_CRF_CBLK) {
        ptrdiff_t k1 = k0 + FC_CRF_CBLK < n ? k0 + FC_CRF_CBLK : n;
        for (ptrdiff_t i = 0; i < K; ++i) {
            double *r = accT + i * Kp;
            for (ptrdiff_t jb = 0; jb < Kp; jb += W) {
                fc_real sv[2 * FC_CRF_WS];
                for (int v = 0; v < W; ++v) sv[v] = (fc_real)0;
                for (ptrdiff_t k = k0; k < k1; ++k) {
                    const fc_real ai = A[(k - 1) * Kp + i];
                    const fc_real *wk = Wk + k * Kp + jb;
                    for (int v = 0; v < W; ++v) sv[v] += ai * wk[v];
                }
                for (int v = 0; v < W; ++v) r[jb + v] += (double)sv[v];
            }
        }
    }
#endif
}

static FC_MULTIVERSION void fc_crf_counts(const fc_real *A, const fc_real *Wk, ptrdiff_t n, ptrdiff_t K,
                                                   ptrdiff_t Kp, double *accT)
{
    if (K <= FC_CRF_WS)
        fc_crf_counts_w(A, Wk, n, K, Kp, accT, FC_CRF_WS);
    else
        fc_crf_counts_w(A, Wk, n, K, Kp, accT, 2 * FC_CRF_WS);
}

/* Scaled backward after a successful scaled forward.  Writes node marginals
 * (node_b: (T, K) of this sequence, or NULL), pairwise marginals (pair_b, or
 * NULL) and, when acc != NULL, adds the expected counts to acc (K*Kp trans,
 * then Kp start, Kp end); the trans counts lack the factor E[i, j], applied by the
 * caller.  Overwrites ws->P.  Returns 0, or -1 when not trusted (log-space redo). */
static FC_MULTIVERSION int fc_crf_bwd_scaled(const fc_crf_tab *tb, fc_crf_ws *ws,
                                                      ptrdiff_t n, fc_real *node_b, fc_real *pair_b,
                                                      double *acc)
{
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    fc_real *restrict b = ws->b0, *restrict bn = ws->b1, *restrict w = ws->w, *restrict q = ws->q;
    double *accT = acc, *accS = acc ? acc + K * Kp : NULL, *accN = acc ? acc + K * Kp + Kp : NULL;
    fc_real inv = (fc_real)ws->c[n];
    for (ptrdiff_t j = 0; j < Kp; ++j) b[j] = tb->N[j] * inv;
    for (ptrdiff_t k = n - 1; k >= 0; --k) {
        const fc_real *a = ws->A + k * Kp;
        /* node marginals; their sum is 1 up to rounding unless something under/overflowed */
        for (ptrdiff_t j = 0; j < Kp; ++j) q[j] = a[j] * b[j];
        double s = (double)fc_crf_sumv(q, Kp);
        if (!(fabs(s - 1.0) <= FC_CRF_SUMTOL)) return -1;
        fc_real is = (fc_real)(1.0 / s);
        if (node_b != NULL) {
            fc_real *o = node_b + ws->pos[k] * K;
            for (ptrdiff_t j = 0; j < K; ++j) o[j] = q[j] * is;
        }
        if (acc != NULL && k == n - 1)
            for (ptrdiff_t j = 0; j < K; ++j) accN[j] += (double)(q[j] * is);
        if (k == 0) {
            if (acc != NULL)
                for (ptrdiff_t j = 0; j < K; ++j) accS[j] += (double)(q[j] * is);
            break;
        }
        /* w = psi_k * beta_k / c_k; pairwise (k-1, k) = a_{k-1}(i) E(i,j) w(j) / s */
        fc_real ic = (fc_real)ws->c[k];
        fc_real *p = ws->P + k * Kp;
        for (ptrdiff_t j = 0; j < Kp; ++j) w[j] = p[j] * b[j] * ic;
        const fc_real *ap = a - Kp;
        if (pair_b != NULL) {
            fc_real *o = pair_b + ws->pos[k] * K * K;
            for (ptrdiff_t i = 0; i < K; ++i) {
                fc_real ai = ap[i] * is;
                const fc_real *row = tb->E + i * Kp;
                for (ptrdiff_t j = 0; j < K; ++j) o[i * K + j] = ai * row[j] * w[j];
            }
        }
        if (acc != NULL)
            for (ptrdiff_t j = 0; j < Kp; ++j) p[j] = w[j] * is; /* kept for the count pass */
        /* beta_{k-1}(i) = sum_j E(i,j) w(j), vectorised over i through ET */
        fc_crf_mv(w, tb->ET, K, Kp, NULL, bn);
        fc_real *tmp = b; b = bn; bn = tmp;
    }
    if (acc != NULL) fc_crf_counts(ws->A, ws->P, n, K, Kp, accT);
    return 0;
}

#if FC_VECTOR_EXT
/* fc_crf_fwd_scaled then fc_crf_bwd_scaled for one sequence (positions ws->pos[0..n),
 * n >= 1) with rows of NV vectors in registers (Kp = NV * FC_VLEN): the same recursions,
 * rescalings and trust tests; the forward is fc_crf_fwd_reg_nv storing ws->A, ws->P, ws->c.
 * Writes gs times the node marginals into the rows of nodet (when not NULL; K entries each, kept
 * positions only), minus gs at the gold tag y[pos[k]] when y != NULL (the emission gradient); writes
 * the pairwise marginals (pair_b != NULL) and adds the expected counts (acc != NULL) as
 * fc_crf_bwd_scaled does.  Returns log Z, or NAN when not trusted (the caller redoes the
 * sequence in log space, rows and acc included). */
FC_INLINE double fc_crf_fb_reg_nv(const fc_crf_tab *tb, fc_crf_ws *ws,
                                           const fc_real *emb, ptrdiff_t n, fc_real *nodet, fc_real gs,
                                           const int64_t *y, fc_real *pair_b, double *acc, const int NV,
                                           const int C)
{
    typedef fc_vr vr;
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    const ptrdiff_t *pos = ws->pos;
    fc_real *restrict A = ws->A, *restrict P = ws->P;
    double *restrict cs = ws->c;
    const vr z = {0};
    union { vr v[8]; fc_real s[8 * FC_VLEN]; } xb; /* the row broadcast by the product */
    vr a[8], t[8], b[8];
    const double logz = fc_crf_fwd_reg_nv(tb, emb, pos, n, NV, C, A, P, cs);
    if (logz != logz) return NAN;
    const fc_real icn = (fc_real)cs[n];
    for (int q = 0; q < NV; ++q) b[q] = FC_VLOAD(tb->N + q * FC_VLEN) * (z + icn);
    double *accT = acc, *accS = acc ? acc + K * Kp : NULL, *accN = acc ? acc + K * Kp + Kp : NULL;
    for (ptrdiff_t k = n - 1; k >= 0; --k) {
        /* node marginals; their sum is 1 up to rounding unless something under/overflowed */
        for (int q = 0; q < NV; ++q) {
            a[q] = FC_VLOAD(A + k * Kp + q * FC_VLEN);
            a[q] *= b[q];
        }
        const double s = (double)fc_crf_vhsum(a, NV);
        if (!(fabs(s - 1.0) <= FC_CRF_SUMTOL)) return NAN;
        const fc_real is = (fc_real)(1.0 / s);
        for (int q = 0; q < NV; ++q) {
            a[q] *= z + is;
            t[q] = a[q] * (z + gs);
        }
        if (nodet != NULL) { /* NULL: pairwise marginals or counts only */
            fc_real *o = nodet + pos[k] * K;
            fc_crf_vstore_row(o, t, K, NV);
            if (y != NULL) o[y[pos[k]]] -= gs;
        }
        if (acc != NULL && k == n - 1)
            for (ptrdiff_t j = 0; j < K; ++j) accN[j] += (double)a[j / FC_VLEN][j % FC_VLEN];
        if (acc != NULL && k == 0)
            for (ptrdiff_t j = 0; j < K; ++j) accS[j] += (double)a[j / FC_VLEN][j % FC_VLEN];
        if (k == 0) break;
        /* w = psi_k * beta_k / c_k; beta_{k-1}(i) = sum_j E(i, j) w(j), through ET */
        const fc_real ic = (fc_real)cs[k];
        fc_real *pk = P + k * Kp;
        for (int q = 0; q < NV; ++q) {
            t[q] = FC_VLOAD(pk + q * FC_VLEN);
            xb.v[q] = t[q] * b[q] * (z + ic);
            if (acc != NULL) { /* kept for the count pass */
                const vr u = xb.v[q] * (z + is);
                FC_VSTORE(pk + q * FC_VLEN, u);
            }
        }
        if (pair_b != NULL) { /* pairwise (k-1, k) = a_{k-1}(i) E(i, j) w(j) / s */
            const fc_real *ap = A + (k - 1) * Kp;
            for (ptrdiff_t i = 0; i < K; ++i) {
                const vr ai = FC_BCAST(ap[i] * is);
                for (int q = 0; q < NV; ++q) {
                    t[q] = FC_VLOAD(tb->E + i * Kp + q * FC_VLEN);
                    t[q] = ai * t[q] * xb.v[q];
                }
                fc_crf_vstore_row(pair_b + (pos[k] * K + i) * K, t, K, NV);
            }
        }
        fc_crf_vmv(xb.s, tb->ET, tb->Kr, b, NV, C);
    }
    if (acc != NULL) fc_crf_counts(A, P, n, K, Kp, accT);
    return logz;
}

static FC_MULTIVERSION double fc_crf_fb_reg(const fc_crf_tab *tb, fc_crf_ws *ws,
                                                     const fc_real *emb, ptrdiff_t n, fc_real *nodet, fc_real gs,
                                                     const int64_t *y, fc_real *pair_b, double *acc)
{
    if (tb->Kp == 2 * FC_VLEN) return fc_crf_fb_reg_nv(tb, ws, emb, n, nodet, gs, y, pair_b, acc, 2, 4);
    if (tb->Kp == 4 * FC_VLEN) return fc_crf_fb_reg_nv(tb, ws, emb, n, nodet, gs, y, pair_b, acc, 4, 2);
    return fc_crf_fb_reg_nv(tb, ws, emb, n, nodet, gs, y, pair_b, acc, 8, 1);
}
#endif
