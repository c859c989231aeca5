# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/optim.c (global norms, fused clip + SGD / Adam steps) and
csrc/norm.c (batch normalisation).  Lists of arrays travel to C as tables of
addresses (``pointers``); validation happens in fastcore/optim.py and fastcore/norm.py."""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from cython cimport floating

import numpy as np

from fastcore._common cimport check_status

cdef extern from "optim.h" nogil:
    int FC_RED_SUMSQ, FC_RED_SUMABS, FC_RED_SUMPOW, FC_RED_MAXABS
    int fc_global_norm_f32(const float *const *x, const Py_ssize_t *sizes, Py_ssize_t n_arrays,
                           double p, double *norm, int n_threads)
    int fc_global_norm_f64(const double *const *x, const Py_ssize_t *sizes, Py_ssize_t n_arrays,
                           double p, double *norm, int n_threads)
    int fc_array_norms_f32(const float *const *x, const Py_ssize_t *sizes, Py_ssize_t n_arrays,
                           double *l2, double *l1, int n_threads)
    int fc_array_norms_f64(const double *const *x, const Py_ssize_t *sizes, Py_ssize_t n_arrays,
                           double *l2, double *l1, int n_threads)
    int fc_sgd_step_f32(float *const *p, const float *const *g, float *const *buf,
                        const Py_ssize_t *sizes, Py_ssize_t n_arrays, const double *c_p,
                        const double *c_s, double scale, double lr, double decay, double momentum,
                        double buf_keep, double buf_new, int nesterov, int n_threads)
    int fc_sgd_step_f64(double *const *p, const double *const *g, double *const *buf,
                        const Py_ssize_t *sizes, Py_ssize_t n_arrays, const double *c_p,
                        const double *c_s, double scale, double lr, double decay, double momentum,
                        double buf_keep, double buf_new, int nesterov, int n_threads)
    int fc_adam_step_f32(float *const *p, const float *const *g, float *const *m, float *const *v,
                         float *const *vmax, const Py_ssize_t *sizes, Py_ssize_t n_arrays,
                         const double *c_p, const double *c_s, double scale, double decay,
                         double beta1, double beta2, double step_size, double bc2_sqrt,
                         double eps, int n_threads)
    int fc_adam_step_f64(double *const *p, const double *const *g, double *const *m,
                         double *const *v, double *const *vmax, const Py_ssize_t *sizes,
                         Py_ssize_t n_arrays, const double *c_p, const double *c_s, double scale,
                         double decay, double beta1, double beta2, double step_size,
                         double bc2_sqrt, double eps, int n_threads)


def pointers(list arrays, bint writable=False):
    """(addresses, sizes) of C-contiguous arrays as two intp arrays.

    The addresses stay valid while the arrays live (the caller keeps them)."""
    cdef Py_ssize_t n = len(arrays), k
    addr = np.zeros(n, dtype=np.intp)
    sizes = np.zeros(n, dtype=np.intp)
    cdef Py_ssize_t[::1] a = addr, s = sizes
    cdef Py_buffer view
    cdef int flags = PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0)
    for k in range(n):
        PyObject_GetBuffer(arrays[k], &view, flags)
        a[k] = <Py_ssize_t>view.buf
        s[k] = view.len // view.itemsize if view.itemsize > 0 else 0
        PyBuffer_Release(&view)
    return addr, sizes


def grad_pointers(list grads, const Py_ssize_t[::1] shape_flat, const Py_ssize_t[::1] ndims, str fmt):
    """Addresses of ``grads`` when each is a C-contiguous ndarray of item format ``fmt``
    ("f" or "d") with the expected shape (``ndims[k]`` sizes taken in turn from
    ``shape_flat``); None at the first doubt, so that the caller re-checks in Python
    and raises a precise error.  The per-step fast path of the optimisers."""
    cdef Py_ssize_t n = len(grads), k, d, pos = 0
    if n != ndims.shape[0]:
        return None
    addr = np.empty(n, dtype=np.intp)
    cdef Py_ssize_t[::1] a = addr
    cdef Py_buffer view
    cdef bint ok
    cdef bytes want = fmt.encode("ascii")
    cdef char c = want[0]
    for k in range(n):
        g = grads[k]
        if not isinstance(g, np.ndarray):
            return None
        try:
            PyObject_GetBuffer(g, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except Exception:
            return None
        ok = (view.ndim == ndims[k] and view.format != NULL and view.format[0] == c
              and view.format[1] == 0)
        if ok:
            for d in range(view.ndim):
                if view.shape[d] != shape_flat[pos + d]:
                    ok = False
                    break
        a[k] = <Py_ssize_t>view.buf
        PyBuffer_Release(&view)
        if not ok:
            return None
        pos += ndims[k]
    return addr


def first_overlap(const Py_ssize_t[::1] addr, const Py_ssize_t[::1] nbytes, const Py_ssize_t[::1] span_lo,
                  const Py_ssize_t[::1] span_hi, const Py_ssize_t[::1] span_id):
    """(k, j) for the first gradient k (at ``addr[k]``, ``nbytes[k]`` bytes) whose bytes meet
    parameter j's (the parameters' disjoint spans sorted by start: [span_lo, span_hi), index
    span_id), or None.  A binary search per gradient."""
    cdef Py_ssize_t n = addr.shape[0], ns = span_lo.shape[0], k, lo, hi, mid, end
    for k in range(n):
        if nbytes[k] <= 0:
            continue
        end = addr[k] + nbytes[k]
        lo = 0
        hi = ns  # the last span starting before end: index lo - 1 after the search
        while lo < hi:
            mid = (lo + hi) // 2
            if span_lo[mid] < end:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0 and span_hi[lo - 1] > addr[k]:
            return k, span_id[lo - 1]
    return None


cdef inline const double *_dptr(const double[::1] x):
    return &x[0] if x is not None and x.shape[0] > 0 else NULL


cdef inline void *_tptr(const Py_ssize_t[::1] x):
    return <void *>&x[0] if x is not None and x.shape[0] > 0 else NULL


def global_norm(const Py_ssize_t[::1] addr, const Py_ssize_t[::1] sizes, bint is_double,
                double p, int n_threads):
    """The p-norm of all arrays together (float64)."""
    cdef double norm = 0.0
    cdef int status
    cdef Py_ssize_t n = addr.shape[0]
    cdef void *ap = _tptr(addr)
    cdef const Py_ssize_t *sp = <const Py_ssize_t *>_tptr(sizes)
    with nogil:
        if is_double:
            status = fc_global_norm_f64(<const double *const *>ap, sp, n, p, &norm, n_threads)
        else:
            status = fc_global_norm_f32(<const float *const *>ap, sp, n, p, &norm, n_threads)
    check_status(status, "global_norm")
    return norm


def array_norms(const Py_ssize_t[::1] addr, const Py_ssize_t[::1] sizes, bint is_double,
                int n_threads):
    """(L2 norms, L1 norms) of each array, float64."""
    cdef Py_ssize_t n = addr.shape[0]
    l2 = np.zeros(n, dtype=np.float64)
    l1 = np.zeros(n, dtype=np.float64)
    cdef double[::1] l2v = l2, l1v = l1
    cdef double *l2p = &l2v[0] if n > 0 else NULL
    cdef double *l1p = &l1v[0] if n > 0 else NULL
    cdef void *ap = _tptr(addr)
    cdef const Py_ssize_t *sp = <const Py_ssize_t *>_tptr(sizes)
    cdef int status
    with nogil:
        if is_double:
            status = fc_array_norms_f64(<const double *const *>ap, sp, n, l2p, l1p, n_threads)
        else:
            status = fc_array_norms_f32(<const float *const *>ap, sp, n, l2p, l1p, n_threads)
    check_status(status, "array_norms")
    return l2, l1


def sgd_step(const Py_ssize_t[::1] p, const Py_ssize_t[::1] g, const Py_ssize_t[::1] buf,
             const Py_ssize_t[::1] sizes, const double[::1] c_p, const double[::1] c_s,
             bint is_double, double scale, double lr, double decay, double momentum,
             double buf_keep, double buf_new, bint nesterov, int n_threads):
    """One fused SGD update (see csrc/optim.h); buf / c_p / c_s may be None."""
    cdef Py_ssize_t n = p.shape[0]
    cdef void *pp = _tptr(p)
    cdef void *gp = _tptr(g)
    cdef void *bp = _tptr(buf)
    cdef const Py_ssize_t *sp = <const Py_ssize_t *>_tptr(sizes)
    cdef const double *cpp = _dptr(c_p)
    cdef const double *csp = _dptr(c_s)
    cdef int status
    with nogil:
        if is_double:
            status = fc_sgd_step_f64(<double *const *>pp, <const double *const *>gp,
                                     <double *const *>bp, sp, n, cpp, csp, scale, lr, decay,
                                     momentum, buf_keep, buf_new, nesterov, n_threads)
        else:
            status = fc_sgd_step_f32(<float *const *>pp, <const float *const *>gp,
                                     <float *const *>bp, sp, n, cpp, csp, scale, lr, decay,
                                     momentum, buf_keep, buf_new, nesterov, n_threads)
    check_status(status, "SGD.step")


def adam_step(const Py_ssize_t[::1] p, const Py_ssize_t[::1] g, const Py_ssize_t[::1] m,
              const Py_ssize_t[::1] v, const Py_ssize_t[::1] vmax, const Py_ssize_t[::1] sizes,
              const double[::1] c_p, const double[::1] c_s, bint is_double, double scale,
              double decay, double beta1, double beta2, double step_size, double bc2_sqrt,
              double eps, int n_threads):
    """One fused Adam / AdamW update (see csrc/optim.h); vmax / c_p / c_s may be None."""
    cdef Py_ssize_t n = p.shape[0]
    cdef void *pp = _tptr(p)
    cdef void *gp = _tptr(g)
    cdef void *mp = _tptr(m)
    cdef void *vp = _tptr(v)
    cdef void *vmp = _tptr(vmax)
    cdef const Py_ssize_t *sp = <const Py_ssize_t *>_tptr(sizes)
    cdef const double *cpp = _dptr(c_p)
    cdef const double *csp = _dptr(c_s)
    cdef int status
    with nogil:
        if is_double:
            status = fc_adam_step_f64(<double *const *>pp, <const double *const *>gp,
                                      <double *const *>mp, <double *const *>vp,
                                      <double *const *>vmp, sp, n, cpp, csp, scale, decay, beta1,
                                      beta2, step_size, bc2_sqrt, eps, n_threads)
        else:
            status = fc_adam_step_f32(<float *const *>pp, <const float *const *>gp,
                                      <float *const *>mp, <float *const *>vp,
                                      <float *const *>vmp, sp, n, cpp, csp, scale, decay, beta1,
                                      beta2, step_size, bc2_sqrt, eps, n_threads)
    check_status(status, "Adam.step")


cdef extern from "norm.h" nogil:
    int fc_bn_forward_f32(const float *x, float *y, Py_ssize_t N, Py_ssize_t C, Py_ssize_t L,
                          const float *gamma, const float *beta, float *running_mean,
                          float *running_var, int training, double momentum, double eps,
                          float *save_mean, float *save_invstd, int n_threads)
    int fc_bn_forward_f64(const double *x, double *y, Py_ssize_t N, Py_ssize_t C, Py_ssize_t L,
                          const double *gamma, const double *beta, double *running_mean,
                          double *running_var, int training, double momentum, double eps,
                          double *save_mean, double *save_invstd, int n_threads)
    int fc_bn_backward_f32(const float *dy, const float *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t L,
                           const float *gamma, const float *save_mean, const float *save_invstd,
                           int training, float *dx, float *dgamma, float *dbeta, int n_threads)
    int fc_bn_backward_f64(const double *dy, const double *x, Py_ssize_t N, Py_ssize_t C,
                           Py_ssize_t L, const double *gamma, const double *save_mean,
                           const double *save_invstd, int training, double *dx, double *dgamma,
                           double *dbeta, int n_threads)


cdef inline const floating *_cvec(const floating[::1] v) noexcept:
    return &v[0] if v is not None and v.shape[0] > 0 else NULL


cdef inline floating *_vec(floating[::1] v) noexcept:
    return &v[0] if v is not None and v.shape[0] > 0 else NULL


def bn_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, const floating[::1] gamma,
               const floating[::1] beta, floating[::1] running_mean, floating[::1] running_var,
               bint training, double momentum, double eps, floating[::1] save_mean,
               floating[::1] save_invstd, int n_threads):
    """Batch norm forward over (N, C, L); optional vectors may be None."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef const floating *xp = &x[0, 0, 0] if N * C * L > 0 else NULL
    cdef floating *yp = &y[0, 0, 0] if N * C * L > 0 else NULL
    cdef const floating *gp = _cvec(gamma)
    cdef const floating *bp = _cvec(beta)
    cdef floating *rmp = _vec(running_mean)
    cdef floating *rvp = _vec(running_var)
    cdef floating *smp = _vec(save_mean)
    cdef floating *sip = _vec(save_invstd)
    cdef int status
    with nogil:
        if floating is float:
            status = fc_bn_forward_f32(xp, yp, N, C, L, gp, bp, rmp, rvp, training, momentum, eps,
                                       smp, sip, n_threads)
        else:
            status = fc_bn_forward_f64(xp, yp, N, C, L, gp, bp, rmp, rvp, training, momentum, eps,
                                       smp, sip, n_threads)
    check_status(status, "batch_norm_forward")


def bn_backward(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                const floating[::1] gamma, const floating[::1] save_mean,
                const floating[::1] save_invstd, bint training, floating[:, :, ::1] dx,
                floating[::1] dgamma, floating[::1] dbeta, int n_threads):
    """Batch norm backward over (N, C, L); gamma may be None."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef const floating *xp = &x[0, 0, 0] if N * C * L > 0 else NULL
    cdef const floating *dyp = &dy[0, 0, 0] if N * C * L > 0 else NULL
    cdef floating *dxp = &dx[0, 0, 0] if N * C * L > 0 else NULL
    cdef const floating *gp = _cvec(gamma)
    cdef const floating *smp = _cvec(save_mean)
    cdef const floating *sip = _cvec(save_invstd)
    cdef floating *dgp = _vec(dgamma)
    cdef floating *dbp = _vec(dbeta)
    cdef int status
    with nogil:
        if floating is float:
            status = fc_bn_backward_f32(dyp, xp, N, C, L, gp, smp, sip, training, dxp, dgp, dbp,
                                        n_threads)
        else:
            status = fc_bn_backward_f64(dyp, xp, N, C, L, gp, smp, sip, training, dxp, dgp, dbp,
                                        n_threads)
    check_status(status, "batch_norm_backward")
