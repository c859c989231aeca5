/* Tiled attention: the forward (fc_attention: online softmax over key tiles, talking-heads
 * mixing) and fc_attention_finite.  Instantiated once per precision (attention_forward_*.c):
 * no include guard on purpose. */


/* One (b, h, group of FC_ATT_QG query tiles) work item without head mixing.  The key
 * loop is outside the query tiles of the group, so that each key / value tile is read
 * from memory once per FC_ATT_QG * FC_ATTN_BQ queries (long sequences no longer stream
 * k and v from L3 for every 64 queries), while masks are still skipped per 64 x 64 tile.
 * Each row sees the same key tiles in the same order whatever the grouping. */
static FC_MULTIVERSION void fc_att_fwd_item(const FC_ATT_CTX *c, ptrdiff_t bh, ptrdiff_t qg,
                                                     fc_real *restrict Sb, fc_real *m, double *l,
                                                     fc_real *restrict Qs, fc_real *restrict Kb)
{
    const ptrdiff_t H = c->H, T = c->T, S = c->S, dk = c->DK, dv = c->DV;
    const ptrdiff_t b = bh / H, h = bh % H;
    const ptrdiff_t qt0 = qg * FC_ATT_QG;
    const ptrdiff_t qt1 = qt0 + FC_ATT_QG < c->nqt ? qt0 + FC_ATT_QG : c->nqt;
    const fc_real *V = c->v + bh * S * dv;
    int64_t qsmax[FC_ATT_QG];
    for (ptrdiff_t qt = qt0; qt < qt1; ++qt) {
        const ptrdiff_t i0 = qt * FC_ATTN_BQ;
        const ptrdiff_t mq = T - i0 < FC_ATTN_BQ ? T - i0 : FC_ATTN_BQ;
        fc_real *O = c->out + (bh * T + i0) * dv;
        for (ptrdiff_t x = 0; x < mq * dv; ++x) O[x] = (fc_real)0;
        for (ptrdiff_t r = 0; r < mq; ++r) {
            m[(qt - qt0) * FC_ATTN_BQ + r] = -FC_INF;
            l[(qt - qt0) * FC_ATTN_BQ + r] = 0.0;
        }
        qsmax[qt - qt0] = fc_att_qseg_max(c, b, i0, mq);
    }
    /* the group's queries times scale, once: the logits come out scaled (no pass over
     * each logits row to multiply it) */
    {
        const ptrdiff_t r1 = (qt1 * FC_ATTN_BQ < T ? qt1 * FC_ATTN_BQ : T) - qt0 * FC_ATTN_BQ;
        const fc_real *Q = c->q + (bh * T + qt0 * FC_ATTN_BQ) * dk;
        for (ptrdiff_t x = 0; x < r1 * dk; ++x) Qs[x] = Q[x] * c->scale;
    }
    for (ptrdiff_t kt = 0; kt < c->nkt; ++kt) {
        const ptrdiff_t j0 = kt * FC_ATTN_BK;
        const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
        /* this key tile, transposed here (a whole-k transposed copy cost a large malloc,
         * page faults and a pass over memory per call: 13% at (8,12,128,64), perf) */
        int transposed = 0;
        for (ptrdiff_t qt = qt0; qt < qt1; ++qt) {
            const ptrdiff_t i0 = qt * FC_ATTN_BQ;
            const ptrdiff_t mq = T - i0 < FC_ATTN_BQ ? T - i0 : FC_ATTN_BQ;
            int64_t ksmax;
            if (!fc_att_tile_visible(c, b, i0, mq, j0, nk, qsmax[qt - qt0], &ksmax)) continue;
            if (!transposed) {
                fc_att_transpose_tile(c->k + bh * S * dk, Kb, S, dk, kt);
                transposed = 1;
            }
            const fc_real *Kt = Kb;
            const fc_real *Q = Qs + (qt - qt0) * FC_ATTN_BQ * dk;
            fc_real *O = c->out + (bh * T + i0) * dv;
            fc_real *mt = m + (qt - qt0) * FC_ATTN_BQ;
            double *lt = l + (qt - qt0) * FC_ATTN_BQ;
            fc_att_gemm_pk(mq, FC_ATTN_BK, dk, Q, dk, Kt, Sb, FC_ATTN_BK, 0);
            ptrdiff_t jmax = 0;
            for (ptrdiff_t r = 0; r < mq; ++r) {
                fc_real *s = Sb + r * FC_ATTN_BK;
                fc_real mx;
                ptrdiff_t jend = fc_att_mask_row(c, s, b, h, i0 + r, j0, nk, (fc_real)1, ksmax, &mx);
                fc_att_online_row(s, jend, mx, mt + r, lt + r, O + r * dv, dv);
                jmax = jend > jmax ? jend : jmax;
            }
            if (jmax > 0)
                fc_att_gemm(mq, dv, jmax, Sb, FC_ATTN_BK, V + j0 * dv, dv, O, dv, 1);
        }
    }
    for (ptrdiff_t qt = qt0; qt < qt1; ++qt) {
        const ptrdiff_t i0 = qt * FC_ATTN_BQ;
        const ptrdiff_t mq = T - i0 < FC_ATTN_BQ ? T - i0 : FC_ATTN_BQ;
        fc_att_finish(c->out + (bh * T + i0) * dv, c->lse + bh * T + i0,
                               m + (qt - qt0) * FC_ATTN_BQ, l + (qt - qt0) * FC_ATTN_BQ, mq, dv);
    }
}

