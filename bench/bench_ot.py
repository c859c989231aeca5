"""fastcore.ot (exact EMD, batched WMD, k-NN) beside POT, pyemd and gensim on the same inputs.

POT (``ot.emd2``) is run with a pivot limit large enough to reach the optimum
(``numItermax=10**8``), except where its default limit is named.  Costs are checked
to agree to 1e-9 relative where both reach the optimum.  pyemd (``pyemd.emd``) and
gensim (``KeyedVectors.wmdistance``, which calls POT) are optional peers of the WMD
cases, used when installed.  pyemd takes one square ground-distance matrix over a
shared set of bins, so a WMD is given to it, as gensim does, over the union of both
documents' words (an (n + m) x (n + m) matrix with the two weight vectors padded with
zeros).

Unequal masses: ``partial_wasserstein2`` (``m`` = half the mass) beside POT's
``ot.partial.partial_wasserstein2`` (both reduce to an exact EMD with reservoir
points), and ``fastcore.pyemd.emd`` beside ``pyemd.emd`` on histograms of different
totals (the EMD-hat's extra-mass penalty): pyemd's default backend (POT, exact) and,
in pyemd 1.x, its C++ one (integer arithmetic, ~1e-5 relative) at a smaller size.
"""
import os

import numpy as np

from fastcore import ot as fot
from _harness import Case, benchmark_tests, have


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _cloud(n, d, uniform, seed=0, shift=0.0):
    def setup():
        rng = np.random.default_rng(seed)
        x, y = rng.random((n, d)), rng.random((n, d)) + shift
        M = np.sqrt(np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2 * x @ y.T, 0))
        if uniform:
            a = b = np.full(n, 1.0 / n)
        else:
            a, b = rng.random(n), rng.random(n)
            a, b = a / a.sum(), b / b.sum()
        return {"a": a, "b": b, "M": M}

    return setup


def _check_close(rtol=1e-9):
    def check(results):
        ref = np.asarray(results["fastcore"], dtype=np.float64)
        for name, value in results.items():
            if name.endswith("default limit"):
                continue
            np.testing.assert_allclose(np.asarray(value, dtype=np.float64), ref, rtol=rtol, err_msg=name)

    return check


def _emd_cases():
    out = []
    for n, d, uniform in [(500, 64, True), (1000, 64, True), (1000, 2, False), (2000, 64, True)]:
        impls = {"fastcore": lambda s: fot.emd2(s["a"], s["b"], s["M"])}
        if have("ot"):
            import ot

            impls["POT"] = lambda s: ot.emd2(s["a"], s["b"], s["M"], numItermax=10**8)
            if n == 2000:
                impls["POT default limit"] = lambda s: ot.emd2(s["a"], s["b"], s["M"])
        w = "uniform" if uniform else "random w"
        out.append(Case("ot", f"emd2 n=m={n} d={d} {w}", _cloud(n, d, uniform), impls, None, _check_close()))
    impls = {"fastcore": lambda s: fot.emd2(s["a"], s["b"], s["M"])}
    if have("ot"):
        import ot

        impls["POT"] = lambda s: ot.emd2(s["a"], s["b"], s["M"], numItermax=10**8)
    out.append(Case("ot", "emd2 n=m=1000 d=2 uniform, clouds shifted by 1", _cloud(1000, 2, True, shift=1.0),
                    impls, None, _check_close()))
    return out


def _docs(count, lo, hi, d, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(lo, hi + 1)), d)) for _ in range(count)]


def _dist(X, Y):
    return np.sqrt(np.maximum((X * X).sum(1)[:, None] + (Y * Y).sum(1)[None] - 2 * X @ Y.T, 0))


def _joint(X, Y):
    """pyemd's form of a WMD: weights over the union of the words, square costs."""
    Z = np.vstack([X, Y])
    n, m = len(X), len(Y)
    return (np.concatenate([np.full(n, 1 / n), np.zeros(m)]), np.concatenate([np.zeros(n), np.full(m, 1 / m)]),
            np.ascontiguousarray(_dist(Z, Z)))


