"""Re-verification probes for 04-momentum.

Every probe draws its inputs from the verification's seed (tensors, shapes,
learning rates, momenta, dampenings, step counts, random quadratics), next to
fixed edge cases. ``momentum_step`` runs torch's heavy-ball rule for several
steps (float32 and float64, with and without dampening, dampening's
default), checks that the gradient is untouched and that the first buffer is
a copy (not an alias) of the gradient; ``heavy_ball`` compares whole
trajectories on random quadratics (shape, dtype, w0 unchanged, zero steps,
momentum 0, a 0-d point); ``effective_lr`` and ``steps_after_lr_change`` the
formulas (buffer and gradient unchanged, lr unchanged or 0, momentum 0).
Tolerances allow a different rounding order (``mu * b + g`` instead of
``b.mul(mu).add(g)``); random runs are kept stable, and float32 trajectories
away from 0, so that rounding differences stay within them. The course's
momentum helpers and every SGD are disabled while the learner's code runs.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import torch

from course.exercises.values import (COURSE_SGD, TORCH_SGD, as_float, generator, pair,
                                   same_storage, snap, type_name)
from course.grading.probes import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [
    "course.momentum.torch_momentum_step", "course.momentum.velocity_momentum_step",
    "course.momentum.momentum_trajectory", "course.momentum.torch_sgd_trajectory",
    *TORCH_SGD, *COURSE_SGD,
]

_F64 = torch.float64


def _shape(rng: np.random.Generator) -> tuple[int, ...]:
    """A random tensor shape: 0 to 2 axes of 1 to 6 entries."""
    return tuple(int(n) for n in rng.integers(1, 7, size=int(rng.integers(0, 3))))


def _momentum_step(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["momentum_step"]
    rng = np.random.default_rng(seed)
    gen = generator(int(rng.integers(2 ** 62)))
    out: list[Any] = []
    # float32: sixteenths, lr in 32nds, momentum in 16ths, dampening in 8ths: every
    # intermediate value of 4 steps is exact in float32, so any rounding order
    # (mu * b + (1 - tau) * g, b.mul(mu).add(g, alpha=1 - tau), ...) gives the same bits.
    configs = [(torch.float32, (5,), 1 / 16, 13 / 16, 0.0),
               (torch.float32, (5,), 1 / 16, 13 / 16, 0.25),
               (_F64, (2, 3), 0.1, 0.9, 0.5), (_F64, (), 0.2, 0.5, 0.0),
               (_F64, (4,), 0.01, 0.99, 0.9)]
    for tau in (0.0, None):                              # random hyperparameters and shapes
        configs.append((torch.float32, _shape(rng), int(rng.integers(1, 10)) / 32,
                        int(rng.integers(0, 16)) / 16,
                        int(rng.integers(1, 8)) / 8 if tau is None else tau))
    for tau in (0.0, None, None):
        configs.append((_F64, _shape(rng), float(rng.uniform(0.001, 0.3)),
                        float(rng.uniform(0.0, 0.99)),
                        float(rng.uniform(0.05, 0.95)) if tau is None else tau))

    def draw(shape: tuple[int, ...], dtype: torch.dtype) -> Any:
        if dtype == _F64:
            return torch.randn(shape, generator=gen, dtype=dtype)
        return torch.randint(-16, 17, shape, generator=gen).to(dtype) / 16

    for dtype, shape, lr, mu, tau in configs:
        p = draw(shape, dtype)
        buf = None
        for _ in range(4):
            g = draw(shape, dtype)
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


def _quadratic(rng: np.random.Generator, dtype: torch.dtype, d: int,
               center: tuple[float, float]) -> tuple[Any, float, np.ndarray]:
    """The gradient of a random quadratic 0.5 (w - c)^T A (w - c) (|c_i| in
    ``center``), A's largest eigenvalue and c."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = rng.uniform(0.5, 5.0, size=d)
    a = q @ np.diag(eig) @ q.T
    a = torch.tensor((a + a.T) / 2, dtype=dtype)
    c = rng.choice([-1.0, 1.0], size=d) * rng.uniform(*center, size=d)
    c_t = torch.tensor(c, dtype=dtype)
    return (lambda w: a @ (w - c_t)), float(eig.max()), c


