r"""Exercise specs of 01-gradient-descent: minimise $f(w) = (w - 3)^2$ by hand.

- ``derivative`` -- $f'(w) = 2(w - 3)$, on floats and arrays.
- ``gd_step`` -- one step $w - \eta\,g$, without touching the input.
- ``gradient_descent`` -- the history $w_0, w_1, \dots, w_T$.
- ``steps_to_tolerance`` -- the step count predicted by the exact recursion
  $e_t = (1 - \eta L)^t e_0$.

Hidden cases are drawn from each verification's seed: random points, shapes,
learning rates, step counts, tolerances and curvatures (step counts drawn away
from the integer boundaries where rounding could tip the count either way).
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Iterator

import numpy as np

from course.exercises.spec import Case, Exercise, Mistake, Question, Run
from course.exercises.values import INT_TYPES, fmt, type_name

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001

#: The course's answer keys, disabled while a submission is graded.
FORBIDDEN = ["course.gd.gd_step", "course.gd.gradient_descent",
             "course.functions.quadratic_grad"]

#: Module-level functions that compute right answers (besides the references
#: and mistakes): neutralized in the grading child, see course.grading.probes.answer_keys.
ANSWER_KEYS = ["_variant"]

#: Exact types a returned number may have (what the notebook's tests accept).
SCALAR = (float, int, np.float64)
_ARRAY = np.ndarray

NONE_HINT = ("your function returned None: did you forget `return`? "
             "(`w -= ...` changes w but returns nothing)")


def _returned_none(name: str, hint: str = NONE_HINT) -> str:
    return f"`{name}` returned None.\n  Diagnosis: {hint}"


def _number(x: Any) -> Any:
    """A returned number as a float (exact types only), else its type's name."""
    return float(x) if type(x) in SCALAR else type_name(x)


def _float_array(x: Any, shape: tuple[int, ...]) -> Any:
    """A float copy of an ndarray of this shape, else its type's name."""
    if type(x) is _ARRAY and x.shape == shape:
        return np.array(x, dtype=np.float64)
    return type_name(x)


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


def _shape(rng: np.random.Generator, max_ndim: int = 3, max_size: int = 5) -> tuple[int, ...]:
    """A random array shape: 1 to ``max_ndim`` axes of 1 to ``max_size`` entries."""
    ndim = int(rng.integers(1, max_ndim + 1))
    return tuple(int(n) for n in rng.integers(1, max_size + 1, size=ndim))


def _is_array_case(run: Run) -> bool:
    return type(run.case.args[0]) is _ARRAY


# --------------------------------------------------------------------------
# Exercise 1.1: derivative
# --------------------------------------------------------------------------

def derivative(w: Any) -> Any:
    """$f'(w) = 2(w - 3)$."""
    return 2 * (w - 3)


def _derivative_observe(run: Run) -> Any:
    if _is_array_case(run):
        w = run.case.args[0]
        return [_float_array(run.result, w.shape), np.array(run.args[0], dtype=np.float64)]
    return _number(run.result)


def _derivative_contract(got: Run, expected: Run) -> str | None:
    out, name = got.result, "derivative"
    if out is None:
        return _returned_none(name)
    if not _is_array_case(got):
        value = _as_float_array(out)
        if value is None or value.shape != ():
            return f"expected one number, got {fmt(out)} (type {type(out).__name__})."
        return None
    w, w_in = got.case.args[0], got.args[0]
    if not np.array_equal(w_in, w):
        return (f"`{name}` changed the caller's array in place (now {fmt(w_in)}).\n"
                "  Diagnosis: don't write `w -= 3` or `w *= 2`; compute a new value, "
                "e.g. `return 2 * (w - 3)`.")
    if not isinstance(out, np.ndarray) or out.shape != w.shape:
        return (f"expected a numpy array of shape {w.shape}, got {type(out).__name__} "
                f"{fmt(out)}.\n  Diagnosis: compute with numpy arithmetic on w "
                "directly (no loop, no list).")
    return None


def _derivative_on_error(case: Case, exc: BaseException) -> str | None:
    if type(case.args[0]) is _ARRAY:
        return ("your function works on single numbers but not on a numpy array. Use "
                "only arithmetic on w (-, *, **), no math.* functions, `if` on w or "
                "float(w): then numpy applies it element by element.")
    return None


