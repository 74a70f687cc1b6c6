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

from course.sgd import sgd_update_foreach, update_many

__all__ = ["SGD"]

#: Devices where torch uses foreach kernels when ``foreach=None``.
_FOREACH_DEVICES = ("cuda", "xpu", "mtia", "privateuseone")
#: Devices with a fused SGD kernel (``fused=True``).
_FUSED_DEVICES = ("mps", "cuda", "xpu", "hpu", "cpu", "mtia", "privateuseone")
#: Flags that old state_dicts may lack, with the values torch fills in.
_LATE_FLAGS = {"nesterov": False, "maximize": False, "foreach": None,
               "differentiable": False, "fused": False}


class SGD(torch.optim.Optimizer):
    r"""Stochastic gradient descent with momentum, exactly as ``torch.optim.SGD``.

    For each parameter :math:`\theta` with gradient :math:`\nabla`:

    .. math::

        g_t &= s\,\nabla_t + \lambda\,\theta_{t-1}
              \qquad (s = -1 \text{ if maximize else } 1) \\
        b_t &= g_t \ \text{(first step of } \theta\text{)}, \quad
              \text{else } b_t = \mu\, b_{t-1} + (1-\tau)\, g_t \\
        d_t &= g_t + \mu\, b_t \ \text{(nesterov)}, \quad \text{else } d_t = b_t \\
        \theta_t &= \theta_{t-1} - \gamma\, d_t

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of
            dicts defining parameter groups.
        lr: learning rate :math:`\gamma`, a float or a 1-element tensor
            (default: 1e-3).
        momentum: momentum factor :math:`\mu` (default: 0).
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
        """Update every parameter of ``group`` that has a gradient."""
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
        hyper = dict(lr=group["lr"], momentum=momentum, dampening=group["dampening"],
                     weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                     maximize=group["maximize"])
        mode = self._mode(group, params)
        if mode == "fused":
            self._fused_step(params, grads, bufs, **hyper)
        elif mode == "foreach":
            sgd_update_foreach(params, grads, bufs, **hyper)
        else:
            self._for_loop_step(params, grads, bufs, **hyper)
        if momentum != 0:
            for p, buf in zip(params, bufs):
                self.state[p]["momentum_buffer"] = buf

    def _for_loop_step(self, params: list[Tensor], grads: list[Tensor],
                       bufs: list[Tensor | None], *, lr: Any, **hyper: Any) -> None:
        """The plain path: :func:`course.sgd.update_many`, one tensor at a time."""
        self._no_amp_scaling()
        if isinstance(lr, Tensor) and lr.dim() != 0:
            lr = lr.squeeze()
        update_many(params, grads, bufs, lr=lr, **hyper)

    def _mode(self, group: dict[str, Any], params: list[Tensor]) -> str:
        """'fused', 'foreach' or 'for-loop', resolved the way torch resolves it."""
        if group["fused"]:
            return "fused"
        foreach = group["foreach"]
        if foreach is None and group["fused"] is None:
            foreach = all(
                type(p) in (Tensor, torch.nn.Parameter)
                and p.device.type in _FOREACH_DEVICES for p in params)
        if foreach:
            self._no_amp_scaling()
            return "foreach"
        return "for-loop"

    def _no_amp_scaling(self) -> None:
        """Only the fused kernel understands GradScaler's grad_scale / found_inf."""
        if getattr(self, "grad_scale", None) is not None or \
                getattr(self, "found_inf", None) is not None:
            raise AssertionError("Expected grad_scale and found_inf to be None")

    def _fused_step(self, params: list[Tensor], grads: list[Tensor],
                    bufs: list[Tensor | None], *, lr: Any, momentum: float,
                    **hyper: Any) -> None:
        """Torch's fused kernel (``torch._fused_sgd_``); it rounds differently."""
        if any(g.is_sparse for g in grads):
            raise RuntimeError("`_fused_sgd` does not support sparse gradients")
        first = momentum != 0 and all(b is None for b in bufs)
        if first:
            bufs[:] = [torch.empty_like(g) for g in grads]
        scale, inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(params):
            groups.setdefault((p.device, p.dtype), []).append(i)
        for (device, _), idx in groups.items():
            torch._fused_sgd_(
                [params[i] for i in idx], [grads[i] for i in idx],
                [] if momentum == 0 else [bufs[i] for i in idx],
                lr=lr, momentum=momentum, is_first_step=first,
                grad_scale=None if scale is None else scale.to(device),
                found_inf=None if inf is None else inf.to(device), **hyper)


def _check_fused_param(p: Tensor) -> None:
    """``fused=True`` takes floating-point tensors on supported devices only."""
    if not (p.device.type in _FUSED_DEVICES and torch.is_floating_point(p)):
        raise RuntimeError(
            "`fused=True` requires all the params to be floating point Tensors of "
            f"supported devices: {list(_FUSED_DEVICES)} but {p.dtype} and "
            f"{p.device.type}")
