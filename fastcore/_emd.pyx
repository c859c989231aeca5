# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/emd.c: exact optimal transport by the network simplex (float64),
batched solves and document distances.  Validation happens in fastcore/ot.py."""
import numpy as np

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer

from fastcore._common cimport check_status, fc_set_signal_check, python_signal_check, raise_if_signalled

cdef extern from "emd.h" nogil:
    int fc_emd(Py_ssize_t n, Py_ssize_t m, const double *a, const double *b, const double *M,
               Py_ssize_t ldm, double *G, double *u, double *v, double *cost,
               long long max_iter, long long *n_iter)
    int fc_emd2_checked(Py_ssize_t n, Py_ssize_t m, const double *a, const double *b, const double *M,
                        double mass_rtol, double *cost)
    int fc_emd2_batch(Py_ssize_t n_problems, const Py_ssize_t *ns, const Py_ssize_t *ms,
                      const double *const *as_, const double *const *bs, const double *const *Ms,
                      double mass_rtol, double *costs, int *status, long long *iters, long long max_iter,
                      int n_threads)
    int fc_doc_pairwise(int metric, Py_ssize_t d,
                        const double *XA, const double *wa, const int64_t *offa, Py_ssize_t na,
                        const double *XB, const double *wb, const int64_t *offb, Py_ssize_t nb,
                        double *out, int n_threads)
    int fc_doc_knn(int metric, Py_ssize_t d,
                   const double *XQ, const double *wq, const int64_t *offq, Py_ssize_t nq,
                   const double *XC, const double *wc, const int64_t *offc, Py_ssize_t nc,
                   const double *cent_q, const double *cent_c, Py_ssize_t k, int prune,
                   int64_t *idx, double *dist, int64_t *n_exact, int64_t *n_rwmd, int n_threads)

MAX_ITER_REACHED = 4
fc_set_signal_check(python_signal_check)  # long solves stop on Ctrl-C
cdef int FC_OK_ = 0
_float64 = np.float64
_ndarray = np.ndarray
_f64 = np.dtype(np.float64)


cdef inline bint _is_empty(object w):
    return w is None or ((type(w) is list or type(w) is tuple) and len(w) == 0)


cdef inline bint _plain_vector(object w, Py_ssize_t n):
    return (type(w) is _ndarray and w.dtype is _f64 and w.ndim == 1 and w.shape[0] == n
            and w.flags.c_contiguous)


cdef inline bint _get_f64(object x, Py_buffer *view, int ndim):
    """Borrow the data of a C-contiguous float64 buffer of ndim dimensions; 0 if x is not
    one (then nothing is held).  Cheaper than a typed memoryview on the hot path."""
    try:
        PyObject_GetBuffer(x, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (BufferError, ValueError, TypeError):  # e.g. not C-contiguous
        return 0
    if (view.ndim != ndim or view.itemsize != 8 or view.format == NULL
            or view.format[0] != b'd' or view.format[1] != 0):
        PyBuffer_Release(view)
        return 0
    return 1


def emd2_fast(object a, object b, object M, double mass_rtol):
    """The cost, or None when the inputs need the general path (M not a C-contiguous
    float64 matrix, weights not plain float64 vectors of the right length, or bad values:
    the general path then reports them)."""
    cdef Py_buffer mb, ab, bb
    cdef const double *ap = NULL
    cdef const double *bp = NULL
    cdef double cost = 0.0
    cdef int status
    cdef bint has_a = 0, has_b = 0
    cdef Py_ssize_t n, m
    if type(M) is not _ndarray:
        return None
    if not _get_f64(M, &mb, 2):
        return None
    try:
        n = mb.shape[0]
        m = mb.shape[1]
        if n == 0 or m == 0:
            return None
        if not _is_empty(a):
            if type(a) is not _ndarray or not _get_f64(a, &ab, 1):
                return None
            has_a = 1
            if ab.shape[0] != n:
                return None
            ap = <const double *>ab.buf
        if not _is_empty(b):
            if type(b) is not _ndarray or not _get_f64(b, &bb, 1):
                return None
            has_b = 1
            if bb.shape[0] != m:
                return None
            bp = <const double *>bb.buf
        with nogil:
            status = fc_emd2_checked(n, m, ap, bp, <const double *>mb.buf, mass_rtol, &cost)
    finally:
        PyBuffer_Release(&mb)
        if has_a:
            PyBuffer_Release(&ab)
        if has_b:
            PyBuffer_Release(&bb)
    raise_if_signalled()
    if status != FC_OK_:
        return None
    return _float64(cost)


def emd(const double[::1] a, const double[::1] b, const double[:, ::1] M, bint want_plan,
        bint want_duals, long long max_iter):
    """(plan or None, cost, u or None, v or None, status, n_iter).

    A status FC_MAX_ITER_REACHED is returned, not raised; other failures raise."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1]
    cdef double cost = 0.0
    cdef long long n_iter = 0
    cdef int status
    cdef double[:, ::1] G
    cdef double[::1] u, v
    cdef double *gp = NULL
    cdef double *up = NULL
    cdef double *vp = NULL
    plan = None
    uo = vo = None
    if want_plan:
        plan = np.empty((n, m), dtype=np.float64)
        G = plan
        gp = &G[0, 0]
    if want_duals:
        uo = np.empty(n, dtype=np.float64)
        vo = np.empty(m, dtype=np.float64)
        u = uo
        v = vo
        up = &u[0]
        vp = &v[0]
    with nogil:
        status = fc_emd(n, m, &a[0], &b[0], &M[0, 0], m, gp, up, vp, &cost, max_iter, &n_iter)
    raise_if_signalled()
    if status != MAX_ITER_REACHED:
        check_status(status, "emd")
    return plan, cost, uo, vo, status, n_iter


