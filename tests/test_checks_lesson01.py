"""Tests of the lesson 01 checks beyond tests/test_exercises.py: learner-style
wrong implementations that are not catalogued mistakes, and behaviour."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from course.checks import (
    check_derivative,
    check_gd_step,
    check_gradient_descent,
    check_steps_to_tolerance,
)
from tests.check_contract import fails


# --------------------------------------------------------------------------
# Reference solutions (as in the solution notebook)
# --------------------------------------------------------------------------

def derivative(w):
    return 2 * (w - 3)


def gd_step(w, grad, lr):
    return w - lr * grad


def gradient_descent(f_grad, w0, lr, n_steps):
    w = w0
    history = [w0]
    for _ in range(n_steps):
        w = gd_step(w, f_grad(w), lr)
        history.append(w)
    return history


def steps_to_tolerance(lr, e0, tol, L=2.0):
    if abs(e0) <= tol:
        return 0
    q = abs(1 - lr * L)
    if q == 0:
        return 1
    if q >= 1:
        return math.inf
    return math.ceil(math.log(tol / abs(e0)) / math.log(q))


# --------------------------------------------------------------------------
# A returned value passed instead of the function
# --------------------------------------------------------------------------

@pytest.mark.parametrize("check, value", [
    (check_derivative, derivative(5.0)),
    (check_gd_step, gd_step(5.0, 4.0, 0.1)),
    (check_gradient_descent, [0.0]),
    (check_steps_to_tolerance, steps_to_tolerance(0.1, 3.0, 1e-3)),
], ids=["derivative", "gd_step", "gradient_descent", "steps_to_tolerance"])
def test_a_returned_value_is_not_the_function(check, value):
    fails(check, value, "without parentheses")


# --------------------------------------------------------------------------
# derivative
# --------------------------------------------------------------------------

def test_derivative_returned_none():
    def no_return(w):
        2 * (w - 3)
    fails(check_derivative, no_return, r"returned None.*forget `return`")


def test_derivative_scalar_only():
    def scalar_only(w):
        return 2.0 * (float(w) - 3.0)
    fails(check_derivative, scalar_only,
          r"np.array.*raised TypeError.*works on single numbers but not on a "
          r"numpy array")


def test_derivative_if_on_w():
    def branchy(w):
        if w > 3:
            return 2 * (w - 3)
        return -2 * (3 - w)
    fails(check_derivative, branchy, r"ValueError.*not on a numpy array")


def test_derivative_returns_list():
    def as_list(w):
        if isinstance(w, np.ndarray):
            return [2 * (x - 3) for x in w]
        return 2 * (w - 3)
    fails(check_derivative, as_list, r"expected a numpy array of shape \(5,\), got list")


def test_derivative_in_place():
    def in_place(w):
        w -= 3
        return 2 * w
    fails(check_derivative, in_place, r"changed the caller's array in place")


def test_derivative_unknown_mistake_generic_message():
    message = fails(check_derivative, lambda w: 2 * (w - 3) + 0.5,
                    r"case 'w=5.0': expected 4, got 4.5")
    assert "Diagnosis" not in message


def test_derivative_returns_string():
    fails(check_derivative, lambda w: "4", r"expected one number, got '4'")


# --------------------------------------------------------------------------
# gd_step
# --------------------------------------------------------------------------

def test_gd_step_in_place_returning_none():
    def in_place(w, grad, lr):
        w -= lr * grad
    # floats: `w -= ...` rebinds a local name and the function returns None
    fails(check_gd_step, in_place, r"returned None.*forget `return`")


def test_gd_step_in_place_returns_none_for_arrays_only():
    def in_place(w, grad, lr):
        if isinstance(w, np.ndarray):
            w -= lr * grad
            return None
        return w - lr * grad
    fails(check_gd_step, in_place,
          r"returned None.*updated the caller's array in place")


def test_gd_step_in_place_mutates_caller():
    def in_place(w, grad, lr):
        w -= lr * grad
        return w
    fails(check_gd_step, in_place,
          r"changed the caller's array w in place.*return w - lr \* grad")


def test_gd_step_mutates_grad():
    def scale_grad(w, grad, lr):
        grad *= lr
        return w - grad
    fails(check_gd_step, scale_grad, r"changed the gradient array in place")


def test_gd_step_returns_list_for_arrays():
    def as_list(w, grad, lr):
        return (w - lr * grad).tolist() if isinstance(w, np.ndarray) else w - lr * grad
    fails(check_gd_step, as_list, r"expected a numpy array of shape \(3,\), got list")


def test_gd_step_ignores_grad_and_uses_derivative():
    """The message a learner gets for the spec's `grad_ignored` mistake, word for word."""
    from course.exercises.lesson01 import GD_STEP
    own_slope = next(m.impl for m in GD_STEP.mistakes if m.name == "grad_ignored")
    fails(check_gd_step, own_slope,
          r"case 'w=2.0, grad=10.0, lr=0.1': expected 1, got 2.2.*you ignored the "
          r"`grad` argument.*return w - lr \* grad")


