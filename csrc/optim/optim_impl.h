/* Global norms and fused clip + SGD / Adam(W) steps, instantiated once per
 * precision by optim_f32.c / optim_f64.c (see fc_real.h and optim.h).  No include guard on purpose.
 *
 * Each chunk kernel is FC_INLINE and called with constant flags from an
 * FC_MULTIVERSION item loop, so every flag combination is compiled branch-free
 * and vectorised for the machine's instruction set.
 */
#ifndef FC_OPT_LANES
#define FC_OPT_LANES 16
#endif

/* ------------------------------------------------------------------ reductions */
FC_INLINE double fc_opt_sumsq(const fc_real *x, ptrdiff_t n, double s)
{
    double lane[FC_OPT_LANES];
    for (int j = 0; j < FC_OPT_LANES; ++j) lane[j] = 0.0;
    ptrdiff_t nb = n - n % FC_OPT_LANES, i = 0;
    for (; i < nb; i += FC_OPT_LANES)
        for (int j = 0; j < FC_OPT_LANES; ++j) {
            double v = (double)x[i + j] * s;
            lane[j] += v * v;
        }
    double acc = 0.0;
    for (; i < n; ++i) {
        double v = (double)x[i] * s;
        acc += v * v;
    }
    for (int j = 0; j < FC_OPT_LANES; ++j) acc += lane[j];
    return acc;
}

/* The same sum over four interleaved quarters of the run: four read streams keep more
 * cache-line requests in flight than one (measured: ~13 -> ~24 GB/s on one Zen 4 core). */
FC_INLINE double fc_opt_sumsq4(const fc_real *x, ptrdiff_t n, double s)
{
    ptrdiff_t q = n / (4 * FC_OPT_LANES) * FC_OPT_LANES;
    if (q == 0) return fc_opt_sumsq(x, n, s);
    double a[FC_OPT_LANES], b[FC_OPT_LANES], c[FC_OPT_LANES], d[FC_OPT_LANES];
    for (int j = 0; j < FC_OPT_LANES; ++j) a[j] = b[j] = c[j] = d[j] = 0.0;
    const fc_real *x1 = x + q, *x2 = x + 2 * q, *x3 = x + 3 * q;
    for (ptrdiff_t i = 0; i < q; i += FC_OPT_LANES)
        for (int j = 0; j < FC_OPT_LANES; ++j) {
            double u = (double)x[i + j] * s, v = (double)x1[i + j] * s;
            double w = (double)x2[i + j] * s, z = (double)x3[i + j] * s;
            a[j] += u * u;
            b[j] += v * v;
            c[j] += w * w;
            d[j] += z * z;
        }
    double acc = fc_opt_sumsq(x + 4 * q, n - 4 * q, s);
    for (int j = 0; j < FC_OPT_LANES; ++j) acc += (a[j] + b[j]) + (c[j] + d[j]);
    return acc;
}

FC_INLINE double fc_opt_sumabs(const fc_real *x, ptrdiff_t n, double s)
{
    double lane[FC_OPT_LANES];
    for (int j = 0; j < FC_OPT_LANES; ++j) lane[j] = 0.0;
    ptrdiff_t nb = n - n % FC_OPT_LANES, i = 0;
    for (; i < nb; i += FC_OPT_LANES)
        for (int j = 0; j < FC_OPT_LANES; ++j) lane[j] += fabs((double)x[i + j] * s);
    double acc = 0.0;
    for (; i < n; ++i) acc += fabs((double)x[i] * s);
    for (int j = 0; j < FC_OPT_LANES; ++j) acc += lane[j];
    return acc;
}

static double fc_opt_sumpow(const fc_real *x, ptrdiff_t n, double s, double p)
{
    double acc = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) acc += pow(fabs((double)x[i] * s), p);
    return acc;
}

/* The arguments of the item passes (reduce, SGD, Adam) for fc_parallel_range; the fields a
 * pass does not use stay NULL / 0. */
