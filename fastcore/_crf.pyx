# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for the csrc/crf kernels (crf/crf.h): linear-chain CRF and MEMM kernels.  Validation
happens in fastcore/crf.py (with :func:`fast_check` as its fast path); the kernel
wrappers trust shapes, dtypes and label ranges.

The wrappers fill one request (``fc_crf_problem``) with the data pointers of the arrays
(``fastcore._common.buffer_ptr``: C-contiguous, the format not re-checked) and the dtype,
and make one call per operation, which picks the precision (csrc/crf/dispatch.c)."""
from cpython.buffer cimport PyObject_GetBuffer, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT
from libc.stdint cimport uint8_t, int64_t
from libc.math cimport INFINITY
from libc.stdlib cimport malloc, free

import numpy as np

from fastcore._common cimport (Buffers, dtype_of, buffer_ptr, release_buffers, check_status, fc_dtype, fc_path,
                               FC_FLOAT32, FC_FLOAT64, FC_PATH_FAST, FC_PATH_REFERENCE, fc_set_signal_check,
                               python_signal_check)

fc_set_signal_check(python_signal_check)  # Ctrl-C stops large batches

cdef extern from "crf/crf.h" nogil:
    ctypedef struct fc_crf_problem:
        fc_dtype dtype
        fc_path path
        Py_ssize_t B, T, K
        const void *em
        const void *trans
        const void *start
        const void *end
        const uint8_t *mask
        const int64_t *tags
        int n_threads
    ctypedef struct fc_crf_fb_out:
        const double *weight
        double *logz
        double *score
        void *node
        void *pair
        void *g_em
        void *g_trans
        void *g_start
        void *g_end
    int fc_crf_forward(const fc_crf_problem *p, double *logz, double *score)
    int fc_crf_fb(const fc_crf_problem *p, const fc_crf_fb_out *out)
    int fc_crf_viterbi(const fc_crf_problem *p, Py_ssize_t top_k, int64_t *paths, double *scores)
    int fc_memm_nll(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em,
                    void *g_trans)
    int fc_memm_potentials(const fc_crf_problem *p, double wf, double wb, void *out)
    int fc_crf_check(const fc_crf_problem *p)


cdef object _ndarray = np.ndarray
cdef object _f64 = np.dtype(np.float64)
cdef object _f32 = np.dtype(np.float32)

# Which implementation answers every call of this module: the fast kernels, or the reference
# path of csrc/crf/crf_reference.c (use_reference; for the tests, which compare the two).
cdef fc_path _PATH = FC_PATH_FAST


def use_reference(bint on):
    """Route every CRF / MEMM kernel call of this process to the C reference path (True) or
    back to the fast kernels (False).  For tests: not thread-safe, not public."""
    global _PATH
    _PATH = FC_PATH_REFERENCE if on else FC_PATH_FAST


cdef Py_buffer *_canon(Buffers *bs, object x, const char *fmt, int ndim) noexcept:
    """x's buffer (held in bs) when x is an ndarray, C-contiguous, native, one of the two
    one-character formats fmt[0], fmt[1], with ndim dimensions; NULL otherwise."""
    if type(x) is not _ndarray:
        return NULL
    cdef Py_buffer *v = &bs.v[bs.n]
    try:
        PyObject_GetBuffer(x, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except BaseException:
        return NULL
    bs.n += 1
    if v.ndim != ndim or v.format == NULL or v.format[0] == 0 or v.format[1] != 0:
        return NULL
    if v.format[0] != fmt[0] and v.format[0] != fmt[1]:
        return NULL
    return v


cdef inline void _problem_init(fc_crf_problem *p, int n_threads) noexcept:
    p.path = _PATH
    p.dtype = FC_FLOAT32
    p.B = 0; p.T = 0; p.K = 0
    p.em = NULL; p.trans = NULL; p.start = NULL; p.end = NULL
    p.mask = NULL; p.tags = NULL
    p.n_threads = n_threads


cdef bint _fast_args(Buffers *bs, fc_crf_problem *p, em, trans, start, end, mask, tags, int n_threads) except -1:
    """True when every argument is already an ndarray in kernel layout and its values are
    valid (see fast_check); the problem p then points at them (buffers held in bs)."""
    cdef Py_buffer *ve
    cdef Py_buffer *vt
    cdef Py_buffer *v
    cdef int bad = 0
    cdef const char *fmt
    _problem_init(p, n_threads)
    ve = _canon(bs, em, b"fd", 3)
    if ve == NULL or ve.shape[2] < 1:
        return False
    p.B, p.T, p.K = ve.shape[0], ve.shape[1], ve.shape[2]
    p.dtype = FC_FLOAT64 if ve.format[0] == b"d" else FC_FLOAT32
    p.em = ve.buf
    fmt = b"dd" if p.dtype == FC_FLOAT64 else b"ff"
    vt = _canon(bs, trans, fmt, 2)
    if vt == NULL or vt.shape[0] != p.K or vt.shape[1] != p.K:
        return False
    p.trans = vt.buf
    if start is not None:
        v = _canon(bs, start, fmt, 1)
        if v == NULL or v.shape[0] != p.K:
            return False
        p.start = v.buf
    if end is not None:
        v = _canon(bs, end, fmt, 1)
        if v == NULL or v.shape[0] != p.K:
            return False
        p.end = v.buf
    if mask is not None:
        v = _canon(bs, mask, b"??", 2)
        if v == NULL or v.shape[0] != p.B or v.shape[1] != p.T:
            return False
        p.mask = <const uint8_t *>v.buf
    if tags is not None:
        v = _canon(bs, tags, b"lq", 2)
        if v == NULL or v.itemsize != 8 or v.shape[0] != p.B or v.shape[1] != p.T:
            return False
        p.tags = <const int64_t *>v.buf
    if p.B * p.T > 0:
        with nogil:
            bad = fc_crf_check(p)
    return bad == 0


def fast_check(em, trans, start, end, mask, tags, int n_threads=1):
    """The validation fast path of fastcore.crf.

    True when every argument is already an ndarray in kernel layout (emissions
    float32/float64 (B, T, K >= 1); transitions/start/end of the same dtype with shapes
    (K, K)/(K,), or None; mask bool (B, T) or None; tags int64 (B, T) or None; all
    C-contiguous in native byte order) and its values are valid (finite emissions, no
    NaN/+inf in transitions/start/end, tags in [0, K) at kept positions).  False
    otherwise: the caller then runs the full checks, which convert or raise.
    """
    cdef Buffers bs
    bs.n = 0
    cdef fc_crf_problem p
    try:
        return _fast_args(&bs, &p, em, trans, start, end, mask, tags, n_threads)
    finally:
        release_buffers(&bs)


cdef bint _args(Buffers *bs, fc_crf_problem *p, em, trans, start, end, mask, tags, int n_threads,
                bint fast) except -1:
    """The problem p for the arguments (buffers held in bs).  fast: the user's arrays, taken only
    when they pass fast_check (False otherwise: the caller returns None and fastcore.crf takes
    the checked path); otherwise arrays the Python checks have already converted (True)."""
    if fast:
        return _fast_args(bs, p, em, trans, start, end, mask, tags, n_threads)
    _problem_init(p, n_threads)
    p.B, p.T, p.K = em.shape[0], em.shape[1], em.shape[2]
    p.dtype = <fc_dtype>dtype_of(em, "emissions")
    p.em = buffer_ptr(bs, em, False)
    p.trans = buffer_ptr(bs, trans, False)
    p.start = buffer_ptr(bs, start, False)
    p.end = buffer_ptr(bs, end, False)
    p.mask = <const uint8_t *>buffer_ptr(bs, mask, False)
    p.tags = <const int64_t *>buffer_ptr(bs, tags, False)
    return True


def forward(em, trans, start, end, mask, tags, int n_threads, int what, bint fast):
    """crf_log_partition (what 0), crf_score (1) or crf_log_likelihood (2): (B,) in the dtype
    of em.  fast: see _args (None when the arguments are not taken)."""
    cdef Buffers bs
    bs.n = 0
    cdef fc_crf_problem p
    cdef int status = 0
    cdef Py_ssize_t i
    cdef double v
    cdef double *lz
    cdef double *sc
    cdef void *o
    if what != 0 and tags is None:
        if fast:
            return None
        raise TypeError("internal: forward needs tags for a score")
    try:
        if not _args(&bs, &p, em, trans, start, end, mask, tags if what != 0 else None, n_threads, fast):
            return None
        out = np.zeros(p.B, dtype=_f64 if p.dtype == FC_FLOAT64 else _f32)
        if p.B * p.T == 0:
            return out
        work = np.empty(2 * p.B, dtype=_f64)
        lz = <double *>buffer_ptr(&bs, work, True)
        sc = lz + p.B if what != 0 else NULL
        o = buffer_ptr(&bs, out, True)
        with nogil:
            status = fc_crf_forward(&p, lz, sc)
            if status == 0:
                for i in range(p.B):
                    if what == 0:
                        v = lz[i]
                    elif what == 1:
                        v = sc[i]
                    else:
                        v = sc[i] - lz[i]
                        v = v if v == v else -INFINITY  # -inf - (-inf): no allowed path at all
                    if p.dtype == FC_FLOAT64:
                        (<double *>o)[i] = v
                    else:
                        (<float *>o)[i] = <float>v
    finally:
        release_buffers(&bs)
    check_status(status, "crf forward")
    return out


def forward_backward(em, trans, start, end, mask, tags, weight, bint want_node, bint want_pair,
                     bint want_grad, int n_threads):
    """dict with logz, score (if tags), node, pair, g_em, g_trans, g_start, g_end as requested."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    dt = _f64 if dtype_of(em, "emissions") == FC_FLOAT64 else _f32
    out = {"logz": np.zeros(B, dtype=np.float64)}
    if tags is not None:
        out["score"] = np.zeros(B, dtype=np.float64)
    if want_node:
        out["node"] = np.zeros((B, Tn, K), dtype=dt)
    if want_pair:
        out["pair"] = np.zeros((B, Tn, K, K), dtype=dt)
    if want_grad:
        out["g_em"] = np.zeros((B, Tn, K), dtype=dt)
        out["g_trans"] = np.zeros((K, K), dtype=dt)
        out["g_start"] = np.zeros(K, dtype=dt)
        out["g_end"] = np.zeros(K, dtype=dt)
    if B == 0 or Tn == 0:
        return out
    cdef Buffers bs
    bs.n = 0
    cdef int status = 0
    cdef fc_crf_problem p
    cdef fc_crf_fb_out o
    try:
        _args(&bs, &p, em, trans, start, end, mask, tags, n_threads, False)
        o.weight = <const double *>buffer_ptr(&bs, weight, False)
        o.logz = <double *>buffer_ptr(&bs, out["logz"], True)
        o.score = <double *>buffer_ptr(&bs, out.get("score"), True)
        o.node = buffer_ptr(&bs, out.get("node"), True)
        o.pair = buffer_ptr(&bs, out.get("pair"), True)
        o.g_em = buffer_ptr(&bs, out.get("g_em"), True)
        o.g_trans = buffer_ptr(&bs, out.get("g_trans"), True)
        o.g_start = buffer_ptr(&bs, out.get("g_start"), True)
        o.g_end = buffer_ptr(&bs, out.get("g_end"), True)
        with nogil:
            status = fc_crf_fb(&p, &o)
    finally:
        release_buffers(&bs)
    check_status(status, "crf forward-backward")
    return out


