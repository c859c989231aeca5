"""Linear-chain CRF and MEMM kernels for sequence labelling.

Log-partition, path scores and log-likelihoods, marginals, the negative
log-likelihood with its analytic gradients (one forward-backward, no autograd
tape), Viterbi and exact n-best decoding, BIO/BIOES/BMES transition constraints,
and the (bidirectional) MEMM of SEED_SPEC section 4.  Written in C
(``csrc/crf/``), threaded over the batch.

Conventions shared by every function
------------------------------------
- ``emissions`` (B, T, K): per-token label scores; ``transitions`` (K, K) with
  ``transitions[i, j]`` the score of label i followed by label j; optional
  ``start`` (K,) and ``end`` (K,) scores of the first and last label.
- ``mask`` (B, T) bool (True = real token) or ``lengths`` (B,) (the first
  ``lengths[b]`` tokens are real).  Any mask is allowed: masked positions are
  removed and the chain joins the remaining ones, so a masked ``[CLS]`` first
  token or holes in the middle work.  A sequence with no position has
  log Z = 0, score 0 and an empty path.
- ``-inf`` in ``transitions``/``start``/``end`` means "forbidden" (see
  :func:`allowed_transitions`), in float32 and float64 alike.  NaN or +inf
  anywhere, and -inf in ``emissions``, are a ValueError.
- dtype policy: float32 inputs are computed in float32 (every sum over time,
  log-scale and gradient accumulation in float64) and return float32; anything
  else is computed and returned in float64.  ``transitions``/``start``/``end``
  are cast to the dtype of ``emissions``.
- ``n_threads`` (None = every core) splits the batch; results are identical for
  any thread count.
- Arrays already in kernel layout (C-contiguous, native byte order: float32/float64
  ``emissions`` with ``transitions``/``start``/``end`` of the same dtype, a bool
  ``mask``, int64 ``tags``) are checked in one C pass (finiteness, label ranges) and
  used without copies; anything else is converted and checked in Python, with the
  same errors.
"""
import numpy as np

from fastcore import _crf
from fastcore._threads import resolve_n_threads
from fastcore._validation import shape_str, as_bool_mask, as_float_array

__all__ = [
    "crf_log_partition", "crf_score", "crf_log_likelihood", "crf_marginals", "crf_nll_grad",
    "viterbi", "allowed_transitions", "constraint_scores",
    "memm_log_likelihood", "memm_nll_grad", "memm_decode", "CRF", "MEMM",
]

REDUCTIONS = ("sum", "mean", "token_mean", "none")


# ---------------------------------------------------------------- validation
def _transitions(x, dtype, K):
    """The transitions (K, K): required (start and end may be omitted), else as _scores."""
    if x is None:
        raise TypeError(f"transitions must be an array of shape {shape_str((K, K))}, got None")
    return _scores(x, "transitions", dtype, (K, K))


def _scores(x, name, dtype, shape):
    """A transitions/start/end array: cast to dtype, right shape, -inf allowed, NaN/+inf refused."""
    if x is None:
        return None
    a = as_float_array(x, name)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape_str(shape)}, got {shape_str(a.shape)}")
    if a.dtype == dtype:
        out = a
    else:
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(a, dtype=dtype)
    if out.size and np.isfinite(out).all():
        return out
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    if np.isposinf(a).any():
        raise ValueError(f"{name} contains +inf (use -inf to forbid, finite values otherwise)")
    if np.isposinf(out).any():
        raise ValueError(f"{name} overflows {np.dtype(dtype).name}")
    return out


def _emissions(emissions):
    em = as_float_array(emissions, "emissions", ndim=3)
    if em.shape[2] < 1:
        raise ValueError(f"emissions must have at least one label (K >= 1), got shape {shape_str(em.shape)}")
    # fast path: one float64 sum (no temporary) is finite iff no NaN/inf, unless huge finite
    # float64 values overflow it, in which case the exact check decides
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(em, axis=None, dtype=np.float64) if em.size else 0.0
    if not np.isfinite(total) and not np.isfinite(em).all():
        bad = "NaN" if np.isnan(em).any() else "infinite values"
        raise ValueError(f"emissions contains {bad} (constraints belong in transitions/start/end)")
    return em


