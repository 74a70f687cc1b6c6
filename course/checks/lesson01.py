r"""Checks for lesson 01-gradient-descent.

The exercises minimise $f(w) = (w - 3)^2$ by hand:

- :func:`check_derivative` -- $f'(w) = 2(w - 3)$, on floats and arrays.
- :func:`check_gd_step` -- one step $w - \eta\,g$, without touching the input.
- :func:`check_gradient_descent` -- the history $w_0, w_1, \dots, w_T$.
- :func:`check_steps_to_tolerance` -- the step count predicted by the exact
  recursion $e_t = (1 - \eta L)^t e_0$.

Each check runs named cases against a closed form and, when a value is wrong,
looks for the classic mistakes of that exercise (forgot the factor 2, moved
uphill, appended the same array object every step, ...) to say what to fix.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from course.checks._common import (
    CheckFailure,
    call,
    close,
    fmt,
    mismatch,
    passed,
    require_function,
)

__all__ = [
    "check_derivative",
    "check_gd_step",
    "check_gradient_descent",
    "check_steps_to_tolerance",
]

_NONE_HINT = ("your function returned None: did you forget `return`? "
              "(`w -= ...` changes w but returns nothing)")


def _returned_none(name: str, case: str) -> CheckFailure:
    return CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: {_NONE_HINT}")


def _as_float_array(value: Any) -> np.ndarray | None:
    """``value`` as a float array, or None if it holds no numbers."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (str, bytes)) or (
            isinstance(value, np.ndarray) and value.dtype.kind not in "biuf"):
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None


def _which(actual: Any, candidates: dict[str, Any], expected: Any) -> str | None:
    """The first diagnosis whose wrong value matches ``actual`` (and differs
    from ``expected``), or None."""
    for hint, value in candidates.items():
        if close(actual, value) and not close(value, expected):
            return hint
    return None


# --------------------------------------------------------------------------
# Exercise 1.1: derivative
# --------------------------------------------------------------------------

_DERIVATIVE_PROBES = (5.0, 0.0, -1.5, 10.25, 3.0)

_DERIVATIVE_MISTAKES: dict[str, Callable[[float], float]] = {
    "you forgot the factor 2: the derivative of (w - 3)**2 is 2 * (w - 3), "
    "not w - 3 (power rule: bring the exponent down).": lambda w: w - 3,
    "the sign is flipped: f'(w) = 2 * (w - 3) is positive to the right of the "
    "minimum w = 3, where f goes uphill.": lambda w: -2 * (w - 3),
    "the sign is flipped and the factor 2 is missing: f'(w) = 2 * (w - 3), "
    "not 3 - w.": lambda w: 3 - w,
    "you returned f itself, (w - 3)**2: return its derivative, the slope "
    "2 * (w - 3).": lambda w: (w - 3) ** 2,
    "you differentiated w**2 and dropped the shift: f'(w) = 2 * (w - 3) "
    "= 2w - 6.": lambda w: 2 * w,
    "2 * (w - 3) expands to 2w - 6, not 2w - 3: multiply both terms by 2.":
        lambda w: 2 * w - 3,
}


def _derivative_diagnosis(fn: Callable[..., Any]) -> str | None:
    """Match the learner's values on all probe points against the mistakes."""
    try:
        with np.errstate(all="ignore"):
            got = [float(np.asarray(fn(w), dtype=float)) for w in _DERIVATIVE_PROBES]
    except Exception:  # noqa: BLE001 - no diagnosis then
        return None
    for hint, wrong in _DERIVATIVE_MISTAKES.items():
        if close(got, [wrong(w) for w in _DERIVATIVE_PROBES]):
            return hint
    return None


