/* CRF / MEMM: constants, vector types and the small vector helpers that every CRF and MEMM
 * kernel shares.  Part of the CRF / MEMM kernels (crf.h), instantiated once per precision
 * (crf_unit.h, fc_real.h): no include guard on purpose.
 *
 * Inner loops run over Kp = K rounded up to a multiple of 8 so that they are
 * plain fixed-stride maps the compiler vectorises; the padding columns hold 0
 * (exp space) or -inf (log space) and never contribute.
 */

/* Smallest per-step normaliser of the scaled recursion that is trusted.  Every
 * value lost to underflow is below the smallest normal number, so with a
 * normaliser above this bound the relative error stays far below rounding. */
/* Smallest shared-exp MEMM normaliser trusted (fc_memm_tok_sh): terms flushed to zero are
 * below 1e-37 (float) / 1e-307 (double), negligible next to it. */
/* Largest inverse gold probability of a token-lane token (fc_memm_grp): the lane products
 * P q (P < 2) stay finite. */
#if FC_REAL_DOUBLE
#define FC_MEMM_TINY 1e-100
#define FC_MEMM_SHIFT 100
#define FC_MEMM_QMAX 1e300
#else
#define FC_MEMM_TINY 1e-18
#define FC_MEMM_SHIFT 40
#define FC_MEMM_QMAX 1e37
#endif
#if FC_REAL_DOUBLE
#define FC_CRF_TINY 1e-200
#define FC_CRF_SUMTOL 1e-6
#else
#define FC_CRF_TINY 1e-20
#define FC_CRF_SUMTOL 1e-2
#endif

/* SIMD block width in elements: one or two AVX-512 registers, two or four AVX2 ones. */
#undef FC_CRF_WS
#if FC_REAL_DOUBLE
#define FC_CRF_WS 8
#else
#define FC_CRF_WS 16
#endif

/* Block width for K labels (wider blocks give more independent chains for larger K) and
 * the padded row length Kp (a multiple of it). */
FC_INLINE ptrdiff_t fc_crf_width(ptrdiff_t K) { return K <= FC_CRF_WS ? FC_CRF_WS : 2 * FC_CRF_WS; }
FC_INLINE ptrdiff_t fc_crf_kp(ptrdiff_t K)
{
    ptrdiff_t W = fc_crf_width(K);
    return (K + W - 1) / W * W;
}

#if FC_VECTOR_EXT
/* Explicit 32-byte vectors (GCC/Clang): split in two on the SSE2 baseline clone. */
typedef fc_real fc_vr __attribute__((vector_size(32)));
#if FC_REAL_DOUBLE
typedef int64_t fc_vi __attribute__((vector_size(32)));
#else
typedef int32_t fc_vi __attribute__((vector_size(32)));
#endif
/* Unaligned whole-vector load and store, straight to and from a register (a memcpy into an
 * array element of vectors can go through the stack in two halves, and the whole-vector load
 * that follows then stalls on store forwarding). */
typedef fc_real fc_vu __attribute__((vector_size(32), aligned(sizeof(fc_real)), may_alias));
#define FC_VLOAD(p) (*(const fc_vu *)(p))
#define FC_VSTORE(p, v) (*(fc_vu *)(p) = (v))
/* v = {x, x, ...} (a macro: vectors passed by value change the ABI on baseline builds) */
#define FC_SPLAT(v, x) do { memset(&(v), 0, sizeof(v)); for (int l_ = 0; l_ < (int)(32 / sizeof(fc_real)); ++l_) (v)[l_] = (x); } while (0)
/* {x, x, ...} as an expression (x evaluated once per lane: pass a plain value); compiles to one
 * broadcast, where FC_SPLAT's lane fill may become a chain of inserts */
#undef FC_BCAST
#if FC_REAL_DOUBLE
#define FC_BCAST(x) ((fc_vr){(x), (x), (x), (x)})
#else
#define FC_BCAST(x) ((fc_vr){(x), (x), (x), (x), (x), (x), (x), (x)})
#endif

