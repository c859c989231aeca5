/* MEMM: one sequence in both directions, the drivers of fc_memm_nll (log-likelihood and
 * gradients) and fc_memm_potentials (the exact MEMM path score as CRF unaries).
 * Instantiated once per precision: no include guard on purpose. */

#if FC_VECTOR_EXT
/* The exp tables of fc_memm_nll from G2 ((2 (K + 1), Kp) rows, -inf padded): EG rows
 * exp(row - rm) (0 in the padding and for an all -inf row), rm the row maxima, and when
 * EGT != NULL their transpose for the token lanes, EGT[(d K + j) Cp + c] = EG[(d (K + 1) + c) Kp + j]
 * for c <= K, 0 for K < c < Cp. */
static FC_MULTIVERSION void fc_memm_tables(const fc_real *G2, ptrdiff_t K, ptrdiff_t Kp, fc_real *EG,
                                                    fc_real *rm, fc_real *EGT, ptrdiff_t Cp)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    /* rows of whole vectors (Kp a multiple of FC_VLEN, -inf padding) */
    for (ptrdiff_t i = 0; i < 2 * (K + 1); ++i) {
        const fc_real *row = G2 + i * Kp;
        fc_real *out = EG + i * Kp;
        vr v, mv;
        memcpy(&mv, row, sizeof mv);
        for (ptrdiff_t q = FC_VLEN; q < Kp; q += FC_VLEN) {
            memcpy(&v, row + q, sizeof v);
            const vi gt = v > mv;
            mv = (vr)(((vi)v & gt) | ((vi)mv & ~gt));
        }
        const fc_real m = fc_crf_hmax(&mv);
        rm[i] = m;
        if (m == -FC_INF) {
            memset(out, 0, sizeof(fc_real) * Kp);
            continue;
        }
        FC_SPLAT(mv, m);
        for (ptrdiff_t q = 0; q < Kp; q += FC_VLEN) {
            memcpy(&v, row + q, sizeof v);
            v -= mv; /* -inf padding: exp gives 0 */
            fc_crf_vexp(&v, 1);
            memcpy(out + q, &v, sizeof v);
        }
    }
    if (EGT == NULL) return;
    memset(EGT, 0, sizeof(fc_real) * (size_t)(2 * K * Cp));
    for (int d = 0; d < 2; ++d)
        for (ptrdiff_t c = 0; c <= K; ++c) {
            const fc_real *src = EG + (d * (K + 1) + c) * Kp;
            fc_real *dst = EGT + d * K * Cp + c;
            for (ptrdiff_t j = 0; j < K; ++j) dst[j * Cp] = src[j];
        }
}
#endif

/* Row stride of the MEMM tables for K labels: for fc_memm_seq, K rounded up to whole
 * vectors (1..8 vectors) or the CRF padding when that is 12 or 16 vectors; 0 when
 * fc_memm_seq does not apply (the per-direction loop with the CRF padding is used). */
FC_INLINE ptrdiff_t fc_memm_stride(ptrdiff_t K)
{
#if FC_VECTOR_EXT
    ptrdiff_t nv = (K + FC_VLEN - 1) / FC_VLEN;
    if (nv <= 8) return nv * FC_VLEN;
    nv = fc_crf_kp(K) / FC_VLEN;
    return nv == 12 || nv == 16 ? nv * FC_VLEN : 0;
#else
    (void)K;
    return 0;
#endif
}

/* The shared state of fc_memm_nll's team (fc_team): inputs, tables, outputs, and the status
 * and work counter the threads update. */
typedef struct {
    const fc_real *em, *Gp, *GTp, *EG, *rm, *EGT;
    const uint8_t *mask;
    const int64_t *tags;
    const double *weight;
    double *ll, *chunk_acc;
    fc_real *g_em, *g_trans;
    ptrdiff_t B, Tn, K, Kp, T1, nchunk, accn;
    int bidir, grad, fused, blk;
    int status;     /* FC_OMP_FAIL */
    ptrdiff_t next; /* work items claimed with fc_claim */
} fc_memm_job;

