"""Re-verification probes for 06-optimizer-class.

Every input is drawn from the verification's seed: model sizes and weights,
batches, tensor shapes and values, every hyperparameter (lr, momentum,
dampening, weight decay; the numbers that the constructor's error messages
show), step counts, which steps lose a gradient, when the lr changes,
scheduler settings, loaded state dicts. The scenarios stay fixed where the
exercise needs every option covered: each of the constructor's checks, each
classic mistake of ``step`` and every setting of ``course.sgd.option_grid``.

The learner's ``SGD`` is compared bit for bit with the solution's class
(itself bit-identical to ``torch.optim.SGD``): the signature, the defaults,
param_groups and the exceptions of the constructor (as ``"TypeName: message"``
strings), the parameters and momentum buffers after every step in scenarios
that expose the classic mistakes (late first gradients, gradients that
disappear, an lr changed between steps, tensor lr, every flag), the closure
protocol, the layout of ``state`` and ``state_dict()``, loading torch-format
and legacy state dicts, lr schedulers, ``add_param_group``, deepcopy and
pickle. ``decay_groups`` and ``get_momentum_buffer`` are probed on models and
optimizers built here, with identities (``is``) and side effects on
``optimizer.state``. Torch's SGD (class, functions, fused kernel) and the
course's optimizer and update rule are disabled while the learner's code
runs, so the probes use ``torch.optim.Optimizer`` itself where they need an
optimizer; so is the notebook's given ``fused_sgd`` helper while ``SGD``
steps: no probe asks for ``fused``. The probes use the default flags, for which
torch (and so the learner's class) takes the plain for-loop, and ``foreach=True``,
which on a CPU is the learner's loop too: there ``p.grad`` after each step is
compared as well (with Nesterov torch adds the buffer into it in place; the
notebook gives ``foreach_nesterov_quirk`` for that).
"""

from __future__ import annotations

import builtins
import copy
import functools
import inspect
import io
import itertools
import pickle
from typing import Any

import numpy as np
import torch
import torch._dynamo  # noqa: F401 - loaded now (the first optimizer loads it lazily)
from torch import nn

from course.exercises.values import probe_rng, sub_seed, uniform
from course.exercises.values import (COURSE_SGD, TORCH_SGD, as_float, generator, real, snap,
                                   type_name)
from course.sgd import option_grid
from course.grading.probes import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [*TORCH_SGD, *COURSE_SGD, "course.momentum.torch_momentum_step"]

_F32, _F64 = torch.float32, torch.float64
_rng, _sub_seed, _u = probe_rng, sub_seed, uniform


def _shape(rng: np.random.Generator, min_ndim: int = 1, max_ndim: int = 3) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(min_ndim,
                                                                           max_ndim + 1))))


def _error(make: Any) -> str:
    """What constructing raises, as "TypeName: message" ("no error" if nothing)."""
    try:
        make()
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def _value(v: Any) -> Any:
    """A hyperparameter as a plain, typed value."""
    if type(v) in (torch.Tensor, torch.nn.Parameter):
        return ["tensor", v.detach().clone()]
    if v is None or type(v) in (bool, int, float, str):
        return [type(v).__name__, v]
    return type_name(v)


def _groups(opt: Any, params: list[Any]) -> list[Any]:
    """param_groups as plain values: settings in order, params as indices into params."""
    ids = {id(p): i for i, p in enumerate(params)}
    out = []
    for g in opt.param_groups:
        out.append([[k, _value(v)] for k, v in g.items() if k != "params"]
                   + [["params", [ids.get(id(p), -1) for p in g["params"]]]])
    return out


def _module(seed: int, make: Any) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


# ------------------------------------------------------------ decay_groups

