/* Sinkhorn implementation, instantiated once per precision by sinkhorn_f32.c / sinkhorn_f64.c (see
 * fc_real.h and sinkhorn.h).  No include guard on purpose.
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

/* ------------------------------------------------------------------ log domain */

int FC_NAME(fc_sinkhorn_log)(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st)
{
    if (st == NULL) return FC_BAD_ARGUMENT;
    const fc_real *M = p->M;
    const ptrdiff_t n = p->n, m = p->m, k = p->k;
    const double *a = p->a, *b = p->b, *regs = p->regs;
    const ptrdiff_t n_regs = p->n_regs, max_inner = p->max_inner, max_iter = p->max_iter;
    const double inner_tol = p->inner_tol, tol = p->tol, relax = p->relax;
    const int n_threads = p->n_threads;
    double *alpha = st->alpha, *beta = st->beta, *err = st->err, *err_hist = st->err_hist;
    ptrdiff_t *niter = st->niter;
    int *state = st->state;
    const ptrdiff_t hist_cap = st->hist_cap;
    if (n < 1 || m < 1 || k < 1 || n_regs < 1 || max_inner < 0 || max_iter < 0 || n_threads < 1)
        return FC_BAD_ARGUMENT;
    if (!M || !a || !b || !regs || !alpha || !beta || !niter || !err || !state) return FC_BAD_ARGUMENT;
    for (ptrdiff_t s = 0; s < n_regs; ++s)
        if (!(regs[s] > 0.0) || regs[s] == INFINITY) return FC_BAD_ARGUMENT;
    if (err_hist && hist_cap < (n_regs - 1) * max_inner + max_iter) return FC_BAD_ARGUMENT;
    if (!(relax == 0.0 || (relax >= 1.0 && relax < 2.0))) return FC_BAD_ARGUMENT;

    ptrdiff_t rb, nb;
    fc_sk_blocks(n, &rb, &nb);
    int nt = fc_clamp_threads(n_threads, nb);
    if ((double)n * (double)m * (double)k < FC_SK_MIN_PARALLEL) nt = 1;

    double *part = malloc((size_t)nb * (size_t)k * (size_t)m * sizeof(double));
    double *tbuf = malloc((size_t)nt * 4 * (size_t)m * sizeof(double));
    double *colsum = malloc((size_t)k * (size_t)m * sizeof(double));
    double *work = malloc((size_t)m * sizeof(double));
    double *la = malloc((size_t)n * sizeof(double));
    double *inv_reg = malloc((size_t)k * sizeof(double));
    ptrdiff_t *flag = malloc((size_t)m * sizeof(ptrdiff_t));
    ptrdiff_t *act = malloc((size_t)k * sizeof(ptrdiff_t));
    ptrdiff_t *stage = malloc((size_t)k * sizeof(ptrdiff_t));
    ptrdiff_t *it_stage = malloc((size_t)k * sizeof(ptrdiff_t));
    double *rowerr = malloc((size_t)k * (size_t)n * sizeof(double));
    double *omega = malloc((size_t)k * sizeof(double));
    double *e_ref = malloc((size_t)k * sizeof(double));
    double *e_best = malloc((size_t)k * sizeof(double));
    int *stall = malloc((size_t)k * sizeof(int));
    int *plain = malloc((size_t)k * sizeof(int)); /* auto over-relaxation given up */
    int status = FC_OK;
    fc_interrupt_begin();
    if (!part || !tbuf || !colsum || !work || !la || !inv_reg || !flag || !act || !stage || !it_stage
        || !rowerr || !omega || !e_ref || !e_best || !stall || !plain) {
        status = FC_OUT_OF_MEMORY;
        goto done;
    }
    for (ptrdiff_t i = 0; i < n; ++i) la[i] = a[i] > 0.0 ? log(a[i]) : -INFINITY;
    /* a column whose computed sum is below this is redone exactly (see sinkhorn.h) */
    double mass = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) mass += a[i];
    const double tiny = mass * 1e-200; /* terms below exp(-600) are dropped (no subnormals) */

    for (ptrdiff_t h = 0; h < k; ++h) {
        stage[h] = 0;
        it_stage[h] = 0;
        niter[h] = 0;
        err[h] = INFINITY;
        state[h] = -1; /* running */
        inv_reg[h] = 1.0 / regs[0];
        omega[h] = 1.0;
        e_ref[h] = INFINITY;
        e_best[h] = INFINITY;
        stall[h] = 0;
        plain[h] = 0;
        fc_sk_exact_beta(M, n, m, alpha + h * n, inv_reg[h], b + h * m, beta + h * m,
                                  NULL, m, work, n_threads);
    }

    for (;;) {
        if (fc_interrupted()) { status = FC_INTERRUPTED; goto done; } /* Ctrl-C */
        ptrdiff_t nact = 0;
        for (ptrdiff_t h = 0; h < k; ++h)
            if (state[h] < 0) {
                /* zero-iteration budget at the current stage */
                int last = stage[h] == n_regs - 1;
                if (last && it_stage[h] >= max_iter) { state[h] = FC_SK_MAX_ITER; continue; }
                act[nact++] = h;
            }
        if (nact == 0) break;

        fc_sk_sweep sw = {.M = M, .act = act, .beta = beta, .inv_reg = inv_reg, .omega = omega,
                                   .la = la, .a = a, .alpha = alpha, .tbuf = tbuf, .part = part,
                                   .rowerr = rowerr, .colsum = colsum, .n = n, .m = m, .k = k, .nb = nb,
                                   .rb = rb, .nact = nact, .log_domain = 1};
        fc_sk_run_sweep(nt, &sw);

        for (ptrdiff_t q = 0; q < nact; ++q) {
            ptrdiff_t h = act[q];
            const double *bh = b + h * m;
            double *ch = colsum + h * m, *beh = beta + h * m;
            double e2 = 0.0;
            for (ptrdiff_t j = 0; j < m; ++j) {
                double d = ch[j] - bh[j];
                e2 += d * d;
            }
            if (omega[h] != 1.0)
                for (ptrdiff_t i = 0; i < n; ++i) e2 += rowerr[h * n + i] * rowerr[h * n + i];
            double e = sqrt(e2);
            if (err_hist) err_hist[h * hist_cap + niter[h]] = e;
            niter[h] += 1;
            it_stage[h] += 1;
            err[h] = e;
            int last = stage[h] == n_regs - 1;
            if (e != e) { state[h] = FC_SK_BREAKDOWN; continue; }
            if (last) {
                /* an over-relaxed iterate below tol is confirmed by plain iterations: the
                 * plan returned is a plain row update (see fc_sinkhorn_plan), whose error
                 * can be larger */
                if (e < tol && omega[h] == 1.0) { state[h] = FC_SK_CONVERGED; continue; }
                if (it_stage[h] >= max_iter) { state[h] = FC_SK_MAX_ITER; continue; }
                if (e < tol) {
                    omega[h] = 1.0;
                    plain[h] = 1;
                }
                /* over-relaxation at the target reg: fixed, or (relax == 0) adapted.  The
                 * per-iteration rate rho seen over a window under the current omega gives
                 * the rate of plain Sinkhorn, theta = (rho + omega - 1)^2 / (rho omega^2)
                 * (linear SOR theory), hence omega = 2 / (1 + sqrt(1 - theta)); omega only
                 * grows, and is pulled back towards 1 if the error blows up. */
                if (plain[h]) omega[h] = 1.0;
                else if (relax >= 1.0) omega[h] = relax;
                else {
                    ptrdiff_t t = it_stage[h] - FC_SK_RATE_FROM;
                    if (t == 0) e_ref[h] = e;
                    else if (t > 0 && t % FC_SK_RATE_WIN == 0 && !plain[h]) {
                        double w = omega[h];
                        double rho = pow(e / e_ref[h], 1.0 / FC_SK_RATE_WIN);
                        /* stall (see FC_SK_STALL): the error of the over-relaxed iterate
                         * hardly moves, and is the true marginal error amplified ~1 / (2 -
                         * omega) by the row overshoot.  Plain Sinkhorn from then on: its
                         * error is the true one (exact rows), and it stops once below tol. */
                        if (w != 1.0 && rho >= FC_SK_STALL && rho <= 1.0) {
                            if (++stall[h] >= 2) {
                                omega[h] = 1.0;
                                plain[h] = 1;
                            }
                        } else
                            stall[h] = 0;
                        if (!plain[h] && rho > 0.0 && rho < 1.0) {
                            double th = (rho + w - 1.0) * (rho + w - 1.0) / (rho * w * w);
                            th = th < 1.0 ? th : 1.0;
                            double wn = 2.0 / (1.0 + sqrt(1.0 - th));
                            wn = wn < FC_SK_OMEGA_MAX ? wn : FC_SK_OMEGA_MAX;
                            if (wn > w) omega[h] = wn;
                        }
                        e_ref[h] = e;
                    }
                    if (omega[h] != 1.0 && e > 100.0 * e_best[h]) {
                        omega[h] = 1.0 + 0.5 * (omega[h] - 1.0);
                        e_best[h] = e;
                    }
                    e_best[h] = e < e_best[h] ? e : e_best[h];
                }
            }
            /* column update */
            double om = omega[h];
            ptrdiff_t nf = 0;
            for (ptrdiff_t j = 0; j < m; ++j) {
                if (!(bh[j] > 0.0)) continue;
                if (ch[j] >= tiny) beh[j] += om * log(bh[j] / ch[j]);
                else flag[nf++] = j;
            }
            if (nf > 0)
                fc_sk_exact_beta(M, n, m, alpha + h * n, inv_reg[h], bh, beh, flag, nf,
                                          work, n_threads);
            if (!last && (e < inner_tol || it_stage[h] >= max_inner)) {
                /* next reg: keep the potentials in cost units */
                double r = regs[stage[h]] / regs[stage[h] + 1];
                /* and re-centre the gauge (alpha + g, beta - g leaves P unchanged): the
                 * factors r compound to 2^stages and would leave alpha and beta large and
                 * of opposite signs, losing digits in alpha_i + beta_j - M_ij / reg */
                double sa = 0.0, sb = 0.0;
                ptrdiff_t na = 0, nbf = 0;
                for (ptrdiff_t i = 0; i < n; ++i)
                    if (alpha[h * n + i] > -INFINITY) { sa += alpha[h * n + i]; ++na; }
                for (ptrdiff_t j = 0; j < m; ++j)
                    if (beh[j] > -INFINITY) { sb += beh[j]; ++nbf; }
                double g = (na > 0 && nbf > 0) ? 0.5 * (sb / (double)nbf - sa / (double)na) : 0.0;
                for (ptrdiff_t i = 0; i < n; ++i) alpha[h * n + i] = (alpha[h * n + i] + g) * r;
                for (ptrdiff_t j = 0; j < m; ++j) beh[j] = (beh[j] - g) * r;
                stage[h] += 1;
                it_stage[h] = 0;
                inv_reg[h] = 1.0 / regs[stage[h]];
            }
        }
    }
