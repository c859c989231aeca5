"""fastcore.torch.optim: fused clip + SGD / Adam / AdamW as torch.optim.Optimizer subclasses,
checked against torch.optim (+ clip_grad_norm_) step by step."""
import copy
import io
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastcore import optim as np_optim
from fastcore.torch import optim

SHAPES = [(5, 3), (7,), (2, 3, 4), (1,), (4, 1)]


@pytest.fixture(autouse=True)
def _torch_one_thread():
    """torch's own ops on one thread: the reference runs stay fast on a busy machine (fastcore's
    threads are set per test where they matter)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _start(seed, shapes=SHAPES, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


def _twin(values):
    """Two independent lists of parameters holding the same values."""
    return ([torch.nn.Parameter(v.clone()) for v in values], [torch.nn.Parameter(v.clone()) for v in values])


def _grads(rng, shapes, dtype=torch.float64, big=True):
    """Random gradients; their global norm spans ~0.1 to ~100 so a clip at 1 engages on some steps."""
    f = 10 ** rng.uniform(-1.5, 1.5) if big else 1.0
    return [torch.from_numpy(rng.standard_normal(s) * f).to(dtype) for s in shapes]


def _set(params, grads, skip=()):
    for k, (p, g) in enumerate(zip(params, grads)):
        p.grad = None if k in skip else g.clone()


def _maxdiff(a, b):
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in zip(a, b))


def _groups(params, extra):
    """Two groups: the first three params with the defaults, the rest with ``extra``."""
    return [{"params": params[:3]}, dict(params=params[3:], **extra)]


# ----------------------------------------------------------------- trajectories vs torch
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_adamw_matches_torch(amsgrad, weight_decay, clip):
    rng = np.random.default_rng(1)
    ours_p, ref_p = _twin(_start(0))
    kw = {"lr": 2e-2, "betas": (0.8, 0.99), "eps": 1e-7, "weight_decay": weight_decay, "amsgrad": amsgrad}
    ours = optim.AdamW(_groups(ours_p, {"lr": 5e-3, "weight_decay": 0.3}), clip=clip, **kw)
    ref = torch.optim.AdamW(_groups(ref_p, {"lr": 5e-3, "weight_decay": 0.3}), **kw)
    for t in range(100):
        grads = _grads(rng, SHAPES)
        skip = {3} if t % 7 == 3 else ()  # a parameter without a gradient is skipped (its step too)
        _set(ours_p, grads, skip)
        _set(ref_p, grads, skip)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref_p, clip)
        ours.step()
        ref.step()
        assert not ours.last_step.skipped
    # torch clips by clip / (norm + 1e-6), fastcore by clip / norm: ~1e-7 apart after 100 steps
    tol = 1e-12 if clip is None else 1e-6
    assert _maxdiff(ours_p, ref_p) < tol
    for po, pr in zip(ours_p, ref_p):
        so, sr = ours.state[po], ref.state[pr]
        assert set(so) == set(sr)
        assert float(so["step"]) == float(sr["step"])
        for key in set(so) - {"step"}:
            assert float((so[key] - sr[key]).abs().max()) < tol
    assert float(ours.state[ours_p[3]]["step"]) == 100 - len([t for t in range(100) if t % 7 == 3])


def test_adam_coupled_decay_and_maximize_match_torch():
    rng = np.random.default_rng(2)
    for maximize in (False, True):
        ours_p, ref_p = _twin(_start(3))
        ours = optim.Adam(ours_p, lr=1e-2, weight_decay=0.05, maximize=maximize, clip=2.0)
        ref = torch.optim.Adam(ref_p, lr=1e-2, weight_decay=0.05, maximize=maximize)
        for _ in range(60):
            grads = _grads(rng, SHAPES)
            _set(ours_p, grads)
            _set(ref_p, grads)
            torch.nn.utils.clip_grad_norm_(ref_p, 2.0)
            ours.step()
            ref.step()
        assert _maxdiff(ours_p, ref_p) < 1e-6


@pytest.mark.parametrize("momentum,dampening,nesterov,weight_decay",
                         [(0.0, 0.0, False, 0.0), (0.0, 0.0, False, 0.01), (0.9, 0.0, False, 0.0),
                          (0.9, 0.0, True, 0.01), (0.8, 0.3, False, 0.01)])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_sgd_matches_torch(momentum, dampening, nesterov, weight_decay, clip):
    rng = np.random.default_rng(3)
    ours_p, ref_p = _twin(_start(4))
    kw = {"lr": 1e-2, "momentum": momentum, "dampening": dampening, "nesterov": nesterov,
          "weight_decay": weight_decay}
    ours = optim.SGD(_groups(ours_p, {"lr": 3e-2}), clip=clip, **kw)
    ref = torch.optim.SGD(_groups(ref_p, {"lr": 3e-2}), **kw)
    for t in range(100):
        grads = _grads(rng, SHAPES)
        skip = {1} if t % 5 == 0 else ()
        _set(ours_p, grads, skip)
        _set(ref_p, grads, skip)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref_p, clip)
        ours.step()
        ref.step()
    tol = 1e-12 if clip is None else 1e-6
    assert _maxdiff(ours_p, ref_p) < tol
    if momentum:
        for po, pr in zip(ours_p, ref_p):
            assert float((ours.state[po]["momentum_buffer"] - ref.state[pr]["momentum_buffer"]).abs().max()) < tol
    else:
        assert len(ours.state) == 0 == len(ref.state)  # torch keeps no state without momentum


def test_hyperparameters_changed_between_steps_match_torch():
    """momentum switched off and on again, betas and eps changed by hand (as schedulers do)."""
    rng = np.random.default_rng(30)
    pairs = []
    for ours_cls, ref_cls, kw in ((optim.SGD, torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "dampening": 0.2}),
                                  (optim.Adam, torch.optim.Adam, {"lr": 1e-2})):
        ours_p, ref_p = _twin(_start(31))
        pairs.append((ours_cls(ours_p, **kw), ref_cls(ref_p, **kw), ours_p, ref_p))
    for t in range(12):
        grads = _grads(rng, SHAPES)
        for ours, ref, ours_p, ref_p in pairs:
            for opt in (ours, ref):
                g = opt.param_groups[0]
                if "momentum" in g:
                    g["momentum"] = 0.0 if 4 <= t < 8 else 0.9
                else:
                    g["betas"] = (0.8, 0.95) if t >= 3 else (0.9, 0.999)
                    g["eps"] = 1e-3 if t >= 7 else 1e-8
            _set(ours_p, grads)
            _set(ref_p, grads)
            ours.step()
            ref.step()
    for ours, ref, ours_p, ref_p in pairs:
        assert _maxdiff(ours_p, ref_p) < 1e-12
    # amsgrad switched on later (torch raises KeyError): max_exp_avg_sq starts from exp_avg_sq
    ours, _, ours_p, _ = pairs[1]
    ours.param_groups[0]["amsgrad"] = True
    _drive(ours, ours_p, rng, 1)
    st = ours.state[ours_p[0]]
    assert torch.equal(st["max_exp_avg_sq"], st["exp_avg_sq"]) and float(st["step"]) == 13


def test_mixed_dtypes_and_late_gradients_match_torch():
    """float32 and float64 params in one group (one kernel per dtype), and params whose first
    gradient comes late (state created lazily, counters of different ages, > 8 counters)."""
    rng = np.random.default_rng(5)
    shapes = [(3, 2), (4,)] * 6
    start = [v.to(torch.float32) if k % 2 else v for k, v in enumerate(_start(6, shapes))]
    ours_p, ref_p = _twin(start)
    ours = optim.AdamW(ours_p, lr=1e-2, clip=1.0)
    ref = torch.optim.AdamW(ref_p, lr=1e-2)
    for t in range(30):
        grads = [g.to(p.dtype) for g, p in zip(_grads(rng, shapes), start)]
        skip = set(range(t + 1, len(shapes)))  # param k gets gradients from step k on
        _set(ours_p, grads, skip)
        _set(ref_p, grads, skip)
        torch.nn.utils.clip_grad_norm_(ref_p, 1.0)
        ours.step()
        ref.step()
    for k, (po, pr) in enumerate(zip(ours_p, ref_p)):
        # torch sums float32 gradients' squares in float32 for the clip (fastcore: float64)
        tol = 1e-4 if po.dtype == torch.float32 else 1e-6
        assert float((po - pr).detach().abs().max()) < tol, k
        assert float(ours.state[po]["step"]) == float(ref.state[pr]["step"]) == 30 - k


def test_soft_clip_matches_numpy_rule():
    """clip_mode='soft': the gradients are scaled by clip / (||g|| + clip) (fastcore's rule),
    computed here in NumPy and fed to torch.optim.AdamW."""
    rng = np.random.default_rng(7)
    ours_p, ref_p = _twin(_start(8))
    ours = optim.AdamW(ours_p, lr=1e-2, clip=0.5, clip_mode="soft")
    ref = torch.optim.AdamW(ref_p, lr=1e-2)
    for _ in range(100):
        grads = _grads(rng, SHAPES)
        norm = math.sqrt(sum(float(np.sum(g.numpy() ** 2)) for g in grads))
        scale = 0.5 / (norm + 0.5)
        _set(ours_p, grads)
        _set(ref_p, [g * scale for g in grads])
        ours.step()
        ref.step()
        assert ours.last_step.norm == pytest.approx(norm, rel=1e-12)
        assert ours.last_step.scale == pytest.approx(scale, rel=1e-12)
    assert _maxdiff(ours_p, ref_p) < 1e-9


def test_weissi_matches_fastcore_optim():
    """regularizer='weissi': the gradient of fastcore.optim.weissi (weights with ndim >= 2, unless a
    group says otherwise) is added after the clip; last_step.regularization is its value."""
    rng = np.random.default_rng(9)
    lam = (0.1, 0.05)
    ours_p, ref_p = _twin(_start(10))
    groups = [{"params": ours_p[:3]}, {"params": ours_p[3:4], "weissi": True}, {"params": ours_p[4:], "weissi": False}]
    ours = optim.SGD(groups, lr=1e-2, momentum=0.9, clip=1.0, regularizer="weissi", reg_lambdas=lam)
    ref = torch.optim.SGD(ref_p, lr=1e-2, momentum=0.9)
    chosen = [0, 2, 3]  # (5, 3) and (2, 3, 4) by ndim; (1,) by its group; (4, 1) excluded by its group
    for _ in range(50):
        grads = _grads(rng, SHAPES)
        _set(ours_p, grads)
        norm = math.sqrt(sum(float(np.sum(g.numpy() ** 2)) for g in grads))
        _set(ref_p, [g * min(1.0, 1.0 / norm) for g in grads])  # fastcore's hard clip, exactly
        value, rg = np_optim.weissi([ref_p[k].detach().numpy() for k in chosen], *lam)
        for k, g in zip(chosen, rg):
            ref_p[k].grad += torch.from_numpy(g)
        ours_value, _ = np_optim.weissi([ours_p[k].detach().numpy() for k in chosen], *lam)
        ours.step()
        ref.step()
        assert ours.last_step.regularization == pytest.approx(ours_value, rel=1e-12)
        assert ours_value == pytest.approx(value, rel=1e-12)
    assert _maxdiff(ours_p, ref_p) < 1e-12


@pytest.mark.parametrize("sched", ["step", "onecycle"])
def test_lr_scheduler_matches_torch(sched):
    rng = np.random.default_rng(11)
    ours_p, ref_p = _twin(_start(12))
    ours = optim.AdamW(ours_p, lr=1e-2)
    ref = torch.optim.AdamW(ref_p, lr=1e-2)

    def make(opt):
        if sched == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=40)  # lr and beta1 move

    s_ours, s_ref = make(ours), make(ref)
    lrs = []
    for _ in range(40):
        grads = _grads(rng, SHAPES, big=False)
        _set(ours_p, grads)
        _set(ref_p, grads)
        ours.step()
        ref.step()
        s_ours.step()
        s_ref.step()
        assert ours.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
        lrs.append(ours.param_groups[0]["lr"])
    assert len(set(lrs)) > 5
    assert _maxdiff(ours_p, ref_p) < 1e-9


# ----------------------------------------------------------------- state dicts
def _drive(opt, params, rng, steps, clip=None):
    for _ in range(steps):
        _set(params, _grads(rng, [p.shape for p in params]))
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()


@pytest.mark.parametrize("via", ["torch.save", "live dict"])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_state_dict_round_trip(kind, via):
    def make(params):
        if kind == "adamw":
            return optim.AdamW(_groups(params, {"lr": 3e-3}), lr=1e-2, amsgrad=True, clip=1.0)
        return optim.SGD(_groups(params, {"lr": 3e-3}), lr=1e-2, momentum=0.9, nesterov=True, clip=1.0)

    start = _start(13)
    full_p = [torch.nn.Parameter(v.clone()) for v in start]
    full = make(full_p)
    _drive(full, full_p, np.random.default_rng(14), 20)

    a_p = [torch.nn.Parameter(v.clone()) for v in start]
    a = make(a_p)
    rng = np.random.default_rng(14)
    _drive(a, a_p, rng, 10)
    b_p = [torch.nn.Parameter(p.detach().clone()) for p in a_p]
    b = make(b_p)
    if via == "torch.save":
        buf = io.BytesIO()
        torch.save(a.state_dict(), buf)
        buf.seek(0)
        b.load_state_dict(torch.load(buf))
    else:
        b.load_state_dict(a.state_dict())  # loading copies the tensors:
        _drive(a, a_p, np.random.default_rng(99), 3)  # the original moves on, the copy must not follow
    _drive(b, b_p, rng, 10)
    assert _maxdiff(b_p, full_p) == 0.0
    for pb, pf in zip(b_p, full_p):
        for key in full.state[pf]:
            assert torch.equal(b.state[pb][key], full.state[pf][key]), key


def test_state_dict_matches_torch_layout():
    ours_p, ref_p = _twin(_start(15))
    ours = optim.AdamW(ours_p, amsgrad=True)
    ref = torch.optim.AdamW(ref_p, amsgrad=True)
    for opt, ps in ((ours, ours_p), (ref, ref_p)):
        _drive(opt, ps, np.random.default_rng(0), 2)
    so, sr = ours.state_dict(), ref.state_dict()
    assert set(so) == set(sr) == {"state", "param_groups"}
    assert sorted(so["state"]) == sorted(sr["state"])
    for k in sr["state"]:
        assert set(so["state"][k]) == set(sr["state"][k])
        st = so["state"][k]["step"]
        assert isinstance(st, torch.Tensor) and st.dim() == 0 and st.dtype == torch.float32 and float(st) == 2
    assert set(so["param_groups"][0]) <= set(sr["param_groups"][0])


@pytest.mark.parametrize("direction", ["torch->ours", "ours->torch"])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_state_dict_cross_loads_with_torch(direction, kind):
    def make(cls_ours, params):
        if kind == "adamw":
            cls = optim.AdamW if cls_ours else torch.optim.AdamW
            return cls(_groups(params, {"lr": 3e-3}), lr=1e-2, weight_decay=0.05, amsgrad=True)
        cls = optim.SGD if cls_ours else torch.optim.SGD
        return cls(_groups(params, {"lr": 3e-3}), lr=1e-2, momentum=0.9, dampening=0.1)

    first_ours = direction == "ours->torch"
    start = _start(16)
    full_p = [torch.nn.Parameter(v.clone()) for v in start]
    full = make(not first_ours, full_p)  # the uninterrupted run, by the optimizer that resumes
    _drive(full, full_p, np.random.default_rng(17), 20)

    a_p = [torch.nn.Parameter(v.clone()) for v in start]
    a = make(first_ours, a_p)
    rng = np.random.default_rng(17)
    _drive(a, a_p, rng, 10)
    sd = copy.deepcopy(a.state_dict())
    b_p = [torch.nn.Parameter(p.detach().clone()) for p in a_p]
    b = make(not first_ours, b_p)
    b.load_state_dict(sd)
    _drive(b, b_p, rng, 10)
    assert _maxdiff(b_p, full_p) < 1e-12
    for pb, pf in zip(b_p, full_p):
        assert set(b.state[pb]) == set(full.state[pf])
        for key in full.state[pf]:
            assert float((b.state[pb][key].double() - full.state[pf][key].double()).abs().max()) < 1e-12, key


def test_deepcopy_keeps_options_and_state():
    ps = [torch.nn.Parameter(v) for v in _start(18)]
    opt = optim.AdamW(ps, lr=1e-2, clip=0.5, clip_mode="soft", n_threads=1)
    _drive(opt, ps, np.random.default_rng(19), 5)
    ps2, opt2 = copy.deepcopy((ps, opt))
    assert (opt2.clip, opt2.clip_mode, opt2.n_threads) == (0.5, "soft", 1)
    rng = np.random.default_rng(20)
    for _ in range(5):
        grads = _grads(rng, SHAPES)
        _set(ps, grads)
        _set(ps2, grads)
        opt.step()
        opt2.step()
    assert _maxdiff(ps, ps2) == 0.0
    assert float(opt2.state[ps2[0]]["step"]) == 10


# ----------------------------------------------------------------- semantics
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_nonfinite_gradient_skips_the_step(bad, kind):
    ps = [torch.nn.Parameter(v) for v in _start(21)]
    make = (lambda: optim.AdamW(ps, lr=1e-2, clip=1.0)) if kind == "adamw" else \
        (lambda: optim.SGD(ps, lr=1e-2, momentum=0.9, clip=1.0))
    opt = make()
    rng = np.random.default_rng(22)
    grads = _grads(rng, SHAPES)
    grads[2][1, 2, 3] = bad
    _set(ps, grads)
    opt.step()  # a first step: no state is created
    assert opt.last_step.skipped and len(opt.state) == 0
    _drive(opt, ps, rng, 3)
    before = copy.deepcopy((ps, opt.state_dict()))
    grads = _grads(rng, SHAPES)
    grads[4][0, 0] = bad
    _set(ps, grads)
    opt.step()
    res = opt.last_step
    assert res.skipped and res.scale == 0.0 and not math.isfinite(res.norm)
    assert all(torch.equal(p, q) for p, q in zip(ps, before[0]))
    for k, st in before[1]["state"].items():
        for key, v in st.items():
            assert torch.equal(opt.state[ps[k]][key], v), key
    _drive(opt, ps, rng, 1)  # and it goes on
    assert not opt.last_step.skipped


def test_small_model_trains():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    x = torch.randn(256, 8)
    y = torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3]
    opt = optim.AdamW(model.parameters(), lr=1e-2, clip=1.0)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    with torch.no_grad():  # the closure still gets gradients, as with torch's optimizers
        first = opt.step(closure).item()
    for _ in range(300):
        last = opt.step(closure).item()
    assert last < 0.2 * first
    assert opt.last_step.norm > 0 and not opt.last_step.skipped


def test_updates_in_place_without_copies():
    ps = [torch.nn.Parameter(v) for v in _start(23)]
    opt = optim.AdamW(ps, lr=1e-2)
    rng = np.random.default_rng(24)
    ptrs = [p.data_ptr() for p in ps]
    _drive(opt, ps, rng, 1)
    state_ptrs = [(opt.state[p]["exp_avg"].data_ptr(), opt.state[p]["exp_avg_sq"].data_ptr()) for p in ps]
    versions = [p._version for p in ps]
    _drive(opt, ps, rng, 2)
    assert [p.data_ptr() for p in ps] == ptrs
    assert [(opt.state[p]["exp_avg"].data_ptr(), opt.state[p]["exp_avg_sq"].data_ptr()) for p in ps] == state_ptrs
    assert all(p._version > v for p, v in zip(ps, versions))  # autograd sees the in-place update


def test_step_hooks_and_profiler_work():
    """The step skips torch's profiler wrapper when nothing listens, and takes it otherwise."""
    ps = [torch.nn.Parameter(v) for v in _start(29)]
    opt = optim.SGD(ps, lr=0.1)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    h2 = opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o.last_step.skipped)))
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    h3 = register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append("global"))
    _drive(opt, ps, np.random.default_rng(0), 1)
    assert calls == ["global", "pre", ("post", False)]
    for h in (h1, h2, h3):
        h.remove()
    _drive(opt, ps, np.random.default_rng(0), 1)
    assert len(calls) == 3
    with torch.profiler.profile() as prof:
        _drive(opt, ps, np.random.default_rng(0), 1)
    assert any("Optimizer.step#SGD.step" in e.name for e in prof.events())


