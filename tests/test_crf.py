"""fastcore.crf against brute-force enumeration, finite differences, NumPy log-space
references and pytorch-crf."""
import itertools
import threading

import numpy as np
import pytest

from fastcore import crf
from _helpers import FLOAT_DTYPES, needs, tol, variants


# ---------------------------------------------------------------- references
def _lse(v):
    v = np.asarray(v, dtype=np.float64)
    fin = v[np.isfinite(v)]
    if fin.size == 0:
        return -np.inf
    m = fin.max()
    return m + np.log(np.exp(fin - m).sum())


def path_score(em, tr, st, en, pos, y):
    """Score of labels y at kept positions pos (float64)."""
    if len(pos) == 0:
        return 0.0
    s = (0.0 if st is None else st[y[0]]) + sum(float(em[p, k]) for p, k in zip(pos, y))
    s += sum(float(tr[y[i - 1], y[i]]) for i in range(1, len(y)))
    return s + (0.0 if en is None else en[y[-1]])


def brute(em, tr, st=None, en=None, keep=None):
    """Enumerate all label paths of one sequence (T, K).

    Returns dict: pos, paths (list of tuples), scores, logz, node (T,K), pair (T,K,K)."""
    em = np.asarray(em, np.float64)
    tr = np.asarray(tr, np.float64)
    st = None if st is None else np.asarray(st, np.float64)
    en = None if en is None else np.asarray(en, np.float64)
    T, K = em.shape
    keep = np.ones(T, bool) if keep is None else np.asarray(keep, bool)
    pos = np.flatnonzero(keep)
    paths = list(itertools.product(range(K), repeat=len(pos)))
    scores = np.array([path_score(em, tr, st, en, pos, y) for y in paths])
    logz = _lse(scores) if len(pos) else 0.0
    node = np.zeros((T, K))
    pair = np.zeros((T, K, K))
    if len(pos) and np.isfinite(logz):
        p = np.exp(scores - logz)
        for y, pr in zip(paths, p):
            for k, t in enumerate(pos):
                node[t, y[k]] += pr
                if k:
                    pair[t, y[k - 1], y[k]] += pr
    return dict(pos=pos, paths=paths, scores=scores, logz=logz, node=node, pair=pair)


def random_problem(rng, B, T, K, dtype=np.float64, constraints=True, mask=True, start_end=True):
    em = rng.standard_normal((B, T, K)) * 2
    tr = rng.standard_normal((K, K))
    st = rng.standard_normal(K) if start_end else None
    en = rng.standard_normal(K) if start_end else None
    if constraints and K > 1:
        tr[rng.random((K, K)) < 0.25] = -np.inf
        if start_end:
            st[rng.integers(K)] = -np.inf
            en[rng.integers(K)] = -np.inf
    m = None
    if mask:
        m = rng.random((B, T)) < 0.7
        m[0] = True
        if B > 2:
            m[2] = False  # an empty sequence
        if B > 1 and T > 1:
            m[1, 0] = False  # masked first token
    cast = lambda a: None if a is None else a.astype(dtype)
    return cast(em), cast(tr), cast(st), cast(en), m


def assert_close(actual, expected, dtype, scale=1.0):
    rtol, atol = tol(dtype)
    if np.dtype(dtype) == np.float32:
        rtol, atol = 1e-4, 1e-4 * scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * max(scale, 1.0))


def logspace_logz(em, tr, st, en, keep):
    """Plain float64 log-space forward of one sequence (reference for long/extreme inputs)."""
    pos = np.flatnonzero(keep)
    if len(pos) == 0:
        return 0.0
    a = em[pos[0]].astype(np.float64) + (0 if st is None else st)
    for p in pos[1:]:
        v = a[:, None] + tr
        m = np.max(v, axis=0)
        m = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore"):  # log 0 = -inf: a label no path reaches
            a = m + np.log(np.exp(v - m).sum(0)) + em[p]
    return _lse(a + (0 if en is None else en))


# ---------------------------------------------------------------- log Z / score / likelihood
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(4, 5, 3), (3, 4, 4), (3, 1, 2), (3, 5, 1), (4, 3, 3)])
@pytest.mark.parametrize("constraints", [False, True])
def test_partition_score_likelihood_brute_force(rng, dtype, shape, constraints):
    B, T, K = shape
    em, tr, st, en, m = random_problem(rng, B, T, K, dtype, constraints=constraints)
    tags = rng.integers(0, K, (B, T))
    logz = crf.crf_log_partition(em, tr, st, en, mask=m)
    score = crf.crf_score(em, tags, tr, st, en, mask=m)
    ll = crf.crf_log_likelihood(em, tags, tr, st, en, mask=m)
    assert logz.dtype == dtype and score.dtype == dtype and ll.dtype == dtype
    for b in range(B):
        ref = brute(em[b], tr, st, en, m[b])
        y = tags[b, ref["pos"]]
        s_ref = path_score(em[b].astype(np.float64), tr.astype(np.float64), st.astype(np.float64),
                           en.astype(np.float64), ref["pos"], y)
        assert_close(logz[b], ref["logz"], dtype)
        if np.isfinite(s_ref):
            assert_close(score[b], s_ref, dtype)
            assert_close(ll[b], s_ref - ref["logz"], dtype)
        else:
            assert score[b] == -np.inf and ll[b] == -np.inf
        assert logz[b] >= (ref["scores"].max() if len(ref["pos"]) else 0.0) - 1e-4
    assert logz[2] == 0 and score[2] == 0 and ll[2] == 0  # empty sequence


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_no_start_end_and_lengths(rng, dtype):
    em, tr, _, _, _ = random_problem(rng, 4, 5, 3, dtype, constraints=False, start_end=False, mask=False)
    lengths = np.array([5, 3, 0, 1])
    m = np.arange(5)[None] < lengths[:, None]
    a = crf.crf_log_partition(em, tr, lengths=lengths)
    b = crf.crf_log_partition(em, tr, mask=m)
    np.testing.assert_array_equal(a, b)
    for i in range(4):
        assert_close(a[i], brute(em[i], tr, None, None, m[i])["logz"], dtype)
    # integer 0/1 mask accepted, equal to bool mask
    np.testing.assert_array_equal(crf.crf_log_partition(em, tr, mask=m.astype(np.int64)), b)


def test_masked_positions_are_removed_not_carried(rng):
    """Masking position t equals deleting it from the sequence."""
    em, tr, st, en, _ = random_problem(rng, 1, 6, 4, constraints=False, mask=False)
    keep = np.array([[False, True, True, False, True, True]])
    tags = rng.integers(0, 4, (1, 6))
    sub = em[:, keep[0]]
    np.testing.assert_allclose(crf.crf_log_partition(em, tr, st, en, mask=keep),
                               crf.crf_log_partition(sub, tr, st, en), rtol=1e-13)
    np.testing.assert_allclose(crf.crf_log_likelihood(em, tags, tr, st, en, mask=keep),
                               crf.crf_log_likelihood(sub, tags[:, keep[0]], tr, st, en), rtol=1e-13)


def test_no_allowed_path(rng):
    em = rng.standard_normal((2, 3, 2))
    tr = np.full((2, 2), -np.inf)
    lz = crf.crf_log_partition(em, tr)
    assert np.all(lz == -np.inf)
    ll = crf.crf_log_likelihood(em, np.zeros((2, 3), int), tr)
    assert np.all(ll == -np.inf)
    node = crf.crf_marginals(em, tr)
    assert np.all(node == 0)
    paths, scores = crf.viterbi(em, tr)
    assert np.all(paths == -1) and np.all(scores == -np.inf)
    # one position: transitions do not matter
    assert np.isfinite(crf.crf_log_partition(em[:, :1], tr)).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [5, 12, 20])
