/* Entropic optimal transport (Sinkhorn), log domain and scaling form.
 *
 * Problem: min_P <P, M> + reg * sum P_ij log P_ij  s.t.  P 1 = a, P^T 1 = b,
 * solved by alternate projections on the two marginals.  P is parametrised as
 *     P_ij = exp(alpha_i + beta_j - M_ij / reg)         (alpha = log u, beta = log v)
 * so alpha, beta are POT's `log_u`, `log_v` (the dual potentials divided by reg).
 *
 * Layout: M is C-contiguous (n, m), float or double by the problem's dtype.  Everything
 * else is double whatever M is: a (n), b (k, m) = k target histograms, one per row,
 * alpha (k, n), beta (k, m).  The k histograms share M and a and are computed in
 * the same passes over M, but each one iterates and stops exactly as it would on
 * its own (results are bitwise equal to k separate calls).
 *
 * One iteration = one pass over M.  For each row i it computes the row update
 *     alpha_i = log a_i - log sum_j exp(beta_j - M_ij / reg)
 * (max-shifted, fc_exp_f64, double sums) and, from the same exponentials, the
 * column sums c_j = sum_i P_ij of the updated plan.  The stopping error is
 * ||c - b||_2 (row marginals are exact after the row update, as in POT), and the
 * column update is beta_j += log(b_j / c_j).  A column whose c_j underflows
 * (all its entries far below their row maxima) is recomputed by an exact
 * column log-sum-exp, so the iteration is stable for any reg > 0.
 * exp(-M/reg) is never formed: one row of exponentials at a time.
 *
 * Threads: rows are cut into blocks whose size depends on n only; each block
 * accumulates its own column sums and blocks are added in a fixed order, so the
 * results do not depend on n_threads.
 *
 * Per-histogram outcome in state[h]: FC_SK_CONVERGED, FC_SK_MAX_ITER, FC_SK_BREAKDOWN
 * (the scaling form met a zero or non-finite scaling; u, v are those of the
 * last finite iterate).  Errors after each iteration go to err_hist[h * hist_cap + t]
 * (err_hist may be NULL), the last one to err[h], iterations done to niter[h].
 *
 * Entry points return FC_OK, FC_BAD_ARGUMENT or FC_OUT_OF_MEMORY.
 */
#ifndef FC_SINKHORN_H
#define FC_SINKHORN_H

#include <stddef.h>
#include "core/fc_request.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FC_SK_CONVERGED 0
#define FC_SK_MAX_ITER 1
#define FC_SK_BREAKDOWN 2

/* The problem every Sinkhorn operation reads: the costs, the marginals and the options of the
 * iterations.  M (and the plan of fc_sinkhorn_knopp / fc_sinkhorn_plan) is float or double by
 * dtype; everything else is double. */
typedef struct fc_sinkhorn_problem {
    fc_dtype dtype;         /* of M and of the plan */
    fc_path path;           /* FC_PATH_REFERENCE: ot/sinkhorn_reference.c answers (tests) */
    ptrdiff_t n, m, k;      /* sources, targets, target histograms (each >= 1) */
    const void *M;          /* (n, m) costs */
    const double *a;        /* (n,) source weights */
    const double *b;        /* (k, m) target histograms, one per row */
    /* fc_sinkhorn_log: regs (n_regs,), decreasing regularisations, the last one the target.
     *   Each stage but the last runs until err < inner_tol or max_inner iterations; the
     *   potentials are carried over in cost units (alpha * reg is kept). */
    const double *regs;
    ptrdiff_t n_regs;
    ptrdiff_t max_inner;    /* >= 1 when n_regs > 1 (a stage takes at least one iteration) */
    double inner_tol;
    double reg;             /* fc_sinkhorn_knopp: the regularisation (> 0, finite) */
    /* The last stage (fc_sinkhorn_log) / the iterations (fc_sinkhorn_knopp) run until
     * err < tol or max_iter iterations. */
    ptrdiff_t max_iter;
    double tol;
    /* fc_sinkhorn_log: over-relaxation at the target reg (alpha <- alpha + relax * (update -
     *   alpha), same for beta; the error then adds ||P 1 - a||_2): 1 = plain Sinkhorn (POT's
     *   iterates), a value in (1, 2) = fixed, 0 = automatic (from iteration 20 of the stage,
     *   every 50 iterations: the observed rate gives that of plain Sinkhorn r, and
     *   omega = 2 / (1 + sqrt(1 - r)) of linear SOR theory, capped at 1.99; back to 1 for
     *   good when the error stalls, see sinkhorn_unit.h).  The reference path does 1 only. */
    double relax;
    int n_threads;          /* at most this many threads (>= 1) */
} fc_sinkhorn_problem;

