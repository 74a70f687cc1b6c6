r"""Checks for lesson 05-the-full-update-rule.

Torch's SGD step for one tensor, in torch's order (maximize → weight decay →
momentum → nesterov → −lr), with $s = -1$ under ``maximize``:

$$g = s\,\nabla + \lambda\theta,\quad
b = \begin{cases} g & \text{first step} \\ \mu b + (1-\tau) g & \text{later}\end{cases},\quad
d = \begin{cases} g + \mu b & \text{nesterov} \\ b & \text{else}\end{cases},\quad
\theta \leftarrow \theta - \gamma d .$$

- :func:`check_nesterov_direction` -- $d = g + \mu b$ with the NEW buffer.
- :func:`check_decayed_gradient` -- the first two lines, $g = s\nabla + \lambda\theta$.
- :func:`check_ulp_distance` -- the distance between two floats in ulps.
- :func:`check_sgd_update` -- the whole rule, compared with
  :func:`course.sgd.sgd_update` (bit-exact with ``torch.optim.SGD``) with
  ``torch.equal`` over the full flag grid. A wrong result is replayed through
  the known-wrong rules of :mod:`course.exercises.sgd_mistakes`; the one that gives
  the learner's bits names the mistake.
"""

from __future__ import annotations

import itertools
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple

import torch
from torch import Tensor

import course.optim
import course.sgd
from course.checks._common import CheckFailure, call, fmt, passed, require_function
from course.exercises.sgd_mistakes import (
    BUFFER_ALIASES_GRAD,
    BUFFER_ALIASES_PARAM,
    BUFFER_NOT_IN_PLACE,
    DELEGATES,
    GRAD_IN_PLACE,
    PARAM_NOT_IN_PLACE,
    RETURNED_BUFFER_WITHOUT_MOMENTUM,
    RETURNED_NONE,
    STALE_BUFFER,
    VALUE_MISTAKES,
    diagnosis,
    pick,
    source_names,
)
from course.floating_point import max_ulp_distance

__all__ = [
    "check_nesterov_direction",
    "check_decayed_gradient",
    "check_ulp_distance",
    "check_sgd_update",
]

_F32, _F64 = torch.float32, torch.float64


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def _same_bits(a: Any, b: Tensor) -> bool:
    """``a`` is a tensor with ``b``'s dtype, shape and exact values."""
    return (isinstance(a, Tensor) and a.dtype == b.dtype and a.shape == b.shape
            and bool(torch.equal(a, b)))


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors use the same storage (``a is b``, a view, ``detach()``)."""
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except RuntimeError:  # pragma: no cover - exotic tensors
        return a is b


def _close(a: Tensor, b: Tensor) -> bool:
    """Close at the dtype's precision (a few ulp of float32, or float64)."""
    rtol = 1e-5 if b.dtype == _F32 else 1e-12
    return bool(torch.allclose(a.to(b.dtype), b, rtol=rtol, atol=rtol * 1e-3))


def _digits(t: Tensor) -> int:
    """Significant digits that show every bit of a float of ``t``'s dtype."""
    return 9 if t.dtype == _F32 else 17


def _first_difference(got: Tensor, expected: Tensor) -> str:
    """Where and by how much two same-shaped tensors differ, for a message."""
    diff = got.ne(expected)
    n = int(diff.sum())
    idx = tuple(int(i) for i in diff.nonzero()[0]) if got.dim() else ()
    where = f"[{', '.join(map(str, idx))}]" if idx else ""
    k = _digits(expected)
    g_val, e_val = got[idx].item(), expected[idx].item()
    max_abs = float((got.double() - expected.double()).abs().max())
    return (f"{n} of {expected.numel()} element(s) differ; first{where and ' at ' + where}: "
            f"expected {e_val:.{k}g}, got {g_val:.{k}g} (max abs diff {max_abs:.3g})")


