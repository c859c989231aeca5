"""fastcore.dask.knn beside fastcore.ot.knn (same threads) on a synthetic embedding corpus.

The issue's workload is 20,000 documents of 10-50 vectors (d = 300), 10 queries,
k = 10; FASTCORE_BENCH_DASK_DOCS changes the corpus size (CI uses a small one).
The scaling curve (1 vs 2 workers, threads vs processes, overhead per task) is
printed by ``python bench/dask_scaling.py``.
"""
import os

import numpy as np

from _harness import Case, benchmark_tests, have

N_DOCS = int(os.environ.get("FASTCORE_BENCH_DASK_DOCS", "2000"))


def corpus(n_docs=N_DOCS, n_queries=10, d=300, seed=0):
    """Documents drawn around 50 topic centres (as word embeddings cluster), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d)).astype(np.float32)

    def doc():
        n = int(rng.integers(10, 51))
        topic = centres[rng.integers(0, 50, size=3)]
        words = topic[rng.integers(0, 3, size=n)] + 0.7 * rng.standard_normal((n, d), dtype=np.float32)
        return words

    return [doc() for _ in range(n_queries)], [doc() for _ in range(n_docs)]


def _check(results):
    ref_i, ref_d = results["fastcore"][:2]
    for name, (i, dist, *_) in results.items():
        np.testing.assert_array_equal(i, ref_i, err_msg=name)
        np.testing.assert_allclose(dist, ref_d, rtol=1e-12, err_msg=name)


def cases():
    if not have("dask"):
        return []
    import fastcore.dask as fd
    from fastcore import ot

    def setup():
        q, c = corpus()
        return {"q": q, "c": c}

    impls = {
        "fastcore": lambda d: ot.knn(d["q"], d["c"], 10, metric="wmd", n_threads=2),
        "dask-threads": lambda d: fd.knn(d["q"], d["c"], 10, metric="wmd",
                                         partition_size=max(1, len(d["c"]) // 8)),
    }
    return [Case("dask", f"knn wmd {N_DOCS} docs d=300 k=10, 2 threads", setup, impls,
                 ("query", 10), _check)]


test_dask = benchmark_tests(cases)
