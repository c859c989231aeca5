/* Sinkhorn in the log domain: fc_sinkhorn_log (epsilon scaling, over-relaxation).  Instantiated
 * once per precision (sinkhorn_unit.h): no include guard on purpose. */


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
    if (n < 1 || m < 1 || k < 1 || n_regs < 1 || max_inner < (n_regs > 1) || max_iter < 0 || n_threads < 1)
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