def _returned_tensor(out: Any, like: Tensor, case: str, what: str = "", *,
                     who: str = "your function", kind: str = "a torch.Tensor",
                     not_tensor_hint: str = "compute with tensor operations (no "
                     ".item(), no numpy, no lists).",
                     shape_note: str = "", dtype: torch.dtype | None = None,
                     dtype_hint: str = "keep the inputs' dtype: combine the tensors "
                     "with Python-float factors, don't build new tensors with a "
                     "default dtype.") -> Tensor:
    """Check the learner returned a tensor of ``like``'s shape and of ``dtype``
    (default: ``like``'s).

    ``what`` completes "did you forget `return ...`?"; ``who`` names the
    function, ``kind`` the expected value, ``not_tensor_hint`` and
    ``dtype_hint`` are the diagnoses, ``shape_note`` follows the expected shape.
    """
    dtype = like.dtype if dtype is None else dtype
    if out is None:
        ret = f"return {what}" if what else "return"
        raise CheckFailure(f"{case}: {who} returned None.\n  Diagnosis: "
                           f"did you forget `{ret}`?")
    if not isinstance(out, Tensor):
        raise CheckFailure(f"{case}: expected {kind}, got {type(out).__name__} "
                           f"{fmt(out)}.\n  Diagnosis: {not_tensor_hint}")
    if out.shape != like.shape:
        raise CheckFailure(f"{case}: the result has shape {tuple(out.shape)}, "
                           f"expected {tuple(like.shape)}{shape_note}.")
    if out.dtype != dtype:
        raise CheckFailure(f"{case}: the result has dtype {out.dtype}, expected "
                           f"{dtype}.\n  Diagnosis: {dtype_hint}")
    return out


def _which(got: Tensor, candidates: list[tuple[str, Tensor]], expected: Tensor) -> str | None:
    """The first hint whose wrong value matches ``got`` (and not ``expected``)."""
    for hint, value in candidates:
        if _close(got, value) and not _close(value, expected):
            return hint
    return None


def _fail_value(case: str, got: Tensor, expected: Tensor, hint: str | None) -> CheckFailure:
    """Standard value mismatch with an optional diagnosis."""
    msg = f"{case}: expected {fmt(expected)}, got {fmt(got)}."
    if hint:
        msg += f"\n  Diagnosis: {hint}"
    return CheckFailure(msg)


# --------------------------------------------------------------------------
# Exercise 5.1: nesterov_direction
# --------------------------------------------------------------------------

def check_nesterov_direction(nesterov_direction: Callable[..., Any]) -> None:
    r"""Check ``nesterov_direction(g, buf, momentum)`` $= g + \mu\,b$ (new buffer)."""
    name = "nesterov_direction"
    require_function(nesterov_direction, name)
    gen = torch.Generator().manual_seed(51)
    cases = [("float32, 3 elements, momentum=0.9", (3,), _F32, 0.9),
             ("float64 2x3, momentum=0.5", (2, 3), _F64, 0.5),
             ("0-d float32, momentum=0.99", (), _F32, 0.99),
             ("float32, 4 elements, momentum=0 (then d = g)", (4,), _F32, 0.0),
             ("float32, 64 elements, momentum=0.9", (64,), _F32, 0.9)]
    exact = True
    for label, shape, dtype, mu in cases:
        case = f"case '{label}'"
        g = torch.randn(shape, generator=gen, dtype=dtype)
        buf = torch.randn(shape, generator=gen, dtype=dtype)
        g_in, buf_in = g.clone(), buf.clone()
        out = call(nesterov_direction, name, case, g_in, buf_in, mu)
        if not torch.equal(g_in, g) or not torch.equal(buf_in, buf):
            which = "g" if not torch.equal(g_in, g) else "buf"
            raise CheckFailure(
                f"{case}: `{name}` changed its input `{which}` in place.\n  Diagnosis: "
                "compute the direction out of place, `g.add(buf, alpha=momentum)`; "
                "`g.add_(...)` would overwrite the gradient and `buf.mul_(...)` "
                "the momentum buffer.")
        out = _returned_tensor(out, g, case, "g.add(buf, alpha=momentum)")
        expected = g.add(buf, alpha=mu)
        if not _close(out, expected):
            hint = _which(out, [
                ("you swapped the roles: torch's direction is g + μ·buf (the "
                 "gradient plus μ times the buffer), not buf + μ·g.", buf + mu * g),
                ("that is plain heavy-ball momentum (d = buf). Nesterov looks one "
                 "step further: d = g + μ·buf.", buf),
                ("`buf` is already the NEW buffer b_t = μ·b_(t−1) + g, so "
                 "d = g + μ·buf; the expanded form (1 + μ)·g + μ²·b uses the OLD "
                 "buffer, which this function does not get.",
                 (1 + mu) * g + mu * mu * buf),
                ("wrong sign: d = g + μ·buf (the minus comes later, θ − lr·d).",
                 g - mu * buf),
                ("you forgot the momentum factor: d = g + μ·buf, not g + buf.", g + buf),
                ("you forgot the gradient: d = g + μ·buf, not μ·buf.", mu * buf),
                ("you scaled the whole sum: d = g + μ·buf, not μ·(g + buf).",
                 mu * (g + buf)),
            ], expected)
            raise _fail_value(case, out, expected, hint)
        exact = exact and torch.equal(out, expected)
    how = ("bit for bit, as torch" if exact else
           "to rounding (g.add(buf, alpha=momentum) is bit-exact: see the "
           "floating-point section)")
    passed(f"{name}: {len(cases)} cases (float32/float64, 0-d to 2-D, momentum 0 "
           f"to 0.99) match d = g + μ·buf {how}; g and buf unchanged")


