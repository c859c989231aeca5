"""A CRF head and a Bi-MEMM head in a torch training step (forward + backward), (32, 128, 9) float32.

fastcore.torch.CRF beside pytorch-crf's torchcrf.CRF (its autograd tape), and
fastcore.torch.MEMM(bidirectional=True) beside the same model written with torch ops
(log_softmax of emissions + transition rows, both directions, gathered at the gold tags).
Threads from FASTCORE_BENCH_THREADS (compare.py --threads); work is counted in tokens.
"""
import os

import numpy as np

from _harness import Case, benchmark_tests, have

SHAPE = (32, 128, 9)


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _setup():
    import torch

    B, T, K = SHAPE
    g = torch.Generator().manual_seed(0)
    em = torch.randn(B, T, K, generator=g)
    tags = torch.randint(0, K, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return dict(em=em, tags=tags, mask=mask, K=K)


def _step(make_model, loss_fn):
    """Build the model once per inputs (same seed for every implementation), then a step:
    loss, backward, return (loss, d loss / d emissions) for the agreement check."""
    def run(d):
        key = ("model", make_model)
        if key not in d:
            d[key] = make_model(d)
        model = d[key]
        for p in model.parameters():
            p.grad = None
        em = d["em"].detach().requires_grad_()
        loss = loss_fn(model, em, d)
        loss.backward()
        return loss.item(), em.grad.numpy()

    return run


def _copy_params(dst, d):
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in dst.named_parameters():
            p.copy_(0.1 * torch.randn(p.shape))
    return dst


def _fc_crf(d):
    from fastcore.torch import CRF

    return _copy_params(CRF(d["K"], batch_first=True), d)


def _torchcrf(d):
    from torchcrf import CRF

    return _copy_params(CRF(d["K"], batch_first=True), d)


def _crf_loss(model, em, d):
    return -model(em, d["tags"], d["mask"], reduction="sum")


def _fc_memm(d):
    from fastcore.torch import MEMM

    return _copy_params(MEMM(d["K"], bidirectional=True, batch_first=True), d)


def _fc_memm_loss(model, em, d):
    return -model(em, d["tags"], d["mask"], reduction="sum")


class _TorchBiMEMM:
    """The Bi-MEMM log-likelihood in torch ops (masked positions removed from the chain is
    what fastcore does; here the masks are right-padding, so neighbours are the adjacent steps)."""

    def __init__(self, K):
        import torch

        self.transitions = torch.nn.Parameter(torch.empty(K, K))

    def parameters(self):
        return [self.transitions]

    def named_parameters(self):
        return [("transitions", self.transitions)]


def _torch_memm(d):
    return _copy_params(_TorchBiMEMM(d["K"]), d)


def _torch_memm_loss(model, em, d):
    import torch

    G, y, m = model.transitions, d["tags"], d["mask"]
    B, T, K = em.shape
    # forward direction: step t conditions on y[t-1] (no previous label at t = 0)
    prev = torch.cat([torch.zeros(B, 1, K), G[y[:, :-1]]], dim=1)
    fwd = torch.log_softmax(em + prev, -1).gather(-1, y[..., None])[..., 0]
    # backward direction: step t conditions on y[t+1] (none at the last kept step)
    nxt = G[:, y[:, 1:]].permute(1, 2, 0)  # (B, T-1, K): G[c, y[t+1]]
    last = (m.sum(1) - 1)[:, None]
    has_next = torch.arange(T - 1)[None, :] < last
    nxt = torch.where(has_next[..., None], nxt, torch.zeros(()))
    nxt = torch.cat([nxt, torch.zeros(B, 1, K)], dim=1)
    bwd = torch.log_softmax(em + nxt, -1).gather(-1, y[..., None])[..., 0]
    return -(0.5 * (fwd + bwd) * m).sum()


def _check(results):
    loss, grad = results["fastcore"]
    for name, (l2, g2) in results.items():
        np.testing.assert_allclose(l2, loss, rtol=2e-5, err_msg=name)
        np.testing.assert_allclose(g2, grad, rtol=1e-3, atol=1e-5, err_msg=name)


def cases():
    if not have("torch"):
        return []
    B, T, K = SHAPE
    work = ("token", B * T)
    out = []
    impls = {"fastcore": _step(_fc_crf, _crf_loss)}
    if have("torchcrf"):
        impls["torchcrf"] = _step(_torchcrf, _crf_loss)
    out.append(Case("torch_crf", f"CRF head step ({B},{T},{K}) f32", _setup, impls, work, _check))
    impls = {"fastcore": _step(_fc_memm, _fc_memm_loss), "torch_ops": _step(_torch_memm, _torch_memm_loss)}
    out.append(Case("torch_crf", f"Bi-MEMM head step ({B},{T},{K}) f32", _setup, impls, work, _check))
    return out


test_benchmark = benchmark_tests(cases)
