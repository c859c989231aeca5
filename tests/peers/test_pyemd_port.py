"""fastcore.pyemd against pyemd's own test suite, plus cross-checks.

Part 1 is a call-for-call port of pyemd's ``test/test_pyemd.py`` at tag v2.0.0
(github.com/wmayner/pyemd, commit 1207b600f10d5905cbadd4dde3e481ff7863c066): the
same 37 calls, inputs and expected values, in the same order, each test named
after the one it mirrors (``test_emd_1`` mirrors ``test_emd_1``, ...).  Eight of
them have unequal total masses (the EMD-hat's extra-mass penalty): ``test_emd_1``,
``test_emd_3``, ``test_emd_extra_mass_penalty``, ``test_emd_with_flow_1``,
``_3``, ``_4``, ``test_emd_with_flow_extra_mass_penalty`` and
``test_emd_samples_all_kwargs``.  pyemd checks costs rounded to 5 decimals and
flows rounded to 4; so does the port.

Part 2 checks what pyemd's suite does not: an LP reference (scipy's linprog),
pyemd itself when installed (its POT backend and its C++ one), flow marginals,
input immutability and the errors.
"""
import doctest
import warnings

import numpy as np
import pytest

from fastcore import pyemd
from _helpers import needs

emd, emd_with_flow, emd_samples = pyemd.emd, pyemd.emd_with_flow, pyemd.emd_samples

COST_DECIMALS = 5  # pyemd's EMD_PRECISION
FLOW_DECIMALS = 4  # pyemd's FLOW_PRECISION

SQUARE4 = np.array([[0.0, 1.0, 1.0, 2.0],
                    [1.0, 0.0, 2.0, 1.0],
                    [1.0, 2.0, 0.0, 1.0],
                    [2.0, 1.0, 1.0, 0.0]])
TWO = np.array([[0.0, 0.5], [0.5, 0.0]])


def check_cost(value, expected):
    assert isinstance(value, float)
    assert round(value, COST_DECIMALS) == expected, value


def check_flow(result, expected_cost, expected_flow):
    value, flow = result
    check_cost(value, expected_cost)
    assert isinstance(flow, list) and all(isinstance(row, list) for row in flow)
    np.testing.assert_array_equal(np.round(flow, FLOW_DECIMALS), expected_flow)


# ================================================================ part 1: pyemd's suite
# ---------------------------------------------------------------- emd()
def test_emd_1():
    check_cost(emd(np.array([0.0, 1.0]), np.array([5.0, 3.0]), TWO), 3.5)


def test_emd_2():
    check_cost(emd(np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])), 0.0)


def test_emd_3():
    check_cost(emd(np.array([6.0, 1.0]), np.array([1.0, 7.0]), np.zeros((2, 2))), 0.0)


def test_emd_4():
    check_cost(emd(np.array([1.0, 2.0, 1.0, 2.0]), np.array([2.0, 1.0, 2.0, 1.0]), SQUARE4), 2.0)


def test_emd_extra_mass_penalty():
    P, Q = np.array([0.0, 2.0, 1.0, 2.0]), np.array([2.0, 1.0, 2.0, 1.0])
    check_cost(emd(P, Q, SQUARE4, extra_mass_penalty=2.5), 4.5)


def test_emd_validate_larger_signatures_1():
    with pytest.raises(ValueError, match="cannot be greater"):
        emd(np.array([0.0, 1.0, 2.0]), np.array([5.0, 3.0, 3.0]), TWO)


def test_emd_validate_larger_signatures_2():
    with pytest.raises(ValueError, match="cannot be greater"):
        emd_with_flow(np.array([0.0, 1.0, 2.0]), np.array([5.0, 3.0]), TWO)


def test_emd_validate_larger_signatures_3():
    with pytest.raises(ValueError, match="cannot be greater"):
        emd(np.array([0.0, 1.0]), np.array([5.0, 3.0, 3.0]), TWO)


def test_emd_validate_different_signature_dims():
    D = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
    with pytest.raises(ValueError, match="same length"):
        emd(np.array([0.0, 1.0]), np.array([5.0, 3.0, 3.0]), D)


def test_emd_validate_irregular_distance_matrix():
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [0.0, 0.5, 3.0], [0.5, 0.0]
    with pytest.raises(TypeError, match="distance_matrix"):
        emd(np.array([0.0, 1.0]), np.array([5.0, 3.0]), ragged)