def _mask(mask, lengths, B, T):
    """uint8 (B, T) keep-mask, or None when every position is kept."""
    if mask is not None and lengths is not None:
        raise ValueError("give mask or lengths, not both")
    if mask is not None:
        if isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (B, T):
            return np.ascontiguousarray(mask).view(np.uint8)
        m = as_bool_mask(mask, "mask", (B, T))
        return np.ascontiguousarray(np.broadcast_to(m, (B, T)))
    if lengths is not None:
        ln = np.asarray(lengths)
        if ln.dtype.kind not in "iu":
            raise TypeError(f"lengths must be an integer array, got dtype {ln.dtype}")
        if ln.shape != (B,):
            raise ValueError(f"lengths must have shape ({B},), got {shape_str(ln.shape)}")
        if ln.size and (ln.min() < 0 or ln.max() > T):
            raise ValueError(f"lengths must lie in [0, {T}], got values in [{ln.min()}, {ln.max()}]")
        return np.ascontiguousarray(np.arange(T)[None, :] < ln[:, None], dtype=np.uint8)
    return None


def _tags(tags, B, T, K, mask):
    if tags is None:
        raise TypeError(f"tags must be an integer array of shape ({B}, {T}), got None")
    y = np.asarray(tags)
    if y.dtype.kind not in "iu":
        raise TypeError(f"tags must be an integer array, got dtype {y.dtype}")
    if y.shape != (B, T):
        raise ValueError(f"tags must have shape ({B}, {T}), got {shape_str(y.shape)}")
    y = np.ascontiguousarray(y, dtype=np.int64)
    if y.size == 0 or (y.min() >= 0 and y.max() < K):
        return y
    kept = y if mask is None else y[mask.astype(bool)]
    if kept.size and (kept.min() < 0 or kept.max() >= K):
        raise ValueError(f"tags must lie in [0, {K}) at unmasked positions, got values in "
                         f"[{kept.min()}, {kept.max()}]")
    return y


_NO_TAGS = object()  # _prepare's default: the function takes no tags (None is then an error)


def _prepare(emissions, transitions, start, end, mask, lengths, tags=_NO_TAGS, n_threads=1):
    # fast path: arrays already in kernel layout, values checked in one C pass (n_threads);
    # anything else (conversions, lengths, every error and its message) goes through the
    # checks below
    if lengths is None and tags is not None and _crf.fast_check(emissions, transitions, start, end, mask,
                                                                 None if tags is _NO_TAGS else tags, n_threads):
        return emissions, transitions, start, end, mask, None if tags is _NO_TAGS else tags
    em = _emissions(emissions)
    B, T, K = em.shape
    tr = _transitions(transitions, em.dtype, K)
    st = _scores(start, "start", em.dtype, (K,))
    en = _scores(end, "end", em.dtype, (K,))
    m = _mask(mask, lengths, B, T)
    y = None if tags is _NO_TAGS else _tags(tags, B, T, K, m)
    return em, tr, st, en, m, y


# a reduction's code for _crf.reduction_weight / _crf.memm_loss_grad (one weight for every sequence)
_REDUCTION_CODE = {"sum": 0, "none": 0, "mean": 1, "token_mean": 2}


def _reduction_code(reduction):
    code = _REDUCTION_CODE.get(reduction) if isinstance(reduction, str) else None
    if code is None:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return code


def _weights(reduction, m, B, T):
    w = np.empty(B)  # np.full costs a microsecond more (a Python-level function)
    w.fill(_crf.reduction_weight(_reduction_code(reduction), m, B, T))
    return w


def _reduce(per_seq, weights, reduction, dtype):
    if reduction == "none":
        return per_seq.astype(dtype)
    return dtype.type(np.dot(weights, per_seq)) if per_seq.size else dtype.type(0.0)


