"""Re-verification probes for 02-autograd.

Every probe draws its inputs from the verification's seed, next to fixed
cases. ``autograd_derivative`` is probed with functions whose autograd
derivative differs from the true one (``t * t.detach()``, ``relu`` at 0) or
that only accept tensors, so a finite-difference or hand-derived answer
fails, at fixed and random points; ``finite_difference`` at random points and
steps, and with a spy that records where ``f`` is evaluated (this pins the
default ``eps``); ``gd_step_autograd`` on random quadratics, a stale gradient
and a random least-squares problem (the same leaf tensors updated in place,
the loss before the step); ``fit_linear_regression`` on random regression
problems in float32 and float64 (trajectory, converged fit, zero steps,
types, shapes, inputs unchanged).
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

from course.exercises.values import COURSE_SGD, TORCH_SGD, array, generator, real, snap
from course.grading.probes import Probe

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


def _spd(rng: np.random.Generator, d: int, low: float, high: float) -> Any:
    """A random symmetric positive definite d x d float64 tensor, eigenvalues in [low, high]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = q @ np.diag(rng.uniform(low, high, size=d)) @ q.T
    return torch.tensor((a + a.T) / 2, dtype=_F64)


def _away(rng: np.random.Generator, low: float, high: float) -> float:
    """A random float with low <= |x| <= high and a random sign."""
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(low, high))