# ---------------------------------------------------------------- emd_with_flow()
def test_emd_with_flow_1():
    check_flow(emd_with_flow(np.array([0.0, 1.0]), np.array([5.0, 3.0]), TWO), 3.5, [[0.0, 0.0], [0.0, 1.0]])


def test_emd_with_flow_2():
    check_flow(emd_with_flow(np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])),
               0.0, [[1.0, 0.0], [0.0, 1.0]])


def test_emd_with_flow_3():
    check_flow(emd_with_flow(np.array([6.0, 1.0]), np.array([1.0, 7.0]), np.zeros((2, 2))),
               0.0, [[1.0, 5.0], [0.0, 1.0]])


def test_emd_with_flow_4():
    check_flow(emd_with_flow(np.array([1.0, 7.0]), np.array([6.0, 1.0]), np.zeros((2, 2))),
               0.0, [[1.0, 0.0], [5.0, 1.0]])


def test_emd_with_flow_5():
    check_flow(emd_with_flow(np.array([3.0, 5.0]), np.array([6.0, 2.0]), np.zeros((2, 2))),
               0.0, [[3.0, 0.0], [3.0, 2.0]])


def test_emd_with_flow_6():
    check_flow(emd_with_flow(np.array([1.0, 2.0, 1.0, 2.0]), np.array([2.0, 1.0, 2.0, 1.0]), SQUARE4),
               2.0, [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])


def test_emd_with_flow_extra_mass_penalty():
    P, Q = np.array([0.0, 2.0, 1.0, 2.0]), np.array([2.0, 1.0, 2.0, 1.0])
    check_flow(emd_with_flow(P, Q, SQUARE4, extra_mass_penalty=2.5),
               4.5, [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])


def test_emd_with_flow_validate_larger_signatures_1():
    with pytest.raises(ValueError, match="cannot be greater"):
        emd_with_flow(np.array([0.0, 1.0, 2.0]), np.array([5.0, 3.0, 3.0]), TWO)


def test_emd_with_flow_validate_larger_signatures_2():
    with pytest.raises(ValueError, match="cannot be greater"):
        emd(np.array([0.0, 1.0, 2.0]), np.array([5.0, 3.0]), TWO)


def test_emd_with_flow_validate_larger_signatures_3():
    with pytest.raises(ValueError, match="cannot be greater"):
        emd_with_flow(np.array([0.0, 1.0]), np.array([5.0, 3.0, 3.0]), TWO)


def test_emd_with_flow_validate_different_signature_dims():
    D = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
    with pytest.raises(ValueError, match="same length"):
        emd_with_flow(np.array([0.0, 1.0]), np.array([5.0, 3.0, 3.0]), D)


def test_emd_with_flow_validate_irregular_distance_matrix():
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [0.0, 0.5, 3.0], [0.5, 0.0]
    with pytest.raises(TypeError, match="distance_matrix"):
        emd_with_flow(np.array([0.0, 1.0]), np.array([5.0, 3.0]), ragged)


# ---------------------------------------------------------------- emd_samples()
def test_emd_samples_1():
    check_cost(emd_samples([1, 2, 3, 4], [2, 3, 4, 5], bins=4), 0.75)


def test_emd_samples_1_binsize():
    check_cost(emd_samples([1, 2, 3, 4], [2, 3, 4, 5], bins=2), 0.5)


def test_emd_samples_1_manual_range():
    check_cost(emd_samples([1, 2, 3, 4], [2, 3, 4, 5], bins=10, range=(0, 10)), 1.0)


def test_emd_samples_1_not_normalized():
    check_cost(emd_samples([1, 2, 3, 4], [2, 3, 4, 5], bins=4, normalized=False), 3.0)


def test_emd_samples_1_custom_distance():
    def discrete(centres):  # 0 on the diagonal, 1 elsewhere
        return (centres[:, None] != centres[None, :]).astype(float)

    check_cost(emd_samples([1, 2, 3, 4], [2, 3, 4, 5], bins=4, distance=discrete), 0.25)


def test_emd_samples_all_kwargs():
    # pyemd's regression value: a nested list of cubed index differences (negative below the
    # diagonal), 30 bins on (-5, 15), counts 5 vs 4: all of the second sample shares bins with
    # the first, so the cost is the one unmatched unit at the largest "distance", 29**3
    def cubes(centres):
        k = len(centres)
        return [[float((i - j) ** 3) for i in range(k)] for j in range(k)]

    check_cost(emd_samples([1, 2, 3, 4, 5], [2, 3, 4, 5], bins=30, normalized=False, range=(-5, 15),
                           distance=cubes), 24389.0)


