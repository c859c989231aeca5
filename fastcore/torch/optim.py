"""Fused clip + SGD / Adam / AdamW steps as ``torch.optim.Optimizer`` subclasses.

    from fastcore.torch.optim import AdamW
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, clip=1.0)  # clip: global L2 norm
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()                     # clip_grad_norm_(all params, 1.0) + AdamW, in two passes
        sched.step()
    opt.last_step                      # StepResult(norm, scale, skipped, regularization)

``step()`` hands NumPy views of the parameters, gradients and optimizer state (which share
memory with the tensors: nothing is copied) to fastcore's fused kernels
(:mod:`fastcore.optim`): one read pass over the gradients for the global norm, one read-write
pass that clips and updates.  Compared with ``clip_grad_norm_`` + ``torch.optim.AdamW`` the
gradients are never written and are read twice instead of three times.

The torch optimizer protocol holds: parameter groups, ``lr`` (and ``betas``, ``momentum``...)
read from ``param_groups`` at every step (so ``torch.optim.lr_scheduler`` works), parameters
whose ``.grad`` is None skipped, per-parameter state in ``self.state[p]`` under torch's names
(``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``), and
``state_dict()`` / ``load_state_dict()`` that round-trip and load into (and from)
``torch.optim.AdamW`` / ``Adam`` / ``SGD``.

Differences from torch, on purpose:

- ``clip`` is part of the step: the norm is over **all** parameters with a gradient, in every
  group (``clip_grad_norm_(all params, clip)``), accumulated in float64; the hard rule is
  ``min(1, clip / norm)`` (torch's ``clip_grad_norm_`` uses ``clip / (norm + 1e-6)``, a relative
  difference of 1e-6 / norm).
- A NaN or infinite gradient **skips the step**: no parameter, state tensor or step counter is
  written (``opt.last_step.skipped`` is True).  torch would write NaN into everything.
- Parameters must be dense, C-contiguous float32/float64 CPU tensors (they are updated in
  place); a group may mix float32 and float64 (one kernel call per dtype).

Requires PyTorch (the CPU build is enough).
"""
import math

import numpy as np
import torch
from torch.optim import optimizer as _torch_optimizer

from fastcore import _optim
from fastcore._threads import resolve_n_threads
from fastcore.optim import StepResult, _positive, _step_options, _weissi_coefficients
from fastcore.torch._tensors import inplace_cpu_float

__all__ = ["SGD", "Adam", "AdamW", "StepResult"]

_STRIDED = torch.strided
_increment_version = torch.autograd.graph.increment_version
# (a private torch function: where it is missing, every step takes torch's profiled wrapper)
_profiler_enabled = getattr(getattr(torch._C, "_autograd", None), "_profiler_enabled", lambda: True)
# torch.optim's global step hooks (register_optimizer_step_pre_hook / _post_hook)
_GLOBAL_PRE = getattr(_torch_optimizer, "_global_optimizer_pre_hooks", None)
_GLOBAL_POST = getattr(_torch_optimizer, "_global_optimizer_post_hooks", None)


def _label(gi, j):
    return f"param_groups[{gi}]['params'][{j}]"


class _Plan:
    """Everything about the current set of parameters with gradients that does not change
    from step to step: the parameters' NumPy views and their kernel table, buckets, and (once
    built) the state tables."""

    __slots__ = (
        "all_slots",
        "buckets",
        "by_dtype",
        "dtypes",
        "fresh",
        "key",
        "labels",
        "numels",
        "params",
        "ptrs",
        "reg",
        "state_check",
        "state_len",
        "state_obj",
        "state_ready",
        "table",
        "updates",
        "versioned",
        "views",
    )


class _Bucket:
    """Parameters of one group and one dtype (positions ``idx`` in the plan's list)."""

    __slots__ = ("double", "gi", "group", "idx")

    def __init__(self, gi, group, double, idx):
        self.gi, self.group, self.double, self.idx = gi, group, double, idx


class _Update:
    """One kernel call: parameters of one group, one dtype and one state age (p, s1, s2, s3: the
    kernel tables of the parameters and state tensors)."""

    __slots__ = ("fresh", "group", "idx", "p", "s1", "s2", "s3", "slot0", "slots", "take")