done:
    free(part); free(tbuf); free(colsum); free(work); free(la); free(inv_reg);
    free(flag); free(act); free(stage); free(it_stage); free(rowerr); free(omega); free(e_ref);
    free(e_best); free(stall); free(plain);
    return status;
}

/* The arguments of the row passes below, for fc_parallel_range (fields a pass does not use
 * stay NULL / 0; the log-domain plan passes alpha and beta as u and v). */
typedef struct {
    const fc_real *M, *K;
    const double *u, *v, *lv;
    fc_real *plan;
    double *rc, *rl;
    double inv_reg;
    ptrdiff_t n, m, k;
} fc_sk_rows_job;

/* ------------------------------------------------------------------ scaling form */

static FC_MULTIVERSION void fc_sk_kernel_rows(const fc_real *M, fc_real *K, ptrdiff_t m,
                                                       ptrdiff_t r0, ptrdiff_t r1, double inv_reg)
{
    for (ptrdiff_t i = r0; i < r1; ++i)
        for (ptrdiff_t j = 0; j < m; ++j)
            {
                /* exp(x), 0 below -708: the same values as fc_sk_exp_normal (the caller
                 * checked x <= 709), with one scale factor */
                fc_real kij = (fc_real)fc_exp_ftz_f64(-(double)M[i * m + j] * inv_reg);
                K[i * m + j] = kij >= FC_SK_RMIN ? kij : (fc_real)0; /* no subnormals */
            }
}

