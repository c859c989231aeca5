/* CRF: the drivers of fc_crf_forward (log Z and path scores) and fc_crf_fb (marginals and
 * gradients): work items over the batch, per-thread workspaces, fixed gradient chunks.
 * Instantiated once per precision: no include guard on purpose. */


/* The shared state of the team of fc_crf_forward or fc_crf_fb (fc_team); the forward uses the
 * fields up to K. */
typedef struct {
    const fc_crf_tab *tb;
    const fc_real *em, *trans, *start, *end;
    const uint8_t *mask;
    const int64_t *tags;
    double *logz, *score;
    ptrdiff_t B, Tn, K;
    const double *weight;
    double *chunk_acc;
    fc_real *node, *pair, *g_em;
    ptrdiff_t Kp, accn, nchunk;
    int grad;
    int status;     /* FC_OMP_FAIL */
    ptrdiff_t next; /* work items claimed with fc_claim */
} fc_crf_job;

/* One thread of fc_crf_forward (all of them run this, see fc_team). */
static void fc_crf_forward_team(void *arg)
{
    fc_crf_job *job = arg;
    const fc_crf_tab *tb = job->tb;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K;
    fc_crf_ws ws;
    int ok = fc_crf_ws_alloc(&ws, Tn, K, tb->Kp) == FC_OK;
    if (!ok) {
        FC_OMP_FAIL(job->status, FC_OUT_OF_MEMORY);
    }
    for (ptrdiff_t b; ok && !fc_interrupted() && (b = fc_claim(&job->next)) < B;) {
        const fc_real *emb = job->em + b * Tn * K;
        ptrdiff_t n = fc_crf_positions(job->mask, b, Tn, ws.pos);
        double z = 0.0;
#if FC_VECTOR_EXT
        if (n > 0 && tb->Kp <= 8 * FC_VLEN)
            z = fc_crf_fwd_reg(tb, emb, ws.pos, n);
        else
#endif
        if (n > 0)
            z = fc_crf_fwd_scaled(tb, &ws, emb, n);
        if (z != z) z = fc_crf_fb_log(tb, &ws, emb, n, 0, NULL, NULL, NULL);
        job->logz[b] = z;
        if (job->score != NULL)
            job->score[b] = fc_crf_path_score(emb, job->trans, job->start, job->end, ws.pos, n,
                                                       job->tags + b * Tn, 1, K);
    }
    if (ok) fc_crf_ws_free(&ws);
}

int FC_NAME(fc_crf_forward)(const fc_crf_problem *p, double *logz, double *score)
{
    const fc_real *em = p->em, *trans = p->trans, *start = p->start, *end = p->end;
    const uint8_t *mask = p->mask;
    const int64_t *tags = p->tags;
    const ptrdiff_t B = p->B, Tn = p->T, K = p->K;
    const int n_threads = p->n_threads;
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (B == 0) return FC_OK;
    if (em == NULL || trans == NULL || logz == NULL || (score != NULL && tags == NULL)) return FC_BAD_ARGUMENT;
    fc_crf_tab tb;
    if (fc_crf_tab_init(&tb, trans, start, end, Tn, K) != FC_OK) return FC_OUT_OF_MEMORY;
    fc_crf_job job = {.tb = &tb, .em = em, .trans = trans, .start = start, .end = end, .mask = mask,
                                   .tags = tags, .logz = logz, .score = score, .B = B, .Tn = Tn, .K = K,
                                   .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_crf_threads(n_threads, B, B * Tn, K), fc_crf_forward_team, &job);
    if (fc_interrupt_pending()) job.status = FC_INTERRUPTED; /* Ctrl-C */
    fc_crf_tab_free(&tb);
    return job.status;
}

