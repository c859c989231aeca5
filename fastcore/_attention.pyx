# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for the csrc/attention kernels (attention.h): tiled softmax attention forward and backward.

Every array arrives C-contiguous and flattened; shapes travel as integers.  The
masks are already in kernel index space (queries and keys permuted for an
``order``).  Validation happens in fastcore/attention.py."""
from cython cimport floating
from libc.stdint cimport uint8_t, int64_t
from libc.string cimport memset

from fastcore._common cimport check_status, fc_set_signal_check, python_signal_check

fc_set_signal_check(python_signal_check)  # Ctrl-C stops long sequences

cdef extern from "attention.h" nogil:
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

    int fc_attention_f32(const float *q, const float *k, const float *v, float *out, float *lse,
                         Py_ssize_t B, Py_ssize_t H, Py_ssize_t T, Py_ssize_t S, Py_ssize_t dk,
                         Py_ssize_t dv, double scale, const fc_attn_mask *mask,
                         const float *pre_mix, const float *post_mix, int n_threads)
    int fc_attention_f64(const double *q, const double *k, const double *v, double *out, double *lse,
                         Py_ssize_t B, Py_ssize_t H, Py_ssize_t T, Py_ssize_t S, Py_ssize_t dk,
                         Py_ssize_t dv, double scale, const fc_attn_mask *mask,
                         const double *pre_mix, const double *post_mix, int n_threads)
    int fc_attention_backward_f32(const float *q, const float *k, const float *v, const float *out,
                                  const float *dout, const float *lse, float *dq, float *dk_, float *dv_,
                                  Py_ssize_t B, Py_ssize_t H, Py_ssize_t T, Py_ssize_t S,
                                  Py_ssize_t dk, Py_ssize_t dv, double scale,
                                  const fc_attn_mask *mask, const float *pre_mix,
                                  const float *post_mix, double *dpre, double *dpost, double *dbias,
                                  int n_threads)
    int fc_attention_backward_f64(const double *q, const double *k, const double *v, const double *out,
                                  const double *dout, const double *lse, double *dq, double *dk_,
                                  double *dv_, Py_ssize_t B, Py_ssize_t H, Py_ssize_t T, Py_ssize_t S,
                                  Py_ssize_t dk, Py_ssize_t dv, double scale,
                                  const fc_attn_mask *mask, const double *pre_mix,
                                  const double *post_mix, double *dpre, double *dpost, double *dbias,
                                  int n_threads)
    int fc_attention_finite_f32(const float *x, Py_ssize_t n)
    int fc_attention_finite_f64(const double *x, Py_ssize_t n)


def all_finite(const floating[::1] x):
    """Whether every value of x is finite (one vectorised pass, no temporary)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int ok
    if n == 0:
        return True
    with nogil:
        if floating is float:
            ok = fc_attention_finite_f32(&x[0], n)
        else:
            ok = fc_attention_finite_f64(&x[0], n)
    return bool(ok)