# ---------------------------------------------------------------- CRF
def crf_log_partition(emissions, transitions, start=None, end=None, *, mask=None, lengths=None,
                      n_threads=None):
    """log Z of a linear-chain CRF for every sequence of a batch.

    ``log Z = log sum_y exp(start[y_1] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_n])``
    over the kept positions.

    Parameters
    ----------
    emissions : ndarray of shape (B, T, K), float32 or float64
    transitions : ndarray of shape (K, K); ``-inf`` = forbidden
    start, end : ndarray of shape (K,), optional (zeros when omitted); ``-inf`` = forbidden
    mask : ndarray of shape (B, T), bool, optional
        True = real token; any pattern (holes, masked first token) is allowed.
    lengths : ndarray of shape (B,), int, optional
        Alternative to ``mask``.
    n_threads : int or None

    Returns
    -------
    ndarray of shape (B,), dtype of ``emissions``
        0 for a sequence with no kept position, ``-inf`` when constraints allow no path.

    Notes
    -----
    Exp-space forward with per-step rescaling (K^2 multiply-adds and K exps per
    token); a sequence whose rescaled recursion nears underflow (score ranges
    beyond ~40 in float32, or constraints leaving almost no mass) is redone in
    log space in float64, so the result is accurate for any finite scores.
    """
    n_threads = resolve_n_threads(n_threads)
    if lengths is None:  # arrays in kernel layout: checked and computed in one call
        out = _crf.forward(emissions, transitions, start, end, mask, None, n_threads, 0, True)
        if out is not None:
            return out
    em, tr, st, en, m, _ = _prepare(emissions, transitions, start, end, mask, lengths)
    return _crf.forward(em, tr, st, en, m, None, n_threads, 0, False)


def crf_score(emissions, tags, transitions, start=None, end=None, *, mask=None, lengths=None,
              n_threads=None):
    """Unnormalised score of the label sequences ``tags`` (B, T) over the kept positions.

    ``tags`` is read only at kept positions (anything may sit at masked ones);
    labels outside ``[0, K)`` there are a ValueError.  A forbidden path scores
    ``-inf``.  Accumulated in float64; returns (B,) in the dtype of ``emissions``.
    Other parameters as in :func:`crf_log_partition`.
    """
    n_threads = resolve_n_threads(n_threads)
    if lengths is None:
        out = _crf.forward(emissions, transitions, start, end, mask, tags, n_threads, 1, True)
        if out is not None:
            return out
    em, tr, st, en, m, y = _prepare(emissions, transitions, start, end, mask, lengths, tags)
    return _crf.forward(em, tr, st, en, m, y, n_threads, 1, False)


def crf_log_likelihood(emissions, tags, transitions, start=None, end=None, *, mask=None, lengths=None,
                       n_threads=None):
    """``log P(tags | emissions) = score(tags) - log Z``, shape (B,).

    0 for an empty sequence; ``-inf`` for a forbidden path (and when no path is
    allowed at all).  Parameters as in :func:`crf_score`.
    """
    n_threads = resolve_n_threads(n_threads)
    if lengths is None:
        out = _crf.forward(emissions, transitions, start, end, mask, tags, n_threads, 2, True)
        if out is not None:
            return out
    em, tr, st, en, m, y = _prepare(emissions, transitions, start, end, mask, lengths, tags)
    return _crf.forward(em, tr, st, en, m, y, n_threads, 2, False)


def _ll(score, logz):
    return _crf.loglik(score, logz)  # score - logz, and -inf for -inf - (-inf): no allowed path at all


def crf_marginals(emissions, transitions, start=None, end=None, *, mask=None, lengths=None,
                  pairwise=False, n_threads=None):
    """Posterior label marginals by forward-backward.

    Returns
    -------
    node : ndarray of shape (B, T, K), dtype of ``emissions``
        ``P(y_t = j)``; rows sum to 1 at kept positions, 0 at masked positions
        (and everywhere for a sequence whose constraints allow no path).
    pair : ndarray of shape (B, T, K, K), only when ``pairwise=True``
        ``pair[b, t, i, j] = P(y_prev = i, y_t = j)`` where ``prev`` is the
        previous *kept* position; 0 at the first kept position and at masked ones.

    Other parameters as in :func:`crf_log_partition`.
    """
    n_threads = resolve_n_threads(n_threads)
    em, tr, st, en, m, _ = _prepare(emissions, transitions, start, end, mask, lengths, n_threads=n_threads)
    out = _crf.forward_backward(em, tr, st, en, m, None, None, True, bool(pairwise), False, n_threads)
    return (out["node"], out["pair"]) if pairwise else out["node"]


