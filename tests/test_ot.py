"""fastcore.ot against scipy.optimize.linprog (HiGHS), scipy.stats, brute force and POT."""
import warnings

import numpy as np
import pytest
import scipy.stats

import fastcore
from fastcore import ot
from _helpers import needs, ot_linprog_cost, variants


# ---------------------------------------------------------------- references


def random_problem(rng, kind, n, m):
    if kind == "uniform_real":
        M = rng.random((n, m))
    elif kind == "integer":
        M = rng.integers(0, 4, (n, m)).astype(float)
    elif kind == "constant":
        M = np.full((n, m), 2.5)
    elif kind == "duplicates":
        X = rng.integers(0, 2, (n, 2)).astype(float)
        Y = rng.integers(0, 2, (m, 2)).astype(float)
        M = np.sqrt(((X[:, None] - Y[None]) ** 2).sum(-1))
    elif kind == "negative":
        M = rng.standard_normal((n, m)) * 5
    else:
        raise AssertionError(kind)
    a = rng.random(n) + 0.05
    b = rng.random(m) + 0.05
    if rng.random() < 0.3:
        a, b = np.ones(n), np.ones(m)
    if n > 1 and rng.random() < 0.3:
        a[rng.integers(n)] = 0
    if m > 1 and rng.random() < 0.3:
        b[rng.integers(m)] = 0
    a /= a.sum()
    b /= b.sum()
    return a, b, M


def check_solution(a, b, M, G, lg, ref_cost=None, rtol=1e-9):
    scale = max(1.0, np.abs(M).max())
    assert (G >= 0).all()
    np.testing.assert_allclose(G.sum(1), a, rtol=0, atol=1e-13)
    np.testing.assert_allclose(G.sum(0), b, rtol=0, atol=1e-13)
    cost = lg["cost"]
    assert cost == pytest.approx((G * M).sum(), rel=1e-12, abs=1e-13 * scale)
    if ref_cost is not None:
        assert cost == pytest.approx(ref_cost, rel=rtol, abs=rtol * scale)
    u, v = lg["u"], lg["v"]
    # dual feasibility and complementary slackness (hence optimality)
    assert (u[:, None] + v[None, :] <= M + 1e-10 * scale).all()
    sup = G > 0
    np.testing.assert_allclose((u[:, None] + v[None, :])[sup], M[sup], rtol=0, atol=1e-10 * scale)
    assert a @ u + b @ v == pytest.approx(cost, rel=1e-9, abs=1e-10 * scale)
    assert np.count_nonzero(G) <= M.shape[0] + M.shape[1] - 1


KINDS = ["uniform_real", "integer", "constant", "duplicates", "negative"]