def _heavy_ball(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["heavy_ball"]
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for dtype, mu, tau, n in ((_F64, float(rng.uniform(0.5, 0.95)), None, 25),
                              (_F64, float(rng.uniform(0.0, 0.9)), float(rng.uniform(0.1, 0.9)),
                               int(rng.integers(5, 30))),
                              (torch.float32, float(rng.uniform(0.0, 0.8)), None, 30),
                              (_F64, 0.0, None, 5), (_F64, 0.9, None, 0),
                              (_F64, float(rng.uniform(0.0, 0.95)), None, int(rng.integers(1, 40)))):
        d = int(rng.integers(1, 5))
        if dtype == torch.float32:   # minimum and start away from 0: float32 rounding stays small
            f_grad, top, c = _quadratic(rng, dtype, d, (1.5, 3.0))
            w0 = torch.tensor(c + rng.uniform(-0.3, 0.3, size=d), dtype=dtype)
        else:
            f_grad, top, _ = _quadratic(rng, dtype, d, (0.0, 2.0))
            w0 = torch.tensor(rng.uniform(-2.0, 2.0, size=d), dtype=dtype)
        # lr (1 - tau) L <= 1 + mu: a stable run (rounding differences do not grow)
        lr = float(rng.uniform(0.1, 1.0)) * (1 + mu) / (top * (1 - (tau or 0.0)))
        args = (f_grad, w0, lr, mu, n) + (() if tau is None else (tau,))
        h = f(*args)
        out += [snap(h), str(h.dtype) if type(h) is torch.Tensor else type_name(h),
                list(h.shape) if type(h) is torch.Tensor else None, snap(w0)]
    g, tau = float(rng.uniform(-3.0, 3.0)), float(rng.uniform(0.1, 0.9))
    grads = iter([torch.tensor(g, dtype=_F64)] * 12)
    h = f(lambda w: next(grads), torch.tensor(float(rng.uniform(-1.0, 1.0)), dtype=_F64),
          float(rng.uniform(0.01, 0.3)), float(rng.uniform(0.0, 0.95)), 6, tau)  # a 0-d point
    out += [snap(h), list(h.shape) if type(h) is torch.Tensor else None]
    return out


def _effective_lr(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["effective_lr"]
    rng = np.random.default_rng(seed)
    cases = [(0.3, 0.6, 0.0), (0.01, 0.95, 0.5), (1.0, 0.0, 0.0), (0.05, 0.8, 0.25),
             (0.2, 0.99, 0.9)]
    cases += [(float(10 ** rng.uniform(-3.0, 0.0)), float(rng.uniform(0.0, 0.99)),
               float(rng.uniform(0.0, 0.95))) for _ in range(6)]
    out = [as_float(f(lr, mu, tau)) for lr, mu, tau in cases]
    out += [as_float(f(0.1, 0.5)), as_float(f(0.04, 0.7))]          # default dampening 0
    out += [as_float(f(float(10 ** rng.uniform(-3.0, 0.0)), float(rng.uniform(0.0, 0.99))))
            for _ in range(2)]
    return out


def _steps_after_lr_change(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["steps_after_lr_change"]
    rng = np.random.default_rng(seed)
    gen = generator(int(rng.integers(2 ** 62)))
    out: list[Any] = []
    lr = float(rng.uniform(0.001, 0.3))
    cases = [(0.1, 0.03, 0.9), (0.01, 0.2, 0.9), (0.05, 0.05, 0.5), (0.3, 0.0, 0.8),
             (0.02, 0.1, 0.0), (lr, lr, float(rng.uniform(0.0, 0.99)))]    # lr unchanged
    cases += [(float(rng.uniform(0.001, 0.3)), float(rng.uniform(0.001, 0.3)),
               float(rng.uniform(0.0, 0.99))) for _ in range(4)]
    for lr0, lr1, mu in cases:
        shape = _shape(rng)
        buf = torch.randn(shape, generator=gen, dtype=_F64)
        g = torch.randn(shape, generator=gen, dtype=_F64)
        ts, vs = pair(f(buf, g, lr0, lr1, mu))
        out += [snap(ts), snap(vs), type(ts) is torch.Tensor and type(vs) is torch.Tensor,
                snap(buf), snap(g)]                    # buf and grad are not modified
    return out


PROBES = {
    "test_momentum_step": Probe(_momentum_step, rtol=1e-6, atol=1e-7),
    "test_heavy_ball": Probe(_heavy_ball, rtol=1e-6, atol=1e-9),
    "test_effective_lr": Probe(_effective_lr, rtol=1e-9, atol=1e-12),
    "test_steps_after_lr_change": Probe(_steps_after_lr_change, rtol=1e-9, atol=1e-12),
}
