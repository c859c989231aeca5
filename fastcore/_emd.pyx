# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/ot/emd.h: exact optimal transport by the network simplex (float64),
batched solves and document distances.  Validation happens in fastcore/ot.py.

The wrappers fill one request (``fc_emd_problem``, ``fc_emd_batch`` or ``fc_doc_problem``)
with the data pointers of the arrays (``fastcore._common.buffer_ptr``: C-contiguous, the
format not re-checked except on emd2_fast's path) and make one call per operation."""
import numpy as np

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer

from fastcore._common cimport (Buffers, buffer_ptr, release_buffers, check_status, fc_set_signal_check,
                               python_signal_check, raise_if_signalled)

cdef extern from "ot/emd.h" nogil:
    ctypedef struct fc_emd_problem:
        Py_ssize_t n, m
        const double *a
        const double *b
        const double *M
        Py_ssize_t ldm
        long long max_iter
    ctypedef struct fc_emd_out:
        double *G
        int64_t *rows
        int64_t *cols
        double *vals
        Py_ssize_t nnz
        double *u
        double *v
        double cost
        long long n_iter
    ctypedef struct fc_emd_batch:
        Py_ssize_t n_problems
        const fc_emd_problem *problems
        double mass_rtol
        int n_threads
    ctypedef struct fc_doc_set:
        const double *X
        const double *w
        const int64_t *off
        Py_ssize_t count
        const double *cent
    ctypedef struct fc_doc_problem:
        int metric
        Py_ssize_t d
        fc_doc_set A
        fc_doc_set B
        int n_threads
    ctypedef struct fc_doc_knn_out:
        int64_t *idx
        double *dist
        int64_t *n_exact
        int64_t *n_rwmd
    int fc_emd(const fc_emd_problem *p, fc_emd_out *out)
    int fc_emd2_checked(const fc_emd_problem *p, double mass_rtol, fc_emd_out *out)
    int fc_emd2_batch(const fc_emd_batch *p, double *costs, int *status, long long *iters)
    int fc_doc_pairwise(const fc_doc_problem *p, double *out)
    int fc_doc_knn(const fc_doc_problem *p, Py_ssize_t k, int prune, const fc_doc_knn_out *out)

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


cdef Py_buffer *_f64_view(Buffers *bs, object x, int ndim) except? NULL:
    """x's buffer (held in bs) when x is a C-contiguous float64 buffer of ndim dimensions;
    NULL if it is not one.  Cheaper than a typed memoryview on the hot path."""
    cdef Py_buffer *v = &bs.v[bs.n]
    try:
        PyObject_GetBuffer(x, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (BufferError, ValueError, TypeError):  # e.g. not C-contiguous
        return NULL
    bs.n += 1
    if (v.ndim != ndim or v.itemsize != 8 or v.format == NULL
            or v.format[0] != b'd' or v.format[1] != 0):
        return NULL
    return v


cdef inline void _problem_init(fc_emd_problem *p, Py_ssize_t n, Py_ssize_t m, long long max_iter) noexcept:
    """An (n, m) problem with a C-contiguous M (ldm = m); a, b and M NULL."""
    p.n = n
    p.m = m
    p.a = NULL
    p.b = NULL
    p.M = NULL
    p.ldm = m
    p.max_iter = max_iter


cdef inline void _out_init(fc_emd_out *o) noexcept:
    o.G = NULL
    o.rows = NULL
    o.cols = NULL
    o.vals = NULL
    o.nnz = 0
    o.u = NULL
    o.v = NULL
    o.cost = 0.0
    o.n_iter = 0


def emd2_fast(object a, object b, object M, double mass_rtol):
    """The cost, or None when the inputs need the general path (M not a C-contiguous
    float64 matrix, weights not plain float64 vectors of the right length, or bad values:
    the general path then reports them)."""
    cdef Buffers bs
    bs.n = 0
    cdef Py_buffer *v
    cdef fc_emd_problem p
    cdef fc_emd_out o
    cdef int status = 0
    if type(M) is not _ndarray:
        return None
    try:
        v = _f64_view(&bs, M, 2)
        if v == NULL:
            return None
        if v.shape[0] == 0 or v.shape[1] == 0:
            return None
        _problem_init(&p, v.shape[0], v.shape[1], 0)  # no iteration limit
        p.M = <const double *>v.buf
        if not _is_empty(a):
            if type(a) is not _ndarray:
                return None
            v = _f64_view(&bs, a, 1)
            if v == NULL or v.shape[0] != p.n:
                return None
            p.a = <const double *>v.buf
        if not _is_empty(b):
            if type(b) is not _ndarray:
                return None
            v = _f64_view(&bs, b, 1)
            if v == NULL or v.shape[0] != p.m:
                return None
            p.b = <const double *>v.buf
        _out_init(&o)
        with nogil:
            status = fc_emd2_checked(&p, mass_rtol, &o)
    finally:
        release_buffers(&bs)
    raise_if_signalled()
    if status != FC_OK_:
        return None
    return _float64(o.cost)


def emd(a, b, M, bint want_plan, bint want_duals, long long max_iter):
    """(plan or None, cost, u or None, v or None, status, n_iter) for float64 C-contiguous a (n,),
    b (m,) and M (n, m).

    A status FC_MAX_ITER_REACHED is returned, not raised; other failures raise."""
    cdef Py_ssize_t n = M.shape[0], m = M.shape[1]
    cdef Buffers bs
    bs.n = 0
    cdef fc_emd_problem p
    cdef fc_emd_out o
    cdef int status = 0
    plan = None
    uo = vo = None
    if want_plan:
        plan = np.empty((n, m), dtype=np.float64)
    if want_duals:
        uo = np.empty(n, dtype=np.float64)
        vo = np.empty(m, dtype=np.float64)
    try:
        _problem_init(&p, n, m, max_iter)
        p.a = <const double *>buffer_ptr(&bs, a, False)
        p.b = <const double *>buffer_ptr(&bs, b, False)
        p.M = <const double *>buffer_ptr(&bs, M, False)
        _out_init(&o)
        o.G = <double *>buffer_ptr(&bs, plan, True)
        o.u = <double *>buffer_ptr(&bs, uo, True)
        o.v = <double *>buffer_ptr(&bs, vo, True)
        with nogil:
            status = fc_emd(&p, &o)
    finally:
        release_buffers(&bs)
    raise_if_signalled()
    if status != MAX_ITER_REACHED:
        check_status(status, "emd")
    return plan, o.cost, uo, vo, status, o.n_iter


cdef int _batch_call(fc_emd_batch *req, costs, stat, iters, str where) except -1:
    """fc_emd2_batch(req) into costs, stat, iters (float64, intc, longlong; (n_problems,))."""
    cdef Buffers bs
    bs.n = 0
    cdef int status = 0
    cdef double *cp
    cdef int *sp
    cdef long long *ip
    try:
        cp = <double *>buffer_ptr(&bs, costs, True)
        sp = <int *>buffer_ptr(&bs, stat, True)
        ip = <long long *>buffer_ptr(&bs, iters, True)
        with nogil:
            status = fc_emd2_batch(req, cp, sp, ip)
    finally:
        release_buffers(&bs)
    check_status(status, where)
    return 0


def emd2_batch(list problems, double mass_rtol, long long max_iter, int n_threads):
    """costs (k,), status (k,), iterations (k,) for a list of (a, b, M): M float64
    C-contiguous (n, m), a / b float64 contiguous of the right length or None (uniform).
    Weights and masses are checked in C (status BAD_ARGUMENT / NON_FINITE per problem)."""
    cdef Py_ssize_t k = len(problems), t, nv = 0
    costs = np.zeros(k, dtype=np.float64)
    stat = np.zeros(k, dtype=np.intc)
    iters = np.zeros(k, dtype=np.longlong)
    if k == 0:
        return costs, stat, iters
    # one request per problem, and the buffers of its arrays (up to 3), held until the call returns:
    # more than a Buffers holds
    cdef fc_emd_problem *pbs = <fc_emd_problem *>malloc(sizeof(fc_emd_problem) * k)
    cdef Py_buffer *views = <Py_buffer *>malloc(sizeof(Py_buffer) * 3 * k)
    cdef Py_buffer *v
    cdef fc_emd_batch req
    if pbs == NULL or views == NULL:
        free(pbs)
        free(views)
        raise MemoryError("emd2_batch: cannot allocate the problem table")
    try:
        for t in range(k):
            a, b, M = problems[t]
            v = &views[nv]
            PyObject_GetBuffer(M, v, PyBUF_C_CONTIGUOUS)
            nv += 1
            if v.ndim != 2:
                raise ValueError(f"emd2_batch: internal: M of problems[{t}] is not 2-d")
            _problem_init(&pbs[t], v.shape[0], v.shape[1], max_iter)
            pbs[t].M = <const double *>v.buf
            if a is not None:
                v = &views[nv]
                PyObject_GetBuffer(a, v, PyBUF_C_CONTIGUOUS)
                nv += 1
                pbs[t].a = <const double *>v.buf
            if b is not None:
                v = &views[nv]
                PyObject_GetBuffer(b, v, PyBUF_C_CONTIGUOUS)
                nv += 1
                pbs[t].b = <const double *>v.buf
        req.n_problems = k
        req.problems = pbs
        req.mass_rtol = mass_rtol
        req.n_threads = n_threads
        _batch_call(&req, costs, stat, iters, "emd2_batch")
    finally:
        for t in range(nv):
            PyBuffer_Release(&views[t])
        free(views)
        free(pbs)
    return costs, stat, iters


def emd2_columns(object a, BT, M, double mass_rtol, long long max_iter, int n_threads):
    """costs (k,), status (k,), iterations (k,) of the k problems (a, BT[t], M), in one
    threaded C call (fc_emd2_batch with a shared cost matrix).  a: float64 contiguous of
    length n, or None (uniform); BT float64 C-contiguous (k, m), M float64 C-contiguous (n, m).
    Weights and masses are checked in C per problem."""
    cdef Py_ssize_t k = BT.shape[0], n = M.shape[0], m = BT.shape[1], t
    costs = np.zeros(k, dtype=np.float64)
    stat = np.zeros(k, dtype=np.intc)
    iters = np.zeros(k, dtype=np.longlong)
    if k == 0:
        return costs, stat, iters
    cdef Buffers bs
    bs.n = 0
    cdef const double *ap
    cdef const double *bp
    cdef const double *Mp
    cdef fc_emd_batch req
    cdef fc_emd_problem *pbs = <fc_emd_problem *>malloc(sizeof(fc_emd_problem) * k)
    if pbs == NULL:
        raise MemoryError("emd2: cannot allocate the problem table")
    try:
        ap = <const double *>buffer_ptr(&bs, a, False)
        bp = <const double *>buffer_ptr(&bs, BT, False)
        Mp = <const double *>buffer_ptr(&bs, M, False)
        for t in range(k):
            _problem_init(&pbs[t], n, m, max_iter)
            pbs[t].a = ap
            pbs[t].b = bp + t * m
            pbs[t].M = Mp
        req.n_problems = k
        req.problems = pbs
        req.mass_rtol = mass_rtol
        req.n_threads = n_threads
        _batch_call(&req, costs, stat, iters, "emd2")
    finally:
        release_buffers(&bs)
        free(pbs)
    return costs, stat, iters


cdef int _doc_set(Buffers *bs, fc_doc_set *s, X, w, off, cent) except -1:
    """The documents of X (rows) with weights w and offsets off (count + 1,), centroids cent
    (count, d) or None."""
    s.X = <const double *>buffer_ptr(bs, X, False)
    s.w = <const double *>buffer_ptr(bs, w, False)
    s.off = <const int64_t *>buffer_ptr(bs, off, False)
    s.count = off.shape[0] - 1
    s.cent = <const double *>buffer_ptr(bs, cent, False)
    return 0


def doc_pairwise(int metric, XA, wa, offa, XB, wb, offb, int n_threads):
    """(na, nb) exact document distances (X* float64 (rows, d), w* float64, off* int64; all
    C-contiguous)."""
    cdef Py_ssize_t na = offa.shape[0] - 1, nb = offb.shape[0] - 1
    out = np.zeros((na, nb), dtype=np.float64)
    if na == 0 or nb == 0:
        return out
    cdef Buffers bs
    bs.n = 0
    cdef fc_doc_problem p
    cdef double *op
    cdef int status = 0
    try:
        p.metric = metric
        p.d = XA.shape[1]
        p.n_threads = n_threads
        _doc_set(&bs, &p.A, XA, wa, offa, None)
        _doc_set(&bs, &p.B, XB, wb, offb, None)
        op = <double *>buffer_ptr(&bs, out, True)
        with nogil:
            status = fc_doc_pairwise(&p, op)
    finally:
        release_buffers(&bs)
    check_status(status, "pairwise")
    return out


def doc_knn(int metric, XQ, wq, offq, XC, wc, offc, cq, cc, Py_ssize_t k, bint prune, int n_threads):
    """(idx (nq, k), dist (nq, k), n_exact (nq,), n_bound (nq,)); cq (nq, d), cc (nc, d): the
    centroids of the queries and of the corpus."""
    cdef Py_ssize_t nq = offq.shape[0] - 1
    idx = np.zeros((nq, k), dtype=np.int64)
    dist = np.zeros((nq, k), dtype=np.float64)
    nex = np.zeros(nq, dtype=np.int64)
    nrw = np.zeros(nq, dtype=np.int64)
    if nq == 0:
        return idx, dist, nex, nrw
    cdef Buffers bs
    bs.n = 0
    cdef fc_doc_problem p
    cdef fc_doc_knn_out o
    cdef int status = 0
    try:
        p.metric = metric
        p.d = XQ.shape[1]
        p.n_threads = n_threads
        _doc_set(&bs, &p.A, XQ, wq, offq, cq)
        _doc_set(&bs, &p.B, XC, wc, offc, cc)
        o.idx = <int64_t *>buffer_ptr(&bs, idx, True)
        o.dist = <double *>buffer_ptr(&bs, dist, True)
        o.n_exact = <int64_t *>buffer_ptr(&bs, nex, True)
        o.n_rwmd = <int64_t *>buffer_ptr(&bs, nrw, True)
        with nogil:
            status = fc_doc_knn(&p, k, prune, &o)
    finally:
        release_buffers(&bs)
    check_status(status, "knn")
    return idx, dist, nex, nrw
