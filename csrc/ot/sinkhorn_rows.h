/* Sinkhorn: the shared row kernels (log-sum-exp rows, K-vector products), the threaded sweeps
 * over M and the exact column log-sum-exp.  Instantiated once per precision by sinkhorn_f32.c /
 * sinkhorn_f64.c (see fc_real.h and sinkhorn.h): no include guard on purpose.
 *
 * Only M, K and the plan are fc_real; potentials, weights and every sum are
 * double.  Reductions run over FC_SK_LANES independent partial results so the
 * compiler vectorises them without reassociating floating-point sums.
 */

#undef FC_SK_RMIN
#undef FC_SK_ROWEXP
#if FC_REAL_DOUBLE
#define FC_SK_RMIN DBL_MIN
#define FC_SK_ROWEXP fc_sk_exp
#else
#define FC_SK_RMIN FLT_MIN
#define FC_SK_ROWEXP fc_sk_exp9 /* see sinkhorn_unit.h */
#endif

/* ------------------------------------------------------------------ row kernels */

/* Log-domain row update.  Returns alpha_i = log a_i - lse_j(beta_j - M_ij/reg) and
 * adds the updated plan row P_ij = exp(alpha_i + beta_j - M_ij/reg) to colpart. */
FC_INLINE double fc_sk_maxl(const double *restrict x, ptrdiff_t m)
{
    double lane[FC_SK_LANES];
    for (int l = 0; l < FC_SK_LANES; ++l) lane[l] = -INFINITY;
    ptrdiff_t mb = m - m % FC_SK_LANES, j = 0;
    for (; j < mb; j += FC_SK_LANES)
        for (int l = 0; l < FC_SK_LANES; ++l) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    double mx = -INFINITY;
    for (; j < m; ++j) mx = x[j] > mx ? x[j] : mx;
    for (int l = 0; l < FC_SK_LANES; ++l) mx = lane[l] > mx ? lane[l] : mx;
    return mx;
}

FC_INLINE double fc_sk_suml(const double *restrict x, ptrdiff_t m)
{
    double lane[FC_SK_LANES];
    for (int l = 0; l < FC_SK_LANES; ++l) lane[l] = 0.0;
    ptrdiff_t mb = m - m % FC_SK_LANES, j = 0;
    for (; j < mb; j += FC_SK_LANES)
        for (int l = 0; l < FC_SK_LANES; ++l) lane[l] += x[j + l];
    double s = 0.0;
    for (; j < m; ++j) s += x[j];
    for (int l = 0; l < FC_SK_LANES; ++l) s += lane[l];
    return s;
}

/* Log-domain row update.  Returns alpha_i = log a_i - lse_j(beta_j - M_ij/reg) and adds
 * the updated plan row P_ij = exp(alpha_i + beta_j - M_ij/reg) to colpart.
 * The exponentials are shifted by c = log a_i - alpha_i of the previous iteration
 * (the previous row log-sum-exp): one pass, no max.  If the sum then leaves
 * [1e-30, 1e30] (far from convergence), the row is redone shifted by its maximum. */
FC_INLINE double fc_sk_logrow(const fc_real *restrict Mi, const double *restrict beta,
                                       ptrdiff_t m, double inv_reg, double log_a, double a_i,
                                       double alpha_old, double omega, double *restrict tbuf,
                                       double *w_out, double *roworr)
{
    *roworr = 0.0;
    *w_out = 0.0;
    if (!(a_i > 0.0)) { /* no mass on this row: nothing to add */
        memset(tbuf, 0, (size_t)m * sizeof(double));
        return -INFINITY;
    }
    double c = log_a - alpha_old; /* the previous row log-sum-exp */
    double s = 0.0;
    if (c > -INFINITY && c < INFINITY) {
        FC_SK_SIMD_SUM(s)
        for (ptrdiff_t j = 0; j < m; ++j) {
            double e = FC_SK_ROWEXP(beta[j] - (double)Mi[j] * inv_reg - c);
            tbuf[j] = e;
            s += e;
        }
    }
    if (!(s >= 1e-30 && s <= 1e30)) {
        for (ptrdiff_t j = 0; j < m; ++j) tbuf[j] = beta[j] - (double)Mi[j] * inv_reg;
        c = fc_sk_maxl(tbuf, m);
        if (!(c > -INFINITY)) { /* cannot happen when b has mass */
            memset(tbuf, 0, (size_t)m * sizeof(double));
            return -INFINITY;
        }
        for (ptrdiff_t j = 0; j < m; ++j) tbuf[j] = FC_SK_ROWEXP(tbuf[j] - c);
        s = fc_sk_suml(tbuf, m); /* >= 1: the largest term is exp(0) */
    }
    double alpha_new = log_a - c - log(s);
    double w = a_i / s;
    if (omega != 1.0 && alpha_old > -INFINITY && alpha_old < INFINITY) {
        /* over-relaxation: alpha_old + omega (alpha_new - alpha_old); the row sums are
         * then a_i exp(d) instead of a_i */
        double d = (omega - 1.0) * (alpha_new - alpha_old);
        double ed = exp(d);
        alpha_new += d;
        w *= ed;
        *roworr = a_i * (ed - 1.0);
    }
    *w_out = w; /* the plan row is tbuf * w */
    return alpha_new;
}

