/* Batch normalisation, instantiated once per precision by norm_f32.c / norm_f64.c (see norm.h).
 * No include guard on purpose.
 *
 * Work items: in the (N, C) layout (L == 1) a block of FC_BN_BLOCK channels, the
 * vector lanes running across the channels of a row; otherwise one channel, the
 * lanes running along its contiguous L values.  Threads take contiguous runs of
 * items; every per-channel sum is computed by one thread in a fixed order, so the
 * results do not depend on n_threads.
 */
#ifndef FC_BN_LANES
#define FC_BN_LANES 8
#endif

/* sum over a contiguous run, in double, over FC_BN_LANES partial sums: of (x - mu)^k
 * (k = 1 or 2) or, when dy != NULL, of dy (into *s1) and dy * (x - mu) (into *s2). */
FC_INLINE void fc_bn_run(const fc_real *x, const fc_real *dy, ptrdiff_t n, double mu,
                                  int square, double *s1, double *s2)
{
    double a[FC_BN_LANES], b[FC_BN_LANES];
    for (int j = 0; j < FC_BN_LANES; ++j) a[j] = b[j] = 0.0;
    ptrdiff_t nb = n - n % FC_BN_LANES, i = 0;
    if (dy != NULL) {
        for (; i < nb; i += FC_BN_LANES)
            for (int j = 0; j < FC_BN_LANES; ++j) {
                double d = (double)dy[i + j];
                a[j] += d;
                b[j] += d * ((double)x[i + j] - mu);
            }
        for (; i < n; ++i) {
            double d = (double)dy[i];
            a[0] += d;
            b[0] += d * ((double)x[i] - mu);
        }
    } else if (square) {
        for (; i < nb; i += FC_BN_LANES)
            for (int j = 0; j < FC_BN_LANES; ++j) {
                double d = (double)x[i + j] - mu;
                a[j] += d * d;
            }
        for (; i < n; ++i) {
            double d = (double)x[i] - mu;
            a[0] += d * d;
        }
    } else {
        for (; i < nb; i += FC_BN_LANES)
            for (int j = 0; j < FC_BN_LANES; ++j) a[j] += (double)x[i + j];
        for (; i < n; ++i) a[0] += (double)x[i];
    }
    double sa = 0.0, sb = 0.0;
    for (int j = 0; j < FC_BN_LANES; ++j) {
        sa += a[j];
        sb += b[j];
    }
    *s1 += sa;
    if (s2 != NULL) *s2 += sb;
}

/* Channel sums for channels [c0, c1): pass 0: s1 = sum x; pass 1: s1 = sum (x - mu)^2;
 * pass 2: s1 = sum dy, s2 = sum dy (x - mu).  mu, s1, s2 indexed by channel. */
static FC_MULTIVERSION void fc_bn_sums(const fc_real *x, const fc_real *dy, ptrdiff_t N,
                                                ptrdiff_t C, ptrdiff_t L, ptrdiff_t c0,
                                                ptrdiff_t c1, int pass, const double *mu,
                                                double *s1, double *s2)
{
    if (L == 1) {
        double a[FC_BN_BLOCK], b[FC_BN_BLOCK], m[FC_BN_BLOCK];
        ptrdiff_t w = c1 - c0;
        for (ptrdiff_t j = 0; j < w; ++j) {
            a[j] = b[j] = 0.0;
            m[j] = mu ? mu[c0 + j] : 0.0;
        }
        for (ptrdiff_t n = 0; n < N; ++n) {
            const fc_real *xr = x + n * C + c0;
            if (pass == 0) {
                for (ptrdiff_t j = 0; j < w; ++j) a[j] += (double)xr[j];
            } else if (pass == 1) {
                for (ptrdiff_t j = 0; j < w; ++j) {
                    double d = (double)xr[j] - m[j];
                    a[j] += d * d;
                }
            } else {
                const fc_real *dr = dy + n * C + c0;
                for (ptrdiff_t j = 0; j < w; ++j) {
                    double d = (double)dr[j];
                    a[j] += d;
                    b[j] += d * ((double)xr[j] - m[j]);
                }
            }
        }
        for (ptrdiff_t j = 0; j < w; ++j) {
            s1[c0 + j] = a[j];
            if (s2 != NULL) s2[c0 + j] = b[j];
        }
        return;
    }
    for (ptrdiff_t c = c0; c < c1; ++c) {
        double a = 0.0, b = 0.0, m = mu ? mu[c] : 0.0;
        for (ptrdiff_t n = 0; n < N; ++n) {
            const fc_real *xr = x + (n * C + c) * L;
            fc_bn_run(xr, pass == 2 ? dy + (n * C + c) * L : NULL, L, m, pass == 1, &a,
                               pass == 2 ? &b : NULL);
        }
        s1[c] = a;
        if (s2 != NULL) s2[c] = b;
    }
}

