# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/attention/softmax.h: softmax and log-sum-exp over the middle axis of
an (outer, n, inner) C-contiguous array.  Validation happens in fastcore/softmax.py.

The wrappers fill one request (``fc_softmax_problem``) with the data pointers of the arrays
(``fastcore._common.buffer_ptr``: C-contiguous, the format not re-checked) and the dtype, and
make one call per operation, which picks the implementation: the fast kernels, or the reference path
of csrc/attention/softmax_reference.c after ``use_reference(True)`` (csrc/attention/softmax_dispatch.c)."""
from libc.stdint cimport uint8_t

import numpy as np

from fastcore._common cimport (Buffers, dtype_of, buffer_ptr, release_buffers, check_status, fc_dtype, fc_path,
                               FC_FLOAT32, FC_FLOAT64, FC_PATH_FAST, FC_PATH_REFERENCE)

cdef extern from "attention/softmax.h" nogil:
    ctypedef struct fc_softmax_problem:
        fc_dtype dtype
        fc_path path
        const void *x
        Py_ssize_t outer, n, inner
        const uint8_t *mask
        const Py_ssize_t *mask_offsets
        Py_ssize_t mask_stride_n
        Py_ssize_t mask_stride_inner
        int n_threads
    int fc_softmax(const fc_softmax_problem *p, void *out)
    int fc_logsumexp(const fc_softmax_problem *p, void *out)



# Which implementation answers every call of this module: the fast kernels, or the reference path
# of csrc/attention/softmax_reference.c (use_reference; for the tests, which compare the two).
cdef fc_path _PATH = FC_PATH_FAST


def use_reference(bint on):
    """Route every softmax / logsumexp call of this process to the C reference path (True) or back
    to the fast kernels (False).  For tests: not thread-safe, not public."""
    global _PATH
    _PATH = FC_PATH_REFERENCE if on else FC_PATH_FAST


cdef int _problem(fc_softmax_problem *p, x, Py_ssize_t stride_n, Py_ssize_t stride_inner,
                  int n_threads) except -1:
    """The problem p for x (outer, n, inner), without its pointers."""
    p.dtype = <fc_dtype>dtype_of(x, "x")
    p.path = _PATH
    p.outer, p.n, p.inner = x.shape[0], x.shape[1], x.shape[2]
    p.x = NULL
    p.mask = NULL
    p.mask_offsets = NULL
    p.mask_stride_n = stride_n
    p.mask_stride_inner = stride_inner
    p.n_threads = n_threads
    return 0


def softmax(x, out, mask, offsets, Py_ssize_t stride_n, Py_ssize_t stride_inner, int n_threads):
    """out[o, :, j] = softmax(x[o, :, j]) under the mask; out may be x.  x and out are
    (outer, n, inner), mask a flat uint8 array or None, offsets (outer,) intp or None."""
    cdef fc_softmax_problem p
    _problem(&p, x, stride_n, stride_inner, n_threads)
    if p.outer * p.n * p.inner == 0:
        return
    cdef Buffers bs
    bs.n = 0
    cdef void *op
    cdef int status = 0
    try:
        p.x = buffer_ptr(&bs, x, False)
        p.mask = <const uint8_t *>buffer_ptr(&bs, mask, False)
        p.mask_offsets = <const Py_ssize_t *>buffer_ptr(&bs, offsets, False)
        op = buffer_ptr(&bs, out, True)
        with nogil:
            status = fc_softmax(&p, op)
    finally:
        release_buffers(&bs)
    check_status(status, "masked_softmax")


def logsumexp(x, out, mask, offsets, Py_ssize_t stride_n, Py_ssize_t stride_inner, int n_threads):
    """out[o, j] = log sum_i exp(x[o, i, j]) under the mask.  x is (outer, n, inner), out
    (outer, inner); mask and offsets as for softmax."""
    cdef fc_softmax_problem p
    _problem(&p, x, stride_n, stride_inner, n_threads)
    if p.outer * p.inner == 0:
        return
    cdef Buffers bs
    bs.n = 0
    cdef void *op
    cdef int status = 0
    try:
        p.x = buffer_ptr(&bs, x, False)  # NULL when n == 0
        p.mask = <const uint8_t *>buffer_ptr(&bs, mask, False)
        p.mask_offsets = <const Py_ssize_t *>buffer_ptr(&bs, offsets, False)
        op = buffer_ptr(&bs, out, True)
        with nogil:
            status = fc_logsumexp(&p, op)
    finally:
        release_buffers(&bs)
    check_status(status, "logsumexp")
