"""Threads that behave in a real process: the thread-count policy (OMP_NUM_THREADS,
threadpoolctl, set_num_threads), results independent of the thread count, many Python threads
at once, fork() after the threads were used, and idle threads that sleep."""
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import fastcore
from fastcore import crf, ot
from fastcore._threads import available_cores, resolve_n_threads
from fastcore.attention import attention, attention_backward
from fastcore.sinkhorn import sinkhorn
from _helpers import run_python


def _run(code, **env):
    r = run_python(code, **{"OMP_NUM_THREADS": None, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("value, expected", [("1", "1"), ("1,2", "1"), ("", None), ("abc", None), ("0", None)])
def test_omp_num_threads_sets_the_default(value, expected):
    out = _run("import fastcore; print(fastcore.get_num_threads())", OMP_NUM_THREADS=value)
    assert out == (expected if expected is not None else str(available_cores()))


def test_omp_num_threads_above_the_cores_is_capped():
    out = _run("import fastcore; print(fastcore.get_num_threads())", OMP_NUM_THREADS="4096")
    assert out == str(available_cores())


def test_set_num_threads_and_context_manager():
    before = fastcore.get_num_threads()
    with fastcore.num_threads(1):
        assert fastcore.get_num_threads() == 1
        assert resolve_n_threads(None) == 1
        assert resolve_n_threads(-1) == 1
        assert resolve_n_threads(3) == 3  # an explicit count is used as given
    assert fastcore.get_num_threads() == before
    try:
        fastcore.set_num_threads(10**6)
        assert fastcore.get_num_threads() == available_cores()
    finally:
        fastcore.set_num_threads(None)
    assert fastcore.get_num_threads() == before
    for bad, exc in [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)]:
        with pytest.raises(exc, match="argument `n`"):
            fastcore.set_num_threads(bad)
    assert fastcore.get_num_threads() == before


def test_threadpoolctl_lists_and_limits_fastcore():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastcore"]
    assert len(info) == 1, threadpoolctl.threadpool_info()
    assert info[0]["num_threads"] == fastcore.get_num_threads()
    assert info[0]["version"] == fastcore.__version__
    before = fastcore.get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        assert fastcore.get_num_threads() == 1
        got = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastcore"]
        assert got[0]["num_threads"] == 1
    assert fastcore.get_num_threads() == before
    with threadpoolctl.threadpool_limits(limits=1, user_api="fastcore"):
        assert fastcore.get_num_threads() == 1
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert fastcore.get_num_threads() == before


def test_show_config_names_cpu_path_and_threads(capsys):
    fastcore.show_config()
    out = capsys.readouterr().out
    assert "kernels:" in out and "threads:" in out and fastcore.__version__ in out
    assert "built by " in out  # the compiler, e.g. "GCC 12.2.0" or "Clang 19.1.0"


def _problems(rng):
    """One call per kernel family, each as a function of n_threads, on inputs large enough that
    two threads really split them."""
    B, T, K = 64, 64, 9  # above the CRF kernels' work threshold for 2 and 3 threads
    em = rng.standard_normal((B, T, K)).astype(np.float32)
    tr = rng.standard_normal((K, K)).astype(np.float32)
    tags = rng.integers(0, K, (B, T))
    lengths = rng.integers(1, T + 1, B)
    x = rng.standard_normal((64, 512)).astype(np.float32)
    q, k, v = (rng.standard_normal((2, 4, 200, 32)) for _ in range(3))
    out, lse = attention(q, k, v, causal=True, return_lse=True, n_threads=1)
    n = 300
    a = np.full(n, 1.0 / n)
    M = rng.random((n, n))
    probs = [(np.full(30, 1 / 30), np.full(20, 1 / 20), rng.random((30, 20))) for _ in range(16)]
    docs = [rng.standard_normal((int(rng.integers(3, 9)), 8)) for _ in range(12)]
    return {
        "softmax": lambda t: fastcore.masked_softmax(x, n_threads=t),
        "viterbi": lambda t: crf.viterbi(em, tr, lengths=lengths, n_threads=t)[0],
        "crf_log_likelihood": lambda t: crf.crf_log_likelihood(em, tags, tr, lengths=lengths, n_threads=t),
        "crf_nll_grad": lambda t: crf.crf_nll_grad(em, tags, tr, lengths=lengths, n_threads=t)[1]["transitions"],
        "memm": lambda t: crf.memm_nll_grad(em, tags, tr, lengths=lengths, bidirectional=True,
                                            n_threads=t)[1]["transitions"],
        "attention": lambda t: attention(q, k, v, causal=True, n_threads=t),
        "attention_backward": lambda t: attention_backward(np.ones_like(out), q, k, v, out, lse, causal=True,
                                                           n_threads=t)[0],
        "sinkhorn": lambda t: sinkhorn(a, a, M, 0.05, numItermax=30, warn=False, n_threads=t),
        "emd2_batch": lambda t: ot.emd2_batch(probs, n_threads=t),
        "pairwise": lambda t: ot.pairwise(docs, n_threads=t),
    }


def test_results_identical_for_every_thread_count(rng):
    for name, call in _problems(rng).items():
        ref = call(1)
        for t in (2, 3, 7):
            np.testing.assert_array_equal(call(t), ref, err_msg=name)


def test_four_python_threads_at_once_give_the_serial_results(rng):
    calls = _problems(rng)
    expected = {name: call(1) for name, call in calls.items()}
    errors = []

    def work(seed):
        order = list(calls)
        np.random.default_rng(seed).shuffle(order)
        try:
            for _ in range(3):
                for name in order:
                    np.testing.assert_array_equal(calls[name](2), expected[name], err_msg=name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a kernel call did not return"
    assert not errors, errors[0]


def _child_viterbi(queue, em, tr):
    try:
        paths_default = crf.viterbi(em, tr)[0]
        paths_two = crf.viterbi(em, tr, n_threads=2)[0]
        queue.put((paths_default, paths_two))
    except Exception as exc:  # pragma: no cover - reported by the parent
        queue.put(exc)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_forked_child_runs_kernels_after_the_parent_used_threads(rng):
    em = rng.standard_normal((64, 128, 9)).astype(np.float32)
    tr = rng.standard_normal((9, 9)).astype(np.float32)
    expected = crf.viterbi(em, tr, n_threads=2)[0]  # the parent's pool now has running workers
    for _ in range(3):
        crf.viterbi(em, tr, n_threads=2)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_viterbi, args=(queue, em, tr))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():  # pragma: no cover - a deadlock: fail, do not hang
            child.kill()
    assert not isinstance(got, Exception), got
    np.testing.assert_array_equal(got[0], expected)
    np.testing.assert_array_equal(got[1], expected)


def test_idle_threads_sleep(rng):
    """After a threaded call the workers spin briefly, then sleep: a second of idling costs the
    process next to no CPU time."""
    x = rng.standard_normal((256, 4096)).astype(np.float32)
    for _ in range(5):
        fastcore.masked_softmax(x, n_threads=2)
    time.sleep(0.1)
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(1.0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert cpu < 0.1 * wall, f"{cpu:.3f} s of CPU while idle for {wall:.3f} s"
