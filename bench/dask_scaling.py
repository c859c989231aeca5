"""Scaling of fastcore.dask.knn: 1 vs 2 workers, threads vs processes, overhead per task.

    python bench/dask_scaling.py              # the issue's 20,000 documents (d = 300)
    python bench/dask_scaling.py --docs 4000  # quicker

Prints the median wall time of each configuration beside fastcore.ot.knn with
n_threads = 1 and 2 in the same process, and the per-task overhead measured with
partitions that hold one tiny document each.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from bench_dask import corpus  # noqa: E402


def median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--partition-size", type=int, default=500)
    args = ap.parse_args(argv)

    import dask.bag as db
    from distributed import Client, LocalCluster

    import fastcore.dask as fd
    from fastcore import ot

    queries, docs = corpus(args.docs)
    ref = ot.knn(queries, docs, 10, n_threads=1)
    rows = []
    for nt in (1, 2):
        t = median_time(lambda: ot.knn(queries, docs, 10, n_threads=nt), args.repeats)
        rows.append((f"fastcore.ot.knn n_threads={nt}", t))
    t = median_time(lambda: fd.knn(queries, docs, 10, partition_size=args.partition_size), args.repeats)
    rows.append(("dask threaded scheduler (no client)", t))
    for processes in (False, True):
        for n_workers in (1, 2):
            with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                              dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
                client.wait_for_workers(n_workers)
                # the corpus is loaded into the workers once (as a real deployment would), then searched
                bag = client.persist(db.from_sequence(docs, partition_size=args.partition_size))
                i, d = fd.knn(queries, bag, 10, client=client)
                assert (i == ref[0]).all()
                t = median_time(lambda: fd.knn(queries, bag, 10, client=client), args.repeats)
                rows.append((f"dask {'processes' if processes else 'threads'}, {n_workers} worker(s)", t))
                if n_workers == 1:
                    tiny_q = [np.ones((1, 2))]
                    tiny = [np.ones((1, 2)) * i for i in range(400)]
                    fd.knn(tiny_q, tiny, 1, client=client, partition_size=1)
                    tt = median_time(lambda: fd.knn(tiny_q, tiny, 1, client=client, partition_size=1), 3)
                    rows.append((f"  overhead per task ({'processes' if processes else 'threads'})", tt / 400))
    base = dict(rows)["fastcore.ot.knn n_threads=2"]
    print(f"k-NN: {len(queries)} queries, {len(docs)} documents of 10-50 vectors, d = 300, k = 10")
    for name, t in rows:
        if name.startswith("  overhead"):
            print(f"{name:45s} {t * 1e3:9.3f} ms")
        else:
            print(f"{name:45s} {t:9.3f} s   (x{t / base:5.2f} of ot.knn with 2 threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
