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

from fastcore import crf as _crf
from fastcore.torch._tensors import _np, analytic_backward, cpu_float

__all__ = ["CRF", "MEMM"]

_REDUCTIONS = ("none", "sum", "mean", "token_mean")


def _chain_grads(kind, em, tg, mk, params, reduction, bidirectional):
    """(loss, {name: grad}) of the kernel's negative log-likelihood for kind 'crf' or 'memm'."""
    if kind == "crf":
        tr, st, en = params
        return _crf.crf_nll_grad(em, tg, tr, st, en, mask=mk, reduction=reduction)
    (tr,) = params
    return _crf.memm_nll_grad(em, tg, tr, mask=mk, bidirectional=bidirectional, reduction=reduction)


_PARAM_NAMES = {"crf": ("transitions", "start", "end"), "memm": ("transitions",)}


class _ChainLogLikelihood(torch.autograd.Function):
    """Log-likelihood of tag sequences under a CRF or a MEMM; the backward is the kernel's
    analytic gradient (one forward-backward pass for the CRF, per-token softmaxes for the MEMM)."""

    @staticmethod
    def forward(ctx, kind, bidirectional, reduction, emissions, tags, mask, *params):
        em, tg, mk = _np(emissions), _np(tags), _np(mask)
        pn = tuple(_np(p).astype(em.dtype, copy=False) for p in params)
        inner = "sum" if reduction == "none" else reduction
        nll, g = _chain_grads(kind, em, tg, mk, pn, inner, bidirectional)
        if reduction == "none":
            ll = (_crf.crf_log_likelihood(em, tg, *pn, mask=mk) if kind == "crf" else
                  _crf.memm_log_likelihood(em, tg, pn[0], mask=mk, bidirectional=bidirectional))
            out = torch.from_numpy(np.asarray(ll)).to(emissions.dtype)
        else:
            out = torch.tensor(-float(nll), dtype=emissions.dtype)
        ctx.kind, ctx.bidirectional, ctx.reduction = kind, bidirectional, reduction
        ctx.inputs = (em, tg, mk)
        ctx.params = pn
        ctx.save_for_backward(torch.from_numpy(g["emissions"]),
                              *(torch.from_numpy(g[name]) for name in _PARAM_NAMES[kind]))
        return out

    @staticmethod
    @analytic_backward("CRF/MEMM log-likelihood")
    def backward(ctx, grad_out):
        g_em, *g_par = ctx.saved_tensors
        none = (None, None, None)
        if ctx.reduction != "none":
            s = -grad_out
            return (*none, g_em * s, None, None, *(g * s for g in g_par))
        # per-sequence weights: emissions separate by sequence; the shared parameters need
        # the weighted sum, computed by one pass per sequence when the weights differ
        w = -grad_out.detach().to(torch.float64).numpy()
        if np.all(w == w[0]):
            s = float(w[0])
            return (*none, g_em * s, None, None, *(g * s for g in g_par))
        em, tg, mk = ctx.inputs
        acc = [np.zeros(p.shape, np.float64) for p in ctx.params]
        for b in np.flatnonzero(w):
            _, gb = _chain_grads(ctx.kind, em[b:b + 1], tg[b:b + 1], mk[b:b + 1], ctx.params, "sum",
                                 ctx.bidirectional)
            for a, name in zip(acc, _PARAM_NAMES[ctx.kind]):
                a += w[b] * gb[name]
        scale = torch.from_numpy(w.astype(em.dtype))[:, None, None]
        dt = g_em.dtype
        return (*none, g_em * scale, None, None, *(torch.from_numpy(a).to(dt) for a in acc))


class _ChainModule(nn.Module):
    """What CRF and MEMM share: the tag count, the layout and the checks of the inputs."""

    def __init__(self, num_tags, batch_first):
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags <= 0:
            raise ValueError(f"invalid number of tags: {num_tags}")
        super().__init__()
        self.num_tags = num_tags
        self.batch_first = batch_first

    def _batch_first(self, emissions, tags=None, mask=None):
        if not isinstance(emissions, torch.Tensor):
            raise TypeError(f"emissions must be a torch.Tensor, got {type(emissions).__name__}")
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

    def _loss_inputs(self, emissions, tags, mask, reduction):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"invalid reduction: {reduction}")
        if tags is None:
            raise TypeError("tags must be an integer tensor of the emissions' first two dimensions, got None")
        emissions, tags, mask = self._batch_first(emissions, tags, mask)
        cpu_float(emissions, "emissions")
        return emissions, tags.to(torch.int64), mask

    def __repr__(self):
        return f"{self.__class__.__name__}(num_tags={self.num_tags})"