cdef inline const int64_t *_p64(const int64_t[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef inline const uint8_t *_pu8(const uint8_t[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef int _fill_mask(fc_attn_mask *m, dict mk) except -1:
    """Fill the C mask struct from the dict built by fastcore/attention.py.  The arrays
    stay alive in ``mk`` (held by the caller) for the duration of the call."""
    cdef const int64_t[::1] kv_len = mk["kv_len"]
    cdef const int64_t[::1] q_seg = mk["q_seg"]
    cdef const int64_t[::1] k_seg = mk["k_seg"]
    cdef const uint8_t[::1] key_keep = mk["key_keep"]
    cdef const uint8_t[::1] mask = mk["mask"]
    cdef const int64_t[::1] q_pos = mk["q_pos"]
    cdef const int64_t[::1] k_pos = mk["k_pos"]
    cdef int d
    memset(m, 0, sizeof(fc_attn_mask))
    m.causal = 1 if mk["causal"] else 0
    m.causal_offset = mk["causal_offset"]
    m.kv_len = _p64(kv_len)
    m.q_seg = _p64(q_seg)
    m.k_seg = _p64(k_seg)
    m.key_keep = _pu8(key_keep)
    m.mask = _pu8(mask)
    m.q_pos = _p64(q_pos)
    m.k_pos = _p64(k_pos)
    for d in range(4):
        m.mask_strides[d] = mk["mask_strides"][d]
        m.bias_strides[d] = mk["bias_strides"][d]
    return 0


def forward(const floating[::1] q, const floating[::1] k, const floating[::1] v,
            floating[::1] out, floating[::1] lse, tuple dims, double scale, dict mk,
            const floating[::1] bias, const floating[::1] pre_mix, const floating[::1] post_mix,
            int n_threads):
    """out, lse <- attention(q, k, v) for dims = (B, H, T, S, dk, dv)."""
    cdef Py_ssize_t B = dims[0], H = dims[1], T = dims[2], S = dims[3], dk = dims[4], dv = dims[5]
    cdef fc_attn_mask m
    cdef int status
    _fill_mask(&m, mk)
    if bias is not None and bias.shape[0] > 0:
        m.bias = <const void *>&bias[0]
    cdef const floating *qp = &q[0] if q.shape[0] > 0 else NULL
    cdef const floating *kp = &k[0] if k.shape[0] > 0 else NULL
    cdef const floating *vp = &v[0] if v.shape[0] > 0 else NULL
    cdef floating *op = &out[0] if out.shape[0] > 0 else NULL
    cdef floating *lp = &lse[0] if lse.shape[0] > 0 else NULL
    cdef const floating *pre = &pre_mix[0] if pre_mix is not None and pre_mix.shape[0] > 0 else NULL
    cdef const floating *post = &post_mix[0] if post_mix is not None and post_mix.shape[0] > 0 else NULL
    with nogil:
        if floating is float:
            status = fc_attention_f32(qp, kp, vp, op, lp, B, H, T, S, dk, dv, scale, &m,
                                      pre, post, n_threads)
        else:
            status = fc_attention_f64(qp, kp, vp, op, lp, B, H, T, S, dk, dv, scale, &m,
                                      pre, post, n_threads)
    check_status(status, "attention")


cdef inline double *_pd(double[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


def backward(const floating[::1] q, const floating[::1] k, const floating[::1] v,
             const floating[::1] out, const floating[::1] dout, const floating[::1] lse,
             floating[::1] dq, floating[::1] dk_, floating[::1] dv_, tuple dims, double scale,
             dict mk, const floating[::1] bias, const floating[::1] pre_mix,
             const floating[::1] post_mix, double[::1] dpre, double[::1] dpost, double[::1] dbias,
             int n_threads):
    """dq, dk, dv (and the float64 dpre, dpost, zero-filled dbias when not None) <- gradients
    of attention for dims = (B, H, T, S, dk, dv)."""
    cdef Py_ssize_t B = dims[0], H = dims[1], T = dims[2], S = dims[3], dk = dims[4], dv = dims[5]
    cdef fc_attn_mask m
    cdef int status
    _fill_mask(&m, mk)
    if bias is not None and bias.shape[0] > 0:
        m.bias = <const void *>&bias[0]
    cdef const floating *qp = &q[0] if q.shape[0] > 0 else NULL
    cdef const floating *kp = &k[0] if k.shape[0] > 0 else NULL
    cdef const floating *vp = &v[0] if v.shape[0] > 0 else NULL
    cdef const floating *op = &out[0] if out.shape[0] > 0 else NULL
    cdef const floating *gp = &dout[0] if dout.shape[0] > 0 else NULL
    cdef const floating *lp = &lse[0] if lse.shape[0] > 0 else NULL
    cdef floating *dqp = &dq[0] if dq.shape[0] > 0 else NULL
    cdef floating *dkp = &dk_[0] if dk_.shape[0] > 0 else NULL
    cdef floating *dvp = &dv_[0] if dv_.shape[0] > 0 else NULL
    cdef const floating *pre = &pre_mix[0] if pre_mix is not None and pre_mix.shape[0] > 0 else NULL
    cdef const floating *post = &post_mix[0] if post_mix is not None and post_mix.shape[0] > 0 else NULL
    cdef double *dpre_p = _pd(dpre)
    cdef double *dpost_p = _pd(dpost)
    cdef double *dbias_p = _pd(dbias)
    with nogil:
        if floating is float:
            status = fc_attention_backward_f32(qp, kp, vp, op, gp, lp, dqp, dkp, dvp,
                                               B, H, T, S, dk, dv, scale, &m, pre, post,
                                               dpre_p, dpost_p, dbias_p, n_threads)
        else:
            status = fc_attention_backward_f64(qp, kp, vp, op, gp, lp, dqp, dkp, dvp,
                                               B, H, T, S, dk, dv, scale, &m, pre, post,
                                               dpre_p, dpost_p, dbias_p, n_threads)
    check_status(status, "attention_backward")