# ---------------------------------------------------------------- emd / emd2
@pytest.mark.parametrize("kind", KINDS)
def test_emd_matches_linprog(rng, kind):
    for _ in range(30):
        n, m = rng.integers(1, 10, 2)
        a, b, M = random_problem(rng, kind, n, m)
        G, lg = ot.emd(a, b, M, log=True)
        assert lg["result_code"] == 1 and lg["warning"] is None
        check_solution(a, b, M, G, lg, ot_linprog_cost(a, b, M))
        assert ot.emd2(a, b, M) == pytest.approx(lg["cost"], rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("n,m", [(1, 1), (1, 7), (7, 1), (2, 30), (30, 2), (25, 25), (40, 13)])
def test_rectangular_and_degenerate_shapes(rng, n, m):
    for kind in ("uniform_real", "integer"):
        a, b, M = random_problem(rng, kind, n, m)
        G, lg = ot.emd(a, b, M, log=True)
        check_solution(a, b, M, G, lg, ot_linprog_cost(a, b, M))


@pytest.mark.parametrize("weights", ["uniform", "random", "integer"])
@pytest.mark.parametrize("n,m", [(150, 160), (200, 180)])  # large enough for the early stop
def test_shifted_clouds_greedy_completion_matches_linprog(rng, weights, n, m):
    # clouds far apart: every row wants the same few columns, the greedy start stops early
    # and pairs the rest north-west-corner style (ties in mass with integer weights)
    X, Y = rng.random((n, 2)), rng.random((m, 2)) + 1.0
    M = np.sqrt(((X[:, None] - Y[None]) ** 2).sum(-1))
    if weights == "uniform":
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    elif weights == "random":
        a, b = rng.random(n), rng.random(m)
        a, b = a / a.sum(), b / b.sum()
    else:
        a, b = rng.integers(1, 4, n) / 2.0 ** 8, rng.integers(1, 4, m).astype(float)  # exact, many ties
        b *= a.sum() / b.sum()
    ref = ot_linprog_cost(a, b, M)
    G, lg = ot.emd(a, b, M, log=True)
    check_solution(a, b, M, G, lg, ref)
    assert ot.emd2(a, b, M) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_small_rectangular_matches_linprog(rng, kind):
    # the small-problem simplex (whole-row pricing in large blocks, 4-wide first greedy
    # round) on WMD-like shapes, with ties, zero weights and uniform 1/n, 1/m masses:
    # emd2 (cost only), emd (plan, duals) and the batch at 1 and 2 threads
    probs = []
    for n, m in [(26, 31), (31, 26), (11, 47), (50, 10), (17, 18), (3, 40), (45, 44)]:
        a, b, M = random_problem(rng, kind, n, m)
        if rng.random() < 0.5:
            a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        ref = ot_linprog_cost(a, b, M)
        scale = max(1.0, np.abs(M).max())
        c = ot.emd2(a, b, M)
        assert c == pytest.approx(ref, rel=1e-9, abs=1e-9 * scale)
        G, lg = ot.emd(a, b, M, log=True)
        check_solution(a, b, M, G, lg, ref)
        probs.append((a, b, M))
    one = ot.emd2_batch(probs, n_threads=1)
    np.testing.assert_array_equal(one, ot.emd2_batch(probs, n_threads=2))
    np.testing.assert_array_equal(one, [ot.emd2(a, b, M) for a, b, M in probs])


@needs("ot")
@pytest.mark.parametrize("n,m,d", [(200, 200, 2), (300, 250, 8), (150, 400, 64)])
@pytest.mark.parametrize("uniform", [True, False])
def test_matches_pot(rng, n, m, d, uniform):
    import ot as pot

    x, y = rng.random((n, d)), rng.random((m, d))
    M = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    a = np.full(n, 1 / n) if uniform else rng.random(n)
    b = np.full(m, 1 / m) if uniform else rng.random(m)
    a, b = a / a.sum(), b / b.sum()
    G, lg = ot.emd(a, b, M, log=True)
    ref = pot.emd2(a, b, M, numItermax=10**8)
    check_solution(a, b, M, G, lg, ref)
    # POT's log keys exist with the same meaning
    _, plg = pot.emd2(a, b, M, numItermax=10**8, log=True)
    assert set(plg) <= set(lg) | {"G"}


@needs("ot")
@pytest.mark.parametrize("shift", [0.25, 1.0])
def test_shifted_clouds_match_pot(rng, shift):
    # the optimum uses long arcs: exercises the switch from the working set to row pricing
    import ot as pot

    n = 300
    x, y = rng.random((n, 2)), rng.random((n, 2)) + shift
    M = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    a = np.full(n, 1 / n)
    G, lg = ot.emd(a, a, M, log=True)
    check_solution(a, a, M, G, lg, pot.emd2(a, a, M, numItermax=10**8))


@needs("ot")
def test_integer_costs_assignment_matches_pot(rng):
    import ot as pot

    n = 120
    M = rng.integers(0, 5, (n, n)).astype(float)
    a = np.full(n, 1 / n)
    G, lg = ot.emd(a, a, M, log=True)
    check_solution(a, a, M, G, lg, pot.emd2(a, a, M, numItermax=10**8))


def test_cloud_onto_itself(rng):
    n = 60
    x = rng.standard_normal((n, 3))
    M = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    a = np.full(n, 1 / n)
    G, lg = ot.emd(a, a, M, log=True)
    assert lg["cost"] == 0.0
    np.testing.assert_array_equal(G, np.eye(n) / n)


def test_1d_closed_form_through_emd(rng):
    x, y = rng.random(30), rng.random(45) + 0.3
    M = np.abs(x[:, None] - y[None])
    ref = scipy.stats.wasserstein_distance(x, y)
    assert ot.emd2([], [], M) == pytest.approx(ref, rel=1e-12)


def test_empty_weights_are_uniform(rng):
    M = rng.random((5, 8))
    assert ot.emd2([], [], M) == ot.emd2(np.full(5, 0.2), np.full(8, 0.125), M)
    assert ot.emd2(None, None, M) == ot.emd2(np.full(5, 0.2), np.full(8, 0.125), M)


@pytest.mark.parametrize("name", ["contiguous", "fortran", "strided", "readonly"])
def test_layouts_and_inputs_untouched(rng, name):
    a, b, M = random_problem(rng, "uniform_real", 9, 11)
    ref = ot.emd(a, b, M)
    Mv = variants(M)[name]
    av, bv = (variants(x).get(name, x) for x in (a, b))
    copies = [x.copy() for x in (av, bv, Mv)]
    np.testing.assert_array_equal(ot.emd(av, bv, Mv), ref)
    for x, c in zip((av, bv, Mv), copies):
        np.testing.assert_array_equal(x, c)


def test_fast_path_equals_general_path(rng):
    for kind in KINDS:
        a, b, M = random_problem(rng, kind, 13, 8)
        fast = ot.emd2(a, b, M)
        assert fast == ot.emd2(list(a), list(b), np.asfortranarray(M))
        assert fast == ot.emd2(a, b, M, log=True)[0]
        b2 = b * (1 + 3e-9)  # within MASS_RTOL: rescaled the same way on both paths
        assert ot.emd2(a, b2, M, log=True)[0] == ot.emd2(a, b2, M)
        assert ot.emd2(a, b2, M) == pytest.approx(fast, rel=1e-12, abs=1e-15)
    assert ot.emd2([], [], M) == ot.emd2(None, None, np.asfortranarray(M))


@pytest.mark.parametrize("name", ["contiguous", "fortran", "strided", "readonly"])
def test_emd2_fast_path_layouts(rng, name):
    # the buffer-borrowing fast path takes C-contiguous float64 only; every other layout
    # goes the general way, with the same result and the inputs untouched
    for n, m in [(9, 11), (8, 8)]:
        a, b, M = random_problem(rng, "uniform_real", n, m)
        ref = ot.emd2(a, b, M)
        av, bv, Mv = (variants(x).get(name, x) for x in (a, b, M))
        copies = [x.copy() for x in (av, bv, Mv)]
        assert ot.emd2(av, bv, Mv) == ref
        assert ot.emd2(av, b, M) == ref and ot.emd2(a, bv, M) == ref and ot.emd2(a, b, Mv) == ref
        assert ot.emd2(a.astype(np.float32), b, M) == pytest.approx(ref, rel=1e-6)
        a2 = a[:-1] / a[:-1].sum()
        assert ot.emd2(a2, [], M[:-1]) == ot.emd2(a2.copy(), [], M[:-1].copy())
        for x, c in zip((av, bv, Mv), copies):
            np.testing.assert_array_equal(x, c)
    with pytest.raises(ValueError, match="length"):
        ot.emd2(np.full(3, 1 / 3), [], np.ones((4, 4)))
    with pytest.raises(ValueError, match="b must have length"):
        ot.emd2([], np.full(3, 1 / 3), np.ones((4, 4)))


def test_float32_in_float32_out(rng):
    a, b, M = random_problem(rng, "uniform_real", 12, 9)
    G32 = ot.emd(a.astype(np.float32), b.astype(np.float32), M.astype(np.float32))
    c32 = ot.emd2(a, b, M.astype(np.float32))
    assert G32.dtype == np.float32 and isinstance(c32, np.float32)
    ref = ot.emd2(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64),
                  M.astype(np.float32).astype(np.float64))
    assert float(c32) == pytest.approx(ot.emd2(a, b, M.astype(np.float32).astype(np.float64)), rel=1e-6)
    assert (G32.astype(np.float64) * M.astype(np.float32)).sum() == pytest.approx(ref, rel=1e-5)
    assert isinstance(ot.emd2(a, b, M), np.float64)


