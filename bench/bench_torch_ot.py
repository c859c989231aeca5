"""fastcore.torch's OT losses beside POT's torch backend, forward and backward, on the same tensors.

Case: an exact-OT loss (squared Euclidean costs ``torch.cdist(X, Y) ** 2``, uniform weights)
summed over 64 independent pairs of 100-point clouds in 2-d, then ``.backward()`` to the
points: ``fastcore.torch.emd2_batch`` (one call; with gradients required it solves each
problem's plan and duals on ``n_threads`` threads) against a Python loop of POT's
``ot.emd2`` on torch tensors (POT's torch backend, one solve per pair).  Both build the
costs with the same ``torch.cdist``; the check compares the 64 costs and the gradient
w.r.t. the points (the optimum is unique for random points, so the plans coincide).
"""
import os

import numpy as np

from _harness import Case, benchmark_tests, have

PAIRS, N, D = 64, 100, 2


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _setup():
    import torch

    rng = np.random.default_rng(0)
    return {"X": torch.from_numpy(rng.random((PAIRS, N, D))),
            "Y": torch.from_numpy(rng.random((PAIRS, N, D)) + 0.5),
            "w": torch.full((N,), 1.0 / N, dtype=torch.float64)}


def _costs(s):
    import torch

    X = s["X"].clone().requires_grad_(True)
    return X, torch.cdist(X, s["Y"]) ** 2  # (PAIRS, N, N), each M[k] contiguous


def _fastcore(s):
    from fastcore.torch import emd2_batch

    X, M = _costs(s)
    w = s["w"]
    costs = emd2_batch([(w, w, M[k]) for k in range(PAIRS)], n_threads=_threads())
    costs.sum().backward()
    return costs.detach().numpy(), X.grad.numpy()


def _pot_loop(s):
    import ot
    import torch

    X, M = _costs(s)
    w = s["w"]
    costs = torch.stack([ot.emd2(w, w, M[k]) for k in range(PAIRS)])
    costs.sum().backward()
    return costs.detach().numpy(), X.grad.numpy()


def _check(results):
    ref_c, ref_g = results["fastcore"]
    for name, (c, g) in results.items():
        np.testing.assert_allclose(c, ref_c, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(g, ref_g, rtol=1e-9, atol=1e-12, err_msg=name)


def cases():
    if not have("torch"):
        return []
    impls = {"fastcore": _fastcore}
    if have("ot"):
        impls["POT loop"] = _pot_loop
    return [Case("torch_ot", f"emd2 loss fwd+bwd, {PAIRS} pairs of {N}-point clouds, d={D}", _setup, impls,
                 ("pair", PAIRS), _check)]


test_torch_ot = benchmark_tests(cases)
