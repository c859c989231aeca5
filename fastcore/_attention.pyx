# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for the csrc/attention kernels (attention/attention.h): tiled softmax attention forward and backward.

Every array arrives C-contiguous and flattened; shapes travel as integers.  The
masks are already in kernel index space (queries and keys permuted for an
``order``).  Validation happens in fastcore/attention.py.

The wrappers fill one request (``fc_attention_problem``, and ``fc_attention_grads`` for the
backward) with the data pointers of the arrays (``fastcore._common.buffer_ptr``: C-contiguous,
the format not re-checked) and the dtype, and make one call per operation, which picks the
implementation: the fast kernels, or the reference path of csrc/attention/attention_reference.c
after ``use_reference(True)`` (csrc/attention/attention_dispatch.c)."""
from libc.stdint cimport uint8_t, int64_t
from libc.string cimport memset

import numpy as np

from fastcore._common cimport (Buffers, dtype_of, buffer_ptr, release_buffers, check_status, fc_dtype, fc_path,
                               FC_FLOAT32, FC_FLOAT64, FC_PATH_FAST, FC_PATH_REFERENCE, fc_set_signal_check,
                               python_signal_check)

fc_set_signal_check(python_signal_check)  # Ctrl-C stops long sequences

cdef extern from "attention/attention.h" nogil:
    ctypedef struct fc_attn_mask:
        int causal
        Py_ssize_t causal_offset
        const int64_t *kv_len
        const int64_t *q_seg
        const int64_t *k_seg
        const uint8_t *key_keep
        const uint8_t *mask
        Py_ssize_t mask_strides[4]
        const void *bias
        Py_ssize_t bias_strides[4]
        const int64_t *q_pos
        const int64_t *k_pos
    ctypedef struct fc_attention_problem:
        fc_dtype dtype
        fc_path path
        Py_ssize_t B, H, T, S, dk, dv
        double scale
        const void *q
        const void *k
        const void *v
        const fc_attn_mask *mask
        const void *pre_mix
        const void *post_mix
        int n_threads
    ctypedef struct fc_attention_grads:
        const void *out
        const void *dout
        const void *lse
        void *dq
        void *dk
        void *dv
        double *dpre
        double *dpost
        double *dbias
    int fc_attention(const fc_attention_problem *p, void *out, void *lse)
    int fc_attention_backward(const fc_attention_problem *p, const fc_attention_grads *g)
    int fc_attention_finite(fc_dtype dtype, const void *x, Py_ssize_t n)



# Which implementation answers every forward / backward of this module: the fast kernels, or the
# reference path of csrc/attention/attention_reference.c (use_reference; for the tests, which
# compare the two).  all_finite has no reference path.
cdef fc_path _PATH = FC_PATH_FAST


def use_reference(bint on):
    """Route every attention forward / backward call of this process to the C reference path (True)
    or back to the fast kernels (False).  For tests: not thread-safe, not public."""
    global _PATH
    _PATH = FC_PATH_REFERENCE if on else FC_PATH_FAST


def all_finite(x):
    """Whether every value of x (float32 or float64, 1-d, C-contiguous) is finite (one
    vectorised pass, no temporary)."""
    cdef fc_dtype dtype = <fc_dtype>dtype_of(x, "attention arrays")
    cdef Py_ssize_t n = x.shape[0]
    cdef Buffers bs
    bs.n = 0
    cdef const void *xp
    cdef int ok
    if n == 0:
        return True
    try:
        xp = buffer_ptr(&bs, x, False)
        with nogil:
            ok = fc_attention_finite(dtype, xp, n)
    finally:
        release_buffers(&bs)
    return ok == 1


cdef int _fill_mask(Buffers *bs, fc_attn_mask *m, dict mk) except -1:
    """Fill the C mask struct from the dict built by fastcore/attention.py; the buffers of its
    arrays are held in bs until the caller releases them."""
    cdef int d
    memset(m, 0, sizeof(fc_attn_mask))
    m.causal = 1 if mk["causal"] else 0
    m.causal_offset = mk["causal_offset"]
    m.kv_len = <const int64_t *>buffer_ptr(bs, mk["kv_len"], False)
    m.q_seg = <const int64_t *>buffer_ptr(bs, mk["q_seg"], False)
    m.k_seg = <const int64_t *>buffer_ptr(bs, mk["k_seg"], False)
    m.key_keep = <const uint8_t *>buffer_ptr(bs, mk["key_keep"], False)
    m.mask = <const uint8_t *>buffer_ptr(bs, mk["mask"], False)
    m.q_pos = <const int64_t *>buffer_ptr(bs, mk["q_pos"], False)
    m.k_pos = <const int64_t *>buffer_ptr(bs, mk["k_pos"], False)
    for d in range(4):
        m.mask_strides[d] = mk["mask_strides"][d]
        m.bias_strides[d] = mk["bias_strides"][d]
    return 0


cdef int _problem(Buffers *bs, fc_attention_problem *p, fc_attn_mask *m, q, k, v, tuple dims, double scale,
                  dict mk, bias, pre_mix, post_mix, int n_threads) except -1:
    """The problem p for the arguments (buffers held in bs), its masks in m."""
    p.dtype = <fc_dtype>dtype_of(q, "attention arrays")
    p.path = _PATH
    p.B, p.H, p.T, p.S, p.dk, p.dv = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    p.scale = scale
    p.n_threads = n_threads
    _fill_mask(bs, m, mk)
    m.bias = buffer_ptr(bs, bias, False)
    p.mask = m
    p.q = buffer_ptr(bs, q, False)
    p.k = buffer_ptr(bs, k, False)
    p.v = buffer_ptr(bs, v, False)
    p.pre_mix = buffer_ptr(bs, pre_mix, False)
    p.post_mix = buffer_ptr(bs, post_mix, False)
    return 0


def forward(q, k, v, out, lse, tuple dims, double scale, dict mk, bias, pre_mix, post_mix, int n_threads):
    """out, lse <- attention(q, k, v) for dims = (B, H, T, S, dk, dv)."""
    cdef Buffers bs
    bs.n = 0
    cdef fc_attention_problem p
    cdef fc_attn_mask m
    cdef void *op
    cdef void *lp
    cdef int status = 0
    try:
        _problem(&bs, &p, &m, q, k, v, dims, scale, mk, bias, pre_mix, post_mix, n_threads)
        op = buffer_ptr(&bs, out, True)
        lp = buffer_ptr(&bs, lse, True)
        with nogil:
            status = fc_attention(&p, op, lp)
    finally:
        release_buffers(&bs)
    check_status(status, "attention")


def backward(q, k, v, out, dout, lse, dq, dk_, dv_, tuple dims, double scale, dict mk, bias, pre_mix,
             post_mix, dpre, dpost, dbias, int n_threads):
    """dq, dk, dv (and the float64 dpre, dpost, zero-filled dbias when not None) <- gradients
    of attention for dims = (B, H, T, S, dk, dv)."""
    cdef Buffers bs
    bs.n = 0
    cdef fc_attention_problem p
    cdef fc_attn_mask m
    cdef fc_attention_grads g
    cdef int status = 0
    try:
        _problem(&bs, &p, &m, q, k, v, dims, scale, mk, bias, pre_mix, post_mix, n_threads)
        g.out = buffer_ptr(&bs, out, False)
        g.dout = buffer_ptr(&bs, dout, False)
        g.lse = buffer_ptr(&bs, lse, False)
        g.dq = buffer_ptr(&bs, dq, True)
        g.dk = buffer_ptr(&bs, dk_, True)
        g.dv = buffer_ptr(&bs, dv_, True)
        g.dpre = <double *>buffer_ptr(&bs, dpre, True)
        g.dpost = <double *>buffer_ptr(&bs, dpost, True)
        g.dbias = <double *>buffer_ptr(&bs, dbias, True)
        with nogil:
            status = fc_attention_backward(&p, &g)
    finally:
        release_buffers(&bs)
    check_status(status, "attention_backward")