class _FusedOptimizer(torch.optim.Optimizer):
    """Shared machinery: options, plan (pointer tables), the fused step."""

    _uses_step = False  # Adam keeps a per-parameter step counter

    def __init__(self, params, defaults, clip, clip_mode, regularizer, reg_lambdas, n_threads):
        self._plan = None
        self.last_step = None
        self._reset_steps()
        self._set_options(clip, clip_mode, regularizer, reg_lambdas, n_threads)
        if self.regularizer == "weissi":
            defaults["weissi"] = None
        super().__init__(params, defaults)

    # ------------------------------------------------------------- options
    def _set_options(self, clip, clip_mode, regularizer, reg_lambdas, n_threads):
        self.clip, self.clip_mode, self.regularizer, self.reg_lambdas = _step_options(
            clip, clip_mode, regularizer, reg_lambdas)
        self.n_threads = n_threads

    @property
    def n_threads(self):
        """Threads of each step (None: fastcore.get_num_threads(), resolved at each step).
        Results do not depend on it."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value):
        resolve_n_threads(value)  # validates
        self._n_threads = value

    _OPTIONS = ("clip", "clip_mode", "regularizer", "reg_lambdas", "n_threads")

    def __getstate__(self):
        state = super().__getstate__()
        state["fastcore_options"] = {k: getattr(self, k) for k in self._OPTIONS}
        return state

    def __setstate__(self, state):
        state = dict(state)
        opts = state.pop("fastcore_options", None)
        super().__setstate__(state)
        if opts is not None:  # unpickling (load_state_dict passes no options)
            self._set_options(**opts)
        if "_plan" not in self.__dict__:
            self.last_step = None
            self._reset_steps()
        for group in self.param_groups:
            self._group_defaults(group)
        self._plan = None
        self._adopt_state()

    def _group_defaults(self, group):
        group.setdefault("maximize", False)

    def add_param_group(self, param_group):
        """Add a group (a dict with ``"params"`` and any hyper-parameters), as in torch.

        The parameters must be dense, C-contiguous float32/float64 CPU tensors.
        """
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        group = self.param_groups[gi]
        try:
            for j, p in enumerate(group["params"]):
                inplace_cpu_float(p, _label(gi, j))
            if group.get("weissi") is not None and self.regularizer != "weissi":
                raise ValueError(f"param_groups[{gi}] sets 'weissi' but the optimizer has no regularizer "
                                 "(pass regularizer='weissi')")
            self._group_defaults(group)
        except Exception:
            self.param_groups.pop()
            raise
        self._plan = None

    # ------------------------------------------------------------- step counters
    # Each parameter's state["step"] is a 0-d view into one float32 tensor, so that a step
    # advances every counter with one NumPy operation (a tensor op per counter costs ~3 us).
    def _reset_steps(self, values=()):
        cap = max(8, 2 * len(values))
        buf = torch.zeros(cap, dtype=torch.float32)
        if len(values):
            buf[:len(values)] = torch.tensor(values, dtype=torch.float64).to(torch.float32)
        self._steps, self._steps_np, self._n_steps = buf, buf.numpy(), len(values)

    def _own_step(self, t):
        return isinstance(t, torch.Tensor) and t._base is self._steps

    def _new_step(self, value):
        n = self._n_steps
        if n == self._steps.numel():  # grow: move every counter to a larger buffer, same offsets
            holders = [st for st in self.state.values() if isinstance(st, dict) and self._own_step(st.get("step"))]
            self._reset_steps(self._steps_np[:n].tolist())
            for st in holders:
                st["step"] = self._steps[st["step"].storage_offset()]
        self._steps_np[n] = value
        self._n_steps = n + 1
        return self._steps[n]

    # ------------------------------------------------------------- state
    _tensor_keys = ()

    def _adopt_state(self):
        """After load_state_dict / unpickling: copy the state tensors into contiguous tensors of
        the parameter's dtype (never aliasing the loaded dict, as the kernels write in place) and
        move the step counters into this optimizer's counter buffer."""
        holders, values = [], []
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if not st:
                    continue
                for key in self._tensor_keys:
                    v = st.get(key)
                    if v is None:
                        st.pop(key, None)
                    elif isinstance(v, torch.Tensor):
                        st[key] = v.detach().to(device="cpu", dtype=p.dtype).clone(
                            memory_format=torch.contiguous_format)
                if self._uses_step and "step" in st:
                    holders.append(st)
                    values.append(float(st["step"]))
        if self._uses_step:
            self._reset_steps(values)
            for k, st in enumerate(holders):
                st["step"] = self._steps[k]

    def _check_state_tensor(self, t, p, key, label):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state[{key!r}] of {label} must be a tensor, got {type(t).__name__}")
        if (t.layout is not _STRIDED or t.device.type != "cpu" or t.dtype is not p.dtype or t.shape != p.shape
                or not t.is_contiguous()):
            raise ValueError(f"state[{key!r}] of {label} must be a contiguous CPU tensor of shape "
                             f"{tuple(p.shape)} and dtype {p.dtype} (that of the parameter), got shape "
                             f"{tuple(t.shape)}, dtype {t.dtype}, device {t.device}")

    # ------------------------------------------------------------- plan
    def _build_plan(self, key, params):
        plan = _Plan()
        plan.key = key
        plan.params = params
        where = {}
        for gi, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                where[id(p)] = (gi, j)
        plan.labels = [_label(*where[id(p)]) for p in params]
        for p, label in zip(params, plan.labels):
            inplace_cpu_float(p, label)
        # the parameters' data pointers, compared at each step to notice a replaced p.data
        plan.ptrs = [p.data_ptr() for p in params]
        plan.dtypes = [p.dtype for p in params]
        plan.numels = [p.numel() for p in params]
        nbytes = np.array([p.numel() * p.element_size() for p in params], dtype=np.intp)
        addr = np.array(plan.ptrs, dtype=np.intp)
        order = np.argsort(addr, kind="stable")
        order = order[nbytes[order] > 0]
        lo, hi = addr[order], addr[order] + nbytes[order]
        clash = np.flatnonzero(lo[1:] < hi[:-1])
        if clash.size:
            a, b = sorted((int(order[clash[0]]), int(order[clash[0] + 1])))
            raise ValueError(f"{plan.labels[a]} and {plan.labels[b]} share memory: each would be updated twice")
        # the kernels' table of the parameters (their NumPy views' buffers, held by the plan); it
        # also checks the gradients' dtypes, shapes and memory at each step
        plan.views = [p.detach().numpy() for p in params]
        plan.table = _optim.Arrays(plan.views, True)
        # global norm: one kernel call per dtype (the gradients' indices, None for all)
        double = np.array([p.dtype is torch.float64 for p in params])
        plan.by_dtype = []
        for dbl in (False, True):
            idx = np.flatnonzero(double == dbl)
            if idx.size:
                plan.by_dtype.append(None if idx.size == len(params) else idx)
        # buckets: (group, dtype), in group order
        gidx = np.array([where[id(p)][0] for p in params])
        plan.buckets = []
        for gi, group in enumerate(self.param_groups):
            for dbl in (False, True):
                idx = np.flatnonzero((gidx == gi) & (double == dbl))
                if idx.size:
                    plan.buckets.append(_Bucket(gi, group, dbl, idx))
        # WEISSI: per dtype, the regularised params (their NumPy views, kernel table, labels)
        plan.reg = []
        if self.regularizer == "weissi":
            for dbl in (False, True):
                ks = []
                for b in plan.buckets:
                    if b.double != dbl:
                        continue
                    flag = b.group.get("weissi")
                    ks += [int(k) for k in b.idx if (params[k].dim() >= 2 if flag is None else bool(flag))]
                if ks:
                    ks = np.array(ks, dtype=np.intp)
                    views = [plan.views[k] for k in ks]
                    rl = [plan.labels[k][len("param_groups["):-1] for k in ks]  # name + [label] = the full label
                    plan.reg.append((ks, views, plan.table.take(ks), rl))
        plan.versioned = tuple(params)
        plan.state_ready = False
        return plan

    def _grads(self):
        """The parameters with a gradient, their plan and the gradients' kernel table (validated)."""
        params, grads = [], []
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is not None:
                    params.append(p)
                    grads.append(g)
        if not params:
            return None, None, None
        key = tuple(map(id, params))
        plan = self._plan
        if plan is None or plan.key != key:
            plan = self._plan = self._build_plan(key, params)
        gaddr = []
        try:  # the per-step fast path (a tensor has no buffer protocol: its data_ptr() is the cheap
            # way to its memory); anything unusual is diagnosed below
            for p, g, ptr, dt, n in zip(params, grads, plan.ptrs, plan.dtypes, plan.numels):
                if g.dtype is not dt or not g.is_contiguous() or g.numel() != n or p.data_ptr() != ptr:
                    break
                gaddr.append(g.data_ptr())
        except (RuntimeError, NotImplementedError, TypeError):  # is_contiguous of a sparse tensor
            pass
        table = plan.table.like_addresses(gaddr, grads) if len(gaddr) == len(params) else None
        if table is None:
            table = self._checked_grads(plan, params, grads)
            if table is None:  # p.data was replaced: build the plan again
                self._plan = None
                return self._grads()
        hit = plan.table.first_overlap(table)
        if hit is not None:
            k, j = hit
            raise ValueError(f"the gradient of {plan.labels[k]} shares memory with {plan.labels[j]}: the step "
                             "would change it while reading it; give the gradient memory of its own "
                             "(p.grad = g.clone())")
        return plan, grads, table

    def _checked_grads(self, plan, params, grads):
        """The gradients' kernel table after the checks that say what is wrong (in parameter
        order), or None when a parameter's data was replaced since the plan was built."""
        views = []
        for k, (p, g) in enumerate(zip(params, grads)):
            if p.data_ptr() != plan.ptrs[k]:
                return None
            label = plan.labels[k]
            self._check_grad(label, p, g)
            if g.numel() != plan.views[k].size:
                raise ValueError(f"the gradient of {label} changed since the optimizer last saw the parameter")
            views.append(g.detach().numpy())
        return _optim.Arrays(views)

    @staticmethod
    def _check_grad(label, p, g):
        if g.layout is not _STRIDED:
            raise RuntimeError(f"the gradient of {label} is a {g.layout} tensor: fastcore's fused steps need "
                               "dense gradients (use torch.optim.SparseAdam for sparse ones)")
        if g.device.type != "cpu":
            raise ValueError(f"the gradient of {label} is on {g.device}: fastcore's fused steps need CPU tensors")
        if g.dtype is not p.dtype:
            raise TypeError(f"the gradient of {label} has dtype {g.dtype} but the parameter is {p.dtype}")
        if g.shape != p.shape:
            raise ValueError(f"the gradient of {label} has shape {tuple(g.shape)} but the parameter has shape "
                             f"{tuple(p.shape)}")
        if not g.is_contiguous():
            raise ValueError(f"the gradient of {label} is not contiguous (strides {g.stride()}): fastcore reads "
                             "it through a NumPy view; assign a contiguous gradient (p.grad = g.contiguous())")

    def _state_intact(self, plan):
        state = self.state
        if state is not plan.state_obj or len(state) != plan.state_len:
            return False
        for st, pairs in plan.state_check:
            for key, t in pairs:
                if st.get(key) is not t:
                    return False
        return True

    def _build_state(self, plan):
        """Create missing state (lazily, as torch does), check the rest, and build the kernels'
        pointer tables: one _Update per (group, dtype, state age)."""
        plan.updates, plan.state_check, plan.fresh = [], [], False
        slots = []
        for b in plan.buckets:
            ages = {}
            for k in b.idx:
                age = self._init_param_state(plan.params[k], b.group, plan.labels[k])
                ages.setdefault(age, []).append(int(k))
            for age, ks in ages.items():
                u = self._make_update(plan, b, np.array(ks, dtype=np.intp), age)
                plan.updates.append(u)
                if u.slots is not None:
                    slots.append(u.slots)
        for p in plan.params:
            st = self.state.get(p)
            if st:
                plan.state_check.append((st, tuple((key, st[key]) for key in ("step",) + self._tensor_keys
                                                   if key in st)))
        plan.all_slots = np.concatenate(slots) if slots else None
        if slots and np.array_equal(plan.all_slots, np.arange(plan.all_slots[0], plan.all_slots[0] + len(plan.all_slots))):
            plan.all_slots = slice(int(plan.all_slots[0]), int(plan.all_slots[0]) + len(plan.all_slots))
        plan.state_obj = self.state
        plan.state_len = len(self.state)
        plan.state_ready = True

    def _tables(self, plan, ks, names):
        """The kernel tables of the state tensors ``names`` of the parameters ``ks`` (checked
        contiguous tensors of the parameters' dtype and shape), through their NumPy views."""
        out = []
        for name in names:
            views = [self.state[plan.params[k]][name].detach().numpy() for k in ks]
            out.append(_optim.Arrays(views, True))
        return out

    def _base_update(self, plan, b, ks):
        u = _Update()
        u.group = b.group
        u.idx = ks
        u.take = None if (len(ks) == len(plan.params)) else ks
        u.p = plan.table if u.take is None else plan.table.take(ks)
        u.s1 = u.s2 = u.s3 = None
        u.slot0, u.slots, u.fresh = 0, None, False
        return u

    # ------------------------------------------------------------- the step
    def step(self, closure=None):
        """Clip (if asked), regularise (if asked) and update every parameter with a gradient.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; called under ``torch.enable_grad()``.

        Returns
        -------
        loss
            What ``closure`` returned (None without a closure), as torch's optimizers do.
            The step's :class:`~fastcore.optim.StepResult` ``(norm, scale, skipped,
            regularization)`` is in :attr:`last_step`: a NaN or infinite gradient gives
            ``skipped=True`` and leaves parameters, state and step counters untouched.
        """
        # torch wraps every optimizer's step in a profiler range and its hook calls (~20 us a
        # call); take that path only when a hook is registered or the profiler runs
        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _GLOBAL_PRE or _GLOBAL_POST
                or _profiler_enabled()):
            return self._hooked_step(closure)
        return self._step(closure)

    step.hooked = True  # tells torch.optim.Optimizer not to wrap it again

    def _step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        plan, _, gtable = self._grads()
        if plan is None:
            self.last_step = StepResult(0.0, 1.0, False, 0.0)
            return loss
        n_threads = resolve_n_threads(self._n_threads)
        if len(plan.by_dtype) == 1:
            norm = _optim.global_norm(gtable, 2.0, n_threads)
        else:
            norm = math.hypot(*(_optim.global_norm(gtable.take(take), 2.0, n_threads) for take in plan.by_dtype))
        if not math.isfinite(norm):
            self.last_step = StepResult(norm, 0.0, True, 0.0)
            return loss
        clip = self.clip
        if clip is None or norm == 0.0:
            scale = 1.0
        elif self.clip_mode == "hard":
            scale = 1.0 if norm <= clip else clip / norm
        else:
            scale = clip / (norm + clip)
        c_p = c_s = None
        reg_value = 0.0
        if plan.reg:
            lam1, lam2 = self.reg_lambdas
            c_p = np.zeros(len(plan.params))
            c_s = np.zeros(len(plan.params))
            for ks, views, table, rl in plan.reg:  # every check before anything is written
                a, b, value = _weissi_coefficients(views, lam1, lam2, n_threads, "param_groups", rl, table)
                c_p[ks] = a
                c_s[ks] = b
                reg_value += value
        if not (plan.state_ready and self._state_intact(plan) and all(self._fits(u) for u in plan.updates)):
            self._build_state(plan)
        for u in plan.updates:
            self._run(u, gtable, scale, c_p, c_s, n_threads)
        if plan.all_slots is not None:
            self._steps_np[plan.all_slots] += 1  # a slice when the counters are consecutive
        _increment_version(plan.versioned)  # autograd sees the in-place update
        if plan.fresh:
            plan.state_ready = False  # new momentum buffers join the others at the next step
        self.last_step = StepResult(norm, scale, False, reg_value)
        return loss

    @staticmethod
    def _coefficients(u, c_p, c_s, coupled_wd):
        if c_p is not None:
            if u.take is not None:
                c_p, c_s = c_p[u.take], c_s[u.take]
            if coupled_wd:
                c_p = c_p + coupled_wd
        elif coupled_wd:
            c_p = np.full(len(u.idx), coupled_wd)
        return c_p, c_s


