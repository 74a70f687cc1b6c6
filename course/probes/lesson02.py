"""Re-verification probes for 02-autograd.

``autograd_derivative`` is probed with functions whose autograd derivative
differs from the true one (``t * t.detach()``, ``relu`` at 0) or that only
accept tensors, so a finite-difference or hand-derived answer fails;
``finite_difference`` with a spy that records where ``f`` is evaluated (this
pins the default ``eps``); ``gd_step_autograd`` and ``fit_linear_regression``
with the hidden tests' scenarios plus stale gradients and zero steps.
Tolerances allow float32/float64 and rounding-order differences. The course's
finite differences, autograd helper, closed-form MSE gradients and every SGD
(torch's and the course's) are disabled while the learner's code runs.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np
import torch

from course.probes._common import COURSE_SGD, TORCH_SGD, array, generator, real, snap
from course.verify import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [
    "course.gradcheck.central_difference", "course.gradcheck.autograd_gradient",
    "course.gradcheck.check_gradient", "course.gradcheck._difference",
    "course.stochastic.mse_gradient", "course.stochastic.per_example_gradients",
    *TORCH_SGD, *COURSE_SGD,
]

_F64 = torch.float64


def _autograd_derivative(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["autograd_derivative"]
    cases = [
        (lambda t: torch.tanh(t) ** 2, 0.3),
        (lambda t: torch.log(1 + t ** 2), 2.0),
        (lambda t: 4.0 * t - 1.0, -7.5),
        (lambda t: (t - 3) ** 2, 0.25),
        (lambda t: t.exp() * t.sin(), 0.7),            # tensor methods only
        (lambda t: t * t.detach(), 1.5),               # autograd: 1.5 (true derivative 3.0)
        (lambda t: torch.relu(t), 0.0),                # autograd: 0 (central difference 0.5)
        (lambda t: torch.where(t > 0, t ** 3, -t), -2.0),
    ]
    out: list[Any] = [real(f(fn, w)) for fn, w in cases]
    out.append(torch.is_grad_enabled())
    return out


def _finite_difference(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["finite_difference"]
    out: list[Any] = []
    for fn, w, eps in [(math.cos, 0.4, 1e-3), (lambda x: x ** 4, 1.5, 1e-2),
                       (math.exp, -1.0, 1e-5), (lambda x: 1 / x, 0.5, 0.1),
                       (np.sin, 0.25, 1e-4)]:
        out.append(real(f(fn, w, eps)))
    calls: list[float] = []

    def spy(x: float) -> float:
        calls.append(float(x))
        return x ** 3

    out.append(real(f(spy, 2.0)))                       # default eps = 1e-6
    out.append(sorted(set(calls)))                      # evaluated at 2 -+ 1e-6 only
    out.append(real(f(lambda x: (x - 1.5) ** 3, 1.5)))  # = eps**2: pins eps
    return out


def _quadratic_case(f: Any) -> list[Any]:
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=_F64)
    p = torch.tensor([1.0, -1.0], dtype=_F64, requires_grad=True)
    q = torch.tensor(2.0, dtype=_F64, requires_grad=True)
    params = [p, q]
    out: list[Any] = []
    for lr in (0.1, 0.1, 0.3):
        loss = f(params, lambda: 0.5 * p @ a @ p + (q - 1) ** 4, lr)
        out += [real(loss), snap(p), snap(q),
                params[0] is p and params[1] is q and len(params) == 2,
                bool(p.is_leaf and p.requires_grad and q.is_leaf and q.requires_grad)]
    return out


def _gd_step_autograd(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["gd_step_autograd"]
    out = _quadratic_case(f)
    r = torch.tensor(3.0, dtype=_F64, requires_grad=True)
    r.grad = torch.tensor(100.0, dtype=_F64)            # a stale gradient
    out += [real(f([r], lambda: r ** 2, 0.25)), snap(r)]
    gen = generator(21)
    x = torch.randn(8, 3, generator=gen, dtype=_F64)
    y = torch.randn(8, generator=gen, dtype=_F64)
    w = torch.zeros(3, dtype=_F64, requires_grad=True)
    b = torch.zeros((), dtype=_F64, requires_grad=True)
    for _ in range(4):
        out.append(real(f([w, b], lambda: ((x @ w + b - y) ** 2).mean(), 0.2)))
    out += [snap(w), snap(b), bool(w.is_leaf and b.is_leaf), torch.is_grad_enabled()]
    return out


def _regression(n: int, d: int, seed: int, dtype: torch.dtype) -> tuple[Any, Any]:
    gen = generator(seed)
    x = torch.randn(n, d, generator=gen, dtype=_F64)
    w = torch.randn(d, generator=gen, dtype=_F64)
    y = x @ w + 0.5 + 0.2 * torch.randn(n, generator=gen, dtype=_F64)
    return x.to(dtype), y.to(dtype)


def _fit(f: Any, x: Any, y: Any, lr: float, n_steps: int) -> list[Any]:
    w, b, losses = _triple(f(x, y, lr, n_steps))
    ok_types = [type(w) in (torch.Tensor, torch.nn.Parameter),
                type(b) in (torch.Tensor, torch.nn.Parameter)]
    shapes = [list(w.shape) if ok_types[0] else None, list(b.shape) if ok_types[1] else None]
    if type(losses) in (list, tuple) and all(type(v) in (float, np.float64) for v in losses):
        loss_values: Any = array(list(losses))
    else:
        loss_values = f"not a list of floats: {type(losses).__name__}"
    return [ok_types, shapes, array(w) if ok_types[0] else None,
            array(b) if ok_types[1] else None, loss_values, snap(x), snap(y)]  # X, y unchanged


def _triple(out: Any) -> tuple[Any, Any, Any]:
    if type(out) in (tuple, list) and len(out) == 3:
        return out[0], out[1], out[2]
    return None, None, None


def _fit_linear_regression(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["fit_linear_regression"]
    out: list[Any] = []
    x, y = _regression(60, 4, 3, torch.float32)
    out += _fit(f, x, y, 0.05, 40)
    out += _fit(f, x, y, 0.1, 400)                     # converged: the least-squares fit
    out += _fit(f, x, y, 0.05, 0)                      # zero steps: zeros, no losses
    x, y = _regression(25, 2, 4, _F64)
    out += _fit(f, x, y, 0.3, 30)
    return out


PROBES = {
    "test_autograd_derivative": Probe(_autograd_derivative, rtol=1e-5, atol=1e-6),
    "test_finite_difference": Probe(_finite_difference, rtol=1e-9, atol=1e-15),
    "test_gd_step_autograd": Probe(_gd_step_autograd, rtol=1e-10, atol=1e-12),
    "test_fit_linear_regression": Probe(_fit_linear_regression, rtol=1e-4, atol=1e-5),
}
