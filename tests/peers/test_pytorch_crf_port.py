"""pytorch-crf's test suite, ported to run against ``fastcore.torch.CRF``.

Mirrors ``tests/test_crf.py`` of github.com/kmkurn/pytorch-crf at HEAD, commit
623e3402d00a2728e99d6e8486010d67c754267b ("Make compatible with torchscript", 2024-06-09;
package version 0.7.2): the classes and test names below are theirs, one test per test of
that file (35: TestInit 3, TestForward 12, TestDecode 8, TestTorchScriptForward 9,
TestTorchScriptDecode 3; the two deviating tests run in both layouts, 37 in all).  The code
is ours: references are brute-force enumerations of every tag path in float64, and where
``torchcrf`` is installed each forward/decode case is also compared with it (same
parameters).

The one deviation allowed: pytorch-crf rejects a mask whose first time step is not all on
("mask of the first timestep must all be on"); fastcore accepts any mask and removes the
masked positions from the chain.  The two ``test_first_timestep_mask_is_not_all_on`` tests
assert that documented behaviour instead (an all-masked sequence has log-likelihood 0 and
an empty path; a sequence with masked leading positions scores as the sequence of its kept
positions, which is what torchcrf gives on the left-packed sequence).
"""
import itertools
import math

import pytest

from _helpers import needs

pytestmark = [needs("torch"), pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
              pytest.mark.filterwarnings("ignore:where received a uint8 condition")]  # torchcrf's own

torch = pytest.importorskip("torch")

from fastcore.torch import CRF  # noqa: E402

RTOL, ATOL = 1e-6, 1e-12  # theirs (torch.testing.assert_close after torch 1.9)


def _close(actual, expected):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=RTOL, atol=ATOL)


def _have_torchcrf():
    try:
        import torchcrf  # noqa: F401
        return True
    except ImportError:
        return False


# ----------------------------------------------------------------------------- references
def _params(crf):
    return (crf.start_transitions.detach().double().numpy(), crf.end_transitions.detach().double().numpy(),
            crf.transitions.detach().double().numpy())


def _path_score(crf, em, path):
    """Score of one tag path of one (unmasked) sequence: em is (len, K) float64."""
    start, end, trans = _params(crf)
    total = start[path[0]] + end[path[-1]] + sum(em[t, y] for t, y in enumerate(path))
    return total + sum(trans[a, b] for a, b in zip(path, path[1:]))


def _all_paths(crf, n):
    return itertools.product(range(crf.num_tags), repeat=n)


def _brute_llh(crf, em, path):
    """log P(path | em) by enumerating every path; 0 for an empty sequence."""
    if len(path) == 0:
        return 0.0
    scores = [_path_score(crf, em, p) for p in _all_paths(crf, len(path))]
    top = max(scores)
    return _path_score(crf, em, tuple(path)) - (top + math.log(sum(math.exp(s - top) for s in scores)))


def _brute_best(crf, em):
    if em.shape[0] == 0:
        return []
    return list(max(_all_paths(crf, em.shape[0]), key=lambda p: _path_score(crf, em, p)))


def _per_sequence(crf, emissions, tags=None, mask=None):
    """Yield (em (len, K), tags (len,)) of each batch element's kept positions, in float64."""
    em = emissions if crf.batch_first else emissions.transpose(0, 1)
    B, T = em.shape[:2]
    tg = None if tags is None else (tags if crf.batch_first else tags.transpose(0, 1))
    mk = torch.ones(B, T, dtype=torch.bool) if mask is None else (mask if crf.batch_first else mask.transpose(0, 1))
    for b in range(B):
        keep = mk[b].bool().numpy()
        e = em[b].detach().double().numpy()[keep]
        yield e, (None if tg is None else tuple(tg[b].numpy()[keep].tolist()))


def _torchcrf_twin(crf):
    """torchcrf.CRF with our parameters, or None when it is not installed."""
    if not _have_torchcrf():
        return None
    from torchcrf import CRF as TorchCRF

    ref = TorchCRF(crf.num_tags, batch_first=crf.batch_first)
    ref.load_state_dict(crf.state_dict())
    return ref


# ----------------------------------------------------------------------------- inputs (as theirs)
def _crf(num_tags=5, batch_first=False, seed=0):
    torch.manual_seed(seed)
    return CRF(num_tags, batch_first=batch_first)