def test_emd_samples_2():
    check_cost(emd_samples([1], [2], bins=2), 0.5)


def test_emd_samples_3():
    check_cost(emd_samples([1, 1, 1, 2, 3], [1, 2, 2, 2, 3], bins=5), 0.32)


def test_emd_samples_4():
    check_cost(emd_samples([1, 2, 3, 4, 5], [99, 98, 97, 96, 95], bins=5), 78.4)


def test_emd_samples_5():
    check_cost(emd_samples([1], [1, 2, 3, 4, 5], bins=4), 1.8)


def test_emd_samples_auto_bins_integer_input():
    assert emd_samples([1], [2]) > 0  # integer samples still get more than one bin


def test_emd_samples_auto_bins_integer_vs_float_consistency():
    assert abs(emd_samples([1, 2, 3], [4, 5, 6]) - emd_samples([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])) < 1e-10


def test_emd_samples_validate_empty():
    with pytest.raises(ValueError, match="empty"):
        emd_samples([], [1])


def test_emd_samples_validate_distance_matrix_square():
    with pytest.raises(ValueError, match="square"):
        emd_samples([1, 2, 3], [1, 2, 3], distance=lambda centres: [[1, 2, 3]])


def test_emd_samples_validate_distance_matrix_size():
    with pytest.raises(ValueError, match="at least as many"):
        emd_samples([1, 2, 3, 4], [1, 2, 3, 4], distance=lambda centres: [[0, 1], [1, 0]])


# ================================================================ part 2: beyond pyemd's suite
def metric_problem(rng, n, unequal=True):
    x = rng.random((n, 2))
    D = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    P = rng.random(n) * (rng.random(n) < 0.8)
    Q = rng.random(n) * (rng.random(n) < 0.8)
    P[0] += 0.1  # neither histogram is all zero
    Q[-1] += 0.1
    if not unequal:
        Q *= P.sum() / Q.sum()
    return P, Q, D


def emd_hat_linprog(P, Q, D, penalty):
    """EMD-hat by linprog: min <F, D> over F >= 0, F 1 <= P, F^T 1 <= Q, sum F = min(sum P, sum Q)
    (no pre-flow: for a metric D it does not change the optimum), plus the penalty term."""
    from scipy.optimize import linprog

    n = len(P)
    rows = np.kron(np.eye(n), np.ones((1, n)))
    cols = np.kron(np.ones((1, n)), np.eye(n))
    res = linprog(D.ravel(), A_ub=np.vstack([rows, cols]), b_ub=np.concatenate([P, Q]),
                  A_eq=np.ones((1, n * n)), b_eq=[min(P.sum(), Q.sum())], bounds=(0, None), method="highs")
    assert res.status == 0
    return res.fun + abs(P.sum() - Q.sum()) * (D.max() if penalty == -1.0 else penalty)


@pytest.mark.parametrize("penalty", [-1.0, 0.0, 0.2, 3.0])
def test_matches_linprog(rng, penalty):
    for n in (1, 2, 3, 5, 8):
        P, Q, D = metric_problem(rng, n)
        ref = emd_hat_linprog(P, Q, D, penalty)
        cost, flow = emd_with_flow(P, Q, D, penalty)
        assert emd(P, Q, D, penalty) == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert cost == pytest.approx(ref, rel=1e-9, abs=1e-12)
        F = np.array(flow)
        # the flow explains the cost: <F, D> + penalty * unmatched mass
        pen = D.max() if penalty == -1.0 else penalty
        assert cost == pytest.approx(float((F * D).sum()) + abs(P.sum() - Q.sum()) * pen, rel=1e-12, abs=1e-14)
        assert (F >= 0).all() and (F.sum(1) <= P + 1e-12).all() and (F.sum(0) <= Q + 1e-12).all()
        assert F.sum() == pytest.approx(min(P.sum(), Q.sum()), rel=1e-12)


def test_equal_masses_is_plain_emd(rng):
    from fastcore import ot

    P, Q, D = metric_problem(rng, 12, unequal=False)
    assert emd(P, Q, D) == pytest.approx(float(ot.emd2(P, Q, D)), rel=1e-12)
    assert emd(P, Q, D, extra_mass_penalty=123.0) == pytest.approx(float(ot.emd2(P, Q, D)), rel=1e-12)


def _peer_backends():
    """pyemd 1.1 has a POT backend and its C++ one; 2.x is POT only (no ``backend`` argument)."""
    try:
        import inspect

        import pyemd as peer
    except Exception:
        return ["pot"]  # (the test is skipped)
    return ["pot", "cpp"] if "backend" in inspect.signature(peer.emd).parameters else ["pot"]


