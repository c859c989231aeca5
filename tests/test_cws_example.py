"""examples/cws.py: its metric and data code, and a tiny end-to-end run of every model."""
import importlib.util
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "examples", "cws.py")


@pytest.fixture(scope="module")
def cws():
    spec = importlib.util.spec_from_file_location("cws_example", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_words_and_prf(cws):
    S, B, M, E = 0, 1, 2, 3
    assert cws.words([B, E, S, B, M, E]) == [(0, 2), (2, 3), (3, 6)]
    assert cws.words([S]) == [(0, 1)]
    assert cws.words([]) == []
    # invalid sequences still split deterministically: a word ends after E/S and starts at B/S
    assert cws.words([M, M, S, E, B]) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    gold = [[B, E, S], [S, S]]
    assert cws.prf(gold, gold) == (1.0, 1.0, 1.0)
    p, r, f = cws.prf([[B, E, S]], [[S, S, S]])  # gold words {01, 2}; predicted {0, 1, 2}
    assert (p, r) == (1 / 3, 1 / 2) and f == pytest.approx(2 * p * r / (p + r))
    assert cws.segment("我爱北京", [S, S, B, E]) == "我 / 爱 / 北京"


def _write_corpus(path, rng, n=120):
    words = ["中国", "人民", "的", "发展", "经济", "是", "我们", "新", "世纪", "了", "合作", "建设"]
    lines = []
    for _ in range(n):
        toks = []
        for w in rng.choice(words, size=int(rng.integers(3, 12))):
            if len(w) == 1:
                toks.append(f"{w}/s")
            else:
                toks += [f"{w[0]}/b"] + [f"{c}/m" for c in w[1:-1]] + [f"{w[-1]}/e"]
        lines.append(" ".join(toks))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_load_corpus_and_features(cws, tmp_path, rng):
    path = tmp_path / "data.txt"
    _write_corpus(path, rng, 10)
    sents = cws.load_corpus(str(path))
    assert len(sents) == 10
    chars, tags = sents[0]
    assert len(chars) == len(tags) and set(tags.tolist()) <= {0, 1, 2, 3}
    feat = cws.Featurizer(sents, 1 << 10)
    F = feat.features(chars)
    assert F.shape == (len(chars), cws.N_TEMPLATES) and F.min() >= 0 and F.max() < 1 << 10
    np.testing.assert_array_equal(F, feat.features(chars))  # deterministic


def test_tiny_training_run_learns(cws, tmp_path, rng, capsys):
    path = tmp_path / "data.txt"
    _write_corpus(path, rng)
    cws.main(["--corpus", str(path), "--epochs", "4", "--buckets", "4096", "--batch-size", "16",
              "--models", "crf,memm,bimemm", "--lr", "0.1", "--threads", "1"])
    out = capsys.readouterr().out
    f1 = {line.split()[0]: float(line.split("F1")[1].split()[0]) for line in out.splitlines()
          if " F1 " in line}
    assert set(f1) == {"CRF", "MEMM", "Bi-MEMM"}
    # a 12-word vocabulary is easy: every model must segment held-out sentences well
    assert min(f1.values()) > 0.9, out