def emd2_batch(list problems, double mass_rtol, long long max_iter, int n_threads):
    """costs (k,), status (k,), iterations (k,) for a list of (a, b, M): M float64
    C-contiguous (n, m), a / b float64 contiguous of the right length or None (uniform).
    Weights and masses are checked in C (status BAD_ARGUMENT / NON_FINITE per problem)."""
    cdef Py_ssize_t k = len(problems), t
    costs = np.zeros(k, dtype=np.float64)
    stat = np.zeros(k, dtype=np.intc)
    iters = np.zeros(k, dtype=np.longlong)
    if k == 0:
        return costs, stat, iters
    cdef double[::1] cv = costs
    cdef int[::1] sv = stat
    cdef long long[::1] iv = iters
    cdef Py_ssize_t *ns = <Py_ssize_t *>malloc(sizeof(Py_ssize_t) * 2 * k)
    cdef const double **ptrs = <const double **>malloc(sizeof(double *) * 3 * k)
    cdef const double[::1] av
    cdef const double[::1] bv
    cdef const double[:, ::1] Mv
    cdef int status
    if ns == NULL or ptrs == NULL:
        free(ns)
        free(ptrs)
        raise MemoryError("emd2_batch: cannot allocate the problem table")
    try:
        for t in range(k):
            a, b, M = problems[t]
            Mv = M
            ns[t] = Mv.shape[0]
            ns[k + t] = Mv.shape[1]
            ptrs[2 * k + t] = &Mv[0, 0]
            ptrs[t] = NULL
            ptrs[k + t] = NULL
            if a is not None:
                av = a
                ptrs[t] = &av[0]
            if b is not None:
                bv = b
                ptrs[k + t] = &bv[0]
        with nogil:
            status = fc_emd2_batch(k, ns, ns + k, ptrs, ptrs + k, ptrs + 2 * k, mass_rtol,
                                   &cv[0], &sv[0], &iv[0], max_iter, n_threads)
    finally:
        free(ns)
        free(ptrs)
    check_status(status, "emd2_batch")
    return costs, stat, iters