def test_extreme_scores_use_exact_fallback(rng, dtype, K):
    """Score ranges that underflow the exp-space recursion, and constraints leaving a thin path."""
    big = 300.0 if dtype == np.float32 else 3000.0
    B, T = 4, 40
    em = (rng.standard_normal((B, T, K)) * big).astype(dtype)
    tr = (rng.standard_normal((K, K)) * big).astype(dtype)
    tr[0, :] = -np.inf
    tr[0, 1] = 0
    st = (rng.standard_normal(K) * big).astype(dtype)
    en = (rng.standard_normal(K) * big).astype(dtype)
    m = rng.random((B, T)) < 0.8
    lz = crf.crf_log_partition(em, tr, st, en, mask=m)
    for b in range(B):
        ref = logspace_logz(em[b].astype(np.float64), tr.astype(np.float64), st.astype(np.float64),
                            en.astype(np.float64), m[b])
        np.testing.assert_allclose(lz[b], ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    node = crf.crf_marginals(em, tr, st, en, mask=m)
    assert np.isfinite(node).all()
    # marginals exp(la + lb - log Z) of log-space values of size |log Z|: absolute error ~ eps |log Z|
    tol64 = 64 * np.finfo(np.float64).eps * max(1.0, float(np.abs(lz).max()))
    np.testing.assert_allclose(node.sum(-1)[m], 1.0, rtol=1e-4 if dtype == np.float32 else tol64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [1, 2, 7, 8, 9, 16, 17, 31, 32, 33, 64, 65])
def test_log_partition_every_row_width(rng, dtype, K):
    """log Z against the float64 log-space reference for label counts on both sides of every
    kernel switch (alphas held in 2 or 4 registers, the stored-table forward above), with
    holes in the masks, a masked first token, constraints and a length-1 sequence; and
    equal to the log-likelihood the forward-backward (gradient) kernel computes."""
    B, T = 6, 23
    em, tr, st, en, m = random_problem(rng, B, T, K, dtype)
    m[0, 0] = False
    m[1] = False
    m[1, 7] = True
    tags = rng.integers(0, K, (B, T))
    lz = crf.crf_log_partition(em, tr, st, en, mask=m)
    for b in range(B):
        ref = logspace_logz(em[b].astype(np.float64), tr.astype(np.float64), st.astype(np.float64),
                            en.astype(np.float64), m[b])
        assert_close(lz[b], ref, dtype, scale=max(1.0, abs(ref)))
    ll = crf.crf_log_likelihood(em, tags, tr, st, en, mask=m)
    loss, _ = crf.crf_nll_grad(em, tags, tr, st, en, mask=m, reduction="none")
    ok = np.isfinite(ll)
    np.testing.assert_array_equal(np.isfinite(loss), ok)
    np.testing.assert_allclose(-loss[ok], ll[ok], rtol=1e-5 if dtype == np.float32 else 1e-12)



def logspace_fb(em, tr, st, en, keep):
    """Plain float64 log-space forward-backward of one sequence: log Z, node marginals (T, K)
    and pairwise marginals (T, K, K, at the later position of each kept pair), 0 where masked
    and everywhere when no path is allowed."""
    from scipy.special import logsumexp

    T, K = em.shape
    pos = np.flatnonzero(keep)
    node, pair = np.zeros((T, K)), np.zeros((T, K, K))
    if len(pos) == 0:
        return 0.0, node, pair
    st = np.zeros(K) if st is None else st
    en = np.zeros(K) if en is None else en
    n = len(pos)
    la, lb = np.empty((n, K)), np.empty((n, K))
    with np.errstate(divide="ignore"):  # log 0 = -inf: a label no path reaches
        la[0] = st + em[pos[0]]
        for k in range(1, n):
            la[k] = logsumexp(la[k - 1][:, None] + tr, axis=0) + em[pos[k]]
        lb[n - 1] = en
        for k in range(n - 2, -1, -1):
            lb[k] = logsumexp(tr + (em[pos[k + 1]] + lb[k + 1])[None, :], axis=1)
        logz = logsumexp(la[n - 1] + en)
    if logz == -np.inf:
        return logz, node, pair
    node[pos] = np.exp(la + lb - logz)
    for k in range(1, n):
        pair[pos[k]] = np.exp(la[k - 1][:, None] + tr + (em[pos[k]] + lb[k])[None, :] - logz)
    return logz, node, pair


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [1, 2, 7, 8, 9, 16, 17, 31, 32, 33, 64, 65])
def test_forward_backward_every_row_width(rng, dtype, K):
    """Gradients and node and pairwise marginals against the float64 log-space
    forward-backward, for label counts on both sides of every kernel switch (rows held in 2, 4
    or 8 registers, the stored-table kernel beyond), with holes in the masks, a masked first
    token, an empty and a length-1 sequence, constraints, sequences longer than the 64-step
    blocks of the transition counts, and reduction "mean" (the kernel scales the emission
    gradient rows by 1 / B)."""
    B, T = 5, 150
    em, tr, st, en, m = random_problem(rng, B, T, K, dtype)
    m[3] = False
    m[3, 40] = True
    m[4] = True
    paths, _ = crf.viterbi(em, tr, st, en, mask=m)
    tags = np.where(paths >= 0, paths, 0)  # gold tags on allowed paths where there is one
    _, g = crf.crf_nll_grad(em, tags, tr, st, en, mask=m, reduction="mean")
    node, pair = crf.crf_marginals(em, tr, st, en, mask=m, pairwise=True)
    f64 = lambda a: a.astype(np.float64)
    rtol, atol = (1e-4, 1e-4) if dtype == np.float32 else (1e-9, 1e-11)  # sums of 150 steps
    close = lambda a, r, scale=1.0: np.testing.assert_allclose(a, r, rtol=rtol, atol=atol * scale)
    ref = {"emissions": np.zeros((B, T, K)), "transitions": np.zeros((K, K)), "start": np.zeros(K),
           "end": np.zeros(K)}
    for b in range(B):
        _, nb, pb = logspace_fb(f64(em[b]), f64(tr), f64(st), f64(en), m[b])
        close(node[b], nb)
        close(pair[b], pb)
        pos = np.flatnonzero(m[b])
        if len(pos) == 0:
            continue
        y = tags[b, pos]
        hot = np.zeros((T, K))
        hot[pos, y] = 1.0
        ref["emissions"][b] = (nb - hot) / B
        gold = np.zeros((K, K))
        np.add.at(gold, (y[:-1], y[1:]), 1.0)
        ref["transitions"] += (pb.sum(0) - gold) / B
        ref["start"] += (nb[pos[0]] - np.eye(K)[y[0]]) / B
        ref["end"] += (nb[pos[-1]] - np.eye(K)[y[-1]]) / B
    for name, r in ref.items():
        assert g[name].dtype == dtype
        close(g[name], r, scale=max(1.0, float(np.abs(r).max())))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [3, 9, 20])
def test_forward_backward_kernel_outputs_alone(rng, dtype, K):
    """The forward-backward kernel asked for pairwise marginals without node marginals, or
    for log Z alone (no output rows at all), gives the same values as the public calls."""
    from fastcore import _crf
    from fastcore.crf import _prepare

    em, tr, st, en, m = random_problem(rng, 4, 30, K, dtype)
    e2, t2, s2, n2, m2, _ = _prepare(em, tr, st, en, m, None)
    _, pair = crf.crf_marginals(em, tr, st, en, mask=m, pairwise=True)
    out = _crf.forward_backward(e2, t2, s2, n2, m2, None, None, False, True, False, 1)
    assert "node" not in out
    np.testing.assert_array_equal(out["pair"], pair)
    out = _crf.forward_backward(e2, t2, s2, n2, m2, None, None, False, False, False, 1)
    np.testing.assert_allclose(out["logz"], crf.crf_log_partition(em, tr, st, en, mask=m),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)

def test_mask_runs(rng):
    """Masks whose kept positions the kernels find 8 at a time: leading runs of kept
    positions (whole and partial words of 8), runs of 8 and more masked positions, mask
    bytes other than 0/1, and a lengths mask; log Z against the log-space reference, the
    MEMM log-likelihood against its loop reference."""
    T, K = 45, 4
    rows = [[1] * 45, [1] * 16 + [0] * 29, [1] * 17 + [0] * 9 + [1, 0, 1] + [0] * 8 + [1] * 8,
            [0] * 8 + [1] * 37, [1] * 7 + [0] * 30 + [1] * 8, [0] * 45, [1, 0] * 22 + [1],
            [1] * 24 + [0] * 16 + [1] * 5]
    m = np.array(rows, dtype=bool)
    B = len(rows)
    em = rng.standard_normal((B, T, K))
    tr = rng.standard_normal((K, K))
    tags = rng.integers(0, K, (B, T))
    lz = crf.crf_log_partition(em, tr, mask=m)
    ref = [logspace_logz(em[b], tr, None, None, m[b]) for b in range(B)]
    np.testing.assert_allclose(lz, ref, rtol=1e-12)
    ll = crf.memm_log_likelihood(em, tags, tr, mask=m, bidirectional=True)
    np.testing.assert_allclose(ll, [memm_ref(em[b], tr, m[b], tags[b], True) for b in range(B)], rtol=1e-12)
    # the C kernel reads any nonzero mask byte as kept: bytes 2 and 255 through a uint8 view
    raw = m.view(np.uint8).copy()
    raw[2, 16] = 2  # (kept positions)
    raw[3, 20] = 255
    lz2 = np.empty(B)
    from fastcore import _crf
    for b in range(B):
        lz2[b] = _crf.forward(em[b:b + 1], tr, None, None, raw[b:b + 1].view(bool), None, 1, 0, True)[0]
    np.testing.assert_allclose(lz2, ref, rtol=1e-12)
    np.testing.assert_allclose(crf.crf_log_partition(em, tr, lengths=m.sum(1)),
                               [logspace_logz(em[b], tr, None, None, np.arange(T) < m[b].sum())
                                for b in range(B)], rtol=1e-12)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [4, 9])
def test_memm_grad_mask_runs(rng, dtype, K):
    """The MEMM emission gradient under masks with holes of every kind (the kernel zeroes the
    masked rows run by run): exactly 0 at masked positions, and at kept positions the
    gradient of the compacted sequence (no mask)."""
    T = 45
    rows = [[1] * 45, [1] * 16 + [0] * 29, [1] * 17 + [0] * 9 + [1, 0, 1] + [0] * 8 + [1] * 8,
            [0] * 8 + [1] * 37, [1] * 7 + [0] * 30 + [1] * 8, [0] * 45, [1, 0] * 22 + [1],
            [1] * 24 + [0] * 16 + [1] * 5, [0] * 3 + [1] * 20 + [0] * 22, [1] * 9 + [0] + [1] * 35]
    m = np.array(rows, dtype=bool)
    B = len(rows)
    em = rng.standard_normal((B, T, K)).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    tags = rng.integers(0, K, (B, T))
    junk = np.full((B, T, K), 7, dtype)  # freed: the output's memory is likely to hold it
    del junk
    _, g = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=True, reduction="none")
    assert not g["emissions"][~m].any()
    for b in range(B):
        n = int(m[b].sum())
        if n == 0:
            continue
        _, gb = crf.memm_nll_grad(em[b][m[b]][None], tags[b][m[b]][None], tr, bidirectional=True,
                                  reduction="none")
        np.testing.assert_allclose(g["emissions"][b][m[b]], gb["emissions"][0],
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_long_sequence_no_underflow(rng, dtype):
    B, T, K = 2, 3000, 6
    em = (rng.standard_normal((B, T, K)) * 3).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    tr[1, 2] = -np.inf
    lz = crf.crf_log_partition(em, tr)
    ref = [logspace_logz(em[b].astype(np.float64), tr.astype(np.float64), None, None, np.ones(T, bool))
           for b in range(B)]
    np.testing.assert_allclose(lz, ref, rtol=2e-5 if dtype == np.float32 else 1e-12)


def test_float32_close_to_float64(rng):
    em, tr, st, en, m = random_problem(rng, 8, 30, 7)
    tags = rng.integers(0, 7, (8, 30))
    for fn in (lambda e, t, s, n: crf.crf_log_partition(e, t, s, n, mask=m),
               lambda e, t, s, n: crf.crf_marginals(e, t, s, n, mask=m),
               lambda e, t, s, n: crf.crf_nll_grad(e, tags, t, s, n, mask=m)[1]["transitions"]):
        r64 = fn(em, tr, st, en)
        r32 = fn(*(a.astype(np.float32) for a in (em, tr, st, en)))
        np.testing.assert_allclose(r32, r64, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- marginals
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(4, 5, 3), (3, 4, 4), (3, 1, 2)])
def test_marginals_brute_force(rng, dtype, shape):
    B, T, K = shape
    em, tr, st, en, m = random_problem(rng, B, T, K, dtype)
    node, pair = crf.crf_marginals(em, tr, st, en, mask=m, pairwise=True)
    only_node = crf.crf_marginals(em, tr, st, en, mask=m)
    np.testing.assert_array_equal(node, only_node)
    assert node.dtype == dtype and pair.shape == (B, T, K, K)
    for b in range(B):
        ref = brute(em[b], tr, st, en, m[b])
        assert_close(node[b], ref["node"], dtype)
        assert_close(pair[b], ref["pair"], dtype)
    feasible = np.isfinite(crf.crf_log_partition(em, tr, st, en, mask=m))
    np.testing.assert_allclose(node.sum(-1), (m & feasible[:, None]).astype(float), atol=1e-5)


