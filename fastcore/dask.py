"""Scale-out on Dask: corpus-scale WMD/WRD k-NN search and batch CRF decoding.

The kernels release the GIL, so Dask's threaded scheduler runs partitions in
parallel on one machine; with a ``distributed.Client`` the same calls run on a
cluster.  What travels over the network is the documents (each partition's
arrays) and small results (k indices and distances per query and partition, or
the decoded paths): never a cost matrix.

Requires the optional extra ``pip install "fastcore-kernels[dask]"``.
"""
try:
    import dask
    import dask.array as da
    import dask.bag as db
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "fastcore.dask needs Dask: pip install 'fastcore-kernels[dask]' "
        "(or pip install 'dask[array,bag]' distributed)"
    ) from exc

import numpy as np

from fastcore import crf as _crf
from fastcore import ot as _ot

__all__ = ["knn", "viterbi", "crf_log_likelihood"]


# ------------------------------------------------------------------ k-NN
def _partition_knn(docs, queries, k, metric, prune, n_threads):
    """Top-k of every query inside one partition.

    Returns (local indices (nq, k'), distances (nq, k'), number of documents), with
    k' = min(k, number of documents); an empty partition gives empty lists.
    """
    docs = list(docs)
    nq = len(queries)
    if not docs:
        return np.empty((nq, 0), np.int64), np.empty((nq, 0), np.float64), 0
    idx, dist, _ = _ot.knn(queries, docs, min(k, len(docs)), metric=metric, prune=prune, n_threads=n_threads)
    return idx, dist, len(docs)


