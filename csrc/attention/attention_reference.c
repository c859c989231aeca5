/* The reference path of the attention kernels (attention.h): plain C, one batch element at a
 * time, every quantity in double, each head's (T, S) logits and probabilities stored whole;
 * written to be read against the maths and compared with the fast kernels by the tests
 * (fc_attention_problem.path = FC_PATH_REFERENCE).  No tiles, no online softmax, no SIMD, no
 * threads: nothing here is shared with the fast kernels.
 *
 * Notation for one batch element b (b dropped from the indices): q_g (T, dk), k_g (S, dk),
 * v_g (S, dv), dout_g (T, dv) of head g; s = scale; qp(i) = q_pos[b, i] (i without q_pos),
 * kp(j) = k_pos[b, j] (j without k_pos); W = pre_mix, R = post_mix (H, H), the identity when
 * not given.
 *
 * Visible: key j is visible from query i of head h when every given mask lets it through:
 *       causal    j <= i + causal_offset        kv_len    j < kv_len[b]
 *       segments  k_seg[b, j] <= q_seg[b, i]    key_keep  key_keep[b, j] != 0
 *       mask      mask[b ms0 + h ms1 + qp(i) ms2 + kp(j) ms3] != 0
 *       (fastcore/attention.py turns an `order` into causal, q_pos / k_pos and key_keep.)
 * Logits  A_g[i, j] = <q_g[i], k_g[j]>
 *         Z_h[i, j] = s sum_g W[h, g] A_g[i, j] + bias[b bs0 + h bs1 + qp(i) bs2 + kp(j) bs3]
 *                     where visible (no bias: + 0), -inf elsewhere.
 * Softmax with the row maximum m_h[i] = max_j Z_h[i, j] subtracted:
 *         lse_h[i] = m + log sum_j exp(Z_h[i, j] - m),   P_h[i, j] = exp(Z_h[i, j] - lse_h[i]);
 *         a row with no visible key (m = -inf) has P = 0 and lse = -inf.  (A +inf or NaN
 *         logit, an overflow of the input precision in the fast kernels, makes the row NaN.)
 * Output  U_h = sum_g R[h, g] P_g,   out_h[i] = sum_j U_h[i, j] v_h[j].
 * Backward of a loss L with dout = dL/dout, by the chain rule through the lines above:
 *         dU_h[i, j] = <dout_h[i], v_h[j]>          dV_h[j] = sum_i U_h[i, j] dout_h[i]
 *         dpost[h, g] = sum_b,i,j dU_h[i, j] P_g[i, j]
 *         dP_g = sum_h R[h, g] dU_h
 *         dZ_h[i, j] = P_h[i, j] (dP_h[i, j] - sum_j' P_h[i, j'] dP_h[i, j'])   (softmax)
 *         dbias[the entry of (b, h, i, j)] += dZ_h[i, j]   (visible entries; accumulated into)
 *         dpre[h, g] = s sum_b,i,j dZ_h[i, j] A_g[i, j]
 *         dA_g = s sum_h W[h, g] dZ_h,  dQ_g[i] = sum_j dA_g[i, j] k_g[j],  dK_g[j] = sum_i dA_g[i, j] q_g[i]
 *         dpre / dpost are 0 when pre_mix / post_mix is not given.  P is recomputed from q, k, v:
 *         the forward's out and lse are required (as by the fast kernels) but not read.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention/attention_internal.h"
#include "core/fc_reference.h"

/* ---------------------------------------------------------------- helpers */

/* The argument checks every operation starts with (those of the fast kernels). */
static int bad_problem(const fc_attention_problem *p)
{
    const fc_attn_mask *mk = p->mask;
    if (p->dtype != FC_FLOAT32 && p->dtype != FC_FLOAT64) return 1;
    if (p->B < 0 || p->H < 0 || p->T < 0 || p->S < 0 || p->dk < 1 || p->dv < 1 || p->n_threads < 1) return 1;
    return mk == NULL || (mk->q_seg == NULL) != (mk->k_seg == NULL);
}

/* The problem in double and the current batch element's (H, T, S) tables. */
typedef struct {
    const fc_attention_problem *p;
    ptrdiff_t H, T, S, n;  /* n = T S */
    double *W, *R;         /* (H, H) pre_mix, post_mix (identity when not given) */
    double *A;             /* (H, T, S) A_g = q_g k_g^T */
    double *P;             /* (H, T, S) Z, then P */
    double *X, *Y;         /* (H, T, S) U, or the backward's dU, dP / dZ, dA */
    double *lse;           /* (H, T) */
} ref_ctx;

