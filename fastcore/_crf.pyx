# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for the csrc/crf kernels (crf.h): linear-chain CRF and MEMM kernels.  Validation
happens in fastcore/crf.py (with :func:`fast_check` as its fast path); the kernel
wrappers trust shapes, dtypes and label ranges.

The wrappers take arrays as plain objects and read their data pointers through the
buffer protocol (C-contiguous; the format is not re-checked): fused-type memoryview
signatures cost several microseconds of dispatch per call, which was most of a call
on one short sequence."""
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT,
                             PyBUF_WRITABLE)
from libc.stdint cimport uint8_t, int64_t
from libc.math cimport INFINITY
from libc.stdlib cimport malloc, free

import numpy as np

from fastcore._common cimport check_status, fc_set_signal_check, python_signal_check

fc_set_signal_check(python_signal_check)  # Ctrl-C stops large batches

cdef extern from "crf.h" nogil:
    int fc_crf_forward_f32(const float *em, const float *trans, const float *start, const float *end,
                           const uint8_t *mask, const int64_t *tags, Py_ssize_t B, Py_ssize_t Tn,
                           Py_ssize_t K, double *logz, double *score, int n_threads)
    int fc_crf_forward_f64(const double *em, const double *trans, const double *start, const double *end,
                           const uint8_t *mask, const int64_t *tags, Py_ssize_t B, Py_ssize_t Tn,
                           Py_ssize_t K, double *logz, double *score, int n_threads)
    int fc_crf_fb_f32(const float *em, const float *trans, const float *start, const float *end,
                      const uint8_t *mask, const int64_t *tags, Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K,
                      const double *weight, double *logz, double *score, float *node, float *pair,
                      float *g_em, float *g_trans, float *g_start, float *g_end, int n_threads)
    int fc_crf_fb_f64(const double *em, const double *trans, const double *start, const double *end,
                      const uint8_t *mask, const int64_t *tags, Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K,
                      const double *weight, double *logz, double *score, double *node, double *pair,
                      double *g_em, double *g_trans, double *g_start, double *g_end, int n_threads)
    int fc_crf_viterbi_f32(const float *em, const float *trans, const float *start, const float *end,
                           const uint8_t *mask, Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K,
                           Py_ssize_t top_k, int64_t *paths, double *scores, int n_threads)
    int fc_crf_viterbi_f64(const double *em, const double *trans, const double *start, const double *end,
                           const uint8_t *mask, Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K,
                           Py_ssize_t top_k, int64_t *paths, double *scores, int n_threads)
    int fc_memm_nll_f32(const float *em, const float *trans, const uint8_t *mask, const int64_t *tags,
                        Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K, int bidir, const double *weight,
                        double *ll, float *g_em, float *g_trans, int n_threads)
    int fc_memm_nll_f64(const double *em, const double *trans, const uint8_t *mask, const int64_t *tags,
                        Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K, int bidir, const double *weight,
                        double *ll, double *g_em, double *g_trans, int n_threads)
    int fc_memm_potentials_f32(const float *em, const float *trans, const uint8_t *mask, Py_ssize_t B,
                               Py_ssize_t Tn, Py_ssize_t K, double wf, double wb, float *out, int n_threads)
    int fc_crf_check_f32(const float *em, const float *trans, const float *start, const float *end,
                         const uint8_t *mask, const int64_t *tags, Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K,
                         int n_threads)
    int fc_crf_check_f64(const double *em, const double *trans, const double *start, const double *end,
                         const uint8_t *mask, const int64_t *tags, Py_ssize_t B, Py_ssize_t Tn, Py_ssize_t K,
                         int n_threads)
    int fc_memm_potentials_f64(const double *em, const double *trans, const uint8_t *mask, Py_ssize_t B,
                               Py_ssize_t Tn, Py_ssize_t K, double wf, double wb, double *out, int n_threads)



cdef object _ndarray = np.ndarray
cdef object _f64 = np.dtype(np.float64)
cdef object _f32 = np.dtype(np.float32)


cdef struct _Bufs:
    Py_buffer v[16]
    int n


cdef void *_ptr(_Bufs *bs, object x, bint writable) except? NULL:
    """Data pointer of x's C-contiguous buffer, held in bs until _release (NULL for None
    or an empty array)."""
    if x is None:
        return NULL
    cdef Py_buffer *v = &bs.v[bs.n]
    PyObject_GetBuffer(x, v, PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0))
    bs.n += 1
    return v.buf if v.len > 0 else NULL


cdef void _release(_Bufs *bs) noexcept:
    cdef int i
    for i in range(bs.n):
        PyBuffer_Release(&bs.v[i])
    bs.n = 0


cdef Py_buffer *_canon(_Bufs *bs, object x, const char *fmt, int ndim) noexcept:
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


cdef struct _Args:
    const void *em
    const void *tr
    const void *st
    const void *en
    const uint8_t *mask
    const int64_t *tags
    Py_ssize_t B, Tn, K
    bint dbl


cdef bint _fast_args(_Bufs *bs, _Args *a, em, trans, start, end, mask, tags, int n_threads) except -1:
    """True when every argument is already an ndarray in kernel layout and its values are
    valid (see fast_check); the data pointers are then in a (buffers held in bs)."""
    cdef Py_buffer *ve
    cdef Py_buffer *vt
    cdef Py_buffer *v
    cdef int bad = 0
    cdef const char *fmt
    a.st = NULL; a.en = NULL; a.mask = NULL; a.tags = NULL
    ve = _canon(bs, em, b"fd", 3)
    if ve == NULL or ve.shape[2] < 1:
        return False
    a.B, a.Tn, a.K = ve.shape[0], ve.shape[1], ve.shape[2]
    a.dbl = ve.format[0] == b"d"
    a.em = ve.buf
    if a.dbl:
        fmt = b"dd"
    else:
        fmt = b"ff"
    vt = _canon(bs, trans, fmt, 2)
    if vt == NULL or vt.shape[0] != a.K or vt.shape[1] != a.K:
        return False
    a.tr = vt.buf
    if start is not None:
        v = _canon(bs, start, fmt, 1)
        if v == NULL or v.shape[0] != a.K:
            return False
        a.st = v.buf
    if end is not None:
        v = _canon(bs, end, fmt, 1)
        if v == NULL or v.shape[0] != a.K:
            return False
        a.en = v.buf
    if mask is not None:
        v = _canon(bs, mask, b"??", 2)
        if v == NULL or v.shape[0] != a.B or v.shape[1] != a.Tn:
            return False
        a.mask = <const uint8_t *>v.buf
    if tags is not None:
        v = _canon(bs, tags, b"lq", 2)
        if v == NULL or v.itemsize != 8 or v.shape[0] != a.B or v.shape[1] != a.Tn:
            return False
        a.tags = <const int64_t *>v.buf
    if a.B * a.Tn > 0:
        with nogil:
            if a.dbl:
                bad = fc_crf_check_f64(<const double *>a.em, <const double *>a.tr, <const double *>a.st,
                                       <const double *>a.en, a.mask, a.tags, a.B, a.Tn, a.K, n_threads)
            else:
                bad = fc_crf_check_f32(<const float *>a.em, <const float *>a.tr, <const float *>a.st,
                                       <const float *>a.en, a.mask, a.tags, a.B, a.Tn, a.K, n_threads)
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
    cdef _Bufs bs
    bs.n = 0
    cdef _Args a
    try:
        return _fast_args(&bs, &a, em, trans, start, end, mask, tags, n_threads)
    finally:
        _release(&bs)


cdef inline bint _is_f64(object em) except -1:
    dt = em.dtype
    if dt is _f64 or dt == _f64:
        return True
    if dt is _f32 or dt == _f32:
        return False
    raise TypeError(f"internal: emissions must be float32 or float64, got {dt}")


cdef bint _args(_Bufs *bs, _Args *a, em, trans, start, end, mask, tags, int n_threads, bint fast) except -1:
    """The kernel arguments in a (buffers held in bs).  fast: the user's arrays, taken only when
    they pass fast_check (False otherwise: the caller returns None and fastcore.crf takes the
    checked path); otherwise arrays the Python checks have already converted (True)."""
    if fast:
        return _fast_args(bs, a, em, trans, start, end, mask, tags, n_threads)
    a.B, a.Tn, a.K = em.shape[0], em.shape[1], em.shape[2]
    a.dbl = _is_f64(em)
    a.em = _ptr(bs, em, False)
    a.tr = _ptr(bs, trans, False)
    a.st = _ptr(bs, start, False)
    a.en = _ptr(bs, end, False)
    a.mask = <const uint8_t *>_ptr(bs, mask, False)
    a.tags = <const int64_t *>_ptr(bs, tags, False)
    return True


def forward(em, trans, start, end, mask, tags, int n_threads, int what, bint fast):
    """crf_log_partition (what 0), crf_score (1) or crf_log_likelihood (2): (B,) in the dtype
    of em.  fast: see _args (None when the arguments are not taken)."""
    cdef _Bufs bs
    bs.n = 0
    cdef _Args a
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
        if not _args(&bs, &a, em, trans, start, end, mask, tags if what != 0 else None, n_threads, fast):
            return None
        out = np.zeros(a.B, dtype=_f64 if a.dbl else _f32)
        if a.B * a.Tn == 0:
            return out
        work = np.empty(2 * a.B, dtype=_f64)
        lz = <double *>_ptr(&bs, work, True)
        sc = lz + a.B if what != 0 else NULL
        o = _ptr(&bs, out, True)
        with nogil:
            if a.dbl:
                status = fc_crf_forward_f64(<const double *>a.em, <const double *>a.tr, <const double *>a.st,
                                            <const double *>a.en, a.mask, a.tags, a.B, a.Tn, a.K, lz, sc,
                                            n_threads)
            else:
                status = fc_crf_forward_f32(<const float *>a.em, <const float *>a.tr, <const float *>a.st,
                                            <const float *>a.en, a.mask, a.tags, a.B, a.Tn, a.K, lz, sc,
                                            n_threads)
            if status == 0:
                for i in range(a.B):
                    if what == 0:
                        v = lz[i]
                    elif what == 1:
                        v = sc[i]
                    else:
                        v = sc[i] - lz[i]
                        v = v if v == v else -INFINITY  # -inf - (-inf): no allowed path at all
                    if a.dbl:
                        (<double *>o)[i] = v
                    else:
                        (<float *>o)[i] = <float>v
    finally:
        _release(&bs)
    check_status(status, "crf forward")
    return out


def forward_backward(em, trans, start, end, mask, tags, weight, bint want_node, bint want_pair,
                     bint want_grad, int n_threads):
    """dict with logz, score (if tags), node, pair, g_em, g_trans, g_start, g_end as requested."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    cdef bint dbl = _is_f64(em)
    dt = _f64 if dbl else _f32
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
    cdef _Bufs bs
    bs.n = 0
    cdef int status = 0
    cdef void *emp
    cdef void *tp
    cdef void *sp
    cdef void *ep
    cdef const uint8_t *mp
    cdef const int64_t *yp
    cdef const double *wp
    cdef double *lz
    cdef double *scp
    cdef void *ndp
    cdef void *prp
    cdef void *gep
    cdef void *gtp
    cdef void *gsp
    cdef void *gnp
    try:
        emp = _ptr(&bs, em, False); tp = _ptr(&bs, trans, False)
        sp = _ptr(&bs, start, False); ep = _ptr(&bs, end, False)
        mp = <const uint8_t *>_ptr(&bs, mask, False); yp = <const int64_t *>_ptr(&bs, tags, False)
        wp = <const double *>_ptr(&bs, weight, False)
        lz = <double *>_ptr(&bs, out["logz"], True)
        scp = <double *>_ptr(&bs, out.get("score"), True)
        ndp = _ptr(&bs, out.get("node"), True)
        prp = _ptr(&bs, out.get("pair"), True)
        gep = _ptr(&bs, out.get("g_em"), True)
        gtp = _ptr(&bs, out.get("g_trans"), True)
        gsp = _ptr(&bs, out.get("g_start"), True)
        gnp = _ptr(&bs, out.get("g_end"), True)
        with nogil:
            if dbl:
                status = fc_crf_fb_f64(<const double *>emp, <const double *>tp, <const double *>sp,
                                       <const double *>ep, mp, yp, B, Tn, K, wp, lz, scp, <double *>ndp,
                                       <double *>prp, <double *>gep, <double *>gtp, <double *>gsp,
                                       <double *>gnp, n_threads)
            else:
                status = fc_crf_fb_f32(<const float *>emp, <const float *>tp, <const float *>sp,
                                       <const float *>ep, mp, yp, B, Tn, K, wp, lz, scp, <float *>ndp,
                                       <float *>prp, <float *>gep, <float *>gtp, <float *>gsp,
                                       <float *>gnp, n_threads)
    finally:
        _release(&bs)
    check_status(status, "crf forward-backward")
    return out


