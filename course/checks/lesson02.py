r"""Checks for lesson 02-autograd.

The exercises redo lesson 1 with ``torch.autograd``:

- :func:`check_autograd_derivative` -- $f'(w)$ from ``backward()`` and
  ``.grad``, returned as a Python float.
- :func:`check_finite_difference` -- the central difference
  $(f(w + \varepsilon) - f(w - \varepsilon)) / 2\varepsilon$.
- :func:`check_gd_step_autograd` -- one in-place step: zero the gradients,
  ``backward()``, update under ``torch.no_grad()``.
- :func:`check_fit_linear_regression` -- full-batch gradient descent on the
  mean squared error from $w = 0, b = 0$, against an exact reference
  trajectory and the closed-form least-squares fit.

Every check compares with a reference computed here and, for a wrong value or
an exception, looks for the classic autograd mistakes (a tensor returned
instead of a float, gradients accumulated across steps, an update outside
``torch.no_grad()``, a parameter replaced instead of updated in place, a sum
instead of a mean, ...) to say what to fix. The checks use no random numbers
and restore torch's global RNG state and grad mode after calling your code.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

from course.checks._common import (
    CheckFailure,
    close,
    fmt,
    learner_code,
    mismatch,
    passed,
    require_function,
)
from course.data import least_squares, make_regression

__all__ = [
    "check_autograd_derivative",
    "check_finite_difference",
    "check_gd_step_autograd",
    "check_fit_linear_regression",
]

_NONE_HINT = "your function returned None: did you forget `return`?"


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


@contextmanager
def _isolated() -> Iterator[None]:
    """Restore torch's global RNG state and grad mode after learner code."""
    rng = torch.random.get_rng_state()
    grad_mode = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.random.set_rng_state(rng)
        torch.set_grad_enabled(grad_mode)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's can be long)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _run(fn: Callable[..., Any], name: str, case: str,
         hint_for: Callable[[BaseException], str | None], *args: Any) -> Any:
    """Call learner code; diagnose known exceptions with ``hint_for``.

    ``NotImplementedError`` gets the friendly "not implemented yet" message,
    any other exception a message naming the case and the exception, plus a
    diagnosis when ``hint_for`` recognises it. Grad mode being left disabled
    by the learner's code is reported too.
    """
    with _isolated():
        try:
            out = fn(*args)
        except CheckFailure:
            raise
        except NotImplementedError:
            with learner_code(name, case):
                raise
        except Exception as exc:  # noqa: BLE001 - reported to the learner
            msg = f"{case}: `{name}` raised {type(exc).__name__}: {_first_line(exc)}"
            hint = hint_for(exc)
            if hint:
                msg += f"\n  Diagnosis: {hint}"
            raise CheckFailure(msg) from None
        if not torch.is_grad_enabled():
            raise CheckFailure(
                f"{case}: `{name}` switched gradient tracking off for the whole "
                "notebook (torch.set_grad_enabled(False)?).\n  Diagnosis: put "
                "only the update inside a `with torch.no_grad():` block; the "
                "block switches tracking back on when it ends.")
    return out


def _returned_none(name: str, case: str) -> CheckFailure:
    return CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: {_NONE_HINT}")


def _is_float(value: Any) -> bool:
    """A Python float (numpy's float64 is a subclass and counts too)."""
    return isinstance(value, float)


def _no_hint(exc: BaseException) -> str | None:  # noqa: ARG001
    return None