/* out = (x - mu) * a + b  (forward: a = gamma*invstd, b = beta;
 * backward dx with in = dy:  out = in * a0 + (x - mu) * a + b, see below) */
static FC_MULTIVERSION void fc_bn_apply(const fc_real *x, const fc_real *in, fc_real *out,
                                                 ptrdiff_t N, ptrdiff_t C, ptrdiff_t L,
                                                 ptrdiff_t c0, ptrdiff_t c1, const fc_real *mu,
                                                 const fc_real *a0, const fc_real *a,
                                                 const fc_real *b)
{
    /* out = (in ? in*a0 : 0) + (x - mu)*a + b, per channel coefficients */
    for (ptrdiff_t n = 0; n < N; ++n) {
        if (L == 1) {
            const fc_real *xr = x + n * C;
            fc_real *orow = out + n * C;
            if (in != NULL) {
                const fc_real *ir = in + n * C;
                for (ptrdiff_t c = c0; c < c1; ++c) orow[c] = ir[c] * a0[c] + (xr[c] - mu[c]) * a[c] + b[c];
            } else {
                for (ptrdiff_t c = c0; c < c1; ++c) orow[c] = (xr[c] - mu[c]) * a[c] + b[c];
            }
        } else {
            for (ptrdiff_t c = c0; c < c1; ++c) {
                const fc_real *xr = x + (n * C + c) * L;
                fc_real *orow = out + (n * C + c) * L;
                const fc_real m = mu[c], ac = a[c], bc = b[c];
                if (in != NULL) {
                    const fc_real *ir = in + (n * C + c) * L;
                    const fc_real a0c = a0[c];
                    for (ptrdiff_t l = 0; l < L; ++l) orow[l] = ir[l] * a0c + (xr[l] - m) * ac + bc;
                } else {
                    for (ptrdiff_t l = 0; l < L; ++l) orow[l] = (xr[l] - m) * ac + bc;
                }
            }
        }
    }
}

/* One pass over the channels: fc_bn_sums (pass >= 0) or fc_bn_apply (pass < 0) with these
 * arguments, for fc_parallel_range over the items. */
typedef struct {
    const fc_real *x, *dy, *in, *mu, *a0, *a, *b;
    fc_real *out;
    const double *mud;
    double *s1, *s2;
    ptrdiff_t N, C, L, per;
    int pass;
} fc_bn_job;

static void fc_bn_call(const fc_bn_job *j, ptrdiff_t c0, ptrdiff_t c1)
{
    if (j->pass >= 0)
        fc_bn_sums(j->x, j->dy, j->N, j->C, j->L, c0, c1, j->pass, j->mud, j->s1, j->s2);
    else
        fc_bn_apply(j->x, j->in, j->out, j->N, j->C, j->L, c0, c1, j->mu, j->a0, j->a, j->b);
}

/* items [lo, hi): channel blocks of FC_BN_BLOCK when L == 1 (one call each), single channels
 * otherwise (one call for the run) */