def test_gd_step_generic_mismatch():
    message = fails(check_gd_step, lambda w, g, lr: w - 2 * lr * g,
                    r"expected 4.6, got 4.2")
    assert "Diagnosis" not in message


# --------------------------------------------------------------------------
# gradient_descent
# --------------------------------------------------------------------------

def test_gradient_descent_array_history_accepted(capsys):
    def as_array(f_grad, w0, lr, n_steps):
        return np.array(gradient_descent(f_grad, w0, lr, n_steps))
    check_gradient_descent(as_array)
    assert capsys.readouterr().out.startswith("\u2713 gradient_descent")


def test_gradient_descent_missing_w0():
    def no_w0(f_grad, w0, lr, n_steps):
        return gradient_descent(f_grad, w0, lr, n_steps)[1:]
    fails(check_gradient_descent, no_w0,
          r"expected 6 iterates .*got 5.*missing the starting point w0")


def test_gradient_descent_last_step_missing():
    def short(f_grad, w0, lr, n_steps):
        return gradient_descent(f_grad, w0, lr, max(n_steps - 1, 0))
    fails(check_gradient_descent, short, r"got 5.*the last step is missing")


def test_gradient_descent_one_too_many():
    def too_many(f_grad, w0, lr, n_steps):
        return gradient_descent(f_grad, w0, lr, n_steps + 1)
    fails(check_gradient_descent, too_many,
          r"expected 6 iterates .*got 7.*off by one")


def test_gradient_descent_w0_twice():
    def twice(f_grad, w0, lr, n_steps):
        return [w0] + gradient_descent(f_grad, w0, lr, n_steps)
    fails(check_gradient_descent, twice, r"got 7.*off by one")


def test_gradient_descent_mutates_w0():
    def mutate_w0(f_grad, w0, lr, n_steps):
        w = w0
        history = [np.array(w0, dtype=float)]
        for _ in range(n_steps):
            w -= lr * f_grad(w)
            history.append(np.array(w, dtype=float))
        return history
    fails(check_gradient_descent, mutate_w0,
          r"2-D bowl.*changed the caller's w0 in place.*w0.copy\(\)")


def test_gradient_descent_returned_none():
    def no_return(f_grad, w0, lr, n_steps):
        gradient_descent(f_grad, w0, lr, n_steps)
    fails(check_gradient_descent, no_return, r"returned None.*return history")


def test_gradient_descent_returned_last_iterate():
    def last_only(f_grad, w0, lr, n_steps):
        w = w0
        for _ in range(n_steps):
            w = w - lr * f_grad(w)
        return w
    fails(check_gradient_descent, last_only,
          r"n_steps=5': `gradient_descent` returned a single number, the last iterate "
          r"w_5: 2.01696.*Diagnosis: return the whole history \[w0, w1, ..., w_5\], a "
          r"list of n_steps \+ 1 = 6 entries")


def test_gradient_descent_returned_last_point_of_an_array_run():
    def last_only_for_arrays(f_grad, w0, lr, n_steps):
        history = gradient_descent(f_grad, w0, lr, n_steps)
        return history[-1] if np.ndim(w0) else history
    fails(check_gradient_descent, last_only_for_arrays,
          r"2-D bowl.*returned a single point \(an array of the shape of w0\), the "
          r"last iterate w_4.*return the whole history \[w0, w1, ..., w_4\]")


def test_gradient_descent_returned_a_number_not_the_last_iterate():
    def first_step_only(f_grad, w0, lr, n_steps):
        return w0 - lr * f_grad(w0)
    message = fails(check_gradient_descent, first_step_only,
                    r"returned a single number: 0.6.*return the whole history")
    assert "last iterate" not in message


def test_gradient_descent_wrong_first_step():
    def half_lr(f_grad, w0, lr, n_steps):
        return gradient_descent(f_grad, w0, lr / 2, n_steps)
    fails(check_gradient_descent, half_lr, r"the first step is already wrong")


# --------------------------------------------------------------------------
# steps_to_tolerance
# --------------------------------------------------------------------------

def _loop_version(lr, e0, tol, L=2.0):
    """A correct loop-based answer: also accepted."""
    q = abs(1 - lr * L)
    e, t = abs(e0), 0
    if e > tol and q >= 1:
        return math.inf
    while e > tol:
        e *= q
        t += 1
    return t


def test_steps_loop_version_passes(capsys):
    check_steps_to_tolerance(_loop_version)
    assert capsys.readouterr().out.startswith("\u2713 steps_to_tolerance")