def _overhead_case():
    def setup():
        X, Y = _docs(2, 26, 26, 300, 1)
        p, q, J = _joint(X, Y)
        return {"a": np.full(26, 1 / 26), "M": _dist(X, Y), "p": p, "q": q, "J": J}

    impls = {"fastcore": lambda s: fot.emd2(s["a"], s["a"], s["M"])}
    if have("ot"):
        import ot

        impls["POT"] = lambda s: ot.emd2(s["a"], s["a"], s["M"])
    if have("pyemd"):
        import pyemd

        impls["pyemd (52x52 joint)"] = lambda s: pyemd.emd(s["p"], s["q"], s["J"])
    return Case("ot", "emd2 one 26x26 WMD (cost given)", setup, impls, ("call", 1), _check_close(1e-12))


def _batch_cases():
    na, nb = 40, 50  # 2,000 pairs of 10-50 words, d = 300

    def setup():
        return {"A": _docs(na, 10, 50, 300, 2), "B": _docs(nb, 10, 50, 300, 3)}

    def pot_loop(s):
        import ot

        out = np.empty((na, nb))
        for i, X in enumerate(s["A"]):
            for j, Y in enumerate(s["B"]):
                out[i, j] = ot.emd2([], [], ot.dist(X, Y, metric="euclidean"))
        return out

    def setup_batch():
        s = setup()
        return [([], [], _dist(X, Y)) for X in s["A"][:10] for Y in s["B"]]

    def pot_batch_loop(probs):
        import ot

        return np.array([ot.emd2(a, b, M) for a, b, M in probs])

    def gensim_setup():
        s = setup()
        from gensim.models import KeyedVectors

        for name in ("A", "B"):  # gensim stores float32: every peer gets the same rounded vectors
            s[name] = [X.astype(np.float32).astype(np.float64) for X in s[name]]

        words, vecs, docs = [], [], {}
        for name in ("A", "B"):
            docs[name] = []
            for k, X in enumerate(s[name]):
                toks = [f"{name}{k}_{t}" for t in range(len(X))]  # distinct words: nBOW = uniform
                words += toks
                vecs.append(X)
                docs[name].append(toks)
        kv = KeyedVectors(300)
        kv.add_vectors(words, np.vstack(vecs))
        s["kv"], s["tokA"], s["tokB"] = kv, docs["A"], docs["B"]
        return s

    def gensim_loop(s):
        kv = s["kv"]
        return np.array([[kv.wmdistance(x, y, norm=False) for y in s["tokB"]] for x in s["tokA"]])

    impls = {"fastcore": lambda s: fot.pairwise(s["A"], s["B"], "wmd", n_threads=_threads())}
    impls2 = {"fastcore": lambda probs: fot.emd2_batch(probs, n_threads=_threads())}
    if have("ot"):
        impls["POT loop"] = pot_loop
        impls2["POT loop"] = pot_batch_loop
    use_gensim = have("gensim") and have("ot")
    if use_gensim:
        impls["gensim wmdistance"] = gensim_loop
    out = []
    if have("pyemd"):  # pyemd is ~100x slower than POT here: a smaller set of pairs
        sa, sb = 8, 10

        def small_setup():
            s = setup()
            return {"A": s["A"][:sa], "B": s["B"][:sb]}

        def pyemd_small(s):
            import pyemd

            return np.array([[pyemd.emd(*_joint(X, Y)) for Y in s["B"]] for X in s["A"]])

        small = {"fastcore": lambda s: fot.pairwise(s["A"], s["B"], "wmd", n_threads=_threads()),
                 "pyemd loop": pyemd_small}
        if have("ot"):
            import ot

            small["POT loop"] = lambda s: np.array([[ot.emd2([], [], ot.dist(X, Y, metric="euclidean"))
                                                     for Y in s["B"]] for X in s["A"]])
        out.append(Case("ot", f"pairwise WMD {sa}x{sb} docs, 10-50 words, d=300", small_setup, small,
                        ("pair", sa * sb), _check_close(1e-9)))
    return out + [
        Case("ot", f"pairwise WMD {na}x{nb} docs, 10-50 words, d=300", gensim_setup if use_gensim else setup,
             impls, ("pair", na * nb), _check_close(1e-9)),
        Case("ot", "emd2_batch 500 WMD problems (costs given)", setup_batch, impls2, ("problem", 500),
             _check_close(1e-9)),
    ]