# ---------------------------------------------------------------- gradients
def _nll_total(em, tags, tr, st, en, m, reduction):
    return float(np.sum(crf.crf_nll_grad(em, tags, tr, st, en, mask=m, reduction=reduction)[0]))


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        if not np.isfinite(x[i]):
            continue
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


@pytest.mark.parametrize("reduction", ["sum", "mean", "token_mean", "none"])
def test_nll_grad_finite_differences(rng, reduction):
    B, T, K = 4, 5, 3
    em, tr, st, en, m = random_problem(rng, B, T, K)
    tags = np.zeros((B, T), int)
    # gold tags along allowed paths (the brute force best path), so the loss is finite
    for b in range(B):
        ref = brute(em[b], tr, st, en, m[b])
        if len(ref["pos"]):
            tags[b, ref["pos"]] = ref["paths"][int(np.argmax(ref["scores"]))]
    loss, g = crf.crf_nll_grad(em, tags, tr, st, en, mask=m, reduction=reduction)
    assert np.all(np.isfinite(loss))
    if reduction == "none":
        assert loss.shape == (B,)
        ll = crf.crf_log_likelihood(em, tags, tr, st, en, mask=m)
        np.testing.assert_allclose(loss, -ll, rtol=1e-12)
    f = lambda **kw: _nll_total(kw.get("em", em), tags, kw.get("tr", tr), kw.get("st", st), kw.get("en", en),
                                m, reduction)
    np.testing.assert_allclose(g["emissions"], _fd(lambda x: f(em=x), em), atol=1e-6)
    np.testing.assert_allclose(g["transitions"], _fd(lambda x: f(tr=x), tr), atol=1e-6)
    np.testing.assert_allclose(g["start"], _fd(lambda x: f(st=x), st), atol=1e-6)
    np.testing.assert_allclose(g["end"], _fd(lambda x: f(en=x), en), atol=1e-6)
    assert np.all(g["emissions"][~m] == 0)
    assert np.all(g["transitions"][np.isneginf(tr)] == 0)


def test_nll_grad_is_marginals_minus_counts(rng):
    em, tr, st, en, m = random_problem(rng, 3, 6, 4, constraints=False)
    tags = rng.integers(0, 4, (3, 6))
    _, g = crf.crf_nll_grad(em, tags, tr, st, en, mask=m)
    node = crf.crf_marginals(em, tr, st, en, mask=m)
    onehot = np.eye(4)[tags] * m[..., None]
    np.testing.assert_allclose(g["emissions"], node - onehot, atol=1e-12)
    _, g2 = crf.crf_nll_grad(em, tags, tr, mask=m)
    assert g2["start"] is None and g2["end"] is None


def test_nll_grad_float32_extreme_falls_back(rng):
    em = (rng.standard_normal((3, 20, 4)) * 200).astype(np.float32)
    tr = (rng.standard_normal((4, 4)) * 200).astype(np.float32)
    tags = rng.integers(0, 4, (3, 20))
    _, g32 = crf.crf_nll_grad(em, tags, tr)
    _, g64 = crf.crf_nll_grad(em.astype(np.float64), tags, tr.astype(np.float64))
    for k in ("emissions", "transitions"):
        assert np.isfinite(g32[k]).all()
        np.testing.assert_allclose(g32[k], g64[k], atol=1e-3)


