/* Tiled attention, instantiated once per precision by attention_f32.c and attention_f64.c (see fc_real.h).
 * No include guard on purpose.  The maths and layout are described in attention.h.
 *
 * Building blocks:
 *   fc_att_gemm    C (+)= A B on tiles, a 6 x NR register-blocked micro-kernel
 *                  (NR = 64 bytes of fc_real: 2 AVX2 vectors per row, 12 accumulators),
 *                  written with vector extensions that GCC compiles in every
 *                  FC_MULTIVERSION clone.  Key tiles are transposed (d-major, panels of
 *                  NR keys) so that Q K^T uses the same kernel: per work item in the
 *                  forward without mixing, once for all of k otherwise.  On 64 x 64 x 64
 *                  tiles it ran at 95 GFLOP/s (one Zen 4 core, AVX2) where OpenBLAS sgemm
 *                  called as scipy.linalg.cython_blas does ran at 62
 *                  (bench/attention_tile_gemm.c): no BLAS calls here.
 *   fc_att_mix_bwd_item  the talking-heads backward (all heads of a batch element).
 *   fc_att_mask_row  scale, bias and every mask of one logits row (masked -> -inf).
 *   fc_att_online_row  the online-softmax update of one row.
 */
#ifndef FC_ATTN_BQ
#define FC_ATTN_BQ 64 /* query rows per tile */
#endif
#ifndef FC_ATTN_BK
#define FC_ATTN_BK 64 /* keys per tile (a multiple of 16) */
#endif
#ifndef FC_ATT_LANES
#define FC_ATT_LANES 16
#endif
#ifndef FC_ATT_QG
#define FC_ATT_QG 4 /* query tiles per work item (they share each key / value tile) */
#endif
#ifndef FC_ATT_MIXC
#define FC_ATT_MIXC 256 /* entries per chunk of the talking-heads mixing loops */
#endif

#undef FC_ATT_NR
#define FC_ATT_NR ((int)(64 / sizeof(fc_real)))
#undef FC_ATT_CTX
#define FC_ATT_CTX FC_NAME(fc_att_ctx)

typedef struct {
    const fc_real *q, *k, *v;     /* inputs, (B,H,T,dk), (B,H,S,dk), (B,H,S,dv) */
    const fc_real *kt, *vt;       /* tiled transposed copies: [(b*H+h)*nkt + t][d][BK] */
    fc_real *out, *lse;           /* forward outputs */
    const fc_real *out_c, *dout, *lse_c; /* backward inputs */
    fc_real *dq, *dk, *dv;        /* backward outputs */
    ptrdiff_t B, H, T, S, DK, DV, nqt, nkt;
    fc_real scale;
    const fc_attn_mask *mk;
    const fc_real *pre, *post;    /* (H, H) or NULL */
} FC_ATT_CTX;

/* ------------------------------------------------------------------ GEMM tiles */

/* A vector of 32 bytes of fc_real in GCC/Clang's vector extension: one AVX2 register
 * (two SSE2 registers in the baseline clone).  Written with plain arrays, GCC spilled an
 * accumulator of the micro-kernel through memory on every iteration; with explicit
 * vectors the 12 accumulators stay in registers.  NR = 2 vectors per row. */
#if FC_VECTOR_EXT
#define FC_ATT_VECTOR_EXT 1
typedef fc_real FC_NAME(fc_att_vec) __attribute__((vector_size(32)));
#undef FC_ATT_VL
#define FC_ATT_VL ((int)(32 / sizeof(fc_real)))

