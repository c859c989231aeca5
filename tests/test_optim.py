"""global_norm / clip_grad_norm / fused SGD, Adam, AdamW steps / WEISSI against plain
NumPy references, torch.optim (where installed) and finite differences."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _helpers import FLOAT_DTYPES, needs
from fastcore import optim
from fastcore.optim import SGD, Adam, AdamW, clip_grad_norm, clip_scale, global_norm, weissi

SHAPES = [(5, 7), (13,), (3, 4, 5), (1,), (0, 3), (2, 33)]


def make(rng, dtype, shapes=SHAPES, scale=1.0):
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]


def concat64(arrays):
    return np.concatenate([a.astype(np.float64).ravel() for a in arrays])


# ---------------------------------------------------------------- global_norm
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5, np.inf])
def test_global_norm_matches_numpy(rng, dtype, p):
    g = make(rng, dtype)
    expected = np.linalg.norm(concat64(g), ord=p)
    assert global_norm(g, p) == pytest.approx(expected, rel=1e-12)


def test_global_norm_single_array_and_empty(rng):
    x = rng.standard_normal((4, 5))
    assert global_norm(x) == pytest.approx(np.linalg.norm(x), rel=1e-14)
    assert global_norm([]) == 0.0
    assert global_norm([np.zeros(0), np.zeros((3, 0))]) == 0.0
    assert global_norm([np.zeros(5)]) == 0.0
    # non-contiguous and integer inputs are read through a copy
    assert global_norm([x[:, ::2], np.arange(4)]) == pytest.approx(
        math.sqrt((x[:, ::2] ** 2).sum() + 14), rel=1e-14)


def test_global_norm_no_overflow_or_underflow():
    assert global_norm([np.array([3e19, 4e19], dtype=np.float32)]) == pytest.approx(5e19, rel=1e-7)
    big = [np.full(10, 1e200), np.full(3, -1e200)]
    assert global_norm(big) == pytest.approx(math.sqrt(13) * 1e200, rel=1e-14)
    tiny = [np.full(7, 1e-200)]
    assert global_norm(tiny) == pytest.approx(math.sqrt(7) * 1e-200, rel=1e-14)
    assert global_norm([np.array([3e-310, 4e-310])]) == pytest.approx(5e-310, rel=1e-6)
    assert global_norm([np.full(9, 1e200)], 3.0) == pytest.approx(9 ** (1 / 3) * 1e200, rel=1e-13)


def test_global_norm_unrepresentable_is_inf():
    x = [np.full(4, 1e308)]
    # every element is finite but the norm itself exceeds float64: inf, honestly
    assert global_norm(x, 1.0) == float("inf")
    assert global_norm(x, 2.0) == float("inf")
    assert global_norm([np.full(4, 1e308)], 2.0, n_threads=1) == float("inf")
    assert global_norm([np.full(4, 4e307)], 2.0) == pytest.approx(8e307, rel=1e-14)
    assert global_norm([np.full(4, 4e307)], 1.0) == pytest.approx(1.6e308, rel=1e-14)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_global_norm_nonfinite(dtype):
    a = np.ones(100000, dtype=dtype)
    b = a.copy()
    b[77777] = np.nan
    c = a.copy()
    c[5] = -np.inf
    assert math.isnan(global_norm([a, b]))
    assert global_norm([a, c]) == float("inf")
    assert math.isnan(global_norm([a, b, c]))
    assert global_norm([c], np.inf) == float("inf")
    assert math.isnan(global_norm([b], np.inf))


def test_global_norm_threads_identical(rng):
    g = make(rng, np.float32, [(300, 1001), (17,), (70000,), (5, 40000)])
    r1 = global_norm(g, n_threads=1)
    r2 = global_norm(g, n_threads=2)
    assert r1 == r2
    assert r1 == pytest.approx(np.linalg.norm(concat64(g)), rel=1e-12)


def test_global_norm_bad_input():
    with pytest.raises(TypeError, match="mixes dtypes"):
        global_norm([np.ones(3, np.float32), np.ones(3)])
    with pytest.raises(ValueError, match="norm_type"):
        global_norm([np.ones(3)], 0)
    with pytest.raises(TypeError, match="list of arrays"):
        global_norm(3.0)
    with pytest.raises(TypeError, match="real numeric"):
        global_norm([np.ones(3, dtype=complex)])


# ---------------------------------------------------------------- clipping
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_formula(rng, dtype, mode, max_norm):
    g = make(rng, dtype)
    orig = [x.copy() for x in g]
    n = np.linalg.norm(concat64(orig))
    ret = clip_grad_norm(g, max_norm, mode)
    assert ret == pytest.approx(n, rel=1e-12)
    scale = min(1.0, max_norm / n) if mode == "hard" else max_norm / (n + max_norm)
    for a, b in zip(g, orig):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b.astype(np.float64) * scale, rtol=1e-6 if dtype == np.float32 else 1e-14)
    if mode == "hard" and max_norm > n:
        for a, b in zip(g, orig):
            np.testing.assert_array_equal(a, b)  # untouched when below the threshold


def test_clip_zero_and_nonfinite():
    z = [np.zeros(4), np.zeros((2, 2))]
    assert clip_grad_norm(z, 1.0, "soft") == 0.0
    assert all((a == 0).all() for a in z)
    g = [np.ones(4), np.array([1.0, np.nan])]
    before = [a.copy() for a in g]
    ret = clip_grad_norm(g, 1.0)
    assert math.isnan(ret)
    for a, b in zip(g, before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="NaN or infinite"):
        clip_grad_norm(g, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        clip_grad_norm([np.array([np.inf, 1.0])], 1.0, "soft", error_if_nonfinite=True)


def test_clip_bad_input():
    g = [np.ones(4)]
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="max_norm"):
            clip_grad_norm(g, bad)
    with pytest.raises(ValueError, match="mode"):
        clip_grad_norm(g, 1.0, "medium")
    with pytest.raises(ValueError, match="C-contiguous"):
        clip_grad_norm([np.ones((4, 4))[:, ::2]], 1.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        clip_grad_norm([ro], 1.0)
    with pytest.raises(TypeError, match="ndarray"):
        clip_grad_norm([[1.0, 2.0]], 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        clip_grad_norm([np.ones(3, dtype=np.int64)], 1.0)


@given(st.floats(0, 1e12), st.floats(1e-6, 1e6))
def test_soft_clip_within_factor_two_of_hard(norm, gamma):
    hard = clip_scale(norm, gamma, "hard")
    soft = clip_scale(norm, gamma, "soft")
    assert 0.5 * hard * (1 - 1e-15) <= soft <= hard * (1 + 1e-15)
    assert 0 < soft <= 1


@needs("torch")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_hard_clip_matches_torch_clip_grad_norm(rng, dtype):
    import torch

    g = make(rng, dtype, scale=3.0)
    tg = [torch.tensor(a.copy()) for a in g]
    tparams = [torch.zeros(a.shape, dtype=tg[0].dtype, requires_grad=True) for a in g]
    for p, x in zip(tparams, tg):
        p.grad = x
    tn = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
    n = clip_grad_norm(g, 1.0)
    assert n == pytest.approx(float(tn), rel=1e-6)
    # torch divides by (norm + 1e-6): a documented relative difference of 1e-6 / norm
    for a, p in zip(g, tparams):
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=2e-6, atol=1e-12)


# ---------------------------------------------------------------- optimiser references
def np_run(kind, cfg, params, grads_seq, lrs):
    """Plain float64 NumPy implementation of the documented update rules."""
    P = [p.astype(np.float64) for p in params]
    clip, mode = cfg.get("clip"), cfg.get("clip_mode", "hard")
    wd = cfg.get("weight_decay", 0.01 if kind == "AdamW" else 0.0)
    mom, damp, nest = cfg.get("momentum", 0.0), cfg.get("dampening", 0.0), cfg.get("nesterov", False)
    b1, b2 = cfg.get("betas", (0.9, 0.999))
    eps, ams = cfg.get("eps", 1e-8), cfg.get("amsgrad", False)
    lams = cfg.get("reg_lambdas")
    buf = [None] * len(P)
    m = [np.zeros_like(p) for p in P]
    v = [np.zeros_like(p) for p in P]
    vm = [np.zeros_like(p) for p in P]
    for t, (grads, lr) in enumerate(zip(grads_seq, lrs), 1):
        G = [g.astype(np.float64) for g in grads]
        n = np.linalg.norm(concat64(G))
        s = 1.0
        if clip is not None and n > 0:
            s = min(1.0, clip / n) if mode == "hard" else clip / (n + clip)
        D = [g * s for g in G]
        if lams is not None:
            idx = [k for k, p in enumerate(P) if p.ndim >= 2]
            _, rg = weissi([P[k] for k in idx], *lams)
            for k, r in zip(idx, rg):
                D[k] = D[k] + r
        for k in range(len(P)):
            d = D[k]
            if kind == "SGD":
                if wd and not cfg.get("decoupled_weight_decay", False):
                    d = d + wd * P[k]
                if wd and cfg.get("decoupled_weight_decay", False):
                    P[k] = P[k] * (1 - lr * wd)
                if mom:
                    buf[k] = d.copy() if buf[k] is None else mom * buf[k] + (1 - damp) * d
                    d = d + mom * buf[k] if nest else buf[k]
                P[k] = P[k] - lr * d
            else:
                if kind == "Adam" and wd:
                    d = d + wd * P[k]
                if kind == "AdamW":
                    P[k] = P[k] * (1 - lr * wd)
                m[k] = b1 * m[k] + (1 - b1) * d
                v[k] = b2 * v[k] + (1 - b2) * d * d
                vv = v[k]
                if ams:
                    vm[k] = np.maximum(vm[k], v[k])
                    vv = vm[k]
                denom = np.sqrt(vv) / math.sqrt(1 - b2**t) + eps
                P[k] = P[k] - lr / (1 - b1**t) * m[k] / denom
    return P


def fc_run(kind, cfg, params, grads_seq, lrs, n_threads=1):
    P = [p.copy() for p in params]
    cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[kind]
    kw = dict(cfg)
    if "reg_lambdas" in kw:
        kw["regularizer"] = "weissi"
    opt = cls(P, lrs[0], n_threads=n_threads, **kw)
    for grads, lr in zip(grads_seq, lrs):
        opt.lr = lr
        res = opt.step(grads)
        assert not res.skipped
    return P, opt


CONFIGS = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9, "dampening": 0.1}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05, "clip": 1.0}),
    ("SGD", {"momentum": 0.5, "weight_decay": 0.1, "decoupled_weight_decay": True, "clip": 2.0,
             "clip_mode": "soft"}),
    ("Adam", {"weight_decay": 0.1, "clip": 1.5}),
    ("Adam", {"amsgrad": True, "clip": 0.5, "clip_mode": "soft", "betas": (0.8, 0.99)}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.1, "amsgrad": True, "clip": 1.0, "eps": 1e-6}),
    ("AdamW", {"betas": (0.3, 0.9), "clip": 3.0}),  # 1 - beta1 >= 0.5: the other lerp branch
    ("SGD", {"momentum": 0.9, "clip": 1.0, "reg_lambdas": (0.01, 0.02)}),
    ("AdamW", {"clip": 1.0, "clip_mode": "soft", "reg_lambdas": (0.05, 0.01)}),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind,cfg", CONFIGS)
def test_optimizer_matches_numpy(rng, dtype, kind, cfg):
    shapes = [(5, 7), (13,), (3, 4, 5), (2, 33)]
    params = make(rng, dtype, shapes)
    steps = 8
    grads_seq = [make(rng, dtype, shapes, scale=2.0) for _ in range(steps)]
    lrs = [0.05 * (1 + 0.1 * t) for t in range(steps)]  # the lr changes between steps
    ours, _ = fc_run(kind, cfg, params, grads_seq, lrs)
    ref = np_run(kind, cfg, params, grads_seq, lrs)
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-12, 1e-13)
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


TORCH_CONFIGS = [c for c in CONFIGS if "reg_lambdas" not in c[1] and not c[1].get("decoupled_weight_decay")]


@needs("torch")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind,cfg", TORCH_CONFIGS)
def test_optimizer_matches_torch_100_steps(rng, dtype, kind, cfg):
    import torch

    shapes = [(5, 7), (13,), (3, 4, 5)]
    params = make(rng, dtype, shapes)
    steps = 100
    grads_seq = [make(rng, dtype, shapes, scale=2.0) for _ in range(steps)]
    lrs = [0.01 * (1 + 0.5 * math.sin(t)) for t in range(steps)]
    ours, _ = fc_run(kind, cfg, params, grads_seq, lrs)

    tp = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    tcfg = {k: v for k, v in cfg.items() if k not in ("clip", "clip_mode")}
    if kind == "SGD":
        topt = torch.optim.SGD(tp, lr=lrs[0], foreach=False, **tcfg)
    elif kind == "Adam":
        topt = torch.optim.Adam(tp, lr=lrs[0], foreach=False, **tcfg)
    else:
        topt = torch.optim.AdamW(tp, lr=lrs[0], foreach=False, **tcfg)
    clip, mode = cfg.get("clip"), cfg.get("clip_mode", "hard")
    for grads, lr in zip(grads_seq, lrs):
        topt.param_groups[0]["lr"] = lr
        for p, g in zip(tp, grads):
            p.grad = torch.tensor(g.copy())
        if clip is not None:  # the exact clip rules (torch's clip_grad_norm_ adds 1e-6 to the norm)
            n = np.linalg.norm(concat64(grads))
            coef = min(1.0, clip / n) if mode == "hard" else clip / (n + clip)
            for p in tp:
                p.grad.mul_(coef)
        topt.step()
    rtol, atol = (1e-5, 1e-5) if dtype == np.float32 else (1e-10, 1e-12)
    for a, p in zip(ours, tp):
        np.testing.assert_allclose(a, p.detach().numpy(), rtol=rtol, atol=atol)


@needs("torch")
def test_adamw_with_torch_clip_grad_norm_float32(rng):
    """End to end against torch's own recipe (clip_grad_norm_ + AdamW), 20 steps."""
    import torch

    shapes = [(64, 32), (32,), (10, 64)]
    params = make(rng, np.float32, shapes)
    grads_seq = [make(rng, np.float32, shapes, scale=0.5) for _ in range(20)]
    ours, _ = fc_run("AdamW", {"clip": 1.0, "weight_decay": 0.01}, params, grads_seq, [1e-3] * 20)
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch.optim.AdamW(tp, lr=1e-3, weight_decay=0.01)
    for grads in grads_seq:
        for p, g in zip(tp, grads):
            p.grad = torch.tensor(g.copy())
        torch.nn.utils.clip_grad_norm_(tp, 1.0)
        topt.step()
    for a, p in zip(ours, tp):
        np.testing.assert_allclose(a, p.detach().numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- step semantics
@pytest.mark.parametrize("kind", ["SGD", "AdamW"])
def test_nonfinite_gradient_skips_step(rng, kind):
    shapes = [(4, 5), (6,)]
    params = make(rng, np.float64, shapes)
    cfg = {"momentum": 0.9} if kind == "SGD" else {"amsgrad": True}
    P, opt = fc_run(kind, dict(cfg, clip=1.0), params, [make(rng, np.float64, shapes)], [0.1])
    before = [p.copy() for p in P]
    state = opt.state_dict()
    bad = make(rng, np.float64, shapes)
    bad[1][3] = np.inf
    res = opt.step(bad)
    assert res.skipped and res.norm == float("inf") and res.scale == 0.0
    bad[1][3] = np.nan
    assert math.isnan(opt.step(bad).norm)
    for a, b in zip(P, before):
        np.testing.assert_array_equal(a, b)
    after = opt.state_dict()
    assert after["step"] == state["step"] == 1
    for name in state["state"]:
        for a, b in zip(after["state"][name], state["state"][name]):
            np.testing.assert_array_equal(a, b)
    assert not opt.step(make(rng, np.float64, shapes)).skipped
    assert opt.step_count == 2


@pytest.mark.parametrize("kind", ["SGD", "Adam", "AdamW"])
def test_grads_untouched_and_result(rng, kind):
    shapes = [(4, 5), (6,)]
    params = make(rng, np.float32, shapes)
    grads = make(rng, np.float32, shapes, scale=10)
    copies = [g.copy() for g in grads]
    g_ro = []
    for g in grads:
        g.flags.writeable = False
        g_ro.append(g)
    opt = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[kind](params, 0.1, clip=1.0)
    res = opt.step(g_ro)
    for g, c in zip(grads, copies):
        np.testing.assert_array_equal(g, c)
    n = np.linalg.norm(concat64(copies))
    assert res.norm == pytest.approx(n, rel=1e-12)
    assert res.scale == pytest.approx(1.0 / n, rel=1e-12)
    assert res.skipped is False and res.regularization == 0.0


@pytest.mark.parametrize("kind,cfg", [("SGD", {"momentum": 0.9, "nesterov": True}), ("Adam", {"amsgrad": True}),
                                      ("AdamW", {"clip": 1.0})])
def test_state_dict_round_trip(rng, kind, cfg):
    shapes = [(4, 5), (6,), (2, 3, 3)]
    params = make(rng, np.float32, shapes)
    seq = [make(rng, np.float32, shapes) for _ in range(6)]
    cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[kind]
    P = [p.copy() for p in params]
    opt = cls(P, 0.1, **cfg)
    for g in seq[:3]:
        opt.step(g)
    saved_params = [p.copy() for p in P]
    sd = opt.state_dict()
    opt.lr = 0.05
    for g in seq[3:]:
        opt.step(g)
    Q = [p.copy() for p in saved_params]
    opt2 = cls(Q, 123.0, **cfg)
    opt2.load_state_dict(sd)
    assert opt2.lr == 0.1 and opt2.step_count == 3
    opt2.lr = 0.05
    for g in seq[3:]:
        opt2.step(g)
    for a, b in zip(P, Q):
        np.testing.assert_array_equal(a, b)  # bit-identical
    for name in sd["state"]:
        for a, b in zip(opt.state_dict()["state"][name], opt2.state_dict()["state"][name]):
            np.testing.assert_array_equal(a, b)
    # the snapshot is a copy
    assert sd["step"] == 3
    with pytest.raises(ValueError, match="settings"):
        cls([p.copy() for p in params], 0.1, clip=7.0, **{k: v for k, v in cfg.items() if k != "clip"}
            ).load_state_dict(sd)
    bad = opt.state_dict()
    name = next(iter(bad["state"]))
    bad["state"][name][0] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        opt2.load_state_dict(bad)


@pytest.mark.parametrize("kind", ["SGD", "AdamW"])
def test_threads_identical(rng, kind):
    shapes = [(300, 700), (17,), (50000,), (3, 40000)]
    params = make(rng, np.float32, shapes)
    seq = [make(rng, np.float32, shapes) for _ in range(2)]
    cfg = {"momentum": 0.9, "clip": 10.0} if kind == "SGD" else {"clip": 10.0, "clip_mode": "soft"}
    a, _ = fc_run(kind, cfg, params, seq, [0.01, 0.01], n_threads=1)
    b, _ = fc_run(kind, cfg, params, seq, [0.01, 0.01], n_threads=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_optimizer_bad_input(rng):
    p = [np.zeros((3, 3)), np.zeros(3)]
    with pytest.raises(ValueError, match="empty"):
        SGD([], 0.1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(p, 0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        SGD(p, -0.1)
    with pytest.raises(ValueError, match="betas"):
        AdamW(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="clip"):
        AdamW(p, clip=0.0)
    with pytest.raises(TypeError, match="mixes dtypes"):
        SGD([np.zeros(3), np.zeros(3, np.float32)], 0.1)
    big = np.zeros(10)
    with pytest.raises(ValueError, match="share memory"):
        SGD([big[:6], big[4:]], 0.1)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        SGD([ro], 0.1)
    with pytest.raises(ValueError, match="regularizer"):
        SGD(p, 0.1, regularizer="l3")
    with pytest.raises(ValueError, match="reg_lambdas"):
        SGD(p, 0.1, regularizer="weissi", reg_lambdas=(1.0,))
    with pytest.raises(ValueError, match="out of range"):
        SGD(p, 0.1, regularizer="weissi", reg_lambdas=(1.0, 1.0), reg_params=[5])
    opt = AdamW(p)
    with pytest.raises(ValueError, match="2 params"):
        opt.step([np.zeros((3, 3))])
    with pytest.raises(ValueError, match=r"grads\[1\] has shape"):
        opt.step([np.zeros((3, 3)), np.zeros(4)])
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype"):
        opt.step([np.zeros((3, 3), np.float32), np.zeros(3)])
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step([np.zeros((3, 6))[:, ::2], np.zeros(3)])
    with pytest.raises(ValueError, match="itself"):
        opt.step([p[0], np.zeros(3)])
    with pytest.raises(ValueError, match="all zeros"):
        SGD(p, 0.1, regularizer="weissi", reg_lambdas=(1.0, 1.0)).step([np.ones((3, 3)), np.ones(3)])
    assert opt.step_count == 0


# ---------------------------------------------------------------- WEISSI
def np_weissi(ws, l1, l2):
    val = sum(l1 * np.log(np.linalg.norm(w)) + l2 * np.abs(w).sum() / np.linalg.norm(w) for w in ws)
    grads = []
    for w in ws:
        n = np.linalg.norm(w)
        grads.append(l1 * w / n**2 + l2 * (np.sign(w) / n - np.abs(w).sum() * w / n**3))
    return val, grads


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_weissi_matches_numpy(rng, dtype):
    ws = make(rng, dtype, [(5, 7), (3, 4, 5), (2, 2)])
    ws[2][0, 1] = 0.0  # sign(0) = 0
    val, grads = weissi(ws, 0.3, 0.7)
    rv, rg = np_weissi([w.astype(np.float64) for w in ws], 0.3, 0.7)
    assert val == pytest.approx(rv, rel=1e-12)
    for g, r in zip(grads, rg):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)


def test_weissi_finite_differences(rng):
    ws = [rng.standard_normal((4, 3)), rng.standard_normal((2, 3, 2))]
    _, grads = weissi(ws, 0.4, 0.9)
    h = 1e-6
    for k, w in enumerate(ws):
        for idx in np.ndindex(w.shape):
            wp = [x.copy() for x in ws]
            wm = [x.copy() for x in ws]
            wp[k][idx] += h
            wm[k][idx] -= h
            fd = (weissi(wp, 0.4, 0.9)[0] - weissi(wm, 0.4, 0.9)[0]) / (2 * h)
            assert fd == pytest.approx(grads[k][idx], rel=1e-6, abs=1e-8)


def test_weissi_scale_shift_invariance(rng):
    ws = [rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal((4, 3))]
    gam = [3.7, 0.25, 1 / (3.7 * 0.25)]  # prod = 1
    v0 = weissi(ws, 0.5, 0.2)[0]
    v1 = weissi([g * w for g, w in zip(gam, ws)], 0.5, 0.2)[0]
    assert v1 == pytest.approx(v0, rel=1e-13, abs=1e-13)
    # L2 is not invariant (the contrast drawn by the post)
    l2 = lambda ws: sum((w**2).sum() for w in ws)  # noqa: E731
    assert abs(l2([g * w for g, w in zip(gam, ws)]) - l2(ws)) > 1.0
    # a shift with prod != 1 moves the log term by lam1 * log(prod)
    v2 = weissi([2.0 * w for w in ws], 0.5, 0.2)[0]
    assert v2 - v0 == pytest.approx(0.5 * 3 * math.log(2.0), rel=1e-12)


def test_weissi_errors():
    with pytest.raises(ValueError, match=r"weights\[1\] is all zeros"):
        weissi([np.ones((2, 2)), np.zeros((3, 3))], 1.0, 1.0)
    with pytest.raises(ValueError, match=r"weights\[0\] contains NaN"):
        weissi([np.full((2, 2), np.nan)], 1.0, 1.0)
    with pytest.raises(ValueError, match="lam1"):
        weissi([np.ones(3)], -1.0, 1.0)
    assert weissi([], 1.0, 1.0) == (0.0, [])


def test_fused_weissi_reg_params_selection(rng):
    shapes = [(4, 5), (5,), (3, 4)]
    params = make(rng, np.float64, shapes)
    grads = make(rng, np.float64, shapes)
    for reg_params in (None, [0, 2], [True, False, True]):
        P = [p.copy() for p in params]
        res = SGD(P, 0.1, regularizer="weissi", reg_lambdas=(0.2, 0.3), reg_params=reg_params).step(grads)
        v, rg = np_weissi([params[0], params[2]], 0.2, 0.3)
        assert res.regularization == pytest.approx(v, rel=1e-12)
        np.testing.assert_allclose(P[0], params[0] - 0.1 * (grads[0] + rg[0]), rtol=1e-13)
        np.testing.assert_allclose(P[1], params[1] - 0.1 * grads[1], rtol=1e-13)
        np.testing.assert_allclose(P[2], params[2] - 0.1 * (grads[2] + rg[1]), rtol=1e-13)
    P = [p.copy() for p in params]
    SGD(P, 0.1, regularizer="weissi", reg_lambdas=(0.2, 0.3), reg_params=[1]).step(grads)
    np.testing.assert_allclose(P[0], params[0] - 0.1 * grads[0], rtol=1e-13)


def test_tour_runs(capsys):
    from fastcore._tour import Show

    optim.tour_optim(Show())
    out = capsys.readouterr().out
    assert "AdamW" in out and "skipped=True" in out


@pytest.mark.parametrize("opt_cls", [SGD, AdamW])
def test_gradient_sharing_memory_with_another_parameter_is_refused(opt_cls):
    # issue 28 item 11: step([p[1], p[0]]) updated p[0] and then read the changed p[0] as p[1]'s
    # gradient (an order-dependent update); a gradient overlapping a parameter is now an error
    p = [np.ones(4), np.full(4, 2.0), np.zeros(0), np.full(3, 3.0)]
    opt = opt_cls(p, 0.1)
    before = [x.copy() for x in p]
    cases = [
        [p[1], p[0], np.zeros(0), np.ones(3)],                      # swapped
        [np.ones(4), np.ones(4), np.zeros(0), p[0][:3]],            # a view into another parameter
        [np.ones(4), p[1], np.zeros(0), np.ones(3)],                 # the parameter itself
    ]
    for grads in cases:
        with pytest.raises(ValueError, match=r"grads\[\d\] (shares memory with|is) params\[\d\]"):
            opt.step(grads)
        for x, y in zip(p, before):
            np.testing.assert_array_equal(x, y)  # nothing written
    buf = np.ones(12)  # gradients sharing one buffer with each other (not with params) are fine
    opt.step([buf[:4], buf[4:8], np.zeros(0), buf[8:11]])
    assert not np.array_equal(p[0], before[0])


@pytest.mark.parametrize("dtype,exps,too_small", [(np.float64, (-400, -600, -1000, 600), -1060),
                                                  (np.float32, (-60, -118, 60), -135)])
def test_weissi_at_tiny_and_huge_scales(dtype, exps, too_small):
    # issue 28 item 6: lam1/||W||^2 - lam2 ||W||_1/||W||^3 overflowed float64 below ||W|| ~ 1e-103
    # (gradient -inf, true value +8e107) and the fused step wrote inf into the parameters.
    # Reference: R is scale invariant, so dR/dW at 2^e W0 is 2^-e times the one at W0 (exact).
    rng = np.random.default_rng(3)
    W0 = rng.standard_normal((3, 4))
    W0[0, 0] = 0.0  # sign(0) = 0
    v0, (g0,) = optim.weissi([W0], 0.7, 0.3)
    for e in exps:
        W = np.ldexp(W0, e).astype(dtype)
        v, (g,) = optim.weissi([W], 0.7, 0.3)
        assert g.dtype == dtype and np.isfinite(g).all()
        np.testing.assert_allclose(g, np.ldexp(g0, -e), rtol=1e-13 if dtype == np.float64 else 1e-5)
        assert v == pytest.approx(v0 + 0.7 * e * np.log(2.0), rel=1e-12, abs=1e-9 if dtype == np.float64 else 1e-5)
    W = np.ldexp(W0, too_small).astype(dtype)
    assert W.any()
    with pytest.raises(ValueError, match=r"weights\[0\] has \|\|W\|\| = .* overflows"):
        optim.weissi([W], 0.7, 0.3)


def test_fused_weissi_step_at_tiny_scales():
    rng = np.random.default_rng(4)
    W0 = rng.standard_normal((3, 4))
    # representable coefficient 1/||W||^2: the step is the plain formula's
    p = np.ldexp(W0, -400)
    _, (g,) = optim.weissi([p], 0.7, 0.3)
    expect = p - 1e-3 * g
    optim.SGD([p], lr=1e-3, regularizer="weissi", reg_lambdas=(0.7, 0.3)).step([np.zeros_like(p)])
    np.testing.assert_allclose(p, expect, rtol=1e-12)
    # 1/||W||^2 beyond float64: an error naming the parameter, and nothing written
    p = np.ldexp(W0, -600)
    before = p.copy()
    opt = optim.SGD([p], lr=1e-3, regularizer="weissi", reg_lambdas=(0.7, 0.3))
    with pytest.raises(ValueError, match=r"params\[0\] has \|\|W\|\| = .*overflows float64"):
        opt.step([np.zeros_like(p)])
    assert np.array_equal(p, before) and opt.step_count == 0
