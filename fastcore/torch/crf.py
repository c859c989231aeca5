"""A drop-in for pytorch-crf's ``torchcrf.CRF`` whose work is done by fastcore's kernels.

    from fastcore.torch import CRF        # instead of: from torchcrf import CRF
    crf = CRF(num_tags, batch_first=True)
    llh = crf(emissions, tags, mask=mask, reduction="mean")   # differentiable, as in pytorch-crf
    best = crf.decode(emissions, mask=mask)                  # List[List[int]], as in pytorch-crf
    best = crf.decode(emissions, mask=mask, as_tensor=True)  # LongTensor (B, T), -1 at masked positions

Same constructor, parameters (``start_transitions``, ``end_transitions``,
``transitions``), initialisation, ``forward`` and ``decode`` as pytorch-crf 0.7,
with three differences on purpose: any mask is accepted (pytorch-crf insists the
first time step is unmasked; here masked positions are simply removed from the
chain), gradients come from one analytic forward-backward pass instead of an
autograd tape (memory O(B·T·K)), and ``decode`` can return a tensor.

CPU tensors only (float32 or float64); contiguous float tensors are passed to C
without a copy.  Requires PyTorch (``pip install torch``).
"""
import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from fastcore import crf as _crf
from fastcore.torch._tensors import _np

__all__ = ["CRF"]

_REDUCTIONS = ("none", "sum", "mean", "token_mean")


class _CRFLogLikelihood(torch.autograd.Function):
    """Log-likelihood of tag sequences; backward from the kernel's analytic gradients."""

    @staticmethod
    def forward(ctx, emissions, transitions, start, end, tags, mask, reduction):
        em, tr, st, en = _np(emissions), _np(transitions), _np(start), _np(end)
        tg, mk = _np(tags), _np(mask)
        inner = "sum" if reduction == "none" else reduction
        nll, g = _crf.crf_nll_grad(em, tg, tr.astype(em.dtype, copy=False), st.astype(em.dtype, copy=False),
                                   en.astype(em.dtype, copy=False), mask=mk, reduction=inner)
        if reduction == "none":
            nll = _crf.crf_log_likelihood(em, tg, tr.astype(em.dtype, copy=False), st.astype(em.dtype, copy=False),
                                          en.astype(em.dtype, copy=False), mask=mk)
            out = torch.from_numpy(np.asarray(nll)).to(emissions.dtype)
        else:
            out = torch.tensor(-float(nll), dtype=emissions.dtype)
        ctx.reduction = reduction
        ctx.inputs = (em, tg, mk)
        ctx.params = (tr, st, en)
        ctx.save_for_backward(torch.from_numpy(g["emissions"]), torch.from_numpy(g["transitions"]),
                              torch.from_numpy(g["start"]), torch.from_numpy(g["end"]))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        g_em, g_tr, g_st, g_en = ctx.saved_tensors
        if ctx.reduction != "none":
            s = -grad_out
            return g_em * s, g_tr * s, g_st * s, g_en * s, None, None, None
        # per-sequence weights: emissions separate by sequence; the shared parameters need
        # the weighted sum, computed by one weighted pass when the weights differ
        w = -grad_out.detach().to(torch.float64).numpy()
        if np.all(w == w[0]):
            s = float(w[0])
            return g_em * s, g_tr * s, g_st * s, g_en * s, None, None, None
        em, tg, mk = ctx.inputs
        tr, st, en = (p.astype(em.dtype, copy=False) for p in ctx.params)
        gt = np.zeros(tr.shape, np.float64)
        gs = np.zeros(st.shape, np.float64)
        ge = np.zeros(en.shape, np.float64)
        for b in np.flatnonzero(w):
            _, gb = _crf.crf_nll_grad(em[b:b + 1], tg[b:b + 1], tr, st, en, mask=mk[b:b + 1], reduction="sum")
            gt += w[b] * gb["transitions"]
            gs += w[b] * gb["start"]
            ge += w[b] * gb["end"]
        scale = torch.from_numpy(w.astype(em.dtype))[:, None, None]
        dt = g_em.dtype
        return (g_em * scale, torch.from_numpy(gt).to(dt), torch.from_numpy(gs).to(dt), torch.from_numpy(ge).to(dt),
                None, None, None)