static void ctx_free(ref_ctx *c)
{
    free(c->W); free(c->R); free(c->A); free(c->P); free(c->X); free(c->Y); free(c->lse);
}

static int ctx_init(ref_ctx *c, const fc_attention_problem *p)
{
    const ptrdiff_t H = p->H, n = p->T * p->S;
    const size_t hhs = (size_t)(H * H > 0 ? H * H : 1), hn = (size_t)(H * n > 0 ? H * n : 1);
    memset(c, 0, sizeof *c);
    c->p = p; c->H = H; c->T = p->T; c->S = p->S; c->n = n;
    c->W = malloc(sizeof(double) * hhs);
    c->R = malloc(sizeof(double) * hhs);
    c->A = malloc(sizeof(double) * hn);
    c->P = malloc(sizeof(double) * hn);
    c->X = malloc(sizeof(double) * hn);
    c->Y = malloc(sizeof(double) * hn);
    c->lse = malloc(sizeof(double) * (size_t)(H * p->T > 0 ? H * p->T : 1));
    if (!c->W || !c->R || !c->A || !c->P || !c->X || !c->Y || !c->lse) {
        ctx_free(c);
        return FC_OUT_OF_MEMORY;
    }
    for (ptrdiff_t h = 0; h < H; ++h)
        for (ptrdiff_t g = 0; g < H; ++g) {
            c->W[h * H + g] = p->pre_mix ? fc_ref_load(p->pre_mix, p->dtype, h * H + g) : (double)(h == g);
            c->R[h * H + g] = p->post_mix ? fc_ref_load(p->post_mix, p->dtype, h * H + g) : (double)(h == g);
        }
    return FC_OK;
}

/* Where the mask and the bias are read for (b, h, i, j) with these strides. */
static ptrdiff_t at(const fc_attention_problem *p, const ptrdiff_t *strides, ptrdiff_t b, ptrdiff_t h,
                    ptrdiff_t i, ptrdiff_t j)
{
    const fc_attn_mask *mk = p->mask;
    const ptrdiff_t qp = mk->q_pos ? (ptrdiff_t)mk->q_pos[b * p->T + i] : i;
    const ptrdiff_t kp = mk->k_pos ? (ptrdiff_t)mk->k_pos[b * p->S + j] : j;
    return b * strides[0] + h * strides[1] + qp * strides[2] + kp * strides[3];
}

/* Whether key j is visible from query i of head h of batch element b (every mask ANDed). */
static int visible(const fc_attention_problem *p, ptrdiff_t b, ptrdiff_t h, ptrdiff_t i, ptrdiff_t j)
{
    const fc_attn_mask *mk = p->mask;
    if (mk->causal && j > i + mk->causal_offset) return 0;
    if (mk->kv_len && j >= mk->kv_len[b]) return 0;
    if (mk->q_seg && mk->k_seg[b * p->S + j] > mk->q_seg[b * p->T + i]) return 0;
    if (mk->key_keep && !mk->key_keep[b * p->S + j]) return 0;
    if (mk->mask && !mk->mask[at(p, mk->mask_strides, b, h, i, j)]) return 0;
    return 1;
}

/* A, P and lse of batch element b. */
static void probabilities(ref_ctx *c, ptrdiff_t b)
{
    const fc_attention_problem *p = c->p;
    const fc_dtype dt = p->dtype;
    const ptrdiff_t H = c->H, T = c->T, S = c->S, dk = p->dk;
    for (ptrdiff_t g = 0; g < H; ++g)
        for (ptrdiff_t i = 0; i < T; ++i)
            for (ptrdiff_t j = 0; j < S; ++j) {
                double a = 0.0;
                for (ptrdiff_t d = 0; d < dk; ++d)
                    a += fc_ref_load(p->q, dt, ((b * H + g) * T + i) * dk + d) * fc_ref_load(p->k, dt, ((b * H + g) * S + j) * dk + d);
                c->A[(g * T + i) * S + j] = a;
            }
    for (ptrdiff_t h = 0; h < H; ++h)
        for (ptrdiff_t i = 0; i < T; ++i) {
            double *z = c->P + (h * T + i) * S, m = -INFINITY, sum = 0.0;
            for (ptrdiff_t j = 0; j < S; ++j) {
                z[j] = -INFINITY;
                if (!visible(p, b, h, i, j)) continue;
                double mixed = 0.0;
                for (ptrdiff_t g = 0; g < H; ++g) mixed += c->W[h * H + g] * c->A[(g * T + i) * S + j];
                z[j] = p->scale * mixed;
                if (p->mask->bias) z[j] += fc_ref_load(p->mask->bias, dt, at(p, p->mask->bias_strides, b, h, i, j));
                if (z[j] > m) m = z[j];
            }
            if (m == -INFINITY) { /* no visible key */
                for (ptrdiff_t j = 0; j < S; ++j) z[j] = 0.0;
                c->lse[h * T + i] = -INFINITY;
                continue;
            }
            for (ptrdiff_t j = 0; j < S; ++j) sum += exp(z[j] - m);
            c->lse[h * T + i] = m + log(sum);
            for (ptrdiff_t j = 0; j < S; ++j) z[j] = exp(z[j] - m) / sum;
        }
}