static void fc_bn_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_bn_job *j = arg;
    ptrdiff_t c0 = lo * j->per, c1 = hi * j->per < j->C ? hi * j->per : j->C;
    if (j->L != 1) {
        fc_bn_call(j, c0, c1);
        return;
    }
    for (ptrdiff_t b0 = c0; b0 < c1; b0 += FC_BN_BLOCK)
        fc_bn_call(j, b0, b0 + FC_BN_BLOCK < c1 ? b0 + FC_BN_BLOCK : c1);
}

/* Runs the pass in *job over all channels, split into items across the threads. */
static void fc_bn_items(fc_bn_job *job, int n_threads)
{
    job->per = job->L == 1 ? FC_BN_BLOCK : 1;
    ptrdiff_t items = (job->C + job->per - 1) / job->per;
    fc_parallel_range(fc_clamp_threads(n_threads, job->N * job->C * job->L / 32768 + 1), items,
                      fc_bn_range, job);
}

int FC_NAME(fc_bn_forward)(const fc_bn_problem *pr, void *y_)
{
    const fc_real *x = (const fc_real *)pr->x;
    fc_real *y = (fc_real *)y_;
    const ptrdiff_t N = pr->N, C = pr->C, L = pr->L;
    const fc_real *gamma = (const fc_real *)pr->gamma, *beta = (const fc_real *)pr->beta;
    fc_real *running_mean = (fc_real *)pr->running_mean, *running_var = (fc_real *)pr->running_var;
    const int training = pr->training;
    const double momentum = pr->momentum, eps = pr->eps;
    fc_real *save_mean = (fc_real *)pr->save_mean, *save_invstd = (fc_real *)pr->save_invstd;
    const int n_threads = pr->n_threads;
    if (N < 0 || C < 0 || L < 0 || n_threads < 1 || !(eps >= 0.0)) return FC_BAD_ARGUMENT;
    if (C == 0) return FC_OK;
    if (save_mean == NULL || save_invstd == NULL) return FC_BAD_ARGUMENT;
    ptrdiff_t M = N * L;
    if (training && M < 2) return FC_BAD_ARGUMENT;
    if (!training && (running_mean == NULL || running_var == NULL)) return FC_BAD_ARGUMENT;
    if (M > 0 && (x == NULL || y == NULL)) return FC_BAD_ARGUMENT;
    /* workspace: mean, sums (double), then mu, a, b (fc_real) */
    double *dw = (double *)malloc((size_t)C * 2 * sizeof(double));
    fc_real *rw = (fc_real *)malloc((size_t)C * 3 * sizeof(fc_real));
    if (dw == NULL || rw == NULL) {
        free(dw);
        free(rw);
        return FC_OUT_OF_MEMORY;
    }
    double *mean = dw, *ss = dw + C;
    fc_real *mu = rw, *a = rw + C, *b = rw + 2 * C;
    if (training) {
        fc_bn_job p0 = {.x = x, .N = N, .C = C, .L = L, .pass = 0, .s1 = mean};
        fc_bn_items(&p0, n_threads);
        for (ptrdiff_t c = 0; c < C; ++c) mean[c] /= (double)M;
        fc_bn_job p1 = {.x = x, .N = N, .C = C, .L = L, .pass = 1, .mud = mean, .s1 = ss};
        fc_bn_items(&p1, n_threads);
        for (ptrdiff_t c = 0; c < C; ++c) {
            double var = ss[c] / (double)M;
            double inv = 1.0 / sqrt(var + eps);
            save_mean[c] = (fc_real)mean[c];
            save_invstd[c] = (fc_real)inv;
            if (running_mean != NULL)
                running_mean[c] = (fc_real)((1.0 - momentum) * (double)running_mean[c] + momentum * mean[c]);
            if (running_var != NULL)
                running_var[c] = (fc_real)((1.0 - momentum) * (double)running_var[c] +
                                           momentum * (ss[c] / (double)(M - 1)));
        }
    } else {
        for (ptrdiff_t c = 0; c < C; ++c) {
            save_mean[c] = running_mean[c];
            save_invstd[c] = (fc_real)(1.0 / sqrt((double)running_var[c] + eps));
        }
    }
    for (ptrdiff_t c = 0; c < C; ++c) {
        mu[c] = save_mean[c];
        a[c] = save_invstd[c] * (gamma ? gamma[c] : (fc_real)1);
        b[c] = beta ? beta[c] : (fc_real)0;
    }
    if (M > 0) {
        fc_bn_job fw = {.x = x, .out = y, .N = N, .C = C, .L = L, .pass = -1, .mu = mu, .a = a, .b = b};
        fc_bn_items(&fw, n_threads);
    }
    free(dw);
    free(rw);
    return FC_OK;
}

