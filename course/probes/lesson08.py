"""Re-verification probes for 08-fast-sgd.

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
import itertools
from collections import Counter
from typing import Any

import torch
import torch._dynamo  # noqa: F401 - loaded now (the first optimizer loads it lazily)

from course.probes._common import (COURSE_SGD, TORCH_SGD, generator, pair, same_storage, snap,
                                   type_name)
from course.timing import count_ops
from course.verify import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

#: ``course.optim.SGD`` stays: the notebook's ForeachSGD subclasses it.
FORBIDDEN = [*TORCH_SGD, *[n for n in COURSE_SGD if n != "course.optim.SGD"],
             "course.momentum.torch_momentum_step"]


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
    out = []
    for n, m, wd, nest, mx in itertools.product((1, 3, 7, 20, 100), (0.0, 0.5, 0.9), (0.0, 0.1),
                                                (False, True), (False, True)):
        if nest and m == 0:
            continue
        r = pair(f(n, momentum=m, weight_decay=wd, nesterov=nest, maximize=mx))
        out.append([int(x) if type(x) is int else type_name(x) for x in r])
    r = pair(f(5))                                   # the defaults: plain SGD
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
    gen = generator(8)
    picks: list[list[int]] = [[], [0, 0, 0], [0, 2, 0, 1, 3, 2, 4, 1],
                              [4, 3, 2, 1, 0, 0, 1, 2, 3, 4], [7, 7, 6, 0]]
    for _ in range(12):
        n = int(torch.randint(0, 12, (1,), generator=gen))
        picks.append(torch.randint(0, len(_KINDS), (n,), generator=gen).tolist())
    out = []
    for pick in picks:
        ts = [torch.empty(i % 3 + 1, device=_KINDS[k][0], dtype=_KINDS[k][1])
              for i, k in enumerate(pick)]
        out.append(_describe_groups(f(list(ts))))
    cpu0 = torch.zeros(2)
    out.append(_describe_groups(f([cpu0, torch.zeros(3, device="cpu"), cpu0.double()])))
    return out


# ------------------------------------------------------- foreach_sgd_update

def _update_inputs(seed: int, dtype: torch.dtype, state: str) -> tuple[list, list, list]:
    gen = generator(seed)
    shapes = [(4, 3), (5,), (), (2, 2, 2), (3,), (1, 4)]

    def rand(s: tuple[int, ...], c: float = 1.0) -> torch.Tensor:
        return (torch.randn(s, generator=gen, dtype=torch.float64) * c).to(dtype)

    params = [rand(s) for s in shapes]
    grads = [rand(s, 0.7) for s in shapes]
    bufs = {"first": [None] * len(shapes), "later": [rand(s, 0.5) for s in shapes],
            "mixed": [None if i % 2 else rand(s, 0.5) for i, s in enumerate(shapes)]}[state]
    return params, grads, bufs


_UPDATE_GRID = [
    ({"lr": 0.1}, "first"),
    ({"lr": 0.1, "momentum": 0.9, "dampening": 0.5}, "first"),
    ({"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}, "later"),
    ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "maximize": True},
     "later"),
    ({"lr": 0.05, "momentum": 0.95, "nesterov": True}, "later"),
    ({"lr": 0.1, "weight_decay": 0.1, "maximize": True}, "first"),
    ({"lr": 0.1, "momentum": 0.8, "dampening": 0.2}, "mixed"),
    ({"lr": 0.03, "momentum": 0.7, "dampening": 0.2, "weight_decay": 0.05, "maximize": True},
     "mixed"),
    ({"lr": torch.tensor(0.02), "momentum": 0.9}, "later"),
]


def _foreach_update(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["foreach_sgd_update"]
    out: list[Any] = []
    for seed, (kw, state) in enumerate(_UPDATE_GRID):
        for dtype in (torch.float32, torch.float64):
            params, grads, bufs = _update_inputs(seed, dtype, state)
            for step in range(3):                   # later steps reuse the buffers
                olds = list(bufs)
                grads_in = [g.clone() for g in grads]
                f(params, grads_in, bufs, **kw)
                out.append([[snap(p) for p in params], [snap(b) for b in bufs],
                            [snap(g) for g in grads_in],          # grads unchanged
                            [o is None or b is o for b, o in zip(bufs, olds)],  # in place
                            [same_storage(b, g) or same_storage(b, p)
                             for b, g, p in zip(bufs, grads_in, params)]])   # no aliases
                grads = [g * 0.9 + 0.01 * step for g in grads]
    counts = []
    for n in (4, 40):                               # a later step: ops must not grow with n
        gen = generator(n)
        ps = [torch.randn(3, generator=gen) for _ in range(n)]
        gs = [torch.randn(3, generator=gen) for _ in range(n)]
        bs = [torch.randn(3, generator=gen) for _ in range(n)]
        counts.append(_total_ops(lambda: f(ps, gs, bs, lr=0.1, momentum=0.9, weight_decay=0.1,
                                           maximize=True)))
        counts.append(_per_tensor_ops(lambda: f(ps, gs, bs, lr=0.1, momentum=0.9,
                                                nesterov=True)))
    out.append([counts[0] == counts[2], counts[0] <= 10, counts[1] < 4, counts[3] < 40])
    return out


# ---------------------------------------------------------------- ForeachSGD

_CLASS_CONFIGS = [{"lr": 0.05}, {"lr": 0.05, "momentum": 0.9, "dampening": 0.1},
                  {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                  {"lr": 0.05, "momentum": 0.5, "maximize": True, "weight_decay": 0.1},
                  {"lr": 0.1, "momentum": 0.95, "dampening": 0.3, "weight_decay": 0.02}]


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
    try:
        gen = generator(6)
        x, y = torch.randn(12, 6, generator=gen), torch.randn(12, 2, generator=gen)
        for k, kw in enumerate(_CLASS_CONFIGS):
            net = _model(5 + k)
            extra = torch.nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64))
            other = torch.nn.Parameter(torch.randn(2, generator=gen))
            # group 0 mixes float32 and float64: one foreach call per (device, dtype)
            opt = cls([{"params": list(net.parameters()) + [extra]},
                       {"params": [other], "lr": 0.01}], **kw)
            params = list(net.parameters()) + [extra, other]
            trace = []
            for t in range(5):
                def closure() -> torch.Tensor:
                    opt.zero_grad()
                    loss = (torch.nn.functional.mse_loss(net(x), y) + ((extra - 1) ** 2).sum()
                            + (other ** 2).sum() * 0.5)
                    loss.backward()
                    if t < 2:
                        net[0].bias.grad = None       # its first gradient comes late
                    return loss
                if t == 3:
                    for g in opt.param_groups:
                        g["lr"] = g["lr"] * 0.5
                calls.clear()
                loss = opt.step(closure)
                # one foreach_sgd_update call per (device, dtype) group of each param group
                trace.append([snap(loss), [snap(p) for p in params], sorted(calls)])
            out.append([trace, len(opt.state), _buffers(opt, params), opt.step() is None])
        # load a state dict (torch's format), then step on
        net = _model(11)
        opt = cls(net.parameters(), lr=0.5)
        sgen = generator(31)
        opt.load_state_dict({
            "state": {i: {"momentum_buffer": torch.randn(p.shape, generator=sgen)}
                      for i, p in enumerate(net.parameters()) if i != 1},
            "param_groups": [{"lr": 0.05, "momentum": 0.8, "dampening": 0.0,
                              "weight_decay": 0.01, "nesterov": True, "maximize": False,
                              "foreach": None, "differentiable": False, "fused": None,
                              "params": [0, 1, 2, 3]}]})
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        out.append([[snap(p) for p in net.parameters()], _buffers(opt, list(net.parameters()))])
    finally:
        ns["foreach_sgd_update"] = learner_update
    many = [torch.nn.Parameter(torch.randn(2, 2, generator=generator(40 + i)))
            for i in range(40)]
    for p in many:
        p.grad = torch.ones_like(p)
    opt = cls(many, lr=0.01, momentum=0.9, weight_decay=0.01)
    opt.step()
    out.append(_per_tensor_ops(opt.step) < len(many))  # a later step: not one tensor at a time
    return out


PROBES = {
    "test_step_op_counts": Probe(_step_op_counts),
    "test_group_by_device_and_dtype": Probe(_group),
    "test_foreach_sgd_update": Probe(_foreach_update),
    "test_ForeachSGD": Probe(_foreach_class),
}