/* Row helpers over 32-byte vectors: whole-vector loads and stores only, so that a row
 * written here and read back by a vectorised loop never stalls on store forwarding. */
#define FC_VLEN ((ptrdiff_t)(32 / sizeof(fc_real)))
FC_INLINE fc_real fc_crf_hmax(const fc_vr *v)
{
    fc_real m = (*v)[0];
    for (int l = 1; l < (int)FC_VLEN; ++l) m = (*v)[l] > m ? (*v)[l] : m;
    return m;
}

/* Lane mask of the vector that straddles K (lanes below K set), for fc_crf_row_load. */
FC_INLINE void fc_crf_bmask(ptrdiff_t K, fc_vi *m)
{
    memset(m, 0, sizeof *m);
    ptrdiff_t q = K / FC_VLEN;
    for (int l = 0; l < (int)FC_VLEN; ++l) (*m)[l] = q * FC_VLEN + l < K ? -1 : 0;
}

/* out[j] = (g ? g[j] : 0) + e[j] for j < K, -inf for K <= j < Kp (g padded with -inf to Kp
 * when given); returns the maximum over j.  e may be read up to e_end (exclusive), past K:
 * the straddling vector is then one load and a blend with bmask (fc_crf_bmask(K)). */
FC_INLINE fc_real fc_crf_row_load(const fc_real *restrict e, const fc_real *restrict g, ptrdiff_t K,
                                           ptrdiff_t Kp, fc_real *restrict out, const fc_real *e_end,
                                           const fc_vi *bmask)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    vr mx, ninf;
    FC_SPLAT(ninf, -FC_INF);
    mx = ninf;
    ptrdiff_t q = 0;
    for (; (q + 1) * FC_VLEN <= K; ++q) {
        vr v;
        memcpy(&v, e + q * FC_VLEN, sizeof v);
        if (g != NULL) {
            vr w;
            memcpy(&w, g + q * FC_VLEN, sizeof w);
            v += w;
        }
        vi gt = v > mx;
        mx = (vr)(((vi)v & gt) | ((vi)mx & ~gt));
        memcpy(out + q * FC_VLEN, &v, sizeof v);
    }
    for (; q * FC_VLEN < Kp; ++q) {
        vr v;
        if (q * FC_VLEN < K && e + (q + 1) * FC_VLEN <= e_end) {
            memcpy(&v, e + q * FC_VLEN, sizeof v);
            v = (vr)(((vi)v & *bmask) | ((vi)ninf & ~*bmask));
            if (g != NULL) {
                vr w;
                memcpy(&w, g + q * FC_VLEN, sizeof w);
                v += w;
            }
        } else {
            v = ninf;
            for (int l = 0; l < (int)FC_VLEN; ++l) {
                ptrdiff_t j = q * FC_VLEN + l;
                if (j < K) v[l] = (g != NULL ? g[j] : (fc_real)0) + e[j];
            }
        }
        vi gt = v > mx;
        mx = (vr)(((vi)v & gt) | ((vi)mx & ~gt));
        memcpy(out + q * FC_VLEN, &v, sizeof v);
    }
    return fc_crf_hmax(&mx);
}

/* ev[0..NV) = the row e[0..K) as NV vectors, lanes >= K set to -inf (NV * FC_VLEN >= K);
 * e may be read up to e_end (exclusive): the straddling vector is then one load and a
 * blend with bmask (fc_crf_bmask(K)). */
