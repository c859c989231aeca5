/* Sinkhorn in the scaling form: fc_sinkhorn_knopp (the Gibbs kernel K, u and v).  Instantiated
 * once per precision (sinkhorn_unit.h): no include guard on purpose. */

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
