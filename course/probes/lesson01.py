"""Re-verification probes for 01-gradient-descent.

Every probe draws its inputs from the verification's seed (random points,
shapes, learning rates, step counts, tolerances and curvatures), next to the
fixed edge cases the exercises need (an integer array, lr = 0, zero steps, a
divergent run, lr = 1/L, |1 - lr L| >= 1, the default L). Values are compared
within float64 rounding (learners may write ``2 * w - 6`` instead of
``2 * (w - 3)``); step counts exactly, with random cases drawn away from the
integer boundaries where rounding could tip the count either way. Return
types, shapes and unchanged inputs are part of the result where the tests
require them. The course's gradient descent and the quadratic's gradient are
disabled while the learner's code runs.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np

from course.probes._common import INT_TYPES, array, real, type_name
from course.verify import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = ["course.gd.gd_step", "course.gd.gradient_descent",
             "course.functions.quadratic_grad"]

_SCALAR = (float, int, np.float64)


def _ndarray(x: Any, shape: tuple[int, ...]) -> Any:
    """A float copy of x if it is an ndarray of this shape (the tests require one)."""
    if type(x) is np.ndarray and x.shape == shape:
        return np.array(x, dtype=np.float64)
    return type_name(x)


def _shape(rng: np.random.Generator, max_ndim: int = 3, max_size: int = 5) -> tuple[int, ...]:
    """A random array shape: 1 to ``max_ndim`` axes of 1 to ``max_size`` entries."""
    ndim = int(rng.integers(1, max_ndim + 1))
    return tuple(int(n) for n in rng.integers(1, max_size + 1, size=ndim))


def _spd(rng: np.random.Generator, d: int, low: float, high: float) -> np.ndarray:
    """A random symmetric positive definite d x d matrix, eigenvalues in [low, high]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = q @ np.diag(rng.uniform(low, high, size=d)) @ q.T
    return (a + a.T) / 2


def _derivative(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["derivative"]
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    w = np.linspace(-5.0, 10.0, 31)
    out.append(_ndarray(f(w.copy()), (31,)))
    m = np.array([[0.5, 4.0], [3.0, -1.0]])
    out.append(_ndarray(f(m.copy()), (2, 2)))
    out.append(_ndarray(f(np.arange(-2, 5)), (7,)))        # integer array
    out += [real(f(x), _SCALAR) for x in (-7.25, 3.0, 1e3, 2.999, 0.0, -1e-9)]
    for _ in range(3):                                     # random arrays, left unchanged
        shape = _shape(rng)
        w = rng.uniform(-20.0, 20.0, size=shape)
        out += [_ndarray(f(w), shape), w]
    ints = rng.integers(-50, 50, size=_shape(rng, 2, 6))   # a random integer array
    out.append(_ndarray(f(ints.copy()), ints.shape))
    scalars = [float(x) for x in rng.uniform(-100.0, 100.0, size=4)]
    scalars += [3.0 + float(rng.uniform(-1e-3, 1e-3)), float(rng.normal() * 1e6)]
    out += [real(f(x), _SCALAR) for x in scalars]
    return out


def _gd_step(ns: dict[str, Any], seed: int) -> list[Any]:
    step = ns["gd_step"]
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for lr in (float(rng.uniform(0.01, 2.0)), float(rng.uniform(0.01, 2.0)), 0.0):
        shape = _shape(rng)
        w, g = rng.standard_normal(shape), rng.standard_normal(shape)
        new = step(w, g, lr)
        out += [_ndarray(new, shape), w, g]                 # w and g must be unchanged
    cases = [(5.0, 4.0, 0.25), (-1.5, -2.0, 0.0), (2.5, -1.0, 0.5), (1e8, 3.0, 1e-3)]
    cases += [(float(rng.uniform(-10.0, 10.0)), float(rng.uniform(-10.0, 10.0)),
               float(rng.uniform(0.0, 1.5))) for _ in range(4)]
    for w, g, lr in cases:
        out.append(real(step(w, g, lr)))
    return out


def _gradient_descent(ns: dict[str, Any], seed: int) -> list[Any]:
    gd = ns["gradient_descent"]
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    a, c = float(rng.uniform(0.5, 5.0)), float(rng.uniform(-5.0, 5.0))   # 1-D quadratic
    w0, lr, n = float(rng.uniform(-10.0, 10.0)), float(rng.uniform(0.05, 1.8)) / a, \
        int(rng.integers(5, 25))
    out.append(array(gd(lambda w: a * (w - c), w0, lr, n)))
    d = int(rng.integers(2, 6))                                          # n-D quadratic
    m, c_vec = _spd(rng, d, 0.5, 5.0), rng.uniform(-3.0, 3.0, size=d)
    w0_vec = rng.uniform(-5.0, 5.0, size=d)
    h = gd(lambda w: m @ (w - c_vec), w0_vec, float(rng.uniform(0.02, 0.35)),
           int(rng.integers(5, 25)))
    out += [array(h), w0_vec, type(h) in (list, tuple, np.ndarray)]
    out.append(array(gd(np.cos, float(rng.uniform(-3.0, 3.0)), float(rng.uniform(0.05, 0.5)),
                        int(rng.integers(5, 20)))))
    out.append(array(gd(lambda w: 2 * (w - 3), 7.0, 0.1, 0)))                      # zero steps
    out.append(array(gd(lambda w: 2 * (w - 3), np.array([0.0, 1.0]), 1.1, 6)))   # divergent
    w0 = rng.uniform(-2.0, 2.0, size=2)                                  # a random divergent run
    out.append(array(gd(lambda w: 2 * (w - 3), w0, float(rng.uniform(1.02, 1.3)),
                        int(rng.integers(3, 12)))))
    return out


def _exponent(lr: float, e0: float, tol: float, L: float) -> float:
    """The real t with |1 - lr L|^t |e0| = tol (the count is its ceiling)."""
    return math.log(tol / abs(e0)) / math.log(abs(1 - lr * L))


def _random_steps_case(rng: np.random.Generator,
                       L: float | None = None) -> tuple[float, float, float, float]:
    """(lr, e0, tol, L) with |1 - lr L| in (0.02, 0.97) and |e0| > tol, drawn
    away from the integer boundaries where rounding could tip the count
    (a random L unless given)."""
    while True:
        L = float(rng.uniform(0.5, 10.0)) if L is None else L
        lr = float(rng.uniform(0.03, 1.97)) / L
        e0 = float(rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-2.0, 1.5))
        tol = float(10 ** rng.uniform(-9.0, -2.5))
        q = abs(1 - lr * L)
        if abs(e0) <= 10 * tol or not 0.02 < q < 0.97:
            continue
        x = _exponent(lr, e0, tol, L)
        if abs(x - round(x)) > 1e-6:
            return lr, e0, tol, L