def _emissions(crf, seq_length=3, batch_size=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(seq_length, batch_size, crf.num_tags, generator=g)
    return em.transpose(0, 1) if crf.batch_first else em


def _tags(crf, seq_length=3, batch_size=2, seed=2):
    g = torch.Generator().manual_seed(seed)
    tags = torch.randint(0, crf.num_tags, (seq_length, batch_size), generator=g)
    return tags.transpose(0, 1) if crf.batch_first else tags


def _ragged_mask(crf):
    """Their (seq 3, batch 2) mask: the second sequence has length 2."""
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.uint8)
    return mask if crf.batch_first else mask.transpose(0, 1)


def _copy_into_batch_first(crf):
    """A batch_first CRF with crf's parameters, copied as their tests do."""
    bf = _crf(crf.num_tags, batch_first=True, seed=99)
    for name in ("start_transitions", "end_transitions", "transitions"):
        getattr(bf, name).requires_grad_(False).copy_(getattr(crf, name))
    return bf


# ----------------------------------------------------------------------------- TestInit
class TestInit:
    def test_minimal(self):
        crf = CRF(10)
        assert crf.num_tags == 10 and crf.batch_first is False
        for name, shape in (("start_transitions", (10,)), ("end_transitions", (10,)), ("transitions", (10, 10))):
            p = getattr(crf, name)
            assert isinstance(p, torch.nn.Parameter) and p.shape == shape
            assert p.abs().max() <= 0.1  # their uniform(-0.1, 0.1) initialisation
        assert repr(crf) == "CRF(num_tags=10)"

    def test_full(self):
        assert CRF(10, batch_first=True).batch_first

    def test_nonpositive_num_tags(self):
        with pytest.raises(ValueError, match="invalid number of tags: 0"):
            CRF(0)