FC_INLINE void fc_crf_vrow(const fc_real *e, ptrdiff_t K, const fc_real *e_end,
                                    const fc_vi *bmask, fc_vr *ev, const int NV)
{
    typedef fc_vr vr;
    typedef fc_vi vi;
    vr ninf;
    FC_SPLAT(ninf, -FC_INF);
    for (int q = 0; q < NV; ++q) {
        const ptrdiff_t j0 = q * FC_VLEN;
        if (j0 + FC_VLEN <= K) {
            ev[q] = FC_VLOAD(e + j0);
        } else if (j0 < K && e + j0 + FC_VLEN <= e_end) {
            vr v;
            memcpy(&v, e + j0, sizeof v);
            ev[q] = (vr)(((vi)v & *bmask) | ((vi)ninf & ~*bmask));
        } else {
            ev[q] = ninf;
            for (int l = 0; l < (int)FC_VLEN; ++l)
                if (j0 + l < K) ev[q][l] = e[j0 + l];
        }
    }
}

/* exp(x) on a vector for x up to 80 (float) / 700 (double) (the forward's emissions minus
 * their maximum, the MEMM's logits minus a row maximum or the gold emission, see
 * FC_MEMM_SHIFT): the fc_exp_ftz_* algorithm of fc_math.h on explicit vectors, so that every
 * clone keeps it in registers.  Results below ~1e-38 (x < -87 float, -708 double) and -inf
 * are flushed to exactly 0 when flush, and are the exp of that bound otherwise (one mask
 * less: the MEMM token lanes, where such a term is below 1e-37 / 1e-307 of a normaliser of
 * at least FC_MEMM_TINY).  NaN gives NaN. */
FC_INLINE void fc_crf_vexp(fc_vr *xp, const int flush)
{
    fc_vr x = *xp;
    typedef fc_vr vr;
    typedef fc_vi vi;
    const vr z = {0};
    vr t, nf, r, p;
#if FC_REAL_DOUBLE
    const vr lo = z - 708.0;
    const vi under = x < lo;
    x = (vr)(((vi)lo & under) | ((vi)x & ~under));
    FC_EXP_REDUCE_F64(x, t, nf, r);
    vi n = (vi)t - (vi)(z + FC_EXP_MAGIC_F64);
    p = z + FC_EXP_LEAD12_F64;
    FC_EXP_TAYLOR12_F64(p, r);
    vr sc = (vr)((n + 1023) << 52);
#else
    const vr lo = z - 87.0f;
    const vi under = x < lo;
    x = (vr)(((vi)lo & under) | ((vi)x & ~under));
    FC_EXP_REDUCE_F32(x, t, nf, r);
    vi n = (vi)t - (vi)(z + FC_EXP_MAGIC_F32);
    p = z + FC_EXP_LEAD6_F32;
    FC_EXP_POLY6_F32(p, r);
    vr sc = (vr)((n + 127) << 23);
#endif
    *xp = flush ? (vr)((vi)(p * sc) & ~under) : p * sc;
}

/* Horizontal sum / maximum of NV vectors: vertical first, then halving (log2 lanes steps). */
FC_INLINE fc_real fc_crf_vhsum(const fc_vr *v, const int NV)
{
    fc_vr s = v[0];
    for (int q = 1; q < NV; ++q) s += v[q];
    fc_real a[FC_VLEN];
    memcpy(a, &s, sizeof a);
    for (int w = (int)FC_VLEN / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) a[l] += a[l + w];
    return a[0];
}

FC_INLINE fc_real fc_crf_vhmax(const fc_vr *v, const int NV)
{
    typedef fc_vi vi;
    fc_vr s = v[0];
    for (int q = 1; q < NV; ++q) {
        vi g = v[q] > s;
        s = (fc_vr)(((vi)v[q] & g) | ((vi)s & ~g));
    }
    fc_real a[FC_VLEN];
    memcpy(a, &s, sizeof a);
    for (int w = (int)FC_VLEN / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) a[l] = a[l + w] > a[l] ? a[l + w] : a[l];
    return a[0];
}
#endif

/* out[j] = (sum_i x[i] M[i, j]) * mul[j] (mul may be NULL) for j < Kp, over blocks of W
 * columns with two accumulator chains (even / odd i). */
