r"""Objectives for the lessons, with their hand-derived gradients.

Every function here accepts a Python float, a numpy array or a torch tensor and
uses only ``-``, ``*``, ``**`` and ``@``. A tensor that requires grad therefore
stays a tensor, and ``torch.autograd`` can differentiate straight through
``f``; the tests compare each ``*_grad`` with autograd.

- :func:`quadratic` -- the parabola of lesson 1, $f(w) = s\,(w - c)^2$.
- :class:`Quadratic` and :func:`make_quadratic` -- the n-D bowl
  $f(x) = \tfrac12 (x - x^*)^\top A (x - x^*)$ with a chosen condition number
  (lessons 1 and 4).
- :func:`rosenbrock` -- the curved valley of lesson 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Union

import numpy as np
import torch

from course._validation import require_int, require_numeric, require_real

#: What the objectives accept and return: a float, a numpy array or a tensor.
Value = Union[float, np.ndarray, torch.Tensor]


# --------------------------------------------------------------------------
# 1-D quadratic (lesson 1)
# --------------------------------------------------------------------------


def quadratic(w: Value, center: float = 3.0, scale: float = 1.0) -> Value:
    r"""The parabola $f(w) = s\,(w - c)^2$, smallest at $w = c$.

    Its smoothness is $L = f''(w) = 2s$, so gradient descent diverges for a
    learning rate $\eta > 2/L = 1/s$.

    Args:
        w: the point(s), elementwise: a float, numpy array or torch tensor.
        center: the minimiser $c$ (default: 3.0).
        scale: the curvature factor $s > 0$ (default: 1.0).

    Returns:
        $f(w)$, of the same kind as ``w``.

    >>> quadratic(5.0)
    4.0
    """
    w = require_numeric(w, "w")
    center = require_real(center, "center")
    scale = require_real(scale, "scale", minimum=0.0, strict=True)
    return scale * (w - center) ** 2


def quadratic_grad(w: Value, center: float = 3.0, scale: float = 1.0) -> Value:
    r"""The derivative $f'(w) = 2s\,(w - c)$ of :func:`quadratic`.

    Args:
        w: the point(s), elementwise: a float, numpy array or torch tensor.
        center: the minimiser $c$ (default: 3.0).
        scale: the curvature factor $s > 0$ (default: 1.0).

    Returns:
        $f'(w)$, of the same kind as ``w``.

    >>> quadratic_grad(5.0)
    4.0
    """
    w = require_numeric(w, "w")
    center = require_real(center, "center")
    scale = require_real(scale, "scale", minimum=0.0, strict=True)
    return 2 * scale * (w - center)


# --------------------------------------------------------------------------
# n-D quadratic with a chosen condition number (lessons 1 and 4)
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Quadratic:
    r"""The n-D quadratic bowl $f(x) = \tfrac12 (x - x^*)^\top A (x - x^*)$.

    The gradient is $\nabla f(x) = A (x - x^*)$ and the minimum value is 0, at
    $x^*$. With $\mu$ and $L$ the smallest and largest eigenvalues of $A$,
    gradient descent converges for $0 < \eta < 2/L$, fastest at
    $\eta = 2/(L + \mu)$, and the condition number $\kappa = L/\mu$ sets how
    much it zig-zags.

    A call takes points of shape ``(..., n)`` -- one point, or a whole grid
    for a contour plot -- as a numpy array or a torch tensor. Tensors are
    computed in their own dtype and device, so autograd works through them.

    Attributes:
        A: the symmetric positive definite ``(n, n)`` matrix (float64,
            read-only).
        minimizer: the minimiser $x^*$, shape ``(n,)`` (float64, read-only).

    >>> f = Quadratic(A=np.diag([1.0, 10.0]), minimizer=np.zeros(2))
    >>> float(f(np.array([1.0, 1.0]))), f.grad(np.array([1.0, 1.0])).tolist()
    (5.5, [1.0, 10.0])
    """

    A: np.ndarray
    minimizer: np.ndarray

    def __post_init__(self) -> None:
        A = _spd_matrix(self.A)
        minimizer = _frozen_array(self.minimizer, "minimizer")
        if minimizer.shape != (A.shape[0],):
            raise ValueError(f"minimizer must have shape ({A.shape[0]},), "
                             f"got {minimizer.shape}")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "minimizer", minimizer)

    def __call__(self, x: Value) -> Value:
        r"""$f(x) = \tfrac12 (x - x^*)^\top A (x - x^*)$ over the last axis."""
        d, A = self._offset_and_matrix(x)
        return 0.5 * ((d @ A) * d).sum(-1)

    def grad(self, x: Value) -> Value:
        r"""$\nabla f(x) = A (x - x^*)$, same shape as ``x``."""
        d, A = self._offset_and_matrix(x)
        return d @ A  # A is symmetric, so (A d)^T = d^T A

    @property
    def n(self) -> int:
        """The dimension $n$."""
        return int(self.A.shape[0])

    @cached_property
    def eigenvalues(self) -> np.ndarray:
        """The eigenvalues of $A$, in increasing order."""
        return np.linalg.eigvalsh(self.A)

    @property
    def L(self) -> float:
        r"""The smoothness $L = \lambda_{\max}(A)$."""
        return float(self.eigenvalues[-1])

    @property
    def mu(self) -> float:
        r"""The strong convexity $\mu = \lambda_{\min}(A)$."""
        return float(self.eigenvalues[0])

    @property
    def condition_number(self) -> float:
        r"""The condition number $\kappa = L / \mu$."""
        return self.L / self.mu

    @property
    def optimal_lr(self) -> float:
        r"""The best constant learning rate for gradient descent, $2/(L + \mu)$."""
        return 2.0 / (self.L + self.mu)

    def _offset_and_matrix(self, x: Value) -> tuple[Value, Value]:
        """Return ``x - minimizer`` and ``A``, both in the kind of ``x``."""
        x = require_numeric(x, "x")
        shape = tuple(np.shape(x))
        if not shape or shape[-1] != self.n:
            raise ValueError(f"x must have shape (..., {self.n}), got {shape}")
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point():
                x = x.to(torch.get_default_dtype())
            # torch.tensor copies: our arrays are read-only, tensors can't be
            A = torch.tensor(self.A, dtype=x.dtype, device=x.device)
            x_star = torch.tensor(self.minimizer, dtype=x.dtype, device=x.device)
            return x - x_star, A
        return x - self.minimizer, self.A


def make_quadratic(n: int = 2, condition_number: float = 10.0, *, seed: int = 0,
                   rotate: bool = True) -> Quadratic:
    r"""Build an n-D :class:`Quadratic` with condition number $\kappa$.

    The eigenvalues of $A$ are log-spaced from 1 to $\kappa$ (for $n = 2$ just
    1 and $\kappa$), so $\mu = 1$ and $L = \kappa$. With ``rotate=True`` the
    axes are turned by a random orthogonal matrix $Q$ drawn from ``seed``,
    $A = Q\,\mathrm{diag}(\lambda)\,Q^\top$; with ``rotate=False`` $A$ is
    diagonal, like the classic picture of $0.1 x_1^2 + 2 x_2^2$. The
    minimiser is the origin.

    Args:
        n: the dimension, at least 1 (default: 2).
        condition_number: $\kappa = L/\mu \ge 1$; must be 1 when ``n == 1``
            (default: 10.0).
        seed: seed of the rotation (default: 0).
        rotate: whether to rotate the axes (default: True).

    Returns:
        The quadratic.

    >>> f = make_quadratic(2, 10.0, rotate=False)
    >>> f.A.tolist(), f.L, f.mu
    ([[1.0, 0.0], [0.0, 10.0]], 10.0, 1.0)
    """
    n = require_int(n, "n", minimum=1)
    kappa = require_real(condition_number, "condition_number", minimum=1.0)
    seed = require_int(seed, "seed")
    if not isinstance(rotate, bool):
        raise TypeError(f"rotate must be True or False, got {type(rotate).__name__}")
    if n == 1 and kappa != 1.0:
        raise ValueError(f"a 1-D quadratic has condition number 1, got {kappa}")
    A = np.diag(np.geomspace(1.0, kappa, n))
    if rotate:
        Q = _random_orthogonal(n, seed)
        A = Q @ A @ Q.T
        A = (A + A.T) / 2  # remove rounding asymmetry
    return Quadratic(A=A, minimizer=np.zeros(n))


def _random_orthogonal(n: int, seed: int) -> np.ndarray:
    """A uniformly random orthogonal ``(n, n)`` matrix drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))  # sign fix makes Q uniform (Haar)