def crf_nll_grad(emissions, tags, transitions, start=None, end=None, *, mask=None, lengths=None,
                 reduction="sum", n_threads=None):
    """Negative log-likelihood and its gradients, in one forward-backward pass.

    Parameters
    ----------
    emissions, tags, transitions, start, end, mask, lengths, n_threads
        As in :func:`crf_log_likelihood`.
    reduction : {"sum", "mean", "token_mean", "none"}, default "sum"
        "sum" over sequences (pytorch-crf's default), "mean" over sequences,
        "token_mean" divided by the number of kept tokens (0 when there are none),
        "none" the (B,) per-sequence losses.

    Returns
    -------
    loss : scalar (or (B,) for "none") in the dtype of ``emissions``
    grads : dict
        ``"emissions"`` (B, T, K) (0 at masked positions), ``"transitions"`` (K, K),
        ``"start"`` (K,) and ``"end"`` (K,) (``None`` when that argument was not
        given): gradients of the reduced loss (of ``loss.sum()`` for "none").
        ``d loss / d emissions[b, t] = w_b (marginal_t - onehot(tags_t))``.

    Notes
    -----
    Peak extra memory is O(B*T*K) (no pairwise table).  A forbidden gold path
    gives loss ``+inf`` but finite gradients (expected minus observed counts);
    a sequence whose constraints allow no path contributes ``-onehot`` only.
    Gradients of forbidden (-inf) entries are 0 in the expectation part.
    """
    n_threads = resolve_n_threads(n_threads)
    em, tr, st, en, m, y = _prepare(emissions, transitions, start, end, mask, lengths, tags, n_threads)
    B, T, _ = em.shape
    w = _weights(reduction, m, B, T)
    out = _crf.forward_backward(em, tr, st, en, m, y, w, False, False, True, n_threads)
    nll = -_ll(out["score"], out["logz"])
    loss = _reduce(nll, w, reduction, em.dtype)
    grads = {"emissions": out["g_em"], "transitions": out["g_trans"],
             "start": out["g_start"] if start is not None else None,
             "end": out["g_end"] if end is not None else None}
    return loss, grads


def viterbi(emissions, transitions, start=None, end=None, *, mask=None, lengths=None, top_k=1,
            n_threads=None):
    """Best label sequence(s) of a linear-chain CRF.

    Parameters
    ----------
    top_k : int, default 1
        Number of best distinct paths (exact list Viterbi when > 1).
    Others as in :func:`crf_log_partition`.

    Returns
    -------
    paths : ndarray of int64, shape (B, T) for ``top_k=1``, else (B, top_k, T)
        Labels at kept positions, -1 at masked ones.  Paths come in order of
        decreasing score.  When fewer than ``top_k`` allowed paths exist (short
        sequences, constraints), the missing ones are all -1 with score -inf; a
        sequence whose constraints allow no path gets -1 and -inf even for
        ``top_k=1``.  An empty sequence has one (empty) path of score 0.
    scores : ndarray of shape (B,) or (B, top_k), dtype of ``emissions``
        Path scores, recomputed in float64 along the returned path.

    Notes
    -----
    Ties are broken deterministically, lowest index first: at each step the
    predecessor with the lowest label index among equal maxima wins, and so does
    the lowest final label.  For ``top_k > 1`` equal-scored paths are ordered by
    (last label, then the rank of their prefix), lowest first.  Top-1 decoding
    runs in the input precision with SIMD lanes across the target labels; n-best
    runs in float64.
    """
    n_threads = resolve_n_threads(n_threads)
    if isinstance(top_k, bool) or not hasattr(top_k, "__index__"):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    top_k = int(top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    out = None
    if lengths is None:  # arrays in kernel layout: checked and decoded in one call
        out = _crf.viterbi(emissions, transitions, start, end, mask, top_k, n_threads, True)
    if out is None:
        em, tr, st, en, m, _ = _prepare(emissions, transitions, start, end, mask, lengths)
        out = _crf.viterbi(em, tr, st, en, m, top_k, n_threads, False)
    return out


# ---------------------------------------------------------------- constraints
_SCHEMES = {"BIO": "BIO", "IOB2": "BIO", "BIOES": "BIOES", "BIOUL": "BIOES", "BILOU": "BIOES", "IOBES": "BIOES",
            "BMES": "BMES"}


def _parse_label(label, scheme):
    s = str(label)
    if s == "O":
        return "O", None
    for sep in ("-", "_"):
        if len(s) >= 2 and s[1] == sep:
            p, typ = s[0], s[2:]
            break
    else:
        if len(s) == 1:
            p, typ = s, None
        else:
            raise ValueError(f"label {s!r} is not of the form 'O', 'X' or 'X-TYPE' for scheme {scheme}")
    if scheme == "BIOES":
        p = {"U": "S", "L": "E"}.get(p, p)
    allowed = {"BIO": "BI", "BIOES": "BIES", "BMES": "BMES"}[scheme]
    if p not in allowed:
        raise ValueError(f"label {s!r} has prefix {s[0]!r}, not one of {allowed} (or 'O') for scheme {scheme}")
    return p, typ


def allowed_transitions(scheme, labels):
    """Which label transitions a tagging scheme allows.

    Parameters
    ----------
    scheme : {"BIO", "BIOES", "BIOUL", "BMES"}
        ``BIO`` (IOB2): ``I-X`` only after ``B-X`` or ``I-X``, never first.
        ``BIOES``/``BIOUL`` (U = S, L = E): inside a chunk (after ``B-X``/``I-X``)
        only ``I-X``/``E-X`` may follow; outside a chunk (start, after ``O``, ``E``,
        ``S``) only ``O``, ``B-*`` or ``S-*``; the sequence must end outside a chunk.
        ``BMES`` (word segmentation, optionally typed ``B-X``): the same with ``M``
        for ``I`` (``O`` is allowed and treated as outside a chunk).
    labels : sequence of str
        The K label names in index order, e.g. ``["O", "B-PER", "I-PER"]``.

    Returns
    -------
    allowed : ndarray of shape (K, K), bool
        ``allowed[i, j]``: label i may be followed by label j.
    start : ndarray of shape (K,), bool
        Labels allowed first.
    end : ndarray of shape (K,), bool
        Labels allowed last.

    Use :func:`constraint_scores` to turn them into ``0 / -inf`` additive scores for
    ``transitions``, ``start`` and ``end`` (in training and decoding alike).
    """
    key = str(scheme).upper()
    if key not in _SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(_SCHEMES)}, got {scheme!r}")
    sch = _SCHEMES[key]
    parsed = [_parse_label(lab, sch) for lab in labels]
    K = len(parsed)
    if K == 0:
        raise ValueError("labels must not be empty")
    inside = "I" if sch in ("BIO", "BIOES") else "M"
    allowed = np.zeros((K, K), dtype=bool)
    start = np.zeros(K, dtype=bool)
    end = np.zeros(K, dtype=bool)
    for j, (pj, tj) in enumerate(parsed):
        if sch == "BIO":
            start[j] = pj != "I"
            end[j] = True
        else:
            start[j] = pj in ("O", "B", "S")
            end[j] = pj in ("O", "E", "S")
        for i, (pi, ti) in enumerate(parsed):
            if sch == "BIO":
                ok = pj in ("O", "B") or (pj == "I" and pi in ("B", "I") and ti == tj)
            else:
                open_i = pi in ("B", inside)  # i leaves a chunk open
                if open_i:
                    ok = pj in (inside, "E") and ti == tj
                else:
                    ok = pj in ("O", "B", "S")
            allowed[i, j] = ok
    return allowed, start, end