FC_INLINE FC_NAME(fc_att_vec) FC_NAME(fc_att_ld)(const fc_real *p)
{
    FC_NAME(fc_att_vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

FC_INLINE void FC_NAME(fc_att_st)(fc_real *p, FC_NAME(fc_att_vec) v) { memcpy(p, &v, sizeof v); }

/* C[mr x NR] (+)= A[mr x K] B[K x NR]; A rows lda apart, B rows ldb apart; mr <= 6 is a
 * compile-time constant after inlining. */
FC_INLINE void FC_NAME(fc_att_mk)(const int mr, ptrdiff_t K, const fc_real *restrict A, ptrdiff_t lda,
                                  const fc_real *restrict B, ptrdiff_t ldb,
                                  fc_real *restrict C, ptrdiff_t ldc, int acc)
{
    FC_NAME(fc_att_vec) c0[6], c1[6];
    for (int r = 0; r < mr; ++r) {
        if (acc) {
            c0[r] = FC_NAME(fc_att_ld)(C + r * ldc);
            c1[r] = FC_NAME(fc_att_ld)(C + r * ldc + FC_ATT_VL);
        } else {
            c0[r] = (FC_NAME(fc_att_vec)){0};
            c1[r] = (FC_NAME(fc_att_vec)){0};
        }
    }
    for (ptrdiff_t kk = 0; kk < K; ++kk) {
        const FC_NAME(fc_att_vec) b0 = FC_NAME(fc_att_ld)(B + kk * ldb);
        const FC_NAME(fc_att_vec) b1 = FC_NAME(fc_att_ld)(B + kk * ldb + FC_ATT_VL);
        for (int r = 0; r < mr; ++r) {
            const fc_real a = A[r * lda + kk];
            c0[r] += a * b0;
            c1[r] += a * b1;
        }
    }
    for (int r = 0; r < mr; ++r) {
        FC_NAME(fc_att_st)(C + r * ldc, c0[r]);
        FC_NAME(fc_att_st)(C + r * ldc + FC_ATT_VL, c1[r]);
    }
}
#else
/* Portable form of the same micro-kernel. */
FC_INLINE void FC_NAME(fc_att_mk)(const int mr, ptrdiff_t K, const fc_real *restrict A, ptrdiff_t lda,
                                  const fc_real *restrict B, ptrdiff_t ldb,
                                  fc_real *restrict C, ptrdiff_t ldc, int acc)
{
    fc_real cc[6][FC_ATT_NR];
    for (int r = 0; r < mr; ++r)
        for (int c = 0; c < FC_ATT_NR; ++c) cc[r][c] = acc ? C[r * ldc + c] : (fc_real)0;
    for (ptrdiff_t kk = 0; kk < K; ++kk)
        for (int r = 0; r < mr; ++r) {
            const fc_real a = A[r * lda + kk];
            for (int c = 0; c < FC_ATT_NR; ++c) cc[r][c] += a * B[kk * ldb + c];
        }
    for (int r = 0; r < mr; ++r)
        for (int c = 0; c < FC_ATT_NR; ++c) C[r * ldc + c] = cc[r][c];
}
#endif

/* C[1 x n] (+)= A[1 x K] B[K x n] for the last n < NR columns. */
FC_INLINE void FC_NAME(fc_att_mk1_tail)(ptrdiff_t K, ptrdiff_t n, const fc_real *restrict A,
                                        const fc_real *restrict B, ptrdiff_t ldb,
                                        fc_real *restrict C, int acc)
{
    fc_real c0[FC_ATT_NR];
    for (int c = 0; c < FC_ATT_NR; ++c) c0[c] = (fc_real)0;
    for (ptrdiff_t kk = 0; kk < K; ++kk) {
        const fc_real a0 = A[kk];
        for (ptrdiff_t c = 0; c < n; ++c) c0[c] += a0 * B[kk * ldb + c];
    }
    for (ptrdiff_t c = 0; c < n; ++c) C[c] = acc ? C[c] + c0[c] : c0[c];
}

/* C[m x n] (+)= A[m x K] B[K x n] (row-major tiles): 6-row panels, then 4, 2, 1. */
FC_INLINE void FC_NAME(fc_att_gemm)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t K,
                                    const fc_real *A, ptrdiff_t lda, const fc_real *B,
                                    ptrdiff_t ldb, fc_real *C, ptrdiff_t ldc, int acc)
{
    ptrdiff_t nf = n - n % FC_ATT_NR;
    for (ptrdiff_t c = 0; c < nf; c += FC_ATT_NR) {
        ptrdiff_t r = 0;
        for (; r + 6 <= m; r += 6)
            FC_NAME(fc_att_mk)(6, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
        if (r + 4 <= m) {
            FC_NAME(fc_att_mk)(4, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
            r += 4;
        }
        if (r + 2 <= m) {
            FC_NAME(fc_att_mk)(2, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
            r += 2;
        }
        if (r < m) FC_NAME(fc_att_mk)(1, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
    }
    if (nf < n)
        for (ptrdiff_t r = 0; r < m; ++r)
            FC_NAME(fc_att_mk1_tail)(K, n - nf, A + r * lda, B + nf, ldb, C + r * ldc + nf, acc);
}

/* C[m x n] (+)= A[m x K] B[K x n] with B "panel-major": the NR columns of panel p are
 * stored K x NR contiguously at B + p * K * NR (n is a multiple of NR).  The transposed
 * key tiles use this layout so that the micro-kernel streams B from consecutive lines. */
FC_INLINE void FC_NAME(fc_att_gemm_pk)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t K,
                                       const fc_real *A, ptrdiff_t lda, const fc_real *B,
                                       fc_real *C, ptrdiff_t ldc, int acc)
{
    for (ptrdiff_t c = 0; c < n; c += FC_ATT_NR) {
        const fc_real *Bp = B + (c / FC_ATT_NR) * K * FC_ATT_NR;
        ptrdiff_t r = 0;
        for (; r + 6 <= m; r += 6)
            FC_NAME(fc_att_mk)(6, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
        if (r + 4 <= m) {
            FC_NAME(fc_att_mk)(4, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
            r += 4;
        }
        if (r + 2 <= m) {
            FC_NAME(fc_att_mk)(2, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
            r += 2;
        }
        if (r < m) FC_NAME(fc_att_mk)(1, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
    }
}

/* ------------------------------------------------------------------ rows */

/* Largest of x[0 .. n) (-inf when n = 0), after x[j] *= scale when do_scale.
 * Written with explicit vectors: GCC leaves a conditional max-reduction scalar. */
FC_INLINE fc_real FC_NAME(fc_att_scale_max_)(fc_real *restrict x, ptrdiff_t n, fc_real scale, int do_scale)
{
    ptrdiff_t i = 0;
    fc_real m = -FC_INF;
#ifdef FC_ATT_VECTOR_EXT
    typedef FC_NAME(fc_att_vec) vec;
#if FC_REAL_DOUBLE
    typedef int64_t ivec __attribute__((vector_size(32)));
#else
    typedef int32_t ivec __attribute__((vector_size(32)));
#endif
    vec m0 = (vec){0} - FC_INF, m1 = m0;
    for (; i + 2 * FC_ATT_VL <= n; i += 2 * FC_ATT_VL) {
        vec a = FC_NAME(fc_att_ld)(x + i), b = FC_NAME(fc_att_ld)(x + i + FC_ATT_VL);
        if (do_scale) {
            a *= scale;
            b *= scale;
            FC_NAME(fc_att_st)(x + i, a);
            FC_NAME(fc_att_st)(x + i + FC_ATT_VL, b);
        }
        ivec ka = a > m0, kb = b > m1;
        m0 = (vec)(((ivec)a & ka) | ((ivec)m0 & ~ka));
        m1 = (vec)(((ivec)b & kb) | ((ivec)m1 & ~kb));
    }
    for (int j = 0; j < FC_ATT_VL; ++j) {
        m = m0[j] > m ? m0[j] : m;
        m = m1[j] > m ? m1[j] : m;
    }
#endif
    for (; i < n; ++i) {
        if (do_scale) x[i] *= scale;
        m = x[i] > m ? x[i] : m;
    }
    return m;
}

FC_INLINE fc_real FC_NAME(fc_att_max)(const fc_real *x, ptrdiff_t n)
{
    return FC_NAME(fc_att_scale_max_)((fc_real *)x, n, (fc_real)1, 0);
}

/* exp(x) for x <= 0 (or -inf), as accurate as fc_exp of fc_math.h but without its
 * handling of positive overflow and of subnormal results: results below the smallest
 * normal number (x < -87 in float, -708 in double) are flushed to 0.  In a softmax the
 * argument is a logit minus the row maximum, so those terms are below 1e-37 of the sum. */
FC_INLINE fc_real FC_NAME(fc_att_expneg)(fc_real x) { return FC_EXP_FTZ(x); }

/* s[j] *= scale for j < n; returns the maximum of the scaled entries (-inf when n = 0). */
FC_INLINE fc_real FC_NAME(fc_att_scale_max)(fc_real *restrict x, ptrdiff_t n, fc_real scale)
{
    return FC_NAME(fc_att_scale_max_)(x, n, scale, 1);
}

/* s[j] = exp(s[j] - m) for j < n, 0 for n <= j < FC_ATTN_BK; returns the sum in double.
 * The lanes add at most FC_ATTN_BK / FC_ATT_LANES = 4 terms (each <= 1) in fc_real and
 * are then summed in double: the float32 lanes vectorise at full width, where double
 * lanes cost a conversion per element (measured: 22% of the no-mask forward in exp_row
 * with double lanes). */
FC_INLINE double FC_NAME(fc_att_exp_row)(fc_real *restrict s, ptrdiff_t n, fc_real m)
{
    fc_real lane[FC_ATT_LANES];
    for (int j = 0; j < FC_ATT_LANES; ++j) lane[j] = (fc_real)0;
    ptrdiff_t nb = n - n % FC_ATT_LANES, i = 0;
    for (; i < nb; i += FC_ATT_LANES)
        for (int j = 0; j < FC_ATT_LANES; ++j) {
            fc_real e = FC_NAME(fc_att_expneg)(s[i + j] - m);
            s[i + j] = e;
            lane[j] += e;
        }
    double sum = 0.0;
    for (; i < n; ++i) {
        s[i] = FC_NAME(fc_att_expneg)(s[i] - m);
        sum += (double)s[i];
    }
    for (; i < FC_ATTN_BK; ++i) s[i] = (fc_real)0;
    /* a tree in double rather than 16 dependent additions (4.5% of the forward, perf) */
    double t[FC_ATT_LANES / 2];
    for (int j = 0; j < FC_ATT_LANES / 2; ++j) t[j] = (double)lane[j] + (double)lane[j + FC_ATT_LANES / 2];
    for (int w = FC_ATT_LANES / 4; w >= 1; w /= 2)
        for (int j = 0; j < w; ++j) t[j] += t[j + w];
    return sum + t[0];
}

/* Logits row of kernel query i against keys j0 .. j0 + nk - 1 (s has FC_ATTN_BK entries):
 * multiplies by scale, adds the bias, sets hidden entries to -inf.  Returns jend:
 * entries from jend on are cut by causal / kv_len / the end of the keys, and are left
 * as they are (every caller ignores them).  *mx receives the maximum over [0, jend). */
FC_INLINE ptrdiff_t FC_NAME(fc_att_mask_row)(const FC_ATT_CTX *c, fc_real *restrict s, ptrdiff_t b,
                                             ptrdiff_t h, ptrdiff_t i, ptrdiff_t j0, ptrdiff_t nk,
                                             fc_real scale, int64_t kseg_max, fc_real *mx)
{
    const fc_attn_mask *mk = c->mk;
    ptrdiff_t jend = nk;
    if (mk->causal) {
        ptrdiff_t lim = i + mk->causal_offset - j0 + 1;
        if (lim < jend) jend = lim < 0 ? 0 : lim;
    }
    if (mk->kv_len != NULL) {
        ptrdiff_t lim = (ptrdiff_t)mk->kv_len[b] - j0;
        if (lim < jend) jend = lim < 0 ? 0 : lim;
    }
    const int seg = mk->q_seg != NULL && kseg_max > mk->q_seg[b * c->T + i];
    if (mk->bias == NULL && mk->mask == NULL && !seg && mk->key_keep == NULL) {
        *mx = scale == (fc_real)1 ? FC_NAME(fc_att_max)(s, jend) : FC_NAME(fc_att_scale_max)(s, jend, scale);
        return jend;
    }
    if (scale != (fc_real)1)
        for (ptrdiff_t j = 0; j < jend; ++j) s[j] *= scale;
    if (mk->bias != NULL || mk->mask != NULL) {
        ptrdiff_t qp = mk->q_pos ? (ptrdiff_t)mk->q_pos[b * c->T + i] : i;
        const int64_t *kpos = mk->k_pos ? mk->k_pos + b * c->S + j0 : NULL;
        if (mk->bias != NULL) {
            const ptrdiff_t *st = mk->bias_strides;
            const fc_real *bp = (const fc_real *)mk->bias + b * st[0] + h * st[1] + qp * st[2];
            ptrdiff_t s3 = st[3];
            if (kpos != NULL) {
                for (ptrdiff_t j = 0; j < jend; ++j) s[j] += bp[(ptrdiff_t)kpos[j] * s3];
            } else if (s3 == 1) {
                bp += j0;
                for (ptrdiff_t j = 0; j < jend; ++j) s[j] += bp[j];
            } else {
                bp += j0 * s3;
                for (ptrdiff_t j = 0; j < jend; ++j) s[j] += bp[j * s3];
            }
        }
        if (mk->mask != NULL) {
            const ptrdiff_t *st = mk->mask_strides;
            const uint8_t *mp = mk->mask + b * st[0] + h * st[1] + qp * st[2];
            ptrdiff_t s3 = st[3];
            if (kpos != NULL) {
                for (ptrdiff_t j = 0; j < jend; ++j) s[j] = mp[(ptrdiff_t)kpos[j] * s3] ? s[j] : -FC_INF;
            } else if (s3 == 1) {
                mp += j0;
                for (ptrdiff_t j = 0; j < jend; ++j) s[j] = mp[j] ? s[j] : -FC_INF;
            } else {
                mp += j0 * s3;
                for (ptrdiff_t j = 0; j < jend; ++j) s[j] = mp[j * s3] ? s[j] : -FC_INF;
            }
        }
    }
    if (seg) {
        const int64_t qs = mk->q_seg[b * c->T + i];
        const int64_t *ks = mk->k_seg + b * c->S + j0;
        for (ptrdiff_t j = 0; j < jend; ++j) s[j] = ks[j] <= qs ? s[j] : -FC_INF;
    }
    if (mk->key_keep != NULL) {
        const uint8_t *kk = mk->key_keep + b * c->S + j0;
        for (ptrdiff_t j = 0; j < jend; ++j) s[j] = kk[j] ? s[j] : -FC_INF;
    }
    *mx = FC_NAME(fc_att_max)(s, jend);
    return jend;
}

/* Online-softmax update of one row: the row becomes its unnormalised probabilities
 * exp(s - m_new) (zeros when nothing is visible yet), m, l are updated and the
 * accumulator row orow (dv entries, may be NULL) is rescaled. */
FC_INLINE void FC_NAME(fc_att_online_row)(fc_real *restrict s, ptrdiff_t jend, fc_real mt, fc_real *m,
                                          double *l, fc_real *restrict orow, ptrdiff_t dv)
{
    fc_real mold = *m;
    fc_real mnew = mt > mold ? mt : mold;
    if (mnew == -FC_INF) {
        for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
        return;
    }
    double sum = FC_NAME(fc_att_exp_row)(s, jend, mnew);
    if (mold != mnew) {
        fc_real alpha = FC_EXP(mold - mnew); /* 0 when mold = -inf */
        *l *= (double)alpha;
        if (orow != NULL)
            for (ptrdiff_t d = 0; d < dv; ++d) orow[d] *= alpha;
    }
    *l += sum;
    *m = mnew;
}

/* Whether the key tile [j0, j0 + nk) may hold a visible key for some query of
 * [i0, i0 + mq) (0 = the structural masks hide it entirely). */
FC_INLINE int FC_NAME(fc_att_tile_visible)(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t i0,
                                           ptrdiff_t mq, ptrdiff_t j0, ptrdiff_t nk,
                                           int64_t qseg_max, int64_t *kseg_max)
{
    const fc_attn_mask *mk = c->mk;
    *kseg_max = INT64_MIN;
    if (mk->causal && j0 > i0 + mq - 1 + mk->causal_offset) return 0;
    if (mk->kv_len != NULL && j0 >= (ptrdiff_t)mk->kv_len[b]) return 0;
    if (mk->q_seg != NULL) {
        const int64_t *ks = mk->k_seg + b * c->S + j0;
        int64_t kmin = ks[0], kmax = ks[0];
        for (ptrdiff_t j = 1; j < nk; ++j) {
            kmin = ks[j] < kmin ? ks[j] : kmin;
            kmax = ks[j] > kmax ? ks[j] : kmax;
        }
        if (kmin > qseg_max) return 0;
        *kseg_max = kmax; /* rows with q_seg >= kmax see the whole tile: no per-key test */
    }
    return 1;
}

FC_INLINE int64_t FC_NAME(fc_att_qseg_max)(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t i0, ptrdiff_t mq)
{
    if (c->mk->q_seg == NULL) return 0;
    const int64_t *qs = c->mk->q_seg + b * c->T + i0;
    int64_t m = qs[0];
    for (ptrdiff_t r = 1; r < mq; ++r) m = qs[r] > m ? qs[r] : m;
    return m;
}

/* lse = m + log l of a finished row: -inf when nothing was visible (l = 0); NaN when a
 * logit overflowed to +inf or was NaN (inf - inf in a dot product), which leaves l NaN
 * (exp(inf - inf)): the wrappers turn that into an error. */
FC_INLINE fc_real FC_NAME(fc_att_row_lse)(fc_real m, double l)
{
    if (l > 0.0) return (fc_real)((double)m + log(l));
    return l == 0.0 ? -FC_INF : (fc_real)NAN;
}

/* out rows /= l (0 when l = 0, NaN after an overflow), lse as fc_att_row_lse. */
FC_INLINE void FC_NAME(fc_att_finish)(fc_real *O, fc_real *lse, const fc_real *m, const double *l,
                                      ptrdiff_t mq, ptrdiff_t dv)
{
    for (ptrdiff_t r = 0; r < mq; ++r) {
        fc_real *o = O + r * dv;
        lse[r] = FC_NAME(fc_att_row_lse)(m[r], l[r]);
        if (l[r] > 0.0) {
            fc_real inv = (fc_real)(1.0 / l[r]);
            for (ptrdiff_t d = 0; d < dv; ++d) o[d] *= inv;
        } else {
            for (ptrdiff_t d = 0; d < dv; ++d) o[d] = l[r] == 0.0 ? (fc_real)0 : (fc_real)NAN;
        }
    }
}

/* Key tile t of one (b, h) (src: S x d rows) into dst, panel-major: element (x, jj) of the
 * d x BK transposed tile at [jj / NR][x][jj % NR] = src[t*BK + jj][x], zero beyond S. */
FC_INLINE void FC_NAME(fc_att_transpose_tile)(const fc_real *restrict src, fc_real *restrict dst, ptrdiff_t S,
                                              ptrdiff_t d, ptrdiff_t t)
{
    for (ptrdiff_t jj = 0; jj < FC_ATTN_BK; ++jj) {
        ptrdiff_t j = t * FC_ATTN_BK + jj;
        fc_real *op = dst + (jj / FC_ATT_NR) * d * FC_ATT_NR + jj % FC_ATT_NR;
        if (j < S) {
            const fc_real *row = src + j * d;
            for (ptrdiff_t x = 0; x < d; ++x) op[x * FC_ATT_NR] = row[x];
        } else {
            for (ptrdiff_t x = 0; x < d; ++x) op[x * FC_ATT_NR] = (fc_real)0;
        }
    }
}

/* ------------------------------------------------------------------ forward */

/* One (b, h, group of FC_ATT_QG query tiles) work item without head mixing.  The key
 * loop is outside the query tiles of the group, so that each key / value tile is read
 * from memory once per FC_ATT_QG * FC_ATTN_BQ queries (long sequences no longer stream
 * k and v from L3 for every 64 queries), while masks are still skipped per 64 x 64 tile.
 * Each row sees the same key tiles in the same order whatever the grouping. */
static FC_MULTIVERSION void FC_NAME(fc_att_fwd_item)(const FC_ATT_CTX *c, ptrdiff_t bh, ptrdiff_t qg,
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
        qsmax[qt - qt0] = FC_NAME(fc_att_qseg_max)(c, b, i0, mq);
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
            if (!FC_NAME(fc_att_tile_visible)(c, b, i0, mq, j0, nk, qsmax[qt - qt0], &ksmax)) continue;
            if (!transposed) {
                FC_NAME(fc_att_transpose_tile)(c->k + bh * S * dk, Kb, S, dk, kt);
                transposed = 1;
            }
            const fc_real *Kt = Kb;
            const fc_real *Q = Qs + (qt - qt0) * FC_ATTN_BQ * dk;
            fc_real *O = c->out + (bh * T + i0) * dv;
            fc_real *mt = m + (qt - qt0) * FC_ATTN_BQ;
            double *lt = l + (qt - qt0) * FC_ATTN_BQ;
            FC_NAME(fc_att_gemm_pk)(mq, FC_ATTN_BK, dk, Q, dk, Kt, Sb, FC_ATTN_BK, 0);
            ptrdiff_t jmax = 0;
            for (ptrdiff_t r = 0; r < mq; ++r) {
                fc_real *s = Sb + r * FC_ATTN_BK;
                fc_real mx;
                ptrdiff_t jend = FC_NAME(fc_att_mask_row)(c, s, b, h, i0 + r, j0, nk, (fc_real)1, ksmax, &mx);
                FC_NAME(fc_att_online_row)(s, jend, mx, mt + r, lt + r, O + r * dv, dv);
                jmax = jend > jmax ? jend : jmax;
            }
            if (jmax > 0)
                FC_NAME(fc_att_gemm)(mq, dv, jmax, Sb, FC_ATTN_BK, V + j0 * dv, dv, O, dv, 1);
        }
    }
    for (ptrdiff_t qt = qt0; qt < qt1; ++qt) {
        const ptrdiff_t i0 = qt * FC_ATTN_BQ;
        const ptrdiff_t mq = T - i0 < FC_ATTN_BQ ? T - i0 : FC_ATTN_BQ;
        FC_NAME(fc_att_finish)(c->out + (bh * T + i0) * dv, c->lse + bh * T + i0,
                               m + (qt - qt0) * FC_ATTN_BQ, l + (qt - qt0) * FC_ATTN_BQ, mq, dv);
    }
}

/* One (b, query tile) work item with talking-heads mixing: all heads together.
 * Without post_mix: one pass, online softmax per mixed head.  With post_mix: the
 * output of head h is sum_g post[h,g] P_g V_h, which needs every P_g normalised;
 * pass 1 finds each head's lse online, pass 2 recomputes the logits, forms the exact
 * P_g = exp(z_g - lse_g), mixes them and multiplies by V_h. */
static FC_MULTIVERSION void FC_NAME(fc_att_mix_item)(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t qt,
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
    const int64_t qsmax = FC_NAME(fc_att_qseg_max)(c, b, i0, mq);
    const int passes = post != NULL ? 2 : 1;
    for (int pass = 0; pass < passes; ++pass) {
        const int stats = post != NULL && pass == 0, final = post != NULL && pass == 1;
        for (ptrdiff_t kt = 0; kt < c->nkt; ++kt) {
            const ptrdiff_t j0 = kt * FC_ATTN_BK;
            const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
            int64_t ksmax;
            if (!FC_NAME(fc_att_tile_visible)(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
            for (ptrdiff_t g = 0; g < H; ++g) {
                const fc_real *Q = c->q + ((b * H + g) * T + i0) * dk;
                const fc_real *Kt = c->kt + ((b * H + g) * c->nkt + kt) * dk * FC_ATTN_BK;
                FC_NAME(fc_att_gemm_pk)(mq, FC_ATTN_BK, dk, Q, dk, Kt, Sh + g * tile, FC_ATTN_BK, 0);
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
                    ptrdiff_t jend = FC_NAME(fc_att_mask_row)(c, s, b, h, i0 + r, j0, nk, c->scale, ksmax, &mx);
                    jmax_h = jend > jmax_h ? jend : jmax_h;
                    if (final) {
                        const fc_real lr = lt[h * FC_ATTN_BQ + r];
                        if (lr == -FC_INF) {
                            for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
                        } else {
                            (void)FC_NAME(fc_att_exp_row)(s, jend, lr);
                        }
                    } else {
                        FC_NAME(fc_att_online_row)(s, jend, mx, m + h * FC_ATTN_BQ + r, l + h * FC_ATTN_BQ + r,
                                                   stats ? NULL : O + r * dv, dv);
                    }
                }
                if (!post && jmax_h > 0) {
                    const fc_real *V = c->v + (b * H + h) * S * dv;
                    FC_NAME(fc_att_gemm)(mq, dv, jmax_h, Zh, FC_ATTN_BK, V + j0 * dv, dv, O, dv, 1);
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
                    FC_NAME(fc_att_gemm)(mq, dv, jmax, U, FC_ATTN_BK, V + j0 * dv, dv, O, dv, 1);
                }
            }
        }
        if (stats) {
            for (ptrdiff_t h = 0; h < H; ++h)
                for (ptrdiff_t r = 0; r < mq; ++r) {
                    ptrdiff_t x = h * FC_ATTN_BQ + r;
                    lt[x] = FC_NAME(fc_att_row_lse)(m[x], l[x]);
                }
        }
    }
    for (ptrdiff_t h = 0; h < H; ++h) {
        fc_real *O = c->out + ((b * H + h) * T + i0) * dv;
        fc_real *lse = c->lse + (b * H + h) * T + i0;
        if (post == NULL) {
            FC_NAME(fc_att_finish)(O, lse, m + h * FC_ATTN_BQ, l + h * FC_ATTN_BQ, mq, dv);
        } else {
            for (ptrdiff_t r = 0; r < mq; ++r) lse[r] = lt[h * FC_ATTN_BQ + r];
        }
    }
}

/* dst tile (bh*nkt + t), panel-major: element (x, jj) of the d x BK transposed tile at
 * [jj / NR][x][jj % NR] = src[bh][t*BK + jj][x], zero beyond S. */
typedef struct {
    const fc_real *src;
    fc_real *dst;
    ptrdiff_t S, d, nkt;
} FC_NAME(fc_att_tr_job);

static void FC_NAME(fc_att_transpose_range)(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const FC_NAME(fc_att_tr_job) *j = arg;
    const ptrdiff_t S = j->S, d = j->d, nkt = j->nkt;
    for (ptrdiff_t w = lo; w < hi; ++w) {
        ptrdiff_t bh = w / nkt, t = w % nkt;
        fc_real *o = j->dst + w * d * FC_ATTN_BK;
        for (ptrdiff_t jj = 0; jj < FC_ATTN_BK; ++jj) {
            ptrdiff_t jx = t * FC_ATTN_BK + jj;
            fc_real *op = o + (jj / FC_ATT_NR) * d * FC_ATT_NR + jj % FC_ATT_NR;
            if (jx < S) {
                const fc_real *row = j->src + (bh * S + jx) * d;
                for (ptrdiff_t x = 0; x < d; ++x) op[x * FC_ATT_NR] = row[x];
            } else {
                for (ptrdiff_t x = 0; x < d; ++x) op[x * FC_ATT_NR] = (fc_real)0;
            }
        }
    }
}

static void FC_NAME(fc_att_transpose_tiles)(const fc_real *src, fc_real *dst, ptrdiff_t BH, ptrdiff_t S,
                                            ptrdiff_t d, ptrdiff_t nkt, int n_threads)
{
    ptrdiff_t work = BH * nkt;
    FC_NAME(fc_att_tr_job) job = {.src = src, .dst = dst, .S = S, .d = d, .nkt = nkt};
    fc_parallel_range(fc_clamp_threads(n_threads, work * d * FC_ATTN_BK / 65536 + 1), work,
                      FC_NAME(fc_att_transpose_range), &job);
}

static int FC_NAME(fc_att_check)(ptrdiff_t B, ptrdiff_t H, ptrdiff_t T, ptrdiff_t S, ptrdiff_t dk,
                                 ptrdiff_t dv, const fc_attn_mask *mask, int n_threads)
{
    if (B < 0 || H < 0 || T < 0 || S < 0 || dk < 1 || dv < 1 || n_threads < 1 || mask == NULL)
        return FC_BAD_ARGUMENT;
    if ((mask->q_seg == NULL) != (mask->k_seg == NULL)) return FC_BAD_ARGUMENT;
    return FC_OK;
}

/* The forward's team: work items (a batch element's query tile with mixing, else a group of
 * FC_ATT_QG query tiles of one head) claimed one at a time; each rank has its own tiles. */
typedef struct {
    const FC_ATT_CTX *c;
    int *failed;
    ptrdiff_t work, nqt, nqg, next;
    int mix;
} FC_NAME(fc_att_fwd_job);

static void FC_NAME(fc_att_fwd_team)(void *arg)
{
    FC_NAME(fc_att_fwd_job) *job = arg;
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
            FC_NAME(fc_att_mix_item)(c, w / nqt, w % nqt, sb, sb + tile * (size_t)H, sb + 2 * tile * (size_t)H, mb,
                                     lb, mb + H * FC_ATTN_BQ);
    } else {
        for (ptrdiff_t w; !fc_interrupted() && (w = fc_claim(&job->next)) < work;)
            FC_NAME(fc_att_fwd_item)(c, w / nqg, w % nqg, sb, mb, lb, qs, qs + FC_ATT_QG * FC_ATTN_BQ * dk);
    }
    free(qs);
    free(sb);
    free(mb);
    free(lb);
}

int FC_NAME(fc_attention)(const fc_real *q, const fc_real *k, const fc_real *v, fc_real *out,
                          fc_real *lse, ptrdiff_t B, ptrdiff_t H, ptrdiff_t T, ptrdiff_t S,
                          ptrdiff_t dk, ptrdiff_t dv, double scale, const fc_attn_mask *mask,
                          const fc_real *pre_mix, const fc_real *post_mix, int n_threads)
{
    int st = FC_NAME(fc_att_check)(B, H, T, S, dk, dv, mask, n_threads);
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
        FC_NAME(fc_att_transpose_tiles)(k, kt, B * H, S, dk, nkt, n_threads);
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
    FC_NAME(fc_att_fwd_job) job = {.c = &c, .failed = failed, .work = work, .nqt = nqt, .nqg = nqg, .mix = mix,
                                   .next = 0};
    fc_interrupt_begin();
    fc_team(nt, FC_NAME(fc_att_fwd_team), &job);
    st = FC_OK;
    for (int t = 0; t < nt; ++t)
        if (failed[t]) st = FC_OUT_OF_MEMORY;
    if (fc_interrupt_pending()) st = FC_INTERRUPTED; /* Ctrl-C */
    free(failed);
    free(kt);
    return st;
}

/* ------------------------------------------------------------------ backward */

/* dbias (float64, read like the bias: mask->bias_strides, q_pos / k_pos) += t[j] for the
 * entries (b, h, i, j0 + j), j < n. */
FC_INLINE void FC_NAME(fc_att_dbias_row)(const FC_ATT_CTX *c, double *dbias, ptrdiff_t b, ptrdiff_t h,
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
FC_INLINE double FC_NAME(fc_att_dot)(const fc_real *restrict a, const fc_real *restrict b, ptrdiff_t n)
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
FC_INLINE void FC_NAME(fc_att_mix1)(fc_real *restrict dst, const fc_real *restrict src, const fc_real *W,
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
FC_INLINE void FC_NAME(fc_att_tr)(fc_real *restrict dst, const fc_real *restrict src, ptrdiff_t mq, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; ++j)
        for (ptrdiff_t r = 0; r < mq; ++r) dst[j * FC_ATTN_BQ + r] = src[r * FC_ATTN_BK + j];
}

/* One (b, h) work item: FlashAttention-2 backward, key tiles outside, query tiles inside.
 * dbias (may be NULL) receives P (dP - D) of every visible entry. */
static FC_MULTIVERSION void FC_NAME(fc_att_bwd_item)(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t h,
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
            const int64_t qsmax = FC_NAME(fc_att_qseg_max)(c, b, i0, mq);
            int64_t ksmax;
            if (!FC_NAME(fc_att_tile_visible)(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
            FC_NAME(fc_att_gemm_pk)(mq, FC_ATTN_BK, dk, Q + i0 * dk, dk, Kt, P, FC_ATTN_BK, 0);
            ptrdiff_t jmax = 0;
            for (ptrdiff_t r = 0; r < mq; ++r) {
                fc_real *s = P + r * FC_ATTN_BK;
                fc_real mx;
                ptrdiff_t jend = FC_NAME(fc_att_mask_row)(c, s, b, h, i0 + r, j0, nk, c->scale, ksmax, &mx);
                const fc_real li = L[i0 + r];
                if (li == -FC_INF) {
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
                } else {
                    (void)FC_NAME(fc_att_exp_row)(s, jend, li);
                    jmax = jend > jmax ? jend : jmax;
                }
            }
            if (jmax == 0) continue;
            FC_NAME(fc_att_gemm_pk)(mq, FC_ATTN_BK, dv, dO + i0 * dv, dv, Vt, dP, FC_ATTN_BK, 0);
            for (ptrdiff_t r = 0; r < mq; ++r) {
                const fc_real Di = (fc_real)D[i0 + r];
                fc_real *pr = P + r * FC_ATTN_BK, *dr = dP + r * FC_ATTN_BK;
                if (dbias == NULL) {
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] = pr[j] * (dr[j] - Di) * c->scale;
                } else {
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] = pr[j] * (dr[j] - Di);
                    FC_NAME(fc_att_dbias_row)(c, dbias, b, h, i0 + r, j0, jmax, dr);
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] *= c->scale;
                }
            }
            FC_NAME(fc_att_tr)(Pt, P, mq, jmax);
            FC_NAME(fc_att_tr)(dSt, dP, mq, jmax);
            FC_NAME(fc_att_gemm)(jmax, dv, mq, Pt, FC_ATTN_BQ, dO + i0 * dv, dv, dV + j0 * dv, dv, 1);
            FC_NAME(fc_att_gemm)(jmax, dk, mq, dSt, FC_ATTN_BQ, Q + i0 * dk, dk, dK + j0 * dk, dk, 1);
            FC_NAME(fc_att_gemm)(mq, dk, jmax, dP, FC_ATTN_BK, K + j0 * dk, dk, dQ + i0 * dk, dk, 1);
        }
    }
}

/* Talking-heads backward, one (query tile, key tile) of batch element b, all heads:
 * S_g = q_g k_g^T (unscaled), Z_h = mixed, scaled, biased, masked logits, turned in place
 * into P_h = exp(Z_h - lse_h); dU_h = dout_h v_h^T; dP_g = sum_h post[h, g] dU_h (dP = dU
 * without post_mix).  Returns jmax (0: nothing visible, the buffers are then undefined);
 * *Pp points at the P tiles (in Z, or in S without pre_mix). */
FC_INLINE ptrdiff_t FC_NAME(fc_att_mix_bwd_tile)(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t i0, ptrdiff_t mq,
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
        FC_NAME(fc_att_gemm_pk)(mq, FC_ATTN_BK, dk, Q, dk, Kt, Sb + g * tile, FC_ATTN_BK, 0);
    }
    fc_real *Z = Sb;
    if (c->pre != NULL) {
        for (ptrdiff_t h = 0; h < H; ++h) FC_NAME(fc_att_mix1)(Zb + h * tile, Sb, c->pre, H, h, 0, (fc_real)1, n, tile);
        Z = Zb;
    }
    *Pp = Z;
    ptrdiff_t jmax = 0;
    for (ptrdiff_t h = 0; h < H; ++h) {
        const fc_real *L = c->lse_c + (b * H + h) * T + i0;
        for (ptrdiff_t r = 0; r < mq; ++r) {
            fc_real *s = Z + h * tile + r * FC_ATTN_BK;
            fc_real mx;
            ptrdiff_t jend = FC_NAME(fc_att_mask_row)(c, s, b, h, i0 + r, j0, nk, c->scale, ksmax, &mx);
            if (L[r] == -FC_INF) {
                for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
            } else {
                (void)FC_NAME(fc_att_exp_row)(s, jend, L[r]);
                jmax = jend > jmax ? jend : jmax;
            }
        }
    }
    if (jmax == 0) return 0;
    for (ptrdiff_t h = 0; h < H; ++h) {
        const fc_real *dO = c->dout + ((b * H + h) * T + i0) * dv;
        const fc_real *Vt = c->vt + ((b * H + h) * c->nkt + kt) * dv * FC_ATTN_BK;
        FC_NAME(fc_att_gemm_pk)(mq, FC_ATTN_BK, dv, dO, dv, Vt, dU + h * tile, FC_ATTN_BK, 0);
    }
    if (c->post != NULL)
        for (ptrdiff_t g = 0; g < H; ++g) FC_NAME(fc_att_mix1)(dPb + g * tile, dU, c->post, H, g, 1, (fc_real)1, n, tile);
    return jmax;
}

/* Talking-heads backward of batch element b (all heads, all tiles).  For every query
 * tile: D_h[i] = sum_j P_h[i,j] dP_h[i,j] (rowsum(dout * out) without post_mix; a first
 * sweep over the key tiles with it), then a second sweep forms dZ = P (dP - D) and
 *   dpost[h,g] += <dU_h, P_g>, dpre[h,g] += scale <dZ_h, S_g>, dbias += dZ,
 *   dV_h += U_h^T dout_h (U_h = sum_g post[h,g] P_g),
 *   dS_g = scale sum_h pre[h,g] dZ_h, dK_g += dS_g^T q_g, dQ_g += dS_g k_g.
 * Buffers: Sb, Zb, dU, dPb of H tiles each, W1, W2 one tile each, D of H * BQ. */
static FC_MULTIVERSION void FC_NAME(fc_att_mix_bwd_item)(const FC_ATT_CTX *c, ptrdiff_t b, fc_real *restrict Sb,
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
        const int64_t qsmax = FC_NAME(fc_att_qseg_max)(c, b, i0, mq);
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
                if (!FC_NAME(fc_att_tile_visible)(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
                if (FC_NAME(fc_att_mix_bwd_tile)(c, b, i0, mq, kt, ksmax, Sb, Zb, dU, dPb, &P) == 0) continue;
                for (ptrdiff_t h = 0; h < H; ++h)
                    for (ptrdiff_t r = 0; r < mq; ++r)
                        D[h * FC_ATTN_BQ + r] += FC_NAME(fc_att_dot)(P + h * tile + r * FC_ATTN_BK,
                                                                     dP + h * tile + r * FC_ATTN_BK, FC_ATTN_BK);
            }
        }
        for (ptrdiff_t kt = 0; kt < c->nkt; ++kt) {
            const ptrdiff_t j0 = kt * FC_ATTN_BK;
            const ptrdiff_t nk = S - j0 < FC_ATTN_BK ? S - j0 : FC_ATTN_BK;
            int64_t ksmax;
            if (!FC_NAME(fc_att_tile_visible)(c, b, i0, mq, j0, nk, qsmax, &ksmax)) continue;
            const ptrdiff_t jmax = FC_NAME(fc_att_mix_bwd_tile)(c, b, i0, mq, kt, ksmax, Sb, Zb, dU, dPb, &P);
            if (jmax == 0) continue;
            if (post != NULL && dpost != NULL)
                for (ptrdiff_t h = 0; h < H; ++h)
                    for (ptrdiff_t g = 0; g < H; ++g)
                        dpost[h * H + g] += FC_NAME(fc_att_dot)(dU + h * tile, P + g * tile, n);
            /* dZ = P (dP - D), in place of dP */
            for (ptrdiff_t h = 0; h < H; ++h)
                for (ptrdiff_t r = 0; r < mq; ++r) {
                    const fc_real Di = (fc_real)D[h * FC_ATTN_BQ + r];
                    const fc_real *pr = P + h * tile + r * FC_ATTN_BK;
                    fc_real *dr = dP + h * tile + r * FC_ATTN_BK;
                    for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) dr[j] = pr[j] * (dr[j] - Di);
                    if (dbias != NULL) FC_NAME(fc_att_dbias_row)(c, dbias, b, h, i0 + r, j0, jmax, dr);
                }
            if (pre != NULL && dpre != NULL)
                for (ptrdiff_t h = 0; h < H; ++h)
                    for (ptrdiff_t g = 0; g < H; ++g)
                        dpre[h * H + g] += (double)c->scale * FC_NAME(fc_att_dot)(dP + h * tile, Sb + g * tile, n);
            for (ptrdiff_t h = 0; h < H; ++h) {
                const fc_real *U = P + h * tile;
                if (post != NULL) {
                    FC_NAME(fc_att_mix1)(W1, P, post, H, h, 0, (fc_real)1, n, tile);
                    U = W1;
                }
                FC_NAME(fc_att_tr)(W2, U, mq, jmax);
                const fc_real *dO = c->dout + ((b * H + h) * T + i0) * dv;
                fc_real *dV = c->dv + ((b * H + h) * S + j0) * dv;
                FC_NAME(fc_att_gemm)(jmax, dv, mq, W2, FC_ATTN_BQ, dO, dv, dV, dv, 1);
            }
            for (ptrdiff_t g = 0; g < H; ++g) {
                if (pre != NULL) {
                    FC_NAME(fc_att_mix1)(W1, dP, pre, H, g, 1, c->scale, n, tile);
                } else {
                    const fc_real *dz = dP + g * tile;
                    for (ptrdiff_t x = 0; x < n; ++x) W1[x] = dz[x] * c->scale;
                }
                FC_NAME(fc_att_tr)(W2, W1, mq, jmax);
                const ptrdiff_t bg = b * H + g;
                FC_NAME(fc_att_gemm)(jmax, dk, mq, W2, FC_ATTN_BQ, c->q + (bg * T + i0) * dk, dk,
                                     c->dk + (bg * S + j0) * dk, dk, 1);
                FC_NAME(fc_att_gemm)(mq, dk, jmax, W1, FC_ATTN_BK, c->k + (bg * S + j0) * dk, dk,
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
} FC_NAME(fc_att_bwd_job);

static void FC_NAME(fc_att_bwd_team)(void *arg)
{
    FC_NAME(fc_att_bwd_job) *job = arg;
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
                    FC_NAME(fc_att_mix_bwd_item)(c, b, buf, buf + Ht, buf + 2 * Ht, buf + 3 * Ht, buf + 4 * Ht,
                                                 buf + 4 * Ht + tile, D, job->dpre ? pp : NULL,
                                                 job->dpost ? pp + H * H : NULL, dbias);
                } else {
                    const ptrdiff_t h0 = ngh == 1 ? 0 : gh, h1 = ngh == 1 ? H : gh + 1;
                    for (ptrdiff_t h = h0; h < h1; ++h)
                        FC_NAME(fc_att_bwd_item)(c, b, h, buf, buf + tile, buf + 2 * tile, buf + 3 * tile, D,
                                                 dbias);
                }
            }
        }
    }
    free(buf);
    free(D);
}

int FC_NAME(fc_attention_backward)(const fc_real *q, const fc_real *k, const fc_real *v,
                                   const fc_real *out, const fc_real *dout, const fc_real *lse,
                                   fc_real *dq, fc_real *dk_, fc_real *dv_, ptrdiff_t B, ptrdiff_t H,
                                   ptrdiff_t T, ptrdiff_t S, ptrdiff_t dk, ptrdiff_t dv, double scale,
                                   const fc_attn_mask *mask, const fc_real *pre_mix,
                                   const fc_real *post_mix, double *dpre, double *dpost, double *dbias,
                                   int n_threads)
{
    int st = FC_NAME(fc_att_check)(B, H, T, S, dk, dv, mask, n_threads);
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
    FC_NAME(fc_att_transpose_tiles)(k, kt, B * H, S, dk, nkt, n_threads);
    FC_NAME(fc_att_transpose_tiles)(v, vt, B * H, S, dv, nkt, n_threads);

    FC_ATT_CTX c;
    memset(&c, 0, sizeof c);
    c.q = q; c.k = k; c.v = v; c.kt = kt; c.vt = vt; c.out_c = out; c.dout = dout; c.lse_c = lse;
    c.dq = dq; c.dk = dk_; c.dv = dv_;
    c.B = B; c.H = H; c.T = T; c.S = S; c.DK = dk; c.DV = dv; c.nqt = nqt; c.nkt = nkt;
    c.scale = (fc_real)scale; c.mk = mask; c.pre = pre_mix; c.post = post_mix;

    FC_NAME(fc_att_bwd_job) job = {.c = &c, .failed = failed, .part = part, .dbias = dbias, .work = work,
                                   .ngh = ngh, .next = 0, .mix = mix, .bshare = bshare,
                                   .dpre = dpre != NULL, .dpost = dpost != NULL};
    fc_interrupt_begin();
    fc_team(nt, FC_NAME(fc_att_bwd_team), &job);
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

/* ------------------------------------------------------------------ input check */

/* 1 when every x[i] is finite: x * 0 is 0 for finite x and NaN for NaN or +-inf
 * (no -ffast-math, so the compiler keeps it); one vectorised pass. */
static FC_MULTIVERSION int FC_NAME(fc_attention_all_finite)(const fc_real *x, ptrdiff_t n)
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

int FC_NAME(fc_attention_finite)(const fc_real *x, ptrdiff_t n)
{
    if (n <= 0) return 1;
    return FC_NAME(fc_attention_all_finite)(x, n);
}