/* The iterates and the per-histogram outcome of the iterations (see the top of this header).
 *   alpha (k, n): fc_sinkhorn_log: in, the starting log_u at regs[0] (zeros for a cold start);
 *     out, log_u at the target.  fc_sinkhorn_plan: in, the last log_u (a shift hint); out,
 *     the log_u of its row update.
 *   beta (k, m): fc_sinkhorn_log: out only (the first step is the exact column update from
 *     alpha, as in POT).  fc_sinkhorn_plan: in.
 *   u (k, n), v (k, m): fc_sinkhorn_knopp's scalings.  u: in, starting u (POT: 1/n); out,
 *     final u.  v: out.
 *   niter (k,), err (k,), state (k,): iterations done, last error, FC_SK_* outcome
 *     (fc_sinkhorn_plan writes err only: the plan's marginal error).
 *   err_hist (k, hist_cap) or NULL: the error after each iteration; fc_sinkhorn_log needs
 *     hist_cap >= (n_regs - 1) * max_inner + max_iter, fc_sinkhorn_knopp hist_cap >= max_iter. */
typedef struct fc_sinkhorn_state {
    double *alpha, *beta;
    double *u, *v;
    ptrdiff_t *niter;
    double *err;
    int *state;
    double *err_hist;
    ptrdiff_t hist_cap;
} fc_sinkhorn_state;

/* What fc_sinkhorn_knopp and fc_sinkhorn_plan write besides the state: plan (n, m) of the
 * problem's dtype, or NULL (only when k == 1); per histogram, cost (k,) = <P, M> and
 * plogp (k,) = sum P log P (0 log 0 = 0). */
typedef struct fc_sinkhorn_plan_out {
    void *plan;
    double *cost;
    double *plogp;
} fc_sinkhorn_plan_out;

/* Log-domain Sinkhorn with an optional reg schedule (epsilon scaling): reads the problem's
 * regs, max_inner, inner_tol, max_iter, tol and relax; alpha, beta, niter, err, state and
 * err_hist of st. */
int fc_sinkhorn_log(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st);

/* Scaling form (Sinkhorn-Knopp) on K = exp(-M/reg) stored once in the problem's dtype: reads
 * reg, max_iter and tol; u, v, niter, err, state and err_hist of st.  Then, from K (no exp):
 * P = diag(u) K diag(v), out's cost and plogp as for fc_sinkhorn_plan, and the plan when not
 * NULL (k == 1). */
int fc_sinkhorn_knopp(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                      const fc_sinkhorn_plan_out *out);

/* The plan of one more row update from st->beta (the returned plan: its rows sum to a
 * exactly, as after POT's last u update): P_ij = a_i exp(beta_j - M_ij * inv_reg)
 * / sum_l exp(beta_l - M_il * inv_reg), computed shifted by the row's log-sum-exp, so
 * that it keeps its accuracy where alpha_i + beta_j - M_ij / reg loses digits (tiny
 * reg: potentials ~ |M| / reg).  st->alpha: in, the last log_u (a shift hint); out, that
 * row update's log_u.  Per histogram: out->cost[h] = <P, M>, out->plogp[h] = sum P log P
 * (0 log 0 = 0), st->err[h] = the plan's marginal error ||P^T 1 - b_h||_2 (plus the mass
 * of rows the columns cannot take); the plan (n, m) written when not NULL (k == 1). */
int fc_sinkhorn_plan(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                     const fc_sinkhorn_plan_out *out);

#ifdef __cplusplus
}
#endif
#endif /* FC_SINKHORN_H */
