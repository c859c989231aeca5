# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/sinkhorn.c (log-domain and scaling Sinkhorn, plan and costs).
Validation happens in fastcore/sinkhorn.py; shapes are checked again here only as far
as memory safety needs."""
from cython cimport floating

from fastcore._common cimport check_status, fc_set_signal_check, python_signal_check

fc_set_signal_check(python_signal_check)  # the iterations stop on Ctrl-C

cdef extern from "sinkhorn.h" nogil:
    int FC_SK_CONVERGED
    int FC_SK_MAX_ITER
    int FC_SK_BREAKDOWN
    int fc_sinkhorn_log_f32(const float *M, Py_ssize_t n, Py_ssize_t m, Py_ssize_t k,
                            const double *a, const double *b, const double *regs,
                            Py_ssize_t n_regs, Py_ssize_t max_inner, double inner_tol,
                            Py_ssize_t max_iter, double tol, double relax, double *alpha, double *beta,
                            Py_ssize_t *niter, double *err, int *state, double *err_hist,
                            Py_ssize_t hist_cap, int n_threads)
    int fc_sinkhorn_log_f64(const double *M, Py_ssize_t n, Py_ssize_t m, Py_ssize_t k,
                            const double *a, const double *b, const double *regs,
                            Py_ssize_t n_regs, Py_ssize_t max_inner, double inner_tol,
                            Py_ssize_t max_iter, double tol, double relax, double *alpha, double *beta,
                            Py_ssize_t *niter, double *err, int *state, double *err_hist,
                            Py_ssize_t hist_cap, int n_threads)
    int fc_sinkhorn_knopp_f32(const float *M, Py_ssize_t n, Py_ssize_t m, Py_ssize_t k,
                              const double *a, const double *b, double reg,
                              Py_ssize_t max_iter, double tol, double *u, double *v,
                              Py_ssize_t *niter, double *err, int *state, double *err_hist,
                              Py_ssize_t hist_cap, float *plan, double *cost, double *plogp,
                              int n_threads)
    int fc_sinkhorn_knopp_f64(const double *M, Py_ssize_t n, Py_ssize_t m, Py_ssize_t k,
                              const double *a, const double *b, double reg,
                              Py_ssize_t max_iter, double tol, double *u, double *v,
                              Py_ssize_t *niter, double *err, int *state, double *err_hist,
                              Py_ssize_t hist_cap, double *plan, double *cost, double *plogp,
                              int n_threads)
    int fc_sinkhorn_plan_f32(const float *M, Py_ssize_t n, Py_ssize_t m, Py_ssize_t k,
                             const double *a, const double *b, double *alpha, const double *beta,
                             double inv_reg, float *plan, double *cost, double *plogp, double *err,
                             int n_threads)
    int fc_sinkhorn_plan_f64(const double *M, Py_ssize_t n, Py_ssize_t m, Py_ssize_t k,
                             const double *a, const double *b, double *alpha, const double *beta,
                             double inv_reg, double *plan, double *cost, double *plogp, double *err,
                             int n_threads)

CONVERGED = FC_SK_CONVERGED
MAX_ITER = FC_SK_MAX_ITER
BREAKDOWN = FC_SK_BREAKDOWN


cdef inline double *_opt(double[:, ::1] x):
    return &x[0, 0] if x is not None else NULL


def _check(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, a, b, x, y, niter, err, state, hist, Py_ssize_t cap):
    if a.shape[0] != n or b.shape[0] != k or b.shape[1] != m or x.shape[0] != k or x.shape[1] != n \
            or y.shape[0] != k or y.shape[1] != m or niter.shape[0] != k or err.shape[0] != k \
            or state.shape[0] != k:
        raise ValueError("sinkhorn: internal shape mismatch")
    if hist is not None and (hist.shape[0] != k or hist.shape[1] < cap):
        raise ValueError("sinkhorn: internal shape mismatch (err_hist)")


def sinkhorn_log(const floating[:, ::1] M, const double[::1] a, const double[:, ::1] b,
                 const double[::1] regs, Py_ssize_t max_inner, double inner_tol,
                 Py_ssize_t max_iter, double tol, double relax, double[:, ::1] alpha, double[:, ::1] beta,
                 Py_ssize_t[::1] niter, double[::1] err, int[::1] state, double[:, ::1] err_hist,
                 int n_threads):
    """Log-domain Sinkhorn on k histograms (rows of b); alpha is in/out, beta out."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1], k = b.shape[0], nr = regs.shape[0]
    cdef Py_ssize_t cap = (nr - 1) * max_inner + max_iter
    cdef double *hp = _opt(err_hist)
    cdef int status
    _check(n, m, k, a, b, alpha, beta, niter, err, state, err_hist, cap)
    if nr < 1:
        raise ValueError("sinkhorn: empty reg schedule")
    with nogil:
        if floating is float:
            status = fc_sinkhorn_log_f32(&M[0, 0], n, m, k, &a[0], &b[0, 0], &regs[0], nr,
                                         max_inner, inner_tol, max_iter, tol, relax, &alpha[0, 0],
                                         &beta[0, 0], &niter[0], &err[0], &state[0], hp, cap,
                                         n_threads)
        else:
            status = fc_sinkhorn_log_f64(&M[0, 0], n, m, k, &a[0], &b[0, 0], &regs[0], nr,
                                         max_inner, inner_tol, max_iter, tol, relax, &alpha[0, 0],
                                         &beta[0, 0], &niter[0], &err[0], &state[0], hp, cap,
                                         n_threads)
    check_status(status, "sinkhorn")