class CRF(_ChainModule):
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
        super().__init__(num_tags, batch_first)
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.uniform_(self.start_transitions, -0.1, 0.1)
        nn.init.uniform_(self.end_transitions, -0.1, 0.1)
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def forward(self, emissions, tags, mask=None, reduction="sum"):
        """Log-likelihood of ``tags`` (a scalar, or (batch,) with ``reduction="none"``).

        reduction : {"none", "sum", "mean", "token_mean"}, as in pytorch-crf.
        """
        emissions, tags, mask = self._loss_inputs(emissions, tags, mask, reduction)
        dt = emissions.dtype
        return _ChainLogLikelihood.apply("crf", False, reduction, emissions, tags, mask, self.transitions.to(dt),
                                         self.start_transitions.to(dt), self.end_transitions.to(dt))

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


class MEMM(_ChainModule):
    """Maximum-entropy Markov model head (left-to-right, or the Bi-MEMM mean of both
    directions), with the conventions of :class:`CRF`.

    ``p(y_t | y_{t-1}, x) = softmax_c(emissions[t, c] + transitions[y_{t-1}, c])`` (the first
    kept step has no previous label); with ``bidirectional=True`` the log-likelihood is the
    mean of that and of the right-to-left model ``softmax_c(emissions[t, c] +
    transitions[c, y_{t+1}])``.  Training needs no forward-backward: every token is an
    independent softmax (:func:`fastcore.crf.memm_nll_grad`).

    Parameters
    ----------
    num_tags : int
    bidirectional : bool, default False
    batch_first : bool, default False
        Inputs are (batch, seq, ...) when True, (seq, batch, ...) otherwise (as :class:`CRF`).

    Attributes
    ----------
    transitions : Parameter (num_tags, num_tags)
        Initialised uniform in [-0.1, 0.1].

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import MEMM
    >>> memm = MEMM(5, bidirectional=True, batch_first=True)
    >>> em = torch.randn(2, 7, 5, requires_grad=True)
    >>> tags = torch.randint(0, 5, (2, 7))
    >>> memm(em, tags).backward()
    >>> len(memm.decode(em)[0])
    7
    """

    def __init__(self, num_tags, bidirectional=False, batch_first=False):
        super().__init__(num_tags, batch_first)
        self.bidirectional = bool(bidirectional)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def __repr__(self):
        return f"{self.__class__.__name__}(num_tags={self.num_tags}, bidirectional={self.bidirectional})"

    def forward(self, emissions, tags, mask=None, reduction="sum"):
        """Log-likelihood of ``tags`` (a scalar, or (batch,) with ``reduction="none"``).

        reduction : {"none", "sum", "mean", "token_mean"}, as for :class:`CRF`.
        """
        emissions, tags, mask = self._loss_inputs(emissions, tags, mask, reduction)
        return _ChainLogLikelihood.apply("memm", self.bidirectional, reduction, emissions, tags, mask,
                                         self.transitions.to(emissions.dtype))

    @torch.no_grad()
    def decode(self, emissions, mask=None, mode="exact", as_tensor=False):
        """Best tag sequence of each batch element (:func:`fastcore.crf.memm_decode`).

        mode : {"exact", "raw"}
            ``"exact"``: the model's MAP; ``"raw"``: Viterbi on ``emissions + transitions``.
        Returns ``List[List[int]]`` (kept positions only), or with ``as_tensor=True`` a
        LongTensor (batch, seq) with -1 at masked positions.
        """
        emissions, _, mask = self._batch_first(emissions, None, mask)
        em = _np(emissions)
        paths, _ = _crf.memm_decode(em, _np(self.transitions).astype(em.dtype), mask=_np(mask),
                                    bidirectional=self.bidirectional, mode=mode)
        if as_tensor:
            out = torch.from_numpy(paths)
            return out if self.batch_first else out.transpose(0, 1)
        return [row[row >= 0].tolist() for row in paths]
