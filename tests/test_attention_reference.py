"""Every fast attention and softmax kernel against the C reference paths
(csrc/attention/attention_reference.c, csrc/attention/softmax_reference.c).

The reference paths are plain C in double, written from the maths of the docs (every (T, S)
probability table stored whole, no tiles, no online softmax); the public functions reach them
through the same bindings when ``_attention.use_reference(True)`` and
``_softmax.use_reference(True)`` route the calls there.  Each case runs a public function twice,
fast and reference, and compares: attention and its backward under every mask kind alone and
combined (lengths, causal, UniLM segments, permutation orders, explicit masks, biases with -inf),
talking-heads pre / post mixing, T != S, dk != dv, tiles of 64 crossed; masked_softmax and
logsumexp on the reduced axis last (inner == 1) or not (inner > 1), broadcast masks, -inf, +inf
and NaN.  tests/c/test_attention_reference.c runs the same comparison in C, on more problems.
"""
import contextlib
import zlib

import numpy as np
import pytest

from fastcore import _attention, _softmax
from fastcore.attention import attention, attention_backward
from fastcore.softmax import logsumexp, masked_softmax

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-4, np.float64: 1e-9}


@contextlib.contextmanager
def reference_path():
    _attention.use_reference(True)
    _softmax.use_reference(True)
    try:
        yield
    finally:
        _attention.use_reference(False)
        _softmax.use_reference(False)


def both(fn, *args, **kwargs):
    fast = fn(*args, **kwargs)
    with reference_path():
        ref = fn(*args, **kwargs)
    return fast, ref


def close(fast, ref, dtype):
    """Entry by entry within tol (1 + the largest |entry| of ref): a float32 gradient entry carries
    the rounding of the largest terms of its sums.  NaN and infinities must sit at the same places."""
    fast, ref = np.asarray(fast, np.float64), np.asarray(ref, np.float64)
    finite = np.isfinite(ref)
    mag = np.abs(ref[finite]).max() if finite.any() else 0.0
    np.testing.assert_allclose(fast, ref, rtol=TOL[dtype], atol=TOL[dtype] * (1.0 + mag))


def seed_of(*parts):
    return zlib.crc32(repr(parts).encode())


# ---------------------------------------------------------------- attention
KINDS = {
    "none": (),
    "lengths": ("lengths",),
    "causal": ("causal",),
    "segments": ("segments",),
    "order": ("order",),
    "order_inclusive": ("order", "inclusive"),
    "mask": ("mask",),
    "bias": ("bias",),
    "combined": ("lengths", "causal", "segments", "mask", "bias"),
    "order_combined": ("order", "inclusive", "lengths", "segments", "mask", "bias"),
}
MIXES = ["none", "pre", "post", "both"]
# (B, H, T, dk, dv); S = T + 3 for the kinds that allow T != S, in every other case
SHAPES = [(2, 3, 7, 5, 4), (1, 2, 70, 8, 16), (3, 1, 5, 3, 6), (2, 4, 9, 16, 4), (1, 3, 130, 4, 9)]


def attention_problem(kind, mix, dtype):
    """q, k, v, dout and the keyword arguments (masks, bias, mixing) of one case."""
    parts = KINDS[kind]
    rng = np.random.default_rng(seed_of(kind, mix, np.dtype(dtype).name))
    B, H, T, dk, dv = SHAPES[(list(KINDS).index(kind) + MIXES.index(mix)) % len(SHAPES)]
    same = "segments" in parts or "order" in parts
    S = T if same or rng.random() < 0.5 else T + 3
    q = rng.standard_normal((B, H, T, dk)).astype(dtype)
    k = rng.standard_normal((B, H, S, dk)).astype(dtype)
    v = rng.standard_normal((B, H, S, dv)).astype(dtype)
    dout = rng.standard_normal((B, H, T, dv)).astype(dtype)
    kw = {}
    if "lengths" in parts:
        kw["lengths"] = rng.integers(0, S + 1, B)
    if "causal" in parts:
        kw["causal"] = True
    if "segments" in parts:
        kw["segment_ids"] = (rng.random((B, S)) < 0.2).astype(np.int64)
    if "order" in parts:
        kw["order"] = np.stack([rng.permutation(T) for _ in range(B)])
        kw["order_inclusive"] = "inclusive" in parts
    if "mask" in parts:
        kw["mask"] = rng.random((B, 1, T, S)) < 0.8  # broadcast over the heads
    if "bias" in parts:
        bias = rng.standard_normal((1, H, T, S))  # broadcast over the batch
        bias[rng.random(bias.shape) < 0.1] = -np.inf
        kw["bias"] = bias.astype(dtype)
    if mix in ("pre", "both"):
        kw["pre_mix"] = (np.eye(H) + 0.3 * rng.standard_normal((H, H))).astype(dtype)
    if mix in ("post", "both"):
        kw["post_mix"] = (np.eye(H) + 0.3 * rng.standard_normal((H, H))).astype(dtype)
    return q, k, v, dout, kw