typedef struct {
    fc_real *const *p, *const *buf, *const *m, *const *v, *const *vmax;
    const fc_real *const *g;
    const ptrdiff_t *sizes;
    const fc_worklist *wl;
    ptrdiff_t n_arrays;
    const double *c_p, *c_s;
    double *partial;
    double pw, scale, lr, decay, momentum, buf_keep, buf_new, beta1, beta2, step_size, bc2_sqrt, eps;
    int kind, nesterov;
} fc_opt_job;

/* max |x|, NaN as soon as one element is NaN */
FC_INLINE double fc_opt_maxabs(const fc_real *x, ptrdiff_t n)
{
    fc_real lane[FC_OPT_LANES];
    for (int j = 0; j < FC_OPT_LANES; ++j) lane[j] = (fc_real)0;
    ptrdiff_t nb = n - n % FC_OPT_LANES, i = 0;
    for (; i < nb; i += FC_OPT_LANES)
        for (int j = 0; j < FC_OPT_LANES; ++j) {
            fc_real a = FC_FABS(x[i + j]);
            lane[j] = (a > lane[j] || a != a) ? a : lane[j];
        }
    fc_real m = (fc_real)0;
    for (; i < n; ++i) {
        fc_real a = FC_FABS(x[i]);
        m = (a > m || a != a) ? a : m;
    }
    for (int j = 0; j < FC_OPT_LANES; ++j) m = (lane[j] > m || lane[j] != lane[j]) ? lane[j] : m;
    return (double)m;
}

static FC_MULTIVERSION void fc_opt_reduce_items(const fc_real *const *x,
                                                         const ptrdiff_t *sizes,
                                                         const ptrdiff_t *first, ptrdiff_t k,
                                                         ptrdiff_t lo, ptrdiff_t hi, int kind,
                                                         double p, double scale, double *partial)
{
    for (ptrdiff_t t = lo; t < hi; ++t) {
        while (t >= first[k + 1]) ++k;
        ptrdiff_t off = (t - first[k]) * FC_OPT_CHUNK;
        ptrdiff_t len = sizes[k] - off < FC_OPT_CHUNK ? sizes[k] - off : FC_OPT_CHUNK;
        const fc_real *xs = x[k] + off;
        double r;
        if (kind == FC_RED_SUMSQ) r = fc_opt_sumsq4(xs, len, scale);
        else if (kind == FC_RED_SUMABS) r = fc_opt_sumabs(xs, len, scale);
        else if (kind == FC_RED_SUMPOW) r = fc_opt_sumpow(xs, len, scale, p);
        else r = fc_opt_maxabs(xs, len);
        partial[t] = r;
    }
}

static void fc_opt_reduce_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_opt_job *j = arg;
    fc_opt_reduce_items(j->g, j->sizes, j->wl->first, fc_worklist_find(j->wl, j->n_arrays, lo), lo, hi,
                                 j->kind, j->pw, j->scale, j->partial);
}

int FC_NAME(fc_reduce)(const fc_arrays *a, int kind, double p, double scale, double *out)
{
    const fc_real *const *x = (const fc_real *const *)a->x;
    const ptrdiff_t *sizes = a->sizes;
    const ptrdiff_t n_arrays = a->n_arrays;
    const int n_threads = a->n_threads;
    if (n_threads < 1 || kind < FC_RED_SUMSQ || kind > FC_RED_MAXABS) return FC_BAD_ARGUMENT;
    if (n_arrays > 0 && (x == NULL || out == NULL)) return FC_BAD_ARGUMENT;
    if (kind == FC_RED_SUMPOW && !(p > 0.0)) return FC_BAD_ARGUMENT;
    fc_worklist wl;
    int st = fc_worklist_make(&wl, sizes, n_arrays, (const void *const *)x);
    if (st != FC_OK) return st;
    double *partial = (double *)malloc((size_t)(wl.n_items > 0 ? wl.n_items : 1) * sizeof(double));
    if (partial == NULL) {
        fc_worklist_free(&wl);
        return FC_OUT_OF_MEMORY;
    }
    if (wl.n_items > 0) {
        fc_opt_job job = {.g = x, .sizes = sizes, .wl = &wl, .n_arrays = n_arrays, .kind = kind,
                                   .pw = p, .scale = scale, .partial = partial};
        fc_parallel_range(fc_worklist_threads(&wl, n_threads), wl.n_items, fc_opt_reduce_range, &job);
    }
    for (ptrdiff_t k = 0; k < n_arrays; ++k) {
        double r = 0.0;
        for (ptrdiff_t t = wl.first[k]; t < wl.first[k + 1]; ++t) {
            if (kind == FC_RED_MAXABS) r = (partial[t] > r || partial[t] != partial[t]) ? partial[t] : r;
            else r += partial[t];
        }
        out[k] = r;
    }
    free(partial);
    fc_worklist_free(&wl);
    return FC_OK;
}

