/* Tiled attention: the building blocks every attention kernel shares (GEMM tiles, row
 * operations, key-tile transposes, argument checks).  Part of the kernels of attention.h,
 * instantiated once per precision (attention_unit.h, fc_real.h): no include guard on purpose.
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
#define FC_ATT_CTX fc_att_ctx

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
typedef fc_real fc_att_vec __attribute__((vector_size(32)));
#undef FC_ATT_VL
#define FC_ATT_VL ((int)(32 / sizeof(fc_real)))

FC_INLINE fc_att_vec fc_att_ld(const fc_real *p)
{
    fc_att_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

FC_INLINE void fc_att_st(fc_real *p, fc_att_vec v) { memcpy(p, &v, sizeof v); }

/* C[mr x NR] (+)= A[mr x K] B[K x NR]; A rows lda apart, B rows ldb apart; mr <= 6 is a
 * compile-time constant after inlining. */
FC_INLINE void fc_att_mk(const int mr, ptrdiff_t K, const fc_real *restrict A, ptrdiff_t lda,
                                  const fc_real *restrict B, ptrdiff_t ldb,
                                  fc_real *restrict C, ptrdiff_t ldc, int acc)
{
    fc_att_vec c0[6], c1[6];
    for (int r = 0; r < mr; ++r) {
        if (acc) {
            c0[r] = fc_att_ld(C + r * ldc);
            c1[r] = fc_att_ld(C + r * ldc + FC_ATT_VL);
        } else {
            c0[r] = (fc_att_vec){0};
            c1[r] = (fc_att_vec){0};
        }
    }
    for (ptrdiff_t kk = 0; kk < K; ++kk) {
        const fc_att_vec b0 = fc_att_ld(B + kk * ldb);
        const fc_att_vec b1 = fc_att_ld(B + kk * ldb + FC_ATT_VL);
        for (int r = 0; r < mr; ++r) {
            const fc_real a = A[r * lda + kk];
            c0[r] += a * b0;
            c1[r] += a * b1;
        }
    }
    for (int r = 0; r < mr; ++r) {
        fc_att_st(C + r * ldc, c0[r]);
        fc_att_st(C + r * ldc + FC_ATT_VL, c1[r]);
    }
}
#else
/* Portable form of the same micro-kernel. */
FC_INLINE void fc_att_mk(const int mr, ptrdiff_t K, const fc_real *restrict A, ptrdiff_t lda,
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
FC_INLINE void fc_att_mk1_tail(ptrdiff_t K, ptrdiff_t n, const fc_real *restrict A,
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
FC_INLINE void fc_att_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t K,
                                    const fc_real *A, ptrdiff_t lda, const fc_real *B,
                                    ptrdiff_t ldb, fc_real *C, ptrdiff_t ldc, int acc)
{
    ptrdiff_t nf = n - n % FC_ATT_NR;
    for (ptrdiff_t c = 0; c < nf; c += FC_ATT_NR) {
        ptrdiff_t r = 0;
        for (; r + 6 <= m; r += 6)
            fc_att_mk(6, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
        if (r + 4 <= m) {
            fc_att_mk(4, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
            r += 4;
        }
        if (r + 2 <= m) {
            fc_att_mk(2, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
            r += 2;
        }
        if (r < m) fc_att_mk(1, K, A + r * lda, lda, B + c, ldb, C + r * ldc + c, ldc, acc);
    }
    if (nf < n)
        for (ptrdiff_t r = 0; r < m; ++r)
            fc_att_mk1_tail(K, n - nf, A + r * lda, B + nf, ldb, C + r * ldc + nf, acc);
}

/* C[m x n] (+)= A[m x K] B[K x n] with B "panel-major": the NR columns of panel p are
 * stored K x NR contiguously at B + p * K * NR (n is a multiple of NR).  The transposed
 * key tiles use this layout so that the micro-kernel streams B from consecutive lines. */
FC_INLINE void fc_att_gemm_pk(ptrdiff_t m, ptrdiff_t n, ptrdiff_t K,
                                       const fc_real *A, ptrdiff_t lda, const fc_real *B,
                                       fc_real *C, ptrdiff_t ldc, int acc)
{
    for (ptrdiff_t c = 0; c < n; c += FC_ATT_NR) {
        const fc_real *Bp = B + (c / FC_ATT_NR) * K * FC_ATT_NR;
        ptrdiff_t r = 0;
        for (; r + 6 <= m; r += 6)
            fc_att_mk(6, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
        if (r + 4 <= m) {
            fc_att_mk(4, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
            r += 4;
        }
        if (r + 2 <= m) {
            fc_att_mk(2, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
            r += 2;
        }
        if (r < m) fc_att_mk(1, K, A + r * lda, lda, Bp, FC_ATT_NR, C + r * ldc + c, ldc, acc);
    }
}

/* ------------------------------------------------------------------ rows */

/* Largest of x[0 .. n) (-inf when n = 0), after x[j] *= scale when do_scale.
 * Written with explicit vectors: GCC leaves a conditional max-reduction scalar. */
FC_INLINE fc_real fc_att_scale_max_(fc_real *restrict x, ptrdiff_t n, fc_real scale, int do_scale)
{
    ptrdiff_t i = 0;
    fc_real m = -FC_INF;
#ifdef FC_ATT_VECTOR_EXT
    typedef fc_att_vec vec;
#if FC_REAL_DOUBLE
    typedef int64_t ivec __attribute__((vector_size(32)));
#else
    typedef int32_t ivec __attribute__((vector_size(32)));
#endif
    vec m0 = (vec){0} - FC_INF, m1 = m0;
    for (; i + 2 * FC_ATT_VL <= n; i += 2 * FC_ATT_VL) {
        vec a = fc_att_ld(x + i), b = fc_att_ld(x + i + FC_ATT_VL);
        if (do_scale) {
            a *= scale;
            b *= scale;
            fc_att_st(x + i, a);
            fc_att_st(x + i + FC_ATT_VL, b);
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

FC_INLINE fc_real fc_att_max(const fc_real *x, ptrdiff_t n)
{
    return fc_att_scale_max_((fc_real *)x, n, (fc_real)1, 0);
}

/* exp(x) for x <= 0 (or -inf), as accurate as fc_exp of fc_math.h but without its
 * handling of positive overflow and of subnormal results: results below the smallest
 * normal number (x < -87 in float, -708 in double) are flushed to 0.  In a softmax the
 * argument is a logit minus the row maximum, so those terms are below 1e-37 of the sum. */
FC_INLINE fc_real fc_att_expneg(fc_real x) { return FC_EXP_FTZ(x); }

/* s[j] *= scale for j < n; returns the maximum of the scaled entries (-inf when n = 0). */
FC_INLINE fc_real fc_att_scale_max(fc_real *restrict x, ptrdiff_t n, fc_real scale)
{
    return fc_att_scale_max_(x, n, scale, 1);
}

/* s[j] = exp(s[j] - m) for j < n, 0 for n <= j < FC_ATTN_BK; returns the sum in double.
 * The lanes add at most FC_ATTN_BK / FC_ATT_LANES = 4 terms (each <= 1) in fc_real and
 * are then summed in double: the float32 lanes vectorise at full width, where double
 * lanes cost a conversion per element (measured: 22% of the no-mask forward in exp_row
 * with double lanes). */
FC_INLINE double fc_att_exp_row(fc_real *restrict s, ptrdiff_t n, fc_real m)
{
    fc_real lane[FC_ATT_LANES];
    for (int j = 0; j < FC_ATT_LANES; ++j) lane[j] = (fc_real)0;
    ptrdiff_t nb = n - n % FC_ATT_LANES, i = 0;
    for (; i < nb; i += FC_ATT_LANES)
        for (int j = 0; j < FC_ATT_LANES; ++j) {
            fc_real e = fc_att_expneg(s[i + j] - m);
            s[i + j] = e;
            lane[j] += e;
        }
    double sum = 0.0;
    for (; i < n; ++i) {
        s[i] = fc_att_expneg(s[i] - m);
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
FC_INLINE ptrdiff_t fc_att_mask_row(const FC_ATT_CTX *c, fc_real *restrict s, ptrdiff_t b,
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
        *mx = scale == (fc_real)1 ? fc_att_max(s, jend) : fc_att_scale_max(s, jend, scale);
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
    *mx = fc_att_max(s, jend);
    return jend;
}

/* Online-softmax update of one row: the row becomes its unnormalised probabilities
 * exp(s - m_new) (zeros when nothing is visible yet), m, l are updated and the
 * accumulator row orow (dv entries, may be NULL) is rescaled. */
FC_INLINE void fc_att_online_row(fc_real *restrict s, ptrdiff_t jend, fc_real mt, fc_real *m,
                                          double *l, fc_real *restrict orow, ptrdiff_t dv)
{
    fc_real mold = *m;
    fc_real mnew = mt > mold ? mt : mold;
    if (mnew == -FC_INF) {
        for (ptrdiff_t j = 0; j < FC_ATTN_BK; ++j) s[j] = (fc_real)0;
        return;
    }
    double sum = fc_att_exp_row(s, jend, mnew);
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
FC_INLINE int fc_att_tile_visible(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t i0,
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

FC_INLINE int64_t fc_att_qseg_max(const FC_ATT_CTX *c, ptrdiff_t b, ptrdiff_t i0, ptrdiff_t mq)
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
FC_INLINE fc_real fc_att_row_lse(fc_real m, double l)
{
    if (l > 0.0) return (fc_real)((double)m + log(l));
    return l == 0.0 ? -FC_INF : (fc_real)NAN;
}

/* out rows /= l (0 when l = 0, NaN after an overflow), lse as fc_att_row_lse. */
FC_INLINE void fc_att_finish(fc_real *O, fc_real *lse, const fc_real *m, const double *l,
                                      ptrdiff_t mq, ptrdiff_t dv)
{
    for (ptrdiff_t r = 0; r < mq; ++r) {
        fc_real *o = O + r * dv;
        lse[r] = fc_att_row_lse(m[r], l[r]);
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
FC_INLINE void fc_att_transpose_tile(const fc_real *restrict src, fc_real *restrict dst, ptrdiff_t S,
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


/* dst tile (bh*nkt + t), panel-major: element (x, jj) of the d x BK transposed tile at
 * [jj / NR][x][jj % NR] = src[bh][t*BK + jj][x], zero beyond S. */
typedef struct {
    const fc_real *src;
    fc_real *dst;
    ptrdiff_t S, d, nkt;
} fc_att_tr_job;

static void fc_att_transpose_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_att_tr_job *j = arg;
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

static void fc_att_transpose_tiles(const fc_real *src, fc_real *dst, ptrdiff_t BH, ptrdiff_t S,
                                            ptrdiff_t d, ptrdiff_t nkt, int n_threads)
{
    ptrdiff_t work = BH * nkt;
    fc_att_tr_job job = {.src = src, .dst = dst, .S = S, .d = d, .nkt = nkt};
    fc_parallel_range(fc_clamp_threads(n_threads, work * d * FC_ATTN_BK / 65536 + 1), work,
                      fc_att_transpose_range, &job);
}

static int fc_att_check(ptrdiff_t B, ptrdiff_t H, ptrdiff_t T, ptrdiff_t S, ptrdiff_t dk,
                                 ptrdiff_t dv, const fc_attn_mask *mask, int n_threads)
{
    if (B < 0 || H < 0 || T < 0 || S < 0 || dk < 1 || dv < 1 || n_threads < 1 || mask == NULL)
        return FC_BAD_ARGUMENT;
    if ((mask->q_seg == NULL) != (mask->k_seg == NULL)) return FC_BAD_ARGUMENT;
    return FC_OK;
}