def sinkhorn_knopp(const floating[:, ::1] M, const double[::1] a, const double[:, ::1] b,
                   double reg, Py_ssize_t max_iter, double tol, double[:, ::1] u, double[:, ::1] v,
                   Py_ssize_t[::1] niter, double[::1] err, int[::1] state, double[:, ::1] err_hist,
                   floating[:, ::1] plan, double[::1] cost, double[::1] plogp, int n_threads):
    """Scaling-form Sinkhorn on k histograms; u is in/out, v out; then the plan (k == 1,
    optional) and per-histogram <P, M> and sum P log P from the kernel."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1], k = b.shape[0]
    cdef double *hp = _opt(err_hist)
    cdef floating *pp = NULL
    cdef int status
    _check(n, m, k, a, b, u, v, niter, err, state, err_hist, max_iter)
    if cost.shape[0] != k or plogp.shape[0] != k:
        raise ValueError("sinkhorn: internal shape mismatch (cost)")
    if plan is not None:
        if plan.shape[0] != n or plan.shape[1] != m or k != 1:
            raise ValueError("sinkhorn: internal shape mismatch (plan)")
        pp = &plan[0, 0]
    with nogil:
        if floating is float:
            status = fc_sinkhorn_knopp_f32(&M[0, 0], n, m, k, &a[0], &b[0, 0], reg, max_iter, tol,
                                           &u[0, 0], &v[0, 0], &niter[0], &err[0], &state[0], hp,
                                           max_iter, pp, &cost[0], &plogp[0], n_threads)
        else:
            status = fc_sinkhorn_knopp_f64(&M[0, 0], n, m, k, &a[0], &b[0, 0], reg, max_iter, tol,
                                           &u[0, 0], &v[0, 0], &niter[0], &err[0], &state[0], hp,
                                           max_iter, pp, &cost[0], &plogp[0], n_threads)
    check_status(status, "sinkhorn")


def sinkhorn_plan(const floating[:, ::1] M, const double[::1] a, const double[:, ::1] b,
                  double[:, ::1] alpha, const double[:, ::1] beta, double inv_reg,
                  floating[:, ::1] plan, double[::1] cost, double[::1] plogp, double[::1] err,
                  int n_threads):
    """The plan of one more row update (k == 1, optional), alpha refreshed to it, and per
    histogram <P, M>, sum P log P and the plan's marginal error."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1], k = alpha.shape[0]
    cdef floating *pp = NULL
    cdef int status
    if alpha.shape[1] != n or beta.shape[0] != k or beta.shape[1] != m or cost.shape[0] != k \
            or plogp.shape[0] != k or err.shape[0] != k or a.shape[0] != n or b.shape[0] != k \
            or b.shape[1] != m:
        raise ValueError("sinkhorn: internal shape mismatch (plan)")
    if plan is not None:
        if plan.shape[0] != n or plan.shape[1] != m or k != 1:
            raise ValueError("sinkhorn: internal shape mismatch (plan)")
        pp = &plan[0, 0]
    with nogil:
        if floating is float:
            status = fc_sinkhorn_plan_f32(&M[0, 0], n, m, k, &a[0], &b[0, 0], &alpha[0, 0], &beta[0, 0],
                                          inv_reg, pp, &cost[0], &plogp[0], &err[0], n_threads)
        else:
            status = fc_sinkhorn_plan_f64(&M[0, 0], n, m, k, &a[0], &b[0, 0], &alpha[0, 0], &beta[0, 0],
                                          inv_reg, pp, &cost[0], &plogp[0], &err[0], n_threads)
    check_status(status, "sinkhorn")
