r"""Floating-point helpers: distances in ulps and fused multiply-add detection.

Two floats of one format are $n$ **ulps** (units in the last place) apart when
$n - 1$ representable numbers of that format lie strictly between them. For
finite floats this is a difference of integers: reinterpret the bits as an
integer $k$ and map negative floats (stored as sign and magnitude) onto the
negative integers,

$$\operatorname{key}(x) = \begin{cases} k & k \ge 0 \\
k_{\min} - k & k < 0 \end{cases}
\qquad \operatorname{ulp}(a, b) = |\operatorname{key}(a) - \operatorname{key}(b)|,$$

where $k_{\min} = -2^{31}$ (float32) or $-2^{63}$ (float64). Then $+0$ and
$-0$ share key 0, and consecutive floats have consecutive keys.

A **fused multiply-add** computes $a + \alpha\, b$ with one rounding,
$\operatorname{fl}(a + \alpha b)$, instead of two,
$\operatorname{fl}(a + \operatorname{fl}(\alpha b))$. Torch's CPU kernels for
``add(..., alpha=...)`` use one when the CPU has it (AVX2, AVX-512), which is
why ``p.add_(d, alpha=-lr)`` and ``p - lr * d`` can differ in the last bit.

>>> a = torch.tensor([1.0, -2.0])
>>> ulp_distance(a, torch.nextafter(a, torch.zeros(2))).tolist()
[1, 1]
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ulp_distance", "max_ulp_distance", "fma_in_use"]

_BITS = {torch.float32: torch.int32, torch.float64: torch.int64,
         torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _keys(x: Tensor) -> Tensor:
    """Order-preserving integer keys of the floats in ``x`` (int64)."""
    int_dtype = _BITS[x.dtype]
    k = x.detach().contiguous().view(int_dtype).to(torch.int64)
    k_min = torch.iinfo(int_dtype).min
    return torch.where(k < 0, k_min - k, k)


def ulp_distance(a: Tensor, b: Tensor) -> Tensor:
    r"""Element-wise number of ulps between two float tensors of one dtype.

    $\operatorname{ulp}(a, b) = |\operatorname{key}(a) - \operatorname{key}(b)|$
    (see the module docstring): 0 for equal values (and for $+0$ vs $-0$),
    1 for neighbours such as ``a`` and ``torch.nextafter(a, b)``.

    Args:
        a: a float16, bfloat16, float32 or float64 tensor of finite values.
        b: a tensor of the same dtype and shape.

    Returns:
        An int64 tensor of ``a``'s shape.

    Raises:
        TypeError: for non-tensors, other dtypes or mismatched dtypes.
        ValueError: for mismatched shapes or non-finite values.

    >>> one = torch.tensor(1.0)
    >>> int(ulp_distance(one, torch.tensor(2.0)))  # 2**23 floats in [1, 2)
    8388608
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _BITS:
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("ulp_distance needs finite values (no inf or NaN)")
    return (_keys(a) - _keys(b)).abs()


def max_ulp_distance(a: Tensor, b: Tensor) -> int:
    """The largest element-wise :func:`ulp_distance` (0 for empty tensors).

    >>> max_ulp_distance(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    0
    """
    distance = ulp_distance(a, b)
    return int(distance.max()) if distance.numel() else 0


def fma_in_use() -> bool:
    r"""Whether torch's CPU ``add(..., alpha=...)`` rounds once (a fused multiply-add).

    Measured, not guessed from the CPU name: with $a = 1 + 2^{-30}$ and
    $\alpha = 1 - 2^{-30}$ the exact value of $-1 + \alpha a$ is $-2^{-60}$;
    two roundings give 0 because $\alpha a = 1 - 2^{-60}$ rounds to 1 in
    float64. (``ATEN_CPU_CAPABILITY=default`` turns the FMA kernels off.)

    Returns:
        True if ``torch.tensor([-1.]).add(tensor([a]), alpha=alpha)`` is exact.
    """
    a, alpha = 1.0 + 2.0 ** -30, 1.0 - 2.0 ** -30
    minus_one = torch.tensor([-1.0], dtype=torch.float64)
    result = minus_one.add(torch.tensor([a], dtype=torch.float64), alpha=alpha)
    return bool(result.item() != 0.0)
