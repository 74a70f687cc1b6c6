r"""Torch's SGD update rule, written out for one tensor (and for a list of them).

With :math:`\gamma` the learning rate, :math:`\beta` momentum (torch's
documentation writes :math:`\mu`), :math:`\tau` dampening, :math:`\lambda`
weight decay and :math:`s = -1` if ``maximize`` else :math:`+1`, one step for
a parameter :math:`\theta` with gradient :math:`\nabla` is

.. math::

    g &\leftarrow s\,\nabla + \lambda\,\theta \\
    b &\leftarrow g \quad \text{on this parameter's first step, else}
        \quad b \leftarrow \beta\, b + (1 - \tau)\, g \\
    d &\leftarrow g + \beta\, b \ \text{(nesterov)} \quad\text{else}\quad d \leftarrow b \\
    \theta &\leftarrow \theta - \gamma\, d

The momentum buffer :math:`b` starts as a *copy of the gradient*, not as zeros,
so dampening is skipped on the first step. Every line uses the same tensor
operation as ``torch.optim.SGD`` (``add(..., alpha=...)`` rounds once, with a
fused multiply-add on AVX2/AVX-512 CPUs), which is what makes the result equal
to torch's bit for bit rather than merely close.
"""

from __future__ import annotations

import itertools
import math
from numbers import Real
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["option_grid", "sgd", "sgd_update", "sgd_update_foreach"]

Scalar = float | Tensor