def _decay_groups(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["decay_groups"]
    rng = _rng(seed, 601)
    a, b, c, d = (int(n) for n in rng.integers(1, 7, size=4))
    models = [
        _module(_sub_seed(rng), lambda: nn.Sequential(nn.Embedding(a + 1, b), nn.BatchNorm1d(b),
                                                      nn.Linear(b, c), nn.Linear(c, d,
                                                                                 bias=False))),
        _module(_sub_seed(rng), lambda: nn.Linear(a, b, bias=False)),
        _module(_sub_seed(rng), lambda: nn.Sequential(nn.BatchNorm1d(c), nn.LayerNorm(c))),
        _module(_sub_seed(rng), lambda: nn.Sequential(nn.Conv2d(a, b, 2), nn.Flatten(),
                                                      nn.Linear(c, d), nn.GRU(d, a))),
    ]
    # the layers of the first model in a random order too
    order = [int(i) for i in rng.permutation(4)]
    models.append(nn.Sequential(*[models[0][i] for i in order]))
    wds = [float(10.0 ** rng.uniform(-4, -0.3)) for _ in models]
    out: list[Any] = []
    for model, wd in zip(models, wds):
        params = list(model.parameters())
        ids = {id(p): i for i, p in enumerate(params)}
        groups = f(model, wd)
        if type(groups) not in (list, tuple) or len(groups) != 2 or \
                any(type(g) is not dict or type(g.get("params")) not in (list, tuple)
                    for g in groups):
            out.append(type_name(groups))
            continue
        out.append([[sorted(g), [ids.get(id(p), -1) for p in g["params"]]] for g in groups])
        # the weight decay given (a float, as the tests require), and 0 for the rest
        out.append([real(groups[0].get("weight_decay"), (float,)),
                    as_float(groups[1].get("weight_decay"))])
        opt = torch.optim.Optimizer([dict(g, params=list(g["params"])) for g in groups],
                                    {"lr": _u(rng, 0.01, 1.0), "weight_decay": _u(rng, 0.5, 1.0)})
        out.append([as_float(g["weight_decay"]) for g in opt.param_groups])
    return out


# ------------------------------------------------------- get_momentum_buffer

def _get_momentum_buffer(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["get_momentum_buffer"]
    rng = _rng(seed, 602)
    gen = generator(_sub_seed(rng))

    def tensor(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=gen).requires_grad_()

    a, b, c = tensor(_shape(rng)), tensor(_shape(rng)), tensor(_shape(rng))
    opt = torch.optim.Optimizer([a, b, c], {"lr": _u(rng, 0.01, 1.0)})
    buf = torch.randn(a.shape, generator=gen)
    opt.state[a]["momentum_buffer"] = buf
    opt.state[c]["step"] = torch.tensor(float(rng.integers(1, 100)))   # state without a buffer
    out: list[Any] = [f(opt, a) is buf, snap(f(opt, a))]
    out += [f(opt, b) is None, b in opt.state, len(opt.state)]
    out += [f(opt, c) is None, sorted(opt.state[c]), len(opt.state)]
    out += [f(opt, torch.randn(_shape(rng), generator=gen)) is None, len(opt.state)]
    opt.add_param_group({"params": [tensor(_shape(rng))]})
    out += [f(opt, opt.param_groups[1]["params"][0]) is None, len(opt.state)]
    none_buf = tensor(_shape(rng))
    opt.add_param_group({"params": [none_buf]})
    opt.state[none_buf]["momentum_buffer"] = None
    out += [f(opt, none_buf) is None, len(opt.state), list(opt.state[a]) == ["momentum_buffer"]]
    return out


# ------------------------------------------------------------------ SGD init

def _tensors() -> list[torch.Tensor]:
    return [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]


def _invalid(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Settings torch.optim.SGD refuses (each kind of check, in its order);
    the numbers, which its messages show, drawn from the seed."""
    u = functools.partial(_u, rng)
    n = int(rng.integers(2, 5))
    return [dict(lr=-u(1e-9, 1.0)), dict(momentum=-int(rng.integers(1, 10))),
            dict(weight_decay=-u(0.01, 2.0), momentum=-u(0.01, 2.0)),
            dict(lr=torch.tensor(-u(0.01, 1.0))), dict(lr=torch.ones(1, n)),
            dict(nesterov=True, momentum=u(0.1, 0.99), dampening=-u(0.01, 0.5)),
            dict(nesterov=True, momentum=-u(0.01, 1.0)), dict(nesterov=True),
            dict(nesterov=True, momentum=u(0.1, 0.99), dampening=u(0.01, 0.5)),
            dict(lr=torch.tensor([[-u(0.01, 1.0)]])),
            dict(weight_decay=-int(rng.integers(1, 5)), fused=True, foreach=True),
            dict(fused=True, foreach=True, differentiable=True), dict(fused=True, foreach=True),
            dict(fused=True, differentiable=True), dict(lr=-u(0.1, 2.0), momentum=-u(0.1, 2.0))]


def _valid(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Unusual settings torch.optim.SGD accepts."""
    u = functools.partial(_u, rng)
    return [dict(momentum=u(1.0, 5.0)), dict(dampening=int(rng.integers(2, 10))),
            dict(lr=int(rng.integers(1, 5)), momentum=1, dampening=1),
            dict(lr=torch.tensor([[u(0.01, 1.0)]])), dict(weight_decay=0),
            dict(nesterov=True, momentum=u(0.01, 0.99)), dict(foreach=True),
            dict(fused=False, foreach=True), dict(differentiable=True),
            dict(lr=0.0, momentum=0.0, weight_decay=0.0), dict(dampening=-u(0.1, 2.0))]


def _sgd_init(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    rng = _rng(seed, 603)
    out: list[Any] = [isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)]
    sig = inspect.signature(cls).parameters.values()
    out.append([[p.name, str(p.kind), type(p.default).__name__,
                 repr(p.default) if p.default is not p.empty else "no default"] for p in sig])
    out += [_error(lambda kw=kw: cls(_tensors(), **kw)) for kw in _invalid(rng)]
    out += [_error(lambda kw=kw: cls(_tensors(), **kw)) for kw in _valid(rng)]
    bad_momentum = -int(rng.integers(1, 10))
    out += [_error(lambda: cls(torch.ones(2, requires_grad=True), momentum=bad_momentum)),
            _error(lambda: cls(torch.ones(2, requires_grad=True))),
            _error(lambda: cls([])), _error(lambda: cls([{"params": []}], lr=0.1))]
    positional = tuple(_u(rng, 0.0, 1.0) for _ in range(4))
    for args, kw in (((), {}), (positional, {"maximize": True}),
                     ((), {"lr": torch.tensor(_u(rng, 0.01, 1.0)), "nesterov": True,
                           "momentum": _u(rng, 0.1, 0.99)}),
                     (positional[:1], {"foreach": False, "differentiable": False,
                                       "fused": None})):
        ps = _tensors()
        opt = cls(ps, *args, **kw)
        out.append([type(opt.defaults) is dict,
                    [[k, _value(v)] for k, v in opt.defaults.items()], _groups(opt, ps),
                    len(opt.state), isinstance(opt, torch.optim.Optimizer)])
    ps = _tensors() + [torch.zeros(4, requires_grad=True)]
    opt = cls([{"params": ps[:1], "lr": _u(rng, 0.001, 0.1), "momentum": _u(rng, 0.1, 0.9)},
               {"params": ps[1:]}], lr=_u(rng, 0.001, 0.1), weight_decay=_u(rng, 0.001, 0.1))
    out.append(_groups(opt, ps))
    return out


# ------------------------------------------------------------------ SGD step

def _step_cases(rng: np.random.Generator) -> list[dict[str, Any]]:
    """One scenario per classic mistake, every flag; the values drawn from the
    seed (momentum and dampening 1 exactly, a negative dampening, a tensor lr,
    a 2-d tensor lr)."""
    u = functools.partial(_u, rng)
    return [dict(lr=u(0.01, 0.1), momentum=u(0.3, 0.9), dampening=u(0.1, 0.5),
                 weight_decay=u(0.001, 0.05)),
            dict(lr=u(0.01, 0.1), momentum=u(0.85, 0.99), nesterov=True, maximize=True,
                 weight_decay=u(0.05, 0.3)),
            dict(lr=u(0.1, 0.4), momentum=1.0, dampening=1.0), dict(lr=u(0.01, 0.2),
                                                                    maximize=True),
            dict(lr=torch.tensor(u(0.01, 0.1)), momentum=u(0.3, 0.7),
                 weight_decay=u(1e-4, 1e-2)),
            dict(lr=u(0.005, 0.05), momentum=u(0.8, 0.95), dampening=-u(0.1, 0.9),
                 maximize=True),
            dict(lr=u(0.01, 0.2)),
            dict(lr=torch.tensor([[u(0.01, 0.05)]]), momentum=u(0.8, 0.95), nesterov=True)]


def _buffers(opt: Any, params: list[Any]) -> list[Any]:
    return [[sorted(opt.state[p]), snap(opt.state[p].get("momentum_buffer"))]
            if p in opt.state else "no state" for p in params]


def _guard(ns: dict[str, Any]) -> None:
    """Refuse the notebook's given fused helper: on a CPU without fused=True
    torch takes its for-loop (or foreach, the same bits), which the learner
    must write."""
    def refuse(params: Any = (), *_a: Any, **_k: Any) -> Any:
        if len(params):                 # (a group without gradients may pass [])
            raise RuntimeError("the for-loop path must not call fused_sgd")
    if "fused_sgd" in ns:
        ns["fused_sgd"] = refuse


def _run_steps(cls: Any, kw: dict[str, Any], dtype: torch.dtype,
               rng: np.random.Generator) -> list[Any]:
    gen = generator(_sub_seed(rng))
    ps = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_()
          for s in [_shape(rng), _shape(rng), _shape(rng, 2), ()]]
    opt = cls([{"params": ps[:1], "lr": _u(rng, 0.005, 0.05)}, {"params": ps[1:]}],
              **copy.deepcopy(kw))
    skip = int(rng.integers(5))            # which steps lose a gradient
    change, factor = int(rng.integers(3, 9)), _u(rng, 0.2, 0.8)
    out: list[Any] = []
    for t in range(int(rng.integers(10, 13))):
        for i, p in enumerate(ps):
            p.grad = None if (t + i + skip) % 5 == 4 or (i == 3 and t < 3) else \
                torch.randn(p.shape, generator=gen, dtype=dtype) + p.detach()
        if t == change:                              # what an lr scheduler does
            opt.param_groups[1]["lr"] = opt.param_groups[1]["lr"] * factor
        result = opt.step()
        out.append([snap(p) for p in ps] + [result is None])
    out.append(_buffers(opt, ps))
    return out


def _sgd_step(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    _guard(ns)
    rng = _rng(seed, 604)
    out: list[Any] = []
    for kw, dtype in itertools.product(_step_cases(rng), (_F32, _F64)):
        out.append(_run_steps(cls, kw, dtype, rng))
    with torch.no_grad():                            # step works under no_grad too
        out.append(_run_steps(cls, dict(lr=_u(rng, 0.01, 0.2), momentum=_u(rng, 0.5, 0.95)),
                              _F32, rng))
    return out


# ----------------------------------------------------------------- SGD state

def _mlp(seed: int, dtype: torch.dtype = _F64) -> nn.Sequential:
    gen = generator(seed)
    net = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1)).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.4)
    return net