def _steps(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["steps_to_tolerance"]
    rng = np.random.default_rng(seed)

    def kind(t: Any) -> Any:
        if type(t) is float and t == math.inf:
            return "inf"
        return int(t) if type(t) in INT_TYPES else type_name(t)

    cases = [(0.1, -2.5, 1e-4, 2.0), (0.45, 3.0, 1e-6, 2.0), (0.9, 1.0, 1e-3, 2.0),
             (0.3, 5.0, 1e-2, 4.0), (1.2, 1.0, 1e-3, 2.0), (0.0, 1.0, 1e-3, 2.0),
             (0.5, 2.0, 1e-3, 2.0), (0.2, 1e-5, 1e-3, 2.0), (0.25, 1.0, 1e-3, 8.0),
             (0.6, 1.0, 1e-3, 4.0), (0.0, 1.0, 1e-3, 3.0), (2.0, 1.0, 1e-3, 1.0),
             (0.2, 0.01, 0.01, 7.0), (0.125, -5.0, 1e-9, 8.0), (0.7, -3.0, 1e-5, 2.0)]
    for lr in np.linspace(0.03, 0.97, 48):            # the former hidden test's sweep
        lr = float(lr)
        x = _exponent(lr, -2.5, 1e-4, 2.0)
        if abs(x - round(x)) > 1e-6:                  # skip ties that round either way
            cases.append((lr, -2.5, 1e-4, 2.0))
    cases += [_random_steps_case(rng, 2.0) for _ in range(20)]     # converging: a count
    cases += [_random_steps_case(rng) for _ in range(20)]
    for _ in range(4):                                              # |1 - lr L| >= 1: inf
        L = float(rng.uniform(0.5, 10.0))
        cases.append((float(rng.uniform(2.05, 3.0)) / L,
                       float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 5.0)),
                       float(10 ** rng.uniform(-8.0, -3.0)), L))
    for _ in range(2):                                              # already within tol: 0
        L, tol = float(rng.uniform(0.5, 10.0)), float(10 ** rng.uniform(-6.0, -1.0))
        cases.append((float(rng.uniform(0.03, 1.97)) / L, tol * float(rng.uniform(-0.9, 0.9)),
                      tol, L))
    L = float(rng.uniform(0.5, 10.0))                               # lr = 1/L: 1
    cases.append((1 / L, float(rng.uniform(1.0, 5.0)), 1e-3, L))
    out = [kind(f(*c)) for c in cases]
    out.append(kind(f(0.1, 3.0, 1e-3)))                             # default L = 2.0
    lr, e0, tol, _ = _random_steps_case(rng, 2.0)
    out.append(kind(f(lr, e0, tol)))
    return out


PROBES = {
    "test_derivative": Probe(_derivative, rtol=1e-9, atol=1e-12),
    "test_gd_step": Probe(_gd_step, rtol=1e-12, atol=1e-12),
    "test_gradient_descent": Probe(_gradient_descent, rtol=1e-9, atol=1e-12),
    "test_steps_to_tolerance": Probe(_steps),
}
