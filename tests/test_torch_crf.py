"""fastcore.torch.CRF: a drop-in for torchcrf.CRF (values, gradients, decoding)."""

import numpy as np
import pytest

from _helpers import assert_import_fails_clearly, needs

pytestmark = needs("torch")


def _pair(K, batch_first, seed=0):
    import torch

    from fastcore.torch import CRF

    torch.manual_seed(seed)
    ours = CRF(K, batch_first=batch_first)
    if not _have_torchcrf():
        return ours, None
    from torchcrf import CRF as TorchCRF

    ref = TorchCRF(K, batch_first=batch_first)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _have_torchcrf():
    try:
        import torchcrf  # noqa: F401
        return True
    except ImportError:
        return False


def _inputs(rng, B, T, K, batch_first, dtype):
    import torch

    em = torch.from_numpy(rng.standard_normal((B, T, K))).to(dtype)
    tags = torch.from_numpy(rng.integers(0, K, (B, T)))
    lengths = rng.integers(1, T + 1, B)
    mask = torch.from_numpy(np.arange(T)[None, :] < lengths[:, None])
    if not batch_first:
        em, tags, mask = em.transpose(0, 1), tags.transpose(0, 1), mask.transpose(0, 1)
    return em, tags, mask


@needs("torchcrf")
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("reduction", ["sum", "mean", "token_mean", "none"])
def test_matches_pytorch_crf(rng, batch_first, reduction):
    import torch

    ours, ref = _pair(5, batch_first)
    em, tags, mask = _inputs(rng, 6, 9, 5, batch_first, torch.float32)
    results = []
    for model in (ours, ref):
        model.zero_grad()
        e = em.clone().requires_grad_(True)
        llh = model(e, tags, mask=mask, reduction=reduction)
        weights = torch.arange(1.0, 1.0 + llh.numel()).reshape(llh.shape)  # unequal per-sequence weights
        (llh * weights).sum().backward()
        results.append((llh.detach(), e.grad, model.transitions.grad, model.start_transitions.grad,
                        model.end_transitions.grad))
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-5, atol=2e-5)
    assert ours.decode(em, mask) == ref.decode(em, mask)


def test_gradcheck_float64(rng):
    import torch

    from fastcore.torch import CRF

    model = CRF(3, batch_first=True).double()
    em, tags, mask = _inputs(rng, 3, 4, 3, True, torch.float64)
    mask[0, 0] = False  # a masked first token: allowed here, unlike pytorch-crf
    for reduction in ("sum", "none", "token_mean"):
        def f(e, t, s, en):
            from fastcore.torch.crf import _ChainLogLikelihood
            return _ChainLogLikelihood.apply("crf", False, reduction, e, tags, mask, t, s, en)

        args = (em.clone().requires_grad_(True), model.transitions.detach().clone().requires_grad_(True),
                model.start_transitions.detach().clone().requires_grad_(True),
                model.end_transitions.detach().clone().requires_grad_(True))
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6)


def test_decode_tensor_and_masks(rng):
    import torch

    from fastcore import crf
    from fastcore.torch import CRF

    model = CRF(4, batch_first=False)
    em, tags, mask = _inputs(rng, 5, 7, 4, False, torch.float32)
    mask[0, :] = False  # every first token masked (a [CLS] position)
    out = model.decode(em, mask, as_tensor=True)
    assert out.shape == (7, 5) and out.dtype == torch.int64
    ref, _ = crf.viterbi(em.transpose(0, 1).numpy(), model.transitions.detach().numpy(),
                         model.start_transitions.detach().numpy(), model.end_transitions.detach().numpy(),
                         mask=mask.transpose(0, 1).numpy())
    np.testing.assert_array_equal(out.transpose(0, 1).numpy(), ref)
    lists = model.decode(em, mask)
    assert [len(p) for p in lists] == mask.sum(0).tolist()


def test_bad_input(rng):
    import torch

    from fastcore.torch import CRF

    model = CRF(4, batch_first=True)
    em, tags, mask = _inputs(rng, 2, 3, 4, True, torch.float32)
    with pytest.raises(ValueError, match="invalid reduction"):
        model(em, tags, reduction="avg")
    with pytest.raises(ValueError, match="expected last dimension of emissions is 4"):
        model(em[..., :3], tags)
    with pytest.raises(ValueError, match="the first two dimensions of emissions and tags must match"):
        model(em, tags[:, :2])
    with pytest.raises(ValueError, match="tags"):
        model(em, torch.full_like(tags, 9))
    with pytest.raises(ValueError, match="invalid number of tags"):
        CRF(0)
    with pytest.raises(TypeError, match="tags must be an integer tensor, got dtype torch.float32"):
        model(em, tags.to(torch.float32) + 0.7)
    with pytest.raises(TypeError, match="tags must be an integer tensor"):
        model(em, None)
    for bad in (torch.float32, torch.complex64):
        with pytest.raises(TypeError, match="mask must be a bool or uint8 tensor"):
            model(em, tags, mask=mask.to(bad))
    assert torch.equal(model(em, tags, mask=mask.to(torch.uint8)), model(em, tags, mask=mask))


def test_shape_errors_in_the_callers_layout(rng):
    """batch_first=False: the message shows the (seq, batch) shapes the caller passed."""
    import torch

    from fastcore.torch import CRF

    model = CRF(4)  # seq first
    em = torch.zeros(5, 2, 4)
    tags = torch.zeros(5, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"got \(5, 2\) and \(5, 3\)"):
        model(em, tags)
    with pytest.raises(ValueError, match=r"got \(5, 2\) and \(4, 2\)"):
        model.decode(em, mask=torch.ones(4, 2, dtype=torch.bool))


def test_import_without_torch_gives_a_clear_message(tmp_path):
    assert_import_fails_clearly(tmp_path, "torch", "fastcore.torch", 'fastcore.torch needs PyTorch')
