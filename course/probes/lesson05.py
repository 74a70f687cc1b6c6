"""Re-verification probes for 05-the-full-update-rule.

``sgd_update`` is compared byte for byte (its exercise promises bit-exactness
with ``torch.optim.SGD``); ``nesterov_direction`` and ``decayed_gradient``
within float64 rounding; ``ulp_distance`` exactly (integers). As the
visible check requires, ``sgd_update`` must update ``param`` and (after the
first step) the buffer in place, return a first buffer that is a copy, not
an alias, of the gradient, and leave ``grad`` untouched. While the learner's
code runs, torch's SGD (class and functions), the course's reference update,
optimizer, momentum step and ulp helpers are disabled.
"""

from __future__ import annotations

import builtins
from typing import Any

import torch

from course.probes._common import COURSE_SGD, TORCH_SGD, same_storage
from course.verify import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [
    *TORCH_SGD, *COURSE_SGD,
    "course.momentum.torch_momentum_step",
    "course.floating_point.ulp_distance", "course.floating_point.max_ulp_distance",
    "course.floating_point._keys",
]

_F64 = torch.float64


def _kept(x: Any) -> Any:
    """A snapshot of a tensor (flattened) with its shape; anything else as it
    is (course.verify.encode records a non-tensor by its type)."""
    if type(x) is torch.Tensor:
        return [x.detach().clone().reshape(-1), list(x.shape)]
    return x


def _randn(gen: torch.Generator, *shape: int, dtype: torch.dtype = _F64) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=dtype)


def _nesterov_direction(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["nesterov_direction"]
    gen = torch.Generator().manual_seed(105)
    out = []
    for mu, shape in ((0.9, (7,)), (0.5, (2, 3)), (0.0, (4,)), (0.99, ()), (1.3, (3, 4))):
        g, b = _randn(gen, *shape), _randn(gen, *shape)
        d = f(g, b, mu)
        out += [_kept(d), _kept(g), _kept(b)]
    out.append(_kept(f(torch.tensor(2.0), torch.tensor(4.0), 0.5)))   # float32, 0-d
    return out


def _decayed_gradient(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["decayed_gradient"]
    gen = torch.Generator().manual_seed(205)
    out = []
    for wd in (0.0, 0.1, 0.5):
        for maximize in (False, True):
            grad, param = _randn(gen, 3, 2), _randn(gen, 3, 2)
            g = f(grad, param, wd, maximize)
            out += [_kept(g), _kept(grad), _kept(param)]
            # float32 keeps its dtype (values: float32 rounding may legitimately differ)
            g32 = f(grad.float(), param.float(), wd, maximize)
            out.append([str(g32.dtype), list(g32.shape)] if type(g32) is torch.Tensor
                       else repr(type(g32)))
    out.append(_kept(f(torch.tensor(0.5, dtype=_F64), torch.tensor(2.0, dtype=_F64), 0.1, True)))
    return out


def _ulp_distance(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["ulp_distance"]
    gen = torch.Generator().manual_seed(305)
    out = []
    for dtype in (torch.float32, _F64):
        a = _randn(gen, 5, 4, dtype=dtype) * 10
        b = a + _randn(gen, 5, 4, dtype=dtype) * 1e-4
        b[0] = -a[0]
        b[1, :2] = torch.tensor([0.0, -0.0], dtype=dtype)
        out += [f(a, b), f(b, a), f(a, a.clone()), _kept(a), _kept(b)]   # inputs unchanged
    out.append(f(torch.tensor([-3e38, -0.0, 1.0]), torch.tensor([3e38, 0.0, 2.0])))
    one = torch.tensor([1.0, -1.0, 1e-300, 0.0], dtype=_F64)
    out.append(f(one, torch.tensor([2.0, -2.0, -1e-300, 5e-324], dtype=_F64)))
    return out


_CONFIGS = [
    {}, {"weight_decay": 0.1}, {"maximize": True}, {"weight_decay": 0.1, "maximize": True},
    {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.3},
    {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1, "maximize": True},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "maximize": True},
]


def _sgd_update(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["sgd_update"]
    gen = torch.Generator().manual_seed(405)
    out: list[Any] = []
    for k, flags in enumerate(_CONFIGS):
        for dtype, shape, lr in ((torch.float32, (3, 5), 0.1), (_F64, (4,), "tensor"),
                                 (torch.float32, (), "tensor")):
            hyper = dict(flags, lr=torch.tensor(0.05) if lr == "tensor" else lr)
            param, buf = _randn(gen, *shape, dtype=dtype), None
            for _ in range(5):
                grad = _randn(gen, *shape, dtype=dtype)
                new = f(param, grad, buf, **hyper)
                out += [_kept(param), _kept(grad), _kept(new),
                        new is buf if buf is not None else None,   # buffer updated in place
                        same_storage(new, grad), same_storage(new, param)]   # no aliasing
                buf = new
    return out


PROBES = {
    "test_nesterov_direction": Probe(_nesterov_direction, rtol=1e-12, atol=1e-12),
    "test_decayed_gradient": Probe(_decayed_gradient, rtol=1e-12, atol=1e-12),
    "test_ulp_distance": Probe(_ulp_distance),
    "test_sgd_update": Probe(_sgd_update),
}