_FusedOptimizer._hooked_step = torch.optim.Optimizer.profile_hook_step(_FusedOptimizer._step)


class SGD(_FusedOptimizer):
    """SGD with momentum as a ``torch.optim.Optimizer``, fused with global-norm clipping.

    torch.optim.SGD's rule, per parameter with a gradient ``g`` and ``d = scale * g`` (``scale``
    from the clip, ``-scale`` with ``maximize``; 1 without a clip):
    ``d += weight_decay * p`` (+ the WEISSI gradient); with momentum ``buf = d`` at the first step,
    then ``buf = momentum * buf + (1 - dampening) * d``; ``u = d + momentum * buf`` (nesterov) or
    ``buf``; ``p -= lr * u``.

    Parameters
    ----------
    params : iterable of torch.Tensor or of dicts (parameter groups)
        Dense, C-contiguous float32/float64 CPU tensors (a group may mix the two dtypes); updated
        in place.  Parameters whose ``.grad`` is None at a step are skipped, as in torch.
    lr, momentum, dampening, weight_decay : float, defaults 1e-3, 0, 0, 0
        As torch.optim.SGD (same positional order); read from ``param_groups`` at every step.
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Ascend instead of descend.
    clip : float > 0 or None, default None
        Max global L2 norm of all the gradients (every group), as
        ``torch.nn.utils.clip_grad_norm_(all params, clip)``; None: no clipping.
    clip_mode : {"hard", "soft"}
        ``min(1, clip / norm)`` or ``clip / (norm + clip)`` (see :func:`fastcore.optim.clip_grad_norm`).
    regularizer : None or "weissi"
        Adds the gradient of :func:`fastcore.optim.weissi` (after the clip) for the parameters with
        ``ndim >= 2``; a group's ``"weissi": True / False`` includes / excludes all its parameters.
    reg_lambdas : (float, float)
        ``(lam1, lam2)`` of WEISSI.
    n_threads : int or None
        Threads of the kernels; None follows fastcore.get_num_threads().  Results do not depend on it.

    Attributes
    ----------
    last_step : StepResult or None
        ``(norm, scale, skipped, regularization)`` of the last :meth:`step`.

    Notes
    -----
    State: ``self.state[p]["momentum_buffer"]`` (when momentum != 0), as torch; state dicts load
    into and from ``torch.optim.SGD``.  A NaN or infinite gradient skips the whole step.

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch.optim import SGD
    >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    >>> opt = SGD([w], lr=0.1, momentum=0.9, clip=1.0)
    >>> w.grad = torch.tensor([30.0, 40.0])       # norm 50: clipped to norm 1
    >>> opt.step()
    >>> w
    Parameter containing:
    tensor([2.9400, 3.9200], requires_grad=True)
    >>> opt.last_step.norm, opt.last_step.scale
    (50.0, 0.02)
    """

    _tensor_keys = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, clip=None, clip_mode="hard", regularizer=None, reg_lambdas=(0.0, 0.0),
                 n_threads=None):
        lr = _positive(lr, "lr", allow_zero=True) if not isinstance(lr, torch.Tensor) else lr
        _positive(momentum, "momentum", allow_zero=True)
        _positive(weight_decay, "weight_decay", allow_zero=True)
        if not math.isfinite(float(dampening)):
            raise ValueError(f"dampening must be finite, got {dampening!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening == 0")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": bool(nesterov), "maximize": bool(maximize)}
        super().__init__(params, defaults, clip, clip_mode, regularizer, reg_lambdas, n_threads)

    def _group_defaults(self, group):
        super()._group_defaults(group)
        group.setdefault("nesterov", False)

    def _init_param_state(self, p, group, label):
        if group["momentum"] == 0:
            return "none"  # no state, as torch
        st = self.state[p]
        buf = st.get("momentum_buffer")
        if buf is None:
            st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            return "fresh"  # the kernel sets buf = d (torch: buf = clone(d))
        self._check_state_tensor(buf, p, "momentum_buffer", label)
        return "buf"

    def _make_update(self, plan, b, ks, age):
        u = self._base_update(plan, b, ks)
        if age != "none":
            (u.s1,) = self._tables(plan, ks, ("momentum_buffer",))
            u.fresh = age == "fresh"
            plan.fresh |= u.fresh
        return u

    @staticmethod
    def _fits(u):
        """Whether the tables still suit the group (a scheduler may change momentum)."""
        return (u.group["momentum"] != 0) == (u.s1 is not None)

    def _run(self, u, gtable, scale, c_p, c_s, n_threads):
        group = u.group
        momentum = float(group["momentum"])
        c_p, c_s = self._coefficients(u, c_p, c_s, float(group["weight_decay"]))
        if u.s1 is None or u.fresh:
            keep, new = 0.0, 1.0
        else:
            keep, new = momentum, 1.0 - float(group["dampening"])
        g = gtable if u.take is None else gtable.take(u.take)
        _optim.sgd_step(u.p, g, u.s1, c_p, c_s, -scale if group["maximize"] else scale,
                        float(group["lr"]), 1.0, momentum, keep, new, bool(group["nesterov"]) and u.s1 is not None,
                        n_threads)