#if FC_VECTOR_EXT
FC_INLINE void fc_crf_mv_w(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t K,
                                    ptrdiff_t Kp, const fc_real *restrict mul, fc_real *restrict out,
                                    const int W)
{
    typedef fc_vr vr;
    enum { VL = (int)(32 / sizeof(fc_real)), NVMAX = 2 * FC_CRF_WS / (int)(32 / sizeof(fc_real)) };
    const int NV = W / VL;
    for (ptrdiff_t jb = 0; jb < Kp; jb += W) {
        vr s0[NVMAX], s1[NVMAX];
        for (int q = 0; q < NV; ++q) { FC_SPLAT(s0[q], (fc_real)0); s1[q] = s0[q]; }
        ptrdiff_t i = 0;
        for (; i + 1 < K; i += 2) {
            const vr x0 = FC_BCAST(x[i]), x1 = FC_BCAST(x[i + 1]);
            const fc_real *r0 = M + i * Kp + jb, *r1 = r0 + Kp;
            for (int q = 0; q < NV; ++q) {
                vr m0, m1;
                memcpy(&m0, r0 + q * VL, sizeof m0);
                memcpy(&m1, r1 + q * VL, sizeof m1);
                s0[q] += x0 * m0;
                s1[q] += x1 * m1;
            }
        }
        if (i < K) {
            const vr x0 = FC_BCAST(x[i]);
            const fc_real *r0 = M + i * Kp + jb;
            for (int q = 0; q < NV; ++q) {
                vr m0;
                memcpy(&m0, r0 + q * VL, sizeof m0);
                s0[q] += x0 * m0;
            }
        }
        for (int q = 0; q < NV; ++q) {
            vr o = s0[q] + s1[q];
            if (mul != NULL) {
                vr u;
                memcpy(&u, mul + jb + q * VL, sizeof u);
                o *= u;
            }
            memcpy(out + jb + q * VL, &o, sizeof o);
        }
    }
}
#else
FC_INLINE void fc_crf_mv_w(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t K,
                                    ptrdiff_t Kp, const fc_real *restrict mul, fc_real *restrict out,
                                    const int W)
{
    for (ptrdiff_t jb = 0; jb < Kp; jb += W) {
        fc_real s0[2 * FC_CRF_WS], s1[2 * FC_CRF_WS];
        for (int w = 0; w < W; ++w) { s0[w] = (fc_real)0; s1[w] = (fc_real)0; }
        ptrdiff_t i = 0;
        for (; i + 1 < K; i += 2) {
            const fc_real x0 = x[i], x1 = x[i + 1];
            const fc_real *r0 = M + i * Kp + jb, *r1 = r0 + Kp;
            for (int w = 0; w < W; ++w) { s0[w] += x0 * r0[w]; s1[w] += x1 * r1[w]; }
        }
        if (i < K) {
            const fc_real x0 = x[i];
            const fc_real *r0 = M + i * Kp + jb;
            for (int w = 0; w < W; ++w) s0[w] += x0 * r0[w];
        }
        if (mul != NULL) {
            for (int w = 0; w < W; ++w) out[jb + w] = (s0[w] + s1[w]) * mul[jb + w];
        } else {
            for (int w = 0; w < W; ++w) out[jb + w] = s0[w] + s1[w];
        }
    }
}
#endif

FC_INLINE void fc_crf_mv(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t K,
                                  ptrdiff_t Kp, const fc_real *restrict mul, fc_real *restrict out)
{
    if (K <= FC_CRF_WS)
        fc_crf_mv_w(x, M, K, Kp, mul, out, FC_CRF_WS);
    else
        fc_crf_mv_w(x, M, K, Kp, mul, out, 2 * FC_CRF_WS);
}

/* Sum and maximum of a padded row (Kp a multiple of FC_CRF_WS), over lanes reduced
 * by halving stages with constant trip counts (so they unroll into vector ops). */
