"""fastcore.dask: identical answers to the single-machine kernels on every scheduler."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from _helpers import assert_import_fails_clearly, needs

pytestmark = [needs("dask"), needs("distributed")]


def _docs(rng, n, d=6, lo=2, hi=9):
    return [rng.standard_normal((int(rng.integers(lo, hi)), d)) for _ in range(n)]


@pytest.fixture
def data(rng):
    corpus = _docs(rng, 61)
    corpus[17] = corpus[3].copy()  # a duplicate: ties must be broken by index everywhere
    queries = _docs(rng, 4) + [corpus[3]]
    return queries, corpus


@pytest.mark.parametrize("metric", ["wmd", "wrd"])
@pytest.mark.parametrize("partition_size", [1, 7, 10, 61, 100])
def test_knn_threads_equals_single_machine(data, metric, partition_size):
    import fastcore.dask as fd
    from fastcore import ot

    queries, corpus = data
    for k in (1, 5, 12):
        idx, dist, _ = ot.knn(queries, corpus, k, metric=metric)
        i2, d2 = fd.knn(queries, corpus, k, metric=metric, partition_size=partition_size)
        np.testing.assert_array_equal(i2, idx)
        np.testing.assert_array_equal(d2, dist)


def test_knn_bag_with_empty_partitions(data):
    import dask.bag as db

    import fastcore.dask as fd
    from fastcore import ot

    queries, corpus = data
    bag = db.from_sequence(corpus, npartitions=8)
    # add empty partitions on both ends by filtering everything out of some of them
    bag = db.concat([db.from_sequence([], npartitions=1), bag, db.from_sequence([], npartitions=1)])
    idx, dist, _ = ot.knn(queries, corpus, 9)
    i2, d2 = fd.knn(queries, bag, 9)
    np.testing.assert_array_equal(i2, idx)
    np.testing.assert_array_equal(d2, dist)


def test_knn_bad_input(data):
    import fastcore.dask as fd

    queries, corpus = data
    with pytest.raises(ValueError, match="k must be in"):
        fd.knn(queries, corpus, len(corpus) + 1)
    with pytest.raises(ValueError, match="metric"):
        fd.knn(queries, corpus, 3, metric="cosine")
    with pytest.raises(ValueError, match="partition_size"):
        fd.knn(queries, corpus, 3, partition_size=0)
    with pytest.raises(ValueError, match="queries is empty"):
        fd.knn([], corpus, 3)


def test_viterbi_and_likelihood_on_dask_arrays(rng):
    import dask.array as da

    import fastcore.dask as fd
    from fastcore import crf

    B, T, K = 37, 13, 5
    em = rng.standard_normal((B, T, K)).astype(np.float32)
    tr = rng.standard_normal((K, K)).astype(np.float32)
    mask = rng.random((B, T)) > 0.25
    tags = rng.integers(0, K, (B, T))
    for chunks in ((B, T, K), (8, T, K), (10, 5, 2)):  # the last one is rechunked along T and K
        dem = da.from_array(em, chunks=chunks)
        paths, scores = fd.viterbi(dem, tr, mask=da.from_array(mask, chunks=(7, T)))
        p, s = da.compute(paths, scores, scheduler="threads")
        p0, s0 = crf.viterbi(em, tr, mask=mask)
        np.testing.assert_array_equal(p, p0)
        np.testing.assert_array_equal(s, s0)
        ll = fd.crf_log_likelihood(dem, tags, tr, mask=mask).compute(scheduler="threads")
        np.testing.assert_array_equal(ll, crf.crf_log_likelihood(em, tags, tr, mask=mask))
    p3, s3 = da.compute(*fd.viterbi(da.from_array(em, chunks=(9, T, K)), tr, lengths=mask.sum(1), top_k=3))
    p30, s30 = crf.viterbi(em, tr, lengths=mask.sum(1), top_k=3)
    np.testing.assert_array_equal(p3, p30)
    np.testing.assert_array_equal(s3, s30)
    with pytest.raises(ValueError, match="mask must have 37 rows"):
        fd.viterbi(da.from_array(em, chunks=(8, T, K)), tr, mask=mask[:5])


@pytest.mark.parametrize("processes", [False, True])
def test_distributed_cluster(data, rng, processes):
    import dask.array as da
    from distributed import Client, LocalCluster

    import fastcore.dask as fd
    from fastcore import crf, ot

    queries, corpus = data
    idx, dist, _ = ot.knn(queries, corpus, 6, metric="wrd")
    em = rng.standard_normal((40, 9, 4))
    tr = rng.standard_normal((4, 4))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        i2, d2 = fd.knn(queries, corpus, 6, metric="wrd", client=client, partition_size=9)
        np.testing.assert_array_equal(i2, idx)
        np.testing.assert_array_equal(d2, dist)
        paths, _ = fd.viterbi(da.from_array(em, chunks=(7, 9, 4)), tr)
        np.testing.assert_array_equal(client.compute(paths).result(), crf.viterbi(em, tr)[0])


def test_worker_killed_mid_run_still_gives_the_full_answer(rng):
    from distributed import Client, LocalCluster

    import fastcore.dask as fd
    from fastcore import ot

    corpus = _docs(rng, 400, d=16, lo=20, hi=40)
    queries = _docs(rng, 6, d=16, lo=20, hi=40)
    idx, dist, _ = ot.knn(queries, corpus, 7, prune=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        victim = sorted(client.scheduler_info()["workers"])[0]
        victim_pid = client.run(os.getpid, workers=[victim])[victim]
        result = {}

        def run():
            result["value"] = fd.knn(queries, corpus, 7, prune=False, client=client, partition_size=10)

        t = threading.Thread(target=run)
        t.start()
        # wait until the victim is busy, then kill its process (the nanny starts a new one)
        busy = False
        deadline = time.time() + 30
        while not busy and time.time() < deadline:
            busy = bool(client.processing().get(victim))
            time.sleep(0.005)
        assert busy, "the victim worker never received a task"
        os.kill(victim_pid, signal.SIGKILL)
        t.join(120)
        assert not t.is_alive()
        i2, d2 = result["value"]
    np.testing.assert_array_equal(i2, idx)
    np.testing.assert_array_equal(d2, dist)


def test_import_without_dask_gives_a_clear_message(tmp_path):
    assert_import_fails_clearly(tmp_path, "dask", "fastcore.dask", "fastcore.dask needs Dask: pip install 'fastcore-kernels[dask]'")


def test_crf_bad_input_is_rejected_at_the_call(rng):
    # issue 28 item 13: IndexError / AttributeError before fastcore's own checks, or errors
    # only at compute time from inside a task
    import dask.array as da

    import fastcore.dask as fdask
    from fastcore import crf

    em = rng.standard_normal((4, 5, 3))
    tr = rng.standard_normal((3, 3))
    tags = rng.integers(0, 3, (4, 5))
    with pytest.raises(ValueError, match="emissions"):
        fdask.viterbi([[1.0, 2.0]], tr)
    with pytest.raises(ValueError, match="emissions"):
        fdask.viterbi(np.zeros(3), tr)
    with pytest.raises(TypeError, match="emissions"):
        fdask.viterbi(em.astype(object), tr)
    with pytest.raises(TypeError, match="transitions"):
        fdask.viterbi(em, None)
    with pytest.raises(ValueError, match="transitions"):
        fdask.crf_log_likelihood(em, tags, tr[:2])
    with pytest.raises(ValueError, match="start"):
        fdask.viterbi(em, tr, start=np.zeros(4))
    with pytest.raises(ValueError, match="top_k"):
        fdask.viterbi(em, tr, top_k=0)
    with pytest.raises(TypeError, match="top_k"):
        fdask.viterbi(em, tr, top_k=1.5)
    for dt in (np.float16, np.int32, np.float32):  # declared dtypes are those the tasks return
        paths, scores = fdask.viterbi(em.astype(dt), tr)
        assert scores.dtype == scores.compute().dtype == crf.viterbi(em.astype(dt), tr)[1].dtype
        ll = fdask.crf_log_likelihood(em.astype(dt), tags, tr)
        assert ll.dtype == ll.compute().dtype
    paths, scores = fdask.viterbi(da.from_array(em, chunks=(2, 5, 3)), tr)
    ref_paths, ref_scores = crf.viterbi(em, tr)
    np.testing.assert_array_equal(paths.compute(), ref_paths)
    np.testing.assert_array_equal(scores.compute(), ref_scores)
