# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/ot/sinkhorn.h (log-domain and scaling Sinkhorn, plan and costs).
Validation happens in fastcore/sinkhorn.py; shapes are checked again here only as far
as memory safety needs.

The wrappers fill one request (``fc_sinkhorn_problem``, with the iterates in an
``fc_sinkhorn_state``) with the data pointers of the arrays (``fastcore._common.buffer_ptr``:
C-contiguous, the format not re-checked), the dtype of M and the path (``use_reference``), and
make one call per operation, which picks the implementation (csrc/ot/sinkhorn_dispatch.c)."""
import numpy as np

from fastcore._common cimport (Buffers, dtype_of, buffer_ptr, release_buffers, check_status, fc_dtype, fc_path,
                               FC_FLOAT32, FC_FLOAT64, FC_PATH_FAST, FC_PATH_REFERENCE, fc_set_signal_check,
                               python_signal_check)

fc_set_signal_check(python_signal_check)  # the iterations stop on Ctrl-C

cdef extern from "ot/sinkhorn.h" nogil:
    int FC_SK_CONVERGED
    int FC_SK_MAX_ITER
    int FC_SK_BREAKDOWN
    ctypedef struct fc_sinkhorn_problem:
        fc_dtype dtype
        fc_path path
        Py_ssize_t n, m, k
        const void *M
        const double *a
        const double *b
        const double *regs
        Py_ssize_t n_regs
        Py_ssize_t max_inner
        double inner_tol
        double reg
        Py_ssize_t max_iter
        double tol
        double relax
        int n_threads
    ctypedef struct fc_sinkhorn_state:
        double *alpha
        double *beta
        double *u
        double *v
        Py_ssize_t *niter
        double *err
        int *state
        double *err_hist
        Py_ssize_t hist_cap
    ctypedef struct fc_sinkhorn_plan_out:
        void *plan
        double *cost
        double *plogp
    int fc_sinkhorn_log(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st)
    int fc_sinkhorn_knopp(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                          const fc_sinkhorn_plan_out *out)
    int fc_sinkhorn_plan(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                         const fc_sinkhorn_plan_out *out)

CONVERGED = FC_SK_CONVERGED
MAX_ITER = FC_SK_MAX_ITER
BREAKDOWN = FC_SK_BREAKDOWN


# Which implementation answers every call of this module: the fast kernels, or the reference
# path of csrc/ot/sinkhorn_reference.c (use_reference; for the tests, which compare the two).
cdef fc_path _PATH = FC_PATH_FAST


def use_reference(bint on):
    """Route every Sinkhorn kernel call of this process to the C reference path (True) or back
    to the fast kernels (False).  The reference path does plain Sinkhorn only: a log-domain
    call with relax != 1 (over-relaxation) is a ValueError there.  For tests: not thread-safe,
    not public."""
    global _PATH
    _PATH = FC_PATH_REFERENCE if on else FC_PATH_FAST


cdef int _problem(Buffers *bs, fc_sinkhorn_problem *p, M, a, b, int n_threads) except -1:
    """The problem's dtype, path, shapes (n, m from M; k from b) and arrays; every option 0 / NULL."""
    p.dtype = <fc_dtype>dtype_of(M, "M")
    p.path = _PATH
    p.n, p.m, p.k = M.shape[0], M.shape[1], b.shape[0]
    p.M = buffer_ptr(bs, M, False)
    p.a = <const double *>buffer_ptr(bs, a, False)
    p.b = <const double *>buffer_ptr(bs, b, False)
    p.regs = NULL
    p.n_regs = 0
    p.max_inner = 0
    p.inner_tol = 0.0
    p.reg = 0.0
    p.max_iter = 0
    p.tol = 0.0
    p.relax = 0.0
    p.n_threads = n_threads
    return 0


cdef inline void _state_init(fc_sinkhorn_state *st) noexcept:
    st.alpha = NULL; st.beta = NULL; st.u = NULL; st.v = NULL
    st.niter = NULL; st.err = NULL; st.state = NULL; st.err_hist = NULL
    st.hist_cap = 0


def _check(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, a, b, x, y, niter, err, state, hist, Py_ssize_t cap):
    if a.shape[0] != n or b.shape[0] != k or b.shape[1] != m or x.shape[0] != k or x.shape[1] != n \
            or y.shape[0] != k or y.shape[1] != m or niter.shape[0] != k or err.shape[0] != k \
            or state.shape[0] != k:
        raise ValueError("sinkhorn: internal shape mismatch")
    if hist is not None and (hist.shape[0] != k or hist.shape[1] < cap):
        raise ValueError("sinkhorn: internal shape mismatch (err_hist)")


