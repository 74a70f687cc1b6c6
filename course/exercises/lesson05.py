r"""Exercise specs of 05-the-full-update-rule: torch's SGD step for one tensor.

Torch's order (maximize → weight decay → momentum → nesterov → −lr), with
$s = -1$ under ``maximize``:

$$g = s\,\nabla + \lambda\theta,\quad
b = \begin{cases} g & \text{first step} \\ \beta b + (1-\tau) g & \text{later}\end{cases},\quad
d = \begin{cases} g + \beta b & \text{nesterov} \\ b & \text{else}\end{cases},\quad
\theta \leftarrow \theta - \gamma d .$$

- ``nesterov_direction`` -- $d = g + \beta b$ with the NEW buffer.
- ``decayed_gradient`` -- the first two lines, $g = s\nabla + \lambda\theta$.
- ``ulp_distance`` -- the distance between two floats in ulps (exact, int64).
- ``sgd_update`` -- the whole rule, bit for bit with ``torch.optim.SGD``, over
  the full flag grid and several steps (a registered flow: the buffer returned
  by one step goes into the next). A wrong result is replayed through the
  catalogued wrong rules of :mod:`course.exercises.sgd_mistakes`.

``nesterov_direction`` and ``decayed_gradient`` are compared within float64
rounding; a float32 result counts as the formula's value when it is within
float32 rounding of the float64 formula (computed with torch's C tensor
methods, which the learner's code cannot patch). Hidden cases are drawn from
each verification's seed: shapes, values, momentum factors (also 0 and above
1), weight decays, learning rates (float and 0-d tensor), step counts, and
the pairs of floats of ``ulp_distance`` (equal, neighbours, opposite signs,
+0.0/-0.0, powers of two, float32's extremes).

Two predict-then-run questions run their experiment when checked:

- ``predict_decay_order`` -- torch's coupled decay against the decay added
  behind the buffer (``d = b + λθ``): bit-identical after one step, after two?
- ``predict_ulps_1_to_1000`` -- how many float32 ulps from 1.0 to 1000.0.
"""

from __future__ import annotations

import builtins
import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from course.exercises import sgd_mistakes
from course.exercises.sgd_mistakes import (
    BEHAVIOUR_MISTAKES,
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
    as_spec,
    pick,
    source_names,
)
from course.exercises.spec import Case, Exercise, Mistake, Question, Run, run_case
from course.exercises.values import COURSE_SGD, TORCH_SGD, fmt, same_storage, type_name

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))

#: The course's answer keys, disabled while a submission is graded.
FORBIDDEN = [
    *TORCH_SGD, *COURSE_SGD,
    "course.momentum.torch_momentum_step",
    "course.floating_point.ulp_distance", "course.floating_point.max_ulp_distance",
    "course.floating_point._keys",
]

_F32, _F64 = torch.float32, torch.float64
#: torch's tensor type and C tensor methods (an immutable type: the learner's
#: code cannot patch them), captured before any learner code runs.
_TENSOR = torch.Tensor
_TB = torch._C.TensorBase
_FROM_NUMPY = torch.from_numpy
_PARAMETER = torch.nn.Parameter
_NO_GRAD = torch.no_grad
_DTYPES = {np.dtype(np.float32): _F32, np.dtype(np.float64): _F64}


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def _dtype(t: Tensor) -> torch.dtype:
    return _TB.dtype.__get__(t)


def _kept(x: Any) -> Any:
    """A snapshot of a tensor (flattened) with its shape and dtype; None stays
    None; anything else becomes its type's name."""
    if type(x) is _TENSOR:
        return [_TB.reshape(_TB.clone(_TB.detach(x)), (-1,)), list(_TB.size(x)),
                str(_dtype(x))]
    return None if x is None else type_name(x)


def _tensor(values: Any, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor of numpy values (a copy), optionally cast to ``dtype``."""
    t = _FROM_NUMPY(np.array(values))
    return t if dtype is None else _TB.to(t, dtype)


def _randn(rng: np.random.Generator, shape: tuple[int, ...], dtype: torch.dtype = _F64) -> Tensor:
    return _tensor(rng.standard_normal(shape), dtype)


def _shape(rng: np.random.Generator, min_ndim: int = 0, max_ndim: int = 3) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(min_ndim,
                                                                           max_ndim + 1))))


def _snap32(out: Any, ref: Tensor) -> Any:
    """A float32 result within float32 rounding of the float64 formula ``ref``
    becomes the formula's float32 value (so plain arithmetic and torch's fused
    one compare equal); anything else is left as it is."""
    if type(out) is not _TENSOR or _dtype(out) != _F32 or \
            list(_TB.size(out)) != list(_TB.size(ref)):
        return out
    if _TB.numel(ref):
        err = _TB.item(_TB.max(_TB.abs(_TB.sub(_TB.double(out), ref))))
        scale = _TB.item(_TB.max(_TB.abs(ref)))
        if not err <= 1e-5 * (1.0 + scale):
            return out
    return _TB.float(ref)


def _close(a: Tensor, b: Tensor) -> bool:
    """Close at the dtype's precision (a few ulp of float32, or float64)."""
    rtol = 1e-5 if b.dtype == _F32 else 1e-12
    return bool(torch.allclose(a.to(b.dtype), b, rtol=rtol, atol=rtol * 1e-3))


