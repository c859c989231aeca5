/* CRF / MEMM implementation, instantiated once per precision by crf_f32.c and crf_f64.c (see
 * fc_real.h).  No include guard on purpose.
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
FC_INLINE ptrdiff_t FC_NAME(fc_crf_width)(ptrdiff_t K) { return K <= FC_CRF_WS ? FC_CRF_WS : 2 * FC_CRF_WS; }
FC_INLINE ptrdiff_t FC_NAME(fc_crf_kp)(ptrdiff_t K)
{
    ptrdiff_t W = FC_NAME(fc_crf_width)(K);
    return (K + W - 1) / W * W;
}

#if FC_VECTOR_EXT
/* Explicit 32-byte vectors (GCC/Clang): split in two on the SSE2 baseline clone. */
typedef fc_real FC_NAME(fc_vr) __attribute__((vector_size(32)));
#if FC_REAL_DOUBLE
typedef int64_t FC_NAME(fc_vi) __attribute__((vector_size(32)));
#else
typedef int32_t FC_NAME(fc_vi) __attribute__((vector_size(32)));
#endif
/* Unaligned whole-vector load and store, straight to and from a register (a memcpy into an
 * array element of vectors can go through the stack in two halves, and the whole-vector load
 * that follows then stalls on store forwarding). */
typedef fc_real FC_NAME(fc_vu) __attribute__((vector_size(32), aligned(sizeof(fc_real)), may_alias));
#define FC_VLOAD(p) (*(const FC_NAME(fc_vu) *)(p))
#define FC_VSTORE(p, v) (*(FC_NAME(fc_vu) *)(p) = (v))
/* v = {x, x, ...} (a macro: vectors passed by value change the ABI on baseline builds) */
#define FC_SPLAT(v, x) do { memset(&(v), 0, sizeof(v)); for (int l_ = 0; l_ < (int)(32 / sizeof(fc_real)); ++l_) (v)[l_] = (x); } while (0)
/* {x, x, ...} as an expression (x evaluated once per lane: pass a plain value); compiles to one
 * broadcast, where FC_SPLAT's lane fill may become a chain of inserts */
#undef FC_BCAST
#if FC_REAL_DOUBLE
#define FC_BCAST(x) ((FC_NAME(fc_vr)){(x), (x), (x), (x)})
#else
#define FC_BCAST(x) ((FC_NAME(fc_vr)){(x), (x), (x), (x), (x), (x), (x), (x)})
#endif

/* Row helpers over 32-byte vectors: whole-vector loads and stores only, so that a row
 * written here and read back by a vectorised loop never stalls on store forwarding. */
#define FC_VLEN ((ptrdiff_t)(32 / sizeof(fc_real)))
FC_INLINE fc_real FC_NAME(fc_crf_hmax)(const FC_NAME(fc_vr) *v)
{
    fc_real m = (*v)[0];
    for (int l = 1; l < (int)FC_VLEN; ++l) m = (*v)[l] > m ? (*v)[l] : m;
    return m;
}

/* Lane mask of the vector that straddles K (lanes below K set), for fc_crf_row_load. */
FC_INLINE void FC_NAME(fc_crf_bmask)(ptrdiff_t K, FC_NAME(fc_vi) *m)
{
    memset(m, 0, sizeof *m);
    ptrdiff_t q = K / FC_VLEN;
    for (int l = 0; l < (int)FC_VLEN; ++l) (*m)[l] = q * FC_VLEN + l < K ? -1 : 0;
}

/* out[j] = (g ? g[j] : 0) + e[j] for j < K, -inf for K <= j < Kp (g padded with -inf to Kp
 * when given); returns the maximum over j.  e may be read up to e_end (exclusive), past K:
 * the straddling vector is then one load and a blend with bmask (fc_crf_bmask(K)). */
FC_INLINE fc_real FC_NAME(fc_crf_row_load)(const fc_real *restrict e, const fc_real *restrict g, ptrdiff_t K,
                                           ptrdiff_t Kp, fc_real *restrict out, const fc_real *e_end,
                                           const FC_NAME(fc_vi) *bmask)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
    return FC_NAME(fc_crf_hmax)(&mx);
}

/* ev[0..NV) = the row e[0..K) as NV vectors, lanes >= K set to -inf (NV * FC_VLEN >= K);
 * e may be read up to e_end (exclusive): the straddling vector is then one load and a
 * blend with bmask (fc_crf_bmask(K)). */
FC_INLINE void FC_NAME(fc_crf_vrow)(const fc_real *e, ptrdiff_t K, const fc_real *e_end,
                                    const FC_NAME(fc_vi) *bmask, FC_NAME(fc_vr) *ev, const int NV)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
