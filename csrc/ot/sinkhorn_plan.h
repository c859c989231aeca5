/* Sinkhorn plans and costs: fc_sinkhorn_plan (one more row update, its marginals and costs).
 * Instantiated once per precision (sinkhorn_unit.h): no include guard on purpose. */


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