def _autograd_derivative(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["autograd_derivative"]
    rng = np.random.default_rng(seed)
    a, b, c = (float(v) for v in rng.uniform(-5.0, 5.0, size=3))
    shift = float(rng.uniform(-2.0, 4.0))
    cases = [
        (lambda t: torch.tanh(t) ** 2, 0.3),
        (lambda t: torch.log(1 + t ** 2), 2.0),
        (lambda t: 4.0 * t - 1.0, -7.5),
        (lambda t: (t - 3) ** 2, 0.25),
        (lambda t: t.exp() * t.sin(), 0.7),            # tensor methods only
        (lambda t: t * t.detach(), 1.5),               # autograd: 1.5 (true derivative 3.0)
        (lambda t: torch.relu(t), 0.0),                # autograd: 0 (central difference 0.5)
        (lambda t: torch.where(t > 0, t ** 3, -t), -2.0),
        # the same kinds of functions, at random points with random coefficients
        (lambda t: torch.tanh(t) ** 2, float(rng.uniform(-2.0, 2.0))),
        (lambda t: torch.log(1 + t ** 2), float(rng.uniform(-3.0, 3.0))),
        (lambda t: a * t + b, float(rng.uniform(-10.0, 10.0))),
        (lambda t: (t - shift) ** 2, shift + _away(rng, 0.1, 3.0)),
        (lambda t: t.exp() * t.sin() + c * t, float(rng.uniform(-2.0, 2.0))),
        (lambda t: t * t.detach(), float(rng.uniform(-3.0, 3.0))),
        (lambda t: torch.where(t > 0, t ** 3, -t), _away(rng, 0.1, 2.0)),
    ]
    out: list[Any] = [real(f(fn, w)) for fn, w in cases]
    out.append(torch.is_grad_enabled())
    return out


def _finite_difference(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["finite_difference"]
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    eps = [float(10 ** rng.uniform(-5.0, -1.0)) for _ in range(5)]
    for fn, w, e in [(math.cos, 0.4, 1e-3), (lambda x: x ** 4, 1.5, 1e-2),
                     (math.exp, -1.0, 1e-5), (lambda x: 1 / x, 0.5, 0.1),
                     (np.sin, 0.25, 1e-4),
                     # random points (where the derivative is not close to 0) and steps
                     (math.cos, _away(rng, 0.2, 2.9), eps[0]),
                     (lambda x: x ** 4, _away(rng, 0.4, 2.0), eps[1]),
                     (math.exp, float(rng.uniform(-2.0, 2.0)), eps[2]),
                     (lambda x: 1 / x, _away(rng, 0.3, 2.0), eps[3]),
                     (np.sin, float(rng.uniform(-1.4, 1.4)), eps[4])]:
        out.append(real(f(fn, w, e)))
    calls: list[float] = []

    def spy(x: float) -> float:
        calls.append(float(x))
        return x ** 3

    out.append(real(f(spy, float(rng.uniform(-3.0, 3.0)))))     # default eps = 1e-6
    out.append(sorted(set(calls)))                              # evaluated at w -+ 1e-6 only
    c = float(rng.uniform(-2.0, 2.0))
    out.append(real(f(lambda x: (x - c) ** 3, c)))              # ~ eps**2: pins eps
    return out


def _quadratic_case(f: Any, rng: np.random.Generator) -> list[Any]:
    d = int(rng.integers(2, 5))
    a = _spd(rng, d, 0.5, 3.0)
    p = torch.tensor(rng.uniform(-2.0, 2.0, size=d), dtype=_F64, requires_grad=True)
    q = torch.tensor(float(rng.uniform(0.0, 2.0)), dtype=_F64, requires_grad=True)
    params = [p, q]
    out: list[Any] = []
    for lr in rng.uniform(0.05, 0.3, size=3):
        loss = f(params, lambda: 0.5 * p @ a @ p + (q - 1) ** 4, float(lr))
        out += [real(loss), snap(p), snap(q),
                params[0] is p and params[1] is q and len(params) == 2,
                bool(p.is_leaf and p.requires_grad and q.is_leaf and q.requires_grad)]
    return out


def _gd_step_autograd(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["gd_step_autograd"]
    rng = np.random.default_rng(seed)
    out = _quadratic_case(f, rng)
    r = torch.tensor(float(rng.uniform(-3.0, 3.0)), dtype=_F64, requires_grad=True)
    r.grad = torch.tensor(float(rng.uniform(10.0, 1000.0)), dtype=_F64)   # a stale gradient
    out += [real(f([r], lambda: r ** 2, float(rng.uniform(0.05, 0.45)))), snap(r)]
    gen = generator(int(rng.integers(2 ** 62)))
    n, d = int(rng.integers(5, 13)), int(rng.integers(1, 5))
    x = torch.randn(n, d, generator=gen, dtype=_F64)
    y = torch.randn(n, generator=gen, dtype=_F64)
    w = torch.zeros(d, dtype=_F64, requires_grad=True)
    b = torch.zeros((), dtype=_F64, requires_grad=True)
    lr = float(rng.uniform(0.05, 0.25))
    for _ in range(4):
        out.append(real(f([w, b], lambda: ((x @ w + b - y) ** 2).mean(), lr)))
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
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    n, d = int(rng.integers(30, 90)), int(rng.integers(1, 6))
    x, y = _regression(n, d, int(rng.integers(2 ** 62)), torch.float32)
    out += _fit(f, x, y, float(rng.uniform(0.02, 0.1)), int(rng.integers(20, 60)))
    out += _fit(f, x, y, 0.1, 400)                     # converged: the least-squares fit
    out += _fit(f, x, y, float(rng.uniform(0.01, 0.1)), 0)   # zero steps: zeros, no losses
    n, d = int(rng.integers(15, 40)), int(rng.integers(1, 4))
    x, y = _regression(n, d, int(rng.integers(2 ** 62)), _F64)
    out += _fit(f, x, y, float(rng.uniform(0.1, 0.3)), int(rng.integers(10, 40)))
    return out


PROBES = {
    "test_autograd_derivative": Probe(_autograd_derivative, rtol=1e-5, atol=1e-6),
    "test_finite_difference": Probe(_finite_difference, rtol=1e-9, atol=1e-15),
    "test_gd_step_autograd": Probe(_gd_step_autograd, rtol=1e-10, atol=1e-12),
    "test_fit_linear_regression": Probe(_fit_linear_regression, rtol=1e-4, atol=1e-5),
}