def constraint_scores(allowed, start=None, end=None, dtype=np.float64):
    """``0`` where allowed, ``-inf`` where not: additive scores for transitions/start/end.

    ``transitions + t`` (and ``start + s``, ``end + e``) then give every
    forbidden path probability 0 in :func:`crf_log_partition` and friends and
    exclude it from :func:`viterbi`.  Returns ``(t, s, e)`` (``s``/``e`` None when
    not given).
    """
    def conv(a):
        if a is None:
            return None
        a = np.asarray(a, dtype=bool)
        return np.where(a, 0.0, -np.inf).astype(dtype)

    return conv(allowed), conv(start), conv(end)


# ---------------------------------------------------------------- MEMM
def _memm_loss(emissions, tags, transitions, mask, lengths, bidirectional, weighting, per_seq, want_grad,
               n_threads):
    """_crf.memm_loss_grad on the user's arrays: in one call when they are already in kernel
    layout (lengths None), through _memm_prepare otherwise.  Returns (loss, g_em, g_trans,
    dtype of the emissions)."""
    bidir = bool(bidirectional)
    r = None
    if lengths is None:
        r = _crf.memm_loss_grad(emissions, transitions, mask, tags, bidir, weighting, per_seq, want_grad,
                                n_threads, True)
    if r is None:
        em, tr, m, y = _memm_prepare(emissions, transitions, mask, lengths, tags)
        r = _crf.memm_loss_grad(em, tr, m, y, bidir, weighting, per_seq, want_grad, n_threads, False)
        return r + (em.dtype,)
    return r + (emissions.dtype,)


