"""fastcore.crf beside pytorch-crf (torch autograd) and batch-vectorised NumPy baselines.

Shapes (B, T, K) from issue 3, float32, ragged lengths (the longest sequence is full,
so pytorch-crf's first-token-unmasked rule holds).  Times are per token (B*T).
"""
import os

import numpy as np

from fastcore import crf
from _harness import Case, benchmark_tests, have

SHAPES = [(32, 128, 9), (32, 128, 50), (1, 1000, 9), (256, 64, 20)]


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _setup(shape):
    def make():
        B, T, K = shape
        rng = np.random.default_rng(0)
        em = rng.standard_normal((B, T, K), dtype=np.float32)
        tr = (0.5 * rng.standard_normal((K, K))).astype(np.float32)
        st = (0.5 * rng.standard_normal(K)).astype(np.float32)
        en = (0.5 * rng.standard_normal(K)).astype(np.float32)
        lengths = rng.integers(T // 2, T + 1, size=B)
        lengths[0] = T
        mask = np.arange(T)[None, :] < lengths[:, None]
        tags = rng.integers(0, K, (B, T))
        d = dict(em=em, tr=tr, st=st, en=en, mask=mask, tags=tags)
        if have("torchcrf"):
            import torch
            from torchcrf import CRF

            model = CRF(K, batch_first=True)
            with torch.no_grad():
                model.transitions.copy_(torch.from_numpy(tr))
                model.start_transitions.copy_(torch.from_numpy(st))
                model.end_transitions.copy_(torch.from_numpy(en))
            d.update(model=model, t_em=torch.from_numpy(em), t_tags=torch.from_numpy(tags),
                     t_mask=torch.from_numpy(mask))
        return d

    return make


# ---------------------------------------------------------------- NumPy baselines (log space)
def _np_lse(v, axis):
    m = v.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(v - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_loglik(d):
    em, tr, st, en, mask, tags = d["em"], d["tr"], d["st"], d["en"], d["mask"], d["tags"]
    B, T, K = em.shape
    ar = np.arange(B)
    a = st + em[:, 0]
    score = st[tags[:, 0]] + em[ar, 0, tags[:, 0]]
    for t in range(1, T):
        nxt = _np_lse(a[:, :, None] + tr[None], 1) + em[:, t]
        a = np.where(mask[:, t, None], nxt, a)
        score = score + mask[:, t] * (tr[tags[:, t - 1], tags[:, t]] + em[ar, t, tags[:, t]])
    last = tags[ar, mask.sum(1) - 1]
    return score + en[last] - _np_lse(a + en, 1)


def np_nll_grad(d):
    """Log-space forward-backward, gradients of the summed NLL for emissions and transitions."""
    em, tr, st, en, mask, tags = d["em"], d["tr"], d["st"], d["en"], d["mask"], d["tags"]
    B, T, K = em.shape
    alpha = np.empty((B, T, K), em.dtype)
    alpha[:, 0] = st + em[:, 0]
    for t in range(1, T):
        nxt = _np_lse(alpha[:, t - 1, :, None] + tr[None], 1) + em[:, t]
        alpha[:, t] = np.where(mask[:, t, None], nxt, alpha[:, t - 1])
    logz = _np_lse(alpha[:, -1] + en, 1)
    beta = np.empty_like(alpha)
    beta[:, -1] = en
    g_tr = np.zeros((K, K), np.float64)
    for t in range(T - 1, 0, -1):
        v = tr[None] + (em[:, t] + beta[:, t])[:, None, :]  # (B, i, j)
        xi = np.exp(alpha[:, t - 1, :, None] + v - logz[:, None, None]) * mask[:, t, None, None]
        g_tr += xi.sum(0)
        prev = _np_lse(v, 2)
        beta[:, t - 1] = np.where(mask[:, t, None], prev, beta[:, t])
    node = np.exp(alpha + beta - logz[:, None, None]) * mask[..., None]
    onehot = np.eye(K, dtype=em.dtype)[tags] * mask[..., None]
    g_em = node - onehot
    ar = np.arange(B)
    for t in range(1, T):
        np.add.at(g_tr, (tags[:, t - 1], tags[:, t]), -mask[:, t].astype(np.float64))
    del ar
    return g_em, g_tr


def np_viterbi(d):
    em, tr, st, en, mask = d["em"], d["tr"], d["st"], d["en"], d["mask"]
    B, T, K = em.shape
    delta = st + em[:, 0]
    bp = np.zeros((B, T, K), np.int64)
    for t in range(1, T):
        v = delta[:, :, None] + tr[None]
        arg = v.argmax(1)
        nxt = np.take_along_axis(v, arg[:, None, :], 1)[:, 0] + em[:, t]
        keep = mask[:, t, None]
        delta = np.where(keep, nxt, delta)
        bp[:, t] = np.where(keep, arg, np.arange(K)[None])
    last = (delta + en).argmax(1)
    out = np.empty((B, T), np.int64)
    for t in range(T - 1, -1, -1):
        out[:, t] = last
        last = bp[np.arange(B), t, last]
    return np.where(mask, out, -1)


def np_bimemm(d):
    """Bi-MEMM NLL + gradients, batch-vectorised (full-length sequences use the mask as weights)."""
    em, tr, mask, tags = d["em"], d["tr"], d["mask"], d["tags"]
    B, T, K = em.shape
    w = mask.astype(em.dtype)
    prev = np.concatenate([np.zeros((B, 1), np.int64), tags[:, :-1]], 1)
    logits = em + tr[prev]
    logits[:, 0] = em[:, 0]
    p = np.exp(logits - _np_lse(logits, 2)[..., None])
    onehot = np.eye(K, dtype=em.dtype)[tags]
    g_f = (p - onehot) * w[..., None]
    lengths = mask.sum(1)
    nxt_idx = np.minimum(np.arange(T)[None] + 1, T - 1)
    nxt = np.take_along_axis(tags, np.broadcast_to(nxt_idx, (B, T)), 1)
    logits_b = em + tr.T[nxt]
    last = np.arange(T)[None] == (lengths[:, None] - 1)
    logits_b = np.where(last[..., None], em, logits_b)
    q = np.exp(logits_b - _np_lse(logits_b, 2)[..., None])
    g_b = (q - onehot) * w[..., None]
    g_em = 0.5 * (g_f + g_b)
    g_tr = np.zeros((K, K))
    np.add.at(g_tr, prev[:, 1:], 0.5 * g_f[:, 1:])
    gb = g_b * (~last)[..., None]
    np.add.at(g_tr.T, nxt[:, :-1], 0.5 * gb[:, :-1])
    return g_em, g_tr


# ---------------------------------------------------------------- cases
def _check_close(key, rtol=1e-3, atol=1e-3):
    def check(results):
        ref = results["fastcore"]
        for name, v in results.items():
            np.testing.assert_allclose(np.asarray(key(v, name)), np.asarray(key(ref, "fastcore")),
                                       rtol=rtol, atol=atol, err_msg=name)
    return check


def cases():
    out = []
    n_th = _threads()
    for shape in SHAPES:
        B, T, K = shape
        tag = f"({B},{T},{K}) f32"
        work = ("token", B * T)
        setup = _setup(shape)

        ll = {
            "fastcore": lambda d: crf.crf_log_likelihood(d["em"], d["tags"], d["tr"], d["st"], d["en"],
                                                         mask=d["mask"], n_threads=n_th),
            "numpy": np_loglik,
        }
        nll = {
            "fastcore": lambda d: crf.crf_nll_grad(d["em"], d["tags"], d["tr"], d["st"], d["en"],
                                                   mask=d["mask"], n_threads=n_th)[1]["transitions"],
            "numpy": lambda d: np_nll_grad(d)[1],
        }
        vit = {
            "fastcore": lambda d: crf.viterbi(d["em"], d["tr"], d["st"], d["en"], mask=d["mask"],
                                              n_threads=n_th)[0],
            "numpy": np_viterbi,
        }
        memm = {
            "fastcore": lambda d: crf.memm_nll_grad(d["em"], d["tags"], d["tr"], mask=d["mask"],
                                                    bidirectional=True, reduction="sum",
                                                    n_threads=n_th)[1]["transitions"],
            "numpy": lambda d: np_bimemm(d)[1],
        }
        if have("torchcrf"):
            import torch

            def torch_ll(d):
                with torch.no_grad():
                    return d["model"](d["t_em"], d["t_tags"], mask=d["t_mask"], reduction="none").numpy()

            def torch_nll(d):
                d["model"].zero_grad()
                e = d["t_em"].clone().requires_grad_(True)
                (-d["model"](e, d["t_tags"], mask=d["t_mask"], reduction="sum")).backward()
                return d["model"].transitions.grad.numpy().copy()

            def torch_decode(d):
                with torch.no_grad():
                    paths = d["model"].decode(d["t_em"], mask=d["t_mask"])
                out = np.full(d["mask"].shape, -1, np.int64)
                for b, p in enumerate(paths):
                    out[b, :len(p)] = p
                return out

            ll["pytorch-crf"] = torch_ll
            nll["pytorch-crf"] = torch_nll
            vit["pytorch-crf"] = torch_decode
        out += [
            Case("crf", f"log-likelihood {tag}", setup, ll, work, _check_close(lambda v, n: v, 1e-4, 1e-2)),
            Case("crf", f"NLL+grad {tag}", setup, nll, work, _check_close(lambda v, n: v, 1e-3, 1e-2)),
            Case("crf", f"Viterbi {tag}", setup, vit, work,
                 _check_close(lambda v, n: v, 0, 0) if K < 50 else None),
            Case("crf", f"Bi-MEMM NLL+grad {tag}", setup, memm, work, _check_close(lambda v, n: v, 1e-3, 1e-2)),
        ]
    return out


test_crf = benchmark_tests(cases)