int FC_NAME(fc_bn_backward)(const fc_bn_problem *pr, const void *dy_, void *dx_, void *dgamma_,
                            void *dbeta_)
{
    const fc_real *dy = (const fc_real *)dy_, *x = (const fc_real *)pr->x;
    const ptrdiff_t N = pr->N, C = pr->C, L = pr->L;
    const fc_real *gamma = (const fc_real *)pr->gamma;
    const fc_real *save_mean = (const fc_real *)pr->save_mean, *save_invstd = (const fc_real *)pr->save_invstd;
    const int training = pr->training;
    fc_real *dx = (fc_real *)dx_, *dgamma = (fc_real *)dgamma_, *dbeta = (fc_real *)dbeta_;
    const int n_threads = pr->n_threads;
    if (N < 0 || C < 0 || L < 0 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (C == 0) return FC_OK;
    if (save_mean == NULL || save_invstd == NULL) return FC_BAD_ARGUMENT;
    ptrdiff_t M = N * L;
    if (M > 0 && (x == NULL || dy == NULL || dx == NULL)) return FC_BAD_ARGUMENT;
    double *dw = (double *)malloc((size_t)C * 3 * sizeof(double));
    fc_real *rw = (fc_real *)malloc((size_t)C * 4 * sizeof(fc_real));
    if (dw == NULL || rw == NULL) {
        free(dw);
        free(rw);
        return FC_OUT_OF_MEMORY;
    }
    double *mud = dw, *sdy = dw + C, *sdyx = dw + 2 * C;
    fc_real *mu = rw, *a0 = rw + C, *a = rw + 2 * C, *b = rw + 3 * C;
    for (ptrdiff_t c = 0; c < C; ++c) {
        mud[c] = (double)save_mean[c];
        sdy[c] = sdyx[c] = 0.0;
    }
    if (M > 0) {
        fc_bn_job bs = {.x = x, .dy = dy, .N = N, .C = C, .L = L, .pass = 2, .mud = mud, .s1 = sdy,
                                 .s2 = sdyx};
        fc_bn_items(&bs, n_threads);
    }
    for (ptrdiff_t c = 0; c < C; ++c) {
        double inv = (double)save_invstd[c];
        double g = gamma ? (double)gamma[c] : 1.0;
        double dg = sdyx[c] * inv; /* sum dy * xhat */
        if (dgamma != NULL) dgamma[c] = (fc_real)dg;
        if (dbeta != NULL) dbeta[c] = (fc_real)sdy[c];
        mu[c] = save_mean[c];
        a0[c] = (fc_real)(g * inv);
        if (training && M > 0) {
            /* dx = g*inv*dy - g*inv*sdy/M - (x - mu) * g*inv^2*dg/M */
            a[c] = (fc_real)(-g * inv * inv * dg / (double)M);
            b[c] = (fc_real)(-g * inv * sdy[c] / (double)M);
        } else {
            a[c] = (fc_real)0;
            b[c] = (fc_real)0;
        }
    }
    if (M > 0) {
        fc_bn_job bw = {.x = x, .in = dy, .out = dx, .N = N, .C = C, .L = L, .pass = -1, .mu = mu,
                                 .a0 = a0, .a = a, .b = b};
        fc_bn_items(&bw, n_threads);
    }
    free(dw);
    free(rw);
    return FC_OK;
}