/* dst_h = sum_g M[h, g] src_g (trans = 0) or sum_g M[g, h] src_g (trans = 1), (H, T, S) tables. */
static void mix(const ref_ctx *c, const double *M, int trans, const double *src, double *dst)
{
    const ptrdiff_t H = c->H, n = c->n;
    for (ptrdiff_t h = 0; h < H; ++h)
        for (ptrdiff_t x = 0; x < n; ++x) {
            double sum = 0.0;
            for (ptrdiff_t g = 0; g < H; ++g) sum += (trans ? M[g * H + h] : M[h * H + g]) * src[g * n + x];
            dst[h * n + x] = sum;
        }
}

/* ---------------------------------------------------------------- forward */

int fc_attention_ref(const fc_attention_problem *p, void *out, void *lse)
{
    if (p == NULL || bad_problem(p)) return FC_BAD_ARGUMENT;
    const ptrdiff_t B = p->B, H = p->H, T = p->T, S = p->S, dv = p->dv;
    const fc_dtype dt = p->dtype;
    if (B * H * T == 0) return FC_OK;
    if (p->q == NULL || out == NULL || lse == NULL) return FC_BAD_ARGUMENT;
    if (S > 0 && (p->k == NULL || p->v == NULL)) return FC_BAD_ARGUMENT;
    ref_ctx c;
    if (ctx_init(&c, p) != FC_OK) return FC_OUT_OF_MEMORY;
    for (ptrdiff_t b = 0; b < B; ++b) {
        probabilities(&c, b);
        mix(&c, c.R, 0, c.P, c.X); /* U */
        for (ptrdiff_t h = 0; h < H; ++h)
            for (ptrdiff_t i = 0; i < T; ++i) {
                fc_ref_store(lse, dt, (b * H + h) * T + i, c.lse[h * T + i]); /* lse (B, H, T) */
                for (ptrdiff_t d = 0; d < dv; ++d) {
                    double o = 0.0;
                    for (ptrdiff_t j = 0; j < S; ++j)
                        o += c.X[(h * T + i) * S + j] * fc_ref_load(p->v, dt, ((b * H + h) * S + j) * dv + d);
                    fc_ref_store(out, dt, ((b * H + h) * T + i) * dv + d, o); /* out (B, H, T, dv) */
                }
            }
    }
    ctx_free(&c);
    return FC_OK;
}

/* ---------------------------------------------------------------- backward */

