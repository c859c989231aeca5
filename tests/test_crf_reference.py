"""Every fast CRF / MEMM kernel against the C reference path (csrc/crf/crf_reference.c).

The reference path is plain C in log space and double, written from the maths of the docs; the
public functions reach it through the same bindings when ``_crf.use_reference(True)`` routes the
calls there.  Each case runs a public function twice, fast and reference, on random problems
(both dtypes, masks with holes and empty rows, forbidden transitions, start/end or not, K on
both sides of the register-blocked kernels' limits) and compares.  tests/c/ runs the same
comparison in C, on more problems, also for aarch64 under qemu in CI.
"""
import contextlib

import numpy as np
import pytest

from fastcore import _crf, crf

TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-9, atol=1e-9)}


@contextlib.contextmanager
def reference_path():
    _crf.use_reference(True)
    try:
        yield
    finally:
        _crf.use_reference(False)


def both(fn, *args, **kwargs):
    fast = fn(*args, **kwargs)
    with reference_path():
        ref = fn(*args, **kwargs)
    return fast, ref


def problem(seed, dtype, B, T, K, ends=True, forbid=True):
    rng = np.random.default_rng(seed)
    em = (rng.standard_normal((B, T, K)) * 2).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    if forbid and K > 2:
        tr[rng.random((K, K)) < 0.2] = -np.inf
        tr[np.arange(K), np.arange(K)] = 0.0  # every label may repeat: some path is allowed
    st = rng.standard_normal(K).astype(dtype) if ends else None
    en = rng.standard_normal(K).astype(dtype) if ends else None
    mask = rng.random((B, T)) < 0.8
    if B > 1:
        mask[1] = False  # an empty sequence
    if T > 1:
        mask[0, 0] = False  # a masked first step
    tags = rng.integers(0, K, (B, T))
    for b in range(B):  # gold paths that use allowed transitions only
        for t in range(1, T):
            if not np.isfinite(tr[tags[b, t - 1], tags[b, t]]):
                tags[b, t] = tags[b, t - 1]
    return em, tr, st, en, mask, tags


CASES = [(seed, dtype, B, T, K)
         for seed, (B, T, K) in enumerate([(3, 7, 1), (4, 9, 3), (3, 12, 9), (2, 6, 17), (3, 10, 40), (1, 25, 5)])
         for dtype in (np.float32, np.float64)]


def close(a, b, dtype):
    np.testing.assert_allclose(a, b, **TOL[dtype])


@pytest.mark.parametrize("seed,dtype,B,T,K", CASES)
def test_crf_forward_and_marginals(seed, dtype, B, T, K):
    em, tr, st, en, mask, tags = problem(seed, dtype, B, T, K)
    for fn, args in ((crf.crf_log_partition, (em, tr, st, en)),
                     (crf.crf_log_likelihood, (em, tags, tr, st, en)),
                     (crf.crf_marginals, (em, tr, st, en))):
        fast, ref = both(fn, *args, mask=mask)
        close(fast, ref, dtype)
    (nf, pf), (nr, pr) = both(crf.crf_marginals, em, tr, st, en, mask=mask, pairwise=True)
    close(nf, nr, dtype)
    close(pf, pr, dtype)


@pytest.mark.parametrize("seed,dtype,B,T,K", CASES)
@pytest.mark.parametrize("reduction", ["sum", "token_mean"])
def test_crf_gradients(seed, dtype, B, T, K, reduction):
    em, tr, st, en, mask, tags = problem(seed, dtype, B, T, K)
    (lf, gf), (lr, gr) = both(crf.crf_nll_grad, em, tags, tr, st, en, mask=mask, reduction=reduction)
    close(lf, lr, dtype)
    assert gf.keys() == gr.keys()
    for name in gf:
        close(gf[name], gr[name], dtype)


@pytest.mark.parametrize("seed,dtype,B,T,K", CASES)
@pytest.mark.parametrize("top_k", [1, 3])
def test_viterbi(seed, dtype, B, T, K, top_k):
    em, tr, st, en, mask, _ = problem(seed, dtype, B, T, K)
    (pf, sf), (pr, sr) = both(crf.viterbi, em, tr, st, en, mask=mask, top_k=top_k)
    close(sf, sr, dtype)
    # the same paths wherever the scores are not tied (ties keep one order in both paths too, but
    # float32 rounding may break a near-tie differently)
    s = np.asarray(sf, dtype=np.float64).reshape(B, top_k)
    for b in range(B):
        for k in range(top_k):
            with np.errstate(invalid="ignore"):  # -inf - -inf: two missing paths
                gaps = np.abs(s[b] - s[b, k])
            gaps[k] = np.inf
            gaps[np.isnan(gaps)] = np.inf
            if np.isfinite(s[b, k]) and gaps.min() > 1e-3:
                np.testing.assert_array_equal(pf.reshape(B, top_k, T)[b, k], pr.reshape(B, top_k, T)[b, k])


@pytest.mark.parametrize("seed,dtype,B,T,K", CASES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_memm(seed, dtype, B, T, K, bidirectional):
    em, tr, _, _, mask, tags = problem(seed, dtype, B, T, K, ends=False, forbid=False)
    fast, ref = both(crf.memm_log_likelihood, em, tags, tr, mask=mask, bidirectional=bidirectional)
    close(fast, ref, dtype)
    (lf, gf), (lr, gr) = both(crf.memm_nll_grad, em, tags, tr, mask=mask, bidirectional=bidirectional)
    close(lf, lr, dtype)
    close(gf["emissions"], gr["emissions"], dtype)
    close(gf["transitions"], gr["transitions"], dtype)
    (pf, sf), (pr, sr) = both(crf.memm_decode, em, tr, mask=mask, bidirectional=bidirectional)
    close(sf, sr, dtype)


def test_use_reference_reaches_the_kernels():
    """The switch reaches C: float32 marginals computed in float (fast) and in double (reference)
    agree to rounding but not bit for bit on a problem this size; were both answers from one path,
    they would be identical."""
    em, tr, st, en, mask, _ = problem(7, np.float32, 8, 60, 20)
    fast, ref = both(crf.crf_marginals, em, tr, st, en, mask=mask)
    close(fast, ref, np.float32)
    assert not np.array_equal(fast, ref)