@needs("torchcrf")
@pytest.mark.parametrize("reduction", ["sum", "mean", "token_mean", "none"])
def test_against_pytorch_crf(rng, reduction):
    import torch
    from torchcrf import CRF

    B, T, K = 5, 7, 4
    em = rng.standard_normal((B, T, K))
    lengths = np.array([7, 5, 1, 3, 6])
    m = np.arange(T)[None] < lengths[:, None]  # pytorch-crf needs the first token unmasked
    tags = rng.integers(0, K, (B, T))
    model = CRF(K, batch_first=True).double()
    with torch.no_grad():
        model.transitions.copy_(torch.from_numpy(rng.standard_normal((K, K))))
        model.start_transitions.copy_(torch.from_numpy(rng.standard_normal(K)))
        model.end_transitions.copy_(torch.from_numpy(rng.standard_normal(K)))
    e_t = torch.tensor(em, requires_grad=True)
    ll_t = model(e_t, torch.from_numpy(tags), mask=torch.from_numpy(m), reduction=reduction)
    (-ll_t).sum().backward()
    tr = model.transitions.detach().numpy()
    st = model.start_transitions.detach().numpy()
    en = model.end_transitions.detach().numpy()
    loss, g = crf.crf_nll_grad(em, tags, tr, st, en, mask=m, reduction=reduction)
    np.testing.assert_allclose(loss, -ll_t.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(g["emissions"], e_t.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(g["transitions"], model.transitions.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(g["start"], model.start_transitions.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(g["end"], model.end_transitions.grad.numpy(), atol=1e-10)
    paths, _ = crf.viterbi(em, tr, st, en, mask=m)
    ref = model.decode(torch.from_numpy(em), mask=torch.from_numpy(m))
    for b in range(B):
        assert list(paths[b, :lengths[b]]) == ref[b]


# ---------------------------------------------------------------- Viterbi
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(5, 5, 3), (4, 4, 2), (3, 3, 3), (3, 2, 1), (4, 1, 3)])
@pytest.mark.parametrize("top_k", [1, 3, 7])
def test_viterbi_brute_force(rng, dtype, shape, top_k):
    B, T, K = shape
    em, tr, st, en, m = random_problem(rng, B, T, K, dtype)
    paths, scores = crf.viterbi(em, tr, st, en, mask=m, top_k=top_k)
    if top_k == 1:
        assert paths.shape == (B, T) and scores.shape == (B,)
        paths, scores = paths[:, None], scores[:, None]
    else:
        assert paths.shape == (B, top_k, T) and scores.shape == (B, top_k)
    assert paths.dtype == np.int64 and scores.dtype == dtype
    for b in range(B):
        ref = brute(em[b], tr, st, en, m[b])
        order = np.argsort(-ref["scores"], kind="stable")
        ref_scores = ref["scores"][order]
        ref_scores = ref_scores[np.isfinite(ref_scores)][:top_k]
        n = len(ref_scores)
        if len(ref["pos"]) == 0:
            n = 1  # the empty path
            ref_scores = np.array([0.0])
        assert_close(scores[b, :n], ref_scores, dtype)
        assert np.all(scores[b, n:] == -np.inf) and np.all(paths[b, n:] == -1)
        seen = set()
        for q in range(n):
            p = paths[b, q]
            assert np.all(p[~m[b]] == -1)
            y = tuple(p[ref["pos"]])
            assert y not in seen  # distinct
            seen.add(y)
            s = path_score(em[b].astype(np.float64), tr.astype(np.float64), st.astype(np.float64),
                           en.astype(np.float64), ref["pos"], y)
            assert_close(scores[b, q], s, dtype)


def test_viterbi_ties_lowest_index():
    em = np.zeros((2, 4, 3))
    tr = np.zeros((3, 3))
    paths, scores = crf.viterbi(em, tr)
    np.testing.assert_array_equal(paths, 0)
    np.testing.assert_array_equal(scores, 0)
    tr[0, :] = -np.inf  # label 0 cannot be followed: the first labels become 1, the last 0
    paths, _ = crf.viterbi(em, tr)
    np.testing.assert_array_equal(paths[0], [1, 1, 1, 0])
    # n-best of an all-tie problem: distinct paths, all score 0
    pk, sk = crf.viterbi(em[:1], np.zeros((3, 3)), top_k=5)
    assert len({tuple(p) for p in pk[0]}) == 5 and np.all(sk == 0)


def test_viterbi_fewer_paths_than_k():
    em = np.zeros((1, 2, 2))
    paths, scores = crf.viterbi(em, np.zeros((2, 2)), top_k=6)
    assert np.all(np.isfinite(scores[0, :4])) and np.all(scores[0, 4:] == -np.inf)
    assert np.all(paths[0, 4:] == -1)
    assert {tuple(p) for p in paths[0, :4]} == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize("K", [5, 12, 19, 40])
def test_viterbi_top1_kernels_match_nbest(rng, K):
    """Both top-1 kernels (backpointers for small K, max-only steps with the argmax recovered
    in the backtrack for larger K, the switch depends on the dtype) against the n-best kernel."""
    em, tr, st, en, m = random_problem(rng, 6, 30, K)
    p1, s1 = crf.viterbi(em, tr, st, en, mask=m)
    pk, sk = crf.viterbi(em, tr, st, en, mask=m, top_k=2)
    np.testing.assert_array_equal(p1, pk[:, 0])
    np.testing.assert_allclose(s1, sk[:, 0], rtol=1e-12)
    assert np.all(sk[:, 0] >= sk[:, 1])
    # float32 decoding (exactly representable integer scores: no rounding ties)
    em32, tr32 = np.round(em * 4).astype(np.float32), np.round(tr * 4).astype(np.float32)
    tr32[np.isneginf(tr)] = -np.inf
    p32, s32 = crf.viterbi(em32, tr32, mask=m)
    _, sk64 = crf.viterbi(em32.astype(np.float64), tr32.astype(np.float64), mask=m)
    np.testing.assert_allclose(s32, sk64, rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [3, 6, 9, 16, 20, 40])
def test_viterbi_ties_lowest_index_all_kernels(dtype, K):
    em = np.zeros((2, 5, K), dtype)
    tr = np.zeros((K, K), dtype)
    tr[0, :] = -np.inf
    paths, scores = crf.viterbi(em, tr)
    np.testing.assert_array_equal(paths, [[1, 1, 1, 1, 0]] * 2)
    np.testing.assert_array_equal(scores, 0)
    tr[:, 1] = -np.inf  # nothing may enter label 1: the lowest allowed is 2, then 0 last
    paths, _ = crf.viterbi(em, tr)
    np.testing.assert_array_equal(paths, [[1, 2, 2, 2, 0]] * 2)


# ---------------------------------------------------------------- constraints
def _valid(scheme, labels, seq):
    """Direct chunk-validity check of a label sequence (independent of allowed_transitions)."""
    parse = []
    for lab in seq:
        if lab == "O":
            parse.append(("O", None))
        else:
            p, t = (lab[0], lab[2:] if len(lab) > 1 else None)
            p = {"U": "S", "L": "E", "M": "I"}.get(p, p)
            parse.append((p, t))
    open_t = None
    for p, t in parse:
        if scheme == "BIO":
            if p == "I" and open_t != t:
                return False
            open_t = t if p in ("B", "I") else None
        else:
            if open_t is not None:
                if p not in ("I", "E") or t != open_t[0]:
                    return False
                open_t = (t,) if p == "I" else None
            else:
                if p in ("I", "E"):
                    return False
                open_t = (t,) if p == "B" else None
    return scheme == "BIO" or open_t is None


@pytest.mark.parametrize("scheme,labels", [
    ("BIO", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    ("BIOES", ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]),
    ("BIOUL", ["O", "B-X", "I-X", "L-X", "U-X"]),
    ("BMES", ["S", "B", "M", "E"]),
])
def test_allowed_transitions_match_validity(scheme, labels):
    allowed, st, en = crf.allowed_transitions(scheme, labels)
    K = len(labels)
    assert allowed.shape == (K, K) and allowed.dtype == bool
    t, s, e = crf.constraint_scores(allowed, st, en)
    sch = "BIOES" if scheme in ("BIOUL", "BMES", "BIOES") else "BIO"
    for n in (1, 2, 3):
        for y in itertools.product(range(K), repeat=n):
            ok_c = st[y[0]] and en[y[-1]] and all(allowed[y[i - 1], y[i]] for i in range(1, n))
            assert ok_c == _valid(sch, labels, [labels[i] for i in y]), [labels[i] for i in y]
    # decoding under the constraints only yields valid sequences
    rng = np.random.default_rng(5)
    em = rng.standard_normal((20, 6, K)) * 3
    paths, scores = crf.viterbi(em, t, s, e)
    assert np.isfinite(scores).all()
    for p in paths:
        assert _valid(sch, labels, [labels[i] for i in p])
    assert np.isfinite(crf.crf_log_partition(em, t, s, e)).all()


def test_allowed_transitions_bad_input():
    with pytest.raises(ValueError, match="scheme"):
        crf.allowed_transitions("XYZ", ["O"])
    with pytest.raises(ValueError, match="prefix"):
        crf.allowed_transitions("BIO", ["O", "E-PER"])
    with pytest.raises(ValueError, match="empty"):
        crf.allowed_transitions("BIO", [])


# ---------------------------------------------------------------- MEMM
def memm_ref(em, tr, keep, tags, bidir):
    """Direct per-step softmax log-likelihood (float64)."""
    pos = np.flatnonzero(keep)
    y = tags[pos]
    e = em[pos].astype(np.float64)
    tr = tr.astype(np.float64)
    n = len(pos)
    if n == 0:
        return 0.0

    def lsm(v, i):
        return v[i] - _lse(v) if np.isfinite(_lse(v)) else -np.inf

    f = lsm(e[0], y[0]) + sum(lsm(tr[y[k - 1]] + e[k], y[k]) for k in range(1, n))
    if not bidir:
        return f
    b = lsm(e[n - 1], y[n - 1]) + sum(lsm(tr[:, y[k + 1]] + e[k], y[k]) for k in range(n - 1))
    return 0.5 * (f + b)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("bidir", [False, True])
def test_memm_log_likelihood(rng, dtype, bidir):
    B, T, K = 5, 6, 4
    em, tr, _, _, m = random_problem(rng, B, T, K, dtype, constraints=False)
    tags = rng.integers(0, K, (B, T))
    ll = crf.memm_log_likelihood(em, tags, tr, mask=m, bidirectional=bidir)
    assert ll.dtype == dtype
    ref = [memm_ref(em[b], tr, m[b], tags[b], bidir) for b in range(B)]
    assert_close(ll, ref, dtype)
    # a one-token sequence is softmax(f_1) in every variant
    one = crf.memm_log_likelihood(em[:, :1], tags[:, :1], tr, bidirectional=bidir)
    e0 = em[:, 0].astype(np.float64)
    assert_close(one, [e0[b, tags[b, 0]] - _lse(e0[b]) for b in range(B)], dtype)


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean", "token_mean", "none"])
def test_memm_grad_finite_differences(rng, bidir, reduction):
    B, T, K = 4, 5, 3
    em, tr, _, _, m = random_problem(rng, B, T, K, constraints=False)
    tags = rng.integers(0, K, (B, T))
    loss, g = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir, reduction=reduction)
    f = lambda e, t: float(np.sum(crf.memm_nll_grad(e, tags, t, mask=m, bidirectional=bidir,
                                                    reduction=reduction)[0]))
    np.testing.assert_allclose(g["emissions"], _fd(lambda x: f(x, tr), em), atol=1e-7)
    np.testing.assert_allclose(g["transitions"], _fd(lambda x: f(em, x), tr), atol=1e-7)
    ll = crf.memm_log_likelihood(em, tags, tr, mask=m, bidirectional=bidir)
    if reduction == "none":
        np.testing.assert_allclose(loss, -ll, rtol=1e-13)


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("top_k", [1, 3])
def test_memm_decode_exact_brute_force(rng, bidir, top_k):
    B, T, K = 4, 4, 3
    em, tr, _, _, m = random_problem(rng, B, T, K, constraints=False)
    paths, scores = crf.memm_decode(em, tr, mask=m, bidirectional=bidir, top_k=top_k)
    if top_k == 1:
        paths, scores = paths[:, None], scores[:, None]
    for b in range(B):
        pos = np.flatnonzero(m[b])
        if len(pos) == 0:
            assert scores[b, 0] == 0 and np.all(paths[b, 0] == -1)
            continue
        cands = []
        for y in itertools.product(range(K), repeat=len(pos)):
            t = np.zeros(T, int)
            t[pos] = y
            cands.append(memm_ref(em[b], tr, m[b], t, bidir))
        cands = np.sort(cands)[::-1][:top_k]
        np.testing.assert_allclose(scores[b], cands, rtol=1e-10)
        for q in range(top_k):
            t = np.where(paths[b, q] < 0, 0, paths[b, q])
            np.testing.assert_allclose(memm_ref(em[b], tr, m[b], t, bidir), scores[b, q], rtol=1e-10)
    raw_p, raw_s = crf.memm_decode(em, tr, mask=m, mode="raw")
    vp, vs = crf.viterbi(em, tr, mask=m)
    np.testing.assert_array_equal(raw_p, vp)
    np.testing.assert_array_equal(crf.memm_decode(em, tr, mask=m, mode="crf")[0], vp)


def memm_grad_ref(em, tr, keep, tags, bidir, w):
    """Per-step softmax-minus-onehot gradients of -w * ll of one sequence (float64, direct loops)."""
    T, K = em.shape
    e = em.astype(np.float64)
    tr = tr.astype(np.float64)
    ge, gt = np.zeros((T, K)), np.zeros((K, K))
    pos = np.flatnonzero(keep)
    n = len(pos)
    c = 0.5 * w if bidir else w

    def soft(v):
        if not np.isfinite(_lse(v)):
            return None
        return np.exp(v - _lse(v))

    for k, t in enumerate(pos):
        row = e[t] + (tr[tags[pos[k - 1]]] if k else 0.0)
        p = soft(row)
        if p is not None:
            d = c * p
            d[tags[t]] -= c
            ge[t] += d
            if k:
                gt[tags[pos[k - 1]]] += d
        if not bidir:
            continue
        row = e[t] + (tr[:, tags[pos[k + 1]]] if k < n - 1 else 0.0)
        p = soft(row)
        if p is not None:
            d = c * p
            d[tags[t]] -= c
            ge[t] += d
            if k < n - 1:
                gt[:, tags[pos[k + 1]]] += d
    return ge, gt


def memm_grad_ref_batch(em, tr, m, tags, bidir):
    """memm_grad_ref summed over a batch: emissions (B, T, K) and transitions (K, K) gradients
    of -sum_b ll_b (m None: every position kept)."""
    B, T, K = em.shape
    ge, gt = np.zeros((B, T, K)), np.zeros((K, K))
    for b in range(B):
        ge[b], t = memm_grad_ref(em[b], tr, np.ones(T, bool) if m is None else m[b], tags[b], bidir, 1.0)
        gt += t
    return ge, gt


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [1, 2, 3, 7, 8, 9, 16, 17, 20, 33, 41, 50, 60, 70, 130])
@pytest.mark.parametrize("B", [6, 40])
def test_memm_nll_grad_against_loops(rng, dtype, K, B):
    """Every row width of the vectorised MEMM kernel (and the generic one beyond), masks with
    holes, a dead conditioning row (all -inf) and a forbidden gold transition; B = 6 takes the
    exact per-token softmax, B = 40 (enough tokens) the shared-exp one."""
    T = 9
    em = (rng.standard_normal((B, T, K)) * 3).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    if K > 2:
        tr[1, :] = -np.inf          # conditioning on label 1 leaves no label (forward)
        tr[2, 0] = -np.inf          # a forbidden transition
    m = rng.random((B, T)) < 0.75
    m[0] = True
    m[1] = False
    m[2, -1] = False
    tags = rng.integers(0, K, (B, T))
    for bidir in (False, True):
        loss, g = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir, reduction="none")
        ll = crf.memm_log_likelihood(em, tags, tr, mask=m, bidirectional=bidir)
        assert g["emissions"].dtype == dtype and g["transitions"].dtype == dtype
        ref_ll = np.array([memm_ref(em[b], tr, m[b], tags[b], bidir) for b in range(B)])
        fin = np.isfinite(ref_ll)
        np.testing.assert_array_equal(np.isfinite(ll), fin)
        assert_close(ll[fin], ref_ll[fin], dtype, scale=10)
        np.testing.assert_array_equal(loss, -ll)
        ge, gt = memm_grad_ref_batch(em, tr, m, tags, bidir)
        assert_close(g["emissions"], ge, dtype)
        assert_close(g["transitions"], gt, dtype, scale=10)
        assert np.all(g["emissions"][~m] == 0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [3, 9, 20])
