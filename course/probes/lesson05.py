"""Re-verification probes for 05-the-full-update-rule.

Every input is drawn from the verification's seed: tensor shapes and values,
momentum factors, weight decays, learning rates (float and 0-d tensor) and
step counts; the scenarios of ``sgd_update`` still cover every flag of
torch's rule (plain, weight decay, maximize, momentum, dampening, Nesterov).
``sgd_update`` is compared byte for byte (its exercise promises
bit-exactness with ``torch.optim.SGD``), on plain tensors and on parameters
under ``torch.no_grad()``; ``nesterov_direction`` and ``decayed_gradient``
within float64 rounding, dtype and shape included (float32 results of
``decayed_gradient`` within float32 rounding of the formula, checked with
torch's unpatchable C methods); ``ulp_distance`` exactly (int64), on equal
values, neighbours, opposite signs, +0.0/-0.0, powers of two and float32's
extremes. As the visible check requires, ``sgd_update`` must update ``param``
and (after the first step) the buffer in place, return a first buffer that
is a copy, not an alias, of the gradient, and leave ``grad`` untouched; no
function may change its inputs. While the learner's code runs, torch's SGD
(class and functions), the course's reference update, optimizer, momentum
step and ulp helpers are disabled.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import torch

from course.exercises.values import COURSE_SGD, TORCH_SGD, generator, same_storage
from course.grading.probes import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [
    *TORCH_SGD, *COURSE_SGD,
    "course.momentum.torch_momentum_step",
    "course.floating_point.ulp_distance", "course.floating_point.max_ulp_distance",
    "course.floating_point._keys",
]

_F32, _F64 = torch.float32, torch.float64
#: torch's C tensor methods (an immutable type: the learner's code cannot patch
#: them), for the few checks a probe computes itself.
_TB = torch._C.TensorBase
_DEFAULT_RNG = np.random.default_rng


def _draws(seed: int, salt: int) -> tuple[np.random.Generator, torch.Generator]:
    """A numpy generator (hyperparameters, shapes) and a torch generator
    (tensor values), both drawn from the verification's seed."""
    rng = _DEFAULT_RNG([salt, seed])
    return rng, generator(int(rng.integers(2 ** 62)))


def _shape(rng: np.random.Generator, min_ndim: int = 0, max_ndim: int = 3) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(min_ndim,
                                                                           max_ndim + 1))))


def _kept(x: Any) -> Any:
    """A snapshot of a tensor (flattened) with its shape and dtype; anything
    else as it is (course.grading.encoding.encode records a non-tensor by its type)."""
    if type(x) is torch.Tensor:
        return [x.detach().clone().reshape(-1), list(x.shape), str(x.dtype)]
    return x


def _randn(gen: torch.Generator, *shape: int, dtype: torch.dtype = _F64) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=dtype)


def _close32(out: Any, grad: torch.Tensor, param: torch.Tensor, wd: float,
             maximize: bool) -> bool:
    """Whether a float32 ``decayed_gradient`` result has grad's shape and dtype
    and is within float32 rounding of the float64 formula (computed here with
    torch's C methods, which the learner's code cannot patch)."""
    if type(out) is not torch.Tensor or _TB.dtype.__get__(out) != _F32 or \
            list(_TB.size(out)) != list(_TB.size(grad)):
        return False
    ref = _TB.double(grad)
    if maximize:
        ref = _TB.neg(ref)
    ref = _TB.add(ref, _TB.double(param), alpha=wd)
    if _TB.numel(ref) == 0:
        return True
    err = _TB.item(_TB.max(_TB.abs(_TB.sub(_TB.double(out), ref))))
    scale = _TB.item(_TB.max(_TB.abs(ref)))
    return bool(err <= 1e-5 * (1.0 + scale))


def _nesterov_direction(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["nesterov_direction"]
    rng, gen = _draws(seed, 105)
    out = []
    # momentum 0, in (0, 1), close to 1 and above 1; float64 tensors of random shapes
    mus = [0.0, float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.95, 0.999)),
           float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.0, 1.0))]
    for k, mu in enumerate(mus):
        shape = () if k == 3 else _shape(rng)
        g, b = _randn(gen, *shape), _randn(gen, *shape)
        d = f(g, b, mu)
        out += [_kept(d), _kept(g), _kept(b)]             # g and b unchanged
    # float32 (0-d and not), with values whose result float32 holds exactly
    for shape in ((), _shape(rng, 1)):
        g = torch.tensor(rng.integers(-8, 9, size=shape).astype(np.float32))
        b = torch.tensor(rng.integers(-8, 9, size=shape).astype(np.float32))
        out.append(_kept(f(g, b, float(rng.choice([0.25, 0.5, 1.5, 2.0])))))
    return out


