"""fastcore.ot's 1-D solvers against POT's ``test/test_1d_solver.py``, ported call for call.

Source: github.com/PythonOT/POT, ``test/test_1d_solver.py`` at commit aed0120 (June 2026),
the snapshot matching the installed POT 0.9.7.post1 (its ``ot/lp/solver_1d.py`` is
byte-identical to that release's).  Own code: POT's helpers (``ot.dist``, ``ot.unif``) are
rewritten with NumPy below, and POT's ``nx`` backend fixture is the NumPy backend
(float32 and float64 for the ``*_type_devices`` cases, POT's ``nx.__type_list__``).

Ported (7 of 12):

- ``test_emd_1d_emd2_1d_with_weights``, ``test_wasserstein_1d`` (incl. the (n, 2) batch),
  ``test_wasserstein_1d_type_devices``, ``test_emd1d_type_devices``,
  ``test_index_quantile_function``, ``test_wasserstein_1d_plan`` (both plan forms);
- ``test_emd_1d_emd2_1d``: POT raises ``AssertionError`` on (n, 2) positions, fastcore a
  ``ValueError`` naming the argument (README, differences from POT).

Unsupported (5 of 12):

- ``test_wasserstein_1d_device_tf``, ``test_emd1d_device_tf``: TensorFlow backend
  (fastcore.ot is NumPy-only);
- ``test_emd1d_dual_with_weights``, ``test_emd1d_dual_backprop_batch``,
  ``test_emd1d_dual_type_devices``: ``ot.emd_1d_dual_backprop``, a torch/jax-only function
  that fastcore does not offer (on NumPy POT itself skips or raises there).
"""
import numpy as np
import pytest
import scipy.sparse
from scipy.stats import wasserstein_distance

from fastcore import ot
from _helpers import needs

TYPES = (np.float32, np.float64)  # POT's NumPy backend __type_list__


