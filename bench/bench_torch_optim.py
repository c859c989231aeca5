"""fastcore.torch.optim (a torch.optim.Optimizer) beside torch.optim and fastcore.optim.

Two workloads:

* clip + AdamW on 10 M float32 parameters in 8 tensors of mixed sizes (a small transformer's
  share of matrices, embeddings and biases): ``fastcore.torch.optim.AdamW(clip=1.0)`` against
  ``clip_grad_norm_`` + ``torch.optim.AdamW(fused=True)`` (foreach where fused is missing) and
  ``foreach=True``, and against ``fastcore.optim.AdamW`` on NumPy arrays (the same kernels
  without the torch wrapper).  Byte model as bench_optim.py: fastcore moves 32 B per element
  (g read twice, p, m, v read and written); clip_grad_norm_ + a fused AdamW moves 40 B (the
  clip reads and writes g once more).
* the wrapper's overhead: the same step on 8 tensors of 16 elements, where the time is all
  Python: the torch Optimizer (hooks, ``.grad`` checks, pointer tables) against
  ``fastcore.optim.AdamW`` on NumPy arrays.

Each implementation owns its parameters and state (built on its first call from the same
seed), and all read the same gradient values.  FASTCORE_BENCH_TORCH_OPTIM_N sets the total
size of the first workload (default 10 M; the smoke run uses a small one).
"""
import os

import numpy as np
from _harness import Case, benchmark_tests, have

from fastcore import optim

FRACTIONS = (0.4, 0.2, 0.2, 0.1, 0.05, 0.03, 0.015, 0.005)  # 8 tensors of mixed sizes


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _total():
    return int(os.environ.get("FASTCORE_BENCH_TORCH_OPTIM_N", "10000000"))


def _shapes(total):
    sizes = [max(1, int(f * total)) for f in FRACTIONS]
    sizes[0] += total - sum(sizes)
    # matrices of 256 columns where the size allows, vectors otherwise (biases, norms)
    return [(s // 256, 256) if s % 256 == 0 and s >= 256 else (s,) for s in sizes]


def _setup(shapes):
    def setup():
        rng = np.random.default_rng(0)
        grads = [rng.standard_normal(s, dtype=np.float32) * np.float32(0.01) for s in shapes]
        return {"shapes": shapes, "grads": grads, "own": {}}
    return setup


def _params(d):
    rng = np.random.default_rng(2)
    return [rng.standard_normal(s, dtype=np.float32) for s in d["shapes"]]


# ---------------------------------------------------------------- fastcore.torch
def _fc_torch(d):
    import torch

    from fastcore.torch.optim import AdamW

    st = d["own"].get("fc_torch")
    if st is None:
        tp = [torch.nn.Parameter(torch.from_numpy(x)) for x in _params(d)]
        for t, g in zip(tp, d["grads"]):
            t.grad = torch.from_numpy(g)  # read only: the clip is fused, no gradient is written
        opt = AdamW(tp, lr=1e-3, weight_decay=0.01, clip=1.0, n_threads=_threads())
        st = d["own"]["fc_torch"] = (tp, opt)
    tp, opt = st
    opt.step()
    return tp[0].detach().numpy()


# ---------------------------------------------------------------- fastcore.optim (NumPy)
def _fc_numpy(d):
    st = d["own"].get("fc_numpy")
    if st is None:
        p = _params(d)
        st = d["own"]["fc_numpy"] = (p, optim.AdamW(p, 1e-3, weight_decay=0.01, clip=1.0, n_threads=_threads()))
    p, opt = st
    opt.step(d["grads"])
    return p[0]


# ---------------------------------------------------------------- torch.optim
def _torch_fused_available():
    import torch

    try:
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def _torch(variant):
    import torch

    def run(d):
        key = ("torch", variant)
        st = d["own"].get(key)
        if st is None:
            tp = [torch.nn.Parameter(torch.from_numpy(x)) for x in _params(d)]
            for t, g in zip(tp, d["grads"]):
                t.grad = torch.from_numpy(g.copy())  # clip_grad_norm_ writes the gradients
            flags = {"fused": True} if variant == "fused" else {"foreach": True}
            opt = torch.optim.AdamW(tp, lr=1e-3, weight_decay=0.01, **flags)
            st = d["own"][key] = (tp, opt)
        tp, opt = st
        torch.nn.utils.clip_grad_norm_(tp, 1.0, foreach=True)
        opt.step()
        return tp[0].detach().numpy()
    return run


def _check_first_step(results):
    ref = np.asarray(results["fastcore"])
    for name, value in results.items():
        np.testing.assert_allclose(np.asarray(value), ref, rtol=1e-5, atol=1e-6, err_msg=name)


def cases():
    out = []
    total = _total()
    shapes = _shapes(total)
    tag = f"{total / 1e6:g}M f32 x{len(shapes)}"
    impls = {}
    if have("torch"):
        impls["fastcore"] = _fc_torch
        impls["fastcore.optim (NumPy)"] = _fc_numpy
        if _torch_fused_available():
            impls["torch fused"] = _torch("fused")
        impls["torch foreach"] = _torch("foreach")
        out.append(Case("torch_optim", f"clip + AdamW {tag}", _setup(shapes), impls, ("elem", total),
                        _check_first_step))
        small = [(16,)] * len(FRACTIONS)
        impls = {"fastcore": _fc_torch, "fastcore.optim (NumPy)": _fc_numpy}
        out.append(Case("torch_optim", "clip + AdamW overhead 8 x 16 f32", _setup(small), impls, ("call", 1),
                        _check_first_step))
    return out


test_torch_optim = benchmark_tests(cases)