class CRF(nn.Module):
    """Linear-chain CRF layer with pytorch-crf's interface, computed by fastcore.

    Parameters
    ----------
    num_tags : int
    batch_first : bool, default False
        Inputs are (batch, seq, ...) when True, (seq, batch, ...) otherwise (pytorch-crf's default).

    Attributes
    ----------
    start_transitions, end_transitions : Parameter (num_tags,)
    transitions : Parameter (num_tags, num_tags)
        ``transitions[i, j]`` scores tag i followed by tag j. Initialised uniform in [-0.1, 0.1].
    """

    def __init__(self, num_tags, batch_first=False):
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags <= 0:
            raise ValueError(f"invalid number of tags: {num_tags}")
        super().__init__()
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.uniform_(self.start_transitions, -0.1, 0.1)
        nn.init.uniform_(self.end_transitions, -0.1, 0.1)
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def __repr__(self):
        return f"{self.__class__.__name__}(num_tags={self.num_tags})"

    def _batch_first(self, emissions, tags=None, mask=None):
        if emissions.dim() != 3:
            raise ValueError(f"emissions must have dimension of 3, got {emissions.dim()}")
        if emissions.size(2) != self.num_tags:
            raise ValueError(f"expected last dimension of emissions is {self.num_tags}, got {emissions.size(2)}")
        # checked in the caller's layout (seq first unless batch_first), so the shapes in a message
        # are the ones the caller passed
        lead = tuple(emissions.shape[:2])
        if tags is not None:
            if tags.dtype.is_floating_point or tags.dtype.is_complex or tags.dtype == torch.bool:
                raise TypeError(f"tags must be an integer tensor, got dtype {tags.dtype}")
            if tuple(tags.shape) != lead:
                raise ValueError(f"the shapes of emissions and tags must match, got {lead} and {tuple(tags.shape)}")
        if mask is not None:
            if mask.dtype not in (torch.bool, torch.uint8):
                raise TypeError(f"mask must be a bool or uint8 tensor, got dtype {mask.dtype}")
            if tuple(mask.shape) != lead:
                raise ValueError(f"the shapes of emissions and mask must match, got {lead} and {tuple(mask.shape)}")
        if not self.batch_first:
            emissions = emissions.transpose(0, 1)
            tags = None if tags is None else tags.transpose(0, 1)
            mask = None if mask is None else mask.transpose(0, 1)
        B, T, _ = emissions.shape
        if mask is None:
            mask = torch.ones((B, T), dtype=torch.bool)
        return emissions, tags, mask.to(torch.bool)

    def forward(self, emissions, tags, mask=None, reduction="sum"):
        """Log-likelihood of ``tags`` (a scalar, or (batch,) with ``reduction="none"``).

        reduction : {"none", "sum", "mean", "token_mean"}, as in pytorch-crf.
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"invalid reduction: {reduction}")
        if tags is None:
            raise TypeError("tags must be an integer tensor of the emissions' first two dimensions, got None")
        emissions, tags, mask = self._batch_first(emissions, tags, mask)
        if emissions.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"emissions must be float32 or float64, got {emissions.dtype}")
        dt = emissions.dtype
        return _CRFLogLikelihood.apply(emissions, self.transitions.to(dt), self.start_transitions.to(dt),
                                       self.end_transitions.to(dt), tags.to(torch.int64), mask, reduction)

    @torch.no_grad()
    def decode(self, emissions, mask=None, as_tensor=False):
        """Best tag sequence of each batch element by Viterbi.

        Returns ``List[List[int]]`` (pytorch-crf's format: kept positions only), or with
        ``as_tensor=True`` a LongTensor (batch, seq) with -1 at masked positions.
        """
        emissions, _, mask = self._batch_first(emissions, None, mask)
        em = _np(emissions)
        paths, _ = _crf.viterbi(em, _np(self.transitions).astype(em.dtype), _np(self.start_transitions).astype(em.dtype),
                                _np(self.end_transitions).astype(em.dtype), mask=_np(mask))
        if as_tensor:
            out = torch.from_numpy(paths)
            return out if self.batch_first else out.transpose(0, 1)
        return [row[row >= 0].tolist() for row in paths]
