"""Re-verification probes for 01-gradient-descent."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from course.verify import Probe

FORBIDDEN = ["course.gd.gd_step", "course.gd.gradient_descent",
             "course.functions.quadratic_grad"]


def _derivative(ns: dict[str, Any]) -> list[Any]:
    f = ns["derivative"]
    w = np.linspace(-5.0, 10.0, 31)
    return [np.asarray(f(w.copy()), dtype=float)] + [float(f(x)) for x in (-7.25, 3.0, 1e3)]


def _gd_step(ns: dict[str, Any]) -> list[Any]:
    step = ns["gd_step"]
    rng = np.random.default_rng(7)
    w, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    w0 = w.copy()
    out = np.asarray(step(w, g, 0.37), dtype=float)
    return [out, w, float(step(5.0, 4.0, 0.25)), float(step(-1.5, -2.0, 0.0))]


def _gradient_descent(ns: dict[str, Any]) -> list[Any]:
    gd = ns["gradient_descent"]
    h1 = np.asarray(gd(lambda w: 4.0 * (w + 1.0), 2.0, 0.1, 12), dtype=float)
    a = np.array([[3.0, 0.5], [0.5, 1.0]])
    w0 = np.array([1.0, -2.0])
    h2 = np.asarray(gd(lambda w: a @ w, w0, 0.2, 15), dtype=float)
    h3 = np.asarray(gd(lambda w: 2 * (w - 3), 0.0, 0.5, 0), dtype=float)
    return [h1, h2, h3, w0]


def _steps(ns: dict[str, Any]) -> list[Any]:
    f = ns["steps_to_tolerance"]
    out = []
    for lr, e0, tol, L in [(0.1, -2.5, 1e-4, 2.0), (0.45, 3.0, 1e-6, 2.0), (0.9, 1.0, 1e-3, 2.0),
                           (0.3, 5.0, 1e-2, 4.0), (1.2, 1.0, 1e-3, 2.0), (0.0, 1.0, 1e-3, 2.0),
                           (0.5, 2.0, 1e-3, 2.0), (0.2, 1e-5, 1e-3, 2.0)]:
        t = f(lr, e0, tol, L)
        out.append("inf" if t == math.inf else int(t))
    return out


PROBES = {
    "test_derivative": Probe(_derivative, rtol=1e-9, atol=1e-12),
    "test_gd_step": Probe(_gd_step, rtol=1e-12, atol=1e-12),
    "test_gradient_descent": Probe(_gradient_descent, rtol=1e-9, atol=1e-12),
    "test_steps_to_tolerance": Probe(_steps),
}
