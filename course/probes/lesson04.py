"""Re-verification probes for 04-momentum.

``momentum_step`` runs torch's heavy-ball rule for several steps (float32 and
float64, with and without dampening, dampening's default), checks that the
gradient is untouched and that the first buffer is a copy (not an alias) of
the gradient; ``heavy_ball`` compares whole trajectories (shape, dtype, w0
unchanged, zero steps); ``effective_lr`` and ``steps_after_lr_change`` the
formulas. Tolerances allow a different rounding order (``mu * b + g`` instead
of ``b.mul(mu).add(g)``). The course's momentum helpers and every SGD are
disabled while the learner's code runs.
"""

from __future__ import annotations

import builtins
from typing import Any

import torch

from course.probes._common import (COURSE_SGD, TORCH_SGD, as_float, generator, pair,
                                   same_storage, snap, type_name)
from course.verify import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [
    "course.momentum.torch_momentum_step", "course.momentum.velocity_momentum_step",
    "course.momentum.momentum_trajectory", "course.momentum.torch_sgd_trajectory",
    *TORCH_SGD, *COURSE_SGD,
]

_F64 = torch.float64


def _momentum_step(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["momentum_step"]
    gen = generator(4)
    out: list[Any] = []
    for dtype, shape, lr, mu, tau in ((torch.float32, (5,), 0.05, 0.8, 0.0),
                                      (torch.float32, (5,), 0.05, 0.8, 0.25),
                                      (_F64, (2, 3), 0.1, 0.9, 0.5),
                                      (_F64, (), 0.2, 0.5, 0.0),
                                      (_F64, (4,), 0.01, 0.99, 0.9)):
        p = torch.randn(shape, generator=gen, dtype=dtype)
        buf = None
        for _ in range(4):
            g = torch.randn(shape, generator=gen, dtype=dtype)
            g_before = g.clone()
            new_p, new_buf = pair(f(p, g, buf, lr, mu, tau) if tau else f(p, g, buf, lr, mu))
            first_alias = buf is None and same_storage(new_buf, g)
            out += [snap(new_p), snap(new_buf), snap(g), first_alias,
                    type(new_p) is torch.Tensor and type(new_buf) is torch.Tensor]
            if type(new_p) is not torch.Tensor or type(new_buf) is not torch.Tensor:
                break
            g.zero_()                              # what zero_grad(set_to_none=False) does
            out.append(snap(new_buf))              # the buffer must not have followed g
            g.copy_(g_before)
            p, buf = new_p, new_buf
    return out


def _quadratic(dtype: torch.dtype) -> Any:
    a = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, -0.2], [0.0, -0.2, 7.0]], dtype=dtype)
    c = torch.tensor([1.0, -0.5, 0.25], dtype=dtype)
    return lambda w: a @ (w - c)


def _heavy_ball(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["heavy_ball"]
    out: list[Any] = []
    for dtype, lr, mu, tau, n in ((_F64, 0.1, 0.9, None, 25), (_F64, 0.2, 0.5, 0.3, 25),
                                  (torch.float32, 0.05, 0.7, None, 30), (_F64, 0.1, 0.0, None, 5),
                                  (_F64, 0.1, 0.9, None, 0)):
        w0 = torch.tensor([1.0, -1.0, 0.5], dtype=dtype)
        args = (_quadratic(dtype), w0, lr, mu, n) + (() if tau is None else (tau,))
        h = f(*args)
        out += [snap(h), str(h.dtype) if type(h) is torch.Tensor else type_name(h),
                list(h.shape) if type(h) is torch.Tensor else None, snap(w0)]
    grads = iter([torch.tensor(2.0, dtype=_F64)] * 10)
    h = f(lambda w: next(grads), torch.tensor(0.0, dtype=_F64), 0.1, 0.9, 6, 0.5)  # 0-d point
    out += [snap(h), list(h.shape) if type(h) is torch.Tensor else None]
    return out


def _effective_lr(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["effective_lr"]
    out = [as_float(f(lr, mu, tau))
           for lr, mu, tau in ((0.3, 0.6, 0.0), (0.01, 0.95, 0.5), (1.0, 0.0, 0.0),
                               (0.05, 0.8, 0.25), (0.2, 0.99, 0.9))]
    out += [as_float(f(0.1, 0.5)), as_float(f(0.04, 0.7))]
    return out


def _steps_after_lr_change(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["steps_after_lr_change"]
    gen = generator(7)
    out: list[Any] = []
    for lr0, lr1, mu in ((0.1, 0.03, 0.9), (0.01, 0.2, 0.9), (0.05, 0.05, 0.5),
                         (0.3, 0.0, 0.8), (0.02, 0.1, 0.0)):
        buf = torch.randn(4, generator=gen, dtype=_F64)
        g = torch.randn(4, generator=gen, dtype=_F64)
        ts, vs = pair(f(buf.clone(), g.clone(), lr0, lr1, mu))
        out += [snap(ts), snap(vs), type(ts) is torch.Tensor and type(vs) is torch.Tensor]
    return out


PROBES = {
    "test_momentum_step": Probe(_momentum_step, rtol=1e-6, atol=1e-7),
    "test_heavy_ball": Probe(_heavy_ball, rtol=1e-6, atol=1e-9),
    "test_effective_lr": Probe(_effective_lr, rtol=1e-9, atol=1e-12),
    "test_steps_after_lr_change": Probe(_steps_after_lr_change, rtol=1e-9, atol=1e-12),
}