# --------------------------------------------------------------------------
# Exercise 5.2: decayed_gradient
# --------------------------------------------------------------------------

def check_decayed_gradient(decayed_gradient: Callable[..., Any]) -> None:
    r"""Check ``decayed_gradient(grad, param, weight_decay, maximize)``.

    Expected: $g = s\nabla + \lambda\theta$ with $s = -1$ under maximize.
    """
    name = "decayed_gradient"
    require_function(decayed_gradient, name)
    gen = torch.Generator().manual_seed(52)
    cases = [("float32, weight_decay=0, maximize=False", (3,), _F32, 0.0, False),
             ("float32, weight_decay=0.1, maximize=False", (3,), _F32, 0.1, False),
             ("float32, weight_decay=0, maximize=True", (3,), _F32, 0.0, True),
             ("float32, weight_decay=0.1, maximize=True", (4,), _F32, 0.1, True),
             ("float64 2x2, weight_decay=0.5, maximize=True", (2, 2), _F64, 0.5, True),
             ("0-d float64, weight_decay=0.01, maximize=False", (), _F64, 0.01, False),
             ("float32 8x8, weight_decay=0.1, maximize=True", (8, 8), _F32, 0.1, True)]
    exact = True
    for label, shape, dtype, wd, maximize in cases:
        case = f"case '{label}'"
        grad = torch.randn(shape, generator=gen, dtype=dtype)
        param = torch.randn(shape, generator=gen, dtype=dtype) * 3
        grad_in, param_in = grad.clone(), param.clone()
        out = call(decayed_gradient, name, case, grad_in, param_in, wd, maximize)
        if not torch.equal(grad_in, grad):
            raise CheckFailure(
                f"{case}: `{name}` changed `grad` in place (it is now "
                f"{fmt(grad_in)}).\n  Diagnosis: torch never modifies p.grad: "
                "negate out of place, `g = -grad`, and add weight decay out of "
                "place, `g = g.add(param, alpha=weight_decay)` (not add_/neg_).")
        if not torch.equal(param_in, param):
            raise CheckFailure(
                f"{case}: `{name}` changed `param` in place.\n  Diagnosis: this "
                "function only builds the gradient, g = ±grad + λ·θ. (Shrinking θ "
                "directly, θ ← θ − lr·λ·θ, is DECOUPLED decay, SGDW; torch's SGD "
                "folds λ·θ into the gradient instead.)")
        out = _returned_tensor(out, grad, case, "g")
        s = -1.0 if maximize else 1.0
        expected = (-grad if maximize else grad).add(param, alpha=wd)
        if not _close(out, expected):
            hint = _which(out, [
                ("you negated after adding weight decay, −(grad + λ·θ): then weight "
                 "decay pushes θ away from 0 under maximize. Negate the gradient "
                 "FIRST, g = −grad, then add λ·θ.", -(grad + wd * param)),
                ("maximize is ignored: with maximize=True start from g = −grad.",
                 grad + wd * param),
                ("weight decay is missing: add λ·θ, "
                 "`g = g.add(param, alpha=weight_decay)`.", s * grad),
                ("weight decay has the wrong sign: the gradient of +½λ‖θ‖² is "
                 "+λ·θ, so ADD it.", s * grad - wd * param),
                ("the gradient of ½λ‖θ‖² is λ·θ, not ½λ·θ.",
                 s * grad + wd / 2 * param),
                ("you returned λ·θ only: g = ±grad + λ·θ.", wd * param),
                ("you multiplied instead of adding: g = ±grad + λ·θ.",
                 s * grad * wd * param),
            ], expected)
            raise _fail_value(case, out, expected, hint)
        exact = exact and torch.equal(out, expected)
    how = ("bit for bit, as torch" if exact else
           "to rounding (g.add(param, alpha=weight_decay) is bit-exact: see "
           "the floating-point section)")
    passed(f"{name}: {len(cases)} cases (weight_decay 0 or not × maximize, "
           f"float32/float64) match g = ±grad + λ·θ {how}; grad and param unchanged")