def _memm_prepare(emissions, transitions, mask, lengths, tags=_NO_TAGS):
    y = None if tags is _NO_TAGS else tags
    if lengths is None and tags is not None and _crf.fast_check(emissions, transitions, None, None, mask, y):
        return emissions, transitions, mask, y
    em = _emissions(emissions)
    B, T, K = em.shape
    tr = _transitions(transitions, em.dtype, K)
    m = _mask(mask, lengths, B, T)
    y = None if tags is _NO_TAGS else _tags(tags, B, T, K, m)
    return em, tr, m, y


def memm_log_likelihood(emissions, tags, transitions, *, mask=None, lengths=None, bidirectional=False,
                        n_threads=None):
    """Log-likelihood of ``tags`` under a (bidirectional) maximum-entropy Markov model.

    Left to right (SEED_SPEC section 4): ``P(y_1) = softmax(f_1)[y_1]`` and
    ``P(y_k | y_{k-1}) = softmax_b(G[y_{k-1}, b] + f_k(b))[y_k]`` with
    ``f = emissions``, ``G = transitions``.  With ``bidirectional=True`` the
    result is the mean of that and the right-to-left log-likelihood, which uses
    the same ``G`` read column-wise: ``P_b(y_n) = softmax(f_n)[y_n]``,
    ``P_b(y_k | y_{k+1}) = softmax_a(G[a, y_{k+1}] + f_k(a))[y_k]`` (the reversal
    follows the mask, so padding may be anywhere).

    The logits are **not halved**: we follow the post (Su, 2020; SEED_SPEC section 4),
    not bert4keras, whose MEMM layer feeds ``(f_t + G[y_{t-1}]) / 2`` to the softmax
    for t > 1 (but ``f_1`` unhalved) and averages each direction's loss over tokens.
    Halving is a reparametrisation of ``f`` and ``G`` (except at the first step), so
    the model family is the same; passing ``emissions / 2`` and ``transitions / 2``
    reproduces bert4keras everywhere but at the first position of each direction.

    Returns (B,) in the dtype of ``emissions``; 0 for an empty sequence, ``-inf``
    when a gold transition is forbidden (``-inf`` in ``transitions``).
    """
    n_threads = resolve_n_threads(n_threads)
    ll, _, _, dt = _memm_loss(emissions, tags, transitions, mask, lengths, bidirectional, 0, True, False,
                              n_threads)
    return ll.astype(dt)


def memm_nll_grad(emissions, tags, transitions, *, mask=None, lengths=None, bidirectional=False,
                  reduction="sum", n_threads=None):
    """MEMM negative log-likelihood and its gradients (teacher forcing, fully parallel).

    ``loss = -memm_log_likelihood(...)`` reduced as in :func:`crf_nll_grad`
    (``bidirectional=True``: the mean of both directions, per sequence).
    Returns ``(loss, {"emissions": (B, T, K), "transitions": (K, K)})`` with
    ``d loss / d logits_k = w_b (softmax_k - onehot(y_k))`` per step and direction (halved
    for the bidirectional mean), 0 at masked positions.  A forbidden gold transition
    (``-inf``) gives loss ``+inf`` and finite gradients.  No halving of the logits (see
    :func:`memm_log_likelihood`).  Per token: one K-wide softmax per direction, fully
    parallel over tokens (no forward-backward); both directions are done in one pass and
    share one exp per label (``exp(f - max f)`` times precomputed ``exp`` rows of ``G``),
    a token whose shared normaliser would underflow being redone exactly.
    """
    n_threads = resolve_n_threads(n_threads)
    # every reduction weighs all sequences alike (_weights): one scalar weight
    weighting = _reduction_code(reduction)
    loss, ge, gt, dt = _memm_loss(emissions, tags, transitions, mask, lengths, bidirectional, weighting,
                                  reduction == "none", True, n_threads)
    if reduction == "none":
        loss = (-loss).astype(dt)
    return loss, {"emissions": ge, "transitions": gt}