def test_memm_transitions_grad_long_blocks(rng, dtype, K):
    """Long sequences: every transitions row gets far more than FC_MEMM_FLUSH (64) terms, so the
    fc_real block accumulators are flushed to double many times inside a sequence and at chunk
    ends.  Error bound: each entry is a sum of terms |coef (p - onehot)| <= coef and a block
    holds fewer than 2 FC_MEMM_FLUSH terms (token lanes and single tokens), so with N terms it
    is within (128 + slack) eps N coef of the float64 loops (float32), and ~1e-12 (float64)."""
    B, T = 10, max(400, 60 * K)
    em = rng.standard_normal((B, T, K)).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    m = rng.random((B, T)) < 0.9
    tags = rng.integers(0, K, (B, T))
    for bidir in (False, True):
        w = 0.5 if bidir else 1.0
        loss, g = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir, reduction="sum")
        gt = np.zeros((K, K))
        nterm = np.zeros((K, K))
        for b in range(B):
            gt += memm_grad_ref(em[b], tr, m[b], tags[b], bidir, 1.0)[1]
            y = tags[b][m[b]]
            np.add.at(nterm, y[:-1], 1.0)                # forward: row of the previous label
            if bidir:
                np.add.at(nterm.T, y[1:], 1.0)           # backward: column of the next label
        assert nterm.max() > 4 * 64
        eps = np.finfo(dtype).eps
        bound = (2 * 64 + 16) * eps * w * nterm + 4 * eps * np.abs(gt)
        err = np.abs(g["transitions"].astype(np.float64) - gt)
        assert np.all(err <= bound), (err / np.maximum(bound, 1e-300)).max()
        ge = memm_grad_ref_batch(em, tr, m, tags, bidir)[0]
        assert_close(g["emissions"], ge, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("K", [1, 2, 5, 8, 9, 10, 11, 16])
def test_memm_token_lanes(rng, dtype, K):
    """The token-lane groups of the MEMM kernel (K <= 10; 8 float / 4 double tokens a group):
    kept lengths 0..20 (whole groups, partial last groups, tails left to the per-token path),
    holes, a dead conditioning row, a forbidden gold transition, tokens whose shared exp is
    not trusted inside groups (redone exactly), one long sequence (many block flushes), and
    n_threads.  K = 11 is the first width past the crossover (label lanes)."""
    shift = 40.0 if dtype == np.float32 else 100.0
    for B, T in ((24, 20), (1, 1000)):
        em = rng.standard_normal((B, T, K)) * 2
        tr = rng.standard_normal((K, K))
        if K > 2:
            tr[1, :] = -np.inf      # conditioning on label 1 leaves no label (forward)
            tr[2, 0] = -np.inf      # a forbidden transition
        tags = rng.integers(0, K, (B, T))
        if B > 1:
            m = np.arange(T)[None, :] < (np.arange(B) % 21)[:, None]
            m[12:] &= rng.random((B - 12, T)) < 0.8
            if K > 2:  # no dead rows in some sequences (finite log-likelihoods there)
                tags[:6][tags[:6] == 1] = 0
                tags[:6][tags[:6] == 2] = 3 % K
        else:
            m = rng.random((B, T)) < 0.95
            if K > 2:               # finite, so the long sum is checked
                tags[tags == 1] = 0
                tags[tags == 2] = 3 % K
        if K > 1:                   # ~5% of tokens: a gap above the shared-exp shift
            far = rng.random((B, T)) < 0.05
            for b, t in zip(*np.nonzero(far)):
                em[b, t, (tags[b, t] + 1) % K] = em[b, t, tags[b, t]] + 1.5 * shift
        em, tr = em.astype(dtype), tr.astype(dtype)
        for bidir in (False, True):
            loss, g = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir, reduction="none",
                                        n_threads=1)
            ll = crf.memm_log_likelihood(em, tags, tr, mask=m, bidirectional=bidir, n_threads=1)
            ref = np.array([memm_ref(em[b], tr, m[b], tags[b], bidir) for b in range(B)])
            fin = np.isfinite(ref)
            assert fin.sum() >= min(B, 6)
            np.testing.assert_array_equal(np.isfinite(ll), fin)
            np.testing.assert_array_equal(np.isfinite(loss), fin)
            rt = 2e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(ll[fin], ref[fin], rtol=rt, atol=rt * max(np.abs(ref[fin]).max(), T))
            np.testing.assert_allclose(-loss[fin], ref[fin], rtol=rt, atol=rt * max(np.abs(ref[fin]).max(), T))
            ge, gt = memm_grad_ref_batch(em, tr, m, tags, bidir)
            assert_close(g["emissions"], ge, dtype)
            assert_close(g["transitions"], gt, dtype, scale=10 if B > 1 else 100)
            assert np.all(g["emissions"][~m] == 0)
            loss2, g2 = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir, reduction="none",
                                          n_threads=2)
            np.testing.assert_array_equal(loss2, loss)
            np.testing.assert_array_equal(g2["emissions"], g["emissions"])
            np.testing.assert_array_equal(g2["transitions"], g["transitions"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_memm_token_lanes_one_long_sequence(rng, dtype):
    """One sequence long enough for the token lanes' exponent lanes to be folded into double
    several times (every 4096 groups: 32768 float / 16384 double tokens), with large
    normalisers (wide emissions), against a vectorised float64 log-softmax reference."""
    T, K = 70000, 5
    em = (rng.standard_normal((1, T, K)) * 6).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    tags = rng.integers(0, K, (1, T))
    e, t, y = em[0].astype(np.float64), tr.astype(np.float64), tags[0]

    def lsm_sum(v):
        mx = v.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(v - mx).sum(axis=1))
        return float((v[np.arange(T), y] - lse).sum())

    vf, vb = e.copy(), e.copy()
    vf[1:] += t[y[:-1]]
    vb[:-1] += t[:, y[1:]].T
    for bidir in (False, True):
        ref = lsm_sum(vf) if not bidir else 0.5 * (lsm_sum(vf) + lsm_sum(vb))
        ll = crf.memm_log_likelihood(em, tags, tr, bidirectional=bidir, n_threads=1)
        loss, _ = crf.memm_nll_grad(em, tags, tr, bidirectional=bidir, reduction="none", n_threads=1)
        rt = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(ll[0], ref, rtol=rt)
        np.testing.assert_allclose(-loss[0], ref, rtol=rt)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_memm_token_lanes_tiny_gold_terms(rng, dtype):
    """Gold transitions far below their row's maximum (exp tables down to ~1e-26 and ~1e-37 in
    float): the token lanes take the gold probability as table entry over normaliser, with
    inverse probabilities up to FC_MEMM_QMAX in the lane products (beyond it, the token is
    redone exactly); log-likelihoods and gradients match the float64 loops."""
    B, T, K = 6, 40, 9
    em = rng.standard_normal((B, T, K)).astype(dtype)
    tr = rng.standard_normal((K, K))
    tr[3, 5], tr[5, 3], tr[4, 4] = -60.0, -85.0, -30.0
    tr = tr.astype(dtype)
    tags = rng.integers(0, K, (B, T))
    tags[:3, 0::2], tags[:3, 1::2] = 3, 5     # the pairs (3, 5) and (5, 3) at every step
    tags[3:5] = 4                             # (4, 4) at every step
    m = np.ones((B, T), bool)
    m[5, 30:] = False
    for bidir in (False, True):
        loss, g = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir, reduction="none", n_threads=1)
        ref = np.array([memm_ref(em[b], tr, m[b], tags[b], bidir) for b in range(B)])
        assert np.all(np.isfinite(ref)) and ref.min() < -1000
        rt = 2e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(-loss, ref, rtol=rt)
        ll = crf.memm_log_likelihood(em, tags, tr, mask=m, bidirectional=bidir, n_threads=1)
        np.testing.assert_allclose(ll, ref, rtol=rt)
        ge, gt = memm_grad_ref_batch(em, tr, m, tags, bidir)
        assert_close(g["emissions"], ge, dtype)
        assert_close(g["transitions"], gt, dtype, scale=10)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_memm_shared_exp_gold_shift(rng, dtype):
    """The shared-exp tokens shift the exps by the gold emission: gaps max_j e_j - e[y] near and
    beyond FC_MEMM_SHIFT (40 float, 100 double; beyond: the token is redone exactly) give
    the loop references' values."""
    B, T, K = 20, 16, 9
    shift = 40.0 if dtype == np.float32 else 100.0
    em = rng.standard_normal((B, T, K))
    tags = rng.integers(0, K, (B, T))
    gap = rng.uniform(0.5, 1.5, (B, T)) * shift      # about half the tokens above the shift
    for b in range(B):
        for t in range(T):
            em[b, t, (tags[b, t] + 1) % K] = em[b, t, tags[b, t]] + gap[b, t]
    em = em.astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    for bidir in (False, True):
        loss, g = crf.memm_nll_grad(em, tags, tr, bidirectional=bidir, reduction="none")
        ref = np.array([memm_ref(em[b], tr, np.ones(T, bool), tags[b], bidir) for b in range(B)])
        np.testing.assert_allclose(-loss, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
        ge = np.array([memm_grad_ref(em[b], tr, np.ones(T, bool), tags[b], bidir, 1.0)[0] for b in range(B)])
        assert_close(g["emissions"], ge, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_memm_extreme_score_ranges(rng, dtype):
    """Emission and transition maxima far apart (a shared-exp normaliser below its floor, redone
    exactly per token), and huge scores: log-likelihoods and gradients stay exact."""
    B, T, K = 30, 12, 6
    big = 100.0 if dtype == np.float32 else 800.0  # exp(-big) flushes to 0: shared exps underflow
    em = rng.standard_normal((B, T, K))
    em[:, :, 0] += big
    tr = rng.standard_normal((K, K))
    tr[:, 0] -= big
    em[5:10] *= 1e3
    em, tr = em.astype(dtype), tr.astype(dtype)
    tags = rng.integers(0, K, (B, T))
    for bidir in (False, True):
        loss, g = crf.memm_nll_grad(em, tags, tr, bidirectional=bidir, reduction="none")
        ref = np.array([memm_ref(em[b], tr, np.ones(T, bool), tags[b], bidir) for b in range(B)])
        np.testing.assert_allclose(-loss, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
        ge, gt = memm_grad_ref_batch(em, tr, None, tags, bidir)
        assert_close(g["emissions"], ge, dtype)
        assert_close(g["transitions"], gt, dtype, scale=10)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_memm_one_call_path(rng, dtype):
    """memm_nll_grad / memm_log_likelihood on arrays already in kernel layout (one Cython call,
    weights computed there) equal the checked path (other layouts, int32 tags, lengths) bit
    for bit, for every reduction; bad input still raises with the argument's name."""
    B, T, K = 5, 13, 6
    em = rng.standard_normal((B, T, K)).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    tags = rng.integers(0, K, (B, T))
    lengths = np.array([13, 0, 7, 1, 12])
    m = np.arange(T)[None, :] < lengths[:, None]
    for bidir in (False, True):
        for red in ("sum", "mean", "token_mean", "none"):
            fast = crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir, reduction=red)
            slow = crf.memm_nll_grad(np.asfortranarray(em), tags.astype(np.int32), tr.T.copy().T,
                                     lengths=lengths, bidirectional=bidir, reduction=red)
            np.testing.assert_array_equal(fast[0], slow[0])
            assert np.asarray(fast[0]).dtype == dtype
            for k in ("emissions", "transitions"):
                np.testing.assert_array_equal(fast[1][k], slow[1][k])
        ll = crf.memm_log_likelihood(em, tags, tr, mask=m, bidirectional=bidir)
        assert ll.dtype == dtype
        np.testing.assert_array_equal(ll, crf.memm_log_likelihood(em, tags.tolist(), tr, lengths=lengths,
                                                                  bidirectional=bidir))
        np.testing.assert_array_equal(crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=bidir,
                                                        reduction="none")[0], -ll)
    n = int(m.sum())
    np.testing.assert_allclose(crf.memm_nll_grad(em, tags, tr, mask=m, reduction="token_mean")[0] * n,
                               crf.memm_nll_grad(em, tags, tr, mask=m, reduction="sum")[0], rtol=1e-6)
    bad = em.copy()
    bad[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match="emissions"):
        crf.memm_nll_grad(bad, tags, tr, mask=m)
    bad_tags = tags.copy()
    bad_tags[0, 0] = K
    with pytest.raises(ValueError, match="tags"):
        crf.memm_nll_grad(em, bad_tags, tr, mask=m)
    with pytest.raises(TypeError, match="tags"):
        crf.memm_nll_grad(em, None, tr, mask=m)
    with pytest.raises(ValueError, match="reduction"):
        crf.memm_nll_grad(em, tags, tr, mask=m, reduction="avg")
    empty = crf.memm_nll_grad(em[:0], tags[:0], tr, reduction="mean")
    assert empty[0] == 0 and empty[1]["emissions"].shape == (0, T, K) and np.all(empty[1]["transitions"] == 0)


def test_memm_forbidden_transition():
    em = np.zeros((1, 3, 2))
    tr = np.array([[-np.inf, 0.0], [0.0, 0.0]])
    ll = crf.memm_log_likelihood(em, np.array([[0, 0, 1]]), tr)
    assert ll[0] == -np.inf
    ll = crf.memm_log_likelihood(em, np.array([[0, 1, 1]]), tr, bidirectional=True)
    assert np.isfinite(ll[0])
    p, s = crf.memm_decode(em, tr)
    assert np.isfinite(s).all() and not (p[0, 0] == 0 and p[0, 1] == 0)


# ---------------------------------------------------------------- threads, layouts, empties
def test_threads_identical(rng):
    B, T, K = 37, 25, 6
    em, tr, st, en, m = random_problem(rng, B, T, K, np.float32)
    tags = rng.integers(0, K, (B, T))
    calls = [
        lambda n: crf.crf_log_partition(em, tr, st, en, mask=m, n_threads=n),
        lambda n: crf.crf_marginals(em, tr, st, en, mask=m, pairwise=True, n_threads=n),
        lambda n: crf.crf_nll_grad(em, tags, tr, st, en, mask=m, n_threads=n),
        lambda n: crf.viterbi(em, tr, st, en, mask=m, top_k=3, n_threads=n),
        lambda n: crf.viterbi(em, tr, st, en, mask=m, n_threads=n),
        lambda n: crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=True, n_threads=n),
        lambda n: crf.memm_decode(em, tr, mask=m, bidirectional=True, n_threads=n),
    ]

    def flat(r):
        if isinstance(r, dict):
            return [v for v in r.values() if v is not None]
        if isinstance(r, tuple):
            return [x for v in r for x in flat(v)]
        return [np.asarray(r)]

    for call in calls:
        a, b, c = flat(call(1)), flat(call(2)), flat(call(3))
        for x, y, z in zip(a, b, c):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)