def check_derivative(derivative: Callable[..., Any]) -> None:
    """Check ``derivative(w)`` $= f'(w) = 2(w - 3)$ on floats and numpy arrays."""
    name = "derivative"
    require_function(derivative, name)
    for w in _DERIVATIVE_PROBES:
        case = f"case 'w={w}'"
        out = call(derivative, name, case, w)
        if out is None:
            raise _returned_none(name, case)
        value = _as_float_array(out)
        expected = 2 * (w - 3)
        if value is None or value.shape != ():
            raise CheckFailure(f"{case}: expected one number, got {fmt(out)} "
                               f"(type {type(out).__name__}).")
        if not close(value, expected):
            raise mismatch(case, expected, out, _derivative_diagnosis(derivative))

    for w in (np.array([-1.0, 0.0, 2.5, 3.0, 7.0]),
              np.array([[4.0, 1.0], [3.5, -2.0]])):
        case = f"case 'w=np.array({w.tolist()})'"
        w_in = w.copy()
        try:
            out = call(derivative, name, case, w_in)
        except CheckFailure as err:
            if "not implemented" in str(err):
                raise
            raise CheckFailure(
                f"{err}\n  Diagnosis: your function works on single numbers but "
                "not on a numpy array. Use only arithmetic on w (-, *, **), no "
                "math.* functions, `if` on w or float(w): then numpy applies it "
                "element by element.") from None
        if out is None:
            raise _returned_none(name, case)
        if not np.array_equal(w_in, w):
            raise CheckFailure(
                f"{case}: `{name}` changed the caller's array in place (now "
                f"{fmt(w_in)}).\n  Diagnosis: don't write `w -= 3` or `w *= 2`; "
                "compute a new value, e.g. `return 2 * (w - 3)`.")
        expected = 2 * (w - 3)
        if not isinstance(out, np.ndarray) or out.shape != w.shape:
            raise CheckFailure(
                f"{case}: expected a numpy array of shape {w.shape}, got "
                f"{type(out).__name__} {fmt(out)}.\n  Diagnosis: compute with "
                "numpy arithmetic on w directly (no loop, no list).")
        if not close(out, expected):
            raise mismatch(case, expected, out, _derivative_diagnosis(derivative))
    passed("derivative: 5 numbers and 2 numpy arrays match f'(w) = 2(w - 3); "
           "the input array is left unchanged")


# --------------------------------------------------------------------------
# Exercise 1.2: gd_step
# --------------------------------------------------------------------------

def _gd_step_mistakes(w: Any, grad: Any, lr: float) -> dict[str, Any]:
    return {
        "your update moved w uphill: subtract lr × gradient "
        "(w - lr * grad), don't add it.": w + lr * grad,
        "you forgot the learning rate: the step is lr * grad, so return "
        "w - lr * grad (not w - grad).": w - grad,
        "you returned only the step: add it to the current point, "
        "return w - lr * grad.": -lr * grad,
        "you returned only the step, with the wrong sign: "
        "return w - lr * grad.": lr * grad,
        "you subtracted lr alone: multiply it by the gradient, "
        "w - lr * grad.": w - lr,
    }