/* p-th root of a sum of p-th powers */
static double fc_opt_root(double s, double p)
{
    if (p == 2.0) return sqrt(s);
    if (p == 1.0) return s;
    return pow(s, 1.0 / p);
}

int FC_NAME(fc_global_norm)(const fc_arrays *a, double p, double *norm)
{
    const ptrdiff_t n_arrays = a->n_arrays;
    if (norm == NULL || !(p > 0.0) || n_arrays < 0) return FC_BAD_ARGUMENT;
    double *per = (double *)malloc((size_t)(n_arrays > 0 ? n_arrays : 1) * sizeof(double));
    if (per == NULL) return FC_OUT_OF_MEMORY;
    int st;
    double m = 0.0;
    if (isinf(p)) {
        st = FC_NAME(fc_reduce)(a, FC_RED_MAXABS, p, 1.0, per);
        if (st == FC_OK) {
            for (ptrdiff_t k = 0; k < n_arrays; ++k) m = (per[k] > m || per[k] != per[k]) ? per[k] : m;
            *norm = m;
        }
        free(per);
        return st;
    }
    int kind = p == 2.0 ? FC_RED_SUMSQ : (p == 1.0 ? FC_RED_SUMABS : FC_RED_SUMPOW);
    st = FC_NAME(fc_reduce)(a, kind, p, 1.0, per);
    double s = 0.0;
    for (ptrdiff_t k = 0; st == FC_OK && k < n_arrays; ++k) s += per[k];
    if (st != FC_OK) {
        /* nothing */
    } else if (s != s) {
        *norm = (double)NAN;
    } else if (isfinite(s) && s >= DBL_MIN / DBL_EPSILON) {
        *norm = fc_opt_root(s, p);
    } else {
        /* the sum overflowed, or may have underflowed: rescale by a power of two */
        st = FC_NAME(fc_reduce)(a, FC_RED_MAXABS, p, 1.0, per);
        for (ptrdiff_t k = 0; st == FC_OK && k < n_arrays; ++k)
            m = (per[k] > m || per[k] != per[k]) ? per[k] : m;
        if (st != FC_OK) {
            /* nothing */
        } else if (m == 0.0 || !isfinite(m)) {
            *norm = m; /* 0, +inf or NaN */
        } else {
            int e = ilogb(m);
            e = e < -1000 ? -1000 : (e > 1000 ? 1000 : e);
            st = FC_NAME(fc_reduce)(a, kind, p, ldexp(1.0, -e), per);
            s = 0.0;
            for (ptrdiff_t k = 0; st == FC_OK && k < n_arrays; ++k) s += per[k];
            if (st == FC_OK) *norm = ldexp(fc_opt_root(s, p), e);
        }
    }
    free(per);
    return st;
}

int FC_NAME(fc_array_norms)(const fc_arrays *a, double *l2, double *l1)
{
    const ptrdiff_t n_arrays = a->n_arrays;
    if (l2 == NULL && n_arrays > 0) return FC_BAD_ARGUMENT;
    int st = FC_NAME(fc_reduce)(a, FC_RED_SUMSQ, 2.0, 1.0, l2);
    if (st != FC_OK) return st;
    for (ptrdiff_t k = 0; k < n_arrays; ++k) {
        double s = l2[k];
        if (s != s) l2[k] = (double)NAN;
        else if (isfinite(s) && s >= DBL_MIN / DBL_EPSILON) l2[k] = sqrt(s);
        else {
            fc_arrays one = *a; /* array k alone */
            one.n_arrays = 1;
            one.x = a->x + k;
            one.sizes = a->sizes + k;
            st = FC_NAME(fc_global_norm)(&one, 2.0, l2 + k);
            if (st != FC_OK) return st;
        }
    }
    if (l1 != NULL) st = FC_NAME(fc_reduce)(a, FC_RED_SUMABS, 1.0, 1.0, l1);
    return st;
}