def sgd_update(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: Scalar,
    momentum: float = 0,
    dampening: float = 0,
    weight_decay: Scalar = 0,
    nesterov: bool = False,
    maximize: bool = False,
) -> Tensor | None:
    r"""Apply one SGD step to ``param`` in place, exactly as ``torch.optim.SGD``.

    Args:
        param: the parameter :math:`\theta`, updated in place.
        grad: its gradient :math:`\nabla` (never modified).
        momentum_buffer: the buffer :math:`b` from the previous step, or
            ``None`` on this parameter's first step.
        lr: learning rate :math:`\gamma` (float or 1-element tensor).
        momentum: momentum factor :math:`\beta` (default: 0).
        dampening: dampening :math:`\tau`, used from the second step on (default: 0).
        weight_decay: L2 penalty :math:`\lambda`, folded into the gradient (default: 0).
        nesterov: use Nesterov momentum :math:`d = g + \beta b` (default: False).
        maximize: ascend instead of descend by negating the gradient (default: False).

    Returns:
        The new momentum buffer (updated in place, or a fresh copy of the
        gradient on the first step), or ``None`` when ``momentum == 0``.

    Example:
        >>> p, g = torch.tensor([1.0]), torch.tensor([0.5])
        >>> buf = sgd_update(p, g, None, lr=0.1, momentum=0.9)
        >>> p, buf
        (tensor([0.9500]), tensor([0.5000]))
    """
    _check_tensors(param, grad, momentum_buffer)
    _check_hyper(lr=lr, momentum=momentum, dampening=dampening,
                 weight_decay=weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    return update_one(param, grad, momentum_buffer, lr=_squeeze(lr),
                      momentum=momentum, dampening=dampening,
                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)


def update_one(param: Tensor, grad: Tensor, buf: Tensor | None, *, lr: Scalar,
               momentum: float, dampening: float, weight_decay: Scalar,
               nesterov: bool, maximize: bool) -> Tensor | None:
    """:func:`sgd_update` without argument checks."""
    bufs = [buf]
    _single_tensor_sgd([param], [grad], bufs, lr=lr, momentum=momentum, dampening=dampening,
                       weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
    return bufs[0]


def sgd(params: list[Tensor], d_p_list: list[Tensor],
        momentum_buffer_list: list[Tensor | None], has_sparse_grad: bool = False,
        foreach: bool | None = None, fused: bool | None = None,
        grad_scale: Tensor | None = None, found_inf: Tensor | None = None, *,
        weight_decay: Scalar, momentum: float, lr: Scalar, dampening: float,
        nesterov: bool, maximize: bool) -> None:
    """The functional SGD step, with the signature and the dispatch of
    ``torch.optim.sgd.sgd``: the update rule of this module's docstring applied
    to every tensor, by one of three paths with torch's names --
    :func:`_single_tensor_sgd` (a for-loop), :func:`_multi_tensor_sgd`
    (``torch._foreach_*`` kernels, ``foreach=True``) or :func:`_fused_sgd`
    (torch's fused kernel, ``fused=True``). ``momentum_buffer_list[i]`` is
    replaced by tensor ``i``'s new buffer. With neither flag given, foreach is
    used on accelerators only, as torch does.
    """
    if foreach is None and fused is None:
        foreach = all(type(p) in (Tensor, torch.nn.Parameter)
                      and p.device.type in _FOREACH_DEVICES for p in params)
    if foreach:
        func = _multi_tensor_sgd
    elif fused:
        func = _fused_sgd
    else:
        func = _single_tensor_sgd
    func(params, d_p_list, momentum_buffer_list, weight_decay=weight_decay,
         momentum=momentum, lr=lr, dampening=dampening, nesterov=nesterov,
         maximize=maximize, has_sparse_grad=has_sparse_grad, grad_scale=grad_scale,
         found_inf=found_inf)


#: Devices where torch uses foreach kernels when neither foreach nor fused is given.
_FOREACH_DEVICES = ("cuda", "xpu", "mtia", "privateuseone")


def _no_amp_scaling(grad_scale: Tensor | None, found_inf: Tensor | None) -> None:
    """Only the fused kernel understands GradScaler's grad_scale / found_inf."""
    if grad_scale is not None or found_inf is not None:
        raise AssertionError("Expected grad_scale and found_inf to be None")


def _single_tensor_sgd(params: Sequence[Tensor], grads: Sequence[Tensor],
                       bufs: list[Tensor | None], *, lr: Scalar, momentum: float,
                       dampening: float, weight_decay: Scalar, nesterov: bool,
                       maximize: bool, has_sparse_grad: bool = False,
                       grad_scale: Tensor | None = None,
                       found_inf: Tensor | None = None) -> None:
    """The update of :func:`sgd_update` for each tensor in turn (torch's for-loop path).

    ``bufs[i]`` is replaced by parameter ``i``'s new buffer. Anything that does
    not depend on the tensor (signs, flags) is worked out once, before the loop.
    """
    _no_amp_scaling(grad_scale, found_inf)
    lr = _squeeze(lr)
    decay, use_momentum = weight_decay != 0, momentum != 0
    decay_grad = isinstance(weight_decay, Tensor) and weight_decay.requires_grad
    lr_grad = isinstance(lr, Tensor) and lr.requires_grad
    neg_lr = lr if lr_grad else -lr
    for i, param in enumerate(params):
        g = -grads[i] if maximize else grads[i]              # out of place
        if decay:
            if decay_grad:                                   # torch's differentiable path
                g = g.addcmul_(param.clone(), weight_decay)
            else:
                g = g.add(param, alpha=weight_decay)         # g + wd * p, one rounding
        if use_momentum:
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = g.detach().clone()           # first step: b = g, undampened
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)
            g = g.add(buf, alpha=momentum) if nesterov else buf
        if lr_grad:
            param.addcmul_(g, lr, value=-1)
        else:
            param.add_(g, alpha=neg_lr)                      # p - lr * d, one rounding


def sgd_update_foreach(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: Scalar,
    momentum: float = 0,
    dampening: float = 0,
    weight_decay: Scalar = 0,
    nesterov: bool = False,
    maximize: bool = False,
) -> list[Tensor | None]:
    r"""The same update for a list of tensors with ``torch._foreach_*`` kernels.

    One kernel launch per operation for the whole list instead of one per
    tensor. Tensors are grouped by (device, dtype) because a foreach kernel
    takes tensors of one kind. Results are bit-identical to calling
    :func:`sgd_update` on each tensor. As in torch, with ``nesterov=True`` the
    list of gradients is updated in place when neither ``maximize`` nor
    ``weight_decay`` made a copy of it.

    Returns:
        ``momentum_buffers``, with new buffers filled in (a list of ``None``
        when ``momentum == 0``).
    """
    if len(params) != len(grads) or len(params) != len(momentum_buffers):
        raise ValueError(
            f"params, grads and momentum_buffers must have the same length, got "
            f"{len(params)}, {len(grads)} and {len(momentum_buffers)}")
    _multi_tensor_sgd(params, grads, momentum_buffers, lr=lr, momentum=momentum,
                      dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                      maximize=maximize)
    return momentum_buffers


def _multi_tensor_sgd(params: Sequence[Tensor], grads: Sequence[Tensor],
                      bufs: list[Tensor | None], *, lr: Scalar, momentum: float,
                      dampening: float, weight_decay: Scalar, nesterov: bool,
                      maximize: bool, has_sparse_grad: bool = False,
                      grad_scale: Tensor | None = None,
                      found_inf: Tensor | None = None) -> None:
    """The foreach path: one group of ``torch._foreach_*`` kernels per (device, dtype)."""
    _no_amp_scaling(grad_scale, found_inf)
    lr = _squeeze(lr)
    for idx in _group_by_device_and_dtype(params):
        _foreach_group(
            [params[i] for i in idx], [grads[i] for i in idx],
            bufs, idx, lr=lr, momentum=momentum, dampening=dampening,
            weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)


def _fused_sgd(params: Sequence[Tensor], grads: Sequence[Tensor],
               bufs: list[Tensor | None], *, lr: Scalar, momentum: float,
               dampening: float, weight_decay: Scalar, nesterov: bool, maximize: bool,
               has_sparse_grad: bool = False, grad_scale: Tensor | None = None,
               found_inf: Tensor | None = None) -> None:
    """The fused path: torch's kernel ``torch._fused_sgd_`` per (device, dtype)
    (it rounds differently from the other two paths)."""
    if not params:
        return
    if has_sparse_grad:
        raise RuntimeError("`_fused_sgd` does not support sparse gradients")
    first = momentum != 0 and all(b is None for b in bufs)
    if first:
        bufs[:] = [torch.empty_like(g) for g in grads]
    for idx in _group_by_device_and_dtype(params):
        device = params[idx[0]].device
        torch._fused_sgd_(
            [params[i] for i in idx], [grads[i] for i in idx],
            [] if momentum == 0 else [bufs[i] for i in idx],  # type: ignore[misc]
            weight_decay=weight_decay, momentum=momentum, lr=lr, dampening=dampening,
            nesterov=nesterov, maximize=maximize, is_first_step=first,
            grad_scale=None if grad_scale is None else grad_scale.to(device),
            found_inf=None if found_inf is None else found_inf.to(device))


def _foreach_group(params: list[Tensor], grads: list[Tensor],
                   all_bufs: list[Tensor | None], idx: list[int], *, lr: Scalar,
                   momentum: float, dampening: float, weight_decay: Scalar,
                   nesterov: bool, maximize: bool) -> None:
    """One (device, dtype) group of :func:`sgd_update_foreach`."""
    sparse = any(g.is_sparse for g in grads)
    if maximize:
        grads = torch._foreach_neg(grads)
    if weight_decay != 0:
        if maximize:                                   # already a copy: reuse it
            torch._foreach_add_(grads, params, alpha=weight_decay)
        else:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum != 0:
        bufs = _foreach_momentum(grads, all_bufs, idx, momentum, dampening)
        if nesterov:
            torch._foreach_add_(grads, bufs, alpha=momentum)
        else:
            grads = bufs
    if sparse:
        for p, d in zip(params, grads):
            p.add_(d, alpha=-lr)
    else:
        torch._foreach_add_(params, grads, alpha=-lr)


def _foreach_momentum(grads: list[Tensor], all_bufs: list[Tensor | None],
                      idx: list[int], momentum: float,
                      dampening: float) -> list[Tensor]:
    """Update (or create) the momentum buffers of one foreach group."""
    bufs = [all_bufs[i] for i in idx]
    if all(b is not None for b in bufs):
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        return bufs  # type: ignore[return-value]
    for k, (i, g) in enumerate(zip(idx, grads)):
        if bufs[k] is None:
            bufs[k] = all_bufs[i] = g.detach().clone()
        else:
            bufs[k].mul_(momentum).add_(g, alpha=1 - dampening)
    return bufs  # type: ignore[return-value]


def _group_by_device_and_dtype(tensors: Sequence[Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), in first-seen order."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return list(groups.values())


def _squeeze(lr: Scalar) -> Scalar:
    """A 1-element tensor lr of any shape becomes 0-d, as torch's ``_to_scalar``."""
    return lr.squeeze() if isinstance(lr, Tensor) and lr.dim() != 0 else lr


def _check_tensors(param: object, grad: object, buf: object) -> None:
    """Clear errors for the tensor arguments of :func:`sgd_update`."""
    for name, t in (("param", param), ("grad", grad)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if buf is not None and not isinstance(buf, Tensor):
        raise TypeError("momentum_buffer must be a torch.Tensor or None, "
                        f"got {type(buf).__name__}")
    for name, t in (("grad", grad), ("momentum_buffer", buf)):
        if t is not None and t.shape != param.shape:  # type: ignore[union-attr]
            raise ValueError(f"{name} has shape {tuple(t.shape)} but param has "  # type: ignore[union-attr]
                             f"shape {tuple(param.shape)}")  # type: ignore[union-attr]


def _check_hyper(**values: object) -> None:
    """Each hyperparameter must be a real number (or 1-element tensor), not NaN, >= 0."""
    for name, v in values.items():
        if isinstance(v, Tensor):
            if v.numel() != 1:
                raise ValueError(f"Tensor {name} must be 1-element")
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
        if math.isnan(v):
            raise ValueError(f"{name} is NaN")
        if v < 0 and name != "dampening":
            raise ValueError(f"Invalid {name} value: {v} (must be >= 0)")


def option_grid(lr: float = 0.05) -> list[dict[str, object]]:
    """Every combination of momentum {0, 0.9}, dampening {0, 0.3}, weight_decay
    {0, 0.05}, nesterov and maximize that torch.optim.SGD accepts (nesterov
    needs momentum > 0 and dampening 0): 24 settings, used to compare an
    optimizer with torch's option by option."""
    out = []
    for m, d, wd, n, mx in itertools.product([0, 0.9], [0, 0.3], [0, 0.05],
                                             [False, True], [False, True]):
        if n and (m == 0 or d != 0):
            continue
        out.append(dict(lr=lr, momentum=m, dampening=d, weight_decay=wd, nesterov=n,
                        maximize=mx))
    return out
