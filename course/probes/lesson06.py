"""Re-verification probes for 06-optimizer-class.

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
import inspect
import io
import itertools
import pickle
from typing import Any

import torch
import torch._dynamo  # noqa: F401 - loaded now (the first optimizer loads it lazily)
from torch import nn

from course.probes._common import (COURSE_SGD, TORCH_SGD, as_float, generator, real, snap,
                                   type_name)
from course.sgd import option_grid
from course.verify import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [*TORCH_SGD, *COURSE_SGD, "course.momentum.torch_momentum_step"]

_F32, _F64 = torch.float32, torch.float64


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
    models = [
        _module(11, lambda: nn.Sequential(nn.Embedding(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3),
                                          nn.Linear(3, 2, bias=False))),
        _module(12, lambda: nn.Linear(3, 1, bias=False)),
        _module(13, lambda: nn.Sequential(nn.BatchNorm1d(3), nn.LayerNorm(3))),
        _module(14, lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 2),
                                          nn.GRU(2, 2))),
    ]
    out: list[Any] = []
    for model, wd in zip(models, (0.25, 0.1, 5e-4, 0.3)):
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
                                    {"lr": 0.5, "weight_decay": 0.75})
        out.append([as_float(g["weight_decay"]) for g in opt.param_groups])
    return out


# ------------------------------------------------------- get_momentum_buffer

def _get_momentum_buffer(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["get_momentum_buffer"]
    a, b, c = (torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True),
               torch.ones(4, requires_grad=True))
    opt = torch.optim.Optimizer([a, b, c], {"lr": 0.1})
    buf = torch.full((3,), 2.0)
    opt.state[a]["momentum_buffer"] = buf
    opt.state[c]["step"] = torch.tensor(1.0)         # state without a buffer
    out: list[Any] = [f(opt, a) is buf, snap(f(opt, a))]
    out += [f(opt, b) is None, b in opt.state, len(opt.state)]
    out += [f(opt, c) is None, sorted(opt.state[c]), len(opt.state)]
    out += [f(opt, torch.zeros(1)) is None, len(opt.state)]
    opt.add_param_group({"params": [torch.zeros(4, requires_grad=True)]})
    out += [f(opt, opt.param_groups[1]["params"][0]) is None, len(opt.state)]
    none_buf = torch.ones(2, requires_grad=True)
    opt.add_param_group({"params": [none_buf]})
    opt.state[none_buf]["momentum_buffer"] = None
    out += [f(opt, none_buf) is None, len(opt.state), list(opt.state[a]) == ["momentum_buffer"]]
    return out


# ------------------------------------------------------------------ SGD init

def _tensors() -> list[torch.Tensor]:
    return [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]


_INVALID = [dict(lr=-1e-9), dict(momentum=-2), dict(weight_decay=-0.5, momentum=-1),
            dict(lr=torch.tensor(-0.25)), dict(lr=torch.ones(1, 2)),
            dict(nesterov=True, momentum=0.5, dampening=-0.1), dict(nesterov=True, momentum=-0.5),
            dict(nesterov=True), dict(nesterov=True, momentum=0.9, dampening=0.1),
            dict(lr=torch.tensor([[-0.5]])), dict(weight_decay=-1, fused=True, foreach=True),
            dict(fused=True, foreach=True, differentiable=True), dict(fused=True, foreach=True),
            dict(fused=True, differentiable=True), dict(lr=-1.0, momentum=-1.0)]
_VALID = [dict(momentum=3.0), dict(dampening=5), dict(lr=2, momentum=1, dampening=1),
          dict(lr=torch.tensor([[0.5]])), dict(weight_decay=0), dict(nesterov=True, momentum=0.1),
          dict(foreach=True), dict(fused=False, foreach=True), dict(differentiable=True),
          dict(lr=0.0, momentum=0.0, weight_decay=0.0), dict(dampening=-1.0)]


def _sgd_init(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    out: list[Any] = [isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)]
    sig = inspect.signature(cls).parameters.values()
    out.append([[p.name, str(p.kind), type(p.default).__name__,
                 repr(p.default) if p.default is not p.empty else "no default"] for p in sig])
    out += [_error(lambda kw=kw: cls(_tensors(), **kw)) for kw in _INVALID]
    out += [_error(lambda kw=kw: cls(_tensors(), **kw)) for kw in _VALID]
    out += [_error(lambda: cls(torch.ones(2, requires_grad=True), momentum=-1)),
            _error(lambda: cls(torch.ones(2, requires_grad=True))),
            _error(lambda: cls([])), _error(lambda: cls([{"params": []}], lr=0.1))]
    for args, kw in (((), {}), ((0.25, 0.5, 0.1, 0.01), {"maximize": True}),
                     ((), {"lr": torch.tensor(0.1), "nesterov": True, "momentum": 0.9}),
                     ((0.5,), {"foreach": False, "differentiable": False, "fused": None})):
        ps = _tensors()
        opt = cls(ps, *args, **kw)
        out.append([type(opt.defaults) is dict,
                    [[k, _value(v)] for k, v in opt.defaults.items()], _groups(opt, ps),
                    len(opt.state), isinstance(opt, torch.optim.Optimizer)])
    ps = _tensors() + [torch.zeros(4, requires_grad=True)]
    opt = cls([{"params": ps[:1], "lr": 0.02, "momentum": 0.5}, {"params": ps[1:]}],
              lr=0.1, weight_decay=0.01)
    out.append(_groups(opt, ps))
    return out


# ------------------------------------------------------------------ SGD step

_STEP_CASES = [dict(lr=0.07, momentum=0.6, dampening=0.25, weight_decay=0.03),
               dict(lr=0.05, momentum=0.95, nesterov=True, maximize=True, weight_decay=0.2),
               dict(lr=0.3, momentum=1.0, dampening=1.0), dict(lr=0.1, maximize=True),
               dict(lr=torch.tensor(0.04), momentum=0.5, weight_decay=1e-3),
               dict(lr=0.01, momentum=0.9, dampening=-0.5, maximize=True),
               dict(lr=0.1), dict(lr=torch.tensor([[0.03]]), momentum=0.9, nesterov=True)]


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


def _run_steps(cls: Any, kw: dict[str, Any], dtype: torch.dtype, seed: int) -> list[Any]:
    gen = generator(seed)
    ps = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_()
          for s in [(7,), (3, 4), (2, 1, 3), ()]]
    opt = cls([{"params": ps[:1], "lr": 0.02}, {"params": ps[1:]}], **copy.deepcopy(kw))
    out: list[Any] = []
    for t in range(12):
        for i, p in enumerate(ps):
            p.grad = None if (t + i) % 5 == 4 or (i == 3 and t < 3) else \
                torch.randn(p.shape, generator=gen, dtype=dtype) + p.detach()
        if t == 6:                                   # what an lr scheduler does
            opt.param_groups[1]["lr"] = opt.param_groups[1]["lr"] * 0.5
        result = opt.step()
        out.append([snap(p) for p in ps] + [result is None])
    out.append(_buffers(opt, ps))
    return out


def _sgd_step(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    _guard(ns)
    out: list[Any] = []
    for (k, kw), dtype in itertools.product(enumerate(_STEP_CASES), (_F32, _F64)):
        out.append(_run_steps(cls, kw, dtype, 100 + k))
    with torch.no_grad():                            # step works under no_grad too
        out.append(_run_steps(cls, dict(lr=0.1, momentum=0.9), _F32, 99))
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


def _torch_format(net: nn.Module, legacy: bool = False) -> dict[str, Any]:
    """A state dict as torch.optim.SGD writes it (torch's SGD is disabled here)."""
    gen = generator(31)
    group = {"lr": 0.2, "momentum": 0.7, "dampening": 0.0, "weight_decay": 0.01,
             "nesterov": True, "maximize": False, "foreach": None, "differentiable": False,
             "fused": None}
    if legacy:
        group = {k: group[k] for k in ("lr", "momentum", "dampening", "weight_decay")}
    state = {i: {"momentum_buffer": torch.randn(p.shape, generator=gen, dtype=p.dtype)}
             for i, p in enumerate(net.parameters()) if i != 1}
    return {"state": state, "param_groups": [dict(group, params=[0, 1, 2, 3])]}


def _sgd_state(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    _guard(ns)
    out: list[Any] = []
    kw = dict(lr=0.03, momentum=0.8, dampening=0.1, weight_decay=0.02)
    # closure: called once, with gradients enabled, its value returned
    net = _mlp(3)
    opt = cls(net.parameters(), **kw)
    calls: list[bool] = []
    x = torch.randn(8, 10, generator=generator(5), dtype=_F64)

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
    net = _mlp(4)
    frozen = nn.Parameter(torch.ones(3, dtype=_F64))
    opt = cls([{"params": list(net[0].parameters()) + [frozen]},
               {"params": net[2].parameters(), "lr": 0.01}], **kw)
    out += [_fit(net, opt, 4), len(opt.state), frozen in opt.state,
            _buffers(opt, list(net.parameters())), _state_dict(opt)]
    # state_dict survives torch.save / torch.load(weights_only=True)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    net2 = copy.deepcopy(net)
    opt2 = cls([{"params": list(net2[0].parameters()) + [nn.Parameter(torch.ones(3))]},
                {"params": net2[2].parameters()}], lr=1.0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    out += [_fit(net, opt, 3, seed=12), _fit(net2, opt2, 3, seed=12), _state_dict(opt2)]
    # load torch's format (current and legacy), then train on
    for legacy in (False, True):
        net = _mlp(6)
        opt = cls(net.parameters(), lr=0.5)
        opt.load_state_dict(_torch_format(net, legacy))
        out += [_groups(opt, list(net.parameters())), _fit(net, opt, 3),
                _buffers(opt, list(net.parameters()))]
    # momentum 0: no state at all
    net = _mlp(7)
    opt = cls(net.parameters(), lr=0.1, weight_decay=0.1)
    out += [_fit(net, opt, 2), len(opt.state), _state_dict(opt)]
    # lr schedulers read and write group["lr"]
    for make in (lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7),
                 lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.3)):
        net = _mlp(8)
        opt = cls(net.parameters(), lr=0.1, momentum=0.9)
        sched = make(opt)
        lrs = []
        for _ in range(5):
            lrs.append(opt.param_groups[0]["lr"])
            _fit(net, opt, 1, sched)
        out += [lrs, [snap(p) for p in net.parameters()]]
    # add_param_group fills in the defaults; the new group trains with its own lr
    net = _mlp(9)
    opt = cls(net[0].parameters(), lr=0.05, momentum=0.9, nesterov=True)
    opt.add_param_group({"params": net[2].parameters(), "lr": 0.2})
    out += [_groups(opt, list(net.parameters())), _fit(net, opt, 3)]
    return out


# ----------------------------------------------------------------- SGD class

def _run_on(net: nn.Module, opt: Any, n: int) -> list[Any]:
    gen = generator(2)
    dtype = next(net.parameters()).dtype
    for _ in range(n):
        opt.zero_grad()
        net(torch.randn(4, 3, generator=gen, dtype=dtype)).sum().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def _sgd_class(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["SGD"]
    _guard(ns)
    out: list[Any] = []
    net = _module(5, lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    opt = cls(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    out.append(_run_on(net, opt, 3))
    net2, opt2 = pickle.loads(pickle.dumps((net, opt)))
    net3, opt3 = copy.deepcopy((net, opt))
    out += [type(opt2) is cls, type(opt3) is cls, repr(opt).startswith("SGD ("),
            _run_on(net, opt, 4), _run_on(net2, opt2, 4), _run_on(net3, opt3, 4)]
    for dtype in (_F32, _F64):
        for k, kw in enumerate(option_grid()):
            net = _module(20 + k, lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(),
                                                        nn.Linear(4, 2))).to(dtype)
            opt = cls(net.parameters(), **kw)
            with torch.no_grad():
                net[2].bias.requires_grad_(False)        # a parameter without gradients
            trained = _run_on(net, opt, 3)
            net[2].bias.requires_grad_(True)
            out.append([trained, _run_on(net, opt, 2), _buffers(opt, list(net.parameters()))])
    # foreach=True: the same bits as the loop; p.grad too (torch's nesterov quirk)
    for k, kw in enumerate([dict(nesterov=True), dict(nesterov=True, weight_decay=0.01),
                            dict(dampening=0.2, maximize=True)]):
        net = _module(60 + k, lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(),
                                                    nn.Linear(4, 2)))
        opt = cls(net.parameters(), lr=0.05, momentum=0.9, foreach=True, **kw)
        rows = []
        for _ in range(3):
            rows.append(_run_on(net, opt, 1) + [snap(p.grad) for p in net.parameters()])
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