def _frozen_array(value: object, name: str) -> np.ndarray:
    """A read-only float64 copy of ``value``."""
    value = require_numeric(value, name)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.array(value, dtype=np.float64)
    array.setflags(write=False)
    return array


def _spd_matrix(value: object) -> np.ndarray:
    """Check that ``value`` is a symmetric positive definite matrix."""
    A = _frozen_array(value, "A")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a square (n, n) matrix, got shape {A.shape}")
    if not np.allclose(A, A.T):
        raise ValueError("A must be symmetric")
    if not np.all(np.isfinite(A)) or np.linalg.eigvalsh(A)[0] <= 0:
        raise ValueError("A must be finite and positive definite")
    return A


# --------------------------------------------------------------------------
# Rosenbrock (lesson 4)
# --------------------------------------------------------------------------


def rosenbrock(xy: Value, a: float = 1.0, b: float = 100.0) -> Value:
    r"""The Rosenbrock valley $f(x, y) = (a - x)^2 + b\,(y - x^2)^2$.

    The minimum is 0, at $(a, a^2)$, at the end of a long curved valley.

    Args:
        xy: points of shape ``(..., 2)`` holding $(x, y)$ in the last axis:
            one point or a grid (numpy array or torch tensor).
        a: the $x$-coordinate of the minimum (default: 1.0).
        b: the steepness of the valley walls, $b \ge 0$ (default: 100.0).

    Returns:
        $f$ at each point, shape ``xy.shape[:-1]``.

    >>> float(rosenbrock(np.array([1.0, 1.0])))
    0.0
    """
    x, y = _split_xy(xy)
    a = require_real(a, "a")
    b = require_real(b, "b", minimum=0.0)
    return (a - x) ** 2 + b * (y - x**2) ** 2