def memm_decode(emissions, transitions, *, mask=None, lengths=None, bidirectional=False, mode="exact",
                top_k=1, n_threads=None):
    """Most likely label sequence(s) under a MEMM.

    mode : {"exact", "raw"} (``"crf"`` is an alias of ``"raw"``)
        ``"exact"``: the true MAP of the model, a Viterbi over the locally
        normalised log-probabilities (for ``bidirectional=True`` over the mean of
        both directions' log-probabilities, which is still a chain); the scores
        returned are :func:`memm_log_likelihood` of the paths.
        ``"raw"``: Viterbi on the raw scores ``f + G`` exactly like a CRF without
        start/end (what bert4keras's examples do); scores are CRF path scores.
    Other parameters and returns as in :func:`viterbi`.
    """
    n_threads = resolve_n_threads(n_threads)
    if mode not in ("exact", "raw", "crf"):
        raise ValueError(f"mode must be 'exact' or 'raw' (alias 'crf'), got {mode!r}")
    em, tr, m, _ = _memm_prepare(emissions, transitions, mask, lengths)
    if mode == "exact":
        wf, wb = (0.5, 0.5) if bidirectional else (1.0, 0.0)
        pot = _crf.memm_potentials(em, tr, m, wf, wb, resolve_n_threads(n_threads))
        if m is not None:
            pot[~m.astype(bool)] = 0.0
        return _viterbi_pot(pot, tr, m, top_k, n_threads)
    return viterbi(em, tr, mask=m, top_k=top_k, n_threads=n_threads)


