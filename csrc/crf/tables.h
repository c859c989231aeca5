/* CRF / MEMM: the per-call tables (exp of the transitions), the per-thread workspace, the
 * kept positions of a sequence and the score of a given path.  Instantiated once per precision
 * (crf_unit.h): no include guard on purpose. */

#define FC_CRF_CHUNK 8 /* sequences per gradient accumulator: fixed, so results do not depend on threads */

/* Shared, read-only tables built once per call. */
typedef struct {
    ptrdiff_t K, Kp, Tn, Kr;            /* Kr: K rounded up to a multiple of 4 (<= Kp) */
    const fc_real *trans, *start, *end; /* user arrays (start/end may be NULL) */
    fc_real *E;    /* (Kr, Kp) exp(trans - tmax), 0 for -inf, padding and rows >= K */
    fc_real *ET;   /* (Kr, Kp) its transpose */
    fc_real *S, *N; /* (Kp) exp(start - smax), exp(end - nmax) */
    double tmax, smax, nmax;
} fc_crf_tab;

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
} fc_crf_ws;

static void fc_crf_ws_free(fc_crf_ws *w)
{
    free(w->pos); free(w->A); free(w->P); free(w->c); free(w->b0); free(w->b1); free(w->w); free(w->eb); free(w->q);
    free(w->la); free(w->lb0); free(w->lb1); free(w->scr); free(w->acc);
}

static int fc_crf_ws_alloc(fc_crf_ws *w, ptrdiff_t Tn, ptrdiff_t K, ptrdiff_t Kp)
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
        fc_crf_ws_free(w);
        return FC_OUT_OF_MEMORY;
    }
    return FC_OK;
}

/* exp(v - max) over the finite entries of v (K), into out (Kp, zero padded); returns max
 * (0 when v is NULL: all ones; -inf when every entry is -inf). */
static FC_MULTIVERSION double fc_crf_expvec(const fc_real *v, fc_real *out, ptrdiff_t K, ptrdiff_t Kp)
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

static void fc_crf_tab_free(fc_crf_tab *t)
{
    free(t->E); free(t->ET); free(t->S); free(t->N);
}

static FC_MULTIVERSION int fc_crf_tab_init(fc_crf_tab *t, const fc_real *trans, const fc_real *start,
                                    const fc_real *end, ptrdiff_t Tn, ptrdiff_t K)
{
    ptrdiff_t Kp = fc_crf_kp(K);
    memset(t, 0, sizeof(*t));
    const ptrdiff_t Kr = (K + 3) / 4 * 4;
    t->K = K; t->Kp = Kp; t->Tn = Tn; t->Kr = Kr; t->trans = trans; t->start = start; t->end = end;
    t->E = calloc((size_t)(Kr * Kp), sizeof(fc_real)); /* rows K .. Kr stay 0 */
    t->ET = calloc((size_t)(Kr * Kp), sizeof(fc_real));
    t->S = malloc(sizeof(fc_real) * Kp);
    t->N = malloc(sizeof(fc_real) * Kp);
    if (!t->E || !t->ET || !t->S || !t->N) {
        fc_crf_tab_free(t);
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
    t->smax = fc_crf_expvec(start, t->S, K, Kp);
    t->nmax = fc_crf_expvec(end, t->N, K, Kp);
    return FC_OK;
}

/* Kept positions of sequence b; returns their number. */
FC_INLINE ptrdiff_t fc_crf_positions(const uint8_t *mask, ptrdiff_t b, ptrdiff_t Tn, ptrdiff_t *pos)
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
static double fc_crf_path_score(const fc_real *emb, const fc_real *trans, const fc_real *start,
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