def _fit(net: nn.Module, opt: Any, n: int, sched: Any = None, seed: int = 9) -> list[Any]:
    gen = generator(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(n):
        x = torch.randn(8, 10, generator=gen, dtype=dtype)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().clone() for p in net.parameters()]


def _state_dict(opt: Any) -> list[Any]:
    sd = opt.state_dict()
    return [sorted(sd), [[k, sorted(v), snap(v.get("momentum_buffer"))]
                         for k, v in sd["state"].items()],
            [[[k, _value(v) if k != "params" else list(v)] for k, v in g.items()]
             for g in sd["param_groups"]]]


def _torch_format(net: nn.Module, rng: np.random.Generator,
                  legacy: bool = False) -> dict[str, Any]:
    """A state dict as torch.optim.SGD writes it (torch's SGD is disabled here)."""
    gen = generator(_sub_seed(rng))
    group = {"lr": _u(rng, 0.05, 0.3), "momentum": _u(rng, 0.3, 0.95), "dampening": 0.0,
             "weight_decay": _u(rng, 0.001, 0.05), "nesterov": True, "maximize": False,
             "foreach": None, "differentiable": False, "fused": None}
    if legacy:
        group = {k: group[k] for k in ("lr", "momentum", "dampening", "weight_decay")}
    skip = int(rng.integers(4))                     # a parameter without a buffer yet
    state = {i: {"momentum_buffer": torch.randn(p.shape, generator=gen, dtype=p.dtype)}
             for i, p in enumerate(net.parameters()) if i != skip}
    return {"state": state, "param_groups": [dict(group, params=[0, 1, 2, 3])]}


