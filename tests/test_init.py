"""Initialisers: fans, variances (statistical bounds), orthogonality, the geometric
claim mean((WᵀW - I)^2) ≈ (n + 1)/n^2, dtypes and bad input."""
import math

import numpy as np
import pytest

from _helpers import FLOAT_DTYPES
from fastcore import init


def _var_bounds(var, n, rel=0.05):
    """|sample var / var - 1| for n iid draws has sd ≈ sqrt(2/n) (normal) or less (uniform)."""
    return var * (1 - max(rel, 6 * math.sqrt(2 / n))), var * (1 + max(rel, 6 * math.sqrt(2 / n)))


def test_fans_torch_layout():
    assert init.compute_fans((64, 32)) == (32, 64)
    assert init.compute_fans((16, 8, 3, 3)) == (72, 144)  # conv (out, in, kh, kw)
    assert init.compute_fans((4, 2, 5)) == (10, 20)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name,shape,mode,expected_var", [
    ("xavier_uniform", (300, 200), None, 2 / 500),
    ("xavier_normal", (300, 200), None, 2 / 500),
    ("lecun_normal", (300, 200), "fan_in", 1 / 200),
    ("lecun_normal", (300, 200), "fan_out", 1 / 300),
    ("he_normal", (300, 200), "fan_in", 2 / 200),
    ("he_normal", (300, 200), "fan_out", 2 / 300),
    ("he_uniform", (300, 200), "fan_in", 2 / 200),
    ("he_uniform", (64, 16, 3, 3), "fan_out", 2 / (64 * 9)),
    ("xavier_normal", (64, 16, 3, 3), None, 2 / (16 * 9 + 64 * 9)),
])
def test_variance(rng, dtype, name, shape, mode, expected_var):
    kw = {} if mode is None else {"mode": mode}
    w = getattr(init, name)(rng, shape, dtype=dtype, **kw)
    assert w.shape == shape and w.dtype == dtype
    lo, hi = _var_bounds(expected_var, w.size)
    assert lo < w.var() < hi
    assert abs(w.mean()) < 6 * math.sqrt(expected_var / w.size)
    if "uniform" in name:
        bound = math.sqrt(3 * expected_var)
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * bound


def test_variance_test_can_fail(rng):
    w = init.he_normal(rng, (300, 200), mode="fan_in")
    lo, hi = _var_bounds(2 / 300, w.size)
    assert not lo < w.var() < hi  # fan_out variance is clearly distinguishable from fan_in


def test_gain(rng):
    w = init.xavier_normal(rng, (400, 400), gain=2.0)
    lo, hi = _var_bounds(4 * 2 / 800, w.size)
    assert lo < w.var() < hi


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(50, 50), (80, 30), (30, 80), (8, 4, 3, 3)])
def test_orthogonal(rng, dtype, shape):
    w = init.orthogonal(rng, shape, dtype=dtype)
    assert w.shape == shape and w.dtype == dtype
    m = w.reshape(shape[0], -1).astype(np.float64)
    r, c = m.shape
    tol = 1e-6 if dtype == np.float32 else 1e-12
    if r >= c:
        np.testing.assert_allclose(m.T @ m, np.eye(c), atol=tol)
    else:
        np.testing.assert_allclose(m @ m.T, np.eye(r), atol=tol)
    w2 = init.orthogonal(rng, shape, gain=3.0, dtype=dtype).reshape(r, -1).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(w2, axis=0 if r >= c else 1), 3.0, rtol=1e-5)


def test_orthogonal_sign_fix_gives_haar(rng):
    # without the sign fix, diag(Q) from a Gaussian QR is biased positive (R's diagonal is)
    d = np.array([np.diag(init.orthogonal(rng, (3, 3), dtype=np.float64)) for _ in range(2000)])
    assert abs(d.mean()) < 0.05


def test_geometric_near_orthogonality(rng):
    """SEED_SPEC §3: an n x n matrix with variance 1/n entries has mean((WᵀW - I)^2) ≈ (n+1)/n^2."""
    for n in (50, 100, 200):
        vals = []
        for _ in range(20):
            w = init.lecun_normal(rng, (n, n), dtype=np.float64)
            vals.append(np.mean((w.T @ w - np.eye(n)) ** 2))
        assert np.mean(vals) == pytest.approx((n + 1) / n**2, rel=0.05)
    # he (variance 2/n) is not: WᵀW ≈ 2I, so about 1/n + 4(n+1)/n^2 ≈ 0.05
    w = init.he_normal(rng, (100, 100), dtype=np.float64)
    assert np.mean((w.T @ w - np.eye(100)) ** 2) > 3 * 101 / 100**2


def test_bad_input(rng):
    with pytest.raises(TypeError, match="Generator"):
        init.he_normal(np.random.RandomState(0), (3, 3))
    with pytest.raises(TypeError, match="Generator"):
        init.he_normal(0, (3, 3))
    with pytest.raises(ValueError, match="at least 2"):
        init.xavier_normal(rng, (5,))
    with pytest.raises(ValueError, match="mode"):
        init.he_normal(rng, (3, 3), mode="fan_avg")
    with pytest.raises(TypeError, match="dtype"):
        init.he_normal(rng, (3, 3), dtype=np.int32)
    with pytest.raises(ValueError, match="fan_in"):
        init.he_normal(rng, (3, 0))
    with pytest.raises(ValueError, match="non-negative"):
        init.xavier_uniform(rng, (3, -1))
    with pytest.raises(ValueError, match="gain"):
        init.orthogonal(rng, (3, 3), gain=0.0)
    assert init.orthogonal(rng, (0, 3)).shape == (0, 3)
