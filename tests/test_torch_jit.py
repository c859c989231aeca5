"""fastcore.torch.CRF and MEMM under TorchScript and torch.compile: the ``fastcore::`` custom
ops (schemas, fake implementations, autograd), scripted gradients, save/load, errors."""
import io

import pytest

from _helpers import needs

pytestmark = [needs("torch"), pytest.mark.filterwarnings("ignore:`torch.jit.(script|save|load)` is deprecated")]

torch = pytest.importorskip("torch")

from fastcore.torch import CRF, MEMM  # noqa: E402

F64 = torch.float64


def _inputs(B=3, T=4, K=3, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(B, T, K, dtype=dtype, generator=g)
    tags = torch.randint(0, K, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 0] = False  # any mask
    mask[2, 2:] = False
    return em, tags, mask


def test_opcheck_every_op():
    """Schemas, fake (meta) implementations, autograd registration and AOT dispatch."""
    em, tags, mask = _inputs()
    g = torch.Generator().manual_seed(1)
    tr, st, en = (torch.randn(*s, dtype=F64, generator=g, requires_grad=True) for s in ((3, 3), (3,), (3,)))
    em.requires_grad_(True)
    ops = torch.ops.fastcore
    cases = [(ops.crf_log_likelihood.default, (em, tags, mask, tr, st, en, "sum")),
             (ops.crf_log_likelihood.default, (em, tags, mask, tr, st, en, "none")),
             (ops.memm_log_likelihood.default, (em, tags, mask, tr, True, "token_mean")),
             (ops.crf_viterbi.default, (em, mask, tr, st, en)),
             (ops.memm_decode.default, (em, mask, tr, False, "exact")),
             (ops.chain_log_likelihood_backward.default,
              (torch.tensor([1.0, -2.0, 0.5], dtype=F64),
               [torch.randn(3, 4, 3, dtype=F64), torch.randn(3, 3, dtype=F64)],
               em.detach(), tags, mask, [tr.detach()], "memm", True))]
    for op, args in cases:
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (op, result)


@pytest.mark.parametrize("kind", ["crf", "memm"])
def test_gradcheck_through_the_ops(kind):
    """The ops' registered backward (the scripted/compiled path), unequal weights for "none"."""
    em, tags, mask = _inputs()
    g = torch.Generator().manual_seed(2)
    params = [torch.randn(*s, dtype=F64, generator=g, requires_grad=True)
              for s in (((3, 3), (3,), (3,)) if kind == "crf" else ((3, 3),))]
    for reduction in ("sum", "mean", "token_mean", "none"):
        def f(e, *p):
            if kind == "crf":
                out = torch.ops.fastcore.crf_log_likelihood(e, tags, mask, *p, reduction)[0]
            else:
                out = torch.ops.fastcore.memm_log_likelihood(e, tags, mask, *p, True, reduction)[0]
            return out * torch.arange(1, out.numel() + 1, dtype=F64).view(out.shape)

        assert torch.autograd.gradcheck(f, (em.clone().requires_grad_(True), *params))


@pytest.mark.parametrize("make", [lambda: CRF(3, batch_first=False).double(),
                                  lambda: MEMM(3, bidirectional=True, batch_first=False).double()],
                         ids=["crf", "memm"])
def test_scripted_values_gradients_and_decoding_match_eager(make):
    torch.manual_seed(0)
    model = make()
    scripted = torch.jit.script(model)
    em, tags, mask = (x.transpose(0, 1) for x in _inputs())  # seq first
    for reduction in ("sum", "none", "token_mean"):
        results = []
        for m in (model, scripted):
            m.zero_grad()
            e = em.clone().requires_grad_(True)
            llh = m(e, tags, mask=mask, reduction=reduction)
            (llh * torch.arange(1, llh.numel() + 1, dtype=F64).view(llh.shape)).sum().backward()
            results.append([llh.detach(), e.grad] + [p.grad for p in m.parameters()])
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert scripted.decode(em, mask) == model.decode(em, mask)
    assert torch.equal(scripted.decode_tensor(em, mask), model.decode(em, mask, as_tensor=True))
    assert torch.equal(model.decode_tensor(em, mask), model.decode(em, mask, as_tensor=True))
    assert model.decode_tensor(em, mask).shape == mask.shape  # the caller's layout


def test_memm_decode_modes_scripted():
    torch.manual_seed(1)
    model = MEMM(3, bidirectional=False, batch_first=True).double()
    scripted = torch.jit.script(model)
    em, _, mask = _inputs()
    for mode in ("exact", "raw"):
        assert scripted.decode(em, mask, mode) == model.decode(em, mask, mode=mode)
        assert torch.equal(scripted.decode_tensor(em, mask, mode), model.decode(em, mask, mode=mode, as_tensor=True))
    with pytest.raises(Exception, match="mode must be 'exact' or 'raw'"):
        scripted.decode(em, mask, "best")


def test_save_and_load_a_scripted_crf():
    torch.manual_seed(2)
    model = CRF(3, batch_first=True).double()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)  # needs the fastcore:: ops: import fastcore.torch first
    em, tags, mask = _inputs()
    torch.testing.assert_close(loaded(em, tags, mask, "mean"), model(em, tags, mask, reduction="mean"))
    assert loaded.decode(em, mask) == model.decode(em, mask)