def viterbi(em, trans, start, end, mask, Py_ssize_t top_k, int n_threads, bint fast):
    """(paths (B, top_k, T) int64, -1 where masked; scores (B, top_k) in the dtype of em),
    without the top_k axis when top_k == 1 (fastcore.crf.viterbi's shapes).  fast: see _args
    (None when the arguments are not taken)."""
    cdef Buffers bs
    bs.n = 0
    cdef fc_crf_problem p
    cdef int status = 0
    cdef Py_ssize_t i
    cdef double *sa
    cdef int64_t *pa
    cdef void *o
    try:
        if not _args(&bs, &p, em, trans, start, end, mask, None, n_threads, fast):
            return None
        dt = _f64 if p.dtype == FC_FLOAT64 else _f32
        # the kernel writes every entry
        if top_k == 1:
            paths = np.empty((p.B, p.T), dtype=np.int64)
            out = np.empty(p.B, dtype=dt)
        else:
            paths = np.empty((p.B, top_k, p.T), dtype=np.int64)
            out = np.empty((p.B, top_k), dtype=dt)
        if p.B == 0:
            return paths, out
        if p.T == 0:  # one empty path of score 0, then none
            out.fill(-np.inf)
            out.reshape(p.B, top_k)[:, 0] = 0.0
            return paths, out
        work = np.empty(p.B * top_k, dtype=_f64)
        pa = <int64_t *>buffer_ptr(&bs, paths, True)
        sa = <double *>buffer_ptr(&bs, work, True)
        o = buffer_ptr(&bs, out, True)
        with nogil:
            status = fc_crf_viterbi(&p, top_k, pa, sa)
            if status == 0:
                for i in range(p.B * top_k):
                    if p.dtype == FC_FLOAT64:
                        (<double *>o)[i] = sa[i]
                    else:
                        (<float *>o)[i] = <float>sa[i]
    finally:
        release_buffers(&bs)
    check_status(status, "viterbi")
    return paths, out