#define FC_CRF_HALVE(l, n, OP) for (int w_ = 0; w_ < (n); ++w_) l[w_] = OP(l[w_], l[w_ + (n)])
#define FC_CRF_ADD(a, b) ((a) + (b))
#define FC_CRF_MAX(a, b) ((b) > (a) ? (b) : (a))
FC_INLINE fc_real fc_crf_sumv(const fc_real *restrict x, ptrdiff_t Kp)
{
    fc_real l[FC_CRF_WS];
    for (int w = 0; w < FC_CRF_WS; ++w) l[w] = x[w];
    for (ptrdiff_t jb = FC_CRF_WS; jb < Kp; jb += FC_CRF_WS)
        for (int w = 0; w < FC_CRF_WS; ++w) l[w] += x[jb + w];
#if FC_CRF_WS == 16
    FC_CRF_HALVE(l, 8, FC_CRF_ADD);
#endif
    FC_CRF_HALVE(l, 4, FC_CRF_ADD);
    FC_CRF_HALVE(l, 2, FC_CRF_ADD);
    return l[0] + l[1];
}

FC_INLINE fc_real fc_crf_maxv(const fc_real *restrict x, ptrdiff_t Kp)
{
    fc_real l[FC_CRF_WS];
    for (int w = 0; w < FC_CRF_WS; ++w) l[w] = x[w];
    for (ptrdiff_t jb = FC_CRF_WS; jb < Kp; jb += FC_CRF_WS)
        for (int w = 0; w < FC_CRF_WS; ++w) l[w] = FC_CRF_MAX(l[w], x[jb + w]);
#if FC_CRF_WS == 16
    FC_CRF_HALVE(l, 8, FC_CRF_MAX);
#endif
    FC_CRF_HALVE(l, 4, FC_CRF_MAX);
    FC_CRF_HALVE(l, 2, FC_CRF_MAX);
    return FC_CRF_MAX(l[0], l[1]);
}

/* 2^-e for the exponent e of c > 0 (c normal): multiplying by it is exact and puts c in [0.5, 1). */
FC_INLINE fc_real fc_crf_pow2inv(fc_real c, int *e)
{
#if FC_REAL_DOUBLE
    uint64_t u;
    memcpy(&u, &c, sizeof u);
    int ex = (int)((u >> 52) & 0x7ff) - 1022;
    uint64_t v = (uint64_t)(1023 - ex) << 52;
    double r;
    memcpy(&r, &v, sizeof r);
#else
    uint32_t u;
    memcpy(&u, &c, sizeof u);
    int ex = (int)((u >> 23) & 0xff) - 126;
    uint32_t v = (uint32_t)(127 - ex) << 23;
    float r;
    memcpy(&r, &v, sizeof r);
#endif
    *e = ex;
    return r;
}

#if FC_VECTOR_EXT
/* row[0 .. K) = the first K lanes of v[0 .. NV): exact width, so that nothing beyond the row
 * is touched (the forward-backward writes rows last to first; the MEMM's safe stores). */
FC_INLINE void fc_crf_vstore_row(fc_real *row, const fc_vr *v, ptrdiff_t K, const int NV)
{
    for (int q = 0; q < NV; ++q) {
        const ptrdiff_t j0 = q * FC_VLEN;
        if (j0 + FC_VLEN <= K) {
            FC_VSTORE(row + j0, v[q]);
        } else {
            for (int l = 0; l < (int)FC_VLEN; ++l)
                if (j0 + l < K) row[j0 + l] = v[q][l];
        }
    }
}
#endif

/* d[0 .. n) += f[0 .. n).  A plain loop, kept rolled: GCC vectorises it into whole-vector
 * loads and float-to-double unpacks (a 4-lane __builtin_convertvector came out as two 2-lane
 * conversions, and a fully unrolled constant-length loop as scalar ones). */
FC_INLINE void fc_crf_add_row(const fc_real *restrict f, double *restrict d, ptrdiff_t n)
{
#pragma GCC unroll 1
    for (ptrdiff_t j = 0; j < n; ++j) d[j] += (double)f[j];
}