class Adam(_FusedOptimizer):
    """Adam as a ``torch.optim.Optimizer``, fused with global-norm clipping.

    torch.optim.Adam's rule, per parameter with ``d = scale * g`` (``-scale`` with ``maximize``)
    plus ``weight_decay * p`` (coupled, default) or ``p *= 1 - lr * weight_decay`` first
    (``decoupled_weight_decay=True``: AdamW), plus the WEISSI gradient:
    ``m = lerp(m, d, 1 - beta1)``, ``v = beta2 v + (1 - beta2) d^2``, ``vmax = max(vmax, v)``
    (amsgrad), ``p -= lr / (1 - beta1^t) * m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)``.

    Parameters
    ----------
    params : iterable of torch.Tensor or of dicts (parameter groups)
        As :class:`SGD`.
    lr, betas, eps, weight_decay, amsgrad : as torch.optim.Adam
        Defaults 1e-3, (0.9, 0.999), 1e-8, 0, False; read from ``param_groups`` at every step.
    maximize, decoupled_weight_decay : bool, default False
    clip, clip_mode, regularizer, reg_lambdas, n_threads
        As :class:`SGD`.

    Attributes
    ----------
    last_step : StepResult or None
        ``(norm, scale, skipped, regularization)`` of the last :meth:`step`.

    Notes
    -----
    State, as torch: ``self.state[p]`` holds ``step`` (a 0-d float32 tensor: the number of
    updates this parameter received; skipped steps do not count), ``exp_avg``, ``exp_avg_sq``
    and, with amsgrad, ``max_exp_avg_sq``.  State dicts load into and from ``torch.optim.Adam``
    and ``torch.optim.AdamW``.  The step tensors are views into one buffer of this optimizer
    (one NumPy operation advances them all); load_state_dict copies the loaded tensors.

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch.optim import Adam
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = Adam([w], lr=0.1)
    >>> w.grad = torch.tensor([0.5, -2.0])
    >>> opt.step()
    >>> w                                      # the first Adam step moves by lr * sign(g)
    Parameter containing:
    tensor([ 0.9000, -0.9000], requires_grad=True)
    >>> opt.state[w]["step"]
    tensor(1.)
    """

    _uses_step = True
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, clip=None, clip_mode="hard", regularizer=None,
                 reg_lambdas=(0.0, 0.0), n_threads=None):
        lr = _positive(lr, "lr", allow_zero=True) if not isinstance(lr, torch.Tensor) else lr
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of floats, got {betas!r}") from None
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        eps = _positive(eps, "eps", allow_zero=True)
        weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)
        defaults = {"lr": lr, "betas": (b1, b2), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": bool(amsgrad), "maximize": bool(maximize),
                    "decoupled_weight_decay": bool(decoupled_weight_decay) or self._decoupled}
        super().__init__(params, defaults, clip, clip_mode, regularizer, reg_lambdas, n_threads)

    def _group_defaults(self, group):
        super()._group_defaults(group)
        group.setdefault("amsgrad", False)
        group.setdefault("decoupled_weight_decay", False)
        if self._decoupled:
            group["decoupled_weight_decay"] = True  # as torch.optim.AdamW.__setstate__

    _tensor_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _init_param_state(self, p, group, label):
        st = self.state[p]
        step = st.get("step")
        if step is None:
            st.clear()
            st["step"] = self._new_step(0.0)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        elif not self._own_step(step):  # a step counter set by hand: adopt its value
            st["step"] = self._new_step(float(step))
        if group["amsgrad"] and st.get("max_exp_avg_sq") is None:
            # torch creates it with the rest of the state; a group switched to amsgrad later
            # starts from zeros (max(0, v) = v)
            st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        for key in ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ()):
            self._check_state_tensor(st.get(key), p, key, label)
        return float(st["step"])

    def _make_update(self, plan, b, ks, age):
        u = self._base_update(plan, b, ks)
        names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if b.group["amsgrad"] else ())
        tabs = self._tables(plan, ks, names)
        u.s1, u.s2 = tabs[0], tabs[1]
        u.s3 = tabs[2] if len(tabs) == 3 else None
        u.slots = np.array([self.state[plan.params[k]]["step"].storage_offset() for k in ks], dtype=np.intp)
        u.slot0 = int(u.slots[0])
        return u

    @staticmethod
    def _fits(u):
        """Whether the tables still suit the group (amsgrad may be switched on)."""
        return not u.group["amsgrad"] or u.s3 is not None

    def _run(self, u, gtable, scale, c_p, c_s, n_threads):
        group = u.group
        lr = float(group["lr"])
        wd = float(group["weight_decay"])
        b1, b2 = (float(b) for b in group["betas"])
        decoupled = group["decoupled_weight_decay"]
        c_p, c_s = self._coefficients(u, c_p, c_s, 0.0 if decoupled else wd)
        decay = 1.0 - lr * wd if (decoupled and wd != 0.0) else 1.0
        t = float(self._steps_np[u.slot0]) + 1.0
        step_size = lr / (1.0 - b1**t)
        bc2_sqrt = (1.0 - b2**t) ** 0.5
        vmax = u.s3 if group["amsgrad"] else None
        g = gtable if u.take is None else gtable.take(u.take)
        _optim.adam_step(u.p, g, u.s1, u.s2, vmax, c_p, c_s,
                         -scale if group["maximize"] else scale, decay, b1, b2, step_size, bc2_sqrt,
                         float(group["eps"]), n_threads)


