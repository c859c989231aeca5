"""fastcore.ot.partial_wasserstein / partial_wasserstein2 against POT's partial tests, POT and linprog.

Part 1 ports, call for call, the parts of POT's ``test/test_partial.py`` that
concern ``partial_wasserstein`` and ``partial_wasserstein2`` (github.com/PythonOT/POT,
tag 0.9.6.post1, commit 85113e9a380f5fcf684c50c73c1ff6a164a7366e; these tests are
unchanged at commit aed0120 of June 2026):

- ``test_raise_errors`` -> ``test_raise_errors`` (its two ``partial_wasserstein``
  calls; the others concern the Lagrangian, entropic, Gromov and 1-D solvers);
- ``test_partial_wasserstein`` -> ``test_partial_wasserstein`` (the exact-solver
  calls on the NumPy backend; its entropic calls are not ours);
- ``test_partial_wasserstein_1d`` -> ``test_partial_wasserstein_1d`` (its second
  half, which checks ``partial_wasserstein(2)`` against POT's 1-D partial solver:
  needs POT), with the same check against linprog in
  ``test_partial_wasserstein_1d_linprog``.

Not ported: ``test_partial_wasserstein2_gradient`` (a torch gradient; fastcore.ot
is NumPy-only).  POT's data come from ``ot.datasets.make_2D_samples_gauss`` and
``ot.dist``; the port builds the same kind of data with NumPy.

Part 2 compares with POT on random problems (plans, costs, log keys and values)
and with ``scipy.optimize.linprog`` on tiny problems (the partial LP written out
below), and covers dtypes, degenerate costs and errors.
"""
import doctest
import warnings

import numpy as np
import pytest

from fastcore import ot
from _helpers import needs


def gauss_2d(rng, n, mu, cov):
    return rng.standard_normal((n, 2)) @ np.linalg.cholesky(cov).T + mu