/* One (b, query tile) work item with talking-heads mixing: all heads together.
 * Without post_mix: one pass, online softmax per mixed head.  With post_mix: the
 * output of head h is sum_g post[h,g] P_g V_h, which needs every P_g normalised;
 * pass 1 finds each head's lse online, pass 2 recomputes the logits, forms the exact
 * P_g = exp(z_g - lse_g), mixes them and multiplies by V_h. */
static FC_MULTIVERSION void fc_att_mix_item(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t qt,
                                                     fc_real *restrict Sh, fc_real *restrict J,
                                                     fc_real *restrict U, fc_real *m, double *l,
                                                     fc_real *lt)
{
    const ptrdiff_t H = c->H, T = c->T, S = c->S, dk = c->DK, dv = c->DV;
    const ptrdiff_t i0 = qt * FC_ATTN_BQ;
    const ptrdiff_t mq = T - i0 < FC_ATTN_BQ ? T - i0 : FC_ATTN_BQ;
    const ptrdiff_t tile = (ptrdiff_t)FC_ATTN_BQ * FC_ATTN_BK, n = mq * FC_ATTN_BK;
    const fc_real *pre = c->pre, *post = c->post;
    for (ptrdiff_t h = 0; h < H; ++h) {
        fc_real *O = c->out + ((b * H + h) * T + i0) * dv;
        for (ptrdiff_t x = 0; x < mq * dv; ++x) O[x] = (fc_real)0;
        for (ptrdiff_t r = 0; r < mq; ++r) {
            m[h * FC_ATTN_BQ + r] = -FC_INF;
            l[h * FC_ATTN_BQ + r] = 0.0;
        }
    }
    const int64_t qsmax = fc_att_qseg_max(c, b, i0, mq);
    const int passes = post != NULL ? 2 : 1;
    for (int pass = 0; pass < passes; ++pass) {
        const int stats = post != NULL && pass == 0, final = post != NULL && pass == 1;
        for (ptrdiff_t kt = 0; kt < c->nkt; ++kt) {
            const ptrdiff_t j0 = kt * FC_ATTN_BK;
            const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
            int64_t ksmax;
            if (!fc_att_tile_visible(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
            for (ptrdiff_t g = 0; g < H; ++g) {
                const fc_real *Q = c->q + ((b * H + g) * T + i0) * dk;
                const fc_real *Kt = c->kt + ((b * H + g) * c->nkt + kt) * dk * FC_ATTN_BK;
                fc_att_gemm_pk(mq, FC_ATTN_BK, dk, Q, dk, Kt, Sh + g * tile, FC_ATTN_BK, 0);
            }
            fc_real *Z = Sh;
            if (pre != NULL) {
                /* in chunks of FC_ATT_MIXC entries so that the H source chunks stay in L1 */
                for (ptrdiff_t x0 = 0; x0 < n; x0 += FC_ATT_MIXC) {
                    const ptrdiff_t x1 = x0 + FC_ATT_MIXC < n ? x0 + FC_ATT_MIXC : n;
                    for (ptrdiff_t h = 0; h < H; ++h) {
                        fc_real *Jh = J + h * tile;
                        const fc_real w0 = pre[h * H];
                        for (ptrdiff_t x = x0; x < x1; ++x) Jh[x] = w0 * Sh[x];
                        for (ptrdiff_t g = 1; g < H; ++g) {
                            const fc_real w = pre[h * H + g];
                            const fc_real *Sg = Sh + g * tile;
                            for (ptrdiff_t x = x0; x < x1; ++x) Jh[x] += w * Sg[x];
                        }
                    }
                }
                Z = J;
            }
            ptrdiff_t jmax = 0;
            for (ptrdiff_t h = 0; h < H; ++h) {
                fc_real *Zh = Z + h * tile;
                fc_real *O = c->out + ((b * H + h) * T + i0) * dv;
                ptrdiff_t jmax_h = 0;
                for (ptrdiff_t r = 0; r < mq; ++r) {
                    fc_real *s = Zh + r * FC_ATTN_BK;
                    fc_real mx;
                    ptrdiff_t jend = fc_att_mask_row(c, s, b, h, i0 + r, j0, nk, c->scale, ksmax, &mx);
                    jmax_h = jend > jmax_h ? jend : jmax_h;
                    if (final) {
                        const fc_real lr = lt[h * FC_ATTN_BQ + r];
                        if (lr == -FC_INF) {
                            for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
                        } else {
                            (void)fc_att_exp_row(s, jend, lr);
                        }
                    } else {
                        fc_att_online_row(s, jend, mx, m + h * FC_ATTN_BQ + r, l + h * FC_ATTN_BQ + r,
                                                   stats ? NULL : O + r * dv, dv);
                    }
                }
                if (!post && jmax_h > 0) {
                    const fc_real *V = c->v + (b * H + h) * S * dv;
                    fc_att_gemm(mq, dv, jmax_h, Zh, FC_ATTN_BK, V + j0 * dv, dv, O, dv, 1);
                }
                jmax = jmax_h > jmax ? jmax_h : jmax;
            }
            if (final && jmax > 0) {
                for (ptrdiff_t h = 0; h < H; ++h) {
                    const fc_real w0 = post[h * H];
                    for (ptrdiff_t x0 = 0; x0 < n; x0 += FC_ATT_MIXC) {
                        const ptrdiff_t x1 = x0 + FC_ATT_MIXC < n ? x0 + FC_ATT_MIXC : n;
                        for (ptrdiff_t x = x0; x < x1; ++x) U[x] = w0 * Z[x];
                        for (ptrdiff_t g = 1; g < H; ++g) {
                            const fc_real w = post[h * H + g];
                            const fc_real *Pg = Z + g * tile;
                            for (ptrdiff_t x = x0; x < x1; ++x) U[x] += w * Pg[x];
                        }
                    }
                    const fc_real *V = c->v + (b * H + h) * S * dv;
                    fc_real *O = c->out + ((b * H + h) * T + i0) * dv;
                    fc_att_gemm(mq, dv, jmax, U, FC_ATTN_BK, V + j0 * dv, dv, O, dv, 1);
                }
            }
        }
        if (stats) {
            for (ptrdiff_t h = 0; h < H; ++h)
                for (ptrdiff_t r = 0; r < mq; ++r) {
                    ptrdiff_t x = h * FC_ATTN_BQ + r;
                    lt[x] = fc_att_row_lse(m[x], l[x]);
                }
        }
    }
    for (ptrdiff_t h = 0; h < H; ++h) {
        fc_real *O = c->out + ((b * H + h) * T + i0) * dv;
        fc_real *lse = c->lse + (b * H + h) * T + i0;
        if (post == NULL) {
            fc_att_finish(O, lse, m + h * FC_ATTN_BQ, l + h * FC_ATTN_BQ, mq, dv);
        } else {
            for (ptrdiff_t r = 0; r < mq; ++r) lse[r] = lt[h * FC_ATTN_BQ + r];
        }
    }
}

/* The forward's team: work items (a batch element's query tile with mixing, else a group of
 * FC_ATT_QG query tiles of one head) claimed one at a time; each rank has its own tiles. */
typedef struct {
    const FC_ATT_CTX *c;
    int *failed;
    ptrdiff_t work, nqt, nqg, next;
    int mix;
} fc_att_fwd_job;

static void fc_att_fwd_team(void *arg)
{
    fc_att_fwd_job *job = arg;
    const FC_ATT_CTX *c = job->c;
    const int mix = job->mix, tid = fc_thread_id();
    const ptrdiff_t H = c->H, dk = c->DK, nqt = job->nqt, nqg = job->nqg, work = job->work;
    const size_t tile = (size_t)FC_ATTN_BQ * FC_ATTN_BK;
    const ptrdiff_t hh = mix ? H : FC_ATT_QG; /* per-row state for H heads or QG tiles */
    fc_real *sb = (fc_real *)malloc(sizeof(fc_real) * (tile * (size_t)(mix ? 2 * hh + 1 : 1)));
    fc_real *mb = (fc_real *)malloc(sizeof(fc_real) * (size_t)(2 * hh * FC_ATTN_BQ));
    double *lb = (double *)malloc(sizeof(double) * (size_t)(hh * FC_ATTN_BQ));
    fc_real *qs = mix ? NULL : (fc_real *)malloc(sizeof(fc_real) * (size_t)((FC_ATT_QG * FC_ATTN_BQ + FC_ATTN_BK) * dk));
    if (sb == NULL || mb == NULL || lb == NULL || (!mix && qs == NULL)) {
        job->failed[tid] = 1;
    } else if (mix) {
        for (ptrdiff_t w; !fc_interrupted() && (w = fc_claim(&job->next)) < work;)
            fc_att_mix_item(c, w / nqt, w % nqt, sb, sb + tile * (size_t)H, sb + 2 * tile * (size_t)H, mb,
                                     lb, mb + H * FC_ATTN_BQ);
    } else {
        for (ptrdiff_t w; !fc_interrupted() && (w = fc_claim(&job->next)) < work;)
            fc_att_fwd_item(c, w / nqg, w % nqg, sb, mb, lb, qs, qs + FC_ATT_QG * FC_ATTN_BQ * dk);
    }
    free(qs);
    free(sb);
    free(mb);
    free(lb);
}

int FC_NAME(fc_attention)(const fc_attention_problem *p, void *out_, void *lse_)
{
    const fc_real *q = p->q, *k = p->k, *v = p->v;
    const ptrdiff_t B = p->B, H = p->H, T = p->T, S = p->S, dk = p->dk, dv = p->dv;
    const double scale = p->scale;
    const fc_attn_mask *mask = p->mask;
    const fc_real *pre_mix = p->pre_mix, *post_mix = p->post_mix;
    const int n_threads = p->n_threads;
    fc_real *out = out_, *lse = lse_;
    int st = fc_att_check(B, H, T, S, dk, dv, mask, n_threads);
    if (st != FC_OK) return st;
    if (B * H * T == 0) return FC_OK;
    if (q == NULL || out == NULL || lse == NULL) return FC_BAD_ARGUMENT;
    if (S == 0) {
        for (ptrdiff_t x = 0; x < B * H * T * dv; ++x) out[x] = (fc_real)0;
        for (ptrdiff_t x = 0; x < B * H * T; ++x) lse[x] = -FC_INF;
        return FC_OK;
    }
    if (k == NULL || v == NULL) return FC_BAD_ARGUMENT;
    const ptrdiff_t nqt = (T + FC_ATTN_BQ - 1) / FC_ATTN_BQ, nkt = (S + FC_ATTN_BK - 1) / FC_ATTN_BK;
    const int mix = pre_mix != NULL || post_mix != NULL;
    /* with mixing, every head's key tiles are read by each (b, query tile) item: one
     * transposed copy of k; without, each item transposes the key tiles it uses */
    fc_real *kt = NULL;
    if (mix) {
        kt = (fc_real *)malloc(sizeof(fc_real) * (size_t)(B * H * nkt * dk * FC_ATTN_BK));
        if (kt == NULL) return FC_OUT_OF_MEMORY;
        fc_att_transpose_tiles(k, kt, B * H, S, dk, nkt, n_threads);
    }

    FC_ATT_CTX c;
    memset(&c, 0, sizeof c);
    c.q = q; c.k = k; c.v = v; c.kt = kt; c.out = out; c.lse = lse;
    c.B = B; c.H = H; c.T = T; c.S = S; c.DK = dk; c.DV = dv; c.nqt = nqt; c.nkt = nkt;
    c.scale = (fc_real)scale; c.mk = mask; c.pre = pre_mix; c.post = post_mix;

    const ptrdiff_t nqg = (nqt + FC_ATT_QG - 1) / FC_ATT_QG;
    const ptrdiff_t work = mix ? B * nqt : B * H * nqg;
    const int nt = fc_clamp_threads(n_threads, work);
    int *failed = (int *)calloc((size_t)nt, sizeof(int));
    if (failed == NULL) {
        free(kt);
        return FC_OUT_OF_MEMORY;
    }
    fc_att_fwd_job job = {.c = &c, .failed = failed, .work = work, .nqt = nqt, .nqg = nqg, .mix = mix,
                                   .next = 0};
    fc_interrupt_begin();
    fc_team(nt, fc_att_fwd_team, &job);
    st = FC_OK;
    for (int t = 0; t < nt; ++t)
        if (failed[t]) st = FC_OUT_OF_MEMORY;
    if (fc_interrupt_pending()) st = FC_INTERRUPTED; /* Ctrl-C */
    free(failed);
    free(kt);
    return st;
}



/* 1 when every x[i] is finite: x * 0 is 0 for finite x and NaN for NaN or +-inf
 * (no -ffast-math, so the compiler keeps it); one vectorised pass. */
static FC_MULTIVERSION int fc_attention_all_finite(const fc_real *x, ptrdiff_t n)
{
    fc_real lane[FC_ATT_LANES];
    for (int j = 0; j < FC_ATT_LANES; ++j) lane[j] = (fc_real)0;
    ptrdiff_t nb = n - n % FC_ATT_LANES, i = 0;
    for (; i < nb; i += FC_ATT_LANES)
        for (int j = 0; j < FC_ATT_LANES; ++j) lane[j] += x[i + j] * (fc_real)0;
    fc_real acc = (fc_real)0;
    for (; i < n; ++i) acc += x[i] * (fc_real)0;
    for (int j = 0; j < FC_ATT_LANES; ++j) acc += lane[j];
    return acc == (fc_real)0;
}

int FC_NAME(fc_attention_finite)(const void *x_, ptrdiff_t n)
{
    const fc_real *x = x_;
    if (n <= 0) return 1;
    return fc_attention_all_finite(x, n);
}