def check_gd_step(gd_step: Callable[..., Any]) -> None:
    r"""Check ``gd_step(w, grad, lr)`` $= w - \eta\,g$, leaving ``w`` unchanged."""
    name = "gd_step"
    require_function(gd_step, name)
    scalar_cases = [(5.0, 4.0, 0.1), (0.0, -6.0, 0.25), (1.0, -4.0, 1.5),
                    (-2.0, 3.0, 0.0)]
    for w, grad, lr in scalar_cases:
        case = f"case 'w={w}, grad={grad}, lr={lr}'"
        out = call(gd_step, name, case, w, grad, lr)
        if out is None:
            raise _returned_none(name, case)
        value = _as_float_array(out)
        expected = w - lr * grad
        if value is None or value.shape != ():
            raise CheckFailure(f"{case}: expected one number, got {fmt(out)} "
                               f"(type {type(out).__name__}).")
        if not close(value, expected):
            raise mismatch(case, expected, out,
                           _which(value, _gd_step_mistakes(w, grad, lr), expected))

    array_cases = [
        (np.array([1.0, -2.0, 0.5]), np.array([0.5, -1.0, 4.0]), 0.1),
        (np.array([[3.0, 1.0], [0.0, -1.0]]), np.array([[2.0, -2.0], [1.0, 0.5]]), 0.5),
    ]
    for w, grad, lr in array_cases:
        case = f"case 'w=np.array({w.tolist()}), lr={lr}'"
        w_in, grad_in = w.copy(), grad.copy()
        out = call(gd_step, name, case, w_in, grad_in, lr)
        mutated = not np.array_equal(w_in, w)
        if out is None:
            hint = _NONE_HINT
            if mutated:
                hint = ("`w -= lr * grad` updated the caller's array in place and "
                        "your function returned None: write "
                        "`return w - lr * grad`, which makes a new array.")
            raise CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: {hint}")
        if mutated:
            raise CheckFailure(
                f"{case}: `{name}` changed the caller's array w in place (it is "
                f"now {fmt(w_in)}).\n  Diagnosis: `w -= lr * grad` modifies the "
                "array you were given, so the old point (and every history entry "
                "that refers to it) changes too. Return a new array: "
                "`return w - lr * grad`.")
        if not np.array_equal(grad_in, grad):
            raise CheckFailure(f"{case}: `{name}` changed the gradient array in "
                               "place: leave grad as it is.")
        expected = w - lr * grad
        if not isinstance(out, np.ndarray) or out.shape != w.shape:
            raise CheckFailure(f"{case}: expected a numpy array of shape {w.shape}, "
                               f"got {type(out).__name__} {fmt(out)}.")
        if not close(out, expected):
            raise mismatch(case, expected, out,
                           _which(out, _gd_step_mistakes(w, grad, lr), expected))
    passed("gd_step: 4 numbers and 2 numpy arrays match w - lr * grad; "
           "the input arrays are left unchanged")


# --------------------------------------------------------------------------
# Exercise 1.3: gradient_descent
# --------------------------------------------------------------------------

def _reference_history(f_grad: Callable[[Any], Any], w0: Any, lr: float,
                       n_steps: int, sign: float = 1.0,
                       frozen_grad: bool = False) -> np.ndarray:
    """Plain gradient descent (``sign=-1`` walks uphill; ``frozen_grad`` uses
    the gradient at ``w0`` on every step: two classic mistakes)."""
    w = np.array(w0, dtype=float)
    g0 = f_grad(w)
    history = [w]
    for _ in range(n_steps):
        w = w - sign * lr * (g0 if frozen_grad else f_grad(w))
        history.append(w)
    return np.array(history)


def _grad_shift_quadratic(w: Any) -> Any:
    """Gradient of (w - 3)**2: what a hard-coded solution uses."""
    return 2 * (w - 3)


def _grad_other(w: Any) -> Any:
    """Gradient of 2 (w + 1)**2: a different f_grad."""
    return 4 * (w + 1)


_A2 = np.array([[1.0, 0.0], [0.0, 4.0]])
_C2 = np.array([0.5, -0.5])


def _grad_bowl(w: Any) -> Any:
    """Gradient of 0.5 (w - c)^T A (w - c) with A = diag(1, 4)."""
    return _A2 @ (w - _C2)