def _decayed_gradient(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["decayed_gradient"]
    rng, gen = _draws(seed, 205)
    out = []
    for wd in (0.0, float(rng.uniform(0.01, 0.3)), float(rng.uniform(0.3, 1.0))):
        for maximize in (False, True):
            shape = _shape(rng, 1)
            grad, param = _randn(gen, *shape), _randn(gen, *shape)
            g = f(grad, param, wd, maximize)
            out += [_kept(g), _kept(grad), _kept(param)]   # inputs unchanged
            # float32 keeps its dtype; its values within float32 rounding
            g32, p32 = grad.float(), param.float()
            out += [_close32(f(g32, p32, wd, maximize), grad.float(), param.float(), wd,
                             maximize), _kept(g32), _kept(p32)]
    wd = float(rng.uniform(0.01, 1.0))
    grad, param = _randn(gen), _randn(gen)               # 0-d
    out.append(_kept(f(grad, param, wd, True)))
    out.append(_close32(f(grad.float(), param.float(), wd, True), grad.float(),
                        param.float(), wd, True))
    return out


def _ulp_pair(rng: np.random.Generator, gen: torch.Generator,
              dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Random a and b (same shape) with every kind of pair: close values, equal
    values, neighbours, opposite signs, +0.0 and -0.0, far apart."""
    rows, cols = int(rng.integers(5, 9)), int(rng.integers(2, 7))
    scale = float(10.0 ** rng.uniform(-3, 3))
    a = _randn(gen, rows, cols, dtype=dtype) * scale
    b = a + _randn(gen, rows, cols, dtype=dtype) * scale * float(10.0 ** rng.uniform(-7, -3))
    inf = torch.tensor(float("inf"), dtype=dtype)
    # opposite signs (float64 values below 1.5: their distance fits an int64)
    small = _randn(gen, cols, dtype=dtype).clamp(-1.4, 1.4) if dtype == _F64 else a[0]
    a[0], b[0] = small, -small
    b[1] = a[1]                                             # equal: 0
    b[2] = torch.nextafter(a[2], inf)                       # neighbours: 1
    a[3, 0], b[3, 0] = 0.0, -0.0
    a[3, 1], b[3, 1] = -0.0, float(torch.finfo(dtype).tiny) * float(rng.uniform(1, 4))
    b[4] = a[4] * float(rng.uniform(1.5, 4.0))              # far apart
    return a, b


def _ulp_distance(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["ulp_distance"]
    rng, gen = _draws(seed, 305)
    out = []
    for dtype in (torch.float32, _F64):
        a, b = _ulp_pair(rng, gen, dtype)
        out += [f(a, b), f(b, a), f(a, a.clone()), _kept(a), _kept(b)]   # inputs unchanged
    # a power of two and its double: 2**23 (float32) or 2**52 (float64) apart
    for dtype in (torch.float32, _F64):
        x = torch.tensor([2.0 ** int(k) for k in rng.integers(-20, 20, size=3)], dtype=dtype)
        out.append(f(x, 2 * x))
    big = float(rng.uniform(1e38, 3.4e38))                  # float32's extremes
    out.append(f(torch.tensor([-big, -0.0, 1.0]), torch.tensor([big, 0.0, 2.0])))
    return out


#: Which flags each scenario sets (every one of torch's paths); the values are
#: drawn from the verification's seed.
_CONFIGS = [
    (), ("weight_decay",), ("maximize",), ("weight_decay", "maximize"),
    ("momentum",), ("momentum", "dampening"),
    ("momentum", "dampening", "weight_decay", "maximize"),
    ("momentum", "nesterov"),
    ("momentum", "nesterov", "weight_decay", "maximize"),
]


def _hyper(rng: np.random.Generator, flags: tuple[str, ...]) -> dict[str, Any]:
    hyper: dict[str, Any] = {}
    if "momentum" in flags:
        hyper["momentum"] = float(rng.uniform(0.5, 0.99))
    if "dampening" in flags:
        hyper["dampening"] = float(rng.uniform(0.05, 0.7))
    if "weight_decay" in flags:
        hyper["weight_decay"] = float(10.0 ** rng.uniform(-3, -0.5))
    for flag in ("nesterov", "maximize"):
        if flag in flags:
            hyper[flag] = True
    return hyper


def _sgd_update(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["sgd_update"]
    rng, gen = _draws(seed, 405)
    out: list[Any] = []
    for flags in _CONFIGS:
        hyper = _hyper(rng, flags)
        # float lr; 0-d float32 tensor lr (on float64 and float32 tensors)
        for dtype, lr_kind in ((_F32, "float"), (_F64, "tensor"), (_F32, "tensor")):
            value = float(10.0 ** rng.uniform(-2.5, -0.3))
            lr = torch.tensor(value) if lr_kind == "tensor" else value
            shape = _shape(rng)
            param, buf = _randn(gen, *shape, dtype=dtype), None
            for _ in range(int(rng.integers(3, 7))):
                grad = _randn(gen, *shape, dtype=dtype)
                new = f(param, grad, buf, lr=lr, **hyper)
                out += [_kept(param), _kept(grad), _kept(new),
                        new is buf if buf is not None else None,   # buffer updated in place
                        same_storage(new, grad), same_storage(new, param)]   # no aliasing
                buf = new
    # as in an optimizer: parameters (leaves that require grad) under no_grad
    hyper = _hyper(rng, _CONFIGS[int(rng.integers(len(_CONFIGS)))])
    lr = float(10.0 ** rng.uniform(-2.5, -0.3))
    params = [torch.nn.Parameter(_randn(gen, *_shape(rng, 1))) for _ in range(3)]
    bufs: list[Any] = [None] * len(params)
    for _ in range(int(rng.integers(3, 6))):
        for i, p in enumerate(params):
            p.grad = _randn(gen, *p.shape)
            with torch.no_grad():
                bufs[i] = f(p, p.grad, bufs[i], lr=lr, **hyper)
            out += [_kept(p.detach()), _kept(p.grad), _kept(bufs[i])]
    return out


PROBES = {
    "test_nesterov_direction": Probe(_nesterov_direction, rtol=1e-12, atol=1e-12),
    "test_decayed_gradient": Probe(_decayed_gradient, rtol=1e-12, atol=1e-12),
    "test_ulp_distance": Probe(_ulp_distance),
    "test_sgd_update": Probe(_sgd_update),
}