@needs("pyemd")
@pytest.mark.parametrize("backend", _peer_backends())
def test_matches_installed_pyemd(rng, backend):
    import inspect

    import pyemd as peer

    kw = {"backend": backend} if "backend" in inspect.signature(peer.emd).parameters else {}
    rtol = 1e-12 if backend == "pot" else 1e-4  # the C++ backend rounds to integers (1e6 levels)
    for n in (1, 2, 7, 20, 40):
        for penalty in (-1.0, 0.0, 0.7):
            P, Q, D = metric_problem(rng, n)
            assert emd(P, Q, D, penalty) == pytest.approx(peer.emd(P, Q, D, penalty, **kw), rel=rtol, abs=1e-12)
            cost, flow = emd_with_flow(P, Q, D, penalty)
            pcost, pflow = peer.emd_with_flow(P, Q, D, penalty, **kw)
            assert cost == pytest.approx(pcost, rel=rtol, abs=1e-12)
            if backend == "pot":  # continuous random data: the optimal flow is unique
                np.testing.assert_allclose(flow, pflow, rtol=1e-9, atol=1e-12)
    x, y = rng.standard_normal(300), rng.standard_normal(200) + 0.3
    for kwargs in ({}, {"bins": 7}, {"normalized": False}, {"normalized": False, "extra_mass_penalty": 0.1}):
        assert emd_samples(x, y, **kwargs) == pytest.approx(peer.emd_samples(x, y, **kwargs, **kw), rel=rtol)


def test_larger_distance_matrix_uses_top_left_block(rng):
    P, Q, D = metric_problem(rng, 5)
    big = np.full((7, 8), 100.0)
    big[:5, :5] = D
    assert emd(P, Q, big) == emd(P, Q, D)  # the default penalty is the block's maximum too
    assert emd_with_flow(P, Q, big, 0.3) == emd_with_flow(P, Q, D, 0.3)


def test_all_zero_histogram_costs_the_penalty():
    D = np.array([[0.0, 2.0], [2.0, 0.0]])
    assert emd(np.zeros(2), np.array([1.0, 3.0]), D) == 8.0
    assert emd_with_flow(np.zeros(2), np.zeros(2), D) == (0.0, [[0.0, 0.0], [0.0, 0.0]])


def test_inputs_accepted_and_not_modified(rng):
    P, Q, D = metric_problem(rng, 6)
    copies = [P.copy(), Q.copy(), D.copy()]
    ref = emd(P, Q, D)
    assert emd(list(P), list(Q), D.tolist()) == ref
    assert emd(P, Q, np.asfortranarray(D)) == ref
    assert emd(P.astype(np.float32), Q.astype(np.float32), D.astype(np.float32)) == pytest.approx(ref, rel=1e-6)
    assert emd(np.array([1, 2]), np.array([2, 2]), np.array([[0, 1], [1, 0]])) == 1.0  # integers: 1 unit unmatched
    for x, c in zip((P, Q, D), copies):
        np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize("fn", [emd, emd_with_flow])
def test_bad_input(fn):
    D = np.array([[0.0, 1.0], [1.0, 0.0]])
    good = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="negative"):
        fn(np.array([1.0, -1.0]), good, D)
    with pytest.raises(ValueError, match="NaN"):
        fn(good, np.array([1.0, np.nan]), D)
    with pytest.raises(ValueError, match="distance_matrix contains infinite"):
        fn(good, good, np.array([[0.0, np.inf], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="non-empty"):
        fn(np.zeros(0), np.zeros(0), D)
    with pytest.raises(ValueError, match="dimension"):
        fn(good, good, np.zeros(4))
    with pytest.raises(ValueError, match="extra_mass_penalty must be finite"):
        fn(good, good, D, np.nan)
    with pytest.raises(TypeError, match="extra_mass_penalty"):
        fn(good, good, D, "max")


def test_emd_samples_bad_input():
    with pytest.raises(ValueError, match="distance must be"):
        emd_samples([1, 2], [2, 3], distance="cityblock")
    with pytest.raises(ValueError, match="no value of first_array"):
        emd_samples([1, 2], [2, 3], range=(5, 6))
    with pytest.raises(TypeError, match="distance"):
        emd_samples([1, 2], [2, 3], distance=3)


def test_docstring_examples_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = doctest.testmod(pyemd, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 8 and res.failed == 0