# ----------------------------------------------------------------------------- TestForward
class TestForward:
    def test_works_with_mask(self):
        crf = _crf()
        em, tags, mask = _emissions(crf), _tags(crf), _ragged_mask(crf)
        llh = crf(em, tags, mask=mask)
        expected = sum(_brute_llh(crf, e, t) for e, t in _per_sequence(crf, em, tags, mask))
        _close(llh, expected)
        llh.backward()
        assert crf.transitions.grad is not None and torch.isfinite(crf.transitions.grad).all()
        ref = _torchcrf_twin(crf)
        if ref is not None:
            _close(llh.detach(), ref(em, tags, mask=mask.bool()).detach())

    def test_works_without_mask(self):
        crf = _crf()
        em, tags = _emissions(crf), _tags(crf)
        _close(crf(em, tags), crf(em, tags, mask=torch.ones_like(tags).byte()))

    def test_batched_loss(self):
        crf = _crf()
        em, tags = _emissions(crf, batch_size=10), _tags(crf, batch_size=10)
        llh = crf(em, tags)
        assert torch.is_tensor(llh) and llh.shape == ()
        one_by_one = sum(crf(em[:, i:i + 1], tags[:, i:i + 1]) for i in range(10))
        _close(llh, one_by_one)
        ref = _torchcrf_twin(crf)
        if ref is not None:
            _close(llh.detach(), ref(em, tags).detach())

    def test_reduction_none(self):
        crf = _crf()
        em, tags = _emissions(crf), _tags(crf)
        llh = crf(em, tags, reduction="none")
        assert torch.is_tensor(llh) and llh.shape == (2,)
        _close(llh, [_brute_llh(crf, e, t) for e, t in _per_sequence(crf, em, tags)])
        ref = _torchcrf_twin(crf)
        if ref is not None:
            _close(llh.detach(), ref(em, tags, reduction="none").detach())

    def test_reduction_mean(self):
        crf = _crf()
        em, tags = _emissions(crf), _tags(crf)
        llh = crf(em, tags, reduction="mean")
        assert torch.is_tensor(llh) and llh.shape == ()
        _close(llh, sum(_brute_llh(crf, e, t) for e, t in _per_sequence(crf, em, tags)) / 2)
        ref = _torchcrf_twin(crf)
        if ref is not None:
            _close(llh.detach(), ref(em, tags, reduction="mean").detach())

    def test_reduction_token_mean(self):
        crf = _crf()
        em, tags, mask = _emissions(crf), _tags(crf), _ragged_mask(crf)
        llh = crf(em, tags, mask=mask, reduction="token_mean")
        assert torch.is_tensor(llh) and llh.shape == ()
        seqs = list(_per_sequence(crf, em, tags, mask))
        _close(llh, sum(_brute_llh(crf, e, t) for e, t in seqs) / sum(len(t) for _, t in seqs))
        ref = _torchcrf_twin(crf)
        if ref is not None:
            _close(llh.detach(), ref(em, tags, mask=mask.bool(), reduction="token_mean").detach())

    def test_batch_first(self):
        crf = _crf()
        em, tags = _emissions(crf), _tags(crf)
        bf = _copy_into_batch_first(crf)
        _close(crf(em, tags), bf(em.transpose(0, 1), tags.transpose(0, 1)))

    def test_emissions_has_bad_number_of_dimension(self):
        with pytest.raises(ValueError, match="emissions must have dimension of 3, got 2"):
            _crf()(torch.randn(1, 2), torch.empty(2, 2, dtype=torch.long))

    def test_emissions_and_tags_size_mismatch(self):
        with pytest.raises(ValueError) as err:
            _crf(3)(torch.randn(1, 2, 3), torch.empty(2, 2, dtype=torch.long))
        assert "the first two dimensions of emissions and tags must match, got (1, 2) and (2, 2)" in str(err.value)

    def test_emissions_last_dimension_not_equal_to_number_of_tags(self):
        with pytest.raises(ValueError, match="expected last dimension of emissions is 10, got 3"):
            _crf(10)(torch.randn(1, 2, 3), torch.empty(1, 2, dtype=torch.long))

    @pytest.mark.parametrize("batch_first", [False, True])
    def test_first_timestep_mask_is_not_all_on(self, batch_first):
        """Deviation (documented): accepted; masked positions leave the chain."""
        crf = _crf(4, batch_first=batch_first)
        em, tags = _emissions(crf, 3, 2), _tags(crf, 3, 2)
        mask = torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.uint8)  # theirs: sequence 2 all off
        mask = mask if batch_first else mask.transpose(0, 1)
        llh = crf(em, tags, mask=mask, reduction="none")
        seqs = list(_per_sequence(crf, em, tags, mask))
        _close(llh, [_brute_llh(crf, e, t) for e, t in seqs])
        assert llh[1].item() == 0.0  # an empty sequence
        # masked leading positions: the sequence of the kept positions
        lead = torch.tensor([[0, 1, 1], [0, 0, 1]], dtype=torch.uint8)
        lead = lead if batch_first else lead.transpose(0, 1)
        llh = crf(em, tags, mask=lead, reduction="none")
        _close(llh, [_brute_llh(crf, e, t) for e, t in _per_sequence(crf, em, tags, lead)])
        ref = _torchcrf_twin(crf)
        if ref is not None:  # torchcrf on the left-packed sequences gives the same
            idx = torch.tensor([[1, 2, 0], [2, 0, 1]])  # kept positions first
            pack = (lambda x: x.gather(1, idx.view(2, 3, *([1] * (x.dim() - 2))).expand_as(x))) if batch_first \
                else (lambda x: x.gather(0, idx.T.reshape(3, 2, *([1] * (x.dim() - 2))).expand_as(x)))
            packed_mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.uint8)
            packed_mask = packed_mask if batch_first else packed_mask.transpose(0, 1)
            _close(llh.detach(), ref(pack(em), pack(tags), mask=packed_mask.bool(), reduction="none").detach())

    def test_invalid_reduction(self):
        crf = _crf()
        with pytest.raises(ValueError, match="invalid reduction: foo"):
            crf(_emissions(crf), _tags(crf), reduction="foo")