def _lenient(mistakes: list[Mistake]) -> Callable[[Run, Run], str | None]:
    """A diagnosis for a value that a mistake gives to float32 rounding (the
    learner wrote it with other arithmetic than the catalogued mutant)."""
    def diagnose(got: Run, expected: Run) -> str | None:
        out, want = got.result, expected.result
        if type(out) is not _TENSOR or type(want) is not _TENSOR or out.shape != want.shape:
            return None
        for mistake in mistakes:
            try:
                with np.errstate(all="ignore"):
                    wrong = mistake.impl(*got.case.args)
            except Exception:  # noqa: BLE001, S112 - this mistake does not apply here
                continue
            if _close(out, wrong) and not _close(wrong, want):
                return mistake.text(got)
        return None
    return diagnose


def _inputs_changed(got: Run, *names: str) -> str | None:
    """The name of the first tensor argument the call changed, if any."""
    for name, before, after in zip(names, got.case.args, got.args):
        if not torch.equal(after, before):
            return name
    return None


def _returned_tensor(out: Any, like: Tensor, what: str = "", *,
                     who: str = "your function", kind: str = "a torch.Tensor",
                     not_tensor_hint: str = "compute with tensor operations (no "
                     ".item(), no numpy, no lists).",
                     shape_note: str = "", dtype: torch.dtype | None = None,
                     dtype_hint: str = "keep the inputs' dtype: combine the tensors "
                     "with Python-float factors, don't build new tensors with a "
                     "default dtype.") -> str | None:
    """What is wrong with a result that should be a tensor of ``like``'s shape
    and of ``dtype`` (default: ``like``'s); None if nothing."""
    dtype = like.dtype if dtype is None else dtype
    if out is None:
        ret = f"return {what}" if what else "return"
        return f"{who} returned None.\n  Diagnosis: did you forget `{ret}`?"
    if not isinstance(out, Tensor):
        return (f"expected {kind}, got {type(out).__name__} {fmt(out)}.\n"
                f"  Diagnosis: {not_tensor_hint}")
    if out.shape != like.shape:
        return (f"the result has shape {tuple(out.shape)}, expected "
                f"{tuple(like.shape)}{shape_note}.")
    if out.dtype != dtype:
        return (f"the result has dtype {out.dtype}, expected {dtype}.\n"
                f"  Diagnosis: {dtype_hint}")
    return None


def _how(runs: list[tuple[Run, Run]]) -> bool:
    """Whether every result equals torch's bit for bit (else: to rounding)."""
    return all(torch.equal(got.result, want.result) for got, want in runs)


# --------------------------------------------------------------------------
# Exercise 5.1: nesterov_direction
# --------------------------------------------------------------------------

def nesterov_direction(g: Tensor, buf: Tensor, momentum: float) -> Tensor:
    r"""Torch's Nesterov direction $d = g + \beta\,b$ (``buf`` is the NEW buffer)."""
    return g.add(buf, alpha=momentum)


def _nesterov_observe(run: Run) -> Any:
    g, b, mu = run.case.args
    out = run.result
    if type(g) is _TENSOR and _dtype(g) == _F32 and type(b) is _TENSOR:
        out = _snap32(out, _TB.add(_TB.double(g), _TB.double(b), alpha=mu))
    return [_kept(out), _kept(run.args[0]), _kept(run.args[1])]


def _nesterov_contract(got: Run, expected: Run) -> str | None:
    which = _inputs_changed(got, "g", "buf")
    if which:
        return (f"`nesterov_direction` changed its input `{which}` in place.\n  Diagnosis: "
                "compute the direction out of place, `g.add(buf, alpha=momentum)`; "
                "`g.add_(...)` would overwrite the gradient and `buf.mul_(...)` "
                "the momentum buffer.")
    return _returned_tensor(got.result, got.case.args[0], "g.add(buf, alpha=momentum)")


def _nesterov_hidden(rng: np.random.Generator) -> Iterator[Case]:
    # momentum 0, in (0, 1), close to 1 and above 1; float64 tensors of random shapes
    mus = [0.0, float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.95, 0.999)),
           float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.0, 1.0))]
    for k, mu in enumerate(mus):
        shape = () if k == 3 else _shape(rng)
        yield Case("random float64 tensors", (_randn(rng, shape), _randn(rng, shape), mu))
    # float32 (0-d and not), with values whose result float32 holds exactly
    for shape in ((), _shape(rng, 1)):
        g = _tensor(rng.integers(-8, 9, size=shape).astype(np.float32))
        b = _tensor(rng.integers(-8, 9, size=shape).astype(np.float32))
        yield Case("random float32 tensors", (g, b, float(rng.choice([0.25, 0.5, 1.5, 2.0]))))
    for _ in range(2):                                   # float32 of any value
        shape = _shape(rng)
        yield Case("random float32 tensors", (_randn(rng, shape, _F32), _randn(rng, shape, _F32),
                                              float(rng.uniform(0.0, 1.0))))


def _nesterov_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(51)
    cases = []
    for label, shape, dtype, mu in [
            ("float32, 3 elements, momentum=0.9", (3,), _F32, 0.9),
            ("float64 2x3, momentum=0.5", (2, 3), _F64, 0.5),
            ("0-d float32, momentum=0.99", (), _F32, 0.99),
            ("float32, 4 elements, momentum=0 (then d = g)", (4,), _F32, 0.0),
            ("float32, 64 elements, momentum=0.9", (64,), _F32, 0.9)]:
        g = torch.randn(shape, generator=gen, dtype=dtype)
        buf = torch.randn(shape, generator=gen, dtype=dtype)
        cases.append(Case(label, (g, buf, mu)))
    return cases