int fc_attention_backward_ref(const fc_attention_problem *p, const fc_attention_grads *gr)
{
    if (p == NULL || gr == NULL || bad_problem(p)) return FC_BAD_ARGUMENT;
    const ptrdiff_t B = p->B, H = p->H, T = p->T, S = p->S, dk = p->dk, dv = p->dv;
    const fc_dtype dt = p->dtype;
    const fc_attn_mask *mk = p->mask;
    if (gr->dbias != NULL && mk->bias == NULL) return FC_BAD_ARGUMENT;
    for (ptrdiff_t x = 0; x < H * H; ++x) {
        if (gr->dpre) gr->dpre[x] = 0.0;
        if (gr->dpost) gr->dpost[x] = 0.0;
    }
    if (B * H == 0) return FC_OK;
    if (T == 0 || S == 0) { /* nothing attends: zero gradients */
        for (ptrdiff_t x = 0; gr->dq && x < B * H * T * dk; ++x) fc_ref_store(gr->dq, dt, x, 0.0);
        for (ptrdiff_t x = 0; gr->dk && x < B * H * S * dk; ++x) fc_ref_store(gr->dk, dt, x, 0.0);
        for (ptrdiff_t x = 0; gr->dv && x < B * H * S * dv; ++x) fc_ref_store(gr->dv, dt, x, 0.0);
        return FC_OK;
    }
    if (p->q == NULL || p->k == NULL || p->v == NULL || gr->out == NULL || gr->dout == NULL || gr->lse == NULL ||
        gr->dq == NULL || gr->dk == NULL || gr->dv == NULL)
        return FC_BAD_ARGUMENT;
    ref_ctx c;
    if (ctx_init(&c, p) != FC_OK) return FC_OUT_OF_MEMORY;
    double *U = malloc(sizeof(double) * (size_t)(H * T * S));
    if (U == NULL) { ctx_free(&c); return FC_OUT_OF_MEMORY; }
    const ptrdiff_t n = c.n;
    for (ptrdiff_t b = 0; b < B; ++b) {
        probabilities(&c, b);
        /* dU into X, then dP = R^T dU into Y */
        for (ptrdiff_t h = 0; h < H; ++h)
            for (ptrdiff_t i = 0; i < T; ++i)
                for (ptrdiff_t j = 0; j < S; ++j) {
                    double u = 0.0;
                    for (ptrdiff_t d = 0; d < dv; ++d)
                        u += fc_ref_load(gr->dout, dt, ((b * H + h) * T + i) * dv + d) * fc_ref_load(p->v, dt, ((b * H + h) * S + j) * dv + d);
                    c.X[(h * T + i) * S + j] = u;
                }
        if (p->post_mix && gr->dpost)
            for (ptrdiff_t h = 0; h < H; ++h)
                for (ptrdiff_t g = 0; g < H; ++g)
                    for (ptrdiff_t x = 0; x < n; ++x) gr->dpost[h * H + g] += c.X[h * n + x] * c.P[g * n + x];
        mix(&c, c.R, 1, c.X, c.Y);
        /* dZ = P (dP - rowsum(P dP)), in place of dP */
        for (ptrdiff_t h = 0; h < H; ++h)
            for (ptrdiff_t i = 0; i < T; ++i) {
                const double *pr = c.P + (h * T + i) * S;
                double *dr = c.Y + (h * T + i) * S, D = 0.0;
                for (ptrdiff_t j = 0; j < S; ++j) D += pr[j] * dr[j];
                for (ptrdiff_t j = 0; j < S; ++j) dr[j] = pr[j] * (dr[j] - D);
                for (ptrdiff_t j = 0; gr->dbias && j < S; ++j)
                    if (visible(p, b, h, i, j)) gr->dbias[at(p, mk->bias_strides, b, h, i, j)] += dr[j];
            }
        if (p->pre_mix && gr->dpre)
            for (ptrdiff_t h = 0; h < H; ++h)
                for (ptrdiff_t g = 0; g < H; ++g)
                    for (ptrdiff_t x = 0; x < n; ++x) gr->dpre[h * H + g] += p->scale * c.Y[h * n + x] * c.A[g * n + x];
        mix(&c, c.R, 0, c.P, U);   /* U */
        mix(&c, c.W, 1, c.Y, c.X); /* dA / s */
        for (ptrdiff_t h = 0; h < H; ++h) {
            const ptrdiff_t bh = b * H + h;
            for (ptrdiff_t j = 0; j < S; ++j) {
                for (ptrdiff_t d = 0; d < dv; ++d) { /* dv (B, H, S, dv) */
                    double sum = 0.0;
                    for (ptrdiff_t i = 0; i < T; ++i) sum += U[(h * T + i) * S + j] * fc_ref_load(gr->dout, dt, (bh * T + i) * dv + d);
                    fc_ref_store(gr->dv, dt, (bh * S + j) * dv + d, sum);
                }
                for (ptrdiff_t d = 0; d < dk; ++d) { /* dk (B, H, S, dk) */
                    double sum = 0.0;
                    for (ptrdiff_t i = 0; i < T; ++i) sum += c.X[(h * T + i) * S + j] * fc_ref_load(p->q, dt, (bh * T + i) * dk + d);
                    fc_ref_store(gr->dk, dt, (bh * S + j) * dk + d, p->scale * sum);
                }
            }
            for (ptrdiff_t i = 0; i < T; ++i)
                for (ptrdiff_t d = 0; d < dk; ++d) { /* dq (B, H, T, dk) */
                    double sum = 0.0;
                    for (ptrdiff_t j = 0; j < S; ++j) sum += c.X[(h * T + i) * S + j] * fc_ref_load(p->k, dt, (bh * S + j) * dk + d);
                    fc_ref_store(gr->dq, dt, (bh * T + i) * dk + d, p->scale * sum);
                }
        }
    }
    free(U);
    ctx_free(&c);
    return FC_OK;
}