FC_INLINE void FC_NAME(fc_crf_vexp)(FC_NAME(fc_vr) *xp, const int flush)
{
    FC_NAME(fc_vr) x = *xp;
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
FC_INLINE fc_real FC_NAME(fc_crf_vhsum)(const FC_NAME(fc_vr) *v, const int NV)
{
    FC_NAME(fc_vr) s = v[0];
    for (int q = 1; q < NV; ++q) s += v[q];
    fc_real a[FC_VLEN];
    memcpy(a, &s, sizeof a);
    for (int w = (int)FC_VLEN / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) a[l] += a[l + w];
    return a[0];
}

FC_INLINE fc_real FC_NAME(fc_crf_vhmax)(const FC_NAME(fc_vr) *v, const int NV)
{
    typedef FC_NAME(fc_vi) vi;
    FC_NAME(fc_vr) s = v[0];
    for (int q = 1; q < NV; ++q) {
        vi g = v[q] > s;
        s = (FC_NAME(fc_vr))(((vi)v[q] & g) | ((vi)s & ~g));
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
FC_INLINE void FC_NAME(fc_crf_mv_w)(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t K,
                                    ptrdiff_t Kp, const fc_real *restrict mul, fc_real *restrict out,
                                    const int W)
{
    typedef FC_NAME(fc_vr) vr;
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
FC_INLINE void FC_NAME(fc_crf_mv_w)(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t K,
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

FC_INLINE void FC_NAME(fc_crf_mv)(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t K,
                                  ptrdiff_t Kp, const fc_real *restrict mul, fc_real *restrict out)
{
    if (K <= FC_CRF_WS)
        FC_NAME(fc_crf_mv_w)(x, M, K, Kp, mul, out, FC_CRF_WS);
    else
        FC_NAME(fc_crf_mv_w)(x, M, K, Kp, mul, out, 2 * FC_CRF_WS);
}

/* Sum and maximum of a padded row (Kp a multiple of FC_CRF_WS), over lanes reduced
 * by halving stages with constant trip counts (so they unroll into vector ops). */
#define FC_CRF_HALVE(l, n, OP) for (int w_ = 0; w_ < (n); ++w_) l[w_] = OP(l[w_], l[w_ + (n)])
#define FC_CRF_ADD(a, b) ((a) + (b))
#define FC_CRF_MAX(a, b) ((b) > (a) ? (b) : (a))
FC_INLINE fc_real FC_NAME(fc_crf_sumv)(const fc_real *restrict x, ptrdiff_t Kp)
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

FC_INLINE fc_real FC_NAME(fc_crf_maxv)(const fc_real *restrict x, ptrdiff_t Kp)
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
FC_INLINE fc_real FC_NAME(fc_crf_pow2inv)(fc_real c, int *e)
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

/* Shared, read-only tables built once per call. */
typedef struct {
    ptrdiff_t K, Kp, Tn, Kr;            /* Kr: K rounded up to a multiple of 4 (<= Kp) */
    const fc_real *trans, *start, *end; /* user arrays (start/end may be NULL) */
    fc_real *E;    /* (Kr, Kp) exp(trans - tmax), 0 for -inf, padding and rows >= K */
    fc_real *ET;   /* (Kr, Kp) its transpose */
    fc_real *S, *N; /* (Kp) exp(start - smax), exp(end - nmax) */
    double tmax, smax, nmax;
} FC_NAME(fc_crf_tab);

/* Per-thread workspace. */
typedef struct {
    ptrdiff_t *pos;  /* (T) kept positions */
    fc_real *A;      /* (T, Kp) scaled alphas */
    fc_real *P;      /* (T, Kp) exp(emission - max) */
    double *c;       /* (T + 1) reciprocal step normalisers (what the backward multiplies by) */
    fc_real *b0, *b1, *w, *eb, *q; /* (Kp) */
    double *la;      /* (T, K) log-space alphas (fallback) */
    double *lb0, *lb1, *scr; /* (K) */
    double *acc;     /* (K*Kp + 2*Kp) expected counts of the current sequence */
} FC_NAME(fc_crf_ws);

static void FC_NAME(fc_crf_ws_free)(FC_NAME(fc_crf_ws) *w)
{
    free(w->pos); free(w->A); free(w->P); free(w->c); free(w->b0); free(w->b1); free(w->w); free(w->eb); free(w->q);
    free(w->la); free(w->lb0); free(w->lb1); free(w->scr); free(w->acc);
}

static int FC_NAME(fc_crf_ws_alloc)(FC_NAME(fc_crf_ws) *w, ptrdiff_t Tn, ptrdiff_t K, ptrdiff_t Kp)
{
    ptrdiff_t T1 = Tn > 0 ? Tn : 1;
    memset(w, 0, sizeof(*w));
    w->pos = malloc(sizeof(ptrdiff_t) * T1);
    w->A = malloc(sizeof(fc_real) * T1 * Kp);
    w->P = malloc(sizeof(fc_real) * T1 * Kp);
    w->c = malloc(sizeof(double) * (T1 + 1));
    w->b0 = malloc(sizeof(fc_real) * Kp);
    w->b1 = malloc(sizeof(fc_real) * Kp);
    w->w = malloc(sizeof(fc_real) * Kp);
    w->eb = malloc(sizeof(fc_real) * Kp);
    w->q = malloc(sizeof(fc_real) * Kp);
    w->la = malloc(sizeof(double) * T1 * K);
    w->lb0 = malloc(sizeof(double) * K);
    w->lb1 = malloc(sizeof(double) * K);
    w->scr = malloc(sizeof(double) * K);
    w->acc = malloc(sizeof(double) * (K * Kp + 2 * Kp));
    if (!w->pos || !w->A || !w->P || !w->c || !w->b0 || !w->b1 || !w->w || !w->eb || !w->q || !w->la || !w->lb0
        || !w->lb1 || !w->scr || !w->acc) {
        FC_NAME(fc_crf_ws_free)(w);
        return FC_OUT_OF_MEMORY;
    }
    return FC_OK;
}

/* exp(v - max) over the finite entries of v (K), into out (Kp, zero padded); returns max
 * (0 when v is NULL: all ones; -inf when every entry is -inf). */
static FC_MULTIVERSION double FC_NAME(fc_crf_expvec)(const fc_real *v, fc_real *out, ptrdiff_t K, ptrdiff_t Kp)
{
    if (v == NULL) {
        for (ptrdiff_t j = 0; j < Kp; ++j) out[j] = j < K ? (fc_real)1 : (fc_real)0;
        return 0.0;
    }
    fc_real m = -FC_INF;
    for (ptrdiff_t j = 0; j < K; ++j) m = v[j] > m ? v[j] : m;
    fc_real sh = m == -FC_INF ? (fc_real)0 : m;
    for (ptrdiff_t j = 0; j < Kp; ++j) out[j] = j < K ? FC_EXP(v[j] - sh) : (fc_real)0;
    return (double)m;
}

static void FC_NAME(fc_crf_tab_free)(FC_NAME(fc_crf_tab) *t)
{
    free(t->E); free(t->ET); free(t->S); free(t->N);
}

static FC_MULTIVERSION int FC_NAME(fc_crf_tab_init)(FC_NAME(fc_crf_tab) *t, const fc_real *trans, const fc_real *start,
                                    const fc_real *end, ptrdiff_t Tn, ptrdiff_t K)
{
    ptrdiff_t Kp = FC_NAME(fc_crf_kp)(K);
    memset(t, 0, sizeof(*t));
    const ptrdiff_t Kr = (K + 3) / 4 * 4;
    t->K = K; t->Kp = Kp; t->Tn = Tn; t->Kr = Kr; t->trans = trans; t->start = start; t->end = end;
    t->E = calloc((size_t)(Kr * Kp), sizeof(fc_real)); /* rows K .. Kr stay 0 */
    t->ET = calloc((size_t)(Kr * Kp), sizeof(fc_real));
    t->S = malloc(sizeof(fc_real) * Kp);
    t->N = malloc(sizeof(fc_real) * Kp);
    if (!t->E || !t->ET || !t->S || !t->N) {
        FC_NAME(fc_crf_tab_free)(t);
        return FC_OUT_OF_MEMORY;
    }
    fc_real m = -FC_INF;
    for (ptrdiff_t i = 0; i < K * K; ++i) m = trans[i] > m ? trans[i] : m;
    fc_real sh = m == -FC_INF ? (fc_real)0 : m;
    t->tmax = (double)sh;
    for (ptrdiff_t i = 0; i < K; ++i)
        for (ptrdiff_t j = 0; j < Kp; ++j) {
            fc_real e = j < K ? FC_EXP(trans[i * K + j] - sh) : (fc_real)0;
            t->E[i * Kp + j] = e;
        }
    for (ptrdiff_t j = 0; j < K; ++j)
        for (ptrdiff_t i = 0; i < Kp; ++i) t->ET[j * Kp + i] = i < K ? t->E[i * Kp + j] : (fc_real)0;
    t->smax = FC_NAME(fc_crf_expvec)(start, t->S, K, Kp);
    t->nmax = FC_NAME(fc_crf_expvec)(end, t->N, K, Kp);
    return FC_OK;
}

/* Kept positions of sequence b; returns their number. */
FC_INLINE ptrdiff_t FC_NAME(fc_crf_positions)(const uint8_t *mask, ptrdiff_t b, ptrdiff_t Tn, ptrdiff_t *pos)
{
    if (mask == NULL) {
        for (ptrdiff_t t = 0; t < Tn; ++t) pos[t] = t;
        return Tn;
    }
    const uint8_t *m = mask + b * Tn;
    /* the leading run of kept positions 8 at a time (a lengths mask is one run), then
     * branch-free, skipping 8 masked positions at a time */
    const uint64_t ones = 0x0101010101010101ull;
    ptrdiff_t t = 0, n;
    for (uint64_t w; t + 8 <= Tn; t += 8) {
        memcpy(&w, m + t, sizeof w);
        if (w != ones) break;
    }
    while (t < Tn && m[t]) ++t;
    for (n = 0; n < t; ++n) pos[n] = n;
    while (t < Tn) {
        uint64_t w;
        if (t + 8 <= Tn && (memcpy(&w, m + t, sizeof w), w == 0)) {
            t += 8;
            continue;
        }
        pos[n] = t;
        n += m[t] != 0;
        ++t;
    }
    return n;
}

/* Score of a path (labels y at kept positions pos[0..n)), in double. */
static double FC_NAME(fc_crf_path_score)(const fc_real *emb, const fc_real *trans, const fc_real *start,
                                         const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n,
                                         const int64_t *y, ptrdiff_t ystride, ptrdiff_t K)
{
    if (n == 0) return 0.0;
    double s = 0.0;
    int64_t prev = -1;
    for (ptrdiff_t k = 0; k < n; ++k) {
        int64_t yk = y[pos[k] * ystride];
        s += (double)emb[pos[k] * K + yk];
        if (k == 0) {
            if (start) s += (double)start[yk];
        } else {
            s += (double)trans[prev * K + yk];
        }
        prev = yk;
    }
    if (end) s += (double)end[prev];
    return s;
}

/* ---------------------------------------------------------------- input checks */
/* Branch-free passes the compiler vectorises: x * 0 is NaN exactly when x is NaN or +-inf. */
static FC_MULTIVERSION int FC_NAME(fc_crf_check_impl)(const fc_real *em, const fc_real *trans, const fc_real *start,
                                                 const fc_real *end, const uint8_t *mask, const int64_t *tags,
                                                 ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K)
{
    int bad = 0;
    const ptrdiff_t n = B * Tn * K;
    if (em != NULL && n > 0) {
        const ptrdiff_t blk = 4096;
        for (ptrdiff_t i0 = 0; i0 < n && !bad; i0 += blk) {
            const ptrdiff_t i1 = i0 + blk < n ? i0 + blk : n;
            fc_real acc[32] = {0}; /* 32 lanes: several independent vector chains */
            ptrdiff_t i = i0;
            for (; i + 32 <= i1; i += 32)
                for (int l = 0; l < 32; ++l) acc[l] += em[i + l] * (fc_real)0;
            for (; i < i1; ++i) acc[0] += em[i] * (fc_real)0;
            fc_real s = 0;
            for (int l = 0; l < 32; ++l) s += acc[l];
            if (s != s) bad |= 1;
        }
    }
    const fc_real *vs[3] = {trans, start, end};
    const ptrdiff_t ns[3] = {K * K, K, K};
    for (int v = 0; v < 3; ++v) {
        if (vs[v] == NULL) continue;
        int b = 0;
        for (ptrdiff_t i = 0; i < ns[v]; ++i) b |= (vs[v][i] != vs[v][i]) | (vs[v][i] > FC_MAXVAL);
        if (b) bad |= 2;
    }
    if (tags != NULL && B * Tn > 0) {
        /* every tag first (one vectorised pass); the mask only when some tag is out of range */
        uint64_t b = 0;
        const ptrdiff_t m = B * Tn;
        for (ptrdiff_t i = 0; i < m; ++i) b |= (uint64_t)tags[i] >= (uint64_t)K;
        if (b && mask != NULL) {
            b = 0;
            for (ptrdiff_t i = 0; i < m; ++i) b |= ((uint64_t)tags[i] >= (uint64_t)K) & (mask[i] != 0);
        }
        if (b) bad |= 4;
    }
    return bad;
}

/* The shared state of fc_crf_check's team (fc_team). */
typedef struct {
    const fc_real *em, *trans, *start, *end;
    const uint8_t *mask;
    const int64_t *tags;
    ptrdiff_t B, Tn, K;
    int bad[FC_CRF_CHECK_RANKS]; /* each rank's findings, or-ed by the caller */
} FC_NAME(fc_crf_check_job);

/* One rank of fc_crf_check: its share of the sequences (rank 0 also checks the tables). */
static void FC_NAME(fc_crf_check_team)(void *arg)
{
    FC_NAME(fc_crf_check_job) *job = arg;
    const int id = fc_thread_id();
    const ptrdiff_t Tn = job->Tn, K = job->K;
    ptrdiff_t lo, hi;
    fc_split(job->B, fc_thread_count(), id, &lo, &hi);
    job->bad[id] = FC_NAME(fc_crf_check_impl)(job->em + lo * Tn * K, id == 0 ? job->trans : NULL,
                                              id == 0 ? job->start : NULL, id == 0 ? job->end : NULL,
                                              job->mask ? job->mask + lo * Tn : NULL,
                                              job->tags ? job->tags + lo * Tn : NULL, hi - lo, Tn, K);
}

int FC_NAME(fc_crf_check)(const fc_real *em, const fc_real *trans, const fc_real *start, const fc_real *end,
                          const uint8_t *mask, const int64_t *tags, ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K,
                          int n_threads)
{
    if (B < 0 || Tn < 0 || K < 0 || n_threads < 1) return -1;
    /* it runs before every fast-path kernel call: a serial pass over the emissions would cap
     * their thread speed-up */
    const ptrdiff_t per = (ptrdiff_t)1 << 16;
    int nt = fc_clamp_threads(fc_clamp_threads(fc_clamp_threads(n_threads, B * Tn * K / per), B),
                              FC_CRF_CHECK_RANKS);
    if (nt <= 1) return FC_NAME(fc_crf_check_impl)(em, trans, start, end, mask, tags, B, Tn, K);
    FC_NAME(fc_crf_check_job) job = {.em = em, .trans = trans, .start = start, .end = end, .mask = mask,
                                     .tags = tags, .B = B, .Tn = Tn, .K = K};
    fc_team(nt, FC_NAME(fc_crf_check_team), &job);
    int bad = 0;
    for (int i = 0; i < nt; ++i) bad |= job.bad[i];
    return bad;
}

/* ---------------------------------------------------------------- scaled forward */
/* Fills ws->A, ws->P, ws->c for positions pos[0..n); returns log Z, or NAN when
 * the scaled recursion is not trusted (caller falls back to log space).
 * The step normalisers are multiplied in double and their log taken only when the
 * product leaves [1e-150, 1e150]. */
static FC_MULTIVERSION double FC_NAME(fc_crf_fwd_scaled)(const FC_NAME(fc_crf_tab) *tb, FC_NAME(fc_crf_ws) *ws,
                                                         const fc_real *emb, ptrdiff_t n)
{
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    fc_real *restrict eb = ws->eb;
    if (tb->smax == -INFINITY || tb->nmax == -INFINITY) return NAN;
#if FC_VECTOR_EXT
    const fc_real *e_end = emb + (ws->pos[n - 1] + 1) * K; /* last readable emission of the sequence */
    FC_NAME(fc_vi) bmask;
    FC_NAME(fc_crf_bmask)(K, &bmask);
#endif
    double logz = tb->smax + tb->nmax + (double)(n - 1) * tb->tmax, prod = 1.0;
    int64_t esum = 0;
    for (ptrdiff_t j = K; j < Kp; ++j) eb[j] = -FC_INF;
    for (ptrdiff_t k = 0; k < n; ++k) {
        const fc_real *e = emb + ws->pos[k] * K;
        fc_real *restrict a = ws->A + k * Kp, *restrict p = ws->P + k * Kp;
#if FC_VECTOR_EXT
        fc_real m = FC_NAME(fc_crf_row_load)(e, NULL, K, Kp, eb, e_end, &bmask);
#else
        for (ptrdiff_t j = 0; j < K; ++j) eb[j] = e[j];
        fc_real m = FC_NAME(fc_crf_maxv)(eb, Kp);
#endif
        /* padding lanes: exp(-inf) <= 2^-149, multiplied by the zero padding of S / E / N */
        for (ptrdiff_t j = 0; j < Kp; ++j) p[j] = FC_EXP(eb[j] - m);
        if (k == 0) {
            for (ptrdiff_t j = 0; j < Kp; ++j) a[j] = tb->S[j] * p[j];
        } else {
            FC_NAME(fc_crf_mv)(a - Kp, tb->E, K, Kp, p, a);
        }
        fc_real c = FC_NAME(fc_crf_sumv)(a, Kp);
        if (!((double)c >= FC_CRF_TINY)) return NAN;
        int ex;
        fc_real inv = FC_NAME(fc_crf_pow2inv)(c, &ex); /* exact rescaling: row sum in [0.5, 1) */
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
        double c = (double)FC_NAME(fc_crf_sumv)(q, Kp);
        if (!(c >= FC_CRF_TINY)) return NAN;
        ws->c[n] = 1.0 / c;
        logz += log(prod) + log(c);
    }
    return logz;
}

#if FC_VECTOR_EXT
/* row[0 .. K) = the first K lanes of v[0 .. NV): exact width, so that nothing beyond the row
 * is touched (the forward-backward writes rows last to first; the MEMM's safe stores). */
FC_INLINE void FC_NAME(fc_crf_vstore_row)(fc_real *row, const FC_NAME(fc_vr) *v, ptrdiff_t K, const int NV)
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

/* out (NV vectors) = sum_i x[i] M[i, :] over i < Kr (rows of Kp = NV * FC_VLEN), C chains; Kr
 * a positive multiple of C (the table rows past K are zero and x is finite there: no tail,
 * so that the chains stay in registers). */
FC_INLINE void FC_NAME(fc_crf_vmv)(const fc_real *restrict x, const fc_real *restrict M, ptrdiff_t Kr,
                                   FC_NAME(fc_vr) *out, const int NV, const int C)
{
    typedef FC_NAME(fc_vr) vr;
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
FC_INLINE double FC_NAME(fc_crf_fwd_reg_nv)(const FC_NAME(fc_crf_tab) *tb, const fc_real *emb, const ptrdiff_t *pos,
                                            ptrdiff_t n, const int NV, const int C, fc_real *restrict A,
                                            fc_real *restrict P, double *restrict cs)
{
    typedef FC_NAME(fc_vr) vr;
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    if (tb->smax == -INFINITY || tb->nmax == -INFINITY) return NAN;
    const fc_real *e_end = emb + (pos[n - 1] + 1) * K;
    FC_NAME(fc_vi) bmask;
    FC_NAME(fc_crf_bmask)(K, &bmask);
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
        FC_NAME(fc_crf_vrow)(emb + pos[k] * K, K, e_end, &bmask, p, NV);
        const fc_real m = FC_NAME(fc_crf_vhmax)(p, NV);
        for (int q = 0; q < NV; ++q) {
            p[q] -= z + m;
            FC_NAME(fc_crf_vexp)(&p[q], 1); /* padding lanes: exp(-inf) = 0 */
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
            FC_NAME(fc_crf_vmv)(ab.s, tb->E, tb->Kr, tab, NV, C);
            for (int q = 0; q < NV; ++q) a[q] = tab[q] * p[q];
        }
        const fc_real s = FC_NAME(fc_crf_vhsum)(a, NV);
        if (!((double)s >= FC_CRF_TINY)) return NAN;
        inv = FC_NAME(fc_crf_pow2inv)(s, &ex); /* exact: the stored row sums to [0.5, 1) */
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
    const double c = (double)FC_NAME(fc_crf_vhsum)(a, NV);
    if (!(c >= FC_CRF_TINY)) return NAN;
    if (cs != NULL) cs[n] = 1.0 / c;
    return logz + (double)esum * 0.69314718055994530942 + log(c);
}

static FC_MULTIVERSION double FC_NAME(fc_crf_fwd_reg)(const FC_NAME(fc_crf_tab) *tb, const fc_real *emb,
                                                      const ptrdiff_t *pos, ptrdiff_t n)
{
    if (tb->Kp == 2 * FC_VLEN) return FC_NAME(fc_crf_fwd_reg_nv)(tb, emb, pos, n, 2, 4, NULL, NULL, NULL);
    if (tb->Kp == 4 * FC_VLEN) return FC_NAME(fc_crf_fwd_reg_nv)(tb, emb, pos, n, 4, 2, NULL, NULL, NULL);
    return FC_NAME(fc_crf_fwd_reg_nv)(tb, emb, pos, n, 8, 1, NULL, NULL, NULL);
}
#endif

/* d[0 .. n) += f[0 .. n).  A plain loop, kept rolled: GCC vectorises it into whole-vector
 * loads and float-to-double unpacks (a 4-lane __builtin_convertvector came out as two 2-lane
 * conversions, and a fully unrolled constant-length loop as scalar ones). */
FC_INLINE void FC_NAME(fc_crf_add_row)(const fc_real *restrict f, double *restrict d, ptrdiff_t n)
{
#pragma GCC unroll 1
    for (ptrdiff_t j = 0; j < n; ++j) d[j] += (double)f[j];
}

/* Transitions counts of fc_crf_bwd_scaled: accT[i, j] += sum_k A[k-1, i] W[k, j] (k in
 * [1, n), rows of Kp), float partial sums over blocks of FC_CRF_CBLK steps added to the double
 * rows; W (the column block) a compile-time constant so that the sums stay in registers, two
 * rows i at a time sharing the loads of W (odd K: the last row is summed twice, added once). */
#define FC_CRF_CBLK 64
FC_INLINE void FC_NAME(fc_crf_counts_w)(const fc_real *restrict A, const fc_real *restrict Wk, ptrdiff_t n,
                                        ptrdiff_t K, ptrdiff_t Kp, double *restrict accT, const int W)
{
#if FC_VECTOR_EXT
    typedef FC_NAME(fc_vr) vr;
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
                FC_NAME(fc_crf_add_row)(s, accT + i * Kp + jb, W);
                if (i1 == i) break;
                memcpy(s, s1, sizeof(vr) * (size_t)NV);
                FC_NAME(fc_crf_add_row)(s, accT + i1 * Kp + jb, W);
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

static FC_MULTIVERSION void FC_NAME(fc_crf_counts)(const fc_real *A, const fc_real *Wk, ptrdiff_t n, ptrdiff_t K,
                                                   ptrdiff_t Kp, double *accT)
{
    if (K <= FC_CRF_WS)
        FC_NAME(fc_crf_counts_w)(A, Wk, n, K, Kp, accT, FC_CRF_WS);
    else
        FC_NAME(fc_crf_counts_w)(A, Wk, n, K, Kp, accT, 2 * FC_CRF_WS);
}

/* Scaled backward after a successful scaled forward.  Writes node marginals
 * (node_b: (T, K) of this sequence, or NULL), pairwise marginals (pair_b, or
 * NULL) and, when acc != NULL, adds the expected counts to acc (K*Kp trans,
 * then Kp start, Kp end); the trans counts lack the factor E[i, j], applied by the
 * caller.  Overwrites ws->P.  Returns 0, or -1 when not trusted (log-space redo). */
static FC_MULTIVERSION int FC_NAME(fc_crf_bwd_scaled)(const FC_NAME(fc_crf_tab) *tb, FC_NAME(fc_crf_ws) *ws,
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
        double s = (double)FC_NAME(fc_crf_sumv)(q, Kp);
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
        FC_NAME(fc_crf_mv)(w, tb->ET, K, Kp, NULL, bn);
        fc_real *tmp = b; b = bn; bn = tmp;
    }
    if (acc != NULL) FC_NAME(fc_crf_counts)(ws->A, ws->P, n, K, Kp, accT);
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
FC_INLINE double FC_NAME(fc_crf_fb_reg_nv)(const FC_NAME(fc_crf_tab) *tb, FC_NAME(fc_crf_ws) *ws,
                                           const fc_real *emb, ptrdiff_t n, fc_real *nodet, fc_real gs,
                                           const int64_t *y, fc_real *pair_b, double *acc, const int NV,
                                           const int C)
{
    typedef FC_NAME(fc_vr) vr;
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    const ptrdiff_t *pos = ws->pos;
    fc_real *restrict A = ws->A, *restrict P = ws->P;
    double *restrict cs = ws->c;
    const vr z = {0};
    union { vr v[8]; fc_real s[8 * FC_VLEN]; } xb; /* the row broadcast by the product */
    vr a[8], t[8], b[8];
    const double logz = FC_NAME(fc_crf_fwd_reg_nv)(tb, emb, pos, n, NV, C, A, P, cs);
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
        const double s = (double)FC_NAME(fc_crf_vhsum)(a, NV);
        if (!(fabs(s - 1.0) <= FC_CRF_SUMTOL)) return NAN;
        const fc_real is = (fc_real)(1.0 / s);
        for (int q = 0; q < NV; ++q) {
            a[q] *= z + is;
            t[q] = a[q] * (z + gs);
        }
        if (nodet != NULL) { /* NULL: pairwise marginals or counts only */
            fc_real *o = nodet + pos[k] * K;
            FC_NAME(fc_crf_vstore_row)(o, t, K, NV);
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
                FC_NAME(fc_crf_vstore_row)(pair_b + (pos[k] * K + i) * K, t, K, NV);
            }
        }
        FC_NAME(fc_crf_vmv)(xb.s, tb->ET, tb->Kr, b, NV, C);
    }
    if (acc != NULL) FC_NAME(fc_crf_counts)(A, P, n, K, Kp, accT);
    return logz;
}

static FC_MULTIVERSION double FC_NAME(fc_crf_fb_reg)(const FC_NAME(fc_crf_tab) *tb, FC_NAME(fc_crf_ws) *ws,
                                                     const fc_real *emb, ptrdiff_t n, fc_real *nodet, fc_real gs,
                                                     const int64_t *y, fc_real *pair_b, double *acc)
{
    if (tb->Kp == 2 * FC_VLEN) return FC_NAME(fc_crf_fb_reg_nv)(tb, ws, emb, n, nodet, gs, y, pair_b, acc, 2, 4);
    if (tb->Kp == 4 * FC_VLEN) return FC_NAME(fc_crf_fb_reg_nv)(tb, ws, emb, n, nodet, gs, y, pair_b, acc, 4, 2);
    return FC_NAME(fc_crf_fb_reg_nv)(tb, ws, emb, n, nodet, gs, y, pair_b, acc, 8, 1);
}
#endif

/* ---------------------------------------------------------------- log-space fallback */
static double FC_NAME(fc_crf_lse)(const double *v, ptrdiff_t n)
{
    double m = -INFINITY;
    for (ptrdiff_t i = 0; i < n; ++i) m = v[i] > m ? v[i] : m;
    if (m == -INFINITY) return m;
    double s = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) s += exp(v[i] - m);
    return m + log(s);
}

/* Log-space forward-backward in double for one sequence (positions ws->pos[0..n)).
 * Returns log Z; outputs as in fc_crf_bwd_scaled but acc is in linear
 * probability (not divided by E).  acc_lin == 1 means acc gets plain marginal
 * counts for trans. */
static double FC_NAME(fc_crf_fb_log)(const FC_NAME(fc_crf_tab) *tb, FC_NAME(fc_crf_ws) *ws,
                                     const fc_real *emb, ptrdiff_t n, int backward,
                                     fc_real *node_b, fc_real *pair_b, double *acc)
{
    const ptrdiff_t K = tb->K, Kp = tb->Kp;
    const fc_real *tr = tb->trans;
    double *la = ws->la, *tmp = ws->lb0;
    if (n == 0) return 0.0;
    for (ptrdiff_t k = 0; k < n; ++k) {
        const fc_real *e = emb + ws->pos[k] * K;
        double *a = la + k * K;
        for (ptrdiff_t j = 0; j < K; ++j) {
            double v;
            if (k == 0) {
                v = tb->start ? (double)tb->start[j] : 0.0;
            } else {
                const double *ap = a - K;
                double *t2 = ws->lb1;
                for (ptrdiff_t i = 0; i < K; ++i) t2[i] = ap[i] + (double)tr[i * K + j];
                v = FC_NAME(fc_crf_lse)(t2, K);
            }
            a[j] = v + (double)e[j];
        }
    }
    for (ptrdiff_t j = 0; j < K; ++j)
        tmp[j] = la[(n - 1) * K + j] + (tb->end ? (double)tb->end[j] : 0.0);
    double logz = FC_NAME(fc_crf_lse)(tmp, K);
    if (!backward) return logz;
    double *accT = acc, *accS = acc ? acc + K * Kp : NULL, *accN = acc ? acc + K * Kp + Kp : NULL;
    if (logz == -INFINITY) { /* no allowed path: marginals and counts are 0 */
        if (node_b)
            for (ptrdiff_t k = 0; k < n; ++k)
                for (ptrdiff_t j = 0; j < K; ++j) node_b[ws->pos[k] * K + j] = (fc_real)0;
        if (pair_b)
            for (ptrdiff_t k = 1; k < n; ++k)
                for (ptrdiff_t j = 0; j < K * K; ++j) pair_b[ws->pos[k] * K * K + j] = (fc_real)0;
        return logz;
    }
    double *lb = ws->lb0, *lbn = ws->lb1, *scr = ws->scr;
    for (ptrdiff_t j = 0; j < K; ++j) lb[j] = tb->end ? (double)tb->end[j] : 0.0;
    for (ptrdiff_t k = n - 1; k >= 0; --k) {
        const double *a = la + k * K;
        for (ptrdiff_t j = 0; j < K; ++j) {
            double q = exp(a[j] + lb[j] - logz);
            if (node_b) node_b[ws->pos[k] * K + j] = (fc_real)q;
            if (acc && k == n - 1) accN[j] += q;
            if (acc && k == 0) accS[j] += q;
        }
        if (k == 0) break;
        const fc_real *e = emb + ws->pos[k] * K;
        const double *ap = a - K;
        for (ptrdiff_t i = 0; i < K; ++i) {
            for (ptrdiff_t j = 0; j < K; ++j) {
                double v = (double)tr[i * K + j] + (double)e[j] + lb[j];
                scr[j] = v;
                double q = exp(ap[i] + v - logz);
                if (pair_b) pair_b[ws->pos[k] * K * K + i * K + j] = (fc_real)q;
                if (acc) accT[i * Kp + j] += q;
            }
            lbn[i] = FC_NAME(fc_crf_lse)(scr, K);
        }
        double *t = lb; lb = lbn; lbn = t;
    }
    return logz;
}

/* ---------------------------------------------------------------- drivers */
#define FC_CRF_CHUNK 8 /* sequences per gradient accumulator: fixed, so results do not depend on threads */

/* The shared state of the team of fc_crf_forward or fc_crf_fb (fc_team); the forward uses the
 * fields up to K. */
typedef struct {
    const FC_NAME(fc_crf_tab) *tb;
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
} FC_NAME(fc_crf_job);

/* One thread of fc_crf_forward (all of them run this, see fc_team). */
static void FC_NAME(fc_crf_forward_team)(void *arg)
{
    FC_NAME(fc_crf_job) *job = arg;
    const FC_NAME(fc_crf_tab) *tb = job->tb;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K;
    FC_NAME(fc_crf_ws) ws;
    int ok = FC_NAME(fc_crf_ws_alloc)(&ws, Tn, K, tb->Kp) == FC_OK;
    if (!ok) {
        FC_OMP_FAIL(job->status, FC_OUT_OF_MEMORY);
    }
    for (ptrdiff_t b; ok && !fc_interrupted() && (b = fc_claim(&job->next)) < B;) {
        const fc_real *emb = job->em + b * Tn * K;
        ptrdiff_t n = FC_NAME(fc_crf_positions)(job->mask, b, Tn, ws.pos);
        double z = 0.0;
#if FC_VECTOR_EXT
        if (n > 0 && tb->Kp <= 8 * FC_VLEN)
            z = FC_NAME(fc_crf_fwd_reg)(tb, emb, ws.pos, n);
        else
#endif
        if (n > 0)
            z = FC_NAME(fc_crf_fwd_scaled)(tb, &ws, emb, n);
        if (z != z) z = FC_NAME(fc_crf_fb_log)(tb, &ws, emb, n, 0, NULL, NULL, NULL);
        job->logz[b] = z;
        if (job->score != NULL)
            job->score[b] = FC_NAME(fc_crf_path_score)(emb, job->trans, job->start, job->end, ws.pos, n,
                                                       job->tags + b * Tn, 1, K);
    }
    if (ok) FC_NAME(fc_crf_ws_free)(&ws);
}

int FC_NAME(fc_crf_forward)(const fc_real *em, const fc_real *trans, const fc_real *start,
                            const fc_real *end, const uint8_t *mask, const int64_t *tags,
                            ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K, double *logz, double *score,
                            int n_threads)
{
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (B == 0) return FC_OK;
    if (em == NULL || trans == NULL || logz == NULL || (score != NULL && tags == NULL)) return FC_BAD_ARGUMENT;
    FC_NAME(fc_crf_tab) tb;
    if (FC_NAME(fc_crf_tab_init)(&tb, trans, start, end, Tn, K) != FC_OK) return FC_OUT_OF_MEMORY;
    FC_NAME(fc_crf_job) job = {.tb = &tb, .em = em, .trans = trans, .start = start, .end = end, .mask = mask,
                                   .tags = tags, .logz = logz, .score = score, .B = B, .Tn = Tn, .K = K,
                                   .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_crf_threads(n_threads, B, B * Tn, K), FC_NAME(fc_crf_forward_team), &job);
    if (fc_interrupt_pending()) job.status = FC_INTERRUPTED; /* Ctrl-C */
    FC_NAME(fc_crf_tab_free)(&tb);
    return job.status;
}

/* One thread of fc_crf_fb (all of them run this, see fc_team). */
static void FC_NAME(fc_crf_fb_team)(void *arg)
{
    FC_NAME(fc_crf_job) *job = arg;
    const FC_NAME(fc_crf_tab) *tb = job->tb;
    const fc_real *em = job->em, *trans = job->trans, *start = job->start, *end = job->end;
    const uint8_t *mask = job->mask;
    const int64_t *tags = job->tags;
    const double *weight = job->weight;
    double *logz = job->logz, *score = job->score, *chunk_acc = job->chunk_acc;
    fc_real *node = job->node, *pair = job->pair, *g_em = job->g_em;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K, Kp = job->Kp, accn = job->accn, nchunk = job->nchunk;
    const int grad = job->grad;
    FC_NAME(fc_crf_ws) ws;
    int ok = FC_NAME(fc_crf_ws_alloc)(&ws, Tn, K, Kp) == FC_OK;
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
            ptrdiff_t n = FC_NAME(fc_crf_positions)(mask, b, Tn, ws.pos);
            double *acc = grad ? ws.acc : NULL;
            if (acc) memset(acc, 0, sizeof(double) * accn);
            double z = 0.0;
            int scaled = 0, fused = 0; /* fused: the emission gradient rows are written */
            if (n > 0) {
#if FC_VECTOR_EXT
                if (Kp <= 8 * FC_VLEN) {
                    fused = ge != NULL && ge == nodet;
                    z = FC_NAME(fc_crf_fb_reg)(tb, &ws, emb, n, nodet, fused ? (fc_real)weight[b] : (fc_real)1,
                                               fused ? yb : NULL, pair_b, acc);
                } else
#endif
                {
                    z = FC_NAME(fc_crf_fwd_scaled)(tb, &ws, emb, n);
                    if (z == z && FC_NAME(fc_crf_bwd_scaled)(tb, &ws, n, nodet, pair_b, acc) != 0) z = NAN;
                }
                if (z == z) {
                    scaled = 1;
                } else {
                    fused = 0;
                    if (acc) memset(acc, 0, sizeof(double) * accn);
                    z = FC_NAME(fc_crf_fb_log)(tb, &ws, emb, n, 1, nodet, pair_b, acc);
                }
            }
            if (logz) logz[b] = z;
            double sc = 0.0;
            if (yb) sc = FC_NAME(fc_crf_path_score)(emb, trans, start, end, ws.pos, n, yb, 1, K);
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
    if (ok) FC_NAME(fc_crf_ws_free)(&ws);
}

int FC_NAME(fc_crf_fb)(const fc_real *em, const fc_real *trans, const fc_real *start, const fc_real *end,
                       const uint8_t *mask, const int64_t *tags, ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K,
                       const double *weight, double *logz, double *score, fc_real *node, fc_real *pair,
                       fc_real *g_em, fc_real *g_trans, fc_real *g_start, fc_real *g_end, int n_threads)
{
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (em == NULL || trans == NULL) return FC_BAD_ARGUMENT;
    int grad = g_em != NULL || g_trans != NULL || g_start != NULL || g_end != NULL;
    if (grad && (tags == NULL || weight == NULL)) return FC_BAD_ARGUMENT;
    if (score != NULL && tags == NULL) return FC_BAD_ARGUMENT;
    const ptrdiff_t Kp = FC_NAME(fc_crf_kp)(K);
    const ptrdiff_t accn = K * Kp + 2 * Kp;
    const ptrdiff_t nchunk = (B + FC_CRF_CHUNK - 1) / FC_CRF_CHUNK;
    double *chunk_acc = NULL;
    if (grad && nchunk > 0) { /* each chunk's part is zeroed by the thread that claims it */
        chunk_acc = malloc(sizeof(double) * (size_t)(nchunk * accn));
        if (chunk_acc == NULL) return FC_OUT_OF_MEMORY;
    }
    FC_NAME(fc_crf_tab) tb;
    if (FC_NAME(fc_crf_tab_init)(&tb, trans, start, end, Tn, K) != FC_OK) {
        free(chunk_acc);
        return FC_OUT_OF_MEMORY;
    }
    FC_NAME(fc_crf_job) job = {
        .tb = &tb, .em = em, .trans = trans, .start = start, .end = end, .mask = mask, .tags = tags,
        .weight = weight, .logz = logz, .score = score, .chunk_acc = chunk_acc, .node = node, .pair = pair,
        .g_em = g_em, .B = B, .Tn = Tn, .K = K, .Kp = Kp, .accn = accn, .nchunk = nchunk, .grad = grad,
        .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_crf_threads(n_threads, nchunk, B * Tn, K), FC_NAME(fc_crf_fb_team), &job);
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
    FC_NAME(fc_crf_tab_free)(&tb);
    return status;
}

/* ---------------------------------------------------------------- Viterbi */
/* One Viterbi step (compilers without GCC vectors; GCC/Clang use fc_crf_vit_reg2):
 * d1[j] = max_i d0[i] + TP[i, j] and its argmax (lowest i on ties) for every j < Kp. */
#if !FC_VECTOR_EXT
FC_INLINE void FC_NAME(fc_crf_vstep_w)(const fc_real *restrict d0, const fc_real *restrict TP, ptrdiff_t K,
                                       ptrdiff_t Kp, fc_real *restrict d1, int32_t *restrict arg)
{
    for (ptrdiff_t j = 0; j < Kp; ++j) { d1[j] = -FC_INF; arg[j] = 0; }
    for (ptrdiff_t i = 0; i < K; ++i) {
        const fc_real v = d0[i];
        const fc_real *row = TP + i * Kp;
        for (ptrdiff_t j = 0; j < Kp; ++j) {
            fc_real c = v + row[j];
            if (c > d1[j]) { d1[j] = c; arg[j] = (int32_t)i; }
        }
    }
}
#endif

/* End of a top-1 Viterbi with backpointers bp ((n, Kp), rows from 1): the best last label of
 * the scores d (lowest index on ties), then the path at the kept positions.  Returns 0, or -1
 * when no path is allowed. */
FC_INLINE int FC_NAME(fc_crf_vit_back)(const fc_real *d, const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n,
                                       ptrdiff_t K, ptrdiff_t Kp, const int32_t *bp, int64_t *path)
{
    fc_real best = -FC_INF;
    ptrdiff_t bj = -1;
    for (ptrdiff_t j = 0; j < K; ++j) {
        fc_real v = d[j] + (end ? end[j] : (fc_real)0);
        if (v > best) { best = v; bj = j; }
    }
    if (bj < 0) return -1;
    for (ptrdiff_t k = n - 1; k >= 0; --k) {
        path[pos[k]] = bj;
        if (k > 0) bj = bp[k * Kp + bj];
    }
    return 0;
}

#if FC_VECTOR_EXT
/* fc_crf_vit1_bp (below) for Kp = 2 FC_VLEN (K <= FC_CRF_WS) with the scores held in two
 * registers: each step is two chains of (max, argmax) over the predecessors i (even / odd
 * i, lowest first) merged so that the lowest index wins ties; the emission row is loaded
 * off the step-to-step chain.  Written out with named vectors so that nothing spills. */
FC_INLINE int FC_NAME(fc_crf_vit_reg2)(const fc_real *emb, const fc_real *TP, const fc_real *start,
                                       const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n, ptrdiff_t K,
                                       int32_t *bp, int64_t *path)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
    const ptrdiff_t Kp = 2 * FC_VLEN;
    const fc_real *e_end = emb + (pos[n - 1] + 1) * K;
    vi bmask;
    FC_NAME(fc_crf_bmask)(K, &bmask);
    const vi zi = {0};
    vr ninf;
    FC_SPLAT(ninf, -FC_INF);
    union { vr v[2]; fc_real s[2 * FC_VLEN]; } db; /* the scores, for the broadcasts */
    vr d[2], ev[2];
    FC_NAME(fc_crf_vrow)(emb + pos[0] * K, K, e_end, &bmask, d, 2);
    if (start != NULL) {
        FC_NAME(fc_crf_vrow)(start, K, start + K, &bmask, ev, 2);
        d[0] += ev[0];
        d[1] += ev[1];
    }
    vi one = zi + 1, two = zi + 2;
#define FC_VIT_TERM(i, idx, b0, b1, a0, a1)                                                \
    do {                                                                                   \
        const vr x_ = FC_BCAST(db.s[i]);                                                   \
        vr w0_, w1_;                                                                       \
        memcpy(&w0_, TP + (i) * Kp, sizeof w0_);                                           \
        memcpy(&w1_, TP + (i) * Kp + FC_VLEN, sizeof w1_);                                 \
        const vr s0_ = x_ + w0_, s1_ = x_ + w1_;                                           \
        const vi m0_ = s0_ > b0, m1_ = s1_ > b1;                                           \
        b0 = (vr)(((vi)s0_ & m0_) | ((vi)b0 & ~m0_));                                      \
        b1 = (vr)(((vi)s1_ & m1_) | ((vi)b1 & ~m1_));                                      \
        a0 = (idx & m0_) | (a0 & ~m0_);                                                    \
        a1 = (idx & m1_) | (a1 & ~m1_);                                                    \
    } while (0)
#define FC_VIT_MERGE(b, a, bo, ao)                                                         \
    do {                                                                                   \
        const vi t_ = (bo > b) | ((bo == b) & (ao < a));                                   \
        b = (vr)(((vi)bo & t_) | ((vi)b & ~t_));                                           \
        a = (ao & t_) | (a & ~t_);                                                         \
    } while (0)
    for (ptrdiff_t k = 1; k < n; ++k) {
        FC_NAME(fc_crf_vrow)(emb + pos[k] * K, K, e_end, &bmask, ev, 2);
        db.v[0] = d[0];
        db.v[1] = d[1];
        vr b00 = ninf, b01 = ninf, b10 = ninf, b11 = ninf; /* chain c, vector q: bcq */
        vi a00 = zi, a01 = zi, a10 = zi, a11 = zi, i0 = zi, i1 = one;
        ptrdiff_t i = 0;
        for (; i + 2 <= K; i += 2) {
            FC_VIT_TERM(i, i0, b00, b01, a00, a01);
            FC_VIT_TERM(i + 1, i1, b10, b11, a10, a11);
            i0 += two;
            i1 += two;
        }
        if (i < K) FC_VIT_TERM(i, i0, b00, b01, a00, a01);
        FC_VIT_MERGE(b00, a00, b10, a10);
        FC_VIT_MERGE(b01, a01, b11, a11);
        d[0] = b00 + ev[0];
        d[1] = b01 + ev[1];
        int32_t *arg = bp + k * Kp;
#if FC_REAL_DOUBLE
        for (int l = 0; l < (int)FC_VLEN; ++l) {
            arg[l] = (int32_t)a00[l];
            arg[FC_VLEN + l] = (int32_t)a01[l];
        }
#else
        memcpy(arg, &a00, sizeof a00);
        memcpy(arg + FC_VLEN, &a01, sizeof a01);
#endif
    }
#undef FC_VIT_TERM
#undef FC_VIT_MERGE
    db.v[0] = d[0];
    db.v[1] = d[1];
    return FC_NAME(fc_crf_vit_back)(db.s, end, pos, n, K, Kp, bp, path);
}
#endif

/* Top-1 Viterbi with backpointers (used for K <= FC_CRF_WS, where the argmax blend is
 * cheaper than the scalar argmax of the backtrack); path written at kept positions.
 * TP: (K, Kp) trans padded with -inf.  Returns 0, or -1 when no path is allowed. */
static FC_MULTIVERSION int FC_NAME(fc_crf_vit1_bp)(const fc_real *emb, const fc_real *TP, const fc_real *start,
                                                const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n,
                                                ptrdiff_t K, ptrdiff_t Kp, fc_real *d0, fc_real *d1,
                                                int32_t *bp, int64_t *path)
{
#if FC_VECTOR_EXT
    (void)d0; (void)d1;
    (void)Kp; /* = FC_CRF_WS = 2 FC_VLEN */
    return FC_NAME(fc_crf_vit_reg2)(emb, TP, start, end, pos, n, K, bp, path);
#else
    const fc_real *e = emb + pos[0] * K;
    for (ptrdiff_t j = 0; j < Kp; ++j) d0[j] = j < K ? e[j] + (start ? start[j] : (fc_real)0) : -FC_INF;
    for (ptrdiff_t k = 1; k < n; ++k) {
        e = emb + pos[k] * K;
        int32_t *arg = bp + k * Kp;
        FC_NAME(fc_crf_vstep_w)(d0, TP, K, Kp, d1, arg);
        for (ptrdiff_t j = 0; j < K; ++j) d1[j] += e[j];
        fc_real *t = d0; d0 = d1; d1 = t;
    }
    return FC_NAME(fc_crf_vit_back)(d0, end, pos, n, K, Kp, bp, path);
#endif
}

/* One Viterbi step without backpointers (K > FC_CRF_WS): d1[j] = max_i d0[i] + TP[i, j] for j < Kp, over
 * blocks of W columns with two chains (even / odd i).  A max is exact in any order and
 * compiles to a vector max (add + max per element); the argmax is recovered for the one
 * label on the path during the backtrack, from the same sums, so ties still go to the
 * lowest index. */
FC_INLINE void FC_NAME(fc_crf_vmax_w)(const fc_real *restrict d0, const fc_real *restrict TP, ptrdiff_t K,
                                      ptrdiff_t Kp, fc_real *restrict d1, const int W)
{
    for (ptrdiff_t jb = 0; jb < Kp; jb += W) {
        fc_real b0[2 * FC_CRF_WS], b1[2 * FC_CRF_WS];
        for (int w = 0; w < W; ++w) { b0[w] = -FC_INF; b1[w] = -FC_INF; }
        ptrdiff_t i = 0;
        for (; i + 1 < K; i += 2) {
            const fc_real v0 = d0[i], v1 = d0[i + 1];
            const fc_real *r0 = TP + i * Kp + jb, *r1 = r0 + Kp;
            for (int w = 0; w < W; ++w) {
                fc_real c0 = v0 + r0[w], c1 = v1 + r1[w];
                b0[w] = c0 > b0[w] ? c0 : b0[w];
                b1[w] = c1 > b1[w] ? c1 : b1[w];
            }
        }
        if (i < K) {
            const fc_real v0 = d0[i];
            const fc_real *r0 = TP + i * Kp + jb;
            for (int w = 0; w < W; ++w) {
                fc_real c0 = v0 + r0[w];
                b0[w] = c0 > b0[w] ? c0 : b0[w];
            }
        }
        for (int w = 0; w < W; ++w) d1[jb + w] = b1[w] > b0[w] ? b1[w] : b0[w];
    }
}

/* Top-1 Viterbi of one sequence for K > FC_CRF_WS (max-only steps, argmax recovered in
 * the backtrack); path written at kept positions (others untouched).
 * TP: (K, Kp) trans padded with -inf; D: (n, Kp) scores table.  Returns 0, or -1 when no
 * path is allowed. */
static FC_MULTIVERSION int FC_NAME(fc_crf_vit1)(const fc_real *emb, const fc_real *TP, const fc_real *start,
                                                const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n,
                                                ptrdiff_t K, ptrdiff_t Kp, fc_real *D, int64_t *path)
{
    const fc_real *e = emb + pos[0] * K;
    for (ptrdiff_t j = 0; j < Kp; ++j) D[j] = j < K ? e[j] + (start ? start[j] : (fc_real)0) : -FC_INF;
    for (ptrdiff_t k = 1; k < n; ++k) {
        e = emb + pos[k] * K;
        fc_real *d1 = D + k * Kp;
        FC_NAME(fc_crf_vmax_w)(d1 - Kp, TP, K, Kp, d1, 2 * FC_CRF_WS);
        for (ptrdiff_t j = 0; j < K; ++j) d1[j] += e[j];
    }
    const fc_real *dl = D + (n - 1) * Kp;
    fc_real best = -FC_INF;
    ptrdiff_t bj = -1;
    for (ptrdiff_t j = 0; j < K; ++j) {
        fc_real v = dl[j] + (end ? end[j] : (fc_real)0);
        if (v > best) { best = v; bj = j; }
    }
    if (bj < 0) return -1;
    for (ptrdiff_t k = n - 1; k >= 0; --k) {
        path[pos[k]] = bj;
        if (k == 0) break;
        /* the predecessor: lowest i reaching max_i D[k-1, i] + TP[i, bj] (the same sums
         * as the forward step, so the same maximum) */
        const fc_real *dp = D + (k - 1) * Kp;
        fc_real m = -FC_INF;
        ptrdiff_t arg = 0;
        for (ptrdiff_t i = 0; i < K; ++i) {
            fc_real c = dp[i] + TP[i * Kp + bj];
            if (c > m) { m = c; arg = i; }
        }
        bj = arg;
    }
    return 0;
}

typedef struct { double s; int32_t i, r; } FC_NAME(fc_nb_ent);

/* Insert (s, i, r) in the descending list L of length *cnt <= cap (ties keep the earlier entry first). */
FC_INLINE void FC_NAME(fc_nb_insert)(FC_NAME(fc_nb_ent) *L, ptrdiff_t *cnt, ptrdiff_t cap, double s,
                                     int32_t i, int32_t r)
{
    ptrdiff_t c = *cnt;
    if (c == cap && !(s > L[c - 1].s)) return;
    ptrdiff_t q = c < cap ? c : cap - 1;
    while (q > 0 && s > L[q - 1].s) { L[q] = L[q - 1]; --q; }
    L[q].s = s; L[q].i = i; L[q].r = r;
    if (c < cap) *cnt = c + 1;
}

/* Exact k-best (list Viterbi) of one sequence, in double.  bt: (n, K, k) entries;
 * cur/prv: (K, k) scores; cnt: (2, K).  Writes up to k paths. */
static int FC_NAME(fc_crf_vitk)(const fc_real *emb, const fc_real *trans, const fc_real *start,
                                const fc_real *end, const ptrdiff_t *pos, ptrdiff_t n, ptrdiff_t K,
                                ptrdiff_t k, FC_NAME(fc_nb_ent) *bt, ptrdiff_t *cnt, int64_t *paths,
                                ptrdiff_t Tn, FC_NAME(fc_nb_ent) *fin)
{
    ptrdiff_t *c0 = cnt, *c1 = cnt + K;
    const fc_real *e = emb + pos[0] * K;
    for (ptrdiff_t j = 0; j < K; ++j) {
        double s = (double)e[j] + (start ? (double)start[j] : 0.0);
        c0[j] = 0;
        if (s != -INFINITY) { bt[j * k].s = s; bt[j * k].i = -1; bt[j * k].r = -1; c0[j] = 1; }
    }
    for (ptrdiff_t t = 1; t < n; ++t) {
        e = emb + pos[t] * K;
        FC_NAME(fc_nb_ent) *P = bt + (t - 1) * K * k, *C = bt + t * K * k;
        for (ptrdiff_t j = 0; j < K; ++j) {
            ptrdiff_t cj = 0;
            FC_NAME(fc_nb_ent) *L = C + j * k;
            for (ptrdiff_t i = 0; i < K; ++i) {
                double tr = (double)trans[i * K + j];
                if (tr == -INFINITY) continue;
                for (ptrdiff_t r = 0; r < c0[i]; ++r) {
                    double s = P[i * k + r].s + tr;
                    if (cj == k && !(s > L[k - 1].s)) break;
                    FC_NAME(fc_nb_insert)(L, &cj, k, s, (int32_t)i, (int32_t)r);
                }
            }
            for (ptrdiff_t r = 0; r < cj; ++r) L[r].s += (double)e[j];
            c1[j] = e[j] == -FC_INF ? 0 : cj; /* (-inf unaries: MEMM potentials) */
        }
        ptrdiff_t *tmp = c0; c0 = c1; c1 = tmp;
    }
    ptrdiff_t cf = 0;
    FC_NAME(fc_nb_ent) *Lst = bt + (n - 1) * K * k;
    for (ptrdiff_t j = 0; j < K; ++j) {
        double en = end ? (double)end[j] : 0.0;
        if (en == -INFINITY) continue;
        for (ptrdiff_t r = 0; r < c0[j]; ++r) {
            double s = Lst[j * k + r].s + en;
            if (cf == k && !(s > fin[k - 1].s)) break;
            FC_NAME(fc_nb_insert)(fin, &cf, k, s, (int32_t)j, (int32_t)r);
        }
    }
    for (ptrdiff_t q = 0; q < cf; ++q) {
        int64_t *path = paths + q * Tn;
        int32_t j = fin[q].i, r = fin[q].r;
        for (ptrdiff_t t = n - 1; t >= 0; --t) {
            path[pos[t]] = j;
            const FC_NAME(fc_nb_ent) *en = bt + t * K * k + j * k + r;
            j = en->i; r = en->r;
        }
    }
    return (int)cf;
}

/* The shared state of fc_crf_viterbi's team (fc_team). */
typedef struct {
    const fc_real *em, *trans, *start, *end, *TP;
    const uint8_t *mask;
    int64_t *paths;
    double *scores;
    ptrdiff_t B, Tn, K, Kp, T1, top_k;
    int status;     /* FC_OMP_FAIL */
    ptrdiff_t next; /* work items claimed with fc_claim */
} FC_NAME(fc_crf_vit_job);

/* One thread of fc_crf_viterbi (all of them run this, see fc_team). */
static void FC_NAME(fc_crf_viterbi_team)(void *arg)
{
    FC_NAME(fc_crf_vit_job) *job = arg;
    const fc_real *em = job->em, *trans = job->trans, *start = job->start, *end = job->end, *TP = job->TP;
    const uint8_t *mask = job->mask;
    int64_t *paths = job->paths;
    double *scores = job->scores;
    const ptrdiff_t B = job->B, Tn = job->Tn, K = job->K, Kp = job->Kp, T1 = job->T1, top_k = job->top_k;
    ptrdiff_t *pos = malloc(sizeof(ptrdiff_t) * T1);
    const int use_bp = K <= FC_CRF_WS;
    fc_real *d = top_k == 1 ? malloc(sizeof(fc_real) * (use_bp ? 2 : T1) * Kp) : NULL;
    int32_t *bp = top_k == 1 && use_bp ? malloc(sizeof(int32_t) * T1 * Kp) : NULL;
    FC_NAME(fc_nb_ent) *bt = top_k > 1 ? malloc(sizeof(FC_NAME(fc_nb_ent)) * (T1 * K * top_k + top_k)) : NULL;
    ptrdiff_t *cnt = malloc(sizeof(ptrdiff_t) * 2 * K);
    int ok = pos && cnt && (top_k == 1 ? d != NULL && (bp != NULL || !use_bp) : bt != NULL);
    if (!ok) {
        FC_OMP_FAIL(job->status, FC_OUT_OF_MEMORY);
    }
    for (ptrdiff_t b; ok && !fc_interrupted() && (b = fc_claim(&job->next)) < B;) {
        const fc_real *emb = em + b * Tn * K;
        int64_t *pb = paths + b * top_k * Tn;
        double *sb = scores + b * top_k;
        for (ptrdiff_t q = 0; q < top_k * Tn; ++q) pb[q] = -1;
        ptrdiff_t n = FC_NAME(fc_crf_positions)(mask, b, Tn, pos);
        ptrdiff_t found;
        if (n == 0) {
            found = 1; /* the empty path */
        } else if (top_k == 1) {
            found = (use_bp ? FC_NAME(fc_crf_vit1_bp)(emb, TP, start, end, pos, n, K, Kp, d, d + Kp, bp, pb)
                            : FC_NAME(fc_crf_vit1)(emb, TP, start, end, pos, n, K, Kp, d, pb)) == 0;
        } else {
            found = FC_NAME(fc_crf_vitk)(emb, trans, start, end, pos, n, K, top_k, bt, cnt, pb, Tn,
                                         bt + T1 * K * top_k);
        }
        for (ptrdiff_t q = 0; q < top_k; ++q)
            sb[q] = q < found ? FC_NAME(fc_crf_path_score)(emb, trans, start, end, pos, n, pb + q * Tn, 1, K)
                              : -INFINITY;
    }
    free(pos); free(d); free(bp); free(bt); free(cnt);
}

int FC_NAME(fc_crf_viterbi)(const fc_real *em, const fc_real *trans, const fc_real *start, const fc_real *end,
                            const uint8_t *mask, ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K, ptrdiff_t top_k,
                            int64_t *paths, double *scores, int n_threads)
{
    if (B < 0 || Tn < 0 || K < 1 || top_k < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (B == 0) return FC_OK;
    if (em == NULL || trans == NULL || paths == NULL || scores == NULL) return FC_BAD_ARGUMENT;
    const ptrdiff_t Kp = FC_NAME(fc_crf_kp)(K);
    fc_real *TP = malloc(sizeof(fc_real) * K * Kp);
    if (TP == NULL) return FC_OUT_OF_MEMORY;
    for (ptrdiff_t i = 0; i < K; ++i)
        for (ptrdiff_t j = 0; j < Kp; ++j) TP[i * Kp + j] = j < K ? trans[i * K + j] : -FC_INF;
    FC_NAME(fc_crf_vit_job) job = {.em = em, .trans = trans, .start = start, .end = end, .TP = TP, .mask = mask,
                                   .paths = paths, .scores = scores, .B = B, .Tn = Tn, .K = K, .Kp = Kp,
                                   .T1 = Tn > 0 ? Tn : 1, .top_k = top_k, .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(fc_crf_threads(n_threads, B, B * Tn * top_k, K), FC_NAME(fc_crf_viterbi_team), &job);
    if (fc_interrupt_pending()) job.status = FC_INTERRUPTED; /* Ctrl-C */
    free(TP);
    return job.status;
}

/* ---------------------------------------------------------------- MEMM */
/* Teacher-forced log-likelihood of one direction of a MEMM.  Gp: (K+1, Kp) rows
 * indexed by the conditioning label (G for left-to-right, G^T for right-to-left),
 * row K all zeros (no conditioning label); padding columns are -inf.  r, ex: (Kp)
 * scratch.  Adds coef * d(-ll) to ge (T, K) and to gacc (K, Kp, rows by the
 * conditioning label) when ge != NULL.  The local normalisers are multiplied in
 * double and their log taken only when the product exceeds 1e150. */
static FC_MULTIVERSION double FC_NAME(fc_memm_dir)(const fc_real *emb, const fc_real *Gp, const ptrdiff_t *pos,
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
    FC_NAME(fc_vi) bmask;
    FC_NAME(fc_crf_bmask)(K, &bmask);
#endif
    for (ptrdiff_t q = 0; q < n; ++q) {
        ptrdiff_t k = reverse ? n - 1 - q : q;
        ptrdiff_t t = pos[k];
        const fc_real *e = emb + t * K;
        int64_t cond = q == 0 ? K : y[pos[reverse ? k + 1 : k - 1]];
        const fc_real *g = Gp + cond * Kp;
#if FC_VECTOR_EXT
        fc_real m = FC_NAME(fc_crf_row_load)(e, g, K, Kp, r, e_end, &bmask);
#else
        for (ptrdiff_t j = 0; j < K; ++j) r[j] = g[j] + e[j];
        fc_real m = FC_NAME(fc_crf_maxv)(r, Kp);
#endif
        if (m == -FC_INF) { dead = 1; continue; }
        /* padding lanes hold exp(-inf) <= 2^-149: never used, negligible in the sum (writing
         * exact zeros with scalar stores would stall the vector loads that follow) */
        for (ptrdiff_t j = 0; j < Kp; ++j) ex[j] = FC_EXP(r[j] - m);
        fc_real s = FC_NAME(fc_crf_sumv)(ex, Kp);
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
FC_INLINE void FC_NAME(fc_memm_vadd)(fc_real *p, FC_NAME(fc_vr) v)
{
    FC_NAME(fc_vr) w;
    memcpy(&w, p, sizeof w);
    w += v;
    memcpy(p, &w, sizeof w);
}

FC_INLINE void FC_NAME(fc_memm_flush_row)(fc_real *restrict f, double *restrict d, ptrdiff_t Kp)
{
    FC_NAME(fc_crf_add_row)(f, d, Kp);
    memset(f, 0, sizeof(fc_real) * Kp);
}

/* Every block row flushed, every count (cnt[0 .. 2K]) cleared. */
FC_INLINE void FC_NAME(fc_memm_flush_all)(fc_real *restrict facc, double *restrict gacc, int *cnt, ptrdiff_t K,
                                          ptrdiff_t Kp)
{
    /* the K label columns of each row (padding columns are never read), cleared
     * row by row (small stores: the token lanes flush every few groups, where one memset of
     * the whole block ran as a slow `rep stos`) */
    for (ptrdiff_t i = 0; i < 2 * K; ++i) {
        FC_NAME(fc_crf_add_row)(facc + i * Kp, gacc + i * Kp, K);
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
FC_INLINE void FC_NAME(fc_memm_tok)(const FC_NAME(fc_vr) *ev, const fc_real *gf, const fc_real *gb, fc_real ey,
                                    int64_t yk, const int NV, fc_real cf, fc_real cb, double *llf,
                                    double *prf, int *deadf, double *llb, double *prb, int *deadb,
                                    FC_NAME(fc_vr) *gout, fc_real *gaf, fc_real *gab)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
    fc_real m1 = FC_NAME(fc_crf_vhmax)(&mf, 1), m2 = -FC_INF;
    if (gb != NULL) {
        mb = lb[0];
        for (int q = 1; q < NV; ++q) { vi g = lb[q] > mb; mb = (vr)(((vi)lb[q] & g) | ((vi)mb & ~g)); }
        m2 = FC_NAME(fc_crf_vhmax)(&mb, 1);
    }
    const int okf = m1 != -FC_INF, okb = gb != NULL && m2 != -FC_INF;
    mf = z + (okf ? m1 : (fc_real)0);
    mb = z + (okb ? m2 : (fc_real)0);
    for (int q = 0; q < NV; ++q) {
        lf[q] -= mf;
        FC_NAME(fc_crf_vexp)(&lf[q], 1);
        sf += lf[q];
        if (gb != NULL) {
            lb[q] -= mb;
            FC_NAME(fc_crf_vexp)(&lb[q], 1);
            sb += lb[q];
        }
    }
    fc_real s1 = FC_NAME(fc_crf_vhsum)(&sf, 1), s2 = gb != NULL ? FC_NAME(fc_crf_vhsum)(&sb, 1) : (fc_real)1;
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
        if (gaf != NULL && okf) FC_NAME(fc_memm_vadd)(gaf + q * FC_VLEN, a);
        if (gab != NULL && okb) FC_NAME(fc_memm_vadd)(gab + q * FC_VLEN, b);
    }
}

/* The same token with one exp per label shared by both directions: with x = exp(e - e[yk])
 * and the tables EG[c, :] = exp(G[c, :] - rm[c]) (rm[c] = max of row c), the local
 * normaliser of a direction is sum_j x_j EG[c, j] times exp(e[yk] + rm[c]).  Returns -1,
 * having changed nothing, when a normaliser falls below FC_MEMM_TINY (a dead row, or
 * emission and transition maxima far apart) or some e_j - e[yk] > FC_MEMM_SHIFT: the
 * caller then does the token exactly. */
FC_INLINE int FC_NAME(fc_memm_tok_sh)(const FC_NAME(fc_vr) *ev, const fc_real *ef, const fc_real *eb,
                                      fc_real rf, fc_real rb, const fc_real *gf, const fc_real *gb, fc_real ey,
                                      int64_t yk, const int NV, fc_real cf, fc_real cb, double *llf,
                                      double *prf, double *llb, double *prb, FC_NAME(fc_vr) *gout,
                                      fc_real *gaf, fc_real *gab)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
        FC_NAME(fc_crf_vexp)(&x[q], 1);
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
    const fc_real s1 = FC_NAME(fc_crf_vhsum)(&sf, 1), s2 = gb != NULL ? FC_NAME(fc_crf_vhsum)(&sb, 1) : (fc_real)1;
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
            FC_NAME(fc_memm_vadd)(gaf + q * FC_VLEN, a);
            FC_NAME(fc_memm_vadd)(gab + q * FC_VLEN, b);
        }
        return 0;
    }
    for (int q = 0; q < NV; ++q) {
        const vi hot = lane + (q * (int)FC_VLEN) == yv;
        const vr a = pf[q] * af - (vr)(hot & cfv), b = pb[q] * ab - (vr)(hot & cbv);
        gout[q] = a + b;
        if (gaf != NULL) FC_NAME(fc_memm_vadd)(gaf + q * FC_VLEN, a);
        if (gab != NULL) FC_NAME(fc_memm_vadd)(gab + q * FC_VLEN, b);
    }
    return 0;
}

/* One kept position k (of n, at pos[k]) of fc_memm_seq_nv: the shared-exp token, or the exact
 * one when that fails or exact != 0; adds to the gradient rows (ge row fully written; with
 * safe == 0 whole-vector stores may run into the following rows, writing zeros there). */
FC_INLINE void FC_NAME(fc_memm_one)(const fc_real *emb, const fc_real *Gp, const fc_real *GTp, const ptrdiff_t *pos,
                                    ptrdiff_t k, ptrdiff_t n, ptrdiff_t Tn, const int64_t *y, ptrdiff_t K, int bidir,
                                    fc_real fc, fc_real *ge, double *gacc, fc_real *facc, int *cnt,
                                    const fc_real *EG, const fc_real *rm, const int NV, int exact, int safe,
                                    const FC_NAME(fc_vi) *bmask, double *llf, double *prf, int *deadf,
                                    double *llb, double *prb, int *deadb)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
    const ptrdiff_t Kp = NV * FC_VLEN, Kv = (K + FC_VLEN - 1) / FC_VLEN * FC_VLEN;
    const fc_real *e_end = emb + Tn * K;
    const ptrdiff_t t = pos[k];
    const fc_real *e = emb + t * K;
    vr ev[16], go[16];
    FC_NAME(fc_crf_vrow)(e, K, e_end, bmask, ev, NV);
    const int64_t yk = y[t];
    const int64_t cf = k == 0 ? K : y[pos[k - 1]];
    const int64_t cb = k == n - 1 ? K : y[pos[k + 1]];
    fc_real *gaf = gacc != NULL && cf < K ? facc + cf * Kp : NULL;
    fc_real *gab = gacc != NULL && bidir && cb < K ? facc + (K + cb) * Kp : NULL;
    const fc_real *gfr = Gp + cf * Kp, *gbr = bidir ? GTp + cb * Kp : NULL;
    if (exact || EG == NULL
        || FC_NAME(fc_memm_tok_sh)(ev, EG + cf * Kp, EG + (K + 1 + cb) * Kp, rm[cf], rm[K + 1 + cb], gfr, gbr,
                                   e[yk], yk, NV, fc, bidir ? fc : (fc_real)0, llf, prf, llb, prb,
                                   ge != NULL ? go : NULL, gaf, gab) != 0)
        FC_NAME(fc_memm_tok)(ev, gfr, gbr, e[yk], yk, NV, fc, bidir ? fc : (fc_real)0, llf, prf, deadf,
                             llb, prb, deadb, ge != NULL ? go : NULL, gaf, gab);
    if (*prf > 1e150 || *prf < 1e-150) { *llf -= log(*prf); *prf = 1.0; }
    if (*prb > 1e150 || *prb < 1e-150) { *llb -= log(*prb); *prb = 1.0; }
    if (gaf != NULL && ++cnt[cf] == FC_MEMM_FLUSH) {
        FC_NAME(fc_memm_flush_row)(gaf, gacc + cf * Kp, Kp);
        cnt[cf] = 0;
    }
    if (gab != NULL && ++cnt[K + cb] == FC_MEMM_FLUSH) {
        FC_NAME(fc_memm_flush_row)(gab, gacc + (K + cb) * Kp, Kp);
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
        FC_NAME(fc_crf_vstore_row)(gt, go, K, NV); /* exact width: nothing past the row */
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
FC_INLINE void FC_NAME(fc_memm_lookup)(const fc_real *tab, int nt, const int NT, const FC_NAME(fc_vi) *idxp,
                                       FC_NAME(fc_vr) *out)
{
    const FC_NAME(fc_vi) idx = *idxp;
#if defined(__clang__)
    /* Clang has no shuffle by run-time indices: the lanes are loaded from the table (a gather) */
    (void)nt;
    (void)NT;
    for (int l = 0; l < (int)FC_VLEN; ++l) (*out)[l] = tab[idx[l]];
#else
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
FC_INLINE void FC_NAME(fc_memm_transpose)(FC_NAME(fc_vr) *r)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
typedef double FC_NAME(fc_vdl) __attribute__((vector_size(8 * FC_VLEN))); /* FC_VLEN doubles */
typedef struct {
    FC_NAME(fc_vr) P;
    FC_NAME(fc_vi) E;
    FC_NAME(fc_vdl) Ed;
    int n; /* groups since the last fold */
} FC_NAME(fc_memm_lacc);

FC_INLINE void FC_NAME(fc_memm_lzero)(FC_NAME(fc_memm_lacc) *a)
{
    memset(a, 0, sizeof *a);
    a->P = FC_BCAST((fc_real)1);
}

/* Ed += E - n bias (the unbiased exponents of the last n groups), E = 0 */
FC_INLINE void FC_NAME(fc_memm_lfold)(FC_NAME(fc_memm_lacc) *a)
{
    a->Ed += __builtin_convertvector(a->E, FC_NAME(fc_vdl)) - (double)a->n * (FC_REAL_DOUBLE ? 1023.0 : 127.0);
    a->E = (FC_NAME(fc_vi)){0};
    a->n = 0;
}

/* Multiplies in s (lanes; 1 where unused; from about 1 to FC_MEMM_QMAX, see fc_memm_grp, so
 * P s is positive and normal). */
FC_INLINE void FC_NAME(fc_memm_lmul)(FC_NAME(fc_memm_lacc) *a, const FC_NAME(fc_vr) *s)
{
    typedef FC_NAME(fc_vi) vi;
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
    a->P = (FC_NAME(fc_vr))((bits & mant) | one);
    if (++a->n == FC_MEMM_LFOLD) FC_NAME(fc_memm_lfold)(a);
}

/* The log-likelihood: -log of the product of all lanes. */
FC_INLINE double FC_NAME(fc_memm_lsum)(FC_NAME(fc_memm_lacc) *a)
{
    FC_NAME(fc_memm_lfold)(a);
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
FC_INLINE void FC_NAME(fc_memm_lane_out)(fc_real *gt, fc_real *facc, const FC_NAME(fc_vr) *A,
                                         const FC_NAME(fc_vr) *Bv, int l, ptrdiff_t cf, ptrdiff_t cb,
                                         const ptrdiff_t K, const ptrdiff_t Kp, int bidir)
{
    const ptrdiff_t W = FC_VLEN, Kf = K / W * W;
    if (gt != NULL) {
        for (ptrdiff_t j0 = 0; j0 < Kf; j0 += W) {
            const FC_NAME(fc_vr) g = A[j0 + l] + Bv[j0 + l];
            memcpy(gt + j0, &g, sizeof g);
        }
        for (ptrdiff_t j = Kf; j < K; ++j) gt[j] = A[j][l] + Bv[j][l];
    }
    if (facc == NULL) return;
    if (cf < K) {
        fc_real *fa = facc + cf * Kp;
        for (ptrdiff_t j0 = 0; j0 < Kf; j0 += W) FC_NAME(fc_memm_vadd)(fa + j0, A[j0 + l]);
        for (ptrdiff_t j = Kf; j < K; ++j) fa[j] += A[j][l];
    }
    if (bidir && cb < K) {
        fc_real *fb = facc + (K + cb) * Kp;
        for (ptrdiff_t j0 = 0; j0 < Kf; j0 += W) FC_NAME(fc_memm_vadd)(fb + j0, Bv[j0 + l]);
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
FC_INLINE unsigned FC_NAME(fc_memm_grp)(const fc_real *emb, const ptrdiff_t *pos, ptrdiff_t k0, int nl,
                                        ptrdiff_t n, const int64_t *y, const ptrdiff_t K, const int bidir, fc_real fc,
                                        fc_real *ge, fc_real *facc, const fc_real *EGT,
                                        const int NV, FC_NAME(fc_memm_lacc) *af_,
                                        FC_NAME(fc_memm_lacc) *ab_)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
            FC_NAME(fc_memm_transpose)(xe + j0);
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
        FC_NAME(fc_crf_vexp)(&x, 0);
        vr tab;
        FC_NAME(fc_memm_lookup)(EGT + j * Cp, nt, NV + 1, &cfv, &tab);
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
            FC_NAME(fc_memm_lookup)(EGT + (K + j) * Cp, nt, NV + 1, &cbv, &tab);
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
        FC_NAME(fc_memm_lmul)(af_, &s1);
        if (bidir) {
            const vr s2 = (vr)(((vi)q2 & good) | ((vi)one & ~good));
            FC_NAME(fc_memm_lmul)(ab_, &s2);
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
        FC_NAME(fc_memm_transpose)(A + j0);
        if (bidir) FC_NAME(fc_memm_transpose)(Bv + j0);
    }
    /* lane by lane in a rolled loop: unrolled (rows in registers, constant offsets, the
     * emission-gradient rows summed first) it ran 9% slower at K = 9 with 17% fewer
     * instructions (float32, 1 thread) */
#pragma GCC unroll 1
    for (int l = 0; l < nl; ++l)
        if (!(bad >> l & 1u))
            FC_NAME(fc_memm_lane_out)(ge != NULL ? ge + tl[l] * K : NULL, facc, A, Bv, l, cfv[l], cbv[l],
                                      K, Kp, bidir);
    return bad;
}

/* Token-lane groups of one sequence from kept position k on, with K a compile-time constant
 * (loops unrolled, rows of whole vectors and a fixed tail), while a group fills more than a
 * third of the lanes; stops after a group with untrusted lanes.  Returns the kept position
 * reached; *bad: the untrusted lanes of the last group, which starts at *kg (0: none, the
 * caller goes on with single tokens from the position returned). */
FC_INLINE ptrdiff_t FC_NAME(fc_memm_lanes_k)(const fc_real *emb, const ptrdiff_t *pos, ptrdiff_t k, ptrdiff_t n,
                                             const int64_t *y, const ptrdiff_t K, const int bidir, fc_real fc,
                                             fc_real *ge, double *gacc, fc_real *facc, int *cnt,
                                             const fc_real *EGT, const int NV, FC_NAME(fc_memm_lacc) *af,
                                             FC_NAME(fc_memm_lacc) *ab, ptrdiff_t *kg, unsigned *bad)
{
    while (k < n) {
        /* a partial last group when it fills more than a third of the lanes */
        const int nl = n - k < FC_VLEN ? (int)(n - k) : (int)FC_VLEN;
        if (3 * nl <= (int)FC_VLEN) break;
        unsigned b = FC_NAME(fc_memm_grp)(emb, pos, k, nl, n, y, K, bidir, fc, ge, facc, EGT, NV, af, ab);
        if (facc != NULL && ++cnt[2 * K] == FC_MEMM_FLUSH / FC_VLEN)
            FC_NAME(fc_memm_flush_all)(facc, gacc, cnt, K, NV * FC_VLEN);
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

static FC_MULTIVERSION ptrdiff_t FC_NAME(fc_memm_lanes)(const fc_real *emb, const ptrdiff_t *pos, ptrdiff_t k,
                                                        ptrdiff_t n, const int64_t *y, ptrdiff_t K, int bidir,
                                                        fc_real fc, fc_real *ge, double *gacc, fc_real *facc,
                                                        int *cnt, const fc_real *EGT, FC_NAME(fc_memm_lacc) *af,
                                                        FC_NAME(fc_memm_lacc) *ab, ptrdiff_t *kg, unsigned *bad)
{
    /* K and the direction count as compile-time constants */
#define FC_MEMM_LANES_K(kc) \
    case kc: return bidir ? FC_NAME(fc_memm_lanes_k)(emb, pos, k, n, y, kc, 1, fc, ge, gacc, facc, cnt, EGT, \
                                                     (int)((kc + FC_VLEN - 1) / FC_VLEN), af, ab, kg, bad) \
                          : FC_NAME(fc_memm_lanes_k)(emb, pos, k, n, y, kc, 0, fc, ge, gacc, facc, cnt, EGT, \
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
FC_INLINE double FC_NAME(fc_memm_seq_nv)(const fc_real *emb, const fc_real *Gp, const fc_real *GTp,
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
    FC_NAME(fc_vi) bmask;
    FC_NAME(fc_crf_bmask)(K, &bmask);
    ptrdiff_t k = 0;
    if ((NV - 1) * FC_VLEN < FC_MEMM_LK && EGT != NULL && EG != NULL && K <= FC_MEMM_LK) {
        FC_NAME(fc_memm_lacc) af, ab;
        FC_NAME(fc_memm_lzero)(&af);
        FC_NAME(fc_memm_lzero)(&ab);
        for (;;) {
            ptrdiff_t kg = 0;
            unsigned bad = 0;
            k = FC_NAME(fc_memm_lanes)(emb, pos, k, n, y, K, bidir, fc, ge, gacc, facc, cnt, EGT, &af, &ab, &kg,
                                       &bad);
            if (bad == 0) break;
            for (int l = 0; bad != 0; ++l, bad >>= 1)
                if (bad & 1u)
                    FC_NAME(fc_memm_one)(emb, Gp, GTp, pos, kg + l, n, Tn, y, K, bidir, fc, ge, gacc, facc, cnt, EG,
                                         rm, NV, 1, 1, &bmask, &llf, &prf, &deadf, &llb, &prb, &deadb);
        }
        llf += FC_NAME(fc_memm_lsum)(&af);
        llb += FC_NAME(fc_memm_lsum)(&ab);
    }
    for (; k < n; ++k)
        FC_NAME(fc_memm_one)(emb, Gp, GTp, pos, k, n, Tn, y, K, bidir, fc, ge, gacc, facc, cnt, EG, rm, NV, 0, 0,
                             &bmask, &llf, &prf, &deadf, &llb, &prb, &deadb);
    llf -= log(prf);
    llb -= log(prb);
    llf = deadf ? -INFINITY : llf;
    if (!bidir) return llf;
    llb = deadb ? -INFINITY : llb;
    return 0.5 * (llf + llb);
}

static FC_MULTIVERSION double FC_NAME(fc_memm_seq)(const fc_real *emb, const fc_real *Gp, const fc_real *GTp,
                                                   const ptrdiff_t *pos, ptrdiff_t n, ptrdiff_t Tn,
                                                   const int64_t *y, ptrdiff_t K, ptrdiff_t Kp, int bidir,
                                                   double coef, fc_real *ge, double *gacc, fc_real *facc,
                                                   int *cnt, const fc_real *EG, const fc_real *rm,
                                                   const fc_real *EGT)
{
#define FC_MEMM_CASE(nv) \
    case nv: return FC_NAME(fc_memm_seq_nv)(emb, Gp, GTp, pos, n, Tn, y, K, bidir, coef, ge, gacc, facc, cnt, EG, rm, \
                                                EGT, nv)
    switch (Kp / FC_VLEN) {
    FC_MEMM_CASE(1); FC_MEMM_CASE(2); FC_MEMM_CASE(3); FC_MEMM_CASE(4); FC_MEMM_CASE(5);
    FC_MEMM_CASE(6); FC_MEMM_CASE(7); FC_MEMM_CASE(8); FC_MEMM_CASE(12);
    default:
        return FC_NAME(fc_memm_seq_nv)(emb, Gp, GTp, pos, n, Tn, y, K, bidir, coef, ge, gacc, facc, cnt, EG, rm, EGT,
                                       16);
    }
#undef FC_MEMM_CASE
}
#endif

#if FC_VECTOR_EXT
/* The exp tables of fc_memm_nll from G2 ((2 (K + 1), Kp) rows, -inf padded): EG rows
 * exp(row - rm) (0 in the padding and for an all -inf row), rm the row maxima, and when
 * EGT != NULL their transpose for the token lanes, EGT[(d K + j) Cp + c] = EG[(d (K + 1) + c) Kp + j]
 * for c <= K, 0 for K < c < Cp. */
static FC_MULTIVERSION void FC_NAME(fc_memm_tables)(const fc_real *G2, ptrdiff_t K, ptrdiff_t Kp, fc_real *EG,
                                                    fc_real *rm, fc_real *EGT, ptrdiff_t Cp)
{
    typedef FC_NAME(fc_vr) vr;
    typedef FC_NAME(fc_vi) vi;
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
        const fc_real m = FC_NAME(fc_crf_hmax)(&mv);
        rm[i] = m;
        if (m == -FC_INF) {
            memset(out, 0, sizeof(fc_real) * Kp);
            continue;
        }
        FC_SPLAT(mv, m);
        for (ptrdiff_t q = 0; q < Kp; q += FC_VLEN) {
            memcpy(&v, row + q, sizeof v);
            v -= mv; /* -inf padding: exp gives 0 */
            FC_NAME(fc_crf_vexp)(&v, 1);
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
FC_INLINE ptrdiff_t FC_NAME(fc_memm_stride)(ptrdiff_t K)
{
#if FC_VECTOR_EXT
    ptrdiff_t nv = (K + FC_VLEN - 1) / FC_VLEN;
    if (nv <= 8) return nv * FC_VLEN;
    nv = FC_NAME(fc_crf_kp)(K) / FC_VLEN;
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
} FC_NAME(fc_memm_job);

/* One rank of fc_memm_nll: chunks of sequences claimed one at a time (see fc_team). */
static void FC_NAME(fc_memm_nll_team)(void *arg)
{
    FC_NAME(fc_memm_job) *job = arg;
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
            ptrdiff_t n = FC_NAME(fc_crf_positions)(mask, b, Tn, pos);
            double wb = grad ? weight[b] : 0.0;
            double c = bidir ? 0.5 * wb : wb;
#if FC_VECTOR_EXT
            if (fused) {
                ll[b] = FC_NAME(fc_memm_seq)(emb, Gp, GTp, pos, n, Tn, yb, K, Kp, bidir, c, ge, cacc, facc,
                                             cnt, EG, rm, EGT);
                continue;
            }
#endif
            if (ge) memset(ge, 0, sizeof(fc_real) * Tn * K);
            double lf = FC_NAME(fc_memm_dir)(emb, Gp, pos, n, yb, K, Kp, 0, c, ge, cacc, r, r + Kp);
            if (bidir) {
                double lb = FC_NAME(fc_memm_dir)(emb, GTp, pos, n, yb, K, Kp, 1, c, ge,
                                                 cacc ? cacc + K * Kp : NULL, r, r + Kp);
                lf = 0.5 * (lf + lb);
            }
            ll[b] = lf;
        }
#if FC_VECTOR_EXT
        if (blk) /* the chunk's partial blocks: results do not depend on the thread count */
            FC_NAME(fc_memm_flush_all)(facc, cacc, cnt, K, Kp);
#endif
    }
    free(pos);
}

/* The transitions gradient once every chunk is done, in two teams: the chunks' rows summed in
 * chunk order into chunk 0's (whole rows, one rank each), then forward and backward parts
 * added; the same for any thread count. */
static void FC_NAME(fc_memm_sum_chunks_team)(void *arg)
{
    FC_NAME(fc_memm_job) *job = arg;
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

static void FC_NAME(fc_memm_gtrans_team)(void *arg)
{
    FC_NAME(fc_memm_job) *job = arg;
    const ptrdiff_t K = job->K, Kp = job->Kp;
    const double *chunk_acc = job->chunk_acc;
    ptrdiff_t lo, hi;
    fc_split(K, fc_thread_count(), fc_thread_id(), &lo, &hi);
    for (ptrdiff_t i = lo; i < hi; ++i)
        for (ptrdiff_t j = 0; j < K; ++j)
            job->g_trans[i * K + j] = (fc_real)(job->bidir ? chunk_acc[i * Kp + j] + chunk_acc[(K + j) * Kp + i]
                                                           : chunk_acc[i * Kp + j]);
}

int FC_NAME(fc_memm_nll)(const fc_real *em, const fc_real *trans, const uint8_t *mask, const int64_t *tags,
                         ptrdiff_t B, ptrdiff_t Tn, ptrdiff_t K, int bidir, const double *weight,
                         double *ll, fc_real *g_em, fc_real *g_trans, int n_threads)
{
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (em == NULL || trans == NULL || tags == NULL || ll == NULL) return FC_BAD_ARGUMENT;
    int grad = g_em != NULL || g_trans != NULL;
    if (grad && weight == NULL) return FC_BAD_ARGUMENT;
    const ptrdiff_t Ks = FC_NAME(fc_memm_stride)(K);
    const int fused = Ks > 0;
    const ptrdiff_t Kp = fused ? Ks : FC_NAME(fc_crf_kp)(K); /* row stride of G, G^T and the counts */
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
        FC_NAME(fc_memm_tables)(G2, K, Kp, EG, rm, EGT, Cp);
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
    FC_NAME(fc_memm_job) job = {
        .em = em, .Gp = Gp, .GTp = GTp, .EG = EG, .rm = rm, .EGT = EGT, .mask = mask, .tags = tags,
        .weight = weight, .ll = ll, .chunk_acc = chunk_acc, .g_em = g_em, .g_trans = g_trans, .B = B,
        .Tn = Tn, .K = K, .Kp = Kp, .T1 = T1, .nchunk = nchunk, .accn = accn, .bidir = bidir, .grad = grad,
        .fused = fused, .blk = blk, .status = FC_OK, .next = 0};
    fc_interrupt_begin();
    fc_team(nt, FC_NAME(fc_memm_nll_team), &job);
    if (fc_interrupt_pending()) job.status = FC_INTERRUPTED; /* Ctrl-C */
    if (job.status == FC_OK && g_trans != NULL && chunk_acc != NULL) {
        fc_team(fc_clamp_threads(nt, bidir ? 2 * K : K), FC_NAME(fc_memm_sum_chunks_team), &job);
        fc_team(fc_clamp_threads(nt, K), FC_NAME(fc_memm_gtrans_team), &job);
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
} FC_NAME(fc_memm_pot_job);

/* log-sum-exp of r[0..K) (r finite or -inf), exps written to ex. */
FC_INLINE double FC_NAME(fc_memm_lse)(const fc_real *r, fc_real *ex, ptrdiff_t K)
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
FC_INLINE double FC_NAME(fc_memm_max_d)(const fc_real *e, ptrdiff_t K)
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
static void FC_NAME(fc_memm_potentials_team)(void *arg)
{
    FC_NAME(fc_memm_pot_job) *job = arg;
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
        ptrdiff_t n = FC_NAME(fc_crf_positions)(mask, b, Tn, pos);
        for (ptrdiff_t k = 0; k < n; ++k) {
            const fc_real *e = emb + pos[k] * K;
            const double F = FC_NAME(fc_memm_max_d)(e, K);
            for (ptrdiff_t y = 0; y < K; ++y) {
                acc[y] = (double)e[y] - F;
                fs[y] = (fc_real)acc[y];
            }
            /* the first (forward) and last (backward) positions' own normalisers */
            double own = (k == 0 && wf != 0.0) || (k == n - 1 && wb != 0.0) ? FC_NAME(fc_memm_lse)(fs, ex, K) : 0.0;
            double wown = (k == 0 ? wf : 0.0) + (k == n - 1 ? wb : 0.0);
            for (ptrdiff_t y = 0; y < K; ++y) acc[y] -= wown * own;
            if (k < n - 1 && wf != 0.0) { /* L_{k+1}(y) = lse_c(G[y,c] + f_{k+1}(c) - F_{k+1}) */
                const fc_real *en = emb + pos[k + 1] * K;
                const double Fn = FC_NAME(fc_memm_max_d)(en, K);
                for (ptrdiff_t c = 0; c < K; ++c) fs[c] = (fc_real)((double)en[c] - Fn);
                for (ptrdiff_t y = 0; y < K; ++y) {
                    for (ptrdiff_t c = 0; c < K; ++c) r[c] = trans[y * K + c] + fs[c];
                    double l = FC_NAME(fc_memm_lse)(r, ex, K);
                    acc[y] = l == -INFINITY ? -INFINITY : acc[y] - wf * l;
                }
            }
            if (k > 0 && wb != 0.0) { /* M_{k-1}(y) = lse_a(G[a,y] + f_{k-1}(a) - F_{k-1}) */
                const fc_real *ep = emb + pos[k - 1] * K;
                const double Fp = FC_NAME(fc_memm_max_d)(ep, K);
                for (ptrdiff_t a = 0; a < K; ++a) fs[a] = (fc_real)((double)ep[a] - Fp);
                for (ptrdiff_t y = 0; y < K; ++y) {
                    for (ptrdiff_t a = 0; a < K; ++a) r[a] = trans[a * K + y] + fs[a];
                    double l = FC_NAME(fc_memm_lse)(r, ex, K);
                    acc[y] = l == -INFINITY ? -INFINITY : acc[y] - wb * l;
                }
            }
            for (ptrdiff_t y = 0; y < K; ++y) ob[pos[k] * K + y] = (fc_real)acc[y];
        }
    }
    free(pos); free(acc); free(r);
}

int FC_NAME(fc_memm_potentials)(const fc_real *em, const fc_real *trans, const uint8_t *mask, ptrdiff_t B,
                                ptrdiff_t Tn, ptrdiff_t K, double wf, double wb, fc_real *out, int n_threads)
{
    if (B < 0 || Tn < 0 || K < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (em == NULL || trans == NULL || out == NULL) return FC_BAD_ARGUMENT;
    FC_NAME(fc_memm_pot_job) job = {.em = em, .trans = trans, .mask = mask, .out = out, .wf = wf, .wb = wb,
                                    .B = B, .Tn = Tn, .K = K, .T1 = Tn > 0 ? Tn : 1, .status = FC_OK};
    fc_team(fc_crf_threads(n_threads, B, B * Tn, K), FC_NAME(fc_memm_potentials_team), &job);
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
