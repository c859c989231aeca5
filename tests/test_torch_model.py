"""Every fastcore.torch piece in one small model: the loss of a training loop falls."""
import pytest

torch = pytest.importorskip("torch")

from fastcore.torch import CRF, MEMM, MultiHeadAttention, emd2, optim  # noqa: E402


class Tagger(torch.nn.Module):
    """Embeddings -> talking-heads self-attention (causal, padded) -> CRF and Bi-MEMM heads."""

    def __init__(self, vocab=20, width=16, tags=4):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, width, dtype=torch.float64)
        self.att = MultiHeadAttention(width, 4, key_size=6, value_size=4, talking_heads=True, dtype=torch.float64)
        self.out = torch.nn.Linear(width, tags, dtype=torch.float64)
        self.crf = CRF(tags, batch_first=True).double()
        self.memm = MEMM(tags, bidirectional=True, batch_first=True).double()

    def forward(self, tokens, lengths):
        h = self.emb(tokens)
        h = h + self.att(h, causal=True, lengths=lengths)
        return self.out(h)


def test_a_model_with_every_piece_trains():
    torch.manual_seed(0)
    B, T = 6, 9
    tokens = torch.randint(0, 20, (B, T))
    tags = tokens % 4  # learnable: the tag is a function of the token
    lengths = torch.tensor([9, 9, 7, 5, 9, 3])
    mask = torch.arange(T)[None, :] < lengths[:, None]
    model = Tagger()
    opt = optim.AdamW(model.parameters(), lr=0.05, clip=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    # an OT term: the batch's predicted tag distribution should match the gold one
    gold = torch.bincount(tags[mask], minlength=4).double()
    gold = gold / gold.sum()
    M = (torch.arange(4.0, dtype=torch.float64)[:, None] - torch.arange(4.0, dtype=torch.float64)[None, :]).abs()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        em = model(tokens, lengths)
        pred = torch.softmax(em, -1)[mask].mean(0)
        loss = (-model.crf(em, tags, mask, reduction="mean") - model.memm(em, tags, mask, reduction="mean")
                + 10.0 * emd2(pred, gold, M))
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert not opt.last_step.skipped
    assert losses[-1] < 0.3 * losses[0], losses[::8]
    decoded = model.crf.decode(model(tokens, lengths), mask)
    acc = sum((torch.tensor(p) == t[:len(p)]).sum().item() for p, t in zip(decoded, tags)) / mask.sum().item()
    assert acc > 0.9