# --------------------------------------------------------------------------
# Exercise 5.3: ulp_distance
# --------------------------------------------------------------------------

def _wrap_int32(x: Tensor) -> Tensor:
    """What int64 values become after overflowing int32 arithmetic."""
    return (x + 2 ** 31) % 2 ** 32 - 2 ** 31


def _ulp_reference(a: Tensor, b: Tensor, signed: bool = False) -> Tensor:
    """Element-wise ulp distance (int64), the same as course.floating_point's."""
    int_dtype = torch.int32 if a.dtype == _F32 else torch.int64
    lo = torch.iinfo(int_dtype).min

    def key(x: Tensor) -> Tensor:
        k = x.contiguous().view(int_dtype).to(torch.int64)
        return torch.where(k < 0, lo - k, k)
    diff = key(a) - key(b)
    return diff if signed else diff.abs()


def _ulp_cases() -> list[tuple[str, Tensor, Tensor]]:
    f32_tiny = torch.finfo(_F32).tiny * torch.finfo(_F32).eps  # smallest subnormal
    a = torch.tensor([1.0, -2.5, 0.1, 3.0e38], dtype=_F32)
    x64 = torch.tensor([1.0, -7.25, 1e-300, 123.456], dtype=_F64)
    inf32 = torch.full((4,), float("inf"))
    return [
        ("float32, equal values", a, a.clone()),
        ("float32, neighbours a and nextafter(a, +inf)", a, torch.nextafter(a, inf32)),
        ("float32, negative neighbours (toward -inf)",
         -a.abs(), torch.nextafter(-a.abs(), -inf32)),
        ("float32, 1.0 vs 2.0 (2**23 floats apart)",
         torch.tensor([1.0]), torch.tensor([2.0])),
        ("float32, across zero: -0.0 vs +0.0, -tiny vs +tiny, -1 vs +1",
         torch.tensor([-0.0, -f32_tiny, -1.0]), torch.tensor([0.0, f32_tiny, 1.0])),
        ("float32, huge values of opposite sign (-3e38 vs 3e38)",
         torch.tensor([-3.0e38]), torch.tensor([3.0e38])),
        ("float32 2x3, b < a and b > a mixed",
         torch.tensor([[1.0, 2.0, -3.0], [0.5, -0.25, 8.0]]),
         torch.tensor([[1.0000001, 1.9999999, -3.0000002], [0.5, -0.2500001, 7.9999995]])),
        ("float64, neighbours and 4 steps apart",
         x64, torch.nextafter(torch.nextafter(x64, -x64), -x64)),
        ("float64, across zero: -0.0 vs +0.0 and -1 vs 1",
         torch.tensor([-0.0, -1.0], dtype=_F64), torch.tensor([0.0, 1.0], dtype=_F64)),
    ]