def test_concurrent_calls_from_python_threads(rng):
    """Many Python threads at once, each on one thread (no OpenMP team) or two (a team per
    caller): every result equals the serial one."""
    B, T, K = 19, 30, 9
    em, tr, st, en, m = random_problem(rng, B, T, K, np.float32)
    tags = rng.integers(0, K, (B, T))
    calls = [
        lambda n: crf.crf_log_likelihood(em, tags, tr, st, en, mask=m, n_threads=n),
        lambda n: crf.crf_nll_grad(em, tags, tr, st, en, mask=m, n_threads=n)[1]["emissions"],
        lambda n: crf.viterbi(em, tr, st, en, mask=m, n_threads=n)[0],
        lambda n: crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=True, n_threads=n)[1]["transitions"],
    ]
    expected = [c(1) for c in calls]
    jobs = [(i, n) for _ in range(3) for i in range(len(calls)) for n in (1, 2)]
    results = [None] * len(jobs)

    def work(j):
        i, n = jobs[j]
        for _ in range(20):
            results[j] = calls[i](n)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (i, _), r in zip(jobs, results):
        np.testing.assert_array_equal(r, expected[i])


def test_layout_variants_and_inputs_unchanged(rng):
    em, tr, st, en, m = random_problem(rng, 3, 5, 4)
    tags = rng.integers(0, 4, (3, 5))
    ref = crf.crf_nll_grad(em, tags, tr, st, en, mask=m)[0]
    for name, e in variants(em).items():
        for name2, t in variants(tr).items():
            assert crf.crf_nll_grad(e, tags, t, st, en, mask=m)[0] == ref, (name, name2)
    copies = [a.copy() for a in (em, tr, st, en, m, tags)]
    crf.crf_nll_grad(em, tags, tr, st, en, mask=m)
    crf.viterbi(em, tr, st, en, mask=m, top_k=2)
    crf.memm_nll_grad(em, tags, tr, mask=m, bidirectional=True)
    crf.memm_decode(em, tr, mask=m)
    for a, c in zip((em, tr, st, en, m, tags), copies):
        np.testing.assert_array_equal(a, c)


