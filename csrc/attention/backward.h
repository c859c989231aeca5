/* Tiled attention: the backward (fc_attention_backward: recompute from lse, dQ / dK / dV, the
 * bias and talking-heads gradients).  Instantiated once per precision (attention_backward_*.c):
 * no include guard on purpose. */


/* dbias (float64, read like the bias: mask->bias_strides, q_pos / k_pos) += t[j] for the
 * entries (b, h, i, j0 + j), j < n. */
FC_INLINE void fc_att_dbias_row(const FC_ATT_CTX *c, double *dbias, ptrdiff_t b, ptrdiff_t h,
                                         ptrdiff_t i, ptrdiff_t j0, ptrdiff_t n, const fc_real *t)
{
    const fc_attn_mask *mk = c->mk;
    const ptrdiff_t *st = mk->bias_strides;
    const ptrdiff_t qp = mk->q_pos ? (ptrdiff_t)mk->q_pos[b * c->T + i] : i;
    double *bp = dbias + b * st[0] + h * st[1] + qp * st[2];
    const ptrdiff_t s3 = st[3];
    if (mk->k_pos != NULL) {
        const int64_t *kpos = mk->k_pos + b * c->S + j0;
        for (ptrdiff_t j = 0; j < n; ++j) bp[(ptrdiff_t)kpos[j] * s3] += (double)t[j];
    } else {
        bp += j0 * s3;
        for (ptrdiff_t j = 0; j < n; ++j) bp[j * s3] += (double)t[j];
    }
}

/* sum_x a[x] b[x] over n entries, accumulated in double. */
FC_INLINE double fc_att_dot(const fc_real *restrict a, const fc_real *restrict b, ptrdiff_t n)
{
    double lane[FC_ATT_LANES];
    for (int j = 0; j < FC_ATT_LANES; ++j) lane[j] = 0.0;
    ptrdiff_t nb = n - n % FC_ATT_LANES, i = 0;
    for (; i < nb; i += FC_ATT_LANES)
        for (int j = 0; j < FC_ATT_LANES; ++j) lane[j] += (double)a[i + j] * (double)b[i + j];
    double s = 0.0;
    for (; i < n; ++i) s += (double)a[i] * (double)b[i];
    for (int j = 0; j < FC_ATT_LANES; ++j) s += lane[j];
    return s;
}

/* dst[x] = sum_g w_g src[g * tile + x] for x < n, with w_g = alpha * W[h, g] (trans = 0)
 * or alpha * W[g, h] (trans = 1); the same order of operations as the forward's mixing. */
FC_INLINE void fc_att_mix1(fc_real *restrict dst, const fc_real *restrict src, const fc_real *W,
                                    ptrdiff_t H, ptrdiff_t h, int trans, fc_real alpha, ptrdiff_t n,
                                    ptrdiff_t tile)
{
    for (ptrdiff_t x0 = 0; x0 < n; x0 += FC_ATT_MIXC) {
        const ptrdiff_t x1 = x0 + FC_ATT_MIXC < n ? x0 + FC_ATT_MIXC : n;
        const fc_real w0 = alpha * (trans ? W[h] : W[h * H]);
        for (ptrdiff_t x = x0; x < x1; ++x) dst[x] = w0 * src[x];
        for (ptrdiff_t g = 1; g < H; ++g) {
            const fc_real w = alpha * (trans ? W[g * H + h] : W[h * H + g]);
            const fc_real *Sg = src + g * tile;
            for (ptrdiff_t x = x0; x < x1; ++x) dst[x] += w * Sg[x];
        }
    }
}

/* dst[j * BQ + r] = src[r * BK + j] for r < mq, j < n. */
FC_INLINE void fc_att_tr(fc_real *restrict dst, const fc_real *restrict src, ptrdiff_t mq, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; ++j)
        for (ptrdiff_t r = 0; r < mq; ++r) dst[j * FC_ATTN_BQ + r] = src[r * FC_ATTN_BK + j];
}

/* One (b, h) work item: FlashAttention-2 backward, key tiles outside, query tiles inside.
 * dbias (may be NULL) receives P (dP - D) of every visible entry. */