def check_ulp_distance(ulp_distance: Callable[..., Any]) -> None:
    """Check ``ulp_distance(a, b)``: element-wise ulps between float tensors (int64)."""
    name = "ulp_distance"
    require_function(ulp_distance, name)
    cases = _ulp_cases()
    for label, a, b in cases:
        case = f"case '{label}'"
        a_in, b_in = a.clone(), b.clone()
        out = call(ulp_distance, name, case, a_in, b_in)
        if not (torch.equal(a_in, a) and torch.equal(b_in, b)):
            raise CheckFailure(f"{case}: `{name}` changed its inputs in place: "
                               "reinterpret with .view(...) and compute new tensors.")
        _returned_tensor(
            out, a, case, who=f"`{name}`", kind=f"an int64 tensor of shape {tuple(a.shape)}",
            not_tensor_hint="return the element-wise distances as a tensor (no .item(), "
            "no max()).", shape_note=" (one distance per element)", dtype=torch.int64,
            dtype_hint="an ulp distance is a whole number of steps: compare the bit "
            "patterns, `a.view(torch.int32)` (float32) or `a.view(torch.int64)` "
            "(float64), converted with .to(torch.int64).")
        expected = _ulp_reference(a, b)
        if not torch.equal(out, expected):
            int_dtype = torch.int32 if a.dtype == _F32 else torch.int64
            raw_a = a.view(int_dtype).to(torch.int64)
            raw_b = b.view(int_dtype).to(torch.int64)
            hint = None
            if torch.equal(out, -expected) or torch.equal(out.abs(), expected):
                hint = ("some distances are negative: return the absolute value "
                        "of the difference of the keys, `.abs()`.")
            elif torch.equal(out, (raw_a - raw_b).abs()):
                hint = ("negative floats are stored as sign + magnitude, so their "
                        "bit patterns don't continue the positive ones: -0.0 and "
                        "+0.0 are equal but their int patterns differ by 2**31 "
                        "(float32). Map a negative pattern k to "
                        "torch.iinfo(int_dtype).min - k before subtracting.")
            elif a.dtype == _F32 and torch.equal(out, _wrap_int32(
                    _ulp_reference(a, b, signed=True)).abs()):
                hint = ("the difference overflowed int32: convert the keys to "
                        "int64 (.to(torch.int64)) BEFORE subtracting.")
            raise CheckFailure(
                f"{case}: a = {_hexes(a)}, b = {_hexes(b)}: expected "
                f"{expected.tolist()}, got {out.tolist()}."
                + (f"\n  Diagnosis: {hint}" if hint else ""))
    passed(f"{name}: {len(cases)} cases (neighbours, 2**23 apart, across zero, "
           "±3e38, float32 and float64, 1-D and 2-D) give exact int64 distances")


def _hexes(t: Tensor) -> str:
    """Floats as short hex strings (exact) for messages."""
    vals = [float(v).hex() for v in t.reshape(-1).tolist()[:4]]
    return "[" + ", ".join(vals) + (", ...]" if t.numel() > 4 else "]")


# --------------------------------------------------------------------------
# Exercise 5.4: sgd_update
# --------------------------------------------------------------------------

STEPS = 6


class _Flags(NamedTuple):
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    maximize: bool = False


# From plain SGD to everything at once; the first failing case names the mistake.
_CONFIGS = [
    _Flags(),
    _Flags(weight_decay=0.1),
    _Flags(maximize=True),
    _Flags(weight_decay=0.1, maximize=True),
    _Flags(momentum=0.9),
    _Flags(momentum=0.9, dampening=0.3),
    _Flags(momentum=0.9, weight_decay=0.1),
    _Flags(momentum=0.9, dampening=0.3, weight_decay=0.1),
    _Flags(momentum=0.9, maximize=True),
    _Flags(momentum=0.9, weight_decay=0.1, maximize=True),
    _Flags(momentum=0.9, dampening=0.3, weight_decay=0.1, maximize=True),
    _Flags(momentum=0.9, nesterov=True),
    _Flags(momentum=0.9, weight_decay=0.1, nesterov=True),
    _Flags(momentum=0.9, nesterov=True, maximize=True),
    _Flags(momentum=0.9, weight_decay=0.1, nesterov=True, maximize=True),
    _Flags(dampening=0.3),  # ignored without momentum
]
# dtype, shape, lr ("tensor": a 0-d float32 tensor, as torch accepts)
_VARIANTS = [(_F32, (4, 5), 0.1), (_F32, (), "tensor"), (_F64, (2, 3, 4), "tensor"),
             (_F64, (), 0.1), (_F32, (7,), "tensor"), (_F64, (3, 3), 0.1)]