def viterbi(em, trans, start, end, mask, Py_ssize_t top_k, int n_threads, bint fast):
    """(paths (B, top_k, T) int64, -1 where masked; scores (B, top_k) in the dtype of em),
    without the top_k axis when top_k == 1 (fastcore.crf.viterbi's shapes).  fast: see _args
    (None when the arguments are not taken)."""
    cdef _Bufs bs
    bs.n = 0
    cdef _Args a
    cdef int status = 0
    cdef Py_ssize_t i
    cdef double *sa
    cdef int64_t *pa
    cdef void *o
    try:
        if not _args(&bs, &a, em, trans, start, end, mask, None, n_threads, fast):
            return None
        # the kernel writes every entry
        if top_k == 1:
            paths = np.empty((a.B, a.Tn), dtype=np.int64)
            out = np.empty(a.B, dtype=_f64 if a.dbl else _f32)
        else:
            paths = np.empty((a.B, top_k, a.Tn), dtype=np.int64)
            out = np.empty((a.B, top_k), dtype=_f64 if a.dbl else _f32)
        if a.B == 0:
            return paths, out
        if a.Tn == 0:  # one empty path of score 0, then none
            out.fill(-np.inf)
            out.reshape(a.B, top_k)[:, 0] = 0.0
            return paths, out
        work = np.empty(a.B * top_k, dtype=_f64)
        pa = <int64_t *>_ptr(&bs, paths, True)
        sa = <double *>_ptr(&bs, work, True)
        o = _ptr(&bs, out, True)
        with nogil:
            if a.dbl:
                status = fc_crf_viterbi_f64(<const double *>a.em, <const double *>a.tr, <const double *>a.st,
                                            <const double *>a.en, a.mask, a.B, a.Tn, a.K, top_k, pa, sa, n_threads)
            else:
                status = fc_crf_viterbi_f32(<const float *>a.em, <const float *>a.tr, <const float *>a.st,
                                            <const float *>a.en, a.mask, a.B, a.Tn, a.K, top_k, pa, sa, n_threads)
            if status == 0:
                for i in range(a.B * top_k):
                    if a.dbl:
                        (<double *>o)[i] = sa[i]
                    else:
                        (<float *>o)[i] = <float>sa[i]
    finally:
        _release(&bs)
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
    cdef _Bufs bs
    bs.n = 0
    try:
        return _reduction_weight(weighting, <const uint8_t *>_ptr(&bs, mask, False), B, Tn)
    finally:
        _release(&bs)


