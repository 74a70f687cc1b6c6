r"""Finite-difference gradient checks: is a gradient right? (lesson 2).

A derivative is a limit, so it can be approximated by a small but finite
step $\varepsilon$. The *forward* difference and the *central* difference

$$\frac{f(w + \varepsilon) - f(w)}{\varepsilon} = f'(w) + O(\varepsilon),
\qquad
\frac{f(w + \varepsilon) - f(w - \varepsilon)}{2\varepsilon}
= f'(w) + \tfrac{\varepsilon^2}{6} f'''(w) + O(\varepsilon^4)$$

differ in accuracy: the central one's truncation error is $O(\varepsilon^2)$,
the forward one's $O(\varepsilon)$. Rounding adds an error of about
$u\,|f(w)|/\varepsilon$ ($u \approx 1.1 \times 10^{-16}$ in float64), so
$\varepsilon$ must not be too small either; $\varepsilon = 10^{-6}$ is a good
default for the central difference in float64.

- :func:`central_difference` and :func:`forward_difference` -- the numerical
  derivative of a function of one number, or the numerical gradient of a
  function of a tensor, coordinate by coordinate.
- :func:`autograd_gradient` -- the gradient that ``torch.autograd`` computes.
- :func:`check_gradient` -- compare the two; the answer is a
  :class:`GradCheck` with the largest absolute and relative errors.

(``torch.autograd.gradcheck`` does the same for torch functions; these helpers
are small enough to read and also accept plain Python functions.)

>>> round(central_difference(lambda w: w ** 3, 1.0, eps=1e-2), 6)
3.0001
>>> check_gradient(lambda x: (x ** 2).sum(), [1.0, -2.0]).ok
True
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from course._validation import require_callable, require_real

#: The default step of the central difference (float64).
DEFAULT_EPS = 1e-6


class GradCheck(NamedTuple):
    r"""The result of :func:`check_gradient`.

    Attributes:
        analytic: the gradient being checked (float64 numpy array).
        numeric: the central-difference gradient (float64 numpy array).
        max_abs_error: $\max_i |g_i - \hat g_i|$.
        max_rel_error: $\max_i |g_i - \hat g_i| / \max(|g_i|, |\hat g_i|, 1)$.
        ok: whether every coordinate agrees within the tolerances.
    """

    analytic: np.ndarray
    numeric: np.ndarray
    max_abs_error: float
    max_rel_error: float
    ok: bool


def central_difference(f: Callable[[Any], Any], w: Any,
                       eps: float = DEFAULT_EPS) -> Any:
    r"""Central difference $(f(w + \varepsilon) - f(w - \varepsilon)) / 2\varepsilon$.

    For a Python number ``w`` the formula is evaluated with Python floats
    exactly as written, and the result is a float. For an array or tensor
    ``w`` it is applied to each coordinate $i$ (with $w \pm \varepsilon e_i$,
    in float64 tensors under ``torch.no_grad()``), giving the numerical
    gradient as a float64 numpy array of ``w``'s shape.

    Args:
        f: a function of one number, or of a float64 tensor shaped like
            ``w``, returning a scalar (number or one-element tensor).
        w: the point (number, list, numpy array or tensor).
        eps: the step $\varepsilon > 0$ (default: 1e-6).

    Returns:
        The numerical derivative (float) or gradient (numpy array).

    >>> central_difference(lambda w: w ** 2, 3.0)  # doctest: +ELLIPSIS
    6.000000000...
    """
    return _difference(f, w, eps, central=True)


def forward_difference(f: Callable[[Any], Any], w: Any,
                       eps: float = DEFAULT_EPS) -> Any:
    r"""The forward difference $(f(w + \varepsilon) - f(w)) / \varepsilon$.

    Same conventions as :func:`central_difference`; its truncation error is
    $\tfrac{\varepsilon}{2} f''(w) + O(\varepsilon^2)$, one order worse.

    Args:
        f: a function of one number, or of a float64 tensor shaped like
            ``w``, returning a scalar.
        w: the point (number, list, numpy array or tensor).
        eps: the step $\varepsilon > 0$ (default: 1e-6).

    Returns:
        The numerical derivative (float) or gradient (numpy array).

    >>> round(forward_difference(lambda w: w ** 3, 1.0, eps=1e-2), 6)
    3.0301
    """
    return _difference(f, w, eps, central=False)


def autograd_gradient(f: Callable[[torch.Tensor], Any], w: Any) -> Any:
    r"""The gradient $\nabla f(w)$ computed by ``torch.autograd`` in float64.

    Args:
        f: a function of a float64 tensor shaped like ``w`` that returns a
            one-element tensor built with differentiable torch operations.
        w: the point (number, list, numpy array or tensor).

    Returns:
        A float for a Python-number ``w``, else a float64 numpy array of
        ``w``'s shape.

    >>> autograd_gradient(lambda w: (w - 3) ** 2, 5.0)
    4.0
    """
    f = require_callable(f, "f")
    scalar = _is_number(w)
    x = _as_float64(w).clone().requires_grad_(True)
    out = f(x)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise TypeError("f must return a one-element tensor built from its "
                        f"argument, got {type(out).__name__}")
    if out.grad_fn is None:
        raise ValueError("f's result does not depend on its argument through "
                         "differentiable torch operations (it has no grad_fn)")
    (grad,) = torch.autograd.grad(out.reshape(()), x, allow_unused=True)
    grad = torch.zeros_like(x) if grad is None else grad
    return float(grad) if scalar else grad.detach().numpy()


def check_gradient(f: Callable[[torch.Tensor], Any], w: Any,
                   grad: Any = None, *, eps: float = DEFAULT_EPS,
                   rtol: float = 1e-5, atol: float = 1e-7) -> GradCheck:
    r"""Compare a gradient with the central difference of ``f`` at ``w``.

    Coordinate $i$ passes when
    $|g_i - \hat g_i| \le \mathrm{atol} + \mathrm{rtol}\,|\hat g_i|$,
    where $\hat g$ is :func:`central_difference` (float64).

    Args:
        f: a function of a float64 tensor shaped like ``w``, returning a
            scalar.
        w: the point (number, list, numpy array or tensor).
        grad: the gradient to check (default: :func:`autograd_gradient`
            of ``f``).
        eps: the finite-difference step (default: 1e-6).
        rtol: relative tolerance (default: 1e-5).
        atol: absolute tolerance (default: 1e-7).

    Returns:
        A :class:`GradCheck`.

    >>> result = check_gradient(lambda x: (x ** 2).sum(), [1.0, 2.0], grad=[2.0, 5.0])
    >>> result.ok, round(result.max_abs_error, 6)
    (False, 1.0)
    """
    rtol = require_real(rtol, "rtol", minimum=0.0)
    atol = require_real(atol, "atol", minimum=0.0)
    analytic = np.asarray(autograd_gradient(f, w) if grad is None
                          else _as_float64(grad).numpy(), dtype=np.float64)
    numeric = np.asarray(central_difference(f, w, eps), dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"grad has shape {analytic.shape} but w has shape "
                         f"{numeric.shape}")
    diff = np.abs(analytic - numeric)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1.0)
    ok = bool(np.all(diff <= atol + rtol * np.abs(numeric)))
    return GradCheck(analytic, numeric, float(diff.max(initial=0.0)),
                     float((diff / scale).max(initial=0.0)), ok)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _is_number(w: Any) -> bool:
    """Whether ``w`` is a plain real number (not bool, not array/tensor)."""
    return (isinstance(w, (int, float, np.integer, np.floating))
            and not isinstance(w, bool))


def _as_float64(w: Any) -> torch.Tensor:
    """``w`` as a float64 tensor, with a clear error for non-numeric input."""
    if isinstance(w, torch.Tensor):
        return w.detach().to(torch.float64)
    try:
        array = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"w must be a number, an array or a tensor, got "
                        f"{type(w).__name__}") from None
    return torch.from_numpy(array.copy())


def _scalar(value: Any) -> float:
    """The float inside a number or a one-element tensor/array."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"f must return a scalar, got a tensor of shape "
                             f"{tuple(value.shape)}")
        return float(value.detach())
    return float(value)


def _difference(f: Callable[[Any], Any], w: Any, eps: float,
                central: bool) -> Any:
    """Forward or central difference of ``f`` at ``w`` (number or tensor)."""
    f = require_callable(f, "f")
    eps = require_real(eps, "eps", minimum=0.0, strict=True)
    if _is_number(w):
        w = float(w)
        low = _scalar(f(w - eps)) if central else _scalar(f(w))
        return (_scalar(f(w + eps)) - low) / ((2 * eps) if central else eps)
    x = _as_float64(w)
    grad = torch.zeros_like(x)
    with torch.no_grad():
        base = None if central else _scalar(f(x.clone()))
        for i in range(x.numel()):
            step = torch.zeros_like(x)
            step.view(-1)[i] = eps
            high = _scalar(f(x + step))
            low = _scalar(f(x - step)) if central else base
            grad.view(-1)[i] = (high - low) / ((2 * eps) if central else eps)
    return grad.numpy()