def _label(flags: _Flags, dtype: torch.dtype, shape: tuple[int, ...], lr: Any) -> str:
    parts = [f"{str(dtype).replace('torch.', '')} {'0-d' if not shape else shape}",
             "lr=tensor(0.05)" if lr == "tensor" else f"lr={lr}"]
    for field, default in zip(_Flags._fields, _Flags()):
        value = getattr(flags, field)
        if value != default:
            parts.append(field if value is True else f"{field}={value}")
    return ", ".join(parts)


class _Delegation(BaseException):
    """Raised by torch's / the course's SGD while the learner's code runs."""


def _delegation_targets() -> list[tuple[Any, str]]:
    import torch.optim._functional as functional
    import torch.optim.sgd as torch_sgd
    return [(torch_sgd, "sgd"), (torch_sgd, "_single_tensor_sgd"),
            (torch_sgd, "_multi_tensor_sgd"), (torch_sgd, "_fused_sgd"),
            (functional, "sgd"), (torch.optim.SGD, "__init__"), (torch, "_fused_sgd_"),
            (course.sgd, "sgd_update"), (course.sgd, "update_one"),
            (course.sgd, "update_many"), (course.sgd, "sgd_update_foreach"),
            (course.optim, "update_many"), (course.optim, "sgd_update_foreach"),
            (course.optim.SGD, "__init__")]


_MISSING = object()


@contextmanager
def _no_delegation(called: list[str]) -> Iterator[None]:
    """Make torch's and the course's SGD raise while the block runs; restore after."""
    saved: list[tuple[Any, str, Any]] = []
    try:
        for owner, attr in _delegation_targets():
            if isinstance(owner, type):
                original = vars(owner).get(attr, _MISSING)
            else:
                original = getattr(owner, attr, _MISSING)
                if original is _MISSING:
                    continue
            label = f"{getattr(owner, '__name__', owner)}.{attr}"

            def trap(*args: Any, _label: str = label, **kwargs: Any) -> Any:
                called.append(_label)
                raise _Delegation(_label)
            saved.append((owner, attr, original))
            setattr(owner, attr, trap)
        yield
    finally:
        for owner, attr, original in reversed(saved):
            if original is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


_SUSPECT_NAMES = {"SGD", "_single_tensor_sgd", "_multi_tensor_sgd", "_fused_sgd",
                  "_fused_sgd_", "_functional", "update_one", "update_many",
                  "sgd_update_foreach"}


def _reject_delegation_by_source(fn: Callable[..., Any], name: str) -> None:
    module = getattr(fn, "__module__", "") or ""
    names = source_names(fn)
    suspect = names & _SUSPECT_NAMES or {n for n in names if n.startswith(
        ("torch.optim", "course.sgd", "course.optim"))}
    if module.startswith(("torch.optim", "course.sgd", "course.optim")) or suspect:
        raise CheckFailure(f"`{name}`: {DELEGATES}")


def _forbidden_code() -> dict[Any, str]:
    """Code objects of torch's and the course's SGD, to spot them being run even
    through a reference bound before the check (which patching cannot catch)."""
    import torch.optim.sgd as torch_sgd
    functions = {f"torch.optim.sgd.{n}": getattr(torch_sgd, n) for n in
                 ("sgd", "_single_tensor_sgd", "_multi_tensor_sgd", "_fused_sgd")}
    functions.update({"torch.optim.SGD.__init__": torch.optim.SGD.__init__,
                      "torch.optim.SGD.step": torch.optim.SGD.step,
                      "course.optim.SGD.step": course.optim.SGD.step})
    functions.update({f"course.sgd.{n}": getattr(course.sgd, n) for n in
                      ("sgd_update", "update_one", "update_many",
                       "sgd_update_foreach", "_foreach_group")})
    codes = {}
    for label, f in functions.items():
        for _ in range(10):  # decorators (functools.wraps) keep __wrapped__
            if not hasattr(f, "__wrapped__"):
                break
            f = f.__wrapped__
        if hasattr(f, "__code__"):
            codes[f.__code__] = label
    return codes