def check_gradient_descent(gradient_descent: Callable[..., Any]) -> None:
    """Check ``gradient_descent(f_grad, w0, lr, n_steps)`` returns the history
    ``[w0, w1, ..., w_{n_steps}]`` (list or array) and leaves ``w0`` unchanged."""
    name = "gradient_descent"
    require_function(gradient_descent, name)
    runs = [
        ("f_grad = 2(w - 3), w0=0.0, lr=0.1, n_steps=5",
         _grad_shift_quadratic, 0.0, 0.1, 5),
        ("f_grad = 4(w + 1), w0=2.0, lr=0.1, n_steps=6",
         _grad_other, 2.0, 0.1, 6),
        ("2-D bowl, w0=np.array([2.0, 1.0]), lr=0.1, n_steps=4",
         _grad_bowl, np.array([2.0, 1.0]), 0.1, 4),
        ("f_grad = 2(w - 3), w0=1.0, lr=0.3, n_steps=0",
         _grad_shift_quadratic, 1.0, 0.3, 0),
    ]
    for label, f_grad, w0, lr, n_steps in runs:
        case = f"case '{label}'"
        w0_in = np.array(w0, dtype=float) if isinstance(w0, np.ndarray) else w0
        out = call(gradient_descent, name, case, f_grad, w0_in, lr, n_steps)
        if out is None:
            raise CheckFailure(
                f"{case}: `{name}` returned None.\n  Diagnosis: did you forget "
                "`return history` at the end (after the loop, not inside it)?")
        history = _as_float_array(out)
        if history is None or history.dtype == object:
            raise CheckFailure(
                f"{case}: expected a list or numpy array of iterates, got "
                f"{type(out).__name__}: {fmt(out)}.")
        expected = _reference_history(f_grad, w0, lr, n_steps)
        _check_history_length(case, name, history, expected, n_steps)
        if history.shape != expected.shape:
            raise CheckFailure(
                f"{case}: expected {n_steps + 1} iterates of shape "
                f"{np.shape(w0)} (array shape {expected.shape}), got shape "
                f"{history.shape}.")
        if not close(history, expected):
            raise mismatch(case, expected, history,
                           _history_diagnosis(history, expected, f_grad, w0, lr,
                                              n_steps))
        if isinstance(w0, np.ndarray) and not np.array_equal(w0_in, w0):
            raise CheckFailure(
                f"{case}: `{name}` changed the caller's w0 in place (it is now "
                f"{fmt(w0_in)}).\n  Diagnosis: start from a copy (w = w0.copy()) "
                "or update with `w = w - lr * g`, which makes a new array.")
    passed("gradient_descent: 4 runs (2 different f_grad, a 2-D numpy w0, "
           "n_steps=0) return w0, w1, ..., w_{n_steps}; w0 is left unchanged")


def _check_history_length(case: str, name: str, history: np.ndarray,
                          expected: np.ndarray, n_steps: int) -> None:
    """Explain a history with the wrong number of iterates."""
    got = len(history) if history.ndim else 0
    want = n_steps + 1
    if got == want:
        return
    msg = (f"{case}: expected {want} iterates (w0 and one per step), got {got}.")
    if got == n_steps and n_steps > 0 and close(history, expected[1:]):
        hint = ("your history is missing the starting point w0: start with "
                "history = [w0], then append each new w, so that history[t] is "
                "w_t and len(history) == n_steps + 1.")
    elif got == n_steps and n_steps > 0 and close(history, expected[:-1]):
        hint = ("the last step is missing: loop `for _ in range(n_steps)` and "
                "append after every update.")
    elif got == n_steps + 2:
        hint = ("one entry too many (off by one): start with [w0], loop "
                "`for _ in range(n_steps)` and append once per step (not also "
                "before the loop or after it).")
    elif got == 0:
        hint = "return the whole history (a list), not a single number."
    else:
        hint = ("start with history = [w0] and append the new w once per step, "
                "for n_steps steps.")
    raise CheckFailure(f"{msg}\n  Diagnosis: {hint}")