def sqdist(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def pot_like_problem(seed=42, n_samples=20, n_noise=20):
    """Two Gaussian clouds plus uniform noise far apart, squared Euclidean cost, uniform weights."""
    rng = np.random.RandomState(seed)
    mu, cov = np.array([0, 0]), np.array([[1, 0], [0, 2]])
    xs = np.vstack([gauss_2d(rng, n_samples, mu, cov), (rng.rand(n_noise, 2) + 1) * 4])
    xt = np.vstack([gauss_2d(rng, n_samples, mu, cov), (rng.rand(n_noise, 2) + 1) * -3])
    n = n_samples + n_noise
    return np.full(n, 1 / n), np.full(n, 1 / n), sqdist(xs, xt)


def partial_linprog(a, b, M, m):
    """min <G, M> s.t. G >= 0, G 1 <= a, G^T 1 <= b, sum(G) = m, by scipy's HiGHS: (cost, plan)."""
    from scipy.optimize import linprog

    n, k = M.shape
    rows = np.kron(np.eye(n), np.ones((1, k)))
    cols = np.kron(np.ones((1, n)), np.eye(k))
    res = linprog(M.ravel(), A_ub=np.vstack([rows, cols]), b_ub=np.concatenate([a, b]),
                  A_eq=np.ones((1, n * k)), b_eq=[m], bounds=(0, None), method="highs")
    assert res.status == 0
    return res.fun, res.x.reshape(n, k)


def check_partial_plan(G, a, b, m, atol=1e-12):
    assert (G >= 0).all()
    assert (G.sum(1) <= a + atol).all()
    assert (G.sum(0) <= b + atol).all()
    assert G.sum() == pytest.approx(m, abs=atol * max(1, len(a), len(b)))


# ================================================================ part 1: POT's tests
def test_raise_errors():
    p, q, M = pot_like_problem()
    with pytest.raises(ValueError, match="infeasible"):
        ot.partial_wasserstein(p, q, M, m=2, log=True)
    with pytest.raises(ValueError, match="infeasible"):
        ot.partial_wasserstein(p, q, M, m=-1, log=True)


def test_partial_wasserstein():
    p, q, M = pot_like_problem()
    m = 0.5
    w0, log0 = ot.partial_wasserstein(p, q, M, m=m, log=True)
    # constraints (POT's checks, 1e-5) and the transported mass (POT's 1e-4)
    np.testing.assert_equal(w0.sum(1) - p <= 1e-5, [True] * len(p))
    np.testing.assert_equal(w0.sum(0) - q <= 1e-5, [True] * len(q))
    np.testing.assert_allclose(w0.sum(), m, atol=1e-4)

    w0, log0 = ot.partial_wasserstein2(p, q, M, m=m, log=True)
    w0_val = ot.partial_wasserstein2(p, q, M, m=m, log=False)
    G = log0["T"]
    np.testing.assert_allclose(w0, w0_val, atol=1e-1, rtol=1e-1)
    np.testing.assert_equal(G.sum(1) - p <= 1e-5, [True] * len(p))
    np.testing.assert_equal(G.sum(0) - q <= 1e-5, [True] * len(q))
    np.testing.assert_allclose(G.sum(), m, atol=1e-4)

    empty = np.zeros(0)
    w = ot.partial_wasserstein(empty, empty, M=M, m=None)  # uniform weights, all the mass
    np.testing.assert_equal(w.sum(1) - p <= 1e-5, [True] * len(p))
    np.testing.assert_equal(w.sum(0) - q <= 1e-5, [True] * len(q))
    np.testing.assert_allclose(w.sum(), 1, atol=1e-4)
    # beyond POT's checks: the two functions agree exactly, and the log is POT's
    assert w0 == w0_val
    assert set(log0) >= {"cost", "u", "v", "warning", "result_code", "partial_w_dist", "T"}
    assert log0["partial_w_dist"] == w0 and log0["result_code"] == 1 and log0["warning"] is None
    assert log0["u"].shape == p.shape and log0["v"].shape == q.shape


def _one_d(n, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), rng.random(n)
    return x, y, np.abs(x[:, None] - y[None, :])  # ot.dist(..., metric="minkowski", p=1)


@needs("ot")
def test_partial_wasserstein_1d():
    import ot as pot

    n = 20
    x, y, M = _one_d(n, 0)
    indices_x, indices_y, marginal_costs = pot.partial.partial_wasserstein_1d(x, y, n_transported_samples=n)
    costs = np.cumsum(marginal_costs)
    for i in [1, 5, 10]:
        np.testing.assert_allclose(costs[i - 1] / n, ot.partial_wasserstein2([], [], M, m=i / n), atol=1e-8)
        t = ot.partial_wasserstein([], [], M, m=i / n)
        ind_x, ind_y = np.where(t > 1e-6)
        np.testing.assert_array_equal(np.sort(indices_x[:i]), np.sort(ind_x))
        np.testing.assert_array_equal(np.sort(indices_y[:i]), np.sort(ind_y))


def test_partial_wasserstein_1d_linprog():
    n = 20
    _, _, M = _one_d(n, 1)
    u = np.full(n, 1 / n)
    for i in [1, 5, 10]:
        ref, _ = partial_linprog(u, u, M, i / n)
        np.testing.assert_allclose(ot.partial_wasserstein2([], [], M, m=i / n), ref, rtol=1e-9, atol=1e-12)


# ================================================================ part 2: POT, linprog, edge cases
def random_problem(rng, n, k, total_a=1.0, total_b=1.0, zeros=False):
    a, b = rng.random(n), rng.random(k)
    if zeros:
        a[rng.random(n) < 0.3] = 0
        b[rng.random(k) < 0.3] = 0
        a[0] += 0.1
        b[-1] += 0.1
    a *= total_a / a.sum()
    b *= total_b / b.sum()
    return a, b, rng.random((n, k))


@pytest.mark.parametrize("kind", ["real", "integer", "negative", "zero", "zeros in weights"])
def test_matches_linprog(rng, kind):
    for n, k in [(1, 1), (1, 3), (2, 2), (3, 2), (4, 5), (6, 6)]:
        a, b, M = random_problem(rng, n, k, total_a=rng.uniform(0.5, 2), total_b=rng.uniform(0.5, 2),
                                 zeros=kind == "zeros in weights")
        if kind == "integer":
            M = rng.integers(0, 3, (n, k)).astype(float)  # ties
        elif kind == "negative":
            M = rng.standard_normal((n, k)) - 1.0  # mostly negative: POT's 2 max(M) price would leak mass
        elif kind == "zero":
            M = np.zeros((n, k))
        cap = min(a.sum(), b.sum())
        for m in [0.0, 0.3 * cap, cap, None]:
            ref, _ = partial_linprog(a, b, M, cap if m is None else m)
            G, lg = ot.partial_wasserstein(a, b, M, m=m, log=True)
            check_partial_plan(G, a, b, cap if m is None else m)
            assert float((G * M).sum()) == pytest.approx(ref, rel=1e-9, abs=1e-12)
            assert ot.partial_wasserstein2(a, b, M, m=m) == pytest.approx(ref, rel=1e-9, abs=1e-12)
            assert lg["partial_w_dist"] == pytest.approx(ref, rel=1e-9, abs=1e-12)


@needs("ot")
@pytest.mark.parametrize("n,k", [(30, 30), (50, 40), (7, 60)])
def test_matches_pot(rng, n, k):
    import ot as pot

    for total_a, total_b in [(1.0, 1.0), (1.0, 0.6), (2.5, 1.5)]:
        a, b, M = random_problem(rng, n, k, total_a, total_b)
        for frac in (0.1, 0.5, 0.9, 1.0):
            m = frac * min(a.sum(), b.sum())
            for nb in (1, 3):
                G, lg = ot.partial_wasserstein(a, b, M, m=m, nb_dummies=nb, log=True)
                Gp, lgp = pot.partial.partial_wasserstein(a, b, M, m=m, nb_dummies=nb, log=True)
                np.testing.assert_allclose(G, Gp, rtol=1e-9, atol=1e-14)  # continuous costs: a unique plan
                assert lg["partial_w_dist"] == pytest.approx(lgp["partial_w_dist"], rel=1e-12)
                assert lg["cost"] == pytest.approx(lgp["cost"], rel=1e-12)
                assert set(lgp) <= set(lg)
                # the same centred duals as POT (both centre the balanced problem's potentials, then cut)
                np.testing.assert_allclose(lg["u"], lgp["u"], rtol=0, atol=1e-10)
                np.testing.assert_allclose(lg["v"], lgp["v"], rtol=0, atol=1e-10)
                c, lg2 = ot.partial_wasserstein2(a, b, M, m=m, nb_dummies=nb, log=True)
                cp, lg2p = pot.partial.partial_wasserstein2(a, b, M, m=m, nb_dummies=nb, log=True)
                assert c == pytest.approx(cp, rel=1e-12)
                np.testing.assert_allclose(lg2["T"], lg2p["T"], rtol=1e-9, atol=1e-14)
                # duals of the same (centred) balanced problem: feasible, tight on the plan
                u, v = lg["u"], lg["v"]
                assert u.shape == (n,) and v.shape == (k,)
                slack = M - u[:, None] - v[None, :]
                assert slack.min() >= -1e-12 and np.abs(slack[G > 1e-12]).max() <= 1e-12
        if total_a <= 1 and total_b <= 1:  # POT's m=None path (partial_wasserstein_lagrange) needs this
            Gp, lgp = pot.partial.partial_wasserstein(a, b, M, log=True)
            G = ot.partial_wasserstein(a, b, M)
            np.testing.assert_allclose(G, Gp, rtol=1e-9, atol=1e-14)
            assert ot.partial_wasserstein2(a, b, M) == pytest.approx(pot.partial.partial_wasserstein2(a, b, M),
                                                                   rel=1e-12)


@needs("ot")
def test_docstring_example_matches_pot():
    import ot as pot

    a, b, M = np.array([.1, .2]), np.array([.1, .1]), np.array([[0., 1.], [2., 3.]])
    for m in (None, 0.1, 0.15):
        np.testing.assert_allclose(ot.partial_wasserstein(a, b, M, m=m),
                                   pot.partial.partial_wasserstein(a, b, M, m=m), atol=1e-15)


def test_dtypes_and_inputs(rng):
    a, b, M = random_problem(rng, 8, 6, 1.0, 0.7)
    copies = [a.copy(), b.copy(), M.copy()]
    G64, c64 = ot.partial_wasserstein(a, b, M, m=0.4), ot.partial_wasserstein2(a, b, M, m=0.4)
    assert G64.dtype == np.float64 and isinstance(c64, np.float64)
    G32 = ot.partial_wasserstein(a, b, M.astype(np.float32), m=0.4)
    c32, lg32 = ot.partial_wasserstein2(a, b, M.astype(np.float32), m=0.4, log=True)
    assert G32.dtype == np.float32 and isinstance(c32, np.float32) and lg32["T"].dtype == np.float32
    np.testing.assert_allclose(c32, c64, rtol=1e-6)
    for x, cp in zip((a, b, M), copies):
        np.testing.assert_array_equal(x, cp)
    for layout in (np.asfortranarray(M), M[::1, ::1].copy(order="F"), M.tolist()):
        assert ot.partial_wasserstein2(list(a), tuple(b), layout, m=0.4) == c64
    ro = M.copy()
    ro.flags.writeable = False
    assert ot.partial_wasserstein2(a, b, ro, m=0.4) == c64


def test_mass_limits(rng):
    a, b, M = random_problem(rng, 5, 4, 1.0, 0.5)
    G = ot.partial_wasserstein(a, b, M, m=0.0)
    assert not G.any()
    assert ot.partial_wasserstein2(a, b, M, m=0.0) == 0.0
    cap = ot.partial_wasserstein2(a, b, M)  # m=None: min(sum(a), sum(b))
    assert ot.partial_wasserstein2(a, b, M, m=0.5) == cap
    assert ot.partial_wasserstein2(a, b, M, m=0.5 * (1 + 1e-9)) == cap  # within MASS_RTOL: clamped
    np.testing.assert_allclose(ot.partial_wasserstein(a, b, M).sum(0), b, rtol=1e-12)  # b fully moved
    with pytest.raises(ValueError, match=r"m must be <= min\(sum\(a\), sum\(b\)\)"):
        ot.partial_wasserstein(a, b, M, m=0.5 * (1 + 1e-6))


def test_bad_input(rng):
    a, b, M = random_problem(rng, 3, 3)
    for fn in (ot.partial_wasserstein, ot.partial_wasserstein2):
        name = fn.__name__
        with pytest.raises(ValueError, match=f"{name}: problem infeasible: m must be >= 0"):
            fn(a, b, M, m=-0.1)
        with pytest.raises(ValueError, match="m must be finite"):
            fn(a, b, M, m=np.nan)
        with pytest.raises(TypeError, match="m must be None or a real number"):
            fn(a, b, M, m="half")
        with pytest.raises(ValueError, match="nb_dummies must be >= 1"):
            fn(a, b, M, m=0.5, nb_dummies=0)
        with pytest.raises(TypeError, match="nb_dummies must be an int"):
            fn(a, b, M, m=0.5, nb_dummies=1.5)
        with pytest.raises(ValueError, match=f"{name}: a must have length 3"):
            fn(a[:2], b, M, m=0.5)
        with pytest.raises(ValueError, match=f"{name}: b has negative weights"):
            fn(a, -b, M, m=0.5)
        with pytest.raises(ValueError, match=f"{name}: M contains NaN"):
            fn(a, b, np.full((3, 3), np.nan), m=0.5)
        with pytest.raises(ValueError, match="below 8.9e307"):
            fn(a, b, np.full((3, 3), 1e308), m=0.5)
        with pytest.raises(TypeError, match="numItermaxx"):
            fn(a, b, M, m=0.5, numItermaxx=3)  # unknown keyword: emd's own TypeError


def test_iteration_limit_raises(rng):
    a, b, M = random_problem(rng, 40, 40, 1.0, 0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emd's ConvergenceWarning comes first
        with pytest.raises(ValueError, match="numItermax"):
            ot.partial_wasserstein(a, b, M, m=0.5, numItermax=2)
    import fastcore

    with pytest.raises(fastcore.ConvergenceError):
        ot.partial_wasserstein2(a, b, M, m=0.5, numItermax=2, raise_on_limit=True)
    # numItermax large enough: the same answer as without a limit
    assert ot.partial_wasserstein2(a, b, M, m=0.5, numItermax=10**6) == ot.partial_wasserstein2(a, b, M, m=0.5)


def test_exported_from_ot():
    assert {"partial_wasserstein", "partial_wasserstein2"} <= set(ot.__all__)
    import fastcore.ot_partial as mod

    assert ot.partial_wasserstein is mod.partial_wasserstein


def test_docstring_examples_run():
    import fastcore.ot_partial as mod

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 8 and res.failed == 0