/* ------------------------------------------------------------------ updates */
FC_INLINE fc_real fc_opt_sign(fc_real v)
{
    return (fc_real)((v > (fc_real)0) - (v < (fc_real)0));
}

FC_INLINE void fc_sgd_chunk(fc_real *restrict p, const fc_real *restrict g,
                                     fc_real *restrict b, ptrdiff_t n, fc_real sc, fc_real cp,
                                     fc_real cs, fc_real lr, fc_real decay, fc_real keep,
                                     fc_real newc, fc_real cn, fc_real cb, const int has_mom,
                                     const int has_sign)
{
    for (ptrdiff_t i = 0; i < n; ++i) {
        fc_real pi = p[i];
        fc_real d = g[i] * sc + cp * pi;
        if (has_sign) d += cs * fc_opt_sign(pi);
        pi = pi * decay;
        if (has_mom) {
            fc_real bi = keep * b[i] + newc * d;
            b[i] = bi;
            d = cn * d + cb * bi;
        }
        p[i] = pi - lr * d;
    }
}

static FC_MULTIVERSION void fc_sgd_items(fc_real *const *p, const fc_real *const *g,
                                                  fc_real *const *buf, const ptrdiff_t *sizes,
                                                  const ptrdiff_t *first, ptrdiff_t k,
                                                  ptrdiff_t lo, ptrdiff_t hi, const double *c_p,
                                                  const double *c_s, double scale, double lr,
                                                  double decay, double momentum, double buf_keep,
                                                  double buf_new, int nesterov)
{
    const fc_real sc = (fc_real)scale, lr_ = (fc_real)lr, dec = (fc_real)decay;
    const fc_real keep = (fc_real)buf_keep, newc = (fc_real)buf_new;
    const fc_real cn = nesterov ? (fc_real)1 : (fc_real)0;
    const fc_real cb = nesterov ? (fc_real)momentum : (fc_real)1;
    for (ptrdiff_t t = lo; t < hi; ++t) {
        while (t >= first[k + 1]) ++k;
        ptrdiff_t off = (t - first[k]) * FC_OPT_CHUNK;
        ptrdiff_t len = sizes[k] - off < FC_OPT_CHUNK ? sizes[k] - off : FC_OPT_CHUNK;
        fc_real cp = c_p ? (fc_real)c_p[k] : (fc_real)0;
        fc_real cs = c_s ? (fc_real)c_s[k] : (fc_real)0;
        fc_real *pk = p[k] + off;
        const fc_real *gk = g[k] + off;
        fc_real *bk = buf ? buf[k] + off : NULL;
        if (buf != NULL && c_s != NULL)
            fc_sgd_chunk(pk, gk, bk, len, sc, cp, cs, lr_, dec, keep, newc, cn, cb, 1, 1);
        else if (buf != NULL)
            fc_sgd_chunk(pk, gk, bk, len, sc, cp, cs, lr_, dec, keep, newc, cn, cb, 1, 0);
        else if (c_s != NULL)
            fc_sgd_chunk(pk, gk, bk, len, sc, cp, cs, lr_, dec, keep, newc, cn, cb, 0, 1);
        else
            fc_sgd_chunk(pk, gk, bk, len, sc, cp, cs, lr_, dec, keep, newc, cn, cb, 0, 0);
    }
}

static void fc_sgd_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_opt_job *j = arg;
    fc_sgd_items(j->p, j->g, j->buf, j->sizes, j->wl->first, fc_worklist_find(j->wl, j->n_arrays, lo), lo,
                          hi, j->c_p, j->c_s, j->scale, j->lr, j->decay, j->momentum, j->buf_keep, j->buf_new,
                          j->nesterov);
}