def memm_loss_grad(em, trans, mask, tags, bint bidir, int weighting, bint per_seq, bint want_grad, int n_threads,
                   bint fast):
    """memm_nll_grad (and memm_log_likelihood, without gradients).  Every sequence has the
    weight w = _reduction_weight(weighting, ...).  Returns (loss, g_em, g_trans) with
    loss = 0.0 - w * sum_b ll_b (summed in order, in double) as a scalar of em's dtype, or,
    when per_seq, the (B,) float64 log-likelihoods ll (the caller negates and casts); g_em
    and g_trans are None unless want_grad.  fast: the arguments as the user gave them, taken
    only when they pass fast_check (None is returned otherwise: the caller takes the checked
    path); otherwise arrays already checked and converted (see _args)."""
    cdef _Bufs bs
    bs.n = 0
    cdef _Args a
    cdef int status = 0
    cdef double *wbuf = NULL
    cdef double *llp
    cdef void *gep
    cdef void *gtp
    cdef double s = 0.0, w = 1.0
    cdef Py_ssize_t b
    try:
        if (fast and tags is None) or not _args(&bs, &a, em, trans, None, None, mask, tags, n_threads, fast):
            return None
        dt = _f64 if a.dbl else _f32
        # the kernel writes every entry of g_em (0 at masked positions) and of g_trans
        empty = a.B * a.Tn == 0
        ge_a = (np.zeros if empty else np.empty)((a.B, a.Tn, a.K), dtype=dt) if want_grad else None
        gt_a = (np.zeros if empty else np.empty)((a.K, a.K), dtype=dt) if want_grad else None
        ll_a = np.zeros(a.B, dtype=np.float64) if per_seq else None
        if empty:
            return (ll_a if per_seq else dt.type(0.0)), ge_a, gt_a
        w = _reduction_weight(weighting, a.mask, a.B, a.Tn)
        wbuf = <double *>malloc(sizeof(double) * 2 * a.B)
        if wbuf == NULL:
            raise MemoryError()
        for b in range(a.B):
            wbuf[b] = w
            wbuf[a.B + b] = 0.0
        llp = <double *>_ptr(&bs, ll_a, True) if per_seq else wbuf + a.B
        gep = _ptr(&bs, ge_a, True)
        gtp = _ptr(&bs, gt_a, True)
        with nogil:
            if a.dbl:
                status = fc_memm_nll_f64(<const double *>a.em, <const double *>a.tr, a.mask, a.tags, a.B, a.Tn,
                                         a.K, bidir, wbuf, llp, <double *>gep, <double *>gtp, n_threads)
            else:
                status = fc_memm_nll_f32(<const float *>a.em, <const float *>a.tr, a.mask, a.tags, a.B, a.Tn,
                                         a.K, bidir, wbuf, llp, <float *>gep, <float *>gtp, n_threads)
        if not per_seq:
            # ll <= 0 (-inf for a forbidden gold path) and w > 0 unless every ll is 0 (no kept
            # token): no inf * 0; 0.0 - : +0 (not -0) with no kept token
            for b in range(a.B):
                s += w * llp[b]
            s = 0.0 - s
    finally:
        _release(&bs)
        free(wbuf)
    check_status(status, "memm nll")
    return (ll_a if per_seq else dt.type(s)), ge_a, gt_a


