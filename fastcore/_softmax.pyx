# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/softmax.c: softmax and log-sum-exp over the middle axis of
an (outer, n, inner) C-contiguous array.  Validation happens in fastcore/softmax.py."""
from cython cimport floating
from libc.stdint cimport uint8_t

from fastcore._common cimport check_status

cdef extern from "softmax.h" nogil:
    int fc_softmax_f32(const float *x, float *out, Py_ssize_t outer, Py_ssize_t n, Py_ssize_t inner,
                       const uint8_t *mask, const Py_ssize_t *mask_offsets,
                       Py_ssize_t mask_stride_n, Py_ssize_t mask_stride_inner, int n_threads)
    int fc_softmax_f64(const double *x, double *out, Py_ssize_t outer, Py_ssize_t n, Py_ssize_t inner,
                       const uint8_t *mask, const Py_ssize_t *mask_offsets,
                       Py_ssize_t mask_stride_n, Py_ssize_t mask_stride_inner, int n_threads)
    int fc_logsumexp_f32(const float *x, float *out, Py_ssize_t outer, Py_ssize_t n, Py_ssize_t inner,
                         const uint8_t *mask, const Py_ssize_t *mask_offsets,
                         Py_ssize_t mask_stride_n, Py_ssize_t mask_stride_inner, int n_threads)
    int fc_logsumexp_f64(const double *x, double *out, Py_ssize_t outer, Py_ssize_t n, Py_ssize_t inner,
                         const uint8_t *mask, const Py_ssize_t *mask_offsets,
                         Py_ssize_t mask_stride_n, Py_ssize_t mask_stride_inner, int n_threads)


cdef inline const uint8_t *_mask_ptr(const uint8_t[::1] mask):
    return &mask[0] if mask is not None and mask.shape[0] > 0 else NULL


cdef inline const Py_ssize_t *_offs_ptr(const Py_ssize_t[::1] offs):
    return &offs[0] if offs is not None and offs.shape[0] > 0 else NULL


def softmax(const floating[:, :, ::1] x, floating[:, :, ::1] out,
            const uint8_t[::1] mask, const Py_ssize_t[::1] offsets,
            Py_ssize_t stride_n, Py_ssize_t stride_inner, int n_threads):
    """out[o, :, j] = softmax(x[o, :, j]) under the mask; out may be x."""
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    cdef const uint8_t *mp = _mask_ptr(mask)
    cdef const Py_ssize_t *op = _offs_ptr(offsets)
    cdef int status
    if outer * n * inner == 0:
        return
    with nogil:
        if floating is float:
            status = fc_softmax_f32(&x[0, 0, 0], &out[0, 0, 0], outer, n, inner,
                                    mp, op, stride_n, stride_inner, n_threads)
        else:
            status = fc_softmax_f64(&x[0, 0, 0], &out[0, 0, 0], outer, n, inner,
                                    mp, op, stride_n, stride_inner, n_threads)
    check_status(status, "masked_softmax")


def logsumexp(const floating[:, :, ::1] x, floating[:, ::1] out,
              const uint8_t[::1] mask, const Py_ssize_t[::1] offsets,
              Py_ssize_t stride_n, Py_ssize_t stride_inner, int n_threads):
    """out[o, j] = log sum_i exp(x[o, i, j]) under the mask."""
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    cdef const uint8_t *mp = _mask_ptr(mask)
    cdef const Py_ssize_t *op = _offs_ptr(offsets)
    cdef const floating *xp = NULL
    cdef int status
    if outer * inner == 0:
        return
    if n > 0:
        xp = &x[0, 0, 0]
    with nogil:
        if floating is float:
            status = fc_logsumexp_f32(xp, &out[0, 0], outer, n, inner,
                                      mp, op, stride_n, stride_inner, n_threads)
        else:
            status = fc_logsumexp_f64(xp, &out[0, 0], outer, n, inner,
                                      mp, op, stride_n, stride_inner, n_threads)
    check_status(status, "logsumexp")