def test_results_do_not_depend_on_threads():
    out = []
    for n in (1, 2):
        ps = [torch.nn.Parameter(v) for v in _start(25, [(600, 300), (70000,), (3,)])]  # 2 threads' worth
        opt = optim.AdamW(ps, lr=1e-2, clip=1.0, n_threads=n)
        _drive(opt, ps, np.random.default_rng(26), 5)
        out.append(ps)
    assert _maxdiff(*out) == 0.0


def test_state_replaced_by_hand_is_used():
    """Writing a new tensor into opt.state (as some code does to reset moments) is seen by the next step."""
    ours_p, ref_p = _twin(_start(27))
    ours, ref = optim.AdamW(ours_p, lr=1e-2), torch.optim.AdamW(ref_p, lr=1e-2)
    rng = np.random.default_rng(28)
    for t in range(6):
        grads = _grads(rng, SHAPES)
        _set(ours_p, grads)
        _set(ref_p, grads)
        ours.step()
        ref.step()
        if t == 2:
            for opt, ps in ((ours, ours_p), (ref, ref_p)):
                opt.state[ps[0]]["exp_avg"] = torch.zeros_like(ps[0])
                opt.state[ps[1]]["step"] = torch.tensor(0.0)
    assert _maxdiff(ours_p, ref_p) < 1e-12


