# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bindings for csrc/crf.c: linear-chain CRF and MEMM kernels.  Validation
happens in fastcore/crf.py; these functions trust shapes, dtypes and label ranges."""
from cython cimport floating
from libc.stdint cimport uint8_t, int64_t

import numpy as np

from fastcore._common cimport check_status

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
    int fc_memm_potentials_f64(const double *em, const double *trans, const uint8_t *mask, Py_ssize_t B,
                               Py_ssize_t Tn, Py_ssize_t K, double wf, double wb, double *out, int n_threads)


cdef inline const uint8_t *_mptr(const uint8_t[:, ::1] m):
    return &m[0, 0] if m is not None and m.shape[0] > 0 and m.shape[1] > 0 else NULL

cdef inline const int64_t *_tptr(const int64_t[:, ::1] t):
    return &t[0, 0] if t is not None and t.shape[0] > 0 and t.shape[1] > 0 else NULL

cdef inline const floating *_vptr(const floating[::1] v):
    return &v[0] if v is not None else NULL


def forward(const floating[:, :, ::1] em, const floating[:, ::1] trans, const floating[::1] start,
            const floating[::1] end, const uint8_t[:, ::1] mask, const int64_t[:, ::1] tags, int n_threads):
    """(log Z (B,), score (B,) or None), float64."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    logz_a = np.zeros(B, dtype=np.float64)
    score_a = np.zeros(B, dtype=np.float64) if tags is not None else None
    cdef double[::1] lz = logz_a
    cdef double[::1] sc = score_a
    cdef double *scp = &sc[0] if (score_a is not None and B > 0) else NULL
    cdef const floating *emp = &em[0, 0, 0] if B * Tn * K > 0 else NULL
    cdef const uint8_t *mp = _mptr(mask)
    cdef const int64_t *tp = _tptr(tags)
    cdef const floating *sp = _vptr(start)
    cdef const floating *ep = _vptr(end)
    cdef int status = 0
    if B == 0 or Tn == 0:
        return logz_a, score_a
    with nogil:
        if floating is float:
            status = fc_crf_forward_f32(emp, &trans[0, 0], sp, ep, mp, tp, B, Tn, K, &lz[0], scp, n_threads)
        else:
            status = fc_crf_forward_f64(emp, &trans[0, 0], sp, ep, mp, tp, B, Tn, K, &lz[0], scp, n_threads)
    check_status(status, "crf forward")
    return logz_a, score_a


def forward_backward(const floating[:, :, ::1] em, const floating[:, ::1] trans, const floating[::1] start,
                     const floating[::1] end, const uint8_t[:, ::1] mask, const int64_t[:, ::1] tags,
                     const double[::1] weight, bint want_node, bint want_pair, bint want_grad, int n_threads):
    """dict with logz, score (if tags), node, pair, g_em, g_trans, g_start, g_end as requested."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    dt = np.float32 if floating is float else np.float64
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
        if want_grad:
            out["g_trans"][...] = 0
        return out
    cdef double[::1] lz = out["logz"]
    cdef double[::1] sc
    cdef double *scp = NULL
    if tags is not None:
        sc = out["score"]
        scp = &sc[0]
    cdef floating[:, :, ::1] nd
    cdef floating[:, :, :, ::1] pr
    cdef floating[:, :, ::1] ge
    cdef floating[:, ::1] gt
    cdef floating[::1] gs, gn
    cdef floating *ndp = NULL
    cdef floating *prp = NULL
    cdef floating *gep = NULL
    cdef floating *gtp = NULL
    cdef floating *gsp = NULL
    cdef floating *gnp = NULL
    if want_node:
        nd = out["node"]
        ndp = &nd[0, 0, 0]
    if want_pair:
        pr = out["pair"]
        prp = &pr[0, 0, 0, 0]
    if want_grad:
        ge = out["g_em"]; gt = out["g_trans"]; gs = out["g_start"]; gn = out["g_end"]
        gep = &ge[0, 0, 0]; gtp = &gt[0, 0]; gsp = &gs[0]; gnp = &gn[0]
    cdef const double *wp = &weight[0] if weight is not None else NULL
    cdef const uint8_t *mp = _mptr(mask)
    cdef const int64_t *tp = _tptr(tags)
    cdef const floating *sp = _vptr(start)
    cdef const floating *ep = _vptr(end)
    cdef int status = 0
    with nogil:
        if floating is float:
            status = fc_crf_fb_f32(&em[0, 0, 0], &trans[0, 0], sp, ep, mp, tp, B, Tn, K, wp, &lz[0], scp,
                                   ndp, prp, gep, gtp, gsp, gnp, n_threads)
        else:
            status = fc_crf_fb_f64(&em[0, 0, 0], &trans[0, 0], sp, ep, mp, tp, B, Tn, K, wp, &lz[0], scp,
                                   ndp, prp, gep, gtp, gsp, gnp, n_threads)
    check_status(status, "crf forward-backward")
    return out


def viterbi(const floating[:, :, ::1] em, const floating[:, ::1] trans, const floating[::1] start,
            const floating[::1] end, const uint8_t[:, ::1] mask, Py_ssize_t top_k, int n_threads):
    """(paths (B, top_k, T) int64, scores (B, top_k) float64)."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    paths_a = np.full((B, top_k, Tn), -1, dtype=np.int64)
    scores_a = np.zeros((B, top_k), dtype=np.float64)
    if B == 0:
        return paths_a, scores_a
    if Tn == 0:
        scores_a[:, 1:] = -np.inf
        return paths_a, scores_a
    cdef int64_t[:, :, ::1] pa = paths_a
    cdef double[:, ::1] sa = scores_a
    cdef const uint8_t *mp = _mptr(mask)
    cdef const floating *sp = _vptr(start)
    cdef const floating *ep = _vptr(end)
    cdef int status = 0
    with nogil:
        if floating is float:
            status = fc_crf_viterbi_f32(&em[0, 0, 0], &trans[0, 0], sp, ep, mp, B, Tn, K, top_k,
                                        &pa[0, 0, 0], &sa[0, 0], n_threads)
        else:
            status = fc_crf_viterbi_f64(&em[0, 0, 0], &trans[0, 0], sp, ep, mp, B, Tn, K, top_k,
                                        &pa[0, 0, 0], &sa[0, 0], n_threads)
    check_status(status, "viterbi")
    return paths_a, scores_a