class AdamW(Adam):
    """AdamW (decoupled weight decay) as a ``torch.optim.Optimizer``, fused with global-norm clipping.

    :class:`Adam` with ``decoupled_weight_decay=True``: ``p *= 1 - lr * weight_decay``, then the
    Adam update (torch.optim.AdamW's rule).  Default ``weight_decay=0.01``.

    Parameters
    ----------
    params : iterable of torch.Tensor or of dicts (parameter groups)
        As :class:`SGD`.
    lr, betas, eps, weight_decay, amsgrad : as torch.optim.AdamW
        Defaults 1e-3, (0.9, 0.999), 1e-8, 1e-2, False; read from ``param_groups`` at every step.
    maximize : bool, default False
    clip, clip_mode, regularizer, reg_lambdas, n_threads
        As :class:`SGD`.

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch.optim import AdamW
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 1, dtype=torch.float64)
    >>> opt = AdamW(model.parameters(), lr=0.05, clip=1.0)
    >>> x = torch.randn(64, 4, dtype=torch.float64)
    >>> y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = ((model(x).squeeze(1) - y) ** 2).mean()
    ...     loss.backward()
    ...     return loss
    >>> first = opt.step(closure).item()
    >>> for _ in range(300):
    ...     last = opt.step(closure).item()
    >>> last < 0.01 * first
    True
    >>> sorted(opt.state_dict()["state"][0])
    ['exp_avg', 'exp_avg_sq', 'step']
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, clip=None, clip_mode="hard", regularizer=None, reg_lambdas=(0.0, 0.0),
                 n_threads=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, clip=clip, clip_mode=clip_mode, regularizer=regularizer,
                         reg_lambdas=reg_lambdas, n_threads=n_threads)
