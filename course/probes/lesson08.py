"""Re-verification probes for 08-fast-sgd.

Every input is drawn from the verification's seed: tensor counts, shapes,
values, devices and dtypes, every hyperparameter, step counts, model weights,
batches, when a first gradient comes late and when the lr changes, loaded
state dicts. The grids of flags and buffer states stay fixed (every path of
torch's rule).

``foreach_sgd_update`` and ``ForeachSGD`` are compared byte for byte (their
exercises promise bit-exactness with torch's for-loop and foreach SGD):
parameters, momentum buffers (updated in place, first ones copies of the
gradients, never aliases), gradients left unchanged, state layout, closures,
state dicts, an lr change and a late first gradient; ``ForeachSGD.step`` must
call ``foreach_sgd_update`` once per (device, dtype) group of each param group,
as the exercise says (a param group here mixes float32 and float64). Both must really be
multi-tensor code: the ops a later step dispatches (counted with
:func:`course.timing.count_ops`) must not grow with the number of tensors.
``step_op_counts`` and ``group_by_device_and_dtype`` are compared exactly,
types included. While the learner's code runs, torch's SGD (class, functions,
fused kernel) and the course's update rules are disabled; ``course.optim.SGD``
is not (``ForeachSGD`` subclasses it) but its own step, which calls the
course's update rules, then refuses to run.
"""

from __future__ import annotations

import builtins
import functools
import itertools
from collections import Counter
from typing import Any

import numpy as np
import torch
import torch._dynamo  # noqa: F401 - loaded now (the first optimizer loads it lazily)

from course.exercises.values import probe_rng, sub_seed, uniform
from course.exercises.values import (COURSE_SGD, TORCH_SGD, generator, pair, same_storage, snap,
                                   type_name)
from course.timing import count_ops
from course.grading.probes import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

#: ``course.optim.SGD`` stays: the notebook's ForeachSGD subclasses it.
FORBIDDEN = [*TORCH_SGD, *[n for n in COURSE_SGD if n != "course.optim.SGD"],
             "course.momentum.torch_momentum_step"]


_rng, _sub_seed, _u = probe_rng, sub_seed, uniform


def _shape(rng: np.random.Generator, max_ndim: int = 3) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(0, max_ndim + 1))))


def _per_tensor_ops(fn: Any, _count: Any = count_ops) -> int:
    """How many non-foreach, non-view ops one call of fn dispatches."""
    counts: Counter[str] = _count(fn, include_views=False)
    return sum(v for k, v in counts.items()
               if not k.startswith("_foreach") and k not in ("detach", "alias"))


def _total_ops(fn: Any, _count: Any = count_ops) -> int:
    return sum(_count(fn, include_views=False).values())


# ------------------------------------------------------------ step_op_counts