def memm_potentials(em, trans, mask, double wf, double wb, int n_threads):
    """Unary potentials (B, T, K) whose CRF path score (trans, no start/end) is the MEMM log-likelihood."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    cdef bint dbl = _is_f64(em)
    dt = _f64 if dbl else _f32
    out_a = np.zeros((B, Tn, K), dtype=dt)
    if B == 0 or Tn == 0:
        return out_a
    cdef _Bufs bs
    bs.n = 0
    cdef int status = 0
    cdef void *emp
    cdef void *tp
    cdef const uint8_t *mp
    cdef void *op
    try:
        emp = _ptr(&bs, em, False); tp = _ptr(&bs, trans, False)
        mp = <const uint8_t *>_ptr(&bs, mask, False)
        op = _ptr(&bs, out_a, True)
        with nogil:
            if dbl:
                status = fc_memm_potentials_f64(<const double *>emp, <const double *>tp, mp, B, Tn, K, wf, wb,
                                                <double *>op, n_threads)
            else:
                status = fc_memm_potentials_f32(<const float *>emp, <const float *>tp, mp, B, Tn, K, wf, wb,
                                                <float *>op, n_threads)
    finally:
        _release(&bs)
    check_status(status, "memm potentials")
    return out_a


def loglik(score, logz):
    """score - logz (float64 arrays of one shape), -inf where both are -inf (no allowed path)."""
    cdef Py_ssize_t n = score.shape[0], i
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    cdef _Bufs bs
    bs.n = 0
    cdef const double *s
    cdef const double *z
    cdef double *o
    cdef double v
    try:
        s = <const double *>_ptr(&bs, score, False)
        z = <const double *>_ptr(&bs, logz, False)
        o = <double *>_ptr(&bs, out, True)
        for i in range(n):
            v = s[i] - z[i]
            o[i] = v if v == v else -INFINITY
    finally:
        _release(&bs)
    return out