static FC_MULTIVERSION void fc_att_bwd_item(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t h,
                                                     fc_real *restrict P, fc_real *restrict dP,
                                                     fc_real *restrict Pt, fc_real *restrict dSt,
                                                     double *D, double *dbias)
{
    const ptrdiff_t H = c->H, T = c->T, S = c->S, dk = c->DK, dv = c->DV;
    const ptrdiff_t bh = b * H + h;
    const fc_real *Q = c->q + bh * T * dk, *K = c->k + bh * S * dk;
    const fc_real *O = c->out_c + bh * T * dv, *dO = c->dout + bh * T * dv;
    const fc_real *L = c->lse_c + bh * T;
    fc_real *dQ = c->dq + bh * T * dk, *dK = c->dk + bh * S * dk, *dV = c->dv + bh * S * dv;
    for (ptrdiff_t x = 0; x < T * dk; ++x) dQ[x] = (fc_real)0;
    for (ptrdiff_t x = 0; x < S * dk; ++x) dK[x] = (fc_real)0;
    for (ptrdiff_t x = 0; x < S * dv; ++x) dV[x] = (fc_real)0;
    for (ptrdiff_t i = 0; i < T; ++i) {
        double s = 0.0;
        for (ptrdiff_t d = 0; d < dv; ++d) s += (double)dO[i * dv + d] * (double)O[i * dv + d];
        D[i] = s;
    }
    for (ptrdiff_t kt = 0; kt < c->nkt; ++kt) {
        const ptrdiff_t j0 = kt * FC_ATTN_BK;
        const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
        const fc_real *Kt = c->kt + (bh * c->nkt + kt) * dk * FC_ATTN_BK;
        const fc_real *Vt = c->vt + (bh * c->nkt + kt) * dv * FC_ATTN_BK;
        for (ptrdiff_t qt = 0; qt < c->nqt; ++qt) {
            const ptrdiff_t i0 = qt * FC_ATTN_BQ;
            const ptrdiff_t mq = T - i0 < FC_ATTN_BQ ? T - i0 : FC_ATTN_BQ;
            const int64_t qsmax = fc_att_qseg_max(c, b, i0, mq);
            int64_t ksmax;
            if (!fc_att_tile_visible(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
            fc_att_gemm_pk(mq, FC_ATTN_BK, dk, Q + i0 * dk, dk, Kt, P, FC_ATTN_BK, 0);
            ptrdiff_t jmax = 0;
            for (ptrdiff_t r = 0; r < mq; ++r) {
                fc_real *s = P + r * FC_ATTN_BK;
                fc_real mx;
                ptrdiff_t jend = fc_att_mask_row(c, s, b, h, i0 + r, j0, nk, c->scale, ksmax, &mx);
                const fc_real li = L[i0 + r];
                if (li == -FC_INF) {
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
                } else {
                    (void)fc_att_exp_row(s, jend, li);
                    jmax = jend > jmax ? jend : jmax;
                }
            }
            if (jmax == 0) continue;
            fc_att_gemm_pk(mq, FC_ATTN_BK, dv, dO + i0 * dv, dv, Vt, dP, FC_ATTN_BK, 0);
            for (ptrdiff_t r = 0; r < mq; ++r) {
                const fc_real Di = (fc_real)D[i0 + r];
                fc_real *pr = P + r * FC_ATTN_BK, *dr = dP + r * FC_ATTN_BK;
                if (dbias == NULL) {
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] = pr[j] * (dr[j] - Di) * c->scale;
                } else {
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] = pr[j] * (dr[j] - Di);
                    fc_att_dbias_row(c, dbias, b, h, i0 + r, j0, jmax, dr);
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] *= c->scale;
                }
            }
            fc_att_tr(Pt, P, mq, jmax);
            fc_att_tr(dSt, dP, mq, jmax);
            fc_att_gemm(jmax, dv, mq, Pt, FC_ATTN_BQ, dO + i0 * dv, dv, dV + j0 * dv, dv, 1);
            fc_att_gemm(jmax, dk, mq, dSt, FC_ATTN_BQ, Q + i0 * dk, dk, dK + j0 * dk, dk, 1);
            fc_att_gemm(mq, dk, jmax, dP, FC_ATTN_BK, K + j0 * dk, dk, dQ + i0 * dk, dk, 1);
        }
    }
}

/* Talking-heads backward, one (query tile, key tile) of batch element b, all heads:
 * S_g = q_g k_g^T (unscaled), Z_h = mixed, scaled, biased, masked logits, turned in place
 * into P_h = exp(Z_h - lse_h); dU_h = dout_h v_h^T; dP_g = sum_h post[h, g] dU_h (dP = dU
 * without post_mix).  Returns jmax (0: nothing visible, the buffers are then undefined);
 * *Pp points at the P tiles (in Z, or in S without pre_mix). */
