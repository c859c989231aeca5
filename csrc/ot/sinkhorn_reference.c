/* The reference path of the Sinkhorn kernels (sinkhorn.h): plain C, one histogram at a time, in
 * double and in log space, written to be read against the maths and compared with the fast
 * kernels by the tests (fc_sinkhorn_problem.path = FC_PATH_REFERENCE).  No SIMD, no threads, no
 * shift carried over from the previous iteration, no dropped terms: nothing here is shared with
 * the fast kernels.
 *
 * Notation for one histogram h: M (n, m) the costs, a (n,) the source weights, b = b_h (m,) its
 * target, reg the current regularisation, lse = log-sum-exp shifted by its maximum (-inf when
 * every term is -inf), and the plan P_ij = exp(alpha_i + beta_j - M_ij / reg).
 *
 * fc_sinkhorn_log: plain log-domain Sinkhorn (POT's sinkhorn_log iterates).  relax = 1 only: the
 *   over-relaxed iterations (relax != 1) of the fast path differ from these by design, and are
 *   FC_BAD_ARGUMENT here.
 *     start      beta_j = log b_j - lse_i(alpha_i - M_ij / reg) at reg = regs[0]  (-inf where b_j = 0)
 *     iteration  alpha_i = log a_i - lse_j(beta_j - M_ij / reg)
 *                          (-inf where a_i = 0 or where every term is -inf)
 *                c_j = sum_i P_ij = exp(beta_j + lse_i(alpha_i - M_ij / reg))  (the updated plan)
 *                err = ||c - b||_2  (its rows sum to a exactly)                -> err_hist, niter
 *                beta_j += log(b_j / c_j), written beta_j = log b_j - lse_i(alpha_i - M_ij / reg)
 *                (the same number, without forming c_j, which may underflow); b_j = 0 keeps -inf.
 *                The run's last iteration stops before its column update, so alpha is the row
 *                update of the beta returned.
 *     stages     reg = regs[s].  A stage s < n_regs - 1 runs until err < inner_tol or max_inner
 *                iterations (0: none), each ending with its column update; then the potentials
 *                go to the next reg in cost units, the gauge re-centred first (alpha + g, beta - g
 *                is the same plan):  g = (mean of the finite beta_j - mean of the finite alpha_i) / 2,
 *                alpha <- (alpha + g) r,  beta <- (beta - g) r,  r = regs[s] / regs[s + 1].
 *                The last stage stops CONVERGED when err < tol, MAX_ITER after max_iter
 *                iterations (max_iter = 0: none, err = inf).  A NaN err: BREAKDOWN (any stage).
 * fc_sinkhorn_knopp: the scaling form on K_ij = exp(-M_ij / reg) rounded to the problem's dtype
 *   (the kernel the fast path stores).
 *     start      v_j = b_j / (K^T u)_j (0 where b_j = 0), u as given
 *     iteration  u_i = a_i / (K v)_i (0 where a_i = 0),  c = K^T u,  err = ||v * c - b||_2
 *                (-> err_hist, niter), then v_j = b_j / c_j (0 where b_j = 0) unless the run stops:
 *                CONVERGED when err < tol, MAX_ITER after max_iter iterations, BREAKDOWN when err
 *                is NaN or a new u or v is not finite (that iteration's u is undone: u, v are the
 *                last finite iterate; a breakdown at the start leaves v as it was).
 *     plan       P_ij = u_i K_ij v_j,  cost = sum P_ij M_ij,
 *                plogp = sum_{P_ij > 0} P_ij (log u_i + log v_j - M_ij / reg)
 * fc_sinkhorn_plan: one more row update from beta at 1 / inv_reg.
 *                L_i = lse_j(beta_j - M_ij inv_reg),  alpha_i = log a_i - L_i,
 *                P_ij = a_i exp(beta_j - M_ij inv_reg - L_i)   (each row sums to a_i)
 *                A row with a_i = 0, or whose every term is -inf: alpha_i = -inf and P_i = 0; in the
 *                second case its mass a_i is missing from the plan.
 *                cost = sum P_ij M_ij,  plogp = sum_{P_ij > 0} P_ij (alpha_i + beta_j - M_ij inv_reg),
 *                err = sqrt(||P^T 1 - b||_2^2 + sum of the missing rows' a_i^2)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ot/sinkhorn_internal.h"
#include "core/fc_reference.h"

/* ---------------------------------------------------------------- helpers */