def emd2_columns(object a, const double[:, ::1] BT, const double[:, ::1] M, double mass_rtol,
                 long long max_iter, int n_threads):
    """costs (k,), status (k,), iterations (k,) of the k problems (a, BT[t], M), in one
    threaded C call (fc_emd2_batch with a shared cost matrix).  a: float64 contiguous of
    length n, or None (uniform).  Weights and masses are checked in C per problem."""
    cdef Py_ssize_t k = BT.shape[0], n = M.shape[0], t
    costs = np.zeros(k, dtype=np.float64)
    stat = np.zeros(k, dtype=np.intc)
    iters = np.zeros(k, dtype=np.longlong)
    if k == 0:
        return costs, stat, iters
    cdef double[::1] cv = costs
    cdef int[::1] sv = stat
    cdef long long[::1] iv = iters
    cdef const double[::1] av
    cdef const double *ap = NULL
    cdef int status
    if a is not None:
        av = a
        ap = &av[0]
    cdef Py_ssize_t *ns = <Py_ssize_t *>malloc(sizeof(Py_ssize_t) * 2 * k)
    cdef const double **ptrs = <const double **>malloc(sizeof(double *) * 3 * k)
    if ns == NULL or ptrs == NULL:
        free(ns)
        free(ptrs)
        raise MemoryError("emd2: cannot allocate the problem table")
    for t in range(k):
        ns[t] = n
        ns[k + t] = BT.shape[1]
        ptrs[t] = ap
        ptrs[k + t] = &BT[t, 0]
        ptrs[2 * k + t] = &M[0, 0]
    with nogil:
        status = fc_emd2_batch(k, ns, ns + k, ptrs, ptrs + k, ptrs + 2 * k, mass_rtol,
                               &cv[0], &sv[0], &iv[0], max_iter, n_threads)
    free(ns)
    free(ptrs)
    check_status(status, "emd2")
    return costs, stat, iters


def doc_pairwise(int metric, const double[:, ::1] XA, const double[::1] wa, const int64_t[::1] offa,
                 const double[:, ::1] XB, const double[::1] wb, const int64_t[::1] offb, int n_threads):
    """(na, nb) exact document distances."""
    cdef Py_ssize_t na = offa.shape[0] - 1, nb = offb.shape[0] - 1, d = XA.shape[1]
    out = np.zeros((na, nb), dtype=np.float64)
    cdef double[:, ::1] ov = out
    cdef int status
    if na == 0 or nb == 0:
        return out
    with nogil:
        status = fc_doc_pairwise(metric, d, &XA[0, 0], &wa[0], &offa[0], na,
                                 &XB[0, 0], &wb[0], &offb[0], nb, &ov[0, 0], n_threads)
    check_status(status, "pairwise")
    return out


def doc_knn(int metric, const double[:, ::1] XQ, const double[::1] wq, const int64_t[::1] offq,
            const double[:, ::1] XC, const double[::1] wc, const int64_t[::1] offc,
            const double[:, ::1] cq, const double[:, ::1] cc, Py_ssize_t k, bint prune, int n_threads):
    """(idx (nq, k), dist (nq, k), n_exact (nq,), n_bound (nq,))."""
    cdef Py_ssize_t nq = offq.shape[0] - 1, nc = offc.shape[0] - 1, d = XQ.shape[1]
    idx = np.zeros((nq, k), dtype=np.int64)
    dist = np.zeros((nq, k), dtype=np.float64)
    nex = np.zeros(nq, dtype=np.int64)
    nrw = np.zeros(nq, dtype=np.int64)
    cdef int64_t[:, ::1] iv = idx
    cdef double[:, ::1] dv = dist
    cdef int64_t[::1] ev = nex
    cdef int64_t[::1] rv = nrw
    cdef int status
    if nq == 0:
        return idx, dist, nex, nrw
    with nogil:
        status = fc_doc_knn(metric, d, &XQ[0, 0], &wq[0], &offq[0], nq, &XC[0, 0], &wc[0], &offc[0], nc,
                            &cq[0, 0], &cc[0, 0], k, prune, &iv[0, 0], &dv[0, 0], &ev[0], &rv[0], n_threads)
    check_status(status, "knn")
    return idx, dist, nex, nrw
