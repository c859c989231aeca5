# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/optim/optim.h (global norms, fused clip + SGD / Adam steps) and
csrc/optim/norm.h (batch normalisation).  Validation happens in fastcore/optim.py,
fastcore/torch/optim.py and fastcore/norm.py.

A list of arrays travels to C as an :class:`Arrays` table: the C-contiguous buffers of the
arrays, acquired once when the table is made and held until it is freed, and the data pointers
and sizes read from them.  The optimisers make the tables of their parameters and state once,
and one table of the gradients per step (shared by the norm and the update): a step acquires
one buffer per gradient and nothing per parameter or state array.  Each operation fills one
request (``fc_arrays``, ``fc_sgd_request``, ``fc_adam_request``, ``fc_bn_problem``) from tables
and from ``fastcore._common.buffer_ptr``, and makes one call, which picks the precision
(csrc/optim/optim_dispatch.c), or the reference path of csrc/optim/optim_reference.c after
``use_reference(True)`` (for the tests, which compare the two)."""
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uintptr_t
from libc.stdlib cimport qsort

import numpy as np

from fastcore._common cimport (Buffers, dtype_of, buffer_ptr, check_status, fc_dtype, fc_path, FC_FLOAT32, FC_FLOAT64,
                               FC_PATH_FAST, FC_PATH_REFERENCE, release_buffers)

cdef extern from "optim/optim.h" nogil:
    ctypedef struct fc_arrays:
        fc_dtype dtype
        fc_path path
        Py_ssize_t n_arrays
        const void *const *x
        const Py_ssize_t *sizes
        int n_threads
    int fc_global_norm(const fc_arrays *a, double p, double *norm)
    int fc_array_norms(const fc_arrays *a, double *l2, double *l1)

    ctypedef struct fc_sgd_request:
        fc_dtype dtype
        fc_path path
        Py_ssize_t n_arrays
        const Py_ssize_t *sizes
        void *const *p
        const void *const *g
        void *const *buf
        const double *c_p
        const double *c_s
        double scale, lr, decay, momentum, buf_keep, buf_new
        int nesterov
        int n_threads
    int fc_sgd_step(const fc_sgd_request *r)

    ctypedef struct fc_adam_request:
        fc_dtype dtype
        fc_path path
        Py_ssize_t n_arrays
        const Py_ssize_t *sizes
        void *const *p
        const void *const *g
        void *const *m
        void *const *v
        void *const *vmax
        const double *c_p
        const double *c_s
        double scale, decay, beta1, beta2, step_size, bc2_sqrt, eps
        int n_threads
    int fc_adam_step(const fc_adam_request *r)

cdef extern from "optim/norm.h" nogil:
    ctypedef struct fc_bn_problem:
        fc_dtype dtype
        fc_path path
        Py_ssize_t N, C, L
        const void *x
        const void *gamma
        const void *beta
        void *running_mean
        void *running_var
        void *save_mean
        void *save_invstd
        int training
        double momentum, eps
        int n_threads
    int fc_bn_forward(const fc_bn_problem *p, void *y)
    int fc_bn_backward(const fc_bn_problem *p, const void *dy, void *dx, void *dgamma, void *dbeta)


cdef object _ndarray = np.ndarray

# Which implementation answers every call of this module: the fast kernels, or the reference
# path of csrc/optim/optim_reference.c (use_reference; for the tests, which compare the two).
cdef fc_path _PATH = FC_PATH_FAST


def use_reference(bint on):
    """Route every norm, step and batch norm kernel call of this process to the C reference path
    (True) or back to the fast kernels (False).  For tests: not thread-safe, not public."""
    global _PATH
    _PATH = FC_PATH_REFERENCE if on else FC_PATH_FAST


# ----------------------------------------------------------------- pointer tables
cdef struct _Span:
    uintptr_t lo, hi  # the bytes [lo, hi) of entry k
    Py_ssize_t k


cdef int _span_order(const void *a, const void *b) noexcept nogil:
    """By start, then end, then entry (qsort)."""
    cdef const _Span *x = <const _Span *>a
    cdef const _Span *y = <const _Span *>b
    if x.lo != y.lo:
        return -1 if x.lo < y.lo else 1
    if x.hi != y.hi:
        return -1 if x.hi < y.hi else 1
    return -1 if x.k < y.k else (1 if x.k > y.k else 0)


cdef inline int _kind(const Py_buffer *b) noexcept:
    """FC_FLOAT32 / FC_FLOAT64 for a buffer of native float32 / float64 ("f" / "d"), else -1."""
    if b.format == NULL or b.format[0] == 0 or b.format[1] != 0:
        return -1
    if b.format[0] == b"f" and b.itemsize == 4:
        return FC_FLOAT32
    if b.format[0] == b"d" and b.itemsize == 8:
        return FC_FLOAT64
    return -1


cdef class Arrays:
    """A pointer table over a list of arrays, what this module's kernels take for a list.

    ``Arrays(arrays, writable=False)``: the C-contiguous buffers of ``arrays`` (native float32 or
    float64, writable ones when ``writable``; one table may mix the two types, a kernel call
    takes tables of one), acquired here once and held while the table lives, so that its data
    pointers stay valid and the arrays cannot be resized under it.  ``len(table)`` is the number
    of arrays.
    """
    cdef Py_buffer *views    # the buffers this table acquired (none for a take())
    cdef Py_ssize_t n_views  # how many of them are held
    cdef Py_buffer **v       # (n,) array k's buffer (in views, or in base's): its format, itemsize
                             # and shape; for a like_addresses() table, the buffer of the array
                             # of the same index in the table it was made like
    cdef void **ptr          # (n,) array k's data pointer, NULL when empty (buffer_ptr's rule)
    cdef Py_ssize_t *size    # (n,) array k's elements
    cdef _Span *spans        # the non-empty arrays' byte spans in (start, end, k) order, once asked
    cdef Py_ssize_t n_spans
    cdef Py_ssize_t n
    cdef int dtype           # FC_FLOAT32 / FC_FLOAT64 when all arrays have it, -1 when mixed
    cdef bint writable
    cdef Arrays base         # the table whose buffers a take() or like_addresses() points into
    cdef object keep         # what owns a like_addresses() table's memory

    def __init__(self, list arrays not None, bint writable=False):
        if self.v != NULL:
            raise RuntimeError("internal: an Arrays table is filled once")
        cdef Py_ssize_t n = len(arrays), k
        cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0)
        self._alloc(n, True)
        self.writable = writable
        for k in range(n):
            PyObject_GetBuffer(arrays[k], &self.views[k], flags)
            self.n_views = k + 1
            if _kind(&self.views[k]) < 0:
                raise TypeError(f"internal: array {k} of a table must be float32 or float64 (native byte order)")
            self._set(k, &self.views[k])
        self._set_dtype()

    cdef int _alloc(self, Py_ssize_t n, bint own) except -1:
        cdef size_t each = sizeof(Py_buffer *) + sizeof(void *) + sizeof(Py_ssize_t) + (sizeof(Py_buffer) if own else 0)
        cdef char *block = <char *>PyMem_Malloc(each * <size_t>(n if n > 0 else 1))
        if block == NULL:
            raise MemoryError()
        # pointer-aligned pieces first, the Py_buffers (own tables) last
        self.v = <Py_buffer **>block
        self.ptr = <void **>(block + n * sizeof(Py_buffer *))
        self.size = <Py_ssize_t *>(block + n * (sizeof(Py_buffer *) + sizeof(void *)))
        self.views = <Py_buffer *>(block + n * (sizeof(Py_buffer *) + sizeof(void *) + sizeof(Py_ssize_t))) if own else NULL
        self.n = n
        return 0

    cdef inline void _set(self, Py_ssize_t k, Py_buffer *b) noexcept:
        self.v[k] = b
        self.ptr[k] = b.buf if b.len > 0 else NULL
        self.size[k] = b.len // b.itemsize

    cdef void _set_dtype(self) noexcept:
        cdef Py_ssize_t k
        cdef int d = _kind(self.v[0]) if self.n > 0 else FC_FLOAT32
        for k in range(1, self.n):
            if _kind(self.v[k]) != d:
                d = -1
                break
        self.dtype = d

    def __dealloc__(self):
        cdef Py_ssize_t k
        for k in range(self.n_views):
            PyBuffer_Release(&self.views[k])
        PyMem_Free(self.v)  # the block
        PyMem_Free(self.spans)

    def __len__(self):
        return self.n

    def like(self, list arrays not None):
        """A table over ``arrays`` (only read) when each is an ndarray, C-contiguous, of the format
        and shape of this table's array of the same index; None at the first doubt (the caller
        then checks in Python and says what is wrong).  The per-step path of the gradients."""
        cdef Py_ssize_t n = len(arrays), k, d
        cdef Py_buffer *b
        cdef Py_buffer *mine
        if n != self.n:
            return None
        cdef Arrays t = Arrays.__new__(Arrays)
        t._alloc(n, True)
        for k in range(n):
            a = arrays[k]
            if not isinstance(a, _ndarray):
                return None
            b = &t.views[k]
            try:
                PyObject_GetBuffer(a, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            except Exception:
                return None
            t.n_views = k + 1
            mine = self.v[k]
            if b.ndim != mine.ndim or _kind(b) < 0 or _kind(b) != _kind(mine):
                return None
            for d in range(b.ndim):
                if b.shape[d] != mine.shape[d]:
                    return None
            t._set(k, b)
        t.dtype = self.dtype
        return t

    def like_addresses(self, list addresses not None, object keep):
        """A table over the memory at ``addresses`` (data pointers, e.g. torch's ``data_ptr()``),
        array k of the dtype and size of this table's array k, which the caller has checked;
        ``keep`` (the objects that own the memory) is held while the table lives.  The torch
        optimisers' per-step path for the gradients: a tensor has no buffer protocol, and a NumPy
        view per gradient per step cost about 0.5 us more than reading its ``data_ptr()``."""
        cdef Py_ssize_t n = len(addresses), k
        if n != self.n:
            raise ValueError(f"internal: {n} addresses for a table of {self.n} arrays")
        cdef Arrays t = Arrays.__new__(Arrays)
        t._alloc(n, False)
        for k in range(n):
            t.v[k] = self.v[k]
            t.size[k] = self.size[k]
            t.ptr[k] = <void *><uintptr_t>addresses[k] if self.size[k] > 0 else NULL
        t.base = self if self.base is None else self.base
        t.keep = keep
        t.dtype = self.dtype
        return t

    def take(self, idx):
        """The table of arrays ``idx`` (an intp array of indices), in that order: pointers into
        this table's buffers (held through it), no buffer acquired again."""
        cdef Buffers bs
        bs.n = 0
        cdef const Py_ssize_t *ix
        cdef Py_ssize_t m, k, j
        cdef Arrays t = Arrays.__new__(Arrays)
        try:
            ix = <const Py_ssize_t *>buffer_ptr(&bs, idx, False)
            if bs.n != 1 or bs.v[0].itemsize != sizeof(Py_ssize_t):
                raise TypeError("internal: take needs an intp array")
            m = bs.v[0].len // <Py_ssize_t>sizeof(Py_ssize_t)
            t._alloc(m, False)
            for k in range(m):
                j = ix[k]
                if j < 0 or j >= self.n:
                    raise IndexError(f"internal: index {j} out of a table of {self.n} arrays")
                t.v[k] = self.v[j]
                t.ptr[k] = self.ptr[j]
                t.size[k] = self.size[j]
        finally:
            release_buffers(&bs)
        t.base = self if self.base is None else self.base
        t.keep = self.keep
        t.writable = self.writable
        t._set_dtype()
        return t

    cdef int _sort_spans(self) except -1:
        cdef Py_ssize_t k, m = 0
        if self.spans != NULL or self.n == 0:
            return 0
        self.spans = <_Span *>PyMem_Malloc(sizeof(_Span) * <size_t>self.n)
        if self.spans == NULL:
            raise MemoryError()
        for k in range(self.n):
            if self.ptr[k] != NULL:
                self.spans[m].lo = <uintptr_t>self.ptr[k]
                self.spans[m].hi = <uintptr_t>self.ptr[k] + <uintptr_t>(self.size[k] * self.v[k].itemsize)
                self.spans[m].k = k
                m += 1
        qsort(self.spans, <size_t>m, sizeof(_Span), _span_order)
        self.n_spans = m
        return 0

    def first_shared(self):
        """``(a, b)``, a < b: two arrays that share memory, or None.  The first pair of neighbours
        that overlap when the non-empty arrays are put in order of (start, end, index)."""
        cdef Py_ssize_t i, k0, k1
        self._sort_spans()
        for i in range(1, self.n_spans):
            if self.spans[i].lo < self.spans[i - 1].hi:
                k0, k1 = self.spans[i - 1].k, self.spans[i].k
                return (k0, k1) if k0 < k1 else (k1, k0)
        return None

    def first_same(self, Arrays other not None):
        """The first k at which ``other``'s array k starts where this table's array k does (the
        same array, or a view of it), or None."""
        cdef Py_ssize_t k
        if self.keep is not None or other.keep is not None:
            raise TypeError("internal: first_same compares tables that hold their buffers")
        for k in range(min(self.n, other.n)):
            if self.v[k].buf == other.v[k].buf:  # an empty array too: NULL in ptr
                return k
        return None

    def first_overlap(self, Arrays other not None):
        """``(k, j)``: the first array k of ``other`` whose bytes meet those of this table's array
        j, or None.  This table's arrays must not share memory (see first_shared): a binary search
        per array of ``other``."""
        cdef Py_ssize_t k, lo, hi, mid
        cdef uintptr_t start, end
        self._sort_spans()
        for k in range(other.n):
            if other.ptr[k] == NULL:
                continue
            start = <uintptr_t>other.ptr[k]
            end = start + <uintptr_t>(other.size[k] * other.v[k].itemsize)
            lo = 0
            hi = self.n_spans  # the last span starting before end: index lo - 1 after the search
            while lo < hi:
                mid = (lo + hi) // 2
                if self.spans[mid].lo < end:
                    lo = mid + 1
                else:
                    hi = mid
            if lo > 0 and self.spans[lo - 1].hi > start:
                return k, self.spans[lo - 1].k
        return None


cdef inline int _dtype_of_table(Arrays t) except -1:
    if t.dtype < 0:
        raise TypeError("internal: a kernel call takes arrays of one dtype, the table mixes float32 and float64")
    return t.dtype


cdef int _check_like(Arrays p, Arrays t, str name, bint writable) except -1:
    """t may travel beside p: as many arrays, same dtype and sizes (writable when asked)."""
    cdef Py_ssize_t k
    if t.n != p.n or t.dtype != p.dtype:
        raise ValueError(f"internal: the {name} table has {t.n} arrays of dtype code {t.dtype}, the params "
                         f"{p.n} of dtype code {p.dtype}")
    if writable and not t.writable:
        raise ValueError(f"internal: the {name} table is updated but was made read-only")
    for k in range(p.n):
        if t.size[k] != p.size[k]:
            raise ValueError(f"internal: {name}[{k}] has {t.size[k]} elements, params[{k}] {p.size[k]}")
    return 0


cdef const double *_coefficients(Buffers *bs, object c, Py_ssize_t n) except? NULL:
    """The data of c, n float64 values (NULL for None or n == 0)."""
    if c is None:
        return NULL
    cdef const double *q = <const double *>buffer_ptr(bs, c, False)
    if bs.v[bs.n - 1].itemsize != sizeof(double) or bs.v[bs.n - 1].len != n * <Py_ssize_t>sizeof(double):
        raise ValueError(f"internal: coefficients must be {n} float64 values")
    return q


cdef inline int _fill_arrays(fc_arrays *r, Arrays x, int n_threads) except -1:
    r.dtype = <fc_dtype>_dtype_of_table(x)
    r.path = _PATH
    r.n_arrays = x.n
    r.x = <const void *const *>x.ptr
    r.sizes = x.size
    r.n_threads = n_threads
    return 0


def global_norm(Arrays x not None, double p, int n_threads):
    """The p-norm of all the table's arrays together (float64)."""
    cdef fc_arrays r
    cdef double norm = 0.0
    cdef int status
    _fill_arrays(&r, x, n_threads)
    with nogil:
        status = fc_global_norm(&r, p, &norm)
    check_status(status, "global_norm")
    return norm


def array_norms(Arrays x not None, int n_threads):
    """(L2 norms, L1 norms) of each array of the table, float64."""
    cdef fc_arrays r
    cdef Buffers bs
    bs.n = 0
    cdef double *l2p
    cdef double *l1p
    cdef int status = 0
    _fill_arrays(&r, x, n_threads)
    l2 = np.zeros(x.n, dtype=np.float64)
    l1 = np.zeros(x.n, dtype=np.float64)
    try:
        l2p = <double *>buffer_ptr(&bs, l2, True)
        l1p = <double *>buffer_ptr(&bs, l1, True)
        with nogil:
            status = fc_array_norms(&r, l2p, l1p)
    finally:
        release_buffers(&bs)
    check_status(status, "array_norms")
    return l2, l1


def sgd_step(Arrays p not None, Arrays g not None, Arrays buf, c_p, c_s, double scale, double lr, double decay,
             double momentum, double buf_keep, double buf_new, bint nesterov, int n_threads):
    """One fused SGD update (see csrc/optim/optim.h) of the params table p with the gradients
    table g; the momentum buffers table buf and the float64 coefficients c_p / c_s (one per
    param) may be None."""
    cdef fc_sgd_request r
    cdef Buffers bs
    bs.n = 0
    cdef int status = 0
    r.dtype = <fc_dtype>_dtype_of_table(p)
    r.path = _PATH
    if not p.writable:
        raise ValueError("internal: the params table is updated but was made read-only")
    _check_like(p, g, "grads", False)
    if buf is not None:
        _check_like(p, buf, "momentum buffer", True)
    r.n_arrays = p.n
    r.sizes = p.size
    r.p = p.ptr
    r.g = <const void *const *>g.ptr
    r.buf = buf.ptr if buf is not None else NULL
    r.scale, r.lr, r.decay, r.momentum = scale, lr, decay, momentum
    r.buf_keep, r.buf_new = buf_keep, buf_new
    r.nesterov = nesterov
    r.n_threads = n_threads
    try:
        r.c_p = _coefficients(&bs, c_p, p.n)
        r.c_s = _coefficients(&bs, c_s, p.n)
        with nogil:
            status = fc_sgd_step(&r)
    finally:
        release_buffers(&bs)
    check_status(status, "SGD.step")


def adam_step(Arrays p not None, Arrays g not None, Arrays m not None, Arrays v not None, Arrays vmax, c_p, c_s,
              double scale, double decay, double beta1, double beta2, double step_size, double bc2_sqrt,
              double eps, int n_threads):
    """One fused Adam / AdamW update (see csrc/optim/optim.h) of the params table p with the
    gradients table g and the moment tables m, v; the amsgrad table vmax and the float64
    coefficients c_p / c_s (one per param) may be None."""
    cdef fc_adam_request r
    cdef Buffers bs
    bs.n = 0
    cdef int status = 0
    r.dtype = <fc_dtype>_dtype_of_table(p)
    r.path = _PATH
    if not p.writable:
        raise ValueError("internal: the params table is updated but was made read-only")
    _check_like(p, g, "grads", False)
    _check_like(p, m, "exp_avg", True)
    _check_like(p, v, "exp_avg_sq", True)
    if vmax is not None:
        _check_like(p, vmax, "max_exp_avg_sq", True)
    r.n_arrays = p.n
    r.sizes = p.size
    r.p = p.ptr
    r.g = <const void *const *>g.ptr
    r.m = m.ptr
    r.v = v.ptr
    r.vmax = vmax.ptr if vmax is not None else NULL
    r.scale, r.decay, r.beta1, r.beta2 = scale, decay, beta1, beta2
    r.step_size, r.bc2_sqrt, r.eps = step_size, bc2_sqrt, eps
    r.n_threads = n_threads
    try:
        r.c_p = _coefficients(&bs, c_p, p.n)
        r.c_s = _coefficients(&bs, c_s, p.n)
        with nogil:
            status = fc_adam_step(&r)
    finally:
        release_buffers(&bs)
    check_status(status, "Adam.step")


# ----------------------------------------------------------------- batch norm
cdef inline int _bn_init(fc_bn_problem *p, object x, bint training, int n_threads) except -1:
    p.dtype = <fc_dtype>dtype_of(x, "batch norm arrays")
    p.path = _PATH
    p.N, p.C, p.L = x.shape[0], x.shape[1], x.shape[2]
    p.x = NULL
    p.gamma = NULL
    p.beta = NULL
    p.running_mean = NULL
    p.running_var = NULL
    p.save_mean = NULL
    p.save_invstd = NULL
    p.training = training
    p.momentum = 0.0
    p.eps = 0.0
    p.n_threads = n_threads
    return 0


def bn_forward(x, y, gamma, beta, running_mean, running_var, bint training, double momentum, double eps,
               save_mean, save_invstd, int n_threads):
    """Batch norm forward over x (N, C, L) into y (N, C, L), all arrays C-contiguous of x's
    dtype; gamma, beta (C,) and the running statistics (C,) may be None."""
    cdef fc_bn_problem p
    cdef Buffers bs
    bs.n = 0
    cdef void *yp
    cdef int status = 0
    _bn_init(&p, x, training, n_threads)
    p.momentum = momentum
    p.eps = eps
    try:
        p.x = buffer_ptr(&bs, x, False)
        yp = buffer_ptr(&bs, y, True)
        p.gamma = buffer_ptr(&bs, gamma, False)
        p.beta = buffer_ptr(&bs, beta, False)
        p.running_mean = buffer_ptr(&bs, running_mean, True)
        p.running_var = buffer_ptr(&bs, running_var, True)
        p.save_mean = buffer_ptr(&bs, save_mean, True)
        p.save_invstd = buffer_ptr(&bs, save_invstd, True)
        with nogil:
            status = fc_bn_forward(&p, yp)
    finally:
        release_buffers(&bs)
    check_status(status, "batch_norm_forward")


def bn_backward(dy, x, gamma, save_mean, save_invstd, bint training, dx, dgamma, dbeta, int n_threads):
    """Batch norm backward over x (N, C, L): dx (N, C, L) from dy (N, C, L), dgamma / dbeta (C,),
    all arrays C-contiguous of x's dtype; gamma may be None."""
    cdef fc_bn_problem p
    cdef Buffers bs
    bs.n = 0
    cdef const void *dyp
    cdef void *dxp
    cdef void *dgp
    cdef void *dbp
    cdef int status = 0
    _bn_init(&p, x, training, n_threads)
    try:
        p.x = buffer_ptr(&bs, x, False)
        p.gamma = buffer_ptr(&bs, gamma, False)
        p.save_mean = buffer_ptr(&bs, save_mean, False)  # only read by the backward
        p.save_invstd = buffer_ptr(&bs, save_invstd, False)
        dyp = buffer_ptr(&bs, dy, False)
        dxp = buffer_ptr(&bs, dx, True)
        dgp = buffer_ptr(&bs, dgamma, True)
        dbp = buffer_ptr(&bs, dbeta, True)
        with nogil:
            status = fc_bn_backward(&p, dyp, dxp, dgp, dbp)
    finally:
        release_buffers(&bs)
    check_status(status, "batch_norm_backward")
