"""fastcore inside a PyTorch training step: autograd functions and modules whose work is
done by fastcore's kernels.

    from fastcore.torch import CRF        # instead of: from torchcrf import CRF
    crf = CRF(num_tags, batch_first=True)
    llh = crf(emissions, tags, mask=mask, reduction="mean")   # differentiable, as in pytorch-crf
    best = crf.decode(emissions, mask=mask)                  # List[List[int]], as in pytorch-crf
    best = crf.decode(emissions, mask=mask, as_tensor=True)  # LongTensor (B, T), -1 at masked positions

``CRF`` has pytorch-crf 0.7's constructor, parameters (``start_transitions``,
``end_transitions``, ``transitions``), initialisation, ``forward`` and ``decode``, with three
differences on purpose: any mask is accepted (pytorch-crf insists the first time step is
unmasked; here masked positions are simply removed from the chain), gradients come from one
analytic forward-backward pass instead of an autograd tape (memory O(B·T·K)), and ``decode``
can return a tensor.

CPU tensors only (float32 or float64); contiguous float tensors are passed to C without a
copy.  Backwards are analytic kernels: a second derivative raises RuntimeError.  Requires
PyTorch (``pip install torch``; the CPU build is enough).
"""
try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError("fastcore.torch needs PyTorch: pip install torch (the CPU build is enough)") from exc

from fastcore.torch.crf import CRF, MEMM  # noqa: E402,F401
from fastcore.torch.attention import MultiHeadAttention, attention, logsumexp, masked_softmax  # noqa: E402,F401
from fastcore.torch.ot import emd2, emd2_batch, sinkhorn2, wmd, wrd  # noqa: E402,F401
from fastcore.torch import optim  # noqa: E402,F401

__all__ = ["CRF", "MEMM", "attention", "MultiHeadAttention", "masked_softmax", "logsumexp",
           "emd2", "emd2_batch", "sinkhorn2", "wmd", "wrd", "optim"]