/* Scaling rows i .. i + 3: r_q = K_q . v in double (v is loaded once for the four rows). */
FC_INLINE void fc_sk_kdot4(const fc_real *const *Kq, const double *restrict v, ptrdiff_t m,
                                    double *r)
{
    const fc_real *restrict K0 = Kq[0], *restrict K1 = Kq[1], *restrict K2 = Kq[2],
                            *restrict K3 = Kq[3];
    double t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    FC_SK_SIMD_SUM4(t0, t1, t2, t3)
    for (ptrdiff_t j = 0; j < m; ++j) {
        double vj = v[j];
        t0 += (double)K0[j] * vj;
        t1 += (double)K1[j] * vj;
        t2 += (double)K2[j] * vj;
        t3 += (double)K3[j] * vj;
    }
    r[0] = t0; r[1] = t1; r[2] = t2; r[3] = t3;
}

/* Scaling rows i .. i + 7: r_q = K_q . v in double (v is loaded once for the eight rows;
 * eight independent accumulators keep both FMA pipes busy). */
FC_INLINE void fc_sk_kdot8(const fc_real *const *Kq, const double *restrict v, ptrdiff_t m,
                                    double *r)
{
    const fc_real *restrict K0 = Kq[0], *restrict K1 = Kq[1], *restrict K2 = Kq[2],
                            *restrict K3 = Kq[3], *restrict K4 = Kq[4], *restrict K5 = Kq[5],
                            *restrict K6 = Kq[6], *restrict K7 = Kq[7];
    double t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0, t4 = 0.0, t5 = 0.0, t6 = 0.0, t7 = 0.0;
    FC_SK_SIMD_SUM8(t0, t1, t2, t3, t4, t5, t6, t7)
    for (ptrdiff_t j = 0; j < m; ++j) {
        double vj = v[j];
        t0 += (double)K0[j] * vj;
        t1 += (double)K1[j] * vj;
        t2 += (double)K2[j] * vj;
        t3 += (double)K3[j] * vj;
        t4 += (double)K4[j] * vj;
        t5 += (double)K5[j] * vj;
        t6 += (double)K6[j] * vj;
        t7 += (double)K7[j] * vj;
    }
    r[0] = t0; r[1] = t1; r[2] = t2; r[3] = t3;
    r[4] = t4; r[5] = t5; r[6] = t6; r[7] = t7;
}

static FC_MULTIVERSION void fc_sk_logblock(const fc_real *M, ptrdiff_t m, ptrdiff_t k,
                                                    ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1,
                                                    const ptrdiff_t *act, ptrdiff_t nact,
                                                    const double *beta, const double *inv_reg,
                                                    const double *omega, const double *la,
                                                    const double *a, double *alpha, double *tbuf,
                                                    double *part, double *rowerr)
{
    /* four rows at a time: their plan rows are added to the column sums in one sweep
     * (a short last group adds exact zeros) */
    for (ptrdiff_t q = 0; q < nact; ++q) memset(part + act[q] * m, 0, (size_t)m * sizeof(double));
    for (ptrdiff_t i = r0; i < r1; i += 4) {
        int g = r1 - i < 4 ? (int)(r1 - i) : 4;
        for (ptrdiff_t q = 0; q < nact; ++q) {
            ptrdiff_t h = act[q];
            double w[4] = {0.0, 0.0, 0.0, 0.0};
            for (int t = 0; t < g; ++t) {
                double *ai = alpha + h * n + i + t;
                *ai = fc_sk_logrow(M + (i + t) * m, beta + h * m, m, inv_reg[h], la[i + t],
                                            a[i + t], *ai, omega[h], tbuf + t * m, &w[t],
                                            rowerr + h * n + i + t);
            }
            const double *restrict A = tbuf, *restrict B = g > 1 ? tbuf + m : tbuf,
                                   *restrict C = g > 2 ? tbuf + 2 * m : tbuf,
                                   *restrict D = g > 3 ? tbuf + 3 * m : tbuf;
            double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
            double *restrict cp = part + h * m;
            for (ptrdiff_t j = 0; j < m; ++j) cp[j] += A[j] * w0 + B[j] * w1 + C[j] * w2 + D[j] * w3;
        }
    }
}

