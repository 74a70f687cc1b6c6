r"""Exercise specs of 02-autograd: lesson 1 again, with ``torch.autograd``.

- ``autograd_derivative`` -- $f'(w)$ from ``backward()`` and ``.grad``, as a
  Python float (functions whose autograd derivative differs from the true one,
  ``w * w.detach()`` and ``relu`` at 0, make a finite-difference answer fail).
- ``finite_difference`` -- the central difference
  $(f(w + \varepsilon) - f(w - \varepsilon)) / 2\varepsilon$ (a spy that
  records where ``f`` is evaluated pins the default ``eps``).
- ``gd_step_autograd`` -- one step: zero the gradients, ``backward()``, update
  the same leaf tensors in place under ``torch.no_grad()``, return the loss
  before the step.
- ``fit_linear_regression`` -- full-batch gradient descent on the mean squared
  error from $w = 0, b = 0$ (trajectory, losses, types, shapes, inputs unchanged).

Two "predict, then run" questions: ``predict_grad_after_3`` (what ``.grad``
holds after three ``backward()`` calls without zeroing) and ``predict_rebind``
(what four steps of ``w = w - lr * w.grad`` do).

Every call runs in :func:`_guarded`: torch's global RNG state and grad mode are
restored afterwards, and whether the learner's code left gradient tracking on
is part of what is observed. Hidden cases are drawn from each verification's
seed: random functions and points, steps, quadratics, stale gradients and
regression problems in float32 and float64.
"""

from __future__ import annotations

import builtins
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from course.data import least_squares, make_regression
from course.exercises.spec import Case, Exercise, Mistake, Question, Run, run_case
from course.exercises.values import (
    COURSE_SGD,
    FLOAT_TYPES,
    TENSOR_TYPES,
    TORCH_SGD,
    array,
    fmt,
    generator,
    real,
    snap,
    sub_seed,
)

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))

#: The course's finite differences, autograd helper, closed-form MSE gradients
#: and every SGD (torch's and the course's), disabled while a submission is graded.
FORBIDDEN = [
    "course.gradcheck.central_difference", "course.gradcheck.autograd_gradient",
    "course.gradcheck.check_gradient", "course.gradcheck._difference",
    "course.stochastic.mse_gradient", "course.stochastic.per_example_gradients",
    *TORCH_SGD, *COURSE_SGD,
]

_F64 = torch.float64
# torch's state functions as they were at import (learner code may patch torch)
_GET_RNG, _SET_RNG = torch.random.get_rng_state, torch.random.set_rng_state
_GRAD_ON, _SET_GRAD = torch.is_grad_enabled, torch.set_grad_enabled
_NO_GRAD, _EQUAL = torch.no_grad, torch.equal
_ENABLE_GRAD = torch.enable_grad

NONE_HINT = "your function returned None: did you forget `return`?"
GRAD_OFF = ("switched gradient tracking off for the whole notebook "
            "(torch.set_grad_enabled(False)?).\n  Diagnosis: put only the update "
            "inside a `with torch.no_grad():` block; the block switches tracking "
            "back on when it ends.")


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------

def _guarded(fn: Any, *args: Any) -> tuple[Any, bool]:
    """``fn(*args)`` and whether grad mode was still on after it; torch's global
    RNG state and grad mode are restored whatever the call did."""
    state, mode = _GET_RNG(), _GRAD_ON()
    try:
        out = fn(*args)
        return out, bool(_GRAD_ON())
    finally:
        _SET_RNG(state)
        _SET_GRAD(mode)


def _attach(exc: BaseException, hint: str | None) -> None:
    """Remember a diagnosis on an exception (read back by :func:`_on_error`)."""
    try:
        exc.course_hint = hint  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass


def _on_error(case: Case, exc: BaseException) -> str | None:
    return getattr(exc, "course_hint", None)


def _returned_none(name: str) -> str:
    return f"`{name}` returned None.\n  Diagnosis: {NONE_HINT}"


def _grad_off(name: str, run: Run) -> str | None:
    return f"`{name}` {GRAD_OFF}" if not run.result["grad_on"] else None


def _grad_off_text(name: str) -> str:
    return f"`{name}` {GRAD_OFF}"


def _close(actual: Any, expected: Any, rtol: float, atol: float) -> bool:
    """Whether two numbers, arrays or tensors have one shape and are close."""
    try:
        a = np.asarray(_numpy(actual), dtype=float)
        e = np.asarray(_numpy(expected), dtype=float)
    except (TypeError, ValueError):
        return False
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=rtol, atol=atol,
                                                   equal_nan=True))


def _numpy(x: Any) -> Any:
    if type(x) in TENSOR_TYPES:
        return x.detach().cpu().to(_F64).numpy()
    return x


def _flat(tensors: list[Any]) -> np.ndarray:
    """Several tensors as one flat float64 array, for messages."""
    return np.concatenate([t.detach().double().reshape(-1).numpy() for t in tensors])


def _autograd_error_hint(exc: BaseException) -> str | None:
    """Diagnoses for the autograd errors every exercise can run into."""
    text = str(exc)
    if "leaf Variable that requires grad" in text:
        return ("you updated a parameter in place while autograd was recording: "
                "the operation would become the tensor's history, and a leaf that "
                "requires grad cannot acquire history, so torch refuses. Do the "
                "update inside `with torch.no_grad():`, e.g. "
                "`with torch.no_grad(): p -= lr * p.grad`.")
    if "does not require grad" in text:
        return ("the tensor you called backward() on has no grad_fn: compute "
                "the loss from a tensor created with requires_grad=True, and "
                "outside torch.no_grad() (only the update goes inside).")
    if "backward through the graph a second time" in text:
        return ("you called backward() twice on the same result; autograd "
                "frees the graph after one backward(). Compute the loss once "
                "per step and call backward() once.")
    if "floating point" in text and "require gradients" in text:
        return ("only float tensors can require grad: create the tensor with "
                "a float value or dtype, e.g. torch.tensor(float(w), "
                "requires_grad=True).")
    return None


def _away(rng: np.random.Generator, low: float, high: float) -> float:
    """A random float with low <= |x| <= high and a random sign."""
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(low, high))


# --------------------------------------------------------------------------
# Exercise 2.1: autograd_derivative
# --------------------------------------------------------------------------

def autograd_derivative(f: Any, w: float) -> float:
    """f'(w) from autograd, as a Python float."""
    t = torch.tensor(w, requires_grad=True)
    f(t).backward()
    return t.grad.item()