def _derivative_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(3):                                    # random arrays, left unchanged
        w = rng.uniform(-20.0, 20.0, size=_shape(rng))
        yield Case("a random array", (w,))
    ints = rng.integers(-50, 50, size=_shape(rng, 2, 6))  # a random integer array
    yield Case("a random integer array", (ints,))
    for x in rng.uniform(-100.0, 100.0, size=4):
        yield Case("a random number", (float(x),))
    yield Case("a number near the minimum", (3.0 + float(rng.uniform(-1e-3, 1e-3)),))
    yield Case("a large number", (float(rng.normal() * 1e6),))


DERIVATIVE = Exercise(
    grade_id="test_derivative",
    name="derivative",
    reference=derivative,
    cases=[Case(f"w={w}", (w,)) for w in (5.0, 0.0, -1.5, 10.25, 3.0)] + [
        Case(f"w=np.array({w.tolist()})", (w,))
        for w in (np.array([-1.0, 0.0, 2.5, 3.0, 7.0]),
                  np.array([[4.0, 1.0], [3.5, -2.0]]),
                  np.arange(-2, 5))],
    observe=_derivative_observe,
    passed="derivative: 5 numbers and 3 numpy arrays (one of ints) match "
           "f'(w) = 2(w - 3); the input array is left unchanged",
    hidden=_derivative_hidden,
    rtol=1e-9, atol=1e-12,
    rules=[_derivative_contract],
    on_error=_derivative_on_error,
    mistakes=[
        Mistake("factor_2_missing",
                "you forgot the factor 2: the derivative of (w - 3)**2 is 2 * (w - 3), "
                "not w - 3 (power rule: bring the exponent down).",
                lambda w: w - 3),
        Mistake("sign_flipped",
                "the sign is flipped: f'(w) = 2 * (w - 3) is positive to the right of "
                "the minimum w = 3, where f goes uphill.",
                lambda w: -2 * (w - 3)),
        Mistake("sign_flipped_factor_2_missing",
                "the sign is flipped and the factor 2 is missing: f'(w) = 2 * (w - 3), "
                "not 3 - w.",
                lambda w: 3 - w),
        Mistake("returned_f",
                "you returned f itself, (w - 3)**2: return its derivative, the slope "
                "2 * (w - 3).",
                lambda w: (w - 3) ** 2),
        Mistake("shift_dropped",
                "you differentiated w**2 and dropped the shift: f'(w) = 2 * (w - 3) "
                "= 2w - 6.",
                lambda w: 2 * w),
        Mistake("shift_not_doubled",
                "2 * (w - 3) expands to 2w - 6, not 2w - 3: multiply both terms by 2.",
                lambda w: 2 * w - 3),
        Mistake("shift_sign_flipped",
                "the minimum of f(w) = (w - 3)**2 is at w = +3, so its slope is "
                "2 * (w - 3): you wrote 2 * (w + 3), the slope of (w + 3)**2.",
                lambda w: 2 * (w + 3)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 1.2: gd_step
# --------------------------------------------------------------------------

def gd_step(w: Any, grad: Any, lr: float) -> Any:
    r"""One gradient-descent step, $w - \eta\,g$."""
    return w - lr * grad


GRAD_IGNORED = ("you ignored the `grad` argument and stepped along the slope of "
                "(w - 3)**2 instead (derivative(w), or 2 * (w - 3)); in this case grad "
                "is not f'(w). gd_step must step along the gradient it is given, "
                "whatever the loss (gradient_descent passes it the gradients of other "
                "losses): return w - lr * grad.")


def _gd_step_observe(run: Run) -> Any:
    if _is_array_case(run):
        w, g = run.args[0], run.args[1]
        return [_float_array(run.result, run.case.args[0].shape),
                np.array(w, dtype=np.float64), np.array(g, dtype=np.float64)]
    return _number(run.result)


def _gd_step_contract(got: Run, expected: Run) -> str | None:
    out, name = got.result, "gd_step"
    if not _is_array_case(got):
        if out is None:
            return _returned_none(name)
        value = _as_float_array(out)
        if value is None or value.shape != ():
            return f"expected one number, got {fmt(out)} (type {type(out).__name__})."
        return None
    (w, grad), (w_in, grad_in) = got.case.args[:2], got.args[:2]
    mutated = not np.array_equal(w_in, w)
    if out is None:
        return _returned_none(name, (
            "`w -= lr * grad` updated the caller's array in place and your function "
            "returned None: write `return w - lr * grad`, which makes a new array.")
            if mutated else NONE_HINT)
    if mutated:
        return (f"`{name}` changed the caller's array w in place (it is now "
                f"{fmt(w_in)}).\n  Diagnosis: `w -= lr * grad` modifies the array you "
                "were given, so the old point (and every history entry that refers to "
                "it) changes too. Return a new array: `return w - lr * grad`.")
    if not np.array_equal(grad_in, grad):
        return f"`{name}` changed the gradient array in place: leave grad as it is."
    if not isinstance(out, np.ndarray) or out.shape != w.shape:
        return (f"expected a numpy array of shape {w.shape}, got {type(out).__name__} "
                f"{fmt(out)}.")
    return None


def _gd_step_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(3):
        shape = _shape(rng)
        yield Case("random arrays", (rng.standard_normal(shape), rng.standard_normal(shape),
                                     float(rng.uniform(0.0, 2.0))))
    for _ in range(4):
        yield Case("random numbers", (float(rng.uniform(-10.0, 10.0)),
                                      float(rng.uniform(-10.0, 10.0)),
                                      float(rng.uniform(0.0, 1.5))))
    yield Case("a large w", (float(rng.uniform(1e7, 1e9)), float(rng.uniform(-5.0, 5.0)),
                             float(rng.uniform(1e-4, 1e-2))))


GD_STEP = Exercise(
    grade_id="test_gd_step",
    name="gd_step",
    reference=gd_step,
    cases=[Case(f"w={w}, grad={g}, lr={lr}", (w, g, lr))
           for w, g, lr in [(5.0, 4.0, 0.1), (2.0, 10.0, 0.1), (0.0, -6.0, 0.25),
                            (1.0, -4.0, 1.5), (-2.0, 3.0, 0.0)]] + [
        Case(f"w=np.array({w.tolist()}), lr={lr}", (w, g, lr)) for w, g, lr in [
            (np.array([1.0, -2.0, 0.5]), np.array([0.5, -1.0, 4.0]), 0.1),
            (np.array([[3.0, 1.0], [0.0, -1.0]]), np.array([[2.0, -2.0], [1.0, 0.5]]), 0.5),
            (np.array([0.5, -1.5]), np.array([2.0, 1.0]), 0.0)]],
    observe=_gd_step_observe,
    passed="gd_step: 5 numbers and 3 numpy arrays (grad not always f'(w), lr = 0 "
           "too) match w - lr * grad; the input arrays are left unchanged",
    hidden=_gd_step_hidden,
    rtol=1e-9, atol=1e-12,
    rules=[_gd_step_contract],
    mistakes=[
        Mistake("moved_uphill", "your update moved w uphill: subtract lr × gradient "
                "(w - lr * grad), don't add it.", lambda w, grad, lr: w + lr * grad),
        Mistake("lr_missing", "you forgot the learning rate: the step is lr * grad, so "
                "return w - lr * grad (not w - grad).", lambda w, grad, lr: w - grad),
        Mistake("returned_step", "you returned only the step: add it to the current "
                "point, return w - lr * grad.", lambda w, grad, lr: -lr * grad),
        Mistake("returned_step_wrong_sign", "you returned only the step, with the "
                "wrong sign: return w - lr * grad.", lambda w, grad, lr: lr * grad),
        Mistake("subtracted_lr", "you subtracted lr alone: multiply it by the "
                "gradient, w - lr * grad.", lambda w, grad, lr: w - lr),
        Mistake("grad_ignored", GRAD_IGNORED, lambda w, grad, lr: w - lr * 2 * (w - 3)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 1.3: gradient_descent
# --------------------------------------------------------------------------

def gradient_descent(f_grad: Any, w0: Any, lr: float, n_steps: int) -> list[Any]:
    """The history ``[w0, w1, ..., w_{n_steps}]`` of plain gradient descent."""
    w = w0
    history = [w0]
    for _ in range(n_steps):
        w = w - lr * f_grad(w)
        history.append(w)
    return history


def grad_shift_quadratic(w: Any) -> Any:
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


class _Quadratic:
    """The gradient A (w - c) of a quadratic (a picklable, copyable f_grad)."""

    def __init__(self, a: Any, c: Any) -> None:
        self.a, self.c = a, c

    def __call__(self, w: Any) -> Any:
        return self.a @ (w - self.c) if np.ndim(self.a) else self.a * (w - self.c)


def _history(out: Any) -> Any:
    """A history as a float array (list, tuple or array of iterates), else a type name."""
    if type(out) not in (list, tuple, _ARRAY):
        return type_name(out)
    try:
        return np.array(out, dtype=np.float64)
    except (TypeError, ValueError):
        return type_name(out)


def _gd_observe(run: Run) -> Any:
    w0 = run.args[1]
    return [_history(run.result),
            np.array(w0, dtype=np.float64) if type(w0) is _ARRAY else w0]


def _gd_show(run: Run) -> Any:
    value = _as_float_array(run.result)
    return run.result if value is None else value


def _gd_contract(got: Run, expected: Run) -> str | None:
    out, name = got.result, "gradient_descent"
    if out is None:
        return (f"`{name}` returned None.\n  Diagnosis: did you forget `return history` "
                "at the end (after the loop, not inside it)?")
    history = _as_float_array(out)
    if history is None or history.dtype == object:
        return (f"expected a list or numpy array of iterates, got {type(out).__name__}: "
                f"{fmt(out)}.")
    want = np.array(expected.result, dtype=float)
    n_steps, w0 = got.case.args[3], got.case.args[1]
    if n_steps > 0 and history.shape == want[-1].shape:
        return _gd_last_only(history, want, n_steps, scalar=np.ndim(w0) == 0)
    count, need = (len(history) if history.ndim else 0), n_steps + 1
    if count != need:
        msg = f"expected {need} iterates (w0 and one per step), got {count}."
        if count == n_steps and n_steps > 0 and history.shape == want[1:].shape \
                and np.allclose(history, want[1:]):
            hint = ("your history is missing the starting point w0: start with "
                    "history = [w0], then append each new w, so that history[t] is "
                    "w_t and len(history) == n_steps + 1.")
        elif count == n_steps and n_steps > 0 and history.shape == want[:-1].shape \
                and np.allclose(history, want[:-1]):
            hint = ("the last step is missing: loop `for _ in range(n_steps)` and "
                    "append after every update.")
        elif count == n_steps + 2:
            hint = ("one entry too many (off by one): start with [w0], loop "
                    "`for _ in range(n_steps)` and append once per step (not also "
                    "before the loop or after it).")
        else:
            hint = ("start with history = [w0] and append the new w once per step, "
                    "for n_steps steps.")
        return f"{msg}\n  Diagnosis: {hint}"
    if history.shape != want.shape:
        return (f"expected {n_steps + 1} iterates of shape {np.shape(w0)} (array shape "
                f"{want.shape}), got shape {history.shape}.")
    return None


def _gd_last_only(history: np.ndarray, want: np.ndarray, n_steps: int,
                  scalar: bool) -> str:
    """The message for a single iterate returned instead of the history."""
    what = "a single number" if scalar else "a single point (an array of the shape of w0)"
    last = bool(np.allclose(history, want[-1], rtol=1e-9, atol=1e-12, equal_nan=True))
    which = f", the last iterate w_{n_steps}" if last else ""
    return (f"`gradient_descent` returned {what}{which}: {fmt(history[()])}.\n  "
            f"Diagnosis: return the whole history [w0, w1, ..., w_{n_steps}], a list of "
            f"n_steps + 1 = {n_steps + 1} entries: start with history = [w0], append "
            "every new w, and return history after the loop.")


def _gd_w0_unchanged(got: Run, expected: Run) -> str | None:
    w0, w0_in = got.case.args[1], got.args[1]
    if type(w0) is _ARRAY and not np.array_equal(w0_in, w0):
        return (f"`gradient_descent` changed the caller's w0 in place (it is now "
                f"{fmt(w0_in)}).\n  Diagnosis: start from a copy (w = w0.copy()) or "
                "update with `w = w - lr * g`, which makes a new array.")
    return None


def _gd_diagnose(got: Run, expected: Run) -> str | None:
    history = _as_float_array(got.result)
    want = np.array(expected.result, dtype=float)
    if history is not None and history.shape == want.shape and history.ndim \
            and np.allclose(history[0], want[0]) \
            and not np.allclose(history[:2], want[:2]):
        return "the first step is already wrong: is it w - lr * f_grad(w)?"
    return None


def _same_array_appended(f_grad: Any, w0: Any, lr: float, n_steps: int) -> list[Any]:
    w = np.array(w0, dtype=float)
    history = [w]
    for _ in range(n_steps):
        w -= lr * f_grad(w)
        history.append(w)
    return history


def _gradient_at_w0_only(f_grad: Any, w0: Any, lr: float, n_steps: int) -> list[Any]:
    g0 = f_grad(w0)
    return gradient_descent(lambda w: g0, w0, lr, n_steps)


def _gd_hidden(rng: np.random.Generator) -> Iterator[Case]:
    a, c = float(rng.uniform(0.5, 5.0)), float(rng.uniform(-5.0, 5.0))
    yield Case("a random 1-D quadratic", (_Quadratic(a, c), float(rng.uniform(-10.0, 10.0)),
                                          float(rng.uniform(0.05, 1.8)) / a,
                                          int(rng.integers(5, 25))))
    d = int(rng.integers(2, 6))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    m = q @ np.diag(rng.uniform(0.5, 5.0, size=d)) @ q.T
    yield Case("a random n-D quadratic", (_Quadratic((m + m.T) / 2, rng.uniform(-3.0, 3.0, size=d)),
                                          rng.uniform(-5.0, 5.0, size=d),
                                          float(rng.uniform(0.02, 0.35)), int(rng.integers(5, 25))))
    yield Case("f_grad = cos", (np.cos, float(rng.uniform(-3.0, 3.0)),
                                float(rng.uniform(0.05, 0.5)), int(rng.integers(5, 20))))
    yield Case("a random divergent run", (grad_shift_quadratic, rng.uniform(-2.0, 2.0, size=2),
                                          float(rng.uniform(1.02, 1.3)), int(rng.integers(3, 12))))


GRADIENT_DESCENT = Exercise(
    grade_id="test_gradient_descent",
    name="gradient_descent",
    reference=gradient_descent,
    cases=[
        Case("f_grad = 2(w - 3), w0=0.0, lr=0.1, n_steps=5", (grad_shift_quadratic, 0.0, 0.1, 5)),
        Case("f_grad = 4(w + 1), w0=2.0, lr=0.1, n_steps=6", (_grad_other, 2.0, 0.1, 6)),
        Case("2-D bowl, w0=np.array([2.0, 1.0]), lr=0.1, n_steps=4",
             (_grad_bowl, np.array([2.0, 1.0]), 0.1, 4)),
        Case("f_grad = 2(w - 3), w0=1.0, lr=0.3, n_steps=0", (grad_shift_quadratic, 1.0, 0.3, 0)),
        Case("f_grad = 2(w - 3), w0=np.array([0.0, 1.0]), lr=1.1, n_steps=6 (divergent)",
             (grad_shift_quadratic, np.array([0.0, 1.0]), 1.1, 6)),
    ],
    observe=_gd_observe,
    show=_gd_show,
    passed="gradient_descent: 5 runs (2 different f_grad, 2-D numpy w0, n_steps=0, "
           "a divergent run) return w0, w1, ..., w_{n_steps}; w0 is left unchanged",
    hidden=_gd_hidden,
    rtol=1e-9, atol=1e-12,
    rules=[_gd_contract],
    after=[_gd_w0_unchanged],
    diagnose=_gd_diagnose,
    mistakes=[
        Mistake("same_array_appended",
                "every entry of your history is the same (the last iterate): you "
                "appended the same array object each step and then changed it in "
                "place. Append a copy (w.copy()) or rebind w = w - lr * grad, which "
                "makes a new array.", _same_array_appended),
        Mistake("hard_coded_gradient",
                "these are the iterates for f(w) = (w - 3)**2, not for the f_grad you "
                "were given: call f_grad(w) for the gradient instead of derivative(w) "
                "or a hard-coded 2 * (w - 3).",
                lambda f_grad, w0, lr, n: gradient_descent(grad_shift_quadratic, w0, lr, n)),
        Mistake("moved_uphill",
                "your iterates moved uphill: w = w - lr * f_grad(w), not "
                "w + lr * f_grad(w).",
                lambda f_grad, w0, lr, n: gradient_descent(lambda w: -f_grad(w), w0, lr, n)),
        Mistake("gradient_at_w0_only",
                "every step used the gradient at w0: call f_grad(w) on the current w "
                "inside the loop.",
                _gradient_at_w0_only),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 1.4: steps_to_tolerance
# --------------------------------------------------------------------------

def steps_to_tolerance(lr: float, e0: float, tol: float, L: float = 2.0) -> float:
    """Smallest t >= 0 with |1 - lr L|^t |e0| <= tol (math.inf if none)."""
    if abs(e0) <= tol:
        return 0
    q = abs(1 - lr * L)
    if q == 0:
        return 1
    if q >= 1:
        return math.inf
    return math.ceil(math.log(tol / abs(e0)) / math.log(q))


ABS_FACTOR = ("in the oscillating regime 1 - lr·L is negative: the error flips sign "
              "each step but its size shrinks by |1 - lr·L|. Use abs(1 - lr * L) "
              "(math.log of a negative number fails).")
NEVER = ("when |1 - lr·L| >= 1 the error never shrinks (lr = 0: nothing moves; "
         "lr = 2/L: it bounces between +e0 and -e0 forever; lr > 2/L: it grows), so "
         "no number of steps is enough: return math.inf. Test this before any loop "
         "or log.")
_ONE_SHORT = ("one step short: after that many steps the error is still above tol. "
              "Round the real-valued solution of |1 - lr L|^t |e0| = tol UP "
              "(math.ceil), not down (int() or math.floor).")
_ONE_TOO_MANY = ("one step too many: you need the smallest t with |e_t| <= tol (use "
                 "<=, and math.ceil without + 1).")
_LIMIT = ("lr between 1/L and 2/L oscillates but still converges (|1 - lr L| < 1): "
          "the limit is 2/L, not 1/L.")
_L_IGNORED = ("this is the answer for L = 2: use the L you were given (the factor "
              "is 1 - lr * L).")


def _count(t: Any) -> Any:
    """A step count as an int, ``"inf"``, or a type name (exact types only)."""
    if type(t) in (float, np.float64) and t == math.inf:
        return "inf"
    return int(t) if type(t) in INT_TYPES else type_name(t)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _steps_contract(got: Run, expected: Run) -> str | None:
    out, want = got.result, expected.result
    lr, e0, tol, L = (tuple(got.case.args) + (2.0,))[:4]
    if out is None and math.isinf(want):
        return (f"`steps_to_tolerance` returned None for lr={lr:g}, L={L:g}, where "
                f"|1 - lr·L| = {abs(1 - lr * L):g} >= 1: the error never shrinks.\n  "
                "Diagnosis: no number of steps is enough there, so return math.inf "
                "(a bare `return`, or a branch that returns nothing, gives None).")
    if out is None and want == 0:
        return (f"`steps_to_tolerance` returned None for e0={e0:g}, tol={tol:g}, where "
                "|e0| <= tol.\n  Diagnosis: the start is already within tol, which takes "
                "0 steps: return 0 on that branch.")
    if out is None:
        return _returned_none("steps_to_tolerance")
    if not _is_number(out):
        return (f"expected a number of steps (an int, or math.inf), got "
                f"{type(out).__name__}: {fmt(out)}.")
    if isinstance(out, (float, np.floating)) and not math.isinf(out) and out == want:
        return (f"expected the int {want}, got the float {fmt(float(out))}.\n  Diagnosis: "
                "a number of steps is an int: math.ceil(...) returns one (np.ceil "
                "returns a float), or wrap it in int(...).")
    return None


def _steps_diagnose(got: Run, expected: Run) -> str | None:
    out, want = got.result, expected.result
    lr, e0, tol, L = got.case.args
    hint = got.case.data
    if L != 2.0 and out == steps_to_tolerance(lr, e0, tol, 2.0):
        hint = _L_IGNORED
    if math.isnan(out):
        return hint or ABS_FACTOR
    if math.isinf(want):
        return hint
    if want > 0 and out == want - 1:
        return _ONE_SHORT
    if want > 0 and out == want + 1:
        return _ONE_TOO_MANY
    if math.isinf(out) and 1 < lr * L < 2:
        return _LIMIT
    return hint


def _exponent(lr: float, e0: float, tol: float, L: float) -> float:
    """The real t with |1 - lr L|^t |e0| = tol (the count is its ceiling)."""
    return math.log(tol / abs(e0)) / math.log(abs(1 - lr * L))


def _random_steps_case(rng: np.random.Generator, L: float | None = None) -> Case:
    """|1 - lr L| in (0.02, 0.97) and |e0| > tol, drawn away from the integer
    boundaries where rounding could tip the count (a random L unless given)."""
    while True:
        L_ = float(rng.uniform(0.5, 10.0)) if L is None else L
        lr = float(rng.uniform(0.03, 1.97)) / L_
        e0 = float(rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-2.0, 1.5))
        tol = float(10 ** rng.uniform(-9.0, -2.5))
        if abs(e0) <= 10 * tol or not 0.02 < abs(1 - lr * L_) < 0.97:
            continue
        x = _exponent(lr, e0, tol, L_)
        if abs(x - round(x)) > 1e-6:
            return Case("a random converging case", (lr, e0, tol, L_))


def _steps_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(20):
        yield _random_steps_case(rng, 2.0)
    for _ in range(20):
        yield _random_steps_case(rng)
    for _ in range(4):                                   # |1 - lr L| >= 1: inf
        L = float(rng.uniform(0.5, 10.0))
        yield Case("a random divergent case", (
            float(rng.uniform(2.05, 3.0)) / L,
            float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 5.0)),
            float(10 ** rng.uniform(-8.0, -3.0)), L))
    for _ in range(2):                                   # already within tol: 0
        L, tol = float(rng.uniform(0.5, 10.0)), float(10 ** rng.uniform(-6.0, -1.0))
        yield Case("a random start within tol", (
            float(rng.uniform(0.03, 1.97)) / L, tol * float(rng.uniform(-0.9, 0.9)), tol, L))
    L = float(rng.uniform(0.5, 10.0))                    # lr = 1/L: 1
    yield Case("lr = 1/L", (1 / L, float(rng.uniform(1.0, 5.0)), 1e-3, L))
    lr, e0, tol, _ = _random_steps_case(rng, 2.0).args   # the default L = 2.0
    yield Case("the default L", (lr, e0, tol))


# (lr, e0, tol, L, hint when this case alone is wrong); e0 and tol as written in labels
_STEP_CASES = [
    (0.1, 3.0, "1e-3", 2.0, None),
    (0.01, 3.0, "1e-3", 2.0, None),
    (0.05, 1.0, "1e-6", 10.0, None),
    (0.9, 3.0, "1e-3", 2.0, ABS_FACTOR),
    (0.95, 3.0, "1e-3", 2.0, ABS_FACTOR),
    (0.1, -3.0, "1e-3", 2.0,
     "the start may be left of the minimum (e0 < 0): only its size matters, use abs(e0)."),
    (0.3, 1e-4, "1e-3", 2.0,
     "the start is already within tol (|e0| <= tol): that takes 0 steps."),
    (0.5, 3.0, "1e-3", 2.0,
     "at lr = 1/L the factor 1 - lr·L is 0: the first step lands exactly on the "
     "minimum, so the answer is 1 (log(0) is undefined: handle this case before "
     "taking logs)."),
    (1.1, 3.0, "1e-3", 2.0, NEVER),
    (1.0, 3.0, "1e-3", 2.0, NEVER),
    (0.0, 3.0, "1e-3", 2.0, NEVER),
]


STEPS_TO_TOLERANCE = Exercise(
    grade_id="test_steps_to_tolerance",
    name="steps_to_tolerance",
    reference=steps_to_tolerance,
    cases=[Case(f"lr={lr}, e0={'1e-4' if e0 == 1e-4 else e0}, tol={tol}, L={L}",
                (lr, e0, float(tol), L), data=hint)
           for lr, e0, tol, L, hint in _STEP_CASES],
    observe=lambda run: _count(run.result),
    passed="steps_to_tolerance: 11 cases (monotone, oscillating, lr = 1/L, already "
           "converged, |1 - lr L| >= 1 -> inf) match the smallest t with "
           "|1 - lr L|^t |e0| <= tol",
    hidden=_steps_hidden,
    rules=[_steps_contract],
    diagnose=_steps_diagnose,
    on_error=lambda case, exc: NEVER if isinstance(exc, TimeoutError) else case.data,
    time_limit=2.0,
    mistakes=[
        Mistake("rounded_down", _ONE_SHORT,
                lambda lr, e0, tol, L=2.0: _variant(lr, e0, tol, L, rounding=math.floor)),
        Mistake("one_too_many", _ONE_TOO_MANY,
                lambda lr, e0, tol, L=2.0: _variant(lr, e0, tol, L, extra=1)),
        Mistake("limit_one_over_L", _LIMIT,
                lambda lr, e0, tol, L=2.0: _variant(lr, e0, tol, L, limit=1.0)),
        Mistake("L_ignored", _L_IGNORED,
                lambda lr, e0, tol, L=2.0: steps_to_tolerance(lr, e0, tol, 2.0)),
    ],
    forbidden=FORBIDDEN,
)


def _variant(lr: float, e0: float, tol: float, L: float, *, rounding: Any = math.ceil,
             extra: int = 0, limit: float = 2.0) -> float:
    """steps_to_tolerance with one mistake: rounding down, one step too many,
    or divergence assumed from lr·L > ``limit``."""
    if abs(e0) <= tol:
        return 0
    q = abs(1 - lr * L)
    if q == 0:
        return 1
    if q >= 1 or lr * L > limit:
        return math.inf
    return int(rounding(math.log(tol / abs(e0)) / math.log(q))) + extra




# ----------------------------------------------------------------- predict, then run

#: The regimes the predict-then-run question offers, in the lesson's words.
REGIMES = ("slides to 3 without crossing it", "crosses 3 every step and gets closer",
           "bounces between two points forever", "crosses 3 every step and moves away")


def _regime_of_run(lr: float) -> str:
    """Which of :data:`REGIMES` 8 steps from w0 = 0 on (w - 3)**2 show (run, not formula)."""
    w, errors = 0.0, [-3.0]
    for _ in range(8):
        w = w - lr * 2 * (w - 3)
        errors.append(w - 3)
    crossing = all(a * b < 0 for a, b in zip(errors, errors[1:]))
    sizes = [abs(e) for e in errors]
    if not crossing:
        return REGIMES[0]
    if sizes[-1] < sizes[0]:
        return REGIMES[1]
    return REGIMES[2] if sizes[-1] == sizes[0] else REGIMES[3]


PREDICT_LR_09 = Question(
    grade_id="test_predict_lr_09",
    name="predict_lr_09",
    answer=lambda: _regime_of_run(0.9),
    choices=REGIMES,
    why=("the error is multiplied by 1 - 2·0.9 = -0.8 every step: the sign flips (w jumps "
         "over 3, to 5.4 on the first step) and the size shrinks by 20 % per step."),
)



def _steps_of_run(lr: float, w0: float = 0.0, tol: float = 1e-3,
                  max_steps: int = 100_000) -> float:
    """Steps gradient descent on (w - 3)**2 takes from ``w0`` until |w - 3| <= tol,
    counted by running it (math.inf if ``max_steps`` are not enough)."""
    w = w0
    for t in range(max_steps + 1):
        if abs(w - 3) <= tol:
            return t
        w = w - lr * 2 * (w - 3)
    return math.inf


PREDICT_STEPS_099 = Question(
    grade_id="test_predict_steps_099",
    name="predict_steps_099",
    answer=lambda: _steps_of_run(0.99),
    rtol=0.1,
    unit="steps",
    why=("|1 - 2·0.99| = 0.98, the same size as for lr = 0.01: the error shrinks by "
         "only 2 % per step (flipping its sign every step), so both need 397 steps, 11 "
         "times as many as lr = 0.1 or lr = 0.9 (36). Only |1 - lr·L| counts: just below "
         "2/L is as slow as a learning rate 99 times smaller."),
)

#: The graded cells, in notebook order.
EXERCISES = [DERIVATIVE, GD_STEP, GRADIENT_DESCENT, PREDICT_LR_09, STEPS_TO_TOLERANCE,
             PREDICT_STEPS_099]
