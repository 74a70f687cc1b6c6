"""Helpers shared by the probes: turn what learner code returns into plain values.

:func:`course.grading.encoding.encode` trusts only exact built-in, tensor and ndarray
types. These helpers convert a learner's return value into such a value --
or into a short string naming its type when it has the wrong one, so that a
wrong type fails the comparison instead of crashing the whole probe.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import numpy.random  # noqa: F401 - loaded now: numpy loads it lazily, maybe under learner patches
import torch

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
#: What the hidden tests accept as "a float" and "an int".
FLOAT_TYPES = (float, np.float64)
INT_TYPES = (int, np.int64)


def type_name(x: Any) -> str:
    """``"type: <name>"``, a value that never equals a number, tensor or list."""
    return f"type: {type(x).__module__}.{type(x).__qualname__}"


def snap(x: Any) -> Any:
    """A detached copy of a tensor (its values now, whatever happens later);
    None stays None; anything else becomes :func:`type_name`."""
    if type(x) in TENSOR_TYPES:
        return x.detach().clone()
    if x is None:
        return None
    return type_name(x)


def real(x: Any, types: tuple[type, ...] = FLOAT_TYPES) -> Any:
    """``float(x)`` when ``type(x)`` is one of ``types``, else :func:`type_name`."""
    if type(x) in types:
        return float(x)
    return type_name(x)


def integer(x: Any, types: tuple[type, ...] = INT_TYPES) -> Any:
    """``int(x)`` when ``type(x)`` is one of ``types``, else :func:`type_name`."""
    if type(x) in types:
        return int(x)
    return type_name(x)


def array(x: Any) -> Any:
    """A float64 copy of a numpy array, list of numbers or tensor; else :func:`type_name`."""
    if type(x) in TENSOR_TYPES:
        return x.detach().to(torch.float64).clone()
    try:
        return np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        return type_name(x)


def pair(x: Any) -> tuple[Any, Any]:
    """The two items of a returned 2-tuple or 2-list (anything else: two type names)."""
    if type(x) in (tuple, list) and len(x) == 2:
        return x[0], x[1]
    return type_name(x), type_name(x)


def same_storage(a: Any, b: Any) -> bool:
    """Whether two tensors share memory (aliasing), without trusting ``__eq__``."""
    if type(a) not in TENSOR_TYPES or type(b) not in TENSOR_TYPES:
        return False
    if a.numel() == 0 or b.numel() == 0:
        return False
    sa, sb = a.untyped_storage(), b.untyped_storage()
    return bool(sa.data_ptr() == sb.data_ptr())


_DEFAULT_RNG = np.random.default_rng     # numpy's own, before learner code could patch it


def probe_rng(seed: int, salt: int) -> np.random.Generator:
    """The numpy generator of one probe, drawn from the verification's seed
    (sizes, hyperparameters and the seeds of its torch generators); ``salt``
    keeps the probes of one lesson apart."""
    return _DEFAULT_RNG([salt, seed])


def sub_seed(rng: np.random.Generator) -> int:
    """A seed for a torch generator, drawn from ``rng``."""
    return int(rng.integers(2 ** 62))


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A float drawn uniformly from [low, high)."""
    return float(rng.uniform(low, high))


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (probes never use the global RNG)."""
    return torch.Generator().manual_seed(seed)


def global_rng_bytes() -> bytes:
    """The global torch RNG state as bytes (to check it is left untouched)."""
    return torch.random.get_rng_state().numpy().tobytes()


#: torch's SGD: the class and the functions behind it (``torch.optim.sgd`` is a
#: module, not an attribute of ``torch.optim``; course.grading.lockdown imports it by path).
TORCH_SGD = [
    "torch.optim.SGD", "torch.optim.sgd.SGD", "torch.optim.sgd.sgd",
    "torch.optim.sgd._single_tensor_sgd", "torch.optim.sgd._multi_tensor_sgd",
    "torch.optim.sgd._fused_sgd", "torch.optim._functional.sgd", "torch._fused_sgd_",
]
#: The course's own torch-exact update rule and optimizer (lessons 5, 6, 8 answer keys).
COURSE_SGD = [
    "course.sgd.sgd_update", "course.sgd.update_one", "course.sgd.sgd",
    "course.sgd._single_tensor_sgd", "course.sgd._multi_tensor_sgd", "course.sgd._fused_sgd",
    "course.sgd.sgd_update_foreach", "course.sgd._foreach_group", "course.sgd._foreach_momentum",
    "course.sgd._group_by_device_and_dtype", "course.optim.SGD",
]


def as_float(x: Any) -> Any:
    """``float(x)`` for anything ``float()`` accepts as a number (Python and numpy
    scalars, 1-element tensors), as the hidden tests do; else :func:`type_name`."""
    if type(x) in (float, int, bool, np.float64, np.float32, np.int64):
        return float(x)
    if type(x) in TENSOR_TYPES and x.numel() == 1:
        return float(x.detach().reshape(()).item())
    return type_name(x)


def fmt(value: Any, digits: int = 6) -> str:
    """A short, rounded rendering of numbers, arrays and tensors for messages."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size > 8:
            return (f"array of shape {value.shape} "
                    f"[{np.array2string(value.ravel()[:6], precision=digits)[1:-1]} ...]")
        return np.array2string(value, precision=digits, separator=", ")
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return repr(value)