def _nesterov_passed(runs: list[tuple[Run, Run]]) -> str:
    how = ("bit for bit, as torch" if _how(runs) else
           "to rounding (g.add(buf, alpha=momentum) is bit-exact: see the "
           "floating-point section)")
    return (f"nesterov_direction: {len(runs)} cases (float32/float64, 0-d to 2-D, momentum 0 "
            f"to 0.99) match d = g + β·buf {how}; g and buf unchanged")


_NESTEROV_MISTAKES = [
    Mistake("nesterov_swapped",
            "you swapped the roles: torch's direction is g + β·buf (the "
            "gradient plus β times the buffer), not buf + β·g.",
            lambda g, buf, momentum: buf + momentum * g),
    Mistake("nesterov_ignored",
            "that is plain heavy-ball momentum (d = buf). Nesterov looks one "
            "step further: d = g + β·buf.",
            lambda g, buf, momentum: buf.clone()),
    Mistake("nesterov_expanded_old_buffer",
            "`buf` is already the NEW buffer b_t = β·b_(t−1) + g, so "
            "d = g + β·buf; the expanded form (1 + β)·g + β²·b uses the OLD "
            "buffer, which this function does not get.",
            lambda g, buf, momentum: (1 + momentum) * g + momentum * momentum * buf),
    Mistake("nesterov_wrong_sign",
            "wrong sign: d = g + β·buf (the minus comes later, θ − lr·d).",
            lambda g, buf, momentum: g - momentum * buf),
    Mistake("nesterov_momentum_factor_missing",
            "you forgot the momentum factor: d = g + β·buf, not g + buf.",
            lambda g, buf, momentum: g + buf),
    Mistake("nesterov_gradient_missing",
            "you forgot the gradient: d = g + β·buf, not β·buf.",
            lambda g, buf, momentum: momentum * buf),
    Mistake("nesterov_sum_scaled",
            "you scaled the whole sum: d = g + β·buf, not β·(g + buf).",
            lambda g, buf, momentum: momentum * (g + buf)),
]

