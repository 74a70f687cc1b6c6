r"""``SGD``: a readable optimizer class that matches ``torch.optim.SGD`` bit for bit.

It subclasses :class:`torch.optim.Optimizer`, which gives it ``param_groups``,
``state``, ``zero_grad``, ``add_param_group``, ``state_dict`` /
``load_state_dict``, step hooks and compatibility with
``torch.optim.lr_scheduler`` for free. What SGD adds is the constructor's own
validation and :meth:`SGD.step`, which applies :func:`course.sgd.sgd_update`
(or its multi-tensor twin) to every parameter that has a gradient.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from course.sgd import _FOREACH_DEVICES, sgd

__all__ = ["SGD"]

#: Devices with a fused SGD kernel (``fused=True``).
_FUSED_DEVICES = ("mps", "cuda", "xpu", "hpu", "cpu", "mtia", "privateuseone")
#: Flags that old state_dicts may lack, with the values torch fills in.
_LATE_FLAGS = {"nesterov": False, "maximize": False, "foreach": None,
               "differentiable": False, "fused": False}


class SGD(torch.optim.Optimizer):
    r"""Stochastic gradient descent with momentum, exactly as ``torch.optim.SGD``.

    Every parameter with a gradient takes one step of the update rule stated
    in :mod:`course.sgd` (:func:`course.sgd.sgd` applies it, on the path torch
    would take: for-loop, foreach or fused).

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of
            dicts defining parameter groups.
        lr: learning rate :math:`\gamma`, a float or a 1-element tensor
            (default: 1e-3).
        momentum: momentum factor :math:`\beta` (default: 0).
        dampening: dampening :math:`\tau` for momentum (default: 0).
        weight_decay: L2 penalty :math:`\lambda` (default: 0).
        nesterov: enables Nesterov momentum (default: False).
        maximize: maximize the objective instead of minimizing (default: False).
        foreach: use ``torch._foreach_*`` kernels; ``None`` picks them only on
            accelerators, as torch does (default: None).
        differentiable: let autograd run through the step (default: False).
        fused: use torch's fused SGD kernel (default: None).

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model(torch.ones(1, 2)).sum().backward()
        >>> opt.step()
        >>> opt.zero_grad()

    The lr sits outside the momentum buffer (unlike Sutskever et al.), so a
    schedule that changes lr takes effect at once, and the buffer starts as
    the first gradient, so dampening only applies from the second step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)
        if fused:
            self._step_supports_amp_scaling = True
            self._need_device_dtype_check_for_fused = True
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled optimizer, filling in flags that older versions lacked."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in _LATE_FLAGS.items():
                group.setdefault(key, value)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step and return ``closure()``'s value (or None).

        Args:
            closure: optional function that re-evaluates the model and returns
                the loss. It is called once, with gradients enabled.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        """Update every parameter of ``group`` that has a gradient, with
        :func:`course.sgd.sgd` on the path torch would take."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        if group["fused"] and getattr(self, "_need_device_dtype_check_for_fused", True):
            # As torch: the first parameter with a gradient, once per optimizer,
            # before any state is made (a later unsupported one reaches the kernel).
            _check_fused_param(params[0])
            self._need_device_dtype_check_for_fused = False
        grads = [p.grad for p in params]
        momentum = group["momentum"]
        bufs = ([self.state[p].get("momentum_buffer") for p in params]
                if momentum != 0 else [None] * len(params))
        foreach = group["foreach"]
        if foreach is None and group["fused"] is None:
            foreach = all(type(p) in (Tensor, torch.nn.Parameter)
                          and p.device.type in _FOREACH_DEVICES for p in params)
        fused = bool(group["fused"]) and not foreach
        scale, inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        sgd(params, grads, bufs, any(g.is_sparse for g in grads), foreach=bool(foreach),
            fused=fused, grad_scale=scale, found_inf=inf, lr=group["lr"],
            momentum=momentum, dampening=group["dampening"],
            weight_decay=group["weight_decay"], nesterov=group["nesterov"],
            maximize=group["maximize"])
        if momentum != 0:
            for p, buf in zip(params, bufs):
                self.state[p]["momentum_buffer"] = buf


def _check_fused_param(p: Tensor) -> None:
    """``fused=True`` takes floating-point tensors on supported devices only."""
    if not (p.device.type in _FUSED_DEVICES and torch.is_floating_point(p)):
        raise RuntimeError(
            "`fused=True` requires all the params to be floating point Tensors of "
            f"supported devices: {list(_FUSED_DEVICES)} but {p.dtype} and "
            f"{p.device.type}")