def memm_nll(const floating[:, :, ::1] em, const floating[:, ::1] trans, const uint8_t[:, ::1] mask,
             const int64_t[:, ::1] tags, bint bidir, const double[::1] weight, bint want_grad, int n_threads):
    """(ll (B,) float64, g_em or None, g_trans or None)."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    dt = np.float32 if floating is float else np.float64
    ll_a = np.zeros(B, dtype=np.float64)
    ge_a = np.zeros((B, Tn, K), dtype=dt) if want_grad else None
    gt_a = np.zeros((K, K), dtype=dt) if want_grad else None
    if B == 0 or Tn == 0:
        return ll_a, ge_a, gt_a
    cdef double[::1] ll = ll_a
    cdef floating[:, :, ::1] ge
    cdef floating[:, ::1] gt
    cdef floating *gep = NULL
    cdef floating *gtp = NULL
    if want_grad:
        ge = ge_a; gt = gt_a
        gep = &ge[0, 0, 0]; gtp = &gt[0, 0]
    cdef const double *wp = &weight[0] if weight is not None else NULL
    cdef const uint8_t *mp = _mptr(mask)
    cdef int status = 0
    with nogil:
        if floating is float:
            status = fc_memm_nll_f32(&em[0, 0, 0], &trans[0, 0], mp, &tags[0, 0], B, Tn, K, bidir, wp,
                                     &ll[0], gep, gtp, n_threads)
        else:
            status = fc_memm_nll_f64(&em[0, 0, 0], &trans[0, 0], mp, &tags[0, 0], B, Tn, K, bidir, wp,
                                     &ll[0], gep, gtp, n_threads)
    check_status(status, "memm nll")
    return ll_a, ge_a, gt_a


def memm_potentials(const floating[:, :, ::1] em, const floating[:, ::1] trans, const uint8_t[:, ::1] mask,
                    double wf, double wb, int n_threads):
    """Unary potentials (B, T, K) whose CRF path score (trans, no start/end) is the MEMM log-likelihood."""
    cdef Py_ssize_t B = em.shape[0], Tn = em.shape[1], K = em.shape[2]
    dt = np.float32 if floating is float else np.float64
    out_a = np.zeros((B, Tn, K), dtype=dt)
    if B == 0 or Tn == 0:
        return out_a
    cdef floating[:, :, ::1] o = out_a
    cdef const uint8_t *mp = _mptr(mask)
    cdef int status = 0
    with nogil:
        if floating is float:
            status = fc_memm_potentials_f32(&em[0, 0, 0], &trans[0, 0], mp, B, Tn, K, wf, wb, &o[0, 0, 0], n_threads)
        else:
            status = fc_memm_potentials_f64(&em[0, 0, 0], &trans[0, 0], mp, B, Tn, K, wf, wb, &o[0, 0, 0], n_threads)
    check_status(status, "memm potentials")
    return out_a