# ----------------------------------------------------------------------------- TestDecode
class TestDecode:
    def test_works_with_mask(self):
        crf = _crf()
        em, mask = _emissions(crf), _ragged_mask(crf)
        best = crf.decode(em, mask=mask)
        seqs = list(_per_sequence(crf, em, mask=mask))
        assert [len(p) for p in best] == [len(e) for e, _ in seqs]
        assert all(isinstance(t, int) for p in best for t in p)
        assert best == [_brute_best(crf, e) for e, _ in seqs]
        ref = _torchcrf_twin(crf)
        if ref is not None:
            assert best == ref.decode(em, mask=mask.bool())

    def test_works_without_mask(self):
        crf = _crf()
        em = _emissions(crf)
        assert crf.decode(em) == crf.decode(em, mask=em.new_ones(em.shape[:2]).byte())

    def test_batched_decode(self):
        crf = _crf()
        em, mask = _emissions(crf), _ragged_mask(crf)
        singles = []
        for i in range(2):
            out = crf.decode(em[:, i:i + 1], mask=mask[:, i:i + 1])
            assert len(out) == 1
            singles.append(out[0])
        assert singles == crf.decode(em, mask=mask)

    def test_batch_first(self):
        crf = _crf()
        em = _emissions(crf)
        assert crf.decode(em) == _copy_into_batch_first(crf).decode(em.transpose(0, 1))

    def test_emissions_has_bad_number_of_dimension(self):
        with pytest.raises(ValueError, match="emissions must have dimension of 3, got 2"):
            _crf().decode(torch.randn(1, 2))

    def test_emissions_last_dimension_not_equal_to_number_of_tags(self):
        with pytest.raises(ValueError, match="expected last dimension of emissions is 10, got 3"):
            _crf(10).decode(torch.randn(1, 2, 3))

    def test_emissions_and_mask_size_mismatch(self):
        with pytest.raises(ValueError) as err:
            _crf(3).decode(torch.randn(1, 2, 3), mask=torch.tensor([[1, 1], [1, 0]], dtype=torch.uint8))
        assert "the first two dimensions of emissions and mask must match, got (1, 2) and (2, 2)" in str(err.value)

    @pytest.mark.parametrize("batch_first", [False, True])
    def test_first_timestep_mask_is_not_all_on(self, batch_first):
        """Deviation (documented): accepted; an all-masked sequence decodes to []."""
        crf = _crf(4, batch_first=batch_first)
        em = _emissions(crf, 3, 2)
        for rows in (([1, 1, 1], [0, 0, 0]), ([0, 1, 1], [0, 0, 1])):
            mask = torch.tensor(rows, dtype=torch.uint8)
            mask = mask if batch_first else mask.transpose(0, 1)
            best = crf.decode(em, mask=mask)
            assert best == [_brute_best(crf, e) for e, _ in _per_sequence(crf, em, mask=mask)]
            assert [len(p) for p in best] == [sum(r) for r in rows]


# ----------------------------------------------------------------------------- TorchScript
class TestTorchScriptForward:
    def test_torch_scriptable(self):
        scripted = torch.jit.script(_crf())
        assert hasattr(scripted, "decode") and isinstance(scripted, torch.jit.ScriptModule)

    def test_default_forward(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, tags, mask = _emissions(crf), _tags(crf), _ragged_mask(crf)
        _close(scripted(em, tags, mask=mask), crf(em, tags, mask=mask))

    def test_without_mask(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, tags = _emissions(crf), _tags(crf)
        _close(scripted(em, tags), crf(em, tags))

    def test_all_ones_mask(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, tags = _emissions(crf), _tags(crf)
        ones = torch.ones_like(tags).byte()
        _close(scripted(em, tags, mask=ones), crf(em, tags, mask=ones))

    def test_batched_forward(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, tags = _emissions(crf, batch_size=10), _tags(crf, batch_size=10)
        _close(scripted(em, tags), crf(em, tags))

    def test_reduction_none(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, tags = _emissions(crf), _tags(crf)
        out = scripted(em, tags, reduction="none")
        assert out.shape == (2,)
        _close(out, crf(em, tags, reduction="none"))

    def test_reduction_mean(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, tags = _emissions(crf), _tags(crf)
        _close(scripted(em, tags, reduction="mean"), crf(em, tags, reduction="mean"))

    def test_reduction_token_mean(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, tags, mask = _emissions(crf), _tags(crf), _ragged_mask(crf)
        _close(scripted(em, tags, mask=mask, reduction="token_mean"), crf(em, tags, mask=mask, reduction="token_mean"))

    def test_batch_first(self):
        crf = _crf()
        em, tags = _emissions(crf), _tags(crf)
        bf = _copy_into_batch_first(crf)
        scripted = torch.jit.script(bf)
        em, tags = em.transpose(0, 1), tags.transpose(0, 1)
        _close(scripted(em, tags), bf(em, tags))


class TestTorchScriptDecode:
    def test_with_mask(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em, mask = _emissions(crf), _ragged_mask(crf)
        assert scripted.decode(em, mask=mask) == crf.decode(em, mask=mask)

    def test_without_mask(self):
        crf = _crf()
        scripted = torch.jit.script(crf)
        em = _emissions(crf)
        assert scripted.decode(em) == crf.decode(em)

    def test_batch_first(self):
        crf = _crf()
        em = _emissions(crf)
        bf = _copy_into_batch_first(crf)
        scripted = torch.jit.script(bf)
        assert scripted.decode(em.transpose(0, 1)) == bf.decode(em.transpose(0, 1))