def _sgd_state(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    _guard(ns)
    rng = _rng(seed, 605)
    out: list[Any] = []
    kw = dict(lr=_u(rng, 0.01, 0.05), momentum=_u(rng, 0.5, 0.95), dampening=_u(rng, 0.05, 0.3),
              weight_decay=_u(rng, 0.005, 0.05))
    # closure: called once, with gradients enabled, its value returned
    net = _mlp(_sub_seed(rng))
    opt = cls(net.parameters(), **kw)
    calls: list[bool] = []
    x = torch.randn(8, 10, generator=generator(_sub_seed(rng)), dtype=_F64)

    def closure() -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = net(x).pow(2).mean()
        loss.backward()
        return loss

    with torch.no_grad():
        ret = opt.step(closure)
    out += [calls, type(ret) is torch.Tensor and ret.requires_grad, snap(ret),
            [snap(p) for p in net.parameters()], opt.step() is None]
    # state layout and state_dict(), two groups; a parameter that never gets a gradient
    net = _mlp(_sub_seed(rng))
    frozen = nn.Parameter(torch.ones(3, dtype=_F64))
    opt = cls([{"params": list(net[0].parameters()) + [frozen]},
               {"params": net[2].parameters(), "lr": _u(rng, 0.005, 0.05)}], **kw)
    out += [_fit(net, opt, int(rng.integers(3, 6)), seed=_sub_seed(rng)), len(opt.state),
            frozen in opt.state, _buffers(opt, list(net.parameters())), _state_dict(opt)]
    # state_dict survives torch.save / torch.load(weights_only=True)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    net2 = copy.deepcopy(net)
    opt2 = cls([{"params": list(net2[0].parameters()) + [nn.Parameter(torch.ones(3))]},
                {"params": net2[2].parameters()}], lr=1.0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    data, n = _sub_seed(rng), int(rng.integers(2, 5))
    out += [_fit(net, opt, n, seed=data), _fit(net2, opt2, n, seed=data), _state_dict(opt2)]
    # load torch's format (current and legacy), then train on with a scheduler
    for legacy in (False, True):
        net = _mlp(_sub_seed(rng))
        opt = cls(net.parameters(), lr=_u(rng, 0.1, 1.0))
        opt.load_state_dict(_torch_format(net, rng, legacy))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=_u(rng, 0.5, 0.9))
        out += [_groups(opt, list(net.parameters())),
                _fit(net, opt, int(rng.integers(2, 5)), sched, seed=_sub_seed(rng)),
                _buffers(opt, list(net.parameters())), _state_dict(opt)]
    # momentum 0: no state at all
    net = _mlp(_sub_seed(rng))
    opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.2), weight_decay=_u(rng, 0.01, 0.2))
    out += [_fit(net, opt, 2, seed=_sub_seed(rng)), len(opt.state), _state_dict(opt)]
    # lr schedulers read and write group["lr"]
    gamma, step_size = _u(rng, 0.2, 0.9), int(rng.integers(1, 4))
    for make in (lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=gamma),
                 lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma)):
        net = _mlp(_sub_seed(rng))
        opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.2), momentum=_u(rng, 0.5, 0.95))
        sched = make(opt)
        lrs = []
        data = generator(_sub_seed(rng))
        for _ in range(int(rng.integers(4, 7))):
            lrs.append(opt.param_groups[0]["lr"])
            _fit(net, opt, 1, sched, seed=int(torch.randint(2 ** 62, (), generator=data)))
        out += [lrs, [snap(p) for p in net.parameters()]]
    # add_param_group fills in the defaults; the new group trains with its own lr
    net = _mlp(_sub_seed(rng))
    opt = cls(net[0].parameters(), lr=_u(rng, 0.01, 0.1), momentum=_u(rng, 0.5, 0.95),
              nesterov=True)
    opt.add_param_group({"params": net[2].parameters(), "lr": _u(rng, 0.05, 0.3)})
    out += [_groups(opt, list(net.parameters())), _fit(net, opt, 3, seed=_sub_seed(rng))]
    return out