int FC_NAME(fc_sgd_step)(const fc_sgd_request *r)
{
    fc_real *const *p = (fc_real *const *)r->p;
    const fc_real *const *g = (const fc_real *const *)r->g;
    fc_real *const *buf = (fc_real *const *)r->buf;
    const ptrdiff_t *sizes = r->sizes;
    const ptrdiff_t n_arrays = r->n_arrays;
    const double *c_p = r->c_p, *c_s = r->c_s;
    const double scale = r->scale, lr = r->lr, decay = r->decay, momentum = r->momentum;
    const double buf_keep = r->buf_keep, buf_new = r->buf_new;
    const int nesterov = r->nesterov, n_threads = r->n_threads;
    if (n_threads < 1 || (n_arrays > 0 && (p == NULL || g == NULL))) return FC_BAD_ARGUMENT;
    fc_worklist wl;
    int st = fc_worklist_make(&wl, sizes, n_arrays, (const void *const *)p);
    if (st != FC_OK) return st;
    for (ptrdiff_t k = 0; k < n_arrays; ++k)
        if (sizes[k] > 0 && (g[k] == NULL || (buf != NULL && buf[k] == NULL))) st = FC_BAD_ARGUMENT;
    if (st == FC_OK && wl.n_items > 0) {
        fc_opt_job job = {.p = p, .g = g, .buf = buf, .sizes = sizes, .wl = &wl, .n_arrays = n_arrays,
                                   .c_p = c_p, .c_s = c_s, .scale = scale, .lr = lr, .decay = decay,
                                   .momentum = momentum, .buf_keep = buf_keep, .buf_new = buf_new,
                                   .nesterov = nesterov};
        fc_parallel_range(fc_worklist_threads(&wl, n_threads), wl.n_items, fc_sgd_range, &job);
    }
    fc_worklist_free(&wl);
    return st;
}

FC_INLINE void fc_adam_chunk(fc_real *restrict p, const fc_real *restrict g,
                                      fc_real *restrict m, fc_real *restrict v,
                                      fc_real *restrict vm, ptrdiff_t n, fc_real sc, fc_real cp,
                                      fc_real cs, fc_real decay, fc_real w, int lerp_hi,
                                      fc_real b2, fc_real omb2, fc_real step_size, fc_real bc2s,
                                      fc_real eps, const int ams, const int has_sign)
{
    const fc_real omw = (fc_real)1 - w;
    for (ptrdiff_t i = 0; i < n; ++i) {
        fc_real pi = p[i];
        fc_real d = g[i] * sc + cp * pi;
        if (has_sign) d += cs * fc_opt_sign(pi);
        pi = pi * decay;
        fc_real mi = m[i];
        mi = lerp_hi ? d - (d - mi) * omw : mi + w * (d - mi); /* torch.lerp */
        m[i] = mi;
        fc_real vi = b2 * v[i] + omb2 * d * d;
        v[i] = vi;
        if (ams) {
            fc_real x = vm[i];
            vi = vi > x ? vi : x;
            vm[i] = vi;
        }
        fc_real denom = FC_SQRT(vi) / bc2s + eps;
        p[i] = pi - step_size * (mi / denom);
    }
}