@contextmanager
def _watch(called: list[str], codes: dict[Any, str]) -> Iterator[None]:
    """Record every forbidden function that runs inside the block."""
    previous = sys.getprofile()

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            label = codes.get(frame.f_code)
            if label is not None:
                called.append(label)
        elif event == "c_call" and getattr(arg, "__name__", "") == "_fused_sgd_":
            called.append("torch._fused_sgd_")
    sys.setprofile(profiler)
    try:
        yield
    finally:
        sys.setprofile(previous)


def _run_learner(fn: Callable[..., Any], name: str, case: str, codes: dict[Any, str],
                 *args: Any, **kwargs: Any) -> Any:
    called: list[str] = []
    out = None
    try:
        with _no_delegation(called), _watch(called, codes):
            out = call(fn, name, case, *args, **kwargs)
    except _Delegation:
        called.append("torch's SGD")
    if called:
        raise CheckFailure(f"{case}: `{name}` called {called[0]}.\n  Diagnosis: {DELEGATES}")
    return out


def _diagnose(fn: Callable[..., Any], where: str, what: str,
              state: tuple[Tensor, Tensor, Tensor | None], hyper: dict[str, Any],
              got: tuple[Tensor, Any], expected: tuple[Tensor, Any]) -> CheckFailure:
    """Name the mistake whose result equals the learner's, else a generic mismatch."""
    p0, g, b0 = state
    got_p, got_b = got
    exp_p, exp_b = expected
    use_buf = hyper["momentum"] != 0
    matching = []
    for mistake in VALUE_MISTAKES:
        p = p0.clone()
        try:
            b = mistake.update(p, g.clone(), None if b0 is None else b0.clone(), **hyper)
        except Exception:  # noqa: BLE001 - a mutant that cannot run is no match
            continue
        if _same_bits(got_p, p) and (not use_buf or _same_bits(got_b, b)):
            matching.append(mistake)
    bad_got, bad_exp = (got_p, exp_p) if not _same_bits(got_p, exp_p) else (got_b, exp_b)
    detail = f"{where}: {what} {_first_difference(bad_got, bad_exp)}."
    try:
        ulp = max(max_ulp_distance(got_p, exp_p),
                  max_ulp_distance(got_b, exp_b) if use_buf else 0)
    except (TypeError, ValueError):
        ulp = None
    if matching:
        text = diagnosis(pick(matching, fn), ulp or 0)
        return CheckFailure(f"{detail}\n  Diagnosis: {text}")
    if ulp is not None and ulp <= 64:
        return CheckFailure(
            f"{detail}\n  Diagnosis: your result agrees to {ulp} ulp but not bit for "
            "bit: torch computes each a + c·b with ONE rounding (a fused "
            "multiply-add). Use exactly its operations: g.add(param, "
            "alpha=weight_decay), buf.mul_(momentum).add_(g, alpha=1 - dampening), "
            "g.add(buf, alpha=momentum) and param.add_(d, alpha=-lr).")
    return CheckFailure(detail)


def _hyper(flags: _Flags, lr: Any) -> dict[str, Any]:
    return dict(lr=torch.tensor(0.05) if lr == "tensor" else lr, **flags._asdict())