cdef double _reduction_weight(int weighting, const uint8_t *mask, Py_ssize_t B, Py_ssize_t Tn) noexcept:
    """The weight every sequence gets under a reduction: 1 (weighting 0: "sum", "none"),
    1 / B (1: "mean") or 1 / (kept tokens) (2: "token_mean"); 0 when the divisor is 0."""
    cdef Py_ssize_t i, kept
    if weighting == 1:
        return 1.0 / B if B > 0 else 0.0
    if weighting == 2:
        kept = B * Tn
        if mask != NULL:
            kept = 0
            for i in range(B * Tn):
                kept += mask[i] != 0
        return 1.0 / kept if kept > 0 else 0.0
    return 1.0


def reduction_weight(int weighting, mask, Py_ssize_t B, Py_ssize_t Tn):
    """_reduction_weight for a kernel-layout mask (bool (B, T), C-contiguous) or None."""
    cdef Buffers bs
    bs.n = 0
    try:
        return _reduction_weight(weighting, <const uint8_t *>buffer_ptr(&bs, mask, False), B, Tn)
    finally:
        release_buffers(&bs)


def memm_loss_grad(em, trans, mask, tags, bint bidir, int weighting, bint per_seq, bint want_grad, int n_threads,
                   bint fast):
    """memm_nll_grad (and memm_log_likelihood, without gradients).  Every sequence has the
    weight w = _reduction_weight(weighting, ...).  Returns (loss, g_em, g_trans) with
    loss = 0.0 - w * sum_b ll_b (summed in order, in double) as a scalar of em's dtype, or,
    when per_seq, the (B,) float64 log-likelihoods ll (the caller negates and casts); g_em
    and g_trans are None unless want_grad.  fast: the arguments as the user gave them, taken
    only when they pass fast_check (None is returned otherwise: the caller takes the checked
    path); otherwise arrays already checked and converted (see _args)."""
    cdef Buffers bs
    bs.n = 0
    cdef fc_crf_problem p
    cdef int status = 0
    cdef double *wbuf = NULL
    cdef double *llp
    cdef void *gep
    cdef void *gtp
    cdef double s = 0.0, w = 1.0
    cdef Py_ssize_t b
    try:
        if (fast and tags is None) or not _args(&bs, &p, em, trans, None, None, mask, tags, n_threads, fast):
            return None
        dt = _f64 if p.dtype == FC_FLOAT64 else _f32
        # the kernel writes every entry of g_em (0 at masked positions) and of g_trans
        empty = p.B * p.T == 0
        ge_a = (np.zeros if empty else np.empty)((p.B, p.T, p.K), dtype=dt) if want_grad else None
        gt_a = (np.zeros if empty else np.empty)((p.K, p.K), dtype=dt) if want_grad else None
        ll_a = np.zeros(p.B, dtype=np.float64) if per_seq else None
        if empty:
            return (ll_a if per_seq else dt.type(0.0)), ge_a, gt_a
        w = _reduction_weight(weighting, p.mask, p.B, p.T)
        wbuf = <double *>malloc(sizeof(double) * 2 * p.B)
        if wbuf == NULL:
            raise MemoryError()
        for b in range(p.B):
            wbuf[b] = w
            wbuf[p.B + b] = 0.0
        llp = <double *>buffer_ptr(&bs, ll_a, True) if per_seq else wbuf + p.B
        gep = buffer_ptr(&bs, ge_a, True)
        gtp = buffer_ptr(&bs, gt_a, True)
        with nogil:
            status = fc_memm_nll(&p, bidir, wbuf, llp, gep, gtp)
        if not per_seq:
            # ll <= 0 (-inf for a forbidden gold path) and w > 0 unless every ll is 0 (no kept
            # token): no inf * 0; 0.0 - : +0 (not -0) with no kept token
            for b in range(p.B):
                s += w * llp[b]
            s = 0.0 - s
    finally:
        release_buffers(&bs)
        free(wbuf)
    check_status(status, "memm nll")
    return (ll_a if per_seq else dt.type(s)), ge_a, gt_a