def _autograd_error_hint(exc: BaseException) -> str | None:
    """Diagnoses for the autograd errors every exercise can run into."""
    text = str(exc)
    if "leaf Variable that requires grad" in text:
        return ("you updated a parameter in place while autograd was recording: "
                "torch refuses because the in-place change would corrupt the "
                "graph. Do the update inside `with torch.no_grad():`, e.g. "
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


# --------------------------------------------------------------------------
# Exercise 2.1: autograd_derivative
# --------------------------------------------------------------------------

# (description, f on tensors, f as a float function, f'(w) in closed form, w)
_DERIVATIVE_CASES: tuple[tuple[str, Callable[[Any], Any], Callable[[float], float],
                               Callable[[float], float], float], ...] = (
    ("f(w) = (w - 3)**2", lambda w: (w - 3) ** 2, lambda w: (w - 3) ** 2,
     lambda w: 2 * (w - 3), 5.0),
    ("f(w) = w**3 - 2*w", lambda w: w ** 3 - 2 * w, lambda w: w ** 3 - 2 * w,
     lambda w: 3 * w ** 2 - 2, 2.0),
    ("f(w) = 1 / (1 + w**2)", lambda w: 1 / (1 + w ** 2),
     lambda w: 1 / (1 + w ** 2), lambda w: -2 * w / (1 + w ** 2) ** 2, -1.5),
    ("f(w) = torch.sin(w) * torch.exp(w)",
     lambda w: torch.sin(w) * torch.exp(w),
     lambda w: math.sin(w) * math.exp(w),
     lambda w: (math.cos(w) + math.sin(w)) * math.exp(w), 0.5),
)


def _derivative_value_hint(out: Any, w: float, value: float,
                           expected: float, calls: list[Any]) -> str | None:
    """Name the classic wrong values of ``autograd_derivative``."""
    if close(out, value, rtol=1e-5, atol=1e-6):
        return ("you returned f(w), the value of the function, not its "
                "derivative: call backward() on f(w) and return w.grad.item() "
                "(w being the tensor you created with requires_grad=True).")
    if close(out, 2 * expected, rtol=1e-5, atol=1e-6):
        return ("your result is twice f'(w): .grad ADDS every backward() into "
                "what is already there, so two backward() calls give 2 f'(w). "
                f"(f was called {len(calls)} time(s).) Call f and backward() "
                "once.")
    if close(out, w, rtol=1e-5, atol=1e-6):
        return "you returned w itself: return the gradient, w.grad.item()."
    return None


def _derivative_tensor_hint(out: torch.Tensor, value: float, expected: float,
                            calls: list[Any]) -> str:
    """Explain why a tensor was returned and how to get the float."""
    if any(out is c for c in calls):
        return ("you returned the input tensor itself; after backward() its "
                "derivative sits in its .grad attribute: return w.grad.item().")
    if out.grad_fn is not None and close(out, value, rtol=1e-5, atol=1e-6):
        return ("you returned f(w), a tensor with "
                f"grad_fn={type(out.grad_fn).__name__}, not its derivative: call "
                "backward() on it, then return w.grad.item().")
    if close(out, expected, rtol=1e-5, atol=1e-6):
        return ("the value is right but it is a tensor: return a Python float "
                "with .item(), e.g. `return w.grad.item()`.")
    return "return a Python float: turn a one-element tensor into one with .item()."


def _spy(f: Callable[[Any], Any], calls: list[Any]) -> Callable[[Any], Any]:
    """``f`` that records the arguments it is called with."""
    def spied(x: Any) -> Any:
        calls.append(x)
        return f(x)
    return spied


def _derivative_exception_hint(w: float, calls: list[Any]
                               ) -> Callable[[BaseException], str | None]:
    """Diagnoses for an exception inside ``autograd_derivative``."""
    def hint(exc: BaseException) -> str | None:
        if any(not isinstance(c, torch.Tensor) for c in calls):
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
    return hint


def check_autograd_derivative(autograd_derivative: Callable[..., Any]) -> None:
    """Check ``autograd_derivative(f, w)`` $= f'(w)$, via autograd, as a float."""
    name = "autograd_derivative"
    require_function(autograd_derivative, name)
    for desc, f, f_float, df, w in _DERIVATIVE_CASES:
        case = f"case '{desc}, w = {w}'"
        calls: list[Any] = []
        out = _run(autograd_derivative, name, case,
                   _derivative_exception_hint(w, calls), _spy(f, calls), w)
        expected, value = df(w), f_float(w)
        if out is None:
            raise _returned_none(name, case)
        if isinstance(out, torch.Tensor):
            raise CheckFailure(
                f"{case}: expected a Python float, got a tensor ({fmt(out)}).\n"
                f"  Diagnosis: {_derivative_tensor_hint(out, value, expected, calls)}")
        if not _is_float(out):
            raise CheckFailure(
                f"{case}: expected a Python float, got {type(out).__name__} "
                f"{fmt(out)}.\n  Diagnosis: return w.grad.item() (or "
                "float(w.grad)); .item() turns a one-element tensor into a float.")
        if not close(out, expected, rtol=1e-5, atol=1e-6):
            raise mismatch(case, expected, out,
                           _derivative_value_hint(out, w, value, expected, calls))
        if not any(isinstance(c, torch.Tensor) and c.requires_grad for c in calls):
            raise CheckFailure(
                f"{case}: the value is right, but f was never called with a "
                "tensor that requires grad.\n  Diagnosis: this exercise is about "
                "autograd: create `torch.tensor(w, requires_grad=True)`, call f "
                "on it, call backward() and read .grad (no formula, no finite "
                "difference).")
    passed(f"{name}: {len(_DERIVATIVE_CASES)} functions (polynomial, rational, "
           "sin·exp) give f'(w) through autograd, returned as Python floats")


# --------------------------------------------------------------------------
# Exercise 2.2: finite_difference
# --------------------------------------------------------------------------

def _cubic(w: float) -> float:
    return w ** 3


def _central(f: Callable[[float], float], w: float, eps: float) -> float:
    return (f(w + eps) - f(w - eps)) / (2 * eps)


# (description, f, f'(w), w, eps or None for the default)
_FD_CASES: tuple[tuple[str, Callable[[float], float], Callable[[float], float],
                       float, float | None], ...] = (
    ("f(w) = w**3", _cubic, lambda w: 3 * w ** 2, 1.0, 1e-2),
    ("f(w) = w**3", _cubic, lambda w: 3 * w ** 2, 2.0, 0.1),
    ("f(w) = math.sin(w)", math.sin, math.cos, 0.7, None),
    ("f(w) = math.exp(-w**2)", lambda w: math.exp(-w ** 2),
     lambda w: -2 * w * math.exp(-w ** 2), -0.3, 1e-4),
)


def _fd_hint(out: float, f: Callable[[float], float], df: Callable[[float], float],
             w: float, eps: float) -> str | None:
    """Name the classic wrong finite differences."""
    exact, expected = df(w), _central(f, w, eps)
    forward = (f(w + eps) - f(w)) / eps
    candidates = {
        f"you used the forward difference (f(w + eps) - f(w)) / eps. Its error "
        f"is O(eps): here {forward - exact:.3g}, against {expected - exact:.3g} "
        "for the central difference (f(w + eps) - f(w - eps)) / (2 * eps), "
        "whose error is O(eps**2). Use the central one.": forward,
        "you used the backward difference (f(w) - f(w - eps)) / eps, whose "
        "error is O(eps); use the central difference "
        "(f(w + eps) - f(w - eps)) / (2 * eps).": (f(w) - f(w - eps)) / eps,
        "you forgot the factor 2: w + eps and w - eps are 2 * eps apart, so "
        "divide by (2 * eps).": (f(w + eps) - f(w - eps)) / eps,
        "operator precedence: `... / 2 * eps` divides by 2 and then MULTIPLIES "
        "by eps. Write `/ (2 * eps)`.": (f(w + eps) - f(w - eps)) / 2 * eps,
        "the sign is flipped: subtract f(w - eps) FROM f(w + eps).": -expected,
    }
    for hint, value in candidates.items():
        if close(out, value, rtol=1e-7, atol=1e-9):
            return hint
    if close(out, exact, rtol=1e-6, atol=1e-9):
        return (f"your result is f'(w) almost exactly, but the central "
                f"difference with eps = {eps:g} is {expected:.10g}: you did not "
                "use the eps that was passed in (a fixed step, or a formula?).")
    return None


def check_finite_difference(finite_difference: Callable[..., Any]) -> None:
    r"""Check ``finite_difference(f, w, eps)``, the central difference.

    It must equal $(f(w+\varepsilon) - f(w-\varepsilon)) / 2\varepsilon$.
    """
    name = "finite_difference"
    require_function(finite_difference, name)
    for desc, f, df, w, eps in _FD_CASES:
        used_eps = 1e-6 if eps is None else eps
        case = (f"case '{desc}, w = {w}, "
                f"{'default eps' if eps is None else f'eps = {eps:g}'}'")
        args = (f, w) if eps is None else (f, w, eps)
        out = _run(finite_difference, name, case, _no_hint, *args)
        if out is None:
            raise _returned_none(name, case)
        if isinstance(out, bool) or not isinstance(out, (float, np.floating)):
            raise CheckFailure(
                f"{case}: expected a float, got {type(out).__name__} {fmt(out)}."
                "\n  Diagnosis: f returns Python floats here, so the formula "
                "gives a float: return it directly.")
        expected = _central(f, w, used_eps)
        if not close(out, expected, rtol=1e-7, atol=1e-9):
            hint = _fd_hint(float(out), f, df, w, used_eps)
            if hint is None and eps is None:
                hint = ("the default step must be eps=1e-6, as in the "
                        "signature `finite_difference(f, w, eps=1e-6)`.")
            raise CheckFailure(
                f"{case}: expected {expected:.10g}, got {float(out):.10g}."
                + (f"\n  Diagnosis: {hint}" if hint else ""))
    passed(f"{name}: {len(_FD_CASES)} cases match the central difference "
           "(f(w + eps) - f(w - eps)) / (2 eps), default eps = 1e-6 included")


# --------------------------------------------------------------------------
# Exercise 2.3: gd_step_autograd
# --------------------------------------------------------------------------

_TARGET = (1.5, -0.5)


def _make_params(dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """Fresh leaf parameters ``[w (2,), b ()]`` with ``.grad`` None."""
    return [torch.tensor([1.0, -2.0], dtype=dtype, requires_grad=True),
            torch.tensor(0.5, dtype=dtype, requires_grad=True)]


def _make_loss(params: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    r"""$L = \sum_i s_i (w_i - t_i)^2 + (b - 1)^2 + w_0 b$, read from ``params``."""
    def loss_fn() -> torch.Tensor:
        w, b = params[0], params[1]
        target = torch.tensor(_TARGET, dtype=w.dtype)
        scale = torch.tensor([1.0, 3.0], dtype=w.dtype)
        return (scale * (w - target) ** 2).sum() + (b - 1) ** 2 + w[0] * b
    return loss_fn


def _reference_steps(n_steps: int, lr: float, *, dtype: torch.dtype,
                     stale: bool = False, zero: bool = True,
                     sign: float = 1.0) -> tuple[list[list[torch.Tensor]], list[float]]:
    """Params after each step and the losses, for a variant of the step."""
    params = _make_params(dtype)
    if stale:
        _give_stale_grads(params)
    loss_fn = _make_loss(params)
    history, losses = [], []
    for _ in range(n_steps):
        if zero:
            for p in params:
                p.grad = None
        loss = loss_fn()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= sign * lr * p.grad
        history.append([p.detach().clone() for p in params])
        losses.append(loss.item())
    return history, losses


def _give_stale_grads(params: list[torch.Tensor]) -> None:
    """Leave a non-zero gradient in every ``.grad``, as an earlier backward would."""
    for p in params:
        p.grad = torch.full_like(p, 2.0)


def _step_exception_hint(exc: BaseException) -> str | None:
    """Diagnoses for an exception inside ``gd_step_autograd``."""
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


def _compare_params(params: list[torch.Tensor], expected: list[torch.Tensor],
                    rtol: float) -> bool:
    """Whether every parameter is close to its expected value."""
    return all(close(p, e, rtol=rtol, atol=1e-12) for p, e in zip(params, expected))


def _flat(tensors: list[torch.Tensor]) -> np.ndarray:
    """Several tensors as one flat float64 array, for messages."""
    return np.concatenate([t.detach().double().reshape(-1).numpy() for t in tensors])


def _replaced_hint(new: Any) -> str:
    """Explain why replacing a parameter object is wrong."""
    if isinstance(new, torch.Tensor) and new.grad_fn is not None:
        return ("you replaced the parameter by a new tensor computed OUTSIDE "
                "torch.no_grad(): it is not a leaf any more (it has grad_fn="
                f"{type(new.grad_fn).__name__}), so the next backward() would not "
                "fill its .grad and every step would add to one growing graph. "
                "Update in place instead: `with torch.no_grad(): p -= lr * p.grad`.")
    return ("you replaced the parameter by a new tensor: whoever holds the old "
            "tensor (a model, an optimizer, the caller) never sees the update. "
            "Update it in place: `with torch.no_grad(): p -= lr * p.grad`.")


def _check_step_structure(case: str, name: str, params: list[torch.Tensor],
                          originals: list[torch.Tensor]) -> None:
    """The learner must keep the same leaf tensors, still requiring grad."""
    if len(params) != len(originals):
        raise CheckFailure(f"{case}: `{name}` changed the length of params "
                           f"({len(originals)} -> {len(params)}).\n  Diagnosis: "
                           "update the tensors in the list, don't add or remove any.")
    for i, (new, old) in enumerate(zip(params, originals)):
        if new is not old:
            raise CheckFailure(f"{case}: params[{i}] is a different object after "
                               f"the step.\n  Diagnosis: {_replaced_hint(new)}")
        if not (old.is_leaf and old.requires_grad):
            raise CheckFailure(
                f"{case}: params[{i}] no longer requires grad (requires_grad="
                f"{old.requires_grad}).\n  Diagnosis: don't detach the "
                "parameters or switch requires_grad off; update them under "
                "`with torch.no_grad():` instead.")


def _step_value_hint(params: list[torch.Tensor], before: list[torch.Tensor],
                     variants: dict[str, list[torch.Tensor]],
                     rtol: float) -> str | None:
    """Name the classic wrong updates of ``gd_step_autograd``."""
    if all(torch.equal(p.detach(), b) for p, b in zip(params, before)):
        grads = [p.grad for p in params]
        if all(g is None or not torch.any(g) for g in grads):
            return ("the parameters did not move and their gradients are "
                    "empty: you zeroed the gradients between backward() and "
                    "the update, so the update subtracted zero. Zero them "
                    "BEFORE loss.backward().")
        return ("the parameters did not change: `p = p - lr * p.grad` only "
                "rebinds the local name p to a new tensor; the caller's tensor "
                "stays the same. Update in place: "
                "`with torch.no_grad(): p -= lr * p.grad`.")
    for hint, values in variants.items():
        if _compare_params(params, values, rtol):
            return hint
    return None


_ACCUMULATED = ("gradients accumulated across steps: backward() ADDS into .grad, "
                "so step 2 used g1 + g2. Zero the gradients (`p.grad = None`) "
                "before calling loss.backward() in every step.")
_STALE = ("your step used the stale gradient that was already in .grad when "
          "gd_step_autograd was called (left by an earlier backward()). Zero the "
          "gradients at the START of the step, before backward() -- torch's "
          "order is zero_grad(), backward(), step().")
_UPHILL = ("your update moved the parameters uphill: subtract lr times the "
           "gradient (p -= lr * p.grad), don't add it.")


def _check_step_return(case: str, name: str, out: Any, expected: float,
                       after: float, rtol: float) -> None:
    """The step returns the loss before the update, as a float."""
    if out is None:
        raise _returned_none(name, case)
    if isinstance(out, torch.Tensor):
        raise CheckFailure(
            f"{case}: expected the loss as a Python float, got a tensor "
            f"({fmt(out)}).\n  Diagnosis: return loss.item(); the tensor keeps "
            "the whole graph alive.")
    if not _is_float(out):
        raise CheckFailure(f"{case}: expected the loss as a Python float, got "
                           f"{type(out).__name__} {fmt(out)}.")
    if not close(out, expected, rtol=rtol, atol=1e-12):
        hint = None
        if close(out, after, rtol=rtol, atol=1e-12):
            hint = ("you returned the loss AFTER the update: return the loss "
                    "you called backward() on, computed before the step.")
        raise mismatch(f"{case} (returned loss)", expected, out, hint)


def _run_step_case(fn: Callable[..., Any], case: str, n_steps: int, lr: float,
                   dtype: torch.dtype, stale: bool) -> None:
    """Run ``n_steps`` of the learner's step and compare after each one."""
    name = "gd_step_autograd"
    rtol = 1e-9 if dtype == torch.float64 else 1e-5
    ref, ref_losses = _reference_steps(n_steps, lr, dtype=dtype, stale=stale)
    acc, _ = _reference_steps(n_steps, lr, dtype=dtype, stale=stale, zero=False)
    up, _ = _reference_steps(n_steps, lr, dtype=dtype, stale=stale, sign=-1.0)
    params = _make_params(dtype)
    if stale:
        _give_stale_grads(params)
    originals, loss_fn = list(params), _make_loss(params)
    for t in range(n_steps):
        step_case = f"{case}, step {t + 1}" if n_steps > 1 else case
        before = [p.detach().clone() for p in params]
        out = _run(fn, name, step_case, _step_exception_hint, params, loss_fn, lr)
        _check_step_structure(step_case, name, params, originals)
        if not _compare_params(params, ref[t], rtol):
            variants = {_UPHILL: up[t]}
            if stale:
                variants[_STALE] = acc[t]
            elif t > 0:
                variants[_ACCUMULATED] = acc[t]
            hint = _step_value_hint(params, before, variants, rtol)
            raise mismatch(f"{step_case} (params [w0, w1, b] after the step)",
                           _flat(ref[t]), _flat(params), hint)
        with torch.no_grad():
            after = _make_loss(ref[t])().item()
        _check_step_return(step_case, name, out, ref_losses[t], after, rtol)


def check_gd_step_autograd(gd_step_autograd: Callable[..., Any]) -> None:
    """Check ``gd_step_autograd(params, loss_fn, lr)``: zero, backward, update."""
    name = "gd_step_autograd"
    require_function(gd_step_autograd, name)
    cases = (
        ("case 'one step from fresh parameters (.grad is None), lr = 0.1'",
         1, 0.1, torch.float64, False),
        ("case 'three steps in a row, lr = 0.05'", 3, 0.05, torch.float64, False),
        ("case 'parameters arrive with a stale .grad from an earlier backward(), "
         "lr = 0.1'", 1, 0.1, torch.float64, True),
        ("case 'float32 parameters, two steps, lr = 0.02'",
         2, 0.02, torch.float32, False),
    )
    for case, n_steps, lr, dtype, stale in cases:
        _run_step_case(gd_step_autograd, case, n_steps, lr, dtype, stale)
    passed(f"{name}: {len(cases)} cases (fresh, repeated, stale .grad, float32) "
           "update the same leaf tensors in place by -lr * grad and return the "
           "loss before the step")


# --------------------------------------------------------------------------
# Exercise 2.4: fit_linear_regression
# --------------------------------------------------------------------------


def _reference_fit(X: torch.Tensor, y: torch.Tensor, lr: float, n_steps: int, *,
                   reduction: str = "mean", zero: bool = True,
                   ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Full-batch GD on the squared error from zeros (or a classic variant)."""
    w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
    b = torch.zeros((), dtype=X.dtype, requires_grad=True)
    losses = []
    for _ in range(n_steps):
        if zero:
            w.grad, b.grad = None, None
        sq = (X @ w + b - y) ** 2
        loss = {"mean": sq.mean(), "sum": sq.sum(), "half": 0.5 * sq.mean()}[reduction]
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
        losses.append(loss.item())
    return w.detach(), b.detach(), losses


def _fit_exception_hint(exc: BaseException) -> str | None:
    text = str(exc)
    if "same dtype" in text or "expected scalar type" in text:
        return ("X is float32: create w and b with X's dtype, e.g. "
                "torch.zeros(d, dtype=X.dtype, requires_grad=True).")
    if "size mismatch" in text or "shapes cannot be multiplied" in text:
        return ("w must have shape (d,) with d = X.shape[1], so that X @ w "
                "has shape (n,).")
    return _step_exception_hint(exc)


def _unpack_fit(case: str, out: Any, d: int, n_steps: int
                ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Check the shape of ``(w, b, losses)`` and return them."""
    name = "fit_linear_regression"
    if out is None:
        raise _returned_none(name, case)
    if not isinstance(out, tuple) or len(out) != 3:
        got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
        raise CheckFailure(f"{case}: expected a tuple (w, b, losses), got {got}."
                           "\n  Diagnosis: end with `return w, b, losses`.")
    w, b, losses = out
    for label, value, shape in (("w", w, (d,)), ("b", b, ())):
        if not isinstance(value, torch.Tensor):
            raise CheckFailure(f"{case}: {label} should be a tensor, got "
                               f"{type(value).__name__}.")
        if tuple(value.shape) != shape:
            hint = ""
            if label == "w" and tuple(value.shape) == (d, 1):
                hint = ("\n  Diagnosis: with w of shape (d, 1), X @ w has shape "
                        "(n, 1) and X @ w - y BROADCASTS against y of shape (n,) "
                        "to an (n, n) matrix: a silent bug. Use w of shape (d,).")
            raise CheckFailure(f"{case}: {label} should have shape {shape}, got "
                               f"{tuple(value.shape)}.{hint}")
    if isinstance(losses, torch.Tensor) or not isinstance(losses, (list, tuple)):
        raise CheckFailure(f"{case}: losses should be a list of floats, got "
                           f"{type(losses).__name__}.")
    if any(isinstance(v, torch.Tensor) for v in losses):
        raise CheckFailure(
            f"{case}: losses holds tensors.\n  Diagnosis: append loss.item(), "
            "a Python float; a loss tensor keeps its whole graph in memory.")
    if len(losses) != n_steps:
        raise CheckFailure(f"{case}: expected {n_steps} losses (one per step, "
                           f"before each update), got {len(losses)}.")
    if not all(_is_float(v) for v in losses):
        raise CheckFailure(f"{case}: losses should be Python floats, got "
                           f"{sorted({type(v).__name__ for v in losses})}.")
    return w.detach(), b.detach(), np.asarray(losses, dtype=float)


def _fit_hint(X: torch.Tensor, y: torch.Tensor, lr: float, n_steps: int,
              w: torch.Tensor, b: torch.Tensor, losses: np.ndarray) -> str | None:
    """Name the classic wrong fits."""
    n = len(X)
    variants = {
        f"you used the SUM of squared errors; the loss is their MEAN "
        f"(torch's mse_loss default). With the sum every gradient is n = {n} "
        "times larger, as if the learning rate were n times larger: use "
        "((X @ w + b - y) ** 2).mean().": dict(reduction="sum"),
        "you used half the mean squared error (1/2 · mean): the loss of this "
        "exercise is the plain mean, ((X @ w + b - y) ** 2).mean().":
            dict(reduction="half"),
        _ACCUMULATED: dict(zero=False),
    }
    for hint, kwargs in variants.items():
        rw, rb, _ = _reference_fit(X, y, lr, n_steps, **kwargs)
        if close(w, rw, rtol=1e-4, atol=1e-5) and close(b, rb, rtol=1e-4, atol=1e-5):
            return hint
    ref_losses = _reference_fit(X, y, lr, n_steps + 1)[2]
    if close(losses, ref_losses[1:], rtol=1e-4, atol=1e-6):
        return ("your losses are shifted by one step: record the loss computed "
                "BEFORE each update (the one you call backward() on).")
    if not math.isclose(losses[0], float((y ** 2).mean()), rel_tol=1e-4):
        return ("the first loss should be mean(y**2), the loss at w = 0, b = 0: "
                "start from zeros, torch.zeros(d) and torch.zeros(()).")
    if float(b) == 0.0:
        return ("b never moved: the model is X @ w + b, and b must be a leaf "
                "tensor with requires_grad=True that you update like w.")
    return None


def _run_fit_case(fn: Callable[..., Any], case: str, n: int, d: int, seed: int,
                  lr: float, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the learner's fit on one data set; compare with the reference run."""
    name = "fit_linear_regression"
    X, y, _, _ = make_regression(n=n, d=d, noise=0.1, seed=seed)
    X_in, y_in = X.clone(), y.clone()
    out = _run(fn, name, case, _fit_exception_hint, X_in, y_in, lr, n_steps)
    if not (torch.equal(X_in, X) and torch.equal(y_in, y)):
        raise CheckFailure(f"{case}: `{name}` changed X or y in place.\n  "
                           "Diagnosis: only w and b may change.")
    w, b, losses = _unpack_fit(case, out, d, n_steps)
    rw, rb, rl = _reference_fit(X, y, lr, n_steps)
    if not (close(w, rw, rtol=1e-5, atol=1e-5) and close(b, rb, rtol=1e-5, atol=1e-5)):
        hint = _fit_hint(X, y, lr, n_steps, w, b, losses)
        raise mismatch(f"{case} (w, b after {n_steps} step{'s' * (n_steps > 1)})",
                       _flat([rw, rb]), _flat([w, b]), hint)
    if not close(losses, rl, rtol=1e-5, atol=1e-6):
        raise mismatch(f"{case} (losses)", np.asarray(rl), losses,
                       _fit_hint(X, y, lr, n_steps, w, b, losses))
    return w, b


def check_fit_linear_regression(fit_linear_regression: Callable[..., Any]) -> None:
    """Check GD on the MSE from zeros against a reference run and least squares."""
    name = "fit_linear_regression"
    require_function(fit_linear_regression, name)
    _run_fit_case(fit_linear_regression,
                  "case 'one step, make_regression(n=50, d=2, seed=1), lr = 0.1'",
                  50, 2, 1, 0.1, 1)
    _run_fit_case(fit_linear_regression,
                  "case '20 steps, make_regression(n=50, d=2, seed=1), lr = 0.1'",
                  50, 2, 1, 0.1, 20)
    case = "case '300 steps, make_regression(n=100, d=3, seed=0), lr = 0.1'"
    w, b = _run_fit_case(fit_linear_regression, case, 100, 3, 0, 0.1, 300)
    X, y, _, _ = make_regression(n=100, d=3, noise=0.1, seed=0)
    w_ls, b_ls = least_squares(X, y)
    if not (close(w, w_ls, atol=1e-3, rtol=0) and close(b, b_ls, atol=1e-3, rtol=0)):
        raise mismatch(f"{case} (against the closed form least_squares)",
                       _flat([w_ls, b_ls]), _flat([w, b]))
    passed(f"{name}: GD from zeros on the mean squared error matches the "
           "reference trajectory (1 and 20 steps, losses included) and reaches "
           "the closed-form least-squares fit within 1e-3 after 300 steps")