/* Scaling pass over rows [r0, r1), FC_SK_KG rows at a time (v and the column sums are
 * loaded once per group, while the group's rows of K stay in cache between the two
 * sweeps; a short last group repeats its first row with u = 0, which adds exact
 * zeros): u_i = a_i / (K_i . v) (kept as given when update == 0) and part += K_i u_i.
 * r == 0 gives u = inf: a breakdown the caller detects.  Groups of 8 for double (it
 * then reads K at ~24 GB/s, near the DRAM limit), of 4 for float, where converting K
 * to double twice per entry is the limit and 8 rows measured no faster. */
#undef FC_SK_KG
#if FC_REAL_DOUBLE
#define FC_SK_KG 8
#else
#define FC_SK_KG 4
#endif
static FC_MULTIVERSION void fc_sk_kblock(const fc_real *K, ptrdiff_t m, ptrdiff_t k,
                                                  ptrdiff_t n, ptrdiff_t r0, ptrdiff_t r1,
                                                  const ptrdiff_t *act, ptrdiff_t nact,
                                                  const double *v, const double *a, double *u,
                                                  int update, double *part)
{
    (void)k;
    for (ptrdiff_t q = 0; q < nact; ++q) memset(part + act[q] * m, 0, (size_t)m * sizeof(double));
    for (ptrdiff_t i = r0; i < r1; i += FC_SK_KG) {
        int g = r1 - i < FC_SK_KG ? (int)(r1 - i) : FC_SK_KG;
        const fc_real *Kq[FC_SK_KG];
        for (int t = 0; t < FC_SK_KG; ++t) Kq[t] = K + (i + (t < g ? t : 0)) * m;
        for (ptrdiff_t q = 0; q < nact; ++q) {
            ptrdiff_t h = act[q];
            double *uh = u + h * n;
            double *restrict cp = part + h * m;
            if (update) {
                double d[FC_SK_KG];
#if FC_SK_KG == 8
                fc_sk_kdot8(Kq, v + h * m, m, d);
#else
                fc_sk_kdot4(Kq, v + h * m, m, d);
#endif
                for (int t = 0; t < g; ++t) uh[i + t] = a[i + t] > 0.0 ? a[i + t] / d[t] : 0.0;
            }
            double w[FC_SK_KG];
            for (int t = 0; t < FC_SK_KG; ++t) w[t] = t < g ? uh[i + t] : 0.0;
            const fc_real *restrict A = Kq[0], *restrict B = Kq[1], *restrict C = Kq[2],
                                    *restrict D = Kq[3];
            double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
#if FC_SK_KG == 8
            const fc_real *restrict E = Kq[4], *restrict F = Kq[5], *restrict G = Kq[6],
                                    *restrict H = Kq[7];
            double w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];
            for (ptrdiff_t j = 0; j < m; ++j)
                cp[j] += ((double)A[j] * w0 + (double)B[j] * w1 + (double)C[j] * w2 + (double)D[j] * w3)
                         + ((double)E[j] * w4 + (double)F[j] * w5 + (double)G[j] * w6
                            + (double)H[j] * w7);
#else
            for (ptrdiff_t j = 0; j < m; ++j)
                cp[j] += (double)A[j] * w0 + (double)B[j] * w1 + (double)C[j] * w2 + (double)D[j] * w3;
#endif
        }
    }
}

/* One sweep of the iterations (fc_team): the row blocks split over the threads, log domain
 * (fc_sk_logblock, M the costs) or kernel (fc_sk_kblock, M the kernel), then the column sums
 * of the blocks reduced in block order. */
typedef struct {
    const fc_real *M;
    const ptrdiff_t *act;
    const double *beta, *inv_reg, *omega, *la, *a, *v;
    double *alpha, *tbuf, *part, *rowerr, *colsum, *u;
    ptrdiff_t n, m, k, nb, rb, nact;
    int log_domain, update;
} fc_sk_sweep;

static void fc_sk_sweep_team(void *arg)
{
    const fc_sk_sweep *s = arg;
    const int tid = fc_thread_id(), nth = fc_thread_count();
    const ptrdiff_t n = s->n, m = s->m, k = s->k, rb = s->rb;
    ptrdiff_t lo, hi;
    fc_split(s->nb, nth, tid, &lo, &hi);
    for (ptrdiff_t bk = lo; bk < hi; ++bk) {
        ptrdiff_t r0 = bk * rb, r1 = r0 + rb < n ? r0 + rb : n;
        if (s->log_domain)
            fc_sk_logblock(s->M, m, k, n, r0, r1, s->act, s->nact, s->beta, s->inv_reg, s->omega, s->la,
                                    s->a, s->alpha, s->tbuf + (ptrdiff_t)tid * 4 * m, s->part + bk * k * m,
                                    s->rowerr);
        else
            fc_sk_kblock(s->M, m, k, n, r0, r1, s->act, s->nact, s->v, s->a, s->u, s->update,
                                  s->part + bk * k * m);
    }
}