def _merge(results, k):
    """Exact merge of per-partition top-k lists into global (index, distance), by (distance, index)."""
    counts = np.array([r[2] for r in results], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    idx = np.concatenate([r[0] + off for r, off in zip(results, offsets)], axis=1)
    dist = np.concatenate([r[1] for r in results], axis=1)
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def _compute(tasks, client):
    if client is None:
        return dask.compute(*tasks, scheduler="threads")
    return client.gather(client.compute(list(tasks)))


def knn(queries, corpus, k, metric="wmd", prune=True, client=None, partition_size=1000, n_threads=1):
    """Exact k nearest corpus documents of each query, partition by partition on Dask.

    Each partition of the corpus runs :func:`fastcore.ot.knn` (WCD/RWMD-pruned
    exact search) in a worker; the per-partition top-k lists are merged exactly,
    ordered by (distance, corpus index), so the result equals
    ``fastcore.ot.knn(queries, corpus, k, metric)`` on one machine, ties included.

    Parameters
    ----------
    queries : sequence of array_like (n_i, d)
        Shipped once to each worker that needs them (they are small).
    corpus : sequence of array_like (m_j, d), or dask.bag.Bag of them
        A sequence is split into partitions of ``partition_size`` documents; a bag
        keeps its own partitions (documents are numbered in bag order, and each
        partition is read once).
    k : int, 1 <= k <= corpus size
    metric : {"wmd", "wrd"}
    prune : bool, default True
        Lower-bound pruning inside each partition (exact either way).
    client : distributed.Client, optional
        Run on this cluster; None uses Dask's threaded scheduler in this process.
    partition_size : int, default 1000
        Documents per partition when ``corpus`` is a sequence.
    n_threads : int or None, default 1
        Threads each task may use inside the kernel (None = all cores of the worker).
        With several Dask workers or threads, 1 avoids oversubscription.

    Returns
    -------
    indices : ndarray (len(queries), k), int64
    distances : ndarray (len(queries), k), float64

    Notes
    -----
    Partitions are searched independently: the k-th distance found in one partition is
    not shared with the others, which keeps tasks independent (any order, any worker,
    safe to retry after a worker dies) at the cost of some extra exact solves.
    """
    if isinstance(k, bool) or not hasattr(k, "__index__"):
        raise TypeError(f"knn: k must be an int, got {type(k).__name__}")
    k = int(k)
    if k < 1:
        raise ValueError(f"knn: k must be >= 1, got {k}")
    if metric not in ("wmd", "wrd"):
        raise ValueError(f"knn: metric must be 'wmd' or 'wrd', got {metric!r}")
    queries = [np.asarray(q) for q in queries]
    if not queries:
        raise ValueError("knn: queries is empty")
    if isinstance(corpus, db.Bag):
        parts = corpus.to_delayed()
    else:
        corpus = list(corpus)
        if isinstance(partition_size, bool) or not hasattr(partition_size, "__index__") or partition_size < 1:
            raise ValueError(f"knn: partition_size must be a positive int, got {partition_size!r}")
        if len(corpus) < k:
            raise ValueError(f"knn: k must be in [1, {len(corpus)}] (corpus size), got {k}")
        parts = [corpus[s:s + partition_size] for s in range(0, len(corpus), partition_size)]
    qd = dask.delayed(queries, traverse=False)
    tasks = [dask.delayed(_partition_knn, pure=True)(p, qd, k, metric, prune, n_threads) for p in parts]
    results = _compute(tasks, client)
    n_docs = sum(r[2] for r in results)
    if n_docs < k:
        raise ValueError(f"knn: k must be in [1, {n_docs}] (corpus size), got {k}")
    return _merge(results, k)


# ------------------------------------------------------------------ CRF on dask arrays
def _single_chunked(x, name, axes):
    """Rechunk so that only axis 0 is split (one block spans the others)."""
    if not isinstance(x, da.Array):
        x = np.asarray(x)
        if x.ndim != 1 + len(axes):
            raise ValueError(f"{name} must be a (B, T, K) array, got shape {x.shape}")
        x = da.from_array(x, chunks=(x.shape[0],) + tuple(x.shape[1:]))
    if x.ndim != 1 + len(axes):
        raise ValueError(f"{name} must be a (B, T, K) dask array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    chunks = {ax: -1 for ax in axes}
    return x.rechunk(chunks) if any(len(x.chunks[ax]) > 1 for ax in axes) else x


def _aligned(x, emissions, name):
    if x is None:
        return None
    if not isinstance(x, da.Array):
        x = np.asarray(x)
        if x.shape[:1] != emissions.shape[:1]:
            raise ValueError(f"{name} must have {emissions.shape[0]} rows (the batch size), got shape {x.shape}")
        return da.from_array(x, chunks=(emissions.chunks[0],) + tuple((s,) for s in x.shape[1:]))
    if x.shape[:1] != emissions.shape[:1]:
        raise ValueError(f"{name} must have {emissions.shape[0]} rows (the batch size), got shape {x.shape}")
    return x.rechunk((emissions.chunks[0],) + tuple((s,) for s in x.shape[1:]))


def _blocks(emissions, mask, lengths):
    emissions = _single_chunked(emissions, "emissions", (1, 2))
    mask = _aligned(mask, emissions, "mask")
    lengths = _aligned(lengths, emissions, "lengths")
    em_blocks = emissions.to_delayed().ravel()
    m_blocks = mask.to_delayed().ravel() if mask is not None else [None] * len(em_blocks)
    l_blocks = lengths.to_delayed().ravel() if lengths is not None else [None] * len(em_blocks)
    return emissions, list(zip(em_blocks, m_blocks, l_blocks))


def _probe(fn, emissions, *args, **kwargs):
    """``fn`` (a fastcore.crf function) on one token of one sequence of the emissions' dtype:
    the parameters are checked here, by the same code as the tasks', so errors come at the
    call and not at compute time; returns the result (its dtypes are the tasks')."""
    em = np.zeros((1, 1, emissions.shape[2]), dtype=emissions.dtype)
    return fn(em, *args, n_threads=1, **kwargs)


def _viterbi_block(em, mask, lengths, transitions, start, end, top_k):
    return _crf.viterbi(em, transitions, start, end, mask=mask, lengths=lengths, top_k=top_k, n_threads=1)


def viterbi(emissions, transitions, start=None, end=None, *, mask=None, lengths=None, top_k=1):
    """:func:`fastcore.crf.viterbi` over a dask array of emissions chunked along the batch.

    Parameters
    ----------
    emissions : dask.array.Array or ndarray (B, T, K)
        Chunked along axis 0 only (other axes are rechunked to one block).
    transitions, start, end : ndarray
        Small parameters, sent with every task.
    mask : array (B, T) of bool, optional; lengths : array (B,), optional
        Dask or NumPy; rechunked to match the emissions' batch chunks.
    top_k : int, default 1

    Returns
    -------
    paths : dask.array.Array of int64, (B, T) or (B, top_k, T)
    scores : dask.array.Array, (B,) or (B, top_k)
        Both lazy; computing them together runs each block once.
    """
    emissions, blocks = _blocks(emissions, mask, lengths)
    probe = _probe(_crf.viterbi, emissions, transitions, start, end, top_k=top_k)
    B, T, K = emissions.shape
    transitions = np.asarray(transitions)
    path_parts, score_parts = [], []
    for (em, m, ln), nb in zip(blocks, emissions.chunks[0]):
        res = dask.delayed(_viterbi_block, nout=2)(em, m, ln, transitions, start, end, top_k)
        pshape = (nb, T) if top_k == 1 else (nb, top_k, T)
        sshape = (nb,) if top_k == 1 else (nb, top_k)
        path_parts.append(da.from_delayed(res[0], pshape, dtype=np.int64))
        score_parts.append(da.from_delayed(res[1], sshape, dtype=probe[1].dtype))
    return da.concatenate(path_parts, axis=0), da.concatenate(score_parts, axis=0)


def _ll_block(em, mask, lengths, tags, transitions, start, end):
    return _crf.crf_log_likelihood(em, tags, transitions, start, end, mask=mask, lengths=lengths, n_threads=1)


def crf_log_likelihood(emissions, tags, transitions, start=None, end=None, *, mask=None, lengths=None):
    """:func:`fastcore.crf.crf_log_likelihood` (per sequence, shape (B,)) over a dask array."""
    emissions, blocks = _blocks(emissions, mask, lengths)
    probe = _probe(_crf.crf_log_likelihood, emissions, np.zeros((1, 1), dtype=np.int64), transitions, start, end)
    tags = _aligned(tags, emissions, "tags")
    tag_blocks = tags.to_delayed().ravel()
    transitions = np.asarray(transitions)
    parts = []
    for (em, m, ln), tg, nb in zip(blocks, tag_blocks, emissions.chunks[0]):
        res = dask.delayed(_ll_block)(em, m, ln, tg, transitions, start, end)
        parts.append(da.from_delayed(res, (nb,), dtype=probe.dtype))
    return da.concatenate(parts, axis=0)