def test_scripted_errors_keep_the_messages():
    model = CRF(4, batch_first=True)
    scripted = torch.jit.script(model)
    em = torch.zeros(2, 3, 4)
    tags = torch.zeros(2, 3, dtype=torch.long)
    cases = [((em, tags, None, "avg"), "invalid reduction: avg"),
             ((em[..., :3], tags), "expected last dimension of emissions is 4, got 3"),
             ((em, tags[:, :2]),
              r"the first two dimensions of emissions and tags must match, got \(2, 3\) and \(2, 2\)"),
             ((em, tags.float()), "tags must be an integer tensor, got dtype torch.float32"),
             ((em, tags, tags.float()), "mask must be a bool or uint8 tensor, got dtype torch.float32"),
             ((em.long(), tags), "emissions must be float32 or float64, got torch.int64"),
             ((em, None), "tags must be an integer tensor")]
    for args, message in cases:
        with pytest.raises(Exception, match=message):
            model(*args)
        with pytest.raises(torch.jit.Error, match=message):
            scripted(*args)
    with pytest.raises(torch.jit.Error, match="call decode_tensor"):
        scripted.decode(em, None, True)
    with pytest.raises(Exception, match="tags"):  # values are checked by the kernel
        scripted(em, torch.full_like(tags, 9))


def test_scripted_double_backward_is_an_error():
    model = torch.jit.script(MEMM(3, batch_first=True).double())
    em = torch.randn(1, 4, 3, dtype=F64, requires_grad=True)
    (ge,) = torch.autograd.grad(model(em, torch.zeros(1, 4, dtype=torch.int64)), em, create_graph=True)
    with pytest.raises(RuntimeError, match="CRF/MEMM log-likelihood: double backward"):
        ge.sum().backward()


def test_torch_compile_trains_a_crf_head():
    """torch.compile(fullgraph=True) of a model with CRF and Bi-MEMM heads: the ops trace (fake
    implementations, registered backward); gradients equal eager ones and the loss falls.
    The aot_eager backend keeps it to ~3 s (inductor works too, but compiles for ~20 s cold)."""
    torch.manual_seed(0)

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(20, 8)
            self.out = torch.nn.Linear(8, 4)
            self.crf = CRF(4, batch_first=True)
            self.memm = MEMM(4, bidirectional=True, batch_first=True)

        def forward(self, tokens, tags, mask):
            em = self.out(torch.tanh(self.emb(tokens)))
            return -self.crf(em, tags, mask, reduction="mean") - self.memm(em, tags, mask, reduction="none").mean()

    model = Tagger()
    tokens = torch.randint(0, 20, (3, 6))
    tags = tokens % 4
    mask = torch.arange(6)[None] < torch.tensor([6, 4, 2])[:, None]
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for step in range(10):
        opt.zero_grad()
        loss = compiled(tokens, tags, mask)
        loss.backward()
        if step == 0:
            got = [p.grad.clone() for p in model.parameters()]
            model.zero_grad()
            eager = model(tokens, tags, mask)
            eager.backward()
            torch.testing.assert_close(loss, eager)
            for a, p in zip(got, model.parameters()):
                torch.testing.assert_close(a, p.grad)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