/* One rank of fc_memm_nll: chunks of sequences claimed one at a time (see fc_team). */
static void fc_memm_nll_team(void *arg)
{
    fc_memm_job *job = arg;
    const fc_real *em = job->em, *Gp = job->Gp, *GTp = job->GTp, *EG = job->EG, *rm = job->rm, *EGT = job->EGT;
    const uint8_t *mask = job->mask;
    const int64_t *tags = job->tags;
    const double *weight = job->weight;
    double *ll = job->ll, *chunk_acc = job->chunk_acc;
    fc_real *g_em = job->g_em;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K, Kp = job->Kp, T1 = job->T1, nchunk = job->nchunk, accn = job->accn;
    const int bidir = job->bidir, grad = job->grad, fused = job->fused, blk = job->blk;
#if !FC_VECTOR_EXT
    (void)EG; (void)rm; (void)EGT; (void)fused; /* no fused path: blk is 0 */
#endif
    /* this thread's buffers, one allocation: positions, two rows, and with blk the block
     * accumulators and their counts (zeroed; NULL otherwise) */
    const size_t nfa = blk ? (size_t)accn : 0, ncnt = blk ? (size_t)(2 * K + 1) : 0;
    ptrdiff_t *pos = malloc(sizeof(ptrdiff_t) * (size_t)T1 + sizeof(fc_real) * (2 * (size_t)Kp + nfa) +
                            sizeof(int) * ncnt);
    fc_real *r = pos ? (fc_real *)(pos + T1) : NULL, *facc = r && blk ? r + 2 * Kp : NULL;
    int *cnt = facc ? (int *)(facc + nfa) : NULL;
    if (pos == NULL) {
        FC_OMP_FAIL(job->status, FC_OUT_OF_MEMORY);
    } else if (blk) {
        memset(facc, 0, sizeof(fc_real) * nfa);
        memset(cnt, 0, sizeof(int) * ncnt);
    }
    for (ptrdiff_t ch; pos != NULL && !fc_interrupted() && (ch = fc_claim(&job->next)) < nchunk;) {
        double *cacc = chunk_acc ? chunk_acc + ch * accn : NULL;
        if (cacc != NULL) memset(cacc, 0, sizeof(double) * accn);
        ptrdiff_t b1 = (ch + 1) * FC_CRF_CHUNK < B ? (ch + 1) * FC_CRF_CHUNK : B;
        for (ptrdiff_t b = ch * FC_CRF_CHUNK; b < b1; ++b) {
            const fc_real *emb = em + b * Tn * K;
            const int64_t *yb = tags + b * Tn;
            fc_real *ge = g_em ? g_em + b * Tn * K : NULL;
            ptrdiff_t n = fc_crf_positions(mask, b, Tn, pos);
            double wb = grad ? weight[b] : 0.0;
            double c = bidir ? 0.5 * wb : wb;
#if FC_VECTOR_EXT
            if (fused) {
                ll[b] = fc_memm_seq(emb, Gp, GTp, pos, n, Tn, yb, K, Kp, bidir, c, ge, cacc, facc,
                                             cnt, EG, rm, EGT);
                continue;
            }
#endif
            if (ge) memset(ge, 0, sizeof(fc_real) * Tn * K);
            double lf = fc_memm_dir(emb, Gp, pos, n, yb, K, Kp, 0, c, ge, cacc, r, r + Kp);
            if (bidir) {
                double lb = fc_memm_dir(emb, GTp, pos, n, yb, K, Kp, 1, c, ge,
                                                 cacc ? cacc + K * Kp : NULL, r, r + Kp);
                lf = 0.5 * (lf + lb);
            }
            ll[b] = lf;
        }
#if FC_VECTOR_EXT
        if (blk) /* the chunk's partial blocks: results do not depend on the thread count */
            fc_memm_flush_all(facc, cacc, cnt, K, Kp);
#endif
    }
    free(pos);
}

/* The transitions gradient once every chunk is done, in two teams: the chunks' rows summed in
 * chunk order into chunk 0's (whole rows, one rank each), then forward and backward parts
 * added; the same for any thread count. */
static void fc_memm_sum_chunks_team(void *arg)
{
    fc_memm_job *job = arg;
    const ptrdiff_t K = job->K, Kp = job->Kp, nchunk = job->nchunk, accn = job->accn;
    double *chunk_acc = job->chunk_acc;
    ptrdiff_t lo, hi;
    fc_split(job->bidir ? 2 * K : K, fc_thread_count(), fc_thread_id(), &lo, &hi);
    for (ptrdiff_t i = lo; i < hi; ++i) {
        double *d = chunk_acc + i * Kp;
        for (ptrdiff_t ch = 1; ch < nchunk; ++ch) {
            const double *s = chunk_acc + ch * accn + i * Kp;
            for (ptrdiff_t j = 0; j < K; ++j) d[j] += s[j];
        }
    }
}