static int bad_reg(double reg) { return !(reg > 0.0) || reg == INFINITY; }

/* log sum_i exp v[i]; -inf when every v[i] is -inf (or n = 0) */
static double lse(const double *v, ptrdiff_t n)
{
    double mx = -INFINITY, s = 0.0;
    for (ptrdiff_t i = 0; i < n; ++i)
        if (v[i] > mx) mx = v[i];
    if (mx == -INFINITY) return mx;
    for (ptrdiff_t i = 0; i < n; ++i) s += exp(v[i] - mx);
    return mx + log(s);
}

/* M (n, m) in double (NULL when out of memory) */
static double *load_costs(const fc_sinkhorn_problem *p)
{
    double *M = malloc(sizeof(double) * (size_t)(p->n * p->m));
    for (ptrdiff_t i = 0; M && i < p->n * p->m; ++i) M[i] = fc_ref_load(p->M, p->dtype, i);
    return M;
}

/* ---------------------------------------------------------------- log domain */

/* alpha_i = log a_i - lse_j(beta_j - M_ij / reg); v: (m,) scratch */
static void row_update(const double *M, ptrdiff_t n, ptrdiff_t m, const double *a, const double *beta,
                       double reg, double *alpha, double *v)
{
    for (ptrdiff_t i = 0; i < n; ++i) {
        for (ptrdiff_t j = 0; j < m; ++j) v[j] = beta[j] - M[i * m + j] / reg;
        const double L = lse(v, m);
        alpha[i] = a[i] > 0.0 && L > -INFINITY ? log(a[i]) - L : -INFINITY;
    }
}

/* lc_j = lse_i(alpha_i - M_ij / reg); v: (n,) scratch */
static void col_lse(const double *M, ptrdiff_t n, ptrdiff_t m, const double *alpha, double reg, double *lc,
                    double *v)
{
    for (ptrdiff_t j = 0; j < m; ++j) {
        for (ptrdiff_t i = 0; i < n; ++i) v[i] = alpha[i] - M[i * m + j] / reg;
        lc[j] = lse(v, n);
    }
}

/* beta_j = log b_j - lc_j (-inf where b_j = 0) */
static void col_update(ptrdiff_t m, const double *b, const double *lc, double *beta)
{
    for (ptrdiff_t j = 0; j < m; ++j) beta[j] = b[j] > 0.0 ? log(b[j]) - lc[j] : -INFINITY;
}

/* From reg to reg / r (r = reg / next reg): the gauge re-centred, then the potentials in cost units. */
static void next_reg(ptrdiff_t n, ptrdiff_t m, double r, double *alpha, double *beta)
{
    double sa = 0.0, sb = 0.0;
    ptrdiff_t na = 0, nb = 0;
    for (ptrdiff_t i = 0; i < n; ++i)
        if (alpha[i] > -INFINITY) { sa += alpha[i]; ++na; }
    for (ptrdiff_t j = 0; j < m; ++j)
        if (beta[j] > -INFINITY) { sb += beta[j]; ++nb; }
    const double g = na > 0 && nb > 0 ? 0.5 * (sb / (double)nb - sa / (double)na) : 0.0;
    for (ptrdiff_t i = 0; i < n; ++i) alpha[i] = (alpha[i] + g) * r;
    for (ptrdiff_t j = 0; j < m; ++j) beta[j] = (beta[j] - g) * r;
}

