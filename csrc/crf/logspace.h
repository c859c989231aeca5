/* CRF: the forward-backward in log space, in double (the fallback of a sequence whose scaled
 * recursion comes close to underflow).  Instantiated once per precision: no include guard. */

static double fc_crf_lse(const double *v, ptrdiff_t n)
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
static double fc_crf_fb_log(const fc_crf_tab *tb, fc_crf_ws *ws,
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
                v = fc_crf_lse(t2, K);
            }
            a[j] = v + (double)e[j];
        }
    }
    for (ptrdiff_t j = 0; j < K; ++j)
        tmp[j] = la[(n - 1) * K + j] + (tb->end ? (double)tb->end[j] : 0.0);
    double logz = fc_crf_lse(tmp, K);
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
            lbn[i] = fc_crf_lse(scr, K);
        }
        double *t = lb; lb = lbn; lbn = t;
    }
    return logz;
}