@pytest.mark.parametrize("kind", KINDS)
def test_square_uniform_assignment_path(rng, kind):
    # cost-only n x n problems with equal masses are solved as assignment problems:
    # the same optimum as linprog and as the simplex (emd with a plan), and the same
    # sum order as the simplex when the optimal permutation is unique
    for n in (1, 2, 3, 4, 5, 7, 8, 9, 13, 26, 33):
        M = random_problem(rng, kind, n, n)[2]
        a = np.full(n, 1.0 / n)
        G, lg = ot.emd(a, a, M, log=True)
        fast = ot.emd2(a, a, M)
        scale = max(1.0, np.abs(M).max())
        assert fast == pytest.approx(lg["cost"], rel=1e-13, abs=1e-14 * scale)
        assert ot.emd2([], [], M) == fast
        if n <= 9:
            assert fast == pytest.approx(ot_linprog_cost(a, a, M), rel=1e-9, abs=1e-9 * scale)
        if kind in ("uniform_real", "negative"):  # optimum unique with probability 1
            assert fast == lg["cost"]
            assert fast == ot.emd2(a, a, M, numItermax=10**9)  # simplex, cost only


def test_square_uniform_brute_force(rng):
    import itertools

    for n in range(1, 7):
        for _ in range(5):
            M = rng.integers(-3, 4, (n, n)).astype(float)  # many ties
            best = min(sum(M[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
            assert ot.emd2([], [], M) == pytest.approx(best / n, rel=1e-13, abs=1e-15)


def test_square_uniform_bad_costs_and_huge_costs(rng):
    M = rng.random((6, 6))
    M[2, 3] = np.nan
    with pytest.raises(ValueError, match="M contains NaN"):
        ot.emd2([], [], M)
    M[2, 3] = np.inf
    with pytest.raises(ValueError, match="M contains infinite"):
        ot.emd2([], [], M)
    import itertools

    for scale, low in [(1e300, -1e300), (1e307, -1.7e308)]:  # costs near the float64 limit
        M = rng.random((5, 5)) * scale
        M[0, 0] = low
        best = min(sum(M[i, p[i]] / 5 for i in range(5)) for p in itertools.permutations(range(5)))
        assert ot.emd2([], [], M) == pytest.approx(best, rel=1e-12)


def test_emd2_multiple_b_columns(rng):
    a, _, M = random_problem(rng, "uniform_real", 10, 7)
    B = rng.random((7, 3))
    B /= B.sum(0)
    costs = ot.emd2(a, B, M)
    assert costs.shape == (3,)
    for k in range(3):
        assert costs[k] == ot.emd2(a, B[:, k], M)
    res = ot.emd2(a, B, M, log=True, return_matrix=True)  # POT's structure: [[cost, log], ...]
    assert isinstance(res, list) and len(res) == 3
    for k, item in enumerate(res):
        assert isinstance(item, list) and len(item) == 2
        assert item[0] == costs[k] and item[1]["cost"] == costs[k]
        np.testing.assert_array_equal(item[1]["G"], ot.emd(a, B[:, k], M))


def test_emd2_2d_b_in_one_call_equals_column_loop(rng):
    # POT's convention: one cost per column of b; solved in one threaded C call
    for kind in KINDS:
        for n, m, k in [(1, 1, 1), (9, 9, 4), (10, 7, 5), (3, 12, 2)]:
            a, _, M = random_problem(rng, kind, n, m)
            B = rng.random((m, k))
            if m > 1:
                B[rng.integers(m), 0] = 0.0
            B /= B.sum(0)
            loop = np.array([ot.emd2(a, np.ascontiguousarray(B[:, c]), M) for c in range(k)])
            for nt in (1, 2, "max"):
                costs = ot.emd2(a, B, M, numThreads=nt)
                assert costs.dtype == np.float64 and costs.shape == (k,)
                np.testing.assert_array_equal(costs, loop)
            np.testing.assert_array_equal(ot.emd2([], np.asfortranarray(B), M), [ot.emd2([], B[:, c], M) for c in range(k)])
            c32 = ot.emd2(a, B, M.astype(np.float32))
            assert c32.dtype == np.float32


def test_emd2_2d_b_bad_columns(rng):
    a, _, M = random_problem(rng, "uniform_real", 6, 5)
    B = rng.random((5, 3))
    B /= B.sum(0)
    Bc = B.copy()
    B[1, 2] = -0.1
    with pytest.raises(ValueError, match=r"b\[:, 2\] has negative"):
        ot.emd2(a, B, M)
    B = Bc.copy()
    B[:, 1] *= 2
    with pytest.raises(ValueError, match=r"same total mass"):
        ot.emd2(a, B, M)
    B = Bc.copy()
    B[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ot.emd2(a, B, M)
    with pytest.raises(ValueError, match="shape"):
        ot.emd2(a, Bc[:4], M)
    with pytest.raises((TypeError, ValueError), match="numThreads"):
        ot.emd2(a, Bc, M, numThreads=0)
    np.testing.assert_array_equal(B[1:], Bc[1:])  # inputs untouched
    n = 60
    x, y = rng.random((n, 2)), rng.random((n, 2))
    M = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    B = np.full((n, 2), 1 / n)
    with pytest.warns(RuntimeWarning, match="iteration"):
        ot.emd2(np.full(n, 1 / n), B, M, numItermax=3)
    with pytest.raises(fastcore.ConvergenceError):
        ot.emd2(np.full(n, 1 / n), B, M, numItermax=3, raise_on_limit=True)


def test_emd2_return_matrix(rng):
    a, b, M = random_problem(rng, "uniform_real", 6, 7)
    cost, lg = ot.emd2(a, b, M, log=True, return_matrix=True)
    np.testing.assert_array_equal(lg["G"], ot.emd(a, b, M))
    assert cost == lg["cost"]


def test_small_mass_difference_is_rescaled(rng):
    a, b, M = random_problem(rng, "uniform_real", 6, 7)
    G = ot.emd(a, b * (1 + 1e-9), M)
    np.testing.assert_allclose(G.sum(1), a, atol=1e-13)


def test_iteration_limit_warns_or_raises(rng):
    n = 80
    x, y = rng.random((n, 2)), rng.random((n, 2))
    M = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    a = np.full(n, 1 / n)
    opt = ot.emd2(a, a, M)
    with pytest.warns(RuntimeWarning, match="iteration"):
        G, lg = ot.emd(a, a, M, numItermax=3, log=True)
    assert lg["result_code"] == 3 and "numItermax" in lg["warning"]
    assert lg["n_iter"] == 3
    np.testing.assert_allclose(G.sum(1), a, atol=1e-13)  # still feasible
    np.testing.assert_allclose(G.sum(0), a, atol=1e-13)
    assert lg["cost"] >= opt - 1e-12
    with pytest.raises(fastcore.ConvergenceError):
        ot.emd2(a, a, M, numItermax=3, raise_on_limit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ot.emd2(a, a, M, numItermax=10**7) == opt


def test_zero_weight_rows_and_columns(rng):
    a, b, M = random_problem(rng, "uniform_real", 8, 9)
    a[[1, 5]] = 0
    b[[0, 8]] = 0
    a /= a.sum()
    b /= b.sum()
    G, lg = ot.emd(a, b, M, log=True)
    assert (G[[1, 5]] == 0).all() and (G[:, [0, 8]] == 0).all()
    check_solution(a, b, M, G, lg, ot_linprog_cost(a, b, M))


@pytest.mark.parametrize("fn", [ot.emd, ot.emd2])
def test_bad_input(fn):
    a, b, M = np.full(3, 1 / 3), np.full(2, 0.5), np.ones((3, 2))
    cases = [
        ((a, np.array([0.5, 0.6]), M), "same total mass"),
        ((np.array([0.5, 0.6, -0.1]), b, M), "negative"),
        ((np.array([np.nan, 0.5, 0.5]), b, M), "NaN"),
        ((a, b, np.array([[1, np.nan], [1, 1], [1, 1]])), "NaN"),
        ((a, b, np.array([[1, np.inf], [1, 1], [1, 1]])), "infinite"),
        ((a, b, np.ones((2, 3))), "must have length 2 to match M"),
        ((a, b, np.ones(6)), "dimension"),
        ((a, b, np.ones((0, 2))), "non-empty"),
        ((np.zeros(3), np.zeros(2), M), "zero total mass"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn(*args)
    with pytest.raises(TypeError):
        fn(a, b, M.astype(complex))
    with pytest.raises(ValueError):
        fn(a, b, M, numItermax=0)
    with pytest.raises(TypeError):
        fn(a, b, M, numItermax=2.5)


# ---------------------------------------------------------------- 1-D
@pytest.mark.parametrize("metric,p", [("sqeuclidean", 1), ("euclidean", 1), ("cityblock", 1), ("minkowski", 1.5),
                                      ("minkowski", 3)])
def test_emd_1d_matches_emd(rng, metric, p):
    for n, m in [(1, 1), (5, 9), (30, 17)]:
        x = rng.integers(0, 6, n).astype(float) if n > 5 else rng.random(n)
        y = rng.random(m) * 4
        a = rng.random(n) + 0.1
        b = rng.random(m) + 0.1
        a, b = a / a.sum(), b / b.sum()
        d = np.abs(x[:, None] - y[None])
        M = {"sqeuclidean": d ** 2, "euclidean": d, "cityblock": d, "minkowski": d ** p}[metric]
        ref = ot.emd2(a, b, M)
        assert ot.emd2_1d(x, y, a, b, metric=metric, p=p) == pytest.approx(ref, rel=1e-12, abs=1e-14)
        G = ot.emd_1d(x, y, a, b, metric=metric, p=p)
        np.testing.assert_allclose(G.sum(1), a, atol=1e-14)
        np.testing.assert_allclose(G.sum(0), b, atol=1e-14)
        assert (G * M).sum() == pytest.approx(ref, rel=1e-12, abs=1e-14)
        Gs = ot.emd_1d(x, y, a, b, metric=metric, p=p, dense=False)
        np.testing.assert_allclose(Gs.toarray(), G, atol=1e-15)


def test_wasserstein_1d_matches_scipy(rng):
    for n, m in [(1, 3), (10, 10), (57, 31)]:
        u, v = rng.standard_normal(n), rng.standard_normal(m) + 0.5
        wu, wv = rng.random(n), rng.random(m) * 3
        assert ot.wasserstein_1d(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12)
        assert ot.wasserstein_1d(u, v, wu, wv) == pytest.approx(
            scipy.stats.wasserstein_distance(u, v, wu, wv), rel=1e-12)
    u32 = rng.random(8).astype(np.float32)
    assert isinstance(ot.wasserstein_1d(u32, u32 + 1), np.float32)
    assert ot.wasserstein_1d(u32, u32 + 1) == pytest.approx(1.0, rel=1e-6)


@needs("ot")
@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_wasserstein_1d_matches_pot(rng, p):
    import ot as pot

    u, v = rng.standard_normal(40), rng.standard_normal(25)
    wu, wv = rng.random(40), rng.random(25)
    wu, wv = wu / wu.sum(), wv / wv.sum()
    assert ot.wasserstein_1d(u, v, wu, wv, p=p) == pytest.approx(pot.wasserstein_1d(u, v, wu, wv, p=p), rel=1e-10)
    assert ot.emd2_1d(u, v, wu, wv) == pytest.approx(pot.emd2_1d(u, v, wu, wv), rel=1e-10)


def test_1d_bad_input():
    with pytest.raises(ValueError, match="empty"):
        ot.wasserstein_1d([], [1.0])
    with pytest.raises(ValueError, match="p must"):
        ot.wasserstein_1d([0.0], [1.0], p=0.5)
    with pytest.raises(ValueError, match="NaN"):
        ot.emd_1d([np.nan], [1.0])
    with pytest.raises(ValueError, match="metric"):
        ot.emd2_1d([0.0], [1.0], metric="cosine")
    with pytest.raises(ValueError, match="same total mass"):
        ot.emd2_1d([0.0, 1.0], [1.0], [1, 1], [1])


# ---------------------------------------------------------------- documents
def euclid(X, Y):
    return np.sqrt(((X[:, None] - Y[None]) ** 2).sum(-1))


def test_wmd_matches_emd_and_properties(rng):
    for n, m in [(1, 1), (1, 6), (7, 4), (26, 26)]:
        X, Y = rng.standard_normal((n, 20)), rng.standard_normal((m, 20))
        w = ot.wmd(X, Y)
        assert w == pytest.approx(ot.emd2([], [], euclid(X, Y)), rel=1e-12)
        assert ot.wmd(Y, X) == pytest.approx(w, rel=1e-12)
        assert ot.wmd(X[::-1], Y[rng.permutation(m)]) == pytest.approx(w, rel=1e-12)
        assert ot.wmd(X, X) == 0.0
        assert ot.wcd(X, Y) <= w * (1 + 1e-12)
        assert ot.rwmd(X, Y) <= w * (1 + 1e-12)
        assert ot.wcd(X, Y) == pytest.approx(np.linalg.norm(X.mean(0) - Y.mean(0)))
    x, y = rng.standard_normal((1, 5)), rng.standard_normal((1, 5))
    assert ot.wmd(x, y) == pytest.approx(np.linalg.norm(x - y), rel=1e-14)
    a = rng.random(3)
    X, Y = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    assert ot.wmd(X, Y, a, None) == pytest.approx(ot.emd2(a / a.sum(), [], euclid(X, Y)), rel=1e-12)


def test_wmd_cost_matrix_against_numpy(rng):
    # the blocked cost build (3 x 4 register tiles, precomputed norms, exact fallback
    # where ||x||^2 + ||y||^2 - 2 x.y cancels) against float64 NumPy distances, on
    # shapes that leave every remainder of the tiling, with shared vectors (distance 0)
    for n, m, d in [(1, 1, 1), (2, 3, 3), (3, 4, 4), (4, 5, 5), (5, 7, 7), (7, 9, 300), (13, 11, 33),
                    (12, 16, 300), (31, 26, 300), (1, 9, 300)]:
        scale = 10.0 ** rng.integers(-3, 4)
        X = rng.standard_normal((n, d)) * scale
        Y = rng.standard_normal((m, d)) * scale + (0.01 if rng.random() < 0.5 else 0.0)
        Y[rng.integers(m)] = X[rng.integers(n)]  # an identical vector: exact 0 expected
        D = euclid(X, Y)
        # one word per document: pairwise returns the ground costs themselves
        P = ot.pairwise(list(X[:, None, :]), list(Y[:, None, :]), "wmd")
        np.testing.assert_allclose(P, D, rtol=1e-12, atol=0)
        assert (P == 0).sum() >= 1 and ((P == 0) == (D == 0)).all()
        # whole documents: the cost of the optimum equals emd2 on the NumPy costs
        assert ot.wmd(X, Y) == pytest.approx(ot.emd2([], [], D), rel=1e-12, abs=1e-14 * scale)
        assert ot.pairwise([X], [Y], "wmd", n_threads=2)[0, 0] == ot.wmd(X, Y)


def test_wrd_properties(rng):
    for n, m in [(1, 1), (3, 8), (12, 10)]:
        X, Y = rng.standard_normal((n, 16)), rng.standard_normal((m, 16))
        w = ot.wrd(X, Y)
        nx, ny = np.linalg.norm(X, axis=1), np.linalg.norm(Y, axis=1)
        D = 1 - (X / nx[:, None]) @ (Y / ny[:, None]).T
        assert w == pytest.approx(ot.emd2(nx / nx.sum(), ny / ny.sum(), D), rel=1e-10, abs=1e-14)
        assert 0 <= w <= 2
        assert ot.wrd(Y, X) == pytest.approx(w, rel=1e-10, abs=1e-14)
        assert ot.wrd(3.5 * X, Y * 0.01) == pytest.approx(w, rel=1e-10, abs=1e-14)
        assert ot.wrd(X, X) == pytest.approx(0.0, abs=1e-12)
        assert ot.wrd_similarity(X, Y) == pytest.approx(1 - w, rel=1e-12)
        assert ot.wrd_lower_bound(X, Y) <= w * (1 + 1e-12) + 1e-15
        Xz = np.vstack([X, np.zeros((2, 16))])
        assert ot.wrd(Xz, Y) == pytest.approx(w, rel=1e-12, abs=1e-15)
    x, y = rng.standard_normal((1, 5)), rng.standard_normal((1, 5))
    cos = (x @ y.T).item() / np.linalg.norm(x) / np.linalg.norm(y)
    assert ot.wrd(x, y) == pytest.approx(1 - cos, rel=1e-12)


def test_document_bad_input(rng):
    X = rng.standard_normal((3, 4))
    for fn in (ot.wmd, ot.wrd, ot.wcd, ot.rwmd, ot.wrd_lower_bound, ot.wrd_similarity):
        with pytest.raises(ValueError, match="empty"):
            fn(X, np.zeros((0, 4)))
        with pytest.raises(ValueError, match="shape"):
            fn(X, np.ones((2, 5)))
        with pytest.raises(ValueError, match="NaN"):
            fn(X, np.array([[np.nan, 0, 0, 0]]))
    with pytest.raises(ValueError, match="zero"):
        ot.wrd(X, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="metric"):
        ot.pairwise([X], [X], metric="cosine")
    with pytest.raises(ValueError, match="n_threads"):
        ot.pairwise([X], [X], n_threads=0)
    with pytest.raises(TypeError):
        ot.pairwise(X, [X])


# ---------------------------------------------------------------- batched
def random_docs(rng, count, d=12, lo=1, hi=9):
    return [rng.standard_normal((rng.integers(lo, hi), d)) for _ in range(count)]


def test_emd2_batch_matches_loop(rng):
    problems = []
    for t in range(40):
        n, m = rng.integers(1, 15, 2)
        problems.append(random_problem(rng, KINDS[t % len(KINDS)], n, m))
    problems.append(([], [], rng.random((4, 4)).astype(np.float32)))
    ref = np.array([ot.emd2(a, b, np.asarray(M, dtype=np.float64)) for a, b, M in problems])
    for nt in (1, 2):
        np.testing.assert_array_equal(ot.emd2_batch(problems, n_threads=nt), ref)
    assert ot.emd2_batch([]).shape == (0,)
    with pytest.raises(ValueError, match=r"problems\[1\]"):
        ot.emd2_batch([problems[0], (np.ones(2), np.ones(3), np.ones((2, 3)))])
    with pytest.warns(RuntimeWarning):
        ot.emd2_batch([random_problem(rng, "uniform_real", 30, 30)], numItermax=1)
    good = problems[0]
    for bad, msg in [((good[0], good[1] * 2, good[2]), "same total mass"),
                     ((-good[0], good[1], good[2]), "negative"),
                     ((good[0], good[1], np.full_like(good[2], np.nan)), "NaN")]:
        with pytest.raises(ValueError, match=msg):
            ot.emd2_batch([good, bad])


@pytest.mark.parametrize("metric", ["wmd", "wrd"])
def test_pairwise_matches_single_calls(rng, metric):
    A, B = random_docs(rng, 7), random_docs(rng, 5)
    single = ot.wmd if metric == "wmd" else ot.wrd
    ref = np.array([[single(x, y) for y in B] for x in A])
    for nt in (1, 2):
        np.testing.assert_array_equal(ot.pairwise(A, B, metric=metric, n_threads=nt), ref)
    S = ot.pairwise(A, metric=metric)
    np.testing.assert_allclose(S, S.T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.diag(S), 0.0, atol=1e-12)


@pytest.mark.parametrize("metric", ["wmd", "wrd"])
def test_knn_equals_brute_force(rng, metric):
    corpus = random_docs(rng, 60, d=6, lo=1, hi=7)
    corpus += [corpus[3].copy(), corpus[10][::-1].copy()]  # exact ties, broken by index
    queries = random_docs(rng, 5, d=6) + [corpus[10]]
    k = 7
    D = ot.pairwise(queries, corpus, metric=metric)
    order = np.lexsort((np.broadcast_to(np.arange(len(corpus)), D.shape), D), axis=1)[:, :k]
    for prune in (True, False):
        for nt in (1, 2):
            idx, dist, stats = ot.knn(queries, corpus, k, metric=metric, prune=prune, n_threads=nt)
            np.testing.assert_array_equal(idx, order)
            np.testing.assert_array_equal(dist, np.take_along_axis(D, order, 1))
            if not prune:
                assert (stats["n_exact"] == len(corpus)).all()
    _, _, stats = ot.knn(queries, corpus, k, metric=metric)
    assert (stats["n_exact"] >= k).all() and (stats["n_exact"] <= len(corpus)).all()
    with pytest.raises(ValueError, match="k must"):
        ot.knn(queries, corpus, len(corpus) + 1)
    with pytest.raises(ValueError, match="empty"):
        ot.knn(queries, [], 1)


def test_knn_prunes_on_clustered_corpus(rng):
    centers = rng.standard_normal((20, 16)) * 3
    corpus = [centers[i % 20] + 0.3 * rng.standard_normal((rng.integers(5, 12), 16)) for i in range(200)]
    queries = [centers[i] + 0.3 * rng.standard_normal((8, 16)) for i in range(4)]
    idx, dist, stats = ot.knn(queries, corpus, 3)
    ref_idx, _, _ = ot.knn(queries, corpus, 3, prune=False)
    np.testing.assert_array_equal(idx, ref_idx)
    assert stats["n_exact"].sum() < 0.5 * 4 * len(corpus)


@pytest.mark.parametrize("c", [2.0 ** 600, 2.0 ** -600, 1e160, 1e-160, 1e300, 1e-300])
def test_document_distances_at_extreme_scales(c):
    # issue 28 item 8: with np.eye(3) * 1e160 wrd_lower_bound was NaN, wcd/rwmd inf, wrd raised
    # "pairwise: bad argument" though WRD is scale-invariant, and wmd said "non-finite value" on
    # finite input.  WMD/WCD/RWMD are homogeneous of degree 1, the WRD family of degree 0.
    rng = np.random.default_rng(0)
    X, Y, Z = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal((2, 3))
    exact = c in (2.0 ** 600, 2.0 ** -600)  # a power of two scales every operation exactly
    rtol = 0 if exact else 1e-12
    for name in ("wmd", "wcd", "rwmd"):
        f = getattr(ot, name)
        np.testing.assert_allclose(f(X * c, Y * c), f(X, Y) * c, rtol=rtol, err_msg=name)
    for name in ("wrd", "wrd_similarity", "wrd_lower_bound"):
        f = getattr(ot, name)
        np.testing.assert_allclose(f(X * c, Y), f(X, Y), rtol=rtol, atol=1e-15, err_msg=name)
    for metric, deg in (("wmd", 1), ("wrd", 0)):
        docs = [X, Y, Z]
        P0 = ot.pairwise(docs, metric=metric)
        np.testing.assert_allclose(ot.pairwise([d * c for d in docs], metric=metric), P0 * c ** deg,
                                   rtol=rtol, atol=1e-15)
        i0, d0, _ = ot.knn([X], [Y, Z, X[:3]], 2, metric=metric)
        i1, d1, _ = ot.knn([X * c], [Y * c, Z * c, X[:3] * c], 2, metric=metric)
        assert np.array_equal(i0, i1)
        np.testing.assert_allclose(d1, d0 * c ** deg, rtol=rtol, atol=1e-15)


def test_document_distance_beyond_float64_is_an_error():
    X = np.array([[1e308, 0.0]])
    with pytest.raises(ValueError, match="wmd: the distance exceeds the float64 range"):
        ot.wmd(X, -X)
    assert ot.wrd(X, -X) == pytest.approx(2.0)


def test_masses_near_the_float64_limit():
    # issue 28 item 9: a total mass that overflows float64 (weights ~1e308) gave NaN duals (the
    # centring divided by sum(a) + sum(b) = inf) and RuntimeWarnings from the mass check
    rng = np.random.default_rng(0)
    a, b, M = rng.random(5), rng.random(5), rng.random((5, 5))
    a, b = a / a.sum(), b / b.sum()
    _, ref = ot.emd(a, b, M, log=True)
    s = 1.7e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        G, lg = ot.emd(a * s, b * s, M, log=True)
        np.testing.assert_allclose(lg["u"], ref["u"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(lg["v"], ref["v"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(lg["cost"], ref["cost"] * s, rtol=1e-12)
        np.testing.assert_allclose(G.sum(1), a * s, rtol=1e-12)
        np.testing.assert_allclose(ot.emd2(a * s, np.stack([b * s, b * s], 1), M), [ref["cost"] * s] * 2, rtol=1e-12)
        with pytest.raises(ValueError, match="same total mass"):
            ot.emd(a * s, b * s * 0.9, M)