def test_empty_shapes():
    for B, T in ((0, 4), (3, 0), (0, 0)):
        em = np.zeros((B, T, 3))
        tr = np.zeros((3, 3))
        tags = np.zeros((B, T), int)
        assert crf.crf_log_partition(em, tr).shape == (B,)
        np.testing.assert_array_equal(crf.crf_log_likelihood(em, tags, tr), 0)
        loss, g = crf.crf_nll_grad(em, tags, tr, reduction="mean")
        assert loss == 0 and g["emissions"].shape == (B, T, 3) and np.all(g["transitions"] == 0)
        assert crf.crf_nll_grad(em, tags, tr, reduction="token_mean")[0] == 0
        assert crf.crf_marginals(em, tr).shape == (B, T, 3)
        p, s = crf.viterbi(em, tr)
        assert p.shape == (B, T) and np.all(s == 0)
        p, s = crf.viterbi(em, tr, top_k=2)
        assert p.shape == (B, 2, T)
        # one empty path of score 0, then none: fast path (float32 arrays) and checked path (lengths)
        e32, t32 = em.astype(np.float32), tr.astype(np.float32)
        for kw in ({}, {"lengths": np.zeros(B, int)}):
            p, s = crf.viterbi(e32, t32, top_k=2, **kw)
            assert p.shape == (B, 2, T) and s.shape == (B, 2) and s.dtype == np.float32
            assert np.all(s[:, 0] == 0) and np.all(s[:, 1] == -np.inf) and np.all(p == -1)
        assert crf.memm_nll_grad(em, tags, tr)[0] == 0
        assert crf.memm_decode(em, tr)[0].shape == (B, T)


# ---------------------------------------------------------------- bad input
def test_bad_inputs(rng):
    em = rng.standard_normal((2, 3, 4))
    tr = rng.standard_normal((4, 4))
    tags = rng.integers(0, 4, (2, 3))
    for bad in (np.nan, np.inf, -np.inf):
        e = em.copy()
        e[0, 1, 2] = bad
        with pytest.raises(ValueError, match="emissions"):
            crf.crf_log_partition(e, tr)
    for bad in (np.nan, np.inf):
        t = tr.copy()
        t[1, 2] = bad
        with pytest.raises(ValueError, match="transitions"):
            crf.crf_log_partition(em, t)
        with pytest.raises(ValueError, match="transitions"):
            crf.memm_nll_grad(em, tags, t)
        v = np.zeros(4)
        v[0] = bad
        with pytest.raises(ValueError, match="start"):
            crf.viterbi(em, tr, v)
        with pytest.raises(ValueError, match="end"):
            crf.crf_nll_grad(em, tags, tr, None, v)
    with pytest.raises(ValueError, match="float32"):
        crf.crf_log_partition(em.astype(np.float32), np.full((4, 4), 1e300))
    # huge but finite emissions are accepted (their float64 sum overflows: exact check decides)
    huge = np.zeros((2, 3, 4))
    huge[0, :2, 0] = 1e308
    crf.viterbi(huge, tr)  # no ValueError
    inf_case = huge.copy()
    inf_case[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="emissions contains infinite"):
        crf.viterbi(inf_case, tr)
    with pytest.raises(ValueError, match="tags"):
        crf.crf_log_likelihood(em, tags + 4, tr)
    with pytest.raises(ValueError, match="tags"):
        crf.memm_log_likelihood(em, tags - 5, tr)
    # out-of-range tags at masked positions are ignored
    t2 = tags.copy()
    t2[0, 2] = 99
    m = np.ones((2, 3), bool)
    m[0, 2] = False
    assert np.isfinite(crf.crf_log_likelihood(em, t2, tr, mask=m)).all()
    with pytest.raises(TypeError, match="tags"):
        crf.crf_score(em, tags.astype(float), tr)
    with pytest.raises(ValueError, match="tags"):
        crf.crf_score(em, tags[:, :2], tr)
    with pytest.raises(ValueError, match="transitions"):
        crf.crf_log_partition(em, tr[:3])
    with pytest.raises(ValueError, match="start"):
        crf.crf_log_partition(em, tr, np.zeros(3))
    with pytest.raises(ValueError, match="emissions"):
        crf.crf_log_partition(em[0], tr)
    with pytest.raises(ValueError, match="emissions"):
        crf.crf_log_partition(np.zeros((2, 3, 0)), np.zeros((0, 0)))
    with pytest.raises(TypeError, match="emissions"):
        crf.crf_log_partition(em.astype(complex), tr)
    with pytest.raises(ValueError, match="mask"):
        crf.crf_log_partition(em, tr, mask=np.ones((2, 4), bool))
    with pytest.raises(TypeError, match="mask"):
        crf.crf_log_partition(em, tr, mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match="lengths"):
        crf.crf_log_partition(em, tr, lengths=[1, 4])
    with pytest.raises(ValueError, match="lengths"):
        crf.crf_log_partition(em, tr, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="lengths"):
        crf.crf_log_partition(em, tr, lengths=[1.0, 2.0])
    with pytest.raises(ValueError, match="not both"):
        crf.crf_log_partition(em, tr, mask=np.ones((2, 3), bool), lengths=[1, 2])
    with pytest.raises(ValueError, match="reduction"):
        crf.crf_nll_grad(em, tags, tr, reduction="avg")
    with pytest.raises(ValueError, match="top_k"):
        crf.viterbi(em, tr, top_k=0)
    with pytest.raises(TypeError, match="top_k"):
        crf.viterbi(em, tr, top_k=1.5)
    with pytest.raises(ValueError, match="mode"):
        crf.memm_decode(em, tr, mode="fast")
    with pytest.raises(ValueError, match="n_threads"):
        crf.crf_log_partition(em, tr, n_threads=0)


# ---------------------------------------------------------------- objects
def test_crf_and_memm_objects(rng):
    labels = ["O", "B-X", "I-X"]
    model = crf.CRF(3, rng=0, dtype=np.float64).constrain("BIO", labels)
    assert model.transitions.shape == (3, 3) and np.all(np.abs(model.transitions) <= 0.1)
    em = rng.standard_normal((4, 5, 3))
    tags = np.array([[0, 1, 2, 2, 0]] * 4)
    t, s, e = crf.constraint_scores(*crf.allowed_transitions("BIO", labels))
    tr, st, en = model.transitions + t, model.start + s, model.end + e
    np.testing.assert_array_equal(model.log_likelihood(em, tags), crf.crf_log_likelihood(em, tags, tr, st, en))
    loss, g = model.nll_grad(em, tags, reduction="mean")
    loss2, g2 = crf.crf_nll_grad(em, tags, tr, st, en, reduction="mean")
    assert loss == loss2
    np.testing.assert_array_equal(g["transitions"], g2["transitions"])
    paths, _ = model.decode(em)
    assert not np.any((paths[:, :-1] == 0) & (paths[:, 1:] == 2))  # O -> I-X is forbidden
    np.testing.assert_array_equal(model.marginals(em), crf.crf_marginals(em, tr, st, en))
    assert np.isfinite(model.log_partition(em)).all()
    m2 = crf.CRF(3, start_end=False, rng=1)
    assert m2.start is None and m2.nll_grad(em, tags)[1]["start"] is None
    with pytest.raises(ValueError, match="num_tags"):
        crf.CRF(0)
    memm = crf.MEMM(3, bidirectional=True, rng=0, dtype=np.float64)
    np.testing.assert_array_equal(memm.log_likelihood(em, tags),
                                  crf.memm_log_likelihood(em, tags, memm.transitions, bidirectional=True))
    assert memm.nll_grad(em, tags)[1]["transitions"].shape == (3, 3)
    np.testing.assert_array_equal(memm.decode(em)[0],
                                  crf.memm_decode(em, memm.transitions, bidirectional=True)[0])


