"""Re-verification probes for 01-gradient-descent.

Values are compared within float64 rounding (learners may write ``2 * w - 6``
instead of ``2 * (w - 3)``); step counts exactly. Return types are part of
the result where the hidden tests check them. The course's gradient descent
and the quadratic's gradient are disabled while the learner's code runs.
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


def _derivative(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["derivative"]
    out: list[Any] = []
    w = np.linspace(-5.0, 10.0, 31)
    out.append(_ndarray(f(w.copy()), (31,)))
    m = np.array([[0.5, 4.0], [3.0, -1.0]])
    out.append(_ndarray(f(m.copy()), (2, 2)))
    out.append(_ndarray(f(np.arange(-2, 5)), (7,)))        # integer array
    out += [real(f(x), _SCALAR) for x in (-7.25, 3.0, 1e3, 2.999, 0.0, -1e-9)]
    return out


def _gd_step(ns: dict[str, Any], seed: int) -> list[Any]:
    step = ns["gd_step"]
    rng = np.random.default_rng(7)
    out: list[Any] = []
    for shape, lr in (((4, 3), 0.37), ((6,), 1.5), ((2, 2, 2), 0.0)):
        w, g = rng.standard_normal(shape), rng.standard_normal(shape)
        new = step(w, g, lr)
        out += [_ndarray(new, shape), w, g]                 # w and g must be unchanged
    for w, g, lr in ((5.0, 4.0, 0.25), (-1.5, -2.0, 0.0), (2.5, -1.0, 0.5), (1e8, 3.0, 1e-3)):
        out.append(real(step(w, g, lr)))
    return out


def _gradient_descent(ns: dict[str, Any], seed: int) -> list[Any]:
    gd = ns["gradient_descent"]
    out: list[Any] = []
    out.append(array(gd(lambda w: 4.0 * (w + 1.0), 2.0, 0.1, 12)))
    a = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, -0.2], [0.0, -0.2, 2.0]])
    w0 = np.array([1.0, -2.0, 0.5])
    h = gd(lambda w: a @ w, w0, 0.2, 15)
    out += [array(h), w0, type(h) in (list, tuple, np.ndarray)]
    out.append(array(gd(np.cos, 0.5, 0.3, 12)))
    out.append(array(gd(lambda w: 2 * (w - 3), 7.0, 0.1, 0)))
    out.append(array(gd(lambda w: 2 * (w - 3), np.array([0.0, 1.0]), 1.1, 6)))   # divergent
    return out


def _steps(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["steps_to_tolerance"]

    def kind(t: Any) -> Any:
        if type(t) is float and t == math.inf:
            return "inf"
        return int(t) if type(t) in INT_TYPES else type_name(t)

    cases = [(0.1, -2.5, 1e-4, 2.0), (0.45, 3.0, 1e-6, 2.0), (0.9, 1.0, 1e-3, 2.0),
             (0.3, 5.0, 1e-2, 4.0), (1.2, 1.0, 1e-3, 2.0), (0.0, 1.0, 1e-3, 2.0),
             (0.5, 2.0, 1e-3, 2.0), (0.2, 1e-5, 1e-3, 2.0), (0.25, 1.0, 1e-3, 8.0),
             (0.6, 1.0, 1e-3, 4.0), (0.0, 1.0, 1e-3, 3.0), (2.0, 1.0, 1e-3, 1.0),
             (0.2, 0.01, 0.01, 7.0), (0.125, -5.0, 1e-9, 8.0), (0.7, -3.0, 1e-5, 2.0)]
    for lr in np.linspace(0.03, 0.97, 48):            # the hidden test's sweep
        lr = float(lr)
        x = math.log(1e-4 / 2.5) / math.log(abs(1 - 2 * lr))
        if abs(x - round(x)) > 1e-6:                  # skip ties that round either way
            cases.append((lr, -2.5, 1e-4, 2.0))
    out = [kind(f(*c)) for c in cases]
    out.append(kind(f(0.1, 3.0, 1e-3)))              # default L = 2.0
    return out


PROBES = {
    "test_derivative": Probe(_derivative, rtol=1e-9, atol=1e-12),
    "test_gd_step": Probe(_gd_step, rtol=1e-12, atol=1e-12),
    "test_gradient_descent": Probe(_gradient_descent, rtol=1e-9, atol=1e-12),
    "test_steps_to_tolerance": Probe(_steps),
}