/* One thread of fc_crf_fb (all of them run this, see fc_team). */
static void fc_crf_fb_team(void *arg)
{
    fc_crf_job *job = arg;
    const fc_crf_tab *tb = job->tb;
    const fc_real *em = job->em, *trans = job->trans, *start = job->start, *end = job->end;
    const uint8_t *mask = job->mask;
    const int64_t *tags = job->tags;
    const double *weight = job->weight;
    double *logz = job->logz, *score = job->score, *chunk_acc = job->chunk_acc;
    fc_real *node = job->node, *pair = job->pair, *g_em = job->g_em;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K, Kp = job->Kp, accn = job->accn, nchunk = job->nchunk;
    const int grad = job->grad;
    fc_crf_ws ws;
    int ok = fc_crf_ws_alloc(&ws, Tn, K, Kp) == FC_OK;
    if (!ok) {
        FC_OMP_FAIL(job->status, FC_OUT_OF_MEMORY);
    }
    for (ptrdiff_t ch; ok && !fc_interrupted() && (ch = fc_claim(&job->next)) < nchunk;) {
        double *cacc = chunk_acc ? chunk_acc + ch * accn : NULL;
        if (cacc != NULL) memset(cacc, 0, sizeof(double) * accn);
        ptrdiff_t b1 = (ch + 1) * FC_CRF_CHUNK < B ? (ch + 1) * FC_CRF_CHUNK : B;
        for (ptrdiff_t b = ch * FC_CRF_CHUNK; b < b1; ++b) {
            const fc_real *emb = em + b * Tn * K;
            fc_real *node_b = node ? node + b * Tn * K : NULL;
            fc_real *pair_b = pair ? pair + b * Tn * K * K : NULL;
            const int64_t *yb = tags ? tags + b * Tn : NULL;
            fc_real *ge = g_em ? g_em + b * Tn * K : NULL;
            fc_real *nodet = node_b ? node_b : ge; /* node marginals go here */
            if (nodet) memset(nodet, 0, sizeof(fc_real) * Tn * K);
            if (pair_b) memset(pair_b, 0, sizeof(fc_real) * Tn * K * K);
            if (ge && ge != nodet) memset(ge, 0, sizeof(fc_real) * Tn * K);
            ptrdiff_t n = fc_crf_positions(mask, b, Tn, ws.pos);
            double *acc = grad ? ws.acc : NULL;
            if (acc) memset(acc, 0, sizeof(double) * accn);
            double z = 0.0;
            int scaled = 0, fused = 0; /* fused: the emission gradient rows are written */
            if (n > 0) {
#if FC_VECTOR_EXT
                if (Kp <= 8 * FC_VLEN) {
                    fused = ge != NULL && ge == nodet;
                    z = fc_crf_fb_reg(tb, &ws, emb, n, nodet, fused ? (fc_real)weight[b] : (fc_real)1,
                                               fused ? yb : NULL, pair_b, acc);
                } else
#endif
                {
                    z = fc_crf_fwd_scaled(tb, &ws, emb, n);
                    if (z == z && fc_crf_bwd_scaled(tb, &ws, n, nodet, pair_b, acc) != 0) z = NAN;
                }
                if (z == z) {
                    scaled = 1;
                } else {
                    fused = 0;
                    if (acc) memset(acc, 0, sizeof(double) * accn);
                    z = fc_crf_fb_log(tb, &ws, emb, n, 1, nodet, pair_b, acc);
                }
            }
            if (logz) logz[b] = z;
            double sc = 0.0;
            if (yb) sc = fc_crf_path_score(emb, trans, start, end, ws.pos, n, yb, 1, K);
            if (score) score[b] = sc;
            if (!grad) continue;
            double wb = weight[b];
            /* emissions: w * (marginal - onehot) */
            if (ge != NULL && !fused) {
                fc_real fw = (fc_real)wb;
                for (ptrdiff_t k = 0; k < n; ++k) {
                    ptrdiff_t t = ws.pos[k];
                    const fc_real *q = nodet + t * K;
                    fc_real *g = ge + t * K;
                    for (ptrdiff_t j = 0; j < K; ++j) g[j] = fw * q[j];
                    g[yb[t]] -= fw;
                }
            }
            if (n == 0) continue;
            /* expected counts (scaled path: trans counts still need the E factor) */
            (void)scaled;
            double *aT = acc, *aS = acc + K * Kp, *aN = acc + K * Kp + Kp;
            double *cT = cacc, *cS = cacc + K * Kp, *cN = cacc + K * Kp + Kp;
            for (ptrdiff_t i = 0; i < K; ++i)
                for (ptrdiff_t j = 0; j < K; ++j) {
                    double v = aT[i * Kp + j];
                    if (scaled) v *= (double)tb->E[i * Kp + j];
                    cT[i * Kp + j] += wb * v;
                }
            for (ptrdiff_t j = 0; j < K; ++j) {
                cS[j] += wb * aS[j];
                cN[j] += wb * aN[j];
            }
            cS[yb[ws.pos[0]]] -= wb;
            cN[yb[ws.pos[n - 1]]] -= wb;
            for (ptrdiff_t k = 1; k < n; ++k)
                cT[yb[ws.pos[k - 1]] * Kp + yb[ws.pos[k]]] -= wb;
        }
    }
    if (ok) fc_crf_ws_free(&ws);
}