def _without(*skip):
    """The reference with some of its special cases removed."""
    def fn(lr, e0, tol, L=2.0):
        e = e0 if "abs_e0" in skip else abs(e0)
        if "zero" not in skip and e <= tol:
            return 0
        q = 1 - lr * L if "abs_q" in skip else abs(1 - lr * L)
        if "one" not in skip and q == 0:
            return 1
        if "inf" not in skip and abs(q) >= 1:
            return math.inf
        return math.ceil(math.log(tol / e) / math.log(q))
    return fn


@pytest.mark.parametrize("wrong, pattern", [
    # rounding down / one too many, written without the special cases (the
    # catalogued rounded_down and one_too_many keep them)
    (lambda lr, e0, tol, L=2.0: math.floor(math.log(tol / abs(e0))
                                           / math.log(abs(1 - lr * L))),
     r"lr=0.1, e0=3.0.*expected 36, got 35.*one step short.*math.ceil"),
    (lambda lr, e0, tol, L=2.0: steps_to_tolerance(lr, e0, tol, L) + 1,
     r"expected 36, got 37.*one step too many"),
    (_without("abs_q"), r"lr=0.9.*ValueError.*abs\(1 - lr \* L\)"),
    (_without("abs_e0"), r"e0=-3.0.*use abs\(e0\)"),
    (_without("zero"), r"e0=1e-4.*expected 0, got -2.*0 steps"),
    (_without("one"), r"lr=0.5.*ValueError.*factor 1 - lr·L is 0"),
    (_without("inf"), r"lr=1.1.*expected inf, got -\d+.*return math.inf"),
    (lambda lr, e0, tol, L=2.0: float(steps_to_tolerance(lr, e0, tol, L)),
     r"expected the int 36, got the float 36.*math.ceil"),
    (lambda lr, e0, tol, L=2.0: np.ceil(np.log(tol / abs(e0))
                                        / np.log(abs(1 - lr * L))),
     r"expected the int 36, got the float"),
])
def test_steps_classic_mistakes(wrong, pattern):
    fails(check_steps_to_tolerance, wrong, pattern)


def test_steps_lr_equal_2_over_L_zero_division():
    def no_equal_case(lr, e0, tol, L=2.0):
        q = abs(1 - lr * L)
        if abs(e0) <= tol:
            return 0
        if q == 0:
            return 1
        if q > 1:
            return math.inf
        return math.ceil(math.log(tol / abs(e0)) / math.log(q))
    fails(check_steps_to_tolerance, no_equal_case,
          r"lr=1.0.*ZeroDivisionError.*bounces between \+e0 and -e0")


def test_steps_numpy_nan_for_oscillating():
    def numpy_log(lr, e0, tol, L=2.0):
        if abs(e0) <= tol:
            return 0
        with np.errstate(all="ignore"):
            t = np.log(tol / abs(e0)) / np.log(1 - lr * L)
        return t if np.isnan(t) else steps_to_tolerance(lr, e0, tol, L)
    fails(check_steps_to_tolerance, numpy_log, r"lr=0.9.*got nan.*abs\(1 - lr \* L\)")


def test_steps_endless_loop_is_interrupted():
    def endless(lr, e0, tol, L=2.0):
        q = abs(1 - lr * L)
        e, t = abs(e0), 0
        while e > tol:
            e *= q
            t += 1
        return t
    start = time.perf_counter()
    fails(check_steps_to_tolerance, endless,
          r"lr=1.1.*did not return within 2 s.*return math.inf")
    assert time.perf_counter() - start < 10


def test_steps_returns_string():
    fails(check_steps_to_tolerance, lambda lr, e0, tol, L=2.0: "36",
          r"expected a number of steps \(an int, or math.inf\), got str")


def test_steps_returned_none_where_it_never_converges():
    def no_inf(lr, e0, tol, L=2.0):
        if abs(e0) <= tol:
            return 0
        q = abs(1 - lr * L)
        if q == 0:
            return 1
        if q >= 1:
            return
        return math.ceil(math.log(tol / abs(e0)) / math.log(q))
    fails(check_steps_to_tolerance, no_inf,
          r"case 'lr=1.1, e0=3.0, tol=1e-3, L=2.0': `steps_to_tolerance` returned None "
          r"for lr=1.1, L=2, where \|1 - lr·L\| = 1.2 >= 1: the error never shrinks.*"
          r"return math.inf")


def test_steps_returned_none_where_already_within_tol():
    def no_zero(lr, e0, tol, L=2.0):
        if abs(e0) > tol:
            return steps_to_tolerance(lr, e0, tol, L)
    fails(check_steps_to_tolerance, no_zero,
          r"e0=1e-4.*returned None for e0=0.0001, tol=0.001, where \|e0\| <= tol.*return 0")


def test_steps_returned_none():
    def no_return(lr, e0, tol, L=2.0):
        steps_to_tolerance(lr, e0, tol, L)
    fails(check_steps_to_tolerance, no_return, r"returned None")


def test_steps_time_limit_restores_signal_handler():
    import signal
    before = signal.getsignal(signal.SIGALRM)
    check_steps_to_tolerance(steps_to_tolerance)
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