FC_INLINE ptrdiff_t fc_att_mix_bwd_tile(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t i0, ptrdiff_t mq,
                                                 ptrdiff_t kt, int64_t ksmax, fc_real *restrict Sb,
                                                 fc_real *restrict Zb, fc_real *restrict dU,
                                                 fc_real *restrict dPb, fc_real **Pp)
{
    const ptrdiff_t H = c->H, T = c->T, S = c->S, dk = c->DK, dv = c->DV;
    const ptrdiff_t j0 = kt * FC_ATTN_BK;
    const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
    const ptrdiff_t tile = (ptrdiff_t)FC_ATTN_BQ * FC_ATTN_BK, n = mq * FC_ATTN_BK;
    for (ptrdiff_t g = 0; g < H; ++g) {
        const fc_real *Q = c->q + ((b * H + g) * T + i0) * dk;
        const fc_real *Kt = c->kt + ((b * H + g) * c->nkt + kt) * dk * FC_ATTN_BK;
        fc_att_gemm_pk(mq, FC_ATTN_BK, dk, Q, dk, Kt, Sb + g * tile, FC_ATTN_BK, 0);
    }
    fc_real *Z = Sb;
    if (c->pre != NULL) {
        for (ptrdiff_t h = 0; h < H; ++h) fc_att_mix1(Zb + h * tile, Sb, c->pre, H, h, 0, (fc_real)1, n, tile);
        Z = Zb;
    }
    *Pp = Z;
    ptrdiff_t jmax = 0;
    for (ptrdiff_t h = 0; h < H; ++h) {
        const fc_real *L = c->lse_c + (b * H + h) * T + i0;
        for (ptrdiff_t r = 0; r < mq; ++r) {
            fc_real *s = Z + h * tile + r * FC_ATTN_BK;
            fc_real mx;
            ptrdiff_t jend = fc_att_mask_row(c, s, b, h, i0 + r, j0, nk, c->scale, ksmax, &mx);
            if (L[r] == -FC_INF) {
                for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
            } else {
                (void)fc_att_exp_row(s, jend, L[r]);
                jmax = jend > jmax ? jend : jmax;
            }
        }
    }
    if (jmax == 0) return 0;
    for (ptrdiff_t h = 0; h < H; ++h) {
        const fc_real *dO = c->dout + ((b * H + h) * T + i0) * dv;
        const fc_real *Vt = c->vt + ((b * H + h) * c->nkt + kt) * dv * FC_ATTN_BK;
        fc_att_gemm_pk(mq, FC_ATTN_BK, dv, dO, dv, Vt, dU + h * tile, FC_ATTN_BK, 0);
    }
    if (c->post != NULL)
        for (ptrdiff_t g = 0; g < H; ++g) fc_att_mix1(dPb + g * tile, dU, c->post, H, g, 1, (fc_real)1, n, tile);
    return jmax;
}

/* Talking-heads backward of batch element b (all heads, all tiles).  For every query
 * tile: D_h[i] = sum_j P_h[i,j] dP_h[i,j] (rowsum(dout * out) without post_mix; a first
 * sweep over the key tiles with it), then a second sweep forms dZ = P (dP - D) and
 *   dpost[h,g] += <dU_h, P_g>, dpre[h,g] += scale <dZ_h, S_g>, dbias += dZ,
 *   dV_h += U_h^T dout_h (U_h = sum_g post[h,g] P_g),
 *   dS_g = scale sum_h pre[h,g] dZ_h, dK_g += dS_g^T q_g, dQ_g += dS_g k_g.
 * Buffers: Sb, Zb, dU, dPb of H tiles each, W1, W2 one tile each, D of H * BQ. */