int FC_NAME(fc_crf_fb)(const fc_crf_problem *p, const fc_crf_fb_out *out)
{
    if (out == NULL) return FC_BAD_ARGUMENT;
    const fc_real *em = p->em, *trans = p->trans, *start = p->start, *end = p->end;
    const uint8_t *mask = p->mask;
    const int64_t *tags = p->tags;
    const ptrdiff_t B = p->B, Tn = p->T, K = p->K;
    const int n_threads = p->n_threads;
    const double *weight = out->weight;
    double *logz = out->logz, *score = out->score;
    fc_real *node = out->node, *pair = out->pair, *g_em = out->g_em, *g_trans = out->g_trans;
    fc_real *g_start = out->g_start, *g_end = out->g_end;
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (em == NULL || trans == NULL) return FC_BAD_ARGUMENT;
    int grad = g_em != NULL || g_trans != NULL || g_start != NULL || g_end != NULL;
    if (grad && (tags == NULL || weight == NULL)) return FC_BAD_ARGUMENT;
    if (score != NULL && tags == NULL) return FC_BAD_ARGUMENT;
    const ptrdiff_t Kp = fc_crf_kp(K);
    const ptrdiff_t accn = K * Kp + 2 * Kp;
    const ptrdiff_t nchunk = (B + FC_CRF_CHUNK - 1) / FC_CRF_CHUNK;
    double *chunk_acc = NULL;
    if (grad && nchunk > 0) { /* each chunk's part is zeroed by the thread that claims it */
        chunk_acc = malloc(sizeof(double) * (size_t)(nchunk * accn));
        if (chunk_acc == NULL) return FC_OUT_OF_MEMORY;
    }
    fc_crf_tab tb;
    if (fc_crf_tab_init(&tb, trans, start, end, Tn, K) != FC_OK) {
        free(chunk_acc);
        return FC_OUT_OF_MEMORY;
    }
    fc_crf_job job = {
        .tb = &tb, .em = em, .trans = trans, .start = start, .end = end, .mask = mask, .tags = tags,
        .weight = weight, .logz = logz, .score = score, .chunk_acc = chunk_acc, .node = node, .pair = pair,
        .g_em = g_em, .B = B, .Tn = Tn, .K = K, .Kp = Kp, .accn = accn, .nchunk = nchunk, .grad = grad,
        .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_crf_threads(n_threads, nchunk, B * Tn, K), fc_crf_fb_team, &job);
    if (fc_interrupt_pending()) job.status = FC_INTERRUPTED; /* Ctrl-C */
    const int status = job.status;
    if (status == FC_OK && grad) {
        /* reduce chunks in order */
        for (ptrdiff_t i = 0; i < K; ++i)
            for (ptrdiff_t j = 0; j < K; ++j) {
                double s = 0.0;
                for (ptrdiff_t ch = 0; ch < nchunk; ++ch) s += chunk_acc[ch * accn + i * Kp + j];
                if (g_trans) g_trans[i * K + j] = (fc_real)s;
            }
        for (ptrdiff_t j = 0; j < K; ++j) {
            double s = 0.0, e = 0.0;
            for (ptrdiff_t ch = 0; ch < nchunk; ++ch) {
                s += chunk_acc[ch * accn + K * Kp + j];
                e += chunk_acc[ch * accn + K * Kp + Kp + j];
            }
            if (g_start) g_start[j] = (fc_real)s;
            if (g_end) g_end[j] = (fc_real)e;
        }
    }
    free(chunk_acc);
    fc_crf_tab_free(&tb);
    return status;
}