NESTEROV_DIRECTION = Exercise(
    grade_id="test_nesterov_direction",
    name="nesterov_direction",
    reference=nesterov_direction,
    cases=_nesterov_cases(),
    observe=_nesterov_observe,
    passed="nesterov_direction: 5 cases (float32/float64, 0-d to 2-D, momentum 0 "
           "to 0.99) match d = g + β·buf bit for bit, as torch; g and buf unchanged",
    passed_text=_nesterov_passed,
    hidden=_nesterov_hidden,
    rtol=1e-12, atol=1e-12,
    rules=[_nesterov_contract],
    mistakes=_NESTEROV_MISTAKES,
    diagnose=_lenient(_NESTEROV_MISTAKES),
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 5.2: decayed_gradient
# --------------------------------------------------------------------------

def decayed_gradient(grad: Tensor, param: Tensor, weight_decay: float,
                     maximize: bool) -> Tensor:
    r"""$g = s\nabla + \lambda\theta$, $s = -1$ under maximize (out of place)."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g.add(param, alpha=weight_decay)
    return g


def _decayed_observe(run: Run) -> Any:
    grad, param, wd, maximize = run.case.args
    out = run.result
    if type(grad) is _TENSOR and _dtype(grad) == _F32 and type(param) is _TENSOR:
        ref = _TB.double(grad)
        if maximize:
            ref = _TB.neg(ref)
        out = _snap32(out, _TB.add(ref, _TB.double(param), alpha=wd))
    return [_kept(out), _kept(run.args[0]), _kept(run.args[1])]


def _decayed_contract(got: Run, expected: Run) -> str | None:
    (grad, param), (grad_in, param_in) = got.case.args[:2], got.args[:2]
    if not torch.equal(grad_in, grad):
        return (f"`decayed_gradient` changed `grad` in place (it is now "
                f"{fmt(grad_in)}).\n  Diagnosis: torch never modifies p.grad: "
                "negate out of place, `g = -grad`, and add weight decay out of "
                "place, `g = g.add(param, alpha=weight_decay)` (not add_/neg_).")
    if not torch.equal(param_in, param):
        return ("`decayed_gradient` changed `param` in place.\n  Diagnosis: this "
                "function only builds the gradient, g = ±grad + λ·θ. (Shrinking θ "
                "directly, θ ← θ − lr·λ·θ, is DECOUPLED decay, SGDW; torch's SGD "
                "folds λ·θ into the gradient instead.)")
    return _returned_tensor(got.result, grad, "g")


def _decayed_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for wd in (0.0, float(rng.uniform(0.01, 0.3)), float(rng.uniform(0.3, 1.0))):
        for maximize in (False, True):
            shape = _shape(rng, 1)
            grad, param = _randn(rng, shape), _randn(rng, shape)
            yield Case("random float64 tensors", (grad, param, wd, maximize))
            # float32 keeps its dtype; its values within float32 rounding
            yield Case("random float32 tensors", (_TB.float(grad), _TB.float(param), wd,
                                                  maximize))
    wd = float(rng.uniform(0.01, 1.0))
    grad, param = _randn(rng, ()), _randn(rng, ())                 # 0-d
    yield Case("random 0-d float64 tensors", (grad, param, wd, True))
    yield Case("random 0-d float32 tensors", (_TB.float(grad), _TB.float(param), wd, True))


def _decayed_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(52)
    cases = []
    for label, shape, dtype, wd, maximize in [
            ("float32, weight_decay=0, maximize=False", (3,), _F32, 0.0, False),
            ("float32, weight_decay=0.1, maximize=False", (3,), _F32, 0.1, False),
            ("float32, weight_decay=0, maximize=True", (3,), _F32, 0.0, True),
            ("float32, weight_decay=0.1, maximize=True", (4,), _F32, 0.1, True),
            ("float64 2x2, weight_decay=0.5, maximize=True", (2, 2), _F64, 0.5, True),
            ("0-d float64, weight_decay=0.01, maximize=False", (), _F64, 0.01, False),
            ("float32 8x8, weight_decay=0.1, maximize=True", (8, 8), _F32, 0.1, True)]:
        grad = torch.randn(shape, generator=gen, dtype=dtype)
        param = torch.randn(shape, generator=gen, dtype=dtype) * 3
        cases.append(Case(label, (grad, param, wd, maximize)))
    return cases


def _decayed_passed(runs: list[tuple[Run, Run]]) -> str:
    how = ("bit for bit, as torch" if _how(runs) else
           "to rounding (g.add(param, alpha=weight_decay) is bit-exact: see "
           "the floating-point section)")
    return (f"decayed_gradient: {len(runs)} cases (weight_decay 0 or not × maximize, "
            f"float32/float64) match g = ±grad + λ·θ {how}; grad and param unchanged")


def _sign(maximize: bool) -> float:
    return -1.0 if maximize else 1.0


_DECAYED_MISTAKES = [
    Mistake("maximize_flips_update",
            "you negated after adding weight decay, −(grad + λ·θ): then weight "
            "decay pushes θ away from 0 under maximize. Negate the gradient "
            "FIRST, g = −grad, then add λ·θ.",
            lambda grad, param, wd, maximize: _sign(maximize) * (grad + wd * param)),
    Mistake("maximize_ignored",
            "maximize is ignored: with maximize=True start from g = −grad.",
            lambda grad, param, wd, maximize: grad + wd * param),
    Mistake("weight_decay_ignored",
            "weight decay is missing: add λ·θ, "
            "`g = g.add(param, alpha=weight_decay)`.",
            lambda grad, param, wd, maximize: _sign(maximize) * grad),
    Mistake("weight_decay_wrong_sign",
            "weight decay has the wrong sign: the gradient of +½λ‖θ‖² is "
            "+λ·θ, so ADD it.",
            lambda grad, param, wd, maximize: _sign(maximize) * grad - wd * param),
    Mistake("weight_decay_half",
            "the gradient of ½λ‖θ‖² is λ·θ, not ½λ·θ.",
            lambda grad, param, wd, maximize: _sign(maximize) * grad + wd / 2 * param),
    Mistake("weight_decay_only",
            "you returned λ·θ only: g = ±grad + λ·θ.",
            lambda grad, param, wd, maximize: wd * param),
    Mistake("weight_decay_multiplied",
            "you multiplied instead of adding: g = ±grad + λ·θ.",
            lambda grad, param, wd, maximize: _sign(maximize) * grad * wd * param),
]

DECAYED_GRADIENT = Exercise(
    grade_id="test_decayed_gradient",
    name="decayed_gradient",
    reference=decayed_gradient,
    cases=_decayed_cases(),
    observe=_decayed_observe,
    passed="decayed_gradient: 7 cases (weight_decay 0 or not × maximize, "
           "float32/float64) match g = ±grad + λ·θ bit for bit, as torch; grad and "
           "param unchanged",
    passed_text=_decayed_passed,
    hidden=_decayed_hidden,
    rtol=1e-12, atol=1e-12,
    rules=[_decayed_contract],
    mistakes=_DECAYED_MISTAKES,
    diagnose=_lenient(_DECAYED_MISTAKES),
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 5.3: ulp_distance
# --------------------------------------------------------------------------

def _ulp_keys(x: Tensor) -> Tensor:
    """Bit patterns as int64 keys that increase with the float's value."""
    int_dtype = torch.int32 if x.dtype == _F32 else torch.int64
    k = x.contiguous().view(int_dtype).to(torch.int64)
    return torch.where(k < 0, torch.iinfo(int_dtype).min - k, k)


def ulp_distance(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise number of ulps between float tensors ``a`` and ``b`` (int64)."""
    return (_ulp_keys(a) - _ulp_keys(b)).abs()


def _raw_bits(x: Tensor) -> Tensor:
    return x.contiguous().view(torch.int32 if x.dtype == _F32 else torch.int64).to(torch.int64)


def _wrap_int32(x: Tensor) -> Tensor:
    """What int64 values become after overflowing int32 arithmetic."""
    return (x + 2 ** 31) % 2 ** 32 - 2 ** 31


def _int32_overflow(a: Tensor, b: Tensor) -> Tensor:
    """ulp_distance with the keys subtracted in int32 (float32 overflows)."""
    if a.dtype != _F32:
        return ulp_distance(a, b)
    return _wrap_int32(_ulp_keys(a) - _ulp_keys(b)).abs()


def _hexes(t: Tensor) -> str:
    """Floats as short hex strings (exact) for messages."""
    vals = [float(v).hex() for v in t.reshape(-1).tolist()[:4]]
    return "[" + ", ".join(vals) + (", ...]" if t.numel() > 4 else "]")


def _ulp_observe(run: Run) -> Any:
    return [_kept(run.result), _kept(run.args[0]), _kept(run.args[1])]


def _ulp_contract(got: Run, expected: Run) -> str | None:
    if _inputs_changed(got, "a", "b"):
        return ("`ulp_distance` changed its inputs in place: "
                "reinterpret with .view(...) and compute new tensors.")
    a = got.case.args[0]
    return _returned_tensor(
        got.result, a, who="`ulp_distance`",
        kind=f"an int64 tensor of shape {tuple(a.shape)}",
        not_tensor_hint="return the element-wise distances as a tensor (no .item(), "
        "no max()).", shape_note=" (one distance per element)", dtype=torch.int64,
        dtype_hint="an ulp distance is a whole number of steps: compare the bit "
        "patterns, `a.view(torch.int32)` (float32) or `a.view(torch.int64)` "
        "(float64), converted with .to(torch.int64).")


def _ulp_wrong_value(got: Run, expected: Run) -> str | None:
    """The value message: both inputs in hex, expected and actual distances."""
    from course.checks.derive import diagnosis
    a, b = got.case.args
    hint = diagnosis(ULP_DISTANCE, got, expected)
    return (f"a = {_hexes(a)}, b = {_hexes(b)}: expected {expected.result.tolist()}, "
            f"got {got.result.tolist()}." + (f"\n  Diagnosis: {hint}" if hint else ""))


_NOT_ABSOLUTE = ("some distances are negative: return the absolute value "
                 "of the difference of the keys, `.abs()`.")


def _ulp_diagnose(got: Run, expected: Run) -> str | None:
    out, want = got.result, expected.result
    if torch.equal(out, -want) or torch.equal(out.abs(), want):
        return _NOT_ABSOLUTE
    return None


def _ulp_cases() -> list[Case]:
    f32_tiny = torch.finfo(_F32).tiny * torch.finfo(_F32).eps  # smallest subnormal
    a = torch.tensor([1.0, -2.5, 0.1, 3.0e38], dtype=_F32)
    x64 = torch.tensor([1.0, -7.25, 1e-300, 123.456], dtype=_F64)
    inf32 = torch.full((4,), float("inf"))
    return [Case(label, (x, y)) for label, x, y in [
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
    ]]


def _ulp_pair(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Random a and b (same shape) with every kind of pair: close values, equal
    values, neighbours, opposite signs, +0.0 and -0.0, far apart."""
    rows, cols = int(rng.integers(5, 9)), int(rng.integers(2, 7))
    scale = float(10.0 ** rng.uniform(-3, 3))
    a = (rng.standard_normal((rows, cols)) * scale).astype(dtype)
    noise = rng.standard_normal((rows, cols)) * scale * float(10.0 ** rng.uniform(-7, -3))
    b = (a + noise.astype(dtype)).astype(dtype)
    # opposite signs (float64 values below 1.5: their distance fits an int64)
    small = np.clip(rng.standard_normal(cols), -1.4, 1.4).astype(dtype) \
        if dtype == np.float64 else a[0].copy()
    a[0], b[0] = small, -small
    b[1] = a[1]                                             # equal: 0
    b[2] = np.nextafter(a[2], dtype.type(np.inf))           # neighbours: 1
    a[3, 0], b[3, 0] = 0.0, -0.0
    a[3, 1], b[3, 1] = -0.0, float(np.finfo(dtype).tiny) * float(rng.uniform(1, 4))
    b[4] = (a[4] * float(rng.uniform(1.5, 4.0))).astype(dtype)   # far apart
    return a, b


def _ulp_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        a, b = _ulp_pair(rng, dtype)
        a, b = _tensor(a), _tensor(b)
        yield Case("random pairs", (a, b))
        yield Case("random pairs, swapped", (b, a))
        yield Case("equal values", (a, _TB.clone(a)))
    # a power of two and its double: 2**23 (float32) or 2**52 (float64) apart
    for dtype in (np.float32, np.float64):
        x = np.array([2.0 ** int(k) for k in rng.integers(-20, 20, size=3)], dtype=dtype)
        yield Case("powers of two", (_tensor(x), _tensor(2 * x)))
    big = float(rng.uniform(1e38, 3.4e38))                  # float32's extremes
    yield Case("float32's extremes", (_tensor(np.array([-big, -0.0, 1.0], dtype=np.float32)),
                                      _tensor(np.array([big, 0.0, 2.0], dtype=np.float32))))


ULP_DISTANCE = Exercise(
    grade_id="test_ulp_distance",
    name="ulp_distance",
    reference=ulp_distance,
    cases=_ulp_cases(),
    observe=_ulp_observe,
    passed="ulp_distance: 9 cases (neighbours, 2**23 apart, across zero, ±3e38, "
           "float32 and float64, 1-D and 2-D) give exact int64 distances",
    hidden=_ulp_hidden,
    rules=[_ulp_contract],
    after=[_ulp_wrong_value],
    mistakes=[
        Mistake("distance_not_absolute", _NOT_ABSOLUTE,
                lambda a, b: _ulp_keys(a) - _ulp_keys(b)),
        Mistake("sign_magnitude_keys",
                "negative floats are stored as sign + magnitude, so their "
                "bit patterns don't continue the positive ones: -0.0 and "
                "+0.0 are equal but their int patterns differ by 2**31 "
                "(float32). Map a negative pattern k to "
                "torch.iinfo(int_dtype).min - k before subtracting.",
                lambda a, b: (_raw_bits(a) - _raw_bits(b)).abs()),
        Mistake("int32_overflow",
                "the difference overflowed int32: convert the keys to "
                "int64 (.to(torch.int64)) BEFORE subtracting.", _int32_overflow),
    ],
    diagnose=_ulp_diagnose,
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 5.4: sgd_update
# --------------------------------------------------------------------------

STEPS = 6


#: The reference: the catalogue's rule without a mistake.
sgd_update = sgd_mistakes.torch_update


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


def _sgd_cases() -> list[Case]:
    cases = []
    for seed, (flags, (dtype, shape, lr)) in enumerate(itertools.product(_CONFIGS, _VARIANTS)):
        gen = torch.Generator().manual_seed(500 + seed)
        p0 = torch.randn(shape, generator=gen, dtype=dtype)
        grads = [torch.randn(shape, generator=gen, dtype=dtype) for _ in range(STEPS)]
        hyper = dict(lr=torch.tensor(0.05) if lr == "tensor" else lr, **flags._asdict())
        cases.append(Case(_label(flags, dtype, shape, lr), (p0, grads), hyper))
    return cases


def _sgd_flow(fn: Any, case: Case) -> list[Any]:
    """Run the steps of a case, feeding each step the buffer the previous one
    returned; per step: the parameter, the gradient and the returned buffer
    (snapshots), whether the buffer was updated in place and whether it
    aliases the gradient or the parameter. A case of parameters (leaves that
    require grad, updated under ``torch.no_grad()`` as in an optimizer) runs
    its parameters in turn at each step."""
    if case.data == "parameters":
        return _parameters_flow(fn, case)
    p0, grads = case.args
    param, buf = p0, None
    out: list[Any] = []
    for grad in grads:
        try:
            new = fn(param, grad, buf, **case.kwargs)
        except Exception as exc:  # recorded; the check explains it
            if type(exc).__name__ == "Forbidden":   # course.grading.lockdown's: graded as such
                raise
            out.append(f"raised {type(exc).__name__}")
            break
        out.append([_kept(param), _kept(grad), _kept(new),
                    new is buf if buf is not None else None,   # buffer updated in place
                    same_storage(new, grad), same_storage(new, param)])   # no aliasing
        buf = new
    return out


def _parameters_flow(fn: Any, case: Case) -> list[Any]:
    p0s, grads = case.args
    params = [_PARAMETER(p) for p in p0s]
    bufs: list[Any] = [None] * len(params)
    out: list[Any] = []
    for step in grads:
        for i, (p, g) in enumerate(zip(params, step)):
            _TB.grad.__set__(p, g)
            with _NO_GRAD():
                bufs[i] = fn(p, _TB.grad.__get__(p), bufs[i], **case.kwargs)
            out += [_kept(_TB.detach(p)), _kept(_TB.grad.__get__(p)), _kept(bufs[i])]
    return out


#: Which flags each hidden scenario sets (every one of torch's paths); the
#: values are drawn from the verification's seed.
_HIDDEN_CONFIGS = [
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


def _sgd_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for flags in _HIDDEN_CONFIGS:
        hyper = _hyper(rng, flags)
        # float lr; 0-d float32 tensor lr (on float64 and float32 tensors)
        for dtype, lr_kind in ((_F32, "float"), (_F64, "tensor"), (_F32, "tensor")):
            value = float(10.0 ** rng.uniform(-2.5, -0.3))
            lr = _tensor(np.float32(value)) if lr_kind == "tensor" else value
            shape = _shape(rng)
            steps = int(rng.integers(3, 7))
            p0 = _randn(rng, shape, dtype)
            grads = [_randn(rng, shape, dtype) for _ in range(steps)]
            yield Case("a random configuration", (p0, grads), dict(hyper, lr=lr))
    # as in an optimizer: parameters (leaves that require grad) under no_grad
    hyper = _hyper(rng, _HIDDEN_CONFIGS[int(rng.integers(len(_HIDDEN_CONFIGS)))])
    lr = float(10.0 ** rng.uniform(-2.5, -0.3))
    shapes = [_shape(rng, 1) for _ in range(3)]
    p0s = [_randn(rng, s) for s in shapes]
    grads = [[_randn(rng, s) for s in shapes] for _ in range(int(rng.integers(3, 6)))]
    yield Case("parameters under torch.no_grad()", (p0s, grads), dict(hyper, lr=lr),
               data="parameters")


# ---- the learner's check: every step of a visible case, in the old order --

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


class _Delegation(BaseException):
    """Raised by torch's / the course's SGD while the learner's code runs."""


def _delegation_targets() -> list[tuple[Any, str]]:
    import torch.optim._functional as functional
    import torch.optim.sgd as torch_sgd

    import course.optim
    import course.sgd
    return [(torch_sgd, "sgd"), (torch_sgd, "_single_tensor_sgd"),
            (torch_sgd, "_multi_tensor_sgd"), (torch_sgd, "_fused_sgd"),
            (functional, "sgd"), (torch.optim.SGD, "__init__"), (torch, "_fused_sgd_"),
            (course.sgd, "sgd_update"), (course.sgd, "update_one"),
            (course.sgd, "sgd"), (course.sgd, "_single_tensor_sgd"),
            (course.sgd, "_multi_tensor_sgd"), (course.sgd, "_fused_sgd"),
            (course.sgd, "sgd_update_foreach"), (course.optim, "sgd"),
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
                  "_fused_sgd_", "_functional", "update_one",
                  "sgd_update_foreach"}


def _delegates_by_source(fn: Callable[..., Any]) -> bool:
    module = getattr(fn, "__module__", "") or ""
    names = source_names(fn)
    suspect = names & _SUSPECT_NAMES or {n for n in names if n.startswith(
        ("torch.optim", "course.sgd", "course.optim"))}
    return bool(module.startswith(("torch.optim", "course.sgd", "course.optim")) or suspect)


def _forbidden_code() -> dict[Any, str]:
    """Code objects of torch's and the course's SGD, to spot them being run even
    through a reference bound before the check (which patching cannot catch)."""
    import torch.optim.sgd as torch_sgd

    import course.optim
    import course.sgd
    functions = {f"torch.optim.sgd.{n}": getattr(torch_sgd, n) for n in
                 ("sgd", "_single_tensor_sgd", "_multi_tensor_sgd", "_fused_sgd")}
    functions.update({"torch.optim.SGD.__init__": torch.optim.SGD.__init__,
                      "torch.optim.SGD.step": torch.optim.SGD.step,
                      "course.optim.SGD.step": course.optim.SGD.step})
    functions.update({f"course.sgd.{n}": getattr(course.sgd, n) for n in
                      ("sgd_update", "update_one", "sgd", "_single_tensor_sgd",
                       "_multi_tensor_sgd", "_fused_sgd", "sgd_update_foreach",
                       "_foreach_group")})
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


def _run_learner(fn: Callable[..., Any], where: str, codes: dict[Any, str],
                 *args: Any, **kwargs: Any) -> Any:
    from course.checks._common import CheckFailure, call
    called: list[str] = []
    out = None
    try:
        with _no_delegation(called), _watch(called, codes):
            out = call(fn, "sgd_update", where, *args, **kwargs)
    except _Delegation:
        called.append("torch's SGD")
    if called:
        raise CheckFailure(f"{where}: `sgd_update` called {called[0]}.\n"
                           f"  Diagnosis: {DELEGATES}")
    return out


def _max_ulp(got: Tensor, expected: Tensor) -> int | None:
    from course.floating_point import max_ulp_distance
    try:
        return max_ulp_distance(got, expected)
    except (TypeError, ValueError):
        return None


def _diagnose(fn: Callable[..., Any], where: str, what: str,
              state: tuple[Tensor, Tensor, Tensor | None], hyper: dict[str, Any],
              got: tuple[Tensor, Any], expected: tuple[Tensor, Any]) -> Any:
    """Name the catalogued mistake whose step from the same state gives the
    learner's bits, else a generic mismatch (a CheckFailure to raise)."""
    from course.checks._common import CheckFailure
    p0, g, b0 = state
    got_p, got_b = got
    exp_p, exp_b = expected
    use_buf = hyper["momentum"] != 0
    matching = []
    for mistake in SGD_UPDATE.mistakes:
        if mistake.name not in _VALUE_NAMES:
            continue
        p = p0.clone()
        try:
            b = mistake.impl(p, g.clone(), None if b0 is None else b0.clone(), **hyper)
        except Exception:  # noqa: BLE001, S112 - a mutant that cannot run is no match
            continue
        if _same_bits(got_p, p) and (not use_buf or _same_bits(got_b, b)):
            matching.append(mistake)
    bad_got, bad_exp = (got_p, exp_p) if not _same_bits(got_p, exp_p) else (got_b, exp_b)
    detail = f"{where}: {what} {_first_difference(bad_got, bad_exp)}."
    ulps = [_max_ulp(got_p, exp_p), _max_ulp(got_b, exp_b) if use_buf else 0]
    ulp = None if None in ulps else max(ulps)
    if matching:
        mistake = pick(matching, fn)
        text = sgd_mistakes.diagnosis(sgd_mistakes.MISTAKES[mistake.name], ulp or 0)
        return CheckFailure(f"{detail}\n  Diagnosis: {text}")
    if ulp is not None and ulp <= 64:
        return CheckFailure(
            f"{detail}\n  Diagnosis: your result agrees to {ulp} ulp but not bit for "
            "bit: torch computes each a + c·b with ONE rounding (a fused "
            "multiply-add). Use exactly its operations: g.add(param, "
            "alpha=weight_decay), buf.mul_(momentum).add_(g, alpha=1 - dampening), "
            "g.add(buf, alpha=momentum) and param.add_(d, alpha=-lr).")
    return CheckFailure(detail)


def _sgd_steps(got: Run, expected: Run) -> str | None:
    """The check of a visible case, step by step as the learner's notebook runs
    it: delegation, grad untouched, param updated in place, what is returned
    (None without momentum, else the buffer: a copy of the gradient on the
    first step, then the same tensor updated in place), and the bits of param
    and buffer (a wrong value is replayed through the catalogued mistakes).
    Raises the learner's message (it names the step), else returns None."""
    from course.checks._common import CheckFailure
    fn, case = got.fn, got.case
    if case is SGD_UPDATE.cases[0] and _delegates_by_source(fn):
        raise CheckFailure(f"`sgd_update`: {DELEGATES}")
    codes = _forbidden_code()
    p0, grads = case.args
    hyper = dict(case.kwargs)
    ref_p, ref_b = p0.clone(), None
    param, buf = p0.clone(), None  # the learner's state, kept across steps
    use_buf = hyper["momentum"] != 0
    for step, g in enumerate(grads, start=1):
        where = f"{case.name}, step {step} of {len(grads)}"
        if step == 1 and use_buf:
            where += " (first step: momentum_buffer=None)"
        state = (ref_p.clone(), g, None if ref_b is None else ref_b.clone())
        ref_b = sgd_update(ref_p, g, ref_b, **hyper)
        g_in, p_before = g.clone(), param.clone()
        buf_in, buf_before = buf, None if buf is None else buf.clone()
        out = _run_learner(fn, where, codes, param, g_in, buf_in, **hyper)
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
            problem = _returned_tensor(out, p0, "buf")
            if problem:
                raise CheckFailure(f"{where}: {problem}")
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
    return None


def _run_ulp(run: Run) -> int:
    """The learner's largest distance in ulp from torch's parameters in a run."""
    expected = run_case(SGD_UPDATE, SGD_UPDATE.reference, run.case)
    worst = 0
    for got, want in zip(run.result, expected.result):
        if type(got) is list and type(want) is list and type(got[0]) is list:
            ulp = _max_ulp(got[0][0], want[0][0])
            worst = max(worst, ulp or 0)
    return worst


def _zero_initial_buffer(param: Tensor, grad: Tensor, momentum_buffer: Tensor | None, *,
                         lr: Any, momentum: float = 0, dampening: float = 0,
                         weight_decay: Any = 0, nesterov: bool = False,
                         maximize: bool = False) -> Tensor | None:
    """The buffer started at zeros, as a learner writes it (its source names
    ``zeros_like``: that tells it from a dampened first step, same bits)."""
    g = decayed_gradient(grad, param, weight_decay, maximize)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = torch.zeros_like(g)
        buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = g.add(buf, alpha=momentum) if nesterov else buf
    param.add_(g, alpha=-lr)
    return buf if momentum != 0 else None


_VALUE_NAMES = frozenset(m.name for m in VALUE_MISTAKES)
#: Learner-shaped versions of catalogued mutants (default: the catalogue's update).
_LEARNER_SHAPED = {"zero_initial_buffer": _zero_initial_buffer}

SGD_UPDATE = Exercise(
    grade_id="test_sgd_update",
    name="sgd_update",
    reference=sgd_update,
    cases=_sgd_cases(),
    observe=lambda run: run.result,
    call=_sgd_flow,
    passed=f"sgd_update: {len(_CONFIGS) * len(_VARIANTS)} cases × {STEPS} steps (every "
           "flag combination, float and tensor lr, float32/float64, 0-d to 3-D) equal "
           "torch's SGD bit for bit; param and buffer updated in place, grad untouched",
    hidden=_sgd_hidden,
    rules=[_sgd_steps],
    # value mistakes first (the replay of a wrong step uses those), then the
    # contract ones (right bits, wrong behaviour: the step checks name them)
    mistakes=[as_spec(m, _LEARNER_SHAPED.get(m.name), ulp=_run_ulp)
              for m in VALUE_MISTAKES + BEHAVIOUR_MISTAKES],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Predict, then run
# --------------------------------------------------------------------------

#: The answers of the weight-decay-order question, in the lesson's words.
DECAY_ORDERS = ("identical after both steps", "identical after step 1 only",
                "different after both steps")


def _decay_order_of_run() -> str:
    """Which of :data:`DECAY_ORDERS` two float32 steps show: torch.optim.SGD
    (decay inside the buffer) against the decay added behind the buffer,
    ``d = buf + λθ`` (run, not formula)."""
    gen = torch.Generator().manual_seed(4)
    theta0 = torch.randn(1000, generator=gen)
    grads = [torch.randn(1000, generator=gen) for _ in range(2)]
    p = theta0.clone().requires_grad_()
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    theta, buf, same = theta0.clone(), None, []
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
        buf = grad.clone() if buf is None else buf.mul_(0.9).add_(grad)
        theta.add_(buf.add(theta, alpha=0.1), alpha=-0.1)
        same.append(torch.equal(p.detach(), theta))
    if same == [True, True]:
        return DECAY_ORDERS[0]
    if same == [True, False]:
        return DECAY_ORDERS[1]
    return DECAY_ORDERS[2]


PREDICT_DECAY_ORDER = Question(
    grade_id="test_predict_decay_order",
    name="predict_decay_order",
    answer=_decay_order_of_run,
    choices=DECAY_ORDERS,
    why=("on step 1 torch's buffer is a copy of g = grad + λθ₀ and the other rule's "
         "direction is buf + λθ₀ = grad + λθ₀: the same `add` on the same inputs, so the "
         "same bits. On step 2 torch's buffer still holds βλθ₀ from step 1 and the other "
         "one does not, so θ₂ differs by γβλθ₀ = 0.009·θ₀: a real difference, not rounding."),
)


def _ulps_from_1_to_1000() -> int:
    """The float32 ulps from 1.0 to 1000.0, counted from their bit patterns
    (positive floats: the difference of the patterns read as integers)."""
    bits = torch.tensor([1.0, 1000.0], dtype=_F32).view(torch.int32).tolist()
    return bits[1] - bits[0]


PREDICT_ULPS_1_TO_1000 = Question(
    grade_id="test_predict_ulps_1_to_1000",
    name="predict_ulps_1_to_1000",
    answer=_ulps_from_1_to_1000,
    rtol=0.05,
    unit="ulps",
    why=("every interval [2^k, 2^(k+1)) holds the same 2^23 float32 numbers, so from 1 to "
         "1000 there are 9 full intervals plus (1000 - 512)/512 of the tenth: "
         "9.95 × 2^23 ≈ 83.5 million ulps, not the 999 × 2^23 of evenly spaced floats."),
)


#: The graded cells, in notebook order.
EXERCISES = [NESTEROV_DIRECTION, PREDICT_DECAY_ORDER, DECAYED_GRADIENT,
             PREDICT_ULPS_1_TO_1000, ULP_DISTANCE, SGD_UPDATE]