static FC_MULTIVERSION void fc_att_mix_bwd_item(const FC_ATT_CTX *c, ptrdiff_t b, fc_real *restrict Sb,
                                                         fc_real *restrict Zb, fc_real *restrict dU,
                                                         fc_real *restrict dPb, fc_real *restrict W1,
                                                         fc_real *restrict W2, double *D, double *dpre,
                                                         double *dpost, double *dbias)
{
    const ptrdiff_t H = c->H, T = c->T, S = c->S, dk = c->DK, dv = c->DV;
    const ptrdiff_t tile = (ptrdiff_t)FC_ATTN_BQ * FC_ATTN_BK;
    const fc_real *pre = c->pre, *post = c->post;
    for (ptrdiff_t h = 0; h < H; ++h) {
        const ptrdiff_t bh = b * H + h;
        fc_real *dQ = c->dq + bh * T * dk, *dK = c->dk + bh * S * dk, *dV = c->dv + bh * S * dv;
        for (ptrdiff_t x = 0; x < T * dk; ++x) dQ[x] = (fc_real)0;
        for (ptrdiff_t x = 0; x < S * dk; ++x) dK[x] = (fc_real)0;
        for (ptrdiff_t x = 0; x < S * dv; ++x) dV[x] = (fc_real)0;
    }
    for (ptrdiff_t qt = 0; qt < c->nqt; ++qt) {
        const ptrdiff_t i0 = qt * FC_ATTN_BQ;
        const ptrdiff_t mq = T - i0 < FC_ATTN_BQ ? T - i0 : FC_ATTN_BQ;
        const ptrdiff_t n = mq * FC_ATTN_BK;
        const int64_t qsmax = fc_att_qseg_max(c, b, i0, mq);
        fc_real *P;
        fc_real *dP = post != NULL ? dPb : dU;
        if (post == NULL) {
            for (ptrdiff_t h = 0; h < H; ++h) {
                const fc_real *O = c->out_c + ((b * H + h) * T + i0) * dv;
                const fc_real *dO = c->dout + ((b * H + h) * T + i0) * dv;
                for (ptrdiff_t r = 0; r < mq; ++r) {
                    double s = 0.0;
                    for (ptrdiff_t d = 0; d < dv; ++d) s += (double)dO[r * dv + d] * (double)O[r * dv + d];
                    D[h * FC_ATTN_BQ + r] = s;
                }
            }
        } else {
            for (ptrdiff_t x = 0; x < H * FC_ATTN_BQ; ++x) D[x] = 0.0;
            for (ptrdiff_t kt = 0; kt < c->nkt; ++kt) {
                const ptrdiff_t j0 = kt * FC_ATTN_BK;
                const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
                int64_t ksmax;
                if (!fc_att_tile_visible(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
                if (fc_att_mix_bwd_tile(c, b, i0, mq, kt, ksmax, Sb, Zb, dU, dPb, &P) == 0) continue;
                for (ptrdiff_t h = 0; h < H; ++h)
                    for (ptrdiff_t r = 0; r < mq; ++r)
                        D[h * FC_ATTN_BQ + r] += fc_att_dot(P + h * tile + r * FC_ATTN_BK,
                                                                     dP + h * tile + r * FC_ATTN_BK, FC_ATTN_BK);
            }
        }
        for (ptrdiff_t kt = 0; kt < c->nkt; ++kt) {
            const ptrdiff_t j0 = kt * FC_ATTN_BK;
            const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
            int64_t ksmax;
            if (!fc_att_tile_visible(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
            const ptrdiff_t jmax = fc_att_mix_bwd_tile(c, b, i0, mq, kt, ksmax, Sb, Zb, dU, dPb, &P);
            if (jmax == 0) continue;
            if (post != NULL && dpost != NULL)
                for (ptrdiff_t h = 0; h < H; ++h)
                    for (ptrdiff_t g = 0; g < H; ++g)
                        dpost[h * H + g] += fc_att_dot(dU + h * tile, P + g * tile, n);
            /* dZ = P (dP - D), in place of dP */
            for (ptrdiff_t h = 0; h < H; ++h)
                for (ptrdiff_t r = 0; r < mq; ++r) {
                    const fc_real Di = (fc_real)D[h * FC_ATTN_BQ + r];
                    const fc_real *pr = P + h * tile + r * FC_ATTN_BK;
                    fc_real *dr = dP + h * tile + r * FC_ATTN_BK;
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] = pr[j] * (dr[j] - Di);
                    if (dbias != NULL) fc_att_dbias_row(c, dbias, b, h, i0 + r, j0, jmax, dr);
                }
            if (pre != NULL && dpre != NULL)
                for (ptrdiff_t h = 0; h < H; ++h)
                    for (ptrdiff_t g = 0; g < H; ++g)
                        dpre[h * H + g] += (double)c->scale * fc_att_dot(dP + h * tile, Sb + g * tile, n);
            for (ptrdiff_t h = 0; h < H; ++h) {
                const fc_real *U = P + h * tile;
                if (post != NULL) {
                    fc_att_mix1(W1, P, post, H, h, 0, (fc_real)1, n, tile);
                    U = W1;
                }
                fc_att_tr(W2, U, mq, jmax);
                const fc_real *dO = c->dout + ((b * H + h) * T + i0) * dv;
                fc_real *dV = c->dv + ((b * H + h) * S + j0) * dv;
                fc_att_gemm(jmax, dv, mq, W2, FC_ATTN_BQ, dO, dv, dV, dv, 1);
            }
            for (ptrdiff_t g = 0; g < H; ++g) {
                if (pre != NULL) {
                    fc_att_mix1(W1, dP, pre, H, g, 1, c->scale, n, tile);
                } else {
                    const fc_real *dz = dP + g * tile;
                    for (ptrdiff_t x = 0; x < n; ++x) W1[x] = dz[x] * c->scale;
                }
                fc_att_tr(W2, W1, mq, jmax);
                const ptrdiff_t bg = b * H + g;
                fc_att_gemm(jmax, dk, mq, W2, FC_ATTN_BQ, c->q + (bg * T + i0) * dk, dk,
                                     c->dk + (bg * S + j0) * dk, dk, 1);
                fc_att_gemm(mq, dk, jmax, W1, FC_ATTN_BK, c->k + (bg * S + j0) * dk, dk,
                                     c->dq + (bg * T + i0) * dk, dk, 1);
            }
        }
    }
}

/* The backward's team: work items (groups of batch elements and heads that share dbias
 * entries, see fc_attention_backward) claimed one at a time; each rank has its own tiles. */
typedef struct {
    const FC_ATT_CTX *c;
    int *failed;
    double *part, *dbias;
    ptrdiff_t work, ngh, next;
    int mix, bshare, dpre, dpost;
} fc_att_bwd_job;

static void fc_att_bwd_team(void *arg)
{
    fc_att_bwd_job *job = arg;
    const FC_ATT_CTX *c = job->c;
    const int mix = job->mix, bshare = job->bshare, tid = fc_thread_id();
    const ptrdiff_t B = c->B, H = c->H, T = c->T, ngh = job->ngh, work = job->work;
    double *dbias = job->dbias;
    const size_t tile = (size_t)FC_ATTN_BQ * FC_ATTN_BK;
    const size_t ntile = mix ? (size_t)(4 * H + 2) : 4;
    fc_real *buf = (fc_real *)malloc(sizeof(fc_real) * ntile * tile);
    double *D = (double *)malloc(sizeof(double) * (size_t)(mix ? H * FC_ATTN_BQ : T));
    if (buf == NULL || D == NULL) {
        job->failed[tid] = 1;
    } else {
        for (ptrdiff_t w; !fc_interrupted() && (w = fc_claim(&job->next)) < work;) {
            const ptrdiff_t gb = w / ngh, gh = w % ngh;
            const ptrdiff_t b0 = bshare ? 0 : gb, b1 = bshare ? B : gb + 1;
            for (ptrdiff_t b = b0; b < b1; ++b) {
                if (mix) {
                    const size_t Ht = (size_t)H * tile;
                    double *pp = job->part + 2 * w * H * H;
                    fc_att_mix_bwd_item(c, b, buf, buf + Ht, buf + 2 * Ht, buf + 3 * Ht, buf + 4 * Ht,
                                                 buf + 4 * Ht + tile, D, job->dpre ? pp : NULL,
                                                 job->dpost ? pp + H * H : NULL, dbias);
                } else {
                    const ptrdiff_t h0 = ngh == 1 ? 0 : gh, h1 = ngh == 1 ? H : gh + 1;
                    for (ptrdiff_t h = h0; h < h1; ++h)
                        fc_att_bwd_item(c, b, h, buf, buf + tile, buf + 2 * tile, buf + 3 * tile, D,
                                                 dbias);
                }
            }
        }
    }
    free(buf);
    free(D);
}

int FC_NAME(fc_attention_backward)(const fc_attention_problem *p, const fc_attention_grads *g)
{
    const fc_real *q = p->q, *k = p->k, *v = p->v;
    const ptrdiff_t B = p->B, H = p->H, T = p->T, S = p->S, dk = p->dk, dv = p->dv;
    const double scale = p->scale;
    const fc_attn_mask *mask = p->mask;
    const fc_real *pre_mix = p->pre_mix, *post_mix = p->post_mix;
    const int n_threads = p->n_threads;
    const fc_real *out = g->out, *dout = g->dout, *lse = g->lse;
    fc_real *dq = g->dq, *dk_ = g->dk, *dv_ = g->dv;
    double *dpre = g->dpre, *dpost = g->dpost, *dbias = g->dbias;
    int st = fc_att_check(B, H, T, S, dk, dv, mask, n_threads);
    if (st != FC_OK) return st;
    if (dbias != NULL && mask->bias == NULL) return FC_BAD_ARGUMENT;
    if (dpre != NULL)
        for (ptrdiff_t x = 0; x < H * H; ++x) dpre[x] = 0.0;
    if (dpost != NULL)
        for (ptrdiff_t x = 0; x < H * H; ++x) dpost[x] = 0.0;
    if (B * H == 0) return FC_OK;
    if (T == 0 || S == 0) {
        for (ptrdiff_t x = 0; x < B * H * T * dk; ++x) dq[x] = (fc_real)0;
        for (ptrdiff_t x = 0; x < B * H * S * dk; ++x) dk_[x] = (fc_real)0;
        for (ptrdiff_t x = 0; x < B * H * S * dv; ++x) dv_[x] = (fc_real)0;
        return FC_OK;
    }
    if (q == NULL || k == NULL || v == NULL || out == NULL || dout == NULL || lse == NULL ||
        dq == NULL || dk_ == NULL || dv_ == NULL)
        return FC_BAD_ARGUMENT;
    const int mix = pre_mix != NULL || post_mix != NULL;
    const ptrdiff_t nqt = (T + FC_ATTN_BQ - 1) / FC_ATTN_BQ, nkt = (S + FC_ATTN_BK - 1) / FC_ATTN_BK;
    /* Work items.  Entries of dbias shared by several items (a bias broadcast over the
     * batch or the heads) are summed in a fixed order by putting those items in one
     * group, computed by one thread; dpre / dpost are summed per item and then in item
     * order.  So results never depend on n_threads. */
    const int bshare = dbias != NULL && mask->bias_strides[0] == 0;
    const int hshare = dbias != NULL && mask->bias_strides[1] == 0;
    const ptrdiff_t ngb = bshare ? 1 : B, ngh = mix ? 1 : (hshare ? 1 : H);
    const ptrdiff_t work = ngb * ngh;
    const int nt = fc_clamp_threads(n_threads, work);
    fc_real *kt = (fc_real *)malloc(sizeof(fc_real) * (size_t)(B * H * nkt * dk * FC_ATTN_BK));
    fc_real *vt = (fc_real *)malloc(sizeof(fc_real) * (size_t)(B * H * nkt * dv * FC_ATTN_BK));
    int *failed = (int *)calloc((size_t)nt, sizeof(int));
    double *part = mix ? (double *)calloc((size_t)(2 * work * H * H), sizeof(double)) : NULL;
    if (kt == NULL || vt == NULL || failed == NULL || (mix && part == NULL)) {
        free(kt);
        free(vt);
        free(failed);
        free(part);
        return FC_OUT_OF_MEMORY;
    }
    fc_att_transpose_tiles(k, kt, B * H, S, dk, nkt, n_threads);
    fc_att_transpose_tiles(v, vt, B * H, S, dv, nkt, n_threads);

    FC_ATT_CTX c;
    memset(&c, 0, sizeof c);
    c.q = q; c.k = k; c.v = v; c.kt = kt; c.vt = vt; c.out_c = out; c.dout = dout; c.lse_c = lse;
    c.dq = dq; c.dk = dk_; c.dv = dv_;
    c.B = B; c.H = H; c.T = T; c.S = S; c.DK = dk; c.DV = dv; c.nqt = nqt; c.nkt = nkt;
    c.scale = (fc_real)scale; c.mk = mask; c.pre = pre_mix; c.post = post_mix;

    fc_att_bwd_job job = {.c = &c, .failed = failed, .part = part, .dbias = dbias, .work = work,
                                   .ngh = ngh, .next = 0, .mix = mix, .bshare = bshare,
                                   .dpre = dpre != NULL, .dpost = dpost != NULL};
    fc_interrupt_begin();
    fc_team(nt, fc_att_bwd_team, &job);
    st = FC_OK;
    for (int t = 0; t < nt; ++t)
        if (failed[t]) st = FC_OUT_OF_MEMORY;
    if (fc_interrupt_pending()) st = FC_INTERRUPTED; /* Ctrl-C */
    if (mix && st == FC_OK)
        for (ptrdiff_t w = 0; w < work; ++w)
            for (ptrdiff_t x = 0; x < H * H; ++x) {
                if (dpre != NULL) dpre[x] += part[2 * w * H * H + x];
                if (dpost != NULL) dpost[x] += part[2 * w * H * H + H * H + x];
            }
    free(failed);
    free(part);
    free(kt);
    free(vt);
    return st;
}