static void fc_sk_kernel_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    fc_sk_rows_job *j = arg;
    fc_sk_kernel_rows(j->M, (fc_real *)j->K, j->m, lo, hi, j->inv_reg);
}

/* Plan P_ij = u_i K_ij v_j from the stored kernel (no exp), per row: rc = sum_j P_ij M_ij,
 * rl = sum_j P_ij log P_ij with log P_ij = log u_i + log v_j - M_ij / reg (0 log 0 = 0). */
static FC_MULTIVERSION void fc_sk_kplanrows(const fc_real *M, const fc_real *K, ptrdiff_t n,
                                                     ptrdiff_t m, ptrdiff_t k, ptrdiff_t r0,
                                                     ptrdiff_t r1, const double *u, const double *v,
                                                     const double *lv, double inv_reg, fc_real *plan,
                                                     double *rc, double *rl)
{
    for (ptrdiff_t i = r0; i < r1; ++i) {
        const fc_real *restrict Mi = M + i * m, *restrict Ki = K + i * m;
        for (ptrdiff_t h = 0; h < k; ++h) {
            double ui = u[h * n + i];
            const double *restrict vh = v + h * m, *restrict lvh = lv + h * m;
            fc_real *restrict pi = plan ? plan + i * m : NULL;
            double c = 0.0, lp = 0.0;
            if (!(ui > 0.0)) {
                if (pi) for (ptrdiff_t j = 0; j < m; ++j) pi[j] = (fc_real)0;
            } else {
                double lui = log(ui);
                if (pi) {
                    FC_SK_SIMD_SUM2(c, lp)
                    for (ptrdiff_t j = 0; j < m; ++j) {
                        double mij = (double)Mi[j], p = ui * (double)Ki[j] * vh[j];
                        pi[j] = (fc_real)p;
                        c += p * mij;
                        lp += p > 0.0 ? p * (lui + lvh[j] - mij * inv_reg) : 0.0;
                    }
                } else {
                    FC_SK_SIMD_SUM2(c, lp)
                    for (ptrdiff_t j = 0; j < m; ++j) {
                        double mij = (double)Mi[j], p = ui * (double)Ki[j] * vh[j];
                        c += p * mij;
                        lp += p > 0.0 ? p * (lui + lvh[j] - mij * inv_reg) : 0.0;
                    }
                }
            }
            rc[h * n + i] = c;
            rl[h * n + i] = lp;
        }
    }
}