def _history_diagnosis(history: np.ndarray, expected: np.ndarray,
                       f_grad: Callable[[Any], Any], w0: Any, lr: float,
                       n_steps: int) -> str | None:
    """Name the classic mistake behind a wrong history, if we recognise it."""
    rows_equal = all(np.array_equal(row, history[-1]) for row in history)
    if len(history) > 2 and rows_equal and not np.allclose(expected[0], expected[-1]):
        return ("every entry of your history is the same (the last iterate): you "
                "appended the same array object each step and then changed it in "
                "place. Append a copy (w.copy()) or rebind w = w - lr * grad, "
                "which makes a new array.")
    if f_grad is not _grad_shift_quadratic and close(
            history, _reference_history(_grad_shift_quadratic, w0, lr, n_steps)):
        return ("these are the iterates for f(w) = (w - 3)**2, not for the f_grad "
                "you were given: call f_grad(w) for the gradient instead of "
                "derivative(w) or a hard-coded 2 * (w - 3).")
    if close(history, _reference_history(f_grad, w0, lr, n_steps, sign=-1.0)):
        return ("your iterates moved uphill: w = w - lr * f_grad(w), "
                "not w + lr * f_grad(w).")
    if close(history, _reference_history(f_grad, w0, lr, n_steps,
                                         frozen_grad=True)):
        return ("every step used the gradient at w0: call f_grad(w) on the "
                "current w inside the loop.")
    if close(history[0], expected[0]) and not close(history[:2], expected[:2]):
        return "the first step is already wrong: is it w - lr * f_grad(w)?"
    return None


# --------------------------------------------------------------------------
# Exercise 1.4: steps_to_tolerance
# --------------------------------------------------------------------------

