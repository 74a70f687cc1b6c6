r"""Heavy-ball momentum in torch's convention and in the "velocity" convention.

**Torch's convention** (``torch.optim.SGD``) is the update rule stated in
:mod:`course.sgd` without weight decay and Nesterov, with $\gamma_t$ the
learning rate of step $t$, $\beta$ the momentum and $\tau$ the dampening
(torch's docs write $\mu$ for the momentum; the course keeps $\mu$ for the
smallest curvature of a quadratic):

$$b_1 = g_1, \qquad b_t = \beta\, b_{t-1} + (1 - \tau)\, g_t, \qquad
\theta_t = \theta_{t-1} - \gamma_t\, b_t .$$

The buffer $b$ starts as a *copy* of the first gradient, so dampening only
applies from the second step on, and the learning rate stays *outside* the
buffer. A buffer started at zeros, $b_1 = \beta \cdot 0 + (1 - \tau) g_1$,
gives the same numbers when $\tau = 0$ and a first step scaled by
$(1 - \tau)$ otherwise (``first_buffer="zeros"`` in
:func:`momentum_trajectory`).

**The velocity convention** (Sutskever et al. 2013, the form quoted in
torch's own docs note):

$$v_0 = 0, \qquad v_t = \beta\, v_{t-1} + \gamma_t\, g_t,
\qquad \theta_t = \theta_{t-1} - v_t .$$

(It is also written $v \leftarrow \beta v - \gamma g$, $\theta \leftarrow \theta + v$:
the same with $v$ negated.) With a constant learning rate $\gamma$ and
$\tau = 0$ one has $v_t = \gamma\, b_t$ for every $t$, so both produce the
same iterates (up to rounding). Once $\gamma_t$ changes, they differ: torch
applies the new rate to the whole accumulated buffer at once, the velocity
convention only to new gradients.

The step functions here use the very tensor operations of
``torch.optim.SGD`` (``mul``, ``add(..., alpha=...)``), so
:func:`momentum_trajectory` with ``convention="torch"`` equals
:func:`torch_sgd_trajectory` bit for bit.

>>> p, g = torch.tensor([1.0]), torch.tensor([0.5])
>>> p, b = torch_momentum_step(p, g, None, lr=0.1, momentum=0.9)
>>> p.item(), b.item()
(0.949999988079071, 0.5)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from course._validation import require_callable, require_int, require_real

__all__ = [
    "torch_momentum_step",
    "velocity_momentum_step",
    "lrs_with_one_drop",
    "momentum_trajectory",
    "torch_sgd_trajectory",
    "polyak_parameters",
]

Convention = Literal["torch", "velocity"]


def torch_momentum_step(p: Tensor, grad: Tensor, buf: Tensor | None, *,
                        lr: float, momentum: float,
                        dampening: float = 0.0) -> tuple[Tensor, Tensor]:
    r"""One heavy-ball step in torch's convention (the rule of :mod:`course.sgd`
    without weight decay and Nesterov), out of place.

    Args:
        p: the parameter $\theta$ (not modified).
        grad: its gradient $g$ (not modified, never aliased by the result).
        buf: the momentum buffer $b$ of the previous step, or ``None`` on
            this parameter's first step (not modified).
        lr: the learning rate $\gamma \ge 0$.
        momentum: the momentum $\beta \ge 0$.
        dampening: the dampening $\tau$, used from the second step on
            (default: 0.0).

    Returns:
        ``(new_p, new_buf)``, two new tensors.
    """
    _require_tensor(p, "p")
    _require_tensor(grad, "grad")
    if buf is None:
        new_buf = grad.detach().clone()      # first step: b = g, no dampening
    else:
        _require_tensor(buf, "buf")
        new_buf = buf.mul(momentum).add(grad, alpha=1 - dampening)
    return p.add(new_buf, alpha=-lr), new_buf


def velocity_momentum_step(p: Tensor, grad: Tensor, v: Tensor | None, *,
                           lr: float, momentum: float) -> tuple[Tensor, Tensor]:
    r"""One heavy-ball step in the velocity convention, out of place.

    $$v \leftarrow \beta\, v + \gamma\, g \quad (v = 0 \text{ before the first
    step}), \qquad \theta \leftarrow \theta - v .$$

    Args:
        p: the parameter $\theta$ (not modified).
        grad: its gradient $g$ (not modified).
        v: the velocity of the previous step, or ``None`` (meaning zeros)
            before the first step.
        lr: the learning rate $\gamma \ge 0$ of this step.
        momentum: the momentum $\beta \ge 0$.

    Returns:
        ``(new_p, new_v)``, two new tensors.
    """
    _require_tensor(p, "p")
    _require_tensor(grad, "grad")
    if v is None:
        v = torch.zeros_like(grad)
    new_v = v.mul(momentum).add(grad, alpha=lr)
    return p.sub(new_v), new_v


def lrs_with_one_drop(lr: float, n_steps: int, *, drop_at: int | None = None,
                      factor: float = 0.5) -> list[float]:
    r"""The list of per-step learning rates: $\gamma$ before step ``drop_at``,
    $\gamma\cdot$``factor`` from it on (one drop, as a list, not a scheduler).

    Step numbers start at 0, as in ``torch.optim.lr_scheduler.MultiStepLR``
    with ``milestones=[drop_at]`` and ``gamma=factor`` (the same floats).

    Args:
        lr: the initial learning rate $\gamma \ge 0$.
        n_steps: the number of steps.
        drop_at: the first step that uses the new rate (default: never).
        factor: the multiplier applied at ``drop_at`` (default: 0.5).

    Returns:
        A list of ``n_steps`` learning rates.

    >>> lrs_with_one_drop(0.1, 4, drop_at=2)
    [0.1, 0.1, 0.05, 0.05]
    """
    lr = require_real(lr, "lr", minimum=0.0)
    n_steps = require_int(n_steps, "n_steps")
    factor = require_real(factor, "factor", minimum=0.0)
    if drop_at is None:
        return [lr] * n_steps
    drop_at = require_int(drop_at, "drop_at")
    return [lr if t < drop_at else lr * factor for t in range(n_steps)]


def momentum_trajectory(f_grad: Callable[[Tensor], Any], w0: Any,
                        lr: float | Sequence[float], momentum: float,
                        n_steps: int, *, dampening: float = 0.0,
                        convention: Convention = "torch",
                        first_buffer: Literal["copy", "zeros"] = "copy") -> Tensor:
    r"""Run heavy-ball momentum from ``w0`` and keep every iterate.

    Args:
        f_grad: the gradient $\nabla f$, called with a tensor (the current
            point) and returning a tensor or array of the same shape.
        w0: the starting point (tensor, array or number); a tensor keeps its
            dtype, anything else becomes float64.
        lr: one learning rate, or a sequence of ``n_steps`` of them (a
            schedule, see :func:`lrs_with_one_drop`).
        momentum: the momentum $\beta \ge 0$.
        n_steps: the number of steps.
        dampening: the dampening $\tau$ (torch convention only, default 0.0).
        convention: ``"torch"`` ($\theta \leftarrow \theta - \gamma_t b_t$)
            or ``"velocity"`` ($\theta \leftarrow \theta - v_t$).
        first_buffer: ``"copy"`` (torch: $b_1 = g_1$) or ``"zeros"`` (the
            buffer starts at zeros, $b_1 = \beta \cdot 0 + (1 - \tau) g_1$;
            torch convention only). The two give the same numbers when
            $\tau = 0$ (default: ``"copy"``).

    Returns:
        Tensor of shape ``(n_steps + 1,) + w0.shape``; row 0 is ``w0``.
    """
    f_grad = require_callable(f_grad, "f_grad")
    n_steps = require_int(n_steps, "n_steps")
    lrs = _lrs(lr, n_steps)
    momentum = require_real(momentum, "momentum", minimum=0.0)
    dampening = require_real(dampening, "dampening")
    if convention not in ("torch", "velocity"):
        raise ValueError(f"convention must be 'torch' or 'velocity', got {convention!r}")
    if convention == "velocity" and dampening != 0:
        raise ValueError("the velocity convention has no dampening")
    if first_buffer not in ("copy", "zeros"):
        raise ValueError(f"first_buffer must be 'copy' or 'zeros', got {first_buffer!r}")
    if convention == "velocity" and first_buffer != "copy":
        raise ValueError("first_buffer applies to the torch convention only")
    p = _as_tensor(w0, "w0")
    history = [p.clone()]
    buf: Tensor | None = torch.zeros_like(p) if first_buffer == "zeros" else None
    for t in range(n_steps):
        grad = _grad_at(f_grad, p)
        if convention == "torch":
            p, buf = torch_momentum_step(p, grad, buf, lr=lrs[t], momentum=momentum,
                                         dampening=dampening)
        else:
            p, buf = velocity_momentum_step(p, grad, buf, lr=lrs[t], momentum=momentum)
        history.append(p.clone())
    return torch.stack(history)


def torch_sgd_trajectory(f_grad: Callable[[Tensor], Any], w0: Any,
                         lr: float | Sequence[float], momentum: float,
                         n_steps: int, *, dampening: float = 0.0) -> Tensor:
    r"""The same run as :func:`momentum_trajectory`, done by ``torch.optim.SGD``.

    Each step sets ``p.grad = f_grad(p)`` and calls ``opt.step()``; for a
    schedule the learning rate of step ``t`` is written into
    ``opt.param_groups[0]["lr"]`` first (what an lr scheduler does).

    Args:
        f_grad: the gradient $\nabla f$ (tensor in, tensor or array out).
        w0: the starting point; a tensor keeps its dtype, others become float64.
        lr: one learning rate or a sequence of ``n_steps`` of them.
        momentum: the momentum $\beta \ge 0$.
        n_steps: the number of steps.
        dampening: the dampening $\tau$ (default: 0.0).

    Returns:
        Tensor of shape ``(n_steps + 1,) + w0.shape``; row 0 is ``w0``.
    """
    f_grad = require_callable(f_grad, "f_grad")
    n_steps = require_int(n_steps, "n_steps")
    lrs = _lrs(lr, n_steps)
    p = _as_tensor(w0, "w0").clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=lrs[0] if lrs else 0.0, momentum=momentum,
                          dampening=dampening)
    history = [p.detach().clone()]
    for t in range(n_steps):
        opt.param_groups[0]["lr"] = lrs[t]
        p.grad = _grad_at(f_grad, p.detach().clone())
        opt.step()
        history.append(p.detach().clone())
    return torch.stack(history)


def polyak_parameters(L: float, mu: float) -> tuple[float, float]:
    r"""Polyak's best heavy-ball parameters for a quadratic with curvatures in $[\mu, L]$.

    $$\gamma^* = \frac{4}{(\sqrt{L} + \sqrt{\mu})^2}, \qquad
    \beta^* = \Bigl(\frac{\sqrt{\kappa} - 1}{\sqrt{\kappa} + 1}\Bigr)^2,
    \qquad \kappa = L / \mu .$$

    Every eigen-direction then contracts at the asymptotic rate
    $\sqrt{\beta^*} = \tfrac{\sqrt\kappa - 1}{\sqrt\kappa + 1}$ per step instead of
    gradient descent's $\tfrac{\kappa - 1}{\kappa + 1}$ (at its best constant rate);
    at the two extreme curvatures the root is double, so the error there is
    $(1 + (1 - r)\,t)\, r^t$ times the initial one ($r = \pm\sqrt{\beta^*}$,
    starting from rest, $b_1 = g_1$), which exceeds 1 during the first steps
    at the steepest curvature ($r < 0$) once $\kappa$ is large enough.

    Args:
        L: the largest curvature $L > 0$.
        mu: the smallest curvature $0 < \mu \le L$.

    Returns:
        ``(lr, momentum)``.

    >>> polyak_parameters(25.0, 1.0)
    (0.1111111111111111, 0.4444444444444444)
    """
    L = require_real(L, "L", minimum=0.0, strict=True)
    mu = require_real(mu, "mu", minimum=0.0, strict=True)
    if mu > L:
        raise ValueError(f"mu must be <= L, got mu={mu}, L={L}")
    root_kappa = math.sqrt(L / mu)
    return 4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2, ((root_kappa - 1) / (root_kappa + 1)) ** 2


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _require_tensor(x: object, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def _as_tensor(w0: Any, name: str) -> Tensor:
    """``w0`` as a detached tensor (float64 unless it already is a float tensor)."""
    if isinstance(w0, Tensor):
        t = w0.detach()
        return t.clone() if t.is_floating_point() else t.to(torch.float64)
    try:
        return torch.tensor(np.asarray(w0, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, got {type(w0).__name__}") from None


def _lrs(lr: float | Sequence[float], n_steps: int) -> list[float]:
    """One learning rate per step, validated."""
    if isinstance(lr, (list, tuple, np.ndarray)):
        lrs = [require_real(float(x), "lr", minimum=0.0) for x in lr]
        if len(lrs) != n_steps:
            raise ValueError(f"got {len(lrs)} learning rates for {n_steps} steps")
        return lrs
    return [require_real(lr, "lr", minimum=0.0)] * n_steps


def _grad_at(f_grad: Callable[[Tensor], Any], p: Tensor) -> Tensor:
    """``f_grad(p)`` as a tensor of ``p``'s dtype and shape."""
    grad = torch.as_tensor(f_grad(p), dtype=p.dtype)
    if grad.shape != p.shape:
        raise ValueError(f"f_grad returned shape {tuple(grad.shape)} for a point "
                         f"of shape {tuple(p.shape)}")
    return grad