# ---------------------------------------------------------------- properties
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(B=st.integers(1, 4), T=st.integers(0, 7), K=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_invariants(B, T, K, seed, scale):
    rng = np.random.default_rng(seed)
    em, tr, st_, en, m = random_problem(rng, B, T, K)
    em = em * scale
    lz = crf.crf_log_partition(em, tr, st_, en, mask=m)
    p1, s1 = crf.viterbi(em, tr, st_, en, mask=m)
    pk, sk = crf.viterbi(em, tr, st_, en, mask=m, top_k=3)
    node = crf.crf_marginals(em, tr, st_, en, mask=m)
    feasible = np.isfinite(lz)
    assert np.all(lz[feasible] >= s1[feasible] - 1e-9)  # log Z >= best path score
    assert np.all(s1[~feasible] == -np.inf)
    np.testing.assert_allclose(s1, sk[:, 0], rtol=1e-12)
    assert np.all(sk[:, 1:] <= sk[:, :-1] + 1e-9)  # n-best in decreasing order
    kept = m & feasible[:, None]
    np.testing.assert_allclose(node.sum(-1), kept.astype(float), atol=1e-9)
    # the Viterbi path's likelihood is the largest of the n-best
    ok = np.isfinite(s1)
    if ok.any():
        ll = crf.crf_log_likelihood(em[ok], np.where(p1[ok] < 0, 0, p1[ok]), tr, st_, en, mask=m[ok])
        np.testing.assert_allclose(ll, s1[ok] - lz[ok], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_fast_validation_split_over_threads(rng, n_threads):
    """The C check splits the sequences over the threads from 64K emissions a thread: a bad
    value in any thread's part (and transitions, checked by the first) is still refused."""
    from fastcore import _crf

    B, T, K = 5, 64, 512  # 163840 emissions: up to 2 threads
    em = rng.standard_normal((B, T, K)).astype(np.float32)
    tr = rng.standard_normal((K, K)).astype(np.float32)
    m = np.ones((B, T), bool)
    m[4, 60:] = False
    tags = rng.integers(0, K, (B, T))
    assert _crf.fast_check(em, tr, None, None, m, tags, n_threads)
    for b in range(B):
        e = em.copy()
        e[b, T - 1, K - 1] = np.nan
        assert not _crf.fast_check(e, tr, None, None, m, tags, n_threads)
        y = tags.copy()
        y[b, 59] = K
        assert not _crf.fast_check(em, tr, None, None, m, y, n_threads)
        with pytest.raises(ValueError, match="tags"):
            crf.crf_log_likelihood(em, y, tr, mask=m, n_threads=n_threads)
    y = tags.copy()
    y[4, 61] = K  # masked: accepted
    assert _crf.fast_check(em, tr, None, None, m, y, n_threads)
    t = tr.copy()
    t[K - 1, 0] = np.inf
    assert not _crf.fast_check(em, t, None, None, m, tags, n_threads)
    e = em.copy()
    e[3, 10, 7] = -np.inf
    with pytest.raises(ValueError, match="emissions"):
        crf.crf_log_likelihood(e, tags, tr, mask=m, n_threads=n_threads)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_fast_validation_path_catches_bad_values(rng, dtype):
    """Arrays already in kernel layout skip the Python checks (fastcore._crf.fast_check): the
    one C pass must still refuse every bad value, with the same messages, and accept what
    the full checks accept (out-of-range tags at masked positions, -inf constraints)."""
    from fastcore import _crf

    B, T, K = 3, 40, 5
    em = rng.standard_normal((B, T, K)).astype(dtype)
    tr = rng.standard_normal((K, K)).astype(dtype)
    st = rng.standard_normal(K).astype(dtype)
    m = np.ones((B, T), bool)
    m[1, 30:] = False
    tags = rng.integers(0, K, (B, T))
    assert _crf.fast_check(em, tr, st, st, m, tags)
    tags_masked_bad = tags.copy()
    tags_masked_bad[1, 35] = K + 3
    assert _crf.fast_check(em, tr, st, st, m, tags_masked_bad)
    ref = crf.crf_log_likelihood(em, tags, tr, st, st, mask=m)
    np.testing.assert_array_equal(crf.crf_log_likelihood(em, tags_masked_bad, tr, st, st, mask=m), ref)
    tr_c = tr.copy()
    tr_c[0, 1] = -np.inf
    assert _crf.fast_check(em, tr_c, st, None, m, None)
    # not kernel layout: the full path decides (and gives the same numbers)
    assert not _crf.fast_check(em, tr, st, st, m, tags.astype(np.int32))
    assert not _crf.fast_check(np.asfortranarray(em), tr, st, st, m, tags)
    assert not _crf.fast_check(em, tr.astype(np.float32 if dtype == np.float64 else np.float64), st, st, m, tags)
    np.testing.assert_array_equal(crf.crf_log_likelihood(em, tags.astype(np.int32), tr, st, st, mask=m), ref)
    for where in [(0, 0, 0), (2, T - 1, K - 1), (1, 35, 2)]:  # the last one is masked: still refused
        for bad, msg in [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")]:
            e = em.copy()
            e[where] = bad
            assert not _crf.fast_check(e, tr, st, st, m, tags)
            with pytest.raises(ValueError, match=f"emissions contains {msg}"):
                crf.crf_log_likelihood(e, tags, tr, st, st, mask=m)
            with pytest.raises(ValueError, match="emissions"):
                crf.memm_nll_grad(e, tags, tr, mask=m)
            with pytest.raises(ValueError, match="emissions"):
                crf.viterbi(e, tr, st, st, mask=m)
    for name in ("transitions", "start", "end"):
        for bad, msg in [(np.nan, "NaN"), (np.inf, r"\+inf")]:
            args = {"transitions": tr.copy(), "start": st.copy(), "end": st.copy()}
            args[name].flat[-1] = bad
            assert not _crf.fast_check(em, args["transitions"], args["start"], args["end"], m, tags)
            with pytest.raises(ValueError, match=f"{name} contains {msg}"):
                crf.crf_nll_grad(em, tags, args["transitions"], args["start"], args["end"], mask=m)
    y = tags.copy()
    y[2, 3] = K
    assert not _crf.fast_check(em, tr, st, st, m, y)
    with pytest.raises(ValueError, match="tags must lie in"):
        crf.crf_nll_grad(em, y, tr, st, st, mask=m)
    y[2, 3] = -1
    with pytest.raises(ValueError, match="tags must lie in"):
        crf.memm_nll_grad(em, y, tr, mask=m, bidirectional=True)
    assert not np.isnan(em).any()  # inputs untouched


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_one_call_fast_paths_equal_checked_paths(rng, dtype):
    """crf_log_partition / crf_score / crf_log_likelihood / viterbi on arrays in kernel layout
    run checks and kernel in one call (fastcore._crf.forward / viterbi with fast=True); the same
    arrays in another layout take the checked path.  Same numbers, dtype and -inf rules."""
    from fastcore import _crf

    B, T, K = 5, 17, 6
    em, tr, st, en, m = random_problem(rng, B, T, K, dtype)
    tr[:, 3] = -np.inf  # label 3 unreachable after the first token
    tags = rng.integers(0, K, (B, T))
    tags[3, np.flatnonzero(m[3])[1:2]] = 3  # a forbidden path: score and log-likelihood -inf
    em_f = np.asfortranarray(em)  # not kernel layout: the checked path
    assert _crf.fast_check(em, tr, st, en, m, tags) and not _crf.fast_check(em_f, tr, st, en, m, tags)
    for fn in (lambda e: crf.crf_log_partition(e, tr, st, en, mask=m),
               lambda e: crf.crf_score(e, tags, tr, st, en, mask=m),
               lambda e: crf.crf_log_likelihood(e, tags, tr, st, en, mask=m),
               lambda e: crf.crf_log_likelihood(e, tags, tr, mask=m),
               lambda e: crf.crf_log_partition(e, tr)):
        fast, ref = fn(em), fn(em_f)
        assert fast.dtype == dtype and fast.shape == (B,)
        np.testing.assert_array_equal(fast, ref)
    assert crf.crf_log_likelihood(em, tags, tr, st, en, mask=m)[3] == -np.inf
    assert crf.crf_log_likelihood(em, tags, tr, st, en, mask=m)[2] == 0  # empty sequence
    p, s = crf.viterbi(em, tr, st, en, mask=m)
    pr, sr = crf.viterbi(em_f, tr, st, en, mask=m)
    assert p.shape == (B, T) and p.dtype == np.int64 and s.dtype == dtype
    np.testing.assert_array_equal(p, pr)
    np.testing.assert_array_equal(s, sr)
    assert np.all(p[~m] == -1)
    # bad values still raise through the one-call paths, naming the argument
    e = em.copy()
    e[0, 0, 0] = np.nan
    for call in (lambda: crf.crf_log_partition(e, tr), lambda: crf.viterbi(e, tr),
                 lambda: crf.crf_score(e, tags, tr)):
        with pytest.raises(ValueError, match="emissions contains NaN"):
            call()
    for call in (lambda: crf.crf_score(em, None, tr), lambda: crf.crf_log_likelihood(em, None, tr),
                 lambda: crf.crf_nll_grad(em, None, tr), lambda: crf.memm_nll_grad(em, None, tr),
                 lambda: crf.memm_log_likelihood(em, None, tr, bidirectional=True)):
        with pytest.raises(TypeError, match="tags must be an integer array"):
            call()


@pytest.mark.parametrize("fname", ["crf_log_partition", "viterbi", "crf_marginals", "memm_decode", "crf_score",
                                   "crf_log_likelihood", "crf_nll_grad", "memm_log_likelihood", "memm_nll_grad"])
def test_missing_transitions_named_in_the_error(fname):
    em = np.zeros((2, 3, 4), np.float32)
    fn = getattr(crf, fname)
    args = (em, None) if fname in ("crf_log_partition", "viterbi", "crf_marginals", "memm_decode") \
        else (em, np.zeros((2, 3), np.int64), None)
    with pytest.raises(TypeError, match=r"transitions must be an array of shape \(4, 4\), got None"):
        fn(*args)


@pytest.mark.parametrize("dtype,big,step", [(np.float32, 1e8, 8.0), (np.float32, 1e4, 2.0 ** -10),
                                            (np.float64, 1e17, 16.0)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_memm_exact_decode_is_the_map_with_huge_emissions(dtype, big, step, bidirectional):
    # issue 28 item 4: the potentials held |f| + |normaliser| (~1e8), so in float32 every
    # difference below ~8 was lost and the decode missed the MAP on near ties (43 of 60
    # such problems at 1e8); now each emission row enters shifted by its maximum.
    # Reference: brute force over all paths; the log-likelihood is invariant to a constant
    # added to one position's emissions, so it is computed on shifted rows (exact in float64).
    rng = np.random.default_rng(7)
    for _ in range(20):
        B, T, K = int(rng.integers(1, 4)), int(rng.integers(2, 5)), int(rng.integers(2, 5))
        em = (big + step * rng.integers(-3, 4, (B, T, K))).astype(dtype)  # exact in dtype
        tr = (rng.standard_normal((K, K)) * 2 * step).astype(dtype)
        paths, scores = crf.memm_decode(em, tr, bidirectional=bidirectional)
        cand = np.array(list(itertools.product(range(K), repeat=T)))
        for b in range(B):
            e = em[b:b + 1].astype(np.float64)
            e = e - e.max(-1, keepdims=True)
            ll = crf.memm_log_likelihood(np.repeat(e, len(cand), 0), cand, tr.astype(np.float64),
                                     bidirectional=bidirectional)
            mine = crf.memm_log_likelihood(e, paths[b][None], tr.astype(np.float64), bidirectional=bidirectional)[0]
            assert mine >= ll.max() - 1e-6 * step
            assert scores[b] == pytest.approx(ll.max(), abs=1e-3 * step)