def _step_op_counts(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["step_op_counts"]
    rng = _rng(seed, 801)
    out = []
    sizes = [1] + [int(n) for n in rng.integers(2, 500, size=4)]
    momenta = (0.0, _u(rng, 0.1, 0.6), _u(rng, 0.6, 0.99))
    for n, m, wd, nest, mx in itertools.product(sizes, momenta, (0.0, _u(rng, 1e-4, 0.3)),
                                                (False, True), (False, True)):
        if nest and m == 0:
            continue
        r = pair(f(n, momentum=m, weight_decay=wd, nesterov=nest, maximize=mx))
        out.append([int(x) if type(x) is int else type_name(x) for x in r])
    r = pair(f(int(rng.integers(1, 500))))          # the defaults: plain SGD
    out.append([int(x) if type(x) is int else type_name(x) for x in r])
    return out


# ------------------------------------------------- group_by_device_and_dtype

_KINDS = [(d, t) for d in ("cpu", "meta")
          for t in (torch.float32, torch.float64, torch.float16, torch.bfloat16)]


def _describe_groups(groups: Any) -> Any:
    if type(groups) is not dict:
        return type_name(groups)
    rows = []
    for key, idx in groups.items():
        if type(key) is not tuple or len(key) != 2:
            rows.append(type_name(key))
            continue
        rows.append([type(key[0]) is torch.device, type(key[1]) is torch.dtype,
                     str(key[0]), str(key[1]),
                     [int(i) if type(i) is int else type_name(i) for i in idx]
                     if type(idx) is list else type_name(idx)])
    return rows


def _group(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["group_by_device_and_dtype"]
    rng = _rng(seed, 802)
    gen = generator(_sub_seed(rng))
    kinds = [_KINDS[int(i)] for i in rng.permutation(len(_KINDS))]
    picks: list[list[int]] = [[], [0, 0, 0], [0, 2, 0, 1, 3, 2, 4, 1],
                              [4, 3, 2, 1, 0, 0, 1, 2, 3, 4], [7, 7, 6, 0]]
    for _ in range(12):
        n = int(torch.randint(0, 12, (1,), generator=gen))
        picks.append(torch.randint(0, len(kinds), (n,), generator=gen).tolist())
    out = []
    for pick in picks:
        ts = [torch.empty(_shape(rng, 2), device=kinds[k][0], dtype=kinds[k][1])
              for k in pick]
        out.append(_describe_groups(f(list(ts))))
    cpu0 = torch.zeros(_shape(rng))
    out.append(_describe_groups(f([cpu0, torch.zeros(_shape(rng), device="cpu"),
                                   cpu0.double()])))
    return out


# ------------------------------------------------------- foreach_sgd_update

def _update_inputs(rng: np.random.Generator, dtype: torch.dtype,
                   state: str) -> tuple[list, list, list]:
    gen = generator(_sub_seed(rng))
    shapes = [_shape(rng) for _ in range(int(rng.integers(3, 8)))]
    shapes[int(rng.integers(len(shapes)))] = ()              # a 0-d tensor

    def rand(s: tuple[int, ...], c: float = 1.0) -> torch.Tensor:
        return (torch.randn(s, generator=gen, dtype=torch.float64) * c).to(dtype)

    params = [rand(s) for s in shapes]
    grads = [rand(s, 0.7) for s in shapes]
    bufs = {"first": [None] * len(shapes), "later": [rand(s, 0.5) for s in shapes],
            "mixed": [None if i % 2 else rand(s, 0.5) for i, s in enumerate(shapes)]}[state]
    return params, grads, bufs


#: Which flags each scenario sets, and the buffers it starts from (none yet,
#: all, some); the values are drawn from the verification's seed.
_UPDATE_GRID = [
    ((), "first"), (("momentum", "dampening"), "first"),
    (("momentum", "dampening", "weight_decay"), "later"),
    (("momentum", "nesterov", "weight_decay", "maximize"), "later"),
    (("momentum", "nesterov"), "later"), (("weight_decay", "maximize"), "first"),
    (("momentum", "dampening"), "mixed"),
    (("momentum", "dampening", "weight_decay", "maximize"), "mixed"),
    (("momentum", "tensor lr"), "later"),
]


def _hyper(rng: np.random.Generator, flags: tuple[str, ...]) -> dict[str, Any]:
    lr = float(10.0 ** rng.uniform(-2.5, -0.5))
    hyper: dict[str, Any] = {"lr": torch.tensor(lr) if "tensor lr" in flags else lr}
    if "momentum" in flags:
        hyper["momentum"] = _u(rng, 0.5, 0.99)
    if "dampening" in flags:
        hyper["dampening"] = _u(rng, 0.05, 0.6)
    if "weight_decay" in flags:
        hyper["weight_decay"] = float(10.0 ** rng.uniform(-3, -0.5))
    for flag in ("nesterov", "maximize"):
        if flag in flags:
            hyper[flag] = True
    return hyper


def _foreach_update(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["foreach_sgd_update"]
    rng = _rng(seed, 803)
    out: list[Any] = []
    for flags, state in _UPDATE_GRID:
        kw = _hyper(rng, flags)
        for dtype in (torch.float32, torch.float64):
            params, grads, bufs = _update_inputs(rng, dtype, state)
            decay, shift = _u(rng, 0.5, 1.0), _u(rng, -0.05, 0.05)
            for _ in range(int(rng.integers(2, 5))):   # later steps reuse the buffers
                olds = list(bufs)
                grads_in = [g.clone() for g in grads]
                f(params, grads_in, bufs, **kw)
                out.append([[snap(p) for p in params], [snap(b) for b in bufs],
                            [snap(g) for g in grads_in],          # grads unchanged
                            [o is None or b is o for b, o in zip(bufs, olds)],  # in place
                            [same_storage(b, g) or same_storage(b, p)
                             for b, g, p in zip(bufs, grads_in, params)]])   # no aliases
                grads = [g * decay + shift for g in grads]
    counts = []
    few, many = int(rng.integers(3, 9)), int(rng.integers(30, 60))
    for n in (few, many):                           # a later step: ops must not grow with n
        gen = generator(_sub_seed(rng))
        ps = [torch.randn(_shape(rng, 2), generator=gen) for _ in range(n)]
        gs = [torch.randn(p.shape, generator=gen) for p in ps]
        bs = [torch.randn(p.shape, generator=gen) for p in ps]
        kw = dict(lr=_u(rng, 0.01, 0.2), momentum=_u(rng, 0.5, 0.99))
        counts.append(_total_ops(lambda: f(ps, gs, bs, weight_decay=0.1, maximize=True, **kw)))
        counts.append(_per_tensor_ops(lambda: f(ps, gs, bs, nesterov=True, **kw)))
    out.append([counts[0] == counts[2], counts[0] <= 10, counts[1] < 4, counts[3] < many])
    return out


# ---------------------------------------------------------------- ForeachSGD

def _class_configs(rng: np.random.Generator) -> list[dict[str, Any]]:
    u = functools.partial(_u, rng)
    return [{"lr": u(0.01, 0.1)},
            {"lr": u(0.01, 0.1), "momentum": u(0.5, 0.95), "dampening": u(0.05, 0.3)},
            {"lr": u(0.01, 0.05), "momentum": u(0.8, 0.99), "nesterov": True,
             "weight_decay": u(0.001, 0.05)},
            {"lr": u(0.01, 0.1), "momentum": u(0.3, 0.7), "maximize": True,
             "weight_decay": u(0.01, 0.2)},
            {"lr": u(0.05, 0.15), "momentum": u(0.8, 0.99), "dampening": u(0.1, 0.5),
             "weight_decay": u(0.005, 0.05)}]


def _model(seed: int) -> torch.nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))


def _buffers(opt: Any, params: list[Any]) -> list[Any]:
    return [[sorted(opt.state[p]), snap(opt.state[p].get("momentum_buffer"))]
            if p in opt.state else "no state" for p in params]


def _foreach_class(ns: dict[str, Any], seed: int) -> list[Any]:
    cls = ns["ForeachSGD"]
    learner_update = ns["foreach_sgd_update"]
    calls: list[int] = []

    def counting(params: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(params) if type(params) in (list, tuple) else -1)
        return learner_update(params, *args, **kwargs)

    base = ns.get("SGD")
    out: list[Any] = [isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer),
                      isinstance(cls, type) and isinstance(base, type) and issubclass(cls, base)]
    ns["foreach_sgd_update"] = counting
    rng = _rng(seed, 804)
    try:
        gen = generator(_sub_seed(rng))
        n = int(rng.integers(8, 17))
        x, y = torch.randn(n, 6, generator=gen), torch.randn(n, 2, generator=gen)
        for kw in _class_configs(rng):
            net = _model(_sub_seed(rng))
            extra = torch.nn.Parameter(torch.randn(_shape(rng), generator=gen,
                                                   dtype=torch.float64))
            other = torch.nn.Parameter(torch.randn(_shape(rng), generator=gen))
            # group 0 mixes float32 and float64: one foreach call per (device, dtype)
            opt = cls([{"params": list(net.parameters()) + [extra]},
                       {"params": [other], "lr": _u(rng, 0.005, 0.05)}], **kw)
            params = list(net.parameters()) + [extra, other]
            trace = []
            late, change, factor = int(rng.integers(1, 3)), int(rng.integers(2, 5)), \
                _u(rng, 0.2, 0.8)
            for t in range(5):
                def closure() -> torch.Tensor:
                    opt.zero_grad()
                    loss = (torch.nn.functional.mse_loss(net(x), y) + ((extra - 1) ** 2).sum()
                            + (other ** 2).sum() * 0.5)
                    loss.backward()
                    if t < late:
                        net[0].bias.grad = None       # its first gradient comes late
                    return loss
                if t == change:
                    for g in opt.param_groups:
                        g["lr"] = g["lr"] * factor
                calls.clear()
                loss = opt.step(closure)
                # one foreach_sgd_update call per (device, dtype) group of each param group
                trace.append([snap(loss), [snap(p) for p in params], sorted(calls)])
            out.append([trace, len(opt.state), _buffers(opt, params), opt.step() is None])
        # load a state dict (torch's format), then step on
        net = _model(_sub_seed(rng))
        opt = cls(net.parameters(), lr=_u(rng, 0.1, 1.0))
        sgen = generator(_sub_seed(rng))
        skip = int(rng.integers(4))
        opt.load_state_dict({
            "state": {i: {"momentum_buffer": torch.randn(p.shape, generator=sgen)}
                      for i, p in enumerate(net.parameters()) if i != skip},
            "param_groups": [{"lr": _u(rng, 0.01, 0.1), "momentum": _u(rng, 0.5, 0.95),
                              "dampening": 0.0, "weight_decay": _u(rng, 0.001, 0.05),
                              "nesterov": True, "maximize": False, "foreach": None,
                              "differentiable": False, "fused": None,
                              "params": [0, 1, 2, 3]}]})
        for _ in range(int(rng.integers(2, 5))):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        out.append([[snap(p) for p in net.parameters()], _buffers(opt, list(net.parameters()))])
    finally:
        ns["foreach_sgd_update"] = learner_update
    gen = generator(_sub_seed(rng))
    many = [torch.nn.Parameter(torch.randn(_shape(rng, 2), generator=gen))
            for _ in range(int(rng.integers(30, 50)))]
    for p in many:
        p.grad = torch.randn(p.shape, generator=gen)
    opt = cls(many, lr=_u(rng, 0.001, 0.1), momentum=_u(rng, 0.5, 0.95),
              weight_decay=_u(rng, 0.001, 0.05))
    opt.step()
    out.append(_per_tensor_ops(opt.step) < len(many))  # a later step: not one tensor at a time
    return out


PROBES = {
    "test_step_op_counts": Probe(_step_op_counts),
    "test_group_by_device_and_dtype": Probe(_group),
    "test_foreach_sgd_update": Probe(_foreach_update),
    "test_ForeachSGD": Probe(_foreach_class),
}