def sinkhorn_log(M, a, b, regs, Py_ssize_t max_inner, double inner_tol, Py_ssize_t max_iter, double tol,
                 double relax, alpha, beta, niter, err, state, err_hist, int n_threads):
    """Log-domain Sinkhorn on k histograms (rows of b); alpha is in/out, beta out.  M float32 or
    float64 (n, m); every other array float64 except niter (intp) and state (intc); err_hist
    (k, >= cap) or None."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1], k = b.shape[0], nr = regs.shape[0]
    cdef Py_ssize_t cap = (nr - 1) * max_inner + max_iter
    cdef Buffers bs
    bs.n = 0
    cdef fc_sinkhorn_problem p
    cdef fc_sinkhorn_state st
    cdef int status = 0
    _check(n, m, k, a, b, alpha, beta, niter, err, state, err_hist, cap)
    if nr < 1:
        raise ValueError("sinkhorn: empty reg schedule")
    try:
        _problem(&bs, &p, M, a, b, n_threads)
        p.regs = <const double *>buffer_ptr(&bs, regs, False)
        p.n_regs = nr
        p.max_inner = max_inner
        p.inner_tol = inner_tol
        p.max_iter = max_iter
        p.tol = tol
        p.relax = relax
        _state_init(&st)
        st.alpha = <double *>buffer_ptr(&bs, alpha, True)
        st.beta = <double *>buffer_ptr(&bs, beta, True)
        st.niter = <Py_ssize_t *>buffer_ptr(&bs, niter, True)
        st.err = <double *>buffer_ptr(&bs, err, True)
        st.state = <int *>buffer_ptr(&bs, state, True)
        st.err_hist = <double *>buffer_ptr(&bs, err_hist, True)
        st.hist_cap = cap
        with nogil:
            status = fc_sinkhorn_log(&p, &st)
    finally:
        release_buffers(&bs)
    check_status(status, "sinkhorn")


def sinkhorn_knopp(M, a, b, double reg, Py_ssize_t max_iter, double tol, u, v, niter, err, state, err_hist,
                   plan, cost, plogp, int n_threads):
    """Scaling-form Sinkhorn on k histograms; u is in/out, v out; then the plan (k == 1,
    optional, the dtype of M) and per-histogram <P, M> and sum P log P from the kernel."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1], k = b.shape[0]
    cdef Buffers bs
    bs.n = 0
    cdef fc_sinkhorn_problem p
    cdef fc_sinkhorn_state st
    cdef fc_sinkhorn_plan_out out
    cdef int status = 0
    _check(n, m, k, a, b, u, v, niter, err, state, err_hist, max_iter)
    if cost.shape[0] != k or plogp.shape[0] != k:
        raise ValueError("sinkhorn: internal shape mismatch (cost)")
    if plan is not None:
        if plan.shape[0] != n or plan.shape[1] != m or k != 1:
            raise ValueError("sinkhorn: internal shape mismatch (plan)")
    try:
        _problem(&bs, &p, M, a, b, n_threads)
        p.reg = reg
        p.max_iter = max_iter
        p.tol = tol
        _state_init(&st)
        st.u = <double *>buffer_ptr(&bs, u, True)
        st.v = <double *>buffer_ptr(&bs, v, True)
        st.niter = <Py_ssize_t *>buffer_ptr(&bs, niter, True)
        st.err = <double *>buffer_ptr(&bs, err, True)
        st.state = <int *>buffer_ptr(&bs, state, True)
        st.err_hist = <double *>buffer_ptr(&bs, err_hist, True)
        st.hist_cap = max_iter
        out.plan = buffer_ptr(&bs, plan, True)
        out.cost = <double *>buffer_ptr(&bs, cost, True)
        out.plogp = <double *>buffer_ptr(&bs, plogp, True)
        with nogil:
            status = fc_sinkhorn_knopp(&p, &st, &out)
    finally:
        release_buffers(&bs)
    check_status(status, "sinkhorn")


def sinkhorn_plan(M, a, b, alpha, beta, double inv_reg, plan, cost, plogp, err, int n_threads):
    """The plan of one more row update (k == 1, optional, the dtype of M), alpha refreshed to
    it, and per histogram <P, M>, sum P log P and the plan's marginal error."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1], k = alpha.shape[0]
    cdef Buffers bs
    bs.n = 0
    cdef fc_sinkhorn_problem p
    cdef fc_sinkhorn_state st
    cdef fc_sinkhorn_plan_out out
    cdef int status = 0
    if alpha.shape[1] != n or beta.shape[0] != k or beta.shape[1] != m or cost.shape[0] != k \
            or plogp.shape[0] != k or err.shape[0] != k or a.shape[0] != n or b.shape[0] != k \
            or b.shape[1] != m:
        raise ValueError("sinkhorn: internal shape mismatch (plan)")
    if plan is not None:
        if plan.shape[0] != n or plan.shape[1] != m or k != 1:
            raise ValueError("sinkhorn: internal shape mismatch (plan)")
    try:
        _problem(&bs, &p, M, a, b, n_threads)
        _state_init(&st)
        st.alpha = <double *>buffer_ptr(&bs, alpha, True)
        st.beta = <double *>buffer_ptr(&bs, beta, False)
        st.err = <double *>buffer_ptr(&bs, err, True)
        out.plan = buffer_ptr(&bs, plan, True)
        out.cost = <double *>buffer_ptr(&bs, cost, True)
        out.plogp = <double *>buffer_ptr(&bs, plogp, True)
        with nogil:
            status = fc_sinkhorn_plan(&p, inv_reg, &st, &out)
    finally:
        release_buffers(&bs)
    check_status(status, "sinkhorn")