def rosenbrock_grad(xy: Value, a: float = 1.0, b: float = 100.0) -> Value:
    r"""The gradient of :func:`rosenbrock`.

    $$\nabla f(x, y) = \bigl(-2(a - x) - 4 b x (y - x^2),\; 2 b (y - x^2)\bigr).$$

    Args:
        xy: points of shape ``(..., 2)`` (numpy array or torch tensor).
        a: the $x$-coordinate of the minimum (default: 1.0).
        b: the steepness of the valley walls, $b \ge 0$ (default: 100.0).

    Returns:
        The gradient, same shape as ``xy``.

    >>> rosenbrock_grad(np.array([0.0, 0.0])).tolist()
    [-2.0, 0.0]
    """
    x, y = _split_xy(xy)
    a = require_real(a, "a")
    b = require_real(b, "b", minimum=0.0)
    dx = -2 * (a - x) - 4 * b * x * (y - x**2)
    dy = 2 * b * (y - x**2)
    if isinstance(dx, torch.Tensor):
        return torch.stack([dx, dy], dim=-1)
    return np.stack([dx, dy], axis=-1)


def _split_xy(xy: Value) -> tuple[Value, Value]:
    """Split points of shape ``(..., 2)`` into their $x$ and $y$ parts."""
    xy = require_numeric(xy, "xy")
    shape = tuple(np.shape(xy))
    if not shape or shape[-1] != 2:
        raise ValueError(f"xy must have shape (..., 2), got {shape}")
    return xy[..., 0], xy[..., 1]