static FC_MULTIVERSION void fc_adam_items(fc_real *const *p, const fc_real *const *g,
                                                   fc_real *const *m, fc_real *const *v,
                                                   fc_real *const *vmax, const ptrdiff_t *sizes,
                                                   const ptrdiff_t *first, ptrdiff_t k,
                                                   ptrdiff_t lo, ptrdiff_t hi, const double *c_p,
                                                   const double *c_s, double scale, double decay,
                                                   double beta1, double beta2, double step_size,
                                                   double bc2_sqrt, double eps)
{
    const fc_real sc = (fc_real)scale, dec = (fc_real)decay, w = (fc_real)(1.0 - beta1);
    const int lerp_hi = !(w < (fc_real)0.5);
    const fc_real b2 = (fc_real)beta2, omb2 = (fc_real)(1.0 - beta2);
    const fc_real ss = (fc_real)step_size, bc2s = (fc_real)bc2_sqrt, ep = (fc_real)eps;
    for (ptrdiff_t t = lo; t < hi; ++t) {
        while (t >= first[k + 1]) ++k;
        ptrdiff_t off = (t - first[k]) * FC_OPT_CHUNK;
        ptrdiff_t len = sizes[k] - off < FC_OPT_CHUNK ? sizes[k] - off : FC_OPT_CHUNK;
        fc_real cp = c_p ? (fc_real)c_p[k] : (fc_real)0;
        fc_real cs = c_s ? (fc_real)c_s[k] : (fc_real)0;
        fc_real *pk = p[k] + off, *mk = m[k] + off, *vk = v[k] + off;
        fc_real *vmk = vmax ? vmax[k] + off : NULL;
        const fc_real *gk = g[k] + off;
        if (vmax != NULL && c_s != NULL)
            fc_adam_chunk(pk, gk, mk, vk, vmk, len, sc, cp, cs, dec, w, lerp_hi, b2, omb2, ss, bc2s, ep, 1, 1);
        else if (vmax != NULL)
            fc_adam_chunk(pk, gk, mk, vk, vmk, len, sc, cp, cs, dec, w, lerp_hi, b2, omb2, ss, bc2s, ep, 1, 0);
        else if (c_s != NULL)
            fc_adam_chunk(pk, gk, mk, vk, vmk, len, sc, cp, cs, dec, w, lerp_hi, b2, omb2, ss, bc2s, ep, 0, 1);
        else
            fc_adam_chunk(pk, gk, mk, vk, vmk, len, sc, cp, cs, dec, w, lerp_hi, b2, omb2, ss, bc2s, ep, 0, 0);
    }
}

static void fc_adam_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_opt_job *j = arg;
    fc_adam_items(j->p, j->g, j->m, j->v, j->vmax, j->sizes, j->wl->first,
                           fc_worklist_find(j->wl, j->n_arrays, lo), lo, hi, j->c_p, j->c_s, j->scale, j->decay,
                           j->beta1, j->beta2, j->step_size, j->bc2_sqrt, j->eps);
}

int FC_NAME(fc_adam_step)(const fc_adam_request *r)
{
    fc_real *const *p = (fc_real *const *)r->p;
    const fc_real *const *g = (const fc_real *const *)r->g;
    fc_real *const *m = (fc_real *const *)r->m;
    fc_real *const *v = (fc_real *const *)r->v;
    fc_real *const *vmax = (fc_real *const *)r->vmax;
    const ptrdiff_t *sizes = r->sizes;
    const ptrdiff_t n_arrays = r->n_arrays;
    const double *c_p = r->c_p, *c_s = r->c_s;
    const double scale = r->scale, decay = r->decay, beta1 = r->beta1, beta2 = r->beta2;
    const double step_size = r->step_size, bc2_sqrt = r->bc2_sqrt, eps = r->eps;
    const int n_threads = r->n_threads;
    if (n_threads < 1 || (n_arrays > 0 && (p == NULL || g == NULL || m == NULL || v == NULL)))
        return FC_BAD_ARGUMENT;
    fc_worklist wl;
    int st = fc_worklist_make(&wl, sizes, n_arrays, (const void *const *)p);
    if (st != FC_OK) return st;
    for (ptrdiff_t k = 0; k < n_arrays; ++k)
        if (sizes[k] > 0 && (g[k] == NULL || m[k] == NULL || v[k] == NULL ||
                             (vmax != NULL && vmax[k] == NULL)))
            st = FC_BAD_ARGUMENT;
    if (st == FC_OK && wl.n_items > 0) {
        fc_opt_job job = {.p = p, .g = g, .m = m, .v = v, .vmax = vmax, .sizes = sizes, .wl = &wl,
                                   .n_arrays = n_arrays, .c_p = c_p, .c_s = c_s, .scale = scale, .decay = decay,
                                   .beta1 = beta1, .beta2 = beta2, .step_size = step_size, .bc2_sqrt = bc2_sqrt,
                                   .eps = eps};
        fc_parallel_range(fc_worklist_threads(&wl, n_threads), wl.n_items, fc_adam_range, &job);
    }
    fc_worklist_free(&wl);
    return st;
}