def _knn_case():
    nq, nc, k = 10, 1000, 5

    def setup():
        rng = np.random.default_rng(4)
        topics = rng.standard_normal((50, 100))
        def doc(t):
            return topics[t] + 0.8 * rng.standard_normal((int(rng.integers(10, 31)), 100))
        return {"Q": [doc(int(rng.integers(50))) for _ in range(nq)],
                "C": [doc(int(rng.integers(50))) for _ in range(nc)]}

    def fc(s):
        return fot.knn(s["Q"], s["C"], k, n_threads=_threads())[0]

    def brute_pot(s):
        import ot

        D = np.array([[ot.emd2([], [], ot.dist(X, Y, metric="euclidean")) for Y in s["C"]] for X in s["Q"]])
        idx = np.argsort(D, axis=1, kind="stable")[:, :k]
        return idx

    def check(results):
        for name, value in results.items():
            np.testing.assert_array_equal(value, results["fastcore"], err_msg=name)

    impls = {"fastcore": fc, "fastcore brute force": lambda s: fot.knn(s["Q"], s["C"], k, prune=False,
                                                                       n_threads=_threads())[0]}
    if have("ot"):
        impls["POT brute force"] = brute_pot
    return Case("ot", f"knn {nq} queries x {nc} docs, k={k}, d=100", setup, impls, ("query", nq), check)


def _unequal_cases():
    def partial_setup():
        s = _cloud(1000, 2, False, seed=5, shift=0.5)()
        s["a"] = s["a"] * 1.5  # totals 1.5 and 1: only m = 0.5 moves
        return s

    impls = {"fastcore": lambda s: fot.partial_wasserstein2(s["a"], s["b"], s["M"], m=0.5)}
    if have("ot"):
        import ot
        import ot.partial

        impls["POT"] = lambda s: ot.partial.partial_wasserstein2(s["a"], s["b"], s["M"], m=0.5,
                                                                 numItermax=10**8)
    out = [Case("ot", "partial_wasserstein2 n=m=1000 d=2, m=0.5 of masses 1.5 and 1", partial_setup, impls,
                None, _check_close())]

    def hist_setup(n):
        def setup():
            rng = np.random.default_rng(6)
            x = rng.random((n, 2))
            P, Q = rng.random(n), rng.random(n)
            return {"P": P / P.sum(), "Q": 1.3 * Q / Q.sum(),  # 0.3 of extra mass
                    "D": np.sqrt(np.maximum((x * x).sum(1)[:, None] + (x * x).sum(1)[None] - 2 * x @ x.T, 0))}

        return setup

    def check_pyemd(results):
        ref = results["fastcore"]
        for name, value in results.items():
            np.testing.assert_allclose(value, ref, rtol=1e-4 if "C++" in name else 1e-9, err_msg=name)

    from fastcore import pyemd as fpyemd

    for n, cpp in [(1000, False), (200, True)]:
        impls = {"fastcore": lambda s: fpyemd.emd(s["P"], s["Q"], s["D"])}
        if have("pyemd"):
            import inspect

            import pyemd

            impls["pyemd"] = lambda s: pyemd.emd(s["P"], s["Q"], s["D"])
            if cpp and "backend" in inspect.signature(pyemd.emd).parameters:  # pyemd 1.x
                impls["pyemd C++ backend"] = lambda s: pyemd.emd(s["P"], s["Q"], s["D"], backend="cpp")
        out.append(Case("ot", f"pyemd.emd n={n} bins d=2, masses 1 and 1.3", hist_setup(n), impls, None,
                        check_pyemd))
    return out


def cases():
    return _emd_cases() + [_overhead_case()] + _batch_cases() + [_knn_case()] + _unequal_cases()


test_ot = benchmark_tests(cases)