static void fc_sk_reduce_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_sk_sweep *s = arg;
    fc_sk_reduce_cols(s->part, s->nb, s->k, s->m, s->act, s->colsum, lo, hi);
}

/* One sweep: the row blocks, then (a second team: ranks never wait for each other) the
 * column sums reduced. */
static void fc_sk_run_sweep(int nt, fc_sk_sweep *s)
{
    fc_team(nt, fc_sk_sweep_team, s);
    fc_parallel_range(nt, s->nact * s->m, fc_sk_reduce_range, s);
}

typedef struct {
    const fc_real *M;
    const double *alpha;
    const ptrdiff_t *cols;
    double *out;
    double inv_reg;
    ptrdiff_t n, m, nc;
} fc_sk_collse_job;

/* fc_sk_collse on the column blocks [lo, hi). */
static void fc_sk_collse_blocks(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    const fc_sk_collse_job *job = arg;
    const fc_real *M = job->M;
    const double *alpha = job->alpha, inv_reg = job->inv_reg;
    const ptrdiff_t *cols = job->cols;
    double *out = job->out;
    const ptrdiff_t n = job->n, m = job->m, nc = job->nc;
    double mx[FC_SK_CBLOCK], s[FC_SK_CBLOCK];
    for (ptrdiff_t bk = lo; bk < hi; ++bk) {
        ptrdiff_t c0 = bk * FC_SK_CBLOCK, w = nc - c0 < FC_SK_CBLOCK ? nc - c0 : FC_SK_CBLOCK;
        for (ptrdiff_t c = 0; c < w; ++c) { mx[c] = -INFINITY; s[c] = 0.0; }
        for (ptrdiff_t i = 0; i < n; ++i) {
            double ai = alpha[i];
            if (!(ai > -INFINITY)) continue;
            const fc_real *Mi = M + i * m;
            if (cols == NULL) {
                for (ptrdiff_t c = 0; c < w; ++c) {
                    double x = ai - (double)Mi[c0 + c] * inv_reg;
                    mx[c] = x > mx[c] ? x : mx[c];
                }
            } else {
                for (ptrdiff_t c = 0; c < w; ++c) {
                    double x = ai - (double)Mi[cols[c0 + c]] * inv_reg;
                    mx[c] = x > mx[c] ? x : mx[c];
                }
            }
        }
        for (ptrdiff_t i = 0; i < n; ++i) {
            double ai = alpha[i];
            if (!(ai > -INFINITY)) continue;
            const fc_real *Mi = M + i * m;
            if (cols == NULL) {
                for (ptrdiff_t c = 0; c < w; ++c)
                    s[c] += fc_sk_exp(ai - (double)Mi[c0 + c] * inv_reg - mx[c]);
            } else {
                for (ptrdiff_t c = 0; c < w; ++c)
                    s[c] += fc_sk_exp(ai - (double)Mi[cols[c0 + c]] * inv_reg - mx[c]);
            }
        }
        for (ptrdiff_t c = 0; c < w; ++c)
            out[c0 + c] = mx[c] > -INFINITY ? mx[c] + log(s[c]) : -INFINITY;
    }
}

/* Exact log-sum-exp down the columns cols[0..nc) (all columns when cols == NULL,
 * nc = m): out[c] = log sum_i exp(alpha_i - M[i, col] * inv_reg). */
static void fc_sk_collse(const fc_real *M, ptrdiff_t n, ptrdiff_t m, const double *alpha,
                                  double inv_reg, const ptrdiff_t *cols, ptrdiff_t nc, double *out,
                                  int n_threads)
{
    ptrdiff_t nblk = (nc + FC_SK_CBLOCK - 1) / FC_SK_CBLOCK;
    int nt = fc_clamp_threads(n_threads, (n * nc) / 32768 + 1);
    fc_sk_collse_job job = {.M = M, .alpha = alpha, .cols = cols, .out = out, .inv_reg = inv_reg,
                                     .n = n, .m = m, .nc = nc};
    fc_parallel_range(nt, nblk, fc_sk_collse_blocks, &job);
}

/* beta_h = log b_h - collse(alpha_h) on the given columns (all when cols == NULL). */
static void fc_sk_exact_beta(const fc_real *M, ptrdiff_t n, ptrdiff_t m,
                                      const double *alpha_h, double inv_reg, const double *b_h,
                                      double *beta_h, const ptrdiff_t *cols, ptrdiff_t nc,
                                      double *work, int n_threads)
{
    fc_sk_collse(M, n, m, alpha_h, inv_reg, cols, nc, work, n_threads);
    for (ptrdiff_t c = 0; c < nc; ++c) {
        ptrdiff_t j = cols ? cols[c] : c;
        beta_h[j] = b_h[j] > 0.0 ? log(b_h[j]) - work[c] : -INFINITY;
    }
}