class _TimeLimit(BaseException):
    """Raised inside the learner's code when a case takes too long."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread on POSIX only)."""
    usable = (hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise _TimeLimit()

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _reference_steps(lr: float, e0: float, tol: float, L: float) -> float:
    """Smallest t >= 0 with |1 - lr L|^t |e0| <= tol (math.inf if none)."""
    e0 = abs(e0)
    if e0 <= tol:
        return 0
    q = abs(1 - lr * L)
    if q == 0:
        return 1
    if q >= 1:
        return math.inf
    return math.ceil(math.log(tol / e0) / math.log(q))


_ABS_FACTOR = ("in the oscillating regime 1 - lr·L is negative: the error flips "
               "sign each step but its size shrinks by |1 - lr·L|. Use "
               "abs(1 - lr * L) (math.log of a negative number fails).")
_NEVER = ("when |1 - lr·L| >= 1 the error never shrinks (lr = 0: nothing moves; "
          "lr = 2/L: it bounces between +e0 and -e0 forever; lr > 2/L: it "
          "grows), so no number of steps is enough: return math.inf. Test this "
          "before any loop or log.")

# (label, lr, e0, tol, L, hint when this case alone is wrong)
_STEP_CASES = [
    ("lr=0.1, e0=3.0, tol=1e-3, L=2.0", 0.1, 3.0, 1e-3, 2.0, None),
    ("lr=0.01, e0=3.0, tol=1e-3, L=2.0", 0.01, 3.0, 1e-3, 2.0, None),
    ("lr=0.05, e0=1.0, tol=1e-6, L=10.0", 0.05, 1.0, 1e-6, 10.0, None),
    ("lr=0.9, e0=3.0, tol=1e-3, L=2.0", 0.9, 3.0, 1e-3, 2.0, _ABS_FACTOR),
    ("lr=0.95, e0=3.0, tol=1e-3, L=2.0", 0.95, 3.0, 1e-3, 2.0, _ABS_FACTOR),
    ("lr=0.1, e0=-3.0, tol=1e-3, L=2.0", 0.1, -3.0, 1e-3, 2.0,
     "the start may be left of the minimum (e0 < 0): only its size matters, "
     "use abs(e0)."),
    ("lr=0.3, e0=1e-4, tol=1e-3, L=2.0", 0.3, 1e-4, 1e-3, 2.0,
     "the start is already within tol (|e0| <= tol): that takes 0 steps."),
    ("lr=0.5, e0=3.0, tol=1e-3, L=2.0", 0.5, 3.0, 1e-3, 2.0,
     "at lr = 1/L the factor 1 - lr·L is 0: the first step lands exactly on "
     "the minimum, so the answer is 1 (log(0) is undefined: handle this case "
     "before taking logs)."),
    ("lr=1.1, e0=3.0, tol=1e-3, L=2.0", 1.1, 3.0, 1e-3, 2.0, _NEVER),
    ("lr=1.0, e0=3.0, tol=1e-3, L=2.0", 1.0, 3.0, 1e-3, 2.0, _NEVER),
    ("lr=0.0, e0=3.0, tol=1e-3, L=2.0", 0.0, 3.0, 1e-3, 2.0, _NEVER),
]


def check_steps_to_tolerance(steps_to_tolerance: Callable[..., Any]) -> None:
    r"""Check ``steps_to_tolerance(lr, e0, tol, L)``: the smallest $t$ with
    $|1 - \eta L|^t\,|e_0| \le \mathrm{tol}$, or ``math.inf``."""
    name = "steps_to_tolerance"
    require_function(steps_to_tolerance, name)
    for label, lr, e0, tol, L, hint in _STEP_CASES:
        case = f"case '{label}'"
        expected = _reference_steps(lr, e0, tol, L)
        try:
            with _time_limit(2.0):
                out = call(steps_to_tolerance, name, case, lr, e0, tol, L)
        except _TimeLimit:
            raise CheckFailure(
                f"{case}: `{name}` did not return within 2 s (an endless loop?)."
                f"\n  Diagnosis: {_NEVER}") from None
        except CheckFailure as err:
            if "not implemented" in str(err) or hint is None:
                raise
            raise CheckFailure(f"{err}\n  Diagnosis: {hint}") from None
        if L != 2.0 and _is_number(out) and out != expected \
                and out == _reference_steps(lr, e0, tol, 2.0):
            hint = ("this is the answer for L = 2: use the L you were given "
                    "(the factor is 1 - lr * L).")
        _check_step_count(case, name, out, expected, lr, L, hint)
    passed("steps_to_tolerance: 11 cases (monotone, oscillating, lr = 1/L, "
           "already converged, |1 - lr L| >= 1 -> inf) match the smallest t with "
           "|1 - lr L|^t |e0| <= tol")


def _check_step_count(case: str, name: str, out: Any, expected: float,
                      lr: float, L: float, hint: str | None) -> None:
    """Compare one returned step count with the expected one and explain."""
    if out is None:
        raise _returned_none(name, case)
    if not _is_number(out):
        raise CheckFailure(
            f"{case}: expected a number of steps (an int, or math.inf), got "
            f"{type(out).__name__}: {fmt(out)}.")
    if math.isnan(out):
        raise mismatch(case, expected, out, hint or _ABS_FACTOR)
    is_int = isinstance(out, (int, np.integer))
    is_inf = math.isinf(out) and out > 0
    if (is_int or is_inf) and out == expected:
        return
    if isinstance(out, (float, np.floating)) and out == expected:
        raise CheckFailure(
            f"{case}: expected the int {expected}, got the float {fmt(float(out))}."
            "\n  Diagnosis: a number of steps is an int: math.ceil(...) returns "
            "one (np.ceil returns a float), or wrap it in int(...).")
    if math.isinf(expected):
        raise mismatch(case, expected, out, hint)
    if expected > 0 and out == expected - 1:
        hint = ("one step short: after that many steps the error is still above "
                "tol. Round the real-valued solution of |1 - lr L|^t |e0| = tol "
                "UP (math.ceil), not down (int() or math.floor).")
    elif expected > 0 and out == expected + 1:
        hint = ("one step too many: you need the smallest t with |e_t| <= tol "
                "(use <=, and math.ceil without + 1).")
    elif math.isinf(out) and 1 < lr * L < 2:
        hint = ("lr between 1/L and 2/L oscillates but still converges "
                "(|1 - lr L| < 1): the limit is 2/L, not 1/L.")
    raise mismatch(case, expected, out, hint)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) \
        and not isinstance(x, bool)