def test_parameter_data_replaced_between_steps():
    """p.data = new_tensor (a common trick) moves the update to the new memory, as in torch."""
    ours_p, ref_p = _twin(_start(32))
    ours, ref = optim.AdamW(ours_p, lr=1e-2), torch.optim.AdamW(ref_p, lr=1e-2)
    rng = np.random.default_rng(33)
    for t in range(4):
        grads = _grads(rng, SHAPES)
        _set(ours_p, grads)
        _set(ref_p, grads)
        ours.step()
        ref.step()
        if t == 1:
            for ps in (ours_p, ref_p):
                ps[2].data = ps[2].data.clone() * 2
    assert _maxdiff(ours_p, ref_p) < 1e-12


# ----------------------------------------------------------------- errors
def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="meta"):
        optim.AdamW([torch.nn.Parameter(torch.empty(3, device="meta"))])
    with pytest.raises(TypeError, match="float32 or float64"):
        optim.SGD([torch.zeros(3, dtype=torch.int64)], lr=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        optim.AdamW([torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))])
    nc = torch.randn(4, 3).t().detach().requires_grad_()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\] is not contiguous"):
        optim.AdamW([torch.nn.Parameter(torch.zeros(2)), nc])
    with pytest.raises(ValueError, match=r"param_groups\[1\]"):
        optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))]}, {"params": [nc]}], lr=0.1)
    opt = optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="not contiguous"):
        opt.add_param_group({"params": [nc]})
    assert len(opt.param_groups) == 1  # the refused group is not kept
    with pytest.raises(ValueError, match="empty"):
        optim.AdamW([])