# ----------------------------------------------------------------- SGD class

def _run_on(net: nn.Module, opt: Any, n: int, seed: int) -> list[Any]:
    gen = generator(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(n):
        opt.zero_grad()
        net(torch.randn(4, 3, generator=gen, dtype=dtype)).sum().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def _net3(seed: int, dtype: torch.dtype = _F32) -> nn.Sequential:
    return _module(seed, lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(),
                                               nn.Linear(4, 2))).to(dtype)


def _sgd_class(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    _guard(ns)
    rng = _rng(seed, 606)
    out: list[Any] = []
    net = _net3(_sub_seed(rng))
    opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.1), momentum=_u(rng, 0.5, 0.95),
              nesterov=True, weight_decay=_u(rng, 0.001, 0.05))
    out.append(_run_on(net, opt, 3, _sub_seed(rng)))
    net2, opt2 = pickle.loads(pickle.dumps((net, opt)))
    net3, opt3 = copy.deepcopy((net, opt))
    data = _sub_seed(rng)
    out += [type(opt2) is cls, type(opt3) is cls, repr(opt).startswith("SGD ("),
            _run_on(net, opt, 4, data), _run_on(net2, opt2, 4, data),
            _run_on(net3, opt3, 4, data)]
    # every option torch accepts (the grid's settings), float32 and float64
    lr = _u(rng, 0.01, 0.1)
    for dtype in (_F32, _F64):
        for kw in option_grid(lr):
            net = _net3(_sub_seed(rng), dtype)
            opt = cls(net.parameters(), **kw)
            with torch.no_grad():
                net[2].bias.requires_grad_(False)        # a parameter without gradients
            trained = _run_on(net, opt, 3, _sub_seed(rng))
            net[2].bias.requires_grad_(True)
            out.append([trained, _run_on(net, opt, 2, _sub_seed(rng)),
                        _buffers(opt, list(net.parameters()))])
    # foreach=True: the same bits as the loop; p.grad too (torch's nesterov quirk)
    for kw in [dict(nesterov=True), dict(nesterov=True, weight_decay=_u(rng, 0.001, 0.05)),
               dict(dampening=_u(rng, 0.05, 0.5), maximize=True)]:
        net = _net3(_sub_seed(rng))
        opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.1), momentum=_u(rng, 0.5, 0.95),
                  foreach=True, **kw)
        rows = []
        for _ in range(3):
            rows.append(_run_on(net, opt, 1, _sub_seed(rng))
                        + [snap(p.grad) for p in net.parameters()])
        out.append(rows)
    return out


PROBES = {
    "test_decay_groups": Probe(_decay_groups),
    "test_get_momentum_buffer": Probe(_get_momentum_buffer),
    "test_sgd_init": Probe(_sgd_init),
    "test_sgd_step": Probe(_sgd_step),
    "test_sgd_state": Probe(_sgd_state),
    "test_sgd_class": Probe(_sgd_class),
}