def forward_backward(q, k, v, dout, kw):
    """attention and attention_backward (on that forward's out and lse) of one path."""
    out, lse = attention(q, k, v, return_lse=True, n_threads=2, **kw)
    grads = attention_backward(dout, q, k, v, out, lse, return_dbias="bias" in kw, n_threads=2, **kw)
    return out, lse, tuple(grads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_attention_forward_and_backward(kind, mix, dtype):
    q, k, v, dout, kw = attention_problem(kind, mix, dtype)
    (of, lf, gf), (orf, lr, gr) = both(forward_backward, q, k, v, dout, kw)
    close(of, orf, dtype)
    close(lf, lr, dtype)
    assert len(gf) == len(gr)
    for name, a, b in zip(["dq", "dk", "dv", "dpre_mix", "dpost_mix", "dbias"], gf, gr):
        assert (a is None) == (b is None), name
        if a is not None:
            close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_scale_and_rows_without_keys(dtype):
    """An explicit scale, and lengths of 0: rows with no visible key (out 0, lse -inf) on both paths."""
    rng = np.random.default_rng(11)
    q, k, v = (rng.standard_normal((3, 2, 6, 5)).astype(dtype) for _ in range(3))
    dout = rng.standard_normal((3, 2, 6, 5)).astype(dtype)
    kw = {"lengths": np.array([0, 3, 6]), "scale": 0.7, "bias": rng.standard_normal((6, 6)).astype(dtype)}
    (of, lf, gf), (orf, lr, gr) = both(forward_backward, q, k, v, dout, kw)
    assert np.isneginf(lr[0]).all() and (orf[0] == 0).all()
    close(of, orf, dtype)
    close(lf, lr, dtype)
    for a, b in zip(gf, gr):  # dq, dk, dv, dpre_mix (None), dpost_mix (None), dbias
        assert (a is None) == (b is None)
        if a is not None:
            close(a, b, dtype)


# ---------------------------------------------------------------- softmax / logsumexp
# (shape, axis, mask shape or None): axis last (inner == 1) or not (inner > 1), broadcast masks
SOFTMAX_CASES = [
    ((6, 37), -1, None),
    ((6, 37), -1, (6, 37)),
    ((3, 4, 50), -1, (3, 1, 50)),
    ((3, 4, 50), -1, (1, 4, 1)),      # constant along the reduced axis (stride 0)
    ((2, 700), -1, (1, 700)),
    ((40, 7), 0, None),
    ((40, 7), 0, (40, 1)),
    ((5, 30, 300), 1, (5, 30, 1)),    # more than one column block (256)
    ((2, 9, 3, 11), 1, (2, 1, 3, 11)),
    ((4, 0, 3), 1, None),             # empty reduced axis
]


def softmax_problem(shape, axis, mshape, special, dtype):
    rng = np.random.default_rng(seed_of(shape, axis, mshape, special, np.dtype(dtype).name))
    x = 3 * rng.standard_normal(shape)
    if special and x.size:
        r = rng.random(shape)
        x[r < 0.05] = -np.inf
        x[(r >= 0.05) & (r < 0.07)] = np.inf
        x[(r >= 0.07) & (r < 0.08)] = np.nan
        x[tuple(slice(None) if d == axis % x.ndim else 0 for d in range(x.ndim))] = -np.inf  # a slice all -inf
    mask = None if mshape is None else rng.random(mshape) < 0.7
    return x.astype(dtype), mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("shape,axis,mshape", SOFTMAX_CASES)
def test_masked_softmax_and_logsumexp(shape, axis, mshape, special, dtype):
    x, mask = softmax_problem(shape, axis, mshape, special, dtype)
    fast, ref = both(masked_softmax, x, mask, axis=axis, n_threads=2)
    close(fast, ref, dtype)
    fast, ref = both(logsumexp, x, axis=axis, mask=mask, n_threads=2)
    close(fast, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("shape,axis,mshape", [((6, 37), -1, (6, 37)), ((40, 7), 0, (40, 1))])
def test_masked_softmax_in_place(shape, axis, mshape, special, dtype):
    """out=x on both paths, against the out-of-place reference.  (axis 0 with -inf / +inf: the fast
    column kernel, softmax_impl.h fc_cols, re-reads x after overwriting it and writes NaN where a
    slice has no finite maximum.)"""
    x, mask = softmax_problem(shape, axis, mshape, special, dtype)
    with reference_path():
        want = masked_softmax(x, mask, axis=axis)
    for use in (False, True):
        y = x.copy()
        _attention.use_reference(use)
        _softmax.use_reference(use)
        try:
            assert masked_softmax(y, mask, axis=axis, out=y) is y
        finally:
            _attention.use_reference(False)
            _softmax.use_reference(False)
        close(y, want, dtype)


# ---------------------------------------------------------------- the switch
def test_use_reference_reaches_the_kernels():
    """The switch reaches C: float32 results computed in float (fast) and in double (reference)
    agree to rounding but not bit for bit on problems this size; were both answers from one path,
    they would be identical.  Each module's switch routes its own calls only."""
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((2, 4, 100, 32)).astype(np.float32) for _ in range(3))
    att_fast, att_ref = both(attention, q, k, v, causal=True)
    close(att_fast, att_ref, np.float32)
    assert not np.array_equal(att_fast, att_ref)
    x = 5 * rng.standard_normal((64, 300)).astype(np.float32)
    sm_fast, sm_ref = both(masked_softmax, x)
    close(sm_fast, sm_ref, np.float32)
    assert not np.array_equal(sm_fast, sm_ref)
    _softmax.use_reference(True)  # softmax only
    try:
        att, sm = attention(q, k, v, causal=True), masked_softmax(x)
    finally:
        _softmax.use_reference(False)
    assert np.array_equal(att, att_fast)
    assert np.array_equal(sm, sm_ref)