def dist(x, y):
    """POT's ot.dist default: squared Euclidean distances between the rows."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def unif(n):
    return np.full(n, 1.0 / n)


def test_emd_1d_emd2_1d_with_weights():
    n, m = 20, 30
    rng = np.random.RandomState(0)
    u = rng.randn(n, 1)
    v = rng.randn(m, 1)
    w_u = rng.uniform(0.0, 1.0, n)
    w_u /= w_u.sum()
    w_v = rng.uniform(0.0, 1.0, m)
    w_v /= w_v.sum()
    M = dist(u, v)

    G, lg = ot.emd(w_u, w_v, M, log=True)
    G_1d, lg1 = ot.emd_1d(u, v, w_u, w_v, metric="sqeuclidean", log=True)
    cost_emd2 = ot.emd2_1d(u, v, w_u, w_v, metric="sqeuclidean", log=False)
    cost_euc = ot.emd2_1d(u, v, w_u, w_v, metric="euclidean", log=False)

    np.testing.assert_allclose(lg["cost"], lg1["cost"])
    np.testing.assert_allclose(lg["cost"], cost_emd2)
    np.testing.assert_allclose(wasserstein_distance(u.ravel(), v.ravel(), w_u, w_v), cost_euc)
    np.testing.assert_allclose(w_u, G.sum(1))
    np.testing.assert_allclose(w_v, G.sum(0))
    np.testing.assert_allclose(w_u, G_1d.sum(1))
    np.testing.assert_allclose(w_v, G_1d.sum(0))
    with pytest.raises(ValueError):
        ot.emd_1d(u, v, w_u, w_v, metric="cosine")
    with pytest.raises(ValueError):
        ot.emd2_1d(u, v, w_u, w_v, metric="cosine")


def test_wasserstein_1d():
    rng = np.random.RandomState(0)
    n = 100
    x = np.linspace(0, 5, n)
    rho_u = np.abs(rng.randn(n))
    rho_u /= rho_u.sum()
    rho_v = np.abs(rng.randn(n))
    rho_v /= rho_v.sum()

    # 1: W_1 equals SciPy's
    np.testing.assert_almost_equal(ot.wasserstein_1d(x, x, rho_u, rho_v, p=1),
                                   wasserstein_distance(x, x, rho_u, rho_v))
    # 2: translating the support by 1 gives W_2^2 = 1
    np.testing.assert_almost_equal(ot.wasserstein_1d(x, x + 1, p=2), 1.0)
    # 3: (n, 2) positions, shared 1-d weights: two independent problems, the second 10x
    X = np.stack((np.linspace(0, 5, n), np.linspace(0, 5, n) * 10), -1)
    res = ot.wasserstein_1d(X, X, rho_u, rho_v, p=2)
    assert res.shape == (2,)
    np.testing.assert_almost_equal(100 * res[0], res[1], decimal=4)


def test_wasserstein_1d_type_devices():
    rng = np.random.RandomState(0)
    n = 10
    x = np.linspace(0, 5, n)
    rho_u = np.abs(rng.randn(n))
    rho_u /= rho_u.sum()
    rho_v = np.abs(rng.randn(n))
    rho_v /= rho_v.sum()
    for tp in TYPES:
        xb, rho_ub, rho_vb = (np.asarray(t, dtype=tp) for t in (x, rho_u, rho_v))
        res = ot.wasserstein_1d(xb, xb, rho_ub, rho_vb, p=1)
        assert res.dtype == xb.dtype


def test_emd_1d_emd2_1d():
    n, m = 20, 30
    rng = np.random.RandomState(0)
    u = rng.randn(n, 1)
    v = rng.randn(m, 1)
    M = dist(u, v)

    G, lg = ot.emd([], [], M, log=True)
    G_1d, lg1 = ot.emd_1d(u, v, [], [], metric="sqeuclidean", log=True)
    cost_emd2 = ot.emd2_1d(u, v, [], [], metric="sqeuclidean", log=False)
    cost_euc = ot.emd2_1d(u, v, [], [], metric="euclidean", log=False)

    np.testing.assert_allclose(lg["cost"], lg1["cost"])
    np.testing.assert_allclose(lg["cost"], cost_emd2)
    np.testing.assert_allclose(wasserstein_distance(u.ravel(), v.ravel()), cost_euc)
    np.testing.assert_allclose(np.ones(n) / n, G.sum(1))
    np.testing.assert_allclose(np.ones(m) / m, G.sum(0))
    np.testing.assert_allclose(G, G_1d, atol=1e-15)

    # positions that are not 1-d: POT asserts, fastcore raises ValueError (documented)
    u2 = rng.randn(n, 2)
    v2 = rng.randn(m, 2)
    with pytest.raises(ValueError, match="x_a"):
        ot.emd_1d(u2, v2, [], [])


def test_emd1d_type_devices():
    rng = np.random.RandomState(0)
    n = 10
    x = np.linspace(0, 5, n)
    rho_u = np.abs(rng.randn(n))
    rho_u /= rho_u.sum()
    rho_v = np.abs(rng.randn(n))
    rho_v /= rho_v.sum()
    for tp in TYPES:
        xb, rho_ub, rho_vb = (np.asarray(t, dtype=tp) for t in (x, rho_u, rho_v))
        G = ot.emd_1d(xb, xb, rho_ub, rho_vb)
        cost = ot.emd2_1d(xb, xb, rho_ub, rho_vb)
        assert G.dtype == xb.dtype
        assert cost.dtype == xb.dtype


def test_index_quantile_function():
    n = 10
    rng = np.random.RandomState(0)
    u = np.sort(rng.randn(n))
    a = unif(n)
    quantiles = np.cumsum(a)

    q = ot.quantile_function(quantiles, quantiles, u)
    q2, idx = ot.quantile_function(quantiles, quantiles, u, return_index=True)
    np.testing.assert_allclose(q, q2)
    np.testing.assert_allclose(idx, np.arange(n))


def test_wasserstein_1d_plan():
    n, m, d = 10, 4, 1
    rng = np.random.RandomState(0)
    x = rng.randn(n, d)
    y = rng.randn(m, d)
    a = rng.uniform(0, 1, n)
    a /= a.sum()
    b = rng.uniform(0, 1, m)
    b /= b.sum()

    plan_emd = ot.emd(a, b, dist(x, y))
    _, plans = ot.wasserstein_1d(x, y, a, b, p=2, return_plans=True)
    assert isinstance(plans[0], scipy.sparse.coo_matrix)
    np.testing.assert_allclose(plans[0].toarray(), plan_emd, atol=1e-05)

    _, tuples = ot.wasserstein_1d(x, y, a, b, p=2, return_plans="coo_tuple")
    t = tuples[0]
    rebuilt = scipy.sparse.coo_array((t.data, (t.rows, t.cols)), shape=(n, m)).toarray()
    np.testing.assert_allclose(rebuilt, plan_emd, atol=1e-05)


# ---------------------------------------------------------------- beyond the port: POT itself
@needs("ot")
def test_against_pot_batched_and_logs():
    """Values, shapes, log keys and plan types equal POT's on random batched problems."""
    import ot as pot

    rng = np.random.RandomState(3)
    x, y = rng.randn(9, 3), rng.randn(6, 3)
    wu, wv = rng.rand(9), rng.rand(6, 3)
    wu /= wu.sum()
    wv /= wv.sum(0)
    for p in (1, 1.5, 2):
        np.testing.assert_allclose(ot.wasserstein_1d(x, y, wu, wv, p=p), pot.wasserstein_1d(x, y, wu, wv, p=p),
                                   rtol=1e-12)
    _, ours = ot.wasserstein_1d(x, y, wu, wv, return_plans=True)
    _, theirs = pot.wasserstein_1d(x, y, wu, wv, return_plans=True)
    for P, Q in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(P.toarray(), Q.toarray(), atol=1e-15)
    qs = np.sort(rng.rand(5, 3), 0)
    cw = np.cumsum(np.full((9, 3), 1 / 9), 0)
    xs = np.sort(x, 0)
    for r in (False, True):
        for o, t in zip(*(f(qs, cw, xs, return_index=True) if r else (f(qs, cw, xs),)
                          for f in (ot.quantile_function, pot.lp.solver_1d.quantile_function))):
            np.testing.assert_array_equal(o, t)
    G, lg = ot.emd_1d(x[:, 0], y[:, 0], log=True)
    G2, lg2 = pot.emd_1d(x[:, 0], y[:, 0], log=True)
    assert set(lg) == set(lg2)
    # the same flows in the same (walk) order, up to the rounding residues (~1e-16) that
    # each cumulative-sum walk leaves at different places
    ours = [(i, j) for i, j in zip(lg["perms_x_a"], lg["perms_x_b"]) if G[i, j] > 1e-15]
    theirs = [(i, j) for i, j in zip(lg2["perms_x_a"], lg2["perms_x_b"]) if G2[i, j] > 1e-15]
    assert ours == theirs and len(ours) >= 9 + 6 - 1 - 2
    assert (G[lg["perms_x_a"], lg["perms_x_b"]] > 0).all() and len(lg["perms_x_a"]) == np.count_nonzero(G)
    np.testing.assert_allclose(lg["cost"], lg2["cost"], rtol=1e-14)
    c, lg = ot.emd2_1d(x[:, 0], y[:, 0], dense=False, log=True)
    c2, lg2 = pot.emd2_1d(x[:, 0], y[:, 0], dense=False, log=True)
    assert scipy.sparse.issparse(lg["G"]) and scipy.sparse.issparse(lg2["G"])
    np.testing.assert_allclose(lg["G"].toarray(), lg2["G"].toarray(), atol=1e-15)


def test_wasserstein_1d_shape_errors():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="v_values"):
        ot.wasserstein_1d(x, np.zeros(4))
    with pytest.raises(ValueError, match="v_values"):
        ot.wasserstein_1d(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="u_weights"):
        ot.wasserstein_1d(x, x, np.ones((5, 3)))
    with pytest.raises(ValueError, match="u_weights"):
        ot.wasserstein_1d(x[:, 0], x[:, 0], np.ones((5, 2)))
    with pytest.raises(ValueError, match="return_plans"):
        ot.wasserstein_1d(x, x, return_plans="dense")
    with pytest.raises(ValueError, match="cws"):
        ot.quantile_function(np.zeros(3), np.zeros(4), np.zeros(5))
