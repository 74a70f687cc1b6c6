r"""Reference gradient descent: the answer key of lesson 1.

Gradient descent walks downhill by repeating

$$w_{t+1} = w_t - \eta\,\nabla f(w_t)$$

with a learning rate $\eta \ge 0$. On a quadratic with smoothness $L$ (the
largest curvature), the distance to the minimum is multiplied by
$1 - \eta L$ at every step, which names the regimes of :func:`lr_regime`.

>>> from course.functions import quadratic, quadratic_grad
>>> history = gradient_descent(quadratic_grad, w0=0.0, lr=0.1, n_steps=20)
>>> round(float(history[-1]), 4), round(float(quadratic(history[-1])), 6)
(2.9654, 0.001196)
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np
import torch

from course._validation import (
    require_callable,
    require_int,
    require_numeric,
    require_real,
)
from course.functions import Value

Regime = Literal["frozen", "monotone", "oscillating", "bouncing", "divergent"]


def gd_step(w: Value, grad: Value, lr: float) -> Value:
    r"""One gradient-descent step, $w_{t+1} = w_t - \eta\,\nabla f(w_t)$.

    Args:
        w: the current point $w_t$ (float, numpy array or torch tensor).
        grad: the gradient $\nabla f(w_t)$, same shape as ``w``.
        lr: the learning rate $\eta \ge 0$.

    Returns:
        The new point $w_{t+1}$ (a new object; ``w`` is not changed).

    >>> gd_step(5.0, 4.0, lr=0.25)
    4.0
    """
    w = require_numeric(w, "w")
    grad = require_numeric(grad, "grad")
    lr = require_real(lr, "lr", minimum=0.0)
    return w - lr * grad


def gradient_descent(f_grad: Callable[[Any], Any], w0: Value, lr: float,
                     n_steps: int) -> np.ndarray:
    r"""Run ``n_steps`` of gradient descent from ``w0`` and keep every iterate.

    Repeats $w_{t+1} = w_t - \eta\,\nabla f(w_t)$ in float64 numpy. A
    divergent run is not stopped: its iterates overflow to ``inf`` or ``nan``
    silently (no numpy warnings), so plots can show the blow-up.

    Args:
        f_grad: the gradient $\nabla f$; called with a float64 point (a numpy
            float for scalar ``w0``) and returning the same shape.
        w0: the starting point $w_0$ (number, array or tensor), finite.
        lr: the learning rate $\eta \ge 0$.
        n_steps: the number of steps, an int $\ge 0$.

    Returns:
        Array of shape ``(n_steps + 1,) + shape(w0)`` whose row ``t`` is
        $w_t$; row 0 is ``w0``.

    >>> gradient_descent(lambda w: 2 * (w - 3), 0.0, lr=0.25, n_steps=3).tolist()
    [0.0, 1.5, 2.25, 2.625]
    """
    f_grad = require_callable(f_grad, "f_grad")
    lr = require_real(lr, "lr", minimum=0.0)
    n_steps = require_int(n_steps, "n_steps")
    w0 = _as_float64(w0, "w0")
    if not np.all(np.isfinite(w0)):
        raise ValueError(f"w0 must be finite, got {w0}")
    history = np.empty((n_steps + 1,) + w0.shape)
    history[0] = w0
    with np.errstate(all="ignore"):
        for t in range(n_steps):
            grad = _grad_at(f_grad, history[t].copy())
            history[t + 1] = gd_step(history[t], grad, lr)
    return history


def loss_history(f: Callable[[Any], Any], history: Any) -> np.ndarray:
    """Evaluate ``f`` at every iterate: ``[f(w_0), f(w_1), ...]``.

    Args:
        f: the objective, returning one number per point.
        history: the iterates, one per row (as from :func:`gradient_descent`).

    Returns:
        float64 array of shape ``(len(history),)``; ``inf``/``nan`` iterates
        give ``inf``/``nan`` losses without warnings.

    >>> loss_history(lambda w: (w - 3) ** 2, [0.0, 1.5, 3.0]).tolist()
    [9.0, 2.25, 0.0]
    """
    f = require_callable(f, "f")
    history = _as_float64(history, "history")
    if history.ndim == 0:
        raise ValueError("history must have one row per step, got a single number")
    with np.errstate(all="ignore"):
        return np.array([float(f(w)) for w in history], dtype=np.float64)


def lr_regime(lr: float, L: float) -> Regime:
    r"""Name how gradient descent behaves on a quadratic with smoothness $L$.

    On $f(w) = \tfrac{L}{2} (w - w^*)^2$ one step gives
    $w_{t+1} - w^* = (1 - \eta L)(w_t - w^*)$, so the error is multiplied by
    $1 - \eta L$ every step. The name depends only on that factor:

    - ``"frozen"``: $\eta = 0$, factor $1$, nothing moves.
    - ``"monotone"``: $0 < \eta \le 1/L$, factor in $[0, 1)$: the error never
      changes sign and shrinks, a steady slide ($\eta = 1/L$ lands on the
      minimum in one step). A learning rate far below $1/L$ is *too small*:
      monotone, but slow; that is a matter of speed, not a regime of its own.
    - ``"oscillating"``: $1/L < \eta < 2/L$, factor in $(-1, 0)$: the error
      flips sign every step and shrinks.
    - ``"bouncing"``: $\eta = 2/L$, factor $-1$: the error flips sign and
      keeps its size, forever.
    - ``"divergent"``: $\eta > 2/L$, factor below $-1$: the error flips sign
      and grows.

    Args:
        lr: the learning rate $\eta \ge 0$.
        L: the smoothness $L > 0$ (for $(w - 3)^2$, $L = 2$).

    Returns:
        One of ``"frozen"``, ``"monotone"``, ``"oscillating"``,
        ``"bouncing"``, ``"divergent"``.

    >>> [lr_regime(lr, L=2.0) for lr in (0.0, 0.1, 0.9, 1.0, 1.1)]
    ['frozen', 'monotone', 'oscillating', 'bouncing', 'divergent']
    """
    lr = require_real(lr, "lr", minimum=0.0)
    L = require_real(L, "L", minimum=0.0, strict=True)
    if lr == 0:
        return "frozen"
    if lr * L <= 1:
        return "monotone"
    if lr * L < 2:
        return "oscillating"
    if lr * L == 2:
        return "bouncing"
    return "divergent"


def _as_float64(value: Any, name: str) -> np.ndarray:
    """``value`` (number, array or tensor) as a float64 numpy array."""
    value = require_numeric(value, name)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.float64)


def _grad_at(f_grad: Callable[[Any], Any], w: Any) -> np.ndarray:
    """Call ``f_grad(w)`` and check it returns numbers of the shape of ``w``."""
    grad = _as_float64(f_grad(w), "f_grad(w)")
    if grad.shape != np.shape(w):
        raise ValueError(f"f_grad returned shape {grad.shape} for a point of "
                         f"shape {np.shape(w)}")
    return grad
