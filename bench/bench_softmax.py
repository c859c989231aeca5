"""masked_softmax / logsumexp beside NumPy, SciPy and torch on attention-sized scores."""
import os

import numpy as np
import scipy.special

import fastcore
from _harness import Case, benchmark_tests, have

SHAPE = (8, 12, 512, 512)  # (B, H, T, S) attention scores, float32


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _scores():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    lengths = rng.integers(SHAPE[-1] // 2, SHAPE[-1] + 1, size=SHAPE[0])
    pad = (np.arange(SHAPE[-1])[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    causal = np.tril(np.ones(SHAPE[-2:], dtype=bool))  # (T, S)
    return {"x": x, "pad": pad, "causal": causal}


def _np_softmax(x, mask=None):
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def _impls(mask_key):
    impls = {
        "fastcore": lambda d: fastcore.masked_softmax(
            d["x"], None if mask_key is None else d[mask_key], n_threads=_threads()),
        "numpy": lambda d: _np_softmax(d["x"], None if mask_key is None else d[mask_key]),
    }
    if mask_key is None:
        impls["scipy"] = lambda d: scipy.special.softmax(d["x"], axis=-1)
    if have("torch"):
        import torch

        def torch_softmax(d):
            x = torch.from_numpy(d["x"])
            if mask_key is not None:
                x = x.masked_fill(~torch.from_numpy(np.ascontiguousarray(d[mask_key])), float("-inf"))
            return torch.softmax(x, dim=-1)

        impls["torch"] = torch_softmax
    return impls


def _check(results):
    ref = np.asarray(results["fastcore"])
    for name, value in results.items():
        np.testing.assert_allclose(np.asarray(value), ref, rtol=1e-5, atol=1e-6, err_msg=name)


def cases():
    n = int(np.prod(SHAPE))
    out = [
        Case("softmax", "softmax (8,12,512,512) f32", _scores, _impls(None), ("elem", n), _check),
        Case("softmax", "softmax pad mask (B,1,1,S)", _scores, _impls("pad"), ("elem", n), _check),
        Case("softmax", "softmax causal mask (T,S)", _scores, _impls("causal"), ("elem", n), _check),
    ]
    lse = {
        "fastcore": lambda d: fastcore.logsumexp(d["x"], n_threads=_threads()),
        "scipy": lambda d: scipy.special.logsumexp(d["x"], axis=-1),
    }
    if have("torch"):
        import torch

        lse["torch"] = lambda d: torch.logsumexp(torch.from_numpy(d["x"]), dim=-1)
    out.append(Case("softmax", "logsumexp (8,12,512,512) f32", _scores, lse, ("elem", n), _check))
    return out


test_softmax = benchmark_tests(cases)
