"""Fused clip + optimiser steps beside torch.optim and NumPy: 50 float32 arrays.

Byte model (bytes each step must move per element, float32): clip + SGD momentum
reads g twice (norm, update), reads+writes p and the buffer: 24 B; clip + AdamW
adds a second state array: 32 B; the norm alone reads g once: 4 B.  GB/s =
bytes / time, to compare with the machine's ~31-42 GB/s per core (PEERS.md).

Each implementation owns its parameters and state (built on its first call from
the same seed), so the round-robin timing of compare.py never mixes them.  The
default size is 10 M elements; FASTCORE_BENCH_BIG=1 adds 100 M cases (fastcore
and torch fused only, ~3 GB of memory).
"""
import os

import numpy as np

from _harness import Case, benchmark_tests, have
from fastcore import optim

N_ARRAYS = 50


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _sizes(total):
    rng = np.random.default_rng(1)
    w = rng.uniform(0.2, 1.8, N_ARRAYS)
    s = np.floor(w / w.sum() * total).astype(np.int64)
    s[0] += total - s.sum()
    return [int(x) for x in s]


def _setup(total):
    def setup():
        sizes = _sizes(total)
        rng = np.random.default_rng(0)
        grads = [rng.standard_normal(n, dtype=np.float32) * np.float32(0.01) for n in sizes]
        return {"sizes": sizes, "grads": grads, "own": {}}
    return setup


def _params(d):
    rng = np.random.default_rng(2)
    return [rng.standard_normal(n, dtype=np.float32) for n in d["sizes"]]


# ---------------------------------------------------------------- fastcore
def _fc(kind):
    def run(d):
        st = d["own"].get(("fc", kind))
        if st is None:
            p = _params(d)
            if kind == "sgd":
                opt = optim.SGD(p, 1e-3, momentum=0.9, clip=1.0, n_threads=_threads())
            else:
                opt = optim.AdamW(p, 1e-3, weight_decay=0.01, clip=1.0, n_threads=_threads())
            st = d["own"][("fc", kind)] = (p, opt)
        p, opt = st
        opt.step(d["grads"])
        return p[0]
    return run


# ---------------------------------------------------------------- torch
def _torch(kind, variant):
    import torch

    def run(d):
        key = ("torch", kind, variant)
        st = d["own"].get(key)
        if st is None:
            tp = [torch.from_numpy(x).requires_grad_() for x in _params(d)]
            for t, g in zip(tp, d["grads"]):
                t.grad = torch.from_numpy(g.copy())
            flags = {"fused": variant == "fused", "foreach": variant == "foreach"}
            if variant == "loop":
                flags = {"foreach": False}
            if kind == "sgd":
                opt = torch.optim.SGD(tp, lr=1e-3, momentum=0.9, **flags)
            else:
                opt = torch.optim.AdamW(tp, lr=1e-3, weight_decay=0.01, **flags)
            st = d["own"][key] = (tp, opt)
        tp, opt = st
        torch.nn.utils.clip_grad_norm_(tp, 1.0, foreach=True)
        opt.step()
        return tp[0].detach().numpy()
    return run


# ---------------------------------------------------------------- NumPy
def _np(kind):
    def run(d):
        st = d["own"].get(("np", kind))
        if st is None:
            p = _params(d)
            st = d["own"][("np", kind)] = {"p": p, "m": [np.zeros_like(x) for x in p],
                                           "v": [np.zeros_like(x) for x in p], "t": 0}
        g = d["grads"]
        norm = np.sqrt(sum(float(np.dot(x, x)) for x in g))  # float32 dot: what a NumPy user writes
        c = np.float32(min(1.0, 1.0 / norm))
        st["t"] += 1
        t = st["t"]
        for p, gi, m, v in zip(st["p"], g, st["m"], st["v"]):
            gc = gi * c
            if kind == "sgd":
                if t == 1:
                    m[...] = gc
                else:
                    m *= np.float32(0.9)
                    m += gc
                p -= np.float32(1e-3) * m
            else:
                p *= np.float32(1 - 1e-3 * 0.01)
                m *= np.float32(0.9)
                m += np.float32(0.1) * gc
                v *= np.float32(0.999)
                gc *= gc
                v += np.float32(0.001) * gc
                denom = np.sqrt(v)
                denom /= np.float32(np.sqrt(1 - 0.999**t))
                denom += np.float32(1e-8)
                p -= np.float32(1e-3 / (1 - 0.9**t)) * m / denom
        return st["p"][0]
    return run


def _check_first_step(results):
    ref = np.asarray(results["fastcore"])
    for name, value in results.items():
        np.testing.assert_allclose(np.asarray(value), ref, rtol=1e-5, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------- norm / clip alone
def _clip_impls():
    impls = {
        "fastcore": lambda d: optim.clip_grad_norm(d["grads"], 1e9, n_threads=_threads()),
        "numpy": lambda d: np.sqrt(sum(float(np.dot(x, x)) for x in d["grads"])),
    }
    if have("torch"):
        import torch

        def torch_clip(d):
            tg = d["own"].get("tg")
            if tg is None:
                tg = d["own"]["tg"] = [torch.from_numpy(g) for g in d["grads"]]
                d["own"]["tp"] = [torch.zeros(0) for _ in tg]
            # clip_grad_norm_ needs .grad on parameters: wrap the same buffers
            ps = d["own"].get("tparams")
            if ps is None:
                ps = d["own"]["tparams"] = []
                for g in tg:
                    p = torch.zeros(g.shape, requires_grad=True)
                    p.grad = g
                    ps.append(p)
            return float(torch.nn.utils.clip_grad_norm_(ps, 1e9, foreach=True))

        impls["torch clip_grad_norm_"] = torch_clip
        impls["torch get_total_norm"] = lambda d: float(torch.nn.utils.get_total_norm(
            [torch.from_numpy(g) for g in d["grads"]], foreach=True))

    def check(results):
        ref = float(results["fastcore"])
        for name, value in results.items():
            assert abs(float(value) - ref) <= 1e-4 * ref, (name, value, ref)

    return impls, check


def cases():
    out = []
    totals = [10_000_000]
    if os.environ.get("FASTCORE_BENCH_BIG", "") == "1":
        totals.append(100_000_000)
    for total in totals:
        big = total > 10_000_000
        tag = f"{total // 1_000_000}M f32 x{N_ARRAYS}"
        impls, check = _clip_impls()
        if big:
            impls = {k: v for k, v in impls.items() if k in ("fastcore", "torch clip_grad_norm_")}
        out.append(Case("optim", f"global norm (no clip hit) {tag}", _setup(total), impls, ("elem", total), check))
        for kind, label in (("sgd", "clip + SGD momentum"), ("adamw", "clip + AdamW")):
            impls = {"fastcore": _fc(kind)}
            if have("torch"):
                variants = ("fused",) if big else ("fused", "foreach", "loop")
                for v in variants:
                    impls[f"torch {v}"] = _torch(kind, v)
            if not big:
                impls["numpy"] = _np(kind)
            out.append(Case("optim", f"{label} {tag}", _setup(total), impls, ("elem", total), _check_first_step))
    return out


test_optim = benchmark_tests(cases)