def memm_potentials(em, trans, mask, double wf, double wb, int n_threads):
    """Unary potentials (B, T, K) whose CRF path score (trans, no start/end) is the MEMM log-likelihood."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    dt = _f64 if dtype_of(em, "emissions") == FC_FLOAT64 else _f32
    out_a = np.zeros((B, Tn, K), dtype=dt)
    if B == 0 or Tn == 0:
        return out_a
    cdef Buffers bs
    bs.n = 0
    cdef int status = 0
    cdef fc_crf_problem p
    cdef void *op
    try:
        _args(&bs, &p, em, trans, None, None, mask, None, n_threads, False)
        op = buffer_ptr(&bs, out_a, True)
        with nogil:
            status = fc_memm_potentials(&p, wf, wb, op)
    finally:
        release_buffers(&bs)
    check_status(status, "memm potentials")
    return out_a


def loglik(score, logz):
    """score - logz (float64 arrays of one shape), -inf where both are -inf (no allowed path)."""
    cdef Py_ssize_t n = score.shape[0], i
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    cdef Buffers bs
    bs.n = 0
    cdef const double *s
    cdef const double *z
    cdef double *o
    cdef double v
    try:
        s = <const double *>buffer_ptr(&bs, score, False)
        z = <const double *>buffer_ptr(&bs, logz, False)
        o = <double *>buffer_ptr(&bs, out, True)
        for i in range(n):
            v = s[i] - z[i]
            o[i] = v if v == v else -INFINITY
    finally:
        release_buffers(&bs)
    return out