static void fc_sk_kplan_range(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    fc_sk_rows_job *j = arg;
    fc_sk_kplanrows(j->M, j->K, j->n, j->m, j->k, lo, hi, j->u, j->v, j->lv, j->inv_reg, j->plan,
                             j->rc, j->rl);
}

int FC_NAME(fc_sinkhorn_knopp)(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                               const fc_sinkhorn_plan_out *out)
{
    if (st == NULL || out == NULL) return FC_BAD_ARGUMENT;
    const fc_real *M = p->M;
    const ptrdiff_t n = p->n, m = p->m, k = p->k;
    const double *a = p->a, *b = p->b;
    const double reg = p->reg, tol = p->tol;
    const ptrdiff_t max_iter = p->max_iter;
    const int n_threads = p->n_threads;
    double *u = st->u, *v = st->v, *err = st->err, *err_hist = st->err_hist;
    ptrdiff_t *niter = st->niter;
    int *state = st->state;
    const ptrdiff_t hist_cap = st->hist_cap;
    fc_real *plan = out->plan;
    double *cost = out->cost, *plogp = out->plogp;
    if (n < 1 || m < 1 || k < 1 || max_iter < 0 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (!M || !a || !b || !u || !v || !niter || !err || !state || !cost || !plogp)
        return FC_BAD_ARGUMENT;
    if (plan && k != 1) return FC_BAD_ARGUMENT;
    if (!(reg > 0.0) || reg == INFINITY) return FC_BAD_ARGUMENT;
    if (err_hist && hist_cap < max_iter) return FC_BAD_ARGUMENT;

    ptrdiff_t rb, nb;
    fc_sk_blocks(n, &rb, &nb);
    int nt = fc_clamp_threads(n_threads, nb);
    if ((double)n * (double)m * (double)k < 4.0 * FC_SK_MIN_PARALLEL) nt = 1;

    fc_real *K = malloc((size_t)n * (size_t)m * sizeof(fc_real));
    double *part = malloc((size_t)nb * (size_t)k * (size_t)m * sizeof(double));
    double *colsum = malloc((size_t)k * (size_t)m * sizeof(double));
    double *uprev = malloc((size_t)k * (size_t)n * sizeof(double));
    ptrdiff_t *act = malloc((size_t)k * sizeof(ptrdiff_t));
    int status = FC_OK;
    fc_interrupt_begin();
    if (!K || !part || !colsum || !uprev || !act) {
        status = FC_OUT_OF_MEMORY;
        goto done;
    }
    {
        int ntk = fc_clamp_threads(n_threads, n);
        if ((double)n * (double)m < FC_SK_MIN_PARALLEL) ntk = 1;
        fc_sk_rows_job rj = {.M = M, .K = K, .n = n, .m = m, .k = k, .inv_reg = 1.0 / reg};
        fc_parallel_range(ntk, n, fc_sk_kernel_range, &rj);
    }
    for (ptrdiff_t h = 0; h < k; ++h) {
        niter[h] = 0;
        err[h] = INFINITY;
        state[h] = -1;
        act[h] = h;
    }
    int first = 1;
    for (;;) {
        if (fc_interrupted()) { status = FC_INTERRUPTED; goto done; } /* Ctrl-C */
        ptrdiff_t nact = 0;
        for (ptrdiff_t h = 0; h < k; ++h)
            if (state[h] < 0) {
                if (!first && niter[h] >= max_iter) { state[h] = FC_SK_MAX_ITER; continue; }
                act[nact++] = h;
            }
        if (nact == 0) break;
        for (ptrdiff_t q = 0; q < nact; ++q)
            memcpy(uprev + act[q] * n, u + act[q] * n, (size_t)n * sizeof(double));

        fc_sk_sweep sw = {.M = K, .act = act, .v = v, .a = a, .u = u, .part = part, .colsum = colsum,
                                   .n = n, .m = m, .k = k, .nb = nb, .rb = rb, .nact = nact, .log_domain = 0,
                                   .update = !first};
        fc_sk_run_sweep(nt, &sw);

        for (ptrdiff_t q = 0; q < nact; ++q) {
            ptrdiff_t h = act[q];
            const double *bh = b + h * m;
            double *ch = colsum + h * m, *vh = v + h * m, *uh = u + h * n;
            if (!first) {
                int bad = 0;
                for (ptrdiff_t i = 0; i < n; ++i) bad |= !(uh[i] < INFINITY); /* inf or NaN */
                if (bad) {
                    memcpy(uh, uprev + h * n, (size_t)n * sizeof(double));
                    state[h] = FC_SK_BREAKDOWN;
                    continue;
                }
                double e2 = 0.0;
                for (ptrdiff_t j = 0; j < m; ++j) {
                    double d = vh[j] * ch[j] - bh[j];
                    e2 += d * d;
                }
                double e = sqrt(e2);
                if (err_hist) err_hist[h * hist_cap + niter[h]] = e;
                niter[h] += 1;
                err[h] = e;
                if (e != e) { state[h] = FC_SK_BREAKDOWN; continue; }
                if (e < tol) { state[h] = FC_SK_CONVERGED; continue; }
                if (niter[h] >= max_iter) { state[h] = FC_SK_MAX_ITER; continue; }
            }
            int bad = 0;
            for (ptrdiff_t j = 0; j < m; ++j) {
                double vj = bh[j] > 0.0 ? bh[j] / ch[j] : 0.0;
                bad |= !(vj < INFINITY);
                colsum[h * m + j] = vj; /* staged: v changes only if all are finite */
            }
            if (bad) {
                if (!first) memcpy(uh, uprev + h * n, (size_t)n * sizeof(double));
                state[h] = FC_SK_BREAKDOWN;
                continue;
            }
            memcpy(vh, ch, (size_t)m * sizeof(double));
        }
        first = 0;
    }
    {   /* plan and costs from K (reusing part: k * m for log v, 2 * k * n for the rows) */
        double *lv = part, *rc = part + k * m, *rl = rc + k * n;
        double *tmp = NULL;
        if ((size_t)nb * (size_t)m < (size_t)(m + 2 * n)) {
            tmp = malloc((size_t)k * (size_t)(m + 2 * n) * sizeof(double));
            if (!tmp) { status = FC_OUT_OF_MEMORY; goto done; }
            lv = tmp; rc = tmp + k * m; rl = rc + k * n;
        }
        for (ptrdiff_t j = 0; j < k * m; ++j) lv[j] = v[j] > 0.0 ? log(v[j]) : -INFINITY;
        int ntp = fc_clamp_threads(n_threads, n);
        if ((double)n * (double)m * (double)k < FC_SK_MIN_PARALLEL) ntp = 1;
        fc_sk_rows_job rj = {.M = M, .K = K, .n = n, .m = m, .k = k, .inv_reg = 1.0 / reg, .u = u,
                                      .v = v, .lv = lv, .plan = plan, .rc = rc, .rl = rl};
        fc_parallel_range(ntp, n, fc_sk_kplan_range, &rj);
        for (ptrdiff_t h = 0; h < k; ++h) {
            double c = 0.0, l = 0.0;
            for (ptrdiff_t i = 0; i < n; ++i) { c += rc[h * n + i]; l += rl[h * n + i]; }
            cost[h] = c;
            plogp[h] = l;
        }
        free(tmp);
    }
done:
    free(K); free(part); free(colsum); free(uprev); free(act);
    return status;
}

/* ------------------------------------------------------------------ plan and costs */

/* The plan of one more row update, rows [r0, r1) in blocks of rb: for each histogram,
 * P_i = a_i exp(beta - M_i / reg) / sum_j exp(beta_j - M_ij / reg) (fc_sk_logrow with no
 * over-relaxation, so every row sums to a_i exactly), alpha_i refreshed to that update,
 * rc / rl the row's <P_i, M_i> and sum P log P, and the block's column sums in part. */
typedef struct {
    const fc_real *M;
    const double *a, *beta;
    double *alpha;
    fc_real *plan;
    double *rc, *rl, *part, *rowerr;
    double inv_reg;
    ptrdiff_t n, m, k, rb;
    int status;
} fc_sk_plan_job;

static FC_MULTIVERSION void fc_sk_planrows(const fc_sk_plan_job *j, ptrdiff_t r0,
                                                    ptrdiff_t r1, double *restrict part,
                                                    double *restrict tbuf)
{
    const ptrdiff_t n = j->n, m = j->m, k = j->k;
    const double inv_reg = j->inv_reg;
    for (ptrdiff_t i = r0; i < r1; ++i) {
        const fc_real *Mi = j->M + i * m;
        const double a_i = j->a[i], la = a_i > 0.0 ? log(a_i) : -INFINITY;
        for (ptrdiff_t h = 0; h < k; ++h) {
            const double *bh = j->beta + h * m;
            double *ai = j->alpha + h * n + i, w, unused;
            *ai = fc_sk_logrow(Mi, bh, m, inv_reg, la, a_i, *ai, 1.0, tbuf, &w, &unused);
            /* a row of mass the columns cannot take (every beta_j = -inf): its whole mass
             * is missing from the plan */
            j->rowerr[h * n + i] = (a_i > 0.0 && !(*ai > -INFINITY)) ? a_i : 0.0;
            const double al = *ai;
            fc_real *pi = j->plan ? j->plan + i * m : NULL;
            double *restrict cp = part + h * m;
            double cl[FC_SK_LANES], ll[FC_SK_LANES];
            for (int l = 0; l < FC_SK_LANES; ++l) { cl[l] = 0.0; ll[l] = 0.0; }
            double c = 0.0, lp = 0.0;
            ptrdiff_t mb = m - m % FC_SK_LANES, jj = 0;
            for (; jj < mb; jj += FC_SK_LANES)
                for (int l = 0; l < FC_SK_LANES; ++l) {
                    double mij = (double)Mi[jj + l], p = tbuf[jj + l] * w;
                    if (pi) pi[jj + l] = (fc_real)p;
                    cp[jj + l] += p;
                    cl[l] += p * mij;
                    ll[l] += p > 0.0 ? p * (al + bh[jj + l] - mij * inv_reg) : 0.0;
                }
            for (; jj < m; ++jj) {
                double mij = (double)Mi[jj], p = tbuf[jj] * w;
                if (pi) pi[jj] = (fc_real)p;
                cp[jj] += p;
                c += p * mij;
                lp += p > 0.0 ? p * (al + bh[jj] - mij * inv_reg) : 0.0;
            }
            for (int l = 0; l < FC_SK_LANES; ++l) { c += cl[l]; lp += ll[l]; }
            j->rc[h * n + i] = c;
            j->rl[h * n + i] = lp;
        }
    }
}

static void fc_sk_plan_blocks(void *arg, ptrdiff_t lo, ptrdiff_t hi)
{
    fc_sk_plan_job *j = arg;
    double *tbuf = malloc((size_t)j->m * sizeof(double));
    if (tbuf == NULL) {
        FC_OMP_FAIL(j->status, FC_OUT_OF_MEMORY);
        return;
    }
    for (ptrdiff_t bk = lo; bk < hi; ++bk) {
        ptrdiff_t r0 = bk * j->rb, r1 = r0 + j->rb < j->n ? r0 + j->rb : j->n;
        double *part = j->part + bk * j->k * j->m;
        memset(part, 0, (size_t)(j->k * j->m) * sizeof(double));
        fc_sk_planrows(j, r0, r1, part, tbuf);
    }
    free(tbuf);
}

int FC_NAME(fc_sinkhorn_plan)(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                              const fc_sinkhorn_plan_out *out)
{
    if (st == NULL || out == NULL) return FC_BAD_ARGUMENT;
    const fc_real *M = p->M;
    const ptrdiff_t n = p->n, m = p->m, k = p->k;
    const double *a = p->a, *b = p->b;
    const int n_threads = p->n_threads;
    double *alpha = st->alpha, *err = st->err;
    const double *beta = st->beta;
    fc_real *plan = out->plan;
    double *cost = out->cost, *plogp = out->plogp;
    if (n < 1 || m < 1 || k < 1 || n_threads < 1) return FC_BAD_ARGUMENT;
    if (!M || !a || !b || !alpha || !beta || !cost || !plogp || !err || (plan && k != 1))
        return FC_BAD_ARGUMENT;
    ptrdiff_t rb, nb;
    fc_sk_blocks(n, &rb, &nb);
    double *rc = malloc((size_t)k * (size_t)n * sizeof(double));
    double *rl = malloc((size_t)k * (size_t)n * sizeof(double));
    double *re = malloc((size_t)k * (size_t)n * sizeof(double));
    double *part = malloc((size_t)nb * (size_t)k * (size_t)m * sizeof(double));
    double *colsum = malloc((size_t)k * (size_t)m * sizeof(double));
    ptrdiff_t *act = malloc((size_t)k * sizeof(ptrdiff_t));
    int status = FC_OK;
    if (!rc || !rl || !re || !part || !colsum || !act) { status = FC_OUT_OF_MEMORY; goto done; }
    int nt = fc_clamp_threads(n_threads, nb);
    if ((double)n * (double)m * (double)k < FC_SK_MIN_PARALLEL) nt = 1;
    fc_sk_plan_job pj = {.M = M, .a = a, .beta = beta, .alpha = alpha, .plan = plan, .rc = rc,
                                  .rl = rl, .part = part, .rowerr = re, .inv_reg = inv_reg, .n = n, .m = m,
                                  .k = k, .rb = rb, .status = FC_OK};
    fc_parallel_range(nt, nb, fc_sk_plan_blocks, &pj);
    if (pj.status != FC_OK) { status = pj.status; goto done; }
    for (ptrdiff_t h = 0; h < k; ++h) act[h] = h;
    fc_sk_reduce_cols(part, nb, k, m, act, colsum, 0, k * m);
    for (ptrdiff_t h = 0; h < k; ++h) {
        double c = 0.0, l = 0.0, e2 = 0.0;
        for (ptrdiff_t i = 0; i < n; ++i) {
            c += rc[h * n + i];
            l += rl[h * n + i];
            e2 += re[h * n + i] * re[h * n + i];
        }
        for (ptrdiff_t jj = 0; jj < m; ++jj) {
            double d = colsum[h * m + jj] - b[h * m + jj];
            e2 += d * d;
        }
        cost[h] = c;
        plogp[h] = l;
        err[h] = sqrt(e2);
    }
done:
    free(rc); free(rl); free(re); free(part); free(colsum); free(act);
    return status;
}