static void fc_memm_gtrans_team(void *arg)
{
    fc_memm_job *job = arg;
    const ptrdiff_t K = job->K, Kp = job->Kp;
    const double *chunk_acc = job->chunk_acc;
    ptrdiff_t lo, hi;
    fc_split(K, fc_thread_count(), fc_thread_id(), &lo, &hi);
    for (ptrdiff_t i = lo; i < hi; ++i)
        for (ptrdiff_t j = 0; j < K; ++j)
            job->g_trans[i * K + j] = (fc_real)(job->bidir ? chunk_acc[i * Kp + j] + chunk_acc[(K + j) * Kp + i]
                                                           : chunk_acc[i * Kp + j]);
}

int FC_NAME(fc_memm_nll)(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em_,
                         void *g_trans_)
{
    const fc_real *em = p->em, *trans = p->trans;
    const uint8_t *mask = p->mask;
    const int64_t *tags = p->tags;
    const ptrdiff_t B = p->B, Tn = p->T, K = p->K;
    const int n_threads = p->n_threads;
    fc_real *g_em = g_em_, *g_trans = g_trans_;
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (em == NULL || trans == NULL || tags == NULL || ll == NULL) return FC_BAD_ARGUMENT;
    int grad = g_em != NULL || g_trans != NULL;
    if (grad && weight == NULL) return FC_BAD_ARGUMENT;
    const ptrdiff_t Ks = fc_memm_stride(K);
    const int fused = Ks > 0;
    const ptrdiff_t Kp = fused ? Ks : fc_crf_kp(K); /* row stride of G, G^T and the counts */
    const ptrdiff_t accn = 2 * K * Kp;
    const ptrdiff_t nchunk = (B + FC_CRF_CHUNK - 1) / FC_CRF_CHUNK;
    /* exp tables for the shared-exp tokens (fc_memm_tok_sh), when there are enough tokens
     * to pay for their 2 (K + 1) Kp exps: EG = exp(row - row max) of G2's rows, rm = row max;
     * EGT: their transpose for the token lanes (fc_memm_grp) */
    int tabs = 0;
    ptrdiff_t Cp = 0, negt = 0;
#if FC_VECTOR_EXT
    if (fused && B * Tn >= 4 * (K + 1)) {
        tabs = 1;
        Cp = Kp + FC_VLEN;
        negt = K <= FC_MEMM_LK ? 2 * K * Cp : 0;
    }
#else
    (void)Cp;
#endif
    /* one allocation: G and G^T padded to (K + 1, Kp) (row K is the "no conditioning label"
     * row of zeros), then the tables */
    const ptrdiff_t ng2 = 2 * (K + 1) * Kp, neg = tabs ? 2 * (K + 1) * (Kp + 1) + negt : 0;
    fc_real *G2 = malloc(sizeof(fc_real) * (size_t)(ng2 + neg));
    if (G2 == NULL) return FC_OUT_OF_MEMORY;
    fc_real *Gp = G2, *GTp = G2 + (K + 1) * Kp;
    for (ptrdiff_t i = 0; i <= K; ++i) {
        fc_real *g = Gp + i * Kp, *gt = GTp + i * Kp;
        if (i < K) {
            memcpy(g, trans + i * K, sizeof(fc_real) * K);
            for (ptrdiff_t j = 0; j < K; ++j) gt[j] = trans[j * K + i];
        } else {
            for (ptrdiff_t j = 0; j < K; ++j) g[j] = gt[j] = 0;
        }
        for (ptrdiff_t j = K; j < Kp; ++j) g[j] = gt[j] = -FC_INF;
    }
    fc_real *EG = NULL, *rm = NULL, *EGT = NULL;
#if FC_VECTOR_EXT
    if (tabs) {
        EG = G2 + ng2;
        rm = EG + 2 * (K + 1) * Kp;
        EGT = negt > 0 ? rm + 2 * (K + 1) : NULL;
        fc_memm_tables(G2, K, Kp, EG, rm, EGT, Cp);
    }
#endif
    double *chunk_acc = NULL; /* each chunk's part is zeroed by the thread that claims it */
    if (grad && nchunk > 0) {
        chunk_acc = malloc(sizeof(double) * (size_t)(nchunk * accn));
        if (chunk_acc == NULL) { free(G2); return FC_OUT_OF_MEMORY; }
    } else if (g_trans != NULL) {
        memset(g_trans, 0, sizeof(fc_real) * (size_t)(K * K)); /* B = 0 */
    }
    int nt = fc_crf_threads(n_threads, nchunk, B * Tn, K);
    const ptrdiff_t T1 = Tn > 0 ? Tn : 1;
    /* fused gradient: block accumulators of the transitions rows (FC_MEMM_FLUSH) */
    const int blk = fused && chunk_acc != NULL;
    fc_memm_job job = {
        .em = em, .Gp = Gp, .GTp = GTp, .EG = EG, .rm = rm, .EGT = EGT, .mask = mask, .tags = tags,
        .weight = weight, .ll = ll, .chunk_acc = chunk_acc, .g_em = g_em, .g_trans = g_trans, .B = B,
        .Tn = Tn, .K = K, .Kp = Kp, .T1 = T1, .nchunk = nchunk, .accn = accn, .bidir = bidir, .grad = grad,
        .fused = fused, .blk = blk, .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(nt, fc_memm_nll_team, &job);
    if (fc_interrupt_pending()) job.status = FC_INTERRUPTED; /* Ctrl-C */
    if (job.status == FC_OK && g_trans != NULL && chunk_acc != NULL) {
        fc_team(fc_clamp_threads(nt, bidir ? 2 * K : K), fc_memm_sum_chunks_team, &job);
        fc_team(fc_clamp_threads(nt, K), fc_memm_gtrans_team, &job);
    }
    free(chunk_acc);
    free(G2);
    return job.status;
}

/* The shared state of fc_memm_potentials' team (fc_team). */
typedef struct {
    const fc_real *em, *trans;
    const uint8_t *mask;
    fc_real *out;
    double wf, wb;
    ptrdiff_t B, Tn, K, T1;
    int status; /* FC_OMP_FAIL */
} fc_memm_pot_job;

/* log-sum-exp of r[0..K) (r finite or -inf), exps written to ex. */
FC_INLINE double fc_memm_lse(const fc_real *r, fc_real *ex, ptrdiff_t K)
{
    fc_real m = -FC_INF;
    for (ptrdiff_t j = 0; j < K; ++j) m = r[j] > m ? r[j] : m;
    if (m == -FC_INF) return -INFINITY;
    for (ptrdiff_t j = 0; j < K; ++j) ex[j] = FC_EXP(r[j] - m);
    double s = 0.0;
    for (ptrdiff_t j = 0; j < K; ++j) s += (double)ex[j];
    return (double)m + log(s);
}

/* The largest of e[0..K), in double. */
FC_INLINE double fc_memm_max_d(const fc_real *e, ptrdiff_t K)
{
    double m = (double)e[0];
    for (ptrdiff_t j = 1; j < K; ++j) m = (double)e[j] > m ? (double)e[j] : m;
    return m;
}

/* One thread of fc_memm_potentials (all of them run this, see fc_team).  Every emission
 * row enters shifted by its own maximum F_k (the difference taken in double): the unary of position k is
 * f_k - F_k minus the normalisers that depend on its label, each of them also computed
 * from shifted emissions (the F_j cancel along any path, since wf + wb = 1).  The
 * potentials, and so the Viterbi sums over them, then hold log-probability-sized
 * numbers, not |f| + |normaliser|: with |f| ~ 1e8 in float32 the unshifted ones lost
 * every digit below 8 and the decode could miss the MAP (issue 28). */
static void fc_memm_potentials_team(void *arg)
{
    fc_memm_pot_job *job = arg;
    const fc_real *em = job->em, *trans = job->trans;
    const uint8_t *mask = job->mask;
    fc_real *out = job->out;
    const double wf = job->wf, wb = job->wb;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K, T1 = job->T1;
    ptrdiff_t *pos = malloc(sizeof(ptrdiff_t) * T1);
    double *acc = malloc(sizeof(double) * K);
    fc_real *r = malloc(sizeof(fc_real) * 3 * K);
    int ok = pos && acc && r;
    if (!ok) {
        FC_OMP_FAIL(job->status, FC_OUT_OF_MEMORY);
    }
    fc_real *fs = r + K, *ex = r + 2 * K; /* f_j - F_j of the row in use; exps */
    ptrdiff_t lo, hi;
    fc_split(B, fc_thread_count(), fc_thread_id(), &lo, &hi);
    for (ptrdiff_t b = lo; ok && b < hi; ++b) {
        const fc_real *emb = em + b * Tn * K;
        fc_real *ob = out + b * Tn * K;
        memset(ob, 0, sizeof(fc_real) * Tn * K);
        ptrdiff_t n = fc_crf_positions(mask, b, Tn, pos);
        for (ptrdiff_t k = 0; k < n; ++k) {
            const fc_real *e = emb + pos[k] * K;
            const double F = fc_memm_max_d(e, K);
            for (ptrdiff_t y = 0; y < K; ++y) {
                acc[y] = (double)e[y] - F;
                fs[y] = (fc_real)acc[y];
            }
            /* the first (forward) and last (backward) positions' own normalisers */
            double own = (k == 0 && wf != 0.0) || (k == n - 1 && wb != 0.0) ? fc_memm_lse(fs, ex, K) : 0.0;
            double wown = (k == 0 ? wf : 0.0) + (k == n - 1 ? wb : 0.0);
            for (ptrdiff_t y = 0; y < K; ++y) acc[y] -= wown * own;
            if (k < n - 1 && wf != 0.0) { /* L_{k+1}(y) = lse_c(G[y,c] + f_{k+1}(c) - F_{k+1}) */
                const fc_real *en = emb + pos[k + 1] * K;
                const double Fn = fc_memm_max_d(en, K);
                for (ptrdiff_t c = 0; c < K; ++c) fs[c] = (fc_real)((double)en[c] - Fn);
                for (ptrdiff_t y = 0; y < K; ++y) {
                    for (ptrdiff_t c = 0; c < K; ++c) r[c] = trans[y * K + c] + fs[c];
                    double l = fc_memm_lse(r, ex, K);
                    acc[y] = l == -INFINITY ? -INFINITY : acc[y] - wf * l;
                }
            }
            if (k > 0 && wb != 0.0) { /* M_{k-1}(y) = lse_a(G[a,y] + f_{k-1}(a) - F_{k-1}) */
                const fc_real *ep = emb + pos[k - 1] * K;
                const double Fp = fc_memm_max_d(ep, K);
                for (ptrdiff_t a = 0; a < K; ++a) fs[a] = (fc_real)((double)ep[a] - Fp);
                for (ptrdiff_t y = 0; y < K; ++y) {
                    for (ptrdiff_t a = 0; a < K; ++a) r[a] = trans[a * K + y] + fs[a];
                    double l = fc_memm_lse(r, ex, K);
                    acc[y] = l == -INFINITY ? -INFINITY : acc[y] - wb * l;
                }
            }
            for (ptrdiff_t y = 0; y < K; ++y) ob[pos[k] * K + y] = (fc_real)acc[y];
        }
    }
    free(pos); free(acc); free(r);
}

int FC_NAME(fc_memm_potentials)(const fc_crf_problem *p, double wf, double wb, void *out_)
{
    const fc_real *em = p->em, *trans = p->trans;
    const uint8_t *mask = p->mask;
    const ptrdiff_t B = p->B, Tn = p->T, K = p->K;
    const int n_threads = p->n_threads;
    fc_real *out = out_;
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (em == NULL || trans == NULL || out == NULL) return FC_BAD_ARGUMENT;
    fc_memm_pot_job job = {.em = em, .trans = trans, .mask = mask, .out = out, .wf = wf, .wb = wb,
                                    .B = B, .Tn = Tn, .K = K, .T1 = Tn > 0 ? Tn : 1, .status = FC_OK};
    fc_team(fc_crf_threads(n_threads, B, B * Tn, K), fc_memm_potentials_team, &job);
    return job.status;
}

#undef FC_CRF_TINY
#undef FC_CRF_SUMTOL
#undef FC_MEMM_TINY
#undef FC_MEMM_SHIFT
#undef FC_MEMM_QMAX
#undef FC_MEMM_LFOLD
#undef FC_MEMM_FLUSH
#undef FC_MEMM_LK