def _derivative_exception_hint(w: float, calls: list[Any], exc: BaseException) -> str | None:
    if any(type(c) not in TENSOR_TYPES for c in calls):
        return (f"you called f with the plain number w = {w}; autograd only "
                "records operations on tensors. Create "
                "`w = torch.tensor(w, requires_grad=True)` and call f on "
                "that tensor.")
    if calls and all(not c.requires_grad for c in calls) and \
            "does not require grad" in str(exc):
        return ("the tensor you passed to f does not require grad, so "
                "autograd recorded nothing: create it with "
                "`torch.tensor(w, requires_grad=True)`.")
    if isinstance(exc, AttributeError) and "'NoneType'" in str(exc):
        return ("w.grad is None: call backward() on f's result before "
                "reading .grad (and read .grad of the tensor you passed to f).")
    return _autograd_error_hint(exc)


def _derivative_flow(fn: Any, case: Case) -> dict[str, Any]:
    """Call ``fn(f, w)`` with a spy on ``f`` that records its arguments."""
    f, w = case.args
    calls: list[Any] = []

    def spied(x: Any) -> Any:
        calls.append(x)
        return f(x)

    try:
        out, on = _guarded(fn, spied, w)
    except Exception as exc:
        _attach(exc, _derivative_exception_hint(w, calls, exc))
        raise
    return {"out": out, "grad_on": on, "calls": calls}


def _derivative_observe(run: Run) -> list[Any]:
    return [real(run.result["out"]), run.result["grad_on"]]


def _f_value(run: Run) -> float:
    """f(w) of the case, in float64."""
    f, w = run.case.args
    with _NO_GRAD():
        return float(f(torch.tensor(w, dtype=_F64)))


def _derivative_contract(got: Run, expected: Run) -> str | None:
    name, out = "autograd_derivative", got.result["out"]
    if not got.result["grad_on"]:
        return _grad_off(name, got)
    if out is None:
        return _returned_none(name)
    if isinstance(out, torch.Tensor):
        want, calls = expected.result["out"], got.result["calls"]
        value = _f_value(got)
        if any(out is c for c in calls):
            hint = ("you returned the input tensor itself; after backward() its "
                    "derivative sits in its .grad attribute: return w.grad.item().")
        elif out.grad_fn is not None and _close(out, value, 1e-5, 1e-6):
            hint = ("you returned f(w), a tensor with "
                    f"grad_fn={type(out.grad_fn).__name__}, not its derivative: call "
                    "backward() on it, then return w.grad.item().")
        elif _close(out, want, 1e-5, 1e-6):
            hint = ("the value is right but it is a tensor: return a Python float "
                    "with .item(), e.g. `return w.grad.item()`.")
        else:
            hint = "return a Python float: turn a one-element tensor into one with .item()."
        return f"expected a Python float, got a tensor ({fmt(out)}).\n  Diagnosis: {hint}"
    if type(out) not in FLOAT_TYPES:
        return (f"expected a Python float, got {type(out).__name__} {fmt(out)}.\n"
                "  Diagnosis: return w.grad.item() (or float(w.grad)); .item() turns "
                "a one-element tensor into a float.")
    if _close(out, expected.result["out"], 1e-5, 1e-6) and not any(
            type(c) in TENSOR_TYPES and c.requires_grad for c in got.result["calls"]):
        return ("the value is right, but f was never called with a tensor that "
                f"requires grad.\n  Diagnosis: {NO_AUTOGRAD}")
    return None


NO_AUTOGRAD = ("this exercise is about autograd: create `torch.tensor(w, "
               "requires_grad=True)`, call f on it, call backward() and read .grad "
               "(no formula, no finite difference).")


def _twice(run: Run) -> str:
    return ("your result is twice f'(w): .grad ADDS every backward() into what is "
            "already there, so two backward() calls give 2 f'(w). (f was called "
            f"{len(run.result['calls'])} time(s).) Call f and backward() once.")


def _backward_twice(f: Any, w: float) -> float:
    t = torch.tensor(w, requires_grad=True)
    f(t).backward()
    f(t).backward()
    return t.grad.item()


def _central_float64(f: Any, w: float) -> float:
    def g(x: float) -> float:
        return f(torch.tensor(x, dtype=_F64)).item()
    return (g(w + 1e-6) - g(w - 1e-6)) / 2e-6


def _derivative_hidden(rng: np.random.Generator) -> Iterator[Case]:
    a, b, c = (float(v) for v in rng.uniform(-5.0, 5.0, size=3))
    shift = float(rng.uniform(-2.0, 4.0))
    for fn, w in [
        (lambda t: torch.tanh(t) ** 2, float(rng.uniform(-2.0, 2.0))),
        (lambda t: torch.log(1 + t ** 2), float(rng.uniform(-3.0, 3.0))),
        (lambda t: a * t + b, float(rng.uniform(-10.0, 10.0))),
        (lambda t: (t - shift) ** 2, shift + _away(rng, 0.1, 3.0)),
        (lambda t: t.exp() * t.sin() + c * t, float(rng.uniform(-2.0, 2.0))),
        (lambda t: t * t.detach(), float(rng.uniform(-3.0, 3.0))),
        (lambda t: torch.where(t > 0, t ** 3, -t), _away(rng, 0.1, 2.0)),
    ]:
        yield Case("a random function and point", (fn, w))


_DERIVATIVE_CASES = [
    ("(w - 3)**2", lambda w: (w - 3) ** 2, 5.0),
    ("w**3 - 2*w", lambda w: w ** 3 - 2 * w, 2.0),
    ("1 / (1 + w**2)", lambda w: 1 / (1 + w ** 2), -1.5),
    ("torch.sin(w) * torch.exp(w)", lambda w: torch.sin(w) * torch.exp(w), 0.5),
    ("torch.tanh(w)**2", lambda w: torch.tanh(w) ** 2, 0.3),
    ("torch.log(1 + w**2)", lambda w: torch.log(1 + w ** 2), 2.0),
    ("4.0*w - 1.0", lambda w: 4.0 * w - 1.0, -7.5),
    ("(w - 3)**2", lambda w: (w - 3) ** 2, 0.25),
    ("w.exp() * w.sin()", lambda w: w.exp() * w.sin(), 0.7),     # tensor methods only
    ("w * w.detach()", lambda w: w * w.detach(), 1.5),            # autograd 1.5, not 3.0
    ("torch.relu(w)", torch.relu, 0.0),                           # autograd 0, not 0.5
    ("torch.where(w > 0, w**3, -w)", lambda w: torch.where(w > 0, w ** 3, -w), -2.0),
]

