"""Shared benchmark machinery: a Case runs fastcore beside its peers on the same inputs.

A ``bench_<family>.py`` module defines ``cases()`` returning a list of :class:`Case`.
The same cases feed two runners:

* pytest-benchmark (``pytest bench``): one test per (case, implementation), via
  :func:`benchmark_tests`; CI runs it with ``--benchmark-disable`` so every
  implementation is executed once and checked to run.
* ``python bench/compare.py``: times every implementation of a case interleaved
  in one process (round-robin repeats, medians) and prints ratios to fastcore.
"""
import dataclasses
import importlib
import os
import time
from typing import Callable, Dict, Optional


@dataclasses.dataclass
class Case:
    """One workload.

    family : kernel family ("softmax", "crf", ...).
    name : short label of the workload (shape, dtype, options).
    setup : () -> inputs; called once, its result is passed to every implementation.
    impls : name -> callable(inputs); "fastcore" is the reference of the ratios.
    work : optional (unit, count) to also report time per unit (e.g. ("token", B*T)).
    check : optional callable(results: dict name -> value) run once to verify that
        the implementations agree (raises on disagreement).
    """

    family: str
    name: str
    setup: Callable[[], object]
    impls: Dict[str, Callable[[object], object]]
    work: Optional[tuple] = None
    check: Optional[Callable[[dict], None]] = None


def have(module):
    """Whether an optional peer can be imported."""
    try:
        importlib.import_module(module)
        return True
    except Exception:
        return False


def single_thread_peers():
    """Pin peers to one thread (call before timing 1-thread comparisons)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if have("torch"):
        import torch

        torch.set_num_threads(1)


def time_case(case, repeats=7, min_time=0.05):
    """Median seconds per call for every implementation, timed interleaved."""
    inputs = case.setup()
    results = {name: fn(inputs) for name, fn in case.impls.items()}  # warm-up + check
    if case.check is not None:
        case.check(results)
    del results
    # calls per timing so that one timing lasts at least min_time
    loops = {}
    for name, fn in case.impls.items():
        t0 = time.perf_counter()
        fn(inputs)
        dt = time.perf_counter() - t0
        loops[name] = max(1, int(min_time / max(dt, 1e-9)))
    samples = {name: [] for name in case.impls}
    for _ in range(repeats):
        for name, fn in case.impls.items():
            n = loops[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn(inputs)
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: sorted(v)[len(v) // 2] for name, v in samples.items()}


def benchmark_tests(cases_fn):
    """Build a pytest test function parametrised over (case, implementation)."""
    import pytest

    params = []
    for case in cases_fn():
        for impl in case.impls:
            params.append(pytest.param(case, impl, id=f"{case.family}-{case.name}-{impl}"))
        if case.check is not None:  # one more test: every implementation on the same inputs must agree
            params.append(pytest.param(case, None, id=f"{case.family}-{case.name}-agreement"))

    @pytest.mark.parametrize("case,impl", params)
    def test_benchmark(benchmark, case, impl):
        benchmark.group = f"{case.family}: {case.name}"
        inputs = case.setup()
        if impl is None:
            results = {name: fn(inputs) for name, fn in case.impls.items()}
            benchmark.pedantic(case.check, args=(results,), rounds=1, iterations=1)
            return
        benchmark(case.impls[impl], inputs)

    return test_benchmark
