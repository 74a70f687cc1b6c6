"""Small argument checks shared by the public functions of :mod:`course`.

Every public function validates its input up front so that a learner sees a
clear one-line error instead of a traceback from deep inside numpy or torch.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable

import numpy as np
import torch


def require_callable(obj: Any, name: str) -> Callable[..., Any]:
    """Return ``obj`` if it is callable, else raise ``TypeError``."""
    if not callable(obj):
        raise TypeError(f"{name} must be a function, got {type(obj).__name__}")
    return obj


def require_real(value: Any, name: str, *, minimum: float | None = None,
                 strict: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite real number.

    Args:
        value: the number to check (bools are rejected).
        name: the argument name used in the error message.
        minimum: optional lower bound.
        strict: if True the bound is exclusive (``value > minimum``).
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        bad = value <= minimum if strict else value < minimum
        if bad:
            op = ">" if strict else ">="
            raise ValueError(f"{name} must be {op} {minimum}, got {value}")
    return value


def require_int(value: Any, name: str, *, minimum: int = 0) -> int:
    """Return ``value`` if it is an int ``>= minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def require_numeric(value: Any, name: str) -> Any:
    """Return ``value`` if it is a real number, a real numpy array or a tensor.

    Python and numpy numbers and torch tensors come back unchanged; lists,
    tuples and integer arrays become float64 numpy arrays. Strings, ``None``,
    bools and complex values raise ``TypeError`` naming the argument.
    """
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must hold real numbers, got {value.dtype}")
        return value
    if isinstance(value, Real) and not isinstance(value, bool):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(value)
        except ValueError as err:
            raise ValueError(f"{name} is not a rectangular array: {err}") from None
        if array.dtype.kind in "iuf":
            return array if array.dtype.kind == "f" else array.astype(float)
    raise TypeError(f"{name} must be a number, a numpy array or a torch tensor, "
                    f"got {type(value).__name__}")