AUTOGRAD_DERIVATIVE = Exercise(
    grade_id="test_autograd_derivative",
    name="autograd_derivative",
    reference=autograd_derivative,
    cases=[Case(f"f(w) = {desc}, w = {w}", (f, w)) for desc, f, w in _DERIVATIVE_CASES],
    observe=_derivative_observe,
    show=lambda run: run.result["out"],
    passed="autograd_derivative: 12 functions (polynomial, rational, sin·exp, tanh, "
           "log, w * w.detach(), relu at 0, torch.where) give f'(w) through autograd, "
           "returned as Python floats",
    hidden=_derivative_hidden,
    rtol=1e-5, atol=1e-6,
    call=_derivative_flow,
    rules=[_derivative_contract],
    on_error=_on_error,
    mistakes=[
        Mistake("returned_f_value",
                "you returned f(w), the value of the function, not its derivative: "
                "call backward() on f(w) and return w.grad.item() (w being the tensor "
                "you created with requires_grad=True).",
                lambda f, w: f(torch.tensor(w, requires_grad=True)).item()),
        Mistake("backward_twice", _twice, _backward_twice),
        Mistake("returned_w", "you returned w itself: return the gradient, w.grad.item().",
                lambda f, w: float(w)),
        Mistake("no_autograd", NO_AUTOGRAD, _central_float64),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 2.2: finite_difference
# --------------------------------------------------------------------------

def finite_difference(f: Any, w: float, eps: float = 1e-6) -> float:
    """The central difference (f(w + eps) - f(w - eps)) / (2 eps)."""
    return (f(w + eps) - f(w - eps)) / (2 * eps)


class _Shown:
    """A number as the finite-difference messages show it (10 digits)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        v = self.value
        return f"{float(v):.10g}" if type(v) in FLOAT_TYPES else fmt(v)


class _SpyCube:
    """``x**3``, recording every point it is evaluated at."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, x: float) -> float:
        self.calls.append(float(x))
        return x ** 3


def _fd_flow(fn: Any, case: Case) -> dict[str, Any]:
    out, on = _guarded(fn, *case.args)
    return {"out": out, "grad_on": on}


def _fd_observe(run: Run) -> Any:
    out = real(run.result["out"])
    f = run.args[0]
    if type(f) is _SpyCube:
        return [out, sorted(set(f.calls))]     # evaluated at w -+ 1e-6 only
    return out


def _fd_contract(got: Run, expected: Run) -> str | None:
    name, out = "finite_difference", got.result["out"]
    if not got.result["grad_on"]:
        return _grad_off(name, got)
    if out is None:
        return _returned_none(name)
    if type(out) not in FLOAT_TYPES:
        return (f"expected a float, got {type(out).__name__} {fmt(out)}.\n  Diagnosis: "
                "f returns Python floats here, so the formula gives a float: return "
                "it directly.")
    return None


def _fd_parts(run: Run) -> tuple[Any, float, float]:
    f, w = run.case.args[:2]
    eps = run.case.args[2] if len(run.case.args) > 2 else 1e-6
    return f, w, eps


def _forward_text(run: Run) -> str:
    f, w, eps = _fd_parts(run)
    text = "you used the forward difference (f(w + eps) - f(w)) / eps. Its error is O(eps)"
    if run.case.data is not None:
        exact = run.case.data(w)
        text += (f": here {(f(w + eps) - f(w)) / eps - exact:.3g}, against "
                 f"{finite_difference(f, w, eps) - exact:.3g} for the central "
                 "difference (f(w + eps) - f(w - eps)) / (2 * eps),")
    else:
        text += ", against the central difference (f(w + eps) - f(w - eps)) / (2 * eps),"
    return text + " whose error is O(eps**2). Use the central one."


def _fd_diagnose(got: Run, expected: Run) -> str | None:
    _, w, eps = _fd_parts(got)
    df, out = got.case.data, got.result["out"]
    if df is not None and _close(out, df(w), 1e-6, 1e-9):
        return (f"your result is f'(w) almost exactly, but the central "
                f"difference with eps = {eps:g} is {expected.result['out']:.10g}: you "
                "did not use the eps that was passed in (a fixed step, or a formula?).")
    if len(got.case.args) == 2:
        return ("the default step must be eps=1e-6, as in the signature "
                "`finite_difference(f, w, eps=1e-6)`.")
    return None


def _fd_hidden(rng: np.random.Generator) -> Iterator[Case]:
    eps = [float(10 ** rng.uniform(-5.0, -1.0)) for _ in range(5)]
    for f, w, e in [(math.cos, _away(rng, 0.2, 2.9), eps[0]),    # derivative not near 0
                    (lambda x: x ** 4, _away(rng, 0.4, 2.0), eps[1]),
                    (math.exp, float(rng.uniform(-2.0, 2.0)), eps[2]),
                    (lambda x: 1 / x, _away(rng, 0.3, 2.0), eps[3]),
                    (np.sin, float(rng.uniform(-1.4, 1.4)), eps[4])]:
        yield Case("a random point and step", (f, w, e))
    yield Case("a spy, default eps", (_SpyCube(), float(rng.uniform(-3.0, 3.0))))
    c = float(rng.uniform(-2.0, 2.0))
    yield Case("(w - c)**3 at c, default eps", (lambda x: (x - c) ** 3, c))  # ~ eps**2


def _cubic(w: float) -> float:
    return w ** 3


def _quartic(w: float) -> float:
    return w ** 4


def _inverse(w: float) -> float:
    return 1 / w


def _bump(w: float) -> float:
    return math.exp(-w ** 2)


# (description, f, f', w, eps or None for the default)
_FD_CASES = [
    ("f(w) = w**3", _cubic, lambda w: 3 * w ** 2, 1.0, 1e-2),
    ("f(w) = w**3", _cubic, lambda w: 3 * w ** 2, 2.0, 0.1),
    ("f(w) = math.sin(w)", math.sin, math.cos, 0.7, None),
    ("f(w) = math.exp(-w**2)", _bump, lambda w: -2 * w * math.exp(-w ** 2), -0.3, 1e-4),
    ("f(w) = math.cos(w)", math.cos, lambda w: -math.sin(w), 0.4, 1e-3),
    ("f(w) = w**4", _quartic, lambda w: 4 * w ** 3, 1.5, 1e-2),
    ("f(w) = math.exp(w)", math.exp, math.exp, -1.0, 1e-5),
    ("f(w) = 1 / w", _inverse, lambda w: -1 / w ** 2, 0.5, 0.1),
    ("f(w) = np.sin(w)", np.sin, np.cos, 0.25, 1e-4),
]

FINITE_DIFFERENCE = Exercise(
    grade_id="test_finite_difference",
    name="finite_difference",
    reference=finite_difference,
    cases=[Case(f"{desc}, w = {w}, {'default eps' if eps is None else f'eps = {eps:g}'}",
                (f, w) if eps is None else (f, w, eps), data=df)
           for desc, f, df, w, eps in _FD_CASES],
    observe=_fd_observe,
    show=lambda run: _Shown(run.result["out"]),
    passed="finite_difference: 9 cases match the central difference "
           "(f(w + eps) - f(w - eps)) / (2 eps), default eps = 1e-6 included",
    hidden=_fd_hidden,
    rtol=1e-9, atol=1e-15,
    call=_fd_flow,
    rules=[_fd_contract],
    diagnose=_fd_diagnose,
    on_error=_on_error,
    mistakes=[
        Mistake("forward_difference", _forward_text,
                lambda f, w, eps=1e-6: (f(w + eps) - f(w)) / eps),
        Mistake("backward_difference",
                "you used the backward difference (f(w) - f(w - eps)) / eps, whose "
                "error is O(eps); use the central difference "
                "(f(w + eps) - f(w - eps)) / (2 * eps).",
                lambda f, w, eps=1e-6: (f(w) - f(w - eps)) / eps),
        Mistake("factor_2_missing",
                "you forgot the factor 2: w + eps and w - eps are 2 * eps apart, so "
                "divide by (2 * eps).",
                lambda f, w, eps=1e-6: (f(w + eps) - f(w - eps)) / eps),
        Mistake("precedence",
                "operator precedence: `... / 2 * eps` divides by 2 and then MULTIPLIES "
                "by eps. Write `/ (2 * eps)`.",
                lambda f, w, eps=1e-6: (f(w + eps) - f(w - eps)) / 2 * eps),
        Mistake("sign_flipped",
                "the sign is flipped: subtract f(w - eps) FROM f(w + eps).",
                lambda f, w, eps=1e-6: (f(w - eps) - f(w + eps)) / (2 * eps)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 2.3: gd_step_autograd
# --------------------------------------------------------------------------

def gd_step_autograd(params: list[Any], loss_fn: Any, lr: float) -> float:
    """Zero the gradients, backward(), update in place under no_grad; the loss before."""
    for p in params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
    return loss.item()


class _Coupled:
    r"""$L = \sum_i s_i (w_i - t_i)^2 + (b - 1)^2 + w_0 b$ of ``params = [w (2,), b ()]``."""

    names = "params [w0, w1, b]"

    def loss_fn(self, params: list[Any]) -> Any:
        def loss() -> Any:
            w, b = params[0], params[1]
            target = torch.tensor((1.5, -0.5), dtype=w.dtype)
            scale = torch.tensor([1.0, 3.0], dtype=w.dtype)
            return (scale * (w - target) ** 2).sum() + (b - 1) ** 2 + w[0] * b
        return loss


class _Bowl:
    r"""$\tfrac12 p^\top A p + (q - 1)^4$ of ``params = [p (d,), q ()]``."""

    names = "params [p..., q]"

    def __init__(self, a: Any) -> None:
        self.a = a

    def loss_fn(self, params: list[Any]) -> Any:
        a = self.a
        return lambda: 0.5 * params[0] @ a @ params[0] + (params[1] - 1) ** 4


class _Square:
    """$r^2$ of ``params = [r]``."""

    names = "params [r]"

    def loss_fn(self, params: list[Any]) -> Any:
        return lambda: params[0] ** 2


class _LeastSquares:
    """The mean squared error of ``X @ w + b`` against ``y``, ``params = [w, b]``."""

    names = "params [w..., b]"

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y

    def loss_fn(self, params: list[Any]) -> Any:
        x, y = self.x, self.y
        return lambda: ((x @ params[0] + params[1] - y) ** 2).mean()


def _step_flow(fn: Any, case: Case) -> list[dict[str, Any]]:
    """Call ``fn(params, loss_fn, lr)`` once per learning rate of the case,
    recording after every step what it returned and what it did to params
    (stops after a step that breaks the parameters or grad mode)."""
    params, problem, lrs = case.args
    originals = list(params)
    loss_fn = problem.loss_fn(params)
    steps: list[dict[str, Any]] = []
    for lr in lrs:
        before = [p.detach().clone() for p in originals]
        try:
            out, on = _guarded(fn, params, loss_fn, lr)
        except Exception as exc:
            _attach(exc, _step_exception_hint(exc))
            raise
        same = type(params) is list and len(params) == len(originals) and \
            all(a is b for a, b in zip(params, originals))
        record = {
            "out": out, "grad_on": on, "same": same, "before": before,
            "params": [snap(p) for p in originals],
            "grads": [None if p.grad is None else p.grad.detach().clone() for p in originals],
            "leaf": [bool(p.is_leaf and p.requires_grad) for p in originals],
            "requires_grad": [bool(p.requires_grad) for p in originals],
            "length": len(params) if type(params) is list else -1,
            "replaced": _replacement(params, originals),
        }
        steps.append(record)
        if not (on and same and all(record["leaf"])):
            break
    return steps


def _replacement(params: Any, originals: list[Any]) -> tuple[int, str | None] | None:
    """(index, grad_fn name or None) of the first parameter replaced by another object."""
    if type(params) is not list:
        return None
    for i, (new, old) in enumerate(zip(params, originals)):
        if new is not old:
            grad_fn = new.grad_fn if type(new) in TENSOR_TYPES else None
            return i, (type(grad_fn).__name__ if grad_fn is not None else None)
    return None


def _step_observe(run: Run) -> list[Any]:
    """Per step: the loss returned, the parameters, the same leaf tensors still
    requiring grad, grad mode on. Float32 values are left to the check's own
    float32 tolerance (:func:`_step_contract`): grading compares float64 ones
    to 1e-10."""
    if _is_float32(run.case):
        return [[type(s["out"]) in FLOAT_TYPES, s["same"], all(s["leaf"]), s["grad_on"]]
                for s in run.result]
    return [[real(s["out"]), *s["params"], s["same"], all(s["leaf"]), s["grad_on"]]
            for s in run.result]


def _is_float32(case: Case) -> bool:
    return case.args[0][0].dtype == torch.float32


def _step_exception_hint(exc: BaseException) -> str | None:
    text = str(exc)
    if isinstance(exc, AttributeError) and "'NoneType'" in text and "zero_" in text:
        return ("p.grad is None before the first backward(), so "
                "p.grad.zero_() fails. Write `p.grad = None` (what "
                "torch.optim's zero_grad() does), or guard it: "
                "`if p.grad is not None: p.grad.zero_()`.")
    if isinstance(exc, TypeError) and "NoneType" in text:
        return ("p.grad is None when you use it: call loss = loss_fn() and "
                "loss.backward() BEFORE the update (and don't set p.grad = None "
                "between backward() and the update).")
    if isinstance(exc, AttributeError) and "'function' object" in text:
        return ("loss_fn is a function: call it to get the loss, "
                "`loss = loss_fn()`, then `loss.backward()`.")
    return _autograd_error_hint(exc)


ACCUMULATED = ("gradients accumulated across steps: backward() ADDS into .grad, "
               "so step 2 used g1 + g2. Zero the gradients (`p.grad = None`) "
               "before calling loss.backward() in every step.")
STALE = ("your step used the stale gradient that was already in .grad when "
         "gd_step_autograd was called (left by an earlier backward()). Zero the "
         "gradients at the START of the step, before backward() -- torch's "
         "order is zero_grad(), backward(), step().")
UPHILL = ("your update moved the parameters uphill: subtract lr times the "
          "gradient (p -= lr * p.grad), don't add it.")
ZEROED_BETWEEN = ("the parameters did not move and their gradients are empty: you "
                  "zeroed the gradients between backward() and the update, so the "
                  "update subtracted zero. Zero them BEFORE loss.backward().")
REBOUND = ("the parameters did not change: `p = p - lr * p.grad` only rebinds the "
           "local name p to a new tensor; the caller's tensor stays the same. Update "
           "in place: `with torch.no_grad(): p -= lr * p.grad`.")
REPLACED = ("you replaced the parameter by a new tensor: whoever holds the old tensor "
            "(a model, an optimizer, the caller) never sees the update. Update it in "
            "place: `with torch.no_grad(): p -= lr * p.grad`.")
DETACHED = ("don't detach the parameters or switch requires_grad off; update them "
            "under `with torch.no_grad():` instead.")
LOSS_TENSOR = "return loss.item(); the tensor keeps its autograd graph (grad_fn) alive."
LOSS_AFTER = ("you returned the loss AFTER the update: return the loss you called "
              "backward() on, computed before the step.")


def _replaced_text(grad_fn: str | None) -> str:
    if grad_fn is not None:
        return ("you replaced the parameter by a new tensor computed OUTSIDE "
                "torch.no_grad(): it is not a leaf any more (it has grad_fn="
                f"{grad_fn}), so the next backward() would not fill its .grad and "
                "every step would add to one growing graph. Update in place "
                "instead: `with torch.no_grad(): p -= lr * p.grad`.")
    return REPLACED


def _first_replaced_text(run: Run) -> str:
    replaced = next((s["replaced"] for s in run.result if s["replaced"]), None)
    return _replaced_text(replaced[1] if replaced else None)


def _step_rtol(case: Case) -> float:
    """Float32 parameters are compared to float32 rounding, float64 ones closely."""
    return 1e-6 if _is_float32(case) else 1e-10


def _step_mistake(got: Run, t: int, key: str, names: tuple[str, ...]) -> str | None:
    """The diagnosis of the first of these mistakes whose step ``t`` gives the
    learner's ``key`` ("params" or "out")."""
    rtol = _step_rtol(got.case)
    for mistake in GD_STEP_AUTOGRAD.mistakes:
        if mistake.name not in names:
            continue
        try:
            steps = run_case(GD_STEP_AUTOGRAD, mistake.impl, got.case).result
            if _close(_values(got.result[t][key]), _values(steps[t][key]), rtol, 1e-12):
                return mistake.text(got)
        except Exception:  # noqa: BLE001, S112 - this mistake does not apply here
            continue
    return None


def _values(x: Any) -> Any:
    if type(x) is list:
        return _flat(x)
    return x


def _step_contract(got: Run, expected: Run) -> str | None:
    """Step by step, as the old check: grad mode, the same leaf tensors, their
    values after the step, then the loss returned."""
    name = "gd_step_autograd"
    rtol = _step_rtol(got.case)
    many = len(got.case.args[2]) > 1
    names = got.case.args[1].names
    for t, (s, e) in enumerate(zip(got.result, expected.result)):
        at = f"step {t + 1}: " if many else ""
        if not s["grad_on"]:
            return at + _grad_off_text(name)
        if s["length"] != len(e["params"]):
            return (f"{at}`{name}` changed the length of params ({len(e['params'])} -> "
                    f"{s['length']}).\n  Diagnosis: update the tensors in the list, "
                    "don't add or remove any.")
        if s["replaced"]:
            i, grad_fn = s["replaced"]
            return (f"{at}params[{i}] is a different object after the step.\n"
                    f"  Diagnosis: {_replaced_text(grad_fn)}")
        for i, ok in enumerate(s["leaf"]):
            if not ok:
                return (f"{at}params[{i}] no longer requires grad (requires_grad="
                        f"{s['requires_grad'][i]}).\n  Diagnosis: {DETACHED}")
        want = _flat(e["params"])
        if not _close(_flat(s["params"]), want, rtol, 1e-12):
            if all(_EQUAL(p, b) for p, b in zip(s["params"], s["before"])):
                empty = all(g is None or not bool(torch.any(g)) for g in s["grads"])
                hint: str | None = ZEROED_BETWEEN if empty else REBOUND
            else:
                hint = _step_mistake(got, t, "params",
                                     ("zeroed_at_end", "grads_not_zeroed", "moved_uphill"))
            return (f"{at}{names} after the step: expected {fmt(want)}, got "
                    f"{fmt(_flat(s['params']))}." + (f"\n  Diagnosis: {hint}" if hint else ""))
        out = s["out"]
        if out is None:
            return at + _returned_none(name)
        if isinstance(out, torch.Tensor):
            return (f"{at}expected the loss as a Python float, got a tensor "
                    f"({fmt(out)}).\n  Diagnosis: {LOSS_TENSOR}")
        if type(out) not in FLOAT_TYPES:
            return (f"{at}expected the loss as a Python float, got "
                    f"{type(out).__name__} {fmt(out)}.")
        if not _close(out, e["out"], rtol, 1e-12):
            hint = _step_mistake(got, t, "out", ("returned_loss_after_update",))
            return (f"{at}returned loss: expected {fmt(e['out'])}, got {fmt(out)}."
                    + (f"\n  Diagnosis: {hint}" if hint else ""))
    return None


def _step_params(dtype: torch.dtype = _F64, stale: bool = False) -> list[Any]:
    """The visible problem's leaf parameters ``[w (2,), b ()]`` (a stale .grad if asked)."""
    params = [torch.tensor([1.0, -2.0], dtype=dtype, requires_grad=True),
              torch.tensor(0.5, dtype=dtype, requires_grad=True)]
    if stale:
        for p in params:
            p.grad = torch.full_like(p, 2.0)
    return params


def _spd(rng: np.random.Generator, d: int, low: float, high: float) -> Any:
    """A random symmetric positive definite d x d float64 tensor, eigenvalues in [low, high]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = q @ np.diag(rng.uniform(low, high, size=d)) @ q.T
    return torch.tensor((a + a.T) / 2, dtype=_F64)


def _leaf(value: Any) -> Any:
    return torch.tensor(value, dtype=_F64, requires_grad=True)


def _step_hidden(rng: np.random.Generator) -> Iterator[Case]:
    d = int(rng.integers(2, 5))                           # a random quadratic, 3 steps
    a = _spd(rng, d, 0.5, 3.0)
    params = [_leaf(rng.uniform(-2.0, 2.0, size=d)), _leaf(float(rng.uniform(0.0, 2.0)))]
    yield Case("a random quadratic", (params, _Bowl(a),
                                      [float(v) for v in rng.uniform(0.05, 0.3, size=3)]))
    r = _leaf(float(rng.uniform(-3.0, 3.0)))              # a stale gradient
    r.grad = torch.tensor(float(rng.uniform(10.0, 1000.0)), dtype=_F64)
    yield Case("a stale gradient", ([r], _Square(), [float(rng.uniform(0.05, 0.45))]))
    gen = generator(sub_seed(rng))                        # a random least-squares problem
    n, d = int(rng.integers(5, 13)), int(rng.integers(1, 5))
    x = torch.randn(n, d, generator=gen, dtype=_F64)
    y = torch.randn(n, generator=gen, dtype=_F64)
    params = [_leaf(np.zeros(d)), _leaf(0.0)]
    yield Case("a random least-squares problem",
               (params, _LeastSquares(x, y), [float(rng.uniform(0.05, 0.25))] * 4))


def _no_zero(params: list[Any], loss_fn: Any, lr: float) -> float:
    loss = loss_fn()
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
    return loss.item()


def _zero_at_end(params: list[Any], loss_fn: Any, lr: float) -> float:
    loss = _no_zero(params, loss_fn, lr)
    for p in params:
        p.grad = None
    return loss


def _zeroed_between(params: list[Any], loss_fn: Any, lr: float) -> float:
    loss = loss_fn()
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.grad.zero_()
            p -= lr * p.grad
    return loss.item()


def _backward_from_cleared(params: list[Any], loss_fn: Any) -> Any:
    for p in params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    return loss


def _rebound(params: list[Any], loss_fn: Any, lr: float) -> float:
    loss = _backward_from_cleared(params, loss_fn)
    for p in params:
        p = p - lr * p.grad
    return loss.item()


def _replaced_outside(params: list[Any], loss_fn: Any, lr: float) -> float:
    loss = _backward_from_cleared(params, loss_fn)
    for i, p in enumerate(params):
        params[i] = p - lr * p.grad
    return loss.item()


def _replaced_inside(params: list[Any], loss_fn: Any, lr: float) -> float:
    loss = _backward_from_cleared(params, loss_fn)
    with torch.no_grad():
        for i, p in enumerate(params):
            params[i] = (p - lr * p.grad).requires_grad_()
    return loss.item()


def _detached(params: list[Any], loss_fn: Any, lr: float) -> float:
    loss = gd_step_autograd(params, loss_fn, lr)
    for p in params:
        p.requires_grad_(False)
    return loss


def _returned_tensor(params: list[Any], loss_fn: Any, lr: float) -> Any:
    loss = _backward_from_cleared(params, loss_fn)
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
    return loss


def _loss_after(params: list[Any], loss_fn: Any, lr: float) -> float:
    gd_step_autograd(params, loss_fn, lr)
    with torch.no_grad():
        return loss_fn().item()


GD_STEP_AUTOGRAD = Exercise(
    grade_id="test_gd_step_autograd",
    name="gd_step_autograd",
    reference=gd_step_autograd,
    cases=[
        Case("one step from fresh parameters (.grad is None), lr = 0.1",
             (_step_params(), _Coupled(), [0.1])),
        Case("three steps in a row, lr = 0.05", (_step_params(), _Coupled(), [0.05] * 3)),
        Case("parameters arrive with a stale .grad from an earlier backward(), lr = 0.1",
             (_step_params(stale=True), _Coupled(), [0.1])),
        Case("float32 parameters, two steps, lr = 0.02",
             (_step_params(torch.float32), _Coupled(), [0.02] * 2)),
    ],
    observe=_step_observe,
    show=lambda run: [s["out"] for s in run.result],
    passed="gd_step_autograd: 4 cases (fresh, repeated, stale .grad, float32) update "
           "the same leaf tensors in place by -lr * grad and return the loss before "
           "the step",
    hidden=_step_hidden,
    rtol=1e-10, atol=1e-12,
    call=_step_flow,
    rules=[_step_contract],
    on_error=_on_error,
    mistakes=[
        Mistake("zeroed_at_end", STALE, _zero_at_end),
        Mistake("grads_not_zeroed", ACCUMULATED, _no_zero),
        Mistake("moved_uphill", UPHILL, lambda params, loss_fn, lr:
                gd_step_autograd(params, loss_fn, -lr)),
        Mistake("zeroed_between_backward_and_update", ZEROED_BETWEEN, _zeroed_between),
        Mistake("rebound_local_name", REBOUND, _rebound),
        Mistake("replaced_outside_no_grad", _first_replaced_text, _replaced_outside),
        Mistake("replaced_parameter", REPLACED, _replaced_inside),
        Mistake("detached_parameters", DETACHED, _detached),
        Mistake("returned_loss_tensor", LOSS_TENSOR, _returned_tensor),
        Mistake("returned_loss_after_update", LOSS_AFTER, _loss_after),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 2.4: fit_linear_regression
# --------------------------------------------------------------------------

def fit_linear_regression(X: Any, y: Any, lr: float, n_steps: int) -> tuple[Any, Any, list]:
    """Full-batch GD on the mean squared error from zeros: (w, b, losses)."""
    return _fit(X, y, lr, n_steps)


def _fit(X: Any, y: Any, lr: float, n_steps: int, *, reduction: str = "mean",
         zero: bool = True, init: float = 0.0, bias: bool = True,
         shift: bool = False) -> tuple[Any, Any, list]:
    """The fit, or one classic variant of it."""
    w = torch.full((X.shape[1],), init, dtype=X.dtype, requires_grad=True)
    b = torch.zeros((), dtype=X.dtype, requires_grad=True)
    params = [w, b] if bias else [w]
    losses = []
    for _ in range(n_steps + shift):
        if zero:
            for p in params:
                p.grad = None
        sq = (X @ w + (b if bias else 0) - y) ** 2
        loss = {"mean": sq.mean(), "sum": sq.sum(), "half": 0.5 * sq.mean()}[reduction]
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        losses.append(loss.item())
    return w, b, losses[shift:]


def _fit_flow(fn: Any, case: Case) -> dict[str, Any]:
    try:
        out, on = _guarded(fn, *case.args)
    except Exception as exc:
        _attach(exc, _fit_exception_hint(exc, str(case.args[0].dtype).replace("torch.", "")))
        raise
    return {"out": out, "grad_on": on}


def _fit_exception_hint(exc: BaseException, dtype: str) -> str | None:
    text = str(exc)
    if "same dtype" in text or "expected scalar type" in text:
        return (f"X is {dtype}: create w and b with X's dtype, e.g. "
                "torch.zeros(d, dtype=X.dtype, requires_grad=True).")
    if "size mismatch" in text or "shapes cannot be multiplied" in text:
        return ("w must have shape (d,) with d = X.shape[1], so that X @ w "
                "has shape (n,).")
    return _step_exception_hint(exc)


def _triple(out: Any) -> tuple[Any, Any, Any]:
    if type(out) in (tuple, list) and len(out) == 3:
        return out[0], out[1], out[2]
    return None, None, None


def _fit_observe(run: Run) -> list[Any]:
    w, b, losses = _triple(run.result["out"])
    ok_types = [type(w) in TENSOR_TYPES, type(b) in TENSOR_TYPES]
    shapes = [list(w.shape) if ok_types[0] else None, list(b.shape) if ok_types[1] else None]
    if type(losses) in (list, tuple) and all(type(v) in FLOAT_TYPES for v in losses):
        loss_values: Any = array(list(losses))
    else:
        loss_values = f"not a list of floats: {type(losses).__name__}"
    return [ok_types, shapes, array(w) if ok_types[0] else None,
            array(b) if ok_types[1] else None, loss_values,
            snap(run.args[0]), snap(run.args[1])]                  # X, y unchanged


def _fit_contract(got: Run, expected: Run) -> str | None:
    name, out = "fit_linear_regression", got.result["out"]
    X, y, _, n_steps = got.case.args
    if not got.result["grad_on"]:
        return _grad_off(name, got)
    if not (_EQUAL(got.args[0], X) and _EQUAL(got.args[1], y)):
        return f"`{name}` changed X or y in place.\n  Diagnosis: only w and b may change."
    if out is None:
        return _returned_none(name)
    if not isinstance(out, tuple) or len(out) != 3:
        what = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        return (f"expected a tuple (w, b, losses), got {what}.\n  Diagnosis: end with "
                "`return w, b, losses`.")
    w, b, losses = out
    d = X.shape[1]
    for label, value, shape in (("w", w, (d,)), ("b", b, ())):
        if not isinstance(value, torch.Tensor):
            return f"{label} should be a tensor, got {type(value).__name__}."
        if tuple(value.shape) != shape:
            hint = ""
            if label == "w" and tuple(value.shape) == (d, 1):
                hint = ("\n  Diagnosis: with w of shape (d, 1), X @ w has shape "
                        "(n, 1) and X @ w - y BROADCASTS against y of shape (n,) "
                        "to an (n, n) matrix: a silent bug. Use w of shape (d,).")
            return f"{label} should have shape {shape}, got {tuple(value.shape)}.{hint}"
    if isinstance(losses, torch.Tensor) or not isinstance(losses, (list, tuple)):
        return f"losses should be a list of floats, got {type(losses).__name__}."
    if any(isinstance(v, torch.Tensor) for v in losses):
        return ("losses holds tensors.\n  Diagnosis: append loss.item(), a Python "
                "float; a loss tensor keeps its whole graph in memory.")
    if len(losses) != n_steps:
        return (f"expected {n_steps} losses (one per step, before each update), got "
                f"{len(losses)}.")
    if not all(type(v) in FLOAT_TYPES for v in losses):
        return (f"losses should be Python floats, got "
                f"{sorted({type(v).__name__ for v in losses})}.")
    if got.case.data == "least_squares":
        rw, rb, _ = expected.result["out"]
        if _close(w, rw, 1e-4, 1e-5) and _close(b, rb, 1e-4, 1e-5):
            w_ls, b_ls = least_squares(X, y)
            if not (_close(w, w_ls, 0.0, 1e-3) and _close(b, b_ls, 0.0, 1e-3)):
                return (f"against the closed form least_squares: expected "
                        f"{fmt(_flat([w_ls, b_ls]))}, got {fmt(_flat([w, b]))}.")
    return None


def _fit_values(got: Run, expected: Run) -> str | None:
    """A wrong fit: the parameters first, then the losses, with a diagnosis."""
    w, b, losses = got.result["out"]
    rw, rb, rl = expected.result["out"]
    n_steps = got.case.args[3]
    if not (_close(w, rw, 1e-4, 1e-5) and _close(b, rb, 1e-4, 1e-5)):
        return (f"w, b after {n_steps} step{'s' * (n_steps != 1)}: expected "
                f"{fmt(_flat([rw, rb]))}, got {fmt(_flat([w, b]))}."
                + _diagnosis(_fit_hint(got)))
    if not _close(np.asarray(losses, dtype=float), np.asarray(rl, dtype=float), 1e-4, 1e-6):
        return (f"losses: expected {fmt(np.asarray(rl, dtype=float))}, got "
                f"{fmt(np.asarray(losses, dtype=float))}." + _diagnosis(_fit_hint(got)))
    return None


def _diagnosis(hint: str | None) -> str:
    return f"\n  Diagnosis: {hint}" if hint else ""


def _fit_hint(got: Run) -> str | None:
    """The first catalogued mistake with the learner's w, b and losses; else a
    structural diagnosis."""
    w, b, losses = got.result["out"]
    for mistake in FIT_LINEAR_REGRESSION.mistakes:
        try:
            mw, mb, ml = run_case(FIT_LINEAR_REGRESSION, mistake.impl, got.case).result["out"]
        except Exception:  # noqa: BLE001, S112 - this mistake does not apply here
            continue
        if _close(w, mw, 1e-4, 1e-5) and _close(b, mb, 1e-4, 1e-5) and \
                _close(np.asarray(losses, dtype=float), np.asarray(ml, dtype=float),
                       1e-4, 1e-6):
            return mistake.text(got)
    y = got.case.args[1]
    if len(losses) and not math.isclose(losses[0], float((y ** 2).mean()), rel_tol=1e-4):
        return NONZERO_INIT
    if float(b) == 0.0:
        return NO_BIAS
    return None


NONZERO_INIT = ("the first loss should be mean(y**2), the loss at w = 0, b = 0: start "
                "from zeros, torch.zeros(d) and torch.zeros(()).")
NO_BIAS = ("b never moved: the model is X @ w + b, and b must be a leaf tensor with "
           "requires_grad=True that you update like w.")


def _regression(rng: np.random.Generator, n: int, d: int, dtype: torch.dtype) -> tuple[Any, Any]:
    gen = generator(sub_seed(rng))
    x = torch.randn(n, d, generator=gen, dtype=_F64)
    w = torch.randn(d, generator=gen, dtype=_F64)
    y = x @ w + 0.5 + 0.2 * torch.randn(n, generator=gen, dtype=_F64)
    return x.to(dtype), y.to(dtype)


def _fit_hidden(rng: np.random.Generator) -> Iterator[Case]:
    x, y = _regression(rng, int(rng.integers(30, 90)), int(rng.integers(1, 6)), torch.float32)
    yield Case("random float32 data", (x, y, float(rng.uniform(0.02, 0.1)),
                                       int(rng.integers(20, 60))))
    yield Case("random float32 data, converged", (x, y, 0.1, 400))   # the least-squares fit
    yield Case("random float32 data, zero steps", (x, y, float(rng.uniform(0.01, 0.1)), 0))
    x, y = _regression(rng, int(rng.integers(15, 40)), int(rng.integers(1, 4)), _F64)
    yield Case("random float64 data", (x, y, float(rng.uniform(0.1, 0.3)),
                                       int(rng.integers(10, 40))))


def _data(n: int, d: int, seed: int) -> tuple[Any, Any]:
    X, y, _, _ = make_regression(n=n, d=d, noise=0.1, seed=seed)
    return X, y


FIT_LINEAR_REGRESSION = Exercise(
    grade_id="test_fit_linear_regression",
    name="fit_linear_regression",
    reference=fit_linear_regression,
    cases=[
        Case("one step, make_regression(n=50, d=2, seed=1), lr = 0.1",
             (*_data(50, 2, 1), 0.1, 1)),
        Case("20 steps, make_regression(n=50, d=2, seed=1), lr = 0.1",
             (*_data(50, 2, 1), 0.1, 20)),
        Case("0 steps, make_regression(n=50, d=2, seed=1), lr = 0.1",
             (*_data(50, 2, 1), 0.1, 0)),
        Case("15 steps, make_regression(n=30, d=3, seed=2) in float64, lr = 0.2",
             (*(t.double() for t in _data(30, 3, 2)), 0.2, 15)),
        Case("300 steps, make_regression(n=100, d=3, seed=0), lr = 0.1",
             (*_data(100, 3, 0), 0.1, 300), data="least_squares"),
    ],
    observe=_fit_observe,
    show=lambda run: run.result["out"],
    passed="fit_linear_regression: GD from zeros on the mean squared error matches "
           "the reference trajectory (1, 20 and 0 steps, float64 data, losses "
           "included) and reaches the closed-form least-squares fit within 1e-3 "
           "after 300 steps",
    hidden=_fit_hidden,
    rtol=1e-4, atol=1e-5,
    call=_fit_flow,
    rules=[_fit_contract],
    after=[_fit_values],
    on_error=_on_error,
    mistakes=[
        Mistake("sum_instead_of_mean",
                lambda run: "you used the SUM of squared errors; the loss is their MEAN "
                f"(torch's mse_loss default). With the sum every gradient is n = "
                f"{len(run.case.args[0])} times larger, as if the learning rate were n "
                "times larger: use ((X @ w + b - y) ** 2).mean().",
                lambda X, y, lr, n: _fit(X, y, lr, n, reduction="sum")),
        Mistake("half_mse",
                "you used half the mean squared error (1/2 · mean): the loss of this "
                "exercise is the plain mean, ((X @ w + b - y) ** 2).mean().",
                lambda X, y, lr, n: _fit(X, y, lr, n, reduction="half")),
        Mistake("grads_not_zeroed", ACCUMULATED,
                lambda X, y, lr, n: _fit(X, y, lr, n, zero=False)),
        Mistake("losses_after_update",
                "your losses are shifted by one step: record the loss computed BEFORE "
                "each update (the one you call backward() on).",
                lambda X, y, lr, n: _fit(X, y, lr, n, shift=True)),
        Mistake("nonzero_init", NONZERO_INIT,
                lambda X, y, lr, n: _fit(X, y, lr, n, init=0.5)),
        Mistake("no_bias", NO_BIAS, lambda X, y, lr, n: _fit(X, y, lr, n, bias=False)),
    ],
    forbidden=FORBIDDEN,
)


# ----------------------------------------------------------------- predict, then run

def _grad_after_three_backwards() -> float:
    """``w.grad`` after three ``backward()`` calls on (w - 3)**2 at w = 5 (run)."""
    with _ENABLE_GRAD():
        w = torch.tensor(5.0, requires_grad=True)
        for _ in range(3):
            ((w - 3) ** 2).backward()
        return float(w.grad.item())


PREDICT_GRAD_AFTER_3 = Question(
    grade_id="test_predict_grad_after_3",
    name="predict_grad_after_3",
    answer=_grad_after_three_backwards,
    atol=0.01,
    why=("backward() ADDS the new gradient into .grad instead of overwriting it: "
         "f'(5) = 4 three times gives 4 + 4 + 4 = 12. In a training loop, clear "
         ".grad before every backward()."),
)

#: The outcomes the rebinding question offers.
REBIND = ("runs 4 steps and w approaches 3", "runs 4 steps but w stays at 5",
          "fails at step 1", "fails at step 2")


def _rebind_outcome() -> str:
    """Which of :data:`REBIND` four steps of ``w = w - 0.1 * w.grad`` give (run)."""
    with _ENABLE_GRAD(), warnings.catch_warnings():
        warnings.simplefilter("ignore")             # the non-leaf .grad warning
        w = torch.tensor(5.0, requires_grad=True)
        for step in range(1, 5):
            try:
                loss = (w - 3) ** 2
                loss.backward()
                w = w - 0.1 * w.grad
            except (TypeError, RuntimeError):
                return REBIND[2] if step == 1 else REBIND[3]
        return REBIND[0] if abs(w.item() - 3) < 2 else REBIND[1]


PREDICT_REBIND = Question(
    grade_id="test_predict_rebind",
    name="predict_rebind",
    answer=_rebind_outcome,
    choices=REBIND,
    why=("step 1 works on the leaf you created, but `w = w - lr * w.grad` rebinds w "
         "to a new tensor computed by a recorded operation: a non-leaf. At step 2, "
         "backward() fills .grad only for leaves, so w.grad is None (torch warns) and "
         "`lr * w.grad` raises a TypeError."),
)

#: The graded cells, in notebook order.
EXERCISES = [AUTOGRAD_DERIVATIVE, FINITE_DIFFERENCE, PREDICT_GRAD_AFTER_3,
             PREDICT_REBIND, GD_STEP_AUTOGRAD, FIT_LINEAR_REGRESSION]