def _viterbi_pot(pot, tr, m, top_k, n_threads):
    """Viterbi on potentials that may hold -inf (MEMM labels that cannot be continued)."""
    if isinstance(top_k, bool) or not hasattr(top_k, "__index__"):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    top_k = int(top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    # the C Viterbi accepts -inf unaries (labels a MEMM cannot continue from); no +inf/NaN here
    return _crf.viterbi(np.ascontiguousarray(pot), tr, None, None, m, top_k, n_threads, False)


# ---------------------------------------------------------------- objects
class CRF:
    """A linear-chain CRF holding its parameters; the functions above do the work.

    Parameters
    ----------
    num_tags : int
    start_end : bool, default True
        Learn ``start`` and ``end`` score vectors (as pytorch-crf does).
    dtype : float32 or float64, default float32
    rng : numpy.random.Generator or int seed, optional
        Parameters start uniform in [-0.1, 0.1] (pytorch-crf's initialisation).

    Attributes
    ----------
    transitions : ndarray (K, K); start, end : ndarray (K,) or None
        Plain arrays: update them in place with your optimiser.
    allowed, allowed_start, allowed_end : bool arrays or None
        Set by :meth:`constrain`; forbidden entries get ``-inf`` added on every call
        (training and decoding), the parameters themselves stay finite.
    """

    def __init__(self, num_tags, *, start_end=True, dtype=np.float32, rng=None):
        if isinstance(num_tags, bool) or not hasattr(num_tags, "__index__") or int(num_tags) < 1:
            raise ValueError(f"num_tags must be a positive int, got {num_tags!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        K = int(num_tags)
        rng = np.random.default_rng(rng)
        self.num_tags = K
        self.transitions = rng.uniform(-0.1, 0.1, (K, K)).astype(dtype)
        self.start = rng.uniform(-0.1, 0.1, K).astype(dtype) if start_end else None
        self.end = rng.uniform(-0.1, 0.1, K).astype(dtype) if start_end else None
        self.allowed = self.allowed_start = self.allowed_end = None

    def constrain(self, scheme, labels):
        """Forbid the transitions a tagging scheme disallows (see :func:`allowed_transitions`)."""
        if len(labels) != self.num_tags:
            raise ValueError(f"labels must have {self.num_tags} entries, got {len(labels)}")
        self.allowed, self.allowed_start, self.allowed_end = allowed_transitions(scheme, labels)
        return self

    def _params(self):
        tr, st, en = self.transitions, self.start, self.end
        if self.allowed is not None:
            t, s, e = constraint_scores(self.allowed, self.allowed_start, self.allowed_end, tr.dtype)
            tr = tr + t
            st = s if st is None else st + s
            en = e if en is None else en + e
        return tr, st, en

    def log_partition(self, emissions, *, mask=None, lengths=None, n_threads=None):
        return crf_log_partition(emissions, *self._params(), mask=mask, lengths=lengths, n_threads=n_threads)

    def log_likelihood(self, emissions, tags, *, mask=None, lengths=None, n_threads=None):
        return crf_log_likelihood(emissions, tags, *self._params(), mask=mask, lengths=lengths,
                                  n_threads=n_threads)

    def marginals(self, emissions, *, mask=None, lengths=None, pairwise=False, n_threads=None):
        return crf_marginals(emissions, *self._params(), mask=mask, lengths=lengths, pairwise=pairwise,
                             n_threads=n_threads)

    def nll_grad(self, emissions, tags, *, mask=None, lengths=None, reduction="sum", n_threads=None):
        """``(loss, grads)`` as :func:`crf_nll_grad`; ``grads["start"]``/``["end"]`` are None
        without start/end parameters (constraints alone add no parameters)."""
        tr, st, en = self._params()
        loss, g = crf_nll_grad(emissions, tags, tr, st, en, mask=mask, lengths=lengths, reduction=reduction,
                               n_threads=n_threads)
        if self.start is None:
            g["start"] = g["end"] = None
        return loss, g

    def decode(self, emissions, *, mask=None, lengths=None, top_k=1, n_threads=None):
        return viterbi(emissions, *self._params(), mask=mask, lengths=lengths, top_k=top_k, n_threads=n_threads)


class MEMM:
    """A (bidirectional) MEMM holding its transition matrix (see :func:`memm_nll_grad`).

    ``MEMM(num_tags, bidirectional=False, dtype=np.float32, rng=None)``; ``transitions`` starts
    uniform in [-0.1, 0.1].  ``decode(..., mode="exact")`` is the model's MAP, ``mode="raw"`` the
    CRF-style Viterbi on raw scores.
    """

    def __init__(self, num_tags, *, bidirectional=False, dtype=np.float32, rng=None):
        base = CRF(num_tags, start_end=False, dtype=dtype, rng=rng)
        self.num_tags = base.num_tags
        self.transitions = base.transitions
        self.bidirectional = bool(bidirectional)

    def log_likelihood(self, emissions, tags, *, mask=None, lengths=None, n_threads=None):
        return memm_log_likelihood(emissions, tags, self.transitions, mask=mask, lengths=lengths,
                                   bidirectional=self.bidirectional, n_threads=n_threads)

    def nll_grad(self, emissions, tags, *, mask=None, lengths=None, reduction="sum", n_threads=None):
        return memm_nll_grad(emissions, tags, self.transitions, mask=mask, lengths=lengths,
                             bidirectional=self.bidirectional, reduction=reduction, n_threads=n_threads)

    def decode(self, emissions, *, mask=None, lengths=None, mode="exact", top_k=1, n_threads=None):
        return memm_decode(emissions, self.transitions, mask=mask, lengths=lengths,
                           bidirectional=self.bidirectional, mode=mode, top_k=top_k, n_threads=n_threads)


# ---------------------------------------------------------------- tour
def tour_crf(show):
    """The tour's section for this module (see fastcore/_tour.py)."""
    from fastcore._tour import timed

    show.title("crf: linear-chain CRF / MEMM")
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed, st, en = allowed_transitions("BIO", labels)
    t_bias, s_bias, _ = constraint_scores(allowed, st, en)
    rng = np.random.default_rng(0)
    em = rng.standard_normal((1, 6, 5))
    path, score = viterbi(em, t_bias, s_bias)
    show.line("labels            " + str(labels))
    show.line("BIO-constrained Viterbi path " + str([labels[i] for i in path[0]]) + f"  score {score[0]:.3f}")
    show.line("log Z             " + f"{crf_log_partition(em, t_bias, s_bias)[0]:.4f}")

    B, T, K = 32, 128, 9
    em = rng.standard_normal((B, T, K)).astype(np.float32)
    tr = rng.standard_normal((K, K)).astype(np.float32)
    y = rng.integers(0, K, (B, T))

    def np_logz(e, t):
        a = e[:, 0]
        for s in range(1, e.shape[1]):
            v = a[:, :, None] + t[None]
            mx = v.max(1)
            a = mx + np.log(np.exp(v - mx[:, None, :]).sum(1)) + e[:, s]
        mx = a.max(1)
        return mx + np.log(np.exp(a - mx[:, None]).sum(1))

    _, tf = timed(crf_log_partition, em, tr, n_threads=1)
    _, tn = timed(np_logz, em, tr, repeat=2)
    show.compare("crf_log_partition (32,128,9) f32, 1 thread", tf, tn)
    _, tf = timed(crf_nll_grad, em, y, tr, n_threads=1)
    show.line(f"crf_nll_grad (32,128,9): {tf * 1e9 / (B * T):.0f} ns/token")
    _, tf = timed(viterbi, em, tr, n_threads=1)
    show.line(f"viterbi (32,128,9): {tf * 1e9 / (B * T):.0f} ns/token")