def test_bad_options_are_refused():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="clip"):
        optim.AdamW(p, clip=0.0)
    with pytest.raises(ValueError, match="clip mode"):
        optim.AdamW(p, clip=1.0, clip_mode="medium")
    with pytest.raises(ValueError, match="regularizer"):
        optim.SGD(p, lr=0.1, regularizer="l2")
    with pytest.raises(ValueError, match="reg_lambdas"):
        optim.SGD(p, lr=0.1, regularizer="weissi", reg_lambdas=(1.0,))
    with pytest.raises(ValueError, match="weissi"):
        optim.SGD([{"params": p, "weissi": True}], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr"):
        optim.AdamW(p, lr=-1.0)
    with pytest.raises(ValueError, match="n_threads|threads"):
        optim.AdamW(p, n_threads=0)


def test_bad_gradients_are_refused_before_anything_is_written():
    a = torch.nn.Parameter(torch.ones(3, 4, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = optim.AdamW([a, b], lr=0.1)

    def check(exc, match):
        before = (a.detach().clone(), b.detach().clone())
        with pytest.raises(exc, match=match):
            opt.step()
        assert torch.equal(a, before[0]) and torch.equal(b, before[1]) and len(opt.state) == 0

    a.grad = torch.ones(3, 4, dtype=torch.float64)
    b.grad = a.detach().view(-1)[:5]  # b's gradient is a's memory
    check(ValueError, r"gradient of param_groups\[0\]\['params'\]\[1\] shares memory with "
                      r"param_groups\[0\]\['params'\]\[0\]")
    b.grad = b.detach()
    check(ValueError, r"\['params'\]\[1\] shares memory with param_groups\[0\]\['params'\]\[1\]")
    b.grad = torch.ones(5, dtype=torch.float64)
    a.grad = torch.ones(4, 3, dtype=torch.float64).t()
    check(ValueError, r"gradient of param_groups\[0\]\['params'\]\[0\] is not contiguous")
    a.grad = torch.sparse_coo_tensor([[0], [1]], torch.ones(1, dtype=torch.float64), (3, 4),
                                     check_invariants=True)
    check(RuntimeError, "sparse")
    a.grad = torch.ones(3, 4, dtype=torch.float64)
    a.data = torch.ones(4, 3, dtype=torch.float64).t()  # the parameter itself turned non-contiguous
    a.grad = torch.ones(3, 4, dtype=torch.float64)
    check(ValueError, r"param_groups\[0\]\['params'\]\[0\] is not contiguous")


def test_parameters_sharing_memory_are_refused():
    base = torch.zeros(10)
    a = base[:6].detach().requires_grad_()
    b = base[4:].detach().requires_grad_()
    opt = optim.SGD([a, b], lr=0.1)
    a.grad, b.grad = torch.ones(6), torch.ones(6)
    with pytest.raises(ValueError, match="share memory"):
        opt.step()
    assert torch.equal(base, torch.zeros(10))


def test_weissi_error_names_the_parameter_and_writes_nothing():
    w = torch.nn.Parameter(torch.zeros(3, 3))
    v = torch.nn.Parameter(torch.ones(2, 2))
    opt = optim.AdamW([{"params": [v]}, {"params": [w]}], regularizer="weissi", reg_lambdas=(0.1, 0.1))
    w.grad, v.grad = torch.ones(3, 3), torch.ones(2, 2)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\] is all zeros"):
        opt.step()
    assert torch.equal(v, torch.ones(2, 2)) and len(opt.state) == 0