int fc_sinkhorn_log_ref(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *s)
{
    if (p == NULL || s == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t n = p->n, m = p->m, k = p->k, n_regs = p->n_regs;
    if (n < 1 || m < 1 || k < 1 || n_regs < 1 || p->max_inner < (n_regs > 1) || p->max_iter < 0 || p->n_threads < 1)
        return FC_BAD_ARGUMENT;
    if (!p->M || !p->a || !p->b || !p->regs || !s->alpha || !s->beta || !s->niter || !s->err || !s->state)
        return FC_BAD_ARGUMENT;
    for (ptrdiff_t r = 0; r < n_regs; ++r)
        if (bad_reg(p->regs[r])) return FC_BAD_ARGUMENT;
    if (s->err_hist && s->hist_cap < (n_regs - 1) * p->max_inner + p->max_iter) return FC_BAD_ARGUMENT;
    if (p->relax != 1.0) return FC_BAD_ARGUMENT; /* plain Sinkhorn only (see the top) */
    double *M = load_costs(p);
    double *v = malloc(sizeof(double) * (size_t)(n > m ? n : m)); /* lse scratch */
    double *lc = malloc(sizeof(double) * (size_t)m);             /* column lse */
    if (!M || !v || !lc) { free(M); free(v); free(lc); return FC_OUT_OF_MEMORY; }
    for (ptrdiff_t h = 0; h < k; ++h) {
        double *alpha = s->alpha + h * n, *beta = s->beta + h * m;          /* (k, n), (k, m) */
        double *hist = s->err_hist ? s->err_hist + h * s->hist_cap : NULL; /* (k, hist_cap) */
        const double *b = p->b + h * m;
        ptrdiff_t it = 0;
        double err = INFINITY;
        int state = -1;
        col_lse(M, n, m, alpha, p->regs[0], lc, v);
        col_update(m, b, lc, beta);
        for (ptrdiff_t stage = 0; state < 0; ++stage) {
            const double reg = p->regs[stage];
            const int last = stage == n_regs - 1;
            for (ptrdiff_t t = 0;;) {
                if (last && t >= p->max_iter) { state = FC_SK_MAX_ITER; break; }
                if (!last && t >= p->max_inner) break;
                row_update(M, n, m, p->a, beta, reg, alpha, v);
                col_lse(M, n, m, alpha, reg, lc, v);
                double e2 = 0.0;
                for (ptrdiff_t j = 0; j < m; ++j) {
                    const double c = exp(beta[j] + lc[j]); /* column sum of the updated plan */
                    e2 += (c - b[j]) * (c - b[j]);
                }
                err = sqrt(e2);
                if (hist) hist[it] = err;
                ++it;
                ++t;
                if (isnan(err)) { state = FC_SK_BREAKDOWN; break; }
                if (last && err < p->tol) { state = FC_SK_CONVERGED; break; }
                if (last && t >= p->max_iter) { state = FC_SK_MAX_ITER; break; }
                col_update(m, b, lc, beta);
                if (!last && (err < p->inner_tol || t >= p->max_inner)) break;
            }
            if (state < 0) next_reg(n, m, reg / p->regs[stage + 1], alpha, beta);
        }
        s->niter[h] = it; /* niter, err, state (k,) */
        s->err[h] = err;
        s->state[h] = state;
    }
    free(M); free(v); free(lc);
    return FC_OK;
}

/* ---------------------------------------------------------------- scaling form */

/* v_j = b_j / c_j (0 where b_j = 0) into vn; 0 if one is not finite */
static int col_scaling(ptrdiff_t m, const double *b, const double *c, double *vn)
{
    int ok = 1;
    for (ptrdiff_t j = 0; j < m; ++j) {
        vn[j] = b[j] > 0.0 ? b[j] / c[j] : 0.0;
        ok &= isfinite(vn[j]);
    }
    return ok;
}

/* c = K^T u */
static void col_sums(const double *K, ptrdiff_t n, ptrdiff_t m, const double *u, double *c)
{
    for (ptrdiff_t j = 0; j < m; ++j) {
        c[j] = 0.0;
        for (ptrdiff_t i = 0; i < n; ++i) c[j] += K[i * m + j] * u[i];
    }
}

int fc_sinkhorn_knopp_ref(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *s,
                          const fc_sinkhorn_plan_out *out)
{
    if (p == NULL || s == NULL || out == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t n = p->n, m = p->m, k = p->k, max_iter = p->max_iter;
    const fc_dtype dt = p->dtype;
    const double reg = p->reg;
    if (n < 1 || m < 1 || k < 1 || max_iter < 0 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (!p->M || !p->a || !p->b || !s->u || !s->v || !s->niter || !s->err || !s->state || !out->cost
        || !out->plogp)
        return FC_BAD_ARGUMENT;
    if ((out->plan && k != 1) || bad_reg(reg)) return FC_BAD_ARGUMENT;
    if (s->err_hist && s->hist_cap < max_iter) return FC_BAD_ARGUMENT;
    double *M = load_costs(p);
    double *K = malloc(sizeof(double) * (size_t)(n * m));
    double *c = malloc(sizeof(double) * (size_t)m), *vn = malloc(sizeof(double) * (size_t)m);
    double *uprev = malloc(sizeof(double) * (size_t)n);
    if (!M || !K || !c || !vn || !uprev) {
        free(M); free(K); free(c); free(vn); free(uprev);
        return FC_OUT_OF_MEMORY;
    }
    for (ptrdiff_t i = 0; i < n * m; ++i) { /* the kernel, stored in the problem's dtype */
        K[i] = exp(-M[i] / reg);
        if (dt == FC_FLOAT32) K[i] = (double)(float)K[i];
    }
    for (ptrdiff_t h = 0; h < k; ++h) {
        double *u = s->u + h * n, *v = s->v + h * m;                        /* (k, n), (k, m) */
        double *hist = s->err_hist ? s->err_hist + h * s->hist_cap : NULL; /* (k, hist_cap) */
        const double *a = p->a, *b = p->b + h * m;
        ptrdiff_t it = 0;
        double err = INFINITY;
        int state = -1;
        col_sums(K, n, m, u, c); /* start: v from the given u */
        if (col_scaling(m, b, c, vn)) memcpy(v, vn, sizeof(double) * (size_t)m);
        else state = FC_SK_BREAKDOWN;
        while (state < 0) {
            if (it >= max_iter) { state = FC_SK_MAX_ITER; break; }
            memcpy(uprev, u, sizeof(double) * (size_t)n);
            int finite = 1;
            for (ptrdiff_t i = 0; i < n; ++i) {
                double kv = 0.0;
                for (ptrdiff_t j = 0; j < m; ++j) kv += K[i * m + j] * v[j];
                u[i] = a[i] > 0.0 ? a[i] / kv : 0.0;
                finite &= isfinite(u[i]);
            }
            if (!finite) { /* undone: the last finite iterate */
                memcpy(u, uprev, sizeof(double) * (size_t)n);
                state = FC_SK_BREAKDOWN;
                break;
            }
            col_sums(K, n, m, u, c);
            double e2 = 0.0;
            for (ptrdiff_t j = 0; j < m; ++j) e2 += (v[j] * c[j] - b[j]) * (v[j] * c[j] - b[j]);
            err = sqrt(e2);
            if (hist) hist[it] = err;
            ++it;
            if (isnan(err)) { state = FC_SK_BREAKDOWN; break; }
            if (err < p->tol) { state = FC_SK_CONVERGED; break; }
            if (it >= max_iter) { state = FC_SK_MAX_ITER; break; }
            if (!col_scaling(m, b, c, vn)) { /* this iteration's u undone */
                memcpy(u, uprev, sizeof(double) * (size_t)n);
                state = FC_SK_BREAKDOWN;
                break;
            }
            memcpy(v, vn, sizeof(double) * (size_t)m);
        }
        s->niter[h] = it; /* niter, err, state (k,) */
        s->err[h] = err;
        s->state[h] = state;
        double cost = 0.0, plogp = 0.0; /* the plan of the last (finite) u, v */
        for (ptrdiff_t i = 0; i < n; ++i)
            for (ptrdiff_t j = 0; j < m; ++j) {
                const double P = u[i] * K[i * m + j] * v[j];
                if (out->plan) fc_ref_store(out->plan, dt, i * m + j, P); /* plan (n, m), k == 1 */
                cost += P * M[i * m + j];
                if (P > 0.0) plogp += P * (log(u[i]) + log(v[j]) - M[i * m + j] / reg);
            }
        out->cost[h] = cost; /* cost, plogp (k,) */
        out->plogp[h] = plogp;
    }
    free(M); free(K); free(c); free(vn); free(uprev);
    return FC_OK;
}

/* ---------------------------------------------------------------- the plan of one row update */

int fc_sinkhorn_plan_ref(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *s,
                         const fc_sinkhorn_plan_out *out)
{
    if (p == NULL || s == NULL || out == NULL || fc_ref_bad_dtype(p->dtype)) return FC_BAD_ARGUMENT;
    const ptrdiff_t n = p->n, m = p->m, k = p->k;
    const fc_dtype dt = p->dtype;
    if (n < 1 || m < 1 || k < 1 || p->n_threads < 1) return FC_BAD_ARGUMENT;
    if (!p->M || !p->a || !p->b || !s->alpha || !s->beta || !out->cost || !out->plogp || !s->err
        || (out->plan && k != 1))
        return FC_BAD_ARGUMENT;
    double *M = load_costs(p);
    double *x = malloc(sizeof(double) * (size_t)m); /* beta_j - M_ij inv_reg of a row */
    double *c = malloc(sizeof(double) * (size_t)m); /* column sums of the plan */
    if (!M || !x || !c) { free(M); free(x); free(c); return FC_OUT_OF_MEMORY; }
    for (ptrdiff_t h = 0; h < k; ++h) {
        const double *beta = s->beta + h * m, *b = p->b + h * m; /* (k, m) */
        double *alpha = s->alpha + h * n;                         /* (k, n) */
        double cost = 0.0, plogp = 0.0, e2 = 0.0;
        for (ptrdiff_t j = 0; j < m; ++j) c[j] = 0.0;
        for (ptrdiff_t i = 0; i < n; ++i) {
            const double a_i = p->a[i];
            for (ptrdiff_t j = 0; j < m; ++j) x[j] = beta[j] - M[i * m + j] * inv_reg;
            const double L = lse(x, m);
            const int kept = a_i > 0.0 && L > -INFINITY;
            alpha[i] = kept ? log(a_i) - L : -INFINITY;
            if (a_i > 0.0 && !kept) e2 += a_i * a_i; /* a row the columns cannot take */
            for (ptrdiff_t j = 0; j < m; ++j) {
                const double P = kept ? a_i * exp(x[j] - L) : 0.0;
                if (out->plan) fc_ref_store(out->plan, dt, i * m + j, P); /* plan (n, m), k == 1 */
                c[j] += P;
                cost += P * M[i * m + j];
                if (P > 0.0) plogp += P * (alpha[i] + x[j]);
            }
        }
        for (ptrdiff_t j = 0; j < m; ++j) e2 += (c[j] - b[j]) * (c[j] - b[j]);
        out->cost[h] = cost; /* cost, plogp, err (k,) */
        out->plogp[h] = plogp;
        s->err[h] = sqrt(e2);
    }
    free(M); free(x); free(c);
    return FC_OK;
}