def _run_case(fn: Callable[..., Any], name: str, label: str, seed: int,
              flags: _Flags, dtype: torch.dtype, shape: tuple[int, ...], lr: Any,
              codes: dict[Any, str]) -> None:
    gen = torch.Generator().manual_seed(seed)
    p0 = torch.randn(shape, generator=gen, dtype=dtype)
    grads = [torch.randn(shape, generator=gen, dtype=dtype) for _ in range(STEPS)]
    hyper = _hyper(flags, lr)
    ref_p, ref_b = p0.clone(), None
    param, buf = p0.clone(), None  # the learner's state, kept across steps
    use_buf = flags.momentum != 0
    for step, g in enumerate(grads, start=1):
        where = f"case '{label}', step {step} of {STEPS}"
        if step == 1 and use_buf:
            where += " (first step: momentum_buffer=None)"
        state = (ref_p.clone(), g, None if ref_b is None else ref_b.clone())
        ref_b = course.sgd.update_one(ref_p, g, ref_b, **hyper)
        g_in, p_before = g.clone(), param.clone()
        buf_in, buf_before = buf, None if buf is None else buf.clone()
        out = _run_learner(fn, name, where, codes, param, g_in, buf_in, **hyper)
        if not torch.equal(g_in, g):
            raise CheckFailure(f"{where}: grad was changed.\n  Diagnosis: {GRAD_IN_PLACE}")
        if torch.equal(param, p_before) and not torch.equal(ref_p, p_before):
            hint = PARAM_NOT_IN_PLACE
            if isinstance(out, Tensor) and _same_bits(out, ref_p):
                hint += (" (You returned the new parameter; the function must "
                         "return the momentum buffer, or None without momentum.)")
            raise CheckFailure(f"{where}: param is unchanged after the call.\n"
                               f"  Diagnosis: {hint}")
        if not use_buf:
            if out is not None:
                raise CheckFailure(f"{where}: you returned a {type(out).__name__}, "
                                   "expected None.\n  Diagnosis: "
                                   f"{RETURNED_BUFFER_WITHOUT_MOMENTUM}")
        else:
            if out is None:
                raise CheckFailure(f"{where}: returned None.\n  Diagnosis: {RETURNED_NONE}")
            if isinstance(out, (tuple, list)):
                raise CheckFailure(
                    f"{where}: you returned a {type(out).__name__}.\n  Diagnosis: "
                    "return only the momentum buffer: param is updated in place "
                    "(param.add_(d, alpha=-lr)), not returned.")
            _returned_tensor(out, p0, where, "buf")
            if step == 1 and _shares_memory(out, g_in):
                raise CheckFailure(f"{where}: buffer aliases grad.\n  Diagnosis: "
                                   f"{BUFFER_ALIASES_GRAD}")
            if _shares_memory(out, param):
                raise CheckFailure(f"{where}: buffer aliases param.\n  Diagnosis: "
                                   f"{BUFFER_ALIASES_PARAM}")
        if not _same_bits(param, ref_p):
            raise _diagnose(fn, where, "param", state, hyper, (param, out), (ref_p, ref_b))
        if use_buf and not _same_bits(out, ref_b):
            if (buf_before is not None and out is buf_in
                    and torch.equal(out, buf_before)):
                raise CheckFailure(f"{where}: the returned buffer still holds the "
                                   f"old values.\n  Diagnosis: {STALE_BUFFER}")
            raise _diagnose(fn, where, "momentum buffer", state, hyper,
                            (param, out), (ref_p, ref_b))
        if use_buf and buf_in is not None and out is not buf_in:
            raise CheckFailure(f"{where}: the returned buffer is a new tensor.\n"
                               f"  Diagnosis: {BUFFER_NOT_IN_PLACE}")
        buf = out


def check_sgd_update(sgd_update: Callable[..., Any]) -> None:
    r"""Check ``sgd_update(param, grad, momentum_buffer, *, lr, momentum=0,
    dampening=0, weight_decay=0, nesterov=False, maximize=False)``.

    Every flag combination (16 configurations × 6 kinds of tensor: float32 and
    float64, 0-d to 3-D, a float lr and a 0-d tensor lr) runs 6 steps and is
    compared with :func:`course.sgd.sgd_update` (bit-exact with
    ``torch.optim.SGD``) with ``torch.equal``: the parameter (updated in place),
    the returned buffer (a fresh copy of the gradient on the first step, then
    the same tensor updated in place; None without momentum) and the caller's
    ``grad`` (never modified). Calling torch's or the course's SGD is rejected.
    """
    name = "sgd_update"
    require_function(sgd_update, name)
    _reject_delegation_by_source(sgd_update, name)
    cases = list(itertools.product(_CONFIGS, _VARIANTS))
    codes = _forbidden_code()
    for seed, (flags, (dtype, shape, lr)) in enumerate(cases):
        _run_case(sgd_update, name, _label(flags, dtype, shape, lr), 500 + seed,
                  flags, dtype, shape, lr, codes)
    passed(f"{name}: {len(cases)} cases × {STEPS} steps (every flag combination, "
           "float and tensor lr, float32/float64, 0-d to 3-D) equal torch's SGD bit "
           "for bit; param and buffer updated in place, grad untouched")
